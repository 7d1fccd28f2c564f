//! Exchange integrity through the real binary: every response reaches its own client and
//! only it, whatever a backend sends beyond the end of a response, and an early answer from
//! a backend (a 403 before the request body was read) reaches the client as that answer.
//!
//! The misbehaving backend answers every request with its own path as the body, so a
//! response delivered to the wrong client is visible as a body that names another path.

#[allow(unused_imports)]
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::client::{Conn, Response};
use common::{free_port, Proxy};

/// What the backend has done, for tests to wait on.
#[derive(Default)]
struct Events {
    /// Stray bytes sent after a response, per path.
    stray_sent: Vec<String>,
    /// Requests received on a connection after stray bytes were sent on it.
    after_stray: Vec<String>,
    accepts: u64,
}

struct Misbehaving {
    addr: SocketAddr,
    events: Arc<(Mutex<Events>, Condvar)>,
}

impl Misbehaving {
    fn start() -> Misbehaving {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let events: Arc<(Mutex<Events>, Condvar)> = Arc::default();
        let ev = events.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                ev.0.lock().unwrap().accepts += 1;
                let ev = ev.clone();
                std::thread::spawn(move || serve_misbehaving(s, &ev));
            }
        });
        Misbehaving { addr, events }
    }

    /// Waits until stray bytes were sent after the response to `path`.
    fn wait_stray(&self, path: &str) {
        let (m, cv) = &*self.events;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut g = m.lock().unwrap();
        while !g.stray_sent.iter().any(|p| p == path) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the backend never sent its stray bytes");
            g = cv.wait_timeout(g, left).unwrap().0;
        }
    }

    fn after_stray(&self) -> Vec<String> {
        self.events.0.lock().unwrap().after_stray.clone()
    }
}

/// The response a well-behaved server would give `path` (body = the path).
fn answer(path: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
        path.len()
    )
    .into_bytes()
}

/// A complete, plausible response that belongs to nobody: if any client ever receives it,
/// the proxy forwarded bytes past the end of a response.
const STRAY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n/STRAY!";

/// Reads one request head (and a Content-Length body); `None` at end of stream.
fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, String, Vec<u8>)> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut tmp = [0u8; 16384];
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    let mut words = head.split(' ');
    let method = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("/").to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < len {
        let mut tmp = [0u8; 16384];
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    let body = buf.drain(..len).collect();
    Some((method, path, body))
}

/// Waits until everything written on `s` was acknowledged by the peer (`SIOCOUTQ` is 0),
/// so that a test's next step happens after the peer's kernel has the bytes.
fn wait_acked(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut unacked: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one int.
        let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut unacked) };
        if r != 0 || unacked == 0 || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn serve_misbehaving(mut s: TcpStream, ev: &(Mutex<Events>, Condvar)) {
    let mut buf = Vec::new();
    let mut strayed = false;
    while let Some((method, path, body)) = read_request(&mut s, &mut buf) {
        if strayed {
            ev.0.lock().unwrap().after_stray.push(path.clone());
        }
        let case = path.trim_start_matches('/').split('/').next().unwrap_or("");
        let stray_later = |s: &mut TcpStream, ms: u64| {
            std::thread::sleep(Duration::from_millis(ms));
            let ok = s.write_all(STRAY).is_ok();
            // The event is "the proxy's kernel has the bytes": every byte acknowledged.
            wait_acked(s);
            let (m, cv) = ev;
            m.lock().unwrap().stray_sent.push(path.clone());
            cv.notify_all();
            ok
        };
        let w = |s: &mut TcpStream, b: &[u8]| s.write_all(b).is_ok();
        let ok = match case {
            // Extra bytes in the same write as the response.
            "head-extra" => {
                assert_eq!(method, "HEAD");
                let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", path.len())
                    .into_bytes();
                r.extend_from_slice(STRAY);
                w(&mut s, &r)
            }
            "204-extra" => w(&mut s, &[&b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"[..], STRAY].concat()),
            "304-extra" => w(&mut s, &[&b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"[..], STRAY].concat()),
            "cl-extra" => w(&mut s, &[answer(&path).as_slice(), STRAY].concat()),
            "chunked-extra" => {
                let r = format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{path}\r\n0\r\n\r\n",
                    path.len()
                );
                w(&mut s, &[r.as_bytes(), STRAY].concat())
            }
            // Extra bytes in a later write, while the connection idles in the pool.
            "cl-later" | "head-later" | "204-later" => {
                let ms: u64 = path.rsplit('/').next().unwrap().parse().unwrap();
                let r = match case {
                    "head-later" => format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                        path.len()
                    )
                    .into_bytes(),
                    "204-later" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                    _ => answer(&path),
                };
                strayed = true;
                w(&mut s, &r) && stray_later(&mut s, ms)
            }
            // A 101 nobody asked for.
            "unsolicited-101" => w(
                &mut s,
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            ),
            // A 101 after a request with a body: the tunnel echoes what it receives, so a
            // body sent twice would come back.
            "upgrade-body" => {
                assert_eq!(body, b"BODY", "the body reaches the server once, before the 101");
                if !w(
                    &mut s,
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
                ) {
                    return;
                }
                let mut tmp = [0u8; 4096];
                loop {
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&tmp[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            // A head with bare LF line ends.
            "bare-lf" => w(
                &mut s,
                format!(
                    "HTTP/1.1 200 OK\nX-Bare: lf\nContent-Length: {}\n\n{path}",
                    path.len()
                )
                .as_bytes(),
            ),
            _ => w(&mut s, &answer(&path)),
        };
        if !ok || case == "unsolicited-101" {
            return;
        }
    }
}

fn config(port: u16, backend: SocketAddr, extra_location: &str) -> String {
    format!(
        r#"
[runtime]
workers = 1
shutdown_timeout = "2s"

[[server]]
listen = ["127.0.0.1:{port}"]
keepalive_timeout = "30s"

  [[server.location]]
  path = "/"
  proxy_pass = "app"
  {extra_location}

[upstream.app]
connect_timeout = "2s"
read_timeout = "10s"
keepalive = 8
servers = [{{ addr = "{backend}" }}]
"#
    )
}

fn start(backend: SocketAddr) -> Proxy {
    let port = free_port();
    Proxy::start(
        &config(port, backend, ""),
        SocketAddr::from(([127, 0, 0, 1], port)),
    )
}

fn request(c: &mut Conn, method: &str, path: &str) -> std::io::Result<Response> {
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())?;
    c.read_response(method == "HEAD")
}

/// Three more clients, each on its own connection and then all on one, must each receive
/// exactly their own response.
fn three_clients_get_their_own(p: &Proxy, case: &str) {
    for i in 0..3 {
        let path = format!("/client-{i}");
        let mut c = Conn::open(p.addr).unwrap();
        let r = request(&mut c, "GET", &path).unwrap_or_else(|e| panic!("{case}: {path}: {e}"));
        assert_eq!(
            (r.status, r.text()),
            (200, path.clone()),
            "{case}: client {i} got someone else's response"
        );
    }
    let mut c = Conn::open(p.addr).unwrap();
    for i in 0..3 {
        let path = format!("/same-conn-{i}");
        let r = request(&mut c, "GET", &path).unwrap();
        assert_eq!((r.status, r.text()), (200, path), "{case}");
    }
}

/// The broken exchange's own client gets its correct response (status and, where there is
/// one, body) or a 502: never another's bytes.
fn own_or_502(case: &str, r: std::io::Result<Response>, want_status: u16, want_body: &str) {
    let r = r.unwrap_or_else(|e| panic!("{case}: {e}"));
    if r.status == 502 {
        return;
    }
    assert_eq!(r.status, want_status, "{case}");
    assert_eq!(r.text(), want_body, "{case}: body");
    assert!(!r.text().contains("STRAY"), "{case}");
}

#[test]
fn bytes_past_a_responses_end_in_the_same_read_reach_nobody() {
    let b = Misbehaving::start();
    let p = start(b.addr);
    for (method, path, status, body) in [
        ("HEAD", "/head-extra", 200, ""),
        ("GET", "/204-extra", 204, ""),
        ("GET", "/304-extra", 304, ""),
        ("GET", "/cl-extra", 200, "/cl-extra"),
        ("GET", "/chunked-extra", 200, "/chunked-extra"),
    ] {
        // The first request opens the connection; a warm pooled one must be broken too.
        for round in 0..2 {
            let mut c = Conn::open(p.addr).unwrap();
            if round == 1 {
                let r = request(&mut c, "GET", "/warm").unwrap();
                assert_eq!(r.text(), "/warm");
            }
            own_or_502(path, request(&mut c, method, path), status, body);
            three_clients_get_their_own(&p, path);
        }
    }
    assert!(b.after_stray().is_empty());
}

#[test]
fn bytes_a_server_sends_while_its_connection_idles_reach_nobody() {
    let b = Misbehaving::start();
    let p = start(b.addr);
    for ms in [1, 20, 100] {
        for (method, case, status) in [
            ("GET", "cl-later", 200),
            ("HEAD", "head-later", 200),
            ("GET", "204-later", 204),
        ] {
            let path = format!("/{case}/{ms}");
            let mut c = Conn::open(p.addr).unwrap();
            let r = request(&mut c, method, &path).unwrap();
            let body = if status == 200 && method == "GET" {
                path.as_str()
            } else {
                ""
            };
            assert_eq!((r.status, r.text().as_str()), (status, body), "{path}");
            // The connection is back in the pool; the server now speaks out of turn.
            b.wait_stray(&path);
            // The same client connection and new ones: each gets its own response.
            let r = request(&mut c, "GET", "/next-on-same-client").unwrap();
            assert_eq!(r.text(), "/next-on-same-client", "{path}");
            three_clients_get_their_own(&p, &path);
        }
    }
    // A request is never written onto a connection the server has spoken on.
    assert_eq!(b.after_stray(), Vec::<String>::new());
}

#[test]
fn an_unsolicited_101_is_a_502_and_the_connection_is_not_reused() {
    let b = Misbehaving::start();
    let p = start(b.addr);
    for _ in 0..2 {
        let mut c = Conn::open(p.addr).unwrap();
        let r = request(&mut c, "GET", "/unsolicited-101").unwrap();
        assert_eq!(r.status, 502);
        three_clients_get_their_own(&p, "unsolicited-101");
    }
}

#[test]
fn a_101_after_a_body_does_not_send_the_body_again_into_the_tunnel() {
    let b = Misbehaving::start();
    let p = start(b.addr);
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /upgrade-body HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 4\r\n\r\nBODY",
    )
    .unwrap();
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut tmp).unwrap();
        assert!(n > 0, "closed before the 101");
        got.extend_from_slice(&tmp[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    got.drain(..head_end);
    s.write_all(b"ping").unwrap();
    while got.len() < 4 {
        let n = s.read(&mut tmp).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&tmp[..n]);
    }
    // Anything more would be the body again; give it a moment to show up if it would.
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    if let Ok(n) = s.read(&mut tmp) {
        got.extend_from_slice(&tmp[..n]);
    }
    assert_eq!(String::from_utf8_lossy(&got), "ping");
    drop(s);
    three_clients_get_their_own(&p, "upgrade-body");
}

#[test]
fn a_bare_lf_response_head_is_relayed_well_formed() {
    let b = Misbehaving::start();
    let p = start(b.addr);
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /bare-lf HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let head_end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a CRLF head")
        + 4;
    let head = &got[..head_end];
    // Every LF in the head is part of a CRLF.
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' {
            assert!(
                i > 0 && head[i - 1] == b'\r',
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    if text.starts_with("HTTP/1.1 200") {
        assert!(text.contains("X-Bare: lf\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n/bare-lf"), "{text}");
    } else {
        assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    }
    three_clients_get_their_own(&p, "bare-lf");
}

// ---------------------------------------------------------------------------------------
// Upgrade tokens and client-side request hygiene.

/// Starts a backend that keeps the raw bytes of every request it receives.
fn raw_backend() -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let seen = s2.clone();
            std::thread::spawn(move || {
                let mut tmp = [0u8; 65536];
                let mut pending = Vec::new();
                loop {
                    let n = match s.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    seen.lock().unwrap().extend_from_slice(&tmp[..n]);
                    pending.extend_from_slice(&tmp[..n]);
                    while let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..i + 4);
                        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn send_raw(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut c = Conn::open(addr).unwrap();
    c.send(raw).unwrap();
    c.read_response(false).unwrap()
}

#[test]
fn only_configured_upgrade_tokens_reach_servers() {
    let (addr, seen) = raw_backend();
    let port = free_port();
    let p = Proxy::start(
        &config(port, addr, ""),
        SocketAddr::from(([127, 0, 0, 1], port)),
    );
    // h2c (the smuggling vector) and an unknown token: removed, proxied as plain HTTP/1.1.
    for token in ["h2c", "foo/1"] {
        seen.lock().unwrap().clear();
        let r = send_raw(
            p.addr,
            format!(
                "GET /u HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: {token}\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 200, "{token}");
        let got = String::from_utf8_lossy(&seen.lock().unwrap()).to_ascii_lowercase();
        assert!(!got.contains("upgrade"), "{token}: {got}");
        assert!(!got.contains("http2-settings"), "{token}: {got}");
    }
    // websocket (the default list) is passed on.
    seen.lock().unwrap().clear();
    let mut c = Conn::open(p.addr).unwrap();
    c.send(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .unwrap();
    let _ = c.read_response(false);
    let got = String::from_utf8_lossy(&seen.lock().unwrap()).to_ascii_lowercase();
    assert!(got.contains("upgrade: websocket"), "{got}");
}

#[test]
fn an_empty_upgrade_list_passes_no_upgrade() {
    let (addr, seen) = raw_backend();
    let port = free_port();
    let p = Proxy::start(
        &config(port, addr, "upgrade = []"),
        SocketAddr::from(([127, 0, 0, 1], port)),
    );
    let r = send_raw(
        p.addr,
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let got = String::from_utf8_lossy(&seen.lock().unwrap()).to_ascii_lowercase();
    assert!(!got.contains("upgrade"), "{got}");
}

#[test]
fn client_side_hygiene_as_nginx() {
    let (addr, seen) = raw_backend();
    let port = free_port();
    let p = Proxy::start(
        &config(port, addr, ""),
        SocketAddr::from(([127, 0, 0, 1], port)),
    );

    // Empty lines before a request line are consumed, never forwarded.
    seen.lock().unwrap().clear();
    let r = send_raw(p.addr, b"\r\n\r\nGET /lines HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(seen.lock().unwrap().starts_with(b"GET /lines "));

    // A field name with `_` is dropped (underscores_in_headers = false).
    seen.lock().unwrap().clear();
    let r = send_raw(
        p.addr,
        b"GET /u HTTP/1.1\r\nHost: t\r\nX_Forwarded_For: 6.6.6.6\r\nX-Ok: 1\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let got = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(!got.contains("X_Forwarded_For"), "{got}");
    assert!(got.contains("X-Ok: 1"), "{got}");

    // A Host whose port is not a number is a 400 that reaches no server.
    seen.lock().unwrap().clear();
    for host in ["t:abc", "t:80x", "t:"] {
        let r = send_raw(
            p.addr,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        );
        if host == "t:" {
            // An empty port is allowed by RFC 3986's grammar (port = *DIGIT).
            continue;
        }
        assert_eq!(r.status, 400, "{host}");
    }
    assert!(!String::from_utf8_lossy(&seen.lock().unwrap()).contains("abc"));

    // Expect: 100-continue from an HTTP/1.0 client gets no interim response.
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /e HTTP/1.0\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b"hi").unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(!text.contains("100 Continue"), "{text}");
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
}

#[test]
fn underscores_pass_when_allowed() {
    let (addr, seen) = raw_backend();
    let port = free_port();
    let cfg = config(port, addr, "").replace(
        "keepalive_timeout = \"30s\"",
        "keepalive_timeout = \"30s\"\nunderscores_in_headers = true",
    );
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    let r = send_raw(p.addr, b"GET /u HTTP/1.1\r\nHost: t\r\nX_Custom: 1\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&seen.lock().unwrap()).contains("X_Custom: 1"));
}

// ---------------------------------------------------------------------------------------
// Early answers: a server that refuses a request before reading its body (Gunicorn + Django:
// CSRF 403, 405, login required) answers and closes after draining at most 64 KiB.

/// Answers 403 after reading only the head, drains at most 64 KiB for up to 2 s, closes
/// (Gunicorn's behaviour). `/ok` is served normally.
fn early_answer_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    let mut tmp = [0u8; 4096];
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                if head.starts_with("GET /ok ") {
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                    return;
                }
                let _ = s.write_all(
                    b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\nforbidden",
                );
                let mut drained = buf.len() - end;
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut tmp = [0u8; 8192];
                while drained < 64 * 1024 {
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => drained += n,
                    }
                }
                // Closing with unread data sends a reset: the proxy's next write fails.
                let _ = s.shutdown(Shutdown::Both);
            });
        }
    });
    addr
}

/// Sends a request with a `size`-byte body at `rate` bytes/s (0 = as fast as possible),
/// reading the response concurrently; returns the response.
fn upload(addr: SocketAddr, size: usize, rate: usize, chunked: bool) -> std::io::Result<Response> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {size}")
    };
    let mut w = s.try_clone()?;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    let head = format!("POST /upload HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n");
    let writer = std::thread::spawn(move || {
        if w.write_all(head.as_bytes()).is_err() {
            return;
        }
        let piece = if rate == 0 { 64 * 1024 } else { rate / 20 };
        let chunk = vec![b'x'; piece];
        let mut sent = 0;
        while sent < size && !d2.load(std::sync::atomic::Ordering::SeqCst) {
            let n = piece.min(size - sent);
            let ok = if chunked {
                w.write_all(format!("{n:x}\r\n").as_bytes()).is_ok()
                    && w.write_all(&chunk[..n]).is_ok()
                    && w.write_all(b"\r\n").is_ok()
            } else {
                w.write_all(&chunk[..n]).is_ok()
            };
            if !ok {
                return;
            }
            sent += n;
            if rate > 0 {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if chunked && sent == size {
            let _ = w.write_all(b"0\r\n\r\n");
        }
    });
    let mut c = Conn::from_stream(s);
    let r = c.read_response(false);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = writer.join();
    r
}

fn status_json(admin: SocketAddr) -> serde_json::Value {
    let mut c = Conn::open(admin).unwrap();
    c.send(b"GET /status HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    serde_json::from_slice(&c.read_response(false).unwrap().body).unwrap()
}

fn early_answer_config(
    port: u16,
    admin: u16,
    a: SocketAddr,
    b: SocketAddr,
    buffering: bool,
) -> String {
    format!(
        r#"
[runtime]
workers = 2
shutdown_timeout = "2s"

[admin]
listen = "127.0.0.1:{admin}"

[[server]]
listen = ["127.0.0.1:{port}"]
client_body_timeout = "20s"

  [[server.location]]
  path = "/"
  proxy_pass = "app"
  proxy_request_buffering = {buffering}

[upstream.app]
connect_timeout = "2s"
send_timeout = "20s"
read_timeout = "20s"
servers = [{{ addr = "{a}" }}, {{ addr = "{b}", backup = true }}]
"#
    )
}

fn early_answers_reach_the_client(buffering: bool) {
    let a = early_answer_backend();
    let b = early_answer_backend();
    let (port, admin) = (free_port(), free_port());
    let p = Proxy::start(
        &early_answer_config(port, admin, a, b, buffering),
        SocketAddr::from(([127, 0, 0, 1], port)),
    );
    let mut cases = Vec::new();
    for size in [10 * 1024, 1024 * 1024, 10 * 1024 * 1024] {
        for chunked in [false, true] {
            cases.push((size, 0, chunked));
            // Slow senders: with request buffering the whole body is read first, so a slow
            // 10 MiB upload would take minutes; 1 MiB at 50 KiB/s takes 20 s.
            if !buffering || size <= 1024 * 1024 {
                cases.push((size, 50 * 1024, chunked));
            }
        }
    }
    let threads: Vec<_> = cases
        .into_iter()
        .map(|(size, rate, chunked)| {
            let addr = p.addr;
            std::thread::spawn(move || {
                let r = upload(addr, size, rate, chunked)
                    .unwrap_or_else(|e| panic!("{size} B at {rate} B/s chunked={chunked}: {e}"));
                assert_eq!(
                    (r.status, r.text().as_str()),
                    (403, "forbidden"),
                    "{size} B at {rate} B/s chunked={chunked}"
                );
            })
        })
        .collect();
    let n = threads.len();
    for t in threads {
        t.join().unwrap();
    }
    // Up to 20 refused uploads in all.
    for i in n..20 {
        let r = upload(p.addr, 100 * 1024, 0, i % 2 == 0).unwrap();
        assert_eq!(r.status, 403);
    }
    // No server was blamed for answering early.
    let st = status_json(SocketAddr::from(([127, 0, 0, 1], admin)));
    for s in st["upstreams"]["app"]["servers"].as_array().unwrap() {
        assert_eq!(s["fails"], 0, "{st}");
        assert_ne!(s["state"], "down", "{st}");
    }
    let mut c = Conn::open(p.addr).unwrap();
    let r = request(&mut c, "GET", "/ok").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
}

#[test]
fn early_answers_reach_the_client_streaming() {
    early_answers_reach_the_client(false);
}

#[test]
fn early_answers_reach_the_client_buffered() {
    early_answers_reach_the_client(true);
}

// ---------------------------------------------------------------------------------------
// A client that goes away frees its place.

/// Records every request path and whether the proxy closed the connection while a request
/// on it was unanswered; `/hold` is answered only once `release` is set, `/hang` never.
struct Holding {
    addr: SocketAddr,
    paths: Arc<Mutex<Vec<String>>>,
    abandoned: Arc<(Mutex<u32>, Condvar)>,
    release: Arc<std::sync::atomic::AtomicBool>,
}

impl Holding {
    fn start() -> Holding {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let h = Holding {
            addr: l.local_addr().unwrap(),
            paths: Arc::default(),
            abandoned: Arc::default(),
            release: Arc::default(),
        };
        let (paths, abandoned, release) = (h.paths.clone(), h.abandoned.clone(), h.release.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let (paths, abandoned, release) =
                    (paths.clone(), abandoned.clone(), release.clone());
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    while let Some((_, path, _)) = read_request(&mut s, &mut buf) {
                        paths.lock().unwrap().push(path.clone());
                        if path == "/hang" || path == "/hold" {
                            // Wait for the release, or for the proxy to give up on us.
                            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                            let mut tmp = [0u8; 64];
                            loop {
                                if path == "/hold"
                                    && release.load(std::sync::atomic::Ordering::SeqCst)
                                {
                                    break;
                                }
                                match s.read(&mut tmp) {
                                    Ok(0) => {
                                        let (m, cv) = &*abandoned;
                                        *m.lock().unwrap() += 1;
                                        cv.notify_all();
                                        return;
                                    }
                                    Ok(_) => {}
                                    Err(e)
                                        if e.kind() == std::io::ErrorKind::WouldBlock
                                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                                    Err(_) => return,
                                }
                            }
                            s.set_read_timeout(None).unwrap();
                        }
                        if s.write_all(&answer(&path)).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        h
    }

    fn wait_paths(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.paths.lock().unwrap().len() < n {
            assert!(
                Instant::now() < deadline,
                "the backend never got {n} requests"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_abandoned(&self, n: u32) {
        let (m, cv) = &*self.abandoned;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut g = m.lock().unwrap();
        while *g < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the proxy kept the abandoned exchange's connection open"
            );
            g = cv.wait_timeout(g, left).unwrap().0;
        }
    }
}

#[test]
fn a_client_that_goes_away_while_waiting_frees_the_server() {
    let b = Holding::start();
    let port = free_port();
    // A read timeout far longer than the test waits: only the client's leaving can end it.
    let cfg = config(port, b.addr, "").replace("read_timeout = \"10s\"", "read_timeout = \"300s\"");
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    let mut c = Conn::open(p.addr).unwrap();
    c.send(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    b.wait_paths(1);
    drop(c);
    b.wait_abandoned(1);
    // The worker is fine and the next client is served.
    let mut c = Conn::open(p.addr).unwrap();
    let r = request(&mut c, "GET", "/after").unwrap();
    assert_eq!(r.text(), "/after");
}

#[test]
fn a_client_that_goes_away_while_queued_leaves_the_queue() {
    let b = Holding::start();
    let port = free_port();
    let cfg = config(port, b.addr, "")
        .replace(
            "read_timeout = \"10s\"",
            "read_timeout = \"300s\"\nqueue = 10\nqueue_timeout = \"60s\"",
        )
        .replace(
            &format!("{{ addr = \"{}\" }}", b.addr),
            &format!("{{ addr = \"{}\", max_conns = 1 }}", b.addr),
        );
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    // The one slot is held.
    let mut holder = Conn::open(p.addr).unwrap();
    holder
        .send(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    b.wait_paths(1);
    // A second request queues behind it, then its client leaves.
    let mut quitter = Conn::open(p.addr).unwrap();
    quitter
        .send(b"GET /quitter HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // A third one queues and stays.
    let mut stayer = Conn::open(p.addr).unwrap();
    stayer
        .send(b"GET /stayer HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(quitter);
    std::thread::sleep(Duration::from_millis(100));
    b.release.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(holder.read_response(false).unwrap().text(), "/hold");
    assert_eq!(stayer.read_response(false).unwrap().text(), "/stayer");
    // The request of the client that left never reached the server.
    assert!(
        !b.paths.lock().unwrap().iter().any(|p| p == "/quitter"),
        "{:?}",
        b.paths.lock().unwrap()
    );
}
