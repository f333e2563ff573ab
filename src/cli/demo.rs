//! `reprofile demo`: the whole job on a bundled example world, fully offline.
//!
//! It lays out a temporary copy of the example world (`examples/basic/`: an
//! agent store, personas and a drifted relay state with one agent per
//! scenario of RECONCILE.md), starts an embedded relay (nostr-relay-builder)
//! on a free loopback port, seeds it, and runs `plan` against it with the
//! configured URL rewrite, applies the plan, and plans again (which ends with
//! `No changes.` for everything but the agents left for a person). It writes
//! nothing inside the checkout, and says where the copies are.
//!
//! The example world names a relay that is down on purpose
//! ([`EXAMPLE_DEAD_RELAY`]), to show an unreadable relay. Its plans are
//! therefore incomplete, which makes `plan` exit 1; the demo says so in a
//! note and exits 0, since that relay is dead by design. Any other relay it
//! cannot read (the embedded one) is an error. The steps go through
//! [`crate::engine::orchestrate`], as the commands do.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use nostr::{Event, JsonUtil};
use nostr_relay_builder::prelude::{LocalRelay, RateLimit, RelayBuilder};
use nostr_sdk::Client;

use crate::config;
use crate::engine::apply::ApplyOptions;
use crate::engine::orchestrate::{apply_plan, make_plan, Planned};
use crate::review::render::{self, Style};

const STORE: &str = include_str!("../../examples/basic/managed-agents.json");
const PERSONAS: &str = include_str!("../../examples/basic/personas.json");
const SEED: &str = include_str!("../../examples/basic/relay-seed.jsonl");
/// The relay URL the example store's records name for the live relay.
const EXAMPLE_RELAY: &str = "ws://127.0.0.1:7777";
/// The relay the example store names for an agent whose relay is down, on
/// purpose: nothing listens on port 9.
pub const EXAMPLE_DEAD_RELAY: &str = "ws://127.0.0.1:9";

/// The example's seed events.
pub fn seed_events() -> anyhow::Result<Vec<Event>> {
    SEED.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| Event::from_json(line).context("the bundled relay seed is not valid"))
        .collect()
}

/// Starts an in-process relay on a free loopback port, with a rate limit high
/// enough for batch work.
async fn start_relay() -> anyhow::Result<LocalRelay> {
    let builder = RelayBuilder::default().rate_limit(RateLimit {
        max_reqs: 1000,
        notes_per_minute: 100_000,
    });
    run_local_relay(builder).await
}

/// Runs an in-process relay on a free loopback port chosen by the OS.
///
/// nostr-relay-builder picks a random port itself and can lose the race for
/// it (`Address already in use`) when many relays start at once; a port the
/// OS hands out for port 0 is much less likely to be taken, and a lost race
/// is retried.
pub(crate) async fn run_local_relay(builder: RelayBuilder) -> anyhow::Result<LocalRelay> {
    let mut last_error = None;
    for _ in 0..8 {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .context("cannot find a free loopback port")?;
        let relay = LocalRelay::new(
            builder
                .clone()
                .addr(std::net::IpAddr::from([127, 0, 0, 1]))
                .port(port),
        );
        match relay.run().await {
            Ok(()) => return Ok(relay),
            Err(err) => last_error = Some(err),
        }
    }
    Err(anyhow::anyhow!(
        "cannot start the embedded relay: {}",
        last_error.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// Publishes events to a relay and checks that each was accepted.
pub async fn seed_relay(url: &str, events: &[Event]) -> anyhow::Result<()> {
    let client = Client::default();
    client.add_relay(url).await?;
    client
        .try_connect_relay(url, Duration::from_secs(5))
        .await?;
    for event in events {
        let output = client.send_event_to([url], event).await?;
        if let Some(problem) = output.failed.values().next() {
            anyhow::bail!("the embedded relay refused a seed event: {problem}");
        }
    }
    client.shutdown().await;
    Ok(())
}

/// The example world for tests: an in-process relay seeded with it (shut it
/// down at the end), the folder it is laid out in, and its config.
#[cfg(test)]
pub(crate) async fn example_world() -> (LocalRelay, tempfile::TempDir, crate::config::Config) {
    let relay = run_local_relay(RelayBuilder::default())
        .await
        .expect("relay");
    let url = relay.url().await.to_string();
    seed_relay(&url, &seed_events().unwrap())
        .await
        .expect("seeded");
    let dir = tempfile::tempdir().unwrap();
    let config_path = lay_out_world(dir.path(), &url).unwrap();
    let config = config::load(&config_path).unwrap();
    (relay, dir, config)
}

/// Lays out the example world in `dir` with a config that points the example
/// relay URL at `relay_url`. Returns the config file's path.
#[cfg(test)]
pub(crate) fn lay_out_world(dir: &Path, relay_url: &str) -> anyhow::Result<PathBuf> {
    claim_store(dir)?;
    write_config(dir, relay_url)
}

/// Writes the example store into `dir`, refusing a folder that already has
/// one: the demo's first step, before any relay is started, so a refusal is
/// one line and nothing else.
fn claim_store(dir: &Path) -> anyhow::Result<()> {
    let store = dir.join("managed-agents.json");
    write_private(&store, STORE.as_bytes()).with_context(|| {
        format!(
            "cannot write the demo's store {}; give --dir a new or empty folder",
            store.display()
        )
    })
}

/// Writes the example personas and a config that points the example relay
/// URL at `relay_url`. Returns the config file's path.
fn write_config(dir: &Path, relay_url: &str) -> anyhow::Result<PathBuf> {
    std::fs::write(dir.join("personas.json"), PERSONAS)?;
    let config_path = dir.join("config.toml");
    std::fs::write(
        &config_path,
        format!(
            "# Written by `reprofile demo`: the example world against an embedded relay.\n\
             [store]\nagents = \"managed-agents.json\"\npersonas = \"personas.json\"\n\n\
             [plans]\ndir = \"plans\"\n\n\
             [relay]\nconnect_timeout_secs = 3\nquery_timeout_secs = 5\npublish_timeout_secs = 5\n\n\
             # The example world is drifted on purpose: half its agents need a republish.\n\
             [safety]\nmax_republish_fraction = 1.0\n\n\
             [relay.rewrite]\n\"{EXAMPLE_RELAY}\" = \"{relay_url}\"\n"
        ),
    )?;
    Ok(config_path)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// Runs the demo, printing to stdout in `style`; `keep_dir` is where the
/// world is laid out (a new temp folder when `None`). An error when a step
/// fails, when the apply does not succeed, or when a relay other than
/// [`EXAMPLE_DEAD_RELAY`] cannot be read.
pub async fn run(keep_dir: Option<&Path>, style: Style) -> anyhow::Result<()> {
    let dir = match keep_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the demo folder {}", dir.display()))?;
            dir.to_path_buf()
        }
        None => tempfile::Builder::new()
            .prefix("reprofile-demo-")
            .tempdir()?
            .keep(),
    };
    claim_store(&dir)?;
    let relay = start_relay().await?;
    let url = relay.url().await.to_string();
    let result = async {
        seed_relay(&url, &seed_events()?).await?;
        let config_path = write_config(&dir, &url)?;
        let config = config::load(&config_path)?;
        let mut out = crate::cli::stdout();
        writeln!(
            out,
            "reprofile demo: the example world in {} against an embedded relay at {url}\n",
            dir.display()
        )?;
        writeln!(out, "$ reprofile --config {} plan\n", config_path.display())?;
        let first = make_plan(&config, &[], None).await?;
        out.write_all(render::render(&first.doc, style).as_bytes())?;
        writeln!(out, "Saved the plan to {}", first.path.display())?;

        writeln!(
            out,
            "\n$ reprofile --config {} apply {} --auto-approve\n",
            config_path.display(),
            first.path.display()
        )?;
        let report = apply_plan(&config, &first.doc, &first.path, &ApplyOptions::default()).await?;
        out.write_all(render::render_report(&report, style).as_bytes())?;

        writeln!(
            out,
            "\n$ reprofile --config {} plan\n",
            config_path.display()
        )?;
        let again = make_plan(&config, &[], None).await?;
        out.write_all(render::render(&again.doc, style).as_bytes())?;
        writeln!(out, "Saved the plan to {}", again.path.display())?;
        writeln!(
            out,
            "\nThe store copy is {} (its backup beside it); the plans and journals are in {}.",
            config.agents.display(),
            config.plans_dir.display()
        )?;
        for planned in [&first, &again] {
            check_only_the_dead_relay_unread(planned)?;
        }
        let unread = again.doc.plan.unread_relays();
        if let Some(dead) = unread.first() {
            writeln!(
                out,
                "\nNote: the example world names a relay that is down on purpose ({}), so {} not \
                 read and the plans say they are incomplete. `plan` exits 1 on an incomplete \
                 snapshot; the demo exits 0, because this relay is dead by design.",
                dead.relay,
                if dead.agents == 1 {
                    "its agent was".to_string()
                } else {
                    format!("its {} agents were", dead.agents)
                }
            )?;
        }
        writeln!(
            out,
            "\nThe commands shown above ran against the demo's own relay on a free loopback port, which stops when the demo ends: run again, they would find no relay. To try them yourself, run a relay of your own and the example's config (`reprofile --config examples/basic/config.toml plan`; see the README, \"Which store\")."
        )?;
        anyhow::ensure!(
            report.succeeded(),
            "the demo's apply did not succeed (see its report above)"
        );
        anyhow::Ok(())
    }
    .await;
    relay.shutdown();
    result
}

/// The demo's plans may leave only the example's dead relay unread.
fn check_only_the_dead_relay_unread(planned: &Planned) -> anyhow::Result<()> {
    match planned
        .doc
        .plan
        .unread_relays()
        .into_iter()
        .find(|u| u.relay != EXAMPLE_DEAD_RELAY)
    {
        Some(unread) => Err(anyhow::anyhow!(
            "the demo could not read the relay {}: {}",
            unread.relay,
            planned
                .read_errors
                .get(&unread.relay)
                .map_or("no reason given", String::as_str)
        )),
        None => Ok(()),
    }
}
