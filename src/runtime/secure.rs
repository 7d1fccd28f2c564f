//! What a TLS listener does with an accepted connection: the handshake on this worker with
//! the address's certificates as last published, then HTTP/1.1 through the proxy (the TLS
//! stream is a `ClientIo` like a TCP socket), or HTTP/2 with each stream served through
//! the same proxy path as one exchange (see `h2::gateway`).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use monoio::buf::SliceMut;
use monoio::net::TcpStream;
use monoio::BufResult;

use crate::h2::{self, H2Settings, Shutdown};
use crate::metrics::{bump, drop_one};
use crate::proxy::{self, ClientIo, ProxyCtx};
use crate::tls::{self, AddrTls, TlsStream};

impl ClientIo for TlsStream {
    const TLS: bool = true;
    // A TLS record cannot be read by a kernel operation left in flight: reads happen when
    // the connection asks for them.
    type Armed = std::future::Pending<BufResult<usize, SliceMut<Vec<u8>>>>;

    fn read_owned(&self, buf: SliceMut<Vec<u8>>) -> Result<Self::Armed, SliceMut<Vec<u8>>> {
        Err(buf)
    }
}

thread_local! {
    /// Asks this worker's HTTP/2 connections to finish (GOAWAY) on stop and on reload.
    static GO_AWAY: Shutdown = Shutdown::default();
}

/// Sends GOAWAY on every HTTP/2 connection of this worker: on a graceful stop, and on a
/// reload so that clients reconnect to the new certificates and settings (requests in
/// flight finish first).
pub(super) fn go_away() {
    GO_AWAY.with(|g| g.trigger());
}

/// Counts a gauge up for as long as it lives.
struct Gauge<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> Gauge<'a> {
    fn up(c: &'a std::sync::atomic::AtomicU64) -> Self {
        bump(c);
        Gauge(c)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        drop_one(self.0);
    }
}

/// Serves one connection accepted on a TLS address.
pub(super) async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    listen: SocketAddr,
    site: Arc<AddrTls>,
    ctx: Rc<ProxyCtx>,
) {
    let (handshake_timeout, settings) = {
        let cur = ctx.current();
        let config = cur.config();
        let Some(vs) = cur.routes.server(config, listen, None) else {
            return;
        };
        let settings = H2Settings::for_server(
            vs.max_header_bytes,
            vs.keepalive_requests,
            vs.keepalive_timeout,
            vs.client_header_timeout,
            config.runtime.shutdown_timeout,
        );
        (vs.client_header_timeout, settings)
    };
    let Ok(tls) = tls::accept(stream, &site, handshake_timeout, &ctx.stats.tls).await else {
        return;
    };
    drop(site);
    if tls.is_h2() {
        let _open = Gauge::up(&ctx.stats.clients_h2);
        let shutdown = GO_AWAY.with(|g| g.clone());
        let stats = ctx.stats.clone();
        let end = h2::serve(tls, &settings, &shutdown, &stats.h2, |ex| {
            h2::gateway::exchange(ex, remote, listen, ctx.clone())
        })
        .await;
        tracing::debug!(client = %remote, ?end, "HTTP/2 connection ended");
    } else {
        let stats = ctx.stats.clone();
        let _open = Gauge::up(&stats.clients_tls);
        proxy::serve_stream(tls, remote, listen, ctx).await;
    }
}
