//! The agent store and the persona store: reading them without losing a byte.
//!
//! The agent store is the desktop app's JSON array of agent records. Reading
//! keeps the file's exact text and where each record stands in it, so that a
//! later rewrite can change one field and keep every other byte (other
//! records, unknown fields, key order, formatting). This module decides
//! nothing about what should happen to a record; it reports what is there.
//! It never prints a private key: errors name the file, the line and column,
//! or the record's position, never a value.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::error::Category;
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::core::json::ObjectEntries;
use crate::core::model::{AgentRecord, AvatarField, SecretText};

/// A store or persona file that cannot be used, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file cannot be read.
    #[error("cannot read the {what} {path}: {source}; check the path in config.toml and the file's permissions")]
    Unreadable {
        /// Which file (`agent store`, `persona store`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON (or not UTF-8).
    #[error("{path}:{line}:{column}: the {what} is not valid JSON ({message}); fix the file or restore it from its backup")]
    Syntax {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said (no value from the file).
        message: String,
    },
    /// The file is JSON but not an array of objects.
    #[error("{path}: {problem}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is wrong and where.
        problem: String,
    },
    /// Records name a persona, and no persona store can be read: without it
    /// a persona's avatar could not win over a wrong relay picture (the bug
    /// the persona rule exists for), so nothing is planned.
    #[error("{count} record{plural} of the agent store name{verb} a persona ({first}), but there is no persona store at {path} ({source}); set [store] personas in config.toml to the app's personas.json")]
    PersonasNeeded {
        /// The persona store looked for.
        path: PathBuf,
        /// How many records have a `persona_id`.
        count: usize,
        /// `s` or nothing.
        plural: &'static str,
        /// `s` or nothing (agreeing with `count`).
        verb: &'static str,
        /// The first such record, as `record #N (name, pubkey…)`.
        first: String,
        /// Why it cannot be read.
        source: std::io::Error,
    },
}

/// One record of the agent store.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// Where the record's JSON object stands in the file's text.
    pub span: Range<usize>,
    /// What the rules read from it.
    pub record: AgentRecord,
}

/// A definition record of the store (Buzz desktop 0.4 and later): a persona
/// kept as a key-less record, `"pubkey": ""`, found by its `slug`. It is no
/// agent: never validated, counted or planned as one, and never rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// Position of the record in the store's array (0-based).
    pub index: usize,
    /// `slug`: the `persona_id` its instances name; `None` when absent or not
    /// a string (then no instance can name it).
    pub slug: Option<String>,
    /// `avatar_url` as written; empty when absent, null or not a string.
    pub avatar_url: String,
}

/// The agent store as read: its exact text and its records.
#[derive(Debug, Clone)]
pub struct AgentStore {
    /// The file it was read from.
    pub path: PathBuf,
    /// The file's exact text.
    pub text: String,
    /// SHA-256 of the file's bytes, lower-case hex.
    pub digest: String,
    /// The agent records (instances), in file order; definitions are not
    /// among them, so a record's `index` (its position in the file) is not
    /// its position here: find one with [`AgentStore::record`].
    pub records: Vec<StoredRecord>,
    /// The definition records, in file order.
    pub definitions: Vec<Definition>,
}

impl AgentStore {
    /// The agent record at position `index` of the file, if that position
    /// holds an agent record.
    pub fn record(&self, index: usize) -> Option<&StoredRecord> {
        record_at(&self.records, index, |r| r.record.index)
    }

    /// The personas its definition records give: slug to avatar (blank when
    /// none); with two definitions of one slug, the first in the file.
    pub fn definition_personas(&self) -> BTreeMap<String, String> {
        definition_personas(&self.definitions)
    }
}

/// The personas `definitions` give: slug to avatar; the first of a slug wins.
pub fn definition_personas(definitions: &[Definition]) -> BTreeMap<String, String> {
    let mut personas = BTreeMap::new();
    for definition in definitions {
        if let Some(slug) = &definition.slug {
            personas
                .entry(slug.clone())
                .or_insert_with(|| definition.avatar_url.clone());
        }
    }
    personas
}

/// The item of `items` (in ascending store position, as `index_of` tells)
/// whose store position is `index`.
pub fn record_at<T>(items: &[T], index: usize, index_of: impl Fn(&T) -> usize) -> Option<&T> {
    items
        .binary_search_by_key(&index, index_of)
        .ok()
        .map(|found| &items[found])
}

/// A file of reprofile's next to the store's real file (`store_target`, a
/// symlink already resolved): `<store file name><suffix>` in the same folder,
/// such as the apply lock and the backups.
pub fn beside_store(store_target: &Path, suffix: &str) -> PathBuf {
    let name = store_target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".to_string());
    store_target.with_file_name(format!("{name}{suffix}"))
}

/// SHA-256 of some bytes, as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads and parses the agent store at `path`.
pub fn read_agent_store(path: &Path) -> Result<AgentStore, StoreError> {
    let text = read_text(AGENT_STORE, path)?;
    parse_agent_store(path, text)
}

/// What the agent store is called in messages.
pub(crate) const AGENT_STORE: &str = "agent store";
/// What the persona store is called in messages.
pub(crate) const PERSONA_STORE: &str = "persona store";

/// The bytes of the `what` file at `path`.
pub(crate) fn read_bytes(what: &'static str, path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|source| StoreError::Unreadable {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// SHA-256 of the bytes of the `what` file at `path`, lower-case hex, read
/// and hashed a piece at a time (the same digest as [`sha256_hex`] of the
/// whole bytes); an unreadable file is the error [`read_bytes`] gives.
pub(crate) fn sha256_of_file(what: &'static str, path: &Path) -> Result<String, StoreError> {
    let mut hasher = Sha256::new();
    read_in_pieces(what, path, |piece| hasher.update(piece))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Reads the `what` file at `path` 256 KiB at a time, handing each piece to
/// `each` in order, so that a large file is never held whole; an unreadable
/// file is the error [`read_bytes`] gives.
pub(crate) fn read_in_pieces(
    what: &'static str,
    path: &Path,
    mut each: impl FnMut(&[u8]),
) -> Result<(), StoreError> {
    use std::io::Read;
    let unreadable = |source| StoreError::Unreadable {
        what,
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let mut piece = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut piece) {
            Ok(0) => return Ok(()),
            Ok(read) => each(&piece[..read]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(unreadable(err)),
        }
    }
}

/// The text of the `what` file at `path`: it must be readable UTF-8.
fn read_text(what: &'static str, path: &Path) -> Result<String, StoreError> {
    utf8_text(what, path, read_bytes(what, path)?)
}

/// The bytes of the `what` file at `path` as text: they must be UTF-8.
pub(crate) fn utf8_text(
    what: &'static str,
    path: &Path,
    bytes: Vec<u8>,
) -> Result<String, StoreError> {
    String::from_utf8(bytes).map_err(|err| {
        let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        let column = valid.len() - valid.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
        StoreError::Syntax {
            what,
            path: path.to_path_buf(),
            line,
            column,
            message: "the file is not UTF-8 text".to_string(),
        }
    })
}

fn syntax_error(what: &'static str, path: &Path, err: &serde_json::Error) -> StoreError {
    // serde_json's message ends with " at line L column C"; keep only the cause.
    let full = err.to_string();
    let message = match full.rfind(" at line ") {
        Some(cut) => full[..cut].to_string(),
        None => full,
    };
    StoreError::Syntax {
        what,
        path: path.to_path_buf(),
        line: err.line(),
        column: err.column(),
        message,
    }
}

/// Parses the agent store's text (`path` is for messages).
///
/// One pass: the array is split into raw record slices (nothing is built for
/// the fields the tool does not read), then each record's known fields are
/// picked out as raw slices and decoded. The text's SHA-256 is taken while
/// it is split, and the records are decoded on every core (rayon's pool), in
/// store order.
pub fn parse_agent_store(path: &Path, text: String) -> Result<AgentStore, StoreError> {
    let (digest, records) = rayon::join(
        || sha256_hex(text.as_bytes()),
        || parse_records(path, &text),
    );
    let (records, definitions) = records?;
    Ok(AgentStore {
        path: path.to_path_buf(),
        digest,
        records,
        definitions,
        text,
    })
}

/// Records decoded as one piece of work on the pool: enough to outweigh
/// handing the piece over, few enough to keep both cores busy at 1,000.
const RECORDS_PER_PIECE: usize = 128;

/// One entry of the store's array, decoded. Short-lived (one per record, in
/// a vector dropped at once), so the size of its larger variant is no cost.
#[allow(clippy::large_enum_variant)]
enum Entry {
    /// An agent record (an instance).
    Agent(StoredRecord),
    /// A definition record (`"pubkey": ""`).
    Definition(Definition),
}

/// Every record of the store's `text`, in store order, agent records apart
/// from definitions; the first problem (by record) when the text is not an
/// array of objects.
fn parse_records(
    path: &Path,
    text: &str,
) -> Result<(Vec<StoredRecord>, Vec<Definition>), StoreError> {
    use rayon::prelude::*;

    let raw_records: Vec<&RawValue> = match serde_json::from_str(text) {
        Ok(records) => records,
        Err(err) if err.classify() == Category::Data => {
            return Err(StoreError::Shape {
                path: path.to_path_buf(),
                problem: "the agent store must be a JSON array of agent records ([...])"
                    .to_string(),
            })
        }
        Err(err) => return Err(syntax_error(AGENT_STORE, path, &err)),
    };
    let base = text.as_ptr() as usize;
    let decoded: Vec<Option<Entry>> = raw_records
        .par_iter()
        .with_min_len(RECORDS_PER_PIECE)
        .enumerate()
        .map(|(index, raw)| {
            let start = raw.get().as_ptr() as usize - base;
            let span = start..start + raw.get().len();
            KnownFields::of(raw.get()).map(|fields| {
                if fields.is_definition() {
                    Entry::Definition(fields.into_definition(index))
                } else {
                    Entry::Agent(StoredRecord {
                        span,
                        record: fields.into_record(index),
                    })
                }
            })
        })
        .collect();
    let mut records = Vec::with_capacity(decoded.len());
    let mut definitions = Vec::new();
    for (index, entry) in decoded.into_iter().enumerate() {
        match entry {
            Some(Entry::Agent(record)) => records.push(record),
            Some(Entry::Definition(definition)) => definitions.push(definition),
            None => {
                return Err(StoreError::Shape {
                    path: path.to_path_buf(),
                    problem: format!(
                        "record #{index} is not a JSON object; every entry of the store must be an agent record"
                    ),
                })
            }
        }
    }
    Ok((records, definitions))
}

/// The fields of a record the tool reads.
#[derive(Clone, Copy, serde::Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Pubkey,
    Name,
    PrivateKeyNsec,
    RelayUrl,
    AvatarUrl,
    PersonaId,
    AgentCommand,
    AuthTag,
    Slug,
    #[serde(other)]
    Other,
}

/// The raw JSON of each known field of one record (with a repeated key, the
/// last one counts, as in most JSON readers); other fields are skipped.
#[derive(Default)]
struct KnownFields<'a> {
    pubkey: Option<&'a RawValue>,
    name: Option<&'a RawValue>,
    private_key_nsec: Option<&'a RawValue>,
    relay_url: Option<&'a RawValue>,
    avatar_url: Option<&'a RawValue>,
    persona_id: Option<&'a RawValue>,
    agent_command: Option<&'a RawValue>,
    auth_tag: Option<&'a RawValue>,
    slug: Option<&'a RawValue>,
}

impl<'a> KnownFields<'a> {
    /// Picks the known fields out of a record's JSON text; `None` when it is
    /// not a JSON object.
    fn of(record: &'a str) -> Option<Self> {
        let ObjectEntries(entries) =
            serde_json::from_str::<ObjectEntries<Field, &RawValue>>(record).ok()?;
        let mut fields = KnownFields::default();
        for (field, value) in entries {
            let slot = match field {
                Field::Pubkey => &mut fields.pubkey,
                Field::Name => &mut fields.name,
                Field::PrivateKeyNsec => &mut fields.private_key_nsec,
                Field::RelayUrl => &mut fields.relay_url,
                Field::AvatarUrl => &mut fields.avatar_url,
                Field::PersonaId => &mut fields.persona_id,
                Field::AgentCommand => &mut fields.agent_command,
                Field::AuthTag => &mut fields.auth_tag,
                Field::Slug => &mut fields.slug,
                Field::Other => continue,
            };
            *slot = Some(value);
        }
        Some(fields)
    }
}

/// What a raw JSON value is, for messages (never the value itself).
fn json_type(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

/// A raw JSON string's text, `Ok(None)` for null, or `Err(type)`.
fn raw_text(raw: &RawValue) -> Result<Option<String>, &'static str> {
    match json_type(raw) {
        "null" => Ok(None),
        "a string" => serde_json::from_str::<String>(raw.get())
            .map(Some)
            .map_err(|_| "a string"),
        other => Err(other),
    }
}

impl KnownFields<'_> {
    /// A definition record: its `pubkey` is the empty string (Buzz desktop
    /// 0.4 and later keeps its personas so, `AgentDefinition::into_agent_record`).
    /// A missing or non-string pubkey is an agent record with a problem.
    fn is_definition(&self) -> bool {
        self.pubkey.is_some_and(|raw| raw.get() == "\"\"")
    }

    /// The definition's slug and avatar (blank when none or not a string).
    fn into_definition(self, index: usize) -> Definition {
        let text = |raw: Option<&RawValue>| raw.and_then(|raw| raw_text(raw).ok().flatten());
        Definition {
            index,
            slug: text(self.slug),
            avatar_url: text(self.avatar_url).unwrap_or_default(),
        }
    }

    /// Decodes the fields the rules read. A field of the wrong type is noted
    /// (by name, never by value) and read as absent.
    fn into_record(self, index: usize) -> AgentRecord {
        let mut errors = Vec::new();
        let mut text = |key: &str, raw: Option<&RawValue>, required: bool| -> Option<String> {
            let raw = raw?;
            match raw_text(raw) {
                Ok(Some(value)) => Some(value),
                Ok(None) if !required => None,
                Ok(None) | Err(_) => {
                    errors.push(format!(
                        "field `{key}` must be a string{}, not {}",
                        if required { "" } else { " or null" },
                        json_type(raw)
                    ));
                    None
                }
            }
        };
        let pubkey = text("pubkey", self.pubkey, true).unwrap_or_default();
        let name = text("name", self.name, true).unwrap_or_default();
        let secret_key =
            text("private_key_nsec", self.private_key_nsec, false).map(SecretText::new);
        let relay_url = text("relay_url", self.relay_url, true).unwrap_or_default();
        let persona_id = text("persona_id", self.persona_id, false);
        let agent_command = text("agent_command", self.agent_command, false);
        let auth_tag = text("auth_tag", self.auth_tag, false);
        let avatar_url = match self.avatar_url.map(|raw| (raw, raw_text(raw))) {
            None => AvatarField::Absent,
            Some((_, Ok(None))) => AvatarField::Null,
            Some((_, Ok(Some(text)))) => AvatarField::Text(text),
            Some((raw, Err(_))) => {
                errors.push(format!(
                    "field `avatar_url` must be a string or null, not {}",
                    json_type(raw)
                ));
                AvatarField::Absent
            }
        };
        AgentRecord {
            index,
            pubkey,
            name,
            secret_key,
            key_origin: crate::core::model::KeyOrigin::Inline,
            relay_url,
            avatar_url,
            persona_id,
            agent_command,
            auth_tag,
            field_errors: errors,
        }
    }
}

/// The records that name a persona (a non-null `persona_id`): with any, a
/// persona store is required.
fn records_naming_a_persona<'a>(
    records: impl Iterator<Item = &'a AgentRecord>,
) -> impl Iterator<Item = &'a AgentRecord> {
    records.filter(|r| r.persona_id.is_some())
}

/// The personas the agent store's `records` resolve their `persona_id`
/// against: its own definition records (`definitions`, Buzz desktop 0.4
/// and later), over the persona store at `path` (`personas.json`, the June
/// 2026 format) when that file is there.
///
/// A persona store set in config.toml (`configured`) must be there. One
/// looked for beside the agent store may be missing when the agent store
/// holds definitions (the app folded `personas.json` into it) or while no
/// record names a persona; else its absence is
/// [`StoreError::PersonasNeeded`]. A persona store that is there but
/// unreadable or broken is always an error. `personas.json.bak`, the app's
/// stale copy, is never read.
pub fn read_persona_store(
    path: &Path,
    configured: bool,
    store: &AgentStore,
) -> Result<BTreeMap<String, String>, StoreError> {
    persona_store_from(
        path,
        configured,
        store.definition_personas(),
        store.records.iter().map(|r| &r.record),
        read_personas(path),
    )
}

/// [`read_persona_store`] given the definitions' personas and what reading
/// (and parsing) the persona store at `path` gave: decides whether a missing
/// one is allowed for `records`, and lays the definitions over the file's.
pub(crate) fn persona_store_from<'a>(
    path: &Path,
    configured: bool,
    definitions: BTreeMap<String, String>,
    records: impl Iterator<Item = &'a AgentRecord>,
    read: Result<BTreeMap<String, String>, StoreError>,
) -> Result<BTreeMap<String, String>, StoreError> {
    match read {
        Err(StoreError::Unreadable { source, .. })
            if !configured && source.kind() == std::io::ErrorKind::NotFound =>
        {
            if !definitions.is_empty() {
                return Ok(definitions);
            }
            let naming: Vec<&AgentRecord> = records_naming_a_persona(records).collect();
            match naming.first() {
                None => Ok(BTreeMap::new()),
                Some(first) => Err(StoreError::PersonasNeeded {
                    path: path.to_path_buf(),
                    count: naming.len(),
                    plural: if naming.len() == 1 { "" } else { "s" },
                    verb: if naming.len() == 1 { "s" } else { "" },
                    first: crate::core::validate::record_subject(first),
                    source,
                }),
            }
        }
        Ok(mut personas) => {
            personas.extend(definitions);
            Ok(personas)
        }
        Err(err) => Err(err),
    }
}

/// Reads the persona store: persona id to its `avatar_url` (blank when none).
pub fn read_personas(path: &Path) -> Result<BTreeMap<String, String>, StoreError> {
    let text = read_text(PERSONA_STORE, path)?;
    parse_personas(path, &text)
}

/// Parses the persona store's text (`path` is for messages).
pub fn parse_personas(path: &Path, text: &str) -> Result<BTreeMap<String, String>, StoreError> {
    let value: Value =
        serde_json::from_str(text).map_err(|err| syntax_error(PERSONA_STORE, path, &err))?;
    let shape = |problem: String| StoreError::Shape {
        path: path.to_path_buf(),
        problem,
    };
    let Value::Array(entries) = value else {
        return Err(shape(
            "the persona store must be a JSON array of personas ([...])".to_string(),
        ));
    };
    let mut personas = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let Some(id) = entry.get("id").and_then(Value::as_str) else {
            return Err(shape(format!(
                "persona #{index} has no string `id`; every persona needs one"
            )));
        };
        let avatar = match entry.get("avatar_url") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(shape(format!(
                    "persona #{index} (`{id}`): `avatar_url` must be a string or null"
                )))
            }
        };
        personas.insert(id.to_string(), avatar);
    }
    Ok(personas)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentStore, StoreError> {
        parse_agent_store(Path::new("agents.json"), text.to_string())
    }

    #[test]
    fn definition_records_are_no_agents_and_give_the_personas() {
        let text = r#"[
  {"pubkey": "", "slug": "builtin:fizz", "name": "Fizz", "avatar_url": "data:image/png;base64,AA=="},
  {"pubkey": "aa", "name": "Fizz", "persona_id": "builtin:fizz"},
  {"pubkey": "", "slug": "persona-research", "avatar_url": null},
  {"pubkey": "", "name": "no slug"},
  {"name": "no pubkey at all"},
  {"pubkey": "", "slug": "builtin:fizz", "avatar_url": "https://second.example/x.png"}
]"#;
        let store = parse(text).unwrap();
        let agents: Vec<usize> = store.records.iter().map(|r| r.record.index).collect();
        // A record without a pubkey is still an agent record (with a problem).
        assert_eq!(agents, [1, 4]);
        let definitions: Vec<usize> = store.definitions.iter().map(|d| d.index).collect();
        assert_eq!(definitions, [0, 2, 3, 5]);
        assert_eq!(store.record(4).unwrap().record.name, "no pubkey at all");
        assert!(
            store.record(0).is_none(),
            "a definition is not an agent record"
        );
        let personas = store.definition_personas();
        assert_eq!(personas.len(), 2);
        // The first definition of a slug wins; a null avatar is blank.
        assert_eq!(personas["builtin:fizz"], "data:image/png;base64,AA==");
        assert_eq!(personas["persona-research"], "");
    }

    #[test]
    fn a_store_with_definitions_needs_no_persona_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let beside = dir.path().join("personas.json");
        let today = parse(
            r#"[{"pubkey":"","slug":"p1","avatar_url":"https://p/1.png"},{"pubkey":"aa","name":"Ada","persona_id":"p1"}]"#,
        )
        .unwrap();
        let personas = read_persona_store(&beside, false, &today).unwrap();
        assert_eq!(personas["p1"], "https://p/1.png");
        // The app's stale copy is never read, even when it is the only file.
        std::fs::write(
            dir.path().join("personas.json.bak"),
            "[{\"id\":\"p1\",\"avatar_url\":\"https://old/1.png\"}]",
        )
        .unwrap();
        assert_eq!(
            read_persona_store(&beside, false, &today).unwrap()["p1"],
            "https://p/1.png"
        );
        // A persona store that is there is read, and the definitions win.
        std::fs::write(
            &beside,
            r#"[{"id":"p1","avatar_url":"https://file/1.png"},{"id":"p2","avatar_url":"https://file/2.png"}]"#,
        )
        .unwrap();
        let both = read_persona_store(&beside, false, &today).unwrap();
        assert_eq!(both["p1"], "https://p/1.png");
        assert_eq!(both["p2"], "https://file/2.png");
    }

    #[test]
    fn a_file_hashed_as_it_is_read_has_the_sha256_of_its_whole_bytes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("managed-agents.json");
        let piece = 256 * 1024;
        for len in [0, 1, piece - 1, piece, piece + 1, 3 * piece + 7] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(
                sha256_of_file(AGENT_STORE, &path).expect("read"),
                sha256_hex(&bytes),
                "{len} bytes"
            );
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            sha256_of_file(AGENT_STORE, &path).unwrap_err().to_string(),
            read_bytes(AGENT_STORE, &path).unwrap_err().to_string()
        );
    }

    #[test]
    fn spans_point_at_each_record_exactly() {
        let text = "[\n  {\"pubkey\": \"a\", \"x\": [1, {\"y\": 2}]},\n  {\"pubkey\": \"b\"}\n]\n";
        let store = parse(text).unwrap();
        assert_eq!(store.records.len(), 2);
        assert_eq!(
            &text[store.records[0].span.clone()],
            "{\"pubkey\": \"a\", \"x\": [1, {\"y\": 2}]}"
        );
        assert_eq!(&text[store.records[1].span.clone()], "{\"pubkey\": \"b\"}");
        assert_eq!(store.records[1].record.index, 1);
    }

    #[test]
    fn syntax_errors_name_file_line_and_column_on_one_line() {
        let err = parse("[\n  {\"pubkey\": \"a\",}\n]").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("agents.json:2:"), "{message}");
        assert!(!message.contains('\n'));
        let err = parse("[\n  {\"pubkey\": \"a\"").unwrap_err();
        assert!(err.to_string().contains("EOF"), "{err}");
    }

    #[test]
    fn a_store_that_is_not_an_array_of_objects_is_refused() {
        assert!(parse("{}")
            .unwrap_err()
            .to_string()
            .contains("must be a JSON array"));
        assert!(parse("[1]")
            .unwrap_err()
            .to_string()
            .contains("record #0 is not a JSON object"));
    }

    #[test]
    fn wrong_typed_fields_are_named_not_shown() {
        let store =
            parse(r#"[{"pubkey": 5, "name": ["x"], "private_key_nsec": 7, "avatar_url": false}]"#)
                .unwrap();
        let errors = &store.records[0].record.field_errors;
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].contains("`pubkey`"));
        assert!(errors.iter().all(|e| !e.contains('7')));
    }

    #[test]
    fn a_repeated_key_counts_last_escaped_keys_are_read_and_other_fields_skipped() {
        let store = parse(
            r#"[{"name": "first", "x": {"deep": [1, 2]}, "n\u0061me": "last", "pubkey": "a"}]"#,
        )
        .unwrap();
        let record = &store.records[0].record;
        assert_eq!(record.name, "last");
        assert_eq!(record.pubkey, "a");
        assert!(record.field_errors.is_empty(), "{:?}", record.field_errors);
    }

    #[test]
    fn avatar_field_distinguishes_absent_null_and_text() {
        let store = parse(
            r#"[{"pubkey":"a"},{"pubkey":"b","avatar_url":null},{"pubkey":"c","avatar_url":" "}]"#,
        )
        .unwrap();
        let fields: Vec<_> = store
            .records
            .iter()
            .map(|r| r.record.avatar_url.clone())
            .collect();
        assert_eq!(
            fields,
            vec![
                AvatarField::Absent,
                AvatarField::Null,
                AvatarField::Text(" ".into())
            ]
        );
    }

    const FIXTURE: &str = include_str!("../../tests/fixtures/basic/managed-agents.json");

    proptest::proptest! {
        #[test]
        fn property_parsing_any_bytes_as_a_store_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let _ = parse(&text);
            let _ = parse_personas(Path::new("p.json"), &text);
        }

        #[test]
        fn property_a_damaged_store_is_an_error_or_a_store_never_a_panic(cut in 0usize..19_044, flip in 0usize..19_044, byte in proptest::prelude::any::<u8>()) {
            let mut bytes = FIXTURE.as_bytes().to_vec();
            let at = flip % bytes.len();
            bytes[at] = byte;
            bytes.truncate(cut.max(1));
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if let Ok(store) = parse(&text) {
                for record in &store.records {
                    proptest::prop_assert!(text.get(record.span.clone()).is_some());
                }
            }
        }
    }

    #[test]
    fn a_missing_persona_store_is_an_error_only_when_a_record_names_a_persona() {
        let dir = tempfile::tempdir().unwrap();
        let beside = dir.path().join("personas.json");
        let plain = parse(r#"[{"pubkey":"a","persona_id":null},{"pubkey":"b"}]"#).unwrap();
        assert!(read_persona_store(&beside, false, &plain)
            .unwrap()
            .is_empty());
        let err = read_persona_store(&beside, true, &plain).unwrap_err();
        assert!(matches!(err, StoreError::Unreadable { .. }), "{err}");

        let naming = parse(
            r#"[{"pubkey":"a","name":"Ada","persona_id":null},{"pubkey":"b","name":"Bee","persona_id":"builtin:fizz"}]"#,
        )
        .unwrap();
        let message = read_persona_store(&beside, false, &naming)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("1 record of the agent store names a persona (record #1 (Bee)), but there is no persona store at "),
            "{message}"
        );
        assert!(message.contains(&beside.display().to_string()), "{message}");
        assert!(
            message.ends_with("set [store] personas in config.toml to the app's personas.json"),
            "{message}"
        );
        assert!(!message.contains('\n'));

        std::fs::write(
            &beside,
            r#"[{"id":"builtin:fizz","avatar_url":"data:image/png;base64,AA=="}]"#,
        )
        .unwrap();
        let personas = read_persona_store(&beside, false, &naming).unwrap();
        assert_eq!(personas["builtin:fizz"], "data:image/png;base64,AA==");
        // A persona store that is there but broken is an error either way.
        std::fs::write(&beside, "{").unwrap();
        assert!(read_persona_store(&beside, false, &plain).is_err());
    }

    #[test]
    fn personas_map_id_to_avatar() {
        let personas = parse_personas(
            Path::new("p.json"),
            r#"[{"id":"a","avatar_url":"https://x"},{"id":"b"},{"id":"c","avatar_url":null}]"#,
        )
        .unwrap();
        assert_eq!(personas["a"], "https://x");
        assert_eq!(personas["b"], "");
        assert!(parse_personas(Path::new("p.json"), r#"[{"name":"x"}]"#).is_err());
        assert!(parse_personas(Path::new("p.json"), "{")
            .unwrap_err()
            .to_string()
            .starts_with("p.json:1:"));
    }
}
