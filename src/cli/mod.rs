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
//! A face: it may import any folder of the crate; nothing imports it but
//! `main`. Beside it, the built-in demo ([`demo`]) and the progress bars on a
//! terminal ([`progress`]).

pub(crate) mod demo;
pub(crate) mod progress;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Config, Environment, StoreOrigin};
use crate::core::model::PlanMode;
use crate::core::plan::{Plan, SkipReason};
use crate::core::rules;
use crate::engine::apply::{self, ApplyOptions};
use crate::engine::orchestrate::{
    apply_plan, make_plan, make_plan_to_apply, now_secs, one_line, TickReport,
};
use crate::engine::snapshot;
use crate::review::planfile::{self, PlanDocument};
use crate::review::render::{self, Style};
use crate::store::discover::AppProfile;

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
        crate::cli::progress::enable_on_terminal();
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
        crate::cli::progress::suspend(|| eprintln!("{line}"));
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
    crate::cli::progress::suspend(|| eprintln!("{object}"));
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
        .with_writer(crate::cli::progress::Stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    let _ = match cli.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The stop handling of a one-shot command that changes things (`apply`,
/// `migrate`, `run --once`), as the daemon's: SIGTERM or SIGINT sets the
/// stop flag, the apply stops between actions, finishes its journal and
/// ends; past `[schedule] shutdown_grace_secs` the command ends anyway.
/// Without it, as a container's PID 1, such a command would ignore SIGTERM
/// (PID 1 gets no default action) and run on until SIGKILL.
struct Stopping {
    stop: crate::engine::orchestrate::Stop,
    signal: std::sync::Mutex<Option<tokio::task::JoinHandle<&'static str>>>,
    grace: std::time::Duration,
}

impl Stopping {
    /// Listens for the signals on `rt`.
    fn listen(rt: &tokio::runtime::Runtime, config: &Config) -> anyhow::Result<Self> {
        let stop = crate::engine::orchestrate::Stop::default();
        let _entered = rt.enter();
        let signal = stop.on_signals()?;
        Ok(Self {
            stop,
            signal: std::sync::Mutex::new(Some(signal)),
            grace: config.schedule.shutdown_grace,
        })
    }

    /// The flag the apply reads between actions.
    fn flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.stop.flag()
    }

    /// Runs `work`; after a signal, waits for it at most the grace, and the
    /// ending names the signal (its exit code).
    async fn within_grace(
        &self,
        work: impl std::future::Future<Output = anyhow::Result<Ending>>,
    ) -> anyhow::Result<Ending> {
        tokio::pin!(work);
        let Some(mut signal) = self.signal.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return work.await;
        };
        tokio::select! {
            result = &mut work => result,
            name = &mut signal => {
                let name = name.unwrap_or("SIGTERM");
                match tokio::time::timeout(self.grace, &mut work).await {
                    Ok(result) => result.map(|ending| Ending {
                        signal: Some(name),
                        ..ending
                    }),
                    Err(_) => anyhow::bail!(
                        "stopped by {name}: not finished within the grace of {} ([schedule] shutdown_grace_secs); what was done is journaled, and the same command finishes the rest",
                        crate::protocol::human_duration(self.grace)
                    ),
                }
            }
        }
    }
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
        } => {
            let config = load_config(&args)?;
            let only = agents
                .iter()
                .map(|a| parse_agent_arg(a))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let planned = runtime()?.block_on(make_plan(&config, &only, out.as_deref()))?;
            tell_store(&config, args.quiet);
            if let Some(html) = &html {
                crate::review::html::save(&planned.doc, html)
                    .with_context(|| format!("cannot write the HTML review {}", html.display()))?;
            }
            let mut stdout = stdout();
            let large = planned.doc.plan.actions.len() > render::LARGE_PLAN_ACTIONS;
            if summary || (large && !full) {
                stdout
                    .write_all(render::render_summary(&planned.doc, stdout_style()).as_bytes())?;
                writeln!(
                    stdout,
                    "The full rendering{} is in {} (`reprofile show` prints it{}).",
                    if summary { "" } else { " of this large plan" },
                    planned.path.with_extension("txt").display(),
                    if summary {
                        ""
                    } else {
                        "; `plan --full` prints it here"
                    },
                )?;
            } else {
                stdout.write_all(render::render(&planned.doc, stdout_style()).as_bytes())?;
            }
            writeln!(stdout, "Saved the plan to {}", planned.path.display())?;
            if let Some(html) = &html {
                writeln!(stdout, "Saved the HTML review to {}", html.display())?;
            }
            stdout.flush()?;
            Ok(Ending {
                changes: detailed_exitcode && !planned.doc.plan.is_empty(),
                unread: Unread::of_plan(&planned.doc.plan, &planned.read_errors),
                ..Ending::default()
            })
        }
        Command::Apply {
            plan,
            auto_approve,
            force,
        } => {
            let config = load_config(&args)?;
            require_approval_channel(auto_approve)?;
            check_lock_free(&config)?;
            let rt = runtime()?;
            let stop = Stopping::listen(&rt, &config)?;
            rt.block_on(stop.within_grace(async {
                let (doc, path, fresh, mut opts) = match plan {
                    Some(path) => (planfile::read(&path)?, path, None, ApplyOptions::default()),
                    None => {
                        let (planned, opts) = make_plan_to_apply(&config).await?;
                        (planned.doc, planned.path, Some(planned.read_errors), opts)
                    }
                };
                opts.stop = Some(stop.flag());
                approve_and_apply(
                    &config,
                    &doc,
                    &path,
                    fresh.as_ref(),
                    Approval {
                        auto_approve,
                        force,
                    },
                    opts,
                )
                .await
            }))
        }
        Command::Migrate {
            dry_run,
            auto_approve,
        } => {
            let mut config = load_config(&args)?;
            if !dry_run {
                require_approval_channel(auto_approve)?;
            }
            config.policy.mode = PlanMode::BackfillOnly;
            if !dry_run {
                check_lock_free(&config)?;
            }
            let rt = runtime()?;
            let stop = Stopping::listen(&rt, &config)?;
            rt.block_on(stop.within_grace(async {
                let (planned, mut opts) = if dry_run {
                    let planned = make_plan(&config, &[], None).await?;
                    (planned, ApplyOptions::default())
                } else {
                    make_plan_to_apply(&config).await?
                };
                if dry_run {
                    let mut stdout = stdout();
                    stdout.write_all(render::render(&planned.doc, stdout_style()).as_bytes())?;
                    writeln!(
                        stdout,
                        "Saved the migration plan to {}",
                        planned.path.display()
                    )?;
                    writeln!(stdout, "Dry run: nothing was changed.")?;
                    return Ok(Ending {
                        unread: Unread::of_plan(&planned.doc.plan, &planned.read_errors),
                        ..Ending::default()
                    });
                }
                opts.stop = Some(stop.flag());
                approve_and_apply(
                    &config,
                    &planned.doc,
                    &planned.path,
                    Some(&planned.read_errors),
                    Approval {
                        auto_approve,
                        force: false,
                    },
                    opts,
                )
                .await
            }))
        }
        Command::Run { once } => {
            let config = load_config(&args)?;
            let rt = runtime()?;
            if once {
                let stop = Stopping::listen(&rt, &config)?;
                let stop_flag = stop.stop.clone();
                rt.block_on(stop.within_grace(async {
                    tick_ending(crate::engine::schedule::run_once(&config, &stop_flag).await)
                }))
            } else {
                rt.block_on(crate::engine::schedule::run_daemon(config))?;
                Ok(Ending::default())
            }
        }
        Command::Schedule { action, os } => {
            use crate::service::{host, ServiceOs};
            let os = os
                .as_deref()
                .and_then(ServiceOs::parse)
                .unwrap_or_else(ServiceOs::current);
            let mut stdout = stdout();
            match action {
                ScheduleAction::Install { dry_run } => {
                    host::install(&load_config(&args)?, os, dry_run, &mut stdout)?
                }
                ScheduleAction::Uninstall { dry_run } => host::uninstall(os, dry_run, &mut stdout)?,
                ScheduleAction::Status => host::status(&load_config(&args)?, os, &mut stdout)?,
            }
            stdout.flush()?;
            Ok(Ending::default())
        }
        Command::Validate => validate(&args),
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
        } => {
            let plan = match plan {
                Some(plan) => plan,
                None => {
                    let newest = planfile::newest(&load_config(&args)?.plans_dir)?;
                    if !args.quiet {
                        say(&format!("plan: {}", newest.display()));
                    }
                    newest
                }
            };
            let doc = planfile::read(&plan)?;
            let format = match (json, html) {
                (true, _) => ShowFormat::Json,
                (_, true) => ShowFormat::Html,
                _ => format.unwrap_or(ShowFormat::Text),
            };
            let mut stdout = stdout();
            match format {
                ShowFormat::Json => stdout.write_all(planfile::to_json(&doc).as_bytes())?,
                ShowFormat::Html => crate::review::html::write(&doc, &mut stdout)?,
                ShowFormat::Markdown => crate::review::markdown::write(&doc, &mut stdout)?,
                ShowFormat::Text if summary => {
                    stdout.write_all(render::render_summary(&doc, stdout_style()).as_bytes())?
                }
                ShowFormat::Text => {
                    stdout.write_all(render::render(&doc, stdout_style()).as_bytes())?
                }
            }
            stdout.flush()?;
            Ok(Ending::default())
        }
    }
}

/// `run --once`: a failed tick is its error; otherwise problems when an
/// action failed, was stale or was left undone, and the unread relays.
fn tick_ending(mut report: TickReport) -> anyhow::Result<Ending> {
    if let Some(error) = report.error.take() {
        return Err(error);
    }
    // The plan beside its journal: `<plan>.journal.jsonl` of `<plan>.json`.
    let errors = report.apply.as_ref().map_or_else(Vec::new, |apply| {
        let journal = apply.journal.to_string_lossy();
        let plan = PathBuf::from(format!(
            "{}.json",
            journal.trim_end_matches(".journal.jsonl")
        ));
        apply_errors(apply, &plan)
    });
    Ok(Ending {
        errors,
        problems: report.apply.as_ref().is_some_and(|a| !a.succeeded()),
        unread: report
            .plan
            .as_ref()
            .map(|d| Unread::of_plan(&d.plan, &report.read_errors))
            .unwrap_or_default(),
        ..Ending::default()
    })
}

/// `validate`: every problem of config and stores, without the network.
fn validate(args: &ConfigArgs) -> anyhow::Result<Ending> {
    use crate::core::validate::{validate_records, Severity};
    use crate::store::agents::{read_agent_store, read_persona_store};
    let mut out = stdout();
    let config = match load_config(args) {
        Ok(config) => config,
        Err(err) => {
            writeln!(out, "error: {}", one_line(&err))?;
            writeln!(
                out,
                "The config has a problem; the stores were not checked."
            )?;
            return Ok(Ending {
                problems: true,
                ..Ending::default()
            });
        }
    };
    match &config.source {
        Some(path) => writeln!(out, "ok: config {}", path.display())?,
        None => writeln!(
            out,
            "ok: no config file ({DEFAULT_CONFIG} not found): built-in defaults"
        )?,
    }
    tell_store(&config, args.quiet);
    writeln!(out, "ok: plans folder {}", config.plans_dir.display())?;
    let mut errors = 0usize;
    let mut warnings = 0usize;
    if let Some(metrics) = &config.schedule.metrics_file {
        let folder = metrics.parent().unwrap_or(Path::new("."));
        // The nearest folder that exists: the one run would create the rest in.
        let existing = folder.ancestors().find(|a| a.is_dir());
        let writable = existing
            .is_some_and(|a| std::fs::metadata(a).is_ok_and(|m| !m.permissions().readonly()));
        if folder.as_os_str().is_empty() || folder.is_dir() {
            writeln!(out, "ok: metrics file {}", metrics.display())?;
        } else if writable {
            warnings += 1;
            writeln!(
                out,
                "warning: [schedule] metrics_file {}: its folder {} does not exist yet; run and run --once create it at start",
                metrics.display(),
                folder.display()
            )?;
        } else {
            errors += 1;
            writeln!(
                out,
                "error: [schedule] metrics_file {}: its folder {} does not exist and cannot be created; create it, or point metrics_file elsewhere",
                metrics.display(),
                folder.display()
            )?;
        }
    }
    let store = crate::engine::read_prep::check_app_store(&config)
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(read_agent_store(&config.agents)?));
    let personas_there = config.personas_configured || config.personas.exists();
    let definitions = store.as_ref().map_or(0, |s| s.definitions.len());
    let personas = match &store {
        Ok(store) => read_persona_store(&config.personas, config.personas_configured, store),
        // No agent store: a persona store is worth a line only when it is
        // set or there (the store's own error says what is wrong).
        Err(_) if !personas_there => Ok(Default::default()),
        Err(_) => crate::store::agents::read_personas(&config.personas),
    };
    let personas = match personas {
        Ok(personas) if !personas_there && definitions > 0 => {
            writeln!(
                out,
                "ok: personas from the agent store's {definitions} definition record{} (no persona store at {}; none is needed)",
                if definitions == 1 { "" } else { "s" },
                config.personas.display()
            )?;
            Some(personas)
        }
        Ok(personas) if !personas_there => {
            writeln!(
                out,
                "ok: no persona store at {} (no record names a persona)",
                config.personas.display()
            )?;
            Some(personas)
        }
        Ok(personas) => {
            writeln!(
                out,
                "ok: persona store {} ({} persona{})",
                config.personas.display(),
                personas.len(),
                if personas.len() == 1 { "" } else { "s" }
            )?;
            Some(personas)
        }
        Err(err) => {
            errors += 1;
            writeln!(out, "error: {err}")?;
            None
        }
    };
    match store {
        Err(err) => {
            errors += 1;
            writeln!(out, "error: {}", one_line(&err))?;
        }
        Ok(store) => {
            writeln!(
                out,
                "ok: agent store {} ({} agent record{}{})",
                store.path.display(),
                store.records.len(),
                if store.records.len() == 1 { "" } else { "s" },
                match store.definitions.len() {
                    0 => String::new(),
                    1 => ", 1 definition".to_string(),
                    n => format!(", {n} definitions"),
                }
            )?;
            let mut records: Vec<_> = store.records.iter().map(|r| r.record.clone()).collect();
            config
                .keys
                .attach(&mut records, crate::core::model::PlanMode::Full);
            writeln!(out, "{}", key_line(&config.keys, &records))?;
            let agent_owned = records
                .iter()
                .filter(|r| {
                    config.policy.owner_of(&r.pubkey) == crate::core::model::ProfileOwner::Agent
                })
                .count();
            writeln!(
                out,
                "ok: profile owners: record {}, agent {agent_owned} ([profile] owner = \"{}\"{})",
                records.len() - agent_owned,
                config.policy.owner.as_str(),
                match config.policy.owners.len() {
                    0 => String::new(),
                    n => format!(", {n} in [profile.agents]"),
                }
            )?;
            if !config.communities.is_empty() {
                writeln!(
                    out,
                    "ok: [buzz] communities: {} (each agent is reconciled on each; records' relay_url is not used)",
                    config.communities.join(", ")
                )?;
            }
            // Each record once: on the first community, when there are any
            // (a record's problems are the same on each).
            let first_community = &config.communities[..config.communities.len().min(1)];
            let records = crate::core::model::on_communities(records, first_community);
            let personas = personas.clone().unwrap_or_default();
            for finding in validate_records(&records, &personas, &config.policy, now_secs()) {
                let label = match finding.severity {
                    Severity::Error => {
                        errors += 1;
                        "error"
                    }
                    Severity::Warning => {
                        warnings += 1;
                        "warning"
                    }
                };
                writeln!(out, "{label}: {}: {}", finding.subject, finding.message)?;
            }
        }
    }
    writeln!(
        out,
        "{} error{}, {} warning{}.",
        errors,
        if errors == 1 { "" } else { "s" },
        warnings,
        if warnings == 1 { "" } else { "s" }
    )?;
    Ok(Ending {
        problems: errors > 0,
        ..Ending::default()
    })
}

/// `validate`'s line on where the agents' keys were found.
fn key_line(
    keys: &crate::store::keystore::KeySource,
    records: &[crate::core::model::AgentRecord],
) -> String {
    use crate::core::keys::KeyringRead;
    let counts = crate::core::keys::count_origins(records);
    let keyring = match (keys.entry_name(), keys.last_read()) {
        (None, _) => " (the keyring is off: [buzz] keyring = false)".to_string(),
        (Some(_), None | Some(KeyringRead::NotRead)) => {
            " (every record keeps its key inline: the keyring was not read)".to_string()
        }
        (Some(entry), Some(KeyringRead::Read { .. })) => format!(" (keyring entry {entry})"),
        (Some(_), Some(KeyringRead::Unreadable { entry, error })) => {
            format!(" (the keyring entry {entry} could not be read: {error})")
        }
    };
    format!(
        "keys: keyring {}, inline {}, missing {}{keyring}",
        counts.keyring, counts.inline, counts.missing
    )
}

/// Refuses up front, before anything is planned or written, when approval
/// would be needed and there is no terminal to ask on.
fn require_approval_channel(auto_approve: bool) -> anyhow::Result<()> {
    if !auto_approve && !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "refusing to apply without --auto-approve: there is no terminal to ask for approval on (a batch job never waits on a prompt)"
        );
    }
    Ok(())
}

/// How an apply is approved (`apply`, `migrate`).
#[derive(Debug, Clone, Copy)]
struct Approval {
    /// Apply without asking.
    auto_approve: bool,
    /// Apply even above the safety threshold.
    force: bool,
}

/// Shows the plan, asks for approval unless `auto_approve`, applies it and
/// prints the report. `fresh` is `Some` (why each unread relay was not read)
/// for a plan this run just made and wrote, `None` for a saved plan, whose
/// incompleteness is repeated as warnings. Problems when an action failed or
/// was stale, or the apply was cancelled.
async fn approve_and_apply(
    config: &Config,
    doc: &PlanDocument,
    path: &Path,
    fresh: Option<&std::collections::BTreeMap<String, String>>,
    approval: Approval,
    opts: ApplyOptions,
) -> anyhow::Result<Ending> {
    let Approval {
        auto_approve,
        force,
    } = approval;
    let mut ending = match fresh {
        Some(read_errors) => Ending {
            unread: Unread::of_plan(&doc.plan, read_errors),
            ..Ending::default()
        },
        None => Ending {
            warnings: Unread::of_plan(&doc.plan, &Default::default())
                .iter()
                .map(Unread::warning_line)
                .collect(),
            ..Ending::default()
        },
    };
    let style = stdout_style();
    let mut stdout = stdout();
    stdout.write_all(render::render(doc, style).as_bytes())?;
    if fresh.is_some() {
        writeln!(stdout, "Saved the plan to {}", path.display())?;
    }
    if doc.plan.is_empty() {
        return Ok(ending);
    }
    apply::check_plan(config, doc, force, opts.planned_records.as_ref())?;
    if !auto_approve {
        require_approval_channel(auto_approve)?;
        write!(
            stdout,
            "\nDo you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
        )?;
        stdout.flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            writeln!(stdout, "\nApply cancelled: nothing was changed.")?;
            ending.problems = true;
            return Ok(ending);
        }
    }
    writeln!(stdout)?;
    let report = apply_plan(config, doc, path, &ApplyOptions { force, ..opts }).await?;
    stdout.write_all(render::render_report(&report, style).as_bytes())?;
    stdout.flush()?;
    ending.problems = !report.succeeded();
    ending.errors.extend(apply_errors(&report, path));
    Ok(ending)
}

/// What an apply that did not succeed says on stderr, once: what failed
/// and how to go on.
fn apply_errors(report: &crate::engine::apply::ApplyReport, plan: &Path) -> Vec<String> {
    use crate::core::apply::Outcome;
    let mut errors = Vec::new();
    let (failed, stale) = (report.count(Outcome::Failed), report.count(Outcome::Stale));
    if failed > 0 {
        errors.push(format!(
            "{failed} action{} failed (reasons above and in the journal {}); `reprofile apply {}` tries them again once the cause is fixed",
            if failed == 1 { "" } else { "s" },
            report.journal.display(),
            plan.display()
        ));
    }
    if stale > 0 {
        errors.push(format!(
            "{stale} action{} stale: the store or a relay changed since the plan was made; make a new plan (`reprofile plan`) and review it",
            if stale == 1 { " is" } else { "s are" }
        ));
    }
    if report.not_begun > 0 {
        errors.push(format!(
            "stopped with {} action{} not begun; `reprofile apply {}` finishes them (what was done reports already_applied)",
            report.not_begun,
            if report.not_begun == 1 { "" } else { "s" },
            plan.display()
        ));
    }
    errors
}

/// Accepts a pubkey as 64 hex digits or as an npub.
fn parse_agent_arg(text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    if rules::is_pubkey_hex(text) {
        return Ok(text.to_string());
    }
    nostr::PublicKey::parse(text)
        .map(|pk| pk.to_hex())
        .map_err(|_| {
            anyhow::anyhow!(
                "--agent {text:?} is not a pubkey; give 64 lower-case hex digits or an npub"
            )
        })
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
