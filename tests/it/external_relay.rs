//! End to end against a relay nobody here wrote: nostr-rs-relay 0.8.12, started
//! by the test on a free loopback port with its own temp database.
//!
//! When the binary is absent the test fails and says how to install it; it
//! never passes silently.

use crate::fixture_world::assert_matches_expected;
use crate::support::{publish_events, seed_events, start_local_relay};
use crate::world::World;

use crate::support::nrs;

/// Starts nostr-rs-relay on a free loopback port with its own temp database
/// (shared with the benchmark harness), or fails saying how to install it.
fn start_external_relay() -> nrs::NostrRsRelay {
    let binary = nrs::binary().unwrap_or_else(|| {
        panic!(
            "nostr-rs-relay is not installed, and this end-to-end test needs it. Install it with \
             `apt-get install -y protobuf-compiler && cargo install nostr-rs-relay --version 0.8.12` \
             (about ten minutes), or run `.ci/setup`; or point NOSTR_RS_RELAY at the binary."
        )
    });
    nrs::start(binary).expect("nostr-rs-relay starts and listens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_nostr_rs_relay_plan_matches_expected_json() {
    let external = start_external_relay();
    publish_events(&external.url, &seed_events()).await;
    // The world's own relay is not used: the rewrite points at nostr-rs-relay.
    let unused = start_local_relay().await;
    let world = World::with_relay(unused, external.url.clone(), "");
    let plan = world.plan_now().await;
    assert_matches_expected(&plan);
}
