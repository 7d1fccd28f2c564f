//! What the admin endpoint reports about each server, read from the published snapshot and
//! the shared live state: one place that decides "up", "down", "backup" or "disabled", so
//! that `/metrics` and `/status` never disagree.

use crate::metrics::{self, PeerCounters, CODE_SLOTS};
use crate::upstream::{Peer, Upstream};

/// A server's state as `/status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Healthy primary.
    Up,
    /// Failed its active health check or is passively failed (`fails >= max_fails` within
    /// `fail_timeout`).
    Down,
    /// Healthy backup (used only while every primary is unavailable).
    Backup,
    /// `down = true` in the configuration.
    Disabled,
}

impl ServerState {
    pub fn of(up: &Upstream, peer: &Peer, now_ms: u64) -> ServerState {
        if peer.cfg.down {
            ServerState::Disabled
        } else if !peer.healthy(up.is_single(), now_ms) {
            ServerState::Down
        } else if peer.cfg.backup {
            ServerState::Backup
        } else {
            ServerState::Up
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Up => "up",
            ServerState::Down => "down",
            ServerState::Backup => "backup",
            ServerState::Disabled => "disabled",
        }
    }

    /// `ringlb_upstream_up`: can take traffic now.
    pub fn is_up(self) -> bool {
        matches!(self, ServerState::Up | ServerState::Backup)
    }
}

/// One server's counters summed over the worker shards.
pub struct Totals {
    pub codes: [u64; CODE_SLOTS],
    /// Per-bucket counts (not cumulative), `LATENCY_BOUNDS_S` then +Inf.
    pub buckets: [u64; metrics::LATENCY_BOUNDS_S.len() + 1],
    pub latency_sum_us: u64,
    pub failures: u64,
    pub retries: u64,
}

impl Totals {
    pub fn of(peer: &Peer) -> Totals {
        let shards: &[_] = &peer.state.shards;
        let sum = |f: &dyn Fn(&PeerCounters) -> &std::sync::atomic::AtomicU64| {
            metrics::sum(shards, |s| f(s))
        };
        Totals {
            codes: std::array::from_fn(|i| sum(&|s| &s.codes[i])),
            buckets: std::array::from_fn(|i| sum(&|s| &s.latency_buckets[i])),
            latency_sum_us: sum(&|s| &s.latency_sum_us),
            failures: sum(&|s| &s.failures),
            retries: sum(&|s| &s.retries),
        }
    }

    /// Responses relayed from this server.
    pub fn requests(&self) -> u64 {
        self.codes.iter().sum()
    }

    /// Responses in a status class (`class` = 1..=5).
    pub fn class(&self, class: u16) -> u64 {
        let tracked = metrics::TRACKED_CODES
            .iter()
            .zip(&self.codes)
            .filter(|(c, _)| **c / 100 == class)
            .map(|(_, n)| n)
            .sum::<u64>();
        tracked + self.codes[metrics::TRACKED_CODES.len() + class as usize - 1]
    }
}
