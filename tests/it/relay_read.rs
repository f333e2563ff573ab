//! Reading kind:0 profiles from relays (`reprofile::net::relay::read_profiles`).
//!
//! The rules under test come from RECONCILE.md's "Inputs": the relay state of
//! an agent is the newest kind:0 (NIP-01 order) by its pubkey; invalid events
//! and events from authors not asked for are ignored; a relay that cannot be
//! read gives "unknown" (`Unreadable`), never "missing" (`NoProfile`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, PublicKey, Timestamp};
use nostr_relay_builder::builder::{RelayBuilderNip42Mode, RelayTestOptions};
use nostr_relay_builder::{LocalRelay, MockRelay};
use reprofile::core::model::RelayObservation;
use reprofile::net::relay::{read_profiles, read_relays, Observations, ReadOptions};
use reprofile::protocol::nip42::Identity;
use serde_json::{json, Value};

use crate::support::{
    closed_port_url, fixture_path, json_with, publish_events, seed_events, short_read_options,
    signed_profile, start_local_relay, start_relay_demanding_auth, FakeBehaviour, FakeRelay,
};
use crate::world::assert_contains;

const SECOND: Duration = Duration::from_secs(1);

/// Reads `authors` from the one relay at `url` and returns its table.
async fn read_one(url: &str, authors: &[PublicKey], opts: &ReadOptions) -> Observations {
    let requests = BTreeMap::from([(url.to_owned(), authors.to_vec())]);
    let mut results = read_profiles(requests, opts).await;
    assert_eq!(results.len(), 1, "one table per relay");
    results.remove(url).expect("the relay's table")
}

/// What a fake relay behaving as `behaviour` gives for `authors`, read with
/// a 2 s connect timeout and `query` to wait for each EOSE.
async fn read_fake(
    behaviour: FakeBehaviour,
    authors: &[PublicKey],
    query: Duration,
) -> Observations {
    let fake = FakeRelay::start(behaviour).await;
    read_one(fake.url(), authors, &short_read_options(2 * SECOND, query)).await
}

fn newest_id(observation: &RelayObservation) -> &str {
    match observation {
        RelayObservation::Newest(event) => &event.id,
        other => panic!("expected Newest, got {other:?}"),
    }
}

/// Asserts every author of `table` is `Unreadable` with a reason containing
/// every one of `needles`.
fn assert_all_unreadable(table: &Observations, needles: &[&str]) {
    assert_all_reasons(table, false, needles)
}

/// Asserts every author of `table` is `AuthRefused` with a reason containing
/// every one of `needles`.
fn assert_all_auth_refused(table: &Observations, needles: &[&str]) {
    assert_all_reasons(table, true, needles)
}

fn assert_all_reasons(table: &Observations, auth_refused: bool, needles: &[&str]) {
    assert!(!table.is_empty());
    for (author, observation) in table {
        match observation {
            RelayObservation::Unreadable(reason) if !auth_refused => {
                for needle in needles {
                    assert!(
                        reason.contains(needle),
                        "{author}: reason {reason:?} lacks {needle:?}"
                    );
                }
            }
            RelayObservation::AuthRefused(reason) if auth_refused => {
                for needle in needles {
                    assert!(
                        reason.contains(needle),
                        "{author}: reason {reason:?} lacks {needle:?}"
                    );
                }
            }
            other => panic!("{author}: expected auth_refused={auth_refused}, got {other:?}"),
        }
    }
}

fn keys(n: usize) -> Vec<Keys> {
    (0..n).map(|_| Keys::generate()).collect()
}

/// One kind:0 for each of `agents`.
fn one_profile_each(agents: &[Keys]) -> Vec<Event> {
    agents
        .iter()
        .map(|k| signed_profile(k, 1_700_000_000, r#"{"name":"a"}"#))
        .collect()
}

/// Asserts the REQs named every one of `authors` exactly once, in filters of
/// at most 100.
fn assert_each_author_asked_once(requests: &[serde_json::Value], authors: &[PublicKey]) {
    let mut asked: Vec<String> = Vec::new();
    for request in requests {
        let in_filter = request[2]["authors"].as_array().unwrap();
        assert!(in_filter.len() <= 100);
        asked.extend(in_filter.iter().map(|a| a.as_str().unwrap().to_owned()));
    }
    asked.sort();
    let mut expected: Vec<String> = authors.iter().map(PublicKey::to_hex).collect();
    expected.sort();
    assert_eq!(asked, expected, "every author asked exactly once");
}

#[tokio::test]
async fn fixture_seed_reads_newest_for_seeded_authors_and_no_profile_for_the_rest() {
    let relay = start_local_relay().await;
    let url = relay.url().await.to_string();
    let seed = seed_events();
    publish_events(&url, &seed).await;

    // Every agent of the fixture store that lives on the live relay.
    let store: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_path("managed-agents.json")).unwrap(),
    )
    .unwrap();
    let mut authors: Vec<PublicKey> = store
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["relay_url"] == "ws://127.0.0.1:7777")
        .map(|record| PublicKey::from_hex(record["pubkey"].as_str().unwrap()).unwrap())
        .collect();
    // Listing an author twice still gives one observation.
    authors.push(authors[0]);

    let table = read_one(&url, &authors, &short_read_options(2 * SECOND, 3 * SECOND)).await;

    assert_eq!(
        table.len(),
        authors.len() - 1,
        "one observation per distinct author"
    );
    let seeded: HashMap<String, &Event> = seed.iter().map(|e| (e.pubkey.to_hex(), e)).collect();
    let mut no_profile = 0;
    for (author, observation) in &table {
        match seeded.get(author) {
            Some(event) => match observation {
                RelayObservation::Newest(existing) => {
                    assert_eq!(existing.id, event.id.to_hex(), "{author}");
                    assert_eq!(existing.created_at, event.created_at.as_secs());
                    assert_eq!(existing.content, event.content, "content verbatim");
                    assert_eq!(existing.tags.len(), event.tags.len());
                }
                other => panic!("{author}: expected Newest, got {other:?}"),
            },
            None => {
                assert_eq!(observation, &RelayObservation::NoProfile, "{author}");
                no_profile += 1;
            }
        }
    }
    assert!(no_profile > 0, "the fixture has agents without a kind:0");
    assert_eq!(
        no_profile + seed.len(),
        table.len(),
        "every seeded author was asked for"
    );
}

#[tokio::test]
async fn batching_250_authors_spread_over_several_filters_all_read_newest() {
    let relay = start_local_relay().await;
    let url = relay.url().await.to_string();
    let agents = keys(250);
    let events: Vec<Event> = agents
        .iter()
        .enumerate()
        .map(|(i, k)| {
            signed_profile(
                k,
                1_700_000_000 + i as u64,
                &format!(r#"{{"name":"agent {i}"}}"#),
            )
        })
        .collect();
    publish_events(&url, &events).await;
    let authors: Vec<PublicKey> = agents.iter().map(Keys::public_key).collect();

    // 100 authors per filter: three subscriptions, all sent at once.
    // 7 per filter: 36 subscriptions, more than are kept open at a time.
    for per_filter in [100, 7] {
        let opts = ReadOptions {
            authors_per_filter: per_filter,
            ..short_read_options(2 * SECOND, 3 * SECOND)
        };
        let table = read_one(&url, &authors, &opts).await;
        assert_eq!(table.len(), 250);
        for event in &events {
            assert_eq!(
                newest_id(&table[&event.pubkey.to_hex()]),
                event.id.to_hex(),
                "{per_filter} per filter"
            );
        }
    }
}

#[tokio::test]
async fn requests_name_at_most_100_authors_per_filter_without_limit_over_one_connection() {
    let fake = FakeRelay::start(FakeBehaviour::EventsThenEose(Vec::new())).await;
    let authors: Vec<PublicKey> = keys(250).iter().map(Keys::public_key).collect();
    let table = read_one(
        fake.url(),
        &authors,
        &short_read_options(2 * SECOND, 2 * SECOND),
    )
    .await;

    assert!(table.values().all(|o| *o == RelayObservation::NoProfile));
    assert_eq!(fake.connections(), 1, "one connection per relay");
    let requests = fake.requests();
    assert_eq!(requests.len(), 3, "250 authors in filters of at most 100");
    for request in &requests {
        let request = request.as_array().unwrap();
        assert_eq!(request.len(), 3, "one filter per REQ: {request:?}");
        let filter = request[2].as_object().unwrap();
        assert_eq!(filter["kinds"], json!([0]));
        assert!(!filter.contains_key("limit"), "no limit: {filter:?}");
    }
    assert_each_author_asked_once(&requests, &authors);
}

#[tokio::test]
async fn read_connections_spread_one_relays_whole_batches_over_several_connections() {
    let agents = keys(250);
    let events = one_profile_each(&agents);
    let authors: Vec<PublicKey> = agents.iter().map(Keys::public_key).collect();
    // 250 authors are 3 batches: 2 connections get 2 and 1 of them; 8
    // connections are capped at the 3 batches there are.
    for (connections, expected_connections) in [(2, 2), (8, 3)] {
        let fake = FakeRelay::start(FakeBehaviour::EventsThenEose(
            events.iter().map(Event::as_json).collect(),
        ))
        .await;
        let opts = ReadOptions {
            connections_per_relay: connections,
            ..short_read_options(2 * SECOND, 2 * SECOND)
        };
        let table = read_one(fake.url(), &authors, &opts).await;

        assert_eq!(fake.connections(), expected_connections);
        assert_eq!(table.len(), 250);
        for event in &events {
            assert_eq!(newest_id(&table[&event.pubkey.to_hex()]), event.id.to_hex());
        }
        let requests = fake.requests();
        assert_eq!(requests.len(), 3, "the same batches as over one connection");
        assert_each_author_asked_once(&requests, &authors);
    }
}

#[tokio::test]
async fn many_batches_are_pipelined_with_a_bounded_number_of_open_subscriptions() {
    let fake = FakeRelay::start(FakeBehaviour::EventsThenEose(Vec::new())).await;
    let authors: Vec<PublicKey> = keys(200).iter().map(Keys::public_key).collect();
    let opts = ReadOptions {
        authors_per_filter: 5,
        ..short_read_options(2 * SECOND, 2 * SECOND)
    };
    let table = read_one(fake.url(), &authors, &opts).await;

    assert_eq!(table.len(), 200);
    assert!(table.values().all(|o| *o == RelayObservation::NoProfile));
    assert_eq!(fake.requests().len(), 40);
    assert_eq!(fake.connections(), 1);
    let open = fake.max_open_subscriptions();
    assert!(
        open > 1,
        "several subscriptions in flight at once, saw {open}"
    );
    assert!(open <= 16, "open subscriptions bounded, saw {open}");
}

#[tokio::test]
async fn newest_by_nip01_order_greatest_created_at_then_lowest_id() {
    // Versions of each author's kind:0 arrive in an order unrelated to age;
    // nostr-relay-builder keeps only one version, so a fake relay sends them.
    let by_time = Keys::generate();
    let v1 = signed_profile(&by_time, 1_000, r#"{"v":1}"#);
    let v3 = signed_profile(&by_time, 3_000, r#"{"v":3}"#);
    let v2 = signed_profile(&by_time, 2_000, r#"{"v":2}"#);

    // Equal created_at: the lowest id wins, whichever arrives first.
    let (tie_a, tie_b) = (Keys::generate(), Keys::generate());
    let tie = |keys: &Keys| {
        let x = signed_profile(keys, 5_000, r#"{"x":1}"#);
        let y = signed_profile(keys, 5_000, r#"{"y":1}"#);
        let older = signed_profile(keys, 4_999, r#"{"old":1}"#);
        if x.id < y.id {
            (x, y, older)
        } else {
            (y, x, older)
        }
    };
    let (a_low, a_high, a_older) = tie(&tie_a);
    let (b_low, b_high, b_older) = tie(&tie_b);

    let raw: Vec<String> = [
        &v1, &a_high, &v3, &b_low, &a_older, &v2, &a_low, &b_older, &b_high,
    ]
    .iter()
    .map(|e| e.as_json())
    .collect();
    let fake = FakeRelay::start(FakeBehaviour::EventsThenEose(raw)).await;
    let authors = [by_time.public_key(), tie_a.public_key(), tie_b.public_key()];
    let table = read_one(
        fake.url(),
        &authors,
        &short_read_options(2 * SECOND, 2 * SECOND),
    )
    .await;

    assert_eq!(
        newest_id(&table[&by_time.public_key().to_hex()]),
        v3.id.to_hex()
    );
    assert_eq!(
        newest_id(&table[&tie_a.public_key().to_hex()]),
        a_low.id.to_hex(),
        "higher id came first"
    );
    assert_eq!(
        newest_id(&table[&tie_b.public_key().to_hex()]),
        b_low.id.to_hex(),
        "lower id came first"
    );
}

/// nostr-sdk 0.44 skips the checks of an event whose id it has seen before
/// on the connection, without hashing the event again: a relay could follow
/// a valid profile with a newer forged one under the same id and signature.
/// reprofile's reader checks every event it is sent.
#[tokio::test]
async fn a_forged_event_under_a_valid_events_id_and_signature_is_ignored() {
    let keys = Keys::generate();
    let valid = signed_profile(&keys, 1_000, r#"{"name":"valid"}"#);
    let forged: Value =
        serde_json::from_str(&json_with(&valid, "content", json!(r#"{"name":"forged"}"#))).unwrap();
    let mut forged = forged;
    forged["created_at"] = json!(2_000);
    let raw = vec![valid.as_json(), forged.to_string()];
    let table = read_fake(
        FakeBehaviour::EventsThenEose(raw),
        &[keys.public_key()],
        2 * SECOND,
    )
    .await;

    match &table[&keys.public_key().to_hex()] {
        RelayObservation::Newest(event) => {
            assert_eq!(event.id, valid.id.to_hex());
            assert_eq!(
                event.created_at, 1_000,
                "the forged newer copy was not believed"
            );
            assert!(event.content.contains("valid"), "{}", event.content);
        }
        other => panic!("expected the valid profile, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_events_other_kinds_and_foreign_authors_are_ignored() {
    let kept = Keys::generate(); // has one valid kind:0 under newer invalid ones
    let only_invalid = Keys::generate(); // has nothing valid
    let stranger = Keys::generate(); // valid kind:0, but not asked for

    let valid_old = signed_profile(&kept, 1_000, r#"{"name":"valid"}"#);
    let newer_for_signature = signed_profile(&kept, 2_000, r#"{"name":"forged"}"#);
    let other_signature = signed_profile(&kept, 2_000, r#"{"name":"other"}"#).sig;
    // A newer event whose signature belongs to another event.
    let bad_signature = json_with(
        &newer_for_signature,
        "sig",
        json!(other_signature.to_string()),
    );
    // A newer event whose content was changed after signing (id no longer matches).
    let bad_id = json_with(
        &signed_profile(&kept, 3_000, r#"{"name":"original"}"#),
        "content",
        json!(r#"{"name":"tampered"}"#),
    );
    // A newer event of another kind.
    let text_note = EventBuilder::new(Kind::TextNote, "hello")
        .custom_created_at(Timestamp::from_secs(4_000))
        .sign_with_keys(&kept)
        .unwrap();
    // The stranger's valid kind:0 relabelled with an asked-for author (id and
    // signature no longer match).
    let relabelled = json_with(
        &signed_profile(&stranger, 5_000, r#"{"name":"imposter"}"#),
        "pubkey",
        json!(only_invalid.public_key().to_hex()),
    );
    let invalid_only = json_with(
        &signed_profile(&only_invalid, 6_000, r#"{"name":"x"}"#),
        "sig",
        json!(other_signature.to_string()),
    );
    let foreign = signed_profile(&stranger, 7_000, r#"{"name":"stranger"}"#);

    let raw = vec![
        bad_signature,
        bad_id,
        text_note.as_json(),
        relabelled,
        invalid_only,
        foreign.as_json(),
        r#"{"not":"an event"}"#.to_owned(),
        valid_old.as_json(),
    ];
    let authors = [kept.public_key(), only_invalid.public_key()];
    let table = read_fake(FakeBehaviour::EventsThenEose(raw), &authors, 2 * SECOND).await;

    assert_eq!(
        table.len(),
        2,
        "only asked-for authors are reported: {table:?}"
    );
    assert_eq!(
        newest_id(&table[&kept.public_key().to_hex()]),
        valid_old.id.to_hex()
    );
    assert_eq!(
        table[&only_invalid.public_key().to_hex()],
        RelayObservation::NoProfile
    );
}

#[tokio::test]
async fn relay_down_gives_unreadable_for_every_author_within_the_connect_timeout() {
    let url = closed_port_url();
    let authors: Vec<PublicKey> = keys(3).iter().map(Keys::public_key).collect();
    let started = Instant::now();
    let table = read_one(&url, &authors, &short_read_options(2 * SECOND, 2 * SECOND)).await;

    assert!(
        started.elapsed() < 3 * SECOND,
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(table.len(), 3);
    assert_all_unreadable(&table, &["connection failed"]);
}

#[tokio::test]
async fn relay_that_never_completes_the_handshake_gives_unreadable() {
    let mock = MockRelay::run_with_opts(RelayTestOptions {
        unresponsive_connection: Some(Duration::from_secs(30)),
        send_random_events: false,
    })
    .await
    .unwrap();
    let url = mock.url().await.to_string();
    let authors = [Keys::generate().public_key()];
    let started = Instant::now();
    let table = read_one(&url, &authors, &short_read_options(SECOND, SECOND)).await;

    assert!(
        started.elapsed() < 3 * SECOND,
        "took {:?}",
        started.elapsed()
    );
    assert_all_unreadable(&table, &["connection failed: no connection after 1 s"]);
}

#[tokio::test]
async fn relay_that_never_sends_eose_gives_unreadable_after_the_query_timeout() {
    let fake = FakeRelay::start(FakeBehaviour::Silent).await;
    let authors: Vec<PublicKey> = keys(250).iter().map(Keys::public_key).collect();
    let started = Instant::now();
    let table = read_one(
        fake.url(),
        &authors,
        &short_read_options(2 * SECOND, SECOND),
    )
    .await;

    let elapsed = started.elapsed();
    assert!(
        elapsed >= SECOND && elapsed < 3 * SECOND,
        "took {elapsed:?}"
    );
    assert_eq!(table.len(), 250);
    assert_all_unreadable(&table, &["timed out after 1 s waiting for EOSE"]);
    assert_eq!(
        fake.requests().len(),
        3,
        "a relay that answers nothing is not asked again"
    );
}

/// 250 authors with one profile each, served by a relay that loses the REQs
/// numbered in `ignored`, read with a query timeout of 1 s; returns the
/// events, the table and the REQs seen.
async fn read_from_a_lossy_relay(
    ignored: Vec<usize>,
) -> (Vec<Event>, Observations, Vec<serde_json::Value>) {
    read_from_a_lossy_relay_within(ignored, SECOND).await
}

/// [`read_from_a_lossy_relay`] with a query timeout of `query`.
async fn read_from_a_lossy_relay_within(
    ignored: Vec<usize>,
    query: Duration,
) -> (Vec<Event>, Observations, Vec<serde_json::Value>) {
    let agents = keys(250);
    let events = one_profile_each(&agents);
    let fake = FakeRelay::start(FakeBehaviour::IgnoreReqs {
        ignored,
        events: events.iter().map(Event::as_json).collect(),
    })
    .await;
    let authors: Vec<PublicKey> = agents.iter().map(Keys::public_key).collect();
    let table = read_one(fake.url(), &authors, &short_read_options(2 * SECOND, query)).await;
    assert_eq!(fake.connections(), 1, "asked again on the same connection");
    (events, table, fake.requests())
}

fn authors_of(request: &serde_json::Value) -> &serde_json::Value {
    &request[2]["authors"]
}

#[tokio::test]
async fn a_subscription_the_relay_loses_is_asked_again_once_on_a_fresh_subscription() {
    // The first of three REQs goes unanswered while the other two complete.
    let (events, table, requests) = read_from_a_lossy_relay(vec![0]).await;

    assert_eq!(table.len(), 250);
    for event in &events {
        assert_eq!(
            newest_id(&table[&event.pubkey.to_hex()]),
            event.id.to_hex(),
            "every author read, the lost batch's too"
        );
    }
    assert_eq!(requests.len(), 4, "the lost REQ is sent once more");
    assert_eq!(authors_of(&requests[3]), authors_of(&requests[0]));
    assert_ne!(
        requests[3][1], requests[0][1],
        "asked again on a fresh subscription id"
    );
}

#[tokio::test]
async fn the_last_subscription_the_relay_loses_is_asked_again_without_waiting_out_its_timeout() {
    // The last of three REQs goes unanswered after the other two complete:
    // no later one is left to overtake it, and the query timeout is long.
    let query = 60 * SECOND;
    let started = std::time::Instant::now();
    let (events, table, requests) = read_from_a_lossy_relay_within(vec![2], query).await;
    let elapsed = started.elapsed();

    assert_eq!(requests.len(), 4, "the lost REQ is sent once more");
    assert_eq!(authors_of(&requests[3]), authors_of(&requests[2]));
    for event in &events {
        assert_eq!(
            newest_id(&table[&event.pubkey.to_hex()]),
            event.id.to_hex(),
            "every author read, the lost batch's too"
        );
    }
    // Asked again after 2 s of silence, not at the 60 s deadline.
    assert!(elapsed < query / 4, "took {elapsed:?}");
}

#[tokio::test]
async fn a_subscription_lost_twice_gives_unreadable_for_its_authors_only() {
    // The first REQ and its second asking (the fourth REQ) both go unanswered.
    let (events, table, requests) = read_from_a_lossy_relay(vec![0, 3]).await;

    assert_eq!(requests.len(), 4, "asked again once, not a third time");
    let lost: Vec<&str> = authors_of(&requests[0])
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(lost.len(), 100);
    for event in &events {
        let author = event.pubkey.to_hex();
        match &table[&author] {
            RelayObservation::Unreadable(reason) if lost.contains(&author.as_str()) => {
                assert_contains(reason, "timed out after 1 s waiting for EOSE");
            }
            observation if lost.contains(&author.as_str()) => {
                panic!("{author} was never answered but got {observation:?}")
            }
            observation => assert_eq!(newest_id(observation), event.id.to_hex()),
        }
    }
}

#[tokio::test]
async fn closed_subscription_gives_unreadable_with_the_relays_message() {
    let authors: Vec<PublicKey> = keys(2).iter().map(Keys::public_key).collect();
    let table = read_fake(
        FakeBehaviour::Closed("blocked: members only".to_owned()),
        &authors,
        2 * SECOND,
    )
    .await;

    assert_all_unreadable(
        &table,
        &["relay closed the subscription: blocked: members only"],
    );
}

/// A relay that demands NIP-42 authentication for reads (not for writes),
/// holding the fixture's seed profiles: the relay, its URL, the seed and its
/// authors.
async fn seeded_relay_demanding_auth_for_reads() -> (LocalRelay, String, Vec<Event>, Vec<PublicKey>)
{
    let (relay, url) = start_relay_demanding_auth(RelayBuilderNip42Mode::Read).await;
    let seed = seed_events();
    publish_events(&url, &seed).await;
    let authors: Vec<PublicKey> = seed.iter().map(|e| e.pubkey).collect();
    (relay, url, seed, authors)
}

#[tokio::test]
async fn relay_demanding_nip42_auth_for_reads_gives_unreadable_not_no_profile() {
    // The relay holds profiles (writing needs no auth), but will not show them.
    let (_relay, url, seed, authors) = seeded_relay_demanding_auth_for_reads().await;
    let table = read_one(&url, &authors, &short_read_options(2 * SECOND, 2 * SECOND)).await;

    // No identity to sign in as: refused authentication, with the relay's
    // message, never "no profile".
    assert_eq!(table.len(), seed.len());
    assert_all_auth_refused(&table, &["auth-required", "no identity to sign in as"]);
}

#[tokio::test]
async fn a_reader_signs_in_when_the_relay_demands_nip42_and_reads_every_profile() {
    let (_relay, url, seed, authors) = seeded_relay_demanding_auth_for_reads().await;
    let reader = Keys::generate();
    let opts = ReadOptions {
        identities: std::sync::Arc::new(BTreeMap::from([(
            url.clone(),
            vec![Identity {
                keys: reader,
                auth_tag: None,
                relay_tag: url.clone(),
                label: "test reader".to_owned(),
            }],
        )])),
        ..short_read_options(2 * SECOND, 2 * SECOND)
    };
    let requests = BTreeMap::from([(url.clone(), authors.clone())]);
    let read = read_relays(requests, &opts)
        .await
        .remove(&url)
        .expect("read");

    assert!(read.auth_demanded, "the relay refused the first REQs");
    for event in &seed {
        let observation = &read.observations[&event.pubkey.to_hex()];
        let seen = newest_id(observation);
        // Every author has its newest seeded profile (several may be seeded).
        assert!(
            seed.iter()
                .any(|e| e.pubkey == event.pubkey && e.id.to_hex() == seen),
            "{observation:?}"
        );
    }
}

#[tokio::test]
async fn connection_dropped_before_eose_gives_unreadable_even_after_events() {
    let keys = Keys::generate();
    let event = signed_profile(&keys, 1_000, r#"{"name":"partial"}"#);
    let started = Instant::now();
    let dropping = FakeBehaviour::EventsThenDisconnect(vec![event.as_json()]);
    let table = read_fake(dropping, &[keys.public_key()], 3 * SECOND).await;

    assert!(
        started.elapsed() < 3 * SECOND,
        "noticed before the deadline"
    );
    assert_all_unreadable(&table, &["connection dropped before EOSE"]);
}

#[tokio::test]
async fn notice_instead_of_eose_gives_unreadable_after_the_deadline() {
    let authors = [Keys::generate().public_key()];
    let started = Instant::now();
    let notice = FakeBehaviour::NoticeInsteadOfEose("rate-limited: slow down".to_owned());
    let table = read_fake(notice, &authors, SECOND).await;

    assert!(started.elapsed() >= SECOND, "waited for the deadline");
    assert_all_unreadable(
        &table,
        &[
            "timed out after 1 s waiting for EOSE",
            "rate-limited: slow down",
        ],
    );
}

#[tokio::test]
async fn relays_are_read_independently_a_bad_relay_does_not_spoil_a_good_one() {
    let good = start_local_relay().await;
    let good_url = good.url().await.to_string();
    let agent = Keys::generate();
    let profile = signed_profile(&agent, 1_700_000_000, r#"{"name":"fine"}"#);
    publish_events(&good_url, std::slice::from_ref(&profile)).await;
    let silent = FakeRelay::start(FakeBehaviour::Silent).await;
    let down = closed_port_url();
    let other = Keys::generate().public_key();

    let requests = BTreeMap::from([
        (good_url.clone(), vec![agent.public_key()]),
        (silent.url().to_owned(), vec![agent.public_key(), other]),
        (down.clone(), vec![agent.public_key()]),
    ]);
    let results = read_profiles(requests, &short_read_options(2 * SECOND, SECOND)).await;

    assert_eq!(results.len(), 3);
    assert_eq!(
        newest_id(&results[&good_url][&agent.public_key().to_hex()]),
        profile.id.to_hex()
    );
    assert_all_unreadable(&results[silent.url()], &["timed out"]);
    assert_eq!(results[silent.url()].len(), 2);
    assert_all_unreadable(&results[&down], &["connection failed"]);
}

#[tokio::test]
async fn max_concurrent_relays_bounds_how_many_relays_are_read_at_once() {
    let silent: Vec<FakeRelay> =
        futures_util::future::join_all((0..3).map(|_| FakeRelay::start(FakeBehaviour::Silent)))
            .await;
    let author = Keys::generate().public_key();
    let requests: BTreeMap<String, Vec<PublicKey>> = silent
        .iter()
        .map(|fake| (fake.url().to_owned(), vec![author]))
        .collect();

    // All three at once: about one query timeout in total.
    let started = Instant::now();
    let results = read_profiles(requests.clone(), &short_read_options(2 * SECOND, SECOND)).await;
    let parallel = started.elapsed();
    assert_eq!(results.len(), 3);
    assert!(
        parallel < Duration::from_millis(2500),
        "read concurrently, took {parallel:?}"
    );

    // One at a time: one query timeout each.
    // One at a time: one query timeout each, also when each relay may be
    // read over several connections (the bound is on relays).
    for connections_per_relay in [1, 2] {
        let opts = ReadOptions {
            max_concurrent_relays: 1,
            connections_per_relay,
            ..short_read_options(2 * SECOND, SECOND)
        };
        let started = Instant::now();
        let results = read_profiles(requests.clone(), &opts).await;
        let serial = started.elapsed();
        assert_eq!(results.len(), 3);
        for table in results.values() {
            assert_all_unreadable(table, &["timed out"]);
        }
        assert!(
            serial >= 3 * SECOND,
            "one relay at a time over {connections_per_relay} connection(s), took {serial:?}"
        );
    }
}

#[tokio::test]
async fn connections_are_closed_when_the_read_returns() {
    let answering = FakeRelay::start(FakeBehaviour::EventsThenEose(Vec::new())).await;
    let silent = FakeRelay::start(FakeBehaviour::Silent).await;
    let author = Keys::generate().public_key();
    let requests = BTreeMap::from([
        (answering.url().to_owned(), vec![author]),
        (silent.url().to_owned(), vec![author]),
    ]);
    let results = read_profiles(requests, &short_read_options(2 * SECOND, SECOND)).await;

    assert_eq!(
        results[answering.url()][&author.to_hex()],
        RelayObservation::NoProfile
    );
    assert_all_unreadable(&results[silent.url()], &["timed out"]);
    for fake in [&answering, &silent] {
        assert_eq!(fake.connections(), 1);
        assert!(
            fake.wait_until_no_connection_is_open(5 * SECOND).await,
            "{} still has a client connection",
            fake.url()
        );
    }
}
