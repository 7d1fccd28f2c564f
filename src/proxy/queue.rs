//! `queue` / `queue_timeout`: when every server of an upstream is at `max_conns`, requests
//! wait in a bounded FIFO (per worker, per upstream) instead of failing at once.
//!
//! Only the request at the head of a queue tries for a slot, so they are served in order.
//! Slots freed on other workers cannot wake this worker's queue, so the head re-tries on a
//! short timer; the polling only happens while requests are actually queued (overload).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::client::Client;
use super::ProxyCtx;
use crate::upstream::{PickError, Upstream};

/// How often the head of a queue re-tries for a free slot (monoio's timer resolution).
const QUEUE_POLL: Duration = Duration::from_millis(1);

#[derive(Default)]
pub struct WaitQueues {
    by_upstream: HashMap<String, VecDeque<u64>>,
    next_ticket: u64,
}

impl WaitQueues {
    /// Joins the queue of `upstream`; `None` when `cap` requests already wait.
    fn join(&mut self, upstream: &str, cap: usize) -> Option<u64> {
        let q = self.by_upstream.entry(upstream.to_string()).or_default();
        if q.len() >= cap {
            return None;
        }
        self.next_ticket += 1;
        q.push_back(self.next_ticket);
        Some(self.next_ticket)
    }

    fn is_front(&self, upstream: &str, ticket: u64) -> bool {
        self.by_upstream
            .get(upstream)
            .and_then(|q| q.front())
            .is_some_and(|&t| t == ticket)
    }

    fn leave(&mut self, upstream: &str, ticket: u64) {
        if let Some(q) = self.by_upstream.get_mut(upstream) {
            q.retain(|&t| t != ticket);
        }
    }
}

impl Client {
    /// Waits for a server of `up` to have a free slot; `Err(status)` when the queue is full
    /// or the wait times out (503), or no server is live any more (502).
    pub(super) async fn wait_for_slot(
        &mut self,
        ctx: &ProxyCtx,
        up: &Upstream,
    ) -> Result<usize, u16> {
        let name = &up.cfg.name;
        let Some(ticket) = ctx.queues.borrow_mut().join(name, up.cfg.queue) else {
            return Err(503);
        };
        let deadline = Instant::now() + up.cfg.queue_timeout;
        loop {
            if ctx.queues.borrow().is_front(name, ticket) {
                // Nothing was tried yet; a slot lost to another worker's race last round
                // must not count as tried.
                self.tried.reset(up.peers.len());
                match self.pick(ctx, up) {
                    Ok(i) => {
                        ctx.queues.borrow_mut().leave(name, ticket);
                        return Ok(i);
                    }
                    Err(PickError::NoLive) => {
                        ctx.queues.borrow_mut().leave(name, ticket);
                        return Err(502);
                    }
                    Err(PickError::AllFull) => {}
                }
            }
            if Instant::now() >= deadline {
                ctx.queues.borrow_mut().leave(name, ticket);
                return Err(503);
            }
            monoio::time::sleep(QUEUE_POLL).await;
        }
    }
}
