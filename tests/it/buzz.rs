//! The real Buzz relay behaves as `../shared/spec/buzz.md` (section 2) says:
//! the facts reprofile's reader and publisher rely on, checked with a raw
//! websocket against the relay built by `.ci/setup`. Also checks the harness
//! itself (cleanup on drop, the app-format store helper).
//!
//! When the relay, Postgres or Redis is missing these tests fail and say to
//! run `.ci/setup`; they never pass silently.

use std::collections::BTreeMap;

use nostr::Keys;
use reprofile::core::nip_oa;
use serde_json::json;

use crate::support::buzz::{
    buzz_store, database_exists, generate_agents, seed_profile, BuzzMode, BuzzRelay, BuzzSocket,
    ReqEnd, StoreAgent,
};

/// The kind:0 content every seeded profile here has.
const PROFILE: &str = r#"{"display_name":"Seeded","picture":"https://img.example/a.png"}"#;

fn now() -> u64 {
    reprofile::engine::orchestrate::now_secs()
}

fn closed_relay(owner: &Keys) -> BuzzMode {
    BuzzMode::Closed {
        owner: owner.clone(),
    }
}

/// A REQ for `author`'s kind:0 on `socket` ends with EOSE and gives exactly
/// `expected`.
async fn assert_reads_only(socket: &mut BuzzSocket, author: &Keys, expected: nostr::Event) {
    let filter = json!({"kinds": [0], "authors": [author.public_key().to_hex()]});
    let (events, end) = socket.req("profile", filter).await;
    assert_eq!(end, ReqEnd::Eose);
    assert_eq!(events, vec![expected]);
}

fn assert_closed_with(end: ReqEnd, prefix: &str) {
    match end {
        ReqEnd::Closed(message) => assert!(
            message.starts_with(prefix),
            "CLOSED message {message:?} does not start with {prefix:?}"
        ),
        ReqEnd::Eose => panic!("expected CLOSED {prefix:?}..., got EOSE"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buzz_closed_relay_refuses_reads_before_auth_and_lets_in_an_agent_carrying_its_owners_tag()
{
    let owner = Keys::generate();
    let relay = BuzzRelay::start(closed_relay(&owner)).await;

    // The challenge arrives at once (connect fails otherwise).
    let mut socket = BuzzSocket::connect(&relay.url()).await;
    assert!(!socket.challenge.is_empty());
    let (events, end) = socket.req("early", json!({"kinds": [0]})).await;
    assert!(events.is_empty());
    assert_closed_with(end, "auth-required: ");

    let agent = Keys::generate();
    let tag = nip_oa::sign(&owner, &agent.public_key().to_hex(), "");
    let (accepted, message) = socket.auth(&agent, Some(&tag)).await;
    assert!(accepted, "AUTH with the owner's tag refused: {message}");
    let (_, end) = socket.req("late", json!({"kinds": [0]})).await;
    assert_eq!(end, ReqEnd::Eose);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buzz_closed_relay_refuses_a_key_without_a_members_tag_until_it_is_a_member() {
    let owner = Keys::generate();
    let relay = BuzzRelay::start(closed_relay(&owner)).await;
    let stranger = Keys::generate();
    let not_a_member = "restricted: not a relay member".to_owned();

    let mut socket = BuzzSocket::connect(&relay.url()).await;
    assert_eq!(
        socket.auth(&stranger, None).await,
        (false, not_a_member.clone())
    );
    // A refused AUTH poisons the connection.
    let (accepted, message) = socket.auth(&owner, None).await;
    assert!(!accepted);
    assert_eq!(message, "auth-required: authentication already failed");

    // A tag signed by a key that is not a member does not let the agent in.
    let agent = Keys::generate();
    let foreign_tag = nip_oa::sign(&stranger, &agent.public_key().to_hex(), "");
    let mut socket = BuzzSocket::connect(&relay.url()).await;
    assert_eq!(
        socket.auth(&agent, Some(&foreign_tag)).await,
        (false, not_a_member)
    );

    relay.add_member(&stranger.public_key().to_hex());
    let mut socket = BuzzSocket::connect(&relay.url()).await;
    let (accepted, message) = socket.auth(&stranger, None).await;
    assert!(accepted, "AUTH by a member refused: {message}");
    let mut socket = BuzzSocket::connect(&relay.url()).await;
    let (accepted, message) = socket.auth(&agent, Some(&foreign_tag)).await;
    assert!(accepted, "AUTH with a new member's tag refused: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buzz_closed_relay_takes_a_profile_only_from_its_author_and_any_member_reads_it() {
    let owner = Keys::generate();
    let relay = BuzzRelay::start(closed_relay(&owner)).await;
    let agent = Keys::generate();
    let tag = nip_oa::sign(&owner, &agent.public_key().to_hex(), "kind=0");

    // The owner's connection may not publish the agent's event.
    let event = crate::support::signed_profile(&agent, now(), PROFILE);
    let mut socket = BuzzSocket::connect(&relay.url()).await;
    assert!(socket.auth(&owner, None).await.0);
    assert_eq!(
        socket.publish(&event).await,
        (
            false,
            "invalid: event pubkey does not match authenticated identity".to_owned()
        )
    );

    let seeded = seed_profile(&relay.url(), &agent, Some(&tag), PROFILE, now()).await;
    assert_reads_only(&mut socket, &agent, seeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buzz_open_relay_lets_any_key_that_completes_auth_read() {
    let relay = BuzzRelay::start(BuzzMode::Open).await;
    let writer = Keys::generate();
    let seeded = seed_profile(&relay.url(), &writer, None, PROFILE, now()).await;

    let mut socket = BuzzSocket::connect(&relay.url()).await;
    let (_, end) = socket.req("early", json!({"kinds": [0]})).await;
    assert_closed_with(end, "auth-required: ");
    let (accepted, message) = socket.auth(&Keys::generate(), None).await;
    assert!(accepted, "AUTH refused on an open relay: {message}");
    assert_reads_only(&mut socket, &writer, seeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_buzz_relay_stops_it_and_removes_its_folder_and_database() {
    let relay = BuzzRelay::start(BuzzMode::Open).await;
    let port = relay.url().rsplit(':').next().unwrap().to_owned();
    let dir = relay.dir().to_path_buf();
    let database = relay.database().to_owned();
    assert!(dir.is_dir() && database_exists(&database));

    drop(relay);
    assert!(std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err());
    assert!(!dir.exists(), "{} is left behind", dir.display());
    assert!(!database_exists(&database), "{database} is left behind");
}

#[test]
fn buzz_store_is_the_apps_format_and_reprofile_reads_it_without_findings() {
    let owner = Keys::generate();
    let mut agents = generate_agents(&owner, 3, "kind=0");
    agents.push(StoreAgent::new("Zed", Keys::generate()).with_tag(&owner, ""));
    agents.push(StoreAgent::new("beta", Keys::generate()));
    let text = buzz_store("ws://127.0.0.1:7777", &agents);

    let records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["agent-000", "agent-001", "agent-002", "beta", "Zed"]
    );
    assert!(records.iter().all(|r| r["respond_to"] == "owner-only"));
    assert!(records.iter().all(|r| r["avatar_url"].is_null()));
    assert!(records[3]["auth_tag"].is_null());

    let store = reprofile::store::agents::parse_agent_store("managed-agents.json".as_ref(), text)
        .expect("reprofile reads the store");
    let parsed: Vec<_> = store.records.into_iter().map(|r| r.record).collect();
    for record in parsed.iter().filter(|r| r.auth_tag.is_some()) {
        let tag = nip_oa::parse_tag_json(record.auth_tag.as_deref().unwrap()).unwrap();
        let verified = nip_oa::verify(&tag, &record.pubkey).expect("the tag verifies");
        assert_eq!(verified.owner, owner.public_key().to_hex());
    }
    let findings = reprofile::core::validate::validate_records(
        &parsed,
        &BTreeMap::new(),
        &reprofile::core::model::Policy::default(),
        now(),
    );
    let errors: Vec<_> = findings
        .iter()
        .filter(|f| f.severity == reprofile::core::validate::Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}
