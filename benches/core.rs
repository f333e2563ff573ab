//! Criterion benches of the pure core at 1,000 / 10,000 / 100,000 agents:
//! planning (`core::rules::plan` on an in-memory snapshot of the mixed world
//! of `examples/scale/world.rs`), rule D2's merge (content parse + merge of
//! every relay content), NIP-OA verification (`check_for_event`, one tag
//! per agent) and the choice of a read's sign-in identities on a relay whose
//! every record has a tag (`sign_in::read_candidates`).
//!
//! `cargo bench --bench core -- --warm-up-time 1 --measurement-time 3`

#[path = "../examples/scale/world.rs"]
mod world;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use reprofile::core::content::{merge_content, ProfileContent};
use reprofile::core::model::{AgentRecord, Policy, RelayObservation};
use reprofile::core::{nip_oa, rules, sign_in};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
/// A fixed clock, so every run plans the same.
const NOW: u64 = 1_780_000_000;

fn core(c: &mut Criterion) {
    let largest = *SIZES.iter().max().expect("sizes");
    let agents = world::agents(largest, 0, world::State::mixed);
    let policy = Policy::default();

    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    for n in SIZES {
        let snapshot = world::in_memory_snapshot(&agents[..n], NOW);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &snapshot, |b, snapshot| {
            b.iter(|| rules::plan(black_box(snapshot), &policy, NOW))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("merge");
    group.sample_size(10);
    for n in SIZES {
        let contents: Vec<(String, String)> = agents[..n]
            .iter()
            .filter_map(|a| world::relay_content(a).map(|c| (c, a.name.clone())))
            .collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &contents, |b, contents| {
            b.iter(|| {
                contents
                    .iter()
                    .filter_map(|(content, name)| {
                        ProfileContent::parse(black_box(content)).map(|parsed| {
                            merge_content(Some(&parsed), name, "https://img.example/x.png")
                        })
                    })
                    .count()
            })
        });
    }
    group.finish();

    // One signed tag per agent (signing is setup, on every core).
    let owner = world::owner_keys();
    let tags: Vec<(Vec<String>, String)> = world::par_map(0..largest, |i| {
        let pubkey = agents[i].pubkey.clone();
        (
            nip_oa::sign(&owner, &pubkey, "kind=0&created_at>1700000000"),
            pubkey,
        )
    });
    let mut group = c.benchmark_group("nip_oa_verify");
    group.sample_size(10);
    for n in SIZES {
        let tags = &tags[..n];
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), tags, |b, tags| {
            b.iter(|| {
                tags.iter()
                    .filter(|(tag, pubkey)| {
                        nip_oa::check_for_event(black_box(tag), pubkey, 0, NOW).is_ok()
                    })
                    .count()
            })
        });
    }
    group.finish();

    // One relay whose every record carries a tag (a Buzz relay admits its
    // agents by theirs): choosing who a read signs in as.
    let mut group = c.benchmark_group("sign_in_candidates_all_tagged");
    group.sample_size(10);
    for n in SIZES {
        let mut snapshot = world::in_memory_snapshot(&agents[..n], NOW);
        for (agent, (tag, _)) in snapshot.agents.iter_mut().zip(&tags) {
            agent.record.auth_tag = Some(serde_json::to_string(tag).expect("json"));
        }
        let records: Vec<&AgentRecord> = snapshot.agents.iter().map(|a| &a.record).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &records, |b, records| {
            b.iter(|| sign_in::read_candidates(black_box(records), 3, 1_800_000_000).len())
        });
    }
    group.finish();

    // Sanity: the snapshot is what the world says (not timed).
    let snapshot = world::in_memory_snapshot(&agents[..1_000], NOW);
    let missing = snapshot
        .agents
        .iter()
        .filter(|a| a.observation == RelayObservation::NoProfile)
        .count();
    assert_eq!(missing, 100, "10 % of the world has no profile");
}

criterion_group!(benches, core);
criterion_main!(benches);
