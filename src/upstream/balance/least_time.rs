//! least_time (beyond nginx): power of two choices on peak-EWMA response time.
//!
//! Two distinct weighted random draws (as `random_two`, but never the same server twice:
//! the point is to compare two servers); the cost of each is its decayed peak-EWMA
//! response time times `active + 1`, and the cheaper wins. Peak-EWMA (Finagle, linkerd,
//! tower): a sample above the estimate replaces it at once, so a slowing server is avoided
//! immediately; a lower one pulls it down with weight `1 - exp(-dt / tau)`. Reads decay the
//! estimate toward zero with the time since the last sample, so a server that went slow once
//! and stopped being picked is tried again within a few `tau` instead of starving.
//!
//! A server with no sample yet is costed with the other candidate's estimate: it competes
//! on `active` alone, so a new server gets tried without flooding it. Samples come from
//! [`Selector::observe`](super::Selector::observe), lock-free on the shared `PeerState`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::gate::{Gate, Skips};
use super::random_two::draw_two;
use super::rng::Rng;
use super::tried::Tried;
use crate::upstream::snapshot::Upstream;
use crate::upstream::state::PeerState;

/// Decay time constant: linkerd and tower use 10 s.
const TAU_MS: f64 = 10_000.0;

/// Feeds one response time into `st`'s peak-EWMA.
pub(crate) fn observe(st: &PeerState, response_time: Duration, now_ms: u64) {
    let sample = (response_time.as_micros() as u64).max(1);
    let at = st.ewma_at_ms.load(Ordering::Relaxed);
    let _ = st
        .ewma_us
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
            Some(if cur == 0 || sample >= cur {
                sample
            } else {
                let w = (-(now_ms.saturating_sub(at) as f64) / TAU_MS).exp();
                ((cur as f64 * w + sample as f64 * (1.0 - w)) as u64).max(1)
            })
        });
    st.ewma_at_ms.store(now_ms, Ordering::Relaxed);
}

/// The estimate decayed to `now_ms`, in microseconds; `None` before the first sample.
pub(crate) fn estimate(st: &PeerState, now_ms: u64) -> Option<f64> {
    let cur = st.ewma_us.load(Ordering::Relaxed);
    if cur == 0 {
        return None;
    }
    let dt = now_ms.saturating_sub(st.ewma_at_ms.load(Ordering::Relaxed));
    Some(if dt == 0 {
        cur as f64
    } else {
        cur as f64 * (-(dt as f64) / TAU_MS).exp()
    })
}

/// Picks among the primaries of `up`; `None` sends the request to round robin.
pub(crate) fn pick(
    up: &Upstream,
    rng: &mut Rng,
    tried: &Tried,
    gate: Gate,
    skips: &mut Skips,
) -> Option<usize> {
    let (a, b) = draw_two(up, true, rng, tried, gate, skips)?;
    let Some(b) = b else { return Some(a) };
    let peers = up.primary_peers();
    let (sa, sb) = (&peers[a].state, &peers[b].state);
    let (ea, eb) = match (estimate(sa, gate.now_ms), estimate(sb, gate.now_ms)) {
        (Some(x), Some(y)) => (x, y),
        (Some(x), None) => (x, x),
        (None, Some(y)) => (y, y),
        (None, None) => (1.0, 1.0),
    };
    let ca = ea * (sa.active() as f64 + 1.0);
    let cb = eb * (sb.active() as f64 + 1.0);
    Some(if cb < ca { b } else { a })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use super::*;
    use crate::config::Balance;

    #[test]
    fn peak_ewma_takes_peaks_and_decays() {
        let st = PeerState::new(0);
        observe(&st, Duration::from_millis(10), 1000);
        assert_eq!(st.ewma_us.load(Ordering::Relaxed), 10_000);
        observe(&st, Duration::from_millis(100), 1000);
        assert_eq!(st.ewma_us.load(Ordering::Relaxed), 100_000);
        // 10 s later a 10 ms sample: 100 e^-1 + 10 (1 - e^-1) = 43.1 ms.
        observe(&st, Duration::from_millis(10), 11_000);
        let v = st.ewma_us.load(Ordering::Relaxed);
        assert!((42_500..43_700).contains(&v), "{v}");
        // Read-time decay: 10 s without samples, e^-1 of it.
        let e = estimate(&st, 21_000).unwrap();
        assert!((e - v as f64 / std::f64::consts::E).abs() < 100.0, "{e}");
    }

    #[test]
    fn least_time_prefers_the_faster_server() {
        let up = upstream(&upstream_cfg(
            Balance::LeastTime,
            vec![server(1, 1), server(2, 1)],
        ));
        let mut sel = test_selector(&up, 9);
        sel.observe(&up, 0, Duration::from_millis(100), 1);
        sel.observe(&up, 1, Duration::from_millis(10), 1);
        for _ in 0..50 {
            let i = pick_once(&mut sel, &up, &input()).unwrap();
            release(&up.peers[i]);
            assert_eq!(i, 1);
        }
        // Held requests: the fast one takes about 10 for each one the slow one takes.
        for _ in 0..110 {
            pick_once(&mut sel, &up, &input()).unwrap();
        }
        let (slow, fast) = (up.peers[0].state.active(), up.peers[1].state.active());
        assert!(fast >= 95 && slow >= 5, "slow {slow} fast {fast}");
    }

    #[test]
    fn least_time_tries_a_server_without_samples() {
        let up = upstream(&upstream_cfg(
            Balance::LeastTime,
            vec![server(1, 1), server(2, 1), server(3, 1)],
        ));
        let mut sel = test_selector(&up, 9);
        sel.observe(&up, 0, Duration::from_millis(5), 1);
        sel.observe(&up, 1, Duration::from_millis(5), 1);
        let mut new_picked = 0;
        for _ in 0..100 {
            let i = pick_once(&mut sel, &up, &input()).unwrap();
            release(&up.peers[i]);
            new_picked += (i == 2) as u32;
        }
        assert!(new_picked > 10, "{new_picked}");
    }
}
