//! Writing the heads ringlb sends: the request to the backend (hop-by-hop headers removed,
//! `proxy_set_header` applied, body re-framed) and the response to the client. Both write
//! into a buffer the connection reuses; nothing here allocates once that buffer has grown.

use super::body::ClientFraming;
use super::request::RequestBody;
use super::response::ResponseHead;
use super::vars::{push_target, Vars};
use super::{has_token, is_hop_by_hop, push_decimal};
use crate::config::HeaderRule;

/// What a location lets through to the server beyond the request's end-to-end fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Forwarding<'a> {
    /// The Upgrade value passed on (the request's, when the location allows its tokens):
    /// sent with `Connection: upgrade`. `None`: no Upgrade reaches the server, and the
    /// request is proxied as plain HTTP/1.1.
    pub upgrade: Option<&'a [u8]>,
    /// Fields whose name has `_` are dropped (nginx's `underscores_in_headers off`: such
    /// names can alias `-` names in CGI-style environments, `X_Real_IP` for `X-Real-IP`).
    pub drop_underscores: bool,
    /// The body was read whole: it goes with this `Content-Length`, whatever the client's
    /// framing was.
    pub body_length: Option<u64>,
}

/// Appends the request head for the backend to `out`.
///
/// `default_host` is sent as Host when the client gave none (HTTP/1.0) and no rule sets it:
/// nginx sends `$proxy_host`, the upstream's name, in that case.
pub fn request_head(
    out: &mut Vec<u8>,
    vars: &Vars<'_>,
    rules: &[HeaderRule],
    default_host: &str,
    fwd: &Forwarding<'_>,
) {
    let buf = vars.buf;
    let head = vars.head;
    if head.verbatim
        && !(head.underscore && fwd.drop_underscores)
        && !rules.iter().any(|r| {
            head.headers
                .iter()
                .any(|h| h.name(buf).eq_ignore_ascii_case(r.name_lower.as_bytes()))
        })
    {
        // Nothing to remove or replace: the head as the client wrote it, then the rules.
        out.extend_from_slice(&buf[..head.head_len - 2]);
        append_rules(out, vars, rules);
        out.extend_from_slice(b"\r\n");
        return;
    }
    out.extend_from_slice(&buf[head.method_span.0 as usize..head.method_span.1 as usize]);
    out.push(b' ');
    push_target(&buf[head.target.0 as usize..head.target.1 as usize], out);
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let connection = head.connection.map(|(a, b)| &buf[a as usize..b as usize]);
    for h in &head.headers {
        let name = h.name(buf);
        // Host is written from the parsed host (which an absolute-form target overrides);
        // Expect is answered by ringlb itself.
        if (fwd.drop_underscores && name.contains(&b'_'))
            || name.eq_ignore_ascii_case(b"host")
            || name.eq_ignore_ascii_case(b"expect")
            || is_hop_by_hop(name)
            || connection.is_some_and(|c| has_token(c, name))
            || rules
                .iter()
                .any(|r| r.name_lower.as_bytes().eq_ignore_ascii_case(name))
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value(buf));
        out.extend_from_slice(b"\r\n");
    }

    let host_set = append_rules(out, vars, rules);
    if !host_set {
        out.extend_from_slice(b"Host: ");
        match head.host {
            Some((a, b)) => out.extend_from_slice(&buf[a as usize..b as usize]),
            None => out.extend_from_slice(default_host.as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
    }

    let body = match fwd.body_length {
        Some(n) if head.body != RequestBody::None => RequestBody::Length(n),
        _ => head.body,
    };
    match body {
        RequestBody::None => {}
        RequestBody::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        RequestBody::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    if let Some(v) = fwd.upgrade {
        out.extend_from_slice(b"Connection: upgrade\r\nUpgrade: ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the `proxy_set_header` lines; whether one of them set (or removed) Host.
fn append_rules(out: &mut Vec<u8>, vars: &Vars<'_>, rules: &[HeaderRule]) -> bool {
    let mut host_set = false;
    for rule in rules {
        let Some(t) = &rule.value else {
            host_set |= rule.name_lower == "host";
            continue;
        };
        let mark = out.len();
        out.extend_from_slice(rule.name.as_bytes());
        out.extend_from_slice(b": ");
        let value_at = out.len();
        vars.eval(t, out);
        if out.len() == value_at {
            // nginx: a header whose value evaluates to "" is not sent.
            out.truncate(mark);
        } else {
            out.extend_from_slice(b"\r\n");
            host_set |= rule.name_lower == "host";
        }
    }
    host_set
}

/// Appends the response head for the client to `out`. `close`: ringlb will close the
/// client connection after this response. `tunnel`: a 101 that becomes a tunnel, whose
/// Upgrade header must pass.
pub fn response_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    res: &ResponseHead,
    framing: ClientFraming,
    close: bool,
    client_minor: u8,
    tunnel: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, res.status as u64);
    out.push(b' ');
    out.extend_from_slice(&buf[res.reason.0 as usize..res.reason.1 as usize]);
    out.extend_from_slice(b"\r\n");
    let connection = res.connection.map(|(a, b)| &buf[a as usize..b as usize]);
    for h in &res.headers {
        let name = h.name(buf);
        let pass_upgrade = tunnel && name.eq_ignore_ascii_case(b"upgrade");
        if !pass_upgrade
            && (is_hop_by_hop(name)
                || connection.is_some_and(|c| has_token(c, name))
                || super::response::is_accel(name))
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value(buf));
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        ClientFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        ClientFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        ClientFraming::None | ClientFraming::Close => {
            // 204/304 keep their (body-less) Content-Length if the backend sent one: it
            // describes the representation, not this message.
            if res.status == 304 || (framing == ClientFraming::None && res.status != 204) {
                copy_content_length(out, buf, res);
            }
        }
    }
    if tunnel {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    } else if close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client_minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn copy_content_length(out: &mut Vec<u8>, buf: &[u8], res: &ResponseHead) {
    if let Some(h) = res
        .headers
        .iter()
        .find(|h| h.name(buf).eq_ignore_ascii_case(b"content-length"))
    {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(h.value(buf));
        out.extend_from_slice(b"\r\n");
    }
}

/// A response ringlb makes itself: short plain text.
pub fn error_response(out: &mut Vec<u8>, status: u16, close: bool) {
    let reason = reason(status);
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, status as u64);
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\nServer: ringlb\r\nContent-Type: text/plain\r\nContent-Length: ");
    push_decimal(out, (reason.len() + 5) as u64);
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    push_decimal(out, status as u64);
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Template, TemplatePart, Var};
    use crate::http::request::{self, RequestHead};
    use crate::http::response::{self, ResponseHead};

    fn rule(name: &str, value: Option<Template>) -> HeaderRule {
        HeaderRule {
            name: name.into(),
            name_lower: name.to_ascii_lowercase(),
            value,
        }
    }

    #[test]
    fn request_rewrite_strips_hop_by_hop_and_applies_rules() {
        let raw = b"POST /p?q=1 HTTP/1.1\r\nHost: Example.com:8080\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 1.1.1.1\r\nContent-Length: 3\r\nAccept: */*\r\nX-Drop: y\r\n\r\n";
        let mut head = RequestHead::default();
        assert!(request::parse(raw, &mut head).unwrap());
        let vars = Vars {
            buf: raw,
            head: &head,
            remote: "10.0.0.7:5555".parse().unwrap(),
            server_name: "",
            https: false,
        };
        let rules = vec![
            rule(
                "X-Real-IP",
                Some(Template {
                    parts: vec![TemplatePart::Var(Var::RemoteAddr)],
                }),
            ),
            rule(
                "X-Forwarded-For",
                Some(Template {
                    parts: vec![TemplatePart::Var(Var::ProxyAddXForwardedFor)],
                }),
            ),
            rule(
                "X-Host",
                Some(Template {
                    parts: vec![
                        TemplatePart::Var(Var::Host),
                        TemplatePart::Literal("|".into()),
                        TemplatePart::Var(Var::Args),
                    ],
                }),
            ),
            rule("X-Drop", None),
        ];
        let mut out = Vec::new();
        request_head(&mut out, &vars, &rules, "up", &Forwarding::default());
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("POST /p?q=1 HTTP/1.1\r\n"), "{s}");
        for gone in ["Connection", "X-Secret", "Keep-Alive", "TE:", "X-Drop"] {
            assert!(!s.contains(gone), "{gone} in {s}");
        }
        assert!(s.contains("X-Real-IP: 10.0.0.7\r\n"));
        assert!(s.contains("X-Forwarded-For: 1.1.1.1, 10.0.0.7\r\n"));
        assert!(s.contains("X-Host: example.com|q=1\r\n"));
        assert!(s.contains("Host: Example.com:8080\r\n"));
        assert!(s.contains("Content-Length: 3\r\n"));
        assert!(s.ends_with("\r\n\r\n"));
    }

    #[test]
    fn clean_requests_pass_as_written_plus_rules() {
        let raw = b"GET /a?b HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nContent-Length: 0\r\n\r\n";
        let mut head = RequestHead::default();
        assert!(request::parse(raw, &mut head).unwrap());
        assert!(head.verbatim);
        let vars = Vars {
            buf: raw,
            head: &head,
            remote: "10.0.0.7:5555".parse().unwrap(),
            server_name: "",
            https: false,
        };
        let rules = vec![rule(
            "X-Real-IP",
            Some(Template {
                parts: vec![TemplatePart::Var(Var::RemoteAddr)],
            }),
        )];
        let mut out = Vec::new();
        request_head(&mut out, &vars, &rules, "up", &Forwarding::default());
        assert_eq!(
            out,
            b"GET /a?b HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nContent-Length: 0\r\nX-Real-IP: 10.0.0.7\r\n\r\n"
        );
        for not in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"[..],
            b"GET / HTTP/1.1\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\nA: b\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 05\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
        ] {
            let mut h = RequestHead::default();
            assert!(request::parse(not, &mut h).unwrap());
            assert!(!h.verbatim, "{}", String::from_utf8_lossy(not));
        }
    }

    #[test]
    fn response_rewrite_reframes() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\nX-A: 1\r\n\r\n";
        let mut res = ResponseHead::default();
        assert!(response::parse(raw, &mut res, false).unwrap());
        let mut out = Vec::new();
        response_head(&mut out, raw, &res, ClientFraming::Close, true, 0, false);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, "HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: close\r\n\r\n");
    }

    #[test]
    fn own_error_has_matching_length() {
        let mut out = Vec::new();
        error_response(&mut out, 502, true);
        let s = String::from_utf8(out).unwrap();
        let body = s.split("\r\n\r\n").nth(1).unwrap();
        assert!(s.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert_eq!(body, "502 Bad Gateway\n");
    }
}
