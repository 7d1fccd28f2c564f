//! What a request's validators and `Range` make of a file that exists: 200, 206, 304, 412
//! or 416. Pure functions over the header values and the file's size and modification time,
//! in RFC 9110's order (section 13.2.2): `If-Match`, `If-Unmodified-Since`, `If-None-Match`,
//! `If-Modified-Since`, then `If-Range` and `Range`.
//!
//! nginx's forms where it has them: the entity tag is `"<mtime hex>-<size hex>"`; `Range`
//! is parsed as `ngx_http_range_parse` does (a syntax error after `bytes=` or no satisfiable
//! range is a 416, a first range starting at 0 that is empty declines to a 200); several
//! satisfiable ranges get the whole file (200), as nginx would without multipart responses.
//! One deliberate difference: `If-Modified-Since` answers 304 for any date at or after the
//! modification time (RFC 9110, nginx's `if_modified_since before`), not only the exact one
//! (nginx's default `exact`), so caches that store their own fetch time still revalidate.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::http::trim;

/// A file's validators: what its entity tag and Last-Modified are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validators {
    pub size: u64,
    /// Modification time, seconds since the epoch (HTTP dates have whole seconds).
    pub mtime: i64,
}

impl Validators {
    /// The entity tag, nginx's strong form: `"` mtime in hex `-` size in hex `"`.
    pub fn etag(&self) -> Etag {
        let mut e = Etag {
            buf: [0; 35],
            len: 0,
        };
        e.push(b'"');
        e.push_hex(self.mtime.max(0) as u64);
        e.push(b'-');
        e.push_hex(self.size);
        e.push(b'"');
        e
    }
}

/// An entity tag, built on the stack (at most two quotes, 32 hex digits and a dash).
#[derive(Debug, Clone, Copy)]
pub struct Etag {
    buf: [u8; 35],
    len: u8,
}

impl Etag {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len as usize] = b;
        self.len += 1;
    }

    fn push_hex(&mut self, n: u64) {
        let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
        for i in (0..digits).rev() {
            self.push(b"0123456789abcdef"[((n >> (i * 4)) & 15) as usize]);
        }
    }
}

/// The request headers that decide the answer, as their raw values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Conditions<'a> {
    pub if_match: Option<&'a [u8]>,
    pub if_unmodified_since: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
    pub range: Option<&'a [u8]>,
    pub if_range: Option<&'a [u8]>,
}

impl<'a> Conditions<'a> {
    /// Takes the header named `name` if it is one of the six (the first occurrence wins).
    pub fn note(&mut self, name: &[u8], value: &'a [u8]) {
        let slot = match name.len() {
            5 if name.eq_ignore_ascii_case(b"range") => &mut self.range,
            8 if name.eq_ignore_ascii_case(b"if-match") => &mut self.if_match,
            8 if name.eq_ignore_ascii_case(b"if-range") => &mut self.if_range,
            13 if name.eq_ignore_ascii_case(b"if-none-match") => &mut self.if_none_match,
            17 if name.eq_ignore_ascii_case(b"if-modified-since") => &mut self.if_modified_since,
            19 if name.eq_ignore_ascii_case(b"if-unmodified-since") => {
                &mut self.if_unmodified_since
            }
            _ => return,
        };
        if slot.is_none() {
            *slot = Some(trim(value));
        }
    }
}

/// The answer for an existing regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// 200 with the whole file.
    Full,
    /// 206 with `len` bytes from `start`.
    Partial { start: u64, len: u64 },
    /// 304.
    NotModified,
    /// 412.
    PreconditionFailed,
    /// 416 (`Content-Range: bytes */SIZE`).
    Unsatisfiable,
}

/// Decides the answer for a GET or HEAD of a file with validators `v`.
pub fn decide(c: &Conditions, v: &Validators) -> Decision {
    if let Some(list) = c.if_match {
        if !list_matches(list, v, false) {
            return Decision::PreconditionFailed;
        }
    } else if let Some(date) = c.if_unmodified_since.and_then(parse_date) {
        if v.mtime > date {
            return Decision::PreconditionFailed;
        }
    }
    if let Some(list) = c.if_none_match {
        if list_matches(list, v, true) {
            return Decision::NotModified;
        }
    } else if let Some(date) = c.if_modified_since.and_then(parse_date) {
        if v.mtime <= date {
            return Decision::NotModified;
        }
    }
    let Some(range) = c.range else {
        return Decision::Full;
    };
    if let Some(if_range) = c.if_range {
        if !if_range_holds(if_range, v) {
            return Decision::Full;
        }
    }
    range_decision(range, v.size)
}

/// Whether an `If-Match` (strong comparison) or `If-None-Match` (weak comparison) list
/// names this file's entity tag; `*` names any existing file.
fn list_matches(list: &[u8], v: &Validators, weak: bool) -> bool {
    if trim(list) == b"*" {
        return true;
    }
    let own = v.etag();
    list.split(|&b| b == b',').any(|tag| {
        let tag = trim(tag);
        let tag = match tag.strip_prefix(b"W/") {
            Some(t) if weak => t,
            Some(_) => return false, // a weak tag never matches strongly
            None => tag,
        };
        tag == own.as_bytes()
    })
}

/// nginx's If-Range: a value ending in `"` is an entity tag, compared byte for byte;
/// anything else is a date that must equal Last-Modified exactly.
fn if_range_holds(value: &[u8], v: &Validators) -> bool {
    if value.len() >= 2 && value.last() == Some(&b'"') {
        return value == v.etag().as_bytes();
    }
    parse_date(value) == Some(v.mtime)
}

/// An HTTP date as seconds since the epoch; `None` for anything unparsable (the header is
/// then ignored, as RFC 9110 asks).
pub fn parse_date(value: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(value).ok()?;
    let t = httpdate::parse_http_date(s).ok()?;
    Some(epoch_seconds(t))
}

/// Whole seconds since the epoch (negative before it).
pub fn epoch_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    }
}

/// `ngx_http_range_parse` for one file of `size` bytes.
fn range_decision(value: &[u8], size: u64) -> Decision {
    let Some(spec) = value
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case(b"bytes="))
        .map(|_| &value[6..])
    else {
        // Another unit: not a range request at all.
        return Decision::Full;
    };
    let mut p = spec;
    let mut found: Option<(u64, u64)> = None;
    let mut count = 0usize;
    loop {
        let (start, end) = match one_range(&mut p, size) {
            Some(r) => r,
            None => return Decision::Unsatisfiable,
        };
        if start < end {
            count += 1;
            if found.is_none() {
                found = Some((start, end));
            }
        } else if start == 0 {
            // An empty range at the start (e.g. any range of an empty file): nginx
            // declines the Range header and sends the whole file.
            return Decision::Full;
        }
        match p.split_first() {
            Some((b',', rest)) => p = rest,
            _ => break,
        }
    }
    match (found, count) {
        (None, _) => Decision::Unsatisfiable,
        (Some((start, end)), 1) => Decision::Partial {
            start,
            len: end - start,
        },
        // Several ranges: the whole file (no multipart/byteranges).
        _ => Decision::Full,
    }
}

/// One `first-last`, `first-` or `-suffix` at the start of `p` (spaces allowed around the
/// parts, as nginx does), as a half-open interval clamped to the file; `p` is left at the
/// `,` or end after it. `None` is a syntax error.
fn one_range(p: &mut &[u8], size: u64) -> Option<(u64, u64)> {
    skip_spaces(p);
    let (start, suffix) = if p.first() == Some(&b'-') {
        *p = &p[1..];
        (0, true)
    } else {
        let start = digits(p)?;
        skip_spaces(p);
        if p.first() != Some(&b'-') {
            return None;
        }
        *p = &p[1..];
        skip_spaces(p);
        if matches!(p.first(), None | Some(b',')) {
            return Some((start, size));
        }
        (start, false)
    };
    let last = digits(p)?;
    skip_spaces(p);
    if !matches!(p.first(), None | Some(b',')) {
        return None;
    }
    if suffix {
        let start = size.saturating_sub(last);
        return Some((start, size));
    }
    let end = if last >= size { size } else { last + 1 };
    Some((start, end))
}

fn skip_spaces(p: &mut &[u8]) {
    while p.first() == Some(&b' ') {
        *p = &p[1..];
    }
}

/// Decimal digits at the start of `p`; `None` when there are none or they overflow.
fn digits(p: &mut &[u8]) -> Option<u64> {
    let n = p.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    let mut v: u64 = 0;
    for &d in &p[..n] {
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    *p = &p[n..];
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Validators = Validators {
        size: 1000,
        mtime: 1_700_000_000,
    };
    /// `V`'s Last-Modified.
    const LM: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
    const BEFORE: &str = "Tue, 14 Nov 2023 22:13:19 GMT";
    const AFTER: &str = "Wed, 15 Nov 2023 22:13:20 GMT";

    fn etag(v: &Validators) -> String {
        String::from_utf8(v.etag().as_bytes().to_vec()).unwrap()
    }

    fn decide_with(headers: &[(&str, &str)], v: &Validators) -> Decision {
        let mut c = Conditions::default();
        for (n, val) in headers {
            c.note(n.as_bytes(), val.as_bytes());
        }
        decide(&c, v)
    }

    fn d(headers: &[(&str, &str)]) -> Decision {
        decide_with(headers, &V)
    }

    fn range(r: &str, size: u64) -> Decision {
        decide_with(&[("Range", r)], &Validators { size, mtime: 0 })
    }

    #[test]
    fn etag_is_nginx_hex_form_and_dates_round_trip() {
        assert_eq!(etag(&V), "\"6553f100-3e8\"");
        let extremes = Validators {
            size: u64::MAX,
            mtime: i64::MAX,
        };
        assert_eq!(etag(&extremes), "\"7fffffffffffffff-ffffffffffffffff\"");
        assert_eq!(etag(&Validators { size: 0, mtime: -5 }), "\"0-0\"");
        assert_eq!(parse_date(LM.as_bytes()), Some(V.mtime));
        // RFC 850 and asctime forms are accepted too (RFC 9110 5.6.7).
        assert_eq!(
            parse_date(b"Tuesday, 14-Nov-23 22:13:20 GMT"),
            Some(V.mtime)
        );
        assert_eq!(parse_date(b"Tue Nov 14 22:13:20 2023"), Some(V.mtime));
        assert_eq!(parse_date(b"yesterday"), None);
    }

    #[test]
    fn if_none_match_answers_304_with_weak_comparison() {
        let tag = etag(&V);
        assert_eq!(d(&[("If-None-Match", &tag)]), Decision::NotModified);
        assert_eq!(
            d(&[("if-none-match", &format!("W/{tag}"))]),
            Decision::NotModified
        );
        assert_eq!(
            d(&[("If-None-Match", &format!("\"x\", {tag} ,\"y\""))]),
            Decision::NotModified
        );
        assert_eq!(d(&[("If-None-Match", "*")]), Decision::NotModified);
        assert_eq!(d(&[("If-None-Match", "\"6553f100-3e9\"")]), Decision::Full);
        // The same file with another size or time is another version.
        let changed = Validators { size: 1001, ..V };
        assert_eq!(
            decide_with(&[("If-None-Match", &tag)], &changed),
            Decision::Full
        );
        // If-None-Match wins over If-Modified-Since (RFC 9110 13.1.3).
        assert_eq!(
            d(&[("If-None-Match", "\"other\""), ("If-Modified-Since", AFTER)]),
            Decision::Full
        );
    }

    #[test]
    fn if_modified_since_answers_304_at_or_after_the_modification() {
        assert_eq!(d(&[("If-Modified-Since", LM)]), Decision::NotModified);
        assert_eq!(d(&[("If-Modified-Since", AFTER)]), Decision::NotModified);
        assert_eq!(d(&[("If-Modified-Since", BEFORE)]), Decision::Full);
        assert_eq!(d(&[("If-Modified-Since", "garbage")]), Decision::Full);
    }

    #[test]
    fn if_match_and_if_unmodified_since_fail_with_412() {
        let tag = etag(&V);
        assert_eq!(d(&[("If-Match", &tag)]), Decision::Full);
        assert_eq!(d(&[("If-Match", "*")]), Decision::Full);
        assert_eq!(d(&[("If-Match", "\"nope\"")]), Decision::PreconditionFailed);
        // Strong comparison: a weak tag never matches.
        assert_eq!(
            d(&[("If-Match", &format!("W/{tag}"))]),
            Decision::PreconditionFailed
        );
        assert_eq!(
            d(&[("If-Unmodified-Since", BEFORE)]),
            Decision::PreconditionFailed
        );
        assert_eq!(d(&[("If-Unmodified-Since", LM)]), Decision::Full);
        // If-Match present: If-Unmodified-Since is not consulted.
        assert_eq!(
            d(&[("If-Match", &tag), ("If-Unmodified-Since", BEFORE)]),
            Decision::Full
        );
    }

    #[test]
    fn single_ranges_as_nginx_parses_them() {
        let p = |start, len| Decision::Partial { start, len };
        assert_eq!(range("bytes=0-99", 1000), p(0, 100));
        assert_eq!(range("bytes=100-", 1000), p(100, 900));
        assert_eq!(range("bytes=-100", 1000), p(900, 100));
        assert_eq!(range("bytes=-5000", 1000), p(0, 1000));
        assert_eq!(range("bytes=990-5000", 1000), p(990, 10));
        assert_eq!(range("bytes=999-999", 1000), p(999, 1));
        assert_eq!(range("BYTES= 5 - 9 ", 1000), p(5, 5));
    }

    #[test]
    fn unsatisfiable_and_malformed_ranges() {
        for r in [
            "bytes=1000-",
            "bytes=1000-1001",
            "bytes=5-2",
            "bytes=-0",
            "bytes=",
            "bytes=abc",
            "bytes=1-2x",
            "bytes=--1",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(range(r, 1000), Decision::Unsatisfiable, "{r}");
        }
        // Not the bytes unit: no range at all.
        assert_eq!(range("items=0-1", 1000), Decision::Full);
        // Empty files: any range declines to 200, as in nginx.
        assert_eq!(range("bytes=0-", 0), Decision::Full);
        assert_eq!(range("bytes=0-10", 0), Decision::Full);
    }

    #[test]
    fn several_ranges_get_the_whole_file_unless_only_one_is_satisfiable() {
        assert_eq!(range("bytes=0-1,5-6", 1000), Decision::Full);
        assert_eq!(range("bytes=0-1, -1", 1000), Decision::Full);
        assert_eq!(
            range("bytes=2000-3000,10-19", 1000),
            Decision::Partial { start: 10, len: 10 }
        );
        assert_eq!(
            range("bytes=2000-3000,4000-", 1000),
            Decision::Unsatisfiable
        );
    }

    #[test]
    fn if_range_keeps_the_range_only_for_the_same_version() {
        let tag = etag(&V);
        let partial = Decision::Partial { start: 0, len: 10 };
        let with = |ir: &str| d(&[("Range", "bytes=0-9"), ("If-Range", ir)]);
        assert_eq!(with(&tag), partial);
        assert_eq!(with("\"old\""), Decision::Full);
        assert_eq!(with(&format!("W/{tag}")), Decision::Full);
        assert_eq!(with(LM), partial);
        assert_eq!(with(AFTER), Decision::Full);
        assert_eq!(with("garbage"), Decision::Full);
        // A 304 comes before any range.
        assert_eq!(
            d(&[("Range", "bytes=0-9"), ("If-None-Match", &tag)]),
            Decision::NotModified
        );
    }
}
