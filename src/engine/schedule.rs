//! `reprofile run`: the scheduled maintenance job.
//!
//! A daemon fires ticks on a cron schedule (tokio-cron-scheduler); each tick
//! is [`crate::engine::orchestrate::tick`] (a fresh snapshot, its plan written to the
//! plans folder and, in apply mode, applied as `apply --auto-approve` would).
//! Ticks never overlap (a tick that fires while one runs is skipped and
//! logged), a failing or incomplete tick is logged and the next one tries
//! again, and SIGTERM/SIGINT stop the scheduling and stop the running tick
//! between actions (bounded wait, then exit 0; [`crate::engine::orchestrate`] says
//! exactly what happens). After each tick: plan retention and a Prometheus
//! text file for monitoring. `run --once` is one tick now. This module owns
//! the schedule, the counters, the metrics and the daemon's
//! [`Daemon`] (its memory across ticks: created when the daemon starts,
//! never written anywhere; `run --once` has none); it plans and applies nothing
//! itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::config::Config;
use crate::core::apply::Outcome;
use crate::core::plan::{Action, SkipReason};
use crate::engine::orchestrate::{tick_once, Daemon, Signals, Stop, TickReport};
use crate::store::planfile::{self, write_atomic};

/// Counters kept across ticks.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Ticks run.
    pub ticks: u64,
    /// Ticks that failed.
    pub failed: u64,
    /// Ticks skipped because the previous one was still running.
    pub skipped: u64,
    /// End of the last successful tick.
    pub last_success: Option<u64>,
}

impl Counters {
    /// Counts a tick that ran.
    fn count(&mut self, report: &TickReport) {
        self.ticks += 1;
        if report.succeeded() {
            self.last_success = Some(report.finished);
        } else {
            self.failed += 1;
        }
    }
}

/// After a tick: retention and the metrics file. Problems here are logged,
/// never fatal.
/// Makes sure the metrics file can be written before the first tick: its
/// folder is created when missing, and one that cannot be is an error at
/// start (monitoring would otherwise get nothing, with a warning per tick).
pub fn prepare_metrics_file(config: &Config) -> anyhow::Result<()> {
    let Some(path) = &config.schedule.metrics_file else {
        return Ok(());
    };
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).with_context(|| {
        format!(
            "[schedule] metrics_file {}: its folder {} cannot be created; create it, or point metrics_file elsewhere",
            path.display(),
            folder.display()
        )
    })
}

fn after_tick(config: &Config, report: &TickReport, counters: &Counters) {
    match planfile::prune(&config.plans_dir, config.schedule.keep_plans) {
        Ok(deleted) if !deleted.is_empty() => {
            tracing::info!(files = deleted.len(), "old plans removed (keep_plans)")
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "cannot prune old plans"),
    }
    if let Some(path) = &config.schedule.metrics_file {
        if let Err(err) = write_atomic(path, metrics_text(report, counters).as_bytes()) {
            tracing::warn!(file = %path.display(), error = %err, "cannot write the metrics file");
        }
    }
}

/// Writes one metric family (a gauge or a counter, as `kind` says).
fn metric(out: &mut String, name: &str, help: &str, kind: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// The Prometheus text exposition of a tick and the counters.
pub fn metrics_text(report: &TickReport, counters: &Counters) -> String {
    let mut out = String::new();
    let one = |v: f64| vec![(String::new(), v)];
    metric(
        &mut out,
        "reprofile_last_tick_start_timestamp_seconds",
        "Start of the last tick (Unix time).",
        "gauge",
        &one(report.started as f64),
    );
    metric(
        &mut out,
        "reprofile_last_tick_end_timestamp_seconds",
        "End of the last tick (Unix time).",
        "gauge",
        &one(report.finished as f64),
    );
    metric(
        &mut out,
        "reprofile_last_tick_duration_seconds",
        "Duration of the last tick.",
        "gauge",
        &one(report.duration.as_secs_f64()),
    );
    metric(
        &mut out,
        "reprofile_last_tick_success",
        "1 when the last tick read every relay it needed and every action succeeded.",
        "gauge",
        &one(if report.succeeded() { 1.0 } else { 0.0 }),
    );
    metric(
        &mut out,
        "reprofile_last_success_timestamp_seconds",
        "End of the last successful tick (Unix time; 0 before the first).",
        "gauge",
        &one(counters.last_success.unwrap_or(0) as f64),
    );
    metric(
        &mut out,
        "reprofile_ticks_total",
        "Ticks run.",
        "counter",
        &one(counters.ticks as f64),
    );
    metric(
        &mut out,
        "reprofile_ticks_failed_total",
        "Ticks that failed.",
        "counter",
        &one(counters.failed as f64),
    );
    metric(
        &mut out,
        "reprofile_ticks_skipped_total",
        "Ticks skipped because the previous tick was still running.",
        "counter",
        &one(counters.skipped as f64),
    );

    let plan = report.plan.as_ref().map(|d| &d.plan);
    metric(
        &mut out,
        "reprofile_agents",
        "Agent records in the store at the last tick.",
        "gauge",
        &one(plan.map_or(0, |p| p.agents) as f64),
    );
    metric(
        &mut out,
        "reprofile_plan_complete",
        "1 when the last plan could read every relay it needed.",
        "gauge",
        &one(if plan.is_some_and(|p| p.complete) {
            1.0
        } else {
            0.0
        }),
    );

    let types = ["backfill_avatar", "republish_profile"];
    let planned: Vec<(String, f64)> = types
        .iter()
        .map(|t| {
            let n = plan.map_or(0, |p| {
                p.actions
                    .iter()
                    .filter(|a: &&Action| a.type_name() == *t)
                    .count()
            });
            (format!("{{type=\"{t}\"}}"), n as f64)
        })
        .collect();
    metric(
        &mut out,
        "reprofile_planned_actions",
        "Actions in the last tick's plan, by type.",
        "gauge",
        &planned,
    );

    // By relay, so a dashboard shows which community each change goes to
    // (with [buzz] communities, one agent has a republish per relay).
    let relays: Vec<(String, f64)> = plan
        .map(crate::review::republishes_by_relay)
        .unwrap_or_default()
        .into_iter()
        .map(|(relay, n)| (format!("{{relay=\"{}\"}}", label_value(relay)), n as f64))
        .collect();
    metric(
        &mut out,
        "reprofile_planned_republishes",
        "Republishes in the last tick's plan, by relay.",
        "gauge",
        &relays,
    );

    let mut outcomes = Vec::new();
    for t in types {
        for outcome in Outcome::ALL {
            let n = report.apply.as_ref().map_or(0, |a| {
                a.results
                    .iter()
                    .filter(|r| r.kind == t && r.outcome == outcome)
                    .count()
            });
            outcomes.push((
                format!("{{type=\"{t}\",outcome=\"{}\"}}", outcome.as_str()),
                n as f64,
            ));
        }
    }
    metric(
        &mut out,
        "reprofile_actions",
        "Actions of the last tick's apply, by type and outcome.",
        "gauge",
        &outcomes,
    );

    let mut by_reason: BTreeMap<&str, usize> =
        SkipReason::ALL.iter().map(|r| (r.as_str(), 0)).collect();
    if let Some(plan) = plan {
        for skip in &plan.skipped {
            *by_reason.entry(skip.reason.as_str()).or_default() += 1;
        }
    }
    let skipped: Vec<(String, f64)> = by_reason
        .into_iter()
        .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), n as f64))
        .collect();
    metric(
        &mut out,
        "reprofile_skipped_agents",
        "Agents the last plan skipped, by reason.",
        "gauge",
        &skipped,
    );
    out
}

/// A Prometheus label value: backslash, double quote and line feed escaped
/// (a relay URL comes from the store or config).
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Waits a random delay of up to `jitter` before a tick, or until a stop is
/// requested. Returns false when asked to stop.
async fn jitter_wait(jitter: Duration, stop: &Stop) -> bool {
    if jitter.is_zero() {
        return !stop.requested();
    }
    let delay = jitter.mul_f64(rand::thread_rng().gen_range(0.0..1.0));
    tracing::debug!(
        delay_ms = delay.as_millis() as u64,
        "jitter before the tick"
    );
    tokio::select! {
        () = tokio::time::sleep(delay) => !stop.requested(),
        () = stop.until_requested() => false,
    }
}

/// `run --once`: one tick now (after the configured jitter), its retention
/// and metrics, stopping between actions once `stop` is requested (the
/// caller listens for the signals). The caller turns the report into the
/// exit code.
pub async fn run_once(config: &Config, stop: &Stop) -> TickReport {
    if let Err(error) = prepare_metrics_file(config) {
        return TickReport {
            error: Some(error),
            ..TickReport::default()
        };
    }
    if !jitter_wait(config.schedule.jitter, stop).await {
        return TickReport {
            error: Some(anyhow::anyhow!(
                "stopped before the tick began: nothing was planned or changed"
            )),
            ..TickReport::default()
        };
    }
    // One tick: nothing to remember it for.
    let report = tick_once(config, stop).await;
    let mut counters = Counters::default();
    counters.count(&report);
    after_tick(config, &report, &counters);
    report
}

struct Shared {
    config: Config,
    /// Held by the running tick: the daemon, with its memory of the ticks
    /// before.
    busy: Mutex<Daemon>,
    counters: std::sync::Mutex<Counters>,
    stop: Stop,
}

async fn scheduled_tick(shared: Arc<Shared>) {
    let Ok(mut daemon) = shared.busy.try_lock() else {
        shared.counters.lock().expect("counters").skipped += 1;
        tracing::warn!("tick skipped: the previous tick is still running");
        return;
    };
    if !jitter_wait(shared.config.schedule.jitter, &shared.stop).await {
        return;
    }
    let report = daemon.tick(&shared.config, &shared.stop).await;
    let counters = {
        let mut counters = shared.counters.lock().expect("counters");
        counters.count(&report);
        counters.clone()
    };
    after_tick(&shared.config, &report, &counters);
}

/// The daemon: ticks on the configured cron schedule until SIGTERM or SIGINT
/// (what then happens is told in [`crate::engine::orchestrate`]). Returns when
/// stopped; an error is a start-up problem.
pub async fn run_daemon(config: Config) -> anyhow::Result<()> {
    let cron = config.schedule.cron.clone().with_context(|| {
        format!(
            "[schedule] cron is not set in {}; add e.g. cron = \"0 */15 * * * *\", or use `run --once` from an outside scheduler",
            config.source.as_deref().unwrap_or(Path::new("config.toml")).display()
        )
    })?;
    prepare_metrics_file(&config)?;
    let timezone = config.schedule.timezone;
    let grace = config.schedule.shutdown_grace;
    let mode = config.schedule.mode;
    let shared = Arc::new(Shared {
        config,
        // Created here, in memory only, and gone when the daemon exits.
        busy: Mutex::new(Daemon::new()),
        counters: std::sync::Mutex::new(Counters::default()),
        stop: Stop::default(),
    });
    let mut signals = Signals::listen()?;

    let mut scheduler = JobScheduler::new()
        .await
        .context("cannot start the scheduler")?;
    let job_shared = shared.clone();
    let job = Job::new_async_tz(cron.as_str(), timezone, move |_id, _scheduler| {
        let shared = job_shared.clone();
        Box::pin(async move {
            // A tick of its own, so a slow tick never holds up the scheduler.
            tokio::spawn(scheduled_tick(shared));
        })
    })
    .with_context(|| format!("cannot schedule [schedule] cron = {cron:?}"))?;
    scheduler
        .add(job)
        .await
        .context("cannot schedule the job")?;
    scheduler
        .start()
        .await
        .context("cannot start the scheduler")?;
    tracing::info!(cron = cron.as_str(), timezone = %timezone, mode = ?mode, "scheduler started");

    let first = signals.next().await;
    shared.stop.request();
    tracing::info!(
        signal = first,
        "stopping: no new ticks; the running tick finishes the actions under way (a second signal stops at once)"
    );
    let _ = scheduler.shutdown().await;
    tokio::select! {
        finished = tokio::time::timeout(grace, shared.busy.lock()) => match finished {
            Ok(_) => tracing::info!("stopped"),
            Err(_) => tracing::warn!(
                grace_secs = grace.as_secs(),
                "the running tick did not finish within the grace period; exiting (its journal is true so far)"
            ),
        },
        second = signals.next() => tracing::warn!(
            signal = second,
            "stopped at once by a second signal: the running tick's actions under way were left unfinished (its journal is true so far; the next run finishes the rest)"
        ),
    }
    Ok(())
}
