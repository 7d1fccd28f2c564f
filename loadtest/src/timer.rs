//! Sleeping until an instant with the kernel's timer precision, on both monoio drivers.
//!
//! monoio's own timer is a wheel with 1 ms ticks: a sleep is rounded up to the next tick and
//! ends on the tick after, so a paced request left 1-2 ms late and `serve --delay 1ms` took
//! ~2.4 ms. Here each runtime thread has one timerfd (`timerfd_create(CLOCK_MONOTONIC)`, the
//! clock of [`Instant`] on Linux) armed with the earliest deadline any sleeper waits for
//! (`timerfd_settime` with `TFD_TIMER_ABSTIME`), and one task that reads it through monoio
//! like any other descriptor: an io_uring read operation, or epoll readiness then `readv`.
//! Each expiry wakes every sleeper whose deadline has passed, so sleepers due at the same
//! instant (the open-loop pacing grid) share one wake-up, then re-arms for the next deadline.
//!
//! The descriptor travels in a [`monoio::net::UnixStream`]: monoio 0.2 has no public type
//! that registers an arbitrary pollable descriptor with both drivers, and that one's
//! `readv` is a plain `readv(2)` (IORING_OP_READV on io_uring), which a timerfd serves. No
//! socket call is ever made on it.
//!
//! [`Scope`] installs the timer for the runtime that runs on this thread ([`crate::rt`] does
//! it for every runtime it builds); without one, or should the timerfd fail, sleeps fall back
//! to monoio's wheel.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use monoio::buf::VecBuf;
use monoio::io::AsyncReadRent;

thread_local! {
    static CURRENT: RefCell<Option<Rc<Timer>>> = const { RefCell::new(None) };
}

/// Sleeps until `deadline`, waking within microseconds of it (see the module doc).
pub async fn sleep_until(deadline: Instant) {
    if deadline <= Instant::now() {
        return;
    }
    if let Some(timer) = CURRENT.with(|c| c.borrow().clone()) {
        if !timer.broken.get() {
            Sleep {
                timer,
                deadline,
                key: None,
            }
            .await;
            // A Sleep ends early only when the timerfd failed: then the wheel takes over.
            if deadline <= Instant::now() {
                return;
            }
        }
    }
    monoio::time::sleep_until(monoio::time::Instant::from_std(deadline)).await
}

/// The timer of the runtime running on this thread; uninstalled when dropped.
pub struct Scope(());

impl Scope {
    /// Creates this thread's timerfd and its reader task. Call it inside the runtime (the
    /// descriptor is registered with the runtime's driver). On failure sleeps use monoio's
    /// wheel, and the error is returned for the caller to report.
    pub fn install() -> io::Result<Scope> {
        let timer = Rc::new(Timer::new()?);
        monoio::spawn(read_expirations(timer.clone()));
        CURRENT.with(|c| *c.borrow_mut() = Some(timer));
        Ok(Scope(()))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        CURRENT.with(|c| c.borrow_mut().take());
    }
}

/// One thread's timerfd and the sleepers waiting on it.
struct Timer {
    /// The timerfd, in the carrier monoio reads it through; taken by the reader task.
    carrier: RefCell<Option<monoio::net::UnixStream>>,
    fd: RawFd,
    /// Sleepers by (deadline, sequence number): the sequence keeps equal deadlines apart.
    sleepers: RefCell<BTreeMap<(Instant, u64), Waker>>,
    next_key: Cell<u64>,
    /// The deadline the timerfd is armed for, if any.
    armed: Cell<Option<Instant>>,
    /// Set when reading the timerfd failed: later sleeps use monoio's wheel.
    broken: Cell<bool>,
    /// One reading of both clocks, to turn an Instant into a CLOCK_MONOTONIC timespec.
    base: (Instant, i128),
}

impl Timer {
    fn new() -> io::Result<Timer> {
        // SAFETY: plain system call; the result is checked.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns; the carrier closes it.
        let std_carrier = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
        let carrier = monoio::net::UnixStream::from_std(std_carrier)?;
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let now = Instant::now();
        // SAFETY: clock_gettime writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Ok(Timer {
            fd: carrier.as_raw_fd(),
            carrier: RefCell::new(Some(carrier)),
            sleepers: RefCell::new(BTreeMap::new()),
            next_key: Cell::new(0),
            armed: Cell::new(None),
            broken: Cell::new(false),
            base: (now, ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128),
        })
    }

    /// Registers a sleeper; the timerfd is re-armed if this deadline is the earliest.
    fn register(&self, deadline: Instant, waker: Waker) -> (Instant, u64) {
        let key = (deadline, self.next_key.get());
        self.next_key.set(key.1.wrapping_add(1));
        self.sleepers.borrow_mut().insert(key, waker);
        if self.armed.get().is_none_or(|armed| deadline < armed) {
            self.arm(deadline);
        }
        key
    }

    /// Arms the timerfd for `deadline` (absolute). A deadline already past fires at once.
    fn arm(&self, deadline: Instant) {
        let (base_instant, base_ns) = self.base;
        let delta = match deadline.checked_duration_since(base_instant) {
            Some(d) => d.as_nanos() as i128,
            None => -(base_instant.duration_since(deadline).as_nanos() as i128),
        };
        // Zero would disarm the timer: the earliest deadline is 1 ns.
        let at = (base_ns + delta).max(1);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at / 1_000_000_000) as libc::time_t,
                tv_nsec: (at % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: `fd` is this timer's open timerfd; the spec outlives the call.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd,
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc == 0 {
            self.armed.set(Some(deadline));
        } else {
            self.fail(io::Error::last_os_error());
        }
    }

    /// After an expiry: wakes every sleeper that is due, re-arms for the next one.
    fn expire(&self) {
        self.armed.set(None);
        let now = Instant::now();
        let mut sleepers = self.sleepers.borrow_mut();
        while let Some(entry) = sleepers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            entry.remove().wake();
        }
        let next = sleepers.keys().next().map(|k| k.0);
        drop(sleepers);
        if let Some(next) = next {
            self.arm(next);
        }
    }

    /// The timerfd cannot be used: every sleeper is woken and sleeps on monoio's wheel
    /// for what is left.
    fn fail(&self, err: io::Error) {
        if !self.broken.replace(true) {
            eprintln!("ringload: timerfd failed ({err}); timers fall back to the 1 ms wheel");
        }
        let sleepers = std::mem::take(&mut *self.sleepers.borrow_mut());
        for waker in sleepers.into_values() {
            waker.wake();
        }
    }
}

/// The reader task: one read outstanding on the timerfd at all times (a read of a disarmed
/// timerfd simply waits until it is armed and fires).
async fn read_expirations(timer: Rc<Timer>) {
    let Some(mut carrier) = timer.carrier.borrow_mut().take() else {
        return;
    };
    // The expiration count: one u64.
    let mut buf = VecBuf::from(vec![vec![0u8; 8]]);
    loop {
        let (result, back) = carrier.readv(buf).await;
        buf = back;
        match result {
            Ok(_) => timer.expire(),
            // The descriptor is non-blocking (epoll needs that); should an io_uring read of
            // it ever end in EAGAIN (kernels that honour O_NONBLOCK there) rather than wait,
            // wait for readability instead of spinning.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if let Err(err) = carrier.readable(false).await {
                    timer.fail(err);
                    return;
                }
            }
            Err(err) => {
                timer.fail(err);
                return;
            }
        }
    }
}

/// A registered sleep; removes itself from the timer when dropped before its deadline.
struct Sleep {
    timer: Rc<Timer>,
    deadline: Instant,
    key: Option<(Instant, u64)>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            if let Some(key) = this.key.take() {
                this.timer.sleepers.borrow_mut().remove(&key);
            }
            return Poll::Ready(());
        }
        if this.timer.broken.get() {
            // Woken by `fail`: sleep_until goes on on monoio's wheel.
            this.key = None;
            return Poll::Ready(());
        }
        match this.key {
            Some(key) => {
                if let Some(waker) = this.timer.sleepers.borrow_mut().get_mut(&key) {
                    if !waker.will_wake(cx.waker()) {
                        *waker = cx.waker().clone();
                    }
                }
            }
            None => this.key = Some(this.timer.register(this.deadline, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.timer.sleepers.borrow_mut().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

    use super::*;

    /// Runs `test` with a timer installed on an io_uring runtime (when the kernel allows one)
    /// and on an epoll runtime.
    fn on_both_drivers<F, Fut>(test: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ()>,
    {
        match RuntimeBuilder::<IoUringDriver>::new()
            .enable_timer()
            .build()
        {
            Ok(mut rt) => rt.block_on(async {
                let _scope = Scope::install().expect("timerfd on io_uring");
                test().await
            }),
            Err(err) => eprintln!("no io_uring here ({err}): epoll only"),
        }
        let mut rt = RuntimeBuilder::<LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("epoll runtime");
        rt.block_on(async {
            let _scope = Scope::install().expect("timerfd on epoll");
            test().await
        });
    }

    fn pending_sleepers() -> usize {
        CURRENT.with(|c| c.borrow().as_ref().unwrap().sleepers.borrow().len())
    }

    #[test]
    fn sleepers_wake_at_or_after_their_deadlines_in_any_order() {
        on_both_drivers(|| async {
            let start = Instant::now();
            // 60 sleepers on 10 deadlines, registered out of order: equal deadlines share
            // an expiry, an earlier one re-arms the timer.
            let tasks: Vec<_> = (0..60u64)
                .map(|i| {
                    let deadline = start + Duration::from_millis(3 + (i * 7) % 10);
                    monoio::spawn(async move {
                        sleep_until(deadline).await;
                        Instant::now() >= deadline
                    })
                })
                .collect();
            for task in tasks {
                assert!(task.await, "a sleeper woke before its deadline");
            }
            assert_eq!(pending_sleepers(), 0);
            // A deadline already past returns at once.
            sleep_until(start).await;
        });
    }

    #[test]
    fn a_cancelled_sleep_leaves_nothing_behind() {
        on_both_drivers(|| async {
            let far = Instant::now() + Duration::from_secs(60);
            let cut = monoio::time::timeout(Duration::from_millis(5), sleep_until(far)).await;
            assert!(cut.is_err(), "the far sleep was cut by the timeout");
            assert_eq!(pending_sleepers(), 0);
            // The timer still serves the next sleeper after the re-arm for the far one.
            let soon = Instant::now() + Duration::from_millis(2);
            sleep_until(soon).await;
            assert!(Instant::now() >= soon);
        });
    }
}
