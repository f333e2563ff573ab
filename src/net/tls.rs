//! Whom `wss://` relay connections trust, and the websocket connection made
//! with that trust.
//!
//! A client that trusts only the built-in web roots fails on a relay behind
//! a company CA with `UnknownIssuer`. This module owns:
//! - reading `[relay] ca_file` (a private CA, PEM) and refusing one that holds
//!   no usable certificate ([`read_ca_file`]);
//! - the root store: the built-in web roots (webpki-roots), the OS store
//!   (rustls-native-certs, which reads `SSL_CERT_FILE` / `SSL_CERT_DIR`
//!   instead when either is set) and the private CA; built once per [`Tls`]
//!   (the first `wss://` connection builds it; every later one shares it);
//! - [`Tls::open`], the websocket every relay connection of
//!   [`crate::net::wire`] is: `ws://` in the clear and `wss://` with that
//!   store (rustls with the ring provider), within the connect timeout;
//! - the websocket limits of every relay connection, reads and writes alike:
//!   a relay's message is at most [`MAX_MESSAGE_BYTES`].
//!
//! It must not decide anything about relays, profiles or retries, and never
//! turns an unreadable OS store into a failure: that is logged and the web
//! roots and the private CA are still trusted.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use nostr_sdk::Url;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_tungstenite::Connector;

/// Why a `[relay] ca_file` cannot be used (the config names the file).
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The file cannot be read (missing, a folder, no permission).
    #[error("cannot be read ({0})")]
    Unreadable(io::Error),
    /// The PEM text is broken.
    #[error("is not valid PEM ({0})")]
    NotPem(String),
    /// No `-----BEGIN CERTIFICATE-----` section.
    #[error("holds no PEM certificate")]
    NoCertificate,
    /// A certificate section that is not a usable X.509 certificate.
    #[error("holds a certificate that cannot be trusted as a CA ({0})")]
    BadCertificate(String),
}

/// Reads the private CA file: every PEM certificate in it, each checked to
/// be usable as a trust anchor. An empty result is an error, so a `ca_file`
/// that trusts nothing is found at start-up, not at the first `wss://` relay.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let bytes = std::fs::read(path).map_err(CaFileError::Unreadable)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| CaFileError::NotPem(error.to_string()))?;
    if certificates.is_empty() {
        return Err(CaFileError::NoCertificate);
    }
    for certificate in &certificates {
        RootCertStore::empty()
            .add(certificate.clone())
            .map_err(|error| CaFileError::BadCertificate(error.to_string()))?;
    }
    Ok(certificates)
}

/// The OS certificate store as rustls-native-certs found it.
#[derive(Debug, Default)]
pub struct OsStore {
    /// The certificates it holds.
    pub certificates: Vec<CertificateDer<'static>>,
    /// What could not be read (a missing `SSL_CERT_FILE`, an unreadable
    /// file); logged, never fatal.
    pub errors: Vec<String>,
}

impl OsStore {
    /// Loads the OS store once per process (it is read from disk, which
    /// takes milliseconds); later calls share the first result.
    fn shared() -> &'static OsStore {
        static OS_STORE: OnceLock<OsStore> = OnceLock::new();
        OS_STORE.get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            OsStore {
                certificates: found.certs,
                errors: found.errors.iter().map(ToString::to_string).collect(),
            }
        })
    }
}

/// How many trust anchors came from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootCounts {
    /// Built-in web roots.
    pub web: usize,
    /// OS store certificates accepted.
    pub os: usize,
    /// OS store certificates rustls could not use (skipped).
    pub os_skipped: usize,
    /// Private CA certificates (`[relay] ca_file`).
    pub private_ca: usize,
}

/// The root store: web roots, then the OS store (unusable certificates
/// skipped, read errors logged), then the private CA.
pub fn root_store(
    os: &OsStore,
    private_ca: &[CertificateDer<'static>],
) -> (RootCertStore, RootCounts) {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let web = roots.len();
    for error in &os.errors {
        tracing::warn!(
            "the OS certificate store could not be read in full ({error}); going on with what was read, the built-in web roots and [relay] ca_file"
        );
    }
    let (os_added, os_skipped) = roots.add_parsable_certificates(os.certificates.iter().cloned());
    let mut private = 0;
    for certificate in private_ca {
        // Checked when the config was read; a failure here cannot happen
        // for certificates from `read_ca_file`.
        if roots.add(certificate.clone()).is_ok() {
            private += 1;
        }
    }
    let counts = RootCounts {
        web,
        os: os_added,
        os_skipped,
        private_ca: private,
    };
    (roots, counts)
}

/// The rustls client config for `wss://`: ring as the crypto provider (named
/// here, so no process-wide default provider is needed), TLS 1.2 and 1.3.
fn client_config(roots: RootCertStore) -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Whom `wss://` relays are trusted by: the web roots, the OS store and the
/// private CA it was made with. Cheap to clone (one `Arc`); clones share the
/// root store, built at the first `wss://` connection.
#[derive(Clone)]
pub struct Tls {
    transport: Arc<TlsTransport>,
}

impl Tls {
    /// Trust the web roots, the OS store and `private_ca` (from
    /// [`read_ca_file`]).
    pub fn with_private_ca(private_ca: Vec<CertificateDer<'static>>) -> Self {
        Self {
            transport: Arc::new(TlsTransport {
                private_ca,
                client_config: OnceLock::new(),
            }),
        }
    }
}

/// A bare websocket to a relay (`crate::net::wire`'s connections).
pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

impl Tls {
    /// Opens a bare websocket to `url` with this trust, within `timeout`.
    /// The error is one line for people: `connection failed: …`.
    pub(crate) async fn open(&self, url: &str, timeout: Duration) -> Result<Socket, String> {
        let parsed = Url::parse(url).map_err(|error| format!("invalid relay URL: {error}"))?;
        let failed = || {
            format!(
                "connection failed: no connection after {}",
                crate::protocol::human_duration(timeout)
            )
        };
        match tokio::time::timeout(timeout, self.transport.open_socket(&parsed)).await {
            Ok(Ok(socket)) => Ok(socket),
            Err(_) => Err(failed()),
            Ok(Err(error)) => Err(format!("connection failed: {error}")),
        }
    }
}

impl Default for Tls {
    /// The web roots and the OS store; one shared value per process, so its
    /// root store is built once however many options are made.
    fn default() -> Self {
        static DEFAULT: OnceLock<Tls> = OnceLock::new();
        DEFAULT
            .get_or_init(|| Tls::with_private_ca(Vec::new()))
            .clone()
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.transport.fmt(f)
    }
}

impl PartialEq for Tls {
    /// Two values trust alike when they add the same private CA.
    fn eq(&self, other: &Self) -> bool {
        self.transport.private_ca == other.transport.private_ca
    }
}

impl Eq for Tls {}

/// The transport behind [`Tls`].
struct TlsTransport {
    private_ca: Vec<CertificateDer<'static>>,
    /// Built at the first `wss://` connection; `Err` holds why it could not
    /// be (never expected with ring).
    client_config: OnceLock<Result<Arc<ClientConfig>, String>>,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("private_ca_certificates", &self.private_ca.len())
            .finish()
    }
}

impl TlsTransport {
    fn client_config(&self) -> Result<Arc<ClientConfig>, ConnectError> {
        self.client_config
            .get_or_init(|| {
                let (roots, counts) = root_store(OsStore::shared(), &self.private_ca);
                tracing::debug!(
                    web = counts.web,
                    os = counts.os,
                    os_skipped = counts.os_skipped,
                    private_ca = counts.private_ca,
                    "wss:// trust anchors"
                );
                client_config(roots)
                    .map(Arc::new)
                    .map_err(|error| error.to_string())
            })
            .clone()
            .map_err(ConnectError::Setup)
    }
}

impl TlsTransport {
    /// TCP, then TLS for `wss://`, then the websocket handshake.
    async fn open_socket(&self, url: &Url) -> Result<Socket, ConnectError> {
        let host = url.host_str().ok_or(ConnectError::NoHost)?;
        let port = url.port_or_known_default().ok_or(ConnectError::NoHost)?;
        let connector = match url.scheme() {
            "wss" => Connector::Rustls(self.client_config()?),
            _ => Connector::Plain,
        };
        // Brackets are not part of an IPv6 address for the lookup.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = connect_tcp(host, port).await.map_err(ConnectError::Io)?;
        // Small request-answer frames (AUTH, EVENT, REQ): with Nagle, a frame
        // that follows another still unacknowledged waits for the relay's
        // delayed ACK (about 40 ms on Linux).
        tcp.set_nodelay(true).map_err(ConnectError::Io)?;
        let (socket, _) = tokio_tungstenite::client_async_tls_with_config(
            url.as_str(),
            tcp,
            Some(websocket_config()),
            Some(connector),
        )
        .await
        .map_err(ConnectError::from_websocket)?;
        Ok(socket)
    }
}

/// The largest websocket message (and frame) a relay may send: what a relay
/// can make reprofile hold for one message. A kind:0 whose content is 1 MiB
/// (a 52 KB `data:` avatar fits twenty times over) fits with its envelope
/// (subscription, id, pubkey, signature, tags, JSON escapes); tungstenite's
/// default is 64 MiB. A larger message drops the connection, so the
/// relay's read of those authors is unreadable, never "no profile".
pub const MAX_MESSAGE_BYTES: usize = (1 << 20) + (64 << 10);

/// The websocket settings of every relay connection (reads and writes).
fn websocket_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// How long one address gets before the next is tried alongside it (RFC 8305).
const NEXT_ADDRESS_DELAY: Duration = Duration::from_millis(250);

/// Connects to the first address that answers: addresses alternate between
/// IPv6 and IPv4 (the family DNS named first leads), and each later attempt
/// starts when the previous one fails or after [`NEXT_ADDRESS_DELAY`], as the
/// default transport does.
async fn connect_tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let mut pending = interleave_families(found).into_iter();
    let Some(first) = pending.next() else {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{host} resolves to no address"),
        ));
    };
    let mut attempts = FuturesUnordered::new();
    attempts.push(TcpStream::connect(first));
    let mut last_error = None;
    loop {
        tokio::select! {
            Some(result) = attempts.next() => match result {
                Ok(stream) => return Ok(stream),
                Err(error) => {
                    last_error = Some(error);
                    if let Some(next) = pending.next() {
                        attempts.push(TcpStream::connect(next));
                    } else if attempts.is_empty() {
                        break;
                    }
                }
            },
            _ = tokio::time::sleep(NEXT_ADDRESS_DELAY), if pending.len() > 0 => {
                if let Some(next) = pending.next() {
                    attempts.push(TcpStream::connect(next));
                }
            }
            else => break,
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no address could be connected")))
}

/// Orders addresses alternating between families, the first one's family
/// leading, each family in DNS order.
fn interleave_families(addresses: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(lead_is_v6) = addresses.first().map(SocketAddr::is_ipv6) else {
        return addresses;
    };
    let (lead, other): (Vec<_>, Vec<_>) = addresses
        .into_iter()
        .partition(|a| a.is_ipv6() == lead_is_v6);
    let mut ordered = Vec::with_capacity(lead.len() + other.len());
    let mut lead = lead.into_iter();
    let mut other = other.into_iter();
    loop {
        match (lead.next(), other.next()) {
            (None, None) => return ordered,
            (a, b) => ordered.extend(a.into_iter().chain(b)),
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    /// The URL has no host or port.
    #[error("the relay URL has no host")]
    NoHost,
    /// TCP.
    #[error("{0}")]
    Io(io::Error),
    /// The relay's certificate is not trusted; says what to do.
    #[error("TLS: {0}; the relay's certificate is not trusted: put its CA certificate in [relay] ca_file or in the OS certificate store")]
    Untrusted(rustls::Error),
    /// TLS or the websocket handshake.
    #[error("{0}")]
    Websocket(Box<tokio_tungstenite::tungstenite::Error>),
    /// The TLS settings could not be made.
    #[error("TLS setup: {0}")]
    Setup(String),
}

impl ConnectError {
    fn from_websocket(error: tokio_tungstenite::tungstenite::Error) -> Self {
        use tokio_tungstenite::tungstenite::Error as WsError;
        if let WsError::Io(io_error) = &error {
            let certificate = io_error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .filter(|tls| matches!(tls, rustls::Error::InvalidCertificate(_)));
            if let Some(tls) = certificate {
                return ConnectError::Untrusted(tls.clone());
            }
        }
        ConnectError::Websocket(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_ca() -> (String, CertificateDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "reprofile unit test CA");
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), cert.der().clone())
    }

    #[test]
    fn ca_file_with_certificates_reads_each() {
        let dir = tempfile::tempdir().unwrap();
        let (pem_a, der_a) = test_ca();
        let (pem_b, der_b) = test_ca();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, format!("# company CAs\n{pem_a}\n{pem_b}")).unwrap();
        assert_eq!(read_ca_file(&path).unwrap(), vec![der_a, der_b]);
    }

    #[test]
    fn ca_file_missing_empty_or_broken_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            read_ca_file(&missing),
            Err(CaFileError::Unreadable(_))
        ));
        assert!(matches!(
            read_ca_file(dir.path()),
            Err(CaFileError::Unreadable(_))
        ));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        assert!(matches!(
            read_ca_file(&empty),
            Err(CaFileError::NoCertificate)
        ));
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(matches!(read_ca_file(&broken), Err(CaFileError::NotPem(_))));
        let not_x509 = dir.path().join("not-x509.pem");
        std::fs::write(
            &not_x509,
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(matches!(
            read_ca_file(&not_x509),
            Err(CaFileError::BadCertificate(_))
        ));
    }

    #[test]
    fn root_store_holds_web_roots_os_store_and_private_ca() {
        let (_, os_ca) = test_ca();
        let (_, private_ca) = test_ca();
        let os = OsStore {
            certificates: vec![os_ca, CertificateDer::from(b"not a certificate".to_vec())],
            errors: Vec::new(),
        };
        let (roots, counts) = root_store(&os, &[private_ca]);
        assert_eq!(
            counts,
            RootCounts {
                web: webpki_roots::TLS_SERVER_ROOTS.len(),
                os: 1,
                os_skipped: 1,
                private_ca: 1,
            }
        );
        assert_eq!(roots.len(), webpki_roots::TLS_SERVER_ROOTS.len() + 2);
    }

    #[test]
    fn unreadable_os_store_still_trusts_web_roots_and_private_ca() {
        let (_, private_ca) = test_ca();
        let os = OsStore {
            certificates: Vec::new(),
            errors: vec!["SSL_CERT_FILE /nowhere: No such file or directory".to_string()],
        };
        let (roots, counts) = root_store(&os, &[private_ca]);
        assert_eq!(counts.os, 0);
        assert_eq!(counts.private_ca, 1);
        assert_eq!(roots.len(), webpki_roots::TLS_SERVER_ROOTS.len() + 1);
        assert!(client_config(roots).is_ok());
    }

    #[test]
    fn addresses_alternate_families_led_by_the_first() {
        let v6 = |p: u16| SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], p));
        let v4 = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        assert_eq!(
            interleave_families(vec![v6(1), v6(2), v6(3), v4(4)]),
            vec![v6(1), v4(4), v6(2), v6(3)]
        );
        assert_eq!(
            interleave_families(vec![v4(1), v6(2), v4(3)]),
            vec![v4(1), v6(2), v4(3)]
        );
        assert!(interleave_families(Vec::new()).is_empty());
    }

    #[test]
    fn default_is_shared_and_equal_to_no_private_ca() {
        let a = Tls::default();
        let b = Tls::default();
        assert!(Arc::ptr_eq(&a.transport, &b.transport));
        assert_eq!(a, Tls::with_private_ca(Vec::new()));
        let (_, ca) = test_ca();
        assert_ne!(a, Tls::with_private_ca(vec![ca]));
    }
}
