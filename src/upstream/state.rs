//! Live per-server state shared by every worker, and the rules that move it: passive health
//! (nginx's `max_fails` / `fail_timeout`), the active check's verdict, the slow-start ramp.
//! The registry hands out one `PeerState` per (upstream, address), so counters and health
//! survive snapshot swaps and reloads.
//!
//! Every rule is a method fed with the time (`now_ms`, on the [`clock`](super::clock)), so
//! each is tested below without sockets or sleeps.
//!
//! # Passive health, as nginx (`ngx_http_upstream_round_robin.c`)
//! Three fields: `fails`, `accessed` (last failure) and `checked` (last failure, or the last
//! trial request let through). Not a sliding window:
//! - a failure: `fails += 1; accessed = checked = now`. At `fails >= max_fails` the server is
//!   out ("temporarily disabled") while `now - checked <= fail_timeout`;
//! - a pick more than `fail_timeout` after `checked` sets `checked = now`: if the server was
//!   out, that single request is its trial;
//! - a success clears `fails` only if `accessed < checked`, i.e. a trial went through since
//!   the last failure; a failed trial is a failure like any other and puts it out again;
//! - `max_fails = 0` disables all this, and the only server of an upstream is never put out.
//!
//! Beyond nginx, the control thread may end an ejection early when a connect probe succeeds
//! ([`PeerState::end_ejection`]): it moves `checked` back so the next pick is the trial.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam::utils::CachePadded;

use crate::config::{ServerAddr, ServerCfg};
use crate::metrics::PeerCounters;
use crate::upstream::clock::now_ms;

/// A full slow-start ramp, in thousandths of the weight.
pub const FULL_RAMP: u64 = 1000;

/// Envoy's slow start floor: a server starts at 10% of its weight.
const RAMP_FLOOR: u64 = 100;

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
    /// nginx `checked`: when the last failure happened or the last trial request was let
    /// through after `fail_timeout`.
    pub checked_ms: AtomicU64,
    /// Active health check verdict (true = passing). Written by the control thread only.
    pub check_passing: AtomicBool,
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
            check_passing: AtomicBool::new(true),
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

    /// Passive failures counted now (nginx `fails`).
    pub fn fails(&self) -> u32 {
        self.fails.load(Ordering::Relaxed)
    }

    // ---- Passive health ----

    /// Whether passive failures keep the server out now: `fails >= max_fails` within
    /// `fail_timeout` of `checked`. Ignores `single`; see [`PeerState::healthy`].
    #[inline]
    pub fn passively_failed(&self, cfg: &ServerCfg, now_ms: u64) -> bool {
        cfg.max_fails > 0
            && self.fails() >= cfg.max_fails
            && now_ms.saturating_sub(self.checked_ms.load(Ordering::Relaxed))
                <= fail_timeout_ms(cfg)
    }

    /// Health as far as selection cares: the active check passes and passive failures have
    /// not put the server out. `single`: the only server of its upstream, which nginx never
    /// puts out. `down` is separate: it is configuration, not health.
    #[inline]
    pub fn healthy(&self, cfg: &ServerCfg, single: bool, now_ms: u64) -> bool {
        self.is_check_passing() && (single || !self.passively_failed(cfg, now_ms))
    }

    /// A pick chose this server: more than `fail_timeout` after `checked` it becomes the
    /// trial (`checked = now`), whose success will clear the failures.
    #[inline]
    pub fn admit_trial(&self, cfg: &ServerCfg, now_ms: u64) {
        let checked = self.checked_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(checked) > fail_timeout_ms(cfg) {
            self.checked_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    /// A failed exchange (nginx `NGX_PEER_FAILED`). Returns the failure count when this
    /// failure puts the server out: the one that reaches `max_fails` (exactly one worker
    /// sees it), or a failed trial past it.
    pub fn record_failure(&self, cfg: &ServerCfg, single: bool, now_ms: u64) -> Option<u32> {
        let trial = self.trial_since_failure();
        let fails = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
        self.accessed_ms.store(now_ms, Ordering::Relaxed);
        self.checked_ms.store(now_ms, Ordering::Relaxed);
        let max = cfg.max_fails;
        let out = max > 0 && !single && (fails == max || (fails > max && trial));
        out.then_some(fails)
    }

    /// A successful exchange: clears the failures if a trial went through since the last
    /// failure (nginx: `accessed < checked`).
    #[inline]
    pub fn record_success(&self) {
        if self.trial_since_failure() && self.fails() > 0 {
            self.fails.store(0, Ordering::Relaxed);
        }
    }

    fn trial_since_failure(&self) -> bool {
        self.accessed_ms.load(Ordering::Relaxed) < self.checked_ms.load(Ordering::Relaxed)
    }

    /// A connect probe reached a server that passive failures keep out: end the ejection
    /// early by moving `checked` back past `fail_timeout`, so that the next pick is nginx's
    /// single trial request (which clears the failures if it succeeds and puts the server
    /// out again if it fails). Clearing `fails` outright instead would send every worker's
    /// traffic at a server that accepts connections but does not answer. Returns whether
    /// the server was out (and starts its slow-start ramp then).
    pub fn end_ejection(&self, cfg: &ServerCfg, now_ms: u64) -> bool {
        if !self.passively_failed(cfg, now_ms) {
            return false;
        }
        let long_ago = now_ms.saturating_sub(fail_timeout_ms(cfg) + 1);
        self.checked_ms.store(long_ago, Ordering::Relaxed);
        self.up_since_ms.store(now_ms, Ordering::Relaxed);
        true
    }

    // ---- Active health check verdict (written by the control thread) ----

    /// The active health check's verdict (true when there is no check).
    #[inline]
    pub fn is_check_passing(&self) -> bool {
        self.check_passing.load(Ordering::Relaxed)
    }

    /// The check counted enough failures: the server is out until it passes again.
    pub fn check_went_down(&self) {
        self.check_passing.store(false, Ordering::Relaxed);
    }

    /// The check counted enough passes: the server is back, its passive failures are
    /// cleared (the check is the better-informed verdict) and its slow-start ramp begins.
    pub fn check_came_up(&self, now_ms: u64) {
        self.fails.store(0, Ordering::Relaxed);
        self.up_since_ms.store(now_ms, Ordering::Relaxed);
        self.check_passing.store(true, Ordering::Relaxed);
    }

    /// A reload removed the check: its verdict goes with it. Returns whether the server was
    /// out by it (and starts its slow-start ramp then); passive failures stay.
    pub fn check_dropped(&self, now_ms: u64) -> bool {
        if self.is_check_passing() {
            return false;
        }
        self.up_since_ms.store(now_ms, Ordering::Relaxed);
        self.check_passing.store(true, Ordering::Relaxed);
        true
    }

    // ---- Slow start ----

    /// The slow-start ramp in thousandths of the weight ([`FULL_RAMP`] when done or off):
    /// Envoy's `max(10%, t^(1/aggression))` with aggression 1 (linear), `t` the share of
    /// `slow_start` elapsed since the server last came up.
    #[inline]
    pub fn ramp_permille(&self, cfg: &ServerCfg, now_ms: u64) -> u64 {
        let ramp = cfg.slow_start.as_millis() as u64;
        if ramp == 0 {
            return FULL_RAMP;
        }
        let t = now_ms.saturating_sub(self.up_since_ms.load(Ordering::Relaxed));
        if t >= ramp {
            return FULL_RAMP;
        }
        (t * FULL_RAMP / ramp).max(RAMP_FLOOR)
    }
}

fn fail_timeout_ms(cfg: &ServerCfg) -> u64 {
    cfg.fail_timeout.as_millis() as u64
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::upstream::bench_support::server;
    use crate::upstream::clock::EPOCH_MS;

    /// A server as nginx defaults it (max_fails 1, fail_timeout 10 s), `max_fails` set.
    fn cfg(max_fails: u32) -> ServerCfg {
        let mut s = server(1, 1);
        s.max_fails = max_fails;
        s
    }

    /// A time early in the process's life: the clock has just started.
    const T0: u64 = EPOCH_MS + 5;

    #[test]
    fn a_server_that_never_failed_is_healthy_from_the_first_millisecond() {
        let st = PeerState::new(0);
        let c = cfg(1);
        assert!(st.healthy(&c, false, T0));
        assert!(!st.passively_failed(&c, T0));
    }

    #[test]
    fn max_fails_failures_put_it_out_for_fail_timeout() {
        let (st, c) = (PeerState::new(0), cfg(3));
        assert_eq!(st.record_failure(&c, false, T0), None);
        assert_eq!(st.record_failure(&c, false, T0 + 1), None);
        assert!(st.healthy(&c, false, T0 + 2));
        assert_eq!(
            st.record_failure(&c, false, T0 + 2),
            Some(3),
            "the third puts it out"
        );
        assert!(!st.healthy(&c, false, T0 + 3));
        // Out until fail_timeout (10 s) after the last failure, inclusive.
        assert!(!st.healthy(&c, false, T0 + 2 + 10_000));
        assert!(st.healthy(&c, false, T0 + 2 + 10_001));
        // Not a sliding window: the count is not decayed by time.
        assert_eq!(st.fails(), 3);
    }

    #[test]
    fn the_trial_after_fail_timeout_clears_the_failures_if_it_succeeds() {
        let (st, c) = (PeerState::new(0), cfg(1));
        assert_eq!(st.record_failure(&c, false, T0), Some(1));
        // A success that was not a trial (a request picked before the failure) changes
        // nothing: accessed == checked.
        st.record_success();
        assert_eq!(st.fails(), 1);
        let later = T0 + 10_001;
        assert!(st.healthy(&c, false, later));
        st.admit_trial(&c, later);
        // Other workers see the trial's `checked`: out again until it resolves.
        assert!(!st.healthy(&c, false, later + 1));
        st.record_success();
        assert_eq!(st.fails(), 0);
        assert!(st.healthy(&c, false, later + 1));
    }

    #[test]
    fn a_failed_trial_puts_it_out_again_and_says_so() {
        let (st, c) = (PeerState::new(0), cfg(2));
        st.record_failure(&c, false, T0);
        assert_eq!(st.record_failure(&c, false, T0), Some(2));
        let later = T0 + 20_000;
        st.admit_trial(&c, later);
        assert_eq!(st.record_failure(&c, false, later + 5), Some(3));
        assert!(!st.healthy(&c, false, later + 6));
        // A failure of a request picked before the trial: counted, not announced again.
        assert_eq!(st.record_failure(&c, false, later + 7), None);
    }

    #[test]
    fn admit_trial_moves_checked_only_after_fail_timeout() {
        let (st, c) = (PeerState::new(0), cfg(1));
        st.record_failure(&c, false, T0);
        st.admit_trial(&c, T0 + 10_000);
        assert_eq!(st.checked_ms.load(Ordering::Relaxed), T0);
        st.admit_trial(&c, T0 + 10_001);
        assert_eq!(st.checked_ms.load(Ordering::Relaxed), T0 + 10_001);
    }

    #[test]
    fn max_fails_zero_and_single_servers_are_never_put_out() {
        let st = PeerState::new(0);
        for _ in 0..5 {
            assert_eq!(st.record_failure(&cfg(0), false, T0), None);
        }
        assert!(st.healthy(&cfg(0), false, T0));
        let st = PeerState::new(1);
        assert_eq!(st.record_failure(&cfg(1), true, T0), None);
        assert!(st.healthy(&cfg(1), true, T0));
        assert!(!st.healthy(&cfg(1), false, T0), "the same state in a group");
    }

    #[test]
    fn a_connect_probe_makes_the_next_pick_the_trial_even_right_after_start() {
        let (st, c) = (PeerState::new(0), cfg(3));
        for _ in 0..3 {
            st.record_failure(&c, false, T0);
        }
        // Within the first fail_timeout of the process's life.
        assert!(st.end_ejection(&c, T0 + 100));
        assert!(st.healthy(&c, false, T0 + 100));
        assert_eq!(st.up_since_ms.load(Ordering::Relaxed), T0 + 100);
        // The next pick is the trial; its failure puts the server out at once.
        st.admit_trial(&c, T0 + 101);
        assert_eq!(st.record_failure(&c, false, T0 + 102), Some(4));
        assert!(!st.healthy(&c, false, T0 + 103));
        // A server that is not out is left alone.
        let fresh = PeerState::new(1);
        assert!(!fresh.end_ejection(&c, T0));
        assert_eq!(fresh.checked_ms.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_check_verdict_gates_health_and_recovery_clears_failures() {
        let (st, c) = (PeerState::new(0), cfg(1));
        st.check_went_down();
        assert!(!st.healthy(&c, true, T0), "even a single server");
        st.record_failure(&c, false, T0);
        st.check_came_up(T0 + 50);
        assert_eq!(st.fails(), 0);
        assert!(st.healthy(&c, false, T0 + 51));
        assert_eq!(st.up_since_ms.load(Ordering::Relaxed), T0 + 50);
        // A dropped check lifts its verdict but not passive failures.
        st.check_went_down();
        st.record_failure(&c, false, T0 + 60);
        assert!(st.check_dropped(T0 + 70));
        assert!(!st.check_dropped(T0 + 71));
        assert!(st.is_check_passing());
        assert!(!st.healthy(&c, false, T0 + 72));
    }

    #[test]
    fn slow_start_ramps_from_ten_percent() {
        let st = PeerState::new(0);
        let mut c = cfg(1);
        assert_eq!(st.ramp_permille(&c, T0), FULL_RAMP, "off");
        c.slow_start = Duration::from_secs(10);
        // Never came up (up_since 0): long ago, full weight.
        assert_eq!(st.ramp_permille(&c, T0), FULL_RAMP);
        st.up_since_ms.store(T0, Ordering::Relaxed);
        assert_eq!(st.ramp_permille(&c, T0), 100);
        assert_eq!(st.ramp_permille(&c, T0 + 500), 100);
        assert_eq!(st.ramp_permille(&c, T0 + 5_000), 500);
        assert_eq!(st.ramp_permille(&c, T0 + 10_000), FULL_RAMP);
    }
}
