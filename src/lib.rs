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

/// Caps glibc's malloc arenas at two. Events are parsed and checked on the
/// check pool's threads and freed on the connections' tasks; with an arena
/// per thread (glibc's default, up to 8 per core) the freed memory stays
/// spread over arenas, and a 100,000-agent plan run peaked about 90 MB
/// higher (320 MiB against 243 MiB with two arenas, measured). Called once,
/// first thing in `main`; a no-op elsewhere than glibc, and when
/// `MALLOC_ARENA_MAX` is set (the operator's choice wins).
pub fn cap_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter of glibc's allocator,
    // under glibc's own lock; no memory is touched.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
