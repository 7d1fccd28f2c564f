//! A request's variables (`$host`, `$remote_addr`, ...) and the value of a template against
//! them, written into a reused buffer: `proxy_set_header`, the `hash` key, a `return`
//! location. The template was parsed at load (`config::template_parse`); this runs per
//! request.

use std::io::Write;
use std::net::SocketAddr;

use super::request::RequestHead;
use super::trim;
use crate::config::{Template, TemplatePart, Var};

/// What a template may refer to.
pub struct Vars<'a> {
    /// The buffer the head was parsed from.
    pub buf: &'a [u8],
    pub head: &'a RequestHead,
    pub remote: SocketAddr,
    /// `$host` when the request names no host (HTTP/1.0 without Host): nginx uses the
    /// server name of the matched server block; "" when it has none.
    pub server_name: &'a str,
    /// The connection is TLS: `$scheme` is `https`.
    pub https: bool,
}

impl Vars<'_> {
    fn target(&self) -> &[u8] {
        &self.buf[self.head.target.0 as usize..self.head.target.1 as usize]
    }

    fn header(&self, lower_name: &[u8]) -> Option<&[u8]> {
        self.head
            .headers
            .iter()
            .find(|h| h.name(self.buf).eq_ignore_ascii_case(lower_name))
            .map(|h| h.value(self.buf))
    }

    /// nginx's `$host`: the host without its port, lower-cased.
    fn write_host(&self, out: &mut Vec<u8>) {
        if let Some((a, b)) = self.head.host {
            let h = &self.buf[a as usize..b as usize];
            let h = match h.first() {
                Some(b'[') => h.iter().position(|&c| c == b']').map_or(h, |i| &h[..=i]),
                _ => h.iter().position(|&c| c == b':').map_or(h, |i| &h[..i]),
            };
            out.extend(h.iter().map(u8::to_ascii_lowercase));
        } else {
            out.extend_from_slice(self.server_name.as_bytes());
        }
    }

    pub fn write_var(&self, var: &Var, out: &mut Vec<u8>) {
        match var {
            Var::Host => self.write_host(out),
            Var::RemoteAddr => {
                let _ = write!(out, "{}", self.remote.ip());
            }
            Var::RemotePort => {
                let _ = write!(out, "{}", self.remote.port());
            }
            Var::RequestUri => push_target(self.target(), out),
            Var::Uri => {
                let t = self.target();
                let path = t.split(|&b| b == b'?').next().unwrap_or(t);
                push_target(path, out);
            }
            Var::Args => {
                let t = self.target();
                if let Some(i) = t.iter().position(|&b| b == b'?') {
                    out.extend_from_slice(&t[i + 1..]);
                }
            }
            Var::Scheme => out.extend_from_slice(if self.https { b"https" } else { b"http" }),
            Var::ProxyAddXForwardedFor => {
                if let Some(v) = self.header(b"x-forwarded-for") {
                    let v = trim(v);
                    if !v.is_empty() {
                        out.extend_from_slice(v);
                        out.extend_from_slice(b", ");
                    }
                }
                let _ = write!(out, "{}", self.remote.ip());
            }
            Var::Http(name) => {
                if let Some(v) = self.header(name.as_bytes()) {
                    out.extend_from_slice(trim(v));
                }
            }
            Var::Cookie(name) => {
                if let Some(v) = self.header(b"cookie") {
                    if let Some(c) = find_cookie(v, name.as_bytes()) {
                        out.extend_from_slice(c);
                    }
                }
            }
        }
    }

    /// Appends the value of `t` to `out`.
    pub fn eval(&self, t: &Template, out: &mut Vec<u8>) {
        for part in &t.parts {
            match part {
                TemplatePart::Literal(s) => out.extend_from_slice(s.as_bytes()),
                TemplatePart::Var(v) => self.write_var(v, out),
            }
        }
    }
}

/// An absolute-form `http://host?q` forwards an empty path: it is sent as `/`.
pub(crate) fn push_target(t: &[u8], out: &mut Vec<u8>) {
    if t.first() != Some(&b'/') && t != b"*" {
        out.push(b'/');
    }
    out.extend_from_slice(t);
}

pub(crate) fn find_cookie<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = trim(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        (trim(&pair[..eq]) == name).then(|| trim(&pair[eq + 1..]))
    })
}
