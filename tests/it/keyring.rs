//! Agent keys in the OS keyring, end to end: the real `reprofile` binary
//! against a real Secret Service (gnome-keyring on a private D-Bus bus, one
//! per test: [`SecretService`]), a real relay over a real websocket on
//! 127.0.0.1, and a store as Buzz desktop 0.4/0.5 writes it (definition
//! records with `"pubkey": ""` beside the agents; keys in the keyring entry
//! `buzz-desktop/secrets`, or inline when the app found no keyring).
//!
//! Each test asserts outcomes: exit codes, the lines `validate` prints, the
//! plan JSON, and the kind:0 events that end up on the relay, signed by each
//! agent's own key. No private key (the agents', nor the owner's `identity`,
//! which sits in the same entry) may appear in any output or written file.
//!
//! The store and the keyring entry are the `buzz-today` fixture
//! (`shared/fixtures/buzz-today/`: `managed-agents.json` and
//! `keyring-secrets.json`, throwaway keys), carried here verbatim, with each
//! instance's `relay_url` pointed at the test's own relay (the definitions
//! keep their `""`). The Secret Service is never mocked; "no Secret Service"
//! is a private bus with nothing on it ([`SecretService::without_keyring`])
//! or a bus address where nothing listens.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use nostr::nips::nip19::FromBech32;
use nostr::{Event, Filter, Kind, PublicKey, SecretKey};
use serde_json::Value;

use crate::support::secret_service::SecretService;
use crate::support::start_local_relay;

/// The agents of the fixture store (pubkey hex).
const FIZZ: &str = "b1db95c9bef93d73700dadcd93b40aa74bf6058fa0f764560f729ed95a9e8c28";
const SCOUT: &str = "2246180c7319e9e3ec0f5ab60ebb877dd22091b610f6889767c0494c9cf40521";
const HELPER: &str = "e952db584ff2387ff5b83906b10d328d3298b629d976e4be708236f1a94eaabd";

/// Scout's persona (the definition `persona-research`) has this avatar;
/// Scout's own `avatar_url` is `null`.
const RESEARCH_AVATAR: &str = "https://persona.example/research.png";
/// Helper's own avatar (it has no persona).
const HELPER_AVATAR: &str = "https://img.example/helper.png";

/// The keyring services of the app's release and dev builds, and the
/// entry's one username.
const RELEASE: &str = "buzz-desktop";
const DEV: &str = "buzz-desktop-dev";
const USERNAME: &str = "secrets";

/// How long a test waits for the relay to answer a read.
const RELAY_TIMEOUT: Duration = Duration::from_secs(10);

// ---- the world of one test ----

/// A temp folder with the store (`app/managed-agents.json`, the only file
/// that may hold a key), a config.toml and the plans folder, and the relay
/// the store's agents name.
struct World {
    dir: tempfile::TempDir,
    config: PathBuf,
    /// Serves until the world is dropped.
    _relay: nostr_relay_builder::LocalRelay,
    relay_url: String,
}

impl World {
    /// The fixture store with every instance on a fresh relay, changed by
    /// `edit` (the parsed records), and a config whose `[store]` table has
    /// `agents` and the lines `store`, followed by `extra`.
    async fn start(edit: impl FnOnce(&mut Vec<Value>), store: &str, extra: &str) -> World {
        let relay = start_local_relay().await;
        let relay_url = relay.url().await.to_string();
        let dir = tempfile::Builder::new()
            .prefix("reprofile-agent-keys-")
            .tempdir()
            .expect("make a temp folder");
        std::fs::create_dir(dir.path().join("app")).expect("make the store folder");
        let world = World {
            config: dir.path().join("config.toml"),
            dir,
            _relay: relay,
            relay_url,
        };
        world.write_store(&world.store_path(), edit);
        std::fs::write(
            &world.config,
            format!(
                "[store]\nagents = \"app/managed-agents.json\"\n{store}\n\
                 [plans]\ndir = \"plans\"\n\n\
                 [relay]\nconnect_timeout_secs = 2\nquery_timeout_secs = 5\npublish_timeout_secs = 5\n\n\
                 {extra}\n"
            ),
        )
        .expect("write config.toml");
        world
    }

    fn store_path(&self) -> PathBuf {
        self.dir.path().join("app/managed-agents.json")
    }

    fn plans_dir(&self) -> PathBuf {
        self.dir.path().join("plans")
    }

    /// Writes the fixture store to `path` (mode 0600, as the app does), each
    /// instance's `relay_url` set to this world's relay, then `edit`ed.
    fn write_store(&self, path: &Path, edit: impl FnOnce(&mut Vec<Value>)) {
        let mut records = fixture_records();
        for record in &mut records {
            if record["pubkey"] != "" {
                record["relay_url"] = Value::String(self.relay_url.clone());
            }
        }
        edit(&mut records);
        let text = serde_json::to_string_pretty(&records).expect("store JSON");
        std::fs::write(path, text).expect("write the store");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .expect("make the store 0600");
    }

    /// Runs `reprofile --config <config> args...` in the world's folder with
    /// `command`'s environment (a Secret Service's bus, or none), off the
    /// async runtime so the in-process relay keeps serving.
    async fn run(&self, command: Command, args: &[&str]) -> Output {
        let mut all = vec!["--config".to_string(), self.config.display().to_string()];
        all.extend(args.iter().map(|arg| arg.to_string()));
        run(command, &all, self.dir.path()).await
    }

    /// `flags... plan --out <plans>/<name>.json`: the run and the plan JSON
    /// it wrote.
    async fn plan(&self, command: Command, flags: &[&str], name: &str) -> (Output, Value) {
        let out = self.plans_dir().join(format!("{name}.json"));
        let mut args = flags.to_vec();
        args.extend(["plan", "--out", out.to_str().expect("a UTF-8 path")]);
        let output = self.run(command, &args).await;
        let plan = read_json(&out);
        (output, plan)
    }

    /// The newest kind:0 of each of `agents` on the relay, by pubkey hex;
    /// each checked to verify (id and signature) and to be signed by the
    /// agent it is for.
    async fn profiles(&self, agents: &[&str]) -> BTreeMap<String, Event> {
        let client = nostr_sdk::Client::default();
        client
            .add_relay(&self.relay_url)
            .await
            .expect("add the relay");
        client
            .try_connect_relay(&self.relay_url, RELAY_TIMEOUT)
            .await
            .unwrap_or_else(|error| panic!("connect to {}: {error}", self.relay_url));
        let filter = Filter::new().kind(Kind::Metadata).authors(
            agents
                .iter()
                .map(|agent| PublicKey::from_hex(agent).expect("a pubkey")),
        );
        let events = client
            .fetch_events(filter, RELAY_TIMEOUT)
            .await
            .expect("read the relay");
        client.shutdown().await;
        let mut newest: BTreeMap<String, Event> = BTreeMap::new();
        for event in events {
            event.verify().expect("a valid id and signature");
            assert_eq!(event.kind, Kind::Metadata);
            let author = event.pubkey.to_hex();
            assert!(
                agents.contains(&author.as_str()),
                "{author} was not asked for"
            );
            if newest
                .get(&author)
                .is_none_or(|held| held.created_at < event.created_at)
            {
                newest.insert(author, event);
            }
        }
        newest
    }
}

/// Runs the reprofile binary with `args` in `cwd` and `command`'s
/// environment, off the async runtime.
async fn run(mut command: Command, args: &[String], cwd: &Path) -> Output {
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("REPROFILE_LOG")
        .env("NO_COLOR", "1");
    tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
        .await
        .expect("the blocking task finishes")
}

/// The reprofile binary on `service`'s bus (and in its HOME and XDG folders).
fn on(service: &SecretService) -> Command {
    service.command(env!("CARGO_BIN_EXE_reprofile"))
}

/// The fixture store's records.
fn fixture_records() -> Vec<Value> {
    serde_json::from_str(FIXTURE_STORE).expect("the fixture store parses")
}

/// The fixture's keyring entry without the members named in `drop`.
fn keyring_secret_without(drop: &[&str]) -> String {
    let mut members: serde_json::Map<String, Value> =
        serde_json::from_str(FIXTURE_KEYRING).expect("the fixture keyring entry parses");
    for name in drop {
        assert!(members.remove(*name).is_some(), "no member {name}");
    }
    Value::Object(members).to_string()
}

/// The `agent:<pubkey>` member name of an agent.
fn member(agent: &str) -> String {
    format!("agent:{agent}")
}

/// The key text the fixture's keyring entry holds under `name`.
fn keyring_member(name: &str) -> String {
    let members: serde_json::Map<String, Value> =
        serde_json::from_str(FIXTURE_KEYRING).expect("the fixture keyring entry parses");
    members[name].as_str().expect("a string member").to_string()
}

/// The record of `agent` in `records`.
fn record_of<'a>(records: &'a mut [Value], agent: &str) -> &'a mut Value {
    records
        .iter_mut()
        .find(|record| record["pubkey"] == agent)
        .unwrap_or_else(|| panic!("no record of {agent}"))
}

/// Every private key of the fixture (the owner's identity, every agent's),
/// as nsec and as hex.
fn fixture_secrets() -> Vec<String> {
    let members: serde_json::Map<String, Value> =
        serde_json::from_str(FIXTURE_KEYRING).expect("the fixture keyring entry parses");
    let mut nsecs: Vec<String> = members
        .values()
        .map(|key| key.as_str().expect("a string").to_string())
        .collect();
    nsecs.extend(
        fixture_records()
            .iter()
            .filter_map(|record| record["private_key_nsec"].as_str().map(str::to_string)),
    );
    assert_eq!(nsecs.len(), 4, "identity, Fizz, Scout, Helper");
    let mut secrets = Vec::new();
    for nsec in nsecs {
        let hex = SecretKey::from_bech32(&nsec)
            .expect("a fixture nsec")
            .to_secret_hex();
        secrets.push(nsec);
        secrets.push(hex);
    }
    secrets
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Both streams of a run, for failure messages.
fn shown(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        stdout(output),
        stderr(output)
    )
}

#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", shown(output));
}

/// The one line of `validate`'s stdout that starts with `keys:`.
#[track_caller]
fn keys_line(output: &Output) -> String {
    let out = stdout(output);
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("keys:")).collect();
    assert_eq!(lines.len(), 1, "one keys: line\n{}", shown(output));
    lines[0].to_string()
}

/// `validate`'s `error:` lines.
fn error_lines(output: &Output) -> Vec<String> {
    stdout(output)
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_string)
        .collect()
}

/// The lines of stderr that mention the keyring.
fn keyring_lines(output: &Output) -> Vec<String> {
    stderr(output)
        .lines()
        .filter(|l| l.to_lowercase().contains("keyring"))
        .map(str::to_string)
        .collect()
}

/// How often a run (with `-vv`) says it read the release keyring entry:
/// reprofile reads it at most once per run.
fn entry_reads(output: &Output) -> usize {
    stderr(output)
        .lines()
        .filter(|l| l.contains("read the OS keyring entry buzz-desktop/secrets agent_keys=2"))
        .count()
}

/// A plan's actions as (type, agent), sorted.
fn actions(plan: &Value) -> Vec<(String, String)> {
    let mut actions: Vec<(String, String)> = plan["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| {
            (
                a["type"].as_str().expect("type").to_string(),
                a["agent"].as_str().expect("agent").to_string(),
            )
        })
        .collect();
    actions.sort();
    actions
}

/// A plan's action of `kind` for `agent`.
#[track_caller]
fn action<'a>(plan: &'a Value, kind: &str, agent: &str) -> &'a Value {
    plan["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["type"] == kind && a["agent"] == agent)
        .unwrap_or_else(|| panic!("no {kind} of {agent} in {plan:#}"))
}

/// A plan's skips as (agent, reason), sorted.
fn skips(plan: &Value) -> Vec<(String, String)> {
    let mut skips: Vec<(String, String)> = plan["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| {
            (
                s["agent"].as_str().expect("agent").to_string(),
                s["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect();
    skips.sort();
    skips
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    pairs.sort();
    pairs
}

/// The content of a kind:0 as JSON.
fn content(event: &Event) -> Value {
    serde_json::from_str(&event.content).expect("kind:0 content is JSON")
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read a folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

// ---- the tests ----

/// The app's usual store: Fizz's and Scout's keys only in the keyring entry,
/// Helper's inline. `plan` then `apply` of that plan publish all three
/// profiles, each signed by its own agent's key, with the avatars of rule B
/// (Scout's from its definition record); a second plan has nothing to do;
/// and no key (nor the owner's identity) shows anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_only_in_the_keyring_sign_the_republish() {
    let service = SecretService::start();
    service.store(RELEASE, USERNAME, FIXTURE_KEYRING);
    let world = World::start(|_| {}, "", "").await;
    let records = fixture_records();
    let fizz_avatar = records
        .iter()
        .find(|r| r["pubkey"] == FIZZ)
        .and_then(|r| r["avatar_url"].as_str())
        .expect("Fizz's own avatar_url")
        .to_string();
    assert!(fizz_avatar.starts_with("data:image/png;base64,"));
    let definitions_before: Vec<Value> = records
        .iter()
        .filter(|r| r["pubkey"] == "")
        .cloned()
        .collect();
    let mut outputs = Vec::new();

    let validate = world.run(on(&service), &["-vv", "validate"]).await;
    assert_exit(&validate, 0);
    outputs.push(validate);

    let (plan_run, plan) = world.plan(on(&service), &["-vv"], "first").await;
    assert_exit(&plan_run, 0);
    assert_eq!(plan["complete"], true, "{plan:#}");
    assert_eq!(skips(&plan), [], "{plan:#}");
    assert_eq!(
        actions(&plan),
        pairs(&[
            ("backfill_avatar", SCOUT),
            ("republish_profile", FIZZ),
            ("republish_profile", SCOUT),
            ("republish_profile", HELPER),
        ])
    );
    let backfill = action(&plan, "backfill_avatar", SCOUT);
    assert_eq!(backfill["source"], "persona");
    assert_eq!(backfill["avatar_url"], RESEARCH_AVATAR);
    for (agent, picture) in [
        (FIZZ, fizz_avatar.as_str()),
        (SCOUT, RESEARCH_AVATAR),
        (HELPER, HELPER_AVATAR),
    ] {
        let republish = action(&plan, "republish_profile", agent);
        assert_eq!(republish["reasons"], serde_json::json!(["missing"]));
        assert_eq!(republish["picture"], picture, "{agent}");
        assert_eq!(republish["relay"], world.relay_url.as_str());
    }
    outputs.push(plan_run);

    let plan_file = world.plans_dir().join("first.json");
    let apply = world
        .run(
            on(&service),
            &[
                "-vv",
                "apply",
                plan_file.to_str().expect("a UTF-8 path"),
                "--auto-approve",
            ],
        )
        .await;
    assert_exit(&apply, 0);
    outputs.push(apply);

    // On the relay: each profile signed by its agent (checked in `profiles`).
    let profiles = world.profiles(&[FIZZ, SCOUT, HELPER]).await;
    assert_eq!(profiles.keys().map(String::as_str).collect::<Vec<_>>(), {
        let mut all = vec![FIZZ, SCOUT, HELPER];
        all.sort();
        all
    });
    for (agent, name, picture) in [
        (FIZZ, "Fizz", fizz_avatar.as_str()),
        (SCOUT, "Scout", RESEARCH_AVATAR),
        (HELPER, "Helper", HELPER_AVATAR),
    ] {
        let profile = content(&profiles[agent]);
        assert_eq!(profile["name"], name, "{agent}: {profile:#}");
        assert_eq!(profile["picture"], picture, "{agent}: {profile:#}");
        assert_eq!(
            profiles[agent].content,
            action(&plan, "republish_profile", agent)["after"]["content"]
                .as_str()
                .expect("the planned content"),
            "the planned content, byte for byte"
        );
    }

    // The store: Scout got its persona's avatar; the definitions are as
    // they were; the keyring entry is untouched.
    let store: Vec<Value> = serde_json::from_value(read_json(&world.store_path())).unwrap();
    assert_eq!(store.len(), 5);
    assert_eq!(
        store.iter().find(|r| r["pubkey"] == SCOUT).unwrap()["avatar_url"],
        RESEARCH_AVATAR
    );
    assert_eq!(
        store
            .iter()
            .filter(|r| r["pubkey"] == "")
            .cloned()
            .collect::<Vec<_>>(),
        definitions_before
    );
    assert_eq!(
        service.lookup(RELEASE, USERNAME).as_deref(),
        Some(FIXTURE_KEYRING),
        "reprofile never writes the keyring"
    );

    // A second plan finds nothing to do.
    let again = world
        .run(on(&service), &["-vv", "plan", "--detailed-exitcode"])
        .await;
    assert_exit(&again, 0);
    outputs.push(again);

    // Each run read the entry once (its debug line), and never failed to.
    for output in &outputs {
        assert_eq!(entry_reads(output), 1, "{}", shown(output));
        assert!(!stderr(output).contains("WARN"), "{}", shown(output));
    }

    // No key anywhere: not in what was printed (with debug logs), not in a
    // plan, rendering, journal or the config; only the store holds one.
    let secrets = fixture_secrets();
    // The scan can see a key where one is: the store holds Helper's.
    let store_text = std::fs::read_to_string(world.store_path()).unwrap();
    assert!(
        store_text.contains("nsec1") && secrets.iter().any(|s| store_text.contains(s.as_str()))
    );
    let mut leaks = Vec::new();
    for (i, output) in outputs.iter().enumerate() {
        let printed = format!("{}{}", stdout(output), stderr(output));
        if printed.contains("nsec1") {
            leaks.push(format!("output of run {i} has nsec1"));
        }
        for secret in &secrets {
            if printed.contains(secret.as_str()) {
                leaks.push(format!("output of run {i} has a fixture key"));
            }
        }
    }
    let files: Vec<PathBuf> = files_under(world.dir.path())
        .into_iter()
        .filter(|file| !file.starts_with(world.dir.path().join("app")))
        .collect();
    let journals = files
        .iter()
        .filter(|f| f.to_string_lossy().ends_with(".journal.jsonl"))
        .count();
    assert!(journals >= 1, "the apply wrote a journal: {files:#?}");
    assert!(
        files.len() >= 5,
        "config, plans, renderings, journal: {files:#?}"
    );
    for file in &files {
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
        if text.contains("nsec1") || secrets.iter().any(|s| text.contains(s.as_str())) {
            leaks.push(file.display().to_string());
        }
    }
    assert!(leaks.is_empty(), "private keys leaked: {leaks:#?}");
}

/// A store that mixes keyring keys and inline keys: `validate` counts where
/// each agent's key was found, and a record with both counts as the
/// keyring's (it comes first, as in Buzz's own CLI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_keyring_and_inline_keys() {
    let service = SecretService::start();
    service.store(RELEASE, USERNAME, FIXTURE_KEYRING);
    let world = World::start(|_| {}, "", "").await;

    let validate = world.run(on(&service), &["validate"]).await;
    assert_exit(&validate, 0);
    assert_eq!(
        keys_line(&validate),
        "keys: keyring 2, inline 1, missing 0 (keyring entry buzz-desktop/secrets)"
    );
    assert_eq!(error_lines(&validate), Vec::<String>::new());
    assert!(
        stdout(&validate).contains("(3 agent records, 2 definitions)"),
        "{}",
        shown(&validate)
    );

    // Fizz keeps its key inline too (a store the app wrote before the
    // keyring was reachable, then lifted): still the keyring's.
    world.write_store(&world.store_path(), |records| {
        record_of(records, FIZZ)["private_key_nsec"] = Value::String(keyring_member(&member(FIZZ)));
    });
    let validate = world.run(on(&service), &["validate"]).await;
    assert_exit(&validate, 0);
    assert_eq!(
        keys_line(&validate),
        "keys: keyring 2, inline 1, missing 0 (keyring entry buzz-desktop/secrets)"
    );

    // The keyring comes first even when the record's own key differs: an
    // entry holding Scout's key under Helper's name is used (and found to be
    // another agent's key), though Helper's inline key is right.
    let mut members: serde_json::Map<String, Value> =
        serde_json::from_str(FIXTURE_KEYRING).unwrap();
    members.insert(
        member(HELPER),
        Value::String(keyring_member(&member(SCOUT))),
    );
    service.store(RELEASE, USERNAME, &Value::Object(members).to_string());
    let validate = world.run(on(&service), &["validate"]).await;
    assert_exit(&validate, 1);
    assert_eq!(
        keys_line(&validate),
        "keys: keyring 3, inline 0, missing 0 (keyring entry buzz-desktop/secrets)"
    );
    let errors = error_lines(&validate);
    assert_eq!(errors.len(), 1, "{}", shown(&validate));
    assert!(
        errors[0].contains("e952db58") && errors[0].contains("buzz-desktop/secrets"),
        "the mismatch names Helper and the keyring entry: {errors:#?}"
    );
}

/// An agent whose key is in neither the keyring entry nor its record:
/// `validate` reports it as an error naming the entry, and `plan` skips it
/// as `invalid_key` (its profile is missing on the relay, so it needed a
/// republish) while the others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_neither_place_is_an_error_naming_the_entry() {
    let service = SecretService::start();
    service.store(
        RELEASE,
        USERNAME,
        &keyring_secret_without(&[&member(SCOUT)]),
    );
    let world = World::start(|_| {}, "", "").await;

    let validate = world.run(on(&service), &["validate"]).await;
    assert_exit(&validate, 1);
    assert_eq!(
        keys_line(&validate),
        "keys: keyring 1, inline 1, missing 1 (keyring entry buzz-desktop/secrets)"
    );
    let errors = error_lines(&validate);
    assert_eq!(errors.len(), 1, "{}", shown(&validate));
    for part in [
        "no key: the keyring entry buzz-desktop/secrets has no agent:2246180c",
        "and the record has no private_key_nsec",
    ] {
        assert!(
            errors[0].contains(part),
            "{part:?} is not in {:?}",
            errors[0]
        );
    }
    assert!(
        stdout(&validate).contains("1 error,"),
        "{}",
        shown(&validate)
    );

    let (plan_run, plan) = world.plan(on(&service), &[], "plan").await;
    assert_exit(&plan_run, 0);
    assert_eq!(plan["complete"], true, "{plan:#}");
    assert_eq!(skips(&plan), pairs(&[(SCOUT, "invalid_key")]));
    let detail = plan["skipped"][0]["detail"].as_str().expect("a detail");
    assert!(
        detail.contains("no key: the keyring entry buzz-desktop/secrets has no agent:"),
        "{detail}"
    );
    let republished: Vec<(String, String)> = actions(&plan)
        .into_iter()
        .filter(|(kind, _)| kind == "republish_profile")
        .collect();
    assert_eq!(
        republished,
        pairs(&[("republish_profile", FIZZ), ("republish_profile", HELPER)])
    );
}

/// No Secret Service on the bus: one warning on stderr with the D-Bus
/// error; the agents whose key is only in the keyring are skipped as
/// `key_unavailable`, so the plan is incomplete (exit 1); Helper, whose key
/// is inline, is planned and published all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_service_skips_keyring_agents_and_goes_on_with_inline_keys() {
    let service = SecretService::without_keyring();
    let world = World::start(|_| {}, "", "").await;

    let (plan_run, plan) = world.plan(on(&service), &[], "plan").await;
    assert_exit(&plan_run, 1);
    let warnings = keyring_lines(&plan_run);
    assert_eq!(warnings.len(), 1, "{}", shown(&plan_run));
    for part in [
        "buzz-desktop/secrets could not be read",
        "DBus error",
        "org.freedesktop.secrets",
    ] {
        assert!(
            warnings[0].contains(part),
            "{part:?} is not in {:?}",
            warnings[0]
        );
    }
    assert_eq!(plan["complete"], false, "{plan:#}");
    assert_eq!(
        skips(&plan),
        pairs(&[(FIZZ, "key_unavailable"), (SCOUT, "key_unavailable")])
    );
    for skip in plan["skipped"].as_array().unwrap() {
        let detail = skip["detail"].as_str().expect("a detail");
        assert!(detail.contains("could not be read"), "{detail}");
        assert!(!detail.contains("nsec1"), "{detail}");
    }
    let republish = action(&plan, "republish_profile", HELPER);
    assert_eq!(republish["picture"], HELPER_AVATAR);
    assert!(
        actions(&plan)
            .iter()
            .all(|(kind, agent)| kind != "republish_profile" || agent == HELPER),
        "{plan:#}"
    );

    // validate says the same, with the backend's error.
    let validate = world.run(on(&service), &["validate"]).await;
    let keys = keys_line(&validate);
    assert!(
        keys.starts_with(
            "keys: keyring 0, inline 1, missing 2 (the keyring entry buzz-desktop/secrets could not be read: "
        ) && keys.contains("DBus error"),
        "{keys}"
    );

    // apply does what it can: Helper's profile is published, signed by
    // Helper; the run is incomplete (exit 1).
    let apply = world.run(on(&service), &["apply", "--auto-approve"]).await;
    assert_exit(&apply, 1);
    assert_eq!(keyring_lines(&apply).len(), 1, "{}", shown(&apply));
    let profiles = world.profiles(&[FIZZ, SCOUT, HELPER]).await;
    assert_eq!(
        profiles.keys().map(String::as_str).collect::<Vec<_>>(),
        [HELPER]
    );
    let helper = content(&profiles[HELPER]);
    assert_eq!(helper["name"], "Helper");
    assert_eq!(helper["picture"], HELPER_AVATAR);

    // migrate only backfills: it signs nothing, so it never asks the
    // keyring (no warning, no prompt on macOS) and its plan is complete.
    let migrate = world.run(on(&service), &["migrate", "--dry-run"]).await;
    assert_exit(&migrate, 0);
    assert_eq!(
        keyring_lines(&migrate),
        Vec::<String>::new(),
        "{}",
        shown(&migrate)
    );
}

/// A plan left incomplete only by an unreadable keyring (every relay was
/// read) says why in terms of the keyring, not of a relay: no `error:` line
/// about an unnamed relay with 0 agents, no "0 relays could not be read".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_keyring_is_not_reported_as_an_unread_relay() {
    let service = SecretService::without_keyring();
    let world = World::start(|_| {}, "", "").await;
    let (plan_run, plan) = world.plan(on(&service), &[], "plan").await;
    assert_exit(&plan_run, 1);
    assert_eq!(plan["complete"], false);
    assert!(
        !stderr(&plan_run).contains("relay (not named in the plan)")
            && !stderr(&plan_run).contains("(relay_unreachable; 0 agents not checked)"),
        "a relay is blamed for the keyring:\n{}",
        shown(&plan_run)
    );
    assert!(
        !stdout(&plan_run).contains("0 relays could not be read"),
        "the rendering blames 0 relays:\n{}",
        shown(&plan_run)
    );
    // What it says instead: the keyring, and what that cost.
    assert!(
        stdout(&plan_run).contains(
            "Warning: the OS keyring could not be read (2 agents whose key is only there)"
        ),
        "{}",
        shown(&plan_run)
    );
    assert!(
        stderr(&plan_run).contains(
            "error: the plan is incomplete: 2 agents not checked for want of their key (key_unavailable, see the warning above)"
        ),
        "{}",
        shown(&plan_run)
    );
    let plan_file = world.plans_dir().join("plan.json");
    let markdown = world
        .run(
            on(&service),
            &["show", plan_file.to_str().unwrap(), "--format", "markdown"],
        )
        .await;
    assert_exit(&markdown, 0);
    assert!(
        !stdout(&markdown).contains("0 relays could not be read"),
        "the Markdown review blames 0 relays:\n{}",
        shown(&markdown)
    );
}

/// The dev build keeps its keys under `buzz-desktop-dev`: found with
/// `[store] app_profile = "dev"`, with `[buzz] keyring_service`, and with a
/// store discovered in the dev build's data folder (`--app-profile dev`);
/// not found when the release entry is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_profile_reads_buzz_desktop_dev() {
    let service = SecretService::start();
    service.store(DEV, USERNAME, FIXTURE_KEYRING);
    assert_eq!(service.lookup(RELEASE, USERNAME), None);

    // [store] agents with app_profile = "dev".
    let world = World::start(|_| {}, "app_profile = \"dev\"", "").await;
    let validate = world.run(on(&service), &["validate"]).await;
    assert_exit(&validate, 0);
    assert_eq!(
        keys_line(&validate),
        "keys: keyring 2, inline 1, missing 0 (keyring entry buzz-desktop-dev/secrets)"
    );

    // The release entry (the default) does not have them.
    let release = World::start(|_| {}, "", "").await;
    let validate = release.run(on(&service), &["validate"]).await;
    assert_exit(&validate, 1);
    assert_eq!(
        keys_line(&validate),
        "keys: keyring 0, inline 1, missing 2 (keyring entry buzz-desktop/secrets)"
    );
    let errors = error_lines(&validate);
    assert_eq!(errors.len(), 2, "{}", shown(&validate));
    assert!(
        errors
            .iter()
            .all(|e| e.contains("the keyring entry buzz-desktop/secrets has no agent:")),
        "{errors:#?}"
    );

    // [buzz] keyring_service names the dev entry.
    let named = World::start(
        |_| {},
        "",
        "[buzz]\nkeyring_service = \"buzz-desktop-dev\"\n",
    )
    .await;
    let validate = named.run(on(&service), &["validate"]).await;
    assert_exit(&validate, 0);
    assert_eq!(
        keys_line(&validate),
        "keys: keyring 2, inline 1, missing 0 (keyring entry buzz-desktop-dev/secrets)"
    );

    // The store found in the dev build's data folder ($XDG_DATA_HOME of the
    // Secret Service's environment) with --app-profile dev: validate and a
    // whole plan.
    let data_home = service
        .envs()
        .into_iter()
        .find(|(name, _)| name == "XDG_DATA_HOME")
        .map(|(_, value)| PathBuf::from(value))
        .expect("the Secret Service's XDG_DATA_HOME");
    let agents = data_home.join("xyz.block.buzz.app.dev/agents");
    std::fs::create_dir_all(&agents).unwrap();
    let found = World::start(|_| {}, "", "").await;
    found.write_store(&agents.join("managed-agents.json"), |_| {});
    std::fs::write(
        &found.config,
        "[plans]\ndir = \"plans\"\n\n\
         [relay]\nconnect_timeout_secs = 2\nquery_timeout_secs = 5\npublish_timeout_secs = 5\n",
    )
    .unwrap();
    let validate = found
        .run(on(&service), &["--app-profile", "dev", "validate"])
        .await;
    assert_exit(&validate, 0);
    assert!(
        stderr(&validate).contains(&format!(
            "store: {} (found: Buzz app data, dev)",
            agents.join("managed-agents.json").display()
        )),
        "{}",
        shown(&validate)
    );
    assert_eq!(
        keys_line(&validate),
        "keys: keyring 2, inline 1, missing 0 (keyring entry buzz-desktop-dev/secrets)"
    );
    let out = found.plans_dir().join("dev.json");
    let plan_run = found
        .run(
            on(&service),
            &[
                "--app-profile",
                "dev",
                "plan",
                "--out",
                out.to_str().unwrap(),
            ],
        )
        .await;
    assert_exit(&plan_run, 0);
    let plan = read_json(&out);
    assert_eq!(skips(&plan), [], "{plan:#}");
    assert_eq!(
        actions(&plan)
            .iter()
            .filter(|(kind, _)| kind == "republish_profile")
            .count(),
        3,
        "{plan:#}"
    );
    // Without the flag the release store is looked for, and is not there.
    let release_found = found.run(on(&service), &["validate"]).await;
    assert_exit(&release_found, 1);
    assert!(
        stdout(&release_found).contains("xyz.block.buzz.app/agents/managed-agents.json"),
        "{}",
        shown(&release_found)
    );
}

/// A store whose every record keeps its key inline never touches the
/// keyring: with a session bus address where nothing listens, no warning,
/// and `validate` says the keyring was not read; the same environment with
/// one key missing from its record does warn (so the keyring really was out
/// of reach); and `[buzz] keyring = false` never reads it at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_inline_keys_never_touches_the_keyring() {
    let inline = |records: &mut Vec<Value>| {
        for agent in [FIZZ, SCOUT] {
            record_of(records, agent)["private_key_nsec"] =
                Value::String(keyring_member(&member(agent)));
        }
    };
    let world = World::start(inline, "", "").await;
    let home = world.dir.path().join("home");
    let runtime = world.dir.path().join("runtime");
    std::fs::create_dir(&home).unwrap();
    std::fs::create_dir(&runtime).unwrap();
    let nowhere = format!(
        "unix:path={}",
        world.dir.path().join("no-bus-here").display()
    );
    let no_bus = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_reprofile"));
        command
            .env("DBUS_SESSION_BUS_ADDRESS", &nowhere)
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &runtime);
        command
    };

    let validate = world.run(no_bus(), &["validate"]).await;
    assert_exit(&validate, 0);
    assert_eq!(
        keys_line(&validate),
        "keys: keyring 0, inline 3, missing 0 (every record keeps its key inline: the keyring was not read)"
    );
    assert_eq!(keyring_lines(&validate), Vec::<String>::new());
    let (plan_run, plan) = world.plan(no_bus(), &[], "inline").await;
    assert_exit(&plan_run, 0);
    assert_eq!(keyring_lines(&plan_run), Vec::<String>::new());
    assert_eq!(plan["complete"], true);
    assert_eq!(skips(&plan), []);
    assert_eq!(
        actions(&plan)
            .iter()
            .filter(|(kind, _)| kind == "republish_profile")
            .count(),
        3
    );

    // Control: Scout without its inline key needs the keyring, which is
    // out of reach here.
    world.write_store(&world.store_path(), |records| {
        inline(records);
        record_of(records, SCOUT)
            .as_object_mut()
            .unwrap()
            .remove("private_key_nsec");
    });
    let (plan_run, plan) = world.plan(no_bus(), &[], "control").await;
    assert_exit(&plan_run, 1);
    assert_eq!(keyring_lines(&plan_run).len(), 1, "{}", shown(&plan_run));
    assert_eq!(skips(&plan), pairs(&[(SCOUT, "key_unavailable")]));

    // The keyring turned off: not read, and Scout's key is plainly missing.
    let text = std::fs::read_to_string(&world.config).unwrap();
    std::fs::write(&world.config, format!("{text}\n[buzz]\nkeyring = false\n")).unwrap();
    let validate = world.run(no_bus(), &["validate"]).await;
    assert_exit(&validate, 1);
    assert_eq!(
        keys_line(&validate),
        "keys: keyring 0, inline 2, missing 1 (the keyring is off: [buzz] keyring = false)"
    );
    assert_eq!(keyring_lines(&validate), Vec::<String>::new());
    let (plan_run, plan) = world.plan(no_bus(), &[], "off").await;
    assert_exit(&plan_run, 0);
    assert_eq!(keyring_lines(&plan_run), Vec::<String>::new());
    assert_eq!(skips(&plan), pairs(&[(SCOUT, "invalid_key")]));
}

// ---- the fixture (tests/fixtures/buzz-today/, a copy of shared/fixtures/buzz-today/; throwaway keys) ----

/// `managed-agents.json`: two definition records (`builtin:fizz`,
/// `persona-research`) and three instances (Fizz and Scout with their keys
/// in the keyring, Helper with its key inline).
const FIXTURE_STORE: &str = include_str!("../fixtures/buzz-today/managed-agents.json");

/// `keyring-secrets.json`: the secret of the keyring entry
/// `buzz-desktop/secrets` for that store (the owner's `identity`, and
/// `agent:<pubkey>` for Fizz and Scout).
const FIXTURE_KEYRING: &str = include_str!("../fixtures/buzz-today/keyring-secrets.json");
