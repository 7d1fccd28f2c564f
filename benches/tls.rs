//! TLS costs on this machine, per crypto provider: server-side full handshakes per second
//! (TLS 1.3, ECDSA P-256 and RSA-2048 certificates, X25519) and bulk encryption/decryption
//! per cipher suite, all in memory (no sockets), timing only the server's calls.
//!
//! `cargo bench --bench tls` measures aws-lc-rs, the provider ringlb uses;
//! `cargo bench --bench tls --features bench-ring` adds ring for comparison (how the choice
//! was made: see docs/tls.md).

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

fn rsa_key_pem() -> String {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl makes the RSA-2048 key");
    String::from_utf8(out.stdout).unwrap()
}

struct Cert {
    der: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn cert(alg: &'static rcgen::SignatureAlgorithm) -> Cert {
    let kp = if alg == &rcgen::PKCS_RSA_SHA256 {
        // rcgen cannot generate RSA keys; openssl makes one.
        let pem = rsa_key_pem();
        rcgen::KeyPair::from_pem_and_sign_algo(&pem, alg).unwrap()
    } else {
        rcgen::KeyPair::generate_for(alg).unwrap()
    };
    let params = rcgen::CertificateParams::new(vec!["bench.test".into()]).unwrap();
    let c = params.self_signed(&kp).unwrap();
    Cert {
        der: c.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(kp.serialize_der())),
    }
}

fn configs(
    p: &Arc<CryptoProvider>,
    c: &Cert,
    suites: Option<&[rustls::SupportedCipherSuite]>,
) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let mut prov = (**p).clone();
    if let Some(s) = suites {
        prov.cipher_suites = s.to_vec();
    }
    let prov = Arc::new(prov);
    let mut s = ServerConfig::builder_with_provider(prov.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![c.der.clone()], c.key.clone_key())
        .unwrap();
    s.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    s.send_tls13_tickets = 0;
    let mut roots = RootCertStore::empty();
    roots.add(c.der.clone()).unwrap();
    let mut cc = ClientConfig::builder_with_provider(prov)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cc.resumption = rustls::client::Resumption::disabled();
    (Arc::new(s), Arc::new(cc))
}

// Moves TLS bytes; returns time spent in the server's calls.
fn pump(c: &mut ClientConnection, s: &mut ServerConnection, buf: &mut Vec<u8>) -> Duration {
    let mut server_time = Duration::ZERO;
    buf.clear();
    while c.wants_write() {
        c.write_tls(buf).unwrap();
    }
    if !buf.is_empty() {
        let t = Instant::now();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets().unwrap();
        }
        server_time += t.elapsed();
    }
    buf.clear();
    let t = Instant::now();
    while s.wants_write() {
        s.write_tls(buf).unwrap();
    }
    server_time += t.elapsed();
    if !buf.is_empty() {
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().unwrap();
        }
    }
    server_time
}

fn handshakes(name: &str, p: &Arc<CryptoProvider>, c: &Cert) {
    let (sc, cc) = configs(p, c, None);
    let mut buf = Vec::new();
    let n = 2000;
    let mut server = Duration::ZERO;
    let t = Instant::now();
    for _ in 0..n {
        let mut cl = ClientConnection::new(cc.clone(), "bench.test".try_into().unwrap()).unwrap();
        let t0 = Instant::now();
        let mut sv = ServerConnection::new(sc.clone()).unwrap();
        server += t0.elapsed();
        while cl.is_handshaking() || sv.is_handshaking() {
            server += pump(&mut cl, &mut sv, &mut buf);
        }
    }
    let all = t.elapsed();
    println!(
        "{name:>28}: server {:>8.0} handshakes/s ({:.1} us each), client+server {:.0}/s",
        n as f64 / server.as_secs_f64(),
        server.as_secs_f64() * 1e6 / n as f64,
        n as f64 / all.as_secs_f64()
    );
}

fn bulk(name: &str, p: &Arc<CryptoProvider>, c: &Cert, suite: rustls::SupportedCipherSuite) {
    let (sc, cc) = configs(p, c, Some(&[suite]));
    let mut cl = ClientConnection::new(cc, "bench.test".try_into().unwrap()).unwrap();
    let mut sv = ServerConnection::new(sc).unwrap();
    sv.set_buffer_limit(None);
    let mut buf = Vec::new();
    while cl.is_handshaking() || sv.is_handshaking() {
        pump(&mut cl, &mut sv, &mut buf);
    }
    let chunk = vec![7u8; 16384];
    let total: usize = 512 << 20;
    let (mut enc, mut dec) = (Duration::ZERO, Duration::ZERO);
    let mut tls = Vec::with_capacity(1 << 20);
    let mut plain = vec![0u8; 1 << 20];
    let mut sent = 0;
    while sent < total {
        tls.clear();
        let t = Instant::now();
        for _ in 0..32 {
            sv.writer().write_all(&chunk).unwrap();
        }
        while sv.wants_write() {
            sv.write_tls(&mut tls).unwrap();
        }
        enc += t.elapsed();
        sent += 32 * chunk.len();
        let t = Instant::now();
        let mut rd = &tls[..];
        while !rd.is_empty() {
            cl.read_tls(&mut rd).unwrap();
            cl.process_new_packets().unwrap();
            loop {
                match cl.reader().read(&mut plain) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        dec += t.elapsed();
    }
    let mb = total as f64 / (1 << 20) as f64;
    println!(
        "{name:>28}: encrypt {:>7.0} MiB/s, decrypt {:>7.0} MiB/s",
        mb / enc.as_secs_f64(),
        mb / dec.as_secs_f64()
    );
}

fn main() {
    // Arguments as `cargo bench` passes them (e.g. `--bench`) are ignored.
    let ecdsa = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
    let rsa = cert(&rcgen::PKCS_RSA_SHA256);
    #[allow(unused_mut)]
    let mut providers = vec![(
        "aws-lc-rs",
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )];
    #[cfg(feature = "bench-ring")]
    providers.push(("ring", Arc::new(rustls::crypto::ring::default_provider())));
    for (pname, p) in providers {
        handshakes(&format!("{pname} ECDSA-P256 TLS1.3"), &p, &ecdsa);
        handshakes(&format!("{pname} RSA-2048 TLS1.3"), &p, &rsa);
        for s in p.cipher_suites.clone() {
            if s.version() != &rustls::version::TLS13 {
                continue;
            }
            bulk(&format!("{pname} {:?}", s.suite()), &p, &ecdsa, s);
        }
    }
}
