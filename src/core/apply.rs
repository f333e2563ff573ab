//! Apply's decisions, kept pure: preconditions, the event to sign, relay
//! answers, retries and the safety threshold; and what an apply did, as
//! plain data ([`ApplyReport`]) the engine fills and the faces print.
//!
//! The apply engine (an edge) gathers the current state of the world and asks
//! these functions what to do; it never decides by itself. Time and randomness
//! come in as arguments.

use std::path::PathBuf;
use std::time::Duration;

use super::model::{
    AgentRecord, AgentSnapshot, AvatarField, PlanMode, Policy, RelayObservation, Snapshot,
};
use super::nip_oa;
use super::plan::{Action, BackfillAvatar, Plan, RepublishProfile, Skip, SkipReason};
use super::rules::{next_created_at, profile_matches, InStore};

/// What the world says about one planned action, just before acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precheck {
    /// The world is still the one the plan was made from: act.
    Proceed,
    /// The desired state is already there: report `already_applied`.
    AlreadyApplied,
    /// Something else changed since planning: report `stale`, do not act.
    Stale(String),
    /// The state cannot be known now (for example the relay cannot be read):
    /// report `failed`; the next run tries again.
    Unknown(String),
}

/// The outcome of one action, as journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Done and confirmed.
    Applied,
    /// Nothing to do: already in the desired state.
    AlreadyApplied,
    /// Not done: the world changed since planning.
    Stale,
    /// Not done, or not confirmed.
    Failed,
}

impl Outcome {
    /// The journal's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::AlreadyApplied => "already_applied",
            Outcome::Stale => "stale",
            Outcome::Failed => "failed",
        }
    }

    /// Every outcome, in report order.
    pub const ALL: [Outcome; 4] = [
        Outcome::Applied,
        Outcome::AlreadyApplied,
        Outcome::Stale,
        Outcome::Failed,
    ];

    /// True for outcomes that make the apply exit non-zero.
    pub fn is_problem(self) -> bool {
        matches!(self, Outcome::Stale | Outcome::Failed)
    }
}

/// The one record that holds a planned action's pubkey now (rule A2), or
/// why there is none to act on.
fn one_record<T>(found: InStore<T>) -> Result<T, String> {
    match found {
        InStore::One(record) => Ok(record),
        InStore::Absent => Err("the record is no longer in the store".to_string()),
        InStore::Duplicated(count) => Err(format!(
            "the pubkey is now on {count} records of the store, so none of them is this \
             agent's (rule A2); keep one and make a new plan"
        )),
    }
}

/// Precondition of a backfill: the record must still be legacy.
///
/// `current` is the record's `avatar_url` now, when exactly one record holds
/// the pubkey.
pub fn check_backfill(action: &BackfillAvatar, current: InStore<&AvatarField>) -> Precheck {
    let current = match one_record(current) {
        Ok(current) => current,
        Err(why) => return Precheck::Stale(why),
    };
    match current.usable() {
        Some(avatar) if avatar == action.avatar_url => Precheck::AlreadyApplied,
        Some(_) => Precheck::Stale(
            "the record's avatar_url was set to another value since planning".to_string(),
        ),
        None => Precheck::Proceed,
    }
}

/// The outcome of a backfill after the store write: written, or what its
/// precondition said, or the write's error.
pub fn backfill_outcome(
    written: bool,
    precheck: Option<&Precheck>,
    write_error: Option<&str>,
) -> (Outcome, Option<String>) {
    if written {
        return (Outcome::Applied, None);
    }
    match (precheck, write_error) {
        (Some(Precheck::AlreadyApplied), _) => (Outcome::AlreadyApplied, None),
        (Some(Precheck::Stale(why)), _) => (Outcome::Stale, Some(why.clone())),
        (_, Some(error)) => (Outcome::Failed, Some(error.to_string())),
        (Some(Precheck::Proceed), None) => (
            Outcome::Stale,
            Some("the pubkey is no longer on exactly one record".to_string()),
        ),
        (Some(Precheck::Unknown(why)), None) => (Outcome::Failed, Some(why.clone())),
        (None, None) => (
            Outcome::Failed,
            Some("the store was not written".to_string()),
        ),
    }
}

/// Living beside the running app: the desktop app rewrites the whole store
/// when an agent starts or stops, from what it read before, and does not
/// honour reprofile's lock, so a backfill written during an apply can be
/// overwritten. At the end of the apply, the store is read once more; given a
/// backfill that ended `outcome` and the record's `avatar_url` in the store
/// now, this says whether the backfill must be reported again as `stale`,
/// and why. `None`: it stands.
pub fn backfill_after_apply(
    action: &BackfillAvatar,
    outcome: Outcome,
    now: InStore<&AvatarField>,
) -> Option<(Outcome, String)> {
    if !matches!(outcome, Outcome::Applied | Outcome::AlreadyApplied) {
        return None;
    }
    let lost = "the store was rewritten meanwhile (the desktop app rewrites the whole file when \
                an agent starts or stops)";
    match now {
        InStore::Absent => Some((
            Outcome::Stale,
            format!("{lost} and no longer holds this agent's record"),
        )),
        InStore::Duplicated(count) => Some((
            Outcome::Stale,
            format!("{lost} and now holds this agent's pubkey on {count} records (rule A2)"),
        )),
        InStore::One(field) => match field.usable() {
            Some(avatar) if avatar == action.avatar_url => None,
            Some(_) => Some((
                Outcome::Stale,
                format!("{lost} and the record's avatar_url is now another value, which is kept"),
            )),
            None => Some((
                Outcome::Stale,
                format!(
                    "{lost} without the backfilled avatar_url (it is {} again); the next run redoes it",
                    match field {
                        AvatarField::Absent => "absent",
                        AvatarField::Null => "null",
                        AvatarField::Text(_) => "blank",
                    }
                ),
            )),
        },
    }
}

/// Rule E1 at apply time: a republish whose agent's backfill (in the same
/// plan) did not end applied or already applied is not attempted (it would
/// publish an avatar the record does not hold); it reports the backfill's
/// outcome. `None`: go ahead.
pub fn republish_after_backfill(
    backfill: Option<(Outcome, Option<&str>)>,
) -> Option<(Outcome, String)> {
    match backfill {
        None | Some((Outcome::Applied | Outcome::AlreadyApplied, _)) => None,
        Some((outcome, why)) => Some((
            outcome,
            format!(
                "not published: the avatar backfill of this agent was {}: {}",
                outcome.as_str(),
                why.unwrap_or_default()
            ),
        )),
    }
}

/// The record as apply sees it just before a republish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordNow {
    /// The record's `name` now.
    pub name: String,
    /// The record's usable `avatar_url` now (after this run's backfill).
    pub avatar: Option<String>,
}

/// Precondition of a republish: the relay's newest kind:0 is still the
/// planned `before` (or still missing), and the record still wants the
/// planned name and picture.
pub fn check_republish(
    action: &RepublishProfile,
    record: InStore<&RecordNow>,
    relay_now: &RelayObservation,
) -> Precheck {
    let record = match one_record(record) {
        Ok(record) => record,
        Err(why) => return Precheck::Stale(why),
    };
    if record.name != action.name {
        return Precheck::Stale("the record's name changed since planning".to_string());
    }
    if record.avatar.as_deref() != Some(action.picture.as_str()) {
        return Precheck::Stale("the record's avatar_url changed since planning".to_string());
    }
    if let RelayObservation::Unreadable(reason) | RelayObservation::AuthRefused(reason) = relay_now
    {
        return Precheck::Unknown(format!("cannot read the relay to check: {reason}"));
    }
    if profile_matches(relay_now, &action.name, &action.picture) {
        return Precheck::AlreadyApplied;
    }
    let newest_id = match relay_now {
        RelayObservation::Newest(event) => Some(event.id.as_str()),
        _ => None,
    };
    let planned_id = action.before.as_ref().map(|b| b.id.as_str());
    if newest_id == planned_id {
        Precheck::Proceed
    } else {
        Precheck::Stale(match newest_id {
            Some(id) => format!("the relay's newest kind:0 is now {id}, not the planned one"),
            None => "the planned kind:0 is no longer on the relay".to_string(),
        })
    }
}

/// What apply signs for a republish that passed [`check_republish`]: the
/// event rebuilt by the rules from the live state (the record as it is now,
/// on its relay as the store and config say, and the relay's newest kind:0
/// as read now), never the plan file's content, tags or relay. A plan is a
/// proposal to review, not a credential: its digest is a plain SHA-256
/// anyone can recompute.
///
/// `relay` is the agent's relay by the live store and config (after
/// rewrite). The rebuild must agree with the plan on the relay, the name,
/// the picture, the event replaced and the event's content and tags; the
/// first field that differs makes the action `stale`, named. The rules
/// finding nothing to publish is `already_applied`; finding a reason to skip
/// (a key, a tag, the clock) is `stale` with the rule's words.
pub fn rebuild_republish(
    action: &RepublishProfile,
    record: &AgentRecord,
    relay: &str,
    relay_now: &RelayObservation,
    policy: &Policy,
    now: u64,
) -> Result<RepublishProfile, Precheck> {
    if action.relay != relay {
        return Err(Precheck::Stale(format!(
            "relay differs: the plan says {}, the store and config say {relay}",
            action.relay
        )));
    }
    let snapshot = Snapshot {
        agents: vec![AgentSnapshot {
            record: record.clone(),
            relay: Some(relay.to_string()),
            observation: relay_now.clone(),
        }],
        personas: Default::default(),
    };
    let policy = Policy {
        mode: PlanMode::Full,
        threads: 1,
        ..policy.clone()
    };
    let rebuilt = super::rules::plan(&snapshot, &policy, now);
    if let Some(skip) = rebuilt.skipped.first() {
        let why = format!("{}: {}", skip.reason, skip.detail);
        return Err(match skip.reason {
            // The agent's key cannot sign now (rule A5 on the record as it
            // is): the action fails, as a signing failure always has.
            SkipReason::InvalidKey | SkipReason::KeyMismatch | SkipReason::KeyUnavailable => {
                Precheck::Unknown(why)
            }
            _ => Precheck::Stale(format!("the rules now skip it: {why}")),
        });
    }
    let Some(rebuilt) = rebuilt.actions.into_iter().find_map(|a| match a {
        Action::RepublishProfile(r) => Some(r),
        Action::BackfillAvatar(_) => None,
    }) else {
        return Err(Precheck::AlreadyApplied);
    };
    let differs = if rebuilt.name != action.name {
        Some("name")
    } else if rebuilt.picture != action.picture {
        Some("picture")
    } else if rebuilt.before.as_ref().map(|b| &b.id) != action.before.as_ref().map(|b| &b.id) {
        Some("before (the event replaced)")
    } else if rebuilt.after.content != action.after.content {
        Some("after.content")
    } else if rebuilt.after.tags != action.after.tags {
        Some("after.tags")
    } else {
        None
    };
    match differs {
        Some(field) => Err(Precheck::Stale(format!(
            "{field} differs from what the rules give for the live store and relay; plan again"
        ))),
        None => Ok(rebuilt),
    }
}

/// Whether a publish took, from the profile read back after it: our event,
/// or a newer one that already shows the planned name and picture, is
/// applied; anything else failed, with why.
pub fn confirm_publish(
    action: &RepublishProfile,
    published_id: &str,
    read_back: &RelayObservation,
) -> (Outcome, Option<String>) {
    match read_back {
        RelayObservation::Newest(event) if event.id == published_id => (Outcome::Applied, None),
        _ if profile_matches(read_back, &action.name, &action.picture) => (
            Outcome::Applied,
            Some("a newer matching profile is on the relay".to_string()),
        ),
        RelayObservation::Unreadable(why) | RelayObservation::AuthRefused(why) => (
            Outcome::Failed,
            Some(format!(
                "published but not confirmed: cannot read the relay back ({why})"
            )),
        ),
        RelayObservation::Newest(event) => (
            Outcome::Failed,
            Some(format!(
                "the relay said OK but its newest kind:0 is {}, not the published event",
                event.id
            )),
        ),
        RelayObservation::NoProfile => (
            Outcome::Failed,
            Some("the relay said OK but does not have the event".to_string()),
        ),
    }
}

/// The event apply signs for a republish (rules D1 to D4, at apply time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventToSign {
    /// Kind 0.
    pub kind: u16,
    /// The planned content.
    pub content: String,
    /// The planned tags.
    pub tags: Vec<Vec<String>>,
    /// `created_at` by rule D3 with apply's clock.
    pub created_at: u64,
}

/// Why a planned republish must not be signed now (rules D3 and D4 at apply
/// time).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSignable {
    /// D3: the new `created_at` would be beyond the future tolerance.
    #[error("the new event would be dated {}, beyond the {tolerance_secs} s future tolerance (clock_skew)", super::rules::utc(*.created_at))]
    ClockSkew {
        /// The `created_at` rule D3 gives.
        created_at: u64,
        /// `[policy] future_tolerance_secs`.
        tolerance_secs: u64,
    },
    /// D4: the planned auth tag is not valid at the new `created_at`.
    #[error("the auth tag is not valid for an event dated {}: {error}; make a new plan", super::rules::utc(*.created_at))]
    AuthTagInvalid {
        /// The `created_at` rule D3 gives.
        created_at: u64,
        /// What is wrong with the tag.
        error: nip_oa::AuthTagError,
    },
}

/// Builds the event to sign at `now`, or says why it must not be published:
/// beyond the future tolerance (D3) or an auth tag no longer valid at the new
/// `created_at` (D4).
pub fn event_to_sign(
    action: &RepublishProfile,
    now: u64,
    future_tolerance_secs: u64,
) -> Result<EventToSign, NotSignable> {
    let replaces = action
        .before
        .as_ref()
        .map(|_| action.after.created_at_must_exceed);
    let created_at = next_created_at(now, replaces);
    if created_at > now.saturating_add(future_tolerance_secs) {
        return Err(NotSignable::ClockSkew {
            created_at,
            tolerance_secs: future_tolerance_secs,
        });
    }
    for tag in action
        .after
        .tags
        .iter()
        .filter(|t| t.first().is_some_and(|n| n == "auth"))
    {
        nip_oa::check_for_event(tag, &action.agent, 0, created_at)
            .map_err(|error| NotSignable::AuthTagInvalid { created_at, error })?;
    }
    Ok(EventToSign {
        kind: 0,
        content: action.after.content.clone(),
        tags: action.after.tags.clone(),
        created_at,
    })
}

/// A relay's answer to an EVENT, by its machine-readable prefix (NIP-01).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishAnswer {
    /// `OK true` (including `duplicate:`).
    Accepted,
    /// `rate-limited:`: retry the same event after a backoff.
    RateLimited(String),
    /// `auth-required:`: authenticate (NIP-42) and retry.
    AuthRequired(String),
    /// Any other refusal (`invalid:`, `blocked:`, `restricted:`, `pow:`,
    /// `error:`, unknown prefixes): the action fails with this message.
    Refused(String),
}

/// Classifies a relay's OK message (`accepted` is the OK's boolean).
pub fn classify_ok(accepted: bool, message: &str) -> PublishAnswer {
    if accepted {
        return PublishAnswer::Accepted;
    }
    let message = message.trim();
    if message.starts_with("duplicate:") {
        // Some relays say OK false for an event they already have.
        PublishAnswer::Accepted
    } else if message.starts_with("rate-limited:") {
        PublishAnswer::RateLimited(message.to_string())
    } else if message.starts_with("auth-required:") {
        PublishAnswer::AuthRequired(message.to_string())
    } else {
        PublishAnswer::Refused(message.to_string())
    }
}

/// How long a `rate-limited:` refusal asks to wait: today's Buzz relay says
/// `rate-limited: quota exceeded; retry in Ns` (buzz-today.md section 4);
/// `None` for a refusal without such a delay (`rate-limited: shared
/// admission unavailable`) or that is not `rate-limited:` at all.
pub fn retry_in(message: &str) -> Option<Duration> {
    let message = message.trim();
    if !message.starts_with("rate-limited:") {
        return None;
    }
    let after = &message[message.find("retry in ")? + "retry in ".len()..];
    let digits: &str = &after[..after.find(|c: char| !c.is_ascii_digit())?];
    if digits.is_empty() || !after[digits.len()..].starts_with('s') {
        return None;
    }
    digits.parse().ok().map(Duration::from_secs)
}

/// Retry policy for `rate-limited:` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Cap on any one delay.
    pub max: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(8),
            max_retries: 5,
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based), or `None` when the
    /// retries are used up. `jitter` in [0, 1) scales the delay between half
    /// and all of the exponential value ("equal jitter").
    pub fn delay(&self, attempt: u32, jitter: f64) -> Option<Duration> {
        if attempt == 0 || attempt > self.max_retries {
            return None;
        }
        let exponential = self
            .initial
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.max);
        let jitter = jitter.clamp(0.0, 1.0);
        Some(exponential.mul_f64(0.5 + 0.5 * jitter))
    }
}

/// A plan above the safety threshold.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "the plan would republish {republish} of {store_agents} agents ({percent:.0}%), more than \
     [safety] max_republish_fraction = {max_fraction}; review the plan and pass --force to \
     apply it anyway",
    percent = *republish as f64 / *store_agents as f64 * 100.0
)]
pub struct AboveSafetyThreshold {
    /// Republishes in the plan.
    pub republish: usize,
    /// Records in the store when planned.
    pub store_agents: usize,
    /// `[safety] max_republish_fraction`.
    pub max_fraction: f64,
}

/// The safety threshold (like octoDNS's): refuse a plan that would republish
/// more than `max_fraction` of the store's agents, when the store has at
/// least `min_agents`, unless forced.
pub fn safety_check(
    plan: &Plan,
    store_agents: usize,
    max_fraction: f64,
    min_agents: usize,
    force: bool,
) -> Result<(), AboveSafetyThreshold> {
    // Agents, not actions: on several community relays one agent has a
    // republish per relay, and the threshold is about how many agents change.
    let republish = plan
        .actions
        .iter()
        .filter_map(|action| match action {
            Action::RepublishProfile(r) => Some(r.agent.as_str()),
            Action::BackfillAvatar(_) => None,
        })
        .collect::<std::collections::HashSet<&str>>()
        .len();
    if force || store_agents < min_agents || store_agents == 0 {
        return Ok(());
    }
    let fraction = republish as f64 / store_agents as f64;
    if fraction > max_fraction {
        return Err(AboveSafetyThreshold {
            republish,
            store_agents,
            max_fraction,
        });
    }
    Ok(())
}

/// The outcome of one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionResult {
    /// The action's id.
    pub id: String,
    /// `backfill_avatar` or `republish_profile`.
    pub kind: &'static str,
    /// The agent's pubkey.
    pub agent: String,
    /// The agent's name.
    pub name: String,
    /// The relay, for a republish.
    pub relay: Option<String>,
    /// What happened.
    pub outcome: Outcome,
    /// Why (stale and failed), or a note.
    pub reason: Option<String>,
    /// The published event, for signed republishes.
    pub event_id: Option<String>,
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    /// One result per action of the plan that was carried out, in plan order
    /// (an apply stopped early has fewer).
    pub results: Vec<ActionResult>,
    /// The agents the plan skipped.
    pub skipped: Vec<Skip>,
    /// The journal file.
    pub journal: PathBuf,
    /// The store backup made before writing, if any.
    pub backup: Option<PathBuf>,
    /// Actions of the plan not begun because the apply was asked to stop.
    pub not_begun: usize,
    /// The republishes' preconditions took the records the plan was made
    /// from (the engine's `ApplyOptions::planned_records`): the store still held their
    /// bytes, so it was not parsed again.
    pub records_from_plan: bool,
    /// Events read by this apply (preconditions, read-back) whose signature
    /// the run's memory vouched for, so it was not checked again: proven
    /// earlier in this process, or signed by this apply.
    pub signatures_vouched: u64,
}

impl ApplyReport {
    /// How many results have this outcome.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.results.iter().filter(|r| r.outcome == outcome).count()
    }

    /// True when every action of the plan was applied or already applied
    /// (an apply stopped before the end is not a success).
    pub fn succeeded(&self) -> bool {
        self.not_begun == 0 && !self.results.iter().any(|r| r.outcome.is_problem())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::ExistingEvent;
    use crate::core::plan::{AuthTagSource, AvatarSource, EventAfter, EventBefore};

    fn backfill() -> BackfillAvatar {
        BackfillAvatar {
            agent: "a".repeat(64),
            name: "Ada".into(),
            index: 0,
            source: AvatarSource::Persona,
            avatar_url: "https://p/1.png".into(),
            before: AvatarField::Null,
        }
    }

    fn republish(before: Option<&str>) -> RepublishProfile {
        RepublishProfile {
            agent: "a".repeat(64),
            name: "Ada".into(),
            picture: "https://p/1.png".into(),
            relay: "ws://r".into(),
            reasons: vec![],
            before: before.map(|id| EventBefore {
                id: id.into(),
                created_at: 100,
                content: "{}".into(),
            }),
            after: EventAfter {
                content: "{}".into(),
                tags: vec![],
                created_at_must_exceed: 100,
            },
            auth_tag_source: AuthTagSource::None,
        }
    }

    fn newest(id: &str, content: &str) -> RelayObservation {
        RelayObservation::Newest(ExistingEvent {
            id: id.into(),
            created_at: 100,
            content: content.into(),
            tags: vec![],
        })
    }

    fn record() -> RecordNow {
        RecordNow {
            name: "Ada".into(),
            avatar: Some("https://p/1.png".into()),
        }
    }

    #[test]
    fn backfill_precondition_proceeds_only_while_legacy() {
        let action = backfill();
        assert_eq!(
            check_backfill(&action, InStore::One(&AvatarField::Absent)),
            Precheck::Proceed
        );
        assert_eq!(
            check_backfill(&action, InStore::One(&AvatarField::Text(" ".into()))),
            Precheck::Proceed
        );
        assert_eq!(
            check_backfill(
                &action,
                InStore::One(&AvatarField::Text("https://p/1.png".into()))
            ),
            Precheck::AlreadyApplied
        );
        assert!(matches!(
            check_backfill(
                &action,
                InStore::One(&AvatarField::Text("https://user/pick.png".into()))
            ),
            Precheck::Stale(_)
        ));
        assert!(matches!(
            check_backfill(&action, InStore::Absent),
            Precheck::Stale(_)
        ));
    }

    /// A pubkey now on several records is reported as that, not as a record
    /// that left the store.
    #[test]
    fn rule_a2_a_pubkey_now_on_two_records_is_said_so_by_both_preconditions() {
        let says = "the pubkey is now on 2 records of the store, so none of them is this \
                    agent's (rule A2); keep one and make a new plan";
        assert_eq!(
            check_backfill(&backfill(), InStore::Duplicated(2)),
            Precheck::Stale(says.to_string())
        );
        assert_eq!(
            check_republish(
                &republish(None),
                InStore::Duplicated(2),
                &RelayObservation::NoProfile
            ),
            Precheck::Stale(says.to_string())
        );
        for gone in [
            check_backfill(&backfill(), InStore::Absent),
            check_republish(
                &republish(None),
                InStore::Absent,
                &RelayObservation::NoProfile,
            ),
        ] {
            assert_eq!(
                gone,
                Precheck::Stale("the record is no longer in the store".to_string())
            );
        }
    }

    #[test]
    fn a_backfill_the_app_rewrote_away_is_stale_at_the_end_of_apply() {
        let action = backfill();
        let kept = AvatarField::Text("https://p/1.png".into());
        for outcome in [Outcome::Applied, Outcome::AlreadyApplied] {
            assert_eq!(
                backfill_after_apply(&action, outcome, InStore::One(&kept)),
                None
            );
            for (now, says) in [
                (
                    InStore::One(AvatarField::Null),
                    "without the backfilled avatar_url (it is null again); the next run redoes it",
                ),
                (InStore::One(AvatarField::Absent), "(it is absent again)"),
                (
                    InStore::One(AvatarField::Text("".into())),
                    "(it is blank again)",
                ),
                (
                    InStore::One(AvatarField::Text("https://user/pick.png".into())),
                    "is now another value, which is kept",
                ),
                (InStore::Absent, "no longer holds this agent's record"),
                (
                    InStore::Duplicated(2),
                    "now holds this agent's pubkey on 2 records",
                ),
            ] {
                let (stale, why) = backfill_after_apply(&action, outcome, now.as_ref())
                    .unwrap_or_else(|| panic!("{now:?} must make the backfill stale"));
                assert_eq!(stale, Outcome::Stale);
                assert!(
                    why.starts_with("the store was rewritten meanwhile"),
                    "{why}"
                );
                assert!(why.contains(says), "{why}");
            }
        }
        // What did not land is not revisited.
        for outcome in [Outcome::Stale, Outcome::Failed] {
            assert_eq!(
                backfill_after_apply(&action, outcome, InStore::One(&AvatarField::Null)),
                None
            );
        }
    }

    #[test]
    fn republish_precondition_compares_the_newest_event_id() {
        let action = republish(Some("e1"));
        assert_eq!(
            check_republish(&action, InStore::One(&record()), &newest("e1", "{}")),
            Precheck::Proceed
        );
        assert!(matches!(
            check_republish(&action, InStore::One(&record()), &newest("e2", "{}")),
            Precheck::Stale(_)
        ));
        assert!(matches!(
            check_republish(
                &action,
                InStore::One(&record()),
                &RelayObservation::NoProfile
            ),
            Precheck::Stale(_)
        ));
        let done = r#"{"display_name":"Ada","picture":"https://p/1.png"}"#;
        assert_eq!(
            check_republish(&action, InStore::One(&record()), &newest("e3", done)),
            Precheck::AlreadyApplied
        );
        assert!(matches!(
            check_republish(
                &action,
                InStore::One(&record()),
                &RelayObservation::Unreadable("x".into())
            ),
            Precheck::Unknown(_)
        ));
        let missing = republish(None);
        assert_eq!(
            check_republish(
                &missing,
                InStore::One(&record()),
                &RelayObservation::NoProfile
            ),
            Precheck::Proceed
        );
    }

    #[test]
    fn republish_precondition_sees_record_changes() {
        let action = republish(None);
        let renamed = RecordNow {
            name: "Bea".into(),
            ..record()
        };
        let repictured = RecordNow {
            avatar: Some("https://x".into()),
            ..record()
        };
        for changed in [renamed, repictured] {
            let precheck = check_republish(
                &action,
                InStore::One(&changed),
                &RelayObservation::NoProfile,
            );
            assert!(matches!(precheck, Precheck::Stale(_)), "{changed:?}");
        }
    }

    #[test]
    fn rule_e1_a_republish_waits_for_its_backfill() {
        assert_eq!(republish_after_backfill(None), None);
        assert_eq!(
            republish_after_backfill(Some((Outcome::Applied, None))),
            None
        );
        assert_eq!(
            republish_after_backfill(Some((Outcome::AlreadyApplied, None))),
            None
        );
        let (outcome, why) =
            republish_after_backfill(Some((Outcome::Stale, Some("user picked one")))).unwrap();
        assert_eq!(outcome, Outcome::Stale);
        assert!(why.contains("user picked one"));
        assert_eq!(
            republish_after_backfill(Some((Outcome::Failed, Some("disk full"))))
                .unwrap()
                .0,
            Outcome::Failed
        );
    }

    #[test]
    fn a_backfill_outcome_follows_its_precondition_and_the_write() {
        assert_eq!(
            backfill_outcome(true, Some(&Precheck::Proceed), None).0,
            Outcome::Applied
        );
        assert_eq!(
            backfill_outcome(false, Some(&Precheck::AlreadyApplied), Some("x")).0,
            Outcome::AlreadyApplied
        );
        assert_eq!(
            backfill_outcome(false, Some(&Precheck::Stale("s".into())), None).0,
            Outcome::Stale
        );
        assert_eq!(
            backfill_outcome(false, Some(&Precheck::Proceed), Some("disk full")).0,
            Outcome::Failed
        );
        assert_eq!(backfill_outcome(false, None, None).0, Outcome::Failed);
    }

    #[test]
    fn a_publish_is_confirmed_only_by_our_event_or_a_newer_matching_one() {
        let action = republish(Some("e1"));
        assert_eq!(
            confirm_publish(&action, "ours", &newest("ours", "{}")).0,
            Outcome::Applied
        );
        let matching = r#"{"display_name":"Ada","picture":"https://p/1.png"}"#;
        assert_eq!(
            confirm_publish(&action, "ours", &newest("newer", matching)).0,
            Outcome::Applied
        );
        for read_back in [
            newest("other", "{}"),
            RelayObservation::NoProfile,
            RelayObservation::Unreadable("down".into()),
        ] {
            let (outcome, why) = confirm_publish(&action, "ours", &read_back);
            assert_eq!(outcome, Outcome::Failed);
            assert!(why.is_some());
        }
    }

    #[test]
    fn rule_d3_at_apply_time_created_at_follows_the_replaced_event() {
        let action = republish(Some("e1"));
        assert_eq!(event_to_sign(&action, 1000, 900).unwrap().created_at, 1000);
        assert_eq!(event_to_sign(&action, 50, 900).unwrap().created_at, 101);
        assert_eq!(
            event_to_sign(&action, 50, 10),
            Err(NotSignable::ClockSkew {
                created_at: 101,
                tolerance_secs: 10
            }),
            "beyond the tolerance"
        );
        assert_eq!(event_to_sign(&republish(None), 7, 0).unwrap().created_at, 7);
    }

    #[test]
    fn ok_messages_are_classified_by_prefix() {
        assert_eq!(classify_ok(true, ""), PublishAnswer::Accepted);
        assert_eq!(
            classify_ok(false, "duplicate: have it"),
            PublishAnswer::Accepted
        );
        assert!(matches!(
            classify_ok(false, "rate-limited: slow"),
            PublishAnswer::RateLimited(_)
        ));
        assert!(matches!(
            classify_ok(false, "auth-required: who"),
            PublishAnswer::AuthRequired(_)
        ));
        for refusal in [
            "blocked: no",
            "invalid: bad",
            "restricted: x",
            "pow: 20",
            "replaced: newer",
            "error: unknown",
            "",
        ] {
            assert!(
                matches!(classify_ok(false, refusal), PublishAnswer::Refused(_)),
                "{refusal}"
            );
        }
    }

    #[test]
    fn retry_in_reads_the_buzz_relays_delay() {
        for (message, expected) in [
            ("rate-limited: quota exceeded; retry in 3s", Some(3)),
            ("rate-limited: quota exceeded; retry in 12s", Some(12)),
            ("  rate-limited: quota exceeded; retry in 0s", Some(0)),
            ("rate-limited: shared admission unavailable", None),
            ("rate-limited: quota exceeded; retry in soon", None),
            ("rate-limited: retry in 5 minutes", None),
            ("blocked: retry in 3s", None),
        ] {
            assert_eq!(
                retry_in(message),
                expected.map(Duration::from_secs),
                "{message}"
            );
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_ends() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(1, 0.999_999).unwrap().as_millis(), 499);
        assert_eq!(backoff.delay(1, 0.0).unwrap().as_millis(), 250);
        assert_eq!(backoff.delay(3, 0.999_999).unwrap().as_millis(), 1999);
        assert!(backoff.delay(5, 1.0).unwrap() <= backoff.max);
        assert_eq!(backoff.delay(6, 0.5), None);
        assert_eq!(backoff.delay(0, 0.5), None);
    }

    #[test]
    fn safety_threshold_refuses_mass_republish_unless_forced() {
        let mut plan = Plan::default();
        for n in 0..4 {
            let mut action = republish(None);
            action.agent = format!("{n:064x}");
            plan.actions
                .push(crate::core::plan::Action::RepublishProfile(action));
        }
        // One agent's republishes on other community relays are still one
        // agent.
        let mut elsewhere = republish(None);
        elsewhere.agent = format!("{:064x}", 0);
        elsewhere.relay = "wss://other.example".into();
        plan.actions
            .push(crate::core::plan::Action::RepublishProfile(elsewhere));
        let refused = safety_check(&plan, 10, 0.3, 10, false).unwrap_err();
        assert_eq!(
            refused,
            AboveSafetyThreshold {
                republish: 4,
                store_agents: 10,
                max_fraction: 0.3
            }
        );
        assert!(
            refused
                .to_string()
                .starts_with("the plan would republish 4 of 10 agents (40%), more than [safety] max_republish_fraction = 0.3;"),
            "{refused}"
        );
        assert!(safety_check(&plan, 10, 0.3, 10, true).is_ok());
        assert!(
            safety_check(&plan, 9, 0.3, 10, false).is_ok(),
            "small stores are not checked"
        );
        assert!(safety_check(&plan, 20, 0.3, 10, false).is_ok());
    }
}

#[cfg(test)]
mod rebuild_tests {
    use nostr::nips::nip19::ToBech32;
    use nostr::Keys;

    use super::*;
    use crate::core::model::{ExistingEvent, SecretText};

    const NOW: u64 = 1_800_000_000;
    const RELAY: &str = "wss://r.example";

    fn record(keys: &Keys) -> AgentRecord {
        AgentRecord {
            index: 0,
            pubkey: keys.public_key().to_hex(),
            name: "Ada".into(),
            secret_key: Some(SecretText::new(keys.secret_key().to_bech32().unwrap())),
            key_origin: Default::default(),
            relay_url: RELAY.into(),
            avatar_url: AvatarField::Text("https://p/1.png".into()),
            persona_id: None,
            agent_command: None,
            auth_tag: None,
            field_errors: vec![],
        }
    }

    fn on_relay() -> RelayObservation {
        RelayObservation::Newest(ExistingEvent {
            id: "e".repeat(64),
            created_at: NOW - 10,
            content: r#"{"display_name":"Old","picture":"https://p/1.png","about":"hi"}"#.into(),
            tags: vec![],
        })
    }

    /// The plan the rules make for the record on that relay: its republish.
    fn planned(record: &AgentRecord) -> RepublishProfile {
        let snapshot = Snapshot {
            agents: vec![AgentSnapshot {
                record: record.clone(),
                relay: Some(RELAY.into()),
                observation: on_relay(),
            }],
            personas: Default::default(),
        };
        let plan = super::super::rules::plan(&snapshot, &Policy::default(), NOW);
        plan.actions[0].as_republish().expect("a republish").clone()
    }

    fn rebuild(
        action: &RepublishProfile,
        record: &AgentRecord,
    ) -> Result<RepublishProfile, Precheck> {
        rebuild_republish(
            action,
            record,
            RELAY,
            &on_relay(),
            &Policy::default(),
            NOW + 5,
        )
    }

    fn stale_field(result: Result<RepublishProfile, Precheck>) -> String {
        match result {
            Err(Precheck::Stale(why)) => why,
            other => panic!("expected stale, got {other:?}"),
        }
    }

    #[test]
    fn an_honest_plan_is_rebuilt_as_it_is() {
        let keys = Keys::generate();
        let record = record(&keys);
        let action = planned(&record);
        assert_eq!(rebuild(&action, &record), Ok(action));
    }

    #[test]
    fn an_edited_content_is_stale_and_never_signed() {
        let keys = Keys::generate();
        let record = record(&keys);
        let mut action = planned(&record);
        action.after.content = action
            .after
            .content
            .replace("\"about\"", "\"lud16\":\"attacker@evil.example\",\"about\"");
        assert!(stale_field(rebuild(&action, &record)).starts_with("after.content differs"));
    }

    #[test]
    fn edited_tags_a_picture_or_the_replaced_event_are_stale() {
        let keys = Keys::generate();
        let record = record(&keys);
        let honest = planned(&record);
        let mut tags = honest.clone();
        tags.after.tags = vec![vec!["p".into(), "f".repeat(64)]];
        assert!(stale_field(rebuild(&tags, &record)).starts_with("after.tags differs"));
        let mut before = honest.clone();
        before.before.as_mut().unwrap().id = "d".repeat(64);
        assert!(stale_field(rebuild(&before, &record)).starts_with("before (the event replaced)"));
    }

    #[test]
    fn an_edited_relay_is_stale() {
        let keys = Keys::generate();
        let record = record(&keys);
        let mut action = planned(&record);
        action.relay = "wss://evil.example".into();
        let why = stale_field(rebuild(&action, &record));
        assert!(why.starts_with("relay differs"), "{why}");
        assert!(why.contains(RELAY), "{why}");
    }

    #[test]
    fn a_profile_already_right_is_already_applied_a_broken_key_fails_a_new_name_is_stale() {
        let keys = Keys::generate();
        let mut record = record(&keys);
        let action = planned(&record);
        let right = RelayObservation::Newest(ExistingEvent {
            id: "c".repeat(64),
            created_at: NOW,
            content: r#"{"display_name":"Ada","picture":"https://p/1.png"}"#.into(),
            tags: vec![],
        });
        assert_eq!(
            rebuild_republish(&action, &record, RELAY, &right, &Policy::default(), NOW),
            Err(Precheck::AlreadyApplied)
        );
        // A key broken since planning: the action fails, with rule A5's words.
        record.secret_key = Some(SecretText::new("nsec1garbage"));
        match rebuild(&action, &record) {
            Err(Precheck::Unknown(why)) => {
                assert!(why.starts_with("invalid_key: "), "{why}");
                assert!(!why.contains("nsec1garbage"), "{why}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        // The name changed since planning: the rules would publish another
        // event, so the plan's is stale.
        record.secret_key = Some(SecretText::new(keys.secret_key().to_bech32().unwrap()));
        record.name = "Bea".into();
        assert!(stale_field(rebuild(&action, &record)).starts_with("name differs"));
    }
}
