//! Ownership-passing I/O helpers: monoio's `read(buf) -> (res, buf)` moves the buffer into
//! the kernel's hands for the duration of the operation; these keep one buffer per
//! connection moving through every call and always hand it back. Also what a client
//! stream must offer (`ClientIo`) and how to wait for the first of two operations.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Instant;

use monoio::buf::{IoBuf, IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{OwnedRead, TcpStream};
use monoio::BufResult;

use super::watchdog::Watch;
use crate::pool::make_room;

/// A client connection's stream: plain TCP, or TLS over it.
pub trait ClientIo: AsyncReadRent + AsyncWriteRent + AsRawFd + monoio::io::Split + 'static {
    /// Whether the connection is TLS (`$scheme` is then `https`).
    const TLS: bool = false;

    /// Whether this is an HTTP/2 stream presented as an HTTP/1.1 connection (`h2::gateway`):
    /// the access log then shows the protocol the client spoke.
    const HTTP2: bool = false;

    /// A read that stays in flight while responses are written (see `conn`).
    type Armed: Future<Output = BufResult<usize, SliceMut<Vec<u8>>>> + Unpin + 'static;

    /// Starts such a read, or hands the buffer back when this stream cannot (its reads
    /// then happen one at a time, when the connection needs them).
    fn read_owned(&self, buf: SliceMut<Vec<u8>>) -> Result<Self::Armed, SliceMut<Vec<u8>>>;

    /// The plain TCP socket, when bytes written to it reach the client as they are: a file
    /// body can then go from the page cache to the socket without a copy (sendfile).
    /// `None` for TLS in user space (the bytes must be encrypted on the way).
    fn plain_tcp(&mut self) -> Option<&mut TcpStream> {
        None
    }
}

impl ClientIo for TcpStream {
    type Armed = OwnedRead<SliceMut<Vec<u8>>>;

    fn read_owned(&self, buf: SliceMut<Vec<u8>>) -> Result<Self::Armed, SliceMut<Vec<u8>>> {
        Ok(TcpStream::read_owned(self, buf))
    }

    fn plain_tcp(&mut self) -> Option<&mut TcpStream> {
        Some(self)
    }
}

/// Which of two waits ended first.
pub enum First<A, B> {
    Left(A),
    Right(B),
}

/// Waits for `left` or for `right` (a poll of something that lives on, such as an armed
/// read: it is not dropped when `left` wins). `left` is dropped, and so cancelled, when
/// `right` wins.
pub async fn first<L: Future, R>(
    left: L,
    mut right: impl FnMut(&mut Context<'_>) -> Poll<R>,
) -> First<L::Output, R> {
    let mut left = pin!(left);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(a) = left.as_mut().poll(cx) {
            return Poll::Ready(First::Left(a));
        }
        right(cx).map(First::Right)
    })
    .await
}

/// Why an I/O step failed.
#[derive(Debug)]
pub enum IoFail {
    /// The deadline passed; the connection is shut down (or, for the timer-based helpers,
    /// the buffer is gone with the cancelled operation) and must be closed.
    Timeout,
    Io(io::Error),
}

/// Reads once, appending to `buf`, watched by the worker's watchdog. `Ok(0)` is end of
/// stream.
pub async fn recv<S: AsyncReadRent + AsRawFd>(
    s: &mut S,
    mut buf: Vec<u8>,
    watch: Watch,
) -> (Result<usize, IoFail>, Vec<u8>) {
    let len = make_room(&mut buf);
    let armed = watch.arm(s.as_raw_fd());
    let (r, slice) = s.read(buf.slice_mut(len..)).await;
    if armed.fired() {
        return (Err(IoFail::Timeout), slice.into_inner());
    }
    (r.map_err(IoFail::Io), slice.into_inner())
}

/// Writes `buf[range]` completely, watched by the worker's watchdog.
pub async fn send<S: AsyncWriteRent + AsRawFd>(
    s: &mut S,
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
    watch: Watch,
) -> (Result<(), IoFail>, Vec<u8>) {
    if range.is_empty() {
        return (Ok(()), buf);
    }
    let armed = watch.arm(s.as_raw_fd());
    // A loop over single writes rather than monoio's `write_all`: one future layer less on
    // every send, and a send to a socket with buffer space completes in one pass. A deadline
    // that passes mid-way shuts the socket down, which ends the loop with an error.
    let (mut pos, end) = (range.start, range.end);
    let mut buf = buf;
    let r = loop {
        let (r, slice) = s.write(buf.slice(pos..end)).await;
        buf = slice.into_inner();
        match r {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                pos += n;
                if pos == end {
                    break Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    if armed.fired() {
        return (Err(IoFail::Timeout), buf);
    }
    (r.map_err(IoFail::Io), buf)
}

/// Reads once, appending to `buf`, with a timer for its deadline: for the tunnel, whose
/// two directions share a socket (one watchdog entry per descriptor would not do).
/// `Ok(0)` is end of stream.
pub async fn read_append<S: AsyncReadRent>(
    s: &mut S,
    mut buf: Vec<u8>,
    deadline: Instant,
) -> (Result<usize, IoFail>, Vec<u8>) {
    let len = make_room(&mut buf);
    match monoio::time::timeout_at(deadline.into(), s.read(buf.slice_mut(len..))).await {
        Ok((Ok(n), slice)) => (Ok(n), slice.into_inner()),
        Ok((Err(e), slice)) => (Err(IoFail::Io(e)), slice.into_inner()),
        Err(_) => (Err(IoFail::Timeout), Vec::new()),
    }
}

/// Writes `buf[from..]` completely, with a timer for its deadline (the tunnel; see
/// [`read_append`]).
pub async fn write_from<S: AsyncWriteRent>(
    s: &mut S,
    buf: Vec<u8>,
    from: usize,
    deadline: Instant,
) -> (Result<(), IoFail>, Vec<u8>) {
    if from >= buf.len() {
        return (Ok(()), buf);
    }
    let end = buf.len();
    match monoio::time::timeout_at(deadline.into(), s.write_all(buf.slice(from..end))).await {
        Ok((Ok(_), slice)) => (Ok(()), slice.into_inner()),
        Ok((Err(e), slice)) => (Err(IoFail::Io(e)), slice.into_inner()),
        Err(_) => (Err(IoFail::Timeout), Vec::new()),
    }
}
