//! STUN (RFC 8489), as much as an ICE-lite server needs before its ICE agent sees a datagram:
//! the USERNAME of a Binding request, whose first half is the local ufrag that names the
//! session.

/// The USERNAME attribute of a STUN Binding request (RFC 8489), if `data` is one.
pub fn username(data: &[u8]) -> Option<&str> {
    if data.len() < 20 || data[0] & 0xc0 != 0 || data[4..8] != [0x21, 0x12, 0xa4, 0x42] {
        return None;
    }
    let method = u16::from_be_bytes([data[0], data[1]]);
    if method != 0x0001 {
        return None;
    }
    let length = u16::from_be_bytes([data[2], data[3]]) as usize;
    let mut rest = data.get(20..20 + length)?;
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let value = rest.get(4..4 + len)?;
        if kind == 0x0006 {
            return std::str::from_utf8(value).ok();
        }
        let padded = (4 + len).div_ceil(4) * 4;
        rest = rest.get(padded..)?;
    }
    None
}

/// A Binding request with a fake PRIORITY attribute and then USERNAME `user` (padded to a
/// multiple of 4).
#[doc(hidden)]
pub fn binding_request(user: &str) -> Vec<u8> {
    let mut msg = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    msg.extend_from_slice(&[7; 12]);
    msg.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
    msg.extend_from_slice(&[0x00, 0x06]);
    msg.extend_from_slice(&(user.len() as u16).to_be_bytes());
    msg.extend_from_slice(user.as_bytes());
    msg.resize(msg.len().div_ceil(4) * 4, 0);
    let len = (msg.len() - 20) as u16;
    msg[2..4].copy_from_slice(&len.to_be_bytes());
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_username_of_a_binding_request() {
        let msg = binding_request("abcd:wxyz");
        assert_eq!(username(&msg), Some("abcd:wxyz"));
        // A Binding response, RTP, and truncated input are not requests.
        let mut response = msg.clone();
        response[1] = 0x01;
        response[0] = 0x01;
        assert_eq!(username(&response), None);
        assert_eq!(username(&[0x80, 0x60, 0, 1, 0, 0, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(username(&msg[..25]), None);
    }
}
