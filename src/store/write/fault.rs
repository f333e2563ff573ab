//! The store write's test hooks (only with the tests or the `test-hooks`
//! feature, which only the tests turn on): a failure injected into the write
//! path, and the second writer that writes the store at a chosen point of a
//! write.

use std::path::{Path, PathBuf};

use super::{resolve_target, Point};

/// Hooks for tests: a failure injected into the write path (only with the
/// `test-hooks` feature, which only the tests turn on).
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
    /// The second writer set with [`InjectedFault::set_second_writer`] writes
    /// once the backup and the new file are written and synced, before the
    /// store is checked (where the write used to spend its time between
    /// check and rename).
    SecondWriterAfterBackup,
    /// The second writer writes immediately before the store is replaced,
    /// after every check made before the replacement: before the exchange,
    /// or before the rename where there is no exchange.
    SecondWriterBeforeReplace,
    /// The second writer writes immediately before the exchange and, when the
    /// exchange is undone, immediately before each exchange that undoes it.
    SecondWriterAroundExchange,
}

/// What a second writer does.
type SecondWriter = Box<dyn FnMut() + Send>;

/// The second writers, by store (its resolved target).
type SecondWriters = std::collections::BTreeMap<PathBuf, SecondWriter>;

static SECOND_WRITERS: std::sync::Mutex<SecondWriters> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

pub(super) fn second_writers() -> std::sync::MutexGuard<'static, SecondWriters> {
    SECOND_WRITERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl InjectedFault {
    /// Sets the second writer of the store at `store` (a symlink is
    /// followed) for the `SecondWriter…` faults: `write` runs on the writing
    /// thread each time the write reaches the fault's point, and the write
    /// goes on when it returns. It is meant to have another process write the
    /// store, and to wait for it; it decides itself on which calls to do so.
    pub fn set_second_writer(store: &Path, write: impl FnMut() + Send + 'static) {
        let target = resolve_target(store).unwrap_or_else(|_| store.to_path_buf());
        second_writers().insert(target, Box::new(write));
    }

    /// Whether the second writer writes at `point`.
    pub(super) fn writes_at(self, point: Point) -> bool {
        matches!(
            (self, point),
            (Self::SecondWriterAfterBackup, Point::AfterBackup)
                | (Self::SecondWriterBeforeReplace, Point::BeforeReplace)
                | (
                    Self::SecondWriterAroundExchange,
                    Point::BeforeReplace | Point::BeforeUndo
                )
        )
    }
}
