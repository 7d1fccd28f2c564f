//! `queue` / `queue_timeout`: when every server of an upstream is at `max_conns`, requests
//! wait in a bounded FIFO (per worker, per upstream, `proxy::queues`) instead of failing at
//! once.
//!
//! Only the request at the head of a queue tries for a slot, so they are served in order.
//! Slots freed on other workers cannot wake this worker's queue, so the head re-tries on a
//! short timer; the polling only happens while requests are actually queued (overload). A
//! request holds its place through a ticket, which leaves the queue when dropped: when the
//! request is served, times out, or its client goes away (the wait watches the client's
//! armed read).

use std::time::{Duration, Instant};

use super::Exchange;
use crate::proxy::ctx::ProxyCtx;
use crate::proxy::downstream::Conn;
use crate::proxy::io::{first, ClientIo, First};
use crate::proxy::queues::Ticket;
use crate::upstream::{PickError, Upstream};

/// How often the head of a queue re-tries for a free slot (monoio's timer resolution).
const QUEUE_POLL: Duration = Duration::from_millis(1);

impl Exchange {
    /// Waits for a server of `up` to have a free slot. `Err(Some(status))` when the queue
    /// is full or the wait times out (503), or no server is live any more (502);
    /// `Err(None)` when the client went away meanwhile.
    pub(super) async fn wait_for_slot<S: ClientIo>(
        &mut self,
        ctx: &ProxyCtx,
        conn: &mut Conn<S>,
        up: &Upstream,
    ) -> Result<usize, Option<u16>> {
        let Some(ticket) = Ticket::join(&ctx.queues, &up.cfg.name, up.cfg.queue) else {
            return Err(Some(503));
        };
        let deadline = Instant::now() + up.cfg.queue_timeout;
        // A queued request waits by nature: watch its client now on any driver.
        conn.watch_now();
        loop {
            if ticket.is_front() {
                // Nothing was tried yet; a slot lost to another worker's race last round
                // must not count as tried.
                self.tried.reset(up.peers.len());
                match self.pick(ctx, up) {
                    Ok(i) => return Ok(i),
                    Err(PickError::NoLive) => return Err(Some(502)),
                    Err(PickError::AllFull) => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(Some(503));
            }
            match first(monoio::time::sleep(QUEUE_POLL), |cx| conn.poll_armed(cx)).await {
                First::Left(()) => {}
                // Pipelined bytes: kept; the wait goes on.
                First::Right(Ok(n)) if n > 0 => {}
                First::Right(_) => return Err(None),
            }
        }
    }
}
