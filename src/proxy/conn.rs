//! The downstream side of an HTTP/1.1 connection: its socket, its read buffer, the peer,
//! how many requests it has carried. It outlives many exchanges: it reads each request
//! head, routes it, hands it to an [`Exchange`], and waits for the next one.
//!
//! Between requests (and during an exchange, once the request has been read) a read is kept
//! armed on the client socket. It is the read that will bring the next request anyway, so
//! it costs nothing extra, and while a response is awaited it tells at once when the client
//! goes away: the exchange is then abandoned instead of holding a server for nobody (nginx's
//! `proxy_ignore_client_abort off`).

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::net::TcpStream;

use super::exchange::Exchange;
use super::io::{recv, send, ClientIo, IoFail};
use super::slot;
use super::watchdog::Watch;
use super::ProxyCtx;
use crate::config::VirtualServer;
use crate::http::request;
use crate::http::rewrite;
use crate::metrics::{self, WorkerStats};
use crate::pool::make_room;

/// First allocation of a client's read buffer: a typical request head fits, and 10,000 idle
/// connections cost 20 MiB of buffers at most.
const CLIENT_BUF: usize = 2048;
/// Lingering close (see `Conn::linger`): at most this long in all, this long between two
/// reads, and this many bytes dropped (nginx: lingering_time 30s, lingering_timeout 5s; a
/// proxy under attack should let go sooner).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_TIMEOUT: Duration = Duration::from_millis(500);
const LINGER_MAX_BYTES: usize = 1 << 20;
/// After a large request the buffer shrinks back so that an idle connection stays cheap.
const SHRINK_ABOVE: usize = 64 * 1024;

/// One client connection's state, reused from request to request.
pub(super) struct Conn<S: ClientIo> {
    pub(super) stream: S,
    /// The client's address.
    pub(super) remote: SocketAddr,
    pub(super) listen: SocketAddr,
    /// Bytes read from the client; the current request starts at 0. Empty (without
    /// capacity) while the armed read owns it.
    pub(super) buf: Vec<u8>,
    armed: Option<S::Armed>,
    /// Requests served on this connection.
    pub(super) served: u64,
    /// The last clock reading: taken when a request head starts arriving and when a
    /// response head arrives, and reused for every deadline in between (timeouts are in
    /// seconds; reading the clock before every operation is measurable per request).
    pub(super) clock: Instant,
}

/// Serves one accepted TCP client connection until it closes.
pub async fn serve(stream: TcpStream, remote: SocketAddr, listen: SocketAddr, ctx: Rc<ProxyCtx>) {
    let _ = stream.set_nodelay(true);
    serve_stream(stream, remote, listen, ctx).await
}

/// Serves one client connection over any stream (plain TCP, TLS) until it closes.
pub async fn serve_stream<S: ClientIo>(
    stream: S,
    remote: SocketAddr,
    listen: SocketAddr,
    ctx: Rc<ProxyCtx>,
) {
    let _open = OpenGuard::new(&ctx.stats);
    metrics::bump(&ctx.stats.clients_accepted);
    let mut conn = Conn {
        stream,
        remote,
        listen,
        buf: Vec::with_capacity(CLIENT_BUF),
        armed: None,
        served: 0,
        clock: Instant::now(),
    };
    let mut ex = Exchange::default();
    conn.run(&ctx, &mut ex).await;
}

/// Counts an open client connection for as long as it lives, including when its task ends
/// by a panic.
struct OpenGuard<'a>(&'a WorkerStats);

impl<'a> OpenGuard<'a> {
    fn new(stats: &'a WorkerStats) -> Self {
        metrics::bump(&stats.clients_open);
        OpenGuard(stats)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        metrics::drop_one(&self.0.clients_open);
    }
}

enum HeadRead {
    Ready,
    /// The client closed or went quiet: close without a response.
    Gone,
    Reject(u16),
}

impl<S: ClientIo> Conn<S> {
    async fn run(&mut self, ctx: &ProxyCtx, ex: &mut Exchange) {
        loop {
            let cur = ctx.current();
            let config = cur.config();
            // Before the Host header is known, the address's default server sets the limits
            // (as in nginx).
            let Some(default_vs) = cur.routes.server(config, self.listen, None) else {
                return;
            };
            match self.read_head(ctx, default_vs, ex).await {
                HeadRead::Ready => {}
                HeadRead::Gone => return,
                HeadRead::Reject(status) => {
                    ex.log.reset();
                    if default_vs.access_log.is_some() {
                        ex.capture_rejected(&self.buf);
                    }
                    self.respond_own(ctx, ex, status, true, default_vs).await;
                    ex.write_log(ctx, &cur, self.remote, default_vs);
                    return;
                }
            }
            metrics::bump(&ctx.stats.requests);
            ex.log.reset();
            // A reload may have landed while the connection sat idle: route on the newest
            // configuration, unless it no longer listens where this connection came in (the
            // connection then finishes on the configuration that accepted it).
            let newest = ctx.current();
            let cur = if newest.routes.listens_on(self.listen) {
                newest
            } else {
                cur
            };
            let config = cur.config();
            let host = ex.head.host.map(|(a, b)| &self.buf[a as usize..b as usize]);
            let Some(vs) = cur.routes.server(config, self.listen, host) else {
                return;
            };
            if vs.access_log.is_some() {
                ex.capture_head(&self.buf, self.remote, vs);
            }
            // In a worker-reused heap block, so that an idle connection's task holds only
            // the small head-reading state, not the much larger one of forwarding.
            let close = slot::run_in(&ctx.slots, || ex.handle(ctx, self, &cur, vs)).await;
            ex.write_log(ctx, &cur, self.remote, vs);
            self.served += 1;
            if close {
                return;
            }
            if self.armed.is_none()
                && self.buf.capacity() > SHRINK_ABOVE
                && self.buf.len() < CLIENT_BUF
            {
                self.buf.shrink_to(CLIENT_BUF);
            }
            ex.shrink();
        }
    }

    /// Reads until `buf` holds a complete head, parsed into `ex.head`.
    async fn read_head(
        &mut self,
        ctx: &ProxyCtx,
        vs: &VirtualServer,
        ex: &mut Exchange,
    ) -> HeadRead {
        let idle_timeout = if self.served == 0 {
            vs.client_header_timeout
        } else {
            vs.keepalive_timeout
        };
        let mut deadline = self.clock + idle_timeout;
        let mut started = !self.buf.is_empty();
        loop {
            if !self.buf.is_empty() {
                match request::parse(&self.buf, &mut ex.head) {
                    Ok(true) => {
                        if ex.head.head_len > vs.max_header_bytes {
                            return HeadRead::Reject(431);
                        }
                        return HeadRead::Ready;
                    }
                    Ok(false) if self.buf.len() >= vs.max_header_bytes => {
                        return HeadRead::Reject(431)
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::debug!(client = %self.remote, error = %e, "rejected request");
                        return HeadRead::Reject(e.status());
                    }
                }
            }
            let res = if started {
                self.read(Watch::read(deadline)).await
            } else {
                if ctx.stopping() {
                    return HeadRead::Gone;
                }
                metrics::bump(&ctx.stats.clients_idle);
                let r = self.read(Watch::idle(deadline)).await;
                metrics::drop_one(&ctx.stats.clients_idle);
                r
            };
            match res {
                Ok(0) => return HeadRead::Gone,
                Ok(_) => {
                    if !started {
                        // nginx: client_header_timeout runs from the first byte of a head.
                        started = true;
                        self.clock = Instant::now();
                        deadline = self.clock + vs.client_header_timeout;
                    }
                }
                Err(IoFail::Timeout) if started => return HeadRead::Reject(408),
                Err(_) => return HeadRead::Gone,
            }
        }
    }

    /// Once the current request is all read: arms the read that brings the next one and
    /// meanwhile tells if the client goes away. Not when the client already sent more
    /// (pipelined requests wait in `buf`, and the armed read would hide them).
    pub(super) fn watch_client(&mut self) {
        if self.buf.is_empty() {
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

    /// Answers `Expect: 100-continue` before the body is read (nginx does the same; the
    /// Expect header is not forwarded).
    pub(super) async fn send_continue(&mut self, ex: &mut Exchange, vs: &VirtualServer) -> bool {
        ex.head.expect_continue = false;
        let mut msg = std::mem::take(&mut ex.out);
        let mark = msg.len();
        msg.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        let end = msg.len();
        let (res, mut msg) = self
            .send(msg, mark..end, self.clock + vs.client_body_timeout)
            .await;
        msg.truncate(mark);
        ex.out = msg;
        res.is_ok()
    }

    /// Sends a response ringlb makes itself.
    pub(super) async fn respond_own(
        &mut self,
        ctx: &ProxyCtx,
        ex: &mut Exchange,
        status: u16,
        close: bool,
        vs: &VirtualServer,
    ) {
        metrics::bump(&ctx.stats.own_codes[metrics::code_slot(status)]);
        ex.out.clear();
        rewrite::error_response(&mut ex.out, status, close);
        ex.log.status = status;
        ex.log.head_bytes = ex
            .out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |i| i as u64 + 4);
        let out = std::mem::take(&mut ex.out);
        let len = out.len();
        let (res, out) = self
            .send(out, 0..len, Instant::now() + vs.client_body_timeout)
            .await;
        if res.is_ok() {
            ex.log.sent += out.len() as u64;
        }
        ex.out = out;
        if close && res.is_ok() {
            self.linger().await;
        }
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
