//! One worker thread: its monoio runtime, its listeners, and the housekeeping tick that
//! picks up new configuration generations and drives the graceful stop.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::Canceller;
use monoio::net::TcpListener;

use super::driver::{wants_uring, IoKind};
use super::listener;
use super::process::Process;
use super::secure;
use crate::config::IoMode;
use crate::proxy::{self, watchdog, Peer, ProxyCtx};

/// How often a worker looks at the stop flag, new listen addresses, and sweeps its socket
/// timeouts (which therefore fire up to one tick late). Requests see a new configuration at
/// once (they check the generation themselves); only listener changes and the stop wait for
/// the tick.
const HOUSEKEEPING_TICK: Duration = Duration::from_millis(20);
/// How often expired idle upstream connections are closed.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// io_uring submission queue size; completions beyond it queue in the kernel's overflow
/// list, so this bounds batching, not connections.
const RING_ENTRIES: u32 = 4096;
/// Pause of an accept loop after EMFILE/ENFILE: back off instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How often an accept loop at `runtime.max_connections` looks whether a connection closed.
const AT_CAP_POLL: Duration = Duration::from_millis(5);

pub(super) type Ready = Sender<Result<(usize, IoKind), (usize, String)>>;

pub(super) fn run(
    id: usize,
    core: Option<core_affinity::CoreId>,
    mode: IoMode,
    process: Arc<Process>,
    ready: Ready,
) {
    if let Some(core) = core {
        if !core_affinity::set_for_current(core) {
            tracing::warn!(worker = id, core = core.id, "could not pin to core");
        }
    }
    if wants_uring(mode) {
        match uring_runtime() {
            Ok(mut rt) => {
                rt.block_on(main(id, IoKind::IoUring, process, ready));
                return;
            }
            Err(e) if mode == IoMode::Auto => {
                if id == 0 {
                    tracing::warn!(error = %e, "io_uring unavailable: falling back to epoll");
                }
            }
            Err(e) => {
                let _ = ready.send(Err((id, format!("io_uring unavailable: {e}"))));
                return;
            }
        }
    }
    match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut rt) => rt.block_on(main(id, IoKind::Epoll, process, ready)),
        Err(e) => {
            let _ = ready.send(Err((id, format!("cannot start the event loop: {e}"))));
        }
    }
}

/// An io_uring runtime, with the ring flags that suit one thread owning one ring when the
/// kernel has them (6.1+): COOP_TASKRUN runs completion work when the thread next enters
/// the kernel instead of interrupting it, SINGLE_ISSUER lets the kernel skip cross-thread
/// locking, DEFER_TASKRUN batches that work until the loop asks for completions. Measured
/// with `ringload -R 20000` through one pinned worker: about 25% less CPU per request than a
/// plain ring, and more requests/s closed-loop. An older kernel gets a plain ring.
fn uring_runtime(
) -> std::io::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>> {
    let tuned = {
        let mut b = io_uring::IoUring::builder();
        b.setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun();
        b
    };
    let build = |b: Option<io_uring::Builder>| {
        let mut rb = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new();
        if let Some(b) = b {
            rb = rb.uring_builder(b);
        }
        rb.with_entries(RING_ENTRIES).enable_timer().build()
    };
    build(Some(tuned)).or_else(|_| build(None))
}

async fn main(id: usize, kind: IoKind, process: Arc<Process>, ready: Ready) {
    let ctx = Rc::new(ProxyCtx::new(
        id,
        process.generations.clone(),
        process.stats[id].clone(),
    ));
    let mut listeners: HashMap<SocketAddr, Canceller> = HashMap::new();
    let open_conns = Rc::new(OpenConns::default());
    let cur = ctx.current();
    for &addr in cur.routes.listen_addrs() {
        match open(addr, &ctx, &open_conns) {
            Ok(c) => {
                listeners.insert(addr, c);
            }
            Err(e) => {
                let _ = ready.send(Err((id, format!("cannot listen on {addr}: {e}"))));
                return;
            }
        }
    }
    let mut generation = cur.snapshot.generation;
    drop(cur);
    let _ = ready.send(Ok((id, kind)));

    let mut last_sweep = Instant::now();
    while !process.stopping.load(Ordering::Acquire) {
        monoio::time::sleep(HOUSEKEEPING_TICK).await;
        let now = Instant::now();
        watchdog::with(|w| w.sweep(now));
        crate::upstream::refresh_coarse_ms();
        let g = process.generations.number();
        if g != generation {
            generation = g;
            ctx.refresh();
            reconcile(&mut listeners, &ctx, &open_conns);
            secure::go_away();
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = Instant::now();
            ctx.pool.borrow_mut().sweep(last_sweep);
        }
        ctx.access_log.borrow_mut().flush_if_due(Instant::now());
    }

    // Graceful stop: no new connections, idle ones closed, busy ones finish their request.
    for (_, c) in listeners.drain() {
        c.cancel();
    }
    ctx.begin_stop();
    secure::go_away();
    let deadline = Instant::now() + ctx.current().config().runtime.shutdown_timeout;
    while ctx.stats.clients_open.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        monoio::time::sleep(HOUSEKEEPING_TICK).await;
        let now = Instant::now();
        watchdog::with(|w| w.sweep(now));
    }
    let left = ctx.stats.clients_open.load(Ordering::Relaxed);
    if left > 0 {
        tracing::warn!(
            worker = id,
            open = left,
            "stopping with connections still open"
        );
    }
    ctx.access_log.borrow_mut().flush();
}

/// Binds `addr` and starts accepting on it; the returned canceller stops that.
fn open(
    addr: SocketAddr,
    ctx: &Rc<ProxyCtx>,
    open_conns: &Rc<OpenConns>,
) -> std::io::Result<Canceller> {
    let std_listener = listener::bind(addr)?;
    let listener = TcpListener::from_std(std_listener)?;
    let canceller = Canceller::new();
    let handle = canceller.handle();
    let ctx = ctx.clone();
    let open_conns = open_conns.clone();
    monoio::spawn(async move {
        loop {
            // At the cap, leave new connections in the kernel's backlog (where they wait or
            // are refused once it fills) rather than take descriptors and memory for them.
            while open_conns.count.get() >= ctx.current().config().runtime.max_connections {
                // (A listener removed by a reload while at the cap closes once a
                // connection closes: the accept below then fails with ECANCELED.)
                if ctx.stopping() {
                    return;
                }
                monoio::time::sleep(AT_CAP_POLL).await;
            }
            match listener.cancelable_accept(handle.clone()).await {
                Ok((stream, remote)) => {
                    let open_conn = OpenConn::take(&open_conns);
                    let ctx = ctx.clone();
                    let (tls, proxied) = {
                        let cur = ctx.current();
                        let proxied = cur
                            .routes
                            .server(cur.config(), addr, None)
                            .filter(|vs| vs.proxy_protocol)
                            .map(|vs| vs.client_header_timeout);
                        (cur.tls.get(addr).cloned(), proxied)
                    };
                    let fut = Contained {
                        inner: async move {
                            let _open_conn = open_conn;
                            let peer = match proxied {
                                None => Peer::direct(remote),
                                // Boxed, as below: only `proxy_protocol` listeners pay for it.
                                Some(timeout) => {
                                    match Box::pin(proxy::read_proxy_header(&stream, timeout)).await
                                    {
                                        Ok(source) => Peer {
                                            addr: remote,
                                            proxied: source,
                                        },
                                        Err(e) => {
                                            tracing::info!(client = %remote, error = %e, "connection closed: no valid PROXY protocol header");
                                            return;
                                        }
                                    }
                                }
                            };
                            match tls {
                                None => proxy::serve(stream, peer, addr, ctx).await,
                                // Boxed: a TLS connection's state (handshake, HTTP/2) is
                                // several KiB larger than a plain one's, and every task is
                                // allocated at the size of its largest branch.
                                Some(site) => {
                                    Box::pin(secure::serve(stream, peer, addr, site, ctx)).await
                                }
                            }
                        },
                    };
                    monoio::spawn(fut);
                }
                Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => break,
                Err(e) => {
                    // EMFILE/ENFILE and friends: the connection stays in the backlog; pause
                    // so that closing connections can free descriptors.
                    tracing::warn!(%addr, error = %e, "accept failed");
                    monoio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    });
    Ok(canceller)
}

/// Opens listeners for addresses the new configuration added and closes those it removed
/// (their accepted connections carry on).
fn reconcile(
    listeners: &mut HashMap<SocketAddr, Canceller>,
    ctx: &Rc<ProxyCtx>,
    open_conns: &Rc<OpenConns>,
) {
    let cur = ctx.current();
    let wanted: Vec<SocketAddr> = cur.routes.listen_addrs().copied().collect();
    let gone: Vec<SocketAddr> = listeners
        .keys()
        .filter(|a| !wanted.contains(a))
        .copied()
        .collect();
    for addr in gone {
        if let Some(c) = listeners.remove(&addr) {
            c.cancel();
            tracing::info!(worker = ctx.worker, %addr, "stopped listening");
        }
    }
    for addr in wanted {
        if listeners.contains_key(&addr) {
            continue;
        }
        match open(addr, ctx, open_conns) {
            Ok(c) => {
                listeners.insert(addr, c);
                tracing::info!(worker = ctx.worker, %addr, "listening");
            }
            Err(e) => tracing::error!(worker = ctx.worker, %addr, error = %e, "cannot listen"),
        }
    }
}

/// Client connections this worker has accepted and not yet closed, over all its listeners
/// (counted at accept, unlike `clients_open`, which counts from the task's first poll).
#[derive(Default)]
struct OpenConns {
    count: Cell<usize>,
}

/// One accepted connection's place in [`OpenConns`], given back when its task ends (also by a
/// panic: `Contained` drops the future).
struct OpenConn(Rc<OpenConns>);

impl OpenConn {
    fn take(open_conns: &Rc<OpenConns>) -> OpenConn {
        open_conns.count.set(open_conns.count.get() + 1);
        OpenConn(open_conns.clone())
    }
}

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.count.set(self.0.count.get() - 1);
    }
}

pin_project_lite::pin_project! {
    /// Runs a connection's future so that a panic inside it ends that connection only:
    /// without this, a panic unwinds through the event loop and takes the whole worker (and
    /// every connection on it) down.
    struct Contained<F> {
        #[pin]
        inner: F,
    }
}

impl<F: std::future::Future<Output = ()>> std::future::Future for Contained<F> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let inner = self.project().inner;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(p) => p,
            Err(_) => {
                tracing::error!("a connection task panicked; its connection is closed");
                std::task::Poll::Ready(())
            }
        }
    }
}
