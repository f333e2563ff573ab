//! NIP-42 for one connection: who signs in, when, and what the relay's answer
//! means.
//!
//! [`Nip42`] is a small state machine with no socket and no clock: the session
//! that owns it feeds it the relay's `AUTH` challenges, its `auth-required:`
//! refusals and the `OK` that answers an AUTH event, with `now` as an argument;
//! it hands back the AUTH frame to send and the deadline of the answer. Rules
//! it carries out (from `shared/spec/buzz.md`, which matches NIP-42):
//!
//! - A [`Nip42`] signs in as **one** identity, at most once: a relay such as
//!   Buzz refuses a second AUTH (`already authenticated`) and never accepts one
//!   after a refusal (`authentication already failed`). A refused identity
//!   therefore ends this connection's chances; another identity needs a new
//!   connection, which is the driver's decision. (A session that publishes
//!   for many authors over one connection may keep one `Nip42` per identity
//!   and try a second one; see `super::pipeline`.)
//! - One exception: a refused AUTH is answered again, at most
//!   [`MAX_AUTH_ATTEMPTS`] times in all, when the relay sent a newer
//!   challenge after that AUTH went out. Relays such as nostr-relay-builder's
//!   issue a fresh challenge for every unauthenticated EVENT or REQ and
//!   forget old ones, so an AUTH written while such answers were still on the
//!   wire names a challenge the relay has already dropped. A relay that sends
//!   one challenge per connection (Buzz) never sees a second AUTH.
//! - The AUTH event is kind 22242 with the relay's newest challenge, a `relay`
//!   tag naming the relay **connected to** (after `[relay.rewrite]`: today's
//!   Buzz relay checks it against the `Host` it sees, see
//!   `crate::engine::read_prep::sign_in_identities`), `created_at` = now, and the
//!   identity's NIP-OA tag when it has one (exactly one `auth` tag: Buzz
//!   admits an agent by it).
//! - Without an identity, a challenge is ignored: relays that never demand
//!   authentication keep working with no AUTH at all.
//!
//! What it must not do: read a clock, touch a socket, or print a key (an
//! [`Identity`]'s `Debug` shows only its public key and label).

use std::fmt;
use std::time::{Duration, Instant};

use nostr::{ClientMessage, Event, EventBuilder, EventId, Keys, Kind, Tag, Timestamp};

/// Who a connection signs in as.
#[derive(Clone)]
pub struct Identity {
    /// The keys that sign the AUTH event.
    pub keys: Keys,
    /// The NIP-OA tag (`["auth", owner, conditions, sig]`) the AUTH event
    /// carries, if any.
    pub auth_tag: Option<Vec<String>>,
    /// The relay as the store names it: the AUTH event's `relay` tag.
    pub relay_tag: String,
    /// Who this is, for people: `agent Ada (1a2b3c4d…5e6f7a8b)`,
    /// `[relay] auth_key_file`.
    pub label: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("pubkey", &self.keys.public_key().to_hex())
            .field("label", &self.label)
            .field("has_auth_tag", &self.auth_tag.is_some())
            .finish()
    }
}

impl Identity {
    /// Signs the AUTH event for `challenge` at `now_unix`.
    pub fn auth_event(&self, challenge: &str, now_unix: u64) -> Result<Event, String> {
        let mut tags = vec![
            Tag::parse(["relay", self.relay_tag.as_str()]).map_err(|e| e.to_string())?,
            Tag::parse(["challenge", challenge]).map_err(|e| e.to_string())?,
        ];
        if let Some(tag) = &self.auth_tag {
            tags.push(Tag::parse(tag.clone()).map_err(|e| e.to_string())?);
        }
        EventBuilder::new(Kind::Authentication, "")
            .tags(tags)
            .custom_created_at(Timestamp::from_secs(now_unix))
            .sign_with_keys(&self.keys)
            .map_err(|e| format!("cannot sign the AUTH event: {e}"))
    }
}

/// Where a connection's authentication stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStatus {
    /// Nothing asked for authentication (or there is no identity to answer a
    /// challenge with, and nothing demanded one yet).
    NotAsked,
    /// Authentication is wanted (a challenge to answer, or a refusal that
    /// demands it) and not settled yet.
    Pending,
    /// The relay accepted the AUTH event.
    Authenticated,
    /// The relay refused the AUTH event, did not answer it, or demanded
    /// authentication with no identity to sign in as; why, for people.
    Refused(String),
}

#[derive(Debug)]
enum State {
    Idle,
    /// Authentication is wanted; the AUTH goes out once a challenge is known.
    /// The deadline bounds the wait for a challenge.
    Wanted {
        deadline: Instant,
    },
    /// The AUTH event went out, answering the challenge counted
    /// `challenge_number`; its OK is due by the deadline.
    Sent {
        id: EventId,
        deadline: Instant,
        challenge_number: u64,
    },
    Authenticated,
    Refused(String),
}

/// How many AUTH events one identity sends on one connection at most: the
/// first, and answers to newer challenges after a refusal (see the module).
pub const MAX_AUTH_ATTEMPTS: u32 = 3;

/// NIP-42 on one connection.
#[derive(Debug)]
pub struct Nip42 {
    identity: Option<Identity>,
    challenge: Option<String>,
    /// How many challenges the relay sent on this connection.
    challenges: u64,
    /// How many AUTH events went out.
    attempts: u32,
    state: State,
    timeout: Duration,
}

impl Nip42 {
    /// Signs in as `identity` (or never, with `None`) when the relay asks;
    /// waits at most `timeout` for a challenge and for the AUTH's answer.
    pub fn new(identity: Option<Identity>, timeout: Duration) -> Self {
        Self {
            identity,
            challenge: None,
            challenges: 0,
            attempts: 0,
            state: State::Idle,
            timeout,
        }
    }

    /// The identity this connection signs in as.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Whether the relay has sent a challenge on this connection.
    pub fn has_challenge(&self) -> bool {
        self.challenge.is_some()
    }

    /// Where authentication stands.
    pub fn status(&self) -> AuthStatus {
        match &self.state {
            State::Idle => AuthStatus::NotAsked,
            State::Wanted { .. } | State::Sent { .. } => AuthStatus::Pending,
            State::Authenticated => AuthStatus::Authenticated,
            State::Refused(why) => AuthStatus::Refused(why.clone()),
        }
    }

    /// Authentication is wanted before anything else (a session that knows
    /// the relay demands it); the AUTH goes out once a challenge is known.
    pub fn want(&mut self, now: Instant) {
        if self.identity.is_some() && matches!(self.state, State::Idle) {
            self.state = State::Wanted {
                deadline: now + self.timeout,
            };
        }
    }

    /// The relay sent `["AUTH", challenge]`. With an identity, it is answered
    /// (once per connection); the newest challenge is the one used.
    pub fn on_challenge(&mut self, challenge: &str, now: Instant) {
        self.challenge = Some(challenge.to_owned());
        self.challenges += 1;
        if self.identity.is_some() && matches!(self.state, State::Idle) {
            self.state = State::Wanted {
                deadline: now + self.timeout,
            };
        }
    }

    /// The relay refused something with `auth-required: <message>`.
    pub fn on_auth_required(&mut self, message: &str, now: Instant) {
        match (&self.state, &self.identity) {
            (State::Idle, Some(_)) => {
                self.state = State::Wanted {
                    deadline: now + self.timeout,
                }
            }
            (State::Idle, None) => {
                self.state = State::Refused(format!(
                    "the relay demands authentication ({message}) and there is no identity to \
                     sign in as"
                ))
            }
            // Wanted or Sent: under way. Authenticated: the relay wants more
            // than this identity; the caller judges the refusal it got.
            // Refused: stays refused.
            _ => {}
        }
    }

    /// The relay sent `OK` for `event_id`. Returns true when it answered this
    /// connection's AUTH event (and so was consumed here).
    ///
    /// A refusal is final, unless the relay sent a newer challenge after the
    /// AUTH went out and fewer than [`MAX_AUTH_ATTEMPTS`] were sent: then
    /// the newest challenge is answered (see the module).
    pub fn on_ok(&mut self, event_id: &EventId, accepted: bool, message: &str) -> bool {
        let State::Sent {
            id,
            deadline,
            challenge_number,
        } = &self.state
        else {
            return false;
        };
        if id != event_id {
            return false;
        }
        self.state = if accepted {
            State::Authenticated
        } else if self.challenges > *challenge_number && self.attempts < MAX_AUTH_ATTEMPTS {
            State::Wanted {
                deadline: *deadline,
            }
        } else {
            State::Refused(format!("{} was refused: {message}", self.who()))
        };
        true
    }

    /// The AUTH frame to send now, if one is due: authentication is wanted and
    /// a challenge is known. `now_unix` dates the AUTH event.
    pub fn poll_transmit(&mut self, now: Instant, now_unix: u64) -> Option<ClientMessage<'static>> {
        if !matches!(self.state, State::Wanted { .. }) {
            return None;
        }
        let (Some(identity), Some(challenge)) = (&self.identity, &self.challenge) else {
            return None;
        };
        match identity.auth_event(challenge, now_unix) {
            Ok(event) => {
                self.attempts += 1;
                self.state = State::Sent {
                    id: event.id,
                    deadline: now + self.timeout,
                    challenge_number: self.challenges,
                };
                Some(ClientMessage::auth(event))
            }
            Err(why) => {
                self.state = State::Refused(format!("{}: {why}", self.who()));
                None
            }
        }
    }

    /// When the pending step (a challenge, or the AUTH's answer) is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Wanted { deadline } | State::Sent { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    /// Time has come to `now`: a step past its deadline settles as refused.
    pub fn handle_timeout(&mut self, now: Instant) {
        let why = match self.state {
            State::Wanted { deadline } if deadline <= now => format!(
                "the relay asked for authentication but sent no AUTH challenge within {}",
                super::human_duration(self.timeout)
            ),
            State::Sent { deadline, .. } if deadline <= now => format!(
                "{} got no answer within {}",
                self.who(),
                super::human_duration(self.timeout)
            ),
            _ => return,
        };
        self.state = State::Refused(why);
    }

    fn who(&self) -> String {
        match &self.identity {
            Some(identity) => format!("authentication as {}", identity.label),
            None => "authentication".to_owned(),
        }
    }
}

/// True when a relay's refusal (CLOSED or OK false) says authentication is
/// required (NIP-42's machine-readable prefix).
pub fn is_auth_required(message: &str) -> bool {
    message.starts_with("auth-required:")
}

#[cfg(test)]
mod tests {
    use nostr::JsonUtil;

    use super::*;

    fn identity(tag: Option<Vec<String>>) -> Identity {
        Identity {
            keys: Keys::generate(),
            auth_tag: tag,
            relay_tag: "ws://127.0.0.1:7777".to_owned(),
            label: "agent Ada (1a2b…)".to_owned(),
        }
    }

    fn auth_event(frame: &ClientMessage<'static>) -> Event {
        match frame {
            ClientMessage::Auth(event) => event.clone().into_owned(),
            other => panic!("expected AUTH, got {}", other.as_json()),
        }
    }

    #[test]
    fn a_challenge_is_answered_once_with_the_relay_tag_challenge_and_one_nip_oa_tag() {
        let now = Instant::now();
        let tag = vec!["auth".into(), "ab".repeat(32), "".into(), "cd".repeat(64)];
        let mut auth = Nip42::new(Some(identity(Some(tag.clone()))), Duration::from_secs(5));
        auth.on_challenge("c-1", now);
        let frame = auth
            .poll_transmit(now, 1_700_000_000)
            .expect("an AUTH frame");
        let event = auth_event(&frame);
        assert_eq!(event.kind, Kind::Authentication);
        assert_eq!(event.created_at.as_secs(), 1_700_000_000);
        let tags: Vec<Vec<String>> = event.tags.iter().map(|t| t.as_slice().to_vec()).collect();
        assert_eq!(
            tags,
            vec![
                vec!["relay".to_owned(), "ws://127.0.0.1:7777".to_owned()],
                vec!["challenge".to_owned(), "c-1".to_owned()],
                tag,
            ]
        );
        event.verify().expect("signed by the identity");
        assert_eq!(auth.status(), AuthStatus::Pending);
        assert!(
            auth.poll_transmit(now, 1_700_000_000).is_none(),
            "sent once"
        );
        // A second challenge on the same connection does not send a second AUTH.
        auth.on_challenge("c-2", now);
        assert!(auth.poll_transmit(now, 1_700_000_000).is_none());
        assert!(auth.on_ok(&event.id, true, ""));
        assert_eq!(auth.status(), AuthStatus::Authenticated);
        auth.on_challenge("c-3", now);
        assert!(auth.poll_transmit(now, 1_700_000_000).is_none());
    }

    #[test]
    fn without_an_identity_a_challenge_is_ignored_and_a_demand_is_a_refusal() {
        let now = Instant::now();
        let mut auth = Nip42::new(None, Duration::from_secs(5));
        auth.on_challenge("c", now);
        assert!(auth.poll_transmit(now, 1).is_none());
        assert_eq!(auth.status(), AuthStatus::NotAsked);
        auth.on_auth_required("auth-required: not authenticated", now);
        match auth.status() {
            AuthStatus::Refused(why) => {
                assert!(why.contains("auth-required: not authenticated"), "{why}");
                assert!(why.contains("no identity"), "{why}");
            }
            other => panic!("expected Refused, got {other:?}"),
        }
    }

    #[test]
    fn a_refused_auth_is_final_and_says_who_and_why() {
        let now = Instant::now();
        let mut auth = Nip42::new(Some(identity(None)), Duration::from_secs(5));
        auth.on_auth_required("auth-required: not authenticated", now);
        assert!(auth.poll_transmit(now, 1).is_none(), "no challenge yet");
        auth.on_challenge("c", now);
        let event = auth_event(&auth.poll_transmit(now, 1).expect("AUTH"));
        assert!(
            !auth.on_ok(&EventId::all_zeros(), false, "x"),
            "another event's OK is not the AUTH's"
        );
        assert!(auth.on_ok(&event.id, false, "restricted: not a relay member"));
        assert_eq!(
            auth.status(),
            AuthStatus::Refused(
                "authentication as agent Ada (1a2b…) was refused: restricted: not a relay member"
                    .to_owned()
            )
        );
        auth.on_challenge("c2", now);
        auth.on_auth_required("auth-required: authentication already failed", now);
        assert!(
            auth.poll_transmit(now, 1).is_none(),
            "never again on this connection"
        );
    }

    #[test]
    fn a_refusal_after_a_newer_challenge_answers_the_newest_a_bounded_number_of_times() {
        let now = Instant::now();
        let mut auth = Nip42::new(Some(identity(None)), Duration::from_secs(5));
        auth.on_challenge("c1", now);
        let mut sent = auth_event(&auth.poll_transmit(now, 1).expect("AUTH"));
        for attempt in 2..=MAX_AUTH_ATTEMPTS {
            // The relay replaced its challenge before it read the AUTH.
            let newer = format!("c{attempt}");
            auth.on_challenge(&newer, now);
            assert!(auth.on_ok(&sent.id, false, "auth-required: invalid challenge"));
            assert_eq!(auth.status(), AuthStatus::Pending, "attempt {attempt}");
            sent = auth_event(&auth.poll_transmit(now, 1).expect("AUTH again"));
            assert!(sent
                .tags
                .iter()
                .any(|t| t.as_slice() == ["challenge", newer.as_str()]));
        }
        auth.on_challenge("one more", now);
        assert!(auth.on_ok(&sent.id, false, "auth-required: invalid challenge"));
        assert!(matches!(auth.status(), AuthStatus::Refused(_)), "bounded");

        // No newer challenge (Buzz sends one per connection): final.
        let mut once = Nip42::new(Some(identity(None)), Duration::from_secs(5));
        once.on_challenge("c", now);
        let sent = auth_event(&once.poll_transmit(now, 1).expect("AUTH"));
        assert!(once.on_ok(&sent.id, false, "restricted: not a member"));
        assert!(matches!(once.status(), AuthStatus::Refused(_)));
        assert!(once.poll_transmit(now, 1).is_none());
    }

    #[test]
    fn an_unanswered_auth_or_a_missing_challenge_times_out_as_refused() {
        let now = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut silent = Nip42::new(Some(identity(None)), timeout);
        silent.on_challenge("c", now);
        silent.poll_transmit(now, 1).expect("AUTH");
        assert_eq!(silent.poll_timeout(), Some(now + timeout));
        silent.handle_timeout(now + Duration::from_secs(1));
        assert_eq!(silent.status(), AuthStatus::Pending, "not yet due");
        silent.handle_timeout(now + timeout);
        assert!(matches!(silent.status(), AuthStatus::Refused(why) if why.contains("no answer")));

        let mut no_challenge = Nip42::new(Some(identity(None)), timeout);
        no_challenge.on_auth_required("auth-required: x", now);
        no_challenge.handle_timeout(now + timeout);
        assert!(
            matches!(no_challenge.status(), AuthStatus::Refused(why) if why.contains("no AUTH challenge"))
        );
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let id = identity(None);
        let secret = id.keys.secret_key().to_secret_hex();
        let shown = format!("{id:?}");
        assert!(!shown.contains(&secret), "{shown}");
        assert!(shown.contains(&id.keys.public_key().to_hex()));
    }

    #[test]
    fn auth_required_is_the_nip42_prefix() {
        assert!(is_auth_required("auth-required: not authenticated"));
        assert!(!is_auth_required("restricted: not a relay member"));
    }
}
