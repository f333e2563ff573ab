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
//! The memory also keeps the exact text of each event object read and proven
//! (as a relay sent it, between `["EVENT","<subscription>",` and `]`), with
//! its parse: when a relay sends the same bytes again, they are the same
//! event, already parsed and proven, so neither the parse nor the id's hash
//! is redone ([`Checker::authentic_text`]). Only byte-for-byte equal text is
//! taken from memory; anything else is parsed and checked.
//!
//! A process that plans and then applies (`run --once`, `apply` without a
//! plan file, `migrate`) has a memory of proofs only, for that plan and its
//! apply ([`VerifiedEvents::proofs_only`]): the apply reads again the events
//! the snapshot proved and the events it signed.
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

use crate::protocol::read::ReadObserver;

/// The proof remembered for one event id.
type Proven = (PublicKey, nostr::secp256k1::schnorr::Signature);

/// Events whose signature was checked, kept across a daemon's ticks (or,
/// proofs only, from one plan to its apply in the same process).
#[derive(Debug, Default)]
pub struct VerifiedEvents {
    inner: Mutex<Tables>,
    /// Signature checks skipped thanks to this memory (for measurements and
    /// tests).
    hits: AtomicU64,
    /// Signature checks made.
    checks: AtomicU64,
    /// Event texts taken from memory, not parsed nor hashed again.
    text_hits: AtomicU64,
    /// Only proofs are kept, no event texts ([`VerifiedEvents::proofs_only`]).
    proofs_only: bool,
}

/// What the memory holds: each entry with the last tick that made or used
/// it ([`VerifiedEvents::end_tick`] keeps those of the tick ending).
#[derive(Debug, Default)]
struct Tables {
    /// The tick under way (counted from 0).
    tick: u64,
    /// Proofs, each with the last tick it was made or used in.
    proofs: HashMap<EventId, (Proven, u64)>,
    /// Event texts proven, with their parse and the last tick each was
    /// proven or read again in.
    texts: HashMap<Box<str>, (Arc<Event>, u64), TailHashing>,
}

/// Event texts are hashed on their last [`TAIL`] bytes and their length only
/// (relays end an event with its signature's hex, 128 characters that differ
/// between any two events), and compared in full: a map lookup does not
/// hash the whole text every time. Texts sharing a tail only share a bucket.
#[derive(Debug, Default)]
struct TailHashing(std::collections::hash_map::RandomState);

/// How much of an event text's end is hashed.
const TAIL: usize = 64;

struct TailHasher(std::collections::hash_map::DefaultHasher);

impl std::hash::BuildHasher for TailHashing {
    type Hasher = TailHasher;
    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(&bytes[bytes.len().saturating_sub(TAIL)..]);
        self.0.write_usize(bytes.len());
    }
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

impl VerifiedEvents {
    /// An empty memory, to share between the connections of a daemon (for
    /// one plan and its apply, see [`VerifiedEvents::proofs_only`]).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// An empty memory of proofs only, for one plan and its apply in the
    /// same process: the apply reads again the events of the agents it
    /// republishes (preconditions) and the events it signed (read-back), and
    /// their signatures need no new check. No event text is kept: a daemon's
    /// texts save parsing on its next tick, which a single plan never has,
    /// and at 100,000 agents they would hold every event read until the
    /// apply ends.
    pub fn proofs_only() -> Arc<Self> {
        Arc::new(Self {
            proofs_only: true,
            ..Self::default()
        })
    }

    /// Ends a tick: only what was seen during it is kept for the next one,
    /// so the memory follows what the relays still serve.
    pub fn end_tick(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let tick = inner.tick;
        inner.proofs.retain(|_, (_, seen)| *seen == tick);
        inner.texts.retain(|_, (_, seen)| *seen == tick);
        inner.tick += 1;
    }

    /// How many proofs and event texts are remembered.
    pub fn len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.proofs.len() + inner.texts.len()
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

    /// Event texts taken from memory so far (neither parsed nor hashed).
    pub fn text_hits(&self) -> u64 {
        self.text_hits.load(Ordering::Relaxed)
    }

    /// The event parsed from exactly `text` and proven in this tick or the
    /// last, if any. Marks it seen.
    fn event_of_text(&self, text: &str) -> Option<Arc<Event>> {
        if self.proofs_only {
            return None;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let tick = inner.tick;
        let (event, seen) = inner.texts.get_mut(text)?;
        *seen = tick;
        Some(Arc::clone(event))
    }

    fn remember_text(&self, text: &str, event: &Arc<Event>) {
        if self.proofs_only {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let tick = inner.tick;
        inner.texts.insert(text.into(), (Arc::clone(event), tick));
    }

    /// True when `event`'s id, pubkey and signature were proven before (the
    /// caller still checks that the id hashes from the fields). Marks it seen.
    fn vouches_for(&self, event: &Event) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let tick = inner.tick;
        match inner.proofs.get_mut(&event.id) {
            Some(((pubkey, sig), seen)) if *pubkey == event.pubkey && *sig == event.sig => {
                *seen = tick;
                true
            }
            _ => false,
        }
    }

    fn remember(&self, event: &Event) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let tick = inner.tick;
        inner
            .proofs
            .insert(event.id, ((event.pubkey, event.sig), tick));
    }
}

/// Checks events: with a memory of the checks made (a daemon's, or one
/// process's plan and apply: [`VerifiedEvents::proofs_only`]), or without
/// one, every signature every time.
#[derive(Debug, Clone, Default)]
pub struct Checker {
    memory: Option<Arc<VerifiedEvents>>,
    observer: Option<Arc<dyn ReadObserver>>,
}

impl Checker {
    /// A checker that remembers in (and trusts) `memory`.
    pub fn with_memory(memory: Arc<VerifiedEvents>) -> Self {
        Self {
            memory: Some(memory),
            observer: None,
        }
    }

    /// This checker, also showing `observer` what the reads it checks for
    /// learn.
    pub fn with_observer(self, observer: Arc<dyn ReadObserver>) -> Self {
        Self {
            observer: Some(observer),
            ..self
        }
    }

    /// The observer of the reads this checker checks for, if any.
    pub(crate) fn observer(&self) -> Option<&Arc<dyn ReadObserver>> {
        self.observer.as_ref()
    }

    /// Signature checks its memory spared so far (0 without a memory).
    pub fn vouched(&self) -> u64 {
        self.memory.as_ref().map_or(0, |memory| memory.hits())
    }

    /// Shows the observer, if any, an event found authentic.
    pub(crate) fn observe(&self, event: &Event) {
        if let Some(observer) = &self.observer {
            observer.authentic(event);
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

    /// The event whose JSON object is exactly `text`, when it is authentic
    /// (`Ok(None)` when it is not; `Err` when `text` is not an event). With a
    /// memory, text proven in this tick or the last is taken from it, byte
    /// for byte, without parsing or hashing; other text is parsed and
    /// checked by [`Checker::authentic`], and remembered when authentic.
    pub fn authentic_text(&self, text: &str) -> Result<Option<Arc<Event>>, serde_json::Error> {
        self.authentic_text_keeping(text, |_| true)
    }

    /// [`Checker::authentic_text`], remembering the event (its text and its
    /// proof) only when `keep` says so: what the session reading it can
    /// take. Nothing else a relay sends stays in the memory.
    pub fn authentic_text_keeping(
        &self,
        text: &str,
        keep: impl FnOnce(&Event) -> bool,
    ) -> Result<Option<Arc<Event>>, serde_json::Error> {
        if let Some(memory) = &self.memory {
            if let Some(event) = memory.event_of_text(text) {
                memory.text_hits.fetch_add(1, Ordering::Relaxed);
                memory.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(event));
            }
        }
        let event: Event = serde_json::from_str(text)?;
        let keep = keep(&event);
        if !self.authentic_keeping(&event, keep) {
            return Ok(None);
        }
        let event = Arc::new(event);
        if let (Some(memory), true) = (&self.memory, keep) {
            memory.remember_text(text, &event);
        }
        Ok(Some(event))
    }

    /// True when `event`'s id is the hash of its fields and its signature is
    /// its pubkey's, checking the signature only when the memory cannot
    /// vouch for this exact id, pubkey and signature.
    pub fn authentic(&self, event: &Event) -> bool {
        self.authentic_keeping(event, true)
    }

    /// [`Checker::authentic`], remembering a new proof only when `keep`.
    pub fn authentic_keeping(&self, event: &Event, keep: bool) -> bool {
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
        if let (Some(memory), true) = (&self.memory, keep) {
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
    fn an_event_text_read_again_is_neither_parsed_nor_checked_again() {
        let event = profile(&Keys::generate(), "Ada", 1_000);
        let text = event.as_json();
        let memory = VerifiedEvents::new();
        let checker = Checker::with_memory(memory.clone());
        assert_eq!(
            checker.authentic_text(&text).expect("event"),
            Some(Arc::new(event.clone()))
        );
        memory.end_tick();
        for _ in 0..2 {
            assert_eq!(
                checker.authentic_text(&text).expect("event"),
                Some(Arc::new(event.clone()))
            );
        }
        assert_eq!((memory.checks(), memory.text_hits()), (1, 2));
        // Without a memory, every text is parsed and checked.
        let plain = Checker::default();
        assert_eq!(
            plain.authentic_text(&text).expect("event"),
            Some(Arc::new(event))
        );
        assert_eq!(memory.text_hits(), 2);
    }

    #[test]
    fn a_memory_of_proofs_only_spares_the_second_check_and_keeps_no_text() {
        let keys = Keys::generate();
        let event = profile(&keys, "Ada", 1_000);
        let text = event.as_json();
        let memory = VerifiedEvents::proofs_only();
        let checker = Checker::with_memory(memory.clone());
        for _ in 0..2 {
            assert_eq!(
                checker.authentic_text(&text).expect("event"),
                Some(Arc::new(event.clone()))
            );
        }
        // The text was parsed twice, its signature checked once.
        assert_eq!(
            (memory.checks(), memory.hits(), memory.text_hits()),
            (1, 1, 0)
        );
        assert_eq!((memory.len(), checker.vouched()), (1, 1));
        // A forged signature under the proven id is still refused.
        let forged = altered(&event, "sig", Value::String("00".repeat(64)));
        assert!(!checker.authentic(&forged));
        // An event signed here reads back without a check.
        let signed = profile(&keys, "Ada Lovelace", 1_001);
        checker.signed_here(&signed);
        assert!(checker.authentic(&signed));
        assert_eq!((memory.checks(), memory.hits()), (2, 2));
    }

    #[test]
    fn only_the_same_bytes_are_taken_from_memory_and_a_forged_text_is_refused() {
        let keys = Keys::generate();
        let event = profile(&keys, "Ada", 1_000);
        let text = event.as_json();
        let memory = VerifiedEvents::new();
        let checker = Checker::with_memory(memory.clone());
        assert!(checker.authentic_text(&text).expect("event").is_some());
        // The same event written otherwise: parsed, and proven by its id.
        let spaced = text.replacen(',', ", ", 1);
        assert_eq!(
            checker.authentic_text(&spaced).expect("event"),
            Some(Arc::new(event.clone()))
        );
        assert_eq!((memory.text_hits(), memory.hits()), (0, 1));
        // Other content under the same id and signature: the text ends as
        // the remembered one does (same hash bucket), and is refused.
        let forged = altered(&event, "content", json!(r#"{"name":"Eve"}"#)).as_json();
        assert!(forged.ends_with(&text[text.len() - TAIL..]));
        assert_eq!(checker.authentic_text(&forged).expect("an event"), None);
        // One byte of the signature changed: not remembered, and refused.
        let last = text.rfind(|c: char| c.is_ascii_hexdigit()).expect("hex");
        let flipped = if &text[last..=last] == "0" { "1" } else { "0" };
        let bad_sig = format!("{}{flipped}{}", &text[..last], &text[last + 1..]);
        assert_eq!(checker.authentic_text(&bad_sig).expect("an event"), None);
        assert_eq!(memory.text_hits(), 0);
        assert!(checker.authentic_text(r#"{"not":"an event"}"#).is_err());
    }

    #[test]
    fn the_memory_keeps_only_what_the_last_tick_saw() {
        let keys = Keys::generate();
        let memory = VerifiedEvents::new();
        let checker = Checker::with_memory(memory.clone());
        // A daemon whose profile changes every tick: one event per tick.
        for tick in 0..100 {
            assert!(checker.authentic(&profile(&keys, "Ada", 1_000 + tick)));
            let text = profile(&keys, "Bea", 1_000 + tick).as_json();
            assert!(checker.authentic_text(&text).expect("event").is_some());
            memory.end_tick();
            // Ada's proof; Bea's proof and text.
            assert_eq!(memory.len(), 3, "tick {tick}");
        }
        memory.end_tick();
        assert!(
            memory.is_empty(),
            "a tick that saw nothing forgets everything"
        );
    }
}
