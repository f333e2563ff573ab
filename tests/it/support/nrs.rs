//! nostr-rs-relay, started on a free loopback port with its own temp
//! database, when it is installed: the starter of the tests (`external_relay.rs`)
//! and of the scale benchmark, which includes this file.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;

/// A running nostr-rs-relay, killed on drop.
pub struct NostrRsRelay {
    child: Child,
    /// Its websocket URL.
    pub url: String,
    /// The binary that runs.
    pub binary: PathBuf,
    _dir: TempDir,
}

impl Drop for NostrRsRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where nostr-rs-relay is: `$NOSTR_RS_RELAY`, then `PATH`, then
/// `~/.cargo/bin`; `None` when it is nowhere.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NOSTR_RS_RELAY") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nostr-rs-relay"))
            .find(|candidate| candidate.is_file())
    });
    let in_cargo_home = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cargo/bin/nostr-rs-relay"))
        .filter(|p| p.is_file());
    on_path.or(in_cargo_home)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts nostr-rs-relay (logging at warn, output discarded) and waits,
/// bounded, until it accepts connections.
pub fn start(binary: PathBuf) -> anyhow::Result<NostrRsRelay> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = format!(
        "[info]\nrelay_url = \"ws://127.0.0.1:{port}/\"\nname = \"reprofile scale\"\n\n\
         [database]\ndata_directory = \"{}\"\n\n\
         [network]\naddress = \"127.0.0.1\"\nport = {port}\n\n\
         [options]\nreject_future_seconds = 1800\n",
        dir.path().display()
    );
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config)?;
    let child = Command::new(&binary)
        .arg("--config")
        .arg(&config_path)
        .arg("--db")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env("RUST_LOG", "warn")
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut relay = NostrRsRelay {
        child,
        url: format!("ws://127.0.0.1:{port}"),
        binary,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(relay);
        }
        if let Ok(Some(status)) = relay.child.try_wait() {
            bail!("nostr-rs-relay exited at start-up: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nostr-rs-relay did not accept connections within 30 s")
}
