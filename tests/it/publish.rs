//! Publishing signed events to a relay (`reprofile::net::publish::publish_all`).
//!
//! What is under test is the relay edge of apply ("apply must", relay
//! writes): one pipelined connection per relay, the relay's OK answers carried
//! out as the core classifies them (retry `rate-limited:` with the same signed
//! event, authenticate on `auth-required:`, report refusals verbatim), bounded
//! waits, a dropped connection that fails only what was in flight, and a
//! stop that sends nothing new while what is in flight gets its answer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use nostr::{Event, Keys, PublicKey};
use nostr_relay_builder::builder::{PolicyResult, RelayBuilderNip42Mode, WritePolicy};
use reprofile::core::apply::Backoff;
use reprofile::core::model::RelayObservation;
use reprofile::net::publish::{publish_all, Delivery, PublishItem, PublishOptions};
use reprofile::net::relay::read_profiles;
use serde_json::json;

use crate::support::{
    bulk_relay_builder, closed_port_url, short_read_options, signed_profile, start_local_relay,
    start_local_relay_with, start_relay_demanding_auth, FakeBehaviour, FakeRelay,
};

const SECOND: Duration = Duration::from_secs(1);

/// Options for tests: short waits, tiny backoffs.
fn fast_options() -> PublishOptions {
    PublishOptions {
        connect_timeout: 2 * SECOND,
        publish_timeout: 3 * SECOND,
        backoff: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(40),
            max_retries: 5,
        },
        max_in_flight: 64,
        service_keys: None,
        sign_in_as_author: false,
        max_author_sessions: 16,
        tls: reprofile::net::tls::Tls::default(),
        stop: None,
    }
}

/// One kind:0 event per agent, signed by it.
fn items_for(agents: &[Keys]) -> Vec<PublishItem> {
    agents
        .iter()
        .enumerate()
        .map(|(index, keys)| {
            PublishItem {
            event: signed_profile(
                keys,
                1_700_000_000 + index as u64,
                &json!({"name": format!("agent-{index}"), "display_name": format!("Agent {index}")})
                    .to_string(),
            ),
            keys: keys.clone(),
            sign_in: None,
        }
        })
        .collect()
}

fn agents(n: usize) -> Vec<Keys> {
    (0..n).map(|_| Keys::generate()).collect()
}

fn assert_all_accepted(deliveries: &[Delivery]) {
    for (index, delivery) in deliveries.iter().enumerate() {
        assert_eq!(delivery, &Delivery::Accepted, "item {index}");
    }
}

/// Reads the newest kind:0 of each item's author back from `url` and asserts
/// it is that item's event.
async fn assert_stored(url: &str, items: &[PublishItem]) {
    let authors: Vec<PublicKey> = items.iter().map(|item| item.event.pubkey).collect();
    let requests = BTreeMap::from([(url.to_owned(), authors)]);
    let mut tables = read_profiles(requests, &short_read_options(2 * SECOND, 5 * SECOND)).await;
    let table = tables.remove(url).expect("the relay's table");
    for item in items {
        match &table[&item.event.pubkey.to_hex()] {
            RelayObservation::Newest(stored) => {
                assert_eq!(stored.id, item.event.id.to_hex(), "newest kind:0 read back")
            }
            other => panic!(
                "{}: expected the published event, got {other:?}",
                item.event.pubkey
            ),
        }
    }
}

/// Asserts that `fake` saw its client close every connection.
async fn assert_connections_closed(fake: &FakeRelay) {
    assert!(
        fake.wait_until_no_connection_is_open(5 * SECOND).await,
        "publish_all left a connection open"
    );
}

#[tokio::test]
async fn two_hundred_events_to_a_local_relay_are_all_accepted_and_read_back() {
    let relay = start_local_relay().await;
    let url = relay.url().await.to_string();
    let items = items_for(&agents(200));

    let started = Instant::now();
    let deliveries = publish_all(&url, items.clone(), &fast_options()).await;
    eprintln!("200 events published in {:?}", started.elapsed());

    assert_eq!(deliveries.len(), 200, "one delivery per item");
    assert_all_accepted(&deliveries);
    assert_stored(&url, &items).await;
}

#[tokio::test]
async fn a_rate_limited_event_is_resent_unchanged_until_accepted() {
    let fake = FakeRelay::start(FakeBehaviour::RateLimitFirst(2)).await;
    let items = items_for(&agents(3));

    let deliveries = publish_all(fake.url(), items.clone(), &fast_options()).await;

    assert_all_accepted(&deliveries);
    // Each event reached the relay three times with the same id: re-sent,
    // never re-signed (a new signature or created_at would change the id).
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in fake.event_ids() {
        *counts.entry(id).or_default() += 1;
    }
    let expected: HashMap<String, usize> = items
        .iter()
        .map(|item| (item.event.id.to_hex(), 3))
        .collect();
    assert_eq!(counts, expected);
    assert_eq!(fake.connections(), 1, "one connection for the batch");
    assert_connections_closed(&fake).await;
}

/// Buzz sheds load with a `rate-limited:` NOTICE and no OK: the events that
/// awaited their OK are sent again, unchanged, until accepted (before: the
/// NOTICE was only logged and each event failed at its OK's deadline).
#[tokio::test]
async fn a_rate_limited_notice_without_an_ok_has_the_events_sent_again_until_accepted() {
    let fake = FakeRelay::start(FakeBehaviour::NoticeRateLimitFirst(1)).await;
    let items = items_for(&agents(3));

    let deliveries = publish_all(fake.url(), items.clone(), &fast_options()).await;

    assert_all_accepted(&deliveries);
    let distinct: HashSet<String> = fake.event_ids().into_iter().collect();
    let expected: HashSet<String> = items.iter().map(|item| item.event.id.to_hex()).collect();
    assert_eq!(distinct, expected, "the same events, never re-signed");
    assert_eq!(fake.connections(), 1, "one connection for the batch");
    assert_connections_closed(&fake).await;
}

#[tokio::test]
async fn an_always_rate_limited_event_fails_after_the_bounded_retries() {
    let fake = FakeRelay::start(FakeBehaviour::AnswerOk {
        accepted: false,
        message: "rate-limited: slow down".into(),
    })
    .await;
    let items = items_for(&agents(2));
    let mut opts = fast_options();
    opts.backoff.max_retries = 3;

    let started = Instant::now();
    let deliveries = publish_all(fake.url(), items.clone(), &opts).await;
    let elapsed = started.elapsed();

    for delivery in &deliveries {
        assert_eq!(
            delivery,
            &Delivery::Failed("rate-limited: slow down (gave up after 3 retries)".into())
        );
    }
    // The first attempt and three retries, all with the same event.
    let ids = fake.event_ids();
    assert_eq!(ids.len(), 8, "{ids:?}");
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 2);
    // Backoffs of 10, 20 and 40 ms (at least half each with jitter).
    assert!(elapsed >= Duration::from_millis(35), "{elapsed:?}");
    assert!(elapsed < 2 * SECOND, "{elapsed:?}");
}

#[tokio::test]
async fn a_nip42_write_relay_accepts_after_authenticating_as_the_agent() {
    let (_relay, url) = start_relay_demanding_auth(RelayBuilderNip42Mode::Write).await;
    // Enough events that many are in flight when the relay first demands auth
    // (each unauthenticated EVENT makes this relay issue a new challenge).
    let items = items_for(&agents(100));

    let deliveries = publish_all(&url, items.clone(), &fast_options()).await;

    assert_all_accepted(&deliveries);
    // Write mode lets anyone read: the events are there.
    assert_stored(&url, &items).await;
}

#[tokio::test]
async fn a_nip42_write_relay_accepts_after_authenticating_with_the_service_key() {
    let (_relay, url) = start_relay_demanding_auth(RelayBuilderNip42Mode::Write).await;
    let items = items_for(&agents(10));
    let mut opts = fast_options();
    opts.service_keys = Some(Keys::generate());

    let deliveries = publish_all(&url, items.clone(), &opts).await;

    assert_all_accepted(&deliveries);
    assert_stored(&url, &items).await;
}

#[tokio::test]
async fn a_challenge_sent_at_connect_is_used_and_each_agent_authenticates_once() {
    let fake = FakeRelay::start(FakeBehaviour::AuthAtConnect {
        challenge: "challenge-at-connect".into(),
        trusted: None,
    })
    .await;
    // Three agents, two events each.
    let agents = agents(3);
    let mut items = items_for(&agents);
    items.extend(agents.iter().enumerate().map(|(index, keys)| PublishItem {
        event: signed_profile(keys, 1_800_000_000 + index as u64, r#"{"name":"again"}"#),
        keys: keys.clone(),
        sign_in: None,
    }));

    let deliveries = publish_all(fake.url(), items, &fast_options()).await;

    assert_all_accepted(&deliveries);
    let auths = fake.auths();
    let mut authenticated: Vec<String> = auths.iter().map(|a| a.pubkey.clone()).collect();
    authenticated.sort();
    let mut expected: Vec<String> = agents.iter().map(|k| k.public_key().to_hex()).collect();
    expected.sort();
    assert_eq!(authenticated, expected, "once per distinct agent");
    for auth in &auths {
        assert_eq!(
            auth.relay.trim_end_matches('/'),
            fake.url(),
            "AUTH names the relay"
        );
    }
    assert_eq!(fake.connections(), 1);
    assert_connections_closed(&fake).await;
}

#[tokio::test]
async fn a_service_key_authenticates_once_for_every_agent() {
    let service = Keys::generate();
    let fake = FakeRelay::start(FakeBehaviour::AuthAtConnect {
        challenge: "c".into(),
        trusted: Some(service.public_key().to_hex()),
    })
    .await;
    let items = items_for(&agents(5));
    let mut opts = fast_options();
    opts.service_keys = Some(service.clone());

    let deliveries = publish_all(fake.url(), items, &opts).await;

    assert_all_accepted(&deliveries);
    let auths: Vec<String> = fake.auths().into_iter().map(|a| a.pubkey).collect();
    assert_eq!(auths, vec![service.public_key().to_hex()]);
}

#[derive(Debug)]
struct BlockEveryone;

impl WritePolicy for BlockEveryone {
    fn admit_event<'a>(
        &'a self,
        _event: &'a Event,
        _addr: &'a std::net::SocketAddr,
    ) -> nostr::util::BoxedFuture<'a, PolicyResult> {
        Box::pin(async { PolicyResult::Reject("not on the allow list".to_owned()) })
    }
}

#[tokio::test]
async fn a_write_policy_block_is_refused_with_the_relays_message() {
    let relay = start_local_relay_with(bulk_relay_builder().write_policy(BlockEveryone)).await;
    let url = relay.url().await.to_string();

    let deliveries = publish_all(&url, items_for(&agents(2)), &fast_options()).await;

    assert_eq!(
        deliveries,
        vec![Delivery::Refused("blocked: not on the allow list".into()); 2]
    );
}

#[tokio::test]
async fn refusals_are_reported_verbatim_and_duplicates_count_as_accepted() {
    let refusals = [
        "replaced: have newer event",
        "invalid: bad signature",
        "blocked: you are banned",
        "pow: difficulty 30 required",
        "error: unknown",
    ];
    let mut cases: Vec<(bool, &str, Delivery)> = refusals
        .into_iter()
        .map(|message| (false, message, Delivery::Refused(message.into())))
        .collect();
    let duplicate = "duplicate: already have this event";
    cases.extend([
        (false, duplicate, Delivery::Accepted),
        (true, duplicate, Delivery::Accepted),
        (true, "", Delivery::Accepted),
    ]);
    for (accepted, message, expected) in cases {
        let fake = FakeRelay::start(FakeBehaviour::AnswerOk {
            accepted,
            message: message.into(),
        })
        .await;
        let deliveries = publish_all(fake.url(), items_for(&agents(2)), &fast_options()).await;
        assert_eq!(
            deliveries,
            vec![expected.clone(); 2],
            "OK {accepted} {message:?}"
        );
        assert_eq!(fake.event_ids().len(), 2, "no retry for {message:?}");
    }
}

/// Publishes one event for each of `n` agents to `fake`, waiting 1 s for
/// each OK: what each delivery was, and how long it all took.
async fn publish_with_one_second_timeout(fake: &FakeRelay, n: usize) -> (Vec<Delivery>, Duration) {
    let opts = PublishOptions {
        publish_timeout: SECOND,
        ..fast_options()
    };
    let started = Instant::now();
    let deliveries = publish_all(fake.url(), items_for(&agents(n)), &opts).await;
    (deliveries, started.elapsed())
}

#[tokio::test]
async fn no_ok_within_the_publish_timeout_fails() {
    let fake = FakeRelay::start(FakeBehaviour::NeverOk).await;
    let (deliveries, elapsed) = publish_with_one_second_timeout(&fake, 3).await;

    assert_eq!(
        deliveries,
        vec![Delivery::Failed("no OK from the relay within 1 s".into()); 3]
    );
    assert!(elapsed >= SECOND, "{elapsed:?}");
    assert!(elapsed < 3 * SECOND, "{elapsed:?}");
    assert_connections_closed(&fake).await;
}

#[tokio::test]
async fn a_dropped_connection_fails_what_was_in_flight_and_the_rest_go_on() {
    // The relay waits for 4 EVENTs, accepts the first 2, drops the connection.
    let fake = FakeRelay::start(FakeBehaviour::DropFirstConnectionAfter {
        events: 4,
        accept: 2,
    })
    .await;
    let mut opts = fast_options();
    opts.max_in_flight = 4;
    let items = items_for(&agents(12));

    let deliveries = publish_all(fake.url(), items, &opts).await;

    let lost = Delivery::Failed("connection lost before the relay answered".into());
    assert_eq!(deliveries[..2], [Delivery::Accepted, Delivery::Accepted]);
    assert_eq!(deliveries[2..4], [lost.clone(), lost.clone()]);
    // Events 5 and 6 may have been sent on the dying connection (after the
    // two OKs) or not; either way they end Accepted or lost, nothing else.
    for (index, delivery) in deliveries[4..6].iter().enumerate() {
        assert!(
            *delivery == Delivery::Accepted || *delivery == lost,
            "item {}: {delivery:?}",
            index + 4
        );
    }
    assert_all_accepted(&deliveries[6..]);
    assert_eq!(fake.connections(), 2, "one reconnect");
    assert_connections_closed(&fake).await;
}

#[tokio::test]
async fn several_events_are_in_flight_at_once() {
    // The relay answers nothing until it has 10 EVENTs: a publisher that
    // waits for each OK before the next would time out here.
    let fake = FakeRelay::start(FakeBehaviour::HoldOksUntil(10)).await;
    let deliveries = publish_all(fake.url(), items_for(&agents(10)), &fast_options()).await;
    assert_all_accepted(&deliveries);
    assert_eq!(fake.max_unanswered_events(), 10);
}

#[tokio::test]
async fn no_more_than_max_in_flight_events_await_an_ok() {
    let fake = FakeRelay::start(FakeBehaviour::HoldOksUntil(4)).await;
    let mut opts = fast_options();
    opts.max_in_flight = 4;
    let deliveries = publish_all(fake.url(), items_for(&agents(20)), &opts).await;
    assert_all_accepted(&deliveries);
    assert_eq!(fake.max_unanswered_events(), 4);
}

#[tokio::test]
async fn a_relay_that_is_down_fails_every_item_quickly() {
    let url = closed_port_url();
    let started = Instant::now();
    let deliveries = publish_all(&url, items_for(&agents(3)), &fast_options()).await;
    assert_eq!(deliveries.len(), 3);
    for delivery in &deliveries {
        assert!(
            matches!(delivery, Delivery::Failed(reason) if reason.starts_with("connection failed")),
            "{delivery:?}"
        );
    }
    assert!(started.elapsed() < 3 * SECOND);
}

#[tokio::test]
async fn an_event_still_refused_after_authenticating_is_refused_with_the_relays_message() {
    // The relay wants each author authenticated; the service key is not one
    // of them and is not trusted.
    let fake = FakeRelay::start(FakeBehaviour::AuthAtConnect {
        challenge: "c".into(),
        trusted: None,
    })
    .await;
    let mut opts = fast_options();
    opts.service_keys = Some(Keys::generate());

    let deliveries = publish_all(fake.url(), items_for(&agents(3)), &opts).await;

    assert_eq!(
        deliveries,
        vec![Delivery::Refused("auth-required: authenticate as the author".into()); 3]
    );
    assert_eq!(fake.auths().len(), 1, "the service key authenticated once");
    // Each event: sent, answered auth-required, resent after the AUTH, refused.
    assert_eq!(fake.event_ids().len(), 6);
}

#[tokio::test]
async fn a_relay_that_demands_auth_but_sends_no_challenge_fails_within_the_timeout() {
    let fake = FakeRelay::start(FakeBehaviour::AnswerOk {
        accepted: false,
        message: "auth-required: members only".into(),
    })
    .await;
    let (deliveries, elapsed) = publish_with_one_second_timeout(&fake, 2).await;

    assert_eq!(
        deliveries,
        vec![
            Delivery::Failed(
                "auth-required: members only (the relay sent no NIP-42 challenge within 1 s)"
                    .into()
            );
            2
        ]
    );
    assert!(elapsed < 3 * SECOND, "{elapsed:?}");
    assert!(fake.auths().is_empty());
}

/// Waits (bounded, polling) until the fake relay has received `n` EVENTs.
async fn wait_for_events(fake: &FakeRelay, n: usize) {
    let deadline = Instant::now() + 10 * SECOND;
    while fake.event_ids().len() < n {
        assert!(
            Instant::now() < deadline,
            "the relay never got {n} EVENT(s)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_an_event_awaits_its_ok_lets_it_finish_and_sends_no_other_event() {
    let fake = FakeRelay::start(FakeBehaviour::SlowOk {
        delay: 1500 * Duration::from_millis(1),
        challenge: None,
    })
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let opts = PublishOptions {
        max_in_flight: 1,
        stop: Some(stop.clone()),
        ..fast_options()
    };
    let items = items_for(&agents(3));
    let url = fake.url().to_owned();
    let publishing = tokio::spawn(async move { publish_all(&url, items, &opts).await });
    wait_for_events(&fake, 1).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let deliveries = publishing.await.unwrap();
    assert_eq!(
        deliveries,
        vec![Delivery::Accepted, Delivery::NotSent, Delivery::NotSent],
        "the event in flight got its OK; no other was sent"
    );
    assert_eq!(fake.event_ids().len(), 1);
    assert_connections_closed(&fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_starts_no_new_author_session_and_lets_the_running_one_finish() {
    let fake = FakeRelay::start(FakeBehaviour::SlowOk {
        delay: 1500 * Duration::from_millis(1),
        challenge: Some("slow-challenge".into()),
    })
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let opts = PublishOptions {
        sign_in_as_author: true,
        max_author_sessions: 1,
        stop: Some(stop.clone()),
        ..fast_options()
    };
    let items = items_for(&agents(3));
    let authors: Vec<String> = items.iter().map(|i| i.event.pubkey.to_hex()).collect();
    let url = fake.url().to_owned();
    let publishing = tokio::spawn(async move { publish_all(&url, items, &opts).await });
    wait_for_events(&fake, 1).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let deliveries = publishing.await.unwrap();
    // Sessions start in any order; the one running when the stop came
    // finished, and no other began.
    let accepted: Vec<usize> = (0..3)
        .filter(|&i| deliveries[i] == Delivery::Accepted)
        .collect();
    assert_eq!(accepted.len(), 1, "{deliveries:?}");
    assert_eq!(
        deliveries
            .iter()
            .filter(|d| **d == Delivery::NotSent)
            .count(),
        2,
        "{deliveries:?}"
    );
    assert_eq!(fake.connections(), 1, "no session after the stop");
    let auths: Vec<String> = fake.auths().into_iter().map(|a| a.pubkey).collect();
    assert_eq!(auths, vec![authors[accepted[0]].clone()]);
    assert_connections_closed(&fake).await;
}

#[tokio::test]
async fn a_stop_before_publishing_sends_nothing_on_either_path() {
    for sign_in_as_author in [false, true] {
        let fake = FakeRelay::start(FakeBehaviour::AnswerOk {
            accepted: true,
            message: String::new(),
        })
        .await;
        let opts = PublishOptions {
            sign_in_as_author,
            stop: Some(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(
                true,
            ))),
            ..fast_options()
        };
        let deliveries = publish_all(fake.url(), items_for(&agents(2)), &opts).await;
        assert_eq!(
            deliveries,
            vec![Delivery::NotSent, Delivery::NotSent],
            "sign_in_as_author = {sign_in_as_author}"
        );
        assert_eq!(
            fake.connections(),
            0,
            "sign_in_as_author = {sign_in_as_author}"
        );
    }
}

/// A kind:0 by a new agent whose content holds `content_bytes` bytes (a
/// `picture` data: URL padded to that size), as a relay sends it.
fn profile_of_size(keys: &Keys, content_bytes: usize) -> Event {
    let prefix = r#"{"name":"big","picture":"data:image/png;base64,"#;
    let suffix = r#""}"#;
    let padding = "A".repeat(content_bytes - prefix.len() - suffix.len());
    signed_profile(keys, 1_700_000_000, &format!("{prefix}{padding}{suffix}"))
}

/// What a relay can make reprofile hold is bounded, on reads and writes
/// alike: a 2 MiB message drops that connection, so the relay's read is
/// unreadable (never "no profile") and an event whose answer was that
/// message failed; a kind:0 with a 52 KB `data:` avatar reads as usual.
#[tokio::test]
async fn a_relay_message_over_the_limit_fails_that_read_or_publish_and_a_52_kb_avatar_reads_fine() {
    use nostr::JsonUtil;
    let read = |fake_url: String, author: PublicKey| async move {
        let requests = BTreeMap::from([(fake_url.clone(), vec![author])]);
        let mut tables = read_profiles(requests, &short_read_options(2 * SECOND, 3 * SECOND)).await;
        tables
            .remove(&fake_url)
            .expect("the relay's table")
            .remove(&author.to_hex())
            .expect("the author's observation")
    };

    let keys = Keys::generate();
    let avatar = profile_of_size(&keys, 52_000);
    let fake = FakeRelay::start(FakeBehaviour::EventsThenEose(vec![avatar.as_json()])).await;
    match read(fake.url().to_owned(), keys.public_key()).await {
        RelayObservation::Newest(stored) => assert_eq!(stored.id, avatar.id.to_hex()),
        other => panic!("the 52 KB avatar's profile: {other:?}"),
    }

    let keys = Keys::generate();
    let huge = profile_of_size(&keys, 2 << 20);
    let fake = FakeRelay::start(FakeBehaviour::EventsThenEose(vec![huge.as_json()])).await;
    match read(fake.url().to_owned(), keys.public_key()).await {
        RelayObservation::Unreadable(why) => assert!(why.contains("connection"), "{why}"),
        RelayObservation::Newest(_) => panic!("a 2 MiB message was read"),
        other => panic!("a 2 MiB message must make the read unreadable, got {other:?}"),
    }

    let fake = FakeRelay::start(FakeBehaviour::AnswerOk {
        accepted: false,
        message: format!("blocked: {}", "x".repeat(2 << 20)),
    })
    .await;
    let deliveries = publish_all(fake.url(), items_for(&agents(1)), &fast_options()).await;
    assert_eq!(
        deliveries,
        vec![Delivery::Failed(
            "connection lost before the relay answered".into()
        )],
        "a 2 MiB answer is not taken"
    );
}

/// A relay that demands each EVENT's author be signed in (NIP-42) on its
/// connection, with a challenge at connect; with `one_identity`, a
/// connection admits one identity (a second AUTH is refused `auth-required:
/// already authenticated`, as Buzz does). Every AUTH it accepted, and how
/// many connections it took.
struct AuthorCheckingRelay {
    url: String,
    auths: std::sync::Arc<std::sync::Mutex<Vec<Event>>>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for AuthorCheckingRelay {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn start_author_checking_relay(one_identity: bool) -> AuthorCheckingRelay {
    use futures_util::{SinkExt, StreamExt};
    use nostr::JsonUtil;
    use tokio_tungstenite::tungstenite::Message;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let auths = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (log, count) = (auths.clone(), connections.clone());
    let server = tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let log = log.clone();
            tasks.spawn(async move {
                let Ok(socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (mut sink, mut source) = socket.split();
                let mut signed_in: HashSet<PublicKey> = HashSet::new();
                let greeting = json!(["AUTH", "challenge"]).to_string();
                if sink.send(Message::text(greeting)).await.is_err() {
                    return;
                }
                while let Some(Ok(Message::Text(text))) = source.next().await {
                    let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                    let Ok(event) = Event::from_json(value[1].to_string()) else {
                        continue;
                    };
                    let (accepted, message) = match value[0].as_str() {
                        Some("AUTH") if event.verify().is_err() => (false, "auth-required: bad"),
                        Some("AUTH") if one_identity && !signed_in.is_empty() => {
                            (false, "auth-required: already authenticated")
                        }
                        Some("AUTH") => {
                            signed_in.insert(event.pubkey);
                            log.lock().unwrap().push(event.clone());
                            (true, "")
                        }
                        Some("EVENT") if signed_in.contains(&event.pubkey) => (true, ""),
                        Some("EVENT") => (false, "auth-required: authenticate as the author"),
                        _ => continue,
                    };
                    let reply = json!(["OK", event.id.to_hex(), accepted, message]).to_string();
                    if sink.send(Message::text(reply)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    AuthorCheckingRelay {
        url,
        auths,
        connections,
        server,
    }
}

/// One kind:0 per agent, each signing in (when asked) as its agent with its
/// NIP-OA tag, as apply builds them.
fn items_with_nip_oa_tags(agents: &[Keys], relay: &str) -> Vec<PublishItem> {
    let owner = Keys::generate();
    items_for(agents)
        .into_iter()
        .zip(agents)
        .map(|(item, keys)| PublishItem {
            sign_in: Some(reprofile::protocol::nip42::Identity {
                keys: keys.clone(),
                auth_tag: Some(reprofile::core::nip_oa::sign(
                    &owner,
                    &keys.public_key().to_hex(),
                    "",
                )),
                relay_tag: relay.to_owned(),
                label: format!("agent {}", keys.public_key().to_hex()),
            }),
            ..item
        })
        .collect()
}

/// The pipelined publisher signs in as each event's author with its NIP-OA
/// tag (one `auth` tag) and the relay connected to as the `relay` tag, as
/// the read path does; a relay that lets several identities sign in on one
/// connection gets them all there.
#[tokio::test]
async fn the_pipelined_sign_in_carries_the_authors_nip_oa_tag_and_names_the_relay_connected_to() {
    let relay = start_author_checking_relay(false).await;
    let agents = agents(3);
    let items = items_with_nip_oa_tags(&agents, &relay.url);

    let deliveries = publish_all(&relay.url, items.clone(), &fast_options()).await;

    assert_all_accepted(&deliveries);
    let auths = relay.auths.lock().unwrap().clone();
    assert_eq!(auths.len(), 3, "each author once");
    for auth in &auths {
        let item = items
            .iter()
            .find(|item| item.event.pubkey == auth.pubkey)
            .expect("an author's AUTH");
        let tags = |name: &str| -> Vec<Vec<String>> {
            auth.tags
                .iter()
                .filter(|t| t.as_slice()[0] == name)
                .map(|t| t.as_slice().to_vec())
                .collect()
        };
        let expected_tag = item.sign_in.as_ref().unwrap().auth_tag.clone().unwrap();
        assert_eq!(tags("auth"), vec![expected_tag], "its NIP-OA tag, once");
        assert_eq!(
            tags("relay"),
            vec![vec!["relay".to_owned(), relay.url.clone()]]
        );
    }
    assert_eq!(
        relay.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

/// A relay that wants each author signed in and admits one identity per
/// connection (a write-only Buzz): the pipelined publisher signs in as the
/// first author; the others' events go over connections of their own,
/// signed in as their authors, and every one is accepted.
#[tokio::test]
async fn a_relay_admitting_one_identity_per_connection_gets_the_other_authors_over_their_own() {
    let relay = start_author_checking_relay(true).await;
    let agents = agents(3);
    let items = items_with_nip_oa_tags(&agents, &relay.url);

    let deliveries = publish_all(&relay.url, items, &fast_options()).await;

    assert_all_accepted(&deliveries);
    let mut signed_in: Vec<PublicKey> = relay
        .auths
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.pubkey)
        .collect();
    signed_in.sort();
    let mut expected: Vec<PublicKey> = agents.iter().map(Keys::public_key).collect();
    expected.sort();
    assert_eq!(signed_in, expected, "each author signed in once");
    assert_eq!(
        relay.connections.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "the pipelined connection, then one for each other author"
    );
}
