//! Request heads: parsed with httparse into offsets, checked against RFC 9112's framing
//! rules so that nothing ambiguous is ever forwarded (request smuggling).

use super::response;
use super::{has_token, hop_header, range_of, span_of, trim, HeaderSpan, Hop, MAX_HEADERS};

/// Longest request target: nginx answers 414 when the request line outgrows its 8 KiB
/// large header buffer.
pub const MAX_URI_BYTES: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Trace,
    Other,
}

impl Method {
    fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"TRACE" => Method::Trace,
            _ => Method::Other,
        }
    }

    /// nginx retries everything but POST, LOCK and PATCH once sent (`non_idempotent`).
    /// Unknown methods are treated as non-idempotent: a retry must never repeat a side
    /// effect we cannot reason about.
    pub fn is_idempotent(self) -> bool {
        !matches!(self, Method::Post | Method::Patch | Method::Other)
    }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head; spans index the buffer it was parsed from.
#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    pub method_span: (u32, u32),
    /// The target as forwarded: origin-form path and query (absolute-form is reduced to it).
    pub target: (u32, u32),
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<HeaderSpan>,
    /// Bytes of the head, including the blank line.
    pub head_len: usize,
    pub body: RequestBody,
    /// The Host header, or the authority of an absolute-form target.
    pub host: Option<(u32, u32)>,
    /// Whether the client wants the connection kept after this request.
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` header: a tunnel if the backend agrees (and
    /// the location passes the token on).
    pub upgrade: bool,
    /// The Upgrade header's value, when `upgrade`.
    pub upgrade_value: Option<(u32, u32)>,
    /// Some field name contains `_` (nginx drops those unless `underscores_in_headers`).
    pub underscore: bool,
    /// The Connection header's value, whose tokens name more hop-by-hop headers.
    pub connection: Option<(u32, u32)>,
    /// The head can be forwarded byte for byte (plus `proxy_set_header` lines): HTTP/1.1,
    /// origin-form, CRLF line ends, no hop-by-hop header, no Expect, Content-Length (if
    /// any) in canonical form. Anything else is rewritten header by header.
    pub verbatim: bool,
}

impl Default for RequestHead {
    fn default() -> Self {
        RequestHead {
            method: Method::Get,
            method_span: (0, 0),
            target: (0, 0),
            minor: 1,
            // Grows on the first head: an idle connection that never sent one costs nothing.
            headers: Vec::new(),
            head_len: 0,
            body: RequestBody::None,
            host: None,
            keep_alive: true,
            expect_continue: false,
            upgrade: false,
            upgrade_value: None,
            underscore: false,
            connection: None,
            verbatim: false,
        }
    }
}

/// What is wrong with a request; each maps to exactly one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("bad request: {0}")]
    Bad(&'static str),
    #[error("request header fields too large")]
    HeadTooLarge,
    #[error("request URI too long")]
    UriTooLong,
    #[error("HTTP version not supported")]
    Version,
    #[error("transfer coding not implemented")]
    NotImplemented,
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl RequestError {
    pub fn status(self) -> u16 {
        match self {
            RequestError::Bad(_) => 400,
            RequestError::HeadTooLarge => 431,
            RequestError::UriTooLong => 414,
            RequestError::Version => 505,
            RequestError::NotImplemented => 501,
            RequestError::MethodNotAllowed => 405,
        }
    }
}

/// Parses the head at the start of `buf` into `head`. `Ok(false)`: incomplete, read more.
pub fn parse(buf: &[u8], head: &mut RequestHead) -> Result<bool, RequestError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if let Some(method_end) = req.method.map(|m| m.len()) {
                // A request line still unfinished past the URI limit is a 414, not a 431.
                if req.path.is_none() && buf.len() > MAX_URI_BYTES + method_end + 1 {
                    let line_done = buf.iter().take(MAX_URI_BYTES + 64).any(|&b| b == b'\n');
                    if !line_done {
                        return Err(RequestError::UriTooLong);
                    }
                }
            }
            return Ok(false);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(httparse::Error::HeaderName) => {
            return Err(RequestError::Bad("invalid header name"));
        }
        Err(httparse::Error::HeaderValue) => {
            return Err(RequestError::Bad("invalid header value"));
        }
        Err(httparse::Error::Token) => return Err(RequestError::Bad("invalid method")),
        Err(httparse::Error::NewLine) => return Err(RequestError::Bad("invalid line ending")),
        Err(_) => return Err(RequestError::Bad("malformed request")),
    };
    let method = req.method.unwrap_or("");
    let path = req.path.unwrap_or("");
    if path.len() > MAX_URI_BYTES {
        return Err(RequestError::UriTooLong);
    }
    head.method = Method::from_bytes(method.as_bytes());
    head.method_span = span_of(buf, method.as_bytes());
    head.minor = req.version.unwrap_or(1);
    head.head_len = head_len;
    head.headers.clear();
    head.body = RequestBody::None;
    head.host = None;
    head.expect_continue = false;
    head.upgrade = false;
    head.upgrade_value = None;
    head.underscore = false;
    head.connection = None;

    if method == "CONNECT" {
        return Err(RequestError::MethodNotAllowed);
    }
    head.target = target_of(buf, path.as_bytes(), method, head)?;

    let mut content_length: Option<u64> = None;
    let mut host_headers = 0;
    let mut chunked = false;
    let mut upgrade_header = false;
    let mut close = false;
    let mut keep_alive_token = false;
    // See `RequestHead::verbatim`; the header checks ride along this loop.
    let mut verbatim = head.minor == 1;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value = h.value;
        let name_span = span_of(buf, name);
        head.headers.push(HeaderSpan {
            name: name_span,
            value: span_of(buf, value),
        });
        // Each line must end in CRLF (httparse also takes a bare LF, which a backend
        // might read differently): a header line ends right before the next name.
        let start = name_span.0 as usize;
        verbatim &= start >= 2 && &buf[start - 2..start] == b"\r\n";
        head.underscore |= name.contains(&b'_');
        let hop = hop_header(name);
        if hop.is_some() {
            verbatim &= hop == Some(Hop::ContentLength) && response::is_canonical_number(value);
        }
        match hop {
            None if name.eq_ignore_ascii_case(b"host") => {
                host_headers += 1;
                if host_headers > 1 {
                    return Err(RequestError::Bad("more than one Host header"));
                }
                if !valid_host(trim(value)) {
                    return Err(RequestError::Bad("invalid Host header"));
                }
                if head.host.is_none() {
                    head.host = Some(span_of(buf, trim(value)));
                }
            }
            None if name.eq_ignore_ascii_case(b"expect") => {
                if trim(value).eq_ignore_ascii_case(b"100-continue") {
                    // RFC 9110 10.1.1: an HTTP/1.0 client's Expect is ignored (it cannot
                    // understand an interim response).
                    head.expect_continue = head.minor == 1;
                } else {
                    return Err(RequestError::Bad("unsupported Expect"));
                }
            }
            Some(Hop::Upgrade) => {
                upgrade_header = true;
                head.upgrade_value = Some(span_of(buf, trim(value)));
            }
            Some(Hop::Connection) => {
                if has_token(value, b"close") {
                    close = true;
                }
                if has_token(value, b"keep-alive") {
                    keep_alive_token = true;
                }
                if has_token(value, b"upgrade") {
                    head.upgrade = true;
                }
                head.connection = Some(span_of(buf, value));
            }
            Some(Hop::ContentLength) => {
                if content_length.is_some() {
                    return Err(RequestError::Bad("more than one Content-Length"));
                }
                content_length = Some(
                    parse_content_length(value)
                        .ok_or(RequestError::Bad("invalid Content-Length"))?,
                );
            }
            Some(Hop::TransferEncoding) => {
                if chunked {
                    return Err(RequestError::Bad("more than one Transfer-Encoding"));
                }
                let v = trim(value);
                if v.eq_ignore_ascii_case(b"chunked") {
                    chunked = true;
                } else if chunked_applied_twice(v) {
                    // RFC 9112 6.1: chunked is never applied more than once.
                    return Err(RequestError::Bad("chunked applied more than once"));
                } else if last_coding_is_chunked(v) {
                    // gzip, chunked: valid HTTP, but ringlb re-frames bodies and does not
                    // carry other codings through.
                    return Err(RequestError::NotImplemented);
                } else {
                    return Err(RequestError::Bad("Transfer-Encoding must end in chunked"));
                }
            }
            _ => {}
        }
    }
    if head.host.is_none() && head.minor == 1 {
        return Err(RequestError::Bad("missing Host header"));
    }
    head.body = match (chunked, content_length) {
        (true, Some(_)) => {
            return Err(RequestError::Bad(
                "both Content-Length and Transfer-Encoding",
            ))
        }
        (true, None) if head.minor == 0 => {
            return Err(RequestError::Bad(
                "Transfer-Encoding in an HTTP/1.0 request",
            ))
        }
        (true, None) => RequestBody::Chunked,
        (false, Some(0)) | (false, None) => RequestBody::None,
        (false, Some(n)) => RequestBody::Length(n),
    };
    head.upgrade &= upgrade_header && head.minor == 1;
    if !head.upgrade {
        head.upgrade_value = None;
    }
    head.keep_alive = if head.minor == 1 {
        !close
    } else {
        keep_alive_token && !close
    };
    // Origin-form as written: the forwarded target starts right after "METHOD " (an
    // absolute-form target is forwarded reduced to its path, so never verbatim).
    let origin_form =
        head.target.0 == head.method_span.1 + 1 && buf.get(head.target.0 as usize) == Some(&b'/');
    // Empty lines before the request line (RFC 9112 2.2 lets a server skip them) are
    // consumed, never forwarded: the verbatim copy starts at the buffer's start.
    head.verbatim = verbatim
        && head.method_span.0 == 0
        && origin_form
        && !head.expect_continue
        && head.head_len >= 4
        && &buf[head.head_len - 4..head.head_len] == b"\r\n\r\n";
    Ok(true)
}

/// Reduces the target to what is forwarded. Origin-form and `*` pass as they are;
/// absolute-form `http://host/path` gives its host and forwards `/path` (RFC 9112 3.2.2:
/// the target's authority wins over any Host header).
///
/// An absolute-form host is then routed exactly like a Host header, as nginx does: one that
/// matches no `server_name` on the listener goes to the listener's default server. That is
/// safe because ringlb is no forward proxy: it never connects to the named host, only to
/// the location's upstream, and the Host it forwards is this same authority (the client's
/// Host header is dropped), so the routing and the backend see one host, never two.
fn target_of(
    buf: &[u8],
    path: &[u8],
    method: &str,
    head: &mut RequestHead,
) -> Result<(u32, u32), RequestError> {
    match path.first() {
        Some(b'/') => Ok(span_of(buf, path)),
        Some(b'*') if path.len() == 1 && method == "OPTIONS" => Ok(span_of(buf, path)),
        _ => {
            let lower_ok = path.len() > 7 && path[..7].eq_ignore_ascii_case(b"http://");
            if !lower_ok {
                return Err(RequestError::Bad("invalid request target"));
            }
            let rest = &path[7..];
            let slash = rest.iter().position(|&b| b == b'/' || b == b'?');
            let (authority, tail) = match slash {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, &rest[rest.len()..]),
            };
            if authority.is_empty() || !valid_host(authority) || authority.contains(&b'@') {
                return Err(RequestError::Bad("invalid absolute-form authority"));
            }
            head.host = Some(span_of(buf, authority));
            if tail.first() == Some(&b'/') {
                Ok(span_of(buf, tail))
            } else {
                // `http://host` or `http://host?q`: an empty path, which rewrite sends as
                // `/` (plus the query).
                let r = range_of(buf, tail);
                Ok((r.start as u32, r.end as u32))
            }
        }
    }
}

/// RFC 9112 6.3: Content-Length is 1*DIGIT; no sign, no list, no spaces inside.
fn parse_content_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| n * 10 + (d - b'0') as u64))
}

fn chunked_applied_twice(v: &[u8]) -> bool {
    v.split(|&b| b == b',')
        .filter(|c| trim(c).eq_ignore_ascii_case(b"chunked"))
        .count()
        > 1
}

fn last_coding_is_chunked(v: &[u8]) -> bool {
    v.rsplit(|&b| b == b',')
        .next()
        .is_some_and(|c| trim(c).eq_ignore_ascii_case(b"chunked"))
}

/// Host is `uri-host [ ":" port ]` (RFC 9110 7.2, RFC 3986 3.2.2): a name or IPv4 address
/// without `:`, or an IPv6 literal in brackets, then optionally `:` and digits (a port
/// that is not a number is a 400, where nginx would pass it on). No spaces, no control
/// bytes, no slash, no backslash.
fn valid_host(h: &[u8]) -> bool {
    if h.is_empty() || h.len() > 255 {
        return false;
    }
    let (name, port) = if h[0] == b'[' {
        let Some(close) = h.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &h[1..close];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match &h[close + 1..] {
            [] => (&h[..0], None),
            [b':', port @ ..] => (&h[..0], Some(port)),
            _ => return false,
        }
    } else {
        match h.iter().position(|&b| b == b':') {
            Some(i) => (&h[..i], Some(&h[i + 1..])),
            None => (h, None),
        }
    };
    let port_ok = port.is_none_or(|p| {
        p.len() <= 5 && p.iter().all(u8::is_ascii_digit) && (p.len() < 5 || p <= &b"65535"[..])
    });
    port_ok && name.iter().all(|&b| HOST_NAME_BYTE[b as usize])
}

/// The bytes of a reg-name or IPv4 address (RFC 3986: unreserved, sub-delims, `%` of a
/// pct-encoding), as a table: one load per byte of every request's Host.
static HOST_NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let extra = b"-._~!$&'()*+,;=%";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
};

/// httparse says "version" for anything after the target it does not like; a well-formed
/// `HTTP/x.y` other than 1.0/1.1 is a 505, anything else (HTTP/0.9's bare line) a 400.
fn version_error(buf: &[u8]) -> RequestError {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = trim_cr(&buf[..line_end]);
    match line.rsplit(|&b| b == b' ').next() {
        Some(v)
            if v.len() == 8
                && v.starts_with(b"HTTP/")
                && v[5].is_ascii_digit()
                && v[6] == b'.'
                && v[7].is_ascii_digit() =>
        {
            RequestError::Version
        }
        _ => RequestError::Bad("malformed request line"),
    }
}

fn trim_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<RequestHead, RequestError> {
        let mut h = RequestHead::default();
        match parse(s.as_bytes(), &mut h)? {
            true => Ok(h),
            false => Err(RequestError::Bad("incomplete")),
        }
    }

    #[test]
    fn simple_get() {
        let s = "GET /a?b=1 HTTP/1.1\r\nHost: x.com\r\nAccept: */*\r\n\r\n";
        let h = p(s).unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(&s[h.target.0 as usize..h.target.1 as usize], "/a?b=1");
        assert_eq!(h.headers.len(), 2);
        assert_eq!(h.head_len, s.len());
        assert!(h.keep_alive);
        assert_eq!(h.body, RequestBody::None);
    }

    #[test]
    fn framing_rules() {
        let bad = [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  folded\r\n\r\n",
            "GET /\r\n\r\n",
            "GET foo HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX\t: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n\tX: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / http/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
            "GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n",
        ];
        for b in bad {
            assert_eq!(p(b).err().map(|e| e.status()), Some(400), "{b:?}");
        }
        assert_eq!(
            p("GET / HTTP/2.0\r\nHost: a\r\n\r\n")
                .err()
                .map(|e| e.status()),
            Some(505)
        );
        assert_eq!(
            p("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
                .err()
                .map(|e| e.status()),
            Some(501)
        );
    }

    #[test]
    fn absolute_form_gives_host_and_path() {
        let s = "GET http://example.com/x?y HTTP/1.1\r\nHost: other\r\n\r\n";
        let h = p(s).unwrap();
        assert_eq!(
            &s[h.host.unwrap().0 as usize..h.host.unwrap().1 as usize],
            "example.com"
        );
        assert_eq!(&s[h.target.0 as usize..h.target.1 as usize], "/x?y");
    }

    #[test]
    fn http10_keepalive() {
        assert!(!p("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            p("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !p("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn partial_is_not_error() {
        let mut h = RequestHead::default();
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n", &mut h), Ok(false));
    }

    #[test]
    fn host_ports_are_numbers() {
        for ok in [
            "x",
            "x:80",
            "x:",
            "1.2.3.4:65535",
            "[::1]",
            "[::1]:8080",
            "a-b.c_d",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "x:abc", "x:80x", "x:1:2", "[::1]x", "[::1]:x", "[zz]", "x:65536", "x:123456", "",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
        assert_eq!(
            p("GET / HTTP/1.1\r\nHost: t:abc\r\n\r\n")
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn hygiene_flags() {
        // Leading empty lines are skipped, and the head is then never copied verbatim.
        let h = p("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(h.method_span.0 > 0 && !h.verbatim);
        let h = p("GET / HTTP/1.1\r\nHost: x\r\nX_A: 1\r\n\r\n").unwrap();
        assert!(h.underscore);
        let h =
            p("POST / HTTP/1.0\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                .unwrap();
        assert!(!h.expect_continue);
        let h = p("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade:  h2c \r\n\r\n")
            .unwrap();
        let (a, b) = h.upgrade_value.unwrap();
        assert!(h.upgrade);
        assert_eq!(
            &b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade:  h2c \r\n\r\n"
                [a as usize..b as usize],
            b"h2c"
        );
    }
}
