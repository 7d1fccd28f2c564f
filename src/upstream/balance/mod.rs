//! Choosing a server for one request.
//!
//! `Selector` is worker-local (one per worker thread): it holds the mutable parts of the
//! methods that nginx keeps per worker (smooth round robin's current/effective weights) and
//! a cheap RNG. What all workers must agree on (active requests, passive failures, health,
//! response-time EWMA) lives in the shared `PeerState` atomics. Picking never locks and
//! never allocates: everything that can be computed ahead (cumulative weights, the ketama
//! ring) is computed once per snapshot in the upstream's `Tables`.
//!
//! A pick walks the primaries with the upstream's method (one file each), falls back to
//! round robin over the primaries where nginx does (hash methods after 20 tries, random
//! draws that found nothing), then walks the backups with round robin, as nginx does with
//! its `peers->next` group. Unlike nginx, backups work with every method.
//!
//! Beyond nginx, shared by every method:
//! - slow start (`ServerCfg::slow_start`): a server's weight ramps from 10% to 100%
//!   ([`PeerState::ramp_permille`](crate::upstream::state::PeerState::ramp_permille)).
//!   Weighted methods that choose by weight (round robin,
//!   least_conn, random_two_least_conn, least_time) use the ramped weight; ip_hash and hash
//!   keep the configured weight, because there the weight decides which keys a server owns
//!   and a ramp would move keys between servers on every tick.
//! - panic mode (`UpstreamCfg::panic_threshold`, [`Upstream::in_panic`]).
//!
//! Passive health (nginx's max_fails / fail_timeout) is the server state's: a pick asks
//! `PeerState::healthy` and lets the trial through with `admit_trial`; `failed` and
//! `succeeded` below report the outcome of an exchange to it.

mod gate;
mod hash;
mod ip_hash;
mod least_conn;
mod least_time;
mod random_two;
mod rng;
mod round_robin;
mod tried;

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::config::Balance;
use crate::upstream::snapshot::{Peer, Snapshot, Upstream};
use gate::{Gate, Skips, WEIGHT_SCALE};
use rng::Rng;
use round_robin::RrWeights;

pub use tried::Tried;

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

impl Selector {
    pub fn new(seed: u64) -> Selector {
        Selector {
            generation: u64::MAX,
            locals: Vec::new(),
            stale: None,
            rng: Rng::new(seed),
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
            single: up.is_single(),
            panic: up.in_panic(now_ms),
        };
        if up.peers.len() == 1 && up.primaries == 1 {
            // A lone server (nginx's `peers->single`): no method has anything to choose, so
            // only whether it may take the request is asked; the walk below would reach the
            // same answer through the method's tables.
            let peer = &up.peers[0];
            if !tried.has(0) && primary.admits(peer, &mut skips) {
                if acquire(peer) {
                    peer.state.admit_trial(&peer.cfg, now_ms);
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
                peer.state.admit_trial(&peer.cfg, now_ms);
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

    /// Records a failed exchange with `up.peers[i]` (nginx `NGX_PEER_FAILED`): a passive
    /// failure in the shared state, and a lower effective weight in this worker's round
    /// robin (by `weight / max_fails`; it climbs back by one per pass).
    pub fn failed(&mut self, up: &Upstream, i: usize, now_ms: u64) {
        let peer = &up.peers[i];
        if let Some(fails) = peer.state.record_failure(&peer.cfg, up.is_single(), now_ms) {
            tracing::warn!(
                upstream = %up.cfg.name,
                server = %peer.cfg.name,
                fails,
                fail_timeout = ?peer.cfg.fail_timeout,
                "temporarily disabled"
            );
        }
        // max_fails = 0: failures are not counted against the weight either.
        if let Some(drop) = peer.cfg.weight.checked_div(peer.cfg.max_fails) {
            if let Some(w) = self.local(up).rr.get_mut(i) {
                w.effective -= (drop as u64 * WEIGHT_SCALE) as i64;
                w.effective = w.effective.max(0);
            }
        }
    }

    /// Records a successful exchange: a trial that succeeded clears the failures.
    pub fn succeeded(&mut self, up: &Upstream, i: usize) {
        up.peers[i].state.record_success();
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

#[cfg(test)]
pub(crate) mod testing {
    //! Test helpers on top of [`bench_support`](crate::upstream::bench_support).
    use super::*;
    pub use crate::upstream::bench_support::*;

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
