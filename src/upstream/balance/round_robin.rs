//! nginx's smooth weighted round robin (`ngx_http_upstream_get_peer`).
//!
//! Each pass adds every usable server's effective weight to its current weight, picks the
//! highest current weight (the first on a tie) and subtracts the total from it. Weights
//! {5,1,1} give a a b a c a a. A failure lowers the effective weight by `weight / max_fails`;
//! it climbs back by one per pass.

use super::{usable, Skips, Tried};
use crate::upstream::snapshot::Peer;

/// One server's worker-local round robin weights.
#[derive(Debug, Clone, Copy)]
pub struct RrWeights {
    pub current: i64,
    pub effective: i64,
}

impl RrWeights {
    pub fn new(weight: u32) -> RrWeights {
        RrWeights {
            current: 0,
            effective: weight as i64,
        }
    }
}

/// Picks among `peers` (whose indexes in the upstream start at `base`); `None` when none is
/// usable.
pub(crate) fn pick(
    weights: &mut [RrWeights],
    peers: &[Peer],
    base: usize,
    tried: &Tried,
    now_ms: u64,
    single: bool,
    skips: &mut Skips,
) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut best_current = i64::MIN;
    let mut total = 0i64;
    for (i, (peer, w)) in peers.iter().zip(weights.iter_mut()).enumerate() {
        if tried.has(base + i) || !usable(peer, now_ms, single, skips) {
            continue;
        }
        let weight = peer.cfg.weight as i64;
        w.current += w.effective;
        total += w.effective;
        if w.effective < weight {
            w.effective += 1;
        }
        if best.is_none() || w.current > best_current {
            best = Some(i);
            best_current = w.current;
        }
    }
    let b = best?;
    weights[b].current -= total;
    Some(base + b)
}
