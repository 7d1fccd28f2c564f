//! The millisecond clock of every `*_ms` field in the shared server state.
//!
//! A `u64` of milliseconds fits an atomic, which an `Instant` does not. The clock starts at
//! [`EPOCH_MS`], not at 0, for the same reason nginx's `checked = 0` means "long ago": a
//! timestamp of 0 (a server that never failed, never came up) is then simply far in the past,
//! more than any `fail_timeout` or `slow_start` ago, and no rule needs a "never" case, not
//! even in the first seconds of the process's life.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What the clock reads when the process starts: 10^12 ms, about 31.7 years, longer than any
/// `fail_timeout` or `slow_start` worth configuring.
pub const EPOCH_MS: u64 = 1_000_000_000_000;

/// Milliseconds on the shared clock, now.
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// How long the process has run (the clock's reading less its epoch).
pub fn uptime() -> Duration {
    Duration::from_millis(now_ms() - EPOCH_MS)
}

thread_local! {
    /// A worker's coarse `now_ms`, set by its housekeeping tick (see `refresh_coarse_ms`).
    static COARSE_MS: Cell<u64> = const { Cell::new(0) };
}

/// `now_ms` to within one worker housekeeping tick (20 ms), without reading the clock: what the
/// request path uses for passive-failure windows and slow-start ramps, all of them seconds
/// long. Threads without a tick (the control thread, tests) read the real clock.
#[inline]
pub fn coarse_now_ms() -> u64 {
    match COARSE_MS.with(|c| c.get()) {
        0 => now_ms(),
        ms => ms,
    }
}

/// Advances this thread's coarse clock (the worker's tick).
pub fn refresh_coarse_ms() {
    let ms = now_ms();
    COARSE_MS.with(|c| c.set(ms));
}

/// `t` on the `now_ms` clock.
fn ms_at(t: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    t.saturating_duration_since(*START.get_or_init(Instant::now))
        .as_millis() as u64
        + EPOCH_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_starts_at_its_epoch_and_moves_forward() {
        let a = now_ms();
        assert!(a >= EPOCH_MS);
        assert!(uptime() < Duration::from_secs(3600));
        std::thread::sleep(Duration::from_millis(2));
        assert!(now_ms() > a);
        // Without a tick, the coarse clock is the real one.
        assert!(coarse_now_ms() >= a);
        refresh_coarse_ms();
        let t = coarse_now_ms();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(coarse_now_ms(), t, "the coarse clock moves only on a tick");
    }
}
