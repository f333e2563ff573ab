//! The OS keyring, read only: the one entry where Buzz desktop keeps agent keys.
//!
//! Buzz desktop 0.4 and later keeps every key in one keyring entry (service
//! `buzz-desktop`, or `buzz-desktop-dev` for dev builds; username
//! `secrets`) whose secret is a JSON object: `"identity"` (the owner's key)
//! and `"agent:<pubkey>"` per agent. This module reads that entry through
//! the `keyring` crate at the app's version and with the app's backends
//! (Secret Service on Linux, the login keychain on macOS, the credential
//! manager on Windows), at most once per run (the daemon: once per tick), so
//! a macOS user sees one keychain prompt, not one per agent. It never writes
//! the keyring, keeps only the agents' keys (never the owner's), and never
//! puts a key in a message. Which key an agent uses is decided in
//! [`crate::core::keys`].

use std::sync::{Arc, Mutex};

use crate::core::keys::{attach_keys, needs_keyring, KeyringRead};
use crate::core::model::{AgentRecord, PlanMode};
use crate::store::discover::AppProfile;

/// The keyring entry's username, for every profile (`BLOB_KEY` in the app's
/// `secret_store.rs`).
pub const USERNAME: &str = "secrets";

/// The keyring service of an app build (`app_state_keyring.rs`).
pub fn service_of(profile: AppProfile) -> &'static str {
    match profile {
        AppProfile::Release => "buzz-desktop",
        AppProfile::Dev => "buzz-desktop-dev",
    }
}

/// Where agent keys that are not inline in the store come from: the keyring
/// entry of one service (or none, with `[buzz] keyring = false`), and what
/// reading it gave this run.
#[derive(Debug, Clone, Default)]
pub struct KeySource {
    service: Option<String>,
    /// The entry as read this run (shared by the config's clones, so it is
    /// read once); `None` until a store needs it.
    read: Arc<Mutex<Option<KeyringRead>>>,
}

impl KeySource {
    /// Keys from the keyring entry of `service`; `None`: inline keys only.
    pub fn new(service: Option<String>) -> Self {
        Self {
            service,
            read: Arc::default(),
        }
    }

    /// The keyring service read, when the keyring is used at all.
    pub fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }

    /// The entry as messages name it (`buzz-desktop/secrets`).
    pub fn entry_name(&self) -> Option<String> {
        self.service
            .as_deref()
            .map(|service| format!("{service}/{USERNAME}"))
    }

    /// Gives each record its key (see [`crate::core::keys::attach_keys`]),
    /// reading the keyring entry first when some record has no key of its
    /// own, the planner may sign (`mode`: `migrate` only backfills, so it
    /// never asks the keyring), and it was not read yet this run.
    pub fn attach(&self, records: &mut [AgentRecord], mode: PlanMode) {
        let read = match &self.service {
            Some(service) if mode == PlanMode::Full && needs_keyring(records) => {
                let mut cached = self.read.lock().unwrap_or_else(|e| e.into_inner());
                cached.get_or_insert_with(|| read_entry(service)).clone()
            }
            _ => KeyringRead::NotRead,
        };
        attach_keys(records, &read);
    }

    /// What reading the entry gave this run; `None` when it was not needed.
    pub fn last_read(&self) -> Option<KeyringRead> {
        self.read.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Drops what was read (and the keys with it): the daemon's next tick
    /// reads the entry again, so a key the app added since is found.
    pub fn forget(&self) {
        *self.read.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Reads the entry of `service` once. A missing entry is an empty read (no
/// agent key is there); any other failure is [`KeyringRead::Unreadable`],
/// said once on stderr with the backend's error.
fn read_entry(service: &str) -> KeyringRead {
    let entry = format!("{service}/{USERNAME}");
    let read = match secret_text(service) {
        Ok(Some(text)) => members(&text)
            .map(|members| KeyringRead::from_members(entry.clone(), members))
            .unwrap_or_else(|| KeyringRead::Unreadable {
                entry: entry.clone(),
                error: "its secret is not a JSON object of strings".to_string(),
            }),
        Ok(None) => KeyringRead::from_members(entry.clone(), []),
        Err(error) => KeyringRead::Unreadable {
            entry: entry.clone(),
            error,
        },
    };
    match &read {
        KeyringRead::Unreadable { error, .. } => tracing::warn!(
            "the OS keyring entry {entry} could not be read ({error}); agents whose key is only there are skipped as key_unavailable, the others go on with their inline keys"
        ),
        KeyringRead::Read { keys, .. } => {
            tracing::debug!(agent_keys = keys.len(), "read the OS keyring entry {entry}")
        }
        KeyringRead::NotRead => {}
    }
    read
}

/// The entry's members that are strings; `None` when the secret is not a
/// JSON object. Never says why in words taken from the text (a parser's
/// message could quote a key).
fn members(text: &str) -> Option<Vec<(String, String)>> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).ok()?;
    Some(
        object
            .into_iter()
            .filter_map(|(name, value)| match value {
                serde_json::Value::String(key) => Some((name, key)),
                _ => None,
            })
            .collect(),
    )
}

/// The entry's secret as text: `Ok(None)` when there is no such entry.
#[cfg(any(target_os = "linux", target_os = "macos", windows))]
fn secret_text(service: &str) -> Result<Option<String>, String> {
    let entry = keyring::Entry::new(service, USERNAME).map_err(|e| e.to_string())?;
    match entry.get_password() {
        Ok(text) => Ok(Some(text)),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(err) => Err(one_line(&err.to_string())),
    }
}

/// No keyring backend is built for this OS.
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn secret_text(_service: &str) -> Result<Option<String>, String> {
    Err("no OS keyring backend is built for this OS".to_string())
}

/// A backend's error on one line (D-Bus errors span several).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_follow_the_app_build() {
        assert_eq!(service_of(AppProfile::Release), "buzz-desktop");
        assert_eq!(service_of(AppProfile::Dev), "buzz-desktop-dev");
    }

    #[test]
    fn an_entry_that_is_not_an_object_is_refused_without_quoting_it() {
        assert_eq!(members("\"nsec1quoted\""), None);
        assert_eq!(members("{"), None);
        let kept = members(r#"{"identity":"a","agent:bb":"k","n":1}"#).unwrap();
        assert_eq!(kept.len(), 2);
    }
}
