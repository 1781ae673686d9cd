//! The download stage: resolve a magnet's metadata, download the chosen files into staging,
//! follow pause and cancel requests, and hand the job to delivery when done.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_domain::{
    ErrorCode, Job, JobError, JobId, JobSource, JobStatus, Progress, TorrentLimits, TorrentMetadata,
};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{StageHandler, StageOutcome};
use crate::lifecycle::{Lifecycle, MoveError};
use crate::ports::{
    EngineError, EngineStats, EventKind, JobEvent, JobQueue, Lease, RepoError, Stage, Staging,
    TorrentEngine, TorrentSpec,
};

#[derive(Debug, Clone, Copy)]
pub struct DownloadSettings {
    /// How often progress is published and pause/cancel requests are noticed.
    pub tick: Duration,
    /// How often a progress snapshot is written to the database.
    pub snapshot_every: Duration,
    /// How long to wait for a magnet's metadata before retrying.
    pub resolve_timeout: Duration,
}

impl Default for DownloadSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(500),
            snapshot_every: Duration::from_secs(3),
            resolve_timeout: Duration::from_secs(600),
        }
    }
}

pub struct DownloadStage {
    pub lifecycle: Lifecycle,
    pub queue: Arc<dyn JobQueue>,
    pub engine: Arc<dyn TorrentEngine>,
    pub staging: Arc<dyn Staging>,
    pub limits: TorrentLimits,
    pub settings: DownloadSettings,
}

fn retry(code: ErrorCode, e: impl std::fmt::Display) -> StageOutcome {
    StageOutcome::Retry(JobError::new(code, e.to_string()))
}

fn repo_retry(e: RepoError) -> StageOutcome {
    retry(ErrorCode::DatabaseError, e)
}

/// How a move attempted by the stage turned out.
enum Moved {
    To,
    /// The job was moved by someone else (a pause or cancel request): re-read it.
    Elsewhere,
}

#[async_trait]
impl StageHandler for DownloadStage {
    fn stage(&self) -> Stage {
        Stage::Download
    }

    async fn abandon(&self, lease: &Lease) {
        // The torrent keeps its data: the worker that owns the job now may be using it.
        if let Err(e) = self.engine.stop(lease.job_id, false).await {
            tracing::warn!(job_id = %lease.job_id, error = %e, "could not stop the abandoned torrent");
        }
    }

    async fn run(&self, lease: &Lease, shutdown: &CancellationToken) -> StageOutcome {
        // Re-read the job until it is in a status this stage acts on; every move the stage
        // makes is conditional, so a concurrent pause or cancel simply sends us round again.
        for _ in 0..10 {
            let job = match self.lifecycle.repo.get(lease.job_id).await {
                Ok(job) => job,
                // Gone: nothing of it may stay behind.
                Err(RepoError::NotFound) => return self.clean_up(lease.job_id).await,
                Err(e) => return repo_retry(e),
            };
            if job.purge_requested
                && matches!(
                    job.status,
                    JobStatus::Queued
                        | JobStatus::Resolving
                        | JobStatus::Downloading
                        | JobStatus::Paused
                )
            {
                if let Err(outcome) = super::stop_for_purge(&self.lifecycle, &job).await {
                    return outcome;
                }
                continue;
            }
            let step = match job.status {
                JobStatus::Queued => self.claim(job).await,
                JobStatus::Resolving => self.resolve(job, shutdown).await,
                JobStatus::Downloading => return self.download(job, shutdown).await,
                JobStatus::Cancelled => return self.clean_up(job.id).await,
                JobStatus::Completed | JobStatus::Failed if job.purge_requested => {
                    return self.clean_up(job.id).await;
                }
                // Paused, or already past this stage: nothing to do.
                _ => return StageOutcome::Done,
            };
            match step {
                Ok(Moved::To | Moved::Elsewhere) => continue,
                Err(outcome) => return outcome,
            }
        }
        retry(
            ErrorCode::InternalError,
            "the job kept changing status under the download stage",
        )
    }
}

impl DownloadStage {
    async fn advance(&self, job: &Job, to: JobStatus) -> Result<Moved, StageOutcome> {
        match self.lifecycle.advance(job.id, job.status, to, None).await {
            Ok(_) => Ok(Moved::To),
            Err(MoveError::Repo(RepoError::Conflict { .. })) => Ok(Moved::Elsewhere),
            Err(MoveError::Repo(RepoError::NotFound)) => Err(StageOutcome::Done),
            Err(MoveError::Repo(e)) => Err(repo_retry(e)),
            Err(MoveError::Illegal(e)) => Err(StageOutcome::Fail(JobError::new(
                ErrorCode::InternalError,
                e.to_string(),
            ))),
        }
    }

    async fn claim(&self, job: Job) -> Result<Moved, StageOutcome> {
        self.advance(&job, JobStatus::Resolving).await
    }

    /// Makes sure the metadata is known (fetching it for a magnet), then moves to downloading.
    async fn resolve(&self, job: Job, shutdown: &CancellationToken) -> Result<Moved, StageOutcome> {
        if job.metadata.is_none() {
            let JobSource::Magnet(magnet) = &job.source else {
                return Err(StageOutcome::Fail(JobError::new(
                    ErrorCode::InternalError,
                    "a non-magnet job has no metadata",
                )));
            };
            tracing::info!(job_id = %job.id, info_hash = %magnet.info_hash(), "resolving magnet metadata");
            let fetched = tokio::select! {
                r = tokio::time::timeout(self.settings.resolve_timeout, self.engine.resolve(magnet)) => r,
                () = shutdown.cancelled() => return Err(StageOutcome::Released),
                () = self.until_status_changes(job.id, JobStatus::Resolving) => return Ok(Moved::Elsewhere),
            };
            let mut meta = match fetched {
                Err(_) => {
                    return Err(retry(
                        ErrorCode::MetadataTimeout,
                        format!(
                            "no peer sent the torrent's metadata within {:?}",
                            self.settings.resolve_timeout
                        ),
                    ));
                }
                Ok(Err(e)) => return Err(engine_outcome(e)),
                Ok(Ok(meta)) => meta,
            };
            self.accept(&job, &mut meta)?;
            if let Err(e) = self.lifecycle.repo.record_metadata(job.id, &meta).await {
                return Err(repo_retry(e));
            }
            tracing::info!(job_id = %job.id, name = %meta.name, files = meta.files.len(), bytes = meta.total_bytes, "metadata resolved");
        }
        self.advance(&job, JobStatus::Downloading).await
    }

    /// Applies the operator's limits and the user's file selection to fetched metadata.
    fn accept(&self, job: &Job, meta: &mut TorrentMetadata) -> Result<(), StageOutcome> {
        if let Err(e) = self.limits.check(meta.files.len(), meta.total_bytes) {
            let code = match e {
                ferry_domain::TorrentLimitError::TooManyFiles { .. } => {
                    ErrorCode::TorrentTooManyFiles
                }
                ferry_domain::TorrentLimitError::TooLarge { .. } => ErrorCode::TorrentTooLarge,
            };
            return Err(StageOutcome::Fail(JobError::new(code, e.to_string())));
        }
        if let Err(e) = job.selection.validate(&meta.files) {
            return Err(StageOutcome::Fail(JobError::new(
                ErrorCode::InvalidFileSelection,
                e.to_string(),
            )));
        }
        meta.apply_selection(&job.selection);
        Ok(())
    }

    async fn download(&self, job: Job, shutdown: &CancellationToken) -> StageOutcome {
        let Some(meta) = &job.metadata else {
            return StageOutcome::Fail(JobError::new(
                ErrorCode::InternalError,
                "downloading without metadata",
            ));
        };
        let peers = match &job.source {
            JobSource::Magnet(m) => m.peers().to_vec(),
            _ => Vec::new(),
        };
        let spec = TorrentSpec {
            job_id: job.id,
            metainfo: meta.metainfo.clone(),
            only_files: job.selection.indices(),
            peers,
            data_dir: None,
        };
        if let Err(e) = self.engine.start(spec).await {
            return engine_outcome(e);
        }
        tracing::info!(job_id = %job.id, "download running");

        let mut ticker = tokio::time::interval(self.settings.tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_snapshot = Instant::now();
        let mut last = job.progress;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => {
                    self.stop(job.id, false).await;
                    self.snapshot(job.id, &last).await;
                    return StageOutcome::Released;
                }
            }
            let stats = match self.engine.stats(job.id).await {
                Ok(s) => s,
                Err(e) => return engine_outcome(e),
            };
            // While the engine checks data already on disk its counts are not progress:
            // the job keeps the progress it had until the check ends.
            if !stats.checking {
                last = progress_of(&stats);
                self.publish_progress(&job, &last).await;
                if last_snapshot.elapsed() >= self.settings.snapshot_every {
                    self.snapshot(job.id, &last).await;
                    last_snapshot = Instant::now();
                }
            }

            match self.lifecycle.repo.status(job.id).await {
                Ok(JobStatus::Downloading) => {}
                Ok(JobStatus::Cancelled) | Err(RepoError::NotFound) => {
                    return self.clean_up(job.id).await;
                }
                Ok(other) => {
                    // Paused (or moved on by someone else): stop and keep the data.
                    tracing::info!(job_id = %job.id, status = %other, "download stopped");
                    self.stop(job.id, false).await;
                    self.snapshot(job.id, &last).await;
                    return StageOutcome::Done;
                }
                Err(e) => {
                    tracing::warn!(job_id = %job.id, error = %e, "could not read the job's status");
                }
            }

            if let Some(error) = stats.error {
                self.stop(job.id, false).await;
                return retry(ErrorCode::EngineError, error);
            }
            if stats.finished && !stats.checking {
                return self.finish(&job, last).await;
            }
        }
    }

    async fn finish(&self, job: &Job, progress: Progress) -> StageOutcome {
        // The job's files move into its staging folder and the torrent lets go of them
        // before delivery reads (and may move) them.
        if let Err(e) = self.engine.hand_over(job.id).await {
            self.stop(job.id, false).await;
            return engine_outcome(e);
        }
        self.snapshot(job.id, &progress).await;
        let current = Job {
            status: JobStatus::Downloading,
            ..job.clone()
        };
        match self.advance(&current, JobStatus::Uploading).await {
            Ok(Moved::To) => {}
            // Paused or cancelled at the last moment: the next run sorts it out.
            Ok(Moved::Elsewhere) => return StageOutcome::Done,
            Err(outcome) => return outcome,
        }
        tracing::info!(job_id = %job.id, bytes = progress.bytes_done, "download complete");
        match self.queue.enqueue(Stage::Upload, job.id).await {
            Ok(()) => StageOutcome::Done,
            Err(e) => {
                // The job is uploading but nobody was asked to deliver it. Recovery at start
                // re-queues it; log loudly meanwhile.
                tracing::error!(job_id = %job.id, error = %e, "could not queue delivery");
                StageOutcome::Done
            }
        }
    }

    /// Stops the torrent and removes everything staged for a stopped (or deleted) job, then
    /// hands a pending purge on.
    async fn clean_up(&self, id: JobId) -> StageOutcome {
        self.stop(id, true).await;
        if let Err(e) = self.staging.discard(id).await {
            return retry(ErrorCode::EngineError, e);
        }
        tracing::info!(job_id = %id, "stopped job's staged data removed");
        super::hand_over_purge(&self.lifecycle, &*self.queue, id).await
    }

    async fn stop(&self, id: JobId, delete_data: bool) {
        if let Err(e) = self.engine.stop(id, delete_data).await {
            tracing::warn!(job_id = %id, error = %e, "could not stop the torrent");
        }
    }

    async fn snapshot(&self, id: JobId, progress: &Progress) {
        if let Err(e) = self.lifecycle.repo.record_progress(id, progress).await {
            tracing::warn!(job_id = %id, error = %e, "could not store a progress snapshot");
        }
    }

    async fn publish_progress(&self, job: &Job, progress: &Progress) {
        let event = JobEvent {
            job_id: job.id,
            kind: EventKind::Progress,
            status: JobStatus::Downloading,
            progress: *progress,
            error: None,
            at: self.lifecycle.clock.now(),
        };
        if let Err(e) = self.lifecycle.bus.publish(&event).await {
            tracing::debug!(job_id = %job.id, error = %e, "could not publish progress");
        }
    }

    /// Resolves once the job's stored status is no longer `status` (polled each tick).
    async fn until_status_changes(&self, id: JobId, status: JobStatus) {
        loop {
            tokio::time::sleep(self.settings.tick).await;
            match self.lifecycle.repo.status(id).await {
                Ok(s) if s == status => {}
                Ok(_) | Err(RepoError::NotFound) => return,
                Err(_) => {}
            }
        }
    }
}

fn progress_of(stats: &EngineStats) -> Progress {
    let mut p = Progress::measured(stats.bytes_done, stats.bytes_total, stats.download_rate);
    p.upload_rate = stats.upload_rate;
    p.uploaded_bytes = stats.uploaded_bytes;
    p.peers = stats.peers;
    p
}

fn engine_outcome(e: EngineError) -> StageOutcome {
    match e {
        EngineError::InvalidTorrent(m) => {
            StageOutcome::Fail(JobError::new(ErrorCode::InvalidTorrent, m))
        }
        EngineError::UnsafePath(p) => {
            StageOutcome::Fail(JobError::new(ErrorCode::TorrentUnsafePath, p.to_string()))
        }
        other => retry(ErrorCode::EngineError, other),
    }
}
