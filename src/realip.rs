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

use ipnet::IpNet;

use crate::config::{RealIpHeader, VirtualServer};
use crate::http::request::RequestHead;

/// A client address found behind trusted proxies. `port` is the port written with the
/// address (`[2001:db8::1]:443`, `192.0.2.1:5000`, or the PROXY header's), if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

/// The real client of a request on a connection from `peer` per the server block's
/// `real_ip_from` / `real_ip_header`: `proxied` is the source address of the connection's
/// PROXY protocol header, if it had one. `None`: keep the peer (realip off, an untrusted
/// peer, no usable address).
pub fn for_request(
    vs: &VirtualServer,
    peer: IpAddr,
    proxied: Option<SocketAddr>,
    head: &RequestHead,
    buf: &[u8],
) -> Option<Client> {
    if vs.real_ip_from.is_empty() {
        return None;
    }
    match &vs.real_ip_header {
        RealIpHeader::ProxyProtocol => from_proxy_protocol(&vs.real_ip_from, peer, proxied?),
        RealIpHeader::Header(name) => {
            let values = head
                .headers
                .iter()
                .filter(|h| h.name(buf).eq_ignore_ascii_case(name.as_bytes()))
                .map(|h| h.value(buf));
            client(&vs.real_ip_from, peer, values)
        }
    }
}

/// Whether `ip` is in the trusted list (a v4-mapped IPv6 address as its IPv4 address).
pub fn trusts(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|t| t.contains(&ip))
}

/// The client behind `peer` according to the header values (every occurrence of the
/// configured header, in order). `None`: keep the peer (an untrusted peer, no header, or a
/// malformed last entry).
pub fn client<'a>(
    trusted: &[IpNet],
    peer: IpAddr,
    values: impl DoubleEndedIterator<Item = &'a [u8]>,
) -> Option<Client> {
    if !trusts(trusted, peer) {
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
            if !trusts(trusted, client.ip) {
                return found;
            }
        }
    }
    found
}

/// `real_ip_header = "proxy_protocol"`: the PROXY header's source replaces a trusted peer.
pub fn from_proxy_protocol(trusted: &[IpNet], peer: IpAddr, source: SocketAddr) -> Option<Client> {
    trusts(trusted, peer).then_some(Client {
        ip: source.ip().to_canonical(),
        port: Some(source.port()),
    })
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
    use crate::http::request;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|t| {
                t.parse::<IpNet>()
                    .unwrap_or_else(|_| IpNet::from(t.parse::<IpAddr>().unwrap()))
            })
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn walk(trusted: &[&str], peer: &str, values: &[&str]) -> Option<String> {
        client(
            &nets(trusted),
            ip(peer),
            values.iter().map(|v| v.as_bytes()),
        )
        .map(|c| match c.port {
            Some(p) => format!("{} {p}", c.ip),
            None => c.ip.to_string(),
        })
    }

    const T: &[&str] = &["10.0.0.0/8"];

    #[test]
    fn trusted_ranges_match_v4_v6_and_mapped() {
        let t = nets(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"]);
        assert!(trusts(&t, ip("10.200.0.1")));
        assert!(trusts(&t, ip("192.0.2.7")));
        assert!(!trusts(&t, ip("192.0.2.8")));
        assert!(trusts(&t, ip("2001:db8:ffff::1")));
        assert!(!trusts(&t, ip("2001:db9::1")));
        assert!(trusts(&t, ip("::1")));
        // A v4-mapped v6 peer (a dual-stack socket's IPv4 client) matches v4 ranges.
        assert!(trusts(&t, ip("::ffff:10.1.2.3")));
        assert!(!trusts(&t, ip("::ffff:11.1.2.3")));
        assert!(!trusts(&[], ip("10.0.0.1")));
    }

    #[test]
    fn the_client_is_the_last_untrusted_address() {
        assert_eq!(
            walk(T, "10.0.0.1", &["203.0.113.9, 10.0.0.5"]).as_deref(),
            Some("203.0.113.9")
        );
        // A proxy chain: everything trusted up to the client.
        assert_eq!(
            walk(
                T,
                "10.0.0.1",
                &["198.51.100.1, 203.0.113.9,10.2.2.2 , 10.0.0.5"]
            )
            .as_deref(),
            Some("203.0.113.9")
        );
        // Repeated header lines are one list, the last line being the nearest hop.
        assert_eq!(
            walk(T, "10.0.0.1", &["203.0.113.9", "10.3.3.3"]).as_deref(),
            Some("203.0.113.9")
        );
        // Every address trusted: the leftmost.
        assert_eq!(
            walk(T, "10.0.0.1", &["10.9.9.9, 10.0.0.5"]).as_deref(),
            Some("10.9.9.9")
        );
        // Ports and brackets, v6 and v4-mapped clients.
        assert_eq!(
            walk(T, "10.0.0.1", &["[2001:db8::7]:4431"]).as_deref(),
            Some("2001:db8::7 4431")
        );
        assert_eq!(
            walk(T, "10.0.0.1", &["192.0.2.1:80"]).as_deref(),
            Some("192.0.2.1 80")
        );
        assert_eq!(
            walk(T, "10.0.0.1", &["::ffff:192.0.2.1"]).as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(
            walk(T, "::ffff:10.0.0.1", &["[2001:db8::7]"]).as_deref(),
            Some("2001:db8::7")
        );
        // Empty list items are skipped.
        assert_eq!(
            walk(T, "10.0.0.1", &[" 192.0.2.3 ,, ,"]).as_deref(),
            Some("192.0.2.3")
        );
    }

    #[test]
    fn a_spoofed_header_from_an_untrusted_peer_is_never_believed() {
        let t = &["10.0.0.0/8", "::1"];
        for spoof in [
            "10.0.0.2",
            "127.0.0.1",
            "203.0.113.66, 10.0.0.5",
            "::1",
            "1.1.1.1",
        ] {
            assert_eq!(walk(t, "198.51.100.200", &[spoof]), None, "{spoof}");
            assert_eq!(walk(t, "2001:db8::5", &[spoof]), None, "{spoof}");
        }
        // From a trusted proxy, what the client wrote to the left of its own address
        // is ignored: the proxy appended the client's real address last.
        assert_eq!(
            walk(t, "10.0.0.1", &["10.0.0.2, 127.0.0.1, 198.51.100.200"]).as_deref(),
            Some("198.51.100.200")
        );
        // Without a header, nothing changes.
        assert_eq!(walk(t, "10.0.0.1", &[]), None);
    }

    #[test]
    fn a_malformed_entry_stops_the_walk() {
        // The last entry malformed: nothing found, the peer stays.
        assert_eq!(walk(T, "10.0.0.1", &["203.0.113.9, unknown"]), None);
        // A malformed entry after trusted ones: the last good one to its right.
        assert_eq!(
            walk(T, "10.0.0.1", &["203.0.113.9, garbage, 10.4.4.4"]).as_deref(),
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

    fn server(toml_extra: &str) -> VirtualServer {
        let text = format!(
            "[[server]]\nlisten = [\"127.0.0.1:8080\"]\n{toml_extra}\n[[server.location]]\npath = \"/\"\nproxy_pass = \"u\"\n[upstream.u]\nservers = [{{ addr = \"127.0.0.1:9\" }}]\n"
        );
        let cfg = crate::config::parse(&text, std::path::Path::new("t.toml"))
            .unwrap_or_else(|e| panic!("{e:?}"));
        cfg.servers[0].clone()
    }

    #[test]
    fn for_request_reads_the_configured_source() {
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.1, 10.1.1.1\r\nX-Real-IP: 198.51.100.2\r\nx-forwarded-for: 10.2.2.2\r\n\r\n";
        let mut head = RequestHead::default();
        assert!(request::parse(raw, &mut head).unwrap());
        let trusted = ip("10.0.0.9");
        let xff = server("real_ip_from = [\"10.0.0.0/8\"]\nreal_ip_header = \"X-Forwarded-For\"");
        assert_eq!(
            for_request(&xff, trusted, None, &head, raw).map(|c| c.ip),
            Some(ip("203.0.113.1"))
        );
        assert_eq!(for_request(&xff, ip("192.0.2.1"), None, &head, raw), None);
        let real = server("real_ip_from = [\"10.0.0.0/8\"]\nreal_ip_header = \"X-Real-IP\"");
        assert_eq!(
            for_request(&real, trusted, None, &head, raw).map(|c| c.ip),
            Some(ip("198.51.100.2"))
        );
        let pp = server(
            "proxy_protocol = true\nreal_ip_from = [\"10.0.0.0/8\"]\nreal_ip_header = \"proxy_protocol\"",
        );
        let src: SocketAddr = "[::ffff:203.0.113.1]:5555".parse().unwrap();
        assert_eq!(
            for_request(&pp, trusted, Some(src), &head, raw),
            Some(Client {
                ip: ip("203.0.113.1"),
                port: Some(5555)
            })
        );
        assert_eq!(
            for_request(&pp, ip("192.0.2.1"), Some(src), &head, raw),
            None
        );
        assert_eq!(for_request(&pp, trusted, None, &head, raw), None);
        // Off: nothing is believed.
        let off = server("");
        assert_eq!(for_request(&off, trusted, None, &head, raw), None);
    }
}
