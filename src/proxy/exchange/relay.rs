//! Streaming a response from a backend to an HTTP/1.1 client: the rewritten head, then the
//! body in the framing the client understands, through the upstream connection's own
//! buffer (no body is ever held whole).
//!
//! Where a response ends is decided only by its framing (RFC 9112 6.3, parsed once in
//! `http::response`): nothing past that end is ever sent to the client, and the relay
//! consumes the upstream buffer as it forwards, so that what is left in it afterwards is
//! exactly what the server sent beyond the response. The pool takes back only a connection
//! with nothing left.

use std::time::{Duration, Instant};

use super::Exchange;
use crate::config::VirtualServer;
use crate::http::body::{client_framing, ClientFraming};
use crate::http::chunked::ChunkedDecoder;
use crate::http::response::ResponseBody;
use crate::http::{push_hex, rewrite};
use crate::pool::UpConn;
use crate::proxy::conn::Conn;
use crate::proxy::io::{ClientIo, IoFail};
use crate::proxy::tunnel;
use crate::proxy::watchdog::Watch;
use crate::proxy::ProxyCtx;

/// Body bytes that arrived with the head are copied behind the head and sent in one write
/// up to this size; past it the head and the body go in two writes without a copy.
const COALESCE_MAX: usize = 16 * 1024;

/// How the relay ended.
pub(super) struct Relayed {
    /// `Ok(close)`: the whole response reached the client; `Err`: the client connection
    /// broke or the response was cut short, and it must be closed.
    pub client: Result<bool, ()>,
    /// The response ended at its framed end, nothing followed it, and the server keeps
    /// the connection open: it may be pooled.
    pub upstream_reusable: bool,
}

impl Relayed {
    fn broken() -> Relayed {
        Relayed {
            client: Err(()),
            upstream_reusable: false,
        }
    }
}

/// Drops the first `n` bytes of `buf`.
fn consume(buf: &mut Vec<u8>, n: usize) {
    if n >= buf.len() {
        buf.clear();
    } else {
        buf.drain(..n);
    }
}

impl Exchange {
    /// Relays the response whose head is parsed in `self.res` and sits in `up_conn.buf`.
    pub(super) async fn relay<S: ClientIo>(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut Conn<S>,
        up_conn: &mut UpConn,
        vs: &VirtualServer,
        close: bool,
    ) -> Relayed {
        if self.res.status == 101 {
            // Only reachable for a request that asked to upgrade (see `attempt`).
            return self.tunnel_after_101(ctx, conn, up_conn, vs).await;
        }
        let read_timeout = self.read_timeout;
        let send_timeout = vs.client_body_timeout;
        let framing = client_framing(self.res.body, self.head.minor);
        // A stop that began while the request was in flight: say the connection ends, so
        // the client does not send its next request into a closing socket. An early
        // answer leaves the request body unread: the connection cannot go on either.
        let close = close || framing == ClientFraming::Close || ctx.stopping() || self.early;
        let body_at = self.res.head_len;
        self.log.status = self.res.status;
        if self.res.verbatim && !close && self.head.minor == 1 {
            if let Some(relayed) = self.relay_verbatim(conn, up_conn, send_timeout).await {
                return relayed;
            }
        }
        self.out.clear();
        rewrite::response_head(
            &mut self.out,
            &up_conn.buf,
            &self.res,
            framing,
            close,
            self.head.minor,
            false,
        );
        self.log.head_bytes = self.out.len() as u64;
        // Whether the body ended where its framing says (a close-delimited one never
        // leaves a reusable connection).
        let ended = match self.res.body {
            ResponseBody::None => {
                consume(&mut up_conn.buf, body_at);
                if self.send_out(conn, send_timeout).await.is_err() {
                    return Relayed::broken();
                }
                true
            }
            ResponseBody::Length(n) => {
                let avail = up_conn.buf.len() - body_at;
                let first = (avail as u64).min(n) as usize;
                if first <= COALESCE_MAX {
                    self.out
                        .extend_from_slice(&up_conn.buf[body_at..body_at + first]);
                    if self.send_out(conn, send_timeout).await.is_err() {
                        return Relayed::broken();
                    }
                } else {
                    if self.send_out(conn, send_timeout).await.is_err() {
                        return Relayed::broken();
                    }
                    let buf = std::mem::take(&mut up_conn.buf);
                    let range = body_at..body_at + first;
                    let (r, buf) = conn.send(buf, range, conn.clock + send_timeout).await;
                    up_conn.buf = buf;
                    if r.is_err() {
                        return Relayed::broken();
                    }
                    self.log.sent += first as u64;
                }
                consume(&mut up_conn.buf, body_at + first);
                let mut remaining = n - first as u64;
                while remaining > 0 {
                    match self.next_piece(conn, up_conn, read_timeout).await {
                        Ok(0) | Err(_) => return Relayed::broken(),
                        Ok(got) => {
                            let take = (got as u64).min(remaining) as usize;
                            let buf = std::mem::take(&mut up_conn.buf);
                            let (r, buf) = conn.send(buf, 0..take, conn.clock + send_timeout).await;
                            up_conn.buf = buf;
                            if r.is_err() {
                                return Relayed::broken();
                            }
                            self.log.sent += take as u64;
                            remaining -= take as u64;
                            consume(&mut up_conn.buf, take);
                        }
                    }
                }
                true
            }
            ResponseBody::Chunked => {
                let reencode = framing == ClientFraming::Chunked;
                let mut dec = ChunkedDecoder::default();
                let mut at = body_at;
                loop {
                    let d = match dec.decode(&up_conn.buf[at..], &mut self.out, reencode) {
                        Ok(d) => d,
                        Err(e) => {
                            tracing::info!(error = %e, "upstream sent a bad chunked body");
                            return Relayed::broken();
                        }
                    };
                    consume(&mut up_conn.buf, at + d.consumed);
                    if self.send_out(conn, send_timeout).await.is_err() {
                        return Relayed::broken();
                    }
                    if d.done {
                        break;
                    }
                    at = 0;
                    self.out.clear();
                    match self.next_piece(conn, up_conn, read_timeout).await {
                        Ok(0) | Err(_) => return Relayed::broken(),
                        Ok(_) => {}
                    }
                }
                true
            }
            ResponseBody::Close => {
                let chunk = framing == ClientFraming::Chunked;
                let mut at = body_at;
                loop {
                    let piece = &up_conn.buf[at..];
                    if !piece.is_empty() {
                        if chunk {
                            push_hex(&mut self.out, piece.len() as u64);
                            self.out.extend_from_slice(b"\r\n");
                            self.out.extend_from_slice(piece);
                            self.out.extend_from_slice(b"\r\n");
                        } else {
                            self.out.extend_from_slice(piece);
                        }
                    }
                    up_conn.buf.clear();
                    if self.send_out(conn, send_timeout).await.is_err() {
                        return Relayed::broken();
                    }
                    at = 0;
                    self.out.clear();
                    match self.next_piece(conn, up_conn, read_timeout).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(IoFail::Timeout) | Err(IoFail::Io(_)) => return Relayed::broken(),
                    }
                }
                if chunk {
                    self.out.extend_from_slice(b"0\r\n\r\n");
                    if self.send_out(conn, send_timeout).await.is_err() {
                        return Relayed::broken();
                    }
                }
                false
            }
        };
        if !up_conn.buf.is_empty() {
            tracing::info!(
                status = self.res.status,
                extra_bytes = up_conn.buf.len(),
                "upstream sent bytes past the end of its response; its connection is closed"
            );
        }
        Relayed {
            client: Ok(close),
            upstream_reusable: ended
                && self.res.keep_alive
                && !self.early
                && up_conn.buf.is_empty(),
        }
    }

    /// The fast path for a response that needs no rewriting and arrived whole (head and
    /// body in the buffer, nothing after them): one write straight from the upstream
    /// connection's buffer, no copy. `None` when it does not apply.
    async fn relay_verbatim<S: ClientIo>(
        &mut self,
        conn: &mut Conn<S>,
        up_conn: &mut UpConn,
        send_timeout: Duration,
    ) -> Option<Relayed> {
        let body_at = self.res.head_len;
        let body = match self.res.body {
            ResponseBody::None => 0,
            ResponseBody::Length(n) => n,
            _ => return None,
        };
        if (up_conn.buf.len() - body_at) as u64 != body {
            return None;
        }
        let buf = std::mem::take(&mut up_conn.buf);
        let len = buf.len();
        let (r, mut buf) = conn.send(buf, 0..len, conn.clock + send_timeout).await;
        buf.clear();
        up_conn.buf = buf;
        if r.is_err() {
            return Some(Relayed::broken());
        }
        self.log.head_bytes = body_at as u64;
        self.log.sent += len as u64;
        Some(Relayed {
            client: Ok(false),
            upstream_reusable: self.res.keep_alive,
        })
    }

    /// Reads the next piece of a response body into `up_conn.buf` (consumed, so empty,
    /// before), renewing the clock reading (once per piece: cheap next to the piece's
    /// I/O).
    async fn next_piece<S: ClientIo>(
        &mut self,
        conn: &mut Conn<S>,
        up_conn: &mut UpConn,
        read_timeout: Duration,
    ) -> Result<usize, IoFail> {
        conn.clock = Instant::now();
        let watch = Watch::both(conn.clock + read_timeout)
            .arm(std::os::fd::AsRawFd::as_raw_fd(&up_conn.stream));
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
        up_conn: &mut UpConn,
        vs: &VirtualServer,
    ) -> Relayed {
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
        if self.send_out(conn, vs.client_body_timeout).await.is_err() {
            return Relayed::broken();
        }
        // Bytes the client sent after its request (already upgraded traffic): the request
        // head and body were consumed when they were forwarded, so none is sent twice.
        let early = std::mem::take(&mut conn.buf);
        tunnel::run(
            ctx,
            &mut conn.stream,
            &mut up_conn.stream,
            early,
            vs.keepalive_timeout,
        )
        .await;
        Relayed {
            client: Ok(true),
            upstream_reusable: false,
        }
    }
}
