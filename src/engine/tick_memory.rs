//! What the `run` daemon remembers from one tick to the next, in memory
//! only: the last parse of the agent store (keyed by a 128-bit XXH3 of the
//! bytes it was parsed from, with a seed drawn at random by each process,
//! and carrying their SHA-256 for the plan) and of the persona store (keyed
//! by the SHA-256 of its bytes), rule A5's key derivations ([`KnownKeys`],
//! keyed by the SHA-256 of each key's text), and the read prepared for the
//! agent store's records ([`ReadPrep`]: the authors per relay, each record's
//! relay, the sign-in identities), kept with the parse and with the URL
//! rewrites and sign-in key it was prepared under; and which of those
//! records the last plan found unchanged, against which kind:0, under which
//! policy and personas ([`TickMemory::unchanged_before`]).
//!
//! Every tick reads both files in full and hashes them (the agent store a
//! piece at a time, as it is read); a parse is reused only when the bytes
//! hash to what it was made from (a modification time is never trusted).
//! The bytes are not kept: a second copy of a large
//! store would cost more memory than its hash costs time (docs/design.md, "Choices
//! made"). The agent store's records are lent to the tick, not copied, and
//! given back once it planned. Whenever the agent store is parsed anew, the key
//! derivations are cut down to the keys it holds, so the memory never
//! outgrows the store, however long the daemon runs.
//!
//! What it must not do: exist outside the daemon, or touch the disk. Only
//! [`crate::engine::schedule`]'s daemon creates one; `run --once`, `plan`, `apply`
//! and `migrate` parse the stores and derive every key afresh, as nothing
//! here is ever written to a file (a cache file could be edited to vouch for
//! a key or a store it never saw). (When one process plans and then
//! applies, apply takes the records its plan was just made from while the
//! store still hashes to their bytes: `crate::engine::apply::PlannedRecords`.) The only private keys it holds are those
//! of the store's records it remembers and of the few sign-in identities
//! prepared from them (as one tick holds them); [`KnownKeys`] holds none, and
//! neither a key nor its hash is logged. It decides nothing the core decides.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::core::known_keys::{KeyHash, KnownKeys};
use crate::core::model::{AgentRecord, Policy, RelayObservation, Snapshot};
use crate::engine::read_prep::{check_app_store, ReadPrep, StoresRead};
use crate::store::agents::{
    parse_agent_store, parse_personas, persona_store_from, read_bytes, read_in_pieces, sha256_hex,
    utf8_text, StoreError, AGENT_STORE, PERSONA_STORE,
};

/// The daemon's memory across ticks (see the module's doc).
#[derive(Debug, Default)]
pub struct TickMemory {
    /// The last parse of the agent store.
    agents: Option<RememberedAgents>,
    /// The last parse of the persona store.
    personas: Option<RememberedPersonas>,
    /// Rule A5's derivations, for keys the remembered agent store holds.
    keys: KnownKeys,
    /// How often each store was parsed, and a parse reused.
    counts: ParseCounts,
    /// The events whose signatures were checked (bounded by what the last
    /// tick saw; see [`crate::net::verified`]).
    verified: std::sync::Arc<crate::net::verified::VerifiedEvents>,
}

/// How often the stores were parsed, and how often a parse was reused
/// because the bytes had not changed; likewise a prepared read, and the
/// agents the last plan's decisions were reused for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ParseCounts {
    /// Agent store parses.
    pub agents_parsed: u64,
    /// Agent store parses reused.
    pub agents_reused: u64,
    /// Persona store parses.
    pub personas_parsed: u64,
    /// Persona store parses reused.
    pub personas_reused: u64,
    /// Reads prepared for an earlier tick and reused.
    pub reads_reused: u64,
    /// Agents found unchanged by the last plan, from the same inputs, and
    /// not decided again.
    pub decisions_reused: u64,
}

#[derive(Debug)]
struct RememberedAgents {
    path: PathBuf,
    /// The XXH3 of the bytes parsed ([`fingerprint`]).
    fingerprint: u128,
    /// Their SHA-256, as the plan names the store.
    digest: String,
    /// The records of that parse; `None` while a tick holds them: they
    /// are lent by [`TickMemory::read_stores`] and given back by
    /// [`TickMemory::give_back_records`] (never copied). Records a tick did
    /// not give back are parsed again.
    records: Option<Vec<AgentRecord>>,
    /// How many records the parse gave.
    count: usize,
    /// The personas of the parse's definition records.
    definitions: BTreeMap<String, String>,
    /// The read last prepared for these records.
    read: Option<RememberedRead>,
    /// What the last plan of these records found unchanged.
    decisions: Option<LastDecisions>,
}

/// The agents the last plan of the remembered records found unchanged, and
/// what it decided them from besides the records and their kind:0s.
#[derive(Debug)]
struct LastDecisions {
    policy: Policy,
    personas: BTreeMap<String, String>,
    /// Per record, in store order: the id of the kind:0 it was found
    /// unchanged against; `None` when it was not unchanged, or not against
    /// a kind:0.
    unchanged_with: Vec<Option<String>>,
}

/// A read prepared for the remembered records, with the config it was
/// prepared under: the URL rewrites and the sign-in key.
#[derive(Debug)]
struct RememberedRead {
    rewrite: BTreeMap<String, String>,
    auth_key: Option<nostr::PublicKey>,
    prep: ReadPrep,
}

/// The agent store's digest, its records and its definitions' personas.
type AgentRecords = (String, Vec<AgentRecord>, BTreeMap<String, String>);

#[derive(Debug)]
struct RememberedPersonas {
    path: PathBuf,
    digest: String,
    personas: BTreeMap<String, String>,
}

impl TickMemory {
    /// Reads the stores named in `config` as [`crate::engine::read_prep::read_stores`]
    /// does (same checks, same errors), parsing each only when its bytes
    /// changed since the last call.
    pub(crate) fn read_stores(&mut self, config: &Config) -> anyhow::Result<StoresRead> {
        check_app_store(config)?;
        let (digest, mut records, definitions) = self.agent_records(&config.agents)?;
        let personas = self.personas(config, definitions, &records)?;
        // The keyring is read again each tick (when a record needs it), so
        // a key the app moved there since is found.
        config.keys.forget();
        config.keys.attach(&mut records, config.policy.mode);
        Ok(StoresRead {
            path: config.agents.clone(),
            digest,
            records,
            personas,
        })
    }

    /// The agent store's digest and records, from memory when its bytes did
    /// not change. A new parse replaces the memory and cuts the known key
    /// derivations down to the keys it holds.
    fn agent_records(&mut self, path: &Path) -> Result<AgentRecords, StoreError> {
        let read = self.read_agent_records(path);
        if read.is_err() {
            // No store now: nothing of the last one is kept.
            self.agents = None;
            self.keys = KnownKeys::default();
        }
        read
    }

    fn read_agent_records(&mut self, path: &Path) -> Result<AgentRecords, StoreError> {
        // The remembered parse, when these are still its bytes: hashed as
        // they are read, a piece at a time, so an unchanged store is never
        // held in memory whole.
        if let Some(known) = self
            .agents
            .as_mut()
            .filter(|known| known.path == path && known.records.is_some())
        {
            if fingerprint_of_file(path)? == known.fingerprint {
                if let Some(records) = known.records.take() {
                    self.counts.agents_reused += 1;
                    tracing::debug!(
                        "the agent store did not change since the last tick: not parsed again"
                    );
                    return Ok((known.digest.clone(), records, known.definitions.clone()));
                }
            }
        }
        let bytes = read_bytes(AGENT_STORE, path)?;
        let fingerprint = fingerprint(&bytes);
        self.agents = None;
        let text = utf8_text(AGENT_STORE, path, bytes)?;
        let store = parse_agent_store(path, text)?;
        let digest = store.digest;
        let definitions = crate::store::agents::definition_personas(&store.definitions);
        self.counts.agents_parsed += 1;
        let records: Vec<AgentRecord> = store.records.into_iter().map(|r| r.record).collect();
        let used: HashSet<KeyHash> = records.iter().filter_map(KeyHash::of_record).collect();
        self.keys.retain_used(&used);
        self.agents = Some(RememberedAgents {
            path: path.to_path_buf(),
            fingerprint,
            digest: digest.clone(),
            records: None,
            count: records.len(),
            definitions: definitions.clone(),
            read: None,
            decisions: None,
        });
        Ok((digest, records, definitions))
    }

    /// The personas, as [`crate::store::agents::read_persona_store`] gives them,
    /// from memory when the persona store's bytes did not change.
    fn personas(
        &mut self,
        config: &Config,
        definitions: BTreeMap<String, String>,
        records: &[AgentRecord],
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let path = &config.personas;
        let read = read_bytes(PERSONA_STORE, path).and_then(|bytes| {
            let digest = sha256_hex(&bytes);
            if let Some(known) = self
                .personas
                .as_ref()
                .filter(|known| known.path == *path && known.digest == digest)
            {
                self.counts.personas_reused += 1;
                return Ok(known.personas.clone());
            }
            self.personas = None;
            let text = utf8_text(PERSONA_STORE, path, bytes)?;
            let personas = parse_personas(path, &text)?;
            self.counts.personas_parsed += 1;
            self.personas = Some(RememberedPersonas {
                path: path.clone(),
                digest,
                personas: personas.clone(),
            });
            Ok(personas)
        });
        if read.is_err() {
            self.personas = None;
        }
        persona_store_from(
            path,
            config.personas_configured,
            definitions,
            records.iter(),
            read,
        )
    }

    /// The remembered parse's records (the ones the tick's plan was just
    /// made from), lent to the tick's apply for its preconditions while the
    /// store still holds their bytes; given back, like the plan's, with
    /// [`TickMemory::give_back_records`]. `None` when no parse is held.
    pub(crate) fn lend_records(&mut self) -> Option<Vec<AgentRecord>> {
        self.agents.as_mut()?.records.take()
    }

    /// Gives the remembered records back their own (inline) keys, dropping
    /// those the tick took from the OS keyring: kept between ticks, they
    /// would outlive the run that needed them.
    pub(crate) fn drop_keyring_keys(&mut self) {
        if let Some(records) = self
            .agents
            .as_mut()
            .and_then(|known| known.records.as_mut())
        {
            crate::core::keys::attach_keys(records, &crate::core::keys::KeyringRead::NotRead);
        }
    }

    /// Takes back the records [`TickMemory::read_stores`] (or
    /// [`TickMemory::lend_records`]) lent, unchanged and
    /// in store order (the snapshot's), for the next tick; anything else is
    /// dropped, and the next tick parses the store again.
    pub(crate) fn give_back_records(&mut self, records: Vec<AgentRecord>) {
        if let Some(known) = self.agents.as_mut() {
            if known.records.is_none() && records.len() == known.count {
                known.records = Some(records);
            }
        }
    }

    /// For each agent of `snapshot` (whose records are the ones this memory
    /// lent, in store order): true when the last plan of these records found
    /// it unchanged against the same kind:0 (the same id: an id the read
    /// checked hashes from every field), with the same personas and
    /// `policy`; what [`crate::core::rules::plan_remembering`] may then take
    /// as unchanged. All false after a new parse of the store, or when the
    /// personas or the policy changed.
    pub(crate) fn unchanged_before(&mut self, snapshot: &Snapshot, policy: &Policy) -> Vec<bool> {
        let Some(last) = self
            .agents
            .as_ref()
            .and_then(|known| known.decisions.as_ref())
            .filter(|last| {
                last.unchanged_with.len() == snapshot.agents.len()
                    && last.policy == *policy
                    && last.personas == snapshot.personas
            })
        else {
            return Vec::new();
        };
        let before: Vec<bool> = snapshot
            .agents
            .iter()
            .zip(&last.unchanged_with)
            .map(|(agent, with)| match (&agent.observation, with) {
                (RelayObservation::Newest(event), Some(id)) => event.id == *id,
                _ => false,
            })
            .collect();
        self.counts.decisions_reused += before.iter().filter(|&&b| b).count() as u64;
        before
    }

    /// Remembers what the plan of the records just given back found
    /// unchanged (see [`TickMemory::unchanged_before`]); forgotten when the
    /// records were not taken back.
    pub(crate) fn remember_decisions(
        &mut self,
        policy: Policy,
        personas: BTreeMap<String, String>,
        unchanged_with: Vec<Option<String>>,
    ) {
        if let Some(known) = self.agents.as_mut() {
            let kept = (known.records.as_ref().map(Vec::len) == Some(unchanged_with.len()))
                .then_some(LastDecisions {
                    policy,
                    personas,
                    unchanged_with,
                });
            // The last tick's, freed on the pool (a string per agent).
            let last = std::mem::replace(&mut known.decisions, kept);
            rayon::spawn(move || drop(last));
        }
    }

    /// The read of the remembered records (the authors per relay, each
    /// record's relay, the sign-in identities) as prepared for an earlier
    /// tick with the same `rewrite` and `auth_key`, or else as `prepare`
    /// makes it, remembered for the next tick. A new parse of the store
    /// forgets it.
    pub(crate) fn read_prep(
        &mut self,
        rewrite: &BTreeMap<String, String>,
        auth_key: Option<&nostr::Keys>,
        prepare: impl FnOnce() -> ReadPrep,
    ) -> ReadPrep {
        let auth_key = auth_key.map(nostr::Keys::public_key);
        let Some(known) = self.agents.as_mut() else {
            return prepare();
        };
        if let Some(read) = known
            .read
            .as_ref()
            .filter(|read| read.rewrite == *rewrite && read.auth_key == auth_key)
        {
            self.counts.reads_reused += 1;
            return read.prep.clone();
        }
        let prep = prepare();
        known.read = Some(RememberedRead {
            rewrite: rewrite.clone(),
            auth_key,
            prep: prep.clone(),
        });
        prep
    }

    /// The checker of this daemon's reads: it remembers the events it
    /// checked in earlier ticks.
    pub(crate) fn checker(&self) -> crate::net::verified::Checker {
        crate::net::verified::Checker::with_memory(std::sync::Arc::clone(&self.verified))
    }

    /// The events remembered as checked, and the signature checks skipped
    /// and made so far.
    #[cfg(test)]
    pub fn verified(&self) -> &crate::net::verified::VerifiedEvents {
        &self.verified
    }

    /// Ends a tick: the event memory keeps only what this tick saw.
    pub(crate) fn end_tick(&mut self) {
        self.verified.end_tick();
    }

    /// Rule A5's derivations known from earlier ticks.
    pub(crate) fn known_keys(&self) -> &KnownKeys {
        &self.keys
    }

    /// Remembers the derivations a plan made (of keys of the store just
    /// read, so the memory still holds only keys the store holds).
    pub(crate) fn learn_keys(&mut self, learned: KnownKeys) {
        self.keys.extend(learned);
    }

    /// How often the stores were parsed and reused so far (and the reads
    /// and decisions reused).
    #[cfg(test)]
    pub fn parse_counts(&self) -> ParseCounts {
        self.counts
    }
}

/// A 128-bit XXH3 of `bytes`, seeded at random once per process: what tells
/// a tick that the agent store is the one parsed before. SHA-256 of a large
/// store cost a tick more than anything else it did over unchanged bytes
/// (about 9 ms at 10,000 records); XXH3 reads them many times faster. Its
/// collisions can be made only by someone who knows the seed, which never
/// leaves the process; whoever can write the store can change the records
/// anyway, and apply checks the store's SHA-256 before it writes.
fn fingerprint(bytes: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128_with_seed(bytes, fingerprint_seed())
}

/// The seed of [`fingerprint`], drawn once per process.
fn fingerprint_seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(rand::random)
}

/// [`fingerprint`] of the agent store's bytes at `path`, read and hashed a
/// piece at a time (the same hash as of the whole bytes at once); an
/// unreadable file is the error [`read_bytes`] gives.
fn fingerprint_of_file(path: &Path) -> Result<u128, StoreError> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::with_seed(fingerprint_seed());
    read_in_pieces(AGENT_STORE, path, |piece| hasher.update(piece))?;
    Ok(hasher.digest128())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Policy;
    use crate::core::plan::{Plan, SkipReason};
    use crate::core::rules;
    use crate::engine::orchestrate::{make_plan, tick, Stop, TickReport};

    const STORE: &str = include_str!("../../examples/basic/managed-agents.json");
    const PERSONAS: &str = include_str!("../../examples/basic/personas.json");

    /// A folder with the example store and personas, and its config.
    fn stores() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("managed-agents.json"), STORE).unwrap();
        std::fs::write(dir.path().join("personas.json"), PERSONAS).unwrap();
        let config = crate::config::parse(
            "[store]\nagents = \"managed-agents.json\"\npersonas = \"personas.json\"\n",
            &dir.path().join("config.toml"),
            dir.path(),
        )
        .expect("config");
        (dir, config)
    }

    /// What a fresh read (no memory) gives: digest, records, personas.
    fn fresh(config: &Config) -> (String, Vec<AgentRecord>, BTreeMap<String, String>) {
        let (store, personas) = crate::engine::read_prep::read_stores(config).expect("stores read");
        let records = store.records.into_iter().map(|r| r.record).collect();
        (store.digest, records, personas)
    }

    fn read(
        memory: &mut TickMemory,
        config: &Config,
    ) -> (String, Vec<AgentRecord>, BTreeMap<String, String>) {
        let read = memory.read_stores(config).expect("stores read");
        // As a tick does once it planned.
        memory.give_back_records(read.records.clone());
        (read.digest, read.records, read.personas)
    }

    #[test]
    fn records_a_tick_did_not_give_back_are_parsed_again() {
        let (_dir, config) = stores();
        let mut memory = TickMemory::default();
        // A tick that failed after reading the stores gives nothing back.
        let lent = memory.read_stores(&config).expect("stores read").records;
        let again = read(&mut memory, &config);
        assert_eq!(memory.parse_counts().agents_parsed, 2);
        assert_eq!(again.1, lent);
        // Records that are not all of the store are not taken back.
        let lent = memory.read_stores(&config).expect("stores read").records;
        assert_eq!(memory.parse_counts().agents_reused, 1);
        memory.give_back_records(lent[1..].to_vec());
        assert_eq!(read(&mut memory, &config), fresh(&config));
        assert_eq!(memory.parse_counts().agents_parsed, 3);
    }

    #[test]
    fn an_unchanged_store_is_not_parsed_again_and_reads_as_a_fresh_parse() {
        let (_dir, config) = stores();
        let mut memory = TickMemory::default();
        let first = read(&mut memory, &config);
        let second = read(&mut memory, &config);
        assert_eq!(
            memory.parse_counts(),
            ParseCounts {
                agents_parsed: 1,
                agents_reused: 1,
                personas_parsed: 1,
                personas_reused: 1,
                reads_reused: 0,
                decisions_reused: 0,
            }
        );
        assert_eq!(first, fresh(&config));
        assert_eq!(second, fresh(&config));
        assert!(!second.1.is_empty() && !second.2.is_empty());
    }

    /// The read `memory` prepares for `config`'s store (and how often it
    /// had to prepare it anew), checked against a fresh preparation.
    fn prepared(memory: &mut TickMemory, config: &Config, anew: &mut usize) -> String {
        let records = memory.read_stores(config).expect("stores read").records;
        let key = crate::engine::read_prep::read_auth_key(config).expect("key");
        let prepare =
            || crate::engine::read_prep::prepare_read(config, &records, &records, key.as_ref());
        let prep = memory.read_prep(&config.relay.rewrite, key.as_ref(), || {
            *anew += 1;
            prepare()
        });
        let fresh = format!("{:?}", prepare());
        memory.give_back_records(records);
        assert_eq!(format!("{prep:?}"), fresh, "as a fresh preparation");
        fresh
    }

    #[test]
    fn a_read_is_prepared_again_only_when_the_store_the_rewrites_or_the_sign_in_key_changed() {
        let (dir, mut config) = stores();
        let mut memory = TickMemory::default();
        let mut anew = 0;
        let first = prepared(&mut memory, &config, &mut anew);
        assert!(first.contains("ws://127.0.0.1:7777") && first.contains("label"));
        prepared(&mut memory, &config, &mut anew);
        assert_eq!((anew, memory.parse_counts().reads_reused), (1, 1));
        // Another rewrite: read elsewhere.
        config
            .relay
            .rewrite
            .insert("ws://127.0.0.1:7777".into(), "ws://127.0.0.1:7778".into());
        let rewritten = prepared(&mut memory, &config, &mut anew);
        assert!(rewritten.contains("ws://127.0.0.1:7778"));
        assert_eq!(anew, 2);
        // A sign-in key: tried first on every relay.
        let key_file = dir.path().join("service.key");
        std::fs::write(
            &key_file,
            nostr::Keys::generate().secret_key().to_secret_hex(),
        )
        .unwrap();
        config.relay.auth_key_file = Some(key_file.clone());
        assert!(prepared(&mut memory, &config, &mut anew).contains("auth_key_file"));
        // Another key in the same file.
        std::fs::write(
            &key_file,
            nostr::Keys::generate().secret_key().to_secret_hex(),
        )
        .unwrap();
        prepared(&mut memory, &config, &mut anew);
        assert_eq!(anew, 4);
        // The store changed: its records are read as they are now.
        let store = dir.path().join("managed-agents.json");
        let text = std::fs::read_to_string(&store).unwrap();
        std::fs::write(
            &store,
            text.replace("ws://127.0.0.1:9\"", "ws://127.0.0.1:10\""),
        )
        .unwrap();
        assert!(prepared(&mut memory, &config, &mut anew).contains("ws://127.0.0.1:10"));
        assert_eq!((anew, memory.parse_counts().reads_reused), (5, 1));
    }

    #[test]
    fn a_store_hashed_as_it_is_read_has_the_hash_of_its_whole_bytes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("managed-agents.json");
        let piece = 256 * 1024;
        for len in [0, 1, 240, piece - 1, piece, piece + 1, 4 * piece + 7] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(
                fingerprint_of_file(&path).expect("read"),
                fingerprint(&bytes),
                "{len} bytes"
            );
        }
        std::fs::remove_file(&path).unwrap();
        let missing = fingerprint_of_file(&path).unwrap_err().to_string();
        assert_eq!(
            missing,
            read_bytes(AGENT_STORE, &path).unwrap_err().to_string()
        );
    }

    #[test]
    fn a_store_changed_by_one_byte_is_parsed_again() {
        let (dir, config) = stores();
        let mut memory = TickMemory::default();
        read(&mut memory, &config);
        // One byte of one name, the length unchanged.
        let store = dir.path().join("managed-agents.json");
        let text = std::fs::read_to_string(&store).unwrap();
        let at = text.find("\"name\": \"").expect("a name") + "\"name\": \"".len();
        let mut bytes = text.into_bytes();
        bytes[at] = if bytes[at] == b'Q' { b'R' } else { b'Q' };
        std::fs::write(&store, &bytes).unwrap();
        let changed = read(&mut memory, &config);
        assert_eq!(memory.parse_counts().agents_parsed, 2);
        assert_eq!(memory.parse_counts().agents_reused, 0);
        assert_eq!(changed, fresh(&config), "the new bytes, parsed");
        // One byte of the personas, too.
        let personas = dir.path().join("personas.json");
        let text = std::fs::read_to_string(&personas).unwrap();
        std::fs::write(&personas, text.replacen(".png", ".PNG", 1)).unwrap();
        let changed = read(&mut memory, &config);
        assert_eq!(memory.parse_counts().personas_parsed, 2);
        assert_eq!(changed, fresh(&config));
    }

    #[test]
    fn a_store_that_stops_parsing_is_the_same_error_as_without_memory_and_is_forgotten() {
        let (dir, config) = stores();
        let mut memory = TickMemory::default();
        read(&mut memory, &config);
        let store = dir.path().join("managed-agents.json");
        std::fs::write(&store, "[{\"pubkey\": ").unwrap();
        let with_memory = memory.read_stores(&config).unwrap_err().to_string();
        let without = crate::engine::read_prep::read_stores(&config)
            .unwrap_err()
            .to_string();
        assert_eq!(with_memory, without);
        assert!(memory.agents.is_none() && memory.keys.is_empty());
        // Put back as it was: parsed again, not taken from memory.
        std::fs::write(&store, STORE).unwrap();
        assert_eq!(read(&mut memory, &config), fresh(&config));
        assert_eq!(memory.parse_counts().agents_parsed, 2);
    }

    /// Plans the records as the daemon does and remembers the derivations.
    fn plan_and_learn(memory: &mut TickMemory, config: &Config) -> usize {
        let read = memory.read_stores(config).expect("stores read");
        let snapshot = crate::core::model::Snapshot {
            agents: read
                .records
                .into_iter()
                .map(|record| crate::core::model::AgentSnapshot {
                    relay: Some(record.relay_url.clone()),
                    record,
                    observation: crate::core::model::RelayObservation::NoProfile,
                })
                .collect(),
            personas: read.personas,
        };
        let (plan, learned) =
            rules::plan_remembering_keys(&snapshot, &Policy::default(), 1, memory.known_keys());
        memory.learn_keys(learned);
        plan.actions.len()
    }

    #[test]
    fn key_derivations_are_kept_only_for_keys_the_store_still_holds() {
        let (dir, config) = stores();
        let mut memory = TickMemory::default();
        plan_and_learn(&mut memory, &config);
        let store = dir.path().join("managed-agents.json");
        let all: Vec<serde_json::Value> = serde_json::from_str(STORE).unwrap();
        let keys_in = |records: &[serde_json::Value]| {
            records
                .iter()
                .filter_map(|r| r["private_key_nsec"].as_str())
                .filter(|k| nostr::SecretKey::parse(k.trim()).is_ok())
                .collect::<HashSet<_>>()
                .len()
        };
        let before = memory.known_keys().len();
        assert!(before > 2, "the example world derives keys: {before}");
        assert!(before <= keys_in(&all));
        // The store loses all but its first two records.
        std::fs::write(&store, serde_json::to_string_pretty(&all[..2]).unwrap()).unwrap();
        plan_and_learn(&mut memory, &config);
        let after = memory.known_keys().len();
        assert_eq!(keys_in(&all[..2]), 2);
        assert_eq!(after, 2, "the derivations of the two keys left, no other");
        // And a daemon whose store churns stays at that size.
        for round in 0..3 {
            let mut records = all[..2].to_vec();
            records[1]["name"] = format!("renamed {round}").into();
            std::fs::write(&store, serde_json::to_string_pretty(&records).unwrap()).unwrap();
            plan_and_learn(&mut memory, &config);
            assert_eq!(memory.known_keys().len(), after);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_daemon_tick_over_an_unchanged_store_makes_the_plan_of_a_fresh_parse() {
        let (_relay, _dir, config) = crate::cli::demo::example_world().await;
        let stop = Stop::default();

        let mut memory = TickMemory::default();
        let first = tick(&config, &stop, Some(&mut memory)).await;
        let learned = memory.known_keys().len();
        assert!(learned > 0, "the world's republishes derive keys");
        let checked = memory.verified().checks();
        assert!(checked > 0, "the first tick checks the relay's events");
        assert_eq!(memory.verified().hits(), 0);
        let second = tick(&config, &stop, Some(&mut memory)).await;
        assert_eq!(
            memory.verified().checks(),
            checked,
            "no signature is checked again"
        );
        assert_eq!(memory.verified().hits(), checked, "each event vouched for");
        assert_eq!(memory.parse_counts().agents_parsed, 1);
        assert_eq!(memory.parse_counts().agents_reused, 1);
        assert_eq!(memory.known_keys().len(), learned, "nothing derived again");

        let fresh = make_plan(&config, &[], None).await.expect("plan");
        for report in [first, second] {
            let doc = report.plan.expect("a plan");
            assert!(!doc.plan.actions.is_empty(), "the world needs work");
            assert!(
                doc.plan
                    .skipped
                    .iter()
                    .any(|s| s.reason == SkipReason::KeyMismatch),
                "the world holds a key of another pubkey"
            );
            assert_eq!(
                without_clock(doc.plan),
                without_clock(fresh.doc.plan.clone())
            );
            assert_eq!(doc.store, fresh.doc.store);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tick_that_applies_lends_its_parse_to_apply_and_takes_it_back() {
        let (_relay, _dir, mut config) = crate::cli::demo::example_world().await;
        config.schedule.mode = crate::config::ScheduleMode::Apply;
        let stop = Stop::default();
        let mut memory = TickMemory::default();
        let counts = |memory: &TickMemory| {
            let counts = memory.parse_counts();
            (counts.agents_parsed, counts.agents_reused)
        };
        // Its backfills rewrite the store: apply parses it again.
        let first = tick(&config, &stop, Some(&mut memory)).await;
        assert!(!first.apply.expect("applied").records_from_plan);
        // One record renamed: parsed anew, and apply takes that parse.
        let text = std::fs::read_to_string(&config.agents).unwrap();
        let renamed = first_name_line(&text);
        std::fs::write(
            &config.agents,
            text.replacen(&renamed, &renamed.replace("\",", " again\","), 1),
        )
        .unwrap();
        let second = tick(&config, &stop, Some(&mut memory)).await;
        let applied = second.apply.expect("applied");
        assert!(applied.records_from_plan, "{applied:#?}");
        assert_eq!(applied.count(crate::core::apply::Outcome::Applied), 1);
        assert_eq!(counts(&memory), (2, 0));
        // Given back after the apply: the next tick reuses the parse.
        tick(&config, &stop, Some(&mut memory)).await;
        assert_eq!(counts(&memory), (2, 1));
    }

    /// The first `"name": "…",` line of a store's text.
    fn first_name_line(text: &str) -> String {
        let line = text
            .lines()
            .find(|line| line.trim_start().starts_with("\"name\":"))
            .expect("a name");
        line.trim().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_agent_unchanged_last_tick_is_decided_again_when_its_profile_the_personas_or_the_policy_changed(
    ) {
        let (relay, dir, mut config) = crate::cli::demo::example_world().await;
        let stop = Stop::default();
        let mut memory = TickMemory::default();
        let reused = |memory: &TickMemory| memory.parse_counts().decisions_reused;
        let planned = |report: TickReport| without_clock(report.plan.expect("a plan").plan);
        let fresh = |config: Config| async move {
            without_clock(make_plan(&config, &[], None).await.expect("plan").doc.plan)
        };

        // One tick in apply mode puts the world in sync; the rest plan.
        config.schedule.mode = crate::config::ScheduleMode::Apply;
        let applied = tick(&config, &stop, Some(&mut memory)).await;
        assert!(applied.count(crate::core::apply::Outcome::Applied) > 0);
        assert_eq!(applied.count(crate::core::apply::Outcome::Failed), 0);
        config.schedule.mode = crate::config::ScheduleMode::Plan;
        let before = reused(&memory);
        let first = planned(tick(&config, &stop, Some(&mut memory)).await);
        let unchanged = first.unchanged.len() as u64;
        assert!(unchanged >= 2, "the world has agents in sync");
        assert!(
            reused(&memory) - before < unchanged,
            "the agents republished were decided again"
        );
        let before = reused(&memory);
        let second = planned(tick(&config, &stop, Some(&mut memory)).await);
        assert_eq!(
            reused(&memory) - before,
            unchanged,
            "each unchanged agent, not decided again"
        );
        assert_eq!(second, fresh(config.clone()).await);

        // One of them gets a newer profile with another name: it alone is
        // decided again, and now needs a republish.
        let (store, _) = crate::engine::read_prep::read_stores(&config).expect("stores");
        let record = store
            .records
            .iter()
            .map(|stored| &stored.record)
            .find(|r| r.pubkey == first.unchanged[0])
            .expect("the record");
        let keys = rules::agent_keys(record).expect("its key");
        let renamed = nostr::EventBuilder::new(
            nostr::Kind::Metadata,
            serde_json::json!({"name": "someone else", "picture": "https://x.example/p.png"})
                .to_string(),
        )
        .custom_created_at(nostr::Timestamp::from(crate::clock::now_secs()))
        .sign_with_keys(&keys)
        .expect("signed");
        let url = relay.url().await.to_string();
        crate::cli::demo::seed_relay(&url, &[renamed])
            .await
            .expect("published");
        let before = reused(&memory);
        let third = planned(tick(&config, &stop, Some(&mut memory)).await);
        assert_eq!(reused(&memory) - before, unchanged - 1);
        assert!(!third.unchanged.contains(&record.pubkey));
        assert!(third
            .actions
            .iter()
            .any(|a| a.as_republish().is_some_and(|r| r.agent == record.pubkey)));
        assert_eq!(third, fresh(config.clone()).await);

        // Another policy: every agent decided again.
        let before = reused(&memory);
        config.policy.future_tolerance_secs += 1;
        let fourth = planned(tick(&config, &stop, Some(&mut memory)).await);
        assert_eq!(reused(&memory), before);
        assert_eq!(fourth, fresh(config.clone()).await);
        // Unchanged again, then other personas: every agent decided again.
        let before = reused(&memory);
        tick(&config, &stop, Some(&mut memory)).await;
        assert_eq!(reused(&memory) - before, unchanged - 1);
        let before = reused(&memory);
        let personas = dir.path().join("personas.json");
        let text = std::fs::read_to_string(&personas).unwrap();
        std::fs::write(&personas, text.replace("4.png", "4b.png")).unwrap();
        let sixth = planned(tick(&config, &stop, Some(&mut memory)).await);
        assert_eq!(reused(&memory), before);
        assert_eq!(sixth, fresh(config.clone()).await);
        // And a store changed: parsed again, nothing reused.
        tick(&config, &stop, Some(&mut memory)).await;
        let before = reused(&memory);
        let store = dir.path().join("managed-agents.json");
        let text = std::fs::read_to_string(&store).unwrap();
        std::fs::write(&store, format!("{text}\n")).unwrap();
        let last = planned(tick(&config, &stop, Some(&mut memory)).await);
        assert_eq!(reused(&memory), before);
        assert_eq!(last, fresh(config.clone()).await);
        relay.shutdown();
    }

    /// The plan with the clock (`dated <now>` in a skip's detail) blanked:
    /// the ticks run a second apart at most.
    fn without_clock(mut plan: Plan) -> Plan {
        for skip in &mut plan.skipped {
            // "dated 2026-12-07T15:23:05Z": the date the plan was made at.
            if let Some(at) = skip.detail.find("dated ") {
                let start = at + "dated ".len();
                let end = skip.detail[start..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == ':'))
                    .map_or(skip.detail.len(), |n| start + n);
                skip.detail.replace_range(start..end, "NOW");
            }
        }
        plan
    }
}
