//! Schedules where the app runs: the files and commands that keep the
//! maintenance daemon (`reprofile run`) running, as pure functions.
//!
//! This module owns what a service manager is given: the launchd
//! LaunchAgent (macOS), the systemd user unit (Linux), the Task Scheduler
//! task (Windows), and the system-wide systemd unit, `/etc/cron.d` line and
//! Kubernetes CronJob of docs/operations.md; where the per-user file goes
//! ([`Layout`], from an environment given as a function); and what `schedule
//! install` and `uninstall` do, as a list of [`Step`]s. Everything here is
//! a function of its arguments: no file is read or written, no command run,
//! no clock read, no environment variable looked up. [`host`] carries the
//! steps out and asks the service manager for `schedule status`;
//! [`status`] reads the last tick from the metrics file or the newest plan.
//! [`deploy_files`] are the files shipped under `deploy/`, made by the same
//! functions as what `schedule install` writes.
//!
//! Each format has a file of its own (`launchd`, `systemd`, `windows`,
//! `cron`, `kubernetes`), re-exported here; what they share (the
//! arguments of `run`, quoting, the layout) stays in this module.
//!
//! A face: it may import `core`, `config` and the plan files of `review`;
//! nothing but the CLI imports it.

mod cron;
pub(crate) mod host;
mod kubernetes;
mod launchd;
pub mod status;
mod systemd;
mod windows;

use std::path::{Path, PathBuf};

pub use cron::cron_d;
pub use kubernetes::{kubernetes_cronjob, KubernetesJob};
pub use launchd::launchd_plist;
use systemd::systemd_word;
pub use systemd::{systemd_system_unit, systemd_user_unit};
pub use windows::{windows_task_xml, windows_word};

/// The service's name everywhere: the systemd unit `reprofile.service`, the
/// launchd label `reprofile`, the scheduled task `reprofile`.
pub const SERVICE_ID: &str = "reprofile";

/// What the maintenance job is, in every file's description.
const DESCRIPTION: &str = "reprofile: keep managed agents' Nostr profiles correct";

/// How long a service manager waits after SIGTERM beyond the daemon's own
/// `[schedule] shutdown_grace_secs`, before it kills.
pub const STOP_MARGIN_SECS: u64 = 30;

/// The service manager a per-user service is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceOs {
    /// launchd: a LaunchAgent in `~/Library/LaunchAgents`.
    MacOs,
    /// systemd: a user unit in `~/.config/systemd/user`.
    Linux,
    /// Task Scheduler: a task registered with `schtasks`.
    Windows,
}

impl ServiceOs {
    /// The service manager of the OS this binary runs on (systemd for every
    /// OS but macOS and Windows).
    pub fn current() -> ServiceOs {
        match std::env::consts::OS {
            "macos" => ServiceOs::MacOs,
            "windows" => ServiceOs::Windows,
            _ => ServiceOs::Linux,
        }
    }

    /// `macos`, `linux` or `windows` (the hidden `--os` flag's values).
    pub fn parse(name: &str) -> Option<ServiceOs> {
        match name {
            "macos" => Some(ServiceOs::MacOs),
            "linux" => Some(ServiceOs::Linux),
            "windows" => Some(ServiceOs::Windows),
            _ => None,
        }
    }

    /// What kind of service this is, for people.
    pub fn kind(self) -> &'static str {
        match self {
            ServiceOs::MacOs => "launchd LaunchAgent",
            ServiceOs::Linux => "systemd user service",
            ServiceOs::Windows => "Task Scheduler task",
        }
    }
}

/// A path written into a service file: an absolute path as it is, or a path
/// under the user's home, written in the file's own form of "home"
/// (systemd's `%h`, `~` in a plist, `%USERPROFILE%` for Windows). The home
/// forms are for the files shipped under `deploy/`; `schedule install`
/// writes absolute paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// An absolute path on the target system.
    Absolute(String),
    /// A path relative to the home folder, with `/` between its parts.
    Home(String),
}

impl Place {
    /// An absolute path of this machine.
    pub fn of(path: &Path) -> Place {
        Place::Absolute(path.display().to_string())
    }

    /// The `~/...` form (a placeholder in a plist: launchd expands no `~`).
    fn tilde(&self) -> String {
        match self {
            Place::Absolute(path) => path.clone(),
            Place::Home(rest) => format!("~/{rest}"),
        }
    }

    /// The Windows form: `%USERPROFILE%\...` for a home path.
    fn windows(&self) -> String {
        match self {
            Place::Absolute(path) => path.clone(),
            Place::Home(rest) => format!("%USERPROFILE%\\{}", rest.replace('/', "\\")),
        }
    }

    /// One argument of a systemd `ExecStart=` line: `%` and `$` escaped,
    /// quoted when it holds anything but plain path characters; a home path
    /// as `%h/...`, which systemd expands.
    fn systemd(&self) -> String {
        let (prefix, rest) = match self {
            Place::Absolute(path) => ("", path.as_str()),
            Place::Home(rest) => ("%h/", rest.as_str()),
        };
        systemd_word(prefix, rest)
    }
}

/// What the per-user service runs and where it logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserService {
    /// The launchd label, systemd unit name (without `.service`) and task name.
    pub id: String,
    /// The reprofile binary.
    pub executable: Place,
    /// The config file, with its `[schedule]`.
    pub config: Place,
    /// Where launchd sends stdout and stderr (one file, so lines keep their
    /// order); `None` elsewhere: systemd sends them to journald, and Task
    /// Scheduler keeps none.
    pub log_file: Option<Place>,
    /// How long the service manager waits after SIGTERM before it kills:
    /// the daemon's shutdown grace plus [`STOP_MARGIN_SECS`].
    pub stop_timeout_secs: u64,
    /// The Windows account the task runs as and whose logon starts it
    /// (`DOMAIN\user`); unused elsewhere.
    pub windows_user: String,
}

/// The arguments after the executable: `--config CONFIG [--log-format json]
/// run [--once]`, the same in every file. `config` comes already written in
/// the file's syntax; the other words need quoting in none of them (but
/// YAML's, which quotes every word).
fn run_arguments(config: String, json_logs: bool, once: bool) -> Vec<String> {
    let mut args = vec!["--config".to_string(), config];
    if json_logs {
        args.extend(["--log-format".to_string(), "json".to_string()]);
    }
    args.push("run".to_string());
    if once {
        args.push("--once".to_string());
    }
    args
}

/// Text for XML character data (the files put no text in attributes).
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A word of a POSIX shell command line, quoted when needed.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The system-wide job of the runbook (a systemd system unit, a cron line):
/// a service account runs reprofile with a config under `/etc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemJob {
    /// The reprofile binary (absolute).
    pub executable: String,
    /// The config file (absolute).
    pub config: String,
    /// The account it runs as.
    pub user: String,
    /// How long systemd waits after SIGTERM before it kills.
    pub stop_timeout_secs: u64,
    /// A five-field cron schedule, for cron (the daemon has its own).
    pub every: String,
    /// Where cron appends the output.
    pub log_file: String,
}

/// The per-user service file for `os`.
pub fn service_file(os: ServiceOs, service: &UserService) -> String {
    match os {
        ServiceOs::MacOs => launchd_plist(service),
        ServiceOs::Linux => systemd_user_unit(service),
        ServiceOs::Windows => windows_task_xml(service),
    }
}

/// The per-user service of the files under `deploy/`: reprofile in
/// `~/.local/bin` (`C:\Program Files\reprofile` on Windows), the config in
/// the user's config folder, the default stop timeout.
pub fn deploy_user_service(os: ServiceOs) -> UserService {
    let home = |path: &str| Place::Home(path.to_string());
    let (executable, config) = match os {
        ServiceOs::MacOs => (
            home(".local/bin/reprofile"),
            home("Library/Application Support/reprofile/config.toml"),
        ),
        ServiceOs::Linux => (
            home(".local/bin/reprofile"),
            home(".config/reprofile/config.toml"),
        ),
        ServiceOs::Windows => (
            Place::Absolute("C:\\Program Files\\reprofile\\reprofile.exe".to_string()),
            home("AppData/Roaming/reprofile/config.toml"),
        ),
    };
    UserService {
        id: SERVICE_ID.to_string(),
        executable,
        config,
        log_file: (os == ServiceOs::MacOs).then(|| home("Library/Logs/reprofile/reprofile.log")),
        stop_timeout_secs: 30 + STOP_MARGIN_SECS,
        windows_user: "YOUR-PC\\you".to_string(),
    }
}

/// Every file shipped under `deploy/` (its path there, its text): the
/// runbook's system-wide unit, cron file and Kubernetes CronJob with
/// placeholder paths (`/usr/local/bin/reprofile`, `/etc/reprofile/...`), and
/// the per-user services in their home forms. A test keeps the folder equal
/// to this (`REPROFILE_WRITE_DEPLOY=1` rewrites it).
pub fn deploy_files() -> Vec<(&'static str, String)> {
    let system = SystemJob {
        executable: "/usr/local/bin/reprofile".to_string(),
        config: "/etc/reprofile/config.toml".to_string(),
        user: "agents".to_string(),
        stop_timeout_secs: 30 + STOP_MARGIN_SECS,
        every: "*/15 * * * *".to_string(),
        log_file: "/var/log/reprofile.log".to_string(),
    };
    let kubernetes = KubernetesJob {
        name: "reprofile".to_string(),
        image: "registry.example/reprofile:latest".to_string(),
        every: "*/15 * * * *".to_string(),
        config_dir: "/config".to_string(),
        config_map: "reprofile-config".to_string(),
        claim: "agent-store".to_string(),
    };
    vec![
        ("system/reprofile.service", systemd_system_unit(&system)),
        ("system/cron.d/reprofile", cron_d(&system)),
        ("kubernetes/cronjob.yaml", kubernetes_cronjob(&kubernetes)),
        (
            "user/linux/reprofile.service",
            systemd_user_unit(&deploy_user_service(ServiceOs::Linux)),
        ),
        (
            "user/macos/reprofile.plist",
            launchd_plist(&deploy_user_service(ServiceOs::MacOs)),
        ),
        (
            "user/windows/reprofile.xml",
            windows_task_xml(&deploy_user_service(ServiceOs::Windows)),
        ),
    ]
}

/// Where a per-user service lives on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The service file: the plist, the unit, or the task's XML.
    pub service_file: PathBuf,
    /// The launchd log file (macOS); `None` where the system keeps the logs.
    pub log_file: Option<PathBuf>,
}

/// Why a per-user service's layout cannot be worked out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    /// The variable that says where the home (or app data) folder is.
    #[error("{0} is not set (or not an absolute path), so the per-user service's folder is unknown; set it to your home folder")]
    NoHome(&'static str),
}

/// An environment variable's value when it is an absolute path.
fn absolute_var(var: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<PathBuf> {
    var(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() || p.to_string_lossy().contains(":\\"))
}

/// Where the per-user service file (and the launchd log) goes for `os`,
/// from the environment `var` gives: `$HOME/Library/LaunchAgents/<id>.plist`
/// and `$HOME/Library/Logs/reprofile/reprofile.log` on macOS;
/// `$XDG_CONFIG_HOME/systemd/user/<id>.service` (else
/// `$HOME/.config/systemd/user`) on Linux; `%LOCALAPPDATA%\reprofile\<id>.xml`
/// (else under `%USERPROFILE%\AppData\Local`) on Windows.
pub fn layout(
    os: ServiceOs,
    id: &str,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Layout, LayoutError> {
    let home = || absolute_var(var, "HOME").ok_or(LayoutError::NoHome("HOME"));
    Ok(match os {
        ServiceOs::MacOs => {
            let home = home()?;
            Layout {
                service_file: home
                    .join("Library/LaunchAgents")
                    .join(format!("{id}.plist")),
                log_file: Some(home.join("Library/Logs/reprofile/reprofile.log")),
            }
        }
        ServiceOs::Linux => {
            let config = match absolute_var(var, "XDG_CONFIG_HOME") {
                Some(dir) => dir,
                None => home()?.join(".config"),
            };
            Layout {
                service_file: config.join("systemd/user").join(format!("{id}.service")),
                log_file: None,
            }
        }
        ServiceOs::Windows => {
            let local = match absolute_var(var, "LOCALAPPDATA") {
                Some(dir) => dir,
                None => absolute_var(var, "USERPROFILE")
                    .ok_or(LayoutError::NoHome("LOCALAPPDATA"))?
                    .join("AppData")
                    .join("Local"),
            };
            Layout {
                service_file: local.join("reprofile").join(format!("{id}.xml")),
                log_file: None,
            }
        }
    })
}

/// A command line: the program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The program, looked up on `PATH`.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl Invocation {
    fn new(program: &str, args: &[&str]) -> Invocation {
        Invocation {
            program: program.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// The command line as a person would type it (POSIX shell quoting, or
    /// Windows quoting for `windows`).
    pub fn line(&self, windows: bool) -> String {
        let word = |w: &str| {
            if windows {
                windows_word(w)
            } else {
                shell_word(w)
            }
        };
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|w| word(w))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One thing `schedule install` or `uninstall` does, in order. `--dry-run`
/// prints them; [`host::Steps::carry_out`] does them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create a folder (and its parents) when it is not there.
    CreateDir(PathBuf),
    /// Write a file (atomically, mode 0644), replacing what is there.
    Write {
        /// The file.
        path: PathBuf,
        /// Its text.
        text: String,
    },
    /// Remove a file (nothing when it is not there).
    Remove(PathBuf),
    /// Run a command; a failure stops the steps unless `tolerated`.
    Run {
        /// The command.
        command: Invocation,
        /// A failure is reported and the next step goes on (stopping a
        /// service that is not loaded).
        tolerated: bool,
    },
    /// A command for the person to run (reprofile does not register
    /// Windows tasks itself).
    Tell(Invocation),
}

/// Everything a per-user service needs, resolved for one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The service manager.
    pub os: ServiceOs,
    /// What runs.
    pub service: UserService,
    /// Where its file goes.
    pub layout: Layout,
    /// The user's id, for launchd's `gui/<uid>` domain.
    pub uid: u32,
}

impl Target {
    /// The unit's full name (`reprofile.service`) on Linux, else the id.
    pub fn unit_name(&self) -> String {
        match self.os {
            ServiceOs::Linux => format!("{}.service", self.service.id),
            _ => self.service.id.clone(),
        }
    }

    /// launchd's name of the loaded job: `gui/<uid>/<id>`.
    pub fn launchd_target(&self) -> String {
        format!("gui/{}/{}", self.uid, self.service.id)
    }

    /// The text of the service file.
    pub fn file_text(&self) -> String {
        service_file(self.os, &self.service)
    }

    /// Where the logs are, for people.
    pub fn logs(&self) -> String {
        match self.os {
            ServiceOs::Linux => format!("journalctl --user -u {}", self.unit_name()),
            ServiceOs::MacOs => match &self.layout.log_file {
                Some(path) => path.display().to_string(),
                None => "(no log file)".to_string(),
            },
            ServiceOs::Windows => format!(
                "Task Scheduler keeps the task's history (started, exit code), not its output: {}",
                self.query_command().line(true)
            ),
        }
    }

    /// `schtasks /Query` of the task, for people on Windows.
    pub fn query_command(&self) -> Invocation {
        Invocation::new(
            "schtasks",
            &["/Query", "/TN", &self.service.id, "/V", "/FO", "LIST"],
        )
    }

    /// The steps of `schedule install`. `installed`: the service file is
    /// already there, so the service may be running an older version of it
    /// (launchd unloads it first; systemd restarts it after enabling).
    pub fn install_steps(&self, installed: bool) -> Vec<Step> {
        let file = self.layout.service_file.clone();
        let mut steps = Vec::new();
        if let Some(dir) = file.parent() {
            steps.push(Step::CreateDir(dir.to_path_buf()));
        }
        if let Some(dir) = self.layout.log_file.as_ref().and_then(|l| l.parent()) {
            // launchd opens the log file but creates no folder.
            steps.push(Step::CreateDir(dir.to_path_buf()));
        }
        steps.push(Step::Write {
            path: file.clone(),
            text: self.file_text(),
        });
        let path = file.display().to_string();
        match self.os {
            ServiceOs::MacOs => {
                if installed {
                    steps.push(Step::Run {
                        command: Invocation::new("launchctl", &["bootout", &self.launchd_target()]),
                        tolerated: true,
                    });
                }
                let domain = format!("gui/{}", self.uid);
                steps.push(Step::Run {
                    command: Invocation::new("launchctl", &["bootstrap", &domain, &path]),
                    tolerated: false,
                });
            }
            ServiceOs::Linux => {
                let unit = self.unit_name();
                for args in [
                    &["--user", "daemon-reload"][..],
                    &["--user", "enable", "--now", &unit],
                ] {
                    steps.push(Step::Run {
                        command: Invocation::new("systemctl", args),
                        tolerated: false,
                    });
                }
                if installed {
                    steps.push(Step::Run {
                        command: Invocation::new("systemctl", &["--user", "restart", &unit]),
                        tolerated: false,
                    });
                }
            }
            ServiceOs::Windows => steps.push(Step::Tell(Invocation::new(
                "schtasks",
                &["/Create", "/TN", &self.service.id, "/XML", &path, "/F"],
            ))),
        }
        steps
    }

    /// The steps of `schedule uninstall`: stop and unload the service, then
    /// remove its file.
    pub fn uninstall_steps(&self) -> Vec<Step> {
        let file = self.layout.service_file.clone();
        match self.os {
            ServiceOs::MacOs => vec![
                Step::Run {
                    // Fails when the job is not loaded; the file goes anyway.
                    command: Invocation::new("launchctl", &["bootout", &self.launchd_target()]),
                    tolerated: true,
                },
                Step::Remove(file),
            ],
            ServiceOs::Linux => {
                let unit = self.unit_name();
                vec![
                    Step::Run {
                        command: Invocation::new(
                            "systemctl",
                            &["--user", "disable", "--now", &unit],
                        ),
                        tolerated: false,
                    },
                    Step::Remove(file),
                    Step::Run {
                        command: Invocation::new("systemctl", &["--user", "daemon-reload"]),
                        tolerated: false,
                    },
                ]
            }
            ServiceOs::Windows => vec![
                Step::Tell(Invocation::new(
                    "schtasks",
                    &["/Delete", "/TN", &self.service.id, "/F"],
                )),
                Step::Remove(file),
            ],
        }
    }

    /// The commands that ask the service manager whether the service is
    /// loaded (none on Windows: reprofile cannot tell there).
    pub fn status_commands(&self) -> Vec<Invocation> {
        match self.os {
            ServiceOs::MacOs => vec![Invocation::new(
                "launchctl",
                &["print", &self.launchd_target()],
            )],
            ServiceOs::Linux => {
                let unit = self.unit_name();
                vec![
                    Invocation::new("systemctl", &["--user", "is-active", &unit]),
                    Invocation::new("systemctl", &["--user", "is-enabled", &unit]),
                ]
            }
            ServiceOs::Windows => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(executable: &str, config: &str) -> UserService {
        UserService {
            id: SERVICE_ID.to_string(),
            executable: Place::Absolute(executable.to_string()),
            config: Place::Absolute(config.to_string()),
            log_file: Some(Place::Absolute(
                "/Users/ada/Library/Logs/reprofile/reprofile.log".into(),
            )),
            stop_timeout_secs: 60,
            windows_user: "PC\\ada".into(),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn the_user_unit_quotes_what_systemd_would_split_or_expand() {
        let unit = systemd_user_unit(&service(
            "/opt/re profile/reprofile",
            "/home/ada/100%/$HOME/config.toml",
        ));
        assert!(
            unit.contains(
                "ExecStart=\"/opt/re profile/reprofile\" --config /home/ada/100%%/$$HOME/config.toml run\n"
            ),
            "{unit}"
        );
        let home = systemd_user_unit(&deploy_user_service(ServiceOs::Linux));
        assert!(home.contains(
            "ExecStart=%h/.local/bin/reprofile --config %h/.config/reprofile/config.toml run\n"
        ));
    }

    #[test]
    fn shell_and_windows_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(windows_word("C:\\x\\y.exe"), "C:\\x\\y.exe");
        assert_eq!(
            windows_word("C:\\Program Files\\x"),
            "\"C:\\Program Files\\x\""
        );
        assert_eq!(windows_word("a \"b\""), "\"a \\\"b\\\"\"");
        assert_eq!(windows_word("C:\\a b\\"), "\"C:\\a b\\\\\"");
    }

    #[test]
    fn a_cron_line_escapes_the_percent_sign_cron_reads_as_a_newline() {
        let job = SystemJob {
            executable: "/usr/local/bin/reprofile".into(),
            config: "/etc/re profile/50%.toml".into(),
            user: "agents".into(),
            stop_timeout_secs: 60,
            every: "*/15 * * * *".into(),
            log_file: "/var/log/reprofile.log".into(),
        };
        let text = cron_d(&job);
        assert!(text.contains(
            "*/15 * * * * agents /usr/local/bin/reprofile --config '/etc/re profile/50\\%.toml' run --once >> /var/log/reprofile.log 2>&1\n"
        ), "{text}");
    }

    #[test]
    fn the_layout_follows_each_systems_folders() {
        let mac = layout(
            ServiceOs::MacOs,
            "reprofile",
            &env(&[("HOME", "/Users/ada")]),
        )
        .unwrap();
        assert_eq!(
            mac.service_file,
            PathBuf::from("/Users/ada/Library/LaunchAgents/reprofile.plist")
        );
        assert_eq!(
            mac.log_file,
            Some(PathBuf::from(
                "/Users/ada/Library/Logs/reprofile/reprofile.log"
            ))
        );
        let linux = layout(
            ServiceOs::Linux,
            "reprofile",
            &env(&[("HOME", "/home/ada")]),
        )
        .unwrap();
        assert_eq!(
            linux.service_file,
            PathBuf::from("/home/ada/.config/systemd/user/reprofile.service")
        );
        let xdg = layout(
            ServiceOs::Linux,
            "reprofile",
            &env(&[("HOME", "/home/ada"), ("XDG_CONFIG_HOME", "/cfg")]),
        )
        .unwrap();
        assert_eq!(
            xdg.service_file,
            PathBuf::from("/cfg/systemd/user/reprofile.service")
        );
        let relative = layout(
            ServiceOs::Linux,
            "reprofile",
            &env(&[("HOME", "/home/ada"), ("XDG_CONFIG_HOME", "cfg")]),
        )
        .unwrap();
        assert_eq!(relative, linux, "a relative XDG_CONFIG_HOME is ignored");
        assert_eq!(
            layout(ServiceOs::Linux, "reprofile", &env(&[])),
            Err(LayoutError::NoHome("HOME"))
        );
        assert_eq!(
            layout(ServiceOs::Windows, "reprofile", &env(&[])),
            Err(LayoutError::NoHome("LOCALAPPDATA"))
        );
    }

    fn target(os: ServiceOs) -> Target {
        Target {
            os,
            service: service("/opt/reprofile", "/home/ada/config.toml"),
            layout: Layout {
                service_file: PathBuf::from("/h/reprofile.x"),
                log_file: None,
            },
            uid: 501,
        }
    }

    fn commands(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Run { command, .. } | Step::Tell(command) => Some(command.line(false)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_reinstall_reloads_what_is_running() {
        let linux = target(ServiceOs::Linux);
        assert_eq!(
            commands(&linux.install_steps(false)),
            [
                "systemctl --user daemon-reload",
                "systemctl --user enable --now reprofile.service"
            ]
        );
        assert_eq!(
            commands(&linux.install_steps(true)),
            [
                "systemctl --user daemon-reload",
                "systemctl --user enable --now reprofile.service",
                "systemctl --user restart reprofile.service"
            ]
        );
        let mac = target(ServiceOs::MacOs);
        assert_eq!(
            commands(&mac.install_steps(false)),
            ["launchctl bootstrap gui/501 /h/reprofile.x"]
        );
        assert_eq!(
            commands(&mac.install_steps(true)),
            [
                "launchctl bootout gui/501/reprofile",
                "launchctl bootstrap gui/501 /h/reprofile.x"
            ]
        );
        assert_eq!(
            commands(&target(ServiceOs::Windows).uninstall_steps()),
            ["schtasks /Delete /TN reprofile /F"]
        );
    }

    #[test]
    fn every_file_runs_the_daemon_with_the_config() {
        for (path, text) in deploy_files() {
            assert!(text.contains("--config"), "{path}");
            assert!(text.ends_with('\n'), "{path}");
        }
        let xml = windows_task_xml(&service(
            "C:\\Program Files\\reprofile\\reprofile.exe",
            "C:\\Users\\ada\\my config.toml",
        ));
        assert!(
            xml.contains("<Arguments>--config \"C:\\Users\\ada\\my config.toml\" run</Arguments>")
        );
        // Quoted also without a space: %USERPROFILE% may expand to one.
        let shipped = windows_task_xml(&deploy_user_service(ServiceOs::Windows));
        assert!(shipped.contains(
            "<Arguments>--config \"%USERPROFILE%\\AppData\\Roaming\\reprofile\\config.toml\" run</Arguments>"
        ), "{shipped}");
        assert!(xml.contains("<Command>C:\\Program Files\\reprofile\\reprofile.exe</Command>"));
        assert!(xml.contains("<ExecutionTimeLimit>PT0S</ExecutionTimeLimit>"));
    }
}
