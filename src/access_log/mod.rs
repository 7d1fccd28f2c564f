//! The access log: one line per request, per `[[server]]` block with `access_log = "PATH"`,
//! in the block's `log_format`.
//!
//! # Formats
//! - `"combined"` (the default): nginx's `combined` format followed by four of nginx's
//!   upstream variables, i.e. what an nginx user writes as
//!   ```text
//!   log_format main '$remote_addr - $remote_user [$time_local] "$request" $status '
//!                   '$body_bytes_sent "$http_referer" "$http_user_agent" '
//!                   '$upstream_addr $upstream_status $request_time $upstream_response_time';
//!   ```
//!   for example
//!   ```text
//!   127.0.0.1 - - [25/Nov/2025:12:49:11 +0000] "GET /api?x=1 HTTP/1.1" 200 612 "-" "curl/8.5.0" 10.0.0.7:8001 200 0.004 0.003
//!   ```
//! - `"json"`: one JSON object per line, keys named after nginx's variables (`format.rs`).
//! - a template of nginx variables (`"$remote_addr $status $request_time"`), parsed when
//!   the configuration is loaded; an unknown variable is a configuration error.
//!
//! What the variables hold:
//! - `$remote_user` is always `-` (ringlb does no authentication).
//! - `$time_local`, `$time_iso8601`, `$msec`: when the line is written (the end of the
//!   request), local time zone.
//! - `$request`: the request line as received; `$request_method`, `$request_uri`,
//!   `$server_protocol` its three parts; `$uri` and `$args` the target's path and query as
//!   received (nginx's `$uri` is normalised). Values are escaped as nginx does (`"`, `\`,
//!   control bytes and bytes >= 0x7f as `\xHH`); an absent one is `-`.
//! - `$status`: the status sent to the client; `499` when the client went away before a
//!   response could be sent (nginx's code for it).
//! - `$body_bytes_sent`: response bytes after the head that reached the client socket;
//!   `$bytes_sent` with the head.
//! - `$upstream_addr`, `$upstream_status`, `$upstream_response_time`: the last server tried,
//!   its status and the time from sending the request to its response head, in seconds
//!   with millisecond resolution; `-` when no server was tried or none answered. Unlike
//!   nginx, a retried request shows only its last attempt, not a comma-separated list.
//! - `$request_time`: seconds (millisecond resolution) from the parsed request head to the
//!   end of the response.
//!
//! # Cost
//! Nothing at all for a server block without a log. With one, the proxy copies the request
//! line and the headers the format names out of the head (`Captured`, capacity reused from
//! request to request), and each worker formats lines into a reused buffer per log file (no
//! allocation per request) and hands full buffers (32 KiB, or whatever accumulated, once a
//! second and at stop) to the writer thread (`writer.rs`) over a channel; the writer thread
//! owns the files, so a slow disk never stalls a worker. Empty buffers come back through a
//! spare queue to be reused. SIGUSR1 makes the writer close and reopen every file
//! (logrotate's `postrotate`).

mod format;
mod writer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use format::{FormatError, LogFormat, Slot, COMBINED, MAX_HEADERS, NAMES, VARIABLES};
pub use writer::{finish, reopen};

use format::Clock;

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

/// A span of `Captured::bytes`.
type Span = (u32, u32);

/// What the log needs from a request head, copied out before the head's buffer is reused
/// (streamed bodies reuse it). Cleared, not freed, between requests.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    bytes: Vec<u8>,
    request_line: Span,
    /// `$host`, already resolved (lower case, no port, or the server name).
    host: Span,
    referer: Option<Span>,
    user_agent: Option<Span>,
    /// The format's other `$http_<name>` headers, by `Slot::Other` index.
    headers: [Option<Span>; MAX_HEADERS],
}

impl Captured {
    /// Forgets the previous request, keeping the memory.
    pub fn clear(&mut self) {
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.clear();
        *self = Captured {
            bytes,
            ..Captured::default()
        };
    }

    fn push(&mut self, s: &[u8]) -> Span {
        let a = self.bytes.len();
        self.bytes.extend_from_slice(s);
        (a as u32, self.bytes.len() as u32)
    }

    fn get(&self, s: Span) -> &[u8] {
        &self.bytes[s.0 as usize..s.1 as usize]
    }

    pub fn set_request_line(&mut self, line: &[u8]) {
        self.request_line = self.push(line);
    }

    /// `write` appends `$host` to the buffer it is given.
    pub fn set_host(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let a = self.bytes.len();
        write(&mut self.bytes);
        self.host = (a as u32, self.bytes.len() as u32);
    }

    /// Keeps a header's value; the first of repeated headers wins.
    pub fn set_header(&mut self, slot: Slot, value: &[u8]) {
        let taken = match slot {
            Slot::Referer => self.referer.is_some(),
            Slot::UserAgent => self.user_agent.is_some(),
            Slot::Other(i) => self.headers[i].is_some(),
        };
        if taken {
            return;
        }
        let span = Some(self.push(value));
        match slot {
            Slot::Referer => self.referer = span,
            Slot::UserAgent => self.user_agent = span,
            Slot::Other(i) => self.headers[i] = span,
        }
    }

    fn request_line(&self) -> &[u8] {
        self.get(self.request_line)
    }

    fn host(&self) -> &[u8] {
        self.get(self.host)
    }

    fn referer(&self) -> Option<&[u8]> {
        self.referer.map(|s| self.get(s))
    }

    fn user_agent(&self) -> Option<&[u8]> {
        self.user_agent.map(|s| self.get(s))
    }

    fn header(&self, i: usize) -> Option<&[u8]> {
        self.headers[i].map(|s| self.get(s))
    }
}

/// One request's facts, as the proxy hands them over at the end of the request.
pub struct Record<'a> {
    pub remote: SocketAddr,
    pub head: &'a Captured,
    /// `$scheme`.
    pub scheme: &'a str,
    /// 0 = the client went away before a response (logged as 499).
    pub status: u16,
    /// Response bytes that reached the client, head included (`$bytes_sent`) ...
    pub bytes_sent: u64,
    /// ... and after the head (`$body_bytes_sent`).
    pub body_bytes: u64,
    /// The last server tried (`$upstream_addr`): `10.0.0.7:8001`, `unix:/run/app.sock`.
    pub upstream: Option<&'a dyn std::fmt::Display>,
    /// 0 = no response from the upstream.
    pub upstream_status: u16,
    pub request_time: Duration,
    pub upstream_time: Duration,
}

/// One worker's pending lines, one buffer per log file.
pub struct WorkerLog {
    files: Vec<FileBuf>,
    last_flush: Instant,
    clock: Clock,
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
            clock: Clock::default(),
        }
    }

    /// Formats one line in `format` for the log at `path`.
    pub fn record(&mut self, path: &Path, format: &LogFormat, r: &Record<'_>) {
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
                    buf: writer::spare_buffer(),
                });
                self.files.len() - 1
            }
        };
        let now = self.clock.now();
        let f = &mut self.files[i];
        format.write(&mut f.buf, &now, r);
        if f.buf.len() >= FLUSH_AT {
            writer::hand_over(&f.path, &mut f.buf);
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
                writer::hand_over(&f.path, &mut f.buf);
            }
        }
    }
}
