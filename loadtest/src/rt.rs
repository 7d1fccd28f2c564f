//! One monoio runtime per thread: io_uring when the kernel allows it, epoll otherwise;
//! threads pinned one per allowed core.

use std::future::Future;

use monoio::{LegacyDriver, RuntimeBuilder};

use crate::timer;

/// Which I/O driver a thread ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Epoll,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// Runs `make()`'s future to completion on a fresh runtime for this thread.
///
/// io_uring first, with the ring flags that suit one thread owning one ring (COOP_TASKRUN,
/// SINGLE_ISSUER, DEFER_TASKRUN: kernel 6.1+, the same ones ringlb uses), then a plain ring,
/// then epoll: building a ring can fail (RLIMIT_MEMLOCK, seccomp, an old kernel).
/// `MONOIO_FORCE_LEGACY_DRIVER=1` forces epoll.
pub fn block_on<F, Fut>(make: F) -> (Driver, Fut::Output)
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    if std::env::var_os("MONOIO_FORCE_LEGACY_DRIVER").is_none() {
        let uring = |tuned: bool| {
            let mut b = RuntimeBuilder::<monoio::IoUringDriver>::new();
            if tuned {
                let mut urb = io_uring::IoUring::builder();
                urb.setup_coop_taskrun()
                    .setup_single_issuer()
                    .setup_defer_taskrun();
                b = b.uring_builder(urb);
            }
            b.enable_timer().build()
        };
        if let Ok(mut rt) = uring(true).or_else(|_| uring(false)) {
            return (Driver::IoUring, rt.block_on(with_timer(make)));
        }
    }
    let mut rt = RuntimeBuilder::<LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("neither io_uring nor epoll runtime could be built");
    (Driver::Epoll, rt.block_on(with_timer(make)))
}

/// Runs `make()`'s future with this runtime's precise timer installed ([`timer::Scope`]).
async fn with_timer<F, Fut>(make: F) -> Fut::Output
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    let _scope = match timer::Scope::install() {
        Ok(scope) => Some(scope),
        Err(err) => {
            eprintln!("ringload: no timerfd ({err}); timers use the 1 ms wheel");
            None
        }
    };
    make().await
}

/// The cores this process may run on (honours `taskset`), at least one entry.
pub fn allowed_cores() -> Vec<core_affinity::CoreId> {
    core_affinity::get_core_ids().unwrap_or_default()
}

/// Pins the calling thread to the `index`-th allowed core (wrapping); best effort.
pub fn pin_to(cores: &[core_affinity::CoreId], index: usize) {
    if !cores.is_empty() {
        core_affinity::set_for_current(cores[index % cores.len()]);
    }
}
