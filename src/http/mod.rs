//! HTTP/1.1 message heads and bodies: parsing request and response heads into offsets
//! (`request`, `response`), body framing and the chunked decoder (`body`, `chunked`), where
//! a response body ends as it arrives (`framing`), and
//! writing the heads ringlb forwards (`rewrite`), with `proxy_set_header` templates
//! evaluated against the request's variables (`vars`), the normalised path locations are
//! matched on (`uri`), and the PROXY protocol header an L4 balancer puts before a
//! connection's first request (`proxy_protocol`).

pub mod body;
pub mod chunked;
pub mod framing;
pub mod proxy_protocol;
pub mod request;
pub mod response;
pub mod rewrite;
pub mod uri;
pub mod vars;

use std::ops::Range;

/// Most headers a request or response may carry; more is a 431 (request) or a 502
/// (response). nginx has no count limit but a byte limit; 100 is what hyper and most
/// servers allow and far above real traffic.
pub const MAX_HEADERS: usize = 100;

/// A header of a parsed head, as offsets into the buffer the head was parsed from, so
/// that a head is parsed without allocating.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderSpan {
    pub name: (u32, u32),
    pub value: (u32, u32),
}

impl HeaderSpan {
    pub fn name<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.name.0 as usize..self.name.1 as usize]
    }

    pub fn value<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.value.0 as usize..self.value.1 as usize]
    }
}

pub(crate) fn span_of(buf: &[u8], part: &[u8]) -> (u32, u32) {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    (start as u32, (start + part.len()) as u32)
}

pub(crate) fn range_of(buf: &[u8], part: &[u8]) -> Range<usize> {
    let (a, b) = span_of(buf, part);
    a as usize..b as usize
}

/// A hop-by-hop header (RFC 9110 7.6.1 plus the legacy ones), which a proxy never
/// forwards; Transfer-Encoding and Content-Length are among them because ringlb re-frames
/// every body itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    Te,
    Trailer,
    Upgrade,
    Connection,
    KeepAlive,
    ContentLength,
    ProxyConnection,
    TransferEncoding,
    ProxyAuthenticate,
}

/// Which hop-by-hop header `name` is, if any: one comparison tells the parsers both
/// whether to drop a header and which framing header it is.
#[inline]
pub fn hop_header(name: &[u8]) -> Option<Hop> {
    // Dispatch on the length first: most headers are ruled out without comparing bytes.
    let is = |h: &[u8]| name.eq_ignore_ascii_case(h);
    let hop = match name.len() {
        2 if is(b"te") => Hop::Te,
        7 if is(b"trailer") => Hop::Trailer,
        7 if is(b"upgrade") => Hop::Upgrade,
        10 if is(b"connection") => Hop::Connection,
        10 if is(b"keep-alive") => Hop::KeepAlive,
        14 if is(b"content-length") => Hop::ContentLength,
        16 if is(b"proxy-connection") => Hop::ProxyConnection,
        17 if is(b"transfer-encoding") => Hop::TransferEncoding,
        18 if is(b"proxy-authenticate") => Hop::ProxyAuthenticate,
        _ => return None,
    };
    Some(hop)
}

#[inline]
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    hop_header(name).is_some()
}

/// Whether the comma-separated `list` has `token` (case-insensitive, as Connection and
/// Transfer-Encoding values are).
pub fn has_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token))
}

pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Writes `n` in decimal without allocating.
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// The value of one hex digit (chunk sizes, `%XX` escapes).
pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Writes `n` in lower-case hex (chunk sizes) without allocating.
pub fn push_hex(out: &mut Vec<u8>, n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut tmp = [0u8; 16];
    let mut i = tmp.len();
    let mut n = n;
    loop {
        i -= 1;
        tmp[i] = DIGITS[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_numbers() {
        assert!(has_token(b"keep-alive, Upgrade", b"upgrade"));
        assert!(!has_token(b"keep-alive", b"close"));
        let mut v = Vec::new();
        push_decimal(&mut v, 0);
        v.push(b' ');
        push_decimal(&mut v, 1234567);
        v.push(b' ');
        push_hex(&mut v, 0x1f40);
        assert_eq!(v, b"0 1234567 1f40");
    }
}
