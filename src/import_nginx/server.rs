//! `server` and `location` blocks -> ringlb `[[server]]` blocks and their locations.
//!
//! One nginx `server` may listen both in plain HTTP and with `ssl` (`listen 80; listen 443
//! ssl;`); ringlb sets TLS per block, so such a server becomes one block per kind of
//! listener, with the same names and locations. A `return` at the server level answers
//! every request before any location is chosen (nginx's rewrite phase): it becomes a `/`
//! location and the block's other locations are reported as not carried.

use super::convert::{Converter, Inherit, Level, Use, NGINX_MAX_BODY};
use super::parse::Directive;
use super::plan::{Handler, Location, Proxy, Server, Tls, UpSettings};
use super::values::{listen_addr, template};

/// Statuses whose `return` argument is a URL (nginx's rule).
const REDIRECTS: [u16; 5] = [301, 302, 303, 307, 308];

struct Listen {
    addr: String,
    ssl: bool,
    proxy_protocol: bool,
    http2: bool,
    default: bool,
}

/// A proxy location's upstream use, before the block has its index in the plan.
struct PendingUse {
    upstream: String,
    settings: UpSettings,
    proxy_pass: Directive,
    location: usize,
}

impl Converter<'_> {
    pub fn server(&mut self, d: &Directive, parent: &Inherit) {
        let block = d.block.as_deref().unwrap_or_default();
        let mut inh = parent.child();
        let mut listens: Vec<Listen> = Vec::new();
        let mut names: Vec<&Directive> = Vec::new();
        let mut ret = None;
        let mut ssl_on = false;
        for x in block {
            match (x.name.as_str(), &x.block) {
                ("location", Some(_)) => {}
                ("listen", None) => self.listen(x, &mut listens),
                ("server_name", None) => names.push(x),
                ("return", None) => ret = Some(x),
                ("ssl", None) if x.args == ["on"] => ssl_on = true,
                _ => {
                    if !self.common(&mut inh, x, Level::Server) {
                        self.not_carried(x);
                    }
                }
            }
        }
        let names = self.server_names(&names);
        let first_name = names.iter().find(|n| !n.starts_with('*')).cloned();
        let max_body = inh.client_max_body_size.unwrap_or(NGINX_MAX_BODY);
        let mut locations = Vec::new();
        let mut uses = Vec::new();
        let location_blocks = block
            .iter()
            .filter(|x| x.name == "location" && x.block.is_some());
        if let Some(r) = ret {
            if let Some(handler) = self.return_(r, first_name.as_deref()) {
                locations.push(Location {
                    path: "/".into(),
                    max_body_bytes: None,
                    handler,
                });
            }
            for x in location_blocks {
                self.note(
                    x,
                    "not carried: the server block's return answers every request first",
                );
            }
        } else {
            for x in location_blocks {
                self.location(
                    x,
                    &inh,
                    first_name.as_deref(),
                    max_body,
                    &mut locations,
                    &mut uses,
                );
            }
            // nginx serves a request no location matches from the server's root.
            match &inh.root {
                Some(root) if !locations.iter().any(|l| l.path == "/") => {
                    locations.push(Location {
                        path: "/".into(),
                        max_body_bytes: None,
                        handler: Handler::Files {
                            root: Some(root.clone()),
                            alias: None,
                            index: inh.index.clone(),
                            expires: inh.expires,
                        },
                    })
                }
                None if locations.is_empty() => self.note(
                    d,
                    "this server block has no location ringlb can carry: it answers 404",
                ),
                _ => {}
            }
        }
        if listens.is_empty() {
            self.note(d, "no listen: nginx's default, *:80, is carried");
            listens.push(Listen {
                addr: "0.0.0.0:80".into(),
                ssl: false,
                proxy_protocol: false,
                http2: false,
                default: false,
            });
        }
        // One ringlb block per kind of listener.
        let mut kinds: Vec<(bool, bool)> = Vec::new();
        for l in &listens {
            let k = (l.ssl || ssl_on, l.proxy_protocol);
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        for (tls, proxy_protocol) in kinds {
            let group: Vec<&Listen> = listens
                .iter()
                .filter(|l| (l.ssl || ssl_on) == tls && l.proxy_protocol == proxy_protocol)
                .collect();
            let tls_cfg = if tls {
                match (&inh.ssl_certificate, &inh.ssl_certificate_key) {
                    (Some(c), Some(k)) => Some(Tls {
                        certificate: c.clone(),
                        key: k.clone(),
                        protocols: inh.ssl_protocols.clone(),
                    }),
                    _ => {
                        let addrs: Vec<&str> = group.iter().map(|l| l.addr.as_str()).collect();
                        self.note(d, format!("the TLS listener(s) {} are not carried: no ssl_certificate and ssl_certificate_key", addrs.join(", ")));
                        continue;
                    }
                }
            } else {
                None
            };
            let mut listen: Vec<String> = Vec::new();
            for l in &group {
                if !listen.contains(&l.addr) {
                    listen.push(l.addr.clone());
                }
            }
            let http2 = group.iter().any(|l| l.http2) || inh.http2 == Some(true);
            let mut s = Server {
                from: d.at(),
                default_on: group
                    .iter()
                    .filter(|l| l.default)
                    .map(|l| l.addr.clone())
                    .collect(),
                listen,
                names: names.clone(),
                client_header_timeout: inh.client_header_timeout,
                client_body_timeout: inh.client_body_timeout,
                keepalive_timeout: inh.keepalive_timeout,
                keepalive_requests: inh.keepalive_requests,
                max_header_bytes: inh.large_client_header_buffers,
                max_body_bytes: max_body,
                // nginx offers h2 only where it is turned on; ringlb by default.
                http2: (tls_cfg.is_some() && !http2).then_some(false),
                tls: tls_cfg,
                proxy_protocol,
                underscores_in_headers: inh.underscores_in_headers,
                locations: locations.clone(),
                ..Server::default()
            };
            self.access_log_of(d, &inh, &mut s);
            self.real_ip_of(d, &inh, &mut s);
            let index = self.plan.servers.len();
            self.plan.servers.push(s);
            for u in &uses {
                self.uses.push(Use {
                    upstream: u.upstream.clone(),
                    settings: u.settings.clone(),
                    proxy_pass: u.proxy_pass.clone(),
                    server: index,
                    location: u.location,
                });
            }
        }
    }

    fn listen(&mut self, x: &Directive, out: &mut Vec<Listen>) {
        let Some(addr) = x.args.first().and_then(|a| listen_addr(a)) else {
            return self.note(
                x,
                "not carried: ringlb listens on TCP addresses (host:port)",
            );
        };
        let mut l = Listen {
            addr,
            ssl: false,
            proxy_protocol: false,
            http2: false,
            default: false,
        };
        for p in &x.args[1..] {
            match p.as_str() {
                "ssl" => l.ssl = true,
                "http2" => l.http2 = true,
                "proxy_protocol" => l.proxy_protocol = true,
                "default_server" | "default" => l.default = true,
                // ringlb always listens with SO_REUSEPORT, one socket per worker.
                "reuseport" | "ipv6only=on" => {}
                "quic" | "http3" => {
                    return self.note(x, "not carried: ringlb does not speak HTTP/3 (QUIC)");
                }
                other => self.note(x, format!("the listen parameter {other} is not carried")),
            }
        }
        out.push(l);
    }

    /// nginx names -> ringlb's: `.example.com` is `example.com` and `*.example.com`; the
    /// catch-all `_` and `""` are "any host" (no name); regular expressions and trailing
    /// wildcards are not carried.
    fn server_names(&mut self, list: &[&Directive]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |n: String| {
            if !out.contains(&n) {
                out.push(n);
            }
        };
        for d in list {
            for raw in &d.args {
                let n = raw.to_ascii_lowercase();
                let valid = |s: &str| {
                    !s.is_empty()
                        && s.split('.').all(|l| {
                            !l.is_empty()
                                && l.bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                        })
                };
                if n.is_empty() || n == "_" {
                    continue;
                } else if n.starts_with('~') {
                    self.note(
                        d,
                        format!("the name {raw} is a regular expression: not carried"),
                    );
                } else if let Some(base) = n.strip_prefix('.').filter(|b| valid(b)) {
                    push(base.to_owned());
                    push(format!("*.{base}"));
                } else if n.strip_prefix("*.").is_some_and(valid) || valid(&n) {
                    push(n);
                } else {
                    self.note(d, format!("the name {raw} is not carried (ringlb takes exact names and a leading *.)"));
                }
            }
        }
        out
    }

    fn access_log_of(&mut self, d: &Directive, inh: &Inherit, s: &mut Server) {
        let Some(Some((path, format))) = &inh.access_log else {
            return;
        };
        s.access_log = Some(path.clone());
        match format.as_deref() {
            None | Some("combined") => {}
            Some(name) => match self.log_formats.get(name).cloned() {
                Some(f) => match crate::access_log::LogFormat::parse(&f) {
                    Ok(_) => s.log_format = Some(f),
                    Err(e) => self.note(
                        d,
                        format!("the log_format {name} is not carried ({e}): combined is used"),
                    ),
                },
                None => self.note(
                    d,
                    format!("the log_format {name} is not defined: combined is carried"),
                ),
            },
        }
    }

    fn real_ip_of(&mut self, d: &Directive, inh: &Inherit, s: &mut Server) {
        if inh.real_ip_from.is_empty() {
            return;
        }
        // nginx's default real_ip_header is X-Real-IP; ringlb's is X-Forwarded-For.
        let header = inh
            .real_ip_header
            .clone()
            .unwrap_or_else(|| "X-Real-IP".into());
        if header == "proxy_protocol" && !s.proxy_protocol {
            return self.note(
                d,
                "real_ip_header proxy_protocol is not carried to listeners without proxy_protocol",
            );
        }
        s.real_ip_from = inh.real_ip_from.clone();
        s.real_ip_header = Some(header);
    }

    #[allow(clippy::too_many_arguments)]
    fn location(
        &mut self,
        d: &Directive,
        parent: &Inherit,
        server_name: Option<&str>,
        server_max_body: u64,
        out: &mut Vec<Location>,
        uses: &mut Vec<PendingUse>,
    ) {
        let path =
            match d
                .args
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice()
            {
                [p] | ["^~", p] if p.starts_with('/') => (*p).to_owned(),
                ["=", _] => {
                    return self.note(
                        d,
                        "an exact-match location (=) is not carried: ringlb matches path prefixes",
                    )
                }
                ["~" | "~*", _] => return self.note(
                    d,
                    "a regular-expression location is not carried: ringlb matches path prefixes",
                ),
                [p] if p.starts_with('@') => {
                    return self.note(
                        d,
                        "a named location is not carried: ringlb has no internal redirects",
                    )
                }
                _ => {
                    return self.note(
                        d,
                        "not carried: ringlb matches path prefixes that start with /",
                    )
                }
            };
        let block = d.block.as_deref().unwrap_or_default();
        let mut inh = parent.child();
        let (mut proxy_pass, mut ret, mut alias) = (None, None, None);
        for x in block {
            match (x.name.as_str(), &x.block) {
                ("location", Some(_)) => {}
                ("proxy_pass", None) if x.args.len() == 1 => proxy_pass = Some(x),
                ("return", None) => ret = Some(x),
                ("alias", None) if x.args.len() == 1 => alias = Some(x),
                _ => {
                    if !self.common(&mut inh, x, Level::Location) {
                        self.not_carried(x);
                    }
                }
            }
        }
        let max_body = inh.client_max_body_size.unwrap_or(NGINX_MAX_BODY);
        let handler = if let Some(r) = ret {
            self.return_(r, server_name)
        } else if let Some(p) = proxy_pass {
            self.proxy(p, &path, &inh, server_name)
                .map(|(proxy, settings)| {
                    uses.push(PendingUse {
                        upstream: proxy.upstream.clone(),
                        settings,
                        proxy_pass: p.clone(),
                        location: out.len(),
                    });
                    Handler::Proxy(proxy)
                })
        } else if let Some(a) = alias {
            self.alias(a, &path, &inh)
        } else if let Some(root) = &inh.root {
            Some(Handler::Files {
                root: Some(root.clone()),
                alias: None,
                index: inh.index.clone(),
                expires: inh.expires,
            })
        } else {
            self.note(
                d,
                "not carried: no proxy_pass, root, alias or return for ringlb to use",
            );
            None
        };
        if let Some(mut handler) = handler {
            let mut path = path.clone();
            if let (Handler::Files { alias: Some(_), .. }, Some(a)) = (&handler, alias) {
                path = self.alias_path(a, &path, &mut handler);
            }
            if out.iter().any(|l| l.path == path) {
                self.note(d, format!("a second location for {path} is not carried"));
            } else {
                out.push(Location {
                    path,
                    max_body_bytes: (max_body != server_max_body).then_some(max_body),
                    handler,
                });
            }
        }
        for x in block
            .iter()
            .filter(|x| x.name == "location" && x.block.is_some())
        {
            self.location(x, &inh, server_name, server_max_body, out, uses);
        }
    }

    fn proxy(
        &mut self,
        p: &Directive,
        path: &str,
        inh: &Inherit,
        server_name: Option<&str>,
    ) -> Option<(Proxy, UpSettings)> {
        let url = &p.args[0];
        if url.contains('$') {
            self.note(
                p,
                "not carried: ringlb's proxy_pass names an upstream, without variables",
            );
            return None;
        }
        let Some(rest) = url.strip_prefix("http://") else {
            self.note(p, "not carried: ringlb reaches servers over plain http://");
            return None;
        };
        let (host, uri) = match rest.strip_prefix("unix:") {
            Some(u) => match u.find(':') {
                Some(i) => (format!("unix:{}", &u[..i]), Some(&u[i + 1..])),
                None => (format!("unix:{u}"), None),
            },
            None => match rest.find('/') {
                Some(i) => (rest[..i].to_owned(), Some(&rest[i..])),
                None => (rest.to_owned(), None),
            },
        };
        if let Some(uri) = uri.filter(|u| *u != path) {
            self.note(p, format!("the URI part {uri} is not carried: nginx sends {path}x to the server as {uri}x, ringlb sends the request path unchanged"));
        }
        let Some(upstream) = self.upstream_for(&host) else {
            self.note(
                p,
                format!("not carried: {host} is neither an upstream nor an address"),
            );
            return None;
        };
        let mut proxy = Proxy {
            upstream,
            request_buffering: inh.request_buffering,
            buffering: inh.buffering,
            buffers: inh.buffers,
            max_temp_file_size: inh.max_temp_file_size,
            ..Proxy::default()
        };
        for h in &inh.headers {
            let (name, value) = (&h.args[0], &h.args[1]);
            // ringlb manages the hop-by-hop headers; Upgrade is passed per `upgrade`.
            if name.eq_ignore_ascii_case("connection") {
                continue;
            }
            if name.eq_ignore_ascii_case("upgrade") {
                if value.contains("$http_upgrade") {
                    proxy.upgrade = Some(vec!["websocket".into()]);
                } else {
                    self.note(
                        h,
                        "not carried: ringlb passes the client's Upgrade (upgrade = [...])",
                    );
                }
                continue;
            }
            if proxy
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                self.note(h, format!("{name} is set twice: the first is carried"));
                continue;
            }
            match template(value, server_name) {
                Ok(v) => proxy.headers.push((name.clone(), v)),
                Err(var) => self.note(h, format!("not carried: ringlb has no variable {var}")),
            }
        }
        Some((proxy, inh.proxy.clone()))
    }

    fn alias(&mut self, a: &Directive, _path: &str, inh: &Inherit) -> Option<Handler> {
        if a.args[0].contains('$') {
            self.note(
                a,
                "not carried: an alias with variables (regular-expression captures)",
            );
            return None;
        }
        Some(Handler::Files {
            root: None,
            alias: Some(a.args[0].clone()),
            index: inh.index.clone(),
            expires: inh.expires,
        })
    }

    /// ringlb requires the alias and the location path to agree on a trailing slash (else
    /// `/static../x` escapes the directory, nginx's "off-by-slash"); the path to use.
    fn alias_path(&mut self, a: &Directive, path: &str, handler: &mut Handler) -> String {
        let Handler::Files {
            alias: Some(alias), ..
        } = handler
        else {
            return path.to_owned();
        };
        match (path.ends_with('/'), alias.ends_with('/')) {
            (true, false) => {
                self.note(a, format!("alias {alias} carried as {alias}/ to match the location {path} (nginx would map {path}x to {alias}x)"));
                alias.push('/');
                path.to_owned()
            }
            (false, true) => {
                self.note(a, format!("location {path} carried as {path}/ to match the alias {alias} (else {path}../ would escape it)"));
                format!("{path}/")
            }
            _ => path.to_owned(),
        }
    }

    /// `return code [text|URL]` or `return URL` (302).
    fn return_(&mut self, r: &Directive, server_name: Option<&str>) -> Option<Handler> {
        let (code, text) = match r.args.as_slice() {
            [url]
                if url.starts_with("http://")
                    || url.starts_with("https://")
                    || url.starts_with("$scheme") =>
            {
                (302, Some(url))
            }
            [code] => (code.parse().unwrap_or(0), None),
            [code, text] => (code.parse().unwrap_or(0), Some(text)),
            _ => (0, None),
        };
        if !(100..=599).contains(&code) {
            self.note(r, "not carried: ringlb returns a status from 100 to 599");
            return None;
        }
        if code == 444 {
            self.note(
                r,
                "444 (close without a response) is carried as a 444 response",
            );
        }
        if REDIRECTS.contains(&code) {
            let Some(to) = text else {
                self.note(r, "not carried: a redirect needs a URL");
                return None;
            };
            return match template(to, server_name) {
                Ok(location) => Some(Handler::Return {
                    status: code,
                    location: Some(location),
                    body: None,
                }),
                Err(var) => {
                    self.note(r, format!("not carried: ringlb has no variable {var}"));
                    None
                }
            };
        }
        let mut body = text.cloned();
        if body.is_some() && (code < 200 || code == 204 || code == 304) {
            self.note(
                r,
                format!("a {code} response has no body: the text is not carried"),
            );
            body = None;
        }
        if body.as_ref().is_some_and(|b| b.contains('$')) {
            self.note(
                r,
                "variables in the text are not carried: ringlb sends it as written",
            );
        }
        Some(Handler::Return {
            status: code,
            location: None,
            body,
        })
    }
}
