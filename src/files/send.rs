//! Sending a file's bytes to a client socket without copying them through user space:
//! the head with `send(MSG_MORE)` and the body with `sendfile(2)`, as system calls on a
//! non-blocking socket on both drivers, an EAGAIN waiting for writability through the
//! driver. [`copy_body`] is the plain read + write, for streams the kernel cannot send a
//! file into (TLS without kTLS).
//!
//! Measured by hand (a 1 MiB file, 16 connections through one worker pinned to one core,
//! the generator on the other; the CPU of the whole process, kernel threads included, per
//! file; medians of 5-7 rounds of 3-4 s, which on this shared VM spread 3-5x within one
//! binary: the loopback TCP work and the wake-ups of the client dominate): on io_uring,
//! splice through a pipe as ring operations (io_uring has no sendfile, and the socket side
//! of a splice runs on an io-wq kernel thread) 474 us; sendfile after a head sent by the
//! ring 171-219 us; the head with `MSG_MORE` and sendfile 192-287 us; epoll's sendfile
//! 118-358 us. Splice was dropped; the last two are the same within the noise, and the
//! head with `MSG_MORE` is one path for both drivers with one ring operation and one TCP
//! segment fewer. Small files are another matter (read + write was cheaper in every run of
//! `benches/file_send.rs`): `respond` reads them into the head's buffer (see `INLINE_MAX`).
//!
//! Timeouts are the proxy's: each step that waits on the client is watched by the worker's
//! watchdog with the deadline given (between two steps, as nginx's `send_timeout`), which
//! shuts the socket down on expiry and so ends the wait on either driver.
//!
//! Any error leaves the response cut short: the caller closes the connection.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use monoio::io::{AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::proxy::watchdog::Watch;

/// The most one `sendfile` call sends before the worker turns to its other connections
/// (nginx's `sendfile_max_chunk` default).
const SENDFILE_CHUNK: usize = 2 << 20;

/// Part of an open file: what [`send_file`] sends.
#[derive(Debug)]
pub struct FileBody {
    pub file: monoio::fs::File,
    pub offset: u64,
    pub len: u64,
}

/// Why a body could not be sent completely.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("client did not take the file within the send timeout")]
    Timeout,
    #[error("sending a file: {0}")]
    Io(#[from] io::Error),
    /// The file ended before the length announced in the head (it shrank meanwhile).
    #[error("file shorter than announced")]
    Truncated,
}

/// Sends `head` and then `body` to `socket`: the head with `MSG_MORE`, so that it leaves in
/// the body's first segment, the body with sendfile(2). `timeout` bounds each wait for the
/// client.
///
/// The io_uring driver's sockets are blocking (the ring does the waiting): they are made
/// non-blocking for these calls only, so that a full socket is an EAGAIN and a ring poll,
/// never a blocked worker. No other operation of the connection is submitted meanwhile
/// (and the ring fixes a request's mode when it is submitted, so one in flight is
/// unaffected).
pub async fn send_file(
    socket: &mut TcpStream,
    head: &[u8],
    body: &FileBody,
    timeout: Duration,
) -> Result<(), SendError> {
    let _nonblocking = if monoio::utils::is_legacy() {
        None
    } else {
        Some(NonBlocking::set(socket.as_raw_fd())?)
    };
    send_head(socket, head, timeout).await?;
    sendfile_body(socket, body, timeout).await
}

/// `send(MSG_MORE)` of all of `head` on the non-blocking `socket`.
async fn send_head(
    socket: &mut TcpStream,
    head: &[u8],
    timeout: Duration,
) -> Result<(), SendError> {
    let fd = socket.as_raw_fd();
    let mut at = 0;
    while at < head.len() {
        // SAFETY: `head[at..]` is valid for reads during the call; the socket is open.
        let n = unsafe {
            libc::send(
                fd,
                head[at..].as_ptr().cast(),
                head.len() - at,
                libc::MSG_MORE | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            at += n as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => wait_writable(socket, timeout).await?,
            io::ErrorKind::Interrupted => {}
            _ => return Err(e.into()),
        }
    }
    Ok(())
}

/// sendfile(2) of `body` on the non-blocking `socket`.
async fn sendfile_body(
    socket: &mut TcpStream,
    body: &FileBody,
    timeout: Duration,
) -> Result<(), SendError> {
    let (out, file) = (socket.as_raw_fd(), body.file.as_raw_fd());
    let end = body.offset + body.len;
    let mut at = body.offset as libc::off_t;
    while (at as u64) < end {
        let want = ((end - at as u64) as usize).min(SENDFILE_CHUNK);
        // SAFETY: both descriptors are open for the duration of the call; `at` is ours.
        let n = unsafe { libc::sendfile(out, file, &mut at, want) };
        if n > 0 {
            if n as usize == SENDFILE_CHUNK {
                // A client that takes everything must not hold the worker for a whole
                // large file: let the other connections run.
                YieldNow(false).await;
            }
            continue;
        }
        if n == 0 {
            return Err(SendError::Truncated);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => wait_writable(socket, timeout).await?,
            io::ErrorKind::Interrupted => {}
            _ => return Err(e.into()),
        }
    }
    Ok(())
}

/// Waits until `socket` takes more, watched by the worker's watchdog.
async fn wait_writable(socket: &mut TcpStream, timeout: Duration) -> Result<(), SendError> {
    let armed = Watch::both(Instant::now() + timeout).arm(socket.as_raw_fd());
    // Not relaxed: the driver's readiness may be stale (these system calls do not go
    // through it), so it checks and, if need be, waits for the next edge.
    let r = socket.writable(false).await;
    if armed.fired() {
        return Err(SendError::Timeout);
    }
    Ok(r?)
}

/// `O_NONBLOCK` on a descriptor for as long as this lives, then its flags as they were.
struct NonBlocking {
    fd: RawFd,
    flags: libc::c_int,
}

impl NonBlocking {
    fn set(fd: RawFd) -> io::Result<NonBlocking> {
        // SAFETY: fcntl on a descriptor the caller keeps open; no pointers involved.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NonBlocking { fd, flags })
    }
}

impl Drop for NonBlocking {
    fn drop(&mut self) {
        if self.flags & libc::O_NONBLOCK == 0 {
            // SAFETY: as in `set`; the socket outlives the guard (borrowed meanwhile).
            unsafe { libc::fcntl(self.fd, libc::F_SETFL, self.flags) };
        }
    }
}

/// Reads `body` into `buf` and writes it to `socket`, piece by piece: for streams that
/// cannot be spliced into (TLS in user space). `buf`'s capacity is the piece size; it is
/// handed back.
pub async fn copy_body<S: AsyncWriteRent + AsRawFd>(
    socket: &mut S,
    body: &FileBody,
    mut buf: Vec<u8>,
    timeout: Duration,
) -> (Result<(), SendError>, Vec<u8>) {
    let fd = socket.as_raw_fd();
    let end = body.offset + body.len;
    let mut at = body.offset;
    let piece = buf.capacity().max(4096);
    while at < end {
        buf.clear();
        let want = ((end - at) as usize).min(piece);
        let (r, slice) = body.file.read_at(buf.slice_mut_to(want), at).await;
        buf = slice.into_inner();
        match r {
            Ok(0) => return (Err(SendError::Truncated), buf),
            Ok(n) => at += n as u64,
            Err(e) => return (Err(e.into()), buf),
        }
        let armed = Watch::both(Instant::now() + timeout).arm(fd);
        let (r, b) = socket.write_all(buf).await;
        buf = b;
        if armed.fired() {
            return (Err(SendError::Timeout), buf);
        }
        if let Err(e) = r {
            return (Err(e.into()), buf);
        }
    }
    (Ok(()), buf)
}

/// `slice_mut(..n)` of an empty vector with room for `n`.
trait SliceTo {
    fn slice_mut_to(self, n: usize) -> monoio::buf::SliceMut<Vec<u8>>;
}

impl SliceTo for Vec<u8> {
    fn slice_mut_to(mut self, n: usize) -> monoio::buf::SliceMut<Vec<u8>> {
        use monoio::buf::IoBufMut;
        if self.capacity() < n {
            self.reserve(n);
        }
        self.slice_mut(0..n)
    }
}

/// Gives the other tasks of the worker a turn (monoio has no public `yield_now`).
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
