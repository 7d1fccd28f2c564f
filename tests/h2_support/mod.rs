//! A raw HTTP/2 client for frame-level tests: frames written byte by byte over a TLS
//! connection (ALPN h2), header blocks encoded by hand (HPACK literals, no Huffman, so a
//! test can also write malformed ones), and the server's frames read back and classified.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::tls_support::{connect, Client};

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const PRIORITY: u8 = 2;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PUSH_PROMISE: u8 = 5;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

pub const NO_ERROR: u32 = 0;
pub const PROTOCOL_ERROR: u32 = 1;
pub const FLOW_CONTROL_ERROR: u32 = 3;
pub const STREAM_CLOSED: u32 = 5;
pub const FRAME_SIZE_ERROR: u32 = 6;
pub const REFUSED_STREAM: u32 = 7;
pub const CANCEL: u32 = 8;
pub const COMPRESSION_ERROR: u32 = 9;
pub const ENHANCE_YOUR_CALM: u32 = 11;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The payload of the liveness probe.
pub const PROBE: [u8; 8] = *b"ringlb!?";

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first`.
pub fn hpack_int(out: &mut Vec<u8>, first: u8, n: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// A literal field without indexing, new name.
pub fn lit(name: &str, value: &str) -> Vec<u8> {
    lit_bytes(name.as_bytes(), value.as_bytes())
}

pub fn lit_bytes(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00];
    hpack_str(&mut out, name);
    hpack_str(&mut out, value);
    out
}

/// A literal field with incremental indexing (added to the dynamic table), new name.
pub fn lit_indexed(name: &str, value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x40];
    hpack_str(&mut out, name.as_bytes());
    hpack_str(&mut out, value);
    out
}

/// An indexed field.
pub fn indexed(i: usize) -> Vec<u8> {
    let mut out = Vec::new();
    hpack_int(&mut out, 0x80, 7, i);
    out
}

/// The header block of a request: pseudo-headers, then `extra` fields.
pub fn request(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(lit(":method", method));
    b.extend(indexed(7)); // :scheme https
    b.extend(lit(":path", path));
    b.extend(lit(":authority", "h2.test"));
    for (n, v) in extra {
        b.extend(lit(n, v));
    }
    b
}

pub fn get(path: &str) -> Vec<u8> {
    request("GET", path, &[])
}

/// One frame the server sent.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a GOAWAY or RST_STREAM.
    pub fn code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

/// What the server did, as far as a test cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    GoAway(u32),
    Reset(u32, u32),
    Status(u32, u16),
    ProbeAnswered,
    Closed,
    Nothing,
}

pub struct Conn {
    pub c: Client,
    pub decoder: hpack::Decoder<'static>,
    buf: Vec<u8>,
    pub frames: Vec<Frame>,
    /// Frames read by `peek_goaway`, handed out again by `next`.
    pending: Vec<Frame>,
}

impl Conn {
    /// Connects with ALPN h2 and sends the preface and an empty SETTINGS; waits for the
    /// server's SETTINGS and acknowledges it.
    pub fn open(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>) -> Conn {
        let mut conn = Conn::raw(addr, cfg);
        conn.send(PREFACE);
        conn.send(&frame(SETTINGS, 0, 0, &[]));
        conn.handshake();
        conn
    }

    /// Connected, nothing sent.
    pub fn raw(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>) -> Conn {
        let c = connect(addr, cfg, "h2.test");
        // An attack test writes more than a server that cut it off will read.
        c.sock
            .set_write_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(c.conn.alpn_protocol(), Some(&b"h2"[..]));
        Conn {
            c,
            decoder: hpack::Decoder::new(),
            buf: Vec::new(),
            frames: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Reads until the server's SETTINGS (non-ACK) and acknowledges it.
    pub fn handshake(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let f = self.next(deadline).expect("server SETTINGS");
            if f.kind == SETTINGS && f.flags & ACK == 0 {
                self.send(&frame(SETTINGS, ACK, 0, &[]));
                return;
            }
        }
    }

    /// Writes `bytes`; false once the server stopped taking them (closed, or not reading
    /// for 2 s). What it sent before is still read afterwards.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.c.write_all(bytes).and_then(|_| self.c.flush()).is_ok()
    }

    pub fn headers(&mut self, stream: u32, flags: u8, block: &[u8]) {
        self.send(&frame(HEADERS, flags, stream, block));
    }

    /// A complete GET on `stream`.
    pub fn get(&mut self, stream: u32, path: &str) {
        self.headers(stream, END_HEADERS | END_STREAM, &get(path));
    }

    pub fn ping(&mut self, payload: [u8; 8]) {
        self.send(&frame(PING, 0, 0, &payload));
    }

    /// Reads what has arrived (within a millisecond) and says whether a GOAWAY is among it;
    /// frames read are kept for `outcome`.
    pub fn peek_goaway(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_millis(1);
        while let Some(f) = self.read_frame(deadline) {
            self.pending.push(f.clone());
            if f.kind == GOAWAY {
                return true;
            }
        }
        false
    }

    /// The next frame before `deadline`; `None` on close or deadline.
    pub fn next(&mut self, deadline: Instant) -> Option<Frame> {
        if !self.pending.is_empty() {
            return Some(self.pending.remove(0));
        }
        self.read_frame(deadline)
    }

    fn read_frame(&mut self, deadline: Instant) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes(self.buf[5..9].try_into().unwrap())
                            & 0x7fff_ffff,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    self.frames.push(f.clone());
                    return Some(f);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            self.c.sock.set_read_timeout(Some(deadline - now)).unwrap();
            let mut tmp = [0u8; 16384];
            match self.c.read(&mut tmp) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(_) => return None,
            }
        }
    }

    /// Reads until something decisive: a GOAWAY, a reset, a response status, the answer to
    /// the liveness probe (sent first when `probe`), the connection's end, or 5 seconds of
    /// nothing. Responses and resets on streams other than `watch` are skipped (0 = any).
    pub fn outcome(&mut self, watch: u32, probe: bool) -> Seen {
        if probe {
            self.ping(PROBE);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let Some(f) = self.next(deadline) else {
                return if Instant::now() >= deadline {
                    Seen::Nothing
                } else {
                    Seen::Closed
                };
            };
            match f.kind {
                GOAWAY => return Seen::GoAway(f.code()),
                RST_STREAM if watch == 0 || f.stream == watch => {
                    return Seen::Reset(f.stream, f.code())
                }
                HEADERS => {
                    let status = self.status(&f);
                    if watch == 0 || f.stream == watch {
                        return Seen::Status(f.stream, status);
                    }
                }
                PING if f.flags & ACK != 0 && f.payload == PROBE => return Seen::ProbeAnswered,
                _ => {}
            }
        }
    }

    /// Decodes a response HEADERS frame (keeping the HPACK table in step); its status.
    pub fn status(&mut self, f: &Frame) -> u16 {
        let mut block = &f.payload[..];
        if f.flags & PADDED != 0 {
            let pad = block[0] as usize;
            block = &block[1..block.len() - pad];
        }
        if f.flags & PRIORITY_FLAG != 0 {
            block = &block[5..];
        }
        let fields = self.decoder.decode(block).expect("server's HPACK");
        fields
            .iter()
            .find(|(n, _)| n == b":status")
            .map(|(_, v)| std::str::from_utf8(v).unwrap().parse().unwrap())
            .unwrap_or(0)
    }

    /// Reads a whole response on `stream`: status and body length.
    pub fn response(&mut self, stream: u32) -> Option<(u16, usize)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut status = None;
        let mut body = 0;
        loop {
            let f = self.next(deadline)?;
            if f.stream != stream {
                if f.kind == HEADERS {
                    self.status(&f);
                }
                if f.kind == GOAWAY {
                    return None;
                }
                continue;
            }
            match f.kind {
                HEADERS => status = Some(self.status(&f)),
                DATA => body += f.payload.len(),
                RST_STREAM => return None,
                _ => {}
            }
            if matches!(f.kind, HEADERS | DATA) && f.flags & END_STREAM != 0 {
                return Some((status?, body));
            }
        }
    }
}
