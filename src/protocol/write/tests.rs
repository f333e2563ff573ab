//! One author's publish as tables: relay messages in (with their `now`),
//! frames and the delivery out. No socket, no sleeping.

use std::borrow::Cow;

use nostr::{EventBuilder, EventId, Keys, Kind, Timestamp};

use super::*;

const TIMEOUT: Duration = Duration::from_secs(5);

fn backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(400),
        max_retries: 2,
    }
}

struct World {
    keys: Keys,
    event: Event,
    tag: Vec<String>,
}

fn world() -> World {
    let keys = Keys::generate();
    let event = EventBuilder::new(Kind::Metadata, r#"{"name":"Ada"}"#)
        .custom_created_at(Timestamp::from_secs(1_700_000_000))
        .sign_with_keys(&keys)
        .expect("sign");
    let owner = Keys::generate();
    let tag = crate::core::nip_oa::sign(&owner, &keys.public_key().to_hex(), "");
    World { keys, event, tag }
}

fn session(w: &World, sign_in_first: bool, now: Instant) -> AuthorPublish {
    let identity = Identity {
        keys: w.keys.clone(),
        auth_tag: Some(w.tag.clone()),
        relay_tag: "ws://relay.test".into(),
        label: "agent Ada".into(),
    };
    AuthorPublish::new(
        w.event.clone(),
        identity,
        sign_in_first,
        TIMEOUT,
        backoff(),
        0.0,
        now,
    )
}

fn challenge() -> Input {
    Input::Message(RelayMessage::Auth {
        challenge: Cow::Owned("c1".into()),
    })
}

fn ok(id: EventId, accepted: bool, text: &str) -> Input {
    Input::Message(RelayMessage::Ok {
        event_id: id,
        status: accepted,
        message: Cow::Owned(text.into()),
    })
}

/// The AUTH event among `frames`, if any, and whether the EVENT is there.
/// A session that signs in first, was challenged and sent its AUTH, with
/// that AUTH event's id.
fn challenged(w: &World, t0: Instant) -> (AuthorPublish, EventId) {
    let mut s = session(w, true, t0);
    s.handle_input(challenge(), t0);
    let (auth, _) = split(&s.poll_transmit(t0, 1), w);
    (s, auth.expect("AUTH").id)
}

fn split(frames: &[ClientMessage<'static>], w: &World) -> (Option<Event>, bool) {
    let mut auth = None;
    let mut sent = false;
    for frame in frames {
        match frame {
            ClientMessage::Auth(event) => auth = Some(event.clone().into_owned()),
            ClientMessage::Event(event) => {
                assert_eq!(
                    event.id, w.event.id,
                    "the same signed event, never re-signed"
                );
                sent = true;
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    (auth, sent)
}

#[test]
fn signs_in_as_the_author_with_its_nip_oa_tag_before_the_event_goes() {
    let w = world();
    let t0 = Instant::now();
    let mut s = session(&w, true, t0);
    assert_eq!(split(&s.poll_transmit(t0, 1), &w), (None, false));
    assert_eq!(
        s.poll_timeout(),
        Some(t0 + PROVOKE_AFTER),
        "waits a moment for a challenge"
    );
    s.handle_input(challenge(), t0);
    let (auth, sent) = split(&s.poll_transmit(t0, 1_700_000_100), &w);
    let auth = auth.expect("AUTH");
    assert!(!sent, "the event waits for the relay's OK to the AUTH");
    assert_eq!(auth.pubkey, w.keys.public_key(), "signed in as the author");
    assert_eq!(auth.created_at.as_secs(), 1_700_000_100);
    let auth_tags: Vec<Vec<String>> = auth
        .tags
        .iter()
        .filter(|t| t.as_slice()[0] == "auth")
        .map(|t| t.as_slice().to_vec())
        .collect();
    assert_eq!(auth_tags, vec![w.tag.clone()], "exactly one auth tag");
    s.handle_input(ok(auth.id, true, ""), t0);
    assert_eq!(split(&s.poll_transmit(t0, 1), &w), (None, true));
    s.handle_input(ok(w.event.id, true, ""), t0);
    assert!(s.is_done());
    assert_eq!(s.delivery(), Some(&Delivery::Accepted));
}

#[test]
fn a_refused_sign_in_fails_with_the_relays_message_and_sends_nothing() {
    let w = world();
    let t0 = Instant::now();
    let (mut s, auth) = challenged(&w, t0);
    s.handle_input(ok(auth, false, "restricted: not a relay member"), t0);
    assert_eq!(split(&s.poll_transmit(t0, 1), &w), (None, false));
    assert_eq!(
        s.delivery(),
        Some(&Delivery::Refused(
            "authentication as agent Ada was refused: restricted: not a relay member".into()
        ))
    );
}

#[test]
fn an_event_refused_after_sign_in_fails_with_the_relays_message() {
    let w = world();
    let t0 = Instant::now();
    let (mut s, auth) = challenged(&w, t0);
    s.handle_input(ok(auth, true, ""), t0);
    s.poll_transmit(t0, 1);
    s.handle_input(
        ok(
            w.event.id,
            false,
            "invalid: event pubkey does not match authenticated identity",
        ),
        t0,
    );
    assert_eq!(
        s.delivery(),
        Some(&Delivery::Refused(
            "invalid: event pubkey does not match authenticated identity".into()
        ))
    );
}

#[test]
fn an_event_sent_at_once_signs_in_when_the_relay_demands_it_and_goes_again() {
    let w = world();
    let t0 = Instant::now();
    let mut s = session(&w, false, t0);
    assert_eq!(split(&s.poll_transmit(t0, 1), &w), (None, true));
    s.handle_input(
        ok(w.event.id, false, "auth-required: not authenticated"),
        t0,
    );
    assert_eq!(split(&s.poll_transmit(t0, 1), &w), (None, false));
    s.handle_input(challenge(), t0);
    let (auth, sent) = split(&s.poll_transmit(t0, 1), &w);
    assert!(!sent);
    s.handle_input(ok(auth.expect("AUTH").id, true, ""), t0);
    assert_eq!(split(&s.poll_transmit(t0, 1), &w), (None, true));
    s.handle_input(ok(w.event.id, false, "duplicate: already have it"), t0);
    assert_eq!(s.delivery(), Some(&Delivery::Accepted));
}

#[test]
fn rate_limits_resend_the_same_event_after_the_backoff_then_give_up() {
    let w = world();
    let t0 = Instant::now();
    let mut s = session(&w, false, t0);
    s.poll_transmit(t0, 1);
    s.handle_input(ok(w.event.id, false, "rate-limited: slow down"), t0);
    // jitter 0: half of the first delay.
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(50)));
    assert_eq!(split(&s.poll_transmit(t0, 1), &w), (None, false));
    let t1 = t0 + Duration::from_millis(50);
    s.handle_timeout(t1);
    assert_eq!(split(&s.poll_transmit(t1, 1), &w), (None, true));
    // Buzz sheds load with a NOTICE and no OK: the same as a rate limit.
    s.handle_input(
        Input::Message(RelayMessage::Notice(Cow::Owned(
            "rate-limited: too many concurrent requests".into(),
        ))),
        t1,
    );
    let t2 = t1 + Duration::from_millis(100);
    s.handle_timeout(t2);
    assert_eq!(split(&s.poll_transmit(t2, 1), &w), (None, true));
    s.handle_input(ok(w.event.id, false, "rate-limited: slow down"), t2);
    assert!(matches!(
        s.delivery(),
        Some(Delivery::Failed(why)) if why.contains("still rate-limited after 3 attempts")
    ));
}

#[test]
fn silence_and_lost_connections_fail_without_a_refusal() {
    let w = world();
    let t0 = Instant::now();
    let mut silent = session(&w, false, t0);
    silent.poll_transmit(t0, 1);
    silent.handle_timeout(t0 + TIMEOUT);
    assert_eq!(
        silent.delivery(),
        Some(&Delivery::Failed("no OK from the relay within 5 s".into()))
    );

    let mut no_challenge = session(&w, true, t0);
    no_challenge.poll_transmit(t0, 1);
    no_challenge.handle_timeout(t0 + TIMEOUT);
    assert!(matches!(
        no_challenge.delivery(),
        Some(Delivery::Failed(why)) if why.contains("no AUTH challenge")
    ));

    let mut dropped = session(&w, false, t0);
    dropped.poll_transmit(t0, 1);
    dropped.handle_input(Input::Lost("connection dropped".into()), t0);
    assert_eq!(
        dropped.delivery(),
        Some(&Delivery::Failed(
            "connection dropped before the relay answered".into()
        ))
    );
}

/// Today's Buzz relay refuses over quota with `retry in Ns`, as `OK false`
/// since PR #6961 and as a bare NOTICE before it: each waits the delay the
/// relay asks (never less than the backoff), then sends the same event
/// again. `shared admission unavailable` has no delay: the backoff's.
#[test]
fn todays_buzz_rate_limits_wait_the_delay_the_relay_asks() {
    let w = world();
    for (refusal, wait) in [
        (
            ok(
                w.event.id,
                false,
                "rate-limited: quota exceeded; retry in 3s",
            ),
            Duration::from_secs(3),
        ),
        (
            Input::Message(RelayMessage::Notice(Cow::Owned(
                "rate-limited: quota exceeded; retry in 2s".into(),
            ))),
            Duration::from_secs(2),
        ),
        (
            ok(
                w.event.id,
                false,
                "rate-limited: shared admission unavailable",
            ),
            Duration::from_millis(50),
        ),
    ] {
        let t0 = Instant::now();
        let mut s = session(&w, false, t0);
        assert_eq!(split(&s.poll_transmit(t0, 1), &w), (None, true));
        s.handle_input(refusal, t0);
        assert_eq!(s.poll_timeout(), Some(t0 + wait));
        s.handle_timeout(t0 + wait - Duration::from_millis(1));
        assert_eq!(split(&s.poll_transmit(t0 + wait, 1), &w), (None, false));
        s.handle_timeout(t0 + wait);
        assert_eq!(
            split(&s.poll_transmit(t0 + wait, 1), &w),
            (None, true),
            "the same event, again"
        );
        s.handle_input(ok(w.event.id, true, ""), t0 + wait);
        assert_eq!(s.delivery(), Some(&Delivery::Accepted));
    }
}

/// A relay that challenges only on demand (nostr-relay-builder's): no
/// challenge comes at connect, so after [`PROVOKE_AFTER`] the event goes to
/// provoke one; its `auth-required:` refusal and the challenge make the
/// session sign in and send the same event again. Before: it waited for a
/// challenge that never came, and failed.
#[test]
fn a_relay_that_challenges_on_demand_is_provoked_by_the_event() {
    let w = world();
    let t0 = Instant::now();
    let mut s = session(&w, true, t0);
    assert_eq!(split(&s.poll_transmit(t0, 1), &w), (None, false));
    let t1 = t0 + PROVOKE_AFTER;
    assert_eq!(s.poll_timeout(), Some(t1));
    s.handle_timeout(t1);
    assert_eq!(split(&s.poll_transmit(t1, 1), &w), (None, true), "provoked");
    s.handle_input(challenge(), t1);
    s.handle_input(ok(w.event.id, false, "auth-required: you must auth"), t1);
    let (auth, sent) = split(&s.poll_transmit(t1, 1_700_000_000), &w);
    let auth = auth.expect("the AUTH goes once challenged");
    assert!(!sent, "the event waits for the sign-in");
    s.handle_input(ok(auth.id, true, ""), t1);
    assert_eq!(split(&s.poll_transmit(t1, 1), &w), (None, true), "again");
    s.handle_input(ok(w.event.id, true, ""), t1);
    assert_eq!(s.delivery(), Some(&Delivery::Accepted));
}

/// The relay answers the AUTH before the refusal of an event sent before
/// the sign-in completed: that refusal means "not yet", so the event goes
/// again, signed in. Refused once signed in, it is the relay's word.
#[test]
fn an_auth_required_for_an_event_sent_before_the_sign_in_sends_it_again() {
    let w = world();
    let t0 = Instant::now();
    let mut s = session(&w, false, t0);
    assert_eq!(split(&s.poll_transmit(t0, 1), &w), (None, true));
    s.handle_input(challenge(), t0);
    s.handle_input(
        ok(w.event.id, false, "auth-required: not authenticated"),
        t0,
    );
    let (auth, _) = split(&s.poll_transmit(t0, 1_700_000_000), &w);
    s.handle_input(ok(auth.expect("AUTH").id, true, ""), t0);
    assert_eq!(split(&s.poll_transmit(t0, 1), &w), (None, true));
    // Signed in now, and refused again: final.
    s.handle_input(ok(w.event.id, false, "auth-required: not a member"), t0);
    assert!(matches!(s.delivery(), Some(Delivery::Refused(why)) if why.contains("not a member")));

    // The AUTH's OK overtakes the first refusal: the event goes again.
    let mut late = session(&w, false, t0);
    late.poll_transmit(t0, 1);
    late.handle_input(challenge(), t0);
    late.handle_input(
        ok(w.event.id, false, "auth-required: not authenticated"),
        t0,
    );
    let (auth, _) = split(&late.poll_transmit(t0, 1_700_000_000), &w);
    late.handle_input(ok(auth.expect("AUTH").id, true, ""), t0);
    late.handle_input(
        ok(w.event.id, false, "auth-required: not authenticated"),
        t0,
    );
    assert_eq!(
        late.delivery(),
        None,
        "not refused: sent before the sign-in"
    );
    assert!(split(&late.poll_transmit(t0, 1), &w).1, "sent again");
}
