//! The fixture world over a real relay: the plan must list exactly the actions
//! and skips of `expected.json`.

use reprofile::core::plan::{Action, AuthTagSource, Plan};
use serde_json::{json, Value};

use crate::world::{expected, World};

/// The plan's outcome for one agent, in expected.json's shape.
fn outcome_of(plan: &Plan, pubkey: &str) -> Value {
    let actions: Vec<Value> = plan
        .actions
        .iter()
        .filter(|a| a.agent() == pubkey)
        .map(|a| match a {
            Action::BackfillAvatar(b) => json!({
                "type": "backfill_avatar",
                "source": b.source.as_str(),
                "avatar_url": b.avatar_url,
            }),
            Action::RepublishProfile(r) => json!({
                "type": "republish_profile",
                "reasons": r.reasons.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
            }),
        })
        .collect();
    let skips: Vec<&str> = plan
        .skipped
        .iter()
        .filter(|s| s.agent == pubkey)
        .map(|s| s.reason.as_str())
        .collect();
    let mut outcome = json!({ "actions": actions });
    if let Some(reason) = skips.first() {
        outcome["skip"] = json!(reason);
    }
    assert!(skips.len() <= 1, "one outcome per agent: {skips:?}");
    outcome
}

/// Asserts that a plan of the fixture world has exactly the outcomes of
/// expected.json (actions, sources, avatars, reasons, skips, auth tags).
pub fn assert_matches_expected(plan: &Plan) {
    let expected = expected();
    assert_eq!(plan.agents, expected.len(), "every record is planned");
    for (pubkey, want) in &expected {
        let got = outcome_of(plan, pubkey);
        assert_eq!(
            got["actions"], want["actions"],
            "actions of {}",
            want["scenario"]
        );
        assert_eq!(
            got.get("skip"),
            want.get("skip"),
            "skip of {}",
            want["scenario"]
        );
        if let Some(owner) = want.get("auth_tag_owner") {
            let republish = plan
                .actions
                .iter()
                .find_map(|a| match a {
                    Action::RepublishProfile(r) if r.agent == *pubkey => Some(r),
                    _ => None,
                })
                .expect("the auth scenario republishes");
            assert_eq!(republish.auth_tag_source, AuthTagSource::Record);
            assert_eq!(republish.after.tags[0][1], owner.as_str().unwrap());
        }
    }
    let unchanged: Vec<&String> = expected
        .iter()
        .filter(|(_, v)| v["actions"].as_array().unwrap().is_empty() && v.get("skip").is_none())
        .map(|(k, _)| k)
        .collect();
    assert_eq!(plan.unchanged.iter().collect::<Vec<_>>(), unchanged);
    assert!(!plan.complete, "the down relay makes the plan incomplete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_world_plan_matches_expected_json() {
    let world = World::start().await;
    let plan = world.plan_now().await;
    assert_matches_expected(&plan);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_world_republish_keeps_the_unowned_kind0_fields() {
    let world = World::start().await;
    let plan = world.plan_now().await;
    let stale_name = plan
        .actions
        .iter()
        .find_map(|a| match a {
            Action::RepublishProfile(r) if r.name == "agent-00002-stale_name" => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        stale_name.after.content,
        r#"{"display_name":"agent-00002-stale_name","picture":"https://img.example/2.png","about":"about 2","nip05":"a2@example.com","lud16":"a2@ln.example","x_custom":{"z": 2},"name":"agent-00002-stale_name"}"#
    );
    assert_eq!(stale_name.after.created_at_must_exceed, 1_779_913_598);
}
