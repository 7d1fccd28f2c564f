//! Responses ringlb makes itself: errors (400, 404, 413, 502, ...), the interim `100
//! Continue`, and `return` locations (a status with a `Location` or a body).

use std::time::Instant;

use super::{CloseAfter, Exchange};
use crate::config::{ReturnLoc, VirtualServer};
use crate::http::request::{Method, RequestBody};
use crate::http::vars::Vars;
use crate::http::{push_decimal, rewrite};
use crate::metrics;
use crate::proxy::ctx::ProxyCtx;
use crate::proxy::downstream::Conn;
use crate::proxy::io::ClientIo;
use crate::proxy::route::first_exact_name;

impl Exchange {
    /// Answers `Expect: 100-continue` before the body is read (nginx does the same; the
    /// Expect header is not forwarded).
    pub(super) async fn send_continue<S: ClientIo>(
        &mut self,
        conn: &mut Conn<S>,
        vs: &VirtualServer,
    ) -> bool {
        self.head.expect_continue = false;
        let mut msg = std::mem::take(&mut self.out);
        let mark = msg.len();
        msg.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        let end = msg.len();
        let (res, mut msg) = conn
            .send(msg, mark..end, conn.clock + vs.client_body_timeout)
            .await;
        msg.truncate(mark);
        self.out = msg;
        res.is_ok()
    }

    /// Sends a response ringlb makes itself (`close`: with `Connection: close`, then a
    /// lingering close).
    pub(in crate::proxy) async fn respond_own<S: ClientIo>(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut Conn<S>,
        status: u16,
        close: bool,
        vs: &VirtualServer,
    ) {
        metrics::bump(&ctx.stats.own_codes[metrics::code_slot(status)]);
        self.out.clear();
        rewrite::error_response(&mut self.out, status, close);
        self.log.status = status;
        self.log.head_bytes = self
            .out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |i| i as u64 + 4);
        let out = std::mem::take(&mut self.out);
        let len = out.len();
        let (res, out) = conn
            .send(out, 0..len, Instant::now() + vs.client_body_timeout)
            .await;
        if res.is_ok() {
            self.log.sent += out.len() as u64;
        }
        self.out = out;
        if close && res.is_ok() {
            conn.linger().await;
        }
    }

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
                remote: self.client,
                server_name: first_exact_name(vs),
                https: S::TLS,
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
