//! Reading a request body whole before a server is chosen (`proxy_request_buffering`, on by
//! default, as nginx): a slow upload then occupies no server while it arrives, the body
//! reaches the server with a `Content-Length` however the client framed it (WSGI servers
//! read `CONTENT_LENGTH` and see a chunked body as empty), and a failed attempt can replay
//! it on the next server. Memory holds up to the location's `proxy_buffers`; the rest goes
//! to an unlinked temporary file (see `spool`).

use std::time::Instant;

use super::Exchange;
use crate::config::{ProxyLoc, VirtualServer};
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::RequestBody;
use crate::proxy::ctx::ProxyCtx;
use crate::proxy::downstream::Conn;
use crate::proxy::io::{ClientIo, IoFail};
use crate::proxy::watchdog::Watch;

/// Why a body could not be read whole.
pub(super) enum BodyError {
    /// Answer this status and close (400 bad chunked framing, 408 too slow, 413 too large,
    /// 500 the temporary file failed).
    Status(u16),
    /// The client went away or broke the connection.
    Gone,
}

impl Exchange {
    /// Reads the request body into `self.body`, leaving the request head at the start of
    /// the connection's buffer and whatever follows the body (a pipelined request) after
    /// it.
    pub(super) async fn buffer_body<S: ClientIo>(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut Conn<S>,
        vs: &VirtualServer,
        loc: &ProxyLoc,
    ) -> Result<(), BodyError> {
        self.body.clear();
        let head_len = self.head.head_len;
        let cur = ctx.current();
        let dir = &cur.config().runtime.temp_path;
        let mut chunked = match self.head.body {
            RequestBody::Chunked => Some(ChunkedDecoder::default()),
            _ => None,
        };
        let mut remaining = match self.head.body {
            RequestBody::Length(n) => n,
            _ => u64::MAX,
        };
        let spill_failed = |e: std::io::Error| {
            tracing::error!(path = %dir.display(), error = %e, "cannot buffer a request body in temp_path");
            BodyError::Status(500)
        };
        loop {
            let avail = &conn.buf[head_len..];
            let used = match &mut chunked {
                None => {
                    let take = (avail.len() as u64).min(remaining) as usize;
                    self.body
                        .push(&avail[..take], loc.buffers, dir)
                        .await
                        .map_err(spill_failed)?;
                    remaining -= take as u64;
                    take
                }
                Some(dec) => {
                    let mut decoded = std::mem::take(&mut self.out);
                    decoded.clear();
                    let d = dec.decode(avail, &mut decoded, false);
                    let pushed = match &d {
                        Ok(_) => self.body.push(&decoded, loc.buffers, dir).await,
                        Err(_) => Ok(()),
                    };
                    self.out = decoded;
                    let d = d.map_err(|_| BodyError::Status(400))?;
                    pushed.map_err(spill_failed)?;
                    if self.max_body > 0 && dec.decoded > self.max_body {
                        return Err(BodyError::Status(413));
                    }
                    if d.done {
                        remaining = 0;
                    }
                    d.consumed
                }
            };
            // The body's bytes leave the buffer; the head stays in front of what follows.
            if head_len + used == conn.buf.len() {
                conn.buf.truncate(head_len);
            } else {
                conn.buf.drain(head_len..head_len + used);
            }
            if remaining == 0 {
                return Ok(());
            }
            if self.head.expect_continue && !self.send_continue(conn, vs).await {
                return Err(BodyError::Gone);
            }
            conn.buf.reserve(super::REPLAY_MAX as usize);
            conn.clock = Instant::now();
            match conn
                .read(Watch::read(conn.clock + vs.client_body_timeout))
                .await
            {
                Ok(0) | Err(IoFail::Io(_)) => return Err(BodyError::Gone),
                Err(IoFail::Timeout) => return Err(BodyError::Status(408)),
                Ok(_) => {}
            }
        }
    }
}
