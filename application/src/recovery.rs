//! Picking work up again after a restart: every unfinished job gets its stage queued.

use std::sync::Arc;

use ferry_domain::JobStatus;

use crate::ports::{JobQueue, JobRepository, QueueError, RepoError, Stage};

/// The stage that moves a job on from `status`.
pub fn stage_for(status: JobStatus, is_url: bool) -> Option<Stage> {
    match status {
        JobStatus::Queued | JobStatus::Resolving | JobStatus::Downloading | JobStatus::Paused => {
            Some(if is_url {
                Stage::Fetch
            } else {
                Stage::Download
            })
        }
        JobStatus::Uploading => Some(Stage::Upload),
        JobStatus::Seeding => Some(Stage::Seed),
        _ => None,
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
    /// of the process, or of Redis without persistence); returns how many were queued.
    /// Safe to run any time and from several processes: a duplicate message is harmless.
    ///
    /// # Errors
    /// When the repository or the queue fails.
    pub async fn requeue_orphans(&self) -> Result<usize, RecoveryError> {
        let jobs = self.repo.unfinished().await?;
        let mut queued = 0;
        for job in jobs {
            let Some(stage) = stage_for(job.status, job.is_url) else {
                continue;
            };
            let id = job.id;
            if self.queue.holds(stage, id).await? {
                continue;
            }
            self.queue.enqueue(stage, id).await?;
            queued += 1;
        }
        if queued > 0 {
            tracing::info!(queued, "queued unfinished jobs that had lost their message");
        }
        Ok(queued)
    }
}
