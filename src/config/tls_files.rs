//! The hook through which validation checks the files of a server block's TLS settings.
//!
//! Validation (`validate_server.rs`) calls [`check`] once per `[[server]]` block with
//! `tls_certificate` and `tls_certificate_key`, and reports an `Err` at the line and column
//! of the key it names, so `ringlb check`, start-up and SIGHUP all refuse a bad certificate
//! with `file:line:col: server[N].tls_certificate: ...` (a reload keeps the old
//! configuration). It loads the PEM chain and key through the TLS module, which checks that
//! they match and are in date, and keeps what it loaded in the [`TlsCfg`], so that the files
//! are read once per load.

use super::model::TlsCfg;

/// Which of the two files a complaint is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Certificate,
    Key,
}

/// What is wrong with one of the files, said so that the user can fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFileError {
    pub file: TlsFile,
    pub message: String,
}

/// Loads and checks the files `tls` names (PEM, a certificate and a private key that
/// match, the certificate valid now) and keeps what was loaded in `tls.loaded`.
pub fn check(tls: &mut TlsCfg) -> Result<(), TlsFileError> {
    let provider = crate::tls::TlsKeys::global().provider();
    match crate::tls::certs::load(
        &tls.certificate,
        &tls.certificate_key,
        provider,
        std::time::SystemTime::now(),
    ) {
        Ok(key) => {
            tls.loaded = Some(crate::tls::certs::LoadedCert(key));
            Ok(())
        }
        Err(e) => Err(TlsFileError {
            file: if e.path == tls.certificate && !e.problem.is_key_problem() {
                TlsFile::Certificate
            } else {
                TlsFile::Key
            },
            message: e.to_string(),
        }),
    }
}
