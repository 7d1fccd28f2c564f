//! `[[server]]` blocks -> [`VirtualServer`]s: listeners, host names, locations and their
//! `proxy_set_header` rules. Part of `validate.rs`'s [`Validator`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use super::defaults as d;
use super::model::*;
use super::schema::*;
use super::suggest::choices;
use super::tls_files::{self, TlsFile};
use super::validate::{Files, Validator};
use super::validate_location::{is_token_byte, list_items};
use super::walk::join;
use crate::access_log::{LogFormat, VARIABLES};

/// A request head must at least hold a request line and a Host header.
const MIN_HEADER_BYTES: u64 = 1024;
/// Every `tls_protocols` value.
const TLS_PROTOCOLS: &[&str] = &["TLSv1.2", "TLSv1.3"];

impl Validator<'_> {
    pub(crate) fn servers(
        &mut self,
        raw: &[Spanned<RawServer>],
        upstreams: &[&str],
    ) -> Vec<VirtualServer> {
        if raw.is_empty() {
            self.err(
                0..0,
                "server",
                "no [[server]] block; add one with listen = [\"0.0.0.0:8080\"] and a [[server.location]]",
            );
            return Vec::new();
        }
        let servers: Vec<VirtualServer> = raw
            .iter()
            .enumerate()
            .map(|(i, s)| self.server(s, &format!("server[{i}]"), upstreams))
            .collect();
        self.names_unique_per_address(raw, &servers);
        self.listeners_agree(raw, &servers);
        servers
    }

    /// TLS and the PROXY protocol belong to a listening socket: every block on one address
    /// must agree on both (the first block on the address sets them).
    fn listeners_agree(&mut self, raw: &[Spanned<RawServer>], servers: &[VirtualServer]) {
        let mut first: Vec<(SocketAddr, usize)> = Vec::new();
        for (i, s) in servers.iter().enumerate() {
            for addr in &s.listen {
                let Some(&(_, f)) = first.iter().find(|(a, _)| a == addr) else {
                    first.push((*addr, i));
                    continue;
                };
                let other = &servers[f];
                let r = raw[i].get_ref();
                if other.tls.is_some() != s.tls.is_some() {
                    let (key, span, what) = match &r.tls_certificate {
                        Some(c) => ("tls_certificate", c.span(), "has TLS but"),
                        None => (
                            "listen",
                            r.listen.as_ref().map_or(raw[i].span(), |l| l.span()),
                            "has no TLS but",
                        ),
                    };
                    self.err(span, &format!("server[{i}].{key}"), format!("this block {what} server[{f}] on {addr} differs; every server block on one address has TLS (tls_certificate) or none"));
                }
                if other.proxy_protocol != s.proxy_protocol {
                    let span = r.proxy_protocol.as_ref().map_or_else(
                        || r.listen.as_ref().map_or(raw[i].span(), |l| l.span()),
                        |p| p.span(),
                    );
                    self.err(span, &format!("server[{i}].proxy_protocol"), format!("server[{f}] on {addr} has proxy_protocol = {}; every server block on one address must agree (the PROXY header comes before the request names its host)", other.proxy_protocol));
                }
            }
        }
    }

    fn server(
        &mut self,
        raw: &Spanned<RawServer>,
        path: &str,
        upstreams: &[&str],
    ) -> VirtualServer {
        let s = raw.get_ref();
        let mut listen = Vec::new();
        match &s.listen {
            None => self.missing(raw.span(), path, "listen", "[\"0.0.0.0:8080\"]"),
            Some(l) => {
                for (key, item) in list_items(l, &join(path, "listen")) {
                    let Some(addr) = self.socket_addr(&item, &key) else {
                        continue;
                    };
                    if listen.contains(&addr) {
                        self.err(
                            item.span(),
                            &key,
                            format!("{addr} is listed twice in this server's listen"),
                        );
                    } else {
                        listen.push(addr);
                    }
                }
                if list_is_empty(l) {
                    self.err(
                        l.span(),
                        &join(path, "listen"),
                        "is empty; list at least one address, e.g. [\"0.0.0.0:8080\"]",
                    );
                }
            }
        }
        let mut server_names: Vec<ServerName> = Vec::new();
        if let Some(names) = &s.server_name {
            for (key, item) in list_items(names, &join(path, "server_name")) {
                let Some(name) = self.server_name(&item, &key) else {
                    continue;
                };
                if server_names.contains(&name) {
                    self.err(
                        item.span(),
                        &key,
                        format!(
                            "{:?} is listed twice in this server's server_name",
                            item.get_ref()
                        ),
                    );
                } else {
                    server_names.push(name);
                }
            }
        }
        let access_log = match &s.access_log {
            None => None,
            Some(a) if a.get_ref() == "off" => None,
            Some(a) if a.get_ref().trim().is_empty() => {
                self.err(
                    a.span(),
                    &join(path, "access_log"),
                    "is empty; give a file path or \"off\"",
                );
                None
            }
            // Opened (created if missing) now, so that `ringlb check`, start-up and a reload
            // all refuse a log that could not be written, instead of losing lines later.
            Some(a) if self.files == Files::Leave => Some(PathBuf::from(a.get_ref())),
            Some(a) => {
                let file = PathBuf::from(a.get_ref());
                match std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&file)
                {
                    Ok(_) => Some(file),
                    Err(e) => {
                        self.err(
                            a.span(),
                            &join(path, "access_log"),
                            format!("cannot open {} for appending: {e}", file.display()),
                        );
                        None
                    }
                }
            }
        };
        let proxy_protocol = s
            .proxy_protocol
            .as_ref()
            .map_or(d::PROXY_PROTOCOL, |b| *b.get_ref());
        let real_ip_from = self.real_ip_from(s, path);
        let real_ip_header = self.real_ip_header(s, path, proxy_protocol, !real_ip_from.is_empty());
        let max_header_bytes = self.size(
            &s.max_header_bytes,
            path,
            "max_header_bytes",
            d::MAX_HEADER_BYTES,
        );
        let max_header_bytes = if max_header_bytes < MIN_HEADER_BYTES {
            if let Some(m) = &s.max_header_bytes {
                self.err(
                    m.span(),
                    &join(path, "max_header_bytes"),
                    format!("{max_header_bytes} is too small; must be at least {MIN_HEADER_BYTES}"),
                );
            }
            d::MAX_HEADER_BYTES
        } else {
            max_header_bytes
        };
        let max_body_bytes =
            self.size(&s.max_body_bytes, path, "max_body_bytes", d::MAX_BODY_BYTES);
        let mut locations = Vec::new();
        let mut seen_paths: HashMap<String, usize> = HashMap::new();
        for (i, l) in s.location.iter().enumerate() {
            let lpath = format!("{path}.location[{i}]");
            if let Some(loc) = self.location(l, &lpath, upstreams, max_body_bytes) {
                if let Some(first) = seen_paths.insert(loc.path.clone(), i) {
                    let span = l.get_ref().path.as_ref().map_or(l.span(), |p| p.span());
                    self.err(
                        span,
                        &join(&lpath, "path"),
                        format!("{:?} is already the path of {path}.location[{first}]; merge the two locations", loc.path),
                    );
                    continue;
                }
                locations.push(loc);
            }
        }
        // Longest prefix first, so the first match is the longest (stable: file order on ties).
        locations.sort_by_key(|l: &Location| std::cmp::Reverse(l.path.len()));
        VirtualServer {
            listen,
            server_names,
            client_header_timeout: self.duration(
                &s.client_header_timeout,
                path,
                "client_header_timeout",
                d::CLIENT_HEADER_TIMEOUT,
                false,
            ),
            client_body_timeout: self.duration(
                &s.client_body_timeout,
                path,
                "client_body_timeout",
                d::CLIENT_BODY_TIMEOUT,
                false,
            ),
            keepalive_timeout: self.duration(
                &s.keepalive_timeout,
                path,
                "keepalive_timeout",
                d::CLIENT_KEEPALIVE_TIMEOUT,
                true,
            ),
            keepalive_requests: self.int(
                &s.keepalive_requests,
                path,
                "keepalive_requests",
                d::CLIENT_KEEPALIVE_REQUESTS as i64,
                1,
                i64::MAX,
            ) as u64,
            max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
            max_body_bytes,
            access_log,
            log_format: match &s.log_format {
                None => LogFormat::parse(d::LOG_FORMAT).unwrap_or_default(),
                Some(f) if f.get_ref().trim().is_empty() => {
                    self.err(
                        f.span(),
                        &join(path, "log_format"),
                        "is empty; use \"combined\" or a template such as \"$remote_addr $request $status\"",
                    );
                    LogFormat::default()
                }
                Some(f) => LogFormat::parse(f.get_ref()).unwrap_or_else(|e| {
                    let message = match e.unknown_variable() {
                        Some(var) => format!("{e}; {}", choices(&var, VARIABLES)),
                        None => e.to_string(),
                    };
                    self.err(f.span(), &join(path, "log_format"), message);
                    LogFormat::default()
                }),
            },
            tls: self.tls(raw, path),
            http2: s.http2.as_ref().map_or(d::HTTP2, |b| *b.get_ref()),
            proxy_protocol,
            real_ip_from,
            real_ip_header,
            underscores_in_headers: s
                .underscores_in_headers
                .as_ref()
                .map_or(d::UNDERSCORES_IN_HEADERS, |b| *b.get_ref()),
            locations,
        }
    }

    /// `tls_certificate` and `tls_certificate_key` (both or neither), `tls_protocols`; the
    /// files themselves are checked by [`tls_files::check`].
    fn tls(&mut self, raw: &Spanned<RawServer>, path: &str) -> Option<TlsCfg> {
        let s = raw.get_ref();
        let protocols = s
            .tls_protocols
            .as_ref()
            .map(|p| self.tls_protocols(p, path));
        let (cert, key) = match (&s.tls_certificate, &s.tls_certificate_key) {
            (None, None) => {
                if let Some(p) = &s.tls_protocols {
                    self.err(
                        p.span(),
                        &join(path, "tls_protocols"),
                        "applies only to a server block with tls_certificate and tls_certificate_key",
                    );
                }
                return None;
            }
            (Some(c), None) => {
                self.err(
                    c.span(),
                    &join(path, "tls_certificate_key"),
                    "tls_certificate needs tls_certificate_key (the PEM private key) beside it",
                );
                return None;
            }
            (None, Some(k)) => {
                self.err(
                    k.span(),
                    &join(path, "tls_certificate"),
                    "tls_certificate_key needs tls_certificate (the PEM certificate chain) beside it",
                );
                return None;
            }
            (Some(c), Some(k)) => (c, k),
        };
        let certificate = self.path(cert, &join(path, "tls_certificate"));
        let certificate_key = self.path(key, &join(path, "tls_certificate_key"));
        let mut tls = TlsCfg {
            certificate: certificate?,
            certificate_key: certificate_key?,
            protocols: protocols.unwrap_or_default(),
            loaded: None,
        };
        if self.files == Files::Leave {
            return Some(tls);
        }
        if let Err(e) = tls_files::check(&mut tls) {
            let (name, at) = match e.file {
                TlsFile::Certificate => ("tls_certificate", cert.span()),
                TlsFile::Key => ("tls_certificate_key", key.span()),
            };
            self.err(at, &join(path, name), e.message);
            return None;
        }
        Some(tls)
    }

    fn tls_protocols(&mut self, list: &Spanned<Vec<Spanned<String>>>, path: &str) -> TlsProtocols {
        let key = join(path, "tls_protocols");
        let mut p = TlsProtocols {
            tls12: false,
            tls13: false,
        };
        for (i, v) in list.get_ref().iter().enumerate() {
            match v.get_ref().as_str() {
                "TLSv1.2" => p.tls12 = true,
                "TLSv1.3" => p.tls13 = true,
                old @ ("SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1") => self.err(
                    v.span(),
                    &format!("{key}[{i}]"),
                    format!("{old} is not offered (insecure; ringlb speaks TLSv1.2 and TLSv1.3); remove it"),
                ),
                other => self.err(
                    v.span(),
                    &format!("{key}[{i}]"),
                    format!(
                        "unknown TLS protocol {other:?}; {}",
                        choices(other, TLS_PROTOCOLS)
                    ),
                ),
            }
        }
        if list.get_ref().is_empty() {
            self.err(
                list.span(),
                &key,
                "is empty; use [\"TLSv1.2\", \"TLSv1.3\"] (the default) or one of them",
            );
        }
        if !p.tls12 && !p.tls13 {
            return TlsProtocols::default();
        }
        p
    }

    /// `real_ip_from`: addresses and CIDR ranges, IPv4 and IPv6.
    fn real_ip_from(&mut self, s: &RawServer, path: &str) -> Vec<IpNet> {
        let Some(list) = &s.real_ip_from else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, item) in list_items(list, &join(path, "real_ip_from")) {
            match parse_net(item.get_ref()) {
                Some(net) if !out.contains(&net) => out.push(net),
                Some(_) => {}
                None => self.err(
                    item.span(),
                    &key,
                    format!(
                        "{:?} is not an address or address range; write e.g. \"10.0.0.0/8\", \"192.168.1.10\", \"2001:db8::/32\" or \"::1\"",
                        item.get_ref()
                    ),
                ),
            }
        }
        out
    }

    fn real_ip_header(
        &mut self,
        s: &RawServer,
        path: &str,
        proxy_protocol: bool,
        trusted: bool,
    ) -> RealIpHeader {
        let default = RealIpHeader::Header(d::REAL_IP_HEADER.to_ascii_lowercase());
        let Some(h) = &s.real_ip_header else {
            return default;
        };
        let key = join(path, "real_ip_header");
        let name = h.get_ref().trim();
        let header = if name == "proxy_protocol" {
            if !proxy_protocol {
                self.err(
                    h.span(),
                    &key,
                    "\"proxy_protocol\" takes the address from the PROXY protocol header: set proxy_protocol = true in this server block",
                );
            }
            RealIpHeader::ProxyProtocol
        } else if !name.is_empty() && name.bytes().all(is_token_byte) {
            RealIpHeader::Header(name.to_ascii_lowercase())
        } else {
            self.err(
                h.span(),
                &key,
                format!("{name:?} is not a header name; write e.g. \"X-Forwarded-For\", \"X-Real-IP\" or \"proxy_protocol\""),
            );
            return default;
        };
        if !trusted {
            self.err(
                h.span(),
                &key,
                "has no effect without real_ip_from; list the trusted sources, e.g. real_ip_from = [\"10.0.0.0/8\"]",
            );
        }
        header
    }

    fn server_name(&mut self, s: &Spanned<String>, key: &str) -> Option<ServerName> {
        let name = s.get_ref().trim().to_ascii_lowercase();
        let valid_label = |n: &str| {
            !n.is_empty()
                && n.split('.').all(|l| {
                    !l.is_empty()
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        };
        if let Some(suffix) = name.strip_prefix("*.") {
            if valid_label(suffix) {
                return Some(ServerName::Wildcard(format!(".{suffix}")));
            }
        } else if valid_label(&name) {
            return Some(ServerName::Exact(name));
        }
        self.err(
            s.span(),
            key,
            format!("{:?} is not a host name; write \"example.com\" or \"*.example.com\" (only a leading `*.` wildcard is supported)", s.get_ref()),
        );
        None
    }

    /// The same host name on the same address in two blocks: the second could never be
    /// chosen. Different addresses, or the same address with different names, are fine.
    fn names_unique_per_address(&mut self, raw: &[Spanned<RawServer>], servers: &[VirtualServer]) {
        // ServerName is not Hash; the lists are short.
        let mut owner: Vec<((SocketAddr, &ServerName), usize)> = Vec::new();
        for (i, s) in servers.iter().enumerate() {
            for name in &s.server_names {
                for addr in &s.listen {
                    match owner
                        .iter()
                        .find(|(k, _)| *k == (*addr, name))
                        .map(|(_, i)| i)
                    {
                        Some(&first) if first != i => {
                            let (key, span) = name_position(&raw[i], i, name);
                            self.err(span, &key, format!("{} on {addr} is already served by server[{first}]; a name may appear once per address", show_name(name)));
                        }
                        _ => {
                            owner.push(((*addr, name), i));
                        }
                    }
                }
            }
        }
    }
}

fn show_name(name: &ServerName) -> String {
    match name {
        ServerName::Exact(n) => format!("{n:?}"),
        ServerName::Wildcard(suffix) => format!("\"*{suffix}\""),
    }
}

/// Key path and span of `name` in a server block's `server_name`.
fn name_position(raw: &Spanned<RawServer>, i: usize, name: &ServerName) -> (String, Range<usize>) {
    let base = format!("server[{i}].server_name");
    let Some(names) = &raw.get_ref().server_name else {
        return (base, raw.span());
    };
    let wanted = show_name(name).trim_matches('"').to_owned();
    list_items(names, &base)
        .into_iter()
        .find(|(_, s)| s.get_ref().trim().eq_ignore_ascii_case(&wanted))
        .map_or((base, names.span()), |(k, s)| (k, s.span()))
}

/// `"10.0.0.0/8"`, `"10.1.2.3/8"` (host bits dropped, as nginx does), `"::1"`.
fn parse_net(text: &str) -> Option<IpNet> {
    let t = text.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Some(net.trunc());
    }
    t.parse::<std::net::IpAddr>().ok().map(IpNet::from)
}

fn list_is_empty(list: &Spanned<OneOrMany>) -> bool {
    matches!(list.get_ref(), OneOrMany::Many(v) if v.is_empty())
}
