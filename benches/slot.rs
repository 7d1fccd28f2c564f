//! The per-request future free list (`src/proxy/slot.rs`) against the system allocator.
//!
//! Every request runs its forwarding future in a heap block: `slot::run_in` takes it from a
//! worker-local free list, the alternative is `Box::pin`. Both are measured here on one
//! thread for futures of the forwarding future's size (3,968 bytes, 128-byte aligned in a
//! debug build of this tree; the `size` label is the block size), that wait once (as a
//! request does) and leave their state mostly unwritten (as a request's state is):
//! - `sequential`: one request at a time (a worker serving one connection).
//! - `burst64`: 64 requests in flight, started together and finished in order.
//! - `sequential_align16`: as `sequential` with a 16-byte aligned future, which the
//!   allocator serves with `malloc` rather than the slower `posix_memalign`.
//!
//! Run: `cargo bench --bench slot`. The free list is the proxy's own file, compiled in here
//! unchanged (`#[path]`), since `proxy::slot` is private to the crate.

use std::future::Future;
use std::hint::black_box;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

// (Its unit tests compile out here, leaving their imports unused.)
#[allow(dead_code, unused_imports)]
#[path = "../src/proxy/slot.rs"]
mod slot;

/// Requests in flight in the burst pattern.
const BURST: usize = 64;

/// The forwarding future's alignment (128: it holds cache-padded fields).
#[repr(align(128))]
struct Padded;

/// Future state of `N` bytes aligned as `A`: `Padded`, or `u128` for the allocator's
/// natural alignment (to show what the alignment costs).
#[repr(C)]
struct State<A, const N: usize> {
    _align: [A; 0],
    bytes: [MaybeUninit<u8>; N],
}

/// Pending once, then ready: a request waits at least once.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

/// A request's future: `N` bytes of state held across an await, one byte of it written.
async fn request<A, const N: usize>(seed: u8) -> u8 {
    let mut state = State::<A, N> {
        _align: [],
        bytes: [const { MaybeUninit::uninit() }; N],
    };
    state.bytes[0].write(seed);
    YieldOnce(false).await;
    black_box(&mut state);
    // SAFETY: byte 0 was written above.
    unsafe { state.bytes[0].assume_init() }
}

fn poll<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// Polls to completion a future that waits only on `YieldOnce`s.
fn finish<F: Future + ?Sized>(mut f: Pin<&mut F>) -> F::Output {
    loop {
        if let Poll::Ready(v) = poll(f.as_mut()) {
            return v;
        }
    }
}

/// One request at a time, each future made by `make` (`N` bytes).
fn sequential<Fut: Future<Output = u8>, const N: usize>(
    c: &mut Criterion,
    group: &str,
    make: impl Fn(u8) -> Fut + Copy,
) {
    let mut g = c.benchmark_group(group);
    g.bench_with_input(BenchmarkId::new("boxed", N), &N, |b, _| {
        b.iter(|| {
            let mut f = Box::pin(make(black_box(7)));
            finish(f.as_mut())
        })
    });
    let slots = slot::Slots::default();
    g.bench_with_input(BenchmarkId::new("free_list", N), &N, |b, _| {
        b.iter(|| {
            let f = slot::run_in(&slots, || make(black_box(7)));
            finish(std::pin::pin!(f))
        })
    });
    g.finish();
}

fn burst<const N: usize>(c: &mut Criterion) {
    let mut g = c.benchmark_group("burst64");
    g.bench_with_input(BenchmarkId::new("boxed", N), &N, |b, _| {
        let mk = |i: usize| Box::pin(request::<Padded, N>(i as u8));
        let mut inflight = Vec::with_capacity(BURST);
        inflight.push(mk(0));
        inflight.clear();
        b.iter(|| {
            for i in 0..BURST {
                let mut f = mk(i);
                assert!(poll(f.as_mut()).is_pending());
                inflight.push(f);
            }
            let mut sum = 0u32;
            for mut f in inflight.drain(..) {
                sum += finish(f.as_mut()) as u32;
            }
            sum
        })
    });
    let slots = slot::Slots::default();
    g.bench_with_input(BenchmarkId::new("free_list", N), &N, |b, _| {
        // The `run_in` futures themselves are a few words each and live where the task's
        // state lives (here a vector allocated once), so only the blocks differ.
        let mk = |i: usize| slot::run_in(&slots, move || request::<Padded, N>(i as u8));
        let mut inflight = Vec::with_capacity(BURST);
        inflight.push(mk(0));
        inflight.clear();
        b.iter(|| {
            for i in 0..BURST {
                inflight.push(mk(i));
            }
            // SAFETY (both loops): the vector has room for all of them, so it never moves
            // its elements; they stay in place until `clear` drops them.
            for f in inflight.iter_mut() {
                assert!(poll(unsafe { Pin::new_unchecked(f) }).is_pending());
            }
            let mut sum = 0u32;
            for f in inflight.iter_mut() {
                sum += finish(unsafe { Pin::new_unchecked(f) }) as u32;
            }
            inflight.clear();
            sum
        })
    });
    g.finish();
}

fn all(c: &mut Criterion) {
    sequential::<_, 1024>(c, "sequential", request::<Padded, 1024>);
    sequential::<_, 3968>(c, "sequential", request::<Padded, 3968>);
    sequential::<_, 16384>(c, "sequential", request::<Padded, 16384>);
    sequential::<_, 3968>(c, "sequential_align16", request::<u128, 3968>);
    burst::<3968>(c);
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = all
}
criterion_main!(benches);
