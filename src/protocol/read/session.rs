//! The read session as a [`Session`]: the relay's messages in, frames and
//! deadlines out. Its state and helpers are its parent's.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use nostr::{ClientMessage, PublicKey, RelayMessage};

use super::{existing_event, BatchState, ReadAccepts, ReadSession, MAX_SUBSCRIPTIONS_IN_FLIGHT};
use crate::core::model::RelayObservation;
use crate::protocol::nip42::AuthStatus;
use crate::protocol::{hex32, human_duration, relay_text, Input, Session};

impl Session for ReadSession {
    fn accepted_events(&self) -> Option<Arc<dyn crate::protocol::AcceptedEvents>> {
        Some(Arc::new(ReadAccepts(Arc::clone(&self.batch_of_author))))
    }

    fn handle_input(&mut self, input: Input, now: Instant) {
        match input {
            Input::Event {
                subscription_id,
                event,
            } => self.accept_event(&subscription_id, event, now),
            Input::Message(message) => match message {
                RelayMessage::Event {
                    subscription_id,
                    event,
                } => self.accept_event(&subscription_id, Arc::new(event.into_owned()), now),
                RelayMessage::EndOfStoredEvents(subscription_id) => {
                    if let Some(index) = self.in_flight_index(&subscription_id) {
                        let order = self.batches[index].sent_order;
                        for other in &mut self.batches {
                            if other.sent_order < order
                                && matches!(other.state, BatchState::InFlight { .. })
                            {
                                other.overtaken += 1;
                            }
                        }
                        let batch = &mut self.batches[index];
                        batch.state = BatchState::Complete;
                        self.progress.inc(batch.authors.len() as u64);
                        if let Some(observer) = &self.observer {
                            let without: Vec<PublicKey> = batch
                                .authors
                                .iter()
                                .filter(|author| !self.newest.contains_key(author))
                                .copied()
                                .collect();
                            if !without.is_empty() {
                                observer.no_profile(&without);
                            }
                        }
                        for author in &batch.authors {
                            let observation = match self.newest.remove(author) {
                                Some(event) => RelayObservation::Newest(existing_event(&event)),
                                None => RelayObservation::NoProfile,
                            };
                            self.observations
                                .insert(hex32(author.as_bytes()), observation);
                        }
                        self.outbox
                            .push(ClientMessage::close(subscription_id.into_owned()));
                        self.last_eose = Some(now);
                    }
                }
                RelayMessage::Closed {
                    subscription_id,
                    message,
                } => self.closed(&subscription_id, &message, now),
                RelayMessage::Notice(message) => {
                    let text = relay_text(&message);
                    tracing::debug!(notice = %text, "relay notice");
                    if message.trim_start().starts_with("rate-limited:") {
                        // A frame of ours was dropped over quota: hold the
                        // REQs for the wait (a lost one is asked again by
                        // the stall rules).
                        self.rate_limited(None, &message, now);
                    }
                    self.last_notice = Some(text);
                }
                RelayMessage::Auth { challenge } => {
                    self.auth_demanded = true;
                    self.auth.on_challenge(&challenge, now)
                }
                RelayMessage::Ok {
                    event_id,
                    status,
                    message,
                } => {
                    let text = relay_text(&message);
                    if self.auth.on_ok(&event_id, status, &text) {
                        self.settle_held_batches();
                    }
                }
                other => tracing::debug!(message = ?other, "relay message ignored"),
            },
            Input::Lagged(missed) => {
                // Lost notifications may have held events or EOSEs of the
                // open subscriptions: none of them can be trusted.
                self.fail_in_flight(&format!(
                    "timed out: the reader fell behind and lost {missed} relay messages before EOSE"
                ));
            }
            Input::Lost(reason) => self.fail_remaining(&format!("{reason} before EOSE")),
        }
    }

    fn poll_transmit(&mut self, now: Instant, now_unix: u64) -> Vec<ClientMessage<'static>> {
        let mut frames = std::mem::take(&mut self.outbox);
        if let Some(auth) = self.auth.poll_transmit(now, now_unix) {
            frames.push(auth);
        }
        // REQs wait while authentication is under way: sent now, they would
        // only be refused.
        let status = self.auth.status();
        if status != AuthStatus::Pending {
            let mut in_flight = self.in_flight_count();
            self.reqs_held_until = None;
            while in_flight < MAX_SUBSCRIPTIONS_IN_FLIGHT && !self.queue.is_empty() {
                if let Some(allowed) = self.req_allowed_at(now) {
                    // Woken then to send them.
                    self.reqs_held_until = Some(allowed);
                    break;
                }
                let Some(index) = self.queue.pop_front() else {
                    break;
                };
                self.pace_sent(now);
                let batch = &mut self.batches[index];
                frames.push(ClientMessage::req(batch.id.clone(), vec![batch.filter()]));
                batch.sent_signed_in = status == AuthStatus::Authenticated;
                batch.state = BatchState::InFlight {
                    sent: now,
                    deadline: now + self.query_timeout,
                };
                batch.sent_order = self.sent;
                batch.overtaken = 0;
                batch.last_event = None;
                self.sent += 1;
                in_flight += 1;
            }
        }
        frames
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let stall = self
            .batches
            .iter()
            .filter_map(|batch| self.stall_due(batch))
            .chain(self.tail_stall().map(|(_, due)| due))
            .min();
        [
            self.next_batch_deadline(),
            self.auth.poll_timeout(),
            stall,
            self.reqs_held_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.auth.handle_timeout(now);
        self.settle_held_batches();
        // A subscription overtaken by a whole window of later ones, or left
        // alone open at the end of the read while the relay went silent on
        // it, is lost (nostr-rs-relay drops one now and then without a
        // word): ask again now rather than at its deadline.
        self.retry_stalled(now);
        let Some(due) = self.next_batch_deadline().filter(|due| *due <= now) else {
            return;
        };
        // A subscription went unanswered. When the relay ended others after
        // it was sent, it is alive and lost just this one: ask once more.
        if self.retry_timed_out(due, now) {
            return;
        }
        // Otherwise the relay is unresponsive, and the batches not yet sent
        // are not tried, so a silent relay costs one query timeout.
        let mut reason = format!(
            "timed out after {} waiting for EOSE",
            human_duration(self.query_timeout)
        );
        if let Some(notice) = &self.last_notice {
            let _ = write!(reason, " (last NOTICE from the relay: {notice})");
        }
        self.fail_remaining(&reason);
    }

    fn is_done(&self) -> bool {
        !self.batches.iter().any(|batch| {
            matches!(
                batch.state,
                BatchState::Waiting | BatchState::InFlight { .. }
            )
        })
    }
}
