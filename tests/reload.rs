//! SIGHUP reloads through the real binary: no failed request under load across many
//! reloads, the new weights take over, an invalid file keeps the old configuration, and
//! listen addresses follow the file.

#[allow(unused_imports)]
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::client::Conn;
use common::{free_port, get, Backend, Proxy};

/// How long a test waits for an event that takes a fraction of a second on an idle machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// A config with an admin endpoint, one server block on `listen` and upstream `app` made
/// of `servers` (address, weight).
fn config(listen: &[u16], admin: u16, servers: &[(SocketAddr, u32)]) -> String {
    let listen: Vec<String> = listen
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
    let servers: Vec<String> = servers
        .iter()
        .map(|(a, w)| format!("  {{ addr = \"{a}\", weight = {w} }}"))
        .collect();
    format!(
        r#"[runtime]
workers = 2
shutdown_timeout = "5s"

[admin]
listen = "127.0.0.1:{admin}"

[[server]]
listen = [{}]
keepalive_timeout = "30s"

  [[server.location]]
  path = "/"
  proxy_pass = "app"

[upstream.app]
connect_timeout = "1s"
read_timeout = "5s"
servers = [
{}
]
"#,
        listen.join(", "),
        servers.join(",\n")
    )
}

fn generation(admin: SocketAddr) -> u64 {
    let r = get(admin, "/status").expect("admin /status");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("status is JSON");
    v["generation"].as_u64().expect("generation")
}

fn wait_generation(admin: SocketAddr, want: u64) {
    let start = Instant::now();
    while generation(admin) < want {
        assert!(
            start.elapsed() < PATIENCE,
            "generation {want} never published"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[derive(Default)]
struct Load {
    ok: AtomicU64,
    /// Responses per client thread: once each has one more, every request that started
    /// before a moment has finished.
    per_client: [AtomicU64; CLIENTS],
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
    /// When a response from backend "c" was first seen since the last reset.
    first_c: Mutex<Option<Instant>>,
}

const CLIENTS: usize = 4;

impl Load {
    fn per_client(&self) -> Vec<u64> {
        self.per_client
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }

    /// Waits until every client has finished a request it started after this call (so
    /// the requests in flight at the call are done).
    fn wait_round(&self) {
        let before = self.per_client();
        let start = Instant::now();
        while self
            .per_client()
            .iter()
            .zip(&before)
            .any(|(now, b)| *now < b + 2)
        {
            assert!(start.elapsed() < PATIENCE, "a client stalled");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Keepalive GETs in a loop until `stop`, as client number `me`; every error or non-200 is
/// a failure.
fn client(addr: SocketAddr, me: usize, stop: Arc<AtomicBool>, load: Arc<Load>) {
    let mut conn: Option<Conn> = None;
    let req = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    while !stop.load(Ordering::Relaxed) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(addr) {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    load.failed.fetch_add(1, Ordering::Relaxed);
                    load.errors.lock().unwrap().push(format!("connect: {e}"));
                    continue;
                }
            },
        };
        let res = c.send(req).and_then(|_| c.read_response(false));
        match res {
            Ok(r) if r.status == 200 => {
                load.ok.fetch_add(1, Ordering::Relaxed);
                load.per_client[me].fetch_add(1, Ordering::Relaxed);
                if r.header("x-backend") == Some("c") {
                    let mut f = load.first_c.lock().unwrap();
                    if f.is_none() {
                        *f = Some(Instant::now());
                    }
                }
                if r.header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    conn = None;
                }
            }
            Ok(r) => {
                load.failed.fetch_add(1, Ordering::Relaxed);
                load.errors
                    .lock()
                    .unwrap()
                    .push(format!("status {}: {}", r.status, r.text()));
                conn = None;
            }
            Err(e) => {
                load.failed.fetch_add(1, Ordering::Relaxed);
                load.errors.lock().unwrap().push(format!("io: {e}"));
                conn = None;
            }
        }
    }
}

#[test]
fn twenty_reloads_under_load_fail_no_request_and_follow_new_weights() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let c = Backend::start("c");
    let port = free_port();
    let admin_port = free_port();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut proxy = Proxy::start(
        &config(&[port], admin_port, &[(a.addr, 1), (b.addr, 1)]),
        addr,
    );

    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|me| {
            let (stop, load) = (stop.clone(), load.clone());
            std::thread::spawn(move || client(addr, me, stop, load))
        })
        .collect();
    load.wait_round();

    let backends = [&a, &b, &c];
    let mut latencies = Vec::new();
    for i in 0..20u64 {
        // Even steps drop "c" and vary a's weight; odd steps add "c" with the largest weight.
        let servers: Vec<(SocketAddr, u32)> = if i % 2 == 0 {
            vec![(a.addr, 1 + (i / 2 % 3) as u32), (b.addr, 1)]
        } else {
            vec![(a.addr, 1), (b.addr, 2), (c.addr, 3)]
        };
        *load.first_c.lock().unwrap() = None;
        let sent = Instant::now();
        proxy.reload(&config(&[port], admin_port, &servers));
        wait_generation(admin, i + 2);
        if i % 2 == 1 {
            // SIGHUP -> first response from the server only the new file has.
            let deadline = Instant::now() + PATIENCE;
            let seen = loop {
                if let Some(t) = *load.first_c.lock().unwrap() {
                    break t;
                }
                assert!(
                    Instant::now() < deadline,
                    "no response from the added server"
                );
                std::thread::sleep(Duration::from_millis(1));
            };
            latencies.push(seen.duration_since(sent));
        }
        // Requests that started on the previous generation finish on it: let them drain.
        load.wait_round();
        // Then a window of at least 200 requests, all on the new generation.
        let before: Vec<u64> = backends.iter().map(|b| b.requests()).collect();
        let counted = || backends.iter().map(|b| b.requests()).sum::<u64>();
        let from = counted();
        let start = Instant::now();
        while counted() < from + 200 {
            assert!(start.elapsed() < PATIENCE, "step {i}: traffic stalled");
            std::thread::sleep(Duration::from_millis(1));
        }
        let delta: Vec<u64> = backends
            .iter()
            .zip(&before)
            .map(|(b, n)| b.requests() - n)
            .collect();
        let total: u64 = delta.iter().sum();
        assert!(
            total >= 200,
            "step {i}: too little traffic to judge: {delta:?}"
        );
        let weights: Vec<u32> = backends
            .iter()
            .map(|bk| {
                servers
                    .iter()
                    .find(|(a, _)| *a == bk.addr)
                    .map_or(0, |s| s.1)
            })
            .collect();
        let wsum: u32 = weights.iter().sum();
        for (k, (&d, &w)) in delta.iter().zip(&weights).enumerate() {
            let share = d as f64 / total as f64;
            let want = w as f64 / wsum as f64;
            assert!(
                (share - want).abs() < 0.08,
                "step {i}: backend {k} got {share:.3} of {total}, weight share {want:.3} ({delta:?})"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.join().unwrap();
    }
    let failed = load.failed.load(Ordering::Relaxed);
    let ok = load.ok.load(Ordering::Relaxed);
    assert_eq!(
        failed,
        0,
        "{failed} failed of {ok}: {:?}\nproxy log:\n{}",
        load.errors.lock().unwrap(),
        proxy
            .log()
            .lines()
            .filter(|l| !l.contains("configuration reloaded") && !l.contains("listening"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(ok > 1000, "only {ok} requests under load");
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "reload latency (SIGHUP -> first response from the new config) over {} reloads: \
         min {:.1} ms, median {:.1} ms, max {:.1} ms; {ok} requests, 0 failed",
        latencies.len(),
        ms(latencies[0]),
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() - 1])
    );
    assert!(proxy.log().contains("configuration reloaded"));
    proxy.signal(libc::SIGTERM);
    assert_eq!(proxy.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn invalid_config_on_sighup_keeps_the_old_one_and_logs_where() {
    let a = Backend::start("a");
    let port = free_port();
    let admin_port = free_port();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let good = config(&[port], admin_port, &[(a.addr, 1)]);
    let proxy = Proxy::start(&good, addr);

    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let t = {
        let (stop, load) = (stop.clone(), load.clone());
        std::thread::spawn(move || client(addr, 0, stop, load))
    };
    // The bad address sits on a known line: find it to check the reported position.
    let bad = good.replace(
        &format!("addr = \"{}\"", a.addr),
        "addr = \"127.0.0.1:80x\"",
    );
    let line = bad.lines().position(|l| l.contains("80x")).unwrap() + 1;
    let col = bad.lines().nth(line - 1).unwrap().find("\"127").unwrap() + 1;
    proxy.reload(&bad);
    assert!(
        proxy.wait_log("reload refused", PATIENCE),
        "no refusal logged:\n{}",
        proxy.log()
    );
    let log = proxy.log();
    let want = format!("ringlb.toml:{line}:{col}");
    assert!(log.contains(&want), "the error does not say {want}:\n{log}");
    // The refusal is logged once the reload is over.
    assert_eq!(generation(admin), 1, "the bad file was published");
    let r = get(addr, "/").unwrap();
    assert_eq!(r.status, 200);
    let metrics = get(admin, "/metrics").unwrap().text();
    assert!(metrics.contains("ringlb_config_reloads_total{result=\"error\"} 1"));

    // Fixing the file and reloading again works.
    proxy.reload(&good);
    wait_generation(admin, 2);
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert_eq!(
        load.failed.load(Ordering::Relaxed),
        0,
        "{:?}",
        load.errors.lock().unwrap()
    );
    assert!(load.ok.load(Ordering::Relaxed) > 0);
}

/// Whether a connection to `addr` is accepted and served.
fn serves(addr: SocketAddr) -> bool {
    get(addr, "/").is_ok_and(|r| r.status == 200)
}

fn eventually(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < PATIENCE, "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn reload_adds_and_removes_listen_addresses() {
    let a = Backend::start("a");
    let p1 = free_port();
    let p2 = free_port();
    let admin_port = free_port();
    let addr1: SocketAddr = format!("127.0.0.1:{p1}").parse().unwrap();
    let addr2: SocketAddr = format!("127.0.0.1:{p2}").parse().unwrap();
    let proxy = Proxy::start(&config(&[p1], admin_port, &[(a.addr, 1)]), addr1);
    assert!(!serves(addr2));

    proxy.reload(&config(&[p1, p2], admin_port, &[(a.addr, 1)]));
    eventually("the added address accepts", || serves(addr2));
    assert!(serves(addr1));

    // A connection accepted on the address before it goes away carries on.
    let mut kept = Conn::open(addr2).unwrap();
    kept.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(kept.read_response(false).unwrap().status, 200);

    proxy.reload(&config(&[p1], admin_port, &[(a.addr, 1)]));
    eventually("the removed address refuses", || {
        std::net::TcpStream::connect_timeout(&addr2, Duration::from_millis(200)).is_err()
    });
    assert!(serves(addr1));
    kept.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(kept.read_response(false).unwrap().status, 200);
}

/// A request that began before a reload retries on the servers of its own generation, even
/// after the worker has moved on to a new one with fewer servers.
#[test]
fn a_retry_that_spans_a_reload_stays_on_its_generation() {
    let hang = Backend::start("hang");
    hang.set_behavior(common::Behavior::Hang);
    let a = Backend::start("a");
    let b = Backend::start("b");
    let port = free_port();
    let admin_port = free_port();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let short = |servers: &[(SocketAddr, u32)]| {
        config(&[port], admin_port, servers)
            .replace("read_timeout = \"5s\"", "read_timeout = \"1s\"")
    };
    // The heaviest server comes first in smooth round robin: every worker's first request
    // goes to the one that never answers.
    let proxy = Proxy::start(&short(&[(hang.addr, 5), (a.addr, 1), (b.addr, 1)]), addr);
    let pending: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || get(addr, "/")))
        .collect();
    // Both are held by the server that never answers before the reload.
    let start = Instant::now();
    while hang.requests() < 2 {
        assert!(
            start.elapsed() < PATIENCE,
            "the requests never reached the hung server"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    proxy.reload(&short(&[(a.addr, 1)]));
    wait_generation(admin, 2);
    // New requests on every worker move its selector to the new generation.
    for _ in 0..8 {
        assert_eq!(get(addr, "/").unwrap().status, 200);
    }
    for p in pending {
        let r = p.join().unwrap().expect("the retried request was cut");
        assert_eq!(r.status, 200);
        assert!(["a", "b"].contains(&r.text().as_str()), "{}", r.text());
    }
    assert!(!proxy.log().contains("panicked"), "{}", proxy.log());
}

fn status_servers(admin: SocketAddr) -> Vec<serde_json::Value> {
    let r = get(admin, "/status").expect("admin /status");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("status is JSON");
    v["upstreams"]["app"]["servers"]
        .as_array()
        .expect("servers")
        .clone()
}

fn server_field(servers: &[serde_json::Value], addr: SocketAddr, key: &str) -> Option<u64> {
    servers
        .iter()
        .find(|s| s["addr"] == addr.to_string())
        .and_then(|s| s[key].as_u64())
}

#[test]
fn counters_and_failure_state_survive_a_reload() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (port, admin) = (free_port(), free_port());
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let cfg = config(&[port], admin, &[(a.addr, 1), (b.addr, 1), (dead, 1)]);
    let p = Proxy::start(&cfg, format!("127.0.0.1:{port}").parse().unwrap());
    for _ in 0..30 {
        assert_eq!(get(p.addr, "/").unwrap().status, 200);
    }
    let before = status_servers(admin_addr);
    let a_requests = server_field(&before, a.addr, "requests").unwrap();
    let dead_fails = server_field(&before, dead, "fails").unwrap();
    assert!(a_requests > 0 && dead_fails > 0, "{before:?}");

    // Change a weight and drop b: a and the dead server stay, with their counters and the
    // dead one's passive failure (nginx resets both).
    p.reload(&config(&[port], admin, &[(a.addr, 3), (dead, 1)]));
    wait_generation(admin_addr, 2);
    // The reload logged what it changed, one event each.
    let (a_name, b_name) = (a.addr.to_string(), b.addr.to_string());
    let weight = [
        ("upstream", "app"),
        ("server", a_name.as_str()),
        ("change", "param"),
        ("param", "weight"),
        ("from", "1"),
        ("to", "3"),
    ];
    assert!(
        p.wait_event("configuration change", &weight, PATIENCE),
        "{}",
        p.log()
    );
    let removed = [("server", b_name.as_str()), ("change", "removed")];
    assert_eq!(p.events("configuration change", &removed), 1, "{}", p.log());
    assert_eq!(p.events("configuration change", &[]), 2, "{}", p.log());
    let after = status_servers(admin_addr);
    assert_eq!(server_field(&after, a.addr, "requests"), Some(a_requests));
    assert_eq!(server_field(&after, a.addr, "weight"), Some(3));
    assert_eq!(server_field(&after, dead, "fails"), Some(dead_fails));
    let dead_state = after
        .iter()
        .find(|s| s["addr"] == dead.to_string())
        .map(|s| s["state"].clone());
    assert_eq!(dead_state, Some(serde_json::json!("down")), "{after:?}");
    // The ejected server is not tried again within its fail_timeout.
    let dead_requests_before = server_field(&after, dead, "fails");
    for _ in 0..10 {
        assert_eq!(get(p.addr, "/").unwrap().status, 200);
    }
    assert_eq!(
        server_field(&status_servers(admin_addr), dead, "fails"),
        dead_requests_before
    );

    // b comes back as a new server: its counters start from zero.
    p.reload(&config(
        &[port],
        admin,
        &[(a.addr, 3), (b.addr, 1), (dead, 1)],
    ));
    wait_generation(admin_addr, 3);
    assert_eq!(
        server_field(&status_servers(admin_addr), b.addr, "requests"),
        Some(0)
    );
}
