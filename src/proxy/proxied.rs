//! The PROXY protocol header (v1 or v2) that an L4 balancer in front sends at the start of
//! each connection, read before anything else on a `proxy_protocol` listener (before TLS,
//! before HTTP). It is peeked first and then consumed to its exact length, so that not one
//! byte of what follows (a TLS ClientHello, a request) is taken. A connection without a
//! valid header is closed.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use std::os::fd::AsRawFd;

use crate::http::proxy_protocol::{self, Parsed, ProxyError, V2_MAX};
use crate::sys;

/// How long a header that arrived in pieces waits between two looks (a header nearly always
/// comes in one segment; this only bounds the rare retry).
const PIECE_WAIT: Duration = Duration::from_millis(1);

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error(transparent)]
    Invalid(#[from] ProxyError),
    #[error("no PROXY protocol header within the client header timeout")]
    Timeout,
    #[error("closed before a PROXY protocol header: {0}")]
    Io(#[from] io::Error),
}

/// Reads the header; `Ok(Some(source))` is the client address the balancer saw, `Ok(None)`
/// a header without one (`UNKNOWN`, `LOCAL`, or a unix source).
pub async fn read_proxy_header(
    stream: &TcpStream,
    timeout: Duration,
) -> Result<Option<SocketAddr>, HeaderError> {
    let deadline = Instant::now() + timeout;
    let mut peeked = vec![MaybeUninit::<u8>::uninit(); V2_MAX + 16];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(HeaderError::Timeout);
        }
        match monoio::time::timeout(deadline - now, stream.readable(false)).await {
            Err(_) => return Err(HeaderError::Timeout),
            Ok(r) => r?,
        }
        let fd = stream.as_raw_fd();
        let n = match sys::with_socket(fd, |s| s.peek(&mut peeked)) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        };
        // SAFETY: `peek` initialised the first `n` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(peeked.as_ptr().cast::<u8>(), n) };
        match proxy_protocol::parse(bytes)? {
            Parsed::Done(h) => {
                // The header is in the socket's buffer: take exactly its bytes.
                let mut taken = 0;
                while taken < h.len {
                    match sys::with_socket(fd, |s| s.recv(&mut peeked[..h.len - taken])) {
                        Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                        Ok(k) => taken += k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                return Ok(h.addrs.map(|a| a.source));
            }
            Parsed::Incomplete => monoio::time::sleep(PIECE_WAIT).await,
        }
    }
}
