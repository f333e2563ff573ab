//! The command line: parse, run, print, and map the ending to an exit code.
//!
//! Each command is a thin sequence of calls around [`crate::engine::orchestrate`]
//! (snapshot, plan, write, apply): read config, call, print. The rendering
//! goes to stdout and logs (tracing) to stderr, so `reprofile plan >
//! review.txt` works. How a command ended is an [`Ending`] or an error, and
//! one function, [`conclude`], turns either into the exit code and the lines
//! on stderr: `error: ...` (one line that says what is wrong and what to do),
//! one line per relay an incomplete snapshot could not read.
//!
//! This module holds clap's types, [`main`], the dispatch and [`conclude`];
//! each command's body is a module of its own (`plan`, `apply`, `migrate`,
//! `run`, `schedule`, `show`, `validate`), as ripgrep and uv split theirs.
//!
//! A face: it may import any folder of the crate; nothing imports it but
//! `main`. Beside it, the built-in demo ([`demo`]).

mod apply;
pub(crate) mod demo;
mod migrate;
mod plan;
mod run;
mod schedule;
mod show;
mod stop;
mod validate;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Config, Environment, StoreOrigin};
use crate::core::plan::{Plan, SkipReason};
use crate::engine::orchestrate::one_line;
use crate::engine::snapshot;
use crate::review::render::Style;
use crate::store::discover::AppProfile;
use stop::Stopping;

/// Keeps the Nostr kind:0 profiles of managed AI agents correct.
///
/// reprofile snapshots every agent record of the desktop app's agent store and
/// each agent's newest kind:0 on its own relay, decides what is needed
/// (republish a missing or stale profile, backfill `avatar_url` on records
/// without one) and writes a reviewable plan to the plans folder.
#[derive(Debug, Parser)]
#[command(name = "reprofile", version, about, long_about = None)]
pub struct Cli {
    /// The config file; relative paths in it resolve against its folder.
    /// Default: ./config.toml when there is one, else built-in defaults (the
    /// agent store found in the Buzz app's data folder).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Which build of the Buzz app to find the agent store of, when config.toml
    /// sets no [store] agents (wins over [store] app_profile).
    #[arg(long, global = true, value_enum, value_name = "PROFILE")]
    pub app_profile: Option<AppProfileArg>,

    /// More log lines on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A build of the Buzz app (its data lives in a folder of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AppProfileArg {
    /// The released app (xyz.block.buzz.app).
    Release,
    /// The dev build (xyz.block.buzz.app.dev).
    Dev,
}

impl From<AppProfileArg> for AppProfile {
    fn from(arg: AppProfileArg) -> Self {
        match arg {
            AppProfileArg::Release => AppProfile::Release,
            AppProfileArg::Dev => AppProfile::Dev,
        }
    }
}

/// What `show` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    /// The rendering, as `plan` prints it.
    Text,
    /// The plan file's JSON.
    Json,
    /// Markdown: summary, a table of actions, skipped agents, folded diffs.
    Markdown,
    /// One self-contained HTML page.
    Html,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Snapshot the store and the relays, write a plan to the plans folder, print it.
    ///
    /// Nothing is changed: the plan is for review (`show`) and for `apply`.
    /// Agents whose relay cannot be read are listed as skipped, the plan says
    /// `complete: false`, and the command exits 1 after writing it, with one
    /// line on stderr per relay it could not read.
    Plan {
        /// Write the plan JSON here (and its rendering beside it, .txt) instead
        /// of the plans folder.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Exit 0 when the plan is complete and there is nothing to do, 2 when
        /// it is complete and has actions, 1 on an error or when a relay could
        /// not be read.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Plan only this agent (pubkey hex or npub); repeat for more.
        #[arg(long = "agent", value_name = "PUBKEY")]
        agents: Vec<String>,
        /// Print the one-screen summary (and where the full rendering is)
        /// instead of every action.
        #[arg(long, conflicts_with = "full")]
        summary: bool,
        /// Print every action even when the plan has more than 200 (which
        /// otherwise prints the summary and where the full rendering is).
        #[arg(long)]
        full: bool,
        /// Also write the plan as one self-contained HTML page to FILE: the
        /// avatars before and after as images, the diffs, the skipped agents.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Apply a saved plan, or plan and apply in one go.
    ///
    /// Each action is checked first: if the relay's newest profile or the
    /// record changed since planning, the action is reported stale and not
    /// done; if the desired state is already there, already applied. Backfills
    /// are written to the store atomically (with one backup per run), then
    /// profiles are signed with each agent's own key, published and read back.
    /// Every outcome is appended to a journal next to the plan. Without a
    /// PLANFILE, a fresh plan is written to the plans folder first.
    ///
    /// Exit code 0 when every action was applied or already applied, 1 when
    /// any failed or was stale, or the apply was refused; without a PLANFILE
    /// also 1 when a relay could not be read (what could be done is done). A
    /// saved plan that is incomplete is applied, with a warning.
    Apply {
        /// The plan to apply (JSON written by `plan`); without it, plan now.
        #[arg(value_name = "PLANFILE")]
        plan: Option<PathBuf>,
        /// Do not ask for approval (required when there is no terminal).
        #[arg(long)]
        auto_approve: bool,
        /// Apply even when the plan republishes more than [safety]
        /// max_republish_fraction of the agents.
        #[arg(long)]
        force: bool,
    },
    /// Backfill avatar_url where a record has none (null, absent or blank), once; nothing is published.
    ///
    /// Plans the backfill of rule B for every such record (persona avatar,
    /// else the relay's picture, else the runtime command's default; never
    /// the command's when the relay cannot be read), writes the migration
    /// plan to the plans folder, and applies it. Running it twice: the second
    /// run finds nothing to do. Exit code as `apply`'s without a PLANFILE.
    Migrate {
        /// Print the migration plan and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for approval (required when there is no terminal).
        #[arg(long)]
        auto_approve: bool,
    },
    /// The scheduled maintenance job: tick on [schedule] cron until SIGTERM.
    ///
    /// Each tick snapshots, writes its plan to the plans folder and, with
    /// [schedule] mode = "apply", applies it as `apply --auto-approve` would.
    /// Ticks never overlap; a failed or incomplete tick is logged and the next
    /// one tries again; SIGTERM or SIGINT stop the running tick between
    /// actions (events already sent get their answer, within
    /// shutdown_grace_secs) and exit 0. After each tick: a summary log line,
    /// plan retention (keep_plans) and the metrics file (metrics_file), if
    /// configured.
    Run {
        /// One tick now, then exit (for cron, systemd timers and Kubernetes
        /// CronJobs); the exit code is apply's without a PLANFILE (apply mode)
        /// or plan's (plan mode): 1 when a relay could not be read.
        #[arg(long)]
        once: bool,
    },
    /// Run the whole job on the bundled example world, offline.
    ///
    /// Starts an embedded relay on a free loopback port, lays out a temporary
    /// copy of the example world (examples/basic), seeds the relay with a
    /// drifted state, then runs `plan`, `apply` and `plan` again against it.
    /// Nothing inside the checkout is written; the output says where the
    /// copies are. The example world names a relay that is down on purpose:
    /// the demo notes its unread agent and exits 0.
    Demo {
        /// Lay the world out in this folder instead of a new temporary one.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print a saved plan (by default the newest in the plans folder).
    Show {
        /// The plan file (JSON) written by `plan`; without it, the newest plan
        /// in the plans folder.
        #[arg(value_name = "PLANFILE")]
        plan: Option<PathBuf>,
        /// Print the plan's JSON instead of the rendering (--format json).
        #[arg(long, conflicts_with_all = ["summary", "html", "format"])]
        json: bool,
        /// A one-screen overview (counts by reason, source, relay and skip
        /// reason) instead of every action.
        #[arg(long, conflicts_with_all = ["html", "format"])]
        summary: bool,
        /// One self-contained HTML page (--format html): avatars before and
        /// after as images, diffs, skipped agents; no scripts.
        #[arg(long, conflicts_with = "format")]
        html: bool,
        /// The output: text (the rendering), json, markdown (for a ticket or
        /// a pull-request comment) or html.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<ShowFormat>,
    },
    /// Check the config, the agent store and the persona store, offline.
    ///
    /// Lists every problem found (not only the first): records the planner
    /// would skip (bad pubkey, duplicate, empty name, bad relay URL, a key
    /// that does not parse or belongs to another pubkey, an invalid auth tag)
    /// as errors, and what it works around (no stored avatar, missing
    /// personas) as warnings. It says which agent store it checks. Exit code
    /// 1 when there is any error. Nothing is written and no relay is contacted.
    Validate,
    /// Keep `run` running as your own service (launchd, systemd --user, Task Scheduler).
    ///
    /// `install` writes the service file, running this binary with the
    /// config's absolute path, and loads it: a LaunchAgent with KeepAlive on
    /// macOS, a systemd user service on Linux; on Windows it writes the task
    /// and prints the `schtasks` command that registers it. `uninstall`
    /// stops the service and removes its file; `status` says whether it is
    /// loaded, how the last tick went and which plan is the newest. The
    /// config must set [schedule] cron.
    Schedule {
        /// What to do.
        #[command(subcommand)]
        action: ScheduleAction,
        /// The service manager to make the service for (for tests); by
        /// default the one of this OS.
        #[arg(long, global = true, hide = true, value_parser = ["macos", "linux", "windows"])]
        os: Option<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// What `schedule` does.
#[derive(Debug, Subcommand)]
pub enum ScheduleAction {
    /// Write the service file and load the service: it starts now and at each login.
    Install {
        /// Print the files and the commands instead of writing and running them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop the service and remove its file.
    Uninstall {
        /// Print the commands and the file to remove instead.
        #[arg(long)]
        dry_run: bool,
    },
    /// Whether the service is loaded, the last tick's time and outcome, and the newest plan.
    Status,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(1),
            };
        }
    };
    init_logging(&cli);
    if !cli.quiet {
        crate::progress::enable_on_terminal();
    }
    conclude(run(cli))
}

/// How a command that ran to its end came out; [`conclude`] makes it the
/// exit code.
#[derive(Debug, Default)]
pub struct Ending {
    /// Problems already reported on stdout (a failed or stale action, a
    /// cancelled apply, a `validate` error): exit 1.
    pub problems: bool,
    /// `plan --detailed-exitcode` with actions: exit 2 (when complete).
    pub changes: bool,
    /// The relays a snapshot of this run could not read: exit 1, a line each.
    pub unread: Vec<Unread>,
    /// Lines for stderr that change no exit code (`warning: ...`).
    pub warnings: Vec<String>,
    /// What went wrong, each said once on stderr as `error: …` (exit 1).
    pub errors: Vec<String>,
    /// The signal that stopped the run (`SIGINT`, `SIGTERM`): exit 130 or
    /// 143, as a shell reports a process a signal ended.
    pub signal: Option<&'static str>,
}

/// A relay the snapshot could not read, as stderr names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    /// The relay (after URL rewrite).
    pub relay: String,
    /// How many agents it left unchecked.
    pub agents: usize,
    /// `relay_unreachable` or `relay_auth_refused`.
    pub reason: SkipReason,
    /// What the relay edge said, when this run read it.
    pub why: Option<String>,
}

/// What an [`Unread`] for the OS keyring names instead of a relay.
const KEYRING: &str = "the OS keyring";

impl Unread {
    /// The relays `plan` could not read, with why from `read_errors`; never
    /// empty for an incomplete plan.
    pub fn of_plan(
        plan: &Plan,
        read_errors: &std::collections::BTreeMap<String, String>,
    ) -> Vec<Unread> {
        let mut unread: Vec<Unread> = plan
            .unread_relays()
            .into_iter()
            .map(|u| Unread {
                why: read_errors.get(&u.relay).cloned(),
                relay: u.relay,
                agents: u.agents,
                reason: u.reason,
            })
            .collect();
        if let Some((agents, detail)) = plan.unread_keyring() {
            unread.push(Unread {
                relay: KEYRING.to_string(),
                agents,
                reason: SkipReason::KeyUnavailable,
                why: Some(detail.to_string()),
            });
        }
        if unread.is_empty() && !plan.complete {
            // Not reachable through the planner (a relay left unread is
            // always named), but an incomplete plan must never exit 0.
            unread.push(Unread {
                relay: "(not named in the plan)".to_string(),
                agents: 0,
                reason: SkipReason::RelayUnreachable,
                why: None,
            });
        }
        unread
    }

    fn agents_text(&self) -> String {
        if self.agents == 1 {
            "1 agent".to_string()
        } else {
            format!("{} agents", self.agents)
        }
    }

    /// The stderr line of a run whose snapshot could not read the relay.
    pub fn error_line(&self) -> String {
        if self.reason == SkipReason::KeyUnavailable {
            // The backend's error was said once already, when the entry
            // was read: this line says what it cost.
            return format!(
                "error: the plan is incomplete: {} not checked for want of their key ({}, see the warning above)",
                self.agents_text(),
                self.reason,
            );
        }
        format!(
            "error: relay {} could not be read ({}; {} not checked): {}",
            self.relay,
            self.reason,
            self.agents_text(),
            self.why.as_deref().unwrap_or("no reason given")
        )
    }

    /// The stderr line of applying a saved plan that could not read it.
    pub fn warning_line(&self) -> String {
        if self.reason == SkipReason::KeyUnavailable {
            return format!(
                "warning: the plan is incomplete: the OS keyring could not be read when it was made ({}; {} not in the plan)",
                self.reason,
                self.agents_text()
            );
        }
        format!(
            "warning: the plan is incomplete: relay {} could not be read when it was made ({}; {} not in the plan)",
            self.relay,
            self.reason,
            self.agents_text()
        )
    }
}

/// The one place where a command's ending or error becomes the exit code
/// and the lines on stderr: 0 done; 2 `--detailed-exitcode` and a complete
/// plan with actions; 1 an error (one `error:` line), problems reported, or
/// an incomplete snapshot (one `error:` line per unread relay). A closed
/// stdout (`reprofile plan | head`) changes nothing here: commands write
/// through [`Output`], which lets them finish.
pub fn conclude(result: anyhow::Result<Ending>) -> ExitCode {
    match result {
        Ok(ending) => {
            for line in &ending.warnings {
                say(line);
            }
            for unread in &ending.unread {
                say(&unread.error_line());
            }
            for error in &ending.errors {
                say(&format!("error: {error}"));
            }
            if let Some(signal) = ending.signal {
                ExitCode::from(if signal == "SIGINT" { 130 } else { 143 })
            } else if ending.problems || !ending.unread.is_empty() || !ending.errors.is_empty() {
                ExitCode::from(1)
            } else if ending.changes {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(err) => {
            say(&format!("error: {}", one_line(&err)));
            ExitCode::from(1)
        }
    }
}

/// Whether stderr carries JSON (`--log-format json`): every line one object.
static JSON_STDERR: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Says one line on stderr: as it is, or with `--log-format json` as one
/// JSON object shaped as the log lines are (`timestamp`, `level`, `fields`
/// with `message`, `target`), its level from its `error:` or `warning:`
/// prefix, so that a log collector reading JSON gets every line.
pub(crate) fn say(line: &str) {
    if !JSON_STDERR.get().copied().unwrap_or(false) {
        crate::progress::suspend(|| eprintln!("{line}"));
        return;
    }
    let (level, message) = if let Some(rest) = line.strip_prefix("error: ") {
        ("ERROR", rest)
    } else if let Some(rest) = line.strip_prefix("warning: ") {
        ("WARN", rest)
    } else {
        ("INFO", line)
    };
    let object = serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": level,
        "fields": {"message": message},
        "target": "reprofile",
    });
    crate::progress::suspend(|| eprintln!("{object}"));
}

fn init_logging(cli: &Cli) {
    let default = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            // The daemon's summary lines are info; one-shot commands stay quiet.
            0 if matches!(cli.command, Command::Run { .. }) => "info",
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    // At the default level, only reprofile's own lines: other crates'
    // (nostr-sdk's "Connected to", the scheduler's, the demo's embedded
    // relay's resets of its own clients) are there with -v.
    let default = if cli.verbose == 0 {
        format!("off,reprofile={default}")
    } else {
        default.to_owned()
    };
    let _ = JSON_STDERR.set(matches!(cli.log_format, LogFormat::Json));
    let filter = tracing_subscriber::EnvFilter::try_from_env("REPROFILE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::progress::Stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    let _ = match cli.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Refuses at once, before anything is planned or printed, when another
/// run holds the store's apply lock (apply takes it again when it begins:
/// this only spares a second run printing a whole plan to then refuse).
fn check_lock_free(config: &Config) -> anyhow::Result<()> {
    let Ok(target) = crate::store::write::resolve_target(&config.agents) else {
        // No store: the command says so in its own words.
        return Ok(());
    };
    let probe = crate::store::lock::ApplyLock::acquire(
        &crate::store::lock::lock_path(&target),
        "a lock check",
    )?;
    drop(probe);
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Standard output as commands write it: a reader that closed it
/// (`reprofile plan | head`, `apply … | true`) stops the output, never the
/// command. Writes after the close are dropped, so the command finishes and
/// exits by what it did, not by where its reader stopped listening.
pub(crate) struct Output<W> {
    inner: W,
    closed: bool,
}

impl<W: Write> Output<W> {
    /// `inner`, tolerant of being closed.
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            closed: false,
        }
    }

    fn tolerate<T>(&mut self, done: T, result: std::io::Result<T>) -> std::io::Result<T> {
        match result {
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(done)
            }
            other => other,
        }
    }
}

impl<W: Write> Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let result = self.inner.write(buf);
        self.tolerate(buf.len(), result)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let result = self.inner.flush();
        self.tolerate((), result)
    }
}

/// This process's standard output, as [`Output`].
pub(crate) fn stdout() -> Output<std::io::StdoutLock<'static>> {
    Output::new(std::io::stdout().lock())
}

/// Whether stdout gets colour: a terminal, and `NO_COLOR` unset.
pub fn stdout_style() -> Style {
    Style {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// The global flags that choose the config and the store.
struct ConfigArgs {
    config: Option<PathBuf>,
    app_profile: Option<AppProfileArg>,
    quiet: bool,
}

/// The config file used when `--config` is not given.
const DEFAULT_CONFIG: &str = "config.toml";

/// Loads the config: `--config`, else ./config.toml when there is anything by
/// that name, else the defaults (the store found in the app's data folder,
/// plans in ./plans).
fn load_config(args: &ConfigArgs) -> anyhow::Result<Config> {
    let env = Environment {
        app_profile: args.app_profile.map(AppProfile::from),
        ..Environment::process()
    };
    let path = match &args.config {
        Some(path) => path.clone(),
        None if std::fs::symlink_metadata(DEFAULT_CONFIG).is_ok() => PathBuf::from(DEFAULT_CONFIG),
        None => {
            let here = std::path::absolute(".").context("cannot resolve the current folder")?;
            return Ok(config::defaults(&here, &env)?);
        }
    };
    Ok(config::load_with(&path, &env)?)
}

/// Which agent store a command uses and where its path came from, as one line.
pub fn store_line(config: &Config) -> String {
    match &config.store_origin {
        // Only said "found" when it was found.
        StoreOrigin::App(found) if found.agents.exists() => format!(
            "store: {} (found: Buzz app data, {})",
            config.agents.display(),
            found.profile
        ),
        StoreOrigin::App(found) => format!(
            "store: {} (looked for: Buzz app data, {}; not there)",
            config.agents.display(),
            found.profile
        ),
        StoreOrigin::Config => format!(
            "store: {} (from {})",
            config.agents.display(),
            config
                .source
                .as_deref()
                .map_or_else(|| DEFAULT_CONFIG.to_string(), |p| p.display().to_string())
        ),
    }
}

/// Says on stderr which store is used (and warns of a stale Sprout copy),
/// unless `--quiet`.
fn tell_store(config: &Config, quiet: bool) {
    if quiet {
        return;
    }
    say(&store_line(config));
    if let Some(warning) = snapshot::stale_copy_warning(config) {
        say(&format!("warning: {warning}"));
    }
}

fn run(cli: Cli) -> anyhow::Result<Ending> {
    // Global flags a subcommand would silently ignore are refused there.
    if matches!(
        cli.command,
        Command::Demo { .. } | Command::Completions { .. }
    ) {
        let name = if matches!(cli.command, Command::Demo { .. }) {
            "demo (it lays out and uses its own example world)"
        } else {
            "completions (it prints a shell script and reads no config)"
        };
        if cli.config.is_some() {
            anyhow::bail!("--config does not apply to {name}; leave it out");
        }
        if cli.app_profile.is_some() {
            anyhow::bail!("--app-profile does not apply to {name}; leave it out");
        }
    }
    let args = ConfigArgs {
        config: cli.config,
        app_profile: cli.app_profile,
        quiet: cli.quiet,
    };
    match cli.command {
        Command::Plan {
            out,
            detailed_exitcode,
            agents,
            summary,
            full,
            html,
        } => plan::run(&args, out, detailed_exitcode, agents, summary, full, html),
        Command::Apply {
            plan,
            auto_approve,
            force,
        } => apply::run(&args, plan, auto_approve, force),
        Command::Migrate {
            dry_run,
            auto_approve,
        } => migrate::run(&args, dry_run, auto_approve),
        Command::Run { once } => run::run(&args, once),
        Command::Schedule { action, os } => schedule::run(&args, action, os),
        Command::Validate => validate::run(&args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "reprofile", &mut stdout());
            Ok(Ending::default())
        }
        Command::Demo { dir } => {
            runtime()?.block_on(crate::cli::demo::run(dir.as_deref(), stdout_style()))?;
            Ok(Ending::default())
        }
        Command::Show {
            plan,
            json,
            summary,
            html,
            format,
        } => show::run(&args, plan, json, summary, html, format),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::Skip;

    fn incomplete_plan(relay: Option<&str>) -> Plan {
        Plan {
            skipped: vec![Skip {
                agent: "a".repeat(64),
                name: "Ada".into(),
                index: 0,
                reason: SkipReason::RelayUnreachable,
                detail: String::new(),
                relay: relay.map(str::to_string),
            }],
            complete: false,
            ..Plan::default()
        }
    }

    #[test]
    fn conclude_gives_1_for_problems_or_unread_relays_2_for_changes_and_0_otherwise() {
        let unread = Unread::of_plan(&incomplete_plan(Some("ws://x")), &Default::default());
        for (ending, code) in [
            (Ending::default(), ExitCode::SUCCESS),
            (
                Ending {
                    changes: true,
                    ..Ending::default()
                },
                ExitCode::from(2),
            ),
            (
                Ending {
                    changes: true,
                    unread: unread.clone(),
                    ..Ending::default()
                },
                ExitCode::from(1),
            ),
            (
                Ending {
                    problems: true,
                    ..Ending::default()
                },
                ExitCode::from(1),
            ),
            (
                Ending {
                    warnings: vec!["warning: w".into()],
                    ..Ending::default()
                },
                ExitCode::SUCCESS,
            ),
        ] {
            assert_eq!(conclude(Ok(ending)), code);
        }
        assert_eq!(
            conclude(Err(anyhow::anyhow!("bad config"))),
            ExitCode::from(1)
        );
        // A broken pipe that reaches here is not stdout's (commands write
        // through Output): an error like any other.
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(conclude(Err(pipe.into())), ExitCode::from(1));
    }

    #[test]
    fn help_names_the_plan_argument_as_the_readme_does() {
        let mut command = <Cli as clap::CommandFactory>::command();
        for sub in ["apply", "show"] {
            let help = command
                .find_subcommand_mut(sub)
                .expect("the subcommand")
                .render_help()
                .to_string();
            assert!(help.contains("[PLANFILE]"), "{sub}: {help}");
        }
    }

    #[test]
    fn output_drops_writes_once_its_reader_has_gone() {
        struct Gone;
        impl Write for Gone {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
        }
        let mut out = Output::new(Gone);
        assert!(writeln!(out, "a plan").is_ok());
        assert!(out.flush().is_ok());
        assert!(out.closed);
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::StorageFull.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        assert!(
            writeln!(Output::new(Full), "x").is_err(),
            "other errors still fail"
        );
    }

    #[test]
    fn an_incomplete_plan_always_names_at_least_one_unread_relay() {
        let read_errors = [("ws://x".to_string(), "connection refused".to_string())].into();
        let named = Unread::of_plan(&incomplete_plan(Some("ws://x")), &read_errors);
        assert_eq!(
            named[0].error_line(),
            "error: relay ws://x could not be read (relay_unreachable; 1 agent not checked): connection refused"
        );
        assert_eq!(
            named[0].warning_line(),
            "warning: the plan is incomplete: relay ws://x could not be read when it was made (relay_unreachable; 1 agent not in the plan)"
        );
        let unnamed = Unread::of_plan(&incomplete_plan(None), &Default::default());
        assert_eq!(unnamed.len(), 1, "an incomplete plan never exits 0");
        let complete = Plan {
            complete: true,
            ..Plan::default()
        };
        assert!(Unread::of_plan(&complete, &Default::default()).is_empty());
    }
}
