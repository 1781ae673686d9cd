//! The user-facing use cases: submit, inspect, list, control jobs and find their files.

use std::sync::Arc;

use ferry_domain::{
    FileSelection, FileSelectionError, IllegalTransition, Job, JobFile, JobId, JobStatus,
    MagnetError, MagnetLink, OwnerId, ProfileId, SafePathError, StorageKey, TorrentLimitError,
    TorrentLimits, TorrentMetadata,
};

use crate::lifecycle::{Lifecycle, MoveError};
use crate::ports::{
    AddressError, AddressGuard, EngineError, EventKind, JobQuery, JobQueue, LiveFileError,
    LiveFiles, LiveReader, ObjectLocation, ObjectStore, ProfileRepository, QueueError, RepoError,
    Stage, StoreError, StoreResolver, TorrentInspector,
};

/// Trackers checked at once when a submission names many.
const TRACKER_CHECKS_AT_ONCE: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error(transparent)]
    InvalidUrl(#[from] ferry_domain::FetchUrlError),
    /// The URL, a redirect or an address it resolves to is internal.
    #[error("{0}")]
    UrlNotAllowed(String),
    /// The server refused for good (a 4xx such as 404 or 410) or the content breaks a limit
    /// (size, type): asking again will not help.
    #[error("{0}")]
    UrlRefused(String),
    /// The server cannot be reached now, timed out, or answered an error that may pass
    /// (5xx, 408, 429): asking again later may succeed.
    #[error("{0}")]
    UrlUnreachable(String),
    /// A tracker is, or resolves to, an internal address (the reason is for the log).
    #[error("tracker {host} is not allowed: it is, or resolves to, an internal address")]
    TrackerNotAllowed { host: String, reason: String },
    /// A peer given with the magnet (`x.pe`) is at an internal address.
    #[error("peer {0} is not allowed: it is an internal address")]
    PeerNotAllowed(std::net::SocketAddr),
    /// The operator's block list refuses the torrent or URL.
    #[error("{0}")]
    Blocked(String),
    /// The job has no torrent yet (metadata unknown, or not packaged yet).
    #[error("the job's torrent is not known yet")]
    TorrentNotReady,
    #[error(transparent)]
    InvalidMagnet(#[from] MagnetError),
    #[error("{0}")]
    InvalidTorrent(String),
    #[error(transparent)]
    UnsafePath(#[from] SafePathError),
    #[error(transparent)]
    TorrentLimit(#[from] TorrentLimitError),
    #[error(transparent)]
    InvalidSelection(#[from] FileSelectionError),
    #[error(transparent)]
    InvalidSpeedLimit(#[from] ferry_domain::SpeedLimitError),
    #[error("job not found")]
    NotFound,
    /// The job would take its owner past a quota.
    #[error("quota {quota} exceeded: the limit is {limit}, the usage {usage}")]
    QuotaExceeded {
        quota: &'static str,
        limit: u64,
        usage: u64,
    },
    #[error("storage profile {0} not found")]
    ProfileNotFound(ProfileId),
    #[error("an unfinished job ({0}) already downloads this torrent")]
    Duplicate(JobId),
    /// A submission with a chosen id ([`SubmitOptions::id`]) whose job already exists: an
    /// earlier attempt of the same submission got through.
    #[error("job {0} was already submitted")]
    AlreadySubmitted(JobId),
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    #[error("the job is {0}; its files can be fetched once it is completed")]
    NotFinished(JobStatus),
    #[error("the job has no file with index {0}")]
    FileNotFound(usize),
    #[error("file {0} was not selected for download")]
    FileNotSelected(usize),
    /// The job and its files are being deleted.
    #[error("the job is being deleted")]
    Purging,
    #[error("a backend is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<RepoError> for JobsError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::NotFound => Self::NotFound,
            RepoError::Unavailable(m) => Self::Unavailable(m),
            other => Self::Unexpected(other.into()),
        }
    }
}

impl From<QueueError> for JobsError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Unavailable(m) => Self::Unavailable(m),
            QueueError::Unexpected(e) => Self::Unexpected(e),
            lost @ QueueError::LeaseLost => Self::Unexpected(lost.into()),
        }
    }
}

impl From<EngineError> for JobsError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::InvalidTorrent(m) => Self::InvalidTorrent(m),
            EngineError::UnsafePath(p) => Self::UnsafePath(p),
            other => Self::Unexpected(other.into()),
        }
    }
}

impl From<StoreError> for JobsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unreachable(m)
            | StoreError::AuthFailed(m)
            | StoreError::NotAllowed(m)
            | StoreError::NotConfigured(m)
            | StoreError::FolderRefused(m) => Self::Unavailable(m),
            other => Self::Unexpected(other.into()),
        }
    }
}

impl From<MoveError> for JobsError {
    fn from(e: MoveError) -> Self {
        match e {
            MoveError::Illegal(i) => Self::IllegalTransition(i),
            MoveError::Repo(r) => r.into(),
        }
    }
}

/// What a user submits.
#[derive(Debug, Clone)]
pub enum Submission {
    Magnet(String),
    Torrent(Vec<u8>),
    Url(String),
}

/// Choices made at submission.
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    /// Torrent file indices to fetch (all when `None`).
    pub files: Option<Vec<usize>>,
    pub storage_profile: Option<ProfileId>,
    /// Seed the finished job under this policy.
    pub seed: Option<ferry_domain::SeedPolicy>,
    /// Add it paused (qBittorrent's `paused`/`stopped`): nothing runs until it is resumed.
    pub paused: bool,
    /// The job's id, chosen by the caller (`None`: a new one). A caller that records the
    /// id before it submits (a feed's match) can submit again after a crash: the second
    /// attempt answers [`JobsError::AlreadySubmitted`] instead of making a second job.
    pub id: Option<JobId>,
    /// The job's own speed limits.
    pub limits: ferry_domain::SpeedLimits,
}

/// What an owner uses of what quotas limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Jobs queued, resolving, downloading, paused or uploading.
    pub active_jobs: u64,
    /// Bytes of the files of completed and seeding jobs.
    pub stored_bytes: u64,
    pub seeding_jobs: u64,
}

/// A finished file and where to read it.
#[derive(Debug, Clone)]
pub struct FileDownload {
    pub file: JobFile,
    pub location: ObjectLocation,
}

/// Where a job's file can be read now.
pub enum FileSource {
    /// Delivered: in the job's storage.
    Stored(FileDownload),
    /// Not delivered yet, readable from this process's engine.
    Live(LiveFile),
}

impl FileSource {
    pub fn file(&self) -> &JobFile {
        match self {
            Self::Stored(d) => &d.file,
            Self::Live(l) => &l.file,
        }
    }
}

/// A file of an unfinished job, to be opened at the position a request asks for.
pub struct LiveFile {
    pub file: JobFile,
    job_id: JobId,
    /// The job's download is over: the file is whole in staging, waiting for delivery.
    staged: bool,
    files: Arc<dyn LiveFiles>,
}

impl LiveFile {
    /// The file from byte `start` (less than its size). Waits for the first bytes.
    ///
    /// # Errors
    /// As [`LiveFiles::open`].
    pub async fn open(&self, start: u64) -> Result<LiveReader, LiveFileError> {
        if self.staged {
            let path = self
                .file
                .safe_path()
                .map_err(|e| LiveFileError::Unexpected(e.into()))?;
            self.files.open_staged(self.job_id, &path, start).await
        } else {
            // The job says `downloading` a moment before its torrent is in the engine (and
            // longer on a busy machine): a read then waits for it as for its first bytes.
            let deadline = tokio::time::Instant::now() + LIVE_START_GRACE;
            loop {
                match self.files.open(self.job_id, self.file.index, start).await {
                    Err(LiveFileError::NotRunning) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    other => return other,
                }
            }
        }
    }
}

/// How long a read of a downloading job's file waits for its torrent to start.
const LIVE_START_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Jobs {
    pub lifecycle: Lifecycle,
    pub queue: Arc<dyn JobQueue>,
    pub inspector: Arc<dyn TorrentInspector>,
    pub profiles: Arc<dyn ProfileRepository>,
    pub stores: Arc<dyn StoreResolver>,
    pub fetcher: Arc<dyn crate::ports::Fetcher>,
    pub limits: TorrentLimits,
    /// Where trackers and peers may be (`torrent.allow`): the engine must not be made to
    /// contact internal addresses on a user's behalf.
    pub torrent_addresses: Arc<dyn AddressGuard>,
    /// Torrents and URLs the operator refuses (`blocklist.*`), reloaded while running.
    pub blocklist: Arc<SubmissionBlocklistHandle>,
    /// Files of unfinished jobs, where this process runs the engine (`ferry serve`);
    /// `None` elsewhere: an unfinished job's files are then not readable.
    pub live: Option<Arc<dyn LiveFiles>>,
}

/// The submission block list in force; the wiring replaces it when its file changes.
#[derive(Debug, Default)]
pub struct SubmissionBlocklistHandle {
    current: std::sync::RwLock<Arc<ferry_domain::SubmissionBlocklist>>,
}

impl SubmissionBlocklistHandle {
    pub fn new(list: ferry_domain::SubmissionBlocklist) -> Self {
        Self {
            current: std::sync::RwLock::new(Arc::new(list)),
        }
    }

    pub fn replace(&self, list: ferry_domain::SubmissionBlocklist) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(list);
    }

    pub fn current(&self) -> Arc<ferry_domain::SubmissionBlocklist> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn check_hash(&self, hash: &ferry_domain::InfoHash) -> Result<(), JobsError> {
        if self.current().blocks_hash(hash) {
            tracing::info!(info_hash = %hash, "torrent refused by the block list");
            return Err(JobsError::Blocked(format!(
                "this server does not download the torrent {hash}"
            )));
        }
        Ok(())
    }

    fn check_url(&self, url: &str) -> Result<(), JobsError> {
        if let Some(pattern) = self.current().blocking_pattern(url) {
            tracing::info!(pattern, "URL refused by the block list");
            return Err(JobsError::Blocked(
                "this server does not fetch this URL (the operator's block list)".to_owned(),
            ));
        }
        Ok(())
    }
}

impl JobsError {
    fn from_fetch(e: crate::ports::FetchError) -> Self {
        match e {
            crate::ports::FetchError::NotAllowed(m) => Self::UrlNotAllowed(m),
            crate::ports::FetchError::Blocked(m) => Self::Blocked(m),
            other if other.is_transient() => Self::UrlUnreachable(other.to_string()),
            other => Self::UrlRefused(other.to_string()),
        }
    }
}

impl Jobs {
    /// Reads a .torrent without starting a download: name, files, sizes, hash, trackers.
    ///
    /// # Errors
    /// `InvalidTorrent`, `UnsafePath` or `TorrentLimit`.
    pub fn analyze(&self, metainfo: &[u8]) -> Result<TorrentMetadata, JobsError> {
        let meta = self.inspector.inspect(metainfo)?;
        self.limits.check(meta.files.len(), meta.total_bytes)?;
        Ok(meta)
    }

    /// Creates a queued job and asks a worker to download it.
    ///
    /// # Errors
    /// Input errors (`InvalidMagnet`, `InvalidTorrent`, `UnsafePath`, `TorrentLimit`,
    /// `InvalidSelection`), `Duplicate`, or `Unavailable`.
    pub async fn submit(
        &self,
        owner: OwnerId,
        submission: Submission,
        files: Option<Vec<usize>>,
        storage_profile: Option<ProfileId>,
    ) -> Result<Job, JobsError> {
        let options = SubmitOptions {
            files,
            storage_profile,
            seed: None,
            paused: false,
            id: None,
            limits: Default::default(),
        };
        self.submit_with(owner, submission, options).await
    }

    /// [`Jobs::submit`] with every option.
    ///
    /// # Errors
    /// As [`Jobs::submit`], plus `InvalidUrl`, `UrlNotAllowed` and `UrlRefused` for URLs.
    pub async fn submit_with(
        &self,
        owner: OwnerId,
        submission: Submission,
        options: SubmitOptions,
    ) -> Result<Job, JobsError> {
        self.submit_within(owner, submission, options, ferry_domain::Quotas::default())
            .await
    }

    /// [`Self::submit_with`], refused with [`JobsError::QuotaExceeded`] when the job would
    /// take the owner past one of `quotas` (checked at submission: two submissions at the
    /// same instant may both pass the last free place).
    ///
    /// # Errors
    /// As [`Self::submit_with`], and `QuotaExceeded`.
    pub async fn submit_within(
        &self,
        owner: OwnerId,
        submission: Submission,
        options: SubmitOptions,
        quotas: ferry_domain::Quotas,
    ) -> Result<Job, JobsError> {
        let SubmitOptions {
            files,
            storage_profile,
            seed,
            paused,
            id: chosen,
            limits,
        } = options;
        if let Some(id) = chosen {
            self.check_submitted(&owner, id).await?;
        }
        let selection = FileSelection::chosen(files, self.limits.max_files)?;
        if matches!(submission, Submission::Url(_)) && limits.download_bps.is_some() {
            return Err(ferry_domain::SpeedLimitError::DownloadOfUrl.into());
        }
        if let Some(id) = storage_profile
            && self.profiles.get(&owner, id).await?.is_none()
        {
            return Err(JobsError::ProfileNotFound(id));
        }
        let now = self.lifecycle.clock.now();
        let job = match submission {
            Submission::Magnet(text) => {
                let magnet = MagnetLink::parse(&text)?;
                self.blocklist.check_hash(&magnet.info_hash())?;
                self.check_peers(magnet.peers()).await?;
                self.check_trackers(magnet.trackers().iter().map(url::Url::as_str))
                    .await?;
                Job::from_magnet(owner, magnet, selection, now)
            }
            Submission::Torrent(bytes) => {
                let meta = self.analyze(&bytes)?;
                self.blocklist.check_hash(&meta.info_hash)?;
                selection.validate(&meta.files)?;
                self.check_trackers(meta.trackers.iter().map(String::as_str))
                    .await?;
                Job::from_torrent(owner, meta, selection, now)
            }
            Submission::Url(text) => {
                let url = ferry_domain::FetchUrl::parse(&text)?;
                // Before any connection: a refused URL is never contacted.
                self.blocklist.check_url(url.as_url().as_str())?;
                let size = self.probe(&url).await?;
                if let (Some(limit), Some(size)) = (quotas.job_bytes, size)
                    && size > limit
                {
                    return Err(JobsError::QuotaExceeded {
                        quota: "job_bytes",
                        limit,
                        usage: size,
                    });
                }
                Job::from_url(owner, url, now)
            }
        };
        let stage = Self::stage_of(&job);
        let status = if paused {
            JobStatus::Paused
        } else {
            job.status
        };
        let job = Job {
            id: chosen.unwrap_or(job.id),
            storage_profile,
            seed,
            byte_limit: quotas.job_bytes,
            speed_limits: limits,
            status,
            ..job
        };
        if let Some(hash) = job.info_hash
            && let Some(existing) = self
                .lifecycle
                .repo
                .find_unfinished_by_info_hash(&job.owner, hash)
                .await?
        {
            return Err(JobsError::Duplicate(existing));
        }
        self.check_quotas(&job, quotas).await?;
        match self.lifecycle.repo.insert(&job).await {
            Ok(()) => {}
            // A concurrent attempt of the same submission inserted it first.
            Err(RepoError::AlreadyExists) if chosen.is_some() => {
                self.check_submitted(&job.owner, job.id).await?;
                return Err(self.duplicate_of(&job).await);
            }
            // A concurrent submission of the same torrent won the unique index.
            Err(RepoError::AlreadyExists) if job.info_hash.is_some() => {
                return Err(self.duplicate_of(&job).await);
            }
            Err(e) => return Err(e.into()),
        }
        if paused {
            // Queued by `resume`.
        } else if let Err(e) = self.queue.enqueue(stage, job.id).await {
            // Refuse cleanly rather than leave a job the caller was told failed.
            if let Err(undo) = self.lifecycle.repo.delete(job.id).await {
                tracing::error!(job_id = %job.id, error = %undo, "could not remove a job that was not queued");
            }
            return Err(e.into());
        }
        tracing::info!(job_id = %job.id, source = job.source.kind(), name = %job.name, "job submitted");
        self.lifecycle.announce(&job, EventKind::Status).await;
        Ok(job)
    }

    /// `AlreadySubmitted` when the owner's job `id` exists (another owner's is no answer:
    /// `Unexpected`, never a sign of theirs).
    async fn check_submitted(&self, owner: &OwnerId, id: JobId) -> Result<(), JobsError> {
        match self.lifecycle.repo.get(id).await {
            Ok(job) if &job.owner == owner => Err(JobsError::AlreadySubmitted(id)),
            Ok(_) => Err(JobsError::Unexpected(anyhow::anyhow!(
                "a chosen job id belongs to another owner's job"
            ))),
            Err(RepoError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Refuses a tracker the operator's block list names, or that is, or resolves to, an
    /// internal address. A name that does not resolve now is accepted (trackers come and
    /// go); text that is not a URL is skipped, as the engine skips it.
    async fn check_trackers<'a>(
        &self,
        trackers: impl Iterator<Item = &'a str>,
    ) -> Result<(), JobsError> {
        use futures::StreamExt;
        let trackers: Vec<&str> = trackers.collect();
        for tracker in &trackers {
            self.blocklist.check_url(tracker)?;
        }
        let mut hosts: Vec<String> = trackers
            .into_iter()
            .filter_map(|t| url::Url::parse(t).ok())
            .filter_map(|u| u.host_str().map(str::to_owned))
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        let mut checks = futures::stream::iter(hosts)
            .map(|host| async move {
                let outcome = self.torrent_addresses.check_host(&host).await;
                (host, outcome)
            })
            .buffer_unordered(TRACKER_CHECKS_AT_ONCE);
        while let Some((host, outcome)) = checks.next().await {
            match outcome {
                Ok(()) => {}
                Err(AddressError::NotAllowed(reason)) => {
                    tracing::info!(tracker = %host, reason = %reason, "tracker refused");
                    return Err(JobsError::TrackerNotAllowed { host, reason });
                }
                Err(AddressError::Unresolved(why)) => {
                    tracing::debug!(tracker = %host, reason = %why, "tracker not resolvable now; accepted");
                }
            }
        }
        Ok(())
    }

    /// Refuses `x.pe` peers at internal addresses (the engine would connect to them first).
    async fn check_peers(&self, peers: &[std::net::SocketAddr]) -> Result<(), JobsError> {
        for peer in peers {
            if let Err(AddressError::NotAllowed(reason)) = self
                .torrent_addresses
                .check_host(&peer.ip().to_string())
                .await
            {
                tracing::info!(peer = %peer, reason = %reason, "peer refused");
                return Err(JobsError::PeerNotAllowed(*peer));
            }
        }
        Ok(())
    }

    /// Asks the server for the URL's headers before accepting it, so an internal address, a
    /// redirect to one, an error status or a content beyond the limits is refused at once.
    /// A server that cannot be reached now is not a reason to refuse: the job retries.
    /// The content's size, when the server says.
    async fn probe(&self, url: &ferry_domain::FetchUrl) -> Result<Option<u64>, JobsError> {
        use crate::ports::FetchError;
        match self.fetcher.open(url, None).await {
            Ok(body) => Ok(body.info().size),
            Err(FetchError::NotAllowed(m)) => Err(JobsError::UrlNotAllowed(m)),
            Err(FetchError::Blocked(m)) => Err(JobsError::Blocked(m)),
            Err(e) if e.is_transient() => {
                tracing::info!(url = %url.for_log(), error = %e, "URL not reachable now; accepting the job anyway");
                Ok(None)
            }
            Err(e) => Err(JobsError::UrlRefused(e.to_string())),
        }
    }

    /// # Errors
    /// `NotFound` when the job does not exist or belongs to someone else.
    pub async fn get(&self, owner: &OwnerId, id: JobId) -> Result<Job, JobsError> {
        let job = self.lifecycle.repo.get(id).await?;
        if &job.owner != owner {
            return Err(JobsError::NotFound);
        }
        Ok(job)
    }

    /// # Errors
    /// `Unavailable` when the repository is.
    pub async fn list(&self, query: &JobQuery) -> Result<Vec<Job>, JobsError> {
        Ok(self.lifecycle.repo.list(query).await?)
    }

    /// The place in the queue of each of `jobs` that is queued (1 runs next; see
    /// [`crate::ports::JobRepository::queue_positions`]).
    ///
    /// # Errors
    /// `Unavailable` when the repository is.
    pub async fn queue_positions(
        &self,
        jobs: &[Job],
    ) -> Result<std::collections::HashMap<JobId, u32>, JobsError> {
        let queued: Vec<JobId> = jobs
            .iter()
            .filter(|j| j.status == JobStatus::Queued)
            .map(|j| j.id)
            .collect();
        if queued.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        Ok(self.lifecycle.repo.queue_positions(&queued).await?)
    }

    /// Changes a job's speed limits (both, from [`ferry_domain::SpeedLimits`], or one
    /// direction); a running torrent takes them within a tick of its stage (downloading or
    /// seeding), a job that runs later starts with them. A URL job takes an upload limit
    /// only (for when it seeds). Returns the job as it is after the change.
    ///
    /// # Errors
    /// `NotFound`, `Purging`, `InvalidSpeedLimit` (a download limit for a URL).
    pub async fn set_speed_limits(
        &self,
        owner: &OwnerId,
        id: JobId,
        change: impl Into<ferry_domain::SpeedLimitsChange>,
    ) -> Result<Job, JobsError> {
        let change = change.into();
        let job = self.get(owner, id).await?;
        if job.purge_requested {
            return Err(JobsError::Purging);
        }
        if matches!(job.source, ferry_domain::JobSource::Url(_))
            && matches!(change.download_bps, Some(Some(_)))
        {
            return Err(ferry_domain::SpeedLimitError::DownloadOfUrl.into());
        }
        self.lifecycle.repo.record_speed_limits(id, change).await?;
        // Read back: the other direction may have changed meanwhile.
        self.get(owner, id).await
    }

    /// Pauses a downloading job (its worker stops the torrent or fetch and keeps the data), or
    /// a torrent job waiting in the queue (it leaves the queue until resumed).
    ///
    /// # Errors
    /// `NotFound`, or `IllegalTransition` unless the job is downloading or a queued torrent.
    pub async fn pause(&self, owner: &OwnerId, id: JobId) -> Result<Job, JobsError> {
        let job = self.get(owner, id).await?;
        // A URL job resumes to `downloading`, continuing its partial file: one that never
        // started (or a retry, which starts over) must not be paused before its fetch runs.
        if job.status == JobStatus::Queued && matches!(job.source, ferry_domain::JobSource::Url(_))
        {
            return Err(IllegalTransition {
                from: job.status,
                to: JobStatus::Paused,
            }
            .into());
        }
        self.advance(id, job.status, JobStatus::Paused).await
    }

    /// Resumes a paused job with its own stage: a torrent job joins the queue (at its end,
    /// with a place like any queued job) and a worker restarts it when one is free, reusing
    /// the staged data; a URL job goes back to `downloading` and its fetch continues the
    /// partial file.
    ///
    /// # Errors
    /// `NotFound`, or `IllegalTransition` unless the job is paused.
    pub async fn resume(&self, owner: &OwnerId, id: JobId) -> Result<Job, JobsError> {
        let job = self.get(owner, id).await?;
        if job.status != JobStatus::Paused {
            // Resolving → downloading is the stage's move, not the user's.
            return Err(IllegalTransition {
                from: job.status,
                to: JobStatus::Downloading,
            }
            .into());
        }
        // A torrent job joins the queue: until a worker is free it waits as queued jobs do,
        // with its place (a magnet added paused resolves its metadata first; a job with
        // metadata passes through `resolving` at once). A URL job goes on downloading: its
        // fetch continues the partial file, which only an interrupted fetch (`downloading`)
        // may do; a fetch from `resolving` starts over.
        let to = if matches!(job.source, ferry_domain::JobSource::Url(_)) {
            JobStatus::Downloading
        } else {
            JobStatus::Queued
        };
        let job = self.advance(id, JobStatus::Paused, to).await?;
        self.queue.enqueue(Self::stage_of(&job), id).await?;
        Ok(job)
    }

    /// Runs a failed job again from the start with its own stage (data already staged is
    /// reused).
    ///
    /// # Errors
    /// `NotFound`, or `IllegalTransition` unless the job failed.
    /// What the owner uses of what quotas limit: jobs active and seeding, and the bytes of
    /// their finished jobs' files.
    ///
    /// # Errors
    /// A repository failure.
    pub async fn usage(&self, owner: &OwnerId) -> Result<Usage, JobsError> {
        let mut usage = Usage::default();
        for status in [
            JobStatus::Queued,
            JobStatus::Resolving,
            JobStatus::Downloading,
            JobStatus::Paused,
            JobStatus::Uploading,
            JobStatus::Completed,
            JobStatus::Seeding,
        ] {
            let mut before = None;
            loop {
                let page = self
                    .lifecycle
                    .repo
                    .list(&JobQuery {
                        owner: owner.clone(),
                        status: Some(status),
                        name_contains: None,
                        before,
                        limit: 500,
                        torrents: None,
                    })
                    .await?;
                for job in &page {
                    match status {
                        JobStatus::Completed | JobStatus::Seeding => {
                            usage.stored_bytes += job.progress.bytes_total;
                            if status == JobStatus::Seeding {
                                usage.seeding_jobs += 1;
                            }
                        }
                        _ => usage.active_jobs += 1,
                    }
                }
                if page.len() < 500 {
                    break;
                }
                before = page.last().map(|j| j.id);
            }
        }
        Ok(usage)
    }

    async fn check_quotas(&self, job: &Job, quotas: ferry_domain::Quotas) -> Result<(), JobsError> {
        let exceeded = |quota, limit, usage| JobsError::QuotaExceeded {
            quota,
            limit,
            usage,
        };
        if let (Some(limit), Some(meta)) = (quotas.job_bytes, &job.metadata) {
            let size = meta.selected_bytes();
            if size > limit {
                return Err(exceeded("job_bytes", limit, size));
            }
        }
        let seeds = job.seed.is_some();
        let counted = quotas.active_jobs.is_some()
            || quotas.stored_bytes.is_some()
            || (seeds && quotas.seeding_jobs.is_some());
        if !counted {
            return Ok(());
        }
        let usage = self.usage(&job.owner).await?;
        if let Some(limit) = quotas.active_jobs
            && usage.active_jobs >= limit
        {
            return Err(exceeded("active_jobs", limit, usage.active_jobs));
        }
        if let Some(limit) = quotas.stored_bytes
            && usage.stored_bytes >= limit
        {
            return Err(exceeded("stored_bytes", limit, usage.stored_bytes));
        }
        if seeds
            && let Some(limit) = quotas.seeding_jobs
            && usage.seeding_jobs >= limit
        {
            return Err(exceeded("seeding_jobs", limit, usage.seeding_jobs));
        }
        Ok(())
    }

    pub async fn retry(&self, owner: &OwnerId, id: JobId) -> Result<Job, JobsError> {
        self.retry_within(owner, id, ferry_domain::Quotas::default())
            .await
    }

    /// [`Self::retry`] within the owner's active-jobs quota.
    ///
    /// # Errors
    /// As [`Self::retry`], and `QuotaExceeded`.
    pub async fn retry_within(
        &self,
        owner: &OwnerId,
        id: JobId,
        quotas: ferry_domain::Quotas,
    ) -> Result<Job, JobsError> {
        let job = self.get(owner, id).await?;
        if job.status == JobStatus::Failed
            && let Some(limit) = quotas.active_jobs
        {
            let usage = self.usage(owner).await?;
            if usage.active_jobs >= limit {
                return Err(JobsError::QuotaExceeded {
                    quota: "active_jobs",
                    limit,
                    usage: usage.active_jobs,
                });
            }
        }
        if job.status != JobStatus::Failed {
            return Err(IllegalTransition {
                from: job.status,
                to: JobStatus::Queued,
            }
            .into());
        }
        // One unfinished job per owner and torrent, on retry too: the database's unique
        // index refuses the move if another job started meanwhile.
        if let Some(hash) = job.info_hash
            && Self::stage_of(&job) == Stage::Download
            && let Some(existing) = self
                .lifecycle
                .repo
                .find_unfinished_by_info_hash(&job.owner, hash)
                .await?
        {
            return Err(JobsError::Duplicate(existing));
        }
        // The limit of today's quota (an admin may have changed it since the job failed);
        // a torrent whose chosen files are over it is refused at once.
        if let (Some(limit), Some(meta)) = (quotas.job_bytes, &job.metadata) {
            let size = meta.selected_bytes();
            if size > limit {
                return Err(JobsError::QuotaExceeded {
                    quota: "job_bytes",
                    limit,
                    usage: size,
                });
            }
        }
        if job.byte_limit != quotas.job_bytes {
            self.lifecycle
                .repo
                .record_byte_limit(id, quotas.job_bytes)
                .await?;
        }
        let job = match self
            .lifecycle
            .advance(id, JobStatus::Failed, JobStatus::Queued, None)
            .await
        {
            Ok(moved) => moved,
            Err(MoveError::Repo(RepoError::AlreadyExists)) => {
                return Err(self.duplicate_of(&job).await);
            }
            Err(MoveError::Repo(RepoError::Conflict { actual, .. })) => {
                return Err(IllegalTransition {
                    from: actual,
                    to: JobStatus::Queued,
                }
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        self.queue.enqueue(Self::stage_of(&job), id).await?;
        Ok(job)
    }

    /// The error for `job` losing the one-unfinished-job-per-torrent index to another job.
    async fn duplicate_of(&self, job: &Job) -> JobsError {
        let existing = match job.info_hash {
            Some(hash) => self
                .lifecycle
                .repo
                .find_unfinished_by_info_hash(&job.owner, hash)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        match existing {
            Some(existing) if existing != job.id => JobsError::Duplicate(existing),
            // The other job finished in between: the caller may simply try again.
            _ => JobsError::Unavailable("another job of this torrent was changing".into()),
        }
    }

    /// The stage that downloads the job.
    fn stage_of(job: &Job) -> Stage {
        if matches!(job.source, ferry_domain::JobSource::Url(_)) {
            Stage::Fetch
        } else {
            Stage::Download
        }
    }

    /// The job's .torrent (a URL job's once packaged).
    ///
    /// # Errors
    /// `NotFound`, `TorrentNotReady`.
    pub async fn torrent(&self, owner: &OwnerId, id: JobId) -> Result<TorrentMetadata, JobsError> {
        let job = self.get(owner, id).await?;
        job.metadata.ok_or(JobsError::TorrentNotReady)
    }

    /// Changes how the job seeds once finished (`None`: not at all). A job seeding now
    /// takes the new limits within the seed stage's re-read interval (30 s).
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn set_seed_policy(
        &self,
        owner: &OwnerId,
        id: JobId,
        seed: Option<ferry_domain::SeedPolicy>,
    ) -> Result<(), JobsError> {
        self.get(owner, id).await?;
        Ok(self.lifecycle.repo.record_seed(id, seed).await?)
    }

    /// The .torrent file at `url` (at most `max_bytes`), fetched like a URL job's content:
    /// through the proxy, every address checked against the policy.
    ///
    /// # Errors
    /// `InvalidUrl`, `UrlNotAllowed`, `UrlRefused` (for good: a 4xx such as 404 or 410, too
    /// large), `UrlUnreachable` (for now: no connection, a timeout, a 5xx).
    pub async fn fetch_torrent(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, JobsError> {
        let url = ferry_domain::FetchUrl::parse(url)?;
        self.blocklist.check_url(url.as_url().as_str())?;
        let body = self
            .fetcher
            .open(&url, None)
            .await
            .map_err(JobsError::from_fetch)?;
        if body.info().size.is_some_and(|size| size > max_bytes) {
            return Err(JobsError::UrlRefused(format!(
                "the .torrent is larger than {max_bytes} bytes"
            )));
        }
        body.bytes(max_bytes).await.map_err(JobsError::from_fetch)
    }

    /// A user-requested move; a job that moved meanwhile reports the move as illegal from
    /// where it actually is.
    async fn advance(&self, id: JobId, from: JobStatus, to: JobStatus) -> Result<Job, JobsError> {
        match self.lifecycle.advance(id, from, to, None).await {
            Ok(job) => Ok(job),
            Err(MoveError::Repo(RepoError::Conflict { actual, .. })) => {
                Err(IllegalTransition { from: actual, to }.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Cancels an unfinished job; a seeding job stops seeding and stays completed, with its
    /// files. Returns the job as it ended.
    ///
    /// With `purge`, the job and everything it left (delivered objects, unfinished uploads,
    /// staged data, the seeding copy) are deleted — not here, but by the last stage to let go
    /// of the job, so nothing a running stage still writes can outlive the purge. The job is
    /// marked first (from then on it only moves to finished statuses), stopped, and the stage
    /// that holds it is asked to stop and carry the purge on; it is returned with
    /// `purge_requested` set, and disappears once the purge is done. A finished job can only
    /// be purged.
    ///
    /// # Errors
    /// `NotFound`; `IllegalTransition` for a finished job without `purge`; `Unavailable`
    /// when the queue cannot take the message (the purge then waits for recovery).
    pub async fn cancel(&self, owner: &OwnerId, id: JobId, purge: bool) -> Result<Job, JobsError> {
        let mut job = self.get(owner, id).await?;
        if purge && !job.purge_requested {
            job = self.lifecycle.repo.request_purge(id).await?;
        }
        let is_url = matches!(job.source, ferry_domain::JobSource::Url(_));
        let mut stopped_from = None;
        // The job may move while we cancel it (a worker finishing a stage): try again on
        // a conflict, a few times.
        for _ in 0..5 {
            if job.status.is_terminal() {
                break;
            }
            // A seeding job has delivered its files: stopping it completes it.
            let to = if job.status == JobStatus::Seeding {
                JobStatus::Completed
            } else {
                JobStatus::Cancelled
            };
            match self.lifecycle.advance(id, job.status, to, None).await {
                Ok(stopped) => {
                    stopped_from = Some(job.status);
                    job = stopped;
                    break;
                }
                Err(MoveError::Repo(RepoError::Conflict { .. })) => {
                    job = self.get(owner, id).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        // The stage that held the job lets go of it where it runs (the engine, a fetch, an
        // upload), frees what it holds and carries a pending purge on. A completed job that
        // seeded may have been stopped a moment ago: its seed stage may still be letting go.
        let holder = match stopped_from {
            Some(status) => Some(crate::recovery::stage_to_stop(status, is_url)),
            None if purge && job.status == JobStatus::Completed && job.seed.is_some() => {
                Some(Stage::Seed)
            }
            None => purge.then(|| crate::recovery::stage_to_stop(job.status, is_url)),
        };
        if let Some(stage) = holder {
            self.queue.enqueue(stage, id).await?;
        }
        if purge {
            tracing::info!(job_id = %id, status = %job.status, "purge requested");
            return Ok(job);
        }
        if stopped_from.is_some() || job.status == JobStatus::Cancelled || !job.status.is_terminal()
        {
            return Ok(job);
        }
        Err(IllegalTransition {
            from: job.status,
            to: JobStatus::Cancelled,
        }
        .into())
    }

    /// Where to read file `index` of a completed job.
    ///
    /// # Errors
    /// `NotFound`, `FileNotFound`, `FileNotSelected`, `NotFinished`, `TorrentNotReady`.
    pub async fn file(
        &self,
        owner: &OwnerId,
        id: JobId,
        index: usize,
    ) -> Result<FileDownload, JobsError> {
        let (job, file) = self.readable_file(owner, id, index).await?;
        if !matches!(job.status, JobStatus::Completed | JobStatus::Seeding) {
            return Err(JobsError::NotFinished(job.status));
        }
        let store = self.stores.store(&job.owner, job.storage_profile).await?;
        let location = Self::locate(store.as_ref(), &job, &file).await?;
        Ok(FileDownload { file, location })
    }

    /// Where to read file `index` of a job now: a finished job's from its storage; with an
    /// engine in this process ([`Self::live`]), a torrent job's while it downloads and any
    /// job's while its downloaded files wait for delivery. Nothing is opened yet.
    ///
    /// # Errors
    /// As [`Self::file`]; `NotFinished` for a job that is not downloading (queued, paused,
    /// failed, …) or whose files this process cannot read before delivery.
    pub async fn source(
        &self,
        owner: &OwnerId,
        id: JobId,
        index: usize,
    ) -> Result<FileSource, JobsError> {
        let (job, file) = self.readable_file(owner, id, index).await?;
        if matches!(job.status, JobStatus::Completed | JobStatus::Seeding) {
            let store = self.stores.store(&job.owner, job.storage_profile).await?;
            let location = Self::locate(store.as_ref(), &job, &file).await?;
            return Ok(FileSource::Stored(FileDownload { file, location }));
        }
        let downloading = job.status == JobStatus::Downloading
            && !matches!(job.source, ferry_domain::JobSource::Url(_));
        let staged = job.status == JobStatus::Uploading;
        match &self.live {
            Some(files) if downloading || staged => Ok(FileSource::Live(LiveFile {
                file,
                job_id: job.id,
                staged,
                files: files.clone(),
            })),
            _ => Err(JobsError::NotFinished(job.status)),
        }
    }

    /// The caller's job `id` and its file `index`, if the file can ever be read: not being
    /// purged, known, selected. A job whose files are not known yet (a magnet resolving, a
    /// URL still fetching) is `TorrentNotReady` or `NotFinished`.
    async fn readable_file(
        &self,
        owner: &OwnerId,
        id: JobId,
        index: usize,
    ) -> Result<(Job, JobFile), JobsError> {
        let job = self.get(owner, id).await?;
        if job.purge_requested {
            return Err(JobsError::Purging);
        }
        if job.metadata.is_none() && !job.status.is_terminal() {
            return Err(match job.source {
                ferry_domain::JobSource::Url(_) => JobsError::NotFinished(job.status),
                _ => JobsError::TorrentNotReady,
            });
        }
        let file = job
            .files()
            .iter()
            .find(|f| f.index == index)
            .cloned()
            .ok_or(JobsError::FileNotFound(index))?;
        if !file.selected {
            return Err(JobsError::FileNotSelected(index));
        }
        Ok((job, file))
    }

    /// Where a delivered file of a finished job is in `store`; a missing object is an
    /// unexpected error (a completed job's files are never gone while it exists).
    async fn locate(
        store: &dyn ObjectStore,
        job: &Job,
        file: &JobFile,
    ) -> Result<ObjectLocation, JobsError> {
        let key = StorageKey::for_file(&job.owner, job.id, &file.safe_path()?);
        match store.locate(&key).await {
            Ok(l) => Ok(l),
            Err(StoreError::NotFound) => {
                Err(anyhow::anyhow!("stored object {key} of a completed job is missing").into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Where each of a finished job's files is, for an archive of them: the files named by
    /// `indexes` (in that order, each once), or every selected file.
    ///
    /// # Errors
    /// As [`Self::file`]; `FileNotSelected` for a file the job did not download.
    pub async fn archive(
        &self,
        owner: &OwnerId,
        id: JobId,
        indexes: Option<&[usize]>,
    ) -> Result<(Job, Vec<FileDownload>), JobsError> {
        let job = self.get(owner, id).await?;
        if job.purge_requested {
            return Err(JobsError::Purging);
        }
        if !matches!(job.status, JobStatus::Completed | JobStatus::Seeding) {
            return Err(JobsError::NotFinished(job.status));
        }
        let files: Vec<JobFile> = match indexes {
            None => job.selected_files().cloned().collect(),
            Some(indexes) => {
                let mut seen = std::collections::HashSet::new();
                let mut chosen = Vec::new();
                for &index in indexes {
                    let file = job
                        .files()
                        .iter()
                        .find(|f| f.index == index)
                        .ok_or(JobsError::FileNotFound(index))?;
                    if !file.selected {
                        return Err(JobsError::FileNotSelected(index));
                    }
                    if seen.insert(index) {
                        chosen.push(file.clone());
                    }
                }
                chosen
            }
        };
        let store = self.stores.store(&job.owner, job.storage_profile).await?;
        let mut located = Vec::with_capacity(files.len());
        for file in files {
            let location = Self::locate(store.as_ref(), &job, &file).await?;
            located.push(FileDownload { file, location });
        }
        Ok((job, located))
    }
}
