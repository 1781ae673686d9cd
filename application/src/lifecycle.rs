//! Moving a job between statuses: check the domain table, apply the change conditionally,
//! tell every watcher.

use std::sync::Arc;

use ferry_domain::{IllegalTransition, Job, JobError, JobId, JobStatus};

use crate::ports::{
    Clock, EventKind, JobEvent, JobNotices, JobRepository, ProgressBus, RepoError, Transition,
};

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// The shared way to change a job's status; used by the API's use cases and the stages.
#[derive(Clone)]
pub struct Lifecycle {
    pub repo: Arc<dyn JobRepository>,
    pub bus: Arc<dyn ProgressBus>,
    pub clock: Arc<dyn super::ports::Clock>,
    /// Told after every change (webhooks' outbox); `None`: nobody is.
    pub notices: Option<Arc<dyn JobNotices>>,
}

impl Lifecycle {
    pub fn new(
        repo: Arc<dyn JobRepository>,
        bus: Arc<dyn ProgressBus>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            repo,
            bus,
            clock,
            notices: None,
        }
    }

    /// The same lifecycle, telling `notices` about every change it makes.
    #[must_use]
    pub fn with_notices(mut self, notices: Arc<dyn JobNotices>) -> Self {
        self.notices = Some(notices);
        self
    }

    /// Moves the job `from → to` if it is still in `from`, then publishes a status event and
    /// tells `notices` about this transition (`from`, `to`: the job read back may already be
    /// in a later status).
    ///
    /// # Errors
    /// `Illegal` if the table forbids the move; `Repo(Conflict)` if the job moved meanwhile.
    pub async fn advance(
        &self,
        id: JobId,
        from: JobStatus,
        to: JobStatus,
        error: Option<JobError>,
    ) -> Result<Job, MoveError> {
        from.check(to)?;
        let change = Transition {
            from,
            to,
            at: self.clock.now(),
            error,
        };
        let job = self.repo.transition(id, &change).await?;
        tracing::info!(job_id = %id, %from, %to, "job status changed");
        self.announce(&job, EventKind::Status).await;
        if let Some(notices) = &self.notices {
            notices.job_moved(&job, from, to).await;
        }
        Ok(job)
    }

    /// Publishes the job's current state. A bus failure is logged, never fatal: the
    /// database stays the source of truth and watchers catch up from it.
    pub async fn announce(&self, job: &Job, kind: EventKind) {
        let event = JobEvent {
            job_id: job.id,
            owner: job.owner.clone(),
            kind,
            status: job.status,
            progress: job.progress,
            error: job.error.clone(),
            at: self.clock.now(),
        };
        if let Err(e) = self.bus.publish(&event).await {
            tracing::warn!(job_id = %job.id, error = %e, "could not publish a job event");
        }
    }
}
