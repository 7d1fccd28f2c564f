//! The client side of a connection: its socket, its read buffer, the peer, how many
//! requests it has carried, and the read kept armed on it. It outlives many exchanges.
//!
//! Between requests (and during an exchange, once the request has been read) a read is kept
//! armed on the client socket. It is the read that will bring the next request anyway, and
//! while a response is awaited it tells when the client goes away: the exchange is then
//! abandoned instead of holding a server for nobody (nginx's `proxy_ignore_client_abort
//! off`). On epoll it is armed as soon as the request is read: free, since nothing is read
//! before the socket is readable. On io_uring a read armed on a quiet socket is a kernel
//! poll, and a wake-up when the next request comes, where a read submitted after the
//! response usually finds that request already there (measured: 4-5% of the CPU per
//! request with 64 clients on one worker). So there the exchange arms it only once the
//! response has been awaited for a while (`watch_now`, on the watchdog's nudge): a client
//! that leaves is noticed within a few tens of milliseconds instead of at once.

use std::future::Future;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;

use super::io::{recv, send, ClientIo, IoFail};
use super::watchdog::Watch;
use crate::pool::make_room;

/// First allocation of a client's read buffer: a typical request head fits, and 10,000 idle
/// connections cost 20 MiB of buffers at most.
pub(super) const CLIENT_BUF: usize = 2048;
/// Lingering close (see `Conn::linger`): at most this long in all, this long between two
/// reads, and this many bytes dropped (nginx: lingering_time 30s, lingering_timeout 5s; a
/// proxy under attack should let go sooner).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_TIMEOUT: Duration = Duration::from_millis(500);
const LINGER_MAX_BYTES: usize = 1 << 20;

/// Who is at the other end of a client connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The TCP peer.
    pub addr: SocketAddr,
    /// The source address of the connection's PROXY protocol header, if the listener
    /// expects one and it named one (`real_ip_header = "proxy_protocol"` reads it).
    pub proxied: Option<SocketAddr>,
}

impl Peer {
    pub fn direct(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            proxied: None,
        }
    }
}

/// One client connection's state, reused from request to request.
pub(super) struct Conn<S: ClientIo> {
    pub(super) stream: S,
    /// The TCP peer's address (a request's client may differ: see `Exchange::client`).
    pub(super) remote: SocketAddr,
    /// The PROXY protocol header's source address, if any.
    pub(super) proxied: Option<SocketAddr>,
    pub(super) listen: SocketAddr,
    /// Bytes read from the client; the current request starts at 0. Empty (without
    /// capacity) while the armed read owns it.
    pub(super) buf: Vec<u8>,
    armed: Option<S::Armed>,
    /// The current request is all read: a read may be armed to watch the client
    /// (`watch_client`).
    watch_wanted: bool,
    /// Arm that read at once (epoll), or only when asked again (`watch_now`; io_uring).
    watch_early: bool,
    /// Requests served on this connection.
    pub(super) served: u64,
    /// The last clock reading: taken when a request head starts arriving and when a
    /// response head arrives, and reused for every deadline in between (timeouts are in
    /// seconds; reading the clock before every operation is measurable per request).
    pub(super) clock: Instant,
}

impl<S: ClientIo> Conn<S> {
    pub(super) fn new(stream: S, peer: Peer, listen: SocketAddr) -> Conn<S> {
        Conn {
            stream,
            remote: peer.addr,
            proxied: peer.proxied,
            listen,
            buf: Vec::with_capacity(CLIENT_BUF),
            armed: None,
            watch_wanted: false,
            watch_early: monoio::utils::is_legacy(),
            served: 0,
            clock: Instant::now(),
        }
    }

    /// Whether a read is armed (and owns `buf`).
    pub(super) fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Once the current request is all read: the read that brings the next one may be
    /// armed, and meanwhile tells if the client goes away. At once on epoll, else on
    /// [`Conn::watch_now`] (see the module documentation).
    pub(super) fn watch_client(&mut self) {
        self.watch_wanted = true;
        if self.watch_early {
            self.watch_now();
        }
    }

    /// Whether the client is to be watched but is not yet (`watch_now` would arm).
    pub(super) fn watch_deferred(&self) -> bool {
        self.watch_wanted && self.armed.is_none() && self.buf.is_empty()
    }

    /// Arms the client watch `watch_client` allowed. Not when the client already sent
    /// more (pipelined requests wait in `buf`, and the armed read would hide them).
    pub(super) fn watch_now(&mut self) {
        if self.watch_wanted && self.buf.is_empty() {
            self.arm();
        }
    }

    /// Starts the client read that stays in flight (see the module documentation), appending
    /// to `buf`; does nothing if one is armed or the stream cannot keep one.
    fn arm(&mut self) {
        if self.armed.is_some() {
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        let len = make_room(&mut buf);
        match self.stream.read_owned(buf.slice_mut(len..)) {
            Ok(read) => self.armed = Some(read),
            Err(slice) => self.buf = slice.into_inner(),
        }
    }

    /// Polls the armed read; when it completes, `buf` holds what it read (appended).
    /// Pending when no read is armed.
    pub(super) fn poll_armed(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let Some(read) = self.armed.as_mut() else {
            return Poll::Pending;
        };
        match std::pin::Pin::new(read).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready((res, slice)) => {
                self.armed = None;
                self.buf = slice.into_inner();
                Poll::Ready(res)
            }
        }
    }

    /// Reads once more from the client, appending to `buf`: through the armed read when
    /// there is one. `Ok(0)` is end of stream.
    pub(super) async fn read(&mut self, watch: Watch) -> Result<usize, IoFail> {
        // Reading again: a request (or its body) is not all read.
        self.watch_wanted = false;
        self.arm();
        if self.armed.is_none() {
            let buf = std::mem::take(&mut self.buf);
            let (res, buf) = recv(&mut self.stream, buf, watch).await;
            self.buf = buf;
            return res;
        }
        let armed = watch.arm(self.stream.as_raw_fd());
        let res = std::future::poll_fn(|cx| self.poll_armed(cx)).await;
        if armed.fired() {
            return Err(IoFail::Timeout);
        }
        res.map_err(IoFail::Io)
    }

    /// Drops the first `n` bytes of `buf` (the request just served), keeping any
    /// pipelined bytes that follow.
    pub(super) fn consume(&mut self, n: usize) {
        if n >= self.buf.len() {
            self.buf.clear();
        } else {
            self.buf.drain(..n);
        }
    }

    /// Writes `buf[range]` to the client, watched by `deadline`.
    pub(super) async fn send(
        &mut self,
        buf: Vec<u8>,
        range: std::ops::Range<usize>,
        deadline: Instant,
    ) -> (Result<(), IoFail>, Vec<u8>) {
        send(&mut self.stream, buf, range, Watch::both(deadline)).await
    }

    /// nginx's lingering close: after a response on a connection that is closing while the
    /// client may still be sending, send FIN and read (and drop) what the client is still
    /// sending for a short while. Closing with unread data would send a reset, which can
    /// destroy the response before the client reads it (a 413 for a body still arriving,
    /// typically).
    pub(super) async fn linger(&mut self) {
        // The descriptor is this connection's, open until `self` is dropped.
        let _ = crate::sys::shutdown(self.stream.as_raw_fd(), std::net::Shutdown::Write);
        let until = Instant::now() + LINGER_TIME;
        let mut drained = 0usize;
        while drained < LINGER_MAX_BYTES {
            let now = Instant::now();
            if now >= until {
                break;
            }
            if self.armed.is_none() {
                self.buf.clear();
            }
            match self
                .read(Watch::read((now + LINGER_TIMEOUT).min(until)))
                .await
            {
                Ok(n) if n > 0 => drained += n,
                _ => break,
            }
        }
    }
}
