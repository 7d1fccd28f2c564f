//! An incremental `Transfer-Encoding: chunked` decoder that skips the data.
//!
//! Both sides only need to know where a chunked body ends: the generator counts responses
//! and the test backend discards request bodies. Bytes arrive in arbitrary pieces, so the
//! decoder is a small state machine fed slice by slice (RFC 9112 section 7.1).

use thiserror::Error;

/// A chunk-size line (with extensions) or trailer line longer than this is refused:
/// nothing legitimate needs more, and it bounds the work an attacker can cause.
const MAX_LINE: usize = 4096;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChunkedError {
    #[error("invalid chunk size line")]
    BadSize,
    #[error("missing CRLF after chunk data")]
    BadCrlf,
    #[error("chunk size or trailer line too long")]
    LineTooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size; `ext` once a `;` or whitespace started the extension part.
    Size {
        value: u64,
        digits: u8,
        ext: bool,
    },
    SizeLf {
        value: u64,
        digits: u8,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section; `empty` while the current line has no bytes yet.
    Trailer {
        empty: bool,
    },
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Where a chunked body ends; feed it bytes with [`ChunkedDecoder::feed`].
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    line_len: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size {
                value: 0,
                digits: 0,
                ext: false,
            },
            line_len: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes a prefix of `input`; returns how many bytes belong to the body and whether
    /// the body ended there. Bytes after the end are left for the next message.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, bool), ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            if let State::Data(left) = self.state {
                let take = left.min((input.len() - i) as u64);
                i += take as usize;
                self.state = if take == left {
                    State::DataCr
                } else {
                    State::Data(left - take)
                };
                continue;
            }
            let byte = input[i];
            i += 1;
            self.step(byte)?;
            if self.state == State::Done {
                return Ok((i, true));
            }
        }
        Ok((i, self.state == State::Done))
    }

    fn step(&mut self, byte: u8) -> Result<(), ChunkedError> {
        self.state = match self.state {
            State::Size { value, digits, ext } => {
                self.line_len += 1;
                if self.line_len > MAX_LINE {
                    return Err(ChunkedError::LineTooLong);
                }
                match byte {
                    b'\r' => State::SizeLf { value, digits },
                    b'\n' => self.end_size_line(value, digits)?,
                    _ if ext => State::Size { value, digits, ext },
                    b';' | b' ' | b'\t' => State::Size {
                        value,
                        digits,
                        ext: true,
                    },
                    _ => {
                        let digit = (byte as char).to_digit(16).ok_or(ChunkedError::BadSize)?;
                        if digits >= 15 {
                            return Err(ChunkedError::BadSize);
                        }
                        State::Size {
                            value: value * 16 + u64::from(digit),
                            digits: digits + 1,
                            ext,
                        }
                    }
                }
            }
            State::SizeLf { value, digits } => match byte {
                b'\n' => self.end_size_line(value, digits)?,
                _ => return Err(ChunkedError::BadSize),
            },
            State::DataCr => match byte {
                b'\r' => State::DataLf,
                b'\n' => self.start_size(),
                _ => return Err(ChunkedError::BadCrlf),
            },
            State::DataLf => match byte {
                b'\n' => self.start_size(),
                _ => return Err(ChunkedError::BadCrlf),
            },
            State::Trailer { empty } => {
                self.line_len += 1;
                if self.line_len > MAX_LINE {
                    return Err(ChunkedError::LineTooLong);
                }
                match byte {
                    b'\r' => State::TrailerLf { empty },
                    b'\n' => self.end_trailer_line(empty),
                    _ => State::Trailer { empty: false },
                }
            }
            State::TrailerLf { empty } => match byte {
                b'\n' => self.end_trailer_line(empty),
                _ => return Err(ChunkedError::BadCrlf),
            },
            State::Data(_) | State::Done => unreachable!("handled by feed"),
        };
        Ok(())
    }

    fn start_size(&mut self) -> State {
        self.line_len = 0;
        State::Size {
            value: 0,
            digits: 0,
            ext: false,
        }
    }

    fn end_size_line(&mut self, value: u64, digits: u8) -> Result<State, ChunkedError> {
        if digits == 0 {
            return Err(ChunkedError::BadSize);
        }
        self.line_len = 0;
        Ok(if value == 0 {
            State::Trailer { empty: true }
        } else {
            State::Data(value)
        })
    }

    fn end_trailer_line(&mut self, empty: bool) -> State {
        self.line_len = 0;
        if empty {
            State::Done
        } else {
            State::Trailer { empty: true }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(body: &[u8], piece: usize) -> Result<usize, ChunkedError> {
        let mut d = ChunkedDecoder::new();
        let mut used = 0;
        for part in body.chunks(piece) {
            let (n, done) = d.feed(part)?;
            used += n;
            if done {
                return Ok(used);
            }
        }
        Ok(usize::MAX)
    }

    #[test]
    fn body_end_is_found_whatever_the_split() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\nNEXT";
        for piece in 1..body.len() {
            assert_eq!(
                decode_in_pieces(body, piece),
                Ok(body.len() - 4),
                "piece {piece}"
            );
        }
    }

    #[test]
    fn trailers_are_skipped() {
        let body = b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n";
        assert_eq!(decode_in_pieces(body, 7), Ok(body.len()));
    }

    #[test]
    fn incomplete_body_is_not_done() {
        assert_eq!(decode_in_pieces(b"5\r\nhel", 100), Ok(usize::MAX));
        assert_eq!(decode_in_pieces(b"0\r\n", 100), Ok(usize::MAX));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert_eq!(decode_in_pieces(b"zz\r\n", 1), Err(ChunkedError::BadSize));
        assert_eq!(decode_in_pieces(b"\r\n", 1), Err(ChunkedError::BadSize));
        assert_eq!(decode_in_pieces(b"2\r\nabX", 1), Err(ChunkedError::BadCrlf));
        assert_eq!(
            decode_in_pieces(b"ffffffffffffffffff\r\n", 1),
            Err(ChunkedError::BadSize)
        );
    }
}
