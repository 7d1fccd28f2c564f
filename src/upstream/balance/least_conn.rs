//! nginx's least_conn (`ngx_http_upstream_get_least_conn_peer`).
//!
//! The server with the lowest `active / weight` wins, compared by cross-multiplication
//! (`a.active * b.weight < b.active * a.weight`) so that no division rounds. `active` is the
//! shared `PeerState::active`, so the count is global across workers, like nginx with a
//! `zone`. Several servers tied at the lowest ratio are broken by a smooth round robin pass
//! among just those servers, starting from the first of them, as nginx does.

use super::gate::{Gate, Skips};
use super::round_robin::RrWeights;
use super::tried::Tried;
use crate::upstream::snapshot::Peer;

/// Picks among the primaries `peers`; `None` when none is usable.
pub(crate) fn pick(
    weights: &mut [RrWeights],
    peers: &[Peer],
    tried: &Tried,
    gate: Gate,
    skips: &mut Skips,
) -> Option<usize> {
    // First pass: the lowest ratio, and whether several share it.
    let mut best: Option<(usize, u64, u64)> = None; // (index, active, weight)
    let mut many = false;
    for (i, peer) in peers.iter().enumerate() {
        if tried.has(i) || !gate.admits(peer, skips) {
            continue;
        }
        let active = peer.state.active() as u64;
        let weight = gate.weight(peer);
        match best {
            Some((_, ba, bw)) if active * bw > ba * weight => {}
            Some((_, ba, bw)) if active * bw == ba * weight => many = true,
            _ => {
                best = Some((i, active, weight));
                many = false;
            }
        }
    }
    let (first, ba, bw) = best?;
    if !many {
        return Some(first);
    }
    // Second pass: smooth round robin among the tied, from the first of them. Counts are
    // re-read; a server whose count moved meanwhile simply drops out of the tie.
    let mut chosen = first;
    let mut chosen_current = i64::MIN;
    let mut total = 0i64;
    for (i, peer) in peers.iter().enumerate().skip(first) {
        if tried.has(i) || !gate.admits(peer, skips) {
            continue;
        }
        if peer.state.active() as u64 * bw != ba * gate.weight(peer) {
            continue;
        }
        let w = &mut weights[i];
        total += w.step(peer, &gate);
        if chosen_current == i64::MIN || w.current > chosen_current {
            chosen = i;
            chosen_current = w.current;
        }
    }
    if chosen_current != i64::MIN {
        weights[chosen].current -= total;
    }
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::super::testing::*;
    use super::super::*;
    use crate::config::Balance;

    #[test]
    fn least_conn_picks_lowest_active_per_weight() {
        let cfg = upstream_cfg(
            Balance::LeastConn,
            vec![server(1, 1), server(2, 3), server(3, 1)],
        );
        let up = upstream(&cfg);
        let mut sel = test_selector(&up, 1);
        // 2/1, 3/3, 2/1: server b (ratio 1) beats a and c (ratio 2).
        up.peers[0].state.active.store(2, Ordering::Relaxed);
        up.peers[1].state.active.store(3, Ordering::Relaxed);
        up.peers[2].state.active.store(2, Ordering::Relaxed);
        assert_eq!(pick_once(&mut sel, &up, &input()), Ok(1));
        // Now 2/1, 4/3, 1/1: c has the lowest.
        up.peers[2].state.active.store(1, Ordering::Relaxed);
        assert_eq!(pick_once(&mut sel, &up, &input()), Ok(2));
    }

    #[test]
    fn least_conn_ties_go_round_robin() {
        let cfg = upstream_cfg(
            Balance::LeastConn,
            vec![server(1, 1), server(2, 1), server(3, 1)],
        );
        let up = upstream(&cfg);
        let mut sel = test_selector(&up, 1);
        // All idle and released after each pick: every pick is a three-way tie.
        let seq: Vec<usize> = (0..6)
            .map(|_| {
                let i = pick_once(&mut sel, &up, &input()).unwrap();
                release(&up.peers[i]);
                i
            })
            .collect();
        assert_eq!(seq, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_conn_spreads_held_requests_by_weight() {
        let cfg = upstream_cfg(Balance::LeastConn, vec![server(1, 2), server(2, 1)]);
        let up = upstream(&cfg);
        let mut sel = test_selector(&up, 1);
        // Requests that stay active: 2:1 by weight.
        for _ in 0..30 {
            pick_once(&mut sel, &up, &input()).unwrap();
        }
        assert_eq!(up.peers[0].state.active(), 20);
        assert_eq!(up.peers[1].state.active(), 10);
    }
}
