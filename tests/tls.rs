//! TLS termination through real sockets: certificates checked with precise errors, HTTP/1.1
//! and HTTP/2 chosen by ALPN (curl), SNI choosing among server blocks (openssl s_client),
//! session resumption across workers and across a certificate reload, and handshake
//! failures counted by reason; first on the TLS layer alone (a test server on `ringlb::tls`,
//! which shows which worker took a connection), then through the real binary in front of a
//! backend: `$scheme`, metrics, a certificate rotated by SIGHUP under load, a wrong key
//! refused on reload, and the status page in headless Chromium over HTTPS and HTTP/2.

#[allow(unused_imports)]
mod common;
mod tls_support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ringlb::config::TlsProtocols as Protocols;
use ringlb::tls::{CertProblem, HandshakeFailure, TlsKeys, TlsTable};
use tls_support::*;

fn failures(s: &Server, f: HandshakeFailure) -> u64 {
    let i = HandshakeFailure::ALL.iter().position(|x| *x == f).unwrap();
    s.tls
        .iter()
        .map(|t| t.failures[i].load(Ordering::Relaxed))
        .sum()
}

fn handshakes(s: &Server) -> (u64, u64) {
    (
        s.tls
            .iter()
            .map(|t| t.handshakes.load(Ordering::Relaxed))
            .sum(),
        s.tls
            .iter()
            .map(|t| t.resumed.load(Ordering::Relaxed))
            .sum(),
    )
}

fn problem(sites: &[ringlb::tls::SiteTls]) -> CertProblem {
    let keys = TlsKeys::new().unwrap();
    let addr = "127.0.0.1:1".parse().unwrap();
    let listen = [addr];
    let blocks: Vec<_> = sites.iter().map(|s| (&listen[..], Some(s))).collect();
    match TlsTable::build(&blocks, &keys, SystemTime::now()) {
        Err(errors) => match &errors[0] {
            ringlb::tls::TlsError::Cert(e) => e.problem.clone(),
            other => panic!("unexpected {other}"),
        },
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn bad_certificates_are_refused_with_the_file_and_the_reason() {
    let dir = temp_dir();
    let good = make_cert(&dir, &["a.test"], None);
    let other = make_cert(&dir, &["b.test"], None);
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let mut s = site(&good, &["a.test"], true);

    s.certificate = garbage.clone();
    assert!(matches!(
        problem(std::slice::from_ref(&s)),
        CertProblem::NotPem(_)
    ));
    s.certificate = good.key.clone();
    assert_eq!(
        problem(std::slice::from_ref(&s)),
        CertProblem::NoCertificate
    );
    s.certificate = good.cert.clone();
    s.certificate_key = good.cert.clone();
    assert_eq!(problem(std::slice::from_ref(&s)), CertProblem::NoPrivateKey);
    s.certificate_key = other.key.clone();
    assert_eq!(problem(std::slice::from_ref(&s)), CertProblem::KeyMismatch);
    s.certificate_key = dir.join("missing.pem");
    assert!(matches!(
        problem(std::slice::from_ref(&s)),
        CertProblem::Unreadable(_)
    ));

    let old = make_cert(&dir, &["old.test"], Some(((2001, 1, 2), (2002, 3, 4))));
    let p = problem(&[site(&old, &["old.test"], true)]);
    assert_eq!(
        p,
        CertProblem::Expired {
            not_before: "2001-01-02 00:00:00 UTC".into(),
            not_after: "2002-03-04 00:00:00 UTC".into()
        }
    );
    let future = make_cert(&dir, &["new.test"], Some(((2090, 1, 1), (2091, 1, 1))));
    assert!(matches!(
        problem(&[site(&future, &["new.test"], true)]),
        CertProblem::NotYetValid { .. }
    ));

    // An Ed448 key (openssl makes one) is one rustls cannot sign with.
    if tool("openssl") {
        let k = dir.join("ed448.key");
        let c = dir.join("ed448.pem");
        let ok = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ed448",
                "-nodes",
                "-subj",
                "/CN=e.test",
                "-days",
                "2",
            ])
            .arg("-keyout")
            .arg(&k)
            .arg("-out")
            .arg(&c)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success());
        let mut s = site(&good, &["e.test"], true);
        s.certificate = c;
        s.certificate_key = k;
        assert!(
            matches!(problem(&[s]), CertProblem::UnsupportedKey(_)),
            "ed448"
        );
    }

    // The message names the file and says what is wrong.
    let keys = TlsKeys::new().unwrap();
    let mut s = site(&good, &["a.test"], true);
    s.certificate_key = other.key.clone();
    let listen = ["127.0.0.1:1".parse().unwrap()];
    let err = TlsTable::build(&[(&listen[..], Some(&s))], &keys, SystemTime::now()).unwrap_err();
    let msg = err[0].to_string();
    assert!(msg.starts_with(&other.key.display().to_string()), "{msg}");
    assert!(msg.contains("does not match the certificate"), "{msg}");

    // No protocol enabled.
    let mut s = site(&good, &["a.test"], true);
    s.protocols = Protocols {
        tls12: false,
        tls13: false,
    };
    let err = TlsTable::build(&[(&listen[..], Some(&s))], &keys, SystemTime::now()).unwrap_err();
    assert!(err[0].to_string().contains("tls_protocols"), "{}", err[0]);
}

fn curl(server: &Server, cert: &Cert, proto: &str, host: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", proto, "--cacert"])
        .arg(&cert.cert)
        .args([
            "--resolve",
            &format!("{host}:{}:127.0.0.1", server.addr.port()),
        ])
        .args(["-w", "\n%{http_version}"])
        .arg(format!("https://{host}:{}/hello", server.addr.port()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, version) = text.rsplit_once('\n').unwrap();
    (body.to_string(), version.to_string())
}

fn curl_both_protocols(epoll: bool) {
    if !tool("curl") {
        eprintln!("skipped: no curl");
        return;
    }
    let dir = temp_dir();
    let cert = make_cert(&dir, &["app.test"], None);
    let keys = Arc::new(TlsKeys::new().unwrap());
    let s = site(&cert, &["app.test"], true);
    let server = serve(
        vec![s.clone()],
        keys.clone(),
        ServerOpts {
            epoll,
            ..ServerOpts::default()
        },
    );
    let (body, version) = curl(&server, &cert, "--http1.1", "app.test");
    assert_eq!(version, "1.1");
    assert!(body.contains("proto=http/1.1 path=/hello"), "{body}");
    let (body, version) = curl(&server, &cert, "--http2", "app.test");
    assert_eq!(version, "2");
    assert!(body.contains("proto=h2 path=/hello"), "{body}");
    assert_eq!(handshakes(&server).0, 2);
}

#[test]
fn curl_gets_http11_and_http2_by_alpn_on_io_uring() {
    curl_both_protocols(false);
}

#[test]
fn curl_gets_http11_and_http2_by_alpn_on_epoll() {
    curl_both_protocols(true);
}

#[test]
fn h2_is_offered_only_where_http2_is_on() {
    let dir = temp_dir();
    let cert = make_cert(&dir, &["plain.test"], None);
    let keys = Arc::new(TlsKeys::new().unwrap());
    let s = site(&cert, &["plain.test"], false);
    let server = serve(vec![s.clone()], keys.clone(), ServerOpts::default());
    let cfg = client_config(&[&cert], &[b"h2", b"http/1.1"]);
    let mut c = connect(server.addr, &cfg, "plain.test");
    assert_eq!(c.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert!(h1_get(&mut c, "/x").contains("proto=http/1.1"));
    // Several requests on one connection (keep-alive through the rent face).
    for i in 0..20 {
        assert!(h1_get(&mut c, &format!("/r{i}")).contains(&format!("path=/r{i}")));
    }
}

fn s_client_subject(server: &Server, sni: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &server.addr.to_string(), "-brief"]);
    match sni {
        Some(n) => cmd.args(["-servername", n]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("Peer certificate:"))
        .unwrap_or_else(|| panic!("no peer certificate in:\n{text}"))
        .to_string()
}

#[test]
fn sni_picks_the_server_blocks_certificate() {
    if !tool("openssl") {
        eprintln!("skipped: no openssl");
        return;
    }
    let dir = temp_dir();
    let a = make_cert(&dir, &["a.test"], None);
    let b = make_cert(&dir, &["b.example.com"], None);
    let keys = Arc::new(TlsKeys::new().unwrap());
    let sites = [
        site(&a, &["a.test"], true),
        site(&b, &["*.example.com"], true),
    ];
    let server = serve(sites.to_vec(), keys.clone(), ServerOpts::default());
    assert!(s_client_subject(&server, Some("a.test")).contains("CN = a.test"));
    assert!(s_client_subject(&server, Some("b.example.com")).contains("CN = b.example.com"));
    // Unknown or absent SNI: the first block's certificate.
    assert!(s_client_subject(&server, Some("other.test")).contains("CN = a.test"));
    assert!(s_client_subject(&server, None).contains("CN = a.test"));
}

/// One `openssl s_client` connection to `addr` for `sni` that saves its session to `sess`
/// (or resumes from it) and makes one request whose response must contain `expect`;
/// whether the session was resumed.
fn s_client_session(
    addr: std::net::SocketAddr,
    sni: &str,
    sess: &std::path::Path,
    resume: bool,
    expect: &str,
) -> bool {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &addr.to_string(),
        "-servername",
        sni,
        "-ign_eof",
    ]);
    if resume {
        cmd.arg("-sess_in").arg(sess);
    } else {
        cmd.arg("-sess_out").arg(sess);
    }
    // TLS 1.3 tickets arrive after the handshake: send a request and read the answer so the
    // session file holds one.
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let request = format!("GET / HTTP/1.1\r\nhost: {sni}\r\nconnection: close\r\n\r\n");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(expect), "no response:\n{text}");
    text.contains("Reused, TLSv1.3")
}

#[test]
fn sessions_resume_on_another_worker_and_after_a_certificate_reload() {
    if !tool("openssl") {
        eprintln!("skipped: no openssl");
        return;
    }
    let dir = temp_dir();
    let cert = make_cert(&dir, &["r.test"], None);
    let keys = Arc::new(TlsKeys::new().unwrap());
    let s = site(&cert, &["r.test"], true);
    let k = keys.clone();
    let server = serve(
        vec![s.clone()],
        k.clone(),
        ServerOpts {
            workers: 2,
            ..ServerOpts::default()
        },
    );
    let sess = dir.join("session.pem");
    assert!(!s_client_session(
        server.addr,
        "r.test",
        &sess,
        false,
        "proto=http/1.1"
    ));
    let first = (0..2)
        .find(|&w| server.served[w].load(Ordering::SeqCst) == 1)
        .unwrap();
    // Resume until a connection lands on the other worker (the kernel spreads connections
    // by their port numbers), and make sure that one resumed too.
    let mut on_other = false;
    for _ in 0..40 {
        let before = server.served[1 - first].load(Ordering::SeqCst);
        let resumed = s_client_session(server.addr, "r.test", &sess, true, "proto=http/1.1");
        assert!(resumed, "a session ticket did not resume");
        if server.served[1 - first].load(Ordering::SeqCst) > before {
            on_other = true;
            break;
        }
    }
    assert!(
        on_other,
        "no connection landed on the second worker in 40 tries"
    );

    // A reload builds new configurations (here with a new certificate) from the same keys:
    // tickets issued before it still resume.
    let cert2 = make_cert(&dir, &["r.test"], None);
    let addr = server.addr;
    let next = table(addr, &[site(&cert2, &["r.test"], true)], &keys);
    server.tables.store(next.get(addr).unwrap().clone());
    assert!(
        s_client_session(server.addr, "r.test", &sess, true, "proto=http/1.1"),
        "a ticket from before the reload did not resume"
    );
    let (done, resumed) = handshakes(&server);
    assert!(
        resumed >= 2 && done > resumed,
        "handshakes {done}, resumed {resumed}"
    );
}

#[test]
fn handshake_failures_are_counted_by_reason() {
    let dir = temp_dir();
    let cert = make_cert(&dir, &["f.test"], None);
    let keys = Arc::new(TlsKeys::new().unwrap());
    let mut s = site(&cert, &["f.test"], true);
    s.protocols = Protocols {
        tls12: false,
        tls13: true,
    };
    let server = serve(
        vec![s.clone()],
        keys.clone(),
        ServerOpts {
            handshake_timeout: Duration::from_millis(300),
            ..ServerOpts::default()
        },
    );
    // Plain HTTP on the TLS port.
    {
        let mut c = std::net::TcpStream::connect(server.addr).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nhost: f.test\r\n\r\n")
            .unwrap();
        wait_for("protocol_error", || {
            failures(&server, HandshakeFailure::ProtocolError) == 1
        });
    }
    // Connected, then gone before a ClientHello.
    drop(std::net::TcpStream::connect(server.addr).unwrap());
    wait_for("client_closed", || {
        failures(&server, HandshakeFailure::ClientClosed) == 1
    });
    // Connected and silent.
    let quiet = std::net::TcpStream::connect(server.addr).unwrap();
    wait_for("timeout", || {
        failures(&server, HandshakeFailure::Timeout) == 1
    });
    drop(quiet);
    // A TLS 1.2-only client against a TLS 1.3-only block.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(cert.der.clone()))
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(cfg), "f.test".try_into().unwrap()).unwrap();
    let mut tcp = std::net::TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut failed = false;
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            failed = true;
            break;
        }
    }
    assert!(
        failed,
        "a TLS 1.2 client completed a handshake with a TLS 1.3-only block"
    );
    wait_for("incompatible", || {
        failures(&server, HandshakeFailure::Incompatible) == 1
    });
    // A client that does not trust the certificate says so with an alert.
    let stranger = make_cert(&dir, &["f.test"], None);
    let cfg = client_config(&[&stranger], &[b"http/1.1"]);
    let mut conn = rustls::ClientConnection::new(cfg, "f.test".try_into().unwrap()).unwrap();
    let mut tcp = std::net::TcpStream::connect(server.addr).unwrap();
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            break;
        }
    }
    wait_for("rejected_by_client", || {
        failures(&server, HandshakeFailure::RejectedByClient) == 1
    });
    assert_eq!(handshakes(&server).0, 0);
}

// ---- Through the real binary ----

/// ringlb with one TLS server block (`server_name` app.test) in front of `backend`, and an
/// admin endpoint (its port is returned).
fn ringlb_tls(cert: &Cert, backend: &common::Backend) -> (common::Proxy, u16) {
    let port = common::free_port();
    let admin = common::free_port();
    let config = tls_config(port, "app.test", cert, backend.addr, 2, Some(admin));
    let proxy = common::Proxy::start(&config, format!("127.0.0.1:{port}").parse().unwrap());
    (proxy, admin)
}

fn admin_get(admin: u16, path: &str) -> String {
    common::get(format!("127.0.0.1:{admin}").parse().unwrap(), path)
        .unwrap()
        .text()
}

/// curl against the binary: the body and "HTTP-VERSION STATUS".
fn curl_binary(port: u16, cert: &Cert, args: &[&str], path: &str) -> (Vec<u8>, String) {
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&cert.cert)
        .args(["--resolve", &format!("app.test:{port}:127.0.0.1")])
        .args(["-w", "\n%{http_version} %{http_code}"])
        .args(args)
        .arg(format!("https://app.test:{port}{path}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at = out.stdout.iter().rposition(|&b| b == b'\n').unwrap();
    let meta = String::from_utf8_lossy(&out.stdout[at + 1..]).to_string();
    (out.stdout[..at].to_vec(), meta)
}

#[test]
fn the_access_log_says_which_protocol_the_client_spoke() {
    if !tool("curl") {
        eprintln!("skipped: needs curl");
        return;
    }
    let dir = temp_dir();
    let cert = make_cert(&dir, &["app.test"], None);
    let backend = common::Backend::start("tls-backend");
    let port = common::free_port();
    let log = dir.join("access.log");
    let config = tls_config(port, "app.test", &cert, backend.addr, 1, None).replace(
        "tls_certificate = ",
        &format!(
            "access_log = \"{}\"\nlog_format = \"$scheme $server_protocol \\\"$request\\\" $status\"\ntls_certificate = ",
            log.display()
        ),
    );
    let mut proxy = common::Proxy::start(&config, format!("127.0.0.1:{port}").parse().unwrap());
    assert_eq!(
        curl_binary(port, &cert, &["--http1.1"], "/one").1,
        "1.1 200"
    );
    // HTTP/2 streams reach the proxy re-framed as HTTP/1.1; the log shows what the client
    // spoke, as nginx's does.
    assert_eq!(curl_binary(port, &cert, &["--http2"], "/two").1, "2 200");
    let want = [
        "https HTTP/1.1 \"GET /one HTTP/1.1\" 200",
        "https HTTP/2.0 \"GET /two HTTP/2.0\" 200",
    ];
    // A graceful stop writes out every buffered line (as tests/access_log.rs reads logs).
    proxy.signal(libc::SIGTERM);
    assert_eq!(proxy.wait_exit(Duration::from_secs(30)), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().collect::<Vec<_>>(), want);
}

#[test]
fn https_and_http2_through_the_proxy_with_scheme_metrics_and_resumption() {
    if !tool("curl") || !tool("openssl") {
        eprintln!("skipped: needs curl and openssl");
        return;
    }
    let dir = temp_dir();
    let cert = make_cert(&dir, &["app.test"], None);
    let backend = common::Backend::start("tls-backend");
    let (proxy, admin) = ringlb_tls(&cert, &backend);
    let port = proxy.addr.port();

    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).to_string();
    let (body, meta) = curl_binary(port, &cert, &["--http1.1"], "/one");
    assert_eq!(
        (text(body).as_str(), meta.as_str()),
        ("tls-backend", "1.1 200")
    );
    let (body, meta) = curl_binary(port, &cert, &["--http2"], "/two");
    assert_eq!(
        (text(body).as_str(), meta.as_str()),
        ("tls-backend", "2 200")
    );
    // A request body over HTTP/2 (no content-length: sent on chunked) reaches the backend.
    let (body, meta) = curl_binary(
        port,
        &cert,
        &[
            "--http2",
            "-H",
            "content-length:",
            "--data-binary",
            "hello over h2",
        ],
        "/sum",
    );
    assert_eq!(meta, "2 200");
    let body = text(body);
    assert!(body.starts_with("13 "), "{body}");
    let (body, _) = curl_binary(
        port,
        &cert,
        &["--http2", "--data-binary", "0123456789"],
        "/sum",
    );
    let body = text(body);
    assert!(body.starts_with("10 "), "{body}");
    // A large response through HTTP/2 flow control.
    let (body, meta) = curl_binary(port, &cert, &["--http2"], "/big?n=3000000");
    assert_eq!(meta, "2 200");
    assert!(
        body.len() == 3_000_000 && body == common::backend::pattern(3_000_000),
        "{} bytes",
        body.len()
    );
    // $scheme is https on both protocols.
    let heads = backend.heads();
    assert!(heads.len() >= 5);
    for h in &heads {
        assert!(
            h.to_ascii_lowercase().contains("x-forwarded-proto: https"),
            "{h}"
        );
    }

    // Sessions resume (2 workers: the kernel spreads the connections over both).
    let sess = dir.join("session.pem");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let s_client = |resume| s_client_session(addr, "app.test", &sess, resume, "tls-backend");
    assert!(!s_client(false));
    for _ in 0..8 {
        assert!(s_client(true), "a session did not resume");
    }

    let metrics = admin_get(admin, "/metrics");
    for line in [
        "ringlb_client_connections{protocol=\"h2\"}",
        "ringlb_client_connections{protocol=\"https\"}",
        "ringlb_tls_handshake_failures_total{reason=\"timeout\"} 0",
        "ringlb_http2_abuse_total{reason=\"ping_flood\"} 0",
    ] {
        assert!(metrics.contains(line), "no {line} in /metrics:\n{metrics}");
    }
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert!(value("ringlb_tls_handshakes_total") >= 14);
    assert!(value("ringlb_tls_resumed_total") >= 8);
    assert!(value("ringlb_http2_streams_total") >= 4);
    let status: serde_json::Value = serde_json::from_str(&admin_get(admin, "/status")).unwrap();
    assert!(status["tls"]["resumed"].as_u64().unwrap() >= 8, "{status}");
    assert!(
        status["http2"]["connections"].as_u64().unwrap() >= 4,
        "{status}"
    );
    assert_eq!(status["tls"]["failures"]["incompatible"], 0);
}

/// The certificate a new connection is served.
fn served_cert(port: u16, trust: &[&Cert]) -> Vec<u8> {
    let cfg = client_config(trust, &[b"http/1.1"]);
    let c = connect(
        format!("127.0.0.1:{port}").parse().unwrap(),
        &cfg,
        "app.test",
    );
    c.conn.peer_certificates().unwrap()[0].to_vec()
}

#[test]
fn sighup_rotates_the_certificate_under_load_with_no_failed_request() {
    let dir = temp_dir();
    let old = make_cert(&dir, &["app.test"], None);
    let backend = common::Backend::start("rotate");
    let (proxy, _) = ringlb_tls(&old, &backend);
    let port = proxy.addr.port();
    let new = make_cert(&dir, &["app.test"], None);
    let cfg = client_config(&[&old, &new], &[b"http/1.1"]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (cfg, stop) = (cfg.clone(), stop.clone());
            std::thread::spawn(move || {
                let addr = format!("127.0.0.1:{port}").parse().unwrap();
                let (mut ok, mut failed) = (0u64, Vec::new());
                while !stop.load(Ordering::SeqCst) {
                    // A new connection (and handshake) every 5 requests.
                    let mut c = connect(addr, &cfg, "app.test");
                    for i in 0..5 {
                        let body = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            h1_get(&mut c, &format!("/r{i}"))
                        }));
                        match body {
                            Ok(b) if b == "rotate" => ok += 1,
                            other => failed.push(format!("{other:?}")),
                        }
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    wait_for("load", || backend.requests() > 50);
    // Rotate as certbot does: new files in place, then SIGHUP.
    std::fs::copy(&new.cert, &old.cert).unwrap();
    std::fs::copy(&new.key, &old.key).unwrap();
    proxy.signal(libc::SIGHUP);
    assert!(
        proxy.wait_log("configuration reloaded", Duration::from_secs(10)),
        "{}",
        proxy.log()
    );
    wait_for("the new certificate", || {
        served_cert(port, &[&old, &new]) == new.der
    });
    let at_rotation = backend.requests();
    wait_for("load after the rotation", || {
        backend.requests() > at_rotation + 50
    });
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for t in load {
        let (ok, failed) = t.join().unwrap();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        total += ok;
    }
    assert!(total > 100, "{total} requests");
}

#[test]
fn a_wrong_key_is_refused_on_reload_and_the_old_certificate_stays() {
    let dir = temp_dir();
    let cert = make_cert(&dir, &["app.test"], None);
    let other = make_cert(&dir, &["app.test"], None);
    let backend = common::Backend::start("kept");
    let (proxy, _) = ringlb_tls(&cert, &backend);
    let port = proxy.addr.port();
    let original_key = std::fs::read(&cert.key).unwrap();
    std::fs::copy(&other.key, &cert.key).unwrap();
    proxy.signal(libc::SIGHUP);
    assert!(
        proxy.wait_log("reload refused", Duration::from_secs(10)),
        "{}",
        proxy.log()
    );
    let log = proxy.log();
    let line = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(line.contains("tls_certificate_key"), "{line}");
    assert!(line.contains(&cert.key.display().to_string()), "{line}");
    assert!(line.contains("does not match the certificate"), "{line}");
    // Still serving, with the certificate it had.
    assert_eq!(served_cert(port, &[&cert]), cert.der);
    let cfg = client_config(&[&cert], &[b"http/1.1"]);
    let mut c = connect(
        format!("127.0.0.1:{port}").parse().unwrap(),
        &cfg,
        "app.test",
    );
    assert_eq!(h1_get(&mut c, "/"), "kept");
    // An expired certificate is refused the same way, with its dates.
    std::fs::write(&cert.key, &original_key).unwrap();
    let expired = make_cert(&dir, &["app.test"], Some(((2001, 1, 1), (2002, 1, 1))));
    std::fs::copy(&expired.cert, &cert.cert).unwrap();
    std::fs::copy(&expired.key, &cert.key).unwrap();
    proxy.signal(libc::SIGHUP);
    assert!(
        proxy.wait_log("expired on 2002-01-01", Duration::from_secs(10)),
        "{}",
        proxy.log()
    );
    assert_eq!(served_cert(port, &[&cert]), cert.der);
}

fn chromium() -> Option<std::path::PathBuf> {
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| std::path::Path::new(d).join(name))
            .find(|p| p.is_file())
    })
}

/// Headless chromium's DOM of `url` after its scripts ran.
fn browser_dom(
    bin: &std::path::Path,
    profile: &std::path::Path,
    url: &str,
    extra: &[&str],
) -> String {
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--ignore-certificate-errors",
            "--virtual-time-budget=3000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        out
    });
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

#[test]
fn the_status_page_loads_over_https_and_http2_in_chromium() {
    let Some(bin) = chromium() else {
        println!("SKIPPED: chromium is not installed (apt-get install chromium)");
        return;
    };
    let dir = temp_dir();
    let cert = make_cert(&dir, &["app.test"], None);
    let web = common::Backend::start("web");
    // The TLS server block proxies to ringlb's own admin endpoint: the browser loads the
    // status page (and its script's /status polls) over TLS through the proxy.
    let port = common::free_port();
    let admin = common::free_port();
    let config = format!(
        r#"[runtime]
workers = 2

[admin]
listen = "127.0.0.1:{admin}"

[[server]]
listen = ["127.0.0.1:{port}"]
tls_certificate = "{cert}"
tls_certificate_key = "{key}"

  [[server.location]]
  path = "/"
  proxy_pass = "admin"

[upstream.admin]
servers = [ {{ addr = "127.0.0.1:{admin}" }} ]

[upstream.web]
servers = [ {{ addr = "{web}" }} ]
"#,
        cert = cert.cert.display(),
        key = cert.key.display(),
        web = web.addr,
    );
    let _proxy = common::Proxy::start(&config, format!("127.0.0.1:{port}").parse().unwrap());
    let url = format!("https://127.0.0.1:{port}/");
    let streams = |admin: u16| -> u64 {
        let status: serde_json::Value = serde_json::from_str(&admin_get(admin, "/status")).unwrap();
        status["http2"]["streams"].as_u64().unwrap()
    };
    let tls_conns = |admin: u16| -> u64 {
        let status: serde_json::Value = serde_json::from_str(&admin_get(admin, "/status")).unwrap();
        status["tls"]["handshakes"].as_u64().unwrap()
    };
    for (run, extra) in [("h2", &[][..]), ("http/1.1", &["--disable-http2"][..])] {
        let (streams_before, handshakes_before) = (streams(admin), tls_conns(admin));
        let dom = browser_dom(
            &bin,
            &dir.join(format!("profile-{}", run.replace('/', ""))),
            &url,
            extra,
        );
        let row = format!(
            "data-upstream=\"web\" data-addr=\"{}\" data-state=\"up\"",
            web.addr
        );
        assert!(
            dom.contains(&row),
            "{run}: no row for the web server in the page:\n{dom}"
        );
        assert!(
            dom.contains("class=\"live\""),
            "{run}: the page never reached /status over TLS"
        );
        assert!(
            tls_conns(admin) > handshakes_before,
            "{run}: no TLS handshake"
        );
        if run == "h2" {
            assert!(
                streams(admin) > streams_before + 1,
                "the page and its polls did not use HTTP/2"
            );
        } else {
            assert_eq!(
                streams(admin),
                streams_before,
                "HTTP/2 used although disabled"
            );
        }
    }
}

#[test]
fn websocket_upgrade_is_tunnelled_over_tls() {
    let dir = temp_dir();
    let cert = make_cert(&dir, &["app.test"], None);
    let backend = common::Backend::start("ws");
    let (proxy, _) = ringlb_tls(&cert, &backend);
    let cfg = client_config(&[&cert], &[b"http/1.1"]);
    let mut c = connect(proxy.addr, &cfg, "app.test");
    c.write_all(b"GET /ws HTTP/1.1\r\nhost: app.test\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = std::io::Read::read(&mut c, &mut buf).unwrap();
        assert!(n > 0, "closed before the 101");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // Both directions of the tunnel at once, many times: the TLS stream is split in two.
    for i in 0..50 {
        let msg = format!("message {i} {}", "x".repeat(i * 100));
        c.write_all(msg.as_bytes()).unwrap();
        let mut echoed = Vec::new();
        while echoed.len() < msg.len() {
            let n = std::io::Read::read(&mut c, &mut buf).unwrap();
            assert!(n > 0, "tunnel closed");
            echoed.extend_from_slice(&buf[..n]);
        }
        assert_eq!(echoed, msg.as_bytes());
    }
}
