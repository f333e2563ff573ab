//! The read session as tables: relay messages in (with their `now`), frames
//! and observations out. No socket, no sleeping.

use std::borrow::Cow;

use nostr::{EventBuilder, EventId, JsonUtil, Keys, Timestamp};

use nostr::{ClientMessage, RelayMessage};

use super::*;
use crate::protocol::{Input, Session};

const TIMEOUT: Duration = Duration::from_secs(5);

fn profile(keys: &Keys, created_at: u64, content: &str) -> Event {
    EventBuilder::new(Kind::Metadata, content)
        .custom_created_at(Timestamp::from_secs(created_at))
        .sign_with_keys(keys)
        .expect("sign")
}

fn identity() -> Identity {
    Identity {
        keys: Keys::generate(),
        auth_tag: Some(vec![
            "auth".into(),
            "ab".repeat(32),
            "".into(),
            "cd".repeat(64),
        ]),
        relay_tag: "ws://relay.test".into(),
        label: "agent Ada".into(),
    }
}

fn sub(n: usize) -> SubscriptionId {
    SubscriptionId::new(format!("reprofile-kind0-{n}"))
}

fn msg(message: RelayMessage<'static>) -> Input {
    Input::Message(message)
}

fn eose(n: usize) -> Input {
    msg(RelayMessage::EndOfStoredEvents(Cow::Owned(sub(n))))
}

fn closed(n: usize, text: &str) -> Input {
    msg(RelayMessage::Closed {
        subscription_id: Cow::Owned(sub(n)),
        message: Cow::Owned(text.to_owned()),
    })
}

fn event(n: usize, event: &Event) -> Input {
    msg(RelayMessage::Event {
        subscription_id: Cow::Owned(sub(n)),
        event: Cow::Owned(event.clone()),
    })
}

fn challenge(text: &str) -> Input {
    msg(RelayMessage::Auth {
        challenge: Cow::Owned(text.to_owned()),
    })
}

fn ok(id: EventId, accepted: bool, text: &str) -> Input {
    msg(RelayMessage::Ok {
        event_id: id,
        status: accepted,
        message: Cow::Owned(text.to_owned()),
    })
}

/// The frames as short words: `REQ reprofile-kind0-0`, `CLOSE …`, `AUTH`.
fn words(frames: &[ClientMessage<'static>]) -> Vec<String> {
    frames
        .iter()
        .map(|frame| match frame {
            ClientMessage::Req {
                subscription_id, ..
            } => format!("REQ {subscription_id}"),
            ClientMessage::Close(id) => format!("CLOSE {id}"),
            ClientMessage::Auth(_) => "AUTH".to_owned(),
            other => other.as_json(),
        })
        .collect()
}

fn auth_id(frames: &[ClientMessage<'static>]) -> EventId {
    frames
        .iter()
        .find_map(|frame| match frame {
            ClientMessage::Auth(event) => Some(event.id),
            _ => None,
        })
        .expect("an AUTH frame")
}

/// One author per batch.
fn session(authors: &[PublicKey], identity: Option<Identity>) -> ReadSession {
    ReadSession::new(authors.chunks(1), TIMEOUT, identity)
}

fn authors(n: usize) -> Vec<PublicKey> {
    (0..n).map(|_| Keys::generate().public_key()).collect()
}

/// What a finished session says of `author`.
fn finished(s: ReadSession, author: &PublicKey) -> RelayObservation {
    assert!(s.is_done());
    s.into_observations()
        .remove(&author.to_hex())
        .expect("every author gets an observation")
}

/// A session for `n` new authors (one per batch) that has sent its REQs at
/// `t0`: the start of most stories here.
fn reading(n: usize, identity: Option<Identity>) -> (Instant, Vec<PublicKey>, ReadSession) {
    let t0 = Instant::now();
    let who = authors(n);
    let mut s = session(&who, identity);
    s.poll_transmit(t0, 1);
    (t0, who, s)
}

#[test]
fn a_relay_that_never_asks_is_read_without_any_auth() {
    let t0 = Instant::now();
    let who = authors(2);
    let mut s = session(&who, Some(identity()));
    assert_eq!(
        words(&s.poll_transmit(t0, 1)),
        ["REQ reprofile-kind0-0", "REQ reprofile-kind0-1"]
    );
    s.handle_input(eose(0), t0);
    s.handle_input(eose(1), t0);
    assert_eq!(
        words(&s.poll_transmit(t0, 1)),
        ["CLOSE reprofile-kind0-0", "CLOSE reprofile-kind0-1"]
    );
    assert!(s.is_done());
    assert!(!s.auth_demanded());
    assert_eq!(s.auth_status(), AuthStatus::NotAsked);
    let observations = s.into_observations();
    assert!(observations
        .values()
        .all(|o| *o == RelayObservation::NoProfile));
}

#[test]
fn a_refused_req_waits_for_the_sign_in_and_goes_again() {
    let t0 = Instant::now();
    let keys = Keys::generate();
    let stored = profile(&keys, 100, r#"{"name":"Ada"}"#);
    let mut s = session(&[keys.public_key()], Some(identity()));
    assert_eq!(words(&s.poll_transmit(t0, 1)), ["REQ reprofile-kind0-0"]);
    // Buzz: the challenge at connect, then the REQ refused.
    s.handle_input(challenge("c1"), t0);
    s.handle_input(closed(0, "auth-required: not authenticated"), t0);
    let frames = s.poll_transmit(t0, 1_700_000_000);
    assert_eq!(words(&frames), ["AUTH"], "no REQ while signing in");
    let ClientMessage::Auth(auth) = &frames[0] else {
        unreachable!()
    };
    assert_eq!(auth.created_at.as_secs(), 1_700_000_000);
    assert!(s.auth_demanded());
    s.handle_input(ok(auth_id(&frames), true, ""), t0);
    assert_eq!(words(&s.poll_transmit(t0, 1)), ["REQ reprofile-kind0-0"]);
    s.handle_input(event(0, &stored), t0);
    s.handle_input(eose(0), t0);
    s.poll_transmit(t0, 1);
    assert!(s.is_done());
    assert_eq!(
        s.into_observations()[&keys.public_key().to_hex()],
        RelayObservation::Newest(existing_event(&stored))
    );
}

#[test]
fn a_challenge_alone_says_the_relay_asks_for_authentication() {
    // Under load, a relay that handles messages concurrently may serve a REQ
    // sent before the AUTH after the sign-in: no refusal is seen, yet the
    // relay wants authenticated authors for writes.
    let t0 = Instant::now();
    let who = authors(1);
    let mut s = session(&who, Some(identity()));
    s.poll_transmit(t0, 1);
    s.handle_input(challenge("c1"), t0);
    let frames = s.poll_transmit(t0, 1);
    s.handle_input(ok(auth_id(&frames), true, ""), t0);
    s.handle_input(eose(0), t0);
    assert!(s.is_done());
    assert!(s.auth_demanded());
    assert_eq!(s.auth_status(), AuthStatus::Authenticated);
}

#[test]
fn a_refusal_of_a_req_sent_before_the_sign_in_completed_sends_it_again() {
    let (t0, who, mut s) = reading(1, Some(identity()));
    s.handle_input(challenge("c1"), t0);
    let frames = s.poll_transmit(t0, 1);
    assert_eq!(words(&frames), ["AUTH"]);
    // The relay answers the AUTH before the earlier REQ's refusal.
    s.handle_input(ok(auth_id(&frames), true, ""), t0);
    s.handle_input(closed(0, "auth-required: not authenticated"), t0);
    assert_eq!(words(&s.poll_transmit(t0, 1)), ["REQ reprofile-kind0-0"]);
    s.handle_input(eose(0), t0);
    assert!(s.is_done());
    assert_eq!(
        s.into_observations()[&who[0].to_hex()],
        RelayObservation::NoProfile
    );
}

#[test]
fn a_refused_identity_ends_the_held_batches_refused_with_the_relays_message() {
    let (t0, _, mut s) = reading(2, Some(identity()));
    s.handle_input(challenge("c1"), t0);
    s.handle_input(closed(0, "auth-required: not authenticated"), t0);
    s.handle_input(closed(1, "auth-required: not authenticated"), t0);
    let frames = s.poll_transmit(t0, 1);
    s.handle_input(
        ok(auth_id(&frames), false, "restricted: not a relay member"),
        t0,
    );
    assert!(s.poll_transmit(t0, 1).is_empty(), "nothing more to send");
    assert!(s.is_done());
    assert_eq!(s.refused_authors().len(), 2);
    for observation in s.into_observations().values() {
        assert_eq!(
            *observation,
            RelayObservation::AuthRefused(
                "authentication as agent Ada was refused: restricted: not a relay member"
                    .to_owned()
            )
        );
    }
}

#[test]
fn without_an_identity_a_demand_for_auth_is_refused_not_missing() {
    let (t0, who, mut s) = reading(1, None);
    s.handle_input(challenge("c1"), t0);
    assert!(
        s.poll_transmit(t0, 1).is_empty(),
        "no AUTH without an identity"
    );
    s.handle_input(closed(0, "auth-required: not authenticated"), t0);
    assert!(s.is_done());
    match &s.into_observations()[&who[0].to_hex()] {
        RelayObservation::AuthRefused(why) => {
            assert!(why.contains("auth-required: not authenticated"), "{why}");
            assert!(why.contains("no identity"), "{why}");
        }
        other => panic!("expected AuthRefused, got {other:?}"),
    }
}

#[test]
fn an_auth_that_gets_no_answer_ends_the_held_batches_refused() {
    let (t0, who, mut s) = reading(1, Some(identity()));
    s.handle_input(challenge("c1"), t0);
    s.handle_input(closed(0, "auth-required: not authenticated"), t0);
    s.poll_transmit(t0, 1);
    assert_eq!(s.poll_timeout(), Some(t0 + TIMEOUT));
    s.handle_timeout(t0 + TIMEOUT);
    assert!(matches!(
        finished(s, &who[0]),
        RelayObservation::AuthRefused(why) if why.contains("no answer")
    ));
}

#[test]
fn a_closed_without_auth_required_is_unreadable_with_the_relays_message() {
    let (t0, who, mut s) = reading(1, Some(identity()));
    s.handle_input(closed(0, "blocked: \x1b[31mno"), t0);
    assert!(s.is_done());
    assert_eq!(
        s.into_observations()[&who[0].to_hex()],
        RelayObservation::Unreadable(
            "relay closed the subscription: blocked: \\u{1b}[31mno".to_owned()
        )
    );
}

#[test]
fn events_after_eose_and_of_other_authors_do_not_change_the_answer() {
    let t0 = Instant::now();
    let keys = Keys::generate();
    let stranger = Keys::generate();
    let stored = profile(&keys, 100, r#"{"v":1}"#);
    let live = profile(&keys, 200, r#"{"v":2}"#);
    let mut s = session(&[keys.public_key()], None);
    s.poll_transmit(t0, 1);
    s.handle_input(event(0, &profile(&stranger, 300, "{}")), t0);
    s.handle_input(event(0, &stored), t0);
    s.handle_input(eose(0), t0);
    s.handle_input(event(0, &live), t0);
    assert_eq!(
        s.into_observations()[&keys.public_key().to_hex()],
        RelayObservation::Newest(existing_event(&stored))
    );
}

#[test]
fn a_reader_that_falls_behind_reports_unreadable_and_closes_its_subscriptions() {
    let (t0, who, mut s) = reading(1, None);
    s.handle_input(Input::Lagged(7), t0);
    assert_eq!(words(&s.poll_transmit(t0, 1)), ["CLOSE reprofile-kind0-0"]);
    assert!(matches!(
        finished(s, &who[0]),
        RelayObservation::Unreadable(why) if why.contains("lost 7 relay messages")
    ));
}

#[test]
fn a_lost_connection_makes_every_unfinished_batch_unreadable() {
    let (t0, who, mut s) = reading(2, None);
    s.handle_input(eose(0), t0);
    s.handle_input(Input::Lost("connection dropped".into()), t0);
    assert!(s.is_done());
    let observations = s.into_observations();
    assert_eq!(observations[&who[0].to_hex()], RelayObservation::NoProfile);
    assert_eq!(
        observations[&who[1].to_hex()],
        RelayObservation::Unreadable("connection dropped before EOSE".into())
    );
}

#[test]
fn subscriptions_lost_while_the_relay_answers_others_are_asked_again_once_at_their_deadline() {
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_millis(10);
    let who = authors(3);
    let mut s = session(&who, None);
    s.poll_transmit(t0, 1);
    s.handle_input(eose(2), t1);
    s.poll_transmit(t1, 1);
    // Batches 0 and 1 never get their EOSE; the relay ended batch 2 after
    // they were sent. Two left open: no early try, their deadline.
    assert_eq!(s.poll_timeout(), Some(t0 + TIMEOUT));
    s.handle_timeout(t0 + TIMEOUT);
    assert_eq!(
        words(&s.poll_transmit(t0 + TIMEOUT, 1)),
        [
            "CLOSE reprofile-kind0-0",
            "REQ reprofile-kind0-0-again",
            "CLOSE reprofile-kind0-1",
            "REQ reprofile-kind0-1-again"
        ]
    );
    assert!(!s.is_done());
    // Lost again: unknown, no third try.
    s.handle_timeout(t0 + TIMEOUT * 2);
    assert!(s.is_done());
    assert!(s.poll_transmit(t0 + TIMEOUT * 2, 1).is_empty());
    let observations = s.into_observations();
    for author in &who[..2] {
        assert!(matches!(
            &observations[&author.to_hex()],
            RelayObservation::Unreadable(why) if why.starts_with("timed out after 5 s")
        ));
    }
}

#[test]
fn the_last_subscription_left_open_is_asked_again_once_the_relay_is_silent_on_it_for_the_grace() {
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_millis(10);
    let keys = Keys::generate();
    let who = [authors(2), vec![keys.public_key()]].concat();
    let mut s = session(&who, None);
    s.poll_transmit(t0, 1);
    // The relay ends batches 0 and 1; batch 2, the last open, sends one
    // event and then nothing.
    s.handle_input(eose(0), t1);
    assert_eq!(s.poll_timeout(), Some(t0 + TIMEOUT), "two still open");
    s.handle_input(eose(1), t1);
    s.poll_transmit(t1, 1);
    assert_eq!(s.poll_timeout(), Some(t1 + STALL_GRACE));
    let t2 = t1 + Duration::from_secs(1);
    let stored = profile(&keys, 100, r#"{"name":"Ada"}"#);
    s.handle_input(event(2, &stored), t2);
    // An event says it is alive: the grace runs from it.
    assert_eq!(s.poll_timeout(), Some(t2 + STALL_GRACE));
    s.handle_timeout(t2 + STALL_GRACE - Duration::from_millis(1));
    assert!(s.poll_transmit(t2, 1).is_empty());
    s.handle_timeout(t2 + STALL_GRACE);
    let again = t2 + STALL_GRACE;
    assert_eq!(
        words(&s.poll_transmit(again, 1)),
        ["CLOSE reprofile-kind0-2", "REQ reprofile-kind0-2-again"]
    );
    // Once only: the fresh subscription has its whole timeout.
    assert_eq!(s.poll_timeout(), Some(again + TIMEOUT));
    s.handle_input(
        msg(RelayMessage::EndOfStoredEvents(Cow::Owned(
            SubscriptionId::new("reprofile-kind0-2-again"),
        ))),
        again,
    );
    // The event the lost subscription delivered is kept.
    assert_eq!(
        finished(s, &keys.public_key()),
        RelayObservation::Newest(existing_event(&stored))
    );
}

#[test]
fn a_subscription_overtaken_by_a_whole_window_is_asked_again_after_the_grace_not_at_its_deadline() {
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_millis(10);
    let who = authors(2 * MAX_SUBSCRIPTIONS_IN_FLIGHT);
    let mut s = session(&who, None);
    assert_eq!(s.poll_transmit(t0, 1).len(), MAX_SUBSCRIPTIONS_IN_FLIGHT);
    // Batch 0 is never answered; the relay ends every other one in turn.
    for n in 1..MAX_SUBSCRIPTIONS_IN_FLIGHT {
        s.handle_input(eose(n), t1);
    }
    s.poll_transmit(t1, 1);
    // Overtaken by a window less one: it keeps its deadline.
    assert_eq!(s.poll_timeout(), Some(t0 + TIMEOUT));
    s.handle_input(eose(MAX_SUBSCRIPTIONS_IN_FLIGHT), t1);
    // By a whole window: due once it has been in flight for the grace.
    assert_eq!(s.poll_timeout(), Some(t0 + STALL_GRACE));
    s.handle_timeout(t0 + STALL_GRACE - Duration::from_millis(1));
    assert!(!words(&s.poll_transmit(t1, 1))
        .iter()
        .any(|w| w.contains("-again")));
    s.handle_timeout(t0 + STALL_GRACE);
    assert_eq!(
        words(&s.poll_transmit(t0 + STALL_GRACE, 1)),
        ["CLOSE reprofile-kind0-0", "REQ reprofile-kind0-0-again"]
    );
    // Asked again once: the fresh subscription has a whole timeout.
    let again = t0 + STALL_GRACE;
    for n in MAX_SUBSCRIPTIONS_IN_FLIGHT + 1..2 * MAX_SUBSCRIPTIONS_IN_FLIGHT {
        s.handle_input(eose(n), again);
    }
    assert_eq!(s.poll_timeout(), Some(again + TIMEOUT));
    s.handle_input(
        msg(RelayMessage::EndOfStoredEvents(Cow::Owned(
            SubscriptionId::new("reprofile-kind0-0-again"),
        ))),
        again,
    );
    assert!(s.is_done());
    assert_eq!(finished(s, &who[0]), RelayObservation::NoProfile);
}

#[test]
fn a_silent_relay_costs_one_timeout_and_leaves_no_batch_unsent_as_missing() {
    let t0 = Instant::now();
    let who = authors(MAX_SUBSCRIPTIONS_IN_FLIGHT + 3);
    let mut s = session(&who, None);
    assert_eq!(s.poll_transmit(t0, 1).len(), MAX_SUBSCRIPTIONS_IN_FLIGHT);
    s.handle_input(
        msg(RelayMessage::Notice(Cow::Owned("slow down".into()))),
        t0,
    );
    s.handle_timeout(t0 + TIMEOUT);
    assert!(s.is_done());
    let observations = s.into_observations();
    assert_eq!(observations.len(), who.len());
    assert!(observations.values().all(|o| matches!(
        o,
        RelayObservation::Unreadable(why) if why.contains("last NOTICE from the relay: slow down")
    )));
}

#[test]
fn newer_means_greater_created_at_then_lower_id() {
    let keys = Keys::generate();
    let old = profile(&keys, 100, "{}");
    let new = profile(&keys, 200, "{}");
    assert!(is_newer(&new, &old));
    assert!(!is_newer(&old, &new));
    let a = profile(&keys, 300, r#"{"v":1}"#);
    let b = profile(&keys, 300, r#"{"v":2}"#);
    let (low, high) = if a.id < b.id { (a, b) } else { (b, a) };
    assert!(
        low.id.to_hex() < high.id.to_hex(),
        "byte order is hex order"
    );
    assert!(is_newer(&low, &high));
    assert!(!is_newer(&high, &low));
    assert!(!is_newer(&low, &low));
}

/// Records what a read tells its observer.
#[derive(Debug, Default)]
struct Told {
    no_profile: std::sync::Mutex<Vec<Vec<PublicKey>>>,
}

impl ReadObserver for Told {
    fn authentic(&self, _event: &Event) {}
    fn no_profile(&self, authors: &[PublicKey]) {
        self.no_profile.lock().unwrap().push(authors.to_vec());
    }
}

#[test]
fn the_observer_hears_at_each_eose_which_authors_have_no_profile() {
    let t0 = Instant::now();
    let ada = Keys::generate();
    let mut who = authors(4);
    who[0] = ada.public_key();
    let told = Arc::new(Told::default());
    // Two batches of two authors.
    let mut s = ReadSession::new(who.chunks(2), TIMEOUT, None)
        .with_observer(Some(told.clone() as Arc<dyn ReadObserver>));
    s.poll_transmit(t0, 1);
    // The first batch: one author with a profile. Before its EOSE, nothing.
    s.handle_input(event(0, &profile(&ada, 10, r#"{"name":"Ada"}"#)), t0);
    assert!(told.no_profile.lock().unwrap().is_empty());
    s.handle_input(eose(0), t0);
    // The second batch ends refused: its authors are unknown, not missing.
    s.handle_input(closed(1, "blocked: no"), t0);
    assert_eq!(*told.no_profile.lock().unwrap(), vec![vec![who[1]]]);
    assert!(matches!(
        finished(s, &who[2]),
        RelayObservation::Unreadable(_)
    ));
}

/// Today's Buzz relay ends a REQ over quota with `CLOSED "rate-limited:
/// quota exceeded; retry in Ns"`: no REQ goes out before the delay, then
/// the same batch is asked again; the session wakes itself for it.
#[test]
fn a_rate_limited_req_is_asked_again_after_the_delay_the_relay_asks() {
    let (t0, who, mut s) = reading(2, None);
    s.handle_input(closed(0, "rate-limited: quota exceeded; retry in 3s"), t0);
    s.handle_input(eose(1), t0);
    let later = t0 + Duration::from_secs(1);
    assert_eq!(
        words(&s.poll_transmit(later, 1)),
        ["CLOSE reprofile-kind0-1"]
    );
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(3)));
    assert!(!s.is_done(), "the refused batch is not failed");
    let due = t0 + Duration::from_secs(3);
    s.handle_timeout(due);
    assert_eq!(words(&s.poll_transmit(due, 1)), ["REQ reprofile-kind0-0"]);
    s.handle_input(eose(0), due);
    s.poll_transmit(due, 1);
    assert_eq!(finished(s, &who[0]), RelayObservation::NoProfile);
}

/// Without a delay (`shared admission unavailable`, or a NOTICE): a short
/// wait; a batch refused more than [`MAX_RATE_LIMITED`] times is
/// unreadable with the relay's words, never "no profile".
#[test]
fn a_relay_that_keeps_rate_limiting_a_req_makes_it_unreadable() {
    let (mut now, who, mut s) = reading(1, None);
    for _ in 0..MAX_RATE_LIMITED {
        s.handle_input(closed(0, "rate-limited: shared admission unavailable"), now);
        assert!(words(&s.poll_transmit(now, 1)).is_empty());
        now += RATE_LIMITED_WAIT;
        s.handle_timeout(now);
        assert_eq!(words(&s.poll_transmit(now, 1)), ["REQ reprofile-kind0-0"]);
    }
    s.handle_input(closed(0, "rate-limited: shared admission unavailable"), now);
    assert!(matches!(
        finished(s, &who[0]),
        RelayObservation::Unreadable(why) if why.contains("rate-limited: shared admission unavailable")
    ));
}

#[test]
fn a_rate_limited_notice_holds_the_next_reqs() {
    let t0 = Instant::now();
    let who = authors(MAX_SUBSCRIPTIONS_IN_FLIGHT + 1);
    let mut s = session(&who, None);
    assert_eq!(s.poll_transmit(t0, 1).len(), MAX_SUBSCRIPTIONS_IN_FLIGHT);
    s.handle_input(
        msg(RelayMessage::Notice(Cow::Owned(
            "rate-limited: quota exceeded; retry in 2s".into(),
        ))),
        t0,
    );
    s.handle_input(eose(0), t0);
    // The window has room, but the relay asked to wait.
    assert_eq!(words(&s.poll_transmit(t0, 1)), ["CLOSE reprofile-kind0-0"]);
    let due = t0 + Duration::from_secs(2);
    assert_eq!(s.poll_timeout(), Some(due));
    s.handle_timeout(due);
    assert_eq!(
        words(&s.poll_transmit(due, 1)),
        [format!("REQ reprofile-kind0-{MAX_SUBSCRIPTIONS_IN_FLIGHT}")]
    );
}

/// Signed in, a reader sends at most [`PACE_LIMIT`] REQs per
/// [`PACE_WINDOW`] (the relay's quota is 50 frames per 5 s per identity);
/// a connection that never signed in is not paced.
#[test]
fn a_signed_in_reader_paces_its_reqs_under_the_relays_quota() {
    let t0 = Instant::now();
    let who = authors(PACE_LIMIT + 5);
    let mut s = session(&who, Some(identity()));
    s.handle_input(challenge("c1"), t0);
    let frames = s.poll_transmit(t0, 1_700_000_000);
    assert_eq!(words(&frames), ["AUTH"]);
    s.handle_input(ok(auth_id(&frames), true, ""), t0);
    let mut sent = 0;
    let mut now = t0;
    // Each REQ answered at once: only the pace holds them back.
    loop {
        let reqs: Vec<String> = words(&s.poll_transmit(now, 1))
            .into_iter()
            .filter(|w| w.starts_with("REQ"))
            .collect();
        if reqs.is_empty() {
            break;
        }
        for req in &reqs {
            let n: usize = req.rsplit('-').next().unwrap().parse().unwrap();
            s.handle_input(eose(n), now);
        }
        sent += reqs.len();
        now += Duration::from_millis(10);
    }
    assert_eq!(sent, PACE_LIMIT, "no more than the pace in one window");
    let free = s.poll_timeout().expect("woken for the rest");
    assert_eq!(free, t0 + PACE_WINDOW);
    s.handle_timeout(free);
    // The first window's earliest REQs have aged out: the last five go.
    let rest = words(&s.poll_transmit(free, 1));
    assert_eq!(rest.iter().filter(|w| w.starts_with("REQ")).count(), 5);

    // Not signed in: all at once (window permitting).
    let plenty = authors(MAX_SUBSCRIPTIONS_IN_FLIGHT);
    let mut open = session(&plenty, None);
    assert_eq!(open.poll_transmit(t0, 1).len(), MAX_SUBSCRIPTIONS_IN_FLIGHT);
}
