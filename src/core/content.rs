//! The kind:0 content: reading it, and the merge of rule D2.
//!
//! The content is kept as an ordered list of keys with their values' raw JSON
//! text, so that every key the tool does not own survives a republish with its
//! value exactly as it was written (numbers, escapes and nesting included),
//! in its place.

use serde_json::value::RawValue;

use super::json::{json_string, ObjectEntries};

/// A kind:0 content that is a JSON object, in its written order.
#[derive(Debug, Clone)]
pub struct ProfileContent {
    entries: Vec<(String, Box<RawValue>)>,
}

impl PartialEq for ProfileContent {
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|((ka, va), (kb, vb))| ka == kb && va.get() == vb.get())
    }
}

impl ProfileContent {
    /// Parses a content; `None` when it is not a JSON object (rule C2's
    /// "malformed"), including invalid JSON and JSON nested too deep to read.
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str::<ObjectEntries<String, Box<RawValue>>>(text)
            .ok()
            .map(|ObjectEntries(entries)| Self { entries })
    }

    /// An empty object.
    pub fn empty() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// The value of `key` when it is a JSON string. With duplicate keys the
    /// last one counts, as in most JSON readers.
    pub fn get_str(&self, key: &str) -> Option<String> {
        let (_, raw) = self.entries.iter().rev().find(|(k, _)| k == key)?;
        serde_json::from_str::<String>(raw.get()).ok()
    }

    /// True when `key` is present with any value.
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// Sets `key` to a string: in the place of its first occurrence (dropping
    /// any later duplicate of that key), or at the end when it is new.
    fn set_str(&mut self, key: &str, value: &str) {
        let raw = RawValue::from_string(json_string(value)).expect("a JSON string is valid JSON");
        match self.entries.iter().position(|(k, _)| k == key) {
            Some(first) => {
                self.entries[first].1 = raw;
                let mut seen = 0usize;
                self.entries.retain(|(k, _)| {
                    if k == key {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.entries.push((key.to_string(), raw)),
        }
    }

    /// Rule D2: this content with `display_name` and `picture` set, every
    /// other key kept in order, and `name` added when there is none.
    pub fn merged(&self, name: &str, picture: &str) -> ProfileContent {
        let mut merged = self.clone();
        if !merged.has("name") {
            merged.set_str("name", name);
        }
        merged.set_str("display_name", name);
        merged.set_str("picture", picture);
        merged
    }

    /// Compact JSON text: keys in order, values as they were written.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(
            2 + self
                .entries
                .iter()
                .map(|(k, v)| k.len() + v.get().len() + 4)
                .sum::<usize>(),
        );
        out.push('{');
        for (i, (key, value)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json_string(key));
            out.push(':');
            out.push_str(value.get());
        }
        out.push('}');
        out
    }

    /// The keys, in order (for the properties).
    #[cfg(test)]
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// The raw JSON text of the value of `key`, last occurrence (for the
    /// properties).
    #[cfg(test)]
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.get())
    }

    /// Each key with its value's raw JSON text, in order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.get()))
    }
}

/// The content to publish from an existing content (rule D2); from missing or
/// malformed state (`None`): `name`, `display_name` and `picture`.
pub fn merge_content(existing: Option<&ProfileContent>, name: &str, picture: &str) -> String {
    match existing {
        Some(content) => content.merged(name, picture).to_json(),
        None => ProfileContent::empty().merged(name, picture).to_json(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_d2_merge_keeps_every_other_key_in_order() {
        let existing = ProfileContent::parse(
            r#"{"about":"hi","display_name":"Old","x":{"z": 1.50},"picture":"p","big":123456789012345678901234567890,"lud16":"a@b"}"#,
        )
        .unwrap();
        let merged = merge_content(Some(&existing), "Ada", "https://a/x.png");
        assert_eq!(
            merged,
            r#"{"about":"hi","display_name":"Ada","x":{"z": 1.50},"picture":"https://a/x.png","big":123456789012345678901234567890,"lud16":"a@b","name":"Ada"}"#
        );
    }

    #[test]
    fn rule_d2_existing_name_is_never_changed() {
        let existing = ProfileContent::parse(r#"{"name":"handle","display_name":"Old"}"#).unwrap();
        let merged = merge_content(Some(&existing), "Ada", "https://a/x.png");
        assert_eq!(
            merged,
            r#"{"name":"handle","display_name":"Ada","picture":"https://a/x.png"}"#
        );
    }

    #[test]
    fn rule_d2_from_missing_or_malformed_state_has_the_three_fields() {
        assert_eq!(
            merge_content(None, "Ada \"A\"", "https://a/x.png"),
            r#"{"name":"Ada \"A\"","display_name":"Ada \"A\"","picture":"https://a/x.png"}"#
        );
    }

    #[test]
    fn duplicate_owned_keys_collapse_to_one_in_the_first_place() {
        let existing =
            ProfileContent::parse(r#"{"picture":"a","about":"x","picture":"b","name":"n"}"#)
                .unwrap();
        assert_eq!(existing.get_str("picture").as_deref(), Some("b"));
        let merged = merge_content(Some(&existing), "Ada", "c");
        assert_eq!(
            merged,
            r#"{"picture":"c","about":"x","name":"n","display_name":"Ada"}"#
        );
    }

    #[test]
    fn rule_c2_non_objects_are_not_contents() {
        for text in ["this is not json {", "[]", "\"s\"", "null", "1", ""] {
            assert!(ProfileContent::parse(text).is_none(), "{text}");
        }
        let deep = "[".repeat(10_000);
        assert!(ProfileContent::parse(&format!("{{\"a\":{deep}}}")).is_none());
    }

    #[test]
    fn non_string_display_name_reads_as_none() {
        let content = ProfileContent::parse(r#"{"display_name":5}"#).unwrap();
        assert_eq!(content.get_str("display_name"), None);
    }
}
