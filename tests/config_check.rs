//! `ringlb check`: through the library (the binary's `check` subcommand prints exactly
//! this), and through the real binary for the traps a new user fell into: bare numbers as
//! durations and sizes, an access log that cannot be opened (at check, start and reload),
//! an nginx configuration given by mistake, nginx's directive names used as keys.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{free_port, get, Backend, Proxy};
use ringlb::config;

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ringlb.toml")
}

#[test]
fn bundled_config_checks_ok() {
    let (text, ok) = config::check(&bundled());
    assert!(ok, "{text}");
    assert!(text.contains("upstream django: round_robin"), "{text}");
    assert!(text.ends_with("is valid"), "{text}");
}

#[test]
fn broken_copy_of_bundled_config_lists_every_error_with_positions() {
    let good = std::fs::read_to_string(bundled()).unwrap();
    let bad = good
        .replace(
            "{ addr = \"127.0.0.1:8002\" }",
            "{ addr = \"127.0.0.1:80x\" }",
        )
        .replace("proxy_pass = \"django\"", "proxy_pass = \"djang\"")
        .replace("pin_workers = true", "pin_wrokers = true");
    let dir = std::env::temp_dir().join(format!("ringlb-config-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ringlb.toml");
    std::fs::write(&path, &bad).unwrap();

    let (text, ok) = config::check(&path);
    assert!(!ok);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let at = |needle: &str| {
        let off = bad.find(needle).unwrap();
        let line = bad[..off].matches('\n').count() + 1;
        let col = off - bad[..off].rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("{}:{line}:{col}: ", path.display())
    };
    assert_eq!(
        lines[0],
        format!("{}runtime.pin_wrokers: unknown key `pin_wrokers`; did you mean `pin_workers`? (valid: workers, pin_workers, shutdown_timeout, io, max_connections, temp_path, pid_file)", at("pin_wrokers"))
    );
    assert!(
        lines[1].starts_with(&format!(
            "{}server[0].location[0].proxy_pass: no upstream named \"djang\"",
            at("\"djang\"")
        )),
        "{text}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "{}upstream.django.servers[1].addr: \"127.0.0.1:80x\" is not host:port",
            at("\"127.0.0.1:80x\"")
        )),
        "{text}"
    );
    assert!(lines[3].ends_with("has 3 errors"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- Through the real binary: the traps a new user fell into. ----

/// `ringlb check -c FILE` on `text`: (exit code, stdout, stderr, the file's path).
fn check_text(name: &str, text: &str) -> (Option<i32>, String, String, PathBuf) {
    let dir = common::proxy::temp_dir();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ringlb"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path,
    )
}

/// `file:line:col: ` of the first occurrence of `needle` in `text`.
fn at(path: &Path, text: &str, needle: &str) -> String {
    let off = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    let line = text[..off].matches('\n').count() + 1;
    let col = text[..off].chars().rev().take_while(|c| *c != '\n').count() + 1;
    format!("{}:{line}:{col}: ", path.display())
}

/// One server on 127.0.0.1:`port`, `server_extra` in its block, upstream `app` with
/// `upstream_extra`.
fn config(port: u16, server_extra: &str, upstream_extra: &str) -> String {
    format!(
        "[runtime]\nworkers = 1\n\n[[server]]\nlisten = \"127.0.0.1:{port}\"\n{server_extra}\n  [[server.location]]\n  path = \"/\"\n  proxy_pass = \"app\"\n\n[upstream.app]\nservers = [{{ addr = \"127.0.0.1:9\" }}]\n{upstream_extra}\n"
    )
}

#[test]
fn bare_numbers_are_seconds_and_bytes_integer_or_string_alike() {
    let text = config(
        8080,
        "keepalive_timeout = 30\nclient_header_timeout = \"15\"\nmax_body_bytes = \"1048576\"\nmax_header_bytes = 32768",
        "connect_timeout = 2\nread_timeout = \"1m30s\"\nsend_timeout = \"500ms\"\n[upstream.app.health_check]\ninterval = \"500\"\ntimeout = 3",
    );
    let (code, out, err, _) = check_text("units.toml", &text);
    assert_eq!(code, Some(0), "{err}");
    // The summary shows every value resolved, so "500" plainly reads as 500 seconds.
    for want in [
        "client_header_timeout 15s",
        "keepalive_timeout 30s / 1000 requests",
        "max_header_bytes 32k",
        "max_body_bytes 1m",
        "connect_timeout 2s, send_timeout 500ms, read_timeout 1m30s",
        "health_check /health every 8m20s, timeout 3s",
        "client_body_timeout 1m",
        "127.0.0.1:9  weight 1, max_fails 1, fail_timeout 10s, max_conns unlimited",
        "proxy_buffers 256k, max_temp_file_size 1g, read_timeout 1m30s (upstream)",
    ] {
        assert!(out.contains(want), "summary lacks {want:?}:\n{out}");
    }
    // A negative number or a fraction is still an error with its position.
    let bad = config(8080, "keepalive_timeout = -5", "connect_timeout = 1.5");
    let (code, _, err, path) = check_text("units-bad.toml", &bad);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!(
            "{}server[0].keepalive_timeout: -5 is negative",
            at(&path, &bad, "-5")
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}upstream.app.connect_timeout: expected a duration such as",
            at(&path, &bad, "1.5")
        )),
        "{err}"
    );
}

#[test]
fn check_opens_the_access_log_and_names_a_bad_one() {
    let dir = common::proxy::temp_dir();
    let log = dir.join("logs/access.log");
    // A missing directory: the error names the key, the path and the OS error.
    let text = config(
        8080,
        &format!("access_log = {:?}", log.display().to_string()),
        "",
    );
    let (code, _, err, path) = check_text("log.toml", &text);
    assert_eq!(code, Some(1), "{err}");
    let want = format!(
        "{}server[0].access_log: cannot open {} for appending: No such file or directory (os error 2)",
        at(&path, &text, &format!("{:?}", log.display().to_string())),
        log.display()
    );
    assert!(err.contains(&want), "want {want}\n{err}");
    // A directory where the file should be.
    std::fs::create_dir_all(&log).unwrap();
    let (code, _, err, _) = check_text("log.toml", &text);
    assert_eq!(code, Some(1));
    assert!(err.contains("Is a directory (os error 21)"), "{err}");
    // A writable place: check creates the file (as nginx -t does) and says valid.
    std::fs::remove_dir_all(dir.join("logs")).unwrap();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let (code, out, err, _) = check_text("log.toml", &text);
    assert_eq!(code, Some(0), "{err}");
    assert!(log.is_file(), "check did not create {}", log.display());
    assert!(
        out.contains(&format!("access_log {} (combined)", log.display())),
        "{out}"
    );
}

#[test]
fn start_refuses_an_access_log_it_cannot_open() {
    let dir = common::proxy::temp_dir();
    let port = free_port();
    let text = config(
        port,
        "access_log = \"/nonexistent-ringlb-dir/access.log\"",
        "",
    );
    let path = dir.join("ringlb.toml");
    std::fs::write(&path, &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ringlb"))
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}server[0].access_log: cannot open /nonexistent-ringlb-dir/access.log for appending: No such file or directory",
            at(&path, &text, "\"/nonexistent")
        )),
        "{err}"
    );
    assert!(err.contains("not started"), "{err}");
}

#[test]
fn reload_with_an_access_log_it_cannot_open_keeps_the_old_config() {
    let a = Backend::start("a");
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let good = config(port, "", "").replace("127.0.0.1:9", &a.addr.to_string());
    let proxy = Proxy::start(&good, addr);
    assert_eq!(get(addr, "/").unwrap().status, 200);

    let bad_log = proxy.dir.join("no-such-dir/access.log");
    let bad = good.replace(
        "listen = ",
        &format!(
            "access_log = {:?}\nlisten = ",
            bad_log.display().to_string()
        ),
    );
    proxy.reload(&bad);
    assert!(
        proxy.wait_log("reload refused", Duration::from_secs(10)),
        "no refusal logged:\n{}",
        proxy.log()
    );
    let log = proxy.log();
    let quoted = format!("{:?}", bad_log.display().to_string());
    let want = format!(
        "{}server[0].access_log: cannot open {} for appending",
        at(&proxy.config_path, &bad, &quoted),
        bad_log.display()
    );
    assert!(log.contains(&want), "want {want}\n{log}");
    // Still serving on the old configuration.
    assert_eq!(get(addr, "/").unwrap().status, 200);
}

#[test]
fn an_nginx_file_gets_pointed_to_import_nginx() {
    let nginx = "user www-data;\nworker_processes auto;\n\nhttp {\n    upstream app {\n        server 127.0.0.1:8000;\n    }\n    server {\n        listen 80;\n        location / {\n            proxy_pass http://app;\n        }\n    }\n}\n";
    let (code, _, err, path) = check_text("nginx.conf", nginx);
    assert_eq!(code, Some(1));
    let want = format!(
        "{}:1:1: this looks like an nginx configuration: try `ringlb import-nginx {}`",
        path.display(),
        path.display()
    );
    assert_eq!(err.lines().next(), Some(want.as_str()), "{err}");
    // The TOML error is still there, with its position.
    assert!(err.contains("TOML syntax error"), "{err}");
    // A server block pasted alone.
    let (code, _, err, _) = check_text(
        "site.conf",
        "server {\n    listen 443 ssl;\n    server_name example.com;\n}\n",
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("this looks like an nginx configuration"),
        "{err}"
    );
    // A broken TOML file is not taken for nginx.
    let (code, _, err, _) = check_text("broken.toml", "[runtime]\nworkers = \n");
    assert_eq!(code, Some(1));
    assert!(!err.contains("nginx"), "{err}");
}

#[test]
fn nginx_directive_names_get_a_did_you_mean_to_ringlb_keys() {
    let text = config(
        8080,
        "client_max_body_size = \"10m\"\nssl_certificate = \"/etc/x.pem\"\nset_real_ip_from = [\"10.0.0.0/8\"]\nproxy_read_timeout = \"30s\"",
        "proxy_connect_timeout = \"2s\"\nproxy_next_upstream = [\"error\"]\nmax_fails = 3",
    )
    .replace("[runtime]\n", "[runtime]\nworker_processes = 2\n");
    let (code, _, err, path) = check_text("nginx-names.toml", &text);
    assert_eq!(code, Some(1));
    for (key, needle, message) in [
        ("runtime.worker_processes", "worker_processes", "did you mean `workers`? (nginx's worker_processes is ringlb's workers"),
        ("server[0].client_max_body_size", "client_max_body_size", "did you mean `max_body_bytes`? (nginx's client_max_body_size is ringlb's max_body_bytes"),
        ("server[0].ssl_certificate", "ssl_certificate", "did you mean `tls_certificate`?"),
        ("server[0].set_real_ip_from", "set_real_ip_from", "did you mean `real_ip_from`?"),
        ("server[0].proxy_read_timeout", "proxy_read_timeout", "did you mean `read_timeout` in [upstream.NAME] or [[server.location]]?"),
        ("upstream.app.proxy_connect_timeout", "proxy_connect_timeout", "did you mean `connect_timeout`?"),
        ("upstream.app.proxy_next_upstream", "proxy_next_upstream", "did you mean `next_upstream`?"),
        ("upstream.app.max_fails", "max_fails", "`max_fails` belongs in each entry of an upstream's servers"),
    ] {
        let want = format!(
            "{}{key}: unknown key `{needle}`; ",
            at(&path, &text, needle)
        );
        assert!(
            err.lines()
                .any(|l| l.starts_with(&want) && l.contains(message)),
            "want {want}...{message}\n{err}"
        );
    }
    assert!(err.ends_with("has 8 errors\n"), "{err}");
}

/// The complete example of docs/configuration.md is a valid file (with its certificate and
/// log paths moved to a scratch directory, where a self-signed certificate is made).
#[test]
fn the_documented_example_checks_ok() {
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let example = docs
        .split("## A complete example")
        .nth(1)
        .and_then(|s| s.split("```toml\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("a toml block after \"A complete example\"");
    let dir = example_com_certificate();
    let text = example
        .replace("/etc/ringlb/", &format!("{}/", dir.display()))
        .replace("/var/log/ringlb/", &format!("{}/", dir.display()))
        .replace("/srv/app", &format!("{}/srv/app", dir.display()));
    // The files directories it names: a root or alias that does not exist is refused.
    std::fs::create_dir_all(dir.join("srv/app/collected_static")).unwrap();
    let (code, out, err, _) = check_text("example.toml", &text);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!(
            "/static/ -> alias {}/srv/app/collected_static/",
            dir.display()
        )),
        "{out}"
    );
    assert!(out.contains("unix:/run/gunicorn/app.sock"), "{out}");
}

/// A scratch directory holding `example.com.pem` and `example.com.key`, a real self-signed
/// certificate and its key: validation loads and checks them.
fn example_com_certificate() -> PathBuf {
    let dir = common::proxy::temp_dir();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["example.com".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("example.com.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("example.com.key"), key.serialize_pem()).unwrap();
    dir
}

/// The bundled classic deployment (`config/django-gunicorn.toml`) checks as shipped, and
/// again with what its comments say to uncomment for HTTPS (the `tls_*` and `http2` lines,
/// the HTTP-to-HTTPS block, the site on port 443), so neither part can rot.
#[test]
fn the_bundled_django_gunicorn_deployment_checks_ok_with_and_without_tls() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/django-gunicorn.toml");
    let shipped = std::fs::read_to_string(&path).unwrap();
    // Its static and media directories, here: `ringlb check` refuses a root or alias that
    // does not exist.
    let srv = common::proxy::temp_dir();
    std::fs::create_dir_all(srv.join("srv/app/collected_static")).unwrap();
    let shipped = shipped.replace("/srv/app", &format!("{}/srv/app", srv.display()));
    let (code, text, err, _) = check_text("django-gunicorn.toml", &shipped);
    assert_eq!(code, Some(0), "{err}");
    let static_line = format!(
        "/static/ -> alias {}/srv/app/collected_static/",
        srv.display()
    );
    let media_line = format!("/media/ -> root {}/srv/app", srv.display());
    for want in [
        static_line.as_str(),
        "expires 30d",
        media_line.as_str(),
        "/ -> django  (sets Host, X-Forwarded-For, X-Real-IP, X-Forwarded-Proto)",
        "request_buffering on, buffering on",
        "unix:/run/gunicorn.sock",
        "127.0.0.1:8001",
        "127.0.0.1:8002",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    assert!(
        !text.contains("301"),
        "the redirect ships commented out:\n{text}"
    );

    // HTTPS as the comments describe it.
    let dir = example_com_certificate();
    let mut redirect = false;
    let mut tls = String::new();
    for line in shipped.lines() {
        redirect |= line == "# [[server]]";
        let line = if redirect {
            line.strip_prefix("# ")
                .or(line.strip_prefix('#'))
                .unwrap_or(line)
        } else {
            match line.strip_prefix("# ") {
                Some(l) if l.starts_with("tls_") || l.starts_with("http2") => l,
                _ => line,
            }
        };
        tls.push_str(line);
        tls.push('\n');
    }
    assert!(redirect, "no commented-out redirect block");
    let tls = tls
        .replacen(
            r#"listen = ["0.0.0.0:80"]"#,
            r#"listen = ["0.0.0.0:443"]"#,
            1,
        )
        .replace("/etc/ringlb/", &format!("{}/", dir.display()));
    let (code, text, err, _) = check_text("django-gunicorn-tls.toml", &tls);
    assert_eq!(code, Some(0), "{err}\n{tls}");
    for want in [
        "listen 0.0.0.0:443",
        "listen 0.0.0.0:80",
        "301",
        "https://$host$request_uri",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
}
