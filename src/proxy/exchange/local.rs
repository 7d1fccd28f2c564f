//! Locations answered without a server: `return` (a status with a `Location` or a body).

use std::time::Instant;

use super::{CloseAfter, Exchange};
use crate::config::{ReturnLoc, ServerName, VirtualServer};
use crate::http::request::{Method, RequestBody};
use crate::http::template::Vars;
use crate::http::{push_decimal, rewrite};
use crate::metrics;
use crate::proxy::conn::Conn;
use crate::proxy::io::ClientIo;
use crate::proxy::ProxyCtx;

impl Exchange {
    /// Answers with the location's `return`: a redirect (the `location` template evaluated
    /// for this request, e.g. `https://$host$request_uri`) or a status with a plain-text
    /// body. The request body, if any, is not read: the connection then closes.
    pub(super) async fn answer_return<S: ClientIo>(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut Conn<S>,
        vs: &VirtualServer,
        r: &ReturnLoc,
    ) -> CloseAfter {
        let close = self.head.body != RequestBody::None || !self.head.keep_alive;
        metrics::bump(&ctx.stats.own_codes[metrics::code_slot(r.status)]);
        let reason = rewrite::reason(r.status);
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, r.status as u64);
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\nServer: ringlb\r\n");
        if let Some(t) = &r.location {
            out.extend_from_slice(b"Location: ");
            let vars = Vars {
                buf: &conn.buf,
                head: &self.head,
                remote: conn.remote,
                server_name: first_exact_name(vs),
            };
            vars.eval(t, out);
            out.extend_from_slice(b"\r\n");
        }
        let default_body;
        let body: &[u8] = match &r.body {
            Some(b) => b.as_bytes(),
            None if r.location.is_some()
                || r.status < 200
                || r.status == 204
                || r.status == 304 =>
            {
                b""
            }
            None => {
                default_body = format!("{} {reason}\n", r.status);
                default_body.as_bytes()
            }
        };
        if !body.is_empty() || r.status >= 200 && r.status != 204 && r.status != 304 {
            out.extend_from_slice(b"Content-Type: text/plain\r\nContent-Length: ");
            push_decimal(out, body.len() as u64);
            out.extend_from_slice(b"\r\n");
        }
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if self.head.minor == 0 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        self.log.head_bytes = out.len() as u64;
        if self.head.method != Method::Head {
            out.extend_from_slice(body);
        }
        self.log.status = r.status;
        conn.consume(self.head.head_len);
        let out = std::mem::take(&mut self.out);
        let len = out.len();
        let (res, out) = conn
            .send(out, 0..len, Instant::now() + vs.client_body_timeout)
            .await;
        self.out = out;
        if res.is_err() {
            return true;
        }
        self.log.sent += len as u64;
        if close {
            conn.linger().await;
        }
        close
    }
}

/// The server block's first exact name (`$host` when the request names none).
pub(in crate::proxy) fn first_exact_name(vs: &VirtualServer) -> &str {
    vs.server_names
        .iter()
        .find_map(|n| match n {
            ServerName::Exact(n) => Some(n.as_str()),
            ServerName::Wildcard(_) => None,
        })
        .unwrap_or("")
}
