//! A TCP proxy on 127.0.0.1 that delays every chunk, in each direction, by a
//! fixed time, as a far relay would.
//!
//! A chunk read at time t is written at t + delay, in order; chunks do not
//! wait for one another (the delay is latency, not a bandwidth limit), so a
//! request and its answer cost one round trip: twice the one-way delay. Both
//! of its sockets have TCP_NODELAY and ACK at once (TCP_QUICKACK), so the
//! proxy adds no Nagle or delayed-ACK stalls of its own: a relay that waits
//! for ACKs is, if anything, favoured.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// A running proxy; stops when dropped.
pub struct LatencyProxy {
    /// `ws://127.0.0.1:<port>`: the relay, through the proxy.
    pub url: String,
    tasks: JoinSet<()>,
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// The `host:port` of a `ws://host:port[/...]` URL.
pub fn socket_addr_of(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("ws://")
        .with_context(|| format!("not a ws:// URL: {url}"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.replace("localhost", "127.0.0.1");
    authority
        .parse()
        .with_context(|| format!("not an address: {authority}"))
}

/// Starts a proxy to the relay at `upstream_url` that delays each chunk by
/// `one_way` in each direction.
pub async fn start(upstream_url: &str, one_way: Duration) -> anyhow::Result<LatencyProxy> {
    let upstream = socket_addr_of(upstream_url)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}", listener.local_addr()?);
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((client, _)) = listener.accept().await {
            connections.spawn(async move {
                if let Ok(server) = TcpStream::connect(upstream).await {
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pipe(client_read, server_write, one_way),
                        pipe(server_read, client_write, one_way)
                    );
                }
            });
            // Reap finished connections.
            while connections.try_join_next().is_some() {}
        }
    });
    Ok(LatencyProxy { url, tasks })
}

/// ACK at once what arrives next (TCP_QUICKACK, Linux, not sticky). The proxy
/// delays data, not ACKs; without this, a relay with Nagle on (nostr-rs-relay
/// writes EVENT and EOSE separately) would wait for the proxy's delayed ACK
/// (40 ms), which is not the latency being modelled.
pub fn quickack(stream: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: a valid fd and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (sender, mut receiver) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    quickack(from.as_ref());
                    if sender
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        // Dropping the sender ends the writer after the last chunk.
    };
    let writer = async move {
        while let Some((due, chunk)) = receiver.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
