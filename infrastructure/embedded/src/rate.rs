//! `GovernorLimiter`: the in-process `RateLimiter` of the one-box mode, governor's GCRA
//! with one keyed limiter per distinct `RateLimit` (per-user API, per-address and
//! per-account login…).
//!
//! Keys come from outside (login names, client addresses), so memory stays bounded
//! whatever arrives:
//! - a key longer than 128 bytes is kept as `#` and its SHA-256 (so is a key that starts
//!   with `#`, which keeps the two forms apart);
//! - a limit keeps at most `max_keys` keys, in two generations: when the newer one is full,
//!   the older one is dropped whole, so a flood of made-up keys pushes out the keys seen
//!   least recently, and a key in use moves to the newer generation each time it is used;
//! - at most once a minute (on a check), a limit drops the keys whose bucket is full again:
//!   they are no different from a key never seen.
//!
//! Forgetting a key only ever refills its bucket: a flood can make the limiter lenient
//! towards keys nobody used while it lasted, never stricter towards anyone.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use ferry_application::ports::{RateDecision, RateLimit, RateLimiter};
use governor::Quota;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;
use sha2::{Digest, Sha256};

/// Keys a limit keeps by default: about 9 MB at most per limit, with the longest keys.
pub const DEFAULT_MAX_KEYS: usize = 50_000;
/// Keys longer than this are kept as their digest.
const MAX_KEY_LEN: usize = 128;
/// How often a limit drops the keys whose bucket is full again.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Longer periods count as this long (and larger bursts as `MAX_BURST`), so a bucket's
/// arithmetic never overflows; the Redis limiter bounds them the same way.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);
const MAX_BURST: u32 = 10_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The key as kept: itself when short, else `#` and its SHA-256 (64 hex digits).
fn stored_key(key: &str) -> String {
    if key.len() <= MAX_KEY_LEN && !key.starts_with('#') {
        key.to_owned()
    } else {
        format!("#{}", hex::encode(Sha256::digest(key.as_bytes())))
    }
}

/// One limit's buckets (each key's theoretical arrival time, in governor's nanoseconds
/// since the limit was made), in two generations: `[newer, older]`.
struct Generations {
    maps: Mutex<[HashMap<String, u64>; 2]>,
    per_generation: usize,
}

impl Generations {
    fn new(max_keys: usize) -> Self {
        Self {
            maps: Mutex::new([HashMap::new(), HashMap::new()]),
            per_generation: (max_keys / 2).max(1),
        }
    }
}

impl StateStore for Generations {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut maps = lock(&self.maps);
        let [newer, older] = &mut *maps;
        let (tat, promoted) = match newer.get(key) {
            Some(tat) => (Some(*tat), false),
            None => {
                let tat = older.remove(key);
                (tat, tat.is_some())
            }
        };
        let decision = f(tat.map(Nanos::from));
        let keep = match &decision {
            Ok((_, next)) => Some(next.as_u64()),
            // A refusal changes nothing, but a key taken from the older generation is used.
            Err(_) if promoted => tat,
            Err(_) => None,
        };
        if let Some(tat) = keep {
            if let Some(slot) = newer.get_mut(key) {
                *slot = tat;
            } else {
                newer.insert(key.clone(), tat);
                if newer.len() >= self.per_generation {
                    *older = std::mem::take(newer);
                }
            }
        }
        decision.map(|(outcome, _)| outcome)
    }
}

impl ShrinkableKeyedStateStore<String> for Generations {
    fn retain_recent(&self, drop_below: Nanos) {
        let below = drop_below.as_u64();
        for map in lock(&self.maps).iter_mut() {
            map.retain(|_, tat| *tat > below);
        }
    }

    fn shrink_to_fit(&self) {
        for map in lock(&self.maps).iter_mut() {
            map.shrink_to_fit();
        }
    }

    fn len(&self) -> usize {
        lock(&self.maps).iter().map(HashMap::len).sum()
    }

    fn is_empty(&self) -> bool {
        lock(&self.maps).iter().all(HashMap::is_empty)
    }
}

type Keyed<C> =
    governor::RateLimiter<String, Generations, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One `RateLimit`'s keyed limiter.
struct Limit<C: Clock> {
    keyed: Keyed<C>,
    /// When its forgettable keys were last dropped.
    swept: Mutex<C::Instant>,
}

/// Each limit's keyed limiter, by (burst, period): limits come from the configuration, so
/// there are a few.
type Limits<C> = HashMap<(u32, Duration), Arc<Limit<C>>>;

/// The in-process rate limiter. `new()` for the server; `with_clock` for tests that move
/// time themselves (governor's `FakeRelativeClock`).
pub struct GovernorLimiter<C: Clock = DefaultClock> {
    clock: C,
    max_keys: usize,
    limits: Mutex<Limits<C>>,
}

impl GovernorLimiter {
    /// The system's monotonic clock and [`DEFAULT_MAX_KEYS`] keys per limit.
    pub fn new() -> Self {
        Self::with_clock(DefaultClock::default(), DEFAULT_MAX_KEYS)
    }
}

impl Default for GovernorLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock + Clone> GovernorLimiter<C> {
    /// A limiter on `clock` keeping at most `max_keys` keys per limit (at least 2).
    pub fn with_clock(clock: C, max_keys: usize) -> Self {
        Self {
            clock,
            max_keys: max_keys.max(2),
            limits: Mutex::new(HashMap::new()),
        }
    }

    /// How many keys all limits hold now.
    pub fn tracked_keys(&self) -> usize {
        lock(&self.limits)
            .values()
            .map(|limit| limit.keyed.len())
            .sum()
    }

    /// Drops, now, every key whose bucket is full again (checks do it once a minute).
    pub fn forget_idle(&self) {
        let limits: Vec<_> = lock(&self.limits).values().cloned().collect();
        for limit in limits {
            *lock(&limit.swept) = self.clock.now();
            Self::sweep(&limit);
        }
    }

    fn sweep(limit: &Limit<C>) {
        limit.keyed.retain_recent();
        limit.keyed.shrink_to_fit();
    }

    fn sweep_if_due(&self, limit: &Limit<C>) {
        let now = self.clock.now();
        {
            let mut swept = lock(&limit.swept);
            if now.duration_since(*swept) < Nanos::from(SWEEP_EVERY) {
                return;
            }
            *swept = now;
        }
        Self::sweep(limit);
    }

    fn limit(&self, burst: NonZeroU32, period: Duration) -> Option<Arc<Limit<C>>> {
        let quota = Quota::with_period(period)?.allow_burst(burst);
        let mut limits = lock(&self.limits);
        let limit = limits.entry((burst.get(), period)).or_insert_with(|| {
            Arc::new(Limit {
                keyed: governor::RateLimiter::new(
                    quota,
                    Generations::new(self.max_keys),
                    self.clock.clone(),
                ),
                swept: Mutex::new(self.clock.now()),
            })
        });
        Some(limit.clone())
    }
}

#[async_trait]
impl<C> RateLimiter for GovernorLimiter<C>
where
    C: Clock + Clone + Send + Sync + 'static,
{
    async fn check(&self, key: &str, limit: RateLimit) -> RateDecision {
        let burst = NonZeroU32::new(limit.burst.clamp(1, MAX_BURST)).unwrap_or(NonZeroU32::MIN);
        // A zero period is no limit.
        let Some(bucket) = self.limit(burst, limit.period.min(MAX_PERIOD)) else {
            return RateDecision::Allowed;
        };
        self.sweep_if_due(&bucket);
        match bucket.keyed.check_key(&stored_key(key)) {
            Ok(()) => RateDecision::Allowed,
            Err(not_until) => RateDecision::Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_hash_like_keys_are_kept_as_digests_of_bounded_length() {
        assert_eq!(stored_key("login-ip:10.0.0.1"), "login-ip:10.0.0.1");
        let at_limit = "a".repeat(MAX_KEY_LEN);
        assert_eq!(stored_key(&at_limit), at_limit);
        for key in [
            "a".repeat(MAX_KEY_LEN + 1),
            "x".repeat(1 << 20),
            "#short".to_owned(),
        ] {
            let kept = stored_key(&key);
            assert!(kept.starts_with('#') && kept.len() == 65, "{kept}");
        }
        // A key shaped like another key's digest is itself digested: no collision.
        let digest = stored_key(&"a".repeat(500));
        assert_ne!(stored_key(&digest), digest);
    }
}
