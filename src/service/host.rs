//! The edge of `reprofile schedule install|uninstall|status`: it resolves
//! the per-user service for this machine (the running binary, the config
//! file, the environment's home folders), carries out the [`Step`]s the
//! pure [`super`] module made (write and remove files, run `launchctl` or
//! `systemctl --user`), and gathers what `status` shows (the service
//! manager's answer, the metrics file, the newest plan and its journal).
//!
//! It decides nothing a pure function can: which file, which text and which
//! commands come from [`Target`]; how the last tick went from
//! [`super::status`]. It never runs `schtasks` (Windows commands are
//! printed for the person to run), and `--dry-run` prints the steps
//! instead of doing them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use super::{layout, status, Invocation, Place, ServiceOs, Step, Target, UserService};
use super::{SERVICE_ID, STOP_MARGIN_SECS};
use crate::config::{Config, ScheduleMode};
use crate::store::planfile;

/// The process environment, as [`super::layout`] takes it.
fn process_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The user's id, for launchd's `gui/<uid>` domain.
fn current_uid() -> u32 {
    #[cfg(unix)]
    {
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() }
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// The Windows account (`DOMAIN\user`) from `USERDOMAIN` and `USERNAME`.
fn windows_user() -> anyhow::Result<String> {
    let user = process_var("USERNAME")
        .filter(|u| !u.is_empty())
        .context("USERNAME is not set, so the task's account is unknown; run this in your own Windows session")?;
    Ok(match process_var("USERDOMAIN").filter(|d| !d.is_empty()) {
        Some(domain) => format!("{domain}\\{user}"),
        None => user,
    })
}

/// The per-user service of this machine, running `executable` with `config`.
/// `grace` is the daemon's `[schedule] shutdown_grace_secs`; `strict`:
/// the service file will be written, so the Windows account must be known.
fn target(
    os: ServiceOs,
    executable: Place,
    config: Place,
    grace: std::time::Duration,
    strict: bool,
) -> anyhow::Result<Target> {
    let layout = layout(os, SERVICE_ID, &process_var)?;
    Ok(Target {
        os,
        service: UserService {
            id: SERVICE_ID.to_string(),
            executable,
            config,
            log_file: layout.log_file.as_deref().map(Place::of),
            stop_timeout_secs: grace.as_secs() + STOP_MARGIN_SECS,
            // Only the task's text names the account; uninstall and status
            // get by without it.
            windows_user: if os == ServiceOs::Windows {
                windows_user().or_else(|err| if strict { Err(err) } else { Ok(String::new()) })?
            } else {
                String::new()
            },
        },
        layout,
        uid: current_uid(),
    })
}

/// The config file and cron of a config the service can run, or the one
/// line that says what to add.
fn schedule_of(config: &Config) -> anyhow::Result<(&Path, &str)> {
    let Some(source) = config.source.as_deref() else {
        anyhow::bail!(
            "the service needs a config file with a [schedule] section, and there is none: pass --config PATH (or run this beside config.toml) naming one with [schedule] cron = \"0 */15 * * * *\""
        );
    };
    let Some(cron) = config.schedule.cron.as_deref() else {
        anyhow::bail!(
            "[schedule] cron is not set in {}: add a [schedule] section with cron = \"0 */15 * * * *\" (6 fields, seconds first; and mode = \"apply\" to apply, not only plan), then install again",
            source.display()
        );
    };
    Ok((source, cron))
}

/// The target `schedule install` makes: this binary, the config's path.
fn install_target(config: &Config, os: ServiceOs) -> anyhow::Result<Target> {
    let (source, _) = schedule_of(config)?;
    let executable =
        std::env::current_exe().context("cannot tell where this reprofile binary is")?;
    target(
        os,
        Place::of(&executable),
        Place::of(source),
        config.schedule.shutdown_grace,
        true,
    )
}

fn mode_name(mode: ScheduleMode) -> &'static str {
    match mode {
        ScheduleMode::Plan => "plan",
        ScheduleMode::Apply => "apply",
    }
}

/// `schedule install`: writes the service file and loads it (launchd,
/// systemd), or writes the task file and prints how to register it
/// (Windows); with `dry_run`, prints that instead.
pub fn install(
    config: &Config,
    os: ServiceOs,
    dry_run: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let target = install_target(config, os)?;
    let (source, cron) = schedule_of(config)?;
    let installed = target.layout.service_file.exists();
    let steps = Steps {
        list: &target.install_steps(installed),
        os,
        verb: "install",
    };
    let executable =
        std::env::current_exe().context("cannot tell where this reprofile binary is")?;
    let lingering = std::env::var("USER")
        .ok()
        .is_some_and(|user| Path::new("/var/lib/systemd/linger").join(user).exists());
    for warning in install_warnings(&executable, os, lingering) {
        writeln!(out, "warning: {warning}")?;
    }
    if dry_run {
        return steps.print(out);
    }
    steps.carry_out(out)?;
    let schedule = format!(
        "`reprofile run` on [schedule] cron \"{cron}\" ({}), mode {}, with {}",
        config.schedule.timezone,
        mode_name(config.schedule.mode),
        source.display()
    );
    if os == ServiceOs::Windows {
        writeln!(
            out,
            "Wrote the task; register it with the command above to run {schedule} at each logon."
        )?;
    } else {
        writeln!(
            out,
            "Installed the {} {}: it runs {schedule}.",
            os.kind(),
            target.unit_name()
        )?;
    }
    writeln!(out, "Logs: {}", target.logs())?;
    writeln!(
        out,
        "It runs {}; after moving or upgrading reprofile, run `reprofile schedule install` again. `reprofile schedule status` shows how it is doing.",
        shown(&target.service.executable)
    )?;
    Ok(())
}

/// What a person installing the service should know first: a binary in a
/// cargo build folder is replaced by the next build or `cargo clean`; a
/// systemd user service stops at logout unless lingering is on.
pub fn install_warnings(executable: &Path, os: ServiceOs, lingering: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    let in_build_folder = executable
        .components()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|pair| {
            pair[0].as_os_str() == "target"
                && matches!(pair[1].as_os_str().to_str(), Some("debug" | "release"))
        });
    if in_build_folder {
        warnings.push(format!(
            "the service would run {}, a binary in a cargo build folder, which the next build or `cargo clean` replaces or removes; install reprofile (`cargo install --path .`) and run `reprofile schedule install` from there",
            executable.display()
        ));
    }
    if os == ServiceOs::Linux && !lingering {
        warnings.push(
            "a systemd user service stops when you log out, unless lingering is on for your user: `loginctl enable-linger $USER` keeps it running"
                .to_string(),
        );
    }
    warnings
}

fn shown(place: &Place) -> &str {
    match place {
        Place::Absolute(path) | Place::Home(path) => path,
    }
}

/// `schedule uninstall`: stops and unloads the service and removes its file
/// (on Windows: removes the task file and prints the `schtasks /Delete`
/// command); with `dry_run`, prints that instead. Needs no config.
pub fn uninstall(os: ServiceOs, dry_run: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    // The file's text is not needed to remove it: only its id and place.
    let none = Place::Absolute(String::new());
    let target = target(os, none.clone(), none, std::time::Duration::ZERO, false)?;
    if !target.layout.service_file.exists() {
        writeln!(
            out,
            "Not installed: {} is not there; nothing to do.",
            target.layout.service_file.display()
        )?;
        return Ok(());
    }
    let steps = Steps {
        list: &target.uninstall_steps(),
        os,
        verb: "uninstall",
    };
    if dry_run {
        return steps.print(out);
    }
    steps.carry_out(out)?;
    writeln!(out, "Uninstalled the {} {}.", os.kind(), target.unit_name())?;
    Ok(())
}

/// The steps of one `schedule` verb on one OS, to print or to carry out.
pub struct Steps<'a> {
    /// The steps, in order.
    pub list: &'a [Step],
    /// The OS whose service manager they are for.
    pub os: ServiceOs,
    /// The verb (`install`, `uninstall`), for the messages.
    pub verb: &'static str,
}

impl Steps<'_> {
    /// Prints the steps (`--dry-run`): every file in full, every command.
    pub fn print(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        let Steps { list, os, verb } = *self;
        let windows = os == ServiceOs::Windows;
        writeln!(
            out,
            "Dry run of `reprofile schedule {verb}` ({}): nothing is written and nothing is run.",
            os.kind()
        )?;
        for step in list {
            match step {
                Step::CreateDir(dir) => writeln!(out, "Create the folder {}", dir.display())?,
                Step::Write { path, text } => {
                    writeln!(out, "Write {}:\n", path.display())?;
                    out.write_all(text.as_bytes())?;
                    writeln!(out)?;
                }
                Step::Remove(path) => writeln!(out, "Remove {}", path.display())?,
                Step::Run { command, tolerated } => writeln!(
                    out,
                    "Run: {}{}",
                    command.line(windows),
                    if *tolerated {
                        "  (a failure is fine: the service was not loaded)"
                    } else {
                        ""
                    }
                )?,
                Step::Tell(command) => writeln!(
                    out,
                    "Run yourself (reprofile does not run schtasks): {}",
                    command.line(windows)
                )?,
            }
        }
        Ok(())
    }

    /// Does the steps in order, saying what it did; the first step that fails
    /// (but a tolerated command) stops them with an error that says what to do.
    pub fn carry_out(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        let Steps { list, os, verb } = *self;
        let windows = os == ServiceOs::Windows;
        for step in list {
            match step {
                Step::CreateDir(dir) => {
                    if !dir.is_dir() {
                        std::fs::create_dir_all(dir).with_context(|| {
                            format!("cannot create the folder {}", dir.display())
                        })?;
                        writeln!(out, "Created the folder {}", dir.display())?;
                    }
                }
                Step::Write { path, text } => {
                    write_service_file(path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    writeln!(out, "Wrote {}", path.display())?;
                }
                Step::Remove(path) => match std::fs::remove_file(path) {
                    Ok(()) => writeln!(out, "Removed {}", path.display())?,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => {
                        return Err(err)
                            .with_context(|| format!("cannot remove {}", path.display()))
                    }
                },
                Step::Run { command, tolerated } => {
                    let line = command.line(windows);
                    let output = run(command).with_context(|| {
                        format!(
                            "cannot run `{line}`: `{}` is not on PATH (the {} needs it)",
                            command.program,
                            os.kind()
                        )
                    })?;
                    if output.status.success() {
                        writeln!(out, "Ran: {line}")?;
                    } else if *tolerated {
                        writeln!(
                        out,
                        "Ran: {line} (it failed, which is fine when the service was not loaded: {})",
                        said(&output)
                    )?;
                    } else {
                        anyhow::bail!(
                        "`{line}` failed ({}): {}; fix that and run `reprofile schedule {verb}` again",
                        output.status,
                        said(&output)
                    );
                    }
                }
                Step::Tell(command) => writeln!(
                    out,
                    "Run this yourself (reprofile does not run schtasks): {}",
                    command.line(windows)
                )?,
            }
        }
        Ok(())
    }
}

/// What a failed command said, on one line.
fn said(output: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let text = if text.trim().is_empty() {
        String::from_utf8_lossy(&output.stdout)
    } else {
        text
    };
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        "it said nothing".to_string()
    } else {
        line
    }
}

fn run(command: &Invocation) -> std::io::Result<std::process::Output> {
    Command::new(&command.program)
        .args(&command.args)
        .stdin(Stdio::null())
        .output()
}

/// Writes a service file atomically, readable by all and writable by its
/// owner only (launchd refuses a plist others can write).
fn write_service_file(path: &Path, text: &str) -> std::io::Result<()> {
    planfile::write_atomic(path, text.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// `schedule status`: whether the service is installed and loaded, the
/// schedule, the last tick and the newest plan, and where the logs are.
pub fn status(config: &Config, os: ServiceOs, out: &mut dyn Write) -> anyhow::Result<()> {
    let executable =
        std::env::current_exe().context("cannot tell where this reprofile binary is")?;
    let config_place = config
        .source
        .as_deref()
        .map_or(Place::Absolute(String::new()), Place::of);
    let target = target(
        os,
        Place::of(&executable),
        config_place,
        config.schedule.shutdown_grace,
        false,
    )?;
    let file = &target.layout.service_file;
    writeln!(
        out,
        "service: {} {}, {}",
        os.kind(),
        target.unit_name(),
        file.display()
    )?;
    let installed = match std::fs::read_to_string(file) {
        Err(_) => "no (`reprofile schedule install` installs it)".to_string(),
        Ok(text) if schedule_of(config).is_ok() && text != target.file_text() => {
            "yes, but not as `reprofile schedule install` would write it now (another binary or config, or an older reprofile): run it again to update".to_string()
        }
        Ok(_) => "yes".to_string(),
    };
    writeln!(out, "installed: {installed}")?;
    writeln!(out, "loaded: {}", loaded(&target))?;
    match schedule_of(config) {
        Ok((source, cron)) => writeln!(
            out,
            "schedule: cron \"{cron}\" ({}), mode {}, config {}",
            config.schedule.timezone,
            mode_name(config.schedule.mode),
            source.display()
        )?,
        Err(err) => writeln!(out, "schedule: not set: {err}")?,
    }
    writeln!(out, "last tick: {}", last_tick(config))?;
    match planfile::newest(&config.plans_dir) {
        Ok(path) => writeln!(out, "newest plan: {}", path.display())?,
        Err(_) => writeln!(out, "newest plan: none in {}", config.plans_dir.display())?,
    }
    writeln!(out, "logs: {}", target.logs())?;
    Ok(())
}

/// Whether the service manager has the service loaded, in its own words.
fn loaded(target: &Target) -> String {
    let commands = target.status_commands();
    if commands.is_empty() {
        return format!(
            "cannot tell from here; ask Windows: {}",
            target.query_command().line(true)
        );
    }
    let mut answers = Vec::new();
    for command in &commands {
        let line = command.line(false);
        let output = match run(command) {
            Ok(output) => output,
            Err(err) => return format!("cannot tell: cannot run `{line}`: {err}"),
        };
        let answer = match target.os {
            ServiceOs::MacOs if output.status.success() => {
                let text = String::from_utf8_lossy(&output.stdout);
                let field = |name: &str| {
                    text.lines()
                        .map(str::trim)
                        .find_map(|l| l.strip_prefix(name).map(str::to_string))
                };
                let mut parts = vec!["yes".to_string()];
                parts.extend(field("state = ").map(|s| format!("state {s}")));
                parts.extend(field("pid = ").map(|p| format!("pid {p}")));
                parts.join(", ")
            }
            ServiceOs::MacOs => format!("no ({})", said(&output)),
            _ => {
                // `is-active` / `is-enabled` print the state, also when they
                // exit non-zero (inactive, disabled, not found).
                let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
                match (text.is_empty(), output.stderr.is_empty()) {
                    (false, _) => text,
                    (true, false) => said(&output),
                    (true, true) => format!("no answer ({})", output.status),
                }
            }
        };
        answers.push(answer);
    }
    let asked: Vec<String> = commands.iter().map(|c| c.line(false)).collect();
    format!("{} ({})", answers.join(", "), asked.join("; "))
}

/// The last tick: from the metrics file when configured, else from the
/// newest plan and its journal.
fn last_tick(config: &Config) -> String {
    if let Some(metrics) = &config.schedule.metrics_file {
        return match std::fs::read_to_string(metrics) {
            Ok(text) => match status::from_metrics(&text) {
                Some(tick) => format!("{} (metrics file {})", tick.line(), metrics.display()),
                None => format!(
                    "unknown: {} is not a metrics file reprofile wrote",
                    metrics.display()
                ),
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => format!(
                "none yet: the metrics file {} is not there (a tick writes it)",
                metrics.display()
            ),
            Err(err) => format!("unknown: cannot read {}: {err}", metrics.display()),
        };
    }
    let path: PathBuf = match planfile::newest(&config.plans_dir) {
        Ok(path) => path,
        Err(_) => return format!("none yet: no plan in {}", config.plans_dir.display()),
    };
    match planfile::read(&path) {
        Ok(doc) => {
            let journal = crate::store::journal::read(&crate::store::journal::journal_path(&path))
                .unwrap_or_default();
            let tick = status::from_plan(&doc, &journal, config.schedule.mode);
            format!(
                "{} (the newest plan and its journal; without [schedule] metrics_file a plan made by hand counts too)",
                tick.line()
            )
        }
        Err(err) => format!("unknown: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_warns_of_a_build_folder_binary_and_of_a_user_service_without_lingering() {
        let built = Path::new("/home/u/reprofile/target/release/reprofile");
        let installed = Path::new("/home/u/.cargo/bin/reprofile");
        let warnings = install_warnings(built, ServiceOs::Linux, false);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("cargo build folder"));
        assert!(warnings[1].contains("loginctl enable-linger"));
        assert!(install_warnings(installed, ServiceOs::Linux, true).is_empty());
        assert!(install_warnings(installed, ServiceOs::MacOs, false).is_empty());
        assert_eq!(install_warnings(built, ServiceOs::MacOs, false).len(), 1);
    }
}
