//! The validated configuration: what the rest of ringlb runs on.
//!
//! Everything here has been checked: addresses are resolved `SocketAddr`s (or unix socket
//! paths), durations are `Duration`s, sizes are byte counts, `proxy_pass` is an index into
//! `Config::upstreams`, templates are parsed, address ranges are [`IpNet`]s. The runtime
//! never re-parses a string from the file.
//!
//! What validation does not do is read the files a configuration names: TLS certificates
//! and keys are checked by the TLS module through [`super::tls_files`], and the
//! directories of `root`/`alias` may appear after the check.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use ipnet::IpNet;

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
    /// Where buffered bodies beyond memory spill (created at start if missing; a relative
    /// path is relative to the working directory).
    pub temp_path: PathBuf,
    /// Written at start with the process id; a second ringlb on the same file refuses to start.
    pub pid_file: Option<PathBuf>,
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
    /// The access log line: `"combined"`, `"json"` or a template of nginx variables,
    /// parsed by the access log module at load.
    pub log_format: crate::access_log::LogFormat,
    /// `Some`: TLS on every `listen` address of this block.
    pub tls: Option<TlsCfg>,
    /// Offer `h2` by ALPN on TLS listeners (HTTP/1.1 is always offered).
    pub http2: bool,
    /// Expect a PROXY protocol v1 or v2 header first on each connection.
    pub proxy_protocol: bool,
    /// Trusted sources: from them, `$remote_addr` is taken from `real_ip_header`. Empty = off.
    pub real_ip_from: Vec<IpNet>,
    pub real_ip_header: RealIpHeader,
    /// `false` (nginx): request header fields with `_` in the name are dropped.
    pub underscores_in_headers: bool,
    /// Sorted longest path first, so the first prefix match is the longest.
    pub locations: Vec<Location>,
}

/// `tls_certificate`, `tls_certificate_key`, `tls_protocols` of one `[[server]]` block.
/// Only the paths have been checked here; the TLS module loads and checks the PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCfg {
    /// PEM: the leaf certificate first, then its chain.
    pub certificate: PathBuf,
    /// PEM private key matching `certificate`.
    pub certificate_key: PathBuf,
    pub protocols: TlsProtocols,
    /// The chain and key as [`super::tls_files::check`] loaded and checked them.
    pub loaded: Option<crate::tls::certs::LoadedCert>,
}

/// The TLS versions offered; at least one is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsProtocols {
    pub tls12: bool,
    pub tls13: bool,
}

impl Default for TlsProtocols {
    fn default() -> Self {
        TlsProtocols {
            tls12: true,
            tls13: true,
        }
    }
}

/// Where the client address comes from for a connection from a `real_ip_from` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealIpHeader {
    /// A request header (name lower-cased), e.g. `x-forwarded-for`: its last address not in
    /// `real_ip_from` (nginx's `real_ip_recursive on`).
    Header(String),
    /// The source address of the PROXY protocol header (needs `proxy_protocol = true`).
    ProxyProtocol,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerName {
    /// Lower-cased exact host name.
    Exact(String),
    /// `*.example.com`, stored as the lower-cased suffix `.example.com`.
    Wildcard(String),
}

impl ServerName {
    /// Which of `blocks` (each a server block's names) `host` (without port) selects: the
    /// first with that exact name, else the one with the longest matching `*.` wildcard
    /// (nginx's order); `None` when none names it (the caller's default applies). Used for
    /// routing by Host and for choosing a certificate by SNI.
    pub fn pick<'a>(blocks: impl Iterator<Item = &'a [ServerName]>, host: &[u8]) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None; // (suffix length, block)
        for (i, names) in blocks.enumerate() {
            for name in names {
                match name {
                    ServerName::Exact(n) if n.as_bytes().eq_ignore_ascii_case(host) => {
                        return Some(i)
                    }
                    ServerName::Wildcard(suffix)
                        if host.len() > suffix.len()
                            && host[host.len() - suffix.len()..]
                                .eq_ignore_ascii_case(suffix.as_bytes())
                            && best.is_none_or(|(l, _)| suffix.len() > l) =>
                    {
                        best = Some((suffix.len(), i));
                    }
                    _ => {}
                }
            }
        }
        best.map(|(_, i)| i)
    }
}

/// One `[[server.location]]`: a path prefix and what answers under it.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub path: String,
    /// Request body limit: the location's `max_body_bytes`, else its server block's.
    /// 0 = unlimited.
    pub max_body_bytes: u64,
    pub handler: Handler,
}

/// What answers a request in a location: exactly one of `proxy_pass`, `root`/`alias`,
/// `return`.
#[derive(Debug, Clone, PartialEq)]
pub enum Handler {
    Proxy(ProxyLoc),
    Files(FilesLoc),
    Return(ReturnLoc),
}

/// `proxy_pass = "NAME"` and its options.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyLoc {
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    /// `proxy_set_header` entries in file order.
    pub set_headers: Vec<HeaderRule>,
    /// `proxy_request_buffering`: read the whole request body before choosing a server.
    pub request_buffering: bool,
    /// `proxy_buffering`: read the response at the server's speed, feed the client at its own.
    pub buffering: bool,
    /// `proxy_buffers`: memory per request for buffering, in bytes (beyond it: temp files).
    pub buffers: usize,
    /// `proxy_max_temp_file_size`: bytes of a response spilled to `runtime.temp_path` at
    /// most; 0 = never spill.
    pub max_temp_file_size: u64,
    /// Overrides the upstream's `read_timeout` for this location.
    pub read_timeout: Option<Duration>,
    /// `Upgrade` tokens passed to servers, lower-cased (never `h2c`); empty = none.
    pub upgrade: Vec<String>,
}

/// `root` or `alias`: files from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesLoc {
    pub dir: FilesDir,
    /// File names tried, in order, for a request that names a directory.
    pub index: Vec<String>,
    /// `Cache-Control: max-age` (and `Expires`); `None` = no caching headers.
    pub expires: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilesDir {
    /// nginx `root`: the whole request path is appended (`/static/a.css` ->
    /// `ROOT/static/a.css`).
    Root(PathBuf),
    /// nginx `alias`: the location path is replaced (`/static/a.css` with alias
    /// `/srv/collected/` -> `/srv/collected/a.css`). The alias and the location path both
    /// end with `/` or neither does (validated).
    Alias(PathBuf),
}

/// `return = { status, location | body }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnLoc {
    /// 100-599.
    pub status: u16,
    /// The `Location` header (only for 301, 302, 303, 307, 308, where it is required).
    pub location: Option<Template>,
    /// A plain-text body (statuses other than redirects).
    pub body: Option<String>,
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

/// The variables a template may use (parsed in `template_parse.rs`, evaluated per request
/// by `http::vars`).
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
    pub addr: ServerAddr,
    /// The address as written (`"backend1:8001"`, `"unix:/run/app.sock"`), used in logs,
    /// metrics labels and the ketama ring, where nginx also hashes the name as written.
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

/// Where an upstream server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerAddr {
    /// `host:port`, resolved when the configuration was loaded.
    Inet(SocketAddr),
    /// `unix:/path`: a unix domain stream socket.
    Unix(PathBuf),
}

impl ServerAddr {
    /// The socket address of a TCP server; `None` for a unix socket.
    pub fn inet(&self) -> Option<SocketAddr> {
        match self {
            ServerAddr::Inet(a) => Some(*a),
            ServerAddr::Unix(_) => None,
        }
    }
}

/// `127.0.0.1:8001` or `unix:/run/app.sock`.
impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddr::Inet(a) => a.fmt(f),
            ServerAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
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
