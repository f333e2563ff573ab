//! End to end against a relay nobody here wrote: nostr-rs-relay 0.8.12, started
//! by the test on a free loopback port with its own temp database.
//!
//! When the binary is absent the test fails and says how to install it; it
//! never passes silently.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::fixture_world::assert_matches_expected;
use crate::support::{publish_events, seed_events, start_local_relay};
use crate::world::World;

/// A running nostr-rs-relay, killed on drop.
pub struct ExternalRelay {
    child: Child,
    /// Its websocket URL.
    pub url: String,
    _dir: TempDir,
}

impl Drop for ExternalRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where nostr-rs-relay is: `$NOSTR_RS_RELAY`, then `PATH`, then `~/.cargo/bin`.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NOSTR_RS_RELAY") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("nostr-rs-relay"))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_default();
    let in_cargo_home = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cargo/bin/nostr-rs-relay"))
        .filter(|p| p.is_file());
    on_path.or(in_cargo_home).unwrap_or_else(|| {
        panic!(
            "nostr-rs-relay is not installed, and this end-to-end test needs it. Install it with \
             `apt-get install -y protobuf-compiler && cargo install nostr-rs-relay --version 0.8.12` \
             (about ten minutes), or run `.ci/setup`; or point NOSTR_RS_RELAY at the binary."
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl ExternalRelay {
    /// Starts nostr-rs-relay and waits (bounded) until it listens.
    pub fn start() -> ExternalRelay {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "[info]\nrelay_url = \"ws://127.0.0.1:{port}/\"\nname = \"reprofile e2e\"\n\n\
             [database]\ndata_directory = \"{}\"\n\n\
             [network]\naddress = \"127.0.0.1\"\nport = {port}\n\n\
             [options]\nreject_future_seconds = 1800\n",
            dir.path().display()
        );
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(&config_path)
            .arg("--db")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info")
            .spawn()
            .expect("nostr-rs-relay starts");
        // It logs "listening on" before it binds; readiness is then proven by
        // a TCP connection succeeding (polled, bounded by a deadline).
        let (tx, rx) = mpsc::channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains("listening on") {
                        let _ = tx.send(());
                    }
                }
            });
        }
        let mut relay = ExternalRelay {
            child,
            url: format!("ws://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let started = rx.recv_timeout(Duration::from_secs(30)).is_ok();
        while started && Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return relay;
            }
            if let Ok(Some(status)) = relay.child.try_wait() {
                panic!("nostr-rs-relay exited at start-up: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = relay.child.try_wait();
        panic!("nostr-rs-relay did not accept connections within 30 s (status {status:?})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_nostr_rs_relay_plan_matches_expected_json() {
    let external = ExternalRelay::start();
    publish_events(&external.url, &seed_events()).await;
    // The world's own relay is not used: the rewrite points at nostr-rs-relay.
    let unused = start_local_relay().await;
    let world = World::with_relay(unused, external.url.clone(), "");
    let plan = world.plan_now().await;
    assert_matches_expected(&plan);
}
