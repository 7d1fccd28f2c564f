//! Client connections, end to end: read a request head, route it, pick a server, send the
//! request over a pooled connection, relay the response, and do it again for the next
//! request on the connection.
//!
//! Data flows one way through the submodules: `conn` (a connection's request loop) ->
//! `route` (which server block and location) -> `exchange` (one request's trip: server
//! choice, retries, the upstream connection, the response relayed) -> `tunnel` (after a
//! 101). `downstream` is the client side of a connection (socket, buffer, the read kept
//! armed); `ctx` a worker's state; `io`, `watchdog`, `spool`, `buffers`, `queues` and
//! `slot` the pieces they share.

mod access;
mod buffers;
mod conn;
mod ctx;
mod downstream;
mod exchange;
mod io;
mod proxied;
mod queues;
pub mod route;
mod slot;
mod spool;
mod tunnel;
pub mod watchdog;

pub use conn::{serve, serve_stream};
pub use ctx::ProxyCtx;
pub use downstream::Peer;
pub use io::ClientIo;
pub use proxied::{read_proxy_header, HeaderError};
