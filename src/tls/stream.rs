//! A TLS connection over a monoio socket, driven through readiness (monoio's poll-io): rustls
//! reads ciphertext straight from the socket into its own buffer and writes its records
//! straight to the socket, so a request costs no buffer of ours and no extra copy of the
//! ciphertext. The stream offers two faces over one implementation:
//!
//! - tokio's `AsyncRead`/`AsyncWrite` (poll style), which the `h2` crate drives;
//! - monoio's `AsyncReadRent`/`AsyncWriteRent` (+ `AsRawFd`), which the HTTP/1.1 proxy code
//!   uses on plain sockets, so it runs over TLS unchanged. A rent write completes only when
//!   its ciphertext is in the kernel: nothing is left in rustls for a later call to flush.
//!
//! Operations are cancel-safe (nothing is in flight in the kernel between polls). A timeout
//! that shuts the socket down (the proxy's watchdog) ends a pending operation with end of
//! stream or an error, as on a plain socket.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::poll_io::{AsyncRead, AsyncWrite, ReadBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::tcp::stream_poll::TcpStreamPoll;
use monoio::BufResult;
use rustls::ServerConnection;

/// A server-side TLS connection after its handshake.
pub struct TlsStream {
    pub(super) io: TcpStreamPoll,
    pub(super) conn: ServerConnection,
    /// The socket reported end of stream (or an error): no more ciphertext will come.
    pub(super) eof: bool,
}

/// `std::io` over the socket for rustls's `read_tls`/`write_tls`: a socket that is not ready
/// reads as `WouldBlock` (the task is then woken by readiness).
pub(super) struct SyncIo<'a, 'b> {
    pub io: &'a mut TcpStreamPoll,
    pub cx: &'a mut Context<'b>,
}

impl Read for SyncIo<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut rb) {
            Poll::Ready(Ok(())) => Ok(rb.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for SyncIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Polls rustls's pending records out to the socket until none are left.
pub(super) fn poll_flush_tls(
    io: &mut TcpStreamPoll,
    conn: &mut ServerConnection,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while conn.wants_write() {
        match conn.write_tls(&mut SyncIo { io, cx }) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Poll::Ready(Ok(()))
}

/// Reads ciphertext once and processes it. `Ready(Ok(()))` means progress was made (new
/// plaintext, or end of stream recorded); protocol errors send their alert first.
pub(super) fn poll_read_tls(
    io: &mut TcpStreamPoll,
    conn: &mut ServerConnection,
    eof: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    match conn.read_tls(&mut SyncIo { io, cx }) {
        Ok(0) => *eof = true,
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
        Err(e) => {
            *eof = true;
            return Poll::Ready(Err(e));
        }
    }
    if let Err(e) = conn.process_new_packets() {
        // The alert rustls queued for this error, best effort.
        let _ = conn.write_tls(&mut SyncIo { io, cx });
        *eof = true;
        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
    }
    Poll::Ready(Ok(()))
}

impl TlsStream {
    /// The protocol agreed by ALPN (`b"h2"`, `b"http/1.1"`), if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Whether the client chose HTTP/2 by ALPN.
    pub fn is_h2(&self) -> bool {
        self.alpn() == Some(b"h2")
    }

    /// The name the client asked for by SNI.
    pub fn sni(&self) -> Option<&str> {
        self.conn.server_name()
    }

    /// The rustls connection (negotiated version, cipher suite, ...).
    pub fn connection(&self) -> &ServerConnection {
        &self.conn
    }

    /// The socket's peer address.
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.io.peer_addr()
    }

    /// Reads plaintext into `dst`; `Ok(0)` is end of stream (close_notify, or the socket
    /// closed without one: HTTP's framing tells whether a message was cut short).
    pub fn poll_read_plain(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if dst.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            match self.conn.reader().read(dst) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: a truncation attack matters only where the
                // HTTP framing does not say where a message ends, and HTTP/1.1 handles that.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(0)),
                Err(e) => return Poll::Ready(Err(e)),
            }
            if self.eof {
                return Poll::Ready(Ok(0));
            }
            // A read never writes: records rustls queues on its own after the handshake (a
            // KeyUpdate answer) go out with the next write. Polling the socket for writing
            // here would take the write side's waker when the stream is split.
            match poll_read_tls(&mut self.io, &mut self.conn, &mut self.eof, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Encrypts as much of `src` as rustls takes and pushes records to the socket; returns
    /// how much of `src` was taken. Records that do not fit the socket stay queued for
    /// [`Self::poll_flush_all`].
    pub fn poll_write_plain(
        &mut self,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut taken = 0;
        loop {
            if taken < src.len() {
                taken += self.conn.writer().write(&src[taken..])?;
            }
            match poll_flush_tls(&mut self.io, &mut self.conn, cx) {
                Poll::Ready(Ok(())) if taken == src.len() => return Poll::Ready(Ok(taken)),
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if taken == 0 => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Ok(taken)),
            }
        }
    }

    /// Pushes every queued record to the socket.
    pub fn poll_flush_all(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_flush_tls(&mut self.io, &mut self.conn, cx)
    }

    /// Sends close_notify, flushes, and shuts the socket's write side.
    pub fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.conn.send_close_notify();
        std::task::ready!(self.poll_flush_all(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

// SAFETY: the halves of a split stream (the proxy's tunnel after a 101) each touch the
// rustls connection only inside a poll, never across an await, and on one thread: the read
// half only reads (socket read readiness, rustls's reader), the write half only writes
// (write readiness, rustls's writer), so neither takes the other's waker.
unsafe impl monoio::io::Split for TlsStream {}

impl AsRawFd for TlsStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let n = std::task::ready!(me.poll_read_plain(cx, buf.initialize_unfilled()))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_plain(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_all(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_close(cx)
    }
}

impl AsyncReadRent for TlsStream {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let len = buf.bytes_total();
        // SAFETY: the buffer's memory is valid for `bytes_total` bytes; rustls only copies
        // plaintext into it (u8 has no invalid values), and `set_init` below covers exactly
        // what was written.
        let dst = unsafe { std::slice::from_raw_parts_mut(buf.write_ptr(), len) };
        let r = poll_fn(|cx| self.poll_read_plain(cx, dst)).await;
        if let Ok(n) = r {
            // SAFETY: `n` bytes were just written at the start of the buffer.
            unsafe { buf.set_init(n) };
        }
        (r, buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // The first non-empty vector only: a short read is allowed.
        let (ptr, len) = {
            let iov = buf.write_iovec_ptr();
            let n = buf.write_iovec_len();
            // SAFETY: monoio guarantees `n` valid iovecs at `iov`.
            let vecs = unsafe { std::slice::from_raw_parts(iov, n) };
            vecs.iter()
                .find(|v| v.iov_len > 0)
                .map_or((std::ptr::null_mut(), 0), |v| {
                    (v.iov_base as *mut u8, v.iov_len)
                })
        };
        if len == 0 {
            return (Ok(0), buf);
        }
        // SAFETY: as in `read`, for this one vector.
        let dst = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
        let r = poll_fn(|cx| self.poll_read_plain(cx, dst)).await;
        if let Ok(n) = r {
            // SAFETY: `n` bytes were written into the first non-empty vector, which is the
            // first `n` bytes of the vectored buffer's unfilled space.
            unsafe { buf.set_init(n) };
        }
        (r, buf)
    }
}

impl AsyncWriteRent for TlsStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `read_ptr` is valid for `bytes_init` bytes while we hold `buf`.
        let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let r = poll_fn(|cx| self.poll_write_plain(cx, src)).await;
        let r = match r {
            Ok(n) => poll_fn(|cx| self.poll_flush_all(cx)).await.map(|()| n),
            Err(e) => Err(e),
        };
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
            let mut done = 0;
            while done < src.len() {
                match poll_fn(|cx| self.poll_write_plain(cx, &src[done..])).await {
                    Ok(n) => done += n,
                    Err(e) if total == 0 => return (Err(e), buf),
                    Err(_) => break,
                }
            }
            total += done;
        }
        let r = poll_fn(|cx| self.poll_flush_all(cx)).await.map(|()| total);
        (r, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_flush_all(cx)).await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_close(cx)).await
    }
}
