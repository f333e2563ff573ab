//! The relay edge for reading.
//!
//! Reading: the newest kind:0 of each agent, with proof that the relay's
//! answer was complete. One connection per relay (or a few, with
//! `read_connections`), kind:0 requests for many authors at once; every
//! decision (what to send, completeness, authentication, retries) is made by
//! [`crate::protocol::read::ReadSession`], driven over a bare websocket by
//! `crate::net::wire` (which checks every event's id and signature on a pool of
//! one thread per core). This module spreads relays and their authors over
//! connections, and, when the relay refused
//! the identity a connection signed in as, opens a new connection for the
//! refused authors with the next identity of [`ReadOptions::identities`] (a
//! refused AUTH poisons a connection).
//!
//! An author's relay state counts as known only when the relay ended the
//! stored events of that author's subscription (EOSE). Anything else gives
//! [`RelayObservation::Unreadable`] (or [`RelayObservation::AuthRefused`]
//! when the relay demanded an authentication that no identity passed), never
//! [`RelayObservation::NoProfile`]: an unreadable relay must never look like
//! a missing profile, or the tool would republish over a profile it never saw.
//!
//! What it must not do: decide anything about profiles (that is the core's
//! job), or print or log keys. It logs through `tracing` only.
//!
//! Why not `Client::fetch_events`: nostr-sdk returns `Ok` with no events for a
//! dead or silent relay (see `shared/spec/nostr-sdk-facts.md`), so the session
//! sends its own REQs and is fed every relay message (`EOSE` / `CLOSED` /
//! `AUTH` / `OK`) and the connection's end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use nostr::PublicKey;
use tokio::task::JoinSet;

use crate::core::model::RelayObservation;
use crate::protocol::nip42::{AuthStatus, Identity};
pub use crate::protocol::read::Observations;
use crate::protocol::read::ReadSession;

/// The most authors one REQ filter may name. Relays cap filters and results
/// (strfry: 500 events per filter), so batches stay small.
pub const MAX_AUTHORS_PER_FILTER: usize = 100;

/// Time limits for talking to relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayTimeouts {
    /// How long to wait for the websocket connection to open.
    pub connect: Duration,
    /// How long to wait for a subscription's EOSE after sending its REQ (and
    /// for an AUTH challenge or the answer to an AUTH).
    pub query: Duration,
}

impl Default for RelayTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            query: Duration::from_secs(15),
        }
    }
}

/// How [`read_profiles`] reads.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Time limits.
    pub timeouts: RelayTimeouts,
    /// How many relays are read at the same time (at least 1 is used).
    pub max_concurrent_relays: usize,
    /// How many connections one relay's authors are spread over (at least 1
    /// is used; never more than it has batches). Signatures are checked on
    /// a pool of one thread per core whatever this is, so more connections
    /// help only a relay that is slow to answer each.
    pub connections_per_relay: usize,
    /// How many authors one REQ filter names; values outside
    /// `1..=`[`MAX_AUTHORS_PER_FILTER`] are clamped into that range.
    pub authors_per_filter: usize,
    /// Advanced by the number of authors of each batch as it completes.
    pub progress: crate::progress::Progress,
    /// Relay URL (as read, after rewrite) to the identities a read connection
    /// signs in as when the relay demands it, in the order they are tried
    /// (one per connection). A relay with none reads without authentication.
    pub identities: Arc<BTreeMap<String, Vec<Identity>>>,
    /// Whom `wss://` relays are trusted by.
    pub tls: crate::net::tls::Tls,
    /// How events' signatures are checked: every one (the default), or with
    /// a daemon's memory of the checks of earlier ticks.
    pub checker: crate::net::verified::Checker,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            timeouts: RelayTimeouts::default(),
            max_concurrent_relays: 16,
            connections_per_relay: 1,
            authors_per_filter: MAX_AUTHORS_PER_FILTER,
            progress: crate::progress::Progress::none(),
            identities: Arc::default(),
            tls: crate::net::tls::Tls::default(),
            checker: crate::net::verified::Checker::default(),
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
/// id or signature does not verify (`crate::net::wire` checks both, with
/// `opts.checker`) are ignored.
///
/// This never fails as a whole: every problem becomes an
/// [`RelayObservation::Unreadable`] (or `AuthRefused`) with a short reason
/// for the authors it concerns. All connections are closed before it returns.
pub async fn read_profiles(
    requests: BTreeMap<String, Vec<PublicKey>>,
    opts: &ReadOptions,
) -> BTreeMap<String, Observations> {
    read_relays(requests, opts)
        .await
        .into_iter()
        .map(|(url, read)| (url, read.observations))
        .collect()
}

/// What reading one relay gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayRead {
    /// Author pubkey hex to observation.
    pub observations: Observations,
    /// Whether the relay asked for authentication (an AUTH challenge, or a
    /// REQ refused with `auth-required:`): publishing to it then goes over
    /// connections signed in as each author, which any relay that speaks
    /// NIP-42 accepts, and which a relay of one identity per connection
    /// (Buzz) requires.
    pub auth_demanded: bool,
}

/// [`read_profiles`], also telling for each relay whether it demanded
/// authentication.
pub async fn read_relays(
    requests: BTreeMap<String, Vec<PublicKey>>,
    opts: &ReadOptions,
) -> BTreeMap<String, RelayRead> {
    let connections = opts.connections_per_relay.max(1);
    let max_relays = opts.max_concurrent_relays.max(1);
    let per_filter = opts.authors_per_filter.clamp(1, MAX_AUTHORS_PER_FILTER);
    let mut results = BTreeMap::new();
    let mut tasks: JoinSet<(String, RelayRead)> = JoinSet::new();
    // What each running task reads, so that a task that panics still gives its
    // authors an observation.
    let mut running: HashMap<tokio::task::Id, (String, Vec<PublicKey>)> = HashMap::new();

    for (url, authors) in requests {
        let authors = unique_authors(&authors);
        // Whole batches per connection: the same REQs as over one connection.
        let batches = authors.len().div_ceil(per_filter).max(1);
        let per_connection = batches.div_ceil(connections.min(batches)) * per_filter;
        results.insert(url.clone(), RelayRead::default());
        // At most `max_relays` relays at a time, each over all its connections.
        while relays_running(&running) >= max_relays {
            collect_one(&mut tasks, &mut running, &mut results).await;
        }
        for share in split_authors(&authors, per_connection) {
            let task_opts = opts.clone();
            let task_url = url.clone();
            let task_authors = share.to_vec();
            let handle = tasks.spawn(async move {
                let read = read_relay(&task_url, &task_authors, &task_opts).await;
                (task_url, read)
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
    tasks: &mut JoinSet<(String, RelayRead)>,
    running: &mut HashMap<tokio::task::Id, (String, Vec<PublicKey>)>,
    results: &mut BTreeMap<String, RelayRead>,
) {
    match tasks.join_next_with_id().await {
        Some(Ok((id, (url, read)))) => {
            running.remove(&id);
            let entry = results.entry(url).or_default();
            if entry.observations.is_empty() {
                entry.observations = read.observations;
            } else {
                entry.observations.extend(read.observations);
            }
            entry.auth_demanded |= read.auth_demanded;
        }
        Some(Err(error)) => {
            if let Some((url, authors)) = running.remove(&error.id()) {
                tracing::warn!(relay = %url, %error, "relay reader task failed");
                let reason = format!("internal error while reading the relay: {error}");
                let observations = unique_authors(&authors).into_iter().map(|author| {
                    (
                        author.to_hex(),
                        RelayObservation::Unreadable(reason.clone()),
                    )
                });
                results
                    .entry(url)
                    .or_default()
                    .observations
                    .extend(observations);
            }
        }
        None => {}
    }
}

/// Reads one share of a relay's authors: over one connection, and when the
/// relay refuses the identity that connection signed in as, over a new
/// connection with the next identity, for the authors it refused.
async fn read_relay(url: &str, authors: &[PublicKey], opts: &ReadOptions) -> RelayRead {
    let mut remaining = unique_authors(authors);
    let mut read = RelayRead::default();
    if remaining.is_empty() {
        return read;
    }
    let per_filter = opts.authors_per_filter.clamp(1, MAX_AUTHORS_PER_FILTER);
    let identities = opts.identities.get(url).map(Vec::as_slice).unwrap_or(&[]);
    // Why each identity tried so far was refused.
    let mut refusals: Vec<String> = Vec::new();
    let mut attempt = 0;
    loop {
        let identity = identities.get(attempt).cloned();
        let mut session =
            ReadSession::new(remaining.chunks(per_filter), opts.timeouts.query, identity)
                .with_progress(opts.progress.clone())
                .with_observer(opts.checker.observer().cloned());
        let checker = opts.checker.clone();
        match crate::net::wire::connect(url, opts.timeouts.connect, &opts.tls, checker).await {
            Ok(mut connection) => {
                crate::net::wire::drive(&mut session, &mut connection).await;
                connection.close().await;
            }
            Err(reason) => {
                tracing::info!(relay = %url, %reason, "relay unreadable");
                session.fail_remaining(&reason);
            }
        }
        read.auth_demanded |= session.auth_demanded();
        let refused = session.refused_authors();
        if let AuthStatus::Refused(why) = session.auth_status() {
            tracing::warn!(relay = %url, reason = %why, "authentication refused");
            refusals.push(why);
        }
        let mut observations = session.into_observations();
        let identity_refused = refusals.len() > attempt;
        if !refused.is_empty() && identity_refused && attempt + 1 < identities.len() {
            // A refused AUTH poisons the connection: the next identity gets a
            // new one, for the authors this one could not read.
            for author in &refused {
                observations.remove(&author.to_hex());
            }
            read.observations.extend(observations);
            remaining = refused;
            attempt += 1;
            continue;
        }
        if refusals.len() > 1 {
            // Say every identity that was tried, not only the last.
            let all = refusals.join("; ");
            for observation in observations.values_mut() {
                if let RelayObservation::AuthRefused(reason) = observation {
                    *reason = all.clone();
                }
            }
        }
        // The first share's table is moved, not hashed again.
        if read.observations.is_empty() {
            read.observations = observations;
        } else {
            read.observations.extend(observations);
        }
        return read;
    }
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
    let mut seen: HashSet<PublicKey, foldhash::fast::RandomState> =
        HashSet::with_capacity_and_hasher(authors.len(), Default::default());
    authors
        .iter()
        .copied()
        .filter(|author| seen.insert(*author))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authors_are_read_once_each_in_first_seen_order() {
        let a = nostr::Keys::generate().public_key();
        let b = nostr::Keys::generate().public_key();
        assert_eq!(unique_authors(&[a, b, a, b, a]), vec![a, b]);
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
