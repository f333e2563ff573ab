//! The fixture world laid out in a temp folder, against a real relay.
//!
//! `World::start` starts an in-process relay, seeds it with the fixture's
//! kind:0 events, copies the store (mode 0600) and personas into a temp folder
//! and writes a config.toml whose URL rewrite points the fixture's live relay
//! (`ws://127.0.0.1:7777`) at the test relay. The down relay
//! (`ws://127.0.0.1:9`) stays as it is.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use nostr_relay_builder::LocalRelay;
use reprofile::config::{self, Config};
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{fixture_path, publish_events, seed_events, start_local_relay};

/// The fixture world: a temp folder with the store, personas and config.
pub struct World {
    /// The temp folder (removed on drop).
    pub dir: TempDir,
    /// The config file.
    pub config_path: PathBuf,
    /// The test relay's URL.
    pub relay_url: String,
    /// The test relay (kept alive with the world).
    pub relay: LocalRelay,
}

impl World {
    /// Starts a relay seeded with the fixture events and lays out the world.
    pub async fn start() -> World {
        let relay = start_local_relay().await;
        let relay_url = relay.url().await.to_string();
        publish_events(&relay_url, &seed_events()).await;
        Self::with_relay(relay, relay_url, "")
    }

    /// Lays out the world against an already running relay; `extra_config` is
    /// appended to config.toml.
    pub fn with_relay(relay: LocalRelay, relay_url: String, extra_config: &str) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("managed-agents.json");
        std::fs::copy(fixture_path("managed-agents.json"), &store).expect("copy store");
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::copy(
            fixture_path("personas.json"),
            dir.path().join("personas.json"),
        )
        .expect("copy personas");
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config_text(&relay_url, extra_config)).unwrap();
        World {
            dir,
            config_path,
            relay_url,
            relay,
        }
    }

    /// `n` generated agents (see [`World::generated`]) whose relay answers
    /// each EVENT after 1.5 s, one event in flight at a time: the world of
    /// the tests that stop an apply while an event awaits its OK.
    pub async fn on_a_slow_relay(n: usize) -> (World, crate::support::FakeRelay) {
        World::on_a_fake_relay(
            n,
            crate::support::FakeBehaviour::SlowOk {
                delay: std::time::Duration::from_millis(1500),
                challenge: None,
            },
        )
        .await
    }

    /// `n` generated agents (see [`World::generated`]) on a fake relay that
    /// behaves as told, one event in flight at a time.
    pub async fn on_a_fake_relay(
        n: usize,
        behaviour: crate::support::FakeBehaviour,
    ) -> (World, crate::support::FakeRelay) {
        let world = World::generated(n).await;
        let fake = crate::support::FakeRelay::start(behaviour).await;
        let text = std::fs::read_to_string(&world.config_path)
            .unwrap()
            .replace(&world.relay_url, fake.url())
            .replace(
                "publish_timeout_secs = 5",
                "publish_timeout_secs = 5\nmax_publish_in_flight = 1",
            );
        std::fs::write(&world.config_path, text).unwrap();
        (world, fake)
    }

    /// A world of `n` generated agents on a fresh relay with no profiles: all
    /// legacy records of the goose runtime, so each needs a backfill and a
    /// republish. Keys are real (derived from the index).
    pub async fn generated(n: usize) -> World {
        use nostr::nips::nip19::ToBech32;
        let relay = start_local_relay().await;
        let relay_url = relay.url().await.to_string();
        let records: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                let mut secret = [0u8; 32];
                secret[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
                secret[31] = 7;
                let keys = nostr::Keys::new(nostr::SecretKey::from_slice(&secret).unwrap());
                serde_json::json!({
                    "pubkey": keys.public_key().to_hex(),
                    "name": format!("generated-{i:05}"),
                    "persona_id": null,
                    "private_key_nsec": keys.secret_key().to_bech32().unwrap(),
                    "auth_tag": null,
                    "relay_url": "ws://127.0.0.1:7777",
                    "agent_command": "goose",
                    "future_app_field": {"kept": [i, "verbatim"]}
                })
            })
            .collect();
        let world = Self::with_relay(relay, relay_url, "");
        std::fs::write(
            world.store_path(),
            serde_json::to_string_pretty(&records).unwrap(),
        )
        .unwrap();
        world
    }

    /// The journals written so far.
    pub fn journal_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.plans_dir())
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.to_string_lossy().ends_with(".journal.jsonl"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Appends `extra` (TOML) to config.toml.
    pub fn append_config(&self, extra: &str) {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        std::fs::write(&self.config_path, format!("{text}\n{extra}\n")).unwrap();
    }

    /// The resolved config.
    pub fn config(&self) -> Config {
        config::load(&self.config_path).expect("the world's config loads")
    }

    /// The world's config and a plan of it, written to its plans folder as
    /// `reprofile plan` writes it: where most apply tests begin.
    pub async fn planned(
        &self,
    ) -> (
        Config,
        reprofile::store::planfile::PlanDocument,
        std::path::PathBuf,
    ) {
        let config = self.config();
        let planned = reprofile::engine::orchestrate::make_plan(&config, &[], None)
            .await
            .expect("the world plans");
        (config, planned.doc, planned.path)
    }

    /// Snapshots the world and plans it (no files written).
    pub async fn plan_now(&self) -> reprofile::core::plan::Plan {
        let config = self.config();
        let gathered = reprofile::engine::snapshot::gather(&config, &[])
            .await
            .expect("snapshot");
        reprofile::core::rules::plan(
            &gathered.snapshot,
            &config.policy,
            reprofile::engine::orchestrate::now_secs(),
        )
    }

    /// The store file.
    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("managed-agents.json")
    }

    /// The plans folder.
    pub fn plans_dir(&self) -> PathBuf {
        self.dir.path().join("plans")
    }

    /// The plan files (JSON) written so far, sorted.
    pub fn plan_files(&self) -> Vec<PathBuf> {
        json_files(&self.plans_dir())
    }

    /// Snapshot filters for what changes from run to run: the world's
    /// folder, the relay's port, the plan's time and file name, the clock in
    /// a skip's detail.
    pub fn snapshot_settings(&self) -> insta::Settings {
        let mut settings = insta::Settings::clone_current();
        settings.add_filter(
            &regex_escape(&self.dir.path().display().to_string()),
            "[WORLD]",
        );
        settings.add_filter(&regex_escape(&self.relay_url), "[RELAY]");
        settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]");
        settings.add_filter(r"\d{8}T\d{6}Z-[0-9a-f]{8}", "[STAMP]");
        settings.add_filter(r"dated \d+", "dated [NOW]");
        settings
    }

    /// Runs the reprofile binary with `--config <world> args...` in a blocking
    /// task (so the in-process relay keeps serving).
    pub async fn cli(&self, args: &[&str]) -> Output {
        let mut all = vec![
            "--config".to_string(),
            self.config_path.display().to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        run_binary(all, self.dir.path().to_path_buf()).await
    }
}

/// `text` as a regex that matches it literally (for insta filters).
pub fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$-".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Apply options with the safety threshold lifted (the fixture world is
/// drifted on purpose).
pub fn forced() -> reprofile::engine::apply::ApplyOptions {
    reprofile::engine::apply::ApplyOptions::forced()
}

/// The config of a world whose live relay is `relay_url`.
pub fn config_text(relay_url: &str, extra: &str) -> String {
    format!(
        "[store]\nagents = \"managed-agents.json\"\npersonas = \"personas.json\"\n\n\
         [plans]\ndir = \"plans\"\n\n\
         [relay]\nconnect_timeout_secs = 2\nquery_timeout_secs = 5\npublish_timeout_secs = 5\n\n\
         [relay.rewrite]\n\"ws://127.0.0.1:7777\" = \"{relay_url}\"\n{extra}"
    )
}

/// JSON files in a folder, sorted (none when it does not exist).
pub fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Runs the binary with `args` in `cwd`, off the async runtime.
pub async fn run_binary(args: Vec<String>, cwd: PathBuf) -> Output {
    run_binary_with_env(args, cwd, Vec::new()).await
}

/// [`run_binary`] with environment variables set (`Some`) or removed
/// (`None`), for example a fake home for the app's data folder.
pub async fn run_binary_with_env(
    args: Vec<String>,
    cwd: PathBuf,
    env: Vec<(&'static str, Option<PathBuf>)>,
) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_reprofile"));
        command
            .args(&args)
            .current_dir(cwd)
            .env_remove("REPROFILE_LOG")
            .env("NO_COLOR", "1");
        for (name, value) in env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command.output().expect("the binary runs")
    })
    .await
    .expect("the blocking task finishes")
}

/// The fixture's expected outcomes: pubkey to the expected.json entry.
pub fn expected() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(fixture_path("expected.json")).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    value["agents"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The stdout of a run, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The results of an apply for actions of type `kind` (`backfill_avatar` or
/// `republish_profile`), in plan order.
pub fn results_of<'a>(
    report: &'a reprofile::engine::apply::ApplyReport,
    kind: &str,
) -> Vec<&'a reprofile::engine::apply::ActionResult> {
    report.results.iter().filter(|r| r.kind == kind).collect()
}

/// Asserts that `text` holds `part`, and shows `text` when it does not.
#[track_caller]
pub fn assert_contains(text: &str, part: &str) {
    assert!(text.contains(part), "{part:?} is not in:\n{text}");
}

/// The stderr of a run, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The fixture's relay that is down (nothing listens on port 9).
pub const DOWN_RELAY: &str = "ws://127.0.0.1:9";

/// The stderr line of a run whose snapshot could not read the fixture's down
/// relay (before the OS's words for the refused connection).
pub const DOWN_RELAY_LINE: &str = "error: relay ws://127.0.0.1:9 could not be read \
                                   (relay_unreachable; 1 agent not checked): connection failed";

/// Asserts that a run of the fixture world ended as an incomplete snapshot
/// must: exit 1, and exactly one `error:` line on stderr, naming the down
/// relay and why.
pub fn assert_incomplete_for_the_down_relay(output: &Output) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].starts_with(DOWN_RELAY_LINE), "{err}");
}
