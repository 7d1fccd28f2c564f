//! The per-worker pool of idle upstream connections.
//!
//! One LIFO stack per server: the most recently used connection is the warmest (its
//! server-side keepalive timer is furthest from firing) and the oldest is evicted first when
//! the pool is full (nginx's LRU). Only a connection whose response was read to the end is
//! ever put back (`Reusable`), so a pooled connection never holds a half-read response.

use std::collections::VecDeque;
use std::time::Instant;

use monoio::net::TcpStream;

/// Read buffer of an upstream connection: large enough that a typical response head and
/// a small body arrive in one read, small enough that 64 idle connections per server cost
/// 2 MiB.
pub const UPSTREAM_BUF: usize = 32 * 1024;

/// A connection to one backend server, with its own read buffer.
pub struct UpConn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    /// Requests sent on this connection so far (for `keepalive_requests`).
    pub requests: u64,
    /// When it must be closed if still idle (`keepalive_timeout`).
    idle_until: Instant,
}

impl UpConn {
    pub fn new(stream: TcpStream) -> UpConn {
        UpConn {
            stream,
            buf: Vec::with_capacity(UPSTREAM_BUF),
            requests: 0,
            idle_until: Instant::now(),
        }
    }
}

/// Idle connections of one worker, indexed by `PeerState::id`.
#[derive(Default)]
pub struct IdlePool {
    by_peer: Vec<VecDeque<UpConn>>,
}

impl IdlePool {
    /// The most recently returned idle connection to `peer`, skipping expired ones.
    pub fn take(&mut self, peer: u32, now: Instant) -> Option<UpConn> {
        let stack = self.by_peer.get_mut(peer as usize)?;
        while let Some(c) = stack.pop_back() {
            if c.idle_until > now {
                return Some(c);
            }
        }
        None
    }

    /// Returns a connection whose exchange ended cleanly. `max_idle`: the upstream's
    /// `keepalive`; at the limit the oldest idle connection is closed.
    pub fn put(&mut self, peer: u32, mut conn: UpConn, max_idle: usize, idle_until: Instant) {
        if max_idle == 0 {
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
        conn.buf.clear();
        conn.idle_until = idle_until;
        stack.push_back(conn);
    }

    /// Closes every connection idle past its deadline.
    pub fn sweep(&mut self, now: Instant) {
        for stack in &mut self.by_peer {
            // Oldest first: stop at the first one still fresh... except deadlines differ by
            // upstream only, and a stack belongs to one upstream, so they are in order.
            while stack.front().is_some_and(|c| c.idle_until <= now) {
                stack.pop_front();
            }
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
