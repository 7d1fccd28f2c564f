//! Health: the `ringlb-control` thread that runs the active health checks and the recovery
//! probes of passively ejected servers, and logs every state change.
//!
//! Three parts, kept apart as pingora's `health_check.rs` keeps `check`, `observe_health` and
//! its loop:
//! - [`probe`]: one check's I/O, an HTTP `GET` or a bare connect, to a TCP address or a
//!   unix socket; it says what happened and nothing more.
//! - [`threshold`]: `fails` consecutive failed checks take a server down, `passes`
//!   consecutive passed checks bring it up; a state machine with no I/O.
//! - [`scheduler`]: the loop that decides which probe is due, runs it, feeds results to the
//!   thresholds and the servers' shared state, and logs transitions.
//!
//! Workers never wait on any of it: the verdicts are atomics in each server's `PeerState`
//! (whose methods own the rules of passive health), read on every pick.

pub mod probe;
pub mod scheduler;
pub mod threshold;

pub use scheduler::spawn;
