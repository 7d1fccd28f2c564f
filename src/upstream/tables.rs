//! Selection tables: what the balancing methods read but never change, computed once per
//! snapshot from an upstream's configuration alone (as pingora's `BackendSelection::build`
//! takes only the backends), so building them needs neither the live state nor the snapshot
//! that will hold them.

use crate::config::{Balance, ServerCfg, UpstreamCfg};
use crate::upstream::ketama::{self, RingPoint};

/// Selection tables of one upstream.
#[derive(Debug, Default)]
pub struct Tables {
    /// `servers[..primaries]` are primaries, the rest backups (validation sorts them so).
    pub primaries: usize,
    /// Sum of primary weights (nginx `total_weight`).
    pub primary_weight: u64,
    /// `cum_weight[i]` = sum of the configured weights of primaries `0..=i`: ip_hash and hash
    /// find the peer nginx's subtracting walk finds by binary search, random draws use it as
    /// their weighted table.
    pub cum_weight: Vec<u64>,
    /// The ketama ring of the primaries (`consistent = true` only), sorted by hash,
    /// de-duplicated.
    pub ring: Vec<RingPoint>,
    /// Some primary has `slow_start`: the weighted methods look at the clock.
    pub slow_start: bool,
}

impl Tables {
    pub fn build(cfg: &UpstreamCfg) -> Tables {
        let primaries = primaries(&cfg.servers);
        let prim = &cfg.servers[..primaries];
        let cum_weight: Vec<u64> = prim
            .iter()
            .scan(0u64, |acc, s| {
                *acc += s.weight as u64;
                Some(*acc)
            })
            .collect();
        let ring = if cfg.balance == Balance::Hash && cfg.consistent {
            ketama::build_ring(prim)
        } else {
            Vec::new()
        };
        Tables {
            primaries,
            primary_weight: cum_weight.last().copied().unwrap_or(0),
            cum_weight,
            ring,
            slow_start: prim.iter().any(|s| !s.slow_start.is_zero()),
        }
    }

    /// The primary that owns `w` (< `primary_weight`) in nginx's walk
    /// `while w >= peer.weight { w -= peer.weight; peer = next }`.
    pub fn weighted_index(&self, w: u64) -> usize {
        self.cum_weight.partition_point(|&c| c <= w)
    }
}

/// How many of `servers` (primaries first, then backups) are primaries.
fn primaries(servers: &[ServerCfg]) -> usize {
    servers.iter().take_while(|s| !s.backup).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::bench_support::{server, upstream_cfg};

    #[test]
    fn weighted_index_follows_nginx_walk() {
        // Weights {2,1}: w in {0,1} -> server 0, w = 2 -> server 1.
        let t = Tables::build(&upstream_cfg(
            Balance::IpHash,
            vec![server(1, 2), server(2, 1)],
        ));
        assert_eq!(t.primary_weight, 3);
        assert_eq!(t.weighted_index(0), 0);
        assert_eq!(t.weighted_index(1), 0);
        assert_eq!(t.weighted_index(2), 1);
    }

    #[test]
    fn backups_are_left_out_of_the_tables() {
        let mut b = server(3, 7);
        b.backup = true;
        let mut cfg = upstream_cfg(Balance::Hash, vec![server(1, 1), server(2, 2), b]);
        cfg.consistent = true;
        let t = Tables::build(&cfg);
        assert_eq!(t.primaries, 2);
        assert_eq!(t.primary_weight, 3);
        assert!(t.ring.iter().all(|p| p.peer < 2));
        assert!(!t.slow_start);
    }
}
