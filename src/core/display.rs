//! Text for people: dates in UTC, short pubkeys, and any text from outside
//! made safe for a terminal. Pure formatting, no clock.

use std::borrow::Cow;

/// Unix seconds as people read them, in UTC (RFC 3339, as plans name their
/// own time): `2026-12-07T14:10:39Z`. Pure: formatting, no clock.
pub fn utc(secs: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX), 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| secs.to_string())
}

/// A short form of a pubkey (or of an event id) for people: the first and
/// last 8 digits. Anything else (a crafted plan file can hold any text) is
/// shortened by characters the same way, with control characters escaped, so
/// it can neither panic nor reach a terminal as an escape sequence.
pub fn short_pubkey(pubkey: &str) -> String {
    let chars: Vec<char> = pubkey.chars().collect();
    let shown: String = if chars.len() > 17 {
        let head: String = chars[..8].iter().collect();
        let tail: String = chars[chars.len() - 8..].iter().collect();
        format!("{head}…{tail}")
    } else {
        pubkey.to_owned()
    };
    escape_controls(&shown, false).into_owned()
}

/// Text from anywhere (a relay, a store, a crafted plan file) made safe to
/// show: every control character escaped (`\u{1b}`), so none reaches a
/// terminal as an escape sequence; with `keep_layout`, line breaks and tabs
/// are kept. Borrowed as it is when there is nothing to escape.
pub fn escape_controls(text: &str, keep_layout: bool) -> Cow<'_, str> {
    let escaped = |c: char| c.is_control() && !(keep_layout && (c == '\n' || c == '\t'));
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}
