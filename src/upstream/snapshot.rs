//! The immutable upstream table that workers read through `arc-swap`.
//!
//! A `Snapshot` is built once per configuration generation (start, reload) and whenever the
//! control thread has something new to say; workers `load()` it per request and never lock.
//! Everything that can be computed ahead (weight totals, the ketama ring) is in each
//! upstream's [`Tables`], built from its configuration alone.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::config::{Config, ServerCfg, UpstreamCfg};
use crate::upstream::state::{PeerState, Registry};
use crate::upstream::tables::Tables;

/// One published view of every upstream.
#[derive(Debug)]
pub struct Snapshot {
    /// Bumped on every successful reload.
    pub generation: u64,
    pub config: Arc<Config>,
    /// Same order as `config.upstreams`, so a `Location::upstream` index works on both.
    pub upstreams: Vec<Upstream>,
}

/// One upstream group: its settings, its servers, and its selection tables.
#[derive(Debug)]
pub struct Upstream {
    pub index: usize,
    pub cfg: UpstreamCfg,
    /// Primaries first, then backups (`cfg.servers` order).
    pub peers: Vec<Peer>,
    /// `peers[..primaries]` are primaries, the rest backups.
    pub primaries: usize,
    pub tables: Tables,
    /// Retries in flight across all workers, for `retry_budget`.
    pub retries_in_flight: AtomicU32,
}

/// One server of an upstream.
#[derive(Debug)]
pub struct Peer {
    pub cfg: ServerCfg,
    pub state: Arc<PeerState>,
}

impl Snapshot {
    /// Builds the snapshot for `config`, reusing the live state of servers that were already
    /// known to `registry`.
    pub fn build(config: Arc<Config>, registry: &Registry, generation: u64) -> Snapshot {
        let upstreams = config
            .upstreams
            .iter()
            .enumerate()
            .map(|(index, cfg)| Upstream::build(index, cfg, registry))
            .collect();
        Snapshot {
            generation,
            config,
            upstreams,
        }
    }
}

impl Upstream {
    pub fn build(index: usize, cfg: &UpstreamCfg, registry: &Registry) -> Upstream {
        let peers: Vec<Peer> = cfg
            .servers
            .iter()
            .map(|s| Peer {
                cfg: s.clone(),
                state: registry.peer(&cfg.name, &s.addr),
            })
            .collect();
        let tables = Tables::build(cfg);
        Upstream {
            index,
            cfg: cfg.clone(),
            peers,
            primaries: tables.primaries,
            tables,
            retries_in_flight: AtomicU32::new(0),
        }
    }

    pub fn primary_peers(&self) -> &[Peer] {
        &self.peers[..self.primaries]
    }

    pub fn backup_peers(&self) -> &[Peer] {
        &self.peers[self.primaries..]
    }

    /// The only server of its upstream, which nginx never puts out for its failures.
    #[inline]
    pub fn is_single(&self) -> bool {
        self.peers.len() == 1
    }

    /// Whether some server could take a request now (primaries and backups; `max_conns`
    /// aside): nginx's "no live upstreams" when not.
    pub fn has_live(&self, now_ms: u64) -> bool {
        let single = self.is_single();
        self.peers.iter().any(|p| p.usable(single, now_ms))
    }

    /// Every server is `down` or failing its active check: what ringlb answers 503 to (502
    /// when servers are out for their recent failures instead: unreachable moments ago).
    pub fn all_down(&self) -> bool {
        self.peers
            .iter()
            .all(|p| p.cfg.down || !p.state.is_check_passing())
    }

    /// Panic mode (Envoy's panic threshold): the share of healthy primaries (passing the
    /// active check, not passively failed) among the primaries not marked `down` is below
    /// `panic_threshold` percent, and no backup is healthy to take over (backups come first,
    /// as Envoy spills to the next priority before panicking). In panic, health and failures
    /// are ignored and every non-`down` primary gets traffic, so a flapping health check
    /// cannot pile the whole load onto the few servers it still believes in.
    pub fn in_panic(&self, now_ms: u64) -> bool {
        let Some(threshold) = self.cfg.panic_threshold else {
            return false;
        };
        let single = self.is_single();
        let (mut total, mut healthy) = (0u64, 0u64);
        for p in self.primary_peers().iter().filter(|p| !p.cfg.down) {
            total += 1;
            healthy += p.healthy(single, now_ms) as u64;
        }
        if total == 0 || healthy * 100 >= total * threshold as u64 {
            return false;
        }
        !self.backup_peers().iter().any(|p| p.usable(false, now_ms))
    }
}

impl Peer {
    /// Health as far as selection cares (see [`PeerState::healthy`]). `single`: the only
    /// server of its upstream.
    #[inline]
    pub fn healthy(&self, single: bool, now_ms: u64) -> bool {
        self.state.healthy(&self.cfg, single, now_ms)
    }

    /// Not `down` and healthy: may take a request as far as configuration and health go
    /// (`max_conns` aside).
    #[inline]
    pub fn usable(&self, single: bool, now_ms: u64) -> bool {
        !self.cfg.down && self.healthy(single, now_ms)
    }
}

impl Upstream {
    /// Takes a slot of the retry budget (Envoy's: retries in flight may not pass `ratio` of
    /// the requests in flight, with `min` always allowed); `false` when it is spent. A slot
    /// taken must be given back with [`Upstream::end_retry`].
    pub fn try_begin_retry(&self) -> bool {
        let Some(budget) = self.cfg.retry_budget else {
            return true;
        };
        let active: u64 = self.peers.iter().map(|p| p.state.active() as u64).sum();
        let allowed = ((active as f64 * budget.ratio) as u32).max(budget.min);
        self.retries_in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                (r < allowed).then_some(r + 1)
            })
            .is_ok()
    }

    pub fn end_retry(&self) {
        if self.cfg.retry_budget.is_some() {
            self.retries_in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
