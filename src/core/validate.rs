//! `reprofile validate`: every problem of the records, without the network.
//!
//! The same checks the planner makes before it needs a relay (rule A, the
//! key of A5 whether or not a republish is due, the auth tag's structure and
//! signature for a kind:0 dated `now`), plus warnings for what the planner
//! will have to work around (no stored avatar, dangling personas). Pure: the
//! caller reads the files and prints the findings.

use std::collections::{BTreeMap, HashMap};

use super::model::{AgentRecord, AvatarField, Policy};
use super::nip_oa;
use super::rules::{agent_keys, is_pubkey_hex, parse_relay_url, short_pubkey};

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
    /// What is wrong and what to do (never a key).
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
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for record in records {
        *copies.entry(record.pubkey.as_str()).or_default() += 1;
    }
    let mut findings = Vec::new();
    for record in records {
        let subject = record_subject(record);
        let field_error = |field: &str| {
            let needle = format!("`{field}`");
            record.field_errors.iter().any(|e| e.contains(&needle))
        };
        let mut add = |severity, message: String| {
            findings.push(Finding {
                severity,
                index: record.index,
                subject: subject.clone(),
                message,
            })
        };
        for problem in &record.field_errors {
            add(Severity::Error, problem.clone());
        }
        if !is_pubkey_hex(&record.pubkey) && !field_error("pubkey") {
            add(
                Severity::Error,
                "pubkey is not 64 lower-case hex digits".to_string(),
            );
        } else if copies.get(record.pubkey.as_str()).copied().unwrap_or(0) > 1 {
            add(
                Severity::Error,
                "this pubkey appears on more than one record; keep one".to_string(),
            );
        }
        if record.name.trim().is_empty() && !field_error("name") {
            add(Severity::Error, "name is empty".to_string());
        }
        if let Err(problem) = parse_relay_url(&record.relay_url) {
            if !field_error("relay_url") {
                add(Severity::Error, problem.to_string());
            }
        }
        if is_pubkey_hex(&record.pubkey) {
            if let Err((reason, detail)) = agent_keys(record) {
                add(Severity::Error, format!("{reason}: {detail}"));
            }
        }
        if let Some(text) = record.auth_tag.as_deref().filter(|t| !t.trim().is_empty()) {
            let checked = nip_oa::parse_tag_json(text)
                .and_then(|tag| nip_oa::check_for_event(&tag, &record.pubkey, 0, now));
            if let Err(err) = checked {
                add(
                    Severity::Error,
                    format!("auth_tag is not valid for a kind:0 published now: {err}"),
                );
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
            let persona_avatar = record
                .persona_id
                .as_deref()
                .and_then(|id| personas.get(id))
                .is_some_and(|a| !a.trim().is_empty());
            let command_avatar = policy
                .command_avatars
                .lookup(record.agent_command.as_deref().unwrap_or_default())
                .is_some();
            // Rule B2 backfills absent, null and blank alike; the wording
            // names which (`null` is what the app writes, not "legacy").
            let what = match &record.avatar_url {
                AvatarField::Absent => "legacy record (no avatar_url)",
                AvatarField::Null => "avatar_url is null (no stored avatar)",
                AvatarField::Text(_) => "avatar_url is blank",
            };
            let message = if persona_avatar || command_avatar {
                format!("{what}; `reprofile migrate` backfills it")
            } else {
                format!(
                    "{what} with no persona avatar and no default for its command: only a \
                     picture on its relay can give it an avatar"
                )
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
        assert_eq!(
            messages,
            [
                "avatar_url is null (no stored avatar); `reprofile migrate` backfills it",
                "legacy record (no avatar_url); `reprofile migrate` backfills it",
                "avatar_url is blank; `reprofile migrate` backfills it",
                "avatar_url is null (no stored avatar) with no persona avatar and no default \
                 for its command: only a picture on its relay can give it an avatar",
            ]
        );
        assert!(findings.iter().all(|f| f.severity == Severity::Warning));
    }

    #[test]
    fn duplicates_and_key_mismatches_are_errors() {
        let mut other_key = record(2);
        other_key.secret_key = record(3).secret_key;
        let findings = validate_records(
            &[record(1), record(1), other_key],
            &BTreeMap::new(),
            &Policy::default(),
            0,
        );
        assert_eq!(findings.len(), 3, "{findings:#?}");
        assert!(findings[2].message.starts_with("key_mismatch"));
    }
}
