//! The local state on disk and in the OS: the agent store the Buzz app keeps
//! ([`agents`]), the keyring entry with the agents' keys ([`keystore`]), where
//! those live ([`discover`]), the one atomic way to change the store
//! ([`write`]), the lock beside it ([`lock`]), the plan files (the JSON
//! contract other tools read: [`planfile`]) and the journal of what apply
//! did ([`journal`]).
//!
//! It reads and writes files and the keyring, and decides nothing about
//! profiles. It may import `core` only: no relay, no engine, no face.

pub mod agents;
pub mod discover;
pub mod journal;
pub(crate) mod keystore;
pub mod lock;
pub mod planfile;
pub(crate) mod write;
