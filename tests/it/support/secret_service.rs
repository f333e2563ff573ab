//! A real Linux Secret Service for tests, started privately per test: never
//! mocked.
//!
//! Buzz keeps agent keys in the OS keyring, which on Linux is the freedesktop
//! Secret Service that the `keyring` crate (3.6.3, `sync-secret-service`)
//! talks to over the D-Bus session bus. A mock would only show that reprofile
//! agrees with our own idea of that protocol; here the real `reprofile` binary
//! meets the real thing, as on a desktop: Debian's `gnome-keyring-daemon`
//! (secrets component, login keyring unlocked with a password on stdin) on a
//! private `dbus-daemon`, filled and read with `secret-tool` (libsecret).
//!
//! Each [`SecretService`] has its own temp folder (HOME, `XDG_RUNTIME_DIR`,
//! `XDG_DATA_HOME`, ...), its own bus and its own keyring daemon, so tests run
//! in parallel without seeing each other's secrets, and nothing touches the
//! user's real keyring. The bus has its own configuration, whose only service
//! folder is empty: nothing is ever D-Bus-activated on it (Debian installs
//! `org.freedesktop.secrets.service`, which would start a gnome-keyring of its
//! own on a standard session bus). [`SecretService::without_keyring`] is the
//! same bus with no keyring on it: the "no Secret Service" case.
//!
//! Nothing here sleeps to synchronize: the bus is ready when it prints its
//! address; the keyring is ready when a store and lookup round trip through
//! it succeeds, polled against a deadline. Every process is owned (no
//! `--daemonize`), and dropping a [`SecretService`] kills and reaps them all.
//!
//! CI installs the tools (`.ci/setup`); when one is missing, starting panics
//! with the Debian package to install.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long starting the bus or the keyring, or one `secret-tool` run, may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between two readiness probes of the keyring.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The unlock password of the private login keyring.
const KEYRING_PASSWORD: &str = "reprofile-test";

/// The tools the harness runs, each with the Debian package that has it.
const DBUS_DAEMON: (&str, &str) = ("dbus-daemon", "dbus-daemon (or dbus)");
const GNOME_KEYRING: (&str, &str) = ("gnome-keyring-daemon", "gnome-keyring");
const SECRET_TOOL: (&str, &str) = ("secret-tool", "libsecret-tools");

/// A private D-Bus session bus in a temp folder, with (from
/// [`SecretService::start`]) a real gnome-keyring Secret Service on it.
/// Dropping it kills and reaps the keyring daemon and the bus, then removes
/// the folder.
pub struct SecretService {
    /// The keyring daemon (`--foreground`, our child); `None` on a bus without keyring.
    keyring: Option<Child>,
    /// The `dbus-daemon --nofork`, our child.
    bus: Child,
    /// The bus address it printed (`unix:path=<dir>/bus,guid=...`).
    address: String,
    dir: TempDir,
}

impl SecretService {
    /// Ok when `dbus-daemon`, `gnome-keyring-daemon` and `secret-tool` are on
    /// PATH; otherwise a one-line message naming the Debian packages to install.
    pub fn available() -> Result<(), String> {
        require(&[DBUS_DAEMON, GNOME_KEYRING, SECRET_TOOL])
    }

    /// Starts a private bus with an unlocked gnome-keyring Secret Service on
    /// it; the service answers when this returns. Panics (one line naming the
    /// Debian package) when a tool is missing, and when the bus or the keyring
    /// does not come up within 30 seconds.
    pub fn start() -> SecretService {
        if let Err(message) = SecretService::available() {
            panic!("{message}");
        }
        let mut service = SecretService::bus_only();
        let log = service.dir.path().join("keyring.log");
        let mut keyring = service
            .command("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            // A keyring of the host must not be joined instead of started.
            .env_remove("GNOME_KEYRING_CONTROL")
            .stdin(Stdio::piped())
            .stdout(log_file(&log))
            .stderr(log_file(&log))
            .spawn()
            .unwrap_or_else(|error| panic!("start gnome-keyring-daemon: {error}"));
        // With --unlock the daemon reads the login keyring's password from
        // stdin (creating the keyring with it) until end of file.
        let mut stdin = keyring.stdin.take().expect("keyring stdin");
        service.keyring = Some(keyring);
        stdin
            .write_all(KEYRING_PASSWORD.as_bytes())
            .unwrap_or_else(|error| panic!("give gnome-keyring-daemon its password: {error}"));
        drop(stdin);
        service.wait_for_keyring(&log);
        service
    }

    /// Starts a private bus with no Secret Service on it, and none that can
    /// be activated: a client asking for `org.freedesktop.secrets` gets the
    /// D-Bus error `org.freedesktop.DBus.Error.ServiceUnknown` ("The name
    /// org.freedesktop.secrets was not provided by any .service files").
    /// Panics when `dbus-daemon` is missing or the bus does not come up.
    pub fn without_keyring() -> SecretService {
        if let Err(message) = require(&[DBUS_DAEMON]) {
            panic!("{message}");
        }
        SecretService::bus_only()
    }

    /// Stores `secret` exactly as the keyring crate 3.6.3 does for entry
    /// (`service`, `username`): attributes `service`, `username`,
    /// `target=default`, `application=rust-keyring`, label
    /// `<username>@<service>:default (keyring v3.6.3)`, in the default
    /// (login) collection, replacing an item with the same attributes.
    /// The secret goes through stdin, byte for byte. Panics when
    /// `secret-tool store` fails.
    pub fn store(&self, service: &str, username: &str, secret: &str) {
        let label = format!("{username}@{service}:default (keyring v3.6.3)");
        let output = self.secret_tool(
            &[
                "store",
                "--label",
                &label,
                "service",
                service,
                "username",
                username,
                "target",
                "default",
                "application",
                "rust-keyring",
            ],
            Some(secret.as_bytes()),
        );
        if !output.status.success() {
            panic!(
                "secret-tool store {username}@{service} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }

    /// The secret of the item with attributes `service` and `username` (as
    /// the keyring crate finds it, also matching `target=default`), or `None`
    /// when there is no such item. Panics when `secret-tool lookup` reports
    /// an error (no Secret Service, for one): a missing item is not an error.
    pub fn lookup(&self, service: &str, username: &str) -> Option<String> {
        let output = self.secret_tool(
            &[
                "lookup", "service", service, "username", username, "target", "default",
            ],
            None,
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            Some(String::from_utf8(output.stdout).expect("a UTF-8 secret"))
        } else if stderr.trim().is_empty() {
            None
        } else {
            panic!(
                "secret-tool lookup {username}@{service} failed ({}): {}",
                output.status,
                stderr.trim()
            );
        }
    }

    /// The environment that puts a program on this private bus and temp
    /// folder: `DBUS_SESSION_BUS_ADDRESS`, `HOME`, `XDG_RUNTIME_DIR`,
    /// `XDG_DATA_HOME`, `XDG_CONFIG_HOME`, `XDG_CACHE_HOME`, `XDG_STATE_HOME`.
    pub fn envs(&self) -> Vec<(String, String)> {
        let dir = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            ("DBUS_SESSION_BUS_ADDRESS".into(), self.address.clone()),
            ("HOME".into(), dir("home")),
            ("XDG_RUNTIME_DIR".into(), dir("runtime")),
            ("XDG_DATA_HOME".into(), dir("data")),
            ("XDG_CONFIG_HOME".into(), dir("config")),
            ("XDG_CACHE_HOME".into(), dir("cache")),
            ("XDG_STATE_HOME".into(), dir("state")),
        ]
    }

    /// A command for `program` with [`SecretService::envs`] set; the rest of
    /// the environment is inherited as usual.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        command.envs(self.envs());
        command
    }

    /// The private HOME (an empty folder at start, removed on drop).
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Makes the temp folder and starts the bus on it: ready (listening) when
    /// this returns.
    fn bus_only() -> SecretService {
        let dir = tempfile::Builder::new()
            .prefix("reprofile-secret-service-")
            .tempdir()
            .expect("make a temp folder for the Secret Service");
        for name in [
            "home", "runtime", "data", "config", "cache", "state", "services",
        ] {
            std::fs::create_dir(dir.path().join(name))
                .unwrap_or_else(|error| panic!("make {name} in the temp folder: {error}"));
        }
        // XDG_RUNTIME_DIR must be private to the user.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.path().join("runtime"),
                std::fs::Permissions::from_mode(0o700),
            )
            .expect("make the runtime folder private");
        }
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, bus_config(dir.path())).expect("write the bus configuration");
        let log = dir.path().join("bus.log");
        let mut bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&log))
            .spawn()
            .unwrap_or_else(|error| panic!("start dbus-daemon: {error}"));
        // dbus-daemon prints its address once it listens: that line is the
        // readiness signal. Read on a thread, so the wait has a deadline.
        let stdout = bus.stdout.take().expect("dbus-daemon stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(read.map(|_| line));
        });
        let mut service = SecretService {
            keyring: None,
            bus,
            address: String::new(),
            dir,
        };
        // On a panic below, dropping `service` kills the bus (which ends the read).
        match receiver.recv_timeout(TIMEOUT) {
            Ok(Ok(line)) if !line.trim().is_empty() => service.address = line.trim().to_owned(),
            outcome => panic!(
                "dbus-daemon did not print its address ({}): {}",
                match outcome {
                    Ok(Ok(_)) => "it exited".to_owned(),
                    Ok(Err(error)) => error.to_string(),
                    Err(_) => format!("not within {TIMEOUT:?}"),
                },
                read_log(&log)
            ),
        }
        service
    }

    /// Polls a store and lookup round trip of a probe item until it succeeds
    /// (the keyring owns `org.freedesktop.secrets` and its login collection
    /// is unlocked and writable), then deletes the probe.
    fn wait_for_keyring(&mut self, log: &Path) {
        const PROBE: [&str; 2] = ["reprofile-test-probe", "ready"];
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self
                .keyring
                .as_mut()
                .and_then(|keyring| keyring.try_wait().ok().flatten())
            {
                panic!(
                    "gnome-keyring-daemon exited ({status}) before it was ready: {}",
                    read_log(log)
                );
            }
            let Err(error) = self.round_trip(PROBE) else {
                break;
            };
            if Instant::now() >= deadline {
                panic!(
                    "the Secret Service was not ready within {TIMEOUT:?} (last secret-tool error: \
                     {error}); gnome-keyring-daemon log: {}",
                    read_log(log)
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        let clear = self.secret_tool(&["clear", PROBE[0], PROBE[1]], None);
        assert!(
            clear.status.success(),
            "secret-tool clear of the readiness probe failed: {}",
            String::from_utf8_lossy(&clear.stderr).trim()
        );
    }

    /// Stores a probe item with the attribute `name=value` and reads it back:
    /// the error text of the step that failed, if one did.
    fn round_trip(&self, [name, value]: [&str; 2]) -> Result<(), String> {
        let store = self.secret_tool(&["store", "--label", "probe", name, value], Some(b"probe"));
        if !store.status.success() {
            return Err(String::from_utf8_lossy(&store.stderr).trim().to_owned());
        }
        let lookup = self.secret_tool(&["lookup", name, value], None);
        if lookup.status.success() && lookup.stdout == b"probe" {
            Ok(())
        } else {
            Err(format!(
                "lookup: {} {}",
                lookup.status,
                String::from_utf8_lossy(&lookup.stderr).trim()
            ))
        }
    }

    /// Runs `secret-tool args` on this bus with `stdin` (or none), killed when
    /// it takes longer than [`TIMEOUT`] (a Secret Service that wants to show a
    /// prompt would wait forever).
    fn secret_tool(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        if let Err(message) = require(&[SECRET_TOOL]) {
            panic!("{message}");
        }
        let mut child = self
            .command("secret-tool")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("run secret-tool: {error}"));
        if let Some(bytes) = stdin {
            let mut pipe = child.stdin.take().expect("secret-tool stdin");
            // A secret-tool that exits before reading (no Secret Service)
            // closes the pipe: its exit status tells what happened.
            if let Err(error) = pipe.write_all(bytes) {
                assert!(
                    error.kind() == std::io::ErrorKind::BrokenPipe,
                    "write to secret-tool: {error}"
                );
            }
        }
        let pid = child.id();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(child.wait_with_output());
        });
        let output = match receiver.recv_timeout(TIMEOUT) {
            Ok(output) => output,
            Err(_) => {
                // Not reaped yet (the waiting thread has not sent), so the
                // pid is still this child's.
                // SAFETY: kill(2) with a pid and a signal number has no memory effects.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                let _ = receiver.recv();
                panic!("secret-tool {} did not finish within {TIMEOUT:?}", args[0]);
            }
        };
        output.unwrap_or_else(|error| panic!("wait for secret-tool: {error}"))
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        // SIGKILL and wait: nothing of the daemons' state outlives the temp
        // folder, and SIGKILL cannot be ignored, so the waits end.
        if let Some(mut keyring) = self.keyring.take() {
            let _ = keyring.kill();
            let _ = keyring.wait();
        }
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}

/// Ok when every tool is on PATH, else one line naming the missing ones and
/// their Debian packages.
fn require(tools: &[(&str, &str)]) -> Result<(), String> {
    let missing: Vec<String> = tools
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(program, package)| format!("{program} (Debian package {package})"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the real Secret Service of the tests needs {} on PATH: install {} with apt-get, or run .ci/setup",
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        ))
    }
}

/// Whether an executable file named `program` is in a folder of PATH.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(paths) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&paths).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

/// The private bus's configuration: a session bus listening on
/// `<dir>/bus`, everything allowed (as Debian's session.conf), and as
/// its only service folder the empty `<dir>/services`, so nothing is
/// activated (no `<standard_session_servicedirs/>`).
///
/// The socket is not `$XDG_RUNTIME_DIR/bus`, where libdbus looks when
/// `DBUS_SESSION_BUS_ADDRESS` is unset: so a command without that variable
/// has no session bus at all.
fn bus_config(dir: &Path) -> String {
    let path = |name: &str| xml_escape(&dir.join(name).display().to_string());
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{services}</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
        socket = path("bus"),
        services = path("services"),
    )
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A log file opened for appending (stdout and stderr of a daemon share it).
fn log_file(path: &Path) -> File {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|error| panic!("open {}: {error}", path.display()))
}

/// A daemon's log so far, on one line, for a panic message.
fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = text.trim().replace('\n', " | ");
    if text.is_empty() {
        "(empty log)".to_owned()
    } else {
        text
    }
}

#[test]
fn secret_service_round_trip() {
    let secret =
        r#"{"agent:3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d":"nsec1test"}"#;
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(SecretService::start);
        let second = scope.spawn(SecretService::start);
        let join = |handle: std::thread::ScopedJoinHandle<'_, SecretService>| {
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        };
        (join(first), join(second))
    });
    assert_eq!(first.lookup("buzz-desktop", "secrets"), None);
    first.store("buzz-desktop", "secrets", secret);
    assert_eq!(
        first.lookup("buzz-desktop", "secrets").as_deref(),
        Some(secret)
    );
    assert_eq!(
        second.lookup("buzz-desktop", "secrets"),
        None,
        "a second Secret Service saw the first one's secret"
    );
    // The item carries the keyring crate's attributes and label.
    let search = first
        .command("secret-tool")
        .args(["search", "--all", "service", "buzz-desktop"])
        .output()
        .expect("run secret-tool search");
    let listing = format!(
        "{}{}",
        String::from_utf8_lossy(&search.stdout),
        String::from_utf8_lossy(&search.stderr)
    );
    for line in [
        "label = secrets@buzz-desktop:default (keyring v3.6.3)",
        "attribute.service = buzz-desktop",
        "attribute.username = secrets",
        "attribute.target = default",
        "attribute.application = rust-keyring",
    ] {
        assert!(listing.contains(line), "no `{line}` in:\n{listing}");
    }
}

#[test]
fn a_bus_without_keyring_has_no_secret_service() {
    let service = SecretService::without_keyring();
    let output = service
        .command("secret-tool")
        .args(["lookup", "service", "buzz-desktop", "username", "secrets"])
        .output()
        .expect("run secret-tool lookup");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "lookup succeeded: {stderr}");
    // ServiceUnknown, and not activated from /usr/share/dbus-1/services.
    assert!(
        stderr.contains("org.freedesktop.secrets was not provided by any .service files"),
        "unexpected error: {stderr}"
    );
}
