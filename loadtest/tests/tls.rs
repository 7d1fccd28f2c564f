//! https:// targets: keep-alive and a new TLS connection per request, certificate checks
//! (--cacert, --insecure, the default roots), TLS failures counted by kind, and
//! `ringload serve --tls-cert`, on both I/O drivers. Certificates are generated here (rcgen).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{count, load_json_env, load_json_failing_env, Backend};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const DEADLINE: Duration = Duration::from_secs(30);
/// Both drivers: io_uring (where the kernel allows it) and epoll.
const DRIVERS: [&[(&str, &str)]; 2] = [&[], &[("MONOIO_FORCE_LEGACY_DRIVER", "1")]];

/// A CA and a leaf certificate for localhost and 127.0.0.1 it signed, as PEM files.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        Pki::with_names(name, &["localhost", "127.0.0.1"])
    }

    /// The leaf certificate names exactly `names`.
    fn with_names(name: &str, names: &[&str]) -> Pki {
        let dir = std::env::temp_dir().join(format!("ringload-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        Pki { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tls_backend(pki: &Pki) -> Backend {
    Backend::start(
        1,
        &[
            "--tls-cert",
            &pki.path("cert.pem"),
            "--tls-key",
            &pki.path("key.pem"),
        ],
    )
}

fn https(backend: &Backend) -> String {
    format!("https://{}/", backend.addrs[0])
}

#[test]
fn keepalive_and_new_connection_per_request_over_tls_on_both_drivers() {
    let pki = Pki::new("both");
    let backend = tls_backend(&pki);
    let url = https(&backend);
    let served = backend.addrs[0].to_string();
    let ca = pki.path("ca.pem");
    for env in DRIVERS {
        let v = load_json_env(
            &["-n", "500", "-c", "4", "--cacert", &ca, &url],
            env,
            DEADLINE,
        );
        assert_eq!(count(&v, "status", "200"), 500, "{env:?}: {v}");
        assert_eq!(count(&v, "by_server", &served), 500);
        let v = load_json_env(
            &["-n", "100", "-c", "4", "--no-keepalive", "-k", &url],
            env,
            DEADLINE,
        );
        assert_eq!(count(&v, "status", "200"), 100, "{env:?}: {v}");
        for kind in ["connect", "read", "tls", "tls_cert", "tls_alert", "timeout"] {
            assert_eq!(count(&v, "errors", kind), 0, "{env:?} {kind}: {v}");
        }
        // The name in the URL is what the certificate is checked against.
        let by_name = format!("https://localhost:{}/", backend.addrs[0].port());
        let v = load_json_env(
            &["-n", "20", "-c", "2", "--cacert", &ca, &by_name],
            env,
            DEADLINE,
        );
        assert_eq!(count(&v, "status", "200"), 20);
    }
}

#[test]
fn certificates_that_do_not_verify_are_tls_cert_errors() {
    let pki = Pki::new("verify");
    let other = Pki::new("other");
    let backend = tls_backend(&pki);
    let url = https(&backend);
    // Signed by a CA we were not told to trust.
    let (v, err) = load_json_failing_env(
        &[
            "-n",
            "5",
            "-c",
            "1",
            "--cacert",
            &other.path("ca.pem"),
            &url,
        ],
        &[],
        DEADLINE,
    );
    assert_eq!(count(&v, "errors", "tls_cert"), 5, "{v}");
    assert!(err.contains("5 tls_cert error(s)"), "{err}");
    // The system's roots do not know our CA either.
    let (v, _) = load_json_failing_env(&["-n", "3", "-c", "1", &url], &[], DEADLINE);
    assert_eq!(count(&v, "errors", "tls_cert"), 3, "{v}");
    // A certificate for another name.
    let elsewhere = Pki::with_names("elsewhere", &["example.test"]);
    let backend = tls_backend(&elsewhere);
    let (v, _) = load_json_failing_env(
        &[
            "-n",
            "3",
            "-c",
            "1",
            "--cacert",
            &elsewhere.path("ca.pem"),
            &https(&backend),
        ],
        &[],
        DEADLINE,
    );
    assert_eq!(count(&v, "errors", "tls_cert"), 3, "{v}");
}

/// A TLS server on a thread: counts full and resumed handshakes, answers every request with
/// 200 "ok" and honours `Connection: close`. `alpn`: the protocols it accepts.
struct CountingServer {
    addr: String,
    full: Arc<AtomicU64>,
    resumed: Arc<AtomicU64>,
}

impl CountingServer {
    fn start(pki: &Pki, alpn: &[&[u8]]) -> CountingServer {
        CountingServer::start_slow(pki, alpn, Duration::ZERO)
    }

    /// `pause`: how long each connection waits before its handshake.
    fn start_slow(pki: &Pki, alpn: &[&[u8]], pause: Duration) -> CountingServer {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(pki.path("cert.pem"))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_file(pki.path("key.pem")).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("https://{}/", listener.local_addr().unwrap());
        let (full, resumed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (f, r) = (full.clone(), resumed.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (config, f, r) = (config.clone(), f.clone(), r.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(pause);
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    loop {
                        let mut reader = BufReader::new(&mut tls);
                        let mut close = false;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            match reader.read_line(&mut line) {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                            close |= line.to_ascii_lowercase().starts_with("connection: close");
                            if line == "\r\n" {
                                break;
                            }
                        }
                        drop(reader);
                        match tls.conn.handshake_kind() {
                            Some(rustls::HandshakeKind::Resumed) => {
                                r.fetch_add(1, Ordering::SeqCst)
                            }
                            _ => f.fetch_add(1, Ordering::SeqCst),
                        };
                        let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                        let _ = tls.flush();
                        if close {
                            tls.conn.send_close_notify();
                            let _ = tls.flush();
                            return;
                        }
                    }
                });
            }
        });
        CountingServer {
            addr,
            full,
            resumed,
        }
    }
}

#[test]
fn no_keepalive_makes_a_full_handshake_per_request_unless_resuming() {
    let pki = Pki::new("count");
    let server = CountingServer::start(&pki, &[b"http/1.1"]);
    let v = load_json_env(
        &[
            "-n",
            "40",
            "-c",
            "2",
            "-t",
            "1",
            "--no-keepalive",
            "-k",
            &server.addr,
        ],
        &[],
        DEADLINE,
    );
    assert_eq!(count(&v, "status", "200"), 40);
    assert_eq!(
        server.full.load(Ordering::SeqCst),
        40,
        "one handshake per request"
    );
    assert_eq!(
        server.resumed.load(Ordering::SeqCst),
        0,
        "nothing resumed by default"
    );
    let v = load_json_env(
        &[
            "-n",
            "40",
            "-c",
            "1",
            "-t",
            "1",
            "--no-keepalive",
            "--tls-resume",
            "-k",
            &server.addr,
        ],
        &[],
        DEADLINE,
    );
    assert_eq!(count(&v, "status", "200"), 40);
    assert!(
        server.resumed.load(Ordering::SeqCst) >= 30,
        "--tls-resume resumes: {} resumed",
        server.resumed.load(Ordering::SeqCst)
    );
}

#[test]
fn the_handshake_counts_in_the_latency() {
    let pki = Pki::new("slow");
    let pause = Duration::from_millis(150);
    let server = CountingServer::start_slow(&pki, &[b"http/1.1"], pause);
    let v = load_json_env(
        &["-n", "4", "-c", "1", "--no-keepalive", "-k", &server.addr],
        &[],
        DEADLINE,
    );
    assert_eq!(count(&v, "status", "200"), 4);
    let p50 = v["latency_us"]["p50"].as_u64().unwrap();
    assert!(
        p50 >= pause.as_micros() as u64,
        "p50 {p50} us: the handshake's wait is missing"
    );
}

#[test]
fn alerts_and_broken_handshakes_are_counted_by_kind() {
    let pki = Pki::new("alert");
    // The server speaks only h2: rustls answers our http/1.1-only offer with a fatal
    // no_application_protocol alert.
    let h2_only = CountingServer::start(&pki, &[b"h2"]);
    let (v, err) =
        load_json_failing_env(&["-n", "4", "-c", "1", "-k", &h2_only.addr], &[], DEADLINE);
    assert_eq!(count(&v, "errors", "tls_alert"), 4, "{v}");
    assert!(err.contains("tls_alert"), "{err}");
    // A server that closes right after accepting: the handshake fails ("tls").
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            drop(tcp);
        }
    });
    let (v, _) = load_json_failing_env(&["-n", "4", "-c", "1", "-k", &url], &[], DEADLINE);
    assert_eq!(count(&v, "errors", "tls"), 4, "{v}");
    // Plain HTTP spoken to a TLS port is not a success either.
    let backend = tls_backend(&pki);
    let (v, _) = load_json_failing_env(
        &[
            "-n",
            "3",
            "-c",
            "1",
            "--timeout",
            "1s",
            &format!("http://{}/", backend.addrs[0]),
        ],
        &[],
        DEADLINE,
    );
    assert_eq!(count(&v, "status", "200"), 0, "{v}");
}

#[test]
fn tls_options_need_https_and_bad_files_are_named() {
    let (ok, _, err) = common::run(["-k", "-n", "1", "http://127.0.0.1:1/"], DEADLINE);
    assert!(!ok && err.contains("https:// URLs only"), "{err}");
    let (ok, _, err) = common::run(
        [
            "--cacert",
            "/nonexistent/ca.pem",
            "-n",
            "1",
            "https://127.0.0.1:1/",
        ],
        DEADLINE,
    );
    assert!(!ok && err.contains("/nonexistent/ca.pem"), "{err}");
    let (ok, _, err) = common::run(
        [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent/c.pem",
            "--tls-key",
            "/nonexistent/k.pem",
        ],
        DEADLINE,
    );
    assert!(!ok && err.contains("/nonexistent/c.pem"), "{err}");
}
