//! `wss://` relays (issue 11, item 7): the relay's certificate is trusted as
//! the app trusts it: the built-in web roots, the OS store (`SSL_CERT_FILE`
//! honoured) and `[relay] ca_file`.
//!
//! Each test makes its own CA and a server certificate for 127.0.0.1 and
//! localhost, and puts a TLS-terminating proxy (tokio-rustls, a free loopback
//! port) in front of an in-process relay, so reads and publishes go through
//! real TLS to a real relay.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use nostr::{Keys, PublicKey};
use nostr_relay_builder::LocalRelay;
use reprofile::core::model::RelayObservation;
use reprofile::net::publish::{publish_all, Delivery, PublishItem, PublishOptions};
use reprofile::net::relay::{read_profiles, ReadOptions};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::support::{publish_events, seed_events, signed_profile, start_local_relay};
use crate::world::{assert_contains, assert_incomplete_for_the_down_relay, stderr, stdout, World};

/// A CA made for one test, and a server certificate it signed for
/// 127.0.0.1 and localhost.
struct TestPki {
    dir: TempDir,
    /// The CA certificate, PEM, in `dir`.
    ca_file: PathBuf,
    server_config: Arc<rustls::ServerConfig>,
}

impl TestPki {
    fn new() -> TestPki {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "reprofile test company CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");

        let server_key = rcgen::KeyPair::generate().expect("server key");
        let server_params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("server params");
        let server_cert = server_params
            .signed_by(&server_key, &ca)
            .expect("server certificate");

        let chain: Vec<CertificateDer<'static>> = vec![server_cert.der().clone(), ca.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");

        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = dir.path().join("company-ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write the CA file");
        TestPki {
            dir,
            ca_file,
            server_config: Arc::new(server_config),
        }
    }

    /// Trust as `[relay] ca_file = <this CA>` gives it.
    fn tls(&self) -> reprofile::net::tls::Tls {
        let certificates =
            reprofile::net::tls::read_ca_file(&self.ca_file).expect("the CA file reads");
        reprofile::net::tls::Tls::with_private_ca(certificates)
    }
}

/// A TLS-terminating proxy: accepts TLS on a free loopback port with the
/// test server certificate and copies bytes both ways to `upstream` (the
/// relay's plain TCP port). Stops, with every connection, when dropped.
struct TlsProxy {
    url: String,
    server: JoinHandle<()>,
}

/// A relay holding one agent's profile, behind a TLS proxy whose
/// certificate `pki`'s CA signed: the relay, the proxy, the agent and its
/// profile.
async fn profile_behind_tls(pki: &TestPki) -> (LocalRelay, TlsProxy, Keys, nostr::Event) {
    let relay = start_local_relay().await;
    let relay_url = relay.url().await.to_string();
    let agent = Keys::generate();
    let profile = signed_profile(&agent, 1_700_000_000, r#"{"name":"behind a company CA"}"#);
    publish_events(&relay_url, std::slice::from_ref(&profile)).await;
    let proxy = TlsProxy::start(pki, socket_address(&relay_url)).await;
    (relay, proxy, agent, profile)
}

impl TlsProxy {
    async fn start(pki: &TestPki, upstream: SocketAddr) -> TlsProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let url = format!("wss://{}", listener.local_addr().expect("proxy address"));
        let acceptor = TlsAcceptor::from(Arc::clone(&pki.server_config));
        let server = tokio::spawn(async move {
            // Connection tasks live in this set, so aborting the server
            // aborts them too.
            let mut connections = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    // A client that refuses our certificate ends here.
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut relay) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut relay).await;
                });
                // Reap finished connections so the set does not grow.
                while connections.try_join_next().is_some() {}
            }
        });
        TlsProxy { url, server }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The relay's `host:port` from its `ws://` URL.
fn socket_address(ws_url: &str) -> SocketAddr {
    ws_url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .parse()
        .expect("the local relay's address")
}

/// Reads `author` from `url` alone.
async fn read_author(url: &str, author: PublicKey, opts: &ReadOptions) -> RelayObservation {
    let requests = std::collections::BTreeMap::from([(url.to_owned(), vec![author])]);
    let mut results = read_profiles(requests, opts).await;
    results
        .remove(url)
        .and_then(|mut table| table.remove(&author.to_hex()))
        .expect("an observation for the author")
}

fn read_options(tls: reprofile::net::tls::Tls) -> ReadOptions {
    ReadOptions {
        timeouts: reprofile::net::relay::RelayTimeouts {
            connect: Duration::from_secs(5),
            query: Duration::from_secs(5),
        },
        tls,
        ..ReadOptions::default()
    }
}

#[tokio::test]
async fn wss_relay_is_read_when_ca_file_names_its_ca() {
    let pki = TestPki::new();
    let (_relay, proxy, agent, profile) = profile_behind_tls(&pki).await;

    // Through the config, as `plan` and `apply` get it.
    let config_path = pki.dir.path().join("config.toml");
    std::fs::write(&config_path, "[relay]\nca_file = \"company-ca.pem\"\n").unwrap();
    let config = reprofile::config::load(&config_path).expect("the config loads");
    let opts = reprofile::engine::snapshot::read_options(&config);
    assert_eq!(opts.tls, pki.tls(), "the read options carry ca_file's CA");

    match read_author(&proxy.url, agent.public_key(), &opts).await {
        RelayObservation::Newest(event) => assert_eq!(event.id, profile.id.to_hex()),
        other => panic!("expected the profile read over wss://, got {other:?}"),
    }
}

#[tokio::test]
async fn wss_relay_of_an_unknown_ca_is_unreadable_and_the_reason_says_why() {
    let pki = TestPki::new();
    let (_relay, proxy, agent, _) = profile_behind_tls(&pki).await;

    // Web roots and the OS store only: the test CA is in neither.
    let observation = read_author(
        &proxy.url,
        agent.public_key(),
        &read_options(reprofile::net::tls::Tls::default()),
    )
    .await;
    match observation {
        RelayObservation::Unreadable(reason) => {
            assert_contains(&reason, "UnknownIssuer");
            assert!(
                reason.contains("[relay] ca_file"),
                "says what to do: {reason}"
            );
        }
        other => panic!("expected Unreadable, got {other:?}"),
    }
}

#[tokio::test]
async fn publish_over_wss_trusts_ca_file_and_refuses_an_unknown_ca() {
    let pki = TestPki::new();
    let relay = start_local_relay().await;
    let relay_url = relay.url().await.to_string();
    let proxy = TlsProxy::start(&pki, socket_address(&relay_url)).await;
    let agent = Keys::generate();
    let event = signed_profile(&agent, 1_700_000_000, r#"{"name":"published over wss"}"#);
    let item = PublishItem {
        event: event.clone(),
        keys: agent.clone(),
        sign_in: None,
    };
    let opts = |tls| PublishOptions {
        connect_timeout: Duration::from_secs(5),
        publish_timeout: Duration::from_secs(5),
        tls,
        ..PublishOptions::default()
    };

    let refused = publish_all(
        &proxy.url,
        vec![item.clone()],
        &opts(reprofile::net::tls::Tls::default()),
    )
    .await;
    match refused.as_slice() {
        [Delivery::Failed(why)] => assert_contains(why, "UnknownIssuer"),
        other => panic!("expected one failed delivery, got {other:?}"),
    }

    let delivered = publish_all(&proxy.url, vec![item], &opts(pki.tls())).await;
    assert_eq!(delivered, vec![Delivery::Accepted]);
    // The relay itself (plain ws://, past the proxy) holds the event.
    match read_author(
        &relay_url,
        agent.public_key(),
        &read_options(Default::default()),
    )
    .await
    {
        RelayObservation::Newest(stored) => assert_eq!(stored.id, event.id.to_hex()),
        other => panic!("the published event is not on the relay: {other:?}"),
    }
}

/// `reprofile plan` (a child process, so the environment is its own) against
/// the fixture world whose live relay is behind TLS.
async fn plan_with_env(world: &World, ssl_cert_file: Option<&Path>) -> Output {
    let config = world.config_path.clone();
    let cwd = world.dir.path().to_path_buf();
    let ssl_cert_file = ssl_cert_file.map(Path::to_path_buf);
    tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_reprofile"));
        command
            .arg("--config")
            .arg(&config)
            .arg("plan")
            .current_dir(cwd)
            .env_remove("REPROFILE_LOG")
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .env("NO_COLOR", "1");
        if let Some(file) = ssl_cert_file {
            command.env("SSL_CERT_FILE", file);
        }
        command.output().expect("run reprofile")
    })
    .await
    .expect("the blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_trusts_a_ca_in_ssl_cert_file_as_the_os_store() {
    let pki = TestPki::new();
    let relay = start_local_relay().await;
    let relay_url = relay.url().await.to_string();
    publish_events(&relay_url, &seed_events()).await;
    let proxy = TlsProxy::start(&pki, socket_address(&relay_url)).await;
    // The fixture's live relay is rewritten to the proxy's wss:// URL.
    let world = World::with_relay(relay, proxy.url.clone(), "");
    let without = plan_with_env(&world, None).await;
    assert_eq!(without.status.code(), Some(1), "{}", stderr(&without));
    let log = stderr(&without);
    // Said once, on the exit line (the log's own line about it is for -v).
    let said = format!(
        "error: relay {} could not be read (relay_unreachable; ",
        proxy.url
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with(&said) && l.contains("UnknownIssuer")),
        "the exit line names the relay and why: {log}"
    );

    // With the CA, only the fixture's down relay is left unread.
    let with = plan_with_env(&world, Some(&pki.ca_file)).await;
    assert_incomplete_for_the_down_relay(&with);
    let (log, plan) = (stderr(&with), stdout(&with));
    assert!(!log.contains(&said), "{log}");
    assert!(
        !plan.contains(&format!("{} could not be read", proxy.url)),
        "{plan}"
    );
    // The stale name of the fixture is seen on the relay, so it is planned.
    assert_contains(&plan, "agent-00002-stale_name");
}
