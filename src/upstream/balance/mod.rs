//! Choosing a server for one request.
//!
//! `Selector` is worker-local (one per worker thread): it holds the mutable parts of the
//! methods that nginx keeps per worker (smooth round robin's current/effective weights) and
//! a cheap RNG. What all workers must agree on (active requests, passive failures, health)
//! lives in the shared `PeerState` atomics. Picking never locks and never allocates.
//!
//! A pick walks the primaries with the upstream's method, then the backups (round robin), as
//! nginx does with its `peers->next` group.

mod round_robin;

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use crate::config::UpstreamCfg;
use crate::upstream::snapshot::{Peer, Snapshot, Upstream};

pub use round_robin::RrWeights;

/// Selection tables computed once per snapshot.
#[derive(Debug, Default)]
pub struct Precomputed {
    /// Sum of primary weights.
    pub primary_weight: u64,
}

impl Precomputed {
    pub fn build(_cfg: &UpstreamCfg, peers: &[Peer], primaries: usize) -> Precomputed {
        Precomputed {
            primary_weight: peers[..primaries].iter().map(|p| p.cfg.weight as u64).sum(),
        }
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
/// requests of a connection, so it allocates only when a connection first meets an upstream
/// of more than 64 servers.
#[derive(Debug, Default)]
pub struct Tried {
    words: Vec<u64>,
}

impl Tried {
    pub fn reset(&mut self, peers: usize) {
        let n = peers.div_ceil(64).max(1);
        self.words.clear();
        self.words.resize(n, 0);
    }

    pub fn has(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn set(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// Worker-local selection state for every upstream of the current snapshot.
#[derive(Debug)]
pub struct Selector {
    generation: u64,
    locals: Vec<Local>,
    rng: u64,
}

/// Worker-local state of one upstream.
#[derive(Debug, Default)]
pub(crate) struct Local {
    pub(crate) rr: Vec<RrWeights>,
}

/// Why a server was passed over during a walk; decides 502 vs 503 when nothing is left.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Skips {
    pub(crate) full: bool,
}

impl Selector {
    pub fn new(seed: u64) -> Selector {
        Selector {
            generation: u64::MAX,
            locals: Vec::new(),
            rng: seed | 1,
        }
    }

    /// Rebuilds the local tables when a new snapshot has been published.
    pub fn sync(&mut self, snap: &Snapshot) {
        if self.generation == snap.generation {
            return;
        }
        self.generation = snap.generation;
        self.locals = snap
            .upstreams
            .iter()
            .map(|u| Local {
                rr: u
                    .peers
                    .iter()
                    .map(|p| RrWeights::new(p.cfg.weight))
                    .collect(),
            })
            .collect();
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
        let _ = input;
        let local = &mut self.locals[up.index];
        let mut skips = Skips::default();
        let single = up.peers.len() == 1;
        // A lost race for a max_conns slot marks that server tried and walks again, so
        // the loop ends after at most `peers` rounds.
        for _ in 0..=up.peers.len() {
            let found = round_robin::pick(
                &mut local.rr[..up.primaries],
                up.primary_peers(),
                0,
                tried,
                now_ms,
                single,
                &mut skips,
            )
            .or_else(|| {
                round_robin::pick(
                    &mut local.rr[up.primaries..],
                    up.backup_peers(),
                    up.primaries,
                    tried,
                    now_ms,
                    false,
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

    /// Records a failed exchange with `up.peers[i]` (nginx `NGX_PEER_FAILED`).
    pub fn failed(&mut self, up: &Upstream, i: usize, now_ms: u64) {
        let peer = &up.peers[i];
        let st = &peer.state;
        st.fails.fetch_add(1, Ordering::Relaxed);
        st.accessed_ms.store(now_ms, Ordering::Relaxed);
        st.checked_ms.store(now_ms, Ordering::Relaxed);
        if peer.cfg.max_fails > 0 {
            if let Some(w) = self.locals.get_mut(up.index).and_then(|l| l.rr.get_mut(i)) {
                w.effective -= (peer.cfg.weight / peer.cfg.max_fails) as i64;
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

    /// xorshift64*: cheap, worker-local, good enough to spread random choices.
    pub fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
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

/// Whether `peer` may take a request now (ignoring `tried`). `single`: the only server of its
/// upstream, which nginx never marks failed.
pub(crate) fn usable(peer: &Peer, now_ms: u64, single: bool, skips: &mut Skips) -> bool {
    if peer.cfg.down || !peer.state.is_healthy() {
        return false;
    }
    let st = &peer.state;
    if !single && peer.cfg.max_fails > 0 {
        let fails = st.fails.load(Ordering::Relaxed);
        if fails >= peer.cfg.max_fails
            && now_ms.saturating_sub(st.checked_ms.load(Ordering::Relaxed))
                <= peer.cfg.fail_timeout.as_millis() as u64
        {
            return false;
        }
    }
    if peer.cfg.max_conns > 0 && st.active() >= peer.cfg.max_conns {
        skips.full = true;
        return false;
    }
    true
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for selection tests: upstreams without a config file or sockets.
    use std::time::Duration;

    use crate::config::*;
    use crate::upstream::snapshot::Upstream;
    use crate::upstream::state::Registry;

    pub fn server(port: u16, weight: u32) -> ServerCfg {
        ServerCfg {
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
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
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::config::Balance;

    fn selector_for(up: &Upstream) -> Selector {
        let mut s = Selector::new(7);
        s.generation = 0;
        s.locals = vec![Local {
            rr: up
                .peers
                .iter()
                .map(|p| RrWeights::new(p.cfg.weight))
                .collect(),
        }];
        s
    }

    fn input() -> PickInput<'static> {
        PickInput {
            client_ip: "127.0.0.1".parse().unwrap(),
            hash_key: b"",
        }
    }

    #[test]
    fn smooth_round_robin_matches_nginx_sequence() {
        let cfg = upstream_cfg(
            Balance::RoundRobin,
            vec![server(1, 5), server(2, 1), server(3, 1)],
        );
        let up = upstream(&cfg);
        let mut sel = selector_for(&up);
        let mut tried = Tried::default();
        let seq: String = (0..7)
            .map(|_| {
                tried.reset(up.peers.len());
                let i = sel.pick(&up, &input(), &mut tried, 1).unwrap();
                release(&up.peers[i]);
                (b'a' + i as u8) as char
            })
            .collect();
        assert_eq!(seq, "aabacaa");
    }

    #[test]
    fn backup_only_when_primaries_unusable() {
        let mut b = server(3, 1);
        b.backup = true;
        let cfg = upstream_cfg(Balance::RoundRobin, vec![server(1, 1), server(2, 1), b]);
        let up = upstream(&cfg);
        let mut sel = selector_for(&up);
        let mut tried = Tried::default();
        tried.reset(3);
        tried.set(0);
        tried.set(1);
        assert_eq!(sel.pick(&up, &input(), &mut tried, 1), Ok(2));
        tried.set(2);
        assert_eq!(
            sel.pick(&up, &input(), &mut tried, 1),
            Err(PickError::NoLive)
        );
    }

    #[test]
    fn failed_server_is_skipped_until_fail_timeout_then_probed() {
        let cfg = upstream_cfg(Balance::RoundRobin, vec![server(1, 1), server(2, 1)]);
        let up = upstream(&cfg);
        let mut sel = selector_for(&up);
        let mut tried = Tried::default();
        sel.failed(&up, 0, 1000);
        for _ in 0..5 {
            tried.reset(2);
            assert_eq!(sel.pick(&up, &input(), &mut tried, 2000), Ok(1));
            release(&up.peers[1]);
        }
        // After fail_timeout (10 s) server 0 gets one probe; its success clears the failure.
        let mut seen0 = false;
        for _ in 0..4 {
            tried.reset(2);
            let i = sel.pick(&up, &input(), &mut tried, 12_000).unwrap();
            release(&up.peers[i]);
            if i == 0 {
                seen0 = true;
                sel.succeeded(&up, 0);
            }
        }
        assert!(seen0);
        assert_eq!(up.peers[0].state.fails.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn max_conns_gives_all_full() {
        let mut s = server(1, 1);
        s.max_conns = 1;
        let cfg = upstream_cfg(Balance::RoundRobin, vec![s]);
        let up = upstream(&cfg);
        let mut sel = selector_for(&up);
        let mut tried = Tried::default();
        tried.reset(1);
        assert_eq!(sel.pick(&up, &input(), &mut tried, 1), Ok(0));
        tried.reset(1);
        assert_eq!(
            sel.pick(&up, &input(), &mut tried, 1),
            Err(PickError::AllFull)
        );
        release(&up.peers[0]);
        tried.reset(1);
        assert_eq!(sel.pick(&up, &input(), &mut tried, 1), Ok(0));
    }
}
