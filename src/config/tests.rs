//! Whole-file tests of `parse`: every rule fires at the right line:col with the right key
//! path, every error of a file is reported at once, defaults, the bundled file.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::*;

const FILE: &str = "t.toml";

/// A valid file to build on: one server, one upstream.
pub(super) const BASE: &str = r#"
[[server]]
listen = "127.0.0.1:8080"
  [[server.location]]
  path = "/"
  proxy_pass = "app"

[upstream.app]
servers = [{ addr = "127.0.0.1:8001" }]
"#;

pub(super) fn ok(text: &str) -> Config {
    match parse(text, Path::new(FILE)) {
        Ok(c) => c,
        Err(errs) => panic!("unexpected errors:\n{}", lines(&errs)),
    }
}

pub(super) fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text, Path::new(FILE)) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(e) => e,
    }
}

pub(super) fn lines(errs: &[ConfigError]) -> String {
    errs.iter().map(|e| e.to_string() + "\n").collect()
}

/// 1-based line and column of the last occurrence of `needle` (what a test adds is
/// usually after `BASE`).
fn pos(text: &str, needle: &str) -> (usize, usize) {
    let at = text
        .rfind(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    super::error::line_col(text, at)
}

/// `text` has an error for `key`, placed at `needle`, whose message contains `message`.
#[track_caller]
pub(super) fn assert_error(text: &str, key: &str, needle: &str, message: &str) {
    let errs = errors(text);
    let e = errs
        .iter()
        .find(|e| e.key == key)
        .unwrap_or_else(|| panic!("no error for {key}; got:\n{}", lines(&errs)));
    assert_eq!((e.line, e.col), pos(text, needle), "position of {e}");
    assert!(
        e.message.contains(message),
        "{e}\nshould contain: {message}"
    );
    assert_eq!(e.file, FILE);
}

/// The proxy handler of a location that must have one.
#[track_caller]
pub(super) fn proxy(l: &Location) -> &ProxyLoc {
    match &l.handler {
        Handler::Proxy(p) => p,
        other => panic!("{} is not a proxy location: {other:?}", l.path),
    }
}

fn with_upstream(extra: &str) -> String {
    format!("{BASE}{extra}\n")
}

#[test]
fn spec_example_error_format() {
    let text = r#"
[[server]]
listen = "127.0.0.1:8080"
  [[server.location]]
  path = "/"
  proxy_pass = "django"

[upstream.django]
servers = [
  { addr = "127.0.0.1:8001" },
  { addr = "127.0.0.1:80x" },
]
"#;
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{}", lines(&errs));
    assert_eq!(
        errs[0].to_string(),
        format!(
            "t.toml:11:12: upstream.django.servers[1].addr: \"127.0.0.1:80x\" is not host:port {}",
            "(e.g. \"127.0.0.1:8001\", \"[::1]:8001\", \"backend:8001\")"
        )
    );
}

#[test]
fn syntax_error_has_line_and_column() {
    let text = "[runtime]\nworkers = \n";
    let errs = errors(text);
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].line, errs[0].col), (2, 11), "{}", errs[0]);
    assert!(errs[0].key.is_empty());
    assert!(
        errs[0]
            .to_string()
            .starts_with("t.toml:2:11: TOML syntax error"),
        "{}",
        errs[0]
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let text = r#"
[runtime]
wokers = 4
io = "kqueue"

[[server]]
listen = ["127.0.0.1:8080", "127.0.0.1:8080"]
keepalive_timeout = -75
  [[server.location]]
  path = "api"
  proxy_pass = "nope"

[upstream.app]
balance = "fastest"
servers = [{ addr = "127.0.0.1:8001", wieght = 2 }, { addr = "127.0.0.1:8002", weight = 0 }]
"#;
    let errs = errors(text);
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "runtime.wokers",
            "runtime.io",
            "server[0].listen[1]",
            "server[0].keepalive_timeout",
            "server[0].location[0].path",
            "server[0].location[0].proxy_pass",
            "upstream.app.balance",
            "upstream.app.servers[0].wieght",
            "upstream.app.servers[1].weight",
        ],
        "{}",
        lines(&errs)
    );
    // Sorted by position.
    let positions: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.col)).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted);
}

#[test]
fn unknown_keys_name_the_key_and_the_valid_ones() {
    let text = with_upstream("[upstream.b]\nservers = [{ addr = \"127.0.0.1:8001\", wieght = 3 }]");
    assert_error(
        &text,
        "upstream.b.servers[0].wieght",
        "wieght",
        "unknown key `wieght`; did you mean `weight`?",
    );
    assert_error(
        &text,
        "upstream.b.servers[0].wieght",
        "wieght",
        "addr, weight, max_fails",
    );
    assert_error("[runtim]\n", "runtim", "runtim", "did you mean `runtime`?");
    assert_error(
        &format!("{BASE}\n[admin]\nlisten = \"127.0.0.1:9900\"\nport = 1\n"),
        "admin.port",
        "port",
        "valid: listen",
    );
    let text = format!("{BASE}\n[upstream.app.health_check]\nintervall = \"2s\"\n");
    assert_error(
        &text,
        "upstream.app.health_check.intervall",
        "intervall",
        "did you mean `interval`?",
    );
    let text = BASE.replace(
        "proxy_pass = \"app\"",
        "proxy_pass = \"app\"\n  proxy_set_headers = {}",
    );
    assert_error(
        &text,
        "server[0].location[0].proxy_set_headers",
        "proxy_set_headers",
        "did you mean `proxy_set_header`?",
    );
    let text = BASE.replace("listen =", "servername = \"x\"\nlisten =");
    assert_error(
        &text,
        "server[0].servername",
        "servername",
        "did you mean `server_name`?",
    );
    let text = with_upstream("[upstream.c]\nservers = [{ addr = \"127.0.0.1:8001\" }]\nretry_budget = { ratio = 0.5, max = 3 }");
    assert_error(
        &text,
        "upstream.c.retry_budget.max",
        "max =",
        "valid: ratio, min",
    );
    let text = with_upstream(
        "[upstream.c]\nservers = [{ addr = \"127.0.0.1:8001\" }]\nip_hash_prefix = { v5 = 3 }",
    );
    assert_error(&text, "upstream.c.ip_hash_prefix.v5", "v5", "valid: v4, v6");
}

#[test]
fn wrong_types_are_errors() {
    assert_error(
        &format!("{BASE}[runtime]\npin_workers = \"yes\"\n"),
        "runtime.pin_workers",
        "\"yes\"",
        "expected true or false, found a string",
    );
    let text = BASE.replace(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:8080\"\nkeepalive_requests = \"many\"",
    );
    assert_error(
        &text,
        "server[0].keepalive_requests",
        "\"many\"",
        "expected an integer, found a string",
    );
    let text = BASE.replace("listen = \"127.0.0.1:8080\"", "listen = 8080");
    assert_error(
        &text,
        "server[0].listen",
        "8080",
        "expected a string or an array of strings, found an integer",
    );
    let text = BASE.replace(
        "listen = \"127.0.0.1:8080\"",
        "listen = [\"127.0.0.1:8080\", 8081]",
    );
    assert_error(
        &text,
        "server[0].listen[1]",
        "8081",
        "expected a string, found an integer",
    );
    let text = with_upstream("[upstream.b]\nservers = [\"127.0.0.1:8001\"]");
    assert_error(
        &text,
        "upstream.b.servers[0]",
        "\"127.0.0.1:8001\"]",
        "expected a table",
    );
    let text = with_upstream(
        "[upstream.b]\nservers = [{ addr = \"127.0.0.1:8001\" }]\nconnect_timeout = 2.5",
    );
    assert_error(
        &text,
        "upstream.b.connect_timeout",
        "2.5",
        "expected a duration such as \"2s\", \"500ms\", \"1m30s\" or a number of seconds, found a float",
    );
    assert_error(
        "server = 3\n",
        "server",
        "3",
        "expected an array of tables, found an integer",
    );
    assert_error(
        "upstream = 3\n",
        "upstream",
        "3",
        "expected a table, found an integer",
    );
}

#[test]
fn addresses_must_be_host_port_and_resolve() {
    for bad in [
        "127.0.0.1",
        "127.0.0.1:",
        ":80",
        "127.0.0.1:99999",
        "a b:80",
        "::1:80",
        "http://x:80",
    ] {
        let text = BASE.replace("127.0.0.1:8001", bad);
        assert_error(
            &text,
            "upstream.app.servers[0].addr",
            &format!("\"{bad}"),
            "is not host:port",
        );
    }
    let text = BASE.replace("127.0.0.1:8001", "no-such-host.invalid:80");
    assert_error(
        &text,
        "upstream.app.servers[0].addr",
        "\"no-such-host",
        "cannot resolve host \"no-such-host.invalid\"",
    );
    let text = BASE.replace("127.0.0.1:8001", "127.0.0.1:0");
    assert_error(
        &text,
        "upstream.app.servers[0].addr",
        "\"127.0.0.1:0",
        "port 0",
    );
    let text = BASE.replace("\"127.0.0.1:8080\"", "\"nowhere:8080\"");
    assert_error(&text, "server[0].listen", "\"nowhere", "cannot resolve");
    // IPv6 and names that resolve.
    let c = ok(&BASE.replace("127.0.0.1:8001", "[::1]:8001"));
    assert_eq!(
        c.upstreams[0].servers[0].addr,
        ServerAddr::Inet("[::1]:8001".parse::<SocketAddr>().unwrap())
    );
    let c = ok(&BASE.replace("127.0.0.1:8001", "localhost:8001"));
    assert_eq!(c.upstreams[0].servers[0].name, "localhost:8001");
    let addr = c.upstreams[0].servers[0].addr.inet().unwrap();
    assert!(addr.ip().is_loopback());
    assert_eq!(addr.port(), 8001);
}

#[test]
fn proxy_pass_must_name_an_upstream() {
    let text = BASE.replace("proxy_pass = \"app\"", "proxy_pass = \"ap\"");
    assert_error(
        &text,
        "server[0].location[0].proxy_pass",
        "\"ap\"",
        "no upstream named \"ap\"; did you mean `app`?",
    );
    let text = BASE.replace("proxy_pass = \"app\"", "proxy_pass = \"http://app\"");
    assert_error(
        &text,
        "server[0].location[0].proxy_pass",
        "\"http://app\"",
        "not a URL; write proxy_pass = \"app\"",
    );
    let text = BASE.replace("  proxy_pass = \"app\"\n", "");
    assert_error(
        &text,
        "server[0].location[0].proxy_pass",
        "[[server.location]]",
        "missing `proxy_pass`",
    );
}

#[test]
fn listen_rules() {
    let text = BASE.replace(
        "listen = \"127.0.0.1:8080\"",
        "listen = [\"127.0.0.1:8080\", \"127.0.0.1:8081\", \"127.0.0.1:8080\"]",
    );
    let needle_at = text.rfind("\"127.0.0.1:8080\"").unwrap();
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{}", lines(&errs));
    assert_eq!(errs[0].key, "server[0].listen[2]");
    assert_eq!(
        (errs[0].line, errs[0].col),
        super::error::line_col(&text, needle_at)
    );
    assert!(errs[0].message.contains("listed twice"), "{}", errs[0]);

    let text = BASE.replace("listen = \"127.0.0.1:8080\"\n", "");
    assert_error(&text, "server[0].listen", "[[server]]", "missing `listen`");
    let text = BASE.replace("listen = \"127.0.0.1:8080\"", "listen = []");
    assert_error(&text, "server[0].listen", "[]", "is empty");
    assert_error(
        "[runtime]\nworkers = 2\n",
        "server",
        "[runtime]",
        "no [[server]] block",
    );
}

#[test]
fn virtual_hosts_share_an_address_but_not_a_name() {
    let two = |a: &str, b: &str| {
        format!(
            "{BASE}\n[[server]]\nlisten = \"127.0.0.1:8080\"\nserver_name = {b}\n\n[[server]]\nlisten = [\"127.0.0.1:8080\"]\nserver_name = {a}\n"
        )
    };
    let c = ok(&two("\"b.example.com\"", "\"a.example.com\""));
    assert_eq!(c.servers.len(), 3);
    let text = two("[\"x.com\", \"A.example.com\"]", "[\"a.example.com\"]");
    assert_error(
        &text,
        "server[2].server_name[1]",
        "\"A.example.com\"",
        "\"a.example.com\" on 127.0.0.1:8080 is already served by server[1]",
    );
    // Same name, different addresses: fine.
    let text = two("\"a.example.com\"", "\"a.example.com\"").replacen(
        "listen = [\"127.0.0.1:8080\"]",
        "listen = [\"127.0.0.1:8081\"]",
        1,
    );
    ok(&text);
    // Twice in one block.
    let text = BASE.replace(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:8080\"\nserver_name = [\"a.com\", \"A.com\"]",
    );
    assert_error(
        &text,
        "server[0].server_name[1]",
        "\"A.com\"",
        "listed twice",
    );
}

#[test]
fn server_names_are_lower_cased_and_wildcards_kept_as_suffix() {
    let text = BASE.replace(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:8080\"\nserver_name = [\"Example.COM\", \"*.Example.com\"]",
    );
    let c = ok(&text);
    assert_eq!(
        c.servers[0].server_names,
        vec![
            ServerName::Exact("example.com".into()),
            ServerName::Wildcard(".example.com".into())
        ]
    );
    let text = BASE.replace(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:8080\"\nserver_name = \"www.*.com\"",
    );
    assert_error(
        &text,
        "server[0].server_name",
        "\"www.*.com\"",
        "only a leading `*.` wildcard",
    );
    let c = ok(&BASE.replace(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:8080\"\nserver_name = \"one.com\"",
    ));
    assert_eq!(
        c.servers[0].server_names,
        vec![ServerName::Exact("one.com".into())]
    );
}

#[test]
fn location_rules() {
    let text = BASE.replace("path = \"/\"", "path = \"api/\"");
    assert_error(
        &text,
        "server[0].location[0].path",
        "\"api/\"",
        "must start with \"/\"",
    );
    let text = format!("{BASE}\n[[server.location]]\npath = \"/\"\nproxy_pass = \"app\"\n");
    let second = text.rfind("\"/\"").unwrap();
    let errs = errors(&text);
    assert_eq!(errs[0].key, "server[0].location[1].path");
    assert_eq!(
        (errs[0].line, errs[0].col),
        super::error::line_col(&text, second)
    );
    assert!(
        errs[0]
            .message
            .contains("already the path of server[0].location[0]"),
        "{}",
        errs[0]
    );
}

#[test]
fn locations_sorted_longest_first_and_upstreams_by_name() {
    let text = r#"
[[server]]
listen = "127.0.0.1:8080"
  [[server.location]]
  path = "/"
  proxy_pass = "zeta"
  [[server.location]]
  path = "/api/v1/"
  proxy_pass = "alpha"
  [[server.location]]
  path = "/api/"
  proxy_pass = "mid"

[upstream.zeta]
servers = [{ addr = "127.0.0.1:8001" }]
[upstream.alpha]
servers = [{ addr = "127.0.0.1:8002" }]
[upstream.mid]
servers = [{ addr = "127.0.0.1:8003" }]
"#;
    let c = ok(text);
    let names: Vec<&str> = c.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
    let routes: Vec<(&str, &str)> = c.servers[0]
        .locations
        .iter()
        .map(|l| {
            (
                l.path.as_str(),
                c.upstreams[proxy(l).upstream].name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        [("/api/v1/", "alpha"), ("/api/", "mid"), ("/", "zeta")]
    );
}

#[test]
fn proxy_set_header_templates() {
    let text = BASE.replace(
        "proxy_pass = \"app\"",
        "proxy_pass = \"app\"\n  proxy_set_header = { \"Host\" = \"$host\", \"X-Forwarded-For\" = \"$proxy_add_x_forwarded_for\", \"X-UA\" = \"${http_user_agent}!\", \"Accept-Encoding\" = \"\" }",
    );
    let c = ok(&text);
    let h = &proxy(&c.servers[0].locations[0]).set_headers;
    assert_eq!(h.len(), 4);
    assert_eq!(h[0].name, "Host");
    assert_eq!(h[0].name_lower, "host");
    assert_eq!(
        h[0].value,
        Some(Template {
            parts: vec![TemplatePart::Var(Var::Host)]
        })
    );
    assert_eq!(h[1].name_lower, "x-forwarded-for");
    assert_eq!(
        h[2].value.as_ref().unwrap().parts,
        vec![
            TemplatePart::Var(Var::Http("user-agent".into())),
            TemplatePart::Literal("!".into())
        ]
    );
    assert_eq!(h[3].value, None);

    let text = BASE.replace(
        "proxy_pass = \"app\"",
        "proxy_pass = \"app\"\n  proxy_set_header = { \"X-Real-IP\" = \"$remote_adr\" }",
    );
    assert_error(
        &text,
        "server[0].location[0].proxy_set_header.X-Real-IP",
        "\"$remote_adr\"",
        "unknown variable `$remote_adr`; did you mean `$remote_addr`?",
    );
    let text = BASE.replace(
        "proxy_pass = \"app\"",
        "proxy_pass = \"app\"\n  proxy_set_header = { \"Bad Name\" = \"x\" }",
    );
    assert_error(
        &text,
        "server[0].location[0].proxy_set_header.\"Bad Name\"",
        "\"Bad Name\"",
        "not a valid header name",
    );
    let text = BASE.replace(
        "proxy_pass = \"app\"",
        "proxy_pass = \"app\"\n  proxy_set_header = { \"host\" = \"a\", \"Host\" = \"b\" }",
    );
    assert_error(
        &text,
        "server[0].location[0].proxy_set_header.Host",
        "\"Host\"",
        "set twice",
    );
}

#[test]
fn runtime_rules() {
    assert_error(
        &format!("{BASE}[runtime]\nworkers = 0\n"),
        "runtime.workers",
        "0\n",
        "must be at least 1",
    );
    assert_error(
        &format!("[runtime]\nworkers = \"all\"\n{BASE}"),
        "runtime.workers",
        "\"all\"",
        "use \"auto\" or a number",
    );
    assert_error(
        &format!("[runtime]\nio = \"uring\"\n{BASE}"),
        "runtime.io",
        "\"uring\"",
        "valid: auto, io_uring, epoll",
    );
    assert_error(
        &format!("[runtime]\nshutdown_timeout = \"10 secs\"\n{BASE}"),
        "runtime.shutdown_timeout",
        "\"10 secs\"",
        "is not a duration",
    );
    assert_error(
        &format!("[runtime]\nmax_connections = 0\n{BASE}"),
        "runtime.max_connections",
        "0\n",
        "must be at least 1",
    );
    let c = ok(&format!("[runtime]\nworkers = 3\npin_workers = false\nio = \"epoll\"\nshutdown_timeout = \"1m30s\"\nmax_connections = 100\n{BASE}"));
    assert_eq!(
        c.runtime,
        RuntimeCfg {
            workers: 3,
            pin_workers: false,
            shutdown_timeout: Duration::from_secs(90),
            io: IoMode::Epoll,
            max_connections: 100,
            temp_path: std::env::temp_dir().join("ringlb"),
            pid_file: None,
        }
    );
    assert_eq!(
        ok(&format!("[runtime]\nio = \"io_uring\"\n{BASE}"))
            .runtime
            .io,
        IoMode::IoUring
    );
}

#[test]
fn admin_rules() {
    let c = ok(&format!("{BASE}[admin]\nlisten = \"127.0.0.1:9900\"\n"));
    assert_eq!(
        c.admin,
        Some(AdminCfg {
            listen: "127.0.0.1:9900".parse().unwrap()
        })
    );
    assert_error(
        &format!("{BASE}[admin]\nlisten = \"127.0.0.1:8080\"\n"),
        "admin.listen",
        "\"127.0.0.1:8080\"\n",
        "also a [[server]] listen address",
    );
    assert_error(
        &format!("{BASE}[admin]\n"),
        "admin.listen",
        "[admin]",
        "missing `listen`",
    );
}

#[test]
fn balance_and_hash_rules() {
    let up = |body: &str| {
        format!("{BASE}[upstream.h]\nservers = [{{ addr = \"127.0.0.1:8009\" }}]\n{body}\n")
    };
    assert_error(&up("balance = \"fastest\""), "upstream.h.balance", "\"fastest\"", "unknown balance method \"fastest\"; valid: round_robin, least_conn, ip_hash, hash, random_two_least_conn, least_time");
    assert_error(
        &up("balance = \"least_con\""),
        "upstream.h.balance",
        "\"least_con\"",
        "did you mean `least_conn`?",
    );
    assert_error(
        &up("balance = \"hash\""),
        "upstream.h.balance",
        "\"hash\"",
        "needs a `hash` key",
    );
    assert_error(
        &up("balance = \"least_conn\"\nhash = \"$uri\""),
        "upstream.h.hash",
        "\"$uri\"",
        "`hash` only applies to balance = \"hash\"",
    );
    assert_error(
        &up("hash = \"$uri\""),
        "upstream.h.hash",
        "\"$uri\"",
        "only applies to balance = \"hash\"",
    );
    assert_error(
        &up("consistent = true"),
        "upstream.h.consistent",
        "true",
        "`consistent` only applies to balance = \"hash\"",
    );
    assert_error(
        &up("balance = \"hash\"\nhash = \"$nope\""),
        "upstream.h.hash",
        "\"$nope\"",
        "unknown variable",
    );
    assert_error(
        &up("balance = \"hash\"\nhash = \"fixed\""),
        "upstream.h.hash",
        "\"fixed\"",
        "no $variable",
    );
    let c = ok(&up("balance = \"hash\"\nhash = \"$request_uri\"\nconsistent = true\nhash_balance_factor = 1.25"));
    let u = &c.upstreams[1];
    assert_eq!(
        (u.balance, u.consistent, u.hash_balance_factor),
        (Balance::Hash, true, Some(1.25))
    );
    assert_eq!(
        u.hash.as_ref().unwrap().parts,
        vec![TemplatePart::Var(Var::RequestUri)]
    );
    for (name, b) in [
        ("least_conn", Balance::LeastConn),
        ("ip_hash", Balance::IpHash),
        ("random_two_least_conn", Balance::RandomTwoLeastConn),
        ("least_time", Balance::LeastTime),
    ] {
        assert_eq!(
            ok(&up(&format!("balance = \"{name}\""))).upstreams[1].balance,
            b
        );
    }
}

#[test]
fn beyond_nginx_ranges() {
    let up = |body: &str| {
        format!("{BASE}[upstream.h]\nservers = [{{ addr = \"127.0.0.1:8009\" }}]\n{body}\n")
    };
    assert_error(
        &up("hash_balance_factor = 1.0"),
        "upstream.h.hash_balance_factor",
        "1.0",
        "must be greater than 1",
    );
    assert_error(
        &up("hash_balance_factor = 0.5"),
        "upstream.h.hash_balance_factor",
        "0.5",
        "must be greater than 1",
    );
    assert_error(
        &up("panic_threshold = 101"),
        "upstream.h.panic_threshold",
        "101",
        "between 0 and 100",
    );
    assert_error(
        &up("retry_budget = { ratio = 0.0 }"),
        "upstream.h.retry_budget.ratio",
        "0.0",
        "more than 0 and at most 1",
    );
    assert_error(
        &up("retry_budget = { ratio = 1.5, min = 3 }"),
        "upstream.h.retry_budget.ratio",
        "1.5",
        "more than 0 and at most 1",
    );
    assert_error(
        &up("ip_hash_prefix = { v4 = 33 }"),
        "upstream.h.ip_hash_prefix.v4",
        "33",
        "between 1 and 32",
    );
    assert_error(
        &up("ip_hash_prefix = { v4 = 24, v6 = 129 }"),
        "upstream.h.ip_hash_prefix.v6",
        "129",
        "between 1 and 128",
    );
    assert_error(
        &up("queue = 10\nqueue_timeout = \"0s\""),
        "upstream.h.queue_timeout",
        "\"0s\"",
        "longer than 0s",
    );
    assert_error(&up("queue = -1"), "upstream.h.queue", "-1", "out of range");
    let c = ok(&up("panic_threshold = 50\nretry_budget = { ratio = 0.2, min = 3 }\nip_hash_prefix = { v4 = 16, v6 = 64 }\nqueue = 100\nqueue_timeout = \"2s\""));
    let u = &c.upstreams[1];
    assert_eq!(u.panic_threshold, Some(50));
    assert_eq!(u.retry_budget, Some(RetryBudget { ratio: 0.2, min: 3 }));
    assert_eq!(u.ip_hash_prefix, IpHashPrefix { v4: 16, v6: 64 });
    assert_eq!((u.queue, u.queue_timeout), (100, Duration::from_secs(2)));
    // Integers are accepted where a float is expected.
    assert_eq!(
        ok(&up("hash_balance_factor = 2")).upstreams[1].hash_balance_factor,
        Some(2.0)
    );
}

#[test]
fn next_upstream_rules() {
    let up = |body: &str| {
        format!("{BASE}[upstream.h]\nservers = [{{ addr = \"127.0.0.1:8009\" }}]\n{body}\n")
    };
    assert_error(
        &up("next_upstream = [\"error\", \"http_404\"]"),
        "upstream.h.next_upstream[1]",
        "\"http_404\"",
        "unknown next_upstream condition \"http_404\"",
    );
    assert_error(
        &up("next_upstream = [\"off\", \"error\"]"),
        "upstream.h.next_upstream[1]",
        "\"error\"]",
        "can not be combined",
    );
    let c = ok(&up("next_upstream = [\"error\", \"http_502\", \"http_429\", \"non_idempotent\"]\nnext_upstream_tries = 3\nnext_upstream_timeout = \"10s\""));
    let u = &c.upstreams[1];
    assert!(
        u.next_upstream.error
            && u.next_upstream.http_502
            && u.next_upstream.http_429
            && u.next_upstream.non_idempotent
    );
    assert!(!u.next_upstream.timeout && !u.next_upstream.http_500);
    assert!(u.next_upstream.retries_status(502) && !u.next_upstream.retries_status(500));
    assert_eq!(
        (u.next_upstream_tries, u.next_upstream_timeout),
        (3, Duration::from_secs(10))
    );
    assert_eq!(
        ok(&up("next_upstream = [\"off\"]")).upstreams[1].next_upstream,
        NextUpstream::default()
    );
}

#[test]
fn upstream_server_rules() {
    let up = |servers: &str| format!("{BASE}[upstream.h]\nservers = [{servers}]\n");
    assert_error(
        &up("{ addr = \"127.0.0.1:8009\", weight = 0 }"),
        "upstream.h.servers[0].weight",
        "0 }",
        "between 1 and 1000",
    );
    assert_error(
        &up("{ addr = \"127.0.0.1:8009\", max_fails = -1 }"),
        "upstream.h.servers[0].max_fails",
        "-1",
        "out of range",
    );
    assert_error(
        &up("{ addr = \"127.0.0.1:8009\", fail_timeout = \"10\u{00a0}s\" }"),
        "upstream.h.servers[0].fail_timeout",
        "\"10",
        "is not a duration",
    );
    assert_error(
        &up("{ weight = 2 }"),
        "upstream.h.servers[0].addr",
        "{ weight",
        "missing `addr`",
    );
    assert_error(
        &up("{ addr = \"127.0.0.1:8009\" }, { addr = \"127.0.0.1:8009\", backup = true }"),
        "upstream.h.servers[1].addr",
        "\"127.0.0.1:8009\", backup",
        "is already upstream.h.servers[0]",
    );
    assert_error(
        &up(""),
        "upstream.h.servers",
        "[]",
        "is empty; an upstream needs at least one server",
    );
    assert_error(
        &format!("{BASE}[upstream.h]\nkeepalive = 8\n"),
        "upstream.h.servers",
        "[upstream.h]",
        "missing `servers`",
    );
    assert_error(
        &up("{ addr = \"127.0.0.1:8009\", backup = true }"),
        "upstream.h.servers",
        "[{ addr",
        "every server is a backup",
    );

    let c = ok(&up(
        "{ addr = \"127.0.0.1:8011\", backup = true }, { addr = \"127.0.0.1:8012\", weight = 3, max_fails = 3, fail_timeout = \"30s\", max_conns = 100, slow_start = \"30s\" }, { addr = \"127.0.0.1:8013\", down = true }",
    ));
    let s = &c.upstreams[1].servers;
    let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["127.0.0.1:8012", "127.0.0.1:8013", "127.0.0.1:8011"],
        "primaries first, then backups"
    );
    assert_eq!((s[0].weight, s[0].max_fails, s[0].max_conns), (3, 3, 100));
    assert_eq!(
        (s[0].fail_timeout, s[0].slow_start),
        (Duration::from_secs(30), Duration::from_secs(30))
    );
    assert!(s[1].down && !s[1].backup);
    assert!(s[2].backup);
}

#[test]
fn servers_may_be_an_array_of_tables() {
    let text = format!("{BASE}[upstream.h]\n[[upstream.h.servers]]\naddr = \"127.0.0.1:8009\"\n[[upstream.h.servers]]\naddr = \"127.0.0.1:8010\"\nweigth = 2\n");
    assert_error(
        &text,
        "upstream.h.servers[1].weigth",
        "weigth",
        "did you mean `weight`?",
    );
}

#[test]
fn health_check_rules() {
    let hc = |body: &str| format!("{BASE}[upstream.app.health_check]\n{body}\n");
    assert_error(
        &hc("status = \"200-99\""),
        "upstream.app.health_check.status",
        "\"200-99\"",
        "is not a status",
    );
    assert_error(
        &hc("status = \"399-200\""),
        "upstream.app.health_check.status",
        "\"399-200\"",
        "empty range",
    );
    assert_error(
        &hc("status = \"2xx\""),
        "upstream.app.health_check.status",
        "\"2xx\"",
        "is not a status",
    );
    assert_error(
        &hc("path = \"health\""),
        "upstream.app.health_check.path",
        "\"health\"",
        "must start with \"/\"",
    );
    assert_error(
        &hc("fails = 0"),
        "upstream.app.health_check.fails",
        "0",
        "must be at least 1",
    );
    assert_error(
        &hc("interval = \"0s\""),
        "upstream.app.health_check.interval",
        "\"0s\"",
        "longer than 0s",
    );
    let h = ok(&hc("")).upstreams[0].health_check.clone().unwrap();
    assert_eq!(
        h,
        HealthCheckCfg {
            path: "/health".into(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            fails: 2,
            passes: 2,
            status: (200, 399),
        }
    );
    assert_eq!(
        ok(&hc("status = \"200\"")).upstreams[0]
            .health_check
            .as_ref()
            .unwrap()
            .status,
        (200, 200)
    );
    assert_eq!(
        ok(&hc("status = 204")).upstreams[0]
            .health_check
            .as_ref()
            .unwrap()
            .status,
        (204, 204)
    );
}

#[test]
fn server_block_values() {
    // The file is opened (created) by validation: a scratch path.
    let log = std::env::temp_dir().join(format!("ringlb-values-{}.log", std::process::id()));
    let text = BASE.replace(
        "listen = \"127.0.0.1:8080\"",
        &format!("listen = \"127.0.0.1:8080\"\nclient_header_timeout = \"10s\"\nclient_body_timeout = \"500ms\"\nkeepalive_timeout = \"0s\"\nkeepalive_requests = 10000\nmax_header_bytes = \"32k\"\nmax_body_bytes = \"10m\"\naccess_log = {:?}", log.display().to_string()),
    );
    let s = ok(&text).servers[0].clone();
    let _ = std::fs::remove_file(&log);
    assert_eq!(s.client_header_timeout, Duration::from_secs(10));
    assert_eq!(s.client_body_timeout, Duration::from_millis(500));
    assert_eq!(s.keepalive_timeout, Duration::ZERO);
    assert_eq!(s.keepalive_requests, 10000);
    assert_eq!(s.max_header_bytes, 32 * 1024);
    assert_eq!(s.max_body_bytes, 10 << 20);
    assert_eq!(s.access_log, Some(log.clone()));
    let bad = |kv: &str| {
        BASE.replace(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"127.0.0.1:8080\"\n{kv}"),
        )
    };
    assert_error(
        &bad("max_body_bytes = \"10mb\""),
        "server[0].max_body_bytes",
        "\"10mb\"",
        "is not a size",
    );
    assert_error(
        &bad("max_body_bytes = -1"),
        "server[0].max_body_bytes",
        "-1",
        "negative",
    );
    assert_error(
        &bad("max_header_bytes = 100"),
        "server[0].max_header_bytes",
        "100",
        "too small",
    );
    assert_error(
        &bad("client_header_timeout = \"0s\""),
        "server[0].client_header_timeout",
        "\"0s\"",
        "longer than 0s",
    );
    assert_error(
        &bad("keepalive_requests = 0"),
        "server[0].keepalive_requests",
        "0\n",
        "at least 1",
    );
    assert_eq!(
        ok(&bad("max_body_bytes = \"0\"")).servers[0].max_body_bytes,
        0
    );
    assert_eq!(ok(&bad("access_log = \"off\"")).servers[0].access_log, None);
}

#[test]
fn defaults_follow_nginx() {
    let c = ok(BASE);
    assert_eq!(c.path, Path::new(FILE));
    let available = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        c.runtime,
        RuntimeCfg {
            workers: available,
            pin_workers: true,
            shutdown_timeout: Duration::from_secs(10),
            io: IoMode::Auto,
            max_connections: 65536,
            temp_path: std::env::temp_dir().join("ringlb"),
            pid_file: None,
        }
    );
    assert_eq!(c.admin, None);
    let s = &c.servers[0];
    assert_eq!(
        s.listen,
        vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
    );
    assert!(s.server_names.is_empty());
    assert_eq!(s.client_header_timeout, Duration::from_secs(60));
    assert_eq!(s.client_body_timeout, Duration::from_secs(60));
    assert_eq!(s.keepalive_timeout, Duration::from_secs(75));
    assert_eq!(s.keepalive_requests, 1000);
    assert_eq!(s.max_header_bytes, 16384);
    assert_eq!(s.max_body_bytes, 0);
    assert_eq!(s.access_log, None);
    assert!(proxy(&s.locations[0]).set_headers.is_empty());
    let u = &c.upstreams[0];
    let expected = UpstreamCfg {
        name: "app".into(),
        balance: Balance::RoundRobin,
        hash: None,
        consistent: false,
        keepalive: 32,
        keepalive_requests: 1000,
        keepalive_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(60),
        send_timeout: Duration::from_secs(60),
        read_timeout: Duration::from_secs(60),
        next_upstream: NextUpstream {
            error: true,
            timeout: true,
            ..NextUpstream::default()
        },
        next_upstream_tries: 0,
        next_upstream_timeout: Duration::ZERO,
        servers: vec![ServerCfg {
            addr: ServerAddr::Inet("127.0.0.1:8001".parse().unwrap()),
            name: "127.0.0.1:8001".into(),
            weight: 1,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            max_conns: 0,
            backup: false,
            down: false,
            slow_start: Duration::ZERO,
        }],
        health_check: None,
        hash_balance_factor: None,
        ip_hash_prefix: IpHashPrefix { v4: 24, v6: 128 },
        panic_threshold: None,
        retry_budget: None,
        queue: 0,
        queue_timeout: Duration::from_secs(5),
    };
    assert_eq!(*u, expected);
    // retry_budget = {} takes both defaults.
    let c = ok(&BASE.replace("servers = [", "retry_budget = {}\nservers = ["));
    assert_eq!(
        c.upstreams[0].retry_budget,
        Some(RetryBudget { ratio: 0.2, min: 3 })
    );
}

#[test]
fn an_unused_upstream_is_fine() {
    ok(&format!(
        "{BASE}[upstream.spare]\nservers = [{{ addr = \"127.0.0.1:8100\" }}]\n"
    ));
}

#[test]
fn dotted_and_inline_forms_are_accepted() {
    let text = r#"
runtime.workers = 2
server = [{ listen = "127.0.0.1:8080", location = [{ path = "/", proxy_pass = "app" }] }]
upstream.app.servers = [{ addr = "127.0.0.1:8001" }]
upstream.app.ip_hash_prefix.v4 = 16
"#;
    let c = ok(text);
    assert_eq!(c.runtime.workers, 2);
    assert_eq!(c.upstreams[0].ip_hash_prefix.v4, 16);
    let text = "server = [{ listen = \"127.0.0.1:8080\", locaton = [] }]\n";
    assert_error(
        text,
        "server[0].locaton",
        "locaton",
        "did you mean `location`?",
    );
}

#[test]
fn bundled_config_loads() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/ringlb.toml"));
    let c = load(path).unwrap_or_else(|e| panic!("{}", lines(&e)));
    assert_eq!(c.admin.unwrap().listen, "127.0.0.1:9900".parse().unwrap());
    assert_eq!(c.servers.len(), 1);
    assert_eq!(c.servers[0].listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    let l = &c.servers[0].locations[0];
    assert_eq!(
        (
            l.path.as_str(),
            c.upstreams[proxy(l).upstream].name.as_str()
        ),
        ("/", "django")
    );
    let headers: Vec<&str> = proxy(l)
        .set_headers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(headers, ["Host", "X-Real-IP", "X-Forwarded-For"]);
    let u = &c.upstreams[0];
    assert_eq!(u.keepalive, 64);
    assert_eq!(u.connect_timeout, Duration::from_secs(2));
    assert_eq!(u.servers.len(), 3);
    assert_eq!(u.health_check.as_ref().unwrap().path, "/health");
}
