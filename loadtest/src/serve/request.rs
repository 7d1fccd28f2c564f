//! The backend's view of a request head: only what decides framing and the answer.

use crate::http::{has_token, parse_content_length};

/// Headers per request head; more is answered with 431 and a close.
const MAX_HEADERS: usize = 64;
/// A request head larger than this is answered with 431 and a close.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    None,
    Length(u64),
    Chunked,
}

/// What the backend needs to know about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead {
    pub head_method: bool,
    /// Close after answering (Connection: close, or HTTP/1.0 without keep-alive).
    pub close: bool,
    /// HTTP/1.0 asked for keep-alive explicitly: say so in the answer.
    pub keep_alive_10: bool,
    pub body: RequestBody,
    pub health: bool,
    /// `/status/NNN` asks for that status code.
    pub status: Option<u16>,
    /// `Expect: 100-continue` with a body to follow.
    pub expect_continue: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// 400: malformed.
    Bad,
    /// 431: too large.
    TooLarge,
}

/// Parses a request head at the start of `input`: `Ok(None)` while incomplete.
pub fn parse_head(input: &[u8]) -> Result<Option<(usize, RequestHead)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let n = match request.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if input.len() >= MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Bad),
    };
    let http10 = request.version == Some(0);
    let mut close = http10;
    let mut keep_alive_10 = false;
    let mut length = None;
    let mut chunked = false;
    let mut expect_continue = false;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = parse_content_length(header.value).ok_or(HeadError::Bad)?;
            if length.is_some_and(|l| l != value) {
                return Err(HeadError::Bad);
            }
            length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = header
                .value
                .rsplit(|&b| b == b',')
                .next()
                .unwrap_or_default();
            if !last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                // A request body must be framed; anything else cannot be delimited.
                return Err(HeadError::Bad);
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(header.value, "close") {
                close = true;
            } else if http10 && has_token(header.value, "keep-alive") {
                close = false;
                keep_alive_10 = true;
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue = header
                .value
                .trim_ascii()
                .eq_ignore_ascii_case(b"100-continue");
        }
    }
    let body = if chunked {
        // Transfer-Encoding overrides Content-Length (RFC 9112 section 6.3).
        RequestBody::Chunked
    } else {
        match length {
            Some(0) | None => RequestBody::None,
            Some(len) => RequestBody::Length(len),
        }
    };
    let path = request.path.unwrap_or("/");
    let status = path
        .strip_prefix("/status/")
        .and_then(|code| code.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (200..600).contains(code));
    Ok(Some((
        n,
        RequestHead {
            head_method: request.method == Some("HEAD"),
            close,
            keep_alive_10,
            body,
            health: path == "/health",
            status,
            expect_continue: expect_continue && !http10 && body != RequestBody::None,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8]) -> RequestHead {
        parse_head(bytes).unwrap().unwrap().1
    }

    #[test]
    fn keepalive_rules_follow_the_version() {
        assert!(!head(b"GET / HTTP/1.1\r\n\r\n").close);
        assert!(head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").close);
        assert!(head(b"GET / HTTP/1.0\r\n\r\n").close);
        let h = head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(!h.close && h.keep_alive_10);
    }

    #[test]
    fn body_framing_is_found() {
        assert_eq!(
            head(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n").body,
            RequestBody::Length(3)
        );
        assert_eq!(
            head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n")
                .body,
            RequestBody::Chunked
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Err(HeadError::Bad)
        );
    }

    #[test]
    fn special_paths_are_recognised() {
        assert!(head(b"GET /health HTTP/1.1\r\n\r\n").health);
        assert_eq!(head(b"GET /status/503 HTTP/1.1\r\n\r\n").status, Some(503));
        assert_eq!(head(b"GET /status/abc HTTP/1.1\r\n\r\n").status, None);
        assert!(head(b"HEAD / HTTP/1.1\r\n\r\n").head_method);
    }

    #[test]
    fn partial_and_garbage_heads() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: x"), Ok(None));
        assert_eq!(
            parse_head(b"\x01\x02 nonsense\r\n\r\n"),
            Err(HeadError::Bad)
        );
    }
}
