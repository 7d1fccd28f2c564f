//! Graceful stop through the real binary: SIGTERM lets a request in flight finish and exits
//! 0, closes idle keepalive connections at once, and a second SIGTERM exits without waiting.

#[allow(unused_imports)]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::client::Conn;
use common::proxy::{server, simple_config};
use common::{free_port, Backend, Proxy};

/// How long a test waits for an event that takes a fraction of a second on an idle machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn start(shutdown_timeout: &str) -> (Backend, Proxy, SocketAddr) {
    let b = Backend::start("a");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = simple_config(port, &[server(b.addr, "")], "").replace(
        "shutdown_timeout = \"5s\"",
        &format!("shutdown_timeout = \"{shutdown_timeout}\""),
    );
    let proxy = Proxy::start(&cfg, addr);
    (b, proxy, addr)
}

/// Waits until `b` has received `n` requests (they are in flight through the proxy).
fn wait_requests(b: &Backend, n: u64) {
    let start = Instant::now();
    while b.requests() < n {
        assert!(
            start.elapsed() < PATIENCE,
            "the request never reached the backend"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `GET path` on a new keepalive connection and reads the response on a thread.
fn request_in_background(
    addr: SocketAddr,
    path: &str,
) -> std::thread::JoinHandle<std::io::Result<common::client::Response>> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::spawn(move || {
        let mut c = Conn::open(addr)?;
        c.send(req.as_bytes())?;
        c.read_response(false)
    })
}

#[test]
fn sigterm_lets_a_slow_request_finish_and_exits_zero() {
    let (b, mut proxy, addr) = start("60s");
    let slow = request_in_background(addr, "/slow?ms=1500");
    wait_requests(&b, 1);
    proxy.signal(libc::SIGTERM);
    assert!(proxy.wait_event("stop signal", &[("signal", "SIGTERM")], PATIENCE));
    // New connections are refused once the listeners are closed (within a worker tick).
    let start = Instant::now();
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        assert!(start.elapsed() < PATIENCE, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = slow.join().unwrap().expect("the slow request was cut");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "a");
    // The response said the connection ends (ringlb is stopping).
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(proxy.wait_exit(PATIENCE), Some(0));
}

#[test]
fn idle_keepalive_connections_are_closed_at_stop() {
    // A shutdown_timeout far past the wait below: exiting within the wait means the
    // process did not wait for it.
    let (_b, mut proxy, addr) = start("1h");
    let mut idle: Vec<Conn> = (0..3)
        .map(|_| {
            let mut c = Conn::open(addr).unwrap();
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            assert_eq!(c.read_response(false).unwrap().status, 200);
            c
        })
        .collect();
    proxy.signal(libc::SIGTERM);
    for c in &mut idle {
        assert!(
            c.is_closed(PATIENCE),
            "an idle keepalive connection stayed open"
        );
    }
    // Nothing was in flight: the process does not wait for shutdown_timeout (1 h).
    assert_eq!(proxy.wait_exit(PATIENCE), Some(0));
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let (b, mut proxy, addr) = start("1h");
    let slow = request_in_background(addr, "/slow?ms=3600000");
    wait_requests(&b, 1);
    proxy.signal(libc::SIGTERM);
    assert!(proxy.wait_event("stop signal", &[("signal", "SIGTERM")], PATIENCE));
    // Still draining the slow request.
    assert_eq!(proxy.wait_exit(Duration::from_millis(200)), None);
    proxy.signal(libc::SIGTERM);
    // Well before the slow request (an hour) or shutdown_timeout (an hour) could end.
    assert_eq!(proxy.wait_exit(PATIENCE), Some(0));
    assert_eq!(
        proxy.events("second stop signal", &[("signal", "SIGTERM")]),
        1
    );
    // The in-flight request's connection went with the process.
    assert!(slow.join().unwrap().is_err());
}

/// stderr gone (the terminal closed, the pipe to a log collector broke): logging must not
/// take any thread down with it. A log line written to a broken stderr used to panic the
/// thread that wrote it (tracing-subscriber reports its own write errors with `eprintln!`,
/// which panics when stderr fails): the signal thread on SIGHUP, after which SIGTERM was
/// ignored, or a worker logging a failed server.
#[test]
fn a_broken_stderr_costs_no_thread() {
    let b = Backend::start("a");
    // A server that refuses connections: every pick of it logs a failure on a worker.
    let dead = common::reserved_listener().local_addr().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = simple_config(
        port,
        &[server(b.addr, ""), server(dead, "max_fails = 0")],
        "",
    );
    let dir = common::proxy::temp_dir();
    let path = dir.join("ringlb.toml");
    std::fs::write(&path, cfg).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ringlb"))
        .arg("-c")
        .arg(&path)
        .env("RINGLB_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed if an assertion below fails first.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reap(child);
    let child_stderr = child.0.stderr.take();
    let pid = child.0.id() as i32;
    let start = Instant::now();
    while common::client::get(addr, "/").map(|r| r.status).ok() != Some(200) {
        assert!(start.elapsed() < PATIENCE, "ringlb did not start serving");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The read end goes away: every later write to stderr fails with EPIPE.
    drop(child_stderr);
    for _ in 0..10 {
        let r = common::client::get(addr, "/").expect("served with stderr gone");
        assert_eq!(r.status, 200);
    }
    unsafe { libc::kill(pid, libc::SIGHUP) };
    // A reload logs; give it every chance to run before the stop.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(common::client::get(addr, "/").unwrap().status, 200);
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > PATIENCE {
            panic!("SIGTERM with a broken stderr did not stop ringlb");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}
