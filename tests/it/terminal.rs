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
