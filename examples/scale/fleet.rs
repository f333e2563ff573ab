//! The fleet world: N agents spread evenly over R nostr-rs-relay processes,
//! each behind its own latency proxy, a given share of profiles stale; and
//! one whole `reprofile run --once` tick in apply mode on it, run as a child
//! process of the real binary, timed, with its peak memory and its outcome.
//!
//! It owns starting the relays and proxies, seeding them (directly, not
//! through the proxies), writing the world's store and config, running the
//! child and checking what it did (its metrics file, and a second snapshot +
//! plan in this process that must find nothing to do). It must not time
//! anything but the child, and never fails on a slow figure: only a wrong
//! outcome is an error of the check.
//!
//! Also here: [`perf_plan_profile`], a `perf record -g` of one whole plan run
//! (`scale --child-plan-run`) on the benchmark's mixed world, for the
//! README's before/after profile.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nostr::Event;
use reprofile::config;
use reprofile::engine::orchestrate::now_secs;
use reprofile::engine::snapshot;

use crate::harness::world::{self, Agent, State};
use crate::harness::{human, nrs, proxy, ws};

/// What to build and run.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Agents in the world.
    pub agents: usize,
    /// nostr-rs-relay processes; agent `i` is on relay `i % relays`.
    pub relays: usize,
    /// Round trip each relay's proxy adds, in ms.
    pub rtt_ms: u64,
    /// Percent of profiles stale (name or picture differing from the record).
    pub stale_percent: u32,
    /// The `reprofile` binary to run.
    pub reprofile_bin: PathBuf,
    /// Progress lines on stderr.
    pub verbose: bool,
    /// Where to copy the tick's stderr (its log, with timestamps).
    pub tick_log: Option<PathBuf>,
    /// A command the tick runs under, e.g. `perf record -g -o FILE --`
    /// (the peak memory is then that command's, with its child).
    pub tick_wrapper: Vec<String>,
}

/// What one fleet tick did.
#[derive(Debug, Clone)]
pub struct FleetReport {
    /// Agents in the world.
    pub agents: usize,
    /// Relays.
    pub relays: usize,
    /// Round trip added per relay, ms.
    pub rtt_ms: u64,
    /// Percent of profiles stale.
    pub stale_percent: u32,
    /// Agents whose profile was stale (must be republished).
    pub stale: usize,
    /// Seeding all relays (in parallel, direct).
    pub seed_time: Duration,
    /// Wall time of the child, from spawn to exit.
    pub tick_wall: Duration,
    /// The child's peak resident set (its `VmHWM`, polled), KiB.
    pub peak_kb: u64,
    /// The child's exit code (`None`: killed by a signal).
    pub exit_code: Option<i32>,
    /// Republish actions the tick planned (its metrics file).
    pub planned: usize,
    /// Republish actions applied (its metrics file).
    pub applied: usize,
    /// Republish actions with any other outcome, by outcome.
    pub not_applied: Vec<(String, usize)>,
    /// A second snapshot + plan after the tick, direct: `republish=… backfill=… unchanged=… skipped=… unread=…`.
    pub second_plan: String,
    /// Everything that is not as it must be (empty: the tick did its job).
    pub problems: Vec<String>,
}

impl FleetReport {
    /// True when the tick exited 0, applied every stale profile and a
    /// second plan finds nothing to do.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The README table's row: agents, relays, RTT, stale, tick wall time,
    /// peak memory, outcome.
    pub fn readme_row(&self) -> String {
        let outcome = if self.ok() {
            format!(
                "exit 0; {} of {} stale republished; a second plan: nothing to do",
                self.applied, self.stale
            )
        } else {
            format!("FAILED: {}", self.problems.join("; "))
        };
        format!(
            "| {} | {} | {} ms | {}% ({}) | {} | {:.0} MiB | {} |",
            thousands(self.agents),
            self.relays,
            self.rtt_ms,
            self.stale_percent,
            thousands(self.stale),
            human(self.tick_wall),
            self.peak_kb as f64 / 1024.0,
            outcome
        )
    }

    /// A few lines for the terminal.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "fleet: {} agents over {} nostr-rs-relay, +{} ms RTT each, {}% stale ({} agents)",
            self.agents, self.relays, self.rtt_ms, self.stale_percent, self.stale
        );
        let _ = writeln!(
            out,
            "seed (direct, all relays at once): {}",
            human(self.seed_time)
        );
        let _ = writeln!(
            out,
            "tick (`reprofile run --once`, apply mode): {} wall, peak {:.0} MiB, exit {}",
            human(self.tick_wall),
            self.peak_kb as f64 / 1024.0,
            self.exit_code
                .map_or_else(|| "by a signal".to_string(), |c| c.to_string())
        );
        let _ = writeln!(
            out,
            "outcome: planned {} republishes, applied {}, other {:?}; second plan {}",
            self.planned, self.applied, self.not_applied, self.second_plan
        );
        for problem in &self.problems {
            let _ = writeln!(out, "PROBLEM: {problem}");
        }
        let _ = writeln!(out, "README row:\n{}", self.readme_row());
        out
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Agent `i`'s state: stale (name, then picture, alternately) for the given
/// percent of each relay's agents, spread evenly over them, else in sync.
pub fn fleet_state(i: usize, relays: usize, stale_percent: u32) -> State {
    let j = (i / relays.max(1)) as u64;
    let p = u64::from(stale_percent.min(100));
    // Exactly floor(n * p / 100) of a relay's first n agents are stale.
    if ((j + 1) * p) / 100 > (j * p) / 100 {
        if ((j * p) / 100).is_multiple_of(2) {
            State::StaleName
        } else {
            State::StalePicture
        }
    } else {
        State::InSync
    }
}

/// The relay URL the records of relay `k`'s agents name (rewritten by the
/// config to the relay's proxy).
pub fn record_relay_url(k: usize) -> String {
    format!("wss://relay-{k}.fleet.invalid")
}

/// The `reprofile` binary beside this executable's target folder
/// (`target/<profile>/reprofile` for `target/<profile>/examples/scale`), or
/// `$REPROFILE_BIN`.
pub fn default_reprofile_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REPROFILE_BIN") {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    Some(profile_dir.join("reprofile")).filter(|p| p.is_file())
}

fn log(opts: &FleetOptions, message: impl AsRef<str>) {
    if opts.verbose {
        eprintln!("[fleet] {}", message.as_ref());
    }
}

/// The fleet config: the store beside it, apply mode, a metrics file, each
/// record's relay rewritten to `targets[k]`; everything else the defaults.
fn config_text(targets: &[String]) -> String {
    let mut out = String::from(
        "# Written by the scale benchmark's fleet world.\n\
         [store]\nagents = \"managed-agents.json\"\n\n\
         [plans]\ndir = \"plans\"\n\n\
         [schedule]\nmode = \"apply\"\nmetrics_file = \"metrics.prom\"\n\n\
         [relay.rewrite]\n",
    );
    for (k, target) in targets.iter().enumerate() {
        let _ = writeln!(out, "\"{}\" = \"{target}\"", record_relay_url(k));
    }
    out
}

/// Runs `exe args…` to its end; returns its exit status, wall time and peak
/// resident set (KiB): its `VmHWM`, read from `/proc/<pid>/status` every
/// 10 ms until it exits (the high-water mark only grows, so the last reading
/// misses at most the last 10 ms). Not `wait4`'s `ru_maxrss`: Linux carries
/// the parent's high-water mark over the child's exec, so that figure is this
/// harness's own peak (1.1 GB at 100,000 agents) whenever it is larger.
fn run_measured(
    exe: &Path,
    args: &[&std::ffi::OsStr],
    stdout: &Path,
    stderr: &Path,
) -> anyhow::Result<(Option<i32>, Duration, u64)> {
    let started = Instant::now();
    let mut child = Command::new(exe)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(stdout)?)
        .stderr(std::fs::File::create(stderr)?)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0;
    let status = loop {
        if let Some(kb) = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|text| status_kb(&text, "VmHWM:"))
        {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok((status.code(), started.elapsed(), peak_kb))
}

/// A `Field:   123 kB` line's number in a `/proc/<pid>/status` text.
fn status_kb(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find(|line| line.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Seeds one relay directly, in batches of [`SEED_BATCH`] pipelined events
/// over a connection each. nostr-rs-relay now and then leaves an EVENT
/// without an OK when ten of them are seeded at once (seen at 100,000
/// agents: one connection waited 13 minutes); such a batch is sent again
/// (a duplicate is accepted), at most [`SEED_ATTEMPTS`] times.
async fn seed_relay(url: &str, events: &[Event]) -> anyhow::Result<()> {
    for batch in events.chunks(SEED_BATCH) {
        let mut attempt = 1;
        loop {
            match ws::pipelined_publish(url, batch, Duration::from_secs(20)).await {
                Ok((counts, _)) if counts.accepted == batch.len() => break,
                Ok((counts, _)) => bail!(
                    "the relay took {} of {} seed events: {:?}",
                    counts.accepted,
                    batch.len(),
                    counts.refused
                ),
                Err(error) if attempt < SEED_ATTEMPTS => {
                    eprintln!("[fleet] seeding {url}: {error:#}; sending the batch again");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
    Ok(())
}

/// Events per seeding connection.
const SEED_BATCH: usize = 2_000;
/// Tries per seeding batch. Under the load of ten relays seeded at once on
/// two cores, nostr-rs-relay now and then leaves a few events of a batch
/// without an OK past the deadline; sent again, those already stored are
/// answered `duplicate:` at once. Three tries were once not enough.
const SEED_ATTEMPTS: usize = 6;

/// The value of `name{labels}` in a Prometheus text file.
fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// Builds the fleet world, runs one `run --once` tick in apply mode on it,
/// and checks what it did.
pub async fn run_fleet(opts: &FleetOptions) -> anyhow::Result<FleetReport> {
    let binary = nrs::binary().context(
        "nostr-rs-relay is not installed, and the fleet world needs it: run `.ci/setup` \
         (or `cargo install nostr-rs-relay --version 0.8.12`), or point NOSTR_RS_RELAY at it",
    )?;
    if !opts.reprofile_bin.is_file() {
        bail!(
            "no reprofile binary at {}: build it (`cargo build --release --bin reprofile`) or set REPROFILE_BIN",
            opts.reprofile_bin.display()
        );
    }
    let n = opts.agents;
    let r = opts.relays.max(1);
    let now = now_secs();
    let work = tempfile::Builder::new()
        .prefix("reprofile-fleet-")
        .tempdir()?;

    log(opts, format!("generating {n} agents over {r} relays"));
    let started = Instant::now();
    let agents: Vec<Agent> = world::agents(n, 0, |i| fleet_state(i, r, opts.stale_percent));
    let stale = agents.iter().filter(|a| a.state.needs_republish()).count();
    let store_text = world::store_json_with(&agents, |a| record_relay_url(a.index % r));
    let mut per_relay: Vec<Vec<Event>> = vec![Vec::new(); r];
    for (event, agent) in world::seed_events(&agents, now).into_iter().zip(&agents) {
        per_relay[agent.index % r].push(event);
    }
    log(
        opts,
        format!("generated and signed in {}", human(started.elapsed())),
    );

    let mut relays = Vec::with_capacity(r);
    for _ in 0..r {
        relays.push(nrs::start(binary.clone())?);
    }
    log(opts, format!("seeding {r} relays directly"));
    let started = Instant::now();
    let seeds = futures_util::future::join_all(
        relays
            .iter()
            .zip(&per_relay)
            .map(|(relay, events)| seed_relay(&relay.url, events)),
    )
    .await;
    let seed_time = started.elapsed();
    for (k, seeded) in seeds.into_iter().enumerate() {
        seeded.with_context(|| format!("seeding relay {k}"))?;
    }
    drop(per_relay);
    log(opts, format!("seeded in {}", human(seed_time)));

    let one_way = Duration::from_micros(opts.rtt_ms * 500);
    let mut proxies = Vec::with_capacity(r);
    for relay in &relays {
        proxies.push(proxy::start(&relay.url, one_way).await?);
    }

    // The world the child runs on, and a twin config that reads the relays
    // directly (for the check after the tick).
    let dir = work.path().join("fleet");
    world::lay_out(&dir, &store_text, world::STORE_RELAY_URL)?;
    drop(store_text);
    let config_path = dir.join("config.toml");
    let targets: Vec<String> = proxies.iter().map(|p| p.url.clone()).collect();
    std::fs::write(&config_path, config_text(&targets))?;
    let direct_path = dir.join("direct.toml");
    let direct: Vec<String> = relays.iter().map(|r| r.url.clone()).collect();
    std::fs::write(&direct_path, config_text(&direct))?;

    log(
        opts,
        format!(
            "tick: {} --config {} run --once",
            opts.reprofile_bin.display(),
            config_path.display()
        ),
    );
    let (stdout, stderr) = (dir.join("tick.stdout"), dir.join("tick.stderr"));
    let mut args: Vec<std::ffi::OsString> = vec![
        std::ffi::OsString::from("--config"),
        config_path.clone().into_os_string(),
        "run".into(),
        "--once".into(),
    ];
    let exe = match opts.tick_wrapper.split_first() {
        None => opts.reprofile_bin.clone(),
        Some((wrapper, wrapper_args)) => {
            let mut all: Vec<std::ffi::OsString> = wrapper_args.iter().map(Into::into).collect();
            all.push(opts.reprofile_bin.clone().into_os_string());
            all.append(&mut args);
            args = all;
            PathBuf::from(wrapper)
        }
    };
    let (out_path, err_path) = (stdout.clone(), stderr.clone());
    let (exit_code, tick_wall, peak_kb) = tokio::task::spawn_blocking(move || {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        run_measured(&exe, &args, &out_path, &err_path)
    })
    .await??;
    log(
        opts,
        format!("tick done in {}, exit {exit_code:?}", human(tick_wall)),
    );

    if let Some(copy) = &opts.tick_log {
        std::fs::copy(&stderr, copy)
            .with_context(|| format!("cannot copy the tick's log to {}", copy.display()))?;
    }
    let mut problems = Vec::new();
    if exit_code != Some(0) {
        let tail: String = std::fs::read_to_string(&stderr)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join(" | ");
        problems.push(format!("exit {exit_code:?}; stderr ends: {tail}"));
    }
    let metrics = std::fs::read_to_string(dir.join("metrics.prom")).unwrap_or_default();
    let planned = metric(
        &metrics,
        "reprofile_planned_actions{type=\"republish_profile\"}",
    )
    .unwrap_or(-1.0) as usize;
    let mut applied = 0;
    let mut not_applied = Vec::new();
    for outcome in reprofile::core::apply::Outcome::ALL {
        let name = outcome.as_str();
        let count = metric(
            &metrics,
            &format!("reprofile_actions{{type=\"republish_profile\",outcome=\"{name}\"}}"),
        )
        .unwrap_or(0.0) as usize;
        if outcome == reprofile::core::apply::Outcome::Applied {
            applied = count;
        } else if count > 0 {
            not_applied.push((name.to_string(), count));
        }
    }
    if metrics.is_empty() {
        problems.push("the tick wrote no metrics file".to_string());
    }
    if planned != stale || applied != stale || !not_applied.is_empty() {
        problems.push(format!(
            "{stale} stale: the tick planned {planned} republishes, applied {applied}, other {not_applied:?}"
        ));
    }

    // A second snapshot + plan, read directly: nothing may be left to do.
    let config = config::load(&direct_path)?;
    let gathered = snapshot::gather(&config, &[]).await?;
    let plan = reprofile::engine::orchestrate::plan_gathered(&gathered, &config.policy, now_secs());
    let republish = plan
        .actions
        .iter()
        .filter(|a| a.type_name() == "republish_profile")
        .count();
    let unread = plan.unread_relays().len();
    let second_plan = format!(
        "republish={republish} backfill={} unchanged={} skipped={} unread={unread}",
        plan.actions.len() - republish,
        plan.unchanged.len(),
        plan.skipped.len()
    );
    if !plan.actions.is_empty()
        || !plan.skipped.is_empty()
        || unread > 0
        || plan.unchanged.len() != n
    {
        problems.push(format!("a second plan is not empty: {second_plan}"));
    }
    drop(proxies);
    drop(relays);
    Ok(FleetReport {
        agents: n,
        relays: r,
        rtt_ms: opts.rtt_ms,
        stale_percent: opts.stale_percent,
        stale,
        seed_time,
        tick_wall,
        peak_kb,
        exit_code,
        planned,
        applied,
        not_applied,
        second_plan,
        problems,
    })
}

/// `perf record -g` of one whole plan run (`<this exe> --child-plan-run
/// CONFIG`) on the benchmark's mixed world of `agents` agents on one
/// nostr-rs-relay, and the top of `perf report --no-children --sort
/// dso,symbol` written to `out` under the command lines that made it.
pub async fn perf_plan_profile(agents: usize, lines: usize, out: &Path) -> anyhow::Result<()> {
    let binary = nrs::binary().context(
        "nostr-rs-relay is not installed: run `.ci/setup`, or point NOSTR_RS_RELAY at it",
    )?;
    let exe = std::env::current_exe()?;
    let perf = ["/usr/bin/perf", "perf"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .context("perf is not installed (linux-perf)")?;
    let now = now_secs();
    let work = tempfile::Builder::new()
        .prefix("reprofile-perf-")
        .tempdir()?;
    eprintln!("[perf] generating and seeding {agents} agents (mixed world)");
    let world_agents = world::agents(agents, 0, State::mixed);
    let store = world::store_json(&world_agents);
    let seed = world::seed_events(&world_agents, now);
    drop(world_agents);
    let relay = nrs::start(binary)?;
    let (counts, _) = ws::pipelined_publish(&relay.url, &seed, Duration::from_secs(600)).await?;
    if counts.accepted != seed.len() {
        bail!("the relay refused seed events: {:?}", counts.refused);
    }
    let config_path = world::lay_out(&work.path().join("world"), &store, &relay.url)?;
    let data = work.path().join("perf.data");

    let record = format!(
        "{perf} record -g -o {} -- {} --child-plan-run {}",
        data.display(),
        exe.display(),
        config_path.display()
    );
    eprintln!("[perf] {record}");
    let (perf_s, data_s, exe_s, config_s) = (
        perf.to_string(),
        data.clone(),
        exe.clone(),
        config_path.clone(),
    );
    let recorded = tokio::task::spawn_blocking(move || {
        Command::new(perf_s)
            .arg("record")
            .arg("-g")
            .arg("-o")
            .arg(&data_s)
            .arg("--")
            .arg(&exe_s)
            .arg("--child-plan-run")
            .arg(&config_s)
            .output()
    })
    .await??;
    if !recorded.status.success() {
        bail!(
            "perf record failed: {}",
            String::from_utf8_lossy(&recorded.stderr)
        );
    }
    let child_line = String::from_utf8_lossy(&recorded.stdout).trim().to_string();
    let report = Command::new(perf)
        .args([
            "report",
            "--no-children",
            "--sort",
            "dso,symbol",
            "--stdio",
            "-g",
            "none",
            "-i",
        ])
        .arg(&data)
        .output()?;
    if !report.status.success() {
        bail!(
            "perf report failed: {}",
            String::from_utf8_lossy(&report.stderr)
        );
    }
    let text = String::from_utf8_lossy(&report.stdout);
    // `pct dso [.] symbol` per line, without perf's padding and empty columns.
    let entries: Vec<(f64, String, String)> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut words: Vec<&str> = l.split_whitespace().collect();
            while words.last() == Some(&"-") {
                words.pop();
            }
            let pct = words.first()?.strip_suffix('%')?.parse().ok()?;
            let dso = words.get(1)?.to_string();
            let symbol = words.get(3..).unwrap_or_default().join(" ");
            Some((pct, dso, symbol))
        })
        .collect();
    let share = |pred: &dyn Fn(&str, &str) -> bool| -> f64 {
        entries
            .iter()
            .filter(|(_, dso, symbol)| pred(dso, symbol))
            .map(|(pct, _, _)| pct)
            .sum()
    };
    let alloc = [
        "malloc", "free", "realloc", "_int_", "cfree", "memmove", "memcpy",
    ];
    let groups = [
        (
            "secp256k1 (signature checks, key derivation)",
            share(&|_, s| s.contains("secp256k1")),
        ),
        (
            "libc allocation and copies",
            share(&|d, s| d.starts_with("libc") && alloc.iter().any(|a| s.contains(a))),
        ),
        ("serde_json", share(&|_, s| s.contains("serde_json"))),
        ("SHA-256 (sha2)", share(&|_, s| s.contains("sha2::"))),
        ("kernel", share(&|d, _| d.contains("kernel"))),
        ("tokio", share(&|_, s| s.contains("tokio"))),
        ("nostr / nostr-sdk", share(&|_, s| s.contains("nostr"))),
        (
            "reprofile's own functions",
            share(&|_, s| s.contains("reprofile::")),
        ),
    ];
    let top: Vec<String> = entries
        .iter()
        .take(lines)
        .map(|(pct, dso, symbol)| format!("{pct:>6.2}%  {dso:<18} {symbol}"))
        .collect();
    let mut file = String::new();
    let _ = writeln!(
        file,
        "# Profile of one whole plan run at {agents} agents (mixed world: 45% republish), \
         nostr-rs-relay on loopback, {}.",
        date_utc()
    );
    let _ = writeln!(
        file,
        "# Made by: cargo run --release --example scale -- --agents {agents} --perf-report {}",
        out.display()
    );
    let _ = writeln!(file, "# which runs: {record}");
    let _ = writeln!(
        file,
        "#            {perf} report --no-children --sort dso,symbol --stdio -g none -i perf.data | grep -v '^#' | head -{lines}"
    );
    let _ = writeln!(file, "# the child printed: {child_line}");
    let _ = writeln!(
        file,
        "# self time by group (every line of the report, not only the top):"
    );
    for (group, pct) in groups {
        let _ = writeln!(file, "#   {pct:>5.1}%  {group}");
    }
    let _ = writeln!(file, "# top {lines} symbols, self time:");
    for line in top {
        let _ = writeln!(file, "{line}");
    }
    std::fs::write(out, &file)?;
    print!("{file}");
    drop(relay);
    Ok(())
}

fn date_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
