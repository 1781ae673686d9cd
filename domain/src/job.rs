//! A job: what a user asked Ferry to fetch, and everything known about it since.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use url::Url;
use uuid::Uuid;

use crate::{ErrorCode, InfoHash, JobStatus, MagnetLink, Progress, SafePath};

/// A job's identity: a UUID v7, so ids sort by creation time.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct JobId(Uuid);

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.0)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Who owns a job (and a profile, a token, an audit record): a user's id. The first admin
/// of an installation that existed before accounts keeps the id `local`, so every storage
/// key and staged path made before then stays valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct OwnerId(String);

impl OwnerId {
    /// The owner of everything made before accounts existed: the first admin of an
    /// upgraded installation.
    pub fn local() -> Self {
        Self("local".to_owned())
    }

    /// A new user's id (a UUID, which is also a valid storage key segment).
    pub fn new_user() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Owner ids become storage key segments, so they are restricted to `[A-Za-z0-9_-]`.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Raw bytes of a .torrent file as the user sent them.
#[derive(Clone, PartialEq, Eq)]
pub struct TorrentFile(pub Vec<u8>);

impl fmt::Debug for TorrentFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TorrentFile({} bytes)", self.0.len())
    }
}

/// What the user handed Ferry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSource {
    Magnet(MagnetLink),
    Torrent(TorrentFile),
    Url(Url),
}

impl JobSource {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Magnet(_) => "magnet",
            Self::Torrent(_) => "torrent",
            Self::Url(_) => "url",
        }
    }
}

/// Which of a torrent's files to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FileSelection {
    #[default]
    All,
    Only(BTreeSet<usize>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileSelectionError {
    #[error("the file selection is empty")]
    Empty,
    #[error("the torrent has no file with index {0}")]
    UnknownIndex(usize),
    /// More indices than a torrent may have files (`limits.max_files`).
    #[error("a file selection may name at most {max} files")]
    TooMany { max: usize },
}

impl FileSelection {
    /// A user's choice of files: refused before anything is built when it names more files
    /// than a torrent may have (`max_files`), so a huge list costs no more than reading it.
    ///
    /// # Errors
    /// [`FileSelectionError::TooMany`] or [`FileSelectionError::Empty`].
    pub fn chosen(
        indices: Option<Vec<usize>>,
        max_files: usize,
    ) -> Result<Self, FileSelectionError> {
        if indices.as_ref().is_some_and(|v| v.len() > max_files) {
            return Err(FileSelectionError::TooMany { max: max_files });
        }
        Self::from_indices(indices)
    }

    /// A stored selection (already accepted once).
    ///
    /// # Errors
    /// [`FileSelectionError::Empty`].
    pub fn from_indices(indices: Option<Vec<usize>>) -> Result<Self, FileSelectionError> {
        match indices {
            None => Ok(Self::All),
            Some(v) if v.is_empty() => Err(FileSelectionError::Empty),
            Some(v) => Ok(Self::Only(v.into_iter().collect())),
        }
    }

    pub fn includes(&self, index: usize) -> bool {
        match self {
            Self::All => true,
            Self::Only(set) => set.contains(&index),
        }
    }

    pub fn indices(&self) -> Option<Vec<usize>> {
        match self {
            Self::All => None,
            Self::Only(set) => Some(set.iter().copied().collect()),
        }
    }

    /// Checks that every chosen index names one of `files`, in time linear in both (the
    /// file indices are looked up in a set, never scanned per chosen index).
    ///
    /// # Errors
    /// [`FileSelectionError::UnknownIndex`] for the first index that names no file.
    pub fn validate(&self, files: &[JobFile]) -> Result<(), FileSelectionError> {
        let Self::Only(set) = self else {
            return Ok(());
        };
        let known: std::collections::HashSet<usize> = files.iter().map(|f| f.index).collect();
        match set.iter().find(|i| !known.contains(i)) {
            Some(missing) => Err(FileSelectionError::UnknownIndex(*missing)),
            None => Ok(()),
        }
    }
}

/// One file of a torrent. `index` is the file's position in the torrent's metadata;
/// padding files (BEP 47) are left out of a job's file list but keep their indices.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobFile {
    pub index: usize,
    pub path: SafePathText,
    pub size: u64,
    pub selected: bool,
    /// Hex SHA-256 of the delivered file, once delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A [`SafePath`] as stored: serialised as its text, checked again when read.
pub type SafePathText = String;

impl JobFile {
    /// # Errors
    /// [`crate::SafePathError`] if the stored text is not (or no longer) a safe path.
    pub fn safe_path(&self) -> Result<SafePath, crate::SafePathError> {
        SafePath::parse(&self.path)
    }
}

/// What the torrent's metadata says, once known (at once for a .torrent, after resolving
/// for a magnet link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentMetadata {
    pub info_hash: InfoHash,
    pub name: String,
    pub files: Vec<JobFile>,
    pub total_bytes: u64,
    pub piece_length: u32,
    pub trackers: Vec<String>,
    pub private: bool,
    /// The bencoded .torrent, kept so a restarted download needs no peer for metadata.
    pub metainfo: Vec<u8>,
}

impl TorrentMetadata {
    /// Marks the files `selection` chooses.
    pub fn apply_selection(&mut self, selection: &FileSelection) {
        for f in &mut self.files {
            f.selected = selection.includes(f.index);
        }
    }

    pub fn selected_bytes(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| f.selected)
            .map(|f| f.size)
            .sum()
    }
}

/// When to stop seeding a finished job: whichever limit is reached first. No limit at all
/// seeds until the job is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct SeedPolicy {
    /// Uploaded bytes / content bytes.
    pub ratio: Option<f64>,
    /// Seconds of seeding.
    pub time_secs: Option<u64>,
    /// Seconds without uploading anything.
    pub idle_secs: Option<u64>,
}

impl SeedPolicy {
    /// Whether seeding should stop, given what it has done so far.
    pub fn reached(&self, uploaded: u64, size: u64, seeded_secs: u64, idle_secs: u64) -> bool {
        let ratio = if size == 0 {
            0.0
        } else {
            uploaded as f64 / size as f64
        };
        self.ratio.is_some_and(|r| ratio >= r)
            || self.time_secs.is_some_and(|t| seeded_secs >= t)
            || self.idle_secs.is_some_and(|i| idle_secs >= i)
    }
}

/// Why a job failed, as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobError {
    /// A registered [`ErrorCode`]'s wire string. Kept as text, as it is stored: an error
    /// read back may carry a code an older version wrote.
    pub code: String,
    pub message: String,
}

impl JobError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        debug_assert!(code.on_jobs(), "{code} is not a job error code");
        Self {
            code: code.as_str().to_owned(),
            message: message.into(),
        }
    }

    /// An error as it was stored, code and all.
    pub fn stored(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub owner: OwnerId,
    pub source: JobSource,
    pub status: JobStatus,
    pub name: String,
    pub info_hash: Option<InfoHash>,
    pub selection: FileSelection,
    /// Where the files are delivered; `None` is the server's local storage.
    pub storage_profile: Option<crate::ProfileId>,
    /// Seed the finished job (as a torrent) under this policy.
    pub seed: Option<SeedPolicy>,
    /// SHA-256 of a fetched URL's content (its content address).
    pub content_sha256: Option<String>,
    pub metadata: Option<TorrentMetadata>,
    pub progress: Progress,
    pub error: Option<JobError>,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When the job last started seeding (its move to `seeding`): kept once seeding ends, so
    /// the time it seeded is `finished_at` less this.
    pub seeding_started_at: Option<DateTime<Utc>>,
    /// The user asked for the job and its files to be deleted; the last stage to let go of
    /// the job carries it out (the row goes last). Once set, the job only moves to finished
    /// statuses.
    pub purge_requested: bool,
    /// The most bytes this job may fetch: the owner's `job_bytes` quota when the job was
    /// submitted (checked again once a magnet's metadata or a URL's size is known).
    pub byte_limit: Option<u64>,
    /// The job's own speed limits (the engine's global ones apply on top); the user may
    /// change them while it runs.
    pub speed_limits: crate::SpeedLimits,
}

impl Job {
    /// A queued job for an HTTP(S) URL.
    pub fn from_url(owner: OwnerId, url: crate::FetchUrl, now: DateTime<Utc>) -> Self {
        let name = url.file_name();
        Self::queued(
            owner,
            JobSource::Url(url.as_url().clone()),
            name,
            None,
            FileSelection::All,
            None,
            now,
        )
    }

    /// A queued job for a magnet link.
    pub fn from_magnet(
        owner: OwnerId,
        magnet: MagnetLink,
        selection: FileSelection,
        now: DateTime<Utc>,
    ) -> Self {
        let name = magnet
            .display_name()
            .map_or_else(|| magnet.info_hash().to_hex(), str::to_owned);
        Self::queued(
            owner,
            JobSource::Magnet(magnet.clone()),
            name,
            Some(magnet.info_hash()),
            selection,
            None,
            now,
        )
    }

    /// A queued job for an uploaded .torrent whose metadata was already read.
    pub fn from_torrent(
        owner: OwnerId,
        mut metadata: TorrentMetadata,
        selection: FileSelection,
        now: DateTime<Utc>,
    ) -> Self {
        metadata.apply_selection(&selection);
        let source = JobSource::Torrent(TorrentFile(metadata.metainfo.clone()));
        let name = metadata.name.clone();
        let hash = Some(metadata.info_hash);
        let mut job = Self::queued(owner, source, name, hash, selection, Some(metadata), now);
        job.progress.bytes_total = job
            .metadata
            .as_ref()
            .map_or(0, TorrentMetadata::selected_bytes);
        job
    }

    fn queued(
        owner: OwnerId,
        source: JobSource,
        name: String,
        info_hash: Option<InfoHash>,
        selection: FileSelection,
        metadata: Option<TorrentMetadata>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: JobId::new(),
            owner,
            source,
            status: JobStatus::Queued,
            name,
            info_hash,
            selection,
            storage_profile: None,
            seed: None,
            content_sha256: None,
            metadata,
            progress: Progress::default(),
            error: None,
            attempts: 0,
            created_at: now,
            updated_at: now,
            finished_at: None,
            seeding_started_at: None,
            purge_requested: false,
            byte_limit: None,
            speed_limits: crate::SpeedLimits::NONE,
        }
    }

    /// Files of the torrent, once its metadata is known.
    pub fn files(&self) -> &[JobFile] {
        self.metadata.as_ref().map_or(&[], |m| m.files.as_slice())
    }

    pub fn selected_files(&self) -> impl Iterator<Item = &JobFile> {
        self.files().iter().filter(|f| f.selected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(index: usize) -> JobFile {
        JobFile {
            index,
            path: format!("f{index}"),
            size: 10,
            selected: true,
            sha256: None,
        }
    }

    #[test]
    fn selection_is_checked_against_the_files() {
        let files = vec![file(0), file(2)];
        assert_eq!(
            FileSelection::from_indices(Some(vec![])),
            Err(FileSelectionError::Empty)
        );
        let sel = FileSelection::from_indices(Some(vec![2])).unwrap();
        assert!(sel.validate(&files).is_ok());
        assert!(sel.includes(2) && !sel.includes(0));
        let bad = FileSelection::from_indices(Some(vec![1])).unwrap();
        assert_eq!(
            bad.validate(&files),
            Err(FileSelectionError::UnknownIndex(1))
        );
        assert!(FileSelection::All.validate(&files).is_ok());
    }

    #[test]
    fn a_selection_past_the_file_cap_is_refused() {
        let max = 20_000;
        let too_many: Vec<usize> = (0..=max).collect();
        assert_eq!(
            FileSelection::chosen(Some(too_many), max),
            Err(FileSelectionError::TooMany { max })
        );
        let at_cap: Vec<usize> = (0..max).collect();
        assert!(FileSelection::chosen(Some(at_cap), max).is_ok());
        assert_eq!(FileSelection::chosen(None, max), Ok(FileSelection::All));
        assert_eq!(
            FileSelection::chosen(Some(vec![]), max),
            Err(FileSelectionError::Empty)
        );
        assert!(
            FileSelectionError::TooMany { max }
                .to_string()
                .contains("at most 20000 files")
        );
    }

    /// 100,000 chosen among 100,000 files: a scan per index (10^10 comparisons) takes
    /// minutes, a set lookup milliseconds; the bound leaves room for a loaded debug build.
    #[test]
    fn a_large_selection_validates_in_linear_time() {
        let n = 100_000;
        let files: Vec<JobFile> = (0..n).rev().map(file).collect();
        let all = FileSelection::from_indices(Some((0..n).collect())).unwrap();
        let started = std::time::Instant::now();
        assert!(all.validate(&files).is_ok());
        let mut unknown: Vec<usize> = (0..n).collect();
        unknown.push(n);
        let bad = FileSelection::from_indices(Some(unknown)).unwrap();
        assert_eq!(
            bad.validate(&files),
            Err(FileSelectionError::UnknownIndex(n))
        );
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(2),
            "validating took {took:?}"
        );
    }

    #[test]
    fn seeding_stops_at_the_first_limit() {
        let p = SeedPolicy {
            ratio: Some(1.5),
            time_secs: Some(3600),
            idle_secs: None,
        };
        assert!(!p.reached(100, 100, 10, 0));
        assert!(p.reached(150, 100, 10, 0));
        assert!(p.reached(0, 100, 3600, 0));
        assert!(
            !SeedPolicy::default().reached(u64::MAX, 1, u64::MAX, u64::MAX),
            "no limit: forever"
        );
        let idle = SeedPolicy {
            idle_secs: Some(60),
            ..SeedPolicy::default()
        };
        assert!(idle.reached(0, 1, 0, 60));
    }

    #[test]
    fn owner_ids_are_key_safe() {
        assert!(OwnerId::parse("alice_01").is_some());
        assert!(OwnerId::parse("../x").is_none());
        assert!(OwnerId::parse("").is_none());
    }
}
