//! One exchange: a request from a client, its trip to a server (choice, retries, the
//! upstream connection) and the response back. The downstream connection (`conn`) owns the
//! socket and outlives many exchanges; an exchange owns what one request needs: its parsed
//! head, the head as it is forwarded, the response head, the servers tried, the log record.
//!
//! Data flows one way through the submodules: `mod.rs` (route the request to a location,
//! prepare what is forwarded) -> `forward` (server choice and retries) -> `attempt` (one
//! server: connection, request, response head) -> `relay` (response body) or the tunnel
//! (after a 101). `queue` holds requests while every server is at `max_conns`.

mod attempt;
mod body;
mod forward;
mod local;
mod queue;
mod relay;

use std::time::{Duration, Instant};

pub(super) use local::first_exact_name;
pub(super) use queue::WaitQueues;

use super::conn::Conn;
use super::io::ClientIo;
use super::route;
use super::spool::BufferedBody;
use super::ProxyCtx;
use crate::config::{Handler, VirtualServer};
use crate::control::generation::Published;
use crate::http::request::{RequestBody, RequestHead};
use crate::http::response::ResponseHead;
use crate::http::template::Vars;
use crate::http::{has_token, rewrite, trim, uri};
use crate::upstream::Tried;
use body::BodyError;

/// With `proxy_request_buffering = false`, a body up to this size is still read whole
/// before the backend is contacted, so that a failed attempt can be replayed on the next
/// server; larger ones are streamed.
pub(super) const REPLAY_MAX: u64 = 64 * 1024;
/// Buffers larger than this after a request shrink back, so that a connection that once
/// carried a large request does not keep its memory.
const SHRINK_ABOVE: usize = 64 * 1024;

/// Whether the client connection must be closed after the current response.
pub(super) type CloseAfter = bool;

/// What one request needs on its way through, reused from request to request for its
/// buffers' capacity.
#[derive(Default)]
pub(super) struct Exchange {
    /// The request head, as offsets into the connection's buffer. Valid until the request
    /// bytes are consumed from that buffer (once `out` holds what is forwarded).
    pub(super) head: RequestHead,
    pub(super) res: ResponseHead,
    /// The request head (and a small body) as forwarded; then the response head as sent.
    pub(super) out: Vec<u8>,
    /// The evaluated `hash` key.
    pub(super) key: Vec<u8>,
    /// The normalised path, when the request's needs normalising to pick a location.
    path: Vec<u8>,
    pub(super) tried: Tried,
    /// The forwarded request carries an Upgrade (the location passes its token): only
    /// then may a 101 open a tunnel.
    pub(super) upgrade: bool,
    /// The response head arrived before the request body was all sent (a server refusing
    /// a request without reading it): an answer, not a failure, but the client connection
    /// cannot be reused.
    pub(super) early: bool,
    /// The location's request body limit (0 = none).
    pub(super) max_body: u64,
    /// The location's (or else the upstream's) `read_timeout`.
    pub(super) read_timeout: Duration,
    /// The request body, when it is read whole before a server is chosen.
    pub(super) body: BufferedBody,
    /// A buffer for pieces read back from a temporary file.
    pub(super) scratch: Vec<u8>,
    /// The location's `proxy_buffering` (`proxy_buffers`, `proxy_max_temp_file_size`), or
    /// `None` when responses are relayed as they come.
    pub(super) buffering: Option<(usize, u64)>,
    /// `runtime.temp_path`, where buffered bodies spill.
    pub(super) temp_dir: std::path::PathBuf,
    /// What the access log and metrics need to know about the current request.
    pub(super) log: RequestLog,
}

/// Facts about one request gathered along the way, for the access log.
#[derive(Debug, Default, Clone)]
pub(super) struct RequestLog {
    /// The last server tried (nginx's `$upstream_addr`).
    /// As (upstream index, server index) in the configuration the request ran on.
    pub upstream: Option<(usize, usize)>,
    /// Its status (`$upstream_status`; 0 when it gave no response).
    pub upstream_status: u16,
    /// Time from sending the request to its response head (`$upstream_response_time`).
    pub upstream_time: Duration,
    /// The status sent to the client (`$status`; 0 = none was sent; 499 = the client went
    /// away first, as nginx logs it).
    pub status: u16,
    /// Bytes of the response written to the client, head included, and the head's share
    /// (`$body_bytes_sent` is the difference).
    pub sent: u64,
    pub head_bytes: u64,
    /// What the access log needs from the request head, copied before the head's buffer is
    /// consumed; filled only for a server block with a log. Capacity is kept from request
    /// to request.
    pub head: crate::access_log::Captured,
    /// When the head was parsed (`$request_time` origin); set only with a log.
    pub started: Option<Instant>,
}

impl RequestLog {
    /// Clears the facts of the previous request, keeping the capture buffer's memory.
    pub(super) fn reset(&mut self) {
        let mut head = std::mem::take(&mut self.head);
        head.clear();
        *self = RequestLog {
            head,
            ..RequestLog::default()
        };
    }
}

/// What became of a request.
pub(super) enum Outcome {
    /// A backend's response went to the client.
    Done { close: CloseAfter },
    /// No backend response was relayed. `status`: what ringlb answers itself; `None` when
    /// the client connection is unusable (it broke, went away, or part of a response
    /// already went).
    Failed { status: Option<u16> },
}

/// How the current request's body reaches the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyPlan {
    /// No body, or one already appended to `out`: the request can be replayed.
    InOut,
    /// Read whole (`body`): its first part is in `out` after the head, the rest in the
    /// temporary file, sent after `out`. Replayable.
    Buffered,
    /// Streamed from the client after the head (which is still at the start of the
    /// connection's buffer, with what arrived of the body after it).
    Stream,
}

impl Exchange {
    /// Serves the parsed request; returns whether the connection must close afterwards.
    pub(super) async fn handle<S: ClientIo>(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut Conn<S>,
        cur: &Published,
        vs: &VirtualServer,
    ) -> CloseAfter {
        let head_len = self.head.head_len;
        let target = &conn.buf[self.head.target.0 as usize..self.head.target.1 as usize];
        let path = match uri::normalize(target, &mut self.path) {
            Ok(false) => target,
            Ok(true) => &self.path[..],
            Err(_) => {
                conn.respond_own(ctx, self, 400, true, vs).await;
                return true;
            }
        };
        let loc = route::location(vs, path);
        self.max_body = loc.map_or(vs.max_body_bytes, |l| l.max_body_bytes);
        if let RequestBody::Length(n) = self.head.body {
            if self.max_body > 0 && n > self.max_body {
                conn.respond_own(ctx, self, 413, true, vs).await;
                return true;
            }
        }
        let loc = match loc.map(|l| &l.handler) {
            Some(Handler::Proxy(p)) => p,
            Some(Handler::Return(r)) => return self.answer_return(ctx, conn, vs, r).await,
            Some(Handler::Files(_)) | None => {
                let close = self.head.body != RequestBody::None || !self.head.keep_alive;
                conn.respond_own(ctx, self, 404, close, vs).await;
                conn.consume(head_len);
                return close;
            }
        };
        let up = &cur.snapshot.upstreams[loc.upstream];
        self.read_timeout = loc.read_timeout.unwrap_or(up.cfg.read_timeout);
        self.buffering = loc
            .buffering
            .then_some((loc.buffers, loc.max_temp_file_size));
        let temp_dir = &cur.config().runtime.temp_path;
        if self.buffering.is_some() && self.temp_dir != *temp_dir {
            self.temp_dir.clone_from(temp_dir);
        }
        let close = !self.head.keep_alive
            || vs.keepalive_timeout.is_zero()
            || conn.served + 1 >= vs.keepalive_requests
            || ctx.stopping();

        self.early = false;
        self.key.clear();
        // The body first: a buffered one is read whole before anything else (its length
        // goes into the forwarded head).
        let plan = match self.head.body {
            RequestBody::None => BodyPlan::InOut,
            RequestBody::Length(n) if n <= REPLAY_MAX || loc.request_buffering => {
                BodyPlan::Buffered
            }
            RequestBody::Chunked if loc.request_buffering => BodyPlan::Buffered,
            RequestBody::Length(_) | RequestBody::Chunked => BodyPlan::Stream,
        };
        if plan == BodyPlan::Buffered {
            match self.buffer_body(ctx, conn, vs, loc).await {
                Ok(()) => {}
                Err(BodyError::Status(status)) => {
                    conn.respond_own(ctx, self, status, true, vs).await;
                    return true;
                }
                Err(BodyError::Gone) => return true,
            }
        }
        self.out.clear();
        {
            let upgrade = self
                .head
                .upgrade_value
                .map(|(a, b)| &conn.buf[a as usize..b as usize]);
            let upgrade = upgrade.filter(|v| upgrade_allowed(v, &loc.upgrade));
            self.upgrade = upgrade.is_some();
            let vars = Vars {
                buf: &conn.buf,
                head: &self.head,
                remote: conn.remote,
                server_name: local::first_exact_name(vs),
            };
            let forwarding = rewrite::Forwarding {
                upgrade,
                drop_underscores: !vs.underscores_in_headers,
                body_length: (plan == BodyPlan::Buffered).then(|| self.body.len()),
            };
            rewrite::request_head(
                &mut self.out,
                &vars,
                &loc.set_headers,
                &up.cfg.name,
                &forwarding,
            );
            if let Some(t) = &up.cfg.hash {
                vars.eval(t, &mut self.key);
            }
        }
        let plan = match plan {
            // The head and what of the body is in memory go in one write; a spilled rest
            // follows from the file.
            BodyPlan::Buffered => {
                self.out.extend_from_slice(&self.body.mem);
                if self.body.file_len() == 0 {
                    BodyPlan::InOut
                } else {
                    BodyPlan::Buffered
                }
            }
            p => p,
        };
        if plan != BodyPlan::Stream {
            // The body's bytes already left the buffer; the head goes now.
            conn.consume(head_len);
            // The request is all read: the client read can be armed (the next request's
            // read, which meanwhile tells if the client goes away). Not for an upgrade:
            // what the client sends next may be tunnel bytes, read by the tunnel.
            if !self.upgrade {
                conn.watch_client();
            }
        }

        match self.forward(ctx, conn, up, vs, plan, close).await {
            Outcome::Done { close } => close,
            Outcome::Failed { status } => {
                // A streamed body may be half read: the connection cannot find its next
                // request.
                let close = close || plan == BodyPlan::Stream;
                if let Some(status) = status {
                    conn.respond_own(ctx, self, status, close, vs).await;
                }
                close || status.is_none()
            }
        }
    }

    /// Lets go of buffer memory a large request or response left behind.
    pub(super) fn shrink(&mut self) {
        if self.out.capacity() > SHRINK_ABOVE {
            self.out = Vec::new();
        }
        self.body.shrink(SHRINK_ABOVE);
        // Only a spilled upload uses it: not worth keeping per connection.
        self.scratch = Vec::new();
        self.body.clear();
    }
}

/// Whether every protocol an Upgrade header offers is one the location passes on. `h2c`
/// never is: a proxy that tunnels it lets clients speak HTTP/2 past its own rules ("h2c
/// smuggling").
fn upgrade_allowed<A: AsRef<str>>(value: &[u8], allowed: &[A]) -> bool {
    let mut any = false;
    for offer in value.split(|&b| b == b',') {
        let offer = trim(offer);
        let name = offer.split(|&b| b == b'/').next().unwrap_or(offer);
        if name.is_empty() {
            continue;
        }
        if name.eq_ignore_ascii_case(b"h2c")
            || !allowed
                .iter()
                .any(|a| a.as_ref().as_bytes().eq_ignore_ascii_case(name))
        {
            return false;
        }
        any = true;
    }
    any && !has_token(value, b"h2c")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_upgrades_pass() {
        assert!(upgrade_allowed(b"websocket", &["websocket"]));
        assert!(upgrade_allowed(b"WebSocket", &["websocket"]));
        assert!(!upgrade_allowed(b"h2c", &["websocket"]));
        assert!(!upgrade_allowed(b"h2c", &["h2c"]));
        assert!(!upgrade_allowed(b"websocket, h2c", &["websocket"]));
        assert!(!upgrade_allowed(b"foo/1", &["websocket"]));
        assert!(upgrade_allowed(b"foo/1", &["foo"]));
        assert!(!upgrade_allowed::<&str>(b"websocket", &[]));
        assert!(!upgrade_allowed(b"", &["websocket"]));
    }
}
