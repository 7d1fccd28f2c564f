//! One connection to a backend server: its socket (TCP or unix), its read buffer, and the
//! read that is kept armed on it.
//!
//! A read is kept in flight on an upstream connection wherever it does a job: while a
//! request body is written (a server that answers early, a 403 before it read the body, is
//! seen at once, not after the next write fails), while the response is awaited (it is the
//! response read), and, on epoll, while the connection idles in the pool (an idle
//! connection whose server spoke out of turn or closed then has a completed read, and the
//! pool discards it before anything is written to it: RFC 9112 6.3, a client MUST NOT
//! forward extra data as a separate response). On io_uring the pool peeks instead
//! ([`UpConn::spoke_or_closed`]; why in `IdlePool::new`).

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, Slice, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::{OwnedRead, OwnedWrite, TcpStream, UnixStream};
use monoio::BufResult;

use crate::config::ServerAddr;

/// Read buffer of an upstream connection: large enough that a typical response head and
/// a small body arrive in one read, small enough that 64 idle connections per server cost
/// 2 MiB.
pub const UPSTREAM_BUF: usize = 32 * 1024;

/// Free space guaranteed before each read, so that a read is never a tiny one.
pub(crate) const MIN_READ: usize = 2048;

/// The socket of an upstream connection.
pub enum UpStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl UpStream {
    fn read_owned(&self, buf: SliceMut<Vec<u8>>) -> OwnedRead<SliceMut<Vec<u8>>> {
        match self {
            UpStream::Tcp(s) => s.read_owned(buf),
            UpStream::Unix(s) => s.read_owned(buf),
        }
    }

    /// A write that does not borrow the stream, so that the armed read can be re-armed
    /// while it is in flight.
    pub fn write_owned(&self, buf: Slice<Vec<u8>>) -> OwnedWrite<Slice<Vec<u8>>> {
        match self {
            UpStream::Tcp(s) => s.write_owned(buf),
            UpStream::Unix(s) => s.write_owned(buf),
        }
    }
}

// SAFETY: both kinds of socket are `Split` (their reads and writes are independent).
unsafe impl monoio::io::Split for UpStream {}

impl AsRawFd for UpStream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            UpStream::Tcp(s) => s.as_raw_fd(),
            UpStream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl AsyncReadRent for UpStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpStream::Tcp(s) => s.read(buf).await,
            UpStream::Unix(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpStream::Tcp(s) => s.readv(buf).await,
            UpStream::Unix(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for UpStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpStream::Tcp(s) => s.write(buf).await,
            UpStream::Unix(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpStream::Tcp(s) => s.writev(buf).await,
            UpStream::Unix(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            UpStream::Tcp(s) => s.shutdown().await,
            UpStream::Unix(s) => s.shutdown().await,
        }
    }
}

/// A connection to one backend server, with its own read buffer.
pub struct UpConn {
    pub stream: UpStream,
    /// Bytes read and not yet consumed. Empty (and without capacity) while the armed read
    /// owns the buffer.
    pub buf: Vec<u8>,
    armed: Option<OwnedRead<SliceMut<Vec<u8>>>>,
    /// Requests sent on this connection so far (for `keepalive_requests`).
    pub requests: u64,
    /// When it must be closed if still idle (`keepalive_timeout`).
    pub(super) idle_until: Instant,
}

impl UpConn {
    pub fn new(stream: UpStream) -> UpConn {
        UpConn {
            stream,
            buf: Vec::with_capacity(UPSTREAM_BUF),
            armed: None,
            requests: 0,
            idle_until: Instant::now(),
        }
    }

    /// Connects to `to` within `timeout`.
    pub async fn connect(to: &ServerAddr, timeout: Duration) -> Result<UpConn, ConnectError> {
        let connecting = async {
            match to {
                ServerAddr::Inet(addr) => {
                    let s = TcpStream::connect_addr(*addr).await?;
                    let _ = s.set_nodelay(true);
                    Ok(UpStream::Tcp(s))
                }
                ServerAddr::Unix(path) => UnixStream::connect(path).await.map(UpStream::Unix),
            }
        };
        match monoio::time::timeout(timeout, connecting).await {
            Ok(Ok(s)) => Ok(UpConn::new(s)),
            Ok(Err(e)) => Err(ConnectError::Io(e)),
            Err(_) => Err(ConnectError::Timeout),
        }
    }

    /// Starts the read that stays in flight until someone needs its result (see the module
    /// documentation); appends after what `buf` holds. Does nothing if one is in flight.
    pub fn arm(&mut self) {
        if self.armed.is_some() {
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        let len = make_room(&mut buf);
        self.armed = Some(self.stream.read_owned(buf.slice_mut(len..)));
    }

    pub fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Polls the armed read; when it completes, `buf` holds what it read (appended).
    /// `Ready(Ok(0))` is end of stream. Pending when no read is armed.
    pub fn poll_armed(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_read(&mut self.armed, &mut self.buf, cx)
    }

    /// The socket for writing, and the armed read to watch meanwhile.
    pub fn split(&mut self) -> (&mut UpStream, ArmedRead<'_>) {
        (
            &mut self.stream,
            ArmedRead {
                armed: &mut self.armed,
                buf: &mut self.buf,
            },
        )
    }

    /// Whether the server has sent anything (bytes, end of stream, an error) since the
    /// read was armed: a connection that did must never carry another request. Costs no
    /// system call on io_uring (the completion, if any, is already in the ring).
    pub fn spoke(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.poll_armed(&mut cx).is_ready()
    }

    /// Whether the server has sent anything or closed since the response ended: through
    /// the armed read when there is one ([`UpConn::spoke`]), else by peeking at the socket
    /// without blocking (one system call).
    pub fn spoke_or_closed(&mut self) -> bool {
        if self.armed.is_some() {
            return self.spoke();
        }
        let mut byte = 0u8;
        // SAFETY: a one-byte buffer that outlives the call, on a socket this owns.
        let n = unsafe {
            libc::recv(
                self.stream.as_raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        // 0 is end of stream, 1 a stray byte; only "nothing to read" (EAGAIN) is clean.
        n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock
    }

    /// Waits for the armed read (arming one if needed) and returns how many bytes it
    /// appended to `buf`.
    pub async fn read(&mut self) -> io::Result<usize> {
        self.arm();
        std::future::poll_fn(|cx| self.poll_armed(cx)).await
    }
}

/// The armed read of a connection whose socket is borrowed for a write.
pub struct ArmedRead<'a> {
    armed: &'a mut Option<OwnedRead<SliceMut<Vec<u8>>>>,
    buf: &'a mut Vec<u8>,
}

impl ArmedRead<'_> {
    /// See [`UpConn::poll_armed`].
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_read(self.armed, self.buf, cx)
    }
}

fn poll_read(
    armed: &mut Option<OwnedRead<SliceMut<Vec<u8>>>>,
    buf: &mut Vec<u8>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let Some(read) = armed.as_mut() else {
        return Poll::Pending;
    };
    match Pin::new(read).poll(cx) {
        Poll::Pending => Poll::Pending,
        Poll::Ready((res, slice)) => {
            *armed = None;
            *buf = slice.into_inner();
            Poll::Ready(res)
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    Timeout,
    Io(io::Error),
}

/// Ensures `buf` has room for a read of at least [`MIN_READ`] after its contents (growing by
/// at least its length, so that repeated reads double it); returns where the read goes.
pub(crate) fn make_room(buf: &mut Vec<u8>) -> usize {
    let len = buf.len();
    if buf.capacity() - len < MIN_READ {
        buf.reserve(MIN_READ.max(len));
    }
    len
}
