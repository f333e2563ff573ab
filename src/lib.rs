//! reprofile: keeps the Nostr kind:0 profiles of managed AI agents correct.
//!
//! The crate is a pure core ([`core`]) that turns a snapshot into a plan, and
//! edges that gather the snapshot (store, relay, config) and carry the plan out.
//! The folders show the layers, each importing only those below it:
//!
//! - [`core`]: the rules, pure (no I/O, no clock, no tokio);
//! - [`protocol`]: the relay sessions, sans-IO (core only);
//! - [`net`]: the one edge loop that drives them, transport, TLS, the
//!   signature-check pool;
//! - [`store`]: the agent store, the keyring, discovery, the atomic write,
//!   the lock, the journal;
//! - [`engine`]: the snapshot, apply, the daemon's memory, orchestration;
//! - the faces: [`cli`], [`review`], [`service`].
//!
//! [`config`] (the input edge) sits beside them, and two leaves every layer
//! but the core may use, which import nothing of the crate: `clock` (the wall
//! clock, read in one place) and `progress` (the bars on a terminal).

pub mod cli;
pub(crate) mod clock;
pub mod config;
pub mod core;
pub mod engine;
pub mod net;
pub(crate) mod progress;
pub mod protocol;
pub mod review;
pub mod service;
pub mod store;
#[cfg(feature = "test-hooks")]
pub mod testing;

/// mimalloc for every binary of the crate (the tool, its benchmarks, its
/// tests): declared here, not in `main`, so the benchmarks measure the
/// allocator the tool runs with. glibc's malloc spent about a quarter of the
/// tool's CPU in an idle daemon tick (consolidating and unlinking chunks:
/// events are parsed on the check pool's threads and freed elsewhere);
/// mimalloc cut the tool's CPU per idle tick at 10,000 agents from 71-74 to
/// 53-55 ms (docs/design.md, Choices made, mimalloc). Built with `no_thp`: mimalloc 3 otherwise
/// asks for transparent huge pages on its arenas, and where the kernel grants
/// them on request (`madvise`, Debian's default) each touched 2 MiB page is
/// resident: a 1,000-agent tick peaked at 109 MiB, 39 MiB without.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
