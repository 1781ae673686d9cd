//! `TorrentEngine`, `TorrentInspector`, `TorrentPackager` and `Staging`: torrents that "download" in steps into a private staging folder.

use super::*;

/// A torrent engine that "downloads" registered torrents in steps and writes their files
/// (filled with zeros) into a private staging folder when finished.
pub struct FakeEngine {
    root: PathBuf,
    known: Mutex<HashMap<Vec<u8>, TorrentMetadata>>,
    running: Mutex<HashMap<JobId, FakeTorrent>>,
    /// Bytes each `stats` call adds.
    pub step: AtomicU64,
    /// How many `stats` calls of each newly started torrent report a check of data on disk
    /// (with librqbit's habit of counting checked bytes as done).
    pub checking_calls: AtomicU64,
    stalled: std::sync::atomic::AtomicBool,
    failures: Mutex<VecDeque<EngineError>>,
    /// What `network` answers while a required proxy is "down".
    proxy_down: Mutex<Option<String>>,
}

struct FakeTorrent {
    meta: TorrentMetadata,
    limits: ferry_domain::SpeedLimits,
    only: Option<Vec<usize>>,
    done: u64,
    checks_left: u64,
}

impl FakeEngine {
    pub fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let root = std::env::temp_dir().join(format!(
            "ferry-fake-engine-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        Self {
            root,
            known: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            step: AtomicU64::new(u64::MAX),
            checking_calls: AtomicU64::new(0),
            stalled: std::sync::atomic::AtomicBool::new(false),
            failures: Mutex::new(VecDeque::new()),
            proxy_down: Mutex::new(None),
        }
    }

    /// Makes `meta.metainfo` (and magnets with its hash) known to the engine.
    pub fn register(&self, meta: TorrentMetadata) {
        lock(&self.known).insert(meta.metainfo.clone(), meta);
    }

    /// The speed limits the job's torrent runs under (`None`: not running).
    pub fn limits(&self, job_id: JobId) -> Option<ferry_domain::SpeedLimits> {
        lock(&self.running).get(&job_id).map(|t| t.limits)
    }

    /// While stalled, downloads make no progress.
    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }

    /// While `Some`, `network` fails with `ProxyUnavailable(message)`.
    pub fn set_proxy_down(&self, message: Option<&str>) {
        *lock(&self.proxy_down) = message.map(str::to_owned);
    }

    /// The next `start` fails with `error`.
    pub fn fail_next_start(&self, error: EngineError) {
        lock(&self.failures).push_back(error);
    }

    pub fn is_running(&self, job_id: JobId) -> bool {
        lock(&self.running).contains_key(&job_id)
    }

    pub fn staging_root(&self) -> &Path {
        &self.root
    }
}

impl Default for FakeEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl TorrentInspector for FakeEngine {
    fn inspect(&self, metainfo: &[u8]) -> Result<TorrentMetadata, EngineError> {
        lock(&self.known)
            .get(metainfo)
            .cloned()
            .ok_or_else(|| EngineError::InvalidTorrent("not a torrent this fake knows".into()))
    }
}

#[async_trait]
impl Staging for FakeEngine {
    fn file(&self, job_id: JobId, path: &SafePath) -> PathBuf {
        self.job_dir(job_id).join(path.as_str())
    }

    fn job_dir(&self, job_id: JobId) -> PathBuf {
        self.root.join(job_id.to_string())
    }

    async fn discard(&self, job_id: JobId) -> anyhow::Result<()> {
        remove_dir(&Staging::job_dir(self, job_id))
    }

    async fn adopt(&self, _job_id: JobId, _path: &SafePath, _sha256: &str) -> anyhow::Result<()> {
        Ok(())
    }

    fn seed_dir(&self, job_id: JobId) -> PathBuf {
        self.root.join("seeding").join(job_id.to_string())
    }

    async fn keep_for_seeding(&self, job_id: JobId, files: &[SafePath]) -> anyhow::Result<()> {
        for f in files {
            let to = self.seed_dir(job_id).join(f.as_str());
            if to.exists() {
                continue;
            }
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(Staging::file(self, job_id, f), to)?;
        }
        Ok(())
    }

    async fn discard_seed(&self, job_id: JobId) -> anyhow::Result<()> {
        remove_dir(&self.seed_dir(job_id))
    }
}

fn remove_dir(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[async_trait]
impl TorrentPackager for FakeEngine {
    async fn package(&self, file: &Path, name: &str) -> Result<TorrentMetadata, EngineError> {
        let bytes = std::fs::read(file).map_err(|e| EngineError::Unexpected(e.into()))?;
        let digest = fake_digest(&bytes);
        let mut hash = [0u8; 20];
        for (i, b) in digest.bytes().take(20).enumerate() {
            hash[i] = b;
        }
        let meta = TorrentMetadata {
            info_hash: InfoHash::from_bytes(hash),
            name: name.to_owned(),
            files: vec![ferry_domain::JobFile {
                index: 0,
                path: name.to_owned(),
                size: bytes.len() as u64,
                selected: true,
                sha256: None,
            }],
            total_bytes: bytes.len() as u64,
            piece_length: 16384,
            trackers: vec![],
            private: true,
            metainfo: format!("fake-packaged-{digest}-{name}").into_bytes(),
        };
        self.register(meta.clone());
        Ok(meta)
    }
}

#[async_trait]
impl TorrentEngine for FakeEngine {
    async fn resolve(&self, magnet: &MagnetLink) -> Result<TorrentMetadata, EngineError> {
        loop {
            let found = lock(&self.known)
                .values()
                .find(|m| m.info_hash == magnet.info_hash())
                .cloned();
            if let Some(meta) = found {
                return Ok(meta);
            }
            // Like a real swarm with no peer: wait.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn start(&self, spec: TorrentSpec) -> Result<(), EngineError> {
        if let Some(e) = lock(&self.failures).pop_front() {
            return Err(e);
        }
        let meta = self.inspect(&spec.metainfo)?;
        lock(&self.running)
            .entry(spec.job_id)
            .or_insert(FakeTorrent {
                meta,
                limits: spec.limits,
                only: spec.only_files,
                done: 0,
                checks_left: self.checking_calls.load(Ordering::SeqCst),
            });
        Ok(())
    }

    async fn set_limits(
        &self,
        job_id: JobId,
        limits: ferry_domain::SpeedLimits,
    ) -> Result<(), EngineError> {
        lock(&self.running)
            .get_mut(&job_id)
            .ok_or(EngineError::NotRunning)?
            .limits = limits;
        Ok(())
    }

    async fn stats(&self, job_id: JobId) -> Result<EngineStats, EngineError> {
        let (stats, to_write) = {
            let mut running = lock(&self.running);
            let t = running.get_mut(&job_id).ok_or(EngineError::NotRunning)?;
            let wanted: Vec<_> = t
                .meta
                .files
                .iter()
                .filter(|f| t.only.as_ref().is_none_or(|o| o.contains(&f.index)))
                .cloned()
                .collect();
            let total: u64 = wanted.iter().map(|f| f.size).sum();
            if t.checks_left > 0 {
                t.checks_left -= 1;
                let stats = EngineStats {
                    bytes_done: total,
                    bytes_total: total,
                    finished: true,
                    checking: true,
                    ..EngineStats::default()
                };
                return Ok(stats);
            }
            if !self.stalled.load(Ordering::SeqCst) {
                t.done = t
                    .done
                    .saturating_add(self.step.load(Ordering::SeqCst))
                    .min(total);
            }
            let finished = t.done == total;
            let stats = EngineStats {
                bytes_done: t.done,
                bytes_total: total,
                download_rate: 1000,
                peers: 1,
                finished,
                ..EngineStats::default()
            };
            (stats, finished.then_some(wanted))
        };
        for f in to_write.unwrap_or_default() {
            let path = f.safe_path().map_err(EngineError::UnsafePath)?;
            let dest = Staging::file(self, job_id, &path);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| EngineError::Unexpected(e.into()))?;
            }
            let size = usize::try_from(f.size).unwrap_or(0);
            std::fs::write(&dest, vec![0u8; size])
                .map_err(|e| EngineError::Unexpected(e.into()))?;
        }
        Ok(stats)
    }

    async fn hand_over(&self, job_id: JobId) -> Result<(), EngineError> {
        // The fake writes a finished job's files into its staging folder already.
        if lock(&self.running).remove(&job_id).is_none() {
            return Err(EngineError::NotRunning);
        }
        Ok(())
    }

    async fn stop(&self, job_id: JobId, delete_data: bool) -> Result<(), EngineError> {
        lock(&self.running).remove(&job_id);
        if delete_data {
            let _ = std::fs::remove_dir_all(Staging::job_dir(self, job_id));
        }
        Ok(())
    }

    async fn network(&self) -> Result<(), EngineError> {
        match lock(&self.proxy_down).clone() {
            Some(message) => Err(EngineError::ProxyUnavailable(message)),
            None => Ok(()),
        }
    }
}

/// Files of running jobs read as they are (zeros, which the fake writes when a job
/// finishes), and staged files from the fake's staging folder.
#[async_trait]
impl LiveFiles for FakeEngine {
    async fn open(
        &self,
        job_id: JobId,
        index: usize,
        start: u64,
    ) -> Result<LiveReader, LiveFileError> {
        let size = {
            let running = lock(&self.running);
            let t = running.get(&job_id).ok_or(LiveFileError::NotRunning)?;
            if !t.only.as_ref().is_none_or(|o| o.contains(&index)) {
                return Err(LiveFileError::NotRunning);
            }
            t.meta
                .files
                .iter()
                .find(|f| f.index == index)
                .ok_or(LiveFileError::NotRunning)?
                .size
        };
        let left = size.checked_sub(start).filter(|n| *n > 0).ok_or_else(|| {
            LiveFileError::Unexpected(anyhow::anyhow!("{start} is past the file's end"))
        })?;
        let bytes = vec![0u8; usize::try_from(left).unwrap_or(0)];
        Ok(Box::pin(std::io::Cursor::new(bytes)))
    }

    async fn open_staged(
        &self,
        job_id: JobId,
        path: &SafePath,
        start: u64,
    ) -> Result<LiveReader, LiveFileError> {
        let bytes = match std::fs::read(Staging::file(self, job_id, path)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LiveFileError::NotRunning);
            }
            Err(e) => return Err(LiveFileError::Unexpected(e.into())),
        };
        let from = usize::try_from(start)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        Ok(Box::pin(std::io::Cursor::new(bytes[from..].to_vec())))
    }
}
