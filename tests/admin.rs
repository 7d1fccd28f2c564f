//! The admin endpoint and the access log through the real binary: `/metrics` parses as
//! Prometheus text and counts what was sent, `/status` has the documented shape (README, "Admin endpoint"), the access log
//! has one well-formed line per request and SIGUSR1 reopens it.

#[allow(unused_imports)]
mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::client::Conn;
use common::{free_port, get, Backend, Proxy};
use prometheus_parse::{Scrape, Value};

struct Setup {
    a: Backend,
    b: Backend,
    _d: Backend,
    proxy: Proxy,
    addr: SocketAddr,
    admin: SocketAddr,
    /// Addresses nothing listens on.
    dead: [SocketAddr; 3],
}

fn closed_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// Upstream `app`: a, b, a `down = true` server and backup d. Upstream `dead`: two servers
/// nothing listens on, at `/dead`. `access_log`: a path, or none.
fn setup(access_log: Option<&Path>) -> Setup {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let d = Backend::start("d");
    let dead = [closed_addr(), closed_addr(), closed_addr()];
    let port = free_port();
    let admin_port = free_port();
    let log = access_log.map_or(String::new(), |p| {
        format!("access_log = \"{}\"", p.display())
    });
    let cfg = format!(
        r#"[runtime]
workers = 2
shutdown_timeout = "5s"

[admin]
listen = "127.0.0.1:{admin_port}"

[[server]]
listen = ["127.0.0.1:{port}"]
{log}

  [[server.location]]
  path = "/"
  proxy_pass = "app"

  [[server.location]]
  path = "/dead"
  proxy_pass = "dead"

[upstream.app]
servers = [
  {{ addr = "{a}", weight = 2 }},
  {{ addr = "{b}" }},
  {{ addr = "{c}", down = true }},
  {{ addr = "{d}", backup = true }},
]

[upstream.dead]
balance = "least_conn"
connect_timeout = "1s"
servers = [ {{ addr = "{x}" }}, {{ addr = "{y}" }} ]
"#,
        a = a.addr,
        b = b.addr,
        c = dead[0],
        d = d.addr,
        x = dead[1],
        y = dead[2],
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let proxy = Proxy::start(&cfg, addr);
    Setup {
        a,
        b,
        _d: d,
        proxy,
        addr,
        admin: format!("127.0.0.1:{admin_port}").parse().unwrap(),
        dead,
    }
}

fn scrape(admin: SocketAddr) -> (String, Scrape) {
    let r = get(admin, "/metrics").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    (text, parsed)
}

/// The text format's grammar, which the parser above is lenient about: every family has
/// HELP and TYPE before its samples, every sample line is `name{labels} value`.
fn check_grammar(text: &str) {
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut helped = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(helped.iter().any(|h| h == name), "TYPE before HELP: {line}");
            typed.insert(name.to_string(), kind.to_string());
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').unwrap();
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("ringlb_"), "{line}");
        if series.contains('{') {
            assert!(series.ends_with('}'), "{line}");
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family), "sample before its TYPE: {line}");
    }
}

fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            _ => f64::NAN,
        })
}

fn sum(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_the_requests_sent() {
    let s = setup(None);
    // New connections spread over both workers; each counts in its own shard.
    for _ in 0..30 {
        assert_eq!(get(s.addr, "/").unwrap().status, 200);
    }
    let mut keep = Conn::open(s.addr).unwrap();
    for _ in 0..10 {
        keep.send(b"GET /status?code=404 HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(keep.read_response(false).unwrap().status, 404);
    }
    for _ in 0..3 {
        assert_eq!(get(s.addr, "/dead").unwrap().status, 502);
    }
    let (text, m) = scrape(s.admin);
    check_grammar(&text);
    for family in [
        "ringlb_requests_total",
        "ringlb_upstream_active_connections",
        "ringlb_upstream_up",
        "ringlb_upstream_response_seconds",
        "ringlb_retries_total",
        "ringlb_client_connections",
        "ringlb_config_reloads_total",
        "ringlb_config_generation",
    ] {
        assert!(m.docs.contains_key(family), "no HELP for {family}");
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "no TYPE for {family}"
        );
    }
    let a = s.a.addr.to_string();
    let b = s.b.addr.to_string();
    let per = |srv: &str, code: &str| {
        value(
            &m,
            "ringlb_requests_total",
            &[("upstream", "app"), ("server", srv), ("code", code)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(per(&a, "200") + per(&b, "200"), 30.0);
    assert_eq!(per(&a, "404") + per(&b, "404"), 10.0);
    assert_eq!(per(&a, "200") + per(&a, "404"), s.a.requests() as f64);
    assert_eq!(per(&b, "200") + per(&b, "404"), s.b.requests() as f64);
    // ringlb's own answers: the 502s of the dead upstream.
    assert_eq!(
        value(
            &m,
            "ringlb_requests_total",
            &[("upstream", ""), ("server", ""), ("code", "502")]
        ),
        Some(3.0)
    );
    let up = |u: &str, srv: &str| {
        value(
            &m,
            "ringlb_upstream_up",
            &[("upstream", u), ("server", srv)],
        )
    };
    assert_eq!(up("app", &a), Some(1.0));
    assert_eq!(up("app", &s.dead[0].to_string()), Some(0.0), "down = true");
    assert_eq!(
        up("dead", &s.dead[1].to_string()),
        Some(0.0),
        "passively failed"
    );
    assert!(
        sum(
            &m,
            "ringlb_upstream_failures_total",
            &[("upstream", "dead")]
        ) >= 2.0
    );
    assert!(value(&m, "ringlb_retries_total", &[("upstream", "dead")]).unwrap() >= 1.0);
    assert_eq!(
        value(&m, "ringlb_retries_total", &[("upstream", "app")]),
        Some(0.0)
    );
    assert_eq!(
        value(&m, "ringlb_upstream_active_connections", &[("server", &a)]),
        Some(0.0)
    );
    // One keepalive connection is open and idle.
    assert_eq!(
        value(&m, "ringlb_client_connections", &[("state", "idle")]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "ringlb_config_reloads_total", &[("result", "ok")]),
        Some(0.0)
    );
    assert_eq!(value(&m, "ringlb_config_generation", &[]), Some(1.0));

    // The histogram: cumulative buckets ending in +Inf, which equals _count.
    for srv in [&a, &b] {
        let h = m
            .samples
            .iter()
            .find(|x| {
                x.metric == "ringlb_upstream_response_seconds"
                    && x.labels.get("server") == Some(srv.as_str())
            })
            .expect("histogram for the server");
        let Value::Histogram(buckets) = &h.value else {
            panic!("not a histogram")
        };
        assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
        let inf = buckets.last().unwrap();
        assert!(inf.less_than.is_infinite());
        let served = per(srv, "200") + per(srv, "404");
        assert_eq!(inf.count, served);
        let count_line = format!(
            "ringlb_upstream_response_seconds_count{{upstream=\"app\",server=\"{srv}\"}} {served}"
        );
        assert!(text.contains(&count_line), "no {count_line}");
    }
}

#[test]
fn status_json_has_the_shape_of_the_spec() {
    let s = setup(None);
    for _ in 0..6 {
        assert_eq!(get(s.addr, "/").unwrap().status, 200);
    }
    assert_eq!(get(s.addr, "/dead").unwrap().status, 502);
    let r = get(s.admin, "/status").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["generation"], 1);
    assert_eq!(v["workers"], 2);
    assert!(["io_uring", "epoll"].contains(&v["io"].as_str().unwrap()));
    let ups = v["upstreams"].as_object().unwrap();
    assert_eq!(ups.len(), 2);
    let app = &ups["app"];
    assert_eq!(app["balance"], "round_robin");
    assert_eq!(ups["dead"]["balance"], "least_conn");
    let servers = app["servers"].as_array().unwrap();
    let states: Vec<&str> = servers
        .iter()
        .map(|x| x["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["up", "up", "disabled", "backup"]);
    for srv in servers {
        for key in ["addr", "weight", "state", "active", "requests", "fails"] {
            assert!(srv.get(key).is_some(), "server without {key}: {srv}");
        }
        assert!(srv["active"].is_u64() && srv["requests"].is_u64() && srv["fails"].is_u64());
    }
    assert_eq!(servers[0]["addr"], s.a.addr.to_string());
    assert_eq!(servers[0]["weight"], 2);
    let requests: u64 = servers
        .iter()
        .map(|x| x["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(requests, 6);
    assert_eq!(
        servers[0]["requests"].as_u64().unwrap(),
        s.a.requests(),
        "requests = responses relayed from that server"
    );
    for srv in ups["dead"]["servers"].as_array().unwrap() {
        assert_eq!(srv["state"], "down", "{srv}");
        assert_eq!(srv["fails"], 1, "{srv}");
    }
    // Other paths: 404; the page is HTML.
    assert_eq!(get(s.admin, "/nope").unwrap().status, 404);
    let page = get(s.admin, "/").unwrap();
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().contains("fetch(\"status\""));
}

/// Waits until `path` has `n` lines; returns them.
fn lines(path: &Path, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let l: Vec<String> = text.lines().map(String::from).collect();
        if l.len() >= n || start.elapsed() > Duration::from_secs(30) {
            return l;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Splits a combined line with upstream fields into its fields (quoted ones unquoted).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let (field, next) = match rest.as_bytes()[0] {
            b'"' => {
                let end = rest[1..].find('"').unwrap() + 1;
                (&rest[1..end], &rest[end + 1..])
            }
            b'[' => {
                let end = rest.find(']').unwrap();
                (&rest[1..end], &rest[end + 1..])
            }
            _ => {
                let end = rest.find(' ').unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        out.push(field.to_string());
        rest = next;
    }
    out
}

#[test]
fn access_log_has_one_line_per_request_and_sigusr1_reopens_it() {
    let dir = common::proxy::temp_dir();
    let log = dir.join("access.log");
    let mut s = setup(Some(&log));
    let mut c = Conn::open(s.addr).unwrap();
    for i in 0..4 {
        c.send(
            format!(
                "GET /x?i={i} HTTP/1.1\r\nHost: t\r\nUser-Agent: tester \"q\"/1\r\nReferer: http://r/{i}\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.read_response(false).unwrap().status, 200);
    }
    // A streamed request body (over 64 KiB): the head is gone from the buffer by the time
    // the line is written.
    let body = vec![b'z'; 100_000];
    c.send(
        format!(
            "POST /sum HTTP/1.1\r\nHost: t\r\nUser-Agent: big\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    c.send(&body).unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(get(s.addr, "/dead").unwrap().status, 502);

    let got = lines(&log, 6);
    assert_eq!(got.len(), 6, "{got:#?}");
    // Workers write their own buffers: lines of one connection keep their order, lines of
    // different connections need not.
    let find = |needle: &str| -> Vec<String> {
        got.iter().filter(|l| l.contains(needle)).cloned().collect()
    };
    let keepalive = find("\"GET /x?i=");
    assert_eq!(keepalive.len(), 4, "{got:#?}");
    for (i, line) in keepalive.iter().enumerate() {
        let f = fields(line);
        assert_eq!(f.len(), 13, "{line}");
        assert_eq!(f[0], "127.0.0.1");
        assert_eq!((f[1].as_str(), f[2].as_str()), ("-", "-"));
        assert_eq!(f[3].len(), 26, "time_local: {line}");
        assert_eq!(f[4], format!("GET /x?i={i} HTTP/1.1"));
        assert_eq!(f[5], "200");
        assert_eq!(f[6], "1", "body bytes (the backend's name): {line}");
        assert_eq!(f[7], format!("http://r/{i}"));
        assert_eq!(f[8], "tester \\x22q\\x22/1");
        assert!(f[9] == s.a.addr.to_string() || f[9] == s.b.addr.to_string());
        assert_eq!(f[10], "200");
        for t in [&f[11], &f[12]] {
            let (sec, ms) = t.split_once('.').unwrap();
            assert!(sec.parse::<u64>().is_ok() && ms.len() == 3, "{line}");
        }
    }
    let post = fields(&find("POST /sum")[0]);
    assert_eq!(post[4], "POST /sum HTTP/1.1");
    assert_eq!(post[6], r.body.len().to_string());
    assert_eq!(post[8], "big");
    let dead = fields(&find("GET /dead")[0]);
    assert_eq!(
        (dead[4].as_str(), dead[5].as_str()),
        ("GET /dead HTTP/1.1", "502")
    );
    assert_eq!(dead[10], "-", "no upstream status: {dead:?}");
    assert_eq!(dead[12], "-");

    // logrotate: rename, then SIGUSR1; lines written before the signal may still go to the
    // renamed file, lines after it go to a new file under the old name.
    let rotated = dir.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    s.proxy.signal(libc::SIGUSR1);
    assert!(s
        .proxy
        .wait_log("access logs reopened", Duration::from_secs(30)));
    for _ in 0..3 {
        assert_eq!(get(s.addr, "/after").unwrap().status, 200);
    }
    let new = lines(&log, 3);
    assert_eq!(new.len(), 3, "{new:#?}");
    assert!(new.iter().all(|l| l.contains("\"GET /after HTTP/1.1\"")));
    assert_eq!(lines(&rotated, 6).len(), 6);

    // Lines still in a worker's buffer are written at stop.
    for _ in 0..2 {
        assert_eq!(get(s.addr, "/last").unwrap().status, 200);
    }
    s.proxy.signal(libc::SIGTERM);
    assert_eq!(s.proxy.wait_exit(Duration::from_secs(10)), Some(0));
    let all = lines(&log, 5);
    assert_eq!(all.len(), 5, "{all:#?}");
    assert_eq!(all.iter().filter(|l| l.contains("/last")).count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
