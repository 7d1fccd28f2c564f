//! Durations (`"500ms"`, `"2s"`, `"1m30s"`) and sizes (`1048576`, `"512k"`, `"10m"`, `"1g"`).
//!
//! As in nginx, a duration is one or more `<number><unit>` groups with units `ms`, `s`, `m`,
//! `h`, `d`, and a bare number means seconds; a size is bytes, or a number with a `k`, `m`
//! or `g` suffix (powers of 1024, either case).

use std::time::Duration;

/// Parses a duration; the error says what a duration looks like.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration; write a number with a unit: \"500ms\", \"2s\", \"1m\", \
             \"1h\", \"1d\", or several (\"1m30s\")"
        )
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().map(Duration::from_secs).map_err(|_| bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
            "d" => Duration::from_secs(n.checked_mul(86_400).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    Ok(total)
}

/// Parses a size in bytes from a string such as `"10m"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("{text:?} is not a size; write bytes (16384) or a number with k, m or g (\"16k\", \"10m\", \"1g\")")
    };
    let s = text.trim();
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 10),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 20),
        Some(b'g' | b'G') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).ok_or_else(bad)
}

/// `2s`, `500ms`, `1m30s`: the shortest way to write `d` back, for the check summary.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out
}

/// `10m`, `512k`, `1234`: a size back in the shortest exact form.
pub fn format_size(n: u64) -> String {
    for (unit, shift) in [("g", 30), ("m", 20), ("k", 10)] {
        if n != 0 && n % (1 << shift) == 0 {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn bare_number_is_seconds_like_nginx() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_say_what_a_duration_is() {
        for bad in [
            "",
            "s",
            "2x",
            "-1s",
            "1.5s",
            "2 s x",
            "ms",
            "99999999999999999999d",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("is not a duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("10m"), Ok(10 << 20));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        for bad in ["", "k", "10x", "-1", "1.5m", "10mb"] {
            assert!(
                parse_size(bad).unwrap_err().contains("is not a size"),
                "{bad}"
            );
        }
    }

    #[test]
    fn formatting_round_trips() {
        for s in ["0s", "500ms", "2s", "1m30s", "1h", "1d2h"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
        for s in ["0", "1234", "512k", "10m", "1g"] {
            assert_eq!(format_size(parse_size(s).unwrap()), s);
        }
    }
}
