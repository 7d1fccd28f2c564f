//! What happens to a parsed request: the location that serves it, its body (read whole or
//! to be streamed), the head as it is forwarded, and then the trip to a server
//! (`forward`), a `return`, or one of ringlb's own responses.

use super::body::BodyError;
use super::{BodyPlan, CloseAfter, Exchange, Outcome, REPLAY_MAX};
use crate::config::{Handler, VirtualServer};
use crate::control::generation::Published;
use crate::http::request::RequestBody;
use crate::http::vars::Vars;
use crate::http::{has_token, rewrite, trim, uri};
use crate::proxy::ctx::ProxyCtx;
use crate::proxy::downstream::Conn;
use crate::proxy::io::ClientIo;
use crate::proxy::route::{self, first_exact_name};

impl Exchange {
    /// Serves the parsed request; returns whether the connection must close afterwards.
    pub(in crate::proxy) async fn handle<S: ClientIo>(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut Conn<S>,
        cur: &Published,
        vs: &VirtualServer,
    ) -> CloseAfter {
        let head_len = self.head.head_len;
        let target = &conn.buf[self.head.target.0 as usize..self.head.target.1 as usize];
        let path = match uri::normalize(target, &mut self.path) {
            Ok(false) => target,
            Ok(true) => &self.path[..],
            Err(_) => {
                self.respond_own(ctx, conn, 400, true, vs).await;
                return true;
            }
        };
        let found = route::location(vs, path);
        self.max_body = found.map_or(vs.max_body_bytes, |(_, l)| l.max_body_bytes);
        if let RequestBody::Length(n) = self.head.body {
            if self.max_body > 0 && n > self.max_body {
                self.respond_own(ctx, conn, 413, true, vs).await;
                return true;
            }
        }
        let loc = match found.map(|(i, l)| (i, &l.handler)) {
            Some((_, Handler::Proxy(p))) => p,
            Some((_, Handler::Return(r))) => return self.answer_return(ctx, conn, vs, r).await,
            Some((i, Handler::Files(_))) => {
                // The site was opened with the generation; found by (server block, location).
                let server = cur
                    .config()
                    .servers
                    .iter()
                    .position(|s| std::ptr::eq(s, vs));
                let site = server.and_then(|s| cur.sites.get(s, i)).cloned();
                let path = path.to_vec();
                return match site {
                    Some(site) => self.answer_file(ctx, conn, vs, &site, &path).await,
                    None => {
                        self.respond_own(ctx, conn, 500, true, vs).await;
                        true
                    }
                };
            }
            None => {
                let close = self.head.body != RequestBody::None || !self.head.keep_alive;
                self.respond_own(ctx, conn, 404, close, vs).await;
                conn.consume(head_len);
                return close;
            }
        };
        let up = &cur.snapshot.upstreams[loc.upstream];
        self.read_timeout = loc.read_timeout.unwrap_or(up.cfg.read_timeout);
        self.buffering = loc
            .buffering
            .then_some((loc.buffers, loc.max_temp_file_size));
        let temp_dir = &cur.config().runtime.temp_path;
        if self.buffering.is_some() && self.temp_dir != *temp_dir {
            self.temp_dir.clone_from(temp_dir);
        }
        let close = !self.head.keep_alive
            || vs.keepalive_timeout.is_zero()
            || conn.served + 1 >= vs.keepalive_requests
            || ctx.stopping();

        self.early = false;
        self.key.clear();
        // The body first: a buffered one is read whole before anything else (its length
        // goes into the forwarded head).
        let plan = match self.head.body {
            RequestBody::None => BodyPlan::InOut,
            RequestBody::Length(n) if n <= REPLAY_MAX || loc.request_buffering => {
                BodyPlan::Buffered
            }
            RequestBody::Chunked if loc.request_buffering => BodyPlan::Buffered,
            RequestBody::Length(_) | RequestBody::Chunked => BodyPlan::Stream,
        };
        if plan == BodyPlan::Buffered {
            match self.buffer_body(ctx, conn, vs, loc).await {
                Ok(()) => {}
                Err(BodyError::Status(status)) => {
                    self.respond_own(ctx, conn, status, true, vs).await;
                    return true;
                }
                Err(BodyError::Gone) => return true,
            }
        }
        self.out.clear();
        {
            let upgrade = self
                .head
                .upgrade_value
                .map(|(a, b)| &conn.buf[a as usize..b as usize]);
            let upgrade = upgrade.filter(|v| upgrade_allowed(v, &loc.upgrade));
            self.upgrade = upgrade.is_some();
            let vars = Vars {
                buf: &conn.buf,
                head: &self.head,
                remote: self.client,
                server_name: first_exact_name(vs),
                https: S::TLS,
            };
            let forwarding = rewrite::Forwarding {
                upgrade,
                drop_underscores: !vs.underscores_in_headers,
                body_length: (plan == BodyPlan::Buffered).then(|| self.body.len()),
            };
            rewrite::request_head(
                &mut self.out,
                &vars,
                &loc.set_headers,
                &up.cfg.name,
                &forwarding,
            );
            if let Some(t) = &up.cfg.hash {
                vars.eval(t, &mut self.key);
            }
        }
        let plan = match plan {
            // The head and what of the body is in memory go in one write; a spilled rest
            // follows from the file.
            BodyPlan::Buffered => {
                self.out.extend_from_slice(&self.body.mem);
                if self.body.file_len() == 0 {
                    BodyPlan::InOut
                } else {
                    BodyPlan::Buffered
                }
            }
            p => p,
        };
        if plan != BodyPlan::Stream {
            // The body's bytes already left the buffer; the head goes now.
            conn.consume(head_len);
            // The request is all read: the client read can be armed (the next request's
            // read, which meanwhile tells if the client goes away). Not for an upgrade:
            // what the client sends next may be tunnel bytes, read by the tunnel.
            if !self.upgrade {
                conn.watch_client();
            }
        }

        match self.forward(ctx, conn, up, vs, plan, close).await {
            Outcome::Done { close } => close,
            Outcome::Failed { status } => {
                // A streamed body may be half read: the connection cannot find its next
                // request.
                let close = close || plan == BodyPlan::Stream;
                if let Some(status) = status {
                    self.respond_own(ctx, conn, status, close, vs).await;
                }
                close || status.is_none()
            }
        }
    }
}

/// Whether every protocol an Upgrade header offers is one the location passes on. `h2c`
/// never is: a proxy that tunnels it lets clients speak HTTP/2 past its own rules ("h2c
/// smuggling").
fn upgrade_allowed<A: AsRef<str>>(value: &[u8], allowed: &[A]) -> bool {
    let mut any = false;
    for offer in value.split(|&b| b == b',') {
        let offer = trim(offer);
        let name = offer.split(|&b| b == b'/').next().unwrap_or(offer);
        if name.is_empty() {
            continue;
        }
        if name.eq_ignore_ascii_case(b"h2c")
            || !allowed
                .iter()
                .any(|a| a.as_ref().as_bytes().eq_ignore_ascii_case(name))
        {
            return false;
        }
        any = true;
    }
    any && !has_token(value, b"h2c")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_upgrades_pass() {
        assert!(upgrade_allowed(b"websocket", &["websocket"]));
        assert!(upgrade_allowed(b"WebSocket", &["websocket"]));
        assert!(!upgrade_allowed(b"h2c", &["websocket"]));
        assert!(!upgrade_allowed(b"h2c", &["h2c"]));
        assert!(!upgrade_allowed(b"websocket, h2c", &["websocket"]));
        assert!(!upgrade_allowed(b"foo/1", &["websocket"]));
        assert!(upgrade_allowed(b"foo/1", &["foo"]));
        assert!(!upgrade_allowed::<&str>(b"websocket", &[]));
        assert!(!upgrade_allowed(b"", &["websocket"]));
    }
}
