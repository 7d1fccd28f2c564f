//! The per-worker wait queues of `queue` / `queue_timeout` (one FIFO per upstream) and the
//! ticket that holds a request's place in one: dropped, it leaves the queue, whatever ended
//! the wait (served, timed out, the client gone). The waiting itself is the exchange's
//! (`exchange::queue`).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

#[derive(Default)]
pub(super) struct WaitQueues {
    by_upstream: HashMap<String, VecDeque<u64>>,
    next_ticket: u64,
}

/// A request's place in a queue; leaves it when dropped.
pub(super) struct Ticket<'q> {
    queues: &'q RefCell<WaitQueues>,
    upstream: &'q str,
    id: u64,
}

impl<'q> Ticket<'q> {
    /// Joins the queue of `upstream`; `None` when `cap` requests already wait.
    pub(super) fn join(
        queues: &'q RefCell<WaitQueues>,
        upstream: &'q str,
        cap: usize,
    ) -> Option<Self> {
        let mut qs = queues.borrow_mut();
        let q = qs.by_upstream.entry(upstream.to_string()).or_default();
        if q.len() >= cap {
            return None;
        }
        qs.next_ticket += 1;
        let id = qs.next_ticket;
        qs.by_upstream.get_mut(upstream)?.push_back(id);
        Some(Ticket {
            queues,
            upstream,
            id,
        })
    }

    pub(super) fn is_front(&self) -> bool {
        self.queues
            .borrow()
            .by_upstream
            .get(self.upstream)
            .and_then(|q| q.front())
            .is_some_and(|&t| t == self.id)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(q) = self.queues.borrow_mut().by_upstream.get_mut(self.upstream) {
            q.retain(|&t| t != self.id);
        }
    }
}
