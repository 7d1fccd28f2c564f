//! One worker's proxy state, owned by its thread and shared by its connection tasks: the
//! configuration generation in use, the balancer's worker-local state, the idle pool, the
//! wait queues, the access log buffers, and the memory its requests reuse.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::access_log::WorkerLog as AccessLog;
use crate::control::generation::{Generations, Published};
use crate::metrics::WorkerStats;
use crate::pool::IdlePool;
use crate::upstream::Selector;

use super::buffers::Buffers;
use super::queues::WaitQueues;
use super::slot::Slots;
use super::watchdog;

/// One worker's proxy state: owned by its thread, shared by its connection tasks.
pub struct ProxyCtx {
    pub worker: usize,
    pub generations: Arc<Generations>,
    // Two counts on purpose: requests clone the worker-local `Rc` (no atomic), and only a
    // new generation touches the shared `Arc`'s count, which every worker would otherwise
    // bounce between cores on every request.
    #[allow(clippy::redundant_allocation)]
    current: RefCell<Rc<Arc<Published>>>,
    pub selector: RefCell<Selector>,
    pub pool: RefCell<IdlePool>,
    stopping: Cell<bool>,
    pub stats: Arc<WorkerStats>,
    pub(super) queues: RefCell<WaitQueues>,
    /// This worker's pending access log lines.
    pub access_log: RefCell<AccessLog>,
    /// Heap blocks for the forwarding state of requests in flight.
    pub(super) slots: Slots,
    /// Read buffers the exchanges of this worker share.
    pub(super) buffers: Buffers,
}

impl ProxyCtx {
    pub fn new(worker: usize, generations: Arc<Generations>, stats: Arc<WorkerStats>) -> ProxyCtx {
        let current = generations.current();
        let mut selector = Selector::new(0x9E37_79B9_7F4A_7C15 ^ (worker as u64 + 1));
        selector.sync(&current.snapshot);
        ProxyCtx {
            worker,
            generations,
            current: RefCell::new(Rc::new(current)),
            selector: RefCell::new(selector),
            // Keep reads armed on idle connections on epoll only: see `IdlePool::new`.
            pool: RefCell::new(IdlePool::new(monoio::utils::is_legacy())),
            stopping: Cell::new(false),
            stats,
            queues: RefCell::new(WaitQueues::default()),
            slots: Slots::default(),
            buffers: Buffers::default(),
            access_log: RefCell::new(AccessLog::new()),
        }
    }

    /// The configuration generation this request runs on (worker-local refcount; the
    /// shared `Arc` is only cloned when a new generation appears).
    pub fn current(&self) -> Rc<Arc<Published>> {
        let stale = self.current.borrow().generation() != self.generations.number();
        if stale {
            self.refresh();
        }
        self.current.borrow().clone()
    }

    /// Picks up a newly published generation: selection tables are rebuilt and the idle
    /// connections of servers that left are closed.
    pub fn refresh(&self) {
        let next = self.generations.current();
        if next.generation() == self.current.borrow().generation() {
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
