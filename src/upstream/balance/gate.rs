//! Which servers a pick may consider (`Gate`), shared by every method: `down`, health
//! (the rules live with the server's state), `max_conns`, panic mode, and the weight as the
//! slow-start ramp has it.

use crate::upstream::snapshot::Peer;
use crate::upstream::state::FULL_RAMP;

/// Weights are kept in thousandths internally so that slow start can ramp a weight of 1:
/// the ramp is in thousandths. Scaling every weight by the same constant leaves nginx's
/// round robin sequence unchanged.
pub(crate) const WEIGHT_SCALE: u64 = FULL_RAMP;

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
        if !self.panic && !peer.healthy(self.single, self.now_ms) {
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
        peer.cfg.weight as u64 * peer.state.ramp_permille(&peer.cfg, self.now_ms)
    }
}
