//! nginx's `random two least_conn` (`ngx_http_upstream_get_random2_peer`).
//!
//! Two weighted random draws among the usable primaries (cumulative weight table from
//! `Tables` and a binary search), the one with the lower `active / weight` wins
//! (cross-multiplied; a tie goes to the second draw, as in nginx). Both draws may land on
//! the same server, which then wins: with idle servers the choice follows the weights
//! exactly. Draws that land on an unusable or already-tried server count as tries; after 20,
//! round robin, as nginx; unlike nginx, when only one usable server was drawn in 20 tries
//! that one is used rather than falling back.
//!
//! Slow start: the table holds the configured weights, so a ramping server's draw is kept
//! with probability `ramp` (rejection sampling), and the comparison uses the ramped weight.

use super::gate::{Gate, Skips, WEIGHT_SCALE};
use super::rng::Rng;
use super::tried::Tried;
use crate::upstream::snapshot::Upstream;

/// nginx gives up drawing after this many unusable draws and uses round robin.
const MAX_TRIES: u32 = 20;

/// Two usable primaries drawn by weight: `(first, second)`, the same one twice unless
/// `distinct`; `second` is `None` when the tries ran out after the first. `None` when no
/// usable primary was drawn.
pub(crate) fn draw_two(
    up: &Upstream,
    distinct: bool,
    rng: &mut Rng,
    tried: &Tried,
    gate: Gate,
    skips: &mut Skips,
) -> Option<(usize, Option<usize>)> {
    let total = up.tables.primary_weight;
    if total == 0 {
        return None;
    }
    let peers = up.primary_peers();
    let mut first: Option<usize> = None;
    for _ in 0..=MAX_TRIES {
        let i = up.tables.weighted_index(rng.below(total));
        if (distinct && first == Some(i)) || tried.has(i) || !gate.admits(&peers[i], skips) {
            continue;
        }
        if up.tables.slow_start {
            let ramp = gate.weight(&peers[i]) / peers[i].cfg.weight.max(1) as u64;
            if ramp < WEIGHT_SCALE && rng.below(WEIGHT_SCALE) >= ramp {
                continue;
            }
        }
        match first {
            None => first = Some(i),
            Some(f) => return Some((f, Some(i))),
        }
    }
    first.map(|f| (f, None))
}

/// Picks among the primaries of `up`; `None` sends the request to round robin.
pub(crate) fn pick(
    up: &Upstream,
    rng: &mut Rng,
    tried: &Tried,
    gate: Gate,
    skips: &mut Skips,
) -> Option<usize> {
    let (a, b) = draw_two(up, false, rng, tried, gate, skips)?;
    let Some(b) = b else { return Some(a) };
    let peers = up.primary_peers();
    let (pa, pb) = (&peers[a], &peers[b]);
    let (ca, cb) = (pa.state.active() as u64, pb.state.active() as u64);
    if cb * gate.weight(pa) > ca * gate.weight(pb) {
        Some(a)
    } else {
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::super::testing::*;
    use super::super::*;
    use crate::config::Balance;

    #[test]
    fn random_two_roughly_follows_weights() {
        let up = upstream(&upstream_cfg(
            Balance::RandomTwoLeastConn,
            vec![server(1, 1), server(2, 2), server(3, 5)],
        ));
        let mut sel = test_selector(&up, 42);
        let mut counts = [0u32; 3];
        for _ in 0..8000 {
            let i = pick_once(&mut sel, &up, &input()).unwrap();
            release(&up.peers[i]);
            counts[i] += 1;
        }
        // Idle servers tie, so the second draw wins: the weights, 1000/2000/5000.
        assert!(counts[0] < counts[1] && counts[1] < counts[2], "{counts:?}");
        assert!((800..1200).contains(&counts[0]), "{counts:?}");
        assert!((4700..5300).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn random_two_prefers_less_loaded() {
        let up = upstream(&upstream_cfg(
            Balance::RandomTwoLeastConn,
            (1..=4).map(|p| server(p, 1)).collect(),
        ));
        let mut sel = test_selector(&up, 42);
        up.peers[0].state.active.store(10, Ordering::Relaxed);
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            let i = pick_once(&mut sel, &up, &input()).unwrap();
            release(&up.peers[i]);
            counts[i] += 1;
        }
        // Only when both draws land on it (1 in 16).
        assert!(counts[0] < 400, "{counts:?}");
        // Held requests even out: 40 more requests leave all four within one of each other.
        up.peers[0].state.active.store(0, Ordering::Relaxed);
        for _ in 0..40 {
            pick_once(&mut sel, &up, &input()).unwrap();
        }
        let a: Vec<u32> = up.peers.iter().map(|p| p.state.active()).collect();
        assert!(
            a.iter().max().unwrap() - a.iter().min().unwrap() <= 4,
            "{a:?}"
        );
    }
}
