//! Who owns an agent's profile (RECONCILE.md rule C6, `[profile] owner`),
//! through the daemon's ticks in apply mode on a real relay: under "agent",
//! a profile the agent changed itself is never argued with; under "record"
//! (the default) it is republished from the record, as before; a per-agent
//! owner overrides the default; a missing profile is published once, then
//! left to the agent.

use std::collections::BTreeMap;

use nostr::{Keys, PublicKey};
use reprofile::core::model::RelayObservation;
use reprofile::engine::orchestrate::{now_secs, Daemon, Stop, TickReport};
use serde_json::Value;

use crate::support::{publish_events, signed_profile};
use crate::world::World;

/// The keys of `World::generated`'s agent `i`.
fn keys(i: u64) -> Keys {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&(i + 1).to_be_bytes());
    secret[31] = 7;
    Keys::new(nostr::SecretKey::from_slice(&secret).unwrap())
}

/// A world of two agents in apply mode, with `profile` as its `[profile]`
/// section.
async fn world(profile: &str) -> World {
    let world = World::generated(2).await;
    world.append_config(&format!(
        "[safety]\nmax_republish_fraction = 1.0\n\n[schedule]\nmode = \"apply\"\n\n{profile}"
    ));
    world
}

async fn tick(daemon: &mut Daemon, world: &World) -> TickReport {
    let report = daemon.tick(&world.config(), &Stop::default()).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    report
}

/// How many republishes the tick's apply carried out.
fn republished(report: &TickReport) -> usize {
    report.apply.as_ref().map_or(0, |a| {
        a.results
            .iter()
            .filter(|r| r.kind == "republish_profile" && r.outcome.as_str() == "applied")
            .count()
    })
}

/// The newest kind:0 of agent `i` on the world's relay.
async fn profile_of(world: &World, i: u64) -> (String, Value) {
    let config = world.config();
    let author = keys(i).public_key();
    let mut read = reprofile::net::relay::read_profiles(
        BTreeMap::from([(world.relay_url.clone(), vec![author])]),
        &reprofile::engine::snapshot::read_options(&config),
    )
    .await;
    match read
        .remove(&world.relay_url)
        .and_then(|mut by| by.remove(&author.to_hex()))
    {
        Some(RelayObservation::Newest(event)) => (
            event.id.clone(),
            serde_json::from_str(&event.content).unwrap(),
        ),
        other => panic!("no profile of agent {i}: {other:?}"),
    }
}

/// Agent `i` sets its own picture and about, as `buzz users set-profile`
/// would: a kind:0 signed with its key, newer than the one there.
async fn agent_sets_its_own_profile(world: &World, i: u64) -> String {
    let content = serde_json::json!({
        "display_name": format!("generated-{i:05}"),
        "name": format!("generated-{i:05}"),
        "picture": format!("https://own.example/{i}.png"),
        "about": "I set this myself",
    });
    let event = signed_profile(&keys(i), now_secs() + 2, &content.to_string());
    publish_events(&world.relay_url, std::slice::from_ref(&event)).await;
    event.id.to_hex()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_c6_under_agent_a_profile_the_agent_changed_is_left_tick_after_tick() {
    let world = world("[profile]\nowner = \"agent\"\n").await;
    let mut daemon = Daemon::new();
    // Missing profiles: published once (the agent has none to own yet).
    assert_eq!(republished(&tick(&mut daemon, &world).await), 2);
    let again = tick(&mut daemon, &world).await;
    assert!(again.plan.as_ref().unwrap().plan.actions.is_empty());

    let own = agent_sets_its_own_profile(&world, 0).await;
    for _ in 0..2 {
        let report = tick(&mut daemon, &world).await;
        let plan = &report.plan.as_ref().unwrap().plan;
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert_eq!(plan.agent_managed.len(), 1, "shown for a reviewer");
        assert_eq!(plan.agent_managed[0].agent, keys(0).public_key().to_hex());
        assert_eq!(republished(&report), 0);
        assert_eq!(
            profile_of(&world, 0).await.0,
            own,
            "the agent's own event stays"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_c6_under_record_a_profile_the_agent_changed_is_republished_keeping_its_about() {
    let world = world("").await;
    let mut daemon = Daemon::new();
    assert_eq!(republished(&tick(&mut daemon, &world).await), 2);
    let own = agent_sets_its_own_profile(&world, 0).await;
    let report = tick(&mut daemon, &world).await;
    assert_eq!(republished(&report), 1, "today's behaviour, kept");
    let (id, content) = profile_of(&world, 0).await;
    assert_ne!(id, own);
    assert_ne!(content["picture"], "https://own.example/0.png");
    assert_eq!(
        content["about"], "I set this myself",
        "a field it does not own is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_c6_a_per_agent_owner_in_a_mixed_world() {
    use nostr::nips::nip19::ToBech32;
    let npub = keys(1).public_key().to_bech32().unwrap();
    let world = world(&format!("[profile.agents]\n\"{npub}\" = \"agent\"\n")).await;
    let mut daemon = Daemon::new();
    assert_eq!(republished(&tick(&mut daemon, &world).await), 2);
    agent_sets_its_own_profile(&world, 0).await;
    let own = agent_sets_its_own_profile(&world, 1).await;
    let report = tick(&mut daemon, &world).await;
    let plan = &report.plan.as_ref().unwrap().plan;
    let republishes: Vec<&str> = plan
        .actions
        .iter()
        .filter_map(|a| a.as_republish())
        .map(|r| r.agent.as_str())
        .collect();
    let record_owned: PublicKey = keys(0).public_key();
    assert_eq!(republishes, [record_owned.to_hex()]);
    assert_eq!(plan.agent_owned, 1);
    assert_eq!(profile_of(&world, 1).await.0, own);
}
