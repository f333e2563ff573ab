//! What a read of the stores and relays needs, worked out before any relay is
//! asked: the stores read from disk ([`StoresRead`]), who signs in where and
//! which authors each relay is asked for ([`ReadPrep`]).
//!
//! Both the one-off snapshot ([`super::snapshot`]) and the daemon's memory
//! ([`super::tick_memory`]) use it, so the memory needs nothing of the
//! snapshot's: the snapshot calls the memory, never the other way round.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use nostr::{Keys, PublicKey};

use crate::config::{Config, StoreOrigin};
use crate::core::model::AgentRecord;
use crate::core::rules::{is_pubkey_hex, parse_relay_url, short_pubkey};
use crate::core::sign_in::read_candidates;
use crate::protocol::nip42::Identity;
use crate::store::agents::{read_agent_store, read_persona_store, AgentStore};
use crate::store::discover::DiscoverError;

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
/// AUTH names the relay actually connected to (after `[relay.rewrite]`): the
/// Buzz relay takes the `relay` tag to be `ws(s)://` and the Host header of
/// the connection (`../shared/spec/buzz-today.md`, section 4).
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
                    relay_tag: relay.clone(),
                    label: "[relay] auth_key_file".to_owned(),
                });
            }
            identities.extend(
                read_candidates(&records, MAX_SIGN_IN_AGENTS, crate::clock::now_secs())
                    .into_iter()
                    .map(|candidate| {
                        agent_identity(candidate.record, &relay, candidate.keys, candidate.auth_tag)
                    }),
            );
            (relay, identities)
        })
        .collect()
}

/// An agent signing in as itself to `relay` (the URL connected to, after
/// rewrite): its keys, its NIP-OA tag.
pub fn agent_identity(
    record: &AgentRecord,
    relay: &str,
    keys: Keys,
    auth_tag: Option<Vec<String>>,
) -> Identity {
    Identity {
        keys,
        auth_tag,
        relay_tag: relay.to_owned(),
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

/// Reads the stores named in `config` (nothing from the network).
pub fn read_stores(config: &Config) -> anyhow::Result<(AgentStore, BTreeMap<String, String>)> {
    check_app_store(config)?;
    let store = read_agent_store(&config.agents)?;
    let personas = read_persona_store(&config.personas, config.personas_configured, &store)?;
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

/// What a read of a store's records asks for, worked out from the records
/// and the config alone (the daemon keeps it while neither changes).
#[derive(Debug, Clone)]
pub(crate) struct ReadPrep {
    /// Relay (after rewrite) to the authors read there, in store order.
    pub(super) requests: BTreeMap<String, Vec<PublicKey>>,
    /// The relay (after rewrite) of each record read, in order; `None` for
    /// a relay URL that is not valid.
    pub(super) relay_of: Vec<Option<String>>,
    /// Who read connections sign in as, per relay.
    pub(super) identities: Arc<BTreeMap<String, Vec<Identity>>>,
}

/// The read of `records` (all of `stored` or some of them): any agent of
/// `stored` may sign in to read its relay, selected or not.
pub(crate) fn prepare_read(
    config: &Config,
    stored: &[AgentRecord],
    records: &[AgentRecord],
    auth_key: Option<&Keys>,
) -> ReadPrep {
    let identities = sign_in_identities(config, stored.iter(), auth_key);
    let mut requests: BTreeMap<String, Vec<PublicKey>> = BTreeMap::new();
    let mut relay_of = Vec::with_capacity(records.len());
    for record in records {
        let relay = parse_relay_url(&record.relay_url)
            .ok()
            .map(|_| config.effective_relay(&record.relay_url));
        if let Some(relay) = &relay {
            if is_pubkey_hex(&record.pubkey) {
                if let Ok(pubkey) = PublicKey::from_hex(&record.pubkey) {
                    match requests.get_mut(relay) {
                        Some(authors) => authors.push(pubkey),
                        None => {
                            requests.insert(relay.clone(), vec![pubkey]);
                        }
                    }
                }
            }
        }
        relay_of.push(relay);
    }
    ReadPrep {
        requests,
        relay_of,
        identities: Arc::new(identities),
    }
}
