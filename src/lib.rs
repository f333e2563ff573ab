//! reprofile: keeps the Nostr kind:0 profiles of managed AI agents correct.
//!
//! The crate is a pure core ([`core`]) that turns a snapshot into a plan, and
//! edges that gather the snapshot (store, relay, config) and carry the plan out.

pub mod apply;
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub mod core;
pub(crate) mod demo;
pub mod discover;
pub mod journal;
pub mod lock;
pub mod orchestrate;
pub mod planfile;
pub(crate) mod progress;
pub mod protocol;
pub mod publish;
pub mod relay;
pub mod render;
pub mod review;
pub(crate) mod schedule;
pub mod service;
pub mod snapshot;
pub mod store;
pub(crate) mod store_write;
#[cfg(feature = "test-hooks")]
pub mod testing;
pub(crate) mod tick_memory;
pub mod tls;
pub mod verified;
pub(crate) mod wire;
