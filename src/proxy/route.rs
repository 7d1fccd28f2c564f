//! Routing a request: listen address + Host -> `[[server]]` block (exact name, then the
//! longest `*.` wildcard, then the address's default, the first block listening on it),
//! then the longest matching `location` prefix -> upstream.

use std::net::SocketAddr;

use crate::config::{Config, Location, ServerName, VirtualServer};

#[derive(Debug, Default)]
pub struct Routes {
    /// Server block indexes per listen address, in file order. A short list scanned per
    /// request: a handful of addresses compare faster than a SipHash lookup.
    by_listen: Vec<(SocketAddr, Vec<usize>)>,
}

impl Routes {
    pub fn build(config: &Config) -> Routes {
        let mut by_listen: Vec<(SocketAddr, Vec<usize>)> = Vec::new();
        for (i, vs) in config.servers.iter().enumerate() {
            for addr in &vs.listen {
                match by_listen.iter_mut().find(|(a, _)| a == addr) {
                    Some((_, blocks)) => blocks.push(i),
                    None => by_listen.push((*addr, vec![i])),
                }
            }
        }
        Routes { by_listen }
    }

    /// Every address some server block listens on.
    pub fn listen_addrs(&self) -> impl Iterator<Item = &SocketAddr> {
        self.by_listen.iter().map(|(a, _)| a)
    }

    pub fn listens_on(&self, addr: SocketAddr) -> bool {
        self.by_listen.iter().any(|(a, _)| *a == addr)
    }

    /// The server block for a request that came in on `listen` with `host` (Host header
    /// or absolute-form authority, port included or not).
    pub fn server<'c>(
        &self,
        config: &'c Config,
        listen: SocketAddr,
        host: Option<&[u8]>,
    ) -> Option<&'c VirtualServer> {
        let (_, blocks) = match self.by_listen.as_slice() {
            // One listen address: every connection came in on it (or on one a reload just
            // removed, which may as well finish on the remaining block).
            [only] => only,
            all => all.iter().find(|(a, _)| *a == listen)?,
        };
        let default = *blocks.first()?;
        if blocks.len() == 1 {
            return Some(&config.servers[default]);
        }
        let Some(host) = host.map(strip_port) else {
            return Some(&config.servers[default]);
        };
        let names = blocks.iter().map(|&i| &config.servers[i].server_names[..]);
        let pick = ServerName::pick(names, host).map_or(default, |k| blocks[k]);
        Some(&config.servers[pick])
    }
}

/// The longest location whose path prefixes `target` (locations are sorted longest first).
pub fn location<'v>(vs: &'v VirtualServer, target: &[u8]) -> Option<&'v Location> {
    let path = if target.first() == Some(&b'/') {
        target
    } else {
        b"/"
    };
    vs.locations
        .iter()
        .find(|l| path.starts_with(l.path.as_bytes()))
}

fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return host
            .iter()
            .position(|&b| b == b']')
            .map_or(host, |i| &host[..=i]);
    }
    host.iter()
        .position(|&b| b == b':')
        .map_or(host, |i| &host[..i])
}

/// The server block's first exact name (`$host` when the request names none, as nginx).
pub(super) fn first_exact_name(vs: &VirtualServer) -> &str {
    vs.server_names
        .iter()
        .find_map(|n| match n {
            ServerName::Exact(n) => Some(n.as_str()),
            ServerName::Wildcard(_) => None,
        })
        .unwrap_or("")
}
