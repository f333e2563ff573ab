//! The communities benchmark: `plan` and `apply` of N agents reconciled on
//! one community relay against the same N on several (`[buzz] communities`),
//! both in one run.
//!
//! Every timed run gets relays of its own (fresh, empty: one nostr-rs-relay
//! process each, or one in-process nostr-relay-builder instance each) and a
//! fresh copy of the store: N agents with fresh keys (inline
//! `private_key_nsec`, `[buzz] keyring = false`), `avatar_url` set, none with
//! a kind:0 on any relay, so every (agent, relay) needs a republish and every
//! run does the whole work. Before the clock starts, each relay answers one
//! REQ and takes one event of an agent outside the world (its first
//! connection and first write are nobody's cost).
//!
//! Each run times, in this process:
//!
//! - **plan**: `reprofile::engine::orchestrate::make_plan` (load nothing: the config
//!   is loaded before): the snapshot (the store parsed, every community
//!   relay read at once), the plan, its rendering and the plan file written;
//! - **apply**: `reprofile::engine::orchestrate::apply_plan` of that plan
//!   (`--force`, as `apply PLAN` would, the store parsed again): per relay,
//!   at once, the precondition read, signing, publishing and the read-back;
//!   the journal.
//!
//! Besides wall time, each phase records this process's CPU time (user +
//! system, every thread) and, for nostr-rs-relay, the relay processes' CPU
//! time (from `/proc/<pid>/stat` of this process's children); the
//! in-process relay's CPU is inside this process's.
//!
//! After the apply, untimed, every relay is read back over a raw websocket:
//! each agent's newest kind:0 there must be the event apply reported for that
//! (agent, relay), its signature valid, with the record's name and picture.
//! Anything else is a note (printed as PROBLEM), and the test fails on any.
//! Nothing fails on a slow figure: benchmarks are not timed tests.
//!
//! Two references, when asked: B's relays one after another
//! (`[relay] max_concurrent_relays = 1`, [`Contender::ManyInTurn`]), and
//! every relay behind a latency proxy on 127.0.0.1 (scale's, `rtt_ms`), as
//! for relays on other hosts. Results and findings:
//! `docs/communities-benchmark.md`.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, PublicKey, RelayMessage};
use nostr_relay_builder::prelude::{
    LocalRelay, MemoryDatabase, MemoryDatabaseOptions, RateLimit, RelayBuilder,
};
use reprofile::config;
use reprofile::core::apply::Outcome;
use reprofile::engine::apply::ApplyOptions;
use reprofile::engine::orchestrate::{apply_plan, make_plan, now_secs, Planned};
use tokio_tungstenite::tungstenite::Message;

use crate::world::{self, Agent, State};
use crate::{nrs, proxy};

/// Key numbers of the benchmark's agents (far from scale's worlds).
const KEY_OFFSET: u64 = 7_000_000_000;

/// How long the read-back waits for any one answer.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Authors per REQ of the read-back, as reprofile asks.
const AUTHORS_PER_FILTER: usize = 100;

/// Which relay serves the communities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayKind {
    /// nostr-rs-relay, one process per community relay.
    NostrRs,
    /// nostr-relay-builder, one in-process instance per community relay.
    Local,
}

impl RelayKind {
    /// As printed.
    pub fn label(self) -> &'static str {
        match self {
            RelayKind::NostrRs => "nostr-rs-relay (one process per relay)",
            RelayKind::Local => "nostr-relay-builder (one in-process instance per relay)",
        }
    }
}

/// Who is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Contender {
    /// A: `[buzz] communities` with one relay.
    One,
    /// B: with `Options::communities` relays, worked on at once (the
    /// default `[relay] max_concurrent_relays`).
    Many,
    /// The same relays with `[relay] max_concurrent_relays = 1`: one after
    /// another (a reference, only when asked).
    ManyInTurn,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Agents in the store.
    pub agents: usize,
    /// Community relays of contender B.
    pub communities: usize,
    /// Timed runs of each contender.
    pub repeats: usize,
    /// The relay.
    pub relay: RelayKind,
    /// Also time B's relays one after another (`max_concurrent_relays = 1`).
    pub in_turn: bool,
    /// One untimed run of each contender on a tiny world first.
    pub warm_up: bool,
    /// Round trip added between reprofile and each relay by a latency proxy
    /// on 127.0.0.1 (0: none), as for relays on other hosts.
    pub rtt_ms: u64,
    /// Progress lines on stderr.
    pub verbose: bool,
}

impl Options {
    fn relays_of(&self, contender: Contender) -> usize {
        match contender {
            Contender::One => 1,
            Contender::Many | Contender::ManyInTurn => self.communities,
        }
    }

    /// The contender's name, as printed.
    pub fn name_of(&self, contender: Contender) -> String {
        match contender {
            Contender::One => "A: 1 community relay".to_string(),
            Contender::Many => format!("B: {} community relays", self.communities),
            Contender::ManyInTurn => format!(
                "B, in turn: {} relays, max_concurrent_relays = 1",
                self.communities
            ),
        }
    }

    fn contenders(&self) -> Vec<Contender> {
        let mut all = vec![Contender::One, Contender::Many];
        if self.in_turn {
            all.push(Contender::ManyInTurn);
        }
        all
    }
}

/// One phase of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phase {
    /// Wall time.
    pub wall: Duration,
    /// This process's CPU time (user + system, every thread).
    pub cpu: Duration,
    /// The relay processes' CPU time (None: the relays are in this process).
    pub relay_cpu: Option<Duration>,
}

impl Phase {
    fn plus(self, other: Phase) -> Phase {
        Phase {
            wall: self.wall + other.wall,
            cpu: self.cpu + other.cpu,
            relay_cpu: self.relay_cpu.zip(other.relay_cpu).map(|(a, b)| a + b),
        }
    }
}

/// One timed run.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Who ran.
    pub contender: Contender,
    /// Its community relays.
    pub relays: usize,
    /// Snapshot + plan + plan file.
    pub plan: Phase,
    /// Apply of that plan.
    pub apply: Phase,
    /// Republishes planned.
    pub planned: usize,
    /// Republishes applied.
    pub applied: usize,
    /// (agent, relay) pairs whose read-back shows the applied event.
    pub confirmed: usize,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The options it ran with (for the table).
    pub agents: usize,
    /// Community relays of B.
    pub communities: usize,
    /// The relay's label.
    pub relay: String,
    /// Every timed run, in the order run.
    pub samples: Vec<Sample>,
    /// Contender names, as printed.
    pub names: BTreeMap<Contender, String>,
    /// What went wrong (a plan, apply or read-back that is not what it must
    /// be); empty when every run did its whole work.
    pub notes: Vec<String>,
}

/// Min and median.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// The fastest.
    pub min: Duration,
    /// The median (the mean of the middle two for an even count).
    pub median: Duration,
}

fn stats(mut times: Vec<Duration>) -> Option<Stats> {
    if times.is_empty() {
        return None;
    }
    times.sort();
    let mid = times.len() / 2;
    let median = if times.len() % 2 == 1 {
        times[mid]
    } else {
        (times[mid - 1] + times[mid]) / 2
    };
    Some(Stats {
        min: times[0],
        median,
    })
}

/// Which phase a line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `plan`.
    Plan,
    /// `apply`.
    Apply,
    /// Both, run by run.
    Both,
}

impl Which {
    /// As printed.
    pub fn label(self) -> &'static str {
        match self {
            Which::Plan => "plan",
            Which::Apply => "apply",
            Which::Both => "plan + apply",
        }
    }

    fn of(self, sample: &Sample) -> Phase {
        match self {
            Which::Plan => sample.plan,
            Which::Apply => sample.apply,
            Which::Both => sample.plan.plus(sample.apply),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Line {
    /// The phase.
    pub which: Which,
    /// Who.
    pub contender: Contender,
    /// Republishes the phase planned or applied, a run.
    pub republishes: usize,
    /// Runs behind the figure.
    pub runs: usize,
    /// Wall time.
    pub wall: Stats,
    /// This process's CPU time.
    pub cpu: Stats,
    /// The relays' CPU time (None: in this process).
    pub relay_cpu: Option<Stats>,
}

/// A ratio of one contender to A.
#[derive(Debug, Clone, Copy)]
pub struct Ratio {
    /// The phase.
    pub which: Which,
    /// Who is compared with A.
    pub contender: Contender,
    /// Of the medians.
    pub median: f64,
    /// Of the mins.
    pub min: f64,
}

/// The issue's target: B within this many times A.
pub const TARGET: f64 = 1.5;

impl Report {
    /// The table's lines: per phase, each contender.
    pub fn lines(&self) -> Vec<Line> {
        let mut lines = Vec::new();
        for which in [Which::Plan, Which::Apply, Which::Both] {
            for contender in [Contender::One, Contender::Many, Contender::ManyInTurn] {
                let samples: Vec<&Sample> = self
                    .samples
                    .iter()
                    .filter(|s| s.contender == contender)
                    .collect();
                let phases: Vec<Phase> = samples.iter().map(|s| which.of(s)).collect();
                let (Some(wall), Some(cpu)) = (
                    stats(phases.iter().map(|p| p.wall).collect()),
                    stats(phases.iter().map(|p| p.cpu).collect()),
                ) else {
                    continue;
                };
                let relay_cpu = phases
                    .iter()
                    .map(|p| p.relay_cpu)
                    .collect::<Option<Vec<_>>>()
                    .and_then(stats);
                lines.push(Line {
                    which,
                    contender,
                    republishes: samples[0].planned,
                    runs: samples.len(),
                    wall,
                    cpu,
                    relay_cpu,
                });
            }
        }
        lines
    }

    /// Each contender's wall time against A's, per phase.
    pub fn ratios(&self) -> Vec<Ratio> {
        let lines = self.lines();
        let mut out = Vec::new();
        for which in [Which::Plan, Which::Apply, Which::Both] {
            let find = |c: Contender| lines.iter().find(|l| l.which == which && l.contender == c);
            let Some(a) = find(Contender::One) else {
                continue;
            };
            for contender in [Contender::Many, Contender::ManyInTurn] {
                if let Some(b) = find(contender) {
                    out.push(Ratio {
                        which,
                        contender,
                        median: b.wall.median.as_secs_f64() / a.wall.median.as_secs_f64(),
                        min: b.wall.min.as_secs_f64() / a.wall.min.as_secs_f64(),
                    });
                }
            }
        }
        out
    }

    /// B/A of plan + apply (medians), the issue's figure.
    pub fn headline(&self) -> Option<Ratio> {
        self.ratios()
            .into_iter()
            .find(|r| r.which == Which::Both && r.contender == Contender::Many)
    }

    fn name(&self, contender: Contender) -> &str {
        self.names.get(&contender).map_or("?", String::as_str)
    }

    fn verdict(&self) -> String {
        match self.headline() {
            Some(r) => format!(
                "target: B/A of plan + apply within {TARGET}x (medians): {:.2}x {}",
                r.median,
                if r.median <= TARGET { "MET" } else { "NOT MET" }
            ),
            None => "target: no figure".to_string(),
        }
    }

    /// The table, as printed.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<13} {:<48} {:>11} {:>4} {:>10} {:>10} {:>12} {:>12}",
            "phase", "contender", "republishes", "runs", "min", "median", "CPU self", "CPU relays"
        );
        let _ = writeln!(out, "{}", "-".repeat(127));
        for line in self.lines() {
            let _ = writeln!(
                out,
                "{:<13} {:<48} {:>11} {:>4} {:>10} {:>10} {:>12} {:>12}",
                line.which.label(),
                self.name(line.contender),
                line.republishes,
                line.runs,
                ms(line.wall.min),
                ms(line.wall.median),
                ms(line.cpu.median),
                line.relay_cpu
                    .map_or_else(|| "in process".to_string(), |s| ms(s.median)),
            );
        }
        let _ = writeln!(
            out,
            "(min and median of wall time; CPU: medians, this process / the relay processes)"
        );
        for ratio in self.ratios() {
            let _ = writeln!(
                out,
                "ratio {:<13} {} / A: {:.2}x (medians), {:.2}x (mins)",
                ratio.which.label(),
                if ratio.contender == Contender::Many {
                    "B"
                } else {
                    "B in turn"
                },
                ratio.median,
                ratio.min
            );
        }
        let _ = writeln!(out, "{}", self.verdict());
        for note in &self.notes {
            let _ = writeln!(out, "PROBLEM: {note}");
        }
        out
    }

    /// The same as a Markdown table, ready to paste.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| phase | contender | republishes | runs | min | median | CPU reprofile (median) | CPU relays (median) |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
        for line in self.lines() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                line.which.label(),
                self.name(line.contender),
                line.republishes,
                line.runs,
                ms(line.wall.min),
                ms(line.wall.median),
                ms(line.cpu.median),
                line.relay_cpu
                    .map_or_else(|| "in process".to_string(), |s| ms(s.median)),
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "| ratio | of medians | of mins |");
        let _ = writeln!(out, "|---|---:|---:|");
        for ratio in self.ratios() {
            let _ = writeln!(
                out,
                "| {} / A, {} | {:.2}x | {:.2}x |",
                if ratio.contender == Contender::Many {
                    "B"
                } else {
                    "B in turn"
                },
                ratio.which.label(),
                ratio.median,
                ratio.min
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", self.verdict());
        for note in &self.notes {
            let _ = writeln!(out, "\nPROBLEM: {note}");
        }
        out
    }
}

/// A duration in ms.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn log(opts: &Options, message: impl AsRef<str>) {
    if opts.verbose {
        eprintln!("[communities] {}", message.as_ref());
    }
}

/// This process's CPU time so far (user + system, every thread).
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The CPU time (user + system) of this process's running children so far,
/// from `/proc/<pid>/stat` (clock ticks, 10 ms on Linux): the relay
/// processes, which are this process's only children.
pub fn children_cpu_time() -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut pids: Vec<u32> = Vec::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                pids.extend(
                    children
                        .split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    let mut ticks = 0;
    for pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // utime and stime: the 14th and 15th fields, 12th and 13th after the
        // command's closing parenthesis.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        ticks += field(11).unwrap_or(0) + field(12).unwrap_or(0);
    }
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// The in-process relay, as scale runs it: an unbounded in-memory database
/// and a rate limit no run reaches.
async fn start_local_relay() -> anyhow::Result<LocalRelay> {
    let builder = RelayBuilder::default()
        .database(MemoryDatabase::with_opts(MemoryDatabaseOptions {
            events: true,
            max_events: None,
        }))
        .rate_limit(RateLimit {
            max_reqs: 1000,
            notes_per_minute: 100_000_000,
        });
    reprofile::testing::run_local_relay(builder).await
}

/// A community relay of one run, stopped on drop.
#[allow(clippy::large_enum_variant)]
enum Community {
    Local(LocalRelay, String),
    NostrRs(nrs::NostrRsRelay),
}

impl Community {
    async fn start(kind: RelayKind) -> anyhow::Result<Community> {
        Ok(match kind {
            RelayKind::Local => {
                let relay = start_local_relay().await?;
                let url = relay.url().await.to_string();
                Community::Local(relay, url)
            }
            RelayKind::NostrRs => {
                let binary = nrs::binary().context(
                    "nostr-rs-relay is not installed: run `.ci/setup`, point NOSTR_RS_RELAY at \
                     it, or use --relay local",
                )?;
                Community::NostrRs(nrs::start(binary)?)
            }
        })
    }

    fn url(&self) -> &str {
        match self {
            Community::Local(_, url) => url,
            Community::NostrRs(relay) => &relay.url,
        }
    }
}

impl Drop for Community {
    fn drop(&mut self) {
        if let Community::Local(relay, _) = self {
            relay.shutdown();
        }
    }
}

/// The world: `n` agents with fresh keys, `avatar_url` set, none with a
/// profile on any relay.
pub fn world(n: usize, offset: u64) -> Vec<Agent> {
    world::agents(n, offset, |_| State::Missing)
}

/// Runs every contender `opts.repeats` times, each run on relays and a
/// store of its own; the order of the contenders rotates from one repeat to
/// the next.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let contenders = opts.contenders();
    let mut report = Report {
        agents: opts.agents,
        communities: opts.communities,
        relay: opts.relay.label().to_string(),
        names: contenders.iter().map(|&c| (c, opts.name_of(c))).collect(),
        ..Report::default()
    };
    let work = tempfile::Builder::new()
        .prefix("reprofile-communities-")
        .tempdir()?;
    log(opts, format!("generating {} agents", opts.agents));
    let agents = world(opts.agents, KEY_OFFSET);
    let store = world::store_json(&agents);

    if opts.warm_up {
        let tiny = world(4, KEY_OFFSET - 100);
        let tiny_store = world::store_json(&tiny);
        for &contender in &contenders {
            let dir = work.path().join(format!("warm-up-{contender:?}"));
            let mut notes = Vec::new();
            one_run(opts, contender, &tiny, &tiny_store, &dir, &mut notes)
                .await
                .with_context(|| format!("warm-up run of {}", opts.name_of(contender)))?;
            for note in notes {
                report.notes.push(format!("warm-up: {note}"));
            }
        }
    }

    for repeat in 0..opts.repeats.max(1) {
        for k in 0..contenders.len() {
            let contender = contenders[(k + repeat) % contenders.len()];
            let dir = work.path().join(format!("{repeat}-{contender:?}"));
            let sample = one_run(opts, contender, &agents, &store, &dir, &mut report.notes)
                .await
                .with_context(|| format!("{}, run {}", opts.name_of(contender), repeat + 1))?;
            log(
                opts,
                format!(
                    "run {} {}: plan {} (CPU {}), apply {} (CPU {}), {} of {} applied, {} read back",
                    repeat + 1,
                    opts.name_of(contender),
                    ms(sample.plan.wall),
                    ms(sample.plan.cpu),
                    ms(sample.apply.wall),
                    ms(sample.apply.cpu),
                    sample.applied,
                    sample.planned,
                    sample.confirmed
                ),
            );
            report.samples.push(sample);
        }
    }
    Ok(report)
}

/// The config of a run: the store beside it, the communities, every
/// timeout generous, no keyring (every record has its key inline).
fn config_text(communities: &[String], max_concurrent_relays: Option<usize>) -> String {
    let communities: Vec<String> = communities.iter().map(|u| format!("\"{u}\"")).collect();
    let in_turn = max_concurrent_relays
        .map(|n| format!("max_concurrent_relays = {n}\n"))
        .unwrap_or_default();
    format!(
        "# Written by the communities benchmark.\n\
         [store]\nagents = \"managed-agents.json\"\n\n\
         [plans]\ndir = \"plans\"\n\n\
         [relay]\nconnect_timeout_secs = 10\nquery_timeout_secs = 60\npublish_timeout_secs = 60\n\
         {in_turn}\n\
         [safety]\nmax_republish_fraction = 1.0\n\n\
         [buzz]\nkeyring = false\ncommunities = [{}]\n",
        communities.join(", ")
    )
}

/// One run of `contender`: fresh relays, a fresh store copy, plan and apply
/// timed, then every relay read back. Problems go to `notes`.
async fn one_run(
    opts: &Options,
    contender: Contender,
    agents: &[Agent],
    store: &str,
    dir: &Path,
    notes: &mut Vec<String>,
) -> anyhow::Result<Sample> {
    use std::os::unix::fs::PermissionsExt;
    let n = agents.len();
    let relays = opts.relays_of(contender);
    let name = opts.name_of(contender);
    let mut communities = Vec::with_capacity(relays);
    for _ in 0..relays {
        communities.push(Community::start(opts.relay).await?);
    }
    let urls: Vec<String> = communities.iter().map(|c| c.url().to_string()).collect();
    // What reprofile connects to: the relays, or proxies in front of them.
    let mut proxies = Vec::new();
    if opts.rtt_ms > 0 {
        for url in &urls {
            proxies.push(proxy::start(url, Duration::from_micros(opts.rtt_ms * 500)).await?);
        }
    }
    let tool_urls: Vec<String> = if proxies.is_empty() {
        urls.clone()
    } else {
        proxies.iter().map(|p| p.url.clone()).collect()
    };
    let outsider = Keys::generate();
    for url in &urls {
        warm_up(url, &outsider)
            .await
            .with_context(|| format!("warming {url} up"))?;
    }

    std::fs::create_dir_all(dir)?;
    let store_path = dir.join("managed-agents.json");
    std::fs::write(&store_path, store)?;
    std::fs::set_permissions(&store_path, std::fs::Permissions::from_mode(0o600))?;
    let config_path = dir.join("config.toml");
    let in_turn = (contender == Contender::ManyInTurn).then_some(1);
    std::fs::write(&config_path, config_text(&tool_urls, in_turn))?;
    let config = config::load(&config_path)?;
    if config.communities.len() != relays {
        bail!(
            "the config names {} communities, expected {relays}",
            config.communities.len()
        );
    }
    let in_process = opts.relay == RelayKind::Local;
    let measure = || (Instant::now(), cpu_time(), children_cpu_time());
    let phase = |(wall, cpu, relay_cpu): (Instant, Duration, Duration)| Phase {
        wall: wall.elapsed(),
        cpu: cpu_time().saturating_sub(cpu),
        relay_cpu: (!in_process).then(|| children_cpu_time().saturating_sub(relay_cpu)),
    };

    // plan
    let started = measure();
    let Planned {
        doc,
        path: plan_path,
        read_errors,
    } = make_plan(&config, &[], None).await?;
    let plan = phase(started);
    let expected = n * relays;
    let summary = doc.plan.summary();
    if !doc.plan.complete
        || summary.republish != expected
        || doc.plan.actions.len() != expected
        || !doc.plan.skipped.is_empty()
    {
        notes.push(format!(
            "{name}: the plan has {} republishes and {} actions (expected {expected} \
             republishes only), {} skipped{}, complete: {}, unread relays: {read_errors:?}",
            summary.republish,
            doc.plan.actions.len(),
            doc.plan.skipped.len(),
            doc.plan
                .skipped
                .first()
                .map(|s| format!(" (first: {}: {})", s.reason.as_str(), s.detail))
                .unwrap_or_default(),
            doc.plan.complete
        ));
    }

    // apply
    let started = measure();
    let applied = apply_plan(&config, &doc, &plan_path, &ApplyOptions::forced()).await?;
    let apply = phase(started);
    let applied_count = applied.count(Outcome::Applied);
    let not_applied: Vec<_> = applied
        .results
        .iter()
        .filter(|r| r.outcome != Outcome::Applied)
        .collect();
    if applied_count != expected || !not_applied.is_empty() || applied.not_begun > 0 {
        notes.push(format!(
            "{name}: apply applied {applied_count} of {expected} ({} not applied, {} not \
             begun); first not applied: {:?}",
            not_applied.len(),
            applied.not_begun,
            not_applied.first()
        ));
    }

    // The read-back (from the relays themselves): each (agent, relay) shows
    // the event apply reported.
    let mut reported: HashMap<(String, String), String> = HashMap::new();
    for result in &applied.results {
        if let (Some((_, relay)), Some(event_id)) = (result.id.split_once('@'), &result.event_id) {
            reported.insert((result.agent.clone(), relay.to_string()), event_id.clone());
        }
    }
    let authors: Vec<PublicKey> = agents.iter().map(|a| a.keys.public_key()).collect();
    let mut confirmed = 0;
    for (community, url) in config.communities.iter().zip(&urls) {
        let newest = read_back(url, &authors)
            .await
            .with_context(|| format!("reading {url} back"))?;
        let mut problems: Vec<String> = Vec::new();
        for agent in agents {
            let key = (agent.pubkey.clone(), community.clone());
            match (newest.get(&agent.keys.public_key()), reported.get(&key)) {
                (None, _) => problems.push(format!("{}: no kind:0", agent.name)),
                (Some(_), None) => {
                    problems.push(format!("{}: apply reported no event", agent.name))
                }
                (Some(event), Some(id)) if event.id.to_hex() != *id => problems.push(format!(
                    "{}: the newest kind:0 is {}, apply reported {id}",
                    agent.name, event.id
                )),
                (Some(event), Some(_)) => match shows(event, agent) {
                    Ok(()) => confirmed += 1,
                    Err(why) => problems.push(format!("{}: {why}", agent.name)),
                },
            }
        }
        if !problems.is_empty() {
            notes.push(format!(
                "{name}: {} of {n} agents are not right on {community}; first: {}",
                problems.len(),
                problems[..problems.len().min(3)].join("; ")
            ));
        }
    }
    drop(proxies);
    drop(communities);
    Ok(Sample {
        contender,
        relays,
        plan,
        apply,
        planned: summary.republish,
        applied: applied_count,
        confirmed,
    })
}

/// Whether `event` carries the record's name and picture.
fn shows(event: &Event, agent: &Agent) -> Result<(), String> {
    if event.kind != Kind::Metadata {
        return Err(format!("kind {}", event.kind));
    }
    let content: serde_json::Value =
        serde_json::from_str(&event.content).map_err(|e| format!("content not JSON: {e}"))?;
    let field = |k: &str| content.get(k).and_then(|v| v.as_str()).map(str::to_string);
    if field("display_name").as_deref() != Some(agent.name.as_str())
        || field("picture").as_deref() != Some(agent.avatar.as_str())
    {
        return Err(format!("content {}", event.content));
    }
    Ok(())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A websocket with TCP_NODELAY.
async fn connect(url: &str) -> anyhow::Result<Ws> {
    let (ws, _) = tokio::time::timeout(
        READ_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(url, None, true),
    )
    .await
    .context("connect timed out")?
    .with_context(|| format!("cannot connect to {url}"))?;
    Ok(ws)
}

/// The relay's next message.
async fn next_message(ws: &mut Ws) -> anyhow::Result<RelayMessage<'static>> {
    loop {
        let message = tokio::time::timeout(READ_TIMEOUT, ws.next())
            .await
            .context("the relay sent nothing in time")?
            .context("the relay closed the connection")??;
        if let Message::Text(text) = message {
            return Ok(RelayMessage::from_json(text.as_str())?);
        }
    }
}

/// One REQ and one event of an agent outside the world: the relay's first
/// connection, query and write, before any clock starts.
async fn warm_up(url: &str, outsider: &Keys) -> anyhow::Result<()> {
    let found = read_once(url, &[outsider.public_key()]).await?;
    if !found.is_empty() {
        bail!("a fresh relay holds a profile already");
    }
    let event = EventBuilder::new(Kind::Metadata, r#"{"name":"outsider"}"#)
        .custom_created_at(nostr::Timestamp::from_secs(now_secs()))
        .sign_with_keys(outsider)?;
    let mut ws = connect(url).await?;
    ws.send(Message::text(format!(r#"["EVENT",{}]"#, event.as_json())))
        .await?;
    loop {
        if let RelayMessage::Ok {
            event_id,
            status,
            message,
        } = next_message(&mut ws).await?
        {
            if event_id == event.id {
                if !status {
                    bail!("the warm-up event was refused: {message}");
                }
                break;
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// The newest kind:0 of each of `authors`, read over a raw websocket,
/// every signature checked; a read that loses an EOSE (nostr-rs-relay can
/// end a query without one at a WAL checkpoint) is done again, at most
/// three times.
async fn read_back(url: &str, authors: &[PublicKey]) -> anyhow::Result<HashMap<PublicKey, Event>> {
    let mut attempt = 1;
    loop {
        match read_once(url, authors).await {
            Ok(found) => return Ok(found),
            Err(error) if attempt < 3 => {
                eprintln!("[communities] read-back of {url} failed ({error:#}); again");
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn read_once(url: &str, authors: &[PublicKey]) -> anyhow::Result<HashMap<PublicKey, Event>> {
    // REQs of 100 authors, at most 8 open at once (the next at each EOSE).
    const WINDOW: usize = 8;
    let requests: Vec<String> = authors
        .chunks(AUTHORS_PER_FILTER)
        .enumerate()
        .map(|(i, batch)| {
            let hex: Vec<String> = batch
                .iter()
                .map(|a| format!(r#""{}""#, a.to_hex()))
                .collect();
            format!(
                r#"["REQ","r{i}",{{"kinds":[0],"authors":[{}]}}]"#,
                hex.join(",")
            )
        })
        .collect();
    let mut ws = connect(url).await?;
    let mut sent = 0;
    for request in requests.iter().take(WINDOW) {
        ws.feed(Message::text(request.clone())).await?;
        sent += 1;
    }
    ws.flush().await?;
    let mut newest: HashMap<PublicKey, Event> = HashMap::new();
    let mut ended = 0;
    while ended < requests.len() {
        match next_message(&mut ws).await? {
            RelayMessage::Event { event, .. } => {
                let event = event.into_owned();
                event.verify().context("an event does not verify")?;
                if event.kind != Kind::Metadata {
                    continue;
                }
                let newer = newest.get(&event.pubkey).is_none_or(|current| {
                    (event.created_at, std::cmp::Reverse(event.id))
                        > (current.created_at, std::cmp::Reverse(current.id))
                });
                if newer {
                    newest.insert(event.pubkey, event);
                }
            }
            RelayMessage::EndOfStoredEvents(sub) => {
                ended += 1;
                ws.feed(Message::text(format!(r#"["CLOSE","{}"]"#, sub.as_str())))
                    .await?;
                if let Some(request) = requests.get(sent) {
                    ws.feed(Message::text(request.clone())).await?;
                    sent += 1;
                }
                ws.flush().await?;
            }
            RelayMessage::Closed { message, .. } => bail!("the relay closed a REQ: {message}"),
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(newest)
}
