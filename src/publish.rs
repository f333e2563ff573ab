//! Publishing signed kind:0 events to a relay (the write side of the relay edge).
//!
//! [`publish_all`] delivers a batch of already signed events to one relay over
//! one connection and says, for each event, whether the relay accepted it,
//! refused it, or could not be made to answer.
//!
//! How:
//! - **Pipelining.** Up to [`PublishOptions::max_in_flight`] EVENT messages
//!   await their OK at once; every OK frees a slot for the next event. The
//!   module sends the EVENT messages itself and matches the relay's `OK`
//!   answers by event id from the connection's notification channel (which is
//!   subscribed before connecting), each against its own deadline
//!   ([`PublishOptions::publish_timeout`]). nostr-sdk's `send_event_to` is not
//!   used: it waits for each OK in turn, with a timeout fixed at 10 s inside the
//!   crate, and it authenticates only with the client's one signer.
//! - **Relay answers** are classified by [`classify_ok`] (core); this module
//!   only carries the decision out. `rate-limited:` resends the *same* signed
//!   event (same id; never re-signed) after [`Backoff::delay`], with jitter.
//! - **NIP-42.** `auth-required:` makes this module authenticate the
//!   connection (a kind 22242 event with the relay's latest `AUTH` challenge
//!   and the relay URL) as the agent that signed the event, or as
//!   [`PublishOptions::service_keys`] when set, then resend the event. Auth is
//!   per connection, once per distinct identity the relay asks for. A
//!   challenge the relay sent at connect time, before anything asked for auth,
//!   is remembered and used. While the connection has no authenticated
//!   identity yet and an authentication is under way, no new EVENT is sent and
//!   events of other agents that were answered `auth-required:` wait for that
//!   first authentication and are then resent (most relays accept writes from
//!   any authenticated connection; one that wants each author authenticated
//!   says `auth-required:` again, and that agent authenticates too). This
//!   matters because relays such as nostr-relay-builder issue a fresh
//!   challenge for every unauthenticated EVENT and forget old ones; an AUTH
//!   refused while a newer challenge has arrived is retried with the newest
//!   one (bounded). An event still answered `auth-required:` after its
//!   identity authenticated is refused with the relay's message.
//! - **Lost connection.** Events in flight when the connection drops are
//!   reported as failed (the relay may or may not have stored them; apply reads
//!   the profiles back anyway); the rest go on over a new connection, at most
//!   [`MAX_RECONNECTS`] times per batch.
//!
//! - **Stopping.** With [`PublishOptions::stop`] set, no new EVENT is sent
//!   once the flag is up (nor sent again after `rate-limited:` or
//!   `auth-required:`), and with `sign_in_as_author` no new connection is
//!   started; events already sent get their OK or time out. What was not
//!   sent is [`Delivery::NotSent`].
//!
//! Everything is bounded: each event has a deadline per attempt, retries and
//! reconnects are capped, relay-supplied text is capped in length. Keys are
//! used to sign AUTH events and are never logged. The client (and with it
//! every background task of the connection) is shut down before
//! [`publish_all`] returns.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nostr::{Event, EventBuilder, EventId, Keys, PublicKey};
use nostr_sdk::pool::RelayNotification;
use nostr_sdk::{Client, ClientMessage, Relay, RelayMessage};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio::time::Instant;

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::core::apply::{classify_ok, Backoff, PublishAnswer};
use crate::protocol::nip42::Identity;
use crate::protocol::write::AuthorPublish;
use crate::relay::{connection_lost, human_duration, relay_text, Connection};

/// How many times one batch may open a new connection after losing one.
pub const MAX_RECONNECTS: u32 = 3;

/// How many AUTH events one identity may send on one connection (a refused
/// AUTH is retried only when the relay sent a newer challenge meanwhile).
const MAX_AUTH_ATTEMPTS: u32 = 3;

/// How many `auth-required:` answers one event may get on one connection
/// before it counts as refused.
const MAX_AUTH_DEMANDS: u32 = 3;

/// How often a publisher waiting on the relay looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

pub use crate::protocol::write::Delivery;

/// One event to publish, with the key of the agent that signed it (used to
/// answer a NIP-42 challenge as that agent).
#[derive(Debug, Clone)]
pub struct PublishItem {
    /// The signed event.
    pub event: Event,
    /// The agent's keys.
    pub keys: Keys,
    /// Who a connection of its own signs in as, on a relay that wants each
    /// author signed in ([`PublishOptions::sign_in_as_author`]): the agent's
    /// keys with its NIP-OA tag and the relay as the store names it. `None`:
    /// the agent's keys, no tag, the relay's URL as published to.
    pub sign_in: Option<Identity>,
}

/// How to publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Wait for the connection.
    pub connect_timeout: Duration,
    /// Wait for each OK (per attempt), and for the answer to an AUTH.
    pub publish_timeout: Duration,
    /// Retries of `rate-limited:` answers.
    pub backoff: Backoff,
    /// Events in flight at once on one connection (at least 1 is used).
    pub max_in_flight: usize,
    /// A service key to authenticate with (NIP-42) instead of the agent's,
    /// on the shared connection (not with `sign_in_as_author`).
    pub service_keys: Option<Keys>,
    /// Publish each event over a connection of its own, signed in (NIP-42)
    /// as its author before the event goes: what a relay that admits one
    /// identity per connection and checks the author (Buzz) needs.
    pub sign_in_as_author: bool,
    /// With `sign_in_as_author`: how many such connections are open at once
    /// (at least 1 is used).
    pub max_author_sessions: usize,
    /// Whom `wss://` relays are trusted by.
    pub tls: crate::tls::Tls,
    /// Once set, nothing new is sent (see the module's "Stopping").
    pub stop: Option<Arc<AtomicBool>>,
}

impl PublishOptions {
    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(15),
            backoff: Backoff::default(),
            max_in_flight: 64,
            service_keys: None,
            sign_in_as_author: false,
            max_author_sessions: 16,
            tls: crate::tls::Tls::default(),
            stop: None,
        }
    }
}

/// Publishes every item to `url`; one delivery per item, in order. Never
/// fails as a whole.
///
/// Items carrying the same event (same id) are sent once and share the
/// delivery.
pub async fn publish_all(
    url: &str,
    items: Vec<PublishItem>,
    opts: &PublishOptions,
) -> Vec<Delivery> {
    if items.is_empty() {
        return Vec::new();
    }
    if opts.sign_in_as_author {
        return publish_as_authors(url, items, opts).await;
    }
    let item_count = items.len();
    let mut batch = Pipeline::new(items, opts);
    batch.run(url).await;
    batch.into_deliveries(item_count)
}

/// Publishes each distinct event over a connection of its own, signed in as
/// its author ([`AuthorPublish`]), at most `opts.max_author_sessions` at a
/// time; one delivery per item, in order. A refusal of one agent (no NIP-OA
/// tag, a tag by a non-member) holds back no other.
async fn publish_as_authors(
    url: &str,
    items: Vec<PublishItem>,
    opts: &PublishOptions,
) -> Vec<Delivery> {
    let mut first_item: HashMap<EventId, usize> = HashMap::new();
    let mut job_of_item = Vec::with_capacity(items.len());
    let mut jobs: Vec<(Event, Identity)> = Vec::new();
    for item in items {
        let job = *first_item.entry(item.event.id).or_insert_with(|| {
            let identity = item.sign_in.clone().unwrap_or_else(|| Identity {
                keys: item.keys.clone(),
                auth_tag: None,
                relay_tag: url.to_owned(),
                label: format!("agent {}", item.event.pubkey.to_hex()),
            });
            jobs.push((item.event.clone(), identity));
            jobs.len() - 1
        });
        job_of_item.push(job);
    }
    let limit = Arc::new(Semaphore::new(opts.max_author_sessions.max(1)));
    let mut tasks = JoinSet::new();
    for (job, (event, identity)) in jobs.into_iter().enumerate() {
        let limit = Arc::clone(&limit);
        let url = url.to_owned();
        let opts = opts.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            if opts.stopping() {
                return (job, Delivery::NotSent);
            }
            let mut session = AuthorPublish::new(
                event,
                identity,
                true,
                opts.publish_timeout,
                opts.backoff,
                jitter(),
                std::time::Instant::now(),
            );
            let checker = crate::verified::Checker::default();
            let delivery =
                match crate::wire::connect(&url, opts.connect_timeout, &opts.tls, checker).await {
                    Ok(mut connection) => {
                        crate::wire::drive(&mut session, &mut connection).await;
                        connection.close().await;
                        session.delivery().cloned().unwrap_or_else(|| {
                            Delivery::Failed("publishing did not finish".to_owned())
                        })
                    }
                    Err(reason) => Delivery::Failed(reason),
                };
            (job, delivery)
        });
    }
    let mut deliveries: Vec<Option<Delivery>> = vec![None; first_item.len()];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((job, delivery)) => deliveries[job] = Some(delivery),
            Err(error) => tracing::warn!(relay = %url, %error, "publish task failed"),
        }
    }
    job_of_item
        .into_iter()
        .map(|job| {
            deliveries[job]
                .clone()
                .unwrap_or_else(|| Delivery::Failed("internal error while publishing".to_owned()))
        })
        .collect()
}

/// Where one distinct event stands.
#[derive(Debug)]
enum JobState {
    /// In the ready queue, to be sent.
    Ready,
    /// Sent; its OK is awaited.
    InFlight,
    /// Rate-limited; waits in the backoff heap.
    Backoff,
    /// Answered `auth-required:`; waits for the connection to authenticate.
    AwaitingAuth,
    /// Finished.
    Done(Delivery),
}

/// One distinct event and the items that carry it.
struct Job {
    event: Event,
    keys: Keys,
    items: Vec<usize>,
    state: JobState,
    /// Rate-limited retries used so far.
    retries: u32,
    /// `auth-required:` answers on the current connection.
    auth_demands: u32,
    /// The connection's auth epoch when the event was last sent.
    sent_epoch: u64,
}

/// The identity an authentication is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthAs {
    Agent,
    Service,
}

impl AuthAs {
    fn describe(self) -> &'static str {
        match self {
            AuthAs::Agent => "the agent",
            AuthAs::Service => "the service key",
        }
    }
}

/// An authentication under way for one identity on one connection.
struct PendingAuth {
    keys: Keys,
    identity: AuthAs,
    /// Jobs of this identity, to resend once authenticated.
    waiting: Vec<usize>,
    /// Jobs of other identities that wait for the connection's first
    /// authentication (many relays accept writes from any authenticated
    /// connection); resent when it ends, whatever the outcome.
    bystanders: Vec<usize>,
    /// The AUTH event sent, and the challenge number it answered.
    sent: Option<(EventId, u64)>,
    attempts: u32,
    deadline: Instant,
    /// The `auth-required:` message that started it.
    demand: String,
}

/// The NIP-42 state of one connection.
#[derive(Default)]
struct AuthState {
    /// The latest challenge the relay sent, and its number (1-based).
    challenge: Option<String>,
    challenge_seq: u64,
    /// Authenticated identities, with the epoch their authentication made.
    authed: HashMap<PublicKey, u64>,
    /// Counts successful authentications on this connection.
    epoch: u64,
    pending: HashMap<PublicKey, PendingAuth>,
    /// AUTH event id to the identity it authenticates.
    by_event: HashMap<EventId, PublicKey>,
}

impl AuthState {
    /// No new EVENT is sent while the connection is not authenticated at all
    /// and an authentication is under way: each unauthenticated EVENT may
    /// make the relay replace its challenge.
    fn holds_sending(&self) -> bool {
        self.authed.is_empty() && !self.pending.is_empty()
    }
}

/// An open connection to the relay.
struct Link {
    client: Client,
    relay: Relay,
    notifications: Receiver<RelayNotification>,
    auth: AuthState,
}

/// How a connection's work ended.
enum LinkEnd {
    /// Every job is done.
    Finished,
    /// The connection was lost (or could not be written to).
    Lost,
}

/// The whole batch: jobs, queues and what is in flight.
struct Pipeline<'a> {
    opts: &'a PublishOptions,
    jobs: Vec<Job>,
    ready: VecDeque<usize>,
    /// Rate-limited jobs by the time they may be resent.
    backoff: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Event id to (job, send number) for the EVENTs awaiting OK.
    in_flight: HashMap<EventId, (usize, u64)>,
    /// Deadlines of sends, in send order (all sends share one timeout, so
    /// this is also deadline order); entries whose send number no longer
    /// matches `in_flight` are stale and skipped.
    deadlines: VecDeque<(Instant, EventId, u64)>,
    send_seq: u64,
    remaining: usize,
}

impl<'a> Pipeline<'a> {
    fn new(items: Vec<PublishItem>, opts: &'a PublishOptions) -> Self {
        let mut jobs: Vec<Job> = Vec::new();
        let mut by_id: HashMap<EventId, usize> = HashMap::new();
        for (index, item) in items.into_iter().enumerate() {
            match by_id.get(&item.event.id) {
                Some(&job) => jobs[job].items.push(index),
                None => {
                    by_id.insert(item.event.id, jobs.len());
                    jobs.push(Job {
                        event: item.event,
                        keys: item.keys,
                        items: vec![index],
                        state: JobState::Ready,
                        retries: 0,
                        auth_demands: 0,
                        sent_epoch: 0,
                    });
                }
            }
        }
        Self {
            opts,
            ready: (0..jobs.len()).collect(),
            remaining: jobs.len(),
            jobs,
            backoff: BinaryHeap::new(),
            in_flight: HashMap::new(),
            deadlines: VecDeque::new(),
            send_seq: 0,
        }
    }

    fn into_deliveries(self, item_count: usize) -> Vec<Delivery> {
        let mut deliveries = vec![None; item_count];
        for job in self.jobs {
            let delivery = match job.state {
                JobState::Done(delivery) => delivery,
                // Unreachable by construction (run finishes every job).
                _ => Delivery::Failed("publishing did not finish".to_owned()),
            };
            for index in job.items {
                deliveries[index] = Some(delivery.clone());
            }
        }
        deliveries
            .into_iter()
            .map(|delivery| {
                delivery.unwrap_or_else(|| Delivery::Failed("internal error".to_owned()))
            })
            .collect()
    }

    /// Connects, publishes, and reconnects after a lost connection (bounded)
    /// until every job is done.
    async fn run(&mut self, url: &str) {
        let channel_size = self.max_in_flight().saturating_mul(8).max(4096);
        let mut reconnects = 0;
        let tls = &self.opts.tls;
        loop {
            if self.opts.stopping() {
                self.send_no_more();
                if self.remaining == 0 {
                    return;
                }
            }
            let mut link = match connect(url, self.opts.connect_timeout, channel_size, tls).await {
                Ok(link) => link,
                Err(reason) if reconnects == 0 => {
                    tracing::warn!(relay = %url, %reason, "cannot publish");
                    self.fail_remaining(&reason);
                    return;
                }
                Err(reason) => {
                    tracing::warn!(relay = %url, %reason, "reconnect failed");
                    if reconnects >= MAX_RECONNECTS {
                        self.fail_remaining(&format!(
                            "connection lost; reconnecting failed: {reason}"
                        ));
                        return;
                    }
                    reconnects += 1;
                    self.pause_before_reconnect(reconnects).await;
                    continue;
                }
            };
            tracing::debug!(relay = %url, jobs = self.remaining, "connected for publishing");
            let end = self.drive(url, &mut link).await;
            // Disconnects and stops the connection's tasks.
            link.client.shutdown().await;
            match end {
                LinkEnd::Finished => return,
                LinkEnd::Lost => {
                    self.connection_lost(link.auth);
                    if self.remaining == 0 {
                        return;
                    }
                    if reconnects >= MAX_RECONNECTS {
                        self.fail_remaining(&format!(
                            "connection lost; gave up after {MAX_RECONNECTS} reconnects"
                        ));
                        return;
                    }
                    reconnects += 1;
                    tracing::info!(relay = %url, reconnects, left = self.remaining, "connection lost; reconnecting");
                    self.pause_before_reconnect(reconnects).await;
                }
            }
        }
    }

    async fn pause_before_reconnect(&self, reconnect: u32) {
        let backoff = &self.opts.backoff;
        let delay = backoff.delay(reconnect, jitter()).unwrap_or(
            backoff
                .max
                .min(backoff.initial.saturating_mul(1 << reconnect.min(16))),
        );
        tokio::time::sleep(delay).await;
    }

    fn max_in_flight(&self) -> usize {
        self.opts.max_in_flight.max(1)
    }

    /// Publishes over one connection until every job is done or the
    /// connection is lost.
    async fn drive(&mut self, url: &str, link: &mut Link) -> LinkEnd {
        loop {
            let now = Instant::now();
            self.expire(link, now);
            while let Some(Reverse((due, job))) = self.backoff.peek().copied() {
                if due > now {
                    break;
                }
                self.backoff.pop();
                self.jobs[job].state = JobState::Ready;
                self.ready.push_back(job);
            }
            if self.opts.stopping() {
                self.send_no_more();
            }
            if self.remaining == 0 {
                return LinkEnd::Finished;
            }
            if let Err(error) = self.fill(link) {
                tracing::debug!(relay = %url, %error, "cannot send");
                return LinkEnd::Lost;
            }
            let Some(wake) = self.next_wakeup(link) else {
                // Nothing is pending anywhere, yet jobs remain: cannot happen,
                // but never wait forever.
                self.fail_remaining("internal error: nothing left to wait for");
                return LinkEnd::Finished;
            };
            // A stop must be seen while waiting, not only at the next answer.
            let wake = match self.opts.stop {
                Some(_) => wake.min(Instant::now() + STOP_POLL),
                None => wake,
            };
            match tokio::time::timeout_at(wake, link.notifications.recv()).await {
                Err(_) => {}
                Ok(Ok(notification)) => {
                    if self.handle(url, link, notification).is_err() {
                        return LinkEnd::Lost;
                    }
                }
                Ok(Err(RecvError::Lagged(missed))) => {
                    // Answers may be lost; their events will time out.
                    tracing::warn!(relay = %url, missed, "publisher fell behind the relay's answers");
                }
                Ok(Err(RecvError::Closed)) => return LinkEnd::Lost,
            }
        }
    }

    /// Sends ready jobs while the window has room.
    fn fill(&mut self, link: &mut Link) -> Result<(), String> {
        if link.auth.holds_sending() {
            return Ok(());
        }
        let room = self.max_in_flight().saturating_sub(self.in_flight.len());
        if room == 0 || self.ready.is_empty() {
            return Ok(());
        }
        let take = room.min(self.ready.len());
        let batch: Vec<usize> = self.ready.drain(..take).collect();
        let messages: Vec<ClientMessage<'_>> = batch
            .iter()
            .map(|&job| ClientMessage::Event(std::borrow::Cow::Borrowed(&self.jobs[job].event)))
            .collect();
        if let Err(error) = link.relay.batch_msg(messages) {
            // Not sent: back to the front of the queue, in order.
            for &job in batch.iter().rev() {
                self.ready.push_front(job);
            }
            return Err(error.to_string());
        }
        let deadline = Instant::now() + self.opts.publish_timeout;
        for job in batch {
            self.send_seq += 1;
            let id = self.jobs[job].event.id;
            self.jobs[job].state = JobState::InFlight;
            self.jobs[job].sent_epoch = link.auth.epoch;
            self.in_flight.insert(id, (job, self.send_seq));
            self.deadlines.push_back((deadline, id, self.send_seq));
        }
        Ok(())
    }

    /// The earliest time something must happen without a relay message.
    fn next_wakeup(&mut self, link: &Link) -> Option<Instant> {
        self.drop_stale_deadlines();
        let flight = self.deadlines.front().map(|(deadline, _, _)| *deadline);
        let backoff = self.backoff.peek().map(|Reverse((due, _))| *due);
        let auth = link.auth.pending.values().map(|p| p.deadline).min();
        [flight, backoff, auth].into_iter().flatten().min()
    }

    fn drop_stale_deadlines(&mut self) {
        while let Some((_, id, seq)) = self.deadlines.front() {
            match self.in_flight.get(id) {
                Some((_, live)) if live == seq => break,
                _ => {
                    self.deadlines.pop_front();
                }
            }
        }
    }

    /// Fails the sends and authentications whose time is up.
    fn expire(&mut self, link: &mut Link, now: Instant) {
        loop {
            self.drop_stale_deadlines();
            match self.deadlines.front() {
                Some((deadline, id, _)) if *deadline <= now => {
                    let id = *id;
                    self.deadlines.pop_front();
                    if let Some((job, _)) = self.in_flight.remove(&id) {
                        let reason = format!(
                            "no OK from the relay within {}",
                            human_duration(self.opts.publish_timeout)
                        );
                        self.finish(job, Delivery::Failed(reason));
                    }
                }
                _ => break,
            }
        }
        let expired: Vec<PublicKey> = link
            .auth
            .pending
            .iter()
            .filter(|(_, pending)| pending.deadline <= now)
            .map(|(pubkey, _)| *pubkey)
            .collect();
        for pubkey in expired {
            let Some(pending) = link.auth.pending.remove(&pubkey) else {
                continue;
            };
            let waited = human_duration(self.opts.publish_timeout);
            let reason = match pending.sent {
                Some((auth_id, _)) => {
                    link.auth.by_event.remove(&auth_id);
                    format!(
                        "{} (no answer to the NIP-42 authentication as {} within {waited})",
                        pending.demand,
                        pending.identity.describe()
                    )
                }
                None => format!(
                    "{} (the relay sent no NIP-42 challenge within {waited})",
                    pending.demand
                ),
            };
            for job in pending.waiting.into_iter().chain(pending.bystanders) {
                self.finish(job, Delivery::Failed(reason.clone()));
            }
        }
    }

    /// Handles one notification; `Err` means the connection is lost.
    fn handle(
        &mut self,
        url: &str,
        link: &mut Link,
        notification: RelayNotification,
    ) -> Result<(), ()> {
        match notification {
            RelayNotification::Message { message } => match message {
                RelayMessage::Ok {
                    event_id,
                    status,
                    message,
                } => {
                    if let Some(pubkey) = link.auth.by_event.remove(&event_id) {
                        return self.auth_answered(url, link, pubkey, status, &message);
                    }
                    match self.in_flight.remove(&event_id) {
                        Some((job, _)) => self.answered(url, link, job, status, &message)?,
                        None => {
                            tracing::debug!(relay = %url, id = %event_id, "OK for no event in flight ignored");
                        }
                    }
                }
                RelayMessage::Auth { challenge } => {
                    link.auth.challenge = Some(challenge.into_owned());
                    link.auth.challenge_seq += 1;
                    // Authentications that were waiting for a challenge.
                    let waiting: Vec<PublicKey> = link
                        .auth
                        .pending
                        .iter()
                        .filter(|(_, pending)| pending.sent.is_none())
                        .map(|(pubkey, _)| *pubkey)
                        .collect();
                    for pubkey in waiting {
                        self.send_auth(link, pubkey)?;
                    }
                }
                RelayMessage::Notice(text) => {
                    tracing::debug!(relay = %url, notice = %relay_text(&text), "relay notice");
                }
                _ => {}
            },
            other => {
                if let Some(why) = connection_lost(&other) {
                    tracing::debug!(relay = %url, why, "connection lost");
                    return Err(());
                }
            }
        }
        Ok(())
    }

    /// Acts on the relay's OK for a job's event.
    fn answered(
        &mut self,
        url: &str,
        link: &mut Link,
        job: usize,
        accepted: bool,
        message: &str,
    ) -> Result<(), ()> {
        match classify_ok(accepted, message) {
            PublishAnswer::Accepted => self.finish(job, Delivery::Accepted),
            PublishAnswer::Refused(message) => {
                self.finish(job, Delivery::Refused(relay_text(&message)));
            }
            PublishAnswer::RateLimited(message) => {
                let retry = self.jobs[job].retries + 1;
                match self.opts.backoff.delay(retry, jitter()) {
                    Some(delay) => {
                        tracing::debug!(relay = %url, id = %self.jobs[job].event.id, retry, ?delay, "rate-limited; will resend");
                        self.jobs[job].retries = retry;
                        self.jobs[job].state = JobState::Backoff;
                        self.backoff.push(Reverse((Instant::now() + delay, job)));
                    }
                    None => {
                        let reason = format!(
                            "{} (gave up after {} retries)",
                            relay_text(&message),
                            retry - 1
                        );
                        self.finish(job, Delivery::Failed(reason));
                    }
                }
            }
            PublishAnswer::AuthRequired(message) => {
                self.auth_required(url, link, job, relay_text(&message))?
            }
        }
        Ok(())
    }

    /// A job's event was answered `auth-required:`.
    fn auth_required(
        &mut self,
        url: &str,
        link: &mut Link,
        job: usize,
        demand: String,
    ) -> Result<(), ()> {
        self.jobs[job].auth_demands += 1;
        if self.jobs[job].auth_demands > MAX_AUTH_DEMANDS {
            self.finish(job, Delivery::Refused(demand));
            return Ok(());
        }
        let opts = self.opts;
        let (keys, identity) = match &opts.service_keys {
            Some(keys) => (keys.clone(), AuthAs::Service),
            None => (self.jobs[job].keys.clone(), AuthAs::Agent),
        };
        let pubkey = keys.public_key();
        if let Some(&authed_at) = link.auth.authed.get(&pubkey) {
            if self.jobs[job].sent_epoch < authed_at {
                // Sent before that authentication completed: try again.
                self.jobs[job].state = JobState::Ready;
                self.ready.push_front(job);
            } else {
                // Authenticated, and still refused.
                self.finish(job, Delivery::Refused(demand));
            }
            return Ok(());
        }
        self.jobs[job].state = JobState::AwaitingAuth;
        if let Some(pending) = link.auth.pending.get_mut(&pubkey) {
            pending.waiting.push(job);
            return Ok(());
        }
        if link.auth.authed.is_empty() {
            // The connection's first authentication is under way (as another
            // identity): wait for it rather than answer a challenge the relay
            // may be about to replace. A relay that wants this identity in
            // particular will say so again afterwards.
            if let Some(pending) = link.auth.pending.values_mut().next() {
                pending.bystanders.push(job);
                return Ok(());
            }
        }
        tracing::debug!(relay = %url, identity = identity.describe(), %pubkey, "relay demands NIP-42 authentication");
        let pending = PendingAuth {
            keys,
            identity,
            waiting: vec![job],
            bystanders: Vec::new(),
            sent: None,
            attempts: 0,
            deadline: Instant::now() + self.opts.publish_timeout,
            demand,
        };
        link.auth.pending.insert(pubkey, pending);
        self.send_auth(link, pubkey)
    }

    /// Sends an AUTH for `pubkey`'s pending authentication with the latest
    /// challenge, if one is known (otherwise it waits for one).
    fn send_auth(&mut self, link: &mut Link, pubkey: PublicKey) -> Result<(), ()> {
        let Some(challenge) = link.auth.challenge.clone() else {
            return Ok(());
        };
        let challenge_seq = link.auth.challenge_seq;
        let Some(pending) = link.auth.pending.get_mut(&pubkey) else {
            return Ok(());
        };
        let signed =
            EventBuilder::auth(challenge, link.relay.url().clone()).sign_with_keys(&pending.keys);
        let event = match signed {
            Ok(event) => event,
            Err(error) => {
                let pending = link.auth.pending.remove(&pubkey).expect("pending auth");
                let reason = format!(
                    "{} (could not sign the NIP-42 authentication: {error})",
                    pending.demand
                );
                for job in pending.waiting {
                    self.finish(job, Delivery::Failed(reason.clone()));
                }
                self.requeue_front(pending.bystanders);
                return Ok(());
            }
        };
        let auth_id = event.id;
        pending.sent = Some((auth_id, challenge_seq));
        pending.attempts += 1;
        pending.deadline = Instant::now() + self.opts.publish_timeout;
        link.auth.by_event.insert(auth_id, pubkey);
        link.relay
            .send_msg(ClientMessage::auth(event))
            .map_err(|error| {
                tracing::debug!(%error, "cannot send AUTH");
            })
    }

    /// The relay answered an AUTH.
    fn auth_answered(
        &mut self,
        url: &str,
        link: &mut Link,
        pubkey: PublicKey,
        accepted: bool,
        message: &str,
    ) -> Result<(), ()> {
        let Some(pending) = link.auth.pending.get(&pubkey) else {
            return Ok(());
        };
        if accepted {
            let pending = link.auth.pending.remove(&pubkey).expect("pending auth");
            link.auth.epoch += 1;
            link.auth.authed.insert(pubkey, link.auth.epoch);
            tracing::debug!(relay = %url, identity = pending.identity.describe(), %pubkey, "authenticated (NIP-42)");
            self.requeue_front(pending.waiting.into_iter().chain(pending.bystanders));
            return Ok(());
        }
        let used_seq = pending.sent.map_or(0, |(_, seq)| seq);
        if link.auth.challenge_seq > used_seq && pending.attempts < MAX_AUTH_ATTEMPTS {
            // The relay has a newer challenge: answer that one.
            tracing::debug!(relay = %url, message = %relay_text(message), "AUTH refused; retrying with the newest challenge");
            return self.send_auth(link, pubkey);
        }
        let pending = link.auth.pending.remove(&pubkey).expect("pending auth");
        let reason = format!(
            "{} (NIP-42 authentication as {} was refused: {})",
            pending.demand,
            pending.identity.describe(),
            relay_text(message)
        );
        tracing::warn!(relay = %url, %reason, "authentication refused");
        for job in pending.waiting {
            self.finish(job, Delivery::Failed(reason.clone()));
        }
        // Other identities may fare better: their events go again.
        self.requeue_front(pending.bystanders);
        Ok(())
    }

    /// After a lost connection: what was in flight failed; what waited for
    /// that connection's authentication goes back to the queue.
    fn connection_lost(&mut self, auth: AuthState) {
        let lost: Vec<usize> = self.in_flight.drain().map(|(_, (job, _))| job).collect();
        self.deadlines.clear();
        let mut lost_sorted = lost;
        lost_sorted.sort_unstable();
        for job in lost_sorted {
            self.finish(
                job,
                Delivery::Failed("connection lost before the relay answered".to_owned()),
            );
        }
        let waiting: Vec<usize> = auth
            .pending
            .into_values()
            .flat_map(|pending| pending.waiting.into_iter().chain(pending.bystanders))
            .collect();
        self.requeue_front(waiting);
        for job in &mut self.jobs {
            job.auth_demands = 0;
            job.sent_epoch = 0;
        }
    }

    /// Puts jobs back at the front of the queue, in item order.
    fn requeue_front(&mut self, jobs: impl IntoIterator<Item = usize>) {
        let mut jobs: Vec<usize> = jobs.into_iter().collect();
        jobs.sort_unstable();
        for &job in jobs.iter().rev() {
            if !matches!(self.jobs[job].state, JobState::Done(_)) {
                self.jobs[job].state = JobState::Ready;
                self.ready.push_front(job);
            }
        }
    }

    /// Stopping: every job that is not awaiting its OK right now ends as
    /// [`Delivery::NotSent`]; the ones in flight go on to their OK or time
    /// out.
    fn send_no_more(&mut self) {
        for job in 0..self.jobs.len() {
            if matches!(
                self.jobs[job].state,
                JobState::Ready | JobState::Backoff | JobState::AwaitingAuth
            ) {
                self.finish(job, Delivery::NotSent);
            }
        }
        self.ready.clear();
        self.backoff.clear();
    }

    /// Fails every job not yet done.
    fn fail_remaining(&mut self, reason: &str) {
        for job in 0..self.jobs.len() {
            if !matches!(self.jobs[job].state, JobState::Done(_)) {
                self.finish(job, Delivery::Failed(reason.to_owned()));
            }
        }
        self.ready.clear();
        self.backoff.clear();
        self.in_flight.clear();
        self.deadlines.clear();
    }

    fn finish(&mut self, job: usize, delivery: Delivery) {
        if !matches!(self.jobs[job].state, JobState::Done(_)) {
            self.remaining -= 1;
        }
        self.jobs[job].state = JobState::Done(delivery);
    }
}

/// Opens a connection for publishing (see [`crate::relay::connect`]).
async fn connect(
    url: &str,
    connect_timeout: Duration,
    channel_size: usize,
    tls: &crate::tls::Tls,
) -> Result<Link, String> {
    let Connection {
        client,
        relay,
        notifications,
    } = crate::relay::connect(url, connect_timeout, channel_size, tls).await?;
    Ok(Link {
        client,
        relay,
        notifications,
        auth: AuthState::default(),
    })
}

/// A random number in [0, 1) for backoff jitter.
fn jitter() -> f64 {
    nostr::prelude::rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_in_range() {
        for _ in 0..100 {
            let value = jitter();
            assert!((0.0..1.0).contains(&value));
        }
    }

    #[tokio::test]
    async fn no_items_means_no_connection_and_no_deliveries() {
        let deliveries =
            publish_all("ws://127.0.0.1:9", Vec::new(), &PublishOptions::default()).await;
        assert!(deliveries.is_empty());
    }

    #[tokio::test]
    async fn items_with_one_event_share_one_delivery() {
        // Nothing listens on port 9: every item fails with the same reason.
        let keys = Keys::generate();
        let event = EventBuilder::new(nostr::Kind::Metadata, "{}")
            .sign_with_keys(&keys)
            .expect("sign");
        let item = PublishItem {
            event,
            keys,
            sign_in: None,
        };
        let opts = PublishOptions {
            connect_timeout: Duration::from_secs(2),
            ..PublishOptions::default()
        };
        let deliveries = publish_all("ws://127.0.0.1:9", vec![item.clone(), item], &opts).await;
        assert_eq!(deliveries.len(), 2);
        assert_eq!(deliveries[0], deliveries[1]);
        assert!(
            matches!(&deliveries[0], Delivery::Failed(reason) if reason.starts_with("connection failed")),
            "{deliveries:?}"
        );
    }
}
