//! Writing the agent store: one field changed, every other byte kept, and
//! never another program's change lost.
//!
//! Only `avatar_url` of the records concerned changes. The text edit keeps
//! other records, unknown fields, key order and formatting: an existing
//! `avatar_url` value is replaced in place; a missing one is inserted as the
//! record's first field on its own line (indented like its neighbours), so the
//! file differs from before only in `avatar_url` lines. Which records to
//! change is decided by the caller (the core's preconditions), against the
//! store as it is read for the write.
//!
//! The desktop app rewrites the whole store (a temp file renamed over it)
//! under a lock of its own that reprofile cannot share. So one attempt of the
//! write goes:
//!
//! 1. read the store B (a symlink's target: the link stays a link), keeping
//!    the file open, parse it, ask the caller, make the new text N;
//! 2. write the backup of B, fsync it and the folder;
//! 3. write N to a temp file beside the store (created 0600), give it the
//!    store's owner and group (a `sudo` apply leaves the app's store the
//!    app's user's) and permission bits, fsync it;
//! 4. check that the store is still the file read, with B's bytes; then
//!    exchange the temp file and the store in one step (`renameat2` with
//!    `RENAME_EXCHANGE` on Linux, `renamex_np` with `RENAME_SWAP` on macOS)
//!    and check what the exchange displaced: the file read, still B → done
//!    (the displaced file is removed, the folder fsynced). Anything else is a
//!    version another program wrote since step 1: the exchange is undone,
//!    which puts that version back (or a newer one, should one arrive
//!    meanwhile), and the attempt starts over from it. After
//!    `MAX_ATTEMPTS` (5) attempts, the write gives up: nothing written, no
//!    backup left.
//!
//! What that guarantees:
//!
//! - With the exchange (Linux, macOS; file systems that can exchange: ext4,
//!   XFS, Btrfs, tmpfs, APFS, ...), a version of the store another program
//!   puts in place by rename is never lost, whenever it lands: the check of
//!   what was replaced and the replacement are one step. Two limits: a
//!   program that writes the store in place (truncating and writing the same
//!   file) after the exchange writes into the displaced file, which is
//!   removed, so that write is lost (the app renames); and between an
//!   exchange that found a newer store and its undo (two system calls), the
//!   store path shows reprofile's version made from the older store, so a
//!   program that reads the store in that instant and writes from what it
//!   read drops its own newer change.
//! - Without it (other systems; file systems that cannot exchange, such as
//!   NFS or FAT, where a warning is logged), the new file is renamed over the
//!   store after the same check: a version another program puts in place in
//!   the instant between that check and the rename (no disk write lies
//!   between them) is replaced, unnoticed.
//! - Either way, the app can overwrite reprofile's write afterwards, from a
//!   store it read before: apply reads the store again at its end and
//!   reports such a backfill stale.

use std::collections::HashMap;
use std::fs::{File, Metadata, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::value::RawValue;
use tempfile::NamedTempFile;

use crate::core::json::{json_string, ObjectEntries};
use crate::core::model::AvatarField;
use crate::core::rules::{InStore, PubkeyCopies};
use crate::store::agents::{beside_store, parse_agent_store, AgentStore};

#[cfg(any(test, feature = "test-hooks"))]
mod fault;
#[cfg(any(test, feature = "test-hooks"))]
use fault::second_writers;
#[cfg(any(test, feature = "test-hooks"))]
pub use fault::InjectedFault;

/// How often the read-edit-write cycle is retried when the store changes
/// under it.
const MAX_ATTEMPTS: usize = 5;

/// How many exchanges undoing one may take: one, and one more for each newer
/// version of the store another program puts in place meanwhile.
const MAX_UNDO_EXCHANGES: usize = 8;

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
    #[error("the agent store {0} kept changing while it was being written, so nothing was written; try again when the app is idle")]
    Busy(PathBuf),
    /// Another program replaced the store during the write, and putting its
    /// version back failed.
    #[error("another program replaced the agent store {store} while it was being written, and putting that program's version back failed ({source}); its version is kept at {kept}: check the store against it")]
    Undo {
        /// The store.
        store: PathBuf,
        /// Where the other program's version is kept.
        kept: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
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
/// start, with the owner and group of `owner` (the store's metadata) when
/// given, and fsyncs it. Returns its path. A backup is never overwritten:
/// when one of the same second exists (two applies that write within a
/// second), the name gets `-2`, `-3`, ... A backup that could not be written
/// whole is removed.
pub fn write_backup(
    store_target: &Path,
    bytes: &[u8],
    stamp: &str,
    owner: Option<&Metadata>,
) -> std::io::Result<PathBuf> {
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
                let written = owner
                    .map_or(Ok(()), |owner| keep_owner(&file, owner))
                    .and_then(|()| file.write_all(bytes))
                    .and_then(|()| file.sync_all());
                if let Err(err) = written {
                    let _ = std::fs::remove_file(&path);
                    return Err(err);
                }
                return Ok(path);
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && attempt < 1000 => {
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Where a store write is, for the second writer of the test hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    /// The backup and the new file are written and synced.
    AfterBackup,
    /// The store is about to be replaced.
    BeforeReplace,
    /// An exchange that undoes the replacement is about to happen.
    BeforeUndo,
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

/// An I/O error on `path`, as a [`WriteError`].
fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError {
    let path = path.to_path_buf();
    move |source| WriteError::Io { path, source }
}

/// One store write's fixed parts.
struct Ctx<'a> {
    /// The store's resolved target.
    target: &'a Path,
    /// Its folder.
    dir: &'a Path,
    #[cfg(any(test, feature = "test-hooks"))]
    fault: InjectedFault,
}

impl Ctx<'_> {
    /// The write is at `point`: the test hooks' second writer may write.
    fn reached(&self, point: Point) {
        #[cfg(any(test, feature = "test-hooks"))]
        if self.fault.writes_at(point) {
            let taken = second_writers().remove(self.target);
            let Some(mut write) = taken else {
                panic!("no second writer is set for {}", self.target.display());
            };
            write();
            second_writers()
                .entry(self.target.to_path_buf())
                .or_insert(write);
        }
        #[cfg(not(any(test, feature = "test-hooks")))]
        let _ = point;
    }
}

/// A file's identity: its device and inode numbers. Only compared while the
/// file is held open, so that no other file can have taken the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    fn of_file(file: &File) -> std::io::Result<Self> {
        file.metadata().map(|meta| Self::of(&meta))
    }
}

/// The store as one attempt read it.
struct ReadStore {
    /// Its bytes.
    bytes: Vec<u8>,
    /// Its metadata: identity, owner, permission bits.
    meta: Metadata,
    /// The file read, held open for the attempt.
    _file: File,
}

impl ReadStore {
    fn read(path: &Path) -> std::io::Result<Self> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut bytes)?;
        Ok(Self {
            bytes,
            meta,
            _file: file,
        })
    }

    /// Whether `path` is still the file read, with the bytes read.
    fn is_at(&self, path: &Path) -> std::io::Result<bool> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        if FileId::of(&meta) != FileId::of(&self.meta) || meta.len() != self.bytes.len() as u64 {
            return Ok(false);
        }
        let mut now = Vec::with_capacity(self.bytes.len());
        file.read_to_end(&mut now)?;
        Ok(now == self.bytes)
    }
}

/// An attempt's backup: removed unless the attempt replaced the store (the
/// store it copies was then not changed by this write).
struct Backup(Option<PathBuf>);

impl Backup {
    /// The attempt replaced the store: the backup stays.
    fn keep(mut self) -> Option<PathBuf> {
        self.0.take()
    }
}

impl Drop for Backup {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Fsyncs a folder, so that a name made or replaced in it stays after a
/// crash. A file system that cannot fsync a folder (it answers
/// `InvalidInput` or `Unsupported`) is let be.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    match File::open(dir)?.sync_all() {
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::Unsupported
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Gives `file` the store's owner and group when it has others (an apply
/// run with `sudo` must leave the app's store the app's user's). When that is
/// refused (only root may give a file away), the write stops: a store its
/// owner could no longer read would be worse than a backfill not made.
fn keep_owner(file: &File, store: &Metadata) -> std::io::Result<()> {
    let now = file.metadata()?;
    if now.uid() == store.uid() && now.gid() == store.gid() {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(store.uid()), Some(store.gid())).map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!(
                "cannot give a file beside the store the store's owner {}:{} ({err})",
                store.uid(),
                store.gid()
            ),
        )
    })
}

/// Step 3: the new text in a temp file beside the store, created 0600 (no
/// one else can read it meanwhile), with the store's owner, group and
/// permission bits, synced.
fn new_store_file(
    ctx: &Ctx<'_>,
    text: &str,
    read: &ReadStore,
) -> Result<NamedTempFile, WriteError> {
    let mut temp = tempfile::Builder::new()
        .prefix(".reprofile-store-")
        .suffix(".tmp")
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(ctx.dir)
        .map_err(io_error(ctx.dir))?;
    #[cfg(any(test, feature = "test-hooks"))]
    if ctx.fault == InjectedFault::DiskFull {
        return Err(WriteError::Io {
            path: temp.path().to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "no space left on device (injected)",
            ),
        });
    }
    temp.write_all(text.as_bytes())
        .map_err(io_error(temp.path()))?;
    keep_owner(temp.as_file(), &read.meta).map_err(io_error(ctx.target))?;
    // After the owner: a change of owner clears set-id bits.
    temp.as_file()
        .set_permissions(Permissions::from_mode(read.meta.mode() & 0o7777))
        .map_err(io_error(temp.path()))?;
    temp.as_file().sync_all().map_err(io_error(temp.path()))?;
    Ok(temp)
}

/// How the store is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replace {
    /// Exchanged with the new file in one step, then checked.
    Exchange,
    /// Checked, then the new file renamed over it.
    CompareThenRename,
}

impl Replace {
    /// The best this system offers (a file system that cannot exchange is
    /// found out at the first exchange).
    fn native() -> Self {
        if cfg!(any(target_os = "linux", target_vendor = "apple")) {
            Self::Exchange
        } else {
            Self::CompareThenRename
        }
    }
}

/// Swaps the files at `a` and `b` in one step. `ErrorKind::Unsupported` (and
/// nothing changed) where the system or the file system cannot.
#[cfg(any(target_os = "linux", target_vendor = "apple"))]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both are NUL-terminated paths that live through the call.
    #[cfg(target_os = "linux")]
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    // SAFETY: as above.
    #[cfg(target_vendor = "apple")]
    let rc = unsafe { libc::renamex_np(a.as_ptr(), b.as_ptr(), libc::RENAME_SWAP) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    // EINVAL, ENOTSUP: a file system that cannot exchange (NFS, FAT, ...);
    // ENOSYS: a kernel without the call (Linux before 3.15, a seccomp filter).
    let cannot = [libc::EINVAL, libc::ENOTSUP, libc::EOPNOTSUPP, libc::ENOSYS];
    match err.raw_os_error() {
        Some(code) if cannot.contains(&code) => {
            Err(std::io::Error::new(std::io::ErrorKind::Unsupported, err))
        }
        _ => Err(err),
    }
}

/// Swaps the files at `a` and `b` in one step: not on this system.
#[cfg(not(any(target_os = "linux", target_vendor = "apple")))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "this system cannot exchange two files in one step",
    ))
}

/// How an attempt's replacement ended.
enum Replaced {
    /// The store holds the new text.
    Done,
    /// Another program changed the store since it was read; it holds that
    /// program's version.
    StoreChanged,
}

/// Step 4: replaces the store with `temp` if it is still what was read.
fn replace(
    ctx: &Ctx<'_>,
    temp: NamedTempFile,
    read: &ReadStore,
    how: &mut Replace,
) -> Result<Replaced, WriteError> {
    let ours = FileId::of_file(temp.as_file()).map_err(io_error(temp.path()))?;
    // A change made while the backup and the new file were written shows
    // here, before the store path ever shows the new file.
    if !read.is_at(ctx.target).map_err(io_error(ctx.target))? {
        return Ok(Replaced::StoreChanged);
    }
    ctx.reached(Point::BeforeReplace);
    if *how == Replace::Exchange {
        match exchange(temp.path(), ctx.target) {
            Ok(()) => return exchanged(ctx, temp, read, ours),
            Err(err) if err.kind() == std::io::ErrorKind::Unsupported => {
                tracing::warn!(
                    store = %ctx.target.display(),
                    error = %err,
                    "cannot exchange two files in one step here: the store is renamed over after a check, \
                     which cannot see a change another program makes between the two"
                );
                *how = Replace::CompareThenRename;
            }
            Err(err) => return Err(io_error(ctx.target)(err)),
        }
    }
    temp.persist(ctx.target).map_err(|e| WriteError::Io {
        path: ctx.target.to_path_buf(),
        source: e.error,
    })?;
    Ok(Replaced::Done)
}

/// After the exchange: the store path holds the new file (`ours`), and
/// `temp`'s path what the store was an instant before.
fn exchanged(
    ctx: &Ctx<'_>,
    temp: NamedTempFile,
    read: &ReadStore,
    ours: FileId,
) -> Result<Replaced, WriteError> {
    let checked = read.is_at(temp.path());
    if let Ok(true) = checked {
        // The store was still what was read: the old file goes.
        let old = temp.path().to_path_buf();
        if let Err(err) = temp.close() {
            tracing::warn!(file = %old.display(), error = %err, "cannot remove the store's old file");
        }
        return Ok(Replaced::Done);
    }
    // Another program replaced (or rewrote) the store since it was read: its
    // version goes back.
    match undo_exchange(ctx, temp.path(), ours) {
        Ok(()) => {
            // `temp`'s path holds ours, or a version the other program's newest
            // replaced: removed as `temp` drops.
            checked.map_err(io_error(ctx.target))?;
            Ok(Replaced::StoreChanged)
        }
        Err(source) => {
            let kept = match temp.into_temp_path().keep() {
                Ok(path) => path,
                Err(e) => e.path.to_path_buf(),
            };
            Err(WriteError::Undo {
                store: ctx.target.to_path_buf(),
                kept,
                source,
            })
        }
    }
}

/// Undoes an exchange that displaced another program's version of the store
/// to `aside`, putting ours (`ours`) at the store path: exchanges again. When
/// yet another version replaced ours at the store path meanwhile, that
/// exchange brings it aside instead: it is the newest, so it is exchanged
/// back, and so on. Ends with the newest version the other program put in
/// place at the store path, and at `aside` ours or a version that one
/// replaced. Files are told apart by inode while held open.
fn undo_exchange(ctx: &Ctx<'_>, aside: &Path, ours: FileId) -> std::io::Result<()> {
    let mut held = Vec::with_capacity(2);
    let mut hold = |path: &Path| -> std::io::Result<FileId> {
        let file = File::open(path)?;
        let id = FileId::of_file(&file)?;
        held.push(file);
        Ok(id)
    };
    // What the store path holds if nobody replaced it since our last exchange.
    let mut at_store = ours;
    let mut at_aside = hold(aside)?;
    for _ in 0..MAX_UNDO_EXCHANGES {
        ctx.reached(Point::BeforeUndo);
        exchange(aside, ctx.target)?;
        let now_aside = hold(aside)?;
        if now_aside == at_store {
            return Ok(());
        }
        // A newer version had replaced `at_store` and is aside now; the
        // store path holds the older `at_aside`.
        at_store = at_aside;
        at_aside = now_aside;
    }
    Err(std::io::Error::other(format!(
        "it was replaced again at each of {MAX_UNDO_EXCHANGES} exchanges"
    )))
}

/// Re-reads the store, asks `decide` about each edit against the record as it
/// is now, writes the chosen edits atomically, and returns what was written.
/// `decide` gets the current `avatar_url` when exactly one record holds the
/// pubkey (only such a record is written), or how many do. When nothing is
/// chosen, nothing is written. The store is replaced only if no other
/// program changed it since it was read, with the limits the module's
/// documentation gives; otherwise all starts over from the new store.
pub fn write_avatars(
    store_path: &Path,
    edits: &[AvatarEdit],
    decide: impl FnMut(&AvatarEdit, InStore<&AvatarField>) -> EditDecision,
    opts: WriteOptions<'_>,
) -> Result<Written, WriteError> {
    write_avatars_by(store_path, edits, decide, opts, Replace::native())
}

/// [`write_avatars`], replacing the store as `how` says (while it can).
fn write_avatars_by(
    store_path: &Path,
    edits: &[AvatarEdit],
    mut decide: impl FnMut(&AvatarEdit, InStore<&AvatarField>) -> EditDecision,
    opts: WriteOptions<'_>,
    mut how: Replace,
) -> Result<Written, WriteError> {
    let target = resolve_target(store_path).map_err(io_error(store_path))?;
    let dir = target.parent().unwrap_or(Path::new("."));
    let ctx = Ctx {
        target: &target,
        dir,
        #[cfg(any(test, feature = "test-hooks"))]
        fault: opts.fault,
    };
    for _ in 0..MAX_ATTEMPTS {
        // 1. Read, decide, edit.
        let read = ReadStore::read(&target).map_err(io_error(&target))?;
        let text = String::from_utf8(read.bytes.clone())
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

        // 2. The backup of what was read, on disk before anything is replaced.
        let backup = Backup(match opts.backup_stamp {
            Some(stamp) => Some(
                write_backup(&target, &read.bytes, stamp, Some(&read.meta))
                    .map_err(io_error(&target))?,
            ),
            None => None,
        });
        if backup.0.is_some() {
            sync_dir(dir).map_err(io_error(dir))?;
        }
        // 3. The new file.
        let temp = new_store_file(&ctx, &new_text, &read)?;
        ctx.reached(Point::AfterBackup);
        // 4. The replacement, only of the store read.
        match replace(&ctx, temp, &read, &mut how)? {
            Replaced::Done => {
                if let Err(err) = sync_dir(dir) {
                    tracing::warn!(folder = %dir.display(), error = %err, "cannot fsync the store's folder");
                }
                return Ok(Written {
                    written,
                    backup: backup.keep(),
                });
            }
            Replaced::StoreChanged => {
                tracing::info!(store = %target.display(), "the store changed while writing; re-reading");
            }
        }
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
        let first = write_backup(&store, b"one", "20260101T000000Z", None).unwrap();
        let second = write_backup(&store, b"two", "20260101T000000Z", None).unwrap();
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

    /// Store writes beside a second writer (a real `sh` process), by the
    /// exchange and by compare-then-rename. The end-to-end cases, through
    /// apply, are in `tests/it/store_race.rs`.
    mod beside_a_second_writer {
        use super::*;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        /// A store of agent "a" and `others`, each a record with an unknown
        /// field, as the app pretty-prints it.
        fn version(others: &[&str]) -> String {
            let records: Vec<serde_json::Value> = std::iter::once("a")
                .chain(others.iter().copied())
                .map(|pubkey| serde_json::json!({"pubkey": pubkey, "unknown": {"kept": [pubkey]}}))
                .collect();
            serde_json::to_string_pretty(&records).unwrap()
        }

        /// `text` with agent "a"'s avatar written as the write writes it.
        fn with_avatar(text: &str) -> String {
            let edits = HashMap::from([(0, "https://new/a.png".to_string())]);
            edit_text(&store(text), &edits).unwrap()
        }

        /// Another process puts `text` in place: a temp file renamed over
        /// the store.
        fn replace_by_rename(store: &Path, text: &str) {
            let mut child = std::process::Command::new("sh")
                .args(["-c", r#"cat > "$1.tmp" && mv -f "$1.tmp" "$1""#, "sh"])
                .arg(store)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success());
        }

        /// A store in a temp folder holding `text`, mode 0600.
        fn store_file(text: &str) -> (tempfile::TempDir, PathBuf) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("managed-agents.json");
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
            (dir, path)
        }

        /// A second writer that puts `versions[n]` in place at its `n`th call
        /// (and nothing after the last), counting its calls.
        fn writes(store: &Path, versions: Vec<String>) -> Arc<AtomicUsize> {
            let calls = Arc::new(AtomicUsize::new(0));
            let (counted, path) = (calls.clone(), store.to_path_buf());
            InjectedFault::set_second_writer(store, move || {
                if let Some(text) = versions.get(counted.fetch_add(1, Ordering::SeqCst)) {
                    replace_by_rename(&path, text);
                }
            });
            calls
        }

        /// Writes agent "a"'s avatar, with a backup.
        fn write(store: &Path, fault: InjectedFault, how: Replace) -> Result<Written, WriteError> {
            let edits = [AvatarEdit {
                pubkey: "a".to_string(),
                avatar_url: "https://new/a.png".to_string(),
            }];
            let opts = WriteOptions {
                backup_stamp: Some("20260101T000000Z"),
                fault,
            };
            write_avatars_by(store, &edits, |_, _| EditDecision::Write, opts, how)
        }

        /// The names in `dir` but the store's.
        fn others_in(dir: &Path) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name != "managed-agents.json")
                .collect();
            names.sort();
            names
        }

        #[test]
        fn newer_versions_arriving_during_the_undo_end_with_the_newest_in_place() {
            let (dir, path) = store_file(&version(&[]));
            let newest = version(&["b", "c", "d"]);
            // Before the exchange, then before the undo's first and second
            // exchanges: each a newer version of the one before.
            let versions = vec![version(&["b"]), version(&["b", "c"]), newest.clone()];
            let calls = writes(&path, versions);
            let written = write(
                &path,
                InjectedFault::SecondWriterAroundExchange,
                Replace::Exchange,
            )
            .unwrap();
            assert_eq!(written.written, vec!["a".to_string()]);
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                with_avatar(&newest)
            );
            // Before the exchange; before each of three undo exchanges (the
            // third finds nobody wrote since the second); before the second
            // attempt's exchange.
            assert_eq!(calls.load(Ordering::SeqCst), 5);
            let backup = written.backup.unwrap();
            assert_eq!(std::fs::read_to_string(&backup).unwrap(), newest);
            assert_eq!(
                others_in(dir.path()),
                vec![backup.file_name().unwrap().to_string_lossy().into_owned()],
                "no temp file left, one backup"
            );
        }

        #[test]
        fn an_undo_that_never_settles_keeps_the_newest_version_and_says_where() {
            let (dir, path) = store_file(&version(&[]));
            let versions: Vec<String> = (1..=MAX_UNDO_EXCHANGES + 1)
                .map(|n| version(&vec!["b"; n]))
                .collect();
            let newest = versions.last().unwrap().clone();
            let before_newest = versions[versions.len() - 2].clone();
            writes(&path, versions);
            let err = write(
                &path,
                InjectedFault::SecondWriterAroundExchange,
                Replace::Exchange,
            )
            .unwrap_err();
            let WriteError::Undo { store, kept, .. } = &err else {
                panic!("{err}");
            };
            assert_eq!(store, &resolve_target(&path).unwrap());
            assert_eq!(std::fs::read_to_string(kept).unwrap(), newest);
            assert_eq!(std::fs::read_to_string(&path).unwrap(), before_newest);
            assert!(
                err.to_string().contains(&kept.display().to_string()),
                "{err}"
            );
            assert_eq!(others_in(dir.path()).len(), 1, "the kept file, no backup");
        }

        #[test]
        fn without_the_exchange_a_change_before_the_check_is_kept() {
            let (_dir, path) = store_file(&version(&[]));
            let theirs = version(&["b"]);
            let calls = writes(&path, vec![theirs.clone()]);
            write(
                &path,
                InjectedFault::SecondWriterAfterBackup,
                Replace::CompareThenRename,
            )
            .unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 2);
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                with_avatar(&theirs)
            );
        }

        /// The narrower guarantee of compare-then-rename, as documented: a
        /// version put in place between the check and the rename is lost.
        #[test]
        fn without_the_exchange_a_change_between_check_and_rename_is_lost_as_documented() {
            let original = version(&[]);
            let (_dir, path) = store_file(&original);
            writes(&path, vec![version(&["b"])]);
            write(
                &path,
                InjectedFault::SecondWriterBeforeReplace,
                Replace::CompareThenRename,
            )
            .unwrap();
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                with_avatar(&original)
            );
        }

        #[test]
        fn the_exchange_keeps_a_change_between_check_and_replacement() {
            let (_dir, path) = store_file(&version(&[]));
            let theirs = version(&["b"]);
            writes(&path, vec![theirs.clone()]);
            write(
                &path,
                InjectedFault::SecondWriterBeforeReplace,
                Replace::Exchange,
            )
            .unwrap();
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                with_avatar(&theirs)
            );
        }

        #[test]
        fn the_store_s_permission_bits_are_kept() {
            let (_dir, path) = store_file(&version(&[]));
            std::fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
            for how in [Replace::Exchange, Replace::CompareThenRename] {
                let written = write(&path, InjectedFault::None, how).unwrap();
                assert_eq!(written.written, vec!["a".to_string()]);
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o7777, 0o640, "{how:?}");
                let backup = std::fs::metadata(written.backup.unwrap()).unwrap();
                assert_eq!(backup.permissions().mode() & 0o7777, 0o600);
            }
        }
    }
}
