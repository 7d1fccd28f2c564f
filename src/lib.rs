//! # ringlb
//!
//! A thread-per-core HTTP/1.1 load balancer on monoio (io_uring, epoll fallback).
//!
//! # Layout
//! - [`config`]: the TOML file -> a validated [`config::Config`].
//! - [`runtime`]: worker threads (pinned, one monoio runtime each), listeners, shutdown.
//! - [`proxy`]: one client connection: read request, route, forward, stream back.
//! - [`h2`]: downstream HTTP/2: the connection loop, streams as exchanges, flood budget.
//! - [`http`]: request/response heads, body framing, header rewriting.
//! - [`files`]: static files (`root`/`alias`): resolution, validators, ranges, zero-copy sends.
//! - [`upstream`]: the published snapshot of upstreams, servers' live state, balancing.
//! - [`pool`]: the per-worker idle upstream connection pool.
//! - [`control`]: the control thread: health checks, reloads, publishing snapshots.
//! - [`admin`]: `/metrics`, `/status` and the HTML status page.
//! - [`metrics`]: per-worker counters and how they are summed.
//! - [`sys`]: the raw socket system calls made outside monoio (one home for their `unsafe`).
//! - [`access_log`]: per-worker access log buffers and the thread that writes them.
//! - [`realip`]: the real client address behind trusted proxies (`real_ip_from`).
//! - [`import_nginx`]: `ringlb import-nginx`: an nginx configuration -> ringlb's TOML.
//! - [`tls`]: TLS termination: certificates, SNI, handshakes, the TLS stream.

pub mod access_log;
pub mod admin;
pub mod config;
pub mod control;
pub mod files;
pub mod h2;
pub mod http;
pub mod import_nginx;
pub mod metrics;
pub mod pool;
pub mod proxy;
pub mod realip;
pub mod runtime;
pub mod sys;
pub mod tls;
pub mod upstream;
