//! `ringlb import-nginx` through the real binary, on nginx configurations as people write
//! them: each is imported, the output passes `ringlb check`, and the values that matter are
//! asserted on the loaded configuration; what is not carried over is listed on stderr with
//! its file and line.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ringlb::config::{
    self, Balance, Config, FilesDir, Handler, Location, ProxyLoc, RealIpHeader, ServerAddr,
    TemplatePart, UpstreamCfg, VirtualServer,
};

/// A directory of nginx files for one test; `{dir}` in a file's text is replaced by the
/// directory, so that certificates and logs live inside it.
struct Site {
    dir: PathBuf,
}

/// What one import gave.
struct Import {
    code: Option<i32>,
    toml: String,
    stderr: String,
    /// Where the TOML was written.
    out: PathBuf,
}

impl Site {
    fn new() -> Site {
        Site {
            dir: common::proxy::temp_dir(),
        }
    }

    fn file(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            text.replace("{dir}", &self.dir.display().to_string()),
        )
        .unwrap();
        path
    }

    /// Certificate and key files `ringlb check` accepts: each holds the same self-signed
    /// certificate and its key (a certificate file's key section and a key file's
    /// certificate section are ignored).
    fn certificates(&self, names: &[&str]) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["example.com".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        for n in names {
            self.file(n, &pem);
        }
    }

    fn import(&self, rel: &str) -> Import {
        let out = Command::new(env!("CARGO_BIN_EXE_ringlb"))
            .arg("import-nginx")
            .arg(self.dir.join(rel))
            .output()
            .unwrap();
        let toml = String::from_utf8_lossy(&out.stdout).into_owned();
        let path = self.dir.join("imported.toml");
        std::fs::write(&path, &toml).unwrap();
        Import {
            code: out.status.code(),
            toml,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            out: path,
        }
    }
}

impl Import {
    /// Exit 0, `ringlb check` accepts the output, and the loaded configuration.
    #[track_caller]
    fn checked(&self) -> Config {
        assert_eq!(self.code, Some(0), "import failed:\n{}", self.stderr);
        let check = Command::new(env!("CARGO_BIN_EXE_ringlb"))
            .args(["check", "-c"])
            .arg(&self.out)
            .output()
            .unwrap();
        assert_eq!(
            check.status.code(),
            Some(0),
            "ringlb check refused the import:\n{}\n--- imported:\n{}",
            String::from_utf8_lossy(&check.stderr),
            self.toml
        );
        config::load(&self.out).unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// stderr has a line for `file:line` (file named by its tail) that contains `text`.
    #[track_caller]
    fn noted(&self, file: &str, line: usize, text: &str) {
        let at = format!("{file}:{line}: ");
        assert!(
            self.stderr
                .lines()
                .any(|l| l.contains(&at) && l.contains(text)),
            "no note {at}...{text}\n{}",
            self.stderr
        );
    }

    #[track_caller]
    fn not_noted(&self, text: &str) {
        assert!(
            !self.stderr.contains(text),
            "unexpected note {text}\n{}",
            self.stderr
        );
    }
}

/// The line of `needle` in the file `rel` of `site`.
fn line_of(site: &Site, rel: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(site.dir.join(rel)).unwrap();
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {rel}"))
        + 1
}

fn loc<'c>(s: &'c VirtualServer, path: &str) -> &'c Location {
    s.locations
        .iter()
        .find(|l| l.path == path)
        .unwrap_or_else(|| panic!("no location {path}: {:?}", s.locations))
}

fn proxy<'c>(s: &'c VirtualServer, path: &str) -> &'c ProxyLoc {
    match &loc(s, path).handler {
        Handler::Proxy(p) => p,
        h => panic!("{path} is not a proxy location: {h:?}"),
    }
}

fn upstream<'c>(c: &'c Config, name: &str) -> &'c UpstreamCfg {
    c.upstreams
        .iter()
        .find(|u| u.name == name)
        .unwrap_or_else(|| panic!("no upstream {name}"))
}

fn upstream_of<'c>(c: &'c Config, p: &ProxyLoc) -> &'c UpstreamCfg {
    &c.upstreams[p.upstream]
}

fn addrs(u: &UpstreamCfg) -> Vec<String> {
    u.servers.iter().map(|s| s.addr.to_string()).collect()
}

fn headers(p: &ProxyLoc) -> Vec<(String, String)> {
    p.set_headers
        .iter()
        .map(|h| {
            (
                h.name.clone(),
                h.value.as_ref().map_or(String::new(), ToString::to_string),
            )
        })
        .collect()
}

fn listen(s: &VirtualServer) -> Vec<String> {
    s.listen.iter().map(ToString::to_string).collect()
}

fn names(s: &VirtualServer) -> Vec<String> {
    s.server_names
        .iter()
        .map(|n| match n {
            config::ServerName::Exact(n) => n.clone(),
            config::ServerName::Wildcard(suffix) => format!("*{suffix}"),
        })
        .collect()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The deployment this project exists for: nginx in front of three Gunicorn instances
/// (two on TCP, one on a unix socket), /static/ and /media/ from disk, HTTP -> HTTPS.
#[test]
fn django_gunicorn_deployment() {
    let site = Site::new();
    site.certificates(&["tls/example.com.pem", "tls/example.com.key"]);
    site.file(
        "nginx.conf",
        r#"user www-data;
worker_processes auto;
pid {dir}/nginx.pid;

events {
    worker_connections 768;
}

http {
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    include mime.types;
    default_type application/octet-stream;

    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;

    access_log {dir}/access.log;
    error_log /var/log/nginx/error.log;

    gzip on;

    include {dir}/sites-enabled/*;
}
"#,
    );
    site.file(
        "sites-enabled/django.conf",
        r#"upstream app_server {
    # Three Gunicorn instances; fail_timeout=0 always retries a server.
    server 127.0.0.1:8001 fail_timeout=0;
    server 127.0.0.1:8002 fail_timeout=0;
    server unix:/run/gunicorn/app.sock fail_timeout=0;
    keepalive 16;
}

server {
    listen 80 default_server;
    listen [::]:80 default_server;
    server_name example.com www.example.com;
    return 301 https://$server_name$request_uri;
}

server {
    listen 443 ssl http2;
    listen [::]:443 ssl http2;
    server_name example.com www.example.com;

    ssl_certificate {dir}/tls/example.com.pem;
    ssl_certificate_key {dir}/tls/example.com.key;
    ssl_session_cache shared:le_nginx_SSL:10m;

    client_max_body_size 100M;
    keepalive_timeout 5;

    location = /favicon.ico { access_log off; log_not_found off; }

    location /static/ {
        alias /srv/app/collected_static/;
        expires 30d;
    }

    location /media/ {
        root /srv/app;
    }

    location / {
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_redirect off;
        proxy_pass http://app_server;
    }
}
"#,
    );
    let import = site.import("nginx.conf");
    let c = import.checked();
    assert_eq!(c.runtime.max_connections, 768);
    assert_eq!(c.runtime.pid_file, Some(site.dir.join("nginx.pid")));
    assert_eq!(c.servers.len(), 2);

    let http = &c.servers[0];
    assert_eq!(listen(http), ["0.0.0.0:80", "[::]:80"]);
    assert_eq!(names(http), ["example.com", "www.example.com"]);
    assert!(http.tls.is_none());
    let Handler::Return(r) = &loc(http, "/").handler else {
        panic!("the port 80 block does not redirect")
    };
    assert_eq!(r.status, 301);
    assert_eq!(
        r.location.as_ref().unwrap().to_string(),
        "https://example.com$request_uri"
    );

    let https = &c.servers[1];
    assert_eq!(listen(https), ["0.0.0.0:443", "[::]:443"]);
    let tls = https.tls.as_ref().expect("TLS on 443");
    assert_eq!(tls.certificate, site.dir.join("tls/example.com.pem"));
    assert_eq!(tls.certificate_key, site.dir.join("tls/example.com.key"));
    assert!(tls.protocols.tls12 && tls.protocols.tls13);
    assert!(https.http2);
    assert_eq!(https.max_body_bytes, 100 << 20);
    assert_eq!(https.keepalive_timeout, secs(5));
    assert_eq!(https.access_log, Some(site.dir.join("access.log")));
    assert_eq!(
        loc(https, "/static/").handler,
        Handler::Files(config::FilesLoc {
            dir: FilesDir::Alias("/srv/app/collected_static/".into()),
            index: vec!["index.html".into()],
            expires: Some(secs(30 * 86_400)),
        })
    );
    let Handler::Files(media) = &loc(https, "/media/").handler else {
        panic!("media")
    };
    assert_eq!(media.dir, FilesDir::Root("/srv/app".into()));
    let app = proxy(https, "/");
    assert_eq!(
        headers(app),
        [
            ("Host".into(), "$host".into()),
            ("X-Real-IP".into(), "$remote_addr".into()),
            (
                "X-Forwarded-For".into(),
                "$proxy_add_x_forwarded_for".into()
            ),
            ("X-Forwarded-Proto".into(), "$scheme".into()),
        ]
    );
    let u = upstream_of(&c, app);
    assert_eq!(u.name, "app_server");
    assert_eq!(u.keepalive, 16);
    assert_eq!(
        addrs(u),
        [
            "127.0.0.1:8001",
            "127.0.0.1:8002",
            "unix:/run/gunicorn/app.sock"
        ]
    );
    assert_eq!(
        u.servers[2].addr,
        ServerAddr::Unix("/run/gunicorn/app.sock".into())
    );
    assert!(u.servers.iter().all(|s| s.fail_timeout.is_zero()));

    let conf = "sites-enabled/django.conf";
    import.noted(
        conf,
        line_of(&site, conf, "favicon"),
        "exact-match location (=) is not carried",
    );
    import.noted(
        "nginx.conf",
        line_of(&site, "nginx.conf", "gzip on"),
        "does not compress",
    );
    import.noted(
        "nginx.conf",
        line_of(&site, "nginx.conf", "mime.types"),
        "file not found",
    );
    import.noted(
        conf,
        line_of(&site, conf, "ssl_session_cache"),
        "not needed",
    );
    import.not_noted("proxy_redirect");
    import.not_noted("app_server");
}

#[test]
fn least_conn_with_server_parameters() {
    let site = Site::new();
    site.file(
        "nginx.conf",
        r#"events {}
http {
    upstream backend {
        least_conn;
        zone backend 64k;
        server 127.0.0.1:9001 weight=5 max_fails=2 fail_timeout=30s max_conns=100;
        server 127.0.0.1:9002 slow_start=30s;
        server 127.0.0.1:9003 backup;
        server 127.0.0.1:9004 down;
        server 127.0.0.1:9005 resolve;
    }
    server {
        listen 127.0.0.1:8080;
        location / { proxy_pass http://backend; }
    }
}
"#,
    );
    let import = site.import("nginx.conf");
    let c = import.checked();
    let u = upstream(&c, "backend");
    assert_eq!(u.balance, Balance::LeastConn);
    // Primaries first, then the backup.
    assert_eq!(
        addrs(u),
        [
            "127.0.0.1:9001",
            "127.0.0.1:9002",
            "127.0.0.1:9004",
            "127.0.0.1:9005",
            "127.0.0.1:9003"
        ]
    );
    let a = &u.servers[0];
    assert_eq!((a.weight, a.max_fails, a.max_conns), (5, 2, 100));
    assert_eq!(a.fail_timeout, secs(30));
    assert_eq!(u.servers[1].slow_start, secs(30));
    assert!(u.servers[2].down && u.servers[4].backup);
    import.noted(
        "nginx.conf",
        5,
        "not needed: ringlb's workers share each server's state",
    );
    import.noted("nginx.conf", 10, "the parameter resolve is not carried");
}

#[test]
fn ip_hash_and_hash_methods() {
    let site = Site::new();
    site.file(
        "nginx.conf",
        r#"http {
    upstream sticky { ip_hash; server 127.0.0.1:9001; server 127.0.0.1:9002; }
    upstream cache { hash $request_uri consistent; server 127.0.0.1:9011; server 127.0.0.1:9012 weight=2; }
    upstream by_client { hash $remote_addr; server 127.0.0.1:9021; server 127.0.0.1:9022; }
    upstream by_unknown { hash $request_id; server 127.0.0.1:9031; }
    server {
        listen 127.0.0.1:8080;
        location /s/ { proxy_pass http://sticky; }
        location /c/ { proxy_pass http://cache; }
        location /b/ { proxy_pass http://by_client; }
        location /u/ { proxy_pass http://by_unknown; }
    }
}
"#,
    );
    let import = site.import("nginx.conf");
    let c = import.checked();
    assert_eq!(upstream(&c, "sticky").balance, Balance::IpHash);
    let cache = upstream(&c, "cache");
    assert_eq!((cache.balance, cache.consistent), (Balance::Hash, true));
    assert_eq!(
        cache.hash.as_ref().unwrap().parts,
        [TemplatePart::Var(config::Var::RequestUri)]
    );
    assert_eq!(cache.servers[1].weight, 2);
    let by_client = upstream(&c, "by_client");
    assert_eq!(
        (by_client.balance, by_client.consistent),
        (Balance::Hash, false)
    );
    assert_eq!(by_client.hash.as_ref().unwrap().to_string(), "$remote_addr");
    // A key ringlb cannot build stays round robin, and says so.
    assert_eq!(upstream(&c, "by_unknown").balance, Balance::RoundRobin);
    import.noted("nginx.conf", 5, "ringlb has no variable $request_id");
}

#[test]
fn random_two_and_upstream_keepalive() {
    let site = Site::new();
    site.file(
        "nginx.conf",
        r#"http {
    upstream api {
        random two least_conn;
        server 127.0.0.1:9001;
        server 127.0.0.1:9002;
        server 127.0.0.1:9003;
        keepalive 64;
        keepalive_requests 10000;
        keepalive_timeout 120s;
        keepalive_time 1h;
    }
    upstream plain_random { random; server 127.0.0.1:9010; }
    server {
        listen 127.0.0.1:8080;
        location / {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://api;
        }
        location /r/ { proxy_pass http://plain_random; }
    }
}
"#,
    );
    let import = site.import("nginx.conf");
    let c = import.checked();
    let api = upstream(&c, "api");
    assert_eq!(api.balance, Balance::RandomTwoLeastConn);
    assert_eq!(
        (api.keepalive, api.keepalive_requests, api.keepalive_timeout),
        (64, 10000, secs(120))
    );
    // `Connection ""` for upstream keep-alive is what ringlb does anyway: dropped quietly.
    assert!(headers(proxy(&c.servers[0], "/")).is_empty());
    import.not_noted("Connection");
    import.not_noted("proxy_http_version");
    import.noted("nginx.conf", 10, "keepalive_time 1h: not carried");
    assert_eq!(
        upstream(&c, "plain_random").balance,
        Balance::RandomTwoLeastConn
    );
    import.noted("nginx.conf", 12, "carried as random_two_least_conn");
}

#[test]
fn includes_with_globs_relative_to_the_configuration_directory() {
    let site = Site::new();
    site.file(
        "nginx.conf",
        "http {\n    include conf.d/*.conf;\n    include sites-enabled/*;\n    include missing.conf;\n    include nothing/*.conf;\n}\n",
    );
    site.file(
        "conf.d/00-upstreams.conf",
        "upstream app { server 127.0.0.1:9001; server 127.0.0.1:9002; }\n",
    );
    site.file("conf.d/10-limits.conf", "client_max_body_size 20m;\n");
    site.file("conf.d/disabled.conf.bak", "this is { not nginx\n");
    site.file(
        "sites-enabled/app",
        "server {\n    listen 127.0.0.1:8080;\n    server_name app.test;\n    location / {\n        include snippets/proxy.conf;\n        proxy_pass http://app;\n    }\n}\n",
    );
    site.file(
        "sites-enabled/admin",
        "server {\n    listen 127.0.0.1:8080;\n    server_name admin.test;\n    location / { proxy_pass http://app; }\n}\n",
    );
    // Relative to the configuration directory, as nginx resolves it (not sites-enabled/).
    site.file(
        "snippets/proxy.conf",
        "proxy_set_header Host $host;\nproxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\nproxy_read_timeout 90s;\n",
    );
    let import = site.import("nginx.conf");
    let c = import.checked();
    assert_eq!(
        addrs(upstream(&c, "app")),
        ["127.0.0.1:9001", "127.0.0.1:9002"]
    );
    // sites-enabled/* in sorted order: admin before app.
    assert_eq!(names(&c.servers[0]), ["admin.test"]);
    assert_eq!(names(&c.servers[1]), ["app.test"]);
    assert!(c.servers.iter().all(|s| s.max_body_bytes == 20 << 20));
    let p = proxy(&c.servers[1], "/");
    assert_eq!(
        headers(p),
        [
            ("Host".into(), "$host".into()),
            (
                "X-Forwarded-For".into(),
                "$proxy_add_x_forwarded_for".into()
            )
        ]
    );
    // admin.test's location came first and uses the default: the upstream keeps 60s and
    // app.test's location states its own.
    assert_eq!(upstream(&c, "app").read_timeout, secs(60));
    assert_eq!(p.read_timeout, Some(secs(90)));
    import.noted("nginx.conf", 4, "include missing.conf: file not found");
    import.not_noted("nothing/");
}

#[test]
fn virtual_hosts_names_and_default_server() {
    let site = Site::new();
    site.file(
        "nginx.conf",
        r#"http {
    upstream a { server 127.0.0.1:9001; }
    upstream b { server 127.0.0.1:9002; }
    upstream c { server 127.0.0.1:9003; }
    server {
        listen 127.0.0.1:8080;
        server_name A.example.com alias.example.com;
        location / { proxy_pass http://a; }
    }
    server {
        listen 127.0.0.1:8080 default_server;
        server_name .example.org ~^www\d+\.example\.net$ _;
        location / { proxy_pass http://b; }
    }
    server {
        listen 127.0.0.1:8080;
        server_name *.example.com a.example.com;
        location / { proxy_pass http://c; }
    }
    server {
        listen 127.0.0.1:8081;
        server_name a.example.com;
        location / { proxy_pass http://c; }
    }
}
"#,
    );
    let import = site.import("nginx.conf");
    let c = import.checked();
    // The default_server block comes first: ringlb's default is the first on an address.
    assert_eq!(names(&c.servers[0]), ["example.org", "*.example.org"]);
    assert_eq!(names(&c.servers[1]), ["a.example.com", "alias.example.com"]);
    // a.example.com on 8080 is already served: nginx ignores the second one, so does the
    // import; on 8081 it is another address.
    assert_eq!(names(&c.servers[2]), ["*.example.com"]);
    assert_eq!(names(&c.servers[3]), ["a.example.com"]);
    assert_eq!(listen(&c.servers[3]), ["127.0.0.1:8081"]);
    import.noted("nginx.conf", 12, "is a regular expression: not carried");
    import.noted(
        "nginx.conf",
        15,
        "server_name a.example.com: not carried: another server block",
    );
}

#[test]
fn websockets_and_per_location_read_timeouts() {
    let site = Site::new();
    site.file(
        "nginx.conf",
        r#"http {
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }
    upstream channels { server 127.0.0.1:9001; server 127.0.0.1:9002; }
    server {
        listen 127.0.0.1:8080;
        location / {
            proxy_pass http://channels;
        }
        location /ws/ {
            proxy_pass http://channels;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }
    }
}
"#,
    );
    let import = site.import("nginx.conf");
    let c = import.checked();
    let s = &c.servers[0];
    let ws = proxy(s, "/ws/");
    assert_eq!(ws.upgrade, ["websocket"]);
    assert_eq!(ws.read_timeout, Some(secs(3600)));
    assert_eq!(headers(ws), [("Host".into(), "$host".into())]);
    let root = proxy(s, "/");
    assert_eq!(root.read_timeout, None);
    let u = upstream(&c, "channels");
    assert_eq!((u.read_timeout, u.send_timeout), (secs(60), secs(60)));
    import.noted("nginx.conf", 2, "no variables made from other variables");
    // The send timeout can not follow the location: said so.
    import.noted("nginx.conf", 13, "proxy_send_timeout differ");
    import.not_noted("Connection $connection_upgrade");
}

#[test]
fn proxy_pass_to_single_addresses_and_uri_parts() {
    let site = Site::new();
    site.file(
        "nginx.conf",
        r#"http {
    server {
        listen 127.0.0.1:8080;
        location /api/ { proxy_pass http://127.0.0.1:9001; }
        location /api2/ { proxy_pass http://127.0.0.1:9001/api2/; }
        location /v1/ { proxy_pass http://127.0.0.1:9001/; }
        location /app/ { proxy_pass http://unix:/run/app.sock:/app/; }
        location /local/ { proxy_pass http://localhost:9002; }
        location /tls/ { proxy_pass https://127.0.0.1:9443; }
        location /var/ { proxy_pass http://$arg_backend; }
    }
}
"#,
    );
    let import = site.import("nginx.conf");
    let c = import.checked();
    let s = &c.servers[0];
    let api = upstream_of(&c, proxy(s, "/api/"));
    assert_eq!(api.name, "127_0_0_1_9001");
    assert_eq!(addrs(api), ["127.0.0.1:9001"]);
    // One upstream per address, shared.
    assert_eq!(proxy(s, "/api2/").upstream, proxy(s, "/api/").upstream);
    assert_eq!(proxy(s, "/v1/").upstream, proxy(s, "/api/").upstream);
    let app = upstream_of(&c, proxy(s, "/app/"));
    assert_eq!(
        app.servers[0].addr,
        ServerAddr::Unix("/run/app.sock".into())
    );
    assert_eq!(app.name, "unix_run_app_sock");
    assert_eq!(upstream_of(&c, proxy(s, "/local/")).name, "localhost_9002");
    assert!(s
        .locations
        .iter()
        .all(|l| l.path != "/tls/" && l.path != "/var/"));
    // Only the URI that changes the path is reported.
    import.noted(
        "nginx.conf",
        6,
        "the URI part / is not carried: nginx sends /v1/x to the server as /x",
    );
    import.not_noted("/api2/x");
    import.not_noted("/app/x");
    import.noted("nginx.conf", 9, "plain http://");
    import.noted("nginx.conf", 10, "without variables");
}

#[test]
fn timeouts_sizes_and_buffering() {
    let site = Site::new();
    site.file(
        "nginx.conf",
        r#"http {
    client_header_timeout 15s;
    client_body_timeout 20;
    keepalive_timeout 30s 25s;
    keepalive_requests 500;
    large_client_header_buffers 4 16k;
    proxy_connect_timeout 5s;
    proxy_send_timeout 10;
    proxy_read_timeout 2m;
    proxy_next_upstream error timeout http_502 http_404 non_idempotent;
    proxy_next_upstream_tries 3;
    proxy_next_upstream_timeout 30s;
    proxy_buffers 8 16k;
    proxy_buffer_size 8k;
    proxy_temp_path /var/tmp/nginx-proxy 1 2;
    upstream app { server 127.0.0.1:9001; }
    server {
        listen 127.0.0.1:8080;
        client_max_body_size 10m;
        location / { proxy_pass http://app; }
        location /events/ {
            proxy_pass http://app;
            proxy_buffering off;
        }
        location /upload/ {
            proxy_pass http://app;
            proxy_request_buffering off;
            client_max_body_size 0;
            proxy_max_temp_file_size 0;
        }
    }
}
"#,
    );
    let import = site.import("nginx.conf");
    let c = import.checked();
    assert_eq!(c.runtime.temp_path, Path::new("/var/tmp/nginx-proxy"));
    let s = &c.servers[0];
    assert_eq!(
        (
            s.client_header_timeout,
            s.client_body_timeout,
            s.keepalive_timeout
        ),
        (secs(15), secs(20), secs(30))
    );
    assert_eq!(s.keepalive_requests, 500);
    assert_eq!(s.max_header_bytes, 64 << 10);
    assert_eq!(s.max_body_bytes, 10 << 20);
    let u = upstream(&c, "app");
    assert_eq!(
        (u.connect_timeout, u.send_timeout, u.read_timeout),
        (secs(5), secs(10), secs(120))
    );
    let n = u.next_upstream;
    assert!(n.error && n.timeout && n.http_502 && n.non_idempotent && !n.http_500);
    assert_eq!(
        (u.next_upstream_tries, u.next_upstream_timeout),
        (3, secs(30))
    );
    let root = proxy(s, "/");
    assert!(root.buffering && root.request_buffering);
    assert_eq!(root.buffers, 128 << 10);
    assert!(!proxy(s, "/events/").buffering);
    let upload = proxy(s, "/upload/");
    assert!(!upload.request_buffering);
    assert_eq!(upload.max_temp_file_size, 0);
    assert_eq!(loc(s, "/upload/").max_body_bytes, 0);
    assert_eq!(loc(s, "/").max_body_bytes, 10 << 20);
    import.noted("nginx.conf", 4, "the second value");
    import.noted("nginx.conf", 10, "the condition http_404 is not carried");
    import.noted("nginx.conf", 14, "proxy_buffer_size 8k: not carried");
    import.noted("nginx.conf", 15, "the levels are not carried");
}

#[test]
fn real_client_addresses_behind_a_load_balancer() {
    let site = Site::new();
    site.file(
        "nginx.conf",
        r#"http {
    underscores_in_headers on;
    upstream app { server 127.0.0.1:9001; }
    server {
        listen 127.0.0.1:8080 proxy_protocol;
        set_real_ip_from 10.0.0.0/8;
        set_real_ip_from 2001:db8::/32;
        real_ip_header proxy_protocol;
        real_ip_recursive on;
        location / {
            proxy_set_header X-Real-IP $remote_addr;
            proxy_pass http://app;
        }
    }
    server {
        listen 127.0.0.1:8081;
        set_real_ip_from 192.168.0.0/16;
        location / { proxy_pass http://app; }
    }
    server {
        listen 127.0.0.1:8082;
        set_real_ip_from 172.16.0.0/12;
        real_ip_header X-Forwarded-For;
        location / { proxy_pass http://app; }
    }
}
"#,
    );
    let import = site.import("nginx.conf");
    let c = import.checked();
    let pp = &c.servers[0];
    assert!(pp.proxy_protocol && pp.underscores_in_headers);
    let from: Vec<String> = pp.real_ip_from.iter().map(ToString::to_string).collect();
    assert_eq!(from, ["10.0.0.0/8", "2001:db8::/32"]);
    assert_eq!(pp.real_ip_header, RealIpHeader::ProxyProtocol);
    // nginx's default header is X-Real-IP (ringlb's is X-Forwarded-For): written out.
    assert_eq!(
        c.servers[1].real_ip_header,
        RealIpHeader::Header("x-real-ip".into())
    );
    assert!(!c.servers[1].proxy_protocol);
    assert_eq!(
        c.servers[2].real_ip_header,
        RealIpHeader::Header("x-forwarded-for".into())
    );
    import.not_noted("real_ip_recursive");
}

/// A sites-available file alone (server blocks without `http { }`), serving files.
#[test]
fn static_site_from_a_bare_server_file() {
    let site = Site::new();
    site.file(
        "sites-available/www",
        r#"server {
    listen 127.0.0.1:8080;
    server_name www.test;
    root /var/www/site;
    index index.html index.htm;
    try_files $uri $uri/ =404;

    location /assets/ {
        expires max;
    }
    location /private/ {
        return 403;
    }
    location /health {
        return 200 "ok\n";
    }
    location /old-blog/ {
        return 301 /blog/;
    }
    location ~ /\.ht {
        deny all;
    }
}
"#,
    );
    let import = site.import("sites-available/www");
    let c = import.checked();
    let s = &c.servers[0];
    let Handler::Files(assets) = &loc(s, "/assets/").handler else {
        panic!("assets")
    };
    assert_eq!(assets.dir, FilesDir::Root("/var/www/site".into()));
    assert_eq!(assets.index, ["index.html", "index.htm"]);
    assert_eq!(assets.expires, Some(secs(10 * 365 * 86_400)));
    let ret = |p: &str| match &loc(s, p).handler {
        Handler::Return(r) => (
            r.status,
            r.location.as_ref().map(ToString::to_string),
            r.body.clone(),
        ),
        h => panic!("{p}: {h:?}"),
    };
    assert_eq!(ret("/private/"), (403, None, None));
    assert_eq!(ret("/health"), (200, None, Some("ok\n".into())));
    assert_eq!(ret("/old-blog/"), (301, Some("/blog/".into()), None));
    // Requests no location matches are served from the server's root, as in nginx.
    let Handler::Files(rest) = &loc(s, "/").handler else {
        panic!("/")
    };
    assert_eq!(rest.dir, FilesDir::Root("/var/www/site".into()));
    let www = "sites-available/www";
    import.noted(www, 6, "ringlb has no try_files");
    import.noted(www, 20, "regular-expression location is not carried");
}

/// One server block with both a plain and a TLS listener becomes two ringlb blocks; two
/// certificates on one address (SNI).
#[test]
fn plain_and_tls_listeners_and_sni() {
    let site = Site::new();
    site.certificates(&["a.pem", "a.key", "b.pem", "b.key"]);
    site.file(
        "nginx.conf",
        r#"http {
    ssl_certificate {dir}/a.pem;
    ssl_certificate_key {dir}/a.key;
    ssl_protocols TLSv1.3;
    ssl_ciphers HIGH:!aNULL:!MD5;
    upstream app { server 127.0.0.1:9001; }
    server {
        listen 127.0.0.1:8080;
        listen 127.0.0.1:8443 ssl;
        server_name a.test;
        location / { proxy_pass http://app; }
    }
    server {
        listen 127.0.0.1:8443 ssl;
        http2 on;
        server_name b.test;
        ssl_certificate b.pem;
        ssl_certificate_key b.key;
        location / { proxy_pass http://app; }
    }
    server {
        listen 127.0.0.1:9443 ssl;
        server_name nocert.test;
        ssl_certificate_key {dir}/a.key;
        ssl_certificate "";
        location / { proxy_pass http://app; }
    }
}
"#,
    );
    let import = site.import("nginx.conf");
    let c = import.checked();
    assert_eq!(c.servers.len(), 3, "{}", import.toml);
    let plain = &c.servers[0];
    assert_eq!(
        (listen(plain), plain.tls.is_none()),
        (vec!["127.0.0.1:8080".to_string()], true)
    );
    let a = &c.servers[1];
    assert_eq!(listen(a), ["127.0.0.1:8443"]);
    assert_eq!(names(a), ["a.test"]);
    let a_tls = a.tls.as_ref().unwrap();
    assert_eq!(a_tls.certificate, site.dir.join("a.pem"));
    assert!(!a_tls.protocols.tls12 && a_tls.protocols.tls13);
    // nginx offers h2 only where turned on.
    assert!(!a.http2);
    let b = &c.servers[2];
    // Relative certificate paths are nginx's configuration directory's.
    assert_eq!(b.tls.as_ref().unwrap().certificate, site.dir.join("b.pem"));
    assert!(b.http2);
    import.noted("nginx.conf", 5, "rustls chooses the cipher suites");
    import.noted(
        "nginx.conf",
        21,
        "the TLS listener(s) 127.0.0.1:9443 are not carried: no ssl_certificate",
    );
}

#[test]
fn runtime_and_access_log_formats() {
    let site = Site::new();
    site.file(
        "nginx.conf",
        r#"worker_processes 4;
worker_shutdown_timeout 30s;
worker_rlimit_nofile 65535;
events {
    worker_connections 4096;
    use epoll;
}
http {
    log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                    '$status $body_bytes_sent "$http_referer" '
                    '"$http_user_agent" $upstream_addr';
    access_log {dir}/main.log main;
    upstream app { server 127.0.0.1:9001; }
    server {
        listen 127.0.0.1:8080;
        location / { proxy_pass http://app; }
    }
    server {
        listen 127.0.0.1:8081;
        access_log off;
        location / { proxy_pass http://app; access_log {dir}/loc.log; }
    }
    server {
        listen 127.0.0.1:8082;
        access_log {dir}/plain.log combined;
        access_log {dir}/second.log;
        location / { proxy_pass http://app; }
    }
    log_format gz '$remote_addr $gzip_ratio';
    server {
        listen 127.0.0.1:8083;
        access_log {dir}/gz.log gz;
        location / { proxy_pass http://app; }
    }
}
"#,
    );
    let import = site.import("nginx.conf");
    let c = import.checked();
    assert_eq!(c.runtime.workers, 4);
    assert_eq!(c.runtime.shutdown_timeout, secs(30));
    assert_eq!(c.runtime.max_connections, 4096);
    let main = &c.servers[0];
    assert_eq!(main.access_log, Some(site.dir.join("main.log")));
    assert_eq!(
        main.log_format,
        "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" $upstream_addr"
    );
    assert_eq!(c.servers[1].access_log, None);
    assert_eq!(c.servers[2].access_log, Some(site.dir.join("plain.log")));
    assert_eq!(c.servers[2].log_format, "combined");
    import.noted("nginx.conf", 3, "LimitNOFILE");
    import.noted("nginx.conf", 6, "use epoll: not needed");
    import.noted("nginx.conf", 21, "one access log per server block");
    import.noted("nginx.conf", 26, "the first one is kept");
    // A format with a variable ringlb does not log falls back to combined, with a note.
    assert_eq!(c.servers[3].access_log, Some(site.dir.join("gz.log")));
    assert_eq!(c.servers[3].log_format, "combined");
    import.noted(
        "nginx.conf",
        line_of(&site, "nginx.conf", "listen 127.0.0.1:8083") - 1,
        "the log_format gz is not carried (unknown variable `$gzip_ratio`",
    );
}

#[test]
fn unreadable_or_unusable_configurations_exit_1() {
    let site = Site::new();
    site.file(
        "broken.conf",
        "http {\n    server {\n        listen 80;\n    }\n",
    );
    let import = site.import("broken.conf");
    assert_eq!(import.code, Some(1));
    assert!(
        import
            .stderr
            .contains("broken.conf:1: this block is never closed"),
        "{}",
        import.stderr
    );
    let import = site.import("nothing-here.conf");
    assert_eq!(import.code, Some(1));
    assert!(
        import.stderr.contains("nothing-here.conf: cannot read"),
        "{}",
        import.stderr
    );
    site.file(
        "stream.conf",
        "stream {\n    server {\n        listen 3306;\n        proxy_pass db:3306;\n    }\n}\n",
    );
    let import = site.import("stream.conf");
    assert_eq!(import.code, Some(1));
    assert!(
        import.stderr.contains("ringlb proxies HTTP only"),
        "{}",
        import.stderr
    );
    assert!(
        import
            .stderr
            .contains("no server block could be carried over"),
        "{}",
        import.stderr
    );
}
