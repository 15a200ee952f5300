//! AMF0 (Adobe "Action Message Format 0" specification, §2): the encoding of RTMP commands
//! and FLV script data.
//!
//! The decoder is written for hostile input: nesting deeper than [`MAX_DEPTH`] is an error
//! (not a stack overflow), declared counts never pre-allocate, and every error carries the byte
//! offset where it was found. AMF3 values (marker `0x11`) are refused; RTMP peers only send
//! them when the client asked for object encoding 3, which Estuary never advertises.

use bytes::{BufMut, BytesMut};
use thiserror::Error;

/// Deepest nesting of objects and arrays the decoder accepts.
pub const MAX_DEPTH: usize = 32;

/// One AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// IEEE-754 double.
    Number(f64),
    /// Boolean.
    Boolean(bool),
    /// UTF-8 string (short or long form on the wire).
    String(String),
    /// Anonymous object: ordered key/value pairs.
    Object(Vec<(String, Value)>),
    /// `null`.
    Null,
    /// `undefined`.
    Undefined,
    /// ECMA array: ordered key/value pairs with a count hint.
    EcmaArray(Vec<(String, Value)>),
    /// Strict array.
    StrictArray(Vec<Value>),
    /// Date: milliseconds since the epoch and a timezone offset (always 0 in practice).
    Date(f64, i16),
}

impl Value {
    /// The string inside a `String` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number inside a `Number` value.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            Value::Boolean(b) => Some(*b as u8 as f64),
            _ => None,
        }
    }

    /// The properties of an object or ECMA array.
    pub fn properties(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(p) | Value::EcmaArray(p) => Some(p),
            _ => None,
        }
    }

    /// Looks up a property of an object or ECMA array.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.properties()?.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Builds an object from string keys.
    pub fn object<I, K>(pairs: I) -> Value
    where
        I: IntoIterator<Item = (K, Value)>,
        K: Into<String>,
    {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

/// A malformed AMF0 value.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Amf0Error {
    /// The data ended inside a value.
    #[error("AMF0 data truncated at byte {0}")]
    Truncated(usize),
    /// A marker this decoder does not know (or AMF3).
    #[error("AMF0 marker 0x{marker:02x} not supported at byte {offset}")]
    UnsupportedMarker {
        /// The marker byte.
        marker: u8,
        /// Where it was found.
        offset: usize,
    },
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("AMF0 nesting deeper than {MAX_DEPTH} at byte {0}")]
    TooDeep(usize),
    /// A string that is not UTF-8.
    #[error("AMF0 string at byte {0} is not UTF-8")]
    BadUtf8(usize),
}

/// Decodes every value in `data`.
pub fn decode_all(data: &[u8]) -> Result<Vec<Value>, Amf0Error> {
    let mut decoder = Decoder { data, offset: 0 };
    let mut values = Vec::new();
    while decoder.offset < data.len() {
        values.push(decoder.value(0)?);
    }
    Ok(values)
}

/// Decodes one value from the start of `data`; returns it and the bytes consumed.
pub fn decode_one(data: &[u8]) -> Result<(Value, usize), Amf0Error> {
    let mut decoder = Decoder { data, offset: 0 };
    let value = decoder.value(0)?;
    Ok((value, decoder.offset))
}

struct Decoder<'a> {
    data: &'a [u8],
    offset: usize,
}

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Amf0Error> {
        let end = self.offset.checked_add(n).ok_or(Amf0Error::Truncated(self.offset))?;
        let slice = self.data.get(self.offset..end).ok_or(Amf0Error::Truncated(self.data.len()))?;
        self.offset = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        let b = self.take(8)?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(b);
        Ok(f64::from_be_bytes(raw))
    }

    fn string_of(&mut self, len: usize) -> Result<String, Amf0Error> {
        let at = self.offset;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Amf0Error::BadUtf8(at))
    }

    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Value)>, Amf0Error> {
        let mut properties = Vec::new();
        loop {
            let key_len = self.u16()? as usize;
            if key_len == 0 && self.data.get(self.offset) == Some(&0x09) {
                self.offset += 1;
                return Ok(properties);
            }
            let key = self.string_of(key_len)?;
            let value = self.value(depth + 1)?;
            properties.push((key, value));
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, Amf0Error> {
        if depth > MAX_DEPTH {
            return Err(Amf0Error::TooDeep(self.offset));
        }
        let at = self.offset;
        let marker = self.u8()?;
        Ok(match marker {
            0x00 => Value::Number(self.f64()?),
            0x01 => Value::Boolean(self.u8()? != 0),
            0x02 => {
                let len = self.u16()? as usize;
                Value::String(self.string_of(len)?)
            }
            0x03 => Value::Object(self.properties(depth)?),
            0x05 => Value::Null,
            0x06 => Value::Undefined,
            0x08 => {
                let _count_hint = self.u32()?;
                // Some encoders end an ECMA array at the end of the data without the
                // object-end marker; accept that.
                if self.offset >= self.data.len() {
                    Value::EcmaArray(Vec::new())
                } else {
                    Value::EcmaArray(self.properties(depth)?)
                }
            }
            0x0a => {
                let count = self.u32()? as usize;
                let mut items = Vec::new();
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Value::StrictArray(items)
            }
            0x0b => {
                let millis = self.f64()?;
                let tz = self.u16()? as i16;
                Value::Date(millis, tz)
            }
            0x0c => {
                let len = self.u32()? as usize;
                Value::String(self.string_of(len)?)
            }
            marker => return Err(Amf0Error::UnsupportedMarker { marker, offset: at }),
        })
    }
}

/// Appends the encoding of `value` to `out`.
pub fn encode(value: &Value, out: &mut BytesMut) {
    match value {
        Value::Number(n) => {
            out.put_u8(0x00);
            out.put_f64(*n);
        }
        Value::Boolean(b) => {
            out.put_u8(0x01);
            out.put_u8(*b as u8);
        }
        Value::String(s) if s.len() <= u16::MAX as usize => {
            out.put_u8(0x02);
            out.put_u16(s.len() as u16);
            out.put_slice(s.as_bytes());
        }
        Value::String(s) => {
            out.put_u8(0x0c);
            out.put_u32(s.len() as u32);
            out.put_slice(s.as_bytes());
        }
        Value::Object(properties) => {
            out.put_u8(0x03);
            encode_properties(properties, out);
        }
        Value::Null => out.put_u8(0x05),
        Value::Undefined => out.put_u8(0x06),
        Value::EcmaArray(properties) => {
            out.put_u8(0x08);
            out.put_u32(properties.len() as u32);
            encode_properties(properties, out);
        }
        Value::StrictArray(items) => {
            out.put_u8(0x0a);
            out.put_u32(items.len() as u32);
            for item in items {
                encode(item, out);
            }
        }
        Value::Date(millis, tz) => {
            out.put_u8(0x0b);
            out.put_f64(*millis);
            out.put_u16(*tz as u16);
        }
    }
}

fn encode_properties(properties: &[(String, Value)], out: &mut BytesMut) {
    for (key, value) in properties {
        let key = &key.as_bytes()[..key.len().min(u16::MAX as usize)];
        out.put_u16(key.len() as u16);
        out.put_slice(key);
        encode(value, out);
    }
    out.put_slice(&[0, 0, 0x09]);
}

/// Encodes a sequence of values.
pub fn encode_all(values: &[Value]) -> BytesMut {
    let mut out = BytesMut::new();
    for value in values {
        encode(value, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Value> {
        vec![
            Value::String("connect".into()),
            Value::Number(1.0),
            Value::object([
                ("app", Value::String("live".into())),
                ("flashVer", Value::String("FMLE/3.0".into())),
                ("audioCodecs", Value::Number(3191.0)),
                ("fpad", Value::Boolean(false)),
                ("nested", Value::EcmaArray(vec![("x".into(), Value::Null)])),
            ]),
            Value::StrictArray(vec![Value::Undefined, Value::Date(1.5e12, 0)]),
        ]
    }

    #[test]
    fn round_trip() {
        let encoded = encode_all(&sample());
        assert_eq!(decode_all(&encoded).unwrap(), sample());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let encoded = encode_all(&sample());
        for cut in 1..encoded.len() {
            let result = decode_all(&encoded[..cut]);
            // A cut that falls exactly between two values decodes the values before it.
            if let Ok(values) = result {
                assert!(values.len() < sample().len(), "cut {cut}");
            }
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut data = Vec::new();
        for _ in 0..10_000 {
            data.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
        }
        assert!(matches!(decode_all(&data), Err(Amf0Error::TooDeep(_))));
    }

    #[test]
    fn huge_declared_count_does_not_allocate() {
        let data = [0x0a, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decode_all(&data), Err(Amf0Error::Truncated(5)));
    }

    #[test]
    fn amf3_marker_is_named() {
        assert_eq!(
            decode_all(&[0x05, 0x11]),
            Err(Amf0Error::UnsupportedMarker { marker: 0x11, offset: 1 })
        );
    }
}
