//! Test support for the TLS and HTTP/2 layers: self-signed certificates made per test, a
//! small server of N worker threads (each its own monoio runtime and SO_REUSEPORT listener,
//! as ringlb's workers) that terminates TLS with `ringlb::tls` and serves HTTP/1.1 or
//! HTTP/2 (`ringlb::h2`) by ALPN, and rustls clients over std sockets.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use ringlb::config::ServerName;
use ringlb::config::TlsProtocols;
use ringlb::h2::{self as rh2, Exchange, H2Settings, H2Stats, Shutdown};
use ringlb::tls::{self, AddrTls, SiteTls, TlsKeys, TlsStats, TlsTable};

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringlb-tls-test-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A self-signed certificate and its key, as PEM files.
pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: Vec<u8>,
}

/// A calendar date.
pub type Ymd = (i32, u8, u8);

/// A self-signed ECDSA P-256 certificate for `names` (the first is also its CN), valid from
/// yesterday for a year unless `validity` says otherwise.
pub fn make_cert(dir: &Path, names: &[&str], validity: Option<(Ymd, Ymd)>) -> Cert {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    if let Some(((y1, m1, d1), (y2, m2, d2))) = validity {
        params.not_before = rcgen::date_time_ymd(y1, m1, d1);
        params.not_after = rcgen::date_time_ymd(y2, m2, d2);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let (c, k) = (
        dir.join(format!("cert{n}.pem")),
        dir.join(format!("key{n}.pem")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    Cert {
        cert: c,
        key: k,
        der: cert.der().to_vec(),
    }
}

pub fn names(list: &[&str]) -> Vec<ServerName> {
    list.iter()
        .map(|n| match n.strip_prefix('*') {
            Some(suffix) => ServerName::Wildcard(suffix.to_string()),
            None => ServerName::Exact(n.to_string()),
        })
        .collect()
}

pub fn site(cert: &Cert, server_names: &[&str], http2: bool) -> SiteTls {
    SiteTls {
        server_names: names(server_names),
        certificate: cert.cert.clone(),
        certificate_key: cert.key.clone(),
        loaded: None,
        protocols: TlsProtocols::default(),
        http2,
    }
}

/// Builds the TLS side of one listen address from `sites` (in block order).
pub fn table(addr: SocketAddr, sites: &[SiteTls], keys: &TlsKeys) -> TlsTable {
    let listen = [addr];
    let blocks: Vec<(&[SocketAddr], Option<&SiteTls>)> =
        sites.iter().map(|s| (&listen[..], Some(s))).collect();
    TlsTable::build(&blocks, keys, SystemTime::now()).expect("valid test certificates")
}

/// What the test server's workers share with the test.
pub struct Server {
    pub addr: SocketAddr,
    pub tls: Vec<Arc<TlsStats>>,
    pub h2: Vec<Arc<H2Stats>>,
    /// Swaps the certificates served from now on (as a reload publishes a new table).
    pub tables: Arc<arc_swap::ArcSwap<AddrTls>>,
    /// Connections served per worker.
    pub served: Arc<Vec<AtomicUsize>>,
}

pub struct ServerOpts {
    pub workers: usize,
    pub epoll: bool,
    pub h2: H2Settings,
    pub handshake_timeout: Duration,
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts {
            workers: 1,
            epoll: std::env::var("RINGLB_TEST_IO").is_ok_and(|v| v == "epoll"),
            h2: H2Settings::for_server(
                16384,
                1000,
                Duration::from_secs(30),
                Duration::from_secs(10),
                Duration::from_secs(5),
            ),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

fn bind(addr: SocketAddr) -> std::net::TcpListener {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    s.set_nonblocking(true).unwrap();
    s.bind(&addr.into()).unwrap();
    s.listen(1024).unwrap();
    s.into()
}

/// Starts a server on a free loopback port with `sites` (server blocks in order) built
/// from `keys`; `Server::tables` swaps them later, as a reload does.
pub fn serve(sites: Vec<SiteTls>, keys: Arc<TlsKeys>, opts: ServerOpts) -> Server {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let first = table(addr, &sites, &keys).get(addr).unwrap().clone();
    let tables = Arc::new(arc_swap::ArcSwap::new(first));
    let tls: Vec<Arc<TlsStats>> = (0..opts.workers).map(|_| Arc::default()).collect();
    let h2: Vec<Arc<H2Stats>> = (0..opts.workers).map(|_| Arc::default()).collect();
    let served = Arc::new(
        (0..opts.workers)
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>(),
    );
    let (ready_tx, ready_rx) = mpsc::channel();
    for w in 0..opts.workers {
        let (tables, tls, h2, served, ready) = (
            tables.clone(),
            tls[w].clone(),
            h2[w].clone(),
            served.clone(),
            ready_tx.clone(),
        );
        let settings = opts.h2.clone();
        let hs_timeout = opts.handshake_timeout;
        let epoll = opts.epoll;
        std::thread::spawn(move || {
            let listener = bind(addr);
            let main = async move {
                let listener = monoio::net::TcpListener::from_std(listener).unwrap();
                ready.send(()).unwrap();
                let shutdown = Shutdown::default();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    served[w].fetch_add(1, Ordering::SeqCst);
                    let (tables, tls, h2, settings, shutdown) = (
                        tables.clone(),
                        tls.clone(),
                        h2.clone(),
                        settings.clone(),
                        shutdown.clone(),
                    );
                    monoio::spawn(async move {
                        let site = tables.load_full();
                        let Ok(s) = tls::accept(stream, &site, hs_timeout, &tls).await else {
                            return;
                        };
                        if s.is_h2() {
                            rh2::serve(s, &settings, &shutdown, &h2, move |ex| respond_h2(ex, w))
                                .await;
                        } else {
                            serve_h1(s, w).await;
                        }
                    });
                }
            };
            if epoll {
                monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build()
                    .unwrap()
                    .block_on(main);
            } else {
                monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                    .enable_timer()
                    .build()
                    .unwrap()
                    .block_on(main);
            }
        });
    }
    for _ in 0..opts.workers {
        ready_rx.recv().unwrap();
    }
    Server {
        addr,
        tls,
        h2,
        tables,
        served,
    }
}

/// A minimal HTTP/1.1 responder over the TLS stream's rent face: each request gets a body
/// naming the worker and the protocol.
async fn serve_h1(mut s: tls::TlsStream, worker: usize) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let len = buf.len();
            buf.reserve(4096);
            let (r, b) = s.read(buf.slice_mut(len..)).await;
            buf = b.into_inner();
            match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let line = String::from_utf8_lossy(&buf[..head_end])
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        let path = line.split(' ').nth(1).unwrap_or("/").to_string();
        let close = String::from_utf8_lossy(&buf[..head_end])
            .to_ascii_lowercase()
            .contains("connection: close");
        buf.drain(..head_end);
        let body = format!("worker={worker} proto=http/1.1 path={path}\n");
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (r, _) = s.write_all(resp.into_bytes()).await;
        if r.is_err() || close {
            let _ = s.shutdown().await;
            return;
        }
    }
}

use monoio::buf::IoBufMut;

/// The HTTP/2 handler: `/slow` waits 500 ms, `/big` sends 1 MiB, `/hold` never reads the
/// body, any other body is counted.
async fn respond_h2(mut ex: Exchange, worker: usize) {
    let path = ex.head.uri.path().to_string();
    if path == "/hold" {
        // Reads nothing: the client's window fills and stays full.
        monoio::time::sleep(Duration::from_secs(5)).await;
        return;
    }
    let mut received = 0usize;
    while let Some(chunk) = ex.body.chunk().await {
        match chunk {
            Ok(c) => received += c.len(),
            Err(_) => return,
        }
    }
    if path == "/slow" {
        monoio::time::sleep(Duration::from_millis(500)).await;
    }
    let body = if path == "/big" {
        Bytes::from(vec![b'x'; 1 << 20])
    } else {
        Bytes::from(format!(
            "worker={worker} proto=h2 path={path} received={received}\n"
        ))
    };
    let head = http::Response::builder()
        .status(200)
        .header("content-length", body.len())
        .body(())
        .unwrap();
    let Ok(mut w) = ex.response.send_head(head, false) else {
        return;
    };
    let _ = w.write(body, true).await;
}

/// A rustls client configuration trusting `certs`, offering `alpn`.
pub fn client_config(certs: &[&Cert], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots
            .add(rustls::pki_types::CertificateDer::from(c.der.clone()))
            .unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(cfg)
}

pub type Client = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects and completes a handshake for `sni`.
pub fn connect(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>, sni: &str) -> Client {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_nodelay(true).unwrap();
    let conn =
        rustls::ClientConnection::new(cfg.clone(), sni.to_string().try_into().unwrap()).unwrap();
    let mut c = rustls::StreamOwned::new(conn, tcp);
    while c.conn.is_handshaking() {
        c.conn.complete_io(&mut c.sock).unwrap();
    }
    c
}

/// One HTTP/1.1 GET over a TLS client; the response body.
pub fn h1_get(c: &mut Client, path: &str) -> String {
    write!(c, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    c.flush().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed before a response");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(i) = text.find("\r\n\r\n") {
            let len: usize = text[..i]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim())
                })
                .unwrap()
                .parse()
                .unwrap();
            if got.len() >= i + 4 + len {
                return text[i + 4..i + 4 + len].to_string();
            }
        }
    }
}

/// Waits until `f` holds (tests wait for events, never for a fixed time).
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn tool(name: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A ringlb configuration for the binary tests: `workers` workers, one TLS server block on
/// 127.0.0.1:`port` named `name` with `cert`, proxying `/` to `backend` with
/// `X-Forwarded-Proto: $scheme`, and an admin endpoint on `admin` when given.
pub fn tls_config(
    port: u16,
    name: &str,
    cert: &Cert,
    backend: SocketAddr,
    workers: usize,
    admin: Option<u16>,
) -> String {
    let admin = admin.map_or(String::new(), |a| {
        format!("[admin]\nlisten = \"127.0.0.1:{a}\"\n")
    });
    format!(
        r#"[runtime]
workers = {workers}
shutdown_timeout = "5s"

{admin}
[[server]]
listen = ["127.0.0.1:{port}"]
server_name = ["{name}"]
tls_certificate = "{cert}"
tls_certificate_key = "{key}"

  [[server.location]]
  path = "/"
  proxy_pass = "app"
  proxy_set_header = {{ "X-Forwarded-Proto" = "$scheme" }}

[upstream.app]
servers = [ {{ addr = "{backend}" }} ]
"#,
        cert = cert.cert.display(),
        key = cert.key.display(),
    )
}
