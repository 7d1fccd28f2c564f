//! Heap blocks for requests' forwarding state, reused within a worker.
//!
//! A connection's task would otherwise carry, even while idle, the largest state any of its
//! awaits needs (forwarding, streaming and relaying: kilobytes). Running that part in a
//! separate heap block keeps idle connections small, and taking the block from a
//! worker-local free list instead of `Box::pin` keeps the request path free of `malloc`:
//! memory follows the requests in flight, not the connections open.
//!
//! Measured against `Box::pin` (`cargo bench --bench slot`, 2-core VM): 2.8 ns per request
//! against 88-95 ns for a block of the forwarding future's size and 128-byte alignment
//! (`posix_memalign`; 19 ns at 16-byte alignment), and 0.59 us against 4.9 us for 64
//! requests in flight: about 1% of a proxied request's CPU, so the free list stays.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;

/// Free blocks kept per worker; more are returned to the allocator (after a burst).
const MAX_FREE: usize = 1024;

#[derive(Default)]
pub struct Slots {
    /// The one layout the free blocks have (the first future run here sets it).
    layout: Cell<Option<Layout>>,
    free: RefCell<Vec<NonNull<u8>>>,
}

impl Slots {
    fn take(&self, layout: Layout) -> NonNull<u8> {
        if self.layout.get() == Some(layout) {
            if let Some(p) = self.free.borrow_mut().pop() {
                return p;
            }
        }
        if layout.size() == 0 {
            // A zero-sized future needs no memory; any aligned non-null pointer will do.
            return NonNull::new(layout.align() as *mut u8).unwrap_or(NonNull::dangling());
        }
        // SAFETY: the size is non-zero.
        let p = unsafe { alloc(layout) };
        NonNull::new(p).unwrap_or_else(|| handle_alloc_error(layout))
    }

    fn give_back(&self, p: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        if self.layout.get().is_none() {
            self.layout.set(Some(layout));
        }
        let mut free = self.free.borrow_mut();
        if self.layout.get() == Some(layout) && free.len() < MAX_FREE {
            free.push(p);
        } else {
            // SAFETY: `p` came from `alloc(layout)` in `take`.
            unsafe { dealloc(p.as_ptr(), layout) };
        }
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        if let Some(layout) = self.layout.get() {
            for p in self.free.get_mut().drain(..) {
                // SAFETY: every free block was allocated with `layout`.
                unsafe { dealloc(p.as_ptr(), layout) };
            }
        }
    }
}

/// Runs the future `make` returns to completion inside a block from `slots`. Taking a
/// constructor rather than the future lets it be built in place instead of being built on
/// the stack and copied (kilobytes) into the block.
pub async fn run_in<F: Future>(slots: &Slots, make: impl FnOnce() -> F) -> F::Output {
    let layout = Layout::new::<F>();
    let block = slots.take(layout).cast::<F>();
    // SAFETY: `block` is valid for writes of an `F` and aligned for it.
    unsafe { block.as_ptr().write(make()) };
    let guard = Placed {
        block,
        slots,
        layout,
    };
    // SAFETY: the future lives in `block` until `guard` drops it in place; it is never
    // moved, so pinning it there is sound.
    let pinned = unsafe { Pin::new_unchecked(&mut *guard.block.as_ptr()) };
    pinned.await
}

/// Drops the future in its block and returns the block, whether the future completed or
/// the task running it was dropped half way.
struct Placed<'s, F> {
    block: NonNull<F>,
    slots: &'s Slots,
    layout: Layout,
}

impl<F> Drop for Placed<'_, F> {
    fn drop(&mut self) {
        // SAFETY: the block holds an initialised `F` that nothing else will touch again.
        unsafe { std::ptr::drop_in_place(self.block.as_ptr()) };
        self.slots.give_back(self.block.cast(), self.layout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn blocks_are_reused_and_futures_dropped() {
        let slots = Slots::default();
        let marker = Rc::new(());
        for i in 0..3u64 {
            let m = marker.clone();
            let big = [i; 64];
            let out = futures_lite_block_on(run_in(&slots, || async move {
                let _keep = m;
                big.iter().sum::<u64>()
            }));
            assert_eq!(out, i * 64);
            assert_eq!(
                slots.free.borrow().len(),
                1,
                "the block went back to the list"
            );
        }
        assert_eq!(Rc::strong_count(&marker), 1, "each future was dropped");
    }

    /// Polls a future that never waits.
    fn futures_lite_block_on<F: Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("test future waited"),
        }
    }
}
