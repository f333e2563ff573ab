//! `reprofile schedule install|uninstall|status`, and the files under
//! `deploy/`.
//!
//! The service managers are never really called: the binary runs under a
//! fake `$HOME` with `PATH` holding only recording stubs of `systemctl` and
//! `launchctl` (shell scripts that append their arguments to a file), so
//! the tests see the exact calls in order. The files are checked as the
//! systems would read them: the LaunchAgent with a plist parser, the
//! systemd units with `systemd-analyze verify` (which works offline, on a
//! unit file, without systemd running), `deploy/` against what the code
//! generates (`REPROFILE_WRITE_DEPLOY=1` rewrites it) and docs/operations.md's
//! runbook against `deploy/`.

use std::path::{Path, PathBuf};
use std::process::Output;

use reprofile::service::{self, Place, ServiceOs, SystemJob, UserService};

use crate::world::{run_binary_with_env, stderr, stdout};

const BINARY: &str = env!("CARGO_BIN_EXE_reprofile");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fake home with a config that sets `[schedule]` (plus `extra`), and a
/// folder of stubs that is the whole `PATH`.
struct Home {
    dir: tempfile::TempDir,
}

const SCHEDULE: &str = "[schedule]\ncron = \"0 */15 * * * *\"\nmode = \"apply\"\n";

/// A stub that records `$*` in `calls.log` beside it, answers `is-active`
/// and `is-enabled` as a running, enabled unit would, and exits `code`.
fn stub(name: &str, code: i32) -> String {
    format!(
        "#!/bin/sh\nprintf '%s\\n' \"{name} $*\" >> \"${{0%/*}}/calls.log\"\n\
         case \"$2\" in is-active) echo active ;; is-enabled) echo enabled ;; esac\n\
         [ \"$1\" = print ] && printf 'gui/0/reprofile = {{\\n\\tstate = running\\n\\tpid = 4242\\n}}\\n'\n\
         exit {code}\n"
    )
}

impl Home {
    fn new(config: &str) -> Home {
        let home = Home {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(home.config(), config).unwrap();
        std::fs::create_dir_all(home.bin()).unwrap();
        home.stubs(0);
        home
    }

    fn stubs(&self, code: i32) {
        use std::os::unix::fs::PermissionsExt;
        for name in ["systemctl", "launchctl"] {
            let path = self.bin().join(name);
            std::fs::write(&path, stub(name, code)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self) -> PathBuf {
        self.path().join("config.toml")
    }

    fn bin(&self) -> PathBuf {
        self.path().join("stubs")
    }

    /// The stubs' calls so far, one line each.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.bin().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `reprofile --config <home>/config.toml schedule ARGS --os OS` with
    /// `HOME` here, `XDG_CONFIG_HOME` unset and only the stubs on `PATH`.
    async fn schedule(&self, os: &str, args: &[&str]) -> Output {
        self.schedule_with(&self.config(), os, args).await
    }

    /// [`Home::schedule`] with another config file.
    async fn schedule_with(&self, config: &Path, os: &str, args: &[&str]) -> Output {
        let mut all = vec![
            "--config".to_string(),
            config.display().to_string(),
            "schedule".to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend(["--os".to_string(), os.to_string()]);
        run_binary_with_env(
            all,
            self.path().to_path_buf(),
            vec![
                ("HOME", Some(self.path().to_path_buf())),
                ("XDG_CONFIG_HOME", None),
                ("PATH", Some(self.bin())),
                ("LOCALAPPDATA", Some(self.path().join("AppData/Local"))),
                ("USERDOMAIN", Some("PC".into())),
                ("USERNAME", Some("ada".into())),
            ],
        )
        .await
    }

    /// `text` with this home and the binary's path as placeholders.
    fn scrub(&self, text: &str) -> String {
        text.replace(BINARY, "[BINARY]")
            .replace(&self.path().display().to_string(), "[HOME]")
            .replace(&format!("gui/{}", uid()), "gui/[UID]")
    }

    /// The per-user service `schedule install` makes here.
    fn user_service(&self, os: ServiceOs) -> UserService {
        UserService {
            id: "reprofile".into(),
            executable: Place::of(Path::new(BINARY)),
            config: Place::of(&self.config()),
            log_file: (os == ServiceOs::MacOs)
                .then(|| Place::of(&self.path().join("Library/Logs/reprofile/reprofile.log"))),
            stop_timeout_secs: 60,
            windows_user: if os == ServiceOs::Windows {
                "PC\\ada".into()
            } else {
                String::new()
            },
        }
    }
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

#[tokio::test]
async fn install_and_uninstall_on_linux_write_the_user_unit_and_call_systemctl_in_order() {
    let home = Home::new(SCHEDULE);
    let unit = home.path().join(".config/systemd/user/reprofile.service");

    let output = home.schedule("linux", &["install"]).await;
    assert_ok(&output);
    let text = std::fs::read_to_string(&unit).unwrap();
    assert_eq!(
        text,
        service::systemd_user_unit(&home.user_service(ServiceOs::Linux))
    );
    assert!(
        text.contains(&format!(
            "\nExecStart={BINARY} --config {} run\n",
            home.config().display()
        )),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&unit).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(
        home.calls(),
        [
            "systemctl --user daemon-reload",
            "systemctl --user enable --now reprofile.service"
        ]
    );
    let said = stdout(&output);
    assert!(
        said.contains("Logs: journalctl --user -u reprofile.service"),
        "{said}"
    );

    // Installing again restarts what runs, so it runs the new file.
    assert_ok(&home.schedule("linux", &["install"]).await);
    assert_eq!(
        home.calls()[2..],
        [
            "systemctl --user daemon-reload",
            "systemctl --user enable --now reprofile.service",
            "systemctl --user restart reprofile.service"
        ]
    );

    let output = home.schedule("linux", &["uninstall"]).await;
    assert_ok(&output);
    assert!(!unit.exists(), "uninstall removes the unit file");
    assert_eq!(
        home.calls()[5..],
        [
            "systemctl --user disable --now reprofile.service",
            "systemctl --user daemon-reload"
        ]
    );

    // Nothing installed: nothing to do, nothing called.
    let output = home.schedule("linux", &["uninstall"]).await;
    assert_ok(&output);
    assert!(
        stdout(&output).starts_with("Not installed: "),
        "{}",
        stdout(&output)
    );
    assert_eq!(home.calls().len(), 7);
}

#[tokio::test]
async fn install_on_linux_honours_xdg_config_home_and_a_failing_systemctl_is_one_error_line() {
    let home = Home::new(SCHEDULE);
    home.stubs(1);
    let config_home = home.path().join("xdg");
    let output = run_binary_with_env(
        vec![
            "--config".into(),
            home.config().display().to_string(),
            "schedule".into(),
            "install".into(),
            "--os".into(),
            "linux".into(),
        ],
        home.path().to_path_buf(),
        vec![
            ("HOME", Some(home.path().to_path_buf())),
            ("XDG_CONFIG_HOME", Some(config_home.clone())),
            ("PATH", Some(home.bin())),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(config_home.join("systemd/user/reprofile.service").is_file());
    assert_eq!(
        stderr(&output),
        "error: `systemctl --user daemon-reload` failed (exit status: 1): it said nothing; fix that and run `reprofile schedule install` again\n"
    );
    assert_eq!(
        home.calls(),
        ["systemctl --user daemon-reload"],
        "it stops at the first failure"
    );
}

#[tokio::test]
async fn install_on_macos_writes_a_launchagent_that_parses_and_bootstraps_it() {
    let home = Home::new(SCHEDULE);
    let plist_path = home.path().join("Library/LaunchAgents/reprofile.plist");
    assert_ok(&home.schedule("macos", &["install"]).await);
    assert!(home.path().join("Library/Logs/reprofile").is_dir());
    assert_eq!(
        home.calls(),
        [format!(
            "launchctl bootstrap gui/{} {}",
            uid(),
            plist_path.display()
        )]
    );
    let log = home.path().join("Library/Logs/reprofile/reprofile.log");
    let config = home.config();
    assert_launch_agent(
        &std::fs::read(&plist_path).unwrap(),
        &[BINARY, "--config", config.to_str().unwrap(), "run"],
        log.to_str().unwrap(),
    );

    let status = home.schedule("macos", &["status"]).await;
    assert_ok(&status);
    assert!(
        stdout(&status).contains(&format!(
            "\nloaded: yes, state running, pid 4242 (launchctl print gui/{}/reprofile)\n",
            uid()
        )),
        "{}",
        stdout(&status)
    );
    assert!(
        stdout(&status).contains("\ninstalled: yes\n"),
        "{}",
        stdout(&status)
    );

    // Again: the loaded job is booted out first (bootstrap refuses a
    // loaded one); then uninstall boots it out and removes the file.
    assert_ok(&home.schedule("macos", &["install"]).await);
    assert_eq!(
        home.calls()[2],
        format!("launchctl bootout gui/{}/reprofile", uid())
    );
    assert_ok(&home.schedule("macos", &["uninstall"]).await);
    assert!(!plist_path.exists());
    assert_eq!(
        home.calls()[4..],
        [format!("launchctl bootout gui/{}/reprofile", uid())]
    );
}

/// Parses a LaunchAgent as launchd would and checks what it runs, that it
/// is kept alive, and where it logs.
fn assert_launch_agent(bytes: &[u8], arguments: &[&str], log: &str) {
    let value = plist::Value::from_reader_xml(bytes).expect("the LaunchAgent is a valid plist");
    let dict = value.as_dictionary().expect("a plist dictionary");
    assert_eq!(dict["Label"].as_string(), Some("reprofile"));
    let program: Vec<&str> = dict["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_string().unwrap())
        .collect();
    assert_eq!(program, arguments);
    assert_eq!(dict["KeepAlive"].as_boolean(), Some(true));
    assert_eq!(dict["RunAtLoad"].as_boolean(), Some(true));
    assert_eq!(dict["StandardOutPath"].as_string(), Some(log));
    assert_eq!(dict["StandardErrorPath"].as_string(), Some(log));
    // Longer than the daemon's default shutdown grace (30 s), or launchd
    // kills a tick that is finishing its publishes.
    assert_eq!(dict["ExitTimeOut"].as_unsigned_integer(), Some(60));
}

#[test]
fn the_launchagent_escapes_what_xml_would_misread() {
    let service = UserService {
        id: "reprofile".into(),
        executable: Place::Absolute("/Applications/R & D/<reprofile>".into()),
        config: Place::Absolute("/Users/ada/Library/Application Support/\"x\"/config.toml".into()),
        log_file: Some(Place::Absolute(
            "/Users/ada/Library/Logs/reprofile/reprofile.log".into(),
        )),
        stop_timeout_secs: 60,
        windows_user: String::new(),
    };
    assert_launch_agent(
        service::launchd_plist(&service).as_bytes(),
        &[
            "/Applications/R & D/<reprofile>",
            "--config",
            "/Users/ada/Library/Application Support/\"x\"/config.toml",
            "run",
        ],
        "/Users/ada/Library/Logs/reprofile/reprofile.log",
    );
}

#[tokio::test]
async fn install_dry_run_prints_the_file_and_the_commands_for_each_os_and_changes_nothing() {
    let home = Home::new(SCHEDULE);
    for os in ["linux", "macos", "windows"] {
        let output = home.schedule(os, &["install", "--dry-run"]).await;
        assert_ok(&output);
        insta::assert_snapshot!(
            format!("install_dry_run_{os}"),
            home.scrub(&stdout(&output))
        );
    }
    assert!(home.calls().is_empty(), "a dry run calls nothing");
    let mut left: Vec<String> = std::fs::read_dir(home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["config.toml", "stubs"], "a dry run writes nothing");
}

#[tokio::test]
async fn install_on_windows_writes_the_task_and_prints_the_schtasks_commands() {
    let home = Home::new(SCHEDULE);
    let output = home.schedule("windows", &["install"]).await;
    assert_ok(&output);
    let task = home.path().join("AppData/Local/reprofile/reprofile.xml");
    assert_eq!(
        std::fs::read_to_string(&task).unwrap(),
        service::windows_task_xml(&home.user_service(ServiceOs::Windows))
    );
    assert!(
        stdout(&output).contains(&format!(
            "schtasks /Create /TN reprofile /XML {} /F",
            task.display()
        )),
        "{}",
        stdout(&output)
    );
    let output = home.schedule("windows", &["uninstall"]).await;
    assert_ok(&output);
    assert!(stdout(&output).contains("schtasks /Delete /TN reprofile /F"));
    assert!(!task.exists());
    assert!(home.calls().is_empty(), "reprofile never runs schtasks");
}

#[tokio::test]
async fn install_without_a_schedule_says_what_to_add_and_does_nothing() {
    let home = Home::new("[plans]\ndir = \"plans\"\n");
    for os in ["linux", "macos"] {
        let output = home.schedule(os, &["install"]).await;
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(
            stderr(&output),
            format!(
                "error: [schedule] cron is not set in {}: add a [schedule] section with cron = \"0 */15 * * * *\" (6 fields, seconds first; and mode = \"apply\" to apply, not only plan), then install again\n",
                home.config().display()
            )
        );
    }
    assert!(home.calls().is_empty());
    assert!(!home.path().join(".config").exists() && !home.path().join("Library").exists());
}

/// Runs `systemd-analyze verify` on a unit file, `--user` for a user unit,
/// and returns its diagnostics (it exits 0 even when it ignored a bad line,
/// so the diagnostics are what tells).
fn systemd_verify(unit: &Path, user: bool, home: &Path) -> (bool, String) {
    let runtime = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new("systemd-analyze");
    if user {
        command.arg("--user");
    }
    let output = command
        .arg("verify")
        .arg(unit)
        .env("HOME", home)
        // A user manager's runtime folder; none runs here.
        .env("XDG_RUNTIME_DIR", runtime.path())
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "systemd-analyze cannot run ({err}): install it with `apt-get install -y systemd` (or .ci/setup)"
            )
        });
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("my config.toml");
    std::fs::write(&config, SCHEDULE).unwrap();

    // The user unit `schedule install` writes (absolute paths, one with a
    // space), and the system unit, with this binary as the program.
    let user = UserService {
        id: "reprofile".into(),
        executable: Place::of(Path::new(BINARY)),
        config: Place::of(&config),
        log_file: None,
        stop_timeout_secs: 60,
        windows_user: String::new(),
    };
    let system = SystemJob {
        executable: BINARY.to_string(),
        config: config.display().to_string(),
        user: "agents".into(),
        stop_timeout_secs: 60,
        every: "*/15 * * * *".into(),
        log_file: "/var/log/reprofile.log".into(),
    };
    for (text, user_unit) in [
        (service::systemd_user_unit(&user), true),
        (service::systemd_system_unit(&system), false),
    ] {
        let unit = dir.path().join("reprofile.service");
        std::fs::write(&unit, &text).unwrap();
        let (ok, said) = systemd_verify(&unit, user_unit, dir.path());
        assert!(ok && said.is_empty(), "{said}\n{text}");
    }

    // A unit systemd would read with a warning fails this check: verify
    // exits 0 then, and only its diagnostics tell.
    let broken = service::systemd_user_unit(&user).replace("RestartSec=30", "RestartSec=soon");
    let unit = dir.path().join("reprofile.service");
    std::fs::write(&unit, broken).unwrap();
    let (_, said) = systemd_verify(&unit, true, dir.path());
    assert!(
        said.contains("RestartSec") || said.contains("sec value"),
        "{said}"
    );

    // The shipped user unit, with `%h` as a home holding ~/.local/bin/reprofile.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".local/bin")).unwrap();
    std::os::unix::fs::symlink(BINARY, home.path().join(".local/bin/reprofile")).unwrap();
    let (ok, said) = systemd_verify(
        &repo().join("deploy/user/linux/reprofile.service"),
        true,
        home.path(),
    );
    assert!(ok && said.is_empty(), "{said}");

    // The shipped system unit names /usr/local/bin/reprofile, which this
    // machine need not have: that is the one thing verify may say.
    let (_, said) = systemd_verify(
        &repo().join("deploy/system/reprofile.service"),
        false,
        home.path(),
    );
    let other: Vec<&str> = said
        .lines()
        .filter(|l| {
            !l.ends_with(
                "Command /usr/local/bin/reprofile is not executable: No such file or directory",
            )
        })
        .collect();
    assert!(other.is_empty(), "{said}");
}

#[test]
fn the_deploy_folder_holds_exactly_what_the_code_generates() {
    let deploy = repo().join("deploy");
    let files = service::deploy_files();
    if std::env::var_os("REPROFILE_WRITE_DEPLOY").is_some() {
        for (path, text) in &files {
            let path = deploy.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }
    for (path, text) in &files {
        let shipped = std::fs::read_to_string(deploy.join(path)).unwrap_or_default();
        assert_eq!(
            &shipped, text,
            "deploy/{path} is not what src/service/mod.rs generates; rewrite the folder with REPROFILE_WRITE_DEPLOY=1 cargo test --test it service"
        );
    }
    let mut shipped = Vec::new();
    collect_files(&deploy, &deploy, &mut shipped);
    let mut expected: Vec<String> = files.iter().map(|(p, _)| p.to_string()).collect();
    shipped.sort();
    expected.sort();
    assert_eq!(
        shipped, expected,
        "deploy/ holds a file the code does not generate"
    );
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

/// The fenced code blocks of a Markdown text with the line before each
/// (skipping blank lines).
fn fenced_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut before = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("```") {
            let mut body = String::new();
            for inner in lines.by_ref() {
                if inner.starts_with("```") {
                    break;
                }
                body.push_str(inner);
                body.push('\n');
            }
            blocks.push((before.clone(), body));
        } else if !line.trim().is_empty() {
            before = line.to_string();
        }
    }
    blocks
}

#[test]
fn the_operations_doc_shows_every_deploy_file_as_it_is() {
    let doc = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    let mut shown = Vec::new();
    for (before, body) in fenced_blocks(&doc) {
        let Some(start) = before.find("](../deploy/") else {
            continue;
        };
        let link = &before[start + 5..];
        let path = &link[..link.find(')').expect("a closed link")];
        let file = std::fs::read_to_string(repo().join(path))
            .unwrap_or_else(|_| panic!("docs/operations.md links {path}, which is not there"));
        assert_eq!(
            body, file,
            "docs/operations.md's block for {path} is not the file"
        );
        shown.push(path.trim_start_matches("deploy/").to_string());
    }
    let mut expected: Vec<String> = service::deploy_files()
        .iter()
        .map(|(p, _)| p.to_string())
        .collect();
    shown.sort();
    expected.sort();
    assert_eq!(
        shown, expected,
        "every file under deploy/ is shown in docs/operations.md, once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_tells_loaded_the_last_tick_and_the_newest_plan() {
    let world = crate::world::World::start().await;
    let metrics = world.dir.path().join("reprofile.prom");
    world.append_config(&format!(
        "[safety]\nmax_republish_fraction = 1.0\n\n[schedule]\ncron = \"0 */15 * * * *\"\nmode = \"apply\"\nmetrics_file = \"{}\"\n",
        metrics.display()
    ));
    // One tick, as the daemon's: incomplete (the fixture's relay on port 9
    // is down), so not a success.
    let tick = world.cli(&["run", "--once"]).await;
    assert_eq!(tick.status.code(), Some(1), "{}", stderr(&tick));

    let home = Home::new("");
    let config = world.config_path.clone();
    let output = home.schedule_with(&config, "linux", &["status"]).await;
    assert_ok(&output);
    let text = stdout(&output);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} line in\n{text}"))
            .to_string()
    };
    assert!(line("installed").starts_with("installed: no"), "{text}");
    assert_eq!(
        line("loaded"),
        "loaded: active, enabled (systemctl --user is-active reprofile.service; systemctl --user is-enabled reprofile.service)"
    );
    assert!(line("schedule").starts_with("schedule: cron \"0 */15 * * * *\" (UTC), mode apply"));
    let last = line("last tick");
    assert!(
        last.contains(", not a success: its plan is incomplete"),
        "{last}"
    );
    assert!(
        last.contains(&format!("(metrics file {})", metrics.display())),
        "{last}"
    );
    let newest = world.plan_files().pop().unwrap();
    assert_eq!(
        line("newest plan"),
        format!("newest plan: {}", newest.display())
    );
    assert_eq!(line("logs"), "logs: journalctl --user -u reprofile.service");
    assert_eq!(
        home.calls(),
        [
            "systemctl --user is-active reprofile.service",
            "systemctl --user is-enabled reprofile.service"
        ]
    );

    // Without a metrics file: the newest plan and its journal tell.
    let text = std::fs::read_to_string(&config).unwrap();
    let without = text.replace(&format!("metrics_file = \"{}\"\n", metrics.display()), "");
    assert_ne!(text, without);
    std::fs::write(&config, without).unwrap();
    let output = home.schedule_with(&config, "linux", &["status"]).await;
    assert_ok(&output);
    let text = stdout(&output);
    let last = text.lines().find(|l| l.starts_with("last tick: ")).unwrap();
    assert!(
        last.contains("not a success: relay ws://127.0.0.1:9 could not be read (relay_unreachable; 1 agent not checked)"),
        "{last}"
    );
    // The fixture's live agents were all applied (E2).
    assert!(
        last.contains("journal: 12 applied, 0 already applied, 0 stale, 0 failed"),
        "the apply's outcomes: {last}"
    );
}
