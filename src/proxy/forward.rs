//! Sending one request to an upstream: choosing a server, retrying on the next one as
//! nginx's `proxy_next_upstream` does, and the exchange with one server (connect or reuse,
//! write the request, stream its body, read the response head).

use std::io;
use std::time::Instant;

use monoio::net::TcpStream;

use super::client::{BodyPlan, Client};
use super::io::{recv, send, IoFail};
use super::relay::Relayed;
use super::watchdog::Watch;
use super::ProxyCtx;
use crate::config::Balance;
use crate::config::VirtualServer;
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::RequestBody;
use crate::http::response;
use crate::metrics;
use crate::pool::UpConn;
use crate::upstream::balance::release;
use crate::upstream::{coarse_now_ms, PickError, PickInput, Upstream};

/// Largest response head accepted from a backend (nginx's proxy_buffer_size is 4-8 KiB; we
/// are more generous, and anything past this is an invalid response).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// What became of a request.
pub(super) enum Outcome {
    /// A backend's response went to the client.
    Done { close: bool },
    /// No backend response was relayed. `status`: what ringlb answers itself; `None` when
    /// the client connection is unusable (it broke, or part of a response already went).
    Failed { status: Option<u16> },
}

/// Why an attempt on one server failed, in nginx's `next_upstream` terms.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    /// `error`: connect refused, reset, closed before a response.
    #[error("{0}")]
    Error(io::Error),
    /// `timeout`: connect, send or read timed out.
    #[error("timed out")]
    Timeout,
    /// `invalid_header`: the response head was not valid HTTP.
    #[error("invalid response: {0}")]
    Invalid(&'static str),
    /// The client broke (or sent a bad body) while its body was being streamed.
    #[error("client side failed")]
    Client(Option<u16>),
}

impl Failure {
    fn retry_allowed(&self, up: &Upstream) -> bool {
        let n = &up.cfg.next_upstream;
        match self {
            Failure::Error(_) => n.error,
            Failure::Timeout => n.timeout,
            Failure::Invalid(_) => n.invalid_header,
            Failure::Client(_) => false,
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            Failure::Timeout => Some(504),
            Failure::Client(s) => *s,
            _ => Some(502),
        }
    }
}

/// This request's slot in the upstream's retry budget, taken at its first retry and given
/// back when the request ends.
struct RetrySlot<'u> {
    up: &'u Upstream,
    held: bool,
}

impl RetrySlot<'_> {
    fn take(&mut self) -> bool {
        if !self.held {
            self.held = self.up.try_begin_retry();
            if !self.held {
                tracing::debug!(upstream = %self.up.cfg.name, "retry budget spent");
            }
        }
        self.held
    }
}

impl Drop for RetrySlot<'_> {
    fn drop(&mut self) {
        if self.held {
            self.up.end_retry();
        }
    }
}

/// How far an attempt got; decides whether it may be replayed elsewhere.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    /// Some of the request reached a backend socket.
    request_sent: bool,
    /// Some of a streamed body was consumed from the client: no replay possible.
    body_consumed: bool,
}

impl Client {
    /// Sends the request prepared in `out` to a server of `up`, retrying as configured,
    /// and relays the response.
    pub(super) async fn forward(
        &mut self,
        ctx: &ProxyCtx,
        up: &Upstream,
        vs: &VirtualServer,
        plan: BodyPlan,
        close: bool,
    ) -> Outcome {
        let started = self.clock;
        let cfg = &up.cfg;
        let max_tries = match cfg.next_upstream_tries {
            0 => u32::MAX,
            n => n,
        };
        self.tried.reset(up.peers.len());
        let mut tries = 0u32;
        let mut last: Option<Failure> = None;
        let mut next: Option<usize> = None;
        let mut budget = RetrySlot { up, held: false };
        loop {
            let i = match next.take() {
                Some(i) => i,
                None => match self.pick(ctx, up) {
                    Ok(i) => i,
                    Err(PickError::AllFull) if last.is_none() && cfg.queue > 0 => {
                        match self.wait_for_slot(ctx, up).await {
                            Ok(i) => i,
                            Err(status) => {
                                return Outcome::Failed {
                                    status: Some(status),
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let status = match (&last, e) {
                            (Some(f), _) => f.status(),
                            (None, PickError::AllFull) => Some(503),
                            // SPEC: "503 every server is down" (health checks or `down`), "502
                            // no server could be reached": servers out for their recent
                            // failures (nginx's "no live upstreams", also a 502 there) were
                            // unreachable moments ago.
                            (None, PickError::NoLive) => {
                                // Logged once per transition by the control thread.
                                tracing::debug!(upstream = %cfg.name, "no live upstreams");
                                Some(if up.all_down() { 503 } else { 502 })
                            }
                        };
                        return Outcome::Failed { status };
                    }
                },
            };
            self.tried.set(i);
            tries += 1;
            let peer = &up.peers[i];
            let shard = peer.state.shard(ctx.worker);
            let mut progress = Progress::default();
            let sent_at = self.clock;
            let attempt = self.attempt(ctx, up, i, vs, plan, &mut progress).await;
            self.clock = Instant::now();
            let now = coarse_now_ms();
            let elapsed = self.clock.saturating_duration_since(sent_at);
            self.log.upstream = Some(peer.cfg.addr);
            self.log.upstream_time = elapsed;
            match attempt {
                Ok(mut conn) => {
                    let status = self.res.status;
                    self.log.upstream_status = status;
                    shard.observe(status, elapsed);
                    if cfg.balance == Balance::LeastTime {
                        ctx.selector.borrow().observe(up, i, elapsed, now);
                    }
                    let may_retry = cfg.next_upstream.retries_status(status)
                        && self.may_retry(up, tries, max_tries, started, progress);
                    if cfg.next_upstream.retries_status(status) {
                        ctx.selector.borrow_mut().failed(up, i, now);
                    }
                    if may_retry && budget.take() {
                        // Only give up this response if another server can take the request;
                        // otherwise the client gets the backend's own answer, as in nginx.
                        if let Ok(n) = self.pick(ctx, up) {
                            metrics::bump(&shard.failures);
                            metrics::bump(&shard.retries);
                            release(peer);
                            drop(conn);
                            next = Some(n);
                            continue;
                        }
                    } else if !cfg.next_upstream.retries_status(status) {
                        ctx.selector.borrow_mut().succeeded(up, i);
                    }
                    let relayed = self.relay(ctx, &mut conn, up, vs, close).await;
                    release(peer);
                    return self.finish(ctx, up, i, conn, relayed);
                }
                Err(f) => {
                    release(peer);
                    self.log.upstream_status = 0;
                    if !matches!(f, Failure::Client(_)) {
                        metrics::bump(&shard.failures);
                        tracing::info!(
                            upstream = %cfg.name, server = %peer.cfg.name,
                            "upstream attempt failed: {f}"
                        );
                        ctx.selector.borrow_mut().failed(up, i, now);
                    }
                    if !(f.retry_allowed(up)
                        && self.may_retry(up, tries, max_tries, started, progress)
                        && budget.take())
                    {
                        return Outcome::Failed { status: f.status() };
                    }
                    metrics::bump(&shard.retries);
                    last = Some(f);
                }
            }
        }
    }

    pub(super) fn pick(&mut self, ctx: &ProxyCtx, up: &Upstream) -> Result<usize, PickError> {
        let input = PickInput {
            client_ip: self.remote.ip(),
            hash_key: &self.key,
        };
        ctx.selector
            .borrow_mut()
            .pick(up, &input, &mut self.tried, coarse_now_ms())
    }

    /// nginx's `ngx_http_upstream_next` conditions, less the failure class.
    fn may_retry(
        &self,
        up: &Upstream,
        tries: u32,
        max_tries: u32,
        started: Instant,
        progress: Progress,
    ) -> bool {
        let cfg = &up.cfg;
        let timeout = cfg.next_upstream_timeout;
        tries < max_tries
            && (timeout.is_zero() || started.elapsed() < timeout)
            && !progress.body_consumed
            && (!progress.request_sent
                || self.head.method.is_idempotent()
                || cfg.next_upstream.non_idempotent)
    }

    /// Puts the connection back in the pool if the exchange left it clean.
    fn finish(
        &mut self,
        ctx: &ProxyCtx,
        up: &Upstream,
        i: usize,
        conn: UpConn,
        relayed: Relayed,
    ) -> Outcome {
        if relayed.upstream_reusable && !ctx.stopping() {
            let cfg = &up.cfg;
            if conn.requests < cfg.keepalive_requests {
                ctx.pool.borrow_mut().put(
                    up.peers[i].state.id,
                    conn,
                    cfg.keepalive,
                    self.clock + cfg.keepalive_timeout,
                );
            }
        }
        match relayed.client {
            Ok(close) => Outcome::Done { close },
            Err(()) => Outcome::Failed { status: None },
        }
    }

    /// One attempt on server `i`: on success the response head is parsed into `self.res`
    /// and its bytes (and any body bytes after it) are in the returned connection's buffer.
    async fn attempt(
        &mut self,
        ctx: &ProxyCtx,
        up: &Upstream,
        i: usize,
        vs: &VirtualServer,
        plan: BodyPlan,
        progress: &mut Progress,
    ) -> Result<UpConn, Failure> {
        let peer = &up.peers[i];
        let cfg = &up.cfg;
        // A request that must not be sent twice (nginx: POST, LOCK, PATCH without
        // `non_idempotent`) is never replayed, even on the same server: a pooled connection
        // that fails after the write may have delivered it. Such a request instead skips
        // pooled connections the server has already closed, before writing anything.
        let replayable = self.head.method.is_idempotent() || cfg.next_upstream.non_idempotent;
        let pooled = loop {
            let c = ctx.pool.borrow_mut().take(peer.state.id, self.clock);
            match c {
                Some(c) if !replayable && closed_by_peer(&c.stream) => continue,
                c => break c,
            }
        };
        let mut fresh_retry_left = pooled.is_some() && replayable;
        let mut conn = match pooled {
            Some(c) => c,
            None => connect(peer.cfg.addr, cfg.connect_timeout).await?,
        };
        loop {
            conn.requests += 1;
            let r = self.exchange(&mut conn, up, vs, plan, progress).await;
            match r {
                Ok(()) => return Ok(conn),
                // A pooled connection the server closed while idle fails at once, before
                // any response byte: the request never reached the server's application,
                // so one replay on a fresh connection to the same server is safe.
                Err(Failure::Error(e))
                    if fresh_retry_left && !progress.body_consumed && conn.buf.is_empty() =>
                {
                    tracing::debug!(server = %peer.cfg.name, "pooled connection was dead: {e}");
                    fresh_retry_left = false;
                    *progress = Progress::default();
                    conn = connect(peer.cfg.addr, cfg.connect_timeout).await?;
                }
                Err(f) => return Err(f),
            }
        }
    }

    /// Writes the request (and streams its body) on `conn`, then reads the response head.
    async fn exchange(
        &mut self,
        conn: &mut UpConn,
        up: &Upstream,
        vs: &VirtualServer,
        plan: BodyPlan,
        progress: &mut Progress,
    ) -> Result<(), Failure> {
        let cfg = &up.cfg;
        conn.buf.clear();
        let out = std::mem::take(&mut self.out);
        let len = out.len();
        let watch = Watch::both(self.clock + cfg.send_timeout);
        let (res, out) = send(&mut conn.stream, out, 0..len, watch).await;
        self.out = out;
        progress.request_sent = true;
        res.map_err(upstream_io)?;
        if let BodyPlan::Stream { .. } = plan {
            progress.body_consumed = true;
            self.stream_body(conn, up, vs).await?;
            self.clock = Instant::now();
        }
        self.read_response_head(conn, up).await
    }

    /// Streams the request body from the client to `conn` (the head is already sent).
    /// Leaves in `buf` only the bytes after the body (a pipelined request).
    async fn stream_body(
        &mut self,
        conn: &mut UpConn,
        up: &Upstream,
        vs: &VirtualServer,
    ) -> Result<(), Failure> {
        let send_timeout = up.cfg.send_timeout;
        self.consume(self.head.head_len);
        self.buf.reserve(super::client::REPLAY_MAX as usize);
        match self.head.body {
            RequestBody::Length(n) => {
                let mut remaining = n;
                loop {
                    let take = (self.buf.len() as u64).min(remaining) as usize;
                    if take > 0 {
                        let buf = std::mem::take(&mut self.buf);
                        let watch = Watch::both(Instant::now() + send_timeout);
                        let (res, buf) = send(&mut conn.stream, buf, 0..take, watch).await;
                        self.buf = buf;
                        res.map_err(upstream_io)?;
                        self.consume(take);
                        remaining -= take as u64;
                    }
                    if remaining == 0 {
                        return Ok(());
                    }
                    self.read_client_body(vs).await?;
                }
            }
            RequestBody::Chunked => {
                let mut dec = ChunkedDecoder::default();
                loop {
                    self.out.clear();
                    let d = dec
                        .decode(&self.buf, &mut self.out, true)
                        .map_err(|_| Failure::Client(Some(400)))?;
                    // A chunked body's size is only known as it arrives: count decoded bytes
                    // and stop before forwarding any past the limit. No response has gone
                    // to the client yet, so it gets its 413 (and the backend connection,
                    // holding half a body, is dropped).
                    if vs.max_body_bytes > 0 && dec.decoded > vs.max_body_bytes {
                        return Err(Failure::Client(Some(413)));
                    }
                    self.consume(d.consumed);
                    let out = std::mem::take(&mut self.out);
                    let len = out.len();
                    let watch = Watch::both(Instant::now() + send_timeout);
                    let (res, out) = send(&mut conn.stream, out, 0..len, watch).await;
                    self.out = out;
                    res.map_err(upstream_io)?;
                    if d.done {
                        return Ok(());
                    }
                    self.read_client_body(vs).await?;
                }
            }
            RequestBody::None => Ok(()),
        }
    }

    async fn read_client_body(&mut self, vs: &VirtualServer) -> Result<(), Failure> {
        if self.head.expect_continue && !self.send_continue(vs).await {
            return Err(Failure::Client(None));
        }
        let buf = std::mem::take(&mut self.buf);
        let watch = Watch::read(Instant::now() + vs.client_body_timeout);
        let (res, buf) = recv(&mut self.stream, buf, watch).await;
        self.buf = buf;
        match res {
            Ok(0) | Err(IoFail::Io(_)) => Err(Failure::Client(None)),
            Err(IoFail::Timeout) => Err(Failure::Client(Some(408))),
            Ok(_) => Ok(()),
        }
    }

    async fn read_response_head(
        &mut self,
        conn: &mut UpConn,
        up: &Upstream,
    ) -> Result<(), Failure> {
        let head_request = self.head.method == crate::http::request::Method::Head;
        loop {
            if !conn.buf.is_empty() {
                match response::parse(&conn.buf, &mut self.res, head_request) {
                    Ok(true) => {
                        let s = self.res.status;
                        if (100..200).contains(&s) && s != 101 {
                            // Interim responses (103 Early Hints, a 100 the backend sends
                            // anyway) are dropped: ringlb answered Expect itself.
                            conn.buf.drain(..self.res.head_len);
                            continue;
                        }
                        return Ok(());
                    }
                    Ok(false) if conn.buf.len() > MAX_RESPONSE_HEAD => {
                        return Err(Failure::Invalid("response head too large"))
                    }
                    Ok(false) => {}
                    Err(e) => return Err(Failure::Invalid(e.0)),
                }
            }
            let buf = std::mem::take(&mut conn.buf);
            // The first wait runs from the request's clock reading (just taken, or renewed
            // after a streamed body); a head arriving in pieces renews it per read.
            if !buf.is_empty() {
                self.clock = Instant::now();
            }
            let watch = Watch::both(self.clock + up.cfg.read_timeout);
            let (res, buf) = recv(&mut conn.stream, buf, watch).await;
            conn.buf = buf;
            match res {
                Ok(0) if conn.buf.is_empty() => {
                    return Err(Failure::Error(io::ErrorKind::UnexpectedEof.into()))
                }
                // nginx: "upstream prematurely closed connection" is an `error`, even
                // with part of a head read, so `next_upstream = error` retries it.
                Ok(0) => return Err(Failure::Error(io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {}
                Err(e) => return Err(upstream_io(e)),
            }
        }
    }
}

/// Whether an idle connection has been closed (or reset) by the server: a non-blocking
/// peek finds end of stream or an error instead of "nothing to read yet".
fn closed_by_peer(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut b = 0u8;
    // SAFETY: a one-byte peek into a local buffer on a socket this function borrows.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => true,
        n if n > 0 => true, // bytes on an idle connection: not a clean one either
        _ => io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock,
    }
}

fn upstream_io(e: IoFail) -> Failure {
    match e {
        IoFail::Timeout => Failure::Timeout,
        IoFail::Io(e) => Failure::Error(e),
    }
}

async fn connect(
    addr: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> Result<UpConn, Failure> {
    match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(UpConn::new(s))
        }
        Ok(Err(e)) => Err(Failure::Error(e)),
        Err(_) => Err(Failure::Timeout),
    }
}
