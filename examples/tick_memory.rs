//! What the daemon's memory across ticks saves, measured on its parts:
//! `cargo run --release --example tick_memory -- [SIZES...]` (default
//! 10000 100000).
//!
//! For an agent store of N generated records (the full field set of the
//! app's store, about 1 KB each, as `examples/scale` writes it) it times:
//! reading the file, parsing it (what a tick without memory does), and
//! seeing that the bytes did not change: their 128-bit XXH3, as the daemon
//! does, against their SHA-256 (what it did before), plus what copying the
//! remembered records would cost (the daemon lends them to each tick
//! instead). For rule A5, it
//! plans 1,000 and 10,000 agents that all need a republish, deriving every
//! key (`rules::plan`) and with every derivation known
//! (`rules::plan_remembering_keys` given the last tick's). For an idle tick,
//! it plans 10,000 and 100,000 agents all in sync, deciding each
//! (`rules::plan`) and told which ones the last tick found unchanged
//! (`rules::plan_remembering`). Best of 5; it prints, and fails on nothing.

#[path = "scale/world.rs"]
mod world;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use reprofile::core::known_keys::KnownKeys;
use reprofile::core::model::{AgentRecord, Policy};
use reprofile::core::rules;
use reprofile::store::agents::{parse_agent_store, sha256_hex};
use xxhash_rust::xxh3::xxh3_128_with_seed;

const NOW: u64 = 1_780_000_000;
const REPEATS: usize = 5;

/// The best wall time of `REPEATS` runs of `f`, and its last result.
fn best<R>(mut f: impl FnMut() -> R) -> (Duration, R) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..REPEATS {
        let start = Instant::now();
        let result = f();
        best = best.min(start.elapsed());
        last = Some(result);
    }
    (best, last.expect("at least one run"))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn store_figures(n: usize) -> anyhow::Result<()> {
    let agents = world::agents(n, 0, world::State::mixed);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("managed-agents.json");
    std::fs::write(&path, world::store_json(&agents))?;
    let kept_bytes = std::fs::read(&path)?;
    let kept_digest = sha256_hex(&kept_bytes);
    let seed: u64 = 0x5eed;
    let kept_fingerprint = xxh3_128_with_seed(&kept_bytes, seed);

    // A tick without memory: read, check UTF-8, parse (which hashes).
    let (fresh, store) = best(|| {
        let bytes = std::fs::read(black_box(&path)).expect("read");
        let text = String::from_utf8(bytes).expect("utf-8");
        parse_agent_store(Path::new("store.json"), text).expect("parses")
    });
    let records: Vec<AgentRecord> = store.records.into_iter().map(|r| r.record).collect();
    // A tick with memory over the unchanged store: its parts.
    let (read, bytes) = best(|| std::fs::read(black_box(&path)).expect("read"));
    let (fingerprint, same) =
        best(|| xxh3_128_with_seed(black_box(&bytes), seed) == kept_fingerprint);
    let (digest, same_digest) = best(|| sha256_hex(black_box(&bytes)) == kept_digest);
    let (copy, _) = best(|| black_box(&records).clone());
    assert!(same && same_digest);
    println!(
        "store {n:>7} records ({:.1} MB): without memory (read, UTF-8, parse, SHA-256) {}; \
         with memory, unchanged: read {} + XXH3-128 {} = {} (SHA-256 of the same bytes: {}; \
         the remembered records are lent to the tick, not copied; a copy would cost {})",
        bytes.len() as f64 / 1e6,
        ms(fresh),
        ms(read),
        ms(fingerprint),
        ms(read + fingerprint),
        ms(digest),
        ms(copy),
    );
    Ok(())
}

fn key_figures(n: usize) {
    // Every agent needs a republish (no profile on the relay), so rule A5
    // runs for each.
    let agents = world::agents(n, 0, |_| world::State::Missing);
    let snapshot = world::in_memory_snapshot(&agents, NOW);
    let policy = Policy::default();
    let (derive, fresh) = best(|| rules::plan(black_box(&snapshot), &policy, NOW));
    let (_, known) = rules::plan_remembering_keys(&snapshot, &policy, NOW, &KnownKeys::default());
    let (remembered, (plan, learned)) =
        best(|| rules::plan_remembering_keys(black_box(&snapshot), &policy, NOW, &known));
    assert_eq!(plan, fresh, "the same plan");
    assert!(learned.is_empty(), "nothing derived again");
    println!(
        "plan {n:>7} republishes on {} threads: deriving every key {}; every derivation known {}",
        policy.threads,
        ms(derive),
        ms(remembered),
    );
}

fn idle_figures(n: usize) {
    // Every agent in sync: the daemon's idle tick.
    let agents = world::agents(n, 0, |_| world::State::InSync);
    let snapshot = world::in_memory_snapshot(&agents, NOW);
    let policy = Policy::default();
    let known = KnownKeys::default();
    let (decide, fresh) = best(|| rules::plan(black_box(&snapshot), &policy, NOW));
    let first = rules::plan_remembering(&snapshot, &policy, NOW, &known, &[]);
    assert!(first.unchanged.iter().all(|&u| u), "every agent in sync");
    let (remembered, again) = best(|| {
        rules::plan_remembering(
            black_box(&snapshot),
            &policy,
            NOW + 60,
            &known,
            &first.unchanged,
        )
    });
    assert_eq!(again.plan, fresh, "the same plan");
    println!(
        "plan {n:>7} agents in sync on {} threads: deciding each {}; each unchanged as the last \
         tick found it {}",
        policy.threads,
        ms(decide),
        ms(remembered),
    );
}

fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    for n in sizes {
        store_figures(n)?;
    }
    for n in [1_000, 10_000] {
        key_figures(n);
    }
    for n in [10_000, 100_000] {
        idle_figures(n);
    }
    Ok(())
}
