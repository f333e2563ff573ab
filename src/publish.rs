//! Publishing signed kind:0 events to a relay (the write side of the relay edge).
//!
//! Placeholder implementation: one connection, one event at a time, no NIP-42.

use std::time::Duration;

use nostr::{Event, Keys};
use nostr_sdk::Client;

use crate::core::apply::{classify_ok, Backoff, PublishAnswer};

/// One event to publish, with the key of the agent that signed it (used to
/// answer a NIP-42 challenge as that agent).
#[derive(Debug, Clone)]
pub struct PublishItem {
    /// The signed event.
    pub event: Event,
    /// The agent's keys.
    pub keys: Keys,
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The relay said OK (true, or `duplicate:`).
    Accepted,
    /// The relay refused it; its message, verbatim.
    Refused(String),
    /// No answer, a lost connection, or retries used up; why.
    Failed(String),
}

/// How to publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Wait for the connection.
    pub connect_timeout: Duration,
    /// Wait for each OK.
    pub publish_timeout: Duration,
    /// Retries of `rate-limited:` answers.
    pub backoff: Backoff,
    /// Events in flight at once on one connection.
    pub max_in_flight: usize,
    /// A service key to authenticate with (NIP-42) instead of the agent's.
    pub service_keys: Option<Keys>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(15),
            backoff: Backoff::default(),
            max_in_flight: 64,
            service_keys: None,
        }
    }
}

/// Publishes every item to `url`; one delivery per item, in order. Never
/// fails as a whole.
pub async fn publish_all(
    url: &str,
    items: Vec<PublishItem>,
    opts: &PublishOptions,
) -> Vec<Delivery> {
    let client = Client::default();
    if let Err(err) = client.add_relay(url).await {
        return items
            .iter()
            .map(|_| Delivery::Failed(err.to_string()))
            .collect();
    }
    if let Err(err) = client.try_connect_relay(url, opts.connect_timeout).await {
        let reason = format!("connection failed: {err}");
        return items
            .iter()
            .map(|_| Delivery::Failed(reason.clone()))
            .collect();
    }
    let mut deliveries = Vec::with_capacity(items.len());
    for item in &items {
        let mut attempt = 0;
        let delivery = loop {
            let answer = match client.send_event_to([url], &item.event).await {
                Ok(output) => match output.failed.values().next() {
                    None => PublishAnswer::Accepted,
                    Some(message) => classify_ok(false, message),
                },
                Err(err) => break Delivery::Failed(err.to_string()),
            };
            match answer {
                PublishAnswer::Accepted => break Delivery::Accepted,
                PublishAnswer::Refused(message) | PublishAnswer::AuthRequired(message) => {
                    break Delivery::Refused(message)
                }
                PublishAnswer::RateLimited(message) => {
                    attempt += 1;
                    match opts.backoff.delay(attempt, 0.5) {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => {
                            break Delivery::Failed(format!(
                                "{message} (gave up after {} retries)",
                                attempt - 1
                            ))
                        }
                    }
                }
            }
        };
        deliveries.push(delivery);
    }
    client.shutdown().await;
    deliveries
}
