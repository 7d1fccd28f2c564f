//! Test support: real backends on loopback, the real `ringlb` binary, and a small HTTP
//! client over raw sockets. Every test starts its own of each on ephemeral ports.
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

/// A free loopback port (bound then released; tests race nobody but themselves).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
