//! Balancing methods through the real proxy: weights, least_conn, ip_hash, consistent hash,
//! backups, max_conns, bounded load, retry budget and queueing.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::client::Conn;
use common::proxy::{server, simple_config, start_with};
use common::{free_port, load, Backend, Behavior, Proxy};

/// How long a test waits for an event that takes a fraction of a second on an idle machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn backends(n: usize) -> Vec<Backend> {
    (0..n).map(|i| Backend::start(&format!("b{i}"))).collect()
}

/// `clients` concurrent keepalive clients against equally fast backends (a fixed service
/// time; for least_conn long against the clients' own overhead). least_conn balances requests in flight by weight, so the request mix
/// follows the weights once enough requests overlap (18 in flight split 10:6:2); with a
/// few in flight, integer counts would skew it.
fn weights_5_3_1(balance: &str, clients: usize, service: Duration) {
    let b = backends(3);
    for x in &b {
        x.set_delay(service);
    }
    let p = start_with(
        &[&b[0], &b[1], &b[2]],
        &["weight = 5", "weight = 3", "weight = 1"],
        &format!("balance = \"{balance}\""),
    );
    let t = load::run(p.addr, clients, 9000 / clients, "/", "");
    assert_eq!(t.failures, 0, "{t:?}");
    let total = t.total() as f64;
    assert_eq!(total, 9000.0);
    for (name, share) in [("b0", 5.0 / 9.0), ("b1", 3.0 / 9.0), ("b2", 1.0 / 9.0)] {
        let got = t.count(name);
        // "within 2%": of the total, the share of each server is off by at most 2 points.
        assert!(
            (got as f64 / total - share).abs() <= 0.02,
            "{balance}: {name} got {got} of {total}: {t:?}"
        );
    }
}

#[test]
fn round_robin_follows_weights_5_3_1() {
    weights_5_3_1("round_robin", 6, Duration::ZERO);
}

#[test]
fn least_conn_follows_weights_5_3_1_with_equal_backends() {
    weights_5_3_1("least_conn", 18, Duration::from_millis(10));
}

#[test]
fn least_conn_sends_traffic_away_from_a_slow_backend() {
    let b = backends(3);
    b[2].set_delay(Duration::from_millis(40));
    b[0].set_delay(Duration::from_millis(2));
    b[1].set_delay(Duration::from_millis(2));
    let p = start_with(&[&b[0], &b[1], &b[2]], &[], "balance = \"least_conn\"");
    let t = load::run(p.addr, 8, 60, "/", "");
    assert_eq!(t.failures, 0);
    let slow = t.count("b2");
    assert!(
        (slow as f64) < t.total() as f64 * 0.12,
        "the 20x slower backend got {slow} of {}: {t:?}",
        t.total()
    );
}

/// A GET from a chosen loopback source address.
fn get_from(proxy: SocketAddr, source: [u8; 4]) -> String {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    sock.connect(&proxy.into()).unwrap();
    let stream: TcpStream = sock.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut c = Conn::from_stream(stream);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    r.header("x-backend").unwrap().to_string()
}

#[test]
fn ip_hash_keeps_clients_and_moves_only_the_failed_servers_clients() {
    let b = backends(3);
    let p = start_with(
        &[&b[0], &b[1], &b[2]],
        &[
            "fail_timeout = \"30s\"",
            "fail_timeout = \"30s\"",
            "fail_timeout = \"30s\"",
        ],
        "balance = \"ip_hash\"",
    );
    // Clients differ in the third octet: ip_hash keys on the first three.
    let clients: Vec<[u8; 4]> = (1..=40).map(|i| [127, 0, i, 1]).collect();
    let mut first: HashMap<[u8; 4], String> = HashMap::new();
    for c in &clients {
        let a = get_from(p.addr, *c);
        for _ in 0..3 {
            assert_eq!(get_from(p.addr, *c), a, "client {c:?} moved");
        }
        // The fourth octet is not part of the key.
        assert_eq!(get_from(p.addr, [c[0], c[1], c[2], 77]), a);
        first.insert(*c, a);
    }
    let used: std::collections::HashSet<&String> = first.values().collect();
    assert_eq!(used.len(), 3, "40 clients should reach all three servers");

    // b1 fails: its clients move, everyone else stays.
    b[1].set_behavior(Behavior::CloseAfterRead);
    for c in &clients {
        let now = get_from(p.addr, *c);
        if first[c] == "b1" {
            assert_ne!(now, "b1");
        } else {
            assert_eq!(now, first[c], "client {c:?} moved though its server is up");
        }
    }
}

#[test]
fn consistent_hash_remaps_few_keys_when_one_of_ten_servers_goes() {
    let b = backends(10);
    let port = free_port();
    let servers: Vec<String> = b.iter().map(|b| server(b.addr, "")).collect();
    let extra = "balance = \"hash\"\nhash = \"$request_uri\"\nconsistent = true";
    let cfg = simple_config(port, &servers, extra);
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));

    let map_keys = |p: &Proxy| -> Vec<String> {
        let mut c = Conn::open(p.addr).unwrap();
        (0..10_000)
            .map(|k| {
                c.send(format!("GET /key/{k} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
                    .unwrap();
                let r = c.read_response(false).unwrap();
                if r.header("connection") == Some("close") {
                    c = Conn::open(p.addr).unwrap();
                }
                r.header("x-backend").unwrap().to_string()
            })
            .collect()
    };
    let before = map_keys(&p);
    let removed = "b3";
    let cfg2 = simple_config(
        port,
        &b.iter()
            .filter(|b| b.name != removed)
            .map(|b| server(b.addr, ""))
            .collect::<Vec<_>>(),
        extra,
    );
    p.reload(&cfg2);
    // Published before it is logged; the next request runs on it.
    assert!(p.wait_event("configuration reloaded", &[("generation", "2")], PATIENCE));
    let after = map_keys(&p);
    let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    let on_removed = before.iter().filter(|a| *a == removed).count();
    assert!(after.iter().all(|a| a != removed));
    assert!(
        moved <= 1500,
        "{moved} of 10000 keys moved (the removed server had {on_removed})"
    );
    // Only the removed server's keys moved.
    assert_eq!(moved, on_removed);
}

#[test]
fn backup_serves_only_while_every_primary_is_down() {
    let b = backends(3);
    let p = start_with(
        &[&b[0], &b[1], &b[2]],
        &[
            "fail_timeout = \"1s\"",
            "fail_timeout = \"1s\"",
            "backup = true",
        ],
        "",
    );
    let t = load::run(p.addr, 2, 50, "/", "");
    assert_eq!(t.count("b2"), 0, "{t:?}");
    assert_eq!(t.failures, 0);

    b[0].set_behavior(Behavior::CloseAfterRead);
    b[1].set_behavior(Behavior::CloseAfterRead);
    let t = load::run(p.addr, 2, 50, "/", "");
    assert_eq!(t.failures, 0, "{t:?}");
    assert_eq!(t.count("b2"), 100, "{t:?}");

    b[0].set_behavior(Behavior::Normal);
    b[1].set_behavior(Behavior::Normal);
    // After fail_timeout one trial request each brings the primaries back, and the backup
    // gets nothing again.
    let start = std::time::Instant::now();
    loop {
        let t = load::run(p.addr, 2, 50, "/", "");
        assert_eq!(t.failures, 0, "{t:?}");
        if t.count("b2") == 0 {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "the backup still serves: {t:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn max_conns_is_respected_under_200_concurrent_connections() {
    let b = backends(2);
    b[0].set_delay(Duration::from_millis(20));
    b[1].set_delay(Duration::from_millis(20));
    let p = start_with(&[&b[0], &b[1]], &["max_conns = 5", "max_conns = 5"], "");
    let t = load::run(p.addr, 200, 5, "/", "");
    assert!(b[0].max_in_flight() <= 5, "b0 saw {}", b[0].max_in_flight());
    assert!(b[1].max_in_flight() <= 5, "b1 saw {}", b[1].max_in_flight());
    // Requests over the limit get 503, not a hang or a 502.
    let other: usize = t
        .by_status
        .iter()
        .filter(|(s, _)| **s != 200 && **s != 503)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(other, 0, "{t:?}");
    assert!(t.count("b0") + t.count("b1") > 0);
}

#[test]
fn queued_requests_wait_for_a_slot_then_get_503_after_queue_timeout() {
    let b = backends(1);
    b[0].set_delay(Duration::from_millis(100));
    let p = start_with(
        &[&b[0]],
        &["max_conns = 1"],
        "queue = 100\nqueue_timeout = \"3s\"",
    );
    // 6 concurrent requests, one slot, 100 ms each: all fit within the queue timeout.
    let t = load::run(p.addr, 6, 1, "/", "");
    assert_eq!(t.failures, 0, "{t:?}");
    assert!(b[0].max_in_flight() <= 1);

    b[0].set_delay(Duration::from_millis(1500));
    let p2 = start_with(
        &[&b[0]],
        &["max_conns = 1"],
        "queue = 100\nqueue_timeout = \"200ms\"",
    );
    let t = load::run(p2.addr, 3, 1, "/", "");
    assert_eq!(t.count("b0"), 1, "{t:?}");
    assert_eq!(t.by_status.get(&503), Some(&2), "{t:?}");
    drop(p);
}

#[test]
fn bounded_load_hash_spreads_one_hot_key() {
    let b = backends(3);
    for x in &b {
        x.set_delay(Duration::from_millis(30));
    }
    let p = start_with(
        &[&b[0], &b[1], &b[2]],
        &[],
        "balance = \"hash\"\nhash = \"$request_uri\"\nconsistent = true\nhash_balance_factor = 1.25",
    );
    // Every request has the same key; 12 at a time.
    let _ = load::run(p.addr, 12, 10, "/hot", "");
    let avg: f64 = 12.0 / 3.0;
    for x in &b {
        let m = x.max_in_flight() as f64;
        assert!(
            m <= (avg * 1.25).ceil() + 1.0,
            "{} had {m} in flight (average {avg})",
            x.name
        );
    }
    // Without the bound, the hot key would keep one server at 12.
}

#[test]
fn retry_budget_limits_extra_load_from_a_failing_backend() {
    let b = backends(3);
    b[0].set_behavior(Behavior::Fail503);
    let p = start_with(
        &[&b[0], &b[1], &b[2]],
        &["max_fails = 0", "", ""],
        "next_upstream = [\"error\", \"timeout\", \"http_503\"]\nretry_budget = { ratio = 0.2, min = 1 }",
    );
    let sent = 8 * 150;
    let t = load::run(p.addr, 8, 150, "/slow?ms=2", "");
    let to_others = (b[1].requests() + b[2].requests()) as f64;
    let failed_once = b[0].requests() as f64;
    // Without a budget every request that met b0 would be retried: others would get all
    // `sent`. With it, retries are capped at 20 % of requests in flight (>= 1).
    let retries = to_others - (sent as f64 - failed_once);
    assert!(
        retries <= failed_once * 0.6,
        "{retries} retries for {failed_once} failures: {t:?}"
    );
    assert!(t.by_status.get(&503).copied().unwrap_or(0) > 0, "{t:?}");
}

#[test]
fn panic_threshold_spreads_over_all_when_most_health_checks_fail() {
    let b = backends(3);
    b[1].set_behavior(Behavior::SickHealth);
    b[2].set_behavior(Behavior::SickHealth);
    let hc = "[upstream.app.health_check]\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"200ms\"\nfails = 1\npasses = 1\n";
    let port = free_port();
    let servers: Vec<String> = b.iter().map(|b| server(b.addr, "")).collect();
    // Without the threshold, the two sick servers are taken out.
    let cfg = simple_config(port, &servers, "") + hc;
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    both_sick_servers_down(&p, &b);
    let t = load::run(p.addr, 2, 60, "/", "");
    assert_eq!(t.count("b0"), 120, "{t:?}");
    drop(p);

    let port = free_port();
    let cfg = simple_config(port, &servers, "panic_threshold = 50") + hc;
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    both_sick_servers_down(&p, &b);
    assert!(
        p.wait_event("panic mode", &[("upstream", "app")], PATIENCE),
        "{}",
        p.log()
    );
    let t = load::run(p.addr, 2, 60, "/", "");
    assert_eq!(t.failures, 0, "{t:?}");
    for name in ["b0", "b1", "b2"] {
        assert!(t.count(name) >= 30, "panic mode should spread: {t:?}");
    }
}

/// Waits until the health check has taken both sick servers (`b[1]`, `b[2]`) down.
fn both_sick_servers_down(p: &Proxy, b: &[Backend]) {
    for sick in &b[1..] {
        let fields = [("server", sick.addr.to_string()), ("state", "down".into())];
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert!(p.wait_event("", &fields, PATIENCE), "{}", p.log());
    }
}
