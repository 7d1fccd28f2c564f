//! The proxy's side of the access log: copying what the server block's `log_format` needs
//! out of the request head before the head's buffer is reused, and handing the finished
//! record to the worker's log buffers. Runs only for server blocks with `access_log`.

use std::net::SocketAddr;

use super::ctx::ProxyCtx;
use super::exchange::Exchange;
use super::route::first_exact_name;
use crate::access_log::Record;
use crate::config::{Var, VirtualServer};
use crate::control::generation::Published;
use crate::http::vars::Vars;

/// Most bytes of a rejected request's first line that are logged.
const REJECTED_LINE_MAX: usize = 1024;

impl Exchange {
    /// Copies the request line, `$host` and the headers `vs`'s format logs from the parsed
    /// head (in `buf`). `http2`: the head is an HTTP/2 stream's, re-framed as HTTP/1.1 by
    /// the gateway; the line then ends in the protocol the client spoke, `HTTP/2.0` (as
    /// nginx logs `$request` and `$server_protocol`).
    pub(super) fn capture_head(
        &mut self,
        buf: &[u8],
        remote: SocketAddr,
        vs: &VirtualServer,
        http2: bool,
    ) {
        let log = &mut self.log;
        log.started = Some(std::time::Instant::now());
        let buf = &buf[..self.head.head_len.min(buf.len())];
        let start = self.head.method_span.0 as usize;
        let line = buf[start.min(buf.len())..]
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or_default();
        if http2 {
            let cut = line
                .iter()
                .rposition(|&b| b == b' ')
                .map_or(line.len(), |i| i + 1);
            log.head.set_request_line_with(&line[..cut], b"HTTP/2.0");
        } else {
            log.head.set_request_line(line);
        }
        let vars = Vars {
            buf,
            head: &self.head,
            remote,
            server_name: first_exact_name(vs),
            // Only `$host` is evaluated here.
            https: false,
        };
        log.head.set_host(|out| vars.write_var(&Var::Host, out));
        for h in &self.head.headers {
            if let Some(slot) = vs.log_format.slot(h.name(buf)) {
                log.head.set_header(slot, h.value(buf));
            }
        }
    }

    /// For a request rejected before it parsed: whatever its first line is.
    pub(super) fn capture_rejected(&mut self, buf: &[u8]) {
        let log = &mut self.log;
        log.started = Some(std::time::Instant::now());
        let line = buf
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or_default();
        log.head
            .set_request_line(&line[..line.len().min(REJECTED_LINE_MAX)]);
    }

    /// Writes the current request's line to `vs`'s access log, if it has one. `https`:
    /// the connection is TLS (`$scheme`).
    pub(super) fn write_log(
        &self,
        ctx: &ProxyCtx,
        cur: &Published,
        remote: SocketAddr,
        vs: &VirtualServer,
        https: bool,
    ) {
        let Some(path) = &vs.access_log else { return };
        let log = &self.log;
        let upstream = log
            .upstream
            .and_then(|(u, i)| cur.snapshot.upstreams.get(u)?.peers.get(i))
            .map(|p| &p.cfg.addr);
        let record = Record {
            remote,
            head: &log.head,
            scheme: if https { "https" } else { "http" },
            status: log.status,
            bytes_sent: log.sent,
            body_bytes: log.sent.saturating_sub(log.head_bytes),
            upstream: upstream.map(|a| a as &dyn std::fmt::Display),
            upstream_status: log.upstream_status,
            request_time: log.started.map(|s| s.elapsed()).unwrap_or_default(),
            upstream_time: log.upstream_time,
        };
        ctx.access_log
            .borrow_mut()
            .record(path, &vs.log_format, &record);
    }
}
