//! Listening sockets: one per worker per address, bound with SO_REUSEPORT so the kernel
//! spreads new connections over the workers without a shared accept lock.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Accept backlog per socket. The kernel caps it at `net.core.somaxconn`; nginx uses 511,
/// we ask for more because each worker has its own queue to absorb bursts.
const BACKLOG: i32 = 4096;

/// Binds a non-blocking listening socket on `addr` that other workers may bind too.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
