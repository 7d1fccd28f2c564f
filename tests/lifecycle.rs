//! Graceful stop through the real binary: SIGTERM lets a request in flight finish and exits
//! 0, closes idle keepalive connections at once, and a second SIGTERM exits without waiting.

#[allow(unused_imports)]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::client::Conn;
use common::proxy::{server, simple_config};
use common::{free_port, Backend, Proxy};

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
    let (_b, mut proxy, addr) = start("10s");
    let slow = request_in_background(addr, "/slow?ms=1500");
    std::thread::sleep(Duration::from_millis(300));
    proxy.signal(libc::SIGTERM);
    assert!(proxy.wait_log("stop signal", Duration::from_secs(2)));
    // New connections are refused once the listeners are closed (within a worker tick).
    let start = Instant::now();
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "still accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = slow.join().unwrap().expect("the slow request was cut");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "a");
    // The response said the connection ends (ringlb is stopping).
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(proxy.wait_exit(Duration::from_secs(5)), Some(0));
}

#[test]
fn idle_keepalive_connections_are_closed_at_stop() {
    let (_b, mut proxy, addr) = start("10s");
    let mut idle: Vec<Conn> = (0..3)
        .map(|_| {
            let mut c = Conn::open(addr).unwrap();
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            assert_eq!(c.read_response(false).unwrap().status, 200);
            c
        })
        .collect();
    let t0 = Instant::now();
    proxy.signal(libc::SIGTERM);
    for c in &mut idle {
        assert!(
            c.is_closed(Duration::from_secs(3)),
            "an idle keepalive connection stayed open"
        );
    }
    // Nothing was in flight: the process does not wait for shutdown_timeout (10 s).
    assert_eq!(proxy.wait_exit(Duration::from_secs(5)), Some(0));
    assert!(t0.elapsed() < Duration::from_secs(9));
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let (_b, mut proxy, addr) = start("60s");
    let slow = request_in_background(addr, "/slow?ms=20000");
    std::thread::sleep(Duration::from_millis(300));
    proxy.signal(libc::SIGTERM);
    assert!(proxy.wait_log("stop signal", Duration::from_secs(2)));
    // Still draining the slow request.
    assert_eq!(proxy.wait_exit(Duration::from_millis(500)), None);
    proxy.signal(libc::SIGTERM);
    assert_eq!(proxy.wait_exit(Duration::from_secs(3)), Some(0));
    assert!(proxy.log().contains("second stop signal"));
    // The in-flight request's connection went with the process.
    assert!(slow.join().unwrap().is_err());
}
