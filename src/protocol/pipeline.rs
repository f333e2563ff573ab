//! Publishing many agents' signed events over one connection, pipelined.
//!
//! [`PipelinedPublish`] keeps up to `max_in_flight` EVENTs awaiting their OK;
//! every OK frees a slot for the next event. Decisions, in order:
//!
//! - **Answers** are classified by the core ([`classify_ok`]): accepted (or
//!   `duplicate:`) and refused end the event; `rate-limited:` sends the
//!   *same* signed event again (same id, never re-signed) after the core's
//!   [`Backoff`], never sooner than the relay asked (`retry in Ns`,
//!   [`retry_in`]); the retries used up fail it. A `rate-limited:` NOTICE
//!   (Buzz sheds load so, and answers the event it dropped with no OK) does
//!   not say which event: every event awaiting its OK goes again the same
//!   way, and no new EVENT is sent before the relay asked. An OK that comes
//!   after all for an event waiting to go again is its answer.
//! - **NIP-42.** An `auth-required:` answer makes the connection sign in
//!   ([`Nip42`]) as the event's author, with its NIP-OA tag and the relay
//!   connected to as the `relay` tag (the [`Identity`] the caller gives each
//!   event), then send the event again. A connection that has signed in as
//!   nobody yet sends no new EVENT while a sign-in is under way (each
//!   unauthenticated EVENT may make the relay replace its challenge), and
//!   the events of other authors refused meanwhile wait for that sign-in:
//!   most relays that demand authentication for writes accept them from any
//!   signed-in connection. A relay that wants each author signed in says
//!   `auth-required:` again, and that author signs in too, on the same
//!   connection (NIP-42 allows several identities per connection). A relay
//!   that admits one identity per connection refuses the second AUTH
//!   (Buzz: `already authenticated`); from then on the events of authors not
//!   signed in here go to a connection of their own
//!   ([`PipelineEnd::ToAuthorSession`], which the driver publishes with
//!   `super::write::AuthorPublish`). So does an author whose AUTH is refused
//!   after another AUTH was refused on this connection (Buzz never accepts
//!   an AUTH after a refusal). An author refused on a clean connection is
//!   refused ([`Delivery::Refused`], the relay's message), and an event still
//!   answered `auth-required:` after its author signed in is refused with the
//!   relay's message. A sign-in that gets no challenge or no answer in time
//!   fails the events waiting for it.
//! - **Deadlines.** Each EVENT's OK is due `publish_timeout` after it was
//!   sent; past that the event failed (the relay may still have stored it:
//!   apply reads every profile back).
//! - **A lost connection** fails the events in flight (the relay may or may
//!   not have stored them); the rest go over a new connection, at most
//!   [`MAX_RECONNECTS`] times, after a backoff ([`PipelinedPublish::next_connection`]).
//! - **Stopping** ([`PipelinedPublish::stop`]): no EVENT is sent once
//!   stopping, nor sent again after `rate-limited:` or `auth-required:`;
//!   events in flight get their OK or time out; what was not sent is
//!   [`Delivery::NotSent`], and no new connection is opened.
//!
//! Each event is reported as its OK arrives ([`PipelinedPublish::poll_accepted`]),
//! so the caller can record it at once.
//!
//! What it must not do: open sockets, read a clock or a random source (time
//! and the jitter seed are arguments), or print keys.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use nostr::{Event, EventId, PublicKey};

use super::nip42::{AuthStatus, Identity, Nip42};
use super::write::Delivery;
use super::{human_duration, relay_text};
use crate::core::apply::{classify_ok, retry_in, Backoff, PublishAnswer};

/// How many times one batch may open a new connection after losing one.
pub const MAX_RECONNECTS: u32 = 3;

/// How many `auth-required:` answers one event may get on one connection
/// before it counts as refused.
pub const MAX_AUTH_DEMANDS: u32 = 3;

/// The delivery of an event in flight when its connection was lost.
pub const LOST_IN_FLIGHT: &str = "connection lost before the relay answered";

/// How to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineConfig {
    /// EVENTs awaiting their OK at once (at least 1 is used).
    pub max_in_flight: usize,
    /// How long an EVENT's OK, a challenge and an AUTH's answer may take.
    pub publish_timeout: Duration,
    /// Retries of `rate-limited:` answers, and the pause before a new
    /// connection.
    pub backoff: Backoff,
}

/// One event to publish, and who its author signs in as when the relay
/// demands it.
#[derive(Debug, Clone)]
pub struct PublishJob {
    /// The signed event.
    pub event: Event,
    /// Who signs in for it: its author (with its NIP-OA tag), or a service
    /// key; the `relay` tag names the relay connected to.
    pub identity: Identity,
}

/// What became of one event once the session is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineEnd {
    /// Its delivery.
    Delivered(Delivery),
    /// The relay admits one identity per connection and it is not this
    /// event's author: publish it over a connection of its own, signed in
    /// as its author.
    ToAuthorSession,
}

/// What the driver does once the session is done with a connection
/// ([`PipelinedPublish::next_connection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextConnection {
    /// Every event has its end: nothing more to connect for.
    Finished,
    /// Open a new connection after this pause, then call
    /// [`PipelinedPublish::connected`].
    After(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum JobState {
    /// In the ready queue.
    Ready,
    /// Sent (send number `seq`); its OK is awaited.
    InFlight {
        seq: u64,
    },
    /// Rate-limited; waits in the backoff heap.
    Backoff,
    /// Waits for the sign-in of this identity (its own, or, as a bystander,
    /// the connection's first).
    AwaitingSignIn(PublicKey),
    /// Goes to a connection of its own.
    ToAuthorSession,
    Done(Delivery),
}

#[derive(Debug)]
struct Job {
    event: Event,
    /// The pubkey of the identity it signs in as.
    signer: PublicKey,
    state: JobState,
    /// `rate-limited:` retries used so far.
    retries: u32,
    /// `auth-required:` answers on the current connection.
    auth_demands: u32,
    /// The connection's sign-in count when the event was last sent.
    sent_epoch: u64,
}

/// One identity's sign-in on the current connection.
#[derive(Debug)]
struct SignIn {
    signer: PublicKey,
    auth: Nip42,
    /// The `auth-required:` message that started it.
    demand: String,
    /// Whether it has ended (accepted or not) and its events were told.
    settled: bool,
    /// What becomes of its author's events, once it failed.
    verdict: Option<Verdict>,
    /// The connection's sign-in count its acceptance made.
    epoch: Option<u64>,
}

/// How a sign-in ran out of time (in [`Session::handle_timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimedOut {
    /// The relay never sent a challenge.
    NoChallenge,
    /// The relay did not answer the AUTH (or a challenge to answer again).
    NoAnswer,
}

/// What a refused or failed sign-in does to its author's events.
#[derive(Debug, Clone)]
enum Verdict {
    End(Delivery),
    ToAuthorSession,
}

/// The NIP-42 state of one connection.
#[derive(Debug, Default)]
struct Link {
    /// The relay's newest challenge, for sign-ins started after it came.
    challenge: Option<String>,
    /// Sign-ins on this connection, in the order they started.
    sign_ins: Vec<SignIn>,
    /// Successful sign-ins so far.
    epoch: u64,
    /// An AUTH was refused on this connection.
    refused: bool,
    /// The relay refused a second identity: it admits one per connection.
    one_identity: bool,
    /// A sign-in timed out without any challenge: the relay sends none.
    no_challenge: bool,
    /// The connection is gone.
    lost: bool,
}

impl Link {
    fn sign_in(&self, signer: &PublicKey) -> Option<&SignIn> {
        self.sign_ins.iter().find(|s| &s.signer == signer)
    }

    fn authenticated(&self) -> bool {
        self.epoch > 0
    }

    /// No new EVENT goes while the connection is signed in as nobody and a
    /// sign-in is under way.
    fn holds_sending(&self) -> bool {
        !self.authenticated() && self.sign_ins.iter().any(|s| !s.settled)
    }
}

/// Many agents' events, published over one connection at a time.
#[derive(Debug)]
pub struct PipelinedPublish {
    config: PipelineConfig,
    jobs: Vec<Job>,
    identities: HashMap<PublicKey, Identity>,
    ready: VecDeque<usize>,
    /// Rate-limited jobs by the time they may go again.
    backoff: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Event id to job, for the EVENTs awaiting OK.
    in_flight: HashMap<EventId, usize>,
    /// Deadlines of sends in send order (one timeout for all, so also in
    /// deadline order): (deadline, job, send number); entries whose job was
    /// answered or sent again since are skipped.
    deadlines: VecDeque<(Instant, usize, u64)>,
    sends: u64,
    /// Jobs without their end yet.
    remaining: usize,
    link: Link,
    /// Whether a connection was ever open.
    connected_once: bool,
    reconnects: u32,
    stopping: bool,
    /// Jobs accepted since the last [`PipelinedPublish::poll_accepted`].
    accepted: VecDeque<usize>,
    /// Jitter for the backoffs, from the caller's seed.
    jitter: SplitMix64,
    /// No new EVENT before this (a `rate-limited:` NOTICE asked so).
    paused_until: Option<Instant>,
}

impl PipelinedPublish {
    /// A session for `jobs` (distinct events), with backoff jitter drawn
    /// from `jitter_seed`.
    pub fn new(jobs: Vec<PublishJob>, config: PipelineConfig, jitter_seed: u64) -> Self {
        let mut identities = HashMap::new();
        let jobs: Vec<Job> = jobs
            .into_iter()
            .map(|job| {
                let signer = job.identity.keys.public_key();
                identities.entry(signer).or_insert(job.identity);
                Job {
                    event: job.event,
                    signer,
                    state: JobState::Ready,
                    retries: 0,
                    auth_demands: 0,
                    sent_epoch: 0,
                }
            })
            .collect();
        debug_assert_eq!(
            jobs.iter()
                .map(|j| j.event.id)
                .collect::<std::collections::HashSet<_>>()
                .len(),
            jobs.len(),
            "one job per distinct event"
        );
        Self {
            config,
            ready: (0..jobs.len()).collect(),
            remaining: jobs.len(),
            jobs,
            identities,
            backoff: BinaryHeap::new(),
            in_flight: HashMap::new(),
            deadlines: VecDeque::new(),
            sends: 0,
            link: Link {
                lost: true,
                ..Link::default()
            },
            connected_once: false,
            reconnects: 0,
            stopping: false,
            accepted: VecDeque::new(),
            jitter: SplitMix64(jitter_seed),
            paused_until: None,
        }
    }

    /// A connection is open: publishing goes on over it.
    pub fn connected(&mut self) {
        self.link = Link::default();
        self.connected_once = true;
    }

    /// The connection could not be opened; `reason` for people.
    pub fn connect_failed(&mut self, reason: &str) {
        self.link.lost = true;
        if !self.connected_once {
            self.fail_remaining(reason);
        } else if self.reconnects >= MAX_RECONNECTS {
            self.fail_remaining(&format!("connection lost; reconnecting failed: {reason}"));
        }
    }

    /// What to do now that this connection is done with ([`Session::is_done`]):
    /// finish, or open a new one after a pause (bounded; counted here).
    pub fn next_connection(&mut self) -> NextConnection {
        if self.stopping {
            self.send_no_more();
        }
        if self.remaining == 0 {
            return NextConnection::Finished;
        }
        if !self.link.lost {
            // Done with a connection that is still up, and events are left:
            // nothing can move them any more (never expected).
            self.fail_remaining("internal error: nothing left to wait for");
            return NextConnection::Finished;
        }
        if !self.connected_once {
            // The first connection (a failure to open it fails everything).
            return NextConnection::After(Duration::ZERO);
        }
        if self.reconnects >= MAX_RECONNECTS {
            self.fail_remaining(&format!(
                "connection lost; gave up after {MAX_RECONNECTS} reconnects"
            ));
            return NextConnection::Finished;
        }
        self.reconnects += 1;
        let backoff = self.config.backoff;
        let pause = backoff
            .delay(self.reconnects, self.jitter.next_unit())
            .unwrap_or_else(|| {
                backoff
                    .max
                    .min(backoff.initial.saturating_mul(1 << self.reconnects.min(16)))
            });
        NextConnection::After(pause)
    }

    /// The run is stopping: nothing new is sent from now on.
    pub fn stop(&mut self) {
        self.stopping = true;
        self.send_no_more();
    }

    /// The next event accepted by the relay since the last call, by its
    /// position in the jobs given to [`PipelinedPublish::new`].
    pub fn poll_accepted(&mut self) -> Option<usize> {
        self.accepted.pop_front()
    }

    /// Every event's end, in job order (an event without one failed:
    /// "publishing did not finish").
    pub fn into_ends(self) -> Vec<PipelineEnd> {
        self.jobs
            .into_iter()
            .map(|job| match job.state {
                JobState::Done(delivery) => PipelineEnd::Delivered(delivery),
                JobState::ToAuthorSession => PipelineEnd::ToAuthorSession,
                _ => {
                    PipelineEnd::Delivered(Delivery::Failed("publishing did not finish".to_owned()))
                }
            })
            .collect()
    }

    fn max_in_flight(&self) -> usize {
        self.config.max_in_flight.max(1)
    }

    fn finish(&mut self, job: usize, delivery: Delivery) {
        if matches!(
            self.jobs[job].state,
            JobState::Done(_) | JobState::ToAuthorSession
        ) {
            return;
        }
        if delivery == Delivery::Accepted {
            self.accepted.push_back(job);
        }
        self.remaining -= 1;
        self.jobs[job].state = JobState::Done(delivery);
    }

    fn hand_to_author_session(&mut self, job: usize) {
        if matches!(
            self.jobs[job].state,
            JobState::Done(_) | JobState::ToAuthorSession
        ) {
            return;
        }
        self.remaining -= 1;
        self.jobs[job].state = JobState::ToAuthorSession;
    }

    fn fail_remaining(&mut self, reason: &str) {
        for job in 0..self.jobs.len() {
            self.finish(job, Delivery::Failed(reason.to_owned()));
        }
        self.ready.clear();
        self.backoff.clear();
        self.in_flight.clear();
        self.deadlines.clear();
    }

    /// Stopping: every event not awaiting its OK right now is not sent.
    fn send_no_more(&mut self) {
        for job in 0..self.jobs.len() {
            if matches!(
                self.jobs[job].state,
                JobState::Ready | JobState::Backoff | JobState::AwaitingSignIn(_)
            ) {
                self.finish(job, Delivery::NotSent);
            }
        }
        self.ready.clear();
        self.backoff.clear();
    }

    /// Puts jobs back at the front of the queue, in job order.
    fn requeue_front(&mut self, mut jobs: Vec<usize>) {
        jobs.sort_unstable();
        for &job in jobs.iter().rev() {
            self.jobs[job].state = JobState::Ready;
            self.ready.push_front(job);
        }
    }

    fn awaiting(&self, signer: &PublicKey) -> Vec<usize> {
        (0..self.jobs.len())
            .filter(|&job| self.jobs[job].state == JobState::AwaitingSignIn(*signer))
            .collect()
    }

    /// The relay answered a job's EVENT.
    fn answered(&mut self, job: usize, accepted: bool, message: &str, now: Instant) {
        let text = relay_text(message);
        match classify_ok(accepted, message) {
            PublishAnswer::Accepted => self.finish(job, Delivery::Accepted),
            PublishAnswer::Refused(_) => self.finish(job, Delivery::Refused(text)),
            PublishAnswer::RateLimited(_) => {
                let retry = self.jobs[job].retries + 1;
                match self.config.backoff.delay(retry, self.jitter.next_unit()) {
                    Some(delay) => {
                        let asked = retry_in(message).unwrap_or_default();
                        self.jobs[job].retries = retry;
                        self.jobs[job].state = JobState::Backoff;
                        self.backoff.push(Reverse((now + delay.max(asked), job)));
                    }
                    None => self.finish(
                        job,
                        Delivery::Failed(format!("{text} (gave up after {} retries)", retry - 1)),
                    ),
                }
            }
            PublishAnswer::AuthRequired(_) => self.auth_required(job, text, now),
        }
    }

    /// A `rate-limited:` NOTICE: the relay dropped an EVENT without an OK
    /// and does not say which. Every event awaiting its OK is answered as by
    /// a `rate-limited:` OK (sent again, unchanged, after the backoff and
    /// never before the relay asked; a relay that kept it answers
    /// `duplicate:`), and no new EVENT goes before the relay asked.
    fn rate_limited_notice(&mut self, message: &str, now: Instant) {
        let asked = now + retry_in(message).unwrap_or_default();
        self.paused_until = Some(self.paused_until.map_or(asked, |until| until.max(asked)));
        let mut waiting: Vec<usize> = self.in_flight.drain().map(|(_, job)| job).collect();
        waiting.sort_unstable();
        for job in waiting {
            self.answered(job, false, message, now);
        }
        self.drop_stale_deadlines();
    }

    /// The job of an event waiting to go again after a `rate-limited:`
    /// NOTICE (whose OK may still come).
    fn waiting_again(&self, id: &EventId) -> Option<usize> {
        self.jobs.iter().position(|job| {
            job.event.id == *id && matches!(job.state, JobState::Backoff | JobState::Ready)
        })
    }

    /// Whether a `rate-limited:` NOTICE holds new EVENTs back at `now`.
    fn paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|until| now < until)
    }

    /// A job's EVENT was answered `auth-required:`.
    fn auth_required(&mut self, job: usize, demand: String, now: Instant) {
        self.jobs[job].auth_demands += 1;
        if self.jobs[job].auth_demands > MAX_AUTH_DEMANDS {
            self.finish(job, Delivery::Refused(demand));
            return;
        }
        let signer = self.jobs[job].signer;
        if let Some(sign_in) = self.link.sign_in(&signer) {
            match (sign_in.epoch, &sign_in.verdict) {
                // Sent before its author signed in: again, signed in now.
                (Some(epoch), _) if self.jobs[job].sent_epoch < epoch => {
                    self.requeue_front(vec![job])
                }
                // Signed in as its author, and still refused: the relay's word.
                (Some(_), _) => self.finish(job, Delivery::Refused(demand)),
                (None, Some(Verdict::End(delivery))) => {
                    let delivery = delivery.clone();
                    self.finish(job, delivery);
                }
                (None, Some(Verdict::ToAuthorSession)) => self.hand_to_author_session(job),
                (None, None) => self.jobs[job].state = JobState::AwaitingSignIn(signer),
            }
            return;
        }
        if self.link.no_challenge {
            // A sign-in already waited for a challenge in vain.
            let reason = self.no_challenge_reason(&demand);
            self.finish(job, Delivery::Failed(reason));
            return;
        }
        if self.link.one_identity {
            // This relay admits one identity per connection, and another
            // one has it.
            self.hand_to_author_session(job);
            return;
        }
        if !self.link.authenticated() {
            // The connection's first sign-in is under way (as another
            // identity): wait for it rather than answer a challenge the
            // relay may be about to replace.
            if let Some(first) = self.link.sign_ins.iter().find(|s| !s.settled) {
                self.jobs[job].state = JobState::AwaitingSignIn(first.signer);
                return;
            }
        }
        let identity = self.identities[&signer].clone();
        let mut auth = Nip42::new(Some(identity), self.config.publish_timeout);
        if let Some(challenge) = &self.link.challenge {
            auth.on_challenge(challenge, now);
        }
        auth.on_auth_required(&demand, now);
        self.link.sign_ins.push(SignIn {
            signer,
            auth,
            demand,
            settled: false,
            verdict: None,
            epoch: None,
        });
        self.jobs[job].state = JobState::AwaitingSignIn(signer);
    }

    /// Carries out the sign-ins that have just ended: the events waiting for
    /// them go again, go to a connection of their own, or end. `timed_out`
    /// names the sign-ins that have just run out of time, and how.
    fn settle_sign_ins(&mut self, timed_out: &[(PublicKey, TimedOut)]) {
        for index in 0..self.link.sign_ins.len() {
            let sign_in = &self.link.sign_ins[index];
            if sign_in.settled {
                continue;
            }
            let (signer, demand) = (sign_in.signer, sign_in.demand.clone());
            let why = match sign_in.auth.status() {
                AuthStatus::Pending | AuthStatus::NotAsked => continue,
                AuthStatus::Authenticated => {
                    self.link.epoch += 1;
                    let epoch = self.link.epoch;
                    let sign_in = &mut self.link.sign_ins[index];
                    sign_in.settled = true;
                    sign_in.epoch = Some(epoch);
                    let waiting = self.awaiting(&signer);
                    self.requeue_front(waiting);
                    continue;
                }
                AuthStatus::Refused(why) => why,
            };
            let timeout = timed_out
                .iter()
                .find(|(who, _)| *who == signer)
                .map(|(_, how)| *how);
            let verdict = match timeout {
                Some(TimedOut::NoChallenge) => {
                    self.link.no_challenge = true;
                    Verdict::End(Delivery::Failed(self.no_challenge_reason(&demand)))
                }
                Some(TimedOut::NoAnswer) => {
                    Verdict::End(Delivery::Failed(format!("{demand} ({why})")))
                }
                None => {
                    let verdict = if self.link.authenticated() || self.link.refused {
                        // Another identity holds the connection, or the
                        // relay refused one already (Buzz never accepts an
                        // AUTH after a refusal): a connection of its own
                        // decides.
                        self.link.one_identity |= self.link.authenticated();
                        Verdict::ToAuthorSession
                    } else {
                        Verdict::End(Delivery::Refused(why))
                    };
                    self.link.refused = true;
                    verdict
                }
            };
            let sign_in = &mut self.link.sign_ins[index];
            sign_in.settled = true;
            sign_in.verdict = Some(verdict.clone());
            let (own, bystanders): (Vec<usize>, Vec<usize>) = self
                .awaiting(&signer)
                .into_iter()
                .partition(|&job| self.jobs[job].signer == signer);
            match verdict {
                // The relay cannot be made to answer: whoever waited fails.
                Verdict::End(Delivery::Failed(reason)) => {
                    for job in own.into_iter().chain(bystanders) {
                        self.finish(job, Delivery::Failed(reason.clone()));
                    }
                }
                Verdict::End(delivery) => {
                    for job in own {
                        self.finish(job, delivery.clone());
                    }
                    // Other identities may fare better.
                    self.requeue_front(bystanders);
                }
                Verdict::ToAuthorSession => {
                    for job in own {
                        self.hand_to_author_session(job);
                    }
                    self.requeue_front(bystanders);
                }
            }
        }
    }

    fn no_challenge_reason(&self, demand: &str) -> String {
        format!(
            "{demand} (the relay sent no NIP-42 challenge within {})",
            human_duration(self.config.publish_timeout)
        )
    }

    /// The connection is gone: what was in flight failed; what waited for
    /// its sign-ins goes again over the next one.
    fn lost(&mut self) {
        if self.link.lost {
            return;
        }
        self.link.lost = true;
        let mut lost: Vec<usize> = self.in_flight.drain().map(|(_, job)| job).collect();
        lost.sort_unstable();
        self.deadlines.clear();
        for job in lost {
            self.finish(job, Delivery::Failed(LOST_IN_FLIGHT.to_owned()));
        }
        let waiting: Vec<usize> = (0..self.jobs.len())
            .filter(|&job| matches!(self.jobs[job].state, JobState::AwaitingSignIn(_)))
            .collect();
        self.requeue_front(waiting);
        for job in &mut self.jobs {
            job.auth_demands = 0;
            job.sent_epoch = 0;
        }
        if self.stopping {
            self.send_no_more();
        }
    }

    /// Skips deadlines whose send was answered (or sent again) since.
    fn drop_stale_deadlines(&mut self) {
        while let Some(&(_, job, seq)) = self.deadlines.front() {
            if self.jobs[job].state == (JobState::InFlight { seq }) {
                break;
            }
            self.deadlines.pop_front();
        }
    }
}

/// A small deterministic generator (SplitMix64) for backoff jitter: the
/// session reads no random source, so its tests are repeatable.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    /// The next number in [0, 1).
    fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

mod session;

#[cfg(test)]
mod tests;
