//! The raw socket system calls ringlb makes itself, outside monoio's operations: shutting a
//! socket down by descriptor (the watchdog ends a timed-out operation that way, a lingering
//! close sends its FIN that way, a PROXY protocol header is peeked that way). One home, so
//! that the `unsafe` of borrowing a descriptor is written once.

use std::io;
use std::net::Shutdown;
use std::os::fd::{BorrowedFd, RawFd};

use socket2::SockRef;

/// Runs `f` on `fd`'s socket (for the calls monoio does not wrap: peeking, a non-blocking
/// receive of bytes known to be there). The caller guarantees that `fd` is an open socket
/// for the duration of the call.
pub fn with_socket<R>(fd: RawFd, f: impl FnOnce(SockRef<'_>) -> R) -> R {
    // SAFETY: `fd` is open for the duration of this call (see above); the borrow does not
    // outlive it.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    f(SockRef::from(&fd))
}

/// Shuts down `fd`'s socket in direction `how`.
///
/// The caller guarantees that `fd` is an open socket for the duration of the call (the
/// watchdog's entries are removed before their socket closes; a connection shuts down its
/// own socket).
pub fn shutdown(fd: RawFd, how: Shutdown) -> io::Result<()> {
    with_socket(fd, |s| s.shutdown(how))
}
