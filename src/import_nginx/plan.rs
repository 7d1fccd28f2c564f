//! What the import writes: ringlb's configuration as plain values (`None` = not set, the
//! default applies), and the TOML text made from it.

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::units::{format_duration, format_size};

#[derive(Debug, Default)]
pub struct Plan {
    pub workers: Option<String>,
    pub shutdown_timeout: Option<Duration>,
    pub max_connections: Option<u64>,
    pub temp_path: Option<String>,
    pub pid_file: Option<String>,
    pub servers: Vec<Server>,
    pub upstreams: Vec<Upstream>,
}

#[derive(Debug, Default, Clone)]
pub struct Server {
    /// `file:line` of the `server {` it comes from.
    pub from: String,
    pub listen: Vec<String>,
    /// Addresses this block is nginx's `default_server` for.
    pub default_on: Vec<String>,
    pub names: Vec<String>,
    pub client_header_timeout: Option<Duration>,
    pub client_body_timeout: Option<Duration>,
    pub keepalive_timeout: Option<Duration>,
    pub keepalive_requests: Option<u64>,
    pub max_header_bytes: Option<u64>,
    pub max_body_bytes: u64,
    pub access_log: Option<String>,
    pub log_format: Option<String>,
    pub tls: Option<Tls>,
    pub http2: Option<bool>,
    pub proxy_protocol: bool,
    pub real_ip_from: Vec<String>,
    pub real_ip_header: Option<String>,
    pub underscores_in_headers: Option<bool>,
    pub locations: Vec<Location>,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub certificate: String,
    pub key: String,
    pub protocols: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Location {
    pub path: String,
    /// Set when it differs from the server block's.
    pub max_body_bytes: Option<u64>,
    pub handler: Handler,
}

#[derive(Debug, Clone)]
pub enum Handler {
    Proxy(Proxy),
    Files {
        root: Option<String>,
        alias: Option<String>,
        index: Option<Vec<String>>,
        expires: Option<Duration>,
    },
    Return {
        status: u16,
        location: Option<String>,
        body: Option<String>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct Proxy {
    pub upstream: String,
    pub headers: Vec<(String, String)>,
    pub request_buffering: Option<bool>,
    pub buffering: Option<bool>,
    pub buffers: Option<u64>,
    pub max_temp_file_size: Option<u64>,
    pub read_timeout: Option<Duration>,
    pub upgrade: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone)]
pub struct Upstream {
    pub name: String,
    pub balance: Option<&'static str>,
    pub hash: Option<String>,
    pub consistent: bool,
    pub keepalive: Option<u64>,
    pub keepalive_requests: Option<u64>,
    pub keepalive_timeout: Option<Duration>,
    /// Timeouts and retries, from the first location that proxies to this upstream.
    pub settings: UpSettings,
    pub queue: Option<u64>,
    pub queue_timeout: Option<Duration>,
    pub servers: Vec<UpServer>,
}

/// What nginx sets per location and ringlb per upstream (`read_timeout` also per location).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpSettings {
    pub connect_timeout: Option<Duration>,
    pub send_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    pub next_upstream: Option<Vec<String>>,
    pub next_upstream_tries: Option<u64>,
    pub next_upstream_timeout: Option<Duration>,
}

#[derive(Debug, Default, Clone)]
pub struct UpServer {
    pub addr: String,
    pub weight: Option<u64>,
    pub max_fails: Option<u64>,
    pub fail_timeout: Option<Duration>,
    pub max_conns: Option<u64>,
    pub slow_start: Option<Duration>,
    pub backup: bool,
    pub down: bool,
}

/// A TOML basic string.
pub fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A table key: bare when TOML allows it.
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        s.to_owned()
    } else {
        q(s)
    }
}

fn list(items: &[String]) -> String {
    let v: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", v.join(", "))
}

fn dur(d: Duration) -> String {
    q(&format_duration(d))
}

fn size(n: u64) -> String {
    q(&format_size(n))
}

/// `key = value` lines of a table, indented by `pad`.
struct Lines<'o> {
    out: &'o mut String,
    pad: &'static str,
}

impl Lines<'_> {
    fn put(&mut self, k: &str, v: impl AsRef<str>) {
        let _ = writeln!(self.out, "{}{k} = {}", self.pad, v.as_ref());
    }
    fn opt<T>(&mut self, k: &str, v: Option<T>, f: impl Fn(T) -> String) {
        if let Some(v) = v {
            self.put(k, f(v));
        }
    }
}

impl Plan {
    /// The configuration file; `source` is named in its first comment.
    pub fn toml(&self, source: &str) -> String {
        let mut out = format!(
            "# Imported from {source} by `ringlb import-nginx`; what could not be carried over\n# was listed on stderr. Check it with `ringlb check -c FILE`.\n"
        );
        let runtime = self.workers.is_some()
            || self.shutdown_timeout.is_some()
            || self.max_connections.is_some()
            || self.temp_path.is_some()
            || self.pid_file.is_some();
        if runtime {
            out.push_str("\n[runtime]\n");
            let mut l = Lines {
                out: &mut out,
                pad: "",
            };
            l.opt("workers", self.workers.as_ref(), |w| {
                if w == "auto" {
                    q(w)
                } else {
                    w.clone()
                }
            });
            l.opt("shutdown_timeout", self.shutdown_timeout, dur);
            l.opt("max_connections", self.max_connections, |n| n.to_string());
            l.opt("temp_path", self.temp_path.as_ref(), |p| q(p));
            l.opt("pid_file", self.pid_file.as_ref(), |p| q(p));
        }
        for s in &self.servers {
            server(&mut out, s);
        }
        for u in &self.upstreams {
            upstream(&mut out, u);
        }
        out
    }
}

fn server(out: &mut String, s: &Server) {
    let _ = write!(out, "\n# {}\n[[server]]\n", s.from);
    let mut l = Lines { out, pad: "" };
    l.put("listen", list(&s.listen));
    if !s.names.is_empty() {
        l.put("server_name", list(&s.names));
    }
    l.opt("client_header_timeout", s.client_header_timeout, dur);
    l.opt("client_body_timeout", s.client_body_timeout, dur);
    l.opt("keepalive_timeout", s.keepalive_timeout, dur);
    l.opt("keepalive_requests", s.keepalive_requests, |n| {
        n.to_string()
    });
    l.opt("max_header_bytes", s.max_header_bytes, size);
    l.put("max_body_bytes", size(s.max_body_bytes));
    l.opt("access_log", s.access_log.as_ref(), |p| q(p));
    l.opt("log_format", s.log_format.as_ref(), |f| q(f));
    if let Some(t) = &s.tls {
        l.put("tls_certificate", q(&t.certificate));
        l.put("tls_certificate_key", q(&t.key));
        l.opt("tls_protocols", t.protocols.as_ref(), |p| list(p));
    }
    l.opt("http2", s.http2, |b| b.to_string());
    if s.proxy_protocol {
        l.put("proxy_protocol", "true");
    }
    if !s.real_ip_from.is_empty() {
        l.put("real_ip_from", list(&s.real_ip_from));
        l.opt("real_ip_header", s.real_ip_header.as_ref(), |h| q(h));
    }
    l.opt("underscores_in_headers", s.underscores_in_headers, |b| {
        b.to_string()
    });
    for loc in &s.locations {
        location(out, loc);
    }
}

fn location(out: &mut String, loc: &Location) {
    out.push_str("\n  [[server.location]]\n");
    let mut l = Lines { out, pad: "  " };
    l.put("path", q(&loc.path));
    match &loc.handler {
        Handler::Proxy(p) => {
            l.put("proxy_pass", q(&p.upstream));
            if !p.headers.is_empty() {
                let h: Vec<String> = p
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{} = {}", q(k), q(v)))
                    .collect();
                l.put("proxy_set_header", format!("{{ {} }}", h.join(", ")));
            }
            l.opt("proxy_request_buffering", p.request_buffering, |b| {
                b.to_string()
            });
            l.opt("proxy_buffering", p.buffering, |b| b.to_string());
            l.opt("proxy_buffers", p.buffers, size);
            l.opt("proxy_max_temp_file_size", p.max_temp_file_size, size);
            l.opt("read_timeout", p.read_timeout, dur);
            l.opt("upgrade", p.upgrade.as_ref(), |u| list(u));
        }
        Handler::Files {
            root,
            alias,
            index,
            expires,
        } => {
            l.opt("root", root.as_ref(), |r| q(r));
            l.opt("alias", alias.as_ref(), |a| q(a));
            l.opt("index", index.as_ref(), |i| list(i));
            l.opt("expires", *expires, dur);
        }
        Handler::Return {
            status,
            location,
            body,
        } => {
            let mut r = format!("{{ status = {status}");
            if let Some(to) = location {
                let _ = write!(r, ", location = {}", q(to));
            }
            if let Some(b) = body {
                let _ = write!(r, ", body = {}", q(b));
            }
            r.push_str(" }");
            l.put("return", r);
        }
    }
    l.opt("max_body_bytes", loc.max_body_bytes, size);
}

fn upstream(out: &mut String, u: &Upstream) {
    let _ = write!(out, "\n[upstream.{}]\n", key(&u.name));
    let mut l = Lines { out, pad: "" };
    l.opt("balance", u.balance, q);
    l.opt("hash", u.hash.as_ref(), |h| q(h));
    if u.consistent {
        l.put("consistent", "true");
    }
    l.opt("keepalive", u.keepalive, |n| n.to_string());
    l.opt("keepalive_requests", u.keepalive_requests, |n| {
        n.to_string()
    });
    l.opt("keepalive_timeout", u.keepalive_timeout, dur);
    let s = &u.settings;
    l.opt("connect_timeout", s.connect_timeout, dur);
    l.opt("send_timeout", s.send_timeout, dur);
    l.opt("read_timeout", s.read_timeout, dur);
    l.opt("next_upstream", s.next_upstream.as_ref(), |n| list(n));
    l.opt("next_upstream_tries", s.next_upstream_tries, |n| {
        n.to_string()
    });
    l.opt("next_upstream_timeout", s.next_upstream_timeout, dur);
    l.opt("queue", u.queue, |n| n.to_string());
    l.opt("queue_timeout", u.queue_timeout, dur);
    out.push_str("servers = [\n");
    for s in &u.servers {
        let mut parts = vec![format!("addr = {}", q(&s.addr))];
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{k} = {v}"));
            }
        };
        put("weight", s.weight.map(|n| n.to_string()));
        put("max_fails", s.max_fails.map(|n| n.to_string()));
        put("fail_timeout", s.fail_timeout.map(dur));
        put("max_conns", s.max_conns.map(|n| n.to_string()));
        put("slow_start", s.slow_start.map(dur));
        put("backup", s.backup.then(|| "true".to_owned()));
        put("down", s.down.then(|| "true".to_owned()));
        let _ = writeln!(out, "  {{ {} }},", parts.join(", "));
    }
    out.push_str("]\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_for_toml() {
        assert_eq!(q("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        assert_eq!(q("\u{1}"), "\"\\u0001\"");
        assert_eq!(key("app_1"), "app_1");
        assert_eq!(key("my.app"), "\"my.app\"");
    }
}
