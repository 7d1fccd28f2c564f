//! Selection tests: every method's nginx semantics, with injected time, no sockets.

use std::time::Duration;

use super::testing::*;
use super::*;
use crate::config::Balance;

const ALL: [Balance; 6] = [
    Balance::RoundRobin,
    Balance::LeastConn,
    Balance::IpHash,
    Balance::Hash,
    Balance::RandomTwoLeastConn,
    Balance::LeastTime,
];

/// A request that began before a reload picks (and retries) on its own snapshot after
/// the worker's selector moved on to a smaller one.
#[test]
fn pick_on_an_older_generation_after_sync_uses_its_own_tables() {
    for method in ALL {
        let old = upstream(&upstream_cfg(
            method,
            vec![server(1, 1), server(2, 1), server(3, 5)],
        ));
        let new = upstream(&upstream_cfg(method, vec![server(1, 1)]));
        let mut sel = test_selector(&new, 7);
        for _ in 0..10 {
            let i = pick_once(&mut sel, &old, &input()).unwrap();
            assert!(i < 3);
            release(&old.peers[i]);
        }
        sel.failed(&old, 2, 1);
        assert_eq!(pick_once(&mut sel, &new, &input()), Ok(0));
    }
}

#[test]
fn smooth_round_robin_matches_nginx_sequence() {
    let cfg = upstream_cfg(
        Balance::RoundRobin,
        vec![server(1, 5), server(2, 1), server(3, 1)],
    );
    let up = upstream(&cfg);
    let mut sel = test_selector(&up, 7);
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
fn sync_builds_locals_from_a_snapshot() {
    let snap = snapshot(vec![upstream_cfg(
        Balance::RoundRobin,
        vec![server(1, 1), server(2, 1)],
    )]);
    let mut sel = Selector::new(1);
    sel.sync(&snap);
    let up = &snap.upstreams[0];
    let mut tried = Tried::default();
    tried.reset(2);
    assert_eq!(sel.pick(up, &input(), &mut tried, 1), Ok(0));
    tried.reset(2);
    assert_eq!(sel.pick(up, &input(), &mut tried, 1), Ok(1));
}

#[test]
fn backup_only_when_primaries_unusable() {
    let mut b = server(3, 1);
    b.backup = true;
    let cfg = upstream_cfg(Balance::RoundRobin, vec![server(1, 1), server(2, 1), b]);
    let up = upstream(&cfg);
    let mut sel = test_selector(&up, 7);
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
fn backups_serve_every_method_when_primaries_are_down() {
    for balance in ALL {
        for consistent in [false, true] {
            let mut b1 = server(3, 1);
            b1.backup = true;
            let mut b2 = server(4, 1);
            b2.backup = true;
            let mut cfg = upstream_cfg(balance, vec![server(1, 1), server(2, 1), b1, b2]);
            cfg.consistent = consistent;
            let up = upstream(&cfg);
            let mut sel = test_selector(&up, 7);
            let inp = PickInput {
                client_ip: "10.1.2.3".parse().unwrap(),
                hash_key: b"/k",
            };
            assert!(pick_once(&mut sel, &up, &inp).unwrap() < 2);
            for p in up.primary_peers() {
                p.state.check_went_down();
            }
            let mut seen = [0u32; 4];
            for _ in 0..4 {
                let i = pick_once(&mut sel, &up, &inp).unwrap();
                release(&up.peers[i]);
                seen[i] += 1;
            }
            assert_eq!(seen, [0, 0, 2, 2], "{balance:?} consistent={consistent}");
        }
    }
}

#[test]
fn failed_server_is_skipped_until_fail_timeout_then_probed() {
    let cfg = upstream_cfg(Balance::RoundRobin, vec![server(1, 1), server(2, 1)]);
    let up = upstream(&cfg);
    let mut sel = test_selector(&up, 7);
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
fn every_method_skips_failed_down_and_tried() {
    for balance in ALL {
        let mut down = server(2, 1);
        down.down = true;
        let cfg = upstream_cfg(
            balance,
            vec![server(1, 1), down, server(3, 1), server(4, 1)],
        );
        let up = upstream(&cfg);
        let mut sel = test_selector(&up, 3);
        sel.failed(&up, 2, 1);
        let inp = PickInput {
            client_ip: "10.1.2.3".parse().unwrap(),
            hash_key: b"/k",
        };
        for n in 0..20u8 {
            let ip = format!("10.{n}.2.3");
            let inp = PickInput {
                client_ip: ip.parse().unwrap(),
                hash_key: &[n],
            };
            let i = pick_once(&mut sel, &up, &inp).unwrap();
            release(&up.peers[i]);
            assert!(i == 0 || i == 3, "{balance:?} picked {i}");
        }
        let mut tried = Tried::default();
        tried.reset(4);
        tried.set(0);
        assert_eq!(sel.pick(&up, &inp, &mut tried, 1), Ok(3), "{balance:?}");
        tried.set(3);
        assert_eq!(
            sel.pick(&up, &inp, &mut tried, 1),
            Err(PickError::NoLive),
            "{balance:?}"
        );
    }
}

#[test]
fn max_conns_gives_all_full() {
    let mut s = server(1, 1);
    s.max_conns = 1;
    let cfg = upstream_cfg(Balance::RoundRobin, vec![s]);
    let up = upstream(&cfg);
    let mut sel = test_selector(&up, 7);
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

#[test]
fn max_conns_respected_by_every_method() {
    for balance in ALL {
        let servers: Vec<_> = (1..=3)
            .map(|p| {
                let mut s = server(p, 1);
                s.max_conns = 2;
                s
            })
            .collect();
        let up = upstream(&upstream_cfg(balance, servers));
        let mut sel = test_selector(&up, 5);
        let inp = PickInput {
            client_ip: "10.1.2.3".parse().unwrap(),
            hash_key: b"/k",
        };
        for _ in 0..6 {
            pick_once(&mut sel, &up, &inp).unwrap();
        }
        assert_eq!(
            pick_once(&mut sel, &up, &inp),
            Err(PickError::AllFull),
            "{balance:?}"
        );
        assert!(up.peers.iter().all(|p| p.state.active() == 2));
    }
}

#[test]
fn single_server_is_never_marked_failed() {
    for balance in ALL {
        let up = upstream(&upstream_cfg(balance, vec![server(1, 1)]));
        let mut sel = test_selector(&up, 5);
        sel.failed(&up, 0, 1);
        let i = pick_once(&mut sel, &up, &input()).unwrap();
        assert_eq!(i, 0, "{balance:?}");
    }
}

#[test]
fn slow_start_ramps_from_ten_percent() {
    let mut fresh = server(2, 1);
    fresh.slow_start = Duration::from_secs(10);
    let up = upstream(&upstream_cfg(
        Balance::RoundRobin,
        vec![server(1, 1), fresh],
    ));
    up.peers[1]
        .state
        .up_since_ms
        .store(100_000, Ordering::Relaxed);
    let p = &up.peers[1];
    assert_eq!(p.state.ramp_permille(&p.cfg, 105_000), 500);
    let q = &up.peers[0];
    assert_eq!(q.state.ramp_permille(&q.cfg, 100_000), 1000);

    let share = |balance: Balance, now: u64| {
        let mut fresh = server(2, 1);
        fresh.slow_start = Duration::from_secs(10);
        let up = upstream(&upstream_cfg(balance, vec![server(1, 1), fresh]));
        up.peers[1]
            .state
            .up_since_ms
            .store(100_000, Ordering::Relaxed);
        let mut sel = test_selector(&up, 11);
        let mut n = 0;
        for _ in 0..2000 {
            let mut tried = Tried::default();
            tried.reset(2);
            let i = sel.pick(&up, &input(), &mut tried, now).unwrap();
            release(&up.peers[i]);
            n += i as u32;
        }
        n as f64 / 2000.0
    };
    for balance in [
        Balance::RoundRobin,
        Balance::RandomTwoLeastConn,
        Balance::LeastTime,
    ] {
        // Weight 0.1 vs 1: about 9%; at half way 0.5 vs 1: a third; then even.
        let early = share(balance, 100_000);
        let half = share(balance, 105_000);
        let done = share(balance, 200_000);
        assert!(early < 0.15, "{balance:?} early {early}");
        assert!((0.2..0.45).contains(&half), "{balance:?} half {half}");
        assert!((0.4..0.6).contains(&done), "{balance:?} done {done}");
    }
}

#[test]
fn slow_start_weights_least_conn() {
    let mut fresh = server(2, 1);
    fresh.slow_start = Duration::from_secs(10);
    let up = upstream(&upstream_cfg(Balance::LeastConn, vec![server(1, 1), fresh]));
    up.peers[1].state.up_since_ms.store(1, Ordering::Relaxed);
    let mut sel = test_selector(&up, 1);
    // Held requests at t = 1 ms: the fresh server counts as weight 0.1.
    for _ in 0..22 {
        pick_once(&mut sel, &up, &input()).unwrap();
    }
    assert_eq!(up.peers[1].state.active(), 2);
}

#[test]
fn panic_mode_spreads_over_all_primaries() {
    let servers: Vec<_> = (1..=4).map(|p| server(p, 1)).collect();
    let mut cfg = upstream_cfg(Balance::RoundRobin, servers);
    cfg.panic_threshold = Some(50);
    let up = upstream(&cfg);
    let mut sel = test_selector(&up, 1);
    // 2 of 4 healthy = 50%: not below the threshold, health is obeyed.
    up.peers[0].state.check_went_down();
    sel.failed(&up, 1, 1);
    assert!(!up.in_panic(1));
    let mut seen = [0u32; 4];
    for _ in 0..8 {
        let i = pick_once(&mut sel, &up, &input()).unwrap();
        release(&up.peers[i]);
        seen[i] += 1;
    }
    assert_eq!(seen, [0, 0, 4, 4]);
    // 1 of 4 = 25%: panic, everyone gets traffic.
    up.peers[2].state.check_went_down();
    assert!(up.in_panic(1));
    let mut seen = [0u32; 4];
    for _ in 0..8 {
        let i = pick_once(&mut sel, &up, &input()).unwrap();
        release(&up.peers[i]);
        seen[i] += 1;
    }
    assert_eq!(seen, [2, 2, 2, 2]);
    // Without a threshold: only the healthy one.
    let mut cfg2 = cfg.clone();
    cfg2.panic_threshold = None;
    let up2 = upstream(&cfg2);
    assert!(!up2.in_panic(1));
}

#[test]
fn panic_mode_waits_for_healthy_backups() {
    let mut b = server(5, 1);
    b.backup = true;
    let mut cfg = upstream_cfg(Balance::LeastConn, vec![server(1, 1), server(2, 1), b]);
    cfg.panic_threshold = Some(50);
    let up = upstream(&cfg);
    up.peers[0].state.check_went_down();
    up.peers[1].state.check_went_down();
    assert!(!up.in_panic(1));
    let mut sel = test_selector(&up, 1);
    assert_eq!(pick_once(&mut sel, &up, &input()), Ok(2));
    up.peers[2].state.check_went_down();
    assert!(up.in_panic(1));
    assert!(pick_once(&mut sel, &up, &input()).unwrap() < 2);
}
