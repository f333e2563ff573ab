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
pub mod keystore;
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
