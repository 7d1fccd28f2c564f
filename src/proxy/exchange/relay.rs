//! Relaying a response from a backend to an HTTP/1.1 client: the rewritten head, then the
//! body in the framing the client understands.
//!
//! Where a response ends is decided only by its framing (RFC 9112 6.3, `http::framing`):
//! nothing past that end is ever sent to the client, and the relay consumes the upstream
//! buffer as it forwards, so that what is left in it afterwards is exactly what the server
//! sent beyond the response. The pool takes back only a connection with nothing left.
//!
//! The server is let go as soon as its response has been read: a response that arrived
//! whole with its head (most do) frees its connection before the client gets a byte. A
//! longer one is, with `proxy_buffering` (the default, as nginx), read at the server's pace
//! into a [`Spool`] (memory up to `proxy_buffers`, then a temporary file up to
//! `proxy_max_temp_file_size`, then the server waits for the client) while the client is
//! fed at its own; without buffering (or with `X-Accel-Buffering: no` from the server) each
//! piece goes to the client before the next is read.

use std::time::{Duration, Instant};

use super::{ClientBroke, CloseAfter, Exchange, Held};
use crate::config::VirtualServer;
use crate::http::body::{client_framing, ClientFraming};
use crate::http::framing::{may_pool, BodyCursor, Taken};
use crate::http::response::ResponseBody;
use crate::http::{push_hex, rewrite};
use crate::pool::{UpConn, UPSTREAM_BUF};
use crate::proxy::ctx::ProxyCtx;
use crate::proxy::downstream::Conn;
use crate::proxy::io::{first, ClientIo, First, IoFail};
use crate::proxy::spool::Spool;
use crate::proxy::tunnel;
use crate::proxy::watchdog::Watch;

/// Body bytes that arrived with the head are copied behind the head and sent in one write
/// up to this size; past it the head and the body go in two writes without a copy.
const COALESCE_MAX: usize = 16 * 1024;

/// Drops the first `n` bytes of `buf`.
fn consume(buf: &mut Vec<u8>, n: usize) {
    if n >= buf.len() {
        buf.clear();
    } else {
        buf.drain(..n);
    }
}

/// How the body's bytes become the client's: raw, re-chunked, or decoded from chunks.
#[derive(Clone, Copy)]
struct Reframe {
    /// The server's body is chunked: the cursor decodes it (re-chunking if `chunk_out`).
    chunked_in: bool,
    /// The client gets chunks.
    chunk_out: bool,
}

impl Reframe {
    /// Appends to `out` the client's bytes for `piece`, of which the cursor took `t`
    /// (already in `out` for a chunked body).
    fn frame(self, out: &mut Vec<u8>, piece: &[u8]) {
        if self.chunked_in || piece.is_empty() {
            return;
        }
        if self.chunk_out {
            // A close-delimited body to an HTTP/1.1 client: one chunk per piece.
            push_hex(out, piece.len() as u64);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(piece);
        }
    }

    /// Whether the taken bytes go to the client exactly as they came (so that a buffer can
    /// be handed over instead of copied).
    fn raw(self) -> bool {
        !self.chunked_in && !self.chunk_out
    }
}

impl Exchange {
    /// Relays the response whose head is parsed in `self.res` and sits in the held
    /// connection's buffer; gives the server back (`held.release`) as soon as its response
    /// has been read. `Ok(close)`: the whole response reached the client.
    pub(super) async fn relay<S: ClientIo>(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut Conn<S>,
        held: &mut Held<'_>,
        vs: &VirtualServer,
        close: bool,
    ) -> Result<CloseAfter, ClientBroke> {
        if self.res.status == 101 {
            // Only reachable for a request that asked to upgrade (see `attempt`).
            return self.tunnel_after_101(ctx, conn, held, vs).await;
        }
        let send_timeout = vs.client_body_timeout;
        let framing = client_framing(self.res.body, self.head.minor);
        // A stop that began while the request was in flight: say the connection ends, so
        // the client does not send its next request into a closing socket. An early
        // answer leaves the request body unread: the connection cannot go on either.
        let close = close || framing == ClientFraming::Close || ctx.stopping() || self.early;
        let body_at = self.res.head_len;
        self.log.status = self.res.status;
        let reframe = Reframe {
            chunked_in: self.res.body == ResponseBody::Chunked,
            chunk_out: framing == ClientFraming::Chunked,
        };
        if self.res.verbatim && !close && self.head.minor == 1 {
            if let Some(r) = self.relay_verbatim(ctx, conn, held, send_timeout).await {
                return r;
            }
        }
        self.out.clear();
        rewrite::response_head(
            &mut self.out,
            &held.conn().buf,
            &self.res,
            framing,
            close,
            self.head.minor,
            false,
        );
        self.log.head_bytes = self.out.len() as u64;
        let mut cursor = BodyCursor::new(self.res.body);
        // What of the first piece belongs to the body.
        let up_conn = held.conn();
        let t = self.take(&mut cursor, &up_conn.buf[body_at..], reframe)?;
        let piece = body_at..body_at + t.taken;
        if t.done {
            // The whole response is here: the server is free before the client reads.
            let whole = self.detach(ctx, held, piece.end, conn.clock);
            return self
                .send_whole(ctx, conn, whole, piece, reframe, send_timeout, close)
                .await;
        }
        if self.buffering.is_some() && !self.res.no_buffering {
            return self
                .relay_buffered(ctx, conn, held, cursor, piece, reframe, send_timeout, close)
                .await;
        }
        self.relay_streaming(conn, held, cursor, piece, reframe, send_timeout, close)
            .await
    }

    /// The cursor's take of `piece`, as the relay needs it: a bad chunked body ends the
    /// relay (the client connection then closes before the declared end).
    fn take(
        &mut self,
        cursor: &mut BodyCursor,
        piece: &[u8],
        reframe: Reframe,
    ) -> Result<Taken, ClientBroke> {
        cursor
            .take(piece, &mut self.out, reframe.chunk_out)
            .map_err(|e| {
                tracing::info!(error = %e, "upstream sent a bad chunked body");
                ClientBroke
            })
    }

    /// The response is all read: takes its bytes (the first `end` of the buffer) from the
    /// upstream connection, which keeps only what followed them, and gives the server back.
    fn detach(&mut self, ctx: &ProxyCtx, held: &mut Held<'_>, end: usize, now: Instant) -> Vec<u8> {
        let up_conn = held.conn();
        let mut spare = ctx.buffers.take();
        // Whatever followed the response stays with the connection, which the pool then
        // refuses.
        spare.extend_from_slice(&up_conn.buf[end..]);
        let whole = std::mem::replace(&mut up_conn.buf, spare);
        self.end_upstream(held, true, now);
        whole
    }

    /// Gives the server back: its connection goes to the pool when the response ended at
    /// its framed end with nothing after it, the server keeps it open and the request was
    /// all sent.
    fn end_upstream(&mut self, held: &mut Held<'_>, done: bool, now: Instant) {
        let left_over = held.conn().buf.len();
        if left_over > 0 {
            tracing::info!(
                status = self.res.status,
                extra_bytes = left_over,
                "upstream sent bytes past the end of its response; its connection is closed"
            );
        }
        let reusable = may_pool(done, left_over, self.res.keep_alive, !self.early);
        held.release(reusable, now);
    }

    /// Sends a response that is all in `whole` (the head in `out`, the body's bytes at
    /// `piece` of `whole`, or already in `out` when decoded).
    #[allow(clippy::too_many_arguments)]
    async fn send_whole<S: ClientIo>(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut Conn<S>,
        whole: Vec<u8>,
        piece: std::ops::Range<usize>,
        reframe: Reframe,
        send_timeout: Duration,
        close: bool,
    ) -> Result<CloseAfter, ClientBroke> {
        let direct = reframe.raw() && piece.len() > COALESCE_MAX;
        if !direct {
            // (A chunked body is complete here, its last chunk included: only a
            // length-delimited one can be, so nothing is re-chunked.)
            reframe.frame(&mut self.out, &whole[piece.clone()]);
        }
        let sent = self.send_out(conn, send_timeout).await;
        let (sent, whole) = match sent {
            Ok(()) if direct => {
                // A large body goes straight from the buffer it was read into.
                let len = piece.len();
                let (r, whole) = conn.send(whole, piece, conn.clock + send_timeout).await;
                if r.is_ok() {
                    self.log.sent += len as u64;
                }
                (r, whole)
            }
            r => (r, whole),
        };
        ctx.buffers.give(whole);
        sent.map(|()| close).map_err(|_| ClientBroke)
    }

    /// Without buffering: each piece goes to the client before the next is read.
    #[allow(clippy::too_many_arguments)]
    async fn relay_streaming<S: ClientIo>(
        &mut self,
        conn: &mut Conn<S>,
        held: &mut Held<'_>,
        mut cursor: BodyCursor,
        mut piece: std::ops::Range<usize>,
        reframe: Reframe,
        send_timeout: Duration,
        close: bool,
    ) -> Result<CloseAfter, ClientBroke> {
        loop {
            let up_conn = held.conn();
            let mut direct = piece.clone();
            if !(reframe.raw() && piece.len() > COALESCE_MAX) {
                reframe.frame(&mut self.out, &up_conn.buf[piece.clone()]);
                direct = piece.end..piece.end;
            }
            if !self.out.is_empty() {
                self.send_out(conn, send_timeout)
                    .await
                    .map_err(|_| ClientBroke)?;
            }
            let up_conn = held.conn();
            if !direct.is_empty() {
                // A large piece goes straight from the upstream buffer, without a copy.
                let len = direct.len();
                let buf = std::mem::take(&mut up_conn.buf);
                let (r, buf) = conn.send(buf, direct, conn.clock + send_timeout).await;
                up_conn.buf = buf;
                r.map_err(|_| ClientBroke)?;
                self.log.sent += len as u64;
            }
            consume(&mut up_conn.buf, piece.end);
            self.out.clear();
            if cursor.is_done() {
                self.end_upstream(held, true, conn.clock);
                return Ok(close);
            }
            match self.next_piece(conn, held.conn()).await {
                Ok(0) if self.res.body == ResponseBody::Close => {
                    // The end of a close-delimited body.
                    self.end_upstream(held, false, conn.clock);
                    if reframe.chunk_out {
                        self.out.extend_from_slice(b"0\r\n\r\n");
                        self.send_out(conn, send_timeout)
                            .await
                            .map_err(|_| ClientBroke)?;
                    }
                    return Ok(close);
                }
                // Closed or failed before the framed end: the client cannot mistake the cut
                // response for a whole one (its connection closes).
                Ok(0) | Err(_) => return Err(ClientBroke),
                Ok(_) => {}
            }
            let up_conn = held.conn();
            let t = self.take(&mut cursor, &up_conn.buf, reframe)?;
            piece = 0..t.taken;
        }
    }

    /// With buffering: the server is read at its pace into a spool while the client is
    /// written at its own; the server is given back as soon as its response is read.
    #[allow(clippy::too_many_arguments)]
    async fn relay_buffered<S: ClientIo>(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut Conn<S>,
        held: &mut Held<'_>,
        mut cursor: BodyCursor,
        piece: std::ops::Range<usize>,
        reframe: Reframe,
        send_timeout: Duration,
        close: bool,
    ) -> Result<CloseAfter, ClientBroke> {
        let (mem_limit, file_limit) = self.buffering.unwrap_or_default();
        let mut spool = Spool::new(mem_limit, file_limit, &ctx.buffers);
        // The head and the first piece make the first chunk.
        let mut first_chunk = std::mem::take(&mut self.out);
        reframe.frame(&mut first_chunk, &held.conn().buf[piece.clone()]);
        consume(&mut held.conn().buf, piece.end);
        let dir = &self.temp_dir;
        if let Err(e) = spool.push(first_chunk, dir).await {
            tracing::error!(error = %e, "cannot buffer a response");
            return Err(ClientBroke);
        }
        let mut reading = true;
        loop {
            // Read from the server while it has more and the spool has room.
            let can_read = reading && held.is_held() && spool.has_room(UPSTREAM_BUF);
            if can_read {
                held.conn().arm();
            }
            let chunk = match spool.pop().await {
                Some(Ok(c)) => Some(c),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "cannot read back a buffered response");
                    return Err(ClientBroke);
                }
                None => None,
            };
            let Some(chunk) = chunk else {
                if !can_read {
                    if held.is_held() && reading {
                        // No room and nothing to send cannot both hold; be safe.
                        return Err(ClientBroke);
                    }
                    return Ok(close);
                }
                // Nothing to send: wait for the server.
                let got = self.read_watched(held.conn()).await;
                reading = self
                    .buffer_piece(held, &mut cursor, &mut spool, got, reframe, conn.clock)
                    .await?;
                continue;
            };
            // Send the chunk while reading on.
            let len = chunk.len();
            conn.clock = Instant::now();
            let clock = conn.clock;
            let deadline = clock + send_timeout;
            let mut write = std::pin::pin!(conn.send(chunk, 0..len, deadline));
            let (sent, chunk) = loop {
                let reading_now = reading && held.is_held() && held.conn().is_armed();
                let r = first(write.as_mut(), |cx| {
                    if reading_now {
                        held.conn().poll_armed(cx)
                    } else {
                        std::task::Poll::Pending
                    }
                })
                .await;
                match r {
                    First::Left(done) => break done,
                    First::Right(got) => {
                        let got = got.map_err(IoFail::Io);
                        reading = self
                            .buffer_piece(held, &mut cursor, &mut spool, got, reframe, clock)
                            .await?;
                        if reading && held.is_held() && spool.has_room(UPSTREAM_BUF) {
                            held.conn().arm();
                        }
                    }
                }
            };
            sent.map_err(|_| ClientBroke)?;
            self.log.sent += len as u64;
            spool.recycle(chunk);
        }
    }

    /// Takes what a read from the server brought into the spool; `Ok(false)` once the
    /// server is done (the response is complete and the server given back).
    async fn buffer_piece(
        &mut self,
        held: &mut Held<'_>,
        cursor: &mut BodyCursor,
        spool: &mut Spool<'_>,
        got: Result<usize, IoFail>,
        reframe: Reframe,
        now: Instant,
    ) -> Result<bool, ClientBroke> {
        match got {
            Ok(0) if self.res.body == ResponseBody::Close => {
                self.end_upstream(held, false, now);
                if reframe.chunk_out {
                    let mut end = spool.buffer();
                    end.extend_from_slice(b"0\r\n\r\n");
                    self.spool_push(spool, end).await?;
                }
                return Ok(false);
            }
            Ok(0) | Err(_) => return Err(ClientBroke),
            Ok(_) => {}
        }
        let mut chunk = spool.buffer();
        let up_conn = held.conn();
        let t = cursor
            .take(&up_conn.buf, &mut chunk, reframe.chunk_out)
            .map_err(|e| {
                tracing::info!(error = %e, "upstream sent a bad chunked body");
                ClientBroke
            })?;
        if reframe.raw() && t.taken == up_conn.buf.len() {
            // Hand the read buffer over instead of copying it.
            std::mem::swap(&mut chunk, &mut up_conn.buf);
        } else {
            reframe.frame(&mut chunk, &up_conn.buf[..t.taken]);
            consume(&mut up_conn.buf, t.taken);
        }
        self.spool_push(spool, chunk).await?;
        if t.done {
            self.end_upstream(held, true, now);
            return Ok(false);
        }
        Ok(true)
    }

    async fn spool_push(&self, spool: &mut Spool<'_>, chunk: Vec<u8>) -> Result<(), ClientBroke> {
        spool.push(chunk, &self.temp_dir).await.map_err(|e| {
            tracing::error!(path = %self.temp_dir.display(), error = %e, "cannot buffer a response in temp_path");
            ClientBroke
        })
    }

    /// The fast path for a response that needs no rewriting and arrived whole (head and
    /// body in the buffer, nothing after them): the server is given back, then one write
    /// straight from the buffer the response was read into, no copy. `None` when it does
    /// not apply.
    async fn relay_verbatim<S: ClientIo>(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut Conn<S>,
        held: &mut Held<'_>,
        send_timeout: Duration,
    ) -> Option<Result<CloseAfter, ClientBroke>> {
        let body_at = self.res.head_len;
        let body = match self.res.body {
            ResponseBody::None => 0,
            ResponseBody::Length(n) => n,
            _ => return None,
        };
        let len = held.conn().buf.len();
        if (len - body_at) as u64 != body {
            return None;
        }
        let whole = self.detach(ctx, held, len, conn.clock);
        let (r, whole) = conn.send(whole, 0..len, conn.clock + send_timeout).await;
        ctx.buffers.give(whole);
        if r.is_err() {
            return Some(Err(ClientBroke));
        }
        self.log.head_bytes = body_at as u64;
        self.log.sent += len as u64;
        Some(Ok(false))
    }

    /// Reads the next piece of a response body into `up_conn.buf` (consumed, so empty,
    /// before), renewing the clock reading (once per piece: cheap next to the piece's
    /// I/O).
    async fn next_piece<S: ClientIo>(
        &mut self,
        conn: &mut Conn<S>,
        up_conn: &mut UpConn,
    ) -> Result<usize, IoFail> {
        conn.clock = Instant::now();
        self.read_watched(up_conn).await
    }

    /// One read from the server within `read_timeout`.
    async fn read_watched(&self, up_conn: &mut UpConn) -> Result<usize, IoFail> {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&up_conn.stream);
        let watch = Watch::both(Instant::now() + self.read_timeout).arm(fd);
        let r = up_conn.read().await;
        if watch.fired() {
            return Err(IoFail::Timeout);
        }
        r.map_err(IoFail::Io)
    }

    /// Writes all of `out` to the client.
    async fn send_out<S: ClientIo>(
        &mut self,
        conn: &mut Conn<S>,
        timeout: Duration,
    ) -> Result<(), IoFail> {
        let out = std::mem::take(&mut self.out);
        let len = out.len();
        let (r, out) = conn.send(out, 0..len, conn.clock + timeout).await;
        match &r {
            Ok(()) => self.log.sent += out.len() as u64,
            Err(IoFail::Io(e)) => tracing::debug!(error = %e, "client write failed"),
            Err(IoFail::Timeout) => tracing::debug!("client write timed out"),
        }
        self.out = out;
        r
    }

    /// After a 101 the connection is a byte tunnel between client and backend; the
    /// upstream connection never returns to the pool.
    async fn tunnel_after_101<S: ClientIo>(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut Conn<S>,
        held: &mut Held<'_>,
        vs: &VirtualServer,
    ) -> Result<CloseAfter, ClientBroke> {
        let up_conn = held.conn();
        self.out.clear();
        rewrite::response_head(
            &mut self.out,
            &up_conn.buf,
            &self.res,
            ClientFraming::None,
            false,
            self.head.minor,
            true,
        );
        self.log.status = self.res.status;
        self.log.head_bytes = self.out.len() as u64;
        // Bytes the backend sent right after its 101 belong to the tunnel.
        self.out
            .extend_from_slice(&up_conn.buf[self.res.head_len..]);
        up_conn.buf.clear();
        self.send_out(conn, vs.client_body_timeout)
            .await
            .map_err(|_| ClientBroke)?;
        // Bytes the client sent after its request (already upgraded traffic): the request
        // head and body were consumed when they were forwarded, so none is sent twice.
        let early = std::mem::take(&mut conn.buf);
        tunnel::run(
            ctx,
            &mut conn.stream,
            &mut held.conn().stream,
            early,
            vs.keepalive_timeout,
        )
        .await;
        Ok(true)
    }
}
