//! Sending a file's bytes to a client socket without copying them through user space:
//! `splice` (file -> pipe -> socket, ring operations; io_uring has no sendfile) on io_uring,
//! `sendfile(2)` on epoll, where the socket is non-blocking and an EAGAIN waits for
//! writability. [`copy_body`] is the plain read + write, for streams the kernel cannot
//! splice into (TLS without kTLS) and for comparison.
//!
//! Measured with `benches/file_send.rs` (a file sent to a loopback reader; CPU of the whole
//! process, kernel worker threads included, per file; lowest of 7 runs, on the shared 2-core
//! machine under a load average of 7-13, so the spread between runs is wide): for 1 MiB,
//! io_uring splice 260-670 us against 350-445 us for read + write, epoll sendfile 300-480 us
//! against 340-580 us: no reliable CPU difference at that size here. The zero-copy path is
//! kept because it needs no buffer per transfer (1,000 slow downloads through 64 KiB buffers
//! would hold 64 MiB) and leaves the bytes in the page cache. Small files are another matter
//! (read + write was cheaper in every run): `respond` reads them into the head's buffer (see
//! `INLINE_MAX`). Tried and dropped: sendfile on the io_uring driver (the socket made
//! non-blocking for the send, POLLOUT on the ring after EAGAIN), 460-500 us.
//!
//! Timeouts are the proxy's: each step that waits on the client is watched by the worker's
//! watchdog with the deadline given (between two steps, as nginx's `send_timeout`), which
//! shuts the socket down on expiry and so ends the wait on either driver.
//!
//! Any error leaves the response cut short: the caller closes the connection.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use monoio::io::splice::SpliceDestination;
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{Pipe, TcpStream};

use crate::proxy::watchdog::Watch;

/// The pipe's capacity, and so the most one splice moves: 16 pages is Linux's default and
/// what an unprivileged process can give every pipe without hitting
/// `pipe-user-pages-soft`; larger pipes did not send faster (see `benches/file_send.rs`).
const PIPE_CHUNK: u32 = 64 * 1024;
/// Pipes kept per worker for the next file: a pipe that is in use is one more descriptor
/// pair, so only a few idle ones are kept.
const IDLE_PIPES: usize = 16;
/// The most one `sendfile` call sends before the worker turns to its other connections
/// (nginx's `sendfile_max_chunk` default).
const SENDFILE_CHUNK: usize = 2 << 20;

/// Part of an open file: what [`send_body`] sends.
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

/// Sends `body` (after its head, which the caller has sent) to `socket`, zero-copy:
/// splice on io_uring, sendfile on epoll. `timeout` bounds each wait for the client.
pub async fn send_body(
    socket: &mut TcpStream,
    body: &FileBody,
    timeout: Duration,
) -> Result<(), SendError> {
    if monoio::utils::is_legacy() {
        sendfile_body(socket, body, timeout).await
    } else {
        splice_body(socket, body, timeout).await
    }
}

/// file -> pipe -> socket, each a ring operation.
async fn splice_body(
    socket: &mut TcpStream,
    body: &FileBody,
    timeout: Duration,
) -> Result<(), SendError> {
    let mut pipe = PooledPipe::take()?;
    let fd = socket.as_raw_fd();
    let end = body.offset + body.len;
    let mut at = body.offset;
    while at < end {
        let want = (end - at).min(PIPE_CHUNK as u64) as u32;
        // Until the pipe is drained again it must not go back to the pool.
        pipe.clean = false;
        let (reader, writer) = pipe.ends();
        let n = body.file.splice_to_pipe_at(writer, at, want).await?;
        if n == 0 {
            pipe.clean = true;
            return Err(SendError::Truncated);
        }
        at += n as u64;
        let armed = Watch::both(Instant::now() + timeout).arm(fd);
        let mut left = n;
        let r = loop {
            // A splice into a socket runs on a kernel worker thread (io-wq) and blocks it while
            // the socket is full: waiting for room first keeps a slow client from holding one
            // (50 stalled clients held 50 threads without this wait, 4 with it).
            if let Err(e) = socket.writable(false).await {
                break Err(e);
            }
            match socket.splice_from_pipe(reader, left).await {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(m) if m >= left => break Ok(()),
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if armed.fired() {
            return Err(SendError::Timeout);
        }
        r?;
        pipe.clean = true;
    }
    Ok(())
}

/// sendfile(2) on the non-blocking socket of the epoll driver.
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
            io::ErrorKind::WouldBlock => {
                let armed = Watch::both(Instant::now() + timeout).arm(out);
                // Not relaxed: the driver's readiness may be stale (our sendfile does not
                // go through it), so it checks and, if need be, waits for the next edge.
                let r = socket.writable(false).await;
                if armed.fired() {
                    return Err(SendError::Timeout);
                }
                r?;
            }
            io::ErrorKind::Interrupted => {}
            _ => return Err(e.into()),
        }
    }
    Ok(())
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

thread_local! {
    /// Idle, empty pipes of this worker.
    static PIPES: RefCell<Vec<(Pipe, Pipe)>> = const { RefCell::new(Vec::new()) };
}

/// A pipe taken from the worker's pool; back to the pool on drop if it is empty.
struct PooledPipe {
    ends: Option<(Pipe, Pipe)>,
    /// Nothing is left in the pipe.
    clean: bool,
}

impl PooledPipe {
    fn take() -> io::Result<PooledPipe> {
        let ends = match PIPES.with(|p| p.borrow_mut().pop()) {
            Some(ends) => ends,
            None => monoio::net::unix::new_pipe()?,
        };
        Ok(PooledPipe {
            ends: Some(ends),
            clean: true,
        })
    }

    /// (read end, write end).
    fn ends(&mut self) -> (&mut Pipe, &mut Pipe) {
        let (r, w) = self.ends.as_mut().expect("pipe present until drop");
        (r, w)
    }
}

impl Drop for PooledPipe {
    fn drop(&mut self) {
        if let Some(ends) = self.ends.take() {
            if self.clean {
                PIPES.with(|p| {
                    let mut p = p.borrow_mut();
                    if p.len() < IDLE_PIPES {
                        p.push(ends);
                    }
                });
            }
        }
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
