//! One attempt on one server: a pooled or new connection, the request written (and its
//! body streamed), the response head read.
//!
//! All along, the upstream connection's armed read (see `pool::conn`) is watched: a server
//! may answer before it has read the whole request (Gunicorn with Django refuses a POST
//! with a 403 before reading its body, then closes after draining at most 64 KiB). That
//! answer is the response to relay, not a failure: when a complete response head arrives
//! while the request is still being sent, or is readable after a write fails, sending stops
//! and the answer goes to the client (with `Connection: close`: the rest of its body will
//! not be read). Only a connection that fails with no response at all is a server error.
//!
//! While the response is awaited, the client's armed read is watched too: a client that
//! goes away abandons the exchange (its connection is not pooled).

use std::future::{poll_fn, Future};

use monoio::buf::IoBuf;
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{BodyPlan, Exchange, Failure, Progress, REPLAY_MAX};
use crate::config::VirtualServer;
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{Method, RequestBody};
use crate::http::response;
use crate::pool::{ConnectError, UpConn};
use crate::proxy::ctx::ProxyCtx;
use crate::proxy::downstream::Conn;
use crate::proxy::io::{first, ClientIo, First, IoFail};
use crate::proxy::spool::READ_BACK;
use crate::proxy::watchdog::Watch;
use crate::upstream::{Peer, Upstream};

/// A request longer than this is written with the response read armed (see `exchange`):
/// more than a socket send buffer is sure to take at once.
const WATCH_WRITES_ABOVE: usize = 64 * 1024;

/// On io_uring, how long a response is awaited before the client's read is armed to see
/// whether it left (see `proxy::downstream`); the watchdog's sweep adds up to one tick.
const ARM_CLIENT_WATCH_AFTER: Duration = Duration::from_millis(20);

/// Largest response head accepted from a backend (nginx's proxy_buffer_size is 4-8 KiB; we
/// are more generous, and anything past this is an invalid response).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How sending (part of) a request ended.
enum Sent {
    All,
    /// A complete response head arrived first; it is parsed in `Exchange::res`.
    Answered,
}

impl Exchange {
    /// One attempt on server `i`: on success the response head is parsed into `self.res`
    /// and its bytes (and any body bytes after it) are in the returned connection's buffer.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn attempt<S: ClientIo>(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut Conn<S>,
        up: &Upstream,
        i: usize,
        vs: &VirtualServer,
        plan: BodyPlan,
        progress: &mut Progress,
    ) -> Result<UpConn, Failure> {
        let peer = &up.peers[i];
        let cfg = &up.cfg;
        let mut discarded = 0;
        let pooled = ctx
            .pool
            .borrow_mut()
            .take(peer.state.id, conn.clock, &mut discarded);
        if discarded > 0 {
            tracing::debug!(
                server = %peer.cfg.name, count = discarded,
                "closed idle connections the server had spoken on or closed"
            );
        }
        // A request that must not be sent twice (nginx: POST, LOCK, PATCH without
        // `non_idempotent`) is never replayed, even on the same server: a pooled connection
        // that fails after the write may have delivered it.
        let replayable = self.head.method.is_idempotent() || cfg.next_upstream.non_idempotent;
        let mut fresh_retry_left = pooled.is_some() && replayable;
        let mut up_conn = match pooled {
            Some(c) => c,
            None => self.connect(conn, peer, cfg.connect_timeout).await?,
        };
        loop {
            up_conn.requests += 1;
            let r = self
                .exchange(conn, &mut up_conn, up, vs, plan, progress)
                .await;
            match r {
                Ok(()) => return Ok(up_conn),
                // A pooled connection the server closed as it was taken fails at once,
                // before any response byte: the request never reached the server's
                // application, so one replay on a fresh connection to the same server is
                // safe.
                Err(Failure::Error(e))
                    if fresh_retry_left && !progress.body_consumed && up_conn.buf.is_empty() =>
                {
                    tracing::debug!(server = %peer.cfg.name, error = %e, "pooled connection was dead");
                    fresh_retry_left = false;
                    *progress = Progress::default();
                    up_conn = self.connect(conn, peer, cfg.connect_timeout).await?;
                }
                Err(f) => return Err(f),
            }
        }
    }

    /// Opens a new connection to `peer`, giving up if the client goes away meanwhile.
    async fn connect<S: ClientIo>(
        &mut self,
        conn: &mut Conn<S>,
        peer: &Peer,
        timeout: Duration,
    ) -> Result<UpConn, Failure> {
        loop {
            let dial = UpConn::connect(&peer.cfg.addr, timeout);
            match first(dial, |cx| conn.poll_armed(cx)).await {
                First::Left(Ok(c)) => return Ok(c),
                First::Left(Err(ConnectError::Timeout)) => return Err(Failure::Timeout),
                First::Left(Err(ConnectError::Io(e))) => return Err(Failure::Error(e)),
                // Pipelined bytes: kept; connect again (a rare case not worth more).
                First::Right(Ok(n)) if n > 0 => continue,
                First::Right(_) => return Err(Failure::ClientGone),
            }
        }
    }

    /// Writes the request (and streams its body) on `up_conn`, then reads the response
    /// head.
    async fn exchange<S: ClientIo>(
        &mut self,
        conn: &mut Conn<S>,
        up_conn: &mut UpConn,
        up: &Upstream,
        vs: &VirtualServer,
        plan: BodyPlan,
        progress: &mut Progress,
    ) -> Result<(), Failure> {
        let cfg = &up.cfg;
        let out = std::mem::take(&mut self.out);
        let len = out.len();
        // With a body to send, the response read goes in before the request: it is how an
        // answer that comes while the body is still being sent is seen (a connection from
        // an epoll worker's pool has it armed already). A request that fits in one write
        // cannot be held up by an early answer (a failed write is followed by a read, see
        // `answer_after_write_error`), and on io_uring a read submitted once the request
        // is out usually finds the response waiting, where one armed before costs a kernel
        // poll and a wake-up.
        if plan != BodyPlan::InOut || len > WATCH_WRITES_ABOVE {
            up_conn.arm();
        }
        progress.request_sent = true;
        let deadline = conn.clock + cfg.send_timeout;
        let (sent, out) = self
            .send_watching(up_conn, out, 0..len, deadline, self.read_timeout)
            .await;
        self.out = out;
        if let Sent::Answered = sent? {
            self.early = true;
            return Ok(());
        }
        if plan == BodyPlan::Buffered {
            if let Sent::Answered = self.send_spilled(up_conn, cfg.send_timeout).await? {
                self.early = true;
                return Ok(());
            }
        }
        if plan == BodyPlan::Stream {
            progress.body_consumed = true;
            if let Sent::Answered = self.stream_body(conn, up_conn, up, vs).await? {
                self.early = true;
                return Ok(());
            }
            conn.clock = Instant::now();
            if !self.upgrade {
                conn.watch_client();
            }
        }
        self.read_response_head(conn, up_conn).await
    }

    /// Sends the part of a buffered request body that went to the temporary file.
    async fn send_spilled(
        &mut self,
        up_conn: &mut UpConn,
        send_timeout: Duration,
    ) -> Result<Sent, Failure> {
        let len = self.body.file_len();
        let mut pos = 0u64;
        while pos < len {
            let want = ((len - pos) as usize).min(READ_BACK);
            let mut buf = std::mem::take(&mut self.scratch);
            buf.clear();
            let (r, buf) = self.body.read_file(buf, want, pos).await;
            let n = match r {
                Ok(0) => {
                    self.scratch = buf;
                    return Err(Failure::Client(Some(500)));
                }
                Ok(n) => n,
                Err(e) => {
                    self.scratch = buf;
                    tracing::error!(error = %e, "cannot read back a buffered request body");
                    return Err(Failure::Client(Some(500)));
                }
            };
            let deadline = Instant::now() + send_timeout;
            let (sent, buf) = self
                .send_watching(up_conn, buf, 0..n, deadline, self.read_timeout)
                .await;
            self.scratch = buf;
            if let Sent::Answered = sent? {
                return Ok(Sent::Answered);
            }
            pos += n as u64;
        }
        Ok(Sent::All)
    }

    /// Writes `buf[range]` to the server while watching its armed read: a complete
    /// response head arriving first ends the write (`Answered`; the buffer is then gone
    /// with the cancelled write); a partial one or an interim response lets it go on.
    async fn send_watching(
        &mut self,
        up_conn: &mut UpConn,
        mut buf: Vec<u8>,
        range: Range<usize>,
        deadline: Instant,
        read_timeout: Duration,
    ) -> (Result<Sent, Failure>, Vec<u8>) {
        let (mut pos, end) = (range.start, range.end);
        if pos == end {
            return (Ok(Sent::All), buf);
        }
        let head_request = self.head.method == Method::Head;
        let watch = Watch::both(deadline).arm(up_conn.stream.as_raw_fd());
        loop {
            let mut write = up_conn.stream.write_owned(buf.slice(pos..end));
            let (res, slice) = loop {
                let r = poll_fn(|cx| {
                    if let Poll::Ready(r) = Pin::new(&mut write).poll(cx) {
                        return Poll::Ready(First::Left(r));
                    }
                    up_conn.poll_armed(cx).map(First::Right)
                })
                .await;
                match r {
                    First::Left(written) => break written,
                    First::Right(_) if watch.has_fired() => {
                        return (Err(Failure::Timeout), Vec::new())
                    }
                    First::Right(heard) => match self.heard(up_conn, heard, head_request) {
                        Ok(true) => return (Ok(Sent::Answered), Vec::new()),
                        Ok(false) => up_conn.arm(),
                        Err(f) => return (Err(f), Vec::new()),
                    },
                }
            };
            buf = slice.into_inner();
            match res {
                Ok(0) => return (Err(Failure::Error(io::ErrorKind::WriteZero.into())), buf),
                Ok(n) => {
                    pos += n;
                    if pos == end {
                        if watch.fired() {
                            return (Err(Failure::Timeout), buf);
                        }
                        return (Ok(Sent::All), buf);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if watch.fired() {
                        return (Err(Failure::Timeout), buf);
                    }
                    let answered = self
                        .answer_after_write_error(up_conn, e, read_timeout)
                        .await;
                    return (answered, buf);
                }
            }
        }
    }

    /// After a failed write: a server that answered and then closed (or reset) the
    /// connection has left its answer readable. Anything else is the write's error.
    async fn answer_after_write_error(
        &mut self,
        up_conn: &mut UpConn,
        error: io::Error,
        read_timeout: Duration,
    ) -> Result<Sent, Failure> {
        let head_request = self.head.method == Method::Head;
        let watch = Watch::both(Instant::now() + read_timeout).arm(up_conn.stream.as_raw_fd());
        loop {
            up_conn.arm();
            let res = poll_fn(|cx| up_conn.poll_armed(cx)).await;
            if watch.has_fired() {
                return Err(Failure::Error(error));
            }
            match res {
                Ok(n) if n > 0 => {
                    if self.parse_response_head(up_conn, head_request)? {
                        return Ok(Sent::Answered);
                    }
                }
                _ => return Err(Failure::Error(error)),
            }
        }
    }

    /// What the server's armed read brought while the request was being sent: `true` when
    /// it completed a response head.
    fn heard(
        &mut self,
        up_conn: &mut UpConn,
        res: io::Result<usize>,
        head_request: bool,
    ) -> Result<bool, Failure> {
        match res {
            Ok(0) => Err(Failure::Error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection before responding",
            ))),
            Err(e) => Err(Failure::Error(e)),
            Ok(_) => self.parse_response_head(up_conn, head_request),
        }
    }

    /// Streams the request body from the client to `up_conn` (the head is already sent).
    /// Leaves in the client's buffer only the bytes after the body (a pipelined request).
    async fn stream_body<S: ClientIo>(
        &mut self,
        conn: &mut Conn<S>,
        up_conn: &mut UpConn,
        up: &Upstream,
        vs: &VirtualServer,
    ) -> Result<Sent, Failure> {
        let send_timeout = up.cfg.send_timeout;
        let read_timeout = self.read_timeout;
        conn.consume(self.head.head_len);
        conn.buf.reserve(REPLAY_MAX as usize);
        match self.head.body {
            RequestBody::Length(n) => {
                let mut remaining = n;
                loop {
                    let take = (conn.buf.len() as u64).min(remaining) as usize;
                    if take > 0 {
                        let buf = std::mem::take(&mut conn.buf);
                        let deadline = Instant::now() + send_timeout;
                        let (res, buf) = self
                            .send_watching(up_conn, buf, 0..take, deadline, read_timeout)
                            .await;
                        conn.buf = buf;
                        if let Sent::Answered = res? {
                            return Ok(Sent::Answered);
                        }
                        conn.consume(take);
                        remaining -= take as u64;
                    }
                    if remaining == 0 {
                        return Ok(Sent::All);
                    }
                    if let Some(answered) = self.read_client_body(conn, up_conn, vs).await? {
                        return Ok(answered);
                    }
                }
            }
            RequestBody::Chunked => {
                let mut dec = ChunkedDecoder::default();
                loop {
                    self.out.clear();
                    let d = dec
                        .decode(&conn.buf, &mut self.out, true)
                        .map_err(|_| Failure::Client(Some(400)))?;
                    // A chunked body's size is only known as it arrives: count decoded bytes
                    // and stop before forwarding any past the limit. No response has gone
                    // to the client yet, so it gets its 413 (and the backend connection,
                    // holding half a body, is dropped).
                    if self.max_body > 0 && dec.decoded > self.max_body {
                        return Err(Failure::Client(Some(413)));
                    }
                    conn.consume(d.consumed);
                    let out = std::mem::take(&mut self.out);
                    let len = out.len();
                    let deadline = Instant::now() + send_timeout;
                    let (res, out) = self
                        .send_watching(up_conn, out, 0..len, deadline, read_timeout)
                        .await;
                    self.out = out;
                    if let Sent::Answered = res? {
                        return Ok(Sent::Answered);
                    }
                    if d.done {
                        return Ok(Sent::All);
                    }
                    if let Some(answered) = self.read_client_body(conn, up_conn, vs).await? {
                        return Ok(answered);
                    }
                }
            }
            RequestBody::None => Ok(Sent::All),
        }
    }

    /// Reads more of the request body from the client while watching the server: `Some`
    /// when the server answered meanwhile.
    async fn read_client_body<S: ClientIo>(
        &mut self,
        conn: &mut Conn<S>,
        up_conn: &mut UpConn,
        vs: &VirtualServer,
    ) -> Result<Option<Sent>, Failure> {
        if self.head.expect_continue && !self.send_continue(conn, vs).await {
            return Err(Failure::Client(None));
        }
        let head_request = self.head.method == Method::Head;
        loop {
            let watch = Watch::read(Instant::now() + vs.client_body_timeout);
            match first(conn.read(watch), |cx| up_conn.poll_armed(cx)).await {
                First::Left(Ok(0)) | First::Left(Err(IoFail::Io(_))) => {
                    return Err(Failure::Client(None))
                }
                First::Left(Err(IoFail::Timeout)) => return Err(Failure::Client(Some(408))),
                First::Left(Ok(_)) => return Ok(None),
                First::Right(heard) => {
                    if self.heard(up_conn, heard, head_request)? {
                        return Ok(Some(Sent::Answered));
                    }
                    up_conn.arm();
                }
            }
        }
    }

    /// Reads until a complete response head is in `up_conn.buf` (parsed into `self.res`),
    /// watching the client meanwhile.
    async fn read_response_head<S: ClientIo>(
        &mut self,
        conn: &mut Conn<S>,
        up_conn: &mut UpConn,
    ) -> Result<(), Failure> {
        let head_request = self.head.method == Method::Head;
        loop {
            if !up_conn.is_armed() && !up_conn.buf.is_empty() {
                if self.parse_response_head(up_conn, head_request)? {
                    return Ok(());
                }
                // A head arriving in pieces renews the deadline per piece; the first wait
                // runs from the request's clock reading.
                conn.clock = Instant::now();
            }
            let mut watch = Watch::both(conn.clock + self.read_timeout);
            if conn.watch_deferred() {
                // io_uring: the client watch is armed only if the response is slow.
                watch = watch.nudge_at(conn.clock + ARM_CLIENT_WATCH_AFTER);
            }
            let watch = watch.arm(up_conn.stream.as_raw_fd());
            up_conn.arm();
            let wait = poll_fn(|cx| up_conn.poll_armed(cx));
            let client = |cx: &mut Context<'_>| {
                if conn.watch_deferred() && watch.nudged(cx) {
                    conn.watch_now();
                }
                conn.poll_armed(cx)
            };
            match first(wait, client).await {
                First::Left(res) => {
                    if watch.fired() {
                        return Err(Failure::Timeout);
                    }
                    match res {
                        // nginx: "upstream prematurely closed connection" is an `error`, even
                        // with part of a head read, so `next_upstream = error` retries it.
                        Ok(0) => {
                            return Err(Failure::Error(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "server closed the connection before a complete response head",
                            )))
                        }
                        Ok(_) => {}
                        Err(e) => return Err(Failure::Error(e)),
                    }
                }
                // The client sent more (a pipelined request): kept for later.
                First::Right(Ok(n)) if n > 0 => {}
                First::Right(_) => return Err(Failure::ClientGone),
            }
        }
    }

    /// Parses the response head at the start of `up_conn.buf` into `self.res`, dropping
    /// interim responses; `Ok(true)` when a final (or 101) head is complete.
    fn parse_response_head(
        &mut self,
        up_conn: &mut UpConn,
        head_request: bool,
    ) -> Result<bool, Failure> {
        loop {
            match response::parse(&up_conn.buf, &mut self.res, head_request) {
                Ok(true) => {
                    let s = self.res.status;
                    if (100..200).contains(&s) && s != 101 {
                        // Interim responses (103 Early Hints, a 100 the backend sends
                        // anyway) are dropped: ringlb answered Expect itself.
                        up_conn.buf.drain(..self.res.head_len);
                        if up_conn.buf.is_empty() {
                            return Ok(false);
                        }
                        continue;
                    }
                    if s == 101 && !self.upgrade {
                        // RFC 9110 15.2.2: a server MUST NOT switch to a protocol the
                        // request did not ask for. Relaying it would make the connection a
                        // tunnel nobody asked for.
                        return Err(Failure::Invalid(
                            "101 to a request that asked for no upgrade",
                        ));
                    }
                    return Ok(true);
                }
                Ok(false) if up_conn.buf.len() > MAX_RESPONSE_HEAD => {
                    return Err(Failure::Invalid("response head too large"))
                }
                Ok(false) => return Ok(false),
                Err(e) => return Err(Failure::Invalid(e.0)),
            }
        }
    }
}
