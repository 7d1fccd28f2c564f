//! `root` / `alias` locations: the file's answer (see `files`) written to the client, its
//! body without a copy through user space where the stream allows (the head with `MSG_MORE`,
//! then sendfile, on both drivers), read and written piece by piece over TLS.

use std::time::Instant;

use super::{CloseAfter, Exchange};
use crate::config::VirtualServer;
use crate::files::{self, Site};
use crate::http::request::RequestBody;
use crate::metrics;
use crate::proxy::ctx::ProxyCtx;
use crate::proxy::downstream::Conn;
use crate::proxy::io::ClientIo;

impl Exchange {
    /// Answers from `site` for the normalised `path`. A request body is not read (files
    /// take GET and HEAD only): the connection then closes.
    pub(super) async fn answer_file<S: ClientIo>(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut Conn<S>,
        vs: &VirtualServer,
        site: &Site,
        path: &[u8],
    ) -> CloseAfter {
        let close = self.head.body != RequestBody::None
            || !self.head.keep_alive
            || vs.keepalive_timeout.is_zero()
            || conn.served + 1 >= vs.keepalive_requests
            || ctx.stopping();
        let req = files::Request::from_head(&self.head, &conn.buf);
        let reply = files::Reply {
            close,
            minor: self.head.minor,
        };
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let answer = files::respond(site, path, &req, reply, &mut out).await;
        metrics::bump(&ctx.stats.own_codes[metrics::code_slot(answer.status)]);
        self.log.status = answer.status;
        self.log.head_bytes = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(out.len(), |i| i + 4) as u64;
        conn.consume(self.head.head_len);
        let len = out.len();
        // A body the kernel can send from the file goes with its head (see `files::send`).
        let zero_copy = answer.body.is_some() && conn.stream.plain_tcp().is_some();
        if !zero_copy {
            let (res, back) = conn
                .send(out, 0..len, Instant::now() + vs.client_body_timeout)
                .await;
            out = back;
            if res.is_err() {
                self.out = out;
                return true;
            }
            self.log.sent += len as u64;
        }
        if let Some(body) = answer.body {
            let sent = match conn.stream.plain_tcp() {
                Some(tcp) => files::send_file(tcp, &out, &body, vs.client_body_timeout).await,
                None => {
                    let buf = ctx.buffers.take();
                    let (r, buf) =
                        files::copy_body(&mut conn.stream, &body, buf, vs.client_body_timeout)
                            .await;
                    ctx.buffers.give(buf);
                    r
                }
            };
            if zero_copy && sent.is_ok() {
                self.log.sent += len as u64;
            }
            if let Err(e) = sent {
                // Part of the body went: the client cannot take the cut response for a
                // whole one, since its connection closes.
                tracing::debug!(error = %e, "file body cut short");
                self.out = out;
                return true;
            }
            self.log.sent += body.len;
        }
        self.out = out;
        if close {
            conn.linger().await;
        }
        close
    }
}
