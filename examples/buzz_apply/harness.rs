//! The Buzz apply benchmark: reprofile's apply of N republishes on the real
//! Buzz relay in closed mode, against a raw websocket client doing the same
//! authenticated per-agent sessions.
//!
//! Every timed run gets a relay of its own (its own database and Redis,
//! started by `BuzzRelay::start`) and a world of its own: N agents with
//! fresh keys, each with its owner's NIP-OA tag, `avatar_url` set, and no
//! kind:0 on the relay, so every agent needs a republish and every run does
//! the whole work. Before the clock starts, one extra agent of the same owner
//! reads and publishes once, so that no contender pays for the relay's first
//! database connections.
//!
//! The contenders, each at every concurrency asked for:
//!
//! - **apply**: `reprofile::engine::apply::apply` of a plan made (untimed) from a
//!   store in the app's format: its precondition read, signing, the
//!   per-agent signed-in publishes (`[relay] max_author_sessions` at once),
//!   the read-back, the journal.
//! - **publish_all**: `reprofile::net::publish::publish_all` with
//!   `sign_in_as_author` on N pre-signed events: the publish phase alone.
//! - **raw**: tokio-tungstenite, TCP_NODELAY. A read like apply's (one
//!   connection signed in as an agent with its tag, REQs of 100 authors,
//!   every event's signature checked), signing the N events, the sessions
//!   (for each agent: connect, wait for the AUTH challenge, AUTH with its
//!   NIP-OA tag, wait for OK, EVENT, wait for OK, close; the same number
//!   at once), and the read-back (each author's newest event must be ours).
//!   Its sessions phase, timed alone, is what `publish_all` is compared with.
//!
//! Besides wall time, each run records this process's CPU time (user +
//! system, all threads): the relay runs in other processes, so that is the
//! client's own cost, whatever the relay's speed.
//!
//! It never fails on a slow figure (benchmarks are not timed tests); it
//! fails when a contender did not do the work (a republish not applied, an
//! event not accepted, a read-back that does not show it).
//!
//! It uses the Buzz harness of the integration tests through `super::buzz`
//! (the example and the test binary each declare that module beside this
//! one), and must not talk to anything but 127.0.0.1.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, PublicKey, RelayMessage, Tag, Timestamp};
use reprofile::config;
use reprofile::core::apply::Outcome;
use reprofile::engine::apply::ApplyOptions;
use reprofile::engine::orchestrate::{make_plan, now_secs};
use reprofile::net::publish::{publish_all, Delivery, PublishItem, PublishOptions};
use reprofile::protocol::nip42::Identity;
use tokio_tungstenite::tungstenite::Message;

use super::buzz::{auth_event, buzz_store, generate_agents, BuzzMode, BuzzRelay, StoreAgent};

/// How long the raw client waits for any one answer.
const RAW_TIMEOUT: Duration = Duration::from_secs(60);

/// Authors per REQ filter, as reprofile asks.
const AUTHORS_PER_FILTER: usize = 100;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Agents per world (each needs a republish).
    pub agents: usize,
    /// Sessions open at once, one run set per value.
    pub concurrencies: Vec<usize>,
    /// Timed runs of each contender at each concurrency.
    pub repeats: usize,
    /// Who runs (empty: every contender).
    pub contenders: Vec<Contender>,
    /// Progress lines on stderr.
    pub verbose: bool,
}

/// Who is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Contender {
    /// reprofile's `apply`, end to end.
    Apply,
    /// reprofile's `publish_all`, signed in as each author.
    PublishAll,
    /// The raw client: read, sign, sessions, read back.
    Raw,
}

impl Contender {
    /// Every contender, in the first round's order.
    pub const ALL: [Contender; 3] = [Contender::Apply, Contender::PublishAll, Contender::Raw];
}

/// One timed run.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Who ran.
    pub contender: Contender,
    /// Sessions at once.
    pub concurrency: usize,
    /// The whole timed span.
    pub total: Duration,
    /// This process's CPU time (user + system) over that span.
    pub cpu: Duration,
    /// The raw client's phases: read, sign, sessions, read-back.
    pub phases: Option<[Duration; 4]>,
    /// Republishes done (applied, accepted, or confirmed by the read-back).
    pub done: usize,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Agents per world.
    pub agents: usize,
    /// Every timed run, in the order run.
    pub samples: Vec<Sample>,
}

/// Min and median of some durations.
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

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Line {
    /// Sessions at once.
    pub concurrency: usize,
    /// What was timed.
    pub what: String,
    /// Runs behind the figure.
    pub runs: usize,
    /// Wall time.
    pub wall: Stats,
    /// This process's CPU time.
    pub cpu: Stats,
    /// Ratio of medians (and of mins) to the line it is compared with.
    pub ratio: Option<(f64, f64)>,
}

impl Report {
    fn pick(&self, contender: Contender, concurrency: usize) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.contender == contender && s.concurrency == concurrency)
            .collect()
    }

    /// Wall and CPU stats of `contender` at `concurrency`, over the whole
    /// span, or over the raw client's phase `phase`.
    fn stats_of(
        &self,
        contender: Contender,
        concurrency: usize,
        phase: Option<usize>,
    ) -> Option<(usize, Stats, Stats)> {
        let samples = self.pick(contender, concurrency);
        let wall = samples
            .iter()
            .map(|s| match phase {
                Some(p) => s.phases.map_or(s.total, |phases| phases[p]),
                None => s.total,
            })
            .collect();
        let cpu = samples.iter().map(|s| s.cpu).collect();
        Some((samples.len(), stats(wall)?, stats(cpu)?))
    }

    /// The table's lines: per concurrency, apply against the raw client's
    /// whole run, then `publish_all` against the raw sessions phase, then
    /// the raw client's phases.
    pub fn lines(&self) -> Vec<Line> {
        let mut concurrencies: Vec<usize> = self.samples.iter().map(|s| s.concurrency).collect();
        concurrencies.sort_unstable();
        concurrencies.dedup();
        let n = self.agents;
        let mut lines = Vec::new();
        let ratio = |a: Stats, b: Stats| {
            (
                a.median.as_secs_f64() / b.median.as_secs_f64(),
                a.min.as_secs_f64() / b.min.as_secs_f64(),
            )
        };
        for c in concurrencies {
            let raw = self.stats_of(Contender::Raw, c, None);
            let raw_sessions = self.stats_of(Contender::Raw, c, Some(2));
            if let Some((runs, wall, cpu)) = self.stats_of(Contender::Apply, c, None) {
                lines.push(Line {
                    concurrency: c,
                    what: format!("reprofile apply (read, sign, {n} sessions, read back)"),
                    runs,
                    wall,
                    cpu,
                    ratio: raw.map(|(_, raw_wall, _)| ratio(wall, raw_wall)),
                });
            }
            if let Some((runs, wall, cpu)) = raw {
                lines.push(Line {
                    concurrency: c,
                    what: format!("raw client, the same (read, sign, {n} sessions, read back)"),
                    runs,
                    wall,
                    cpu,
                    ratio: None,
                });
            }
            if let Some((runs, wall, cpu)) = self.stats_of(Contender::PublishAll, c, None) {
                lines.push(Line {
                    concurrency: c,
                    what: format!("reprofile publish_all ({n} sessions, pre-signed)"),
                    runs,
                    wall,
                    cpu,
                    ratio: raw_sessions.map(|(_, raw_wall, _)| ratio(wall, raw_wall)),
                });
            }
            if let Some((runs, wall, _)) = raw_sessions {
                // The phases carry no CPU figure of their own.
                let none = Stats {
                    min: Duration::ZERO,
                    median: Duration::ZERO,
                };
                lines.push(Line {
                    concurrency: c,
                    what: format!("raw client, {n} sessions alone (pre-signed)"),
                    runs,
                    wall,
                    cpu: none,
                    ratio: None,
                });
                for (phase, what) in [(0, "read"), (1, "sign"), (3, "read back")] {
                    if let Some((runs, wall, _)) = self.stats_of(Contender::Raw, c, Some(phase)) {
                        lines.push(Line {
                            concurrency: c,
                            what: format!("  raw client phase: {what}"),
                            runs,
                            wall,
                            cpu: none,
                            ratio: None,
                        });
                    }
                }
            }
        }
        lines
    }

    /// The table, as printed.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>5}  {:<62} {:>4} {:>10} {:>10} {:>10}  {:>13} {:>10}",
            "conc", "what", "runs", "min", "median", "CPU med", "ratio (med)", "ratio (min)"
        );
        let _ = writeln!(out, "{}", "-".repeat(130));
        for line in self.lines() {
            let cpu = if line.cpu.median.is_zero() {
                "-".to_string()
            } else {
                ms(line.cpu.median)
            };
            let (ratio_med, ratio_min) = match line.ratio {
                Some((med, min)) => (format!("{med:.2}x"), format!("{min:.2}x")),
                None => (String::new(), String::new()),
            };
            let _ = writeln!(
                out,
                "{:>5}  {:<62} {:>4} {:>10} {:>10} {:>10}  {:>13} {:>10}",
                line.concurrency,
                line.what,
                line.runs,
                ms(line.wall.min),
                ms(line.wall.median),
                cpu,
                ratio_med,
                ratio_min
            );
        }
        let _ = writeln!(
            out,
            "ratio: reprofile apply / raw client doing the same work, and reprofile \
             publish_all / the raw client's sessions alone"
        );
        out
    }
}

/// Milliseconds, one decimal.
fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn log(opts: &Options, message: impl AsRef<str>) {
    if opts.verbose {
        eprintln!("[buzz-apply] {}", message.as_ref());
    }
}

/// This process's CPU time so far (user + system, every thread).
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs every contender `opts.repeats` times at every concurrency, each run
/// on a relay and a world of its own; the order of the contenders rotates
/// from one round to the next.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let mut report = Report {
        agents: opts.agents,
        samples: Vec::new(),
    };
    let work = tempfile::Builder::new()
        .prefix("reprofile-buzz-apply-")
        .tempdir()?;
    let contenders: &[Contender] = if opts.contenders.is_empty() {
        &Contender::ALL
    } else {
        &opts.contenders
    };
    let mut round = 0;
    for repeat in 0..opts.repeats {
        for &concurrency in &opts.concurrencies {
            for k in 0..contenders.len() {
                let contender = contenders[(k + round) % contenders.len()];
                let dir = work.path().join(format!("{round}-{k}"));
                let sample = one_run(opts, contender, concurrency, &dir)
                    .await
                    .with_context(|| {
                        format!(
                            "{contender:?} at concurrency {concurrency}, run {}",
                            repeat + 1
                        )
                    })?;
                log(
                    opts,
                    format!(
                        "run {} {contender:?} concurrency {concurrency}: {} (CPU {})",
                        repeat + 1,
                        ms(sample.total),
                        ms(sample.cpu)
                    ),
                );
                report.samples.push(sample);
            }
            round += 1;
        }
    }
    Ok(report)
}

/// The world of one run: `n` agents of `owner`, each with an avatar and no
/// profile on the relay.
fn world(owner: &Keys, n: usize) -> Vec<StoreAgent> {
    generate_agents(owner, n, "")
        .into_iter()
        .map(|agent| StoreAgent {
            avatar_url: Some(format!("https://img.example/{}.png", agent.name)),
            ..agent
        })
        .collect()
}

/// The kind:0 the app (and reprofile's plan) publishes for `agent`: display
/// name and picture, the record's NIP-OA tag, dated `now`.
fn profile_event(agent: &StoreAgent, now: u64) -> anyhow::Result<Event> {
    let content = serde_json::json!({
        "display_name": agent.name,
        "picture": agent.avatar_url,
    })
    .to_string();
    let mut builder =
        EventBuilder::new(Kind::Metadata, content).custom_created_at(Timestamp::from_secs(now));
    if let Some(tag) = &agent.auth_tag {
        builder = builder.tag(Tag::parse(tag.iter().cloned())?);
    }
    Ok(builder.sign_with_keys(&agent.keys)?)
}

async fn one_run(
    opts: &Options,
    contender: Contender,
    concurrency: usize,
    dir: &Path,
) -> anyhow::Result<Sample> {
    let n = opts.agents;
    let owner = Keys::generate();
    let relay = BuzzRelay::start(BuzzMode::Closed {
        owner: owner.clone(),
    })
    .await;
    let url = relay.url();
    let agents = world(&owner, n);
    let warm = world(&owner, 1).remove(0);
    warm_up(&url, &warm).await.context("warming the relay up")?;

    let sample = match contender {
        Contender::Apply => run_apply(&url, &agents, concurrency, dir).await?,
        Contender::PublishAll => run_publish_all(&url, &agents, concurrency).await?,
        Contender::Raw => run_raw(&url, &agents, concurrency).await?,
    };
    if sample.done != n {
        bail!(
            "{contender:?} did {} of {n} republishes; last lines of the relay's log:\n{}",
            sample.done,
            relay
                .log()
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(sample)
}

/// One read and one publish by an agent outside the world.
async fn warm_up(url: &str, agent: &StoreAgent) -> anyhow::Result<()> {
    let found = raw_read(url, agent, &[agent.keys.public_key()]).await?;
    if !found.is_empty() {
        bail!("a fresh relay holds a profile already");
    }
    let event = profile_event(agent, now_secs())?;
    raw_session(url, agent, &event).await
}

async fn run_apply(
    url: &str,
    agents: &[StoreAgent],
    concurrency: usize,
    dir: &Path,
) -> anyhow::Result<Sample> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let store = dir.join("managed-agents.json");
    std::fs::write(&store, buzz_store(url, agents))?;
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o600))?;
    let config_path = dir.join("config.toml");
    std::fs::write(
        &config_path,
        format!(
            "# Written by the Buzz apply benchmark.\n\
             [store]\nagents = \"managed-agents.json\"\n\n\
             [plans]\ndir = \"plans\"\n\n\
             [relay]\nmax_author_sessions = {concurrency}\n\
             query_timeout_secs = 60\npublish_timeout_secs = 60\n"
        ),
    )?;
    let config = config::load(&config_path)?;
    let made = make_plan(&config, &[], None).await?;
    let (doc, plan_path) = (made.doc, made.path);
    let planned = doc.plan.summary().republish;
    if planned != agents.len() || doc.plan.actions.len() != planned {
        bail!(
            "the plan has {planned} republishes and {} actions, expected {} republishes only \
             (skipped: {:?})",
            doc.plan.actions.len(),
            agents.len(),
            doc.plan.skipped.first()
        );
    }
    let cpu = cpu_time();
    let started = Instant::now();
    let report = reprofile::engine::orchestrate::apply_plan(
        &config,
        &doc,
        &plan_path,
        &ApplyOptions::forced(),
    )
    .await?;
    let total = started.elapsed();
    let cpu = cpu_time() - cpu;
    if let Some(failed) = report
        .results
        .iter()
        .find(|r| r.outcome != Outcome::Applied)
    {
        bail!("apply did not apply everything; first: {failed:?}");
    }
    Ok(Sample {
        contender: Contender::Apply,
        concurrency,
        total,
        cpu,
        phases: None,
        done: report.count(Outcome::Applied),
    })
}

async fn run_publish_all(
    url: &str,
    agents: &[StoreAgent],
    concurrency: usize,
) -> anyhow::Result<Sample> {
    let now = now_secs();
    let items = agents
        .iter()
        .map(|agent| {
            Ok(PublishItem {
                event: profile_event(agent, now)?,
                keys: agent.keys.clone(),
                sign_in: Some(Identity {
                    keys: agent.keys.clone(),
                    auth_tag: agent.auth_tag.clone(),
                    relay_tag: url.to_owned(),
                    label: format!("agent {}", agent.name),
                }),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let publish = PublishOptions {
        sign_in_as_author: true,
        max_author_sessions: concurrency,
        publish_timeout: Duration::from_secs(60),
        ..PublishOptions::default()
    };
    let cpu = cpu_time();
    let started = Instant::now();
    let deliveries = publish_all(url, items, &publish).await;
    let total = started.elapsed();
    let cpu = cpu_time() - cpu;
    if let Some(failed) = deliveries.iter().find(|d| **d != Delivery::Accepted) {
        bail!("publish_all: not every event was accepted; first: {failed:?}");
    }
    Ok(Sample {
        contender: Contender::PublishAll,
        concurrency,
        total,
        cpu,
        phases: None,
        done: deliveries.len(),
    })
}

async fn run_raw(url: &str, agents: &[StoreAgent], concurrency: usize) -> anyhow::Result<Sample> {
    let authors: Vec<PublicKey> = agents.iter().map(|a| a.keys.public_key()).collect();
    let reader = &agents[0];
    let cpu = cpu_time();
    let started = Instant::now();

    let before = raw_read(url, reader, &authors).await?;
    if !before.is_empty() {
        bail!(
            "the raw read found {} profiles on a fresh relay",
            before.len()
        );
    }
    let read_done = Instant::now();

    let now = now_secs();
    let events: Vec<Event> = agents
        .iter()
        .map(|agent| profile_event(agent, now))
        .collect::<anyhow::Result<_>>()?;
    let signed = Instant::now();

    raw_sessions(url, agents, &events, concurrency).await?;
    let published = Instant::now();

    let after = raw_read(url, reader, &authors).await?;
    let total = started.elapsed();
    let cpu = cpu_time() - cpu;
    let confirmed = events
        .iter()
        .filter(|event| after.get(&event.pubkey).map(|e| e.id) == Some(event.id))
        .count();
    Ok(Sample {
        contender: Contender::Raw,
        concurrency,
        total,
        cpu,
        phases: Some([
            read_done - started,
            signed - read_done,
            published - signed,
            started + total - published,
        ]),
        done: confirmed,
    })
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A websocket with TCP_NODELAY (no Nagle stall between two small frames).
async fn ws_connect(url: &str) -> anyhow::Result<Ws> {
    let (ws, _) = tokio::time::timeout(
        RAW_TIMEOUT,
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
        let message = tokio::time::timeout(RAW_TIMEOUT, ws.next())
            .await
            .context("the relay sent nothing in time")?
            .context("the relay closed the connection")??;
        if let Message::Text(text) = message {
            return Ok(RelayMessage::from_json(text.as_str())?);
        }
    }
}

/// Connects, waits for the AUTH challenge, signs in as `agent` with its
/// NIP-OA tag and waits for the relay's OK.
async fn sign_in(url: &str, agent: &StoreAgent) -> anyhow::Result<Ws> {
    let mut ws = ws_connect(url).await?;
    let challenge = loop {
        if let RelayMessage::Auth { challenge } = next_message(&mut ws).await? {
            break challenge.into_owned();
        }
    };
    let auth = auth_event(url, &challenge, &agent.keys, agent.auth_tag.as_deref());
    ws.send(Message::text(format!(r#"["AUTH",{}]"#, auth.as_json())))
        .await?;
    wait_ok(&mut ws, &auth).await.context("AUTH")?;
    Ok(ws)
}

/// Waits for the OK about `event`; an OK false is an error with the
/// relay's message.
async fn wait_ok(ws: &mut Ws, event: &Event) -> anyhow::Result<()> {
    loop {
        if let RelayMessage::Ok {
            event_id,
            status,
            message,
        } = next_message(ws).await?
        {
            if event_id == event.id {
                if !status {
                    bail!("refused: {message}");
                }
                return Ok(());
            }
        }
    }
}

/// One agent's session: sign in as the agent, publish its event, close.
async fn raw_session(url: &str, agent: &StoreAgent, event: &Event) -> anyhow::Result<()> {
    let mut ws = sign_in(url, agent).await?;
    ws.send(Message::text(format!(r#"["EVENT",{}]"#, event.as_json())))
        .await?;
    wait_ok(&mut ws, event).await.context("EVENT")?;
    let _ = ws.close(None).await;
    Ok(())
}

/// Every agent's session, `concurrency` at once (one task each, as
/// reprofile spawns them).
async fn raw_sessions(
    url: &str,
    agents: &[StoreAgent],
    events: &[Event],
    concurrency: usize,
) -> anyhow::Result<()> {
    let work: Arc<Vec<(StoreAgent, Event)>> =
        Arc::new(agents.iter().cloned().zip(events.iter().cloned()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1).min(work.len()) {
        let work = Arc::clone(&work);
        let next = Arc::clone(&next);
        let url = url.to_owned();
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((agent, event)) = work.get(i) else {
                    return anyhow::Ok(());
                };
                raw_session(&url, agent, event)
                    .await
                    .with_context(|| format!("session of {}", agent.name))?;
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined??;
    }
    Ok(())
}

/// Reads the newest kind:0 of each of `authors` over one connection signed
/// in as `reader`: every REQ (100 authors each) at once, each event's
/// signature checked, until every subscription's EOSE.
async fn raw_read(
    url: &str,
    reader: &StoreAgent,
    authors: &[PublicKey],
) -> anyhow::Result<HashMap<PublicKey, Event>> {
    let mut ws = sign_in(url, reader).await?;
    let batches: Vec<&[PublicKey]> = authors.chunks(AUTHORS_PER_FILTER).collect();
    for (i, batch) in batches.iter().enumerate() {
        let hex: Vec<String> = batch
            .iter()
            .map(|a| format!(r#""{}""#, a.to_hex()))
            .collect();
        ws.feed(Message::text(format!(
            r#"["REQ","r{i}",{{"kinds":[0],"authors":[{}]}}]"#,
            hex.join(",")
        )))
        .await?;
    }
    ws.flush().await?;
    let mut newest: HashMap<PublicKey, Event> = HashMap::new();
    let mut ended = 0;
    while ended < batches.len() {
        match next_message(&mut ws).await? {
            RelayMessage::Event { event, .. } => {
                let event = event.into_owned();
                event.verify().context("an event does not verify")?;
                let newer = newest.get(&event.pubkey).is_none_or(|current| {
                    (event.created_at, std::cmp::Reverse(event.id))
                        > (current.created_at, std::cmp::Reverse(current.id))
                });
                if newer {
                    newest.insert(event.pubkey, event);
                }
            }
            RelayMessage::EndOfStoredEvents(_) => ended += 1,
            RelayMessage::Closed { message, .. } => bail!("the relay closed a REQ: {message}"),
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(newest)
}
