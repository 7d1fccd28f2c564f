//! Static files through the real binary: `root`, `alias`, `index` and `expires` locations
//! answer from a directory tree built for the test (files, directories, symlinks in and out,
//! a secret file beside the root): 200/206/301/304/403/404/405/416, keep-alive framing,
//! a large file on the zero-copy path, and traversal attempts that must never reach the
//! secret.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::symlink;

use common::client::{Conn, Response};
use common::free_port;
use common::Proxy;

const SECRET: &str = "TOP SECRET\n";
const CSS: &str = "body { color: red }\n";

/// The tree (kept alive with the proxy) and ringlb serving it.
struct Site {
    _tmp: tempfile::TempDir,
    proxy: Proxy,
    big: Vec<u8>,
}

fn site() -> Site {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let root = t.join("site");
    let st = root.join("static");
    for d in ["static/sub", "static/noindex", "static/img"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::create_dir_all(t.join("media")).unwrap();
    std::fs::write(t.join("secret.txt"), SECRET).unwrap();
    std::fs::write(st.join("a.css"), CSS).unwrap();
    std::fs::write(st.join("sub/index.html"), "<h1>sub</h1>\n").unwrap();
    std::fs::write(st.join("app.js"), "let x = 1;\n").unwrap();
    std::fs::write(st.join("img/logo.png"), [0x89, b'P', b'N', b'G']).unwrap();
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(st.join("big.bin"), &big).unwrap();
    std::fs::write(t.join("media/photo.jpg"), b"JPEG").unwrap();
    symlink("a.css", st.join("inside.css")).unwrap();
    symlink("../../secret.txt", st.join("out.txt")).unwrap();
    symlink(t.join("secret.txt"), st.join("abs.txt")).unwrap();
    symlink("../..", st.join("updir")).unwrap();
    let port = free_port();
    let config = format!(
        r#"
[runtime]
workers = 2

[[server]]
listen = ["127.0.0.1:{port}"]

  [[server.location]]
  path = "/static/"
  root = "{root}"
  index = ["index.html"]
  expires = "7d"

  [[server.location]]
  path = "/files"
  alias = "{media}"

  [[server.location]]
  path = "/"
  return = {{ status = 403, body = "not here\n" }}
"#,
        root = root.display(),
        media = t.join("media").display(),
    );
    let proxy = Proxy::start(&config, SocketAddr::from(([127, 0, 0, 1], port)));
    Site {
        _tmp: tmp,
        proxy,
        big,
    }
}

fn raw(s: &Site, request: &str) -> Response {
    common::request(s.proxy.addr, request.as_bytes()).unwrap_or_else(|e| panic!("{request:?}: {e}"))
}

fn get(s: &Site, target: &str, extra: &str) -> Response {
    raw(
        s,
        &format!("GET {target} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"),
    )
}

#[test]
#[ignore = "needs static files wired into the proxy (files::respond, files::send_body)"]
fn files_are_served_with_validators_types_and_expiry() {
    let s = site();
    let r = get(&s, "/static/a.css", "");
    assert_eq!((r.status, r.text().as_str()), (200, CSS));
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("20"));
    assert_eq!(r.header("cache-control"), Some("max-age=604800"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    for h in ["etag", "last-modified", "expires", "date"] {
        assert!(r.header(h).is_some(), "{h}");
    }
    let etag = r.header("etag").unwrap();
    assert!(
        etag.starts_with('"') && etag.ends_with(&format!("-{:x}\"", CSS.len())),
        "{etag}"
    );
    assert_eq!(
        get(&s, "/static/img/logo.png", "").header("content-type"),
        Some("image/png")
    );
    let js = get(&s, "/static/app.js", "");
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    // alias: the location's prefix replaced by the directory; no expires there.
    let a = get(&s, "/files/photo.jpg", "");
    assert_eq!((a.status, &a.body[..]), (200, &b"JPEG"[..]));
    assert_eq!(a.header("cache-control"), None);
    // A symlink that stays inside the root is followed.
    assert_eq!(get(&s, "/static/inside.css", "").text(), CSS);
}

#[test]
#[ignore = "needs static files wired into the proxy (files::respond, files::send_body)"]
fn keepalive_head_and_a_large_file_keep_their_framing() {
    let s = site();
    let mut c = Conn::open(s.proxy.addr).unwrap();
    for _ in 0..3 {
        c.send(b"HEAD /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let h = c.read_response(true).unwrap();
        assert_eq!(
            (h.status, h.header("content-length")),
            (200, Some("1048576"))
        );
        assert!(h.body.is_empty());
        c.send(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let r = c.read_response(false).unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body == s.big, "1 MiB body differs");
        c.send(b"GET /static/a.css HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(c.read_response(false).unwrap().text(), CSS);
    }
    // Pipelined: two requests in one write, two responses in order.
    c.send(b"GET /static/a.css HTTP/1.1\r\nHost: t\r\n\r\nGET /static/sub/ HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response(false).unwrap().text(), CSS);
    assert_eq!(c.read_response(false).unwrap().text(), "<h1>sub</h1>\n");
}

#[test]
#[ignore = "needs static files wired into the proxy (files::respond, files::send_body)"]
fn conditional_requests_and_ranges() {
    let s = site();
    let first = get(&s, "/static/a.css", "");
    let etag = first.header("etag").unwrap().to_string();
    let lm = first.header("last-modified").unwrap().to_string();
    let r = get(&s, "/static/a.css", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = get(&s, "/static/a.css", &format!("If-Modified-Since: {lm}\r\n"));
    assert_eq!(r.status, 304);
    let r = get(&s, "/static/a.css", "If-None-Match: \"other\"\r\n");
    assert_eq!(r.status, 200);

    let r = get(&s, "/static/big.bin", "Range: bytes=1000-1999\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 1000-1999/1048576"));
    assert!(r.body == s.big[1000..2000]);
    let r = get(&s, "/static/big.bin", "Range: bytes=-100000\r\n");
    assert_eq!(r.status, 206);
    assert!(r.body == s.big[s.big.len() - 100_000..]);
    let r = get(&s, "/static/big.bin", "Range: bytes=1048576-\r\n");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */1048576"));
    let r = get(&s, "/static/big.bin", "Range: bytes=0-9,20-29\r\n");
    assert_eq!((r.status, r.body.len()), (200, 1 << 20));
    let r = get(
        &s,
        "/static/big.bin",
        "Range: bytes=0-9\r\nIf-Range: \"not-the-etag\"\r\n",
    );
    assert_eq!((r.status, r.body.len()), (200, 1 << 20));
}

#[test]
#[ignore = "needs static files wired into the proxy (files::respond, files::send_body)"]
fn directories_methods_and_missing_files() {
    let s = site();
    let r = get(&s, "/static/sub/", "");
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>sub</h1>\n"));
    let r = get(&s, "/static/sub?x=1", "");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/static/sub/?x=1"));
    assert_eq!(get(&s, "/static/noindex/", "").status, 403);
    assert_eq!(get(&s, "/static/missing.css", "").status, 404);
    assert_eq!(get(&s, "/static/nodir/", "").status, 404);
    for m in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = raw(
            &s,
            &format!("{m} /static/a.css HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"),
        );
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{m}");
    }
}

/// Every way out of the root that proxies and file servers have been caught by: the secret
/// beside the root is never served (400, 403 from the `/` location, or 404).
#[test]
#[ignore = "needs static files wired into the proxy (files::respond, files::send_body)"]
fn traversal_attempts_never_leave_the_root() {
    let s = site();
    let attempts = [
        "/static/../secret.txt",
        "/static/../../secret.txt",
        "/static/%2e%2e/%2e%2e/secret.txt",
        "/static/%2E%2E/%2E%2E/secret.txt",
        "/static/.%2e/.%2e/secret.txt",
        "/static%2f..%2f..%2fsecret.txt",
        "/static/..%2f..%2fsecret.txt",
        "/static/..%2F..%2Fsecret.txt",
        "/static/..%5c..%5csecret.txt",
        "/static/..\\..\\secret.txt",
        "/static/out.txt",
        "/static/abs.txt",
        "/static/updir/secret.txt",
        "/static/a.css%00.png",
        "/static/%252e%252e/%252e%252e/secret.txt",
        "//static//..//..//secret.txt",
        "/static/./../../secret.txt",
        "/static/sub/../../../secret.txt",
        "/static/%c0%ae%c0%ae/%c0%ae%c0%ae/secret.txt",
        "/static/..;/..;/secret.txt",
        "/static/....//....//secret.txt",
        "/files../secret.txt",
        "/files/../secret.txt",
        "/files%2f..%2fsecret.txt",
        "http://t/static/../../secret.txt",
    ];
    for a in attempts {
        let r = get(&s, a, "");
        assert!(
            matches!(r.status, 400 | 403 | 404),
            "{a}: {} {:?}",
            r.status,
            r.text()
        );
        assert!(!r.text().contains("TOP SECRET"), "{a} leaked the secret");
    }
}
