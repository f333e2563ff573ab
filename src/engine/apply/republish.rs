//! Apply's republishes: each relay's actions rechecked against the live
//! state, signed on the pool and published; the store's records found by
//! pubkey for them.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use nostr::{EventBuilder, Keys, Kind, PublicKey, Tag, Timestamp};

use crate::config::Config;
use crate::core::apply::{
    check_republish, confirm_publish, event_to_sign, rebuild_republish, NotSignable, Outcome,
    Precheck, RecordNow,
};
use crate::core::model::{AgentRecord, RelayObservation};
use crate::core::nip_oa::parse_tag_json;
use crate::core::plan::{Action, RepublishProfile};
use crate::core::rules::{agent_keys, InStore, PubkeyCopies};
use crate::engine::read_prep::agent_identity;
use crate::engine::snapshot::read_options;
use crate::net::publish::{publish_all_reporting, Delivery, PublishItem, PublishOptions};
use crate::net::relay::{read_profiles, read_relays, ReadOptions};
use crate::net::verified::Checker;
use crate::protocol::nip42::Identity;

use super::{lock, ApplyOptions, Run};

/// Where a relay's republishes are published: the store's records (by
/// pubkey), sign-in identities, the service key, and the stop flag.
pub(super) struct RelayContext<'a> {
    pub(super) records: &'a StoreRecords<'a>,
    pub(super) service_keys: Option<&'a Keys>,
    pub(super) identities: &'a Arc<BTreeMap<String, Vec<Identity>>>,
    pub(super) stop: &'a Option<Arc<AtomicBool>>,
    pub(super) checker: &'a crate::net::verified::Checker,
}

/// The store's records as read before the republishes, found by pubkey.
pub(super) struct StoreRecords<'a> {
    records: &'a [AgentRecord],
    copies: PubkeyCopies<'a>,
    rewrite: &'a BTreeMap<String, String>,
}

impl<'a> StoreRecords<'a> {
    /// `records` in store order (each `index` is its position in the file;
    /// a record on several community relays is there once per relay, side
    /// by side), and the URL rewrites that turn their relays into the
    /// plan's.
    pub(super) fn of(records: &'a [AgentRecord], rewrite: &'a BTreeMap<String, String>) -> Self {
        Self {
            records,
            copies: PubkeyCopies::of(records),
            rewrite,
        }
    }

    /// The record of `pubkey` when exactly one holds it (rule A2), as it
    /// stands on `relay` (the plan's relay, after rewrite): its entry for
    /// that community relay, whose URL the sign-in names.
    pub(super) fn find(&self, pubkey: &str, relay: &str) -> InStore<&'a AgentRecord> {
        self.copies.find(pubkey).map(|i| {
            let start = self.records.partition_point(|r| r.index < i);
            let entries = self.records[start..]
                .iter()
                .take_while(|r| r.index == i)
                .collect::<Vec<_>>();
            entries
                .iter()
                .find(|r| crate::config::rewrite_relay_url(&r.relay_url, self.rewrite) == relay)
                .or(entries.first())
                .copied()
                .expect("PubkeyCopies names these records' own positions")
        })
    }
}

/// A republish that passed its precondition: the record, and the action as
/// the rules rebuilt it from the live state.
type ToSign<'a> = (&'a AgentRecord, RepublishProfile);

/// [`republish_on_relay`], unless the run is stopping by the time the
/// relay's turn comes.
pub(super) async fn republish_unless_stopping(
    shared: &Mutex<Run<'_>>,
    config: &Config,
    relay: &str,
    actions: Vec<&RepublishProfile>,
    context: &RelayContext<'_>,
    opts: &ApplyOptions,
) -> anyhow::Result<()> {
    if opts.stopping() {
        tracing::info!(relay, "stopping: the rest is left for the next run");
        return Ok(());
    }
    republish_on_relay(shared, config, relay, &actions, context).await
}

async fn republish_on_relay(
    shared: &Mutex<Run<'_>>,
    config: &Config,
    relay: &str,
    actions: &[&RepublishProfile],
    context: &RelayContext<'_>,
) -> anyhow::Result<()> {
    let RelayContext {
        records,
        service_keys,
        identities,
        stop,
        checker,
    } = context;
    let authors: Vec<PublicKey> = actions
        .iter()
        .filter_map(|a| PublicKey::from_hex(&a.agent).ok())
        .collect();
    let read = ReadOptions {
        identities: Arc::clone(identities),
        checker: Checker::clone(checker),
        ..read_options(config)
    };
    let current = read_relays(BTreeMap::from([(relay.to_string(), authors)]), &read)
        .await
        .remove(relay)
        .unwrap_or_default();
    let unreadable = RelayObservation::Unreadable("the relay was not read".to_string());
    let observation = |agent: &str| -> RelayObservation {
        current
            .observations
            .get(agent)
            .cloned()
            .unwrap_or_else(|| unreadable.clone())
    };

    // Each action's precondition, in order; those that proceed are signed
    // on the pool, every core at once (a relay's batch is 1,000 key
    // derivations and signatures at 100,000 agents and 10% stale), while the
    // other relays' reads and publishes go on.
    // What is signed is the event the rules rebuild from the live store and
    // this read, never the plan file's content, tags or relay.
    let now = (lock(shared).now)();
    let steps: Vec<Result<ToSign<'_>, (Outcome, Option<String>)>> = actions
        .iter()
        .map(|action| {
            let record = records.find(&action.agent, relay);
            let record_now = record.map(|r| RecordNow {
                name: r.name.clone(),
                avatar: r.avatar_url.usable().map(str::to_string),
            });
            let observed = observation(&action.agent);
            let precheck = match check_republish(action, record_now.as_ref(), &observed) {
                Precheck::Proceed => {
                    let record = record.one().expect("a record passed the precondition");
                    match rebuild_republish(
                        action,
                        record,
                        &config.effective_relay(&record.relay_url),
                        &observed,
                        &config.policy,
                        now,
                    ) {
                        Ok(rebuilt) => return Ok((record, rebuilt)),
                        Err(precheck) => precheck,
                    }
                }
                other => other,
            };
            Err(match precheck {
                Precheck::AlreadyApplied => (Outcome::AlreadyApplied, None),
                Precheck::Stale(why) => (Outcome::Stale, Some(why)),
                Precheck::Unknown(why) => (Outcome::Failed, Some(why)),
                Precheck::Proceed => unreachable!("a rebuild that proceeds returned above"),
            })
        })
        .collect();
    let to_sign: Vec<(RepublishProfile, AgentRecord)> = steps
        .iter()
        .filter_map(|step| {
            let (record, rebuilt) = step.as_ref().ok()?;
            Some((rebuilt.clone(), (*record).clone()))
        })
        .collect();
    let mut signed = sign_on_pool(to_sign, now, config.policy.future_tolerance_secs)
        .await?
        .into_iter();
    let mut to_publish: Vec<(&RepublishProfile, PublishItem)> = Vec::new();
    for (action, step) in actions.iter().zip(steps) {
        let whole = Action::RepublishProfile((*action).clone());
        let (outcome, why) = match step.map(|_| signed.next()) {
            Err(done) => done,
            Ok(Some(Ok(item))) => {
                // Signed here: its read-back needs no signature check.
                checker.signed_here(&item.event);
                to_publish.push((action, item));
                continue;
            }
            Ok(Some(Err(why))) => (Outcome::Failed, Some(why)),
            Ok(None) => unreachable!("one signing per action that proceeds"),
        };
        lock(shared).finish(&whole, outcome, why, None)?;
    }
    if to_publish.is_empty() {
        return Ok(());
    }

    let publish = PublishOptions {
        connect_timeout: config.relay.connect_timeout,
        publish_timeout: config.relay.publish_timeout,
        max_in_flight: config.relay.max_publish_in_flight,
        service_keys: service_keys.cloned(),
        // A relay that asked the read above for authentication gets each
        // agent's event over a connection signed in as that agent.
        sign_in_as_author: current.auth_demanded,
        max_author_sessions: config.relay.max_author_sessions,
        tls: config.relay.tls.clone(),
        stop: Option::clone(stop),
        ..PublishOptions::default()
    };
    let items: Vec<PublishItem> = to_publish.iter().map(|(_, item)| item.clone()).collect();
    // Each accepted event is journaled `published` as its OK arrives, so a
    // run that ends before the read-back (a crash, a kill) leaves a record
    // of what went out.
    let journal_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let on_accepted = |index: usize| {
        let (action, item) = &to_publish[index];
        if let Err(error) = lock(shared).published(action, item.event.id.to_hex()) {
            tracing::error!(error = %format!("{error:#}"), "cannot journal a published event");
            journal_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(error);
        }
    };
    let deliveries = publish_all_reporting(relay, items, &publish, &on_accepted).await;
    if let Some(error) = journal_error
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
    {
        return Err(error);
    }

    let mut to_confirm: Vec<(&RepublishProfile, String)> = Vec::new();
    for ((action, item), delivery) in to_publish.iter().zip(deliveries) {
        let whole = Action::RepublishProfile((*action).clone());
        let event_id = item.event.id.to_hex();
        match delivery {
            Delivery::Accepted => to_confirm.push((action, event_id)),
            Delivery::Refused(message) => lock(shared).finish(
                &whole,
                Outcome::Failed,
                Some(format!("the relay refused the event: {message}")),
                Some(event_id),
            )?,
            Delivery::Failed(why) => {
                lock(shared).finish(&whole, Outcome::Failed, Some(why), Some(event_id))?
            }
            // Stopping: not begun, not journaled; the next run plans it again.
            Delivery::NotSent => {}
        }
    }
    if to_confirm.is_empty() {
        return Ok(());
    }

    // Confirm by reading back: our event, or a newer one that already matches.
    let authors: Vec<PublicKey> = to_confirm
        .iter()
        .filter_map(|(a, _)| PublicKey::from_hex(&a.agent).ok())
        .collect();
    let after = read_profiles(BTreeMap::from([(relay.to_string(), authors)]), &read).await;
    for (action, event_id) in to_confirm {
        let whole = Action::RepublishProfile(action.clone());
        let seen = after
            .get(relay)
            .and_then(|m| m.get(&action.agent))
            .cloned()
            .unwrap_or_else(|| unreadable.clone());
        let (outcome, reason) = confirm_publish(action, &event_id, &seen);
        lock(shared).finish(&whole, outcome, reason, Some(event_id))?;
    }
    Ok(())
}

/// Each republish of `to_sign` with its record's key (rule A5 again, on the
/// record as it is now) and signed at `now` ([`sign`]), on the pool, in
/// order: the item to publish, or why its action fails.
async fn sign_on_pool(
    to_sign: Vec<(RepublishProfile, AgentRecord)>,
    now: u64,
    future_tolerance_secs: u64,
) -> anyhow::Result<Vec<Result<PublishItem, String>>> {
    use rayon::prelude::*;
    if to_sign.is_empty() {
        return Ok(Vec::new());
    }
    let (done, signed) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let items = to_sign
            .par_iter()
            .map(|(action, record)| {
                let keys =
                    agent_keys(record).map_err(|(reason, why)| format!("{reason}: {why}"))?;
                let event =
                    sign(action, &keys, now, future_tolerance_secs).map_err(|e| e.to_string())?;
                // The sign-in carries the tag the event carries (rule D4 may
                // take it from the relay's event), else the record's, as it is:
                // the relay checks it.
                let tag = action
                    .after
                    .tags
                    .iter()
                    .find(|t| t.first().is_some_and(|name| name == "auth"))
                    .cloned()
                    .or_else(|| {
                        record
                            .auth_tag
                            .as_deref()
                            .and_then(|text| parse_tag_json(text).ok())
                    });
                let sign_in = agent_identity(record, &action.relay, keys.clone(), tag);
                Ok(PublishItem {
                    event,
                    keys,
                    sign_in: Some(sign_in),
                })
            })
            .collect();
        let _ = done.send(items);
    });
    signed
        .await
        .context("signing the republishes stopped before it ended")
}

/// Why a republish could not be signed (its action fails with this reason).
#[derive(Debug, thiserror::Error)]
enum SignError {
    /// The core says it must not be signed now (D3, D4).
    #[error(transparent)]
    NotSignable(#[from] NotSignable),
    /// A planned tag is not a tag nostr accepts.
    #[error("a planned tag does not parse: {0}")]
    Tag(nostr::event::tag::Error),
    /// Signing itself failed.
    #[error("cannot sign: {0}")]
    Sign(nostr::event::builder::Error),
}

/// Signs the republish event with the agent's key (rule D1), as the core
/// says it must be at `now` (D2 to D4).
fn sign(
    action: &RepublishProfile,
    keys: &Keys,
    now: u64,
    future_tolerance_secs: u64,
) -> Result<nostr::Event, SignError> {
    let to_sign = event_to_sign(action, now, future_tolerance_secs)?;
    let tags = to_sign
        .tags
        .iter()
        .map(|t| Tag::parse(t.clone()).map_err(SignError::Tag))
        .collect::<Result<Vec<Tag>, SignError>>()?;
    EventBuilder::new(Kind::from(to_sign.kind), to_sign.content)
        .tags(tags)
        .custom_created_at(Timestamp::from(to_sign.created_at))
        .sign_with_keys(keys)
        .map_err(SignError::Sign)
}
