//! Streaming a response from a backend to the client: the rewritten head, then the body in
//! the framing the client understands, through the upstream connection's own buffer (no
//! body is ever held whole).

use std::time::Instant;

use super::client::Client;
use super::io::{recv, send, IoFail};
use super::tunnel;
use super::watchdog::Watch;
use super::ProxyCtx;
use crate::config::VirtualServer;
use crate::http::body::{client_framing, ClientFraming};
use crate::http::chunked::ChunkedDecoder;
use crate::http::response::ResponseBody;
use crate::http::{push_hex, rewrite};
use crate::pool::UpConn;
use crate::upstream::Upstream;

/// Body bytes that arrived with the head are copied behind the head and sent in one write
/// up to this size; past it the head and the body go in two writes without a copy.
const COALESCE_MAX: usize = 16 * 1024;

/// How the relay ended.
pub(super) struct Relayed {
    /// `Ok(close)`: the whole response reached the client; `Err`: the client connection
    /// broke or the response was cut short, and it must be closed.
    pub client: Result<bool, ()>,
    /// The backend connection holds nothing unread and may be pooled.
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

impl Client {
    /// Relays the response whose head is parsed in `self.res` and sits in `conn.buf`.
    pub(super) async fn relay(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut UpConn,
        up: &Upstream,
        vs: &VirtualServer,
        close: bool,
    ) -> Relayed {
        let read_timeout = up.cfg.read_timeout;
        let send_timeout = vs.client_body_timeout;
        if self.res.status == 101 && self.head.upgrade {
            return self.tunnel_after_101(ctx, conn, vs).await;
        }
        let framing = client_framing(self.res.body, self.head.minor);
        // A stop that began while the request was in flight: say the connection ends, so
        // the client does not send its next request into a closing socket.
        let close =
            close || framing == ClientFraming::Close || self.res.status == 101 || ctx.stopping();
        let body_at = self.res.head_len;
        self.log.status = self.res.status;
        if self.res.verbatim && !close && self.head.minor == 1 {
            if let Some(relayed) = self.relay_verbatim(conn, send_timeout).await {
                return relayed;
            }
        }
        self.out.clear();
        rewrite::response_head(
            &mut self.out,
            &conn.buf,
            &self.res,
            framing,
            close,
            self.head.minor,
            false,
        );
        self.log.head_bytes = self.out.len() as u64;
        let mut reusable = self.res.keep_alive;
        let done_ok = Relayed {
            client: Ok(close),
            upstream_reusable: false,
        };
        match self.res.body {
            ResponseBody::None => {
                reusable &= conn.buf.len() == body_at;
                if self.send_out(send_timeout).await.is_err() {
                    return Relayed::broken();
                }
            }
            ResponseBody::Length(n) => {
                let avail = conn.buf.len() - body_at;
                let first = (avail as u64).min(n) as usize;
                // Bytes past the declared length: the backend is confused, do not reuse.
                reusable &= avail as u64 <= n;
                if first <= COALESCE_MAX {
                    self.out
                        .extend_from_slice(&conn.buf[body_at..body_at + first]);
                    if self.send_out(send_timeout).await.is_err() {
                        return Relayed::broken();
                    }
                } else {
                    if self.send_out(send_timeout).await.is_err() {
                        return Relayed::broken();
                    }
                    let buf = std::mem::take(&mut conn.buf);
                    let watch = Watch::both(self.clock + send_timeout);
                    let range = body_at..body_at + first;
                    let (r, buf) = send(&mut self.stream, buf, range, watch).await;
                    conn.buf = buf;
                    if r.is_err() {
                        return Relayed::broken();
                    }
                    self.log.sent += first as u64;
                }
                let mut remaining = n - first as u64;
                while remaining > 0 {
                    match self.next_piece(conn, read_timeout).await {
                        Ok(0) | Err(_) => return Relayed::broken(),
                        Ok(got) => {
                            let take = (got as u64).min(remaining) as usize;
                            reusable &= got as u64 <= remaining;
                            let buf = std::mem::take(&mut conn.buf);
                            let watch = Watch::both(self.clock + send_timeout);
                            let (r, buf) = send(&mut self.stream, buf, 0..take, watch).await;
                            conn.buf = buf;
                            if r.is_err() {
                                return Relayed::broken();
                            }
                            self.log.sent += take as u64;
                            remaining -= take as u64;
                        }
                    }
                }
            }
            ResponseBody::Chunked => {
                let reencode = framing == ClientFraming::Chunked;
                let mut dec = ChunkedDecoder::default();
                let mut at = body_at;
                loop {
                    let d = match dec.decode(&conn.buf[at..], &mut self.out, reencode) {
                        Ok(d) => d,
                        Err(e) => {
                            tracing::info!("upstream sent a bad chunked body: {e}");
                            return Relayed::broken();
                        }
                    };
                    if d.done {
                        reusable &= at + d.consumed == conn.buf.len();
                    }
                    if self.send_out(send_timeout).await.is_err() {
                        return Relayed::broken();
                    }
                    if d.done {
                        break;
                    }
                    at = 0;
                    self.out.clear();
                    match self.next_piece(conn, read_timeout).await {
                        Ok(0) | Err(_) => return Relayed::broken(),
                        Ok(_) => {}
                    }
                }
            }
            ResponseBody::Close => {
                let chunk = framing == ClientFraming::Chunked;
                reusable = false;
                let mut at = body_at;
                loop {
                    if conn.buf.len() > at {
                        if chunk {
                            push_hex(&mut self.out, (conn.buf.len() - at) as u64);
                            self.out.extend_from_slice(b"\r\n");
                            self.out.extend_from_slice(&conn.buf[at..]);
                            self.out.extend_from_slice(b"\r\n");
                        } else {
                            self.out.extend_from_slice(&conn.buf[at..]);
                        }
                    }
                    if self.send_out(send_timeout).await.is_err() {
                        return Relayed::broken();
                    }
                    at = 0;
                    self.out.clear();
                    match self.next_piece(conn, read_timeout).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(IoFail::Timeout) | Err(IoFail::Io(_)) => return Relayed::broken(),
                    }
                }
                if chunk {
                    self.out.extend_from_slice(b"0\r\n\r\n");
                    if self.send_out(send_timeout).await.is_err() {
                        return Relayed::broken();
                    }
                }
            }
        }
        Relayed {
            upstream_reusable: reusable,
            ..done_ok
        }
    }

    /// The fast path for a response that needs no rewriting and arrived whole (head and
    /// body in the buffer, nothing after them): one write straight from the upstream
    /// connection's buffer, no copy. `None` when it does not apply.
    async fn relay_verbatim(
        &mut self,
        conn: &mut UpConn,
        send_timeout: std::time::Duration,
    ) -> Option<Relayed> {
        let body_at = self.res.head_len;
        let body = match self.res.body {
            ResponseBody::None => 0,
            ResponseBody::Length(n) => n,
            _ => return None,
        };
        if (conn.buf.len() - body_at) as u64 != body {
            return None;
        }
        let buf = std::mem::take(&mut conn.buf);
        let len = buf.len();
        let watch = Watch::both(self.clock + send_timeout);
        let (r, buf) = send(&mut self.stream, buf, 0..len, watch).await;
        conn.buf = buf;
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

    /// Reads the next piece of a response body into `conn.buf` (emptied first), renewing
    /// the clock reading (once per piece: cheap next to the piece's I/O).
    async fn next_piece(
        &mut self,
        conn: &mut UpConn,
        read_timeout: std::time::Duration,
    ) -> Result<usize, IoFail> {
        conn.buf.clear();
        self.clock = Instant::now();
        let buf = std::mem::take(&mut conn.buf);
        let watch = Watch::both(self.clock + read_timeout);
        let (r, buf) = recv(&mut conn.stream, buf, watch).await;
        conn.buf = buf;
        r
    }

    /// Writes all of `out` to the client.
    async fn send_out(&mut self, timeout: std::time::Duration) -> Result<(), IoFail> {
        let out = std::mem::take(&mut self.out);
        let len = out.len();
        let watch = Watch::both(self.clock + timeout);
        let (r, out) = send(&mut self.stream, out, 0..len, watch).await;
        if r.is_ok() {
            self.log.sent += out.len() as u64;
        }
        self.out = out;
        r
    }

    /// After a 101 the connection is a byte tunnel between client and backend.
    async fn tunnel_after_101(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut UpConn,
        vs: &VirtualServer,
    ) -> Relayed {
        self.out.clear();
        rewrite::response_head(
            &mut self.out,
            &conn.buf,
            &self.res,
            ClientFraming::None,
            false,
            self.head.minor,
            true,
        );
        self.log.status = self.res.status;
        self.log.head_bytes = self.out.len() as u64;
        // Bytes the backend sent right after its 101 belong to the tunnel.
        self.out.extend_from_slice(&conn.buf[self.res.head_len..]);
        if self.send_out(vs.client_body_timeout).await.is_err() {
            return Relayed::broken();
        }
        // Bytes the client sent after its request head (already upgraded traffic).
        self.consume(self.head.head_len);
        let early = std::mem::take(&mut self.buf);
        tunnel::run(
            ctx,
            &mut self.stream,
            &mut conn.stream,
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
