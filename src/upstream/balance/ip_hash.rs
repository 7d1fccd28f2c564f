//! nginx's ip_hash (`ngx_http_upstream_get_ip_hash_peer`), with a configurable prefix.
//!
//! nginx hashes the first 3 bytes of an IPv4 address (a /24) or all 16 bytes of an IPv6
//! one: `h = 89`, then per byte `h = (h * 113 + b) % 6271`; `w = h % total_weight` and the
//! peer is found by walking the peers subtracting their weights. If that peer is unusable
//! (tried, down, failed, full), the byte loop runs again starting from the current `h`;
//! after 20 tries the request goes to round robin.
//!
//! `ip_hash_prefix` (beyond nginx) sets how many leading bits identify a client. The address
//! is masked to that many bits and the first `ceil(bits / 8)` bytes of the masked address
//! are hashed with nginx's loop: v4 /24 hashes exactly nginx's 3 bytes, v6 /128 its 16
//! bytes; v4 /32 hashes all 4 bytes, v6 /64 the first 8, v4 /20 three bytes with the low 4
//! bits of the third cleared; a prefix of 0 hashes nothing, so every client gets the server
//! `89 % total_weight` maps to. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
//! dual-stack listener reports for an IPv4 client) is hashed as the IPv4 address.
//!
//! The weights are the configured ones (no slow start ramp): they decide which clients a
//! server owns.

use std::net::IpAddr;

use super::gate::{Gate, Skips};
use super::tried::Tried;
use crate::config::IpHashPrefix;
use crate::upstream::snapshot::Upstream;

/// nginx gives up hashing after this many unusable picks and uses round robin.
pub(crate) const MAX_TRIES: u32 = 20;

/// The bytes nginx's loop runs over: the address masked to the prefix, and how many of its
/// leading bytes count.
pub(crate) fn key(ip: IpAddr, prefix: IpHashPrefix) -> ([u8; 16], usize) {
    let mut bytes = [0u8; 16];
    let bits = match ip.to_canonical() {
        IpAddr::V4(a) => {
            bytes[..4].copy_from_slice(&a.octets());
            prefix.v4.min(32) as usize
        }
        IpAddr::V6(a) => {
            bytes.copy_from_slice(&a.octets());
            prefix.v6.min(128) as usize
        }
    };
    let len = bits.div_ceil(8);
    if bits % 8 != 0 {
        bytes[len - 1] &= 0xffu8 << (8 - bits % 8);
    }
    (bytes, len)
}

/// One round of nginx's byte loop.
pub(crate) fn rehash(mut h: u32, key: &[u8]) -> u32 {
    for &b in key {
        h = (h * 113 + b as u32) % 6271;
    }
    h
}

/// Picks among the primaries of `up`; `None` sends the request to round robin.
pub(crate) fn pick(
    up: &Upstream,
    ip: IpAddr,
    tried: &Tried,
    gate: Gate,
    skips: &mut Skips,
) -> Option<usize> {
    let total = up.tables.primary_weight;
    if gate.single || total == 0 {
        return None;
    }
    let (bytes, len) = key(ip, up.cfg.ip_hash_prefix);
    let key = &bytes[..len];
    let peers = up.primary_peers();
    let mut h = 89u32;
    for _ in 0..=MAX_TRIES {
        h = rehash(h, key);
        let i = up.tables.weighted_index(h as u64 % total);
        if !tried.has(i) && gate.admits(&peers[i], skips) {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;
    use super::*;
    use crate::config::Balance;

    fn pick_ip(sel: &mut Selector, up: &Upstream, ip: &str) -> usize {
        let inp = PickInput {
            client_ip: ip.parse().unwrap(),
            hash_key: b"",
        };
        let i = pick_once(sel, up, &inp).unwrap();
        release(&up.peers[i]);
        i
    }

    fn three() -> Upstream {
        upstream(&upstream_cfg(
            Balance::IpHash,
            vec![server(1, 1), server(2, 1), server(3, 1)],
        ))
    }

    #[test]
    fn ip_hash_known_value_from_nginx_formula() {
        // h = 89; (89*113+1)%6271 = 3787; (3787*113+2)%6271 = 1505; (1505*113+3)%6271 = 751;
        // 751 % 3 = 1.
        let (bytes, len) = key("1.2.3.4".parse().unwrap(), IpHashPrefix::default());
        assert_eq!(len, 3);
        assert_eq!(rehash(89, &bytes[..len]), 751);
        let up = three();
        let mut sel = test_selector(&up, 1);
        assert_eq!(pick_ip(&mut sel, &up, "1.2.3.4"), 1);
        // Server 1 down: the loop runs again from 751: 6116 % 3 = 2.
        let mut tried = Tried::default();
        tried.reset(3);
        tried.set(1);
        let inp = PickInput {
            client_ip: "1.2.3.4".parse().unwrap(),
            hash_key: b"",
        };
        assert_eq!(sel.pick(&up, &inp, &mut tried, 1), Ok(2));
    }

    #[test]
    fn ip_hash_same_client_same_server_and_v4_uses_three_octets() {
        let up = three();
        let mut sel = test_selector(&up, 1);
        let a = pick_ip(&mut sel, &up, "10.20.30.40");
        for _ in 0..10 {
            assert_eq!(pick_ip(&mut sel, &up, "10.20.30.40"), a);
        }
        assert_eq!(
            pick_ip(&mut sel, &up, "1.2.3.4"),
            pick_ip(&mut sel, &up, "1.2.3.99")
        );
        assert_eq!(
            pick_ip(&mut sel, &up, "1.2.3.4"),
            pick_ip(&mut sel, &up, "::ffff:1.2.3.200")
        );
    }

    #[test]
    fn ip_hash_server_down_moves_only_its_clients() {
        let cfg = upstream_cfg(
            Balance::IpHash,
            (1..=5).map(|p| server(p, 1)).collect::<Vec<_>>(),
        );
        let up = upstream(&cfg);
        let mut sel = test_selector(&up, 1);
        let clients: Vec<String> = (0..500)
            .map(|n| format!("10.{}.{}.1", n / 256, n % 256))
            .collect();
        let before: Vec<usize> = clients.iter().map(|c| pick_ip(&mut sel, &up, c)).collect();
        // Health check marks server 2 down.
        up.peers[2].state.check_went_down();
        let mut moved = 0;
        for (c, &b) in clients.iter().zip(&before) {
            let now = pick_ip(&mut sel, &up, c);
            if b == 2 {
                assert_ne!(now, 2);
                moved += 1;
            } else {
                assert_eq!(now, b, "client {c} moved though its server is up");
            }
        }
        assert!(moved > 50, "server 2 owned {moved} of 500 clients");
    }

    #[test]
    fn ip_hash_prefix_masks_the_address() {
        let p = IpHashPrefix { v4: 20, v6: 64 };
        let (a, la) = key("1.2.47.9".parse().unwrap(), p);
        let (b, lb) = key("1.2.32.200".parse().unwrap(), p);
        assert_eq!((la, &a[..la]), (3, &[1u8, 2, 32][..]));
        assert_eq!(a[..la], b[..lb]);
        let (c, lc) = key("2001:db8:1:2:aaaa::1".parse().unwrap(), p);
        let (d, ld) = key("2001:db8:1:2:bbbb::9".parse().unwrap(), p);
        assert_eq!(lc, 8);
        assert_eq!(c[..lc], d[..ld]);
        let (e, le) = key("2001:db8::1".parse().unwrap(), IpHashPrefix::default());
        assert_eq!(le, 16);
        assert_eq!(e[15], 1);
        let (_, l32) = key("1.2.3.4".parse().unwrap(), IpHashPrefix { v4: 32, v6: 128 });
        assert_eq!(l32, 4);
    }

    #[test]
    fn ip_hash_weights_follow_nginx_walk() {
        // Weights {2,1}: w in {0,1} -> server 0, w = 2 -> server 1.
        let up = upstream(&upstream_cfg(
            Balance::IpHash,
            vec![server(1, 2), server(2, 1)],
        ));
        assert_eq!(up.tables.weighted_index(0), 0);
        assert_eq!(up.tables.weighted_index(1), 0);
        assert_eq!(up.tables.weighted_index(2), 1);
        let mut sel = test_selector(&up, 1);
        // 751 % 3 = 1 -> server 0.
        assert_eq!(pick_ip(&mut sel, &up, "1.2.3.4"), 0);
    }
}
