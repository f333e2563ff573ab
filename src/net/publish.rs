//! Publishing signed kind:0 events to a relay (the write side of the relay edge).
//!
//! [`publish_all`] delivers a batch of already signed events to one relay and
//! says, for each event, whether the relay accepted it, refused it, or could
//! not be made to answer; [`publish_all_reporting`] also reports each
//! accepted event as its OK arrives (apply journals it at once).
//!
//! Every decision is made by a sans-IO session of `crate::protocol`, driven
//! over a bare websocket by the one edge loop of `crate::net::wire` (the loop
//! reads use too): this module only opens connections, runs sessions and
//! gathers their outcomes.
//!
//! - **Pipelined, one connection** ([`PipelinedPublish`]): up to
//!   [`PublishOptions::max_in_flight`] EVENTs await their OK at once;
//!   `rate-limited:` resends the same signed event after the core's backoff;
//!   `auth-required:` signs the connection in (NIP-42) as the event's author,
//!   with its NIP-OA tag and the relay connected to as the `relay` tag (or as
//!   [`PublishOptions::service_keys`]), then resends it. A relay that admits
//!   one identity per connection and wants each author signed in gets the
//!   other authors' events over connections of their own, as below. A lost
//!   connection fails the events in flight; the rest go on over a new one,
//!   at most [`MAX_RECONNECTS`] times.
//! - **One connection per author** ([`PublishOptions::sign_in_as_author`], and
//!   the events the pipelined session hands over): each event over a
//!   connection of its own, signed in as its author before the event goes
//!   ([`AuthorPublish`]), at most [`PublishOptions::max_author_sessions`] at
//!   a time.
//! - **Stopping.** With [`PublishOptions::stop`] set, no new EVENT is sent
//!   once the flag is up (nor sent again after `rate-limited:` or
//!   `auth-required:`) and no new connection is opened; events already sent
//!   get their OK or time out. What was not sent is [`Delivery::NotSent`].
//!   The flag is looked at before each send and, while events await their
//!   OK, every [`STOP_POLL`].
//!
//! Everything is bounded: each event has a deadline per attempt, retries and
//! reconnects are capped, relay-supplied text is capped in length, and every
//! websocket message is at most `crate::net::tls::MAX_MESSAGE_BYTES`. Keys sign
//! AUTH events and are never logged. Every connection is closed before
//! [`publish_all`] returns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nostr::{ClientMessage, Event, EventId, Keys};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::core::apply::Backoff;
use crate::protocol::nip42::Identity;
use crate::protocol::pipeline::{
    NextConnection, PipelineConfig, PipelineEnd, PipelinedPublish, PublishJob,
};
use crate::protocol::write::AuthorPublish;
use crate::protocol::{Input, Session};

pub use crate::protocol::pipeline::MAX_RECONNECTS;
pub use crate::protocol::write::Delivery;

/// How often a pipelined publisher waiting on the relay looks at the stop
/// flag.
pub const STOP_POLL: Duration = Duration::from_millis(100);

/// One event to publish, with the key of the agent that signed it (used to
/// answer a NIP-42 challenge as that agent).
#[derive(Debug, Clone)]
pub struct PublishItem {
    /// The signed event.
    pub event: Event,
    /// The agent's keys.
    pub keys: Keys,
    /// Who a connection signs in as for this event when the relay demands
    /// it: the agent's keys with its NIP-OA tag. `None`: the agent's keys, no
    /// tag. Either way the AUTH's `relay` tag names the relay published to.
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
    /// How many connections of their own (per author) are open at once (at
    /// least 1 is used).
    pub max_author_sessions: usize,
    /// Whom `wss://` relays are trusted by.
    pub tls: crate::net::tls::Tls,
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
            tls: crate::net::tls::Tls::default(),
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
    publish_all_reporting(url, items, opts, &|_| {}).await
}

/// [`publish_all`], calling `on_accepted` with the position of each item the
/// relay accepted as soon as its OK arrives (while other events may still
/// await theirs), once per item.
pub async fn publish_all_reporting(
    url: &str,
    items: Vec<PublishItem>,
    opts: &PublishOptions,
    on_accepted: &(dyn Fn(usize) + Sync),
) -> Vec<Delivery> {
    if items.is_empty() {
        return Vec::new();
    }
    // One job per distinct event; the items that carry it.
    let mut job_of_id: HashMap<EventId, usize> = HashMap::new();
    let mut job_of_item = Vec::with_capacity(items.len());
    let mut items_of_job: Vec<Vec<usize>> = Vec::new();
    let mut jobs: Vec<AuthorJob> = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let job = *job_of_id.entry(item.event.id).or_insert_with(|| {
            items_of_job.push(Vec::new());
            jobs.push(AuthorJob {
                author: author_identity(url, &item),
                event: item.event,
            });
            jobs.len() - 1
        });
        items_of_job[job].push(index);
        job_of_item.push(job);
    }
    let report = |job: usize| {
        for &item in &items_of_job[job] {
            on_accepted(item);
        }
    };
    let deliveries = if opts.sign_in_as_author {
        let all = jobs.into_iter().enumerate().collect();
        publish_as_authors(url, all, opts, &report).await
    } else {
        publish_pipelined(url, jobs, opts, &report).await
    };
    job_of_item
        .into_iter()
        .map(|job| deliveries[job].clone())
        .collect()
}

/// One distinct event, and its author signing in as itself.
struct AuthorJob {
    event: Event,
    author: Identity,
}

/// Who `item`'s author signs in as on `url`: its sign-in identity (with its
/// NIP-OA tag), else its keys alone; the `relay` tag names `url`, the relay
/// connected to.
fn author_identity(url: &str, item: &PublishItem) -> Identity {
    let mut identity = item.sign_in.clone().unwrap_or_else(|| Identity {
        keys: item.keys.clone(),
        auth_tag: None,
        relay_tag: url.to_owned(),
        label: format!("agent {}", item.event.pubkey.to_hex()),
    });
    identity.relay_tag = url.to_owned();
    identity
}

/// Publishes `jobs` over one pipelined connection at a time
/// ([`PipelinedPublish`]), then the events it hands over, each over a
/// connection of its own; one delivery per job, in order.
async fn publish_pipelined(
    url: &str,
    jobs: Vec<AuthorJob>,
    opts: &PublishOptions,
    report: &(dyn Fn(usize) + Sync),
) -> Vec<Delivery> {
    let service = opts.service_keys.as_ref().map(|keys| Identity {
        keys: keys.clone(),
        auth_tag: None,
        relay_tag: url.to_owned(),
        label: "the service key ([relay] auth_key_file)".to_owned(),
    });
    let config = PipelineConfig {
        max_in_flight: opts.max_in_flight,
        publish_timeout: opts.publish_timeout,
        backoff: opts.backoff,
    };
    let pipelined: Vec<PublishJob> = jobs
        .iter()
        .map(|job| PublishJob {
            event: job.event.clone(),
            identity: service.clone().unwrap_or_else(|| job.author.clone()),
        })
        .collect();
    let mut session = PipelinedPublish::new(pipelined, config, jitter_seed());
    loop {
        if opts.stopping() {
            session.stop();
        }
        match session.next_connection() {
            NextConnection::Finished => break,
            NextConnection::After(pause) if pause.is_zero() => {}
            NextConnection::After(pause) => {
                tracing::info!(relay = %url, ?pause, "connection lost; reconnecting");
                tokio::time::sleep(pause).await;
                if opts.stopping() {
                    continue;
                }
            }
        }
        let checker = crate::net::verified::Checker::default();
        match crate::net::wire::connect(url, opts.connect_timeout, &opts.tls, checker).await {
            Ok(mut connection) => {
                session.connected();
                let mut driven = Reporting {
                    session: &mut session,
                    stop: opts.stop.as_deref(),
                    report,
                };
                crate::net::wire::drive(&mut driven, &mut connection).await;
                connection.close().await;
            }
            Err(reason) => {
                tracing::warn!(relay = %url, %reason, "cannot publish");
                session.connect_failed(&reason);
            }
        }
    }
    while let Some(job) = session.poll_accepted() {
        report(job);
    }
    let ends = session.into_ends();
    let mut handed = Vec::new();
    let mut deliveries = Vec::with_capacity(ends.len());
    for (job, (end, author_job)) in ends.into_iter().zip(jobs).enumerate() {
        match end {
            PipelineEnd::Delivered(delivery) => deliveries.push(delivery),
            PipelineEnd::ToAuthorSession => {
                deliveries.push(Delivery::NotSent);
                handed.push((job, author_job));
            }
        }
    }
    if !handed.is_empty() {
        tracing::debug!(
            relay = %url,
            events = handed.len(),
            "the relay admits one identity per connection: the other authors' events go over connections of their own"
        );
        let positions: Vec<usize> = handed.iter().map(|(job, _)| *job).collect();
        let delivered = publish_as_authors(url, handed, opts, report).await;
        for (job, delivery) in positions.into_iter().zip(delivered) {
            deliveries[job] = delivery;
        }
    }
    deliveries
}

/// A [`PipelinedPublish`] as the edge loop drives it: the stop flag is
/// passed on to it before each send and (while it waits on the relay) every
/// [`STOP_POLL`], and each event it reports accepted is reported at once.
/// Decides nothing.
struct Reporting<'a> {
    session: &'a mut PipelinedPublish,
    stop: Option<&'a AtomicBool>,
    report: &'a (dyn Fn(usize) + Sync),
}

impl Reporting<'_> {
    fn pass_stop(&mut self) {
        if self.stop.is_some_and(|stop| stop.load(Ordering::SeqCst)) {
            self.session.stop();
        }
    }

    fn report_accepted(&mut self) {
        while let Some(job) = self.session.poll_accepted() {
            (self.report)(job);
        }
    }
}

impl Session for Reporting<'_> {
    fn handle_input(&mut self, input: Input, now: Instant) {
        self.session.handle_input(input, now);
        self.report_accepted();
    }

    fn poll_transmit(&mut self, now: Instant, now_unix: u64) -> Vec<ClientMessage<'static>> {
        self.pass_stop();
        let frames = self.session.poll_transmit(now, now_unix);
        self.report_accepted();
        frames
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let due = self.session.poll_timeout()?;
        Some(match self.stop {
            Some(_) => due.min(Instant::now() + STOP_POLL),
            None => due,
        })
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.pass_stop();
        self.session.handle_timeout(now);
        self.report_accepted();
    }

    fn is_done(&self) -> bool {
        self.session.is_done()
    }
}

/// Publishes each of `jobs` (its position among all jobs, and the job) over
/// a connection of its own, signed in as its author ([`AuthorPublish`]), at
/// most `opts.max_author_sessions` at a time; one delivery per job, in the
/// order given. `report` is told each accepted job's position as its session
/// ends. A refusal of one agent (no NIP-OA tag, a tag by a non-member) holds
/// back no other.
async fn publish_as_authors(
    url: &str,
    jobs: Vec<(usize, AuthorJob)>,
    opts: &PublishOptions,
    report: &(dyn Fn(usize) + Sync),
) -> Vec<Delivery> {
    let limit = Arc::new(Semaphore::new(opts.max_author_sessions.max(1)));
    let mut tasks = JoinSet::new();
    let mut positions = Vec::with_capacity(jobs.len());
    for (slot, (position, job)) in jobs.into_iter().enumerate() {
        positions.push(position);
        let limit = Arc::clone(&limit);
        let url = url.to_owned();
        let opts = opts.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            if opts.stopping() {
                return (slot, Delivery::NotSent);
            }
            let mut session = AuthorPublish::new(
                job.event,
                job.author,
                true,
                opts.publish_timeout,
                opts.backoff,
                jitter(),
                std::time::Instant::now(),
            );
            let checker = crate::net::verified::Checker::default();
            let delivery =
                match crate::net::wire::connect(&url, opts.connect_timeout, &opts.tls, checker)
                    .await
                {
                    Ok(mut connection) => {
                        crate::net::wire::drive(&mut session, &mut connection).await;
                        connection.close().await;
                        session.delivery().cloned().unwrap_or_else(|| {
                            Delivery::Failed("publishing did not finish".to_owned())
                        })
                    }
                    Err(reason) => Delivery::Failed(reason),
                };
            (slot, delivery)
        });
    }
    let mut deliveries: Vec<Option<Delivery>> = vec![None; positions.len()];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((slot, delivery)) => {
                if delivery == Delivery::Accepted {
                    report(positions[slot]);
                }
                deliveries[slot] = Some(delivery);
            }
            Err(error) => tracing::warn!(relay = %url, %error, "publish task failed"),
        }
    }
    deliveries
        .into_iter()
        .map(|delivery| {
            delivery
                .unwrap_or_else(|| Delivery::Failed("internal error while publishing".to_owned()))
        })
        .collect()
}

/// A random number in [0, 1) for backoff jitter.
fn jitter() -> f64 {
    nostr::prelude::rand::random::<f64>()
}

/// A random seed for a pipelined session's backoff jitter.
fn jitter_seed() -> u64 {
    nostr::prelude::rand::random::<u64>()
}

#[cfg(test)]
mod tests {
    use nostr::EventBuilder;

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
