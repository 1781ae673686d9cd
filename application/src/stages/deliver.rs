//! The delivery stage: put each downloaded file into the user's storage, free the staging
//! area, and complete the job.

use std::sync::Arc;

use async_trait::async_trait;
use ferry_domain::{Job, JobError, JobStatus, Progress, StorageKey};
use tokio_util::sync::CancellationToken;

use super::{StageHandler, StageOutcome, codes};
use crate::lifecycle::{Lifecycle, MoveError};
use crate::ports::{
    EventKind, JobEvent, Lease, ObjectStore, RepoError, Stage, Staging, StoreError,
};

pub struct DeliverStage {
    pub lifecycle: Lifecycle,
    pub staging: Arc<dyn Staging>,
    pub store: Arc<dyn ObjectStore>,
}

fn store_outcome(e: StoreError) -> StageOutcome {
    let code = match &e {
        StoreError::Unreachable(_) => codes::STORAGE_UNREACHABLE,
        StoreError::AuthFailed(_) => codes::STORAGE_AUTH_FAILED,
        _ => codes::STORAGE_ERROR,
    };
    StageOutcome::Retry(JobError::new(code, e.to_string()))
}

#[async_trait]
impl StageHandler for DeliverStage {
    fn stage(&self) -> Stage {
        Stage::Upload
    }

    async fn run(&self, lease: &Lease, shutdown: &CancellationToken) -> StageOutcome {
        let job = match self.lifecycle.repo.get(lease.job_id).await {
            Ok(job) => job,
            Err(RepoError::NotFound) => return StageOutcome::Done,
            Err(e) => {
                return StageOutcome::Retry(JobError::new(codes::DATABASE_ERROR, e.to_string()));
            }
        };
        if job.status != JobStatus::Uploading {
            return StageOutcome::Done;
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
                    return StageOutcome::Fail(JobError::new(codes::UNSAFE_PATH, e.to_string()));
                }
            };
            let key = StorageKey::for_file(&job.owner, job.id, &path);
            // Idempotent: a file delivered by an earlier, interrupted run is not sent again.
            match self.store.size(&key).await {
                Ok(Some(size)) if size == file.size => {
                    done += size;
                    continue;
                }
                Ok(_) => {}
                Err(e) => return store_outcome(e),
            }
            let source = self.staging.file(job.id, &path);
            match self.store.put_file(&key, &source).await {
                Ok(size) if size == file.size => done += size,
                Ok(size) => {
                    return StageOutcome::Retry(JobError::new(
                        codes::STORAGE_ERROR,
                        format!("stored {size} bytes of {key}, expected {}", file.size),
                    ));
                }
                Err(StoreError::NotFound) => {
                    return StageOutcome::Fail(JobError::new(
                        codes::STAGING_MISSING,
                        format!("the downloaded file {} is missing from staging", path),
                    ));
                }
                Err(e) => return store_outcome(e),
            }
            self.publish(&job, done, total).await;
        }
        self.complete(job).await
    }
}

impl DeliverStage {
    async fn complete(&self, job: Job) -> StageOutcome {
        match self
            .lifecycle
            .advance(job.id, JobStatus::Uploading, JobStatus::Completed, None)
            .await
        {
            Ok(_) => {}
            Err(MoveError::Repo(RepoError::Conflict { actual, .. })) => {
                // Cancelled while we delivered: nothing we stored may stay behind.
                if actual == JobStatus::Cancelled {
                    let prefix = StorageKey::job_prefix(&job.owner, job.id);
                    if let Err(e) = self.store.delete_prefix(&prefix).await {
                        return store_outcome(e);
                    }
                }
            }
            Err(MoveError::Repo(RepoError::NotFound)) => {}
            Err(e) => {
                return StageOutcome::Retry(JobError::new(codes::DATABASE_ERROR, e.to_string()));
            }
        }
        if let Err(e) = self.staging.discard(job.id).await {
            tracing::warn!(job_id = %job.id, error = %e, "could not free the staging area");
        }
        tracing::info!(job_id = %job.id, "job delivered");
        StageOutcome::Done
    }

    async fn publish(&self, job: &Job, done: u64, total: u64) {
        let mut progress = Progress::measured(done, total, 0);
        progress.eta_seconds = None;
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
