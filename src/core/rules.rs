//! The planner: RECONCILE.md sections A to D, agent by agent.
//!
//! [`plan`] is a pure function of the snapshot, the policy and `now`. Each
//! agent gets exactly one outcome: unchanged, a set of actions (at most one
//! backfill and one republish), or one skip. The order of the checks follows
//! the spec: record validity (A), the expected avatar (B), whether the profile
//! needs a republish (C), then what the new event must be (D).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use nostr::nips::nip19::FromBech32;
use nostr::{Keys, RelayUrl, SecretKey};

use super::content::{merge_content, ProfileContent};
use super::known_keys::{KeyHash, KnownKeys};
use super::model::{
    AgentRecord, AgentSnapshot, KeyOrigin, PlanMode, Policy, ProfileOwner, RelayObservation,
    Snapshot,
};
use super::nip_oa;
use super::plan::{
    Action, AgentManaged, AuthTagSource, AvatarSource, BackfillAvatar, EventAfter, EventBefore,
    Plan, RepublishProfile, RepublishReason, Skip, SkipReason,
};

/// The kind of a profile event.
const METADATA_KIND: u16 = 0;

/// The relay state of one agent (RECONCILE.md, Inputs), classified from what
/// the relay gave.
#[derive(Debug, Clone)]
pub enum ProfileState<'a> {
    /// The relay answered and holds no kind:0.
    Missing,
    /// The newest kind:0's content is a JSON object.
    Present {
        /// The event as read.
        event: &'a super::model::ExistingEvent,
        /// Its parsed content.
        content: ProfileContent<'a>,
    },
    /// The newest kind:0's content is not a JSON object.
    Malformed {
        /// The event as read.
        event: &'a super::model::ExistingEvent,
    },
    /// The relay could not be read.
    Unknown {
        /// Why, for people.
        reason: &'a str,
        /// The skip reason it gives: `relay_unreachable`, or
        /// `relay_auth_refused` when the relay demanded an authentication
        /// no identity passed.
        skip: SkipReason,
    },
}

impl<'a> ProfileState<'a> {
    /// Classifies a relay observation.
    pub fn classify(observation: &'a RelayObservation) -> Self {
        match observation {
            RelayObservation::NoProfile => ProfileState::Missing,
            RelayObservation::Unreadable(reason) => ProfileState::Unknown {
                reason,
                skip: SkipReason::RelayUnreachable,
            },
            RelayObservation::AuthRefused(reason) => ProfileState::Unknown {
                reason,
                skip: SkipReason::RelayAuthRefused,
            },
            RelayObservation::Newest(event) => match ProfileContent::parse(&event.content) {
                Some(content) => ProfileState::Present { event, content },
                None => ProfileState::Malformed { event },
            },
        }
    }

    fn event(&self) -> Option<&'a super::model::ExistingEvent> {
        match self {
            ProfileState::Present { event, .. } | ProfileState::Malformed { event } => Some(event),
            _ => None,
        }
    }
}

/// True when `text` is 64 lower-case hex digits (rule A1).
pub fn is_pubkey_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Why a relay URL is not usable (rule A4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayUrlError {
    /// Nothing but white space.
    #[error("relay_url is empty")]
    Empty,
    /// Not a ws:// or wss:// URL; the parser's words.
    #[error("relay_url is not a ws:// or wss:// URL ({0})")]
    NotWebSocket(String),
}

/// Checks a relay URL (rule A4): it must parse as a ws:// or wss:// URL.
/// Returns the URL as nostr writes it, or why it is not usable.
pub fn parse_relay_url(text: &str) -> Result<String, RelayUrlError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(RelayUrlError::Empty);
    }
    // A store names a few relays for thousands of records, and the URL
    // parser (IDNA included) costs microseconds a call: each thread keeps the
    // answers for the last texts it parsed. The function stays pure: the
    // same text always gives the same answer.
    thread_local! {
        static PARSED: std::cell::RefCell<HashMap<String, Result<String, RelayUrlError>>> =
            std::cell::RefCell::new(HashMap::new());
    }
    const REMEMBERED: usize = 64;
    if let Some(known) = PARSED.with(|parsed| parsed.borrow().get(trimmed).cloned()) {
        return known;
    }
    let answer = RelayUrl::parse(trimmed)
        .map(|url| url.to_string())
        .map_err(|err| RelayUrlError::NotWebSocket(err.to_string()));
    PARSED.with(|parsed| {
        let mut parsed = parsed.borrow_mut();
        if parsed.len() >= REMEMBERED {
            parsed.clear();
        }
        parsed.insert(trimmed.to_owned(), answer.clone());
    });
    answer
}

/// Rule A2, counted in one place for the whole tool: which records hold each
/// pubkey. A pubkey on more than one record identifies none of them: the
/// planner skips every copy, `validate` reports each, sign-in passes them
/// over, and apply finds no record by it.
#[derive(Debug, Clone, Default)]
pub struct PubkeyCopies<'a> {
    /// Pubkey to the `index` (store position) of each record holding it, in
    /// ascending order.
    positions: HashMap<&'a str, Positions, foldhash::fast::RandomState>,
}

/// The positions of one pubkey: nearly always one, kept without a list of
/// its own (a store of 100,000 records would otherwise allocate 100,000).
#[derive(Debug, Clone)]
enum Positions {
    One([usize; 1]),
    Several(Vec<usize>),
}

impl Positions {
    fn push(&mut self, index: usize) {
        match self {
            Positions::One([first]) => *self = Positions::Several(vec![*first, index]),
            Positions::Several(list) => list.push(index),
        }
    }

    fn as_slice(&self) -> &[usize] {
        match self {
            Positions::One(one) => one,
            Positions::Several(list) => list,
        }
    }
}

impl<'a> PubkeyCopies<'a> {
    /// Counts the pubkeys of `records`, each known by its `index`.
    pub fn of(records: impl IntoIterator<Item = &'a AgentRecord>) -> Self {
        let records = records.into_iter();
        let mut positions: HashMap<&'a str, Positions, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(records.size_hint().0, Default::default());
        for record in records {
            positions
                .entry(record.pubkey.as_str())
                .and_modify(|known| {
                    // One record reconciled on several community relays is
                    // one record (its entries are adjacent), not copies.
                    if known.as_slice().last() != Some(&record.index) {
                        known.push(record.index)
                    }
                })
                .or_insert(Positions::One([record.index]));
        }
        for known in positions.values_mut() {
            if let Positions::Several(list) = known {
                list.sort_unstable();
            }
        }
        Self { positions }
    }

    /// The `index` of every record holding `pubkey`, ascending.
    pub fn positions(&self, pubkey: &str) -> &[usize] {
        self.positions.get(pubkey).map_or(&[], Positions::as_slice)
    }

    /// How many records hold `pubkey`.
    pub fn count(&self, pubkey: &str) -> usize {
        self.positions(pubkey).len()
    }

    /// Where `pubkey` is: on no record, on exactly one (its `index`), or on
    /// several.
    pub fn find(&self, pubkey: &str) -> InStore<usize> {
        match self.positions(pubkey) {
            [] => InStore::Absent,
            [only] => InStore::One(*only),
            several => InStore::Duplicated(several.len()),
        }
    }
}

/// Where an agent's pubkey is in the store now (rule A2: a record is found by
/// its pubkey only when exactly one record holds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InStore<T> {
    /// No record holds the pubkey.
    Absent,
    /// Exactly one record holds it.
    One(T),
    /// This many records (two or more) hold it: none of them is the agent's.
    Duplicated(usize),
}

impl<T> InStore<T> {
    /// The found record turned into something else.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> InStore<U> {
        match self {
            InStore::Absent => InStore::Absent,
            InStore::One(found) => InStore::One(f(found)),
            InStore::Duplicated(count) => InStore::Duplicated(count),
        }
    }

    /// A borrowing view.
    pub fn as_ref(&self) -> InStore<&T> {
        match self {
            InStore::Absent => InStore::Absent,
            InStore::One(found) => InStore::One(found),
            InStore::Duplicated(count) => InStore::Duplicated(*count),
        }
    }

    /// The record when exactly one holds the pubkey.
    pub fn one(self) -> Option<T> {
        match self {
            InStore::One(found) => Some(found),
            _ => None,
        }
    }
}

/// Rules A1 to A4: every reason the planner has to skip `record` before it
/// looks at the relay, in the order it checks them. The planner skips on the
/// first; `validate` lists them all. The fields of the wrong JSON type are
/// one problem naming each of them; such a field is not reported again (as
/// empty, or as not a URL).
pub fn record_problems(
    record: &AgentRecord,
    copies: &PubkeyCopies<'_>,
) -> Vec<(SkipReason, String)> {
    let mut problems = Vec::new();
    let wrong_type = |field: &str| {
        let needle = format!("`{field}`");
        record.field_errors.iter().any(|e| e.contains(&needle))
    };
    if !record.field_errors.is_empty() {
        problems.push((SkipReason::InvalidRecord, record.field_errors.join("; ")));
    }
    if !is_pubkey_hex(&record.pubkey) {
        if !wrong_type("pubkey") {
            // An empty pubkey marks a definition record, which is no agent:
            // an agent record with none has no `pubkey` field at all.
            let problem = if record.pubkey.is_empty() {
                "has no pubkey; every agent record needs its agent's 64-hex pubkey"
            } else {
                "pubkey is not 64 lower-case hex digits; fix the record's pubkey"
            };
            problems.push((SkipReason::InvalidRecord, problem.to_string()));
        }
    } else if let positions @ [_, _, ..] = copies.positions(&record.pubkey) {
        let list: Vec<String> = positions.iter().map(|i| format!("#{i}")).collect();
        problems.push((
            SkipReason::DuplicateRecord,
            format!(
                "pubkey appears {} times in the store (records {}); keep one",
                positions.len(),
                list.join(", ")
            ),
        ));
    }
    if record.name.trim().is_empty() && !wrong_type("name") {
        problems.push((
            SkipReason::InvalidRecord,
            "name is empty; a profile is never published without a name".to_string(),
        ));
    }
    if let Err(problem) = parse_relay_url(&record.relay_url) {
        if !wrong_type("relay_url") {
            let detail = match problem {
                // Buzz desktop 0.4 and later leaves it empty: its agents run
                // on every community relay, which only config can name.
                RelayUrlError::Empty => "relay_url is empty (Buzz desktop runs its agents on \
                    every community relay); set [buzz] communities in config.toml to the \
                    community relays"
                    .to_string(),
                other => other.to_string(),
            };
            problems.push((SkipReason::InvalidRelayUrl, detail));
        }
    }
    problems
}

/// The `created_at` of a republish (rule D3): `now`, or one second after the
/// event it replaces when that is later.
pub fn next_created_at(now: u64, replaces_created_at: Option<u64>) -> u64 {
    match replaces_created_at {
        Some(previous) => now.max(previous.saturating_add(1)),
        None => now,
    }
}

/// Rule C: why the profile in `state` must be republished to show `name` and
/// `picture`: it is missing (C1), malformed (C2), or its `display_name` or
/// `picture` differs (C3, exact string equality). Empty when it already
/// shows both (C4: nothing to do); `None` when the relay state is unknown
/// (C5: the caller skips). The planner decides with it, and apply recognizes
/// work already done with it ([`profile_matches`]).
pub fn republish_reasons(
    state: &ProfileState<'_>,
    name: &str,
    picture: &str,
) -> Option<Vec<RepublishReason>> {
    match state {
        ProfileState::Unknown { .. } => None,
        ProfileState::Missing => Some(vec![RepublishReason::Missing]),
        ProfileState::Malformed { .. } => Some(vec![RepublishReason::Malformed]),
        ProfileState::Present { content, .. } => {
            let mut reasons = Vec::new();
            if content.str_value("display_name").as_deref() != Some(name) {
                reasons.push(RepublishReason::NameChanged);
            }
            if content.str_value("picture").as_deref() != Some(picture) {
                reasons.push(RepublishReason::PictureChanged);
            }
            Some(reasons)
        }
    }
}

/// True when the observed profile already shows `name` and `picture` (rule
/// C4, by [`republish_reasons`]): how apply recognizes work already done.
pub fn profile_matches(observation: &RelayObservation, name: &str, picture: &str) -> bool {
    republish_reasons(&ProfileState::classify(observation), name, picture)
        .is_some_and(|reasons| reasons.is_empty())
}

/// Unix seconds as people read them, in UTC (RFC 3339, as plans name their
/// own time): `2026-12-07T14:10:39Z`. Pure: formatting, no clock.
pub fn utc(secs: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX), 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| secs.to_string())
}

/// A short form of a pubkey (or of an event id) for people: the first and
/// last 8 digits. Anything else (a crafted plan file can hold any text) is
/// shortened by characters the same way, with control characters escaped, so
/// it can neither panic nor reach a terminal as an escape sequence.
pub fn short_pubkey(pubkey: &str) -> String {
    let chars: Vec<char> = pubkey.chars().collect();
    let shown: String = if chars.len() > 17 {
        let head: String = chars[..8].iter().collect();
        let tail: String = chars[chars.len() - 8..].iter().collect();
        format!("{head}…{tail}")
    } else {
        pubkey.to_owned()
    };
    escape_controls(&shown, false).into_owned()
}

/// Text from anywhere (a relay, a store, a crafted plan file) made safe to
/// show: every control character escaped (`\u{1b}`), so none reaches a
/// terminal as an escape sequence; with `keep_layout`, line breaks and tabs
/// are kept. Borrowed as it is when there is nothing to escape.
pub fn escape_controls(text: &str, keep_layout: bool) -> Cow<'_, str> {
    let escaped = |c: char| c.is_control() && !(keep_layout && (c == '\n' || c == '\t'));
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// What the rules decided for one agent.
enum Decision {
    Unchanged,
    Actions(Vec<Action>),
    Skip(SkipReason, String),
    /// Rule C6: the agent owns its present profile, which differs from the
    /// record as `differences` say; only its backfill (if any) is done.
    AgentManaged {
        actions: Vec<Action>,
        differences: Vec<RepublishReason>,
    },
}

/// Plans every agent of the snapshot (RECONCILE.md A to D).
///
/// Actions come ordered by pubkey, the backfill before the republish of the
/// same agent (E1, E4); skips by pubkey then store position; `complete` is
/// false when any agent was skipped because its relay could not be read (an
/// agent rejected by rule A never needed its relay).
pub fn plan(snapshot: &Snapshot, policy: &Policy, now: u64) -> Plan {
    plan_with(snapshot, policy, now, None, &[]).plan
}

/// [`plan`], with rule A5's key derivations taken from `known` where it
/// holds them (the daemon's memory of earlier ticks). Returns the plan, the
/// same as [`plan`] gives, and the derivations made anew, for the caller to
/// remember.
pub fn plan_remembering_keys(
    snapshot: &Snapshot,
    policy: &Policy,
    now: u64,
    known: &KnownKeys,
) -> (Plan, KnownKeys) {
    let planned = plan_with(snapshot, policy, now, Some(known), &[]);
    (planned.plan, planned.learned)
}

/// What [`plan_remembering`] gives.
#[derive(Debug)]
pub struct Remembering {
    /// The plan, the same as [`plan`] gives.
    pub plan: Plan,
    /// Rule A5's derivations made anew.
    pub learned: KnownKeys,
    /// For each agent of the snapshot, in order: true when it was unchanged
    /// (nothing to do for it).
    pub unchanged: Vec<bool>,
}

/// [`plan_remembering_keys`], told which agents an earlier plan found
/// unchanged from the very same inputs: `unchanged_before[i]` true promises
/// that agent `i`'s record and observation, the store's other records (rule
/// A2 reads them), the personas and the policy are those of an earlier plan
/// in which agent `i` was unchanged. Such an agent is unchanged again without
/// being decided anew: an unchanged decision never reads `now` or a key (it
/// ends at step B or C, before rules A5 and D3), so the same inputs give it
/// at any later `now`. Also gives which agents are unchanged now, for the
/// caller to remember with their inputs. An agent past the end of
/// `unchanged_before` is decided.
pub fn plan_remembering(
    snapshot: &Snapshot,
    policy: &Policy,
    now: u64,
    known: &KnownKeys,
    unchanged_before: &[bool],
) -> Remembering {
    plan_with(snapshot, policy, now, Some(known), unchanged_before)
}

fn plan_with(
    snapshot: &Snapshot,
    policy: &Policy,
    now: u64,
    known: Option<&KnownKeys>,
    unchanged_before: &[bool],
) -> Remembering {
    // Counted at the first agent decided (none, when every one is
    // unchanged as before).
    let copies = OnceLock::new();
    let (outcomes, learned) = decide_all(snapshot, policy, now, &copies, known, unchanged_before);
    // Agents, not entries: an agent on several community relays is one.
    let agents = 1 + snapshot
        .agents
        .windows(2)
        .filter(|pair| pair[0].record.index != pair[1].record.index)
        .count();
    // Rule C6's owners, one count per agent (not per relay).
    let agent_owned = snapshot
        .agents
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            (*i == 0 || snapshot.agents[i - 1].record.index != a.record.index)
                && policy.owner_of(&a.record.pubkey) == ProfileOwner::Agent
        })
        .count();
    let mut result = Plan {
        complete: true,
        agents: if snapshot.agents.is_empty() {
            0
        } else {
            agents
        },
        agent_owned,
        ..Plan::default()
    };
    let mut unchanged = Vec::with_capacity(snapshot.agents.len());
    for (agent, outcome) in snapshot.agents.iter().zip(outcomes) {
        let record = &agent.record;
        let label = if is_pubkey_hex(&record.pubkey) {
            record.pubkey.clone()
        } else {
            format!("record #{}", record.index)
        };
        unchanged.push(matches!(outcome, Decision::Unchanged));
        match outcome {
            Decision::Unchanged => result.unchanged.push(label),
            Decision::Actions(actions) => result.actions.extend(actions),
            Decision::AgentManaged {
                actions,
                differences,
            } => {
                if actions.is_empty() {
                    result.unchanged.push(label);
                }
                result.actions.extend(actions);
                result.agent_managed.push(AgentManaged {
                    agent: record.pubkey.clone(),
                    name: record.name.clone(),
                    relay: agent.relay.clone().unwrap_or_default(),
                    differences,
                });
            }
            Decision::Skip(reason, detail) => {
                // A decision was left open for want of the relay's state.
                if reason.leaves_plan_incomplete() {
                    result.complete = false;
                }
                result.skipped.push(Skip {
                    agent: label,
                    name: record.name.clone(),
                    index: record.index,
                    reason,
                    detail,
                    relay: agent.relay.clone(),
                })
            }
        }
    }
    // A stable sort keeps each agent's backfill before its republish.
    result.actions.sort_by(|a, b| a.agent().cmp(b.agent()));
    result
        .skipped
        .sort_by(|a, b| (&a.agent, a.index).cmp(&(&b.agent, b.index)));
    // Labels are equal only when they are the same text: unstable is stable.
    result.unchanged.sort_unstable();
    result
        .agent_managed
        .sort_by(|a, b| (&a.agent, &a.relay).cmp(&(&b.agent, &b.relay)));
    Remembering {
        plan: result,
        learned: learned.into_iter().collect(),
        unchanged,
    }
}

/// Below this many agents, planning stays on one thread.
const PARALLEL_MIN_AGENTS: usize = 2_000;

/// Every agent's outcome, in snapshot order, and the key derivations made
/// anew (only with `known`); an agent `unchanged_before` marks is unchanged
/// without a decision (see [`plan_remembering`]). The agents are
/// independent, so large snapshots are decided on `policy.threads` threads
/// (scoped: no thread outlives the call, each reads `known` and collects its
/// own derivations, and the result does not depend on how it was split).
fn decide_all<'a>(
    snapshot: &'a Snapshot,
    policy: &Policy,
    now: u64,
    copies: &OnceLock<PubkeyCopies<'a>>,
    known: Option<&KnownKeys>,
    unchanged_before: &[bool],
) -> (Vec<Decision>, Vec<(KeyHash, [u8; 32])>) {
    let agents = &snapshot.agents;
    let threads = policy.threads.max(1);
    let shared = shared_backfills(snapshot, policy);
    let shared = &shared;
    // The agents from `first` on.
    let decide_part = |first: usize, part: &[AgentSnapshot]| {
        let mut learned = Vec::new();
        let decisions: Vec<Decision> = part
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if unchanged_before.get(first + i).copied().unwrap_or(false) {
                    Decision::Unchanged
                } else {
                    let copies = copies.get_or_init(|| {
                        PubkeyCopies::of(snapshot.agents.iter().map(|agent| &agent.record))
                    });
                    let shared = shared.get(&a.record.index).filter(|_| {
                        is_pubkey_hex(&a.record.pubkey) && copies.count(&a.record.pubkey) == 1
                    });
                    let backfill = match shared {
                        None => Backfill::Own,
                        Some(shared) => Backfill::Shared {
                            choice: &shared.choice,
                            emit: shared.first == first + i,
                        },
                    };
                    decide(
                        a,
                        snapshot,
                        policy,
                        now,
                        copies,
                        known,
                        backfill,
                        &mut learned,
                    )
                }
            })
            .collect();
        (decisions, learned)
    };
    if threads == 1 || agents.len() < PARALLEL_MIN_AGENTS {
        return decide_part(0, agents);
    }
    let chunk = agents.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = agents
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| scope.spawn(move || decide_part(n * chunk, part)))
            .collect();
        let mut decisions = Vec::with_capacity(agents.len());
        let mut learned = Vec::new();
        for part in parts {
            let (part_decisions, part_learned) =
                part.join().expect("a planner thread does not panic");
            decisions.extend(part_decisions);
            learned.extend(part_learned);
        }
        (decisions, learned)
    })
}

#[allow(clippy::too_many_arguments)]
fn decide(
    agent: &AgentSnapshot,
    snapshot: &Snapshot,
    policy: &Policy,
    now: u64,
    copies: &PubkeyCopies<'_>,
    known: Option<&KnownKeys>,
    backfill: Backfill<'_>,
    learned: &mut Vec<(KeyHash, [u8; 32])>,
) -> Decision {
    let record = &agent.record;

    // A. Record validity: the first problem.
    if let Some((reason, detail)) = record_problems(record, copies).into_iter().next() {
        return Decision::Skip(reason, detail);
    }
    let relay: &str = agent.relay.as_deref().unwrap_or(&record.relay_url);

    let state = ProfileState::classify(&agent.observation);
    let BeforeKey {
        mut actions,
        expected,
        reasons,
    } = match before_key(record, relay, &state, &snapshot.personas, policy, backfill) {
        Ok(republish) => republish,
        Err(Decision::Skip(reason, detail))
            if reason.is_relay_unknown() && policy.mode == PlanMode::Full =>
        {
            // A problem found without the relay is reported as itself,
            // whatever the relay did: its key (A5) and its own tag (D4, at
            // `now`), as `validate` finds them.
            let key_check = match known {
                Some(known) => check_agent_key(record, known, learned),
                None => agent_keys(record).map(drop),
            };
            if let Err(problem) = key_check {
                return Decision::Skip(problem.0, problem.1);
            }
            if let Some(Err(why)) = record_auth_tag(record, now) {
                if !policy.publish_without_invalid_auth_tag {
                    return Decision::Skip(SkipReason::AuthTagInvalid, why);
                }
            }
            return Decision::Skip(reason, detail);
        }
        Err(decision) => return decision,
    };

    // A5. The agent's own key must sign the new event (its derivation taken
    // from `known` when given: the daemon's earlier ticks, or made while the
    // relays were read).
    let key_check = match known {
        Some(known) => check_agent_key(record, known, learned),
        None => agent_keys(record).map(drop),
    };
    if let Err((reason, detail)) = key_check {
        return Decision::Skip(reason, detail);
    }

    // D3. created_at and the future tolerance.
    let before_event = state.event();
    let created_at = next_created_at(now, before_event.map(|e| e.created_at));
    let limit = now.saturating_add(policy.future_tolerance_secs);
    if created_at > limit {
        let previous = before_event.map(|e| e.created_at).unwrap_or_default();
        return Decision::Skip(
            SkipReason::ClockSkew,
            format!(
                "the newest kind:0 on {relay} is dated {}, {} s ahead of now; a new event \
                 would be dated {}, beyond the {} s future tolerance",
                utc(previous),
                previous.saturating_sub(now),
                utc(created_at),
                policy.future_tolerance_secs
            ),
        );
    }

    // D4. Tags.
    let (tags, auth_tag_source) = match choose_auth_tag(record, before_event, created_at, policy) {
        Ok(chosen) => chosen,
        Err(detail) => return Decision::Skip(SkipReason::AuthTagInvalid, detail),
    };

    // D2. Content.
    let content = match &state {
        ProfileState::Present { content, .. } => {
            merge_content(Some(content), &record.name, &expected)
        }
        _ => merge_content(None, &record.name, &expected),
    };

    actions.push(Action::RepublishProfile(RepublishProfile {
        agent: record.pubkey.clone(),
        name: record.name.clone(),
        picture: expected,
        relay: relay.to_owned(),
        reasons,
        before: before_event.map(|event| EventBefore {
            id: event.id.clone(),
            created_at: event.created_at,
            content: event.content.clone(),
        }),
        after: EventAfter {
            content,
            tags,
            created_at_must_exceed: before_event.map(|e| e.created_at).unwrap_or(0),
        },
        auth_tag_source,
    }));
    finish(actions)
}

fn finish(actions: Vec<Action>) -> Decision {
    if actions.is_empty() {
        Decision::Unchanged
    } else {
        Decision::Actions(actions)
    }
}

/// An agent that steps B and C send on to rule A5: a republish is needed.
struct BeforeKey {
    /// Its backfill, when it gets one (B2).
    actions: Vec<Action>,
    /// The avatar its profile must show.
    expected: String,
    /// Why the profile must be republished (C1 to C3), never empty.
    reasons: Vec<RepublishReason>,
}

/// How rule B2 is decided for one entry of the snapshot.
#[derive(Clone, Copy)]
enum Backfill<'a> {
    /// From this entry's relay alone (an agent on one relay).
    Own,
    /// Once for an agent on several community relays, from all of them;
    /// the backfill action goes with the agent's first entry only.
    Shared {
        /// The choice.
        choice: &'a Chosen,
        /// True for the entry that carries the backfill action.
        emit: bool,
    },
}

/// Rule B2's outcome: the source and avatar, or the skip and why.
type Chosen = Result<(AvatarSource, String), (SkipReason, String)>;

/// Rule B2 of a record on several relays, decided once for all of them.
struct SharedBackfill {
    /// The snapshot position of the record's first entry.
    first: usize,
    /// The choice.
    choice: Chosen,
}

/// Steps B and C of an agent that passed rule A1 to A4: the decision when
/// they end it, else what a republish starts from. `relay` is for messages.
fn before_key(
    record: &AgentRecord,
    relay: &str,
    state: &ProfileState<'_>,
    personas: &BTreeMap<String, String>,
    policy: &Policy,
    backfill: Backfill<'_>,
) -> Result<BeforeKey, Decision> {
    // B. Expected avatar.
    let mut actions = Vec::new();
    let expected = match record.avatar_url.usable() {
        Some(avatar) => avatar.to_string(),
        None => {
            let (chosen, emit) = match backfill {
                Backfill::Own => (choose_backfill(record, state, personas, policy), true),
                Backfill::Shared { choice, emit } => (choice.clone(), emit),
            };
            match chosen {
                Ok((source, avatar)) => {
                    if emit {
                        actions.push(Action::BackfillAvatar(BackfillAvatar {
                            agent: record.pubkey.clone(),
                            name: record.name.clone(),
                            index: record.index,
                            source,
                            avatar_url: avatar.clone(),
                            before: record.avatar_url.clone(),
                        }));
                    }
                    avatar
                }
                Err((reason, detail)) => return Err(Decision::Skip(reason, detail)),
            }
        }
    };

    if policy.mode == PlanMode::BackfillOnly {
        return Err(finish(actions));
    }

    // C. Does the profile need a republish?
    if let ProfileState::Unknown { reason, skip } = state {
        // C5: an unreadable relay is never "missing".
        return Err(Decision::Skip(
            *skip,
            format!("{relay} could not be read: {reason}"),
        ));
    }
    let reasons = republish_reasons(state, &record.name, &expected).unwrap_or_default();
    if reasons.is_empty() {
        return Err(finish(actions));
    }
    // C6: an agent that owns its profile keeps a present, well-formed one
    // whatever its name or picture; a missing or malformed one is published
    // (the agent has no profile to own yet).
    if matches!(state, ProfileState::Present { .. })
        && policy.owner_of(&record.pubkey) == ProfileOwner::Agent
    {
        return Err(Decision::AgentManaged {
            actions,
            differences: reasons,
        });
    }
    Ok(BeforeKey {
        actions,
        expected,
        reasons,
    })
}

/// Whether planning `record` against `observation` reaches rule A5, the
/// derivation of its key, rule A1 to A4 aside: steps B and C as the planner
/// runs them, on the observation's content (its id and tags are not read).
/// The edge uses it to derive, while other relays are still being read, the
/// keys the plan will need; the plan is the same whatever it derived ahead.
/// An unreadable relay reaches it too (a key problem is reported as itself,
/// whatever the relay did), though no read shows the edge such a relay.
pub fn reaches_key_check(
    record: &AgentRecord,
    observation: &RelayObservation,
    personas: &BTreeMap<String, String>,
    policy: &Policy,
) -> bool {
    let state = ProfileState::classify(observation);
    match before_key(record, "", &state, personas, policy, Backfill::Own) {
        Ok(_) => true,
        Err(Decision::Skip(reason, _)) => {
            reason.is_relay_unknown() && policy.mode == PlanMode::Full
        }
        Err(_) => false,
    }
}

/// Rule A5's derivation for `record`, as the planner remembers it: the hash
/// of its key text and the x-only pubkey that key derives. `None` when the
/// record has no key, or one that does not parse (the planner says why).
pub fn derive_key(record: &AgentRecord) -> Option<(KeyHash, [u8; 32])> {
    let text = secret_text(record).ok()?;
    let keys = parse_agent_key(record, text).ok()?;
    Some((KeyHash::of(text), keys.public_key().to_bytes()))
}

/// Rule B2 before the relay is looked at, for a record with no usable
/// `avatar_url`: the persona's avatar wins whatever the relay holds; else
/// the relay's picture decides, then the command's default avatar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvatarChoice<'a> {
    /// The persona's (non-blank) avatar.
    Persona(&'a str),
    /// The relay's picture when its profile has one; else this default
    /// avatar of the record's command, when the command has one. An
    /// unreadable relay decides nothing (B3).
    RelayFirst {
        /// The command's default avatar.
        command_avatar: Option<&'a str>,
    },
}

/// Where a record without a usable avatar gets one (rule B2), as far as it
/// is known without the relay. `personas` maps persona ids to avatars.
pub fn avatar_choice<'a>(
    record: &AgentRecord,
    personas: &'a BTreeMap<String, String>,
    policy: &'a Policy,
) -> AvatarChoice<'a> {
    let persona_avatar = record
        .persona_id
        .as_deref()
        .and_then(|id| personas.get(id))
        .filter(|avatar| !avatar.trim().is_empty());
    match persona_avatar {
        Some(avatar) => AvatarChoice::Persona(avatar),
        None => AvatarChoice::RelayFirst {
            command_avatar: policy
                .command_avatars
                .lookup(record.agent_command.as_deref().unwrap_or_default()),
        },
    }
}

/// Rule B2 for every record without a usable avatar that the snapshot holds
/// on several relays (one entry per community relay), by record position:
/// the persona's avatar wins; else a picture the relays agree on; relays
/// whose pictures differ are a skip that names them; any relay that could
/// not be read is rule B3's skip (on every relay: a skip means no action at
/// all); else the command's default avatar, else B4. Records on one relay
/// are decided entry by entry, as before.
fn shared_backfills(snapshot: &Snapshot, policy: &Policy) -> HashMap<usize, SharedBackfill> {
    let mut shared = HashMap::new();
    let agents = &snapshot.agents;
    let mut start = 0;
    while start < agents.len() {
        let index = agents[start].record.index;
        let end = start
            + agents[start..]
                .iter()
                .take_while(|a| a.record.index == index)
                .count();
        let entries = &agents[start..end];
        if entries.len() > 1 && entries[0].record.avatar_url.usable().is_none() {
            shared.insert(
                index,
                SharedBackfill {
                    first: start,
                    choice: choose_shared_backfill(entries, &snapshot.personas, policy),
                },
            );
        }
        start = end;
    }
    shared
}

/// [`shared_backfills`]'s choice for one record's entries.
fn choose_shared_backfill(
    entries: &[AgentSnapshot],
    personas: &BTreeMap<String, String>,
    policy: &Policy,
) -> Chosen {
    let record = &entries[0].record;
    let relay_of = |entry: &AgentSnapshot| {
        entry
            .relay
            .clone()
            .unwrap_or_else(|| entry.record.relay_url.clone())
    };
    let command_avatar = match avatar_choice(record, personas, policy) {
        AvatarChoice::Persona(avatar) => return Ok((AvatarSource::Persona, avatar.to_string())),
        AvatarChoice::RelayFirst { command_avatar } => command_avatar,
    };
    let mut pictures: Vec<(String, String)> = Vec::new();
    for entry in entries {
        match ProfileState::classify(&entry.observation) {
            ProfileState::Unknown { reason, skip } => {
                return Err((
                    skip,
                    format!(
                        "{} without a persona avatar, and its community relay {} could not be \
                         read ({reason}); the avatar cannot be chosen safely",
                        record.avatar_url.record_phrase(),
                        relay_of(entry)
                    ),
                ))
            }
            ProfileState::Present { content, .. } => {
                if let Some(picture) = content.get_str("picture").filter(|p| !p.trim().is_empty()) {
                    pictures.push((relay_of(entry), picture));
                }
            }
            ProfileState::Missing | ProfileState::Malformed { .. } => {}
        }
    }
    if let Some((_, picture)) = pictures.first() {
        if pictures.iter().all(|(_, other)| other == picture) {
            return Ok((AvatarSource::Relay, picture.clone()));
        }
        let named: Vec<String> = pictures
            .iter()
            .map(|(relay, picture)| {
                format!("{relay} has {:?}", escape_controls(picture, false).as_ref())
            })
            .collect();
        return Err((
            SkipReason::RelaysDisagree,
            format!(
                "{} without a persona avatar, and its community relays show different pictures \
                 ({}); set avatar_url to the right one",
                record.avatar_url.record_phrase(),
                named.join(", ")
            ),
        ));
    }
    match command_avatar {
        Some(avatar) => Ok((AvatarSource::Command, avatar.to_string())),
        None => Err((
            SkipReason::NoAvatar,
            format!(
                "{}: no persona avatar, no picture on any community relay, and no default \
                 avatar for command `{}`; set avatar_url or add the command under [avatars]",
                record.avatar_url.record_phrase(),
                record.agent_command.as_deref().unwrap_or_default()
            ),
        )),
    }
}

/// Rule B2 to B4 for a legacy record: the first source that yields an avatar.
fn choose_backfill(
    record: &AgentRecord,
    state: &ProfileState<'_>,
    personas: &BTreeMap<String, String>,
    policy: &Policy,
) -> Result<(AvatarSource, String), (SkipReason, String)> {
    let command_avatar = match avatar_choice(record, personas, policy) {
        AvatarChoice::Persona(avatar) => return Ok((AvatarSource::Persona, avatar.to_string())),
        AvatarChoice::RelayFirst { command_avatar } => command_avatar,
    };
    match state {
        ProfileState::Unknown { reason, skip } => {
            return Err((
                *skip,
                format!(
                    "{} without a persona avatar, and its relay could not be read \
                     ({reason}); the avatar cannot be chosen safely",
                    record.avatar_url.record_phrase()
                ),
            ))
        }
        ProfileState::Present { content, .. } => {
            if let Some(picture) = content.get_str("picture").filter(|p| !p.trim().is_empty()) {
                return Ok((AvatarSource::Relay, picture));
            }
        }
        ProfileState::Missing | ProfileState::Malformed { .. } => {}
    }
    match command_avatar {
        Some(avatar) => Ok((AvatarSource::Command, avatar.to_string())),
        None => Err((
            SkipReason::NoAvatar,
            format!(
                "{}: no persona avatar, no picture on the relay, and no default \
                 avatar for command `{}`; set avatar_url or add the command under [avatars]",
                record.avatar_url.record_phrase(),
                record.agent_command.as_deref().unwrap_or_default()
            ),
        )),
    }
}

/// Rule A5: the record's key parses and is the key of its pubkey. Returns the
/// agent's keys (for signing at apply time), or the skip reason and why.
pub fn agent_keys(record: &AgentRecord) -> Result<Keys, (SkipReason, String)> {
    let keys = parse_agent_key(record, secret_text(record)?)?;
    let derived = keys.public_key();
    check_derived(record, &derived.to_bytes())?;
    Ok(keys)
}

/// Rule A5 as the planner runs it: the key's derivation is taken from
/// `known` when that holds the hash of this very key text, else derived
/// (and pushed on `learned`, for the caller to remember). The outcome is the
/// one [`agent_keys`] gives, key for key: only the same text has the same
/// hash.
pub fn check_agent_key(
    record: &AgentRecord,
    known: &KnownKeys,
    learned: &mut Vec<(KeyHash, [u8; 32])>,
) -> Result<(), (SkipReason, String)> {
    let text = secret_text(record)?;
    let hash = KeyHash::of(text);
    let derived = match known.get(&hash) {
        Some(derived) => *derived,
        None => {
            let derived = parse_agent_key(record, text)?.public_key().to_bytes();
            learned.push((hash, derived));
            derived
        }
    };
    check_derived(record, &derived)
}

/// The record's key text (trimmed), or rule A5's skip for a missing key:
/// `invalid_key` when it is in neither the keyring entry nor the record,
/// `key_unavailable` when the keyring could not be read (the key may be
/// there; the plan is then incomplete).
fn secret_text(record: &AgentRecord) -> Result<&str, (SkipReason, String)> {
    if let Some(text) = record
        .secret_key
        .as_ref()
        .map(|s| s.expose().trim())
        .filter(|text| !text.is_empty())
    {
        return Ok(text);
    }
    Err(match &record.key_origin {
        KeyOrigin::KeyringUnreadable(why) => (
            SkipReason::KeyUnavailable,
            format!(
                "the agent's key is not in the record and the OS keyring could not be read \
                 ({why}); unlock the keyring or run where it is reachable"
            ),
        ),
        KeyOrigin::Nowhere(entry) => (
            SkipReason::InvalidKey,
            format!(
                "no key: the keyring entry {entry} has no agent:{} and the record has no \
                 private_key_nsec; the agent's own key is needed to sign",
                short_pubkey(&record.pubkey)
            ),
        ),
        KeyOrigin::Inline | KeyOrigin::Keyring { .. } => (
            SkipReason::InvalidKey,
            "private_key_nsec is missing; the agent's own key is needed to sign".to_string(),
        ),
    })
}

/// Where the record's key was found, as messages name it.
fn key_place(record: &AgentRecord) -> Cow<'static, str> {
    match &record.key_origin {
        KeyOrigin::Keyring { entry, .. } => Cow::Owned(format!(
            "the key under agent:{} in the keyring entry {entry}",
            short_pubkey(&record.pubkey)
        )),
        _ => Cow::Borrowed("private_key_nsec"),
    }
}

/// The keys of a key text, or rule A5's skip for one that does not parse.
fn parse_agent_key(record: &AgentRecord, text: &str) -> Result<Keys, (SkipReason, String)> {
    SecretKey::from_bech32(text).map(Keys::new).map_err(|_| {
        (
            SkipReason::InvalidKey,
            format!("{} does not parse as a bech32 nsec key", key_place(record)),
        )
    })
}

/// Rule A5's last check: the pubkey the key derives (x-only, 32 bytes) is
/// the record's.
fn check_derived(record: &AgentRecord, derived: &[u8; 32]) -> Result<(), (SkipReason, String)> {
    let derived = hex::encode(derived);
    if derived != record.pubkey {
        return Err((
            SkipReason::KeyMismatch,
            format!(
                "{} is the key of {}, not of this pubkey; fix the record",
                key_place(record),
                short_pubkey(&derived)
            ),
        ));
    }
    Ok(())
}

/// Rule D4 for the record's own `auth_tag`: `None` when it has none; else the
/// tag when it is valid for a kind:0 dated `created_at`, or why it is not.
pub fn record_auth_tag(
    record: &AgentRecord,
    created_at: u64,
) -> Option<Result<Vec<String>, String>> {
    let text = record
        .auth_tag
        .as_deref()
        .filter(|t| !t.trim().is_empty())?;
    let checked = nip_oa::parse_tag_json(text)
        .and_then(|tag| nip_oa::check_for_event(&tag, &record.pubkey, METADATA_KIND, created_at));
    Some(checked.map(|tag| tag.to_tag()).map_err(|err| {
        format!(
            "auth_tag is not valid for a kind:0 dated {}: {err}",
            utc(created_at)
        )
    }))
}

/// Rule D4: the record's tag, else the existing event's valid tag, else none.
fn choose_auth_tag(
    record: &AgentRecord,
    before: Option<&super::model::ExistingEvent>,
    created_at: u64,
    policy: &Policy,
) -> Result<(Vec<Vec<String>>, AuthTagSource), String> {
    match record_auth_tag(record, created_at) {
        Some(Ok(tag)) => return Ok((vec![tag], AuthTagSource::Record)),
        Some(Err(_)) if policy.publish_without_invalid_auth_tag => {
            return Ok((Vec::new(), AuthTagSource::DroppedInvalid))
        }
        Some(Err(why)) => return Err(why),
        None => {}
    }
    if let Some(event) = before {
        if let Ok(Some(tag)) =
            nip_oa::find_valid_in_event(&event.tags, &record.pubkey, METADATA_KIND, created_at)
        {
            return Ok((vec![tag.to_tag()], AuthTagSource::Relay));
        }
    }
    Ok((Vec::new(), AuthTagSource::None))
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;

#[cfg(test)]
mod short_pubkey_tests {
    use super::short_pubkey;

    #[test]
    fn short_pubkey_shortens_hex_and_never_panics_on_other_text() {
        let hex = format!("{}{}", "1a2b3c4d", "0".repeat(48)) + "5e6f7a8b";
        assert_eq!(short_pubkey(&hex), "1a2b3c4d…5e6f7a8b");
        // 64 bytes, but not 64 characters: slicing by bytes would panic.
        let crafted = "é".repeat(32);
        assert_eq!(crafted.len(), 64);
        assert_eq!(
            short_pubkey(&crafted),
            format!("{}…{}", "é".repeat(8), "é".repeat(8))
        );
        assert_eq!(short_pubkey("record #3"), "record #3");
        assert_eq!(short_pubkey("\x1b[31m"), "\\u{1b}[31m");
    }
}
