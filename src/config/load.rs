//! File -> [`RawConfig`]: parse the TOML, then walk its spanned tree key by key
//! (primitives in `walk.rs`, this file's keys here).
//!
//! Walking the tree by hand (rather than `toml::from_str::<RawConfig>`) lets one pass report
//! every unknown key and every value of the wrong type, each with its line and column,
//! instead of stopping at the first. `validate.rs` then turns the raw structs into the
//! model, again collecting every problem.

use std::ops::Range;
use std::path::Path;

use toml_edit::{ImDocument, TableLike};

use super::error::{ConfigError, Problems};
use super::model::Config;
use super::schema::*;
use super::validate;
use super::walk::{entries, join, Walker};

const TOP_KEYS: &[&str] = &["runtime", "admin", "server", "upstream"];
const RUNTIME_KEYS: &[&str] = &[
    "workers",
    "pin_workers",
    "shutdown_timeout",
    "io",
    "max_connections",
    "temp_path",
    "pid_file",
];
const ADMIN_KEYS: &[&str] = &["listen"];
const SERVER_KEYS: &[&str] = &[
    "listen",
    "server_name",
    "client_header_timeout",
    "client_body_timeout",
    "keepalive_timeout",
    "keepalive_requests",
    "max_header_bytes",
    "max_body_bytes",
    "access_log",
    "tls_certificate",
    "tls_certificate_key",
    "tls_protocols",
    "http2",
    "proxy_protocol",
    "real_ip_from",
    "real_ip_header",
    "underscores_in_headers",
    "log_format",
    "location",
];
const LOCATION_KEYS: &[&str] = &[
    "path",
    "proxy_pass",
    "proxy_set_header",
    "root",
    "alias",
    "index",
    "expires",
    "return",
    "proxy_request_buffering",
    "proxy_buffering",
    "proxy_buffers",
    "proxy_max_temp_file_size",
    "max_body_bytes",
    "read_timeout",
    "upgrade",
];
const RETURN_KEYS: &[&str] = &["status", "location", "body"];
const UPSTREAM_KEYS: &[&str] = &[
    "balance",
    "hash",
    "consistent",
    "keepalive",
    "keepalive_requests",
    "keepalive_timeout",
    "connect_timeout",
    "send_timeout",
    "read_timeout",
    "next_upstream",
    "next_upstream_tries",
    "next_upstream_timeout",
    "servers",
    "health_check",
    "hash_balance_factor",
    "ip_hash_prefix",
    "panic_threshold",
    "retry_budget",
    "queue",
    "queue_timeout",
];
const UPSTREAM_SERVER_KEYS: &[&str] = &[
    "addr",
    "weight",
    "max_fails",
    "fail_timeout",
    "max_conns",
    "backup",
    "down",
    "slow_start",
];
const HEALTH_CHECK_KEYS: &[&str] = &["path", "interval", "timeout", "fails", "passes", "status"];
const IP_HASH_PREFIX_KEYS: &[&str] = &["v4", "v6"];
const RETRY_BUDGET_KEYS: &[&str] = &["ratio", "min"];

/// Reads and validates the file at `path`. Every error found is returned, in file order.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(e) => Err(vec![ConfigError::whole_file(
            path,
            format!("cannot read the configuration file: {e}"),
        )]),
    }
}

/// Parses and validates `text`; `path` is only used to name the file in errors and is kept
/// in [`Config::path`] for reloads.
pub fn parse(text: &str, path: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut problems = Problems::default();
    let raw = read_raw(text, &mut problems);
    let config = raw.and_then(|raw| validate::build(&raw, path, &mut problems));
    match config {
        Some(c) if problems.is_empty() => Ok(c),
        _ => Err(problems.into_errors(text, path)),
    }
}

/// Text -> raw structs. `None` only for a TOML syntax error (already in `problems`); type
/// errors and unknown keys are recorded and the offending value left out.
pub(crate) fn read_raw(text: &str, problems: &mut Problems) -> Option<RawConfig> {
    let doc = match ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim_end().replace('\n', " ");
            problems.push(span, "", format!("TOML syntax error: {message}"));
            return None;
        }
    };
    let mut w = Walker { problems };
    Some(w.config(doc.as_table()))
}

impl Walker<'_> {
    fn config(&mut self, root: &toml_edit::Table) -> RawConfig {
        let mut c = RawConfig::default();
        let whole = 0..0;
        for e in entries(root, &whole) {
            let p = join("", e.name);
            match e.name {
                "runtime" => c.runtime = self.table(&e, &p, Self::runtime),
                "admin" => c.admin = self.table(&e, &p, Self::admin),
                "server" => {
                    c.server = self
                        .tables(&e, &p, Self::server)
                        .map(Spanned::into_inner)
                        .unwrap_or_default()
                }
                "upstream" => {
                    if let Some(ups) = self.table(&e, &p, Self::upstreams) {
                        c.upstream = ups.into_inner();
                    }
                }
                _ => self.unknown(&e, "", TOP_KEYS),
            }
        }
        c
    }

    fn runtime(&mut self, t: &dyn TableLike, span: &Range<usize>, path: &str) -> RawRuntime {
        let mut r = RawRuntime::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "workers" => r.workers = self.str_or_int(&e, &p, "\"auto\" or a number of workers"),
                "pin_workers" => r.pin_workers = self.boolean(&e, &p),
                "shutdown_timeout" => r.shutdown_timeout = self.duration(&e, &p),
                "io" => r.io = self.string(&e, &p),
                "max_connections" => r.max_connections = self.integer(&e, &p),
                "temp_path" => r.temp_path = self.string(&e, &p),
                "pid_file" => r.pid_file = self.string(&e, &p),
                _ => self.unknown(&e, path, RUNTIME_KEYS),
            }
        }
        r
    }

    fn admin(&mut self, t: &dyn TableLike, span: &Range<usize>, path: &str) -> RawAdmin {
        let mut a = RawAdmin::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "listen" => a.listen = self.string(&e, &p),
                _ => self.unknown(&e, path, ADMIN_KEYS),
            }
        }
        a
    }

    fn server(&mut self, t: &dyn TableLike, span: &Range<usize>, path: &str) -> RawServer {
        let mut s = RawServer::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "listen" => s.listen = self.one_or_many(&e, &p),
                "server_name" => s.server_name = self.one_or_many(&e, &p),
                "client_header_timeout" => s.client_header_timeout = self.duration(&e, &p),
                "client_body_timeout" => s.client_body_timeout = self.duration(&e, &p),
                "keepalive_timeout" => s.keepalive_timeout = self.duration(&e, &p),
                "keepalive_requests" => s.keepalive_requests = self.integer(&e, &p),
                "max_header_bytes" => {
                    s.max_header_bytes = self.str_or_int(&e, &p, "a size such as 16384 or \"16k\"")
                }
                "max_body_bytes" => {
                    s.max_body_bytes = self.str_or_int(&e, &p, "a size such as 0 or \"10m\"")
                }
                "access_log" => s.access_log = self.string(&e, &p),
                "tls_certificate" => s.tls_certificate = self.string(&e, &p),
                "tls_certificate_key" => s.tls_certificate_key = self.string(&e, &p),
                "tls_protocols" => s.tls_protocols = self.strings(&e, &p),
                "http2" => s.http2 = self.boolean(&e, &p),
                "proxy_protocol" => s.proxy_protocol = self.boolean(&e, &p),
                "real_ip_from" => s.real_ip_from = self.one_or_many(&e, &p),
                "real_ip_header" => s.real_ip_header = self.string(&e, &p),
                "underscores_in_headers" => s.underscores_in_headers = self.boolean(&e, &p),
                "log_format" => s.log_format = self.string(&e, &p),
                "location" => {
                    s.location = self
                        .tables(&e, &p, Self::location)
                        .map(Spanned::into_inner)
                        .unwrap_or_default()
                }
                _ => self.unknown(&e, path, SERVER_KEYS),
            }
        }
        s
    }

    fn location(&mut self, t: &dyn TableLike, span: &Range<usize>, path: &str) -> RawLocation {
        let mut l = RawLocation::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "path" => l.path = self.string(&e, &p),
                "proxy_pass" => l.proxy_pass = self.string(&e, &p),
                "proxy_set_header" => l.proxy_set_header = self.table(&e, &p, Self::header_map),
                "root" => l.root = self.string(&e, &p),
                "alias" => l.alias = self.string(&e, &p),
                "index" => l.index = self.one_or_many(&e, &p),
                "expires" => l.expires = self.duration(&e, &p),
                "return" => l.return_ = self.table(&e, &p, Self::return_),
                "proxy_request_buffering" => l.proxy_request_buffering = self.boolean(&e, &p),
                "proxy_buffering" => l.proxy_buffering = self.boolean(&e, &p),
                "proxy_buffers" => {
                    l.proxy_buffers = self.str_or_int(&e, &p, "a size such as \"256k\"")
                }
                "proxy_max_temp_file_size" => {
                    l.proxy_max_temp_file_size = self.str_or_int(&e, &p, "a size such as \"1g\"")
                }
                "max_body_bytes" => {
                    l.max_body_bytes = self.str_or_int(&e, &p, "a size such as 0 or \"10m\"")
                }
                "read_timeout" => l.read_timeout = self.duration(&e, &p),
                "upgrade" => l.upgrade = self.strings(&e, &p),
                _ => self.unknown(&e, path, LOCATION_KEYS),
            }
        }
        l
    }

    fn return_(&mut self, t: &dyn TableLike, span: &Range<usize>, path: &str) -> RawReturn {
        let mut r = RawReturn::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "status" => r.status = self.integer(&e, &p),
                "location" => r.location = self.string(&e, &p),
                "body" => r.body = self.string(&e, &p),
                _ => self.unknown(&e, path, RETURN_KEYS),
            }
        }
        r
    }

    fn header_map(
        &mut self,
        t: &dyn TableLike,
        span: &Range<usize>,
        path: &str,
    ) -> OrderedMap<Spanned<String>, Spanned<String>> {
        let mut m = OrderedMap::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            if let Some(v) = self.string(&e, &p) {
                m.0.push((Spanned::new(e.key_span.clone(), e.name.to_owned()), v));
            }
        }
        m
    }

    fn upstreams(
        &mut self,
        t: &dyn TableLike,
        span: &Range<usize>,
        path: &str,
    ) -> OrderedMap<Spanned<String>, Spanned<RawUpstream>> {
        let mut m = OrderedMap::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            if let Some(u) = self.table(&e, &p, Self::upstream) {
                m.0.push((Spanned::new(e.key_span.clone(), e.name.to_owned()), u));
            }
        }
        m
    }

    fn upstream(&mut self, t: &dyn TableLike, span: &Range<usize>, path: &str) -> RawUpstream {
        let mut u = RawUpstream::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "balance" => u.balance = self.string(&e, &p),
                "hash" => u.hash = self.string(&e, &p),
                "consistent" => u.consistent = self.boolean(&e, &p),
                "keepalive" => u.keepalive = self.integer(&e, &p),
                "keepalive_requests" => u.keepalive_requests = self.integer(&e, &p),
                "keepalive_timeout" => u.keepalive_timeout = self.duration(&e, &p),
                "connect_timeout" => u.connect_timeout = self.duration(&e, &p),
                "send_timeout" => u.send_timeout = self.duration(&e, &p),
                "read_timeout" => u.read_timeout = self.duration(&e, &p),
                "next_upstream" => u.next_upstream = self.strings(&e, &p),
                "next_upstream_tries" => u.next_upstream_tries = self.integer(&e, &p),
                "next_upstream_timeout" => u.next_upstream_timeout = self.duration(&e, &p),
                "servers" => u.servers = self.tables(&e, &p, Self::upstream_server),
                "health_check" => u.health_check = self.table(&e, &p, Self::health_check),
                "hash_balance_factor" => u.hash_balance_factor = self.float(&e, &p),
                "ip_hash_prefix" => u.ip_hash_prefix = self.table(&e, &p, Self::ip_hash_prefix),
                "panic_threshold" => u.panic_threshold = self.integer(&e, &p),
                "retry_budget" => u.retry_budget = self.table(&e, &p, Self::retry_budget),
                "queue" => u.queue = self.integer(&e, &p),
                "queue_timeout" => u.queue_timeout = self.duration(&e, &p),
                _ => self.unknown(&e, path, UPSTREAM_KEYS),
            }
        }
        u
    }

    fn upstream_server(
        &mut self,
        t: &dyn TableLike,
        span: &Range<usize>,
        path: &str,
    ) -> RawUpstreamServer {
        let mut s = RawUpstreamServer::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "addr" => s.addr = self.string(&e, &p),
                "weight" => s.weight = self.integer(&e, &p),
                "max_fails" => s.max_fails = self.integer(&e, &p),
                "fail_timeout" => s.fail_timeout = self.duration(&e, &p),
                "max_conns" => s.max_conns = self.integer(&e, &p),
                "backup" => s.backup = self.boolean(&e, &p),
                "down" => s.down = self.boolean(&e, &p),
                "slow_start" => s.slow_start = self.duration(&e, &p),
                _ => self.unknown(&e, path, UPSTREAM_SERVER_KEYS),
            }
        }
        s
    }

    fn health_check(
        &mut self,
        t: &dyn TableLike,
        span: &Range<usize>,
        path: &str,
    ) -> RawHealthCheck {
        let mut h = RawHealthCheck::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "path" => h.path = self.string(&e, &p),
                "interval" => h.interval = self.duration(&e, &p),
                "timeout" => h.timeout = self.duration(&e, &p),
                "fails" => h.fails = self.integer(&e, &p),
                "passes" => h.passes = self.integer(&e, &p),
                "status" => {
                    h.status = self.str_or_int(&e, &p, "a status range such as \"200-399\" or 200")
                }
                _ => self.unknown(&e, path, HEALTH_CHECK_KEYS),
            }
        }
        h
    }

    fn ip_hash_prefix(
        &mut self,
        t: &dyn TableLike,
        span: &Range<usize>,
        path: &str,
    ) -> RawIpHashPrefix {
        let mut x = RawIpHashPrefix::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "v4" => x.v4 = self.integer(&e, &p),
                "v6" => x.v6 = self.integer(&e, &p),
                _ => self.unknown(&e, path, IP_HASH_PREFIX_KEYS),
            }
        }
        x
    }

    fn retry_budget(
        &mut self,
        t: &dyn TableLike,
        span: &Range<usize>,
        path: &str,
    ) -> RawRetryBudget {
        let mut r = RawRetryBudget::default();
        for e in entries(t, span) {
            let p = join(path, e.name);
            match e.name {
                "ratio" => r.ratio = self.float(&e, &p),
                "min" => r.min = self.integer(&e, &p),
                _ => self.unknown(&e, path, RETRY_BUDGET_KEYS),
            }
        }
        r
    }
}
