//! Live per-server state shared by every worker: the counters that survive snapshot swaps
//! and reloads, and the registry that hands out one `PeerState` per (upstream, address).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crossbeam::utils::CachePadded;

use crate::config::ServerAddr;
use crate::metrics::PeerCounters;

/// Milliseconds since the process started: the clock of every `*_ms` field.
///
/// A `u64` of milliseconds fits an atomic, which an `Instant` does not.
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

thread_local! {
    /// A worker's coarse `now_ms`, set by its housekeeping tick (see `tick_coarse_ms`).
    static COARSE_MS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// `now_ms` to within one worker tick (20 ms), without reading the clock: what the
/// request path uses for passive-failure windows and slow-start ramps, all of them seconds
/// long. Threads without a tick (the control thread, tests) read the real clock.
#[inline]
pub fn coarse_now_ms() -> u64 {
    match COARSE_MS.with(|c| c.get()) {
        0 => now_ms(),
        ms => ms,
    }
}

/// Advances this thread's coarse clock (the worker's tick).
pub fn tick_coarse_ms() {
    let ms = now_ms();
    COARSE_MS.with(|c| c.set(ms));
}

/// `t` on the `now_ms` clock: lets a request that already read the clock reuse it.
fn ms_at(t: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // Start at 1 so that 0 can mean "never".
    t.saturating_duration_since(*EPOCH.get_or_init(Instant::now))
        .as_millis() as u64
        + 1
}

/// What every worker knows about one server. Each hot field sits on its own cache line:
/// `active` is written by every worker on every request under least_conn, and must not drag
/// the read-mostly fields along with it.
#[derive(Debug)]
pub struct PeerState {
    /// Stable id for this (upstream, address) for the life of the process: indexes
    /// per-worker pools and metric arrays.
    pub id: u32,
    /// Requests in flight to this server, across workers.
    pub active: CachePadded<AtomicU32>,
    /// nginx `fails`: passive failures since the last success that counted.
    pub fails: CachePadded<AtomicU32>,
    /// nginx `accessed`: when the last failure happened.
    pub accessed_ms: AtomicU64,
    /// nginx `checked`: when the last failure happened or the last probe request was let
    /// through after `fail_timeout`.
    pub checked_ms: AtomicU64,
    /// Active health check verdict (true = up). Written by the control thread only.
    pub healthy: AtomicBool,
    /// When this server last became usable (start, health recovery, or ejection ended):
    /// the origin of its slow-start ramp.
    pub up_since_ms: AtomicU64,
    /// Peak-EWMA of response time in microseconds (least_time); 0 = no sample yet.
    pub ewma_us: AtomicU64,
    /// When `ewma_us` was last updated.
    pub ewma_at_ms: AtomicU64,
    /// Per-worker counters (one shard per worker, each on its own cache lines).
    pub shards: Box<[CachePadded<PeerCounters>]>,
}

impl PeerState {
    pub fn new(id: u32) -> PeerState {
        Self::with_shards(id, 1)
    }

    pub fn with_shards(id: u32, shards: usize) -> PeerState {
        PeerState {
            id,
            active: CachePadded::new(AtomicU32::new(0)),
            fails: CachePadded::new(AtomicU32::new(0)),
            accessed_ms: AtomicU64::new(0),
            checked_ms: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            up_since_ms: AtomicU64::new(0),
            ewma_us: AtomicU64::new(0),
            ewma_at_ms: AtomicU64::new(0),
            shards: (0..shards.max(1))
                .map(|_| CachePadded::new(PeerCounters::default()))
                .collect(),
        }
    }

    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// This worker's counters (worker ids past the shard count share the last shard).
    #[inline]
    pub fn shard(&self, worker: usize) -> &PeerCounters {
        &self.shards[worker.min(self.shards.len() - 1)]
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// Hands out the `PeerState` of each (upstream name, address), creating it on first use, so
/// that a reload that keeps a server keeps its counters. Used when snapshots are built (the
/// control thread), never on the request path.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<RegistryInner>,
    /// Counter shards per server: the worker count.
    shards: usize,
}

#[derive(Debug, Default)]
struct RegistryInner {
    by_key: HashMap<(String, ServerAddr), Arc<PeerState>>,
    next_id: u32,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// A registry whose servers carry one counter shard per worker.
    pub fn with_workers(workers: usize) -> Registry {
        Registry {
            shards: workers,
            ..Registry::default()
        }
    }

    /// The state for `addr` in upstream `upstream`, created if new.
    pub fn peer(&self, upstream: &str, addr: &ServerAddr) -> Arc<PeerState> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = inner.by_key.get(&(upstream.to_string(), addr.clone())) {
            return s.clone();
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let state = Arc::new(PeerState::with_shards(id, self.shards));
        state.up_since_ms.store(now_ms(), Ordering::Relaxed);
        inner
            .by_key
            .insert((upstream.to_string(), addr.clone()), state.clone());
        state
    }

    /// Forgets servers that are not in `keep` (after a reload removed them), so a server
    /// added back later starts fresh.
    pub fn retain(&self, keep: &dyn Fn(&str, &ServerAddr) -> bool) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.by_key.retain(|(u, a), _| keep(u, a));
    }
}
