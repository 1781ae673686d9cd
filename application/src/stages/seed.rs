//! The seed stage: share a finished job as a torrent until its policy says stop, then
//! complete it and free the seeding data.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_domain::{ErrorCode, Job, JobError, JobStatus, Progress, SeedPolicy};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{StageHandler, StageOutcome};
use crate::lifecycle::Lifecycle;
use crate::ports::{
    EventKind, JobEvent, Lease, RepoError, Stage, Staging, TorrentEngine, TorrentSpec,
};

pub struct SeedStage {
    pub lifecycle: Lifecycle,
    pub queue: Arc<dyn crate::ports::JobQueue>,
    pub engine: Arc<dyn TorrentEngine>,
    pub staging: Arc<dyn Staging>,
    pub tick: Duration,
    pub snapshot_every: Duration,
    /// Used when a job asks to seed without limits of its own.
    pub default_policy: SeedPolicy,
}

fn retry(code: ErrorCode, e: impl std::fmt::Display) -> StageOutcome {
    StageOutcome::Retry(JobError::new(code, e.to_string()))
}

#[async_trait]
impl StageHandler for SeedStage {
    fn stage(&self) -> Stage {
        Stage::Seed
    }

    async fn abandon(&self, lease: &Lease) {
        // The torrent keeps its data: the worker that owns the job now may be using it.
        if let Err(e) = self.engine.stop(lease.job_id, false).await {
            tracing::warn!(job_id = %lease.job_id, error = %e, "could not stop the abandoned torrent");
        }
    }

    async fn run(&self, lease: &Lease, shutdown: &CancellationToken) -> StageOutcome {
        let job = match self.lifecycle.repo.get(lease.job_id).await {
            Ok(job) => job,
            Err(RepoError::NotFound) => {
                self.stop(lease.job_id).await;
                return StageOutcome::Done;
            }
            Err(e) => return retry(ErrorCode::DatabaseError, e),
        };
        if job.status == JobStatus::Seeding && !job.purge_requested {
            return self.seed(job, shutdown).await;
        }
        if job.status == JobStatus::Seeding
            && let Err(outcome) = super::stop_for_purge(&self.lifecycle, &job).await
        {
            return outcome;
        }
        // Seeding ended (a DELETE or a failure completed the job): stop sharing, free the
        // copy, carry a pending purge on.
        self.stop(job.id).await;
        super::hand_over_purge(&self.lifecycle, &*self.queue, job.id).await
    }
}

impl SeedStage {
    async fn seed(&self, job: Job, shutdown: &CancellationToken) -> StageOutcome {
        let Some(meta) = job.metadata.clone() else {
            return StageOutcome::Fail(JobError::new(
                ErrorCode::InternalError,
                "seeding without metadata",
            ));
        };
        let policy = job.seed.unwrap_or(self.default_policy);
        let size = meta.selected_bytes();
        let spec = TorrentSpec {
            job_id: job.id,
            metainfo: meta.metainfo.clone(),
            only_files: job.selection.indices(),
            peers: vec![],
            data_dir: Some(self.staging.seed_dir(job.id)),
        };
        if let Err(e) = self.engine.start(spec).await {
            return retry(ErrorCode::EngineError, e);
        }
        tracing::info!(job_id = %job.id, info_hash = %meta.info_hash, ?policy, "seeding");
        // Counters restart with the engine; what earlier runs uploaded is in the snapshot.
        let base = job.progress.uploaded_bytes;
        let since = job.updated_at;
        let mut uploaded = base;
        let mut last_upload = Instant::now();
        let mut last_snapshot = Instant::now();
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut progress = job.progress;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => {
                    let _ = self.engine.stop(job.id, false).await;
                    let _ = self.lifecycle.repo.record_progress(job.id, &progress).await;
                    return StageOutcome::Released;
                }
            }
            let stats = match self.engine.stats(job.id).await {
                Ok(s) => s,
                Err(e) => {
                    // The next attempt may run on another worker: leave no torrent behind.
                    let _ = self.engine.stop(job.id, false).await;
                    let _ = self.lifecycle.repo.record_progress(job.id, &progress).await;
                    return retry(ErrorCode::EngineError, e);
                }
            };
            let now_uploaded = base + stats.uploaded_bytes;
            if now_uploaded > uploaded {
                uploaded = now_uploaded;
                last_upload = Instant::now();
            }
            progress = Progress {
                bytes_done: size,
                bytes_total: size,
                download_rate: 0,
                upload_rate: stats.upload_rate,
                uploaded_bytes: uploaded,
                peers: stats.peers,
                eta_seconds: None,
            };
            self.publish(&job, progress).await;
            if last_snapshot.elapsed() >= self.snapshot_every {
                let _ = self.lifecycle.repo.record_progress(job.id, &progress).await;
                last_snapshot = Instant::now();
            }
            match self.lifecycle.repo.status(job.id).await {
                Ok(JobStatus::Seeding) => {}
                Ok(_) | Err(RepoError::NotFound) => {
                    // Stopped by a DELETE (or the job is gone): stop sharing, free the copy.
                    let _ = self.lifecycle.repo.record_progress(job.id, &progress).await;
                    self.stop(job.id).await;
                    tracing::info!(job_id = %job.id, uploaded, "seeding stopped");
                    return super::hand_over_purge(&self.lifecycle, &*self.queue, job.id).await;
                }
                Err(_) => {}
            }
            let seeded = (self.lifecycle.clock.now() - since).num_seconds().max(0) as u64;
            let idle = last_upload.elapsed().as_secs();
            if policy.reached(uploaded, size, seeded, idle) {
                let _ = self.engine.stop(job.id, false).await;
                let _ = self.lifecycle.repo.record_progress(job.id, &progress).await;
                match self
                    .lifecycle
                    .advance(job.id, JobStatus::Seeding, JobStatus::Completed, None)
                    .await
                {
                    Ok(_) | Err(crate::lifecycle::MoveError::Repo(RepoError::Conflict { .. })) => {}
                    Err(e) => return retry(ErrorCode::DatabaseError, e),
                }
                let _ = self.staging.discard_seed(job.id).await;
                tracing::info!(job_id = %job.id, uploaded, "seeding finished");
                return super::hand_over_purge(&self.lifecycle, &*self.queue, job.id).await;
            }
        }
    }

    /// Stops sharing the job's torrent and removes its seeding copy (idempotent).
    async fn stop(&self, id: ferry_domain::JobId) {
        if let Err(e) = self.engine.stop(id, false).await {
            tracing::debug!(job_id = %id, error = %e, "no torrent to stop");
        }
        if let Err(e) = self.staging.discard_seed(id).await {
            tracing::warn!(job_id = %id, error = %e, "could not free the seeding copy");
        }
    }

    async fn publish(&self, job: &Job, progress: Progress) {
        let event = JobEvent {
            job_id: job.id,
            kind: EventKind::Progress,
            status: JobStatus::Seeding,
            progress,
            error: None,
            at: self.lifecycle.clock.now(),
        };
        let _ = self.lifecycle.bus.publish(&event).await;
    }
}
