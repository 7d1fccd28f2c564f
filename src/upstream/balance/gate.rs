//! Which servers a pick may consider (`Gate`), shared by every method: `down`, health,
//! passive failures, `max_conns`, panic mode, and the slow-start ramp of a server's weight.

use std::sync::atomic::Ordering;

use crate::upstream::snapshot::{Peer, Upstream};

/// Weights are kept in thousandths internally so that slow start can ramp a weight of 1.
/// Scaling every weight by the same constant leaves nginx's round robin sequence unchanged.
pub(crate) const WEIGHT_SCALE: u64 = 1000;

/// Envoy's slow start floor: a server starts at 10% of its weight.
const SLOW_START_MIN_PERMILLE: u64 = 100;

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
