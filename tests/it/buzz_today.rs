//! A Buzz desktop 0.5 user, end to end: a store in today's format (persona
//! definitions as key-less records, agent keys only in the OS keyring but
//! one kept inline, `relay_url` empty), the keys in a real Secret Service
//! (gnome-keyring on a private D-Bus), and the agents on two community
//! relays: the real Buzz relay (closed mode: agents are let in by their
//! owner's NIP-OA tag) and another relay. `reprofile plan`, `apply` and
//! `plan` again, run as the binary a user runs, with nothing but
//! `[buzz] communities` set, end with every profile right on both
//! communities and no key anywhere in what reprofile printed or wrote.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use nostr::nips::nip19::ToBech32;
use nostr::{Event, Filter, Keys, Kind};
use serde_json::{json, Value};

use crate::support::buzz::{app_record, BuzzMode, BuzzRelay, BuzzSocket, ReqEnd};
use crate::support::secret_service::SecretService;
use crate::support::start_local_relay;

const BINARY: &str = env!("CARGO_BIN_EXE_reprofile");
const PERSONA_AVATAR: &str = "https://persona.example/research.png";
const FIZZ_AVATAR: &str = "https://img.example/fizz.png";
const HELPER_AVATAR: &str = "https://img.example/helper.png";

/// One instance of today's store.
struct Agent {
    name: &'static str,
    keys: Keys,
    /// In the keyring only (else inline in the record).
    in_keyring: bool,
}

/// A definition record (a persona): `pubkey` empty, its `slug`.
fn definition(slug: &str, name: &str, avatar: &str) -> Value {
    app_record(json!({
        "pubkey": "",
        "name": name,
        "persona_id": null,
        "relay_url": "",
        "avatar_url": avatar,
        "display_name": name,
        "slug": slug,
        "is_builtin": false,
        "is_active": true,
    }))
}

/// An instance: `relay_url` empty (the app runs it on every community),
/// its NIP-OA tag from `owner`, its key inline only when not in the keyring.
fn instance(agent: &Agent, owner: &Keys, persona: Option<&str>, avatar: Option<&str>) -> Value {
    let tag = reprofile::core::nip_oa::sign(owner, &agent.keys.public_key().to_hex(), "");
    let mut record = app_record(json!({
        "pubkey": agent.keys.public_key().to_hex(),
        "name": agent.name,
        "persona_id": persona,
        "auth_tag": json!(tag).to_string(),
        "relay_url": "",
        "agent_command": "goose",
        "avatar_url": avatar,
    }));
    let object = record.as_object_mut().expect("a record is an object");
    object.remove("private_key_nsec");
    if !agent.in_keyring {
        object.insert(
            "private_key_nsec".into(),
            json!(agent.keys.secret_key().to_bech32().unwrap()),
        );
    }
    record
}

fn run(service: &SecretService, config: &Path, args: &[&str]) -> Output {
    let output = service
        .command(BINARY)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run reprofile");
    eprintln!(
        "reprofile {args:?}: {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Every kind:0 of `authors` on the Buzz relay, read by a member (the
/// owner) over a raw websocket.
async fn buzz_profiles(relay: &BuzzRelay, owner: &Keys, authors: &[String]) -> Vec<Event> {
    let mut socket = BuzzSocket::connect(&relay.url()).await;
    let (accepted, message) = socket.auth(owner, None).await;
    assert!(accepted, "the owner signs in: {message}");
    let (events, end) = socket
        .req("profiles", json!({"kinds": [0], "authors": authors}))
        .await;
    assert_eq!(end, ReqEnd::Eose);
    events
}

/// Every kind:0 of `authors` on the other relay.
async fn other_profiles(url: &str, authors: &[String]) -> Vec<Event> {
    let client = nostr_sdk::Client::default();
    client.add_relay(url).await.unwrap();
    client.connect().await;
    let authors = authors
        .iter()
        .map(|a| nostr::PublicKey::from_hex(a).unwrap());
    let events = client
        .fetch_events(
            Filter::new().kind(Kind::Metadata).authors(authors),
            Duration::from_secs(10),
        )
        .await
        .expect("read the other relay");
    events.into_iter().collect()
}

/// `events` hold exactly one kind:0 per agent, signed by it, showing its
/// name and `pictures[name]`.
fn assert_profiles(relay: &str, events: &[Event], agents: &[Agent], pictures: &[(&str, &str)]) {
    assert_eq!(events.len(), agents.len(), "{relay}: {events:#?}");
    for agent in agents {
        let event = events
            .iter()
            .find(|e| e.pubkey == agent.keys.public_key())
            .unwrap_or_else(|| panic!("{relay}: no profile for {}", agent.name));
        event.verify().expect("a valid signature");
        let content: Value = serde_json::from_str(&event.content).unwrap();
        let picture = pictures
            .iter()
            .find(|(name, _)| *name == agent.name)
            .map(|(_, p)| *p)
            .unwrap();
        assert_eq!(content["display_name"], agent.name, "{relay}");
        assert_eq!(content["picture"], picture, "{relay}: {}", agent.name);
    }
}

/// No private key in `text` (what reprofile printed or wrote).
fn assert_no_key(what: &str, text: &str) {
    assert!(!text.contains("nsec1"), "{what} holds a private key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buzz_05_store_with_keys_in_the_keyring_converges_on_every_community() {
    let owner = Keys::generate();
    let buzz = BuzzRelay::start(BuzzMode::Closed {
        owner: owner.clone(),
    })
    .await;
    let other = start_local_relay().await;
    let other_url = other.url().await.to_string();

    let agents = [
        Agent {
            name: "Fizz",
            keys: Keys::generate(),
            in_keyring: true,
        },
        Agent {
            name: "Scout",
            keys: Keys::generate(),
            in_keyring: true,
        },
        Agent {
            name: "Helper",
            keys: Keys::generate(),
            in_keyring: false,
        },
    ];
    let [fizz, scout, helper] = &agents;
    // As the app sorts: by lower-case name; definitions among them.
    let store = json!([
        definition("builtin:fizz", "Fizz", "data:image/png;base64,AAAA"),
        instance(fizz, &owner, Some("builtin:fizz"), Some(FIZZ_AVATAR)),
        instance(helper, &owner, None, Some(HELPER_AVATAR)),
        definition("persona-research", "Researcher", PERSONA_AVATAR),
        instance(scout, &owner, Some("persona-research"), None),
    ]);
    let store_text = serde_json::to_string_pretty(&store).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("managed-agents.json");
    std::fs::write(&store_path, &store_text).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nagents = \"managed-agents.json\"\n\n[plans]\ndir = \"plans\"\n\n\
             [relay]\nconnect_timeout_secs = 5\nquery_timeout_secs = 10\npublish_timeout_secs = 10\n\n\
             [buzz]\ncommunities = [\"{}\", \"{other_url}\"]\n",
            buzz.url()
        ),
    )
    .unwrap();

    // The keyring entry as the app writes it: the owner's identity and the
    // two keyring agents' keys.
    let service = SecretService::start();
    let secrets = json!({
        "identity": owner.secret_key().to_bech32().unwrap(),
        format!("agent:{}", fizz.keys.public_key().to_hex()): fizz.keys.secret_key().to_bech32().unwrap(),
        format!("agent:{}", scout.keys.public_key().to_hex()): scout.keys.secret_key().to_bech32().unwrap(),
    });
    service.store("buzz-desktop", "secrets", &secrets.to_string());

    // validate: the keys' origins, the definitions apart.
    let validate = run(&service, &config, &["validate"]);
    let said = String::from_utf8_lossy(&validate.stdout).to_string();
    assert!(validate.status.success(), "{said}");
    assert!(
        said.contains("keys: keyring 2, inline 1, missing 0"),
        "{said}"
    );
    assert!(said.contains("3 agent records, 2 definitions"), "{said}");

    // plan: each agent on each community, all missing.
    let plan = run(&service, &config, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "a complete plan with actions");
    let plan_json = newest_plan(dir.path());
    let actions = plan_json["actions"].as_array().unwrap();
    let republishes: Vec<(&str, &str)> = actions
        .iter()
        .filter(|a| a["type"] == "republish_profile")
        .map(|a| (a["agent"].as_str().unwrap(), a["relay"].as_str().unwrap()))
        .collect();
    assert_eq!(republishes.len(), 6, "{actions:#?}");
    let backfills: Vec<&Value> = actions
        .iter()
        .filter(|a| a["type"] == "backfill_avatar")
        .collect();
    assert_eq!(backfills.len(), 1, "Scout's, once: {actions:#?}");
    assert_eq!(backfills[0]["avatar_url"], PERSONA_AVATAR);

    // apply: plans again and applies.
    let apply = run(&service, &config, &["apply", "--auto-approve"]);
    assert!(apply.status.success());

    let authors: Vec<String> = agents
        .iter()
        .map(|a| a.keys.public_key().to_hex())
        .collect();
    let pictures = [
        ("Fizz", FIZZ_AVATAR),
        ("Scout", PERSONA_AVATAR),
        ("Helper", HELPER_AVATAR),
    ];
    assert_profiles(
        &buzz.url(),
        &buzz_profiles(&buzz, &owner, &authors).await,
        &agents,
        &pictures,
    );
    assert_profiles(
        &other_url,
        &other_profiles(&other_url, &authors).await,
        &agents,
        &pictures,
    );

    // plan again: nothing left, on either community.
    let again = run(&service, &config, &["plan", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "complete, no actions");

    // The store: Scout's avatar backfilled, the definitions byte for byte,
    // no key written into it.
    let after = std::fs::read_to_string(&store_path).unwrap();
    let records: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(records[4]["avatar_url"], PERSONA_AVATAR);
    for position in [0, 3] {
        assert_eq!(records[position], store[position]);
    }
    assert_eq!(
        after.matches("nsec1").count(),
        1,
        "only Helper's inline key"
    );
    // Nothing printed or written holds a key.
    for output in [&validate, &plan, &apply, &again] {
        assert_no_key("stdout", &String::from_utf8_lossy(&output.stdout));
        assert_no_key("stderr", &String::from_utf8_lossy(&output.stderr));
    }
    for entry in std::fs::read_dir(dir.path().join("plans")).unwrap() {
        let path = entry.unwrap().path();
        assert_no_key(
            &path.display().to_string(),
            &std::fs::read_to_string(&path).unwrap(),
        );
    }
    // The keyring was only read.
    assert_eq!(
        service.lookup("buzz-desktop", "secrets").as_deref(),
        Some(secrets.to_string().as_str())
    );
}

/// The newest plan file's JSON in `dir/plans`.
fn newest_plan(dir: &Path) -> Value {
    let mut plans: Vec<_> = std::fs::read_dir(dir.join("plans"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    plans.sort();
    let newest = plans.last().expect("a plan was written");
    serde_json::from_str(&std::fs::read_to_string(newest).unwrap()).unwrap()
}
