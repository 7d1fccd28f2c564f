//! TLS for `https://` targets (client) and `ringload serve --tls-cert` (server): rustls
//! configurations, certificate loading, and TLS failures sorted by kind.
//!
//! Crypto provider: ring, not aws-lc-rs. ring's key exchange groups are X25519, P-256 and
//! P-384, the same ones OpenSSL 3.0 (nginx, HAProxy, h2load) offers, so a handshake against any
//! of the proxies compared is the same handshake; aws-lc-rs's default adds the post-quantum
//! X25519MLKEM768 hybrid, which a rustls server (ringlb) would pick and OpenSSL 3.0 cannot,
//! making one proxy's handshakes dearer than the others'. ring also builds without cmake or
//! a C toolchain beyond cc, which keeps CI's builds short. The generator's own crypto cost is
//! not what it measures.
//!
//! Sessions are not resumed unless asked (`--tls-resume`): with `--no-keepalive` every
//! request then pays a full handshake, the worst case a server must carry.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// Where the system's trusted roots usually are (Debian/Ubuntu, then Fedora/RHEL), tried
/// when neither --cacert nor --insecure is given; `SSL_CERT_FILE` comes first.
const SYSTEM_ROOTS: [&str; 2] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// How the client checks the server's certificate.
#[derive(Debug, Clone)]
pub enum Verify {
    /// Against these PEM roots.
    Roots(std::path::PathBuf),
    /// Not at all (`--insecure`).
    Nothing,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The client configuration every generator connection shares: TLS 1.2 and 1.3, ALPN
/// `http/1.1`, no session resumption unless `resume`.
pub fn client_config(verify: &Verify, resume: bool) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let mut config = match verify {
        Verify::Roots(path) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider())))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// The roots to verify against when the command line names none: `SSL_CERT_FILE`, else the
/// system bundle.
pub fn default_roots() -> Result<Verify, String> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    from_env
        .into_iter()
        .chain(SYSTEM_ROOTS.iter().map(std::path::PathBuf::from))
        .find(|p| p.is_file())
        .map(Verify::Roots)
        .ok_or_else(|| {
            "https: no trusted roots found (SSL_CERT_FILE, /etc/ssl/certs/ca-certificates.crt): \
             give --cacert FILE, or --insecure to skip verification"
                .to_string()
        })
}

/// The name the client asks for (SNI) and checks the certificate against.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host}: not a TLS server name: {e}"))
}

/// The server configuration of `ringload serve --tls-cert CERT --tls-key KEY`: TLS 1.2 and
/// 1.3, ALPN `http/1.1`.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{}: no PEM private key: {e}", key.display()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: cannot read PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// What went wrong in a TLS handshake or record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server's certificate did not verify (unknown issuer, wrong name, expired).
    Certificate,
    /// The server sent a fatal alert.
    Alert,
    /// Anything else: a protocol error, the peer closing or resetting mid-handshake.
    Other,
}

/// Which kind of TLS failure an error from a handshake or a TLS read is.
pub fn failure(err: &io::Error) -> Failure {
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(_)) => Failure::Certificate,
        Some(rustls::Error::AlertReceived(_)) => Failure::Alert,
        _ => Failure::Other,
    }
}

/// `--insecure`: neither the certificate nor the handshake signature is checked, so the
/// generator spends nothing on verification (the server still signs every handshake).
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
