//! The store where the app keeps it: found under a fake home for each OS
//! layout, used with no config file at all, the dev build picked by flag or
//! config key, the stale Sprout copy named and never used, and the persona
//! store required when records name a persona.

use std::path::{Path, PathBuf};

use reprofile::config::{self, Environment, StoreOrigin};
use reprofile::store::discover::Os;

use crate::buzz_app::{fixture_dir, seed_events, store_text_for};
use crate::support::{publish_events, start_local_relay};
use crate::world::{assert_contains, json_files, run_binary_with_env, stderr, stdout};

/// Lays the app's folder out at `app_dir/agents/` with the buzz-app fixture
/// (records naming `relay_url`), and the persona store unless told not to.
fn lay_out_app(app_dir: &Path, relay_url: &str, personas: bool) -> PathBuf {
    let agents = app_dir.join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    let store = agents.join("managed-agents.json");
    std::fs::write(&store, store_text_for(relay_url)).unwrap();
    if personas {
        std::fs::copy(
            fixture_dir().join("personas.json"),
            agents.join("personas.json"),
        )
        .unwrap();
    }
    store
}

/// The environment of a fake home: only these variables exist.
/// An environment whose home is `home` (and no `XDG_DATA_HOME`).
fn home_env(home: &Path) -> Vec<(&'static str, Option<PathBuf>)> {
    vec![
        ("HOME", Some(home.to_path_buf())),
        ("XDG_DATA_HOME", None),
        ("XDG_STATE_HOME", None),
    ]
}

/// `reprofile ARGS` run in `work` with the environment `env`.
async fn reprofile(
    args: &[&str],
    work: &Path,
    env: Vec<(&'static str, Option<PathBuf>)>,
) -> std::process::Output {
    let args = args.iter().map(|a| a.to_string()).collect();
    run_binary_with_env(args, work.to_path_buf(), env).await
}

fn vars(pairs: Vec<(&'static str, PathBuf)>) -> impl Fn(&str) -> Option<String> {
    move |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.display().to_string())
    }
}

#[test]
fn the_store_is_found_under_a_fake_home_for_each_os_layout() {
    for os in [Os::Xdg, Os::MacOs, Os::Windows] {
        let home = tempfile::tempdir().unwrap();
        let (env, data): (Vec<(&'static str, PathBuf)>, PathBuf) = match os {
            Os::Xdg => (
                vec![("HOME", home.path().into())],
                home.path().join(".local/share"),
            ),
            Os::MacOs => (
                vec![("HOME", home.path().into())],
                home.path().join("Library/Application Support"),
            ),
            Os::Windows => (
                vec![("APPDATA", home.path().join("AppData/Roaming"))],
                home.path().join("AppData/Roaming"),
            ),
        };
        let store = lay_out_app(&data.join("xyz.block.buzz.app"), "ws://127.0.0.1:9", true);
        // A stale Sprout copy beside it, different on purpose.
        let stale = lay_out_app(&data.join("xyz.block.sprout.app"), "ws://127.0.0.1:9", true);
        std::fs::write(&stale, "[]").unwrap();
        let var = vars(env);
        let environment = Environment {
            os,
            var: &var,
            app_profile: None,
        };
        let config = config::defaults(home.path(), &environment).unwrap();
        assert_eq!(config.agents, store, "{os:?}");
        assert!(matches!(config.store_origin, StoreOrigin::App(_)), "{os:?}");
        let (read, personas) = reprofile::engine::read_prep::read_stores(&config).unwrap();
        assert_eq!(
            read.records.len(),
            6,
            "{os:?}: the Buzz store, not the stale one"
        );
        assert_eq!(personas.len(), 4, "{os:?}: personas beside it");
        let warning = reprofile::engine::snapshot::stale_copy_warning(&config).unwrap();
        assert!(
            warning.starts_with(&format!(
                "{} is a stale copy",
                data.join("xyz.block.sprout.app").display()
            )),
            "{warning}"
        );

        // The dev build's folder with the config key.
        let dev = lay_out_app(
            &data.join("xyz.block.buzz.app.dev"),
            "ws://127.0.0.1:9",
            true,
        );
        let config = config::parse_with(
            "[store]\napp_profile = \"dev\"\n",
            &home.path().join("config.toml"),
            home.path(),
            &environment,
        )
        .unwrap();
        assert_eq!(config.agents, dev, "{os:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_config_file_plan_and_apply_fix_the_apps_store_and_never_touch_the_sprout_copy() {
    let relay = start_local_relay().await;
    let relay_url = relay.url().await.to_string();
    publish_events(&relay_url, &seed_events()).await;
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join(".local/share");
    let store = lay_out_app(&data.join("xyz.block.buzz.app"), &relay_url, true);
    let stale = lay_out_app(&data.join("xyz.block.sprout.app"), &relay_url, true);
    let stale_before = std::fs::read(&stale).unwrap();
    let work = tempfile::tempdir().unwrap();
    let env = || home_env(home.path());

    let plan = reprofile(&["plan"], work.path(), env()).await;
    assert_eq!(plan.status.code(), Some(0), "{}", stderr(&plan));
    let err = stderr(&plan);
    assert_contains(
        &err,
        &format!(
            "store: {} (found: Buzz app data, release)\n",
            store.display()
        ),
    );
    assert_contains(&err, &format!(
            "warning: {} is a stale copy of the app's data from before Sprout became Buzz, which the app never reads; reprofile does not use it",
            data.join("xyz.block.sprout.app").display()
        ));
    let out = stdout(&plan);
    assert!(
        out.starts_with(&format!(
            "reprofile plan for 6 agents in {}",
            store.display()
        )),
        "stdout is the rendering only: {out}"
    );
    assert!(!out.contains("store: "), "{out}");
    // Without a config, plans go to the one per-user folder, not to the
    // folder reprofile happens to run in.
    let plans = home.path().join(".local/state/reprofile/plans");
    assert_eq!(json_files(&plans).len(), 1);
    assert!(!work.path().join("plans").exists(), "no plans scattered");

    let apply = reprofile(&["apply", "--auto-approve"], work.path(), env()).await;
    assert_eq!(apply.status.code(), Some(0), "{}", stdout(&apply));
    assert_contains(
        &stdout(&apply),
        "Apply complete: 6 applied, 0 already applied, 0 stale, 0 failed.",
    );
    assert_eq!(
        std::fs::read(&stale).unwrap(),
        stale_before,
        "the Sprout copy is never edited"
    );
    let again = reprofile(&["plan", "--detailed-exitcode"], work.path(), env()).await;
    assert_eq!(again.status.code(), Some(0), "{}", stdout(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_build_is_picked_by_flag_or_config_key_and_xdg_data_home_is_honoured() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("xdg-data");
    let dev = lay_out_app(
        &data.join("xyz.block.buzz.app.dev"),
        "ws://127.0.0.1:9",
        true,
    );
    let work = tempfile::tempdir().unwrap();
    let env = || {
        vec![
            ("HOME", Some(home.path().to_path_buf())),
            ("XDG_DATA_HOME", Some(data.clone())),
            ("XDG_STATE_HOME", None),
        ]
    };

    // Release by default: not found, with a hint at the dev build.
    let release = reprofile(&["plan"], work.path(), env()).await;
    assert_eq!(release.status.code(), Some(1));
    assert_eq!(
        stderr(&release),
        format!(
            "error: no Buzz agent store at {} (the release app's data); the dev build's store exists at {}: pass --app-profile dev to use it; set [store] agents in config.toml to the app's managed-agents.json\n",
            data.join("xyz.block.buzz.app/agents/managed-agents.json").display(),
            dev.display()
        )
    );
    let plans = home.path().join(".local/state/reprofile/plans");
    assert!(
        !plans.exists() && !work.path().join("plans").exists(),
        "nothing written"
    );

    let flagged = reprofile(&["--app-profile", "dev", "validate"], work.path(), env()).await;
    assert_eq!(flagged.status.code(), Some(0), "{}", stdout(&flagged));
    assert_contains(
        &stderr(&flagged),
        &format!("store: {} (found: Buzz app data, dev)", dev.display()),
    );
    let out = stdout(&flagged);
    assert!(
        out.starts_with("ok: no config file (config.toml not found): built-in defaults\n"),
        "{out}"
    );
    assert_contains(
        &out,
        &format!("ok: agent store {} (6 agent records)", dev.display()),
    );
    // The app's null avatar_url is called null, not legacy.
    assert_contains(&out, "(Bramble, a8928362…2cff6525): record with avatar_url null (no stored avatar): `reprofile migrate` (or `apply`) backfills it from its persona's avatar");
    assert!(!out.contains("legacy"), "{out}");

    std::fs::write(
        work.path().join("config.toml"),
        "[store]\napp_profile = \"dev\"\n",
    )
    .unwrap();
    let keyed = reprofile(&["validate"], work.path(), env()).await;
    assert_eq!(keyed.status.code(), Some(0), "{}", stdout(&keyed));
    assert_contains(
        &stderr(&keyed),
        &format!("store: {} (found: Buzz app data, dev)", dev.display()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_naming_a_persona_need_the_persona_store_and_nothing_is_written() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join(".local/share");
    let store = lay_out_app(&data.join("xyz.block.buzz.app"), "ws://127.0.0.1:9", false);
    let before = std::fs::read(&store).unwrap();
    let work = tempfile::tempdir().unwrap();
    let env = || home_env(home.path());
    let personas = store.with_file_name("personas.json");
    for args in [
        vec!["plan"],
        vec!["migrate", "--auto-approve"],
        vec!["apply", "--auto-approve"],
    ] {
        let output = reprofile(&args, work.path(), env()).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&output),
            format!(
                "error: 4 records of the agent store name a persona (record #0 (Bramble, a8928362…2cff6525)), but there is no persona store at {} (No such file or directory (os error 2)); set [store] personas in config.toml to the app's personas.json\n",
                personas.display()
            ),
            "{args:?}"
        );
    }
    assert_eq!(std::fs::read(&store).unwrap(), before);
    let plans = home.path().join(".local/state/reprofile/plans");
    assert!(
        !plans.exists() && !work.path().join("plans").exists(),
        "no plan written"
    );

    let validate = reprofile(&["validate"], work.path(), env()).await;
    assert_eq!(validate.status.code(), Some(1));
    assert_contains(
        &stdout(&validate),
        "error: 4 records of the agent store name a persona",
    );

    // Pointing [store] at the file (anywhere) fixes it.
    let elsewhere = work.path().join("my-personas.json");
    std::fs::copy(fixture_dir().join("personas.json"), &elsewhere).unwrap();
    std::fs::write(
        work.path().join("config.toml"),
        format!(
            "[store]\nagents = \"{}\"\npersonas = \"my-personas.json\"\n",
            store.display()
        ),
    )
    .unwrap();
    let fixed = reprofile(&["validate"], work.path(), env()).await;
    assert_eq!(fixed.status.code(), Some(0), "{}", stdout(&fixed));
    assert_contains(
        &stdout(&fixed),
        &format!("ok: persona store {} (4 personas)", elsewhere.display()),
    );
    assert_contains(
        &stderr(&fixed),
        &format!(
            "store: {} (from {})",
            store.display(),
            work.path().join("config.toml").display()
        ),
    );
}
