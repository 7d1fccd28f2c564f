//! Downstream HTTP/2 (RFC 9113) over TLS, on the `h2` crate.
//!
//! - [`server`]: the connection loop ([`serve`]): settings, GOAWAY on idle, request limit,
//!   stop and reload, and the hand-off of each stream as an [`Exchange`].
//! - [`exchange`]: what one stream offers its consumer: the request head, a body reader
//!   and a response writer, flow-controlled both ways.
//! - [`gateway`]: each stream served through the HTTP/1.1 proxy path as one exchange.
//! - [`budget`]: the per-connection frame budget that cuts floods off with ENHANCE_YOUR_CALM
//!   (the attacks `h2` itself handles are listed there).
//!
//! `h2` is driven through tokio's poll-style I/O traits, which monoio provides for sockets
//! switched to readiness mode (`tls::TlsStream` is one).

pub mod budget;
pub mod exchange;
pub mod gateway;
pub mod server;

pub use budget::Abuse;
pub use exchange::{strip_h1_fields, Exchange, H1Framing, RequestBody, Responder, ResponseBody};
pub use h2::Reason;
pub use server::{serve, ConnEnd, H2Settings, H2Stats, Shutdown};
