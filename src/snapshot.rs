//! Gathering a snapshot: the stores from disk, each agent's newest kind:0 from
//! its relay.
//!
//! This is an edge: it reads, groups agents by relay (after the configured URL
//! rewrite) and hands everything to the core. It decides nothing about what
//! should happen to an agent; records the core will reject (bad pubkey, bad
//! relay URL) are simply not sent to a relay.

use std::collections::{BTreeMap, HashSet};

use nostr::PublicKey;

use crate::config::{Config, StoreOrigin};
use crate::core::model::{AgentSnapshot, RelayObservation, Snapshot};
use crate::core::rules::{is_pubkey_hex, parse_relay_url};
use crate::discover::{stale_folder_of, stale_warning, DiscoverError};
use crate::relay::{read_profiles, ReadOptions, RelayTimeouts};
use crate::store::{read_agent_store, read_persona_store, AgentStore};

/// Which store a snapshot was taken from (its text is not kept: apply
/// re-reads the store before writing, and a large store's text would double
/// the memory of a plan run).
#[derive(Debug, Clone)]
pub struct StoreSummary {
    /// The file.
    pub path: std::path::PathBuf,
    /// SHA-256 of its bytes.
    pub digest: String,
    /// How many records it holds.
    pub records: usize,
}

/// A snapshot and the store it was taken from.
#[derive(Debug, Clone)]
pub struct Gathered {
    /// The agent store it was taken from.
    pub store: StoreSummary,
    /// What the planner reads.
    pub snapshot: Snapshot,
}

/// Relay read options from config.
pub fn read_options(config: &Config) -> ReadOptions {
    ReadOptions {
        timeouts: RelayTimeouts {
            connect: config.relay.connect_timeout,
            query: config.relay.query_timeout,
            publish: config.relay.publish_timeout,
        },
        max_concurrent_relays: config.relay.max_concurrent_relays,
        connections_per_relay: config.relay.read_connections,
        authors_per_filter: config.relay.authors_per_filter,
        progress: crate::progress::Progress::none(),
    }
}

/// For a store located in the app's data folder: an error naming where it
/// was looked for (and what was found instead) when it is not there.
pub fn check_app_store(config: &Config) -> Result<(), DiscoverError> {
    match &config.store_origin {
        StoreOrigin::App(found) if !found.agents.exists() => Err(found.not_found(
            found.other_profile_agents.exists(),
            found.stale_dir.is_dir(),
        )),
        _ => Ok(()),
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

/// Reads the stores named in `config` (nothing from the network).
pub fn read_stores(config: &Config) -> anyhow::Result<(AgentStore, BTreeMap<String, String>)> {
    check_app_store(config)?;
    let store = read_agent_store(&config.agents)?;
    let personas =
        read_persona_store(&config.personas, config.personas_configured, &store.records)?;
    Ok((store, personas))
}

/// Takes a snapshot of every agent (or of the agents whose pubkey is in
/// `only`, when it is not empty; every copy of a selected pubkey is kept so
/// that duplicates are still seen).
pub async fn gather(config: &Config, only: &[String]) -> anyhow::Result<Gathered> {
    let (store, personas) = read_stores(config)?;
    if !only.is_empty() {
        let known: HashSet<&str> = store
            .records
            .iter()
            .map(|r| r.record.pubkey.as_str())
            .collect();
        if let Some(missing) = only.iter().find(|p| !known.contains(p.as_str())) {
            anyhow::bail!(
                "agent {missing} is not in the agent store {}; check the --agent value",
                store.path.display()
            );
        }
    }
    let selected: HashSet<&str> = only.iter().map(String::as_str).collect();
    let AgentStore {
        path,
        digest,
        records: stored,
        text,
    } = store;
    drop(text);
    let summary = StoreSummary {
        path,
        digest,
        records: stored.len(),
    };
    let records: Vec<_> = stored
        .into_iter()
        .filter(|r| selected.is_empty() || selected.contains(r.record.pubkey.as_str()))
        .map(|r| r.record)
        .collect();

    let mut requests: BTreeMap<String, Vec<PublicKey>> = BTreeMap::new();
    let mut relay_of = Vec::with_capacity(records.len());
    for record in &records {
        let relay = parse_relay_url(&record.relay_url)
            .ok()
            .map(|_| config.effective_relay(&record.relay_url));
        if let Some(relay) = &relay {
            if is_pubkey_hex(&record.pubkey) {
                if let Ok(pubkey) = PublicKey::from_hex(&record.pubkey) {
                    requests.entry(relay.clone()).or_default().push(pubkey);
                }
            }
        }
        relay_of.push(relay);
    }
    tracing::info!(
        agents = records.len(),
        relays = requests.len(),
        "reading profiles"
    );
    let total: usize = requests.values().map(Vec::len).sum();
    let progress = crate::progress::Progress::bar(total as u64, "snapshot");
    let options = ReadOptions {
        progress: progress.clone(),
        ..read_options(config)
    };
    let mut observed = read_profiles(requests, &options).await;
    progress.finish();

    let agents = records
        .into_iter()
        .zip(relay_of)
        .map(|(record, relay)| {
            let observation = relay
                .as_ref()
                .and_then(|url| observed.get_mut(url))
                .and_then(|by_author| by_author.get(&record.pubkey).cloned())
                .unwrap_or_else(|| {
                    RelayObservation::Unreadable("not read: the record is not valid".to_string())
                });
            AgentSnapshot {
                record,
                relay,
                observation,
            }
        })
        .collect();
    Ok(Gathered {
        store: summary,
        snapshot: Snapshot { agents, personas },
    })
}
