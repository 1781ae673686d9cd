//! Redis adapters for the distributed mode: `JobQueue` and `ProgressBus` on Redis Streams,
//! browser `Sessions`, and `RateLimiter` on a Lua script.
//!
//! Keys (all under a configurable prefix, so deployments and test runs never collide):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}:q:{stage}` | stream, group `workers` | stage messages `job`, `attempt` |
//! | `{p}:q:delayed` | sorted set | retries waiting for their backoff (score = due, ms) |
//! | `{p}:q:dead` | stream | messages whose retries ran out, with the reason |
//! | `{p}:q:jobs:{stage}` | hash | job → messages of the stage alive (waiting, delayed or held) |
//! | `{p}:lock:{stage}:{job}` | string, expires | the message a worker is running for the job |
//! | `{p}:progress:{job}` | stream, `MAXLEN ~ 1000` | job events |
//! | `{p}:rate:{burst}:{period µs}:{key}` | string, expires when full again | a rate bucket's theoretical arrival time (µs, server clock) |
//! | `{p}:session:{hash}` | hash, expires | a browser session (hex SHA-256 of its id) |
//! | `{p}:user-sessions:{user}` | set, expires | the user's session hashes |
//!
//! Blocking reads use connections of their own with no response timeout; everything else
//! shares a connection manager (500 ms response timeout, reconnects by itself).

mod bus;
mod queue;
mod rate;
mod sessions;

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client};

pub use bus::RedisBus;
pub use queue::RedisQueue;
pub use rate::RedisRateLimiter;
pub use sessions::RedisSessions;

/// A Redis connection source for one key prefix.
#[derive(Clone)]
pub struct Redis {
    client: Client,
    commands: ConnectionManager,
    prefix: String,
}

impl Redis {
    /// Connects to `url` (`redis://host:port/db`).
    ///
    /// # Errors
    /// When the URL is invalid or the server cannot be reached.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = Client::open(url).context("invalid Redis URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let commands = client
            .get_connection_manager_with_config(config)
            .await
            .context("connecting to Redis")?;
        Ok(Self {
            client,
            commands,
            prefix: prefix.to_owned(),
        })
    }

    /// A connection for blocking reads: no response timeout (the `BLOCK` bounds the wait).
    async fn blocking(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(None);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    /// Deletes every key under this prefix (tests and operators resetting a deployment).
    ///
    /// # Errors
    /// When Redis cannot be reached.
    pub async fn delete_all(&self) -> anyhow::Result<u64> {
        let mut c = self.commands.clone();
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}:*", self.prefix))
                .arg("COUNT")
                .arg(500)
                .query_async(&mut c)
                .await?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("DEL").arg(&keys).query_async(&mut c).await?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// `PING`.
    ///
    /// # Errors
    /// When Redis does not answer.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let mut c = self.commands.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }
}

/// Connection-level failures are "unavailable"; callers answer 503 or retry.
fn unavailable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
}
