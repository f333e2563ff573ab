//! Buzz apply benchmark: `cargo run --release --example buzz_apply`.
//!
//! reprofile's apply of N republishes (default 1,000) on the real Buzz relay
//! in closed mode (membership and NIP-OA on), each agent's event over a
//! connection signed in as that agent, against a raw tokio-tungstenite
//! client doing the same authenticated per-agent sessions, at each
//! concurrency asked for (default 1, 16 and 64 sessions at once). Each run
//! has a fresh relay and a fresh world, so every run does the whole work.
//! Prints min and median of the runs, this process's CPU time, and the
//! ratios (see `examples/buzz_apply/harness.rs` for what each line times).
//!
//! Needs what the Buzz tests need: `.ci/setup` (PostgreSQL, Redis and the
//! relay binary; `REPROFILE_BUZZ_RELAY` points at another build). Figures
//! are printed; nothing fails on a slow figure.

#[path = "../tests/it/support/buzz.rs"]
mod buzz;
#[path = "buzz_apply/harness.rs"]
mod harness;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Only {
    Apply,
    PublishAll,
    Raw,
}

/// Buzz apply benchmark: reprofile against a raw per-agent client.
#[derive(Debug, Parser)]
struct Args {
    /// Agents per world (each needs a republish).
    #[arg(long, default_value_t = 1_000)]
    agents: usize,
    /// Sessions open at once (`[relay] max_author_sessions`), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// Timed runs of each contender at each concurrency.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Run only these contenders (comma-separated; default: all), e.g. to
    /// profile one of them.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Only>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.agents > 0, "--agents must be at least 1");
    anyhow::ensure!(
        args.concurrency.iter().all(|&c| (1..=256).contains(&c)),
        "--concurrency values must be 1 to 256 (as [relay] max_author_sessions)"
    );
    let opts = harness::Options {
        agents: args.agents,
        concurrencies: args.concurrency,
        repeats: args.repeats.max(1),
        contenders: args
            .only
            .iter()
            .map(|only| match only {
                Only::Apply => harness::Contender::Apply,
                Only::PublishAll => harness::Contender::PublishAll,
                Only::Raw => harness::Contender::Raw,
            })
            .collect(),
        verbose: true,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "reprofile Buzz apply benchmark: {} agents, concurrency {:?}, {} runs each, {cores} cores",
        opts.agents, opts.concurrencies, opts.repeats
    );
    let report = harness::run(&opts).await?;
    println!("{}", report.table());
    Ok(())
}

// `cargo test` runs this on four agents: the benchmark must keep producing
// every figure, and each of its runs checks its own work. No timing is
// checked here.
#[cfg(test)]
mod tests {
    use super::harness as buzz_apply;

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
}
