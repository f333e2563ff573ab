//! The read side of the relay edge: the newest kind:0 of each agent, with proof
//! that the relay's answer was complete.
//!
//! This module owns talking to relays for reading: one connection per relay
//! (or a few, with `read_connections`), kind:0 requests for many authors at once, and the completeness check. An
//! author's relay state counts as known only when the relay ended the stored
//! events of that author's subscription (EOSE). Anything else (the relay is
//! down, too slow, refuses with CLOSED, drops the connection, or this reader
//! falls behind) gives [`RelayObservation::Unreadable`] for every author of the
//! affected subscription, never [`RelayObservation::NoProfile`]: an unreadable
//! relay must never look like a missing profile, or the tool would republish
//! over a profile it never saw. A subscription that goes unanswered while the
//! relay answers others is asked again once, on a fresh subscription id.
//!
//! What it must not do: decide anything about profiles (that is the core's
//! job; this module only reports what the relay holds), write to relays, or
//! print or log keys. It only ever handles public keys, and logs through
//! `tracing` only.
//!
//! Why not `Client::fetch_events`: nostr-sdk returns `Ok` with no events for a
//! dead or silent relay (see `shared/spec/nostr-sdk-facts.md`), so this module
//! sends its own REQs and watches the relay's notification channel for
//! `EOSE` / `CLOSED` / status changes itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use nostr_sdk::pool::{RelayLimits, RelayNotification};
use nostr_sdk::{
    Client, ClientMessage, ClientOptions, Event, Filter, Kind, PublicKey, Relay, RelayMessage,
    RelayOptions, RelayStatus, SubscriptionId,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::core::model::{ExistingEvent, RelayObservation};

/// The most authors one REQ filter may name. Relays cap filters and results
/// (strfry: 500 events per filter), so batches stay small.
pub const MAX_AUTHORS_PER_FILTER: usize = 100;

/// How many subscriptions this reader keeps open on one connection at a time.
///
/// Sending every REQ at once would save a few round trips, but relays limit
/// concurrent subscriptions per connection (strfry allows 20 by default) and
/// refuse the rest. A window keeps the pipe full without hitting that limit:
/// each EOSE closes its subscription and lets the next REQ go out.
const MAX_SUBSCRIPTIONS_IN_FLIGHT: usize = 16;

/// Longest piece of relay-supplied text (CLOSED or NOTICE message) kept in a reason.
const MAX_RELAY_TEXT_CHARS: usize = 200;

/// Time limits for talking to relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayTimeouts {
    /// How long to wait for the websocket connection to open.
    pub connect: Duration,
    /// How long to wait for a subscription's EOSE after sending its REQ.
    pub query: Duration,
    /// How long to wait for a relay's OK after publishing (used by the write side).
    pub publish: Duration,
}

impl Default for RelayTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            query: Duration::from_secs(15),
            publish: Duration::from_secs(15),
        }
    }
}

/// How [`read_profiles`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Time limits.
    pub timeouts: RelayTimeouts,
    /// How many relays are read at the same time (at least 1 is used).
    pub max_concurrent_relays: usize,
    /// How many connections one relay's authors are spread over (at least 1
    /// is used; never more than it has batches). nostr-sdk checks each
    /// event's signature on its connection's one task, so a relay with
    /// thousands of agents is read faster over one connection per core.
    pub connections_per_relay: usize,
    /// How many authors one REQ filter names; values outside
    /// `1..=`[`MAX_AUTHORS_PER_FILTER`] are clamped into that range.
    pub authors_per_filter: usize,
    /// Advanced by the number of authors of each batch as it completes.
    pub progress: crate::progress::Progress,
    /// Whom `wss://` relays are trusted by.
    pub tls: crate::tls::Tls,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            timeouts: RelayTimeouts::default(),
            max_concurrent_relays: 8,
            connections_per_relay: 1,
            authors_per_filter: MAX_AUTHORS_PER_FILTER,
            progress: crate::progress::Progress::none(),
            tls: crate::tls::Tls::default(),
        }
    }
}

/// Reads the newest kind:0 of each author from each relay.
///
/// Input: relay URL (already rewritten, already validated as ws/wss) to the
/// authors to read there. Output: relay URL to (author pubkey hex to
/// observation). Every requested author gets exactly one observation (an
/// author listed twice for one relay is read once); a relay with no authors is
/// not contacted and maps to an empty table.
///
/// Each relay is read over one connection (or, with
/// `opts.connections_per_relay` above 1, its authors are split over that many
/// connections, each with whole batches), at most `opts.max_concurrent_relays`
/// relays at a time. "Newest" is NIP-01's order:
/// greatest `created_at`, ties broken by the lowest event id. Events that are
/// not kind 0, whose author was not asked for in that subscription, or whose
/// id or signature does not verify (nostr-sdk checks both before handing an
/// event over) are ignored.
///
/// This never fails as a whole: every problem becomes an
/// [`RelayObservation::Unreadable`] with a short reason for the authors it
/// concerns. All connections are closed before it returns.
pub async fn read_profiles(
    requests: BTreeMap<String, Vec<PublicKey>>,
    opts: &ReadOptions,
) -> BTreeMap<String, HashMap<String, RelayObservation>> {
    let connections = opts.connections_per_relay.max(1);
    let max_relays = opts.max_concurrent_relays.max(1);
    let per_filter = opts.authors_per_filter.clamp(1, MAX_AUTHORS_PER_FILTER);
    let mut results = BTreeMap::new();
    let mut tasks: JoinSet<(String, HashMap<String, RelayObservation>)> = JoinSet::new();
    // What each running task reads, so that a task that panics still gives its
    // authors an observation.
    let mut running: HashMap<tokio::task::Id, (String, Vec<PublicKey>)> = HashMap::new();

    for (url, authors) in requests {
        let authors = unique_authors(&authors);
        // Whole batches per connection: the same REQs as over one connection.
        let batches = authors.len().div_ceil(per_filter).max(1);
        let per_connection = batches.div_ceil(connections.min(batches)) * per_filter;
        results.insert(url.clone(), HashMap::with_capacity(authors.len()));
        // At most `max_relays` relays at a time, each over all its connections.
        while relays_running(&running) >= max_relays {
            collect_one(&mut tasks, &mut running, &mut results).await;
        }
        for share in split_authors(&authors, per_connection) {
            let task_opts = opts.clone();
            let task_url = url.clone();
            let task_authors = share.to_vec();
            let handle = tasks.spawn(async move {
                let observations = read_relay(&task_url, &task_authors, &task_opts).await;
                (task_url, observations)
            });
            running.insert(handle.id(), (url.clone(), share.to_vec()));
        }
    }
    while !tasks.is_empty() {
        collect_one(&mut tasks, &mut running, &mut results).await;
    }
    results
}

/// How many distinct relays the running tasks read.
fn relays_running(running: &HashMap<tokio::task::Id, (String, Vec<PublicKey>)>) -> usize {
    running
        .values()
        .map(|(url, _)| url.as_str())
        .collect::<HashSet<_>>()
        .len()
}

/// Waits for one relay task and files its observations.
async fn collect_one(
    tasks: &mut JoinSet<(String, HashMap<String, RelayObservation>)>,
    running: &mut HashMap<tokio::task::Id, (String, Vec<PublicKey>)>,
    results: &mut BTreeMap<String, HashMap<String, RelayObservation>>,
) {
    match tasks.join_next_with_id().await {
        Some(Ok((id, (url, observations)))) => {
            running.remove(&id);
            results.entry(url).or_default().extend(observations);
        }
        Some(Err(error)) => {
            if let Some((url, authors)) = running.remove(&error.id()) {
                tracing::warn!(relay = %url, %error, "relay reader task failed");
                let reason = format!("internal error while reading the relay: {error}");
                let observations = unique_authors(&authors)
                    .into_iter()
                    .map(|author| {
                        (
                            author.to_hex(),
                            RelayObservation::Unreadable(reason.clone()),
                        )
                    })
                    .collect::<Vec<_>>();
                results.entry(url).or_default().extend(observations);
            }
        }
        None => {}
    }
}

/// Reads one relay over one connection.
async fn read_relay(
    url: &str,
    authors: &[PublicKey],
    opts: &ReadOptions,
) -> HashMap<String, RelayObservation> {
    let authors = unique_authors(authors);
    if authors.is_empty() {
        return HashMap::new();
    }
    let per_filter = opts.authors_per_filter.clamp(1, MAX_AUTHORS_PER_FILTER);
    let mut query = ProfileQuery::new(authors.chunks(per_filter), opts.timeouts.query);
    query.progress = opts.progress.clone();

    // Room for every notification one window of subscriptions can produce
    // (nostr-sdk emits two per new event) with margin, so that a fast relay
    // does not overrun this reader.
    let channel_size = (MAX_SUBSCRIPTIONS_IN_FLIGHT * per_filter * 4).max(2048);
    match connect(url, opts.timeouts.connect, channel_size, &opts.tls).await {
        Ok(connection) => {
            let Connection {
                client,
                relay,
                notifications,
            } = connection;
            let send = |messages: Vec<ClientMessage<'static>>| {
                relay.batch_msg(messages).map_err(|error| error.to_string())
            };
            query.run(url, send, notifications).await;
            // Disconnects the relay and stops its connection task.
            client.shutdown().await;
        }
        Err(reason) => {
            tracing::warn!(relay = %url, %reason, "relay unreadable");
            query.fail_remaining(&reason);
        }
    }
    query.into_observations()
}

/// `authors` in shares of at most `size` (at least one share, maybe empty).
fn split_authors(authors: &[PublicKey], size: usize) -> Vec<&[PublicKey]> {
    if authors.is_empty() {
        return vec![authors];
    }
    authors.chunks(size.max(1)).collect()
}

/// The authors in first-seen order, each once.
fn unique_authors(authors: &[PublicKey]) -> Vec<PublicKey> {
    let mut seen = HashSet::with_capacity(authors.len());
    authors
        .iter()
        .copied()
        .filter(|author| seen.insert(*author))
        .collect()
}

/// An open connection to one relay, owned by one read or one publish batch.
pub(crate) struct Connection {
    pub(crate) client: Client,
    pub(crate) relay: Relay,
    pub(crate) notifications: Receiver<RelayNotification>,
}

/// Opens a connection: no signer and no automatic NIP-42 authentication (the
/// reader never authenticates; the publisher authenticates as each agent
/// itself), no automatic reconnect (a dead relay must fail fast, and a drop
/// must be seen rather than silently resumed), no size limits on incoming
/// events (a profile the sdk drops for its size would look missing).
/// Notifications are subscribed before connecting, so nothing (not even an
/// AUTH challenge sent at connect) can slip past.
pub(crate) async fn connect(
    url: &str,
    connect_timeout: Duration,
    channel_size: usize,
    tls: &crate::tls::Tls,
) -> Result<Connection, String> {
    let client = Client::builder()
        .websocket_transport(tls.websocket_transport())
        .opts(ClientOptions::new().automatic_authentication(false))
        .build();
    let relay_opts = RelayOptions::new()
        .reconnect(false)
        .limits(RelayLimits::disable())
        .notification_channel_size(channel_size);
    let relay = match client.pool().add_relay(url, relay_opts).await {
        Ok(_) => client.pool().relay(url).await,
        Err(error) => Err(error),
    };
    let relay = match relay {
        Ok(relay) => relay,
        Err(error) => {
            client.shutdown().await;
            return Err(format!("invalid relay URL: {error}"));
        }
    };
    // Listen before anything is sent, so no answer can slip past.
    let notifications = relay.notifications();
    let connected = tokio::time::timeout(connect_timeout, relay.try_connect(connect_timeout)).await;
    let failure = match connected {
        Ok(Ok(())) => None,
        // The transport reports its own timeout as the bare word "timeout".
        Ok(Err(error)) if error.to_string().eq_ignore_ascii_case("timeout") => Some(format!(
            "connection failed: no connection after {}",
            human_duration(connect_timeout)
        )),
        Ok(Err(error)) => Some(format!("connection failed: {error}")),
        Err(_) => Some(format!(
            "connection failed: no connection after {}",
            human_duration(connect_timeout)
        )),
    };
    if let Some(reason) = failure {
        client.shutdown().await;
        return Err(reason);
    }
    tracing::debug!(relay = %url, "connected");
    Ok(Connection {
        client,
        relay,
        notifications,
    })
}

/// Where one subscription (one batch of authors) stands.
#[derive(Debug)]
enum BatchState {
    /// Its REQ has not been sent yet.
    Waiting,
    /// Its REQ was sent at `sent`; EOSE is due by the deadline.
    InFlight { sent: Instant, deadline: Instant },
    /// The relay sent EOSE: the events seen are all it holds.
    Complete,
    /// The relay could not be read for this batch.
    Failed(String),
}

/// One batch of authors and its subscription.
struct Batch {
    id: SubscriptionId,
    authors: Vec<PublicKey>,
    state: BatchState,
    /// Whether it was already asked again on a fresh subscription.
    retried: bool,
}

impl Batch {
    /// The batch's one filter: kind:0 of its authors, without a limit.
    fn filter(&self) -> Filter {
        Filter::new()
            .kind(Kind::Metadata)
            .authors(self.authors.iter().copied())
    }
}

/// The state of reading one relay: batches, their progress, and the newest
/// event seen for each author.
struct ProfileQuery {
    batches: Vec<Batch>,
    batch_of_subscription: HashMap<SubscriptionId, usize>,
    batch_of_author: HashMap<PublicKey, usize>,
    newest: HashMap<PublicKey, Event>,
    query_timeout: Duration,
    last_notice: Option<String>,
    /// When the relay last ended a subscription: proof it was answering then.
    last_eose: Option<Instant>,
    /// CLOSEs and REQs of batches asked again, for the next write.
    retries: Vec<ClientMessage<'static>>,
    progress: crate::progress::Progress,
}

impl ProfileQuery {
    fn new<'a>(chunks: impl Iterator<Item = &'a [PublicKey]>, query_timeout: Duration) -> Self {
        let mut query = Self {
            batches: Vec::new(),
            batch_of_subscription: HashMap::new(),
            batch_of_author: HashMap::new(),
            newest: HashMap::new(),
            query_timeout,
            last_notice: None,
            last_eose: None,
            retries: Vec::new(),
            progress: crate::progress::Progress::none(),
        };
        for (index, chunk) in chunks.enumerate() {
            let id = SubscriptionId::new(format!("reprofile-kind0-{index}"));
            query.batch_of_subscription.insert(id.clone(), index);
            for author in chunk {
                query.batch_of_author.insert(*author, index);
            }
            query.batches.push(Batch {
                id,
                authors: chunk.to_vec(),
                state: BatchState::Waiting,
                retried: false,
            });
        }
        query
    }

    /// Sends the REQs (a window at a time) and follows the relay's answers
    /// until every batch is complete or failed.
    ///
    /// `send` hands messages to the connection (in order, without waiting);
    /// `notifications` must have been subscribed before anything was sent.
    async fn run(
        &mut self,
        url: &str,
        mut send: impl FnMut(Vec<ClientMessage<'static>>) -> Result<(), String>,
        mut notifications: Receiver<RelayNotification>,
    ) {
        let mut next_to_send = 0;
        let mut to_close: Vec<SubscriptionId> = Vec::new();
        loop {
            // Close finished subscriptions and open the next ones, in one write.
            let in_flight = self.in_flight_count();
            let mut messages: Vec<ClientMessage<'static>> =
                to_close.drain(..).map(ClientMessage::close).collect();
            messages.append(&mut self.retries);
            let mut sent_now = Vec::new();
            while in_flight + sent_now.len() < MAX_SUBSCRIPTIONS_IN_FLIGHT
                && next_to_send < self.batches.len()
            {
                let batch = &self.batches[next_to_send];
                messages.push(ClientMessage::req(batch.id.clone(), vec![batch.filter()]));
                sent_now.push(next_to_send);
                next_to_send += 1;
            }
            if !messages.is_empty() {
                if let Err(error) = send(messages) {
                    self.fail_remaining(&format!("could not send the request: {error}"));
                    return;
                }
                let sent = Instant::now();
                let deadline = sent + self.query_timeout;
                for index in sent_now {
                    self.batches[index].state = BatchState::InFlight { sent, deadline };
                }
            }

            let Some(deadline) = self.next_deadline() else {
                // Nothing in flight and nothing left to send: done.
                return;
            };

            match tokio::time::timeout_at(deadline, notifications.recv()).await {
                Err(_elapsed) => {
                    // A subscription went unanswered. When the relay ended other
                    // subscriptions after this one was sent, it is alive and lost
                    // just this one: ask once more on a fresh subscription.
                    if self.retry_timed_out(url, deadline) {
                        continue;
                    }
                    // Otherwise the relay is treated as unresponsive, and the
                    // batches not yet sent are not tried, so a silent relay
                    // costs one query timeout, not one per batch.
                    let mut reason = format!(
                        "timed out after {} waiting for EOSE",
                        human_duration(self.query_timeout)
                    );
                    if let Some(notice) = &self.last_notice {
                        let _ = write!(reason, " (last NOTICE from the relay: {notice})");
                    }
                    tracing::warn!(relay = %url, %reason, "relay unreadable");
                    self.fail_remaining(&reason);
                    return;
                }
                Ok(Err(RecvError::Lagged(missed))) => {
                    // Lost notifications may have held events or EOSEs of the
                    // open subscriptions: none of them can be trusted.
                    let reason = format!(
                        "timed out: the reader fell behind and lost {missed} relay messages before EOSE"
                    );
                    tracing::warn!(relay = %url, %reason, "relay unreadable");
                    // Close them, so the relay stops sending and frees its slots.
                    to_close.extend(self.fail_in_flight(&reason));
                }
                Ok(Err(RecvError::Closed)) => {
                    self.fail_remaining("connection closed before EOSE");
                    return;
                }
                Ok(Ok(notification)) => {
                    if let Some(reason) = self.handle(url, notification, &mut to_close) {
                        tracing::warn!(relay = %url, %reason, "relay unreadable");
                        self.fail_remaining(&reason);
                        return;
                    }
                }
            }
        }
    }

    /// Applies one notification. Returns a reason when the whole connection
    /// is lost.
    fn handle(
        &mut self,
        url: &str,
        notification: RelayNotification,
        to_close: &mut Vec<SubscriptionId>,
    ) -> Option<String> {
        match notification {
            RelayNotification::Message { message } => match message {
                RelayMessage::Event {
                    subscription_id,
                    event,
                } => self.accept_event(url, &subscription_id, event.into_owned()),
                RelayMessage::EndOfStoredEvents(subscription_id) => {
                    let progress = self.progress.clone();
                    if let Some(batch) = self.in_flight_batch(&subscription_id) {
                        batch.state = BatchState::Complete;
                        progress.inc(batch.authors.len() as u64);
                        to_close.push(subscription_id.into_owned());
                        self.last_eose = Some(Instant::now());
                    }
                }
                RelayMessage::Closed {
                    subscription_id,
                    message,
                } => {
                    if let Some(batch) = self.in_flight_batch(&subscription_id) {
                        let reason =
                            format!("relay closed the subscription: {}", relay_text(&message));
                        tracing::warn!(relay = %url, %reason, "relay unreadable for one batch");
                        batch.state = BatchState::Failed(reason);
                    }
                }
                RelayMessage::Notice(message) => {
                    tracing::debug!(relay = %url, notice = %relay_text(&message), "relay notice");
                    self.last_notice = Some(relay_text(&message));
                }
                other => {
                    tracing::debug!(relay = %url, message = ?other, "relay message ignored");
                }
            },
            RelayNotification::RelayStatus { status } => match status {
                RelayStatus::Disconnected
                | RelayStatus::Terminated
                | RelayStatus::Banned
                | RelayStatus::Sleeping => {
                    tracing::debug!(relay = %url, %status, "connection lost");
                    return Some("connection dropped before EOSE".to_owned());
                }
                RelayStatus::Initialized
                | RelayStatus::Pending
                | RelayStatus::Connecting
                | RelayStatus::Connected => {}
            },
            RelayNotification::Shutdown => {
                return Some("connection shut down before EOSE".to_owned());
            }
            // `Event` repeats what `Message` carries (and only for events new to
            // the client): the `Message` form is the one followed above.
            RelayNotification::Event { .. }
            | RelayNotification::Authenticated
            | RelayNotification::AuthenticationFailed => {}
        }
        None
    }

    /// Keeps `event` if it is a kind:0 by an author of that open subscription
    /// and newer, by NIP-01 order, than what was seen for that author.
    fn accept_event(&mut self, url: &str, subscription_id: &SubscriptionId, event: Event) {
        let Some(&index) = self.batch_of_subscription.get(subscription_id) else {
            tracing::debug!(relay = %url, id = %event.id, "event for an unknown subscription ignored");
            return;
        };
        if !matches!(self.batches[index].state, BatchState::InFlight { .. }) {
            tracing::debug!(relay = %url, id = %event.id, "event after the end of its subscription ignored");
            return;
        }
        if event.kind != Kind::Metadata {
            tracing::debug!(relay = %url, id = %event.id, kind = %event.kind, "event of another kind ignored");
            return;
        }
        if self.batch_of_author.get(&event.pubkey) != Some(&index) {
            tracing::debug!(relay = %url, id = %event.id, "event from an author not asked for ignored");
            return;
        }
        match self.newest.get(&event.pubkey) {
            Some(current) if !is_newer(&event, current) => {}
            _ => {
                self.newest.insert(event.pubkey, event);
            }
        }
    }

    /// Asks again, on a fresh subscription, for every batch whose deadline
    /// (`deadline`, just passed) went by without EOSE, when the relay ended
    /// another subscription after that batch was sent and the batch was not
    /// asked again before. Returns false, changing nothing, when any timed-out
    /// batch does not qualify: the relay is then unresponsive, not lossy.
    ///
    /// Events the lost subscription delivered are kept (they are signed
    /// kind:0s of its authors); only the fresh subscription's EOSE completes
    /// the batch, and anything later on the lost one is ignored.
    fn retry_timed_out(&mut self, url: &str, deadline: Instant) -> bool {
        let last_eose = self.last_eose;
        let timed_out: Vec<usize> = self
            .batches
            .iter()
            .enumerate()
            .filter(|(_, batch)| {
                matches!(batch.state, BatchState::InFlight { deadline: due, .. } if due <= deadline)
            })
            .map(|(index, _)| index)
            .collect();
        let qualifies = |batch: &Batch| match batch.state {
            BatchState::InFlight { sent, .. } => {
                !batch.retried && last_eose.is_some_and(|eose| eose > sent)
            }
            _ => false,
        };
        if timed_out.is_empty() || !timed_out.iter().all(|&i| qualifies(&self.batches[i])) {
            return false;
        }
        let sent = Instant::now();
        for index in timed_out {
            let batch = &mut self.batches[index];
            let fresh = SubscriptionId::new(format!("{}-again", batch.id));
            tracing::warn!(
                relay = %url,
                subscription = %batch.id,
                "no EOSE while the relay answered other subscriptions; asking again once"
            );
            self.batch_of_subscription.remove(&batch.id);
            self.batch_of_subscription.insert(fresh.clone(), index);
            self.retries.push(ClientMessage::close(std::mem::replace(
                &mut batch.id,
                fresh.clone(),
            )));
            self.retries
                .push(ClientMessage::req(fresh, vec![batch.filter()]));
            batch.retried = true;
            batch.state = BatchState::InFlight {
                sent,
                deadline: sent + self.query_timeout,
            };
        }
        true
    }

    fn in_flight_batch(&mut self, subscription_id: &SubscriptionId) -> Option<&mut Batch> {
        let index = *self.batch_of_subscription.get(subscription_id)?;
        let batch = &mut self.batches[index];
        matches!(batch.state, BatchState::InFlight { .. }).then_some(batch)
    }

    fn in_flight_count(&self) -> usize {
        self.batches
            .iter()
            .filter(|batch| matches!(batch.state, BatchState::InFlight { .. }))
            .count()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.batches
            .iter()
            .filter_map(|batch| match batch.state {
                BatchState::InFlight { deadline, .. } => Some(deadline),
                _ => None,
            })
            .min()
    }

    /// Marks the open subscriptions as failed and returns their ids.
    fn fail_in_flight(&mut self, reason: &str) -> Vec<SubscriptionId> {
        let mut failed = Vec::new();
        for batch in &mut self.batches {
            if matches!(batch.state, BatchState::InFlight { .. }) {
                batch.state = BatchState::Failed(reason.to_owned());
                failed.push(batch.id.clone());
            }
        }
        failed
    }

    /// Marks every batch that is not complete (open or not yet sent) as failed.
    fn fail_remaining(&mut self, reason: &str) {
        for batch in &mut self.batches {
            if matches!(
                batch.state,
                BatchState::Waiting | BatchState::InFlight { .. }
            ) {
                batch.state = BatchState::Failed(reason.to_owned());
            }
        }
    }

    /// One observation per author: the newest event or no profile for a
    /// complete batch, the batch's reason otherwise.
    fn into_observations(mut self) -> HashMap<String, RelayObservation> {
        let mut observations = HashMap::with_capacity(self.batch_of_author.len());
        for batch in &self.batches {
            for author in &batch.authors {
                let observation = match &batch.state {
                    BatchState::Complete => match self.newest.remove(author) {
                        Some(event) => RelayObservation::Newest(existing_event(event)),
                        None => RelayObservation::NoProfile,
                    },
                    BatchState::Failed(reason) => RelayObservation::Unreadable(reason.clone()),
                    // Unreachable by construction (run and fail_remaining leave no
                    // batch open), but an unfinished batch is never "no profile".
                    BatchState::Waiting | BatchState::InFlight { .. } => {
                        RelayObservation::Unreadable("read did not finish".to_owned())
                    }
                };
                observations.insert(author.to_hex(), observation);
            }
        }
        observations
    }
}

/// NIP-01 order for replaceable events: `candidate` replaces `current` when it
/// has a greater `created_at`, or the same `created_at` and a lower id (ids
/// compare as bytes, which is the order of their lower-case hex).
fn is_newer(candidate: &Event, current: &Event) -> bool {
    (candidate.created_at, std::cmp::Reverse(candidate.id))
        > (current.created_at, std::cmp::Reverse(current.id))
}

fn existing_event(event: Event) -> ExistingEvent {
    ExistingEvent {
        id: event.id.to_hex(),
        created_at: event.created_at.as_secs(),
        tags: event
            .tags
            .iter()
            .map(|tag| tag.as_slice().to_vec())
            .collect(),
        content: event.content,
    }
}

/// Relay-supplied text made safe for a reason: control characters escaped
/// (no terminal escapes reach an operator's screen) and the length capped.
fn relay_text(text: &str) -> String {
    capped_relay_text(text, MAX_RELAY_TEXT_CHARS)
}

/// Relay-supplied text with control characters escaped and at most
/// `max_chars` characters (then `…`).
pub(crate) fn capped_relay_text(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == max_chars {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// "15 s", "1.5 s", "250 ms".
pub(crate) fn human_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use nostr_sdk::{EventBuilder, Keys, Timestamp};

    use super::*;

    fn profile(keys: &Keys, created_at: u64, content: &str) -> Event {
        EventBuilder::new(Kind::Metadata, content)
            .custom_created_at(Timestamp::from_secs(created_at))
            .sign_with_keys(keys)
            .expect("sign")
    }

    #[test]
    fn newer_means_greater_created_at_then_lower_id() {
        let keys = Keys::generate();
        let old = profile(&keys, 100, "{}");
        let new = profile(&keys, 200, "{}");
        assert!(is_newer(&new, &old));
        assert!(!is_newer(&old, &new));

        let a = profile(&keys, 300, r#"{"v":1}"#);
        let b = profile(&keys, 300, r#"{"v":2}"#);
        let (low, high) = if a.id < b.id { (a, b) } else { (b, a) };
        assert!(
            low.id.to_hex() < high.id.to_hex(),
            "byte order is hex order"
        );
        assert!(is_newer(&low, &high));
        assert!(!is_newer(&high, &low));
        assert!(!is_newer(&low, &low), "an event is not newer than itself");
    }

    #[test]
    fn existing_event_keeps_id_time_content_and_tags() {
        let keys = Keys::generate();
        let event = EventBuilder::new(Kind::Metadata, r#"{"name":"x"}"#)
            .tags([nostr_sdk::Tag::parse(["auth", "a", "b"]).expect("tag")])
            .custom_created_at(Timestamp::from_secs(1_700_000_000))
            .sign_with_keys(&keys)
            .expect("sign");
        let converted = existing_event(event.clone());
        assert_eq!(converted.id, event.id.to_hex());
        assert_eq!(converted.created_at, 1_700_000_000);
        assert_eq!(converted.content, r#"{"name":"x"}"#);
        assert_eq!(
            converted.tags,
            vec![vec!["auth".to_owned(), "a".to_owned(), "b".to_owned()]]
        );
    }

    #[test]
    fn authors_are_read_once_each_in_first_seen_order() {
        let a = Keys::generate().public_key();
        let b = Keys::generate().public_key();
        assert_eq!(unique_authors(&[a, b, a, b, a]), vec![a, b]);
    }

    #[test]
    fn relay_text_escapes_control_characters_and_is_capped() {
        assert_eq!(
            relay_text("auth-required: \x1b[31mred"),
            "auth-required: \\u{1b}[31mred"
        );
        let long = "x".repeat(500);
        assert_eq!(relay_text(&long).chars().count(), MAX_RELAY_TEXT_CHARS + 1);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_secs(15)), "15 s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(human_duration(Duration::from_millis(250)), "250 ms");
    }

    fn event_message(id: &SubscriptionId, event: &Event) -> RelayNotification {
        RelayNotification::Message {
            message: RelayMessage::Event {
                subscription_id: std::borrow::Cow::Owned(id.clone()),
                event: std::borrow::Cow::Owned(event.clone()),
            },
        }
    }

    fn eose_message(id: &SubscriptionId) -> RelayNotification {
        RelayNotification::Message {
            message: RelayMessage::EndOfStoredEvents(std::borrow::Cow::Owned(id.clone())),
        }
    }

    /// Runs a query for `authors` (one batch each) against a scripted relay: `answer`
    /// gets the REQ's subscription id and returns the notifications the relay
    /// "sends", which go through a channel of `capacity`. Returns the
    /// observations and every message the query sent.
    async fn run_scripted(
        authors: &[PublicKey],
        capacity: usize,
        answer: impl Fn(&SubscriptionId) -> Vec<RelayNotification>,
    ) -> (HashMap<String, RelayObservation>, Vec<String>) {
        let (sender, receiver) = tokio::sync::broadcast::channel(capacity);
        let mut query = ProfileQuery::new(authors.chunks(1), Duration::from_secs(5));
        let mut sent = Vec::new();
        let send = |messages: Vec<ClientMessage<'static>>| {
            for message in messages {
                if let ClientMessage::Req {
                    subscription_id, ..
                } = &message
                {
                    for notification in answer(subscription_id) {
                        let _ = sender.send(notification);
                    }
                }
                sent.push(nostr_sdk::JsonUtil::as_json(&message));
            }
            Ok(())
        };
        query.run("ws://scripted", send, receiver).await;
        (query.into_observations(), sent)
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_reports_unreadable_not_no_profile() {
        let keys = Keys::generate();
        let author = keys.public_key();
        let event = profile(&keys, 100, "{}");
        // Ten events and the EOSE into a channel of two: the reader lags.
        let (observations, sent) = run_scripted(&[author], 2, |id| {
            let mut answer: Vec<_> = (0..10).map(|_| event_message(id, &event)).collect();
            answer.push(eose_message(id));
            answer
        })
        .await;
        match &observations[&author.to_hex()] {
            RelayObservation::Unreadable(reason) => {
                assert!(reason.starts_with("timed out"), "{reason}");
                assert!(reason.contains("lost"), "{reason}");
            }
            other => panic!("expected Unreadable, got {other:?}"),
        }
        assert!(
            sent.last().is_some_and(|m| m.starts_with(r#"["CLOSE""#)),
            "the abandoned subscription is closed: {sent:?}"
        );
    }

    #[tokio::test]
    async fn events_after_eose_do_not_change_the_answer() {
        let keys = Keys::generate();
        let author = keys.public_key();
        let other = Keys::generate().public_key();
        let stored = profile(&keys, 100, r#"{"v":1}"#);
        let live = profile(&keys, 200, r#"{"v":2}"#);
        // The first subscription ends, then a newer event arrives for it while
        // the second subscription is still open and being read.
        let first = SubscriptionId::new("reprofile-kind0-0");
        let (observations, sent) = run_scripted(&[author, other], 16, |id| {
            if *id == first {
                vec![
                    event_message(id, &stored),
                    eose_message(id),
                    event_message(id, &live),
                ]
            } else {
                vec![eose_message(id)]
            }
        })
        .await;
        assert_eq!(
            observations[&author.to_hex()],
            RelayObservation::Newest(existing_event(stored))
        );
        assert_eq!(observations[&other.to_hex()], RelayObservation::NoProfile);
        assert_eq!(sent.len(), 4, "two REQs, then two CLOSEs: {sent:?}");
    }

    #[tokio::test]
    async fn a_relay_with_no_authors_is_not_contacted() {
        let mut requests = BTreeMap::new();
        // Port 9 (discard) is not listened on here; contacting it would fail.
        requests.insert("ws://127.0.0.1:9".to_owned(), Vec::new());
        let results = read_profiles(requests, &ReadOptions::default()).await;
        assert_eq!(results.len(), 1);
        assert!(results["ws://127.0.0.1:9"].is_empty());
    }
}
