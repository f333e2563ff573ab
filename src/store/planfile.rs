//! The plan file: the JSON contract that other tools read, and its reading back.
//!
//! The file has its own serialization types (as ripgrep's JSON printer does),
//! so the core's types can change without changing the format. Format
//! version 1. The file carries a digest of its own content (everything but
//! `created_at`, `created_at_unix` and `digest`), so a hand-edited plan is
//! recognized, and two plans of the same world have the same digest; the two
//! timestamps must name the same second, so neither is changed alone. Writing is atomic (temp file
//! in the same folder, then rename). No private key ever enters a plan.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::model::AvatarField;
use crate::core::plan::{
    Action, AgentManaged, AuthTagSource, AvatarSource, BackfillAvatar, EventAfter, EventBefore,
    Plan, RepublishProfile, RepublishReason, Skip, SkipReason,
};
use sha2::{Digest, Sha256};

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// A plan file that cannot be used, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not JSON, or not a plan.
    #[error(
        "{path}: not a reprofile plan file ({problem}); pass a plan written by `reprofile plan`"
    )]
    NotAPlan {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A format version this build does not know.
    #[error("{path}: plan format_version {found} is not supported (this reprofile reads version {FORMAT_VERSION}); make a new plan with this version, or upgrade reprofile")]
    UnknownVersion {
        /// The file.
        path: PathBuf,
        /// What the file says.
        found: String,
    },
    /// `show` without a plan file, and no plan in the plans folder.
    #[error("no plan file in {dir}; make one with `reprofile plan`, or name one: `reprofile show PLANFILE`")]
    NoPlan {
        /// The plans folder.
        dir: PathBuf,
    },
    /// The content no longer matches its digest.
    #[error("{path}: the plan was changed after it was written (its digest or its two timestamps do not match its content); make a new plan with `reprofile plan` instead of editing one")]
    Edited {
        /// The file.
        path: PathBuf,
    },
}

/// Which store a plan was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreIdentity {
    /// The agent store's absolute path.
    pub path: String,
    /// SHA-256 of the store's bytes when planned.
    pub sha256: String,
    /// How many records it held.
    pub records: usize,
}

/// A plan with what is needed to review and apply it later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanDocument {
    /// When it was made (Unix seconds).
    pub created_at: u64,
    /// `plan` (sections A to D) or `migrate` (backfill only).
    pub kind: PlanKind,
    /// The store it was made from.
    pub store: StoreIdentity,
    /// The decisions.
    pub plan: Plan,
}

/// What a plan was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// Backfills and republishes.
    Reconcile,
    /// The one-shot migration: backfills only.
    Migrate,
}

impl PlanKind {
    /// What people call such a plan: `plan` or `migration plan`.
    pub fn title(self) -> &'static str {
        match self {
            PlanKind::Reconcile => "plan",
            PlanKind::Migrate => "migration plan",
        }
    }
}

// ---- file types ----
//
// They borrow from the plan when writing (a large plan is not copied to be
// serialized) and own their strings when reading (`'static`).

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlan<'a> {
    format_version: u64,
    created_at: String,
    created_at_unix: u64,
    tool: FileTool,
    kind: PlanKind,
    complete: bool,
    store: StoreIdentity,
    summary: FileSummary,
    actions: Vec<FileAction<'a>>,
    skipped: Vec<FileSkip<'a>>,
    unchanged: Cow<'a, [String]>,
    /// Rule C6's agents that own their differing profile (left out when
    /// none, so plans without it read and hash as before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    agent_managed: Vec<FileAgentManaged<'a>>,
    /// How many agents own their profile (rule C6); left out when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    agent_owned: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTool {
    name: String,
    version: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSummary {
    agents: usize,
    republish: usize,
    backfill: usize,
    unchanged: usize,
    skipped: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum FileAction<'a> {
    BackfillAvatar {
        id: String,
        agent: Cow<'a, str>,
        name: Cow<'a, str>,
        record_index: usize,
        source: Cow<'a, str>,
        avatar_url: Cow<'a, str>,
        precondition: BackfillPrecondition<'a>,
    },
    RepublishProfile {
        id: String,
        agent: Cow<'a, str>,
        name: Cow<'a, str>,
        relay: Cow<'a, str>,
        reasons: Vec<String>,
        picture: Cow<'a, str>,
        before: Option<FileBefore<'a>>,
        after: FileAfter<'a>,
        precondition: RepublishPrecondition<'a>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillPrecondition<'a> {
    /// The record's `avatar_url` when planned: null when null, the text when
    /// blank, and left out when the record had no such field. (Plans written
    /// before this distinction have null for both; apply treats them alike.)
    #[serde(
        default,
        deserialize_with = "present_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    avatar_url: Option<Option<Cow<'a, str>>>,
}

/// A field that is present reads as `Some` (`Some(None)` for null); a
/// missing one is `None` through `#[serde(default)]`.
fn present_or_null<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepublishPrecondition<'a> {
    /// The id of the newest kind:0 when planned; null when there was none.
    newest_event_id: Option<Cow<'a, str>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBefore<'a> {
    id: Cow<'a, str>,
    created_at: u64,
    content: Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAfter<'a> {
    content: Cow<'a, str>,
    tags: Cow<'a, [Vec<String>]>,
    auth_tag_source: Cow<'a, str>,
    created_at_must_exceed: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSkip<'a> {
    agent: Cow<'a, str>,
    name: Cow<'a, str>,
    record_index: usize,
    reason: Cow<'a, str>,
    detail: Cow<'a, str>,
    relay: Option<Cow<'a, str>>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAgentManaged<'a> {
    agent: Cow<'a, str>,
    name: Cow<'a, str>,
    relay: Cow<'a, str>,
    differences: Vec<String>,
}

/// RFC 3339 (UTC, seconds) for Unix seconds.
pub fn rfc3339(secs: u64) -> String {
    crate::core::rules::utc(secs)
}

/// The UTC time of Unix seconds as file names carry it: `20260101T000000Z`
/// (plan files, store backups).
pub fn file_stamp(secs: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX), 0)
        .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|| secs.to_string())
}

fn to_file(doc: &PlanDocument) -> FilePlan<'_> {
    let summary = doc.plan.summary();
    FilePlan {
        format_version: FORMAT_VERSION,
        created_at: rfc3339(doc.created_at),
        created_at_unix: doc.created_at,
        tool: FileTool {
            name: "reprofile".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
        kind: doc.kind,
        complete: doc.plan.complete,
        store: doc.store.clone(),
        summary: FileSummary {
            agents: summary.agents,
            republish: summary.republish,
            backfill: summary.backfill,
            unchanged: summary.unchanged,
            skipped: summary.skipped,
        },
        actions: doc.plan.actions.iter().map(action_to_file).collect(),
        skipped: doc
            .plan
            .skipped
            .iter()
            .map(|s| FileSkip {
                agent: Cow::Borrowed(&s.agent),
                name: Cow::Borrowed(&s.name),
                record_index: s.index,
                reason: Cow::Borrowed(s.reason.as_str()),
                detail: Cow::Borrowed(&s.detail),
                relay: s.relay.as_deref().map(Cow::Borrowed),
            })
            .collect(),
        unchanged: Cow::Borrowed(&doc.plan.unchanged),
        agent_managed: doc
            .plan
            .agent_managed
            .iter()
            .map(|m| FileAgentManaged {
                agent: Cow::Borrowed(&m.agent),
                name: Cow::Borrowed(&m.name),
                relay: Cow::Borrowed(&m.relay),
                differences: m
                    .differences
                    .iter()
                    .map(|d| d.as_str().to_string())
                    .collect(),
            })
            .collect(),
        agent_owned: doc.plan.agent_owned,
        digest: None,
    }
}

fn action_to_file(action: &Action) -> FileAction<'_> {
    let id = action.id();
    match action {
        Action::BackfillAvatar(b) => FileAction::BackfillAvatar {
            id,
            agent: Cow::Borrowed(&b.agent),
            name: Cow::Borrowed(&b.name),
            record_index: b.index,
            source: Cow::Borrowed(b.source.as_str()),
            avatar_url: Cow::Borrowed(&b.avatar_url),
            precondition: BackfillPrecondition {
                avatar_url: b
                    .before
                    .as_json_value()
                    .map(|value| value.map(Cow::Borrowed)),
            },
        },
        Action::RepublishProfile(r) => FileAction::RepublishProfile {
            id,
            agent: Cow::Borrowed(&r.agent),
            name: Cow::Borrowed(&r.name),
            relay: Cow::Borrowed(&r.relay),
            reasons: r.reasons.iter().map(|x| x.as_str().to_string()).collect(),
            picture: Cow::Borrowed(&r.picture),
            before: r.before.as_ref().map(|b| FileBefore {
                id: Cow::Borrowed(&b.id),
                created_at: b.created_at,
                content: Cow::Borrowed(&b.content),
            }),
            after: FileAfter {
                content: Cow::Borrowed(&r.after.content),
                tags: Cow::Borrowed(&r.after.tags),
                auth_tag_source: Cow::Borrowed(r.auth_tag_source.as_str()),
                created_at_must_exceed: r.after.created_at_must_exceed,
            },
            precondition: RepublishPrecondition {
                newest_event_id: r.before.as_ref().map(|b| Cow::Borrowed(b.id.as_str())),
            },
        },
    }
}

/// The digest of a plan's content: SHA-256 of its compact JSON with the
/// timestamps blanked (`created_at` "" and `created_at_unix` 0) and no
/// `digest`, so two plans of the same world have the same digest. The file is
/// serialized straight into the hash, with no intermediate tree.
fn content_digest(file: &mut FilePlan<'_>) -> String {
    let created_at = std::mem::take(&mut file.created_at);
    let created_at_unix = std::mem::take(&mut file.created_at_unix);
    let digest = file.digest.take();
    let mut hasher = HashWriter(Sha256::new());
    serde_json::to_writer(&mut hasher, &*file).expect("plan serializes");
    file.created_at = created_at;
    file.created_at_unix = created_at_unix;
    file.digest = digest;
    hex::encode(hasher.0.finalize())
}

/// Feeds serialized bytes into a hash.
struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The plan as pretty JSON (with its digest), and the digest.
pub fn to_json_and_digest(doc: &PlanDocument) -> (String, String) {
    let mut file = to_file(doc);
    let digest = content_digest(&mut file);
    file.digest = Some(digest.clone());
    let mut text = serde_json::to_string_pretty(&file).expect("plan serializes");
    text.push('\n');
    (text, digest)
}

/// The plan as pretty JSON, with its digest.
pub fn to_json(doc: &PlanDocument) -> String {
    to_json_and_digest(doc).0
}

/// Just the version of a plan file, read without building the rest.
#[derive(Deserialize)]
struct VersionProbe {
    format_version: Option<Value>,
}

/// Parses a plan file's text (`path` is for messages).
pub fn from_json(path: &Path, text: &str) -> Result<PlanDocument, PlanFileError> {
    let not_a_plan = |problem: String| PlanFileError::NotAPlan {
        path: path.to_path_buf(),
        problem,
    };
    let probe: VersionProbe =
        serde_json::from_str(text).map_err(|err| not_a_plan(err.to_string()))?;
    match probe.format_version {
        Some(Value::Number(n)) if n.as_u64() == Some(FORMAT_VERSION) => {}
        Some(other) => {
            return Err(PlanFileError::UnknownVersion {
                path: path.to_path_buf(),
                found: other.to_string(),
            })
        }
        None => return Err(not_a_plan("it has no format_version".to_string())),
    }
    let mut file: FilePlan<'static> =
        serde_json::from_str(text).map_err(|err| not_a_plan(err.to_string()))?;
    // The digest leaves the timestamps out (two plans of one world share it);
    // they are held to each other instead, so neither can be changed alone.
    if file.digest.clone() != Some(content_digest(&mut file))
        || file.created_at != rfc3339(file.created_at_unix)
    {
        return Err(PlanFileError::Edited {
            path: path.to_path_buf(),
        });
    }
    from_file(file).map_err(not_a_plan)
}

/// A pubkey or event id of a plan file: 64 lower-case hex digits, whatever
/// the digest says (a recomputed digest proves nothing).
fn check_hex(what: &str, text: &str) -> Result<(), String> {
    if crate::core::rules::is_pubkey_hex(text) {
        Ok(())
    } else {
        Err(format!(
            "{what} {:?} is not 64 lower-case hex digits",
            crate::core::rules::escape_controls(&text.chars().take(80).collect::<String>(), false)
        ))
    }
}

fn from_file(file: FilePlan<'_>) -> Result<PlanDocument, String> {
    for action in &file.actions {
        match action {
            FileAction::BackfillAvatar { agent, .. } => check_hex("an action's agent", agent)?,
            FileAction::RepublishProfile { agent, before, .. } => {
                check_hex("an action's agent", agent)?;
                if let Some(before) = before {
                    check_hex("an action's before.id", &before.id)?;
                }
            }
        }
    }
    for pubkey in file.unchanged.iter() {
        check_hex("an unchanged agent", pubkey)?;
    }
    let mut actions = Vec::with_capacity(file.actions.len());
    for action in file.actions {
        actions.push(match action {
            FileAction::BackfillAvatar {
                agent,
                name,
                record_index,
                source,
                avatar_url,
                precondition,
                ..
            } => Action::BackfillAvatar(BackfillAvatar {
                agent: agent.into_owned(),
                name: name.into_owned(),
                index: record_index,
                source: AvatarSource::parse(&source)
                    .ok_or_else(|| format!("unknown backfill source {source:?}"))?,
                avatar_url: avatar_url.into_owned(),
                before: match precondition.avatar_url {
                    None => AvatarField::Absent,
                    Some(None) => AvatarField::Null,
                    Some(Some(text)) => AvatarField::Text(text.into_owned()),
                },
            }),
            FileAction::RepublishProfile {
                agent,
                name,
                relay,
                reasons,
                picture,
                before,
                after,
                ..
            } => Action::RepublishProfile(RepublishProfile {
                agent: agent.into_owned(),
                name: name.into_owned(),
                picture: picture.into_owned(),
                relay: relay.into_owned(),
                reasons: reasons
                    .iter()
                    .map(|r| {
                        RepublishReason::parse(r).ok_or_else(|| format!("unknown reason {r:?}"))
                    })
                    .collect::<Result<_, _>>()?,
                before: before.map(|b| EventBefore {
                    id: b.id.into_owned(),
                    created_at: b.created_at,
                    content: b.content.into_owned(),
                }),
                auth_tag_source: AuthTagSource::parse(&after.auth_tag_source).ok_or_else(|| {
                    format!("unknown auth_tag_source {:?}", after.auth_tag_source)
                })?,
                after: EventAfter {
                    content: after.content.into_owned(),
                    tags: after.tags.into_owned(),
                    created_at_must_exceed: after.created_at_must_exceed,
                },
            }),
        });
    }
    let skipped = file
        .skipped
        .into_iter()
        .map(|s| {
            Ok(Skip {
                reason: SkipReason::parse(&s.reason)
                    .ok_or_else(|| format!("unknown skip reason {:?}", s.reason))?,
                agent: s.agent.into_owned(),
                name: s.name.into_owned(),
                index: s.record_index,
                detail: s.detail.into_owned(),
                relay: s.relay.map(Cow::into_owned),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let agent_managed = file
        .agent_managed
        .into_iter()
        .map(|m| {
            check_hex("an agent-managed agent", &m.agent)?;
            Ok(AgentManaged {
                agent: m.agent.into_owned(),
                name: m.name.into_owned(),
                relay: m.relay.into_owned(),
                differences: m
                    .differences
                    .iter()
                    .map(|d| {
                        RepublishReason::parse(d).ok_or_else(|| format!("unknown difference {d:?}"))
                    })
                    .collect::<Result<_, String>>()?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(PlanDocument {
        created_at: file.created_at_unix,
        kind: file.kind,
        store: file.store,
        plan: Plan {
            actions,
            skipped,
            unchanged: file.unchanged.into_owned(),
            complete: file.complete,
            agents: file.summary.agents,
            agent_managed,
            agent_owned: file.agent_owned,
        },
    })
}

/// A plan document for tests: made at 2026-11-18T11:06:40Z from `/s.json`
/// (one record), holding `actions` and nothing skipped.
#[cfg(test)]
pub(crate) fn test_document(actions: Vec<Action>) -> PlanDocument {
    PlanDocument {
        created_at: 1_795_000_000,
        kind: PlanKind::Reconcile,
        store: StoreIdentity {
            path: "/s.json".into(),
            sha256: "ab".repeat(32),
            records: 1,
        },
        plan: Plan {
            actions,
            skipped: vec![],
            unchanged: vec![],
            complete: true,
            agents: 1,
            agent_managed: vec![],
            agent_owned: 0,
        },
    }
}

/// Reads a plan file.
pub fn read(path: &Path) -> Result<PlanDocument, PlanFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlanFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_json(path, &text)
}

fn stem_with_digest(doc: &PlanDocument, digest: &str) -> String {
    let time = file_stamp(doc.created_at);
    let prefix = match doc.kind {
        PlanKind::Reconcile => "plan",
        PlanKind::Migrate => "migrate",
    };
    format!("{prefix}-{time}-{}", &digest[..8])
}

/// Writes `contents` to `path` atomically: a temp file in the same folder,
/// flushed and synced, then renamed over the target.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |out| out.write_all(contents))
}

/// Like [`write_atomic`], with the content streamed by `fill` into a buffered
/// writer (no copy of a large file in memory).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = tempfile::Builder::new()
        .prefix(".reprofile-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    // Large pieces: a plan lists every unchanged agent (10,000 agents: about
    // 750 KB), and each write of the buffer is a system call.
    let mut out = std::io::BufWriter::with_capacity(1 << 18, temp);
    fill(&mut out)?;
    let temp = out.into_inner().map_err(|err| err.into_error())?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|err| err.error)?;
    Ok(())
}

/// Writes the plan's JSON and its rendering into `dir` (created if needed) or,
/// with `out`, the JSON to that file and the rendering beside it. Returns the
/// JSON file's path. `render` makes the rendering; it runs on the pool while
/// the JSON is serialized, hashed and written (each is a pass over the whole
/// plan, tens of MB at 100,000 agents), and the rendering is written after
/// the JSON.
pub fn write(
    doc: &PlanDocument,
    dir: &Path,
    out: Option<&Path>,
    render: impl FnOnce() -> String + Send,
) -> Result<PathBuf, PlanFileError> {
    let (json_path, rendering) = rayon::join(|| write_json(doc, dir, out), render);
    let json_path = json_path?;
    let text_path = json_path.with_extension("txt");
    write_atomic(&text_path, rendering.as_bytes()).map_err(io_error(&text_path))?;
    Ok(json_path)
}

/// The JSON half of [`write`]: the file named by its digest in `dir`, or
/// `out`.
fn write_json(
    doc: &PlanDocument,
    dir: &Path,
    out: Option<&Path>,
) -> Result<PathBuf, PlanFileError> {
    let mut file = to_file(doc);
    let digest = content_digest(&mut file);
    file.digest = Some(digest.clone());
    let json_path = match out {
        Some(path) => path.to_path_buf(),
        None => dir.join(format!("{}.json", stem_with_digest(doc, &digest))),
    };
    if let Some(parent) = json_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    // Streamed: a 100,000-agent plan is tens of MB.
    write_atomic_with(&json_path, |out| {
        serde_json::to_writer_pretty(&mut *out, &file)?;
        out.write_all(b"\n")
    })
    .map_err(io_error(&json_path))?;
    Ok(json_path)
}

/// A write error at `path`, as [`PlanFileError::Io`].
fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PlanFileError {
    let path = path.to_path_buf();
    move |source| PlanFileError::Io { path, source }
}

/// True for the names of plan files this tool writes:
/// `plan-YYYYMMDDTHHMMSSZ-xxxxxxxx.json` (or `migrate-…`).
pub fn is_plan_file_name(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("plan-")
        .or_else(|| name.strip_prefix("migrate-"))
    else {
        return false;
    };
    let Some(stem) = rest.strip_suffix(".json") else {
        return false;
    };
    let bytes = stem.as_bytes();
    bytes.len() == 25
        && bytes[..8].iter().all(u8::is_ascii_digit)
        && bytes[8] == b'T'
        && bytes[9..15].iter().all(u8::is_ascii_digit)
        && bytes[15] == b'Z'
        && bytes[16] == b'-'
        && bytes[17..]
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The plan files this tool named in `dir` (see [`is_plan_file_name`]),
/// oldest first: by the time in their names, whatever the prefix, then (for
/// plans of one second) by when the file was written.
fn plan_files_oldest_first(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut plans: Vec<(String, std::time::SystemTime, String, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_plan_file_name(&name) {
                return None;
            }
            let time = name
                .split_once('-')
                .map(|(_, rest)| rest[..16].to_string())
                .unwrap_or_default();
            let written = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            Some((time, written, name, entry.path()))
        })
        .collect();
    plans.sort();
    Ok(plans
        .into_iter()
        .map(|(_, _, name, path)| (name, path))
        .collect())
}

/// The newest plan file in `dir` (by the time in its name; `plan-` and
/// `migrate-` alike), for `show` without an argument.
pub fn newest(dir: &Path) -> Result<PathBuf, PlanFileError> {
    let plans = match plan_files_oldest_first(dir) {
        Ok(plans) => plans,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(PlanFileError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    plans
        .into_iter()
        .next_back()
        .map(|(_, path)| path)
        .ok_or_else(|| PlanFileError::NoPlan {
            dir: dir.to_path_buf(),
        })
}

/// Retention: keeps the newest `keep` plan files in `dir` (by the time in
/// their names) and deletes older ones with their rendering and journal.
/// Files this tool did not name are never touched. Returns what was deleted.
pub fn prune(dir: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    let plans = plan_files_oldest_first(dir)?;
    let excess = plans.len().saturating_sub(keep);
    let mut deleted = Vec::new();
    for (_, path) in plans.into_iter().take(excess) {
        for sibling in [
            path.clone(),
            path.with_extension("txt"),
            crate::store::journal::journal_path(&path),
        ] {
            match std::fs::remove_file(&sibling) {
                Ok(()) => deleted.push(sibling),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_is_the_latest_plan_by_the_time_in_its_name_then_by_when_written() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            newest(&dir.path().join("none")),
            Err(PlanFileError::NoPlan { .. })
        ));
        assert!(matches!(
            newest(dir.path()),
            Err(PlanFileError::NoPlan { .. })
        ));
        for name in [
            "plan-20260102T000000Z-ffffffff.json",
            "migrate-20260103T000000Z-00000000.json",
            "notes.json",
        ] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let found = newest(dir.path()).unwrap();
        assert!(found.ends_with("migrate-20260103T000000Z-00000000.json"));
        // Two plans of one second: the one written last, whatever its digest.
        let written = std::time::SystemTime::now();
        for (name, age) in [("ffffffff", 2), ("11111111", 1)] {
            let path = dir
                .path()
                .join(format!("plan-20260104T000000Z-{name}.json"));
            std::fs::write(&path, "x").unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(written - std::time::Duration::from_secs(age))
                .unwrap();
        }
        let found = newest(dir.path()).unwrap();
        assert!(
            found.ends_with("plan-20260104T000000Z-11111111.json"),
            "{found:?}"
        );
    }

    #[test]
    fn retention_keeps_the_newest_plans_with_their_siblings() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "plan-20260101T000000Z-aaaaaaaa",
            "migrate-20260102T000000Z-bbbbbbbb",
            "plan-20260103T000000Z-cccccccc",
            "plan-20260104T000000Z-dddddddd",
        ];
        for name in names {
            for ext in [".json", ".txt", ".journal.jsonl"] {
                std::fs::write(dir.path().join(format!("{name}{ext}")), "x").unwrap();
            }
        }
        std::fs::write(dir.path().join("notes.json"), "mine").unwrap();
        std::fs::write(dir.path().join("README.md"), "mine").unwrap();
        let deleted = prune(dir.path(), 2).unwrap();
        assert_eq!(deleted.len(), 6);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "README.md",
                "notes.json",
                "plan-20260103T000000Z-cccccccc.journal.jsonl",
                "plan-20260103T000000Z-cccccccc.json",
                "plan-20260103T000000Z-cccccccc.txt",
                "plan-20260104T000000Z-dddddddd.journal.jsonl",
                "plan-20260104T000000Z-dddddddd.json",
                "plan-20260104T000000Z-dddddddd.txt",
            ]
        );
        assert!(prune(dir.path(), 2).unwrap().is_empty());
    }

    #[test]
    fn a_plan_whose_time_was_edited_is_refused() {
        let text = to_json(&sample());
        assert!(from_json(Path::new("p.json"), &text).is_ok());
        let unix = sample().created_at.to_string();
        let later = (sample().created_at + 3600).to_string();
        let time = rfc3339(sample().created_at);
        let later_time = rfc3339(sample().created_at + 3600);
        for edited in [
            text.replace(&unix, &later),
            text.replace(&time, &later_time),
        ] {
            assert_ne!(edited, text);
            let err = from_json(Path::new("p.json"), &edited).unwrap_err();
            assert!(matches!(err, PlanFileError::Edited { .. }), "{err}");
        }
        // Both moved together: a consistent time, as a plan made an hour later.
        let both = text.replace(&unix, &later).replace(&time, &later_time);
        assert_eq!(
            from_json(Path::new("p.json"), &both).unwrap().created_at,
            sample().created_at + 3600
        );
    }

    #[test]
    fn a_crafted_plan_with_a_64_byte_non_hex_pubkey_is_refused_and_never_panics() {
        // The case that once panicked `show`: 64 bytes, not 64 characters.
        let doc = crafted(vec!["é".repeat(32), "\x1b[31mred".to_owned()]);
        // Its digest is right (recomputed as anyone can): refused all the same.
        let err = from_json(Path::new("p.json"), &to_json(&doc)).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("is not 64 lower-case hex digits"),
            "{message}"
        );
        assert!(!message.contains('\u{1b}'), "{message}");
        // Rendered as it is (a plan value that never came from a file), it
        // is shown safely.
        let shown =
            crate::review::render::render(&doc, crate::review::render::Style { color: false });
        assert!(shown.contains("éééééééé…éééééééé"), "{shown}");
        assert!(!shown.contains('\u{1b}'), "{shown}");
    }

    #[test]
    fn a_plan_whose_event_id_is_not_hex_is_refused_whatever_its_digest() {
        use crate::core::plan::*;
        let mut doc = sample();
        for action in &mut doc.plan.actions {
            if let Action::RepublishProfile(r) = action {
                r.before = Some(EventBefore {
                    id: "not an id".into(),
                    created_at: 5,
                    content: "{}".into(),
                });
            }
        }
        let err = from_json(Path::new("p.json"), &to_json(&doc)).unwrap_err();
        assert!(err.to_string().contains("before.id"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn property_a_crafted_plan_with_any_unicode_is_read_and_shown_without_panic(
            texts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::any::<String>(),
                    // Control characters, escapes, quotes, wide characters.
                    "[\\x00-\\x1f\\x7f-\\u{9f}aé€😀\"\\\\<>{}\\[\\]:,]{0,70}",
                ],
                1..24,
            )
        ) {
            let doc = crafted(texts);
            let text = to_json(&doc);
            // Read it (it may be refused, never a panic), and show it.
            if let Ok(read) = from_json(Path::new("p.json"), &text) {
                for color in [false, true] {
                    let style = crate::review::render::Style { color };
                    let shown = crate::review::render::render(&read, style);
                    let summary = crate::review::render::render_summary(&read, style);
                    for out in [shown, summary] {
                        proptest::prop_assert!(
                            !out.contains('\u{1b}') || color,
                            "no escape sequence from the plan's text reaches the terminal"
                        );
                    }
                }
            }
        }

        #[test]
        fn property_parsing_any_bytes_as_a_plan_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let _ = from_json(Path::new("p.json"), &text);
        }

        #[test]
        fn property_a_damaged_plan_is_refused_never_a_panic(cut in 0usize..4000, flip in 0usize..4000, byte in 32u8..127) {
            let text = to_json(&sample());
            let mut bytes = text.into_bytes();
            let at = flip % bytes.len();
            let changed = bytes[at] != byte;
            bytes[at] = byte;
            let cut = cut.max(1).min(bytes.len());
            let truncated = cut < bytes.len();
            bytes.truncate(cut);
            let damaged = String::from_utf8(bytes).unwrap();
            let read = from_json(Path::new("p.json"), &damaged);
            if changed || truncated {
                // Whitespace between tokens is the only change a plan survives.
                if let Ok(doc) = read {
                    proptest::prop_assert_eq!(doc, sample());
                }
            }
        }
    }

    /// A plan whose every string is arbitrary text (any Unicode, control
    /// characters included); its digest is recomputed as anyone can.
    fn crafted(texts: Vec<String>) -> PlanDocument {
        use crate::core::plan::*;
        let mut texts = texts.into_iter().cycle();
        let mut next = || texts.next().unwrap_or_default();
        let mut doc = sample();
        doc.store.path = next();
        doc.store.sha256 = next();
        for action in &mut doc.plan.actions {
            match action {
                Action::BackfillAvatar(b) => {
                    b.agent = next();
                    b.name = next();
                    b.avatar_url = next();
                    b.before = crate::core::model::AvatarField::Text(next());
                }
                Action::RepublishProfile(r) => {
                    r.agent = next();
                    r.name = next();
                    r.picture = next();
                    r.relay = next();
                    r.before = Some(EventBefore {
                        id: next(),
                        created_at: 5,
                        content: next(),
                    });
                    r.after.content = next();
                    r.after.tags = vec![vec![next(), next()]];
                }
            }
        }
        for skip in &mut doc.plan.skipped {
            skip.agent = next();
            skip.name = next();
            skip.detail = next();
            skip.relay = Some(next());
        }
        doc.plan.unchanged = vec![next(), next()];
        doc
    }

    fn sample() -> PlanDocument {
        use crate::core::plan::*;
        let mut doc = test_document(vec![
            Action::BackfillAvatar(BackfillAvatar {
                agent: "a".repeat(64),
                name: "Ada".into(),
                index: 0,
                source: AvatarSource::Persona,
                avatar_url: "https://p/1.png".into(),
                before: crate::core::model::AvatarField::Null,
            }),
            Action::RepublishProfile(RepublishProfile {
                agent: "a".repeat(64),
                name: "Ada".into(),
                picture: "https://p/1.png".into(),
                relay: "ws://r".into(),
                reasons: vec![RepublishReason::PictureChanged],
                before: Some(EventBefore {
                    id: "e".repeat(64),
                    created_at: 5,
                    content: "{}".into(),
                }),
                after: EventAfter {
                    content: "{\"name\":\"Ada\"}".into(),
                    tags: vec![],
                    created_at_must_exceed: 5,
                },
                auth_tag_source: AuthTagSource::None,
            }),
        ]);
        doc.store.records = 3;
        doc.plan.agents = 3;
        doc.plan.skipped = vec![Skip {
            agent: "b".repeat(64),
            name: "Bob".into(),
            index: 1,
            reason: SkipReason::NoAvatar,
            detail: "none".into(),
            relay: None,
        }];
        doc.plan.unchanged = vec!["c".repeat(64)];
        doc
    }

    #[test]
    fn a_backfill_precondition_keeps_absent_null_and_blank_apart() {
        use crate::core::plan::Action;
        for (before, json) in [
            (AvatarField::Absent, "\"precondition\": {}"),
            (AvatarField::Null, "\"avatar_url\": null"),
            (AvatarField::Text(" ".into()), "\"avatar_url\": \" \""),
        ] {
            let mut doc = sample();
            if let Action::BackfillAvatar(b) = &mut doc.plan.actions[0] {
                b.before = before.clone();
            }
            let text = to_json(&doc);
            assert!(text.contains(json), "{text}");
            assert_eq!(from_json(Path::new("p.json"), &text).unwrap(), doc);
        }
    }

    #[test]
    fn a_plan_reads_back_as_written() {
        let doc = sample();
        assert_eq!(from_json(Path::new("p.json"), &to_json(&doc)).unwrap(), doc);
    }

    #[test]
    fn a_plan_file_is_named_by_the_stamp_of_its_time_and_its_digest() {
        assert_eq!(file_stamp(1_795_000_000), "20261118T110640Z");
        let name = format!(
            "{}.json",
            stem_with_digest(&sample(), &"0123abcd".repeat(8))
        );
        assert_eq!(name, "plan-20261118T110640Z-0123abcd.json");
        assert!(is_plan_file_name(&name), "{name}");
    }

    #[test]
    fn plan_file_names_are_recognized_strictly() {
        assert!(is_plan_file_name("plan-20261126T054535Z-13998dda.json"));
        assert!(is_plan_file_name("migrate-20261126T054535Z-13998dda.json"));
        assert!(!is_plan_file_name("plan-20261126T054535Z-13998dda.txt"));
        assert!(!is_plan_file_name("plan-review.json"));
        assert!(!is_plan_file_name(
            "plan-20261126T054535Z-13998dda.journal.jsonl"
        ));
    }
}
