//! nginx's `hash KEY` and `hash KEY consistent` (`ngx_http_upstream_hash_module.c`).
//!
//! Plain hash (compatible with Cache::Memcached): per try,
//! `h += (crc32([rehash] key) >> 16) & 0x7fff` where `rehash` (the try number, in decimal)
//! is left out on the first try; `w = h % total_weight` and the peer is found by nginx's
//! weight-subtracting walk. An unusable peer means another try; after 20 more, round robin.
//! An empty key goes to round robin at once.
//!
//! Consistent hash (ketama): every primary puts `weight * 160` points on a ring, point `j`
//! being `crc32(host "\0" port prev_hash)` with `prev_hash` the previous point (0 for the
//! first) as 4 little-endian bytes; host and port are the server name as written, split at
//! its last ':' (port "80" when there is none, as nginx). The ring is sorted and
//! de-duplicated once per snapshot. A request's `crc32(key)` starts at the first point >= it
//! (wrapping to the first point); an unusable server moves to the next point; after 20 more,
//! round robin. nginx hashes an empty key too here (crc32 = 0), so do we. cloudflare's
//! pingora-ketama reproduces nginx's ring; its nginx-generated vectors are tested below.
//!
//! `hash_balance_factor` (beyond nginx): consistent hashing with bounded loads (Mirrokni et
//! al., as in HAProxy's `hash-balance-factor`). A server whose active requests exceed
//! `factor * (total_active + 1) / n` (n = usable primaries) is passed over and the walk goes
//! on around the ring, so a hot key overflows onto the next servers of its ring walk instead
//! of burying one server. Passing over an overloaded server is not one of the 20 tries.
//!
//! The weights are the configured ones (no slow start ramp): they decide which keys a
//! server owns.

use super::{Gate, Skips, Tried};
use crate::upstream::snapshot::{Peer, Upstream};

/// nginx gives up hashing after this many unusable picks and uses round robin.
const MAX_TRIES: u32 = 20;

/// Ketama points per unit of weight (nginx, libketama).
pub const POINTS_PER_WEIGHT: u32 = 160;

/// One point of the ketama ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingPoint {
    pub hash: u32,
    /// Index of the primary in `Upstream::peers`.
    pub peer: u32,
}

/// nginx's split of a server name into host and port for the ring.
fn host_port(name: &str) -> (&str, &str) {
    if let Some(path) = name.strip_prefix("unix:") {
        return (path, "");
    }
    let digits = name.bytes().rev().take_while(u8::is_ascii_digit).count();
    let colon = name.len() - digits;
    if colon > 0 && name.as_bytes()[colon - 1] == b':' {
        (&name[..colon - 1], &name[colon..])
    } else {
        (name, "80")
    }
}

/// The ketama ring of `primaries`, sorted by hash and de-duplicated.
pub(crate) fn build_ring(primaries: &[Peer]) -> Vec<RingPoint> {
    let total: u64 = primaries.iter().map(|p| p.cfg.weight as u64).sum();
    let mut ring = Vec::with_capacity((total * POINTS_PER_WEIGHT as u64) as usize);
    for (i, peer) in primaries.iter().enumerate() {
        let (host, port) = host_port(&peer.cfg.name);
        let mut base = crc32fast::Hasher::new();
        base.update(host.as_bytes());
        base.update(b"\0");
        base.update(port.as_bytes());
        let mut prev = 0u32;
        for _ in 0..peer.cfg.weight * POINTS_PER_WEIGHT {
            let mut h = base.clone();
            h.update(&prev.to_le_bytes());
            prev = h.finalize();
            ring.push(RingPoint {
                hash: prev,
                peer: i as u32,
            });
        }
    }
    ring.sort_by_key(|p| p.hash);
    ring.dedup_by_key(|p| p.hash);
    ring
}

/// Index of the first ring point >= `hash` (may be `ring.len()`: the caller wraps).
pub(crate) fn find_point(ring: &[RingPoint], hash: u32) -> usize {
    ring.partition_point(|p| p.hash < hash)
}

/// The primary owning `key` on the ring when every server is usable.
pub fn ring_owner(ring: &[RingPoint], key: &[u8]) -> Option<usize> {
    if ring.is_empty() {
        return None;
    }
    let i = find_point(ring, crc32fast::hash(key)) % ring.len();
    Some(ring[i].peer as usize)
}

/// Plain hash over the primaries of `up`; `None` sends the request to round robin.
pub(crate) fn pick(
    up: &Upstream,
    key: &[u8],
    tried: &Tried,
    gate: Gate,
    skips: &mut Skips,
) -> Option<usize> {
    let total = up.pre.primary_weight;
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
        let i = up.pre.weighted_index(h as u64 % total);
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
    let ring = &up.pre.ring;
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
    use std::collections::HashSet;

    use super::super::testing::*;
    use super::super::*;
    use super::*;
    use crate::config::{Balance, ServerAddr};

    fn named(name: &str, weight: u32) -> crate::config::ServerCfg {
        let mut s = server(1, weight);
        s.name = name.to_string();
        s.addr = name.parse().map(ServerAddr::Inet).unwrap_or(s.addr);
        s
    }

    fn chash(servers: Vec<crate::config::ServerCfg>) -> Upstream {
        let mut cfg = upstream_cfg(Balance::Hash, servers);
        cfg.consistent = true;
        upstream(&cfg)
    }

    fn owner_name<'a>(up: &'a Upstream, key: &[u8]) -> &'a str {
        &up.peers[ring_owner(&up.pre.ring, key).unwrap()].cfg.name
    }

    /// The keys `/key/0`..`/key/9999` whose owner differs between two rings: (key, owner in
    /// `from`, owner in `to`).
    fn remapped<'a>(from: &'a Upstream, to: &'a Upstream) -> Vec<(String, &'a str, &'a str)> {
        (0..10_000)
            .map(|k| format!("/key/{k}"))
            .filter_map(|key| {
                let (a, b) = (
                    owner_name(from, key.as_bytes()),
                    owner_name(to, key.as_bytes()),
                );
                (a != b).then_some((key, a, b))
            })
            .collect()
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
    fn ketama_host_port_split_like_nginx() {
        assert_eq!(host_port("10.0.0.1:443"), ("10.0.0.1", "443"));
        assert_eq!(host_port("backend"), ("backend", "80"));
        assert_eq!(host_port("[::1]:7777"), ("[::1]", "7777"));
        assert_eq!(host_port("unix:/tmp/s"), ("/tmp/s", ""));
    }

    #[test]
    fn ketama_matches_pingora_nginx_vectors() {
        let up = chash(vec![named("127.0.0.1:7777", 1), named("127.0.0.1:7778", 1)]);
        for (key, want) in [
            ("/some/path", "127.0.0.1:7778"),
            ("/some/longer/path", "127.0.0.1:7777"),
            ("/sad/zaidoon", "127.0.0.1:7778"),
            ("/g", "127.0.0.1:7777"),
            (
                "/pingora/team/is/cool/and/this/is/a/long/uri",
                "127.0.0.1:7778",
            ),
            ("/i/am/not/confident/in/this/code", "127.0.0.1:7777"),
        ] {
            assert_eq!(owner_name(&up, key.as_bytes()), want, "{key}");
        }
        // pingora-ketama's test-data/sample-nginx-upstream.csv, recorded from nginx with
        // `hash $request_uri consistent` over 10.0.0.1..9:443 weight=100.
        let up = chash(
            (1..=9)
                .map(|i| named(&format!("10.0.0.{i}:443"), 100))
                .collect(),
        );
        for (key, want) in [
            ("/81fa1d251d605775d647b5b55565e71526d4cef6", "10.0.0.7:443"),
            ("/2fec328e6ccdda6a7edf329f9f780e546ea183b4", "10.0.0.5:443"),
            ("/19fb835d90883a6263ec4279c6da184e3f1a79b2", "10.0.0.4:443"),
            ("/da7a88e542f7aaddc074f988164b9df7e5f7fea6", "10.0.0.4:443"),
            ("/8f87cfd8005306643b6528b3d4125cf005139a7e", "10.0.0.5:443"),
            ("/26d2769eab098458bc3e4e641a4b7d8abffd0aea", "10.0.0.6:443"),
            ("/aa5b5323980f2d3e21246212ebd820c3949c1e88", "10.0.0.7:443"),
            ("/d9c4bc3cc4517c629e8f4c911c2fd8baf260ae65", "10.0.0.1:443"),
            ("/28c1c069a2904bb3b3e0f9731b1ff8de9ab7a76d", "10.0.0.4:443"),
            ("/fe5199bdfeee5cd431ae7e9f77f178164f9995a0", "10.0.0.9:443"),
            ("/43992eee187920c5e8695332f71ca6e23ef6ac4b", "10.0.0.3:443"),
            ("/38528aab753a6f32de86b5a7acdbb0c885137a81", "10.0.0.9:443"),
            ("/77766138aaf0c016bdd1f6b996177fc8ca1d2204", "10.0.0.8:443"),
            ("/668fd6d99bfb50b85b0928a8915761be2ca19089", "10.0.0.2:443"),
        ] {
            assert_eq!(owner_name(&up, key.as_bytes()), want, "{key}");
        }
    }

    #[test]
    fn ketama_points_are_160_per_weight_minus_duplicates() {
        let servers: Vec<_> = (1..=10).map(|p| server(p, p as u32)).collect();
        let up = chash(servers);
        let ring = &up.pre.ring;
        assert!(ring.windows(2).all(|w| w[0].hash < w[1].hash));
        let mut all = 0;
        let mut distinct = HashSet::new();
        for (i, p) in up.peers.iter().enumerate() {
            let one = build_ring(std::slice::from_ref(p));
            all += one.len();
            assert!(one.len() as u32 <= 160 * p.cfg.weight);
            let _ = i;
            distinct.extend(one.iter().map(|pt| pt.hash));
        }
        assert_eq!(ring.len(), distinct.len());
        assert!(all - ring.len() < 10, "{} duplicates", all - ring.len());
        assert!(ring.len() > 160 * 55 - 10);
    }

    #[test]
    fn ketama_removing_one_of_ten_remaps_only_its_keys() {
        let ten = chash((1..=10).map(|p| server(p, 1)).collect());
        let nine = chash((1..=10).filter(|&p| p != 4).map(|p| server(p, 1)).collect());
        let moves = remapped(&ten, &nine);
        for (key, a, _) in &moves {
            assert_eq!(*a, "127.0.0.1:4", "{key} moved off a server that stayed");
        }
        let moved = moves.len();
        assert!(moved <= 1500, "{moved} of 10000 keys moved");
        assert!(moved >= 500, "{moved} of 10000 keys moved");
    }

    #[test]
    fn ketama_adding_weight_moves_a_proportional_share() {
        let base = chash((1..=10).map(|p| server(p, 1)).collect());
        let heavier = chash(
            (1..=10)
                .map(|p| server(p, if p == 1 { 2 } else { 1 }))
                .collect(),
        );
        let moves = remapped(&base, &heavier);
        for (key, _, b) in &moves {
            assert_eq!(
                *b, "127.0.0.1:1",
                "{key} moved to a server that did not grow"
            );
        }
        let moved = moves.len();
        // Server 1's share goes from 1/10 to 2/11: about 818 of 10000 keys move to it.
        assert!((500..=1250).contains(&moved), "{moved} keys moved");
    }

    #[test]
    fn ketama_unusable_server_walks_to_next_point() {
        let up = chash((1..=5).map(|p| server(p, 1)).collect());
        let mut sel = test_selector(&up, 1);
        let owner = ring_owner(&up.pre.ring, b"/x").unwrap();
        assert_eq!(pick_key(&mut sel, &up, b"/x"), owner);
        up.peers[owner]
            .state
            .healthy
            .store(false, std::sync::atomic::Ordering::Relaxed);
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
        let owner = ring_owner(&plain.pre.ring, b"/hot").unwrap();
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
