//! `reprofile run`: the binary as a daemon on a per-second cron, `run --once`,
//! metrics, retention, and start-up errors.
//!
//! Real cron ticks wait on the wall clock; each wait polls for an observable
//! result (a plan file, a log line) and is bounded by a deadline.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reprofile::core::apply::Outcome;
use serde_json::Value;

use crate::support::{FakeBehaviour, FakeRelay};
use crate::world::{assert_incomplete_for_the_down_relay, stderr, stdout, World, DOWN_RELAY};

/// Starts `reprofile run` with JSON logs; its stderr lines arrive on the channel.
fn spawn_daemon(world: &World) -> (Child, mpsc::Receiver<Value>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reprofile"))
        .args([
            "--config",
            world.config_path.to_str().unwrap(),
            "--log-format",
            "json",
            "run",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                if tx.send(value).is_err() {
                    break;
                }
            }
        }
    });
    (child, rx)
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or("")
}

/// Collects log lines until `done` says so or the deadline passes.
fn collect_until(
    rx: &mpsc::Receiver<Value>,
    limit: Duration,
    mut done: impl FnMut(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    let mut lines = Vec::new();
    while Instant::now() < deadline && !done(&lines) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(line);
        }
    }
    lines
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon did not exit within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn count_finished(lines: &[Value]) -> usize {
    lines
        .iter()
        .filter(|l| message(l) == "tick finished")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_ticks_every_second_plan_mode_changes_nothing_and_sigterm_exits_0() {
    let world = World::start().await;
    world.append_config("[schedule]\ncron = \"* * * * * *\"\nmode = \"plan\"");
    let store_before = std::fs::read(world.store_path()).unwrap();

    let (mut child, rx) = tokio::task::block_in_place(|| spawn_daemon(&world));
    let lines = tokio::task::block_in_place(|| {
        collect_until(&rx, Duration::from_secs(15), |l| count_finished(l) >= 2)
    });
    assert!(count_finished(&lines) >= 2, "two ticks: {lines:#?}");
    // Each tick writes a plan (ticks fire on distinct seconds, so the names differ).
    assert!(
        world.plan_files().len() >= 2,
        "each tick writes a plan: {:?}",
        world.plan_files()
    );

    sigterm(&child);
    let status = tokio::task::block_in_place(|| wait_exit(&mut child, Duration::from_secs(5)));
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        std::fs::read(world.store_path()).unwrap(),
        store_before,
        "plan mode never writes the store"
    );
    assert!(
        world.journal_files().is_empty(),
        "plan mode applies nothing"
    );
    // The plans are the same world's: identical digests, one name per second.
    let summaries: Vec<&Value> = lines
        .iter()
        .filter(|l| message(l) == "tick finished")
        .collect();
    assert!(summaries
        .iter()
        .all(|l| l["fields"]["planned"] == 12 && l["fields"]["applied"] == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_apply_mode_stops_between_actions_and_the_event_in_flight_gets_its_ok() {
    // Four legacy agents, each needing a backfill and a republish, on a
    // relay that takes 1.5 s to answer each EVENT; one event in flight at a
    // time. SIGTERM comes while the first event awaits its OK.
    let (world, slow) = World::on_a_slow_relay(4).await;
    let metrics = world.dir.path().join("reprofile.prom");
    world.append_config(&format!(
            "[schedule]\ncron = \"* * * * * *\"\nmode = \"apply\"\nshutdown_grace_secs = 10\nmetrics_file = \"{}\"",
            metrics.display()
        ),
    );

    let (mut child, rx) = tokio::task::block_in_place(|| spawn_daemon(&world));
    slow.wait_for_an_event(Duration::from_secs(20)).await;
    sigterm(&child);
    let status = tokio::task::block_in_place(|| wait_exit(&mut child, Duration::from_secs(10)));
    assert_eq!(status.code(), Some(0));
    let lines = tokio::task::block_in_place(|| {
        collect_until(&rx, Duration::from_secs(5), |l| {
            l.iter().any(|x| message(x) == "tick finished")
        })
    });

    // Nothing was sent after the signal: the relay has the one event.
    let sent = slow.event_ids();
    assert_eq!(sent.len(), 1, "{sent:?}");
    // The journal: the backfills (one store write, before the signal) and
    // the republish whose event was in flight, confirmed by reading back.
    let journal = reprofile::store::journal::read(&world.journal_files()[0]).unwrap();
    let backfills: Vec<_> = journal
        .iter()
        .filter(|e| e.kind == "backfill_avatar")
        .collect();
    assert_eq!(backfills.len(), 4);
    assert!(backfills.iter().all(|e| e.outcome == "applied"));
    let republishes: Vec<_> = journal
        .iter()
        .filter(|e| e.kind == "republish_profile")
        .collect();
    assert_eq!(republishes.len(), 1, "{republishes:?}");
    assert_eq!(republishes[0].outcome, "applied");
    assert_eq!(republishes[0].event_id.as_deref(), Some(sent[0].as_str()));
    // The tick says what was left, and is not a success.
    let finished = lines
        .iter()
        .find(|l| message(l) == "tick finished")
        .expect("the tick's summary line");
    assert_eq!(finished["fields"]["applied"], 5);
    assert_eq!(finished["fields"]["not_begun"], 3);
    assert_eq!(metric(&metrics, "reprofile_last_tick_success", &[]), 0.0);
    assert_eq!(
        metric(
            &metrics,
            "reprofile_actions",
            &[("type", "republish_profile"), ("outcome", "applied")]
        ),
        1.0
    );
    // The lock was released.
    let store = std::fs::canonicalize(world.store_path()).unwrap();
    reprofile::store::lock::ApplyLock::acquire(&reprofile::store::lock::lock_path(&store), "test")
        .expect("the daemon released the store's lock");
}

/// A second SIGTERM while the tick waits for an OK that never comes ends
/// the daemon at once, saying so (without it, the daemon waits for the OK or
/// the grace, both ten minutes here); exit 0, as on any stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_the_daemon_at_once() {
    let (world, relay) = World::on_a_fake_relay(2, FakeBehaviour::NeverOk).await;
    let config = std::fs::read_to_string(&world.config_path)
        .unwrap()
        .replace("publish_timeout_secs = 5", "publish_timeout_secs = 600");
    std::fs::write(&world.config_path, config).unwrap();
    world.append_config(
        "[schedule]\ncron = \"* * * * * *\"\nmode = \"apply\"\nshutdown_grace_secs = 600\n[safety]\nmax_republish_fraction = 1.0",
    );

    let (mut child, rx) = tokio::task::block_in_place(|| spawn_daemon(&world));
    relay.wait_for_an_event(Duration::from_secs(20)).await;
    sigterm(&child);
    let mut lines = tokio::task::block_in_place(|| {
        collect_until(&rx, Duration::from_secs(10), |l| {
            l.iter().any(|x| message(x).starts_with("stopping: "))
        })
    });
    sigterm(&child);
    let status = tokio::task::block_in_place(|| wait_exit(&mut child, Duration::from_secs(20)));
    assert_eq!(status.code(), Some(0));
    lines.extend(tokio::task::block_in_place(|| {
        collect_until(&rx, Duration::from_secs(5), |l| {
            l.iter().any(|x| message(x).starts_with("stopped at once"))
        })
    }));
    let stopped = lines
        .iter()
        .find(|l| message(l).starts_with("stopped at once by a second signal"))
        .unwrap_or_else(|| panic!("said: {lines:?}"));
    assert_eq!(stopped["level"], "WARN");
    assert_eq!(relay.event_ids().len(), 1, "nothing sent after the signal");
}

/// `run --once` as a container's entrypoint (PID 1 of its own PID
/// namespace, as `unshare --pid --fork` makes it): SIGTERM stops it between
/// actions as it stops the daemon; the event in flight gets its OK and is
/// journaled, no other event is sent, and it exits 143 (stopped by SIGTERM;
/// a stopped tick is not a success) within the grace. Before: PID 1 with no handler ignored
/// SIGTERM, and the tick went on sending every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_a_pid_1_run_once_stops_it_between_actions() {
    let (world, slow) = World::on_a_slow_relay(4).await;
    world.append_config("[schedule]\nmode = \"apply\"\nshutdown_grace_secs = 10");

    let mut unshare = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            env!("CARGO_BIN_EXE_reprofile"),
            "--config",
        ])
        .arg(&world.config_path)
        .args(["run", "--once"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare runs (util-linux)");
    slow.wait_for_an_event(Duration::from_secs(20)).await;
    // reprofile is unshare's child: PID 1 in its namespace.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id())).unwrap();
    let pid = children
        .split_whitespace()
        .next()
        .expect("the forked child");
    let status = Command::new("kill").args(["-TERM", pid]).status().unwrap();
    assert!(status.success());
    let status = tokio::task::block_in_place(|| wait_exit(&mut unshare, Duration::from_secs(10)));
    assert_eq!(
        status.code(),
        Some(143),
        "stopped by SIGTERM, as a shell reports it"
    );

    let sent = slow.event_ids();
    assert_eq!(sent.len(), 1, "nothing sent after the signal: {sent:?}");
    let journal = reprofile::store::journal::read(&world.journal_files()[0]).unwrap();
    let republishes: Vec<_> = journal
        .iter()
        .filter(|e| e.kind == "republish_profile")
        .collect();
    assert_eq!(republishes.len(), 1, "{republishes:?}");
    assert_eq!(republishes[0].outcome, "applied");
    assert_eq!(republishes[0].event_id.as_deref(), Some(sent[0].as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_longer_than_the_interval_skips_the_next_tick_instead_of_overlapping() {
    let world = World::start().await;
    // The relay never sends EOSE: each tick waits its 2 s query timeout.
    let silent = FakeRelay::start(FakeBehaviour::Silent).await;
    let text = std::fs::read_to_string(&world.config_path)
        .unwrap()
        .replace(&world.relay_url, silent.url())
        .replace("query_timeout_secs = 5", "query_timeout_secs = 2");
    std::fs::write(&world.config_path, text).unwrap();
    world.append_config("[schedule]\ncron = \"* * * * * *\"\nshutdown_grace_secs = 10");

    let (mut child, rx) = tokio::task::block_in_place(|| spawn_daemon(&world));
    let lines = tokio::task::block_in_place(|| {
        collect_until(&rx, Duration::from_secs(20), |l| {
            count_finished(l) >= 2 && l.iter().any(|x| message(x).starts_with("tick skipped"))
        })
    });
    sigterm(&child);
    let status = tokio::task::block_in_place(|| wait_exit(&mut child, Duration::from_secs(10)));
    assert_eq!(status.code(), Some(0));

    assert!(
        lines.iter().any(|l| message(l).starts_with("tick skipped")),
        "{lines:#?}"
    );
    // Never two ticks at once: starts and finishes alternate.
    let mut running = false;
    for line in &lines {
        match message(line) {
            "tick started" => {
                assert!(!running, "a tick started while another was running");
                running = true;
            }
            m if m == "tick finished" || m.starts_with("tick failed") => running = false,
            _ => {}
        }
    }
}

/// The metrics file of the last tick: one value by name and labels.
fn metric(path: &std::path::Path, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = std::fs::read_to_string(path).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .unwrap_or_else(|| panic!("{name} {labels:?} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_in_apply_mode_converges_and_metrics_match_the_journal() {
    let world = World::start().await;
    let metrics = world.dir.path().join("reprofile.prom");
    world.append_config(&format!(
            "[safety]\nmax_republish_fraction = 1.0\n\n[schedule]\nmode = \"apply\"\nmetrics_file = \"{}\"",
            metrics.display()
        ),
    );
    // The fixture's down relay makes the tick incomplete: it applies what
    // it can, exits 1, names the relay, and is not a success.
    let first = world.cli(&["run", "--once"]).await;
    assert_incomplete_for_the_down_relay(&first);
    assert!(
        stderr(&first).contains("tick finished"),
        "one summary line per tick"
    );
    let value = |name: &str, labels: &[(&str, &str)]| metric(&metrics, name, labels);
    let journal = reprofile::store::journal::read(&world.journal_files()[0]).unwrap();
    for kind in ["backfill_avatar", "republish_profile"] {
        for outcome in Outcome::ALL {
            let in_journal = journal
                .iter()
                .filter(|e| e.kind == kind && e.outcome == outcome.as_str())
                .count();
            assert_eq!(
                value(
                    "reprofile_actions",
                    &[("type", kind), ("outcome", outcome.as_str())]
                ),
                in_journal as f64
            );
        }
    }
    assert_eq!(
        value(
            "reprofile_actions",
            &[("type", "republish_profile"), ("outcome", "applied")]
        ),
        7.0
    );
    // The plan's republishes by relay: all seven to the live relay.
    assert_eq!(
        value(
            "reprofile_planned_republishes",
            &[("relay", world.relay_url.trim_end_matches('/'))]
        ),
        7.0
    );
    assert_eq!(
        value(
            "reprofile_skipped_agents",
            &[("reason", "relay_unreachable")]
        ),
        1.0
    );
    assert_eq!(value("reprofile_plan_complete", &[]), 0.0);
    assert_eq!(value("reprofile_last_tick_success", &[]), 0.0);
    assert_eq!(value("reprofile_ticks_failed_total", &[]), 1.0);
    assert_eq!(value("reprofile_last_success_timestamp_seconds", &[]), 0.0);

    let second = world.cli(&["run", "--once"]).await;
    assert_incomplete_for_the_down_relay(&second);
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("reprofile_planned_actions{type=\"republish_profile\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("reprofile_planned_actions{type=\"backfill_avatar\"} 0"),
        "{text}"
    );

    // The down relay pointed at the live one: a complete snapshot, its one
    // agent fixed, and the tick is a success.
    let config = std::fs::read_to_string(&world.config_path).unwrap();
    let live = format!("\"ws://127.0.0.1:7777\" = \"{}\"", world.relay_url);
    std::fs::write(
        &world.config_path,
        config.replace(
            &live,
            &format!("{live}\n\"{DOWN_RELAY}\" = \"{}\"", world.relay_url),
        ),
    )
    .unwrap();
    let third = world.cli(&["run", "--once"]).await;
    assert_eq!(third.status.code(), Some(0), "{}", stderr(&third));
    assert!(!stderr(&third).contains("error:"), "{}", stderr(&third));
    assert_eq!(value("reprofile_plan_complete", &[]), 1.0);
    assert_eq!(value("reprofile_last_tick_success", &[]), 1.0);
    assert!(value("reprofile_last_success_timestamp_seconds", &[]) > 1.7e9);
    assert_eq!(
        value(
            "reprofile_actions",
            &[("type", "republish_profile"), ("outcome", "applied")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_exactly_keep_plans() {
    let world = World::start().await;
    world.append_config("[schedule]\nkeep_plans = 2");
    std::fs::create_dir_all(world.plans_dir()).unwrap();
    for old in [
        "plan-20200101T000000Z-00000000",
        "plan-20200102T000000Z-11111111",
        "migrate-20200103T000000Z-22222222",
    ] {
        std::fs::write(world.plans_dir().join(format!("{old}.json")), "{}").unwrap();
        std::fs::write(world.plans_dir().join(format!("{old}.txt")), "").unwrap();
    }
    let output = world.cli(&["run", "--once"]).await;
    assert_incomplete_for_the_down_relay(&output);
    let plans = world.plan_files();
    let names: Vec<String> = plans
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[0], "migrate-20200103T000000Z-22222222.json");
    assert!(
        names[1].starts_with("plan-2026") || names[1].starts_with("plan-20"),
        "{names:?}"
    );
    assert!(!world
        .plans_dir()
        .join("plan-20200101T000000Z-00000000.txt")
        .exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cron_or_timezone_is_a_clear_start_up_error() {
    let world = World::start().await;
    let good = std::fs::read_to_string(&world.config_path).unwrap();
    for (extra, message) in [
        (
            "[schedule]\ncron = \"*/15 * * * *\"",
            "not a valid cron expression",
        ),
        (
            "[schedule]\ncron = \"0 0 * * * *\"\ntimezone = \"Mars/Olympus\"",
            "not a known IANA timezone",
        ),
    ] {
        std::fs::write(&world.config_path, format!("{good}\n{extra}\n")).unwrap();
        let output = world.cli(&["run"]).await;
        assert_eq!(output.status.code(), Some(1));
        let err = stderr(&output);
        assert!(err.contains(message), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(world.plan_files().is_empty(), "nothing ran");
    }
    std::fs::write(&world.config_path, &good).unwrap();
    let output = world.cli(&["run"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("[schedule] cron is not set"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).is_empty());
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    let mut files = std::collections::BTreeSet::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().map(Result::unwrap) {
            if entry.file_type().unwrap().is_dir() {
                folders.push(entry.path());
            } else {
                files.insert(entry.path());
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_and_plan_keep_no_cache_on_disk_only_their_plans() {
    // The daemon's memory of earlier ticks lives in its process only; the
    // one-shot commands have none, and write nothing a later run could read
    // as a parse or a key check already made.
    let world = World::start().await;
    let before = files_under(world.dir.path());
    let plan = world.cli(&["plan"]).await;
    assert_incomplete_for_the_down_relay(&plan);
    let once = world.cli(&["run", "--once"]).await;
    assert_incomplete_for_the_down_relay(&once);
    let written: Vec<_> = files_under(world.dir.path())
        .difference(&before)
        .cloned()
        .collect();
    // (Both may write the same file: a plan's name is its second and digest.)
    assert!(!written.is_empty(), "each writes its plan");
    for file in &written {
        let name = file.file_name().unwrap().to_string_lossy();
        assert_eq!(
            file.parent(),
            Some(world.plans_dir().as_path()),
            "{written:?}"
        );
        assert!(
            name.starts_with("plan-") && (name.ends_with(".json") || name.ends_with(".txt")),
            "{written:?}"
        );
    }
}

/// One tick: `run --once`'s, or the daemon's when there is one.
async fn one_tick(
    daemon: &mut Option<reprofile::engine::orchestrate::Daemon>,
    config: &reprofile::config::Config,
) -> reprofile::engine::orchestrate::TickReport {
    match daemon {
        Some(daemon) => {
            daemon
                .tick(config, &reprofile::engine::orchestrate::Stop::default())
                .await
        }
        None => {
            reprofile::engine::orchestrate::tick_once(
                config,
                &reprofile::engine::orchestrate::Stop::default(),
            )
            .await
        }
    }
}

/// A tick that applies takes, for its republishes' preconditions, the
/// records its plan was just made from while the store still holds their
/// bytes, and none of its reads checks a signature twice: the precondition
/// read of an event the snapshot proved, and the read-back of the event the
/// tick signed, are vouched for. `run --once` as much as the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_applies_from_its_plans_parse_and_checks_no_signature_twice() {
    for daemon in [None, Some(reprofile::engine::orchestrate::Daemon::new())] {
        let mut daemon = daemon;
        let world = World::start().await;
        world.append_config(
            "[safety]\nmax_republish_fraction = 1.0\n\n[schedule]\nmode = \"apply\"",
        );
        let config = world.config();
        let first = one_tick(&mut daemon, &config).await;
        let applied = first.apply.as_ref().expect("the first tick applies");
        assert!(
            applied
                .results
                .iter()
                .any(|r| r.kind == "backfill_avatar" && r.outcome == Outcome::Applied),
            "{applied:#?}"
        );
        assert!(
            !applied.records_from_plan,
            "its backfills rewrote the store, so the store was parsed again"
        );
        // One agent renamed in the store: one republish, no backfill.
        let renamed = applied
            .results
            .iter()
            .find(|r| r.kind == "republish_profile" && r.outcome == Outcome::Applied)
            .expect("a republish applied");
        let text = std::fs::read_to_string(world.store_path()).unwrap();
        let name = format!("\"name\": \"{}\"", renamed.name);
        assert_eq!(text.matches(&name).count(), 1, "{name}");
        std::fs::write(
            world.store_path(),
            text.replace(&name, &format!("\"name\": \"{} again\"", renamed.name)),
        )
        .unwrap();

        let second = one_tick(&mut daemon, &config).await;
        let plan = &second.plan.as_ref().expect("a plan").plan;
        let republishes: Vec<_> = plan
            .actions
            .iter()
            .filter_map(|a| a.as_republish())
            .collect();
        assert_eq!(plan.actions.len(), 1, "{plan:#?}");
        assert_eq!(republishes[0].agent, renamed.agent);
        assert!(
            republishes[0].before.is_some(),
            "its profile is on the relay"
        );
        let applied = second.apply.as_ref().expect("the second tick applies");
        assert_eq!(applied.count(Outcome::Applied), 1, "{applied:#?}");
        assert!(applied.records_from_plan, "daemon: {}", daemon.is_some());
        assert_eq!(
            applied.signatures_vouched,
            2,
            "the precondition read and the read-back (daemon: {})",
            daemon.is_some()
        );
    }
}

/// A metrics file in a folder that does not exist: `validate` says run
/// creates it, and `run --once` does, at start, and writes the metrics
/// (before: a warning each tick, and nothing for monitoring).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_file_in_a_missing_folder_gets_its_folder_created() {
    let world = World::start().await;
    let metrics = world.dir.path().join("not/yet/there/reprofile.prom");
    world.append_config(&format!(
        "[schedule]\nmetrics_file = \"{}\"",
        metrics.display()
    ));
    let validate = world.cli(&["validate"]).await;
    assert!(
        stdout(&validate).contains("does not exist yet; run and run --once create it at start"),
        "{}",
        stdout(&validate)
    );
    let tick = world.cli(&["run", "--once"]).await;
    assert_incomplete_for_the_down_relay(&tick);
    assert!(
        !stderr(&tick).contains("cannot write the metrics file"),
        "{}",
        stderr(&tick)
    );
    assert_eq!(metric(&metrics, "reprofile_plan_complete", &[]), 0.0);
}
