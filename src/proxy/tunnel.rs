//! The byte tunnel after a `101 Switching Protocols` (WebSocket and other upgrades): both
//! directions copied until each side closes or stays silent past the idle timeout.

use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

use monoio::io::{AsyncWriteRent, Splitable};
use monoio::net::TcpStream;

use super::io::{read_append, write_from};
use super::ProxyCtx;

/// Per-direction buffer of a tunnel.
const TUNNEL_BUF: usize = 16 * 1024;

/// Runs the tunnel. `early`: bytes the client sent after its request head, which already
/// belong to the upgraded protocol.
pub(super) async fn run(
    _ctx: &ProxyCtx,
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    early: Vec<u8>,
    idle: Duration,
) {
    // The tunnel needs each socket split into a read and a write half driven concurrently;
    // the callers own their streams, so the tunnel works on duplicates of the descriptors
    // (shutdown acts on the socket, so closing directions still works).
    let (Some(c), Some(u)) = (duplicate(client), duplicate(upstream)) else {
        return;
    };
    let (mut cr, mut cw) = c.into_split();
    let (mut ur, mut uw) = u.into_split();
    let up = async {
        let mut buf = early;
        buf.reserve(TUNNEL_BUF);
        loop {
            if !buf.is_empty() {
                let (r, b) = write_from(&mut uw, buf, 0, Instant::now() + idle).await;
                buf = b;
                if r.is_err() {
                    break;
                }
                buf.clear();
            }
            let (r, b) = read_append(&mut cr, buf, Instant::now() + idle).await;
            buf = b;
            match r {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let _ = uw.shutdown().await;
    };
    let down = async {
        let mut buf = Vec::with_capacity(TUNNEL_BUF);
        loop {
            let (r, b) = read_append(&mut ur, buf, Instant::now() + idle).await;
            buf = b;
            match r {
                Ok(n) if n > 0 => {}
                _ => break,
            }
            let (r, b) = write_from(&mut cw, buf, 0, Instant::now() + idle).await;
            buf = b;
            if r.is_err() {
                break;
            }
            buf.clear();
        }
        let _ = cw.shutdown().await;
    };
    monoio::join!(up, down);
}

fn duplicate(s: &TcpStream) -> Option<TcpStream> {
    // SAFETY: dup returns a new descriptor we own (or -1, checked).
    let fd = unsafe { libc::fcntl(s.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a fresh, owned descriptor of a connected TCP socket.
    let std = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    TcpStream::from_std(std).ok()
}
