//! `GovernorLimiter`: the port's contract on the real clock, then the exact edge and the
//! memory bound on governor's fake clock (no sleeping).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ferry_application::ports::{RateDecision, RateLimit, RateLimiter};
use ferry_application::testing::contracts::rate_limiter_contract;
use ferry_embedded::GovernorLimiter;
use governor::clock::FakeRelativeClock;

const MINUTE: RateLimit = RateLimit {
    burst: 3,
    period: Duration::from_secs(60),
};

fn limited(retry_after: Duration) -> RateDecision {
    RateDecision::Limited { retry_after }
}

#[tokio::test]
async fn passes_the_contract() {
    rate_limiter_contract(&GovernorLimiter::new()).await;
}

#[tokio::test]
async fn the_edge_and_the_refill_are_exact() {
    let clock = FakeRelativeClock::default();
    let limiter = GovernorLimiter::with_clock(clock.clone(), 1000);
    let second = RateLimit {
        burst: 3,
        period: Duration::from_secs(1),
    };
    for _ in 0..3 {
        assert_eq!(limiter.check("k", second).await, RateDecision::Allowed);
    }
    assert_eq!(
        limiter.check("k", second).await,
        limited(Duration::from_secs(1))
    );
    clock.advance(Duration::from_millis(999));
    assert_eq!(
        limiter.check("k", second).await,
        limited(Duration::from_millis(1))
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(limiter.check("k", second).await, RateDecision::Allowed);
    assert_eq!(
        limiter.check("k", second).await,
        limited(Duration::from_secs(1))
    );
    // Idle for the whole window: the full burst again, and no more.
    clock.advance(Duration::from_secs(3));
    for _ in 0..3 {
        assert_eq!(limiter.check("k", second).await, RateDecision::Allowed);
    }
    assert_eq!(
        limiter.check("k", second).await,
        limited(Duration::from_secs(1))
    );
}

#[tokio::test]
async fn a_flood_of_distinct_keys_keeps_memory_bounded_and_the_keys_in_use() {
    let clock = FakeRelativeClock::default();
    let limiter = GovernorLimiter::with_clock(clock.clone(), 1000);
    // Two keys exhausted before the flood: one keeps knocking during it, one goes quiet.
    for key in ["login-user:victim", "login-user:quiet"] {
        for _ in 0..3 {
            limiter.check(key, MINUTE).await;
        }
    }
    let long = "x".repeat(1000);
    // 30 000 made-up keys (spoofed addresses, long names) at one instant: nothing is
    // old enough to be forgotten by age, so only the cap holds memory down.
    for i in 0..30_000 {
        let key = if i % 2 == 0 {
            format!("login-ip:10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)
        } else {
            format!("{long}{i}")
        };
        assert_eq!(limiter.check(&key, MINUTE).await, RateDecision::Allowed);
        if i % 100 == 0 {
            assert!(
                matches!(
                    limiter.check("login-user:victim", MINUTE).await,
                    RateDecision::Limited { .. }
                ),
                "a key in use keeps its bucket through the flood (at {i})"
            );
        }
        if i % 1000 == 0 {
            assert!(
                limiter.tracked_keys() <= 1000,
                "{} keys",
                limiter.tracked_keys()
            );
        }
    }
    assert!(limiter.tracked_keys() <= 1000);
    // The price of the bound: a key nobody used during the flood was forgotten (its bucket
    // is full again), never the other way round.
    assert_eq!(
        limiter.check("login-user:quiet", MINUTE).await,
        RateDecision::Allowed
    );
}

#[tokio::test]
async fn idle_keys_are_forgotten_by_the_next_check_after_a_minute() {
    let clock = FakeRelativeClock::default();
    let limiter = GovernorLimiter::with_clock(clock.clone(), 100_000);
    let second = RateLimit {
        burst: 2,
        period: Duration::from_secs(1),
    };
    for i in 0..5000 {
        limiter.check(&format!("api:user-{i}"), second).await;
        limiter.check(&format!("login-ip:{i}"), MINUTE).await;
    }
    assert_eq!(limiter.tracked_keys(), 10_000);
    // Long enough for every per-second bucket to be full again, not for the per-minute
    // ones (full a minute after their one request; governor keeps a key one period more).
    clock.advance(Duration::from_secs(61));
    limiter.check("api:busy", second).await;
    limiter.check("login-ip:busy", MINUTE).await;
    assert_eq!(limiter.tracked_keys(), 5000 + 2, "the per-second keys went");
    clock.advance(Duration::from_secs(150));
    // Exhausted just now: stays through the sweep, still refused.
    for _ in 0..2 {
        limiter.check("api:busy", second).await;
    }
    limiter.forget_idle();
    assert_eq!(limiter.tracked_keys(), 1, "only the busy key is left");
    assert!(matches!(
        limiter.check("api:busy", second).await,
        RateDecision::Limited { .. }
    ));
}
