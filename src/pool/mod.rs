//! The per-worker pool of idle upstream connections.
//!
//! One LIFO stack per server: the most recently used connection is the warmest (its
//! server-side keepalive timer is furthest from firing) and the oldest is evicted first when
//! the pool is full (nginx's LRU). Only a connection whose response ended exactly at its
//! framed end is ever put back, and a connection whose server sent anything while it idled
//! (stray bytes, end of stream) is discarded when taken, never written to: seen through the
//! read kept armed on it (epoll) or a non-blocking peek (io_uring), see [`IdlePool::new`].

mod conn;

use std::collections::VecDeque;
use std::time::Instant;

pub(crate) use conn::make_room;
pub use conn::{ArmedRead, ConnectError, UpConn, UpStream, UPSTREAM_BUF};

/// Idle connections of one worker, indexed by `PeerState::id`.
#[derive(Default)]
pub struct IdlePool {
    by_peer: Vec<VecDeque<UpConn>>,
    /// Whether idle connections keep a read armed (epoll) or are peeked at when taken
    /// (io_uring); see [`IdlePool::new`].
    arm_idle: bool,
}

impl IdlePool {
    /// `arm_idle`: keep a read armed on each idle connection, so that `take` learns from
    /// its completion, without a system call, whether the server spoke or closed. That is
    /// free on epoll (the socket is registered anyway, and nothing is read until it is
    /// readable). On io_uring an armed read is a kernel poll armed on the socket, then a
    /// wake-up and task work when the response comes, where a read submitted after the
    /// request was sent usually finds the response already there: measured with 64
    /// connections through one worker, keeping reads armed in the pool cost more than one
    /// `recv(MSG_PEEK | MSG_DONTWAIT)` per reuse. So on io_uring `take` peeks.
    pub fn new(arm_idle: bool) -> IdlePool {
        IdlePool {
            by_peer: Vec::new(),
            arm_idle,
        }
    }

    /// The most recently returned idle connection to `peer` that is still fresh and on which
    /// the server has said nothing since; the others are closed. `discarded` counts those
    /// the server spoke on (or closed).
    pub fn take(&mut self, peer: u32, now: Instant, discarded: &mut u32) -> Option<UpConn> {
        let stack = self.by_peer.get_mut(peer as usize)?;
        while let Some(mut c) = stack.pop_back() {
            if c.spoke_or_closed() {
                *discarded += 1;
                continue;
            }
            if c.idle_until > now {
                return Some(c);
            }
        }
        None
    }

    /// Takes back a connection whose response was consumed up to its framed end. A
    /// connection still holding bytes (the server sent more than the response) is closed
    /// instead: nothing it sent may reach another request. `max_idle`: the upstream's
    /// `keepalive`; at the limit the oldest idle connection is closed.
    pub fn put(&mut self, peer: u32, mut conn: UpConn, max_idle: usize, idle_until: Instant) {
        if max_idle == 0 || !conn.buf.is_empty() {
            return;
        }
        let i = peer as usize;
        if self.by_peer.len() <= i {
            self.by_peer.resize_with(i + 1, VecDeque::new);
        }
        let stack = &mut self.by_peer[i];
        if stack.len() >= max_idle {
            stack.pop_front();
        }
        conn.idle_until = idle_until;
        if self.arm_idle {
            conn.arm();
        }
        stack.push_back(conn);
    }

    /// Closes every connection idle past its deadline, or that its server closed (or spoke
    /// on) while it idled.
    pub fn sweep(&mut self, now: Instant) {
        for stack in &mut self.by_peer {
            stack.retain_mut(|c| c.idle_until > now && !c.spoke_or_closed());
        }
    }

    /// Closes the idle connections of servers that `keep` rejects (removed by a reload).
    pub fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        for (i, stack) in self.by_peer.iter_mut().enumerate() {
            if !keep(i as u32) {
                stack.clear();
            }
        }
    }

    /// Closes everything (shutdown).
    pub fn clear(&mut self) {
        self.by_peer.clear();
    }
}
