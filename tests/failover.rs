//! Health and failover through the real proxy, under a steady load of concurrent keepalive
//! GETs: a killed, hung or failing backend costs no client request, a restarted one gets
//! traffic back, and a POST that reached a backend is never sent to another.
//!
//! Each test prints the times it measured (`cargo test --test failover -- --nocapture`).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::client::Conn;
use common::proxy::server;
use common::{free_port, Backend, Behavior, Proxy};

const INTERVAL_MS: u64 = 200;
const PASSES: u64 = 2;

/// A config with four knobs: its servers, their options (`extras`, missing ones empty), the
/// upstream's extra lines, a health check.
fn config(
    port: u16,
    backends: &[&Backend],
    extras: &[&str],
    upstream_extra: &str,
    health: bool,
) -> String {
    let servers: Vec<String> = backends
        .iter()
        .zip(extras.iter().chain(std::iter::repeat(&"")))
        .map(|(b, e)| server(b.addr, e))
        .collect();
    let hc = if health {
        format!(
            r#"
  [upstream.app.health_check]
  path = "/health"
  interval = "{INTERVAL_MS}ms"
  timeout = "200ms"
  fails = 2
  passes = {PASSES}
  status = "200-399"
"#
        )
    } else {
        String::new()
    };
    format!(
        r#"
[runtime]
workers = 2
shutdown_timeout = "2s"

[[server]]
listen = ["127.0.0.1:{port}"]
keepalive_timeout = "30s"

  [[server.location]]
  path = "/"
  proxy_pass = "app"

[upstream.app]
connect_timeout = "500ms"
read_timeout = "1s"
{upstream_extra}
servers = [
{}
]
{hc}
"#,
        servers.join(",\n")
    )
}

fn start(backends: &[&Backend], extras: &[&str], upstream_extra: &str, health: bool) -> Proxy {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    Proxy::start(
        &config(port, backends, extras, upstream_extra, health),
        addr,
    )
}

/// What the load saw.
#[derive(Default)]
struct Seen {
    ok: u64,
    failures: Vec<String>,
    /// Backend name -> (responses, when the last one arrived).
    by_backend: HashMap<String, (u64, Instant)>,
    /// Backend name -> when its first response after `mark` arrived.
    first_after_mark: HashMap<String, Instant>,
    mark: Option<Instant>,
    slowest: Duration,
}

/// `threads` clients, each looping keepalive GETs until stopped; every non-200 and every
/// I/O error is a failure.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let threads = (0..threads)
            .map(|_| {
                let (stop, seen) = (stop.clone(), seen.clone());
                std::thread::spawn(move || client_loop(addr, &stop, &seen))
            })
            .collect();
        Load {
            stop,
            seen,
            threads,
        }
    }

    /// Responses from `name` so far.
    fn from(&self, name: &str) -> u64 {
        let s = self.seen.lock().unwrap();
        s.by_backend.get(name).map_or(0, |e| e.0)
    }

    /// From now on, note the first response of each backend.
    fn mark(&self) {
        let mut s = self.seen.lock().unwrap();
        s.mark = Some(Instant::now());
        s.first_after_mark.clear();
    }

    fn first_after_mark(&self, name: &str) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap()
            .first_after_mark
            .get(name)
            .copied()
    }

    fn finish(self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.seen)
            .ok()
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

fn client_loop(addr: SocketAddr, stop: &AtomicBool, seen: &Mutex<Seen>) {
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::SeqCst) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(addr) {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    seen.lock().unwrap().failures.push(format!("connect: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        let t = Instant::now();
        let r = c
            .send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            .and_then(|()| c.read_response(false));
        let took = t.elapsed();
        let now = Instant::now();
        let mut s = seen.lock().unwrap();
        s.slowest = s.slowest.max(took);
        match r {
            Ok(res) if res.status == 200 => {
                s.ok += 1;
                let name = res.header("x-backend").unwrap_or("?").to_string();
                let e = s.by_backend.entry(name.clone()).or_insert((0, now));
                e.0 += 1;
                e.1 = now;
                if s.mark.is_some() {
                    s.first_after_mark.entry(name).or_insert(now);
                }
                if res
                    .header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    conn = None;
                }
            }
            Ok(res) => {
                s.failures
                    .push(format!("status {}: {}", res.status, res.text()));
                conn = None;
            }
            Err(e) => {
                s.failures.push(format!("io: {e}"));
                conn = None;
            }
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Polls until `cond` holds (or `within` passes); returns when it first held.
fn when(within: Duration, mut cond: impl FnMut() -> bool) -> Option<Instant> {
    let start = Instant::now();
    while start.elapsed() < within {
        if cond() {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn assert_no_failures(seen: &Seen, proxy: &Proxy) {
    assert!(
        seen.failures.is_empty(),
        "{} failed client requests of {}: {:?}\nproxy log:\n{}",
        seen.failures.len(),
        seen.ok + seen.failures.len() as u64,
        &seen.failures[..seen.failures.len().min(10)],
        proxy.log()
    );
}

#[test]
fn killed_backend_costs_no_request_and_gets_traffic_back_after_restart() {
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    let proxy = start(&[&a, &b, &c], &[], "", true);
    let load = Load::start(proxy.addr, 8);
    assert!(when(Duration::from_secs(5), || load.from("c") > 20).is_some());

    let killed = Instant::now();
    c.kill();
    let first_fail = when(Duration::from_secs(5), || {
        proxy
            .log()
            .contains(&format!("server {} check failed", c.addr))
    })
    .expect("a failed check is logged");
    let down = when(Duration::from_secs(5), || {
        proxy.log().contains(&format!(
            "upstream app server {} down: 2 failed checks (connect refused)",
            c.addr
        ))
    })
    .expect("the server goes down");
    // Keep the load on the two others for a while.
    std::thread::sleep(Duration::from_millis(500));
    let before = load.from("c");

    let restarted = Instant::now();
    load.mark();
    c.restart();
    let up = when(Duration::from_secs(5), || {
        proxy.log().contains(&format!(
            "upstream app server {} up: 2 passed checks",
            c.addr
        ))
    })
    .expect("the server comes back up");
    let traffic = when(Duration::from_secs(5), || {
        load.first_after_mark("c").is_some()
    })
    .and(load.first_after_mark("c"))
    .expect("the restarted server gets traffic again");
    std::thread::sleep(Duration::from_millis(300));
    let seen = load.finish();

    println!(
        "kill: first failed check after {} ms, down after {} ms (first failed check to down {} ms); \
         restart: up after {} ms, first response after {} ms; {} requests, slowest {} ms",
        ms(first_fail - killed),
        ms(down - killed),
        ms(down - first_fail),
        ms(up - restarted),
        ms(traffic - restarted),
        seen.ok,
        ms(seen.slowest)
    );
    assert_no_failures(&seen, &proxy);
    assert!(
        seen.by_backend["c"].0 > before,
        "c answered after the restart"
    );
    // passes * interval plus one interval, plus room for a loaded test machine.
    let bound = Duration::from_millis((PASSES + 1) * INTERVAL_MS + 400);
    assert!(
        traffic - restarted <= bound,
        "recovery took {} ms",
        ms(traffic - restarted)
    );
}

#[test]
fn hung_backend_is_ejected_and_its_requests_retried() {
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    let proxy = start(&[&a, &b, &c], &[], "", true);
    let load = Load::start(proxy.addr, 8);
    assert!(when(Duration::from_secs(5), || c.requests() > 20).is_some());

    let hung = Instant::now();
    c.set_behavior(Behavior::Hang);
    let down = when(Duration::from_secs(5), || {
        proxy.log().contains(&format!(
            "upstream app server {} down: 2 failed checks (timed out)",
            c.addr
        ))
    })
    .expect("the hung server goes down");
    // Zero traffic: no more client requests (`GET /`; health checks are on /health).
    let to_root = || c.heads().iter().filter(|h| h.starts_with("GET / ")).count();
    let mut last = (to_root(), Instant::now());
    let quiet = when(Duration::from_secs(5), || {
        let n = to_root();
        if n != last.0 {
            last = (n, Instant::now());
        }
        last.1.elapsed() >= Duration::from_millis(3 * INTERVAL_MS)
    })
    .expect("traffic to the hung server stops");
    let last_request = last.1;
    // Let the requests stuck on it time out and be retried.
    std::thread::sleep(Duration::from_millis(1200));
    let seen = load.finish();
    let heads_to_root = to_root();
    println!(
        "hang: down after {} ms, last request reached it {} ms after the hang (quiet by {} ms); \
         {} requests, slowest {} ms (read_timeout 1000 ms); {} client requests had reached it",
        ms(down - hung),
        ms(last_request.saturating_duration_since(hung)),
        ms(quiet - hung),
        seen.ok,
        ms(seen.slowest),
        heads_to_root
    );
    assert_no_failures(&seen, &proxy);
    assert!(
        seen.slowest < Duration::from_millis(1000 + 1000),
        "a request took {} ms",
        ms(seen.slowest)
    );
}

#[test]
fn backend_503s_are_retried_while_others_are_up() {
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    c.set_behavior(Behavior::Fail503);
    let proxy = start(
        &[&a, &b, &c],
        &[],
        r#"next_upstream = ["error", "timeout", "http_503"]"#,
        true,
    );
    let load = Load::start(proxy.addr, 8);
    std::thread::sleep(Duration::from_millis(1500));
    let seen = load.finish();
    println!(
        "503: {} requests, {} reached the failing backend",
        seen.ok,
        c.requests()
    );
    assert_no_failures(&seen, &proxy);
    assert!(c.requests() > 0, "the failing backend was tried");
    assert!(!seen.by_backend.contains_key("c"));
    assert!(proxy.log().contains(&format!(
        "upstream app server {} temporarily disabled: 1 failures within fail_timeout",
        c.addr
    )));
}

/// `POST /echo?id=N` on a new connection.
fn post(addr: SocketAddr, id: usize) -> common::client::Response {
    let raw =
        format!("POST /echo?id={id} HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello");
    common::request(addr, raw.as_bytes()).unwrap()
}

#[test]
fn posts_are_not_retried_once_sent() {
    let (good, bad) = (Backend::start("good"), Backend::start("bad"));
    // max_fails = 0 keeps the failing server in rotation, so several POSTs reach it.
    let proxy = start(&[&good, &bad], &["", "max_fails = 0"], "", false);
    // Warm pooled connections to `bad`, so that some POSTs go out on a reused connection
    // (which must not be replayed either).
    for _ in 0..8 {
        assert_eq!(common::get(proxy.addr, "/").unwrap().status, 200);
    }
    bad.set_behavior(Behavior::CloseAfterRead);
    let mut failed = 0;
    for id in 0..16 {
        let res = post(proxy.addr, id);
        let tag = format!("id={id} ");
        let at_bad = bad.heads().iter().filter(|h| h.contains(&tag)).count();
        let at_good = good.heads().iter().filter(|h| h.contains(&tag)).count();
        match res.status {
            502 => {
                failed += 1;
                assert_eq!(at_bad, 1, "POST {id} reached the failing server once");
                assert_eq!(at_good, 0, "POST {id} was not sent to the other server");
            }
            200 => {
                assert_eq!((at_good, at_bad), (1, 0), "POST {id}");
            }
            s => panic!("POST {id}: status {s}"),
        }
    }
    assert!(failed > 0, "some POSTs reached the failing server");
}

#[test]
fn without_health_check_a_connect_probe_ends_a_passive_ejection() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    // fail_timeout would keep a restarted server out for 3 s; the connect probe (every
    // min(1 s, fail_timeout / 2)) lets it back sooner.
    let proxy = start(&[&a, &b], &["", "fail_timeout = \"3s\""], "", false);
    let load = Load::start(proxy.addr, 4);
    // From the first second of the process's life: the probe ends the ejection with a
    // single trial request.
    assert!(when(Duration::from_secs(10), || load.from("b") > 20).is_some());
    b.kill();
    assert!(proxy.wait_log(
        &format!("server {} temporarily disabled: 1 failures", b.addr),
        Duration::from_secs(5)
    ));
    std::thread::sleep(Duration::from_millis(300));
    let restarted = Instant::now();
    load.mark();
    b.restart();
    let back = when(Duration::from_secs(5), || {
        load.first_after_mark("b").is_some()
    })
    .unwrap_or_else(|| panic!("no traffic to the restarted server:\n{}", proxy.log()));
    let seen = load.finish();
    println!(
        "passive: restart to first response {} ms (fail_timeout 3 s); {} requests",
        ms(back - restarted),
        seen.ok
    );
    assert_no_failures(&seen, &proxy);
    assert!(proxy
        .log()
        .contains(&format!("server {} accepts connections again", b.addr)));
}
