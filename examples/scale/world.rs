//! A generated world of N agents with real keys and a mixed relay state.
//!
//! Shared by the `scale` example (and its test, in `examples/scale.rs`) and
//! the criterion benches (`benches/core.rs`), which include this file with
//! `#[path]`. It depends on nothing but the `reprofile` crate and its
//! dependencies.
//!
//! Agent `i`'s secret key is derived from `offset + i` (fast, deterministic);
//! its state on the relay is chosen by `i % 20`:
//!
//! | share | state | relay holds | plan |
//! |---|---|---|---|
//! | 50 % | in sync | the right name and picture | unchanged |
//! | 20 % | stale name | an old `display_name` | republish |
//! | 10 % | stale picture | an old `picture` | republish |
//! | 10 % | missing | nothing | republish |
//! | 5 % | malformed | a content that is not JSON | republish |
//! | 5 % | legacy | the right profile; the record has no `avatar_url` | backfill |
//!
//! Every 10th agent carries a NIP-OA `auth_tag` signed by one owner key, on
//! its record and on its relay event. Records have the full field set of the
//! desktop app's store (about 1 KB each), written pretty-printed as the app
//! writes them.

#![allow(dead_code)]

use std::ops::Range;

use nostr::nips::nip19::ToBech32;
use nostr::{Event, EventBuilder, Keys, Kind, SecretKey, Tag, Timestamp};
use reprofile::core::model::{AgentSnapshot, ExistingEvent, RelayObservation, Snapshot};
use reprofile::core::nip_oa;
use serde_json::json;

/// The relay URL every generated record names; configs rewrite it to the
/// relay (or proxy) under test.
pub const STORE_RELAY_URL: &str = "ws://127.0.0.1:7777";

/// When the seeded events were made (seconds before now).
const SEED_AGE_SECS: u64 = 86_400;

/// An agent's relay state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// The relay shows the right name and picture.
    InSync,
    /// The relay shows an old display name.
    StaleName,
    /// The relay shows an old picture.
    StalePicture,
    /// The relay has no kind:0.
    Missing,
    /// The relay's kind:0 content is not JSON.
    Malformed,
    /// The record has no `avatar_url`; the relay's profile is right.
    Legacy,
}

impl State {
    /// The mixed state of agent `i`.
    pub fn mixed(i: usize) -> State {
        match i % 20 {
            0..=9 => State::InSync,
            10..=13 => State::StaleName,
            14 | 15 => State::StalePicture,
            16 | 17 => State::Missing,
            18 => State::Malformed,
            _ => State::Legacy,
        }
    }

    /// True when the planner must republish this agent's profile.
    pub fn needs_republish(self) -> bool {
        matches!(
            self,
            State::StaleName | State::StalePicture | State::Missing | State::Malformed
        )
    }
}

/// One generated agent.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Position in its world.
    pub index: usize,
    /// Its keys.
    pub keys: Keys,
    /// Its pubkey, hex.
    pub pubkey: String,
    /// Its name in the store.
    pub name: String,
    /// Its avatar (in the record, unless legacy; on the relay when in sync).
    pub avatar: String,
    /// The JSON text of its NIP-OA tag, for every 10th agent.
    pub auth_tag: Option<String>,
    /// Its relay state.
    pub state: State,
}

/// The key of agent number `n` (an index plus a world's offset).
pub fn keys_of(n: u64) -> Keys {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&(n + 1).to_be_bytes());
    secret[31] = 0x5a;
    Keys::new(SecretKey::from_slice(&secret).expect("a small secret is a valid key"))
}

/// The owner key that signs the generated NIP-OA tags.
pub fn owner_keys() -> Keys {
    let mut secret = [0x11u8; 32];
    secret[0] = 0x01;
    Keys::new(SecretKey::from_slice(&secret).expect("valid owner key"))
}

/// Maps `f` over `range` on every core (order kept).
pub fn par_map<R: Send>(range: Range<usize>, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    let len = range.len();
    if len < 256 || threads == 1 {
        return range.map(f).collect();
    }
    let chunk = len.div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let start = range.start + t * chunk;
                let end = (start + chunk).min(range.end);
                scope.spawn(move || (start..end).map(f).collect::<Vec<R>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a worker thread panicked"))
            .collect()
    })
}

/// `n` agents; agent `i` gets key number `offset + i` and state `state(i)`.
pub fn agents(n: usize, offset: u64, state: impl Fn(usize) -> State + Sync) -> Vec<Agent> {
    let owner = owner_keys();
    par_map(0..n, |i| {
        let keys = keys_of(offset + i as u64);
        let pubkey = keys.public_key().to_hex();
        let auth_tag = (i % 10 == 3).then(|| {
            serde_json::to_string(&nip_oa::sign(&owner, &pubkey, "kind=0"))
                .expect("a tag serializes")
        });
        Agent {
            index: i,
            name: format!("agent-{:07}", offset + i as u64),
            avatar: format!("https://img.example/agents/{}.png", offset + i as u64),
            keys,
            pubkey,
            auth_tag,
            state: state(i),
        }
    })
}

/// The agent store's text: every record with the desktop app's full field
/// set (`tests/fixtures/app-record.json`, shared with the integration
/// tests), pretty-printed.
pub fn store_json(agents: &[Agent]) -> String {
    store_json_with(agents, |_| STORE_RELAY_URL.to_string())
}

/// [`store_json`] with each record's `relay_url` chosen by `relay_url`.
pub fn store_json_with(agents: &[Agent], relay_url: impl Fn(&Agent) -> String) -> String {
    let records: Vec<serde_json::Value> = agents
        .iter()
        .map(|agent| {
            let mut record: serde_json::Value =
                serde_json::from_str(include_str!("../../tests/fixtures/app-record.json"))
                    .expect("the record template is JSON");
            let fields = json!({
                "pubkey": agent.pubkey,
                "name": agent.name,
                "private_key_nsec": agent.keys.secret_key().to_bech32().expect("nsec"),
                "auth_tag": agent.auth_tag,
                "relay_url": relay_url(agent),
                "agent_command": "goose",
                "env_vars": {"GOOSE_MODE": "auto"},
            });
            for (key, value) in fields.as_object().expect("an object") {
                record[key] = value.clone();
            }
            if agent.state != State::Legacy {
                record["avatar_url"] = json!(agent.avatar);
            }
            record
        })
        .collect();
    serde_json::to_string_pretty(&records).expect("records serialize")
}

/// The kind:0 content the relay holds for `agent` (None: no event).
pub fn relay_content(agent: &Agent) -> Option<String> {
    let (display_name, picture) = match agent.state {
        State::Missing => return None,
        State::Malformed => return Some(format!("not json {{ {}", agent.name)),
        State::InSync | State::Legacy => (agent.name.clone(), agent.avatar.clone()),
        State::StaleName => (format!("{} (old)", agent.name), agent.avatar.clone()),
        State::StalePicture => (
            agent.name.clone(),
            format!("https://img.example/old/{}.png", agent.index),
        ),
    };
    Some(
        json!({
            "name": agent.name,
            "display_name": display_name,
            "picture": picture,
            "about": "A managed agent.",
            "lud16": "agents@example.com",
        })
        .to_string(),
    )
}

/// The tags of the seeded event of `agent`.
pub fn relay_tags(agent: &Agent) -> Vec<Vec<String>> {
    agent
        .auth_tag
        .as_deref()
        .map(|text| vec![nip_oa::parse_tag_json(text).expect("a generated tag parses")])
        .unwrap_or_default()
}

/// `created_at` of the seeded events.
pub fn seed_created_at(now: u64) -> u64 {
    now - SEED_AGE_SECS
}

/// Signs a kind:0 for `agent` with `content`, `tags` and `created_at`.
pub fn sign_profile(agent: &Agent, content: &str, tags: &[Vec<String>], created_at: u64) -> Event {
    let tags: Vec<Tag> = tags
        .iter()
        .map(|t| Tag::parse(t.clone()).expect("a generated tag parses"))
        .collect();
    EventBuilder::new(Kind::Metadata, content)
        .tags(tags)
        .custom_created_at(Timestamp::from(created_at))
        .sign_with_keys(&agent.keys)
        .expect("signing works")
}

/// The signed events to seed a relay with (every agent but the missing ones),
/// signed on every core.
pub fn seed_events(agents: &[Agent], now: u64) -> Vec<Event> {
    let created_at = seed_created_at(now);
    par_map(0..agents.len(), |i| {
        let agent = &agents[i];
        relay_content(agent)
            .map(|content| sign_profile(agent, &content, &relay_tags(agent), created_at))
    })
    .into_iter()
    .flatten()
    .collect()
}

/// Replacement events (a new display name, dated `created_at`), as a client
/// that republishes would send them: one per agent.
pub fn replacement_events(agents: &[Agent], created_at: u64) -> Vec<Event> {
    par_map(0..agents.len(), |i| {
        let agent = &agents[i];
        let content = json!({
            "name": agent.name,
            "display_name": format!("{} (new)", agent.name),
            "picture": agent.avatar,
        })
        .to_string();
        sign_profile(agent, &content, &relay_tags(agent), created_at)
    })
}

/// The snapshot the planner would get for these agents from a relay that
/// holds what [`seed_events`] makes, built in memory (the records are parsed
/// from [`store_json`] by the store's own parser; event ids are stand-ins,
/// which the planner does not check).
pub fn in_memory_snapshot(agents: &[Agent], now: u64) -> Snapshot {
    let text = store_json(agents);
    let store =
        reprofile::store::agents::parse_agent_store(std::path::Path::new("generated.json"), text)
            .expect("the generated store parses");
    let created_at = seed_created_at(now);
    let agents = store
        .records
        .into_iter()
        .zip(agents)
        .map(|(stored, agent)| AgentSnapshot {
            record: stored.record,
            relay: Some(STORE_RELAY_URL.to_string()),
            observation: match relay_content(agent) {
                None => RelayObservation::NoProfile,
                Some(content) => RelayObservation::Newest(ExistingEvent {
                    id: format!("{:064x}", agent.index + 1),
                    created_at,
                    content,
                    tags: relay_tags(agent),
                }),
            },
        })
        .collect();
    Snapshot {
        agents,
        personas: Default::default(),
    }
}

/// The config.toml of a world whose store is `managed-agents.json` beside it
/// and whose records' relay is served at `relay_url`.
pub fn config_text(relay_url: &str) -> String {
    format!(
        "# Written by the scale benchmark.\n\
         [store]\nagents = \"managed-agents.json\"\n\n\
         [plans]\ndir = \"plans\"\n\n\
         [relay]\nconnect_timeout_secs = 10\nquery_timeout_secs = 120\npublish_timeout_secs = 120\n\n\
         [safety]\nmax_republish_fraction = 1.0\n\n\
         [relay.rewrite]\n\"{STORE_RELAY_URL}\" = \"{relay_url}\"\n"
    )
}

/// Lays out a world (store, config) in `dir`; returns the config path.
pub fn lay_out(
    dir: &std::path::Path,
    store_text: &str,
    relay_url: &str,
) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let store = dir.join("managed-agents.json");
    std::fs::write(&store, store_text)?;
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o600))?;
    let config = dir.join("config.toml");
    std::fs::write(&config, config_text(relay_url))?;
    Ok(config)
}
