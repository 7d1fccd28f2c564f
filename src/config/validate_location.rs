//! `[[server.location]]` -> [`Location`]: the path, the request body limit, and the one
//! handler (`proxy_pass`, `root`/`alias` or `return`) with its options. Part of
//! `validate.rs`'s [`Validator`].

use std::ops::Range;

use super::defaults as d;
use super::model::*;
use super::schema::*;
use super::suggest::choices;
use super::template_parse::parse_template;
use super::validate::{Files, Validator};
use super::walk::join;

/// The keys that choose a location's handler; a location has exactly one.
const HANDLER_KEYS: [&str; 4] = ["proxy_pass", "root", "alias", "return"];
/// Statuses whose answer is a redirect: `location` required, no body (nginx's `return`).
const REDIRECTS: [u16; 5] = [301, 302, 303, 307, 308];

impl Validator<'_> {
    /// `server_max_body` is the block's `max_body_bytes`, the location's default.
    pub(crate) fn location(
        &mut self,
        raw: &Spanned<RawLocation>,
        path: &str,
        upstreams: &[&str],
        server_max_body: u64,
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
        let max_body_bytes = self.size(&l.max_body_bytes, path, "max_body_bytes", server_max_body);
        let handler = self.handler(raw, path, upstreams, lpath.as_deref());
        Some(Location {
            path: lpath?,
            max_body_bytes,
            handler: handler?,
        })
    }

    fn handler(
        &mut self,
        raw: &Spanned<RawLocation>,
        path: &str,
        upstreams: &[&str],
        lpath: Option<&str>,
    ) -> Option<Handler> {
        let l = raw.get_ref();
        let given: Vec<(&str, Range<usize>)> = HANDLER_KEYS
            .iter()
            .zip([
                span_of(&l.proxy_pass),
                span_of(&l.root),
                span_of(&l.alias),
                span_of(&l.return_),
            ])
            .filter_map(|(k, s)| Some((*k, s?)))
            .collect();
        let Some((first, _)) = given.first() else {
            self.missing(
                raw.span(),
                path,
                "proxy_pass",
                "\"NAME\" (an [upstream.NAME]); or serve files with root = \"/srv/www\", or answer with return = { status = 404 }",
            );
            return None;
        };
        if let Some((second, span)) = given.get(1) {
            self.err(
                span.clone(),
                &join(path, second),
                format!("a location has one of proxy_pass, root, alias, return, and this one already has `{first}`; split it into two locations"),
            );
            return None;
        }
        let proxy_only = [
            ("proxy_set_header", span_of(&l.proxy_set_header)),
            (
                "proxy_request_buffering",
                span_of(&l.proxy_request_buffering),
            ),
            ("proxy_buffering", span_of(&l.proxy_buffering)),
            ("proxy_buffers", span_of(&l.proxy_buffers)),
            (
                "proxy_max_temp_file_size",
                span_of(&l.proxy_max_temp_file_size),
            ),
            ("read_timeout", span_of(&l.read_timeout)),
            ("upgrade", span_of(&l.upgrade)),
        ];
        let files_only = [
            ("index", span_of(&l.index)),
            ("expires", span_of(&l.expires)),
        ];
        let kind = match *first {
            "proxy_pass" => "proxy_pass",
            "root" | "alias" => "root or alias",
            _ => "return",
        };
        for (home, keys) in [
            ("proxy_pass", &proxy_only[..]),
            ("root or alias", &files_only[..]),
        ] {
            if home == kind {
                continue;
            }
            for (key, span) in keys {
                if let Some(span) = span {
                    self.err(
                        span.clone(),
                        &join(path, key),
                        format!(
                            "`{key}` applies only to locations with {home}; this one has {kind}"
                        ),
                    );
                }
            }
        }
        match *first {
            "proxy_pass" => self.proxy(l, path, upstreams).map(Handler::Proxy),
            "root" | "alias" => self.files(l, path, lpath).map(Handler::Files),
            _ => {
                let r = l.return_.as_ref()?;
                self.return_(r, &join(path, "return")).map(Handler::Return)
            }
        }
    }

    fn proxy(&mut self, l: &RawLocation, path: &str, upstreams: &[&str]) -> Option<ProxyLoc> {
        let upstream = l
            .proxy_pass
            .as_ref()
            .and_then(|name| self.upstream_ref(name, &join(path, "proxy_pass"), upstreams));
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
        let buffers = self.size(&l.proxy_buffers, path, "proxy_buffers", d::PROXY_BUFFERS);
        let buffers = if buffers == 0 {
            if let Some(b) = &l.proxy_buffers {
                self.err(
                    b.span(),
                    &join(path, "proxy_buffers"),
                    "must be more than 0; e.g. \"256k\" (turn buffering off with proxy_buffering = false)",
                );
            }
            d::PROXY_BUFFERS
        } else {
            buffers
        };
        let read_timeout = l.read_timeout.as_ref().map(|_| {
            self.duration(
                &l.read_timeout,
                path,
                "read_timeout",
                d::READ_TIMEOUT,
                false,
            )
        });
        Some(ProxyLoc {
            upstream: upstream?,
            set_headers,
            request_buffering: flag(&l.proxy_request_buffering, d::PROXY_REQUEST_BUFFERING),
            buffering: flag(&l.proxy_buffering, d::PROXY_BUFFERING),
            buffers: usize::try_from(buffers).unwrap_or(usize::MAX),
            max_temp_file_size: self.size(
                &l.proxy_max_temp_file_size,
                path,
                "proxy_max_temp_file_size",
                d::PROXY_MAX_TEMP_FILE_SIZE,
            ),
            read_timeout,
            upgrade: self.upgrade(&l.upgrade, path),
        })
    }

    /// `upgrade`: tokens lower-cased, each once; `h2c` refused.
    fn upgrade(&mut self, raw: &Option<Spanned<Vec<Spanned<String>>>>, path: &str) -> Vec<String> {
        let Some(list) = raw else {
            return d::UPGRADE.iter().map(|s| (*s).to_owned()).collect();
        };
        let mut out: Vec<String> = Vec::new();
        for (i, t) in list.get_ref().iter().enumerate() {
            let key = format!("{}[{i}]", join(path, "upgrade"));
            let token = t.get_ref().trim().to_ascii_lowercase();
            // RFC 9110 `protocol-name ["/" protocol-version]`.
            let valid = !token.is_empty()
                && token
                    .split('/')
                    .all(|p| !p.is_empty() && p.bytes().all(is_token_byte))
                && token.matches('/').count() <= 1;
            if !valid {
                self.err(
                    t.span(),
                    &key,
                    format!(
                        "{:?} is not an Upgrade protocol name (e.g. \"websocket\")",
                        t.get_ref()
                    ),
                );
            } else if token == "h2c" || token.starts_with("h2c/") {
                self.err(
                    t.span(),
                    &key,
                    "\"h2c\" is never passed to servers: an h2c tunnel would carry HTTP/2 requests past this proxy's rules (h2c smuggling); remove it",
                );
            } else if !out.contains(&token) {
                out.push(token);
            }
        }
        out
    }

    fn files(&mut self, l: &RawLocation, path: &str, lpath: Option<&str>) -> Option<FilesLoc> {
        let dir = if let Some(root) = &l.root {
            FilesDir::Root(self.path(root, &join(path, "root"))?)
        } else {
            let alias = l.alias.as_ref()?;
            let key = join(path, "alias");
            let dir = self.path(alias, &key)?;
            // "Off-by-slash": location /static with alias /srv/static/ lets
            // /static../secret become /srv/static/../secret.
            if let Some(lp) = lpath {
                let a = alias.get_ref();
                if lp.ends_with('/') != a.ends_with('/') {
                    let (fixed_path, fixed_alias) = if lp.ends_with('/') {
                        (lp.to_owned(), format!("{a}/"))
                    } else {
                        (format!("{lp}/"), a.clone())
                    };
                    self.err(
                        alias.span(),
                        &key,
                        format!(
                            "{a:?} and the location path {lp:?} must both end with \"/\" or neither (else a request such as \"{lp}../x\" or \"{lp}x\" maps outside the directory); write path = {fixed_path:?} with alias = {fixed_alias:?}"
                        ),
                    );
                    return None;
                }
            }
            FilesDir::Alias(dir)
        };
        // Checked now, so that `ringlb check`, start-up and a reload refuse a directory the
        // files could never come from (the workers open it again for real at publish time).
        if self.files == Files::Check {
            let (raw, key, dir_path) = match (&dir, &l.root, &l.alias) {
                (FilesDir::Root(d), Some(r), _) => (r, join(path, "root"), d),
                (FilesDir::Alias(d), _, Some(a)) => (a, join(path, "alias"), d),
                _ => return None,
            };
            // An exact-file alias (`alias = "/srv/favicon.ico"`) names a file, not a directory.
            let exact_file = matches!(dir, FilesDir::Alias(_)) && !raw.get_ref().ends_with('/');
            match std::fs::metadata(dir_path) {
                Ok(m) if m.is_dir() || exact_file => {}
                Ok(_) => {
                    self.err(
                        raw.span(),
                        &key,
                        format!("{} is not a directory", dir_path.display()),
                    );
                    return None;
                }
                Err(e) => {
                    self.err(
                        raw.span(),
                        &key,
                        format!("cannot use {}: {e}", dir_path.display()),
                    );
                    return None;
                }
            }
        }
        let index = match &l.index {
            None => d::INDEX.iter().map(|s| (*s).to_owned()).collect(),
            Some(list) => {
                let mut out = Vec::new();
                for (key, item) in list_items(list, &join(path, "index")) {
                    let n = item.get_ref();
                    if n.is_empty() || n.contains(['/', '\0']) || n == "." || n == ".." {
                        self.err(
                            item.span(),
                            &key,
                            format!(
                                "{n:?} is not a file name; write e.g. \"index.html\" (no \"/\")"
                            ),
                        );
                    } else {
                        out.push(n.clone());
                    }
                }
                out
            }
        };
        let expires = l
            .expires
            .as_ref()
            .map(|_| self.duration(&l.expires, path, "expires", std::time::Duration::ZERO, true));
        Some(FilesLoc {
            dir,
            index,
            expires,
        })
    }

    fn return_(&mut self, raw: &Spanned<RawReturn>, path: &str) -> Option<ReturnLoc> {
        let r = raw.get_ref();
        let Some(status) = &r.status else {
            self.missing(raw.span(), path, "status", "301");
            return None;
        };
        let code = *status.get_ref();
        if !(100..=599).contains(&code) {
            self.err(
                status.span(),
                &join(path, "status"),
                format!("{code} is not an HTTP status; use 100 to 599"),
            );
            return None;
        }
        let code = code as u16;
        let redirect = REDIRECTS.contains(&code);
        let location = match &r.location {
            None if redirect => {
                self.err(
                    status.span(),
                    &join(path, "location"),
                    format!("status {code} is a redirect and needs a location, e.g. location = \"https://$host$request_uri\""),
                );
                return None;
            }
            None => None,
            Some(loc) if !redirect => {
                self.err(
                    loc.span(),
                    &join(path, "location"),
                    format!("location goes with a redirect status (301, 302, 303, 307, 308), not {code}; for {code} give a body"),
                );
                return None;
            }
            Some(loc) => {
                let key = join(path, "location");
                if loc.get_ref().trim().is_empty() || loc.get_ref().contains(['\r', '\n', '\0']) {
                    self.err(
                        loc.span(),
                        &key,
                        "must be a URL or a path without CR, LF or NUL, e.g. \"https://$host$request_uri\"",
                    );
                    return None;
                }
                match parse_template(loc.get_ref()) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        self.err(loc.span(), &key, e);
                        return None;
                    }
                }
            }
        };
        let body = match &r.body {
            Some(b) if redirect => {
                self.err(
                    b.span(),
                    &join(path, "body"),
                    format!("a {code} redirect takes a location, not a body"),
                );
                return None;
            }
            Some(b) if code < 200 || code == 204 || code == 304 => {
                self.err(
                    b.span(),
                    &join(path, "body"),
                    format!("a {code} response has no body; remove it"),
                );
                return None;
            }
            Some(b) => Some(b.get_ref().clone()),
            None => None,
        };
        Some(ReturnLoc {
            status: code,
            location,
            body,
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

fn span_of<T>(v: &Option<Spanned<T>>) -> Option<Range<usize>> {
    v.as_ref().map(Spanned::span)
}

fn flag(v: &Option<Spanned<bool>>, default: bool) -> bool {
    v.as_ref().map_or(default, |b| *b.get_ref())
}

/// RFC 9110 `tchar`.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The strings of a string-or-array key with their key paths (`x[1]` for arrays).
pub(crate) fn list_items(list: &Spanned<OneOrMany>, path: &str) -> Vec<(String, Spanned<String>)> {
    match list.get_ref() {
        OneOrMany::One(s) => vec![(path.to_owned(), Spanned::new(list.span(), s.clone()))],
        OneOrMany::Many(v) => v
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("{path}[{i}]"), s.clone()))
            .collect(),
    }
}
