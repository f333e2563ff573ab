//! The kind:0 content: reading it, and the merge of rule D2.
//!
//! The content is kept as an ordered list of keys with their values' raw JSON
//! text, so that every key the tool does not own survives a republish with its
//! value exactly as it was written (numbers, escapes and nesting included),
//! in its place.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, Visitor};
use serde_json::value::RawValue;

use super::json::{json_string, ObjectEntries};

/// A kind:0 content that is a JSON object, in its written order. It borrows
/// from the text it was parsed from (a key is copied only when it holds an
/// escape), and owns only what a merge sets.
#[derive(Debug, Clone)]
pub struct ProfileContent<'a> {
    entries: Vec<(Cow<'a, str>, Cow<'a, RawValue>)>,
}

/// A key as written, borrowed from the text unless unescaping changed it.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }

            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }

            fn visit_string<E>(self, key: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

impl PartialEq for ProfileContent<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|((ka, va), (kb, vb))| ka == kb && va.get() == vb.get())
    }
}

impl<'a> ProfileContent<'a> {
    /// Parses a content; `None` when it is not a JSON object (rule C2's
    /// "malformed"), including invalid JSON and JSON nested too deep to read.
    pub fn parse(text: &'a str) -> Option<Self> {
        serde_json::from_str::<ObjectEntries<Key<'a>, &'a RawValue>>(text)
            .ok()
            .map(|ObjectEntries(entries)| Self {
                entries: entries
                    .into_iter()
                    .map(|(Key(key), value)| (key, Cow::Borrowed(value)))
                    .collect(),
            })
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
        self.str_value(key).map(Cow::into_owned)
    }

    /// [`ProfileContent::get_str`], borrowed from the content unless the
    /// string holds an escape.
    pub fn str_value(&self, key: &str) -> Option<Cow<'_, str>> {
        let (_, raw) = self.entries.iter().rev().find(|(k, _)| k == key)?;
        match serde_json::from_str::<&str>(raw.get()) {
            Ok(text) => Some(Cow::Borrowed(text)),
            Err(_) => serde_json::from_str::<String>(raw.get())
                .ok()
                .map(Cow::Owned),
        }
    }

    /// True when `key` is present with any value.
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// Sets `key` to a string: in the place of its first occurrence (dropping
    /// any later duplicate of that key), or at the end when it is new.
    fn set_str(&mut self, key: &str, value: &str) {
        let raw: Cow<'a, RawValue> = Cow::Owned(
            RawValue::from_string(json_string(value)).expect("a JSON string is valid JSON"),
        );
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
            None => self.entries.push((Cow::Owned(key.to_string()), raw)),
        }
    }

    /// Rule D2: this content with `display_name` and `picture` set, every
    /// other key kept in order, and `name` added when there is none.
    pub fn merged(&self, name: &str, picture: &str) -> ProfileContent<'a> {
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
        self.entries.iter().map(|(k, _)| k.as_ref())
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
        self.entries.iter().map(|(k, v)| (k.as_ref(), v.get()))
    }
}

/// The content to publish from an existing content (rule D2); from missing or
/// malformed state (`None`): `name`, `display_name` and `picture`.
pub fn merge_content(existing: Option<&ProfileContent<'_>>, name: &str, picture: &str) -> String {
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
    fn a_content_borrows_what_it_can_and_reads_escapes_as_they_mean() {
        let text = r#"{"display_name":"Ada","pic\u0074ure":"https:\/\/a\/x.png","about":5}"#;
        let content = ProfileContent::parse(text).unwrap();
        assert!(matches!(
            content.str_value("display_name"),
            Some(Cow::Borrowed("Ada"))
        ));
        assert!(matches!(
            content.str_value("picture"),
            Some(Cow::Owned(picture)) if picture == "https://a/x.png"
        ));
        assert_eq!(
            content.get_str("picture").as_deref(),
            Some("https://a/x.png")
        );
        assert_eq!(content.str_value("about"), None);
        // Values stay as written; an escaped key reads as what it means.
        assert_eq!(
            content.entries().collect::<Vec<_>>(),
            [
                ("display_name", r#""Ada""#),
                ("picture", r#""https:\/\/a\/x.png""#),
                ("about", "5")
            ]
        );
    }

    #[test]
    fn non_string_display_name_reads_as_none() {
        let content = ProfileContent::parse(r#"{"display_name":5}"#).unwrap();
        assert_eq!(content.get_str("display_name"), None);
    }
}
