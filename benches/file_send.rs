//! Static file sends on this machine: a file body sent over loopback to a client that reads
//! as fast as it can, zero-copy (`files::send_file`: sendfile on both drivers)
//! against read + write through a buffer (`files::copy_body`), on each driver; and the cost
//! of opening a cached file beneath the site's directory (`openat2` + `statx`).
//!
//! `cargo bench --bench file_send` (release build). Prints wall time and process CPU time
//! (the reading client's share included, the same in every row) per file sent.

use std::io::Read;
use std::time::{Duration, Instant};

use ringlb::files::{copy_body, send_file, FileBody};

const ROUNDS_1M: usize = 500;
const ROUNDS_16K: usize = 5000;
/// Each figure is the lowest of this many runs, interleaved: the machine is shared, and the
/// minimum is the run least disturbed by others.
const REPS: usize = 7;

/// CPU time of every thread of the process: the worker, the reading client, and the
/// kernel's io-wq workers that run io_uring operations it punts (they belong to the
/// process's thread group).
fn cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[derive(Clone, Copy, PartialEq)]
enum Way {
    ZeroCopy,
    Copy,
}

/// Sends `rounds` times the whole file over one connection; returns (wall, cpu) per send.
async fn run(path: &std::path::Path, size: u64, rounds: usize, way: Way) -> (Duration, Duration) {
    let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let total = size * rounds as u64;
    let reader = std::thread::spawn(move || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        while got < total {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0);
            got += n as u64;
        }
    });
    let (mut sock, _) = listener.accept().await.unwrap();
    let std_file = std::fs::File::open(path).unwrap();
    let file = monoio::fs::File::from_std(std_file).unwrap();
    let body = FileBody {
        file,
        offset: 0,
        len: size,
    };
    let mut buf = Vec::with_capacity(64 * 1024);
    let (t0, c0) = (Instant::now(), cpu_now());
    for _ in 0..rounds {
        match way {
            Way::ZeroCopy => send_file(&mut sock, &[], &body, Duration::from_secs(30))
                .await
                .unwrap(),
            Way::Copy => {
                let (r, b) = copy_body(&mut sock, &body, buf, Duration::from_secs(30)).await;
                r.unwrap();
                buf = b;
            }
        }
    }
    reader.join().unwrap();
    let (wall, cpu) = (t0.elapsed(), cpu_now() - c0);
    (wall / rounds as u32, cpu / rounds as u32)
}

fn on<F: std::future::Future>(uring: bool, f: F) -> F::Output {
    if uring {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(f)
    } else {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(f)
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let one_m = dir.path().join("1m.bin");
    let mid = dir.path().join("64k.bin");
    let small = dir.path().join("16k.bin");
    std::fs::write(&one_m, vec![7u8; 1 << 20]).unwrap();
    std::fs::write(&mid, vec![7u8; 64 << 10]).unwrap();
    std::fs::write(&small, vec![7u8; 16 << 10]).unwrap();
    println!("driver   file  method       wall/send   cpu/send   (lowest of {REPS} runs)");
    for uring in [true, false] {
        let driver = if uring { "io_uring" } else { "epoll" };
        for (path, size, rounds, label) in [
            (&one_m, 1u64 << 20, ROUNDS_1M, "1MiB"),
            (&mid, 64u64 << 10, ROUNDS_16K, "64KiB"),
            (&small, 16u64 << 10, ROUNDS_16K, "16KiB"),
        ] {
            let ways = [Way::ZeroCopy, Way::Copy];
            let mut best = [(Duration::MAX, Duration::MAX); 2];
            // Warm the page cache and the pipe pool.
            on(uring, run(path, size, rounds / 10, Way::ZeroCopy));
            for _ in 0..REPS {
                for (i, &way) in ways.iter().enumerate() {
                    let (wall, cpu) = on(uring, run(path, size, rounds, way));
                    best[i] = (best[i].0.min(wall), best[i].1.min(cpu));
                }
            }
            for (i, &way) in ways.iter().enumerate() {
                let name = match way {
                    Way::ZeroCopy => "send_file",
                    Way::Copy => "copy_body",
                };
                println!(
                    "{driver:8} {label:5} {name:11} {:>8.1} us {:>8.1} us",
                    best[i].0.as_secs_f64() * 1e6,
                    best[i].1.as_secs_f64() * 1e6
                );
            }
        }
    }
    open_cost(dir.path());
    stalled_clients(dir.path());
}

/// Kernel threads held while clients do not read (none since sendfile replaced splice on
/// io_uring, whose socket side blocked an io-wq worker per stalled client).
fn stalled_clients(dir: &std::path::Path) {
    const CLIENTS: usize = 50;
    const SIZE: u64 = 16 << 20;
    let path = dir.join("16m.bin");
    std::fs::write(&path, vec![7u8; SIZE as usize]).unwrap();
    let io_wq = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter(|t| {
                let comm = t.as_ref().unwrap().path().join("comm");
                std::fs::read_to_string(comm).is_ok_and(|c| c.starts_with("iou-wrk"))
            })
            .count()
    };
    on(true, async move {
        let l = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let wait = std::sync::Arc::new(std::sync::Mutex::new(wait));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let wait = wait.clone();
                std::thread::spawn(move || {
                    let mut c = std::net::TcpStream::connect(addr).unwrap();
                    let _ = wait.lock().unwrap().recv();
                    let mut b = vec![0; 1 << 20];
                    let mut got = 0;
                    while got < SIZE as usize {
                        let n = c.read(&mut b).unwrap();
                        assert!(n > 0);
                        got += n;
                    }
                })
            })
            .collect();
        let mut sends = Vec::new();
        for _ in 0..CLIENTS {
            let (mut s, _) = l.accept().await.unwrap();
            let file = monoio::fs::File::from_std(std::fs::File::open(&path).unwrap()).unwrap();
            sends.push(monoio::spawn(async move {
                let body = FileBody {
                    file,
                    offset: 0,
                    len: SIZE,
                };
                send_file(&mut s, &[], &body, Duration::from_secs(60))
                    .await
                    .unwrap();
            }));
        }
        monoio::time::sleep(Duration::from_secs(2)).await;
        println!(
            "io_uring {CLIENTS} clients not reading 16 MiB files: {} io-wq threads",
            io_wq()
        );
        for _ in 0..CLIENTS {
            go.send(()).unwrap();
        }
        for s in sends {
            s.await;
        }
        for c in clients {
            c.join().unwrap();
        }
    });
}

/// openat2 + statx of a cached file through `files::respond`'s path (a HEAD, so no body).
fn open_cost(dir: &std::path::Path) {
    use ringlb::files::{respond, Mapping, Reply, Request, Site};
    use ringlb::http::request::{self, RequestHead};
    let site = Site::open(dir, Mapping::Root, vec![], None).unwrap();
    let raw = b"HEAD /16k.bin HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut head = RequestHead::default();
    request::parse(raw, &mut head).unwrap();
    let req = Request::from_head(&head, raw);
    let reply = Reply {
        close: false,
        minor: 1,
    };
    for uring in [true, false] {
        let per = on(uring, async {
            let mut out = Vec::with_capacity(1024);
            let n = 50_000;
            let t0 = Instant::now();
            for _ in 0..n {
                out.clear();
                let a = respond(&site, b"/16k.bin", &req, reply, &mut out).await;
                assert_eq!(a.status, 200);
            }
            t0.elapsed() / n
        });
        let driver = if uring { "io_uring" } else { "epoll" };
        println!(
            "{driver:8} open+statx+head of a cached file: {:.2} us",
            per.as_secs_f64() * 1e6
        );
    }
}
