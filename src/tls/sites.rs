//! From the configuration to rustls: one `ServerConfig` per TLS server block (its certificate,
//! its `tls_protocols`, ALPN `h2` only where `http2` is on), grouped per listen address so a
//! handshake can pick its block by SNI after reading the ClientHello. Built whole for each
//! configuration generation (start and every reload) from the process-wide [`TlsKeys`], so
//! that sessions resume on every worker and across reloads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::certs::{self, CertError, LoadedCert};
use crate::config::{Config, ServerName, TlsProtocols};

/// TLS 1.2 sessions remembered for session-ID resumption (TLS 1.3 and TLS 1.2 clients that
/// support tickets resume statelessly). About 200 bytes each.
const SESSION_CACHE: usize = 16 * 1024;
/// ALPN protocol ids.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// One server block's TLS settings, as the validated configuration gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteTls {
    /// The block's `server_name`s (empty = any): what SNI is matched against.
    pub server_names: Vec<ServerName>,
    pub certificate: PathBuf,
    pub certificate_key: PathBuf,
    /// The chain and key validation already loaded and checked (read again if absent).
    pub loaded: Option<LoadedCert>,
    pub protocols: TlsProtocols,
    /// Offer `h2` by ALPN.
    pub http2: bool,
}

/// What outlives configuration generations: the crypto provider, the session ticket keys
/// (one secret, rotated by rustls every 6 hours, the previous key still accepted) and the
/// TLS 1.2 session cache. Every `ServerConfig` of every generation shares them, so a ticket
/// issued by one worker resumes on any other, before or after a reload.
pub struct TlsKeys {
    provider: Arc<CryptoProvider>,
    ticketer: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
}

impl std::fmt::Debug for TlsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsKeys").finish_non_exhaustive()
    }
}

impl TlsKeys {
    /// The process's keys, made on first use: every generation's configurations share them.
    pub fn global() -> &'static TlsKeys {
        static KEYS: std::sync::OnceLock<TlsKeys> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| TlsKeys::new().expect("the system's random number generator"))
    }

    pub fn new() -> Result<TlsKeys, rustls::Error> {
        Ok(TlsKeys {
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            ticketer: rustls::crypto::aws_lc_rs::Ticketer::new()?,
            sessions: rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE),
        })
    }

    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }
}

/// A configuration problem of the TLS side of a generation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("listen address {addr}: every server block on a TLS address needs tls_certificate (the connection is TLS before a Host is known)")]
    Mixed { addr: SocketAddr },
    #[error("{}: tls_protocols enables no protocol rustls can speak", path.display())]
    NoProtocol { path: PathBuf },
}

/// The certificate of one block, whatever the client asks (the block was already chosen).
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// One TLS server block of a listen address.
#[derive(Debug)]
struct Site {
    names: Vec<ServerName>,
    config: Arc<ServerConfig>,
}

/// The TLS side of one listen address: its blocks in file order, the first the default.
#[derive(Debug)]
pub struct AddrTls {
    sites: Vec<Site>,
}

impl AddrTls {
    /// The configuration for a ClientHello naming `sni`: the block with that exact name,
    /// else the one with the longest matching `*.` wildcard, else the first block (as
    /// nginx picks a certificate, and as requests are routed by Host).
    pub fn choose(&self, sni: Option<&str>) -> &Arc<ServerConfig> {
        let i = sni.and_then(|host| {
            ServerName::pick(self.sites.iter().map(|s| &s.names[..]), host.as_bytes())
        });
        let i = i.unwrap_or(0);
        &self.sites[i].config
    }
}

/// Every TLS listen address of one configuration generation.
#[derive(Debug, Default)]
pub struct TlsTable {
    by_addr: Vec<(SocketAddr, Arc<AddrTls>)>,
}

impl TlsTable {
    /// The TLS side of a validated configuration, with the process's keys. Validation has
    /// loaded and checked every certificate, so this fails only if a file became unreadable
    /// in between; such an address is left out (its handshakes fail) and logged.
    pub fn for_config(config: &Config) -> TlsTable {
        let sites: Vec<Option<SiteTls>> = config
            .servers
            .iter()
            .map(|vs| {
                vs.tls.as_ref().map(|t| SiteTls {
                    server_names: vs.server_names.clone(),
                    certificate: t.certificate.clone(),
                    certificate_key: t.certificate_key.clone(),
                    loaded: t.loaded.clone(),
                    protocols: t.protocols,
                    http2: vs.http2,
                })
            })
            .collect();
        let blocks: Vec<(&[SocketAddr], Option<&SiteTls>)> = config
            .servers
            .iter()
            .zip(&sites)
            .map(|(vs, s)| (&vs.listen[..], s.as_ref()))
            .collect();
        match TlsTable::build(&blocks, TlsKeys::global(), SystemTime::now()) {
            Ok(t) => t,
            Err(errors) => {
                for e in &errors {
                    tracing::error!("TLS: {e}");
                }
                TlsTable::default()
            }
        }
    }

    /// Loads and checks every certificate of `blocks` (each server block's listen addresses
    /// and TLS settings, in file order) and builds the rustls configurations. Every problem
    /// is returned, each naming its file; the caller keeps its previous table on error.
    pub fn build(
        blocks: &[(&[SocketAddr], Option<&SiteTls>)],
        keys: &TlsKeys,
        now: SystemTime,
    ) -> Result<TlsTable, Vec<TlsError>> {
        let mut errors = Vec::new();
        // Per block: its built configuration (None: plain, or failed).
        let mut configs: Vec<Option<Arc<ServerConfig>>> = Vec::with_capacity(blocks.len());
        for (_, site) in blocks {
            let Some(site) = site else {
                configs.push(None);
                continue;
            };
            match server_config(site, keys, now) {
                Ok(c) => configs.push(Some(c)),
                Err(e) => {
                    if !errors.contains(&e) {
                        errors.push(e);
                    }
                    configs.push(None);
                }
            }
        }
        let mut by_addr: Vec<(SocketAddr, Vec<usize>)> = Vec::new();
        for (i, (listen, _)) in blocks.iter().enumerate() {
            for addr in listen.iter() {
                match by_addr.iter_mut().find(|(a, _)| a == addr) {
                    Some((_, v)) => v.push(i),
                    None => by_addr.push((*addr, vec![i])),
                }
            }
        }
        let mut table = TlsTable::default();
        for (addr, idx) in by_addr {
            let tls = idx.iter().filter(|&&i| blocks[i].1.is_some()).count();
            if tls == 0 {
                continue;
            }
            if tls != idx.len() {
                errors.push(TlsError::Mixed { addr });
                continue;
            }
            let sites: Option<Vec<Site>> = idx
                .iter()
                .map(|&i| {
                    Some(Site {
                        names: blocks[i].1?.server_names.clone(),
                        config: configs[i].clone()?,
                    })
                })
                .collect();
            if let Some(sites) = sites {
                table.by_addr.push((addr, Arc::new(AddrTls { sites })));
            }
        }
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(errors)
        }
    }

    /// The TLS side of `addr`; `None` for a plain HTTP address.
    pub fn get(&self, addr: SocketAddr) -> Option<&Arc<AddrTls>> {
        self.by_addr
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, t)| t)
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }
}

/// One block's rustls configuration.
fn server_config(
    site: &SiteTls,
    keys: &TlsKeys,
    now: SystemTime,
) -> Result<Arc<ServerConfig>, TlsError> {
    let certified = certs::load(
        &site.certificate,
        &site.certificate_key,
        &keys.provider,
        now,
    )?;
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if site.protocols.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if site.protocols.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let no_protocol = || TlsError::NoProtocol {
        path: site.certificate.clone(),
    };
    if versions.is_empty() {
        return Err(no_protocol());
    }
    let mut config = ServerConfig::builder_with_provider(keys.provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|_| no_protocol())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(certified)));
    config.alpn_protocols = if site.http2 {
        vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()]
    } else {
        vec![ALPN_HTTP11.to_vec()]
    };
    config.ticketer = keys.ticketer.clone();
    config.session_storage = keys.sessions.clone();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<ServerName> {
        list.iter()
            .map(|n| match n.strip_prefix('*') {
                Some(suffix) => ServerName::Wildcard(suffix.to_string()),
                None => ServerName::Exact(n.to_string()),
            })
            .collect()
    }

    #[test]
    fn sni_picks_exact_then_longest_wildcard_then_the_first_block() {
        let blocks = [
            names(&["default.test"]),
            names(&["*.example.com"]),
            names(&["*.api.example.com", "exact.example.com"]),
        ];
        let p =
            |h: &str| ServerName::pick(blocks.iter().map(|b| &b[..]), h.as_bytes()).unwrap_or(0);
        assert_eq!(p("default.test"), 0);
        assert_eq!(p("www.example.com"), 1);
        assert_eq!(p("v1.api.example.com"), 2);
        assert_eq!(p("EXACT.example.com"), 2);
        assert_eq!(
            p("example.com"),
            0,
            "a wildcard needs a label before its suffix"
        );
        assert_eq!(p("unknown.test"), 0);
    }
}
