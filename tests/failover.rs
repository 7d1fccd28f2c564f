//! Health and failover through the real proxy, under a steady load of concurrent keepalive
//! GETs: a killed, hung or failing backend costs no client request, a restarted one gets
//! traffic back, and a POST that reached a backend is never sent to another.
//!
//! Tests wait for events (a log event with its fields, a backend's request count) with
//! deadlines far longer than they need, and assert behaviour, not how long it took; each
//! prints the times it measured (`cargo test --test failover -- --nocapture`).

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
/// How long a test waits for an event that takes a fraction of a second on an idle
/// machine: long enough for a loaded CI machine, short enough to fail a broken build.
const PATIENCE: Duration = Duration::from_secs(30);

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
    /// Request id (`X-Req`, unique per request) -> the backend that answered it.
    answered: HashMap<String, String>,
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
            .map(|t| {
                let (stop, seen) = (stop.clone(), seen.clone());
                std::thread::spawn(move || client_loop(addr, t, &stop, &seen))
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

    /// Requests answered so far.
    fn ok(&self) -> u64 {
        self.seen.lock().unwrap().ok
    }

    /// Which backend answered request `id`, if it has been answered.
    fn answered_by(&self, id: &str) -> Option<String> {
        self.seen.lock().unwrap().answered.get(id).cloned()
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

/// The request id a backend saw in a request head.
fn req_id(head: &str) -> Option<&str> {
    head.lines()
        .find_map(|l| {
            l.strip_prefix("X-Req: ")
                .or_else(|| l.strip_prefix("x-req: "))
        })
        .map(str::trim)
}

fn client_loop(addr: SocketAddr, thread: usize, stop: &AtomicBool, seen: &Mutex<Seen>) {
    let mut conn: Option<Conn> = None;
    let mut n = 0u64;
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
        n += 1;
        let id = format!("{thread}-{n}");
        let req = format!("GET / HTTP/1.1\r\nHost: test\r\nX-Req: {id}\r\n\r\n");
        let t = Instant::now();
        let r = c.send(req.as_bytes()).and_then(|()| c.read_response(false));
        let took = t.elapsed();
        let now = Instant::now();
        let mut s = seen.lock().unwrap();
        s.slowest = s.slowest.max(took);
        match r {
            Ok(res) if res.status == 200 => {
                s.ok += 1;
                let name = res.header("x-backend").unwrap_or("?").to_string();
                s.answered.insert(id, name.clone());
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
    // The requests cut by the kill put c out for an hour by max_fails: only its health
    // check passing again (which clears passive failures) can bring it back in this test.
    let proxy = start(&[&a, &b, &c], &["", "", "fail_timeout = \"1h\""], "", true);
    let load = Load::start(proxy.addr, 8);
    assert!(when(PATIENCE, || load.from("c") > 20).is_some());
    let server = c.addr.to_string();

    let killed = Instant::now();
    c.kill();
    let first_fail = when(PATIENCE, || {
        proxy.events("health check failed", &[("server", &server)]) > 0
    })
    .expect("a failed check is logged");
    let down = when(PATIENCE, || {
        let fields = [
            ("upstream", "app"),
            ("server", &server),
            ("state", "down"),
            ("checks", "2"),
            ("reason", "connect refused"),
        ];
        proxy.events("", &fields) > 0
    })
    .expect("the server goes down");
    // Keep the load on the two others for a while.
    let (from_a, from_b) = (load.from("a"), load.from("b"));
    assert!(when(PATIENCE, || load.from("a") > from_a + 50
        && load.from("b") > from_b + 50)
    .is_some());
    let before = load.from("c");

    let restarted = Instant::now();
    load.mark();
    c.restart();
    let up = when(PATIENCE, || {
        let fields = [
            ("server", server.as_str()),
            ("state", "up"),
            ("checks", "2"),
        ];
        proxy.events("", &fields) > 0
    })
    .expect("the server comes back up");
    let traffic = when(PATIENCE, || load.first_after_mark("c").is_some())
        .and(load.first_after_mark("c"))
        .expect("the restarted server gets traffic again");
    assert!(when(PATIENCE, || load.from("c") > before + 20).is_some());
    let seen = load.finish();

    println!(
        "kill: first failed check after {} ms, down after {} ms (first failed check to down {} ms); \
         restart: up after {} ms, first response after {} ms (interval {INTERVAL_MS} ms, passes \
         {PASSES}); {} requests, slowest {} ms",
        ms(first_fail - killed),
        ms(down - killed),
        ms(down - first_fail),
        ms(up - restarted),
        ms(traffic - restarted),
        seen.ok,
        ms(seen.slowest)
    );
    assert_no_failures(&seen, &proxy);
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
    assert!(when(PATIENCE, || c.requests() > 20).is_some());
    let server = c.addr.to_string();

    let hung = Instant::now();
    c.set_behavior(Behavior::Hang);
    let down = when(PATIENCE, || {
        let fields = [
            ("server", server.as_str()),
            ("state", "down"),
            ("checks", "2"),
            ("reason", "timed out"),
        ];
        proxy.events("", &fields) > 0
    })
    .expect("the hung server goes down");
    // Every client request that reached c (`GET /`; health checks are on /health) is
    // answered: those stuck on it by another server once its read_timeout passes.
    let at_c = || -> Vec<String> {
        c.heads()
            .iter()
            .filter(|h| h.starts_with("GET / "))
            .filter_map(|h| req_id(h).map(String::from))
            .collect()
    };
    let rescued = when(PATIENCE, || {
        at_c().iter().all(|id| load.answered_by(id).is_some())
    })
    .expect("every request stuck on the hung server is answered");
    // Zero traffic once it is down: c sees no new client request while many more are served.
    let (reached, ok) = (at_c().len(), load.ok());
    assert!(when(PATIENCE, || load.ok() > ok + 300).is_some());
    let seen = load.finish();
    assert_eq!(
        at_c().len(),
        reached,
        "requests reached the hung server after it was down"
    );
    println!(
        "hang: down after {} ms, stuck requests answered {} ms after the hang; {} requests, \
         slowest {} ms (read_timeout 1000 ms); {} client requests had reached it",
        ms(down - hung),
        ms(rescued - hung),
        seen.ok,
        ms(seen.slowest),
        reached
    );
    assert_no_failures(&seen, &proxy);
    // Each request c held was retried once, on another server.
    let elsewhere: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|x| x.heads())
        .filter_map(|h| req_id(&h).map(String::from))
        .collect();
    let mut stuck = 0;
    for id in at_c() {
        if seen.answered[&id] != "c" {
            stuck += 1;
            let n = elsewhere.iter().filter(|e| **e == id).count();
            assert_eq!(n, 1, "request {id} held by c reached the others {n} times");
        }
    }
    assert!(stuck > 0, "no request was held by the hung server");
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
    let server = c.addr.to_string();
    let fields = [
        ("upstream", "app"),
        ("server", server.as_str()),
        ("fails", "1"),
    ];
    assert!(
        proxy.wait_event("temporarily disabled", &fields, PATIENCE),
        "{}",
        proxy.log()
    );
    assert!(when(PATIENCE, || load.ok() > 300).is_some());
    let seen = load.finish();
    println!(
        "503: {} requests, {} reached the failing backend",
        seen.ok,
        c.requests()
    );
    assert_no_failures(&seen, &proxy);
    assert!(c.requests() > 0, "the failing backend was tried");
    assert!(!seen.by_backend.contains_key("c"));
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
    // fail_timeout would keep a restarted server out for an hour: only the connect probe
    // (every min(1 s, fail_timeout / 2)) can let it back in this test.
    let proxy = start(&[&a, &b], &["", "fail_timeout = \"1h\""], "", false);
    let load = Load::start(proxy.addr, 4);
    // From the first second of the process's life: the probe ends the ejection with a
    // single trial request.
    assert!(when(PATIENCE, || load.from("b") > 20).is_some());
    let server = b.addr.to_string();
    b.kill();
    assert!(proxy.wait_event(
        "temporarily disabled",
        &[("server", &server), ("fails", "1")],
        PATIENCE
    ));
    let restarted = Instant::now();
    load.mark();
    b.restart();
    let back = when(PATIENCE, || load.first_after_mark("b").is_some())
        .unwrap_or_else(|| panic!("no traffic to the restarted server:\n{}", proxy.log()));
    let seen = load.finish();
    println!(
        "passive: restart to first response {} ms (fail_timeout 1 h); {} requests",
        ms(back - restarted),
        seen.ok
    );
    assert_no_failures(&seen, &proxy);
    // At least once: a trial that fails (a request that was on its way when the server
    // died, say) puts the server out again, and the probe ends that ejection too.
    assert!(
        proxy.events("connect probe ended the ejection", &[("server", &server)]) >= 1,
        "{}",
        proxy.log()
    );
}

/// A unix-socket HTTP server that answers every request (one per connection) with the
/// status in `status`.
fn unix_server(path: &std::path::Path, status: Arc<std::sync::atomic::AtomicU16>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let status = status.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(&conn);
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let code = status.load(Ordering::SeqCst);
                let _ = (&conn).write_all(
                    format!(
                        "HTTP/1.1 {code} X\r\nContent-Length: 1\r\nX-Backend: u\r\n\
                         Connection: close\r\n\r\nu"
                    )
                    .as_bytes(),
                );
            });
        }
    });
}

#[test]
fn a_unix_socket_server_is_health_checked() {
    let a = Backend::start("a");
    let dir = common::proxy::temp_dir();
    let sock = dir.join("app.sock");
    let status = Arc::new(std::sync::atomic::AtomicU16::new(503));
    unix_server(&sock, status.clone());
    let port = free_port();
    let name = format!("unix:{}", sock.display());
    let cfg = config(port, &[&a], &[], "", true).replace(
        &server(a.addr, ""),
        &format!("{},\n  {{ addr = \"{name}\" }}", server(a.addr, "")),
    );
    let proxy = Proxy::start(&cfg, format!("127.0.0.1:{port}").parse().unwrap());
    let down = [
        ("server", name.as_str()),
        ("state", "down"),
        ("reason", "status 503"),
    ];
    assert!(proxy.wait_event("", &down, PATIENCE), "{}", proxy.log());
    status.store(200, Ordering::SeqCst);
    let up = [("server", name.as_str()), ("state", "up")];
    assert!(proxy.wait_event("", &up, PATIENCE), "{}", proxy.log());
    let _ = std::fs::remove_dir_all(&dir);
}
