//! The delivery stage: put each downloaded file into the storage the job names (local disk,
//! an S3 bucket, a Drive folder), record its SHA-256, free staging, complete the job.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ferry_domain::{ErrorCode, Job, JobError, JobStatus, Progress, StorageKey};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{StageHandler, StageOutcome};
use crate::lifecycle::{Lifecycle, MoveError};
use crate::ports::{
    EventKind, JobEvent, Lease, PutRequest, RepoError, Stage, Staging, StoreError, StoreResolver,
};

pub struct DeliverStage {
    pub lifecycle: Lifecycle,
    pub queue: Arc<dyn crate::ports::JobQueue>,
    pub staging: Arc<dyn Staging>,
    pub stores: Arc<dyn StoreResolver>,
    /// How often upload progress is published.
    pub tick: Duration,
}

/// A storage failure as the user sees it: a registered code and one sentence. The driver's
/// text (addresses, status lines, response bodies) goes to the log only.
fn store_outcome(job: &Job, e: StoreError) -> StageOutcome {
    tracing::warn!(job_id = %job.id, error = format!("{e:#}"), "delivery failed");
    let (code, message) = match &e {
        StoreError::Unreachable(_) => (
            ErrorCode::StorageUnreachable,
            "the storage could not be reached",
        ),
        StoreError::AuthFailed(_) => (
            ErrorCode::StorageAuthFailed,
            "the storage rejected the profile's credentials",
        ),
        StoreError::NotAllowed(_) => {
            return StageOutcome::Fail(JobError::new(
                ErrorCode::StorageEndpointNotAllowed,
                "the storage's address is not allowed on this server",
            ));
        }
        StoreError::NotFound | StoreError::Unexpected(_) => (
            ErrorCode::StorageError,
            "the storage answered with an error",
        ),
    };
    StageOutcome::Retry(JobError::new(code, message))
}

fn retry_db(e: impl std::fmt::Display) -> StageOutcome {
    StageOutcome::Retry(JobError::new(ErrorCode::DatabaseError, e.to_string()))
}

#[async_trait]
impl StageHandler for DeliverStage {
    fn stage(&self) -> Stage {
        Stage::Upload
    }

    async fn run(&self, lease: &Lease, shutdown: &CancellationToken) -> StageOutcome {
        let job = match self.lifecycle.repo.get(lease.job_id).await {
            Ok(job) => job,
            Err(RepoError::NotFound) => return self.free_staging(lease.job_id).await,
            Err(e) => return retry_db(e),
        };
        if job.purge_requested {
            return self.purge_once_stopped(job).await;
        }
        match job.status {
            JobStatus::Uploading => self.deliver(job, shutdown).await,
            // Cancelled during delivery: nothing delivered may stay.
            JobStatus::Cancelled => self.remove(&job, false).await,
            _ => StageOutcome::Done,
        }
    }
}

/// Why a put stopped before it finished.
enum Interrupted {
    /// The job left `uploading` (a cancel or purge): whatever the put still had in hand is
    /// dropped with it.
    Stopped,
}

impl DeliverStage {
    async fn deliver(&self, job: Job, shutdown: &CancellationToken) -> StageOutcome {
        let store = match self.stores.store(&job.owner, job.storage_profile).await {
            Ok(s) => s,
            Err(StoreError::NotFound) => {
                return StageOutcome::Fail(JobError::new(
                    ErrorCode::StorageProfileMissing,
                    "the job's storage profile no longer exists",
                ));
            }
            Err(e) => return store_outcome(&job, e),
        };
        if job.seed.is_some() {
            // Keep a copy to seed from before delivery moves the staged files.
            let paths: Result<Vec<_>, _> = job.selected_files().map(|f| f.safe_path()).collect();
            let paths = match paths {
                Ok(p) => p,
                Err(e) => {
                    return StageOutcome::Fail(JobError::new(
                        ErrorCode::TorrentUnsafePath,
                        e.to_string(),
                    ));
                }
            };
            if let Err(e) = self.staging.keep_for_seeding(job.id, &paths).await {
                tracing::warn!(job_id = %job.id, error = format!("{e:#}"), "could not keep a copy to seed from");
                return StageOutcome::Retry(JobError::new(
                    ErrorCode::StorageError,
                    "the copy to seed from could not be made",
                ));
            }
        }
        let total: u64 = job.selected_files().map(|f| f.size).sum();
        let mut done = 0u64;
        for file in job.selected_files() {
            if shutdown.is_cancelled() {
                return StageOutcome::Released;
            }
            let path = match file.safe_path() {
                Ok(p) => p,
                Err(e) => {
                    return StageOutcome::Fail(JobError::new(
                        ErrorCode::TorrentUnsafePath,
                        e.to_string(),
                    ));
                }
            };
            let key = StorageKey::for_file(&job.owner, job.id, &path);
            // Idempotent: a file delivered (and recorded) by an earlier, interrupted run is
            // not sent again.
            if file.sha256.is_some() {
                match store.size(&key).await {
                    Ok(Some(size)) if size == file.size => {
                        done += size;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => return store_outcome(&job, e),
                }
            }
            let source = self.staging.file(job.id, &path);
            let stored = {
                let sent = AtomicU64::new(0);
                let report = |n: u64| sent.store(n, Ordering::Relaxed);
                let put = store.put_file(PutRequest {
                    job: job.id,
                    key: &key,
                    source: &source,
                    size: file.size,
                    progress: &report,
                });
                self.with_progress(&job, put, done, total, &sent).await
            };
            let stored = match stored {
                Ok(s) => s,
                Err(Interrupted::Stopped) => return self.stopped(job.id).await,
            };
            let stored = match stored {
                Ok(s) => s,
                Err(StoreError::NotFound) => {
                    return StageOutcome::Fail(JobError::new(
                        ErrorCode::StagedDataMissing,
                        format!("the downloaded file {path} is missing from staging"),
                    ));
                }
                Err(e) => return store_outcome(&job, e),
            };
            if stored.size != file.size {
                return StageOutcome::Retry(JobError::new(
                    ErrorCode::StorageError,
                    format!(
                        "stored {} bytes of {key}, expected {}",
                        stored.size, file.size
                    ),
                ));
            }
            if let Err(e) = self
                .lifecycle
                .repo
                .record_digest(job.id, file.index, &stored.sha256)
                .await
            {
                return retry_db(e);
            }
            done += stored.size;
            self.publish(&job, done, total, 0).await;
        }
        self.complete(job).await
    }

    /// Runs `put`, publishing upload progress and checking the job's status every tick; a
    /// job that left `uploading` (cancelled, purge requested) stops the put at once, so
    /// nothing it still had in hand is written after the job's objects are removed.
    async fn with_progress<F, T>(
        &self,
        job: &Job,
        put: F,
        before: u64,
        total: u64,
        sent: &AtomicU64,
    ) -> Result<T, Interrupted>
    where
        F: std::future::Future<Output = T>,
    {
        tokio::pin!(put);
        let mut ticker = tokio::time::interval(self.tick.max(Duration::from_millis(50)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let started = Instant::now();
        loop {
            tokio::select! {
                out = &mut put => return Ok(out),
                _ = ticker.tick() => {
                    let now = sent.load(Ordering::Relaxed);
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    let rate = (now as f64 / secs) as u64;
                    self.publish(job, before + now, total, rate).await;
                    match self.lifecycle.repo.status(job.id).await {
                        Ok(JobStatus::Uploading) => {}
                        Ok(_) | Err(RepoError::NotFound) => return Err(Interrupted::Stopped),
                        Err(e) => tracing::warn!(job_id = %job.id, error = %e, "could not read the job's status"),
                    }
                }
            }
        }
    }

    async fn complete(&self, job: Job) -> StageOutcome {
        match self
            .lifecycle
            .advance(job.id, JobStatus::Uploading, JobStatus::Completed, None)
            .await
        {
            Ok(_) => {}
            // Cancelled (or purged) while we delivered: nothing we stored may stay behind.
            Err(MoveError::Repo(RepoError::Conflict { .. } | RepoError::NotFound)) => {
                return self.stopped(job.id).await;
            }
            Err(e) => return retry_db(e),
        }
        if let Err(e) = self.staging.discard(job.id).await {
            tracing::warn!(job_id = %job.id, error = %e, "could not free the staging area");
        }
        tracing::info!(job_id = %job.id, "job delivered");
        if job.seed.is_some() {
            match self
                .lifecycle
                .advance(job.id, JobStatus::Completed, JobStatus::Seeding, None)
                .await
            {
                Ok(_) => {
                    if let Err(e) = self.queue.enqueue(Stage::Seed, job.id).await {
                        tracing::error!(job_id = %job.id, error = %e, "could not queue seeding; recovery will");
                    }
                }
                // A purge requested meanwhile stops the job from seeding; its message
                // carries the purge out once this run ends.
                Err(e) => tracing::info!(job_id = %job.id, error = %e, "not seeding"),
            }
        }
        StageOutcome::Done
    }

    /// The job left `uploading` while this run delivered it: remove what it delivered
    /// (and the job, if its purge is pending).
    async fn stopped(&self, id: ferry_domain::JobId) -> StageOutcome {
        match self.lifecycle.repo.get(id).await {
            Ok(job) if job.purge_requested => self.purge_once_stopped(job).await,
            Ok(job) if job.status == JobStatus::Cancelled => self.remove(&job, false).await,
            Ok(_) => StageOutcome::Done,
            Err(RepoError::NotFound) => self.free_staging(id).await,
            Err(e) => retry_db(e),
        }
    }

    /// Carries out a pending purge once no stage runs the job: delivery is the last stage a
    /// job reaches and the one with the object stores. An uploading job is stopped here (this
    /// is the stage that holds it); a job another stage still holds is left to that stage,
    /// which hands the purge back here when it lets go.
    async fn purge_once_stopped(&self, job: Job) -> StageOutcome {
        let job = if job.status == JobStatus::Uploading {
            if let Err(outcome) = super::stop_for_purge(&self.lifecycle, &job).await {
                return outcome;
            }
            match self.lifecycle.repo.get(job.id).await {
                Ok(job) => job,
                Err(RepoError::NotFound) => return self.free_staging(job.id).await,
                Err(e) => return retry_db(e),
            }
        } else {
            job
        };
        if !job.status.is_terminal() {
            tracing::debug!(job_id = %job.id, status = %job.status, "purge waits for the stage that holds the job");
            return StageOutcome::Done;
        }
        self.remove(&job, true).await
    }

    /// Removes everything the job left: unfinished uploads, delivered objects, staged data,
    /// the seeding copy, and with `purge` the job itself, last (so a failure here is retried
    /// and recovery still finds the job).
    async fn remove(&self, job: &Job, purge: bool) -> StageOutcome {
        match self.stores.store(&job.owner, job.storage_profile).await {
            Ok(store) => {
                if let Err(e) = store.abort_uploads(job.id).await {
                    return store_outcome(job, e);
                }
                let prefix = StorageKey::job_prefix(&job.owner, job.id);
                if let Err(e) = store.delete_prefix(&prefix).await {
                    return store_outcome(job, e);
                }
            }
            // The profile is gone: there is nothing we can still reach to delete.
            Err(StoreError::NotFound) => {}
            Err(e) => return store_outcome(job, e),
        }
        if let Err(e) = self.staging.discard(job.id).await {
            return StageOutcome::Retry(JobError::new(ErrorCode::StorageError, format!("{e:#}")));
        }
        if let Err(e) = self.staging.discard_seed(job.id).await {
            return StageOutcome::Retry(JobError::new(ErrorCode::StorageError, format!("{e:#}")));
        }
        if !purge {
            tracing::info!(job_id = %job.id, "cancelled job's delivered objects removed");
            return StageOutcome::Done;
        }
        match self.lifecycle.repo.delete(job.id).await {
            Ok(()) | Err(RepoError::NotFound) => {
                tracing::info!(job_id = %job.id, "job purged");
                StageOutcome::Done
            }
            Err(e) => retry_db(e),
        }
    }

    /// A job that no longer exists: nothing of it may stay in staging.
    async fn free_staging(&self, id: ferry_domain::JobId) -> StageOutcome {
        if let Err(e) = self.staging.discard(id).await {
            tracing::warn!(job_id = %id, error = %e, "could not free the staging area");
        }
        if let Err(e) = self.staging.discard_seed(id).await {
            tracing::warn!(job_id = %id, error = %e, "could not free the seeding copy");
        }
        StageOutcome::Done
    }

    async fn publish(&self, job: &Job, done: u64, total: u64, rate: u64) {
        let mut progress = Progress::measured(done, total, rate);
        progress.upload_rate = rate;
        progress.download_rate = 0;
        let event = JobEvent {
            job_id: job.id,
            kind: EventKind::Progress,
            status: JobStatus::Uploading,
            progress,
            error: None,
            at: self.lifecycle.clock.now(),
        };
        if let Err(e) = self.lifecycle.bus.publish(&event).await {
            tracing::debug!(job_id = %job.id, error = %e, "could not publish progress");
        }
    }
}
