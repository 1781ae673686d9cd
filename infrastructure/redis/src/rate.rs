//! `RedisRateLimiter`: one limit shared by every API instance, a GCRA in one Lua script
//! per check.
//!
//! The script reads the server's clock (`TIME`), so instances whose clocks differ still
//! share one limit exactly, and it runs atomically, so concurrent checks never pass more
//! than the burst. A bucket is one string key, `{p}:rate:{burst}:{period µs}:{key}`,
//! holding its theoretical arrival time (µs) and expiring when the bucket is full again
//! (an expired key is no different from a fresh one). A key longer than 128 bytes, or with
//! anything but printable ASCII other than `{}*?[]\#`, is stored as `#` and its SHA-256:
//! keys stay short, and nothing a client sends can become a hash tag or a pattern.
//!
//! When Redis cannot answer within the timeout, a check allows the request: a warning
//! once per outage, then at most one attempt a second, the other requests passing at once
//! without waiting for Redis (limits protect, they must not take the API down).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferry_application::ports::{RateDecision, RateLimit, RateLimiter};
use redis::Script;
use sha2::{Digest, Sha256};

use crate::Redis;

/// The GCRA. KEYS[1]: the bucket. ARGV[1]: the period (µs); ARGV[2]: the burst.
/// Returns `{1, 0}` when allowed, `{0, µs to wait}` when refused. Times are µs on the
/// server's clock (below 2^53, exact in Lua's numbers for the bounded limits).
const GCRA: &str = r"
local period = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allowed_at = tat - (burst - 1) * period
if now < allowed_at then
  return {0, allowed_at - now}
end
tat = tat + period
redis.call('SET', KEYS[1], string.format('%.0f', tat),
  'PX', string.format('%.0f', math.ceil((tat - now) / 1000) + 1))
return {1, 0}
";

/// Longer periods count as this long, larger bursts as `MAX_BURST` (as in the
/// in-process limiter): the script's times then stay exact.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);
const MAX_BURST: u32 = 10_000;
/// Keys longer than this are stored as their digest.
const MAX_KEY_LEN: usize = 128;
/// How long a check waits for Redis before allowing the request.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// While Redis is unreachable, how often a check tries it again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The key as stored: itself when short and plain, else `#` and its SHA-256.
fn stored_key(key: &str) -> String {
    let plain = key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"{}*?[]\\#".contains(&b));
    if plain {
        key.to_owned()
    } else {
        format!("#{}", hex::encode(Sha256::digest(key.as_bytes())))
    }
}

/// Whether Redis answered the last check, and when to try again if not.
#[derive(Default)]
struct Outage {
    next_probe: Option<Instant>,
}

/// The shared rate limiter (distributed mode).
pub struct RedisRateLimiter {
    redis: Redis,
    script: Script,
    timeout: Duration,
    outage: Mutex<Outage>,
}

impl RedisRateLimiter {
    /// Buckets under `redis`'s key prefix; a check waits at most 500 ms for Redis.
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            script: Script::new(GCRA),
            timeout: DEFAULT_TIMEOUT,
            outage: Mutex::new(Outage::default()),
        }
    }

    /// How long a check waits for Redis before allowing the request.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn outage(&self) -> MutexGuard<'_, Outage> {
        self.outage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether to ask Redis now: always while it answers; during an outage, once a
    /// second (the asking request claims the turn, so only one waits for Redis).
    fn may_ask(&self) -> bool {
        let mut outage = self.outage();
        match outage.next_probe {
            Some(at) if Instant::now() < at => false,
            Some(_) => {
                outage.next_probe = Some(Instant::now() + PROBE_EVERY);
                true
            }
            None => true,
        }
    }

    fn answered(&self) {
        if self.outage().next_probe.take().is_some() {
            tracing::info!("Redis answers again: rate limits are enforced again");
        }
    }

    fn failed(&self, why: &str) {
        let mut outage = self.outage();
        if outage.next_probe.is_none() {
            tracing::warn!(
                error = why,
                "Redis is unreachable: rate limits are not enforced until it answers again"
            );
        }
        outage.next_probe = Some(Instant::now() + PROBE_EVERY);
    }

    async fn ask(
        &self,
        bucket: String,
        period_us: u64,
        burst: u32,
    ) -> Result<RateDecision, String> {
        let mut c = self.redis.commands.clone();
        let mut call = self.script.key(bucket);
        call.arg(period_us).arg(burst);
        let answer = tokio::time::timeout(self.timeout, call.invoke_async::<(i64, i64)>(&mut c))
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
            .map_err(|e| e.to_string())?;
        Ok(match answer {
            (1, _) => RateDecision::Allowed,
            (_, wait) => RateDecision::Limited {
                retry_after: Duration::from_micros(u64::try_from(wait).unwrap_or(0).max(1)),
            },
        })
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, limit: RateLimit) -> RateDecision {
        let period = limit.period.min(MAX_PERIOD);
        if period.is_zero() {
            return RateDecision::Allowed;
        }
        let period_us = u64::try_from(period.as_micros()).unwrap_or(u64::MAX).max(1);
        let burst = limit.burst.clamp(1, MAX_BURST);
        if !self.may_ask() {
            return RateDecision::Allowed;
        }
        let bucket = self
            .redis
            .key(&format!("rate:{burst}:{period_us}:{}", stored_key(key)));
        match self.ask(bucket, period_us, burst).await {
            Ok(decision) => {
                self.answered();
                decision
            }
            Err(why) => {
                self.failed(&why);
                RateDecision::Allowed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_keys_are_short_and_carry_no_pattern_or_hash_tag() {
        assert_eq!(stored_key("login-ip:2001:db8::1"), "login-ip:2001:db8::1");
        assert_eq!(
            stored_key("login-user:a.b+c@example.com"),
            "login-user:a.b+c@example.com"
        );
        for key in [
            "a".repeat(MAX_KEY_LEN + 1),
            "x".repeat(1 << 20),
            "{tag}".to_owned(),
            "*".to_owned(),
            "a b".to_owned(),
            "a\nb".to_owned(),
            "é".to_owned(),
            "#".to_owned(),
            "\0".to_owned(),
        ] {
            let stored = stored_key(&key);
            assert!(
                stored.starts_with('#')
                    && stored.len() == 65
                    && stored[1..].bytes().all(|b| b.is_ascii_hexdigit()),
                "{stored}"
            );
        }
        // A key shaped like another key's digest is itself digested: no collision.
        let digest = stored_key("{x}");
        assert_ne!(stored_key(&digest), digest);
    }
}
