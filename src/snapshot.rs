//! Gathering a snapshot: the stores from disk, each agent's newest kind:0 from
//! its relay.
//!
//! This is an edge: it reads, groups agents by relay (after the configured URL
//! rewrite) and hands everything to the core. It decides nothing about what
//! should happen to an agent; records the core will reject (bad pubkey, bad
//! relay URL) are simply not sent to a relay.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use nostr::{Keys, PublicKey};

use crate::config::{Config, StoreOrigin};
use crate::core::model::{AgentRecord, AgentSnapshot, RelayObservation, Snapshot};
use crate::core::rules::{is_pubkey_hex, parse_relay_url, short_pubkey};
use crate::core::sign_in::read_candidates;
use crate::discover::{stale_folder_of, stale_warning, DiscoverError};
use crate::planfile::StoreIdentity;
use crate::protocol::nip42::Identity;
use crate::relay::{read_profiles, ReadOptions, RelayTimeouts};
use crate::store::{read_agent_store, read_persona_store, AgentStore};
use crate::verified::Checker;

/// A snapshot and the store it was taken from.
#[derive(Debug, Clone)]
pub struct Gathered {
    /// The agent store it was taken from (its text is not kept: apply
    /// re-reads the store before writing, and a large store's text would
    /// double the memory of a plan run).
    pub store: StoreIdentity,
    /// What the planner reads.
    pub snapshot: Snapshot,
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
        checker: crate::verified::Checker::default(),
    }
}

/// How many agents a read may try to sign in as, per relay (one connection
/// each), after `[relay] auth_key_file`.
pub const MAX_SIGN_IN_AGENTS: usize = 3;

/// The key of `[relay] auth_key_file`, when set.
pub fn read_auth_key(config: &Config) -> anyhow::Result<Option<Keys>> {
    let Some(path) = &config.relay.auth_key_file else {
        return Ok(None);
    };
    read_key_file(path).map(Some)
}

fn read_key_file(path: &Path) -> anyhow::Result<Keys> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read [relay] auth_key_file {}", path.display()))?;
    Keys::parse(text.trim()).map_err(|_| {
        anyhow::anyhow!(
            "[relay] auth_key_file {} does not hold a valid nsec or hex secret key",
            path.display()
        )
    })
}

/// For each relay (as read, after rewrite) of `records`, who a read
/// connection signs in as when the relay demands it: `auth_key` first, then up
/// to [`MAX_SIGN_IN_AGENTS`] agents of that relay chosen by the core. Each
/// AUTH names the relay as the store does (before `[relay.rewrite]`).
pub fn sign_in_identities<'a>(
    config: &Config,
    records: impl IntoIterator<Item = &'a AgentRecord>,
    auth_key: Option<&Keys>,
) -> BTreeMap<String, Vec<Identity>> {
    let mut by_relay: BTreeMap<String, Vec<&AgentRecord>> = BTreeMap::new();
    for record in records {
        if parse_relay_url(&record.relay_url).is_ok() {
            by_relay
                .entry(config.effective_relay(&record.relay_url))
                .or_default()
                .push(record);
        }
    }
    by_relay
        .into_iter()
        .map(|(relay, records)| {
            let mut identities = Vec::new();
            if let Some(keys) = auth_key {
                identities.push(Identity {
                    keys: keys.clone(),
                    auth_tag: None,
                    relay_tag: records[0].relay_url.trim().to_owned(),
                    label: "[relay] auth_key_file".to_owned(),
                });
            }
            identities.extend(
                read_candidates(&records, MAX_SIGN_IN_AGENTS)
                    .into_iter()
                    .map(|candidate| {
                        agent_identity(candidate.record, candidate.keys, candidate.auth_tag)
                    }),
            );
            (relay, identities)
        })
        .collect()
}

/// An agent signing in as itself: its keys, its NIP-OA tag, its relay as the
/// store names it.
pub fn agent_identity(record: &AgentRecord, keys: Keys, auth_tag: Option<Vec<String>>) -> Identity {
    Identity {
        keys,
        auth_tag,
        relay_tag: record.relay_url.trim().to_owned(),
        label: format!(
            "agent {} ({})",
            record.name.trim(),
            short_pubkey(&record.pubkey)
        ),
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

/// The stores as a snapshot needs them: the agent store's records (without
/// its text) and the personas.
#[derive(Debug, Clone)]
pub(crate) struct StoresRead {
    /// The agent store's file.
    pub path: std::path::PathBuf,
    /// SHA-256 of its bytes, lower-case hex.
    pub digest: String,
    /// Its records, in file order.
    pub records: Vec<AgentRecord>,
    /// Persona id to avatar.
    pub personas: BTreeMap<String, String>,
}

/// Takes a snapshot of every agent (or of the agents whose pubkey is in
/// `only`, when it is not empty; every copy of a selected pubkey is kept so
/// that duplicates are still seen).
pub async fn gather(config: &Config, only: &[String]) -> anyhow::Result<Gathered> {
    let (store, personas) = read_stores(config)?;
    // The text is not kept (see [`Gathered::store`]).
    let AgentStore {
        path,
        digest,
        records,
        text,
    } = store;
    drop(text);
    let stores = StoresRead {
        path,
        digest,
        records: records.into_iter().map(|r| r.record).collect(),
        personas,
    };
    observe(config, only, stores, Checker::default()).await
}

/// [`gather`] of every agent for the daemon, with the stores as `memory`
/// gives them: parsed again only when their bytes changed since its last
/// tick.
pub(crate) async fn gather_remembering(
    config: &Config,
    memory: &mut crate::tick_memory::TickMemory,
) -> anyhow::Result<Gathered> {
    let stores = memory.read_stores(config)?;
    observe(config, &[], stores, memory.checker()).await
}

/// The snapshot of the agents of `stores` (all, or those of `only`): each
/// one's newest kind:0 from its relay.
async fn observe(
    config: &Config,
    only: &[String],
    stores: StoresRead,
    checker: Checker,
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
    // Any agent of a relay may sign in to read it, selected or not.
    let identities = sign_in_identities(config, stored.iter(), read_auth_key(config)?.as_ref());
    let summary = StoreIdentity {
        path: std::fs::canonicalize(&path)
            .unwrap_or(path)
            .display()
            .to_string(),
        sha256: digest,
        records: stored.len(),
    };
    let records: Vec<_> = stored
        .into_iter()
        .filter(|r| selected.is_empty() || selected.contains(r.pubkey.as_str()))
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
        identities: Arc::new(identities),
        checker,
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

#[cfg(test)]
mod tests {
    use nostr::nips::nip19::ToBech32;

    use super::*;
    use crate::core::model::{AvatarField, SecretText};
    use crate::core::nip_oa;

    fn record(index: usize, keys: &Keys, relay_url: &str, tag: Option<Vec<String>>) -> AgentRecord {
        AgentRecord {
            index,
            pubkey: keys.public_key().to_hex(),
            name: format!("Agent {index}"),
            secret_key: Some(SecretText::new(keys.secret_key().to_bech32().unwrap())),
            relay_url: relay_url.into(),
            avatar_url: AvatarField::Null,
            persona_id: None,
            agent_command: None,
            auth_tag: tag.map(|t| serde_json::to_string(&t).unwrap()),
            field_errors: vec![],
        }
    }

    #[test]
    fn sign_in_identities_are_keyed_by_the_relay_read_and_name_the_relay_as_the_store_does() {
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
        for identity in for_relay {
            assert_eq!(identity.relay_tag, "wss://buzz.example.com");
        }
        assert!(for_relay[1].label.starts_with("agent Agent 0 ("));
    }
}
