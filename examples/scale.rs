//! Scale benchmark: `cargo run --release --example scale -- --agents 10000`.
//!
//! In one run, on the same relays (the in-process nostr-relay-builder relay,
//! and nostr-rs-relay when it is installed: `$NOSTR_RS_RELAY`, `PATH` or
//! `~/.cargo/bin`), it:
//!
//! - generates N agents with real keys and a mixed relay state (50 % in
//!   sync, 20 % stale name, 10 % stale picture, 10 % missing, 5 % malformed,
//!   5 % legacy records without `avatar_url`; every 10th with a NIP-OA tag),
//!   and seeds the relay with a plain pipelined publisher;
//! - times the tool's snapshot + plan (`snapshot::gather` + `rules::plan`,
//!   best of `--repeats`) and `make_plan` (which also renders and writes the
//!   plan), against the per-agent way the desktop app reads profiles: one REQ
//!   per agent, sequential, waiting for each EOSE, over a raw websocket (and
//!   with nostr-sdk's `fetch_events_from`), and prints the ratio;
//! - repeats both behind a TCP latency proxy on 127.0.0.1 that delays every
//!   chunk by half of `--latency-ms` in each direction;
//! - times apply of K republishes, the tool's `publish_all` of K pre-signed
//!   events, and a raw pipelined publisher of K pre-signed events (write all
//!   EVENTs, read all OKs: the relay's own limit), and prints the ratios;
//! - times the pure core (store parse, plan, merge, NIP-OA checks, key
//!   derivation) on an in-memory snapshot;
//! - reports peak memory: `VmHWM` from `/proc/self/status`, reset before each
//!   stage through `/proc/self/clear_refs`, and the whole-process peak of a
//!   plan run in a child process (this example run again with
//!   `--child-plan-run CONFIG`), which excludes the in-process relay.
//!
//! Per-agent baselines are run on at most `--baseline-sample` agents (and
//! `--latency-baseline-sample` behind the proxy) and scaled linearly to N;
//! the table says so. Figures are printed; nothing fails on a slow figure.

#[path = "scale/fleet.rs"]
mod fleet;
#[path = "scale/harness.rs"]
mod harness;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Relays {
    Local,
    NostrRsRelay,
    Both,
    None,
}

/// Scale benchmark of reprofile's snapshot, plan and apply.
#[derive(Debug, Parser)]
struct Args {
    /// Agents in the generated world.
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// Round trip added by the latency proxy, in ms (0: no latency runs).
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Republishes for the apply comparison (0: none).
    #[arg(long, default_value_t = 1_000)]
    republishes: usize,
    /// Relays to measure on (`none`: only the pure core).
    #[arg(long, value_enum, default_value_t = Relays::Both)]
    relay: Relays,
    /// Repeats of each timed stage; the best is reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// At most this many agents are read the per-agent way on a direct
    /// relay; the time is scaled to N.
    #[arg(long, default_value_t = 20_000)]
    baseline_sample: usize,
    /// The same behind the latency proxy.
    #[arg(long, default_value_t = 500)]
    latency_baseline_sample: usize,
    /// Agents for the nostr-sdk per-agent baseline (0: skip it).
    #[arg(long, default_value_t = 2_000)]
    sdk_baseline_sample: usize,
    /// Skip the pure-core stages.
    #[arg(long)]
    no_pure: bool,
    /// Skip the plan run in a child process (peak memory of a plan run).
    #[arg(long)]
    no_child: bool,
    /// After seeding each relay, print the world's config and wait this many
    /// seconds (to profile `scale --child-plan-run CONFIG` meanwhile).
    #[arg(long, default_value_t = 0)]
    hold_secs: u64,
    /// Only the daemon's ticks over the in-sync world, on each relay (to
    /// profile them; `SCALE_STEADY_TICKS` sets how many later ticks).
    #[arg(long)]
    daemon_tick_only: bool,
    /// The fleet world instead: `--agents` agents spread evenly over
    /// `--relays` nostr-rs-relay processes, each behind a proxy adding
    /// `--rtt-ms`, `--stale-percent` of profiles stale; times one whole
    /// `reprofile run --once` tick in apply mode (a child process) and checks
    /// that it fixed every stale profile.
    #[arg(long)]
    fleet: bool,
    /// Fleet: nostr-rs-relay processes.
    #[arg(long, default_value_t = 10)]
    relays: usize,
    /// Fleet: round trip each relay's proxy adds, in ms.
    #[arg(long, default_value_t = 50)]
    rtt_ms: u64,
    /// Fleet: percent of profiles stale.
    #[arg(long, default_value_t = 10)]
    stale_percent: u32,
    /// Fleet: the reprofile binary (default: `$REPROFILE_BIN`, else
    /// `reprofile` in this example's target folder).
    #[arg(long)]
    reprofile_bin: Option<PathBuf>,
    /// Fleet: copy the tick's log (its stderr) to this file.
    #[arg(long)]
    tick_log: Option<PathBuf>,
    /// Fleet: run the tick under this command, e.g. "perf record -g -o
    /// FILE --" (split on spaces; the peak memory is then the wrapper's).
    #[arg(long)]
    tick_wrapper: Option<String>,
    /// Instead of the benchmark: `perf record -g` one whole plan run
    /// (`--child-plan-run`) of the mixed world of `--agents` agents on
    /// nostr-rs-relay and write the top of `perf report --no-children
    /// --sort dso,symbol` to this file.
    #[arg(long)]
    perf_report: Option<PathBuf>,
    /// Lines of the perf report kept.
    #[arg(long, default_value_t = 20)]
    perf_lines: usize,
    /// Internal: make one plan with this config and print its peak memory.
    #[arg(long, hide = true)]
    child_plan_run: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(config) = &args.child_plan_run {
        return harness::child_plan_run_main(config).await;
    }
    if let Some(out) = &args.perf_report {
        return fleet::perf_plan_profile(args.agents, args.perf_lines, out).await;
    }
    if args.fleet {
        let reprofile_bin = args
            .reprofile_bin
            .clone()
            .or_else(fleet::default_reprofile_bin)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no reprofile binary beside this example: run `cargo build --release --bin \
                     reprofile`, or pass --reprofile-bin"
                )
            })?;
        let report = fleet::run_fleet(&fleet::FleetOptions {
            agents: args.agents,
            relays: args.relays,
            rtt_ms: args.rtt_ms,
            stale_percent: args.stale_percent,
            reprofile_bin,
            verbose: true,
            tick_log: args.tick_log.clone(),
            tick_wrapper: args
                .tick_wrapper
                .as_deref()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        })
        .await?;
        print!("{}", report.text());
        if !report.ok() {
            anyhow::bail!("the fleet tick did not do its job (see PROBLEM above)");
        }
        return Ok(());
    }
    let relays = match args.relay {
        Relays::Local => vec![harness::RelayKind::Local],
        Relays::NostrRsRelay => vec![harness::RelayKind::NostrRs],
        Relays::Both => vec![harness::RelayKind::Local, harness::RelayKind::NostrRs],
        Relays::None => Vec::new(),
    };
    let opts = harness::Options {
        agents: args.agents,
        latency_ms: args.latency_ms,
        republishes: args.republishes,
        relays,
        repeats: args.repeats,
        baseline_sample: args.baseline_sample,
        latency_baseline_sample: args.latency_baseline_sample,
        sdk_baseline_sample: args.sdk_baseline_sample,
        pure: !args.no_pure,
        child_exe: if args.no_child {
            None
        } else {
            std::env::current_exe().ok()
        },
        verbose: true,
        hold_secs: args.hold_secs,
        daemon_tick_only: args.daemon_tick_only,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "reprofile scale benchmark: N={} agents, K={} republishes, latency {} ms RTT, {} cores, \
         best of {}",
        opts.agents, opts.republishes, opts.latency_ms, cores, opts.repeats
    );
    println!("{}", harness::run(&opts).await?.table());
    Ok(())
}

/// The harness run end to end on a tiny world, so that it keeps working
/// (`cargo test` runs this example's tests): every part produces its figures
/// and the generated world plans as designed; never a timing.
#[cfg(test)]
mod tests {
    use super::harness::{self, nrs, Options, RelayKind};

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
            daemon_tick_only: false,
        };
        // The test needs nostr-rs-relay: it fails, saying how to install it,
        // rather than measure less.
        nrs::binary().expect(
            "nostr-rs-relay is not installed, and this test needs it: run `.ci/setup` \
             (or `cargo install nostr-rs-relay --version 0.8.12` after \
             `apt-get install -y protobuf-compiler`), or point NOSTR_RS_RELAY at the binary",
        );
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
                // Each tick checked: complete, nothing to do (else an error).
                "daemon: first tick, nothing to do",
                "daemon: later tick, nothing to do",
            ] {
                let row = report
                    .rows
                    .iter()
                    .find(|r| r.relay == relay && r.stage.starts_with(stage))
                    .unwrap_or_else(|| panic!("no row {relay} / {stage}\n{table}"));
                assert!(row.n > 0, "{relay} / {stage}: no items\n{table}");
                if stage.starts_with("per-agent")
                    || stage.starts_with("apply")
                    || stage.starts_with("daemon: later")
                {
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
            // The plan's counts, then this process's CPU a run.
            let (counts, cpu) = tool.note.split_once("; ").expect("counts; CPU");
            assert_eq!(
                counts, "republish=18 backfill=2 unchanged=20 skipped=0",
                "{table}"
            );
            assert!(
                cpu.starts_with("CPU ") && cpu.ends_with(" ms a run"),
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
                floors
                    .iter()
                    .all(|note| note.starts_with("36 events;") && note.contains("; CPU ")),
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
}

/// The fleet world end to end on a tiny fleet: the real binary's `run --once`
/// in apply mode, through the latency proxies, fixes every stale profile;
/// never a timing.
#[cfg(test)]
mod fleet_tests {
    use super::fleet::{self, FleetOptions};
    use super::harness::nrs;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_once_tick_on_a_tiny_fleet_republishes_every_stale_profile() {
        nrs::binary().expect(
            "nostr-rs-relay is not installed, and this test needs it: run `.ci/setup` \
             (or `cargo install nostr-rs-relay --version 0.8.12` after \
             `apt-get install -y protobuf-compiler`), or point NOSTR_RS_RELAY at the binary",
        );
        // `cargo test` builds the binary beside this example (the
        // integration tests need it).
        let reprofile_bin = fleet::default_reprofile_bin().expect(
            "no reprofile binary in this test's target folder: run `cargo test` (which builds \
             it), or `cargo build --bin reprofile`, or set REPROFILE_BIN",
        );
        let report = fleet::run_fleet(&FleetOptions {
            agents: 40,
            relays: 2,
            rtt_ms: 4,
            stale_percent: 25,
            reprofile_bin,
            verbose: false,
            tick_log: None,
            tick_wrapper: Vec::new(),
        })
        .await
        .expect("the fleet world runs");
        let text = report.text();
        // 25% of each relay's 20 agents.
        assert_eq!(report.stale, 10, "{text}");
        assert_eq!(report.exit_code, Some(0), "{text}");
        assert_eq!((report.planned, report.applied), (10, 10), "{text}");
        assert!(report.not_applied.is_empty(), "{text}");
        assert_eq!(
            report.second_plan, "republish=0 backfill=0 unchanged=40 skipped=0 unread=0",
            "{text}"
        );
        assert!(report.ok(), "{text}");
        assert!(
            report.peak_kb > 0,
            "wait4 reported the child's peak\n{text}"
        );
    }

    #[test]
    fn the_stale_share_is_exact_and_spread_over_every_relay() {
        use super::harness::world::State;
        for (n, relays, percent, expected) in [(40, 2, 25, 10), (1000, 10, 10, 100), (7, 3, 0, 0)] {
            let stale: Vec<usize> = (0..n)
                .filter(|&i| fleet::fleet_state(i, relays, percent) != State::InSync)
                .collect();
            assert_eq!(stale.len(), expected, "{n} {relays} {percent}");
            for k in 0..relays {
                let on_k = stale.iter().filter(|&&i| i % relays == k).count();
                assert_eq!(
                    on_k,
                    expected / relays,
                    "relay {k} of {n} {relays} {percent}"
                );
            }
        }
        // Both kinds of staleness occur.
        let kinds: std::collections::BTreeSet<State> =
            (0..40).map(|i| fleet::fleet_state(i, 2, 25)).collect();
        assert_eq!(kinds.len(), 3, "{kinds:?}");
    }
}
