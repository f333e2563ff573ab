//! The store write beside another writer. The desktop app rewrites the whole
//! store (a temp file renamed over it) and takes no lock reprofile could
//! share; here a real second process (`sh`) does the same, exactly in the
//! window between reprofile's read of the store and its replacement: the
//! test hooks (`InjectedFault::SecondWriter…`) stop the write there, run the
//! process to its end, and let the write go on. No sleep is involved.
//!
//! Whatever the second process wrote must survive, with the backfills
//! written on top of it (the write starts over from the new store), or,
//! when the store never stops changing, nothing written at all.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use reprofile::core::apply::Outcome;
use reprofile::core::plan::Action;
use reprofile::engine::apply::{apply, ApplyOptions, ApplyReport};
use reprofile::engine::orchestrate::now_secs;
use reprofile::store::planfile::PlanDocument;
use reprofile::testing::InjectedFault;
use serde_json::{json, Value};

use crate::world::{results_of, World};

/// A pubkey the app adds (64 hex, in no plan).
fn new_pubkey(digit: char) -> String {
    std::iter::repeat_n(digit, 64).collect()
}

/// The app's rewrite of the store `text`: the whole file again, as serde
/// pretty-prints it (as the app writes it), with a record added at the end (a
/// copy of the first under `pubkey`, with a field reprofile does not know)
/// and a field of the first record changed.
fn app_adds_a_record(text: &str, pubkey: &str) -> String {
    let mut store: Value = serde_json::from_str(text).unwrap();
    let records = store.as_array_mut().unwrap();
    let mut added = records[0].clone();
    added["pubkey"] = pubkey.into();
    added["name"] = format!("added-by-the-app-{}", &pubkey[..4]).into();
    added["field_reprofile_does_not_know"] = json!({"kept": [1, "verbatim", {"x": null}]});
    records.push(added);
    records[0]["last_started_at"] = format!("started for {}", &pubkey[..4]).into();
    serde_json::to_string_pretty(&store).unwrap()
}

/// Runs `script` in `sh` with the store as `$1` and `text` on its stdin, to
/// its end.
fn second_process(script: &str, store: &Path, text: &str) {
    let mut child = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(store)
        .stdin(Stdio::piped())
        .spawn()
        .expect("sh runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "the second process wrote");
}

/// Another process puts `text` in place as the app does: a 0600 temp file
/// beside the store, renamed over it (`mv` within a folder is rename(2)).
fn replace_by_rename(store: &Path, text: &str) {
    second_process(
        r#"cat > "$1.app.tmp" && chmod 600 "$1.app.tmp" && mv -f "$1.app.tmp" "$1""#,
        store,
        text,
    );
}

/// Another process rewrites the store in place: the same file truncated and
/// written.
fn rewrite_in_place(store: &Path, text: &str) {
    second_process(r#"cat > "$1""#, store, text);
}

/// The plan's backfills: agent to avatar URL.
fn backfills(doc: &PlanDocument) -> Vec<(String, String)> {
    doc.plan
        .actions
        .iter()
        .filter_map(Action::as_backfill)
        .map(|b| (b.agent.clone(), b.avatar_url.clone()))
        .collect()
}

/// Lines that are not `avatar_url` lines.
fn without_avatar_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| !line.contains("\"avatar_url\""))
        .collect()
}

/// `after` is the app's version `app` with the plan's backfills written on
/// it: every other line the app's, in order (so every record, its fields,
/// their order and the fields reprofile does not know), each backfilled
/// record with its planned avatar, every other record's avatar the app's.
#[track_caller]
fn assert_apps_version_with_the_backfills(after: &str, app: &str, doc: &PlanDocument) {
    assert_eq!(
        without_avatar_lines(after),
        without_avatar_lines(app),
        "only avatar_url lines differ from the app's version"
    );
    let after: Value = serde_json::from_str(after).unwrap();
    let app: Value = serde_json::from_str(app).unwrap();
    let planned = backfills(doc);
    assert!(!planned.is_empty());
    let (after, app) = (after.as_array().unwrap(), app.as_array().unwrap());
    assert_eq!(after.len(), app.len());
    for (now, theirs) in after.iter().zip(app) {
        let pubkey = now["pubkey"].as_str().unwrap();
        match planned.iter().find(|(agent, _)| agent == pubkey) {
            Some((_, url)) => assert_eq!(now["avatar_url"], url.as_str(), "{pubkey}"),
            None => assert_eq!(now.get("avatar_url"), theirs.get("avatar_url"), "{pubkey}"),
        }
    }
}

/// Every backfill applied, none failed or found stale at the end.
#[track_caller]
fn assert_backfills_applied(report: &ApplyReport, doc: &PlanDocument) {
    let results = results_of(report, "backfill_avatar");
    assert_eq!(results.len(), backfills(doc).len());
    for result in results {
        assert_eq!(result.outcome, Outcome::Applied, "{result:?}");
    }
}

/// The files left in `dir` by writes: backups, reprofile's and the second
/// process's temp files.
fn write_leftovers(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut backups = Vec::new();
    let mut temps = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".bak") {
            backups.push(path);
        } else if name.contains(".reprofile-store-") || name.ends_with(".app.tmp") {
            temps.push(path);
        }
    }
    (backups, temps)
}

/// Apply options with the safety threshold lifted and `fault` injected.
fn with_fault(fault: InjectedFault) -> ApplyOptions {
    ApplyOptions {
        fault,
        ..ApplyOptions::forced()
    }
}

/// Counts the calls of a second writer.
fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// The app's version of the store put in place by a second process, once,
/// at the first time the write reaches the point of `fault`: the store
/// holds it and the backfills after the apply, which reports them applied.
async fn a_record_the_app_adds_at(fault: InjectedFault) {
    let world = World::start().await;
    let (config, doc, path) = world.planned().await;
    let store = world.store_path();
    let app_version =
        app_adds_a_record(&std::fs::read_to_string(&store).unwrap(), &new_pubkey('a'));
    let calls = counter();
    {
        let (calls, store, app_version) = (calls.clone(), store.clone(), app_version.clone());
        InjectedFault::set_second_writer(&store.clone(), move || {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                replace_by_rename(&store, &app_version);
            }
        });
    }
    let report = apply(&config, &doc, &path, &with_fault(fault), &now_secs)
        .await
        .unwrap();

    let after = std::fs::read_to_string(&store).unwrap();
    assert!(
        after.contains(&new_pubkey('a')),
        "the app's record is there"
    );
    assert_apps_version_with_the_backfills(&after, &app_version, &doc);
    assert_backfills_applied(&report, &doc);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the write started over once, from the app's version"
    );
    let (backups, temps) = write_leftovers(world.dir.path());
    assert_eq!(temps, Vec::<PathBuf>::new(), "no temp file is left");
    assert_eq!(backups.len(), 1, "one backup: {backups:?}");
    assert_eq!(report.backup.as_ref(), Some(&backups[0]));
    assert_eq!(
        std::fs::read_to_string(&backups[0]).unwrap(),
        app_version,
        "the backup is of the store the write replaced: the app's version"
    );
    assert_eq!(
        std::fs::metadata(&store).unwrap().permissions().mode() & 0o7777,
        0o600
    );
}

/// The window the issue found: the app's rename lands while the backup is
/// written and synced. The store is checked after that, before anything is
/// replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_app_adds_while_the_backup_is_written_survives_with_the_backfills() {
    a_record_the_app_adds_at(InjectedFault::SecondWriterAfterBackup).await;
}

/// The app's rename lands after every check made before the replacement,
/// immediately before it: the exchange brings the app's version aside, the
/// check of what it displaced sees it, and the exchange is undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_app_adds_just_before_the_store_is_replaced_survives_with_the_backfills() {
    a_record_the_app_adds_at(InjectedFault::SecondWriterBeforeReplace).await;
}

/// A writer that rewrites the same file in place just before the exchange:
/// the exchange displaces the very file read, but not with the bytes read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_rewritten_in_place_just_before_the_replacement_is_not_lost() {
    let world = World::start().await;
    let (config, doc, path) = world.planned().await;
    let store = world.store_path();
    let app_version =
        app_adds_a_record(&std::fs::read_to_string(&store).unwrap(), &new_pubkey('b'));
    let calls = counter();
    {
        let (calls, store, app_version) = (calls.clone(), store.clone(), app_version.clone());
        InjectedFault::set_second_writer(&store.clone(), move || {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                rewrite_in_place(&store, &app_version);
            }
        });
    }
    let report = apply(
        &config,
        &doc,
        &path,
        &with_fault(InjectedFault::SecondWriterBeforeReplace),
        &now_secs,
    )
    .await
    .unwrap();
    let after = std::fs::read_to_string(&store).unwrap();
    assert!(
        after.contains(&new_pubkey('b')),
        "the app's record is there"
    );
    assert_apps_version_with_the_backfills(&after, &app_version, &doc);
    assert_backfills_applied(&report, &doc);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// The app writes twice: once just before the exchange, and again between
/// the exchange and its undo (its next rewrite, from its own state). The
/// undo ends with the app's newest version in place; the backfills are
/// written on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_rewrite_between_the_exchange_and_its_undo_is_the_one_kept() {
    let world = World::start().await;
    let (config, doc, path) = world.planned().await;
    let store = world.store_path();
    let first = app_adds_a_record(&std::fs::read_to_string(&store).unwrap(), &new_pubkey('c'));
    let second = app_adds_a_record(&first, &new_pubkey('d'));
    let calls = counter();
    {
        let (calls, store) = (calls.clone(), store.clone());
        let (first, second) = (first.clone(), second.clone());
        InjectedFault::set_second_writer(&store.clone(), move || {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => replace_by_rename(&store, &first),
                1 => replace_by_rename(&store, &second),
                _ => {}
            }
        });
    }
    let report = apply(
        &config,
        &doc,
        &path,
        &with_fault(InjectedFault::SecondWriterAroundExchange),
        &now_secs,
    )
    .await
    .unwrap();
    let after = std::fs::read_to_string(&store).unwrap();
    assert!(after.contains(&new_pubkey('c')) && after.contains(&new_pubkey('d')));
    assert_apps_version_with_the_backfills(&after, &second, &doc);
    assert_backfills_applied(&report, &doc);
    assert!(calls.load(Ordering::SeqCst) >= 3);
    let (backups, temps) = write_leftovers(world.dir.path());
    assert_eq!(temps, Vec::<PathBuf>::new());
    assert_eq!(backups.len(), 1);
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), second);
}

/// A store that changes at every attempt: the write gives up, nothing of
/// the app's is lost, nothing of reprofile's is written, no backup is left,
/// and the backfills are reported failed, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_keeps_changing_is_left_as_the_app_last_wrote_it() {
    let world = World::start().await;
    let (config, doc, path) = world.planned().await;
    let store = world.store_path();
    let last_written = Arc::new(Mutex::new(String::new()));
    let calls = counter();
    {
        let (calls, store, last_written) = (calls.clone(), store.clone(), last_written.clone());
        InjectedFault::set_second_writer(&store.clone(), move || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let digit = char::from_digit(n as u32 + 1, 16).unwrap();
            let version = app_adds_a_record(
                &std::fs::read_to_string(&store).unwrap(),
                &new_pubkey(digit),
            );
            replace_by_rename(&store, &version);
            *last_written.lock().unwrap() = version;
        });
    }
    let report = apply(
        &config,
        &doc,
        &path,
        &with_fault(InjectedFault::SecondWriterBeforeReplace),
        &now_secs,
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&store).unwrap(),
        *last_written.lock().unwrap(),
        "the store is the app's last version, byte for byte"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5, "one write per attempt");
    let results = results_of(&report, "backfill_avatar");
    assert_eq!(results.len(), backfills(&doc).len());
    for result in results {
        assert_eq!(result.outcome, Outcome::Failed, "{result:?}");
        let reason = result.reason.as_deref().unwrap();
        assert!(
            reason.contains("kept changing") && reason.contains("nothing was written"),
            "{reason}"
        );
    }
    assert_eq!(report.backup, None);
    let (backups, temps) = write_leftovers(world.dir.path());
    assert_eq!(
        backups,
        Vec::<PathBuf>::new(),
        "no backup of a write that did not happen"
    );
    assert_eq!(temps, Vec::<PathBuf>::new());
}

/// A symlinked store: the app writes at the link's target, the exchange is
/// made there, and the link stays a link to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_store_keeps_the_apps_record_and_stays_a_link() {
    let world = World::start().await;
    let target_dir = world.dir.path().join("real");
    std::fs::create_dir(&target_dir).unwrap();
    let target = target_dir.join("agents.json");
    std::fs::rename(world.store_path(), &target).unwrap();
    std::os::unix::fs::symlink(&target, world.store_path()).unwrap();
    let (config, doc, path) = world.planned().await;
    let app_version =
        app_adds_a_record(&std::fs::read_to_string(&target).unwrap(), &new_pubkey('e'));
    let calls = counter();
    {
        let (calls, target, app_version) = (calls.clone(), target.clone(), app_version.clone());
        InjectedFault::set_second_writer(&world.store_path(), move || {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                replace_by_rename(&target, &app_version);
            }
        });
    }
    let report = apply(
        &config,
        &doc,
        &path,
        &with_fault(InjectedFault::SecondWriterBeforeReplace),
        &now_secs,
    )
    .await
    .unwrap();
    let link = std::fs::symlink_metadata(world.store_path()).unwrap();
    assert!(link.file_type().is_symlink(), "still a symlink");
    assert_eq!(std::fs::read_link(world.store_path()).unwrap(), target);
    let after = std::fs::read_to_string(&target).unwrap();
    assert!(
        after.contains(&new_pubkey('e')),
        "the app's record is there"
    );
    assert_apps_version_with_the_backfills(&after, &app_version, &doc);
    assert_backfills_applied(&report, &doc);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let (_, temps) = write_leftovers(&target_dir);
    assert_eq!(temps, Vec::<PathBuf>::new());
    assert!(report.backup.unwrap().starts_with(&target_dir));
}

/// An apply run as root (`sudo`) on a store of another user: the store
/// keeps its owner, group and mode 0600, and so does the backup of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_another_user_keeps_its_owner_group_and_mode() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test gives a file away, which only root may do; the tests run as root");
    }
    const NOBODY: u32 = 65534;
    let world = World::start().await;
    let store = world.store_path();
    std::os::unix::fs::chown(&store, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (config, doc, path) = world.planned().await;
    let report = apply(&config, &doc, &path, &ApplyOptions::forced(), &now_secs)
        .await
        .unwrap();
    assert_backfills_applied(&report, &doc);
    let after = std::fs::metadata(&store).unwrap();
    assert!(std::fs::read_to_string(&store)
        .unwrap()
        .contains(&backfills(&doc)[0].1));
    assert_eq!((after.uid(), after.gid()), (NOBODY, NOBODY), "owner kept");
    assert_eq!(after.mode() & 0o7777, 0o600, "mode kept");
    let backup = std::fs::metadata(report.backup.unwrap()).unwrap();
    assert_eq!((backup.uid(), backup.gid()), (NOBODY, NOBODY));
    assert_eq!(backup.mode() & 0o7777, 0o600);
}
