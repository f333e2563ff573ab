//! Communities benchmark: `cargo run --release --example communities`.
//!
//! N agents (default 1,000) reconciled with `[buzz] communities` on one
//! community relay (A) against the same N on three (B), `plan` and `apply`,
//! both in one run: each relay a nostr-rs-relay process of its own (as the
//! scale benchmark's fleet; `--relay local` for one in-process
//! nostr-relay-builder instance each). Every run has fresh, empty relays and
//! a fresh copy of the store, so every run does the whole work: N
//! republishes for A, 3N for B. Prints min and median of plan, apply and
//! plan + apply per contender, this process's CPU time and the relays', and
//! the ratios B/A; `--markdown` prints the same as Markdown tables. The
//! issue's target: B within 1.5x A, because the relays are worked on at
//! once. See `examples/communities/harness.rs` for what each figure times.
//!
//! Needs nostr-rs-relay (`.ci/setup`; `$NOSTR_RS_RELAY`, `PATH` or
//! `~/.cargo/bin`) unless `--relay local`. Figures are printed; nothing fails
//! on a slow figure, only on a run that did not do its work.

#[path = "communities/harness.rs"]
mod harness;
#[path = "../tests/it/support/nrs.rs"]
mod nrs;
#[path = "scale/proxy.rs"]
mod proxy;
#[path = "scale/world.rs"]
mod world;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Relay {
    NostrRsRelay,
    Local,
}

/// Communities benchmark: plan and apply on one community relay against
/// several.
#[derive(Debug, Parser)]
struct Args {
    /// Agents in the store (each needs a republish on every relay).
    #[arg(long, default_value_t = 1_000)]
    agents: usize,
    /// Timed runs of each contender.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Community relays of contender B.
    #[arg(long, default_value_t = 3)]
    communities: usize,
    /// The relay serving each community.
    #[arg(long, value_enum, default_value_t = Relay::NostrRsRelay)]
    relay: Relay,
    /// Also time B's relays one after another (`[relay]
    /// max_concurrent_relays = 1`), as a reference.
    #[arg(long)]
    in_turn: bool,
    /// Round trip added between reprofile and each relay, in ms, by a
    /// latency proxy on 127.0.0.1 (as scale's), as for relays on other hosts
    /// (0: none).
    #[arg(long, default_value_t = 0)]
    rtt_ms: u64,
    /// No untimed warm-up run on a tiny world first.
    #[arg(long)]
    no_warm_up: bool,
    /// Print the figures as Markdown tables.
    #[arg(long)]
    markdown: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // reprofile's own log, to see where a run's time goes (e.g.
    // `RUST_LOG=reprofile=debug`: each relay's connections and each action's
    // outcome, timestamped); none by default.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    anyhow::ensure!(args.agents > 0, "--agents must be at least 1");
    anyhow::ensure!(args.communities > 0, "--communities must be at least 1");
    let opts = harness::Options {
        agents: args.agents,
        communities: args.communities,
        repeats: args.repeats.max(1),
        relay: match args.relay {
            Relay::NostrRsRelay => harness::RelayKind::NostrRs,
            Relay::Local => harness::RelayKind::Local,
        },
        in_turn: args.in_turn,
        warm_up: !args.no_warm_up,
        rtt_ms: args.rtt_ms,
        verbose: true,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "reprofile communities benchmark: {} agents, A: 1 community relay, B: {} community \
         relays, {} runs each, relay: {}{}, {cores} cores",
        opts.agents,
        opts.communities,
        opts.repeats,
        opts.relay.label(),
        if opts.rtt_ms > 0 {
            format!(", +{} ms RTT (latency proxy)", opts.rtt_ms)
        } else {
            String::new()
        }
    );
    let report = harness::run(&opts).await?;
    if args.markdown {
        println!("{}", report.markdown());
    } else {
        println!("{}", report.table());
    }
    if !report.notes.is_empty() {
        anyhow::bail!("some runs did not do their whole work (see PROBLEM above)");
    }
    Ok(())
}

// `cargo test` runs these on three agents: both contenders plan and apply,
// and every agent's profile is on every relay afterwards (each run reads
// every relay back). No timing is checked.
#[cfg(test)]
mod tests {
    use super::harness::{self, Contender, Options, RelayKind, Which};

    fn tiny(relay: RelayKind, rtt_ms: u64) -> Options {
        Options {
            agents: 3,
            communities: 3,
            repeats: 1,
            relay,
            in_turn: true,
            warm_up: false,
            rtt_ms,
            verbose: false,
        }
    }

    async fn every_profile_on_every_relay(relay: RelayKind, rtt_ms: u64) {
        let report = harness::run(&tiny(relay, rtt_ms))
            .await
            .expect("the harness runs");
        let table = report.table();
        // Any plan, apply or read-back that is not what it must be.
        assert!(report.notes.is_empty(), "{:?}\n{table}", report.notes);
        assert_eq!(report.samples.len(), 3, "{table}");
        for sample in &report.samples {
            let relays = match sample.contender {
                Contender::One => 1,
                Contender::Many | Contender::ManyInTurn => 3,
            };
            assert_eq!(sample.relays, relays, "{sample:?}");
            // One republish per (agent, relay), each applied, and read back
            // from its relay: the event apply reported, the record's name
            // and picture.
            assert_eq!(sample.planned, 3 * relays, "{sample:?}\n{table}");
            assert_eq!(sample.applied, 3 * relays, "{sample:?}\n{table}");
            assert_eq!(sample.confirmed, 3 * relays, "{sample:?}\n{table}");
            assert_eq!(
                sample.plan.relay_cpu.is_some(),
                relay == RelayKind::NostrRs,
                "{sample:?}"
            );
        }
        // Every figure: three phases of three contenders, two ratios each.
        assert_eq!(report.lines().len(), 9, "{table}");
        let ratios = report.ratios();
        assert_eq!(ratios.len(), 6, "{table}");
        assert!(
            ratios
                .iter()
                .all(|r| r.median.is_finite() && r.median > 0.0 && r.min == r.median),
            "{table}"
        );
        let headline = report.headline().expect("B/A of plan + apply");
        assert_eq!(headline.which, Which::Both);
        assert!(
            table.contains("target: B/A of plan + apply within 1.5x"),
            "{table}"
        );
        let markdown = report.markdown();
        assert!(
            markdown.contains("| plan + apply | B: 3 community relays | 9 | 1 |"),
            "{markdown}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_contenders_put_every_profile_on_every_nostr_rs_relay() {
        // As scale's test: it fails, saying how to install the relay, rather
        // than measure less.
        super::nrs::binary().expect(
            "nostr-rs-relay is not installed, and this test needs it: run `.ci/setup` \
             (or `cargo install nostr-rs-relay --version 0.8.12` after \
             `apt-get install -y protobuf-compiler`), or point NOSTR_RS_RELAY at the binary",
        );
        every_profile_on_every_relay(RelayKind::NostrRs, 0).await;
    }

    // Through the latency proxies (`--rtt-ms`), so that path keeps working.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_contenders_put_every_profile_on_every_in_process_relay_behind_latency() {
        every_profile_on_every_relay(RelayKind::Local, 4).await;
    }
}
