//! `[[server]]` blocks -> [`VirtualServer`]s: listeners, host names, locations and their
//! `proxy_set_header` rules. Part of `validate.rs`'s [`Validator`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use super::defaults as d;
use super::model::*;
use super::schema::*;
use super::template::parse_template;
use super::validate::Validator;
use super::walk::{choices, join};

/// A request head must at least hold a request line and a Host header.
const MIN_HEADER_BYTES: u64 = 1024;

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
        servers
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
            Some(a) => Some(PathBuf::from(a.get_ref())),
        };
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
        let mut locations = Vec::new();
        let mut seen_paths: HashMap<String, usize> = HashMap::new();
        for (i, l) in s.location.iter().enumerate() {
            let lpath = format!("{path}.location[{i}]");
            if let Some(loc) = self.location(l, &lpath, upstreams) {
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
            max_body_bytes: self.size(&s.max_body_bytes, path, "max_body_bytes", d::MAX_BODY_BYTES),
            access_log,
            locations,
        }
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

    fn location(
        &mut self,
        raw: &Spanned<RawLocation>,
        path: &str,
        upstreams: &[&str],
    ) -> Option<Location> {
        let l = raw.get_ref();
        let lpath = match &l.path {
            None => {
                self.missing(raw.span(), path, "path", "\"/\"");
                None
            }
            Some(p) if !p.get_ref().starts_with('/') => {
                self.err(
                    p.span(),
                    &join(path, "path"),
                    format!(
                        "{:?} must start with \"/\"; e.g. \"/{}\"",
                        p.get_ref(),
                        p.get_ref()
                    ),
                );
                None
            }
            Some(p) => Some(p.get_ref().clone()),
        };
        let upstream = match &l.proxy_pass {
            None => {
                self.missing(
                    raw.span(),
                    path,
                    "proxy_pass",
                    "\"NAME\" (an [upstream.NAME])",
                );
                None
            }
            Some(name) => self.upstream_ref(name, &join(path, "proxy_pass"), upstreams),
        };
        let mut set_headers = Vec::new();
        if let Some(headers) = &l.proxy_set_header {
            for (name, value) in &headers.get_ref().0 {
                let key = join(&join(path, "proxy_set_header"), name.get_ref());
                if let Some(rule) = self.header_rule(name, value, &key) {
                    if set_headers
                        .iter()
                        .any(|r: &HeaderRule| r.name_lower == rule.name_lower)
                    {
                        self.err(
                            name.span(),
                            &key,
                            format!(
                                "header {:?} is set twice (header names ignore case); keep one",
                                rule.name
                            ),
                        );
                    } else {
                        set_headers.push(rule);
                    }
                }
            }
        }
        Some(Location {
            path: lpath?,
            upstream: upstream?,
            set_headers,
        })
    }

    fn upstream_ref(
        &mut self,
        name: &Spanned<String>,
        key: &str,
        upstreams: &[&str],
    ) -> Option<usize> {
        let n = name.get_ref().as_str();
        if let Ok(i) = upstreams.binary_search(&n) {
            return Some(i);
        }
        let message =
            if let Some(bare) = n.strip_prefix("http://").filter(|b| upstreams.contains(b)) {
                format!("proxy_pass takes an upstream name, not a URL; write proxy_pass = {bare:?}")
            } else if upstreams.is_empty() {
                format!("no upstream named {n:?}; define it with [upstream.{n}] and its servers")
            } else {
                format!("no upstream named {n:?}; {}", choices(n, upstreams))
            };
        self.err(name.span(), key, message);
        None
    }

    fn header_rule(
        &mut self,
        name: &Spanned<String>,
        value: &Spanned<String>,
        key: &str,
    ) -> Option<HeaderRule> {
        let n = name.get_ref();
        if n.is_empty() || !n.bytes().all(is_token_byte) {
            self.err(
                name.span(),
                key,
                format!(
                    "{n:?} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)"
                ),
            );
            return None;
        }
        let v = value.get_ref();
        if v.contains(['\r', '\n', '\0']) {
            self.err(
                value.span(),
                key,
                "a header value may not contain CR, LF or NUL",
            );
            return None;
        }
        let template = if v.is_empty() {
            None
        } else {
            match parse_template(v) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.err(value.span(), key, e);
                    return None;
                }
            }
        };
        Some(HeaderRule {
            name: n.clone(),
            name_lower: n.to_ascii_lowercase(),
            value: template,
        })
    }
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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

/// The strings of a `listen`/`server_name` with their key paths (`x[1]` for arrays).
fn list_items(list: &Spanned<OneOrMany>, path: &str) -> Vec<(String, Spanned<String>)> {
    match list.get_ref() {
        OneOrMany::One(s) => vec![(path.to_owned(), Spanned::new(list.span(), s.clone()))],
        OneOrMany::Many(v) => v
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("{path}[{i}]"), s.clone()))
            .collect(),
    }
}

fn list_is_empty(list: &Spanned<OneOrMany>) -> bool {
    matches!(list.get_ref(), OneOrMany::Many(v) if v.is_empty())
}
