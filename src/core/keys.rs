//! Where each agent's key comes from: the OS keyring's entry or the record.
//!
//! Buzz desktop 0.4 and later keeps every agent key in one OS keyring entry
//! (a JSON object with `agent:<pubkey>` members) and keeps a key inline in
//! the record (`private_key_nsec`) only when no keyring was reachable; a store
//! may mix both. Buzz's own CLI takes the keyring's key first, then the
//! inline one, and so does reprofile. The edge reads the entry (once per run)
//! and hands what it found here as a [`KeyringRead`]; this module only
//! decides, for each record, which key is its key and how to say where it
//! came from. It never shows a key.

use std::collections::HashMap;

use super::model::{AgentRecord, KeyOrigin, SecretText};

/// What reading the keyring entry gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringRead {
    /// The entry was not read: every record keeps its key inline, or the
    /// keyring is turned off in config.toml.
    NotRead,
    /// The entry was read (or is not there: then `keys` is empty).
    Read {
        /// The entry, for messages (`service/username`).
        entry: String,
        /// Agent pubkey (hex, as written after `agent:`) to its key text.
        keys: HashMap<String, SecretText>,
    },
    /// The entry could not be read (no Secret Service, locked, refused).
    Unreadable {
        /// The entry, for messages.
        entry: String,
        /// The backend's error (never a key).
        error: String,
    },
}

impl KeyringRead {
    /// Keeps the agent keys of an entry's members (`agent:<pubkey>` to key
    /// text); every other member (the owner's `identity`) is dropped at once.
    pub fn from_members(
        entry: impl Into<String>,
        members: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        let keys = members
            .into_iter()
            .filter_map(|(name, key)| {
                name.strip_prefix("agent:")
                    .map(|pubkey| (pubkey.to_string(), SecretText::new(key)))
            })
            .collect();
        KeyringRead::Read {
            entry: entry.into(),
            keys,
        }
    }
}

/// The record's own key text, as the store holds it, whatever key it is
/// using now (a record whose key came from the keyring remembers it).
pub fn inline_key(record: &AgentRecord) -> Option<&SecretText> {
    match &record.key_origin {
        KeyOrigin::Inline => record.secret_key.as_ref(),
        KeyOrigin::Keyring { inline, .. } => inline.as_ref(),
        KeyOrigin::Nowhere(_) | KeyOrigin::KeyringUnreadable(_) => None,
    }
    .filter(|key| !key.expose().trim().is_empty())
}

/// True when some record has no key of its own: only then is the keyring
/// worth reading (a store whose every key is inline never touches it, so a
/// headless server or a macOS user sees no keyring at all).
pub fn needs_keyring(records: &[AgentRecord]) -> bool {
    records.iter().any(|record| inline_key(record).is_none())
}

/// Gives each record its key: the keyring's `agent:<pubkey>` when the entry
/// holds one, else its inline key; and notes where it came from. May be
/// called again on the same records with a newer read (the daemon, each
/// tick): a record's inline key is kept aside, never lost.
pub fn attach_keys(records: &mut [AgentRecord], keyring: &KeyringRead) {
    for record in records {
        let inline = match std::mem::take(&mut record.key_origin) {
            KeyOrigin::Inline => record.secret_key.take(),
            KeyOrigin::Keyring { inline, .. } => inline,
            KeyOrigin::Nowhere(_) | KeyOrigin::KeyringUnreadable(_) => None,
        };
        let has_inline = inline
            .as_ref()
            .is_some_and(|key| !key.expose().trim().is_empty());
        let (secret_key, origin) = match keyring {
            KeyringRead::Read { entry, keys } => match keys.get(&record.pubkey) {
                Some(key) if !record.pubkey.is_empty() => (
                    Some(key.clone()),
                    KeyOrigin::Keyring {
                        entry: entry.clone(),
                        inline,
                    },
                ),
                _ if has_inline => (inline, KeyOrigin::Inline),
                _ => (None, KeyOrigin::Nowhere(entry.clone())),
            },
            KeyringRead::Unreadable { entry, error } if !has_inline => (
                None,
                KeyOrigin::KeyringUnreadable(format!("{entry}: {error}")),
            ),
            KeyringRead::NotRead | KeyringRead::Unreadable { .. } => (inline, KeyOrigin::Inline),
        };
        record.secret_key = secret_key;
        record.key_origin = origin;
    }
}

/// How many records got their key from where, for `validate`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyCounts {
    /// From the keyring entry.
    pub keyring: usize,
    /// Inline in the record.
    pub inline: usize,
    /// In neither place (or the keyring could not be read for them).
    pub missing: usize,
}

/// Counts where the keys of `records` were found.
pub fn count_origins<'a>(records: impl IntoIterator<Item = &'a AgentRecord>) -> KeyCounts {
    let mut counts = KeyCounts::default();
    for record in records {
        match &record.key_origin {
            KeyOrigin::Keyring { .. } => counts.keyring += 1,
            KeyOrigin::Inline if inline_key(record).is_some() => counts.inline += 1,
            _ => counts.missing += 1,
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pubkey: &str, inline: Option<&str>) -> AgentRecord {
        AgentRecord {
            index: 0,
            pubkey: pubkey.into(),
            name: "Ada".into(),
            secret_key: inline.map(SecretText::new),
            key_origin: KeyOrigin::Inline,
            relay_url: String::new(),
            avatar_url: crate::core::model::AvatarField::Absent,
            persona_id: None,
            agent_command: None,
            auth_tag: None,
            field_errors: vec![],
        }
    }

    fn keyring(members: &[(&str, &str)]) -> KeyringRead {
        KeyringRead::from_members(
            "buzz-desktop/secrets",
            members
                .iter()
                .map(|(name, key)| (name.to_string(), key.to_string())),
        )
    }

    #[test]
    fn the_keyring_key_comes_first_then_the_inline_one() {
        let mut records = vec![
            record("aa", Some("inline-a")),
            record("bb", Some("inline-b")),
            record("cc", None),
        ];
        attach_keys(
            &mut records,
            &keyring(&[
                ("identity", "owner"),
                ("agent:aa", "ring-a"),
                ("agent:cc", "ring-c"),
            ]),
        );
        let keys: Vec<Option<&str>> = records
            .iter()
            .map(|r| r.secret_key.as_ref().map(SecretText::expose))
            .collect();
        assert_eq!(keys, [Some("ring-a"), Some("inline-b"), Some("ring-c")]);
        assert_eq!(
            count_origins(&records),
            KeyCounts {
                keyring: 2,
                inline: 1,
                missing: 0
            }
        );
    }

    #[test]
    fn the_owner_identity_is_never_kept() {
        let KeyringRead::Read { keys, .. } = keyring(&[("identity", "owner"), ("agent:aa", "k")])
        else {
            panic!("read");
        };
        assert_eq!(keys.len(), 1);
        assert!(!format!("{keys:?}").contains("owner"));
    }

    #[test]
    fn a_key_in_neither_place_names_the_entry() {
        let mut records = vec![record("aa", None), record("bb", Some("  "))];
        attach_keys(&mut records, &keyring(&[]));
        for record in &records {
            assert_eq!(record.secret_key, None);
            assert_eq!(
                record.key_origin,
                KeyOrigin::Nowhere("buzz-desktop/secrets".into())
            );
        }
        assert_eq!(count_origins(&records).missing, 2);
    }

    #[test]
    fn an_unreadable_keyring_leaves_the_inline_keys_working() {
        let mut records = vec![record("aa", None), record("bb", Some("inline-b"))];
        let unreadable = KeyringRead::Unreadable {
            entry: "buzz-desktop/secrets".into(),
            error: "DBus error: no Secret Service".into(),
        };
        attach_keys(&mut records, &unreadable);
        assert_eq!(
            records[0].key_origin,
            KeyOrigin::KeyringUnreadable(
                "buzz-desktop/secrets: DBus error: no Secret Service".into()
            )
        );
        assert_eq!(records[1].key_origin, KeyOrigin::Inline);
        assert_eq!(
            records[1].secret_key.as_ref().map(SecretText::expose),
            Some("inline-b")
        );
    }

    #[test]
    fn attaching_again_never_loses_the_inline_key() {
        let mut records = vec![record("aa", Some("inline-a"))];
        attach_keys(&mut records, &keyring(&[("agent:aa", "ring-a")]));
        assert!(!needs_keyring(&records));
        // The next tick's keyring no longer holds it: the inline key is back.
        attach_keys(&mut records, &keyring(&[]));
        assert_eq!(records[0].key_origin, KeyOrigin::Inline);
        assert_eq!(
            records[0].secret_key.as_ref().map(SecretText::expose),
            Some("inline-a")
        );
        // And a record without one needs the keyring, whatever it got before.
        let mut bare = vec![record("cc", None)];
        attach_keys(&mut bare, &keyring(&[("agent:cc", "ring-c")]));
        assert!(needs_keyring(&bare));
    }
}
