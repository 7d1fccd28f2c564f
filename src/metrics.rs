//! Counters. Each worker writes only its own shard (relaxed stores to lines no other core
//! writes), and the admin endpoint sums the shards at scrape time, so counting costs no
//! cache-line traffic between cores.
//!
//! - `WorkerStats`: per worker, for client connections and the responses ringlb makes
//!   without reaching a server.
//! - `PeerCounters`: per server per worker (inside `PeerState`), for responses by status,
//!   response-time histogram, failures and retries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam::utils::CachePadded;

/// Status codes counted on their own; the others fall into their class (`1xx`..`5xx`).
pub const TRACKED_CODES: [u16; 24] = [
    100, 101, 200, 201, 204, 206, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 408, 413, 429,
    500, 501, 502, 503, 504,
];
/// One slot per tracked code, then one per class.
pub const CODE_SLOTS: usize = TRACKED_CODES.len() + 5;

/// The counter slot of a status code.
#[inline]
pub fn code_slot(code: u16) -> usize {
    match TRACKED_CODES.binary_search(&code) {
        Ok(i) => i,
        Err(_) => TRACKED_CODES.len() + (code / 100).clamp(1, 5) as usize - 1,
    }
}

/// The label of a slot: the code, or `"4xx"` for a class slot.
pub fn slot_label(slot: usize) -> String {
    match TRACKED_CODES.get(slot) {
        Some(c) => c.to_string(),
        None => format!("{}xx", slot - TRACKED_CODES.len() + 1),
    }
}

/// Upper bounds of the response-time histogram, in seconds (Prometheus `le`).
pub const LATENCY_BOUNDS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Adds one to a counter only this worker writes: a plain load and store, not a locked
/// read-modify-write.
#[inline]
pub fn bump(counter: &AtomicU64) {
    add(counter, 1);
}

#[inline]
pub fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

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
    /// Responses ringlb made itself, by status slot (400s, 404, and 502/503/504 when no
    /// server answered).
    pub own_codes: [AtomicU64; CODE_SLOTS],
    /// Of `clients_open`: HTTP/1.1 connections over TLS.
    pub clients_tls: AtomicU64,
    /// Of `clients_open`: HTTP/2 streams in flight (each runs as one exchange).
    pub h2_streams_open: AtomicU64,
    /// HTTP/2 connections open now (not in `clients_open`).
    pub clients_h2: AtomicU64,
    pub tls: TlsCounters,
    pub h2: H2Counters,
}

/// The `reason` labels of failed TLS handshakes, in `TlsCounters::failures` order.
pub const TLS_FAILURES: [&str; 6] = [
    "incompatible",
    "rejected_by_client",
    "protocol_error",
    "client_closed",
    "timeout",
    "other",
];

/// TLS handshakes of one worker.
#[derive(Debug, Default)]
pub struct TlsCounters {
    pub handshakes: AtomicU64,
    pub resumed: AtomicU64,
    pub failures: [AtomicU64; TLS_FAILURES.len()],
}

/// The `reason` labels of HTTP/2 connections cut off with ENHANCE_YOUR_CALM, in
/// `H2Counters::abuse` order.
pub const H2_ABUSE: [&str; 8] = [
    "ping_flood",
    "settings_flood",
    "reset_flood",
    "priority_flood",
    "window_update_flood",
    "empty_frame_flood",
    "unknown_frame_flood",
    "overhead",
];

/// HTTP/2 connections of one worker.
#[derive(Debug, Default)]
pub struct H2Counters {
    /// Connections since start.
    pub connections: AtomicU64,
    /// Streams (requests) since start.
    pub streams: AtomicU64,
    pub abuse: [AtomicU64; H2_ABUSE.len()],
}

/// Takes one from a counter only this worker writes (a gauge going down).
#[inline]
pub fn drop_one(counter: &AtomicU64) {
    counter.store(
        counter.load(Ordering::Relaxed).saturating_sub(1),
        Ordering::Relaxed,
    );
}

/// One worker's counters for one server.
#[derive(Debug, Default)]
pub struct PeerCounters {
    /// Responses relayed from this server, by status slot.
    pub codes: [AtomicU64; CODE_SLOTS],
    /// Time to the response head, cumulative histogram buckets (`LATENCY_BOUNDS_S`, then
    /// +Inf), plus the sum in microseconds.
    pub latency_buckets: [AtomicU64; LATENCY_BOUNDS_S.len() + 1],
    pub latency_sum_us: AtomicU64,
    /// Failed attempts (error, timeout, invalid header, or a listed status).
    pub failures: AtomicU64,
    /// Requests retried on another server after failing on this one.
    pub retries: AtomicU64,
}

impl PeerCounters {
    #[inline]
    pub fn observe(&self, status: u16, elapsed: Duration) {
        bump(&self.codes[code_slot(status)]);
        let s = elapsed.as_secs_f64();
        let b = LATENCY_BOUNDS_S
            .iter()
            .position(|&le| s <= le)
            .unwrap_or(LATENCY_BOUNDS_S.len());
        bump(&self.latency_buckets[b]);
        add(&self.latency_sum_us, elapsed.as_micros() as u64);
    }
}

/// Sums one field over shards.
pub fn sum<T>(shards: &[T], f: impl Fn(&T) -> &AtomicU64) -> u64 {
    shards.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_slots_are_distinct_and_labelled() {
        assert_eq!(slot_label(code_slot(200)), "200");
        assert_eq!(slot_label(code_slot(418)), "4xx");
        assert_eq!(slot_label(code_slot(599)), "5xx");
        assert_eq!(slot_label(code_slot(103)), "1xx");
        assert!(code_slot(999) < CODE_SLOTS);
    }
}
