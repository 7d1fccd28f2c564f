//! Where a response body ends, as the bytes arrive: the one place that decides how much of
//! what a server sent belongs to the response (RFC 9112 6.3), and so whether its connection
//! can carry another request.
//!
//! The relay feeds every piece it reads from the server through a [`BodyCursor`] and
//! forwards only what the cursor takes; whatever is left when the body is done was sent
//! past the response's end, and [`may_pool`] then refuses the connection. The fuzz target
//! `response_framing` drives the cursor and the head parser with arbitrary server bytes.

use super::chunked::{ChunkError, ChunkedDecoder};
use super::response::ResponseBody;

/// How far a response body has been read.
#[derive(Debug, Clone)]
pub struct BodyCursor {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// No body (HEAD, 1xx, 204, 304, or `Content-Length: 0`) or a length body read to its end.
    Done,
    Length {
        remaining: u64,
    },
    Chunked(ChunkedDecoder),
    /// Until the server closes: never done by bytes.
    Close,
}

/// What one piece did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Bytes at the start of the piece that belong to the body (for a chunked body:
    /// consumed by the decoder, whose data went to `out`). The rest were sent past the
    /// response's end.
    pub taken: usize,
    /// The body is complete.
    pub done: bool,
}

impl BodyCursor {
    pub fn new(body: ResponseBody) -> BodyCursor {
        let kind = match body {
            ResponseBody::None | ResponseBody::Length(0) => Kind::Done,
            ResponseBody::Length(n) => Kind::Length { remaining: n },
            ResponseBody::Chunked => Kind::Chunked(ChunkedDecoder::default()),
            ResponseBody::Close => Kind::Close,
        };
        BodyCursor { kind }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.kind, Kind::Done)
    }

    /// Bytes of a length-delimited body still to come.
    pub fn remaining(&self) -> Option<u64> {
        match self.kind {
            Kind::Length { remaining } => Some(remaining),
            Kind::Done => Some(0),
            _ => None,
        }
    }

    /// Takes what belongs to the body from the start of `piece`. A chunked body is decoded
    /// into `out` (re-framed as chunks when `reencode`); the other kinds leave `out` alone:
    /// their bytes are forwarded as they are, `piece[..taken]`.
    pub fn take(
        &mut self,
        piece: &[u8],
        out: &mut Vec<u8>,
        reencode: bool,
    ) -> Result<Taken, ChunkError> {
        let (taken, done) = match &mut self.kind {
            Kind::Done => (0, true),
            Kind::Length { remaining } => {
                let n = (piece.len() as u64).min(*remaining);
                *remaining -= n;
                (n as usize, *remaining == 0)
            }
            Kind::Chunked(dec) => {
                let d = dec.decode(piece, out, reencode)?;
                (d.consumed, d.done)
            }
            Kind::Close => (piece.len(), false),
        };
        if done {
            self.kind = Kind::Done;
        }
        Ok(Taken { taken, done })
    }
}

/// Whether a connection may carry another request after this response: the body ended
/// where its framing says (a close-delimited body never does), the server sent nothing
/// beyond that end, the server keeps the connection, and the request was all sent (an
/// early answer leaves part of it unsent).
pub fn may_pool(done: bool, left_over: usize, keep_alive: bool, request_complete: bool) -> bool {
    done && left_over == 0 && keep_alive && request_complete
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_takes_exactly_the_declared_bytes() {
        let mut c = BodyCursor::new(ResponseBody::Length(5));
        let mut out = Vec::new();
        assert_eq!(
            c.take(b"abc", &mut out, false).unwrap(),
            Taken {
                taken: 3,
                done: false
            }
        );
        assert_eq!(c.remaining(), Some(2));
        assert_eq!(
            c.take(b"deEXTRA", &mut out, false).unwrap(),
            Taken {
                taken: 2,
                done: true
            }
        );
        assert!(c.is_done() && out.is_empty());
        // Once done, nothing more belongs to the body.
        assert_eq!(c.take(b"x", &mut out, false).unwrap().taken, 0);
    }

    #[test]
    fn no_body_takes_nothing() {
        for body in [ResponseBody::None, ResponseBody::Length(0)] {
            let mut c = BodyCursor::new(body);
            let t = c
                .take(b"HTTP/1.1 200 OK\r\n\r\n", &mut Vec::new(), false)
                .unwrap();
            assert_eq!(
                t,
                Taken {
                    taken: 0,
                    done: true
                }
            );
            assert!(!may_pool(t.done, 19, true, true));
            assert!(may_pool(t.done, 0, true, true));
        }
    }

    #[test]
    fn chunked_stops_at_the_last_chunk() {
        let mut c = BodyCursor::new(ResponseBody::Chunked);
        let mut out = Vec::new();
        let input = b"3\r\nabc\r\n0\r\n\r\nEXTRA";
        let t = c.take(input, &mut out, false).unwrap();
        assert_eq!(
            t,
            Taken {
                taken: input.len() - 5,
                done: true
            }
        );
        assert_eq!(out, b"abc");
    }

    #[test]
    fn close_delimited_is_never_poolable() {
        let mut c = BodyCursor::new(ResponseBody::Close);
        let t = c.take(b"abc", &mut Vec::new(), false).unwrap();
        assert_eq!(
            t,
            Taken {
                taken: 3,
                done: false
            }
        );
        assert!(!may_pool(c.is_done(), 0, true, true));
    }

    #[test]
    fn an_early_answer_is_never_poolable() {
        assert!(!may_pool(true, 0, true, false));
        assert!(!may_pool(true, 0, false, true));
    }
}
