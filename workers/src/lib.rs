//! The generic worker loop: claim → run the stage → settle, for any `StageHandler`.
//!
//! Everything about the queue's transport stays in its adapter; this loop only backs off
//! when the queue fails, keeps the lease alive while a long stage runs, and stops claiming
//! when told to shut down (the stage in hand finishes or is released).

use std::sync::Arc;
use std::time::Duration;

use ferry_application::ports::{JobQueue, Lease, Stage};
use ferry_application::{Recovery, StageHandler, StageOutcome, StageRunner};
use opentelemetry::KeyValue;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// How long one claim waits for work before checking for shutdown again.
const CLAIM_WAIT: Duration = Duration::from_secs(1);

/// Runs `concurrency` workers for `handler`'s stage until `shutdown` fires; returns once
/// every worker has settled the job it held. Held leases are renewed every `renew_every`
/// (a third of the queue's lease keeps a live worker's jobs its own).
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

async fn run_one(
    queue: &dyn JobQueue,
    runner: &StageRunner,
    handler: &dyn StageHandler,
    lease: &Lease,
    renew_every: Duration,
    shutdown: &CancellationToken,
) {
    let started = tokio::time::Instant::now();
    let outcome = {
        let run = handler.run(lease, shutdown);
        tokio::pin!(run);
        let mut renew = tokio::time::interval(renew_every.max(Duration::from_millis(100)));
        renew.tick().await;
        loop {
            tokio::select! {
                outcome = &mut run => break outcome,
                _ = renew.tick() => {
                    if let Err(e) = queue.renew(lease).await {
                        tracing::warn!(error = %e, "could not renew the lease");
                    }
                }
            }
        }
    };
    let elapsed = started.elapsed();
    tracing::debug!(?outcome, ?elapsed, "stage ran");
    record(lease, &outcome, elapsed, runner);
    if let Err(e) = runner.settle(lease, outcome).await {
        tracing::error!(error = %e, "could not settle the stage; it will be delivered again");
    }
}

/// Stage metrics: runs by outcome, durations, retries and dead letters.
fn record(lease: &Lease, outcome: &StageOutcome, elapsed: Duration, runner: &StageRunner) {
    let meter = ferry_observability::meter();
    let stage = KeyValue::new("stage", lease.stage.as_str());
    let label = match outcome {
        StageOutcome::Done => "done",
        StageOutcome::Retry(_) if lease.attempt >= runner.policy.max_attempts => "dead_letter",
        StageOutcome::Retry(_) => "retry",
        StageOutcome::Fail(_) => "failed",
        StageOutcome::Released => "released",
    };
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
    use ferry_domain::{JobStatus, OwnerId, TorrentLimits};

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
