//! `RedisSessions` against the real Redis: the contract (logical time), and what only Redis
//! does: keys that expire by themselves, and a user's set that forgets expired sessions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ferry_application::ports::{Session, Sessions};
use ferry_application::testing::contracts::sessions_contract;
use ferry_domain::OwnerId;
use ferry_redis::{Redis, RedisSessions};
use ferry_testkit::redis::Prefix;
use ferry_testkit::unavailable;
use redis::AsyncCommands;

async fn redis() -> Option<(Redis, Prefix, redis::aio::MultiplexedConnection)> {
    let keys = Prefix::new();
    match Redis::connect(&keys.url, &keys.prefix).await {
        Ok(r) => {
            let raw = redis::Client::open(keys.url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            Some((r, keys, raw))
        }
        Err(e) => {
            unavailable(&format!("Redis at {}", keys.url), &format!("{e:#}"));
            None
        }
    }
}

#[tokio::test]
async fn sessions_pass_the_contract() {
    let Some((r, _keys, _)) = redis().await else {
        return;
    };
    sessions_contract(&RedisSessions::new(r.clone())).await;
    r.delete_all().await.unwrap();
}

fn session(user: &OwnerId, now: DateTime<Utc>, lasts: TimeDelta) -> Session {
    Session {
        user: user.clone(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + lasts,
        user_agent: None,
        ip: None,
    }
}

/// Milliseconds the key has left.
async fn pttl(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    raw.pttl(key).await.unwrap()
}

#[tokio::test]
async fn keys_expire_at_the_nearer_end_and_a_touch_moves_it() {
    let Some((r, keys, mut raw)) = redis().await else {
        return;
    };
    let sessions = RedisSessions::new(r.clone());
    let alice = OwnerId::parse("alice").unwrap();
    let now = Utc::now();
    let idle = Duration::from_secs(600);
    let key = |h: u8| format!("{}:session:{}", keys.prefix, hex::encode([h; 32]));
    let set = format!("{}:user-sessions:alice", keys.prefix);

    // The idle end is nearer: the key lasts idle.
    sessions
        .create(&[1; 32], &session(&alice, now, TimeDelta::hours(8)), idle)
        .await
        .unwrap();
    let ttl = pttl(&mut raw, &key(1)).await;
    assert!((590_000..=600_000).contains(&ttl), "{ttl}");
    // The absolute end is nearer: the key lasts until then.
    sessions
        .create(
            &[2; 32],
            &session(&alice, now, TimeDelta::seconds(120)),
            idle,
        )
        .await
        .unwrap();
    let ttl = pttl(&mut raw, &key(2)).await;
    assert!((110_000..=120_000).contains(&ttl), "{ttl}");
    // The set lasts as long as its longest session.
    let ttl = pttl(&mut raw, &set).await;
    assert!((590_000..=600_000).contains(&ttl), "{ttl}");

    // Five minutes on (logically), a request gives the session its whole idle time again,
    // and the set keeps up.
    let later = now + TimeDelta::minutes(5);
    let long_idle = Duration::from_secs(3600);
    sessions.touch(&[1; 32], later, long_idle).await.unwrap();
    let ttl = pttl(&mut raw, &key(1)).await;
    assert!((3_590_000..=3_600_000).contains(&ttl), "{ttl}");
    let ttl = pttl(&mut raw, &set).await;
    assert!((3_590_000..=3_600_000).contains(&ttl), "{ttl}");
    // Near its absolute end, a touch never stretches the key past it.
    sessions
        .touch(&[2; 32], now + TimeDelta::seconds(100), idle)
        .await
        .unwrap();
    let ttl = pttl(&mut raw, &key(2)).await;
    assert!((10_000..=20_000).contains(&ttl), "{ttl}");
    r.delete_all().await.unwrap();
}

#[tokio::test]
async fn the_users_set_forgets_sessions_that_expired() {
    let Some((r, keys, mut raw)) = redis().await else {
        return;
    };
    let sessions = RedisSessions::new(r.clone());
    let bob = OwnerId::parse("bob").unwrap();
    let set = format!("{}:user-sessions:bob", keys.prefix);
    let now = Utc::now();
    sessions
        .create(
            &[1; 32],
            &session(&bob, now, TimeDelta::hours(1)),
            Duration::from_millis(50),
        )
        .await
        .unwrap();
    // Redis drops the key once its 50 ms are over (whenever it is next looked at).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gone: bool = raw
        .exists(format!("{}:session:{}", keys.prefix, hex::encode([1; 32])))
        .await
        .unwrap();
    assert!(!gone);
    sessions
        .create(
            &[2; 32],
            &session(&bob, now, TimeDelta::hours(1)),
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    let members: Vec<String> = raw.smembers(&set).await.unwrap();
    assert_eq!(members, vec![hex::encode([2; 32])]);
    assert_eq!(sessions.delete_user(&bob).await.unwrap(), 1);
    let left: bool = raw.exists(&set).await.unwrap();
    assert!(!left, "the set goes with its sessions");
    // A session that ended before it began is not stored.
    sessions
        .create(
            &[3; 32],
            &session(&bob, now, TimeDelta::seconds(-1)),
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    assert_eq!(
        sessions
            .get(&[3; 32], now, Duration::from_secs(600))
            .await
            .unwrap(),
        None
    );
    r.delete_all().await.unwrap();
}

/// A hash field the application never wrote (a hand-edited or foreign key) is reported as
/// corrupt, not served.
#[tokio::test]
async fn a_corrupt_session_is_an_error_not_a_login() {
    let Some((r, keys, mut raw)) = redis().await else {
        return;
    };
    let sessions = RedisSessions::new(r.clone());
    let key = format!("{}:session:{}", keys.prefix, hex::encode([9; 32]));
    let _: () = raw
        .hset_multiple(
            &key,
            &[
                ("user", "../admin"),
                ("created", "0"),
                ("last_seen", "0"),
                ("expires", "99999999999999"),
            ],
        )
        .await
        .unwrap();
    assert!(
        sessions
            .get(&[9; 32], Utc::now(), Duration::from_secs(60))
            .await
            .is_err()
    );
    r.delete_all().await.unwrap();
}
