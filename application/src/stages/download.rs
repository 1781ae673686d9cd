//! The download stage: resolve a magnet's metadata, download the chosen files into staging,
//! follow pause and cancel requests, and hand the job to delivery when done.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_domain::{
    ErrorCode, Job, JobError, JobId, JobSource, JobStatus, Progress, TorrentLimitError,
    TorrentLimits, TorrentMetadata,
};
use tokio_util::sync::CancellationToken;

use super::{Flow, Observed, StageHandler, StageOutcome, Ticker, found};
use crate::lifecycle::{Lifecycle, MoveError};
use crate::ports::{
    EngineError, EngineStats, JobQueue, Lease, RepoError, Stage, Staging, TorrentEngine,
    TorrentSpec,
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
        super::settled(self.drive(lease.job_id, shutdown).await)
    }
}

impl DownloadStage {
    /// Re-reads the job until it is in a status this stage acts on; every move the stage
    /// makes is conditional, so a concurrent pause or cancel simply sends us round again.
    async fn drive(&self, id: JobId, shutdown: &CancellationToken) -> Flow {
        for _ in 0..10 {
            // Gone: nothing of it may stay behind.
            let Some(job) = found(self.lifecycle.repo.get(id).await)? else {
                return self.clean_up(id).await;
            };
            if super::stop_if_purging_unfinished(&self.lifecycle, &job).await? {
                continue;
            }
            match job.status {
                JobStatus::Queued => self.advance(&job, JobStatus::Resolving).await?,
                JobStatus::Resolving => self.resolve(job, shutdown).await?,
                JobStatus::Downloading => return self.download(job, shutdown).await,
                JobStatus::Cancelled => return self.clean_up(job.id).await,
                JobStatus::Completed | JobStatus::Failed if job.purge_requested => {
                    return self.clean_up(job.id).await;
                }
                // Paused, or already past this stage: nothing to do.
                _ => return Ok(StageOutcome::Done),
            };
        }
        Err(StageOutcome::retry(
            ErrorCode::InternalError,
            "the job kept changing status under the download stage",
        ))
    }

    async fn advance(&self, job: &Job, to: JobStatus) -> Flow<Moved> {
        match self.lifecycle.advance(job.id, job.status, to, None).await {
            Ok(_) => Ok(Moved::To),
            Err(MoveError::Repo(RepoError::Conflict { .. })) => Ok(Moved::Elsewhere),
            Err(MoveError::Repo(RepoError::NotFound)) => Err(StageOutcome::Done),
            Err(MoveError::Repo(e)) => Err(e.into()),
            Err(MoveError::Illegal(e)) => Err(StageOutcome::fail(ErrorCode::InternalError, e)),
        }
    }

    /// Makes sure the metadata is known (fetching it for a magnet), then moves to downloading.
    async fn resolve(&self, job: Job, shutdown: &CancellationToken) -> Flow<Moved> {
        if job.metadata.is_none() {
            let JobSource::Magnet(magnet) = &job.source else {
                return Err(StageOutcome::fail(
                    ErrorCode::InternalError,
                    "a non-magnet job has no metadata",
                ));
            };
            tracing::info!(job_id = %job.id, info_hash = %magnet.info_hash(), "resolving magnet metadata");
            let mut ticker = Ticker::new(
                &self.lifecycle,
                &job,
                JobStatus::Resolving,
                self.settings.tick,
            );
            self.engine.network().await.map_err(engine_outcome)?;
            let fetched = tokio::select! {
                r = tokio::time::timeout(self.settings.resolve_timeout, self.engine.resolve(magnet)) => r,
                () = shutdown.cancelled() => return Err(StageOutcome::Released),
                () = ticker.until_moved() => return Ok(Moved::Elsewhere),
                e = self.until_network_fails() => return Err(engine_outcome(e)),
            };
            let mut meta = fetched
                .map_err(|_| {
                    StageOutcome::retry(
                        ErrorCode::MetadataTimeout,
                        format!(
                            "no peer sent the torrent's metadata within {:?}",
                            self.settings.resolve_timeout
                        ),
                    )
                })?
                .map_err(engine_outcome)?;
            self.accept(&job, &mut meta)?;
            self.lifecycle.repo.record_metadata(job.id, &meta).await?;
            tracing::info!(job_id = %job.id, name = %meta.name, files = meta.files.len(), bytes = meta.total_bytes, "metadata resolved");
        }
        self.advance(&job, JobStatus::Downloading).await
    }

    /// Applies the operator's limits and the user's file selection to fetched metadata.
    fn accept(&self, job: &Job, meta: &mut TorrentMetadata) -> Flow<()> {
        self.limits
            .check(meta.files.len(), meta.total_bytes)
            .map_err(|e| {
                let code = match e {
                    TorrentLimitError::TooManyFiles { .. } => ErrorCode::TorrentTooManyFiles,
                    TorrentLimitError::TooLarge { .. } => ErrorCode::TorrentTooLarge,
                };
                StageOutcome::fail(code, e)
            })?;
        job.selection
            .validate(&meta.files)
            .map_err(|e| StageOutcome::fail(ErrorCode::InvalidFileSelection, e))?;
        meta.apply_selection(&job.selection);
        within_limit(job, meta)
    }

    async fn download(&self, job: Job, shutdown: &CancellationToken) -> Flow {
        // Also for metadata known before (a .torrent, a retry, a resume): the limit may
        // have changed since.
        if let Some(meta) = &job.metadata {
            within_limit(&job, meta)?;
        }
        let meta = job.metadata.as_ref().ok_or_else(|| {
            StageOutcome::fail(ErrorCode::InternalError, "downloading without metadata")
        })?;
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
            limits: job.speed_limits,
        };
        self.engine.network().await.map_err(engine_outcome)?;
        self.engine.start(spec).await.map_err(engine_outcome)?;
        tracing::info!(job_id = %job.id, "download running");

        let mut ticker = Ticker::new(
            &self.lifecycle,
            &job,
            JobStatus::Downloading,
            self.settings.tick,
        )
        .snapshot_every(self.settings.snapshot_every);
        let mut limits = job.speed_limits;
        loop {
            tokio::select! {
                () = ticker.tick() => {}
                () = shutdown.cancelled() => {
                    self.stop(job.id, false).await;
                    ticker.snapshot().await;
                    return Err(StageOutcome::Released);
                }
            }
            let stats = self.engine.stats(job.id).await.map_err(engine_outcome)?;
            // While the engine checks data already on disk its counts are not progress:
            // the job keeps the progress it had until the check ends.
            let progress = (!stats.checking).then(|| progress_of(&stats));
            match ticker.beat(progress).await {
                Observed::Running => {}
                Observed::Moved(JobStatus::Cancelled) | Observed::Gone => {
                    return self.clean_up(job.id).await;
                }
                Observed::Moved(other) => {
                    // Paused (or moved on by someone else): stop and keep the data.
                    tracing::info!(job_id = %job.id, status = %other, "download stopped");
                    self.stop(job.id, false).await;
                    ticker.snapshot().await;
                    return Ok(StageOutcome::Done);
                }
            }
            super::follow_limits(&*self.engine, job.id, &mut limits, ticker.limits()).await;
            if let Some(error) = stats.error {
                self.stop(job.id, false).await;
                if super::engine_says_disk_full(&error) {
                    return Err(super::disk_full(error));
                }
                return Err(StageOutcome::retry(ErrorCode::EngineError, error));
            }
            if let Err(e) = self.engine.network().await {
                // Fail closed: the torrent stops (it made no direct connection: nothing
                // bypasses the proxy) and the job says why.
                self.stop(job.id, false).await;
                ticker.snapshot().await;
                return Err(engine_outcome(e));
            }
            if stats.finished && !stats.checking {
                return self.finish(&job, ticker).await;
            }
        }
    }

    async fn finish(&self, job: &Job, mut ticker: Ticker<'_>) -> Flow {
        // The job's files move into its staging folder and the torrent lets go of them
        // before delivery reads (and may move) them.
        if let Err(e) = self.engine.hand_over(job.id).await {
            self.stop(job.id, false).await;
            return Err(engine_outcome(e));
        }
        ticker.snapshot().await;
        let current = Job {
            status: JobStatus::Downloading,
            ..job.clone()
        };
        if let Moved::Elsewhere = self.advance(&current, JobStatus::Uploading).await? {
            // Paused or cancelled at the last moment: the next run sorts it out.
            return Ok(StageOutcome::Done);
        }
        tracing::info!(job_id = %job.id, bytes = ticker.progress().bytes_done, "download complete");
        if let Err(e) = self.queue.enqueue(Stage::Upload, job.id).await {
            // The job is uploading but nobody was asked to deliver it. Recovery at start
            // re-queues it; log loudly meanwhile.
            tracing::error!(job_id = %job.id, error = %e, "could not queue delivery");
        }
        Ok(StageOutcome::Done)
    }

    /// Stops the torrent and removes everything staged for a stopped (or deleted) job, then
    /// hands a pending purge on.
    async fn clean_up(&self, id: JobId) -> Flow {
        self.stop(id, true).await;
        self.staging
            .discard(id)
            .await
            .map_err(|e| StageOutcome::retry(ErrorCode::EngineError, e))?;
        tracing::info!(job_id = %id, "stopped job's staged data removed");
        super::hand_over_purge(&self.lifecycle, &*self.queue, id).await
    }

    /// Returns when the engine says it can no longer reach the swarm (a required proxy is
    /// down); never while it can.
    async fn until_network_fails(&self) -> EngineError {
        loop {
            if let Err(e) = self.engine.network().await {
                return e;
            }
            tokio::time::sleep(self.settings.tick).await;
        }
    }

    async fn stop(&self, id: JobId, delete_data: bool) {
        if let Err(e) = self.engine.stop(id, delete_data).await {
            tracing::warn!(job_id = %id, error = %e, "could not stop the torrent");
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
        EngineError::InvalidTorrent(m) => StageOutcome::fail(ErrorCode::InvalidTorrent, m),
        EngineError::UnsafePath(p) => StageOutcome::fail(ErrorCode::TorrentUnsafePath, p),
        // Another job's run of the torrent stands in the way: wait for it, costing no attempt.
        busy @ EngineError::Busy => {
            StageOutcome::Wait(JobError::new(ErrorCode::EngineError, busy.to_string()))
        }
        EngineError::ProxyUnavailable(m) => StageOutcome::fail(ErrorCode::ProxyUnavailable, m),
        EngineError::Unexpected(e) if super::is_disk_full(e.as_ref()) => {
            super::disk_full(format!("{e:#}"))
        }
        other => StageOutcome::retry(ErrorCode::EngineError, other),
    }
}

/// Fails a job whose chosen files are over its byte limit (the owner's `job_bytes` quota).
fn within_limit(job: &Job, meta: &TorrentMetadata) -> Flow<()> {
    if let Some(limit) = job.byte_limit {
        let size = meta.selected_bytes();
        if size > limit {
            return Err(StageOutcome::fail(
                ErrorCode::QuotaExceeded,
                format!(
                    "the chosen files hold {size} bytes, more than the {limit} bytes one job may fetch (quota job_bytes)"
                ),
            ));
        }
    }
    Ok(())
}
