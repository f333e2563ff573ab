//! Hooks for reprofile's own tests, compiled only with the `test-hooks`
//! feature (the integration tests turn it on; a release build has none of
//! this): faults injected into apply's writes, and the embedded relay's
//! starter for any relay builder.

pub use crate::store::write::InjectedFault;

/// Runs an in-process relay from `builder` on a free loopback port (as the
/// demo's embedded relay is run).
pub async fn run_local_relay(
    builder: nostr_relay_builder::RelayBuilder,
) -> anyhow::Result<nostr_relay_builder::LocalRelay> {
    crate::cli::demo::run_local_relay(builder).await
}
