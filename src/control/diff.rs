//! What a reload changes: the difference between the running configuration and the next one
//! (as sozu's `ConfigState::diff`), as a list of [`Change`]s that the reload logs one event
//! each, with fields rather than prose (`upstream=app server=10.0.0.1:80 change="added"`;
//! values that may hold spaces are quoted).
//!
//! Servers are matched by (upstream, address), as the registry matches their live state: a
//! server that keeps its address keeps its counters, and its other settings show up as
//! parameter changes. Locations are matched by their server block (its listen addresses and
//! names) and path.

use std::fmt::Debug;

use crate::config::{
    Config, FilesDir, Handler, IoMode, Location, ProxyLoc, ServerName, UpstreamCfg, VirtualServer,
};

/// One difference between two configurations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    UpstreamAdded {
        upstream: String,
    },
    UpstreamRemoved {
        upstream: String,
    },
    /// The balancing method (with `hash`'s `consistent`).
    Balance {
        upstream: String,
        from: String,
        to: String,
    },
    /// Another setting of an upstream.
    UpstreamParam {
        upstream: String,
        param: &'static str,
        from: String,
        to: String,
    },
    ServerAdded {
        upstream: String,
        server: String,
    },
    ServerRemoved {
        upstream: String,
        server: String,
    },
    /// A setting of a server that stays (weight, max_fails, backup...).
    ServerParam {
        upstream: String,
        server: String,
        param: &'static str,
        from: String,
        to: String,
    },
    ListenerAdded {
        listen: String,
    },
    ListenerRemoved {
        listen: String,
    },
    LocationAdded {
        block: String,
        path: String,
    },
    LocationRemoved {
        block: String,
        path: String,
    },
    /// `proxy_pass` or `proxy_set_header` of a location that stays.
    LocationParam {
        block: String,
        path: String,
        param: &'static str,
        from: String,
        to: String,
    },
    /// A setting that only a restart applies (the running value stays).
    RestartOnly {
        setting: &'static str,
        running: String,
        file: String,
    },
}

impl Change {
    /// Logs this change as one event with fields.
    pub fn log(&self) {
        match self {
            Change::UpstreamAdded { upstream } => {
                tracing::info!(%upstream, change = "added", "configuration change")
            }
            Change::UpstreamRemoved { upstream } => {
                tracing::info!(%upstream, change = "removed", "configuration change")
            }
            Change::Balance { upstream, from, to } => {
                tracing::info!(%upstream, change = "balance", ?from, ?to, "configuration change")
            }
            Change::UpstreamParam {
                upstream,
                param,
                from,
                to,
            } => {
                tracing::info!(%upstream, change = "param", param, ?from, ?to, "configuration change")
            }
            Change::ServerAdded { upstream, server } => {
                tracing::info!(%upstream, %server, change = "added", "configuration change")
            }
            Change::ServerRemoved { upstream, server } => {
                tracing::info!(%upstream, %server, change = "removed", "configuration change")
            }
            Change::ServerParam {
                upstream,
                server,
                param,
                from,
                to,
            } => {
                tracing::info!(%upstream, %server, change = "param", param, ?from, ?to, "configuration change")
            }
            Change::ListenerAdded { listen } => {
                tracing::info!(%listen, change = "added", "configuration change")
            }
            Change::ListenerRemoved { listen } => {
                tracing::info!(%listen, change = "removed", "configuration change")
            }
            Change::LocationAdded { block, path } => {
                tracing::info!(?block, location = %path, change = "added", "configuration change")
            }
            Change::LocationRemoved { block, path } => {
                tracing::info!(?block, location = %path, change = "removed", "configuration change")
            }
            Change::LocationParam {
                block,
                path,
                param,
                from,
                to,
            } => tracing::info!(
                ?block, location = %path, change = "param", param, ?from, ?to, "configuration change"
            ),
            Change::RestartOnly {
                setting,
                running,
                file,
            } => tracing::warn!(
                setting,
                ?running,
                ?file,
                change = "restart_only",
                "configuration change takes effect on restart"
            ),
        }
    }
}

/// The changes from `old` to `new` that a reload applies.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let mut out = Vec::new();
    upstreams(old, new, &mut out);
    listeners(old, new, &mut out);
    locations(old, new, &mut out);
    out
}

/// The settings of `file` that differ from what `running` (the configuration the process
/// started with) runs, and that only a restart applies.
pub fn restart_only(running: &Config, file: &Config) -> Vec<Change> {
    let mut out = Vec::new();
    let (r, f) = (&running.runtime, &file.runtime);
    let mut one = |setting, a: String, b: String| {
        if a != b {
            out.push(Change::RestartOnly {
                setting,
                running: a,
                file: b,
            });
        }
    };
    one(
        "runtime.workers",
        r.workers.to_string(),
        f.workers.to_string(),
    );
    one("runtime.io", io_name(r.io).into(), io_name(f.io).into());
    one(
        "runtime.pin_workers",
        r.pin_workers.to_string(),
        f.pin_workers.to_string(),
    );
    let admin = |c: &Config| {
        c.admin
            .as_ref()
            .map_or("off".into(), |a| a.listen.to_string())
    };
    one("admin.listen", admin(running), admin(file));
    out
}

fn io_name(io: IoMode) -> &'static str {
    match io {
        IoMode::Auto => "auto",
        IoMode::IoUring => "io_uring",
        IoMode::Epoll => "epoll",
    }
}

/// A value as a log field shows it: `Debug`, which writes durations as `10s` / `500ms`.
fn show<T: Debug>(v: &T) -> String {
    format!("{v:?}")
}

/// Pushes `(param, from, to)` for every listed field that differs.
macro_rules! params {
    ($old:expr, $new:expr, [$($field:ident),* $(,)?], $push:expr) => {{
        let (old, new) = ($old, $new);
        $(
            if old.$field != new.$field {
                $push(stringify!($field), show(&old.$field), show(&new.$field));
            }
        )*
    }};
}

fn method(u: &UpstreamCfg) -> String {
    let mut m = u.balance.name().to_string();
    if u.consistent {
        m.push_str(" consistent");
    }
    m
}

fn upstreams(old: &Config, new: &Config, out: &mut Vec<Change>) {
    for u in &old.upstreams {
        if !new.upstreams.iter().any(|n| n.name == u.name) {
            out.push(Change::UpstreamRemoved {
                upstream: u.name.clone(),
            });
        }
    }
    for n in &new.upstreams {
        let Some(o) = old.upstreams.iter().find(|o| o.name == n.name) else {
            out.push(Change::UpstreamAdded {
                upstream: n.name.clone(),
            });
            continue;
        };
        let upstream = || n.name.clone();
        if method(o) != method(n) {
            out.push(Change::Balance {
                upstream: upstream(),
                from: method(o),
                to: method(n),
            });
        }
        params!(
            o,
            n,
            [
                hash,
                keepalive,
                keepalive_requests,
                keepalive_timeout,
                connect_timeout,
                send_timeout,
                read_timeout,
                next_upstream,
                next_upstream_tries,
                next_upstream_timeout,
                health_check,
                hash_balance_factor,
                ip_hash_prefix,
                panic_threshold,
                retry_budget,
                queue,
                queue_timeout,
            ],
            |param, from, to| out.push(Change::UpstreamParam {
                upstream: upstream(),
                param,
                from,
                to
            })
        );
        servers(o, n, out);
    }
}

fn servers(old: &UpstreamCfg, new: &UpstreamCfg, out: &mut Vec<Change>) {
    let upstream = || new.name.clone();
    for s in &old.servers {
        if !new.servers.iter().any(|n| n.addr == s.addr) {
            out.push(Change::ServerRemoved {
                upstream: upstream(),
                server: s.name.clone(),
            });
        }
    }
    for s in &new.servers {
        let Some(o) = old.servers.iter().find(|o| o.addr == s.addr) else {
            out.push(Change::ServerAdded {
                upstream: upstream(),
                server: s.name.clone(),
            });
            continue;
        };
        params!(
            o,
            s,
            [
                name,
                weight,
                max_fails,
                fail_timeout,
                max_conns,
                backup,
                down,
                slow_start
            ],
            |param, from, to| out.push(Change::ServerParam {
                upstream: upstream(),
                server: s.name.clone(),
                param,
                from,
                to
            })
        );
    }
}

/// Every listen address of `cfg`, in file order, once each.
fn listen_addrs(cfg: &Config) -> Vec<std::net::SocketAddr> {
    let mut all = Vec::new();
    for a in cfg.servers.iter().flat_map(|s| &s.listen) {
        if !all.contains(a) {
            all.push(*a);
        }
    }
    all
}

fn listeners(old: &Config, new: &Config, out: &mut Vec<Change>) {
    let (o, n) = (listen_addrs(old), listen_addrs(new));
    for a in o.iter().filter(|a| !n.contains(a)) {
        out.push(Change::ListenerRemoved {
            listen: a.to_string(),
        });
    }
    for a in n.iter().filter(|a| !o.contains(a)) {
        out.push(Change::ListenerAdded {
            listen: a.to_string(),
        });
    }
}

/// A server block as the log names it: its listen addresses, then its names (`_` for any
/// host), e.g. `127.0.0.1:8080 example.com *.example.com`.
fn block_label(vs: &VirtualServer) -> String {
    let mut label: Vec<String> = vs.listen.iter().map(|a| a.to_string()).collect();
    if vs.server_names.is_empty() {
        label.push("_".into());
    }
    for n in &vs.server_names {
        label.push(match n {
            ServerName::Exact(n) => n.clone(),
            ServerName::Wildcard(suffix) => format!("*{suffix}"),
        });
    }
    label.join(" ")
}

/// What answers in a location, as the log names it: `proxy_pass NAME`, `root DIR`,
/// `alias DIR`, `return STATUS`.
fn handler_label(cfg: &Config, l: &Location) -> String {
    match &l.handler {
        Handler::Proxy(p) => {
            let up = cfg
                .upstreams
                .get(p.upstream)
                .map_or("?", |u| u.name.as_str());
            format!("proxy_pass {up}")
        }
        Handler::Files(f) => match &f.dir {
            FilesDir::Root(d) => format!("root {}", d.display()),
            FilesDir::Alias(d) => format!("alias {}", d.display()),
        },
        Handler::Return(r) => format!("return {}", r.status),
    }
}

/// Every location of `cfg`: (block label, location).
fn all_locations(cfg: &Config) -> Vec<(String, &Location)> {
    cfg.servers
        .iter()
        .flat_map(|vs| {
            let block = block_label(vs);
            vs.locations.iter().map(move |l| (block.clone(), l))
        })
        .collect()
}

fn locations(old: &Config, new: &Config, out: &mut Vec<Change>) {
    let (o, n) = (all_locations(old), all_locations(new));
    let same =
        |a: &(String, &Location), b: &(String, &Location)| a.0 == b.0 && a.1.path == b.1.path;
    for x in o.iter().filter(|x| !n.iter().any(|y| same(x, y))) {
        out.push(Change::LocationRemoved {
            block: x.0.clone(),
            path: x.1.path.clone(),
        });
    }
    for y in &n {
        let Some(x) = o.iter().find(|x| same(x, y)) else {
            out.push(Change::LocationAdded {
                block: y.0.clone(),
                path: y.1.path.clone(),
            });
            continue;
        };
        let mut param = |param, from: String, to: String| {
            out.push(Change::LocationParam {
                block: y.0.clone(),
                path: y.1.path.clone(),
                param,
                from,
                to,
            })
        };
        let (hx, hy) = (handler_label(old, x.1), handler_label(new, y.1));
        if hx != hy {
            param("handler", hx, hy);
            continue;
        }
        params!(x.1, y.1, [max_body_bytes], &mut param);
        match (&x.1.handler, &y.1.handler) {
            (Handler::Proxy(a), Handler::Proxy(b)) => {
                if a.set_headers != b.set_headers {
                    let names = |p: &ProxyLoc| {
                        let n: Vec<&str> = p.set_headers.iter().map(|h| h.name.as_str()).collect();
                        n.join(",")
                    };
                    param("proxy_set_header", names(a), names(b));
                }
                params!(
                    a,
                    b,
                    [
                        request_buffering,
                        buffering,
                        buffers,
                        max_temp_file_size,
                        read_timeout,
                        upgrade
                    ],
                    &mut param
                );
            }
            (Handler::Files(a), Handler::Files(b)) => params!(a, b, [index, expires], &mut param),
            (Handler::Return(a), Handler::Return(b)) => params!(a, b, [location, body], &mut param),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{AdminCfg, Balance, ServerCfg};
    use crate::upstream::bench_support::{config, server, upstream_cfg};

    fn named(name: &str, balance: Balance, servers: Vec<ServerCfg>) -> UpstreamCfg {
        let mut u = upstream_cfg(balance, servers);
        u.name = name.into();
        u
    }

    /// A configuration from TOML text: upstreams `a` and `b`, and `servers` (the
    /// `[[server]]` tables).
    fn parsed(servers: &str) -> Config {
        let text = format!(
            "{servers}\n[upstream.a]\nservers = [ {{ addr = \"127.0.0.1:1\" }} ]\n\
             [upstream.b]\nservers = [ {{ addr = \"127.0.0.1:2\" }} ]\n"
        );
        crate::config::parse(&text, std::path::Path::new("test.toml"))
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn same_configuration_no_changes() {
        let c = config(vec![named("app", Balance::RoundRobin, vec![server(1, 1)])]);
        assert_eq!(diff(&c, &c.clone()), vec![]);
        assert_eq!(restart_only(&c, &c.clone()), vec![]);
    }

    #[test]
    fn servers_added_removed_and_changed() {
        let old = config(vec![named(
            "app",
            Balance::RoundRobin,
            vec![server(1, 1), server(2, 1)],
        )]);
        let mut heavier = server(1, 3);
        heavier.backup = true;
        let new = config(vec![named(
            "app",
            Balance::RoundRobin,
            vec![heavier, server(3, 1)],
        )]);
        let app = || "app".to_string();
        assert_eq!(
            diff(&old, &new),
            vec![
                Change::ServerRemoved {
                    upstream: app(),
                    server: "127.0.0.1:2".into()
                },
                Change::ServerParam {
                    upstream: app(),
                    server: "127.0.0.1:1".into(),
                    param: "weight",
                    from: "1".into(),
                    to: "3".into()
                },
                Change::ServerParam {
                    upstream: app(),
                    server: "127.0.0.1:1".into(),
                    param: "backup",
                    from: "false".into(),
                    to: "true".into()
                },
                Change::ServerAdded {
                    upstream: app(),
                    server: "127.0.0.1:3".into()
                },
            ]
        );
    }

    #[test]
    fn upstreams_methods_and_settings() {
        let old = config(vec![
            named("a", Balance::RoundRobin, vec![server(1, 1)]),
            named("b", Balance::LeastConn, vec![server(2, 1)]),
        ]);
        let mut a = named("a", Balance::Hash, vec![server(1, 1)]);
        a.consistent = true;
        a.read_timeout = Duration::from_millis(2500);
        let new = config(vec![a, named("c", Balance::LeastConn, vec![server(2, 1)])]);
        assert_eq!(
            diff(&old, &new),
            vec![
                Change::UpstreamRemoved {
                    upstream: "b".into()
                },
                Change::Balance {
                    upstream: "a".into(),
                    from: "round_robin".into(),
                    to: "hash consistent".into()
                },
                Change::UpstreamParam {
                    upstream: "a".into(),
                    param: "read_timeout",
                    from: "1s".into(),
                    to: "2.5s".into()
                },
                Change::UpstreamAdded {
                    upstream: "c".into()
                },
            ]
        );
    }

    #[test]
    fn listeners_and_locations() {
        let old = parsed(
            r#"
[[server]]
listen = ["127.0.0.1:80"]
  [[server.location]]
  path = "/"
  proxy_pass = "a"
  [[server.location]]
  path = "/api"
  proxy_pass = "a"
"#,
        );
        let new = parsed(
            r#"
[[server]]
listen = ["127.0.0.1:80"]
  [[server.location]]
  path = "/"
  proxy_pass = "b"
  proxy_set_header = { "X-Real-IP" = "$remote_addr" }
  [[server.location]]
  path = "/static/"
  return = { status = 404, body = "no" }
[[server]]
listen = ["127.0.0.1:81"]
server_name = ["example.com"]
  [[server.location]]
  path = "/"
  proxy_pass = "a"
"#,
        );
        let b80 = || "127.0.0.1:80 _".to_string();
        assert_eq!(
            diff(&old, &new),
            vec![
                Change::ListenerAdded {
                    listen: "127.0.0.1:81".into()
                },
                Change::LocationRemoved {
                    block: b80(),
                    path: "/api".into()
                },
                // (Locations are kept longest path first.)
                Change::LocationAdded {
                    block: b80(),
                    path: "/static/".into()
                },
                Change::LocationParam {
                    block: b80(),
                    path: "/".into(),
                    param: "handler",
                    from: "proxy_pass a".into(),
                    to: "proxy_pass b".into()
                },
                Change::LocationAdded {
                    block: "127.0.0.1:81 example.com".into(),
                    path: "/".into()
                },
            ]
        );
        assert_eq!(
            diff(&new, &old)[0],
            Change::ListenerRemoved {
                listen: "127.0.0.1:81".into()
            }
        );
        // The same handler with other options.
        let mut headers = new.clone();
        headers.servers[0].locations.retain(|l| l.path == "/");
        let mut plain = headers.clone();
        if let Handler::Proxy(p) = &mut plain.servers[0].locations[0].handler {
            p.set_headers.clear();
            p.buffering = !p.buffering;
        }
        let changes = diff(&headers, &plain);
        let params: Vec<&str> = changes
            .iter()
            .map(|c| match c {
                Change::LocationParam { param, .. } => *param,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(params, ["proxy_set_header", "buffering"]);
    }

    #[test]
    fn restart_only_settings_compare_with_what_runs() {
        let running = config(vec![]);
        let mut file = running.clone();
        file.runtime.workers = 4;
        file.runtime.io = IoMode::Epoll;
        file.admin = Some(AdminCfg {
            listen: "127.0.0.1:9900".parse().unwrap(),
        });
        assert_eq!(
            restart_only(&running, &file),
            vec![
                Change::RestartOnly {
                    setting: "runtime.workers",
                    running: "1".into(),
                    file: "4".into()
                },
                Change::RestartOnly {
                    setting: "runtime.io",
                    running: "auto".into(),
                    file: "epoll".into()
                },
                Change::RestartOnly {
                    setting: "admin.listen",
                    running: "off".into(),
                    file: "127.0.0.1:9900".into()
                },
            ]
        );
        // Live settings are not the diff's business here.
        assert_eq!(diff(&running, &file), vec![]);
    }
}
