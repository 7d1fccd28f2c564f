//! The real client address behind trusted proxies: nginx's realip module
//! (`set_real_ip_from`, `real_ip_header`, `real_ip_recursive on`) as pure functions.
//!
//! A connection's peer is replaced only when the peer itself is trusted (`real_ip_from`).
//! Then the addresses in the configured header (`X-Forwarded-For`, `X-Real-IP`, any other
//! header, or the source address of the PROXY protocol header) are walked from the right,
//! the end the nearest proxy appended to: trusted addresses are skipped, and the first one
//! that is not trusted is the client. Everything to its left was written by the client or
//! by proxies nobody vouches for, so a spoofed `X-Forwarded-For` never gets past it. If every
//! address is trusted the leftmost is taken; a malformed entry ends the walk at the last
//! good address to its right (nginx's `ngx_http_get_forwarded_addr_internal`).
//!
//! IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack socket reports for an
//! IPv4 peer) match IPv4 ranges, and a client address found in that form is reported as
//! IPv4, so that `ip_hash` and the access log see one spelling per client.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;

/// Where the real address is read from (`real_ip_header`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A request header, by its lower-case name ("x-forwarded-for", "x-real-ip", ...).
    /// Every occurrence counts, in order, as one comma-separated list (as nginx joins
    /// repeated `X-Forwarded-For` lines).
    Header(String),
    /// The source address of the connection's PROXY protocol header.
    ProxyProtocol,
}

impl Source {
    /// From the configured `real_ip_header` value (case-insensitive).
    pub fn parse(value: &str) -> Source {
        if value.eq_ignore_ascii_case("proxy_protocol") {
            Source::ProxyProtocol
        } else {
            Source::Header(value.to_ascii_lowercase())
        }
    }
}

/// One `real_ip_from` entry: an address or a CIDR range, IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trusted(IpNet);

/// Why a `real_ip_from` entry cannot be used; the message says how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address or CIDR range (e.g. \"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\", \"::1\")")]
pub struct BadTrusted(pub String);

impl FromStr for Trusted {
    type Err = BadTrusted;

    fn from_str(s: &str) -> Result<Trusted, BadTrusted> {
        let net = match s.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => IpNet::from(s.parse::<IpAddr>().map_err(|_| BadTrusted(s.into()))?),
        };
        // A range written with host bits set ("10.1.2.3/8") means its network, as in
        // nginx (which warns that the low bits are meaningless).
        Ok(Trusted(net.trunc()))
    }
}

impl std::fmt::Display for Trusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The `real_ip_from` list with the `real_ip_header` it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealIp {
    pub trusted: Vec<Trusted>,
    pub source: Source,
}

/// A client address found by [`RealIp`]. `port` is the port written with the address
/// (`[2001:db8::1]:443`, `192.0.2.1:5000`, or the PROXY header's), if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl RealIp {
    /// Whether `ip` is in the trusted list.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|t| t.0.contains(&ip))
    }

    /// The client behind `peer` according to the header values (every occurrence of the
    /// configured header, in order; the PROXY header's source for
    /// [`Source::ProxyProtocol`], which [`RealIp::from_proxy_protocol`] wraps). `None`:
    /// keep the peer (an untrusted peer, no header, or a malformed last entry).
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        values: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> Option<Client> {
        if !self.trusts(peer) {
            return None;
        }
        let mut found = None;
        // Right to left over the values, and within each value over its entries.
        for value in values.rev() {
            for entry in value.rsplit(|&b| b == b',') {
                let entry = crate::http::trim(entry);
                if entry.is_empty() {
                    continue; // "a, , b" and trailing commas: nginx skips them too
                }
                let Some(client) = parse_entry(entry) else {
                    return found;
                };
                found = Some(client);
                if !self.trusts(client.ip) {
                    return found;
                }
            }
        }
        found
    }

    /// [`RealIp::client`] for `real_ip_header = "proxy_protocol"`: the PROXY header's
    /// source replaces a trusted peer.
    pub fn from_proxy_protocol(&self, peer: IpAddr, source: SocketAddr) -> Option<Client> {
        self.trusts(peer).then_some(Client {
            ip: source.ip().to_canonical(),
            port: Some(source.port()),
        })
    }
}

/// One list entry: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:80` (nginx's `ngx_parse_addr_port`). Anything else (`unknown`, an
/// RFC 7239 obfuscated identifier, garbage) is `None`.
fn parse_entry(entry: &[u8]) -> Option<Client> {
    let s = std::str::from_utf8(entry).ok()?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(Client {
            ip: ip.to_canonical(),
            port: None,
        });
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let ip = inner.parse::<std::net::Ipv6Addr>().ok()?;
        return Some(Client {
            ip: IpAddr::V6(ip).to_canonical(),
            port: None,
        });
    }
    let sa = s.parse::<SocketAddr>().ok()?;
    Some(Client {
        ip: sa.ip().to_canonical(),
        port: Some(sa.port()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real(trusted: &[&str], header: &str) -> RealIp {
        RealIp {
            trusted: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            source: Source::parse(header),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client(r: &RealIp, peer: &str, values: &[&str]) -> Option<String> {
        r.client(ip(peer), values.iter().map(|v| v.as_bytes()))
            .map(|c| match c.port {
                Some(p) => format!("{} {p}", c.ip),
                None => c.ip.to_string(),
            })
    }

    #[test]
    fn trusted_entries_parse_as_addresses_and_ranges() {
        let r = real(
            &[
                "10.0.0.0/8",
                "192.0.2.7",
                "2001:db8::/32",
                "::1",
                "172.16.5.4/12",
            ],
            "X-Forwarded-For",
        );
        assert!(r.trusts(ip("10.200.0.1")));
        assert!(r.trusts(ip("192.0.2.7")));
        assert!(!r.trusts(ip("192.0.2.8")));
        assert!(r.trusts(ip("2001:db8:ffff::1")));
        assert!(!r.trusts(ip("2001:db9::1")));
        assert!(r.trusts(ip("::1")));
        // Host bits are dropped: 172.16.5.4/12 is 172.16.0.0/12.
        assert!(r.trusts(ip("172.31.255.255")));
        assert_eq!(r.trusted[4].to_string(), "172.16.0.0/12");
        // A v4-mapped v6 peer matches v4 ranges.
        assert!(r.trusts(ip("::ffff:10.1.2.3")));
        assert!(!r.trusts(ip("::ffff:11.1.2.3")));
        for bad in [
            "10.0.0.0/33",
            "10.0.0",
            "localhost",
            "",
            "::1/129",
            "10.0.0.0/",
        ] {
            let e = bad.parse::<Trusted>().unwrap_err();
            assert!(e.to_string().contains("e.g."), "{e}");
        }
        assert_eq!(
            Source::parse("X-Real-IP"),
            Source::Header("x-real-ip".into())
        );
        assert_eq!(Source::parse("PROXY_protocol"), Source::ProxyProtocol);
    }

    #[test]
    fn the_client_is_the_last_untrusted_address() {
        let r = real(&["10.0.0.0/8"], "X-Forwarded-For");
        assert_eq!(
            client(&r, "10.0.0.1", &["203.0.113.9, 10.0.0.5"]).as_deref(),
            Some("203.0.113.9")
        );
        // A proxy chain: everything trusted up to the client.
        assert_eq!(
            client(
                &r,
                "10.0.0.1",
                &["198.51.100.1, 203.0.113.9,10.2.2.2 , 10.0.0.5"]
            )
            .as_deref(),
            Some("203.0.113.9")
        );
        // Repeated header lines are one list, the last line being the nearest hop.
        assert_eq!(
            client(&r, "10.0.0.1", &["203.0.113.9", "10.3.3.3"]).as_deref(),
            Some("203.0.113.9")
        );
        // Every address trusted: the leftmost.
        assert_eq!(
            client(&r, "10.0.0.1", &["10.9.9.9, 10.0.0.5"]).as_deref(),
            Some("10.9.9.9")
        );
        // Ports and brackets, v6 and v4-mapped clients.
        assert_eq!(
            client(&r, "10.0.0.1", &["[2001:db8::7]:4431"]).as_deref(),
            Some("2001:db8::7 4431")
        );
        assert_eq!(
            client(&r, "10.0.0.1", &["192.0.2.1:80"]).as_deref(),
            Some("192.0.2.1 80")
        );
        assert_eq!(
            client(&r, "10.0.0.1", &["::ffff:192.0.2.1"]).as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(
            client(&r, "::ffff:10.0.0.1", &["[2001:db8::7]"]).as_deref(),
            Some("2001:db8::7")
        );
        // Empty list items are skipped.
        assert_eq!(
            client(&r, "10.0.0.1", &[" 192.0.2.3 ,, ,"]).as_deref(),
            Some("192.0.2.3")
        );
    }

    #[test]
    fn a_spoofed_header_from_an_untrusted_peer_is_never_believed() {
        let r = real(&["10.0.0.0/8", "::1"], "X-Forwarded-For");
        for spoof in [
            "10.0.0.2",
            "127.0.0.1",
            "203.0.113.66, 10.0.0.5",
            "::1",
            "1.1.1.1",
        ] {
            assert_eq!(client(&r, "198.51.100.200", &[spoof]), None, "{spoof}");
            assert_eq!(client(&r, "2001:db8::5", &[spoof]), None, "{spoof}");
        }
        // From a trusted proxy, what the client wrote to the left of its own address
        // is ignored: the proxy appended the client's real address last.
        assert_eq!(
            client(&r, "10.0.0.1", &["10.0.0.2, 127.0.0.1, 198.51.100.200"]).as_deref(),
            Some("198.51.100.200")
        );
        // Without a header, nothing changes.
        assert_eq!(client(&r, "10.0.0.1", &[]), None);
    }

    #[test]
    fn a_malformed_entry_stops_the_walk() {
        let r = real(&["10.0.0.0/8"], "X-Forwarded-For");
        // The last entry malformed: nothing found, the peer stays.
        assert_eq!(client(&r, "10.0.0.1", &["203.0.113.9, unknown"]), None);
        // A malformed entry after trusted ones: the last good one to its right.
        assert_eq!(
            client(&r, "10.0.0.1", &["203.0.113.9, garbage, 10.4.4.4"]).as_deref(),
            Some("10.4.4.4")
        );
        for bad in [
            "1.2.3",
            "[::1",
            "::1]:80",
            "1.2.3.4:99999",
            "_hidden",
            "1.2.3.4 5",
        ] {
            assert_eq!(parse_entry(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn x_real_ip_and_proxy_protocol() {
        let r = real(&["192.0.2.0/24"], "X-Real-IP");
        assert_eq!(
            client(&r, "192.0.2.10", &["198.51.100.4"]).as_deref(),
            Some("198.51.100.4")
        );
        assert_eq!(client(&r, "198.51.100.9", &["198.51.100.4"]), None);
        let pp = real(&["192.0.2.0/24"], "proxy_protocol");
        let src: SocketAddr = "[::ffff:203.0.113.1]:5555".parse().unwrap();
        assert_eq!(
            pp.from_proxy_protocol(ip("192.0.2.1"), src),
            Some(Client {
                ip: ip("203.0.113.1"),
                port: Some(5555)
            })
        );
        assert_eq!(pp.from_proxy_protocol(ip("198.51.100.1"), src), None);
    }
}
