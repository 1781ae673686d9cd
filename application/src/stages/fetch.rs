//! The fetch stage: download an HTTP(S) URL into staging (through the proxy, resuming a
//! partial file), keep it content-addressed, package it as a torrent, hand it to delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use ferry_domain::{ErrorCode, FetchUrl, Job, JobId, JobSource, JobStatus, Progress, SafePath};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{DownloadSettings, Flow, Observed, StageHandler, StageOutcome, Ticker, found};
use crate::lifecycle::{Lifecycle, MoveError};
use crate::ports::{
    FetchError, Fetched, Fetcher, JobQueue, Lease, RepoError, Stage, Staging, TorrentPackager,
};

pub struct FetchStage {
    pub lifecycle: Lifecycle,
    pub queue: Arc<dyn JobQueue>,
    pub fetcher: Arc<dyn Fetcher>,
    pub packager: Arc<dyn TorrentPackager>,
    pub staging: Arc<dyn Staging>,
    pub settings: DownloadSettings,
}

/// A job whose content is over its byte limit (the owner's `job_bytes` quota) fails.
fn quota_failure(limit: u64) -> StageOutcome {
    StageOutcome::fail(
        ErrorCode::QuotaExceeded,
        format!("the content is over {limit} bytes, the most one job may fetch (quota job_bytes)"),
    )
}

/// A fetch failure as a stage outcome: permanent refusals fail the job, the rest retry.
pub fn fetch_outcome(e: FetchError) -> StageOutcome {
    if let FetchError::Unexpected(inner) = &e
        && super::is_disk_full(inner.as_ref())
    {
        return super::disk_full(format!("{inner:#}"));
    }
    let code = match &e {
        FetchError::NotAllowed(_) => ErrorCode::UrlNotAllowed,
        FetchError::Blocked(_) => ErrorCode::Blocked,
        FetchError::TooLarge { .. } => ErrorCode::UrlTooLarge,
        FetchError::MimeNotAllowed(_) => ErrorCode::UrlTypeNotAllowed,
        FetchError::Status(_) => ErrorCode::UrlUnavailable,
        _ => ErrorCode::UrlUnreachable,
    };
    if e.is_transient() {
        StageOutcome::retry(code, e)
    } else {
        StageOutcome::fail(code, e)
    }
}

#[async_trait]
impl StageHandler for FetchStage {
    fn stage(&self) -> Stage {
        Stage::Fetch
    }

    async fn run(&self, lease: &Lease, shutdown: &CancellationToken) -> StageOutcome {
        super::settled(self.drive(lease.job_id, shutdown).await)
    }
}

impl FetchStage {
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
                JobStatus::Resolving | JobStatus::Downloading => {
                    if let Some(outcome) = self.fetch(job, shutdown).await? {
                        return Ok(outcome);
                    }
                }
                JobStatus::Cancelled => return self.clean_up(job.id).await,
                JobStatus::Completed | JobStatus::Failed if job.purge_requested => {
                    return self.clean_up(job.id).await;
                }
                _ => return Ok(StageOutcome::Done),
            }
        }
        Err(StageOutcome::retry(
            ErrorCode::InternalError,
            "the job kept changing status under the fetch stage",
        ))
    }

    /// Moves the job on; a conflict (someone else moved it) is for the caller to re-read.
    async fn advance(&self, job: &Job, to: JobStatus) -> Flow<()> {
        match self.lifecycle.advance(job.id, job.status, to, None).await {
            Ok(_) | Err(MoveError::Repo(RepoError::Conflict { .. })) => Ok(()),
            Err(MoveError::Repo(RepoError::NotFound)) => Err(StageOutcome::Done),
            Err(e) => Err(e.into()),
        }
    }

    /// Fetches the URL into staging and finishes the job. `None`: the job moved meanwhile;
    /// re-read it.
    async fn fetch(&self, job: Job, shutdown: &CancellationToken) -> Flow<Option<StageOutcome>> {
        let JobSource::Url(url) = &job.source else {
            return Err(StageOutcome::fail(
                ErrorCode::InternalError,
                "not a URL job",
            ));
        };
        let url = FetchUrl::parse(url.as_str())
            .map_err(|e| StageOutcome::fail(ErrorCode::UrlNotAllowed, e))?;
        let path = SafePath::parse(&job.name)
            .map_err(|e| StageOutcome::fail(ErrorCode::TorrentUnsafePath, e))?;
        let staged = self.staging.file(job.id, &path);
        // A restarted fetch continues the partial file it left.
        let partial = (job.status == JobStatus::Downloading).then_some(staged.as_path());
        let body = tokio::select! {
            r = self.fetcher.open(&url, partial) => r.map_err(fetch_outcome)?,
            () = shutdown.cancelled() => return Err(StageOutcome::Released),
        };
        let total = body.info().size;
        if let (Some(limit), Some(size)) = (job.byte_limit, total)
            && size > limit
        {
            // Not a byte more, and nothing of an earlier attempt stays.
            drop(body);
            self.staging
                .discard(job.id)
                .await
                .map_err(super::staging_retry)?;
            return Err(quota_failure(limit));
        }
        tracing::info!(job_id = %job.id, url = %url.for_log(), size = ?total, resumed_from = body.info().resumed_from, "fetching");
        let mut job = job;
        if job.status == JobStatus::Resolving {
            match self
                .lifecycle
                .advance(job.id, JobStatus::Resolving, JobStatus::Downloading, None)
                .await
            {
                Ok(j) => job = j,
                Err(MoveError::Repo(RepoError::Conflict { .. })) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }

        let done = Arc::new(AtomicU64::new(body.info().resumed_from));
        let sink = done.clone();
        // A body longer than it said (or of unknown size) stops at the owner's quota.
        let over = Arc::new(tokio::sync::Notify::new());
        let overflow = over.clone();
        let limit = job.byte_limit.unwrap_or(u64::MAX);
        let report = move |n: u64| {
            sink.store(n, Ordering::Relaxed);
            if n > limit {
                overflow.notify_one();
            }
        };
        let save = body.save(&staged, &report);
        tokio::pin!(save);
        let mut ticker = Ticker::new(
            &self.lifecycle,
            &job,
            JobStatus::Downloading,
            self.settings.tick,
        )
        .snapshot_every(self.settings.snapshot_every);
        let mut last = (done.load(Ordering::Relaxed), Instant::now());
        let fetched: Fetched = loop {
            tokio::select! {
                r = &mut save => break r.map_err(fetch_outcome)?,
                () = shutdown.cancelled() => return Err(StageOutcome::Released),
                () = over.notified() => {
                    // The save is no longer polled; what it wrote goes.
                    self.staging.discard(job.id).await.map_err(super::staging_retry)?;
                    return Err(quota_failure(limit));
                }
                () = ticker.tick() => {
                    let now = done.load(Ordering::Relaxed);
                    let secs = last.1.elapsed().as_secs_f64().max(0.001);
                    let rate = ((now.saturating_sub(last.0)) as f64 / secs) as u64;
                    last = (now, Instant::now());
                    let progress = Progress::measured(now, total.unwrap_or(0), rate);
                    match ticker.beat(Some(progress)).await {
                        Observed::Running => {}
                        Observed::Moved(JobStatus::Cancelled) | Observed::Gone => {
                            // The save is no longer polled, so nothing writes the file now.
                            return self.clean_up(job.id).await.map(Some);
                        }
                        // Paused: the partial file stays for the resume.
                        Observed::Moved(_) => {
                            ticker.snapshot().await;
                            return Ok(Some(StageOutcome::Done));
                        }
                    }
                }
            }
        };
        if fetched.size == 0 {
            // Nothing to package (a torrent of no bytes is not a torrent) or deliver: a
            // retry would fetch the same nothing.
            self.staging
                .discard(job.id)
                .await
                .map_err(super::staging_retry)?;
            return Err(StageOutcome::fail(
                ErrorCode::UrlEmpty,
                "the URL answered with no content (0 bytes)",
            ));
        }
        if fetched.size > limit {
            self.staging
                .discard(job.id)
                .await
                .map_err(super::staging_retry)?;
            return Err(quota_failure(limit));
        }
        self.finish(job, &path, fetched).await.map(Some)
    }

    /// Removes what a stopped (or deleted) job staged and its seeding copy, then hands a
    /// pending purge on.
    async fn clean_up(&self, id: JobId) -> Flow {
        self.staging
            .discard(id)
            .await
            .map_err(super::staging_retry)?;
        self.staging
            .discard_seed(id)
            .await
            .map_err(super::staging_retry)?;
        super::hand_over_purge(&self.lifecycle, &*self.queue, id).await
    }

    /// Content-addresses the file, packages it (once per content and name) and queues delivery.
    async fn finish(&self, job: Job, path: &SafePath, fetched: Fetched) -> Flow {
        tracing::info!(job_id = %job.id, bytes = fetched.size, sha256 = %fetched.sha256, "fetched");
        self.staging
            .adopt(job.id, path, &fetched.sha256)
            .await
            .map_err(super::staging_retry)?;
        let repo = &self.lifecycle.repo;
        repo.record_content(job.id, &fetched.sha256).await?;
        let mut meta = match repo.find_packaged(&fetched.sha256, path.as_str()).await? {
            Some(meta) => {
                tracing::info!(job_id = %job.id, info_hash = %meta.info_hash, "identical content was packaged before: reusing its torrent");
                meta
            }
            None => self
                .packager
                .package(&self.staging.file(job.id, path), path.as_str())
                .await
                .map_err(|e| StageOutcome::retry(ErrorCode::EngineError, e))?,
        };
        for f in &mut meta.files {
            f.selected = true;
            f.sha256 = Some(fetched.sha256.clone());
        }
        repo.record_metadata(job.id, &meta).await?;
        let progress = Progress::measured(fetched.size, fetched.size, 0);
        if let Err(e) = repo.record_progress(job.id, &progress).await {
            tracing::warn!(job_id = %job.id, error = %e, "could not store a progress snapshot");
        }
        match self
            .lifecycle
            .advance(job.id, JobStatus::Downloading, JobStatus::Uploading, None)
            .await
        {
            Ok(_) => {}
            Err(MoveError::Repo(RepoError::Conflict { .. })) => return Ok(StageOutcome::Done),
            Err(e) => return Err(e.into()),
        }
        if let Err(e) = self.queue.enqueue(Stage::Upload, job.id).await {
            tracing::error!(job_id = %job.id, error = %e, "could not queue delivery; recovery will");
        }
        Ok(StageOutcome::Done)
    }
}
