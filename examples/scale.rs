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
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "reprofile scale benchmark: N={} agents, K={} republishes, latency {} ms RTT, {} cores, \
         best of {}",
        opts.agents, opts.republishes, opts.latency_ms, cores, opts.repeats
    );
    let report = harness::run(&opts).await?;
    println!("{}", report.table());
    Ok(())
}
