//! Client connections, end to end: read a request head, route it, pick a server, send the
//! request over a pooled connection, relay the response, and do it again for the next
//! request on the connection.
//!
//! Data flows one way through the submodules: `conn` (the downstream connection: its
//! socket, buffer and request loop) -> `route` (which server block and location) ->
//! `exchange` (one request's trip: server choice, retries, the upstream connection, the
//! response relayed) -> `tunnel` (after a 101).

mod access;
mod conn;
mod exchange;
mod io;
pub mod route;
mod slot;
mod spool;
mod tunnel;
pub mod watchdog;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::access_log::WorkerLog as AccessLog;
use crate::metrics::WorkerStats;
use crate::pool::IdlePool;
use crate::upstream::Selector;

pub use conn::{serve, serve_stream};
pub use io::ClientIo;
pub use route::Published;

/// What every worker shares: the published configuration and its generation number.
pub struct Shared {
    pub published: ArcSwap<Published>,
    /// Equal to `published.load().snapshot.generation` once a store is visible; read per
    /// request (a relaxed load of a rarely written line) so that the `ArcSwap` is only
    /// touched when something changed.
    pub generation: AtomicU64,
}

impl Shared {
    pub fn new(first: Published) -> Shared {
        let generation = first.snapshot.generation;
        Shared {
            published: ArcSwap::from_pointee(first),
            generation: AtomicU64::new(generation),
        }
    }

    /// Publishes a new generation to every worker.
    pub fn publish(&self, next: Published) {
        let generation = next.snapshot.generation;
        self.published.store(Arc::new(next));
        self.generation.store(generation, Ordering::Release);
    }
}

/// One worker's proxy state: owned by its thread, shared by its connection tasks.
pub struct ProxyCtx {
    pub worker: usize,
    pub shared: Arc<Shared>,
    // Two counts on purpose: requests clone the worker-local `Rc` (no atomic), and only a
    // new generation touches the shared `Arc`'s count, which every worker would otherwise
    // bounce between cores on every request.
    #[allow(clippy::redundant_allocation)]
    current: RefCell<Rc<Arc<Published>>>,
    pub selector: RefCell<Selector>,
    pub pool: RefCell<IdlePool>,
    stopping: Cell<bool>,
    pub stats: Arc<WorkerStats>,
    queues: RefCell<exchange::WaitQueues>,
    /// This worker's pending access log lines.
    pub access_log: RefCell<AccessLog>,
    /// Heap blocks for the forwarding state of requests in flight.
    slots: slot::Slots,
}

impl ProxyCtx {
    pub fn new(worker: usize, shared: Arc<Shared>, stats: Arc<WorkerStats>) -> ProxyCtx {
        let current = shared.published.load_full();
        let mut selector = Selector::new(0x9E37_79B9_7F4A_7C15 ^ (worker as u64 + 1));
        selector.sync(&current.snapshot);
        ProxyCtx {
            worker,
            shared,
            current: RefCell::new(Rc::new(current)),
            selector: RefCell::new(selector),
            pool: RefCell::new(IdlePool::default()),
            stopping: Cell::new(false),
            stats,
            queues: RefCell::new(exchange::WaitQueues::default()),
            slots: slot::Slots::default(),
            access_log: RefCell::new(AccessLog::new()),
        }
    }

    /// The configuration generation this request runs on (worker-local refcount; the
    /// shared `Arc` is only cloned when a new generation appears).
    pub fn current(&self) -> Rc<Arc<Published>> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        let stale = self.current.borrow().snapshot.generation != generation;
        if stale {
            self.refresh();
        }
        self.current.borrow().clone()
    }

    /// Picks up a newly published generation: selection tables are rebuilt and the idle
    /// connections of servers that left are closed.
    pub fn refresh(&self) {
        let next = self.shared.published.load_full();
        if next.snapshot.generation == self.current.borrow().snapshot.generation {
            return;
        }
        self.selector.borrow_mut().sync(&next.snapshot);
        let mut live = Vec::new();
        for up in &next.snapshot.upstreams {
            for p in &up.peers {
                live.push(p.state.id);
            }
        }
        self.pool.borrow_mut().retain(|id| live.contains(&id));
        *self.current.borrow_mut() = Rc::new(next);
    }

    pub fn stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Begins a graceful stop: idle connections are closed now, busy ones after their
    /// current request.
    pub fn begin_stop(&self) {
        self.stopping.set(true);
        // Idle connections' reads end with end of stream; the tasks then close them.
        watchdog::with(|w| w.end_idle());
        self.pool.borrow_mut().clear();
    }
}
