//! Relay sessions without I/O: what to send, when, and what the relay's
//! answers mean, as state machines fed with relay messages and `now`.
//!
//! Each session (reading kind:0s: [`read::ReadSession`]; publishing one
//! agent's event as that agent: [`write::AuthorPublish`]; publishing many
//! agents' events over one connection: [`pipeline::PipelinedPublish`])
//! implements [`Session`]. The relay edge (`crate::net::wire`) drives any of them with one
//! short loop over the socket, a timer and nothing else, so every decision
//! (authentication, retries, refusals, timeouts) is made here and tested as
//! tables of messages in, frames out, with no socket and no sleeping.
//!
//! What this module must not do: open sockets, read a clock (time is an
//! argument: a monotonic `Instant` for deadlines, Unix seconds for the dates
//! of signed events), spawn tasks, or print keys. It may import `core` only.

pub mod nip42;
pub(crate) mod pipeline;
pub(crate) mod read;
pub(crate) mod write;

use std::time::Instant;

use nostr::{ClientMessage, RelayMessage};

use crate::core::rules::escape_controls;

/// Something that happened on the connection.
// Inputs are moved into a session one at a time and never stored, so the
// size of the message variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Input {
    /// A message from the relay.
    Message(RelayMessage<'static>),
    /// An EVENT from the relay whose event the connection already found
    /// authentic, shared with the daemon's memory of event texts (see
    /// `crate::net::verified`) rather than copied out of it.
    Event {
        /// The subscription it was sent for.
        subscription_id: nostr::SubscriptionId,
        /// The event.
        event: std::sync::Arc<nostr::Event>,
    },
    /// The connection's reader fell behind and this many messages were lost.
    Lagged(u64),
    /// The connection is gone (dropped, closed, or could not be written);
    /// why, for people.
    Lost(String),
}

/// Which events from the relay a session can take. The connection shows
/// only those to the memory of checks it keeps (`crate::net::verified`, a
/// daemon's memory across ticks) and to a read's observer; every other event
/// is still checked and handed to the session (which ignores it), then
/// forgotten, so a relay cannot fill that memory with events nobody asked
/// for.
pub trait AcceptedEvents: Send + Sync {
    /// True when the session can take `event`, sent for `subscription_id`.
    fn accepts(&self, subscription_id: &nostr::SubscriptionId, event: &nostr::Event) -> bool;
}

/// A sans-IO relay session.
pub trait Session {
    /// Feeds what happened on the connection, at `now`.
    fn handle_input(&mut self, input: Input, now: Instant);
    /// The frames to send now, in order. `now_unix` dates signed events
    /// (AUTH).
    fn poll_transmit(&mut self, now: Instant, now_unix: u64) -> Vec<ClientMessage<'static>>;
    /// When [`Session::handle_timeout`] is due next; `None` when nothing waits.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Time has come to `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// True when the session has nothing more to do on this connection.
    fn is_done(&self) -> bool;
    /// The events it can take (see [`AcceptedEvents`]); `None`, the default:
    /// none (a session that reads no events).
    fn accepted_events(&self) -> Option<std::sync::Arc<dyn AcceptedEvents>> {
        None
    }
}

/// The longest piece of relay-supplied text (a CLOSED, NOTICE or OK message)
/// kept in a reason or a delivery.
pub(crate) const MAX_RELAY_TEXT_CHARS: usize = 300;

/// Relay-supplied text made safe for people: control characters escaped (no
/// terminal escapes reach an operator's screen) and at most
/// [`MAX_RELAY_TEXT_CHARS`] characters (then `…`).
pub(crate) fn relay_text(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(MAX_RELAY_TEXT_CHARS).collect();
    let mut out = escape_controls(&head, false).into_owned();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// Appends `bytes` as 64 lower-case hex digits to `out`.
pub(crate) fn push_hex32(out: &mut String, bytes: &[u8; 32]) {
    let mut digits = [0u8; 64];
    hex::encode_to_slice(bytes, &mut digits).expect("64 digits for 32 bytes");
    out.push_str(std::str::from_utf8(&digits).expect("hex digits are ASCII"));
}

/// `bytes` (a pubkey, an event id) as 64 lower-case hex digits. nostr's
/// `to_hex` builds its string one `char` at a time, several times slower;
/// a read writes two per author and a REQ one per author.
pub(crate) fn hex32(bytes: &[u8; 32]) -> String {
    let mut out = String::with_capacity(64);
    push_hex32(&mut out, bytes);
    out
}

/// "15 s", "1.5 s", "250 ms".
pub(crate) fn human_duration(duration: std::time::Duration) -> String {
    if duration < std::time::Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn relay_text_is_verbatim_for_plain_text_escapes_control_characters_and_is_capped() {
        assert_eq!(
            relay_text("replaced: have newer event"),
            "replaced: have newer event"
        );
        assert_eq!(
            relay_text("auth-required: \x1b[31mred"),
            "auth-required: \\u{1b}[31mred"
        );
        assert_eq!(relay_text("blocked: \x1b[31mno"), "blocked: \\u{1b}[31mno");
        let long = "x".repeat(1000);
        assert_eq!(relay_text(&long).chars().count(), MAX_RELAY_TEXT_CHARS + 1);
        assert!(relay_text(&long).ends_with('…'));
        let exact = "x".repeat(MAX_RELAY_TEXT_CHARS);
        assert_eq!(relay_text(&exact), exact, "no `…` when nothing was cut");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_secs(15)), "15 s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(human_duration(Duration::from_millis(250)), "250 ms");
    }
}
