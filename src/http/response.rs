//! Response heads from backends: parsed into offsets; framing decided per RFC 9112 6.3.

use super::{has_token, hop_header, span_of, trim, HeaderSpan, Hop, MAX_HEADERS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    None,
    Length(u64),
    Chunked,
    /// Delimited by the backend closing the connection.
    Close,
}

#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: (u32, u32),
    pub minor: u8,
    pub headers: Vec<HeaderSpan>,
    pub head_len: usize,
    pub body: ResponseBody,
    /// Whether the backend lets the connection be reused after this response.
    pub keep_alive: bool,
    pub connection: Option<(u32, u32)>,
    /// The head can go to an HTTP/1.1 client byte for byte: HTTP/1.1, no hop-by-hop
    /// header, and Content-Length (if any) once and in canonical form. Most responses
    /// qualify, and are then relayed without being rewritten.
    pub verbatim: bool,
    /// `X-Accel-Buffering: no`: the server asks that this response not be buffered
    /// (server-sent events, long polling), as nginx honours it.
    pub no_buffering: bool,
}

impl Default for ResponseHead {
    fn default() -> Self {
        ResponseHead {
            status: 0,
            reason: (0, 0),
            minor: 1,
            // Grows on the first head: an idle connection that never sent one costs nothing.
            headers: Vec::new(),
            head_len: 0,
            body: ResponseBody::None,
            keep_alive: true,
            connection: None,
            verbatim: false,
            no_buffering: false,
        }
    }
}

/// A response ringlb will not forward: nginx's `invalid_header` (502, retryable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("upstream sent an invalid response: {0}")]
pub struct InvalidResponse(pub &'static str);

/// Parses the response head at the start of `buf`. `head_request`: the request was HEAD,
/// so the response has no body whatever its headers say. `Ok(false)`: incomplete.
pub fn parse(
    buf: &[u8],
    head: &mut ResponseHead,
    head_request: bool,
) -> Result<bool, InvalidResponse> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut raw);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(false),
        Err(httparse::Error::TooManyHeaders) => return Err(InvalidResponse("too many headers")),
        Err(_) => return Err(InvalidResponse("malformed head")),
    };
    let status = res.code.unwrap_or(0);
    if !(100..=999).contains(&status) {
        return Err(InvalidResponse("bad status code"));
    }
    head.status = status;
    head.reason = span_of(buf, res.reason.unwrap_or("").as_bytes());
    head.minor = res.version.unwrap_or(1);
    head.head_len = head_len;
    head.headers.clear();
    head.connection = None;
    head.no_buffering = false;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut other_coding = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut verbatim = head.minor == 1;
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        let value = h.value;
        let name_span = span_of(buf, name);
        head.headers.push(HeaderSpan {
            name: name_span,
            value: span_of(buf, value),
        });
        // httparse also takes bare LF line ends, which a client behind ringlb might read
        // differently: such a head is re-serialised with CRLF, never passed as written.
        let start = name_span.0 as usize;
        verbatim &= start >= 2 && &buf[start - 2..start] == b"\r\n";
        let Some(hop) = hop_header(name) else {
            if is_accel(name) {
                // nginx's instructions to the proxy, never relayed (`proxy_hide_header`).
                verbatim = false;
                if name.eq_ignore_ascii_case(b"x-accel-buffering") {
                    head.no_buffering = trim(value).eq_ignore_ascii_case(b"no");
                }
            }
            continue;
        };
        if hop == Hop::ContentLength {
            verbatim &= content_length.is_none() && is_canonical_number(value);
            let n = parse_length(value).ok_or(InvalidResponse("invalid Content-Length"))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(InvalidResponse("conflicting Content-Length"));
            }
            content_length = Some(n);
        } else if hop == Hop::TransferEncoding {
            verbatim = false;
            let last = value.rsplit(|&b| b == b',').next().map(trim).unwrap_or(b"");
            if last.eq_ignore_ascii_case(b"chunked") {
                chunked = true;
            } else {
                other_coding = true;
            }
        } else if hop == Hop::Connection {
            close |= has_token(value, b"close");
            keep_alive_token |= has_token(value, b"keep-alive");
            head.connection = Some(span_of(buf, value));
            verbatim = false;
        } else {
            verbatim = false;
        }
    }
    head.keep_alive = if head.minor == 1 {
        !close
    } else {
        keep_alive_token && !close
    };
    head.body = if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        ResponseBody::None
    } else if other_coding {
        // RFC 9112 6.3 rule 4: a final coding other than chunked is read until close.
        ResponseBody::Close
    } else if chunked {
        if content_length.is_some() {
            // Both: Transfer-Encoding wins, and the connection must not be reused.
            head.keep_alive = false;
        }
        ResponseBody::Chunked
    } else {
        match content_length {
            Some(n) => ResponseBody::Length(n),
            None => ResponseBody::Close,
        }
    };
    if head.body == ResponseBody::Close {
        head.keep_alive = false;
    }
    head.verbatim = verbatim
        && head_len >= 4
        && &buf[head_len - 4..head_len] == b"\r\n\r\n"
        && !(100..200).contains(&status)
        && matches!(head.body, ResponseBody::None | ResponseBody::Length(_));
    Ok(true)
}

/// `X-Accel-*`: fields a server addresses to the proxy in front of it (nginx's
/// `X-Accel-Buffering`, `X-Accel-Redirect`, ...), never passed to the client.
pub(crate) fn is_accel(name: &[u8]) -> bool {
    name.len() > 8 && name[..8].eq_ignore_ascii_case(b"x-accel-")
}

/// `0` or digits without a leading zero: what ringlb itself would write.
pub(crate) fn is_canonical_number(v: &[u8]) -> bool {
    matches!(v, [b'0'] | [b'1'..=b'9', ..]) && v.len() <= 18 && v.iter().all(u8::is_ascii_digit)
}

fn parse_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| n * 10 + (d - b'0') as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str, head_req: bool) -> Result<ResponseHead, InvalidResponse> {
        let mut h = ResponseHead::default();
        assert!(parse(s.as_bytes(), &mut h, head_req)?);
        Ok(h)
    }

    #[test]
    fn framing() {
        let h = p("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false).unwrap();
        assert_eq!(h.body, ResponseBody::Length(5));
        assert!(h.keep_alive);
        let h = p("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).unwrap();
        assert_eq!(h.body, ResponseBody::None);
        let h = p("HTTP/1.1 204 No Content\r\n\r\n", false).unwrap();
        assert_eq!(h.body, ResponseBody::None);
        let h = p(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.body, ResponseBody::Chunked);
        let h = p("HTTP/1.0 200 OK\r\n\r\n", false).unwrap();
        assert_eq!(h.body, ResponseBody::Close);
        assert!(!h.keep_alive);
        assert!(p(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false
        )
        .is_err());
        assert!(p("HTTP/1.1 2000 OK\r\n\r\n", false).is_err());
        // Verbatim only when nothing needs rewriting.
        assert!(
            p(
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\n",
                false
            )
            .unwrap()
            .verbatim
        );
        assert!(
            p("HTTP/1.1 204 No Content\r\n\r\n", false)
                .unwrap()
                .verbatim
        );
        for not in [
            "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 05\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n",
            "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
            "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
            "HTTP/1.1 200 OK\r\nX: y\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n",
        ] {
            assert!(!p(not, false).unwrap().verbatim, "{not}");
        }
        assert!(p("garbage\r\n\r\n", false).is_err());
    }
}
