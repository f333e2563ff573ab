//! The real Buzz relay (built from `../shared/vendor/buzz-relay` by
//! `.ci/setup`) for integration tests, with the Postgres and Redis it runs on.
//!
//! - [`BuzzRelay::start`]: a relay in closed mode (membership required, agents
//!   let in by their owner's NIP-OA tag) or open mode, on free loopback ports,
//!   with its own database and its own Redis; stopped and cleaned up on drop.
//! - [`BuzzSocket`]: a raw websocket to it, for tests that check the relay's
//!   exact answers (AUTH challenge, `auth-required:`, `restricted:`).
//! - [`seed_profile`]: publishes a kind:0 as an agent (the relay takes an
//!   event only from the key that authenticated the connection).
//! - [`StoreAgent`], [`generate_agents`], [`buzz_store`]: an agent store in
//!   the app's exact serialization.
//!
//! One Postgres cluster serves every relay of a test process: it is started
//! lazily by the first relay (`initdb` is most of a cold start) and each relay
//! gets a fresh database copied from a template that holds the schema, so
//! tests stay independent and may run concurrently. Redis is per relay: relays
//! sharing one Redis would fan each other's events out to their subscribers.
//!
//! Every process started here is tied to the test process (`PR_SET_PDEATHSIG`
//! from a thread that lives as long as the process), so a test process that
//! dies leaves nothing running; the temp folders it leaves behind are removed
//! by the next test process. A missing binary fails the test (never skips it)
//! and says to run `.ci/setup`.
//!
//! This module must not talk to anything but 127.0.0.1, and must not wait by
//! sleeping: every wait polls a readiness condition against a deadline.
//! It uses nothing from the rest of `support`, so other harnesses may include
//! it by path.

// Helpers for the end-to-end tests; not every test uses every helper.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nostr::nips::nip19::ToBech32;
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, RelayUrl, Tag, Timestamp};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;

/// How long Postgres, Redis or the relay may take to become ready (a debug
/// build of the relay on two busy cores is slow to start).
const START_DEADLINE: Duration = Duration::from_secs(60);

/// How often readiness is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How many times a start is tried again when a port picked as free was
/// taken meanwhile by another process.
const START_ATTEMPTS: usize = 3;

/// How many lines of a log a failure message quotes.
const LOG_TAIL_LINES: usize = 40;

/// How long a [`BuzzSocket`] waits for the relay's next message.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// What to do when something the tests need is missing.
const SETUP_HINT: &str =
    "run `.ci/setup` (it installs PostgreSQL and Redis and builds the Buzz relay)";

/// Prefix of every temp folder made here; see [`remove_stale_dirs`].
const DIR_PREFIX: &str = "reprofile-buzz-";

/// The password of the relay's database role (loopback only, throwaway data).
const DB_PASSWORD: &str = "buzz_dev";

/// How a [`BuzzRelay`] admits connections.
#[derive(Debug, Clone)]
pub enum BuzzMode {
    /// The production setting: only relay members may authenticate, and an
    /// agent is let in when its AUTH event carries a NIP-OA tag signed by a
    /// member (`BUZZ_REQUIRE_RELAY_MEMBERSHIP`, `BUZZ_ALLOW_NIP_OA_AUTH`,
    /// `BUZZ_REQUIRE_AUTH_TOKEN` all on). `owner` is the relay's owner
    /// (`RELAY_OWNER_PUBKEY`), a member from the start.
    Closed {
        /// The relay owner's keys.
        owner: Keys,
    },
    /// The relay's default: every membership setting off; any key that
    /// completes AUTH may read and write its own events.
    Open,
}

/// A running Buzz relay with its own database and Redis, stopped on drop.
pub struct BuzzRelay {
    relay: Child,
    redis: Child,
    port: u16,
    health_port: u16,
    database: String,
    log_path: PathBuf,
    dir: TempDir,
}

impl BuzzRelay {
    /// Starts Postgres (once per test process), a Redis and a relay in `mode`
    /// on free loopback ports, and returns when the relay is ready (its
    /// `/_readiness` answers 200 and its websocket port accepts connections).
    /// Panics, quoting the relay's log, if it exits or is not ready in time;
    /// fails saying to run `.ci/setup` if a binary is missing.
    pub async fn start(mode: BuzzMode) -> BuzzRelay {
        match tokio::task::spawn_blocking(move || Self::start_blocking(mode)).await {
            Ok(relay) => relay,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("starting the Buzz relay was cancelled: {error}"),
        }
    }

    fn start_blocking(mode: BuzzMode) -> BuzzRelay {
        let binary = relay_binary();
        let cluster = cluster();
        let dir = temp_dir("relay");
        let (redis, redis_port) = start_redis(dir.path());
        let database = cluster.create_database();
        let log_path = dir.path().join("buzz-relay.log");
        let start = |(port, health_port, metrics_port): (u16, u16, u16), log: File| {
            let mut command = Command::new(&binary);
            command
                .current_dir(dir.path())
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", dir.path())
                .env(
                    "DATABASE_URL",
                    format!(
                        "postgres://buzz:{DB_PASSWORD}@127.0.0.1:{}/{database}",
                        cluster.port
                    ),
                )
                .env("REDIS_URL", format!("redis://127.0.0.1:{redis_port}"))
                // Search and media are not used by these tests; with the git
                // probe off, their absence only logs errors.
                .env("TYPESENSE_URL", "http://127.0.0.1:9")
                .env("BUZZ_S3_ENDPOINT", "http://127.0.0.1:9")
                .env("BUZZ_GIT_CONFORMANCE_PROBE", "false")
                .env("BUZZ_GIT_REPO_PATH", dir.path().join("repos"))
                .env("RELAY_URL", format!("ws://127.0.0.1:{port}"))
                .env("BUZZ_BIND_ADDR", format!("127.0.0.1:{port}"))
                .env("BUZZ_HEALTH_PORT", health_port.to_string())
                .env("BUZZ_METRICS_PORT", metrics_port.to_string())
                .env(
                    "BUZZ_RELAY_PRIVATE_KEY",
                    Keys::generate().secret_key().to_secret_hex(),
                )
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log file handle"))
                .stderr(log);
            match &mode {
                BuzzMode::Closed { owner } => {
                    command
                        .env("BUZZ_REQUIRE_AUTH_TOKEN", "true")
                        .env("BUZZ_REQUIRE_RELAY_MEMBERSHIP", "true")
                        .env("BUZZ_ALLOW_NIP_OA_AUTH", "true")
                        .env("RELAY_OWNER_PUBKEY", owner.public_key().to_hex());
                }
                BuzzMode::Open => {
                    command
                        .env("BUZZ_REQUIRE_AUTH_TOKEN", "false")
                        .env("BUZZ_REQUIRE_RELAY_MEMBERSHIP", "false")
                        .env("BUZZ_ALLOW_NIP_OA_AUTH", "false")
                        .env("BUZZ_PUBKEY_ALLOWLIST", "false");
                }
            }
            command
        };
        // The health listener starts before the websocket listener.
        let ready = |(port, health_port, _): (u16, u16, u16)| {
            http_status(health_port, "/_readiness") == Some(200)
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
        };
        let (relay, (port, health_port, _)) = start_until_ready(
            "the Buzz relay",
            &log_path,
            libc::SIGKILL,
            || (free_port(), free_port(), free_port()),
            start,
            ready,
        );
        BuzzRelay {
            relay,
            redis,
            port,
            health_port,
            database,
            log_path,
            dir,
        }
    }

    /// The relay's websocket URL, `ws://127.0.0.1:<port>`, equal to its `RELAY_URL`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// The relay's HTTP URL (the same port: NIP-11 and the HTTP bridge,
    /// `POST /events`, `/query`, `/count`).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The health listener's URL (`/_liveness`, `/_readiness`, `/_status`).
    pub fn health_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.health_port)
    }

    /// The temp folder holding the relay's log and git folder (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The name of the relay's own database in the shared cluster (dropped on drop).
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The relay's log (stdout and stderr, JSON lines) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Makes `pubkey_hex` a relay member (role `member`, added by nobody), as
    /// the admin events (kinds 9030-9032) would. Membership is read from the
    /// database on every AUTH, so it holds at once.
    pub fn add_member(&self, pubkey_hex: &str) {
        assert!(
            pubkey_hex.len() == 64 && pubkey_hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "add_member wants a 64-hex pubkey, got {pubkey_hex:?}"
        );
        cluster().psql(
            "buzz",
            &self.database,
            &format!(
                "INSERT INTO relay_members (pubkey, role) VALUES ('{}', 'member') \
                 ON CONFLICT (pubkey) DO NOTHING",
                pubkey_hex.to_lowercase()
            ),
        );
    }

    /// Whether the relay's process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.relay.try_wait(), Ok(None))
    }
}

impl Drop for BuzzRelay {
    fn drop(&mut self) {
        // No graceful stop: on SIGTERM the relay waits 5 s before draining,
        // and its data is thrown away anyway.
        for child in [&mut self.relay, &mut self.redis] {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(cluster) = CLUSTER.get() {
            // FORCE: the relay's pool connections may not have noticed yet
            // that their client is gone. Errors are ignored (this is a drop,
            // and the whole cluster is removed when the process exits).
            let _ = cluster.try_psql(
                "postgres",
                "postgres",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database),
            );
        }
        // `self.dir` (log, git folder, Redis folder) is removed by its own drop.
    }
}

/// Whether the shared cluster holds a database named `name` (false when the
/// cluster was never started).
pub fn database_exists(name: &str) -> bool {
    let Some(cluster) = CLUSTER.get() else {
        return false;
    };
    let output = cluster
        .psql_command("postgres", "postgres")
        .args(["-tA", "-c"])
        .arg(format!(
            "SELECT count(*) FROM pg_database WHERE datname = '{}'",
            name.replace('\'', "''")
        ))
        .output()
        .expect("run psql");
    assert!(
        output.status.success(),
        "list databases: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim() == "1"
}

/// A raw websocket to a relay, for checking its exact answers.
pub struct BuzzSocket {
    url: String,
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// The challenge of the `["AUTH", challenge]` the relay sent on connect.
    pub challenge: String,
}

/// The end of a subscription's stored events.
#[derive(Debug, Clone, PartialEq)]
pub enum ReqEnd {
    /// `["EOSE", sub]`.
    Eose,
    /// `["CLOSED", sub, message]`.
    Closed(String),
}

impl BuzzSocket {
    /// Connects to `url` and waits for the relay's `["AUTH", challenge]`,
    /// which the Buzz relay sends at once. Panics if the first message is
    /// anything else or does not come within the socket timeout.
    pub async fn connect(url: &str) -> BuzzSocket {
        let Ok(connected) =
            tokio::time::timeout(SOCKET_TIMEOUT, tokio_tungstenite::connect_async(url)).await
        else {
            panic!("connect to {url}: timed out after {SOCKET_TIMEOUT:?}")
        };
        let (stream, _) = connected.unwrap_or_else(|error| panic!("connect to {url}: {error}"));
        let mut socket = BuzzSocket {
            url: url.to_owned(),
            stream,
            challenge: String::new(),
        };
        let first = socket.next().await;
        assert_eq!(
            first[0], "AUTH",
            "the relay's first message is not an AUTH challenge: {first}"
        );
        socket.challenge = first[1]
            .as_str()
            .unwrap_or_else(|| panic!("AUTH challenge is not a string: {first}"))
            .to_owned();
        socket
    }

    /// Sends one frame.
    pub async fn send(&mut self, frame: Value) {
        self.stream
            .send(Message::text(frame.to_string()))
            .await
            .unwrap_or_else(|error| panic!("send to {}: {error}", self.url));
    }

    /// The relay's next text message, parsed. Panics on a timeout, a closed
    /// connection or a message that is not JSON.
    pub async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(SOCKET_TIMEOUT, self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("{} sent nothing within {SOCKET_TIMEOUT:?}", self.url));
            match message {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text).unwrap_or_else(|error| {
                        panic!(
                            "{} sent a message that is not JSON ({error}): {text}",
                            self.url
                        )
                    })
                }
                Some(Ok(Message::Close(frame))) => {
                    panic!("{} closed the connection: {frame:?}", self.url)
                }
                None => panic!("{} closed the connection", self.url),
                Some(Ok(_)) => continue,
                Some(Err(error)) => panic!("read from {}: {error}", self.url),
            }
        }
    }

    /// Sends an AUTH event for this connection's challenge, signed by `keys`,
    /// with the NIP-OA `auth_tag` if given, and returns the relay's OK:
    /// (accepted, message).
    pub async fn auth(&mut self, keys: &Keys, auth_tag: Option<&[String]>) -> (bool, String) {
        let event = auth_event(&self.url, &self.challenge, keys, auth_tag);
        self.send(json!(["AUTH", event])).await;
        self.ok_for(&event.id.to_hex()).await
    }

    /// Sends `["EVENT", event]` and returns the relay's OK: (accepted, message).
    pub async fn publish(&mut self, event: &Event) -> (bool, String) {
        self.send(json!(["EVENT", event])).await;
        self.ok_for(&event.id.to_hex()).await
    }

    /// Waits for the OK about `event_id` (skipping NOTICEs and other
    /// messages) and returns (accepted, message).
    pub async fn ok_for(&mut self, event_id: &str) -> (bool, String) {
        loop {
            let message = self.next().await;
            if message[0] == "OK" && message[1] == event_id {
                let accepted = message[2]
                    .as_bool()
                    .unwrap_or_else(|| panic!("OK without a boolean: {message}"));
                let text = message[3].as_str().unwrap_or_default().to_owned();
                return (accepted, text);
            }
        }
    }

    /// Sends `["REQ", sub, filter]` and collects the stored events until the
    /// subscription's EOSE or CLOSED (NOTICEs are skipped).
    pub async fn req(&mut self, sub: &str, filter: Value) -> (Vec<Event>, ReqEnd) {
        self.send(json!(["REQ", sub, filter])).await;
        let mut events = Vec::new();
        loop {
            let message = self.next().await;
            if message[1] != sub {
                continue;
            }
            match message[0].as_str() {
                Some("EVENT") => events.push(
                    Event::from_json(message[2].to_string()).unwrap_or_else(|error| {
                        panic!("bad event from the relay ({error}): {message}")
                    }),
                ),
                Some("EOSE") => return (events, ReqEnd::Eose),
                Some("CLOSED") => {
                    return (
                        events,
                        ReqEnd::Closed(message[2].as_str().unwrap_or_default().to_owned()),
                    )
                }
                _ => {}
            }
        }
    }
}

/// An AUTH event (kind 22242) for `relay_url` and `challenge`, signed by
/// `keys`, carrying `auth_tag` (a NIP-OA `["auth", owner, conditions, sig]`)
/// when given; `created_at` is now.
pub fn auth_event(
    relay_url: &str,
    challenge: &str,
    keys: &Keys,
    auth_tag: Option<&[String]>,
) -> Event {
    let relay = RelayUrl::parse(relay_url)
        .unwrap_or_else(|error| panic!("relay URL {relay_url:?}: {error}"));
    let mut builder = EventBuilder::auth(challenge, relay);
    if let Some(tag) = auth_tag {
        builder = builder.tag(Tag::parse(tag.iter().cloned()).expect("a NIP-OA tag"));
    }
    builder.sign_with_keys(keys).expect("sign the AUTH event")
}

/// Publishes a kind:0 with `content` and `created_at` signed by `agent` on the
/// relay at `relay_url`, over a connection authenticated as that agent (its
/// AUTH event carries `auth_tag` when given: what a closed relay needs from a
/// non-member). Panics with the relay's message if the AUTH or the event is
/// refused (the relay refuses a `created_at` more than 900 s from its clock,
/// and content that is not JSON). Returns the event.
pub async fn seed_profile(
    relay_url: &str,
    agent: &Keys,
    auth_tag: Option<&[String]>,
    content: &str,
    created_at: u64,
) -> Event {
    let mut socket = BuzzSocket::connect(relay_url).await;
    let (accepted, message) = socket.auth(agent, auth_tag).await;
    assert!(
        accepted,
        "{relay_url} refused AUTH by {}: {message}",
        agent.public_key().to_hex()
    );
    let event = EventBuilder::new(Kind::Metadata, content)
        .custom_created_at(Timestamp::from_secs(created_at))
        .sign_with_keys(agent)
        .expect("sign a kind:0 event");
    let (accepted, message) = socket.publish(&event).await;
    assert!(
        accepted,
        "{relay_url} refused the kind:0 of {}: {message}",
        agent.public_key().to_hex()
    );
    event
}

/// One record of an agent store in the app's format (see [`buzz_store`]).
#[derive(Debug, Clone)]
pub struct StoreAgent {
    /// The agent's keys (pubkey and `private_key_nsec`).
    pub keys: Keys,
    /// The record's `name`.
    pub name: String,
    /// The NIP-OA tag, written as the app does (compact JSON text), or `null`.
    pub auth_tag: Option<Vec<String>>,
    /// `persona_id`, or `null`.
    pub persona_id: Option<String>,
    /// `avatar_url`, or `null` (no stored avatar: a legacy record).
    pub avatar_url: Option<String>,
    /// `agent_command` (the runtime, e.g. `goose`).
    pub agent_command: String,
}

impl StoreAgent {
    /// A record named `name` for `keys`: no tag, no persona, `avatar_url`
    /// `null`, the goose runtime.
    pub fn new(name: &str, keys: Keys) -> StoreAgent {
        StoreAgent {
            keys,
            name: name.to_owned(),
            auth_tag: None,
            persona_id: None,
            avatar_url: None,
            agent_command: "goose".to_owned(),
        }
    }

    /// The same record with a NIP-OA tag signed by `owner` with `conditions`
    /// (`""` as the app usually writes, or e.g. `"kind=0"`).
    pub fn with_tag(mut self, owner: &Keys, conditions: &str) -> StoreAgent {
        self.auth_tag = Some(reprofile::core::nip_oa::sign(
            owner,
            &self.keys.public_key().to_hex(),
            conditions,
        ));
        self
    }

    /// The same record with this `avatar_url`.
    pub fn with_avatar(mut self, url: &str) -> StoreAgent {
        self.avatar_url = Some(url.to_owned());
        self
    }

    /// The same record with this `persona_id`.
    pub fn with_persona(mut self, id: &str) -> StoreAgent {
        self.persona_id = Some(id.to_owned());
        self
    }

    /// The pubkey, hex.
    pub fn pubkey(&self) -> String {
        self.keys.public_key().to_hex()
    }
}

/// `count` agents with fresh keys, named `agent-000`, `agent-001`, ..., each
/// with a NIP-OA tag signed by `owner` with `conditions`.
pub fn generate_agents(owner: &Keys, count: usize, conditions: &str) -> Vec<StoreAgent> {
    (0..count)
        .map(|index| {
            StoreAgent::new(&format!("agent-{index:03}"), Keys::generate())
                .with_tag(owner, conditions)
        })
        .collect()
}

/// A record of the agent store with every field the Buzz app writes, in its
/// order (`tests/fixtures/app-record.json`, which the scale benchmark's world
/// uses too), with `fields` set over it (new ones at the end).
pub fn app_record(fields: Value) -> Value {
    let mut record: Value = serde_json::from_str(include_str!("../../fixtures/app-record.json"))
        .expect("the record template is JSON");
    let Value::Object(fields) = fields else {
        panic!("fields must be a JSON object")
    };
    for (key, value) in fields {
        record[key] = value;
    }
    record
}

/// The text of `managed-agents.json` as the Buzz app writes it for `agents`
/// on `relay_url`: a pretty-printed array sorted by lower-case name then
/// pubkey, every field present, optional ones `null`, `respond_to`
/// kebab-case, the NIP-OA tag as compact JSON text.
pub fn buzz_store(relay_url: &str, agents: &[StoreAgent]) -> String {
    let mut sorted: Vec<&StoreAgent> = agents.iter().collect();
    sorted.sort_by_key(|agent| (agent.name.to_lowercase(), agent.pubkey()));
    let records: Vec<Value> = sorted
        .into_iter()
        .map(|agent| {
            app_record(json!({
                "pubkey": agent.pubkey(),
                "name": agent.name,
                "persona_id": agent.persona_id,
                "private_key_nsec": agent.keys.secret_key().to_bech32().expect("nsec"),
                "auth_tag": agent.auth_tag.as_ref().map(|tag| json!(tag).to_string()),
                "relay_url": relay_url,
                "agent_command": agent.agent_command,
                "avatar_url": agent.avatar_url,
            }))
        })
        .collect();
    serde_json::to_string_pretty(&records).expect("serialize the store")
}

// ---------------------------------------------------------------------------
// The shared Postgres cluster.

/// The Postgres cluster of this test process, started by the first relay and
/// stopped when the process exits ([`stop_cluster_at_exit`]).
struct Cluster {
    /// The folder of the Postgres binaries (`initdb`, `postgres`, `psql`).
    bin: PathBuf,
    port: u16,
    /// The postmaster's pid (its `Child` is gone; it is reaped at exit).
    pid: libc::pid_t,
    /// The temp folder with the data and socket folders (removed at exit).
    dir: PathBuf,
    next_database: AtomicUsize,
    /// Copies of the template are made one at a time: cheap insurance, as
    /// Postgres refuses to copy a template another session is using.
    create_lock: Mutex<()>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The shared cluster, started on first use.
fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let cluster = Cluster::start();
        // SAFETY: registers a plain `extern "C" fn` with no arguments.
        unsafe { libc::atexit(stop_cluster_at_exit) };
        cluster
    })
}

/// Stops the shared cluster (immediate shutdown) and removes its folder,
/// when the test process exits normally. (When it is killed instead, the
/// postmaster gets SIGQUIT from `PR_SET_PDEATHSIG` and the folder is removed
/// by the next test process.)
extern "C" fn stop_cluster_at_exit() {
    let Some(cluster) = CLUSTER.get() else { return };
    // SAFETY: plain syscalls on a pid this process started and never reaped.
    unsafe {
        libc::kill(cluster.pid, libc::SIGQUIT);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut status = 0;
        while libc::waitpid(cluster.pid, &mut status, libc::WNOHANG) == 0 {
            if Instant::now() > deadline {
                libc::kill(cluster.pid, libc::SIGKILL);
                libc::waitpid(cluster.pid, &mut status, 0);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = std::fs::remove_dir_all(&cluster.dir);
}

impl Cluster {
    /// initdb, start `postgres` as a child (as the `postgres` user when this
    /// process is root), wait until it accepts connections, then make the
    /// `buzz` role and a template database holding the relay's schema.
    fn start() -> Cluster {
        remove_stale_dirs();
        let bin = postgres_bin_dir();
        let schema = schema_path();
        let user = postgres_user();
        let dir = temp_dir("pg");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("give the Postgres temp folder to the postgres user");
        }
        let data = dir.path().join("data");
        let log_path = dir.path().join("postgres.log");

        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .current_dir(dir.path())
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C"]);
        as_user(&mut initdb, user);
        let output = initdb.output().expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );

        let start = |port: u16, log: File| {
            if let Some((uid, gid)) = user {
                std::os::unix::fs::chown(&log_path, Some(uid), Some(gid))
                    .expect("give the Postgres log file to the postgres user");
            }
            let mut command = Command::new(bin.join("postgres"));
            command
                .current_dir(dir.path())
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(dir.path())
                .args(["-c", "listen_addresses=127.0.0.1"])
                // Throwaway data: durability only costs time.
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off"])
                // Each relay keeps a pool of up to 25 connections.
                .args(["-c", "max_connections=400"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log file handle"))
                .stderr(log);
            as_user(&mut command, user);
            command
        };
        let ready = |port: u16| {
            Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .args(["-U", "postgres", "-d", "postgres", "-t", "2"])
                .status()
                .is_ok_and(|status| status.success())
        };
        // SIGQUIT is Postgres's immediate shutdown: it stops its own
        // children and frees its shared memory.
        let (mut postgres, port) = start_until_ready(
            "Postgres",
            &log_path,
            libc::SIGQUIT,
            free_port,
            start,
            ready,
        );
        let mut cluster = Cluster {
            bin,
            port,
            pid: postgres.id() as libc::pid_t,
            dir: dir.path().to_path_buf(),
            next_database: AtomicUsize::new(0),
            create_lock: Mutex::new(()),
        };
        if let Err(error) = cluster.prepare_template(&schema) {
            let _ = postgres.kill();
            let _ = postgres.wait();
            panic!("{error}");
        }
        cluster.dir = dir.keep();
        // Dropping the `Child` neither stops nor reaps it; the exit hook does.
        drop(postgres);
        cluster
    }

    /// The `buzz` role and `buzz_template`, the relay's schema loaded as
    /// `buzz` (so the copies' tables belong to it, as on a real deployment).
    fn prepare_template(&self, schema: &Path) -> Result<(), String> {
        // Two commands: CREATE DATABASE cannot share psql's one transaction.
        let role = format!("CREATE ROLE buzz LOGIN PASSWORD '{DB_PASSWORD}'");
        let database = "CREATE DATABASE buzz_template OWNER buzz";
        for sql in [role.as_str(), database] {
            self.try_psql("postgres", "postgres", sql)
                .map_err(|error| format!("psql {sql:?} failed: {error}"))?;
        }
        let output = self
            .psql_command("buzz", "buzz_template")
            .arg("-f")
            .arg(schema)
            .output()
            .map_err(|error| format!("run psql: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "loading {} failed: {}",
                schema.display(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(())
    }

    /// A fresh database `buzz_<n>` owned by `buzz`, holding the schema.
    fn create_database(&self) -> String {
        let name = format!(
            "buzz_{}",
            self.next_database.fetch_add(1, Ordering::Relaxed)
        );
        let _one_at_a_time = self.create_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.psql(
            "postgres",
            "postgres",
            &format!("CREATE DATABASE {name} OWNER buzz TEMPLATE buzz_template"),
        );
        name
    }

    /// Runs `sql` as `user` on `database`; panics with psql's error.
    fn psql(&self, user: &str, database: &str, sql: &str) {
        if let Err(error) = self.try_psql(user, database, sql) {
            panic!("psql {sql:?} on {database} failed: {error}");
        }
    }

    fn try_psql(&self, user: &str, database: &str, sql: &str) -> Result<(), String> {
        let output = self
            .psql_command(user, database)
            .args(["-c", sql])
            .output()
            .map_err(|error| error.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }

    fn psql_command(&self, user: &str, database: &str) -> Command {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", user, "-d", database])
            .env("PGPASSWORD", DB_PASSWORD)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null());
        command
    }
}

// ---------------------------------------------------------------------------
// Redis.

/// Starts a Redis (no persistence) for one relay in `dir`, and waits until it
/// answers PING. Returns it and its port.
fn start_redis(dir: &Path) -> (Child, u16) {
    let binary = find_on_path("redis-server").unwrap_or_else(|| {
        panic!("redis-server is not on PATH, and the Buzz relay needs it: {SETUP_HINT}")
    });
    let start = |port: u16, log: File| {
        let mut command = Command::new(&binary);
        command
            .current_dir(dir)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file handle"))
            .stderr(log);
        command
    };
    start_until_ready(
        "Redis",
        &dir.join("redis.log"),
        libc::SIGKILL,
        free_port,
        start,
        redis_answers_ping,
    )
}

fn redis_answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

// ---------------------------------------------------------------------------
// Processes, ports, folders.

/// Starts a process and waits until it is ready: `command` builds it for
/// the ports `pick_ports` chose, writing to the log file it is given, and
/// `ready` polls it on those ports. When it exits saying a port was taken
/// meanwhile, tries again with other ports (at most [`START_ATTEMPTS`]
/// times). Panics, quoting the last lines of the log, when it exits or is not
/// ready within [`START_DEADLINE`]. The process is tied to the test process
/// ([`spawn_tied`]) and gets `death_signal` when that dies.
fn start_until_ready<P: Copy>(
    what: &str,
    log_path: &Path,
    death_signal: libc::c_int,
    mut pick_ports: impl FnMut() -> P,
    mut command: impl FnMut(P, File) -> Command,
    mut ready: impl FnMut(P) -> bool,
) -> (Child, P) {
    for attempt in 1..=START_ATTEMPTS {
        let ports = pick_ports();
        let log = File::create(log_path)
            .unwrap_or_else(|error| panic!("create {}: {error}", log_path.display()));
        let mut child = spawn_tied(command(ports, log), death_signal)
            .unwrap_or_else(|error| panic!("start {what}: {error}"));
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    let log = std::fs::read_to_string(log_path).unwrap_or_default();
                    if log.contains("already in use") && attempt < START_ATTEMPTS {
                        break;
                    }
                    panic!(
                        "{what} exited before it was ready ({status}); last lines of {}:\n{}",
                        log_path.display(),
                        log_tail(log_path)
                    );
                }
                Ok(None) => {}
                Err(error) => panic!("wait for {what}: {error}"),
            }
            if ready(ports) {
                return (child, ports);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{what} was not ready within {START_DEADLINE:?}; last lines of {}:\n{}",
                    log_path.display(),
                    log_tail(log_path)
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// The status code of `GET path` on 127.0.0.1:`port`, or `None` when
/// nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    // "HTTP/1.1 200"
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Spawns `command` so that it dies with this test process: it gets
/// `death_signal` when its parent thread ends (`PR_SET_PDEATHSIG`). The
/// parent is one thread that lives as long as the process, since the signal
/// follows the thread that forked, not the process.
fn spawn_tied(mut command: Command, death_signal: libc::c_int) -> io::Result<Child> {
    let parent = std::process::id();
    // SAFETY: the hook runs between fork and exec and calls only
    // async-signal-safe functions (prctl, getppid), allocating nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (sender, requests) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("buzz-process-parent".to_owned())
            .spawn(move || {
                // Ends only with the process: the sender is in a static.
                for (mut command, reply) in requests {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the thread that starts the Buzz processes");
        sender
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .send((command, reply))
        .expect("the process-starting thread is running");
    answer.recv().expect("the process-starting thread answers")
}

/// A port that was free on every interface a moment ago and that this
/// process has not handed out before (the health and metrics listeners
/// bind 0.0.0.0).
fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let listener = TcpListener::bind("0.0.0.0:0").expect("bind a free port");
        let port = listener.local_addr().expect("local address").port();
        if HANDED_OUT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port)
        {
            return port;
        }
    }
}

/// A new temp folder named `reprofile-buzz-<kind>-<pid>-...`.
fn temp_dir(kind: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{kind}-{}-", std::process::id()))
        .tempdir()
        .expect("create a temp folder")
}

/// Removes the temp folders of test processes that are gone (killed before
/// they could clean up; a Postgres data folder is about 40 MB).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(DIR_PREFIX) else {
            continue;
        };
        let Some(pid) = rest
            .split('-')
            .nth(1)
            .and_then(|pid| pid.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } == -1
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The last [`LOG_TAIL_LINES`] lines of a log file.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|error| format!("(cannot read the log: {error})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// The relay binary: `$REPROFILE_BUZZ_RELAY`, else
/// `${REPROFILE_CACHE:-$HOME/.cache/reprofile}/bin/buzz-relay`.
fn relay_binary() -> PathBuf {
    let path = match std::env::var_os("REPROFILE_BUZZ_RELAY") {
        Some(path) => PathBuf::from(path),
        None => {
            let cache = std::env::var_os("REPROFILE_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/reprofile")
                });
            cache.join("bin/buzz-relay")
        }
    };
    assert!(
        path.is_file(),
        "the Buzz relay is not built ({} is missing): {SETUP_HINT}, \
         or point REPROFILE_BUZZ_RELAY at a buzz-relay binary",
        path.display()
    );
    path
}

/// The relay's schema: `$REPROFILE_BUZZ_SRC/schema/schema.sql`, else
/// `shared/vendor/buzz-relay/schema/schema.sql` beside this checkout or one
/// of its parents (a worktree lies one level deeper than the main checkout).
fn schema_path() -> PathBuf {
    let relative = Path::new("schema/schema.sql");
    if let Some(source) = std::env::var_os("REPROFILE_BUZZ_SRC") {
        let path = PathBuf::from(source).join(relative);
        assert!(
            path.is_file(),
            "REPROFILE_BUZZ_SRC is set, but {} is missing",
            path.display()
        );
        return path;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .skip(1)
        .map(|parent| parent.join("shared/vendor/buzz-relay").join(relative))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the Buzz relay's schema (shared/vendor/buzz-relay/schema/schema.sql) is not \
                 beside {} or its parents: point REPROFILE_BUZZ_SRC at the relay's source",
                manifest.display()
            )
        })
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb` and `postgres`.
fn postgres_bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no {}/*/bin/initdb): {SETUP_HINT}",
            root.display()
        )
    })
}

/// The `postgres` user's uid and gid when this process is root (Postgres
/// refuses to run as root); `None` otherwise (it runs as the current user).
fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid cannot fail; getpwnam is called with a valid C string
    // and its result is read at once.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let entry = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !entry.is_null(),
            "running as root, and there is no `postgres` user to run Postgres as: {SETUP_HINT}"
        );
        Some(((*entry).pw_uid, (*entry).pw_gid))
    }
}

fn as_user(command: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}
