//! Writing the agent store: one field changed, every other byte kept.
//!
//! Only `avatar_url` of the records concerned changes. The text edit keeps
//! other records, unknown fields, key order and formatting: an existing
//! `avatar_url` value is replaced in place; a missing one is inserted as the
//! record's first field on its own line (indented like its neighbours), so the
//! file differs from before only in `avatar_url` lines. The write is atomic (a
//! temp file created 0600 in the same folder, permission bits copied from the
//! store, fsync, rename, fsync of the folder); a symlinked store is written
//! at its target and stays a symlink. The store is re-read just before
//! writing, and the rename only happens if nobody changed the file meanwhile,
//! so a concurrent edit by the desktop app is never lost. Which records to
//! change is decided by the caller (the core's preconditions).

use std::collections::HashMap;
use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::value::RawValue;

use crate::core::json::{json_string, ObjectEntries};
use crate::core::model::AvatarField;
use crate::core::rules::{InStore, PubkeyCopies};
use crate::store::{beside_store, parse_agent_store, AgentStore};

/// How often the read-edit-write cycle is retried when the store changes
/// under it.
const MAX_ATTEMPTS: usize = 5;

/// A store write that did not happen; the store is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Reading, writing or renaming failed.
    #[error("cannot write the agent store {path}: {source}; the store was not changed")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store no longer parses.
    #[error("the agent store changed and no longer parses ({0}); the store was not changed")]
    Unparsable(String),
    /// The store kept changing under us.
    #[error("the agent store {0} kept changing while it was being written; try again when the app is idle")]
    Busy(PathBuf),
}

/// One field of one record to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvatarEdit {
    /// The record's pubkey.
    pub pubkey: String,
    /// The new `avatar_url`.
    pub avatar_url: String,
}

/// What the caller decides for one edit, given the record as it is now.
pub enum EditDecision {
    /// Write it.
    Write,
    /// Leave the record alone (the caller records why).
    Skip,
}

/// Where a record's fields stand in the store text.
struct FieldSpan {
    key: String,
    key_start: usize,
    value_start: usize,
    value_end: usize,
}

/// The fields of the object at `text[start..end]`, with their positions.
fn field_spans(text: &str, start: usize, end: usize) -> Option<Vec<FieldSpan>> {
    let object = &text[start..end];
    let ObjectEntries(fields) =
        serde_json::from_str::<ObjectEntries<String, &RawValue>>(object).ok()?;
    let base = text.as_ptr() as usize;
    let mut spans = Vec::with_capacity(fields.len());
    let mut search_from = start + 1;
    for (key, raw) in fields {
        let value_start = raw.get().as_ptr() as usize - base;
        let value_end = value_start + raw.get().len();
        // The key is the last string literal before the value's colon.
        let colon = text[search_from..value_start].rfind(':')? + search_from;
        let key_end = text[search_from..colon].rfind('"')? + search_from;
        let key_start = find_string_start(text, search_from, key_end)?;
        spans.push(FieldSpan {
            key,
            key_start,
            value_start,
            value_end,
        });
        search_from = value_end;
    }
    Some(spans)
}

/// The opening quote of the JSON string literal that closes at `close`.
fn find_string_start(text: &str, from: usize, close: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    // Walk forward from `from` to the first quote that opens a string which
    // ends exactly at `close` (keys contain no raw quotes; escapes are skipped).
    let mut i = from;
    while i < close {
        if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < close {
                match bytes[j] {
                    b'\\' => j += 2,
                    b'"' => break,
                    _ => j += 1,
                }
            }
            if j == close {
                return Some(i);
            }
            i = j + 1;
        } else {
            i += 1;
        }
    }
    None
}

/// The text of `store` with the given `avatar_url` edits (record index to new
/// value). Pure: no I/O.
pub fn edit_text(store: &AgentStore, edits: &HashMap<usize, String>) -> Result<String, String> {
    let text = &store.text;
    // (position, bytes to remove, replacement), applied in order.
    let mut splices: Vec<(usize, usize, String)> = Vec::with_capacity(edits.len());
    for (index, url) in edits {
        let record = store
            .record(*index)
            .ok_or_else(|| format!("record #{index} is not in the store"))?;
        let span = &record.span;
        let fields = field_spans(text, span.start, span.end)
            .ok_or_else(|| format!("record #{index} could not be located in the text"))?;
        let value = json_string(url);
        let existing: Vec<&FieldSpan> = fields.iter().filter(|f| f.key == "avatar_url").collect();
        if !existing.is_empty() {
            for field in existing {
                splices.push((
                    field.value_start,
                    field.value_end - field.value_start,
                    value.clone(),
                ));
            }
            continue;
        }
        let insertion = match fields.first() {
            None => format!("\"avatar_url\": {value}"),
            Some(first) => {
                // Copy the layout of the first field: the whitespace before it
                // and the separator between its key and value.
                let lead = &text[span.start + 1..first.key_start];
                let key_end = text[first.key_start..first.value_start]
                    .rfind('"')
                    .map(|p| p + first.key_start + 1)
                    .unwrap_or(first.value_start);
                let separator = &text[key_end..first.value_start];
                format!("\"avatar_url\"{separator}{value},{lead}")
            }
        };
        let at = fields.first().map_or(span.start + 1, |f| f.key_start);
        splices.push((at, 0, insertion));
    }
    splices.sort_by_key(|(at, _, _)| *at);
    let mut out = String::with_capacity(text.len() + splices.len() * 96);
    let mut cursor = 0;
    for (at, remove, replacement) in splices {
        out.push_str(&text[cursor..at]);
        out.push_str(&replacement);
        cursor = at + remove;
    }
    out.push_str(&text[cursor..]);
    Ok(out)
}

/// The file a store path really is (a symlink's final target).
pub fn resolve_target(path: &Path) -> std::io::Result<PathBuf> {
    std::fs::canonicalize(path)
}

/// Writes a 0600 backup of `bytes` next to the store, created 0600 from the
/// start. Returns its path. A backup is never overwritten: when one of the
/// same second exists (two applies that write within a second), the name
/// gets `-2`, `-3`, ...
pub fn write_backup(store_target: &Path, bytes: &[u8], stamp: &str) -> std::io::Result<PathBuf> {
    let mut attempt = 1u32;
    loop {
        let suffix = if attempt == 1 {
            String::new()
        } else {
            format!("-{attempt}")
        };
        let path = beside_store(store_target, &format!(".reprofile-{stamp}{suffix}.bak"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(bytes)?;
                file.sync_all()?;
                return Ok(path);
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && attempt < 1000 => {
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Hooks for tests: a failure injected into the write path (only with the
/// `test-hooks` feature, which only the tests turn on).
#[cfg(any(test, feature = "test-hooks"))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InjectedFault {
    /// No fault.
    #[default]
    None,
    /// The temp file cannot be written (as on a full disk).
    DiskFull,
    /// The journal cannot be opened (as in a read-only plans folder).
    JournalReadOnly,
    /// Just after apply's backfill write, the desktop app rewrites the store
    /// as it does when an agent starts or stops: the whole file, from what it
    /// read before that write, to a temp file renamed over the store.
    AppRewritesStoreAfterBackfill,
}

/// The result of one store write.
#[derive(Debug)]
pub struct Written {
    /// Pubkeys whose `avatar_url` was written.
    pub written: Vec<String>,
    /// The backup made before this write, when one was made.
    pub backup: Option<PathBuf>,
}

/// Options of [`write_avatars`].
pub struct WriteOptions<'a> {
    /// Make a backup of the store as it was before writing (once per run).
    pub backup_stamp: Option<&'a str>,
    /// A fault to inject (tests).
    #[cfg(any(test, feature = "test-hooks"))]
    pub fault: InjectedFault,
}

/// Re-reads the store, asks `decide` about each edit against the record as it
/// is now, writes the chosen edits atomically, and returns what was written.
/// `decide` gets the current `avatar_url` when exactly one record holds the
/// pubkey (only such a record is written), or how many do. When nothing is
/// chosen, nothing is written.
pub fn write_avatars(
    store_path: &Path,
    edits: &[AvatarEdit],
    mut decide: impl FnMut(&AvatarEdit, InStore<&AvatarField>) -> EditDecision,
    opts: WriteOptions<'_>,
) -> Result<Written, WriteError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError::Io { path, source }
    };
    let target = resolve_target(store_path).map_err(io(store_path))?;
    for _ in 0..MAX_ATTEMPTS {
        let before = std::fs::read(&target).map_err(io(&target))?;
        let text = String::from_utf8(before.clone())
            .map_err(|_| WriteError::Unparsable("not UTF-8".to_string()))?;
        let store =
            parse_agent_store(&target, text).map_err(|e| WriteError::Unparsable(e.to_string()))?;
        // A record's `index` is its position in the store it was read from.
        let copies = PubkeyCopies::of(store.records.iter().map(|r| &r.record));
        let mut chosen: HashMap<usize, String> = HashMap::new();
        let mut written = Vec::new();
        for edit in edits {
            let found = copies.find(&edit.pubkey);
            let current = found.map(|i| {
                &store
                    .record(i)
                    .expect("PubkeyCopies names the store's own records")
                    .record
                    .avatar_url
            });
            if let (EditDecision::Write, InStore::One(i)) = (decide(edit, current), found) {
                chosen.insert(i, edit.avatar_url.clone());
                written.push(edit.pubkey.clone());
            }
        }
        if chosen.is_empty() {
            return Ok(Written {
                written,
                backup: None,
            });
        }
        let new_text = edit_text(&store, &chosen).map_err(WriteError::Unparsable)?;
        // The edited text must still be a store this tool (and the app) reads.
        parse_agent_store(&target, new_text.clone())
            .map_err(|e| WriteError::Unparsable(format!("the edit would break the store: {e}")))?;

        let mode = std::fs::metadata(&target)
            .map_err(io(&target))?
            .permissions()
            .mode();
        let dir = target.parent().unwrap_or(Path::new("."));
        let mut temp = tempfile::Builder::new()
            .prefix(".reprofile-store-")
            .suffix(".tmp")
            .permissions(Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(io(dir))?;
        #[cfg(any(test, feature = "test-hooks"))]
        if opts.fault == InjectedFault::DiskFull {
            return Err(WriteError::Io {
                path: temp.path().to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "no space left on device (injected)",
                ),
            });
        }
        temp.write_all(new_text.as_bytes())
            .map_err(io(temp.path()))?;
        temp.as_file().sync_all().map_err(io(temp.path()))?;
        temp.as_file()
            .set_permissions(Permissions::from_mode(mode & 0o7777))
            .map_err(io(temp.path()))?;

        // Compare-and-swap: only replace the store if it is still what we read.
        let now = std::fs::read(&target).map_err(io(&target))?;
        if now != before {
            tracing::info!(store = %target.display(), "the store changed while writing; re-reading");
            continue;
        }
        let backup = match opts.backup_stamp {
            Some(stamp) => Some(write_backup(&target, &before, stamp).map_err(io(&target))?),
            None => None,
        };
        temp.persist(&target).map_err(|e| WriteError::Io {
            path: target.clone(),
            source: e.error,
        })?;
        if let Ok(dir_handle) = File::open(dir) {
            let _ = dir_handle.sync_all();
        }
        return Ok(Written { written, backup });
    }
    Err(WriteError::Busy(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(text: &str) -> AgentStore {
        parse_agent_store(Path::new("s.json"), text.to_string()).unwrap()
    }

    /// `text` with the given `avatar_url` edits (record index, new value).
    fn edited(text: &str, edits: &[(usize, &str)]) -> String {
        let edits = edits.iter().map(|(i, url)| (*i, url.to_string())).collect();
        edit_text(&store(text), &edits).unwrap()
    }

    #[test]
    fn a_backup_of_the_same_second_gets_a_new_name_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("managed-agents.json");
        let first = write_backup(&store, b"one", "20260101T000000Z").unwrap();
        let second = write_backup(&store, b"two", "20260101T000000Z").unwrap();
        assert_eq!(
            first.file_name().unwrap(),
            "managed-agents.json.reprofile-20260101T000000Z.bak"
        );
        assert_eq!(
            second.file_name().unwrap(),
            "managed-agents.json.reprofile-20260101T000000Z-2.bak"
        );
        assert_eq!(std::fs::read(&first).unwrap(), b"one");
        assert_eq!(std::fs::read(&second).unwrap(), b"two");
    }

    #[test]
    fn a_missing_avatar_is_inserted_as_one_new_line() {
        let text = "[\n  {\n    \"pubkey\": \"a\",\n    \"x\": {\"k\": [1, 2]}\n  },\n  {\n    \"pubkey\": \"b\"\n  }\n]\n";
        assert_eq!(
            edited(text, &[(0, "https://p/1.png")]),
            "[\n  {\n    \"avatar_url\": \"https://p/1.png\",\n    \"pubkey\": \"a\",\n    \"x\": {\"k\": [1, 2]}\n  },\n  {\n    \"pubkey\": \"b\"\n  }\n]\n"
        );
    }

    #[test]
    fn an_existing_avatar_is_replaced_in_place() {
        let text = "[{\"pubkey\":\"a\",\"avatar_url\":null,\"z\":1},{\"pubkey\":\"b\",\"avatar_url\":\"  \"}]";
        assert_eq!(
            edited(text, &[(0, "u\"1"), (1, "u2")]),
            "[{\"pubkey\":\"a\",\"avatar_url\":\"u\\\"1\",\"z\":1},{\"pubkey\":\"b\",\"avatar_url\":\"u2\"}]"
        );
    }

    #[test]
    fn definition_records_are_kept_byte_for_byte_around_an_edit() {
        let definition = "{\"pubkey\": \"\", \"slug\": \"p1\", \"avatar_url\": null, \"z\": [1]}";
        let text = format!("[{definition},{{\"pubkey\":\"a\",\"avatar_url\":null}},{definition}]");
        let store = parse_agent_store(Path::new("s.json"), text.clone()).unwrap();
        // The agent record is the file's record #1.
        let edits = HashMap::from([(1, "https://p/1.png".to_string())]);
        let new_text = edit_text(&store, &edits).unwrap();
        assert_eq!(
            new_text,
            format!("[{definition},{{\"pubkey\":\"a\",\"avatar_url\":\"https://p/1.png\"}},{definition}]")
        );
        // A definition's position is no agent record to edit.
        let at_definition = HashMap::from([(0, "https://x".to_string())]);
        assert!(edit_text(&store, &at_definition).is_err());
    }

    #[test]
    fn compact_and_empty_records_get_valid_json() {
        assert_eq!(
            edited("[{\"pubkey\":\"a\"},{}]", &[(0, "u"), (1, "v")]),
            "[{\"avatar_url\":\"u\",\"pubkey\":\"a\"},{\"avatar_url\": \"v\"}]"
        );
    }

    use proptest::prelude::*;

    fn record_strategy() -> impl Strategy<Value = serde_json::Value> {
        (
            "[a-f0-9]{8}",
            prop::collection::vec(
                (
                    "[a-z_\\\\\"é]{1,8}",
                    prop_oneof![
                        any::<i64>().prop_map(serde_json::Value::from),
                        "[ -~é\\n]{0,8}".prop_map(serde_json::Value::from),
                        Just(serde_json::Value::Null),
                        Just(serde_json::json!({"nested": [1, {"avatar_url": "inner"}]})),
                    ],
                ),
                0..6,
            ),
            prop_oneof![
                Just(None),
                Just(Some(serde_json::Value::Null)),
                Just(Some(serde_json::json!("  "))),
                Just(Some(serde_json::json!("https://x")))
            ],
        )
            .prop_map(|(pubkey, fields, avatar)| {
                let mut map = serde_json::Map::new();
                map.insert("pubkey".into(), pubkey.into());
                for (k, v) in fields {
                    if k != "pubkey" && k != "avatar_url" {
                        map.insert(k, v);
                    }
                }
                if let Some(avatar) = avatar {
                    map.insert("avatar_url".into(), avatar);
                }
                serde_json::Value::Object(map)
            })
    }

    proptest! {
        #[test]
        fn property_an_edit_changes_only_avatar_url(
            records in prop::collection::vec(record_strategy(), 1..6),
            pretty in any::<bool>(),
            chosen in prop::collection::vec(any::<bool>(), 6),
        ) {
            let value = serde_json::Value::Array(records.clone());
            let text = if pretty { serde_json::to_string_pretty(&value).unwrap() } else { value.to_string() };
            let s = store(&text);
            let edits: HashMap<usize, String> = (0..records.len())
                .filter(|i| chosen[*i])
                .map(|i| (i, format!("https://new/{i}.png")))
                .collect();
            let out = edit_text(&s, &edits).unwrap();
            let after: serde_json::Value = serde_json::from_str(&out).unwrap();
            let after = after.as_array().unwrap();
            prop_assert_eq!(after.len(), records.len());
            for (i, (before, now)) in records.iter().zip(after).enumerate() {
                let mut expected = before.as_object().unwrap().clone();
                let mut got = now.as_object().unwrap().clone();
                if let Some(url) = edits.get(&i) {
                    prop_assert_eq!(got.get("avatar_url"), Some(&serde_json::Value::from(url.as_str())));
                }
                expected.shift_remove("avatar_url");
                got.shift_remove("avatar_url");
                // Same keys, same values, same order.
                prop_assert_eq!(
                    expected.iter().collect::<Vec<_>>(),
                    got.iter().collect::<Vec<_>>()
                );
            }
            if edits.is_empty() {
                prop_assert_eq!(out, text);
            }
        }
    }

    #[test]
    fn keys_with_escapes_do_not_confuse_the_locator() {
        let text = r#"[{"we\"ird:": "a:\"b", "pubkey": "a"}]"#;
        let out = edited(text, &[(0, "u")]);
        assert_eq!(
            out,
            r#"[{"avatar_url": "u","we\"ird:": "a:\"b", "pubkey": "a"}]"#
        );
        let reparsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(reparsed[0]["avatar_url"], "u");
    }
}
