//! TLS termination for client connections (rustls with the aws-lc-rs provider).
//!
//! - [`sites`]: the configuration side: each TLS server block's certificate, protocols and
//!   ALPN offer as a rustls `ServerConfig`, grouped per listen address ([`TlsTable`]), built
//!   for every configuration generation from the process-wide [`TlsKeys`] (session tickets
//!   and cache, so sessions resume on any worker and across reloads).
//! - [`certs`]: loading PEM files with errors that name the file and the problem.
//! - [`handshake`]: the handshake on the accepting worker ([`accept`]), SNI choosing the
//!   server block, with a deadline and failure reasons counted.
//! - [`stream`]: [`TlsStream`], the connection after the handshake, for the HTTP/1.1 proxy
//!   (monoio's rent traits) and for HTTP/2 (tokio's poll traits).
//!
//! Kernel TLS is not used: see `docs/tls.md` for how it would plug in.

pub mod certs;
pub mod handshake;
pub mod sites;
pub mod stream;
mod x509;

pub use certs::{CertError, CertProblem, LoadedCert};
pub use handshake::{accept, HandshakeFailure, TlsStats};
pub use sites::{AddrTls, SiteTls, TlsError, TlsKeys, TlsTable, ALPN_H2, ALPN_HTTP11};
pub use stream::TlsStream;
