//! HTTP/2 streams through the HTTP/1.1 proxy path: each stream is presented to
//! `proxy::serve_stream` as a client connection that carries exactly one HTTP/1.1 request
//! (the stream's head and body, re-framed) and takes one HTTP/1.1 response (parsed back into
//! a HEADERS frame and DATA frames). Every feature of the proxy (routing, balancing, pools,
//! retries, buffering, limits, access log, `$scheme`) then applies to HTTP/2 unchanged.
//!
//! The price is a serialisation of each request head and a parse of each response head
//! that a native integration would not need; the exchange code can consume [`Exchange`]
//! directly later and drop this module.
//!
//! Timeouts: the proxy's watchdog times out a client operation by shutting the client's
//! socket down, which must not happen to a connection shared by many streams. Each stream
//! therefore has a descriptor of its own for the watchdog (an eventfd: shutting it down does
//! nothing), and enforces `client_body_timeout` itself on its reads (waiting for request
//! body) and writes (waiting for the client's flow-control window).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::BufResult;

use super::exchange::{strip_h1_fields, Exchange, H1Framing, RequestBody, Responder, ResponseBody};
use crate::http::chunked::ChunkedDecoder;
use crate::http::push_hex;
use crate::metrics::{bump, drop_one};
use crate::proxy::{self, ClientIo, Peer, ProxyCtx};

/// Response header fields parsed at most (the proxy's own limit is lower).
const MAX_RESPONSE_FIELDS: usize = 128;

/// Watchdog descriptors kept for reuse per worker: at most this many (one per stream in
/// flight is needed; more are closed).
const SPARE_FDS: usize = 256;

thread_local! {
    /// This worker's spare watchdog descriptors: a stream takes one and gives it back, so
    /// a stream costs no system call for it once the worker is warm.
    static SPARE: std::cell::RefCell<Vec<OwnedFd>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A descriptor for a stream's watchdog entries (see the module documentation).
fn watch_fd() -> Option<OwnedFd> {
    if let Some(fd) = SPARE.with(|s| s.borrow_mut().pop()) {
        return Some(fd);
    }
    // SAFETY: eventfd returns a new descriptor or -1.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return None;
    }
    // SAFETY: `raw` is a descriptor we own.
    Some(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Serves one HTTP/2 stream through the proxy.
pub async fn exchange(ex: Exchange, peer: Peer, listen: SocketAddr, ctx: Rc<ProxyCtx>) {
    let timeout = {
        let cur = ctx.current();
        match cur.routes.server(cur.config(), listen, None) {
            Some(vs) => vs.client_body_timeout,
            None => return,
        }
    };
    let Some(stream) = StreamIo::new(ex, timeout) else {
        return;
    };
    bump(&ctx.stats.h2_streams_open);
    let stats = ctx.stats.clone();
    proxy::serve_stream(stream, peer, listen, ctx).await;
    drop_one(&stats.h2_streams_open);
}

/// One stream as the proxy's client connection.
pub struct StreamIo {
    /// The watchdog's handle for this stream (see the module documentation); given back to
    /// the worker's spares when the stream ends.
    fd: Option<OwnedFd>,
    timeout: Duration,
    /// Request bytes to hand out: the head, then body pieces (chunk-framed when the length
    /// is unknown).
    out: Vec<u8>,
    out_pos: usize,
    body: Option<RequestBody>,
    chunked: bool,
    head_request: bool,
    resp: Resp,
}

enum Resp {
    /// Collecting the response head.
    Head(Responder, Vec<u8>),
    Body(ResponseBody, BodyLeft),
    Done,
}

enum BodyLeft {
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Until the proxy closes the stream.
    Close,
}

impl StreamIo {
    fn new(ex: Exchange, timeout: Duration) -> Option<StreamIo> {
        let fd = watch_fd()?;
        let framing = ex.h1_framing();
        let mut out = Vec::with_capacity(512);
        ex.write_h1_head(&mut out, framing);
        let head_request = ex.head.method == http::Method::HEAD;
        Some(StreamIo {
            fd: Some(fd),
            timeout,
            out,
            out_pos: 0,
            body: (framing != H1Framing::None).then_some(ex.body),
            chunked: framing == H1Framing::Chunked,
            head_request,
            resp: Resp::Head(ex.response, Vec::new()),
        })
    }

    /// Refills `out` with the next piece of the request body; false at its end.
    async fn next_piece(&mut self) -> io::Result<bool> {
        let Some(body) = self.body.as_mut() else {
            return Ok(false);
        };
        self.out.clear();
        self.out_pos = 0;
        match monoio::time::timeout(self.timeout, body.chunk()).await {
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
            Ok(Some(Err(e))) => Err(io::Error::new(io::ErrorKind::ConnectionReset, e)),
            Ok(Some(Ok(data))) => {
                if self.chunked {
                    push_hex(&mut self.out, data.len() as u64);
                    self.out.extend_from_slice(b"\r\n");
                    self.out.extend_from_slice(&data);
                    self.out.extend_from_slice(b"\r\n");
                } else {
                    self.out.extend_from_slice(&data);
                }
                Ok(true)
            }
            Ok(None) => {
                self.body = None;
                if self.chunked {
                    self.out.extend_from_slice(b"0\r\n\r\n");
                    return Ok(true);
                }
                Ok(false)
            }
        }
    }

    /// Copies request bytes into `dst`; 0 at the end of the request.
    async fn read_into(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        while self.out_pos == self.out.len() {
            if !self.next_piece().await? {
                return Ok(0);
            }
        }
        let n = dst.len().min(self.out.len() - self.out_pos);
        dst[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }

    /// Takes response bytes from the proxy.
    async fn take(&mut self, src: &[u8]) -> io::Result<()> {
        if let Resp::Head(_, acc) = &mut self.resp {
            acc.extend_from_slice(src);
            return match self.start_response()? {
                None => Ok(()),
                Some(rest) => self.take_body(&rest).await,
            };
        }
        self.take_body(src).await
    }

    /// Parses the collected response head; once complete, sends it and returns the bytes
    /// that followed it.
    fn start_response(&mut self) -> io::Result<Option<Vec<u8>>> {
        let Resp::Head(_, acc) = &mut self.resp else {
            return Ok(None);
        };
        loop {
            let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_FIELDS];
            let mut parsed = httparse::Response::new(&mut fields);
            let n = match parsed.parse(acc) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            };
            let status = parsed.code.unwrap_or(502);
            if (100..200).contains(&status) {
                // 100 Continue and other interim responses: not relayed.
                acc.drain(..n);
                continue;
            }
            let mut head = http::Response::builder().status(status);
            let mut length = None;
            let mut chunked = false;
            for f in parsed.headers.iter() {
                if f.name.eq_ignore_ascii_case("content-length") {
                    length = std::str::from_utf8(f.value)
                        .ok()
                        .and_then(|v| v.trim().parse::<u64>().ok());
                }
                if f.name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = true;
                }
                head = head.header(f.name, f.value);
            }
            let mut head = head
                .body(())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            strip_h1_fields(head.headers_mut());
            let rest = acc[n..].to_vec();
            let Resp::Head(mut responder, _) = std::mem::replace(&mut self.resp, Resp::Done) else {
                unreachable!()
            };
            let bodiless = self.head_request || status == 204 || status == 304 || length == Some(0);
            let writer = responder
                .send_head(head, bodiless)
                .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))?;
            if !bodiless {
                let left = if chunked {
                    BodyLeft::Chunked(ChunkedDecoder::default())
                } else {
                    length.map_or(BodyLeft::Close, BodyLeft::Length)
                };
                self.resp = Resp::Body(writer, left);
            }
            return Ok(Some(rest));
        }
    }

    async fn take_body(&mut self, src: &[u8]) -> io::Result<()> {
        let Resp::Body(writer, left) = &mut self.resp else {
            return Ok(());
        };
        let (data, end) = match left {
            BodyLeft::Length(rem) => {
                let n = (*rem).min(src.len() as u64) as usize;
                *rem -= n as u64;
                (Bytes::copy_from_slice(&src[..n]), *rem == 0)
            }
            BodyLeft::Chunked(dec) => {
                let mut raw = Vec::with_capacity(src.len());
                let d = dec
                    .decode(src, &mut raw, false)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                (Bytes::from(raw), d.done)
            }
            BodyLeft::Close => (Bytes::copy_from_slice(src), false),
        };
        if data.is_empty() && !end {
            return Ok(());
        }
        match monoio::time::timeout(self.timeout, writer.write(data, end)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(io::Error::new(io::ErrorKind::BrokenPipe, e)),
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
        if end {
            self.resp = Resp::Done;
        }
        Ok(())
    }

    /// The proxy is done with the stream: a body that ends with the connection ends here;
    /// a response cut short (or never begun) resets the stream.
    fn finish(&mut self) {
        match std::mem::replace(&mut self.resp, Resp::Done) {
            Resp::Done => {}
            Resp::Body(writer, BodyLeft::Close) => writer.finish(),
            Resp::Body(writer, _) => writer.reset(super::Reason::INTERNAL_ERROR),
            Resp::Head(mut responder, _) => responder.reset(super::Reason::CANCEL),
        }
    }
}

impl Drop for StreamIo {
    fn drop(&mut self) {
        self.finish();
        if let Some(fd) = self.fd.take() {
            SPARE.with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < SPARE_FDS {
                    s.push(fd);
                }
            });
        }
    }
}

impl AsRawFd for StreamIo {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, |fd| fd.as_raw_fd())
    }
}

// SAFETY: a stream carries no Upgrade (HTTP/2 forbids it and `h2` refuses the field), so
// the proxy's tunnel never splits it; were it split, the read half touches only the request
// fields and the write half only the response fields.
unsafe impl monoio::io::Split for StreamIo {}

impl ClientIo for StreamIo {
    const TLS: bool = true;
    const HTTP2: bool = true;
    type Armed = std::future::Pending<BufResult<usize, monoio::buf::SliceMut<Vec<u8>>>>;

    fn read_owned(
        &self,
        buf: monoio::buf::SliceMut<Vec<u8>>,
    ) -> Result<Self::Armed, monoio::buf::SliceMut<Vec<u8>>> {
        Err(buf)
    }
}

impl AsyncReadRent for StreamIo {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let len = buf.bytes_total();
        // SAFETY: valid for `len` bytes; only written to, then `set_init` covers them.
        let dst = unsafe { std::slice::from_raw_parts_mut(buf.write_ptr(), len) };
        let r = self.read_into(dst).await;
        if let Ok(n) = r {
            // SAFETY: `n` bytes were written at the start.
            unsafe { buf.set_init(n) };
        }
        (r, buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        // The proxy never reads a client vectored; a short read is allowed.
        (Ok(0), buf)
    }
}

impl AsyncWriteRent for StreamIo {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `read_ptr` is valid for `bytes_init` bytes while we hold `buf`.
        let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let n = src.len();
        let r = self.take(src).await.map(|()| n);
        (r, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: monoio guarantees `read_iovec_len` valid iovecs while we hold `buf`.
        let vecs =
            unsafe { std::slice::from_raw_parts(buf.read_iovec_ptr(), buf.read_iovec_len()) };
        let mut total = 0;
        for v in vecs {
            // SAFETY: each iovec describes initialised memory owned by `buf`.
            let src = unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) };
            if let Err(e) = self.take(src).await {
                return (Err(e), buf);
            }
            total += src.len();
        }
        (Ok(total), buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.finish();
        Ok(())
    }
}
