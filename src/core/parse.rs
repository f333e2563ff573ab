//! A record's identifiers, checked: the pubkey as 64 hex digits (rule A1)
//! and the relay URL (rule A4).

use std::collections::HashMap;

use nostr::RelayUrl;

/// True when `text` is 64 lower-case hex digits (rule A1).
pub fn is_pubkey_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Why a relay URL is not usable (rule A4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayUrlError {
    /// Nothing but white space.
    #[error("relay_url is empty")]
    Empty,
    /// Not a ws:// or wss:// URL; the parser's words.
    #[error("relay_url is not a ws:// or wss:// URL ({0})")]
    NotWebSocket(String),
}

/// Checks a relay URL (rule A4): it must parse as a ws:// or wss:// URL.
/// Returns the URL as nostr writes it, or why it is not usable.
pub fn parse_relay_url(text: &str) -> Result<String, RelayUrlError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(RelayUrlError::Empty);
    }
    // A store names a few relays for thousands of records, and the URL
    // parser (IDNA included) costs microseconds a call: each thread keeps the
    // answers for the last texts it parsed. The function stays pure: the
    // same text always gives the same answer.
    thread_local! {
        static PARSED: std::cell::RefCell<HashMap<String, Result<String, RelayUrlError>>> =
            std::cell::RefCell::new(HashMap::new());
    }
    const REMEMBERED: usize = 64;
    if let Some(known) = PARSED.with(|parsed| parsed.borrow().get(trimmed).cloned()) {
        return known;
    }
    let answer = RelayUrl::parse(trimmed)
        .map(|url| url.to_string())
        .map_err(|err| RelayUrlError::NotWebSocket(err.to_string()));
    PARSED.with(|parsed| {
        let mut parsed = parsed.borrow_mut();
        if parsed.len() >= REMEMBERED {
            parsed.clear();
        }
        parsed.insert(trimmed.to_owned(), answer.clone());
    });
    answer
}
