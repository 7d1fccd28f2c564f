//! ringload: ringlb's bundled HTTP/1.1 (plain and TLS) load generator and fast test backend.
//!
//! # Layout
//! - [`cli`]: the command line (README.md, "ringload").
//! - [`target`]: the URL under test, resolved once.
//! - [`http`]: message framing shared by both sides (chunked, response reader, request bytes).
//! - [`load`]: the generator: pinned threads, connections, pacing, statistics, report.
//! - [`serve`]: `ringload serve`, the test backend.
//! - [`rt`]: one monoio runtime per thread (io_uring, else epoll) and core pinning.
//! - [`timer`]: sleeps with the kernel's precision (a timerfd per thread) on both drivers.
//! - [`tls`]: rustls configurations for https:// targets and `serve --tls-cert`.

pub mod cli;
pub mod duration;
pub mod http;
pub mod load;
pub mod rt;
pub mod serve;
pub mod target;
pub mod timer;
pub mod tls;
