//! `TorrentEngine`: the BitTorrent client that fetches torrents into staging, and
//! `TorrentInspector`: reading .torrent bytes without any client.

use std::net::SocketAddr;

use async_trait::async_trait;
use ferry_domain::{JobId, MagnetLink, SafePathError, SpeedLimits, TorrentMetadata};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The bytes are not a valid .torrent (not bencode, missing fields, bad lengths…).
    #[error("invalid torrent: {0}")]
    InvalidTorrent(String),
    /// A file name in the torrent is unsafe.
    #[error(transparent)]
    UnsafePath(#[from] SafePathError),
    /// The engine holds no torrent for this job.
    #[error("the engine is not running this job")]
    NotRunning,
    /// Another job already downloads the same torrent in this engine.
    #[error("another job is already downloading this torrent")]
    Busy,
    /// A proxy is required (`torrent.proxy_required`) and cannot be reached.
    #[error("{0}")]
    ProxyUnavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// What to download for a job.
#[derive(Debug, Clone)]
pub struct TorrentSpec {
    pub job_id: JobId,
    pub metainfo: Vec<u8>,
    /// `None` downloads every file.
    pub only_files: Option<Vec<usize>>,
    /// Peers known up front (a magnet's `x.pe`).
    pub peers: Vec<SocketAddr>,
    /// Where the data is when it is not the job's staging folder (seeding from the seed
    /// folder).
    pub data_dir: Option<std::path::PathBuf>,
    /// The job's own speed limits, from its first byte.
    pub limits: SpeedLimits,
}

/// The engine's view of a running torrent, over the selected files only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineStats {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub download_rate: u64,
    pub upload_rate: u64,
    pub uploaded_bytes: u64,
    pub peers: u32,
    pub finished: bool,
    /// The engine is checking data already on disk: `bytes_done` and the rates mean nothing
    /// yet (librqbit counts checked bytes, not downloaded ones).
    pub checking: bool,
    /// The engine gave up on the torrent (disk error, …).
    pub error: Option<String>,
}

/// Reads .torrent bytes: what the API needs, with no engine running.
pub trait TorrentInspector: Send + Sync + 'static {
    /// Parses and checks .torrent bytes; file paths are checked for safety.
    ///
    /// # Errors
    /// `InvalidTorrent` or `UnsafePath`.
    fn inspect(&self, metainfo: &[u8]) -> Result<TorrentMetadata, EngineError>;
}

/// Downloads torrents for jobs. While a torrent downloads its data belongs to the engine:
/// one copy per info-hash, shared by every job that wants it (jobs of different owners may
/// want the same torrent), kept while any job holds it; a finished job's files are handed
/// over into its staging folder (see [`super::Staging`]).
#[async_trait]
pub trait TorrentEngine: Send + Sync + 'static {
    /// Fetches a magnet link's metadata from peers. Waits as long as it takes; callers bound
    /// it with a timeout.
    ///
    /// # Errors
    /// `InvalidTorrent`/`UnsafePath` for bad metadata, `Unexpected` for engine failures.
    async fn resolve(&self, magnet: &MagnetLink) -> Result<TorrentMetadata, EngineError>;

    /// Starts (or keeps running) the download of `spec` into the job's staging folder.
    /// Data already in staging is checked and reused.
    ///
    /// # Errors
    /// `Busy` when another job runs the same torrent; `InvalidTorrent` for bad metainfo.
    async fn start(&self, spec: TorrentSpec) -> Result<(), EngineError>;

    /// # Errors
    /// `NotRunning` when the job's torrent is not in the engine.
    async fn stats(&self, job_id: JobId) -> Result<EngineStats, EngineError>;

    /// Stops the job's use of its torrent (the torrent runs on while other jobs use it).
    /// The data stays unless `delete_data`: then the job lets go of it, and the engine's
    /// copy goes once no other job holds it. Stopping a job that is not running is not an
    /// error, and still lets go of its data with `delete_data`.
    ///
    /// # Errors
    /// `Unexpected` when the engine fails.
    async fn stop(&self, job_id: JobId, delete_data: bool) -> Result<(), EngineError>;

    /// Changes a running job's speed limits. A torrent several jobs share runs at the
    /// loosest of their limits (one job's limit never slows another's download).
    ///
    /// # Errors
    /// `NotRunning` when the job's torrent is not in the engine.
    async fn set_limits(&self, job_id: JobId, limits: SpeedLimits) -> Result<(), EngineError>;

    /// Puts a finished job's files into its staging folder (where [`super::Staging::file`]
    /// names them) and lets go of the torrent and of the engine's copy of its data.
    ///
    /// # Errors
    /// `NotRunning` when the job's torrent is not in the engine, `Unexpected` when the
    /// files cannot be placed.
    async fn hand_over(&self, job_id: JobId) -> Result<(), EngineError>;

    /// Whether the engine can reach the swarm the way it must: with `torrent.proxy_required`,
    /// whether its proxy answers. Downloads ask before they start and while they run, and
    /// stop rather than wait on a proxy that is gone.
    ///
    /// # Errors
    /// `ProxyUnavailable` when a required proxy has not answered for a few seconds.
    async fn network(&self) -> Result<(), EngineError> {
        Ok(())
    }
}
