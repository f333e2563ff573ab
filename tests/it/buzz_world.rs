//! reprofile against the real Buzz relay (built by `.ci/setup`), in its
//! production mode (closed: membership and NIP-OA on) and in open mode, with a
//! store in the app's own format: plan, apply, plan again.
//!
//! What must hold (issue "part 7"): reads sign in as an agent of the relay
//! carrying its NIP-OA tag; each agent's event goes over a connection signed
//! in as that agent; plan -> apply -> plan converges; unknown kind:0 keys are
//! kept; a persona-backed legacy record whose relay picture is the runtime
//! icon gets the persona's avatar; a 52 KB `data:` avatar round-trips; agents
//! that cannot sign in fail with the relay's message and hold back no other;
//! re-applying publishes nothing.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use nostr::{Keys, PublicKey};
use reprofile::config::{self, Config};
use reprofile::core::apply::Outcome;
use reprofile::core::model::RelayObservation;
use reprofile::core::plan::{Action, AvatarSource};
use reprofile::engine::apply::{apply, ApplyReport};
use reprofile::engine::orchestrate::{make_plan, now_secs, Planned};
use reprofile::engine::snapshot::read_options;
use reprofile::net::relay::read_profiles;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::support::buzz::{buzz_store, seed_profile, BuzzMode, BuzzRelay, StoreAgent};
use crate::world::{assert_contains, forced};

/// The goose runtime's built-in avatar: what the app's old bug wrote over
/// people's pictures.
const GOOSE_ICON: &str = "https://block.github.io/goose/img/logo_light.png";

/// A store, personas and config for one relay, in a temp folder.
struct BuzzWorld {
    dir: TempDir,
    config_path: PathBuf,
}

impl BuzzWorld {
    fn new(relay: &BuzzRelay, agents: &[StoreAgent], personas: Value, extra: &str) -> BuzzWorld {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("managed-agents.json");
        std::fs::write(&store, buzz_store(&relay.url(), agents)).expect("write the store");
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            dir.path().join("personas.json"),
            serde_json::to_string_pretty(&personas).unwrap(),
        )
        .unwrap();
        let config_path = dir.path().join("config.toml");
        std::fs::write(
            &config_path,
            format!(
                "[store]\nagents = \"managed-agents.json\"\npersonas = \"personas.json\"\n\n\
                 [plans]\ndir = \"plans\"\n\n\
                 [relay]\nconnect_timeout_secs = 5\nquery_timeout_secs = 10\npublish_timeout_secs = 10\n{extra}\n"
            ),
        )
        .unwrap();
        BuzzWorld { dir, config_path }
    }

    fn config(&self) -> Config {
        config::load(&self.config_path).expect("the world's config loads")
    }

    async fn plan_and_apply(
        &self,
    ) -> (
        reprofile::store::planfile::PlanDocument,
        PathBuf,
        ApplyReport,
    ) {
        let config = self.config();
        let Planned { doc, path, .. } = make_plan(&config, &[], None).await.expect("plan");
        let report = apply(&config, &doc, &path, &forced(), &now_secs)
            .await
            .expect("apply");
        (doc, path, report)
    }

    fn store(&self) -> Value {
        let text = std::fs::read_to_string(self.dir.path().join("managed-agents.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

/// The newest kind:0 of `agents` on the relay, read as reprofile reads it
/// (signing in as one of them, through the config).
async fn relay_state(
    world: &BuzzWorld,
    relay: &BuzzRelay,
    agents: &[&StoreAgent],
) -> BTreeMap<String, RelayObservation> {
    let config = world.config();
    let store = reprofile::store::agents::read_agent_store(&config.agents).unwrap();
    let identities = reprofile::engine::read_prep::sign_in_identities(
        &config,
        store.records.iter().map(|r| &r.record),
        None,
    );
    let opts = reprofile::net::relay::ReadOptions {
        identities: std::sync::Arc::new(identities),
        ..read_options(&config)
    };
    let authors: Vec<PublicKey> = agents.iter().map(|a| a.keys.public_key()).collect();
    let mut read = read_profiles(BTreeMap::from([(relay.url(), authors)]), &opts).await;
    read.remove(&relay.url())
        .expect("the relay's table")
        .into_iter()
        .collect()
}

fn content(observation: &RelayObservation) -> Value {
    match observation {
        RelayObservation::Newest(event) => serde_json::from_str(&event.content).unwrap(),
        other => panic!("expected a profile, got {other:?}"),
    }
}

/// A `data:` PNG avatar of about `bytes` bytes (the built-in persona Fizz's
/// is 52 KB): a PNG signature followed by filler, base64-encoded.
fn data_avatar(bytes: usize) -> String {
    use base64::Engine as _;
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend((0..bytes * 3 / 4).map(|i| (i * 31 % 251) as u8));
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

/// Each agent's results: (action kind, outcome, reason).
fn results_by_agent(
    report: &ApplyReport,
) -> BTreeMap<String, Vec<(&'static str, Outcome, String)>> {
    let mut by_agent: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for result in &report.results {
        by_agent.entry(result.agent.clone()).or_default().push((
            result.kind,
            result.outcome,
            result.reason.clone().unwrap_or_default(),
        ));
    }
    by_agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buzz_closed_relay_plan_apply_plan_converges_and_agents_that_cannot_sign_in_fail_alone() {
    let owner = Keys::generate();
    let stranger = Keys::generate();
    let relay = BuzzRelay::start(BuzzMode::Closed {
        owner: owner.clone(),
    })
    .await;
    let url = relay.url();
    let fizz_avatar = data_avatar(52 * 1024);

    // Records that cannot sign in come first in the store (sorted by name).
    let aaron = StoreAgent::new("Aaron (no tag)", Keys::generate())
        .with_avatar("https://img.example/aaron.png");
    let abby = StoreAgent::new("Abby (stranger's tag)", Keys::generate())
        .with_tag(&stranger, "")
        .with_avatar("https://img.example/abby.png");
    let ada = StoreAgent::new("Ada", Keys::generate())
        .with_tag(&owner, "")
        .with_avatar("https://img.example/ada.png");
    let bert = StoreAgent::new("Bert", Keys::generate())
        .with_tag(&owner, "kind=0")
        .with_avatar("https://img.example/bert.png");
    let cleo = StoreAgent::new("Cleo", Keys::generate())
        .with_tag(&owner, "")
        .with_persona("p-cleo");
    let fizz = StoreAgent::new("Fizz", Keys::generate())
        .with_tag(&owner, "")
        .with_persona("builtin:fizz");
    let finn = StoreAgent::new("Finn", Keys::generate())
        .with_tag(&owner, "")
        .with_avatar("https://img.example/finn.png");
    let agents = [&aaron, &abby, &ada, &bert, &cleo, &fizz, &finn];
    let personas = json!([
        {"id": "p-cleo", "display_name": "Cleo", "avatar_url": "https://img.example/cleo-persona.png", "system_prompt": "", "is_builtin": false},
        {"id": "builtin:fizz", "display_name": "Fizz", "avatar_url": fizz_avatar, "system_prompt": "", "is_builtin": true}
    ]);
    let world = BuzzWorld::new(
        &relay,
        &agents.iter().map(|a| (*a).clone()).collect::<Vec<_>>(),
        personas,
        "\n[safety]\nmax_republish_fraction = 1.0\n",
    );

    // The relay as the app left it: Bert under an old name with fields the
    // tool does not own; Cleo's picture overwritten by the runtime icon (the
    // old bug); Finn correct.
    let long_ago = now_secs() - 600;
    for (agent, content) in [
        (
            &bert,
            r#"{"display_name":"Old Bert","picture":"https://img.example/bert.png","about":"keeps","lud16":"bert@example.com","x_unknown":{"a":[1,2]}}"#.to_owned(),
        ),
        (
            &cleo,
            json!({"display_name": "Cleo", "picture": GOOSE_ICON}).to_string(),
        ),
        (
            &finn,
            r#"{"display_name":"Finn","picture":"https://img.example/finn.png"}"#.to_owned(),
        ),
    ] {
        let tag = agent.auth_tag.as_deref();
        seed_profile(&url, &agent.keys, tag, &content, long_ago).await;
    }

    let (doc, first_path, report) = world.plan_and_apply().await;
    let plan = &doc.plan;
    assert!(plan.complete, "every agent was read: {:#?}", plan.skipped);
    assert!(plan.skipped.is_empty(), "{:#?}", plan.skipped);
    assert_eq!(plan.unchanged, vec![finn.pubkey()]);
    let backfills: BTreeMap<String, (AvatarSource, String)> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::BackfillAvatar(b) => Some((b.agent.clone(), (b.source, b.avatar_url.clone()))),
            _ => None,
        })
        .collect();
    assert_eq!(
        backfills,
        BTreeMap::from([
            (
                cleo.pubkey(),
                (
                    AvatarSource::Persona,
                    "https://img.example/cleo-persona.png".to_owned()
                )
            ),
            (fizz.pubkey(), (AvatarSource::Persona, fizz_avatar.clone())),
        ]),
        "the persona wins over the runtime icon on the relay"
    );

    // Everyone who can sign in is published; the two who cannot fail with
    // the relay's message, and hold back no one.
    let results = results_by_agent(&report);
    for agent in [&ada, &bert, &cleo, &fizz] {
        for (kind, outcome, reason) in &results[&agent.pubkey()] {
            assert_eq!(
                *outcome,
                Outcome::Applied,
                "{} {kind}: {reason}",
                agent.name
            );
        }
    }
    for agent in [&aaron, &abby] {
        let (kind, outcome, reason) = &results[&agent.pubkey()][0];
        assert_eq!(*kind, "republish_profile");
        assert_eq!(*outcome, Outcome::Failed, "{}", agent.name);
        assert!(
            reason.contains("restricted: not a relay member"),
            "{}: {reason}",
            agent.name
        );
    }

    // The relay holds what was planned, each event signed by its author.
    let state = relay_state(&world, &relay, &agents).await;
    let bert_now = content(&state[&bert.pubkey()]);
    assert_eq!(bert_now["display_name"], "Bert");
    assert_eq!(bert_now["about"], "keeps", "unowned keys are kept");
    assert_eq!(bert_now["lud16"], "bert@example.com");
    assert_eq!(bert_now["x_unknown"], json!({"a": [1, 2]}));
    assert_eq!(
        content(&state[&cleo.pubkey()])["picture"],
        "https://img.example/cleo-persona.png"
    );
    let fizz_now = content(&state[&fizz.pubkey()]);
    assert_eq!(
        fizz_now["picture"].as_str(),
        Some(fizz_avatar.as_str()),
        "intact"
    );
    assert_eq!(content(&state[&ada.pubkey()])["display_name"], "Ada");
    assert_eq!(state[&aaron.pubkey()], RelayObservation::NoProfile);
    // The backfills are in the store.
    let store = world.store();
    let avatar_of = |agent: &StoreAgent| {
        store
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["pubkey"] == agent.pubkey())
            .unwrap()["avatar_url"]
            .clone()
    };
    assert_eq!(avatar_of(&cleo), "https://img.example/cleo-persona.png");
    assert_eq!(avatar_of(&fizz), fizz_avatar.as_str());

    // Plan again: only the two who cannot sign in are left.
    let (again, _, second) = world.plan_and_apply().await;
    let left: Vec<&str> = again.plan.actions.iter().map(Action::agent).collect();
    let mut expected = vec![aaron.pubkey(), abby.pubkey()];
    expected.sort();
    assert_eq!(left, expected);
    assert!(second.results.iter().all(|r| r.outcome == Outcome::Failed));

    // Re-applying the first plan publishes nothing new.
    let config = world.config();
    let replay = apply(&config, &doc, &first_path, &forced(), &now_secs)
        .await
        .expect("apply again");
    for result in &replay.results {
        let agent = &result.agent;
        if *agent == aaron.pubkey() || *agent == abby.pubkey() {
            assert_eq!(result.outcome, Outcome::Failed);
        } else {
            assert_eq!(result.outcome, Outcome::AlreadyApplied, "{result:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buzz_open_relay_plan_apply_plan_converges() {
    let relay = BuzzRelay::start(BuzzMode::Open).await;
    let agents: Vec<StoreAgent> = ["Ada", "Bert", "Cleo"]
        .iter()
        .map(|name| {
            StoreAgent::new(name, Keys::generate())
                .with_avatar(&format!("https://img.example/{name}.png"))
        })
        .collect();
    let world = BuzzWorld::new(
        &relay,
        &agents,
        json!([]),
        "\n[safety]\nmax_republish_fraction = 1.0\n",
    );
    let (doc, _, report) = world.plan_and_apply().await;
    assert!(doc.plan.complete, "{:#?}", doc.plan.skipped);
    assert_eq!(doc.plan.actions.len(), 3);
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(report.count(Outcome::Applied), 3);
    let (again, _, _) = world.plan_and_apply().await;
    assert!(again.plan.complete);
    assert!(again.plan.actions.is_empty(), "{:#?}", again.plan.actions);
    assert_eq!(again.plan.unchanged.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buzz_read_tries_another_identity_on_a_new_connection_when_one_is_refused() {
    let owner = Keys::generate();
    let old_owner = Keys::generate();
    let relay = BuzzRelay::start(BuzzMode::Closed {
        owner: owner.clone(),
    })
    .await;
    // Most agents carry the tag of an owner who is not a member: they come
    // first and are refused; the one agent of the member owner gets in.
    let mut agents: Vec<StoreAgent> = (0..3)
        .map(|i| {
            StoreAgent::new(&format!("Old {i}"), Keys::generate())
                .with_tag(&old_owner, "")
                .with_avatar("https://img.example/a.png")
        })
        .collect();
    let member = StoreAgent::new("Member", Keys::generate())
        .with_tag(&owner, "")
        .with_avatar("https://img.example/m.png");
    seed_profile(
        &relay.url(),
        &member.keys,
        member.auth_tag.as_deref(),
        r#"{"display_name":"Member","picture":"https://img.example/m.png"}"#,
        now_secs() - 60,
    )
    .await;
    agents.push(member.clone());
    let world = BuzzWorld::new(&relay, &agents, json!([]), "");
    let Planned { doc, .. } = make_plan(&world.config(), &[], None).await.expect("plan");
    assert!(doc.plan.complete, "{:#?}", doc.plan.skipped);
    assert_eq!(doc.plan.unchanged, vec![member.pubkey()]);
    assert_eq!(
        doc.plan.actions.len(),
        3,
        "the three old agents are missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buzz_read_refused_for_every_identity_skips_relay_auth_refused_with_the_relays_message() {
    let owner = Keys::generate();
    let stranger = Keys::generate();
    let relay = BuzzRelay::start(BuzzMode::Closed {
        owner: owner.clone(),
    })
    .await;
    let agents = vec![
        StoreAgent::new("No tag", Keys::generate()).with_avatar("https://img.example/a.png"),
        StoreAgent::new("Stranger's", Keys::generate())
            .with_tag(&stranger, "")
            .with_avatar("https://img.example/b.png"),
    ];
    let world = BuzzWorld::new(&relay, &agents, json!([]), "");
    let Planned { doc, .. } = make_plan(&world.config(), &[], None).await.expect("plan");
    assert!(
        !doc.plan.complete,
        "an unread relay makes the plan incomplete"
    );
    assert!(doc.plan.actions.is_empty(), "{:#?}", doc.plan.actions);
    assert_eq!(doc.plan.skipped.len(), 2);
    for skip in &doc.plan.skipped {
        assert_eq!(
            skip.reason,
            reprofile::core::plan::SkipReason::RelayAuthRefused
        );
        assert_contains(&skip.detail, "restricted: not a relay member");
        assert!(
            skip.detail.contains("Stranger's"),
            "names who tried: {}",
            skip.detail
        );
    }

    // A member's key in [relay] auth_key_file signs in first: the relay is read.
    let key_file = world.dir.path().join("owner.key");
    std::fs::write(&key_file, owner.secret_key().to_secret_hex()).unwrap();
    let with_key = BuzzWorld::new(
        &relay,
        &agents,
        json!([]),
        &format!("auth_key_file = {:?}\n", key_file.display().to_string()),
    );
    let Planned { doc, .. } = make_plan(&with_key.config(), &[], None)
        .await
        .expect("plan");
    assert!(doc.plan.complete, "{:#?}", doc.plan.skipped);
    assert_eq!(doc.plan.actions.len(), 2, "both profiles are missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buzz_user_points_reprofile_at_nothing_but_their_machine_and_it_fixes_the_profiles() {
    let owner = Keys::generate();
    let relay = BuzzRelay::start(BuzzMode::Closed {
        owner: owner.clone(),
    })
    .await;
    let ada = StoreAgent {
        avatar_url: Some("https://img.example/ada.png".into()),
        ..StoreAgent::new("Ada", Keys::generate()).with_tag(&owner, "")
    };
    let cleo = StoreAgent {
        persona_id: Some("p-cleo".into()),
        ..StoreAgent::new("Cleo", Keys::generate()).with_tag(&owner, "")
    };
    seed_profile(
        &relay.url(),
        &cleo.keys,
        cleo.auth_tag.as_deref(),
        &json!({"display_name": "Cleo", "picture": GOOSE_ICON}).to_string(),
        now_secs() - 600,
    )
    .await;
    // The app's data folder under a fake home (Linux layout), and a working
    // folder with no config.toml.
    let home = tempfile::tempdir().unwrap();
    let agents_dir = home.path().join(".local/share/xyz.block.buzz.app/agents");
    std::fs::create_dir_all(&agents_dir).unwrap();
    let store = agents_dir.join("managed-agents.json");
    std::fs::write(
        &store,
        buzz_store(&relay.url(), &[ada.clone(), cleo.clone()]),
    )
    .unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        agents_dir.join("personas.json"),
        json!([{"id": "p-cleo", "display_name": "Cleo", "avatar_url": "https://img.example/cleo.png"}])
            .to_string(),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let env = || {
        vec![
            ("HOME", Some(home.path().to_path_buf())),
            ("XDG_DATA_HOME", None),
        ]
    };
    let run = |args: &[&str]| {
        crate::world::run_binary_with_env(
            args.iter().map(|a| a.to_string()).collect(),
            work.path().to_path_buf(),
            env(),
        )
    };

    let applied = run(&["apply", "--auto-approve"]).await;
    let err = crate::world::stderr(&applied);
    assert_eq!(applied.status.code(), Some(0), "{err}");
    let out = crate::world::stdout(&applied);
    // The plan's first line names the store it was found at.
    assert!(
        out.lines().next().unwrap_or_default().contains(&format!(
            "in {}",
            std::fs::canonicalize(&store).unwrap().display()
        )),
        "says which store: {out}"
    );
    assert!(out.contains("Apply complete: 3 applied"), "{out}");
    let planned = run(&["plan"]).await;
    assert!(
        crate::world::stderr(&planned).contains(&format!("store: {}", store.display())),
        "plan says where it found the store: {}",
        crate::world::stderr(&planned)
    );
    // Plan again: complete, nothing to do.
    let again = run(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}{}",
        crate::world::stdout(&again),
        crate::world::stderr(&again)
    );
    let record = |name: &str| -> Value {
        let text = std::fs::read_to_string(&store).unwrap();
        let records: Value = serde_json::from_str(&text).unwrap();
        records
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(record("Cleo")["avatar_url"], "https://img.example/cleo.png");
    assert_eq!(
        record("Ada")["respond_to"],
        "owner-only",
        "the app's fields kept"
    );
}
