//! One exchange: a request from a client, its trip to a server (choice, retries, the
//! upstream connection) and the response back. The downstream connection (`conn`) owns the
//! socket and outlives many exchanges; an exchange owns what one request needs: its parsed
//! head, the head as it is forwarded, the response head, the servers tried, the log record.
//!
//! This file holds the exchange's state and the values that pass between its steps. Data
//! flows one way through the submodules: `handle` (route the request to a location, read
//! its body, prepare what is forwarded) -> `forward` (server choice and retries) ->
//! `attempt` (one server: connection, request, response head) -> `relay` (response body)
//! or the tunnel (after a 101). `body` reads a request body whole, `queue` waits while
//! every server is at `max_conns`, `own` makes ringlb's own responses.

mod attempt;
mod body;
mod file;
mod forward;
mod handle;
mod own;
mod queue;
mod relay;

use std::io;
use std::time::{Duration, Instant};

use super::ctx::ProxyCtx;
use super::spool::BufferedBody;
use crate::http::request::RequestHead;
use crate::http::response::ResponseHead;
use crate::pool::UpConn;
use crate::upstream::balance::release;
use crate::upstream::{Tried, Upstream};

/// With `proxy_request_buffering = false`, a body up to this size is still read whole
/// before the backend is contacted, so that a failed attempt can be replayed on the next
/// server; larger ones are streamed.
pub(super) const REPLAY_MAX: u64 = 64 * 1024;
/// Buffers larger than this after a request shrink back, so that a connection that once
/// carried a large request does not keep its memory.
const SHRINK_ABOVE: usize = 64 * 1024;

/// Whether the client connection must be closed after the current response.
pub(in crate::proxy) type CloseAfter = bool;

/// What one request needs on its way through, reused from request to request for its
/// buffers' capacity.
pub(in crate::proxy) struct Exchange {
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
    /// The request's client (`$remote_addr`, `ip_hash`, the access log): the connection's
    /// peer, or the address trusted proxies in front name (`real_ip_from`).
    pub(in crate::proxy) client: std::net::SocketAddr,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange {
            head: RequestHead::default(),
            res: ResponseHead::default(),
            out: Vec::new(),
            key: Vec::new(),
            path: Vec::new(),
            tried: Tried::default(),
            upgrade: false,
            early: false,
            max_body: 0,
            read_timeout: Duration::ZERO,
            body: BufferedBody::default(),
            scratch: Vec::new(),
            buffering: None,
            temp_dir: std::path::PathBuf::new(),
            log: RequestLog::default(),
            client: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }
}

/// Exchanges kept by a worker for its next connections, at most.
const SPARE_EXCHANGES: usize = 64;
/// A spare exchange keeps at most this much of its `out` buffer.
const SPARE_OUT_MAX: usize = 16 * 1024;

thread_local! {
    /// This worker's spare exchanges (every connection task of a worker runs on its thread).
    /// Boxed: a connection task holds its exchange by pointer, so that neither taking nor
    /// keeping one copies the whole struct.
    #[allow(clippy::vec_box)]
    static SPARE: std::cell::RefCell<Vec<Box<Exchange>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Exchange {
    /// An exchange for a new connection: a spare one of this worker's, with the capacity
    /// its buffers grew to, or a new one. A new connection per request (no keep-alive) then
    /// costs no allocation and no growing of head, header and output buffers; measured, this
    /// was a seventh of the user-space instructions of such a request.
    pub(in crate::proxy) fn for_connection() -> Box<Exchange> {
        SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_default()
    }

    /// Keeps `ex` (its connection is done) for a later connection, its large buffers let go.
    pub(in crate::proxy) fn connection_done(mut ex: Box<Exchange>) {
        ex.shrink();
        if ex.out.capacity() > SPARE_OUT_MAX {
            ex.out = Vec::new();
        }
        let _ = SPARE.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARE_EXCHANGES {
                s.push(ex);
            }
        });
    }
}

/// Facts about one request gathered along the way, for the access log.
#[derive(Debug, Default, Clone)]
pub(in crate::proxy) struct RequestLog {
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
    pub(in crate::proxy) fn reset(&mut self) {
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
    /// Lets go of buffer memory a large request or response left behind.
    pub(in crate::proxy) fn shrink(&mut self) {
        if self.out.capacity() > SHRINK_ABOVE {
            self.out = Vec::new();
        }
        self.body.shrink(SHRINK_ABOVE);
        // Only a spilled upload uses it: not worth keeping per connection.
        self.scratch = Vec::new();
        self.body.clear();
    }
}

/// Why an attempt on one server failed, in nginx's `next_upstream` terms.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    /// `error`: connect refused, reset, closed before a response.
    #[error("{0}")]
    Error(io::Error),
    /// `timeout`: connect, send or read timed out.
    #[error("timed out")]
    Timeout,
    /// `invalid_header`: the response head was not valid HTTP.
    #[error("invalid response: {0}")]
    Invalid(&'static str),
    /// The client broke (or sent a bad body) while its body was being streamed.
    #[error("client side failed")]
    Client(Option<u16>),
    /// The client went away while its request waited: nothing is owed to anyone, and the
    /// server is not to blame.
    #[error("client went away")]
    ClientGone,
}

impl Failure {
    fn retry_allowed(&self, up: &Upstream) -> bool {
        let n = &up.cfg.next_upstream;
        match self {
            Failure::Error(_) => n.error,
            Failure::Timeout => n.timeout,
            Failure::Invalid(_) => n.invalid_header,
            Failure::Client(_) | Failure::ClientGone => false,
        }
    }

    /// Whether the server is to blame (a passive failure).
    fn blames_server(&self) -> bool {
        !matches!(self, Failure::Client(_) | Failure::ClientGone)
    }

    fn status(&self) -> Option<u16> {
        match self {
            Failure::Timeout => Some(504),
            Failure::Client(s) => *s,
            Failure::ClientGone => None,
            _ => Some(502),
        }
    }
}

/// The server side of an exchange while its response is relayed: the connection and the
/// server's slot (its active count, which `least_conn` and `max_conns` read). Both are given
/// back once, as soon as the response has been read from the server (the client may still
/// be receiving it), or when the exchange ends some other way (dropped: not pooled).
pub(super) struct Held<'a> {
    ctx: &'a ProxyCtx,
    up: &'a Upstream,
    i: usize,
    conn: Option<UpConn>,
}

impl Held<'_> {
    /// The connection, until it is released.
    pub(super) fn conn(&mut self) -> &mut UpConn {
        self.conn
            .as_mut()
            .expect("the relay uses the upstream connection only until it releases it")
    }

    pub(super) fn is_held(&self) -> bool {
        self.conn.is_some()
    }

    /// The server's part of the exchange is over: its slot is free, and its connection
    /// goes back to the pool when `reusable` (and it may carry more requests); `now` is a
    /// recent clock reading, from which its idle time counts.
    pub(super) fn release(&mut self, reusable: bool, now: Instant) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        release(&self.up.peers[self.i]);
        let cfg = &self.up.cfg;
        if reusable && !self.ctx.stopping() && conn.requests < cfg.keepalive_requests {
            self.ctx.pool.borrow_mut().put(
                self.up.peers[self.i].state.id,
                conn,
                cfg.keepalive,
                now + cfg.keepalive_timeout,
            );
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.conn.is_some() {
            self.release(false, Instant::now());
        }
    }
}

/// How far an attempt got; decides whether it may be replayed elsewhere.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Progress {
    /// Some of the request reached a backend socket.
    pub request_sent: bool,
    /// Some of a streamed body was consumed from the client: no replay possible.
    pub body_consumed: bool,
}

/// The client connection broke, or the response was cut short: it must be closed.
pub(super) struct ClientBroke;
