//! Property tests of the planner over generated worlds (proptest).
//!
//! Worlds mix every case the rules know: valid and broken records, legacy
//! avatars, personas that resolve or not, keys that match or not, auth tags
//! valid or not, and relay states missing, present (with foreign keys),
//! malformed, future-dated or unknown. A small simulator plays a plan onto
//! the world (the store gets the backfills, the relay the republished
//! events) so that convergence can be checked without I/O.

use std::collections::BTreeMap;

use nostr::nips::nip19::ToBech32;
use nostr::{Keys, SecretKey};
use proptest::prelude::*;

use super::content::ProfileContent;
use super::known_keys::{KeyHash, KnownKeys};
use super::model::{
    AgentRecord, AgentSnapshot, AvatarField, ExistingEvent, PlanMode, Policy, RelayObservation,
    SecretText, Snapshot,
};
use super::nip_oa;
use super::plan::{Action, AvatarSource, Plan};
use super::rules::{
    check_agent_key, derive_key, plan, plan_remembering, plan_remembering_keys, reaches_key_check,
};

const NOW: u64 = 1_800_000_000;

fn keys(n: u8) -> Keys {
    Keys::new(SecretKey::from_slice(&[n.max(1); 32]).expect("valid key"))
}

fn owner() -> Keys {
    keys(200)
}

/// A generated agent: choices that a strategy picks, turned into a record
/// and an observation by [`build`].
#[derive(Debug, Clone)]
struct AgentSpec {
    key: u8,
    pubkey_kind: u8,
    name: &'static str,
    avatar: u8,
    persona: u8,
    command: u8,
    relay_url: u8,
    secret: u8,
    auth: u8,
    observation: u8,
    content: Vec<(String, String)>,
    shows_name: bool,
    shows_picture: bool,
    created_offset: u8,
}

fn agent_spec() -> impl Strategy<Value = AgentSpec> {
    (
        (
            1u8..30,
            0u8..20,
            prop::sample::select(vec!["Ada", "Bob", " Cy ", "", "   ", "Zoë 🦀"]),
        ),
        (0u8..5, 0u8..4, 0u8..3, 0u8..10, 0u8..10, 0u8..8),
        (
            0u8..12,
            prop::collection::vec(("[a-z_]{1,8}", "[ -~]{0,12}"), 0..5),
            any::<bool>(),
            any::<bool>(),
            0u8..4,
        ),
    )
        .prop_map(
            |(
                (key, pubkey_kind, name),
                (avatar, persona, command, relay_url, secret, auth),
                (observation, content, shows_name, shows_picture, created_offset),
            )| AgentSpec {
                key,
                pubkey_kind,
                name,
                avatar,
                persona,
                command,
                relay_url,
                secret,
                auth,
                observation,
                content,
                shows_name,
                shows_picture,
                created_offset,
            },
        )
}

fn build(index: usize, spec: &AgentSpec) -> AgentSnapshot {
    let agent_keys = keys(spec.key);
    let pubkey = match spec.pubkey_kind {
        0 => "not-a-pubkey".to_string(),
        1 => agent_keys.public_key().to_hex().to_uppercase(),
        _ => agent_keys.public_key().to_hex(),
    };
    let avatar_url = match spec.avatar {
        0 => AvatarField::Absent,
        1 => AvatarField::Null,
        2 => AvatarField::Text("  ".into()),
        _ => AvatarField::Text(format!("https://img/{}.png", spec.key)),
    };
    let relay_url = match spec.relay_url {
        0 => "http://relay.example".to_string(),
        _ => "ws://127.0.0.1:7777".to_string(),
    };
    let hex = agent_keys.public_key().to_hex();
    let auth_tag = match spec.auth {
        0 => Some(serde_json::to_string(&nip_oa::sign(&owner(), &hex, "kind=1")).unwrap()),
        1 => Some(serde_json::to_string(&nip_oa::sign(&owner(), &hex, "kind=0")).unwrap()),
        2 => Some(
            serde_json::to_string(&nip_oa::sign(
                &owner(),
                &hex,
                &format!("kind=0&created_at<{NOW}"),
            ))
            .unwrap(),
        ),
        _ => None,
    };
    let created_at = match spec.created_offset {
        0 => NOW - 1000,
        1 => NOW,
        2 => NOW + 60,
        _ => NOW + 10_000,
    };
    let observation = match spec.observation {
        0 => RelayObservation::NoProfile,
        1 => RelayObservation::Unreadable("down".into()),
        2 => RelayObservation::Newest(event(index, created_at, "not json".into(), vec![])),
        _ => {
            let mut object = serde_json::Map::new();
            for (k, v) in &spec.content {
                object.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
            if spec.shows_name {
                object.insert("display_name".into(), spec.name.into());
            }
            if spec.shows_picture {
                let picture = match &avatar_url {
                    AvatarField::Text(t) if !t.trim().is_empty() => t.clone(),
                    _ => "https://relay/pic.png".to_string(),
                };
                object.insert("picture".into(), picture.into());
            }
            let tags = if spec.observation == 3 {
                vec![nip_oa::sign(&owner(), &hex, "kind=0")]
            } else {
                vec![]
            };
            RelayObservation::Newest(event(
                index,
                created_at,
                serde_json::Value::Object(object).to_string(),
                tags,
            ))
        }
    };
    AgentSnapshot {
        relay: Some(relay_url.clone()),
        record: AgentRecord {
            index,
            pubkey,
            name: spec.name.to_string(),
            secret_key: match spec.secret {
                0 => None,
                1 => Some(SecretText::new("nsec1garbage")),
                2 => Some(SecretText::new(
                    keys(spec.key.wrapping_add(1))
                        .secret_key()
                        .to_bech32()
                        .unwrap(),
                )),
                _ => Some(SecretText::new(
                    agent_keys.secret_key().to_bech32().unwrap(),
                )),
            },
            key_origin: Default::default(),
            relay_url,
            avatar_url,
            persona_id: match spec.persona {
                0 => None,
                1 => Some("p1".to_string()),
                2 => Some("blank".to_string()),
                _ => Some("deleted".to_string()),
            },
            agent_command: match spec.command {
                0 => Some("goose".to_string()),
                1 => Some("my-bot".to_string()),
                _ => None,
            },
            auth_tag,
            field_errors: Vec::new(),
        },
        observation,
    }
}

fn event(index: usize, created_at: u64, content: String, tags: Vec<Vec<String>>) -> ExistingEvent {
    ExistingEvent {
        id: format!("{:032x}{:032x}", index, created_at),
        created_at,
        content,
        tags,
    }
}

fn world(specs: &[AgentSpec]) -> Snapshot {
    Snapshot {
        agents: specs.iter().enumerate().map(|(i, s)| build(i, s)).collect(),
        personas: BTreeMap::from([
            ("p1".to_string(), "https://persona/1.png".to_string()),
            ("blank".to_string(), " ".to_string()),
        ]),
    }
}

fn policy(backfill_only: bool) -> Policy {
    Policy {
        mode: if backfill_only {
            PlanMode::BackfillOnly
        } else {
            PlanMode::Full
        },
        ..Policy::default()
    }
}

/// Plays a plan onto a world, as a perfect store and relay would: backfills
/// set `avatar_url`, republishes become the newest event.
/// The `created_at` apply would sign `r` with at `NOW` (rule D3).
fn created_at(r: &crate::core::plan::RepublishProfile) -> u64 {
    crate::core::rules::next_created_at(NOW, Some(r.after.created_at_must_exceed))
}

fn simulate(snapshot: &Snapshot, plan: &Plan) -> Snapshot {
    let mut next = snapshot.clone();
    for action in &plan.actions {
        for agent in next
            .agents
            .iter_mut()
            .filter(|a| a.record.pubkey == action.agent())
        {
            match action {
                Action::BackfillAvatar(b) => {
                    agent.record.avatar_url = AvatarField::Text(b.avatar_url.clone())
                }
                Action::RepublishProfile(r) => {
                    agent.observation = RelayObservation::Newest(ExistingEvent {
                        id: format!("{:064x}", created_at(r)),
                        created_at: created_at(r),
                        content: r.after.content.clone(),
                        tags: r.after.tags.clone(),
                    })
                }
            }
        }
    }
    next
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn property_convergence_apply_then_plan_again_has_no_actions(
        specs in prop::collection::vec(agent_spec(), 1..12),
        backfill_only in any::<bool>(),
    ) {
        let snapshot = world(&specs);
        let policy = policy(backfill_only);
        let first = plan(&snapshot, &policy, NOW);
        let after = simulate(&snapshot, &first);
        let second = plan(&after, &policy, NOW + 1);
        prop_assert!(second.actions.is_empty(), "{:#?}", second.actions);
    }

    #[test]
    fn property_determinism_same_snapshot_same_plan_in_any_order(
        specs in prop::collection::vec(agent_spec(), 1..12),
        seed in any::<u64>(),
    ) {
        let snapshot = world(&specs);
        let policy = Policy::default();
        let once = plan(&snapshot, &policy, NOW);
        prop_assert_eq!(&once, &plan(&snapshot, &policy, NOW));
        let mut shuffled = snapshot.clone();
        let len = shuffled.agents.len();
        shuffled.agents.rotate_left((seed as usize) % len);
        shuffled.agents.reverse();
        prop_assert_eq!(once, plan(&shuffled, &policy, NOW));
    }

    #[test]
    fn property_never_empty_never_unknown(
        specs in prop::collection::vec(agent_spec(), 1..12),
        backfill_only in any::<bool>(),
    ) {
        let snapshot = world(&specs);
        let result = plan(&snapshot, &policy(backfill_only), NOW);
        for action in &result.actions {
            let agent = snapshot.agents.iter().find(|a| a.record.pubkey == action.agent()).unwrap();
            let unknown = matches!(agent.observation, RelayObservation::Unreadable(_));
            match action {
                Action::BackfillAvatar(b) => {
                    prop_assert!(!b.avatar_url.trim().is_empty());
                    // Only the persona's avatar may be backfilled without the relay.
                    prop_assert!(!unknown || (backfill_only && b.source == AvatarSource::Persona));
                }
                Action::RepublishProfile(r) => {
                    prop_assert!(!unknown, "never publish over an unread relay");
                    prop_assert!(!r.name.trim().is_empty() && !r.picture.trim().is_empty());
                    let content = ProfileContent::parse(&r.after.content).unwrap();
                    prop_assert_eq!(content.get_str("display_name"), Some(r.name.clone()));
                    prop_assert_eq!(content.get_str("picture"), Some(r.picture.clone()));
                    prop_assert!(content.get_str("name").is_some_and(|n| !n.is_empty()));
                }
            }
        }
    }

    #[test]
    fn property_merge_keeps_every_unowned_key_and_value_in_order(
        entries in prop::collection::vec(("[a-z_]{1,10}", any::<i64>(), "[ -~]{0,10}", any::<bool>()), 0..10),
        name in "[A-Za-z ]{1,12}",
        picture in "https://[a-z]{1,8}/[a-z]{1,8}",
    ) {
        let mut object = String::from("{");
        for (i, (key, number, text, nested)) in entries.iter().enumerate() {
            if i > 0 { object.push(','); }
            let value = if *nested {
                format!("{{\"n\": {number}, \"t\": {}}}", serde_json::to_string(text).unwrap())
            } else {
                number.to_string()
            };
            object.push_str(&format!("{}:{value}", serde_json::to_string(key).unwrap()));
        }
        object.push('}');
        let Some(content) = ProfileContent::parse(&object) else { return Ok(()); };
        let merged_text = super::content::merge_content(Some(&content), &name, &picture);
        let merged = ProfileContent::parse(&merged_text).unwrap();
        let unowned = |c: &ProfileContent| -> Vec<(String, String)> {
            let mut seen = Vec::new();
            for key in c.keys() {
                if key != "display_name" && key != "picture" && key != "name" && !seen.iter().any(|(k, _): &(String, String)| k == key) {
                    seen.push((key.to_string(), c.raw(key).unwrap().to_string()));
                }
            }
            seen
        };
        prop_assert_eq!(unowned(&content), unowned(&merged));
        if content.has("name") {
            prop_assert_eq!(content.raw("name"), merged.raw("name"));
        }
    }

    #[test]
    fn property_content_parse_never_panics(text in ".{0,200}", bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = ProfileContent::parse(&text);
        let _ = ProfileContent::parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn property_remembered_key_derivations_give_the_same_plan_as_deriving(
        specs in prop::collection::vec(agent_spec(), 1..12),
    ) {
        let snapshot = world(&specs);
        let policy = Policy::default();
        let fresh = plan(&snapshot, &policy, NOW);
        let (first, learned) = plan_remembering_keys(&snapshot, &policy, NOW, &KnownKeys::default());
        prop_assert_eq!(&first, &fresh);
        let (again, none) = plan_remembering_keys(&snapshot, &policy, NOW, &learned);
        prop_assert_eq!(&again, &fresh);
        prop_assert!(none.is_empty());
    }

    #[test]
    fn property_agents_unchanged_in_an_earlier_plan_of_the_same_inputs_give_the_plan_of_any_later_time(
        specs in prop::collection::vec(agent_spec(), 1..12),
        backfill_only in any::<bool>(),
        later in 0u64..100_000_000,
    ) {
        let snapshot = world(&specs);
        let policy = policy(backfill_only);
        let first = plan_remembering(&snapshot, &policy, NOW, &KnownKeys::default(), &[]);
        prop_assert_eq!(&first.plan, &plan(&snapshot, &policy, NOW));
        // The flags name the plan's unchanged agents.
        let flagged: Vec<String> = snapshot
            .agents
            .iter()
            .zip(&first.unchanged)
            .filter(|(_, &unchanged)| unchanged)
            .map(|(agent, _)| agent.record.pubkey.clone())
            .collect();
        let mut listed = first.plan.unchanged.clone();
        let mut flagged_sorted = flagged;
        flagged_sorted.sort();
        listed.sort();
        prop_assert_eq!(flagged_sorted, listed);
        // Told them, a plan at any later time is that time's plan.
        let now = NOW + later;
        let again = plan_remembering(&snapshot, &policy, now, &first.learned, &first.unchanged);
        prop_assert_eq!(&again.plan, &plan(&snapshot, &policy, now));
        prop_assert_eq!(&again.unchanged, &first.unchanged);
    }

    #[test]
    fn property_keys_derived_ahead_are_every_derivation_the_planner_needs(
        specs in prop::collection::vec(agent_spec(), 1..12),
        backfill_only in any::<bool>(),
    ) {
        let snapshot = world(&specs);
        let policy = policy(backfill_only);
        // What the edge derives while reading: it shows the core each
        // observation's content only.
        let ahead: KnownKeys = snapshot
            .agents
            .iter()
            .filter(|agent| {
                let content_only = match &agent.observation {
                    RelayObservation::Newest(event) => RelayObservation::Newest(ExistingEvent {
                        id: String::new(),
                        tags: Vec::new(),
                        ..event.clone()
                    }),
                    other => other.clone(),
                };
                let reaches = reaches_key_check(&agent.record, &agent.observation, &snapshot.personas, &policy);
                assert_eq!(
                    reaches,
                    reaches_key_check(&agent.record, &content_only, &snapshot.personas, &policy),
                    "the content alone decides"
                );
                reaches
            })
            .filter_map(|agent| derive_key(&agent.record))
            .collect();
        let (planned, derived_by_the_planner) = plan_remembering_keys(&snapshot, &policy, NOW, &ahead);
        prop_assert_eq!(&planned, &plan(&snapshot, &policy, NOW));
        prop_assert!(derived_by_the_planner.is_empty(), "nothing was left to derive after the read");
        // And nothing is derived for an agent whose plan needs no key.
        for agent in &snapshot.agents {
            let republished = planned.actions.iter().any(|a| {
                a.as_republish().is_some_and(|r| r.agent == agent.record.pubkey)
            });
            let reaches = reaches_key_check(&agent.record, &agent.observation, &snapshot.personas, &policy);
            if !reaches {
                prop_assert!(!republished, "a republish always went through rule A5");
            }
            if backfill_only {
                prop_assert!(!reaches, "a migration never checks keys");
            }
        }
    }

    #[test]
    fn property_a_known_derivation_of_key_k_never_validates_another_key(
        k in 1u8..=254,
        other in 1u8..=254,
        upper in any::<bool>(),
    ) {
        let (key_k, key_other) = (keys(k), keys(other));
        let text_k = key_k.secret_key().to_bech32().unwrap();
        let known: KnownKeys = [(KeyHash::of(&text_k), key_k.public_key().to_bytes())].into_iter().collect();
        // A record of K's pubkey holding another key (or another text of K).
        let mut text = key_other.secret_key().to_bech32().unwrap();
        if upper {
            text = text.to_uppercase();
        }
        let mut record = build(0, &AgentSpec {
            key: k, pubkey_kind: 2, name: "Ada", avatar: 3, persona: 0, command: 0,
            relay_url: 1, secret: 3, auth: 3, observation: 0, content: vec![],
            shows_name: false, shows_picture: false, created_offset: 0,
        }).record;
        record.secret_key = Some(SecretText::new(text.clone()));
        let mut learned = Vec::new();
        let outcome = check_agent_key(&record, &known, &mut learned);
        prop_assert_eq!(&outcome, &super::rules::agent_keys(&record).map(drop));
        prop_assert_eq!(outcome.is_ok(), keys(k).public_key() == keys(other).public_key());
        prop_assert_eq!(learned.len(), usize::from(text != text_k), "another text is derived, not looked up");
    }
}
