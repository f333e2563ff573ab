//! What a person sees in a real terminal: reprofile run in tmux (a real
//! pseudo-terminal, so stderr is a terminal and the progress bars are
//! drawn), the screen read back with `capture-pane`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::FakeBehaviour;
use crate::world::World;

/// A tmux server of its own with one pane running reprofile with `args`
/// (after `--config`), then `echo __DONE__ $?`; the server goes with it.
struct Pane {
    socket: String,
}

impl Pane {
    fn start(world: &World, args: &[&str]) -> Pane {
        let pane = Pane {
            socket: format!(
                "reprofile-test-{}-{}",
                std::process::id(),
                world.dir.path().file_name().unwrap().to_string_lossy()
            ),
        };
        let command = format!(
            "{} --config {} {}; echo __DONE__ $?; exec sleep 120",
            env!("CARGO_BIN_EXE_reprofile"),
            world.config_path.display(),
            args.join(" ")
        );
        let started = pane.tmux(&["new-session", "-d", "-x", "200", "-y", "80", &command]);
        assert!(started.status.success(), "{started:?}");
        pane
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .env_remove("NO_COLOR")
            .output()
            .expect("tmux runs (Debian's tmux)")
    }

    /// The screen and its scrollback, once it shows `text` (bounded wait).
    fn when_shown(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let captured = self.tmux(&["capture-pane", "-p", "-J", "-S", "-"]);
            let screen = String::from_utf8_lossy(&captured.stdout).into_owned();
            if screen.contains(text) {
                return screen;
            }
            assert!(Instant::now() < deadline, "{text:?} not shown:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The screen once the command ended.
    fn when_done(&self) -> String {
        self.when_shown("__DONE__")
    }

    fn ctrl_c(&self) {
        assert!(self.tmux(&["send-keys", "C-c"]).status.success());
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

/// Runs `args` in a pane and returns the screen once the command ended.
fn screen_after(world: &World, args: &[&str]) -> String {
    Pane::start(world, args).when_done()
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

    let pane = Pane::start(&world, &["apply", "--auto-approve"]);
    slow.wait_for_an_event(Duration::from_secs(30)).await;
    pane.ctrl_c();
    let screen = tokio::task::block_in_place(|| pane.when_done());
    assert!(screen.contains("__DONE__ 130"), "{screen}");
    assert_eq!(slow.event_ids().len(), 1, "nothing sent after Ctrl-C");
    assert!(screen.contains("Apply stopped: "), "{screen}");
    assert!(
        screen.contains("error: stopped with 3 actions not begun; `reprofile apply "),
        "{screen}"
    );
    let bars: Vec<&str> = screen.lines().filter(|line| has_bar(line)).collect();
    assert!(bars.is_empty(), "a bar was left: {bars:?}\n{screen}");
    assert!(
        screen.contains("Stopping (SIGINT): nothing new begins, and what is under way finishes (at most 30 s); Ctrl-C again stops at once."),
        "said at once:\n{screen}"
    );
}

/// Ctrl-C at the approval prompt cancels at once: nothing is changed or
/// sent, and the command exits 130 (before: the prompt went on waiting for
/// an answer, the Ctrl-C only seen after Enter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_at_the_approval_prompt_cancels_at_once_and_changes_nothing() {
    let (world, slow) = World::on_a_slow_relay(2).await;
    world.append_config("[safety]\nmax_republish_fraction = 1.0");
    let store = std::fs::read(world.store_path()).unwrap();

    let pane = Pane::start(&world, &["apply"]);
    tokio::task::block_in_place(|| pane.when_shown("Enter a value: "));
    pane.ctrl_c();
    let screen = tokio::task::block_in_place(|| pane.when_done());
    assert!(screen.contains("__DONE__ 130"), "{screen}");
    assert!(
        screen.contains("Apply cancelled: nothing was changed."),
        "{screen}"
    );
    assert!(slow.event_ids().is_empty(), "nothing sent");
    assert_eq!(std::fs::read(world.store_path()).unwrap(), store);
    assert!(world.journal_files().is_empty(), "nothing journaled");
    assert!(
        !screen.contains("Stopping"),
        "nothing was under way:\n{screen}"
    );
}

/// Ctrl-C, then Ctrl-C again while an event awaits an OK that never comes:
/// the second one ends the apply at once (without it, the apply waits for
/// the OK until `publish_timeout_secs`), says so and how to go on, and exits
/// 130; no bar is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_stops_at_once() {
    let (world, relay) = World::on_a_fake_relay(2, FakeBehaviour::NeverOk).await;
    world.append_config("[safety]\nmax_republish_fraction = 1.0");
    // Far longer than the test runs: only the second Ctrl-C ends the wait.
    let config = std::fs::read_to_string(&world.config_path).unwrap();
    std::fs::write(
        &world.config_path,
        config.replace("publish_timeout_secs = 5", "publish_timeout_secs = 600"),
    )
    .unwrap();

    let pane = Pane::start(&world, &["apply", "--auto-approve"]);
    relay.wait_for_an_event(Duration::from_secs(30)).await;
    pane.ctrl_c();
    tokio::task::block_in_place(|| pane.when_shown("Ctrl-C again stops at once."));
    pane.ctrl_c();
    let screen = tokio::task::block_in_place(|| pane.when_done());
    assert!(screen.contains("__DONE__ 130"), "{screen}");
    assert!(
        screen.contains(
            "error: stopped at once by a second SIGINT: the actions under way were left unfinished; what was done is journaled, and the same command finishes the rest"
        ),
        "{screen}"
    );
    assert!(!screen.contains("Apply stopped:"), "{screen}");
    assert_eq!(relay.event_ids().len(), 1, "nothing sent after Ctrl-C");
    let bars: Vec<&str> = screen.lines().filter(|line| has_bar(line)).collect();
    assert!(bars.is_empty(), "a bar was left: {bars:?}\n{screen}");
}
