//! The generator's response reader: finds where each response ends (Content-Length, chunked,
//! close-delimited, or no body for HEAD/1xx/204/304) so that a broken response is never
//! counted as a success. Bodies are skipped in place; nothing is copied but the
//! by-server header value.

use thiserror::Error;

use super::chunked::{ChunkedDecoder, ChunkedError};
use super::{has_token, parse_content_length};

/// Headers per response head; more is treated as an invalid response.
const MAX_HEADERS: usize = 64;
/// A response head larger than this is invalid (nginx's default large buffer is 8 KiB x 4).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Response headers whose value names the server that answered (`ringload serve` sends
/// the first; the second is a common convention). Counted per value in the report.
const SERVED_BY_HEADERS: [&str; 2] = ["x-backend", "x-served-by"];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResponseError {
    #[error("invalid response head: {0}")]
    Head(&'static str),
    #[error("invalid chunked body: {0}")]
    Chunked(#[from] ChunkedError),
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("connection closed before the response was complete")]
    Truncated,
}

/// How much of the input a call to [`ResponseReader::feed`] used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Used this many bytes; the response needs more.
    More(usize),
    /// Used this many bytes and the response is complete; the rest belongs to what follows.
    Done(usize),
}

#[derive(Debug, Clone)]
enum Body {
    Head,
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// Reads one response at a time; call [`ResponseReader::start`] before each.
#[derive(Debug)]
pub struct ResponseReader {
    body: Body,
    head_request: bool,
    status: u16,
    close: bool,
    served_by: Vec<u8>,
    has_served_by: bool,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseReader {
    pub fn new() -> Self {
        ResponseReader {
            body: Body::Head,
            head_request: false,
            status: 0,
            close: false,
            served_by: Vec::with_capacity(64),
            has_served_by: false,
        }
    }

    /// Prepares for the response to a request; `head_request` for HEAD (no body follows).
    pub fn start(&mut self, head_request: bool) {
        self.body = Body::Head;
        self.head_request = head_request;
        self.status = 0;
        self.close = false;
        self.has_served_by = false;
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// The server asked to close (or the body ends at close): do not reuse the connection.
    pub fn must_close(&self) -> bool {
        self.close
    }

    /// The value of the by-server header of the last response, if it had one.
    pub fn served_by(&self) -> Option<&[u8]> {
        self.has_served_by.then_some(self.served_by.as_slice())
    }

    /// Consumes a prefix of `input`.
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, ResponseError> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match &mut self.body {
                Body::Head => match self.parse_head(rest)? {
                    Some((n, done)) => {
                        used += n;
                        if done {
                            return Ok(Progress::Done(used));
                        }
                    }
                    None => return Ok(Progress::More(used)),
                },
                Body::Length(left) => {
                    let take = (*left).min(rest.len() as u64);
                    *left -= take;
                    used += take as usize;
                    return Ok(if *left == 0 {
                        Progress::Done(used)
                    } else {
                        Progress::More(used)
                    });
                }
                Body::Chunked(decoder) => {
                    let (n, done) = decoder.feed(rest)?;
                    used += n;
                    return Ok(if done {
                        Progress::Done(used)
                    } else {
                        Progress::More(used)
                    });
                }
                Body::UntilClose => return Ok(Progress::More(input.len())),
            }
        }
    }

    /// The peer closed the connection: fine only for a close-delimited body.
    pub fn eof(&mut self) -> Result<(), ResponseError> {
        match self.body {
            Body::UntilClose => Ok(()),
            _ => Err(ResponseError::Truncated),
        }
    }

    /// Parses a head from the start of `input`. `None`: incomplete. `Some((n, done))`: the
    /// head took n bytes; `done` when no body follows.
    fn parse_head(&mut self, input: &[u8]) -> Result<Option<(usize, bool)>, ResponseError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let n = match response.parse(input) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if input.len() >= MAX_HEAD_BYTES => {
                return Err(ResponseError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ResponseError::Head("too many headers"))
            }
            Err(_) => return Err(ResponseError::Head("malformed status line or header")),
        };
        let status = response.code.ok_or(ResponseError::Head("no status"))?;
        if (100..200).contains(&status) && status != 101 {
            // An interim response (100 Continue, 103 Early Hints): the real one follows.
            return Ok(Some((n, false)));
        }
        self.status = status;
        let http10 = response.version == Some(0);
        let mut keep_alive = !http10;
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut other_coding = false;
        for header in response.headers.iter() {
            let name = header.name;
            if name.eq_ignore_ascii_case("content-length") {
                let value = parse_content_length(header.value)
                    .ok_or(ResponseError::Head("bad Content-Length"))?;
                if length.is_some_and(|l| l != value) {
                    return Err(ResponseError::Head("conflicting Content-Length"));
                }
                length = Some(value);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // Only the last coding decides the framing (RFC 9112 section 6.3).
                let last = header
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .unwrap_or_default();
                chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
                other_coding = !chunked;
            } else if name.eq_ignore_ascii_case("connection") {
                if has_token(header.value, "close") {
                    keep_alive = false;
                } else if has_token(header.value, "keep-alive") {
                    keep_alive = true;
                }
            } else if SERVED_BY_HEADERS
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
            {
                self.served_by.clear();
                self.served_by.extend_from_slice(header.value);
                self.has_served_by = true;
            }
        }
        self.close = !keep_alive || status == 101;
        let no_body = self.head_request || status == 204 || status == 304 || status == 101;
        if no_body {
            return Ok(Some((n, true)));
        }
        self.body = if chunked {
            Body::Chunked(ChunkedDecoder::new())
        } else if other_coding {
            self.close = true;
            Body::UntilClose
        } else {
            match length {
                Some(0) => return Ok(Some((n, true))),
                Some(len) => Body::Length(len),
                None => {
                    self.close = true;
                    Body::UntilClose
                }
            }
        };
        Ok(Some((n, false)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` in pieces of `piece`; returns (bytes used, complete, status).
    fn read_all(
        bytes: &[u8],
        piece: usize,
        head: bool,
        eof: bool,
    ) -> Result<(usize, bool, u16), ResponseError> {
        let mut reader = ResponseReader::new();
        reader.start(head);
        let mut buf: Vec<u8> = Vec::new();
        let mut used_total = 0;
        for part in bytes.chunks(piece) {
            buf.extend_from_slice(part);
            match reader.feed(&buf)? {
                Progress::More(n) => {
                    used_total += n;
                    buf.drain(..n);
                }
                Progress::Done(n) => return Ok((used_total + n, true, reader.status())),
            }
        }
        if eof {
            reader.eof()?;
            return Ok((bytes.len(), true, reader.status()));
        }
        Ok((used_total, false, reader.status()))
    }

    #[test]
    fn content_length_body_ends_exactly() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1";
        for piece in 1..r.len() {
            assert_eq!(
                read_all(r, piece, false, false),
                Ok((r.len() - 8, true, 200))
            );
        }
    }

    #[test]
    fn chunked_body_ends_after_last_chunk() {
        let r = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n0\r\n\r\n";
        for piece in 1..r.len() {
            assert_eq!(read_all(r, piece, false, false), Ok((r.len(), true, 201)));
        }
    }

    #[test]
    fn close_delimited_body_needs_eof() {
        let r = b"HTTP/1.1 200 OK\r\n\r\nsome body";
        assert_eq!(read_all(r, 4, false, false).map(|x| x.1), Ok(false));
        assert_eq!(read_all(r, 4, false, true), Ok((r.len(), true, 200)));
    }

    #[test]
    fn truncated_length_body_is_an_error() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
        assert_eq!(read_all(r, 3, false, true), Err(ResponseError::Truncated));
    }

    #[test]
    fn head_204_and_304_have_no_body() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
        assert_eq!(read_all(head, 5, true, false), Ok((head.len(), true, 200)));
        let no_content = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(
            read_all(no_content, 5, false, false),
            Ok((no_content.len(), true, 204))
        );
        let not_modified = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n";
        assert_eq!(
            read_all(not_modified, 5, false, false),
            Ok((not_modified.len(), true, 304))
        );
    }

    #[test]
    fn interim_100_continue_is_skipped() {
        let r = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(read_all(r, 1, false, false), Ok((r.len(), true, 200)));
    }

    #[test]
    fn connection_close_and_http10_are_not_reused() {
        let mut reader = ResponseReader::new();
        reader.start(false);
        let r = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(reader.feed(r), Ok(Progress::Done(r.len())));
        assert!(reader.must_close());
        reader.start(false);
        let r = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(reader.feed(r), Ok(Progress::Done(r.len())));
        assert!(reader.must_close());
        reader.start(false);
        let r = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(reader.feed(r), Ok(Progress::Done(r.len())));
        assert!(!reader.must_close());
    }

    #[test]
    fn garbage_and_conflicts_are_invalid() {
        let mut reader = ResponseReader::new();
        reader.start(false);
        assert!(reader.feed(b"HTTX/1.1 200 OK\r\n\r\n").is_err());
        reader.start(false);
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(reader.feed(r).is_err());
        reader.start(false);
        assert!(reader
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")
            .is_err());
    }

    #[test]
    fn served_by_header_is_captured() {
        let mut reader = ResponseReader::new();
        reader.start(false);
        let r = b"HTTP/1.1 200 OK\r\nX-Backend: 127.0.0.1:8001\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(reader.feed(r), Ok(Progress::Done(r.len())));
        assert_eq!(reader.served_by(), Some(&b"127.0.0.1:8001"[..]));
        reader.start(false);
        assert_eq!(
            reader
                .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .map(|_| ()),
            Ok(())
        );
        assert_eq!(reader.served_by(), None);
    }
}
