//! Who signs in to read a relay that demands authentication (NIP-42).
//!
//! A Buzz relay serves kind:0s only to an authenticated connection, and
//! admits an agent only by the NIP-OA tag its AUTH event carries. Any agent of
//! the relay that can prove itself will do for reading everyone's profiles,
//! so the choice is about which ones are most likely to be let in:
//!
//! - the record's key must be the key of its pubkey (rule A5), and its
//!   `auth_tag` must verify for it (form and owner signature) with its
//!   `created_at` bounds holding at the AUTH's own `created_at` (`now`):
//!   today's Buzz relay enforces them there, strictly, and refuses a tag
//!   outside its window as a non-member (PR #7004); it does not check
//!   `kind=` on AUTH, so neither does this;
//! - a store may begin with records that cannot sign in (an old owner, a
//!   revoked tag), so agents whose tag names the owner most of that relay's
//!   agents share come first, then store order;
//! - when that owner is not a member, none of its agents gets in, so the
//!   next candidate is an agent of the next most common owner: one agent per
//!   owner, owners by how many agents they have, before a second agent of
//!   any owner;
//! - agents with no usable tag come last: an open relay lets in any key, a
//!   closed one none of them;
//! - a pubkey that appears twice in the store is not used (rule A2).
//!
//! The edge turns the result into identities, tries at most a few, one per
//! connection, and puts `[relay] auth_key_file` first when it is set.
//!
//! Pure: no I/O; parsing keys and verifying tags is all it does, and it stops
//! after `max` usable candidates so a large store costs a few checks.

use std::collections::HashMap;

use nostr::Keys;

use super::model::AgentRecord;
use super::nip_oa;
use super::rules::{agent_keys, PubkeyCopies};

/// An agent that can sign in: its record, keys and NIP-OA tag.
pub struct Candidate<'a> {
    /// The record.
    pub record: &'a AgentRecord,
    /// Its keys (checked against its pubkey).
    pub keys: Keys,
    /// Its NIP-OA tag, verified for its pubkey (`None`: it has none, and
    /// only a relay that lets in any key admits it).
    pub auth_tag: Option<Vec<String>>,
}

/// How many records may be checked (key derivation and tag signature) before
/// giving up on finding more candidates.
const MAX_CHECKS: usize = 64;

/// Up to `max` agents among `records` (one relay's records, in store order)
/// that can sign in with an AUTH dated `now`, best first.
pub fn read_candidates<'a>(
    records: &[&'a AgentRecord],
    max: usize,
    now: u64,
) -> Vec<Candidate<'a>> {
    let copies = PubkeyCopies::of(records.iter().copied());
    // The owner each tag names, read cheaply; verified only for the few tried.
    // Which records have one is noted by position: on a relay that admits
    // agents by their tag (Buzz), nearly every record has one, and looking
    // each untagged candidate up in `tagged` made this quadratic.
    let mut is_tagged = vec![false; records.len()];
    let mut tagged: Vec<(&AgentRecord, Vec<String>)> = Vec::new();
    for (position, record) in records.iter().enumerate() {
        if copies.count(&record.pubkey) != 1 {
            continue;
        }
        let Some(Ok(tag)) = record.auth_tag.as_deref().map(nip_oa::parse_tag_json) else {
            continue;
        };
        if tag.len() == 4 && tag[0] == "auth" {
            is_tagged[position] = true;
            tagged.push((*record, tag));
        }
    }
    let mut owners: HashMap<&str, usize> = HashMap::new();
    for (_, tag) in &tagged {
        *owners.entry(tag[1].as_str()).or_default() += 1;
    }
    // Rank of each agent among its owner's agents (0 for the first in store
    // order): one agent per owner first, popular owners first, store order.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let rank: Vec<usize> = tagged
        .iter()
        .map(|(_, tag)| {
            let count = seen.entry(tag[1].as_str()).or_default();
            *count += 1;
            *count - 1
        })
        .collect();
    let mut order: Vec<usize> = (0..tagged.len()).collect();
    order.sort_by_cached_key(|&i| {
        let owner = tagged[i].1[1].as_str();
        (rank[i], std::cmp::Reverse(owners[owner]), owner, i)
    });

    let mut chosen = Vec::new();
    let mut checks = 0;
    for i in order {
        checks += 1;
        if checks > MAX_CHECKS {
            break;
        }
        if chosen.len() >= max {
            break;
        }
        let (record, tag) = &tagged[i];
        if nip_oa::check_for_auth(tag, &record.pubkey, now).is_err() {
            continue;
        }
        let Ok(keys) = agent_keys(record) else {
            continue;
        };
        chosen.push(Candidate {
            record,
            keys,
            auth_tag: Some(tag.clone()),
        });
    }
    let untagged = records
        .iter()
        .zip(&is_tagged)
        .filter(|(record, &tagged)| !tagged && copies.count(&record.pubkey) == 1)
        .map(|(record, _)| record);
    for record in untagged {
        checks += 1;
        if chosen.len() >= max || checks > MAX_CHECKS {
            break;
        }
        if let Ok(keys) = agent_keys(record) {
            chosen.push(Candidate {
                record,
                keys,
                auth_tag: None,
            });
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use nostr::nips::nip19::ToBech32;

    use super::*;
    use crate::core::model::{AvatarField, SecretText};

    fn record(index: usize, keys: &Keys, tag: Option<Vec<String>>) -> AgentRecord {
        AgentRecord {
            index,
            pubkey: keys.public_key().to_hex(),
            name: format!("agent {index}"),
            secret_key: Some(SecretText::new(
                keys.secret_key().to_bech32().expect("nsec"),
            )),
            key_origin: Default::default(),
            relay_url: "ws://127.0.0.1:7777".into(),
            avatar_url: AvatarField::Null,
            persona_id: None,
            agent_command: None,
            auth_tag: tag.map(|t| serde_json::to_string(&t).expect("json")),
            field_errors: vec![],
        }
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_tag_outside_its_created_at_window_at_the_auth_is_passed_over() {
        let owner = Keys::generate();
        let tag_with = |keys: &Keys, conditions: &str| {
            Some(nip_oa::sign(
                &owner,
                &keys.public_key().to_hex(),
                conditions,
            ))
        };
        let (expired, future, current, kind_only) = (
            Keys::generate(),
            Keys::generate(),
            Keys::generate(),
            Keys::generate(),
        );
        let records = [
            record(
                0,
                &expired,
                tag_with(&expired, &format!("created_at<{NOW}")),
            ),
            record(1, &future, tag_with(&future, &format!("created_at>{NOW}"))),
            record(
                2,
                &current,
                tag_with(
                    &current,
                    &format!("created_at>{}&created_at<{}", NOW - 1, NOW + 1),
                ),
            ),
            // kind= is not checked on AUTH.
            record(3, &kind_only, tag_with(&kind_only, "kind=0")),
        ];
        let refs: Vec<&AgentRecord> = records.iter().collect();
        let chosen: Vec<usize> = read_candidates(&refs, 4, NOW)
            .iter()
            .map(|c| c.record.index)
            .collect();
        // Bounds are strict: created_at<NOW fails at NOW, as does >NOW.
        assert_eq!(chosen, [2, 3]);
        // An hour earlier, the first tag was still good and the second not yet.
        let earlier: Vec<usize> = read_candidates(&refs, 4, NOW - 3600)
            .iter()
            .map(|c| c.record.index)
            .collect();
        assert_eq!(earlier, [0, 3]);
    }

    fn tagged(index: usize, owner: &Keys) -> AgentRecord {
        let keys = Keys::generate();
        let tag = nip_oa::sign(owner, &keys.public_key().to_hex(), "");
        record(index, &keys, Some(tag))
    }

    #[test]
    fn the_most_common_owners_agent_comes_first_then_one_agent_per_owner() {
        let old_owner = Keys::generate();
        let owner = Keys::generate();
        let records = [
            tagged(0, &old_owner),
            tagged(1, &owner),
            tagged(2, &owner),
            tagged(3, &owner),
        ];
        let refs: Vec<&AgentRecord> = records.iter().collect();
        let chosen: Vec<usize> = read_candidates(&refs, 3, NOW)
            .iter()
            .map(|c| c.record.index)
            .collect();
        // If the common owner is not a member, the next try is another
        // owner's agent, not a second agent of the same owner.
        assert_eq!(chosen, vec![1, 0, 2]);
        let all: Vec<usize> = read_candidates(&refs, 10, NOW)
            .iter()
            .map(|c| c.record.index)
            .collect();
        assert_eq!(all, vec![1, 0, 2, 3]);
    }

    #[test]
    fn records_that_cannot_sign_in_are_passed_over() {
        let owner = Keys::generate();
        let no_tag = record(0, &Keys::generate(), None);
        let mut wrong_key = tagged(1, &owner);
        wrong_key.secret_key = Some(SecretText::new(
            Keys::generate().secret_key().to_bech32().expect("nsec"),
        ));
        // A tag signed for another agent does not verify for this one.
        let other = Keys::generate();
        let mut borrowed_tag = tagged(2, &owner);
        borrowed_tag.auth_tag = Some(
            serde_json::to_string(&nip_oa::sign(&owner, &other.public_key().to_hex(), ""))
                .expect("json"),
        );
        let duplicate = tagged(3, &owner);
        let duplicate_copy = AgentRecord {
            index: 4,
            ..duplicate.clone()
        };
        let good = tagged(5, &owner);
        let records = [
            no_tag,
            wrong_key,
            borrowed_tag,
            duplicate,
            duplicate_copy,
            good,
        ];
        let refs: Vec<&AgentRecord> = records.iter().collect();
        let chosen = read_candidates(&refs, 3, NOW);
        let indexes: Vec<usize> = chosen.iter().map(|c| c.record.index).collect();
        // The valid tagged agent first, then the untagged agent (an open
        // relay lets it in); the others cannot sign in at all.
        assert_eq!(indexes, vec![5, 0]);
        assert_eq!(chosen[0].keys.public_key().to_hex(), records[5].pubkey);
        nip_oa::verify(
            chosen[0].auth_tag.as_ref().expect("tag"),
            &records[5].pubkey,
        )
        .expect("valid tag");
        assert!(chosen[1].auth_tag.is_none());
    }
}
