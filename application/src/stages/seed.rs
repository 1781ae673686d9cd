//! The seed stage: share a finished job as a torrent until its policy says stop, then
//! complete it and free the seeding data.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_domain::{ErrorCode, Job, JobError, JobId, JobStatus, Progress, SeedPolicy};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Flow, Observed, StageHandler, StageOutcome, Ticker, found};
use crate::lifecycle::{Lifecycle, MoveError};
use crate::ports::{
    EngineError, JobQueue, Lease, RepoError, Stage, Staging, TorrentEngine, TorrentSpec,
};

/// How often a seeding job's limits are read again.
const POLICY_REREAD: Duration = Duration::from_secs(30);

pub struct SeedStage {
    pub lifecycle: Lifecycle,
    pub queue: Arc<dyn JobQueue>,
    pub engine: Arc<dyn TorrentEngine>,
    pub staging: Arc<dyn Staging>,
    pub tick: Duration,
    pub snapshot_every: Duration,
    /// Used when a job asks to seed without limits of its own.
    pub default_policy: SeedPolicy,
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
        super::settled(self.drive(lease.job_id, shutdown).await)
    }
}

impl SeedStage {
    async fn drive(&self, id: JobId, shutdown: &CancellationToken) -> Flow {
        let Some(job) = found(self.lifecycle.repo.get(id).await)? else {
            self.stop(id).await;
            return Ok(StageOutcome::Done);
        };
        if job.status == JobStatus::Seeding && !job.purge_requested {
            return self.seed(job, shutdown).await;
        }
        if job.status == JobStatus::Seeding {
            super::stop_for_purge(&self.lifecycle, &job).await?;
        }
        // Seeding ended (a DELETE or a failure completed the job): stop sharing, free the
        // copy, carry a pending purge on.
        self.stop(job.id).await;
        super::hand_over_purge(&self.lifecycle, &*self.queue, job.id).await
    }

    async fn seed(&self, job: Job, shutdown: &CancellationToken) -> Flow {
        let meta = job.metadata.clone().ok_or_else(|| {
            StageOutcome::fail(ErrorCode::InternalError, "seeding without metadata")
        })?;
        let mut policy = job.seed.unwrap_or(self.default_policy);
        let size = meta.selected_bytes();
        let spec = TorrentSpec {
            job_id: job.id,
            metainfo: meta.metainfo.clone(),
            only_files: job.selection.indices(),
            peers: vec![],
            data_dir: Some(self.staging.seed_dir(job.id)),
            limits: job.speed_limits,
        };
        match self.engine.start(spec).await {
            Ok(()) => {}
            // Another job of this engine downloads the torrent: seed once it has finished.
            Err(e @ EngineError::Busy) => {
                return Err(StageOutcome::Wait(JobError::new(
                    ErrorCode::EngineError,
                    e.to_string(),
                )));
            }
            Err(e) => return Err(StageOutcome::retry(ErrorCode::EngineError, e)),
        }
        tracing::info!(job_id = %job.id, info_hash = %meta.info_hash, ?policy, "seeding");
        // Counters restart with the engine; what earlier runs uploaded is in the snapshot.
        let base = job.progress.uploaded_bytes;
        let since = job.updated_at;
        let mut uploaded = base;
        let mut last_upload = Instant::now();
        let mut ticker = Ticker::new(&self.lifecycle, &job, JobStatus::Seeding, self.tick)
            .snapshot_every(self.snapshot_every);
        let mut policy_read = Instant::now();
        let mut limits = job.speed_limits;
        loop {
            tokio::select! {
                () = ticker.tick() => {}
                () = shutdown.cancelled() => {
                    self.stop_torrent(job.id).await;
                    ticker.snapshot().await;
                    return Err(StageOutcome::Released);
                }
            }
            let stats = match self.engine.stats(job.id).await {
                Ok(s) => s,
                Err(e) => {
                    // The next attempt may run on another worker: leave no torrent behind.
                    self.stop_torrent(job.id).await;
                    ticker.snapshot().await;
                    return Err(StageOutcome::retry(ErrorCode::EngineError, e));
                }
            };
            let now_uploaded = base + stats.uploaded_bytes;
            if now_uploaded > uploaded {
                uploaded = now_uploaded;
                last_upload = Instant::now();
            }
            let progress = Progress {
                bytes_done: size,
                bytes_total: size,
                download_rate: 0,
                upload_rate: stats.upload_rate,
                uploaded_bytes: uploaded,
                peers: stats.peers,
                eta_seconds: None,
            };
            match ticker.beat(Some(progress)).await {
                Observed::Running => {}
                Observed::Moved(_) | Observed::Gone => {
                    // Stopped by a DELETE (or the job is gone): stop sharing, free the copy.
                    ticker.snapshot().await;
                    self.stop(job.id).await;
                    tracing::info!(job_id = %job.id, uploaded, "seeding stopped");
                    return super::hand_over_purge(&self.lifecycle, &*self.queue, job.id).await;
                }
            }
            super::follow_limits(&*self.engine, job.id, &mut limits, ticker.limits()).await;
            // Limits changed while seeding (qBittorrent's `setShareLimits`) apply within
            // POLICY_REREAD.
            if policy_read.elapsed() >= POLICY_REREAD {
                policy_read = Instant::now();
                if let Ok(fresh) = self.lifecycle.repo.get(job.id).await
                    && let Some(fresh) = fresh.seed
                    && fresh != policy
                {
                    tracing::info!(job_id = %job.id, policy = ?fresh, "seeding limits changed");
                    policy = fresh;
                }
            }
            let seeded = (self.lifecycle.clock.now() - since).num_seconds().max(0) as u64;
            let idle = last_upload.elapsed().as_secs();
            if policy.reached(uploaded, size, seeded, idle) {
                self.stop_torrent(job.id).await;
                ticker.snapshot().await;
                match self
                    .lifecycle
                    .advance(job.id, JobStatus::Seeding, JobStatus::Completed, None)
                    .await
                {
                    Ok(_) | Err(MoveError::Repo(RepoError::Conflict { .. })) => {}
                    Err(e) => return Err(e.into()),
                }
                if let Err(e) = self.staging.discard_seed(job.id).await {
                    tracing::warn!(job_id = %job.id, error = %e, "could not free the seeding copy");
                }
                tracing::info!(job_id = %job.id, uploaded, "seeding finished");
                return super::hand_over_purge(&self.lifecycle, &*self.queue, job.id).await;
            }
        }
    }

    /// Stops sharing the job's torrent, keeping the seeding copy.
    async fn stop_torrent(&self, id: JobId) {
        if let Err(e) = self.engine.stop(id, false).await {
            tracing::warn!(job_id = %id, error = %e, "could not stop the torrent");
        }
    }

    /// Stops sharing the job's torrent and removes its seeding copy (idempotent).
    async fn stop(&self, id: JobId) {
        if let Err(e) = self.engine.stop(id, false).await {
            tracing::debug!(job_id = %id, error = %e, "no torrent to stop");
        }
        if let Err(e) = self.staging.discard_seed(id).await {
            tracing::warn!(job_id = %id, error = %e, "could not free the seeding copy");
        }
    }
}
