//! Reading the newest kind:0 of many authors over one connection, with proof
//! that the relay's answer was complete, and NIP-42 when the relay demands it.
//!
//! The authors are split into batches, one REQ (one subscription) each; at
//! most [`MAX_SUBSCRIPTIONS_IN_FLIGHT`] are open at once, and each EOSE closes
//! its subscription and lets the next REQ go out. An author's state is known
//! only when its own subscription ended with EOSE; anything else (CLOSED, a
//! timeout, a lost connection, a reader that fell behind) makes its authors
//! unreadable, never "no profile".
//!
//! Authentication: when the relay sends a challenge and the session has an
//! identity, it signs in, and holds new REQs until the relay has answered. A
//! REQ refused with `auth-required:` goes back in the queue while
//! authentication can still succeed, and is sent again once it has; when it
//! cannot (no identity, or the relay refused this identity), the batch ends
//! as [`BatchState::Refused`], which the driver may retry with another
//! identity on a new connection (a refused AUTH poisons a connection).
//!
//! A subscription that goes unanswered while the relay answers others is asked
//! again once, on a fresh subscription id: at its deadline, or earlier, once
//! it has been in flight for [`STALL_GRACE`] and the relay has ended a whole
//! window of subscriptions sent after it, or, at the end of a read, when it
//! is the last one open and the relay has been silent on it for
//! [`STALL_GRACE`] since it ended another. A relay that answered nothing since
//! the REQ went out is unresponsive: every batch not yet complete fails, so a
//! silent relay costs one query timeout.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nostr::{ClientMessage, Event, Filter, Kind, PublicKey, SubscriptionId};

use super::nip42::{is_auth_required, AuthStatus, Identity, Nip42};
use super::{hex32, relay_text};
use crate::core::model::{ExistingEvent, RelayObservation};

/// How many subscriptions one connection keeps open at a time.
///
/// Sending every REQ at once would save a few round trips, but relays limit
/// concurrent subscriptions per connection (strfry allows 20 by default) and
/// refuse the rest. A window keeps the pipe full without hitting that limit.
pub const MAX_SUBSCRIPTIONS_IN_FLIGHT: usize = 16;

/// Author pubkey hex to what a read saw of it. Hashed with foldhash: its
/// keys are the authors the tool asked for (from its own store), and a
/// read's tables are hashed tens of thousands of times a tick.
pub type Observations = HashMap<String, RelayObservation, foldhash::fast::RandomState>;

/// How many subscriptions sent after one the relay must end before that one
/// counts as lost without waiting out the query timeout: a whole window,
/// so a relay that answers a little out of order is not asked twice.
pub const STALL_OVERTAKEN: usize = MAX_SUBSCRIPTIONS_IN_FLIGHT;

/// How long a subscription overtaken by [`STALL_OVERTAKEN`] later ones is
/// still given before it is asked again (never later than its deadline);
/// and how long the relay may be silent on the last subscription left open
/// at the end of a read before that one is asked again.
pub const STALL_GRACE: Duration = Duration::from_secs(2);

/// How many REQs a signed-in connection sends in any [`PACE_WINDOW`].
/// Today's Buzz relay allows 50 REQ/EVENT/COUNT frames per 5 s per
/// (community, pubkey) and refuses the rest with `rate-limited:`
/// (buzz-today.md section 4); a reader signed in as one identity stays under
/// that, with room for the AUTH and a few retries.
pub const PACE_LIMIT: usize = 40;

/// The window [`PACE_LIMIT`] counts REQs in.
pub const PACE_WINDOW: Duration = Duration::from_secs(5);

/// How often one batch may be refused with `rate-limited:` and asked again
/// before it fails.
pub const MAX_RATE_LIMITED: u32 = 3;

/// The wait after a `rate-limited:` refusal that names no delay.
pub const RATE_LIMITED_WAIT: Duration = Duration::from_secs(1);

/// The batch of each author asked for. Hashed with foldhash, as
/// [`Observations`].
type AuthorBatches = HashMap<PublicKey, usize, foldhash::fast::RandomState>;

/// The start of every subscription id of a read.
const SUBSCRIPTION_PREFIX: &str = "reprofile-kind0-";

/// The end of the id of a subscription asked again.
const ASKED_AGAIN: &str = "-again";

/// The subscription id of batch `index`.
fn subscription_id(index: usize) -> SubscriptionId {
    SubscriptionId::new(format!("{SUBSCRIPTION_PREFIX}{index}"))
}

/// The batch a subscription id of a read names (asked again or not).
fn batch_of_subscription_id(id: &SubscriptionId) -> Option<usize> {
    let rest = id.as_str().strip_prefix(SUBSCRIPTION_PREFIX)?;
    let digits = rest.strip_suffix(ASKED_AGAIN).unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The events a read can take: kind:0s of an author asked for, on that
/// author's batch's subscription (first asked or asked again).
#[derive(Debug)]
struct ReadAccepts(Arc<AuthorBatches>);

impl super::AcceptedEvents for ReadAccepts {
    fn accepts(&self, subscription_id: &SubscriptionId, event: &Event) -> bool {
        event.kind == Kind::Metadata
            && batch_of_subscription_id(subscription_id)
                .is_some_and(|batch| self.0.get(&event.pubkey) == Some(&batch))
    }
}

/// Where one subscription (one batch of authors) stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchState {
    /// Its REQ has not been sent yet (or goes again after authentication).
    Waiting,
    /// Its REQ was sent at `sent`; EOSE is due by the deadline.
    InFlight {
        /// When the REQ went out.
        sent: Instant,
        /// When EOSE is due.
        deadline: Instant,
    },
    /// The relay sent EOSE: the events seen are all it holds.
    Complete,
    /// The relay could not be read for this batch; why.
    Failed(String),
    /// The relay demands authentication and this connection could not
    /// provide it; why (with the relay's message).
    Refused(String),
}

/// One batch of authors and its subscription.
#[derive(Debug)]
struct AuthorBatch {
    id: SubscriptionId,
    authors: Vec<PublicKey>,
    state: BatchState,
    /// Whether it was already asked again on a fresh subscription.
    retried: bool,
    /// Whether it waits in the queue because the relay demanded
    /// authentication for it.
    held_for_auth: bool,
    /// Whether its REQ went out after the connection had signed in (a
    /// refusal of a REQ sent before is answered by sending it again).
    sent_signed_in: bool,
    /// The order its REQ went out in, among this session's REQs.
    sent_order: u64,
    /// How many subscriptions sent after it the relay ended (EOSE) while it
    /// was in flight.
    overtaken: usize,
    /// When an event of its subscription last arrived (it is alive).
    last_event: Option<Instant>,
    /// How often the relay refused its REQ with `rate-limited:`.
    rate_limited: u32,
}

impl AuthorBatch {
    /// The batch's one filter: kind:0 of its authors, without a limit.
    fn filter(&self) -> Filter {
        Filter::new()
            .kind(Kind::Metadata)
            .authors(self.authors.iter().copied())
    }
}

/// Shown what a read over `crate::net::wire` learns as it goes (a snapshot
/// derives rule A5's keys there, see `crate::engine::snapshot`). It learns nothing
/// a session would not, and decides nothing: the session still decides
/// which event is an author's newest, and whether its read was complete.
pub trait ReadObserver: Send + Sync + std::fmt::Debug {
    /// An event a check found authentic, on the pool thread that checked
    /// it.
    fn authentic(&self, event: &Event);
    /// Authors whose subscription ended (EOSE) without a kind:0 of theirs,
    /// on the connection's task: hand any real work to the pool.
    fn no_profile(&self, authors: &[nostr::PublicKey]);
}

/// Reading one relay's profiles over one connection.
#[derive(Debug)]
pub struct ReadSession {
    batches: Vec<AuthorBatch>,
    batch_of_subscription: HashMap<SubscriptionId, usize>,
    /// Shared with the connection, which keeps in memory only the events
    /// the session can take ([`ReadSession::accepted_events`]).
    batch_of_author: Arc<AuthorBatches>,
    newest: HashMap<PublicKey, Arc<Event>, foldhash::fast::RandomState>,
    /// The observations of the batches complete so far, filed as each
    /// completes (a complete batch never changes), so that little is left
    /// to do when the read ends.
    observations: Observations,
    /// Batches to send, in order.
    queue: VecDeque<usize>,
    /// CLOSEs (and REQs of batches asked again) for the next write.
    outbox: Vec<ClientMessage<'static>>,
    query_timeout: Duration,
    last_notice: Option<String>,
    /// When the relay last ended a subscription: proof it was answering then.
    last_eose: Option<Instant>,
    auth: Nip42,
    /// Whether the relay asked for authentication: it sent a challenge, or
    /// refused a REQ with `auth-required:`.
    auth_demanded: bool,
    /// REQs sent so far (the next one's `sent_order`).
    sent: u64,
    /// Advanced by the number of authors of each batch as it completes.
    progress: crate::progress::Progress,
    /// Told, as each batch completes, its authors without a profile.
    observer: Option<Arc<dyn ReadObserver>>,
    /// No REQ goes out before this: the relay said `rate-limited:` (with
    /// the delay it asked, or [`RATE_LIMITED_WAIT`]).
    hold_until: Option<Instant>,
    /// When the REQs of the last [`PACE_WINDOW`] went out (kept only while
    /// signed in: the relay's quota is per identity).
    paced: VecDeque<Instant>,
    /// REQs are waiting for this (the wait or the pace) and the session
    /// wants to be woken then.
    reqs_held_until: Option<Instant>,
}

impl ReadSession {
    /// A session for `chunks` of authors (one subscription each), waiting at
    /// most `query_timeout` for each EOSE, signing in as `identity` when the
    /// relay asks (or never, with `None`). Subscription ids are
    /// `reprofile-kind0-<n>`.
    pub fn new<'a>(
        chunks: impl Iterator<Item = &'a [PublicKey]>,
        query_timeout: Duration,
        identity: Option<Identity>,
    ) -> Self {
        let mut session = Self {
            batches: Vec::new(),
            batch_of_subscription: HashMap::new(),
            batch_of_author: Arc::default(),
            newest: HashMap::default(),
            observations: Observations::default(),
            queue: VecDeque::new(),
            outbox: Vec::new(),
            query_timeout,
            last_notice: None,
            last_eose: None,
            auth: Nip42::new(identity, query_timeout),
            auth_demanded: false,
            sent: 0,
            progress: crate::progress::Progress::none(),
            observer: None,
            hold_until: None,
            paced: VecDeque::new(),
            reqs_held_until: None,
        };
        let mut batch_of_author = AuthorBatches::default();
        for (index, chunk) in chunks.enumerate() {
            let id = subscription_id(index);
            session.batch_of_subscription.insert(id.clone(), index);
            for author in chunk {
                batch_of_author.insert(*author, index);
            }
            session.batches.push(AuthorBatch {
                id,
                authors: chunk.to_vec(),
                state: BatchState::Waiting,
                retried: false,
                held_for_auth: false,
                sent_signed_in: false,
                sent_order: 0,
                overtaken: 0,
                last_event: None,
                rate_limited: 0,
            });
            session.queue.push_back(index);
        }
        session.observations.reserve(batch_of_author.len());
        session.batch_of_author = Arc::new(batch_of_author);
        session
    }

    /// Reports progress (authors read) to `progress`.
    pub fn with_progress(mut self, progress: crate::progress::Progress) -> Self {
        self.progress = progress;
        self
    }

    /// Tells `observer`, as each batch completes, which of its authors the
    /// relay holds no profile of.
    pub fn with_observer(mut self, observer: Option<Arc<dyn ReadObserver>>) -> Self {
        self.observer = observer;
        self
    }

    /// Whether the relay asked for authentication: it sent an AUTH challenge,
    /// or refused a REQ with `auth-required:`. A refusal alone is not a
    /// reliable sign: a relay that handles messages concurrently (Buzz) may
    /// answer a REQ sent before the AUTH after the sign-in, under load.
    pub fn auth_demanded(&self) -> bool {
        self.auth_demanded
    }

    /// Where authentication stands on this connection.
    pub fn auth_status(&self) -> AuthStatus {
        self.auth.status()
    }

    /// The authors of the batches that ended [`BatchState::Refused`].
    pub fn refused_authors(&self) -> Vec<PublicKey> {
        self.batches
            .iter()
            .filter(|b| matches!(b.state, BatchState::Refused(_)))
            .flat_map(|b| b.authors.iter().copied())
            .collect()
    }

    /// Marks every batch that is not complete (open or not yet sent) as
    /// failed, e.g. when the connection could not be opened.
    pub fn fail_remaining(&mut self, reason: &str) {
        self.queue.clear();
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
    pub fn into_observations(self) -> Observations {
        let mut observations = self.observations;
        for batch in &self.batches {
            for author in &batch.authors {
                let observation = match &batch.state {
                    // Filed when it completed.
                    BatchState::Complete => continue,
                    BatchState::Failed(reason) => RelayObservation::Unreadable(reason.clone()),
                    BatchState::Refused(reason) => RelayObservation::AuthRefused(reason.clone()),
                    // Unreachable once the session is done, but an unfinished
                    // batch is never "no profile".
                    BatchState::Waiting | BatchState::InFlight { .. } => {
                        RelayObservation::Unreadable("read did not finish".to_owned())
                    }
                };
                observations.insert(hex32(author.as_bytes()), observation);
            }
        }
        observations
    }

    /// Keeps `event` if it is a kind:0 by an author of that open subscription
    /// and newer, by NIP-01 order, than what was seen for that author.
    fn accept_event(&mut self, subscription_id: &SubscriptionId, event: Arc<Event>, now: Instant) {
        let Some(&index) = self.batch_of_subscription.get(subscription_id) else {
            tracing::debug!(id = %event.id, "event for an unknown subscription ignored");
            return;
        };
        if !matches!(self.batches[index].state, BatchState::InFlight { .. }) {
            tracing::debug!(id = %event.id, "event after the end of its subscription ignored");
            return;
        }
        self.batches[index].last_event = Some(now);
        if event.kind != Kind::Metadata {
            tracing::debug!(id = %event.id, kind = %event.kind, "event of another kind ignored");
            return;
        }
        if self.batch_of_author.get(&event.pubkey) != Some(&index) {
            tracing::debug!(id = %event.id, "event from an author not asked for ignored");
            return;
        }
        match self.newest.get(&event.pubkey) {
            Some(current) if !is_newer(&event, current) => {}
            _ => {
                self.newest.insert(event.pubkey, event);
            }
        }
    }

    /// The relay ended a subscription with CLOSED.
    fn closed(&mut self, subscription_id: &SubscriptionId, message: &str, now: Instant) {
        let Some(index) = self.in_flight_index(subscription_id) else {
            return;
        };
        let text = relay_text(message);
        if message.trim_start().starts_with("rate-limited:") {
            self.rate_limited(Some(index), message, now);
            return;
        }
        if !is_auth_required(message) {
            self.batches[index].state =
                BatchState::Failed(format!("relay closed the subscription: {text}"));
            return;
        }
        self.auth_demanded = true;
        self.auth.on_auth_required(&text, now);
        let batch = &mut self.batches[index];
        match self.auth.status() {
            // Sent before the sign-in completed (a relay may answer the AUTH
            // before it answers an earlier REQ): send it again.
            AuthStatus::Authenticated if !batch.sent_signed_in => {
                batch.state = BatchState::Waiting;
                self.queue.push_back(index);
            }
            AuthStatus::Pending => {
                // Asked again once signed in; the relay already ended this one.
                batch.state = BatchState::Waiting;
                batch.held_for_auth = true;
                self.queue.push_back(index);
            }
            AuthStatus::Refused(why) => batch.state = BatchState::Refused(why),
            AuthStatus::Authenticated => {
                let who = self
                    .auth
                    .identity()
                    .map_or("this identity".to_owned(), |i| i.label.clone());
                batch.state = BatchState::Refused(format!(
                    "the relay refused to serve {who} after it signed in: {text}"
                ));
            }
            AuthStatus::NotAsked => {
                batch.state = BatchState::Failed(format!("relay closed the subscription: {text}"))
            }
        }
    }

    /// The relay said `rate-limited:`, ending batch `index`'s subscription
    /// (a CLOSED) or about the connection (a NOTICE, `None`): no REQ goes
    /// out until the delay it asked has passed, and the refused batch is
    /// asked again then, at most [`MAX_RATE_LIMITED`] times.
    fn rate_limited(&mut self, index: Option<usize>, message: &str, now: Instant) {
        let wait = crate::core::apply::retry_in(message).unwrap_or(RATE_LIMITED_WAIT);
        let until = now + wait;
        self.hold_until = Some(self.hold_until.map_or(until, |held| held.max(until)));
        let Some(index) = index else {
            return;
        };
        let batch = &mut self.batches[index];
        batch.rate_limited += 1;
        if batch.rate_limited > MAX_RATE_LIMITED {
            batch.state = BatchState::Failed(format!(
                "relay still refused the subscription after {MAX_RATE_LIMITED} waits: {}",
                relay_text(message)
            ));
            return;
        }
        tracing::debug!(subscription = %batch.id, ?wait, "rate-limited; asking again after the wait");
        batch.state = BatchState::Waiting;
        self.queue.push_front(index);
    }

    /// When the next REQ may go out, `None` for now: after a
    /// `rate-limited:` wait, and (signed in) under [`PACE_LIMIT`] per
    /// [`PACE_WINDOW`].
    fn req_allowed_at(&self, now: Instant) -> Option<Instant> {
        let held = self.hold_until.filter(|until| *until > now);
        let paced = (self.paced.len() >= PACE_LIMIT)
            .then(|| self.paced[self.paced.len() - PACE_LIMIT] + PACE_WINDOW)
            .filter(|free| *free > now);
        held.into_iter().chain(paced).max()
    }

    /// Notes a REQ sent at `now` for the pace (signed-in connections only).
    fn pace_sent(&mut self, now: Instant) {
        if self.auth.status() == AuthStatus::Authenticated {
            while self
                .paced
                .front()
                .is_some_and(|sent| *sent + PACE_WINDOW <= now)
            {
                self.paced.pop_front();
            }
            self.paced.push_back(now);
        }
    }

    /// Once authentication is refused, the batches held for it end refused.
    fn settle_held_batches(&mut self) {
        let AuthStatus::Refused(why) = self.auth.status() else {
            return;
        };
        let mut held = Vec::new();
        for (index, batch) in self.batches.iter_mut().enumerate() {
            if batch.held_for_auth && batch.state == BatchState::Waiting {
                batch.state = BatchState::Refused(why.clone());
                held.push(index);
            }
        }
        self.queue.retain(|index| !held.contains(index));
    }

    /// Asks again, on a fresh subscription, for every batch whose deadline
    /// (`due`, just passed) went by without EOSE, when the relay ended another
    /// subscription after that batch was sent and the batch was not asked
    /// again before. Returns false, changing nothing, when any timed-out batch
    /// does not qualify: the relay is then unresponsive, not lossy.
    ///
    /// Events the lost subscription delivered are kept (they are signed
    /// kind:0s of its authors); only the fresh subscription's EOSE completes
    /// the batch, and anything later on the lost one is ignored.
    fn retry_timed_out(&mut self, due: Instant, now: Instant) -> bool {
        let last_eose = self.last_eose;
        let timed_out: Vec<usize> = self
            .batches
            .iter()
            .enumerate()
            .filter(|(_, batch)| {
                matches!(batch.state, BatchState::InFlight { deadline, .. } if deadline <= due)
            })
            .map(|(index, _)| index)
            .collect();
        let qualifies = |batch: &AuthorBatch| match batch.state {
            BatchState::InFlight { sent, .. } => {
                !batch.retried && last_eose.is_some_and(|eose| eose > sent)
            }
            _ => false,
        };
        if timed_out.is_empty() || !timed_out.iter().all(|&i| qualifies(&self.batches[i])) {
            return false;
        }
        for index in timed_out {
            self.ask_again(index, now);
        }
        true
    }

    /// A batch whose subscription the relay seems to have lost: in flight
    /// for [`STALL_GRACE`] or more, overtaken by [`STALL_OVERTAKEN`]
    /// subscriptions sent after it, and not asked again yet. Its stall is
    /// due at `sent + STALL_GRACE`.
    fn stall_due(&self, batch: &AuthorBatch) -> Option<Instant> {
        match batch.state {
            BatchState::InFlight { sent, .. }
                if !batch.retried && batch.overtaken >= STALL_OVERTAKEN =>
            {
                Some(sent + STALL_GRACE)
            }
            _ => None,
        }
    }

    /// The end of a read: every REQ sent, one subscription left open, not
    /// asked again yet, and the relay ended another after it was sent. No
    /// later subscription is left to overtake it, so it is taken as lost
    /// once the relay has been silent on it for [`STALL_GRACE`] since that
    /// EOSE and since the last event it sent for it. Its index and when.
    /// (Two or more left open wait for their deadlines.)
    fn tail_stall(&self) -> Option<(usize, Instant)> {
        if !self.queue.is_empty() {
            return None;
        }
        let mut open = self
            .batches
            .iter()
            .enumerate()
            .filter(|(_, batch)| matches!(batch.state, BatchState::InFlight { .. }));
        let (index, batch) = open.next()?;
        if open.next().is_some() || batch.retried {
            return None;
        }
        let BatchState::InFlight { sent, .. } = batch.state else {
            return None;
        };
        let ended = self.last_eose.filter(|eose| *eose > sent)?;
        let silent_since = batch.last_event.map_or(ended, |event| event.max(ended));
        Some((index, silent_since + STALL_GRACE))
    }

    /// Asks again, before their deadline, for the batches the relay has
    /// stalled on by `now` (see [`Self::stall_due`] and
    /// [`Self::tail_stall`]).
    fn retry_stalled(&mut self, now: Instant) {
        let mut stalled: Vec<usize> = (0..self.batches.len())
            .filter(|&index| {
                self.stall_due(&self.batches[index])
                    .is_some_and(|due| due <= now)
            })
            .collect();
        if let Some((index, due)) = self.tail_stall() {
            if due <= now && !stalled.contains(&index) {
                stalled.push(index);
            }
        }
        for index in stalled {
            self.ask_again(index, now);
        }
    }

    /// Closes batch `index`'s subscription and asks again on a fresh one,
    /// once: only the fresh subscription's EOSE completes the batch.
    fn ask_again(&mut self, index: usize, now: Instant) {
        let signed_in = self.auth.status() == AuthStatus::Authenticated;
        let batch = &mut self.batches[index];
        batch.sent_signed_in = signed_in;
        let fresh = SubscriptionId::new(format!("{}{ASKED_AGAIN}", batch.id));
        tracing::warn!(
            subscription = %batch.id,
            "no EOSE while the relay answered other subscriptions; asking again once"
        );
        self.batch_of_subscription.remove(&batch.id);
        self.batch_of_subscription.insert(fresh.clone(), index);
        self.outbox.push(ClientMessage::close(std::mem::replace(
            &mut batch.id,
            fresh.clone(),
        )));
        self.outbox
            .push(ClientMessage::req(fresh, vec![batch.filter()]));
        self.pace_sent(now);
        let batch = &mut self.batches[index];
        batch.retried = true;
        batch.sent_order = self.sent;
        batch.overtaken = 0;
        batch.last_event = None;
        self.sent += 1;
        batch.state = BatchState::InFlight {
            sent: now,
            deadline: now + self.query_timeout,
        };
    }

    fn in_flight_index(&self, subscription_id: &SubscriptionId) -> Option<usize> {
        let index = *self.batch_of_subscription.get(subscription_id)?;
        matches!(self.batches[index].state, BatchState::InFlight { .. }).then_some(index)
    }

    fn in_flight_count(&self) -> usize {
        self.batches
            .iter()
            .filter(|batch| matches!(batch.state, BatchState::InFlight { .. }))
            .count()
    }

    fn next_batch_deadline(&self) -> Option<Instant> {
        self.batches
            .iter()
            .filter_map(|batch| match batch.state {
                BatchState::InFlight { deadline, .. } => Some(deadline),
                _ => None,
            })
            .min()
    }

    /// Marks the open subscriptions as failed and closes them.
    fn fail_in_flight(&mut self, reason: &str) {
        for batch in &mut self.batches {
            if matches!(batch.state, BatchState::InFlight { .. }) {
                batch.state = BatchState::Failed(reason.to_owned());
                self.outbox.push(ClientMessage::close(batch.id.clone()));
            }
        }
    }
}

/// NIP-01 order for replaceable events: `candidate` replaces `current` when it
/// has a greater `created_at`, or the same `created_at` and a lower id (ids
/// compare as bytes, which is the order of their lower-case hex).
fn is_newer(candidate: &Event, current: &Event) -> bool {
    (candidate.created_at, std::cmp::Reverse(candidate.id))
        > (current.created_at, std::cmp::Reverse(current.id))
}

fn existing_event(event: &Event) -> ExistingEvent {
    ExistingEvent {
        id: hex32(event.id.as_bytes()),
        created_at: event.created_at.as_secs(),
        tags: event
            .tags
            .iter()
            .map(|tag| tag.as_slice().to_vec())
            .collect(),
        content: event.content.clone(),
    }
}

mod session;

#[cfg(test)]
mod tests;
