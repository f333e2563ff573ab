//! Raw websocket clients (tokio-tungstenite): the per-agent baseline and the
//! plain pipelined publisher.
//!
//! - [`per_agent_raw`]: what the desktop app does today, done as cheaply as a
//!   client can: one connection, then for each agent in turn one REQ
//!   (`kinds: [0]`, `authors: [pk]`), wait for its EOSE, keep the newest
//!   event (each event parsed and its id and signature verified, as nostr-sdk
//!   does), CLOSE. Sequential: the next REQ goes out after the EOSE. The
//!   socket has TCP_NODELAY and TCP_QUICKACK, so this is the per-agent way
//!   at its fastest (no Nagle or delayed-ACK stalls on either side).
//! - [`per_agent_sdk`]: the same with nostr-sdk's `Client::fetch_events_from`
//!   (one auto-closing subscription per agent, on one connected client):
//!   what an app built on nostr-sdk gets, Nagle's delays included.
//! - [`batched_raw`]: the floor of any batched reader: the tool's request
//!   pattern (REQs of 100 authors, 16 open at a time, one connection) with
//!   nothing else done, or with the signatures checked on every core. It says
//!   how fast the relay itself answers, and what is left for a client.
//! - [`pipelined_publish`]: the relay's own limit for writes: one connection,
//!   every EVENT written back to back (a writer task), the OKs read as they
//!   come until there is one per event.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use nostr::{Event, Filter, JsonUtil, Kind, PublicKey, RelayMessage};
use tokio_tungstenite::tungstenite::Message;

/// Opens a websocket with TCP_NODELAY: without it, a CLOSE followed by the
/// next REQ waits for the relay's delayed ACK (about 40 ms on Linux), which
/// would make the per-agent baseline look far slower than it needs to be.
async fn connect(
    url: &str,
) -> Result<
    (
        WsStream,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    tokio_tungstenite::connect_async_with_config(url, None, true).await
}

/// Connects (see [`connect`]) within `timeout`.
async fn open(url: &str, timeout: Duration) -> anyhow::Result<WsStream> {
    let (socket, _) = tokio::time::timeout(timeout, connect(url))
        .await
        .context("connect timed out")?
        .with_context(|| format!("cannot connect to {url}"))?;
    Ok(socket)
}

/// The next message within `timeout`, as text (`None`: not a text frame);
/// `waiting` says what was awaited, for the error.
async fn next_text<S>(
    stream: &mut S,
    timeout: Duration,
    waiting: impl FnOnce() -> String,
) -> anyhow::Result<Option<tokio_tungstenite::tungstenite::Utf8Bytes>>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let message = tokio::time::timeout(timeout, stream.next())
        .await
        .with_context(waiting)?
        .context("connection closed")??;
    Ok(match message {
        Message::Text(text) => Some(text),
        _ => None,
    })
}

/// What a per-agent read found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCounts {
    /// Agents with a kind:0.
    pub found: usize,
    /// Agents without one.
    pub missing: usize,
}

/// Asks the kernel to ACK incoming data at once (TCP_QUICKACK; Linux only,
/// and not sticky, so it is set again around every exchange). Relays that
/// write EVENT and EOSE separately with Nagle on (nostr-rs-relay does) hold
/// the EOSE until the EVENT is ACKed; a delayed ACK (40 ms on Linux) would
/// then dominate the per-agent time.
fn quickack(socket: &WsStream) {
    if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        super::proxy::quickack(tcp);
    }
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The per-agent baseline over a raw websocket (TCP_NODELAY and
/// TCP_QUICKACK: the per-agent way at its fastest); returns what it found
/// and the time from before connecting to the last EOSE.
pub async fn per_agent_raw(
    url: &str,
    authors: &[PublicKey],
    timeout: Duration,
) -> anyhow::Result<(ReadCounts, Duration)> {
    let started = Instant::now();
    let mut socket = open(url, timeout).await?;
    let mut counts = ReadCounts::default();
    for (n, author) in authors.iter().enumerate() {
        let sub = format!("a{n}");
        let req = format!(
            r#"["REQ","{sub}",{{"kinds":[0],"authors":["{}"]}}]"#,
            author.to_hex()
        );
        socket.send(Message::text(req)).await?;
        quickack(&socket);
        let mut newest: Option<Event> = None;
        loop {
            let text = next_text(&mut socket, timeout, || "no EOSE in time".into()).await?;
            quickack(&socket);
            let Some(text) = text else {
                continue;
            };
            match RelayMessage::from_json(text.as_str())? {
                RelayMessage::Event {
                    subscription_id,
                    event,
                } if subscription_id.as_str() == sub => {
                    let event = event.into_owned();
                    event.verify().context("an event does not verify")?;
                    if event.kind == Kind::Metadata
                        && newest.as_ref().is_none_or(|current| {
                            (event.created_at, std::cmp::Reverse(event.id))
                                > (current.created_at, std::cmp::Reverse(current.id))
                        })
                    {
                        newest = Some(event);
                    }
                }
                RelayMessage::EndOfStoredEvents(id) if id.as_str() == sub => break,
                RelayMessage::Closed {
                    subscription_id,
                    message,
                } if subscription_id.as_str() == sub => bail!("relay closed {sub}: {message}"),
                _ => {}
            }
        }
        socket
            .send(Message::text(format!(r#"["CLOSE","{sub}"]"#)))
            .await?;
        match newest {
            Some(_) => counts.found += 1,
            None => counts.missing += 1,
        }
    }
    let elapsed = started.elapsed();
    let _ = socket.close(None).await;
    Ok((counts, elapsed))
}

/// The per-agent baseline with nostr-sdk (`Client::fetch_events_from`, one
/// call per agent, in turn, on one connected client).
pub async fn per_agent_sdk(
    url: &str,
    authors: &[PublicKey],
    timeout: Duration,
) -> anyhow::Result<(ReadCounts, Duration)> {
    let started = Instant::now();
    let client = nostr_sdk::Client::default();
    client.add_relay(url).await?;
    client.try_connect_relay(url, timeout).await?;
    let mut counts = ReadCounts::default();
    for author in authors {
        let filter = Filter::new().kind(Kind::Metadata).author(*author);
        let events = client.fetch_events_from([url], filter, timeout).await?;
        match events.first() {
            Some(_) => counts.found += 1,
            None => counts.missing += 1,
        }
    }
    let elapsed = started.elapsed();
    client.shutdown().await;
    Ok((counts, elapsed))
}

/// What a pipelined publish got back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishCounts {
    /// OK true (or `duplicate:`).
    pub accepted: usize,
    /// OK false, by message prefix.
    pub refused: HashMap<String, usize>,
}

/// Publishes `events` over one connection: writes every EVENT, reads one OK
/// per event. Returns the counts and the time from before connecting to the
/// last OK. The messages are serialized before the clock starts.
pub async fn pipelined_publish(
    url: &str,
    events: &[Event],
    timeout: Duration,
) -> anyhow::Result<(PublishCounts, Duration)> {
    let messages: Vec<String> = events
        .iter()
        .map(|e| format!(r#"["EVENT",{}]"#, e.as_json()))
        .collect();
    let total = messages.len();
    let started = Instant::now();
    let socket = open(url, timeout).await?;
    let (mut sink, mut stream) = socket.split();
    let writer = tokio::spawn(async move {
        for message in messages {
            sink.feed(Message::text(message)).await?;
        }
        sink.flush().await?;
        anyhow::Ok(sink)
    });
    let mut counts = PublishCounts::default();
    let mut answered = 0;
    while answered < total {
        let waiting = || format!("no OK in time ({answered} of {total} answered)");
        let Some(text) = next_text(&mut stream, timeout, waiting).await? else {
            continue;
        };
        if let RelayMessage::Ok {
            status, message, ..
        } = RelayMessage::from_json(text.as_str())?
        {
            answered += 1;
            if status || message.starts_with("duplicate:") {
                counts.accepted += 1;
            } else {
                let prefix = message.split(':').next().unwrap_or("").to_string();
                *counts.refused.entry(prefix).or_default() += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    let mut sink = writer.await??;
    let _ = sink.close().await;
    Ok((counts, elapsed))
}

/// What [`batched_raw`] does with the events it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchedCheck {
    /// Counts them; no parsing beyond the message type.
    Nothing,
    /// Parses each and checks its id and signature, on this many threads,
    /// while the reading goes on.
    VerifyOn(usize),
}

/// Reads kind:0 of `authors` with the tool's request pattern (REQs of
/// `per_filter` authors, at most `window` open, the next sent at each EOSE)
/// over one connection. Returns the events received (all verified with
/// [`BatchedCheck::VerifyOn`]) and the time from before connecting to the
/// last EOSE and the last check.
pub async fn batched_raw(
    url: &str,
    authors: &[PublicKey],
    per_filter: usize,
    window: usize,
    check: BatchedCheck,
    timeout: Duration,
) -> anyhow::Result<(usize, Duration)> {
    let requests: Vec<String> = authors
        .chunks(per_filter)
        .enumerate()
        .map(|(n, chunk)| {
            let authors: Vec<String> = chunk
                .iter()
                .map(|a| format!(r#""{}""#, a.to_hex()))
                .collect();
            format!(
                r#"["REQ","b{n}",{{"kinds":[0],"authors":[{}]}}]"#,
                authors.join(",")
            )
        })
        .collect();
    let total = requests.len();
    // Checkers: threads that parse and verify event texts as they arrive.
    let (to_checkers, from_reader) = std::sync::mpsc::sync_channel::<Vec<String>>(64);
    let from_reader = std::sync::Arc::new(std::sync::Mutex::new(from_reader));
    let threads = match check {
        BatchedCheck::Nothing => 0,
        BatchedCheck::VerifyOn(n) => n.max(1),
    };
    let started = Instant::now();
    let checkers: Vec<std::thread::JoinHandle<anyhow::Result<usize>>> = (0..threads)
        .map(|_| {
            let from_reader = std::sync::Arc::clone(&from_reader);
            std::thread::spawn(move || {
                let mut verified = 0;
                loop {
                    let Ok(texts) = from_reader.lock().unwrap().recv() else {
                        return Ok(verified);
                    };
                    for text in texts {
                        if let RelayMessage::Event { event, .. } = RelayMessage::from_json(&text)? {
                            event.verify().context("an event does not verify")?;
                            verified += 1;
                        }
                    }
                }
            })
        })
        .collect();

    let mut socket = open(url, timeout).await?;
    let mut next = 0;
    for request in requests.iter().take(window) {
        socket.feed(Message::text(request.clone())).await?;
        next += 1;
    }
    socket.flush().await?;
    let mut ended = 0;
    let mut received = 0;
    let mut pending: Vec<String> = Vec::new();
    while ended < total {
        let waiting = || format!("no EOSE in time ({ended} of {total} ended)");
        let Some(text) = next_text(&mut socket, timeout, waiting).await? else {
            continue;
        };
        if text.starts_with(r#"["EVENT""#) {
            received += 1;
            if threads > 0 {
                pending.push(text.as_str().to_owned());
                if pending.len() >= 64 {
                    to_checkers.send(std::mem::take(&mut pending))?;
                }
            }
        } else if let Some(rest) = text.strip_prefix(r#"["EOSE",""#) {
            ended += 1;
            let sub = rest.trim_end_matches("\"]");
            socket
                .feed(Message::text(format!(r#"["CLOSE","{sub}"]"#)))
                .await?;
            if next < total {
                socket.feed(Message::text(requests[next].clone())).await?;
                next += 1;
            }
            socket.flush().await?;
        } else if text.starts_with(r#"["CLOSED""#) {
            bail!("the relay closed a subscription: {text}");
        }
    }
    if !pending.is_empty() {
        to_checkers.send(pending)?;
    }
    drop(to_checkers);
    let mut verified = 0;
    for checker in checkers {
        verified += checker.join().expect("checker thread")?;
    }
    let elapsed = started.elapsed();
    if threads > 0 && verified != received {
        bail!("{received} events received, {verified} verified");
    }
    let _ = socket.close(None).await;
    Ok((received, elapsed))
}
