//! Test support: real backends on loopback, the real `ringlb` binary, and a small HTTP
//! client over raw sockets. Every test starts its own of each on loopback ports reserved
//! for it ([`free_port`]).
#![allow(dead_code)]

pub mod backend;
pub mod client;
pub mod load;
pub mod proxy;

// Not every test file uses every helper.
#[allow(unused_imports)]
pub use backend::{Backend, Behavior};
#[allow(unused_imports)]
pub use client::{get, request};
#[allow(unused_imports)]
pub use proxy::Proxy;

/// A loopback port that no other test (in this process or another one on the machine) and
/// no kernel-chosen port will take, for ringlb to listen on or for an address that must stay
/// closed.
///
/// Binding port 0 and releasing it races: the kernel may hand the same port to the next
/// `bind(0)` (a backend of another test) or to an outgoing connection before ringlb binds
/// it, or another test process may pick it too (ringlb then refuses to start: "already in
/// use"). So ports come from below the kernel's ephemeral range (which `bind(0)` and
/// `connect()` never use), and each is reserved with an exclusive lock on a file named after
/// it, held until this test process exits: test processes running side by side never pick
/// the same port.
pub fn free_port() -> u16 {
    ports::reserve().0
}

/// A listener on a reserved port ([`free_port`]), bound without letting go in between: a
/// backend that binds at once cannot lose its port to anything that does not take part in
/// the reservations.
pub fn reserved_listener() -> std::net::TcpListener {
    ports::reserve().1
}

mod ports {
    use std::fs::File;
    use std::os::fd::AsRawFd;
    use std::sync::Mutex;

    /// Locks held for the life of the process (dropping a file would release its port).
    static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

    /// Ports to choose from: below the ephemeral range when there is room, else above it.
    fn range() -> (u16, u16) {
        let (lo, hi) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|x| x.parse::<u32>().ok());
                Some((it.next()??, it.next()??))
            })
            .unwrap_or((32768, 60999));
        if lo >= 1024 + 4096 {
            ((lo - 12_000).max(1024) as u16, (lo - 1) as u16)
        } else if hi <= 65535 - 4096 {
            ((hi + 1) as u16, 65535)
        } else {
            // No room outside the ephemeral range: the lock still keeps tests apart.
            (lo as u16, hi.min(65535) as u16)
        }
    }

    pub fn reserve() -> (u16, std::net::TcpListener) {
        let dir = std::env::temp_dir().join("ringlb-test-ports");
        std::fs::create_dir_all(&dir).unwrap();
        let (lo, hi) = range();
        let span = (hi - lo) as u32 + 1;
        // Start somewhere different in every process and every call.
        let seed = std::process::id()
            .wrapping_mul(2_654_435_761)
            .wrapping_add(std::time::UNIX_EPOCH.elapsed().unwrap().subsec_nanos());
        for i in 0..span {
            let port = lo + (seed.wrapping_add(i) % span) as u16;
            let Ok(file) = File::create(dir.join(format!("{port}.lock"))) else {
                continue;
            };
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                continue;
            }
            // Not in use by anything that does not take part (a service on the machine).
            let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) else {
                continue;
            };
            HELD.lock().unwrap().push(file);
            return (port, listener);
        }
        panic!("no loopback port left in {lo}..={hi}");
    }
}
