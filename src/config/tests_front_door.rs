//! Whole-file tests of the front-door keys: `runtime.temp_path`/`pid_file`, TLS, the PROXY
//! protocol and real client addresses per `[[server]]`, the three location handlers (proxy,
//! files, return) and their options, unix-socket servers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::tests::{assert_error, errors, lines, ok, proxy, BASE};
use super::*;

/// `BASE` with `kv` added to its `[[server]]` block.
fn server_with(kv: &str) -> String {
    BASE.replace(
        "listen = \"127.0.0.1:8080\"",
        &format!("listen = \"127.0.0.1:8080\"\n{kv}"),
    )
}

/// `BASE` with `kv` added to its location (a proxy location to `app`).
fn location_with(kv: &str) -> String {
    BASE.replace(
        "proxy_pass = \"app\"",
        &format!("proxy_pass = \"app\"\n  {kv}"),
    )
}

/// `BASE` plus a second location at `path` made of `body`.
fn plus_location(path: &str, body: &str) -> String {
    format!(
        "{}\n[[server.location]]\npath = {path:?}\n{body}\n",
        server_block()
    )
}

/// `BASE` with the upstream moved first, so a location appended at the end still belongs to
/// the `[[server]]` block.
fn server_block() -> String {
    let (server, upstream) = BASE.split_at(BASE.find("[upstream.app]").unwrap());
    format!("{upstream}{server}")
}

fn location(c: &Config, path: &str) -> Location {
    c.servers[0]
        .locations
        .iter()
        .find(|l| l.path == path)
        .cloned()
        .unwrap_or_else(|| panic!("no location {path}"))
}

/// A scratch directory with a self-signed certificate and its key (the TLS module's own
/// tests cover bad files).
struct TlsFiles {
    dir: PathBuf,
}

impl TlsFiles {
    fn new(tag: &str) -> TlsFiles {
        let dir = std::env::temp_dir().join(format!("ringlb-cfg-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["example.com".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        TlsFiles { dir }
    }
    fn cert(&self) -> String {
        self.dir.join("cert.pem").display().to_string()
    }
    fn key(&self) -> String {
        self.dir.join("key.pem").display().to_string()
    }
    fn keys(&self) -> String {
        format!(
            "tls_certificate = {:?}\ntls_certificate_key = {:?}",
            self.cert(),
            self.key()
        )
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn runtime_temp_path_and_pid_file() {
    let c = ok(BASE);
    assert_eq!(c.runtime.temp_path, std::env::temp_dir().join("ringlb"));
    assert_eq!(c.runtime.pid_file, None);
    let c = ok(&format!(
        "[runtime]\ntemp_path = \"/var/lib/ringlb/tmp\"\npid_file = \"run/ringlb.pid\"\n{BASE}"
    ));
    assert_eq!(c.runtime.temp_path, Path::new("/var/lib/ringlb/tmp"));
    assert_eq!(c.runtime.pid_file, Some(PathBuf::from("run/ringlb.pid")));
    assert_error(
        &format!("[runtime]\ntemp_path = \"\"\n{BASE}"),
        "runtime.temp_path",
        "\"\"",
        "is empty; give a path",
    );
    assert_error(
        &format!("[runtime]\npid_file = 1\n{BASE}"),
        "runtime.pid_file",
        "1\n",
        "expected a string",
    );
}

#[test]
fn tls_needs_certificate_and_key_together() {
    let f = TlsFiles::new("pair");
    let c = ok(&server_with(&f.keys()));
    let loaded = c.servers[0].tls.as_ref().and_then(|t| t.loaded.clone());
    assert!(loaded.is_some(), "the certificate was loaded by validation");
    assert_eq!(
        c.servers[0].tls,
        Some(TlsCfg {
            certificate: f.cert().into(),
            certificate_key: f.key().into(),
            protocols: TlsProtocols {
                tls12: true,
                tls13: true
            },
            loaded,
        })
    );
    assert!(ok(BASE).servers[0].tls.is_none());
    let text = server_with(&format!("tls_certificate = {:?}", f.cert()));
    assert_error(
        &text,
        "server[0].tls_certificate_key",
        &format!("{:?}", f.cert()),
        "tls_certificate needs tls_certificate_key",
    );
    let text = server_with(&format!("tls_certificate_key = {:?}", f.key()));
    assert_error(
        &text,
        "server[0].tls_certificate",
        &format!("{:?}", f.key()),
        "tls_certificate_key needs tls_certificate",
    );
    // The files must be readable (the TLS module checks what is in them).
    let text = server_with(&format!(
        "tls_certificate = \"/nonexistent/cert.pem\"\ntls_certificate_key = {:?}",
        f.key()
    ));
    assert_error(
        &text,
        "server[0].tls_certificate",
        "\"/nonexistent",
        "/nonexistent/cert.pem: cannot read: No such file",
    );
    let text = server_with(&format!(
        "tls_certificate = {:?}\ntls_certificate_key = {:?}",
        f.cert(),
        f.dir.display()
    ));
    assert_error(
        &text,
        "server[0].tls_certificate_key",
        &format!("{:?}", f.dir.display().to_string()),
        "is a directory",
    );
}

#[test]
fn tls_protocols_are_validated() {
    let f = TlsFiles::new("protocols");
    let with = |list: &str| server_with(&format!("{}\ntls_protocols = {list}", f.keys()));
    let c = ok(&with("[\"TLSv1.3\"]"));
    assert_eq!(
        c.servers[0].tls.as_ref().unwrap().protocols,
        TlsProtocols {
            tls12: false,
            tls13: true
        }
    );
    assert_error(
        &with("[\"TLSv1.2\", \"TLSv1.1\"]"),
        "server[0].tls_protocols[1]",
        "\"TLSv1.1\"",
        "TLSv1.1 is not offered (insecure",
    );
    assert_error(
        &with("[\"TLSv13\"]"),
        "server[0].tls_protocols[0]",
        "\"TLSv13\"",
        "unknown TLS protocol \"TLSv13\"; did you mean `TLSv1.3`?",
    );
    assert_error(&with("[]"), "server[0].tls_protocols", "[]", "is empty");
    assert_error(
        &server_with("tls_protocols = [\"TLSv1.3\"]"),
        "server[0].tls_protocols",
        "[\"TLSv1.3\"]",
        "applies only to a server block with tls_certificate",
    );
}

#[test]
fn blocks_on_one_address_agree_on_tls_and_proxy_protocol() {
    let f = TlsFiles::new("agree");
    let second = |kv: &str| {
        format!(
            "{}\n[[server]]\nlisten = \"127.0.0.1:8080\"\nserver_name = \"b.example\"\n{kv}\n",
            server_block()
        )
    };
    assert_error(
        &second(&f.keys()),
        "server[1].tls_certificate",
        &format!("{:?}", f.cert()),
        "this block has TLS but server[0] on 127.0.0.1:8080 differs",
    );
    assert_error(
        &second("proxy_protocol = true"),
        "server[1].proxy_protocol",
        "true",
        "server[0] on 127.0.0.1:8080 has proxy_protocol = false",
    );
    // Other addresses are free to differ.
    let text = second("proxy_protocol = true").replace(
        "listen = \"127.0.0.1:8080\"\nserver_name = \"b.example\"",
        "listen = \"127.0.0.1:8443\"\nserver_name = \"b.example\"",
    );
    let c = ok(&text);
    assert!(!c.servers[0].proxy_protocol && c.servers[1].proxy_protocol);
}

#[test]
fn server_block_front_door_defaults() {
    let s = ok(BASE).servers[0].clone();
    assert!(s.http2);
    assert!(!s.proxy_protocol);
    assert!(s.real_ip_from.is_empty());
    assert_eq!(
        s.real_ip_header,
        RealIpHeader::Header("x-forwarded-for".into())
    );
    assert!(!s.underscores_in_headers);
    assert_eq!(s.log_format, "combined");
    let s = ok(&server_with(
        "http2 = false\nproxy_protocol = true\nunderscores_in_headers = true\nlog_format = \"$remote_addr $status\"",
    ))
    .servers[0]
        .clone();
    assert!(!s.http2 && s.proxy_protocol && s.underscores_in_headers);
    assert_eq!(s.log_format, "$remote_addr $status");
    assert_error(
        &server_with("log_format = \" \""),
        "server[0].log_format",
        "\" \"",
        "is empty",
    );
    assert_error(
        &server_with("http2 = \"on\""),
        "server[0].http2",
        "\"on\"",
        "expected true or false",
    );
}

#[test]
fn real_ip_from_parses_addresses_and_ranges() {
    let s = ok(&server_with(
        "real_ip_from = [\"10.0.0.0/8\", \"192.168.1.7\", \"2001:db8::/32\", \"::1\", \"172.16.5.4/12\"]\nreal_ip_header = \"X-Real-IP\"",
    ))
    .servers[0]
        .clone();
    let nets: Vec<String> = s.real_ip_from.iter().map(ToString::to_string).collect();
    assert_eq!(
        nets,
        [
            "10.0.0.0/8",
            "192.168.1.7/32",
            "2001:db8::/32",
            "::1/128",
            "172.16.0.0/12"
        ]
    );
    assert!(s.real_ip_from[0].contains(&"10.200.3.4".parse::<std::net::IpAddr>().unwrap()));
    assert!(!s.real_ip_from[0].contains(&"11.0.0.1".parse::<std::net::IpAddr>().unwrap()));
    assert_eq!(s.real_ip_header, RealIpHeader::Header("x-real-ip".into()));
    // A single string is a list of one.
    let s = ok(&server_with("real_ip_from = \"10.0.0.0/8\"")).servers[0].clone();
    assert_eq!(s.real_ip_from.len(), 1);
    assert_error(
        &server_with("real_ip_from = [\"10.0.0.0/8\", \"10.0.0.0/33\"]"),
        "server[0].real_ip_from[1]",
        "\"10.0.0.0/33\"",
        "is not an address or address range",
    );
    assert_error(
        &server_with("real_ip_from = [\"localhost\"]"),
        "server[0].real_ip_from[0]",
        "\"localhost\"",
        "is not an address or address range",
    );
}

#[test]
fn real_ip_header_rules() {
    let c = ok(&server_with(
        "proxy_protocol = true\nreal_ip_from = [\"10.0.0.0/8\"]\nreal_ip_header = \"proxy_protocol\"",
    ));
    assert_eq!(c.servers[0].real_ip_header, RealIpHeader::ProxyProtocol);
    assert_error(
        &server_with("real_ip_from = [\"10.0.0.0/8\"]\nreal_ip_header = \"proxy_protocol\""),
        "server[0].real_ip_header",
        "\"proxy_protocol\"",
        "set proxy_protocol = true",
    );
    assert_error(
        &server_with("real_ip_header = \"X-Real-IP\""),
        "server[0].real_ip_header",
        "\"X-Real-IP\"",
        "has no effect without real_ip_from",
    );
    assert_error(
        &server_with("real_ip_from = [\"10.0.0.0/8\"]\nreal_ip_header = \"X Real IP\""),
        "server[0].real_ip_header",
        "\"X Real IP\"",
        "is not a header name",
    );
}

#[test]
fn proxy_location_defaults_and_options() {
    let c = ok(BASE);
    let l = location(&c, "/");
    assert_eq!(l.max_body_bytes, 0);
    assert_eq!(
        *proxy(&l),
        ProxyLoc {
            upstream: 0,
            set_headers: Vec::new(),
            request_buffering: true,
            buffering: true,
            buffers: 256 * 1024,
            max_temp_file_size: 1 << 30,
            read_timeout: None,
            upgrade: vec!["websocket".into()],
        }
    );
    let c = ok(&location_with(
        "proxy_request_buffering = false\n  proxy_buffering = false\n  proxy_buffers = \"1m\"\n  proxy_max_temp_file_size = 0\n  read_timeout = \"300s\"\n  upgrade = [\"WebSocket\", \"websocket\", \"TLS/1.0\"]\n  max_body_bytes = \"10m\"",
    ));
    let l = location(&c, "/");
    assert_eq!(l.max_body_bytes, 10 << 20);
    let p = proxy(&l);
    assert!(!p.request_buffering && !p.buffering);
    assert_eq!((p.buffers, p.max_temp_file_size), (1 << 20, 0));
    assert_eq!(p.read_timeout, Some(Duration::from_secs(300)));
    assert_eq!(p.upgrade, ["websocket", "tls/1.0"]);
    assert!(proxy(&location(&ok(&location_with("upgrade = []")), "/"))
        .upgrade
        .is_empty());
}

#[test]
fn proxy_location_rules() {
    assert_error(
        &location_with("upgrade = [\"websocket\", \"h2c\"]"),
        "server[0].location[0].upgrade[1]",
        "\"h2c\"",
        "\"h2c\" is never passed to servers",
    );
    assert_error(
        &location_with("upgrade = [\"web socket\"]"),
        "server[0].location[0].upgrade[0]",
        "\"web socket\"",
        "is not an Upgrade protocol name",
    );
    assert_error(
        &location_with("proxy_buffers = 0"),
        "server[0].location[0].proxy_buffers",
        "0\n",
        "must be more than 0",
    );
    assert_error(
        &location_with("proxy_max_temp_file_size = \"1gb\""),
        "server[0].location[0].proxy_max_temp_file_size",
        "\"1gb\"",
        "is not a size",
    );
    assert_error(
        &location_with("read_timeout = \"0s\""),
        "server[0].location[0].read_timeout",
        "\"0s\"",
        "longer than 0s",
    );
}

#[test]
fn max_body_bytes_per_location_overrides_the_server_block() {
    let text = server_with("max_body_bytes = \"1m\"").replace(
        "proxy_pass = \"app\"",
        "proxy_pass = \"app\"\n  [[server.location]]\n  path = \"/upload/\"\n  proxy_pass = \"app\"\n  max_body_bytes = \"100m\"\n  [[server.location]]\n  path = \"/tiny/\"\n  proxy_pass = \"app\"\n  max_body_bytes = 10",
    );
    let c = ok(&text);
    assert_eq!(c.servers[0].max_body_bytes, 1 << 20);
    assert_eq!(location(&c, "/").max_body_bytes, 1 << 20);
    assert_eq!(location(&c, "/upload/").max_body_bytes, 100 << 20);
    assert_eq!(location(&c, "/tiny/").max_body_bytes, 10);
}

#[test]
fn files_locations() {
    let c = ok(&plus_location(
        "/static/",
        "root = \"/srv/app\"\nexpires = \"7d\"",
    ));
    assert_eq!(
        location(&c, "/static/").handler,
        Handler::Files(FilesLoc {
            dir: FilesDir::Root("/srv/app".into()),
            index: vec!["index.html".into()],
            expires: Some(Duration::from_secs(7 * 86_400)),
        })
    );
    let c = ok(&plus_location(
        "/media/",
        "alias = \"/srv/app/media/\"\nindex = [\"index.htm\", \"default.html\"]\nmax_body_bytes = 5",
    ));
    let l = location(&c, "/media/");
    assert_eq!(l.max_body_bytes, 5);
    assert_eq!(
        l.handler,
        Handler::Files(FilesLoc {
            dir: FilesDir::Alias("/srv/app/media/".into()),
            index: vec!["index.htm".into(), "default.html".into()],
            expires: None,
        })
    );
    // An exact-file alias (neither ends with a slash) is fine.
    ok(&plus_location(
        "/favicon.ico",
        "alias = \"/srv/app/favicon.ico\"",
    ));
    assert_error(
        &plus_location("/static", "alias = \"/srv/app/static/\""),
        "server[0].location[1].alias",
        "\"/srv/app/static/\"",
        "must both end with \"/\" or neither",
    );
    assert_error(
        &plus_location("/static/", "alias = \"/srv/app/static\""),
        "server[0].location[1].alias",
        "\"/srv/app/static\"",
        "write path = \"/static/\" with alias = \"/srv/app/static/\"",
    );
    assert_error(
        &plus_location("/s/", "root = \"/srv\"\nindex = [\"a/b.html\"]"),
        "server[0].location[1].index[0]",
        "\"a/b.html\"",
        "is not a file name",
    );
    assert_error(
        &plus_location("/s/", "root = \"\""),
        "server[0].location[1].root",
        "\"\"",
        "is empty",
    );
    assert_error(
        &plus_location("/s/", "root = \"/srv\"\nexpires = \"7 days\""),
        "server[0].location[1].expires",
        "\"7 days\"",
        "is not a duration",
    );
}

#[test]
fn return_locations() {
    let c = ok(&plus_location(
        "/old/",
        "return = { status = 301, location = \"https://$host$request_uri\" }",
    ));
    let Handler::Return(r) = location(&c, "/old/").handler else {
        panic!("not a return")
    };
    assert_eq!(r.status, 301);
    assert_eq!(r.location.unwrap().to_string(), "https://$host$request_uri");
    assert_eq!(r.body, None);
    let c = ok(&plus_location(
        "/secret/",
        "return = { status = 403, body = \"forbidden\" }",
    ));
    assert_eq!(
        location(&c, "/secret/").handler,
        Handler::Return(ReturnLoc {
            status: 403,
            location: None,
            body: Some("forbidden".into())
        })
    );
    ok(&plus_location("/gone/", "return = { status = 410 }"));
    for (ret, key, needle, message) in [
        (
            "{ status = 302 }",
            "location",
            "302",
            "status 302 is a redirect and needs a location",
        ),
        (
            "{ status = 403, location = \"/x\" }",
            "location",
            "\"/x\"",
            "location goes with a redirect status",
        ),
        (
            "{ status = 308, location = \"/x\", body = \"b\" }",
            "body",
            "\"b\"",
            "takes a location, not a body",
        ),
        (
            "{ status = 204, body = \"b\" }",
            "body",
            "\"b\"",
            "a 204 response has no body",
        ),
        (
            "{ status = 600 }",
            "status",
            "600",
            "600 is not an HTTP status",
        ),
        ("{ body = \"x\" }", "status", "{ body", "missing `status`"),
        (
            "{ status = 301, location = \"https://$hots/\" }",
            "location",
            "\"https://$hots/\"",
            "unknown variable `$hots`",
        ),
        (
            "{ status = 301, url = \"/x\" }",
            "url",
            "url",
            "unknown key `url`; valid: status, location, body",
        ),
    ] {
        assert_error(
            &plus_location("/r/", &format!("return = {ret}")),
            &format!("server[0].location[1].return.{key}"),
            needle,
            message,
        );
    }
}

#[test]
fn a_location_has_exactly_one_handler() {
    assert_error(
        &location_with("root = \"/srv\""),
        "server[0].location[0].root",
        "\"/srv\"",
        "a location has one of proxy_pass, root, alias, return, and this one already has `proxy_pass`",
    );
    assert_error(
        &plus_location("/x/", "alias = \"/a/\"\nreturn = { status = 404 }"),
        "server[0].location[1].return",
        "{ status",
        "already has `alias`",
    );
    let errs = errors(&plus_location("/x/", "index = [\"a.html\"]"));
    let e = errs
        .iter()
        .find(|e| e.key == "server[0].location[1].proxy_pass")
        .unwrap_or_else(|| panic!("{}", lines(&errs)));
    assert!(
        e.message.contains("missing `proxy_pass`") && e.message.contains("root"),
        "{e}"
    );
}

#[test]
fn keys_of_another_handler_are_errors() {
    assert_error(
        &location_with("index = [\"a.html\"]"),
        "server[0].location[0].index",
        "[\"a.html\"]",
        "`index` applies only to locations with root or alias; this one has proxy_pass",
    );
    assert_error(
        &plus_location("/s/", "root = \"/srv\"\nproxy_buffering = false"),
        "server[0].location[1].proxy_buffering",
        "false",
        "`proxy_buffering` applies only to locations with proxy_pass; this one has root or alias",
    );
    assert_error(
        &plus_location(
            "/r/",
            "return = { status = 404 }\nupgrade = []\nexpires = \"1d\"",
        ),
        "server[0].location[1].upgrade",
        "[]",
        "applies only to locations with proxy_pass; this one has return",
    );
    assert_error(
        &plus_location("/r/", "return = { status = 404 }\nexpires = \"1d\""),
        "server[0].location[1].expires",
        "\"1d\"",
        "applies only to locations with root or alias; this one has return",
    );
}

#[test]
fn unix_socket_servers() {
    let text = BASE.replace(
        "servers = [{ addr = \"127.0.0.1:8001\" }]",
        "servers = [{ addr = \"unix:/run/gunicorn.sock\", weight = 2 }, { addr = \"127.0.0.1:8001\" }]",
    );
    let c = ok(&text);
    let s = &c.upstreams[0].servers;
    assert_eq!(s[0].addr, ServerAddr::Unix("/run/gunicorn.sock".into()));
    assert_eq!(s[0].name, "unix:/run/gunicorn.sock");
    assert_eq!(s[0].addr.to_string(), "unix:/run/gunicorn.sock");
    assert_eq!(s[0].addr.inet(), None);
    assert_eq!(s[0].weight, 2);
    let summary = super::summary(&c);
    assert!(
        summary.contains("  unix:/run/gunicorn.sock  weight 2"),
        "{summary}"
    );
    let with = |addrs: &str| BASE.replace("{ addr = \"127.0.0.1:8001\" }", addrs);
    assert_error(
        &with("{ addr = \"unix:\" }"),
        "upstream.app.servers[0].addr",
        "\"unix:\"",
        "has no path",
    );
    let long = format!("unix:/{}", "x".repeat(120));
    assert_error(
        &with(&format!("{{ addr = {long:?} }}")),
        "upstream.app.servers[0].addr",
        "\"unix:/x",
        "a unix socket path has at most 107",
    );
    assert_error(
        &with("{ addr = \"unix:/a.sock\" }, { addr = \"unix:/a.sock\" }"),
        "upstream.app.servers[1].addr",
        "\"unix:/a.sock\" }]",
        "is already upstream.app.servers[0]",
    );
}

#[test]
fn offline_parse_leaves_named_files_alone() {
    let dir = std::env::temp_dir().join(format!("ringlb-cfg-offline-{}", std::process::id()));
    let log = dir.join("access.log");
    let text = server_with(&format!(
        "access_log = {:?}\ntls_certificate = \"/nonexistent/c.pem\"\ntls_certificate_key = \"/nonexistent/k.pem\"",
        log.display().to_string()
    ));
    let c = super::parse_offline(&text, Path::new("t.toml")).unwrap();
    assert_eq!(c.servers[0].access_log, Some(log.clone()));
    assert!(c.servers[0].tls.is_some());
    assert!(!dir.exists(), "parse_offline created {}", dir.display());
    // The full parse checks both.
    let errs = errors(&text);
    assert!(
        errs.iter().any(|e| e.key == "server[0].access_log"),
        "{}",
        lines(&errs)
    );
    assert!(
        errs.iter().any(|e| e.key == "server[0].tls_certificate"),
        "{}",
        lines(&errs)
    );
}
