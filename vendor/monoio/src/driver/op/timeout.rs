//! ringlb patch: a timer as an io_uring operation (IORING_OP_TIMEOUT), which fires with the
//! kernel's hrtimer precision instead of on the timer wheel's millisecond ticks. Only the
//! io_uring driver runs it; see `crate::time::sleep_precise` for the fallback.

use std::io;

#[cfg(all(target_os = "linux", feature = "iouring"))]
use io_uring::{opcode, types};

use super::{Op, OpAble};

pub(crate) struct Timeout {
    /// The kernel reads it at submission; boxed so that it stays put while the operation
    /// (and with it this struct) moves.
    #[cfg(all(target_os = "linux", feature = "iouring"))]
    ts: Box<types::Timespec>,
}

impl Op<Timeout> {
    /// A timer that fires at `deadline` (absolute, on CLOCK_MONOTONIC, the clock of
    /// `std::time::Instant` on Linux): timers given the same deadline fire together.
    #[cfg(all(target_os = "linux", feature = "iouring"))]
    pub(crate) fn timeout_at(deadline: std::time::Instant) -> io::Result<Op<Timeout>> {
        let mut now_ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let now = std::time::Instant::now();
        // SAFETY: clock_gettime writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now_ts) };
        let now_ns = now_ts.tv_sec as i128 * 1_000_000_000 + now_ts.tv_nsec as i128;
        let delta = match deadline.checked_duration_since(now) {
            Some(d) => d.as_nanos() as i128,
            None => -(now.duration_since(deadline).as_nanos() as i128),
        };
        let at = (now_ns + delta).max(0) as u128;
        let ts = types::Timespec::new()
            .sec((at / 1_000_000_000) as u64)
            .nsec((at % 1_000_000_000) as u32);
        Op::submit_with(Timeout { ts: Box::new(ts) })
    }

    /// Waits for the timer; `Ok` when it expired (the kernel reports that as ETIME).
    pub(crate) async fn wait(self) -> io::Result<()> {
        let complete = self.await;
        match complete.meta.result {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl OpAble for Timeout {
    #[cfg(all(target_os = "linux", feature = "iouring"))]
    fn uring_op(&mut self) -> io_uring::squeue::Entry {
        opcode::Timeout::new(&*self.ts as *const types::Timespec)
            .flags(types::TimeoutFlags::ABS)
            .build()
    }

    #[cfg(any(feature = "legacy", feature = "poll-io"))]
    fn legacy_interest(&self) -> Option<(crate::driver::ready::Direction, usize)> {
        None
    }

    #[cfg(any(feature = "legacy", feature = "poll-io"))]
    fn legacy_call(&mut self) -> io::Result<u32> {
        Err(io::ErrorKind::Unsupported.into())
    }
}
