//! The service manager's readiness protocol (systemd's `sd_notify`, `Type=notify`): state
//! changes sent as one datagram each to the unix socket named by `NOTIFY_SOCKET`.
//!
//! - `READY=1` once every worker listens (and the admin endpoint is up), and again when a
//!   reload is done or refused;
//! - `RELOADING=1` with `MONOTONIC_USEC=` (CLOCK_MONOTONIC, as systemd requires since
//!   `Type=notify-reload`) when a SIGHUP reload begins;
//! - `STOPPING=1` when a graceful stop begins.
//!
//! Written by hand rather than with a crate: the protocol is one `sendto` of a text
//! datagram, a path or an abstract-namespace name (`@...`) as the address. Without
//! `NOTIFY_SOCKET` every call is a no-op, so ringlb behaves the same outside systemd.

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;

/// Sends `READY=1` (start done, or a reload done or refused) with a status line.
pub fn ready(status: &str) {
    send(&format!("READY=1\nSTATUS={status}"));
}

/// Sends `RELOADING=1` with the monotonic clock's reading in microseconds.
pub fn reloading() {
    send(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
        monotonic_usec()
    ));
}

/// Runs a reload between `RELOADING=1` and `READY=1`, whose status line says whether the
/// new configuration runs or was refused (systemd counts a reload as done on `READY=1`
/// either way; the old configuration keeps serving when it is refused).
pub fn reload<E>(run: impl FnOnce() -> Result<u64, Vec<E>>) -> Result<u64, Vec<E>> {
    reloading();
    let result = run();
    match &result {
        Ok(generation) => ready(&format!("running configuration generation {generation}")),
        Err(errors) => ready(&format!(
            "reload refused ({} error(s)); the previous configuration keeps running",
            errors.len()
        )),
    }
    result
}

/// Sends `STOPPING=1`.
pub fn stopping() {
    send("STOPPING=1\nSTATUS=stopping: finishing in-flight requests");
}

fn send(message: &str) {
    let Some(addr) = target() else { return };
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(message.as_bytes(), addr));
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// The socket named by `NOTIFY_SOCKET`, read once.
fn target() -> Option<&'static SocketAddr> {
    static TARGET: OnceLock<Option<SocketAddr>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let value = std::env::var_os("NOTIFY_SOCKET")?;
            let addr = parse(&value);
            if addr.is_none() {
                tracing::warn!(
                    value = %value.to_string_lossy(),
                    "NOTIFY_SOCKET is neither a path nor an @abstract name; not notifying"
                );
            }
            addr
        })
        .as_ref()
}

/// `/run/systemd/notify` (a path) or `@name` (Linux's abstract namespace: the name with a
/// leading NUL byte in place of the `@`).
fn parse(value: &OsStr) -> Option<SocketAddr> {
    let bytes = value.as_bytes();
    match bytes.first()? {
        b'@' => SocketAddr::from_abstract_name(&bytes[1..]).ok(),
        b'/' => SocketAddr::from_pathname(value).ok(),
        _ => None,
    }
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_path_abstract_and_refused() {
        let p = parse(OsStr::new("/run/systemd/notify")).unwrap();
        assert_eq!(
            p.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        let a = parse(OsStr::new("@ringlb/notify")).unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"ringlb/notify"[..]));
        assert!(parse(OsStr::new("vsock:2:1234")).is_none());
        assert!(parse(OsStr::new("")).is_none());
    }

    #[test]
    fn abstract_datagram_arrives() {
        let name = format!("ringlb-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        let tx = UnixDatagram::unbound().unwrap();
        let target = parse(OsStr::new(&format!("@{name}"))).unwrap();
        tx.send_to_addr(b"READY=1", &target).unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = monotonic_usec();
        let b = monotonic_usec();
        assert!(a > 0 && b >= a);
    }
}
