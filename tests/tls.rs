//! TLS termination through real sockets: certificates checked with precise errors, HTTP/1.1
//! and HTTP/2 chosen by ALPN (curl), SNI choosing among server blocks (openssl s_client),
//! session resumption across workers and across a certificate reload, and handshake
//! failures counted by reason.

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
        move |addr| {
            table(addr, std::slice::from_ref(&s), &keys)
                .get(addr)
                .unwrap()
                .clone()
        },
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
    let server = serve(
        move |addr| {
            table(addr, std::slice::from_ref(&s), &keys)
                .get(addr)
                .unwrap()
                .clone()
        },
        ServerOpts::default(),
    );
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
    let server = serve(
        move |addr| table(addr, &sites, &keys).get(addr).unwrap().clone(),
        ServerOpts::default(),
    );
    assert!(s_client_subject(&server, Some("a.test")).contains("CN = a.test"));
    assert!(s_client_subject(&server, Some("b.example.com")).contains("CN = b.example.com"));
    // Unknown or absent SNI: the first block's certificate.
    assert!(s_client_subject(&server, Some("other.test")).contains("CN = a.test"));
    assert!(s_client_subject(&server, None).contains("CN = a.test"));
}

fn s_client_session(server: &Server, sess: &std::path::Path, resume: bool) -> bool {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &server.addr.to_string(),
        "-servername",
        "r.test",
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
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nhost: r.test\r\nconnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("proto=http/1.1"), "no response:\n{text}");
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
        move |addr| {
            table(addr, std::slice::from_ref(&s), &k)
                .get(addr)
                .unwrap()
                .clone()
        },
        ServerOpts {
            workers: 2,
            ..ServerOpts::default()
        },
    );
    let sess = dir.join("session.pem");
    assert!(!s_client_session(&server, &sess, false));
    let first = (0..2)
        .find(|&w| server.served[w].load(Ordering::SeqCst) == 1)
        .unwrap();
    // Resume until a connection lands on the other worker (the kernel spreads connections
    // by their port numbers), and make sure that one resumed too.
    let mut on_other = false;
    for _ in 0..40 {
        let before = server.served[1 - first].load(Ordering::SeqCst);
        let resumed = s_client_session(&server, &sess, true);
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
        s_client_session(&server, &sess, true),
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
        move |addr| {
            table(addr, std::slice::from_ref(&s), &keys)
                .get(addr)
                .unwrap()
                .clone()
        },
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
