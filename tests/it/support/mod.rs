//! Shared test support: real relays over real websockets, and the fixture world.
//!
//! - [`start_local_relay`]: an in-process nostr-relay-builder relay whose rate
//!   limit is high enough for bulk tests.
//! - [`publish_events`]: puts signed events on a relay and checks each was accepted.
//! - [`seed_events`]: the signed kind:0 events of `tests/fixtures/basic/relay-seed.jsonl`.
//! - [`FakeRelay`]: a small scripted relay for hostile behaviours that a
//!   well-behaved relay never shows (CLOSED, silence, a dropped connection,
//!   NOTICE instead of EOSE, invalid events, several versions of a kind:0),
//!   and, for publishing, scripted OK answers (refusals, rate limits, silence,
//!   held answers, slow answers from a relay that keeps what it takes, a
//!   dropped connection, NIP-42 with a challenge at connect).
//! - [`buzz`]: the real Buzz relay (with its Postgres and Redis), a raw
//!   websocket client for it, and an agent store in the app's format.
//!
//! Nothing here sleeps to synchronize: every wait is on a real event (a
//! connection, a relay's OK, a message), bounded by a timeout.

// Helpers shared by several test modules; not every module uses every helper.
#![allow(dead_code)]

pub mod buzz;
pub mod nrs;
pub mod secret_service;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, Timestamp};
use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use reprofile::net::relay::{ReadOptions, RelayTimeouts};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;

/// How long helpers wait for a test relay to accept a connection or an event.
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// Path of a file in the project's copy of the fixture world (`tests/fixtures/basic/`).
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/basic")
        .join(name)
}

/// A relay builder for bulk tests: nostr-relay-builder's defaults, except that
/// the rate limit (60 events per minute per connection by default) is raised
/// far above what any test publishes.
pub fn bulk_relay_builder() -> RelayBuilder {
    RelayBuilder::default().rate_limit(RateLimit {
        max_reqs: 500,
        notes_per_minute: 1_000_000,
    })
}

/// Starts an in-process relay (nostr-relay-builder, in-memory store, a free
/// port on 127.0.0.1) with the rate limit of [`bulk_relay_builder`].
/// Its URL is `relay.url().await`; it shuts down when the last clone is dropped.
pub async fn start_local_relay() -> LocalRelay {
    start_local_relay_with(bulk_relay_builder()).await
}

/// Starts an in-process relay from `builder` (for example one that demands
/// NIP-42 authentication). Panics if it cannot start.
pub async fn start_local_relay_with(builder: RelayBuilder) -> LocalRelay {
    reprofile::testing::run_local_relay(builder)
        .await
        .expect("start the local relay")
}

/// Starts an in-process relay that demands NIP-42 authentication for
/// `mode` (reads or writes): the relay and its URL.
pub async fn start_relay_demanding_auth(
    mode: nostr_relay_builder::builder::RelayBuilderNip42Mode,
) -> (LocalRelay, String) {
    use nostr_relay_builder::builder::RelayBuilderNip42;
    let relay =
        start_local_relay_with(bulk_relay_builder().nip42(RelayBuilderNip42 { mode })).await;
    let url = relay.url().await.to_string();
    (relay, url)
}

/// Publishes `events` to the relay at `url` with a nostr-sdk client and asserts
/// that the relay accepted each one (OK true). The events are sent as they are,
/// whatever key signed them.
pub async fn publish_events(url: &str, events: &[Event]) {
    let client = nostr_sdk::Client::default();
    client.add_relay(url).await.expect("add relay");
    client
        .try_connect_relay(url, HELPER_TIMEOUT)
        .await
        .unwrap_or_else(|error| panic!("connect to {url} to publish: {error}"));
    for event in events {
        let output = client
            .send_event_to([url], event)
            .await
            .unwrap_or_else(|error| panic!("publish {} to {url}: {error}", event.id));
        assert!(
            output.failed.is_empty() && output.success.len() == 1,
            "relay {url} did not accept event {}: {:?}",
            event.id,
            output.failed
        );
    }
    client.shutdown().await;
}

/// The signed kind:0 events of `tests/fixtures/basic/relay-seed.jsonl`, one per
/// non-blank line. Panics on a line that does not parse or verify.
pub fn seed_events() -> Vec<Event> {
    let path = fixture_path("relay-seed.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let event = Event::from_json(line)
                .unwrap_or_else(|error| panic!("{} line {}: {error}", path.display(), index + 1));
            event.verify().unwrap_or_else(|error| {
                panic!(
                    "{} line {}: does not verify: {error}",
                    path.display(),
                    index + 1
                )
            });
            event
        })
        .collect()
}

/// A kind:0 event with the given `created_at` and content, signed by `keys`.
pub fn signed_profile(keys: &Keys, created_at: u64, content: &str) -> Event {
    EventBuilder::new(Kind::Metadata, content)
        .custom_created_at(Timestamp::from_secs(created_at))
        .sign_with_keys(keys)
        .expect("sign a kind:0 event")
}

/// `event` as JSON with one field replaced: for building events that do not
/// verify (a foreign signature, content changed after signing).
pub fn json_with(event: &Event, field: &str, value: Value) -> String {
    let mut json: Value = serde_json::from_str(&event.as_json()).expect("event JSON");
    json[field] = value;
    json.to_string()
}

/// A `ws://` URL on 127.0.0.1 where nothing listens: a relay that is down.
/// (The port was free a moment ago; nothing in the tests binds it again.)
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    format!("ws://127.0.0.1:{port}")
}

/// Read options with short timeouts, so tests about slow relays stay fast.
pub fn short_read_options(connect: Duration, query: Duration) -> ReadOptions {
    ReadOptions {
        timeouts: RelayTimeouts { connect, query },
        ..ReadOptions::default()
    }
}

/// What a [`FakeRelay`] does when it receives a REQ.
#[derive(Debug, Clone)]
pub enum FakeBehaviour {
    /// Sends each raw event JSON text as `["EVENT", <sub>, <raw>]`, whatever the
    /// filter asked for, then `["EOSE", <sub>]`.
    EventsThenEose(Vec<String>),
    /// Answers `["CLOSED", <sub>, <message>]`.
    Closed(String),
    /// Never answers (no event, no EOSE); the connection stays open.
    Silent,
    /// Never answers the REQs whose ordinals (0-based, counted over all
    /// connections in the order received) are listed; answers every other
    /// REQ like [`FakeBehaviour::EventsThenEose`]. A relay that loses a
    /// subscription now and then.
    IgnoreReqs {
        ignored: Vec<usize>,
        events: Vec<String>,
    },
    /// Sends the raw events, then closes the TCP connection without EOSE
    /// (and without a websocket close handshake).
    EventsThenDisconnect(Vec<String>),
    /// Answers `["NOTICE", <message>]` and never sends EOSE.
    NoticeInsteadOfEose(String),

    // Publishing behaviours: they answer EVENTs as described, and every REQ
    // with an immediate EOSE (no events). The behaviours above ignore EVENTs.
    /// Answers every EVENT with `["OK", <id>, accepted, message]` (with
    /// `accepted: true` this is a relay that says OK but stores nothing).
    AnswerOk { accepted: bool, message: String },
    /// Never answers an EVENT; the connection stays open.
    NeverOk,
    /// Answers the first `n` EVENTs carrying a given event id (counted over
    /// all connections) with `rate-limited: slow down`, later ones with OK true.
    RateLimitFirst(usize),
    /// As [`FakeBehaviour::RateLimitFirst`], but sheds load as Buzz does: a
    /// `["NOTICE", "rate-limited: …"]` and no OK for those first `n`.
    NoticeRateLimitFirst(usize),
    /// On each connection, sends no OK until it has received `n` EVENTs; then
    /// answers all of them, and every later one at once, with OK true.
    HoldOksUntil(usize),
    /// On the first connection: waits for `events` EVENTs, answers the first
    /// `accept` of them with OK true, then closes the TCP connection without a
    /// websocket close handshake. Later connections answer OK true at once.
    DropFirstConnectionAfter { events: usize, accept: usize },
    /// NIP-42, checked per author: sends `["AUTH", <challenge>]` right after
    /// the connection opens (and never again). An EVENT whose author, or the
    /// `trusted` pubkey (hex), has authenticated on this connection gets OK
    /// true; any other gets OK false `auth-required: authenticate as the
    /// author`. An AUTH (kind 22242, valid signature, this challenge, a
    /// `relay` tag) is answered OK true and adds its pubkey to the
    /// connection's authenticated set (several pubkeys per connection).
    AuthAtConnect {
        challenge: String,
        trusted: Option<String>,
    },
    /// A relay that answers slowly, and keeps what it takes: answers each
    /// EVENT with OK true `delay` after it is its turn (one answer at a time,
    /// in the order received, so the n-th OK of a connection comes n × `delay`
    /// after its EVENTs arrived together), and stores the event; a REQ gets
    /// the newest stored kind:0 of each author it asks for, then EOSE. With a
    /// `challenge`, sends `["AUTH", challenge]` at connect and accepts any
    /// valid AUTH for it (EVENTs need none).
    SlowOk {
        delay: Duration,
        challenge: Option<String>,
    },
}

impl FakeBehaviour {
    fn is_publishing(&self) -> bool {
        matches!(
            self,
            FakeBehaviour::AnswerOk { .. }
                | FakeBehaviour::NeverOk
                | FakeBehaviour::RateLimitFirst(_)
                | FakeBehaviour::NoticeRateLimitFirst(_)
                | FakeBehaviour::HoldOksUntil(_)
                | FakeBehaviour::DropFirstConnectionAfter { .. }
                | FakeBehaviour::AuthAtConnect { .. }
                | FakeBehaviour::SlowOk { .. }
        )
    }

    /// The challenge sent at connect, if any.
    fn challenge(&self) -> Option<&str> {
        match self {
            FakeBehaviour::AuthAtConnect { challenge, .. } => Some(challenge),
            FakeBehaviour::SlowOk { challenge, .. } => challenge.as_deref(),
            _ => None,
        }
    }
}

/// An AUTH a [`FakeRelay`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeAuth {
    /// The authenticated pubkey (hex).
    pub pubkey: String,
    /// The AUTH event's `relay` tag.
    pub relay: String,
}

/// What a [`FakeRelay`] saw.
#[derive(Debug, Default)]
struct FakeLog {
    connections: usize,
    requests: Vec<Value>,
    max_open_subscriptions: usize,
    /// Every EVENT's id, in the order received (all connections).
    event_ids: Vec<String>,
    /// How many EVENTs with each id were received (all connections).
    event_counts: std::collections::HashMap<String, usize>,
    /// Every AUTH accepted.
    auths: Vec<FakeAuth>,
    /// The most EVENTs one connection had received and not yet answered.
    max_unanswered_events: usize,
    /// [`FakeBehaviour::SlowOk`]: the newest kind:0 taken per author (hex).
    stored: std::collections::HashMap<String, Event>,
}

/// A scripted relay over a real websocket (tokio-tungstenite, 127.0.0.1, a free
/// port) for behaviours that real relays show only when something is wrong.
/// It answers every REQ per its [`FakeBehaviour`], records what it received,
/// and stops (closing every connection) when dropped.
pub struct FakeRelay {
    url: String,
    log: Arc<Mutex<FakeLog>>,
    open_connections: watch::Receiver<usize>,
    server: JoinHandle<()>,
}

impl FakeRelay {
    /// Starts listening; the relay is ready when this returns.
    pub async fn start(behaviour: FakeBehaviour) -> FakeRelay {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake relay");
        let url = format!("ws://{}", listener.local_addr().expect("local addr"));
        let log = Arc::new(Mutex::new(FakeLog::default()));
        let server_log = Arc::clone(&log);
        let (open_sender, open_connections) = watch::channel(0_usize);
        let server = tokio::spawn(async move {
            // Connection tasks live in this set, so aborting the server
            // (on drop) aborts them too.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { return };
                        let number = {
                            let mut log = server_log.lock().unwrap();
                            log.connections += 1;
                            log.connections
                        };
                        open_sender.send_modify(|open| *open += 1);
                        connections.spawn(serve_connection(
                            stream,
                            behaviour.clone(),
                            Arc::clone(&server_log),
                            number,
                        ));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {
                        open_sender.send_modify(|open| *open -= 1);
                    }
                }
            }
        });
        FakeRelay {
            url,
            log,
            open_connections,
            server,
        }
    }

    /// The relay's `ws://127.0.0.1:<port>` URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many TCP connections were accepted.
    pub fn connections(&self) -> usize {
        self.log.lock().unwrap().connections
    }

    /// Waits until no client connection is open (the client closed or dropped
    /// every connection it made), at most `timeout`. Returns whether that happened.
    pub async fn wait_until_no_connection_is_open(&self, timeout: Duration) -> bool {
        let mut open = self.open_connections.clone();
        tokio::time::timeout(timeout, open.wait_for(|open| *open == 0))
            .await
            .is_ok_and(|seen| seen.is_ok())
    }

    /// Every REQ received, as parsed JSON arrays `["REQ", <sub>, <filter>...]`.
    pub fn requests(&self) -> Vec<Value> {
        self.log.lock().unwrap().requests.clone()
    }

    /// The most subscriptions one connection had open at once (REQ answered
    /// with EOSE and not yet CLOSEd, or never answered).
    pub fn max_open_subscriptions(&self) -> usize {
        self.log.lock().unwrap().max_open_subscriptions
    }

    /// Waits (at most `limit`, then panics) until an EVENT has reached the
    /// relay: the moment tests stop a publishing run while its first event
    /// awaits its OK.
    pub async fn wait_for_an_event(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while self.event_ids().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "no EVENT reached the relay within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The id (hex) of every EVENT received, in order, over all connections.
    pub fn event_ids(&self) -> Vec<String> {
        self.log.lock().unwrap().event_ids.clone()
    }

    /// Every AUTH the relay accepted, in order.
    pub fn auths(&self) -> Vec<FakeAuth> {
        self.log.lock().unwrap().auths.clone()
    }

    /// The most EVENTs one connection had sent without having had their OK
    /// yet (as the relay saw it: received and not answered).
    pub fn max_unanswered_events(&self) -> usize {
        self.log.lock().unwrap().max_unanswered_events
    }
}

impl Drop for FakeRelay {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve_connection(
    stream: TcpStream,
    behaviour: FakeBehaviour,
    log: Arc<Mutex<FakeLog>>,
    connection_number: usize,
) {
    let Ok(Ok(websocket)) =
        tokio::time::timeout(HELPER_TIMEOUT, tokio_tungstenite::accept_async(stream)).await
    else {
        return;
    };
    let (mut sink, mut source) = websocket.split();
    let mut open: HashSet<String> = HashSet::new();
    let mut publishing = PublishSession::new(connection_number);
    if let Some(challenge) = behaviour.challenge() {
        let greeting = json!(["AUTH", challenge]).to_string();
        if sink.send(Message::text(greeting)).await.is_err() {
            return;
        }
    }
    while let Some(Ok(message)) = source.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let subscription = value[1].as_str().unwrap_or_default().to_owned();
        match value[0].as_str() {
            Some("EVENT") | Some("AUTH") if behaviour.is_publishing() => {
                let step = publishing.receive(&behaviour, &log, &value);
                if let Some(delay) = step.delay {
                    // The relay's slowness (SlowOk), not a synchronization.
                    tokio::time::sleep(delay).await;
                }
                for reply in step.replies {
                    if sink.send(Message::text(reply)).await.is_err() {
                        return;
                    }
                }
                if step.disconnect {
                    // Dropping both halves closes the TCP connection
                    // without a websocket close handshake.
                    return;
                }
            }
            Some("REQ") if behaviour.is_publishing() => {
                let mut replies = Vec::new();
                {
                    let mut log = log.lock().unwrap();
                    log.requests.push(value.clone());
                    let authors = value[2]["authors"].as_array().cloned().unwrap_or_default();
                    for author in authors.iter().filter_map(Value::as_str) {
                        if let Some(event) = log.stored.get(author) {
                            replies.push(format!(
                                r#"["EVENT",{},{}]"#,
                                json!(subscription),
                                event.as_json()
                            ));
                        }
                    }
                }
                replies.push(json!(["EOSE", subscription]).to_string());
                for reply in replies {
                    if sink.send(Message::text(reply)).await.is_err() {
                        return;
                    }
                }
            }
            Some("REQ") => {
                let ordinal = {
                    let mut log = log.lock().unwrap();
                    log.requests.push(value.clone());
                    log.requests.len() - 1
                };
                let sub = json!(subscription).to_string();
                let mut replies = Vec::new();
                match &behaviour {
                    FakeBehaviour::IgnoreReqs { ignored, events } => {
                        if !ignored.contains(&ordinal) {
                            replies.extend(
                                events.iter().map(|raw| format!(r#"["EVENT",{sub},{raw}]"#)),
                            );
                            replies.push(format!(r#"["EOSE",{sub}]"#));
                        }
                        open.insert(subscription);
                    }
                    FakeBehaviour::EventsThenEose(events) => {
                        replies
                            .extend(events.iter().map(|raw| format!(r#"["EVENT",{sub},{raw}]"#)));
                        replies.push(format!(r#"["EOSE",{sub}]"#));
                        open.insert(subscription);
                    }
                    FakeBehaviour::Closed(text) => {
                        replies.push(json!(["CLOSED", subscription, text]).to_string());
                    }
                    FakeBehaviour::Silent => {
                        open.insert(subscription);
                    }
                    FakeBehaviour::EventsThenDisconnect(events) => {
                        for raw in events {
                            let reply = Message::text(format!(r#"["EVENT",{sub},{raw}]"#));
                            if sink.send(reply).await.is_err() {
                                return;
                            }
                        }
                        // Dropping both halves closes the TCP connection
                        // without a websocket close handshake.
                        return;
                    }
                    FakeBehaviour::NoticeInsteadOfEose(text) => {
                        replies.push(json!(["NOTICE", text]).to_string());
                        open.insert(subscription);
                    }
                    // The publishing behaviours (`is_publishing`) answered above.
                    _ => unreachable!("a publishing behaviour's REQ is answered above"),
                }
                {
                    let mut log = log.lock().unwrap();
                    log.max_open_subscriptions = log.max_open_subscriptions.max(open.len());
                }
                for reply in replies {
                    if sink.send(Message::text(reply)).await.is_err() {
                        return;
                    }
                }
            }
            Some("CLOSE") => {
                open.remove(&subscription);
            }
            _ => {}
        }
    }
}

/// What a [`FakeRelay`] connection sends after one EVENT or AUTH.
struct PublishStep {
    replies: Vec<String>,
    disconnect: bool,
    /// Wait this long before sending the replies.
    delay: Option<Duration>,
}

/// The publishing state of one [`FakeRelay`] connection.
struct PublishSession {
    connection_number: usize,
    /// Event ids received and not answered yet, in order.
    unanswered: Vec<String>,
    /// EVENTs received on this connection.
    received: usize,
    /// Pubkeys (hex) authenticated on this connection.
    authenticated: HashSet<String>,
}

impl PublishSession {
    fn new(connection_number: usize) -> Self {
        Self {
            connection_number,
            unanswered: Vec::new(),
            received: 0,
            authenticated: HashSet::new(),
        }
    }

    fn receive(
        &mut self,
        behaviour: &FakeBehaviour,
        log: &Arc<Mutex<FakeLog>>,
        message: &Value,
    ) -> PublishStep {
        let mut step = PublishStep {
            replies: Vec::new(),
            disconnect: false,
            delay: None,
        };
        if message[0] == "AUTH" {
            if let Some(challenge) = behaviour.challenge() {
                step.replies
                    .push(self.authenticate(challenge, log, &message[1]));
            }
            return step;
        }
        let id = message[1]["id"].as_str().unwrap_or_default().to_owned();
        let author = message[1]["pubkey"].as_str().unwrap_or_default().to_owned();
        let seen_before = {
            let mut log = log.lock().unwrap();
            log.event_ids.push(id.clone());
            let count = log.event_counts.entry(id.clone()).or_insert(0);
            *count += 1;
            *count - 1
        };
        self.received += 1;
        self.unanswered.push(id.clone());
        self.note_unanswered(log);
        let ok =
            |id: &str, accepted: bool, text: &str| json!(["OK", id, accepted, text]).to_string();
        match behaviour {
            FakeBehaviour::AnswerOk { accepted, message } => {
                step.replies.push(ok(&id, *accepted, message));
            }
            FakeBehaviour::NeverOk => return step,
            FakeBehaviour::RateLimitFirst(n) => {
                if seen_before < *n {
                    step.replies.push(ok(&id, false, "rate-limited: slow down"));
                } else {
                    step.replies.push(ok(&id, true, ""));
                }
            }
            FakeBehaviour::NoticeRateLimitFirst(n) => {
                if seen_before < *n {
                    step.replies
                        .push(json!(["NOTICE", "rate-limited: too many events"]).to_string());
                } else {
                    step.replies.push(ok(&id, true, ""));
                }
            }
            FakeBehaviour::HoldOksUntil(n) => {
                if self.received < *n {
                    return step;
                }
                for held in &self.unanswered {
                    step.replies.push(ok(held, true, ""));
                }
            }
            FakeBehaviour::DropFirstConnectionAfter { events, accept } => {
                if self.connection_number > 1 {
                    step.replies.push(ok(&id, true, ""));
                } else if self.received < *events {
                    return step;
                } else {
                    for held in self.unanswered.iter().take(*accept) {
                        step.replies.push(ok(held, true, ""));
                    }
                    step.disconnect = true;
                    return step;
                }
            }
            FakeBehaviour::SlowOk { delay, .. } => {
                if let Ok(event) = Event::from_json(message[1].to_string()) {
                    let mut log = log.lock().unwrap();
                    let newer = log
                        .stored
                        .get(&author)
                        .is_none_or(|old| old.created_at < event.created_at);
                    if newer {
                        log.stored.insert(author.clone(), event);
                    }
                }
                step.delay = Some(*delay);
                step.replies.push(ok(&id, true, ""));
            }
            FakeBehaviour::AuthAtConnect { trusted, .. } => {
                let allowed = self.authenticated.contains(&author)
                    || trusted
                        .as_ref()
                        .is_some_and(|trusted| self.authenticated.contains(trusted));
                if allowed {
                    step.replies.push(ok(&id, true, ""));
                } else {
                    step.replies
                        .push(ok(&id, false, "auth-required: authenticate as the author"));
                }
            }
            _ => return step,
        }
        self.unanswered.clear();
        step
    }

    fn note_unanswered(&self, log: &Arc<Mutex<FakeLog>>) {
        let mut log = log.lock().unwrap();
        log.max_unanswered_events = log.max_unanswered_events.max(self.unanswered.len());
    }

    /// Checks an AUTH event and returns the OK answer.
    fn authenticate(&mut self, challenge: &str, log: &Arc<Mutex<FakeLog>>, raw: &Value) -> String {
        let id = raw["id"].as_str().unwrap_or_default().to_owned();
        let refuse =
            |why: &str| json!(["OK", id, false, format!("auth-required: {why}")]).to_string();
        let Ok(event) = Event::from_json(raw.to_string()) else {
            return refuse("unparsable AUTH event");
        };
        if event.verify().is_err() {
            return refuse("AUTH event does not verify");
        }
        if event.kind != Kind::Authentication {
            return refuse("AUTH event is not kind 22242");
        }
        let tag = |name: &str| {
            event
                .tags
                .iter()
                .find(|tag| tag.as_slice().first().map(String::as_str) == Some(name))
                .and_then(|tag| tag.as_slice().get(1).cloned())
        };
        if tag("challenge").as_deref() != Some(challenge) {
            return refuse("wrong challenge");
        }
        let Some(relay) = tag("relay") else {
            return refuse("no relay tag");
        };
        let pubkey = event.pubkey.to_hex();
        self.authenticated.insert(pubkey.clone());
        log.lock().unwrap().auths.push(FakeAuth { pubkey, relay });
        json!(["OK", id, true, ""]).to_string()
    }
}
