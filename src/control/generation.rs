//! Configuration generations: the one place that publishes a configuration to the workers,
//! says which generation runs now, and turns a reload into "the next generation, and what
//! changed".
//!
//! A generation ([`Published`]) is a validated configuration together with everything built
//! from it once (the upstream snapshot with its selection tables, the routing table), so a
//! request never mixes two configurations. Workers read the number per request (one relaxed
//! load of a line written once per reload) and clone the `Arc` only when it moved.
//!
//! A reload is computed, not just swapped in (as sozu's `ConfigState::diff`): the changes
//! from the running generation are logged one event per change ([`diff`](super::diff)), the
//! live state of every server that stays is carried over by the registry, and the state of
//! servers that left is forgotten.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::diff::{self, Change};
use crate::config::{Config, ServerAddr};
use crate::proxy::route::Routes;
use crate::tls::TlsTable;
use crate::upstream::snapshot::Snapshot;
use crate::upstream::state::Registry;

/// What workers load per request: the upstream snapshot and the routing table of one
/// configuration generation, published together so a request never mixes two configs.
#[derive(Debug)]
pub struct Published {
    pub snapshot: Snapshot,
    pub routes: Routes,
    /// The TLS listen addresses' certificates and settings (rebuilt for every generation
    /// from the process's ticket keys, so sessions resume across reloads).
    pub tls: TlsTable,
}

impl Published {
    pub fn build(config: Arc<Config>, registry: &Registry, generation: u64) -> Published {
        let routes = Routes::build(&config);
        let tls = TlsTable::for_config(&config);
        Published {
            snapshot: Snapshot::build(config, registry, generation),
            routes,
            tls,
        }
    }

    pub fn config(&self) -> &Config {
        &self.snapshot.config
    }

    /// This generation's number: 1 at start, one more per successful reload.
    pub fn generation(&self) -> u64 {
        self.snapshot.generation
    }
}

/// The published generation and what outlives generations (each server's live state).
pub struct Generations {
    published: ArcSwap<Published>,
    /// Equal to `published.load().generation()` once a store is visible; read per request
    /// (a relaxed load of a rarely written line) so that the `ArcSwap` is only touched when
    /// something changed.
    number: AtomicU64,
    /// Hands out the live state of each (upstream, server), so a server kept across a
    /// reload keeps its counters and health.
    registry: Registry,
    /// The configuration the process started with: settings that only a restart applies
    /// (workers, io, admin) are compared against it, not against the last reload.
    started: Arc<Config>,
}

impl Generations {
    /// Generation 1, on `config` (already validated), with one counter shard per worker.
    pub fn start(config: Config, workers: usize) -> Generations {
        let registry = Registry::with_workers(workers);
        let started = Arc::new(config);
        let first = Published::build(started.clone(), &registry, 1);
        Generations {
            published: ArcSwap::from_pointee(first),
            number: AtomicU64::new(1),
            registry,
            started,
        }
    }

    /// The generation running now.
    pub fn current(&self) -> Arc<Published> {
        self.published.load_full()
    }

    /// The number of the generation running now (cheap: for a per-request staleness check).
    #[inline]
    pub fn number(&self) -> u64 {
        self.number.load(Ordering::Acquire)
    }

    /// The configuration the process started with.
    pub fn started(&self) -> &Config {
        &self.started
    }

    /// Makes `next` (already validated) the running generation: logs what changed, one
    /// event per change, then publishes it to every worker. Callers serialise reloads.
    /// Returns the new generation's number and the changes.
    pub fn reload(&self, next: Config) -> (u64, Vec<Change>) {
        let old = self.current();
        let mut changes = diff::restart_only(&self.started, &next);
        changes.extend(diff::diff(old.config(), &next));
        for change in &changes {
            change.log();
        }
        let number = old.generation() + 1;
        let published = Published::build(Arc::new(next), &self.registry, number);
        let keep: Vec<(String, ServerAddr)> = published
            .snapshot
            .upstreams
            .iter()
            .flat_map(|u| {
                u.peers
                    .iter()
                    .map(|p| (u.cfg.name.clone(), p.cfg.addr.clone()))
            })
            .collect();
        self.publish(published);
        // Servers that left start fresh if they come back.
        self.registry
            .retain(&|u, a| keep.iter().any(|(ku, ka)| ku == u && ka == a));
        tracing::info!(
            generation = number,
            changes = changes.len(),
            "configuration reloaded"
        );
        (number, changes)
    }

    fn publish(&self, next: Published) {
        let number = next.generation();
        self.published.store(Arc::new(next));
        self.number.store(number, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Balance;
    use crate::upstream::bench_support::{config, server, upstream_cfg};

    #[test]
    fn a_reload_publishes_the_next_generation_and_keeps_servers_that_stay() {
        let cfg = |servers| config(vec![upstream_cfg(Balance::RoundRobin, servers)]);
        let g = Generations::start(cfg(vec![server(1, 1), server(2, 1)]), 2);
        assert_eq!(g.number(), 1);
        let kept = g.current().snapshot.upstreams[0].peers[0].state.clone();
        let gone = g.current().snapshot.upstreams[0].peers[1].state.clone();
        let (n, changes) = g.reload(cfg(vec![server(1, 3), server(3, 1)]));
        assert_eq!((n, g.number(), g.current().generation()), (2, 2, 2));
        assert_eq!(changes.len(), 3, "{changes:?}");
        let now = g.current();
        let peers = &now.snapshot.upstreams[0].peers;
        assert!(
            Arc::ptr_eq(&peers[0].state, &kept),
            "server 1 keeps its state"
        );
        assert!(!Arc::ptr_eq(&peers[1].state, &gone));
        // Server 2 left: added back, it starts fresh.
        let (n, _) = g.reload(cfg(vec![server(1, 3), server(2, 1)]));
        assert_eq!(n, 3);
        let back = &g.current().snapshot.upstreams[0].peers[1].state;
        assert!(!Arc::ptr_eq(back, &gone));
    }
}
