//! The benchmark harnesses (`examples/scale/` and `examples/buzz_apply/`),
//! run end to end with a tiny world so that they keep working. They check
//! that every part produces its figures and that the generated world plans
//! as designed; they never check a timing (benchmarks are not timed tests).

#[path = "../../examples/scale/harness.rs"]
pub mod harness;

// The Buzz apply harness reaches the Buzz test harness as `super::buzz`.
use crate::support::buzz;
#[path = "../../examples/buzz_apply/harness.rs"]
pub mod buzz_apply;

use harness::{Options, RelayKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scale_harness_produces_every_figure_on_a_tiny_world() {
    let opts = Options {
        agents: 40,
        latency_ms: 4,
        republishes: 5,
        relays: vec![RelayKind::Local, RelayKind::NostrRs],
        repeats: 1,
        baseline_sample: 40,
        latency_baseline_sample: 10,
        sdk_baseline_sample: 5,
        pure: true,
        child_exe: None,
        verbose: false,
        hold_secs: 0,
    };
    let report = harness::run(&opts).await.expect("the harness runs");
    let table = report.table();

    // The world plans as generated, reads find what was seeded, and every
    // republish is applied: any mismatch is a note.
    let problems: Vec<&String> = report
        .notes
        .iter()
        .filter(|n| !n.contains("is not installed"))
        .collect();
    assert!(problems.is_empty(), "{problems:?}\n{table}");

    let relays: Vec<&str> = if report.notes.iter().any(|n| n.contains("is not installed")) {
        vec!["local"]
    } else {
        vec!["local", "nostr-rs-relay"]
    };
    for relay in relays {
        for stage in [
            "seed: raw pipelined publish",
            "tool: snapshot + plan",
            "make_plan",
            "per-agent: 1 REQ each, sequential, raw ws",
            "per-agent: nostr-sdk fetch_events_from",
            "apply: K republishes",
            "  publish::publish_all",
            "  raw pipelined publisher",
            "tool: snapshot + plan +4ms RTT",
            "per-agent: 1 REQ each, sequential, raw ws +4ms RTT",
            "apply: K republishes (read, sign, publish, confirm) +4ms RTT",
        ] {
            let row = report
                .rows
                .iter()
                .find(|r| r.relay == relay && r.stage.starts_with(stage))
                .unwrap_or_else(|| panic!("no row {relay} / {stage}\n{table}"));
            assert!(row.n > 0, "{relay} / {stage}: no items\n{table}");
            if stage.starts_with("per-agent") || stage.starts_with("apply") {
                let (ratio, _) = row.ratio.clone().expect("a ratio");
                assert!(
                    ratio.is_finite() && ratio > 0.0,
                    "{relay} / {stage}\n{table}"
                );
            }
        }
        let tool = report
            .rows
            .iter()
            .find(|r| r.relay == relay && r.stage == "tool: snapshot + plan")
            .expect("tool row");
        assert_eq!(
            tool.note, "republish=18 backfill=2 unchanged=20 skipped=0",
            "{table}"
        );
        // The floors read every seeded profile (one per agent but the 10%
        // missing ones), with and without checking signatures.
        let floors: Vec<&str> = report
            .rows
            .iter()
            .filter(|r| r.relay == relay && r.stage.starts_with("floor: batched raw ws"))
            .map(|r| r.note.as_str())
            .collect();
        assert_eq!(floors.len(), 2, "{table}");
        assert!(
            floors.iter().all(|note| note.starts_with("36 events;")),
            "{floors:?}\n{table}"
        );
    }
    // The drift sweep: 0%, 5%, 10%, 25% and 45% of 40 agents stale.
    let sweep: Vec<&str> = report
        .rows
        .iter()
        .filter(|r| r.relay == "pure" && r.stage.contains("% stale, rest in sync"))
        .map(|r| r.note.as_str())
        .collect();
    assert_eq!(
        sweep,
        [0, 2, 4, 10, 18]
            .map(|k| format!("republish={k} backfill=0 unchanged={} skipped=0", 40 - k)),
        "{table}"
    );
    for stage in [
        "store parse",
        "plan (core::rules::plan)",
        "content parse + merge",
        "NIP-OA check_for_event",
        "agent_keys",
    ] {
        assert!(
            report
                .rows
                .iter()
                .any(|r| r.relay == "pure" && r.stage.starts_with(stage)),
            "no pure row {stage}\n{table}"
        );
    }
    assert!(
        !report.targets.is_empty(),
        "the targets are summarized\n{table}"
    );
    assert!(
        table.contains("per item") && table.contains("peak MiB"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buzz_apply_benchmark_produces_every_figure_on_a_tiny_world() {
    let opts = buzz_apply::Options {
        agents: 4,
        concurrencies: vec![1, 3],
        repeats: 1,
        contenders: Vec::new(),
        verbose: false,
    };
    // Every run checks its own work (each republish applied, accepted, or
    // read back) and fails the harness otherwise.
    let report = buzz_apply::run(&opts).await.expect("the harness runs");
    let table = report.table();
    assert_eq!(report.samples.len(), 6, "{table}");
    for sample in &report.samples {
        assert_eq!(sample.done, 4, "{sample:?}\n{table}");
    }
    let lines = report.lines();
    for concurrency in [1, 3] {
        for what in [
            "reprofile apply (read, sign, 4 sessions, read back)",
            "raw client, the same (read, sign, 4 sessions, read back)",
            "reprofile publish_all (4 sessions, pre-signed)",
            "raw client, 4 sessions alone (pre-signed)",
            "  raw client phase: read",
            "  raw client phase: sign",
            "  raw client phase: read back",
        ] {
            let line = lines
                .iter()
                .find(|l| l.concurrency == concurrency && l.what == what)
                .unwrap_or_else(|| panic!("no line {concurrency} / {what}\n{table}"));
            assert_eq!(line.runs, 1, "{what}\n{table}");
            if what.starts_with("reprofile") {
                let (median, min) = line.ratio.expect("a ratio against the raw client");
                assert!(
                    median.is_finite() && median > 0.0 && min == median,
                    "{table}"
                );
            }
        }
    }
}
