//! The plan: what the planner decided, as plain data.
//!
//! One plan value serves every use: `plan` prints it, `apply` executes it and
//! the plan file stores it (through its own serialization types in
//! `crate::store::planfile`, so the file format can stay stable while these evolve).

use std::fmt;

use super::model::AvatarField;

/// Where a backfilled avatar came from (rule B2), in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AvatarSource {
    /// The persona's `avatar_url`.
    Persona,
    /// The `picture` of the agent's current kind:0 on its relay.
    Relay,
    /// The default avatar of the agent's runtime command.
    Command,
}

impl AvatarSource {
    /// The name used in plan files and renderings.
    pub fn as_str(self) -> &'static str {
        match self {
            AvatarSource::Persona => "persona",
            AvatarSource::Relay => "relay",
            AvatarSource::Command => "command",
        }
    }

    /// Parses the plan-file name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "persona" => Some(AvatarSource::Persona),
            "relay" => Some(AvatarSource::Relay),
            "command" => Some(AvatarSource::Command),
            _ => None,
        }
    }
}

/// Why a profile is republished (rules C1 to C3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RepublishReason {
    /// C1: the relay answered and holds no kind:0 for the agent.
    Missing,
    /// C2: the newest kind:0's content is not a JSON object.
    Malformed,
    /// C3: `display_name` is not the record's `name`.
    NameChanged,
    /// C3: `picture` is not the expected avatar.
    PictureChanged,
}

impl RepublishReason {
    /// The name used in plan files and renderings.
    pub fn as_str(self) -> &'static str {
        match self {
            RepublishReason::Missing => "missing",
            RepublishReason::Malformed => "malformed",
            RepublishReason::NameChanged => "name_changed",
            RepublishReason::PictureChanged => "picture_changed",
        }
    }

    /// Parses the plan-file name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "missing" => Some(RepublishReason::Missing),
            "malformed" => Some(RepublishReason::Malformed),
            "name_changed" => Some(RepublishReason::NameChanged),
            "picture_changed" => Some(RepublishReason::PictureChanged),
            _ => None,
        }
    }
}

/// Why an agent gets no action at all (sections A to D).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// A1, A3, or a field of the wrong type.
    InvalidRecord,
    /// A2: the pubkey appears more than once in the store.
    DuplicateRecord,
    /// A4: `relay_url` is not a ws:// or wss:// URL.
    InvalidRelayUrl,
    /// A5: `private_key_nsec` does not parse.
    InvalidKey,
    /// A5: the key parses but belongs to another pubkey.
    KeyMismatch,
    /// B2 on several community relays: the record has no avatar and no
    /// persona avatar, and the relays' pictures differ (the avatar cannot be
    /// chosen safely).
    RelaysDisagree,
    /// A5: the record has no key of its own and the OS keyring, where the
    /// app keeps agent keys, could not be read (the plan is incomplete).
    KeyUnavailable,
    /// B3 and C5: the relay could not be read.
    RelayUnreachable,
    /// B3 and C5, when the relay could not be read because it demands
    /// authentication (NIP-42) and no identity could sign in.
    RelayAuthRefused,
    /// B4: no source yields an avatar.
    NoAvatar,
    /// D3: the new `created_at` would be too far in the future.
    ClockSkew,
    /// D4: the record's `auth_tag` is not valid for the new event.
    AuthTagInvalid,
}

impl SkipReason {
    /// True for the reasons that leave an agent's outcome undecided for want
    /// of something that could not be read (a relay, the OS keyring): the
    /// plan is then incomplete.
    pub fn leaves_plan_incomplete(self) -> bool {
        self.is_relay_unknown() || self == SkipReason::KeyUnavailable
    }

    /// True for the reasons that leave an agent's relay state unknown.
    pub fn is_relay_unknown(self) -> bool {
        matches!(
            self,
            SkipReason::RelayUnreachable | SkipReason::RelayAuthRefused
        )
    }

    /// Every reason, in the order renderings group them.
    pub const ALL: [SkipReason; 12] = [
        SkipReason::InvalidRecord,
        SkipReason::DuplicateRecord,
        SkipReason::InvalidRelayUrl,
        SkipReason::InvalidKey,
        SkipReason::KeyMismatch,
        SkipReason::KeyUnavailable,
        SkipReason::RelayUnreachable,
        SkipReason::RelayAuthRefused,
        SkipReason::NoAvatar,
        SkipReason::RelaysDisagree,
        SkipReason::ClockSkew,
        SkipReason::AuthTagInvalid,
    ];

    /// The name used in plan files, renderings and RECONCILE.md.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::InvalidRecord => "invalid_record",
            SkipReason::DuplicateRecord => "duplicate_record",
            SkipReason::InvalidRelayUrl => "invalid_relay_url",
            SkipReason::InvalidKey => "invalid_key",
            SkipReason::KeyMismatch => "key_mismatch",
            SkipReason::KeyUnavailable => "key_unavailable",
            SkipReason::RelayUnreachable => "relay_unreachable",
            SkipReason::RelayAuthRefused => "relay_auth_refused",
            SkipReason::NoAvatar => "no_avatar",
            SkipReason::RelaysDisagree => "relays_disagree",
            SkipReason::ClockSkew => "clock_skew",
            SkipReason::AuthTagInvalid => "auth_tag_invalid",
        }
    }

    /// Parses the plan-file name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Store an avatar URL in a legacy record (rule B2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillAvatar {
    /// The agent's pubkey (64 hex).
    pub agent: String,
    /// The agent's name, for people reading the plan.
    pub name: String,
    /// The record's position in the store when planned (informative: apply
    /// finds the record by pubkey).
    pub index: usize,
    /// Which source won.
    pub source: AvatarSource,
    /// The avatar to store.
    pub avatar_url: String,
    /// Precondition: the record's `avatar_url` when planned (absent, null or
    /// blank). Apply acts only while the record still has no usable avatar.
    pub before: AvatarField,
}

/// The kind:0 that was on the relay when planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBefore {
    /// Its id: apply's precondition is that it is still the newest.
    pub id: String,
    /// Its `created_at`: the new event must be later.
    pub created_at: u64,
    /// Its content, verbatim.
    pub content: String,
}

/// The kind:0 to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventAfter {
    /// The content to publish, as JSON text (rule D2).
    pub content: String,
    /// The tags to publish (rule D4).
    pub tags: Vec<Vec<String>>,
    /// The new event's `created_at` must be greater than this (rule D3); 0
    /// when nothing was on the relay.
    pub created_at_must_exceed: u64,
}

/// Sign and publish a fresh kind:0 for the agent (rules C and D).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepublishProfile {
    /// The agent's pubkey (64 hex).
    pub agent: String,
    /// The agent's name (the `display_name` to publish).
    pub name: String,
    /// The expected picture (after any backfill of the same plan, rule E1).
    pub picture: String,
    /// The relay to publish to (after URL rewrite).
    pub relay: String,
    /// Why, in a stable order.
    pub reasons: Vec<RepublishReason>,
    /// The newest kind:0 when planned, `None` when missing.
    pub before: Option<EventBefore>,
    /// What to publish.
    pub after: EventAfter,
    /// Where the auth tag came from, for people: `record`, `relay` or `none`.
    pub auth_tag_source: AuthTagSource,
}

/// Where the published event's `auth` tag came from (rule D4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthTagSource {
    /// The record's `auth_tag`.
    Record,
    /// The existing event's `auth` tag, still valid for the new event.
    Relay,
    /// No auth tag.
    None,
    /// The record's tag was invalid and config says to publish without it.
    DroppedInvalid,
}

impl AuthTagSource {
    /// The name used in plan files.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthTagSource::Record => "record",
            AuthTagSource::Relay => "relay",
            AuthTagSource::None => "none",
            AuthTagSource::DroppedInvalid => "dropped_invalid",
        }
    }

    /// Parses the plan-file name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "record" => Some(AuthTagSource::Record),
            "relay" => Some(AuthTagSource::Relay),
            "none" => Some(AuthTagSource::None),
            "dropped_invalid" => Some(AuthTagSource::DroppedInvalid),
            _ => None,
        }
    }
}

/// One action of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Rule B2.
    BackfillAvatar(BackfillAvatar),
    /// Rules C and D.
    RepublishProfile(RepublishProfile),
}

impl Action {
    /// The agent's pubkey.
    pub fn agent(&self) -> &str {
        match self {
            Action::BackfillAvatar(action) => &action.agent,
            Action::RepublishProfile(action) => &action.agent,
        }
    }

    /// The backfill, when this is one.
    pub fn as_backfill(&self) -> Option<&BackfillAvatar> {
        match self {
            Action::BackfillAvatar(action) => Some(action),
            Action::RepublishProfile(_) => None,
        }
    }

    /// The republish, when this is one.
    pub fn as_republish(&self) -> Option<&RepublishProfile> {
        match self {
            Action::RepublishProfile(action) => Some(action),
            Action::BackfillAvatar(_) => None,
        }
    }

    /// The agent's name, for people.
    pub fn name(&self) -> &str {
        match self {
            Action::BackfillAvatar(action) => &action.name,
            Action::RepublishProfile(action) => &action.name,
        }
    }

    /// The action's type name in plan files.
    pub fn type_name(&self) -> &'static str {
        match self {
            Action::BackfillAvatar(_) => "backfill_avatar",
            Action::RepublishProfile(_) => "republish_profile",
        }
    }

    /// A stable id, unique within a plan: the type and the agent, and for a
    /// republish the relay (an agent on several community relays has one
    /// republish per relay).
    pub fn id(&self) -> String {
        match self {
            Action::BackfillAvatar(b) => format!("{}:{}", self.type_name(), b.agent),
            Action::RepublishProfile(r) => {
                format!("{}:{}@{}", self.type_name(), r.agent, r.relay)
            }
        }
    }
}

/// An agent that gets no action, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// The agent's pubkey, or `record #N` when the pubkey itself is unusable
    /// (never the raw text, which could be anything, even a key).
    pub agent: String,
    /// The agent's name when it is known.
    pub name: String,
    /// The record's position in the store.
    pub index: usize,
    /// The rule's reason.
    pub reason: SkipReason,
    /// A sentence for people (never a key).
    pub detail: String,
    /// The relay concerned, when there is one.
    pub relay: Option<String>,
}

/// What the planner decided for every agent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The actions, ordered by agent pubkey; for one agent the backfill first.
    pub actions: Vec<Action>,
    /// The skipped agents, ordered by agent then store position.
    pub skipped: Vec<Skip>,
    /// Pubkeys of agents whose profile and record are already right.
    pub unchanged: Vec<String>,
    /// False when any agent's relay could not be read.
    pub complete: bool,
    /// How many agent records were planned (an agent on several community
    /// relays counts once).
    pub agents: usize,
    /// Agents that own their profile (rule C6) whose profile differs from
    /// their record: left as the agent set it, listed so a reviewer sees
    /// what was not republished. Ordered by pubkey then relay.
    pub agent_managed: Vec<AgentManaged>,
    /// How many of the planned agents own their profile (rule C6); the
    /// others' profiles are owned by their records.
    pub agent_owned: usize,
}

/// An agent that owns its profile (rule C6, `[profile] owner = "agent"`),
/// whose present, well-formed kind:0 differs from its record: nothing is
/// republished; the differences are shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentManaged {
    /// The agent's pubkey (64 hex).
    pub agent: String,
    /// The agent's name (the record's).
    pub name: String,
    /// The relay whose profile differs.
    pub relay: String,
    /// What differs from the record (`name_changed`, `picture_changed`).
    pub differences: Vec<RepublishReason>,
}

/// A relay the plan could not read: the agents skipped for it (rules B3 and
/// C5) are what makes a plan incomplete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadRelay {
    /// The relay (after URL rewrite).
    pub relay: String,
    /// How many agents were skipped because of it.
    pub agents: usize,
    /// `relay_auth_refused` when any of them was refused sign-in, else
    /// `relay_unreachable`.
    pub reason: SkipReason,
}

/// Counts for the plan's summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Records in the store.
    pub agents: usize,
    /// Republish actions.
    pub republish: usize,
    /// Backfill actions.
    pub backfill: usize,
    /// Agents with nothing to do.
    pub unchanged: usize,
    /// Skipped agents.
    pub skipped: usize,
}

impl Plan {
    /// The counts of this plan.
    pub fn summary(&self) -> Summary {
        let republish = self
            .actions
            .iter()
            .filter(|a| matches!(a, Action::RepublishProfile(_)))
            .count();
        Summary {
            agents: self.agents,
            republish,
            backfill: self.actions.len() - republish,
            unchanged: self.unchanged.len(),
            skipped: self.skipped.len(),
        }
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The agents skipped because their key is only in the OS keyring and
    /// it could not be read (`key_unavailable`), and the first one's detail
    /// (which names the keyring entry and its error).
    pub fn unread_keyring(&self) -> Option<(usize, &str)> {
        let mut skips = self
            .skipped
            .iter()
            .filter(|s| s.reason == SkipReason::KeyUnavailable);
        let first = skips.next()?;
        Some((1 + skips.count(), first.detail.as_str()))
    }

    /// Why the plan is incomplete, one sentence for people (`None` when it
    /// is complete): the relays that could not be read, and the keyring.
    pub fn incomplete_because(&self, relay: impl Fn(&str) -> String) -> Option<String> {
        if self.complete {
            return None;
        }
        let relays: Vec<String> = self
            .unread_relays()
            .iter()
            .map(|u| relay(&u.relay))
            .collect();
        let mut parts = Vec::new();
        if !relays.is_empty() {
            parts.push(format!(
                "{} could not be read ({})",
                if relays.len() == 1 {
                    "1 relay".to_string()
                } else {
                    format!("{} relays", relays.len())
                },
                relays.join(", ")
            ));
        }
        if let Some((agents, _)) = self.unread_keyring() {
            parts.push(format!(
                "the OS keyring could not be read ({agents} agent{} whose key is only there)",
                if agents == 1 { "" } else { "s" }
            ));
        }
        if parts.is_empty() {
            parts.push("something the plan needed could not be read".to_string());
        }
        Some(parts.join(", and "))
    }

    /// The relays that could not be read, by URL: one entry per relay whose
    /// agents were skipped as `relay_unreachable` or `relay_auth_refused`.
    pub fn unread_relays(&self) -> Vec<UnreadRelay> {
        let mut by_relay: std::collections::BTreeMap<&str, UnreadRelay> = Default::default();
        for skip in self.skipped.iter().filter(|s| s.reason.is_relay_unknown()) {
            let Some(relay) = skip.relay.as_deref() else {
                continue;
            };
            let entry = by_relay.entry(relay).or_insert_with(|| UnreadRelay {
                relay: relay.to_string(),
                agents: 0,
                reason: SkipReason::RelayUnreachable,
            });
            entry.agents += 1;
            if skip.reason == SkipReason::RelayAuthRefused {
                entry.reason = SkipReason::RelayAuthRefused;
            }
        }
        by_relay.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(agent: &str, reason: SkipReason, relay: Option<&str>) -> Skip {
        Skip {
            agent: agent.into(),
            name: agent.into(),
            index: 0,
            reason,
            detail: String::new(),
            relay: relay.map(str::to_string),
        }
    }

    #[test]
    fn unread_relays_count_the_agents_skipped_for_each_relay_and_nothing_else() {
        let plan = Plan {
            skipped: vec![
                skip("a", SkipReason::RelayUnreachable, Some("ws://b")),
                skip("b", SkipReason::RelayAuthRefused, Some("ws://a")),
                skip("c", SkipReason::RelayUnreachable, Some("ws://a")),
                skip("d", SkipReason::NoAvatar, Some("ws://c")),
                skip("e", SkipReason::RelayUnreachable, Some("ws://b")),
            ],
            ..Plan::default()
        };
        assert_eq!(
            plan.unread_relays(),
            vec![
                UnreadRelay {
                    relay: "ws://a".into(),
                    agents: 2,
                    reason: SkipReason::RelayAuthRefused
                },
                UnreadRelay {
                    relay: "ws://b".into(),
                    agents: 2,
                    reason: SkipReason::RelayUnreachable
                },
            ]
        );
        assert!(Plan::default().unread_relays().is_empty());
    }
}
