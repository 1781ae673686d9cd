//! The queue and bus contracts against the real Redis on 127.0.0.1:6379, each test under a
//! key prefix of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ferry_application::ports::{JobQueue, Lease, ProgressBus, QueueError, Replay, Stage};
use ferry_application::testing::contracts::{job_queue_contract, progress_bus_contract};
use ferry_domain::JobId;
use ferry_redis::{Redis, RedisBus, RedisQueue};
use ferry_testkit::redis::Prefix;
use ferry_testkit::unavailable;

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

/// The stream entry a lease's receipt names (`{id}|{consumer}|{claim}`).
fn message(lease: &Lease) -> &str {
    lease.receipt.split('|').next().unwrap()
}

#[tokio::test]
async fn queue_passes_the_contract() {
    let Some((r, _keys)) = redis().await else {
        return;
    };
    job_queue_contract(&RedisQueue::new(
        r.clone(),
        "test-1",
        Duration::from_secs(30),
    ))
    .await;
    assert!(r.delete_all().await.unwrap() > 0);
}

#[tokio::test]
async fn bus_passes_the_contract() {
    let Some((r, _keys)) = redis().await else {
        return;
    };
    progress_bus_contract(&RedisBus::new(r.clone())).await;
    r.delete_all().await.unwrap();
}

#[tokio::test]
async fn workers_are_seen_with_the_messages_they_hold() {
    let Some((r, _keys)) = redis().await else {
        return;
    };
    let a = RedisQueue::new(r.clone(), "worker-a", Duration::from_secs(30));
    let b = RedisQueue::new(r.clone(), "worker-b", Duration::from_secs(30));
    assert_eq!(a.workers(Stage::Upload).await.unwrap(), vec![]);
    a.enqueue(Stage::Upload, JobId::new()).await.unwrap();
    let _held = a
        .claim(Stage::Upload, Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    assert!(
        b.claim(Stage::Upload, Duration::from_millis(50))
            .await
            .unwrap()
            .is_none()
    );
    let mut seen = b.workers(Stage::Upload).await.unwrap();
    seen.sort_by(|x, y| x.name.cmp(&y.name));
    let seen: Vec<(&str, u64, bool)> = seen
        .iter()
        .map(|w| (w.name.as_str(), w.pending, w.idle < Duration::from_secs(10)))
        .collect();
    assert_eq!(seen, vec![("worker-a", 1, true), ("worker-b", 0, true)]);
    assert_eq!(a.workers(Stage::Download).await.unwrap(), vec![]);
    r.delete_all().await.unwrap();
}

#[tokio::test]
async fn a_dead_workers_message_is_taken_over_after_the_lease() {
    let Some((r, _keys)) = redis().await else {
        return;
    };
    let lease = Duration::from_millis(500);
    let a = RedisQueue::new(r.clone(), "worker-a", lease);
    let b = RedisQueue::new(r, "worker-b", lease);
    let job = JobId::new();
    a.enqueue(Stage::Download, job).await.unwrap();
    let held = a
        .claim(Stage::Download, Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    // Worker a renews while it works: b cannot take the message.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        a.renew(&held).await.unwrap();
    }
    assert!(
        b.claim(Stage::Download, Duration::from_millis(100))
            .await
            .unwrap()
            .is_none()
    );
    // Worker a dies (stops renewing): after the lease, b takes it over.
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let taken = b
        .claim(Stage::Download, Duration::from_secs(2))
        .await
        .unwrap()
        .expect("taken over");
    assert_eq!(taken.job_id, job);
    assert_eq!(message(&taken), message(&held), "the same message");
    assert_ne!(taken.receipt, held.receipt, "a claim of its own");
    b.ack(&taken).await.unwrap();
    assert_eq!(b.unacknowledged(Stage::Download).await.unwrap(), 0);
    assert_eq!(b.pending_for(Stage::Download, job).await.unwrap(), 0);
    // a's late ack of a message it lost changes nothing.
    assert!(matches!(a.ack(&held).await, Err(QueueError::LeaseLost)));
    assert_eq!(b.pending_for(Stage::Download, job).await.unwrap(), 0);
}

#[tokio::test]
async fn a_job_never_runs_a_stage_twice_at_once_and_duplicates_are_not_lost() {
    let Some((r, _keys)) = redis().await else {
        return;
    };
    let q = RedisQueue::new(r, "w", Duration::from_secs(30));
    let job = JobId::new();
    // Asked twice while its message waits: one message (it will run the stage).
    q.enqueue(Stage::Download, job).await.unwrap();
    q.enqueue(Stage::Download, job).await.unwrap();
    assert_eq!(q.pending_for(Stage::Download, job).await.unwrap(), 1);
    let first = q
        .claim(Stage::Download, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    // Asked again while it runs: a second message, run after the first.
    q.enqueue(Stage::Download, job).await.unwrap();
    assert!(
        q.claim(Stage::Download, Duration::from_millis(300))
            .await
            .unwrap()
            .is_none(),
        "the duplicate waits"
    );
    assert_eq!(q.pending_for(Stage::Download, job).await.unwrap(), 2);
    q.ack(&first).await.unwrap();
    let second = q
        .claim(Stage::Download, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the duplicate runs after");
    assert_eq!(second.job_id, job);
    q.ack(&second).await.unwrap();
    assert_eq!(q.pending_for(Stage::Download, job).await.unwrap(), 0);
    assert_eq!(q.dead_letters().await.unwrap(), 0);
}

#[tokio::test]
async fn dead_letters_are_counted() {
    let Some((r, _keys)) = redis().await else {
        return;
    };
    let q = RedisQueue::new(r, "w", Duration::from_secs(30));
    let job = JobId::new();
    q.enqueue(Stage::Upload, job).await.unwrap();
    let l = q
        .claim(Stage::Upload, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    q.dead_letter(&l, "storage_unreachable: no route")
        .await
        .unwrap();
    assert_eq!(q.dead_letters().await.unwrap(), 1);
    assert_eq!(q.pending_for(Stage::Upload, job).await.unwrap(), 0);
    assert_eq!(q.unacknowledged(Stage::Upload).await.unwrap(), 0);
}

#[tokio::test]
async fn a_second_consumer_never_runs_a_message_whose_lock_another_holds() {
    let Some((r, _keys)) = redis().await else {
        return;
    };
    // b gives up on silent workers sooner than a's lock lasts, so b's takeover finds the
    // job's lock still a's: the same message must not run twice at once.
    let a = RedisQueue::new(r.clone(), "worker-a", Duration::from_secs(10));
    let b = RedisQueue::new(r, "worker-b", Duration::from_millis(300));
    let job = JobId::new();
    a.enqueue(Stage::Download, job).await.unwrap();
    let held = a
        .claim(Stage::Download, Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        b.claim(Stage::Download, Duration::from_millis(1200))
            .await
            .unwrap(),
        None,
        "a still holds the job's stage lock"
    );
    // a is alive: its renewal keeps the job, and its ack settles the one message.
    a.renew(&held).await.unwrap();
    a.ack(&held).await.unwrap();
    assert_eq!(a.pending_for(Stage::Download, job).await.unwrap(), 0);
    assert_eq!(a.unacknowledged(Stage::Download).await.unwrap(), 0);
    assert_eq!(a.dead_letters().await.unwrap(), 0);
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_can_neither_renew_nor_settle_it() {
    let Some((r, _keys)) = redis().await else {
        return;
    };
    let lease = Duration::from_millis(500);
    let a = RedisQueue::new(r.clone(), "worker-a", lease);
    let b = RedisQueue::new(r, "worker-b", lease);
    let job = JobId::new();
    a.enqueue(Stage::Upload, job).await.unwrap();
    let held = a
        .claim(Stage::Upload, Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    // a is paused past its lease; b takes the message over.
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let taken = b
        .claim(Stage::Upload, Duration::from_secs(2))
        .await
        .unwrap()
        .expect("taken over");
    assert_eq!(message(&taken), message(&held));
    // a wakes up: its renewal says the lease is gone and does not take the message back.
    assert!(
        matches!(a.renew(&held).await, Err(QueueError::LeaseLost)),
        "a must learn it lost the lease"
    );
    b.renew(&taken).await.unwrap();
    // a's late settle neither acknowledges b's message nor frees b's lock.
    assert!(matches!(a.ack(&held).await, Err(QueueError::LeaseLost)));
    assert!(matches!(
        a.release(&held, Duration::ZERO).await,
        Err(QueueError::LeaseLost)
    ));
    assert_eq!(b.unacknowledged(Stage::Upload).await.unwrap(), 1);
    assert_eq!(b.pending_for(Stage::Upload, job).await.unwrap(), 1);
    b.renew(&taken).await.unwrap();
    b.ack(&taken).await.unwrap();
    assert_eq!(b.pending_for(Stage::Upload, job).await.unwrap(), 0);
    assert_eq!(b.unacknowledged(Stage::Upload).await.unwrap(), 0);
    // Once settled, the lease is nobody's.
    assert!(matches!(b.renew(&taken).await, Err(QueueError::LeaseLost)));
}

/// Descriptors this process has open (each Redis connection is one).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test]
async fn a_hub_and_its_connection_go_when_the_last_subscriber_leaves() {
    let Some((r, _keys)) = redis().await else {
        return;
    };
    let bus = RedisBus::new(r.clone());
    let before = open_fds();
    // Quiet jobs: nothing is ever published, so only leaving can end the hubs.
    let jobs: Vec<JobId> = (0..100).map(|_| JobId::new()).collect();
    let mut receivers = Vec::new();
    for _ in 0..2 {
        for job in &jobs {
            receivers.push(bus.subscribe(*job, &Replay::LiveOnly).await.unwrap());
        }
    }
    assert_eq!(bus.followed_jobs(), 100);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(open_fds() >= before + 100, "a connection per followed job");
    // Half of the subscribers leave: every hub still has one.
    receivers.truncate(100);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(bus.followed_jobs(), 100);
    drop(receivers);
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while bus.followed_jobs() > 0 || open_fds() > before + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} hubs and {} more descriptors left a second after every subscriber left",
            bus.followed_jobs(),
            open_fds().saturating_sub(before)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.delete_all().await.unwrap();
}
