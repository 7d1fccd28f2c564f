//! The directive tree -> a [`Plan`]: the main and `events` contexts, `http`, `upstream`
//! blocks, the settings `http`, `server` and `location` blocks hand down to their children
//! ([`Inherit`], merged as nginx merges them: a child's directive replaces the parent's, and
//! a list directive such as `proxy_set_header` given at a level replaces the whole inherited
//! list), and the settings nginx keeps per location but ringlb per upstream. `server.rs`
//! converts `server` and `location` blocks. Everything not carried over becomes a [`Note`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::note::Note;
use super::parse::Directive;
use super::plan::{Plan, UpServer, UpSettings, Upstream};
use super::values::{server_addr, size, template, time};

/// nginx's `client_max_body_size` default: ringlb's is unlimited, so the import writes it.
pub const NGINX_MAX_BODY: u64 = 1 << 20;
/// nginx's `proxy_read_timeout` default, where a location must state its own.
pub const NGINX_PROXY_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings a block hands down to the blocks inside it, as written in nginx (converted
/// where the value does not depend on the server block).
#[derive(Debug, Clone, Default)]
pub struct Inherit {
    pub client_max_body_size: Option<u64>,
    pub client_header_timeout: Option<Duration>,
    pub client_body_timeout: Option<Duration>,
    pub keepalive_timeout: Option<Duration>,
    pub keepalive_requests: Option<u64>,
    pub large_client_header_buffers: Option<u64>,
    /// `proxy_set_header` directives (converted per server block: `$server_name`).
    pub headers: Vec<Directive>,
    pub proxy: UpSettings,
    pub buffering: Option<bool>,
    pub request_buffering: Option<bool>,
    pub buffers: Option<u64>,
    pub max_temp_file_size: Option<u64>,
    pub root: Option<String>,
    pub index: Option<Vec<String>>,
    pub expires: Option<Duration>,
    pub ssl_certificate: Option<String>,
    pub ssl_certificate_key: Option<String>,
    pub ssl_protocols: Option<Vec<String>>,
    pub real_ip_from: Vec<String>,
    pub real_ip_header: Option<String>,
    pub underscores_in_headers: Option<bool>,
    /// `Some(None)`: `access_log off`.
    pub access_log: Option<Option<(String, Option<String>)>>,
    pub http2: Option<bool>,
    /// List directives already given at this level (the first one replaces the inherited
    /// list, the next ones add to it).
    fresh: Vec<&'static str>,
}

impl Inherit {
    /// What a block inside this one starts from.
    pub fn child(&self) -> Inherit {
        Inherit {
            fresh: Vec::new(),
            ..self.clone()
        }
    }

    fn first_at_level(&mut self, list: &'static str) -> bool {
        if self.fresh.contains(&list) {
            false
        } else {
            self.fresh.push(list);
            true
        }
    }
}

/// One location proxying to an upstream, for settling [`UpSettings`] afterwards.
pub struct Use {
    pub upstream: String,
    pub settings: UpSettings,
    pub proxy_pass: Directive,
    /// Index of the server block and of the location in the plan.
    pub server: usize,
    pub location: usize,
}

pub struct Converter<'n> {
    pub plan: Plan,
    pub notes: &'n mut Vec<Note>,
    pub conf_dir: PathBuf,
    pub log_formats: HashMap<String, String>,
    pub uses: Vec<Use>,
    /// Upstreams made for a single `proxy_pass` address: address -> name.
    pub implicit: HashMap<String, String>,
}

impl Converter<'_> {
    pub fn note(&mut self, d: &Directive, why: impl Into<String>) {
        self.notes.push(d.note(why));
    }

    /// A directive ringlb has nothing for: a note saying why.
    pub fn not_carried(&mut self, d: &Directive) {
        let why = why_not(&d.name);
        self.note(d, why);
    }

    /// A path nginx reads relative to its configuration directory.
    pub fn conf_path(&self, p: &str) -> String {
        if Path::new(p).is_absolute() {
            p.to_owned()
        } else {
            self.conf_dir.join(p).display().to_string()
        }
    }

    /// The main context.
    pub fn main(&mut self, tree: &[Directive]) {
        let mut http = Vec::new();
        for d in tree {
            match (d.name.as_str(), d.args.as_slice(), &d.block) {
                ("worker_processes", [n], None) if n == "auto" || n.parse::<u32>().is_ok() => {
                    self.plan.workers = Some(n.clone());
                }
                ("pid", [p], None) => self.plan.pid_file = Some(self.conf_path(p)),
                ("worker_shutdown_timeout", [t], None) if time(t).is_some() => {
                    self.plan.shutdown_timeout = time(t);
                }
                // ringlb pins worker i to allowed core i, which is what `auto` does.
                ("worker_cpu_affinity", [a], None) if a == "auto" => {}
                ("events", _, Some(block)) => self.events(block),
                ("http", _, Some(block)) => http.push(block),
                _ => self.not_carried(d),
            }
        }
        for block in http {
            self.http(block);
        }
        self.settle_uses();
    }

    fn events(&mut self, block: &[Directive]) {
        for d in block {
            match (d.name.as_str(), d.args.as_slice()) {
                ("worker_connections", [n]) if n.parse::<u64>().is_ok_and(|n| n > 0) => {
                    self.plan.max_connections = n.parse().ok();
                }
                _ => self.not_carried(d),
            }
        }
    }

    fn http(&mut self, block: &[Directive]) {
        let mut inh = Inherit::default();
        for d in block {
            match (d.name.as_str(), &d.block) {
                ("server" | "upstream", Some(_)) => {}
                ("log_format", None) => self.log_format(d),
                _ => {
                    if !self.common(&mut inh, d, Level::Http) {
                        self.not_carried(d);
                    }
                }
            }
        }
        // Upstreams first: a proxy_pass names them.
        for d in block
            .iter()
            .filter(|d| d.name == "upstream" && d.block.is_some())
        {
            self.upstream(d);
        }
        for d in block
            .iter()
            .filter(|d| d.name == "server" && d.block.is_some())
        {
            self.server(d, &inh);
        }
    }

    fn log_format(&mut self, d: &Directive) {
        let Some((name, parts)) = d.args.split_first() else {
            return self.note(d, "a log_format needs a name and a format");
        };
        let mut parts: Vec<&String> = parts.iter().collect();
        if parts.first().is_some_and(|p| p.starts_with("escape=")) {
            self.note(
                d,
                "the escape= parameter is not carried (ringlb escapes as nginx's default)",
            );
            parts.remove(0);
        }
        let format: String = parts.iter().map(|s| s.as_str()).collect();
        self.log_formats.insert(name.clone(), format);
    }

    /// The settings `http`, `server` and `location` share; `false` when `d` is none of them.
    pub fn common(&mut self, inh: &mut Inherit, d: &Directive, level: Level) -> bool {
        let args = d.args.as_slice();
        let one = args.first().map(String::as_str).unwrap_or("");
        let bad = |c: &mut Self, what: &str| c.note(d, format!("not carried: {what}"));
        match d.name.as_str() {
            "client_max_body_size" => match size(one) {
                Some(n) if args.len() == 1 => inh.client_max_body_size = Some(n),
                _ => bad(self, "not a size"),
            },
            "client_header_timeout" if level != Level::Location => {
                set_time(self, d, &mut inh.client_header_timeout)
            }
            "client_body_timeout" => set_time(self, d, &mut inh.client_body_timeout),
            "keepalive_timeout" => {
                if args.len() == 2 {
                    self.note(
                        d,
                        "the second value (a Keep-Alive response header) is not carried",
                    );
                }
                match time(one) {
                    Some(t) => inh.keepalive_timeout = Some(t),
                    None => bad(self, "not a time"),
                }
            }
            "keepalive_requests" => match one.parse::<u64>() {
                Ok(n) if n > 0 => inh.keepalive_requests = Some(n),
                _ => bad(self, "not a positive number"),
            },
            "large_client_header_buffers" if level != Level::Location => {
                match (
                    args.first().and_then(|n| n.parse::<u64>().ok()),
                    args.get(1).and_then(|s| size(s)),
                ) {
                    (Some(n), Some(s)) if args.len() == 2 => {
                        inh.large_client_header_buffers = Some(n * s)
                    }
                    _ => bad(self, "expected a number and a size"),
                }
            }
            "proxy_set_header" if args.len() == 2 => {
                if inh.first_at_level("proxy_set_header") {
                    inh.headers.clear();
                }
                inh.headers.push(d.clone());
            }
            "proxy_read_timeout" => set_time(self, d, &mut inh.proxy.read_timeout),
            "proxy_connect_timeout" => set_time(self, d, &mut inh.proxy.connect_timeout),
            "proxy_send_timeout" => set_time(self, d, &mut inh.proxy.send_timeout),
            "proxy_next_upstream_timeout" => {
                set_time(self, d, &mut inh.proxy.next_upstream_timeout)
            }
            "proxy_next_upstream_tries" => match one.parse::<u64>() {
                Ok(n) => inh.proxy.next_upstream_tries = Some(n),
                Err(_) => bad(self, "not a number"),
            },
            "proxy_next_upstream" => {
                let mut list = Vec::new();
                for a in args {
                    match a.as_str() {
                        "error" | "timeout" | "invalid_header" | "http_500" | "http_502"
                        | "http_503" | "http_504" | "http_429" | "non_idempotent" | "off" => {
                            list.push(a.clone())
                        }
                        other => self.note(
                            d,
                            format!("the condition {other} is not carried (ringlb retries on error, timeout, invalid_header, http_500, http_502, http_503, http_504, http_429)"),
                        ),
                    }
                }
                inh.proxy.next_upstream = Some(list);
            }
            "proxy_buffering" => set_flag(self, d, &mut inh.buffering),
            "proxy_request_buffering" => set_flag(self, d, &mut inh.request_buffering),
            "proxy_buffers" => {
                match (
                    args.first().and_then(|n| n.parse::<u64>().ok()),
                    args.get(1).and_then(|s| size(s)),
                ) {
                    (Some(n), Some(s)) if args.len() == 2 => inh.buffers = Some(n * s),
                    _ => bad(self, "expected a number and a size"),
                }
            }
            "proxy_max_temp_file_size" => match size(one) {
                Some(n) => inh.max_temp_file_size = Some(n),
                None => bad(self, "not a size"),
            },
            "proxy_temp_path" => {
                if args.len() > 1 {
                    self.note(
                        d,
                        "the levels are not carried (ringlb keeps no files there)",
                    );
                }
                let p = self.conf_path(one);
                match &self.plan.temp_path {
                    Some(old) if *old != p => {
                        self.note(d, format!("ringlb has one temp_path; {old} is kept"))
                    }
                    _ => self.plan.temp_path = Some(p),
                }
            }
            // ringlb always speaks HTTP/1.1 to servers, and passes Location unchanged.
            "proxy_http_version" if one == "1.1" => {}
            "proxy_redirect" if one == "off" => {}
            "root" if args.len() == 1 => inh.root = Some(one.to_owned()),
            "index" if !args.is_empty() => inh.index = Some(args.to_vec()),
            "expires" => self.expires(inh, d),
            "ssl_certificate" if args.len() == 1 => {
                inh.ssl_certificate = (!one.is_empty()).then(|| self.conf_path(one))
            }
            "ssl_certificate_key" if args.len() == 1 => {
                inh.ssl_certificate_key = (!one.is_empty()).then(|| self.conf_path(one))
            }
            "ssl_protocols" => {
                let kept: Vec<String> = args
                    .iter()
                    .filter(|p| *p == "TLSv1.2" || *p == "TLSv1.3")
                    .cloned()
                    .collect();
                if kept.len() < args.len() {
                    self.note(d, "protocols before TLSv1.2 are not carried (ringlb offers TLSv1.2 and TLSv1.3 only)");
                }
                inh.ssl_protocols = (!kept.is_empty()).then_some(kept);
            }
            "set_real_ip_from" if args.len() == 1 => {
                if one.starts_with("unix:") {
                    bad(self, "unix: sources");
                } else {
                    if inh.first_at_level("set_real_ip_from") {
                        inh.real_ip_from.clear();
                    }
                    inh.real_ip_from.push(one.to_owned());
                }
            }
            "real_ip_header" if args.len() == 1 => inh.real_ip_header = Some(one.to_owned()),
            // ringlb always takes the last address not trusted, as `real_ip_recursive on`.
            "real_ip_recursive" if one == "on" => {}
            "underscores_in_headers" if level != Level::Location => {
                set_flag(self, d, &mut inh.underscores_in_headers)
            }
            "access_log" => self.access_log(inh, d, level),
            "http2" if level != Level::Location => set_flag(self, d, &mut inh.http2),
            _ => return false,
        }
        true
    }

    fn expires(&mut self, inh: &mut Inherit, d: &Directive) {
        let args: Vec<&str> = d
            .args
            .iter()
            .map(String::as_str)
            .filter(|a| *a != "modified")
            .collect();
        if args.len() < d.args.len() {
            self.note(
                d,
                "`modified` (from the file's time) is not carried: ringlb counts from the response",
            );
        }
        match args.as_slice() {
            ["off"] => inh.expires = None,
            // nginx's `max`: 10 years.
            ["max"] => inh.expires = Some(Duration::from_secs(10 * 365 * 86_400)),
            [t] if time(t).is_some() => inh.expires = time(t),
            _ => self.note(d, "not carried: ringlb's expires is a positive time"),
        }
    }

    fn access_log(&mut self, inh: &mut Inherit, d: &Directive, level: Level) {
        if level == Level::Location {
            return self.note(
                d,
                "not carried: ringlb keeps one access log per server block",
            );
        }
        let first = inh.first_at_level("access_log");
        match d.args.as_slice() {
            [off] if off == "off" => inh.access_log = Some(None),
            [path, rest @ ..] if !path.starts_with("syslog:") && !path.contains('$') => {
                if !first {
                    return self.note(d, "not carried: ringlb writes one access log per server block (the first one is kept)");
                }
                if rest.iter().skip(1).any(|_| true) {
                    self.note(d, "buffer=, flush=, gzip and if= are not carried (ringlb buffers its log itself)");
                }
                let format = rest.first().cloned();
                inh.access_log = Some(Some((self.conf_path(path), format)));
            }
            _ => self.note(
                d,
                "not carried: ringlb writes access logs to files named without variables",
            ),
        }
    }

    fn upstream(&mut self, d: &Directive) {
        let Some(name) = d.args.first().filter(|_| d.args.len() == 1) else {
            return self.note(d, "an upstream block needs one name");
        };
        if self.plan.upstreams.iter().any(|u| u.name == *name) {
            return self.note(d, format!("a second upstream named {name} is not carried"));
        }
        let mut u = Upstream {
            name: name.clone(),
            ..Upstream::default()
        };
        for x in d.block.as_deref().unwrap_or_default() {
            let args: Vec<&str> = x.args.iter().map(String::as_str).collect();
            match (x.name.as_str(), args.as_slice()) {
                ("server", [addr, params @ ..]) => {
                    if let Some(s) = self.up_server(x, addr, params) {
                        match u.servers.iter_mut().find(|o| o.addr == s.addr) {
                            Some(o) => {
                                let w = o.weight.unwrap_or(1) + s.weight.unwrap_or(1);
                                o.weight = Some(w);
                                self.note(x, format!("{} is listed twice: carried as one server of weight {w}", s.addr));
                            }
                            None => u.servers.push(s),
                        }
                    }
                }
                ("least_conn", []) => u.balance = Some("least_conn"),
                ("ip_hash", []) => u.balance = Some("ip_hash"),
                ("hash", [key, rest @ ..]) if rest.is_empty() || rest == ["consistent"] => {
                    match template(key, None) {
                        Ok(k) if k.contains('$') => {
                            u.balance = Some("hash");
                            u.hash = Some(k);
                            u.consistent = !rest.is_empty();
                        }
                        Ok(_) => self.note(x, "a hash key without variables sends every request to one server: not carried"),
                        Err(v) => self.note(x, format!("not carried: ringlb has no variable {v}")),
                    }
                }
                ("random", ["two"] | ["two", "least_conn"]) => {
                    u.balance = Some("random_two_least_conn")
                }
                ("random", ["two", m]) if m.starts_with("least_time") => {
                    self.note(x, "carried as ringlb's least_time (response time x active requests)");
                    u.balance = Some("least_time");
                }
                ("random", []) => {
                    self.note(x, "carried as random_two_least_conn (ringlb has no single random draw)");
                    u.balance = Some("random_two_least_conn");
                }
                ("keepalive", [n]) if n.parse::<u64>().is_ok() => u.keepalive = n.parse().ok(),
                ("keepalive_requests", [n]) if n.parse::<u64>().is_ok_and(|n| n > 0) => {
                    u.keepalive_requests = n.parse().ok()
                }
                ("keepalive_timeout", [t]) if time(t).is_some() => u.keepalive_timeout = time(t),
                ("queue", [n, rest @ ..]) if n.parse::<u64>().is_ok() => {
                    u.queue = n.parse().ok();
                    for r in rest {
                        match r.strip_prefix("timeout=").and_then(time) {
                            Some(t) => u.queue_timeout = Some(t),
                            None => self.note(x, format!("{r} is not carried")),
                        }
                    }
                }
                _ => self.not_carried(x),
            }
        }
        if u.servers.is_empty() {
            return self.note(
                d,
                format!("upstream {name} has no server ringlb can use: not carried"),
            );
        }
        if u.servers.iter().all(|s| s.backup) {
            self.note(
                d,
                format!(
                    "every server of {name} is a backup: the first one is carried as a primary"
                ),
            );
            u.servers[0].backup = false;
        }
        self.plan.upstreams.push(u);
    }

    fn up_server(&mut self, x: &Directive, addr: &str, params: &[&str]) -> Option<UpServer> {
        let Some(a) = server_addr(addr) else {
            self.note(
                x,
                format!("{addr} is not an address ringlb can reach: not carried"),
            );
            return None;
        };
        let mut s = UpServer {
            addr: a,
            ..UpServer::default()
        };
        for p in params {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let num = v.parse::<u64>().ok();
            match (k, num) {
                ("weight", Some(n)) if n >= 1 => s.weight = Some(n),
                ("max_fails", Some(n)) => s.max_fails = Some(n),
                ("max_conns", Some(n)) => s.max_conns = Some(n),
                ("fail_timeout", _) if time(v).is_some() => s.fail_timeout = time(v),
                ("slow_start", _) if time(v).is_some() => s.slow_start = time(v),
                ("backup", _) if v.is_empty() => s.backup = true,
                ("down", _) if v.is_empty() => s.down = true,
                _ => self.note(x, format!("the parameter {p} is not carried")),
            }
        }
        Some(s)
    }

    /// The upstream named by `proxy_pass http://HOST...`: an upstream block of that name,
    /// or one made for that single address (named after it).
    pub fn upstream_for(&mut self, host: &str) -> Option<String> {
        if self.plan.upstreams.iter().any(|u| u.name == host) {
            return Some(host.to_owned());
        }
        let addr = server_addr(host)?;
        if let Some(name) = self.implicit.get(&addr) {
            return Some(name.clone());
        }
        let mut name = upstream_name(&addr, None);
        let mut n = 2;
        while self.plan.upstreams.iter().any(|u| u.name == name) {
            name = upstream_name(&addr, Some(n));
            n += 1;
        }
        self.implicit.insert(addr.clone(), name.clone());
        self.plan.upstreams.push(Upstream {
            name: name.clone(),
            servers: vec![UpServer {
                addr,
                ..UpServer::default()
            }],
            ..Upstream::default()
        });
        Some(name)
    }

    /// nginx sets timeouts and retries per location, ringlb per upstream: each upstream
    /// takes the values of the first location that proxies to it; a location that
    /// differs keeps its own read_timeout and gets a note for the rest.
    fn settle_uses(&mut self) {
        let uses = std::mem::take(&mut self.uses);
        let mut first: HashMap<String, UpSettings> = HashMap::new();
        for u in &uses {
            let Some(base) = first.get(&u.upstream) else {
                first.insert(u.upstream.clone(), u.settings.clone());
                if let Some(up) = self
                    .plan
                    .upstreams
                    .iter_mut()
                    .find(|x| x.name == u.upstream)
                {
                    up.settings = u.settings.clone();
                }
                continue;
            };
            let base = base.clone();
            if u.settings.read_timeout != base.read_timeout {
                let t = u.settings.read_timeout.unwrap_or(NGINX_PROXY_TIMEOUT);
                if let Some(super::plan::Handler::Proxy(p)) = self
                    .plan
                    .servers
                    .get_mut(u.server)
                    .and_then(|s| s.locations.get_mut(u.location))
                    .map(|l| &mut l.handler)
                {
                    p.read_timeout = Some(t);
                }
            }
            let differs: Vec<&str> = [
                (
                    "proxy_connect_timeout",
                    u.settings.connect_timeout != base.connect_timeout,
                ),
                (
                    "proxy_send_timeout",
                    u.settings.send_timeout != base.send_timeout,
                ),
                (
                    "proxy_next_upstream",
                    u.settings.next_upstream != base.next_upstream,
                ),
                (
                    "proxy_next_upstream_tries",
                    u.settings.next_upstream_tries != base.next_upstream_tries,
                ),
                (
                    "proxy_next_upstream_timeout",
                    u.settings.next_upstream_timeout != base.next_upstream_timeout,
                ),
            ]
            .iter()
            .filter(|(_, d)| *d)
            .map(|(n, _)| *n)
            .collect();
            if !differs.is_empty() {
                self.note(
                    &u.proxy_pass,
                    format!(
                        "{} differ from those of the first location proxying to {}; ringlb sets them per upstream, the first location's are kept",
                        differs.join(", "),
                        u.upstream
                    ),
                );
            }
        }
    }
}

/// Where a directive stands, for the few that are valid in some blocks only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Http,
    Server,
    Location,
}

fn set_time(c: &mut Converter<'_>, d: &Directive, slot: &mut Option<Duration>) {
    match d.args.as_slice() {
        [t] if time(t).is_some() => *slot = time(t),
        _ => c.note(d, "not carried: not a time"),
    }
}

fn set_flag(c: &mut Converter<'_>, d: &Directive, slot: &mut Option<bool>) {
    match d.args.first().map(String::as_str) {
        Some("on") if d.args.len() == 1 => *slot = Some(true),
        Some("off") if d.args.len() == 1 => *slot = Some(false),
        _ => c.note(d, "not carried: expected on or off"),
    }
}

/// `127.0.0.1:8000` -> `127_0_0_1_8000`, `unix:/run/app.sock` -> `unix_run_app_sock`.
fn upstream_name(addr: &str, n: Option<u32>) -> String {
    let mut name: String = addr
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    while name.contains("__") {
        name = name.replace("__", "_");
    }
    let name = name.trim_matches('_').to_owned();
    match n {
        Some(n) => format!("{name}_{n}"),
        None => name,
    }
}

/// Why a directive is not carried over.
pub fn why_not(name: &str) -> &'static str {
    match name {
        "user" => "not carried: run ringlb as the user it should run as (e.g. systemd's User=)",
        "error_log" => "not carried: ringlb logs to stderr, its level set by RINGLB_LOG",
        "worker_rlimit_nofile" => "not carried: raise the file limit for ringlb's process (e.g. systemd's LimitNOFILE=)",
        "worker_processes" | "worker_connections" | "pid" => "not carried: not a value ringlb can use",
        "use" | "multi_accept" | "accept_mutex" => "not needed: ringlb uses io_uring (or epoll) with one listening socket per worker",
        "load_module" | "daemon" | "master_process" | "pcre_jit" | "env" | "thread_pool" | "timer_resolution" | "worker_priority" | "working_directory" | "lock_file" => "not carried: no equivalent in ringlb",
        "stream" | "mail" => "not carried: ringlb proxies HTTP only",
        "sendfile" | "tcp_nopush" | "tcp_nodelay" | "aio" | "directio" | "output_buffers" => "not needed: ringlb sets its sockets and file sending itself",
        "types" | "default_type" | "types_hash_max_size" | "types_hash_bucket_size" => "not needed: ringlb takes Content-Type from the file extension",
        "server_names_hash_bucket_size" | "server_names_hash_max_size" | "variables_hash_max_size" | "variables_hash_bucket_size" | "proxy_headers_hash_max_size" | "proxy_headers_hash_bucket_size" | "map_hash_bucket_size" | "map_hash_max_size" => "not needed: ringlb sizes its tables itself",
        "server_tokens" => "not carried: ringlb does not add a Server header of its own",
        "gzip" | "gzip_types" | "gzip_vary" | "gzip_proxied" | "gzip_comp_level" | "gzip_min_length" | "gzip_buffers" | "gzip_http_version" | "gzip_disable" | "gzip_static" | "brotli" => "not carried: ringlb does not compress responses",
        "map" | "geo" | "split_clients" => "not carried: ringlb has no variables made from other variables",
        "if" | "rewrite" | "set" | "break" | "rewrite_log" => "not carried: ringlb has no rewrite rules",
        "try_files" => "not carried: ringlb has no try_files (a location serves files or proxies)",
        "error_page" | "proxy_intercept_errors" | "recursive_error_pages" | "log_not_found" => "not carried: ringlb does not replace error responses",
        "add_header" | "add_trailer" | "more_set_headers" | "proxy_hide_header" | "proxy_pass_header" | "proxy_ignore_headers" => "not carried: ringlb does not change response headers",
        "proxy_redirect" => "not carried: ringlb passes Location headers unchanged",
        "proxy_cache" | "proxy_cache_path" | "proxy_cache_valid" | "proxy_cache_key" | "proxy_cache_bypass" | "proxy_no_cache" | "proxy_cache_use_stale" | "proxy_cache_lock" | "open_file_cache" | "open_file_cache_valid" | "open_file_cache_min_uses" | "open_file_cache_errors" => "not carried: ringlb has no cache",
        "limit_req" | "limit_req_zone" | "limit_conn" | "limit_conn_zone" | "limit_rate" | "limit_rate_after" | "limit_except" | "limit_req_status" | "limit_conn_status" => "not carried: ringlb has no rate or connection limits per client",
        "allow" | "deny" | "auth_basic" | "auth_basic_user_file" | "auth_request" | "satisfy" => "not carried: ringlb has no access control",
        "ssl_ciphers" | "ssl_prefer_server_ciphers" | "ssl_ecdh_curve" | "ssl_dhparam" | "ssl_conf_command" => "not carried: rustls chooses the cipher suites and groups",
        "ssl_session_cache" | "ssl_session_timeout" | "ssl_session_tickets" | "ssl_session_ticket_key" | "ssl_buffer_size" | "ssl_early_data" => "not needed: ringlb manages TLS sessions itself",
        "ssl_stapling" | "ssl_stapling_verify" | "ssl_trusted_certificate" | "ssl_client_certificate" | "ssl_verify_client" | "ssl_verify_depth" | "ssl_crl" | "resolver" | "resolver_timeout" => "not carried: no equivalent in ringlb",
        "ssl" => "not carried: use `listen ... ssl` (this server block has no certificate ringlb can use)",
        "charset" | "source_charset" | "charset_types" | "override_charset" | "ssi" | "sub_filter" | "sub_filter_once" => "not carried: ringlb does not change response bodies",
        "autoindex" | "autoindex_exact_size" | "autoindex_localtime" | "autoindex_format" => "not carried: ringlb lists no directories (403)",
        "client_body_buffer_size" | "client_header_buffer_size" | "proxy_buffer_size" | "proxy_busy_buffers_size" | "proxy_temp_file_write_size" | "client_body_temp_path" | "client_body_in_file_only" => "not carried: ringlb's proxy_buffers covers it",
        "send_timeout" => "not carried: ringlb has no timeout for writes to clients",
        "reset_timedout_connection" | "lingering_close" | "lingering_time" | "lingering_timeout" | "keepalive_time" | "keepalive_disable" | "absolute_redirect" | "port_in_redirect" | "server_name_in_redirect" | "msie_padding" | "msie_refresh" | "chunked_transfer_encoding" | "merge_slashes" | "ignore_invalid_headers" | "http2_push" | "http2_push_preload" | "http2_max_concurrent_streams" | "http2_recv_buffer_size" | "http2_chunk_size" | "http3" | "quic_retry" => "not carried: ringlb keeps its own behaviour here",
        "proxy_ssl_server_name" | "proxy_ssl_verify" | "proxy_ssl_certificate" | "proxy_ssl_certificate_key" | "proxy_ssl_protocols" | "proxy_ssl_name" | "proxy_ssl_trusted_certificate" | "proxy_ssl_session_reuse" => "not carried: ringlb reaches servers over plain HTTP",
        "proxy_bind" | "proxy_socket_keepalive" | "proxy_pass_request_headers" | "proxy_pass_request_body" | "proxy_method" | "proxy_set_body" | "proxy_store" | "proxy_cookie_domain" | "proxy_cookie_path" | "proxy_cookie_flags" => "not carried: no equivalent in ringlb",
        "uwsgi_pass" | "fastcgi_pass" | "scgi_pass" | "grpc_pass" | "memcached_pass" => "not carried: ringlb proxies to HTTP servers only",
        "zone" => "not needed: ringlb's workers share each server's state without a zone",
        "sticky" | "ntlm" | "least_time" => "not carried: no equivalent in ringlb",
        "server_name" | "listen" => "not carried: not understood",
        _ => "not carried: no equivalent in ringlb",
    }
}
