//! Upstreams: the published snapshot (`snapshot`), each server's shared live state
//! (`state`), and the choice of a server for a request (`balance`).

pub mod balance;
pub mod snapshot;
pub mod state;

pub use balance::{PickError, PickInput, Selector, Tried};
pub use snapshot::{Peer, Snapshot, Upstream};
pub use state::{coarse_now_ms, now_ms, tick_coarse_ms, PeerState, Registry};
