//! A worker's free list of read-sized buffers, shared by its exchanges: the buffer a whole
//! response was read into goes to the client while the upstream connection gets one from
//! here, and response chunks held for slow clients come from and go back to it. Kept per
//! worker (not per connection), so that ten thousand idle connections hold none.

use std::cell::RefCell;

use crate::pool::UPSTREAM_BUF;

/// Buffers kept for reuse per worker (2 MiB at most).
const KEEP: usize = 64;

#[derive(Default)]
pub struct Buffers {
    free: RefCell<Vec<Vec<u8>>>,
}

impl Buffers {
    /// An empty buffer with room for one upstream read.
    pub fn take(&self) -> Vec<u8> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(UPSTREAM_BUF))
    }

    /// Takes a buffer back, if it is of the usual size and the list is not full.
    pub fn give(&self, mut b: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        if free.len() < KEEP && (UPSTREAM_BUF..=2 * UPSTREAM_BUF).contains(&b.capacity()) {
            b.clear();
            free.push(b);
        }
    }
}
