//! Rule A5's key derivations, remembered by a hash of the key's text.
//!
//! Deriving a record's pubkey from its `private_key_nsec` (rule A5) is a
//! secp256k1 multiplication, about 16 µs. A daemon plans the same store tick
//! after tick, so it hands the planner what it derived before
//! ([`KnownKeys`]) and keeps what the planner derived anew. This module owns
//! that map as plain data: it does no I/O, keeps no clock, and is never
//! written anywhere (a cache on disk could be edited to vouch for a key that
//! does not derive its pubkey).
//!
//! What it must not do: hold a key. An entry is keyed by the SHA-256 of the
//! key's text exactly as the planner parses it (trimmed), and holds the
//! pubkey that text derives; it never holds the text, and neither the hash
//! nor the text is ever printed ([`KeyHash`]'s `Debug` is redacted). A
//! different text, even of the same key, is a different entry, so an entry
//! for key K can only ever answer for K.

use std::collections::{HashMap, HashSet};
use std::fmt;

use sha2::{Digest, Sha256};

use super::model::AgentRecord;

/// SHA-256 of a secret key's text as the planner parses it (trimmed). Its
/// `Debug` shows nothing of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// The hash of `secret_text` (already trimmed by the caller).
    pub fn of(secret_text: &str) -> Self {
        Self(Sha256::digest(secret_text.as_bytes()).into())
    }

    /// The hash of the record's key text, as rule A5 reads it; `None` when
    /// the record has no key.
    pub fn of_record(record: &AgentRecord) -> Option<Self> {
        record
            .secret_key
            .as_ref()
            .map(|s| s.expose().trim())
            .filter(|text| !text.is_empty())
            .map(Self::of)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(<redacted>)")
    }
}

/// Key hash to the x-only pubkey (32 bytes) that key derives: derivations
/// the planner made, for the planner to trust again.
#[derive(Debug, Clone, Default)]
pub struct KnownKeys {
    derived: HashMap<KeyHash, [u8; 32]>,
}

impl KnownKeys {
    /// How many derivations are known.
    pub fn len(&self) -> usize {
        self.derived.len()
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.derived.is_empty()
    }

    /// The pubkey the key of `hash` derives, when known.
    pub fn get(&self, hash: &KeyHash) -> Option<&[u8; 32]> {
        self.derived.get(hash)
    }

    /// Remembers that the key of `hash` derives `pubkey`.
    pub fn insert(&mut self, hash: KeyHash, pubkey: [u8; 32]) {
        self.derived.insert(hash, pubkey);
    }

    /// Adds every derivation of `other`.
    pub fn extend(&mut self, other: KnownKeys) {
        self.derived.extend(other.derived);
    }

    /// Keeps only the derivations of keys in `used` (the key hashes of the
    /// store as it is now), so the map never outgrows the store.
    pub fn retain_used(&mut self, used: &HashSet<KeyHash>) {
        self.derived.retain(|hash, _| used.contains(hash));
    }
}

impl FromIterator<(KeyHash, [u8; 32])> for KnownKeys {
    fn from_iter<I: IntoIterator<Item = (KeyHash, [u8; 32])>>(iter: I) -> Self {
        Self {
            derived: iter.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_hash_is_the_sha256_of_the_trimmed_text_and_never_shows_it() {
        let hash = KeyHash::of("nsec1example");
        assert_eq!(
            hash.0.to_vec(),
            Sha256::digest(b"nsec1example").to_vec(),
            "the hash is SHA-256 of the text"
        );
        assert_ne!(hash, KeyHash::of("nsec1exampla"));
        let shown = format!("{hash:?} {:?}", KnownKeys::from_iter([(hash, [7; 32])]));
        assert!(!shown.contains("nsec"), "{shown}");
        assert!(!shown.contains(&hex::encode(hash.0)), "{shown}");
    }

    #[test]
    fn retain_used_keeps_only_the_hashes_given() {
        let (a, b) = (KeyHash::of("a"), KeyHash::of("b"));
        let mut known: KnownKeys = [(a, [1; 32]), (b, [2; 32])].into_iter().collect();
        known.retain_used(&HashSet::from([b]));
        assert_eq!(known.len(), 1);
        assert_eq!(known.get(&a), None);
        assert_eq!(known.get(&b), Some(&[2; 32]));
    }
}
