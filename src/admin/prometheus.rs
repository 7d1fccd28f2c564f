//! `/metrics`: the Prometheus text exposition format (version 0.0.4), summed over the
//! per-worker shards at scrape time.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::view::{ServerState, Totals};
use crate::metrics::{self, slot_label, LATENCY_BOUNDS_S};
use crate::runtime::Process;
use crate::upstream::{now_ms, Peer, Snapshot, Upstream};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn render(process: &Process) -> String {
    let cur = process.current();
    let snap = &cur.snapshot;
    let now = now_ms();
    let totals: Vec<Vec<Totals>> = snap
        .upstreams
        .iter()
        .map(|u| u.peers.iter().map(Totals::of).collect())
        .collect();
    let mut o = String::with_capacity(16 * 1024);

    header(
        &mut o,
        "ringlb_requests_total",
        "counter",
        "Responses by upstream, server and status code; ringlb's own responses (no server \
         answered, bad requests) have empty upstream and server labels.",
    );
    for (u, ts) in snap.upstreams.iter().zip(&totals) {
        for (p, t) in u.peers.iter().zip(ts) {
            for (slot, &n) in t.codes.iter().enumerate() {
                if n > 0 {
                    let _ = writeln!(
                        o,
                        "ringlb_requests_total{{upstream=\"{}\",server=\"{}\",code=\"{}\"}} {n}",
                        esc(&u.cfg.name),
                        esc(&p.cfg.name),
                        slot_label(slot)
                    );
                }
            }
        }
    }
    for slot in 0..metrics::CODE_SLOTS {
        let n = metrics::sum(&process.stats, |s| &s.own_codes[slot]);
        if n > 0 {
            let _ = writeln!(
                o,
                "ringlb_requests_total{{upstream=\"\",server=\"\",code=\"{}\"}} {n}",
                slot_label(slot)
            );
        }
    }

    header(
        &mut o,
        "ringlb_upstream_active_connections",
        "gauge",
        "Requests in flight to each server, across workers.",
    );
    each_server(snap, &mut o, |u, p| {
        format!(
            "ringlb_upstream_active_connections{{{}}} {}",
            labels(u, p),
            p.state.active()
        )
    });

    header(
        &mut o,
        "ringlb_upstream_up",
        "gauge",
        "1 when the server can take traffic: not down in the configuration, passing its \
         health check and not passively failed.",
    );
    each_server(snap, &mut o, |u, p| {
        let up = ServerState::of(u, p, now).is_up();
        format!("ringlb_upstream_up{{{}}} {}", labels(u, p), up as u8)
    });

    header(
        &mut o,
        "ringlb_upstream_response_seconds",
        "histogram",
        "Time from sending a request to a server to its response head.",
    );
    for (u, ts) in snap.upstreams.iter().zip(&totals) {
        for (p, t) in u.peers.iter().zip(ts) {
            let l = labels(u, p);
            let mut cumulative = 0u64;
            for (i, n) in t.buckets.iter().enumerate() {
                cumulative += n;
                match LATENCY_BOUNDS_S.get(i) {
                    Some(le) => {
                        let _ = writeln!(
                            o,
                            "ringlb_upstream_response_seconds_bucket{{{l},le=\"{le}\"}} {cumulative}"
                        );
                    }
                    None => {
                        let _ = writeln!(
                            o,
                            "ringlb_upstream_response_seconds_bucket{{{l},le=\"+Inf\"}} {cumulative}"
                        );
                    }
                }
            }
            let _ = writeln!(
                o,
                "ringlb_upstream_response_seconds_sum{{{l}}} {}",
                t.latency_sum_us as f64 / 1e6
            );
            let _ = writeln!(
                o,
                "ringlb_upstream_response_seconds_count{{{l}}} {cumulative}"
            );
        }
    }

    header(
        &mut o,
        "ringlb_upstream_failures_total",
        "counter",
        "Failed attempts on each server (error, timeout, invalid response, or a status \
         listed in next_upstream).",
    );
    for (u, ts) in snap.upstreams.iter().zip(&totals) {
        for (p, t) in u.peers.iter().zip(ts) {
            let _ = writeln!(
                o,
                "ringlb_upstream_failures_total{{{}}} {}",
                labels(u, p),
                t.failures
            );
        }
    }

    header(
        &mut o,
        "ringlb_retries_total",
        "counter",
        "Requests retried on another server of the upstream.",
    );
    for (u, ts) in snap.upstreams.iter().zip(&totals) {
        let n: u64 = ts.iter().map(|t| t.retries).sum();
        let _ = writeln!(
            o,
            "ringlb_retries_total{{upstream=\"{}\"}} {n}",
            esc(&u.cfg.name)
        );
    }

    header(
        &mut o,
        "ringlb_client_connections",
        "gauge",
        "Client connections open now: \"active\" serving a request, \"idle\" waiting for \
         the next one; the same connections again by protocol (\"http\", \"https\": \
         HTTP/1.1 in clear or over TLS, \"h2\": HTTP/2 connections).",
    );
    let open = metrics::sum(&process.stats, |s| &*s.clients_open);
    let idle = metrics::sum(&process.stats, |s| &s.clients_idle);
    let _ = writeln!(
        o,
        "ringlb_client_connections{{state=\"active\"}} {}",
        open.saturating_sub(idle)
    );
    let _ = writeln!(o, "ringlb_client_connections{{state=\"idle\"}} {idle}");
    let (tls, h2_open, h2_streams) = (
        metrics::sum(&process.stats, |s| &s.clients_tls),
        metrics::sum(&process.stats, |s| &s.clients_h2),
        metrics::sum(&process.stats, |s| &s.h2_streams_open),
    );
    let http = open.saturating_sub(tls + h2_streams);
    let _ = writeln!(o, "ringlb_client_connections{{protocol=\"http\"}} {http}");
    let _ = writeln!(o, "ringlb_client_connections{{protocol=\"https\"}} {tls}");
    let _ = writeln!(o, "ringlb_client_connections{{protocol=\"h2\"}} {h2_open}");
    tls_and_h2(&mut o, &process.stats);

    single(
        &mut o,
        "ringlb_client_connections_accepted_total",
        "counter",
        "Client connections accepted since start.",
        metrics::sum(&process.stats, |s| &s.clients_accepted),
    );
    single(
        &mut o,
        "ringlb_client_requests_total",
        "counter",
        "Request heads read from clients since start.",
        metrics::sum(&process.stats, |s| &s.requests),
    );

    header(
        &mut o,
        "ringlb_config_reloads_total",
        "counter",
        "Configuration reloads (SIGHUP) by result.",
    );
    let _ = writeln!(
        o,
        "ringlb_config_reloads_total{{result=\"ok\"}} {}",
        process.reloads_ok.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        o,
        "ringlb_config_reloads_total{{result=\"error\"}} {}",
        process.reloads_failed.load(Ordering::Relaxed)
    );
    single(
        &mut o,
        "ringlb_config_generation",
        "gauge",
        "Generation of the configuration the workers run (1 at start, +1 per reload).",
        process.generation(),
    );
    single(
        &mut o,
        "ringlb_workers",
        "gauge",
        "Worker threads.",
        process.workers as u64,
    );
    o
}

/// A series without labels: its HELP and TYPE lines and its one sample.
/// TLS handshakes and HTTP/2 connections, summed over workers.
fn tls_and_h2(o: &mut String, stats: &[std::sync::Arc<metrics::WorkerStats>]) {
    single(
        o,
        "ringlb_tls_handshakes_total",
        "counter",
        "TLS handshakes completed (resumed ones included).",
        metrics::sum(stats, |s| &s.tls.handshakes),
    );
    single(
        o,
        "ringlb_tls_resumed_total",
        "counter",
        "TLS handshakes that resumed a session (ticket or session id).",
        metrics::sum(stats, |s| &s.tls.resumed),
    );
    header(
        o,
        "ringlb_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed, by reason.",
    );
    for (i, reason) in metrics::TLS_FAILURES.iter().enumerate() {
        let n = metrics::sum(stats, |s| &s.tls.failures[i]);
        let _ = writeln!(
            o,
            "ringlb_tls_handshake_failures_total{{reason=\"{reason}\"}} {n}"
        );
    }
    single(
        o,
        "ringlb_http2_connections_total",
        "counter",
        "HTTP/2 connections accepted since start.",
        metrics::sum(stats, |s| &s.h2.connections),
    );
    single(
        o,
        "ringlb_http2_streams_total",
        "counter",
        "HTTP/2 streams (requests) since start.",
        metrics::sum(stats, |s| &s.h2.streams),
    );
    header(
        o,
        "ringlb_http2_abuse_total",
        "counter",
        "HTTP/2 connections cut off with GOAWAY ENHANCE_YOUR_CALM, by reason.",
    );
    for (i, reason) in metrics::H2_ABUSE.iter().enumerate() {
        let n = metrics::sum(stats, |s| &s.h2.abuse[i]);
        let _ = writeln!(o, "ringlb_http2_abuse_total{{reason=\"{reason}\"}} {n}");
    }
}

fn single(o: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(o, name, kind, help);
    let _ = writeln!(o, "{name} {value}");
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

fn each_server(snap: &Snapshot, o: &mut String, line: impl Fn(&Upstream, &Peer) -> String) {
    for u in &snap.upstreams {
        for p in &u.peers {
            o.push_str(&line(u, p));
            o.push('\n');
        }
    }
}

fn labels(u: &Upstream, p: &Peer) -> String {
    format!(
        "upstream=\"{}\",server=\"{}\"",
        esc(&u.cfg.name),
        esc(&p.cfg.name)
    )
}

/// Label value escaping of the text format: backslash, double quote and newline.
fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['\\', '"', '\n']) {
        return s.into();
    }
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}
