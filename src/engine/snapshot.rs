//! Gathering a snapshot: the stores from disk, each agent's newest kind:0 from
//! its relay.
//!
//! This is an edge: it reads, groups agents by relay (after the configured URL
//! rewrite) and hands everything to the core. It decides nothing about what
//! should happen to an agent; records the core will reject (bad pubkey, bad
//! relay URL) are simply not sent to a relay.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use nostr::{Event, Kind, PublicKey};

use crate::config::{Config, StoreOrigin};
use crate::core::known_keys::{KeyHash, KnownKeys};
use crate::core::model::{
    AgentRecord, AgentSnapshot, ExistingEvent, Policy, RelayObservation, Snapshot,
};
use crate::core::rules::{derive_key, reaches_key_check};
use crate::engine::read_prep::{prepare_read, read_auth_key, read_stores, ReadPrep, StoresRead};
use crate::net::relay::{read_profiles, ReadOptions, RelayTimeouts};
use crate::net::verified::Checker;
use crate::protocol::read::ReadObserver;
use crate::store::agents::AgentStore;
use crate::store::discover::{stale_folder_of, stale_warning};
use crate::store::planfile::StoreIdentity;

/// A snapshot and the store it was taken from.
#[derive(Debug, Clone)]
pub struct Gathered {
    /// The agent store it was taken from (its text is not kept: apply
    /// re-reads the store before writing, and a large store's text would
    /// double the memory of a plan run).
    pub store: StoreIdentity,
    /// What the planner reads.
    pub snapshot: Snapshot,
    /// Rule A5's derivations made while the relays were read, for the
    /// planner to take (empty for the daemon, which remembers its own).
    pub keys_ahead: KnownKeys,
}

/// Relay read options from config.
pub fn read_options(config: &Config) -> ReadOptions {
    ReadOptions {
        timeouts: RelayTimeouts {
            connect: config.relay.connect_timeout,
            query: config.relay.query_timeout,
        },
        max_concurrent_relays: config.relay.max_concurrent_relays,
        connections_per_relay: config.relay.read_connections,
        authors_per_filter: config.relay.authors_per_filter,
        progress: crate::progress::Progress::none(),
        identities: Arc::default(),
        tls: config.relay.tls.clone(),
        checker: crate::net::verified::Checker::default(),
    }
}

/// The one warning line about a stale Sprout-era copy, when there is one:
/// beside the app's folder (it is not used), or around a store given by path
/// (it is used, as asked, but the app never reads it).
pub fn stale_copy_warning(config: &Config) -> Option<String> {
    match &config.store_origin {
        StoreOrigin::App(found) => found.stale_dir.is_dir().then(|| found.stale_warning()),
        StoreOrigin::Config => stale_folder_of(&config.agents).map(|stale| {
            format!(
                "{}; the store {} in it is used because config.toml names it, but edits there change nothing the app sees",
                stale_warning(&stale),
                config.agents.display()
            )
        }),
    }
}

/// Takes a snapshot of every agent (or of the agents whose pubkey is in
/// `only`, when it is not empty; every copy of a selected pubkey is kept so
/// that duplicates are still seen).
pub async fn gather(config: &Config, only: &[String]) -> anyhow::Result<Gathered> {
    gather_checked(config, only, Checker::default()).await
}

/// [`gather`], its events checked by `checker` (for an apply in the same
/// process, one that remembers the checks: `orchestrate::make_plan_to_apply`).
pub(crate) async fn gather_checked(
    config: &Config,
    only: &[String],
    checker: Checker,
) -> anyhow::Result<Gathered> {
    let (store, personas) = read_stores(config)?;
    // The text is not kept (see [`Gathered::store`]).
    let AgentStore {
        path,
        digest,
        records,
        text,
        definitions: _,
    } = store;
    drop(text);
    let mut records: Vec<AgentRecord> = records.into_iter().map(|r| r.record).collect();
    config.keys.attach(&mut records, config.policy.mode);
    let stores = StoresRead {
        path,
        digest,
        records,
        personas,
    };
    observe(config, only, stores, None, checker, true).await
}

/// [`gather`] of every agent for the daemon, with the stores as `memory`
/// gives them: parsed again only when their bytes changed since its last
/// tick.
pub(crate) async fn gather_remembering(
    config: &Config,
    memory: &mut crate::engine::tick_memory::TickMemory,
) -> anyhow::Result<Gathered> {
    let stores = memory.read_stores(config)?;
    let auth_key = read_auth_key(config)?;
    let prep = memory.read_prep(&config.relay.rewrite, auth_key.as_ref(), || {
        prepare_read(config, &stores.records, &stores.records, auth_key.as_ref())
    });
    observe(config, &[], stores, Some(prep), memory.checker(), false).await
}

/// The snapshot of the agents of `stores` (all, or those of `only`): each
/// one's newest kind:0 from its relay; with `derive_ahead`, rule A5's
/// derivations the plan will need are made while the relays are read.
async fn observe(
    config: &Config,
    only: &[String],
    stores: StoresRead,
    prepared: Option<ReadPrep>,
    checker: Checker,
    derive_ahead: bool,
) -> anyhow::Result<Gathered> {
    let StoresRead {
        path,
        digest,
        records: stored,
        personas,
    } = stores;
    if !only.is_empty() {
        let known: HashSet<&str> = stored.iter().map(|r| r.pubkey.as_str()).collect();
        if let Some(missing) = only.iter().find(|p| !known.contains(p.as_str())) {
            anyhow::bail!(
                "agent {missing} is not in the agent store {}; check the --agent value",
                path.display()
            );
        }
    }
    let selected: HashSet<&str> = only.iter().map(String::as_str).collect();
    let summary = StoreIdentity {
        path: std::fs::canonicalize(&path)
            .unwrap_or(path)
            .display()
            .to_string(),
        sha256: digest,
        records: stored.len(),
    };
    // Each agent on each community relay, when config names them (the
    // summary above counts records, not entries).
    let stored = crate::core::model::on_communities(stored, &config.communities);
    // What the daemon prepared is for every record.
    let prepared = prepared.filter(|_| selected.is_empty());
    let (records, prep) = if selected.is_empty() {
        let prep = match prepared {
            Some(prep) => prep,
            None => prepare_read(config, &stored, &stored, read_auth_key(config)?.as_ref()),
        };
        (stored, prep)
    } else {
        let records: Vec<AgentRecord> = stored
            .iter()
            .filter(|r| selected.contains(r.pubkey.as_str()))
            .cloned()
            .collect();
        let prep = prepare_read(config, &stored, &records, read_auth_key(config)?.as_ref());
        (records, prep)
    };
    let ReadPrep {
        requests,
        relay_of,
        identities,
    } = prep;
    tracing::info!(
        agents = records.len(),
        relays = requests.len(),
        "reading profiles"
    );
    let total: usize = requests.values().map(Vec::len).sum();
    let progress = crate::progress::Progress::bar(total as u64, "snapshot");
    let records = Arc::new(records);
    let ahead =
        derive_ahead.then(|| KeysAhead::new(Arc::clone(&records), &personas, &config.policy));
    let checker = match &ahead {
        Some(ahead) => checker.with_observer(ahead.observer()),
        None => checker,
    };
    let options = ReadOptions {
        progress: progress.clone(),
        identities,
        checker,
        ..read_options(config)
    };
    let mut observed = read_profiles(requests, &options).await;
    progress.finish();
    drop(options);
    let keys_ahead = ahead.map(KeysAhead::finish).unwrap_or_default();
    // A check still running on the pool after its read ended may hold the
    // records a moment longer: copy them then.
    let records = Arc::try_unwrap(records).unwrap_or_else(|shared| {
        tracing::debug!("a check still held the records after the read: copied");
        shared.as_ref().clone()
    });

    // Each observation moves to the first record of its author on that
    // relay; a later copy of the record gets a copy of it. Where each went
    // is noted only from the first record that finds its observation taken
    // (most stores have no copies, and then nothing is noted).
    let mut observations: Vec<RelayObservation> = Vec::with_capacity(records.len());
    let mut first_copy: Option<HashMap<(&str, &str), usize, foldhash::fast::RandomState>> = None;
    for (position, (record, relay)) in records.iter().zip(&relay_of).enumerate() {
        let observation = match relay.as_deref() {
            None => None,
            Some(url) => {
                let key = (url, record.pubkey.as_str());
                match observed
                    .get_mut(url)
                    .and_then(|by_author| by_author.remove(&record.pubkey))
                {
                    Some(observation) => {
                        if let Some(first_copy) = &mut first_copy {
                            first_copy.entry(key).or_insert(position);
                        }
                        Some(observation)
                    }
                    None => first_copy
                        .get_or_insert_with(|| {
                            let mut noted = HashMap::default();
                            for (earlier, (record, relay)) in
                                records.iter().zip(&relay_of).take(position).enumerate()
                            {
                                if let Some(url) = relay.as_deref() {
                                    noted
                                        .entry((url, record.pubkey.as_str()))
                                        .or_insert(earlier);
                                }
                            }
                            noted
                        })
                        .get(&key)
                        .map(|&first| observations[first].clone()),
                }
            }
        };
        observations.push(observation.unwrap_or_else(|| {
            RelayObservation::Unreadable("not read: the record is not valid".to_string())
        }));
    }
    drop(first_copy);
    let agents = records
        .into_iter()
        .zip(relay_of)
        .zip(observations)
        .map(|((record, relay), observation)| AgentSnapshot {
            record,
            relay,
            observation,
        })
        .collect();
    Ok(Gathered {
        store: summary,
        snapshot: Snapshot { agents, personas },
        keys_ahead,
    })
}

/// Rule A5's derivations made during a read, on the pool threads that check
/// its events: an authentic kind:0 is shown to the core
/// ([`reaches_key_check`]) for each record of its author, and the key of a
/// record that will need a republish is derived there and then. Planning
/// then takes them from [`KnownKeys`] rather than deriving them after the
/// read, and the plan is the same: a derivation is a fact about a key's
/// text, whatever event prompted it. An author whose subscription ends
/// without a profile is shown to the core the same way, at its EOSE; the
/// snapshot waits for those derivations (a few per batch) before it ends.
struct KeysAhead {
    shared: Arc<AheadShared>,
}

struct AheadShared {
    records: Arc<Vec<AgentRecord>>,
    /// Pubkey bytes to the positions of the records with it.
    by_author: HashMap<[u8; 32], Vec<usize>, foldhash::fast::RandomState>,
    personas: BTreeMap<String, String>,
    policy: Policy,
    learned: Mutex<Vec<(KeyHash, [u8; 32])>>,
    /// The key texts (by hash) already derived or being derived: an agent
    /// on several community relays is reported by each, and its copies share
    /// one key, derived once.
    claimed: Mutex<std::collections::HashSet<KeyHash, foldhash::fast::RandomState>>,
    /// Derivations handed to the pool and not yet done.
    pending: Mutex<usize>,
    done: Condvar,
}

impl KeysAhead {
    fn new(
        records: Arc<Vec<AgentRecord>>,
        personas: &BTreeMap<String, String>,
        policy: &Policy,
    ) -> Self {
        let mut by_author: HashMap<[u8; 32], Vec<usize>, foldhash::fast::RandomState> =
            HashMap::default();
        for (position, record) in records.iter().enumerate() {
            if let Ok(pubkey) = PublicKey::from_hex(&record.pubkey) {
                by_author
                    .entry(pubkey.to_bytes())
                    .or_default()
                    .push(position);
            }
        }
        Self {
            shared: Arc::new(AheadShared {
                records,
                by_author,
                personas: personas.clone(),
                policy: policy.clone(),
                learned: Mutex::new(Vec::new()),
                claimed: Mutex::default(),
                pending: Mutex::new(0),
                done: Condvar::new(),
            }),
        }
    }

    fn observer(&self) -> Arc<dyn ReadObserver> {
        Arc::new(AheadObserver(Arc::clone(&self.shared)))
    }

    /// The derivations made, once those handed to the pool are done.
    fn finish(self) -> KnownKeys {
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *pending > 0 {
            pending = self
                .shared
                .done
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(pending);
        let mut learned = self
            .shared
            .learned
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *learned).into_iter().collect()
    }
}

/// What a read shows [`KeysAhead`].
struct AheadObserver(Arc<AheadShared>);

impl std::fmt::Debug for AheadObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AheadObserver")
    }
}

impl ReadObserver for AheadObserver {
    fn authentic(&self, event: &Event) {
        if event.kind != Kind::Metadata {
            return;
        }
        // What the core reads of an observation here: the content.
        let observation = RelayObservation::Newest(ExistingEvent {
            id: String::new(),
            created_at: event.created_at.as_secs(),
            content: event.content.clone(),
            tags: Vec::new(),
        });
        self.0.derive_if_needed(&event.pubkey, &observation);
    }

    fn no_profile(&self, authors: &[PublicKey]) {
        let shared = Arc::clone(&self.0);
        let authors = authors.to_vec();
        *shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner) += 1;
        rayon::spawn(move || {
            for author in &authors {
                shared.derive_if_needed(author, &RelayObservation::NoProfile);
            }
            let mut pending = shared
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *pending -= 1;
            shared.done.notify_all();
        });
    }
}

impl AheadShared {
    /// Derives the key of each record of `author` whose plan will check it
    /// when its relay shows `observation`.
    fn derive_if_needed(&self, author: &PublicKey, observation: &RelayObservation) {
        let Some(positions) = self.by_author.get(author.as_bytes()) else {
            return;
        };
        for &position in positions {
            let record = &self.records[position];
            if reaches_key_check(record, observation, &self.personas, &self.policy) {
                let Some(hash) = KeyHash::of_record(record) else {
                    continue;
                };
                let first = self
                    .claimed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(hash);
                if !first {
                    continue;
                }
                if let Some(derived) = derive_key(record) {
                    self.learned
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(derived);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use nostr::nips::nip19::ToBech32;

    use std::path::Path;

    use nostr::Keys;

    use super::*;
    use crate::core::model::{AvatarField, SecretText};
    use crate::core::nip_oa;
    use crate::engine::read_prep::*;

    fn record(index: usize, keys: &Keys, relay_url: &str, tag: Option<Vec<String>>) -> AgentRecord {
        AgentRecord {
            index,
            pubkey: keys.public_key().to_hex(),
            name: format!("Agent {index}"),
            secret_key: Some(SecretText::new(keys.secret_key().to_bech32().unwrap())),
            key_origin: Default::default(),
            relay_url: relay_url.into(),
            avatar_url: AvatarField::Null,
            persona_id: None,
            agent_command: None,
            auth_tag: tag.map(|t| serde_json::to_string(&t).unwrap()),
            field_errors: vec![],
        }
    }

    #[test]
    fn sign_in_identities_are_keyed_by_the_relay_read_and_name_the_relay_connected_to() {
        let config = crate::config::parse(
            "[relay.rewrite]\n\"wss://buzz.example.com\" = \"ws://127.0.0.1:4848\"\n",
            Path::new("config.toml"),
            Path::new("."),
        )
        .expect("config");
        let owner = Keys::generate();
        let agent = Keys::generate();
        let tag = nip_oa::sign(&owner, &agent.public_key().to_hex(), "");
        let records = [record(
            0,
            &agent,
            "wss://buzz.example.com",
            Some(tag.clone()),
        )];
        let service = Keys::generate();
        let identities = sign_in_identities(&config, records.iter(), Some(&service));

        let for_relay = &identities["ws://127.0.0.1:4848"];
        assert_eq!(for_relay.len(), 2);
        assert_eq!(for_relay[0].label, "[relay] auth_key_file", "tried first");
        assert_eq!(for_relay[0].keys.public_key(), service.public_key());
        assert_eq!(for_relay[0].auth_tag, None);
        assert_eq!(for_relay[1].keys.public_key(), agent.public_key());
        assert_eq!(for_relay[1].auth_tag.as_ref(), Some(&tag));
        // The AUTH names the relay connected to, not the URL before the
        // rewrite: today's Buzz relay checks it against the Host it sees.
        for identity in for_relay {
            assert_eq!(identity.relay_tag, "ws://127.0.0.1:4848");
        }
        assert!(for_relay[1].label.starts_with("agent Agent 0 ("));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_derives_the_keys_of_the_republishes_it_sees_while_it_reads() {
        let (relay, _dir, config) = crate::cli::demo::example_world().await;

        let gathered = gather(&config, &[]).await.expect("gathered");
        let now = 1_800_000_000;
        let (plan, derived_after) = crate::core::rules::plan_remembering_keys(
            &gathered.snapshot,
            &config.policy,
            now,
            &gathered.keys_ahead,
        );
        assert_eq!(
            plan,
            crate::core::rules::plan(&gathered.snapshot, &config.policy, now)
        );
        // Each republish had its key derived during the read: of a profile
        // the relay sent, as its event was checked; of a missing one, at the
        // end of its subscription.
        let key_of = |pubkey: &str| {
            let agent = gathered
                .snapshot
                .agents
                .iter()
                .find(|a| a.record.pubkey == pubkey)
                .expect("the agent of an action");
            KeyHash::of_record(&agent.record).expect("a republished agent has a key")
        };
        let mut seen = 0;
        let mut missing = 0;
        for republish in plan.actions.iter().filter_map(|a| a.as_republish()) {
            let hash = key_of(&republish.agent);
            assert!(
                gathered.keys_ahead.get(&hash).is_some(),
                "{}",
                republish.name
            );
            match republish.before {
                Some(_) => seen += 1,
                None => missing += 1,
            }
        }
        assert!(seen > 0 && missing > 0, "the example world has both");
        // Nothing left for the planner but the keys of the agents on the
        // relay that could not be read (no read shows them to the edge; the
        // planner checks them so that a key problem is reported as itself).
        let unread: Vec<KeyHash> = gathered
            .snapshot
            .agents
            .iter()
            .filter(|a| matches!(a.observation, RelayObservation::Unreadable(_)))
            .filter_map(|a| KeyHash::of_record(&a.record))
            .collect();
        assert!(!unread.is_empty(), "the example world has a down relay");
        assert_eq!(
            unread
                .iter()
                .filter(|hash| derived_after.get(hash).is_some())
                .count(),
            derived_after.len(),
            "nothing left for the planner but the unread relay's agents"
        );
        // And no key the planner would not derive, but of records rule A
        // rejects before it gets to keys (derived for nothing, not wrongly).
        let planner_derives = crate::core::rules::plan_remembering_keys(
            &gathered.snapshot,
            &config.policy,
            now,
            &KnownKeys::default(),
        )
        .1;
        let copies = crate::core::rules::PubkeyCopies::of(
            gathered.snapshot.agents.iter().map(|a| &a.record),
        );
        let mut in_sync = 0;
        for agent in &gathered.snapshot.agents {
            let Some(hash) = KeyHash::of_record(&agent.record) else {
                continue;
            };
            if gathered.keys_ahead.get(&hash).is_some() {
                assert!(
                    planner_derives.get(&hash).is_some()
                        || !crate::core::rules::record_problems(&agent.record, &copies).is_empty(),
                    "{}",
                    agent.record.name
                );
            } else if planner_derives.get(&hash).is_none() {
                in_sync += 1;
            }
        }
        assert!(in_sync > 0, "agents in sync had nothing derived");
        relay.shutdown();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_copy_of_a_record_gets_what_its_relay_holds() {
        let (relay, _dir, config) = crate::cli::demo::example_world().await;
        let first = gather(&config, &[]).await.expect("gathered");
        let with_profile = first
            .snapshot
            .agents
            .iter()
            .position(|a| matches!(a.observation, RelayObservation::Newest(_)))
            .expect("an agent with a profile");
        // The same record twice more, at the end of the store.
        let mut records: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&config.agents).unwrap()).unwrap();
        let copy = records[with_profile].clone();
        records.extend([copy.clone(), copy]);
        std::fs::write(&config.agents, serde_json::to_string(&records).unwrap()).unwrap();

        let again = gather(&config, &[]).await.expect("gathered");
        let agents = &again.snapshot.agents;
        let expected = &first.snapshot.agents[with_profile].observation;
        for agent in [
            &agents[with_profile],
            &agents[agents.len() - 2],
            &agents[agents.len() - 1],
        ] {
            assert_eq!(&agent.observation, expected);
        }
        relay.shutdown();
    }
}
