//! Builders for selection tests and benches: upstreams without a config file or sockets.
//! Not a stable API.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::*;
use crate::upstream::snapshot::{Snapshot, Upstream};
use crate::upstream::state::Registry;

/// `127.0.0.1:port` with nginx's defaults.
pub fn server(port: u16, weight: u32) -> ServerCfg {
    ServerCfg {
        addr: ServerAddr::Inet(format!("127.0.0.1:{port}").parse().unwrap()),
        name: format!("127.0.0.1:{port}"),
        weight,
        max_fails: 1,
        fail_timeout: Duration::from_secs(10),
        max_conns: 0,
        backup: false,
        down: false,
        slow_start: Duration::ZERO,
    }
}

pub fn upstream_cfg(balance: Balance, servers: Vec<ServerCfg>) -> UpstreamCfg {
    UpstreamCfg {
        name: "test".into(),
        balance,
        hash: None,
        consistent: false,
        keepalive: 32,
        keepalive_requests: 1000,
        keepalive_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(1),
        send_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        next_upstream: NextUpstream {
            error: true,
            timeout: true,
            ..Default::default()
        },
        next_upstream_tries: 0,
        next_upstream_timeout: Duration::ZERO,
        servers,
        health_check: None,
        hash_balance_factor: None,
        ip_hash_prefix: IpHashPrefix::default(),
        panic_threshold: None,
        retry_budget: None,
        queue: 0,
        queue_timeout: Duration::from_secs(5),
    }
}

pub fn upstream(cfg: &UpstreamCfg) -> Upstream {
    Upstream::build(0, cfg, &Registry::new())
}

/// A configuration holding just `upstreams` (no server blocks).
pub fn config(upstreams: Vec<UpstreamCfg>) -> Config {
    Config {
        path: PathBuf::from("bench.toml"),
        runtime: RuntimeCfg {
            workers: 1,
            pin_workers: false,
            shutdown_timeout: Duration::from_secs(1),
            io: IoMode::Auto,
            max_connections: 65536,
            temp_path: PathBuf::from("/tmp/ringlb"),
            pid_file: None,
        },
        admin: None,
        servers: Vec::new(),
        upstreams,
    }
}

/// A snapshot (generation 1) holding just `upstreams`, for `Selector::sync`.
pub fn snapshot(upstreams: Vec<UpstreamCfg>) -> Snapshot {
    Snapshot::build(Arc::new(config(upstreams)), &Registry::new(), 1)
}
