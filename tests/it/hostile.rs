//! Hostile and broken relays over real websockets, each with its defined
//! outcome (ignored, unknown, failed with the relay's message, or retried).
//! The ones the reader and publisher tests already cover are listed in the
//! Guarantees table of docs/design.md; these are the rest.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nostr::{JsonUtil, Keys};
use reprofile::core::apply::Outcome;
use reprofile::core::model::{
    AgentRecord, AgentSnapshot, AvatarField, Policy, RelayObservation, Snapshot,
};
use reprofile::core::plan::{Action, RepublishProfile, RepublishReason};
use reprofile::core::rules;
use reprofile::engine::apply::{apply, ApplyOptions};
use reprofile::engine::orchestrate::now_secs;
use reprofile::net::relay::read_profiles;

use crate::support::{short_read_options, signed_profile, FakeBehaviour, FakeRelay};
use crate::world::World;

fn record_for(keys: &Keys, name: &str) -> AgentRecord {
    use nostr::nips::nip19::ToBech32;
    AgentRecord {
        index: 0,
        pubkey: keys.public_key().to_hex(),
        name: name.into(),
        secret_key: Some(reprofile::core::model::SecretText::new(
            keys.secret_key().to_bech32().unwrap(),
        )),
        key_origin: Default::default(),
        relay_url: "ws://127.0.0.1:7777".into(),
        avatar_url: AvatarField::Text("https://img/a.png".into()),
        persona_id: None,
        agent_command: None,
        auth_tag: None,
        field_errors: vec![],
    }
}

async fn read_one(url: &str, keys: &Keys) -> RelayObservation {
    let read = read_profiles(
        BTreeMap::from([(url.to_string(), vec![keys.public_key()])]),
        &short_read_options(Duration::from_secs(2), Duration::from_secs(5)),
    )
    .await;
    read[url][&keys.public_key().to_hex()].clone()
}

fn plan_one(keys: &Keys, observation: RelayObservation) -> reprofile::core::plan::Plan {
    let snapshot = Snapshot {
        agents: vec![AgentSnapshot {
            record: record_for(keys, "Ada"),
            relay: Some("ws://r".into()),
            observation,
        }],
        personas: BTreeMap::new(),
    };
    rules::plan(&snapshot, &Policy::default(), now_secs())
}

/// What a relay holding one kind:0 by `keys` with `content` gives.
async fn served(keys: &Keys, content: &str) -> RelayObservation {
    let event = signed_profile(keys, 1_700_000_000, content);
    let relay = FakeRelay::start(FakeBehaviour::EventsThenEose(vec![event.as_json()])).await;
    read_one(relay.url(), keys).await
}

/// The republish planned for `observation`, done within 10 s of `started`.
fn republish_in_bounded_time(
    keys: &Keys,
    observation: RelayObservation,
    started: Instant,
) -> RepublishProfile {
    let plan = plan_one(keys, observation);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded: {:?}",
        started.elapsed()
    );
    let Some(Action::RepublishProfile(republish)) = plan.actions.first() else {
        panic!("{plan:?}")
    };
    republish.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mib_content_is_read_whole_and_kept_by_the_merge() {
    let keys = Keys::generate();
    let about = "x".repeat(1 << 20);
    let content =
        serde_json::json!({"display_name": "Old", "picture": "https://img/a.png", "about": about})
            .to_string();
    let started = Instant::now();
    let observation = served(&keys, &content).await;
    let republish = republish_in_bounded_time(&keys, observation, started);
    assert_eq!(republish.reasons, vec![RepublishReason::NameChanged]);
    let merged: serde_json::Value = serde_json::from_str(&republish.after.content).unwrap();
    assert_eq!(
        merged["about"].as_str().unwrap().len(),
        1 << 20,
        "the big field is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_content_is_kept_verbatim_without_recursing_into_it() {
    let keys = Keys::generate();
    let depth = 100_000;
    let content = format!(
        "{{\"display_name\":\"Ada\",\"deep\":{}{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let observation = served(&keys, &content).await;
    assert!(
        matches!(observation, RelayObservation::Newest(_)),
        "{observation:?}"
    );
    // A valid object, however deep: the unowned value is carried as raw text,
    // never parsed into a tree (no recursion, no stack to overflow).
    let republish = republish_in_bounded_time(&keys, observation, Instant::now());
    assert_eq!(republish.reasons, vec![RepublishReason::PictureChanged]);
    let deep = format!("\"deep\":{}{}", "[".repeat(depth), "]".repeat(depth));
    assert!(republish.after.content.contains(&deep));
}

/// Plans and applies the fixture world against a fake relay whose REQs all
/// end in an empty EOSE (every profile missing) and whose EVENTs get
/// `answer`; returns the republishes' results.
async fn republish_results_against(
    answer: FakeBehaviour,
) -> Vec<reprofile::engine::apply::ActionResult> {
    let fake = FakeRelay::start(answer).await;
    let unused = crate::support::start_local_relay().await;
    let world = World::with_relay(
        unused,
        fake.url().to_string(),
        "[safety]\nmax_republish_fraction = 1.0\n",
    );
    let (config, doc, path) = world.planned().await;
    let report = apply(&config, &doc, &path, &ApplyOptions::default(), &now_secs)
        .await
        .unwrap();
    let republishes: Vec<_> = report
        .results
        .into_iter()
        .filter(|r| r.kind == "republish_profile")
        .collect();
    assert!(!republishes.is_empty());
    republishes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_says_ok_but_stores_nothing_is_caught_by_the_read_back() {
    let results = republish_results_against(FakeBehaviour::AnswerOk {
        accepted: true,
        message: String::new(),
    })
    .await;
    for result in results {
        assert_eq!(result.outcome, Outcome::Failed, "{result:?}");
        assert_eq!(
            result.reason.as_deref(),
            Some("the relay said OK but does not have the event")
        );
        assert!(result.event_id.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_answers_replaced_fails_with_its_message() {
    let results = republish_results_against(FakeBehaviour::AnswerOk {
        accepted: false,
        message: "replaced: have newer event".into(),
    })
    .await;
    for result in results {
        assert_eq!(result.outcome, Outcome::Failed);
        assert_eq!(
            result.reason.as_deref(),
            Some("the relay refused the event: replaced: have newer event")
        );
    }
}

#[test]
fn an_unreadable_relay_state_never_reads_as_missing() {
    let keys = Keys::generate();
    let plan = plan_one(&keys, RelayObservation::Unreadable("timed out".into()));
    assert!(plan.actions.is_empty());
    assert_eq!(
        plan.skipped[0].reason,
        reprofile::core::plan::SkipReason::RelayUnreachable
    );
    assert!(!plan.complete);
}
