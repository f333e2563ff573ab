//! Rule A, the records themselves: which records share a pubkey (A2) and
//! every problem of a record, as the planner and `validate` both see them.

use std::collections::HashMap;

use super::model::AgentRecord;
use super::parse::{is_pubkey_hex, parse_relay_url, RelayUrlError};
use super::plan::SkipReason;

/// Rule A2, counted in one place for the whole tool: which records hold each
/// pubkey. A pubkey on more than one record identifies none of them: the
/// planner skips every copy, `validate` reports each, sign-in passes them
/// over, and apply finds no record by it.
#[derive(Debug, Clone, Default)]
pub struct PubkeyCopies<'a> {
    /// Pubkey to the `index` (store position) of each record holding it, in
    /// ascending order.
    positions: HashMap<&'a str, Positions, foldhash::fast::RandomState>,
}

/// The positions of one pubkey: nearly always one, kept without a list of
/// its own (a store of 100,000 records would otherwise allocate 100,000).
#[derive(Debug, Clone)]
enum Positions {
    One([usize; 1]),
    Several(Vec<usize>),
}

impl Positions {
    fn push(&mut self, index: usize) {
        match self {
            Positions::One([first]) => *self = Positions::Several(vec![*first, index]),
            Positions::Several(list) => list.push(index),
        }
    }

    fn as_slice(&self) -> &[usize] {
        match self {
            Positions::One(one) => one,
            Positions::Several(list) => list,
        }
    }
}

impl<'a> PubkeyCopies<'a> {
    /// Counts the pubkeys of `records`, each known by its `index`.
    pub fn of(records: impl IntoIterator<Item = &'a AgentRecord>) -> Self {
        let records = records.into_iter();
        let mut positions: HashMap<&'a str, Positions, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(records.size_hint().0, Default::default());
        for record in records {
            positions
                .entry(record.pubkey.as_str())
                .and_modify(|known| {
                    // One record reconciled on several community relays is
                    // one record (its entries are adjacent), not copies.
                    if known.as_slice().last() != Some(&record.index) {
                        known.push(record.index)
                    }
                })
                .or_insert(Positions::One([record.index]));
        }
        for known in positions.values_mut() {
            if let Positions::Several(list) = known {
                list.sort_unstable();
            }
        }
        Self { positions }
    }

    /// The `index` of every record holding `pubkey`, ascending.
    pub fn positions(&self, pubkey: &str) -> &[usize] {
        self.positions.get(pubkey).map_or(&[], Positions::as_slice)
    }

    /// How many records hold `pubkey`.
    pub fn count(&self, pubkey: &str) -> usize {
        self.positions(pubkey).len()
    }

    /// Where `pubkey` is: on no record, on exactly one (its `index`), or on
    /// several.
    pub fn find(&self, pubkey: &str) -> InStore<usize> {
        match self.positions(pubkey) {
            [] => InStore::Absent,
            [only] => InStore::One(*only),
            several => InStore::Duplicated(several.len()),
        }
    }
}

/// Where an agent's pubkey is in the store now (rule A2: a record is found by
/// its pubkey only when exactly one record holds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InStore<T> {
    /// No record holds the pubkey.
    Absent,
    /// Exactly one record holds it.
    One(T),
    /// This many records (two or more) hold it: none of them is the agent's.
    Duplicated(usize),
}

impl<T> InStore<T> {
    /// The found record turned into something else.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> InStore<U> {
        match self {
            InStore::Absent => InStore::Absent,
            InStore::One(found) => InStore::One(f(found)),
            InStore::Duplicated(count) => InStore::Duplicated(count),
        }
    }

    /// A borrowing view.
    pub fn as_ref(&self) -> InStore<&T> {
        match self {
            InStore::Absent => InStore::Absent,
            InStore::One(found) => InStore::One(found),
            InStore::Duplicated(count) => InStore::Duplicated(*count),
        }
    }

    /// The record when exactly one holds the pubkey.
    pub fn one(self) -> Option<T> {
        match self {
            InStore::One(found) => Some(found),
            _ => None,
        }
    }
}

/// Rules A1 to A4: every reason the planner has to skip `record` before it
/// looks at the relay, in the order it checks them. The planner skips on the
/// first; `validate` lists them all. The fields of the wrong JSON type are
/// one problem naming each of them; such a field is not reported again (as
/// empty, or as not a URL).
pub fn record_problems(
    record: &AgentRecord,
    copies: &PubkeyCopies<'_>,
) -> Vec<(SkipReason, String)> {
    let mut problems = Vec::new();
    let wrong_type = |field: &str| {
        let needle = format!("`{field}`");
        record.field_errors.iter().any(|e| e.contains(&needle))
    };
    if !record.field_errors.is_empty() {
        problems.push((SkipReason::InvalidRecord, record.field_errors.join("; ")));
    }
    if !is_pubkey_hex(&record.pubkey) {
        if !wrong_type("pubkey") {
            // An empty pubkey marks a definition record, which is no agent:
            // an agent record with none has no `pubkey` field at all.
            let problem = if record.pubkey.is_empty() {
                "has no pubkey; every agent record needs its agent's 64-hex pubkey"
            } else {
                "pubkey is not 64 lower-case hex digits; fix the record's pubkey"
            };
            problems.push((SkipReason::InvalidRecord, problem.to_string()));
        }
    } else if let positions @ [_, _, ..] = copies.positions(&record.pubkey) {
        let list: Vec<String> = positions.iter().map(|i| format!("#{i}")).collect();
        problems.push((
            SkipReason::DuplicateRecord,
            format!(
                "pubkey appears {} times in the store (records {}); keep one",
                positions.len(),
                list.join(", ")
            ),
        ));
    }
    if record.name.trim().is_empty() && !wrong_type("name") {
        problems.push((
            SkipReason::InvalidRecord,
            "name is empty; a profile is never published without a name".to_string(),
        ));
    }
    if let Err(problem) = parse_relay_url(&record.relay_url) {
        if !wrong_type("relay_url") {
            let detail = match problem {
                // Buzz desktop 0.4 and later leaves it empty: its agents run
                // on every community relay, which only config can name.
                RelayUrlError::Empty => "relay_url is empty (Buzz desktop runs its agents on \
                    every community relay); set [buzz] communities in config.toml to the \
                    community relays"
                    .to_string(),
                other => other.to_string(),
            };
            problems.push((SkipReason::InvalidRelayUrl, detail));
        }
    }
    problems
}
