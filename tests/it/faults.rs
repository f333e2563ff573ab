//! Bad files and failing disks: each gives a clear error and loses nothing.
//!
//! Tests run as root, for whom permission bits do not stop a read; an
//! "unreadable" store is therefore a path that cannot be read as a file (a
//! folder), which takes the same error path. Disk failures are injected into
//! the write path (`InjectedFault`).

use std::os::unix::fs::PermissionsExt;

use reprofile::core::apply::Outcome;
use reprofile::engine::apply::{apply, ApplyOptions};
use reprofile::engine::orchestrate::now_secs;
use reprofile::testing::InjectedFault;

use crate::world::{
    assert_contains, assert_incomplete_for_the_down_relay, forced, results_of, stderr, stdout,
    World,
};

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_when_the_store_is_written_keeps_the_original_and_reports_it() {
    let world = World::start().await;
    let original = std::fs::read(world.store_path()).unwrap();
    let (config, doc, path) = world.planned().await;
    let before = files_in(world.dir.path());
    let opts = ApplyOptions {
        force: true,
        fault: InjectedFault::DiskFull,
        ..ApplyOptions::default()
    };
    let report = apply(&config, &doc, &path, &opts, &now_secs).await.unwrap();

    assert_eq!(
        std::fs::read(world.store_path()).unwrap(),
        original,
        "the original store is intact"
    );
    assert_eq!(
        files_in(world.dir.path()),
        before,
        "no temp file or backup is left behind"
    );
    let backfills = results_of(&report, "backfill_avatar");
    assert_eq!(backfills.len(), 5);
    for result in backfills {
        assert_eq!(result.outcome, Outcome::Failed);
        assert!(
            result
                .reason
                .as_deref()
                .unwrap()
                .contains("no space left on device"),
            "{result:?}"
        );
        assert!(result
            .reason
            .as_deref()
            .unwrap()
            .contains("the store was not changed"));
    }
    let blocked: Vec<_> = results_of(&report, "republish_profile")
        .into_iter()
        .filter(|r| r.reason.as_deref().is_some_and(|x| x.contains("backfill")))
        .collect();
    assert_eq!(
        blocked.len(),
        2,
        "the republishes that needed a backfill are not published"
    );
    assert!(!report.succeeded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_cannot_be_written_stops_the_apply_before_any_change() {
    let world = World::start().await;
    let original = std::fs::read(world.store_path()).unwrap();
    let (config, doc, path) = world.planned().await;
    let opts = ApplyOptions {
        force: true,
        fault: InjectedFault::JournalReadOnly,
        ..ApplyOptions::default()
    };
    let err = apply(&config, &doc, &path, &opts, &now_secs)
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot open the journal"),
        "{err:#}"
    );
    assert!(format!("{err:#}").contains("nothing was changed"));
    assert_eq!(std::fs::read(world.store_path()).unwrap(), original);
    // The lock was released: the next apply runs.
    let report = apply(&config, &doc, &path, &forced(), &now_secs)
        .await
        .unwrap();
    assert!(report.succeeded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_or_dangling_store_is_a_one_line_error() {
    let world = World::start().await;
    std::fs::remove_file(world.store_path()).unwrap();
    std::os::unix::fs::symlink(world.dir.path().join("gone.json"), world.store_path()).unwrap();
    let output = world.cli(&["plan"]).await;
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("cannot read the agent store") && err.contains("No such file"),
        "{err}"
    );

    std::fs::remove_file(world.store_path()).unwrap();
    std::fs::create_dir(world.store_path()).unwrap();
    let output = world.cli(&["plan"]).await;
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("cannot read the agent store") && err.contains("check the path"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_store_is_written_at_its_target_and_stays_a_symlink() {
    let world = World::start().await;
    let target_dir = world.dir.path().join("real");
    std::fs::create_dir(&target_dir).unwrap();
    let target = target_dir.join("agents.json");
    std::fs::rename(world.store_path(), &target).unwrap();
    std::os::unix::fs::symlink(&target, world.store_path()).unwrap();
    let (config, doc, path) = world.planned().await;
    let report = apply(&config, &doc, &path, &forced(), &now_secs)
        .await
        .unwrap();
    assert!(report.succeeded());
    let link = std::fs::symlink_metadata(world.store_path()).unwrap();
    assert!(link.file_type().is_symlink(), "still a symlink");
    assert_eq!(std::fs::read_link(world.store_path()).unwrap(), target);
    assert!(std::fs::read_to_string(&target)
        .unwrap()
        .contains("https://persona.example/4.png"));
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        report.backup.unwrap().starts_with(&target_dir),
        "the backup is next to the real file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_is_a_clear_error_and_a_dead_holders_lock_is_taken_over() {
    let world = World::start().await;
    let lock_path =
        reprofile::store::lock::lock_path(&std::fs::canonicalize(world.store_path()).unwrap());
    let held =
        reprofile::store::lock::ApplyLock::acquire(&lock_path, "2026-01-01T00:00:00Z").unwrap();
    let output = world.cli(&["apply", "--auto-approve", "--force"]).await;
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    let line = err.lines().last().unwrap();
    assert!(
        line.contains("another reprofile run holds the lock"),
        "{err}"
    );
    assert!(
        line.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    // Refused before planning: no plan printed or written, no relay read.
    assert_eq!(stdout(&output), "", "nothing printed before the refusal");
    assert!(world.plan_files().is_empty(), "no plan made");
    drop(held);

    // A holder that dies without cleaning up: `flock -o` holds the lock in
    // its own process (not in `sleep`) while `sleep` runs; SIGKILL it, and
    // the next apply takes the lock.
    let mut holder = std::process::Command::new("flock")
        .arg("-o")
        .arg(&lock_path)
        .args(["sleep", "60"])
        .spawn()
        .expect("util-linux flock");
    // Wait (bounded) until flock holds it, probing without taking it for long.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let probe = std::fs::OpenOptions::new().read(true).open(&lock_path);
        let held = probe
            .is_ok_and(|file| matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)));
        if held {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "flock never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let output = world.cli(&["apply", "--auto-approve", "--force"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert_contains(&stderr(&output), "(holder unknown)");
    holder.kill().unwrap();
    holder.wait().unwrap();
    let output = world.cli(&["apply", "--auto-approve", "--force"]).await;
    // It ran: every action applied; exit 1 only for the fixture's down relay.
    assert_incomplete_for_the_down_relay(&output);
    assert!(
        stdout(&output)
            .contains("Apply complete: 12 applied, 0 already applied, 0 stale, 0 failed."),
        "{}",
        stdout(&output)
    );
}
