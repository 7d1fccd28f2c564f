//! `/status`: the JSON document README.md shows under "Admin endpoint", plus a few extra keys the
//! HTML page uses (per-server name, health, passive failure count and response classes;
//! per-upstream panic mode; client connections and reload counts).

use std::sync::atomic::Ordering;

use serde_json::{json, Map, Value};

use super::view::{ServerState, Totals};
use crate::metrics;
use crate::runtime::Process;
use crate::upstream::clock::{now_ms, uptime};

pub fn render(process: &Process) -> Value {
    let cur = process.current();
    let now = now_ms();
    let mut upstreams = Map::new();
    for u in &cur.snapshot.upstreams {
        let servers: Vec<Value> = u
            .peers
            .iter()
            .map(|p| {
                let t = Totals::of(p);
                json!({
                    "addr": p.cfg.addr.to_string(),
                    "name": p.cfg.name,
                    "weight": p.cfg.weight,
                    "backup": p.cfg.backup,
                    "state": ServerState::of(u, p, now).as_str(),
                    "health": if p.state.is_check_passing() { "passing" } else { "failing" },
                    "active": p.state.active(),
                    "requests": t.requests(),
                    "fails": t.failures,
                    "passive_fails": p.state.fails(),
                    "retries": t.retries,
                    "max_conns": p.cfg.max_conns,
                    "responses": {
                        "1xx": t.class(1), "2xx": t.class(2), "3xx": t.class(3),
                        "4xx": t.class(4), "5xx": t.class(5),
                    },
                })
            })
            .collect();
        upstreams.insert(
            u.cfg.name.clone(),
            json!({
                "balance": u.cfg.balance.name(),
                "panic": u.in_panic(now),
                "health_check": u.cfg.health_check.is_some(),
                "servers": servers,
            }),
        );
    }
    let own: u64 = (0..metrics::CODE_SLOTS)
        .map(|i| metrics::sum(&process.stats, |s| &s.own_codes[i]))
        .sum();
    let open = metrics::sum(&process.stats, |s| &*s.clients_open);
    let idle = metrics::sum(&process.stats, |s| &s.clients_idle);
    let sum = |f: &dyn Fn(&metrics::WorkerStats) -> &std::sync::atomic::AtomicU64| {
        metrics::sum(&process.stats, |s| f(s))
    };
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "generation": process.generation(),
        "workers": process.workers,
        "io": process.io.get().map_or("epoll", |k| k.as_str()),
        "uptime_s": uptime().as_secs(),
        "stopping": process.stopping.load(Ordering::Relaxed),
        "reloads": {
            "ok": process.reloads_ok.load(Ordering::Relaxed),
            "error": process.reloads_failed.load(Ordering::Relaxed),
        },
        "clients": {
            "active": open.saturating_sub(idle),
            "idle": idle,
            "accepted": metrics::sum(&process.stats, |s| &s.clients_accepted),
            "requests": metrics::sum(&process.stats, |s| &s.requests),
            "own_responses": own,
            "protocols": {
                "http": open.saturating_sub(sum(&|s| &s.clients_tls) + sum(&|s| &s.h2_streams_open)),
                "https": sum(&|s| &s.clients_tls),
                "h2": sum(&|s| &s.clients_h2),
            },
        },
        "tls": {
            "handshakes": sum(&|s| &s.tls.handshakes),
            "resumed": sum(&|s| &s.tls.resumed),
            "failures": metrics::TLS_FAILURES.iter().enumerate()
                .map(|(i, r)| (r.to_string(), json!(sum(&|s| &s.tls.failures[i]))))
                .collect::<serde_json::Map<_, _>>(),
        },
        "http2": {
            "connections": sum(&|s| &s.h2.connections),
            "streams": sum(&|s| &s.h2.streams),
            "abuse": metrics::H2_ABUSE.iter().enumerate()
                .map(|(i, r)| (r.to_string(), json!(sum(&|s| &s.h2.abuse[i]))))
                .collect::<serde_json::Map<_, _>>(),
        },
        "upstreams": upstreams,
    })
}
