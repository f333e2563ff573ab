//! One test per rule of RECONCILE.md A to E, each named after its rule.
//!
//! Every test builds a small world from a table (records and what their relay
//! holds) and asserts the plan's outcome for it.

use nostr::nips::nip19::ToBech32;
use nostr::{Keys, SecretKey};

use super::*;
use crate::core::avatar::CommandAvatars;
use crate::core::known_keys::{KeyHash, KnownKeys};
use crate::core::model::{AvatarField, ExistingEvent, SecretText};
use crate::core::nip_oa;
use crate::core::plan::AuthTagSource;

const NOW: u64 = 1_800_000_000;
const RELAY: &str = "ws://127.0.0.1:7777";
const GOOSE: &str = "https://goose-docs.ai/img/logo_dark.png";

fn keys(n: u8) -> Keys {
    Keys::new(SecretKey::from_slice(&[n; 32]).expect("valid test key"))
}

fn pubkey(n: u8) -> String {
    keys(n).public_key().to_hex()
}

/// A well-formed record for test key `n`, with an avatar.
fn record(n: u8, name: &str) -> AgentRecord {
    let keys = keys(n);
    AgentRecord {
        index: usize::from(n),
        pubkey: keys.public_key().to_hex(),
        name: name.to_string(),
        secret_key: Some(SecretText::new(keys.secret_key().to_bech32().unwrap())),
        key_origin: Default::default(),
        relay_url: RELAY.to_string(),
        avatar_url: AvatarField::Text(format!("https://img/{n}.png")),
        persona_id: None,
        agent_command: Some("goose".to_string()),
        auth_tag: None,
        field_errors: Vec::new(),
    }
}

fn legacy(n: u8, name: &str) -> AgentRecord {
    AgentRecord {
        avatar_url: AvatarField::Absent,
        ..record(n, name)
    }
}

fn event(created_at: u64, content: &str) -> RelayObservation {
    RelayObservation::Newest(ExistingEvent {
        id: format!("{created_at:064x}"),
        created_at,
        content: content.to_string(),
        tags: Vec::new(),
    })
}

fn profile(name: &str, picture: &str) -> RelayObservation {
    event(
        NOW - 100,
        &serde_json::json!({"display_name": name, "picture": picture}).to_string(),
    )
}

fn down() -> RelayObservation {
    RelayObservation::Unreadable("connection refused".to_string())
}

fn world(agents: Vec<(AgentRecord, RelayObservation)>) -> Snapshot {
    Snapshot {
        agents: agents
            .into_iter()
            .map(|(record, observation)| AgentSnapshot {
                relay: Some(record.relay_url.clone()),
                record,
                observation,
            })
            .collect(),
        personas: [
            ("p1".to_string(), "https://p/1.png".to_string()),
            ("blank".to_string(), "  ".to_string()),
        ]
        .into_iter()
        .collect(),
    }
}

fn run(agents: Vec<(AgentRecord, RelayObservation)>) -> Plan {
    plan(&world(agents), &Policy::default(), NOW)
}

fn run_with(policy: &Policy, agents: Vec<(AgentRecord, RelayObservation)>) -> Plan {
    plan(&world(agents), policy, NOW)
}

fn only_skip(plan: &Plan) -> (SkipReason, &str) {
    assert!(
        plan.actions.is_empty(),
        "expected no action: {:?}",
        plan.actions
    );
    assert_eq!(
        plan.skipped.len(),
        1,
        "expected one skip: {:?}",
        plan.skipped
    );
    (plan.skipped[0].reason, plan.skipped[0].detail.as_str())
}

fn republish(plan: &Plan) -> &RepublishProfile {
    plan.actions
        .iter()
        .find_map(Action::as_republish)
        .expect("a republish action")
}

fn backfill(plan: &Plan) -> &BackfillAvatar {
    plan.actions
        .iter()
        .find_map(Action::as_backfill)
        .expect("a backfill action")
}

fn has_republish(plan: &Plan) -> bool {
    plan.actions
        .iter()
        .any(|a| matches!(a, Action::RepublishProfile(_)))
}

// ---- A. Record validity ----

#[test]
fn rule_a1_pubkey_not_64_lowercase_hex_skips_invalid_record() {
    for bad in [
        "",
        "abc",
        &pubkey(1).to_uppercase(),
        &format!("{}0", pubkey(1)),
    ] {
        let mut rec = record(1, "Ada");
        rec.pubkey = bad.to_string();
        let plan = run(vec![(rec, RelayObservation::NoProfile)]);
        assert_eq!(only_skip(&plan).0, SkipReason::InvalidRecord, "{bad}");
        assert_eq!(
            plan.skipped[0].agent, "record #1",
            "the raw text is never echoed"
        );
    }
}

#[test]
fn rule_a1_wrong_typed_field_skips_invalid_record() {
    let mut rec = record(1, "Ada");
    rec.field_errors = vec!["field `name` must be a string".to_string()];
    let plan = run(vec![(rec, RelayObservation::NoProfile)]);
    let (reason, detail) = only_skip(&plan);
    assert_eq!(reason, SkipReason::InvalidRecord);
    assert!(detail.contains("`name`"), "{detail}");
}

#[test]
fn rule_a2_duplicate_pubkey_skips_every_copy() {
    let first = record(1, "Ada");
    let mut second = record(1, "Ada again");
    second.index = 7;
    let plan = run(vec![
        (first, RelayObservation::NoProfile),
        (second, RelayObservation::NoProfile),
        (record(2, "Bob"), profile("Bob", "https://img/2.png")),
    ]);
    assert!(plan.actions.is_empty());
    let reasons: Vec<_> = plan.skipped.iter().map(|s| (s.reason, s.index)).collect();
    assert_eq!(
        reasons,
        vec![
            (SkipReason::DuplicateRecord, 1),
            (SkipReason::DuplicateRecord, 7)
        ]
    );
    assert_eq!(plan.unchanged, vec![pubkey(2)]);
}

#[test]
fn rule_a3_blank_name_skips_invalid_record() {
    for name in ["", "   ", "\t\n"] {
        let plan = run(vec![(record(1, name), RelayObservation::NoProfile)]);
        let (reason, detail) = only_skip(&plan);
        assert_eq!(reason, SkipReason::InvalidRecord);
        assert!(detail.contains("name is empty"));
    }
}

#[test]
fn rule_a4_relay_url_not_ws_or_wss_skips_invalid_relay_url() {
    for url in [
        "http://relay.example",
        "relay.example",
        "",
        "wss://",
        "ftp://x",
    ] {
        let mut rec = record(1, "Ada");
        rec.relay_url = url.to_string();
        let plan = run(vec![(rec, RelayObservation::NoProfile)]);
        assert_eq!(only_skip(&plan).0, SkipReason::InvalidRelayUrl, "{url:?}");
    }
    assert!(parse_relay_url("wss://relay.example/path").is_ok());
    assert_eq!(parse_relay_url("  "), Err(RelayUrlError::Empty));
    assert!(matches!(
        parse_relay_url("http://relay.example"),
        Err(RelayUrlError::NotWebSocket(_))
    ));
}

#[test]
fn rule_a5_unparsable_key_skips_invalid_key_when_republish_needed() {
    for key in [
        None,
        Some(""),
        Some("nsec1notakey"),
        Some(&"f".repeat(64)[..]),
    ] {
        let mut rec = record(1, "Ada");
        rec.secret_key = key.map(SecretText::new);
        let plan = run(vec![(rec, RelayObservation::NoProfile)]);
        let (reason, detail) = only_skip(&plan);
        assert_eq!(reason, SkipReason::InvalidKey, "{key:?}");
        if let Some(key) = key.filter(|k| !k.is_empty()) {
            assert!(!detail.contains(key), "the key is never printed");
        }
    }
}

#[test]
fn rule_a5_key_of_another_pubkey_skips_key_mismatch() {
    let mut rec = record(1, "Ada");
    let other = keys(2).secret_key().to_bech32().unwrap();
    rec.secret_key = Some(SecretText::new(other.clone()));
    let plan = run(vec![(rec, RelayObservation::NoProfile)]);
    let (reason, detail) = only_skip(&plan);
    assert_eq!(reason, SkipReason::KeyMismatch);
    assert!(!detail.contains(&other));
}

#[test]
fn rule_a5_from_known_keys_gives_the_outcome_of_deriving_for_every_case() {
    let other = keys(2).secret_key().to_bech32().unwrap();
    let cases: Vec<(&str, Option<String>)> = vec![
        (
            "own key",
            record(1, "Ada").secret_key.map(|s| s.expose().to_string()),
        ),
        (
            "own key padded",
            Some(format!("  {}\n", keys(1).secret_key().to_bech32().unwrap())),
        ),
        ("key of another pubkey", Some(other)),
        ("unparsable", Some("nsec1notakey".to_string())),
        ("blank", Some("  ".to_string())),
        ("missing", None),
    ];
    let mut known = KnownKeys::default();
    for (case, key) in cases {
        let mut rec = record(1, "Ada");
        rec.secret_key = key.map(SecretText::new);
        let derived = agent_keys(&rec).map(drop);
        let mut learned = Vec::new();
        let first = check_agent_key(&rec, &known, &mut learned);
        assert_eq!(first, derived, "{case}: first time, derived");
        // Only a key that parses is derived, and so remembered; the padded
        // key trims to the text already known.
        assert_eq!(
            learned.len(),
            usize::from(case == "own key" || case == "key of another pubkey"),
            "{case}"
        );
        known.extend(learned.into_iter().collect());
        let mut learned = Vec::new();
        let again = check_agent_key(&rec, &known, &mut learned);
        assert_eq!(again, derived, "{case}: from the known derivation");
        assert!(
            learned.is_empty(),
            "{case}: a known key is not derived again"
        );
    }
    // Key 1 (bare and padded trim to one text) and key 2.
    assert_eq!(known.len(), 2);
}

#[test]
fn rule_a5_a_known_derivation_answers_only_for_its_own_key_text() {
    // The derivation of key 1 is known; a record of pubkey 1 holding key 2
    // must still fail, and key 2 is derived (not looked up as key 1).
    let own = keys(1).secret_key().to_bech32().unwrap();
    let known: KnownKeys = [(KeyHash::of(&own), keys(1).public_key().to_bytes())]
        .into_iter()
        .collect();
    let mut rec = record(1, "Ada");
    rec.secret_key = Some(SecretText::new(keys(2).secret_key().to_bech32().unwrap()));
    let mut learned = Vec::new();
    let (reason, _) = check_agent_key(&rec, &known, &mut learned).unwrap_err();
    assert_eq!(reason, SkipReason::KeyMismatch);
    assert_eq!(
        learned,
        vec![(
            KeyHash::of(rec.secret_key.as_ref().unwrap().expose()),
            keys(2).public_key().to_bytes()
        )]
    );
}

#[test]
fn plan_remembering_keys_on_planner_threads_gives_the_plan_and_learns_each_key_once() {
    // Above the parallel threshold, every agent needing a republish: half
    // hold their own key, half the key of the next agent.
    let n = PARALLEL_MIN_AGENTS + 10;
    let secrets: Vec<Keys> = (0..n)
        .map(|i| {
            let mut secret = [9u8; 32];
            secret[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            Keys::new(SecretKey::from_slice(&secret).unwrap())
        })
        .collect();
    let agents: Vec<(AgentRecord, RelayObservation)> = (0..n)
        .map(|i| {
            let key = &secrets[if i % 2 == 0 { i } else { (i + 1) % n }];
            let rec = AgentRecord {
                index: i,
                pubkey: secrets[i].public_key().to_hex(),
                secret_key: Some(SecretText::new(key.secret_key().to_bech32().unwrap())),
                key_origin: Default::default(),
                ..record(1, &format!("agent {i}"))
            };
            (rec, RelayObservation::NoProfile)
        })
        .collect();
    let snapshot = world(agents);
    let policy = Policy {
        threads: 2,
        ..Policy::default()
    };
    let fresh = plan(&snapshot, &policy, NOW);
    assert_eq!(fresh.skipped.len(), n / 2, "every other key is another's");
    let (first, learned) = plan_remembering_keys(&snapshot, &policy, NOW, &KnownKeys::default());
    assert_eq!(first, fresh);
    // Odd agents hold the next (even) agent's key: n / 2 key texts in all.
    assert_eq!(learned.len(), n / 2, "each key text derived once");
    let (again, none) = plan_remembering_keys(&snapshot, &policy, NOW, &learned);
    assert_eq!(again, fresh);
    assert!(none.is_empty(), "nothing derived again");
}

#[test]
fn rule_a5_key_is_not_checked_when_no_republish_is_needed() {
    let mut rec = record(1, "Ada");
    rec.secret_key = Some(SecretText::new("garbage"));
    let plan = run(vec![(rec, profile("Ada", "https://img/1.png"))]);
    assert!(plan.skipped.is_empty());
    assert_eq!(plan.unchanged, vec![pubkey(1)]);
}

// ---- B. Expected avatar ----

#[test]
fn rule_b1_present_avatar_is_expected_and_not_backfilled() {
    let plan = run(vec![(
        record(1, "Ada"),
        profile("Ada", "https://img/other.png"),
    )]);
    assert_eq!(plan.actions.len(), 1);
    let action = republish(&plan);
    assert_eq!(action.picture, "https://img/1.png");
    assert_eq!(action.reasons, vec![RepublishReason::PictureChanged]);
}

#[test]
fn rule_b2_legacy_absent_null_and_blank_avatars_are_backfilled() {
    for field in [
        AvatarField::Absent,
        AvatarField::Null,
        AvatarField::Text("   ".to_string()),
    ] {
        let mut rec = record(1, "Ada");
        rec.avatar_url = field.clone();
        let plan = run(vec![(rec, profile("Ada", "https://c/custom.png"))]);
        let action = backfill(&plan);
        assert_eq!(action.source, AvatarSource::Relay, "{field:?}");
        assert_eq!(action.avatar_url, "https://c/custom.png");
        assert!(
            !has_republish(&plan),
            "name and picture match: no republish"
        );
    }
}

#[test]
fn rule_b2_persona_avatar_wins_over_the_relay_picture() {
    // Bug 3: the relay's picture had been overwritten by the runtime icon.
    let mut rec = legacy(1, "Ada");
    rec.persona_id = Some("p1".to_string());
    let plan = run(vec![(rec, profile("Ada", GOOSE))]);
    let fill = backfill(&plan);
    assert_eq!(
        (fill.source, fill.avatar_url.as_str()),
        (AvatarSource::Persona, "https://p/1.png")
    );
    let action = republish(&plan);
    assert_eq!(action.reasons, vec![RepublishReason::PictureChanged]);
    assert_eq!(action.picture, "https://p/1.png");
}

#[test]
fn rule_b2_dangling_or_blank_persona_falls_through_to_the_relay() {
    for persona in ["deleted", "blank"] {
        let mut rec = legacy(1, "Ada");
        rec.persona_id = Some(persona.to_string());
        let plan = run(vec![(rec, profile("Ada", "https://c/d.png"))]);
        let fill = backfill(&plan);
        assert_eq!(
            (fill.source, fill.avatar_url.as_str()),
            (AvatarSource::Relay, "https://c/d.png")
        );
    }
}

#[test]
fn rule_b2_command_avatar_when_the_relay_has_no_picture() {
    let mut rec = legacy(1, "Ada");
    rec.agent_command = Some("/usr/local/bin/codex-acp".to_string());
    let codex = CommandAvatars::builtin()
        .lookup("codex")
        .unwrap()
        .to_string();
    for relay in [
        RelayObservation::NoProfile,
        event(NOW - 5, "not json"),
        event(NOW - 5, r#"{"display_name":"Ada","picture":"  "}"#),
    ] {
        let plan = run(vec![(rec.clone(), relay)]);
        let fill = backfill(&plan);
        assert_eq!(
            (fill.source, fill.avatar_url.as_str()),
            (AvatarSource::Command, codex.as_str())
        );
        assert_eq!(republish(&plan).picture, codex);
    }
}

#[test]
fn rule_b3_relay_unreachable_blocks_command_fallback() {
    let plan = run(vec![(legacy(1, "Ada"), down())]);
    let (reason, detail) = only_skip(&plan);
    assert_eq!(reason, SkipReason::RelayUnreachable);
    assert!(detail.contains("legacy"), "{detail}");
    assert!(!plan.complete);
}

#[test]
fn rule_b3_names_a_null_avatar_null_and_only_an_absent_one_legacy() {
    for (field, named) in [
        (
            AvatarField::Null,
            "record with avatar_url null (no stored avatar) without",
        ),
        (AvatarField::Absent, "legacy record without"),
        (
            AvatarField::Text(" ".into()),
            "record with a blank avatar_url without",
        ),
    ] {
        let mut rec = legacy(1, "Ada");
        rec.avatar_url = field;
        let plan = run(vec![(rec, down())]);
        let (reason, detail) = only_skip(&plan);
        assert_eq!(reason, SkipReason::RelayUnreachable);
        assert!(detail.starts_with(named), "{detail}");
    }
    let mut rec = legacy(1, "Ada");
    rec.avatar_url = AvatarField::Null;
    let plan = run(vec![(rec.clone(), RelayObservation::NoProfile)]);
    let backfill = backfill(&plan);
    assert_eq!(
        backfill.before,
        AvatarField::Null,
        "the plan keeps the null"
    );
    rec.agent_command = Some("my-bot".to_string());
    let plan = run(vec![(rec, RelayObservation::NoProfile)]);
    let (reason, detail) = only_skip(&plan);
    assert_eq!(reason, SkipReason::NoAvatar);
    assert!(
        detail.starts_with("record with avatar_url null (no stored avatar): no persona avatar"),
        "{detail}"
    );
}

#[test]
fn rule_b4_nothing_yields_an_avatar_skips_no_avatar() {
    let mut rec = legacy(1, "Ada");
    rec.agent_command = Some("my-bot".to_string());
    for relay in [
        RelayObservation::NoProfile,
        event(NOW - 5, r#"{"picture":""}"#),
    ] {
        let plan = run(vec![(rec.clone(), relay)]);
        assert_eq!(only_skip(&plan).0, SkipReason::NoAvatar);
    }
    rec.agent_command = None;
    let plan = run(vec![(rec, RelayObservation::NoProfile)]);
    assert_eq!(only_skip(&plan).0, SkipReason::NoAvatar);
}

// ---- C. Does the profile need a republish? ----

#[test]
fn rule_c1_missing_profile_is_republished() {
    let plan = run(vec![(record(1, "Ada"), RelayObservation::NoProfile)]);
    let action = republish(&plan);
    assert_eq!(action.reasons, vec![RepublishReason::Missing]);
    assert_eq!(action.before, None);
}

#[test]
fn rule_c2_malformed_profile_is_republished() {
    let plan = run(vec![(record(1, "Ada"), event(NOW - 5, "[1,2]"))]);
    let action = republish(&plan);
    assert_eq!(action.reasons, vec![RepublishReason::Malformed]);
    assert_eq!(action.before.as_ref().unwrap().content, "[1,2]");
}

#[test]
fn rule_c3_name_and_picture_changes_are_both_reasons() {
    let plan = run(vec![(
        record(1, "Ada"),
        profile("Old", "https://img/old.png"),
    )]);
    assert_eq!(
        republish(&plan).reasons,
        vec![
            RepublishReason::NameChanged,
            RepublishReason::PictureChanged
        ]
    );
}

#[test]
fn rule_c3_comparison_is_exact_string_equality() {
    for (name, picture) in [
        ("Ada ", "https://img/1.png"),
        ("ada", "https://img/1.png"),
        ("Ada", "https://img/1.png/"),
    ] {
        let plan = run(vec![(record(1, "Ada"), profile(name, picture))]);
        assert!(has_republish(&plan), "{name:?} {picture:?}");
    }
    let plan = run(vec![(
        record(1, "Ada"),
        event(
            NOW - 5,
            r#"{"display_name":5,"picture":"https://img/1.png"}"#,
        ),
    )]);
    assert_eq!(republish(&plan).reasons, vec![RepublishReason::NameChanged]);
}

#[test]
fn rule_c4_matching_profile_is_unchanged() {
    let plan = run(vec![(
        record(1, "Ada"),
        profile("Ada", "https://img/1.png"),
    )]);
    assert!(plan.actions.is_empty() && plan.skipped.is_empty());
    assert_eq!(plan.unchanged, vec![pubkey(1)]);
    assert!(plan.complete);
}

#[test]
fn rule_c5_unknown_relay_is_never_missing() {
    let mut with_persona = legacy(2, "Bob");
    with_persona.persona_id = Some("p1".to_string());
    let plan = run(vec![(record(1, "Ada"), down()), (with_persona, down())]);
    assert!(
        plan.actions.is_empty(),
        "no republish and not even a backfill"
    );
    assert!(plan
        .skipped
        .iter()
        .all(|s| s.reason == SkipReason::RelayUnreachable));
    assert_eq!(plan.skipped.len(), 2);
    assert!(!plan.complete);
}

// ---- D. The republished event ----

#[test]
fn rule_d2_republish_content_keeps_other_keys_and_adds_name() {
    let plan = run(vec![(
        record(1, "Ada"),
        event(
            NOW - 5,
            r#"{"display_name":"Old","picture":"https://img/1.png","about":"hi","x":{"k":[1,2]}}"#,
        ),
    )]);
    assert_eq!(
        republish(&plan).after.content,
        r#"{"display_name":"Ada","picture":"https://img/1.png","about":"hi","x":{"k":[1,2]},"name":"Ada"}"#
    );
}

/// The `created_at` apply signs the plan's republish with at `NOW` (D3).
fn signed_at(plan: &Plan) -> u64 {
    crate::core::apply::event_to_sign(
        republish(plan),
        NOW,
        Policy::default().future_tolerance_secs,
    )
    .expect("signable")
    .created_at
}

#[test]
fn rule_d3_created_at_is_now_or_one_after_the_replaced_event() {
    let plan = run(vec![(
        record(1, "Ada"),
        profile("Old", "https://img/1.png"),
    )]);
    assert_eq!(signed_at(&plan), NOW);
    assert_eq!(republish(&plan).after.created_at_must_exceed, NOW - 100);

    let plan = run(vec![(
        record(1, "Ada"),
        event(NOW + 60, r#"{"display_name":"Old"}"#),
    )]);
    assert_eq!(signed_at(&plan), NOW + 61);
    assert_eq!(next_created_at(NOW, None), NOW);
    assert_eq!(next_created_at(NOW, Some(NOW)), NOW + 1);
}

#[test]
fn rule_d3_future_dated_profile_beyond_tolerance_skips_clock_skew() {
    let tolerance = Policy::default().future_tolerance_secs;
    let plan = run(vec![(
        record(1, "Ada"),
        event(NOW + tolerance, r#"{"display_name":"Old"}"#),
    )]);
    assert_eq!(only_skip(&plan).0, SkipReason::ClockSkew);
    let plan = run(vec![(
        record(1, "Ada"),
        event(NOW + tolerance - 1, r#"{"display_name":"Old"}"#),
    )]);
    assert_eq!(signed_at(&plan), NOW + tolerance);
}

fn owner() -> Keys {
    keys(0xA0)
}

fn record_with_tag(conditions: &str) -> AgentRecord {
    let mut rec = record(1, "Ada");
    let tag = nip_oa::sign(&owner(), &rec.pubkey, conditions);
    rec.auth_tag = Some(serde_json::to_string(&tag).unwrap());
    rec
}

#[test]
fn rule_d4_record_auth_tag_is_carried() {
    let rec = record_with_tag(&format!("kind=0&created_at<{}", NOW + 1000));
    let plan = run(vec![(rec, RelayObservation::NoProfile)]);
    let action = republish(&plan);
    assert_eq!(action.auth_tag_source, AuthTagSource::Record);
    assert_eq!(action.after.tags.len(), 1);
    assert_eq!(action.after.tags[0][0], "auth");
    assert_eq!(action.after.tags[0][1], owner().public_key().to_hex());
}

#[test]
fn rule_d4_record_auth_tag_invalid_for_new_event_skips_auth_tag_invalid() {
    let expired = format!("kind=0&created_at<{NOW}");
    let mut bad_sig = record_with_tag("kind=0");
    bad_sig.auth_tag = bad_sig
        .auth_tag
        .map(|t| t.replace("\",\"kind=0\",\"", "\",\"kind=0&kind=0\",\""));
    for rec in [
        record_with_tag("kind=1"),
        record_with_tag(&expired),
        bad_sig,
        AgentRecord {
            auth_tag: Some("[\"auth\"".to_string()),
            ..record(1, "Ada")
        },
    ] {
        let plan = run(vec![(rec, RelayObservation::NoProfile)]);
        let (reason, detail) = only_skip(&plan);
        assert_eq!(reason, SkipReason::AuthTagInvalid, "{detail}");
    }
}

#[test]
fn rule_d4_invalid_record_tag_is_dropped_when_config_allows() {
    let policy = Policy {
        publish_without_invalid_auth_tag: true,
        ..Policy::default()
    };
    let plan = run_with(
        &policy,
        vec![(record_with_tag("kind=1"), RelayObservation::NoProfile)],
    );
    let action = republish(&plan);
    assert_eq!(action.auth_tag_source, AuthTagSource::DroppedInvalid);
    assert!(action.after.tags.is_empty());
}

fn event_with_tags(tags: Vec<Vec<String>>) -> RelayObservation {
    RelayObservation::Newest(ExistingEvent {
        id: "ab".repeat(32),
        created_at: NOW - 10,
        content: r#"{"display_name":"Old","picture":"https://img/1.png"}"#.to_string(),
        tags,
    })
}

#[test]
fn rule_d4_existing_event_tag_is_carried_while_valid() {
    let agent = pubkey(1);
    let valid = nip_oa::sign(&owner(), &agent, "kind=0");
    let plan = run(vec![(
        record(1, "Ada"),
        event_with_tags(vec![vec!["t".into(), "x".into()], valid.clone()]),
    )]);
    let action = republish(&plan);
    assert_eq!(action.auth_tag_source, AuthTagSource::Relay);
    assert_eq!(action.after.tags, vec![valid]);

    let expired = nip_oa::sign(&owner(), &agent, &format!("kind=0&created_at<{NOW}"));
    let plan = run(vec![(record(1, "Ada"), event_with_tags(vec![expired]))]);
    assert_eq!(republish(&plan).auth_tag_source, AuthTagSource::None);
    assert!(republish(&plan).after.tags.is_empty());

    let twice = vec![
        nip_oa::sign(&owner(), &agent, "kind=0"),
        nip_oa::sign(&keys(0xA1), &agent, "kind=0"),
    ];
    let plan = run(vec![(record(1, "Ada"), event_with_tags(twice))]);
    assert!(
        republish(&plan).after.tags.is_empty(),
        "two auth tags: no valid one"
    );
}

#[test]
fn rule_d4_record_tag_wins_over_the_existing_event_tag() {
    let rec = record_with_tag("kind=0");
    let relay_tag = nip_oa::sign(&keys(0xA1), &rec.pubkey, "kind=0");
    let plan = run(vec![(rec, event_with_tags(vec![relay_tag]))]);
    let action = republish(&plan);
    assert_eq!(action.auth_tag_source, AuthTagSource::Record);
    assert_eq!(action.after.tags[0][1], owner().public_key().to_hex());
}

// ---- E. Ordering and idempotence (the planner's share) ----

#[test]
fn rule_e1_backfill_comes_first_and_the_republish_uses_its_avatar() {
    let plan = run(vec![(legacy(1, "Ada"), RelayObservation::NoProfile)]);
    assert_eq!(plan.actions.len(), 2);
    assert!(matches!(plan.actions[0], Action::BackfillAvatar(_)));
    assert_eq!(backfill(&plan).avatar_url, GOOSE);
    assert_eq!(republish(&plan).picture, GOOSE);
    assert!(republish(&plan).after.content.contains(GOOSE));
}

#[test]
fn rule_e4_plan_is_deterministic_and_ordered_by_pubkey() {
    let agents: Vec<_> = (1..=20u8)
        .map(|n| {
            let relay = if n % 3 == 0 {
                RelayObservation::NoProfile
            } else {
                profile("Old", "x")
            };
            let rec = if n % 2 == 0 {
                legacy(n, &format!("agent {n}"))
            } else {
                record(n, &format!("agent {n}"))
            };
            (rec, relay)
        })
        .collect();
    let mut reversed = agents.clone();
    reversed.reverse();
    let forward = run(agents);
    let backward = run(reversed);
    assert_eq!(forward, backward);
    let order: Vec<_> = forward
        .actions
        .iter()
        .map(|a| (a.agent().to_string(), a.type_name()))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "by pubkey, backfill before republish");
}

#[test]
fn backfill_only_mode_plans_no_republish_and_ignores_keys() {
    let policy = Policy {
        mode: PlanMode::BackfillOnly,
        ..Policy::default()
    };
    let mut persona = legacy(2, "Bob");
    persona.persona_id = Some("p1".to_string());
    persona.secret_key = None;
    let plan = run_with(
        &policy,
        vec![
            (legacy(1, "Ada"), RelayObservation::NoProfile),
            (persona, down()),
            (legacy(3, "Cy"), down()),
            (record(4, "Di"), RelayObservation::NoProfile),
        ],
    );
    assert!(!has_republish(&plan));
    let fills: Vec<_> = plan.actions.iter().map(|a| a.agent().to_string()).collect();
    let mut expected = vec![pubkey(1), pubkey(2)];
    expected.sort();
    assert_eq!(fills, expected);
    assert_eq!(
        only_reason(&plan, &pubkey(3)),
        Some(SkipReason::RelayUnreachable)
    );
    assert_eq!(plan.unchanged, vec![pubkey(4)]);
}

fn only_reason(plan: &Plan, agent: &str) -> Option<SkipReason> {
    plan.skipped
        .iter()
        .find(|s| s.agent == agent)
        .map(|s| s.reason)
}

#[test]
fn worked_example_of_reconcile_md() {
    let ada = |n: u8| AgentRecord {
        avatar_url: AvatarField::Text("https://a/x.png".into()),
        ..record(n, "Ada")
    };
    let mut persona_goose = legacy(4, "Ada");
    persona_goose.persona_id = Some("p4".into());
    let mut codex = legacy(5, "Ada");
    codex.agent_command = Some("/usr/bin/codex-acp".into());
    let mut bot = legacy(8, "Ada");
    bot.agent_command = Some("my-bot".into());
    let mut snapshot = world(vec![
        (ada(1), profile("Ada", "https://a/x.png")),
        (ada(2), RelayObservation::NoProfile),
        (
            ada(3),
            event(
                NOW - 5,
                r#"{"display_name":"Old","picture":"https://a/x.png","about":"hi"}"#,
            ),
        ),
        (persona_goose, profile("Ada", GOOSE)),
        (codex, profile("Ada", "https://c/custom.png")),
        (legacy(6, "Ada"), RelayObservation::NoProfile),
        (legacy(7, "Ada"), down()),
        (bot, RelayObservation::NoProfile),
    ]);
    snapshot
        .personas
        .insert("p4".into(), "https://p/1.png".into());
    let plan = plan(&snapshot, &Policy::default(), NOW);
    let outcome = |n: u8| -> String {
        let agent = pubkey(n);
        if let Some(reason) = only_reason(&plan, &agent) {
            return format!("skip {reason}");
        }
        let parts: Vec<String> = plan
            .actions
            .iter()
            .filter(|a| a.agent() == agent)
            .map(|a| match a {
                Action::BackfillAvatar(b) => format!("backfill {}", b.source.as_str()),
                Action::RepublishProfile(r) => {
                    let reasons: Vec<_> = r.reasons.iter().map(|x| x.as_str()).collect();
                    format!("republish {}", reasons.join(","))
                }
            })
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join("; ")
        }
    };
    assert_eq!(outcome(1), "none");
    assert_eq!(outcome(2), "republish missing");
    assert_eq!(outcome(3), "republish name_changed");
    assert!(republish_of(&plan, 3)
        .after
        .content
        .contains(r#""about":"hi""#));
    assert_eq!(outcome(4), "backfill persona; republish picture_changed");
    assert_eq!(outcome(5), "backfill relay");
    assert_eq!(outcome(6), "backfill command; republish missing");
    assert_eq!(outcome(7), "skip relay_unreachable");
    assert_eq!(outcome(8), "skip no_avatar");
}

fn republish_of(plan: &Plan, n: u8) -> &RepublishProfile {
    let agent = pubkey(n);
    plan.actions
        .iter()
        .find_map(|a| match a {
            Action::RepublishProfile(r) if r.agent == agent => Some(r),
            _ => None,
        })
        .unwrap()
}

#[test]
fn rule_e4_parallel_planning_gives_the_same_plan() {
    let agents: Vec<_> = (0..2_500u32)
        .map(|i| {
            let mut secret = [7u8; 32];
            secret[..4].copy_from_slice(&i.to_be_bytes());
            let keys = Keys::new(SecretKey::from_slice(&secret).unwrap());
            let mut rec = record(1, &format!("agent {i}"));
            rec.index = i as usize;
            rec.pubkey = keys.public_key().to_hex();
            rec.secret_key = Some(SecretText::new(keys.secret_key().to_bech32().unwrap()));
            let relay = match i % 4 {
                0 => RelayObservation::NoProfile,
                1 => profile(&format!("agent {i}"), "https://img/1.png"),
                2 => down(),
                _ => profile("stale", "https://img/1.png"),
            };
            (rec, relay)
        })
        .collect();
    let snapshot = world(agents);
    let sequential = plan(&snapshot, &Policy::default(), NOW);
    let parallel = plan(
        &snapshot,
        &Policy {
            threads: 3,
            ..Policy::default()
        },
        NOW,
    );
    assert_eq!(sequential, parallel);
    assert_eq!(sequential.actions.len(), 1_250);
}

#[test]
fn an_agent_an_earlier_plan_found_unchanged_is_taken_as_unchanged_without_a_decision() {
    // Above the parallel threshold: the promise is read at each agent's own
    // position on every planner thread. Agents 0 and n - 1 are in sync, the
    // rest have no profile.
    let n = PARALLEL_MIN_AGENTS + 10;
    let agents: Vec<(AgentRecord, RelayObservation)> = (0..n)
        .map(|i| {
            let mut secret = [7u8; 32];
            secret[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            let own = Keys::new(SecretKey::from_slice(&secret).unwrap());
            let rec = AgentRecord {
                index: i,
                pubkey: own.public_key().to_hex(),
                secret_key: Some(SecretText::new(own.secret_key().to_bech32().unwrap())),
                key_origin: Default::default(),
                ..record(1, "Ada")
            };
            let observation = if i == 0 || i == n - 1 {
                profile("Ada", "https://img/1.png")
            } else {
                RelayObservation::NoProfile
            };
            (rec, observation)
        })
        .collect();
    let snapshot = world(agents);
    let policy = Policy {
        threads: 2,
        ..Policy::default()
    };
    let first = plan_remembering(&snapshot, &policy, NOW, &KnownKeys::default(), &[]);
    assert_eq!(first.plan, plan(&snapshot, &policy, NOW));
    let flagged: Vec<usize> = (0..n).filter(|&i| first.unchanged[i]).collect();
    assert_eq!(flagged, vec![0, n - 1], "which agents were unchanged");
    assert_eq!(first.plan.unchanged.len(), 2);

    // A promise the planner keeps without deciding: agent 1 (and the last
    // of the second thread's part) taken as unchanged though their relays
    // hold no profile.
    let mut promised = first.unchanged.clone();
    promised[1] = true;
    promised[n - 2] = true;
    let trusted = plan_remembering(&snapshot, &policy, NOW + 60, &first.learned, &promised);
    assert_eq!(trusted.unchanged, promised);
    assert_eq!(trusted.plan.unchanged.len(), 4);
    assert_eq!(trusted.plan.actions.len(), first.plan.actions.len() - 2);
    // A shorter promise: the agents past its end are decided.
    let short = plan_remembering(&snapshot, &policy, NOW, &first.learned, &[true]);
    assert_eq!(short.plan, first.plan);
    assert!(short.learned.is_empty(), "every key was known");
}

// ---- Buzz desktop 0.4: every agent on every community relay ----

const COMMUNITY_A: &str = "wss://a.buzz.example";
const COMMUNITY_B: &str = "wss://b.buzz.example";

/// `record` on both communities, each with what that relay holds.
fn on_both(record: AgentRecord, a: RelayObservation, b: RelayObservation) -> Plan {
    let entries = crate::core::model::on_communities(
        vec![record],
        &[COMMUNITY_A.to_string(), COMMUNITY_B.to_string()],
    );
    let agents = entries.into_iter().zip([a, b]).collect();
    run(agents)
}

fn republish_relays(plan: &Plan) -> Vec<&str> {
    plan.actions
        .iter()
        .filter_map(Action::as_republish)
        .map(|r| r.relay.as_str())
        .collect()
}

#[test]
fn communities_one_republish_per_relay_that_needs_it() {
    let plan = on_both(
        record(1, "Ada"),
        profile("Ada", "https://img/1.png"),
        RelayObservation::NoProfile,
    );
    // Right on A, missing on B: one republish, to B only; one record, no
    // duplicate_record although it is planned twice.
    assert_eq!(republish_relays(&plan), [COMMUNITY_B]);
    assert_eq!(plan.unchanged, [pubkey(1)]);
    assert!(plan.skipped.is_empty(), "{:?}", plan.skipped);
    // Each republish is its own action.
    let both = on_both(
        record(1, "Ada"),
        RelayObservation::NoProfile,
        profile("Old", "https://img/1.png"),
    );
    assert_eq!(republish_relays(&both), [COMMUNITY_A, COMMUNITY_B]);
    let ids: std::collections::BTreeSet<String> = both.actions.iter().map(Action::id).collect();
    assert_eq!(ids.len(), 2, "action ids are unique per relay");
}

#[test]
fn communities_rule_b2_persona_avatar_wins_on_every_relay_with_one_backfill() {
    let mut rec = legacy(1, "Ada");
    rec.persona_id = Some("p1".into());
    let plan = on_both(
        rec,
        profile("Ada", GOOSE),
        profile("Ada", "https://other/x.png"),
    );
    let backfills: Vec<&BackfillAvatar> = plan
        .actions
        .iter()
        .filter_map(Action::as_backfill)
        .collect();
    assert_eq!(backfills.len(), 1, "one backfill for the one record");
    assert_eq!(backfills[0].source, AvatarSource::Persona);
    assert_eq!(backfills[0].avatar_url, "https://p/1.png");
    // E1: the backfill comes before the agent's republishes.
    assert!(plan.actions[0].as_backfill().is_some());
    assert_eq!(republish_relays(&plan), [COMMUNITY_A, COMMUNITY_B]);
}

#[test]
fn communities_rule_b2_a_picture_the_relays_agree_on_is_backfilled() {
    let plan = on_both(
        legacy(1, "Ada"),
        profile("Ada", "https://c/custom.png"),
        RelayObservation::NoProfile,
    );
    let b = backfill(&plan);
    assert_eq!(
        (b.source, b.avatar_url.as_str()),
        (AvatarSource::Relay, "https://c/custom.png")
    );
    // Missing on B: republished there with the agreed picture.
    assert_eq!(republish_relays(&plan), [COMMUNITY_B]);
    assert_eq!(republish(&plan).picture, "https://c/custom.png");
}

#[test]
fn communities_rule_b2_relays_that_disagree_are_a_skip_naming_them() {
    let plan = on_both(
        legacy(1, "Ada"),
        profile("Ada", "https://c/one.png"),
        profile("Ada", "https://c/two.png"),
    );
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(plan.skipped.len(), 2);
    for skip in &plan.skipped {
        assert_eq!(skip.reason, SkipReason::RelaysDisagree);
        assert!(skip.detail.contains(COMMUNITY_A), "{}", skip.detail);
        assert!(skip.detail.contains("https://c/two.png"), "{}", skip.detail);
    }
}

#[test]
fn communities_rule_b3_any_unreadable_relay_blocks_the_command_fallback() {
    let plan = on_both(legacy(1, "Ada"), RelayObservation::NoProfile, down());
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert!(!plan.complete);
    assert!(plan
        .skipped
        .iter()
        .all(|s| s.reason == SkipReason::RelayUnreachable));
}

#[test]
fn communities_rule_b2_command_default_when_no_relay_has_a_picture() {
    let plan = on_both(
        legacy(1, "Ada"),
        RelayObservation::NoProfile,
        RelayObservation::NoProfile,
    );
    let b = backfill(&plan);
    assert_eq!(
        (b.source, b.avatar_url.as_str()),
        (AvatarSource::Command, GOOSE)
    );
    assert_eq!(republish_relays(&plan), [COMMUNITY_A, COMMUNITY_B]);
}

/// The one backfill of a record on several relays goes with its first
/// entry that is not skipped: a relay-specific skip on the first relay
/// (its clock ahead) leaves the backfill the other relays' republishes
/// publish (before: it went with the skipped entry, and apply found those
/// republishes stale, the store still without the avatar).
#[test]
fn communities_rule_b2_the_backfill_survives_a_skip_on_the_first_relay() {
    let tolerance = Policy::default().future_tolerance_secs;
    let plan = on_both(
        legacy(1, "Ada"),
        event(NOW + tolerance, r#"{"display_name":"Ada"}"#),
        RelayObservation::NoProfile,
    );
    assert_eq!(plan.skipped.len(), 1, "{:?}", plan.skipped);
    assert_eq!(plan.skipped[0].reason, SkipReason::ClockSkew);
    let b = backfill(&plan);
    assert_eq!(
        (b.source, b.avatar_url.as_str()),
        (AvatarSource::Command, GOOSE)
    );
    assert!(
        plan.actions[0].as_backfill().is_some(),
        "E1: backfill first"
    );
    assert_eq!(republish_relays(&plan), [COMMUNITY_B]);
    assert_eq!(republish(&plan).picture, GOOSE);
    // Skipped on every relay: no backfill at all.
    let skew = || event(NOW + tolerance, r#"{"display_name":"Ada"}"#);
    let plan = on_both(legacy(1, "Ada"), skew(), skew());
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
}

#[test]
fn communities_rule_a4_an_empty_relay_url_says_to_set_communities() {
    let mut rec = record(1, "Ada");
    rec.relay_url = String::new();
    let plan = run(vec![(rec, RelayObservation::NoProfile)]);
    let (reason, detail) = only_skip(&plan);
    assert_eq!(reason, SkipReason::InvalidRelayUrl);
    assert!(detail.contains("[buzz] communities"), "{detail}");
}

// ---- C6: who owns the profile ----

fn agent_owned() -> Policy {
    Policy {
        owner: crate::core::model::ProfileOwner::Agent,
        ..Policy::default()
    }
}

#[test]
fn rule_c6_agent_owner_leaves_a_present_profile_whatever_its_name_or_picture() {
    let plan = run_with(
        &agent_owned(),
        vec![(
            record(1, "Ada"),
            profile("Ada the agent", "https://own/pic.png"),
        )],
    );
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(plan.unchanged, [pubkey(1)]);
    assert_eq!(plan.agent_managed.len(), 1);
    assert_eq!(
        plan.agent_managed[0].differences,
        [
            RepublishReason::NameChanged,
            RepublishReason::PictureChanged
        ]
    );
    assert_eq!(plan.agent_managed[0].relay, RELAY);
    // The same world under the default owner: republished (C3, as before).
    let record_owned = run(vec![(
        record(1, "Ada"),
        profile("Ada the agent", "https://own/pic.png"),
    )]);
    assert_eq!(
        republish(&record_owned).reasons,
        [
            RepublishReason::NameChanged,
            RepublishReason::PictureChanged
        ]
    );
    assert!(record_owned.agent_managed.is_empty());
}

#[test]
fn rule_c6_agent_owner_still_publishes_a_missing_or_malformed_profile() {
    let missing = run_with(
        &agent_owned(),
        vec![(record(1, "Ada"), RelayObservation::NoProfile)],
    );
    assert_eq!(republish(&missing).reasons, [RepublishReason::Missing]);
    let malformed = run_with(
        &agent_owned(),
        vec![(record(1, "Ada"), event(NOW - 5, "[1]"))],
    );
    assert_eq!(republish(&malformed).reasons, [RepublishReason::Malformed]);
    // An unreadable relay is still unknown, never "the agent's".
    let down_plan = run_with(&agent_owned(), vec![(record(1, "Ada"), down())]);
    assert_eq!(only_skip(&down_plan).0, SkipReason::RelayUnreachable);
}

#[test]
fn rule_c6_agent_owner_still_backfills_from_the_agents_own_picture() {
    let plan = run_with(
        &agent_owned(),
        vec![(
            legacy(1, "Ada"),
            profile("Ada the agent", "https://own/pic.png"),
        )],
    );
    let b = backfill(&plan);
    assert_eq!(
        (b.source, b.avatar_url.as_str()),
        (AvatarSource::Relay, "https://own/pic.png")
    );
    assert!(plan.actions.iter().all(|a| a.as_republish().is_none()));
    // The name differs and stays: shown, not republished.
    assert_eq!(
        plan.agent_managed[0].differences,
        [RepublishReason::NameChanged]
    );
    assert!(plan.unchanged.is_empty(), "it has a backfill");
}

#[test]
fn rule_c6_a_per_agent_owner_overrides_the_default_in_a_mixed_world() {
    let mut policy = Policy::default();
    policy
        .owners
        .insert(pubkey(2), crate::core::model::ProfileOwner::Agent);
    let plan = run_with(
        &policy,
        vec![
            (record(1, "Ada"), profile("Other", "https://img/1.png")),
            (record(2, "Bea"), profile("Other", "https://img/2.png")),
        ],
    );
    let republished: Vec<&str> = plan
        .actions
        .iter()
        .filter_map(Action::as_republish)
        .map(|r| r.agent.as_str())
        .collect();
    assert_eq!(republished, [pubkey(1)]);
    assert_eq!(plan.agent_managed.len(), 1);
    assert_eq!(plan.agent_managed[0].agent, pubkey(2));
    assert_eq!(plan.agent_owned, 1);
}

/// Rule D2: a republish keeps every field it does not own, in its order
/// (under "agent" only a missing or malformed profile is republished, and
/// then there is nothing to keep).
#[test]
fn rule_d2_a_republish_keeps_about_nip05_lud16_bot_and_unknown_keys() {
    let content = r#"{"about":"I fetch","display_name":"Old","nip05":"ada@x.example","lud16":"ada@pay.example","bot":true,"picture":"https://img/1.png","x_custom":{"k":[1,2]}}"#;
    let plan = run(vec![(record(1, "Ada"), event(NOW - 5, content))]);
    let after: serde_json::Value = serde_json::from_str(&republish(&plan).after.content).unwrap();
    let keys: Vec<&str> = after
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "about",
            "display_name",
            "nip05",
            "lud16",
            "bot",
            "picture",
            "x_custom",
            "name"
        ]
    );
    assert_eq!(after["display_name"], "Ada");
    assert_eq!(after["about"], "I fetch");
    assert_eq!(after["nip05"], "ada@x.example");
    assert_eq!(after["lud16"], "ada@pay.example");
    assert_eq!(after["bot"], true);
    assert_eq!(after["x_custom"]["k"][1], 2);
}

/// A problem found without the relay is reported as itself whatever the
/// relay did: a record whose key is another's, or whose own NIP-OA tag is
/// invalid, is `key_mismatch` or `auth_tag_invalid` with its relay down
/// too (as `validate` reports it), not `relay_unreachable`. A sound record
/// on a down relay is still `relay_unreachable`.
#[test]
fn rule_a5_and_d4_problems_found_without_the_relay_are_reported_as_themselves() {
    let mut mismatch = record(1, "Ada");
    mismatch.secret_key = record(2, "Bea").secret_key;
    let plan = run(vec![(mismatch, down())]);
    assert_eq!(only_skip(&plan).0, SkipReason::KeyMismatch);

    let mut tagged = record(1, "Ada");
    let owner = keys(9);
    tagged.auth_tag = Some(
        serde_json::to_string(&crate::core::nip_oa::sign(&owner, &pubkey(1), "kind=1")).unwrap(),
    );
    let plan = run(vec![(tagged, down())]);
    assert_eq!(only_skip(&plan).0, SkipReason::AuthTagInvalid);

    let plan = run(vec![(record(1, "Ada"), down())]);
    assert_eq!(only_skip(&plan).0, SkipReason::RelayUnreachable);
    assert!(!plan.complete);
}

#[test]
fn rule_a1_a_record_without_a_pubkey_says_it_has_none() {
    let mut rec = record(1, "Ada");
    rec.pubkey = String::new();
    let plan = run(vec![(rec, RelayObservation::NoProfile)]);
    let (reason, detail) = only_skip(&plan);
    assert_eq!(reason, SkipReason::InvalidRecord);
    assert!(detail.starts_with("has no pubkey"), "{detail}");
    let mut bad = record(1, "Ada");
    bad.pubkey = "xyz".into();
    let plan = run(vec![(bad, RelayObservation::NoProfile)]);
    assert!(only_skip(&plan)
        .1
        .starts_with("pubkey is not 64 lower-case hex digits"));
}
