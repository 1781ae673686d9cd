//! The generic worker loop: claim → run the stage → settle, for any `StageHandler`.
//!
//! Everything about the queue's transport stays in its adapter; this loop only backs off
//! when the queue fails, keeps the lease alive while a long stage runs, and stops claiming
//! when told to shut down (the stage in hand finishes or is released).
//!
//! A stage runs only while its lease is confirmed: a run whose renewal is overdue (the
//! process was paused, or the queue is unreachable) is not polled until a renewal succeeds,
//! and one whose renewal says the lease is lost is dropped at once — another worker may run
//! the stage by then — without settling the message or writing anything for the job.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ferry_application::ports::{JobQueue, Lease, QueueError, Stage};
use ferry_application::{Recovery, StageHandler, StageOutcome, StageRunner};
use opentelemetry::KeyValue;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// How long one claim waits for work before checking for shutdown again.
const CLAIM_WAIT: Duration = Duration::from_secs(1);

/// Runs `concurrency` workers for `handler`'s stage until `shutdown` fires; returns once
/// every worker has settled the job it held. Held leases are renewed every `renew_every`
/// (a third of the queue's lease keeps a live worker's jobs its own); a stage is polled
/// only while its lease was confirmed within the last two of those periods.
pub async fn run_pool(
    queue: Arc<dyn JobQueue>,
    runner: Arc<StageRunner>,
    handler: Arc<dyn StageHandler>,
    concurrency: usize,
    renew_every: Duration,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    for n in 0..concurrency.max(1) {
        let (queue, runner, handler, shutdown) = (
            queue.clone(),
            runner.clone(),
            handler.clone(),
            shutdown.clone(),
        );
        let span = tracing::info_span!("worker", stage = handler.stage().as_str(), n);
        tracker.spawn(work(queue, runner, handler, renew_every, shutdown).instrument(span));
    }
    tracker.close();
    tracker.wait().await;
}

async fn work(
    queue: Arc<dyn JobQueue>,
    runner: Arc<StageRunner>,
    handler: Arc<dyn StageHandler>,
    renew_every: Duration,
    shutdown: CancellationToken,
) {
    let stage = handler.stage();
    let mut backoff = Duration::from_millis(250);
    while !shutdown.is_cancelled() {
        let claimed = tokio::select! {
            r = queue.claim(stage, CLAIM_WAIT) => r,
            () = shutdown.cancelled() => break,
        };
        let lease = match claimed {
            Ok(Some(lease)) => lease,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "could not claim work; backing off");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_millis(250);
        let span = tracing::info_span!("stage", job_id = %lease.job_id, attempt = lease.attempt);
        run_one(&*queue, &runner, &*handler, &lease, renew_every, &shutdown)
            .instrument(span)
            .await;
    }
}

/// How a stage run ended.
enum Ended {
    Finished(StageOutcome),
    /// The queue says the lease is gone: the run was dropped; settle and write nothing.
    LeaseLost,
    /// Shutdown came while the lease could not be confirmed: the run was dropped.
    Unconfirmed,
}

async fn run_one(
    queue: &dyn JobQueue,
    runner: &StageRunner,
    handler: &dyn StageHandler,
    lease: &Lease,
    renew_every: Duration,
    shutdown: &CancellationToken,
) {
    let started = Instant::now();
    let ended = drive(queue, handler, lease, renew_every, shutdown).await;
    let elapsed = started.elapsed();
    let outcome = match ended {
        Ended::Finished(outcome) => outcome,
        Ended::LeaseLost => {
            tracing::warn!(
                ?elapsed,
                "lost the lease (another worker may run this stage now): stage stopped, nothing written"
            );
            handler.abandon(lease).await;
            record(lease, "lease_lost", elapsed);
            return;
        }
        Ended::Unconfirmed => {
            tracing::warn!(
                ?elapsed,
                "stopping while the lease could not be confirmed: stage stopped, nothing written"
            );
            handler.abandon(lease).await;
            record(lease, "released", elapsed);
            // The queue refuses this if the lease is gone; otherwise the job runs again soon.
            if let Err(e) = queue.release(lease, Duration::ZERO).await {
                tracing::warn!(error = %e, "could not release the message; it is delivered again after the lease");
            }
            return;
        }
    };
    tracing::debug!(?outcome, ?elapsed, "stage ran");
    let label = label(lease, &outcome, runner);
    record(lease, label, elapsed);
    failed(lease, label, &outcome);
    match runner.settle(lease, outcome).await {
        Ok(()) => {}
        Err(QueueError::LeaseLost) => {
            tracing::warn!(
                "the lease was lost before the stage was settled; it runs again elsewhere"
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "could not settle the stage; it will be delivered again");
        }
    }
}

/// Runs the stage, renewing its lease every `renew_every`. The stage is polled only while
/// the lease was confirmed within `2 × renew_every` (the lease is three periods): a process
/// paused for longer, or cut off from the queue, must re-confirm it first, because the
/// queue may have handed the message to another worker by then. A renewal that reports the
/// lease lost ends the run at once, dropping the stage's future mid-await, so nothing it
/// would have written next is written.
async fn drive(
    queue: &dyn JobQueue,
    handler: &dyn StageHandler,
    lease: &Lease,
    renew_every: Duration,
    shutdown: &CancellationToken,
) -> Ended {
    let every = renew_every.max(Duration::from_millis(100));
    let run = handler.run(lease, shutdown);
    tokio::pin!(run);
    let mut confirmed = Instant::now();
    let mut next_renewal = confirmed + every;
    loop {
        let valid_until = confirmed + every * 2;
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(next_renewal) => {
                let asked = Instant::now();
                match queue.renew(lease).await {
                    Ok(()) => confirmed = asked,
                    Err(QueueError::LeaseLost) => return Ended::LeaseLost,
                    Err(e) => tracing::warn!(error = %e, "could not renew the lease"),
                }
                next_renewal = Instant::now() + every;
            }
            ended = std::future::poll_fn(|cx| fenced(cx, run.as_mut(), valid_until, shutdown)) => {
                return ended;
            }
        }
    }
}

/// Polls the stage if its lease is confirmed until `valid_until`; past that it stays
/// pending (the renewal, due by then, wakes the loop) unless shutdown asks to stop.
fn fenced(
    cx: &mut Context<'_>,
    run: std::pin::Pin<&mut impl std::future::Future<Output = StageOutcome>>,
    valid_until: Instant,
    shutdown: &CancellationToken,
) -> Poll<Ended> {
    // The clock, not a timer: after a pause the stage must not be polled even once before
    // the renewal has run, whichever wake-up the runtime delivers first.
    if Instant::now() < valid_until {
        return run.poll(cx).map(Ended::Finished);
    }
    if shutdown.is_cancelled() {
        return Poll::Ready(Ended::Unconfirmed);
    }
    Poll::Pending
}

fn label(lease: &Lease, outcome: &StageOutcome, runner: &StageRunner) -> &'static str {
    match outcome {
        StageOutcome::Done => "done",
        StageOutcome::Retry(_) if lease.attempt >= runner.policy.max_attempts => "dead_letter",
        StageOutcome::Retry(_) => "retry",
        StageOutcome::Fail(_) => "failed",
        StageOutcome::Released => "released",
        StageOutcome::Wait(_) => "waiting",
    }
}

/// Stage metrics: runs by outcome, durations, retries, dead letters and lost leases.
fn record(lease: &Lease, label: &'static str, elapsed: Duration) {
    let meter = ferry_observability::meter();
    let stage = KeyValue::new("stage", lease.stage.as_str());
    meter
        .u64_counter("ferry_stage_runs")
        .with_description("Stage runs by outcome")
        .build()
        .add(1, &[stage.clone(), KeyValue::new("outcome", label)]);
    meter
        .f64_histogram("ferry_stage_duration")
        .with_unit("s")
        .with_description("Time a stage run took")
        .build()
        .record(elapsed.as_secs_f64(), &[stage]);
}

/// Jobs failed, by stage and error code (a failure, or retries run out). The codes are
/// the registry's (a closed set), so no job can add a series.
fn failed(lease: &Lease, label: &'static str, outcome: &StageOutcome) {
    let (StageOutcome::Fail(error) | StageOutcome::Retry(error)) = outcome else {
        return;
    };
    if label != "failed" && label != "dead_letter" {
        return;
    }
    let code = ferry_domain::ErrorCode::parse(&error.code).map_or("other", |c| c.as_str());
    ferry_observability::meter()
        .u64_counter("ferry_job_failures")
        .with_description("Jobs failed, by stage and error code")
        .build()
        .add(
            1,
            &[
                KeyValue::new("stage", lease.stage.as_str()),
                KeyValue::new("code", code),
            ],
        );
}

/// Every `every`, queues unfinished jobs that lost their message and records queue depths,
/// until `shutdown`.
pub async fn reconcile(
    recovery: Recovery,
    queue: Arc<dyn JobQueue>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let depth = ferry_observability::meter()
        .u64_gauge("ferry_queue_depth")
        .with_description("Messages waiting per stage")
        .build();
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = recovery.requeue_orphans().await {
            tracing::warn!(error = %e, "could not reconcile unfinished jobs");
        }
        for stage in Stage::ALL {
            if let Ok(n) = queue.depth(stage).await {
                depth.record(n, &[KeyValue::new("stage", stage.as_str())]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ferry_application::ports::{JobRepository, Stage};
    use ferry_application::stages::{DeliverStage, DownloadSettings, DownloadStage};
    use ferry_application::testing::{Fakes, sample_metadata};
    use ferry_application::{Jobs, RetryPolicy, Submission};
    use ferry_domain::{JobId, JobStatus, OwnerId, TorrentLimits};

    /// A stage that "writes" (counts) every 10 ms until shutdown.
    #[derive(Default)]
    struct Ticking {
        writes: std::sync::atomic::AtomicU64,
        abandoned: std::sync::atomic::AtomicBool,
    }

    impl Ticking {
        fn writes(&self) -> u64 {
            self.writes.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[async_trait::async_trait]
    impl StageHandler for Ticking {
        fn stage(&self) -> Stage {
            Stage::Upload
        }

        async fn run(&self, _lease: &Lease, shutdown: &CancellationToken) -> StageOutcome {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(10)) => {}
                    () = shutdown.cancelled() => return StageOutcome::Released,
                }
                self.writes
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }

        async fn abandon(&self, _lease: &Lease) {
            self.abandoned
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The fake queue, with renewals failing while `down` is set.
    #[derive(Default)]
    struct Flaky {
        inner: ferry_application::testing::MemoryQueue,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl JobQueue for Flaky {
        async fn enqueue(&self, stage: Stage, job_id: JobId) -> Result<(), QueueError> {
            self.inner.enqueue(stage, job_id).await
        }
        async fn claim(&self, stage: Stage, wait: Duration) -> Result<Option<Lease>, QueueError> {
            self.inner.claim(stage, wait).await
        }
        async fn ack(&self, lease: &Lease) -> Result<(), QueueError> {
            self.inner.ack(lease).await
        }
        async fn retry_later(&self, lease: &Lease, delay: Duration) -> Result<(), QueueError> {
            self.inner.retry_later(lease, delay).await
        }
        async fn release(&self, lease: &Lease, after: Duration) -> Result<(), QueueError> {
            self.inner.release(lease, after).await
        }
        async fn renew(&self, lease: &Lease) -> Result<(), QueueError> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(QueueError::Unavailable("down".into()));
            }
            self.inner.renew(lease).await
        }
        async fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<(), QueueError> {
            self.inner.dead_letter(lease, reason).await
        }
        async fn holds(&self, stage: Stage, job_id: JobId) -> Result<bool, QueueError> {
            self.inner.holds(stage, job_id).await
        }
        async fn depth(&self, stage: Stage) -> Result<u64, QueueError> {
            self.inner.depth(stage).await
        }
    }

    fn runner(queue: Arc<dyn JobQueue>) -> StageRunner {
        StageRunner {
            lifecycle: Fakes::new().lifecycle(),
            queue,
            policy: RetryPolicy::default(),
        }
    }

    #[tokio::test]
    async fn a_stage_is_not_run_while_its_lease_cannot_be_confirmed() {
        let queue = Arc::new(Flaky::default());
        queue.enqueue(Stage::Upload, JobId::new()).await.unwrap();
        let lease = queue
            .claim(Stage::Upload, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        let stage = Arc::new(Ticking::default());
        let shutdown = CancellationToken::new();
        let run = tokio::spawn({
            let (queue, stage, shutdown, lease) = (
                queue.clone(),
                stage.clone(),
                shutdown.clone(),
                lease.clone(),
            );
            async move {
                let runner = runner(queue.clone());
                let every = Duration::from_millis(50);
                run_one(&*queue, &runner, &*stage, &lease, every, &shutdown).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(stage.writes() > 5, "runs while renewed");
        // The queue cannot be reached: two renewal periods on, the stage is held still.
        queue.down.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let held = stage.writes();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(stage.writes(), held, "not polled without a confirmed lease");
        // Confirmed again: it carries on.
        queue.down.store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(stage.writes() > held, "runs again once renewed");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(queue.inner.waiting(Stage::Upload).len(), 1, "released");
    }

    #[tokio::test]
    async fn a_lost_lease_stops_the_stage_at_once_and_settles_nothing() {
        let queue = Arc::new(Flaky::default());
        let job = JobId::new();
        queue.enqueue(Stage::Upload, job).await.unwrap();
        let lease = queue
            .claim(Stage::Upload, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        let stage = Arc::new(Ticking::default());
        let run = tokio::spawn({
            let (queue, stage, lease) = (queue.clone(), stage.clone(), lease.clone());
            async move {
                let runner = runner(queue.clone());
                let every = Duration::from_millis(50);
                let shutdown = CancellationToken::new();
                run_one(&*queue, &runner, &*stage, &lease, every, &shutdown).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Someone else settles the message (as a worker that took it over would).
        queue.inner.ack(&lease).await.unwrap();
        queue.enqueue(Stage::Upload, job).await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), run)
            .await
            .expect("the run ends at the next renewal")
            .unwrap();
        let after = stage.writes();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(stage.writes(), after, "nothing runs after the loss");
        assert!(stage.abandoned.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(
            queue.inner.waiting(Stage::Upload),
            vec![job],
            "only the new owner's message: nothing released, retried or acked"
        );
        assert!(queue.inner.dead_letters().is_empty());
    }

    #[tokio::test]
    async fn pools_drive_jobs_to_completion_and_stop_on_shutdown() {
        let f = Fakes::new();
        let lifecycle = f.lifecycle();
        let jobs = Jobs {
            lifecycle: lifecycle.clone(),
            queue: f.queue.clone(),
            inspector: f.engine.clone(),
            profiles: f.profiles.clone(),
            stores: f.resolver.clone(),
            fetcher: f.fetcher.clone(),
            limits: TorrentLimits::default(),
            torrent_addresses: f.addresses.clone(),
            blocklist: std::sync::Arc::default(),
            live: None,
        };
        let runner = Arc::new(StageRunner {
            lifecycle: lifecycle.clone(),
            queue: f.queue.clone(),
            policy: RetryPolicy::default(),
        });
        let download = Arc::new(DownloadStage {
            lifecycle: lifecycle.clone(),
            queue: f.queue.clone(),
            engine: f.engine.clone(),
            staging: f.engine.clone(),
            limits: TorrentLimits::default(),
            settings: DownloadSettings {
                tick: Duration::from_millis(5),
                ..Default::default()
            },
        });
        let deliver = Arc::new(DeliverStage {
            queue: f.queue.clone(),
            lifecycle,
            staging: f.engine.clone(),
            stores: f.resolver.clone(),
            tick: Duration::from_millis(5),
        });
        let mut ids = Vec::new();
        for seed in 1..=5u8 {
            let meta = sample_metadata(seed, &[10, 20]);
            f.engine.register(meta.clone());
            let job = jobs
                .submit(
                    OwnerId::local(),
                    Submission::Torrent(meta.metainfo.clone()),
                    None,
                    None,
                )
                .await
                .unwrap();
            ids.push(job.id);
        }
        let shutdown = CancellationToken::new();
        let pools = tokio::spawn({
            let (q, r, s) = (f.queue.clone(), runner.clone(), shutdown.clone());
            async move {
                tokio::join!(
                    run_pool(
                        q.clone(),
                        r.clone(),
                        download,
                        2,
                        Duration::from_secs(1),
                        s.clone()
                    ),
                    run_pool(q, r, deliver, 1, Duration::from_secs(1), s),
                );
            }
        });
        for id in &ids {
            loop {
                if f.repo.get(*id).await.unwrap().status == JobStatus::Completed {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        assert_eq!(f.store.keys().len(), 10);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), pools)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f.queue.waiting(Stage::Download), vec![]);
    }
}
