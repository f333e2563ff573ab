//! Shared test support: real relays over real websockets, and the fixture world.
//!
//! - [`start_local_relay`]: an in-process nostr-relay-builder relay whose rate
//!   limit is high enough for bulk tests.
//! - [`publish_events`]: puts signed events on a relay and checks each was accepted.
//! - [`seed_events`]: the signed kind:0 events of `tests/fixtures/basic/relay-seed.jsonl`.
//! - [`FakeRelay`]: a small scripted relay for hostile behaviours that a
//!   well-behaved relay never shows (CLOSED, silence, a dropped connection,
//!   NOTICE instead of EOSE, invalid events, several versions of a kind:0).
//!
//! Nothing here sleeps to synchronize: every wait is on a real event (a
//! connection, a relay's OK, a message), bounded by a timeout.

// Helpers shared by several test modules; not every module uses every helper.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, Timestamp};
use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use reprofile::relay::{ReadOptions, RelayTimeouts};
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
    let relay = LocalRelay::new(builder);
    relay.run().await.expect("start the local relay");
    relay
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
        timeouts: RelayTimeouts {
            connect,
            query,
            publish: query,
        },
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
    /// Sends the raw events, then closes the TCP connection without EOSE
    /// (and without a websocket close handshake).
    EventsThenDisconnect(Vec<String>),
    /// Answers `["NOTICE", <message>]` and never sends EOSE.
    NoticeInsteadOfEose(String),
}

/// What a [`FakeRelay`] saw.
#[derive(Debug, Default)]
struct FakeLog {
    connections: usize,
    requests: Vec<Value>,
    max_open_subscriptions: usize,
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
                        server_log.lock().unwrap().connections += 1;
                        open_sender.send_modify(|open| *open += 1);
                        connections.spawn(serve_connection(
                            stream,
                            behaviour.clone(),
                            Arc::clone(&server_log),
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
}

impl Drop for FakeRelay {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve_connection(stream: TcpStream, behaviour: FakeBehaviour, log: Arc<Mutex<FakeLog>>) {
    let Ok(Ok(websocket)) =
        tokio::time::timeout(HELPER_TIMEOUT, tokio_tungstenite::accept_async(stream)).await
    else {
        return;
    };
    let (mut sink, mut source) = websocket.split();
    let mut open: HashSet<String> = HashSet::new();
    while let Some(Ok(message)) = source.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let subscription = value[1].as_str().unwrap_or_default().to_owned();
        match value[0].as_str() {
            Some("REQ") => {
                log.lock().unwrap().requests.push(value.clone());
                let sub = json!(subscription).to_string();
                let mut replies = Vec::new();
                match &behaviour {
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
