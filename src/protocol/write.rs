//! Publishing one agent's event over a connection signed in as that agent.
//!
//! Relays such as Buzz accept an event only from a connection authenticated
//! (NIP-42) as the event's author, and let a connection sign in once, as one
//! identity. So on such a relay each agent's event goes over its own
//! connection: [`AuthorPublish`] signs in as the agent (with its NIP-OA tag,
//! which is how Buzz admits an agent), sends the event, and reads the relay's
//! answer. Decisions, in order:
//!
//! - With `sign_in_first`, the event waits until the relay accepted the AUTH
//!   (Buzz's challenge arrives at connect). Many relays (nostr-relay-builder's
//!   among them) send their challenge only after an unauthenticated REQ or
//!   EVENT: when none has come [`PROVOKE_AFTER`] after the session started,
//!   the event goes anyway, to provoke it. Without `sign_in_first`, the event
//!   goes at once. Either way, an `auth-required:` answer to an event sent
//!   before the sign-in completed makes the session sign in (or finish
//!   signing in) and send the same event again.
//! - A refused AUTH ends the session with the relay's message
//!   ([`Delivery::Refused`]); no other identity is tried: the author must
//!   sign in as itself.
//! - The relay's OK is classified by the core ([`classify_ok`]):
//!   `rate-limited:` (as an OK, or as a NOTICE while the event awaits its OK,
//!   which is how Buzz sheds load) resends the same signed event after the
//!   core's backoff; other refusals end it with the relay's message.
//! - No OK by the deadline, no answer to the AUTH, or a lost connection:
//!   [`Delivery::Failed`] (the relay may still have stored the event; apply
//!   reads every profile back).

use std::time::{Duration, Instant};

use nostr::{ClientMessage, Event, RelayMessage};

use super::nip42::{AuthStatus, Identity, Nip42};
use super::{human_duration, relay_text, Input, Session};
use crate::core::apply::{classify_ok, Backoff, PublishAnswer};

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The relay said OK (true, or `duplicate:`).
    Accepted,
    /// The relay refused it (or refused to let its author sign in); its
    /// message, verbatim (control characters escaped, at most 300 characters).
    Refused(String),
    /// No answer, a lost connection, or retries used up; why.
    Failed(String),
    /// Not published because the run was stopping (`PublishOptions::stop` in
    /// `crate::net::publish`): never sent, or refused (`rate-limited:`,
    /// `auth-required:`) and not sent again. The relay did not store it.
    NotSent,
}

/// How long a session that signs in first waits for the relay's challenge
/// before it sends the event to provoke one.
pub const PROVOKE_AFTER: Duration = Duration::from_millis(500);

#[derive(Debug)]
enum State {
    /// Signing in before the event may go; with no challenge by `provoke`,
    /// the event goes anyway to provoke one.
    SigningIn {
        provoke: Option<Instant>,
    },
    /// The event goes out at the next transmit.
    Ready,
    /// The event went out; its OK is due by the deadline.
    Sent {
        deadline: Instant,
    },
    /// Rate-limited: the same event goes again at `until`.
    Backoff {
        until: Instant,
    },
    Done(Delivery),
}

/// One agent's event, published over one connection signed in as the agent.
#[derive(Debug)]
pub struct AuthorPublish {
    event: Event,
    auth: Nip42,
    state: State,
    publish_timeout: Duration,
    backoff: Backoff,
    /// In [0, 1): scales each backoff delay (chosen by the caller).
    jitter: f64,
    /// How many times the event was sent.
    sends: u32,
    /// Whether the event last went out after the sign-in completed.
    sent_signed_in: bool,
}

impl AuthorPublish {
    /// Publishes `event` signing in as `identity` (the event's author).
    /// `publish_timeout` bounds each wait (a challenge, the AUTH's answer, the
    /// event's OK).
    pub fn new(
        event: Event,
        identity: Identity,
        sign_in_first: bool,
        publish_timeout: Duration,
        backoff: Backoff,
        jitter: f64,
        now: Instant,
    ) -> Self {
        let mut auth = Nip42::new(Some(identity), publish_timeout);
        let state = if sign_in_first {
            auth.want(now);
            State::SigningIn {
                provoke: Some(now + PROVOKE_AFTER),
            }
        } else {
            State::Ready
        };
        Self {
            event,
            auth,
            state,
            publish_timeout,
            backoff,
            jitter,
            sends: 0,
            sent_signed_in: false,
        }
    }

    /// The outcome, once the session is done.
    pub fn delivery(&self) -> Option<&Delivery> {
        match &self.state {
            State::Done(delivery) => Some(delivery),
            _ => None,
        }
    }

    fn finish(&mut self, delivery: Delivery) {
        self.state = State::Done(delivery);
    }

    /// Rate-limited: the same event again after the core's backoff, or
    /// failed when the retries are used up.
    fn rate_limited(&mut self, message: &str, now: Instant) {
        match self.backoff.delay(self.sends, self.jitter) {
            // The relay's own delay, when it says one, and never less.
            Some(delay) => {
                let asked = crate::core::apply::retry_in(message).unwrap_or_default();
                self.state = State::Backoff {
                    until: now + delay.max(asked),
                }
            }
            None => self.finish(Delivery::Failed(format!(
                "still rate-limited after {} attempts: {message}",
                self.sends
            ))),
        }
    }

    /// The event's OK arrived.
    fn event_answered(&mut self, accepted: bool, message: &str, now: Instant) {
        let text = relay_text(message);
        match classify_ok(accepted, message) {
            PublishAnswer::Accepted => self.finish(Delivery::Accepted),
            PublishAnswer::RateLimited(_) => self.rate_limited(&text, now),
            PublishAnswer::AuthRequired(_) => {
                self.auth.on_auth_required(&text, now);
                match self.auth.status() {
                    AuthStatus::Pending => self.state = State::SigningIn { provoke: None },
                    AuthStatus::Refused(why) => self.finish(Delivery::Refused(why)),
                    // Sent before the sign-in completed: the relay judged it
                    // unauthenticated. Send it again, now signed in.
                    AuthStatus::Authenticated if !self.sent_signed_in => self.state = State::Ready,
                    // Signed in as the author and still refused: the relay's word.
                    AuthStatus::Authenticated | AuthStatus::NotAsked => {
                        self.finish(Delivery::Refused(text))
                    }
                }
            }
            PublishAnswer::Refused(_) => self.finish(Delivery::Refused(text)),
        }
    }
}

impl Session for AuthorPublish {
    fn handle_input(&mut self, input: Input, now: Instant) {
        if matches!(self.state, State::Done(_)) {
            return;
        }
        match input {
            Input::Message(RelayMessage::Auth { challenge }) => {
                self.auth.on_challenge(&challenge, now)
            }
            Input::Message(RelayMessage::Ok {
                event_id,
                status,
                message,
            }) => {
                let text = relay_text(&message);
                if self.auth.on_ok(&event_id, status, &text) {
                    match self.auth.status() {
                        AuthStatus::Authenticated => {
                            if matches!(self.state, State::SigningIn { .. }) {
                                self.state = State::Ready;
                            }
                        }
                        AuthStatus::Refused(why) => self.finish(Delivery::Refused(why)),
                        AuthStatus::Pending | AuthStatus::NotAsked => {}
                    }
                } else if event_id == self.event.id && matches!(self.state, State::Sent { .. }) {
                    self.event_answered(status, &message, now);
                }
            }
            Input::Message(RelayMessage::Notice(message)) => {
                // Buzz sheds load with a NOTICE and no OK.
                if matches!(self.state, State::Sent { .. }) && message.starts_with("rate-limited:")
                {
                    let text = relay_text(&message);
                    self.rate_limited(&text, now);
                }
            }
            Input::Message(_) | Input::Event { .. } | Input::Lagged(_) => {}
            Input::Lost(reason) => {
                let delivery = match self.state {
                    State::Sent { .. } => format!("{reason} before the relay answered"),
                    _ => format!("{reason} before the event was sent"),
                };
                self.finish(Delivery::Failed(delivery));
            }
        }
    }

    fn poll_transmit(&mut self, now: Instant, now_unix: u64) -> Vec<ClientMessage<'static>> {
        let mut frames = Vec::new();
        if let Some(auth) = self.auth.poll_transmit(now, now_unix) {
            frames.push(auth);
        }
        if let AuthStatus::Refused(why) = self.auth.status() {
            if matches!(self.state, State::SigningIn { .. }) {
                self.finish(Delivery::Refused(why));
            }
        }
        // No challenge yet: the event goes, to provoke one (the sign-in stays
        // wanted, and an `auth-required:` answer sends the event again once
        // it is done).
        if let State::SigningIn {
            provoke: Some(provoke),
        } = self.state
        {
            if provoke <= now
                && self.auth.status() == AuthStatus::Pending
                && !self.auth.has_challenge()
            {
                self.state = State::Ready;
            }
        }
        if matches!(self.state, State::Ready) {
            frames.push(ClientMessage::event(self.event.clone()));
            self.sent_signed_in = self.auth.status() == AuthStatus::Authenticated;
            self.sends += 1;
            self.state = State::Sent {
                deadline: now + self.publish_timeout,
            };
        }
        frames
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::SigningIn { provoke } => {
                let provoke = provoke.filter(|_| !self.auth.has_challenge());
                [self.auth.poll_timeout(), provoke]
                    .into_iter()
                    .flatten()
                    .min()
            }
            State::Sent { deadline } => Some(deadline),
            State::Backoff { until } => Some(until),
            State::Ready | State::Done(_) => None,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::SigningIn { .. } => {
                self.auth.handle_timeout(now);
                if let AuthStatus::Refused(why) = self.auth.status() {
                    self.finish(Delivery::Failed(why));
                }
            }
            State::Sent { deadline } if deadline <= now => {
                let why = format!(
                    "no OK from the relay within {}",
                    human_duration(self.publish_timeout)
                );
                self.finish(Delivery::Failed(why));
            }
            State::Backoff { until } if until <= now => self.state = State::Ready,
            _ => {}
        }
    }

    fn is_done(&self) -> bool {
        matches!(self.state, State::Done(_))
    }
}

#[cfg(test)]
mod tests;
