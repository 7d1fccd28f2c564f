//! Choosing a server and retrying on the next one, as nginx's `proxy_next_upstream` does;
//! after the response, the upstream connection goes back to the pool or is closed.

use std::time::Instant;

use super::{BodyPlan, ClientBroke, Exchange, Failure, Held, Outcome, Progress};
use crate::config::{Balance, VirtualServer};
use crate::metrics;
use crate::proxy::ctx::ProxyCtx;
use crate::proxy::downstream::Conn;
use crate::proxy::io::ClientIo;
use crate::upstream::balance::release;
use crate::upstream::{coarse_now_ms, PickError, PickInput, Upstream};

/// This request's slot in the upstream's retry budget, taken at its first retry and given
/// back when the request ends.
struct RetrySlot<'u> {
    up: &'u Upstream,
    held: bool,
}

impl RetrySlot<'_> {
    fn take(&mut self) -> bool {
        if !self.held {
            self.held = self.up.try_begin_retry();
            if !self.held {
                tracing::debug!(upstream = %self.up.cfg.name, "retry budget spent");
            }
        }
        self.held
    }
}

impl Drop for RetrySlot<'_> {
    fn drop(&mut self) {
        if self.held {
            self.up.end_retry();
        }
    }
}

impl Exchange {
    /// Sends the request prepared in `out` to a server of `up`, retrying as configured,
    /// and relays the response.
    pub(super) async fn forward<S: ClientIo>(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut Conn<S>,
        up: &Upstream,
        vs: &VirtualServer,
        plan: BodyPlan,
        close: bool,
    ) -> Outcome {
        let started = conn.clock;
        let cfg = &up.cfg;
        let max_tries = match cfg.next_upstream_tries {
            0 => u32::MAX,
            n => n,
        };
        self.tried.reset(up.peers.len());
        let mut tries = 0u32;
        let mut last: Option<Failure> = None;
        let mut next: Option<usize> = None;
        let mut budget = RetrySlot { up, held: false };
        loop {
            let i = match next.take() {
                Some(i) => i,
                None => match self.pick(ctx, up) {
                    Ok(i) => i,
                    Err(PickError::AllFull) if last.is_none() && cfg.queue > 0 => {
                        match self.wait_for_slot(ctx, conn, up).await {
                            Ok(i) => i,
                            Err(status) => {
                                if status.is_none() {
                                    self.log.status = 499;
                                }
                                return Outcome::Failed { status };
                            }
                        }
                    }
                    Err(e) => {
                        let status = match (&last, e) {
                            (Some(f), _) => f.status(),
                            (None, PickError::AllFull) => Some(503),
                            // "503 every server is down" (health checks or `down`), "502 no
                            // server could be reached": servers out for their recent failures
                            // (nginx's "no live upstreams", also a 502 there) were
                            // unreachable moments ago.
                            (None, PickError::NoLive) => {
                                // Logged once per transition by the control thread.
                                tracing::debug!(upstream = %cfg.name, "no live upstreams");
                                Some(if up.all_down() { 503 } else { 502 })
                            }
                        };
                        return Outcome::Failed { status };
                    }
                },
            };
            self.tried.set(i);
            tries += 1;
            let peer = &up.peers[i];
            let shard = peer.state.shard(ctx.worker);
            let mut progress = Progress::default();
            let sent_at = conn.clock;
            let attempt = self
                .attempt(ctx, conn, up, i, vs, plan, &mut progress)
                .await;
            conn.clock = Instant::now();
            let now = coarse_now_ms();
            let elapsed = conn.clock.saturating_duration_since(sent_at);
            self.log.upstream = Some((up.index, i));
            self.log.upstream_time = elapsed;
            match attempt {
                Ok(up_conn) => {
                    let status = self.res.status;
                    self.log.upstream_status = status;
                    shard.observe(status, elapsed);
                    if cfg.balance == Balance::LeastTime {
                        ctx.selector.borrow().observe(up, i, elapsed, now);
                    }
                    // An early answer (a refusal before the body was read) is the server's
                    // answer to this request: relayed, never retried, never a failure.
                    let status_fails = !self.early && cfg.next_upstream.retries_status(status);
                    let may_retry =
                        status_fails && self.may_retry(up, tries, max_tries, started, progress);
                    if status_fails {
                        ctx.selector.borrow_mut().failed(up, i, now);
                    }
                    if may_retry && budget.take() {
                        // Only give up this response if another server can take the request;
                        // otherwise the client gets the backend's own answer, as in nginx.
                        if let Ok(n) = self.pick(ctx, up) {
                            metrics::bump(&shard.failures);
                            metrics::bump(&shard.retries);
                            release(peer);
                            drop(up_conn);
                            next = Some(n);
                            continue;
                        }
                    } else if !status_fails {
                        ctx.selector.borrow_mut().succeeded(up, i);
                    }
                    let mut held = Held {
                        ctx,
                        up,
                        i,
                        conn: Some(up_conn),
                    };
                    let relayed = self.relay(ctx, conn, &mut held, vs, close).await;
                    drop(held);
                    return match relayed {
                        Ok(close) => Outcome::Done { close },
                        Err(ClientBroke) => Outcome::Failed { status: None },
                    };
                }
                Err(f) => {
                    release(peer);
                    self.log.upstream_status = 0;
                    if f.blames_server() {
                        metrics::bump(&shard.failures);
                        tracing::info!(
                            upstream = %cfg.name, server = %peer.cfg.name, error = %f,
                            "upstream attempt failed"
                        );
                        ctx.selector.borrow_mut().failed(up, i, now);
                    }
                    if matches!(f, Failure::ClientGone) {
                        self.log.status = 499;
                    }
                    if !(f.retry_allowed(up)
                        && self.may_retry(up, tries, max_tries, started, progress)
                        && budget.take())
                    {
                        return Outcome::Failed { status: f.status() };
                    }
                    metrics::bump(&shard.retries);
                    last = Some(f);
                }
            }
        }
    }

    pub(super) fn pick(&mut self, ctx: &ProxyCtx, up: &Upstream) -> Result<usize, PickError> {
        let input = PickInput {
            client_ip: self.client.ip(),
            hash_key: &self.key,
        };
        ctx.selector
            .borrow_mut()
            .pick(up, &input, &mut self.tried, coarse_now_ms())
    }

    /// nginx's `ngx_http_upstream_next` conditions, less the failure class.
    fn may_retry(
        &self,
        up: &Upstream,
        tries: u32,
        max_tries: u32,
        started: Instant,
        progress: Progress,
    ) -> bool {
        let cfg = &up.cfg;
        let timeout = cfg.next_upstream_timeout;
        tries < max_tries
            && (timeout.is_zero() || started.elapsed() < timeout)
            && !progress.body_consumed
            && (!progress.request_sent
                || self.head.method.is_idempotent()
                || cfg.next_upstream.non_idempotent)
    }
}
