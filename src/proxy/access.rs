//! The proxy's side of the access log: copying what a log line needs out of the request
//! head before the head's buffer is reused, and handing the finished record to the
//! worker's log buffers. Runs only for server blocks with `access_log`.

use std::net::SocketAddr;

use super::exchange::Exchange;
use super::route::Published;
use super::ProxyCtx;
use crate::access_log::Record;
use crate::config::VirtualServer;

/// Most bytes of a rejected request's first line that are logged.
const REJECTED_LINE_MAX: usize = 1024;

impl Exchange {
    /// Copies the request line, Referer and User-Agent of the parsed head (in `buf`).
    pub(super) fn capture_head(&mut self, buf: &[u8]) {
        let log = &mut self.log;
        log.started = Some(std::time::Instant::now());
        let buf = &buf[..self.head.head_len.min(buf.len())];
        let start = self.head.method_span.0 as usize;
        let line = buf[start.min(buf.len())..]
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or_default();
        log.request_line = push(&mut log.captured, line);
        for h in &self.head.headers {
            let name = h.name(buf);
            if name.eq_ignore_ascii_case(b"referer") {
                log.referer = Some(push(&mut log.captured, h.value(buf)));
            } else if name.eq_ignore_ascii_case(b"user-agent") {
                log.user_agent = Some(push(&mut log.captured, h.value(buf)));
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
        let line = &line[..line.len().min(REJECTED_LINE_MAX)];
        log.request_line = push(&mut log.captured, line);
    }

    /// Writes the current request's line to `vs`'s access log, if it has one.
    pub(super) fn write_log(
        &self,
        ctx: &ProxyCtx,
        cur: &Published,
        remote: SocketAddr,
        vs: &VirtualServer,
    ) {
        let Some(path) = &vs.access_log else { return };
        let log = &self.log;
        let span = |s: (u32, u32)| &log.captured[s.0 as usize..s.1 as usize];
        let record = Record {
            remote: remote.ip(),
            request: span(log.request_line),
            referer: log.referer.map(span),
            user_agent: log.user_agent.map(span),
            status: log.status,
            body_bytes: log.sent.saturating_sub(log.head_bytes),
            upstream: log
                .upstream
                .and_then(|(u, i)| cur.snapshot.upstreams.get(u)?.peers.get(i))
                .map(|p| &p.cfg.addr),
            upstream_status: log.upstream_status,
            request_time: log.started.map(|s| s.elapsed()).unwrap_or_default(),
            upstream_time: log.upstream_time,
        };
        ctx.access_log.borrow_mut().record(path, &record);
    }
}

fn push(into: &mut Vec<u8>, s: &[u8]) -> (u32, u32) {
    let a = into.len();
    into.extend_from_slice(s);
    (a as u32, into.len() as u32)
}
