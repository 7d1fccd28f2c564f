//! nginx's `hash KEY` and `hash KEY consistent` (`ngx_http_upstream_hash_module.c`).
//!
//! Plain hash (compatible with Cache::Memcached): per try,
//! `h += (crc32([rehash] key) >> 16) & 0x7fff` where `rehash` (the try number, in decimal)
//! is left out on the first try; `w = h % total_weight` and the peer is found by nginx's
//! weight-subtracting walk. An unusable peer means another try; after 20 more, round robin.
//! An empty key goes to round robin at once.
//!
//! Consistent hash (ketama): the ring of the primaries is built once per snapshot
//! (`upstream/ketama.rs`, nginx's ring point for point). A request's `crc32(key)` starts at
//! the first point >= it (wrapping to the first point); an unusable server moves to the next
//! point; after 20 more, round robin. nginx hashes an empty key too here (crc32 = 0), so do we.
//!
//! `hash_balance_factor` (beyond nginx): consistent hashing with bounded loads (Mirrokni et
//! al., as in HAProxy's `hash-balance-factor`). A server whose active requests exceed
//! `factor * (total_active + 1) / n` (n = usable primaries) is passed over and the walk goes
//! on around the ring, so a hot key overflows onto the next servers of its ring walk instead
//! of burying one server. Passing over an overloaded server is not one of the 20 tries.
//!
//! The weights are the configured ones (no slow start ramp): they decide which keys a
//! server owns.

use super::gate::{Gate, Skips};
use super::tried::Tried;
use crate::upstream::ketama::find_point;
use crate::upstream::snapshot::{Peer, Upstream};

/// nginx gives up hashing after this many unusable picks and uses round robin.
const MAX_TRIES: u32 = 20;

/// Plain hash over the primaries of `up`; `None` sends the request to round robin.
pub(crate) fn pick(
    up: &Upstream,
    key: &[u8],
    tried: &Tried,
    gate: Gate,
    skips: &mut Skips,
) -> Option<usize> {
    let total = up.tables.primary_weight;
    if gate.single || key.is_empty() || total == 0 {
        return None;
    }
    let peers = up.primary_peers();
    let mut h = 0u32;
    for rehash in 0..=MAX_TRIES {
        let mut c = crc32fast::Hasher::new();
        if rehash > 0 {
            let mut buf = [0u8; 10];
            c.update(decimal(rehash, &mut buf));
        }
        c.update(key);
        h = h.wrapping_add((c.finalize() >> 16) & 0x7fff);
        let i = up.tables.weighted_index(h as u64 % total);
        if !tried.has(i) && gate.admits(&peers[i], skips) {
            return Some(i);
        }
    }
    None
}

/// `n` in decimal ASCII, written into `buf` without allocating (nginx's `%ui`).
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Consistent hash over the primaries of `up`; `None` sends the request to round robin.
pub(crate) fn pick_consistent(
    up: &Upstream,
    key: &[u8],
    tried: &Tried,
    gate: Gate,
    skips: &mut Skips,
) -> Option<usize> {
    let ring = &up.tables.ring;
    if gate.single || ring.is_empty() {
        return None;
    }
    let peers = up.primary_peers();
    let bound = up
        .cfg
        .hash_balance_factor
        .map(|factor| load_bound(peers, factor, &gate));
    let start = find_point(ring, crc32fast::hash(key));
    let mut tries = 0;
    let mut overloaded: Option<usize> = None;
    // Each server's points are spread around the ring, so a full turn meets every server.
    for step in 0..ring.len() {
        let i = ring[(start + step) % ring.len()].peer as usize;
        if tried.has(i) || !gate.admits(&peers[i], skips) {
            tries += 1;
            if tries > MAX_TRIES {
                break;
            }
            continue;
        }
        match bound {
            Some(b) if peers[i].state.active() as f64 > b => {
                overloaded.get_or_insert(i);
            }
            _ => return Some(i),
        }
    }
    // Every usable server over the bound (possible only while counts move under us): the
    // first one the walk met.
    overloaded
}

/// Bounded load: the most active requests a server may have and still take the key,
/// `factor * (total_active + 1) / n` over the usable primaries.
fn load_bound(peers: &[Peer], factor: f64, gate: &Gate) -> f64 {
    let mut scratch = Skips::default();
    let (mut total, mut n) = (0u64, 0u64);
    for p in peers {
        if gate.admits(p, &mut scratch) {
            total += p.state.active() as u64;
            n += 1;
        }
    }
    factor * (total + 1) as f64 / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use super::*;
    use crate::config::Balance;
    use crate::upstream::ketama::ring_owner;

    fn chash(servers: Vec<crate::config::ServerCfg>) -> Upstream {
        let mut cfg = upstream_cfg(Balance::Hash, servers);
        cfg.consistent = true;
        upstream(&cfg)
    }

    fn pick_key(sel: &mut Selector, up: &Upstream, key: &[u8]) -> usize {
        let inp = PickInput {
            client_ip: "127.0.0.1".parse().unwrap(),
            hash_key: key,
        };
        let i = pick_once(sel, up, &inp).unwrap();
        release(&up.peers[i]);
        i
    }

    #[test]
    fn ketama_unusable_server_walks_to_next_point() {
        let up = chash((1..=5).map(|p| server(p, 1)).collect());
        let mut sel = test_selector(&up, 1);
        let owner = ring_owner(&up.tables.ring, b"/x").unwrap();
        assert_eq!(pick_key(&mut sel, &up, b"/x"), owner);
        up.peers[owner].state.check_went_down();
        let other = pick_key(&mut sel, &up, b"/x");
        assert_ne!(other, owner);
        assert_eq!(pick_key(&mut sel, &up, b"/x"), other);
    }

    #[test]
    fn hash_plain_follows_weights_and_is_stable() {
        let up = upstream(&upstream_cfg(
            Balance::Hash,
            vec![server(1, 1), server(2, 2), server(3, 1)],
        ));
        let mut sel = test_selector(&up, 1);
        let mut counts = [0u32; 3];
        for k in 0..10_000 {
            let key = format!("/obj/{k}");
            let i = pick_key(&mut sel, &up, key.as_bytes());
            assert_eq!(pick_key(&mut sel, &up, key.as_bytes()), i);
            counts[i] += 1;
        }
        assert!((2000..3000).contains(&counts[0]), "{counts:?}");
        assert!((4500..5500).contains(&counts[1]), "{counts:?}");
        assert!((2000..3000).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn hash_plain_known_value_and_rehash() {
        // By hand: crc32("abc") = 0x352441c2; (>> 16) & 0x7fff = 0x3524 = 13604; % 3 = 2.
        assert_eq!(crc32fast::hash(b"abc"), 0x3524_41c2);
        let up = upstream(&upstream_cfg(
            Balance::Hash,
            vec![server(1, 1), server(2, 1), server(3, 1)],
        ));
        let mut sel = test_selector(&up, 1);
        assert_eq!(pick_key(&mut sel, &up, b"abc"), 2);
        // Server 2 tried: h += (crc32("1abc") >> 16) & 0x7fff.
        let second = (13604 + ((crc32fast::hash(b"1abc") >> 16) & 0x7fff)) % 3;
        let mut tried = Tried::default();
        tried.reset(3);
        tried.set(2);
        let inp = PickInput {
            client_ip: "127.0.0.1".parse().unwrap(),
            hash_key: b"abc",
        };
        let got = sel.pick(&up, &inp, &mut tried, 1).unwrap();
        if second != 2 {
            assert_eq!(got, second as usize);
        }
        assert_eq!(decimal(20, &mut [0; 10]), b"20");
        assert_eq!(decimal(0, &mut [0; 10]), b"0");
    }

    #[test]
    fn hash_empty_key_goes_round_robin() {
        let up = upstream(&upstream_cfg(
            Balance::Hash,
            vec![server(1, 1), server(2, 1)],
        ));
        let mut sel = test_selector(&up, 1);
        let seq: Vec<usize> = (0..4).map(|_| pick_key(&mut sel, &up, b"")).collect();
        assert_eq!(seq, vec![0, 1, 0, 1]);
    }

    #[test]
    fn bounded_load_spreads_a_hot_key() {
        let servers: Vec<_> = (1..=4).map(|p| server(p, 1)).collect();
        let mut cfg = upstream_cfg(Balance::Hash, servers.clone());
        cfg.consistent = true;
        let plain = upstream(&cfg);
        cfg.hash_balance_factor = Some(1.25);
        let bounded = upstream(&cfg);
        let inp = PickInput {
            client_ip: "127.0.0.1".parse().unwrap(),
            hash_key: b"/hot",
        };
        // Requests that stay in flight, all for one key.
        let mut sel = test_selector(&plain, 1);
        for _ in 0..100 {
            pick_once(&mut sel, &plain, &inp).unwrap();
        }
        let owner = ring_owner(&plain.tables.ring, b"/hot").unwrap();
        assert_eq!(plain.peers[owner].state.active(), 100);

        let mut sel = test_selector(&bounded, 1);
        for _ in 0..100 {
            pick_once(&mut sel, &bounded, &inp).unwrap();
        }
        let actives: Vec<u32> = bounded.peers.iter().map(|p| p.state.active()).collect();
        // No server above 1.25 x the average (25) + 1.
        assert!(actives.iter().all(|&a| a <= 33), "{actives:?}");
        assert!(actives[owner] >= 25, "{actives:?}");
    }
}
