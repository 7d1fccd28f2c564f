//! The validated configuration: what the rest of ringlb runs on.
//!
//! Everything here has been checked: addresses are resolved `SocketAddr`s, durations are
//! `Duration`s, `proxy_pass` is an index into `Config::upstreams`, templates are parsed.
//! The runtime never re-parses a string from the file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A whole, validated configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from (re-read on SIGHUP).
    pub path: PathBuf,
    pub runtime: RuntimeCfg,
    pub admin: Option<AdminCfg>,
    /// `[[server]]` blocks in file order; the first one listening on an address is that
    /// address's default server (as in nginx).
    pub servers: Vec<VirtualServer>,
    /// `[upstream.NAME]` tables, sorted by name.
    pub upstreams: Vec<UpstreamCfg>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeCfg {
    /// Resolved worker count (`"auto"` already turned into the allowed CPU count).
    pub workers: usize,
    pub pin_workers: bool,
    pub shutdown_timeout: Duration,
    pub io: IoMode,
    /// Client connections one worker holds at most; its accept loop waits at the cap.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// io_uring, falling back to epoll with a warning.
    Auto,
    IoUring,
    Epoll,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminCfg {
    pub listen: SocketAddr,
}

/// One `[[server]]` block: listeners, host names and locations.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualServer {
    pub listen: Vec<SocketAddr>,
    /// Empty means "any host".
    pub server_names: Vec<ServerName>,
    pub client_header_timeout: Duration,
    pub client_body_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub keepalive_requests: u64,
    pub max_header_bytes: usize,
    /// 0 = unlimited.
    pub max_body_bytes: u64,
    /// `None` = off.
    pub access_log: Option<PathBuf>,
    /// Sorted longest path first, so the first prefix match is the longest.
    pub locations: Vec<Location>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerName {
    /// Lower-cased exact host name.
    Exact(String),
    /// `*.example.com`, stored as the lower-cased suffix `.example.com`.
    Wildcard(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub path: String,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    /// `proxy_set_header` entries in file order.
    pub set_headers: Vec<HeaderRule>,
}

/// One `proxy_set_header` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderRule {
    /// The header name as written (sent with this spelling).
    pub name: String,
    /// `name`, lower-cased, to match request headers.
    pub name_lower: String,
    /// `None` when the value was the empty string: the header is removed.
    pub value: Option<Template>,
}

/// A string with `$variables`, parsed once at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Var(Var),
}

/// The variables of SPEC.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    Host,
    RemoteAddr,
    RemotePort,
    RequestUri,
    Uri,
    Args,
    Scheme,
    ProxyAddXForwardedFor,
    /// `$http_user_agent` -> "user-agent" (lower case, `_` turned into `-`).
    Http(String),
    /// `$cookie_sessionid` -> "sessionid" (as written).
    Cookie(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    IpHash,
    Hash,
    RandomTwoLeastConn,
    LeastTime,
}

impl Balance {
    /// The name as written in the configuration file (and shown in /status).
    pub fn name(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastConn => "least_conn",
            Balance::IpHash => "ip_hash",
            Balance::Hash => "hash",
            Balance::RandomTwoLeastConn => "random_two_least_conn",
            Balance::LeastTime => "least_time",
        }
    }
}

/// `next_upstream` conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NextUpstream {
    pub error: bool,
    pub timeout: bool,
    pub invalid_header: bool,
    pub http_500: bool,
    pub http_502: bool,
    pub http_503: bool,
    pub http_504: bool,
    pub http_429: bool,
    pub non_idempotent: bool,
}

impl NextUpstream {
    /// Whether a response with this status is to be retried on the next server.
    pub fn retries_status(&self, status: u16) -> bool {
        match status {
            500 => self.http_500,
            502 => self.http_502,
            503 => self.http_503,
            504 => self.http_504,
            429 => self.http_429,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamCfg {
    pub name: String,
    pub balance: Balance,
    /// `balance = "hash"` only.
    pub hash: Option<Template>,
    pub consistent: bool,
    pub keepalive: usize,
    pub keepalive_requests: u64,
    pub keepalive_timeout: Duration,
    pub connect_timeout: Duration,
    pub send_timeout: Duration,
    pub read_timeout: Duration,
    pub next_upstream: NextUpstream,
    /// 0 = unlimited.
    pub next_upstream_tries: u32,
    /// Zero = unlimited.
    pub next_upstream_timeout: Duration,
    /// Primary servers first, then backups, each group in file order.
    pub servers: Vec<ServerCfg>,
    pub health_check: Option<HealthCheckCfg>,
    // Beyond nginx; the defaults keep nginx's behaviour.
    pub hash_balance_factor: Option<f64>,
    pub ip_hash_prefix: IpHashPrefix,
    /// Percent of primaries up below which health is ignored; `None` = off.
    pub panic_threshold: Option<u8>,
    pub retry_budget: Option<RetryBudget>,
    /// 0 = no queue: 503 at once when every server is at max_conns.
    pub queue: usize,
    pub queue_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpHashPrefix {
    /// Bits of an IPv4 address that identify a client: nginx uses 24.
    pub v4: u8,
    /// Bits of an IPv6 address: nginx uses 128.
    pub v6: u8,
}

impl Default for IpHashPrefix {
    fn default() -> Self {
        IpHashPrefix { v4: 24, v6: 128 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    pub ratio: f64,
    pub min: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerCfg {
    pub addr: SocketAddr,
    /// The address as written (`"backend1:8001"`), used in logs, metrics labels and the
    /// ketama ring, where nginx also hashes the name as written.
    pub name: String,
    pub weight: u32,
    /// 0 = never mark down on passive failures.
    pub max_fails: u32,
    pub fail_timeout: Duration,
    /// 0 = unlimited.
    pub max_conns: u32,
    pub backup: bool,
    pub down: bool,
    /// Zero = off.
    pub slow_start: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckCfg {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub fails: u32,
    pub passes: u32,
    /// Inclusive range of accepted statuses.
    pub status: (u16, u16),
}
