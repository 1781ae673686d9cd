//! A rate limiter in memory: the adapters' GCRA on tokio's clock, so a test with a paused
//! clock decides when buckets refill.

use tokio::time::Instant;

use super::*;

/// Buckets per (key, limit), never forgotten (tests use few keys).
#[derive(Default)]
pub struct MemoryRateLimiter {
    /// The theoretical arrival time of each bucket's next cell.
    tats: Mutex<HashMap<(String, u32, Duration), Instant>>,
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, key: &str, limit: RateLimit) -> RateDecision {
        if limit.period.is_zero() {
            return RateDecision::Allowed;
        }
        // Bounded as the adapters bound them, so the arithmetic cannot overflow.
        let burst = limit.burst.clamp(1, 10_000);
        let period = limit.period.min(Duration::from_secs(24 * 3600));
        let now = Instant::now();
        let mut tats = lock(&self.tats);
        let bucket = (key.to_owned(), burst, period);
        let tat = tats.get(&bucket).map_or(now, |t| (*t).max(now));
        // The bucket holds `burst` cells: the next passes once tat is within burst - 1
        // periods of now.
        let allowed_at = tat.checked_sub(period.saturating_mul(burst - 1));
        match allowed_at {
            Some(at) if now < at => RateDecision::Limited {
                retry_after: at - now,
            },
            _ => {
                tats.insert(bucket, tat + period);
                RateDecision::Allowed
            }
        }
    }
}
