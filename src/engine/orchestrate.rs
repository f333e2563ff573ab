//! Orchestration: snapshot → plan → write → apply → journal, the clock and
//! the stop signal, for every caller.
//!
//! The command line ([`crate::cli`]), the demo ([`crate::cli::demo`]) and the
//! daemon ([`crate::engine::schedule`]) call this module; it calls the edges
//! (snapshot, plan files, apply) and the core, and never its callers, so data
//! flows one way. It prints nothing (its callers print and log) and decides
//! nothing the core decides; it holds no state between calls, except in a
//! [`Daemon`], which carries the daemon's memory from one tick to the next.
//!
//! # What happens on SIGTERM (and SIGINT)
//!
//! The daemon (`reprofile run`) and the one-shot commands that change
//! things (`apply`, `migrate`, `run --once`) listen for them
//! ([`Signals`]): without a handler, a command that is a
//! container's PID 1 would ignore SIGTERM and run on until SIGKILL. `plan`
//! and `show` end at once, as any process does, and what they leave is true
//! (a plan file is written atomically). The signal sets the stop flag and:
//!
//! 1. no new tick starts (a tick still in its jitter wait ends without
//!    planning);
//! 2. a tick that is snapshotting finishes its snapshot and writes its plan;
//! 3. its apply reads the flag between actions ([`crate::engine::apply`]): before
//!    the backfills (one atomic store write, never cut in half) and before
//!    each relay's republishes; on a relay, the publisher sends no new event
//!    once the flag is set, and on a relay that wants each author signed in
//!    it starts no new session ([`crate::net::publish`]);
//! 4. events already sent get their OK or time out (`[relay]
//!    publish_timeout_secs`), are read back, and are journaled; the actions
//!    not begun are neither done nor journaled, and the next run plans them
//!    again;
//! 5. the daemon waits for the tick at most `[schedule] shutdown_grace_secs`,
//!    writes the tick's metrics (a stopped tick is not a success) and exits 0;
//!    a one-shot command says at once that it is stopping, waits as long,
//!    says what was left and exits 130 (SIGINT) or 143 (SIGTERM), or 1 past
//!    the grace;
//! 6. a second signal ends the wait at once (as terraform does on a second
//!    Ctrl-C): the events under way are left without their OK or read-back,
//!    and the next run finishes them (a `published` journal line or the
//!    relay's copy of the event keeps it from being sent twice). Ctrl-C at
//!    an approval prompt cancels at once, nothing changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::{Config, ScheduleMode};
use crate::core::apply::Outcome;
use crate::core::model::{AgentRecord, PlanMode, Policy, RelayObservation};
use crate::core::plan::Plan;
use crate::core::rules;
use crate::engine::apply::{apply, ApplyOptions, ApplyReport, PlannedRecords};
use crate::engine::snapshot;
use crate::engine::tick_memory::TickMemory;
use crate::net::verified::{Checker, VerifiedEvents};
use crate::review::render::{self, Style};
use crate::store::planfile::{self, PlanDocument, PlanKind};

/// The current time in Unix seconds: the one clock of every command.
pub use crate::clock::now_secs;

/// An error and its causes on one line.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// A plan just made: the document, where it was written, and why each relay
/// that could not be read was not (the plan itself keeps only which).
#[derive(Debug, Clone)]
pub struct Planned {
    /// The plan.
    pub doc: PlanDocument,
    /// The plan file written.
    pub path: PathBuf,
    /// For each relay that could not be read, the reason of the first agent
    /// it failed for, as the relay edge gave it.
    pub read_errors: BTreeMap<String, String>,
}

/// Takes a snapshot, plans it and writes the plan (to `out`, or the plans
/// folder).
pub async fn make_plan(
    config: &Config,
    only: &[String],
    out: Option<&Path>,
) -> anyhow::Result<Planned> {
    Ok(plan_and_write(config, only, out, Keep::Nothing).await?.0)
}

/// [`make_plan`] of every agent for an apply in the same process (`apply`
/// without a plan file, `migrate`, a `run --once` tick), with the options
/// that apply takes what the plan just did from: the records the plan was
/// made from ([`ApplyOptions::planned_records`]) and the signatures its
/// reads checked (a memory of proofs for this plan and apply only).
pub async fn make_plan_to_apply(config: &Config) -> anyhow::Result<(Planned, ApplyOptions)> {
    let checker = Checker::with_memory(VerifiedEvents::proofs_only());
    let (planned, records) =
        plan_and_write(config, &[], None, Keep::ForApply(checker.clone())).await?;
    let opts = ApplyOptions {
        checker,
        planned_records: records.map(|records| PlannedRecords {
            sha256: planned.doc.store.sha256.clone(),
            records: Arc::new(records),
        }),
        ..ApplyOptions::default()
    };
    Ok((planned, opts))
}

/// What a plan keeps for what follows it in the same process.
enum Keep<'m> {
    /// Nothing (`plan`, a plan that will not be applied).
    Nothing,
    /// For an apply in the same process ([`make_plan_to_apply`]): the checks
    /// of the events read (in the checker's memory) and the store's records
    /// the plan was made from (returned).
    ForApply(Checker),
    /// The daemon's memory, of every agent: it keeps all of that and more
    /// for the next tick.
    Daemon(&'m mut TickMemory),
}

/// [`make_plan`], keeping what `keep` says. With the daemon's memory: the
/// stores parsed again only when their bytes changed, and rule A5's key
/// derivations of earlier ticks reused. The plan is the one [`make_plan`]
/// would make.
async fn plan_and_write(
    config: &Config,
    only: &[String],
    out: Option<&Path>,
    keep: Keep<'_>,
) -> anyhow::Result<(Planned, Option<Vec<AgentRecord>>)> {
    let (mut memory, checker, keep_records) = match keep {
        Keep::Daemon(memory) => (Some(memory), Checker::default(), false),
        Keep::ForApply(checker) => (None, checker, true),
        Keep::Nothing => (None, Checker::default(), false),
    };
    let gathered = match memory.as_deref_mut() {
        Some(memory) => snapshot::gather_remembering(config, memory).await?,
        None => snapshot::gather_checked(config, only, checker).await?,
    };
    let now = now_secs();
    // The daemon's: which agents the plan found unchanged.
    let mut unchanged = Vec::new();
    let plan = match memory.as_deref_mut() {
        Some(memory) => {
            let before = memory.unchanged_before(&gathered.snapshot, &config.policy);
            let planned = rules::plan_remembering(
                &gathered.snapshot,
                &config.policy,
                now,
                memory.known_keys(),
                &before,
            );
            memory.learn_keys(planned.learned);
            unchanged = planned.unchanged;
            planned.plan
        }
        None => plan_gathered(&gathered, &config.policy, now),
    };
    let mut read_errors = BTreeMap::new();
    for agent in &gathered.snapshot.agents {
        if let (
            Some(relay),
            RelayObservation::Unreadable(why) | RelayObservation::AuthRefused(why),
        ) = (&agent.relay, &agent.observation)
        {
            read_errors
                .entry(relay.clone())
                .or_insert_with(|| why.clone());
        }
    }
    // The plan holds what it needs; the snapshot is dropped before writing,
    // but for the records the daemon's memory lent (given back, not copied)
    // and what the next tick needs to know which agents it found unchanged.
    let mut gathered = gathered;
    let snapshot = std::mem::take(&mut gathered.snapshot);
    let mut records = None;
    match memory {
        Some(memory) => {
            let mut unchanged_with = Vec::with_capacity(snapshot.agents.len());
            let (records, observed): (Vec<_>, Vec<_>) = snapshot
                .agents
                .into_iter()
                .zip(unchanged)
                .map(|(mut agent, unchanged)| {
                    unchanged_with.push(match &mut agent.observation {
                        RelayObservation::Newest(event) if unchanged => {
                            Some(std::mem::take(&mut event.id))
                        }
                        _ => None,
                    });
                    (agent.record, (agent.relay, agent.observation))
                })
                .unzip();
            memory.give_back_records(records);
            memory.remember_decisions(config.policy.clone(), snapshot.personas, unchanged_with);
            // Freed on the pool while the plan is written.
            rayon::spawn(move || drop(observed));
        }
        None if keep_records && snapshot.agents.len() == gathered.store.records => {
            let (kept, observed): (Vec<_>, Vec<_>) = snapshot
                .agents
                .into_iter()
                .map(|agent| (agent.record, agent.observation))
                .unzip();
            records = Some(kept);
            rayon::spawn(move || drop(observed));
        }
        None => drop(snapshot),
    }
    let kind = match config.policy.mode {
        PlanMode::Full => PlanKind::Reconcile,
        PlanMode::BackfillOnly => PlanKind::Migrate,
    };
    let doc = PlanDocument {
        created_at: now,
        kind,
        store: gathered.store,
        plan,
    };
    let path = planfile::write(&doc, &config.plans_dir, out, || {
        render::render(&doc, Style::default())
    })
    .context("cannot write the plan")?;
    // Only relays the plan needed are reasons for its incompleteness.
    let unread: Vec<String> = doc
        .plan
        .unread_relays()
        .into_iter()
        .map(|u| u.relay)
        .collect();
    read_errors.retain(|relay, _| unread.contains(relay));
    let planned = Planned {
        doc,
        path,
        read_errors,
    };
    Ok((planned, records))
}

/// The plan of a snapshot [`snapshot::gather`] took, with rule A5's
/// derivations made while it read the relays: the plan `rules::plan`
/// makes of it.
pub fn plan_gathered(gathered: &snapshot::Gathered, policy: &Policy, now: u64) -> Plan {
    rules::plan_remembering_keys(&gathered.snapshot, policy, now, &gathered.keys_ahead).0
}

/// Applies a plan (checked and approved by the caller) with the process
/// clock; the journal goes next to `path`.
pub async fn apply_plan(
    config: &Config,
    doc: &PlanDocument,
    path: &Path,
    opts: &ApplyOptions,
) -> anyhow::Result<ApplyReport> {
    apply(config, doc, path, opts, &now_secs).await
}

/// The stop signal: a flag, set once (by SIGTERM or SIGINT in the daemon, or
/// by a test), that the apply reads between actions, and that a wait (the
/// approval prompt, the jitter) can await. Clones share it.
#[derive(Debug, Clone)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    requested: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Stop {
    fn default() -> Self {
        Self {
            flag: Arc::default(),
            requested: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }
}

impl Stop {
    /// True once a stop was requested.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Requests the stop.
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.requested.send_replace(true);
    }

    /// Ends once the stop is requested (at once if it was).
    pub async fn until_requested(&self) {
        let mut requested = self.requested.subscribe();
        // The sender lives as long as `self`: never an error.
        let _ = requested.wait_for(|requested| *requested).await;
    }

    /// The flag itself, for [`ApplyOptions::stop`].
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }
}

/// SIGTERM and SIGINT as they arrive, from the moment of [`Signals::listen`]
/// (each listener sees every signal that arrives after it was made).
#[derive(Debug)]
pub struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts listening (their default action, ending the process, is off
    /// from then on). Needs a tokio runtime.
    pub fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    /// The next signal's name: `SIGTERM` or `SIGINT`.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// What one tick did.
#[derive(Debug, Default)]
pub struct TickReport {
    /// Start (Unix seconds).
    pub started: u64,
    /// End (Unix seconds).
    pub finished: u64,
    /// Wall time.
    pub duration: Duration,
    /// The plan it made, when it made one.
    pub plan: Option<PlanDocument>,
    /// Why each relay the plan could not read was not (see [`Planned`]).
    pub read_errors: BTreeMap<String, String>,
    /// The apply, in apply mode with actions.
    pub apply: Option<ApplyReport>,
    /// Why the tick failed, when it did.
    pub error: Option<anyhow::Error>,
}

impl TickReport {
    /// True when the tick made a complete plan and, in apply mode, every
    /// action was carried out and succeeded: an incomplete snapshot, a failed
    /// or stale action, or an apply stopped early is not a success.
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
            && self.plan.as_ref().is_some_and(|d| d.plan.complete)
            && self.apply.as_ref().is_none_or(ApplyReport::succeeded)
    }

    /// How many of the apply's actions ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.apply.as_ref().map_or(0, |a| a.count(outcome))
    }
}

/// One tick with no memory of any other, as `reprofile run --once` makes it
/// (without its jitter, metrics file and plan retention).
pub async fn tick_once(config: &Config, stop: &Stop) -> TickReport {
    tick(config, stop, None).await
}

/// The ticks of one daemon, each with what the earlier ones proved: what
/// `reprofile run` ticks with (and the benchmarks).
#[derive(Debug, Default)]
pub struct Daemon {
    memory: TickMemory,
}

impl Daemon {
    /// A daemon that has not ticked yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One tick, as `reprofile run` makes it. Keys read from the OS keyring
    /// are dropped when it ends (the next tick reads the entry again), so
    /// between ticks the daemon holds no key the store does not hold.
    pub async fn tick(&mut self, config: &Config, stop: &Stop) -> TickReport {
        let report = tick(config, stop, Some(&mut self.memory)).await;
        config.keys.forget();
        self.memory.drop_keyring_keys();
        report
    }
}

/// One tick of the maintenance job: plan, and apply in apply mode (as
/// `apply --auto-approve` would), stopping between actions once `stop` is
/// requested. Logs its summary; never fails as a whole. The daemon passes
/// its `memory` of earlier ticks; `run --once` passes none, and then the
/// tick is exactly `plan` then `apply`.
pub(crate) async fn tick(
    config: &Config,
    stop: &Stop,
    mut memory: Option<&mut TickMemory>,
) -> TickReport {
    let clock = Instant::now();
    let mut report = TickReport {
        started: now_secs(),
        ..TickReport::default()
    };
    tracing::info!(mode = ?config.schedule.mode, "tick started");
    // Apply takes what the plan just did: the records it was made from,
    // while the store's bytes are still theirs, and the signatures its reads
    // checked (the daemon's memory; in `run --once`, one for this tick).
    let applying = config.schedule.mode == ScheduleMode::Apply;
    let planned = match memory.as_deref_mut() {
        Some(memory) => plan_and_write(config, &[], None, Keep::Daemon(memory))
            .await
            .map(|(planned, _)| (planned, ApplyOptions::default())),
        None if applying => make_plan_to_apply(config).await,
        None => make_plan(config, &[], None)
            .await
            .map(|planned| (planned, ApplyOptions::default())),
    };
    match planned {
        Err(err) => report.error = Some(err),
        Ok((
            Planned {
                doc,
                path,
                read_errors,
            },
            mut opts,
        )) => {
            if applying && !doc.plan.is_empty() {
                opts.stop = Some(stop.flag());
                // The daemon lends its parse, and takes it back after.
                if let Some(memory) = memory.as_deref_mut() {
                    opts.checker = memory.checker();
                    opts.planned_records = memory.lend_records().map(|records| PlannedRecords {
                        sha256: doc.store.sha256.clone(),
                        records: Arc::new(records),
                    });
                }
                match apply_plan(config, &doc, &path, &opts).await {
                    Ok(applied) => report.apply = Some(applied),
                    Err(err) => report.error = Some(err),
                }
                let lent = opts.planned_records.take().map(|planned| planned.records);
                if let (Some(memory), Some(records)) = (memory.as_deref_mut(), lent) {
                    if let Ok(records) = Arc::try_unwrap(records) {
                        memory.give_back_records(records);
                    }
                }
            }
            report.plan = Some(doc);
            report.read_errors = read_errors;
        }
    }
    if let Some(memory) = memory {
        memory.end_tick();
    }
    report.finished = now_secs();
    report.duration = clock.elapsed();
    log_tick(config, &report);
    report
}

fn log_tick(config: &Config, report: &TickReport) {
    let duration_ms = report.duration.as_millis() as u64;
    if let Some(error) = &report.error {
        tracing::error!(
            mode = ?config.schedule.mode,
            duration_ms,
            error = one_line(error).as_str(),
            "tick failed; the next tick tries again"
        );
        return;
    }
    let plan = report.plan.as_ref().map(|d| &d.plan);
    for unread in plan.map(|p| p.unread_relays()).unwrap_or_default() {
        tracing::warn!(
            relay = unread.relay.as_str(),
            agents = unread.agents,
            reason = unread.reason.as_str(),
            why = report
                .read_errors
                .get(&unread.relay)
                .map_or("", String::as_str),
            "relay could not be read: its agents were not checked and the tick is incomplete"
        );
    }
    tracing::info!(
        mode = ?config.schedule.mode,
        planned = plan.map_or(0, |p| p.actions.len()),
        applied = report.count(Outcome::Applied),
        already_applied = report.count(Outcome::AlreadyApplied),
        stale = report.count(Outcome::Stale),
        failed = report.count(Outcome::Failed),
        not_begun = report.apply.as_ref().map_or(0, |a| a.not_begun),
        skipped = plan.map_or(0, |p| p.skipped.len()),
        complete = plan.is_some_and(|p| p.complete),
        duration_ms,
        "tick finished"
    );
}
