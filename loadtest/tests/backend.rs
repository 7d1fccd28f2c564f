//! `ringload serve` speaking HTTP/1.1 with raw sockets: pipelining, request bodies,
//! HTTP/1.0, Connection: close, health, signals.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Backend;

fn connect(backend: &Backend) -> TcpStream {
    let s = TcpStream::connect(backend.addrs[0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads until `n` responses (counted by status lines) arrived or the peer closed.
fn read_responses(s: &mut TcpStream, n: usize) -> String {
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while text.matches("HTTP/1.1 ").count() < n || !text.ends_with('\n') {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => text.push_str(&String::from_utf8_lossy(&buf[..k])),
        }
    }
    text
}

fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0))
}

#[test]
fn pipelined_requests_with_bodies_are_all_answered_in_order() {
    let backend = Backend::start(1, &[]);
    let mut s = connect(&backend);
    let requests = concat!(
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "GET /status/404 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    // Byte by byte first half, the rest at once: framing must not depend on packet edges.
    let (first, rest) = requests.split_at(70);
    for b in first.bytes() {
        s.write_all(&[b]).unwrap();
    }
    s.write_all(rest.as_bytes()).unwrap();
    let text = read_responses(&mut s, 4);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "200", "200", "404"], "{text}");
    let header = format!("X-Backend: {}\r\n", backend.addrs[0]);
    assert_eq!(text.matches(&header).count(), 4);
    assert!(text.contains(&format!("\r\n\r\n{}\n", backend.addrs[0])));
}

#[test]
fn connection_close_and_http10_end_the_connection() {
    let backend = Backend::start(1, &[]);
    let mut s = connect(&backend);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let text = read_responses(&mut s, 1);
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(closed_by_peer(&mut s));

    let mut s = connect(&backend);
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let text = read_responses(&mut s, 1);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(closed_by_peer(&mut s));

    let mut s = connect(&backend);
    s.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let text = read_responses(&mut s, 2);
    assert_eq!(
        text.matches("Connection: keep-alive\r\n").count(),
        2,
        "{text}"
    );
}

#[test]
fn health_head_and_body_size_are_honoured() {
    let backend = Backend::start(1, &["--body-bytes", "1000", "--delay", "200ms"]);
    let mut s = connect(&backend);
    let started = Instant::now();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let text = read_responses(&mut s, 1);
    assert!(
        text.starts_with("HTTP/1.1 200 OK") && text.ends_with("ok\n"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "health is not delayed"
    );

    let started = Instant::now();
    s.write_all(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let text = read_responses(&mut s, 1);
    assert!(
        text.contains("Content-Length: 1000\r\n") && text.ends_with("\r\n\r\n"),
        "{text}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "--delay applies"
    );
}

#[test]
fn malformed_request_gets_400_and_a_close() {
    let backend = Backend::start(1, &[]);
    let mut s = connect(&backend);
    s.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    let text = read_responses(&mut s, 1);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(closed_by_peer(&mut s));
}

#[test]
fn serve_exits_cleanly_on_sigterm_and_sigint() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut backend = Backend::start(2, &["--threads", "2"]);
        let _ = connect(&backend);
        // SAFETY: kill(2) on the pid of a child this test spawned and still owns.
        unsafe { libc::kill(backend.child.id() as libc::pid_t, signal) };
        let started = Instant::now();
        let status = loop {
            if let Some(status) = backend.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "serve did not stop"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "{status:?}");
    }
}
