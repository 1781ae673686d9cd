//! The delivery stage: put each downloaded file into the storage the job names (local disk,
//! an S3 bucket, a Drive folder), record its SHA-256, free staging, complete the job.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ferry_domain::{ErrorCode, Job, JobId, JobStatus, Progress, StorageKey};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Flow, Observed, StageHandler, StageOutcome, Ticker, found};
use crate::lifecycle::{Lifecycle, MoveError};
use crate::ports::{
    JobQueue, Lease, PutRequest, RepoError, Stage, Staging, StoreError, StoreResolver,
};

pub struct DeliverStage {
    pub lifecycle: Lifecycle,
    pub queue: Arc<dyn JobQueue>,
    pub staging: Arc<dyn Staging>,
    pub stores: Arc<dyn StoreResolver>,
    /// How often upload progress is published.
    pub tick: Duration,
}

/// A storage failure as the user sees it: a registered code and one sentence. The driver's
/// text (addresses, status lines, response bodies) goes to the log only.
/// A full disk fails the job with `disk_full`.
fn store_outcome(job: &Job, e: StoreError) -> StageOutcome {
    if let StoreError::Unexpected(inner) = &e
        && super::is_disk_full(inner.as_ref())
    {
        tracing::warn!(job_id = %job.id, error = format!("{e:#}"), "delivery failed");
        return super::disk_full(format!("{inner:#}"));
    }
    storage_failure(job, e)
}

/// [`store_outcome`] without the full disk, for removing what a stopped job left: there a
/// full disk is retried like any storage error (the job is already terminal, and failing it
/// would drop the clean-up).
fn storage_failure(job: &Job, e: StoreError) -> StageOutcome {
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
            return StageOutcome::fail(
                ErrorCode::StorageEndpointNotAllowed,
                "the storage's address is not allowed on this server",
            );
        }
        // Neither heals by itself: an operator (or the user) has to act, then retry the job.
        StoreError::NotConfigured(_) => {
            return StageOutcome::fail(
                ErrorCode::SharedDirUnset,
                "folder profiles are not available: this server has no shared volume (storage.shared_dir)",
            );
        }
        StoreError::FolderRefused(_) => {
            return StageOutcome::fail(
                ErrorCode::StorageFolderNotAllowed,
                "the profile's folder leads outside your area of the shared volume, or a file stands in its way",
            );
        }
        StoreError::NotFound | StoreError::Unexpected(_) => (
            ErrorCode::StorageError,
            "the storage answered with an error",
        ),
    };
    StageOutcome::retry(code, message)
}

/// Upload progress: `done` of `total` bytes sent, at `rate`.
fn upload_progress(done: u64, total: u64, rate: u64) -> Progress {
    let mut progress = Progress::measured(done, total, rate);
    progress.upload_rate = rate;
    progress.download_rate = 0;
    progress
}

#[async_trait]
impl StageHandler for DeliverStage {
    fn stage(&self) -> Stage {
        Stage::Upload
    }

    async fn run(&self, lease: &Lease, shutdown: &CancellationToken) -> StageOutcome {
        super::settled(self.drive(lease.job_id, shutdown).await)
    }
}

/// Why a put stopped before it finished.
enum Interrupted {
    /// The job left `uploading` (a cancel or purge): whatever the put still had in hand is
    /// dropped with it.
    Stopped,
}

impl DeliverStage {
    async fn drive(&self, id: JobId, shutdown: &CancellationToken) -> Flow {
        let Some(job) = found(self.lifecycle.repo.get(id).await)? else {
            return Ok(self.free_staging(id).await);
        };
        if job.purge_requested {
            return self.purge_once_stopped(job).await;
        }
        match job.status {
            JobStatus::Uploading => self.deliver(job, shutdown).await,
            // Cancelled during delivery: nothing delivered may stay.
            JobStatus::Cancelled => self.remove(&job, false).await,
            _ => Ok(StageOutcome::Done),
        }
    }

    async fn deliver(&self, job: Job, shutdown: &CancellationToken) -> Flow {
        let store = match self.stores.store(&job.owner, job.storage_profile).await {
            Ok(s) => s,
            Err(StoreError::NotFound) => {
                return Err(StageOutcome::fail(
                    ErrorCode::StorageProfileMissing,
                    "the job's storage profile no longer exists",
                ));
            }
            Err(e) => return Err(store_outcome(&job, e)),
        };
        tracing::info!(job_id = %job.id, "delivery running");
        if job.seed.is_some() {
            // Keep a copy to seed from before delivery moves the staged files.
            let paths = job
                .selected_files()
                .map(|f| f.safe_path())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StageOutcome::fail(ErrorCode::TorrentUnsafePath, e))?;
            if let Err(e) = self.staging.keep_for_seeding(job.id, &paths).await {
                tracing::warn!(job_id = %job.id, error = format!("{e:#}"), "could not keep a copy to seed from");
                if super::is_disk_full(e.as_ref()) {
                    return Err(super::disk_full(format!("{e:#}")));
                }
                return Err(StageOutcome::retry(
                    ErrorCode::StorageError,
                    "the copy to seed from could not be made",
                ));
            }
        }
        let total: u64 = job.selected_files().map(|f| f.size).sum();
        let mut done = 0u64;
        let mut ticker = Ticker::new(
            &self.lifecycle,
            &job,
            JobStatus::Uploading,
            self.tick.max(Duration::from_millis(50)),
        );
        for file in job.selected_files() {
            if shutdown.is_cancelled() {
                return Err(StageOutcome::Released);
            }
            let path = file
                .safe_path()
                .map_err(|e| StageOutcome::fail(ErrorCode::TorrentUnsafePath, e))?;
            let key = StorageKey::for_file(&job.owner, job.id, &path);
            // Idempotent: a file delivered (and recorded) by an earlier, interrupted run is
            // not sent again.
            if file.sha256.is_some() {
                let size = store.size(&key).await.map_err(|e| store_outcome(&job, e))?;
                if size == Some(file.size) {
                    done += file.size;
                    continue;
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
                self.with_progress(&mut ticker, put, done, total, &sent)
                    .await
            };
            let stored = match stored {
                Ok(Ok(s)) => s,
                Err(Interrupted::Stopped) => return self.stopped(job.id).await,
                Ok(Err(StoreError::NotFound)) => {
                    return Err(StageOutcome::fail(
                        ErrorCode::StagedDataMissing,
                        format!("the downloaded file {path} is missing from staging"),
                    ));
                }
                Ok(Err(e)) => return Err(store_outcome(&job, e)),
            };
            if stored.size != file.size {
                return Err(StageOutcome::retry(
                    ErrorCode::StorageError,
                    format!(
                        "stored {} bytes of {key}, expected {}",
                        stored.size, file.size
                    ),
                ));
            }
            self.lifecycle
                .repo
                .record_digest(job.id, file.index, &stored.sha256)
                .await?;
            done += stored.size;
            ticker.report(upload_progress(done, total, 0)).await;
        }
        self.complete(job).await
    }

    /// Runs `put`, publishing upload progress and checking the job's status every tick; a
    /// job that left `uploading` (cancelled, purge requested) stops the put at once, so
    /// nothing it still had in hand is written after the job's objects are removed.
    async fn with_progress<F, T>(
        &self,
        ticker: &mut Ticker<'_>,
        put: F,
        before: u64,
        total: u64,
        sent: &AtomicU64,
    ) -> Result<T, Interrupted>
    where
        F: std::future::Future<Output = T>,
    {
        tokio::pin!(put);
        ticker.restart();
        let started = Instant::now();
        loop {
            tokio::select! {
                out = &mut put => return Ok(out),
                () = ticker.tick() => {
                    let now = sent.load(Ordering::Relaxed);
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    let rate = (now as f64 / secs) as u64;
                    let progress = upload_progress(before + now, total, rate);
                    match ticker.beat(Some(progress)).await {
                        Observed::Running => {}
                        Observed::Moved(_) | Observed::Gone => return Err(Interrupted::Stopped),
                    }
                }
            }
        }
    }

    async fn complete(&self, job: Job) -> Flow {
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
            Err(e) => return Err(e.into()),
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
        Ok(StageOutcome::Done)
    }

    /// The job left `uploading` while this run delivered it: remove what it delivered
    /// (and the job, if its purge is pending).
    async fn stopped(&self, id: JobId) -> Flow {
        let Some(job) = found(self.lifecycle.repo.get(id).await)? else {
            return Ok(self.free_staging(id).await);
        };
        if job.purge_requested {
            self.purge_once_stopped(job).await
        } else if job.status == JobStatus::Cancelled {
            self.remove(&job, false).await
        } else {
            Ok(StageOutcome::Done)
        }
    }

    /// Carries out a pending purge once no stage runs the job: delivery is the last stage a
    /// job reaches and the one with the object stores. An uploading job is stopped here (this
    /// is the stage that holds it); a job another stage still holds is left to that stage,
    /// which hands the purge back here when it lets go.
    async fn purge_once_stopped(&self, job: Job) -> Flow {
        let id = job.id;
        let job = if job.status == JobStatus::Uploading {
            super::stop_for_purge(&self.lifecycle, &job).await?;
            match found(self.lifecycle.repo.get(id).await)? {
                Some(job) => job,
                None => return Ok(self.free_staging(id).await),
            }
        } else {
            job
        };
        if !job.status.is_terminal() {
            tracing::debug!(job_id = %id, status = %job.status, "purge waits for the stage that holds the job");
            return Ok(StageOutcome::Done);
        }
        self.remove(&job, true).await
    }

    /// Removes everything the job left: unfinished uploads, delivered objects, staged data,
    /// the seeding copy, and with `purge` the job itself, last (so a failure here is retried
    /// and recovery still finds the job).
    async fn remove(&self, job: &Job, purge: bool) -> Flow {
        match self.stores.store(&job.owner, job.storage_profile).await {
            Ok(store) => {
                let failed = |e| storage_failure(job, e);
                store.abort_uploads(job.id).await.map_err(failed)?;
                let prefix = StorageKey::job_prefix(&job.owner, job.id);
                store.delete_prefix(&prefix).await.map_err(failed)?;
            }
            // The profile is gone: there is nothing we can still reach to delete.
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(storage_failure(job, e)),
        }
        let retry =
            |e: anyhow::Error| StageOutcome::retry(ErrorCode::StorageError, format!("{e:#}"));
        self.staging.discard(job.id).await.map_err(retry)?;
        self.staging.discard_seed(job.id).await.map_err(retry)?;
        if !purge {
            tracing::info!(job_id = %job.id, "cancelled job's delivered objects removed");
            return Ok(StageOutcome::Done);
        }
        found(self.lifecycle.repo.delete(job.id).await)?;
        tracing::info!(job_id = %job.id, "job purged");
        Ok(StageOutcome::Done)
    }

    /// A job that no longer exists: nothing of it may stay in staging.
    async fn free_staging(&self, id: JobId) -> StageOutcome {
        if let Err(e) = self.staging.discard(id).await {
            tracing::warn!(job_id = %id, error = %e, "could not free the staging area");
        }
        if let Err(e) = self.staging.discard_seed(id).await {
            tracing::warn!(job_id = %id, error = %e, "could not free the seeding copy");
        }
        StageOutcome::Done
    }
}
