//! Calendar time without a clock: Unix milliseconds to and from UTC calendar fields
//! (proleptic Gregorian, Howard Hinnant's days-from-civil / civil-from-days), RFC 3339
//! formatting and parsing. Used by DASH manifests, DVR path templates and time ranges, and
//! SIP `Date` headers.

/// UTC calendar fields of an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year.
    pub year: i64,
    /// Month, 1-12.
    pub month: u32,
    /// Day, 1-31.
    pub day: u32,
    /// Hour, 0-23.
    pub hour: u32,
    /// Minute.
    pub minute: u32,
    /// Second.
    pub second: u32,
    /// Millisecond.
    pub millis: u32,
}

impl Civil {
    /// The calendar fields of `unix_ms`.
    pub fn from_unix_ms(unix_ms: i64) -> Civil {
        let secs = unix_ms.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil { year, month, day, hour: (rem / 3600) as u32, minute: (rem % 3600 / 60) as u32, second: (rem % 60) as u32, millis: unix_ms.rem_euclid(1000) as u32 }
    }

    /// Unix milliseconds of these fields (UTC).
    pub fn to_unix_ms(&self) -> i64 {
        let (month, day) = (self.month as i64, self.day as i64);
        let y = if month <= 2 { self.year - 1 } else { self.year };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        (days * 86_400 + self.hour as i64 * 3600 + self.minute as i64 * 60 + self.second as i64) * 1000 + self.millis as i64
    }
}

/// Formats Unix milliseconds as RFC 3339 UTC (`2026-11-25T15:01:44.123Z`).
pub fn rfc3339(unix_ms: i64) -> String {
    let c = Civil::from_unix_ms(unix_ms);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis)
}

/// Parses RFC 3339 (`2026-11-25T14:02:00Z`; fractional seconds and `+hh:mm` offsets allowed)
/// into Unix milliseconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r).and_then(|s| s.parse::<u32>().ok());
    let mut civil = Civil { year: num(0..4)? as i64, month: num(5..7)?, day: num(8..10)?, hour: num(11..13)?, minute: num(14..16)?, second: num(17..19)?, millis: 0 };
    if !(1..=12).contains(&civil.month) || !(1..=31).contains(&civil.day) || civil.hour > 23 || civil.minute > 59 || civil.second > 60 {
        return None;
    }
    let mut at = 19;
    if b.get(at) == Some(&b'.') {
        let digits: String = text[at + 1..].chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            return None;
        }
        civil.millis = format!("{:0<3}", &digits[..digits.len().min(3)]).parse().ok()?;
        at += 1 + digits.len();
    }
    let offset_min = match text.get(at..) {
        Some("Z") | Some("z") => 0,
        Some(zone) if zone.len() == 6 && (zone.starts_with('+') || zone.starts_with('-')) && &zone[3..4] == ":" => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            sign * (zone[1..3].parse::<i64>().ok()? * 60 + zone[4..6].parse::<i64>().ok()?)
        }
        _ => return None,
    };
    Some(civil.to_unix_ms() - offset_min * 60_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_618_904_123), "2026-11-25T15:01:44.123Z");
        for ms in [-86_400_001i64, 0, 951_782_400_000, 1_795_627_359_123, 4_102_444_800_000] {
            assert_eq!(Civil::from_unix_ms(ms).to_unix_ms(), ms);
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(parse_rfc3339("2026-11-25T18:22:39.1+01:00"), Some(1_795_627_359_100));
        for bad in ["", "2026-13-01T00:00:00Z", "2026-11-25T17:22:39", "2026-11-25T17:22:39.Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
