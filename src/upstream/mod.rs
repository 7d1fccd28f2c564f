//! Upstreams: the published snapshot (`snapshot`), each server's shared live state and the
//! rules of its passive health and slow start (`state`, on the millisecond `clock`), the
//! selection tables built from the configuration alone (`tables`, with the
//! ketama ring in `ketama`), and the choice of a server for a request (`balance`).
//!
//! Dependencies point one way: `balance` -> `snapshot` -> `tables` -> `ketama`, and
//! `snapshot` -> `state` -> `clock`; nothing below `balance` knows about selection.

pub mod balance;
#[doc(hidden)]
pub mod bench_support;
pub mod clock;
pub mod ketama;
pub mod snapshot;
pub mod state;
pub mod tables;

pub use balance::{PickError, PickInput, Selector, Tried};
pub use clock::{coarse_now_ms, now_ms, refresh_coarse_ms};
pub use snapshot::{Peer, Snapshot, Upstream};
pub use state::{PeerState, Registry};
