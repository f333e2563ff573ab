//! The daemon's tick when nothing changed (issue part 10, item 2): a world
//! of N agents whose profiles are all in sync, ticked by one
//! `reprofile::engine::orchestrate::Daemon` as `reprofile run` ticks it. The first
//! tick parses the store, derives nothing (no republish) and checks every
//! signature; later ticks find the store's bytes unchanged and every event's
//! text already proven, so they read the relay, take each event from memory
//! (neither parsed nor hashed again) and plan. Compared with the per-agent
//! raw read of the same relay.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use reprofile::config;
use reprofile::engine::orchestrate::{Daemon, Stop, TickReport};

use super::world::{self, State};
use super::{log, mem, mib, ws, Options, Report, Row};

/// Where this world's keys start (apart from the main world and the apply
/// sets).
const STEADY_OFFSET: u64 = 2_000_000_000;

/// Seeds an in-sync world of `n` agents on `url`, ticks a daemon over it and
/// pushes a row for its first tick and one for its later ticks (best of
/// `opts.repeats`), the later compared with `per_agent` (the per-agent raw
/// read of `n` agents, when measured).
pub async fn steady_tick_rows(
    opts: &Options,
    label: &str,
    url: &str,
    dir: &Path,
    n: usize,
    per_agent: Option<Duration>,
    report: &mut Report,
) -> anyhow::Result<()> {
    log(
        opts,
        format!("{label}: daemon ticks over {n} agents in sync"),
    );
    let now = reprofile::engine::orchestrate::now_secs();
    let agents = world::agents(n, STEADY_OFFSET, |_| State::InSync);
    let seed = world::seed_events(&agents, now);
    let (counts, _) = ws::pipelined_publish(url, &seed, Duration::from_secs(300)).await?;
    if counts.accepted != seed.len() {
        bail!(
            "{label}: the relay refused steady seed events: {:?}",
            counts.refused
        );
    }
    let config_path = world::lay_out(&dir.join("steady"), &world::store_json(&agents), url)?;
    let config = config::load(&config_path)?;
    let stop = Stop::default();
    let mut daemon = Daemon::new();

    mem::reset_peak();
    let started = Instant::now();
    let first = daemon.tick(&config, &stop).await;
    let cold = started.elapsed();
    check_nothing_to_do(label, &first)?;
    report.push(Row::new(
        label,
        "daemon: first tick, nothing to do",
        n,
        cold,
        mib(mem::peak_kb()),
        "parses the store, checks every signature, plans, writes the plan",
    ));

    mem::reset_peak();
    // More later ticks on request, to profile them (`perf record`).
    let ticks = std::env::var("SCALE_STEADY_TICKS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(opts.repeats.max(1));
    // The process's CPU time over the later ticks (the relay is another
    // process), and each tick's wall time for the median.
    let cpu_before = mem::cpu_ticks();
    let mut times = Vec::with_capacity(ticks);
    for _ in 0..ticks {
        let started = Instant::now();
        let tick = daemon.tick(&config, &stop).await;
        let time = started.elapsed();
        check_nothing_to_do(label, &tick)?;
        times.push(time);
    }
    let tick_cpu = cpu_before
        .zip(mem::cpu_ticks())
        .map(|(before, after)| (after - before) as f64 * 10.0 / ticks.max(1) as f64);
    times.sort();
    let best = times.first().copied().unwrap_or(Duration::MAX);
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let mut row = Row::new(
        label,
        "daemon: later tick, nothing to do (its memory)",
        n,
        best,
        mib(mem::peak_kb()),
        format!(
            "store unchanged: not parsed; every event text already proven: not parsed again; \
             of {ticks} ticks: median {:.0} ms, mean CPU of the tool {}",
            median.as_secs_f64() * 1000.0,
            tick_cpu.map_or("?".to_owned(), |cpu| format!("{cpu:.0} ms"))
        ),
    );
    // What the relay alone takes to serve this world to a batched reader
    // that does nothing with the events.
    let authors: Vec<nostr::PublicKey> = agents.iter().map(|a| a.keys.public_key()).collect();
    // nostr-rs-relay loses a subscription now and then under load (README,
    // Performance): such a read is not counted, and up to three are
    // allowed; a floor no read could measure is a note, not the end of the
    // run (the rows measured so far would be lost with it).
    let mut floor = Duration::MAX;
    let (mut measured, mut lost) = (0, 0);
    while measured < opts.repeats.max(1) && lost < 3 {
        match ws::batched_raw(
            url,
            &authors,
            reprofile::net::relay::MAX_AUTHORS_PER_FILTER,
            16,
            ws::BatchedCheck::Nothing,
            Duration::from_secs(60),
        )
        .await
        {
            Ok((received, time)) => {
                if received != n {
                    bail!("{label}: the steady floor read {received} events of {n}");
                }
                floor = floor.min(time);
                measured += 1;
            }
            Err(error) if format!("{error}").contains("no EOSE") => {
                log(
                    opts,
                    format!("{label}: a floor read lost a subscription: not counted"),
                );
                lost += 1;
            }
            Err(error) => return Err(error),
        }
    }
    if measured == 0 {
        report.notes.push(format!(
            "{label}: no floor for the tick: each of {lost} reads lost a subscription"
        ));
    } else {
        report.push(Row::new(
            label,
            "floor for the tick: batched raw ws, events only counted",
            n,
            floor,
            None,
            format!(
                "the in-sync world; no store, no parse, no plan{}",
                if lost > 0 {
                    format!("; {lost} read(s) lost a subscription, not counted")
                } else {
                    String::new()
                }
            ),
        ));
    }
    // The per-agent raw read of this same world (sampled, scaled to n).
    let sample = opts.baseline_sample.clamp(1, n);
    let mut per_agent_here = Duration::MAX;
    for _ in 0..opts.repeats.min(2) {
        let (counts, time) =
            ws::per_agent_raw(url, &authors[..sample], Duration::from_secs(60)).await?;
        if counts.found != sample {
            bail!(
                "{label}: the per-agent read found {} of {sample}",
                counts.found
            );
        }
        per_agent_here = per_agent_here.min(time);
    }
    let per_agent_here = per_agent_here.mul_f64(n as f64 / sample as f64);
    report.push(Row::new(
        label,
        "per-agent raw ws, the in-sync world",
        n,
        per_agent_here,
        None,
        if sample < n {
            format!(
                "measured on {sample}, scaled x{:.1}",
                n as f64 / sample as f64
            )
        } else {
            String::new()
        },
    ));
    let per_agent = Some(per_agent_here).or(per_agent);
    if let Some(per_agent) = per_agent {
        row.ratio = Some((
            per_agent.as_secs_f64() / best.as_secs_f64(),
            "tick faster than per-agent".to_string(),
        ));
    }
    report.push(row);
    Ok(())
}

/// A tick that read everything and found nothing to do.
fn check_nothing_to_do(label: &str, tick: &TickReport) -> anyhow::Result<()> {
    if let Some(error) = &tick.error {
        bail!("{label}: a daemon tick failed: {error:#}");
    }
    let Some(doc) = &tick.plan else {
        bail!("{label}: a daemon tick made no plan");
    };
    if !doc.plan.complete || !doc.plan.actions.is_empty() || !doc.plan.skipped.is_empty() {
        bail!(
            "{label}: a steady tick found work: complete={} actions={} skipped={}",
            doc.plan.complete,
            doc.plan.actions.len(),
            doc.plan.skipped.len()
        );
    }
    Ok(())
}
