//! A strict, streaming decoder for `Transfer-Encoding: chunked` (RFC 9112 7.1).
//!
//! Bodies are never copied through blindly: the decoder validates every size line and
//! re-frames the data itself, dropping chunk extensions and trailers in both directions
//! (the consistent choice: trailers are rare, and a proxy that passes them must also police
//! them). Anything a lenient peer might read differently (bare LF, spaces around the size,
//! overlong sizes, control bytes) is an error.

use super::{hex_value, push_hex};

/// Longest chunk-extension accepted on one size line.
const MAX_EXT_BYTES: usize = 1024;
/// Total trailer bytes accepted (they are read and dropped).
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// 16 hex digits is a u64; more is an overflow attempt.
const MAX_SIZE_DIGITS: u8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked encoding: {0}")]
pub struct ChunkError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    digits: u8,
    ext_len: usize,
    trailer_len: usize,
    /// Total data bytes decoded so far.
    pub decoded: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            digits: 0,
            ext_len: 0,
            trailer_len: 0,
            decoded: 0,
        }
    }
}

/// What one `decode` call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Input bytes used (the rest belongs to the next message).
    pub consumed: usize,
    /// The final chunk and trailers have been read.
    pub done: bool,
}

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes what it can of `input`, appending the data to `out`: re-framed as chunks
    /// (with the last chunk once done) when `reencode`, raw otherwise.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        reencode: bool,
    ) -> Result<Decoded, ChunkError> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            let b = input[i];
            match self.state {
                State::Data => {
                    let n = (self.size as usize).min(input.len() - i);
                    if reencode {
                        push_hex(out, n as u64);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(&input[i..i + n]);
                    if reencode {
                        out.extend_from_slice(b"\r\n");
                    }
                    self.size -= n as u64;
                    self.decoded += n as u64;
                    i += n;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::Size => match hex_value(b) {
                    Some(v) => {
                        self.digits += 1;
                        if self.digits > MAX_SIZE_DIGITS {
                            return Err(ChunkError("chunk size too large"));
                        }
                        self.size = (self.size << 4) | v as u64;
                    }
                    None if self.digits == 0 => return Err(ChunkError("chunk size expected")),
                    None if b == b';' => {
                        self.state = State::Ext;
                        self.ext_len = 0;
                    }
                    None if b == b'\r' => self.state = State::SizeLf,
                    None => return Err(ChunkError("invalid byte in chunk size")),
                },
                State::Ext => {
                    self.ext_len += 1;
                    if self.ext_len > MAX_EXT_BYTES {
                        return Err(ChunkError("chunk extension too long"));
                    }
                    match b {
                        b'\r' => self.state = State::SizeLf,
                        b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                        _ => return Err(ChunkError("invalid byte in chunk extension")),
                    }
                }
                State::SizeLf => {
                    expect(b, b'\n')?;
                    if self.size == 0 {
                        self.state = State::TrailerStart;
                    } else {
                        self.state = State::Data;
                    }
                    self.digits = 0;
                }
                State::DataCr => {
                    expect(b, b'\r')?;
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    expect(b, b'\n')?;
                    self.state = State::Size;
                    self.size = 0;
                }
                State::TrailerStart => {
                    if b == b'\r' {
                        self.state = State::EndLf;
                    } else {
                        self.state = State::TrailerLine;
                        continue; // the byte is part of the trailer line
                    }
                }
                State::TrailerLine => {
                    self.trailer_len += 1;
                    if self.trailer_len > MAX_TRAILER_BYTES {
                        return Err(ChunkError("trailers too long"));
                    }
                    match b {
                        b'\r' => self.state = State::TrailerLf,
                        b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                        _ => return Err(ChunkError("invalid byte in trailer")),
                    }
                }
                State::TrailerLf => {
                    expect(b, b'\n')?;
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    expect(b, b'\n')?;
                    self.state = State::Done;
                    if reencode {
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                }
                State::Done => unreachable!(),
            }
            i += 1;
        }
        Ok(Decoded {
            consumed: i,
            done: self.state == State::Done,
        })
    }
}

fn expect(b: u8, want: u8) -> Result<(), ChunkError> {
    if b == want {
        Ok(())
    } else {
        Err(ChunkError("expected CRLF"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], reencode: bool) -> Result<(Vec<u8>, Decoded), ChunkError> {
        let mut d = ChunkedDecoder::default();
        let mut out = Vec::new();
        let r = d.decode(input, &mut out, reencode)?;
        Ok((out, r))
    }

    #[test]
    fn decodes_and_stops_at_end() {
        let input = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (out, r) = all(input, false).unwrap();
        assert_eq!(out, b"hello world");
        assert!(r.done);
        assert_eq!(&input[r.consumed..], b"NEXT");
        let (out, _) = all(input, true).unwrap();
        assert_eq!(out, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    }

    #[test]
    fn byte_at_a_time_equals_whole() {
        let input = b"a\r\n0123456789\r\n1\r\nx\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::default();
        let mut out = Vec::new();
        for b in input.iter() {
            let r = d.decode(std::slice::from_ref(b), &mut out, false).unwrap();
            assert_eq!(r.consumed, 1);
        }
        assert!(d.is_done());
        assert_eq!(out, b"0123456789x");
    }

    #[test]
    fn rejects_ambiguous_framing() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"-1\r\n",
            b"5\r\nhelloX\r\n",
            b"0x5\r\nhello\r\n",
            b"5;a\x00b\r\nhello\r\n",
            b"\r\n",
        ] {
            assert!(all(bad, false).is_err(), "{bad:?}");
        }
    }
}
