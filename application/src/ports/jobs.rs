//! `JobRepository`: where jobs live, with status changes applied conditionally.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_domain::{
    InfoHash, Job, JobError, JobId, JobStatus, OwnerId, Progress, SeedPolicy, SpeedLimits,
    SpeedLimitsChange, TorrentMetadata,
};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("job not found")]
    NotFound,
    /// The conditional update found the job in another status than expected.
    #[error("the job is {actual}, not {expected}")]
    Conflict {
        expected: JobStatus,
        actual: JobStatus,
    },
    #[error("a job with this id already exists")]
    AlreadyExists,
    /// The database cannot be reached; callers may retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// A status change `from → to` at `at`. Moving to `failed` records `error`; any other move
/// clears it. Moving to a terminal status stamps `finished_at`; moving to `seeding` stamps
/// `seeding_started_at` (kept when seeding ends); moving back to `queued` (a retry) resets
/// the attempt count and clears `finished_at`.
#[derive(Debug, Clone)]
pub struct Transition {
    pub from: JobStatus,
    pub to: JobStatus,
    pub at: DateTime<Utc>,
    pub error: Option<JobError>,
}

/// An unfinished job as recovery sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    pub id: JobId,
    pub status: JobStatus,
    /// The job fetches a URL (rather than a torrent).
    pub is_url: bool,
    /// The job's purge is pending (whatever its status).
    pub purge: bool,
}

/// A page of one owner's jobs, newest first.
#[derive(Debug, Clone)]
pub struct JobQuery {
    pub owner: OwnerId,
    pub status: Option<JobStatus>,
    /// Only jobs whose name contains this text, ignoring ASCII case.
    pub name_contains: Option<String>,
    /// Only jobs created before this one (keyset paging).
    pub before: Option<JobId>,
    pub limit: u32,
    /// Only torrent jobs, narrowed as given (qBittorrent's list).
    pub torrents: Option<TorrentFilter>,
}

/// Narrows a [`JobQuery`] to torrent jobs (magnets and .torrent files, not URL jobs, even
/// packaged ones) that have an info-hash and are not being purged, and to those of them
/// that match every filter given. Each list holds at most [`MAX_FILTER_VALUES`] values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TorrentFilter {
    pub info_hashes: Option<Vec<InfoHash>>,
    pub ids: Option<Vec<JobId>>,
    pub statuses: Option<Vec<JobStatus>>,
}

/// Most values one list of a [`TorrentFilter`] may hold (well under the databases' limits
/// on bound parameters).
pub const MAX_FILTER_VALUES: usize = 10_000;

#[async_trait]
pub trait JobRepository: Send + Sync + 'static {
    /// # Errors
    /// `AlreadyExists` if the id is taken.
    async fn insert(&self, job: &Job) -> Result<(), RepoError>;

    /// # Errors
    /// `NotFound` if no such job exists.
    async fn get(&self, id: JobId) -> Result<Job, RepoError>;

    /// The status alone: cheap enough to poll while a stage runs.
    ///
    /// # Errors
    /// `NotFound` if no such job exists.
    async fn status(&self, id: JobId) -> Result<JobStatus, RepoError>;

    /// What a running stage polls each tick: the status and the job's speed limits.
    ///
    /// # Errors
    /// `NotFound` if no such job exists.
    async fn watch(&self, id: JobId) -> Result<(JobStatus, SpeedLimits), RepoError>;

    /// Each of `ids` that is queued, with its place in the queue of its kind (torrents and
    /// URLs wait for different workers): 1 runs next. Jobs of every owner count, in the
    /// order they were queued (their last status change).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn queue_positions(
        &self,
        ids: &[JobId],
    ) -> Result<std::collections::HashMap<JobId, u32>, RepoError>;

    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn list(&self, query: &JobQuery) -> Result<Vec<Job>, RepoError>;

    /// Applies `change` only if the job is still in `change.from` and, when `change.to` is
    /// not a finished status, no purge is pending (a job being purged never starts new
    /// work); returns the updated job.
    ///
    /// # Errors
    /// `NotFound`, or `Conflict` with the status the job is actually in (which may be
    /// `change.from` itself when a pending purge refused the move).
    async fn transition(&self, id: JobId, change: &Transition) -> Result<Job, RepoError>;

    /// Marks the job for purging (idempotent) and returns it. The flag is never cleared:
    /// the job is deleted once its stages have let go of it.
    ///
    /// # Errors
    /// `NotFound` if no such job exists.
    async fn request_purge(&self, id: JobId) -> Result<Job, RepoError>;

    /// Stores the torrent's metadata (files, sizes, metainfo) once it is known.
    ///
    /// # Errors
    /// `NotFound` if no such job exists.
    async fn record_metadata(&self, id: JobId, metadata: &TorrentMetadata)
    -> Result<(), RepoError>;

    /// Records the SHA-256 of a delivered file.
    ///
    /// # Errors
    /// `NotFound` if no such job exists.
    async fn record_digest(
        &self,
        id: JobId,
        file_index: usize,
        sha256: &str,
    ) -> Result<(), RepoError>;

    /// Stores a progress snapshot.
    ///
    /// # Errors
    /// `NotFound` if no such job exists.
    async fn record_progress(&self, id: JobId, progress: &Progress) -> Result<(), RepoError>;

    /// Stores the number of attempts made so far and the last error seen.
    ///
    /// # Errors
    /// `NotFound` if no such job exists.
    async fn record_attempt(
        &self,
        id: JobId,
        attempts: u32,
        error: Option<&JobError>,
    ) -> Result<(), RepoError>;

    /// An unfinished job of `owner` for the same torrent, if any.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn find_unfinished_by_info_hash(
        &self,
        owner: &OwnerId,
        info_hash: InfoHash,
    ) -> Result<Option<JobId>, RepoError>;

    /// Every job that is not finished and not paused (for recovery), seeding ones included,
    /// and every job whose purge is pending, whatever its status.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn unfinished(&self) -> Result<Vec<Unfinished>, RepoError>;

    /// Records the most bytes the job may fetch (the owner's `job_bytes` quota when it was
    /// last submitted or retried; `None`: no limit).
    ///
    /// # Errors
    /// `NotFound` if no such job exists.
    async fn record_byte_limit(&self, id: JobId, limit: Option<u64>) -> Result<(), RepoError>;

    /// Records how the job seeds once finished (`None`: it does not).
    ///
    /// # Errors
    /// `NotFound` if no such job exists.
    async fn record_seed(&self, id: JobId, seed: Option<SeedPolicy>) -> Result<(), RepoError>;

    /// Changes the job's speed limits: only the directions `change` names are written.
    ///
    /// # Errors
    /// `NotFound` if no such job exists.
    async fn record_speed_limits(
        &self,
        id: JobId,
        change: SpeedLimitsChange,
    ) -> Result<(), RepoError>;

    /// Records a fetched URL's content address.
    ///
    /// # Errors
    /// `NotFound` if no such job exists.
    async fn record_content(&self, id: JobId, sha256: &str) -> Result<(), RepoError>;

    /// The torrent made earlier for the same content under the same name, if any (so
    /// identical content is packaged once).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn find_packaged(
        &self,
        sha256: &str,
        name: &str,
    ) -> Result<Option<TorrentMetadata>, RepoError>;

    /// # Errors
    /// `NotFound` if no such job exists.
    async fn delete(&self, id: JobId) -> Result<(), RepoError>;

    /// How many jobs are in each status, every owner together (for operators' gauges;
    /// statuses with no job are left out).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn count_by_status(&self) -> Result<Vec<(JobStatus, u64)>, RepoError>;

    /// # Errors
    /// `Unavailable` when the store does not answer.
    async fn ping(&self) -> Result<(), RepoError>;
}
