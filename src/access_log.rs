//! The access log: one line per request, per `[[server]]` block with `access_log = "PATH"`.
//!
//! # Format
//! nginx's `combined` format followed by four of nginx's upstream variables, i.e. what an
//! nginx user writes as
//! ```text
//! log_format main '$remote_addr - $remote_user [$time_local] "$request" $status '
//!                 '$body_bytes_sent "$http_referer" "$http_user_agent" '
//!                 '$upstream_addr $upstream_status $request_time $upstream_response_time';
//! ```
//! for example
//! ```text
//! 127.0.0.1 - - [25/Nov/2025:12:49:11 +0000] "GET /api?x=1 HTTP/1.1" 200 612 "-" "curl/8.5.0" 10.0.0.7:8001 200 0.004 0.003
//! ```
//! - `$remote_user` is always `-` (ringlb does no authentication).
//! - `$time_local`: when the line is written (the end of the request), local time zone.
//! - `$request`: the request line as received; `$http_referer`, `$http_user_agent`: `-`
//!   when absent. In these three, `"`, `\`, control bytes and bytes >= 0x7f are written as
//!   `\xHH`, as nginx does.
//! - `$status`: the status sent to the client; `499` when the client went away before a
//!   response could be sent (nginx's code for it).
//! - `$body_bytes_sent`: response bytes after the head that reached the client socket.
//! - `$upstream_addr`, `$upstream_status`, `$upstream_response_time`: the last server tried,
//!   its status and the time from sending the request to its response head, in seconds
//!   with millisecond resolution; `-` when no server was tried or none answered. Unlike
//!   nginx, a retried request shows only its last attempt, not a comma-separated list.
//! - `$request_time`: seconds (millisecond resolution) from the parsed request head to the
//!   end of the response.
//!
//! # Cost
//! Nothing at all for a server block without a log. With one, each worker formats lines
//! into a reused buffer per log file (no allocation per request) and hands full buffers
//! (32 KiB, or whatever accumulated, once a second and at stop) to the writer thread over a
//! channel; the writer thread owns the files, so a slow disk never stalls a worker. Empty
//! buffers come back through a spare queue to be reused. SIGUSR1 makes the writer close and
//! reopen every file (logrotate's `postrotate`).

use crate::config::ServerAddr;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use crossbeam::queue::ArrayQueue;

/// A worker hands a buffer to the writer once it holds this much: large enough that the
/// writer makes few system calls, small enough that a busy worker's buffer stays in cache.
const FLUSH_AT: usize = 32 * 1024;
/// A partly filled buffer is handed over at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Buffers in flight to the writer before lines are dropped rather than the worker
/// blocking (1024 x 32 KiB = 32 MiB of log waiting on a stalled disk).
const QUEUE: usize = 1024;
/// Empty buffers kept for reuse.
const SPARES: usize = 64;

/// One request's facts, as the proxy hands them over at the end of the request.
pub struct Record<'a> {
    pub remote: IpAddr,
    /// The request line, unescaped; empty = `-`.
    pub request: &'a [u8],
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    /// 0 = the client went away before a response (logged as 499).
    pub status: u16,
    pub body_bytes: u64,
    pub upstream: Option<&'a ServerAddr>,
    /// 0 = no response from the upstream.
    pub upstream_status: u16,
    pub request_time: Duration,
    pub upstream_time: Duration,
}

/// One worker's pending lines, one buffer per log file.
pub struct WorkerLog {
    files: Vec<FileBuf>,
    last_flush: Instant,
    clock: TimeLocal,
}

struct FileBuf {
    path: Arc<PathBuf>,
    buf: Vec<u8>,
}

impl Default for WorkerLog {
    fn default() -> Self {
        WorkerLog::new()
    }
}

impl WorkerLog {
    pub fn new() -> WorkerLog {
        WorkerLog {
            files: Vec::new(),
            last_flush: Instant::now(),
            clock: TimeLocal::default(),
        }
    }

    /// Formats one line for the log at `path`.
    pub fn record(&mut self, path: &Path, r: &Record<'_>) {
        // A handful of log files at most: a scan of byte comparisons beats hashing a path.
        let i = match self
            .files
            .iter()
            .position(|f| f.path.as_os_str() == path.as_os_str())
        {
            Some(i) => i,
            None => {
                self.files.push(FileBuf {
                    path: Arc::new(path.to_path_buf()),
                    buf: spare_buffer(),
                });
                self.files.len() - 1
            }
        };
        let time = self.clock.get();
        let out = &mut self.files[i].buf;
        format_line(out, time, r);
        if out.len() >= FLUSH_AT {
            hand_over(&mut self.files[i]);
        }
    }

    /// Hands partly filled buffers over once `FLUSH_EVERY` has passed (the worker's tick).
    pub fn flush_if_due(&mut self, now: Instant) {
        if now.duration_since(self.last_flush) >= FLUSH_EVERY {
            self.flush();
            self.last_flush = now;
        }
    }

    /// Hands every non-empty buffer over now (at stop).
    pub fn flush(&mut self) {
        for f in &mut self.files {
            if !f.buf.is_empty() {
                hand_over(f);
            }
        }
    }
}

/// Writes one line in the format of the module doc.
pub fn format_line(out: &mut Vec<u8>, time_local: &[u8], r: &Record<'_>) {
    let mut n = itoa::Buffer::new();
    let _ = write!(out, "{}", r.remote);
    out.extend_from_slice(b" - - [");
    out.extend_from_slice(time_local);
    out.extend_from_slice(b"] \"");
    escaped_or_dash(out, Some(r.request).filter(|s| !s.is_empty()));
    out.extend_from_slice(b"\" ");
    out.extend_from_slice(
        n.format(if r.status == 0 { 499 } else { r.status })
            .as_bytes(),
    );
    out.push(b' ');
    out.extend_from_slice(n.format(r.body_bytes).as_bytes());
    out.extend_from_slice(b" \"");
    escaped_or_dash(out, r.referer);
    out.extend_from_slice(b"\" \"");
    escaped_or_dash(out, r.user_agent);
    out.extend_from_slice(b"\" ");
    match r.upstream {
        Some(a) => {
            let _ = write!(out, "{a}");
        }
        None => out.push(b'-'),
    }
    out.push(b' ');
    if r.upstream_status == 0 {
        out.push(b'-');
    } else {
        out.extend_from_slice(n.format(r.upstream_status).as_bytes());
    }
    out.push(b' ');
    seconds(out, r.request_time);
    out.push(b' ');
    if r.upstream.is_some() && r.upstream_status != 0 {
        seconds(out, r.upstream_time);
    } else {
        out.push(b'-');
    }
    out.push(b'\n');
}

/// `1.234`: seconds with millisecond resolution, as nginx writes `$request_time`.
fn seconds(out: &mut Vec<u8>, d: Duration) {
    let ms = d.as_millis() as u64;
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(n.format(ms / 1000).as_bytes());
    out.push(b'.');
    let frac = ms % 1000;
    if frac < 100 {
        out.push(b'0');
    }
    if frac < 10 {
        out.push(b'0');
    }
    out.extend_from_slice(n.format(frac).as_bytes());
}

/// nginx's escaping of logged strings: `"`, `\`, control bytes and non-ASCII as `\xHH`, so
/// that a line can always be split on its quotes and never carries a raw newline.
fn escaped_or_dash(out: &mut Vec<u8>, s: Option<&[u8]>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let Some(s) = s else {
        out.push(b'-');
        return;
    };
    for &b in s {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        } else {
            out.push(b);
        }
    }
}

/// `$time_local` (`25/Nov/2025:12:49:11 +0000`), formatted once per second.
#[derive(Default)]
struct TimeLocal {
    second: i64,
    text: Vec<u8>,
}

impl TimeLocal {
    fn get(&mut self) -> &[u8] {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if now != self.second || self.text.is_empty() {
            self.second = now;
            self.text.clear();
            time_local(&mut self.text, now);
        }
        &self.text
    }
}

fn time_local(out: &mut Vec<u8>, unix: i64) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = unix as libc::time_t;
    // SAFETY: `tm` is plain data, fully written by localtime_r on success.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is thread-safe.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        tm.tm_mday = 1;
        tm.tm_year = 70;
    }
    let off = tm.tm_gmtoff / 60;
    let (sign, off) = if off < 0 { ('-', -off) } else { ('+', off) };
    let _ = write!(
        out,
        "{:02}/{}/{}:{:02}:{:02}:{:02} {}{:02}{:02}",
        tm.tm_mday,
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        sign,
        off / 60,
        off % 60
    );
}

// ---- The writer thread --------------------------------------------------------------

enum Msg {
    Write {
        path: Arc<PathBuf>,
        buf: Vec<u8>,
    },
    Reopen,
    /// Write everything queued before this, then acknowledge.
    Finish(Sender<()>),
}

struct Sink {
    tx: Sender<Msg>,
    spare: ArrayQueue<Vec<u8>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Lines dropped because the writer fell `QUEUE` buffers behind.
static DROPPED: AtomicU64 = AtomicU64::new(0);
static SINK: OnceLock<Sink> = OnceLock::new();

/// The writer, started on first use (a process without access logs never starts it).
fn sink() -> &'static Sink {
    SINK.get_or_init(|| {
        let (tx, rx) = channel::bounded(QUEUE);
        let thread = std::thread::Builder::new()
            .name("ringlb-accesslog".into())
            .spawn(move || writer(rx))
            .map_err(|e| tracing::error!("cannot start the access log writer: {e}"))
            .ok();
        Sink {
            tx,
            spare: ArrayQueue::new(SPARES),
            thread: Mutex::new(thread),
        }
    })
}

fn spare_buffer() -> Vec<u8> {
    sink()
        .spare
        .pop()
        .unwrap_or_else(|| Vec::with_capacity(FLUSH_AT + 4096))
}

fn hand_over(f: &mut FileBuf) {
    let buf = std::mem::replace(&mut f.buf, spare_buffer());
    match sink().tx.try_send(Msg::Write {
        path: f.path.clone(),
        buf,
    }) {
        Ok(()) => {}
        Err(TrySendError::Full(Msg::Write { buf, .. }))
        | Err(TrySendError::Disconnected(Msg::Write { buf, .. })) => {
            let lines = buf.iter().filter(|&&b| b == b'\n').count() as u64;
            DROPPED.fetch_add(lines, Ordering::Relaxed);
            let mut buf = buf;
            buf.clear();
            let _ = sink().spare.push(buf);
        }
        Err(_) => {}
    }
}

/// Asks the writer to close and reopen every log file (SIGUSR1). Lines already handed over
/// go to the old file; the rest to the new one.
pub fn reopen() {
    if let Some(s) = SINK.get() {
        let _ = s.tx.send(Msg::Reopen);
    }
    tracing::info!("access logs reopened");
}

/// Writes out everything handed over so far and waits (at most `within`) for it to reach
/// the files: called once the workers have stopped and flushed.
pub fn finish(within: Duration) {
    let Some(s) = SINK.get() else { return };
    let (ack_tx, ack_rx) = channel::bounded(1);
    if s.tx.send_timeout(Msg::Finish(ack_tx), within).is_ok() {
        let _ = ack_rx.recv_timeout(within);
    }
    let _ = s.thread.lock().map(|mut t| t.take());
}

fn writer(rx: Receiver<Msg>) {
    let mut files: Vec<(Arc<PathBuf>, Option<std::fs::File>)> = Vec::new();
    let mut dropped_seen = 0;
    for msg in rx {
        match msg {
            Msg::Write { path, mut buf } => {
                let slot = match files.iter().position(|(p, _)| p == &path) {
                    Some(i) => i,
                    None => {
                        files.push((path.clone(), open(&path)));
                        files.len() - 1
                    }
                };
                if let Some(f) = &mut files[slot].1 {
                    if let Err(e) = f.write_all(&buf) {
                        tracing::error!("access log {}: {e}", path.display());
                    }
                }
                buf.clear();
                let _ = sink().spare.push(buf);
            }
            // Files are opened again on their next write, by name: after logrotate's
            // rename that is a new file.
            Msg::Reopen => files.clear(),
            Msg::Finish(ack) => {
                let _ = ack.send(());
            }
        }
        let dropped = DROPPED.load(Ordering::Relaxed);
        if dropped != dropped_seen {
            tracing::warn!(
                "access log writer fell behind: {} lines dropped",
                dropped - dropped_seen
            );
            dropped_seen = dropped;
        }
    }
}

/// Opens a log for appending; on failure says so once (until the next reopen) and the
/// lines for it are dropped.
fn open(path: &Path) -> Option<std::fs::File> {
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::error!("cannot open access log {}: {e}", path.display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static UPSTREAM: ServerAddr = ServerAddr::Inet(std::net::SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        8001,
    ));

    fn rec<'a>() -> Record<'a> {
        Record {
            remote: "10.1.2.3".parse().unwrap(),
            request: b"GET /a?b=\"c\" HTTP/1.1",
            referer: None,
            user_agent: Some(b"curl/8.5.0"),
            status: 200,
            body_bytes: 612,
            upstream: Some(&UPSTREAM),
            upstream_status: 200,
            request_time: Duration::from_micros(4_200),
            upstream_time: Duration::from_micros(3_050),
        }
    }

    #[test]
    fn combined_line_with_upstream_fields() {
        let mut out = Vec::new();
        format_line(&mut out, b"25/Nov/2025:12:49:11 +0000", &rec());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "10.1.2.3 - - [25/Nov/2025:12:49:11 +0000] \"GET /a?b=\\x22c\\x22 HTTP/1.1\" 200 612 \
             \"-\" \"curl/8.5.0\" 127.0.0.1:8001 200 0.004 0.003\n"
        );
    }

    #[test]
    fn own_response_has_dashes_for_upstream() {
        let mut r = rec();
        r.upstream = None;
        r.upstream_status = 0;
        r.status = 0;
        r.request = b"";
        r.request_time = Duration::from_millis(12_345);
        let mut out = Vec::new();
        format_line(&mut out, b"T", &r);
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.ends_with("\"-\" 499 612 \"-\" \"curl/8.5.0\" - - 12.345 -\n"),
            "{s}"
        );
    }

    #[test]
    fn control_bytes_are_escaped() {
        let mut out = Vec::new();
        escaped_or_dash(&mut out, Some(b"a\nb\\\xff"));
        assert_eq!(out, b"a\\x0Ab\\x5C\\xFF");
    }

    #[test]
    fn time_local_shape() {
        let mut out = Vec::new();
        time_local(&mut out, 0);
        let s = String::from_utf8(out).unwrap();
        // dd/Mon/yyyy:hh:mm:ss +hhmm, whatever the machine's zone.
        assert_eq!(s.len(), 26, "{s}");
        assert_eq!(&s[2..3], "/");
        assert!(s.contains(':'));
    }
}
