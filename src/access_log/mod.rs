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
//! - `$request`: the request line as received (an HTTP/2 stream's: its method and target
//!   with `HTTP/2.0`, as nginx writes it); `$request_method`, `$request_uri`,
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
//!
//! # Files
//! `record` (what a request leaves: `Captured`, `Record`) -> `format` (one line in a
//! `log_format`) -> `worker` (a worker's buffers, `WorkerLog`) -> `writer` (the thread that
//! owns the files). This file only declares and re-exports.

mod format;
mod record;
mod worker;
mod writer;

pub use format::{FormatError, LogFormat, COMBINED, NAMES, VARIABLES};
pub use record::{Captured, HeaderSlot, Record, MAX_HEADERS};
pub use worker::{WorkerLog, FLUSH_EVERY};
pub use writer::{finish, reopen};
