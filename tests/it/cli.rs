//! The binary end to end: `plan --detailed-exitcode`, `show`, help, and the
//! one-line errors of bad input (with nothing written).

use serde_json::Value;

use crate::world::{
    assert_incomplete_for_the_down_relay, json_files, regex_escape, stderr, stdout, World,
};

const SUMMARY: &str = "Plan: 7 to republish, 5 to backfill, 1 unchanged, 4 skipped.";
const FIXTURE_NSECS: [&str; 2] = [
    "nsec1gnhhd4j7d8f57qsv2eu9cqv4rx7gwsr6v43p580uzzh4wtqzs7hqxp5262",
    "nsec1efwklj3f4v9pmd37haw03x26h0j7uavg92w84g7wlwtuthyselgq44gmx9",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_plan_detailed_exitcode_is_1_for_an_incomplete_snapshot_and_the_plan_is_still_written()
{
    let world = World::start().await;
    let output = world.cli(&["plan", "--detailed-exitcode"]).await;
    assert_incomplete_for_the_down_relay(&output);
    let text = stdout(&output);
    assert!(text.contains(SUMMARY), "{text}");
    assert!(text.contains("Warning: 1 relay could not be read (ws://127.0.0.1:9)"));

    let plans = world.plan_files();
    assert_eq!(plans.len(), 1);
    let file_text = std::fs::read_to_string(&plans[0]).unwrap();
    let plan: Value = serde_json::from_str(&file_text).unwrap();
    assert_eq!(plan["format_version"], 1);
    assert_eq!(plan["complete"], false);
    assert_eq!(plan["summary"]["republish"], 7);
    assert_eq!(plan["summary"]["backfill"], 5);
    assert_eq!(plan["summary"]["skipped"], 4);
    let store_bytes = std::fs::read(world.store_path()).unwrap();
    assert_eq!(
        plan["store"]["sha256"],
        reprofile::store::agents::sha256_hex(&store_bytes)
    );
    assert_eq!(plan["actions"].as_array().unwrap().len(), 12);
    let rendering = std::fs::read_to_string(plans[0].with_extension("txt")).unwrap();
    assert!(rendering.ends_with(&format!("{SUMMARY}\n")));
    for nsec in FIXTURE_NSECS {
        assert!(!file_text.contains(nsec) && !rendering.contains(nsec) && !text.contains(nsec));
        assert!(!stderr(&output).contains(nsec));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_plan_with_its_only_relay_down_exits_1_with_no_changes_detailed_or_not() {
    // Before: "No changes" and exit 0, which cron read as healthy although
    // nothing was checked.
    let world = World::start().await;
    let unreachable = "4d190eeef5b644e1df6a651121aaca6a83c6ebe67513c41fea31530dc6999090";
    for detailed in [true, false] {
        let mut args = vec!["plan", "--agent", unreachable];
        if detailed {
            args.push("--detailed-exitcode");
        }
        let output = world.cli(&args).await;
        assert_incomplete_for_the_down_relay(&output);
        // Nothing was checked: no "no changes" to report.
        assert!(
            stdout(&output)
                .contains("Nothing was checked: 1 skipped (listed above); the plan is incomplete."),
            "{}",
            stdout(&output)
        );
        assert!(
            !stdout(&output).contains("No changes"),
            "{}",
            stdout(&output)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_plan_detailed_exitcode_of_a_complete_plan_is_0_without_actions_and_2_with() {
    let world = World::start().await;
    // Agents of the live relay only, so each plan is complete.
    for (agent, code, summary) in [
        (
            "ee96457d1818b32114c49e2544fc1f4d5e1b0022d2983d9326714922284450fd",
            0,
            "No changes. Every agent profile matches its record.",
        ),
        (
            "6d43c424cf1376a34c672aa7bef7b559ffd9f56a4cc4ec31b2285696b0810c48",
            2,
            "Plan: 1 to republish, 0 to backfill, 0 unchanged, 0 skipped.",
        ),
    ] {
        let output = world
            .cli(&["plan", "--detailed-exitcode", "--agent", agent])
            .await;
        assert_eq!(output.status.code(), Some(code), "{}", stderr(&output));
        assert!(!stderr(&output).contains("error:"), "{}", stderr(&output));
        assert!(stdout(&output).contains(summary), "{}", stdout(&output));
        let newest = world.plan_files().pop().unwrap();
        let plan: Value = serde_json::from_str(&std::fs::read_to_string(newest).unwrap()).unwrap();
        assert_eq!(plan["complete"], true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_plan_out_writes_there_and_an_incomplete_plan_exits_1_without_detailed_exitcode() {
    let world = World::start().await;
    let out = world.dir.path().join("review/p.json");
    let output = world.cli(&["plan", "--out", out.to_str().unwrap()]).await;
    assert_incomplete_for_the_down_relay(&output);
    assert!(out.exists() && out.with_extension("txt").exists());
    assert!(
        world.plan_files().is_empty(),
        "--out replaces the plans folder"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_show_renders_a_saved_plan_and_its_json() {
    let world = World::start().await;
    let output = world.cli(&["plan"]).await;
    assert_incomplete_for_the_down_relay(&output);
    let plan_path = world.plan_files().pop().unwrap();
    let plan_arg = plan_path.to_str().unwrap();

    let shown = world.cli(&["show", plan_arg]).await;
    assert!(shown.status.success(), "{}", stderr(&shown));
    let saved_rendering = std::fs::read_to_string(plan_path.with_extension("txt")).unwrap();
    assert_eq!(stdout(&shown), saved_rendering);
    assert!(stdout(&output).starts_with(&saved_rendering));

    let json = world.cli(&["show", plan_arg, "--json"]).await;
    assert!(json.status.success());
    assert_eq!(stdout(&json), std::fs::read_to_string(&plan_path).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_plan_rendering_reads_like_terraform() {
    let world = World::start().await;
    let output = world.cli(&["plan"]).await;
    let text = stdout(&output);
    world
        .snapshot_settings()
        .bind(|| insta::assert_snapshot!("fixture_plan", text));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_bad_input_gets_a_one_line_error_and_nothing_is_written() {
    let world = World::start().await;
    let store = world.store_path();
    let good_store = std::fs::read_to_string(&store).unwrap();
    let config = world.config_path.clone();
    let good_config = std::fs::read_to_string(&config).unwrap();

    // (what is broken, how to break it, what the message must say)
    type Break = Box<dyn Fn()>;
    let cases: Vec<(&str, Break, &str)> = vec![
        (
            "malformed store",
            Box::new({
                let store = store.clone();
                let good = good_store.clone();
                move || std::fs::write(&store, good.replacen("\"name\":", "\"name\"", 1)).unwrap()
            }),
            "managed-agents.json:4:",
        ),
        (
            "store not an array",
            Box::new({
                let store = store.clone();
                move || std::fs::write(&store, "{}").unwrap()
            }),
            "must be a JSON array",
        ),
        (
            "unknown config key",
            Box::new({
                let config = config.clone();
                let good = good_config.clone();
                move || std::fs::write(&config, format!("{good}\n[plans2]\nx = 1\n")).unwrap()
            }),
            "unknown field `plans2`",
        ),
        (
            "bad relay URL",
            Box::new({
                let config = config.clone();
                let good = good_config.clone();
                move || {
                    std::fs::write(
                        &config,
                        good.replace("= \"ws://127.0.0.1:", "= \"http://127.0.0.1:"),
                    )
                    .unwrap()
                }
            }),
            "ws:// or wss://",
        ),
        (
            "missing persona file",
            Box::new({
                let config = config.clone();
                let good = good_config.clone();
                move || std::fs::write(&config, good.replace("personas.json", "nope.json")).unwrap()
            }),
            "cannot read the persona store",
        ),
    ];
    for (what, break_it, message) in cases {
        std::fs::write(&store, &good_store).unwrap();
        std::fs::write(&config, &good_config).unwrap();
        break_it();
        let output = world.cli(&["plan", "--detailed-exitcode"]).await;
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
        assert!(err.starts_with("error: "), "{what}: {err}");
        assert!(err.contains(message), "{what}: {err}");
        assert!(stdout(&output).is_empty(), "{what}");
        assert!(
            json_files(&world.plans_dir()).is_empty(),
            "{what}: nothing written"
        );
        for nsec in FIXTURE_NSECS {
            assert!(!err.contains(nsec));
        }
    }
    std::fs::write(&config, &good_config).unwrap();
    let output = world.cli(&["plan", "--agent", "nsec1xyz"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("is not a pubkey"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_show_refuses_edited_foreign_or_newer_plans() {
    let world = World::start().await;
    assert_incomplete_for_the_down_relay(&world.cli(&["plan"]).await);
    let plan_path = world.plan_files().pop().unwrap();
    let text = std::fs::read_to_string(&plan_path).unwrap();
    let cases = [
        (
            text.replace("\"format_version\": 1", "\"format_version\": 2"),
            "format_version 2 is not supported",
        ),
        (
            text.replacen("picture_changed", "name_changed", 1),
            "changed after it was written",
        ),
        (
            text[..text.len() / 2].to_string(),
            "not a reprofile plan file",
        ),
    ];
    for (content, message) in cases {
        let path = world.dir.path().join("edited.json");
        std::fs::write(&path, content).unwrap();
        let output = world.cli(&["show", path.to_str().unwrap()]).await;
        assert_eq!(output.status.code(), Some(1));
        let err = stderr(&output);
        assert!(err.contains(message), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[tokio::test]
async fn cli_help_explains_each_command() {
    let dir = tempfile::tempdir().unwrap();
    let help = crate::world::run_binary(vec!["--help".into()], dir.path().into()).await;
    assert!(help.status.success());
    let text = stdout(&help);
    for command in ["plan", "show", "demo"] {
        assert!(text.contains(command), "{text}");
    }
    let plan_help =
        crate::world::run_binary(vec!["plan".into(), "--help".into()], dir.path().into()).await;
    let text = stdout(&plan_help);
    assert!(
        text.contains("--detailed-exitcode") && text.contains("--agent"),
        "{text}"
    );
    // No config file and no app store under the (fake) home: one line that
    // names the path looked at and what to set.
    let missing = crate::world::run_binary_with_env(
        vec!["plan".into()],
        dir.path().into(),
        vec![("HOME", Some(dir.path().into())), ("XDG_DATA_HOME", None)],
    )
    .await;
    assert_eq!(missing.status.code(), Some(1));
    let looked_at = dir
        .path()
        .join(".local/share/xyz.block.buzz.app/agents/managed-agents.json");
    assert_eq!(
        stderr(&missing),
        format!(
            "error: no Buzz agent store at {} (the release app's data); set [store] agents in config.toml to the app's managed-agents.json\n",
            looked_at.display()
        )
    );
    // An explicit --config that is not there is still an error.
    let explicit = crate::world::run_binary(
        vec!["--config".into(), "config.toml".into(), "plan".into()],
        dir.path().into(),
    )
    .await;
    assert_eq!(explicit.status.code(), Some(1));
    assert!(
        stderr(&explicit).contains("cannot read the config file config.toml"),
        "{}",
        stderr(&explicit)
    );
}

/// Filters that make outputs stable: temp paths, relay ports, times.
fn stable_settings(dir: &std::path::Path) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(&dir.display().to_string()), "[DIR]");
    settings.add_filter(r"ws://127\.0\.0\.1:\d{4,5}", "ws://127.0.0.1:[PORT]");
    settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]");
    settings.add_filter(r"\d{8}T\d{6}Z", "[STAMP]");
    settings.add_filter(r"dated \d+", "dated [NOW]");
    settings.add_filter(r"-[0-9a-f]{8}\.(json|txt|journal\.jsonl)", "-[DIGEST].$1");
    settings
}

#[tokio::test]
async fn cli_help_of_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for command in [
        "",
        "plan",
        "show",
        "apply",
        "migrate",
        "run",
        "schedule",
        "validate",
        "completions",
        "demo",
    ] {
        let mut args: Vec<String> = command.split_whitespace().map(String::from).collect();
        args.push("--help".into());
        let output = crate::world::run_binary(args, dir.path().into()).await;
        assert!(output.status.success(), "{command}");
        let name = if command.is_empty() {
            "help".to_string()
        } else {
            format!("help_{command}")
        };
        insta::assert_snapshot!(name, stdout(&output));
    }
}

#[tokio::test]
async fn cli_demo_plans_applies_and_ends_with_no_changes() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world");
    let output = crate::world::run_binary(
        vec!["demo".into(), "--dir".into(), world.display().to_string()],
        dir.path().into(),
    )
    .await;
    // The example world's relay that is down on purpose leaves its plans
    // incomplete; the demo says so and still exits 0.
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        !stderr(&output).lines().any(|l| l.starts_with("error:")),
        "{}",
        stderr(&output)
    );
    let text = stdout(&output);
    assert!(text.contains("Apply complete: 12 applied, 0 already applied, 0 stale, 0 failed."));
    assert!(text.contains("No changes. 11 unchanged, 4 skipped (listed above)."));
    assert!(
        text.contains(
            "Note: the example world names a relay that is down on purpose (ws://127.0.0.1:9)"
        ),
        "{text}"
    );
    stable_settings(dir.path()).bind(|| insta::assert_snapshot!("demo", text));

    // The same folder again: one line naming the file, and nothing changed.
    let store = world.join("managed-agents.json");
    let before = std::fs::read(&store).unwrap();
    let again = crate::world::run_binary(
        vec!["demo".into(), "--dir".into(), world.display().to_string()],
        dir.path().into(),
    )
    .await;
    assert_eq!(again.status.code(), Some(1));
    let err = stderr(&again);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&store.display().to_string()), "{err}");
    assert!(err.contains("give --dir a new or empty folder"), "{err}");
    assert_eq!(std::fs::read(&store).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_validate_lists_every_problem_and_show_summary_fits_one_screen() {
    let world = World::start().await;
    let output = world.cli(&["validate"]).await;
    assert_eq!(output.status.code(), Some(1), "the fixture has errors");
    let validate = stdout(&output);
    assert!(validate.ends_with("2 errors, 8 warnings.\n"), "{validate}");

    assert_incomplete_for_the_down_relay(&world.cli(&["plan"]).await);
    let plan = world.plan_files().pop().unwrap();
    let output = world
        .cli(&["show", plan.to_str().unwrap(), "--summary"])
        .await;
    assert!(output.status.success());
    let summary = stdout(&output);
    assert!(summary.lines().count() <= 24, "one screen");
    let settings = stable_settings(world.dir.path());
    settings.bind(|| {
        insta::assert_snapshot!("validate", validate);
        let mut relay = insta::Settings::clone_current();
        relay.add_filter(&regex_escape(&world.relay_url), "[RELAY]");
        relay.bind(|| insta::assert_snapshot!("show_summary", summary));
    });
}

#[tokio::test]
async fn cli_completions_are_generated_for_bash() {
    let dir = tempfile::tempdir().unwrap();
    let output =
        crate::world::run_binary(vec!["completions".into(), "bash".into()], dir.path().into())
            .await;
    assert!(output.status.success());
    let script = stdout(&output);
    assert!(
        script.contains("_reprofile()") && script.contains("migrate"),
        "{script}"
    );
}

/// Runs the binary with `args` (after `--config`) and its stdout already
/// closed by its reader (`reprofile … | true`): the read end of the pipe is
/// closed before the process starts, so every write it makes fails.
async fn cli_with_closed_stdout(world: &World, args: &[&str]) -> std::process::Output {
    use std::os::fd::FromRawFd;
    let mut all = vec![
        "--config".to_string(),
        world.config_path.display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let cwd = world.dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut fds = [0; 2];
        // SAFETY: pipe() fills both descriptors, each owned below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
        // SAFETY: fds[0] is the read end, just created and owned here.
        drop(unsafe { std::fs::File::from_raw_fd(fds[0]) });
        // SAFETY: fds[1] is the write end, owned by the Stdio from here on.
        let write_end = unsafe { std::process::Stdio::from_raw_fd(fds[1]) };
        std::process::Command::new(env!("CARGO_BIN_EXE_reprofile"))
            .args(&all)
            .current_dir(cwd)
            .env_remove("REPROFILE_LOG")
            .env("NO_COLOR", "1")
            .stdout(write_end)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("the binary runs")
    })
    .await
    .expect("the blocking task finishes")
}

/// A closed stdout stops the output, never the command nor its outcome:
/// `plan | true` still writes its plan and exits 1 for the relay it could
/// not read; `apply --auto-approve | true` still applies, journals, and
/// exits by what it did (before: exit 0, nothing published, no journal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_changes_neither_the_outcome_nor_the_exit_code() {
    let world = World::start().await;
    let plan = cli_with_closed_stdout(&world, &["plan"]).await;
    assert_incomplete_for_the_down_relay(&plan);
    assert_eq!(world.plan_files().len(), 1, "the plan is written");

    let apply = cli_with_closed_stdout(&world, &["apply", "--auto-approve", "--force"]).await;
    // Incomplete (the down relay): 1, after doing everything else.
    assert_eq!(apply.status.code(), Some(1), "{}", stderr(&apply));
    let journals = world.journal_files();
    assert_eq!(journals.len(), 1, "the apply journaled its actions");
    let journal = reprofile::store::journal::read(&journals[0]).unwrap();
    let applied = journal.iter().filter(|e| e.outcome == "applied").count();
    assert_eq!(
        applied, 12,
        "every action of the plan applied: {journal:#?}"
    );
    // And the world is right now: the next plan has nothing to do but the
    // agents the rules leave for a person.
    let again = world.cli(&["plan"]).await;
    assert!(stdout(&again).contains("No changes."), "{}", stdout(&again));
}

/// An apply whose relay is gone: it does what it can (the backfills), says
/// each problem once as an `error:` line with how to go on, and does not
/// call itself complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_whose_relay_is_gone_says_what_failed_as_an_error() {
    let world = World::start().await;
    let plan = world.cli(&["plan"]).await;
    assert_incomplete_for_the_down_relay(&plan);
    let path = world.plan_files()[0].clone();
    world.relay.shutdown();
    let apply = world
        .cli(&["apply", path.to_str().unwrap(), "--auto-approve", "--force"])
        .await;
    assert_eq!(apply.status.code(), Some(1));
    let out = stdout(&apply);
    assert!(!out.contains("Apply complete"), "{out}");
    assert!(
        out.contains(
            "Apply finished with problems: 5 applied, 0 already applied, 0 stale, 7 failed."
        ),
        "{out}"
    );
    let err = stderr(&apply);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "said once: {errors:?}");
    // Not repeated as log lines with the actions' ids.
    assert!(!err.contains("action not done"), "{err}");
    assert!(
        errors[0].starts_with("error: 7 actions failed (reasons above and in the journal "),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].ends_with(&format!(
            "`reprofile apply {}` tries them again once the cause is fixed",
            path.display()
        )),
        "{}",
        errors[0]
    );
}

/// With `--log-format json` every stderr line is one JSON object: the log
/// lines, and the `store:` line and the `error:` lines too (the shipped
/// systemd unit and CronJob read JSON).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_json_logs_every_stderr_line_is_one_json_object() {
    let world = World::start().await;
    let output = world.cli(&["--log-format", "json", "plan"]).await;
    assert_incomplete_for_the_down_relay_json(&output);
    let err = stderr(&output);
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line:?}\n{err}"))
        })
        .collect();
    let message = |v: &serde_json::Value| v["fields"]["message"].as_str().unwrap_or("").to_string();
    assert!(
        lines.iter().any(|v| message(v).starts_with("store: ")),
        "{err}"
    );
    assert!(
        lines.iter().any(|v| v["level"] == "ERROR"
            && message(v).starts_with("relay ws://127.0.0.1:9 could not be read")),
        "{err}"
    );
}

/// `--log-format json` exits as the plain run does (1, the down relay).
fn assert_incomplete_for_the_down_relay_json(output: &std::process::Output) {
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
}

/// At the default level, only reprofile's own lines: no other crate's
/// (nostr-sdk's "Connected to", the scheduler's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_default_level_only_reprofiles_own_lines_are_logged() {
    let world = World::start().await;
    world.append_config("[safety]\nmax_republish_fraction = 1.0\n\n[schedule]\nmode = \"apply\"");
    let output = world.cli(&["--log-format", "json", "run", "--once"]).await;
    let err = stderr(&output);
    for line in err.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let target = value["target"].as_str().unwrap_or("");
        assert!(
            target == "reprofile" || target.starts_with("reprofile::"),
            "another crate's line at the default level: {line}"
        );
    }
    assert!(
        err.contains("tick finished"),
        "reprofile's own lines are there: {err}"
    );
}

/// With no store where the app keeps it, the store line says it was looked
/// for, not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_line_says_found_only_when_it_was_found() {
    let home = tempfile::tempdir().unwrap();
    let output = crate::world::run_binary_with_env(
        vec!["validate".into()],
        home.path().to_path_buf(),
        vec![
            ("HOME", Some(home.path().to_path_buf())),
            ("XDG_DATA_HOME", Some(home.path().join("data"))),
        ],
    )
    .await;
    let err = stderr(&output);
    assert!(!err.contains("(found:"), "{err}");
    assert!(
        err.contains("(looked for: Buzz app data, release; not there)"),
        "{err}"
    );
}
