//! Per-worker counters. Each worker writes only its own `WorkerStats` (relaxed stores to
//! lines no other core writes), and the admin endpoint sums them at scrape time, so
//! counting costs no cache-line traffic between cores.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam::utils::CachePadded;

#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Client connections open now.
    pub clients_open: CachePadded<AtomicU64>,
    /// Client connections waiting for their next request.
    pub clients_idle: AtomicU64,
    /// Client connections accepted since start.
    pub clients_accepted: AtomicU64,
    /// Requests read since start.
    pub requests: AtomicU64,
    /// Responses ringlb made itself (4xx for bad requests, 502/503/504).
    pub own_responses: AtomicU64,
    /// Retries to another server (`next_upstream`).
    pub retries: AtomicU64,
}

impl WorkerStats {
    /// Adds one to a counter only this worker writes: a plain load and store, not a locked
    /// read-modify-write.
    #[inline]
    pub fn bump(counter: &AtomicU64) {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    #[inline]
    pub fn drop_one(counter: &AtomicU64) {
        counter.store(
            counter.load(Ordering::Relaxed).saturating_sub(1),
            Ordering::Relaxed,
        );
    }
}
