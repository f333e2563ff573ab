//! What a person sees in a real terminal: reprofile run in tmux (a real
//! pseudo-terminal, so stderr is a terminal and the progress bars are
//! drawn), the screen read back with `capture-pane`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::world::World;

/// Runs `args` (after `--config`) in a tmux pane of its own server, waits
/// (bounded) for the command to end, and returns the screen.
fn screen_after(world: &World, args: &[&str]) -> String {
    let socket = format!(
        "reprofile-test-{}-{}",
        std::process::id(),
        world.dir.path().file_name().unwrap().to_string_lossy()
    );
    let command = format!(
        "{} --config {} {}; echo __DONE__ $?; exec sleep 120",
        env!("CARGO_BIN_EXE_reprofile"),
        world.config_path.display(),
        args.join(" ")
    );
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .env_remove("NO_COLOR")
            .output()
            .expect("tmux runs (Debian's tmux)")
    };
    let started = tmux(&["new-session", "-d", "-x", "160", "-y", "60", &command]);
    assert!(started.status.success(), "{started:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let screen = loop {
        let captured = tmux(&["capture-pane", "-p", "-J", "-S", "-"]);
        let text = String::from_utf8_lossy(&captured.stdout).into_owned();
        if text.contains("__DONE__") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the command did not end:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    tmux(&["kill-server"]);
    screen
}

/// A progress bar (`snapshot [====      ] 3/16 (0s)`) on a line.
fn has_bar(line: &str) -> bool {
    line.contains(" [") && line.contains("] ") && line.contains('/') && line.contains("s)")
}

/// With a relay down, the log's line about it and the progress bars never
/// share a line, and no bar is left on the screen when the command ends
/// (before: `snapshot [          ] 0/16 (0s)` stayed, the log line glued onto
/// it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_terminal_log_lines_never_land_on_a_bar_and_no_bar_is_left() {
    let world = World::start().await;
    // -v: the relay's log line (info; at the default level the plan's
    // warning and the closing error line say it, once each).
    let screen = tokio::task::block_in_place(|| screen_after(&world, &["-v", "plan"]));
    assert!(screen.contains("__DONE__ 1"), "{screen}");
    let warn = screen
        .lines()
        .find(|l| l.contains("relay unreadable"))
        .unwrap_or_else(|| panic!("the relay's log line is shown:\n{screen}"));
    assert!(!has_bar(warn), "a bar on the log line: {warn:?}\n{screen}");
    for line in screen.lines() {
        assert!(
            !has_bar(line),
            "a bar left on the screen: {line:?}\n{screen}"
        );
    }
}

/// Ctrl-C during `apply`, typed in a real terminal: the apply stops between
/// actions (the event in flight gets its OK), says what was done and how to
/// go on, exits 130, and no bar is left on the screen (before: it exited 130
/// at once, silently; then the terminal's `^C` echo at the right edge of the
/// bar's line pushed the bar out of indicatif's reach, and it stayed above
/// the report).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_apply_stops_between_actions_and_says_how_to_go_on() {
    let (world, slow) = World::on_a_slow_relay(4).await;
    world.append_config("[safety]\nmax_republish_fraction = 1.0");

    let socket = format!("reprofile-ctrl-c-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
            .expect("tmux runs (Debian's tmux)")
    };
    let command = format!(
        "{} --config {} apply --auto-approve; echo __DONE__ $?; exec sleep 120",
        env!("CARGO_BIN_EXE_reprofile"),
        world.config_path.display()
    );
    assert!(
        tmux(&["new-session", "-d", "-x", "200", "-y", "80", &command])
            .status
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while slow.event_ids().is_empty() {
        assert!(Instant::now() < deadline, "no EVENT reached the relay");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(tmux(&["send-keys", "C-c"]).status.success());
    let screen = loop {
        let captured = tmux(&["capture-pane", "-p", "-J", "-S", "-"]);
        let text = String::from_utf8_lossy(&captured.stdout).into_owned();
        if text.contains("__DONE__") {
            break text;
        }
        assert!(Instant::now() < deadline, "apply did not end:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tmux(&["kill-server"]);
    assert!(screen.contains("__DONE__ 130"), "{screen}");
    assert_eq!(slow.event_ids().len(), 1, "nothing sent after Ctrl-C");
    assert!(screen.contains("Apply stopped: "), "{screen}");
    assert!(
        screen.contains("error: stopped with 3 actions not begun; `reprofile apply "),
        "{screen}"
    );
    let bars: Vec<&str> = screen.lines().filter(|line| has_bar(line)).collect();
    assert!(bars.is_empty(), "a bar was left: {bars:?}\n{screen}");
}
