//! The end-of-run report: a text summary or one JSON object.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::stats::{ErrorKind, Stats};

/// Percentiles reported, with their JSON keys and text labels.
const PERCENTILES: [(&str, &str, f64); 5] = [
    ("p50", "p50", 50.0),
    ("p90", "p90", 90.0),
    ("p99", "p99", 99.0),
    ("p999", "p99.9", 99.9),
    ("p9999", "p99.99", 99.99),
];

/// Merged figures plus how the run was shaped.
pub struct Report {
    pub stats: Stats,
    pub duration: Duration,
    pub connections: u32,
    pub threads: usize,
    pub rate: Option<f64>,
    pub driver: &'static str,
}

impl Report {
    fn seconds(&self) -> f64 {
        self.duration.as_secs_f64().max(1e-6)
    }

    pub fn rps(&self) -> f64 {
        self.stats.responses as f64 / self.seconds()
    }

    fn percentile_us(&self, p: f64) -> u64 {
        if self.stats.responses == 0 {
            0
        } else {
            self.stats.latency.value_at_percentile(p)
        }
    }

    fn max_us(&self) -> u64 {
        if self.stats.responses == 0 {
            0
        } else {
            self.stats.latency.max()
        }
    }

    /// Open loop: how late requests left after their due time (p50, p99, p99.9, max in us).
    fn late(&self) -> Option<(u64, u64, u64, u64)> {
        let late = &self.stats.late;
        if self.rate.is_none() || late.is_empty() {
            return None;
        }
        Some((
            late.value_at_percentile(50.0),
            late.value_at_percentile(99.0),
            late.value_at_percentile(99.9),
            late.max(),
        ))
    }

    fn by_server(&self) -> Vec<(String, u64)> {
        let mut servers: Vec<(String, u64)> = self
            .stats
            .by_server
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), *v))
            .collect();
        servers.sort();
        servers
    }

    /// Why the run counts as failed: no response at all was a success (2xx or 3xx), e.g.
    /// every connection refused or every answer a 503. None when at least one succeeded.
    pub fn failure(&self) -> Option<String> {
        if self.stats.successes() > 0 {
            return None;
        }
        let mut seen: Vec<String> = ErrorKind::ALL
            .iter()
            .filter(|k| self.stats.errors[**k as usize] > 0)
            .map(|k| format!("{} {} error(s)", self.stats.errors[*k as usize], k.name()))
            .collect();
        seen.extend(
            self.stats
                .statuses()
                .map(|(code, n)| format!("{n} response(s) {code}")),
        );
        Some(format!(
            "no successful (2xx or 3xx) response: {}",
            if seen.is_empty() {
                "no request finished".to_string()
            } else {
                seen.join(", ")
            }
        ))
    }

    pub fn to_json(&self) -> Value {
        let status: Map<String, Value> = self
            .stats
            .statuses()
            .map(|(code, n)| (code.to_string(), json!(n)))
            .collect();
        let errors: Map<String, Value> = ErrorKind::ALL
            .iter()
            .map(|k| (k.name().to_string(), json!(self.stats.errors[*k as usize])))
            .collect();
        let mut latency: Map<String, Value> = PERCENTILES
            .iter()
            .map(|(key, _, p)| (key.to_string(), json!(self.percentile_us(*p))))
            .collect();
        latency.insert("max".into(), json!(self.max_us()));
        latency.insert("mean".into(), json!(self.stats.latency.mean()));
        let late = self.late().map(
            |(p50, p99, p999, max)| json!({ "p50": p50, "p99": p99, "p999": p999, "max": max }),
        );
        let by_server: Map<String, Value> = self
            .by_server()
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect();
        json!({
            "requests": self.stats.responses,
            "duration_s": self.seconds(),
            "rps": self.rps(),
            "status": status,
            "errors": errors,
            "latency_us": latency,
            "bytes": self.stats.bytes,
            "bytes_per_s": self.stats.bytes as f64 / self.seconds(),
            "by_server": by_server,
            "connections": self.connections,
            "threads": self.threads,
            "mode": if self.rate.is_some() { "open" } else { "closed" },
            "rate": self.rate,
            "driver": self.driver,
            "send_late_us": late,
        })
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mode = match self.rate {
            Some(rate) => format!("open loop at {rate} req/s"),
            None => "closed loop".to_string(),
        };
        out.push_str(&format!(
            "ringload: {mode}, {} threads, {} connections, {}, {:.2}s\n",
            self.threads,
            self.connections,
            self.driver,
            self.seconds()
        ));
        out.push_str(&format!(
            "  requests   {:>12}   {:.1}/s\n",
            self.stats.responses,
            self.rps()
        ));
        out.push_str(&format!(
            "  bytes      {:>12}   {}/s\n",
            human_bytes(self.stats.bytes as f64),
            human_bytes(self.stats.bytes as f64 / self.seconds())
        ));
        let statuses: Vec<String> = self
            .stats
            .statuses()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        out.push_str(&format!("  status     {}\n", or_none(statuses)));
        let errors: Vec<String> = ErrorKind::ALL
            .iter()
            .filter(|k| self.stats.errors[**k as usize] > 0)
            .map(|k| format!("{}: {}", k.name(), self.stats.errors[*k as usize]))
            .collect();
        out.push_str(&format!("  errors     {}\n", or_none(errors)));
        let servers: Vec<String> = self
            .by_server()
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        if !servers.is_empty() {
            out.push_str(&format!("  by server  {}\n", servers.join("  ")));
        }
        let mut latency: Vec<String> = PERCENTILES
            .iter()
            .map(|(_, label, p)| format!("{label} {}", human_us(self.percentile_us(*p))))
            .collect();
        latency.push(format!("max {}", human_us(self.max_us())));
        out.push_str(&format!("  latency    {}\n", latency.join("  ")));
        if let Some((p50, p99, p999, max)) = self.late() {
            out.push_str(&format!(
                "  sent late  p50 {}  p99 {}  p99.9 {}  max {}   (after the due time)\n",
                human_us(p50),
                human_us(p99),
                human_us(p999),
                human_us(max)
            ));
        }
        out
    }
}

fn or_none(items: Vec<String>) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join("  ")
    }
}

fn human_us(us: u64) -> String {
    match us {
        0..=999 => format!("{us}us"),
        1_000..=999_999 => format!("{:.2}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut stats = Stats::new();
        for i in 1..=1000 {
            stats.record_response(200, i, 100, Some(b"127.0.0.1:8001"));
        }
        stats.record_error(ErrorKind::Connect, 0);
        Report {
            stats,
            duration: Duration::from_secs(2),
            connections: 4,
            threads: 2,
            rate: None,
            driver: "epoll",
        }
    }

    #[test]
    fn json_has_the_contract_keys() {
        let v = report().to_json();
        assert_eq!(v["requests"], 1000);
        assert_eq!(v["rps"], 500.0);
        assert_eq!(v["status"]["200"], 1000);
        assert_eq!(v["errors"]["connect"], 1);
        assert_eq!(v["errors"]["timeout"], 0);
        assert_eq!(v["by_server"]["127.0.0.1:8001"], 1000);
        for key in ["p50", "p90", "p99", "p999", "p9999", "max"] {
            assert!(v["latency_us"][key].as_u64().is_some(), "{key}");
        }
        assert_eq!(v["latency_us"]["p50"], 500);
        assert_eq!(v["latency_us"]["max"], 1000);
    }

    #[test]
    fn a_run_without_any_success_is_a_failure() {
        assert_eq!(report().failure(), None);
        let mut stats = Stats::new();
        stats.record_error(ErrorKind::Connect, 0);
        stats.record_response(503, 10, 100, None);
        stats.record_response(404, 10, 100, None);
        let failed = Report { stats, ..report() };
        assert_eq!(
            failed.failure().as_deref(),
            Some("no successful (2xx or 3xx) response: 1 connect error(s), 1 response(s) 404, 1 response(s) 503")
        );
        let mut redirects = Stats::new();
        redirects.record_response(302, 10, 100, None);
        assert_eq!(
            Report {
                stats: redirects,
                ..report()
            }
            .failure(),
            None
        );
    }

    #[test]
    fn text_lists_statuses_errors_and_percentiles() {
        let text = report().to_text();
        assert!(text.contains("200: 1000"));
        assert!(text.contains("connect: 1"));
        assert!(text.contains("p99.99"));
        assert!(text.contains("500.0/s"));
    }
}
