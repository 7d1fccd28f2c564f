//! Choosing a server for one request.
//!
//! `Selector` is worker-local (one per worker thread): it holds the mutable parts of the
//! methods that nginx keeps per worker (smooth round robin's current/effective weights) and
//! a cheap RNG. What all workers must agree on (active requests, passive failures, health,
//! response-time EWMA) lives in the shared `PeerState` atomics. Picking never locks and
//! never allocates: everything that can be computed ahead (cumulative weights, the ketama
//! ring) is computed once per snapshot in [`Precomputed`].
//!
//! A pick walks the primaries with the upstream's method (one file each), falls back to
//! round robin over the primaries where nginx does (hash methods after 20 tries, random
//! draws that found nothing), then walks the backups with round robin, as nginx does with
//! its `peers->next` group. Unlike nginx, backups work with every method.
//!
//! Beyond nginx, shared by every method:
//! - slow start (`ServerCfg::slow_start`): a server's weight ramps from 10% to 100%
//!   ([`slow_start_permille`]). Weighted methods that choose by weight (round robin,
//!   least_conn, random_two_least_conn, least_time) use the ramped weight; ip_hash and hash
//!   keep the configured weight, because there the weight decides which keys a server owns
//!   and a ramp would move keys between servers on every tick.
//! - panic mode (`UpstreamCfg::panic_threshold`, [`in_panic`]).

mod hash;
mod ip_hash;
mod least_conn;
mod least_time;
mod random_two;
mod round_robin;

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::config::{Balance, UpstreamCfg};
use crate::upstream::snapshot::{Peer, Snapshot, Upstream};

pub use hash::{ring_owner, RingPoint};
pub use round_robin::RrWeights;

/// Weights are kept in thousandths internally so that slow start can ramp a weight of 1.
/// Scaling every weight by the same constant leaves nginx's round robin sequence unchanged.
pub(crate) const WEIGHT_SCALE: u64 = 1000;

/// Envoy's slow start floor: a server starts at 10% of its weight.
const SLOW_START_MIN_PERMILLE: u64 = 100;

/// Selection tables computed once per snapshot.
#[derive(Debug, Default)]
pub struct Precomputed {
    /// Sum of primary weights (nginx `total_weight`).
    pub primary_weight: u64,
    /// `cum_weight[i]` = sum of the configured weights of primaries `0..=i`: ip_hash and hash
    /// find the peer nginx's subtracting walk finds by binary search, random draws use it as
    /// their weighted table.
    pub cum_weight: Vec<u64>,
    /// The ketama ring of the primaries (`consistent = true` only), sorted by hash,
    /// de-duplicated.
    pub ring: Vec<RingPoint>,
    /// Some primary has `slow_start`: the weighted methods look at the clock.
    pub slow_start: bool,
}

impl Precomputed {
    pub fn build(cfg: &UpstreamCfg, peers: &[Peer], primaries: usize) -> Precomputed {
        let prim = &peers[..primaries];
        let cum_weight: Vec<u64> = prim
            .iter()
            .scan(0u64, |acc, p| {
                *acc += p.cfg.weight as u64;
                Some(*acc)
            })
            .collect();
        let ring = if cfg.balance == Balance::Hash && cfg.consistent {
            hash::build_ring(prim)
        } else {
            Vec::new()
        };
        Precomputed {
            primary_weight: cum_weight.last().copied().unwrap_or(0),
            cum_weight,
            ring,
            slow_start: prim.iter().any(|p| !p.cfg.slow_start.is_zero()),
        }
    }

    /// The primary that owns `w` (< `primary_weight`) in nginx's walk
    /// `while w >= peer.weight { w -= peer.weight; peer = next }`.
    pub(crate) fn weighted_index(&self, w: u64) -> usize {
        self.cum_weight.partition_point(|&c| c <= w)
    }
}

/// What about the request a method may look at.
#[derive(Debug, Clone, Copy)]
pub struct PickInput<'a> {
    pub client_ip: IpAddr,
    /// The evaluated `hash` key (`balance = "hash"` only; empty otherwise).
    pub hash_key: &'a [u8],
}

/// Why no server could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    /// Every server is down, failed or already tried: nginx's "no live upstreams" (502).
    #[error("no live upstreams")]
    NoLive,
    /// Every usable server is at `max_conns` (503).
    #[error("every server is at max_conns")]
    AllFull,
}

/// The servers already tried for one request (nginx's `tried` bitmap). Reused across the
/// requests of a connection; the first 64 servers live inline, so only an upstream of more
/// than 64 servers ever allocates.
#[derive(Debug, Default)]
pub struct Tried {
    first: u64,
    rest: Vec<u64>,
}

impl Tried {
    pub fn reset(&mut self, peers: usize) {
        self.first = 0;
        if peers > 64 {
            self.rest.clear();
            self.rest.resize((peers - 64).div_ceil(64), 0);
        } else if !self.rest.is_empty() {
            self.rest.clear();
        }
    }

    pub fn has(&self, i: usize) -> bool {
        if i < 64 {
            return self.first & (1 << i) != 0;
        }
        self.rest
            .get((i - 64) / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn set(&mut self, i: usize) {
        if i < 64 {
            self.first |= 1 << i;
        } else if let Some(w) = self.rest.get_mut((i - 64) / 64) {
            *w |= 1 << (i % 64);
        }
    }

    pub fn count(&self) -> usize {
        self.first.count_ones() as usize
            + self
                .rest
                .iter()
                .map(|w| w.count_ones() as usize)
                .sum::<usize>()
    }
}

/// Worker-local selection state for every upstream of the current snapshot.
#[derive(Debug)]
pub struct Selector {
    generation: u64,
    locals: Vec<Local>,
    /// Tables for an upstream of an older generation: a request that began before a reload
    /// keeps its snapshot (and may retry on it) after another request of this worker has
    /// synced the selector to the new one. Rare; rebuilt when a different upstream asks.
    stale: Option<Local>,
    rng: Rng,
}

/// Worker-local state of one upstream.
#[derive(Debug, Default)]
pub(crate) struct Local {
    /// Smooth round robin weights of every peer (primaries then backups); least_conn breaks
    /// its ties with the same weights, as nginx does.
    pub(crate) rr: Vec<RrWeights>,
    /// Address of the `Upstream` these tables were built for. The snapshot the selector
    /// is synced to is kept alive by the worker for as long as the selector uses it, so no
    /// other upstream can share the address meanwhile.
    origin: usize,
}

impl Local {
    fn new(up: &Upstream) -> Local {
        Local {
            origin: up as *const Upstream as usize,
            rr: up
                .peers
                .iter()
                .map(|p| RrWeights::new(p.cfg.weight))
                .collect(),
        }
    }
}

/// `Selector::local` over split borrows, so that the rng stays usable beside the tables.
fn local_in<'a>(
    locals: &'a mut [Local],
    stale: &'a mut Option<Local>,
    up: &Upstream,
) -> &'a mut Local {
    let origin = up as *const Upstream as usize;
    let fits = |l: &Local| l.origin == origin && l.rr.len() == up.peers.len();
    if locals.get(up.index).is_some_and(fits) {
        return &mut locals[up.index];
    }
    if !stale.as_ref().is_some_and(fits) {
        *stale = Some(Local::new(up));
    }
    stale.get_or_insert_with(|| Local::new(up))
}

/// xorshift64*: cheap, worker-local, good enough to spread random choices.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift rather than a division.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Why a server was passed over during a walk; decides 502 vs 503 when nothing is left.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Skips {
    pub(crate) full: bool,
}

/// The per-pick facts every method's filter needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gate {
    pub(crate) now_ms: u64,
    /// The only server of its upstream, which nginx never marks failed.
    pub(crate) single: bool,
    /// Panic mode: health and passive failures are ignored.
    pub(crate) panic: bool,
}

impl Gate {
    /// Whether `peer` may take a request now (ignoring `tried`).
    pub(crate) fn admits(&self, peer: &Peer, skips: &mut Skips) -> bool {
        if peer.cfg.down {
            return false;
        }
        if !self.panic && !is_healthy(peer, self.now_ms, self.single) {
            return false;
        }
        if peer.cfg.max_conns > 0 && peer.state.active() >= peer.cfg.max_conns {
            skips.full = true;
            return false;
        }
        true
    }

    /// The server's weight in thousandths, ramped by slow start.
    pub(crate) fn weight(&self, peer: &Peer) -> u64 {
        peer.cfg.weight as u64 * slow_start_permille(peer, self.now_ms)
    }
}

impl Selector {
    pub fn new(seed: u64) -> Selector {
        Selector {
            generation: u64::MAX,
            locals: Vec::new(),
            stale: None,
            rng: Rng(seed | 1),
        }
    }

    /// Rebuilds the local tables when a new snapshot has been published.
    pub fn sync(&mut self, snap: &Snapshot) {
        if self.generation == snap.generation {
            return;
        }
        self.generation = snap.generation;
        self.locals = snap.upstreams.iter().map(Local::new).collect();
        self.stale = None;
    }

    /// The tables for `up`: the synced ones, or scratch ones when `up` belongs to another
    /// generation than the one synced (see `stale`).
    fn local(&mut self, up: &Upstream) -> &mut Local {
        local_in(&mut self.locals, &mut self.stale, up)
    }

    /// Picks a server of `up` not yet in `tried`, and counts the request as active on it.
    /// The caller must call [`release`] when the exchange with that server ends.
    pub fn pick(
        &mut self,
        up: &Upstream,
        input: &PickInput<'_>,
        tried: &mut Tried,
        now_ms: u64,
    ) -> Result<usize, PickError> {
        let mut skips = Skips::default();
        let primary = Gate {
            now_ms,
            single: up.peers.len() == 1,
            panic: in_panic(up, now_ms),
        };
        if up.peers.len() == 1 && up.primaries == 1 {
            // A lone server (nginx's `peers->single`): no method has anything to choose, so
            // only whether it may take the request is asked; the walk below would reach the
            // same answer through the method's tables.
            let peer = &up.peers[0];
            if !tried.has(0) && primary.admits(peer, &mut skips) {
                if acquire(peer) {
                    admit_probe(peer, now_ms);
                    return Ok(0);
                }
                skips.full = true;
                tried.set(0);
            }
            return Err(if skips.full {
                PickError::AllFull
            } else {
                PickError::NoLive
            });
        }
        let backup = Gate {
            now_ms,
            single: false,
            panic: false,
        };
        // A lost race for a max_conns slot marks that server tried and walks again, so
        // the loop ends after at most `peers` rounds.
        for _ in 0..=up.peers.len() {
            let found = self
                .pick_primary(up, input, tried, primary, &mut skips)
                .or_else(|| {
                    let local = self.local(up);
                    round_robin::pick(
                        &mut local.rr[up.primaries..],
                        up.backup_peers(),
                        up.primaries,
                        tried,
                        backup,
                        &mut skips,
                    )
                });
            let Some(i) = found else { break };
            let peer = &up.peers[i];
            if acquire(peer) {
                admit_probe(peer, now_ms);
                return Ok(i);
            }
            skips.full = true;
            tried.set(i);
        }
        Err(if skips.full {
            PickError::AllFull
        } else {
            PickError::NoLive
        })
    }

    /// The upstream's method over the primaries, then round robin over them where the method
    /// gives up (nginx's `get_rr_peer` fallback).
    fn pick_primary(
        &mut self,
        up: &Upstream,
        input: &PickInput<'_>,
        tried: &Tried,
        gate: Gate,
        skips: &mut Skips,
    ) -> Option<usize> {
        if up.primaries == 0 {
            return None;
        }
        let local = local_in(&mut self.locals, &mut self.stale, up);
        let rr = &mut local.rr[..up.primaries];
        let found = match up.cfg.balance {
            Balance::RoundRobin => None,
            Balance::LeastConn => least_conn::pick(rr, up.primary_peers(), tried, gate, skips),
            Balance::IpHash => ip_hash::pick(up, input.client_ip, tried, gate, skips),
            Balance::Hash if up.cfg.consistent => {
                hash::pick_consistent(up, input.hash_key, tried, gate, skips)
            }
            Balance::Hash => hash::pick(up, input.hash_key, tried, gate, skips),
            Balance::RandomTwoLeastConn => random_two::pick(up, &mut self.rng, tried, gate, skips),
            Balance::LeastTime => least_time::pick(up, &mut self.rng, tried, gate, skips),
        };
        found.or_else(|| round_robin::pick(rr, up.primary_peers(), 0, tried, gate, skips))
    }

    /// Records a failed exchange with `up.peers[i]` (nginx `NGX_PEER_FAILED`).
    pub fn failed(&mut self, up: &Upstream, i: usize, now_ms: u64) {
        let peer = &up.peers[i];
        let st = &peer.state;
        // A probe was let through since the last failure (nginx: `accessed < checked`).
        let probing =
            st.accessed_ms.load(Ordering::Relaxed) < st.checked_ms.load(Ordering::Relaxed);
        let fails = st.fails.fetch_add(1, Ordering::Relaxed) + 1;
        // The failure that reaches max_fails is the transition: exactly one worker sees it.
        // A failed probe past it is the server going out again.
        let max = peer.cfg.max_fails;
        if max > 0 && up.peers.len() > 1 && (fails == max || (fails > max && probing)) {
            tracing::warn!(
                "upstream {} server {} temporarily disabled: {fails} failures within fail_timeout",
                up.cfg.name,
                peer.cfg.name
            );
        }
        st.accessed_ms.store(now_ms, Ordering::Relaxed);
        st.checked_ms.store(now_ms, Ordering::Relaxed);
        // max_fails = 0: failures are not counted against the weight either.
        if let Some(drop) = peer.cfg.weight.checked_div(peer.cfg.max_fails) {
            if let Some(w) = self.local(up).rr.get_mut(i) {
                w.effective -= (drop as u64 * WEIGHT_SCALE) as i64;
                w.effective = w.effective.max(0);
            }
        }
    }

    /// Records a successful exchange: a probe that succeeded clears the failures.
    pub fn succeeded(&mut self, up: &Upstream, i: usize) {
        let st = &up.peers[i].state;
        if st.accessed_ms.load(Ordering::Relaxed) < st.checked_ms.load(Ordering::Relaxed) {
            st.fails.store(0, Ordering::Relaxed);
        }
    }

    /// Feeds one response time of `up.peers[i]` (request sent to response head received)
    /// into its peak-EWMA, which `least_time` reads. Lock-free; any method may call it.
    pub fn observe(&self, up: &Upstream, i: usize, response_time: Duration, now_ms: u64) {
        least_time::observe(&up.peers[i].state, response_time, now_ms);
    }

    /// xorshift64*: cheap, worker-local, good enough to spread random choices.
    pub fn next_random(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

/// Ends the exchange counted by a successful [`Selector::pick`].
pub fn release(peer: &Peer) {
    peer.state.active.fetch_sub(1, Ordering::Relaxed);
}

/// Counts one more active request on `peer`, unless that would pass `max_conns`.
fn acquire(peer: &Peer) -> bool {
    let active = &peer.state.active;
    match peer.cfg.max_conns {
        0 => {
            active.fetch_add(1, Ordering::Relaxed);
            true
        }
        max => active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| {
                (a < max).then_some(a + 1)
            })
            .is_ok(),
    }
}

/// nginx: a server picked more than `fail_timeout` after its last check becomes the probe
/// (`checked = now`); if this request succeeds, `succeeded` clears its failures.
fn admit_probe(peer: &Peer, now_ms: u64) {
    let st = &peer.state;
    let checked = st.checked_ms.load(Ordering::Relaxed);
    if now_ms.saturating_sub(checked) > peer.cfg.fail_timeout.as_millis() as u64 {
        st.checked_ms.store(now_ms, Ordering::Relaxed);
    }
}

/// Whether `peer` may take a request as far as configuration and health go (`down`, the
/// active check, passive failures; not `max_conns`). `single`: the only server of its
/// upstream. For the control thread and the admin endpoint; picks use [`Gate::admits`].
pub fn usable(peer: &Peer, now_ms: u64, single: bool) -> bool {
    !peer.cfg.down && is_healthy(peer, now_ms, single)
}

/// Health as far as selection cares: the active check says up and passive failures have not
/// disabled it (`fails >= max_fails` within `fail_timeout` of the last check). `down` is
/// separate: it is configuration, not health. `single`: the only server of its upstream,
/// which nginx never marks failed.
pub fn is_healthy(peer: &Peer, now_ms: u64, single: bool) -> bool {
    let st = &peer.state;
    if !st.is_healthy() {
        return false;
    }
    if !single && peer.cfg.max_fails > 0 {
        let fails = st.fails.load(Ordering::Relaxed);
        if fails >= peer.cfg.max_fails
            && now_ms.saturating_sub(st.checked_ms.load(Ordering::Relaxed))
                <= peer.cfg.fail_timeout.as_millis() as u64
        {
            return false;
        }
    }
    true
}

/// Slow start ramp in thousandths of the weight: Envoy's `max(10%, t^(1/aggression))` with
/// aggression 1 (linear), `t` the share of `slow_start` elapsed since `up_since_ms`.
pub fn slow_start_permille(peer: &Peer, now_ms: u64) -> u64 {
    let ramp = peer.cfg.slow_start.as_millis() as u64;
    if ramp == 0 {
        return WEIGHT_SCALE;
    }
    let since = peer.state.up_since_ms.load(Ordering::Relaxed);
    if since == 0 {
        return WEIGHT_SCALE;
    }
    let t = now_ms.saturating_sub(since);
    if t >= ramp {
        return WEIGHT_SCALE;
    }
    (t * WEIGHT_SCALE / ramp).max(SLOW_START_MIN_PERMILLE)
}

/// Panic mode (Envoy's panic threshold): the share of healthy primaries (healthy by the
/// active check, not passively failed) among the primaries not marked `down` is below
/// `panic_threshold` percent, and no backup is healthy to take over (backups come first, as
/// Envoy spills to the next priority before panicking). In panic, health and failures are
/// ignored and every non-`down` primary gets traffic, so a flapping health check cannot pile
/// the whole load onto the few servers it still believes in.
pub fn in_panic(up: &Upstream, now_ms: u64) -> bool {
    let Some(threshold) = up.cfg.panic_threshold else {
        return false;
    };
    let single = up.peers.len() == 1;
    let (mut total, mut healthy) = (0u64, 0u64);
    for p in up.primary_peers().iter().filter(|p| !p.cfg.down) {
        total += 1;
        healthy += is_healthy(p, now_ms, single) as u64;
    }
    if total == 0 || healthy * 100 >= total * threshold as u64 {
        return false;
    }
    !up.backup_peers()
        .iter()
        .any(|p| !p.cfg.down && is_healthy(p, now_ms, false))
}

#[doc(hidden)]
pub mod bench_support {
    //! Builders for selection tests and benches: upstreams without a config file or sockets.
    //! Not a stable API.
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::config::*;
    use crate::upstream::snapshot::{Snapshot, Upstream};
    use crate::upstream::state::Registry;

    /// `127.0.0.1:port` with nginx's defaults.
    pub fn server(port: u16, weight: u32) -> ServerCfg {
        ServerCfg {
            addr: ServerAddr::Inet(format!("127.0.0.1:{port}").parse().unwrap()),
            name: format!("127.0.0.1:{port}"),
            weight,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            max_conns: 0,
            backup: false,
            down: false,
            slow_start: Duration::ZERO,
        }
    }

    pub fn upstream_cfg(balance: Balance, servers: Vec<ServerCfg>) -> UpstreamCfg {
        UpstreamCfg {
            name: "test".into(),
            balance,
            hash: None,
            consistent: false,
            keepalive: 32,
            keepalive_requests: 1000,
            keepalive_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(1),
            send_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            next_upstream: NextUpstream {
                error: true,
                timeout: true,
                ..Default::default()
            },
            next_upstream_tries: 0,
            next_upstream_timeout: Duration::ZERO,
            servers,
            health_check: None,
            hash_balance_factor: None,
            ip_hash_prefix: IpHashPrefix::default(),
            panic_threshold: None,
            retry_budget: None,
            queue: 0,
            queue_timeout: Duration::from_secs(5),
        }
    }

    pub fn upstream(cfg: &UpstreamCfg) -> Upstream {
        Upstream::build(0, cfg, &Registry::new())
    }

    /// A snapshot (generation 1) holding just `upstreams`, for `Selector::sync`.
    pub fn snapshot(upstreams: Vec<UpstreamCfg>) -> Snapshot {
        let config = Config {
            path: PathBuf::from("bench.toml"),
            runtime: RuntimeCfg {
                workers: 1,
                pin_workers: false,
                shutdown_timeout: Duration::from_secs(1),
                io: IoMode::Auto,
                max_connections: 65536,
                temp_path: PathBuf::from("/tmp/ringlb"),
                pid_file: None,
            },
            admin: None,
            servers: Vec::new(),
            upstreams,
        };
        Snapshot::build(Arc::new(config), &Registry::new(), 1)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Test helpers on top of [`bench_support`](super::bench_support).
    pub use super::bench_support::*;
    use super::*;

    /// A selector already synced to the single upstream `up` (index 0).
    pub fn test_selector(up: &Upstream, seed: u64) -> Selector {
        let mut s = Selector::new(seed);
        s.generation = 0;
        s.locals = vec![Local::new(up)];
        s
    }

    pub fn input() -> PickInput<'static> {
        PickInput {
            client_ip: "127.0.0.1".parse().unwrap(),
            hash_key: b"",
        }
    }

    /// One pick with a fresh `tried`, at t = 1 ms. The request stays active.
    pub fn pick_once(
        sel: &mut Selector,
        up: &Upstream,
        input: &PickInput<'_>,
    ) -> Result<usize, PickError> {
        let mut tried = Tried::default();
        tried.reset(up.peers.len());
        sel.pick(up, input, &mut tried, 1)
    }
}

#[cfg(test)]
mod tests;
