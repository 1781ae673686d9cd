//! The fakes. Small, real-enough implementations backed by memory (and, for the engine, a
//! temporary staging folder so delivery has real files to read).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_domain::{
    Credentials, InfoHash, Job, JobError, JobId, JobStatus, MagnetLink, OwnerId, ProfileId,
    Progress, SafePath, StorageKey, StorageProfile, TorrentMetadata,
};
use tokio::sync::{Notify, mpsc};

use crate::ports::*;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A clock that only moves when told to.
pub struct FixedClock(Mutex<DateTime<Utc>>);

impl FixedClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut t = lock(&self.0);
        *t += by;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *lock(&self.0)
    }
}

/// Whether `job` in `status` would be a second torrent job of its owner still downloading
/// its info-hash (the SQL repositories' unique index `jobs_one_unfinished_torrent`).
fn holds_torrent_place(jobs: &HashMap<JobId, Job>, job: &Job, status: JobStatus) -> bool {
    let unfinished = |s: JobStatus| {
        matches!(
            s,
            JobStatus::Queued | JobStatus::Resolving | JobStatus::Downloading | JobStatus::Paused
        )
    };
    let is_torrent = |j: &Job| !matches!(j.source, ferry_domain::JobSource::Url(_));
    job.info_hash.is_some()
        && is_torrent(job)
        && unfinished(status)
        && jobs.values().any(|o| {
            o.id != job.id
                && o.owner == job.owner
                && o.info_hash == job.info_hash
                && is_torrent(o)
                && unfinished(o.status)
        })
}

#[derive(Default)]
pub struct MemoryRepository {
    jobs: Mutex<HashMap<JobId, Job>>,
}

#[async_trait]
impl JobRepository for MemoryRepository {
    async fn insert(&self, job: &Job) -> Result<(), RepoError> {
        let mut jobs = lock(&self.jobs);
        if jobs.contains_key(&job.id) || holds_torrent_place(&jobs, job, job.status) {
            return Err(RepoError::AlreadyExists);
        }
        jobs.insert(job.id, job.clone());
        Ok(())
    }

    async fn get(&self, id: JobId) -> Result<Job, RepoError> {
        lock(&self.jobs)
            .get(&id)
            .cloned()
            .ok_or(RepoError::NotFound)
    }

    async fn status(&self, id: JobId) -> Result<JobStatus, RepoError> {
        lock(&self.jobs)
            .get(&id)
            .map(|j| j.status)
            .ok_or(RepoError::NotFound)
    }

    async fn list(&self, q: &JobQuery) -> Result<Vec<Job>, RepoError> {
        let jobs = lock(&self.jobs);
        let mut out: Vec<Job> = jobs
            .values()
            .filter(|j| j.owner == q.owner)
            .filter(|j| q.status.is_none_or(|s| j.status == s))
            .filter(|j| q.before.is_none_or(|b| j.id < b))
            .cloned()
            .collect();
        out.sort_by_key(|j| std::cmp::Reverse(j.id));
        out.truncate(q.limit as usize);
        Ok(out)
    }

    async fn transition(&self, id: JobId, c: &Transition) -> Result<Job, RepoError> {
        let mut jobs = lock(&self.jobs);
        let current = jobs.get(&id).ok_or(RepoError::NotFound)?;
        if current.status == c.from
            && (!current.purge_requested || c.to.is_terminal())
            && holds_torrent_place(&jobs, current, c.to)
        {
            return Err(RepoError::AlreadyExists);
        }
        let job = jobs.get_mut(&id).ok_or(RepoError::NotFound)?;
        if job.status != c.from || (job.purge_requested && !c.to.is_terminal()) {
            return Err(RepoError::Conflict {
                expected: c.from,
                actual: job.status,
            });
        }
        job.status = c.to;
        job.updated_at = c.at;
        job.error = c.error.clone();
        job.finished_at = c.to.is_terminal().then_some(c.at);
        if c.to == JobStatus::Queued {
            job.attempts = 0;
        }
        Ok(job.clone())
    }

    async fn request_purge(&self, id: JobId) -> Result<Job, RepoError> {
        let mut jobs = lock(&self.jobs);
        let job = jobs.get_mut(&id).ok_or(RepoError::NotFound)?;
        job.purge_requested = true;
        Ok(job.clone())
    }

    async fn record_metadata(&self, id: JobId, m: &TorrentMetadata) -> Result<(), RepoError> {
        let mut jobs = lock(&self.jobs);
        let job = jobs.get_mut(&id).ok_or(RepoError::NotFound)?;
        job.name = m.name.clone();
        job.info_hash = Some(m.info_hash);
        job.progress.bytes_total = m.selected_bytes();
        job.metadata = Some(m.clone());
        Ok(())
    }

    async fn record_digest(&self, id: JobId, index: usize, sha256: &str) -> Result<(), RepoError> {
        let mut jobs = lock(&self.jobs);
        let job = jobs.get_mut(&id).ok_or(RepoError::NotFound)?;
        if let Some(f) = job
            .metadata
            .as_mut()
            .and_then(|m| m.files.iter_mut().find(|f| f.index == index))
        {
            f.sha256 = Some(sha256.to_owned());
        }
        Ok(())
    }

    async fn record_progress(&self, id: JobId, p: &Progress) -> Result<(), RepoError> {
        let mut jobs = lock(&self.jobs);
        let job = jobs.get_mut(&id).ok_or(RepoError::NotFound)?;
        job.progress = *p;
        Ok(())
    }

    async fn record_attempt(
        &self,
        id: JobId,
        attempts: u32,
        error: Option<&JobError>,
    ) -> Result<(), RepoError> {
        let mut jobs = lock(&self.jobs);
        let job = jobs.get_mut(&id).ok_or(RepoError::NotFound)?;
        job.attempts = attempts;
        job.error = error.cloned();
        Ok(())
    }

    async fn find_unfinished_by_info_hash(
        &self,
        owner: &OwnerId,
        info_hash: InfoHash,
    ) -> Result<Option<JobId>, RepoError> {
        Ok(lock(&self.jobs)
            .values()
            .find(|j| {
                &j.owner == owner && j.info_hash == Some(info_hash) && !j.status.is_terminal()
            })
            .map(|j| j.id))
    }

    async fn unfinished(&self) -> Result<Vec<Unfinished>, RepoError> {
        let mut out: Vec<_> = lock(&self.jobs)
            .values()
            .filter(|j| {
                (!j.status.is_terminal() && j.status != JobStatus::Paused) || j.purge_requested
            })
            .map(|j| Unfinished {
                id: j.id,
                status: j.status,
                is_url: matches!(j.source, ferry_domain::JobSource::Url(_)),
                purge: j.purge_requested,
            })
            .collect();
        out.sort_by_key(|u| u.id);
        Ok(out)
    }

    async fn record_content(&self, id: JobId, sha256: &str) -> Result<(), RepoError> {
        let mut jobs = lock(&self.jobs);
        let job = jobs.get_mut(&id).ok_or(RepoError::NotFound)?;
        job.content_sha256 = Some(sha256.to_owned());
        Ok(())
    }

    async fn find_packaged(
        &self,
        sha256: &str,
        name: &str,
    ) -> Result<Option<TorrentMetadata>, RepoError> {
        Ok(lock(&self.jobs)
            .values()
            .filter(|j| j.content_sha256.as_deref() == Some(sha256))
            .filter_map(|j| j.metadata.clone())
            .find(|m| m.name == name))
    }

    async fn delete(&self, id: JobId) -> Result<(), RepoError> {
        lock(&self.jobs)
            .remove(&id)
            .map(|_| ())
            .ok_or(RepoError::NotFound)
    }

    async fn ping(&self) -> Result<(), RepoError> {
        Ok(())
    }
}

struct Delivery {
    job_id: JobId,
    attempt: u32,
    visible_at: tokio::time::Instant,
}

/// A FIFO per stage with delayed redelivery.
#[derive(Default)]
pub struct MemoryQueue {
    state: Mutex<QueueState>,
    notify: Notify,
}

#[derive(Default)]
struct QueueState {
    ready: HashMap<&'static str, VecDeque<Delivery>>,
    leased: HashMap<String, (Stage, JobId, u32)>,
    dead: Vec<(Stage, JobId, String)>,
    next: u64,
}

impl MemoryQueue {
    pub fn dead_letters(&self) -> Vec<(Stage, JobId, String)> {
        lock(&self.state).dead.clone()
    }

    /// Every waiting job id of `stage`, in order.
    pub fn waiting(&self, stage: Stage) -> Vec<JobId> {
        lock(&self.state)
            .ready
            .get(stage.as_str())
            .map(|q| q.iter().map(|d| d.job_id).collect())
            .unwrap_or_default()
    }

    fn push(&self, stage: Stage, job_id: JobId, attempt: u32, delay: Duration) {
        let mut st = lock(&self.state);
        st.ready
            .entry(stage.as_str())
            .or_default()
            .push_back(Delivery {
                job_id,
                attempt,
                visible_at: tokio::time::Instant::now() + delay,
            });
        drop(st);
        self.notify.notify_waiters();
    }

    fn take(&self, stage: Stage) -> Option<Lease> {
        let mut st = lock(&self.state);
        let now = tokio::time::Instant::now();
        let q = st.ready.entry(stage.as_str()).or_default();
        let pos = q.iter().position(|d| d.visible_at <= now)?;
        let d = q.remove(pos)?;
        st.next += 1;
        let receipt = format!("m{}", st.next);
        st.leased
            .insert(receipt.clone(), (stage, d.job_id, d.attempt));
        Some(Lease {
            stage,
            job_id: d.job_id,
            attempt: d.attempt,
            receipt,
        })
    }

    fn settle(&self, lease: &Lease) -> Option<(Stage, JobId, u32)> {
        lock(&self.state).leased.remove(&lease.receipt)
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn enqueue(&self, stage: Stage, job_id: JobId) -> Result<(), QueueError> {
        self.push(stage, job_id, 1, Duration::ZERO);
        Ok(())
    }

    async fn claim(&self, stage: Stage, wait: Duration) -> Result<Option<Lease>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            if let Some(lease) = self.take(stage) {
                return Ok(Some(lease));
            }
            let step = (deadline - tokio::time::Instant::now()).min(Duration::from_millis(20));
            if step.is_zero() {
                return Ok(None);
            }
            let _ = tokio::time::timeout(step, notified).await;
        }
    }

    async fn ack(&self, lease: &Lease) -> Result<(), QueueError> {
        self.settle(lease);
        Ok(())
    }

    async fn retry_later(&self, lease: &Lease, delay: Duration) -> Result<(), QueueError> {
        if self.settle(lease).is_some() {
            self.push(lease.stage, lease.job_id, lease.attempt + 1, delay);
        }
        Ok(())
    }

    async fn release(&self, lease: &Lease, after: Duration) -> Result<(), QueueError> {
        if self.settle(lease).is_some() {
            self.push(lease.stage, lease.job_id, lease.attempt, after);
        }
        Ok(())
    }

    async fn renew(&self, lease: &Lease) -> Result<(), QueueError> {
        if lock(&self.state).leased.contains_key(&lease.receipt) {
            Ok(())
        } else {
            Err(QueueError::LeaseLost)
        }
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<(), QueueError> {
        if self.settle(lease).is_some() {
            lock(&self.state)
                .dead
                .push((lease.stage, lease.job_id, reason.to_owned()));
        }
        Ok(())
    }

    async fn holds(&self, stage: Stage, job_id: JobId) -> Result<bool, QueueError> {
        let st = lock(&self.state);
        let waiting = st
            .ready
            .get(stage.as_str())
            .is_some_and(|q| q.iter().any(|d| d.job_id == job_id));
        let held = st
            .leased
            .values()
            .any(|(s, j, _)| *s == stage && *j == job_id);
        Ok(waiting || held)
    }

    async fn depth(&self, stage: Stage) -> Result<u64, QueueError> {
        Ok(lock(&self.state)
            .ready
            .get(stage.as_str())
            .map_or(0, |q| q.len() as u64))
    }
}

/// Keeps every event; subscribers get a replay and then whatever is published later.
#[derive(Default)]
pub struct MemoryBus {
    events: Mutex<Vec<PublishedEvent>>,
    subscribers: Mutex<Vec<(JobId, mpsc::Sender<PublishedEvent>)>>,
}

impl MemoryBus {
    pub fn events_of(&self, job_id: JobId) -> Vec<JobEvent> {
        lock(&self.events)
            .iter()
            .filter(|e| e.event.job_id == job_id)
            .map(|e| e.event.clone())
            .collect()
    }
}

#[async_trait]
impl ProgressBus for MemoryBus {
    async fn publish(&self, event: &JobEvent) -> Result<EventId, BusError> {
        let published = {
            let mut events = lock(&self.events);
            let p = PublishedEvent {
                id: EventId(format!("{}", events.len() + 1)),
                event: event.clone(),
            };
            events.push(p.clone());
            p
        };
        let mut subs = lock(&self.subscribers);
        subs.retain(|(job, tx)| *job != event.job_id || tx.try_send(published.clone()).is_ok());
        Ok(published.id)
    }

    async fn subscribe(
        &self,
        job_id: JobId,
        from: &Replay,
    ) -> Result<mpsc::Receiver<PublishedEvent>, BusError> {
        let events = lock(&self.events);
        let after: usize = match from {
            Replay::Retained => 0,
            Replay::LiveOnly => events.len(),
            Replay::After(id) => {
                id.0.parse()
                    .map_err(|_| BusError::BadEventId(id.0.clone()))?
            }
        };
        let (tx, rx) = mpsc::channel(4096);
        for e in events
            .iter()
            .skip(after)
            .filter(|e| e.event.job_id == job_id)
        {
            let _ = tx.try_send(e.clone());
        }
        lock(&self.subscribers).push((job_id, tx));
        drop(events);
        Ok(rx)
    }
}

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
}

struct FakeTorrent {
    meta: TorrentMetadata,
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
        }
    }

    /// Makes `meta.metainfo` (and magnets with its hash) known to the engine.
    pub fn register(&self, meta: TorrentMetadata) {
        lock(&self.known).insert(meta.metainfo.clone(), meta);
    }

    /// While stalled, downloads make no progress.
    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
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

/// Serves registered URLs from memory; `NotAllowed` for hosts named `internal*`.
#[derive(Default)]
pub struct FakeFetcher {
    pages: Mutex<HashMap<String, Vec<u8>>>,
    /// URLs answering an error status instead of their page.
    failing: Mutex<HashMap<String, u16>>,
    /// While set, a body stops after its first half until released.
    held: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FakeFetcher {
    pub fn serve(&self, url: &str, body: Vec<u8>) {
        lock(&self.pages).insert(url.to_owned(), body);
    }

    /// `url` answers `status` (`None`: its page again).
    pub fn answer(&self, url: &str, status: Option<u16>) {
        let mut failing = lock(&self.failing);
        match status {
            Some(s) => failing.insert(url.to_owned(), s),
            None => failing.remove(url),
        };
    }

    /// Holds every body after its first half (a fetch stays in flight) until released.
    pub fn hold(&self, held: bool) {
        self.held.store(held, Ordering::SeqCst);
    }
}

struct FakeBody {
    info: FetchInfo,
    bytes: Vec<u8>,
    held: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl FetchBody for FakeBody {
    fn info(&self) -> &FetchInfo {
        &self.info
    }

    async fn save(
        self: Box<Self>,
        dest: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Fetched, FetchError> {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| FetchError::Unexpected(e.into()))?;
        }
        // A new file under the name (never a write through other names of the old one).
        let io = |e: std::io::Error| FetchError::Unexpected(e.into());
        let half = self.bytes.len() / 2;
        let _ = std::fs::remove_file(dest);
        std::fs::write(dest, &self.bytes[..half]).map_err(io)?;
        progress(half as u64);
        while self.held.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        std::fs::write(dest, &self.bytes).map_err(io)?;
        progress(self.bytes.len() as u64);
        Ok(Fetched {
            size: self.bytes.len() as u64,
            sha256: fake_digest(&self.bytes),
        })
    }
}

#[async_trait]
impl Fetcher for FakeFetcher {
    async fn open(
        &self,
        url: &ferry_domain::FetchUrl,
        _partial: Option<&Path>,
    ) -> Result<Box<dyn FetchBody>, FetchError> {
        if url
            .as_url()
            .host_str()
            .is_some_and(|h| h.starts_with("internal"))
        {
            return Err(FetchError::NotAllowed(format!("{url} is internal")));
        }
        if let Some(status) = lock(&self.failing).get(url.as_url().as_str()) {
            return Err(FetchError::Status(*status));
        }
        let bytes = lock(&self.pages)
            .get(url.as_url().as_str())
            .cloned()
            .ok_or(FetchError::Status(404))?;
        Ok(Box::new(FakeBody {
            info: FetchInfo {
                size: Some(bytes.len() as u64),
                mime: None,
                final_url: url.to_string(),
                resumed_from: 0,
            },
            bytes,
            held: self.held.clone(),
        }))
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
                only: spec.only_files,
                done: 0,
                checks_left: self.checking_calls.load(Ordering::SeqCst),
            });
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
}

/// Objects held in memory; "located" as a made-up URL.
#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<String, Vec<u8>>>,
    /// While set, a put reports half its bytes and waits before it stores anything.
    held: std::sync::atomic::AtomicBool,
    /// Puts started and not yet finished (or dropped).
    in_flight: std::sync::Arc<AtomicU64>,
}

/// Counts a put as in flight until it ends or is dropped.
struct InFlight(std::sync::Arc<AtomicU64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl MemoryStore {
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<_> = lock(&self.objects).keys().cloned().collect();
        k.sort();
        k
    }

    /// Holds every put halfway (an upload stays in flight) until released.
    pub fn hold(&self, held: bool) {
        self.held.store(held, Ordering::SeqCst);
    }

    /// Puts running now.
    pub fn puts_in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn put_file(&self, req: PutRequest<'_>) -> Result<StoredObject, StoreError> {
        let bytes = match std::fs::read(req.source) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NotFound),
            Err(e) => return Err(StoreError::Unexpected(e.into())),
        };
        let n = bytes.len() as u64;
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight(self.in_flight.clone());
        (req.progress)(n / 2);
        while self.held.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (req.progress)(n);
        let sha256 = fake_digest(&bytes);
        lock(&self.objects).insert(req.key.as_str().to_owned(), bytes);
        Ok(StoredObject { size: n, sha256 })
    }

    async fn abort_uploads(&self, _job: JobId) -> Result<(), StoreError> {
        Ok(())
    }

    async fn size(&self, key: &StorageKey) -> Result<Option<u64>, StoreError> {
        Ok(lock(&self.objects)
            .get(key.as_str())
            .map(|b| b.len() as u64))
    }

    async fn locate(&self, key: &StorageKey) -> Result<ObjectLocation, StoreError> {
        if lock(&self.objects).contains_key(key.as_str()) {
            Ok(ObjectLocation::Url(format!("memory://{key}")))
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn delete_prefix(&self, prefix: &StorageKey) -> Result<(), StoreError> {
        let p = prefix.as_str();
        lock(&self.objects).retain(|k, _| !(k == p || k.starts_with(&format!("{p}/"))));
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Not SHA-256: a stand-in digest for the fakes (the application does not hash).
fn fake_digest(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}{:048x}", bytes.len())
}

#[derive(Default)]
pub struct MemoryProfiles {
    profiles: Mutex<Vec<SealedProfile>>,
}

#[async_trait]
impl ProfileRepository for MemoryProfiles {
    async fn insert(&self, profile: &SealedProfile) -> Result<(), RepoError> {
        let mut all = lock(&self.profiles);
        if all.iter().any(|p| p.profile.id == profile.profile.id) {
            return Err(RepoError::AlreadyExists);
        }
        all.push(profile.clone());
        Ok(())
    }

    async fn get(
        &self,
        owner: &OwnerId,
        id: ProfileId,
    ) -> Result<Option<SealedProfile>, RepoError> {
        Ok(lock(&self.profiles)
            .iter()
            .find(|p| p.profile.id == id && &p.profile.owner == owner)
            .cloned())
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<StorageProfile>, RepoError> {
        Ok(lock(&self.profiles)
            .iter()
            .filter(|p| &p.profile.owner == owner)
            .map(|p| p.profile.clone())
            .collect())
    }

    async fn delete(&self, owner: &OwnerId, id: ProfileId) -> Result<(), RepoError> {
        let mut all = lock(&self.profiles);
        let before = all.len();
        all.retain(|p| !(p.profile.id == id && &p.profile.owner == owner));
        if all.len() == before {
            return Err(RepoError::NotFound);
        }
        Ok(())
    }

    async fn all_sealed(&self) -> Result<Vec<SealedProfile>, RepoError> {
        let mut all = lock(&self.profiles).clone();
        all.sort_by_key(|p| p.profile.id);
        Ok(all)
    }

    async fn replace_credentials(
        &self,
        id: ProfileId,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool, RepoError> {
        let mut all = lock(&self.profiles);
        match all
            .iter_mut()
            .find(|p| p.profile.id == id && p.credentials == expected)
        {
            Some(p) => {
                p.credentials = sealed.to_vec();
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// A "secret box" for tests: reversible, with a check byte so tampering is detected. Not
/// encryption.
#[derive(Default)]
pub struct PlainBox;

impl PlainBox {
    /// A check over the plaintext and the context, so tampering and a wrong context show.
    fn check(plain: &[u8], context: &[u8]) -> [u8; 8] {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in plain.iter().chain(b"\0").chain(context) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        h.to_le_bytes()
    }
}

impl SecretBox for PlainBox {
    fn seal(&self, plain: &[u8], context: &[u8]) -> Vec<u8> {
        let mut out = Self::check(plain, context).to_vec();
        out.extend(plain.iter().map(|b| b ^ 0x5a));
        out
    }

    fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < 8 {
            return Err(SecretError);
        }
        let (check, body) = sealed.split_at(8);
        let plain: Vec<u8> = body.iter().map(|b| b ^ 0x5a).collect();
        if Self::check(&plain, context) != check {
            return Err(SecretError);
        }
        Ok(plain)
    }

    fn is_current(&self, _sealed: &[u8]) -> bool {
        true
    }
}

#[derive(Default)]
pub struct MemorySessions {
    sessions: Mutex<HashMap<(JobId, String), String>>,
}

#[async_trait]
impl UploadSessions for MemorySessions {
    async fn get(&self, job: JobId, key: &str) -> Result<Option<String>, RepoError> {
        Ok(lock(&self.sessions).get(&(job, key.to_owned())).cloned())
    }

    async fn set(&self, job: JobId, key: &str, session: Option<&str>) -> Result<(), RepoError> {
        let mut all = lock(&self.sessions);
        match session {
            Some(s) => {
                all.insert((job, key.to_owned()), s.to_owned());
            }
            None => {
                all.remove(&(job, key.to_owned()));
            }
        }
        Ok(())
    }

    async fn of_job(&self, job: JobId) -> Result<Vec<(String, String)>, RepoError> {
        let mut out: Vec<_> = lock(&self.sessions)
            .iter()
            .filter(|((j, _), _)| *j == job)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect();
        out.sort();
        Ok(out)
    }
}

/// Resolves `None` to the local store and each profile to a memory store of its own.
pub struct FakeResolver {
    pub local: std::sync::Arc<MemoryStore>,
    pub profiles: std::sync::Arc<MemoryProfiles>,
    remote: Mutex<HashMap<ProfileId, std::sync::Arc<MemoryStore>>>,
}

impl FakeResolver {
    pub fn new(
        local: std::sync::Arc<MemoryStore>,
        profiles: std::sync::Arc<MemoryProfiles>,
    ) -> Self {
        Self {
            local,
            profiles,
            remote: Mutex::new(HashMap::new()),
        }
    }

    /// The memory store standing for a profile's remote storage.
    pub fn remote(&self, id: ProfileId) -> std::sync::Arc<MemoryStore> {
        lock(&self.remote).entry(id).or_default().clone()
    }
}

#[async_trait]
impl StoreResolver for FakeResolver {
    async fn store(
        &self,
        owner: &OwnerId,
        profile: Option<ProfileId>,
    ) -> Result<std::sync::Arc<dyn ObjectStore>, StoreError> {
        match profile {
            None => Ok(self.local.clone()),
            Some(id) => {
                let found = self
                    .profiles
                    .get(owner, id)
                    .await
                    .map_err(|e| StoreError::Unexpected(e.into()))?;
                if found.is_none() {
                    return Err(StoreError::NotFound);
                }
                Ok(self.remote(id))
            }
        }
    }

    async fn build(
        &self,
        profile: &StorageProfile,
        _credentials: &Credentials,
    ) -> Result<std::sync::Arc<dyn ObjectStore>, StoreError> {
        Ok(self.remote(profile.id))
    }
}

/// A guard with a fixed name table: names it does not know do not resolve.
#[derive(Default)]
pub struct FakeAddressGuard {
    pub policy: ferry_domain::AddressPolicy,
    names: Mutex<HashMap<String, std::net::IpAddr>>,
}

impl FakeAddressGuard {
    pub fn new(policy: ferry_domain::AddressPolicy) -> Self {
        Self {
            policy,
            names: Mutex::default(),
        }
    }

    /// `name` resolves to `ip`.
    pub fn map(&self, name: &str, ip: &str) {
        let ip = ip.parse().unwrap();
        lock(&self.names).insert(name.to_ascii_lowercase(), ip);
    }
}

#[async_trait]
impl AddressGuard for FakeAddressGuard {
    async fn check_host(&self, host: &str) -> Result<(), AddressError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ip = match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => ip,
            Err(_) => *lock(&self.names)
                .get(&host.trim_end_matches('.').to_ascii_lowercase())
                .ok_or_else(|| AddressError::Unresolved(format!("{host} does not resolve")))?,
        };
        self.policy.check(ip).map_err(AddressError::NotAllowed)
    }
}
