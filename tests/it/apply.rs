//! Apply over real files and a real relay: convergence (E2), idempotence (E3),
//! byte-exact store edits, concurrent edits, refusals, migrate and crash safety.

use std::collections::BTreeMap;

use nostr::PublicKey;
use reprofile::config::Config;
use reprofile::core::apply::Outcome;
use reprofile::core::model::{AgentRecord, PlanMode, RelayObservation};
use reprofile::core::plan::Action;
use reprofile::engine::apply::{apply, check_plan, ApplyOptions, ApplyReport, PlannedRecords};
use reprofile::engine::orchestrate::{make_plan, now_secs, Planned};
use reprofile::engine::snapshot::read_options;
use reprofile::net::relay::read_profiles;
use reprofile::store::planfile::{self, PlanDocument};
use serde_json::Value;

use crate::world::{
    assert_contains, assert_incomplete_for_the_down_relay, expected, forced, results_of, stderr,
    stdout, World,
};

async fn plan_and_apply(config: &Config) -> (PlanDocument, std::path::PathBuf, ApplyReport) {
    let Planned { doc, path, .. } = make_plan(config, &[], None).await.expect("plan");
    let report = apply(config, &doc, &path, &forced(), &now_secs)
        .await
        .expect("apply");
    (doc, path, report)
}

/// The newest kind:0 of every fixture agent on the world's relay.
async fn relay_state(world: &World, config: &Config) -> BTreeMap<String, RelayObservation> {
    let authors: Vec<PublicKey> = expected()
        .keys()
        .map(|k| PublicKey::from_hex(k).unwrap())
        .collect();
    let read = read_profiles(
        BTreeMap::from([(world.relay_url.clone(), authors)]),
        &read_options(config),
    )
    .await;
    read[&world.relay_url].clone().into_iter().collect()
}

fn content_of(observation: &RelayObservation) -> Value {
    match observation {
        RelayObservation::Newest(event) => serde_json::from_str(&event.content).unwrap(),
        other => panic!("expected a profile, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_e2_apply_then_plan_again_yields_no_actions() {
    let world = World::start().await;
    let config = world.config();
    let before = relay_state(&world, &config).await;
    let (doc, _, report) = plan_and_apply(&config).await;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(report.count(Outcome::Applied), doc.plan.actions.len());

    let Planned { doc: again, .. } = make_plan(&config, &[], None).await.unwrap();
    assert!(again.plan.actions.is_empty(), "{:#?}", again.plan.actions);

    // The relay holds the expected profiles.
    let after = relay_state(&world, &config).await;
    let stale_name = "6d43c424cf1376a34c672aa7bef7b559ffd9f56a4cc4ec31b2285696b0810c48";
    let content = content_of(&after[stale_name]);
    assert_eq!(content["display_name"], "agent-00002-stale_name");
    assert_eq!(content["about"], "about 2", "merged fields are kept");
    assert_eq!(content["x_custom"]["z"], 2);
    let auth_valid = "bd3aca7c08157dfc481a83c784b0a99840c2d77d12f1df0645706206e8ff4289";
    match &after[auth_valid] {
        RelayObservation::Newest(event) => {
            assert_eq!(event.tags.len(), 1);
            assert_eq!(
                event.tags[0][1],
                "47579000471a7a1e1c06bd17c5916579c65181ac6f5d39400dcbe0c8295931ff"
            );
        }
        other => panic!("{other:?}"),
    }
    for (agent, observation) in &after {
        if let (RelayObservation::Newest(new), Some(RelayObservation::Newest(old))) =
            (observation, before.get(agent))
        {
            if new.id != old.id {
                assert!(new.created_at > old.created_at, "rule D3 for {agent}");
            }
        }
    }
    let persona = "4981dc74e860555c034866692be1bd035e4f810c5cb318259bdf93dd1f48c19b";
    assert_eq!(
        content_of(&after[persona])["picture"],
        "https://persona.example/4.png"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_e3_applying_the_same_plan_twice_changes_nothing() {
    let world = World::start().await;
    let config = world.config();
    let (doc, path, first) = plan_and_apply(&config).await;
    assert!(first.succeeded());
    let store_after_first = std::fs::read(world.store_path()).unwrap();
    let relay_after_first = relay_state(&world, &config).await;

    let second = apply(&config, &doc, &path, &forced(), &now_secs)
        .await
        .unwrap();
    assert!(second.succeeded());
    assert_eq!(
        second.count(Outcome::AlreadyApplied),
        doc.plan.actions.len(),
        "{second:#?}"
    );
    assert_eq!(
        std::fs::read(world.store_path()).unwrap(),
        store_after_first
    );
    assert_eq!(
        relay_state(&world, &config).await,
        relay_after_first,
        "no new events"
    );
    assert!(second.backup.is_none(), "nothing written, no backup");

    let journal = reprofile::store::journal::read(&first.journal).unwrap();
    assert_eq!(
        journal.len(),
        2 * doc.plan.actions.len(),
        "both runs journaled"
    );
    assert_eq!(
        reprofile::store::journal::count(&journal, Outcome::AlreadyApplied),
        doc.plan.actions.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_after_a_backfill_differs_only_in_avatar_url_lines() {
    let world = World::start().await;
    let config = world.config();
    let original = std::fs::read_to_string(world.store_path()).unwrap();
    let mode_before = std::fs::metadata(world.store_path()).unwrap().permissions();
    let (_, _, report) = plan_and_apply(&config).await;
    let updated = std::fs::read_to_string(world.store_path()).unwrap();
    let diff = similar::TextDiff::from_lines(&original, &updated);
    let mut changed = 0;
    for change in diff.iter_all_changes() {
        if change.tag() != similar::ChangeTag::Equal {
            assert!(
                change.value().trim_start().starts_with("\"avatar_url\": "),
                "{change:?}"
            );
            changed += 1;
        }
    }
    assert_eq!(
        changed, 6,
        "4 inserted lines, and one replaced blank (a delete and an insert)"
    );
    assert_eq!(
        std::fs::metadata(world.store_path()).unwrap().permissions(),
        mode_before
    );
    let backup = report.backup.expect("a backup");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let persona_avatars: Vec<String> = serde_json::from_str::<Value>(&updated)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["avatar_url"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(persona_avatars[4], "https://persona.example/4.png");
    assert_eq!(
        persona_avatars[12], "",
        "the unreachable legacy record is untouched"
    );
}

/// Rule A2 at apply time: a pubkey that is on two records since planning is
/// reported as that (for a backfill and for a republish), not as a record
/// that left the store; nothing is written for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_a2_a_pubkey_duplicated_since_planning_is_stale_and_said_so() {
    let world = World::start().await;
    let (config, doc, path) = world.planned().await;
    let republish_only = "f68e0a6978e1b2ffb4beb3f10df6d0dacf1e4f5535ab6ea1780bdf0ff024ccfc";
    let backfill_and_republish = "4981dc74e860555c034866692be1bd035e4f810c5cb318259bdf93dd1f48c19b";
    let renamed = "6d43c424cf1376a34c672aa7bef7b559ffd9f56a4cc4ec31b2285696b0810c48";
    // Record #0 takes the pubkey of agent 1 and record #2 that of agent 4.
    let text = std::fs::read_to_string(world.store_path()).unwrap();
    let edited = text
        .replacen(
            "ee96457d1818b32114c49e2544fc1f4d5e1b0022d2983d9326714922284450fd",
            republish_only,
            1,
        )
        .replacen(renamed, backfill_and_republish, 1);
    std::fs::write(world.store_path(), &edited).unwrap();

    let report = apply(&config, &doc, &path, &forced(), &now_secs)
        .await
        .unwrap();
    let outcome = |agent: &str, kind: &str| {
        let result = report
            .results
            .iter()
            .find(|r| r.agent == agent && r.kind == kind)
            .unwrap_or_else(|| panic!("{kind} of {agent}: {report:#?}"));
        (result.outcome, result.reason.clone().unwrap_or_default())
    };
    let twice = "the pubkey is now on 2 records of the store, so none of them is this agent's \
                 (rule A2); keep one and make a new plan";
    assert_eq!(
        outcome(republish_only, "republish_profile"),
        (Outcome::Stale, twice.to_string())
    );
    assert_eq!(
        outcome(backfill_and_republish, "backfill_avatar"),
        (Outcome::Stale, twice.to_string())
    );
    let (republish, why) = outcome(backfill_and_republish, "republish_profile");
    assert_eq!(republish, Outcome::Stale);
    assert!(why.ends_with(twice), "{why}");
    assert_eq!(
        outcome(renamed, "republish_profile"),
        (
            Outcome::Stale,
            "the record is no longer in the store".to_string()
        )
    );
    // Neither copy of a duplicated pubkey was written.
    let copies = |text: &str| -> Vec<Value> {
        let records: Value = serde_json::from_str(text).unwrap();
        records
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["pubkey"] == backfill_and_republish)
            .map(|r| r.get("avatar_url").cloned().unwrap_or(Value::Null))
            .collect()
    };
    let after = std::fs::read_to_string(world.store_path()).unwrap();
    assert_eq!(copies(&after).len(), 2);
    assert_eq!(copies(&after), copies(&edited));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_store_edit_survives_and_an_edited_record_is_stale() {
    let world = World::start().await;
    let (config, doc, path) = world.planned().await;
    // The desktop app edits the store between plan and apply: another field of
    // another record, and the avatar of a record the plan backfills.
    let text = std::fs::read_to_string(world.store_path()).unwrap();
    let edited = text
        .replacen("\"model\": null", "\"model\": \"edited-by-app\"", 1)
        .replacen(
            "\"name\": \"agent-00004-legacy_persona_corrupted\",",
            "\"name\": \"agent-00004-legacy_persona_corrupted\",\n    \"avatar_url\": \"https://user/picked.png\",",
            1,
        );
    std::fs::write(world.store_path(), &edited).unwrap();

    let report = apply(&config, &doc, &path, &forced(), &now_secs)
        .await
        .unwrap();
    assert!(!report.succeeded());
    let persona_agent = "4981dc74e860555c034866692be1bd035e4f810c5cb318259bdf93dd1f48c19b";
    let outcomes: Vec<(Outcome, &str)> = report
        .results
        .iter()
        .filter(|r| r.agent == persona_agent)
        .map(|r| (r.outcome, r.kind))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (Outcome::Stale, "backfill_avatar"),
            (Outcome::Stale, "republish_profile")
        ]
    );
    assert_eq!(report.count(Outcome::Stale), 2);
    assert_eq!(report.count(Outcome::Failed), 0);

    let now: Value =
        serde_json::from_str(&std::fs::read_to_string(world.store_path()).unwrap()).unwrap();
    assert_eq!(now[0]["model"], "edited-by-app", "the app's edit survives");
    assert_eq!(
        now[4]["avatar_url"], "https://user/picked.png",
        "the user's choice is kept"
    );
    assert_eq!(
        now[5]["avatar_url"], "https://custom.example/me.png",
        "other backfills happen"
    );
}

/// Beside the running app: the app rewrites the whole store (temp file and
/// rename, from what it read before) just after apply's backfill write. Each
/// backfill is then reported stale at the end of the apply, saying the store
/// was rewritten, and the next run redoes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_the_app_rewrites_away_is_reported_stale_and_the_next_run_redoes_it() {
    let world = World::start().await;
    let original = std::fs::read(world.store_path()).unwrap();
    let (config, doc, path) = world.planned().await;
    let backfilled: Vec<String> = doc
        .plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::BackfillAvatar(b) => Some(b.agent.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(backfilled.len(), 5);
    let options = reprofile::engine::apply::ApplyOptions {
        fault: reprofile::testing::InjectedFault::AppRewritesStoreAfterBackfill,
        ..forced()
    };
    let report = apply(&config, &doc, &path, &options, &now_secs)
        .await
        .unwrap();
    assert!(!report.succeeded(), "stale makes the apply exit 1");
    assert_eq!(
        std::fs::read(world.store_path()).unwrap(),
        original,
        "the app's rewrite is what the store holds"
    );
    for result in &report.results {
        let was_backfilled = backfilled.contains(&result.agent);
        let reason = result.reason.as_deref().unwrap_or("");
        match (result.kind, was_backfilled) {
            ("backfill_avatar", _) => {
                assert_eq!(result.outcome, Outcome::Stale, "{result:?}");
                assert!(
                    reason.starts_with("the store was rewritten meanwhile")
                        && reason.ends_with("the next run redoes it"),
                    "{reason}"
                );
            }
            // Read after the rewrite, the record no longer wants that picture.
            ("republish_profile", true) => {
                assert_eq!(result.outcome, Outcome::Stale, "{result:?}");
                assert_contains(reason, "avatar_url changed");
            }
            _ => assert_eq!(result.outcome, Outcome::Applied, "{result:?}"),
        }
    }
    // The journal says it as it happened: applied, then stale.
    let journal = reprofile::store::journal::read(&report.journal).unwrap();
    for agent in &backfilled {
        let lines: Vec<&str> = journal
            .iter()
            .filter(|e| &e.agent == agent && e.kind == "backfill_avatar")
            .map(|e| e.outcome.as_str())
            .collect();
        assert_eq!(lines, ["applied", "stale"], "{agent}");
    }

    // The next run redoes the backfills (and their republishes), and converges.
    let (again, _, report) = plan_and_apply(&config).await;
    assert_eq!(
        again
            .plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::BackfillAvatar(_)))
            .count(),
        5
    );
    assert!(report.succeeded(), "{report:#?}");
    let Planned { doc: last, .. } = make_plan(&config, &[], None).await.unwrap();
    assert!(last.plan.actions.is_empty(), "{:#?}", last.plan.actions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_refuses_a_plan_of_another_store_or_over_the_safety_threshold() {
    let world = World::start().await;
    let (config, doc, path) = world.planned().await;
    let original = std::fs::read(world.store_path()).unwrap();

    let err = apply(&config, &doc, &path, &ApplyOptions::default(), &now_secs)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("max_republish_fraction"), "{err}");

    let other = World::start().await;
    let err = check_plan(&other.config(), &doc, true, None).unwrap_err();
    assert!(err.to_string().contains("was made from the store"), "{err}");
    let err = apply(&other.config(), &doc, &path, &forced(), &now_secs)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("was made from the store"), "{err}");

    assert_eq!(
        std::fs::read(world.store_path()).unwrap(),
        original,
        "nothing written"
    );
    assert!(!reprofile::store::journal::journal_path(&path).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_gone_before_apply_fails_its_republishes_not_the_run() {
    let world = World::start().await;
    let (config, doc, path) = world.planned().await;
    world.relay.shutdown();
    let report = apply(&config, &doc, &path, &forced(), &now_secs)
        .await
        .unwrap();
    assert_eq!(
        report.count(Outcome::Applied),
        5,
        "the backfills still happen"
    );
    assert_eq!(report.count(Outcome::Failed), 7);
    assert!(report
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .all(|r| r
            .reason
            .as_deref()
            .unwrap()
            .contains("cannot read the relay")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_applies_with_auto_approve_and_refuses_without_a_terminal() {
    let world = World::start().await;
    world.append_config("[safety]\nmax_republish_fraction = 1.0");
    let original = std::fs::read(world.store_path()).unwrap();
    let refused = world.cli(&["apply"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert_contains(
        &stderr(&refused),
        "refusing to apply without --auto-approve",
    );
    assert_eq!(std::fs::read(world.store_path()).unwrap(), original);
    assert!(world.plan_files().is_empty(), "refused before planning");

    // The fixture's down relay makes every snapshot incomplete: exit 1.
    assert_incomplete_for_the_down_relay(&world.cli(&["plan"]).await);
    let plan = world.plan_files().pop().unwrap();
    // A saved plan is applied by its outcomes; its incompleteness is a warning.
    let applied = world
        .cli(&["apply", plan.to_str().unwrap(), "--auto-approve"])
        .await;
    assert_eq!(applied.status.code(), Some(0), "{}", stderr(&applied));
    assert!(stdout(&applied)
        .contains("Apply complete: 12 applied, 0 already applied, 0 stale, 0 failed."));
    assert_eq!(
        stderr(&applied),
        "warning: the plan is incomplete: relay ws://127.0.0.1:9 could not be read when it was \
         made (relay_unreachable; 1 agent not in the plan)\n"
    );

    let again = world.cli(&["plan", "--detailed-exitcode"]).await;
    assert_incomplete_for_the_down_relay(&again);
    assert!(stdout(&again).contains("No changes."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_without_a_plan_file_does_what_is_safe_and_exits_1_on_an_incomplete_snapshot() {
    let world = World::start().await;
    world.append_config("[safety]\nmax_republish_fraction = 1.0");
    let output = world.cli(&["apply", "--auto-approve"]).await;
    assert_incomplete_for_the_down_relay(&output);
    assert!(
        stdout(&output)
            .contains("Apply complete: 12 applied, 0 already applied, 0 stale, 0 failed."),
        "every action the snapshot allowed was done: {}",
        stdout(&output)
    );
    assert_eq!(world.plan_files().len(), 1, "the plan was written");
    let journal = reprofile::store::journal::read(&world.journal_files()[0]).unwrap();
    assert_eq!(journal.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_backfills_legacy_records_and_a_second_run_does_nothing() {
    let world = World::start().await;
    let mut config = world.config();
    let relay_before = relay_state(&world, &config).await;
    // The legacy record on the down relay has no persona: its avatar cannot
    // be chosen, so each migration snapshot is incomplete (exit 1).
    let output = world.cli(&["migrate", "--dry-run"]).await;
    assert_incomplete_for_the_down_relay(&output);
    assert_contains(&stdout(&output), "Migration: 5 to backfill");
    let original = std::fs::read(world.store_path()).unwrap();

    let output = world.cli(&["migrate", "--auto-approve"]).await;
    assert_incomplete_for_the_down_relay(&output);
    assert!(
        stdout(&output)
            .contains("Apply complete: 5 applied, 0 already applied, 0 stale, 0 failed."),
        "{}",
        stdout(&output)
    );
    assert_ne!(std::fs::read(world.store_path()).unwrap(), original);
    let store: Value =
        serde_json::from_str(&std::fs::read_to_string(world.store_path()).unwrap()).unwrap();
    for (pubkey, want) in expected() {
        let record = store
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["pubkey"] == pubkey.as_str())
            .unwrap();
        if let Some(fill) = want["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == "backfill_avatar")
        {
            assert_eq!(
                record["avatar_url"], fill["avatar_url"],
                "{}",
                want["scenario"]
            );
        }
    }
    assert_eq!(
        relay_state(&world, &config).await,
        relay_before,
        "the relay is untouched"
    );

    let migrated = std::fs::read(world.store_path()).unwrap();
    let output = world.cli(&["migrate", "--auto-approve"]).await;
    assert_incomplete_for_the_down_relay(&output);
    assert_contains(&stdout(&output), "No changes.");
    assert_eq!(std::fs::read(world.store_path()).unwrap(), migrated);

    config.policy.mode = PlanMode::BackfillOnly;
    let Planned { doc, .. } = make_plan(&config, &[], None).await.unwrap();
    assert!(doc.plan.actions.is_empty());
    assert!(planfile::to_json(&doc).contains("\"kind\": \"migrate\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_list_backfills_before_republishes_of_the_same_agent() {
    let world = World::start().await;
    let Planned { doc, .. } = make_plan(&world.config(), &[], None).await.unwrap();
    let kinds: Vec<(&str, &str)> = doc
        .plan
        .actions
        .iter()
        .map(|a| (a.agent(), a.type_name()))
        .collect();
    for pair in kinds.windows(2) {
        if pair[0].0 == pair[1].0 {
            assert_eq!(
                (pair[0].1, pair[1].1),
                ("backfill_avatar", "republish_profile")
            );
        }
    }
    assert!(doc
        .plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::BackfillAvatar(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_safety_sigkill_mid_apply_loses_no_record_and_the_next_apply_converges() {
    const AGENTS: usize = 300;
    let world = World::generated(AGENTS).await;
    let original: Value =
        serde_json::from_str(&std::fs::read_to_string(world.store_path()).unwrap()).unwrap();

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_reprofile"))
        .args([
            "--config",
            world.config_path.to_str().unwrap(),
            "apply",
            "--auto-approve",
            "--force",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until the apply is under way: its journal has lines.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let killed_with_lines = loop {
        let lines = world
            .journal_files()
            .iter()
            .map(|j| {
                std::fs::read_to_string(j)
                    .unwrap_or_default()
                    .lines()
                    .count()
            })
            .sum::<usize>();
        if lines > 0 || std::time::Instant::now() > deadline {
            child.kill().unwrap();
            break lines;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the apply finished before it could be killed: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    child.wait().unwrap();
    assert!(killed_with_lines > 0, "killed while applying");
    assert!(
        killed_with_lines < 2 * AGENTS,
        "killed before the end ({killed_with_lines} lines)"
    );

    let after: Value = serde_json::from_str(&std::fs::read_to_string(world.store_path()).unwrap())
        .expect("the store is still valid JSON");
    assert_eq!(after.as_array().unwrap().len(), AGENTS, "no record lost");
    for (before, now) in original
        .as_array()
        .unwrap()
        .iter()
        .zip(after.as_array().unwrap())
    {
        assert_eq!(before["pubkey"], now["pubkey"], "no record reordered");
    }

    // The next apply (a fresh plan) finishes the job, and then nothing is left.
    let config = world.config();
    let (_, _, report) = plan_and_apply(&config).await;
    assert!(
        report.succeeded(),
        "{:?}",
        report
            .results
            .iter()
            .filter(|r| r.outcome.is_problem())
            .take(3)
            .collect::<Vec<_>>()
    );
    let Planned { doc: again, .. } = make_plan(&config, &[], None).await.unwrap();
    assert!(again.plan.actions.is_empty());
}

/// Blocks every event dated after the fixture's seed (so the seed goes in and
/// every republish is refused).
#[derive(Debug)]
struct BlockNewEvents;

impl nostr_relay_builder::builder::WritePolicy for BlockNewEvents {
    fn admit_event<'a>(
        &'a self,
        event: &'a nostr::Event,
        _addr: &'a std::net::SocketAddr,
    ) -> nostr::util::BoxedFuture<'a, nostr_relay_builder::builder::PolicyResult> {
        let new = event.created_at.as_secs() > 1_790_000_000;
        Box::pin(async move {
            if new {
                nostr_relay_builder::builder::PolicyResult::Reject(
                    "no new profiles today".to_owned(),
                )
            } else {
                nostr_relay_builder::builder::PolicyResult::Accept
            }
        })
    }
}

/// Seeds a relay with the fixture events through the publisher (which can
/// answer NIP-42 with a service key).
async fn seed_with_publisher(url: &str) {
    use reprofile::net::publish::{publish_all, Delivery, PublishItem, PublishOptions};
    let service = nostr::Keys::generate();
    let items = crate::support::seed_events()
        .into_iter()
        .map(|event| PublishItem {
            event,
            keys: service.clone(),
            sign_in: None,
        })
        .collect();
    let opts = PublishOptions {
        service_keys: Some(service),
        ..PublishOptions::default()
    };
    let deliveries = publish_all(url, items, &opts).await;
    assert!(
        deliveries.iter().all(|d| *d == Delivery::Accepted),
        "{deliveries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_refuses_with_blocked_fails_each_republish_with_its_message() {
    let relay = crate::support::start_local_relay_with(
        crate::support::bulk_relay_builder().write_policy(BlockNewEvents),
    )
    .await;
    let url = relay.url().await.to_string();
    seed_with_publisher(&url).await;
    let world = World::with_relay(relay, url, "");
    let config = world.config();
    let (_, _, report) = plan_and_apply(&config).await;
    assert!(!report.succeeded());
    let republishes = results_of(&report, "republish_profile");
    assert_eq!(republishes.len(), 7);
    for result in republishes {
        assert_eq!(result.outcome, Outcome::Failed);
        assert_eq!(
            result.reason.as_deref(),
            Some("the relay refused the event: blocked: no new profiles today")
        );
    }
    assert_eq!(report.count(Outcome::Applied), 5, "the backfills are done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_requires_nip42_auth_for_writes_gets_every_profile() {
    use nostr_relay_builder::builder::RelayBuilderNip42Mode;
    let (relay, url) =
        crate::support::start_relay_demanding_auth(RelayBuilderNip42Mode::Write).await;
    seed_with_publisher(&url).await;
    let world = World::with_relay(relay, url, "");
    let config = world.config();
    let (doc, _, report) = plan_and_apply(&config).await;
    assert!(report.succeeded(), "{:#?}", report.results);
    assert_eq!(report.count(Outcome::Applied), doc.plan.actions.len());
    let Planned { doc: again, .. } = make_plan(&config, &[], None).await.unwrap();
    assert!(again.plan.actions.is_empty());
}

/// A relay that demands NIP-42 for reads and writes and, like
/// nostr-relay-builder's, sends its challenge only on demand (after an
/// unauthenticated REQ or EVENT): the read signs in, so each republish goes
/// over a connection signed in as its agent, whose event provokes the
/// challenge. Before: every republish failed "sent no AUTH challenge".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_challenges_on_demand_for_reads_and_writes_gets_every_profile() {
    use nostr_relay_builder::builder::RelayBuilderNip42Mode;
    let (relay, url) =
        crate::support::start_relay_demanding_auth(RelayBuilderNip42Mode::Both).await;
    let world = World::with_relay(relay, url, "");
    let config = world.config();
    let (doc, _, report) = plan_and_apply(&config).await;
    assert!(report.succeeded(), "{:#?}", report.results);
    assert!(!doc.plan.actions.is_empty());
    assert_eq!(report.count(Outcome::Applied), doc.plan.actions.len());
    let Planned { doc: again, .. } = make_plan(&config, &[], None).await.unwrap();
    assert!(again.plan.actions.is_empty(), "{:#?}", again.plan.actions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_d1_each_republished_event_is_a_kind0_signed_by_the_agents_own_key() {
    let world = World::start().await;
    let config = world.config();
    let (doc, _, report) = plan_and_apply(&config).await;
    assert!(report.succeeded());
    let published: Vec<(String, String)> = results_of(&report, "republish_profile")
        .into_iter()
        .map(|r| (r.agent.clone(), r.event_id.clone().expect("a signed event")))
        .collect();
    assert_eq!(published.len(), 7);

    let client = nostr_sdk::Client::default();
    client.add_relay(&world.relay_url).await.unwrap();
    client.connect().await;
    let ids: Vec<nostr::EventId> = published
        .iter()
        .map(|(_, id)| nostr::EventId::from_hex(id).unwrap())
        .collect();
    let events = client
        .fetch_events(
            nostr::Filter::new().ids(ids),
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 7, "every published event is on the relay");
    for event in events.iter() {
        event.verify().expect("a valid id and signature");
        assert_eq!(event.kind, nostr::Kind::Metadata);
        let (agent, _) = published
            .iter()
            .find(|(_, id)| *id == event.id.to_hex())
            .unwrap();
        assert_eq!(&event.pubkey.to_hex(), agent, "signed by the agent itself");
        let planned = doc
            .plan
            .actions
            .iter()
            .find_map(|a| match a {
                Action::RepublishProfile(r) if r.agent == *agent => Some(r),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            event.content, planned.after.content,
            "the planned content, byte for byte"
        );
    }
    client.shutdown().await;
}

/// Apply works on several relays at once: two relays that each hold their
/// OK for 4 s both receive their agent's event within that hold. One relay
/// after the other, the second relay's event would come only after the
/// first relay's OK and read-back, 4 s or more later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_publishes_to_several_relays_at_once() {
    use crate::support::{FakeBehaviour, FakeRelay};
    use std::time::{Duration, Instant};

    let hold = Duration::from_secs(4);
    let world = World::generated(2).await;
    let slow = || {
        FakeRelay::start(FakeBehaviour::SlowOk {
            delay: hold,
            challenge: None,
        })
    };
    let (first, second) = (slow().await, slow().await);
    // The second agent names another relay.
    let store = std::fs::read_to_string(world.store_path()).unwrap();
    let at = store.rfind("ws://127.0.0.1:7777").expect("a relay URL");
    let store = format!("{}ws://127.0.0.1:7778{}", &store[..at], &store[at + 19..]);
    std::fs::write(world.store_path(), store).unwrap();
    let config = std::fs::read_to_string(&world.config_path)
        .unwrap()
        .replace(
            &format!("\"ws://127.0.0.1:7777\" = \"{}\"", world.relay_url),
            &format!(
                "\"ws://127.0.0.1:7777\" = \"{}\"\n\"ws://127.0.0.1:7778\" = \"{}\"",
                first.url(),
                second.url()
            ),
        )
        .replace("publish_timeout_secs = 5", "publish_timeout_secs = 10");
    std::fs::write(&world.config_path, config).unwrap();

    let watch = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut arrived: [Option<Instant>; 2] = [None, None];
        while arrived.iter().any(Option::is_none) && Instant::now() < deadline {
            for (slot, relay) in arrived.iter_mut().zip([&first, &second]) {
                if slot.is_none() && !relay.event_ids().is_empty() {
                    *slot = Some(Instant::now());
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        arrived
    };
    let (output, arrived) = tokio::join!(world.cli(&["apply", "--auto-approve"]), watch);

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let [Some(a), Some(b)] = arrived else {
        panic!("an event never reached its relay: {arrived:?}");
    };
    let apart = if a > b { a - b } else { b - a };
    assert!(
        apart < hold / 2,
        "the relays got their events {apart:?} apart: one after the other"
    );
    for relay in [&first, &second] {
        assert_eq!(relay.event_ids().len(), 1, "one republish per relay");
    }
}

/// The fixture's plan cut down to the republishes of agents with no
/// backfill (an apply that writes nothing to the store), with the records
/// the plan was made from.
async fn republishes_only(
    world: &World,
) -> (Config, PlanDocument, std::path::PathBuf, Vec<AgentRecord>) {
    let (config, mut doc, path) = world.planned().await;
    let backfilled: Vec<String> = doc
        .plan
        .actions
        .iter()
        .filter_map(Action::as_backfill)
        .map(|b| b.agent.clone())
        .collect();
    doc.plan.actions.retain(|a| {
        a.as_republish()
            .is_some_and(|r| !backfilled.contains(&r.agent))
    });
    assert!(doc.plan.actions.len() >= 2, "{:#?}", doc.plan.actions);
    let records = reprofile::store::agents::read_agent_store(&world.store_path())
        .expect("the store")
        .records
        .into_iter()
        .map(|r| r.record)
        .collect();
    (config, doc, path, records)
}

/// Apply takes the records a plan was made from only while the store holds
/// the bytes they were parsed from: records handed to it under the store's
/// own digest are what its preconditions read (one renamed there makes its
/// republish stale, and the store is not parsed), and once the store's bytes
/// change it parses the store again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_takes_the_plans_records_only_while_the_store_holds_their_bytes() {
    for store_changed in [false, true] {
        let world = World::start().await;
        let (config, doc, path, mut records) = republishes_only(&world).await;
        let first = doc.plan.actions[0].as_republish().unwrap().agent.clone();
        let record = records.iter_mut().find(|r| r.pubkey == first).unwrap();
        record.name = format!("{} renamed only in memory", record.name);
        if store_changed {
            let text = std::fs::read_to_string(world.store_path()).unwrap();
            let edited = text.replacen("\"model\": null", "\"model\": \"edited-by-app\"", 1);
            assert_ne!(edited, text);
            std::fs::write(world.store_path(), edited).unwrap();
        }
        let opts = ApplyOptions {
            planned_records: Some(PlannedRecords {
                sha256: doc.store.sha256.clone(),
                records: std::sync::Arc::new(records),
            }),
            ..forced()
        };
        let report = apply(&config, &doc, &path, &opts, &now_secs)
            .await
            .expect("apply");
        assert_eq!(report.records_from_plan, !store_changed);
        let outcome = |agent: &str| {
            report
                .results
                .iter()
                .find(|r| r.agent == agent)
                .map(|r| r.outcome)
        };
        let expected = if store_changed {
            Outcome::Applied
        } else {
            Outcome::Stale
        };
        assert_eq!(outcome(&first), Some(expected), "{report:#?}");
        assert_eq!(
            report.count(Outcome::Applied),
            doc.plan.actions.len() - usize::from(!store_changed),
            "{report:#?}"
        );
    }
}

/// Apply checks rule A5 again on the record as it is when it signs: a key
/// broken in the store since planning fails that republish alone, saying
/// why without the key, and the others are signed and published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_broken_since_planning_fails_its_republish_alone_and_says_why() {
    let world = World::start().await;
    let (config, doc, path, records) = republishes_only(&world).await;
    let broken = doc.plan.actions[1].as_republish().unwrap().agent.clone();
    let nsec = records
        .iter()
        .find(|r| r.pubkey == broken)
        .and_then(|r| r.secret_key.as_ref())
        .map(|k| k.expose().to_string())
        .unwrap();
    let text = std::fs::read_to_string(world.store_path()).unwrap();
    assert_eq!(text.matches(&nsec).count(), 1);
    std::fs::write(world.store_path(), text.replace(&nsec, "nsec1notakey")).unwrap();

    let report = apply(&config, &doc, &path, &forced(), &now_secs)
        .await
        .expect("apply");
    let failed: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "{report:#?}");
    assert_eq!(failed[0].agent, broken);
    assert_eq!(
        failed[0].reason.as_deref(),
        Some("invalid_key: private_key_nsec does not parse as a bech32 nsec key")
    );
    assert_eq!(
        report.count(Outcome::Applied),
        doc.plan.actions.len() - 1,
        "{report:#?}"
    );
    // Journaled once, with its reason, and no key anywhere in the journal.
    let journal_file = &world.journal_files()[0];
    let journal = reprofile::store::journal::read(journal_file).unwrap();
    let failures: Vec<_> = journal.iter().filter(|e| e.outcome == "failed").collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(
        (failures[0].agent.as_str(), failures[0].reason.as_deref()),
        (broken.as_str(), failed[0].reason.as_deref())
    );
    assert!(!std::fs::read_to_string(journal_file)
        .unwrap()
        .contains("nsec1"));
}

/// The plan of the fixture world, edited by `edit` and written back with its
/// digest recomputed (as anyone can), to `edited.json` in the world.
async fn edited_plan(
    world: &World,
    name: &str,
    edit: impl FnOnce(&mut PlanDocument),
) -> std::path::PathBuf {
    let config = world.config();
    let Planned { mut doc, .. } = make_plan(&config, &[], None).await.expect("plan");
    edit(&mut doc);
    let (json, _) = planfile::to_json_and_digest(&doc);
    let path = world.plans_dir().join(format!("{name}.json"));
    std::fs::write(&path, json).unwrap();
    path
}

/// A plan is a proposal, not a credential: an apply of a plan whose content
/// (a `lud16` added to every republish) or relay was edited, with a
/// recomputed digest, signs and publishes nothing of it; each such action
/// is `stale` naming the field, and apply exits 1. Before: the attacker's
/// content was signed with every agent's key and published, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_plan_is_rebuilt_from_the_live_state_and_its_edits_are_refused_as_stale() {
    let world = World::start().await;
    let before = relay_state(&world, &world.config()).await;
    let content = edited_plan(&world, "content", |doc| {
        for action in &mut doc.plan.actions {
            if let Action::RepublishProfile(r) = action {
                let mut value: Value = serde_json::from_str(&r.after.content).unwrap();
                value["lud16"] = "attacker@evil.example".into();
                r.after.content = value.to_string();
            }
        }
    })
    .await;
    let run = world
        .cli(&[
            "apply",
            content.to_str().unwrap(),
            "--auto-approve",
            "--force",
        ])
        .await;
    assert_eq!(run.status.code(), Some(1), "{}", stdout(&run));
    let journal =
        reprofile::store::journal::read(&content.with_extension("journal.jsonl")).unwrap();
    let republishes: Vec<_> = journal
        .iter()
        .filter(|e| e.kind == "republish_profile")
        .collect();
    assert_eq!(republishes.len(), 7, "{journal:#?}");
    for entry in &republishes {
        assert_eq!(entry.outcome, "stale", "{entry:?}");
        assert!(
            entry
                .reason
                .as_deref()
                .unwrap()
                .starts_with("after.content differs"),
            "{entry:?}"
        );
    }
    // Nothing of it reached the relay: every profile is as it was.
    assert_eq!(relay_state(&world, &world.config()).await, before);

    // The relay edited: never read from nor published to.
    let elsewhere = crate::support::closed_port_url();
    let relay = edited_plan(&world, "relay", |doc| {
        for action in &mut doc.plan.actions {
            if let Action::RepublishProfile(r) = action {
                r.relay = elsewhere.clone();
            }
        }
    })
    .await;
    let run = world
        .cli(&[
            "apply",
            relay.to_str().unwrap(),
            "--auto-approve",
            "--force",
        ])
        .await;
    assert_eq!(run.status.code(), Some(1), "{}", stdout(&run));
    let journal = reprofile::store::journal::read(&relay.with_extension("journal.jsonl")).unwrap();
    assert!(journal.iter().any(|e| e.kind == "republish_profile"));
    for entry in journal.iter().filter(|e| e.kind == "republish_profile") {
        assert_eq!(entry.outcome, "stale", "{entry:?}");
        let reason = entry.reason.as_deref().unwrap();
        assert!(
            reason.starts_with("relay differs: the plan says"),
            "{reason}"
        );
        assert!(
            reason.contains(&world.relay_url.trim_end_matches('/').to_string())
                || reason.contains(&world.relay_url),
            "{reason}"
        );
    }
    assert_eq!(relay_state(&world, &world.config()).await, before);
}

/// The safety threshold is counted against the live store: a plan claiming
/// a store of 1,000,000 records is refused as the honest one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safety_threshold_counts_the_live_store_not_the_plans_claim() {
    let world = World::start().await;
    let claimed = edited_plan(&world, "claimed", |doc| doc.store.records = 1_000_000).await;
    let run = world
        .cli(&["apply", claimed.to_str().unwrap(), "--auto-approve"])
        .await;
    assert_eq!(run.status.code(), Some(1));
    assert_contains(&stderr(&run), "safety");
    assert!(world.journal_files().is_empty(), "nothing applied");
}

/// A world of `n` generated agents (each needing a backfill and a
/// republish) whose relay is a [`FakeRelay`](crate::support::FakeRelay)
/// that answers each EVENT `delay` after its turn and keeps what it takes,
/// publishing `in_flight` events at a time; the world, the relay, and a
/// plan of it.
async fn slow_relay_world(
    n: usize,
    delay: std::time::Duration,
    in_flight: usize,
) -> (
    World,
    crate::support::FakeRelay,
    Config,
    PlanDocument,
    std::path::PathBuf,
) {
    use crate::support::{FakeBehaviour, FakeRelay};
    let world = World::generated(n).await;
    let fake = FakeRelay::start(FakeBehaviour::SlowOk {
        delay,
        challenge: None,
    })
    .await;
    let config = std::fs::read_to_string(&world.config_path)
        .unwrap()
        .replace(&world.relay_url, fake.url())
        .replace(
            "publish_timeout_secs = 5",
            &format!("publish_timeout_secs = 30\nmax_publish_in_flight = {in_flight}"),
        );
    std::fs::write(&world.config_path, config).unwrap();
    let (config, doc, path) = world.planned().await;
    let republishes = doc.plan.actions.iter().filter_map(Action::as_republish);
    assert_eq!(republishes.count(), n, "{:#?}", doc.plan.actions);
    (world, fake, config, doc, path)
}

/// Waits (bounded, polling the file) until the plan's journal holds a
/// `published` line; returns the journal then.
async fn journal_once_published(path: &std::path::Path) -> Vec<reprofile::store::journal::Entry> {
    let journal = reprofile::store::journal::journal_path(path);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let entries = reprofile::store::journal::read_all(&journal).unwrap_or_default();
        if entries.iter().any(|e| e.outcome == "published") {
            return entries;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `published` line within 20 s: {entries:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The journal lags no OK: a republish is journaled `published` as the
/// relay's OK arrives, while the batch's other events still await theirs
/// (a crash then leaves a record of what went out); the read-back then
/// journals it `applied`, with the same event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_republish_is_journaled_published_as_its_ok_arrives_then_applied_after_the_read_back()
{
    let (_world, fake, config, doc, path) =
        slow_relay_world(3, std::time::Duration::from_millis(1500), 64).await;
    let applying = {
        let (config, doc, path) = (config.clone(), doc.clone(), path.clone());
        tokio::spawn(async move { apply(&config, &doc, &path, &forced(), &now_secs).await })
    };

    let during = journal_once_published(&path).await;
    assert!(!applying.is_finished(), "read while the batch is in flight");
    let published: Vec<_> = during.iter().filter(|e| e.outcome == "published").collect();
    assert!(
        published.len() < 3,
        "the first OK has arrived, not every one: {during:#?}"
    );
    assert!(
        !during
            .iter()
            .any(|e| e.kind == "republish_profile" && e.outcome != "published"),
        "no republish is confirmed before the batch ends: {during:#?}"
    );
    let first = published[0];
    assert_eq!(first.kind, "republish_profile");
    assert!(
        fake.event_ids().contains(first.event_id.as_ref().unwrap()),
        "the event the relay took"
    );

    let report = applying.await.unwrap().expect("apply");
    assert!(report.succeeded(), "{report:#?}");
    let journal = reprofile::store::journal::read_all(&report.journal).unwrap();
    for result in report
        .results
        .iter()
        .filter(|r| r.kind == "republish_profile")
    {
        let lines: Vec<(&str, Option<&str>)> = journal
            .iter()
            .filter(|e| e.action == result.id)
            .map(|e| (e.outcome.as_str(), e.event_id.as_deref()))
            .collect();
        let event = result.event_id.as_deref();
        assert_eq!(
            lines,
            vec![("published", event), ("applied", event)],
            "{}",
            result.id
        );
    }
}

/// A run that ends between the OKs and the read-back (a crash: the task is
/// dropped mid-batch) leaves `published` lines and no outcome for its
/// republishes. Applying the same plan again reads the relay: what went out
/// is already applied, the rest is applied, and no event the relay holds is
/// published twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_after_a_crash_between_ok_and_read_back_finishes_the_plan_without_publishing_twice(
) {
    let (_world, fake, config, doc, path) =
        slow_relay_world(3, std::time::Duration::from_millis(1000), 1).await;
    let crashed = {
        let (config, doc, path) = (config.clone(), doc.clone(), path.clone());
        tokio::spawn(async move { apply(&config, &doc, &path, &forced(), &now_secs).await })
    };
    let at_crash = journal_once_published(&path).await;
    crashed.abort();
    assert!(crashed.await.unwrap_err().is_cancelled());
    assert!(
        !at_crash
            .iter()
            .any(|e| e.kind == "republish_profile" && e.outcome != "published"),
        "{at_crash:#?}"
    );
    let sent_before = fake.event_ids().len();
    assert!(sent_before < 3, "the crash came before the batch ended");
    // A `published` line is no outcome: the journal's readers (`status`
    // among them) see those republishes as not done, never as applied.
    let outcomes =
        reprofile::store::journal::read(&reprofile::store::journal::journal_path(&path)).unwrap();
    assert!(
        outcomes.iter().all(|e| e.kind == "backfill_avatar"),
        "{outcomes:#?}"
    );
    let status = reprofile::service::status::from_plan(
        &doc,
        &outcomes,
        reprofile::config::ScheduleMode::Apply,
    );
    assert!(!status.success, "{status:?}");
    // The three backfills, and nothing of the republishes.
    assert_contains(
        &status.detail,
        "journal: 3 applied, 0 already applied, 0 stale, 0 failed, 3 not done",
    );

    let report = apply(&config, &doc, &path, &forced(), &now_secs)
        .await
        .expect("apply again");
    assert!(report.succeeded(), "{report:#?}");
    assert!(report
        .results
        .iter()
        .all(|r| matches!(r.outcome, Outcome::Applied | Outcome::AlreadyApplied)));
    assert!(
        report.count(Outcome::AlreadyApplied) >= 1,
        "the event published before the crash is found: {report:#?}"
    );
    let ids = fake.event_ids();
    assert_eq!(ids.len(), 3, "one EVENT per agent over both runs: {ids:?}");
    // The journal reads both states: `published` from the crashed run, each
    // action's outcome from the second.
    let journal = reprofile::store::journal::read_all(&report.journal).unwrap();
    for result in &report.results {
        let last = journal
            .iter()
            .rev()
            .find(|e| e.action == result.id)
            .unwrap();
        assert_eq!(last.outcome, result.outcome.as_str(), "{}", result.id);
    }
    assert!(journal.iter().any(|e| e.outcome == "published"));
}

/// A legacy agent on two community relays, the first of which holds a
/// kind:0 dated beyond the future tolerance (that relay's clock ahead): the
/// first relay is skipped (`clock_skew`), and the record's one backfill
/// still goes with the second relay's republish, which apply does (before:
/// the backfill went with the skipped entry, and apply found the second
/// relay's republish stale).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn communities_a_clock_skew_on_the_first_relay_leaves_the_backfill_and_the_other_republish() {
    use nostr::{EventBuilder, Keys, Kind, Timestamp};
    use reprofile::core::plan::SkipReason;

    let world = World::generated(1).await;
    let other = crate::support::start_local_relay().await;
    let other_url = other.url().await.to_string();
    world.append_config(&format!(
        "[buzz]\ncommunities = [\"{}\", \"{other_url}\"]\n[safety]\nmax_republish_fraction = 1.0",
        world.relay_url
    ));
    // The generated agent 0's key (see World::generated).
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&1u64.to_be_bytes());
    secret[31] = 7;
    let keys = Keys::new(nostr::SecretKey::from_slice(&secret).unwrap());
    let ahead = EventBuilder::new(Kind::Metadata, r#"{"name":"generated-00000"}"#)
        .custom_created_at(Timestamp::from_secs(now_secs() + 3_600))
        .sign_with_keys(&keys)
        .unwrap();
    crate::support::publish_events(&world.relay_url, &[ahead]).await;
    let config = world.config();

    let (doc, _, report) = plan_and_apply(&config).await;
    let skips: Vec<(&str, SkipReason)> = doc
        .plan
        .skipped
        .iter()
        .map(|s| (s.relay.as_deref().unwrap_or_default(), s.reason))
        .collect();
    assert_eq!(skips, [(world.relay_url.as_str(), SkipReason::ClockSkew)]);
    let kinds: Vec<&str> = doc.plan.actions.iter().map(Action::type_name).collect();
    assert_eq!(kinds, ["backfill_avatar", "republish_profile"]);
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(report.count(Outcome::Applied), 2, "{report:#?}");

    let store: Value =
        serde_json::from_str(&std::fs::read_to_string(world.store_path()).unwrap()).unwrap();
    let avatar = store[0]["avatar_url"].as_str().expect("backfilled");
    let read = read_profiles(
        BTreeMap::from([(other_url.clone(), vec![keys.public_key()])]),
        &read_options(&config),
    )
    .await;
    let on_other = content_of(&read[&other_url][&keys.public_key().to_hex()]);
    assert_eq!(on_other["picture"], avatar);
}
