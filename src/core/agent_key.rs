//! Rule A5, the agent's key: where its text is, that it parses and is the
//! key of the record's pubkey; and the NIP-OA auth tag the agent signs in
//! with.

use std::borrow::Cow;

use nostr::nips::nip19::FromBech32;
use nostr::{Keys, SecretKey};

use super::display::{short_pubkey, utc};
use super::known_keys::{KeyHash, KnownKeys};
use super::model::{AgentRecord, KeyOrigin, Policy};
use super::nip_oa;
use super::plan::{AuthTagSource, SkipReason};

/// The kind of a profile event.
const METADATA_KIND: u16 = 0;

/// Rule A5's derivation for `record`, as the planner remembers it: the hash
/// of its key text and the x-only pubkey that key derives. `None` when the
/// record has no key, or one that does not parse (the planner says why).
pub fn derive_key(record: &AgentRecord) -> Option<(KeyHash, [u8; 32])> {
    let text = secret_text(record).ok()?;
    let keys = parse_agent_key(record, text).ok()?;
    Some((KeyHash::of(text), keys.public_key().to_bytes()))
}

/// Rule A5: the record's key parses and is the key of its pubkey. Returns the
/// agent's keys (for signing at apply time), or the skip reason and why.
pub fn agent_keys(record: &AgentRecord) -> Result<Keys, (SkipReason, String)> {
    let keys = parse_agent_key(record, secret_text(record)?)?;
    let derived = keys.public_key();
    check_derived(record, &derived.to_bytes())?;
    Ok(keys)
}

/// Rule A5 as the planner runs it: the key's derivation is taken from
/// `known` when that holds the hash of this very key text, else derived
/// (and pushed on `learned`, for the caller to remember). The outcome is the
/// one [`agent_keys`] gives, key for key: only the same text has the same
/// hash.
pub fn check_agent_key(
    record: &AgentRecord,
    known: &KnownKeys,
    learned: &mut Vec<(KeyHash, [u8; 32])>,
) -> Result<(), (SkipReason, String)> {
    let text = secret_text(record)?;
    let hash = KeyHash::of(text);
    let derived = match known.get(&hash) {
        Some(derived) => *derived,
        None => {
            let derived = parse_agent_key(record, text)?.public_key().to_bytes();
            learned.push((hash, derived));
            derived
        }
    };
    check_derived(record, &derived)
}

/// The record's key text (trimmed), or rule A5's skip for a missing key:
/// `invalid_key` when it is in neither the keyring entry nor the record,
/// `key_unavailable` when the keyring could not be read (the key may be
/// there; the plan is then incomplete).
fn secret_text(record: &AgentRecord) -> Result<&str, (SkipReason, String)> {
    if let Some(text) = record
        .secret_key
        .as_ref()
        .map(|s| s.expose().trim())
        .filter(|text| !text.is_empty())
    {
        return Ok(text);
    }
    Err(match &record.key_origin {
        KeyOrigin::KeyringUnreadable(why) => (
            SkipReason::KeyUnavailable,
            format!(
                "the agent's key is not in the record and the OS keyring could not be read \
                 ({why}); unlock the keyring or run where it is reachable"
            ),
        ),
        KeyOrigin::Nowhere(entry) => (
            SkipReason::InvalidKey,
            format!(
                "no key: the keyring entry {entry} has no agent:{} and the record has no \
                 private_key_nsec; the agent's own key is needed to sign",
                short_pubkey(&record.pubkey)
            ),
        ),
        KeyOrigin::Inline | KeyOrigin::Keyring { .. } => (
            SkipReason::InvalidKey,
            "private_key_nsec is missing; the agent's own key is needed to sign".to_string(),
        ),
    })
}

/// Where the record's key was found, as messages name it.
fn key_place(record: &AgentRecord) -> Cow<'static, str> {
    match &record.key_origin {
        KeyOrigin::Keyring { entry, .. } => Cow::Owned(format!(
            "the key under agent:{} in the keyring entry {entry}",
            short_pubkey(&record.pubkey)
        )),
        _ => Cow::Borrowed("private_key_nsec"),
    }
}

/// The keys of a key text, or rule A5's skip for one that does not parse.
fn parse_agent_key(record: &AgentRecord, text: &str) -> Result<Keys, (SkipReason, String)> {
    SecretKey::from_bech32(text).map(Keys::new).map_err(|_| {
        (
            SkipReason::InvalidKey,
            format!("{} does not parse as a bech32 nsec key", key_place(record)),
        )
    })
}

/// Rule A5's last check: the pubkey the key derives (x-only, 32 bytes) is
/// the record's.
fn check_derived(record: &AgentRecord, derived: &[u8; 32]) -> Result<(), (SkipReason, String)> {
    let derived = hex::encode(derived);
    if derived != record.pubkey {
        return Err((
            SkipReason::KeyMismatch,
            format!(
                "{} is the key of {}, not of this pubkey; fix the record",
                key_place(record),
                short_pubkey(&derived)
            ),
        ));
    }
    Ok(())
}

/// Rule D4 for the record's own `auth_tag`: `None` when it has none; else the
/// tag when it is valid for a kind:0 dated `created_at`, or why it is not.
pub fn record_auth_tag(
    record: &AgentRecord,
    created_at: u64,
) -> Option<Result<Vec<String>, String>> {
    let text = record
        .auth_tag
        .as_deref()
        .filter(|t| !t.trim().is_empty())?;
    let checked = nip_oa::parse_tag_json(text)
        .and_then(|tag| nip_oa::check_for_event(&tag, &record.pubkey, METADATA_KIND, created_at));
    Some(checked.map(|tag| tag.to_tag()).map_err(|err| {
        format!(
            "auth_tag is not valid for a kind:0 dated {}: {err}",
            utc(created_at)
        )
    }))
}

/// Rule D4: the record's tag, else the existing event's valid tag, else none.
pub(super) fn choose_auth_tag(
    record: &AgentRecord,
    before: Option<&super::model::ExistingEvent>,
    created_at: u64,
    policy: &Policy,
) -> Result<(Vec<Vec<String>>, AuthTagSource), String> {
    match record_auth_tag(record, created_at) {
        Some(Ok(tag)) => return Ok((vec![tag], AuthTagSource::Record)),
        Some(Err(_)) if policy.publish_without_invalid_auth_tag => {
            return Ok((Vec::new(), AuthTagSource::DroppedInvalid))
        }
        Some(Err(why)) => return Err(why),
        None => {}
    }
    if let Some(event) = before {
        if let Ok(Some(tag)) =
            nip_oa::find_valid_in_event(&event.tags, &record.pubkey, METADATA_KIND, created_at)
        {
            return Ok((vec![tag.to_tag()], AuthTagSource::Relay));
        }
    }
    Ok((Vec::new(), AuthTagSource::None))
}
