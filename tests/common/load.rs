//! Concurrent keepalive clients for distribution tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::client::Conn;

/// Per-backend response counts (by `X-Backend`) and failures.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub by_backend: HashMap<String, usize>,
    pub by_status: HashMap<u16, usize>,
    pub failures: usize,
}

impl Tally {
    pub fn count(&self, backend: &str) -> usize {
        self.by_backend.get(backend).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.by_backend.values().sum()
    }
}

/// `threads` clients, each on its own keepalive connection, send `per_thread` GETs of
/// `path` with extra header lines `headers` (each ending in \r\n).
pub fn run(
    addr: SocketAddr,
    threads: usize,
    per_thread: usize,
    path: &str,
    headers: &str,
) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let tally = tally.clone();
            let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n");
            std::thread::spawn(move || {
                let mut local = Tally::default();
                let mut conn = Conn::open(addr).ok();
                for _ in 0..per_thread {
                    let Some(c) = conn.as_mut() else {
                        local.failures += 1;
                        conn = Conn::open(addr).ok();
                        continue;
                    };
                    match c.send(req.as_bytes()).and_then(|_| c.read_response(false)) {
                        Ok(r) => {
                            *local.by_status.entry(r.status).or_default() += 1;
                            if r.status == 200 {
                                let b = r.header("x-backend").unwrap_or("?").to_string();
                                *local.by_backend.entry(b).or_default() += 1;
                            } else {
                                local.failures += 1;
                            }
                            if r.header("connection")
                                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                            {
                                conn = Conn::open(addr).ok();
                            }
                        }
                        Err(_) => {
                            local.failures += 1;
                            conn = Conn::open(addr).ok();
                        }
                    }
                }
                let mut t = tally.lock().unwrap();
                for (k, v) in local.by_backend {
                    *t.by_backend.entry(k).or_default() += v;
                }
                for (k, v) in local.by_status {
                    *t.by_status.entry(k).or_default() += v;
                }
                t.failures += local.failures;
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    Arc::try_unwrap(tally).unwrap().into_inner().unwrap()
}
