//! Which events from relays are authentic, and what a daemon remembers of the
//! checks it already made.
//!
//! An event is authentic when its id is the hash of its fields and its
//! signature is its pubkey's over that id ([`Checker::authentic`]). The
//! signature check is the costly part (about 30 µs of secp256k1 each);
//! [`VerifiedEvents`] remembers, across a daemon's ticks, the id, pubkey and
//! signature of every event whose signature was checked, so an event that
//! comes back with the same id, pubkey and signature, and whose id still
//! hashes from its fields, needs no new signature check: the id commits to
//! the fields, and the signature was already proven for that id and pubkey.
//! An event id alone never vouches for anything (nostr-sdk 0.44's own cache
//! trusts a bare id, so a relay could send a forged event under a known id).
//!
//! Memory stays bounded however long the daemon runs: what survives a tick
//! is only what was seen during it ([`VerifiedEvents::end_tick`]). Nothing is
//! written to disk: a cache file could be edited to vouch for a forged event.
//!
//! What it must not do: decide anything about profiles, or do I/O.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nostr::{Event, EventId, PublicKey};

/// The proof remembered for one event id.
type Proven = (PublicKey, nostr::secp256k1::schnorr::Signature);

/// Events whose signature was checked, kept across a daemon's ticks.
#[derive(Debug, Default)]
pub struct VerifiedEvents {
    inner: Mutex<Generations>,
    /// Signature checks skipped thanks to this memory (for measurements and
    /// tests).
    hits: AtomicU64,
    /// Signature checks made.
    checks: AtomicU64,
}

#[derive(Debug, Default)]
struct Generations {
    /// Proven before this tick.
    known: HashMap<EventId, Proven>,
    /// Proven or used during this tick.
    seen: HashMap<EventId, Proven>,
}

impl VerifiedEvents {
    /// An empty memory, to share between the connections of a daemon.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Ends a tick: only what was seen during it is kept for the next one,
    /// so the memory follows what the relays still serve.
    pub fn end_tick(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.known = std::mem::take(&mut inner.seen);
    }

    /// How many events are remembered (both generations).
    pub fn len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.known.len() + inner.seen.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Signature checks skipped so far thanks to this memory.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Signature checks made so far by checkers using this memory.
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// True when `event`'s id, pubkey and signature were proven before (the
    /// caller still checks that the id hashes from the fields). Marks it seen.
    fn vouches_for(&self, event: &Event) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let proven = inner
            .seen
            .get(&event.id)
            .or_else(|| inner.known.get(&event.id))
            .copied();
        match proven {
            Some((pubkey, sig)) if pubkey == event.pubkey && sig == event.sig => {
                inner.seen.insert(event.id, (pubkey, sig));
                true
            }
            _ => false,
        }
    }

    fn remember(&self, event: &Event) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.seen.insert(event.id, (event.pubkey, event.sig));
    }
}

/// Checks events: with a daemon's memory, or (for one-shot commands) every
/// signature every time.
#[derive(Debug, Clone, Default)]
pub struct Checker {
    memory: Option<Arc<VerifiedEvents>>,
}

impl Checker {
    /// A checker that remembers in (and trusts) `memory`.
    pub fn with_memory(memory: Arc<VerifiedEvents>) -> Self {
        Self {
            memory: Some(memory),
        }
    }

    /// Remembers `event`, signed by this process, as checked (its signature
    /// was just made, with a key proven to be its pubkey's). Nothing without
    /// a memory.
    pub fn signed_here(&self, event: &Event) {
        if let Some(memory) = &self.memory {
            memory.remember(event);
        }
    }

    /// True when `event`'s id is the hash of its fields and its signature is
    /// its pubkey's, checking the signature only when the memory cannot
    /// vouch for this exact id, pubkey and signature.
    pub fn authentic(&self, event: &Event) -> bool {
        if !id_hashes(event) {
            return false;
        }
        if let Some(memory) = &self.memory {
            if memory.vouches_for(event) {
                memory.hits.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            memory.checks.fetch_add(1, Ordering::Relaxed);
        }
        if !event.verify_signature() {
            return false;
        }
        if let Some(memory) = &self.memory {
            memory.remember(event);
        }
        true
    }
}

/// True when `event`'s id is the SHA-256 of its NIP-01 serialization
/// `[0,<pubkey>,<created_at>,<kind>,<tags>,<content>]`: what
/// `Event::verify_id` checks, with the JSON written straight into the hash
/// (nostr builds a JSON tree, then a string, then hashes it).
pub fn id_hashes(event: &Event) -> bool {
    use sha2::Digest;
    struct Hashing(sha2::Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(sha2::Sha256::new());
    let fields = (
        0u8,
        &event.pubkey,
        &event.created_at,
        &event.kind,
        &event.tags,
        &event.content,
    );
    if serde_json::to_writer(&mut hashing, &fields).is_err() {
        return false;
    }
    hashing.0.finalize().as_slice() == event.id.as_bytes()
}

#[cfg(test)]
mod tests {
    use nostr::{EventBuilder, JsonUtil, Keys, Kind, Timestamp};
    use serde_json::{json, Value};

    use super::*;

    fn profile(keys: &Keys, name: &str, at: u64) -> Event {
        EventBuilder::new(Kind::Metadata, format!(r#"{{"name":"{name}"}}"#))
            .custom_created_at(Timestamp::from(at))
            .sign_with_keys(keys)
            .expect("sign")
    }

    /// `event` with one JSON field replaced, parsed back without checks.
    fn altered(event: &Event, field: &str, value: Value) -> Event {
        let mut raw: Value = serde_json::from_str(&event.as_json()).expect("json");
        raw[field] = value;
        Event::from_json(raw.to_string()).expect("still an event")
    }

    #[test]
    fn an_authentic_event_passes_and_a_forged_one_does_not_without_memory() {
        let keys = Keys::generate();
        let event = profile(&keys, "Ada", 1_000);
        let checker = Checker::default();
        assert!(checker.authentic(&event));
        assert!(!checker.authentic(&altered(&event, "content", json!(r#"{"name":"Eve"}"#))));
        let other = profile(&keys, "Other", 1_001);
        assert!(!checker.authentic(&altered(&event, "sig", json!(other.sig.to_string()))));
    }

    proptest::proptest! {
        /// The streamed id check agrees with nostr's on any content and tags,
        /// for events as signed and with any field changed.
        #[test]
        fn property_the_streamed_id_check_agrees_with_nostrs(
            content in "\\PC{0,40}",
            values in proptest::collection::vec("\\PC{0,12}", 0..4),
            at in 0u64..4_000_000_000,
            kind in 0u16..40_000,
            other in "\\PC{0,8}",
        ) {
            let keys = Keys::generate();
            let tags: Vec<nostr::Tag> = values
                .iter()
                .map(|v| nostr::Tag::parse(["t", v.as_str()]).expect("tag"))
                .collect();
            let event = EventBuilder::new(Kind::from(kind), content.clone())
                .tags(tags)
                .custom_created_at(Timestamp::from(at))
                .sign_with_keys(&keys)
                .expect("sign");
            proptest::prop_assert!(id_hashes(&event));
            for (field, value) in [
                ("content", json!(format!("{content}{other}x"))),
                ("created_at", json!(at + 1)),
                ("kind", json!((kind + 1) % 40_000)),
                ("tags", json!([["t", other]])),
            ] {
                let changed = altered(&event, field, value);
                proptest::prop_assert_eq!(id_hashes(&changed), changed.verify_id(), "{}", field);
            }
        }
    }

    #[test]
    fn a_remembered_event_needs_no_new_signature_check_in_a_later_tick() {
        let keys = Keys::generate();
        let event = profile(&keys, "Ada", 1_000);
        let memory = VerifiedEvents::new();
        let checker = Checker::with_memory(memory.clone());
        assert!(checker.authentic(&event));
        assert_eq!((memory.checks(), memory.hits()), (1, 0));
        memory.end_tick();
        assert!(checker.authentic(&event));
        assert_eq!((memory.checks(), memory.hits()), (1, 1));
    }

    #[test]
    fn a_known_id_never_vouches_for_other_content_pubkey_or_signature() {
        let keys = Keys::generate();
        let event = profile(&keys, "Ada", 1_000);
        let memory = VerifiedEvents::new();
        let checker = Checker::with_memory(memory.clone());
        assert!(checker.authentic(&event));
        // The same id with other content: the id no longer hashes.
        let content = altered(&event, "content", json!(r#"{"name":"Eve"}"#));
        assert!(!checker.authentic(&content));
        // The same id and fields with another (invalid) signature.
        let other = profile(&keys, "Other", 1_001);
        let signature = altered(&event, "sig", json!(other.sig.to_string()));
        assert!(!checker.authentic(&signature));
        // Another pubkey under the same id does not hash either.
        let stranger = Keys::generate().public_key().to_hex();
        assert!(!checker.authentic(&altered(&event, "pubkey", json!(stranger))));
        assert_eq!(memory.hits(), 0, "nothing forged was vouched for");
    }

    #[test]
    fn an_event_signed_here_reads_back_without_a_signature_check() {
        let keys = Keys::generate();
        let event = profile(&keys, "Ada", 1_000);
        let memory = VerifiedEvents::new();
        let checker = Checker::with_memory(memory.clone());
        checker.signed_here(&event);
        assert!(checker.authentic(&event));
        assert_eq!((memory.checks(), memory.hits()), (0, 1));
        // Without a memory, nothing is remembered.
        let plain = Checker::default();
        plain.signed_here(&event);
        assert!(plain.authentic(&event));
        assert_eq!((memory.checks(), memory.hits()), (0, 1));
    }

    #[test]
    fn the_memory_keeps_only_what_the_last_tick_saw() {
        let keys = Keys::generate();
        let memory = VerifiedEvents::new();
        let checker = Checker::with_memory(memory.clone());
        // A daemon whose profile changes every tick: one event per tick.
        for tick in 0..100 {
            assert!(checker.authentic(&profile(&keys, "Ada", 1_000 + tick)));
            memory.end_tick();
            assert_eq!(memory.len(), 1, "tick {tick}");
        }
        memory.end_tick();
        assert!(
            memory.is_empty(),
            "a tick that saw nothing forgets everything"
        );
    }
}
