//! The engine: gathers the world into a snapshot ([`snapshot`]), carries a
//! plan out ([`apply`]), keeps the daemon's memory between ticks
//! ([`tick_memory`]), and runs the steps in order, once or on a schedule
//! ([`orchestrate`], [`schedule`]).
//!
//! It wires the edges to the core and owns no rule: any `if` about what
//! *should* happen belongs in `core`. It may import `core`, `protocol`,
//! `net`, `store` and `config`; the faces (`cli`, `review`, `service`) call
//! it, not the other way round, with two exceptions that are no cycle
//! (`review` imports no engine module): `orchestrate` writes each plan's
//! `.txt` through `review::render`, and `schedule`'s metrics count
//! republishes by relay through `review::republishes_by_relay`.

pub mod apply;
pub mod orchestrate;
pub mod read_prep;
pub(crate) mod schedule;
pub mod snapshot;
pub(crate) mod tick_memory;
