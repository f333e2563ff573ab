//! The journal: one JSON line per action outcome, written as it happens.
//!
//! It lives next to its plan (`<plan>.journal.jsonl`) and is only appended
//! to, one whole line per write, so a run killed half-way leaves a true record
//! of what it did. Re-running apply on the same plan appends the rest.
//! No private key ever enters it.

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
    /// `applied`, `already_applied`, `stale` or `failed`.
    pub outcome: String,
    /// Why, for stale and failed outcomes (and notes for others).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// The published event's id, for republishes that were signed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub event_id: Option<String>,
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

/// Reads a journal's entries (lines that do not parse are skipped).
pub fn read(path: &Path) -> std::io::Result<Vec<Entry>> {
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
