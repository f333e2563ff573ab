//! The journal: one JSON line per action outcome, written as it happens.
//!
//! It lives next to its plan (`<plan>.journal.jsonl`) and is only appended
//! to, one whole line per write, so a run killed half-way leaves a true record
//! of what it did. Re-running apply on the same plan appends the rest.
//! No private key ever enters it.
//!
//! A republish has two lines: [`PUBLISHED`] as soon as the relay accepted
//! its event (its OK), then its outcome once the profile was read back. A
//! `published` line says the event went out, not that the action was
//! applied: [`read`] gives the outcome lines only, [`read_all`] every line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::apply::Outcome;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When (RFC 3339).
    pub at: String,
    /// The action's id in the plan.
    pub action: String,
    /// `backfill_avatar` or `republish_profile`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The agent's pubkey.
    pub agent: String,
    /// `applied`, `already_applied`, `stale` or `failed`; or [`PUBLISHED`]
    /// (sent, not confirmed yet).
    pub outcome: String,
    /// Why, for stale and failed outcomes (and notes for others).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// The published event's id, for republishes that were signed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub event_id: Option<String>,
}

/// The `outcome` of a republish's first line, written as the relay's OK
/// arrives: the relay accepted the event (`event_id`); not confirmed, not an
/// outcome. The action's outcome follows once the profile was read back; a
/// run that ended in between (a crash, a kill) leaves only this line, and
/// applying the plan again reads the relay and finishes the action
/// (`already_applied` when the event is there).
pub const PUBLISHED: &str = "published";

impl Entry {
    /// True for a [`PUBLISHED`] line (not an outcome).
    pub fn is_published(&self) -> bool {
        self.outcome == PUBLISHED
    }
}

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
}

/// The journal's path for a plan file.
pub fn journal_path(plan_path: &Path) -> PathBuf {
    let stem = plan_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plan".to_string());
    plan_path.with_file_name(format!("{stem}.journal.jsonl"))
}

impl Journal {
    /// Opens (appending) the journal of a plan file.
    pub fn open(plan_path: &Path) -> std::io::Result<Journal> {
        let path = journal_path(plan_path);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Journal { file, path })
    }

    /// Appends one line (a single write, so a line is never torn by a kill).
    pub fn record(&mut self, entry: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_string(entry).expect("an entry serializes");
        line.push('\n');
        self.file.write_all(line.as_bytes())
    }

    /// Flushes the journal to disk.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_all()
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads a journal's outcome lines: every line but the [`PUBLISHED`] ones
/// (and lines that do not parse), in order.
pub fn read(path: &Path) -> std::io::Result<Vec<Entry>> {
    let mut entries = read_all(path)?;
    entries.retain(|entry| !entry.is_published());
    Ok(entries)
}

/// Reads every line of a journal, [`PUBLISHED`] ones included (lines that do
/// not parse are skipped), in order.
pub fn read_all(path: &Path) -> std::io::Result<Vec<Entry>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// Counts outcomes by name.
pub fn count(entries: &[Entry], outcome: Outcome) -> usize {
    entries
        .iter()
        .filter(|e| e.outcome == outcome.as_str())
        .count()
}
