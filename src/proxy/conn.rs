//! An HTTP/1.1 connection's request loop: read each request head on the downstream
//! connection, route it to its server block, hand it to an [`Exchange`], log it, and wait
//! for the next one.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use monoio::net::TcpStream;

use super::ctx::ProxyCtx;
use super::downstream::{Conn, Peer, CLIENT_BUF};
use super::exchange::Exchange;
use super::io::{ClientIo, IoFail};
use super::slot;
use super::watchdog::Watch;
use crate::config::VirtualServer;
use crate::http::request;
use crate::metrics::{self, WorkerStats};
use crate::realip;

/// After a large request the buffer shrinks back so that an idle connection stays cheap.
const SHRINK_ABOVE: usize = 64 * 1024;

/// Serves one accepted TCP client connection until it closes. (TCP_NODELAY comes from the
/// listening socket: see `runtime::listener::bind`.)
pub async fn serve(stream: TcpStream, peer: Peer, listen: SocketAddr, ctx: Rc<ProxyCtx>) {
    serve_stream(stream, peer, listen, ctx).await
}

/// Serves one client connection over any stream (plain TCP, TLS) until it closes.
pub async fn serve_stream<S: ClientIo>(
    stream: S,
    peer: Peer,
    listen: SocketAddr,
    ctx: Rc<ProxyCtx>,
) {
    let _open = OpenGuard::new(&ctx.stats);
    metrics::bump(&ctx.stats.clients_accepted);
    let mut conn = Conn::new(stream, peer, listen);
    let mut ex = Exchange::for_connection();
    conn.run(&ctx, &mut ex).await;
    Exchange::connection_done(ex);
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
                    ex.client = self.remote;
                    ex.respond_own(ctx, self, status, true, default_vs).await;
                    ex.write_log(ctx, &cur, ex.client, default_vs, S::TLS);
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
            // The request's client: the peer, or who trusted proxies in front say it is
            // (`real_ip_from`, as nginx's realip module).
            ex.client = match realip::for_request(
                vs,
                self.remote.ip(),
                self.proxied,
                &ex.head,
                &self.buf,
            ) {
                Some(c) => SocketAddr::new(c.ip, c.port.unwrap_or(self.remote.port())),
                None => self.remote,
            };
            if vs.access_log.is_some() {
                ex.capture_head(&self.buf, ex.client, vs, S::HTTP2);
            }
            // In a worker-reused heap block, so that an idle connection's task holds only
            // the small head-reading state, not the much larger one of forwarding.
            let close = slot::run_in(&ctx.slots, || ex.handle(ctx, self, &cur, vs)).await;
            ex.write_log(ctx, &cur, ex.client, vs, S::TLS);
            self.served += 1;
            if close {
                return;
            }
            if !self.is_armed() && self.buf.capacity() > SHRINK_ABOVE && self.buf.len() < CLIENT_BUF
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
}
