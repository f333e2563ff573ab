//! config.toml: what the user wrote, checked, then resolved into values the
//! rest of the code trusts.
//!
//! Two stages, as in ripgrep: [`RawConfig`] mirrors the file (unknown keys are
//! an error that names them), and [`Config`] is the resolved form (paths made
//! absolute against the config file's folder, URLs checked, timeouts as
//! durations). Nothing here touches the network or the stores; the one file
//! it reads besides the config is `[relay] ca_file`, so that a private CA
//! that cannot be used is refused at start-up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::core::avatar::CommandAvatars;
use crate::core::model::{PlanMode, Policy, ProfileOwner};
use crate::core::rules::parse_relay_url;
use crate::store::discover::{self, AppProfile, AppStore, DiscoverError, Os};

mod raw;

use raw::RawConfig;

/// A config that cannot be used, with what to do about it (one line).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error(
        "cannot read the config file {path}: {source}; pass --config PATH or create config.toml"
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a wrong type.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// `[relay] ca_file` cannot be used.
    #[error("{path}: [relay] ca_file {file} {problem}; point ca_file at a PEM file holding your relay's CA certificate (-----BEGIN CERTIFICATE-----), or remove it")]
    CaFile {
        /// The config file.
        path: PathBuf,
        /// The CA file (absolute).
        file: PathBuf,
        /// What is wrong with it.
        problem: crate::net::tls::CaFileError,
    },
    /// A value that parses but cannot be used.
    #[error("{path}: {message}")]
    Value {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// No `[store] agents`, and the app's data folder cannot be worked out.
    #[error(transparent)]
    Discover(#[from] DiscoverError),
}

/// What each scheduled tick does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleMode {
    /// Write plans only; touch neither the store nor any relay.
    #[default]
    Plan,
    /// Plan and apply, as `apply --auto-approve`.
    Apply,
}

/// The schedule, resolved.
#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// The cron expression (checked), when configured.
    pub cron: Option<String>,
    /// What ticks do.
    pub mode: ScheduleMode,
    /// The timezone (checked).
    pub timezone: chrono_tz::Tz,
    /// Random delay bound per tick.
    pub jitter: Duration,
    /// Plans kept.
    pub keep_plans: usize,
    /// The metrics file, when configured.
    pub metrics_file: Option<PathBuf>,
    /// Shutdown grace.
    pub shutdown_grace: Duration,
}

/// Parses a cron expression the way the scheduler does (6 fields, seconds
/// first), to report a bad one at start-up with the parser's reason.
pub fn check_cron(expression: &str) -> Result<(), String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expression)
        .map(|_| ())
        .map_err(|err| err.to_string())
}

/// Safety settings, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct SafetySettings {
    /// See [`RawSafety::max_republish_fraction`].
    pub max_republish_fraction: f64,
    /// See [`RawSafety::min_agents`].
    pub min_agents: usize,
}

/// Relay settings, resolved.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Query (EOSE) timeout.
    pub query_timeout: Duration,
    /// Publish (OK) timeout.
    pub publish_timeout: Duration,
    /// Relays read at once.
    pub max_concurrent_relays: usize,
    /// Connections one relay's agents are read over.
    pub read_connections: usize,
    /// Events awaiting OK at once, per relay.
    pub max_publish_in_flight: usize,
    /// Connections signed in as one agent each, open at once per relay.
    pub max_author_sessions: usize,
    /// The NIP-42 service key file, when configured.
    pub auth_key_file: Option<PathBuf>,
    /// Authors per REQ filter.
    pub authors_per_filter: usize,
    /// The private CA file, when configured.
    pub ca_file: Option<PathBuf>,
    /// Whom `wss://` relays are trusted by: web roots, the OS store and the
    /// certificates of `ca_file`.
    pub tls: crate::net::tls::Tls,
    /// Relay URL rewrites (both sides normalized).
    pub rewrite: BTreeMap<String, String>,
}

/// Where the agent store's path came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOrigin {
    /// `[store] agents` in the config file.
    Config,
    /// Found where the Buzz app keeps it (no `[store] agents`).
    App(AppStore),
}

/// What resolving `[store]` may look at besides the config file: the OS
/// layout, the environment variables and the `--app-profile` flag. Tests
/// pass a fake one; the binary passes the process's.
#[derive(Clone, Copy)]
pub struct Environment<'a> {
    /// The OS layout of data folders.
    pub os: Os,
    /// An environment variable's value.
    pub var: &'a dyn Fn(&str) -> Option<String>,
    /// `--app-profile`, when given (it wins over `[store] app_profile`).
    pub app_profile: Option<AppProfile>,
}

fn process_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Environment<'static> {
    /// This process: its OS, its environment, no `--app-profile`.
    pub fn process() -> Self {
        Environment {
            os: Os::current(),
            var: &process_var,
            app_profile: None,
        }
    }
}

/// The resolved config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file (absolute), or `None` when defaults were used.
    pub source: Option<PathBuf>,
    /// The agent store.
    pub agents: PathBuf,
    /// Where the agent store's path came from.
    pub store_origin: StoreOrigin,
    /// The persona store: `[store] personas`, else `personas.json` beside the
    /// agent store.
    pub personas: PathBuf,
    /// True when `[store] personas` was set (then it must exist); a persona
    /// store looked for beside the agent store may be absent while no record
    /// names a persona.
    pub personas_configured: bool,
    /// The plans folder.
    pub plans_dir: PathBuf,
    /// Relay settings.
    pub relay: RelaySettings,
    /// The planner's policy (mode `Full`; commands switch it).
    pub policy: Policy,
    /// Apply's safety threshold.
    pub safety: SafetySettings,
    /// The maintenance daemon's schedule.
    pub schedule: ScheduleSettings,
    /// Where agent keys that are not in the store are found.
    pub keys: crate::store::keystore::KeySource,
    /// `[buzz] communities`: the community relays every agent is reconciled
    /// on (as written, trimmed, without repeats); empty: each agent's own
    /// `relay_url`.
    pub communities: Vec<String>,
}

impl Config {
    /// The relay an agent's record points at, after the configured rewrite.
    pub fn effective_relay(&self, relay_url: &str) -> String {
        rewrite_relay_url(relay_url, &self.relay.rewrite)
    }
}

/// A URL as used for rewrite matching: trimmed, without trailing slashes.
fn rewrite_key(url: &str) -> &str {
    url.trim().trim_end_matches('/')
}

/// Applies the rewrite table to a relay URL (exact match, ignoring trailing
/// slashes); a URL not in the table is returned normalized.
pub fn rewrite_relay_url(url: &str, rewrite: &BTreeMap<String, String>) -> String {
    let key = rewrite_key(url);
    match rewrite.get(key) {
        Some(target) => target.clone(),
        None => parse_relay_url(url).unwrap_or_else(|_| url.to_string()),
    }
}

/// Reads and resolves the config file at `path`, in this process's
/// environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, &Environment::process())
}

/// Reads and resolves the config file at `path` in `env`.
pub fn load_with(path: &Path, env: &Environment<'_>) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    parse_with(&text, &absolute, &base, env)
}

/// The config with no file at all: every default, relative paths (the plans
/// folder) against `base`, the store found where the app keeps it.
pub fn defaults(base: &Path, env: &Environment<'_>) -> Result<Config, ConfigError> {
    resolve(RawConfig::default(), None, base, env)
}

/// Parses config text; `path` is for messages, `base` resolves relative paths.
pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Config, ConfigError> {
    parse_with(text, path, base, &Environment::process())
}

/// [`parse`] in `env`.
pub fn parse_with(
    text: &str,
    path: &Path,
    base: &Path,
    env: &Environment<'_>,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|err| {
        let (line, column) = err
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((1, 1));
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message: err.message().trim().replace('\n', " "),
        }
    })?;
    resolve(raw, Some(path), base, env)
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |p| p + 1) + 1;
    (line, column)
}

/// An agent named in config by its pubkey: 64 hex digits (any case) or an
/// npub; the hex, lower-case.
fn agent_pubkey(text: &str) -> Option<String> {
    use nostr::nips::nip19::FromBech32;
    let text = text.trim();
    if text.starts_with("npub1") {
        return nostr::PublicKey::from_bech32(text).ok().map(|p| p.to_hex());
    }
    let lower = text.to_ascii_lowercase();
    crate::core::rules::is_pubkey_hex(&lower).then_some(lower)
}

/// Resolves a raw config: checks values, makes paths absolute and, without
/// `[store] agents`, locates the app's store in `env`.
pub fn resolve(
    raw: RawConfig,
    path: Option<&Path>,
    base: &Path,
    env: &Environment<'_>,
) -> Result<Config, ConfigError> {
    let shown = path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("config.toml"));
    let value_error = |message: String| ConfigError::Value {
        path: shown.clone(),
        message,
    };
    for (key, value) in [
        ("connect_timeout_secs", raw.relay.connect_timeout_secs),
        ("query_timeout_secs", raw.relay.query_timeout_secs),
        ("publish_timeout_secs", raw.relay.publish_timeout_secs),
    ] {
        if value == 0 || value > 3600 {
            return Err(value_error(format!(
                "[relay] {key} = {value} is out of range; use a number of seconds from 1 to 3600"
            )));
        }
    }
    // Counts: (setting, value, least, most when bounded).
    for (key, value, least, most) in [
        (
            "[relay] max_author_sessions",
            raw.relay.max_author_sessions,
            1,
            Some(256),
        ),
        (
            "[relay] max_publish_in_flight",
            raw.relay.max_publish_in_flight,
            1,
            None,
        ),
        ("[schedule] keep_plans", raw.schedule.keep_plans, 1, None),
        (
            "[relay] max_concurrent_relays",
            raw.relay.max_concurrent_relays,
            1,
            None,
        ),
        (
            "[relay] read_connections",
            raw.relay.read_connections,
            1,
            Some(16),
        ),
        (
            "[relay] authors_per_filter",
            raw.relay.authors_per_filter,
            1,
            Some(100),
        ),
    ] {
        let problem = match most {
            Some(most) if !(least..=most).contains(&value) => {
                format!("{key} = {value} is out of range; use {least} to {most}")
            }
            None if value < least => format!("{key} must be at least {least}"),
            _ => continue,
        };
        return Err(value_error(problem));
    }
    if !(0.0..=1.0).contains(&raw.safety.max_republish_fraction) {
        return Err(value_error(format!(
            "[safety] max_republish_fraction = {} is out of range; use a fraction from 0 to 1",
            raw.safety.max_republish_fraction
        )));
    }
    if let Some(cron) = &raw.schedule.cron {
        check_cron(cron).map_err(|problem| {
            value_error(format!(
                "[schedule] cron = {cron:?} is not a valid cron expression ({problem}); use 6 fields with seconds first, e.g. \"0 */15 * * * *\""
            ))
        })?;
    }
    let timezone: chrono_tz::Tz = raw.schedule.timezone.parse().map_err(|_| {
        value_error(format!(
            "[schedule] timezone = {:?} is not a known IANA timezone; use a name such as \"UTC\" or \"Europe/Berlin\"",
            raw.schedule.timezone
        ))
    })?;
    let mut rewrite = BTreeMap::new();
    for (from, to) in &raw.relay.rewrite {
        parse_relay_url(from)
            .map_err(|problem| value_error(format!("[relay.rewrite] key {from:?}: {problem}")))?;
        let target = parse_relay_url(to).map_err(|problem| {
            value_error(format!("[relay.rewrite] {from:?} = {to:?}: {problem}"))
        })?;
        rewrite.insert(rewrite_key(from).to_string(), target);
    }
    let owner_of = |key: &str, value: &str| {
        ProfileOwner::parse(value.trim()).ok_or_else(|| {
            value_error(format!(
                "{key} = {value:?} is not an owner; use \"record\" (the record owns name and picture) or \"agent\" (the agent owns its profile)"
            ))
        })
    };
    let owner = match raw.profile.owner.as_deref() {
        Some(value) => owner_of("[profile] owner", value)?,
        None => ProfileOwner::Record,
    };
    let mut owners = BTreeMap::new();
    for (agent, value) in &raw.profile.agents {
        let key = format!("[profile.agents] {agent:?}");
        let pubkey = agent_pubkey(agent).ok_or_else(|| {
            value_error(format!(
                "{key}: not a pubkey; use the agent's 64-hex pubkey or its npub"
            ))
        })?;
        owners.insert(pubkey, owner_of(&key, value)?);
    }
    let mut command_avatars = CommandAvatars::builtin();
    for (command, url) in &raw.avatars {
        let trimmed = url.trim();
        let is_url = trimmed.starts_with("https://") || trimmed.starts_with("http://");
        if !trimmed.is_empty() && !is_url {
            return Err(value_error(format!(
                "[avatars] {command:?} = {url:?} is not an http(s) URL; use a full URL, or \"\" to turn the default off"
            )));
        }
        command_avatars.set(command, trimmed);
    }
    let absolute = |p: &Path| -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let ca_file = raw.relay.ca_file.as_deref().map(absolute);
    let tls = match &ca_file {
        Some(file) => crate::net::tls::Tls::with_private_ca(
            crate::net::tls::read_ca_file(file).map_err(|problem| ConfigError::CaFile {
                path: shown.clone(),
                file: file.clone(),
                problem,
            })?,
        ),
        None => crate::net::tls::Tls::default(),
    };
    let (agents, store_origin) = match raw.store.agents.as_deref() {
        Some(agents) => (absolute(agents), StoreOrigin::Config),
        None => {
            let profile = env
                .app_profile
                .or(raw.store.app_profile)
                .unwrap_or_default();
            let found = discover::app_store(env.os, env.var, profile)?;
            (found.agents.clone(), StoreOrigin::App(found))
        }
    };
    let keyring_service = match raw.buzz.keyring_service.as_deref().map(str::trim) {
        Some("") => {
            return Err(value_error(
                "[buzz] keyring_service is empty; use \"buzz-desktop\" (release) or \"buzz-desktop-dev\" (dev), or leave it out".to_string(),
            ))
        }
        Some(service) => service.to_string(),
        None => {
            let profile = match &store_origin {
                StoreOrigin::App(found) => found.profile,
                StoreOrigin::Config => env
                    .app_profile
                    .or(raw.store.app_profile)
                    .unwrap_or_default(),
            };
            crate::store::keystore::service_of(profile).to_string()
        }
    };
    let keys = crate::store::keystore::KeySource::new(raw.buzz.keyring.then_some(keyring_service));
    let mut communities: Vec<String> = Vec::new();
    for community in &raw.buzz.communities {
        parse_relay_url(community).map_err(|problem| {
            value_error(format!(
                "[buzz] communities: {community:?} is not a community relay ({}); use its ws:// or wss:// URL",
                problem.to_string().trim_start_matches("relay_url ")
            ))
        })?;
        let community = rewrite_key(community).to_string();
        if !communities.contains(&community) {
            communities.push(community);
        }
    }
    let personas = match (&raw.store.personas, &store_origin) {
        (Some(personas), _) => absolute(personas),
        (None, StoreOrigin::App(found)) => found.personas.clone(),
        (None, StoreOrigin::Config) => discover::personas_beside(&agents),
    };
    Ok(Config {
        source: path.map(Path::to_path_buf),
        agents,
        store_origin,
        personas,
        personas_configured: raw.store.personas.is_some(),
        plans_dir: match &raw.plans.dir {
            Some(dir) => absolute(dir),
            // With no per-user folder to be had (no home in the
            // environment), `plans` beside the config (or here).
            None => discover::user_plans_dir(env.os, env.var)
                .unwrap_or_else(|_| absolute(Path::new("plans"))),
        },
        relay: RelaySettings {
            connect_timeout: Duration::from_secs(raw.relay.connect_timeout_secs),
            query_timeout: Duration::from_secs(raw.relay.query_timeout_secs),
            publish_timeout: Duration::from_secs(raw.relay.publish_timeout_secs),
            max_concurrent_relays: raw.relay.max_concurrent_relays,
            read_connections: raw.relay.read_connections,
            max_publish_in_flight: raw.relay.max_publish_in_flight,
            max_author_sessions: raw.relay.max_author_sessions,
            auth_key_file: raw.relay.auth_key_file.as_deref().map(absolute),
            authors_per_filter: raw.relay.authors_per_filter,
            ca_file,
            tls,
            rewrite,
        },
        policy: Policy {
            command_avatars,
            future_tolerance_secs: raw.profile.future_tolerance_secs,
            publish_without_invalid_auth_tag: raw.profile.publish_without_invalid_auth_tag,
            mode: PlanMode::Full,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            owner,
            owners,
        },
        safety: SafetySettings {
            max_republish_fraction: raw.safety.max_republish_fraction,
            min_agents: raw.safety.min_agents,
        },
        schedule: ScheduleSettings {
            cron: raw.schedule.cron.clone(),
            mode: raw.schedule.mode,
            timezone,
            jitter: Duration::from_secs(raw.schedule.jitter_secs),
            keep_plans: raw.schedule.keep_plans,
            metrics_file: raw.schedule.metrics_file.as_deref().map(absolute),
            shutdown_grace: Duration::from_secs(raw.schedule.shutdown_grace_secs),
        },
        keys,
        communities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_home(name: &str) -> Option<String> {
        (name == "HOME").then(|| "/home/u".to_string())
    }

    fn fake_env() -> Environment<'static> {
        Environment {
            os: Os::Xdg,
            var: &fake_home,
            app_profile: None,
        }
    }

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse_with(
            text,
            Path::new("/etc/reprofile/config.toml"),
            Path::new("/etc/reprofile"),
            &fake_env(),
        )
    }

    const APP_STORE: &str = "/home/u/.local/share/xyz.block.buzz.app/agents/managed-agents.json";

    /// The checkout's root config.toml is the documented template of every
    /// setting, all commented out: it changes nothing (issue: a bare
    /// `reprofile` in the checkout edited the example world).
    #[test]
    fn the_root_config_template_changes_nothing() {
        let template = include_str!("../config.toml");
        let mut from_template = parse_str(template).expect("the template parses");
        let mut defaults = parse_str("").unwrap();
        from_template.source = None;
        defaults.source = None;
        assert_eq!(format!("{from_template:?}"), format!("{defaults:?}"));
        // And it names every section a user may set.
        for section in [
            "[store]",
            "[plans]",
            "[relay]",
            "[relay.rewrite]",
            "[avatars]",
            "[profile]",
            "[profile.agents]",
            "[safety]",
            "[schedule]",
            "[buzz]",
        ] {
            assert!(template.contains(section), "{section}");
        }
    }

    #[test]
    fn defaults_resolve_against_the_config_folder() {
        let config = parse_str("").unwrap();
        assert_eq!(config.agents, PathBuf::from(APP_STORE));
        // No [plans] dir: one per-user folder, not the config's.
        assert_eq!(
            config.plans_dir,
            PathBuf::from("/home/u/.local/state/reprofile/plans")
        );
        let set = parse_str("[plans]\ndir = \"plans\"\n").unwrap();
        assert_eq!(set.plans_dir, PathBuf::from("/etc/reprofile/plans"));
        assert_eq!(config.relay.connect_timeout, Duration::from_secs(10));
        assert_eq!(config.relay.query_timeout, Duration::from_secs(15));
        assert_eq!(config.relay.publish_timeout, Duration::from_secs(15));
        assert_eq!(config.policy.future_tolerance_secs, 900);
    }

    #[test]
    fn without_store_agents_the_apps_store_is_used_with_personas_beside_it() {
        let config = parse_str("").unwrap();
        assert_eq!(config.agents, PathBuf::from(APP_STORE));
        assert!(
            matches!(&config.store_origin, StoreOrigin::App(found) if found.profile == AppProfile::Release)
        );
        assert_eq!(
            config.personas,
            PathBuf::from("/home/u/.local/share/xyz.block.buzz.app/agents/personas.json")
        );
        assert!(!config.personas_configured);

        // The config key picks the dev build; the flag wins over it.
        let dev = parse_str("[store]\napp_profile = \"dev\"\n").unwrap();
        assert_eq!(
            dev.agents,
            PathBuf::from("/home/u/.local/share/xyz.block.buzz.app.dev/agents/managed-agents.json")
        );
        let flagged = parse_with(
            "[store]\napp_profile = \"dev\"\n",
            Path::new("/etc/reprofile/config.toml"),
            Path::new("/etc/reprofile"),
            &Environment {
                app_profile: Some(AppProfile::Release),
                ..fake_env()
            },
        )
        .unwrap();
        assert_eq!(flagged.agents, PathBuf::from(APP_STORE));
        assert!(parse_str("[store]\napp_profile = \"beta\"\n")
            .unwrap_err()
            .to_string()
            .contains("beta"));

        // No config file at all: the same, plans in the per-user folder,
        // whatever folder reprofile runs in.
        let none = defaults(Path::new("/work"), &fake_env()).unwrap();
        assert_eq!(none.agents, PathBuf::from(APP_STORE));
        assert_eq!(
            none.plans_dir,
            PathBuf::from("/home/u/.local/state/reprofile/plans")
        );
        assert_eq!(none.source, None);
    }

    #[test]
    fn a_configured_store_gets_personas_beside_it_unless_they_are_set() {
        let config = parse_str("[store]\nagents = \"data/agents.json\"\n").unwrap();
        assert_eq!(
            config.agents,
            PathBuf::from("/etc/reprofile/data/agents.json")
        );
        assert_eq!(config.store_origin, StoreOrigin::Config);
        assert_eq!(
            config.personas,
            PathBuf::from("/etc/reprofile/data/personas.json")
        );
        assert!(!config.personas_configured);
        let set = parse_str("[store]\nagents = \"a.json\"\npersonas = \"/p/x.json\"\n").unwrap();
        assert_eq!(set.personas, PathBuf::from("/p/x.json"));
        assert!(set.personas_configured);
    }

    #[test]
    fn no_home_and_no_store_agents_is_an_error_that_says_what_to_set() {
        let nothing = |_: &str| None;
        let err = parse_with(
            "",
            Path::new("/etc/reprofile/config.toml"),
            Path::new("/etc/reprofile"),
            &Environment {
                os: Os::Xdg,
                var: &nothing,
                app_profile: None,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("HOME is not set"), "{err}");
        assert!(err.contains("set [store] agents"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let err = parse_str("[store]\nagents = \"a.json\"\nagentz = \"b\"\n").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("agentz"), "{message}");
        assert!(message.contains(":3:"), "{message}");
        assert!(!message.contains('\n'));
        let err = parse_str("[relays]\n").unwrap_err();
        assert!(err.to_string().contains("relays"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_with_what_to_do() {
        assert!(parse_str("[relay]\nquery_timeout_secs = -1\n").is_err());
        assert!(parse_str("[relay]\nquery_timeout_secs = 0\n")
            .unwrap_err()
            .to_string()
            .contains("1 to 3600"));
        let err = parse_str("[relay.rewrite]\n\"ws://a:1\" = \"http://b\"\n").unwrap_err();
        assert!(err.to_string().contains("ws:// or wss://"), "{err}");
        assert!(parse_str("[avatars]\nbot = \"ftp://x\"\n").is_err());
        for bad in [0, 17] {
            let err = parse_str(&format!("[relay]\nread_connections = {bad}\n")).unwrap_err();
            assert_eq!(err.to_string().lines().count(), 1, "one line: {err}");
            assert!(
                err.to_string().contains(&format!(
                    "read_connections = {bad} is out of range; use 1 to 16"
                )),
                "{err}"
            );
        }
        let config = parse_str("[relay]\nread_connections = 2\n").unwrap();
        assert_eq!(config.relay.read_connections, 2);
        assert_eq!(parse_str("").unwrap().relay.read_connections, 1);
    }

    #[test]
    fn bad_cron_and_timezone_are_start_up_errors() {
        let err = parse_str("[schedule]\ncron = \"*/5 * * * *\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid cron expression"), "{err}");
        assert!(err.contains("6 fields"), "{err}");
        let err = parse_str("[schedule]\ncron = \"0 0 25 * * *\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cron"), "{err}");
        let err = parse_str("[schedule]\ntimezone = \"Mars/Olympus\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a known IANA timezone"), "{err}");
        let err = parse_str("[schedule]\nmode = \"yolo\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("yolo") || err.contains("unknown variant"),
            "{err}"
        );
        let ok = parse_str("[schedule]\ncron = \"0 */15 * * * *\"\ntimezone = \"Europe/Berlin\"\nmode = \"apply\"\n").unwrap();
        assert_eq!(ok.schedule.mode, ScheduleMode::Apply);
        assert_eq!(ok.schedule.keep_plans, 200);
    }

    #[test]
    fn rewrite_matches_with_or_without_trailing_slash() {
        let config =
            parse_str("[relay.rewrite]\n\"ws://127.0.0.1:7777\" = \"ws://127.0.0.1:4000\"\n")
                .unwrap();
        assert_eq!(
            config.effective_relay("ws://127.0.0.1:7777/"),
            "ws://127.0.0.1:4000"
        );
        assert_eq!(
            config.effective_relay("ws://127.0.0.1:7777"),
            "ws://127.0.0.1:4000"
        );
        assert_eq!(
            config.effective_relay("wss://other.example"),
            "wss://other.example"
        );
    }

    #[test]
    fn ca_file_resolves_against_the_config_folder_and_is_read_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("company-ca.pem"), ca.pem()).unwrap();
        let config_path = dir.path().join("config.toml");
        let config = parse(
            "[relay]\nca_file = \"company-ca.pem\"\n",
            &config_path,
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            config.relay.ca_file,
            Some(dir.path().join("company-ca.pem"))
        );
        assert_eq!(
            config.relay.tls,
            crate::net::tls::Tls::with_private_ca(vec![ca.der().clone()])
        );
        assert_eq!(
            parse_str("").unwrap().relay.tls,
            crate::net::tls::Tls::default()
        );

        for (text, problem) in [
            ("[relay]\nca_file = \"nowhere.pem\"\n", "cannot be read"),
            (
                "[relay]\nca_file = \"config.toml\"\n",
                "holds no PEM certificate",
            ),
        ] {
            std::fs::write(&config_path, text).unwrap();
            let err = parse(text, &config_path, dir.path())
                .unwrap_err()
                .to_string();
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(err.contains(problem), "{err}");
            assert!(err.contains("point ca_file at a PEM file"), "{err}");
            let named = if problem == "cannot be read" {
                "nowhere.pem"
            } else {
                "config.toml"
            };
            assert!(
                err.contains(&dir.path().join(named).display().to_string()),
                "names the file: {err}"
            );
        }
    }

    #[test]
    fn avatars_table_overrides_defaults() {
        let config =
            parse_str("[avatars]\n\"my-own-bot\" = \"https://x/bot.png\"\ngoose = \"\"\n").unwrap();
        assert_eq!(
            config.policy.command_avatars.lookup("My_Own_Bot"),
            Some("https://x/bot.png")
        );
        assert_eq!(config.policy.command_avatars.lookup("goose"), None);
    }
}
