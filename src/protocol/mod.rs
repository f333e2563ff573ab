//! Relay sessions without I/O: what to send, when, and what the relay's
//! answers mean, as state machines fed with relay messages and `now`.
//!
//! Each session (reading kind:0s: [`read::ReadSession`]; publishing one
//! agent's event as that agent: [`write::AuthorPublish`]) implements
//! [`Session`]. The relay edge (`crate::relay`) drives any of them with one
//! short loop over the socket, a timer and nothing else, so every decision
//! (authentication, retries, refusals, timeouts) is made here and tested as
//! tables of messages in, frames out, with no socket and no sleeping.
//!
//! What this module must not do: open sockets, read a clock (time is an
//! argument: a monotonic `Instant` for deadlines, Unix seconds for the dates
//! of signed events), spawn tasks, or print keys.

pub mod nip42;
pub mod read;
pub mod write;

use std::time::Instant;

use nostr::{ClientMessage, RelayMessage};

/// Something that happened on the connection.
// Inputs are moved into a session one at a time and never stored, so the
// size of the message variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Input {
    /// A message from the relay.
    Message(RelayMessage<'static>),
    /// The connection's reader fell behind and this many messages were lost.
    Lagged(u64),
    /// The connection is gone (dropped, closed, or could not be written);
    /// why, for people.
    Lost(String),
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
}

/// Relay-supplied text made safe for people: control characters escaped (no
/// terminal escapes reach an operator's screen) and at most `max_chars`
/// characters (then `…`).
pub(crate) fn capped_relay_text(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == max_chars {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
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
    fn relay_text_escapes_control_characters_and_is_capped() {
        assert_eq!(
            capped_relay_text("auth-required: \x1b[31mred", 200),
            "auth-required: \\u{1b}[31mred"
        );
        let long = "x".repeat(500);
        assert_eq!(capped_relay_text(&long, 200).chars().count(), 201);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_secs(15)), "15 s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(human_duration(Duration::from_millis(250)), "250 ms");
    }
}
