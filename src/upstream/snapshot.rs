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
                state: registry.peer(&cfg.name, s.addr),
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
