//! `RedisRateLimiter` against the real Redis on 127.0.0.1:6379, each test under a key
//! prefix of its own: the port's contract on one instance and across two (one limit
//! shared), what its keys look like, and an outage (a relay in front of Redis that the
//! test closes and opens again on the same port).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferry_application::ports::{RateDecision, RateLimit, RateLimiter};
use ferry_application::testing::contracts::rate_limiter_contract;
use ferry_redis::{Redis, RedisRateLimiter};
use ferry_testkit::redis::Prefix;
use ferry_testkit::unavailable;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const MINUTE: RateLimit = RateLimit {
    burst: 5,
    period: Duration::from_secs(60),
};

/// A connection under a key prefix of the test's own (its keys go when the prefix drops).
async fn redis() -> Option<(Redis, Prefix)> {
    let keys = Prefix::new();
    match Redis::connect(&keys.url, &keys.prefix).await {
        Ok(r) => Some((r, keys)),
        Err(e) => {
            unavailable(&format!("Redis at {}", keys.url), &format!("{e:#}"));
            None
        }
    }
}

/// Two limiters on two connections of their own, asked in turn: one API instance and
/// another.
struct TwoInstances {
    limiters: [RedisRateLimiter; 2],
    turn: AtomicUsize,
}

#[async_trait]
impl RateLimiter for TwoInstances {
    async fn check(&self, key: &str, limit: RateLimit) -> RateDecision {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed) % 2;
        self.limiters[turn].check(key, limit).await
    }
}

/// Every key under the prefix, as bytes.
async fn all_keys(url: &str, prefix: &str) -> Vec<Vec<u8>> {
    let mut c = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

#[tokio::test]
async fn passes_the_contract_and_keeps_short_expiring_keys() {
    let Some((r, keys)) = redis().await else {
        return;
    };
    rate_limiter_contract(&RedisRateLimiter::new(r.clone())).await;

    // Hostile keys became short, plain bucket names under the prefix, each expiring by the
    // time its bucket is full again (burst × period, both in the name).
    let mut c = redis::Client::open(keys.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stored = all_keys(&keys.url, &keys.prefix).await;
    assert!(stored.len() > 30, "{} buckets", stored.len());
    let head = format!("{}:rate:", keys.prefix);
    for key in &stored {
        let name = String::from_utf8(key.clone()).expect("an ASCII key");
        let rest = name.strip_prefix(&head).unwrap_or_else(|| panic!("{name}"));
        let mut parts = rest.splitn(3, ':');
        let burst: u64 = parts.next().unwrap().parse().unwrap();
        let period_us: u64 = parts.next().unwrap().parse().unwrap();
        let bucket = parts.next().unwrap();
        assert!(bucket.len() <= 128, "{bucket}");
        assert!(
            bucket
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"{}*?[]\\".contains(&b)),
            "{bucket:?}"
        );
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut c)
            .await
            .unwrap();
        let window_ms = i64::try_from(burst * period_us / 1000).unwrap();
        assert!(ttl > 0 && ttl <= window_ms + 2, "{name}: {ttl} ms");
    }
    r.delete_all().await.unwrap();
}

#[tokio::test]
async fn two_instances_pass_the_contract_as_one_limit() {
    let Some((a, keys)) = redis().await else {
        return;
    };
    let b = Redis::connect(&keys.url, &keys.prefix).await.unwrap();
    let both = TwoInstances {
        limiters: [RedisRateLimiter::new(a.clone()), RedisRateLimiter::new(b)],
        turn: AtomicUsize::new(0),
    };
    rate_limiter_contract(&both).await;
    a.delete_all().await.unwrap();
}

#[tokio::test]
async fn a_burst_of_five_lets_five_through_across_two_instances() {
    let Some((a, keys)) = redis().await else {
        return;
    };
    let b = Redis::connect(&keys.url, &keys.prefix).await.unwrap();
    let (a, b) = (RedisRateLimiter::new(a), RedisRateLimiter::new(b));
    // Ten requests at once on each instance.
    let decisions = futures::future::join_all(
        (0..10).flat_map(|_| [a.check("api:alice", MINUTE), b.check("api:alice", MINUTE)]),
    )
    .await;
    let passed = decisions
        .iter()
        .filter(|d| **d == RateDecision::Allowed)
        .count();
    assert_eq!(passed, 5, "{decisions:?}");
    for limiter in [&a, &b] {
        match limiter.check("api:alice", MINUTE).await {
            RateDecision::Limited { retry_after } => assert!(retry_after <= MINUTE.period),
            RateDecision::Allowed => panic!("the shared bucket is empty"),
        }
    }
}

/// A TCP relay to Redis that the test closes (its port and every connection through it)
/// and opens again on the same port: an outage the client cannot tell from a real one.
struct Relay {
    addr: SocketAddr,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Relay {
    async fn open(addr: SocketAddr, upstream: String) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (accepting, conns) = (stop.clone(), tasks.clone());
        tasks.spawn(async move {
            loop {
                let mut client = tokio::select! {
                    () = accepting.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => return,
                    },
                };
                let (stop, upstream) = (accepting.clone(), upstream.clone());
                conns.spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Self { addr, stop, tasks }
    }

    /// Closes the port and every connection, and returns once they are closed.
    async fn close(self) -> SocketAddr {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.addr
    }
}

/// `host:port` of a `redis://[auth@]host:port[/db]` URL, and the URL through `relay`.
fn through(url: &str, relay: SocketAddr) -> (String, String) {
    let rest = url.strip_prefix("redis://").expect("a redis:// URL");
    let (auth, rest) = rest
        .rsplit_once('@')
        .map_or((String::new(), rest), |(a, r)| (format!("{a}@"), r));
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    (host.to_owned(), format!("redis://{auth}{relay}/{path}"))
}

/// Log lines, for counting warnings.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

const WARNING: &str = "Redis is unreachable";
const RECOVERY: &str = "Redis answers again";

#[tokio::test]
async fn an_unreachable_redis_allows_and_warns_once_per_outage() {
    let Some((r, keys)) = redis().await else {
        return;
    };
    let logs = Logs::default();
    let sink = logs.clone();
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish(),
    );
    let (upstream, _) = through(&keys.url, "127.0.0.1:0".parse().unwrap());
    let relay = Relay::open("127.0.0.1:0".parse().unwrap(), upstream.clone()).await;
    let (_, url) = through(&keys.url, relay.addr);
    let limiter = RedisRateLimiter::new(Redis::connect(&url, &keys.prefix).await.unwrap());
    let one = RateLimit {
        burst: 1,
        period: Duration::from_secs(60),
    };
    assert_eq!(
        limiter.check("login-ip:10.0.0.1", one).await,
        RateDecision::Allowed
    );
    assert!(matches!(
        limiter.check("login-ip:10.0.0.1", one).await,
        RateDecision::Limited { .. }
    ));

    // The outage: every request passes, and one warning says why.
    let addr = relay.close().await;
    for _ in 0..50 {
        assert_eq!(
            limiter.check("login-ip:10.0.0.1", one).await,
            RateDecision::Allowed
        );
    }
    // Past the next attempt (once a second), still down: still one warning.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..5 {
        assert_eq!(
            limiter.check("login-ip:10.0.0.1", one).await,
            RateDecision::Allowed
        );
    }
    assert_eq!(logs.count(WARNING), 1, "one warning per outage");
    assert_eq!(logs.count(RECOVERY), 0);

    // Redis is back on the same port: the bucket it kept refuses again.
    let relay = Relay::open(addr, upstream.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while limiter.check("login-ip:10.0.0.1", one).await == RateDecision::Allowed {
        assert!(
            Instant::now() < deadline,
            "the limiter never used Redis again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(logs.count(RECOVERY), 1);
    assert_eq!(logs.count(WARNING), 1);

    // A second outage is a second warning.
    relay.close().await;
    assert_eq!(
        limiter.check("login-ip:10.0.0.1", one).await,
        RateDecision::Allowed
    );
    assert_eq!(logs.count(WARNING), 2);
    r.delete_all().await.unwrap();
}
