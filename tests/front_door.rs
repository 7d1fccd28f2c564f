//! The front door through the real binary: servers on unix sockets (Gunicorn's usual
//! `--bind unix:`), `return` locations, and per-location `max_body_bytes` and
//! `read_timeout`.

#[allow(unused_imports)]
mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::client::Conn;
use common::{free_port, Backend, Proxy};

/// A keep-alive HTTP/1.1 server on a unix socket: answers every request with `unix` and
/// records the heads it got and how many connections it accepted.
struct UnixBackend {
    path: std::path::PathBuf,
    accepts: Arc<AtomicU64>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl UnixBackend {
    fn start(dir: &std::path::Path) -> UnixBackend {
        let path = dir.join("app.sock");
        let l = UnixListener::bind(&path).unwrap();
        let b = UnixBackend {
            path,
            accepts: Arc::default(),
            heads: Arc::default(),
        };
        let (accepts, heads) = (b.accepts.clone(), b.heads.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                accepts.fetch_add(1, Ordering::SeqCst);
                let heads = heads.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    loop {
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
                        buf.drain(..end);
                        let health = head.starts_with("GET /health ");
                        heads.lock().unwrap().push(head);
                        let r: &[u8] = if health {
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                        } else {
                            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nunix"
                        };
                        if s.write_all(r).is_err() || health {
                            return;
                        }
                    }
                });
            }
        });
        b
    }
}

fn get(addr: SocketAddr, c: &mut Conn, path: &str) -> common::client::Response {
    let _ = addr;
    c.send(format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n").as_bytes())
        .unwrap();
    c.read_response(false).unwrap()
}

#[test]
fn a_unix_socket_server_is_balanced_pooled_checked_and_reported() {
    let dir = common::proxy::temp_dir();
    let u = UnixBackend::start(&dir);
    let tcp = Backend::start("tcp");
    let (port, admin) = (free_port(), free_port());
    let cfg = format!(
        r#"
[runtime]
workers = 1

[admin]
listen = "127.0.0.1:{admin}"

[[server]]
listen = ["127.0.0.1:{port}"]

  [[server.location]]
  path = "/"
  proxy_pass = "app"

[upstream.app]
servers = [{{ addr = "unix:{sock}" }}, {{ addr = "{tcp}" }}]

  [upstream.app.health_check]
  path = "/health"
  interval = "100ms"
"#,
        sock = u.path.display(),
        tcp = tcp.addr
    );
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    let mut c = Conn::open(p.addr).unwrap();
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(get(p.addr, &mut c, "/").text());
    }
    // Round robin over both kinds of server.
    assert_eq!(
        answers.iter().filter(|a| *a == "unix").count(),
        3,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|a| *a == "tcp").count(),
        3,
        "{answers:?}"
    );
    // Its connection was pooled: three requests, one connection (health checks aside).
    let proxied = u
        .heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| !h.starts_with("GET /health "))
        .count();
    assert_eq!(proxied, 3);
    let health_checks = u
        .heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.starts_with("GET /health "))
        .count() as u64;
    assert_eq!(u.accepts.load(Ordering::SeqCst) - health_checks, 1);
    // /status names it as written and reports it up.
    let mut a = Conn::open(SocketAddr::from(([127, 0, 0, 1], admin))).unwrap();
    a.send(b"GET /status HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let st: serde_json::Value =
        serde_json::from_slice(&a.read_response(false).unwrap().body).unwrap();
    let servers = st["upstreams"]["app"]["servers"].as_array().unwrap();
    let unix = servers
        .iter()
        .find(|s| s["addr"].as_str().unwrap().starts_with("unix:"))
        .expect("the unix server in /status");
    assert_eq!(unix["state"], "up", "{st}");
    assert_eq!(unix["requests"], 3, "{st}");
    // Health checks reach it too.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !u
        .heads
        .lock()
        .unwrap()
        .iter()
        .any(|h| h.starts_with("GET /health "))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no health check reached the unix server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn return_locations_redirect_and_answer() {
    let b = Backend::start("b");
    let port = free_port();
    let cfg = format!(
        r#"
[runtime]
workers = 1

[[server]]
listen = ["127.0.0.1:{port}"]
server_name = ["example.com"]

  [[server.location]]
  path = "/old/"
  return = {{ status = 301, location = "https://$host$request_uri" }}

  [[server.location]]
  path = "/gone"
  return = {{ status = 410, body = "gone for good\n" }}

  [[server.location]]
  path = "/"
  proxy_pass = "app"

[upstream.app]
servers = [{{ addr = "{b}" }}]
"#,
        b = b.addr
    );
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    let mut c = Conn::open(p.addr).unwrap();
    let r = get(p.addr, &mut c, "/old/page?x=1");
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://example.com/old/page?x=1")
    );
    // The connection goes on.
    let r = get(p.addr, &mut c, "/gone");
    assert_eq!(r.status, 410);
    assert_eq!(r.text(), "gone for good\n");
    let r = get(p.addr, &mut c, "/");
    assert_eq!((r.status, r.text().as_str()), (200, "b"));
    // HEAD gets the head only.
    c.send(b"HEAD /gone HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .unwrap();
    let r = c.read_response(true).unwrap();
    assert_eq!(r.status, 410);
    assert_eq!(r.header("content-length"), Some("14"));
    assert_eq!(b.requests(), 1, "no return location reached the server");
}

#[test]
fn locations_have_their_own_body_limit_and_read_timeout() {
    let b = Backend::start("b");
    let port = free_port();
    let cfg = format!(
        r#"
[runtime]
workers = 1

[[server]]
listen = ["127.0.0.1:{port}"]
max_body_bytes = "1k"

  [[server.location]]
  path = "/sum"
  proxy_pass = "app"
  max_body_bytes = "1m"

  [[server.location]]
  path = "/slow"
  proxy_pass = "app"
  read_timeout = "200ms"

  [[server.location]]
  path = "/"
  proxy_pass = "app"

[upstream.app]
read_timeout = "30s"
servers = [{{ addr = "{b}" }}]
"#,
        b = b.addr
    );
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    let body = vec![b'x'; 100 * 1024];
    for (path, want) in [("/sum", 200), ("/echo", 413)] {
        let mut c = Conn::open(p.addr).unwrap();
        c.send(
            format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        let _ = c.send(&body);
        assert_eq!(c.read_response(false).unwrap().status, want, "{path}");
    }
    // The location's read timeout (200 ms) ends a slow answer the upstream's 30 s allows.
    let mut c = Conn::open(p.addr).unwrap();
    c.send(b"GET /slow?ms=5000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response(false).unwrap().status, 504);
}

// ---------------------------------------------------------------------------------------
// The real client address: PROXY protocol and real_ip_from.

/// A backend that answers each request with the request head it received.
fn echo_heads() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let h = heads.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let h = h.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                loop {
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
                    buf.drain(..end);
                    h.lock().unwrap().push(head.clone());
                    let r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
                        head.len()
                    );
                    if s.write_all(r.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, heads)
}

fn realip_config(port: u16, backend: SocketAddr, server_extra: &str) -> String {
    format!(
        r#"
[runtime]
workers = 1

[[server]]
listen = ["127.0.0.1:{port}"]
{server_extra}

  [[server.location]]
  path = "/"
  proxy_pass = "app"
  proxy_set_header = {{ "X-Real-IP" = "$remote_addr", "X-Forwarded-For" = "$proxy_add_x_forwarded_for" }}

[upstream.app]
servers = [{{ addr = "{backend}" }}]
"#
    )
}

fn header_of(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

#[test]
fn a_spoofed_forwarded_for_from_an_untrusted_peer_never_becomes_the_client() {
    let (b, heads) = echo_heads();
    let port = free_port();
    // Only 10.0.0.0/8 is trusted; the test's connections come from 127.0.0.1.
    let cfg = realip_config(
        port,
        b,
        "real_ip_from = [\"10.0.0.0/8\"]\nreal_ip_header = \"X-Forwarded-For\"",
    );
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    let mut c = Conn::open(p.addr).unwrap();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response(false).unwrap().status, 200);
    let head = heads.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        header_of(&head, "x-real-ip").as_deref(),
        Some("127.0.0.1"),
        "{head}"
    );
}

#[test]
fn a_trusted_peer_names_the_client_as_nginx_realip_does() {
    let (b, heads) = echo_heads();
    let port = free_port();
    // The peer (127.0.0.1) and 10.0.0.0/8 are trusted: the client is the last address of
    // X-Forwarded-For that is not.
    let cfg = realip_config(
        port,
        b,
        "real_ip_from = [\"127.0.0.1\", \"10.0.0.0/8\"]\nreal_ip_header = \"X-Forwarded-For\"",
    );
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    let mut c = Conn::open(p.addr).unwrap();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.1.2.3\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response(false).unwrap().status, 200);
    let head = heads.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        header_of(&head, "x-real-ip").as_deref(),
        Some("203.0.113.7"),
        "{head}"
    );
}

#[test]
fn proxy_protocol_v1_and_v2_name_the_client_and_a_connection_without_one_is_closed() {
    let (b, heads) = echo_heads();
    let port = free_port();
    let cfg = realip_config(
        port,
        b,
        "proxy_protocol = true\nreal_ip_from = [\"127.0.0.1\"]\nreal_ip_header = \"proxy_protocol\"",
    );
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));

    // v1, then a request on the same connection.
    let mut c = Conn::open(p.addr).unwrap();
    c.send(b"PROXY TCP4 198.51.100.9 192.0.2.1 40000 80\r\nGET /v1 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response(false).unwrap().status, 200);
    let head = heads.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        header_of(&head, "x-real-ip").as_deref(),
        Some("198.51.100.9"),
        "{head}"
    );

    // v2 (binary), IPv4 PROXY command.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.push(0x21); // version 2, PROXY
    v2.push(0x11); // AF_INET, STREAM
    v2.extend_from_slice(&12u16.to_be_bytes());
    v2.extend_from_slice(&[203, 0, 113, 50]);
    v2.extend_from_slice(&[192, 0, 2, 1]);
    v2.extend_from_slice(&5555u16.to_be_bytes());
    v2.extend_from_slice(&443u16.to_be_bytes());
    let mut c = Conn::open(p.addr).unwrap();
    c.send(&v2).unwrap();
    c.send(b"GET /v2 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(c.read_response(false).unwrap().status, 200);
    let head = heads.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        header_of(&head, "x-real-ip").as_deref(),
        Some("203.0.113.50"),
        "{head}"
    );

    // No header: the connection is closed and nothing reaches the server.
    let before = heads.lock().unwrap().len();
    let mut c = Conn::open(p.addr).unwrap();
    c.send(b"GET /no-header HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(c.read_response(false).is_err());
    assert_eq!(heads.lock().unwrap().len(), before);
}
