//! The admin endpoint on `admin.listen`: `GET /metrics` (Prometheus text), `GET /status`
//! (JSON) and `GET /` (a self-contained HTML status page that polls `/status`).
//!
//! A small HTTP/1.1 server on its own thread (`ringlb-admin`), blocking I/O, one short-lived
//! thread per connection and `Connection: close` on every response: it is scraped every few
//! seconds and never on the request path. It reads only shared state (the published
//! snapshot, `PeerState` atomics, per-worker counter shards summed at scrape time), so a
//! scrape costs the workers nothing.
//!
//! Its address is read at start; a reload that changes `admin.listen` takes effect on
//! restart.

mod prometheus;
mod status;
mod view;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::runtime::Process;

pub use view::ServerState;

/// The status page (inline CSS and JS, no external assets).
const PAGE: &str = include_str!("page.html");
/// A request head larger than this is refused: the endpoint takes GETs without bodies.
const MAX_HEAD: usize = 8 * 1024;
/// A client that sends nothing for this long is dropped (browsers open spare sockets).
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are answered 503 at once.
const MAX_CONNS: usize = 32;

/// Binds `addr` and serves the admin endpoint on a new thread.
pub fn start(addr: SocketAddr, process: Arc<Process>) -> std::io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} (admin.listen): {e}"),
        )
    })?;
    tracing::info!(%addr, "admin endpoint listening");
    std::thread::Builder::new()
        .name("ringlb-admin".into())
        .spawn(move || serve(listener, process))
}

fn serve(listener: TcpListener, process: Arc<Process>) {
    let busy = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONNS {
            busy.fetch_sub(1, Ordering::AcqRel);
            let _ = respond(&mut stream, 503, "text/plain", b"busy\n", false);
            continue;
        }
        let process = process.clone();
        let busy2 = busy.clone();
        let spawned = std::thread::Builder::new()
            .name("ringlb-admin-conn".into())
            .spawn(move || {
                let _ = handle(stream, &process);
                busy2.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Serves one request and closes.
fn handle(mut stream: TcpStream, process: &Process) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > MAX_HEAD {
            return respond(
                &mut stream,
                431,
                "text/plain",
                b"request too large\n",
                false,
            );
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let head_only = method == b"HEAD";
    if method != b"GET" && !head_only {
        return respond(&mut stream, 405, "text/plain", b"GET only\n", head_only);
    }
    match path {
        b"/metrics" => {
            let body = prometheus::render(process);
            respond(
                &mut stream,
                200,
                prometheus::CONTENT_TYPE,
                body.as_bytes(),
                head_only,
            )
        }
        b"/status" => {
            let mut body = serde_json::to_vec_pretty(&status::render(process))
                .unwrap_or_else(|_| b"{}".to_vec());
            body.push(b'\n');
            respond(&mut stream, 200, "application/json", &body, head_only)
        }
        b"/" | b"/index.html" => respond(
            &mut stream,
            200,
            "text/html; charset=utf-8",
            PAGE.as_bytes(),
            head_only,
        ),
        _ => respond(&mut stream, 404, "text/plain", b"not found\n", head_only),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: ringlb\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    stream.write_all(&out)?;
    stream.flush()
}
