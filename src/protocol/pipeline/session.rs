//! The pipelined publisher as a [`Session`]: the relay's messages in, frames
//! and deadlines out. Its state and helpers are its parent's.

use std::cmp::Reverse;
use std::time::Instant;

use nostr::{ClientMessage, RelayMessage};

use super::{JobState, PipelinedPublish, TimedOut};
use crate::protocol::nip42::AuthStatus;
use crate::protocol::write::Delivery;
use crate::protocol::{human_duration, relay_text, Input, Session};

impl Session for PipelinedPublish {
    fn handle_input(&mut self, input: Input, now: Instant) {
        if self.link.lost {
            return;
        }
        match input {
            Input::Message(RelayMessage::Ok {
                event_id,
                status,
                message,
            }) => {
                let text = relay_text(&message);
                let mut for_auth = false;
                for sign_in in &mut self.link.sign_ins {
                    if sign_in.auth.on_ok(&event_id, status, &text) {
                        for_auth = true;
                        break;
                    }
                }
                if for_auth {
                    self.settle_sign_ins(&[]);
                } else if let Some(job) = self.in_flight.remove(&event_id) {
                    self.answered(job, status, &message, now);
                    self.drop_stale_deadlines();
                } else if let Some(job) = self.waiting_again(&event_id) {
                    // Sent before a rate-limited NOTICE, answered after all.
                    self.answered(job, status, &message, now);
                } else {
                    tracing::debug!(id = %event_id, "OK for no event in flight ignored");
                }
            }
            Input::Message(RelayMessage::Auth { challenge }) => {
                for sign_in in &mut self.link.sign_ins {
                    sign_in.auth.on_challenge(&challenge, now);
                }
                self.link.challenge = Some(challenge.into_owned());
            }
            Input::Message(RelayMessage::Notice(message)) => {
                if message.starts_with("rate-limited:") {
                    self.rate_limited_notice(&relay_text(&message), now);
                } else {
                    tracing::debug!(notice = %relay_text(&message), "relay notice");
                }
            }
            Input::Message(_) | Input::Event { .. } | Input::Lagged(_) => {}
            Input::Lost(reason) => {
                tracing::debug!(%reason, "connection lost while publishing");
                self.lost();
            }
        }
        if self.stopping {
            self.send_no_more();
        }
    }

    fn poll_transmit(&mut self, now: Instant, now_unix: u64) -> Vec<ClientMessage<'static>> {
        let mut frames = Vec::new();
        if self.link.lost {
            return frames;
        }
        for sign_in in &mut self.link.sign_ins {
            if let Some(auth) = sign_in.auth.poll_transmit(now, now_unix) {
                frames.push(auth);
            }
        }
        // An AUTH that could not be signed is refused at once.
        self.settle_sign_ins(&[]);
        if self.stopping {
            self.send_no_more();
            return frames;
        }
        if self.link.holds_sending() || self.paused(now) {
            return frames;
        }
        let room = self.max_in_flight().saturating_sub(self.in_flight.len());
        let deadline = now + self.config.publish_timeout;
        for _ in 0..room {
            let Some(job) = self.ready.pop_front() else {
                break;
            };
            if self.jobs[job].state != JobState::Ready {
                continue;
            }
            self.sends += 1;
            let seq = self.sends;
            let entry = &mut self.jobs[job];
            entry.state = JobState::InFlight { seq };
            entry.sent_epoch = self.link.epoch;
            self.in_flight.insert(entry.event.id, job);
            self.deadlines.push_back((deadline, job, seq));
            frames.push(ClientMessage::event(entry.event.clone()));
        }
        frames
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.link.lost || self.remaining == 0 {
            return None;
        }
        let flight = self
            .deadlines
            .iter()
            .find(|&&(_, job, seq)| self.jobs[job].state == (JobState::InFlight { seq }))
            .map(|&(deadline, _, _)| deadline);
        let backoff = self.backoff.peek().map(|Reverse((due, _))| *due);
        let sign_in = self
            .link
            .sign_ins
            .iter()
            .filter_map(|s| s.auth.poll_timeout())
            .min();
        let paused = self.paused_until.filter(|_| !self.ready.is_empty());
        [flight, backoff, sign_in, paused]
            .into_iter()
            .flatten()
            .min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.link.lost {
            return;
        }
        if !self.paused(now) {
            self.paused_until = None;
        }
        loop {
            self.drop_stale_deadlines();
            match self.deadlines.front() {
                Some(&(deadline, job, _)) if deadline <= now => {
                    self.deadlines.pop_front();
                    self.in_flight.remove(&self.jobs[job].event.id);
                    let reason = format!(
                        "no OK from the relay within {}",
                        human_duration(self.config.publish_timeout)
                    );
                    self.finish(job, Delivery::Failed(reason));
                }
                _ => break,
            }
        }
        while let Some(&Reverse((due, job))) = self.backoff.peek() {
            if due > now {
                break;
            }
            self.backoff.pop();
            if self.jobs[job].state == JobState::Backoff {
                self.jobs[job].state = JobState::Ready;
                self.ready.push_back(job);
            }
        }
        let mut timed_out = Vec::new();
        for sign_in in &mut self.link.sign_ins {
            if sign_in.settled {
                continue;
            }
            let challenged = sign_in.auth.has_challenge();
            sign_in.auth.handle_timeout(now);
            if matches!(sign_in.auth.status(), AuthStatus::Refused(_)) {
                let how = if challenged {
                    TimedOut::NoAnswer
                } else {
                    TimedOut::NoChallenge
                };
                timed_out.push((sign_in.signer, how));
            }
        }
        self.settle_sign_ins(&timed_out);
        if self.stopping {
            self.send_no_more();
        }
    }

    fn is_done(&self) -> bool {
        self.link.lost || self.remaining == 0
    }
}
