//! Stages run by workers: the contract between the generic worker loop and a stage, the
//! retry policy that settles a stage's outcome with the queue, and the plumbing every stage
//! shares (its control flow, [`Flow`], and its progress beat, [`Ticker`]).

mod deliver;
mod download;
mod fetch;
mod seed;
mod ticker;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_domain::{ErrorCode, Job, JobError, JobId, JobStatus};
use tokio_util::sync::CancellationToken;

pub use deliver::DeliverStage;
pub use download::{DownloadSettings, DownloadStage};
pub use fetch::{FetchStage, fetch_outcome};
pub use seed::SeedStage;
pub(crate) use ticker::{Observed, Ticker};

use crate::lifecycle::{Lifecycle, MoveError};
use crate::ports::{JobQueue, Lease, QueueError, RepoError, Stage};

/// How a stage run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StageOutcome {
    /// Nothing more to do for this message (the stage finished, or the job no longer needs it).
    Done,
    /// A transient failure: run again later, up to the retry policy's limit.
    Retry(JobError),
    /// A permanent failure: the job fails with this error.
    Fail(JobError),
    /// The worker is stopping: give the message back untouched.
    Released,
    /// Something another job holds stands in the way (its run of the same torrent): run
    /// again after a while, without counting an attempt.
    Wait(JobError),
}

#[async_trait]
pub trait StageHandler: Send + Sync + 'static {
    fn stage(&self) -> Stage;

    /// Runs the stage for `lease.job_id`. Must be idempotent: the same message can be
    /// delivered again after a crash. Returns `Released` soon after `shutdown` fires.
    ///
    /// The worker drops the run at any await point when its lease is lost (another worker
    /// may run the stage by then), so that nothing more is written for the job; it then
    /// calls [`abandon`](Self::abandon).
    async fn run(&self, lease: &Lease, shutdown: &CancellationToken) -> StageOutcome;

    /// A run of this lease was dropped because the lease was lost: free what this process
    /// still holds for the job (a torrent in the engine), writing nothing about the job.
    async fn abandon(&self, _lease: &Lease) {}
}

/// Retries with exponential backoff: `base · 2^(attempt-1)`, capped at `max_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Applies a stage's outcome: ack, release, retry with backoff, or fail the job and
/// dead-letter the message once retries are exhausted.
pub struct StageRunner {
    pub lifecycle: Lifecycle,
    pub queue: Arc<dyn JobQueue>,
    pub policy: RetryPolicy,
}

impl StageRunner {
    /// # Errors
    /// When the queue cannot be told; the message is then delivered again later.
    pub async fn settle(&self, lease: &Lease, outcome: StageOutcome) -> Result<(), QueueError> {
        let id = lease.job_id;
        match outcome {
            StageOutcome::Done => self.queue.ack(lease).await,
            StageOutcome::Released => self.queue.release(lease, Duration::ZERO).await,
            StageOutcome::Wait(reason) => {
                let after = self.policy.max_delay;
                tracing::info!(job_id = %id, ?after, code = %reason.code, message = %reason.message, "stage waits for another job");
                self.queue.release(lease, after).await
            }
            StageOutcome::Fail(error) => {
                tracing::warn!(job_id = %id, code = %error.code, message = %error.message, "stage failed permanently");
                self.fail_job(lease, error).await;
                self.queue.ack(lease).await
            }
            StageOutcome::Retry(error) if lease.attempt >= self.policy.max_attempts => {
                tracing::warn!(job_id = %id, attempt = lease.attempt, code = %error.code, "retries exhausted");
                let reason = format!("{}: {}", error.code, error.message);
                // The dead letter first: whoever sees the job failed finds its dead letter.
                // (A crash in between leaves an unfinished job, which recovery queues again.)
                self.queue.dead_letter(lease, &reason).await?;
                self.fail_job(lease, error).await;
                Ok(())
            }
            StageOutcome::Retry(error) => {
                let delay = self.policy.delay_after(lease.attempt);
                tracing::info!(job_id = %id, attempt = lease.attempt, ?delay, code = %error.code, message = %error.message, "stage will be retried");
                if let Err(e) = self
                    .lifecycle
                    .repo
                    .record_attempt(id, lease.attempt, Some(&error))
                    .await
                {
                    tracing::warn!(job_id = %id, error = %e, "could not record the attempt");
                }
                self.queue.retry_later(lease, delay).await
            }
        }
    }

    /// Marks the job failed with `error`; a seeding job becomes completed instead (its files
    /// are delivered) and its seed stage is queued once more to free the seeding copy.
    async fn fail_job(&self, lease: &Lease, error: JobError) {
        let id = lease.job_id;
        for _ in 0..5 {
            let status = match self.lifecycle.repo.status(id).await {
                Ok(s) => s,
                Err(RepoError::NotFound) => return,
                Err(e) => {
                    tracing::error!(job_id = %id, error = %e, "could not read the job to fail it");
                    return;
                }
            };
            if status.is_terminal() {
                return;
            }
            if status == JobStatus::Seeding {
                match self
                    .lifecycle
                    .advance(id, status, JobStatus::Completed, None)
                    .await
                {
                    Ok(_) => {
                        tracing::warn!(job_id = %id, code = %error.code, message = %error.message, "seeding stopped by a failure; the job stays completed");
                        if let Err(e) = self.queue.enqueue(Stage::Seed, id).await {
                            tracing::error!(job_id = %id, error = %e, "could not queue the seed stage to free the seeding copy");
                        }
                        return;
                    }
                    Err(MoveError::Repo(RepoError::Conflict { .. })) => continue,
                    Err(e) => {
                        tracing::error!(job_id = %id, error = %e, "could not complete the job");
                        return;
                    }
                }
            }
            if let Err(e) = self
                .lifecycle
                .repo
                .record_attempt(id, lease.attempt, Some(&error))
                .await
            {
                tracing::warn!(job_id = %id, error = %e, "could not record the attempt");
            }
            match self
                .lifecycle
                .advance(id, status, JobStatus::Failed, Some(error.clone()))
                .await
            {
                Ok(_) => return,
                Err(MoveError::Repo(RepoError::Conflict { .. })) => continue,
                Err(e) => {
                    tracing::error!(job_id = %id, error = %e, "could not mark the job failed");
                    return;
                }
            }
        }
    }
}

impl StageOutcome {
    /// A transient failure with `code`.
    pub(crate) fn retry(code: ErrorCode, e: impl std::fmt::Display) -> Self {
        Self::Retry(JobError::new(code, e.to_string()))
    }

    /// A permanent failure with `code`.
    pub(crate) fn fail(code: ErrorCode, e: impl std::fmt::Display) -> Self {
        Self::Fail(JobError::new(code, e.to_string()))
    }
}

/// A stage's control flow: `Err` ends the run at once with its outcome, so a failed step is
/// `?` rather than a `match` that returns. `Ok` is the outcome of a run that went its whole way.
pub(crate) type Flow<T = StageOutcome> = Result<T, StageOutcome>;

/// The outcome of a run, however it ended.
pub(crate) fn settled(flow: Flow) -> StageOutcome {
    flow.unwrap_or_else(|outcome| outcome)
}

/// A database failure the stage did not branch on: try again later.
impl From<RepoError> for StageOutcome {
    fn from(e: RepoError) -> Self {
        Self::retry(ErrorCode::DatabaseError, e)
    }
}

/// A status change that failed in a way the stage did not branch on: try again later.
impl From<MoveError> for StageOutcome {
    fn from(e: MoveError) -> Self {
        Self::retry(ErrorCode::DatabaseError, e)
    }
}

/// A queue failure: try again later.
impl From<QueueError> for StageOutcome {
    fn from(e: QueueError) -> Self {
        Self::retry(ErrorCode::QueueError, e)
    }
}

/// Whether an error (or any error it wraps) is a full disk: no space left (`ENOSPC`) or the
/// disk quota reached (`EDQUOT`), by the I/O error's kind only, never by text (a storage
/// service's message or a file name could say anything).
pub(crate) fn is_disk_full(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        })
    })
}

/// Whether the BitTorrent engine's error, which arrives as text (its chain joined by `: `),
/// ends in the operating system's full-disk error. Only the end counts: the text before it
/// names the torrent's file, which the torrent's author chose.
pub(crate) fn engine_says_disk_full(text: &str) -> bool {
    let text = text.trim_end();
    text.ends_with("(os error 28)") || text.ends_with("(os error 122)")
}

/// A full disk fails the job with `disk_full`: trying again fills it again, so an operator
/// (or the user) frees space first, then retries the job. The error's text (paths) goes to
/// the log only.
pub(crate) fn disk_full(e: impl std::fmt::Display) -> StageOutcome {
    tracing::warn!(error = %e, "no space left on a disk the job writes to");
    StageOutcome::fail(
        ErrorCode::DiskFull,
        "the disk the job's data is written to is full: free space, then retry the job",
    )
}

/// A staging failure (a file that cannot be moved, linked or removed): try again later; a
/// full disk fails the job.
pub(crate) fn staging_retry(e: anyhow::Error) -> StageOutcome {
    if is_disk_full(e.as_ref()) {
        return disk_full(format!("{e:#}"));
    }
    StageOutcome::retry(ErrorCode::StorageError, format!("{e:#}"))
}

/// A repository answer with `NotFound` as `None`, for stages to which a vanished job is news,
/// not a failure.
pub(crate) fn found<T>(result: Result<T, RepoError>) -> Result<Option<T>, RepoError> {
    match result {
        Ok(t) => Ok(Some(t)),
        Err(RepoError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// After a stage has let go of a stopped job: if the job's purge is pending, delivery (which
/// has the object stores) is asked to carry it out. Every stage that holds a job ends with
/// this, so a purge always reaches delivery after the stage that ran the job stopped, and
/// the row is deleted last.
pub(crate) async fn hand_over_purge(
    lifecycle: &Lifecycle,
    queue: &dyn JobQueue,
    id: JobId,
) -> Flow {
    if found(lifecycle.repo.get(id).await)?.is_some_and(|job| job.purge_requested) {
        queue.enqueue(Stage::Upload, id).await?;
    }
    Ok(StageOutcome::Done)
}

/// Stops an unfinished job whose purge is pending (the request was interrupted before it
/// stopped the job) the way the request would have: cancelled, or completed if it seeds.
/// A conflict means someone else moved it; the caller re-reads.
pub(crate) async fn stop_for_purge(lifecycle: &Lifecycle, job: &Job) -> Flow<()> {
    let to = if job.status == JobStatus::Seeding {
        JobStatus::Completed
    } else {
        JobStatus::Cancelled
    };
    match lifecycle.advance(job.id, job.status, to, None).await {
        Ok(_) | Err(MoveError::Repo(RepoError::Conflict { .. })) => Ok(()),
        Err(MoveError::Repo(RepoError::NotFound)) => Err(StageOutcome::Done),
        Err(e) => Err(e.into()),
    }
}

/// A job whose purge is pending and that has not reached delivery (queued, resolving,
/// downloading or paused) is stopped for the purge; `true` when it was, and the caller
/// re-reads it.
pub(crate) async fn stop_if_purging_unfinished(lifecycle: &Lifecycle, job: &Job) -> Flow<bool> {
    let unfinished = matches!(
        job.status,
        JobStatus::Queued | JobStatus::Resolving | JobStatus::Downloading | JobStatus::Paused
    );
    if !(job.purge_requested && unfinished) {
        return Ok(false);
    }
    stop_for_purge(lifecycle, job).await?;
    Ok(true)
}

/// Applies the job's speed limits to its running torrent when the user changed them
/// (`applied`: what the engine runs it under). A failure is logged, and tried again at the
/// next tick.
pub(crate) async fn follow_limits(
    engine: &dyn crate::ports::TorrentEngine,
    job_id: ferry_domain::JobId,
    applied: &mut ferry_domain::SpeedLimits,
    wanted: ferry_domain::SpeedLimits,
) {
    if *applied == wanted {
        return;
    }
    match engine.set_limits(job_id, wanted).await {
        Ok(()) => {
            tracing::info!(job_id = %job_id, limits = ?wanted, "speed limits changed");
            *applied = wanted;
        }
        Err(e) => tracing::warn!(job_id = %job_id, error = %e, "could not change the speed limits"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
        };
        let delays: Vec<u64> = (1..=6).map(|a| p.delay_after(a).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(p.delay_after(u32::MAX), Duration::from_secs(10));
    }
}

#[cfg(test)]
mod disk_full_tests {
    use super::{engine_says_disk_full, is_disk_full};

    #[test]
    fn a_full_disk_is_told_by_the_error_kind_and_the_engine_texts_end_only() {
        let full = std::io::Error::from_raw_os_error(28);
        assert!(is_disk_full(&full));
        let wrapped = anyhow::Error::new(full).context("writing the staged file");
        assert!(is_disk_full(wrapped.as_ref()));
        // A storage service's or a peer's text is not a full disk here, whatever it says.
        let said = anyhow::anyhow!("No space left on device (os error 28)");
        assert!(!is_disk_full(said.as_ref()));
        assert!(!is_disk_full(&std::io::Error::other(
            "No space left on device"
        )));

        assert!(engine_says_disk_full(
            "error writing to file 0 (\"a.bin\"): No space left on device (os error 28)"
        ));
        assert!(engine_says_disk_full(
            "x: Disk quota exceeded (os error 122)\n"
        ));
        // A file named after the message does not make another error a full disk.
        assert!(!engine_says_disk_full(
            "error writing to file 0 (\"No space left on device (os error 28)\"): Input/output error (os error 5)"
        ));
    }
}
