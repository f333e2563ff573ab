//! `reprofile validate`: every problem of the records, without the network.
//!
//! It asks the planner's own rules (`super::rules`), so that the two cannot
//! disagree: rule A's problems ([`record_problems`], all of them, where the
//! planner stops at the first), the key of A5 whether or not a republish is
//! due, and the record's auth tag (D4) for a kind:0 dated `now`. Each is an
//! error named by the skip reason the planner gives it; an invalid auth tag
//! is only a warning when config says to publish without it. Warnings say
//! what the planner works around: where a record with no stored avatar gets
//! one (B2, [`avatar_choice`]), and a `persona_id` not in the persona store.
//! Pure: the caller reads the files and prints the findings.

use std::collections::BTreeMap;

use super::model::{AgentRecord, Policy};
use super::plan::SkipReason;
use super::rules::{
    agent_keys, avatar_choice, is_pubkey_hex, record_auth_tag, record_problems, short_pubkey,
    AvatarChoice, PubkeyCopies,
};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The planner will skip the agent.
    Error,
    /// The planner copes, but a person may want to look.
    Warning,
}

/// One problem of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// The record's position in the store.
    pub index: usize,
    /// Who: `record #N (name, pubkey…)`.
    pub subject: String,
    /// What is wrong and what to do (never a key); an error begins with the
    /// planner's skip reason.
    pub message: String,
}

/// A record as people read it: `record #N (name, pubkey…)`, never its key.
pub fn record_subject(record: &AgentRecord) -> String {
    let mut labels = Vec::new();
    if !record.name.trim().is_empty() {
        labels.push(record.name.clone());
    }
    if is_pubkey_hex(&record.pubkey) {
        labels.push(short_pubkey(&record.pubkey));
    }
    if labels.is_empty() {
        format!("record #{}", record.index)
    } else {
        format!("record #{} ({})", record.index, labels.join(", "))
    }
}

/// Checks every record; findings in store order.
pub fn validate_records(
    records: &[AgentRecord],
    personas: &BTreeMap<String, String>,
    policy: &Policy,
    now: u64,
) -> Vec<Finding> {
    let copies = PubkeyCopies::of(records);
    let mut findings = Vec::new();
    for record in records {
        let subject = record_subject(record);
        let mut add = |severity, message: String| {
            findings.push(Finding {
                severity,
                index: record.index,
                subject: subject.clone(),
                message,
            })
        };
        let error = |reason: SkipReason, detail: &str| format!("{reason}: {detail}");
        for (reason, detail) in record_problems(record, &copies) {
            add(Severity::Error, error(reason, &detail));
        }
        if is_pubkey_hex(&record.pubkey) {
            if let Err((reason, detail)) = agent_keys(record) {
                add(Severity::Error, error(reason, &detail));
            }
        }
        if let Some(Err(why)) = record_auth_tag(record, now) {
            if policy.publish_without_invalid_auth_tag {
                add(
                    Severity::Warning,
                    format!(
                        "{why}; it is published without it \
                         ([profile] publish_without_invalid_auth_tag)"
                    ),
                );
            } else {
                add(Severity::Error, error(SkipReason::AuthTagInvalid, &why));
            }
        }
        if let Some(persona) = record.persona_id.as_deref() {
            if !personas.contains_key(persona) {
                add(
                    Severity::Warning,
                    format!("persona_id {persona:?} is not in the persona store"),
                );
            }
        }
        if record.avatar_url.usable().is_none() {
            let what = record.avatar_url.record_phrase();
            let message = match avatar_choice(record, personas, policy) {
                AvatarChoice::Persona(_) => {
                    format!("{what}: `reprofile migrate` (or `apply`) backfills it from its persona's avatar")
                }
                AvatarChoice::RelayFirst {
                    command_avatar: Some(_),
                } => format!(
                    "{what}: `reprofile migrate` (or `apply`) backfills it from the picture on its relay, \
                     else its command's default avatar"
                ),
                AvatarChoice::RelayFirst {
                    command_avatar: None,
                } => format!(
                    "{what} with no persona avatar and no default avatar for command `{}`: only \
                     a picture on its relay can give it an avatar (else set avatar_url, or add \
                     the command under [avatars])",
                    record.agent_command.as_deref().unwrap_or_default()
                ),
            };
            add(Severity::Warning, message);
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{AvatarField, SecretText};
    use nostr::nips::nip19::ToBech32;
    use nostr::{Keys, SecretKey};

    fn record(n: u8) -> AgentRecord {
        let keys = Keys::new(SecretKey::from_slice(&[n; 32]).unwrap());
        AgentRecord {
            index: usize::from(n),
            pubkey: keys.public_key().to_hex(),
            name: format!("agent {n}"),
            secret_key: Some(SecretText::new(keys.secret_key().to_bech32().unwrap())),
            key_origin: Default::default(),
            relay_url: "wss://relay.example".into(),
            avatar_url: AvatarField::Text("https://a/x.png".into()),
            persona_id: None,
            agent_command: Some("goose".into()),
            auth_tag: None,
            field_errors: vec![],
        }
    }

    #[test]
    fn a_clean_record_has_no_findings() {
        let findings = validate_records(&[record(1)], &BTreeMap::new(), &Policy::default(), 0);
        assert!(findings.is_empty(), "{findings:?}");
    }

    #[test]
    fn every_problem_of_a_record_is_listed() {
        let mut bad = record(1);
        bad.name = " ".into();
        bad.relay_url = "http://x".into();
        bad.secret_key = Some(SecretText::new("nsec1garbage"));
        bad.auth_tag = Some("[\"auth\"]".into());
        bad.persona_id = Some("gone".into());
        bad.avatar_url = AvatarField::Absent;
        bad.agent_command = Some("my-bot".into());
        let findings = validate_records(&[bad], &BTreeMap::new(), &Policy::default(), 0);
        let errors = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        let warnings = findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count();
        assert_eq!((errors, warnings), (4, 2), "{findings:#?}");
        assert!(findings.iter().all(|f| !f.message.contains("nsec1garbage")));
    }

    #[test]
    fn rule_b2_a_null_avatar_is_called_null_and_only_an_absent_one_legacy() {
        let mut null = record(1);
        null.avatar_url = AvatarField::Null;
        let mut absent = record(2);
        absent.avatar_url = AvatarField::Absent;
        let mut blank = record(3);
        blank.avatar_url = AvatarField::Text("  ".into());
        let mut nothing = record(4);
        nothing.avatar_url = AvatarField::Null;
        nothing.agent_command = Some("my-bot".into());
        let findings = validate_records(
            &[null, absent, blank, nothing],
            &BTreeMap::new(),
            &Policy::default(),
            0,
        );
        let messages: Vec<&str> = findings.iter().map(|f| f.message.as_str()).collect();
        let backfilled =
            "`reprofile migrate` (or `apply`) backfills it from the picture on its relay, else \
                          its command's default avatar";
        assert_eq!(
            messages,
            [
                format!("record with avatar_url null (no stored avatar): {backfilled}"),
                format!("legacy record: {backfilled}"),
                format!("record with a blank avatar_url: {backfilled}"),
                "record with avatar_url null (no stored avatar) with no persona avatar and no \
                 default avatar for command `my-bot`: only a picture on its relay can give it \
                 an avatar (else set avatar_url, or add the command under [avatars])"
                    .to_string(),
            ]
        );
        assert!(findings.iter().all(|f| f.severity == Severity::Warning));
    }

    #[test]
    fn rule_b2_a_persona_avatar_is_named_as_the_source() {
        let mut with_persona = record(1);
        with_persona.avatar_url = AvatarField::Null;
        with_persona.persona_id = Some("p1".into());
        with_persona.agent_command = Some("my-bot".into());
        let personas = BTreeMap::from([("p1".to_string(), "https://p/1.png".to_string())]);
        let findings = validate_records(&[with_persona], &personas, &Policy::default(), 0);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert!(
            findings[0].message.ends_with(
                "`reprofile migrate` (or `apply`) backfills it from its persona's avatar"
            ),
            "{findings:#?}"
        );
    }

    /// Each error of `validate` is a skip of the planner, in the same words,
    /// and the planner's skip is `validate`'s first error for that record.
    #[test]
    fn validate_errors_are_the_planners_skips_in_the_same_words() {
        use crate::core::model::{AgentSnapshot, RelayObservation, Snapshot};
        let mut typed = record(1);
        typed.field_errors = vec!["field `name` must be a string, not a number".into()];
        typed.name = String::new();
        let mut not_hex = record(2);
        not_hex.pubkey = "ABC".into();
        let mut nameless = record(3);
        nameless.name = " ".into();
        nameless.relay_url = "http://x".into();
        let mut bad_url = record(4);
        bad_url.relay_url = "relay.example".into();
        let mut bad_key = record(5);
        bad_key.secret_key = Some(SecretText::new("nsec1garbage"));
        let mut other_key = record(6);
        other_key.secret_key = record(7).secret_key;
        let mut bad_tag = record(8);
        bad_tag.auth_tag = Some("[\"auth\"]".into());
        let duplicate = record(9);
        let mut copy = record(9);
        copy.index = 10;
        let records = [
            typed, not_hex, nameless, bad_url, bad_key, other_key, bad_tag, duplicate, copy,
        ];
        let snapshot = Snapshot {
            agents: records
                .iter()
                .map(|record| AgentSnapshot {
                    record: record.clone(),
                    relay: Some(record.relay_url.clone()),
                    observation: RelayObservation::NoProfile,
                })
                .collect(),
            personas: BTreeMap::new(),
        };
        let policy = Policy::default();
        let now = 1_800_000_000;
        let plan = crate::core::rules::plan(&snapshot, &policy, now);
        let findings = validate_records(&records, &BTreeMap::new(), &policy, now);
        assert_eq!(plan.skipped.len(), records.len(), "{plan:#?}");
        for skip in &plan.skipped {
            let first_error = findings
                .iter()
                .find(|f| f.index == skip.index && f.severity == Severity::Error)
                .unwrap_or_else(|| panic!("no error for record #{}: {findings:#?}", skip.index));
            assert_eq!(
                first_error.message,
                format!("{}: {}", skip.reason, skip.detail)
            );
        }
        // Every problem is listed, not only the first: the nameless record
        // also has a bad relay URL.
        let nameless: Vec<&str> = findings
            .iter()
            .filter(|f| f.index == 3)
            .map(|f| f.message.as_str())
            .collect();
        assert_eq!(nameless.len(), 2, "{nameless:?}");
        assert!(
            nameless[1].starts_with("invalid_relay_url: "),
            "{nameless:?}"
        );
    }

    #[test]
    fn rule_d4_an_invalid_tag_is_a_warning_when_config_publishes_without_it() {
        let mut bad_tag = record(1);
        bad_tag.auth_tag = Some("[\"auth\"]".into());
        let lenient = Policy {
            publish_without_invalid_auth_tag: true,
            ..Policy::default()
        };
        for (policy, severity) in [
            (Policy::default(), Severity::Error),
            (lenient, Severity::Warning),
        ] {
            let findings = validate_records(&[bad_tag.clone()], &BTreeMap::new(), &policy, 0);
            assert_eq!(findings.len(), 1, "{findings:#?}");
            assert_eq!(findings[0].severity, severity);
            assert!(findings[0].message.contains("auth_tag is not valid"));
        }
    }

    #[test]
    fn duplicates_and_key_mismatches_are_errors() {
        let mut other_key = record(2);
        other_key.secret_key = record(3).secret_key;
        let mut copy = record(1);
        copy.index = 4;
        let findings = validate_records(
            &[record(1), copy, other_key],
            &BTreeMap::new(),
            &Policy::default(),
            0,
        );
        assert_eq!(findings.len(), 3, "{findings:#?}");
        assert!(findings[2].message.starts_with("key_mismatch"));
    }
}
