//! Static files against a real directory tree (regular files, directories, symlinks in and
//! out, a FIFO), on both drivers: resolution, validators, ranges and traversal without
//! sockets; then the zero-copy sends through a real loopback socket.

use std::future::Future;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::http::request::{self, RequestHead};
use crate::http::uri;

/// Runs a test body on the io_uring driver, then on epoll.
fn on_both<F: Future<Output = ()>>(f: impl Fn() -> F) {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime")
        .block_on(f());
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("epoll runtime")
        .block_on(f());
}

/// A site tree with one file outside it that symlinks try to reach.
struct Tree {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
}

const CSS: &str = "body { color: red }\n";
const INDEX: &str = "<h1>home</h1>\n";

fn tree() -> Tree {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("site");
    let w = |p: &str, s: &str| std::fs::write(root.join(p), s).unwrap();
    std::fs::create_dir_all(root.join("static/img")).unwrap();
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(root.join("noindex")).unwrap();
    std::fs::write(tmp.path().join("secret.txt"), "TOP SECRET\n").unwrap();
    w("index.html", INDEX);
    w("static/a.css", CSS);
    w("static/empty.txt", "");
    w("static/big.bin", &"0123456789".repeat(100_000));
    w("sub/index.html", "<h1>sub</h1>\n");
    w("sub/page.txt", "page\n");
    w("a b%.txt", "spaces\n");
    symlink("a.css", root.join("static/inside.css")).unwrap();
    symlink("../secret.txt", root.join("out.txt")).unwrap();
    symlink("../../secret.txt", root.join("static/out2.txt")).unwrap();
    symlink(tmp.path().join("secret.txt"), root.join("abs.txt")).unwrap();
    symlink("..", root.join("updir")).unwrap();
    symlink("/proc/self/root/etc/hostname", root.join("magic")).unwrap();
    let fifo = std::ffi::CString::new(root.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    Tree { _tmp: tmp, root }
}

fn site(t: &Tree, mapping: Mapping, dir: &str) -> Site {
    Site::open(
        &t.root.join(dir),
        mapping,
        vec!["index.html".into()],
        Some(Duration::from_secs(3600)),
    )
    .unwrap()
}

/// A response as the client would see it.
#[derive(Debug)]
struct Seen {
    status: u16,
    head: String,
    /// The text body written into `out`, or the file part named by the answer.
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(": ")?;
            n.eq_ignore_ascii_case(name).then_some(v)
        })
    }
}

/// Parses `raw` (a request head), normalises its target as the proxy does (a bad path is
/// the proxy's 400), and asks the site.
async fn ask(site: &Site, raw: &str) -> Seen {
    let mut head = RequestHead::default();
    assert!(request::parse(raw.as_bytes(), &mut head).unwrap(), "{raw}");
    let buf = raw.as_bytes();
    let target = &buf[head.target.0 as usize..head.target.1 as usize];
    let mut norm = Vec::new();
    let path = match uri::normalize(target, &mut norm) {
        Ok(true) => &norm[..],
        // As the proxy passes it: the target with its query (`respond` ignores it).
        Ok(false) => target,
        Err(_) => {
            return Seen {
                status: 400,
                head: String::new(),
                body: Vec::new(),
            }
        }
    };
    let req = Request::from_head(&head, buf);
    let mut out = Vec::new();
    let reply = Reply {
        close: false,
        minor: 1,
    };
    let answer = respond(site, path, &req, reply, &mut out).await;
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head_text = String::from_utf8(out[..end].to_vec()).unwrap();
    assert!(head_text.starts_with(&format!("HTTP/1.1 {} ", answer.status)));
    let mut body = out[end..].to_vec();
    if let Some(b) = answer.body {
        assert!(body.is_empty());
        let (r, data) = b
            .file
            .read_exact_at(vec![0u8; b.len as usize], b.offset)
            .await;
        r.unwrap();
        body = data;
    }
    let seen = Seen {
        status: answer.status,
        head: head_text,
        body,
    };
    if let Some(len) = seen.header("Content-Length") {
        if !raw.starts_with("HEAD") {
            assert_eq!(len.parse::<usize>().unwrap(), seen.body.len(), "{seen:?}");
        }
    }
    seen
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

fn get_with(path: &str, header: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{header}\r\n\r\n")
}

#[test]
fn files_headers_and_methods() {
    let t = tree();
    on_both(|| async {
        let s = site(&t, Mapping::Root, "");
        let r = ask(&s, &get("/static/a.css")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, CSS.as_bytes());
        assert_eq!(r.header("Content-Type"), Some("text/css; charset=utf-8"));
        assert_eq!(r.header("Accept-Ranges"), Some("bytes"));
        assert_eq!(r.header("Cache-Control"), Some("max-age=3600"));
        assert!(r.header("Expires").is_some() && r.header("Date").is_some());
        let meta = std::fs::metadata(t.root.join("static/a.css")).unwrap();
        let mtime = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(
            r.header("ETag").unwrap(),
            format!("\"{mtime:x}-{:x}\"", CSS.len())
        );
        assert_eq!(
            conditional::parse_date(r.header("Last-Modified").unwrap().as_bytes()),
            Some(mtime as i64)
        );

        let h = ask(&s, "HEAD /static/a.css HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!((h.status, h.body.len()), (200, 0));
        assert_eq!(h.header("Content-Length"), Some("20"));

        for m in ["POST", "PUT", "DELETE", "OPTIONS"] {
            let raw = format!("{m} /static/a.css HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
            let r = ask(&s, &raw).await;
            assert_eq!(r.status, 405, "{m}");
            assert_eq!(r.header("Allow"), Some("GET, HEAD"));
        }

        let e = ask(&s, &get("/static/empty.txt")).await;
        assert_eq!((e.status, e.header("Content-Length")), (200, Some("0")));
        let u = ask(&s, &get("/static/img/")).await;
        assert_eq!(u.status, 403);
        let n = ask(&s, &get("/static/missing.css")).await;
        assert_eq!(n.status, 404);
        assert_eq!(n.body, b"404 Not Found\n");
        let sp = ask(&s, &get("/a%20b%25.txt")).await;
        assert_eq!((sp.status, &sp.body[..]), (200, &b"spaces\n"[..]));
        assert_eq!(sp.header("Content-Type"), Some("text/plain; charset=utf-8"));
    });
}

#[test]
fn directories_index_and_redirects() {
    let t = tree();
    on_both(|| async {
        let s = site(&t, Mapping::Root, "");
        let r = ask(&s, &get("/")).await;
        assert_eq!((r.status, &r.body[..]), (200, INDEX.as_bytes()));
        assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
        let r = ask(&s, &get("/sub/")).await;
        assert_eq!((r.status, &r.body[..]), (200, &b"<h1>sub</h1>\n"[..]));
        let r = ask(&s, &get("/sub")).await;
        assert_eq!(r.status, 301);
        assert_eq!(r.header("Location"), Some("/sub/"));
        let r = ask(&s, &get("/sub?page=2&x=%20")).await;
        assert_eq!(r.header("Location"), Some("/sub/?page=2&x=%20"));
        let r = ask(&s, &get("/noindex/")).await;
        assert_eq!(r.status, 403);
        let r = ask(&s, &get("/nodir/")).await;
        assert_eq!(r.status, 404);
        // A file named as a directory.
        let r = ask(&s, &get("/sub/page.txt/")).await;
        assert_eq!(r.status, 404);

        // alias: the location prefix is replaced by the directory.
        let a = site(
            &t,
            Mapping::Alias {
                prefix: "/assets/".into(),
            },
            "static",
        );
        let r = ask(&a, &get("/assets/a.css")).await;
        assert_eq!((r.status, &r.body[..]), (200, CSS.as_bytes()));
        let r = ask(&a, &get("/assets/")).await;
        assert_eq!(r.status, 403);
        let r = ask(&a, &get("/assets/img")).await;
        assert_eq!(r.header("Location"), Some("/assets/img/"));
        let r = ask(&a, &get("/static/a.css")).await;
        assert_eq!(r.status, 404);
    });
}

#[test]
fn validators_and_ranges() {
    let t = tree();
    on_both(|| async {
        let s = site(&t, Mapping::Root, "");
        let full = ask(&s, &get("/static/a.css")).await;
        let etag = full.header("ETag").unwrap().to_string();
        let lm = full.header("Last-Modified").unwrap().to_string();

        let r = ask(
            &s,
            &get_with("/static/a.css", &format!("If-None-Match: {etag}")),
        )
        .await;
        assert_eq!((r.status, r.body.len()), (304, 0));
        assert_eq!(r.header("ETag"), Some(etag.as_str()));
        assert_eq!(r.header("Cache-Control"), Some("max-age=3600"));
        assert_eq!(r.header("Content-Length"), None);
        let r = ask(
            &s,
            &get_with("/static/a.css", &format!("If-Modified-Since: {lm}")),
        )
        .await;
        assert_eq!(r.status, 304);
        let r = ask(&s, &get_with("/static/a.css", "If-None-Match: \"stale\"")).await;
        assert_eq!(r.status, 200);
        let r = ask(&s, &get_with("/static/a.css", "If-Match: \"stale\"")).await;
        assert_eq!(r.status, 412);

        let r = ask(&s, &get_with("/static/big.bin", "Range: bytes=10-19")).await;
        assert_eq!((r.status, &r.body[..]), (206, &b"0123456789"[..]));
        assert_eq!(r.header("Content-Range"), Some("bytes 10-19/1000000"));
        let r = ask(&s, &get_with("/static/big.bin", "Range: bytes=-3")).await;
        assert_eq!((r.status, &r.body[..]), (206, &b"789"[..]));
        let r = ask(&s, &get_with("/static/big.bin", "Range: bytes=999999-")).await;
        assert_eq!(
            r.header("Content-Range"),
            Some("bytes 999999-999999/1000000")
        );
        let r = ask(&s, &get_with("/static/big.bin", "Range: bytes=1000000-")).await;
        assert_eq!(r.status, 416);
        assert_eq!(r.header("Content-Range"), Some("bytes */1000000"));
        let r = ask(&s, &get_with("/static/big.bin", "Range: bytes=0-1,4-5")).await;
        assert_eq!((r.status, r.body.len()), (200, 1_000_000));
        let stale_range = "Range: bytes=0-3\r\nIf-Range: \"stale\"";
        let r = ask(&s, &get_with("/static/a.css", stale_range)).await;
        assert_eq!((r.status, r.body.len()), (200, CSS.len()));
        let fresh_range = format!("Range: bytes=0-3\r\nIf-Range: {etag}");
        let r = ask(&s, &get_with("/static/a.css", &fresh_range)).await;
        assert_eq!((r.status, &r.body[..]), (206, &b"body"[..]));
    });
}

#[test]
fn nothing_outside_the_directory_is_reachable() {
    let t = tree();
    on_both(|| async {
        let s = site(&t, Mapping::Root, "");
        // A symlink that stays inside is followed.
        let r = ask(&s, &get("/static/inside.css")).await;
        assert_eq!((r.status, &r.body[..]), (200, CSS.as_bytes()));
        let attempts = [
            "/../secret.txt",
            "/static/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E/secret.txt",
            "/static/%2e%2e/%2e%2e/secret.txt",
            "/.%2e/secret.txt",
            "/%2e./secret.txt",
            "/static%2f..%2f..%2fsecret.txt",
            "/static%2F%2E%2E%2F%2E%2E%2Fsecret.txt",
            "/static/..%2f..%2fsecret.txt",
            "/out.txt",
            "/static/out2.txt",
            "/abs.txt",
            "/updir/secret.txt",
            "/updir/site/index.html",
            "/magic",
            "/static/a.css%00.png",
            "/static/a.css\\..\\..\\secret.txt",
            "/%252e%252e/secret.txt",
            "//..//secret.txt",
            "/static/./../../secret.txt",
        ];
        for a in attempts {
            let r = ask(&s, &get(a)).await;
            assert!(
                matches!(r.status, 400 | 404),
                "{a}: {} {:?}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            assert!(!r.body.starts_with(b"TOP SECRET"), "{a}");
        }
        // A FIFO is not served, and opening it does not block the worker.
        assert_eq!(ask(&s, &get("/fifo")).await.status, 404);

        // alias without its trailing slash: nginx's off-by-slash hole stays closed.
        let a = site(
            &t,
            Mapping::Alias {
                prefix: "/static".into(),
            },
            "static",
        );
        for p in [
            "/static../secret.txt",
            "/static../site/index.html",
            "/static..",
        ] {
            assert_eq!(ask(&a, &get(p)).await.status, 404, "{p}");
        }
        assert_eq!(ask(&a, &get("/static/a.css")).await.status, 200);
    });
}

/// The slow open (the ring's openat2 on io_uring, the blocking call on epoll), which cached
/// paths never reach: the same verdicts as the fast one.
#[test]
fn the_uncached_open_keeps_to_the_directory() {
    let t = tree();
    let dir = std::sync::Arc::new(open::open_dir(&t.root).unwrap());
    on_both(|| async {
        let open = |p: &str| {
            let c = std::ffi::CString::new(p).unwrap();
            let dir = dir.clone();
            async move { open::open_uncached(&dir, &c).await.map(|_| ()) }
        };
        for good in ["static/a.css", "static/inside.css", "sub", "."] {
            open(good).await.unwrap();
        }
        for bad in [
            "out.txt",
            "abs.txt",
            "updir/secret.txt",
            "../secret.txt",
            "magic",
            "nope",
        ] {
            let e = open(bad).await.unwrap_err();
            assert_eq!(super::error_status(&e, bad.as_bytes()), 404, "{bad}: {e}");
        }
    });
}

#[test]
fn the_fallback_walk_refuses_every_symlink() {
    let t = tree();
    let dir = open::open_dir(&t.root).unwrap();
    use std::os::fd::AsRawFd;
    let walk = |p: &str| open::walk(dir.as_raw_fd(), Path::new(p)).map(|_| ());
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .build()
        .unwrap()
        .block_on(async {
            assert!(walk("static/a.css").is_ok());
            assert!(walk("sub/").is_ok());
            assert!(walk("").is_ok());
            for bad in [
                "out.txt",
                "abs.txt",
                "updir/secret.txt",
                "static/inside.css",
                "../secret.txt",
                "magic",
            ] {
                let e = walk(bad).unwrap_err();
                let status = super::error_status(&e, bad.as_bytes());
                assert_eq!(status, 404, "{bad}: {e}");
            }
        });
}

#[test]
fn sites_from_the_configuration() {
    let t = tree();
    let alias = FilesLoc {
        dir: FilesDir::Alias(t.root.join("static/")),
        index: vec!["index.html".into()],
        expires: None,
    };
    let s = Site::from_config("/assets/", &alias).unwrap();
    assert_eq!(
        s.mapping,
        Mapping::Alias {
            prefix: "/assets/".into()
        }
    );
    let root = FilesLoc {
        dir: FilesDir::Root(t.root.clone()),
        ..alias
    };
    let s = Site::from_config("/static/", &root).unwrap();
    assert_eq!((s.mapping, s.path), (Mapping::Root, t.root.clone()));
}

#[test]
fn site_setup_errors_name_the_problem() {
    let t = tree();
    let e = Site::open(&t.root.join("missing"), Mapping::Root, vec![], None).unwrap_err();
    assert!(
        e.to_string().contains("missing: cannot open the directory"),
        "{e}"
    );
    let e = Site::open(&t.root.join("index.html"), Mapping::Root, vec![], None).unwrap_err();
    assert!(e.to_string().contains("Not a directory"), "{e}");
    let e = Site::open(&t.root, Mapping::Root, vec!["../x.html".into()], None).unwrap_err();
    assert!(e.to_string().contains("index \"../x.html\""), "{e}");
}

/// The zero-copy send on each driver, through a real loopback socket: the client reads the
/// head and then exactly the file part.
#[test]
fn bodies_are_sent_whole_on_both_drivers() {
    let t = tree();
    let big = std::fs::read(t.root.join("static/big.bin")).unwrap();
    on_both(|| async {
        let s = site(&t, Mapping::Root, "");
        for (raw, want) in [
            (get("/static/big.bin"), &big[..]),
            (
                get_with("/static/big.bin", "Range: bytes=12345-612344"),
                &big[12345..612345],
            ),
            (get("/static/a.css"), CSS.as_bytes()),
        ] {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let reader = std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                let mut all = Vec::new();
                c.read_to_end(&mut all).unwrap();
                all
            });
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut head = RequestHead::default();
            request::parse(raw.as_bytes(), &mut head).unwrap();
            let req = Request::from_head(&head, raw.as_bytes());
            let path = raw.split(' ').nth(1).unwrap().as_bytes();
            let mut out = Vec::new();
            let reply = Reply {
                close: true,
                minor: 1,
            };
            let answer = respond(&s, path, &req, reply, &mut out).await;
            let head_len = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            // Small files come whole in `out`, large ones as a file part.
            assert_eq!(answer.body.is_none(), want.len() as u64 <= INLINE_MAX);
            let (r, _) = monoio::io::AsyncWriteRentExt::write_all(&mut sock, out).await;
            r.unwrap();
            if let Some(body) = &answer.body {
                send_file(&mut sock, &[], body, Duration::from_secs(10))
                    .await
                    .unwrap();
            }
            monoio::io::AsyncWriteRent::shutdown(&mut sock)
                .await
                .unwrap();
            let all = reader.join().unwrap();
            assert_eq!(all.len(), head_len + want.len());
            assert!(all[head_len..] == *want, "body differs");
        }
    });
}
