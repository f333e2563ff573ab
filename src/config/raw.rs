//! The config file as written: the TOML tables and their defaults, before
//! [`super::resolve`] checks them and turns them into a [`super::Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::ScheduleMode;
use crate::store::discover::AppProfile;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[store]`
    #[serde(default)]
    pub store: RawStore,
    /// `[plans]`
    #[serde(default)]
    pub plans: RawPlans,
    /// `[relay]`
    #[serde(default)]
    pub relay: RawRelay,
    /// `[avatars]`: command to default avatar URL, over the built-in table.
    #[serde(default)]
    pub avatars: BTreeMap<String, String>,
    /// `[profile]`
    #[serde(default)]
    pub profile: RawProfile,
    /// `[safety]`
    #[serde(default)]
    pub safety: RawSafety,
    /// `[schedule]`
    #[serde(default)]
    pub schedule: RawSchedule,
    /// `[buzz]`
    #[serde(default)]
    pub buzz: RawBuzz,
}

/// `[buzz]`: Buzz desktop 0.4 and later (agent keys in the OS keyring).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuzz {
    /// Read agent keys from the OS keyring entry the app keeps them in,
    /// when some record has no key inline (default true).
    #[serde(default = "default_true")]
    pub keyring: bool,
    /// The keyring service: `buzz-desktop` (release builds) or
    /// `buzz-desktop-dev` (dev builds); by default the one of the app
    /// profile (`[store] app_profile`, `--app-profile`).
    pub keyring_service: Option<String>,
    /// The community relays the user's agents run on: each agent is
    /// reconciled on each of them, and its record's `relay_url` is not used.
    #[serde(default)]
    pub communities: Vec<String>,
}

impl Default for RawBuzz {
    fn default() -> Self {
        Self {
            keyring: true,
            keyring_service: None,
            communities: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// `[schedule]`: the maintenance daemon (`reprofile run`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// Cron expression with seconds (6 fields), e.g. `"0 */15 * * * *"`.
    pub cron: Option<String>,
    /// `plan` (dry run) or `apply`.
    #[serde(default)]
    pub mode: ScheduleMode,
    /// IANA timezone of the cron expression.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// A random delay of up to this many seconds before each tick.
    #[serde(default)]
    pub jitter_secs: u64,
    /// Keep the newest this many plans (with their renderings and journals).
    #[serde(default = "default_keep_plans")]
    pub keep_plans: usize,
    /// A Prometheus text file written after each tick (node_exporter's
    /// textfile collector reads it).
    pub metrics_file: Option<PathBuf>,
    /// How long SIGTERM waits for the running tick to finish.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
}

impl Default for RawSchedule {
    fn default() -> Self {
        Self {
            cron: None,
            mode: ScheduleMode::default(),
            timezone: default_timezone(),
            jitter_secs: 0,
            keep_plans: default_keep_plans(),
            metrics_file: None,
            shutdown_grace_secs: default_shutdown_grace(),
        }
    }
}

fn default_timezone() -> String {
    "UTC".to_string()
}

fn default_keep_plans() -> usize {
    200
}

fn default_shutdown_grace() -> u64 {
    30
}

/// `[safety]`: the mass-republish threshold of apply.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSafety {
    /// Refuse (without --force) a plan that republishes more than this
    /// fraction of the store's agents.
    #[serde(default = "default_max_fraction")]
    pub max_republish_fraction: f64,
    /// The threshold is checked only for stores with at least this many agents.
    #[serde(default = "default_min_agents")]
    pub min_agents: usize,
}

impl Default for RawSafety {
    fn default() -> Self {
        Self {
            max_republish_fraction: default_max_fraction(),
            min_agents: default_min_agents(),
        }
    }
}

fn default_max_fraction() -> f64 {
    0.3
}

fn default_min_agents() -> usize {
    10
}

/// `[store]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// The agent store (the app's `managed-agents.json`); when unset, the one
    /// the Buzz app keeps in its data folder.
    pub agents: Option<PathBuf>,
    /// The persona store; when unset, `personas.json` beside the agent store.
    pub personas: Option<PathBuf>,
    /// Which build of the app to find the store of (`release` or `dev`),
    /// when `agents` is unset; `--app-profile` wins over it.
    pub app_profile: Option<AppProfile>,
}

/// `[plans]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlans {
    /// Where plans (and their journals) are written; when unset, one
    /// per-user folder ([`discover::user_plans_dir`]), whatever folder
    /// reprofile runs in.
    pub dir: Option<PathBuf>,
}

/// `[relay]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelay {
    /// Seconds to wait for a relay connection.
    #[serde(default = "default_connect")]
    pub connect_timeout_secs: u64,
    /// Seconds to wait for a query's EOSE.
    #[serde(default = "default_query")]
    pub query_timeout_secs: u64,
    /// Seconds to wait for a publish's OK.
    #[serde(default = "default_publish")]
    pub publish_timeout_secs: u64,
    /// Relays read, and applied to, at once.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_relays: usize,
    /// Connections one relay's agents are read over (1 to 16).
    #[serde(default = "default_read_connections")]
    pub read_connections: usize,
    /// Events awaiting the relay's OK at once, per relay.
    #[serde(default = "default_in_flight")]
    pub max_publish_in_flight: usize,
    /// Connections signed in as one agent each, open at once per relay, on a
    /// relay that demands authentication (1 to 256).
    #[serde(default = "default_author_sessions")]
    pub max_author_sessions: usize,
    /// A file holding a service key (nsec) to answer NIP-42 challenges with,
    /// instead of each agent's own key.
    pub auth_key_file: Option<PathBuf>,
    /// Authors per REQ filter (at most 100).
    #[serde(default = "default_authors_per_filter")]
    pub authors_per_filter: usize,
    /// A PEM file of CA certificates trusted for `wss://` relays, besides
    /// the built-in web roots and the OS store.
    pub ca_file: Option<PathBuf>,
    /// Relay URL to relay URL, applied to reads and writes alike.
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

impl Default for RawRelay {
    fn default() -> Self {
        Self {
            connect_timeout_secs: default_connect(),
            query_timeout_secs: default_query(),
            publish_timeout_secs: default_publish(),
            max_concurrent_relays: default_concurrency(),
            read_connections: default_read_connections(),
            max_publish_in_flight: default_in_flight(),
            max_author_sessions: default_author_sessions(),
            auth_key_file: None,
            authors_per_filter: default_authors_per_filter(),
            ca_file: None,
            rewrite: BTreeMap::new(),
        }
    }
}

fn default_connect() -> u64 {
    10
}

fn default_query() -> u64 {
    15
}

fn default_publish() -> u64 {
    15
}

fn default_concurrency() -> usize {
    16
}

fn default_read_connections() -> usize {
    1
}

fn default_in_flight() -> usize {
    64
}

fn default_author_sessions() -> usize {
    16
}

fn default_authors_per_filter() -> usize {
    100
}

/// `[profile]`: knobs of the rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    /// Rule D3: how far ahead of now a new event may be dated.
    #[serde(default = "default_tolerance")]
    pub future_tolerance_secs: u64,
    /// Rule D4: publish without the record's invalid `auth_tag` instead of skipping.
    #[serde(default)]
    pub publish_without_invalid_auth_tag: bool,
    /// Rule C6: who owns the profiles, `record` (default) or `agent`.
    #[serde(default)]
    pub owner: Option<String>,
    /// `[profile.agents]`: pubkey (hex or npub) to its owner, over `owner`.
    #[serde(default)]
    pub agents: BTreeMap<String, String>,
}

impl Default for RawProfile {
    fn default() -> Self {
        Self {
            future_tolerance_secs: default_tolerance(),
            publish_without_invalid_auth_tag: false,
            owner: None,
            agents: BTreeMap::new(),
        }
    }
}

fn default_tolerance() -> u64 {
    15 * 60
}
