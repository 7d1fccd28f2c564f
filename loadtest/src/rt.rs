//! One monoio runtime per thread: io_uring when the kernel allows it, epoll otherwise;
//! threads pinned one per allowed core.

use std::future::Future;

use monoio::{FusionRuntime, LegacyDriver, RuntimeBuilder};

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
/// `FusionDriver` only probes io_uring with a tiny ring; building the real ring can still
/// fail (RLIMIT_MEMLOCK, seccomp), so a failed build falls back to the legacy driver.
/// `MONOIO_FORCE_LEGACY_DRIVER=1` forces epoll.
pub fn block_on<F, Fut>(make: F) -> (Driver, Fut::Output)
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    match RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut rt) => {
            let driver = match rt {
                FusionRuntime::Uring(_) => Driver::IoUring,
                FusionRuntime::Legacy(_) => Driver::Epoll,
            };
            (driver, rt.block_on(make()))
        }
        Err(_) => {
            let mut rt = RuntimeBuilder::<LegacyDriver>::new()
                .enable_timer()
                .build()
                .expect("neither io_uring nor epoll runtime could be built");
            (Driver::Epoll, rt.block_on(make()))
        }
    }
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
