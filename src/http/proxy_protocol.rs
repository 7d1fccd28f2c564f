//! The PROXY protocol header (HAProxy's, versions 1 and 2) that an L4 balancer puts before
//! the first byte of a connection to say whose connection it is: [`parse`] reads it from the
//! connection's first bytes, before any TLS or HTTP.
//!
//! The parser is a pure function over the bytes read so far: "incomplete" is an ordinary
//! result (read more and call again with the longer buffer), and anything that is not a
//! well-formed header within the limits is an error, after which the connection is closed
//! (as nginx does on a `listen ... proxy_protocol` socket). A header says which addresses
//! to believe; whether to believe them is `realip`'s business (`real_ip_from`).
//!
//! Reference: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest v1 line, CRLF included: the specification's bound ("PROXY UNKNOWN" with two
/// full-length IPv6 addresses and ports fits in 107 bytes), so a v1 header never needs more
/// than one small read.
pub const V1_MAX: usize = 107;
/// Longest v2 header accepted, the 16 fixed bytes included. The format allows 16 + 65,535;
/// the addresses take at most 216 bytes and what balancers add as TLVs (AWS's VPC endpoint
/// id, Azure's link id, GCP's PSC id, ALPN/authority, an SSL summary) stays well under 1 KiB.
/// 4 KiB keeps the header within one read into the connection's first buffer while leaving
/// room for certificate-carrying TLVs; a longer one is refused rather than buffered.
pub const V2_MAX: usize = 4096;

/// The 12 bytes every v2 header starts with: chosen to be invalid as the start of any
/// text protocol (it contains a NUL and "\r\n\r\n").
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";
/// v2 fixed part: signature, version/command, family/protocol, length.
const V2_FIXED: usize = 16;

/// A complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// 1 or 2.
    pub version: u8,
    /// Bytes of the header at the start of the buffer: the connection's own data (TLS or
    /// HTTP) starts right after.
    pub len: usize,
    /// Where the balancer's client connected from and to. `None` when the header names no
    /// TCP endpoints (v1 `UNKNOWN`; v2 `LOCAL`, such as a balancer's own health check,
    /// `AF_UNSPEC` or `AF_UNIX`): the connection's own addresses stand, as the
    /// specification asks.
    pub addrs: Option<Endpoints>,
}

/// The original connection's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

/// What [`parse`] found in the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A prefix of a possible header: read more (the bound is [`V1_MAX`] or [`V2_MAX`],
    /// so the caller's read buffer never grows beyond that for this).
    Incomplete,
    Done(ProxyHeader),
}

/// Why the first bytes are not an acceptable header; the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Neither signature: a client speaking directly to a `proxy_protocol` listener.
    #[error("connection does not start with a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("PROXY protocol header longer than the limit")]
    TooLong,
}

/// Parses the PROXY header at the start of `buf` (the bytes read from a new connection).
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if starts_like(buf, &V2_SIGNATURE) {
        if buf.len() < V2_SIGNATURE.len() {
            return Ok(Parsed::Incomplete);
        }
        return parse_v2(buf);
    }
    if starts_like(buf, V1_PREFIX) {
        return parse_v1(buf);
    }
    Err(ProxyError::Missing)
}

/// `buf` and `sig` agree on their common length (an empty buffer agrees with anything).
fn starts_like(buf: &[u8], sig: &[u8]) -> bool {
    let n = buf.len().min(sig.len());
    buf[..n] == sig[..n]
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::TooLong)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err(ProxyError::Malformed("v1 line does not end in CRLF"));
    }
    let line = &buf[V1_PREFIX.len().min(lf - 1)..lf - 1];
    let mut words = line.split(|&b| b == b' ');
    let proto = words.next().unwrap_or_default();
    let len = lf + 1;
    let v4 = match proto {
        b"TCP4" => true,
        b"TCP6" => false,
        // "UNKNOWN" may be followed by anything (the specification: the receiver ignores it).
        b"UNKNOWN" => {
            return Ok(Parsed::Done(ProxyHeader {
                version: 1,
                len,
                addrs: None,
            }))
        }
        _ => {
            return Err(ProxyError::Malformed(
                "v1 protocol is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let mut next = || {
        words
            .next()
            .ok_or(ProxyError::Malformed("v1 line too short"))
    };
    let (src, dst) = (next()?, next()?);
    let (sport, dport) = (next()?, next()?);
    if words.next().is_some() {
        return Err(ProxyError::Malformed("v1 line has extra fields"));
    }
    let src = v1_ip(src, v4)?;
    let dst = v1_ip(dst, v4)?;
    Ok(Parsed::Done(ProxyHeader {
        version: 1,
        len,
        addrs: Some(Endpoints {
            source: SocketAddr::new(src, v1_port(sport)?),
            destination: SocketAddr::new(dst, v1_port(dport)?),
        }),
    }))
}

fn v1_ip(word: &[u8], v4: bool) -> Result<IpAddr, ProxyError> {
    let s = std::str::from_utf8(word).map_err(|_| ProxyError::Malformed("v1 address"))?;
    // std's parsers are strict (no leading zeros in IPv4 octets, no zone ids), as the
    // specification's inet_pton wording asks.
    let ip = if v4 {
        s.parse::<Ipv4Addr>().map(IpAddr::V4)
    } else {
        s.parse::<Ipv6Addr>().map(IpAddr::V6)
    };
    ip.map_err(|_| ProxyError::Malformed("v1 address does not match its family"))
}

fn v1_port(word: &[u8]) -> Result<u16, ProxyError> {
    let bad = ProxyError::Malformed("v1 port");
    // Decimal digits only, no sign, no leading zero (except "0" itself).
    if word.is_empty() || word.len() > 5 || !word.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    if word.len() > 1 && word[0] == b'0' {
        return Err(bad);
    }
    let n = word.iter().fold(0u32, |n, &d| n * 10 + (d - b'0') as u32);
    u16::try_from(n).map_err(|_| bad)
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.len() < V2_FIXED {
        return Ok(Parsed::Incomplete);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version is not 2"));
    }
    let local = match ver_cmd & 0x0f {
        0x0 => true,
        0x1 => false,
        _ => return Err(ProxyError::Malformed("v2 command is not LOCAL or PROXY")),
    };
    let fam = buf[13];
    let rest = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let len = V2_FIXED + rest;
    if len > V2_MAX {
        return Err(ProxyError::TooLong);
    }
    if buf.len() < len {
        return Ok(Parsed::Incomplete);
    }
    let body = &buf[V2_FIXED..len];
    // Transport: 0 UNSPEC, 1 STREAM, 2 DGRAM; anything else is not a valid header.
    if fam & 0x0f > 2 {
        return Err(ProxyError::Malformed("v2 transport protocol"));
    }
    let (addr_len, addrs) = match fam >> 4 {
        0x0 => (0, None),
        0x1 => (12, v2_inet(body)),
        0x2 => (36, v2_inet6(body)),
        0x3 => (216, None),
        _ => return Err(ProxyError::Malformed("v2 address family")),
    };
    if body.len() < addr_len {
        return Err(ProxyError::Malformed(
            "v2 length shorter than its addresses",
        ));
    }
    check_tlvs(&body[addr_len..])?;
    Ok(Parsed::Done(ProxyHeader {
        version: 2,
        len,
        // LOCAL: the balancer speaks for itself; whatever addresses follow are ignored.
        addrs: if local { None } else { addrs },
    }))
}

fn v2_inet(body: &[u8]) -> Option<Endpoints> {
    let b: &[u8; 12] = body.get(..12)?.try_into().ok()?;
    let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]));
    let port = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
    Some(Endpoints {
        source: SocketAddr::new(ip(0), port(8)),
        destination: SocketAddr::new(ip(4), port(10)),
    })
}

fn v2_inet6(body: &[u8]) -> Option<Endpoints> {
    let b: &[u8; 36] = body.get(..36)?.try_into().ok()?;
    let ip = |o: usize| {
        let octets: [u8; 16] = b[o..o + 16].try_into().unwrap_or_default();
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    let port = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
    Some(Endpoints {
        source: SocketAddr::new(ip(0), port(32)),
        destination: SocketAddr::new(ip(16), port(34)),
    })
}

/// TLVs (type, 16-bit length, value) after the addresses: none is used, but each must lie
/// within the header, so that a broken sender is refused rather than half-believed.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let [_, hi, lo, rest @ ..] = tlvs else {
            return Err(ProxyError::Malformed("v2 TLV header cut short"));
        };
        let n = u16::from_be_bytes([*hi, *lo]) as usize;
        tlvs = rest
            .get(n..)
            .ok_or(ProxyError::Malformed("v2 TLV runs past the header"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8]) -> ProxyHeader {
        match parse(buf) {
            Ok(Parsed::Done(h)) => h,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(fam);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\nGET / HTTP/1.1\r\n";
        let h = done(line);
        assert_eq!((h.version, h.len), (1, 45));
        assert_eq!(&line[h.len..h.len + 3], b"GET");
        let a = h.addrs.unwrap();
        assert_eq!(a.source, sa("192.0.2.1:56324"));
        assert_eq!(a.destination, sa("198.51.100.7:443"));

        let h = done(b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n");
        assert_eq!(h.addrs.unwrap().source, sa("[2001:db8::1]:65535"));
        assert_eq!(h.addrs.unwrap().destination, sa("[::1]:0"));

        for unknown in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n",
        ] {
            let h = done(unknown);
            assert_eq!((h.len, h.addrs), (unknown.len(), None));
        }
    }

    #[test]
    fn v1_longest_line_fits_and_one_more_byte_does_not() {
        let a = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY TCP6 {a} {a} 65535 65535\r\n");
        assert_eq!(line.len(), 104);
        assert_eq!(done(line.as_bytes()).len, 104);
        let unknown = format!("PROXY UNKNOWN {}\r\n", "x".repeat(V1_MAX - 16));
        assert_eq!(unknown.len(), V1_MAX);
        assert_eq!(done(unknown.as_bytes()).len, V1_MAX);
        let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(V1_MAX - 15));
        assert_eq!(parse(long.as_bytes()), Err(ProxyError::TooLong));
        // Without its line end, a line is incomplete until it reaches the limit.
        assert_eq!(
            parse(&long.as_bytes()[..V1_MAX - 1]),
            Ok(Parsed::Incomplete)
        );
        assert_eq!(parse(&long.as_bytes()[..V1_MAX]), Err(ProxyError::TooLong));
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete() {
        let v1 = b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n".to_vec();
        let mut body = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2];
        body.extend_from_slice(&[0x04, 0x00, 0x02, b'a', b'b']); // a NOOP TLV
        let v2 = v2(1, 0x11, &body);
        for h in [v1, v2] {
            for n in 0..h.len() {
                assert_eq!(parse(&h[..n]), Ok(Parsed::Incomplete), "{n} of {h:?}");
            }
            assert_eq!(done(&h).len, h.len());
        }
    }

    #[test]
    fn v1_malformed_lines_are_refused() {
        for bad in [
            &b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\n"[..], // bare LF
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2 3\r\n",
            b"PROXY TCP4  10.0.0.1 10.0.0.2 1 2\r\n", // two spaces
            b"PROXY TCP4 ::1 10.0.0.2 1 2\r\n",       // family mismatch
            b"PROXY TCP6 10.0.0.1 ::1 1 2\r\n",
            b"PROXY TCP4 10.0.0.01 10.0.0.2 1 2\r\n", // leading zero
            b"PROXY TCP4 10.0.0.1 10.0.0.2 65536 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 +1 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 01 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 \r\n",
            b"PROXY UDP4 10.0.0.1 10.0.0.2 1 2\r\n",
            b"PROXY \r\n",
            b"PROXY tcp4 10.0.0.1 10.0.0.2 1 2\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_connection_without_a_header_is_refused_at_once() {
        for plain in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"\x16\x03\x01",
            b"PROXX",
            b"\r\n\r\n\0X",
        ] {
            assert_eq!(parse(plain), Err(ProxyError::Missing), "{plain:?}");
        }
    }

    #[test]
    fn v2_inet_inet6_local_unspec_unix() {
        let mut body = vec![192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb];
        let h = done(&v2(1, 0x11, &body));
        assert_eq!((h.version, h.len), (2, 28));
        let a = h.addrs.unwrap();
        assert_eq!(a.source, sa("192.0.2.1:56324"));
        assert_eq!(a.destination, sa("198.51.100.7:443"));
        // LOCAL: addresses present but not to be used.
        assert_eq!(done(&v2(0, 0x11, &body)).addrs, None);
        // TLVs after the addresses are skipped.
        body.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2', 0xea, 0x00, 0x00]);
        let h = done(&v2(1, 0x11, &body));
        assert_eq!(
            (h.len, h.addrs.unwrap().source),
            (36, sa("192.0.2.1:56324"))
        );

        let mut six = Vec::new();
        six.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        six.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        six.extend_from_slice(&[0, 80, 1, 0]);
        let a = done(&v2(1, 0x21, &six)).addrs.unwrap();
        assert_eq!(a.source, sa("[2001:db8::1]:80"));
        assert_eq!(a.destination, sa("[::1]:256"));

        let h = done(&v2(0, 0x00, &[]));
        assert_eq!((h.len, h.addrs), (16, None));
        assert_eq!(done(&v2(1, 0x31, &[0; 216])).addrs, None);
    }

    #[test]
    fn v2_malformed_headers_are_refused() {
        let inet = [10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2];
        let mut bad_version = v2(1, 0x11, &inet);
        bad_version[12] = 0x11;
        let cases: Vec<(Vec<u8>, ProxyError)> = vec![
            (bad_version, ProxyError::Malformed("v2 version is not 2")),
            (
                v2(2, 0x11, &inet),
                ProxyError::Malformed("v2 command is not LOCAL or PROXY"),
            ),
            (
                v2(1, 0x41, &inet),
                ProxyError::Malformed("v2 address family"),
            ),
            (
                v2(1, 0x13, &inet),
                ProxyError::Malformed("v2 transport protocol"),
            ),
            (
                v2(1, 0x11, &inet[..11]),
                ProxyError::Malformed("v2 length shorter than its addresses"),
            ),
            (
                v2(1, 0x21, &[0; 35]),
                ProxyError::Malformed("v2 length shorter than its addresses"),
            ),
            (
                v2(1, 0x11, &[&inet[..], &[0x04, 0x00, 0x05, 1]].concat()),
                ProxyError::Malformed("v2 TLV runs past the header"),
            ),
            (
                v2(1, 0x11, &[&inet[..], &[0x04, 0x00]].concat()),
                ProxyError::Malformed("v2 TLV header cut short"),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse(&bytes), Err(want), "{bytes:?}");
        }
    }

    #[test]
    fn v2_length_is_bounded_before_the_bytes_arrive() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11]);
        h.extend_from_slice(&((V2_MAX - V2_FIXED + 1) as u16).to_be_bytes());
        assert_eq!(parse(&h), Err(ProxyError::TooLong));
        // AF_UNSPEC with the whole rest as one TLV: exactly the limit.
        let value = V2_MAX - V2_FIXED - 3;
        let mut body = vec![0x04];
        body.extend_from_slice(&(value as u16).to_be_bytes());
        body.resize(V2_MAX - V2_FIXED, 0);
        let at_limit = v2(1, 0x00, &body);
        assert_eq!(done(&at_limit).len, V2_MAX);
    }
}
