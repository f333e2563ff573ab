//! reprofile: keeps the Nostr kind:0 profiles of managed AI agents correct.
//!
//! The crate is a pure core ([`core`]) that turns a snapshot into a plan, and
//! edges that gather the snapshot (store, relay, config) and carry the plan out.

pub mod config;
pub mod core;
pub mod relay;
pub mod store;
