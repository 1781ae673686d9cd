//! `JobQueue`: hands stages of jobs to workers, at least once.

use std::time::Duration;

use async_trait::async_trait;
use ferry_domain::JobId;

/// A unit of work a worker can run for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Resolve metadata and download the torrent into staging.
    Download,
    /// Deliver staged files to the user's storage.
    Upload,
    /// Fetch an HTTP(S) URL into staging and package it as a torrent.
    Fetch,
    /// Seed a finished job until its policy says stop.
    Seed,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Download, Stage::Upload, Stage::Fetch, Stage::Seed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Download => "download",
            Self::Upload => "upload",
            Self::Fetch => "fetch",
            Self::Seed => "seed",
        }
    }
}

/// A claimed message: the worker holds it until it acks, releases or retries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub stage: Stage,
    pub job_id: JobId,
    /// 1 for the first delivery, counting every retry.
    pub attempt: u32,
    /// Adapter-specific handle for the claimed message.
    pub receipt: String,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is unavailable: {0}")]
    Unavailable(String),
    /// The lease is no longer this worker's (it expired, the message was settled, or another
    /// worker took it over): stop the stage without writing anything more for the job.
    #[error("the lease on this message was lost")]
    LeaseLost,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Asks for `stage` to run for `job_id` (again). Enqueueing a job whose stage is already
    /// waiting is harmless: handlers are idempotent.
    ///
    /// # Errors
    /// `Unavailable` when the queue cannot take the message now.
    async fn enqueue(&self, stage: Stage, job_id: JobId) -> Result<(), QueueError>;

    /// Waits up to `wait` for the next message of `stage`.
    ///
    /// # Errors
    /// `Unavailable` when the queue cannot be read.
    async fn claim(&self, stage: Stage, wait: Duration) -> Result<Option<Lease>, QueueError>;

    /// The stage's result is committed: forget the message.
    ///
    /// # Errors
    /// `Unavailable` when the queue cannot be reached.
    async fn ack(&self, lease: &Lease) -> Result<(), QueueError>;

    /// Deliver the message again after `delay`, as attempt `lease.attempt + 1`.
    ///
    /// # Errors
    /// `Unavailable` when the queue cannot be reached.
    async fn retry_later(&self, lease: &Lease, delay: Duration) -> Result<(), QueueError>;

    /// Give the message back after `after` without counting an attempt: at once when the
    /// worker stops (`Duration::ZERO`), later when the stage waits for something another
    /// job holds.
    ///
    /// # Errors
    /// `Unavailable` when the queue cannot be reached.
    async fn release(&self, lease: &Lease, after: Duration) -> Result<(), QueueError>;

    /// Keep holding the message while a long stage runs.
    ///
    /// # Errors
    /// `LeaseLost` when this worker no longer holds the message (its lease expired and
    /// another worker may run the stage now, or it was settled); `Unavailable` when the
    /// queue cannot be reached.
    async fn renew(&self, lease: &Lease) -> Result<(), QueueError>;

    /// Retries are exhausted: park the message where an operator can see it.
    ///
    /// # Errors
    /// `Unavailable` when the queue cannot be reached.
    async fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<(), QueueError>;

    /// Whether a message of `stage` for `job_id` is alive (waiting, delayed or held), so
    /// recovery queues only jobs whose message was lost.
    ///
    /// # Errors
    /// `Unavailable` when the queue cannot be reached.
    async fn holds(&self, stage: Stage, job_id: JobId) -> Result<bool, QueueError>;

    /// Messages of `stage` waiting to be claimed.
    ///
    /// # Errors
    /// `Unavailable` when the queue cannot be reached.
    async fn depth(&self, stage: Stage) -> Result<u64, QueueError>;

    /// The workers that have claimed messages of `stage`, for operators: how long since
    /// each last asked for work and how many messages it holds. A queue inside one process
    /// knows no other workers and answers none.
    ///
    /// # Errors
    /// `Unavailable` when the queue cannot be reached.
    async fn workers(&self, stage: Stage) -> Result<Vec<WorkerSeen>, QueueError> {
        let _ = stage;
        Ok(Vec::new())
    }

    /// What `stage`'s queue holds, for operators' gauges.
    ///
    /// # Errors
    /// `Unavailable` when the queue cannot be reached.
    async fn stats(&self, stage: Stage) -> Result<QueueStats, QueueError> {
        Ok(QueueStats {
            waiting: self.depth(stage).await?,
            ..QueueStats::default()
        })
    }

    /// Messages parked as dead letters, all stages together.
    ///
    /// # Errors
    /// `Unavailable` when the queue cannot be reached.
    async fn dead_letter_count(&self) -> Result<u64, QueueError> {
        Ok(0)
    }
}

/// A stage queue's contents at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages ready for a worker and not claimed yet.
    pub waiting: u64,
    /// How long the oldest of them has been ready (`None`: none waits).
    pub oldest_waiting: Option<Duration>,
    /// Messages claimed by a worker and not settled yet (leases held).
    pub held: u64,
}

impl QueueStats {
    /// The stats of a queue held in memory: its messages' visibility times (delayed ones
    /// are not waiting yet) and the leases held, at `now`.
    pub fn in_memory(
        now: tokio::time::Instant,
        visible_at: impl IntoIterator<Item = tokio::time::Instant>,
        held: u64,
    ) -> Self {
        let ready: Vec<tokio::time::Instant> =
            visible_at.into_iter().filter(|at| *at <= now).collect();
        Self {
            waiting: ready.len() as u64,
            oldest_waiting: ready.iter().min().map(|at| now.duration_since(*at)),
            held,
        }
    }
}

/// A worker as its queue last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSeen {
    /// The name it claims under (`hostname-pid`).
    pub name: String,
    /// Since it last asked the queue for work.
    pub idle: Duration,
    /// Messages it holds and has not settled.
    pub pending: u64,
}
