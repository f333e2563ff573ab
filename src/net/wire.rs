//! A relay connection over a bare websocket, for the sans-IO sessions
//! (reading kind:0s, publishing as one agent): frames out, relay messages in,
//! every event's id and signature checked off the connection's task.
//!
//! Why not nostr-sdk's relay connection here: nostr-sdk 0.44 checks each
//! event's signature on its connection's one task, with no way to leave the
//! check to the caller, so one relay was read on one core however many the
//! machine has; it also saves every event in a per-client database and
//! trusts an event id it has seen before without hashing the event again.
//! The sessions already make every protocol decision, so this module only
//! moves frames: the nostr crate parses and checks messages, and
//! tokio-tungstenite (the websocket nostr-sdk itself uses, opened by
//! [`crate::net::tls::Tls`]) carries them.
//!
//! Incoming text frames are parsed and checked in chunks on rayon's pool (one
//! thread per core, shared by every connection of the process), and handed
//! to the session in the order the relay sent them, so an EOSE is never seen
//! before the events it ends. Events whose id or signature does not verify,
//! and expired events (NIP-40), never reach the session. Only the events the
//! session can take (`Session::accepted_events`) are remembered by the
//! checker's memory and shown to its observer. At most
//! [`MAX_CHUNKS_IN_FLIGHT`] chunks, of at most [`MAX_BYTES_IN_FLIGHT`] of
//! text in all, are being checked per connection; past that the socket is
//! not read, and TCP slows the relay down. With each message at most
//! `crate::net::tls::MAX_MESSAGE_BYTES`, that bounds what a relay can make one
//! connection hold.
//!
//! What it must not do: decide anything (that is the sessions' job), or log
//! keys.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use nostr::{JsonUtil, RelayMessage};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use crate::net::tls::{Socket, Tls};
use crate::net::verified::Checker;
use crate::protocol::{AcceptedEvents, Input, Session};

/// The most frames parsed and checked as one piece of work.
const FRAMES_PER_CHUNK: usize = 64;

/// The most chunks of one connection being checked at once.
pub(crate) const MAX_CHUNKS_IN_FLIGHT: usize = 32;

/// The most text (bytes of frames) of one connection being checked at once,
/// give or take a chunk: kind:0s of about 1 KB never come near it (32 chunks
/// of 64 frames are 2 MB), while 1 MiB messages could otherwise make one
/// connection hold 2 GiB.
pub(crate) const MAX_BYTES_IN_FLIGHT: usize = 16 << 20;

/// A chunk ends once it holds this much text, so the bytes in flight are
/// spread over chunks (and cores).
const BYTES_PER_CHUNK: usize = 1 << 20;

/// One open connection, owned by one session.
pub(crate) struct Connection {
    socket: Socket,
    checker: Checker,
    /// The events the session driving it can take (set by [`drive`]).
    accepted: Option<Arc<dyn AcceptedEvents>>,
    /// What the relay sent, in order: chunks still being checked, or ready.
    pending: VecDeque<Pending>,
    /// Bytes of text in the chunks being checked.
    bytes_in_flight: usize,
    /// The socket has ended (its end is queued in `pending`).
    ended: bool,
}

enum Pending {
    Ready(Vec<Input>),
    /// A chunk of `bytes` of text, being checked.
    Checking {
        receiver: oneshot::Receiver<Vec<Input>>,
        bytes: usize,
    },
}

/// Opens a connection to `url` within `connect_timeout`; events are checked
/// with `checker`. The error is one line for people.
pub(crate) async fn connect(
    url: &str,
    connect_timeout: Duration,
    tls: &Tls,
    checker: Checker,
) -> Result<Connection, String> {
    let socket = tls.open(url, connect_timeout).await?;
    tracing::debug!(relay = %url, "connected");
    Ok(Connection {
        socket,
        checker,
        accepted: None,
        pending: VecDeque::new(),
        bytes_in_flight: 0,
        ended: false,
    })
}

impl Connection {
    /// Sends `frames` in order, flushed once.
    async fn send(&mut self, frames: Vec<nostr::ClientMessage<'static>>) -> Result<(), String> {
        for frame in frames {
            self.socket
                .feed(Message::text(frame_json(&frame)))
                .await
                .map_err(|error| error.to_string())?;
        }
        self.socket.flush().await.map_err(|error| error.to_string())
    }

    /// Whether frames received are waiting to be handed over (being
    /// checked, or checked): [`Connection::next_inputs`] then returns
    /// without waiting on the relay.
    fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The next inputs in the order the relay sent them. Cancel-safe: every
    /// frame received is queued before the next await.
    async fn next_inputs(&mut self) -> Vec<Input> {
        loop {
            if let Some(Pending::Ready(_)) = self.pending.front() {
                if let Some(Pending::Ready(inputs)) = self.pending.pop_front() {
                    return inputs;
                }
            }
            let may_read = !self.ended
                && self.pending.len() < MAX_CHUNKS_IN_FLIGHT
                && self.bytes_in_flight < MAX_BYTES_IN_FLIGHT;
            let front = match self.pending.front_mut() {
                Some(Pending::Checking { receiver, .. }) => Some(receiver),
                _ => None,
            };
            tokio::select! {
                biased;
                checked = async { front.expect("guarded").await }, if front.is_some() => {
                    if let Some(Pending::Checking { bytes, .. }) = self.pending.pop_front() {
                        self.bytes_in_flight -= bytes;
                    }
                    return checked.unwrap_or_else(|_| {
                        vec![Input::Lost("internal error: a message check was lost".to_owned())]
                    });
                }
                frame = self.socket.next(), if may_read => self.received(frame),
                else => {
                    // Nothing queued and the socket ended: said already.
                    return vec![Input::Lost("connection closed".to_owned())];
                }
            }
        }
    }

    /// Queues one received frame, with every frame already waiting behind
    /// it (up to a chunk), for checking.
    fn received(&mut self, frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) {
        let mut texts = Vec::new();
        let mut bytes = 0;
        let mut next = frame;
        loop {
            match next {
                Some(Ok(Message::Text(text))) => {
                    bytes += text.len();
                    texts.push(text);
                }
                // Pings are answered by tungstenite; binary frames are not
                // NIP-01.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_)))
                | Some(Ok(Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => {
                    self.end(texts, "connection closed".to_owned());
                    return;
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "connection dropped");
                    self.end(texts, "connection dropped".to_owned());
                    return;
                }
            }
            if texts.len() >= FRAMES_PER_CHUNK || bytes >= BYTES_PER_CHUNK {
                break;
            }
            match self.socket.next().now_or_never() {
                Some(frame) => next = frame,
                None => break,
            }
        }
        self.check(texts);
    }

    fn end(&mut self, texts: Vec<tokio_tungstenite::tungstenite::Utf8Bytes>, why: String) {
        self.check(texts);
        self.pending
            .push_back(Pending::Ready(vec![Input::Lost(why)]));
        self.ended = true;
    }

    /// Parses and checks `texts` on the pool.
    fn check(&mut self, texts: Vec<tokio_tungstenite::tungstenite::Utf8Bytes>) {
        if texts.is_empty() {
            return;
        }
        let bytes = texts.iter().map(|text| text.len()).sum();
        let (done, receiver) = oneshot::channel();
        let checker = self.checker.clone();
        let accepted = self.accepted.clone();
        rayon::spawn(move || {
            let accepted = accepted.as_deref();
            let inputs: Vec<Input> = texts
                .iter()
                .filter_map(|text| input_of(text.as_str(), &checker, accepted))
                .collect();
            for input in &inputs {
                if let Input::Event {
                    subscription_id,
                    event,
                } = input
                {
                    if accepts(accepted, subscription_id, event) {
                        checker.observe(event);
                    }
                }
            }
            let _ = done.send(inputs);
        });
        self.bytes_in_flight += bytes;
        self.pending
            .push_back(Pending::Checking { receiver, bytes });
    }

    /// Closes the websocket (best effort: the relay may be gone already).
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.socket.close(None)).await;
    }
}

/// `frame` as JSON text. A REQ (the bulk of what a read sends: up to 100
/// authors each) is written straight from its parts; nostr writes every
/// message through a JSON tree first.
fn frame_json(frame: &nostr::ClientMessage<'_>) -> String {
    if let nostr::ClientMessage::Req {
        subscription_id,
        filters,
    } = frame
    {
        let mut out = String::from(r#"["REQ","#);
        let parts = std::iter::once(serde_json::to_string(subscription_id.as_ref())).chain(
            filters.iter().map(|f| {
                authors_filter_json(f).map_or_else(|| serde_json::to_string(f.as_ref()), Ok)
            }),
        );
        for (n, part) in parts.enumerate() {
            match part {
                Ok(text) => {
                    if n > 0 {
                        out.push(',');
                    }
                    out.push_str(&text);
                }
                Err(_) => return frame.as_json(),
            }
        }
        out.push(']');
        return out;
    }
    frame.as_json()
}

/// A filter of only authors and kinds (a read's, every REQ of it) as nostr
/// writes it, `{"authors":[…],"kinds":[…]}`, with each pubkey's hex written
/// at once (nostr writes it one `char` at a time); `None` for any other
/// filter.
fn authors_filter_json(filter: &nostr::Filter) -> Option<String> {
    let only_authors_and_kinds = filter.ids.is_none()
        && filter.search.is_none()
        && filter.since.is_none()
        && filter.until.is_none()
        && filter.limit.is_none()
        && filter.generic_tags.is_empty();
    if !only_authors_and_kinds {
        return None;
    }
    let authors = filter.authors.as_ref().map_or(0, |a| a.len());
    let mut out = String::with_capacity(32 + 67 * authors);
    out.push('{');
    if let Some(authors) = &filter.authors {
        out.push_str(r#""authors":["#);
        for (n, author) in authors.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push('"');
            crate::protocol::push_hex32(&mut out, author.as_bytes());
            out.push('"');
        }
        out.push(']');
    }
    if let Some(kinds) = &filter.kinds {
        if filter.authors.is_some() {
            out.push(',');
        }
        out.push_str(r#""kinds":["#);
        for (n, kind) in kinds.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}", kind.as_u16());
        }
        out.push(']');
    }
    out.push('}');
    Some(out)
}

/// Whether the session can take `event` (see [`AcceptedEvents`]); a session
/// that names none takes none.
fn accepts(
    accepted: Option<&dyn AcceptedEvents>,
    subscription_id: &nostr::SubscriptionId,
    event: &nostr::Event,
) -> bool {
    accepted.is_some_and(|accepted| accepted.accepts(subscription_id, event))
}

/// What one text frame means to a session: `None` for what is not a NIP-01
/// relay message, and for an event that is not authentic or has expired.
/// The checker remembers only the events `accepted` says the session can
/// take.
fn input_of(text: &str, checker: &Checker, accepted: Option<&dyn AcceptedEvents>) -> Option<Input> {
    // An EVENT frame as relays write it: its event object's text goes to the
    // checker as is (a daemon has seen most such texts before).
    if let Some((subscription_id, event_text)) = split_event_frame(text) {
        let keep = |event: &nostr::Event| accepts(accepted, &subscription_id, event);
        match checker.authentic_text_keeping(event_text, keep) {
            Ok(Some(event)) => return event_input(subscription_id, event),
            Ok(None) => {
                tracing::debug!("event ignored: its id or signature does not verify");
                return None;
            }
            // Not an event: as nostr reads it, below.
            Err(_) => {}
        }
    }
    match parse(text) {
        Ok(RelayMessage::Event {
            subscription_id,
            event,
        }) => {
            let keep = accepts(accepted, &subscription_id, &event);
            if !checker.authentic_keeping(&event, keep) {
                tracing::debug!(id = %event.id, "event ignored: its id or signature does not verify");
                return None;
            }
            event_input(
                subscription_id.into_owned(),
                std::sync::Arc::new(event.into_owned()),
            )
        }
        Ok(message) => Some(Input::Message(message)),
        Err(error) => {
            tracing::debug!(%error, "relay frame ignored: not a relay message");
            None
        }
    }
}

/// An authentic event for the session, unless it has expired (NIP-40).
fn event_input(
    subscription_id: nostr::SubscriptionId,
    event: std::sync::Arc<nostr::Event>,
) -> Option<Input> {
    // NIP-40, with the clock read only for an event that has the tag.
    if event
        .tags
        .expiration()
        .is_some_and(|at| *at < nostr::Timestamp::now())
    {
        tracing::debug!(id = %event.id, "event ignored: expired (NIP-40)");
        return None;
    }
    Some(Input::Event {
        subscription_id,
        event,
    })
}

/// The subscription id and the event object's text of an EVENT frame written
/// compactly, `["EVENT","<id>",<event>]` with an id needing no escape (as
/// relays write them); `None` for any other frame. The event text is not
/// checked here: whether it is one event object is for its parse to say.
fn split_event_frame(text: &str) -> Option<(nostr::SubscriptionId, &str)> {
    let rest = text.strip_prefix(r#"["EVENT",""#)?;
    let end = rest
        .bytes()
        .position(|byte| byte == b'"' || byte == b'\\' || byte < 0x20)?;
    let (id, rest) = rest.split_at(end);
    let event = rest.strip_prefix("\",")?.trim_end().strip_suffix(']')?;
    Some((nostr::SubscriptionId::new(id), event))
}

/// A relay message: an EVENT frame (nearly every frame of a read) in one
/// pass, straight into its types; anything else as nostr parses it (through a
/// JSON tree, twice the work).
fn parse(text: &str) -> Result<RelayMessage<'static>, nostr::message::MessageHandleError> {
    if text.trim_start().starts_with(r#"["EVENT""#) {
        if let Ok((_, subscription_id, event)) =
            serde_json::from_str::<(serde::de::IgnoredAny, nostr::SubscriptionId, nostr::Event)>(
                text,
            )
        {
            return Ok(RelayMessage::event(subscription_id, event));
        }
    }
    RelayMessage::from_json(text)
}

/// Drives `session` over `connection` until it is done: sends what it asks
/// for, feeds it the relay's messages, and wakes it at its deadlines. Owns no
/// decision.
pub(crate) async fn drive(session: &mut impl Session, connection: &mut Connection) {
    connection.accepted = session.accepted_events();
    loop {
        let frames = session.poll_transmit(std::time::Instant::now(), crate::clock::now_secs());
        if !frames.is_empty() {
            if let Err(error) = connection.send(frames).await {
                let reason = format!("the request could not be sent ({error})");
                session.handle_input(Input::Lost(reason), std::time::Instant::now());
            }
        }
        if session.is_done() {
            return;
        }
        let Some(deadline) = session.poll_timeout() else {
            // Nothing in flight and nothing due: nothing can change any more.
            return;
        };
        tokio::select! {
            biased;
            inputs = connection.next_inputs() => {
                let now = std::time::Instant::now();
                for input in inputs {
                    session.handle_input(input, now);
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                if connection.has_pending() {
                    // Frames the relay sent are still being checked on the
                    // pool (busy with other relays' checks, key derivations
                    // or signing): the session hears them before it is told
                    // the time, so a relay that answered is never taken as
                    // silent because the pool was behind.
                    let inputs = connection.next_inputs().await;
                    let now = std::time::Instant::now();
                    for input in inputs {
                        session.handle_input(input, now);
                    }
                } else {
                    session.handle_timeout(std::time::Instant::now());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, SubscriptionId};

    use super::*;

    #[test]
    fn a_read_s_filter_is_written_byte_for_byte_as_nostr_writes_it() {
        let authors: Vec<nostr::PublicKey> =
            (0..100).map(|_| Keys::generate().public_key()).collect();
        for filter in [
            nostr::Filter::new()
                .kind(Kind::Metadata)
                .authors(authors.clone()),
            nostr::Filter::new().authors(authors.clone()),
            nostr::Filter::new().kinds([Kind::Metadata, Kind::TextNote]),
            nostr::Filter::new().kind(Kind::Metadata).authors([]),
            nostr::Filter::new(),
        ] {
            assert_eq!(
                authors_filter_json(&filter).as_deref(),
                Some(serde_json::to_string(&filter).expect("serializes").as_str())
            );
        }
        // Any other field: written by nostr.
        for filter in [
            nostr::Filter::new().authors(authors.clone()).limit(1),
            nostr::Filter::new()
                .authors(authors.clone())
                .since(nostr::Timestamp::from(1)),
            nostr::Filter::new().id(nostr::EventId::all_zeros()),
            nostr::Filter::new().search("x"),
            nostr::Filter::new().pubkey(authors[0]),
        ] {
            assert_eq!(authors_filter_json(&filter), None);
        }
    }

    #[test]
    fn an_event_frame_parses_in_one_pass_as_nostr_parses_it() {
        let event = EventBuilder::new(Kind::Metadata, r#"{"name":"A \"quoted\" é"}"#)
            .sign_with_keys(&Keys::generate())
            .expect("sign");
        let frame = RelayMessage::event(SubscriptionId::new("s 1"), event).as_json();
        assert_eq!(
            parse(&frame).expect("parses"),
            RelayMessage::from_json(&frame).expect("nostr parses")
        );
        // Other frames, and EVENT frames the fast path does not take, parse
        // as nostr parses them.
        for other in [
            r#"["EOSE","s"]"#.to_owned(),
            r#"["CLOSED","s","auth-required: sign in"]"#.to_owned(),
            r#"["NOTICE","hi"]"#.to_owned(),
            format!(r#"["EVENT","s",{}, "extra"]"#, event_json()),
        ] {
            assert_eq!(
                parse(&other).ok(),
                RelayMessage::from_json(&other).ok(),
                "{other}"
            );
        }
        assert!(parse(r#"["EVENT","s",{"not":"an event"}]"#).is_err());
        assert!(parse("not json").is_err());
    }

    #[test]
    fn an_event_frame_reads_the_same_split_or_parsed_whole() {
        let event = EventBuilder::new(Kind::Metadata, r#"{"name":"A \"quoted\" é"}"#)
            .sign_with_keys(&Keys::generate())
            .expect("sign");
        let checker = Checker::default();
        let frame = RelayMessage::event(SubscriptionId::new("p7"), event.clone()).as_json();
        let (id, text) = split_event_frame(&frame).expect("compact frame");
        assert_eq!((id.as_str(), text), ("p7", event.as_json().as_str()));
        let message = |input: Option<Input>| match input {
            Some(Input::Event {
                subscription_id,
                event,
            }) => RelayMessage::event(subscription_id, Event::clone(&event)),
            Some(Input::Message(message)) => message,
            _ => panic!("no message"),
        };
        assert_eq!(
            message(input_of(&frame, &checker, None)),
            RelayMessage::from_json(&frame).expect("nostr parses")
        );
        // Frames the split does not take are read whole, as nostr reads them.
        let escaped = RelayMessage::event(SubscriptionId::new("a\"b"), event.clone()).as_json();
        assert!(split_event_frame(&escaped).is_none());
        assert_eq!(
            message(input_of(&escaped, &checker, None)),
            RelayMessage::from_json(&escaped).expect("nostr parses")
        );
        let spaced = format!(r#"[ "EVENT", "p7", {} ]"#, event.as_json());
        assert!(split_event_frame(&spaced).is_none());
        assert!(input_of(&spaced, &checker, None).is_some());
        // Past the event object, the split's text is no event: the frame
        // is read whole, as nostr reads it.
        let extra = format!(r#"["EVENT","p7",{},"extra"]"#, event.as_json());
        assert!(checker
            .authentic_text(split_event_frame(&extra).expect("split").1)
            .is_err());
        match RelayMessage::from_json(&extra) {
            Ok(nostrs) => assert_eq!(message(input_of(&extra, &checker, None)), nostrs),
            Err(_) => assert!(input_of(&extra, &checker, None).is_none()),
        }
    }

    #[test]
    fn a_req_is_written_as_nostr_writes_it() {
        let authors: Vec<_> = (0..3).map(|_| Keys::generate().public_key()).collect();
        for filters in [
            vec![nostr::Filter::new()
                .kind(Kind::Metadata)
                .authors(authors.clone())],
            vec![
                nostr::Filter::new().kind(Kind::Metadata).authors(authors),
                nostr::Filter::new().kind(Kind::TextNote).limit(2),
            ],
        ] {
            let req = nostr::ClientMessage::req(SubscriptionId::new("r \"1\""), filters);
            let ours: serde_json::Value = serde_json::from_str(&frame_json(&req)).expect("JSON");
            assert_eq!(ours, req.as_value());
        }
        let close = nostr::ClientMessage::close(SubscriptionId::new("r1"));
        assert_eq!(frame_json(&close), close.as_json());
    }

    #[test]
    fn an_expired_event_is_not_given_to_the_session_and_one_not_yet_expired_is() {
        let now = nostr::Timestamp::now().as_secs();
        let frame = |tags: Vec<nostr::Tag>| {
            let event = EventBuilder::new(Kind::Metadata, "{}")
                .tags(tags)
                .sign_with_keys(&Keys::generate())
                .expect("sign");
            RelayMessage::event(SubscriptionId::new("s"), event).as_json()
        };
        let expiring = |at: u64| vec![nostr::Tag::expiration(nostr::Timestamp::from(at))];
        let checker = Checker::default();
        assert!(input_of(&frame(expiring(now - 60)), &checker, None).is_none());
        assert!(input_of(&frame(expiring(now + 3600)), &checker, None).is_some());
        assert!(input_of(&frame(Vec::new()), &checker, None).is_some());
    }

    #[test]
    fn only_the_events_a_read_can_take_are_remembered_the_others_still_reach_it() {
        let asked = [Keys::generate(), Keys::generate()];
        let stranger = Keys::generate();
        let authors: Vec<nostr::PublicKey> = asked.iter().map(|k| k.public_key()).collect();
        let session = crate::protocol::read::ReadSession::new(
            authors.chunks(1),
            Duration::from_secs(5),
            None,
        );
        let accepted = session.accepted_events().expect("a read takes kind:0s");
        let memory = crate::net::verified::VerifiedEvents::new();
        let checker = Checker::with_memory(memory.clone());
        let frame = |subscription: &str, keys: &Keys, kind: Kind| {
            let event = EventBuilder::new(kind, "{}")
                .sign_with_keys(keys)
                .expect("sign");
            RelayMessage::event(SubscriptionId::new(subscription), event).as_json()
        };
        let ignored = [
            frame("reprofile-kind0-0", &stranger, Kind::Metadata),
            frame("reprofile-kind0-0", &asked[1], Kind::Metadata),
            frame("reprofile-kind0-0", &asked[0], Kind::TextNote),
            frame("other-0", &asked[0], Kind::Metadata),
            frame("reprofile-kind0-7", &asked[0], Kind::Metadata),
        ];
        for text in &ignored {
            // Still handed to the session, which ignores it.
            assert!(input_of(text, &checker, Some(accepted.as_ref())).is_some());
        }
        assert!(memory.is_empty(), "nothing the read cannot take is kept");
        for text in [
            frame("reprofile-kind0-0", &asked[0], Kind::Metadata),
            frame("reprofile-kind0-1-again", &asked[1], Kind::Metadata),
        ] {
            assert!(input_of(&text, &checker, Some(accepted.as_ref())).is_some());
        }
        assert_eq!(memory.len(), 4, "two proofs and two texts");
        // Sent compactly or not, the same rule.
        let spaced = frame("reprofile-kind0-0", &stranger, Kind::Metadata).replacen(',', ", ", 1);
        assert!(input_of(&spaced, &checker, Some(accepted.as_ref())).is_some());
        assert_eq!(memory.len(), 4);
    }

    fn event_json() -> String {
        EventBuilder::new(Kind::Metadata, "{}")
            .sign_with_keys(&Keys::generate())
            .expect("sign")
            .as_json()
    }
}
