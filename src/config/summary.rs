//! `ringlb check`: a one-screen summary of a valid configuration, or every error.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use super::model::*;
use super::units::{format_duration, format_size};

/// What `ringlb check -c PATH` prints, and whether the file is valid (exit 0) or not
/// (exit 1). Print the text as is (it has no trailing newline); on failure it is every
/// error, one per line.
pub fn check(path: &Path) -> (String, bool) {
    match super::load(path) {
        Ok(cfg) => (
            format!(
                "{}\nconfiguration file {} is valid",
                summary(&cfg),
                path.display()
            ),
            true,
        ),
        Err(errors) => {
            let mut text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            let n = errors.len();
            text.push(format!(
                "configuration file {} has {n} error{}",
                path.display(),
                if n == 1 { "" } else { "s" }
            ));
            (text.join("\n"), false)
        }
    }
}

/// Workers and io, then each listen address with its virtual servers and their locations,
/// then each upstream with its balance method and servers. Every duration and size is shown
/// resolved (defaults included), so that `"500"` read as 500 seconds is plain to see.
pub fn summary(cfg: &Config) -> String {
    let mut out = String::new();
    let r = &cfg.runtime;
    let io = match r.io {
        IoMode::Auto => "auto",
        IoMode::IoUring => "io_uring",
        IoMode::Epoll => "epoll",
    };
    let _ = writeln!(
        out,
        "runtime: {} worker{}{}, io {io}, shutdown_timeout {}, max_connections {}, temp_path {}{}",
        r.workers,
        if r.workers == 1 { "" } else { "s" },
        if r.pin_workers { " (pinned)" } else { "" },
        format_duration(r.shutdown_timeout),
        r.max_connections,
        r.temp_path.display(),
        r.pid_file
            .as_ref()
            .map_or(String::new(), |p| format!(", pid_file {}", p.display())),
    );
    if let Some(a) = &cfg.admin {
        let _ = writeln!(out, "admin: http://{}/", a.listen);
    }
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for s in &cfg.servers {
        for a in &s.listen {
            if !addrs.contains(a) {
                addrs.push(*a);
            }
        }
    }
    for addr in addrs {
        let _ = writeln!(out, "listen {addr}");
        for (i, s) in cfg.servers.iter().enumerate() {
            if s.listen.contains(&addr) {
                server(&mut out, cfg, i, s);
            }
        }
    }
    for u in &cfg.upstreams {
        upstream(&mut out, u);
    }
    out.truncate(out.trim_end().len());
    out
}

fn server(out: &mut String, cfg: &Config, i: usize, s: &VirtualServer) {
    let names = if s.server_names.is_empty() {
        "any host".to_owned()
    } else {
        s.server_names
            .iter()
            .map(|n| match n {
                ServerName::Exact(n) => n.clone(),
                ServerName::Wildcard(suffix) => format!("*{suffix}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let tls = match &s.tls {
        None => String::new(),
        Some(t) => {
            let mut v = Vec::new();
            if t.protocols.tls12 {
                v.push("TLSv1.2");
            }
            if t.protocols.tls13 {
                v.push("TLSv1.3");
            }
            format!(
                " tls ({}{})",
                v.join(" "),
                if s.http2 { ", h2" } else { "" }
            )
        }
    };
    let _ = writeln!(out, "  server[{i}] {names}{tls}");
    let _ = writeln!(
        out,
        "    client_header_timeout {}, client_body_timeout {}, keepalive_timeout {} / {} requests, max_header_bytes {}, max_body_bytes {}",
        format_duration(s.client_header_timeout),
        format_duration(s.client_body_timeout),
        format_duration(s.keepalive_timeout),
        s.keepalive_requests,
        format_size(s.max_header_bytes as u64),
        body_limit(s.max_body_bytes),
    );
    let mut extra = Vec::new();
    if let Some(t) = &s.tls {
        extra.push(format!(
            "tls_certificate {}, tls_certificate_key {}",
            t.certificate.display(),
            t.certificate_key.display()
        ));
    }
    if s.proxy_protocol {
        extra.push("proxy_protocol".to_owned());
    }
    if !s.real_ip_from.is_empty() {
        let from: Vec<String> = s.real_ip_from.iter().map(ToString::to_string).collect();
        let header = match &s.real_ip_header {
            RealIpHeader::Header(h) => h.as_str(),
            RealIpHeader::ProxyProtocol => "proxy_protocol",
        };
        extra.push(format!("real_ip_from {} by {header}", from.join(" ")));
    }
    if s.underscores_in_headers {
        extra.push("underscores_in_headers".to_owned());
    }
    if let Some(log) = &s.access_log {
        extra.push(format!("access_log {} ({})", log.display(), s.log_format));
    }
    if !extra.is_empty() {
        let _ = writeln!(out, "    {}", extra.join(", "));
    }
    for l in &s.locations {
        let _ = writeln!(out, "    {} -> {}", l.path, handler(cfg, &l.handler));
        let details = match &l.handler {
            Handler::Proxy(p) => {
                let read = match p.read_timeout {
                    Some(t) => format_duration(t),
                    None => cfg.upstreams.get(p.upstream).map_or("?".into(), |u| {
                        format!("{} (upstream)", format_duration(u.read_timeout))
                    }),
                };
                let upgrade = if p.upgrade.is_empty() {
                    "none".to_owned()
                } else {
                    p.upgrade.join(" ")
                };
                format!(
                    "max_body_bytes {}, request_buffering {}, buffering {}, proxy_buffers {}, max_temp_file_size {}, read_timeout {read}, upgrade {upgrade}",
                    body_limit(l.max_body_bytes),
                    on_off(p.request_buffering),
                    on_off(p.buffering),
                    format_size(p.buffers as u64),
                    format_size(p.max_temp_file_size),
                )
            }
            Handler::Files(f) => format!(
                "index {}, expires {}",
                if f.index.is_empty() {
                    "none".to_owned()
                } else {
                    f.index.join(" ")
                },
                f.expires.map_or("off".to_owned(), format_duration)
            ),
            Handler::Return(_) => continue,
        };
        let _ = writeln!(out, "        {details}");
    }
}

fn upstream(out: &mut String, u: &UpstreamCfg) {
    let mut method = u.balance.name().to_owned();
    if u.consistent {
        method.push_str(" consistent");
    }
    if let Some(h) = &u.hash {
        let _ = write!(method, " by {h}");
    }
    let retries: Vec<&str> = [
        (u.next_upstream.error, "error"),
        (u.next_upstream.timeout, "timeout"),
        (u.next_upstream.invalid_header, "invalid_header"),
        (u.next_upstream.http_500, "http_500"),
        (u.next_upstream.http_502, "http_502"),
        (u.next_upstream.http_503, "http_503"),
        (u.next_upstream.http_504, "http_504"),
        (u.next_upstream.http_429, "http_429"),
        (u.next_upstream.non_idempotent, "non_idempotent"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| *name)
    .collect();
    let _ = writeln!(
        out,
        "upstream {}: {method}, keepalive {} / {} requests / {}, connect_timeout {}, send_timeout {}, read_timeout {}",
        u.name,
        u.keepalive,
        u.keepalive_requests,
        format_duration(u.keepalive_timeout),
        format_duration(u.connect_timeout),
        format_duration(u.send_timeout),
        format_duration(u.read_timeout),
    );
    let mut line = format!(
        "  next_upstream {}, next_upstream_tries {}, next_upstream_timeout {}",
        if retries.is_empty() {
            "off".to_owned()
        } else {
            retries.join(" ")
        },
        unlimited_if_zero(u.next_upstream_tries.into(), |n| n.to_string()),
        if u.next_upstream_timeout.is_zero() {
            "unlimited".to_owned()
        } else {
            format_duration(u.next_upstream_timeout)
        },
    );
    if u.queue > 0 {
        let _ = write!(
            line,
            ", queue {} for {}",
            u.queue,
            format_duration(u.queue_timeout)
        );
    }
    if let Some(f) = u.hash_balance_factor {
        let _ = write!(line, ", hash_balance_factor {f}");
    }
    if let Some(p) = u.panic_threshold {
        let _ = write!(line, ", panic_threshold {p}%");
    }
    if let Some(b) = u.retry_budget {
        let _ = write!(line, ", retry_budget {} min {}", b.ratio, b.min);
    }
    if u.balance == Balance::IpHash {
        let _ = write!(
            line,
            ", ip_hash_prefix v4 /{} v6 /{}",
            u.ip_hash_prefix.v4, u.ip_hash_prefix.v6
        );
    }
    let _ = writeln!(out, "{line}");
    if let Some(h) = &u.health_check {
        let _ = writeln!(
            out,
            "  health_check {} every {}, timeout {}, fails {}, passes {}, status {}-{}",
            h.path,
            format_duration(h.interval),
            format_duration(h.timeout),
            h.fails,
            h.passes,
            h.status.0,
            h.status.1
        );
    }
    for s in &u.servers {
        let mut flags = vec![
            format!("weight {}", s.weight),
            format!("max_fails {}", s.max_fails),
            format!("fail_timeout {}", format_duration(s.fail_timeout)),
            format!(
                "max_conns {}",
                unlimited_if_zero(s.max_conns.into(), |n| n.to_string())
            ),
        ];
        if !s.slow_start.is_zero() {
            flags.push(format!("slow_start {}", format_duration(s.slow_start)));
        }
        if s.backup {
            flags.push("backup".to_owned());
        }
        if s.down {
            flags.push("down".to_owned());
        }
        let resolved = if s.name == s.addr.to_string() {
            String::new()
        } else {
            format!(" ({})", s.addr)
        };
        let _ = writeln!(out, "  {}{resolved}  {}", s.name, flags.join(", "));
    }
}

fn body_limit(n: u64) -> String {
    unlimited_if_zero(n, format_size)
}

fn unlimited_if_zero(n: u64, show: impl Fn(u64) -> String) -> String {
    if n == 0 {
        "unlimited".to_owned()
    } else {
        show(n)
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// `django  (sets Host, X-Real-IP)`, `root /srv/www`, `return 301 https://$host$request_uri`.
fn handler(cfg: &Config, h: &Handler) -> String {
    match h {
        Handler::Proxy(p) => {
            let up = cfg
                .upstreams
                .get(p.upstream)
                .map_or("?", |u| u.name.as_str());
            if p.set_headers.is_empty() {
                up.to_owned()
            } else {
                let names: Vec<&str> = p.set_headers.iter().map(|h| h.name.as_str()).collect();
                format!("{up}  (sets {})", names.join(", "))
            }
        }
        Handler::Files(f) => match &f.dir {
            FilesDir::Root(d) => format!("root {}", d.display()),
            FilesDir::Alias(d) => format!("alias {}", d.display()),
        },
        Handler::Return(r) => {
            let mut s = format!("return {}", r.status);
            if let Some(l) = &r.location {
                let _ = write!(s, " {l}");
            }
            if let Some(b) = &r.body {
                let _ = write!(s, " {b:?}");
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_config_summary() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/ringlb.toml"));
        let (text, ok) = check(path);
        assert!(ok, "{text}");
        println!("{text}");
        assert!(text.contains("listen 127.0.0.1:8080"), "{text}");
        assert!(text.contains("    / -> django"), "{text}");
        assert!(text.contains("upstream django: round_robin"), "{text}");
        assert!(text.contains("  127.0.0.1:8003"), "{text}");
    }

    #[test]
    fn check_lists_every_error() {
        let dir = std::env::temp_dir().join(format!("ringlb-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[runtime]\nworkers = 0\nio = \"kqueue\"\n").unwrap();
        let (text, ok) = check(&path);
        assert!(!ok);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with(": server: no [[server]] block; add one with listen = [\"0.0.0.0:8080\"] and a [[server.location]]"), "{text}");
        assert!(lines[1].ends_with(":2:11: runtime.workers: must be at least 1; use \"auto\" for one worker per allowed CPU"), "{text}");
        assert!(
            lines[2].contains(":3:6: runtime.io: unknown io mode \"kqueue\""),
            "{text}"
        );
        assert!(text.ends_with("has 3 errors"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unreadable_file_is_one_error() {
        let (text, ok) = check(Path::new("/nonexistent/ringlb.toml"));
        assert!(!ok);
        assert!(
            text.starts_with("/nonexistent/ringlb.toml:1:1: cannot read"),
            "{text}"
        );
    }
}
