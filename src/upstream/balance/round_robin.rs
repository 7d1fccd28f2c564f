//! nginx's smooth weighted round robin (`ngx_http_upstream_get_peer`).
//!
//! Each pass adds every usable server's effective weight to its current weight, picks the
//! highest current weight (the first on a tie) and subtracts the total from it. Weights
//! {5,1,1} give a a b a c a a. A failure lowers the effective weight by `weight / max_fails`;
//! it climbs back by one per pass.
//!
//! Weights are in thousandths ([`WEIGHT_SCALE`]) so that slow start can ramp them; a pass
//! adds the lower of the effective weight and the ramped weight. With no slow start this is
//! nginx's sequence exactly, every quantity multiplied by the same constant.

use super::gate::{Gate, Skips, WEIGHT_SCALE};
use super::tried::Tried;
use crate::upstream::snapshot::Peer;

/// One server's worker-local round robin weights, in thousandths of a weight unit.
#[derive(Debug, Clone, Copy)]
pub struct RrWeights {
    pub current: i64,
    pub effective: i64,
}

impl RrWeights {
    pub fn new(weight: u32) -> RrWeights {
        RrWeights {
            current: 0,
            effective: (weight as u64 * WEIGHT_SCALE) as i64,
        }
    }

    /// One pass of the smooth round robin over this server: returns what it adds to the
    /// total. Shared with least_conn's tie break.
    pub(crate) fn step(&mut self, peer: &Peer, gate: &Gate) -> i64 {
        let full = (peer.cfg.weight as u64 * WEIGHT_SCALE) as i64;
        let ramped = gate.weight(peer) as i64;
        let ew = self.effective.min(ramped);
        self.current += ew;
        if self.effective < full {
            self.effective += WEIGHT_SCALE as i64;
        }
        ew
    }
}

/// Picks among `peers` (whose indexes in the upstream start at `base`); `None` when none is
/// usable.
pub(crate) fn pick(
    weights: &mut [RrWeights],
    peers: &[Peer],
    base: usize,
    tried: &Tried,
    gate: Gate,
    skips: &mut Skips,
) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut best_current = i64::MIN;
    let mut total = 0i64;
    for (i, (peer, w)) in peers.iter().zip(weights.iter_mut()).enumerate() {
        if tried.has(base + i) || !gate.admits(peer, skips) {
            continue;
        }
        total += w.step(peer, &gate);
        if best.is_none() || w.current > best_current {
            best = Some(i);
            best_current = w.current;
        }
    }
    let b = best?;
    weights[b].current -= total;
    Some(base + b)
}
