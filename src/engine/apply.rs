//! The apply engine: carries out a plan, checking each action first.
//!
//! For every action it asks the core whether the world is still the one the
//! plan was made from (`core::apply`), then acts: all backfills in one atomic
//! store write, then the republishes, signed with each agent's own key,
//! published per relay and confirmed by reading the profile back. Every
//! outcome goes to the journal as it happens. The whole apply holds the
//! store's lock. The engine decides nothing itself: preconditions, the event
//! to sign, relay answers and the safety threshold are the core's.
//!
//! With a stop flag ([`ApplyOptions::stop`]), the flag is read between
//! actions: before the backfills, before each relay's republishes, and by the
//! publisher before each event it sends (`crate::engine::orchestrate` tells the
//! whole story of a SIGTERM).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use futures_util::StreamExt;

use crate::config::Config;
use crate::core::apply::{
    self as rules_apply, backfill_after_apply, backfill_outcome, check_backfill,
    republish_after_backfill, AboveSafetyThreshold, Outcome, Precheck,
};
pub use crate::core::apply::{ActionResult, ApplyReport};
use crate::core::model::AgentRecord;
use crate::core::plan::{Action, BackfillAvatar, RepublishProfile};
use crate::core::rules::{InStore, PubkeyCopies};
use crate::engine::read_prep::{read_auth_key, sign_in_identities};
use crate::store::agents::{read_agent_store, sha256_of_file, StoreError, AGENT_STORE};
use crate::store::journal::{Entry, Journal};
use crate::store::lock::{lock_path, ApplyLock};
use crate::store::planfile::{file_stamp, rfc3339, PlanDocument};
#[cfg(any(test, feature = "test-hooks"))]
use crate::store::write::InjectedFault;
use crate::store::write::{resolve_target, write_avatars, AvatarEdit, EditDecision, WriteOptions};

#[cfg(any(test, feature = "test-hooks"))]
mod fault;
mod republish;

#[cfg(any(test, feature = "test-hooks"))]
use fault::rewrite_as_the_app_does;
use republish::{republish_unless_stopping, RelayContext, StoreRecords};

/// How to apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Apply even above the safety threshold.
    pub force: bool,
    /// A fault injected into the store write (tests only: the `test-hooks`
    /// feature).
    #[cfg(any(test, feature = "test-hooks"))]
    pub fault: InjectedFault,
    /// Set to stop between actions (SIGTERM in the daemon): no new action
    /// begins (no backfill write, no relay's batch, no further event of a
    /// batch); events already sent get their OK or time out, are read back
    /// and journaled. The actions not begun are neither done nor journaled
    /// ([`ApplyReport::not_begun`]); the next run plans them again.
    pub stop: Option<Arc<AtomicBool>>,
    /// How the relays' events are checked when read (preconditions,
    /// confirmation): with the run's memory of the checks already made, the
    /// events this apply signs count as checked.
    pub checker: crate::net::verified::Checker,
    /// The agent store's records as the plan was just made from them, when
    /// the same process planned (`orchestrate::make_plan_to_apply`, the
    /// daemon's ticks): taken for the republishes' preconditions instead of a
    /// new parse while the store still holds the bytes they were parsed from.
    pub planned_records: Option<PlannedRecords>,
}

/// The agent store's records as a plan was made from them, with the SHA-256
/// of the bytes they were parsed from (the plan's `store.sha256`).
#[derive(Debug, Clone)]
pub struct PlannedRecords {
    /// SHA-256 of the store's bytes the records were parsed from,
    /// lower-case hex.
    pub sha256: String,
    /// The records, in store order.
    pub records: Arc<Vec<AgentRecord>>,
}

/// The agent store's records now, for the republishes' preconditions: the
/// plan's own parse when the file, hashed as it is read, still holds the
/// bytes it was made from (so the parse is the one a new parse would give),
/// else a new parse, whose text is dropped at once.
fn records_now<'p>(
    config: &Config,
    planned: Option<&'p PlannedRecords>,
) -> Result<std::borrow::Cow<'p, [AgentRecord]>, StoreError> {
    let path = &config.agents;
    if let Some(planned) = planned {
        if sha256_of_file(AGENT_STORE, path)? == planned.sha256 {
            tracing::debug!("the agent store did not change since the plan: not parsed again");
            return Ok(std::borrow::Cow::Borrowed(planned.records.as_slice()));
        }
    }
    let store = read_agent_store(path)?;
    let mut records: Vec<AgentRecord> = store.records.into_iter().map(|s| s.record).collect();
    config.keys.attach(&mut records, config.policy.mode);
    Ok(std::borrow::Cow::Owned(crate::core::model::on_communities(
        records,
        &config.communities,
    )))
}

impl ApplyOptions {
    /// Options that apply even above the safety threshold (`--force`).
    pub fn forced() -> Self {
        Self {
            force: true,
            ..Self::default()
        }
    }

    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }
}

/// Why an apply was refused before it changed anything.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The plan was made from another store.
    #[error("the plan was made from the store {planned}, but the config uses {configured}; apply it with that store's config, or make a new plan")]
    OtherStore {
        /// The store in the plan.
        planned: String,
        /// The configured store.
        configured: String,
    },
    /// Above the safety threshold.
    #[error(transparent)]
    Safety(#[from] AboveSafetyThreshold),
    /// The store cannot be read to count its agents for the threshold.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Checks that a plan may be applied with this config: same store, and under
/// the safety threshold unless forced, the threshold counted against the
/// live store (never the plan file's count: a file claiming a larger store
/// would pass it). `planned` are the records this process planned from,
/// counted when the store still holds their bytes; else the store is read.
/// Changes nothing.
pub fn check_plan(
    config: &Config,
    doc: &PlanDocument,
    force: bool,
    planned: Option<&PlannedRecords>,
) -> Result<(), Refusal> {
    let configured = canonical(&config.agents);
    let planned_store = canonical(Path::new(&doc.store.path));
    if configured != planned_store {
        return Err(Refusal::OtherStore {
            planned: doc.store.path.clone(),
            configured: configured.display().to_string(),
        });
    }
    let live_agents = match planned {
        Some(planned) if sha256_of_file(AGENT_STORE, &config.agents)? == planned.sha256 => {
            // One record on several community relays is one agent.
            1 + planned
                .records
                .windows(2)
                .filter(|pair| pair[0].index != pair[1].index)
                .count()
                - usize::from(planned.records.is_empty())
        }
        _ => read_agent_store(&config.agents)?.records.len(),
    };
    rules_apply::safety_check(
        &doc.plan,
        live_agents,
        config.safety.max_republish_fraction,
        config.safety.min_agents,
        force,
    )
    .map_err(Refusal::from)
}

/// The run, locked for one journal line (never across an await).
fn lock<'r, 'a>(shared: &'r Mutex<Run<'a>>) -> std::sync::MutexGuard<'r, Run<'a>> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

struct Run<'a> {
    journal: Journal,
    progress: crate::progress::Progress,
    results: BTreeMap<String, ActionResult>,
    now: &'a (dyn Fn() -> u64 + Sync),
}

impl Run<'_> {
    /// Journals that the relay accepted a republish's event (its OK), before
    /// the read-back confirms it ([`crate::store::journal::PUBLISHED`]); the action
    /// is not counted done, and the report does not show it.
    fn published(&mut self, action: &RepublishProfile, event_id: String) -> anyhow::Result<()> {
        let whole = Action::RepublishProfile(action.clone());
        self.journal
            .record(&Entry {
                at: rfc3339((self.now)()),
                action: whole.id(),
                kind: whole.type_name().to_string(),
                agent: action.agent.clone(),
                outcome: crate::store::journal::PUBLISHED.to_string(),
                reason: Some("the relay accepted the event; not yet read back".to_string()),
                event_id: Some(event_id),
            })
            .with_context(|| format!("cannot write the journal {}", self.journal.path().display()))
    }

    /// Journals an action's outcome, and counts the action done the first
    /// time. A later line for the same action replaces the earlier one, in
    /// the report and for readers of the journal.
    fn finish(
        &mut self,
        action: &Action,
        outcome: Outcome,
        reason: Option<String>,
        event_id: Option<String>,
    ) -> anyhow::Result<()> {
        let result = ActionResult {
            id: action.id(),
            kind: action.type_name(),
            agent: action.agent().to_string(),
            name: action.name().to_string(),
            relay: action.as_republish().map(|r| r.relay.clone()),
            outcome,
            reason,
            event_id,
        };
        self.journal
            .record(&Entry {
                at: rfc3339((self.now)()),
                action: result.id.clone(),
                kind: result.kind.to_string(),
                agent: result.agent.clone(),
                outcome: outcome.as_str().to_string(),
                reason: result.reason.clone(),
                event_id: result.event_id.clone(),
            })
            .with_context(|| {
                format!("cannot write the journal {}", self.journal.path().display())
            })?;
        match outcome {
            Outcome::Applied | Outcome::AlreadyApplied => {
                tracing::info!(action = %result.id, outcome = outcome.as_str(), "action done")
            }
            // The report's table and its error line say it on a terminal;
            // the daemon's log (info) keeps a line per action.
            _ => tracing::info!(
                action = %result.id,
                outcome = outcome.as_str(),
                reason = result.reason.as_deref().unwrap_or(""),
                "action not done"
            ),
        }
        if self.results.insert(result.id.clone(), result).is_none() {
            self.progress.inc(1);
        }
        Ok(())
    }
}

/// Applies a plan (already checked with [`check_plan`] and approved).
/// `plan_path` locates the journal; `now` is the clock (Unix seconds).
pub async fn apply(
    config: &Config,
    doc: &PlanDocument,
    plan_path: &Path,
    opts: &ApplyOptions,
    now: &(dyn Fn() -> u64 + Sync),
) -> anyhow::Result<ApplyReport> {
    check_plan(config, doc, opts.force, opts.planned_records.as_ref())?;
    let started = rfc3339(now());
    let target = resolve_target(&config.agents)
        .with_context(|| format!("cannot read the agent store {}", config.agents.display()))?;
    let _lock = ApplyLock::acquire(&lock_path(&target), &started)?;
    // The journal is opened before anything changes: a run that could not
    // record what it does does nothing.
    let journal = open_journal(plan_path, opts).with_context(|| {
        format!(
            "cannot open the journal next to {}; nothing was changed",
            plan_path.display()
        )
    })?;
    let mut run = Run {
        journal,
        progress: crate::progress::Progress::bar(doc.plan.actions.len() as u64, "apply"),
        results: BTreeMap::new(),
        now,
    };

    // E1: every backfill (one atomic store write) before any republish.
    let backfills: Vec<&BackfillAvatar> = doc
        .plan
        .actions
        .iter()
        .filter_map(Action::as_backfill)
        .collect();
    let stamp = file_stamp(now());
    let backup = if opts.stopping() {
        None
    } else {
        apply_backfills(&mut run, config, &backfills, &stamp, opts)?
    };
    #[cfg(any(test, feature = "test-hooks"))]
    if opts.fault == InjectedFault::AppRewritesStoreAfterBackfill {
        if let Some(backup) = &backup {
            rewrite_as_the_app_does(&target, &std::fs::read(backup)?)?;
        }
    }

    // Republishes, per relay; each waits for its agent's backfill (E1).
    let backfill_results: HashMap<String, (Outcome, Option<String>)> = run
        .results
        .values()
        .map(|r| (r.agent.clone(), (r.outcome, r.reason.clone())))
        .collect();
    let vouched_before = opts.checker.vouched();
    let mut records_from_plan = false;
    let republishes: Vec<&RepublishProfile> = doc
        .plan
        .actions
        .iter()
        .filter_map(Action::as_republish)
        .collect();
    if !republishes.is_empty() {
        let store_records = records_now(config, opts.planned_records.as_ref())?;
        records_from_plan = matches!(store_records, std::borrow::Cow::Borrowed(_));
        let records = StoreRecords::of(&store_records, &config.relay.rewrite);
        let mut by_relay: BTreeMap<&str, Vec<&RepublishProfile>> = BTreeMap::new();
        for r in republishes {
            let action = Action::RepublishProfile(r.clone());
            let backfill = backfill_results
                .get(&r.agent)
                .map(|(outcome, why)| (*outcome, why.as_deref()));
            if let Some((outcome, why)) = republish_after_backfill(backfill) {
                run.finish(&action, outcome, Some(why), None)?;
                continue;
            }
            // The relay comes from the live store and config, never from the
            // file: a plan naming another relay is not read from or
            // published to.
            if let InStore::One(record) = records.find(&r.agent, &r.relay) {
                let relay = config.effective_relay(&record.relay_url);
                if relay != r.relay {
                    let why = format!(
                        "relay differs: the plan says {}, the store and config say {relay}",
                        r.relay
                    );
                    run.finish(&action, Outcome::Stale, Some(why), None)?;
                    continue;
                }
            }
            by_relay.entry(r.relay.as_str()).or_default().push(r);
        }
        let service_keys = read_auth_key(config)?;
        let identities = Arc::new(sign_in_identities(
            config,
            store_records.iter(),
            service_keys.as_ref(),
        ));
        let context = RelayContext {
            records: &records,
            service_keys: service_keys.as_ref(),
            identities: &identities,
            stop: &opts.stop,
            checker: &opts.checker,
        };
        // Relays at the same time, as many as the snapshot reads at once:
        // each relay's round trips are its own.
        let shared = Mutex::new(run);
        let mut relays = Vec::with_capacity(by_relay.len());
        for (relay, actions) in by_relay {
            relays.push(republish_unless_stopping(
                &shared, config, relay, actions, &context, opts,
            ));
        }
        let ended: Vec<anyhow::Result<()>> = futures_util::stream::iter(relays)
            .buffer_unordered(config.relay.max_concurrent_relays.max(1))
            .collect()
            .await;
        run = shared.into_inner().unwrap_or_else(|e| e.into_inner());
        ended.into_iter().collect::<anyhow::Result<()>>()?;
    }
    recheck_backfills(&mut run, config, &backfills)?;
    run.journal.sync().ok();
    run.progress.finish();

    let results: Vec<ActionResult> = doc
        .plan
        .actions
        .iter()
        .filter_map(|a| run.results.get(&a.id()).cloned())
        .collect();
    let not_begun = doc.plan.actions.len() - results.len();
    if not_begun > 0 {
        tracing::info!(
            not_begun,
            "stopped: the actions not begun are left for the next run"
        );
    }
    Ok(ApplyReport {
        results,
        skipped: doc.plan.skipped.clone(),
        journal: run.journal.path().to_path_buf(),
        backup,
        not_begun,
        records_from_plan,
        signatures_vouched: opts.checker.vouched() - vouched_before,
    })
}

/// The end of an apply, beside the running app: the store is read once more
/// and each backfill that landed is asked about again (the core decides); one
/// the app has rewritten away is journaled and reported `stale` (the next run
/// redoes it). A store that cannot be read now changes no outcome.
fn recheck_backfills(
    run: &mut Run<'_>,
    config: &Config,
    backfills: &[&BackfillAvatar],
) -> anyhow::Result<()> {
    let landed: Vec<(&BackfillAvatar, Outcome)> = backfills
        .iter()
        .filter_map(|b| {
            let id = Action::BackfillAvatar((*b).clone()).id();
            run.results.get(&id).map(|r| (*b, r.outcome))
        })
        .filter(|(_, outcome)| matches!(outcome, Outcome::Applied | Outcome::AlreadyApplied))
        .collect();
    if landed.is_empty() {
        return Ok(());
    }
    let store = match read_agent_store(&config.agents) {
        Ok(store) => store,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the store again to check the backfills");
            return Ok(());
        }
    };
    let copies = PubkeyCopies::of(store.records.iter().map(|r| &r.record));
    for (action, outcome) in landed {
        let now = copies.find(&action.agent).map(|i| {
            &store
                .record(i)
                .expect("PubkeyCopies names the store's own records")
                .record
                .avatar_url
        });
        if let Some((outcome, why)) = backfill_after_apply(action, outcome, now) {
            let whole = Action::BackfillAvatar(action.clone());
            run.finish(&whole, outcome, Some(why), None)?;
        }
    }
    Ok(())
}

/// Opens the journal of the plan at `plan_path`.
fn open_journal(plan_path: &Path, opts: &ApplyOptions) -> std::io::Result<Journal> {
    #[cfg(any(test, feature = "test-hooks"))]
    if opts.fault == InjectedFault::JournalReadOnly {
        return Err(std::io::Error::new(
            std::io::ErrorKind::ReadOnlyFilesystem,
            "read-only file system (injected)",
        ));
    }
    let _ = opts;
    Journal::open(plan_path)
}

fn apply_backfills(
    run: &mut Run<'_>,
    config: &Config,
    backfills: &[&BackfillAvatar],
    stamp: &str,
    opts: &ApplyOptions,
) -> anyhow::Result<Option<PathBuf>> {
    // Without the test hooks, `opts` carries nothing the write needs.
    let _ = opts;
    if backfills.is_empty() {
        return Ok(None);
    }
    let by_agent: HashMap<&str, &BackfillAvatar> =
        backfills.iter().map(|b| (b.agent.as_str(), *b)).collect();
    let edits: Vec<AvatarEdit> = backfills
        .iter()
        .map(|b| AvatarEdit {
            pubkey: b.agent.clone(),
            avatar_url: b.avatar_url.clone(),
        })
        .collect();
    let mut prechecks: HashMap<String, Precheck> = HashMap::new();
    let written = write_avatars(
        &config.agents,
        &edits,
        |edit, current| {
            let precheck = match by_agent.get(edit.pubkey.as_str()) {
                Some(action) => check_backfill(action, current),
                None => Precheck::Stale("not in the plan".to_string()),
            };
            let decision = if precheck == Precheck::Proceed {
                EditDecision::Write
            } else {
                EditDecision::Skip
            };
            prechecks.insert(edit.pubkey.clone(), precheck);
            decision
        },
        WriteOptions {
            backup_stamp: Some(stamp),
            #[cfg(any(test, feature = "test-hooks"))]
            fault: opts.fault,
        },
    );
    let (written, backup, error) = match written {
        Ok(w) => (
            w.written.into_iter().collect::<HashSet<_>>(),
            w.backup,
            None,
        ),
        Err(err) => (HashSet::new(), None, Some(err.to_string())),
    };
    for action in backfills {
        let whole = Action::BackfillAvatar((*action).clone());
        let precheck = prechecks.get(&action.agent).cloned();
        let (outcome, reason) = backfill_outcome(
            written.contains(&action.agent),
            precheck.as_ref(),
            error.as_deref(),
        );
        run.finish(&whole, outcome, reason, None)?;
    }
    Ok(backup)
}
