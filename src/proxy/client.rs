//! The client side of a connection: read and check each request head, decide its framing
//! and buffering, hand it to `forward`, and keep the connection for the next request.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::forward::Outcome;
use super::io::{recv, send, IoFail};
use super::watchdog::Watch;
use super::ProxyCtx;
use super::{route, slot};
use crate::config::{ServerName, VirtualServer};
use crate::control::generation::Published;
use crate::http::request::{self, RequestBody, RequestHead};
use crate::http::response::ResponseHead;
use crate::http::template::Vars;
use crate::http::{rewrite, uri};
use crate::metrics::{self, WorkerStats};
use crate::upstream::Tried;

/// First allocation of a client's read buffer: a typical request head fits, and 10,000 idle
/// connections cost 20 MiB of buffers at most.
const CLIENT_BUF: usize = 2048;
/// A request body up to this size is read completely before the backend is contacted, so
/// that a failed attempt can be replayed on the next server (nginx buffers every body; we
/// buffer small ones in memory and stream the rest).
pub(super) const REPLAY_MAX: u64 = 64 * 1024;
/// Lingering close (see `Client::linger`): at most this long in all, this long between two
/// reads, and this many bytes dropped (nginx: lingering_time 30s, lingering_timeout 5s; a
/// proxy under attack should let go sooner).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_TIMEOUT: Duration = Duration::from_millis(500);
const LINGER_MAX_BYTES: usize = 1 << 20;
/// After a large request the buffers shrink back so an idle connection stays cheap.
const SHRINK_ABOVE: usize = 64 * 1024;

/// Whether the client connection must be closed after the current response.
pub(super) type CloseAfter = bool;

/// One client connection's state, reused from request to request.
pub(super) struct Client {
    pub(super) stream: TcpStream,
    pub(super) remote: SocketAddr,
    listen: SocketAddr,
    /// Bytes read from the client; the current request starts at 0.
    pub(super) buf: Vec<u8>,
    /// Heads (and small bodies) being written, to the backend then to the client.
    pub(super) out: Vec<u8>,
    /// The evaluated `hash` key.
    pub(super) key: Vec<u8>,
    /// The normalised path, when the request's needs normalising to pick a location.
    path: Vec<u8>,
    pub(super) head: RequestHead,
    pub(super) res: ResponseHead,
    pub(super) tried: Tried,
    served: u64,
    /// The last clock reading: taken when a request head starts arriving and when a
    /// response head arrives, and reused for every deadline in between (timeouts are in
    /// seconds; reading the clock before every operation is measurable per request).
    pub(super) clock: Instant,
    /// What the access log and metrics need to know about the current request.
    pub(super) log: RequestLog,
}

/// Facts about one request gathered along the way, for the access log.
#[derive(Debug, Default, Clone)]
pub(super) struct RequestLog {
    /// The last server tried (nginx's `$upstream_addr`).
    pub upstream: Option<SocketAddr>,
    /// Its status (`$upstream_status`; 0 when it gave no response).
    pub upstream_status: u16,
    /// Time from sending the request to its response head (`$upstream_response_time`).
    pub upstream_time: Duration,
    /// The status sent to the client (`$status`; 0 = none was sent).
    pub status: u16,
    /// Bytes of the response written to the client, head included, and the head's share
    /// (`$body_bytes_sent` is the difference).
    pub sent: u64,
    pub head_bytes: u64,
    /// What the access log needs from the request head, copied before the head's buffer is
    /// consumed (streamed bodies reuse it); filled only for a server block with a log.
    /// Capacity is kept from request to request.
    pub captured: Vec<u8>,
    /// Spans in `captured`: the request line, Referer, User-Agent.
    pub request_line: (u32, u32),
    pub referer: Option<(u32, u32)>,
    pub user_agent: Option<(u32, u32)>,
    /// When the head was parsed (`$request_time` origin); set only with a log.
    pub started: Option<Instant>,
}

impl RequestLog {
    /// Clears the facts of the previous request, keeping the capture buffer's memory.
    fn reset(&mut self) {
        let mut captured = std::mem::take(&mut self.captured);
        captured.clear();
        *self = RequestLog {
            captured,
            ..RequestLog::default()
        };
    }
}

/// How the current request's body reaches the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyPlan {
    /// No body, or a small one already appended to `out`: the request can be replayed.
    Buffered,
    /// Streamed from the client after the head; the first `in_buf` bytes are already in
    /// `buf` after the head.
    Stream { in_buf: usize },
}

/// Serves one accepted client connection until it closes.
pub async fn serve(stream: TcpStream, remote: SocketAddr, listen: SocketAddr, ctx: Rc<ProxyCtx>) {
    let _ = stream.set_nodelay(true);
    let _open = OpenGuard::new(&ctx.stats);
    metrics::bump(&ctx.stats.clients_accepted);
    let mut c = Client {
        stream,
        remote,
        listen,
        buf: Vec::with_capacity(CLIENT_BUF),
        out: Vec::new(),
        key: Vec::new(),
        path: Vec::new(),
        head: RequestHead::default(),
        res: ResponseHead::default(),
        tried: Tried::default(),
        served: 0,
        clock: Instant::now(),
        log: RequestLog::default(),
    };
    c.run(&ctx).await;
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

impl Client {
    async fn run(&mut self, ctx: &ProxyCtx) {
        loop {
            let cur = ctx.current();
            let config = cur.config();
            // Before the Host header is known, the address's default server sets the limits
            // (as in nginx).
            let Some(default_vs) = cur.routes.server(config, self.listen, None) else {
                return;
            };
            match self.read_head(ctx, default_vs).await {
                HeadRead::Ready => {}
                HeadRead::Gone => return,
                HeadRead::Reject(status) => {
                    self.log.reset();
                    if default_vs.access_log.is_some() {
                        self.capture_rejected();
                    }
                    self.respond_own(ctx, status, true, default_vs).await;
                    self.write_log(ctx, default_vs);
                    return;
                }
            }
            metrics::bump(&ctx.stats.requests);
            self.log.reset();
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
            let host = self
                .head
                .host
                .map(|(a, b)| &self.buf[a as usize..b as usize]);
            let Some(vs) = cur.routes.server(config, self.listen, host) else {
                return;
            };
            if vs.access_log.is_some() {
                self.capture_head();
            }
            // In a worker-reused heap block, so that an idle connection's task holds only
            // the small head-reading state, not the much larger one of forwarding.
            let close = slot::run_in(&ctx.slots, || self.handle(ctx, &cur, vs)).await;
            self.write_log(ctx, vs);
            self.served += 1;
            if close {
                return;
            }
            if self.buf.capacity() > SHRINK_ABOVE && self.buf.len() < CLIENT_BUF {
                self.buf.shrink_to(CLIENT_BUF);
            }
            if self.out.capacity() > SHRINK_ABOVE {
                self.out = Vec::new();
            }
        }
    }

    /// Reads until `buf` holds a complete head, parsed into `self.head`.
    async fn read_head(&mut self, ctx: &ProxyCtx, vs: &VirtualServer) -> HeadRead {
        let idle_timeout = if self.served == 0 {
            vs.client_header_timeout
        } else {
            vs.keepalive_timeout
        };
        let mut deadline = self.clock + idle_timeout;
        let mut started = !self.buf.is_empty();
        loop {
            if !self.buf.is_empty() {
                match request::parse(&self.buf, &mut self.head) {
                    Ok(true) => {
                        if self.head.head_len > vs.max_header_bytes {
                            return HeadRead::Reject(431);
                        }
                        return HeadRead::Ready;
                    }
                    Ok(false) if self.buf.len() >= vs.max_header_bytes => {
                        return HeadRead::Reject(431)
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::debug!(client = %self.remote, "rejected request: {e}");
                        return HeadRead::Reject(e.status());
                    }
                }
            }
            let buf = std::mem::take(&mut self.buf);
            let (res, buf) = if started {
                recv(&mut self.stream, buf, Watch::read(deadline)).await
            } else {
                if ctx.stopping() {
                    return HeadRead::Gone;
                }
                metrics::bump(&ctx.stats.clients_idle);
                let r = recv(&mut self.stream, buf, Watch::idle(deadline)).await;
                metrics::drop_one(&ctx.stats.clients_idle);
                r
            };
            self.buf = buf;
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

    /// Serves the parsed request; returns whether the connection must close afterwards.
    async fn handle(&mut self, ctx: &ProxyCtx, cur: &Published, vs: &VirtualServer) -> CloseAfter {
        let head_len = self.head.head_len;
        if let RequestBody::Length(n) = self.head.body {
            if vs.max_body_bytes > 0 && n > vs.max_body_bytes {
                self.respond_own(ctx, 413, true, vs).await;
                return true;
            }
        }
        let target = &self.buf[self.head.target.0 as usize..self.head.target.1 as usize];
        let path = match uri::normalize(target, &mut self.path) {
            Ok(false) => target,
            Ok(true) => &self.path[..],
            Err(_) => {
                self.respond_own(ctx, 400, true, vs).await;
                return true;
            }
        };
        let Some(loc) = route::location(vs, path) else {
            let close = self.head.body != RequestBody::None || !self.head.keep_alive;
            self.respond_own(ctx, 404, close, vs).await;
            self.consume(head_len);
            return close;
        };
        let up = &cur.snapshot.upstreams[loc.upstream];
        let close = !self.head.keep_alive
            || vs.keepalive_timeout.is_zero()
            || self.served + 1 >= vs.keepalive_requests
            || ctx.stopping();

        self.out.clear();
        self.key.clear();
        {
            let vars = Vars {
                buf: &self.buf,
                head: &self.head,
                remote: self.remote,
                server_name: vs
                    .server_names
                    .iter()
                    .find_map(|n| match n {
                        ServerName::Exact(n) => Some(n.as_str()),
                        ServerName::Wildcard(_) => None,
                    })
                    .unwrap_or(""),
            };
            rewrite::request_head(&mut self.out, &vars, &loc.set_headers, &up.cfg.name);
            if let Some(t) = &up.cfg.hash {
                vars.eval(t, &mut self.key);
            }
        }

        let plan = match self.head.body {
            RequestBody::None => BodyPlan::Buffered,
            RequestBody::Length(n) if n <= REPLAY_MAX => {
                let need = head_len + n as usize;
                if self.buf.len() < need {
                    if self.head.expect_continue
                        && self.buf.len() == head_len
                        && !self.send_continue(vs).await
                    {
                        return true;
                    }
                    match self.read_to(need, vs.client_body_timeout).await {
                        Ok(()) => {}
                        Err(IoFail::Timeout) => {
                            self.respond_own(ctx, 408, true, vs).await;
                            return true;
                        }
                        Err(IoFail::Io(_)) => return true,
                    }
                }
                self.out.extend_from_slice(&self.buf[head_len..need]);
                BodyPlan::Buffered
            }
            RequestBody::Length(n) => BodyPlan::Stream {
                in_buf: (self.buf.len() - head_len).min(n as usize),
            },
            RequestBody::Chunked => BodyPlan::Stream {
                in_buf: self.buf.len() - head_len,
            },
        };

        let outcome = self.forward(ctx, up, vs, plan, close).await;
        match outcome {
            Outcome::Done { close: c } => {
                if c {
                    return true;
                }
                match plan {
                    BodyPlan::Buffered => {
                        let used = match self.head.body {
                            RequestBody::Length(n) => head_len + n as usize,
                            _ => head_len,
                        };
                        self.consume(used);
                    }
                    // `forward` consumed the streamed body and left only what follows it.
                    BodyPlan::Stream { .. } => {}
                }
                false
            }
            Outcome::Failed { status } => {
                // The body may be half read: the connection cannot find its next request.
                let body_left = matches!(plan, BodyPlan::Stream { .. });
                let close = close || body_left;
                if let Some(status) = status {
                    self.respond_own(ctx, status, close, vs).await;
                }
                if !close {
                    let used = match self.head.body {
                        RequestBody::Length(n) => head_len + n as usize,
                        _ => head_len,
                    };
                    self.consume(used);
                }
                close || status.is_none()
            }
        }
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

    /// Reads until `buf` holds `len` bytes.
    async fn read_to(&mut self, len: usize, timeout: Duration) -> Result<(), IoFail> {
        while self.buf.len() < len {
            self.clock = Instant::now();
            let watch = Watch::read(self.clock + timeout);
            let buf = std::mem::take(&mut self.buf);
            let (res, buf) = recv(&mut self.stream, buf, watch).await;
            self.buf = buf;
            if res? == 0 {
                return Err(IoFail::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        Ok(())
    }

    /// Answers `Expect: 100-continue` before the body is read (nginx does the same; the
    /// Expect header is not forwarded).
    pub(super) async fn send_continue(&mut self, vs: &VirtualServer) -> bool {
        self.head.expect_continue = false;
        let mut msg = std::mem::take(&mut self.out);
        let mark = msg.len();
        msg.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        let watch = Watch::both(self.clock + vs.client_body_timeout);
        let end = msg.len();
        let (res, mut msg) = send(&mut self.stream, msg, mark..end, watch).await;
        msg.truncate(mark);
        self.out = msg;
        res.is_ok()
    }

    /// Sends a response ringlb makes itself.
    pub(super) async fn respond_own(
        &mut self,
        ctx: &ProxyCtx,
        status: u16,
        close: bool,
        vs: &VirtualServer,
    ) {
        metrics::bump(&ctx.stats.own_codes[metrics::code_slot(status)]);
        self.out.clear();
        rewrite::error_response(&mut self.out, status, close);
        self.log.status = status;
        self.log.head_bytes = self
            .out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |i| i as u64 + 4);
        let watch = Watch::both(Instant::now() + vs.client_body_timeout);
        let out = std::mem::take(&mut self.out);
        let len = out.len();
        let (res, out) = send(&mut self.stream, out, 0..len, watch).await;
        if res.is_ok() {
            self.log.sent += out.len() as u64;
        }
        self.out = out;
        if close && res.is_ok() {
            self.linger().await;
        }
    }

    /// nginx's lingering close: after an error response on a connection that is closing,
    /// send FIN and read (and drop) what the client is still sending for a short while.
    /// Closing with unread data would send a reset, which can destroy the response before
    /// the client reads it (a 413 for a body still arriving, typically).
    async fn linger(&mut self) {
        // SAFETY: the descriptor is this connection's, open until `self` is dropped.
        unsafe {
            libc::shutdown(self.stream.as_raw_fd(), libc::SHUT_WR);
        }
        let until = Instant::now() + LINGER_TIME;
        let mut drained = 0usize;
        let mut buf = std::mem::take(&mut self.buf);
        while drained < LINGER_MAX_BYTES {
            let now = Instant::now();
            if now >= until {
                break;
            }
            buf.clear();
            let watch = Watch::read((now + LINGER_TIMEOUT).min(until));
            let (res, b) = recv(&mut self.stream, buf, watch).await;
            buf = b;
            match res {
                Ok(n) if n > 0 => drained += n,
                _ => break,
            }
        }
        self.buf = buf;
    }
}
