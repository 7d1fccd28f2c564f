//! The URL under test: `http[s]://host[:port][/path][?query]`, resolved once up front so that
//! no worker ever blocks on DNS.

use std::net::{SocketAddr, ToSocketAddrs};

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https://`: TLS to the server, named by `host` (SNI and certificate check).
    pub tls: bool,
    /// The authority exactly as written (`example.com:8080`), sent as the Host header.
    pub authority: String,
    /// Host without brackets or port, for name resolution.
    pub host: String,
    pub port: u16,
    /// Path plus query, never empty (`/` when the URL has none).
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (false, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (true, rest),
            Some((scheme, _)) => {
                return Err(format!(
                    "{url}: only http:// and https:// URLs are supported, not {scheme}://"
                ))
            }
            None => return Err(format!("{url}: expected a URL like http://127.0.0.1:8080/")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let path = match path.split_once('#') {
            Some((p, _)) => p.to_string(),
            None => path,
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url}: expected http[s]://host[:port]/path"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url}: unclosed [ in the host"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(format!("{url}: unexpected text after ]")),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("{url}: {p:?} is not a port number"))?,
            None if tls => 443,
            None => 80,
        };
        if host.is_empty() {
            return Err(format!("{url}: the host is empty"));
        }
        Ok(Target {
            tls,
            authority: authority.to_string(),
            host: host.to_string(),
            port,
            path,
        })
    }

    /// Resolves the host once; connections go to the first address found.
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_and_path_split() {
        let t = Target::parse("http://127.0.0.1:8080/a/b?c=1").unwrap();
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 8080);
        assert_eq!(t.path, "/a/b?c=1");
    }

    #[test]
    fn defaults_fill_in_port_and_path() {
        let t = Target::parse("http://localhost").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let q = Target::parse("http://h:1?x").unwrap();
        assert_eq!(q.path, "/?x");
    }

    #[test]
    fn ipv6_literal_parses() {
        let t = Target::parse("http://[::1]:9000/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert_eq!(t.resolve().unwrap(), "[::1]:9000".parse().unwrap());
    }

    #[test]
    fn https_means_tls_and_port_443() {
        let t = Target::parse("https://example.com/x").unwrap();
        assert!(t.tls);
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("example.com", 443, "/x")
        );
        assert!(!Target::parse("http://example.com/").unwrap().tls);
    }

    #[test]
    fn other_schemes_and_bad_urls_are_refused() {
        assert!(Target::parse("ftp://example.com/").is_err());
        assert!(Target::parse("example.com").is_err());
        assert!(Target::parse("http://h:port/").is_err());
    }
}
