//! The run's fixed parameters and the per-thread schedule that hands out requests.
//!
//! Closed loop: a connection sends its next request as soon as the previous response is
//! in, and latency is measured from the actual send. Open loop (`-R`): request k of a
//! thread is due at `start + k / thread_rate`; a free connection takes the next request,
//! sleeps until it is due, and latency is measured from the due time. Sleeps end on a grid
//! of `--pace` steps (default 100 us; kernel timers, a timerfd per thread, not the runtime's 1 ms
//! wheel, which made every request leave 1-2 ms late): a request leaves at most one step
//! late, and requests due in the same step share one wake-up of the thread (one wake-up per
//! request costs the generator about 3x the CPU at 23k req/s). A stalled server thus delays every
//! request due during the stall, not just the few in flight: coordinated omission corrected
//! as in wrk2.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::stats::Stats;

/// `https://`: how every connection of the run starts its TLS session.
pub struct TlsPlan {
    pub connector: monoio_rustls::TlsConnector,
    /// The name sent as SNI and checked against the certificate.
    pub name: rustls::pki_types::ServerName<'static>,
}

/// Everything every thread agrees on.
pub struct Plan {
    pub addr: SocketAddr,
    /// `https://`: TLS on every connection.
    pub tls: Option<TlsPlan>,
    /// The serialized request, built once and shared for the whole run.
    pub request: &'static [u8],
    pub head_request: bool,
    pub keepalive: bool,
    pub timeout: Duration,
    /// Sending starts here (warmup included).
    pub start: Instant,
    /// Requests sent (or due) before this are not counted.
    pub measure_start: Instant,
    /// No request is sent (or due) from here on; in-flight ones are abandoned.
    pub end: Option<Instant>,
    /// `-n`: counted requests in total over all threads.
    pub limit: Option<u64>,
    pub claimed: AtomicU64,
    /// Set by SIGINT/SIGTERM: stop sending.
    pub stop: Arc<AtomicBool>,
    /// Open loop: the send-time grid (`--pace`).
    pub pace: Duration,
}

impl Plan {
    /// When a connection waiting for a request due at `due` wakes: `due` rounded up to the
    /// pacing grid, which starts at `start`.
    pub fn wake_at(&self, due: Instant) -> Instant {
        let grid = self.pace.as_nanos().max(1);
        let since = due.saturating_duration_since(self.start).as_nanos();
        let steps = since.div_ceil(grid);
        self.start + Duration::from_nanos((steps * grid) as u64)
    }
}

/// Live counters one thread publishes for the progress line (single writer, no contention).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Progress {
    pub finished: AtomicU64,
    pub errors: AtomicU64,
}

/// One request to send: when it was due (open loop) and whether it is measured.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    pub due: Option<Instant>,
    pub counted: bool,
}

/// A generator thread's share of the run.
pub struct Worker {
    pub plan: Arc<Plan>,
    /// Open loop: nanoseconds between this thread's requests, and the next request number.
    pace: Option<(f64, Cell<u64>)>,
    pub stats: RefCell<Stats>,
    progress: Arc<Progress>,
}

impl Worker {
    /// `rate`: this thread's share of `-R` in requests/s (open loop), or None.
    pub fn new(plan: Arc<Plan>, rate: Option<f64>, progress: Arc<Progress>) -> Worker {
        Worker {
            plan,
            pace: rate.map(|r| (1e9 / r, Cell::new(0))),
            stats: RefCell::new(Stats::new()),
            progress,
        }
    }

    /// The next request, or None when the run is over for this thread.
    pub fn next_ticket(&self) -> Option<Ticket> {
        let plan = &self.plan;
        if plan.stop.load(Ordering::Relaxed) {
            return None;
        }
        let due = self.pace.as_ref().map(|(interval, next)| {
            let k = next.get();
            next.set(k + 1);
            plan.start + Duration::from_nanos((k as f64 * interval) as u64)
        });
        let at = due.unwrap_or_else(Instant::now);
        if plan.end.is_some_and(|end| at >= end) {
            return None;
        }
        let counted = at >= plan.measure_start;
        if counted {
            if let Some(limit) = plan.limit {
                if plan.claimed.fetch_add(1, Ordering::Relaxed) >= limit {
                    return None;
                }
            }
        }
        Some(Ticket { due, counted })
    }

    /// Publishes this thread's totals for the progress line.
    pub fn publish(&self) {
        let stats = self.stats.borrow();
        let errors = stats.error_total();
        self.progress
            .finished
            .store(stats.responses + errors, Ordering::Relaxed);
        self.progress.errors.store(errors, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(pace: Duration) -> Plan {
        let start = Instant::now();
        Plan {
            addr: "127.0.0.1:1".parse().unwrap(),
            tls: None,
            request: b"GET / HTTP/1.1\r\n\r\n",
            head_request: false,
            keepalive: true,
            timeout: Duration::from_secs(1),
            start,
            measure_start: start,
            end: None,
            limit: None,
            claimed: AtomicU64::new(0),
            stop: Arc::new(AtomicBool::new(false)),
            pace,
        }
    }

    #[test]
    fn wake_times_round_up_to_the_pace_grid() {
        let p = plan(Duration::from_micros(100));
        let at = |us: u64| p.start + Duration::from_micros(us);
        // Never early, at most one step late, on the grid that starts at `start`.
        assert_eq!(p.wake_at(at(0)), at(0));
        assert_eq!(p.wake_at(at(1)), at(100));
        assert_eq!(p.wake_at(at(100)), at(100));
        assert_eq!(p.wake_at(at(101)), at(200));
        assert_eq!(p.wake_at(at(43_478)), at(43_500));
        // Requests due within one step share their wake-up.
        assert_eq!(p.wake_at(at(1_201)), p.wake_at(at(1_299)));
        // Before the start (cannot happen for a ticket, but must not underflow).
        assert_eq!(p.wake_at(p.start), p.start);
    }

    #[test]
    fn open_loop_tickets_are_due_at_the_rate() {
        let w = Worker::new(
            Arc::new(plan(Duration::from_micros(100))),
            Some(4000.0),
            Arc::new(Progress::default()),
        );
        let start = w.plan.start;
        let dues: Vec<Duration> = (0..4)
            .map(|_| w.next_ticket().unwrap().due.unwrap() - start)
            .collect();
        assert_eq!(dues, [0, 250, 500, 750].map(Duration::from_micros).to_vec());
    }
}
