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
/// then each upstream with its balance method and servers.
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
        "runtime: {} worker{}{}, io {io}, shutdown_timeout {}",
        r.workers,
        if r.workers == 1 { "" } else { "s" },
        if r.pin_workers { " (pinned)" } else { "" },
        format_duration(r.shutdown_timeout)
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
            if !s.listen.contains(&addr) {
                continue;
            }
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
            let body = if s.max_body_bytes == 0 {
                "unlimited".to_owned()
            } else {
                format_size(s.max_body_bytes)
            };
            let _ = writeln!(
                out,
                "  server[{i}] {names} (keepalive {} / {} requests, max body {body})",
                format_duration(s.keepalive_timeout),
                s.keepalive_requests
            );
            for l in &s.locations {
                let _ = writeln!(out, "    {} -> {}", l.path, handler(cfg, &l.handler));
            }
        }
    }
    for u in &cfg.upstreams {
        let mut method = u.balance.name().to_owned();
        if u.consistent {
            method.push_str(" consistent");
        }
        let _ = writeln!(
            out,
            "upstream {}: {method}, keepalive {}, connect {} / read {}{}",
            u.name,
            u.keepalive,
            format_duration(u.connect_timeout),
            format_duration(u.read_timeout),
            u.health_check.as_ref().map_or(String::new(), |h| format!(
                ", health_check {} every {}",
                h.path,
                format_duration(h.interval)
            ))
        );
        for s in &u.servers {
            let mut flags = Vec::new();
            if s.weight != 1 {
                flags.push(format!("weight {}", s.weight));
            }
            if s.max_conns != 0 {
                flags.push(format!("max_conns {}", s.max_conns));
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
            let flags = if flags.is_empty() {
                String::new()
            } else {
                format!("  {}", flags.join(", "))
            };
            let _ = writeln!(out, "  {}{resolved}{flags}", s.name);
        }
    }
    out.truncate(out.trim_end().len());
    out
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
