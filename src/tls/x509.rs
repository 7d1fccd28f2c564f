//! The one thing ringlb reads from a certificate itself: its validity period (RFC 5280
//! 4.1.2.5), to refuse an expired or not yet valid certificate with its dates. A DER walk of
//! a few lines; rustls and webpki check everything else.

/// `(not_before, not_after)` of a DER certificate, in seconds since the Unix epoch.
pub fn validity(cert: &[u8]) -> Result<(i64, i64), &'static str> {
    let (tag, certificate, _) = tlv(cert)?;
    expect(tag, 0x30)?;
    let (tag, tbs, _) = tlv(certificate)?;
    expect(tag, 0x30)?;
    let mut rest = tbs;
    // version [0] EXPLICIT (optional), serialNumber, signature, issuer, then validity.
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xA0 {
        rest = after;
    }
    for _ in 0..3 {
        let (_, _, after) = tlv(rest)?;
        rest = after;
    }
    let (tag, validity, _) = tlv(rest)?;
    expect(tag, 0x30)?;
    let (t1, v1, after) = tlv(validity)?;
    let (t2, v2, _) = tlv(after)?;
    Ok((time(t1, v1)?, time(t2, v2)?))
}

fn expect(tag: u8, want: u8) -> Result<(), &'static str> {
    if tag == want {
        Ok(())
    } else {
        Err("unexpected DER structure")
    }
}

/// One DER element: its tag, its contents, and what follows it.
fn tlv(b: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    const SHORT: &str = "truncated DER";
    let (&tag, b) = b.split_first().ok_or(SHORT)?;
    let (&first, mut b) = b.split_first().ok_or(SHORT)?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7F) as usize;
        if n == 0 || n > 4 || b.len() < n {
            return Err(SHORT);
        }
        let len = b[..n].iter().fold(0usize, |a, &x| (a << 8) | x as usize);
        b = &b[n..];
        len
    };
    if b.len() < len {
        return Err(SHORT);
    }
    Ok((tag, &b[..len], &b[len..]))
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, v: &[u8]) -> Result<i64, &'static str> {
    const BAD: &str = "bad validity time";
    let digits = |s: &[u8]| -> Result<i64, &'static str> {
        s.iter().try_fold(0i64, |a, &d| {
            if d.is_ascii_digit() {
                Ok(a * 10 + (d - b'0') as i64)
            } else {
                Err(BAD)
            }
        })
    };
    let (year, rest) = match (tag, v.len()) {
        (0x17, 13) => {
            let y = digits(&v[..2])?;
            (if y < 50 { 2000 + y } else { 1900 + y }, &v[2..])
        }
        (0x18, 15) => (digits(&v[..4])?, &v[4..]),
        _ => return Err(BAD),
    };
    if rest[10] != b'Z' {
        return Err(BAD);
    }
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let (h, m, s) = (
        digits(&rest[4..6])?,
        digits(&rest[6..8])?,
        digits(&rest[8..10])?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return Err(BAD);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2025-01-31 12:00:00 UTC`.
pub fn format(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(format(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format(951_782_400), "2000-02-29 00:00:00 UTC");
        let t = time(0x17, b"491231235959Z").unwrap();
        assert_eq!(format(t), "2049-12-31 23:59:59 UTC");
        let t = time(0x18, b"20500101000000Z").unwrap();
        assert_eq!(format(t), "2050-01-01 00:00:00 UTC");
        assert!(time(0x17, b"501301000000Z").is_err());
        assert!(time(0x17, b"5012010000Z").is_err());
    }

    #[test]
    fn reads_the_validity_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["a.test".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2021, 3, 4);
        params.not_after = rcgen::date_time_ymd(2055, 6, 7);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (nb, na) = validity(cert.der()).unwrap();
        assert_eq!(format(nb), "2021-03-04 00:00:00 UTC");
        assert_eq!(format(na), "2055-06-07 00:00:00 UTC");
        assert!(validity(&cert.der()[..40]).is_err());
    }
}
