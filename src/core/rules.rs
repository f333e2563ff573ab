//! The planner: RECONCILE.md sections A to D, agent by agent.
//!
//! [`plan`] is a pure function of the snapshot, the policy and `now`. Each
//! agent gets exactly one outcome: unchanged, a set of actions (at most one
//! backfill and one republish), or one skip. The order of the checks follows
//! the spec: record validity (A), the expected avatar (B), whether the profile
//! needs a republish (C), then what the new event must be (D).
//!
//! The rules it applies to single fields live beside it and are re-exported
//! here, where callers have always found them: the relay state
//! ([`super::profile_state`]), a record's identifiers ([`super::parse`]) and
//! problems ([`super::records`]), the agent's key ([`super::agent_key`]), and
//! text for people ([`super::display`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use super::agent_key::choose_auth_tag;
pub use super::agent_key::{agent_keys, check_agent_key, derive_key, record_auth_tag};
use super::content::merge_content;
pub use super::display::{escape_controls, short_pubkey, utc};
use super::known_keys::{KeyHash, KnownKeys};
use super::model::{
    AgentRecord, AgentSnapshot, PlanMode, Policy, ProfileOwner, RelayObservation, Snapshot,
};
pub use super::parse::{is_pubkey_hex, parse_relay_url, RelayUrlError};
use super::plan::{
    Action, AgentManaged, AvatarSource, BackfillAvatar, EventAfter, EventBefore, Plan,
    RepublishProfile, RepublishReason, Skip, SkipReason,
};
pub use super::profile_state::ProfileState;
pub use super::records::{record_problems, InStore, PubkeyCopies};

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
                        Some(shared) => Backfill::Shared(&shared.choice),
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
    let (mut decisions, learned) = if threads == 1 || agents.len() < PARALLEL_MIN_AGENTS {
        decide_part(0, agents)
    } else {
        decide_in_parts(agents, threads, decide_part)
    };
    if !shared.is_empty() {
        let copies = copies
            .get_or_init(|| PubkeyCopies::of(snapshot.agents.iter().map(|agent| &agent.record)));
        attach_shared_backfills(&mut decisions, agents, shared, copies);
    }
    (decisions, learned)
}

/// [`decide_all`] on `threads` threads, each deciding a contiguous part.
fn decide_in_parts(
    agents: &[AgentSnapshot],
    threads: usize,
    decide_part: impl Fn(usize, &[AgentSnapshot]) -> (Vec<Decision>, Vec<(KeyHash, [u8; 32])>) + Sync,
) -> (Vec<Decision>, Vec<(KeyHash, [u8; 32])>) {
    let decide_part = &decide_part;
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
    /// no entry carries the backfill action while it is decided: it goes
    /// afterwards with the first entry not skipped
    /// ([`attach_shared_backfills`]).
    Shared(&'a Chosen),
}

/// Gives each record on several relays its one backfill (rule B2, decided
/// across them): with its first entry that is not skipped, before that
/// entry's republish (E1). A skip on one relay (its clock ahead, a tag it
/// holds) is that relay's; the record's backfill still goes with the
/// republishes of the others, which publish the avatar it writes. Skipped
/// on every relay: no backfill (a skip means no action).
fn attach_shared_backfills(
    decisions: &mut [Decision],
    agents: &[AgentSnapshot],
    shared: &HashMap<usize, SharedBackfill>,
    copies: &PubkeyCopies<'_>,
) {
    for backfill in shared.values() {
        let record = &agents[backfill.first].record;
        // Records rule A rejects were decided entry by entry (and skipped).
        if !is_pubkey_hex(&record.pubkey) || copies.count(&record.pubkey) != 1 {
            continue;
        }
        let Ok((source, avatar)) = &backfill.choice else {
            continue;
        };
        let entries = agents[backfill.first..]
            .iter()
            .take_while(|a| a.record.index == record.index)
            .count();
        let action = Action::BackfillAvatar(BackfillAvatar {
            agent: record.pubkey.clone(),
            name: record.name.clone(),
            index: record.index,
            source: *source,
            avatar_url: avatar.clone(),
            before: record.avatar_url.clone(),
        });
        let carrier = decisions[backfill.first..backfill.first + entries]
            .iter_mut()
            .find(|decision| !matches!(decision, Decision::Skip(..)));
        match carrier {
            Some(Decision::Actions(actions) | Decision::AgentManaged { actions, .. }) => {
                actions.insert(0, action);
            }
            Some(unchanged @ Decision::Unchanged) => *unchanged = Decision::Actions(vec![action]),
            Some(Decision::Skip(..)) | None => {}
        }
    }
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
                Backfill::Shared(choice) => (choice.clone(), false),
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
