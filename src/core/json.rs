//! JSON text kept as it was written: an object read as its entries in order,
//! and a string written as a JSON literal.
//!
//! The kind:0 content (`super::content`), the agent store's records
//! (`crate::store::agents`) and the store's rewrite (`crate::store::write`) all read
//! an object as its keys with their values' raw JSON text, so that every byte
//! they do not own is carried as it was; this is the one reader they share.
//! Pure: no I/O, and nothing here decides what a field means.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// A JSON object as its entries in written order, duplicate keys included
/// (readers decide which counts; the tool's rule is the last one). `K` is
/// how a key is read, `V` how a value is (usually raw JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntries<K, V>(pub Vec<(K, V)>);

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for ObjectEntries<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<K, V>(PhantomData<(K, V)>);

        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<K, V> {
            type Value = ObjectEntries<K, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry::<K, V>()? {
                    entries.push(entry);
                }
                Ok(ObjectEntries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// `text` as a JSON string literal (quoted and escaped).
pub fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes")
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    #[test]
    fn an_object_reads_as_its_entries_in_order_with_duplicates_and_raw_values() {
        let text = r#"{"b": 1.50, "a": {"x": [1]}, "b": "two", "\u0063": null}"#;
        let ObjectEntries(entries) =
            serde_json::from_str::<ObjectEntries<String, &RawValue>>(text).unwrap();
        let read: Vec<(&str, &str)> = entries.iter().map(|(k, v)| (k.as_str(), v.get())).collect();
        assert_eq!(
            read,
            [
                ("b", "1.50"),
                ("a", r#"{"x": [1]}"#),
                ("b", r#""two""#),
                ("c", "null")
            ]
        );
        for not_an_object in ["[]", "1", "\"s\"", "null", "{"] {
            assert!(
                serde_json::from_str::<ObjectEntries<String, &RawValue>>(not_an_object).is_err(),
                "{not_an_object}"
            );
        }
    }

    #[test]
    fn a_json_string_is_quoted_and_escaped() {
        assert_eq!(json_string("Ada \"A\"\n"), r#""Ada \"A\"\n""#);
    }
}
