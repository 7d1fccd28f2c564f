//! The hook through which validation checks the files of a server block's TLS settings.
//!
//! Validation (`validate_server.rs`) calls [`check`] once per `[[server]]` block with
//! `tls_certificate` and `tls_certificate_key`, and reports an `Err` at the line and column
//! of the key it names, so `ringlb check`, start-up and SIGHUP all refuse a bad certificate
//! with `file:line:col: server[N].tls_certificate: ...` (a reload keeps the old
//! configuration). Today it only checks that both files can be read; the TLS module makes
//! it load the PEM chain and key, check that they match and are in date, and may keep what
//! it loaded in the [`TlsCfg`] it is given, so that the file is read once per load.

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

/// Checks the files `tls` names.
pub fn check(tls: &mut TlsCfg) -> Result<(), TlsFileError> {
    for (file, path) in [
        (TlsFile::Certificate, &tls.certificate),
        (TlsFile::Key, &tls.certificate_key),
    ] {
        let problem = match std::fs::File::open(path).and_then(|f| f.metadata()) {
            Ok(m) if m.is_dir() => format!("{} is a directory, not a PEM file", path.display()),
            Ok(_) => continue,
            Err(e) => format!("cannot read {}: {e}", path.display()),
        };
        return Err(TlsFileError {
            file,
            message: problem,
        });
    }
    Ok(())
}
