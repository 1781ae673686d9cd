//! Watching the SOCKS5 proxy the engine's traffic goes through.
//!
//! librqbit never bypasses its proxy: with the proxy down, peer connections and tracker
//! announces simply fail. A download would then wait forever with no peer; with
//! `torrent.proxy_required` Ferry fails it instead (`proxy_unavailable`). The watcher greets
//! the proxy once a second (a SOCKS5 method negotiation, no CONNECT: the proxy makes no
//! connection for it) and reports it down after a few greetings in a row went unanswered.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// How often the proxy is greeted.
const EVERY: Duration = Duration::from_secs(1);
/// How long one greeting may take.
const GREETING_TIMEOUT: Duration = Duration::from_secs(3);
/// Greetings in a row that must fail before the proxy counts as down (a restart of the
/// proxy, a dropped connection, does not fail every job).
const FAILURES_FOR_DOWN: u32 = 3;

/// Where the proxy is: `host:port`, with or without credentials.
#[derive(Clone)]
pub(crate) struct ProxyAddress {
    host: String,
    port: u16,
    credentials: bool,
}

impl std::fmt::Debug for ProxyAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl ProxyAddress {
    /// From a `socks5://` or `socks5h://` URL with an explicit port.
    pub(crate) fn parse(url: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(url).map_err(|e| anyhow::anyhow!("invalid proxy URL: {e}"))?;
        anyhow::ensure!(
            matches!(url.scheme(), "socks5" | "socks5h"),
            "the torrent proxy must be a socks5:// or socks5h:// URL"
        );
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| anyhow::anyhow!("the torrent proxy's URL has no host"))?;
        let port = url
            .port()
            .ok_or_else(|| anyhow::anyhow!("the torrent proxy's URL has no port"))?;
        Ok(Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            credentials: !url.username().is_empty() || url.password().is_some(),
        })
    }
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    down_since: Option<Instant>,
}

/// The proxy's health, kept fresh by a task of its own until dropped.
pub(crate) struct ProxyWatch {
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl ProxyWatch {
    /// Starts greeting the proxy at once, then every second.
    pub(crate) fn start(address: ProxyAddress) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let task_state = state.clone();
        let task_stop = stop.clone();
        let task_address = address;
        tokio::spawn(async move {
            loop {
                let result = greet(&task_address).await;
                {
                    let mut s = task_state
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    match result {
                        Ok(()) => {
                            if s.down_since.take().is_some() {
                                tracing::info!(proxy = ?task_address, "the torrent proxy answers again");
                            }
                            s.failures = 0;
                        }
                        Err(e) => {
                            s.failures = s.failures.saturating_add(1);
                            if s.failures == FAILURES_FOR_DOWN {
                                s.down_since = Some(Instant::now());
                                tracing::warn!(proxy = ?task_address, error = %e, "the torrent proxy is down; downloads stop");
                            }
                        }
                    }
                }
                tokio::select! {
                    () = task_stop.cancelled() => return,
                    () = tokio::time::sleep(EVERY) => {}
                }
            }
        });
        Self { state, stop }
    }

    /// `Err` with what failed while the proxy counts as down.
    pub(crate) fn check(&self) -> Result<(), String> {
        let s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match s.down_since {
            // Users see this: the proxy's address and the failure are in the server log.
            Some(_) => Err(
                "the server's torrent proxy is unreachable, so the job stopped rather than connect without it; retry it when the proxy is back"
                    .to_owned(),
            ),
            None => Ok(()),
        }
    }
}

impl Drop for ProxyWatch {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One SOCKS5 method negotiation (RFC 1928 §3): the proxy must answer with version 5 and a
/// method it accepts.
async fn greet(address: &ProxyAddress) -> Result<(), String> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((address.host.as_str(), address.port))
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        // No authentication, or username/password when the URL has credentials.
        let hello: &[u8] = if address.credentials {
            &[5, 2, 0, 2]
        } else {
            &[5, 1, 0]
        };
        stream
            .write_all(hello)
            .await
            .map_err(|e| format!("greeting: {e}"))?;
        let mut answer = [0u8; 2];
        stream
            .read_exact(&mut answer)
            .await
            .map_err(|e| format!("reading its answer: {e}"))?;
        match answer {
            [5, 0xFF] => Err("it accepts none of our authentication methods".to_owned()),
            [5, _] => Ok(()),
            _ => Err("it does not speak SOCKS5".to_owned()),
        }
    };
    tokio::time::timeout(GREETING_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {GREETING_TIMEOUT:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_a_socks5_scheme_a_host_and_a_port() {
        assert!(ProxyAddress::parse("socks5h://127.0.0.1:1080").is_ok());
        assert!(ProxyAddress::parse("socks5://user:pw@[::1]:1080").is_ok_and(|a| a.credentials));
        assert!(ProxyAddress::parse("socks5://proxy").is_err());
        assert!(ProxyAddress::parse("http://proxy:3128").is_err());
        assert!(ProxyAddress::parse("socks5://:1080").is_err());
        // The address never shows credentials.
        let a = ProxyAddress::parse("socks5://user:hunter2@proxy:1080").unwrap();
        assert_eq!(format!("{a:?}"), "proxy:1080");
    }

    #[tokio::test]
    async fn a_proxy_counts_as_down_after_failed_greetings_and_up_again_when_it_answers() {
        // A port nothing listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let address = ProxyAddress::parse(&format!("socks5://127.0.0.1:{port}")).unwrap();
        let watch = ProxyWatch::start(address);
        assert!(watch.check().is_ok(), "not down before greetings failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while watch.check().is_ok() {
            assert!(Instant::now() < deadline, "never reported down");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let message = watch.check().unwrap_err();
        assert!(
            !message.contains(&port.to_string()),
            "users are not told where the proxy is: {message}"
        );

        // A SOCKS5 server appears on the port: up again at the next greeting.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let mut hello = [0u8; 3];
                if s.read_exact(&mut hello).await.is_ok() {
                    let _ = s.write_all(&[5, 0]).await;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while watch.check().is_err() {
            assert!(Instant::now() < deadline, "never reported up again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
