//! Ownership-passing I/O helpers: monoio's `read(buf) -> (res, buf)` moves the buffer into
//! the kernel's hands for the duration of the operation; these keep one buffer per
//! connection moving through every call and always hand it back.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::watchdog::Watch;

/// Free space guaranteed before each read, so a read is never a tiny one.
const MIN_READ: usize = 2048;

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

/// Ensures `buf` has room for a read of at least [`MIN_READ`] after its contents (growing by
/// at least its length, so repeated reads double it); returns where the read goes.
fn make_room(buf: &mut Vec<u8>) -> usize {
    let len = buf.len();
    if buf.capacity() - len < MIN_READ {
        buf.reserve(MIN_READ.max(len));
    }
    len
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
