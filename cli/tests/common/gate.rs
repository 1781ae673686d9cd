//! A TCP proxy that can stop a connection's uploads mid-flight: a test holds a transfer in
//! flight for as long as it needs (no timing guess), acts, then lets it go on and watches
//! what the client still sends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Gate {
    /// Each connection forwards at most this many client bytes while it is set.
    hold_after: AtomicU64,
    /// Client bytes forwarded to the server, all connections together.
    forwarded: AtomicU64,
    /// Connections waiting at the gate now.
    held: AtomicUsize,
}

pub struct GateProxy {
    pub port: u16,
    gate: Arc<Gate>,
}

impl GateProxy {
    /// Listens on 127.0.0.1 and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let gate = Arc::new(Gate {
            hold_after: AtomicU64::new(u64::MAX),
            forwarded: AtomicU64::new(0),
            held: AtomicUsize::new(0),
        });
        let shared = gate.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(forward(client, server, shared.clone()));
            }
        });
        Self { port, gate }
    }

    /// From now on a connection stops sending to the server once it has sent `bytes`
    /// (`None`: no limit; held connections go on).
    pub fn hold_after(&self, bytes: Option<u64>) {
        self.gate
            .hold_after
            .store(bytes.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Connections waiting at the gate.
    pub fn held(&self) -> usize {
        self.gate.held.load(Ordering::SeqCst)
    }

    /// Waits until some connection is held (a transfer is stuck mid-flight).
    pub async fn wait_held(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.held() == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no transfer reached the gate"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until no client byte has been forwarded for `quiet`: whatever the clients
    /// still wanted to send has been sent.
    pub async fn wait_quiet(&self, quiet: Duration) {
        let mut last = self.gate.forwarded.load(Ordering::SeqCst);
        let mut since = tokio::time::Instant::now();
        let deadline = since + Duration::from_secs(120);
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.gate.forwarded.load(Ordering::SeqCst);
            if now != last {
                (last, since) = (now, tokio::time::Instant::now());
            } else if since.elapsed() >= quiet {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "never quiet");
        }
    }
}

async fn forward(mut client: TcpStream, mut server: TcpStream, gate: Arc<Gate>) {
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = server.split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut chunk = &buf[..n];
            while !chunk.is_empty() {
                let room = gate.hold_after.load(Ordering::SeqCst).saturating_sub(sent);
                if room == 0 {
                    gate.held.fetch_add(1, Ordering::SeqCst);
                    while gate.hold_after.load(Ordering::SeqCst) <= sent {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    gate.held.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                let take = usize::try_from(room).unwrap_or(usize::MAX).min(chunk.len());
                if to_server.write_all(&chunk[..take]).await.is_err() {
                    return;
                }
                sent += take as u64;
                gate.forwarded.fetch_add(take as u64, Ordering::SeqCst);
                chunk = &chunk[take..];
            }
        }
        let _ = to_server.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    tokio::join!(up, down);
}
