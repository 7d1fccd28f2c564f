//! Request and response buffering through the real binary, in front of a backend that
//! serves one request at a time as a Gunicorn sync worker does: slow clients must not hold
//! it, uploads reach it with a Content-Length whatever the client's framing, bodies that
//! outgrow memory spill to files that nobody can see and that are gone afterwards, and the
//! memory per slow reader stays bounded.

#[allow(unused_imports)]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::client::Conn;
use common::{free_port, Proxy};
use sha2::{Digest, Sha256};

/// The tests of this file run one at a time: two of them compare when things happen, and
/// one loads the machine with a thousand slow readers.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// One worker, one request at a time, connection closed after each response (Gunicorn's
/// sync worker): `GET /big?n=N` answers N bytes, `POST /upload` reads its Content-Length
/// body (a chunked one, as WSGI sees it, is empty) and answers `LEN SHA256`, `GET /fast`
/// answers `fast`. Request heads are kept.
struct SyncWorker {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    served: Arc<AtomicU64>,
}

impl SyncWorker {
    fn start() -> SyncWorker {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let w = SyncWorker {
            addr: l.local_addr().unwrap(),
            heads: Arc::default(),
            served: Arc::default(),
        };
        let (heads, served) = (w.heads.clone(), w.served.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let _ = serve_one(&mut s, &heads);
                served.fetch_add(1, Ordering::SeqCst);
            }
        });
        w
    }
}

fn serve_one(s: &mut TcpStream, heads: &Mutex<Vec<String>>) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut tmp = [0u8; 16384];
        let n = s.read(&mut tmp)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    heads.lock().unwrap().push(head.clone());
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < len {
        let mut tmp = vec![0u8; 65536];
        let n = s.read(&mut tmp)?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&tmp[..n]);
    }
    let target = head.split(' ').nth(1).unwrap_or("/").to_string();
    let answer: Vec<u8> = if let Some(n) = target.strip_prefix("/big?n=") {
        let n: usize = n.parse().unwrap();
        let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n")
            .into_bytes();
        r.extend((0..n).map(|i| (i % 251) as u8));
        r
    } else if target == "/upload" {
        let text = format!("{} {}", body.len(), hex(&Sha256::digest(&body)));
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )
        .into_bytes()
    } else {
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nfast".to_vec()
    };
    s.write_all(&answer)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn config(port: u16, backend: SocketAddr, location_extra: &str, temp: &std::path::Path) -> String {
    format!(
        r#"
[runtime]
workers = 2
shutdown_timeout = "2s"
temp_path = "{temp}"

[[server]]
listen = ["127.0.0.1:{port}"]
client_body_timeout = "60s"
keepalive_timeout = "60s"

  [[server.location]]
  path = "/"
  proxy_pass = "app"
  {location_extra}

[upstream.app]
connect_timeout = "5s"
read_timeout = "120s"
send_timeout = "120s"
servers = [{{ addr = "{backend}" }}]
"#,
        temp = temp.display()
    )
}

fn start(backend: SocketAddr, location_extra: &str) -> (Proxy, std::path::PathBuf) {
    let port = free_port();
    let temp = common::proxy::temp_dir().join("spool");
    let p = Proxy::start(
        &config(port, backend, location_extra, &temp),
        SocketAddr::from(([127, 0, 0, 1], port)),
    );
    (p, temp)
}

/// Counters an upload bumps: once its first 64 KiB went out, and once all of it did.
#[derive(Default)]
struct Progress {
    started: AtomicU64,
    sent_all: AtomicU64,
}

/// Sends a POST of `size` bytes at `rate` bytes/s (chunked or with a Content-Length), then
/// returns the response body.
fn upload(
    addr: SocketAddr,
    size: usize,
    rate: usize,
    chunked: bool,
    progress: Option<Arc<Progress>>,
) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {size}")
    };
    s.write_all(format!("POST /upload HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n").as_bytes())
        .unwrap();
    let piece = if rate == 0 { 65536 } else { rate / 10 };
    let body: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    let mut sent = 0;
    let mut counted = false;
    while sent < size {
        let n = piece.min(size - sent);
        if chunked {
            s.write_all(format!("{n:x}\r\n").as_bytes()).unwrap();
        }
        s.write_all(&body[sent..sent + n]).unwrap();
        if chunked {
            s.write_all(b"\r\n").unwrap();
        }
        sent += n;
        if sent >= 65536 && !counted {
            counted = true;
            if let Some(p) = &progress {
                p.started.fetch_add(1, Ordering::SeqCst);
            }
        }
        if rate > 0 && sent < size {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if chunked {
        s.write_all(b"0\r\n\r\n").unwrap();
    }
    if let Some(p) = &progress {
        p.sent_all.fetch_add(1, Ordering::SeqCst);
    }
    let mut c = Conn::from_stream(s);
    c.read_response(false).unwrap().text()
}

fn expected(size: usize) -> String {
    let body: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    format!("{} {}", size, hex(&Sha256::digest(&body)))
}

#[test]
fn uploads_reach_the_server_with_a_content_length_whatever_their_framing() {
    let _serial = serial();
    let w = SyncWorker::start();
    let (p, temp) = start(w.addr, "");
    // Small (memory) and large (spilled to a file: proxy_buffers defaults to 256k).
    for size in [1000, 3 << 20] {
        for chunked in [false, true] {
            assert_eq!(
                upload(p.addr, size, 0, chunked, None),
                expected(size),
                "{size} chunked={chunked}"
            );
        }
    }
    for h in w.heads.lock().unwrap().iter() {
        let lower = h.to_ascii_lowercase();
        assert!(!lower.contains("transfer-encoding"), "{h}");
        assert!(lower.contains("content-length:"), "{h}");
    }
    // The spill files were never visible and nothing is left.
    assert_eq!(leftovers(&temp), 0);
}

#[test]
fn a_chunked_upload_over_the_limit_is_a_413_before_any_server_sees_it() {
    let _serial = serial();
    let w = SyncWorker::start();
    let (p, _temp) = start(w.addr, "max_body_bytes = \"100k\"");
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = vec![b'x'; 50 * 1024];
    for _ in 0..3 {
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .is_err()
            || s.write_all(&chunk).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let r = Conn::from_stream(s).read_response(false).unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(w.served.load(Ordering::SeqCst), 0);
}

fn leftovers(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// A slow reader of a `GET /big?n=size` response: reads `rate` bytes/s until `stop`.
fn slow_reader(
    addr: SocketAddr,
    size: usize,
    rate: usize,
    got_head: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut s = TcpStream::connect(addr).unwrap();
    // A small receive buffer, so that the kernel does not read on the client's behalf.
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(16 * 1024)
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(format!("GET /big?n={size} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut total = 0;
    let mut counted = false;
    let mut tmp = vec![0u8; rate / 10];
    while !stop.load(Ordering::SeqCst) {
        let n = match s.read(&mut tmp) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        total += n;
        if !counted {
            counted = true;
            got_head.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    total
}

/// Starts slow readers and slow uploaders, waits until all are under way, then sends a
/// normal GET and reports whether it was answered while every upload was still being sent.
/// Without request buffering that cannot be: the worker reads an upload as it arrives, so
/// it answers the GET only after some upload was sent whole.
fn normal_get_while_slow_clients(p: &Proxy, uploaders: usize, readers: usize) -> bool {
    let stop = Arc::new(AtomicBool::new(false));
    let reading = Arc::new(AtomicU64::new(0));
    let uploading = Arc::new(Progress::default());
    let mut threads = Vec::new();
    for _ in 0..readers {
        let (addr, reading, stop) = (p.addr, reading.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            slow_reader(addr, 1 << 20, 100 * 1024, reading, stop);
        }));
    }
    for _ in 0..uploaders {
        let (addr, uploading) = (p.addr, uploading.clone());
        threads.push(std::thread::spawn(move || {
            let r = upload(addr, 1 << 20, 100 * 1024, false, Some(uploading));
            assert_eq!(r, expected(1 << 20));
        }));
    }
    // Every reader has its first bytes and every uploader has sent 64 KiB.
    let deadline = Instant::now() + Duration::from_secs(60);
    while (reading.load(Ordering::SeqCst) as usize) < readers
        || (uploading.started.load(Ordering::SeqCst) as usize) < uploaders
    {
        assert!(Instant::now() < deadline, "slow clients did not get going");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut c = Conn::open(p.addr).unwrap();
    c.send(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.text(), "fast");
    let before_any_upload = uploading.sent_all.load(Ordering::SeqCst) == 0;
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    before_any_upload
}

#[test]
fn slow_clients_do_not_hold_a_sync_worker() {
    let _serial = serial();
    let w = SyncWorker::start();
    let (p, temp) = start(w.addr, "");
    // Uploads take 10 s each at 100 KiB/s; the GET goes about 1 s in. With buffering the
    // worker only ever sees whole requests and answers them at once.
    assert!(
        normal_get_while_slow_clients(&p, 50, 50),
        "a normal GET waited for a slow upload"
    );
    assert_eq!(leftovers(&temp), 0);
}

#[test]
fn without_buffering_a_slow_upload_holds_the_worker() {
    let _serial = serial();
    // The same shape with buffering off shows the delay the buffering removes (so that the
    // test above can fail): the worker reads the upload as slowly as it arrives.
    let w = SyncWorker::start();
    let (p, _temp) = start(
        w.addr,
        "proxy_request_buffering = false\n  proxy_buffering = false",
    );
    assert!(
        !normal_get_while_slow_clients(&p, 3, 0),
        "the GET was answered before an upload the worker was reading finished"
    );
}

#[test]
fn slow_readers_get_whole_responses_and_memory_stays_bounded() {
    let _serial = serial();
    let w = streaming_backend();
    let port = free_port();
    let temp = common::proxy::temp_dir().join("spool");
    // Small memory buffers and a 1 MiB file per response: beyond that the server is read
    // only as fast as the client.
    let cfg = config(
        port,
        w,
        "proxy_buffers = \"64k\"\n  proxy_max_temp_file_size = \"1m\"",
        &temp,
    );
    let p = Proxy::start(&cfg, SocketAddr::from(([127, 0, 0, 1], port)));
    // Warm up (allocator arenas, the first temp file).
    let mut warm = Conn::open(p.addr).unwrap();
    warm.send(b"GET /big?n=1048576 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(warm.read_response(false).unwrap().body.len(), 1 << 20);
    let rss_before = p.rss_kib();
    let readers = 1000;
    let mut conns = Vec::new();
    for _ in 0..readers {
        let mut s = TcpStream::connect(p.addr).unwrap();
        socket2::SockRef::from(&s)
            .set_recv_buffer_size(8 * 1024)
            .unwrap();
        s.write_all(format!("GET /big?n={} HTTP/1.1\r\nHost: t\r\n\r\n", 10 << 20).as_bytes())
            .unwrap();
        conns.push(s);
    }
    // Each response has been read from the server as far as the proxy may (64 KiB in
    // memory, 1 MiB in a file). Wait for the resident size to settle.
    let mut last = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let rss = p.rss_kib();
        if rss == last || Instant::now() > deadline {
            break;
        }
        last = rss;
    }
    let grown = p.rss_kib().saturating_sub(rss_before);
    // The documented bound (README, "In front of a Django/Gunicorn application"):
    // proxy_buffers (64 KiB here) plus about 100 KiB per slow reader (the chunk being
    // written to it, the upstream read buffer, connection and exchange state, allocator
    // slack).
    assert!(
        grown < readers * (64 + 112),
        "RSS grew by {grown} KiB for {readers} slow readers"
    );
    // Nothing visible in temp_path (O_TMPFILE), and the files are gone with the readers.
    assert_eq!(leftovers(&temp), 0);
    let fds_with = open_tmpfiles(p.pid());
    assert!(fds_with > 0, "the responses did not spill to files");
    drop(conns);
    let deadline = Instant::now() + Duration::from_secs(60);
    while open_tmpfiles(p.pid()) > 0 {
        assert!(
            Instant::now() < deadline,
            "temp files still open after the readers left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And a slow reader that reads it all gets every byte, in order: the spool (64 KiB in
    // memory, then the file, then the server held back) keeps the stream whole.
    let size = 3 << 20;
    let mut s = TcpStream::connect(p.addr).unwrap();
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(16 * 1024)
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(format!("GET /big?n={size} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut c = Conn::from_stream(s);
    let r = c.read_response(false).unwrap();
    assert_eq!(r.body.len(), size);
    assert!(r
        .body
        .iter()
        .enumerate()
        .all(|(i, &b)| b == ((i % 65536) % 251) as u8));
}

/// A backend with a thread per connection that streams `GET /big?n=N` from one shared
/// pattern (a thousand 10 MiB responses must not cost the test 10 GiB).
fn streaming_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let pattern: Arc<Vec<u8>> = Arc::new((0..65536).map(|i| (i % 251) as u8).collect());
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let pattern = pattern.clone();
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
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
                        let n: usize = head
                            .split(' ')
                            .nth(1)
                            .and_then(|t| t.strip_prefix("/big?n="))
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(0);
                        if s.write_all(
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").as_bytes(),
                        )
                        .is_err()
                        {
                            return;
                        }
                        let mut left = n;
                        while left > 0 {
                            let k = left.min(pattern.len());
                            if s.write_all(&pattern[..k]).is_err() {
                                return;
                            }
                            left -= k;
                        }
                    }
                })
                .unwrap();
        }
    });
    addr
}

/// Open descriptors of `pid` that are unlinked temporary files.
fn open_tmpfiles(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| {
                    t.to_string_lossy().contains("(deleted)") || t.to_string_lossy().contains("#")
                })
                .count()
        })
        .unwrap_or(0)
}
