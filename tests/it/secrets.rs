//! No private key in any output or file: a full run over the fixture world,
//! every command, with debug logs, then a scan of everything it printed and
//! every file it wrote (other than the store and its backups) for the
//! fixture's keys, as nsec and as hex.

use std::path::{Path, PathBuf};

use nostr::nips::nip19::FromBech32;
use nostr::SecretKey;

use crate::support::fixture_path;
use crate::world::{run_binary, World};

fn fixture_secrets() -> Vec<String> {
    let store: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_path("managed-agents.json")).unwrap(),
    )
    .unwrap();
    let mut secrets = Vec::new();
    for record in store.as_array().unwrap() {
        let nsec = record["private_key_nsec"].as_str().unwrap().to_string();
        let hex = SecretKey::from_bech32(&nsec).unwrap().to_secret_hex();
        secrets.push(nsec);
        secrets.push(hex);
    }
    secrets
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_private_key_in_any_output_or_written_file() {
    let world = World::start().await;
    let metrics = world.dir.path().join("metrics.prom");
    let text = std::fs::read_to_string(&world.config_path).unwrap();
    std::fs::write(
        &world.config_path,
        format!(
            "{text}\n[safety]\nmax_republish_fraction = 1.0\n\n[schedule]\nmode = \"apply\"\nmetrics_file = \"{}\"\n",
            metrics.display()
        ),
    )
    .unwrap();
    let demo_dir = world.dir.path().join("demo");

    let mut outputs = Vec::new();
    for args in [
        vec!["-vv", "validate"],
        vec!["-vv", "plan"],
        vec!["-vv", "migrate", "--dry-run"],
        vec!["-vv", "--log-format", "json", "apply", "--auto-approve"],
        vec!["-vv", "plan", "--detailed-exitcode"],
        vec!["-vv", "run", "--once"],
    ] {
        let output = world.cli(&args).await;
        outputs.push(output);
    }
    for plan in world.plan_files() {
        for extra in [None, Some("--json"), Some("--summary")] {
            let mut args = vec!["show", plan.to_str().unwrap()];
            args.extend(extra);
            outputs.push(world.cli(&args).await);
        }
    }
    outputs.push(
        run_binary(
            vec![
                "-vv".into(),
                "demo".into(),
                "--dir".into(),
                demo_dir.display().to_string(),
            ],
            world.dir.path().into(),
        )
        .await,
    );
    let secrets = fixture_secrets();
    // The scan can see a key where one is: the store holds them all.
    let store = std::fs::read_to_string(world.store_path()).unwrap();
    assert!(secrets
        .iter()
        .filter(|s| s.starts_with("nsec1"))
        .all(|s| store.contains(s.as_str())));
    let mut leaks = Vec::new();
    for (i, output) in outputs.iter().enumerate() {
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for secret in &secrets {
            if printed.contains(secret.as_str()) {
                leaks.push(format!("output of run {i}"));
            }
        }
    }
    let mut scanned = 0;
    for file in files_under(world.dir.path()) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let is_store = name == "managed-agents.json" || name.ends_with(".bak");
        if is_store {
            continue;
        }
        scanned += 1;
        let content = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        for secret in &secrets {
            if content.contains(secret.as_str()) {
                leaks.push(file.display().to_string());
            }
        }
    }
    assert!(leaks.is_empty(), "private keys leaked into: {leaks:?}");
    assert!(
        scanned >= 10,
        "plans, renderings, journals, metrics, configs were scanned ({scanned})"
    );
    assert!(outputs
        .iter()
        .all(|o| !o.stderr.is_empty() || !o.stdout.is_empty()));
}
