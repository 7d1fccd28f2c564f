//! The core proxy through the real binary: balancing, bodies both ways, headers,
//! keepalive on both sides, pipelining, 100-continue, WebSocket tunnels, 502/504.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::backend::{hex, pattern};
use common::client::Conn;
use common::proxy::{server, simple_config, start_with as start};
use common::{free_port, get, request, Backend, Behavior, Proxy};
use sha2::{Digest, Sha256};

fn count_backends(proxy: &Proxy, n: usize) -> HashMap<String, usize> {
    let mut conn = Conn::open(proxy.addr).unwrap();
    let mut seen = HashMap::new();
    for _ in 0..n {
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = conn.read_response(false).unwrap();
        assert_eq!(r.status, 200);
        *seen
            .entry(r.header("x-backend").unwrap().to_string())
            .or_default() += 1;
    }
    seen
}

#[test]
fn spreads_requests_over_three_servers() {
    let b: Vec<Backend> = (0..3).map(|i| Backend::start(&format!("b{i}"))).collect();
    let p = start(&[&b[0], &b[1], &b[2]], &[], "");
    let seen = count_backends(&p, 300);
    for i in 0..3 {
        let n = seen[&format!("b{i}")];
        // Two workers each run their own smooth round robin; one connection lands on one
        // worker, which cycles exactly.
        assert_eq!(n, 100, "{seen:?}");
    }
}

#[test]
fn weights_3_1_1_over_500_requests() {
    let b: Vec<Backend> = (0..3).map(|i| Backend::start(&format!("b{i}"))).collect();
    let p = start(&[&b[0], &b[1], &b[2]], &["weight = 3", "", ""], "");
    let seen = count_backends(&p, 500);
    assert_eq!(seen["b0"], 300, "{seen:?}");
    assert_eq!(seen["b1"], 100, "{seen:?}");
    assert_eq!(seen["b2"], 100, "{seen:?}");
}

fn post_body(proxy: &Proxy, chunked: bool, body: &[u8]) -> String {
    let mut c = Conn::open(proxy.addr).unwrap();
    if chunked {
        c.send(b"POST /sum HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        for piece in body.chunks(100_000) {
            c.send(format!("{:x}\r\n", piece.len()).as_bytes()).unwrap();
            c.send(piece).unwrap();
            c.send(b"\r\n").unwrap();
        }
        c.send(b"0\r\n\r\n").unwrap();
    } else {
        c.send(
            format!(
                "POST /sum HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        c.send(body).unwrap();
    }
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    r.text()
}

#[test]
fn ten_mib_bodies_stream_intact_both_ways_without_growing_rss() {
    let b = Backend::start("b0");
    let p = start(&[&b], &[], "");
    let body = pattern(10 << 20);
    let want = format!("{} {}", body.len(), hex(&Sha256::digest(&body)));
    // Warm up allocator arenas so the RSS comparison measures growth, not first use.
    assert_eq!(
        post_body(&p, false, &body[..1 << 20]).split(' ').next(),
        Some("1048576")
    );
    let rss_before = p.rss_kib();
    assert_eq!(post_body(&p, false, &body), want);
    assert_eq!(post_body(&p, true, &body), want);

    for path in ["/big", "/chunked", "/close"] {
        let r = get(p.addr, &format!("{path}?n={}", 10 << 20)).unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body.len(), 10 << 20, "{path}");
        assert!(r.body == body, "{path}: body differs");
    }
    let grown = p.rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 4 * 1024,
        "RSS grew by {grown} KiB while streaming 10 MiB bodies"
    );
}

#[test]
fn headers_are_set_and_hop_by_hop_ones_removed() {
    let b = Backend::start("b0");
    let p = start(&[&b], &[], "");
    let r = request(
        p.addr,
        b"GET /echo HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nX-Forwarded-For: 9.9.9.9\r\nX-Custom: kept\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let seen = r.text().to_ascii_lowercase();
    assert!(seen.contains("host: example.com\r\n"), "{seen}");
    assert!(seen.contains("x-real-ip: 127.0.0.1\r\n"), "{seen}");
    assert!(
        seen.contains("x-forwarded-for: 9.9.9.9, 127.0.0.1\r\n"),
        "{seen}"
    );
    assert!(seen.contains("x-custom: kept\r\n"), "{seen}");
    for gone in [
        "x-private",
        "keep-alive:",
        "te:",
        "proxy-connection",
        "connection:",
    ] {
        assert!(!seen.contains(gone), "{gone} reached the backend: {seen}");
    }
}

#[test]
fn upstream_connections_are_reused() {
    let b = Backend::start("b0");
    let p = start(&[&b], &[], "");
    for _ in 0..50 {
        assert_eq!(get(p.addr, "/").unwrap().status, 200);
    }
    // Each worker opens at most a few connections; 50 requests must not cost 50 accepts.
    assert!(
        b.accepts() <= 4,
        "backend accepted {} connections",
        b.accepts()
    );
    assert_eq!(b.requests(), 50);
}

#[test]
fn closed_idle_upstream_connection_is_not_reused_into_an_error() {
    let b = Backend::start("b0");
    b.set_idle_close(Duration::from_millis(100));
    let p = start(&[&b], &[], "");
    for _ in 0..5 {
        assert_eq!(get(p.addr, "/").unwrap().status, 200);
        // The backend closes its side while the connection idles in ringlb's pool.
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(get(p.addr, "/").unwrap().status, 200);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let b = Backend::start("b0");
    let p = start(&[&b], &[], "");
    let mut c = Conn::open(p.addr).unwrap();
    let mut batch = Vec::new();
    for i in 0..10 {
        batch.extend_from_slice(format!("GET /big?n={i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    c.send(&batch).unwrap();
    for i in 0..10 {
        let r = c.read_response(false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), i);
    }
}

#[test]
fn expect_100_continue_gets_continue_then_response() {
    let b = Backend::start("b0");
    let p = start(&[&b], &[], "");
    let mut c = Conn::open(p.addr).unwrap();
    c.send(b"POST /sum HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let interim = c.read_response(false).unwrap();
    assert_eq!(interim.status, 100);
    c.send(b"hello").unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("5 "), "{}", r.text());
}

#[test]
fn websocket_upgrade_becomes_a_tunnel() {
    let b = Backend::start("b0");
    let p = start(&[&b], &[], "");
    let mut c = Conn::open(p.addr).unwrap();
    c.send(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let r = c.read_response(true).unwrap();
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    for msg in [&b"ping"[..], b"a longer frame of bytes", &[0u8, 1, 2, 255]] {
        c.stream.write_all(msg).unwrap();
        let mut got = vec![0u8; msg.len()];
        c.stream.read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
    }
}

#[test]
fn dead_server_gives_502_and_silent_server_504() {
    let dead = free_port();
    let port = free_port();
    let cfg = simple_config(port, &[format!("  {{ addr = \"127.0.0.1:{dead}\" }}")], "");
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    assert_eq!(get(p.addr, "/").unwrap().status, 502);

    let b = Backend::start("hang");
    b.set_behavior(Behavior::Hang);
    let p = start(&[&b], &[], "read_timeout = \"2s\"");
    let started = std::time::Instant::now();
    assert_eq!(get(p.addr, "/").unwrap().status, 504);
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[test]
fn head_and_no_body_statuses_are_framed_right() {
    let b = Backend::start("b0");
    let p = start(&[&b], &[], "");
    let mut c = Conn::open(p.addr).unwrap();
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = c.read_response(true).unwrap();
    assert_eq!(r.status, 200);
    for code in [204, 304] {
        c.send(format!("GET /status?code={code} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let r = c.read_response(false).unwrap();
        assert_eq!(r.status, code);
    }
    // The connection still works: no stray body bytes were left behind.
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(c.read_response(false).unwrap().text(), "b0");
}

#[test]
fn http10_client_gets_close_delimited_body_of_chunked_response() {
    let b = Backend::start("b0");
    let p = start(&[&b], &[], "");
    let r = request(p.addr, b"GET /chunked?n=20000 HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, pattern(20000));
    assert!(r.header("transfer-encoding").is_none());
}

#[test]
fn check_reports_file_line_col_and_exits_1() {
    let dir = common::proxy::temp_dir();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[[server]]\nlisten = [\"127.0.0.1:8080\"]\n  [[server.location]]\n  path = \"/\"\n  proxy_pass = \"app\"\n\n[upstream.app]\nservers = [ { addr = \"127.0.0.1:80x\" } ]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringlb"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bad.toml:8:22: upstream.app.servers[0].addr"),
        "{text}"
    );
    let good = std::process::Command::new(env!("CARGO_BIN_EXE_ringlb"))
        .args(["check", "-c", "config/ringlb.toml"])
        .output()
        .unwrap();
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
}

#[test]
fn every_server_down_gives_503_and_an_unreachable_one_502() {
    let b: Vec<Backend> = (0..2).map(|i| Backend::start(&format!("b{i}"))).collect();
    for x in &b {
        x.set_behavior(Behavior::SickHealth);
    }
    let port = free_port();
    let servers: Vec<String> = b.iter().map(|x| server(x.addr, "")).collect();
    let cfg = simple_config(port, &servers, "")
        + "[upstream.app.health_check]\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"200ms\"\nfails = 1\npasses = 1\n";
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    // Both servers marked down by one failed check each, then up by one passed check each.
    let both = |message: &str, state: &str| {
        let fields = [("state", state), ("checks", "1")];
        let start = std::time::Instant::now();
        while p.events(message, &fields) < 2 {
            assert!(start.elapsed() < Duration::from_secs(10), "{}", p.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    both("server marked down", "down");
    assert_eq!(get(p.addr, "/").unwrap().status, 503);
    for x in &b {
        x.set_behavior(Behavior::Normal);
    }
    both("server marked up", "up");
    assert_eq!(get(p.addr, "/").unwrap().status, 200);
}

#[test]
fn stalled_small_request_body_gets_408() {
    let b = Backend::start("b0");
    let port = free_port();
    let cfg = simple_config(port, &[server(b.addr, "")], "").replace(
        "keepalive_timeout = \"30s\"",
        "keepalive_timeout = \"30s\"\nclient_body_timeout = \"300ms\"",
    );
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    let mut c = Conn::open(p.addr).unwrap();
    c.send(b"POST /sum HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
        .unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 408);
    assert_eq!(
        b.requests(),
        0,
        "a half-sent body never reaches the backend"
    );
}

#[test]
fn too_large_body_gets_its_413_and_a_lingering_close() {
    let b = Backend::start("b0");
    let port = free_port();
    let cfg = simple_config(port, &[server(b.addr, "")], "").replace(
        "keepalive_timeout = \"30s\"",
        "keepalive_timeout = \"30s\"\nmax_body_bytes = \"1k\"",
    );
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    let mut c = Conn::open(p.addr).unwrap();
    c.send(b"POST /sum HTTP/1.1\r\nHost: t\r\nContent-Length: 262144\r\n\r\n")
        .unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection"), Some("close"));
    // The client goes on sending the body it announced, as simple clients do. The proxy
    // has shut its sending side but keeps reading (and dropping) for a while, as nginx's
    // lingering close does, so the client sees no reset: after a plain close the second
    // write would fail with EPIPE or ECONNRESET.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(50));
        c.stream
            .write_all(&pattern(64 * 1024))
            .expect("the proxy must still be reading the unwanted body");
    }
    assert!(
        c.is_closed(Duration::from_secs(3)),
        "its sending side is shut"
    );
    assert_eq!(b.requests(), 0);
}

#[test]
fn locations_match_the_normalised_path() {
    let public = Backend::start("public");
    let admin = Backend::start("admin");
    let port = free_port();
    let cfg = format!(
        r#"
[runtime]
workers = 1

[[server]]
listen = ["127.0.0.1:{port}"]

  [[server.location]]
  path = "/public/"
  proxy_pass = "public"

  [[server.location]]
  path = "/admin/"
  proxy_pass = "admin"

[upstream.public]
servers = [ {{ addr = "{}" }} ]

[upstream.admin]
servers = [ {{ addr = "{}" }} ]
"#,
        public.addr, admin.addr
    );
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    for path in [
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public//..//admin/x",
        "/%61dmin/x",
    ] {
        let r = get(p.addr, path).unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.header("x-backend"),
            Some("admin"),
            "{path} was routed by its prefix"
        );
    }
    assert_eq!(
        get(p.addr, "/public/a/./b").unwrap().header("x-backend"),
        Some("public")
    );
    // The target is forwarded as the client wrote it.
    assert!(admin.heads()[0].starts_with("GET /public/../admin/x HTTP/1.1\r\n"));
    for bad in ["/../etc/passwd", "/public/%zz"] {
        assert_eq!(get(p.addr, bad).unwrap().status, 400, "{bad}");
    }
}

#[test]
fn host_variable_falls_back_to_the_server_name() {
    let b = Backend::start("b0");
    let port = free_port();
    let cfg = simple_config(port, &[server(b.addr, "")], "")
        .replace(
            "keepalive_timeout = \"30s\"",
            "keepalive_timeout = \"30s\"\nserver_name = [\"www.example.com\", \"*.example.com\"]",
        )
        .replace(
            "proxy_set_header = {",
            "proxy_set_header = { \"X-Host\" = \"$host\", ",
        );
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    // HTTP/1.0 without Host: nginx's $host is the server name.
    let r = request(p.addr, b"GET /echo HTTP/1.0\r\n\r\n").unwrap();
    assert!(
        r.text().contains("X-Host: www.example.com\r\n"),
        "{}",
        r.text()
    );
    let r = request(
        p.addr,
        b"GET /echo HTTP/1.1\r\nHost: A.Example.COM:8080\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(
        r.text().contains("X-Host: a.example.com\r\n"),
        "{}",
        r.text()
    );
}
