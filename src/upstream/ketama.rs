//! nginx's ketama ring (`hash KEY consistent`), built from server configurations alone.
//!
//! Every server puts `weight * 160` points on a ring, point `j` being
//! `crc32(host "\0" port prev_hash)` with `prev_hash` the previous point (0 for the first) as
//! 4 little-endian bytes; host and port are the server name as written, split at its last
//! ':' (port "80" when there is none, as nginx). The ring is sorted and de-duplicated once per
//! snapshot. A key's `crc32` starts at the first point >= it, wrapping to the first point.
//! cloudflare's pingora-ketama reproduces nginx's ring; its nginx-generated vectors are tested
//! below. Walking the ring past unusable servers is the hash method's business
//! (`balance/hash.rs`); this module only knows servers by their index.

use crate::config::ServerCfg;

/// Ketama points per unit of weight (nginx, libketama).
pub const POINTS_PER_WEIGHT: u32 = 160;

/// One point of the ketama ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingPoint {
    pub hash: u32,
    /// Index of the server in the slice the ring was built from.
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

/// The ketama ring of `servers`, sorted by hash and de-duplicated.
pub fn build_ring(servers: &[ServerCfg]) -> Vec<RingPoint> {
    let total: u64 = servers.iter().map(|s| s.weight as u64).sum();
    let mut ring = Vec::with_capacity((total * POINTS_PER_WEIGHT as u64) as usize);
    for (i, server) in servers.iter().enumerate() {
        let (host, port) = host_port(&server.name);
        let mut base = crc32fast::Hasher::new();
        base.update(host.as_bytes());
        base.update(b"\0");
        base.update(port.as_bytes());
        let mut prev = 0u32;
        for _ in 0..server.weight * POINTS_PER_WEIGHT {
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
pub fn find_point(ring: &[RingPoint], hash: u32) -> usize {
    ring.partition_point(|p| p.hash < hash)
}

/// The server owning `key` on the ring when every server is usable.
pub fn ring_owner(ring: &[RingPoint], key: &[u8]) -> Option<usize> {
    if ring.is_empty() {
        return None;
    }
    let i = find_point(ring, crc32fast::hash(key)) % ring.len();
    Some(ring[i].peer as usize)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::config::ServerAddr;
    use crate::upstream::bench_support::server;

    fn named(name: &str, weight: u32) -> ServerCfg {
        let mut s = server(1, weight);
        s.name = name.to_string();
        s.addr = name.parse().map(ServerAddr::Inet).unwrap_or(s.addr);
        s
    }

    fn owner<'a>(servers: &'a [ServerCfg], ring: &[RingPoint], key: &str) -> &'a str {
        &servers[ring_owner(ring, key.as_bytes()).unwrap()].name
    }

    /// The keys `/key/0`..`/key/9999` whose owner differs between two server lists: (key,
    /// owner in `from`, owner in `to`).
    fn remapped<'a>(from: &'a [ServerCfg], to: &'a [ServerCfg]) -> Vec<(String, &'a str, &'a str)> {
        let (rf, rt) = (build_ring(from), build_ring(to));
        (0..10_000)
            .map(|k| format!("/key/{k}"))
            .filter_map(|key| {
                let (a, b) = (owner(from, &rf, &key), owner(to, &rt, &key));
                (a != b).then_some((key, a, b))
            })
            .collect()
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
        let two = [named("127.0.0.1:7777", 1), named("127.0.0.1:7778", 1)];
        let ring = build_ring(&two);
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
            assert_eq!(owner(&two, &ring, key), want, "{key}");
        }
        // pingora-ketama's test-data/sample-nginx-upstream.csv, recorded from nginx with
        // `hash $request_uri consistent` over 10.0.0.1..9:443 weight=100.
        let nine: Vec<_> = (1..=9)
            .map(|i| named(&format!("10.0.0.{i}:443"), 100))
            .collect();
        let ring = build_ring(&nine);
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
            assert_eq!(owner(&nine, &ring, key), want, "{key}");
        }
    }

    #[test]
    fn ketama_points_are_160_per_weight_minus_duplicates() {
        let servers: Vec<_> = (1..=10).map(|p| server(p, p as u32)).collect();
        let ring = build_ring(&servers);
        assert!(ring.windows(2).all(|w| w[0].hash < w[1].hash));
        let mut all = 0;
        let mut distinct = HashSet::new();
        for s in &servers {
            let one = build_ring(std::slice::from_ref(s));
            all += one.len();
            assert!(one.len() as u32 <= 160 * s.weight);
            distinct.extend(one.iter().map(|pt| pt.hash));
        }
        assert_eq!(ring.len(), distinct.len());
        assert!(all - ring.len() < 10, "{} duplicates", all - ring.len());
        assert!(ring.len() > 160 * 55 - 10);
    }

    #[test]
    fn ketama_removing_one_of_ten_remaps_only_its_keys() {
        let ten: Vec<_> = (1..=10).map(|p| server(p, 1)).collect();
        let nine: Vec<_> = (1..=10).filter(|&p| p != 4).map(|p| server(p, 1)).collect();
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
        let base: Vec<_> = (1..=10).map(|p| server(p, 1)).collect();
        let heavier: Vec<_> = (1..=10)
            .map(|p| server(p, if p == 1 { 2 } else { 1 }))
            .collect();
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
}
