//! The pipelined publisher as tables: relay messages in (with their `now`),
//! frames, accepted events and ends out. No socket, no sleeping.

use std::borrow::Cow;

use nostr::{EventBuilder, Keys, Kind, Timestamp};

use nostr::{ClientMessage, RelayMessage};

use super::*;
use crate::protocol::{Input, Session};

const TIMEOUT: Duration = Duration::from_secs(5);
const RELAY: &str = "ws://127.0.0.1:4848";

fn config(max_in_flight: usize) -> PipelineConfig {
    PipelineConfig {
        max_in_flight,
        publish_timeout: TIMEOUT,
        backoff: Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            max_retries: 2,
        },
    }
}

/// One agent's event and sign-in identity (its NIP-OA tag, the relay
/// connected to).
struct Agent {
    keys: Keys,
    event: Event,
    tag: Vec<String>,
}

fn agents(n: usize) -> Vec<Agent> {
    let owner = Keys::generate();
    (0..n)
        .map(|index| {
            let keys = Keys::generate();
            let event = EventBuilder::new(Kind::Metadata, format!(r#"{{"name":"agent-{index}"}}"#))
                .custom_created_at(Timestamp::from_secs(1_700_000_000))
                .sign_with_keys(&keys)
                .expect("sign");
            let tag = crate::core::nip_oa::sign(&owner, &keys.public_key().to_hex(), "");
            Agent { keys, event, tag }
        })
        .collect()
}

fn identity(agent: &Agent) -> Identity {
    Identity {
        keys: agent.keys.clone(),
        auth_tag: Some(agent.tag.clone()),
        relay_tag: RELAY.into(),
        label: format!("agent {}", agent.keys.public_key().to_hex()),
    }
}

/// A connected session publishing one event per agent.
fn session(agents: &[Agent], max_in_flight: usize) -> PipelinedPublish {
    let jobs = agents
        .iter()
        .map(|agent| PublishJob {
            event: agent.event.clone(),
            identity: identity(agent),
        })
        .collect();
    let mut s = PipelinedPublish::new(jobs, config(max_in_flight), 7);
    assert_eq!(s.next_connection(), NextConnection::After(Duration::ZERO));
    s.connected();
    s
}

fn ok(id: EventId, accepted: bool, text: &str) -> Input {
    Input::Message(RelayMessage::Ok {
        event_id: id,
        status: accepted,
        message: Cow::Owned(text.into()),
    })
}

fn challenge(text: &str) -> Input {
    Input::Message(RelayMessage::Auth {
        challenge: Cow::Owned(text.into()),
    })
}

/// The AUTH events and the EVENTs' ids among `frames`, in order.
fn split(frames: &[ClientMessage<'static>]) -> (Vec<Event>, Vec<EventId>) {
    let mut auths = Vec::new();
    let mut events = Vec::new();
    for frame in frames {
        match frame {
            ClientMessage::Auth(event) => auths.push(event.clone().into_owned()),
            ClientMessage::Event(event) => events.push(event.id),
            other => panic!("unexpected frame {other:?}"),
        }
    }
    (auths, events)
}

fn events_sent(s: &mut PipelinedPublish, now: Instant) -> Vec<EventId> {
    let (auths, events) = split(&s.poll_transmit(now, 1_700_000_100));
    assert!(auths.is_empty(), "no AUTH expected");
    events
}

fn ids(agents: &[Agent], which: &[usize]) -> Vec<EventId> {
    which.iter().map(|&i| agents[i].event.id).collect()
}

fn accepted(s: &mut PipelinedPublish) -> Vec<usize> {
    std::iter::from_fn(|| s.poll_accepted()).collect()
}

fn ends(s: PipelinedPublish) -> Vec<PipelineEnd> {
    s.into_ends()
}

fn delivered(delivery: Delivery) -> PipelineEnd {
    PipelineEnd::Delivered(delivery)
}

fn tag_values(event: &Event, name: &str) -> Vec<Vec<String>> {
    event
        .tags
        .iter()
        .filter(|t| t.as_slice()[0] == name)
        .map(|t| t.as_slice().to_vec())
        .collect()
}

#[test]
fn at_most_max_in_flight_events_await_an_ok_and_each_ok_frees_a_slot_and_is_reported_at_once() {
    let a = agents(3);
    let t0 = Instant::now();
    let mut s = session(&a, 2);
    assert_eq!(events_sent(&mut s, t0), ids(&a, &[0, 1]));
    assert!(events_sent(&mut s, t0).is_empty(), "the window is full");
    assert_eq!(s.poll_timeout(), Some(t0 + TIMEOUT));

    s.handle_input(ok(a[1].event.id, true, ""), t0);
    assert_eq!(accepted(&mut s), vec![1], "reported as its OK arrives");
    assert_eq!(events_sent(&mut s, t0), ids(&a, &[2]));
    s.handle_input(ok(a[0].event.id, false, "duplicate: have it"), t0);
    s.handle_input(ok(a[2].event.id, true, ""), t0);
    assert_eq!(accepted(&mut s), vec![0, 2]);
    assert!(s.is_done());
    assert_eq!(s.next_connection(), NextConnection::Finished);
    assert_eq!(ends(s), vec![delivered(Delivery::Accepted); 3]);
}

#[test]
fn refusals_are_the_relays_message_and_an_ok_for_no_event_in_flight_changes_nothing() {
    let a = agents(2);
    let t0 = Instant::now();
    let mut s = session(&a, 8);
    events_sent(&mut s, t0);
    s.handle_input(ok(EventId::all_zeros(), true, ""), t0);
    s.handle_input(ok(a[0].event.id, false, "blocked: \x1b[31mno"), t0);
    s.handle_input(ok(a[1].event.id, false, "pow: difficulty 30"), t0);
    assert!(accepted(&mut s).is_empty());
    assert_eq!(
        ends(s),
        vec![
            delivered(Delivery::Refused("blocked: \\u{1b}[31mno".into())),
            delivered(Delivery::Refused("pow: difficulty 30".into())),
        ]
    );
}

#[test]
fn a_rate_limited_event_goes_again_unchanged_after_the_backoff_or_the_relays_delay_then_fails() {
    let a = agents(2);
    let t0 = Instant::now();
    let mut s = session(&a, 8);
    events_sent(&mut s, t0);
    s.handle_input(ok(a[0].event.id, false, "rate-limited: slow down"), t0);
    s.handle_input(
        ok(
            a[1].event.id,
            false,
            "rate-limited: quota exceeded; retry in 3s",
        ),
        t0,
    );
    // Backoff 1 is 50-100 ms; the relay asked 3 s for the second.
    let due = s.poll_timeout().expect("a backoff");
    assert!(
        due > t0 && due <= t0 + Duration::from_millis(100),
        "{due:?}"
    );
    assert!(events_sent(&mut s, t0).is_empty(), "not before the backoff");
    s.handle_timeout(due);
    assert_eq!(events_sent(&mut s, due), ids(&a, &[0]), "the same event");
    s.handle_timeout(t0 + Duration::from_secs(2));
    assert!(events_sent(&mut s, t0 + Duration::from_secs(2)).is_empty());
    let t3 = t0 + Duration::from_secs(3);
    s.handle_timeout(t3);
    assert_eq!(events_sent(&mut s, t3), ids(&a, &[1]));
    // Retries used up (2): the third refusal fails it.
    s.handle_input(ok(a[0].event.id, false, "rate-limited: slow down"), t3);
    let due = s.poll_timeout().expect("a backoff");
    s.handle_timeout(due);
    assert_eq!(events_sent(&mut s, due), ids(&a, &[0]));
    s.handle_input(ok(a[0].event.id, false, "rate-limited: slow down"), due);
    s.handle_input(ok(a[1].event.id, true, ""), due);
    assert_eq!(
        ends(s),
        vec![
            delivered(Delivery::Failed(
                "rate-limited: slow down (gave up after 2 retries)".into()
            )),
            delivered(Delivery::Accepted),
        ]
    );
}

fn notice(text: &str) -> Input {
    Input::Message(RelayMessage::Notice(Cow::Owned(text.into())))
}

/// Buzz sheds load with a `rate-limited:` NOTICE and no OK for the event it
/// dropped, without naming it: every event awaiting its OK goes again,
/// unchanged, and nothing is sent before the relay asked; an OK that comes
/// after all is the event's answer (before: the NOTICE was only logged, and
/// the dropped event failed at its deadline).
#[test]
fn a_rate_limited_notice_sends_what_awaits_an_ok_again_and_nothing_new_before_the_relay_asked() {
    let a = agents(4);
    let t0 = Instant::now();
    let mut s = session(&a, 2);
    assert_eq!(events_sent(&mut s, t0), ids(&a, &[0, 1]));
    s.handle_input(notice("rate-limited: too many events; retry in 2s"), t0);
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    s.handle_timeout(t1);
    assert!(
        events_sent(&mut s, t1).is_empty(),
        "not before the relay asked"
    );
    // Event 1 was kept after all: its OK is its answer.
    s.handle_input(ok(a[1].event.id, true, ""), t1);
    assert_eq!(accepted(&mut s), [1]);
    let t2 = t0 + Duration::from_secs(2);
    s.handle_timeout(t2);
    // The new events, then event 0 again (the same signed event), as after
    // a `rate-limited:` OK.
    assert_eq!(events_sent(&mut s, t2), ids(&a, &[2, 3]));
    s.handle_input(ok(a[2].event.id, true, ""), t2);
    s.handle_input(ok(a[3].event.id, true, ""), t2);
    assert_eq!(events_sent(&mut s, t2), ids(&a, &[0]));
    s.handle_input(ok(a[0].event.id, true, "duplicate: already have it"), t2);
    assert_eq!(ends(s), vec![delivered(Delivery::Accepted); 4]);
}

/// A NOTICE that is not `rate-limited:` changes nothing; the retries a
/// NOTICE uses count as an OK's do, and used up fail the event.
#[test]
fn rate_limited_notices_use_the_events_retries() {
    let a = agents(1);
    let t0 = Instant::now();
    let mut s = session(&a, 1);
    assert_eq!(events_sent(&mut s, t0), ids(&a, &[0]));
    s.handle_input(notice("the relay restarts at noon"), t0);
    assert_eq!(
        s.poll_timeout(),
        Some(t0 + TIMEOUT),
        "still awaiting its OK"
    );
    let mut now = t0;
    for _ in 0..2 {
        s.handle_input(notice("rate-limited: slow down"), now);
        now = s.poll_timeout().expect("a backoff");
        s.handle_timeout(now);
        assert_eq!(events_sent(&mut s, now), ids(&a, &[0]));
    }
    s.handle_input(notice("rate-limited: slow down"), now);
    assert_eq!(
        ends(s),
        vec![delivered(Delivery::Failed(
            "rate-limited: slow down (gave up after 2 retries)".into()
        ))]
    );
}

#[test]
fn an_event_without_an_ok_by_its_deadline_failed() {
    let a = agents(2);
    let t0 = Instant::now();
    let mut s = session(&a, 1);
    events_sent(&mut s, t0);
    s.handle_timeout(t0 + TIMEOUT - Duration::from_millis(1));
    assert!(events_sent(&mut s, t0).is_empty(), "not yet due");
    let t1 = t0 + TIMEOUT;
    s.handle_timeout(t1);
    assert_eq!(events_sent(&mut s, t1), ids(&a, &[1]), "its slot is free");
    assert_eq!(s.poll_timeout(), Some(t1 + TIMEOUT));
    s.handle_input(ok(a[1].event.id, true, ""), t1);
    assert_eq!(
        ends(s),
        vec![
            delivered(Delivery::Failed("no OK from the relay within 5 s".into())),
            delivered(Delivery::Accepted),
        ]
    );
}

#[test]
fn auth_required_signs_in_as_the_author_with_its_tag_and_the_relay_connected_to_then_sends_again() {
    let a = agents(3);
    let t0 = Instant::now();
    let mut s = session(&a, 2);
    events_sent(&mut s, t0);
    s.handle_input(challenge("c1"), t0);
    s.handle_input(ok(a[0].event.id, false, "auth-required: you must auth"), t0);
    // Agent 1's event, refused too, waits for that first sign-in.
    s.handle_input(ok(a[1].event.id, false, "auth-required: you must auth"), t0);
    let (auths, events) = split(&s.poll_transmit(t0, 1_700_000_100));
    assert!(events.is_empty(), "no new EVENT while signing in");
    let [auth] = auths.as_slice() else {
        panic!("one AUTH: {auths:?}")
    };
    assert_eq!(
        auth.pubkey,
        a[0].keys.public_key(),
        "the author of the event"
    );
    assert_eq!(auth.created_at.as_secs(), 1_700_000_100);
    assert_eq!(
        tag_values(auth, "relay"),
        vec![vec!["relay".to_owned(), RELAY.to_owned()]]
    );
    assert_eq!(tag_values(auth, "challenge")[0][1], "c1");
    assert_eq!(
        tag_values(auth, "auth"),
        vec![a[0].tag.clone()],
        "its NIP-OA tag"
    );
    s.handle_input(ok(auth.id, true, ""), t0);
    assert_eq!(
        events_sent(&mut s, t0),
        ids(&a, &[0, 1]),
        "both again, in order, before the next"
    );
    s.handle_input(ok(a[0].event.id, true, ""), t0);
    s.handle_input(ok(a[1].event.id, true, ""), t0);
    assert_eq!(events_sent(&mut s, t0), ids(&a, &[2]));
    s.handle_input(ok(a[2].event.id, true, ""), t0);
    assert_eq!(ends(s), vec![delivered(Delivery::Accepted); 3]);
}

#[test]
fn an_auth_refused_while_the_relay_sent_a_newer_challenge_answers_the_newest() {
    // nostr-relay-builder: a fresh challenge per unauthenticated EVENT, old
    // ones forgotten.
    let a = agents(2);
    let t0 = Instant::now();
    let mut s = session(&a, 8);
    events_sent(&mut s, t0);
    s.handle_input(challenge("c1"), t0);
    s.handle_input(ok(a[0].event.id, false, "auth-required: you must auth"), t0);
    let (auths, _) = split(&s.poll_transmit(t0, 1));
    s.handle_input(challenge("c2"), t0);
    s.handle_input(ok(a[1].event.id, false, "auth-required: you must auth"), t0);
    s.handle_input(
        ok(
            auths[0].id,
            false,
            "auth-required: received invalid challenge",
        ),
        t0,
    );
    let (again, events) = split(&s.poll_transmit(t0, 1));
    assert!(events.is_empty());
    assert_eq!(tag_values(&again[0], "challenge")[0][1], "c2");
    s.handle_input(ok(again[0].id, true, ""), t0);
    assert_eq!(events_sent(&mut s, t0), ids(&a, &[0, 1]));
}

#[test]
fn a_relay_that_wants_each_author_signs_in_each_on_the_same_connection() {
    let a = agents(2);
    let t0 = Instant::now();
    let mut s = session(&a, 8);
    s.handle_input(challenge("c"), t0);
    events_sent(&mut s, t0);
    let demand = "auth-required: authenticate as the author";
    s.handle_input(ok(a[0].event.id, false, demand), t0);
    s.handle_input(ok(a[1].event.id, false, demand), t0);
    let (auths, _) = split(&s.poll_transmit(t0, 1));
    assert_eq!(auths.len(), 1, "the first sign-in first");
    s.handle_input(ok(auths[0].id, true, ""), t0);
    assert_eq!(events_sent(&mut s, t0), ids(&a, &[0, 1]));
    s.handle_input(ok(a[0].event.id, true, ""), t0);
    // Sent after agent 0 signed in, and refused: agent 1 signs in too.
    s.handle_input(ok(a[1].event.id, false, demand), t0);
    let (auths, events) = split(&s.poll_transmit(t0, 1));
    assert!(events.is_empty());
    assert_eq!(auths[0].pubkey, a[1].keys.public_key());
    s.handle_input(ok(auths[0].id, true, ""), t0);
    assert_eq!(events_sent(&mut s, t0), ids(&a, &[1]));
    s.handle_input(ok(a[1].event.id, true, ""), t0);
    assert_eq!(ends(s), vec![delivered(Delivery::Accepted); 2]);
}

#[test]
fn a_relay_that_admits_one_identity_per_connection_sends_the_other_authors_to_connections_of_their_own(
) {
    let a = agents(3);
    let t0 = Instant::now();
    let mut s = session(&a, 1);
    s.handle_input(challenge("c"), t0);
    let demand = "auth-required: authenticate as the author";
    assert_eq!(events_sent(&mut s, t0), ids(&a, &[0]));
    s.handle_input(ok(a[0].event.id, false, demand), t0);
    let (auths, _) = split(&s.poll_transmit(t0, 1));
    s.handle_input(ok(auths[0].id, true, ""), t0);
    assert_eq!(events_sent(&mut s, t0), ids(&a, &[0]));
    s.handle_input(ok(a[0].event.id, true, ""), t0);
    assert_eq!(events_sent(&mut s, t0), ids(&a, &[1]));
    s.handle_input(ok(a[1].event.id, false, demand), t0);
    // Signed in already, the connection goes on sending while agent 1 signs
    // in.
    let (auths, events) = split(&s.poll_transmit(t0, 1));
    assert_eq!(auths[0].pubkey, a[1].keys.public_key());
    assert_eq!(events, ids(&a, &[2]));
    s.handle_input(
        ok(auths[0].id, false, "auth-required: already authenticated"),
        t0,
    );
    // From now on no AUTH is tried for another author.
    s.handle_input(ok(a[2].event.id, false, demand), t0);
    assert_eq!(split(&s.poll_transmit(t0, 1)), (vec![], vec![]));
    assert!(s.is_done());
    assert_eq!(
        ends(s),
        vec![
            delivered(Delivery::Accepted),
            PipelineEnd::ToAuthorSession,
            PipelineEnd::ToAuthorSession,
        ]
    );
}

#[test]
fn an_author_refused_on_a_clean_connection_is_refused_and_the_others_go_on() {
    let a = agents(2);
    let t0 = Instant::now();
    let mut s = session(&a, 8);
    s.handle_input(challenge("c"), t0);
    events_sent(&mut s, t0);
    s.handle_input(ok(a[0].event.id, false, "auth-required: members only"), t0);
    s.handle_input(ok(a[1].event.id, false, "auth-required: members only"), t0);
    let (auths, _) = split(&s.poll_transmit(t0, 1));
    s.handle_input(ok(auths[0].id, false, "restricted: not a relay member"), t0);
    // Agent 1's event goes again (the relay may take it unauthenticated
    // after all, or ask agent 1 to sign in: then it is refused as signed in
    // after a refusal, and goes to a connection of its own).
    assert_eq!(events_sent(&mut s, t0), ids(&a, &[1]));
    s.handle_input(ok(a[1].event.id, false, "auth-required: members only"), t0);
    let (auths, _) = split(&s.poll_transmit(t0, 1));
    assert_eq!(auths[0].pubkey, a[1].keys.public_key());
    s.handle_input(
        ok(
            auths[0].id,
            false,
            "auth-required: authentication already failed",
        ),
        t0,
    );
    let who = format!("agent {}", a[0].keys.public_key().to_hex());
    assert_eq!(
        ends(s),
        vec![
            delivered(Delivery::Refused(format!(
                "authentication as {who} was refused: restricted: not a relay member"
            ))),
            PipelineEnd::ToAuthorSession,
        ]
    );
}

#[test]
fn an_event_still_refused_after_its_author_signed_in_is_refused_with_the_relays_message() {
    let a = agents(1);
    let t0 = Instant::now();
    let mut s = session(&a, 8);
    s.handle_input(challenge("c"), t0);
    events_sent(&mut s, t0);
    s.handle_input(ok(a[0].event.id, false, "auth-required: x"), t0);
    let (auths, _) = split(&s.poll_transmit(t0, 1));
    s.handle_input(ok(auths[0].id, true, ""), t0);
    events_sent(&mut s, t0);
    s.handle_input(ok(a[0].event.id, false, "auth-required: not you"), t0);
    assert_eq!(
        ends(s),
        vec![delivered(Delivery::Refused(
            "auth-required: not you".into()
        ))]
    );
}

#[test]
fn a_relay_that_demands_auth_and_sends_no_challenge_fails_whoever_waited_at_the_deadline() {
    let a = agents(3);
    let t0 = Instant::now();
    let mut s = session(&a, 2);
    events_sent(&mut s, t0);
    s.handle_input(ok(a[0].event.id, false, "auth-required: members only"), t0);
    s.handle_input(ok(a[1].event.id, false, "auth-required: members only"), t0);
    assert_eq!(split(&s.poll_transmit(t0, 1)), (vec![], vec![]));
    assert_eq!(s.poll_timeout(), Some(t0 + TIMEOUT));
    let t1 = t0 + TIMEOUT;
    s.handle_timeout(t1);
    // The third goes; refused the same way, it fails at once.
    assert_eq!(events_sent(&mut s, t1), ids(&a, &[2]));
    s.handle_input(ok(a[2].event.id, false, "auth-required: members only"), t1);
    let why = "auth-required: members only (the relay sent no NIP-42 challenge within 5 s)";
    assert_eq!(ends(s), vec![delivered(Delivery::Failed(why.into())); 3]);
}

#[test]
fn a_lost_connection_fails_what_was_in_flight_and_the_rest_go_over_a_new_one() {
    let a = agents(4);
    let t0 = Instant::now();
    let mut s = session(&a, 2);
    events_sent(&mut s, t0);
    s.handle_input(ok(a[0].event.id, true, ""), t0);
    assert_eq!(events_sent(&mut s, t0), ids(&a, &[2]));
    s.handle_input(Input::Lost("connection dropped".into()), t0);
    assert!(s.is_done(), "done with this connection");
    assert!(events_sent(&mut s, t0).is_empty());
    assert_eq!(accepted(&mut s), vec![0]);
    let NextConnection::After(pause) = s.next_connection() else {
        panic!("a new connection")
    };
    assert!(pause >= Duration::from_millis(50), "{pause:?}");
    s.connected();
    assert_eq!(events_sent(&mut s, t0), ids(&a, &[3]));
    s.handle_input(ok(a[3].event.id, true, ""), t0);
    assert_eq!(s.next_connection(), NextConnection::Finished);
    let lost = delivered(Delivery::Failed(LOST_IN_FLIGHT.into()));
    assert_eq!(
        ends(s),
        vec![
            delivered(Delivery::Accepted),
            lost.clone(),
            lost,
            delivered(Delivery::Accepted),
        ]
    );
}

#[test]
fn reconnects_are_bounded_whether_connections_are_lost_or_cannot_be_opened() {
    let lost = delivered(Delivery::Failed(LOST_IN_FLIGHT.into()));
    // Lost, lost, lost, lost: the fourth loss ends it.
    let a = agents(5);
    let t0 = Instant::now();
    let mut s = session(&a, 1);
    for _ in 0..MAX_RECONNECTS {
        events_sent(&mut s, t0);
        s.handle_input(Input::Lost("connection dropped".into()), t0);
        assert!(matches!(s.next_connection(), NextConnection::After(_)));
        s.connected();
    }
    events_sent(&mut s, t0);
    s.handle_input(Input::Lost("connection dropped".into()), t0);
    assert_eq!(s.next_connection(), NextConnection::Finished);
    let mut expected = vec![lost.clone(); 4];
    expected.push(delivered(Delivery::Failed(
        "connection lost; gave up after 3 reconnects".into(),
    )));
    assert_eq!(ends(s), expected);

    // Lost once, then no new connection opens.
    let a = agents(2);
    let mut s = session(&a, 1);
    events_sent(&mut s, t0);
    s.handle_input(Input::Lost("connection dropped".into()), t0);
    for _ in 0..MAX_RECONNECTS {
        assert!(matches!(s.next_connection(), NextConnection::After(_)));
        s.connect_failed("connection failed: refused");
    }
    assert_eq!(s.next_connection(), NextConnection::Finished);
    assert_eq!(
        ends(s),
        vec![
            lost,
            delivered(Delivery::Failed(
                "connection lost; reconnecting failed: connection failed: refused".into()
            )),
        ]
    );
}

#[test]
fn a_first_connection_that_cannot_be_opened_fails_every_event_with_why() {
    let a = agents(2);
    let mut s = PipelinedPublish::new(
        a.iter()
            .map(|agent| PublishJob {
                event: agent.event.clone(),
                identity: identity(agent),
            })
            .collect(),
        config(8),
        1,
    );
    assert_eq!(s.next_connection(), NextConnection::After(Duration::ZERO));
    s.connect_failed("connection failed: refused");
    assert_eq!(s.next_connection(), NextConnection::Finished);
    assert_eq!(
        ends(s),
        vec![delivered(Delivery::Failed("connection failed: refused".into())); 2]
    );
}

#[test]
fn a_stop_sends_nothing_new_lets_what_is_in_flight_finish_and_opens_no_connection() {
    let a = agents(4);
    let t0 = Instant::now();
    let mut s = session(&a, 2);
    events_sent(&mut s, t0);
    s.stop();
    assert!(events_sent(&mut s, t0).is_empty());
    assert!(!s.is_done(), "two await their OK");
    s.handle_input(ok(a[0].event.id, true, ""), t0);
    assert!(events_sent(&mut s, t0).is_empty(), "its slot stays empty");
    // Rate-limited after the stop: not sent again.
    s.handle_input(ok(a[1].event.id, false, "rate-limited: slow down"), t0);
    assert!(s.is_done());
    assert_eq!(s.next_connection(), NextConnection::Finished);
    assert_eq!(
        ends(s),
        vec![
            delivered(Delivery::Accepted),
            delivered(Delivery::NotSent),
            delivered(Delivery::NotSent),
            delivered(Delivery::NotSent),
        ]
    );
}

#[test]
fn a_stop_before_the_first_connection_opens_none() {
    let a = agents(2);
    let mut s = PipelinedPublish::new(
        a.iter()
            .map(|agent| PublishJob {
                event: agent.event.clone(),
                identity: identity(agent),
            })
            .collect(),
        config(8),
        1,
    );
    s.stop();
    assert_eq!(s.next_connection(), NextConnection::Finished);
    assert_eq!(ends(s), vec![delivered(Delivery::NotSent); 2]);
}

#[test]
fn backoff_jitter_is_repeatable_and_in_range() {
    let mut first = SplitMix64(42);
    let mut second = SplitMix64(42);
    for _ in 0..1000 {
        let value = first.next_unit();
        assert!((0.0..1.0).contains(&value));
        assert_eq!(value, second.next_unit());
    }
}
