//! The test-only fault apply itself injects (with the `test-hooks` feature):
//! the desktop app rewriting the store just after apply's backfill. The
//! faults of the store write are the store's ([`crate::store::write`]).

use std::path::Path;

/// The fault [`crate::store::write::InjectedFault::AppRewritesStoreAfterBackfill`]: the store
/// rewritten with `bytes` as the desktop app writes it (`storage.rs`
/// `atomic_write_json`): `<store>.json.tmp` beside it, renamed over it.
pub(super) fn rewrite_as_the_app_does(target: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temp = target.with_extension("json.tmp");
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, target)?;
    Ok(())
}
