//! The network edge: the one edge loop that drives the sans-IO relay sessions
//! of [`crate::protocol`] over real sockets ([`wire`]), the reads ([`relay`])
//! and the publishes ([`publish`]) through it, our own TLS trust ([`tls`]),
//! and the pool that checks events' signatures off the connections' tasks
//! ([`verified`]).
//!
//! It owns sockets, timers and TLS, and no decision: what to send and what an
//! answer means belong to `protocol` and `core`. It may import `core` and
//! `protocol` only (and the crate's `clock`); nothing here reads the store,
//! the config or the engine.

pub mod publish;
pub mod relay;
pub mod tls;
pub(crate) mod verified;
pub(crate) mod wire;
