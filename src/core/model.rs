//! The values the planner reads: agent records, relay observations and the policy.
//!
//! These are plain data built by the edges (store, relay, config). Nothing here
//! does I/O; the secret key text is wrapped so that it can never be printed by
//! accident (its `Debug` is redacted and it has no `Display`).

use std::collections::BTreeMap;
use std::fmt;

/// The text of a private key (`nsec1...`) as found in the store.
///
/// It has no `Display` and a redacted `Debug`, so a log line, an error or a
/// plan can never show it. Only [`SecretText::expose`] gives the text back,
/// and only the key-parsing code calls it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretText(String);

impl SecretText {
    /// Wraps the key text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The key text, for parsing it into keys. Never print what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for SecretText {
    /// The key text is overwritten before its memory is freed, so a key read
    /// from the store or the OS keyring does not outlive its last use.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

/// What the store holds in a record's `avatar_url` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvatarField {
    /// The field is not in the record at all (a legacy record).
    Absent,
    /// The field is `null`.
    Null,
    /// The field is a string, possibly blank.
    Text(String),
}

impl AvatarField {
    /// The avatar when the field holds a non-blank string (rule B1), else `None`.
    pub fn usable(&self) -> Option<&str> {
        match self {
            AvatarField::Text(text) if !text.trim().is_empty() => Some(text),
            _ => None,
        }
    }

    /// A record whose field holds no usable avatar, as people should read it:
    /// only a record without the field is "legacy" (RECONCILE.md's inputs);
    /// `null` is what the app writes for "no stored avatar", also for new
    /// records, and is called by its name.
    pub fn record_phrase(&self) -> &'static str {
        match self {
            AvatarField::Absent => "legacy record",
            AvatarField::Null => "record with avatar_url null (no stored avatar)",
            AvatarField::Text(_) => "record with a blank avatar_url",
        }
    }

    /// The field as it would be written in JSON: `None` for absent.
    pub fn as_json_value(&self) -> Option<Option<&str>> {
        match self {
            AvatarField::Absent => None,
            AvatarField::Null => Some(None),
            AvatarField::Text(text) => Some(Some(text)),
        }
    }
}

/// Where an agent's key was found. Buzz desktop 0.4 and later keeps agent
/// keys in one OS keyring entry (`agent:<pubkey>` inside it) and falls back
/// to the record's inline `private_key_nsec` when no keyring was reachable;
/// a store may mix both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KeyOrigin {
    /// The record's own `private_key_nsec` (or no key, when the keyring was
    /// not consulted: every record of the store had its key inline).
    #[default]
    Inline,
    /// The keyring entry held `agent:<pubkey>`.
    Keyring {
        /// The entry (such as `buzz-desktop/secrets`).
        entry: String,
        /// The record's own key, kept aside (a later read of the keyring
        /// may no longer hold the agent's key).
        inline: Option<SecretText>,
    },
    /// Neither the keyring entry named here nor the record holds a key.
    Nowhere(String),
    /// The record has no key of its own and the keyring entry could not be
    /// read: the key may be there. The text names the entry and the
    /// backend's error.
    KeyringUnreadable(String),
}

/// One agent record of the store, reduced to the fields the tool reads.
///
/// The store module keeps the record's full JSON separately; this view is what
/// the rules look at. Fields of the wrong JSON type are listed in
/// `field_errors` (rule A turns them into an `invalid_record` skip) and read as
/// absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// Position of the record in the store's array (0-based).
    pub index: usize,
    /// `pubkey` as written; empty when absent or not a string.
    pub pubkey: String,
    /// `name` as written; empty when absent or not a string.
    pub name: String,
    /// The agent's key text: from the OS keyring's entry for this pubkey
    /// when it holds one, else the record's `private_key_nsec` when that is
    /// a string (see [`KeyOrigin`]).
    pub secret_key: Option<SecretText>,
    /// Where `secret_key` came from, or why there is none.
    pub key_origin: KeyOrigin,
    /// `relay_url` as written; empty when absent or not a string.
    pub relay_url: String,
    /// `avatar_url`: absent, null or a string.
    pub avatar_url: AvatarField,
    /// `persona_id`, when it is a non-null string.
    pub persona_id: Option<String>,
    /// `agent_command`, when it is a non-null string.
    pub agent_command: Option<String>,
    /// `auth_tag` (the JSON text of one NIP-OA tag), when it is a non-null string.
    pub auth_tag: Option<String>,
    /// Fields the tool reads that had the wrong JSON type, as human sentences
    /// that name the field but never its value.
    pub field_errors: Vec<String>,
}

/// A kind:0 event as read from a relay (already signature-checked by the edge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingEvent {
    /// Event id, 64 lower-case hex.
    pub id: String,
    /// The event's `created_at`, in seconds.
    pub created_at: u64,
    /// The event's content, verbatim.
    pub content: String,
    /// The event's tags, verbatim.
    pub tags: Vec<Vec<String>>,
}

/// What reading one agent's relay gave, before the planner classifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayObservation {
    /// The relay answered completely (EOSE) and holds no kind:0 by this author.
    NoProfile,
    /// The newest kind:0 by this author, by NIP-01 order.
    Newest(ExistingEvent),
    /// The relay could not be read: down, timed out, refused (CLOSED), or the
    /// query failed. The reason is for people.
    Unreadable(String),
    /// The relay demands authentication (NIP-42) and no identity could sign
    /// in: every one tried was refused, or there was none. The reason (with
    /// the relay's message) is for people. Like `Unreadable`, the profile is
    /// unknown.
    AuthRefused(String),
}

/// One agent as the snapshot saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSnapshot {
    /// The record from the store.
    pub record: AgentRecord,
    /// The relay that was read for this agent (after URL rewrite); `None` when
    /// the record's URL is not usable and no relay was read.
    pub relay: Option<String>,
    /// What the relay said.
    pub observation: RelayObservation,
}

/// Everything the planner looks at, gathered by the edges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every record of the store, in store order.
    pub agents: Vec<AgentSnapshot>,
    /// Persona id to its `avatar_url` (as written, possibly blank).
    pub personas: BTreeMap<String, String>,
}

/// The records as the planner reconciles them on `communities` (Buzz
/// desktop 0.4 and later runs every agent on every community relay): each
/// record once per community, its `relay_url` set to that community's URL,
/// the copies of one record side by side. With no communities, the records
/// as they are (each on its own `relay_url`).
pub fn on_communities(records: Vec<AgentRecord>, communities: &[String]) -> Vec<AgentRecord> {
    if communities.is_empty() {
        return records;
    }
    let mut entries = Vec::with_capacity(records.len() * communities.len());
    for record in records {
        for community in communities {
            let mut entry = record.clone();
            entry.relay_url.clone_from(community);
            entries.push(entry);
        }
    }
    entries
}

/// Which rules the planner runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlanMode {
    /// Sections A to D: backfills and republishes (`plan`, `apply`, `run`).
    #[default]
    Full,
    /// Only the avatar backfill of rule B (`migrate`): no republish, so rule C
    /// and the key checks of A5 do not apply.
    BackfillOnly,
}

/// Who owns an agent's kind:0 (rule C6, `[profile] owner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum ProfileOwner {
    /// The record owns `display_name` and `picture` (rules C1 to C4).
    #[default]
    Record,
    /// The agent owns its profile: a present, well-formed kind:0 is left as
    /// it is; a missing or malformed one is published from the record.
    Agent,
}

impl ProfileOwner {
    /// The name used in config.toml, plans and renderings.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileOwner::Record => "record",
            ProfileOwner::Agent => "agent",
        }
    }

    /// Parses the config name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "record" => Some(ProfileOwner::Record),
            "agent" => Some(ProfileOwner::Agent),
            _ => None,
        }
    }
}

/// The knobs of the rules, resolved from config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Runtime command (normalized identity, see [`crate::core::avatar`]) to
    /// its default avatar URL: built-in defaults overlaid by config.
    pub command_avatars: crate::core::avatar::CommandAvatars,
    /// How far ahead of `now` a new event's `created_at` may be (rule D3).
    pub future_tolerance_secs: u64,
    /// When a record's `auth_tag` is invalid for the new event, publish without
    /// any auth tag instead of skipping the agent (rule D4's config escape).
    pub publish_without_invalid_auth_tag: bool,
    /// Which rules run.
    pub mode: PlanMode,
    /// Threads the planner may use for large snapshots (1: plan on the
    /// caller's thread). The plan does not depend on it.
    pub threads: usize,
    /// Who owns the profiles (rule C6): `[profile] owner`.
    pub owner: ProfileOwner,
    /// Per-agent owners over `owner` (`[profile.agents]`), by pubkey hex.
    pub owners: BTreeMap<String, ProfileOwner>,
}

impl Policy {
    /// Who owns `pubkey`'s profile (rule C6).
    pub fn owner_of(&self, pubkey: &str) -> ProfileOwner {
        self.owners.get(pubkey).copied().unwrap_or(self.owner)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            command_avatars: crate::core::avatar::CommandAvatars::builtin(),
            future_tolerance_secs: 15 * 60,
            publish_without_invalid_auth_tag: false,
            mode: PlanMode::Full,
            threads: 1,
            owner: ProfileOwner::Record,
            owners: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let record = AgentRecord {
            index: 0,
            pubkey: "a".repeat(64),
            name: "Ada".into(),
            secret_key: Some(SecretText::new("nsec1secretsecret")),
            key_origin: KeyOrigin::Inline,
            relay_url: "wss://r".into(),
            avatar_url: AvatarField::Absent,
            persona_id: None,
            agent_command: None,
            auth_tag: None,
            field_errors: vec![],
        };
        let shown = format!("{record:?} {record:#?}");
        assert!(!shown.contains("nsec1secretsecret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
