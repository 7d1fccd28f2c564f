//! Loading and checking a server block's certificate chain and private key (PEM files), with
//! an error that names the file and says what is wrong with it, so that a bad file is refused
//! at start and on reload instead of failing handshakes later.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use rustls::sign::CertifiedKey;

use super::x509;

/// A certificate or key file that cannot be served, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct CertError {
    pub path: PathBuf,
    pub problem: CertProblem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertProblem {
    #[error("cannot read: {0}")]
    Unreadable(String),
    #[error("not PEM: {0}")]
    NotPem(String),
    #[error("no certificate in the file (expected a \"-----BEGIN CERTIFICATE-----\" section, leaf first)")]
    NoCertificate,
    #[error("no private key in the file (expected a \"-----BEGIN PRIVATE KEY-----\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" section)")]
    NoPrivateKey,
    #[error("unsupported key type ({0}); use an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key")]
    UnsupportedKey(String),
    #[error("the private key does not match the certificate (the key file belongs to another certificate)")]
    KeyMismatch,
    #[error("the certificate is not valid X.509: {0}")]
    BadCertificate(String),
    #[error("the certificate expired on {not_after} (valid from {not_before})")]
    Expired {
        not_before: String,
        not_after: String,
    },
    #[error("the certificate is not yet valid: valid from {not_before} until {not_after}")]
    NotYetValid {
        not_before: String,
        not_after: String,
    },
}

/// A certificate chain and key loaded and checked by [`load`], carried in the validated
/// configuration so that the files are read once per load. Equal only to itself (a reload
/// that re-reads the same files makes a new one).
#[derive(Clone)]
pub struct LoadedCert(pub Arc<CertifiedKey>);

impl PartialEq for LoadedCert {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LoadedCert {}

impl std::fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoadedCert({} certificates)", self.0.cert.len())
    }
}

impl CertProblem {
    /// Whether the problem is with the key file (rather than the certificate file).
    pub fn is_key_problem(&self) -> bool {
        matches!(
            self,
            CertProblem::NoPrivateKey | CertProblem::UnsupportedKey(_) | CertProblem::KeyMismatch
        )
    }
}

fn fail(path: &Path, problem: CertProblem) -> CertError {
    CertError {
        path: path.to_path_buf(),
        problem,
    }
}

/// Reads every PEM section of a file.
fn sections(path: &Path) -> Result<Vec<(SectionKind, Vec<u8>)>, CertError> {
    if path.is_dir() {
        let problem = CertProblem::Unreadable("it is a directory, not a PEM file".into());
        return Err(fail(path, problem));
    }
    let bytes =
        std::fs::read(path).map_err(|e| fail(path, CertProblem::Unreadable(e.to_string())))?;
    let mut out = Vec::new();
    for s in <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes) {
        out.push(s.map_err(|e| fail(path, CertProblem::NotPem(e.to_string())))?);
    }
    if out.is_empty() {
        return Err(fail(
            path,
            CertProblem::NotPem("no \"-----BEGIN ...-----\" section found".into()),
        ));
    }
    Ok(out)
}

/// Loads a certificate chain and its key and checks them against each other and the clock
/// (`now`): the key is one the provider can sign with, it belongs to the leaf certificate,
/// and the leaf is valid now. `key_path` may name the certificate file itself.
pub fn load(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<Arc<CertifiedKey>, CertError> {
    let chain: Vec<CertificateDer<'static>> = sections(cert_path)?
        .into_iter()
        .filter(|(k, _)| *k == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der))
        .collect();
    let Some(leaf) = chain.first() else {
        return Err(fail(cert_path, CertProblem::NoCertificate));
    };
    let key = sections(key_path)?
        .into_iter()
        .find_map(|(k, der)| match k {
            SectionKind::PrivateKey => Some(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der))),
            SectionKind::RsaPrivateKey => Some(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der))),
            SectionKind::EcPrivateKey => Some(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der))),
            _ => None,
        })
        .ok_or_else(|| fail(key_path, CertProblem::NoPrivateKey))?;
    let validity = x509::validity(leaf.as_ref())
        .map_err(|e| fail(cert_path, CertProblem::BadCertificate(e.into())))?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| fail(key_path, CertProblem::UnsupportedKey(e.to_string())))?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(fail(key_path, CertProblem::KeyMismatch))
        }
        // The provider cannot derive the public key (never for aws-lc-rs' key types): the
        // handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => return Err(fail(cert_path, CertProblem::BadCertificate(e.to_string()))),
    }
    let unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let dates = || (x509::format(validity.0), x509::format(validity.1));
    if unix < validity.0 {
        let (not_before, not_after) = dates();
        return Err(fail(
            cert_path,
            CertProblem::NotYetValid {
                not_before,
                not_after,
            },
        ));
    }
    if unix > validity.1 {
        let (not_before, not_after) = dates();
        return Err(fail(
            cert_path,
            CertProblem::Expired {
                not_before,
                not_after,
            },
        ));
    }
    Ok(Arc::new(certified))
}
