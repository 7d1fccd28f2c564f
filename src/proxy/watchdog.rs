//! Coarse per-worker timeouts for socket operations.
//!
//! A per-operation timer (monoio's `timeout`) costs a clock reading, a timer-wheel insert
//! and removal and an extra future layer on every read and write: about a tenth of a
//! proxied request's instructions. Socket timeouts here are seconds long, so instead each
//! pending operation registers its descriptor and deadline in a slab (an index write), and
//! the worker's housekeeping tick sweeps the slab: an operation past its deadline gets its
//! socket shut down, which completes it at once on io_uring and epoll alike, and the
//! operation reports a timeout. The price is precision: a timeout fires up to one tick late.
//!
//! The same slab knows which connections are idle between requests, so a graceful stop can
//! end exactly those reads, and it can *nudge* a wait that has lasted a while (wake its
//! task once, see [`Watch::nudge_at`]): an io_uring worker arms its client watch only for
//! exchanges that outlast a tick, since a read armed on an idle client costs a kernel poll.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::task::{Context, Waker};
use std::time::Instant;

/// How to end a timed-out operation: a client read only loses its read side, so a 408 can
/// still be written; everything else loses the whole connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shut {
    Read,
    Both,
}

#[derive(Debug, Clone)]
struct Entry {
    /// An operation on this descriptor is pending.
    armed: bool,
    deadline: Instant,
    shut: Shut,
    /// A client connection waiting for its next request.
    idle: bool,
    fired: bool,
    /// When to wake the waiting task once (`Watch::nudge_at`), its waker, and whether
    /// that happened.
    nudge_at: Option<Instant>,
    nudge: Option<Waker>,
    nudged: bool,
}

/// Pending operations, indexed by descriptor: descriptors are small dense integers, so
/// arming and disarming are an index write, with no free list or hashing.
#[derive(Debug, Default)]
pub struct Watchdog {
    by_fd: RefCell<Vec<Entry>>,
}

thread_local! {
    /// The worker thread's watchdog: every connection task of a worker runs on its thread,
    /// so the I/O helpers reach it without a context parameter.
    static WATCHDOG: Watchdog = const {
        Watchdog {
            by_fd: RefCell::new(Vec::new()),
        }
    };
}

/// Runs `f` with this thread's watchdog.
pub fn with<R>(f: impl FnOnce(&Watchdog) -> R) -> R {
    WATCHDOG.with(f)
}

/// What one operation is watched for (by the current thread's watchdog).
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    pub deadline: Instant,
    pub shut: Shut,
    pub idle: bool,
    pub nudge_at: Option<Instant>,
}

impl Watch {
    /// An operation on a backend connection, or a write to a client.
    pub fn both(deadline: Instant) -> Self {
        Watch {
            deadline,
            shut: Shut::Both,
            idle: false,
            nudge_at: None,
        }
    }

    /// A read from a client.
    pub fn read(deadline: Instant) -> Self {
        Watch {
            deadline,
            shut: Shut::Read,
            idle: false,
            nudge_at: None,
        }
    }

    /// A client connection's wait for its next request.
    pub fn idle(deadline: Instant) -> Self {
        Watch {
            idle: true,
            ..Self::read(deadline)
        }
    }

    /// Also wakes the waiting task once, at the first sweep from `at` on, if it is still
    /// waiting then ([`Armed::nudged`] tells it so). One tick late at most, like deadlines.
    pub fn nudge_at(self, at: Instant) -> Self {
        Watch {
            nudge_at: Some(at),
            ..self
        }
    }

    /// Starts watching `fd`; the operation is watched until the guard is dropped. One
    /// operation per descriptor at a time (a connection task never has two pending).
    pub fn arm(self, fd: RawFd) -> Armed {
        with(|dog| self.arm_on(dog, fd))
    }

    fn arm_on(self, dog: &Watchdog, fd: RawFd) -> Armed {
        let i = fd as usize;
        let mut by_fd = dog.by_fd.borrow_mut();
        if by_fd.len() <= i {
            let idle = Entry {
                armed: false,
                deadline: self.deadline,
                shut: Shut::Both,
                idle: false,
                fired: false,
                nudge_at: None,
                nudge: None,
                nudged: false,
            };
            by_fd.resize((i + 1).max(64).next_power_of_two(), idle);
        }
        let e = &mut by_fd[i];
        e.armed = true;
        e.deadline = self.deadline;
        e.shut = self.shut;
        e.idle = self.idle;
        e.fired = false;
        e.nudge_at = self.nudge_at;
        e.nudged = false;
        Armed { fd: i }
    }
}

/// A watched operation of this thread's watchdog (the guard holds only the descriptor, so it
/// borrows nothing across the awaits it lives through). Dropping it stops the watch, which
/// must happen before the descriptor can be closed (it is: the guard lives inside the
/// operation's future, the socket outside it).
pub struct Armed {
    fd: usize,
}

impl Armed {
    /// Whether the deadline has passed (the socket is then shut down), still watching.
    pub fn has_fired(&self) -> bool {
        with(|dog| dog.by_fd.borrow()[self.fd].fired)
    }

    /// Whether the sweep has nudged this wait (see [`Watch::nudge_at`]); until then, keeps
    /// `cx`'s waker for the nudge.
    pub fn nudged(&self, cx: &Context<'_>) -> bool {
        with(|dog| {
            let mut by_fd = dog.by_fd.borrow_mut();
            let e = &mut by_fd[self.fd];
            if e.nudged {
                return true;
            }
            if e.nudge_at.is_some() && !e.nudge.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                e.nudge = Some(cx.waker().clone());
            }
            false
        })
    }

    /// Stops watching; whether the deadline had passed (the socket is then shut down).
    pub fn fired(self) -> bool {
        let fired = self.release();
        std::mem::forget(self);
        fired
    }

    fn release(&self) -> bool {
        // `try_with`: a guard dropped while the thread's locals are torn down has nothing
        // left to release.
        WATCHDOG
            .try_with(|dog| {
                let mut by_fd = dog.by_fd.borrow_mut();
                let e = &mut by_fd[self.fd];
                e.armed = false;
                e.nudge = None;
                e.fired
            })
            .unwrap_or(false)
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.release();
    }
}

impl Watchdog {
    /// Shuts down the sockets of operations past their deadline.
    /// Also nudges the waits whose time has come.
    pub fn sweep(&self, now: Instant) {
        let mut wake = Vec::new();
        let mut by_fd = self.by_fd.borrow_mut();
        for (fd, e) in by_fd.iter_mut().enumerate() {
            if !e.armed {
                continue;
            }
            if !e.fired && e.deadline <= now {
                e.fired = true;
                shutdown(fd as RawFd, e.shut);
            }
            if !e.nudged && e.nudge_at.is_some_and(|at| at <= now) {
                e.nudged = true;
                wake.extend(e.nudge.take());
            }
        }
        // Woken with the slab released: a woken task is only scheduled, but it will
        // borrow the slab when it runs.
        drop(by_fd);
        for w in wake {
            w.wake();
        }
    }

    /// Ends the wait of every idle client connection (graceful stop): their reads see end
    /// of stream and the connections close.
    pub fn end_idle(&self) {
        let by_fd = self.by_fd.borrow();
        for (fd, _) in by_fd.iter().enumerate().filter(|(_, e)| e.armed && e.idle) {
            shutdown(fd as RawFd, Shut::Read);
        }
    }

    /// Operations watched now.
    #[cfg(test)]
    fn watched(&self) -> usize {
        self.by_fd.borrow().iter().filter(|e| e.armed).count()
    }
}

fn shutdown(fd: RawFd, how: Shut) {
    let how = match how {
        Shut::Read => std::net::Shutdown::Read,
        Shut::Both => std::net::Shutdown::Both,
    };
    // The descriptor is open: entries are removed before their socket closes. A socket
    // already shut down (or reset) has nothing left to end.
    let _ = crate::sys::shutdown(fd, how);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn sweep_shuts_down_only_overdue_operations() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let b = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let now = Instant::now();
        let late = Watch::read(now).arm(a.as_raw_fd());
        let fine = Watch::read(now + Duration::from_secs(60)).arm(b.as_raw_fd());
        assert_eq!(with(|dog| dog.watched()), 2);
        with(|dog| dog.sweep(now + Duration::from_millis(1)));
        let mut buf = [0u8; 1];
        // The overdue socket's read side is shut: reads see end of stream at once.
        assert_eq!((&a).read(&mut buf).unwrap(), 0);
        assert!(late.fired());
        assert!(!fine.fired());
        assert_eq!(with(|dog| dog.watched()), 0);
        // A new operation on a descriptor starts unfired.
        let again = Watch::both(now + Duration::from_secs(60)).arm(a.as_raw_fd());
        assert!(!again.fired());
    }

    /// A waker that counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_nudge_wakes_its_wait_once_when_due_and_not_after_release() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let b = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let now = Instant::now();
        let far = now + Duration::from_secs(60);
        let count = std::sync::Arc::new(Count(0.into()));
        let waker = Waker::from(count.clone());
        let cx = Context::from_waker(&waker);
        let woken = || count.0.load(std::sync::atomic::Ordering::SeqCst);

        let w = Watch::both(far)
            .nudge_at(now + Duration::from_millis(20))
            .arm(a.as_raw_fd());
        assert!(!w.nudged(&cx));
        // Not due yet.
        with(|dog| dog.sweep(now + Duration::from_millis(10)));
        assert_eq!(woken(), 0);
        assert!(!w.nudged(&cx));
        // Due: woken once, and it says so; the deadline is untouched.
        with(|dog| dog.sweep(now + Duration::from_millis(20)));
        assert_eq!(woken(), 1);
        assert!(w.nudged(&cx));
        with(|dog| dog.sweep(now + Duration::from_millis(40)));
        assert_eq!(woken(), 1);
        assert!(!w.fired());

        // A wait without a nudge is never woken; one released before its time neither.
        let plain = Watch::both(far).arm(b.as_raw_fd());
        let released = Watch::both(far).nudge_at(now).arm(a.as_raw_fd());
        assert!(!released.nudged(&cx));
        assert!(!plain.nudged(&cx));
        drop(released);
        with(|dog| dog.sweep(now + Duration::from_millis(40)));
        assert_eq!(woken(), 1);
        assert!(!plain.fired());
    }
}
