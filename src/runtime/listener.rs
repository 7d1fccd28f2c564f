//! Listening sockets: one per worker per address, bound with SO_REUSEPORT so the kernel
//! spreads new connections over the workers without a shared accept lock; and the check,
//! before any of them is bound, that no other process listens on an address already.
//!
//! SO_REUSEPORT lets every socket of the same user share a port, a stale ringlb's included:
//! a second instance would start without a word and take a share of the connections. A
//! probe socket bound *without* SO_REUSEPORT conflicts with any listener on the address, so
//! it finds them; `/proc/net/tcp{,6}` and `/proc/PID/fd` then name the process where the
//! kernel lets us see it (same user, or root).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// Accept backlog per socket. The kernel caps it at `net.core.somaxconn`; nginx uses 511,
/// we ask for more because each worker has its own queue to absorb bursts.
const BACKLOG: i32 = 4096;
/// State code of a listening socket in `/proc/net/tcp` (`TCP_LISTEN`).
const TCP_LISTEN: &str = "0A";

/// Binds a non-blocking listening socket on `addr` that other workers may bind too.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    // Inherited by every accepted connection (Linux copies it at accept), which saves a
    // setsockopt per connection: responses are written whole, so Nagle would only ever
    // delay the tail of one written in pieces.
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Why an address cannot be listened on.
#[derive(Debug)]
pub enum Unavailable {
    /// Another socket listens there; its process when `/proc` tells.
    InUse(Option<Holder>),
    Other(io::Error),
}

/// A process holding a listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub name: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.name)
    }
}

/// Checks that nothing listens on `addr` yet and that this process may bind it, by binding
/// (and dropping) a socket without SO_REUSEPORT. SO_REUSEADDR stays on so that connections
/// of a previous run in TIME_WAIT do not count.
pub fn probe(addr: SocketAddr) -> Result<(), Unavailable> {
    let attempt = || -> io::Result<()> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&addr.into())
    };
    match attempt() {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {
            Err(Unavailable::InUse(holder(addr)))
        }
        Err(e) => Err(Unavailable::Other(e)),
    }
}

/// The process (other than this one) with a socket listening on `addr`, or on a wildcard
/// address of its port, where `/proc` shows it.
pub fn holder(addr: SocketAddr) -> Option<Holder> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        inodes.extend(listening_inodes(&text, addr));
    }
    if inodes.is_empty() {
        return None;
    }
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let link = link.to_string_lossy();
            let Some(inode) = link
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            if inodes.contains(&inode) {
                let name = std::fs::read_to_string(entry.path().join("comm"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "?".into());
                return Some(Holder { pid, name });
            }
        }
    }
    None
}

/// Socket inodes of the listening entries of one `/proc/net/tcp{,6}` table that conflict
/// with `addr`: the same port on the same address, or a wildcard on either side.
fn listening_inodes(table: &str, addr: SocketAddr) -> Vec<u64> {
    let mut found = Vec::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 10 || fields[3] != TCP_LISTEN {
            continue;
        }
        let Some((ip, port)) = parse_local(fields[1]) else {
            continue;
        };
        let conflicts = port == addr.port()
            && (ip == addr.ip() || ip.is_unspecified() || addr.ip().is_unspecified());
        if conflicts {
            if let Ok(inode) = fields[9].parse() {
                found.push(inode);
            }
        }
    }
    found
}

/// `0100007F:1F90` -> 127.0.0.1:8080. The kernel prints each 32-bit word of the address in
/// the machine's byte order, the port in hex.
fn parse_local(field: &str) -> Option<(IpAddr, u16)> {
    let (ip_hex, port_hex) = field.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(ip_hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match ip_hex.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(b);
            // A v4-mapped entry of a dual-stack socket stands for the IPv4 address.
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some((ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_connections_inherit_nodelay_from_the_listener() {
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        l.set_nonblocking(false).unwrap();
        let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        assert!(a.nodelay().unwrap());
    }

    #[test]
    fn proc_net_addresses_parse() {
        let lo = u32::from_ne_bytes([127, 0, 0, 1]);
        let (ip, port) = parse_local(&format!("{lo:08X}:1F90")).unwrap();
        assert_eq!(SocketAddr::new(ip, port), "127.0.0.1:8080".parse().unwrap());
        let (ip, port) = parse_local("00000000000000000000000000000000:0050").unwrap();
        assert_eq!(SocketAddr::new(ip, port), "[::]:80".parse().unwrap());
        let one = u32::from_ne_bytes([0, 0, 0, 1]);
        let (ip, _) = parse_local(&format!("000000000000000000000000{one:08X}:0050")).unwrap();
        assert_eq!(ip, "::1".parse::<IpAddr>().unwrap());
        assert!(parse_local("zz:1").is_none());
    }

    #[test]
    fn probe_finds_a_reuseport_listener_and_names_this_process_elsewhere() {
        // A listener bound as the workers bind theirs (SO_REUSEPORT): another SO_REUSEPORT
        // socket would share it silently; the probe must not.
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        match probe(addr) {
            // The holder is this very process, which `holder` leaves out.
            Err(Unavailable::InUse(None)) => {}
            other => panic!("probe of a held address gave {other:?}"),
        }
        let text = std::fs::read_to_string("/proc/net/tcp").unwrap();
        assert!(!listening_inodes(&text, addr).is_empty());
        drop(l);
        assert!(probe(addr).is_ok());
    }
}
