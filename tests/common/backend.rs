//! A threaded HTTP/1.1 test backend with switchable behaviour.
//!
//! Paths: `/` says which backend answered (`X-Backend` header and body); `/echo` returns the
//! request head it received as its body; `/sum` returns `len sha256` of the request body;
//! `/big?n=N` returns N bytes (Content-Length); `/chunked?n=N` the same chunked;
//! `/close?n=N` close-delimited; `/slow?ms=M` answers after M ms; `/status?code=C`;
//! `/ws` accepts an Upgrade with 101 and then echoes bytes; `/health` 200.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// How the backend treats every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Behavior {
    Normal = 0,
    /// Accept, read the request, never answer.
    Hang = 1,
    /// Answer every request but `/health` with 503.
    Fail503 = 2,
    /// Close the connection right after reading a request.
    CloseAfterRead = 3,
    /// Serve normally but fail `/health` with 503 (a broken health check).
    SickHealth = 4,
}

pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    state: Arc<State>,
}

struct State {
    name: String,
    behavior: AtomicU8,
    stop: AtomicBool,
    pub accepts: AtomicU64,
    pub requests: AtomicU64,
    /// Request heads seen, for tests that check what reached the backend.
    heads: Mutex<Vec<String>>,
    /// Delay before every answer, in ms.
    delay_ms: AtomicU64,
    /// Close idle keepalive connections after this many ms (0 = never).
    idle_close_ms: AtomicU64,
    /// Requests being answered now, and the most seen at once.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Open connections by accept number, so that `kill` can close them.
    open: Mutex<HashMap<u64, TcpStream>>,
    /// The accept loop, joined by `kill` so that the address is free again.
    acceptor: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Backend {
    /// A backend on a reserved port ([`free_port`](super::free_port)): `restart` can
    /// always bind it again, since no kernel-chosen port can take it meanwhile.
    pub fn start(name: &str) -> Backend {
        Self::serve(super::reserved_listener(), name)
    }

    pub fn start_on(addr: &str, name: &str) -> Backend {
        Self::serve(TcpListener::bind(addr).unwrap(), name)
    }

    fn serve(listener: TcpListener, name: &str) -> Backend {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            name: name.to_string(),
            behavior: AtomicU8::new(0),
            stop: AtomicBool::new(false),
            accepts: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            heads: Mutex::new(Vec::new()),
            delay_ms: AtomicU64::new(0),
            idle_close_ms: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            acceptor: Mutex::new(None),
        });
        accept_loop(listener, &state);
        Backend {
            addr,
            name: name.to_string(),
            state,
        }
    }

    /// Like a crashed process: stops accepting (the address refuses connections) and closes
    /// every open connection, including those in the middle of a request.
    pub fn kill(&self) {
        self.stop();
        if let Some(t) = self.state.acceptor.lock().unwrap().take() {
            let _ = t.join();
        }
        for (_, c) in self.state.open.lock().unwrap().drain() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Starts accepting again on the same address (after `kill`), with the same name,
    /// behaviour and counters.
    pub fn restart(&self) {
        self.kill();
        let listener = TcpListener::bind(self.addr).unwrap();
        self.state.stop.store(false, Ordering::SeqCst);
        accept_loop(listener, &self.state);
    }

    pub fn set_behavior(&self, b: Behavior) {
        self.state.behavior.store(b as u8, Ordering::SeqCst);
    }

    pub fn set_delay(&self, d: Duration) {
        self.state
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn set_idle_close(&self, d: Duration) {
        self.state
            .idle_close_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn accepts(&self) -> u64 {
        self.state.accepts.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The most requests this backend was answering at the same time.
    pub fn max_in_flight(&self) -> u64 {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn heads(&self) -> Vec<String> {
        self.state.heads.lock().unwrap().clone()
    }

    /// Stops accepting (the listening socket closes; connections already open end when
    /// their client closes them).
    pub fn stop(&self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and drops the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, state: &Arc<State>) {
    let st = state.clone();
    let t = std::thread::spawn(move || {
        for conn in listener.incoming() {
            if st.stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let n = st.accepts.fetch_add(1, Ordering::SeqCst);
            if let Ok(c) = conn.try_clone() {
                st.open.lock().unwrap().insert(n, c);
            }
            let st = st.clone();
            std::thread::spawn(move || {
                let _ = serve(conn, &st);
                st.open.lock().unwrap().remove(&n);
            });
        }
    });
    *state.acceptor.lock().unwrap() = Some(t);
}

fn behavior(st: &State) -> Behavior {
    match st.behavior.load(Ordering::SeqCst) {
        1 => Behavior::Hang,
        2 => Behavior::Fail503,
        3 => Behavior::CloseAfterRead,
        4 => Behavior::SickHealth,
        _ => Behavior::Normal,
    }
}

struct Req {
    method: String,
    path: String,
    query: HashMap<String, String>,
    headers: Vec<(String, String)>,
    head: String,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Req>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        head.push_str(&line);
        if line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut lines = head.lines();
    let first = lines.next().unwrap_or("");
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let (path, qs) = target.split_once('?').unwrap_or((&target, ""));
    let query = qs
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut req = Req {
        method,
        path: path.to_string(),
        query,
        headers,
        head,
        body: Vec::new(),
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if size == 0 {
                // trailers until blank line
                loop {
                    let mut t = String::new();
                    r.read_line(&mut t)?;
                    if t == "\r\n" || t.is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size];
            r.read_exact(&mut chunk)?;
            req.body.extend_from_slice(&chunk);
            let mut crlf = [0; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        req.body.resize(n, 0);
        r.read_exact(&mut req.body)?;
    }
    Ok(Some(req))
}

fn serve(conn: TcpStream, st: &State) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    loop {
        let idle = st.idle_close_ms.load(Ordering::SeqCst);
        r.get_ref().set_read_timeout(if idle > 0 {
            Some(Duration::from_millis(idle))
        } else {
            None
        })?;
        let Some(req) = read_request(&mut r)? else {
            return Ok(());
        };
        r.get_ref().set_read_timeout(None)?;
        st.requests.fetch_add(1, Ordering::SeqCst);
        st.heads.lock().unwrap().push(req.head.clone());
        let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        st.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let _in_flight = InFlight(&st.in_flight);
        match behavior(st) {
            Behavior::Hang => {
                std::thread::sleep(Duration::from_secs(3600));
                return Ok(());
            }
            Behavior::CloseAfterRead => return Ok(()),
            _ => {}
        }
        let delay = st.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let n: usize = req.query.get("n").and_then(|v| v.parse().ok()).unwrap_or(0);
        let name = &st.name;
        let sick = match behavior(st) {
            Behavior::Fail503 => req.path != "/health",
            Behavior::SickHealth => req.path == "/health",
            _ => false,
        };
        if sick {
            respond(&mut w, 503, name, b"unavailable\n", close)?;
        } else {
            match req.path.as_str() {
                "/echo" => respond(&mut w, 200, name, req.head.as_bytes(), close)?,
                "/sum" => {
                    let sum = hex(&Sha256::digest(&req.body));
                    let body = format!("{} {}", req.body.len(), sum);
                    respond(&mut w, 200, name, body.as_bytes(), close)?;
                }
                "/big" => respond(&mut w, 200, name, &pattern(n), close)?,
                "/chunked" => {
                    write!(
                        w,
                        "HTTP/1.1 200 OK\r\nX-Backend: {name}\r\nTransfer-Encoding: chunked\r\n\r\n"
                    )?;
                    let data = pattern(n);
                    for c in data.chunks(7000) {
                        write!(w, "{:x}\r\n", c.len())?;
                        w.write_all(c)?;
                        w.write_all(b"\r\n")?;
                    }
                    w.write_all(b"0\r\n\r\n")?;
                }
                "/close" => {
                    write!(
                        w,
                        "HTTP/1.1 200 OK\r\nX-Backend: {name}\r\nConnection: close\r\n\r\n"
                    )?;
                    w.write_all(&pattern(n))?;
                    return Ok(());
                }
                "/slow" => {
                    let ms: u64 = req
                        .query
                        .get("ms")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(100);
                    std::thread::sleep(Duration::from_millis(ms));
                    respond(&mut w, 200, name, name.as_bytes(), close)?;
                }
                "/status" => {
                    let code: u16 = req
                        .query
                        .get("code")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(200);
                    respond(&mut w, code, name, b"status\n", close)?;
                }
                "/ws" => {
                    write!(
                        w,
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Backend: {name}\r\n\r\n"
                    )?;
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = r.read(&mut buf)?;
                        if n == 0 {
                            return Ok(());
                        }
                        w.write_all(&buf[..n])?;
                    }
                }
                _ => {
                    let body = if req.method == "HEAD" {
                        Vec::new()
                    } else {
                        name.as_bytes().to_vec()
                    };
                    respond(&mut w, 200, name, &body, close)?;
                }
            }
        }
        if close {
            return Ok(());
        }
    }
}

struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn respond(
    w: &mut TcpStream,
    code: u16,
    name: &str,
    body: &[u8],
    close: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {code} X\r\nX-Backend: {name}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut msg = head.into_bytes();
    msg.extend_from_slice(body);
    w.write_all(&msg)
}

/// Deterministic bytes for body checks.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}
