//! Picking work up again after a restart: every unfinished job gets its stage queued, and
//! every job whose purge is pending gets the stage that carries the purge on.

use std::sync::Arc;

use ferry_domain::JobStatus;

use crate::ports::{JobQueue, JobRepository, QueueError, RepoError, Stage};

/// The stage that moves a job on from `status`.
pub fn stage_for(status: JobStatus, is_url: bool) -> Option<Stage> {
    match status {
        JobStatus::Queued | JobStatus::Resolving | JobStatus::Downloading | JobStatus::Paused => {
            Some(download_side(is_url))
        }
        JobStatus::Uploading => Some(Stage::Upload),
        JobStatus::Seeding => Some(Stage::Seed),
        _ => None,
    }
}

/// The stage that lets go of a job stopped (or finished) in `status`: it stops what runs for
/// the job where that runs (the engine, a fetch, an upload), frees what it holds, and hands
/// a pending purge on to delivery, which has the object stores and deletes the row last.
/// A completed job holds nothing but its delivered files, so its purge goes straight to
/// delivery; a cancelled or failed one may still have a torrent or staged data on the
/// download side.
pub fn stage_to_stop(status: JobStatus, is_url: bool) -> Stage {
    match status {
        JobStatus::Completed => Stage::Upload,
        other => stage_for(other, is_url).unwrap_or(download_side(is_url)),
    }
}

/// The stage that downloads the job: the fetch for a URL, the torrent download otherwise.
fn download_side(is_url: bool) -> Stage {
    if is_url {
        Stage::Fetch
    } else {
        Stage::Download
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

pub struct Recovery {
    pub repo: Arc<dyn JobRepository>,
    pub queue: Arc<dyn JobQueue>,
}

impl Recovery {
    /// Queues the stage of every unfinished job that has no live message (after a restart
    /// of the process, or of Redis without persistence), and the stage that carries on the
    /// purge of every job pending purge that no stage holds; returns how many were queued.
    /// Safe to run any time and from several processes: a duplicate message is harmless.
    ///
    /// # Errors
    /// When the repository or the queue fails.
    pub async fn requeue_orphans(&self) -> Result<usize, RecoveryError> {
        let jobs = self.repo.unfinished().await?;
        let mut queued = 0;
        for job in jobs {
            let id = job.id;
            let stage = if job.purge {
                // Any live message of the job carries the purge on when its stage lets go
                // (the stage still running must finish first), so only a job no stage
                // holds needs one.
                if self.held_anywhere(id).await? {
                    continue;
                }
                stage_to_stop(job.status, job.is_url)
            } else {
                let Some(stage) = stage_for(job.status, job.is_url) else {
                    continue;
                };
                if self.queue.holds(stage, id).await? {
                    continue;
                }
                stage
            };
            self.queue.enqueue(stage, id).await?;
            queued += 1;
        }
        if queued > 0 {
            tracing::info!(queued, "queued jobs that had lost their message");
        }
        Ok(queued)
    }

    async fn held_anywhere(&self, id: ferry_domain::JobId) -> Result<bool, QueueError> {
        for stage in Stage::ALL {
            if self.queue.holds(stage, id).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
