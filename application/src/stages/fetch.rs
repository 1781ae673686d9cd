//! The fetch stage: download an HTTP(S) URL into staging (through the proxy, resuming a
//! partial file), keep it content-addressed, package it as a torrent, hand it to delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use ferry_domain::{
    ErrorCode, FetchUrl, Job, JobError, JobId, JobSource, JobStatus, Progress, SafePath,
};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{DownloadSettings, StageHandler, StageOutcome};
use crate::lifecycle::{Lifecycle, MoveError};
use crate::ports::{
    EventKind, FetchError, Fetched, Fetcher, JobEvent, JobQueue, Lease, RepoError, Stage, Staging,
    TorrentPackager,
};

pub struct FetchStage {
    pub lifecycle: Lifecycle,
    pub queue: Arc<dyn JobQueue>,
    pub fetcher: Arc<dyn Fetcher>,
    pub packager: Arc<dyn TorrentPackager>,
    pub staging: Arc<dyn Staging>,
    pub settings: DownloadSettings,
}

fn retry(code: ErrorCode, e: impl std::fmt::Display) -> StageOutcome {
    StageOutcome::Retry(JobError::new(code, e.to_string()))
}

/// A fetch failure as a stage outcome: permanent refusals fail the job, the rest retry.
pub fn fetch_outcome(e: FetchError) -> StageOutcome {
    let code = match &e {
        FetchError::NotAllowed(_) => ErrorCode::UrlNotAllowed,
        FetchError::TooLarge { .. } => ErrorCode::UrlTooLarge,
        FetchError::MimeNotAllowed(_) => ErrorCode::UrlTypeNotAllowed,
        FetchError::Status(_) => ErrorCode::UrlUnavailable,
        _ => ErrorCode::UrlUnreachable,
    };
    if e.is_transient() {
        retry(code, e)
    } else {
        StageOutcome::Fail(JobError::new(code, e.to_string()))
    }
}

enum Step {
    Again,
    Done(StageOutcome),
}

#[async_trait]
impl StageHandler for FetchStage {
    fn stage(&self) -> Stage {
        Stage::Fetch
    }

    async fn run(&self, lease: &Lease, shutdown: &CancellationToken) -> StageOutcome {
        for _ in 0..10 {
            let job = match self.lifecycle.repo.get(lease.job_id).await {
                Ok(job) => job,
                // Gone: nothing of it may stay behind.
                Err(RepoError::NotFound) => return self.clean_up(lease.job_id).await,
                Err(e) => return retry(ErrorCode::DatabaseError, e),
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
                JobStatus::Queued => self.advance(&job, JobStatus::Resolving).await,
                JobStatus::Resolving | JobStatus::Downloading => self.fetch(job, shutdown).await,
                JobStatus::Cancelled => return self.clean_up(job.id).await,
                JobStatus::Completed | JobStatus::Failed if job.purge_requested => {
                    return self.clean_up(job.id).await;
                }
                _ => return StageOutcome::Done,
            };
            match step {
                Step::Again => continue,
                Step::Done(outcome) => return outcome,
            }
        }
        retry(
            ErrorCode::InternalError,
            "the job kept changing status under the fetch stage",
        )
    }
}

impl FetchStage {
    async fn advance(&self, job: &Job, to: JobStatus) -> Step {
        match self.lifecycle.advance(job.id, job.status, to, None).await {
            Ok(_) | Err(MoveError::Repo(RepoError::Conflict { .. })) => Step::Again,
            Err(MoveError::Repo(RepoError::NotFound)) => Step::Done(StageOutcome::Done),
            Err(e) => Step::Done(retry(ErrorCode::DatabaseError, e)),
        }
    }

    async fn fetch(&self, job: Job, shutdown: &CancellationToken) -> Step {
        let JobSource::Url(url) = &job.source else {
            return Step::Done(StageOutcome::Fail(JobError::new(
                ErrorCode::InternalError,
                "not a URL job",
            )));
        };
        let url = match FetchUrl::parse(url.as_str()) {
            Ok(u) => u,
            Err(e) => {
                return Step::Done(StageOutcome::Fail(JobError::new(
                    ErrorCode::UrlNotAllowed,
                    e.to_string(),
                )));
            }
        };
        let path = match SafePath::parse(&job.name) {
            Ok(p) => p,
            Err(e) => {
                return Step::Done(StageOutcome::Fail(JobError::new(
                    ErrorCode::TorrentUnsafePath,
                    e.to_string(),
                )));
            }
        };
        let staged = self.staging.file(job.id, &path);
        // A restarted fetch continues the partial file it left.
        let partial = (job.status == JobStatus::Downloading).then_some(staged.as_path());
        let body = tokio::select! {
            r = self.fetcher.open(&url, partial) => r,
            () = shutdown.cancelled() => return Step::Done(StageOutcome::Released),
        };
        let body = match body {
            Ok(b) => b,
            Err(e) => return Step::Done(fetch_outcome(e)),
        };
        let total = body.info().size;
        tracing::info!(job_id = %job.id, url = %url.for_log(), size = ?total, resumed_from = body.info().resumed_from, "fetching");
        let mut job = job;
        if job.status == JobStatus::Resolving {
            match self
                .lifecycle
                .advance(job.id, JobStatus::Resolving, JobStatus::Downloading, None)
                .await
            {
                Ok(j) => job = j,
                Err(MoveError::Repo(RepoError::Conflict { .. })) => return Step::Again,
                Err(e) => return Step::Done(retry(ErrorCode::DatabaseError, e)),
            }
        }

        let done = Arc::new(AtomicU64::new(body.info().resumed_from));
        let sink = done.clone();
        let report = move |n: u64| sink.store(n, Ordering::Relaxed);
        let save = body.save(&staged, &report);
        tokio::pin!(save);
        let mut ticker = tokio::time::interval(self.settings.tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last = (done.load(Ordering::Relaxed), Instant::now());
        let mut last_snapshot = Instant::now();
        let fetched: Fetched = loop {
            tokio::select! {
                r = &mut save => match r {
                    Ok(f) => break f,
                    Err(e) => return Step::Done(fetch_outcome(e)),
                },
                () = shutdown.cancelled() => return Step::Done(StageOutcome::Released),
                _ = ticker.tick() => {
                    let now = done.load(Ordering::Relaxed);
                    let secs = last.1.elapsed().as_secs_f64().max(0.001);
                    let rate = ((now.saturating_sub(last.0)) as f64 / secs) as u64;
                    last = (now, Instant::now());
                    let progress = Progress::measured(now, total.unwrap_or(0), rate);
                    self.publish(job.id, progress).await;
                    if last_snapshot.elapsed() >= self.settings.snapshot_every {
                        let _ = self.lifecycle.repo.record_progress(job.id, &progress).await;
                        last_snapshot = Instant::now();
                    }
                    match self.lifecycle.repo.status(job.id).await {
                        Ok(JobStatus::Downloading) => {}
                        Ok(JobStatus::Cancelled) | Err(RepoError::NotFound) => {
                            // The save is no longer polled, so nothing writes the file now.
                            return Step::Done(self.clean_up(job.id).await);
                        }
                        // Paused: the partial file stays for the resume.
                        Ok(_) => {
                            let _ = self.lifecycle.repo.record_progress(job.id, &progress).await;
                            return Step::Done(StageOutcome::Done);
                        }
                        Err(_) => {}
                    }
                }
            }
        };
        Step::Done(self.finish(job, &path, fetched).await)
    }

    /// Removes what a stopped (or deleted) job staged and its seeding copy, then hands a
    /// pending purge on.
    async fn clean_up(&self, id: JobId) -> StageOutcome {
        if let Err(e) = self.staging.discard(id).await {
            return retry(ErrorCode::StorageError, format!("{e:#}"));
        }
        if let Err(e) = self.staging.discard_seed(id).await {
            return retry(ErrorCode::StorageError, format!("{e:#}"));
        }
        super::hand_over_purge(&self.lifecycle, &*self.queue, id).await
    }

    /// Content-addresses the file, packages it (once per content and name) and queues delivery.
    async fn finish(&self, job: Job, path: &SafePath, fetched: Fetched) -> StageOutcome {
        tracing::info!(job_id = %job.id, bytes = fetched.size, sha256 = %fetched.sha256, "fetched");
        if let Err(e) = self.staging.adopt(job.id, path, &fetched.sha256).await {
            return retry(ErrorCode::StorageError, format!("{e:#}"));
        }
        if let Err(e) = self
            .lifecycle
            .repo
            .record_content(job.id, &fetched.sha256)
            .await
        {
            return retry(ErrorCode::DatabaseError, e);
        }
        let existing = match self
            .lifecycle
            .repo
            .find_packaged(&fetched.sha256, path.as_str())
            .await
        {
            Ok(m) => m,
            Err(e) => return retry(ErrorCode::DatabaseError, e),
        };
        let mut meta = match existing {
            Some(meta) => {
                tracing::info!(job_id = %job.id, info_hash = %meta.info_hash, "identical content was packaged before: reusing its torrent");
                meta
            }
            None => match self
                .packager
                .package(&self.staging.file(job.id, path), path.as_str())
                .await
            {
                Ok(meta) => meta,
                Err(e) => return retry(ErrorCode::EngineError, e),
            },
        };
        for f in &mut meta.files {
            f.selected = true;
            f.sha256 = Some(fetched.sha256.clone());
        }
        if let Err(e) = self.lifecycle.repo.record_metadata(job.id, &meta).await {
            return retry(ErrorCode::DatabaseError, e);
        }
        let progress = Progress::measured(fetched.size, fetched.size, 0);
        let _ = self.lifecycle.repo.record_progress(job.id, &progress).await;
        match self
            .lifecycle
            .advance(job.id, JobStatus::Downloading, JobStatus::Uploading, None)
            .await
        {
            Ok(_) => {}
            Err(MoveError::Repo(RepoError::Conflict { .. })) => return StageOutcome::Done,
            Err(e) => return retry(ErrorCode::DatabaseError, e),
        }
        if let Err(e) = self.queue.enqueue(Stage::Upload, job.id).await {
            tracing::error!(job_id = %job.id, error = %e, "could not queue delivery; recovery will");
        }
        StageOutcome::Done
    }

    async fn publish(&self, id: JobId, progress: Progress) {
        let event = JobEvent {
            job_id: id,
            kind: EventKind::Progress,
            status: JobStatus::Downloading,
            progress,
            error: None,
            at: self.lifecycle.clock.now(),
        };
        if let Err(e) = self.lifecycle.bus.publish(&event).await {
            tracing::debug!(job_id = %id, error = %e, "could not publish progress");
        }
    }
}
