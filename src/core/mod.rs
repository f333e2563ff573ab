//! The pure core: the rules of RECONCILE.md, from a snapshot to a plan.
//!
//! Nothing in here does I/O, reads a clock or touches tokio: time comes in as
//! an argument and effects leave as data (the [`plan::Plan`]). The edges
//! (store, relay, config, CLI) gather the snapshot and carry out the plan; any
//! decision about what *should* happen belongs here.
//!
//! It imports nothing outside `core`: every other folder may use it.

pub(crate) mod agent_key;
pub mod apply;
pub mod avatar;
pub mod content;
pub(crate) mod display;
pub(crate) mod json;
pub(crate) mod keys;
pub mod known_keys;
pub mod model;
pub mod nip_oa;
pub(crate) mod parse;
pub mod plan;
pub(crate) mod profile_state;
#[cfg(test)]
mod properties;
pub(crate) mod records;
pub mod rules;
pub mod sign_in;
pub mod validate;
