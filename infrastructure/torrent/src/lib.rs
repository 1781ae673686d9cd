//! The embedded BitTorrent engine: librqbit behind the `TorrentEngine` port.
//!
//! A torrent's data belongs to the engine while it downloads: one copy per info-hash under
//! `{staging}/.torrents/{info hash}/data/`, shared by every job that wants it (one librqbit
//! session runs a torrent once; jobs of different owners may want the same one). Each job
//! that holds the data has a marker `{staging}/.torrents/{info hash}/jobs/{job id}`, so a
//! paused job keeps its share across restarts, and the copy goes when the last job lets go.
//! An engine locks every share it runs (workers may share one staging volume); a job whose
//! torrent another process runs gets a share of its own, `.torrents/{info hash}.{job id}`.
//! A finished job's files are handed over into `{staging}/{job id}/` as hard links (a file
//! librqbit has finished is never written again, and the vendored librqbit never writes
//! through a file with other names), where the job's [`SafePath`]s are exactly the paths
//! on disk. Torrent metadata is validated by [`inspect`] before anything is written.
//!
//! Peers at internal addresses the operator has not allowed (`peer_policy`) are neither
//! connected to nor accepted: the session gets them as its block list, which the vendored
//! librqbit applies to every peer source (trackers, DHT, `x.pe`, PEX), also while a magnet's
//! metadata is resolved.

mod inspect;
mod live;
mod package;
mod proxy;
#[cfg(feature = "testing")]
pub mod testing;

pub use live::{LiveStreams, STREAM_PERMITS};
pub use package::{Packager, Sha1Path, piece_length_for};

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use async_trait::async_trait;
use ferry_application::ports::{
    EngineError, EngineStats, Staging, TorrentEngine, TorrentInspector, TorrentSpec,
};
use ferry_domain::{AddressPolicy, JobId, MagnetLink, SpeedLimits, TorrentMetadata};
use ferry_local_storage::LocalStaging;
use librqbit::api::TorrentIdOrHash;
use librqbit::limits::LimitsConfig;
use librqbit::{
    AddTorrent, AddTorrentOptions, AddTorrentResponse, ListenerMode, ListenerOptions,
    ManagedTorrent, ManagedTorrentState, Session, SessionOptions,
};

pub use inspect::{MAX_METAINFO_BYTES, inspect};

/// The `TorrentInspector`: librqbit's parser with Ferry's checks, no session needed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Inspector;

impl TorrentInspector for Inspector {
    fn inspect(&self, metainfo: &[u8]) -> Result<TorrentMetadata, EngineError> {
        inspect(metainfo)
    }
}

/// How the engine joins the swarm.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where jobs' data is staged while downloading.
    pub staging_dir: PathBuf,
    /// Address for incoming peer connections; `None` disables listening.
    pub listen: Option<SocketAddr>,
    /// Distributed hash table (trackerless magnets). Off in tests on loopback.
    pub dht: bool,
    /// Local service discovery (multicast on the LAN).
    pub lsd: bool,
    /// Ask the router to forward the listening port (UPnP).
    pub upnp: bool,
    pub download_limit_bps: Option<NonZeroU32>,
    pub upload_limit_bps: Option<NonZeroU32>,
    /// Peers per torrent (librqbit's default, 128, when `None`).
    pub peer_limit: Option<usize>,
    /// Peer connections across every torrent, magnet metadata requests included; `None`
    /// is unlimited.
    pub max_connections: Option<usize>,
    /// Which peer addresses the engine may connect to or accept (`torrent.allow`).
    pub peer_policy: AddressPolicy,
    /// A SOCKS5 proxy (`socks5://` or `socks5h://host:port`) for every peer connection and
    /// HTTP(S) tracker announce. UDP trackers are skipped while proxied; the caller turns
    /// the DHT, LSD, UPnP and listening off (see the wiring's `TorrentNetwork`).
    pub proxy: Option<String>,
    /// With a proxy: downloads fail (`EngineError::ProxyUnavailable`) while it is down.
    pub proxy_required: bool,
    /// The operator's peer block list (inclusive ranges), replaced later with
    /// [`RqbitEngine::set_peer_blocklist`].
    pub peer_blocklist: Vec<(IpAddr, IpAddr)>,
}

/// The session's block list: the ranges `policy` refuses (internal addresses not in
/// `torrent.allow`) and the operator's peer block list (`blocklist.peers`).
fn block_list(policy: &AddressPolicy, operator: &[(IpAddr, IpAddr)]) -> librqbit::IpRanges {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (first, last) in policy
        .refused_ranges()
        .into_iter()
        .chain(operator.iter().copied())
    {
        // librqbit's ranges end before their `end`; one past the last address (the very
        // last address of a family cannot be named that way and stays open).
        match (first, last) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                v4.push(a..std::net::Ipv4Addr::from_bits(b.to_bits().saturating_add(1)));
                // The same hosts written as IPv4-mapped IPv6 (`::ffff:1.2.3.4`), which
                // librqbit compares as IPv6.
                v6.push(
                    a.to_ipv6_mapped()
                        ..std::net::Ipv6Addr::from_bits(
                            b.to_ipv6_mapped().to_bits().saturating_add(1),
                        ),
                );
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                v6.push(a..std::net::Ipv6Addr::from_bits(b.to_bits().saturating_add(1)));
            }
            _ => {}
        }
    }
    librqbit::IpRanges::new(v4, v6)
}

/// Port 0 means "any free port"; pick it now so it can be announced to trackers.
fn with_concrete_port(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = std::net::TcpListener::bind(addr)
        .with_context(|| format!("finding a free port on {}", addr.ip()))?;
    Ok(probe.local_addr()?)
}

pub struct RqbitEngine {
    session: Arc<Session>,
    staging: LocalStaging,
    running: Mutex<HashMap<JobId, Running>>,
    /// Starting and letting go of torrents one at a time: whether a torrent is shared, and
    /// whether its data may go, depends on every job's share.
    turns: tokio::sync::Mutex<()>,
    /// Locks (`{share}/lock`, `flock`) on the data folders this engine runs torrents in:
    /// torrent workers may share one staging volume, and two processes must never write one
    /// folder.
    locks: Mutex<HashMap<PathBuf, std::fs::File>>,
    /// The required proxy's health (`proxy_required`).
    proxy: Option<proxy::ProxyWatch>,
    /// Internal addresses the engine must not reach (part of every block list).
    peer_policy: AddressPolicy,
    /// The peers a magnet's resolution found, by info hash and trackers, until its download
    /// starts: they go to it as initial peers, so it connects at once instead of waiting for
    /// its trackers (or a new DHT search) to find them again. Only a torrent announcing to
    /// the same trackers gets them (peers a private tracker named go to no other run).
    seen: Mutex<SeenPeers>,
}

/// How long the peers a resolution found are kept for the download that follows it.
const SEEN_FOR: std::time::Duration = std::time::Duration::from_secs(600);
/// The most resolutions whose peers are kept (the oldest go first), and peers of each.
const SEEN_TORRENTS: usize = 256;
const SEEN_PEERS: usize = 200;

#[derive(Default)]
struct SeenPeers(HashMap<String, (std::time::Instant, Vec<SocketAddr>)>);

/// The torrent's info hash and trackers, the key of its resolution's peers.
fn seen_key(meta: &TorrentMetadata) -> String {
    let mut trackers = meta.trackers.clone();
    trackers.sort();
    trackers.dedup();
    format!("{} {}", meta.info_hash.to_hex(), trackers.join(" "))
}

impl SeenPeers {
    fn remember(&mut self, info_hash: String, mut peers: Vec<SocketAddr>) {
        let now = std::time::Instant::now();
        self.0
            .retain(|_, (at, _)| now.duration_since(*at) < SEEN_FOR);
        if peers.is_empty() {
            return;
        }
        peers.truncate(SEEN_PEERS);
        while self.0.len() >= SEEN_TORRENTS && !self.0.contains_key(&info_hash) {
            let Some(oldest) = self
                .0
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.0.remove(&oldest);
        }
        self.0.insert(info_hash, (now, peers));
    }

    fn peek(&self, key: &str) -> Vec<SocketAddr> {
        match self.0.get(key) {
            Some((at, peers)) if at.elapsed() < SEEN_FOR => peers.clone(),
            _ => Vec::new(),
        }
    }

    fn forget(&mut self, key: &str) {
        self.0.remove(key);
    }
}

struct Running {
    handle: Arc<ManagedTorrent>,
    /// The folder the torrent's paths (its files' [`SafePath`]s) start from.
    base: PathBuf,
    /// The engine's data folder, `{staging}/.torrents/{info hash}`, unless the job brought
    /// its own data (seeding).
    shared: Option<PathBuf>,
    /// The job's selection (`None`: every file).
    only: Option<Vec<usize>>,
    /// (file index, length, path) of the files the job wants.
    wanted: Vec<(usize, u64, ferry_domain::SafePath)>,
    /// The torrent's trackers as the job gave them (sorted): jobs share a run only when
    /// they announce to the same trackers (a private tracker's URL names its user).
    trackers: Vec<String>,
    /// The job's own speed limits (a shared torrent runs at the loosest of its jobs').
    limits: SpeedLimits,
    /// Tells the job's open streams how its run ended.
    board: live::Board,
}

/// A [`Running`] before its torrent is in the session.
struct Pending {
    base: PathBuf,
    shared: Option<PathBuf>,
    only: Option<Vec<usize>>,
    wanted: Vec<(usize, u64, ferry_domain::SafePath)>,
    trackers: Vec<String>,
    limits: SpeedLimits,
}

impl Pending {
    fn with(self, handle: Arc<ManagedTorrent>) -> Running {
        Running {
            handle,
            base: self.base,
            shared: self.shared,
            only: self.only,
            wanted: self.wanted,
            trackers: self.trackers,
            limits: self.limits,
            board: live::Board::default(),
        }
    }
}

/// The folder of `info_hash`'s shared data and its holders.
fn torrent_dir(staging: &Path, info_hash: &str) -> PathBuf {
    staging.join(".torrents").join(info_hash)
}

fn marker(shared: &Path, job_id: JobId) -> PathBuf {
    shared.join("jobs").join(job_id.to_string())
}

/// The shares under `torrents` that `job_id` holds.
fn shares_of(torrents: &Path, job_id: JobId) -> Vec<PathBuf> {
    std::fs::read_dir(torrents)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| marker(p, job_id).exists())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a job still holds `shared`'s data.
fn has_holders(shared: &Path) -> bool {
    std::fs::read_dir(shared.join("jobs")).is_ok_and(|mut d| d.next().is_some())
}

impl RqbitEngine {
    /// Starts the session (listening socket, DHT if enabled).
    ///
    /// # Errors
    /// When the staging folder cannot be created or the listening port is taken.
    pub async fn start(config: EngineConfig) -> anyhow::Result<Self> {
        tokio::fs::create_dir_all(&config.staging_dir)
            .await
            .with_context(|| format!("creating staging folder {}", config.staging_dir.display()))?;
        let watch = match (&config.proxy, config.proxy_required) {
            (Some(url), true) => Some(proxy::ProxyWatch::start(proxy::ProxyAddress::parse(url)?)),
            (Some(url), false) => {
                proxy::ProxyAddress::parse(url)?;
                None
            }
            (None, true) => anyhow::bail!(
                "a proxy is required but none is configured: refusing to connect to peers directly"
            ),
            (None, false) => None,
        };
        let opts = SessionOptions {
            connect: config
                .proxy
                .as_ref()
                .map(|url| librqbit::ConnectionOptions {
                    proxy_url: Some(url.clone()),
                    ..Default::default()
                }),
            dht: if config.dht {
                Some(Default::default())
            } else {
                None
            },
            disable_local_service_discovery: !config.lsd,
            fastresume: false,
            persistence: None,
            listen: match config.listen {
                Some(addr) => {
                    let addr = with_concrete_port(addr)?;
                    Some(ListenerOptions {
                        mode: ListenerMode::TcpOnly,
                        listen_addr: addr,
                        enable_upnp_port_forwarding: config.upnp,
                        ipv4_only: addr.is_ipv4(),
                        // librqbit announces no port for a loopback listener (trackers then
                        // get its default 4240); always announce the one peers can reach.
                        announce_port: Some(addr.port()),
                        ..Default::default()
                    })
                }
                None => None,
            },
            ratelimits: LimitsConfig {
                download_bps: config.download_limit_bps,
                upload_bps: config.upload_limit_bps,
            },
            peer_limit: config.peer_limit,
            max_peer_connections: config.max_connections,
            // Every open stream holds one of these for its life (see `live`).
            runtime_worker_threads: Some(live::SESSION_BLOCKING_PERMITS),
            client_name_and_version: Some(format!("Ferry {}", env!("CARGO_PKG_VERSION"))),
            ..Default::default()
        };
        let session = Session::new_with_opts(config.staging_dir.clone(), opts)
            .await
            .context("starting the BitTorrent session")?;
        // Before any torrent is added: every peer source is filtered through it.
        session.set_blocklist(block_list(&config.peer_policy, &config.peer_blocklist));
        tracing::info!(
            listen = ?session.listen_addr(),
            dht = config.dht,
            proxied = session.is_proxied(),
            proxy_required = config.proxy_required,
            "torrent engine started"
        );
        let engine = Self {
            session,
            staging: LocalStaging::new(config.staging_dir),
            running: Mutex::new(HashMap::new()),
            turns: tokio::sync::Mutex::new(()),
            locks: Mutex::new(HashMap::new()),
            proxy: watch,
            peer_policy: config.peer_policy,
            seen: Mutex::new(SeenPeers::default()),
        };
        engine.sweep_shares().await;
        Ok(engine)
    }

    /// Replaces the operator's peer block list: peers in it are neither connected to nor
    /// accepted from now on (connections already open stay until they end).
    pub fn set_peer_blocklist(&self, ranges: &[(IpAddr, IpAddr)]) {
        self.session
            .set_blocklist(block_list(&self.peer_policy, ranges));
        tracing::info!(ranges = ranges.len(), "peer block list replaced");
    }

    /// The address peers can reach this engine on, if it listens.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.session.listen_addr()
    }

    /// Stops every torrent and the session.
    pub async fn shutdown(&self) {
        self.session.stop().await;
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, SeenPeers> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Running>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn unexpected(e: anyhow::Error) -> EngineError {
    EngineError::Unexpected(e)
}

#[async_trait]
impl TorrentEngine for RqbitEngine {
    async fn resolve(&self, magnet: &MagnetLink) -> Result<TorrentMetadata, EngineError> {
        let opts = AddTorrentOptions {
            list_only: true,
            initial_peers: Some(magnet.peers().to_vec()).filter(|p| !p.is_empty()),
            ..Default::default()
        };
        let link = magnet.to_string();
        let response = self
            .session
            .add_torrent(AddTorrent::from_url(link.as_str()), Some(opts))
            .await
            .map_err(|e| unexpected(e.context("resolving the magnet link")))?;
        match response {
            AddTorrentResponse::ListOnly(r) => {
                let meta = inspect(&r.torrent_bytes)?;
                // A private torrent takes peers from its trackers only (BEP 27): the
                // resolution may have found these through DHT or LSD, before it knew.
                if !meta.private {
                    self.seen().remember(seen_key(&meta), r.seen_peers);
                }
                Ok(meta)
            }
            _ => Err(unexpected(anyhow::anyhow!(
                "the engine started a torrent it was asked to list"
            ))),
        }
    }

    async fn start(&self, mut spec: TorrentSpec) -> Result<(), EngineError> {
        let _turn = self.turns.lock().await;
        if self.running().contains_key(&spec.job_id) {
            return Ok(());
        }
        let meta = inspect(&spec.metainfo)?;
        // A download gets the peers its magnet's resolution just found (the session's block
        // list still filters them); they are forgotten once it runs, and stay for another
        // try if it cannot start now (`Busy`).
        let seen_key = seen_key(&meta);
        if spec.data_dir.is_none() {
            let seen = self.seen().peek(&seen_key);
            for peer in seen {
                if !spec.peers.contains(&peer) {
                    spec.peers.push(peer);
                }
            }
        }
        let mut wanted = Vec::new();
        for f in &meta.files {
            if spec
                .only_files
                .as_ref()
                .is_none_or(|o| o.contains(&f.index))
            {
                wanted.push((f.index, f.size, f.safe_path()?));
            }
        }
        let mut trackers = meta.trackers.clone();
        trackers.sort();
        trackers.dedup();
        let (base, shared) = match spec.data_dir.clone() {
            Some(dir) => (dir, None),
            None => {
                let shared = self
                    .take_share(spec.job_id, &meta.info_hash.to_hex())
                    .await
                    .map_err(|e| unexpected(e.context("preparing the torrent's data folder")))?
                    .ok_or(EngineError::Busy)?;
                (shared.join("data"), Some(shared))
            }
        };
        let taken = shared.clone();
        let running = Pending {
            base,
            shared,
            only: spec.only_files.clone(),
            wanted,
            trackers,
            limits: spec.limits,
        };
        let result = self.add(&spec, &meta, running).await;
        if result.is_ok() && spec.data_dir.is_none() {
            self.seen().forget(&seen_key);
        }
        if result.is_err()
            && let Some(share) = taken
        {
            // The share stays the job's (its marker), but unlocked while nothing runs in it.
            self.release_if_unused(&share);
        }
        result
    }

    async fn stats(&self, job_id: JobId) -> Result<EngineStats, EngineError> {
        let (handle, wanted) = {
            let running = self.running();
            let r = running.get(&job_id).ok_or(EngineError::NotRunning)?;
            (r.handle.clone(), r.wanted.clone())
        };
        // A shared torrent's files may not have changed yet if it was checking its data when
        // a job joined or left.
        self.select_for_holders(&handle).await?;
        // Nor its limits (they apply once it is live).
        self.apply_limits(&handle);
        let s = handle.stats();
        // While it checks the data already on disk librqbit reports the bytes it has checked
        // as progress; those are not downloaded bytes, and reporting them made progress jump
        // up then back to zero (issue 8, defect 15).
        let checking = matches!(s.state, librqbit::TorrentStatsState::Initializing { .. });
        // librqbit counts whole pieces, including the parts of boundary pieces that belong
        // to files the job did not select: count the selected files' bytes instead.
        let (bytes_done, bytes_total) = if checking {
            (0, s.total_bytes)
        } else if s.file_progress.is_empty() {
            (s.progress_bytes, s.total_bytes)
        } else {
            wanted
                .iter()
                .fold((0, 0), |(done, total), (index, len, _)| {
                    let have = s.file_progress.get(*index).copied().unwrap_or(0).min(*len);
                    (done + have, total + len)
                })
        };
        // A shared torrent may still fetch files other jobs want: this job is finished when
        // its own files are.
        let finished = if s.file_progress.is_empty() {
            s.finished
        } else {
            wanted
                .iter()
                .all(|(index, len, _)| s.file_progress.get(*index).is_some_and(|have| have >= len))
        };
        let to_bps = |mbps: f64| (mbps * 1024.0 * 1024.0) as u64;
        let (download_rate, upload_rate, peers) = s.live.as_ref().map_or((0, 0, 0), |l| {
            (
                to_bps(l.download_speed.mbps),
                to_bps(l.upload_speed.mbps),
                l.snapshot.peer_stats.live,
            )
        });
        Ok(EngineStats {
            bytes_done,
            bytes_total,
            download_rate,
            upload_rate,
            uploaded_bytes: s.uploaded_bytes,
            peers,
            finished: finished && !checking,
            checking,
            error: s.error,
        })
    }

    async fn stop(&self, job_id: JobId, delete_data: bool) -> Result<(), EngineError> {
        let _turn = self.turns.lock().await;
        let running = self.running().remove(&job_id);
        if let Some(r) = &running {
            r.board.stopped();
            self.let_go(r).await?;
        }
        if delete_data {
            self.drop_share(job_id, running.as_ref().map(|r| self.shares_used(r)))
                .await
                .map_err(|e| unexpected(e.context("removing the torrent's data")))?;
        }
        Ok(())
    }

    async fn set_limits(&self, job_id: JobId, limits: SpeedLimits) -> Result<(), EngineError> {
        let handle = {
            let mut running = self.running();
            let r = running.get_mut(&job_id).ok_or(EngineError::NotRunning)?;
            r.limits = limits;
            r.handle.clone()
        };
        self.apply_limits(&handle);
        Ok(())
    }

    async fn network(&self) -> Result<(), EngineError> {
        match &self.proxy {
            Some(watch) => watch.check().map_err(EngineError::ProxyUnavailable),
            None => Ok(()),
        }
    }

    async fn hand_over(&self, job_id: JobId) -> Result<(), EngineError> {
        let _turn = self.turns.lock().await;
        let (base, wanted) = {
            let running = self.running();
            let r = running.get(&job_id).ok_or(EngineError::NotRunning)?;
            (r.base.clone(), r.wanted.clone())
        };
        for (_, _, path) in &wanted {
            let from = path.components().fold(base.clone(), |p, c| p.join(c));
            ferry_local_storage::replace_with_link(&from, &self.staging.file(job_id, path))
                .await
                .map_err(|e| unexpected(anyhow::Error::new(e).context("handing the files over")))?;
        }
        let Some(running) = self.running().remove(&job_id) else {
            return Ok(());
        };
        // Open streams go on from the handed-over files before the torrent goes.
        running.board.handed_over(|index| {
            wanted
                .iter()
                .find(|(i, _, _)| *i == index)
                .map(|(_, _, path)| self.staging.file(job_id, path))
        });
        self.let_go(&running).await?;
        self.drop_share(job_id, Some(self.shares_used(&running)))
            .await
            .map_err(|e| unexpected(e.context("removing the torrent's data")))
    }
}

impl RqbitEngine {
    /// Runs `handle`'s torrent at the loosest limits of the jobs that hold it (one job's
    /// limit must not slow another's download). A torrent still checking its data has no
    /// live state yet: it starts with the limits it was added with, and the next call
    /// (each `stats`) brings them up to date.
    fn apply_limits(&self, handle: &Arc<ManagedTorrent>) {
        let wanted = {
            let running = self.running();
            let holders: Vec<SpeedLimits> = running
                .values()
                .filter(|r| Arc::ptr_eq(&r.handle, handle))
                .map(|r| r.limits)
                .collect();
            if holders.is_empty() {
                return;
            }
            SpeedLimits::loosest(&holders)
        };
        let Some(live) = handle.live() else {
            return;
        };
        let limits = live.ratelimits();
        // Setting one starts its budget afresh: only on a change.
        if limits.get_download_bps() != wanted.download_bps {
            limits.set_download_bps(wanted.download_bps);
        }
        if limits.get_upload_bps() != wanted.upload_bps {
            limits.set_upload_bps(wanted.upload_bps);
        }
    }

    /// Adds the job's torrent to the session, or joins the run of it another job has.
    async fn add(
        &self,
        spec: &TorrentSpec,
        meta: &TorrentMetadata,
        running: Pending,
    ) -> Result<(), EngineError> {
        let mut folder = running.base.clone();
        if let Some(top) = torrent_folder(meta) {
            folder.push(top);
        }
        for _ in 0..2 {
            let opts = AddTorrentOptions {
                only_files: spec.only_files.clone(),
                output_folder: Some(folder.to_string_lossy().into_owned()),
                // The engine's own folder: reuse what an earlier run wrote.
                overwrite: true,
                initial_peers: Some(spec.peers.clone()).filter(|p| !p.is_empty()),
                // Limited from the first byte; `apply_limits` keeps them up to date.
                ratelimits: LimitsConfig {
                    download_bps: spec.limits.download_bps,
                    upload_bps: spec.limits.upload_bps,
                },
                ..Default::default()
            };
            let response = self
                .session
                .add_torrent(AddTorrent::from_bytes(spec.metainfo.clone()), Some(opts))
                .await
                .map_err(|e| unexpected(e.context("adding the torrent")))?;
            let handle = match response {
                AddTorrentResponse::Added(_, handle) => {
                    self.running().insert(spec.job_id, running.with(handle));
                    return Ok(());
                }
                AddTorrentResponse::AlreadyManaged(_, handle) => handle,
                AddTorrentResponse::ListOnly(_) => {
                    return Err(unexpected(anyhow::anyhow!(
                        "the engine only listed the torrent"
                    )));
                }
            };
            let holder = self
                .running()
                .values()
                .find(|r| Arc::ptr_eq(&r.handle, &handle))
                .map(|r| (r.base.clone(), r.shared.is_some(), r.trackers.clone()));
            let Some((base, holder_downloads, holder_trackers)) = holder else {
                // No job runs it (a stop that could not remove it): remove it, add again.
                tracing::warn!(job_id = %spec.job_id, info_hash = %meta.info_hash, "removing a torrent no job runs");
                self.session
                    .delete(TorrentIdOrHash::Id(handle.id()), false)
                    .await
                    .map_err(|e| unexpected(e.context("removing an abandoned torrent")))?;
                continue;
            };
            if holder_trackers != running.trackers {
                // Another job's trackers (a private tracker's passkey) must not carry this
                // job's traffic, nor this job's theirs: wait for the other run to end.
                return Err(EngineError::Busy);
            }
            return self
                .join(spec.job_id, running, handle, base, holder_downloads)
                .await;
        }
        Err(EngineError::Busy)
    }

    /// Another job of this engine runs the torrent (announcing to the same trackers: see
    /// `add`). Downloads share it (the job's share is the one the data is in); a download joins a seed only when the seed already holds
    /// every file it wants (it writes nothing into the seed's folder); a seed waits for a
    /// download to end (`Busy`).
    async fn join(
        &self,
        job_id: JobId,
        mut running: Pending,
        handle: Arc<ManagedTorrent>,
        base: PathBuf,
        holder_downloads: bool,
    ) -> Result<(), EngineError> {
        let own = running.shared.clone();
        match (running.shared.is_some(), holder_downloads) {
            (true, true) => {
                let data_share = base.parent().map(Path::to_path_buf);
                if data_share.is_some() && data_share != own {
                    let data_share = data_share.unwrap_or_default();
                    tokio::fs::write(marker(&data_share, job_id), b"")
                        .await
                        .map_err(|e| {
                            unexpected(anyhow::Error::new(e).context("joining a torrent share"))
                        })?;
                    self.leave_share(job_id, own.clone()).await?;
                    running.shared = Some(data_share);
                }
                running.base = base;
                self.running().insert(job_id, running.with(handle.clone()));
                self.select_for_holders(&handle).await?;
                tracing::info!(%job_id, "sharing a torrent another job downloads");
                Ok(())
            }
            (true, false) => {
                let count = handle
                    .metadata
                    .load()
                    .as_ref()
                    .map_or(0, |m| m.file_infos.len());
                let has: HashSet<usize> = handle
                    .only_files()
                    .map_or_else(|| (0..count).collect(), |o| o.into_iter().collect());
                let covered = running.only.as_ref().map_or(has.len() == count, |want| {
                    want.iter().all(|i| has.contains(i))
                });
                if !(covered && handle.stats().finished) {
                    return Err(EngineError::Busy);
                }
                self.leave_share(job_id, own.clone()).await?;
                running.shared = None;
                running.base = base;
                self.running().insert(job_id, running.with(handle));
                tracing::info!(%job_id, "taking a torrent's files from a job that seeds it");
                Ok(())
            }
            (false, _) => Err(EngineError::Busy),
        }
    }

    /// Removes the shares no job holds and no process runs (left by a crash between a
    /// job letting go and the removal).
    async fn sweep_shares(&self) {
        let Ok(dir) = std::fs::read_dir(self.staging.root().join(".torrents")) else {
            return;
        };
        for share in dir.filter_map(Result::ok).map(|e| e.path()) {
            if has_holders(&share) || !matches!(self.lock_share(&share), Ok(true)) {
                continue;
            }
            if !has_holders(&share) && tokio::fs::remove_dir_all(&share).await.is_ok() {
                tracing::info!(folder = %share.display(), "removed torrent data no job holds");
            }
            self.release_if_unused(&share);
        }
    }

    /// The job no longer holds `own` (it joined another job's run of the torrent).
    async fn leave_share(&self, job_id: JobId, own: Option<PathBuf>) -> Result<(), EngineError> {
        if let Some(own) = own {
            self.drop_share(job_id, Some(vec![own]))
                .await
                .map_err(|e| unexpected(e.context("leaving a torrent share")))?;
        }
        Ok(())
    }

    /// Chooses where `job_id`'s torrent data lives and records the job as a holder: the
    /// share the job already holds, else the torrent's common share, else — another process
    /// (a second torrent worker on the same staging volume) runs that one — a share of the
    /// job's own. `None` when another process runs this very job's share. A job staged before
    /// data was shared (its data in its own folder) brings that data along.
    async fn take_share(&self, job_id: JobId, info_hash: &str) -> anyhow::Result<Option<PathBuf>> {
        let torrents = self.staging.root().join(".torrents");
        let held = shares_of(&torrents, job_id);
        let mut candidates = held.clone();
        candidates.push(torrent_dir(self.staging.root(), info_hash));
        candidates.push(torrents.join(format!("{info_hash}.{job_id}")));
        for shared in candidates {
            let mark = marker(&shared, job_id);
            tokio::fs::create_dir_all(mark.parent().context("a marker has a folder")?).await?;
            tokio::fs::write(&mark, b"").await?;
            if !self.lock_share(&shared)? {
                if !held.contains(&shared) {
                    let _ = tokio::fs::remove_file(&mark).await;
                }
                continue;
            }
            for other in held.iter().filter(|h| **h != shared) {
                // The job moved: its share there is another process's to clean up.
                let _ = tokio::fs::remove_file(marker(other, job_id)).await;
            }
            let base = shared.join("data");
            let own = self.staging.job_dir(job_id);
            if tokio::fs::metadata(&base).await.is_err() && tokio::fs::metadata(&own).await.is_ok()
            {
                tokio::fs::rename(&own, &base).await?;
            }
            tokio::fs::create_dir_all(&base).await?;
            return Ok(Some(shared));
        }
        Ok(None)
    }

    /// Takes (or already holds) the lock on `shared`; `false` when another process has it.
    fn lock_share(&self, shared: &Path) -> anyhow::Result<bool> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if locks.contains_key(shared) {
            return Ok(true);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(shared.join("lock"))?;
        match file.try_lock() {
            Ok(()) => {
                locks.insert(shared.to_owned(), file);
                Ok(true)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }

    /// Releases the lock on `shared` when no running job of this engine uses it.
    fn release_if_unused(&self, shared: &Path) {
        if !self.in_use(shared) {
            self.locks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(shared);
        }
    }

    /// The shares a running job used: its own, and the one its (shared) torrent runs in.
    fn shares_used(&self, r: &Running) -> Vec<PathBuf> {
        let torrents = self.staging.root().join(".torrents");
        let mut shares: Vec<PathBuf> = r.shared.iter().cloned().collect();
        if let Some(share) = r
            .base
            .parent()
            .filter(|p| p.parent() == Some(torrents.as_path()))
            && !shares.iter().any(|s| s == share)
        {
            shares.push(share.to_owned());
        }
        shares
    }

    fn in_use(&self, shared: &Path) -> bool {
        self.running()
            .values()
            .any(|r| r.shared.as_deref() == Some(shared) || r.base.starts_with(shared))
    }

    /// `job_id` no longer holds its share of a torrent's data; the data goes once no job
    /// holds it and no process runs it. Finds the share when the job is not running.
    async fn drop_share(&self, job_id: JobId, shares: Option<Vec<PathBuf>>) -> anyhow::Result<()> {
        let shares =
            shares.unwrap_or_else(|| shares_of(&self.staging.root().join(".torrents"), job_id));
        for shared in shares {
            match tokio::fs::remove_file(marker(&shared, job_id)).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            if self.in_use(&shared) || has_holders(&shared) {
                continue;
            }
            // Nobody here uses it; the lock tells whether another process does.
            let free = match self.lock_share(&shared) {
                Ok(free) => free,
                Err(e) if shared.exists() => return Err(e),
                Err(_) => continue,
            };
            if free && !has_holders(&shared) {
                match tokio::fs::remove_dir_all(&shared).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
                tracing::debug!(folder = %shared.display(), "torrent data removed");
            }
            self.release_if_unused(&shared);
        }
        Ok(())
    }

    /// After a job left `r.handle`: the torrent stops when no job uses it, or fetches only
    /// what the remaining jobs want.
    async fn let_go(&self, r: &Running) -> Result<(), EngineError> {
        let others = self
            .running()
            .values()
            .any(|o| Arc::ptr_eq(&o.handle, &r.handle));
        if others {
            return self.select_for_holders(&r.handle).await;
        }
        self.session
            .delete(TorrentIdOrHash::Id(r.handle.id()), false)
            .await
            .map_err(|e| unexpected(e.context("removing the torrent")))?;
        if let Some(shared) = &r.shared {
            self.release_if_unused(shared);
        }
        Ok(())
    }

    /// Makes a shared torrent fetch the union of what its jobs want. librqbit cannot change
    /// a torrent's files while it checks its data: then the change waits for a later call
    /// (`stats` makes one every tick).
    async fn select_for_holders(&self, handle: &Arc<ManagedTorrent>) -> Result<(), EngineError> {
        let wanted: Option<HashSet<usize>> = {
            let running = self.running();
            let mut union = HashSet::new();
            let mut all = false;
            for r in running.values().filter(|r| Arc::ptr_eq(&r.handle, handle)) {
                match &r.only {
                    None => all = true,
                    Some(only) => union.extend(only.iter().copied()),
                }
            }
            (!all).then_some(union)
        };
        let Some(count) = handle.metadata.load().as_ref().map(|m| m.file_infos.len()) else {
            return Ok(());
        };
        let wanted = wanted.unwrap_or_else(|| (0..count).collect());
        let current: HashSet<usize> = handle
            .only_files()
            .map_or_else(|| (0..count).collect(), |o| o.into_iter().collect());
        let checking = || handle.with_state(|s| matches!(s, ManagedTorrentState::Initializing(_)));
        if current == wanted || checking() {
            return Ok(());
        }
        match self.session.update_only_files(handle, &wanted).await {
            Ok(()) => Ok(()),
            // It started checking in between: the next call applies the change.
            Err(_) if checking() => Ok(()),
            Err(e) => Err(unexpected(e.context("choosing the shared torrent's files"))),
        }
    }
}

/// The folder a multi-file torrent's files live in (its name); `None` for a single file.
fn torrent_folder(meta: &TorrentMetadata) -> Option<&str> {
    let first = meta.files.first()?;
    first.path.split_once('/').map(|(top, _)| top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolutions_peers_are_kept_until_forgotten_and_for_few_torrents() {
        let peer = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let mut seen = SeenPeers::default();
        seen.remember("a".into(), (0..500).map(peer).collect());
        seen.remember("nobody".into(), Vec::new());
        assert_eq!(
            seen.peek("a").len(),
            SEEN_PEERS,
            "at most SEEN_PEERS of one torrent"
        );
        assert_eq!(seen.peek("a").len(), SEEN_PEERS, "kept until forgotten");
        seen.forget("a");
        assert!(seen.peek("a").is_empty(), "forgotten");
        assert!(seen.peek("nobody").is_empty());
        for i in 0..=SEEN_TORRENTS {
            seen.remember(format!("t{i}"), vec![peer(1)]);
        }
        assert_eq!(seen.0.len(), SEEN_TORRENTS, "the oldest went");
        assert!(seen.peek("t0").is_empty());
        assert_eq!(seen.peek(&format!("t{SEEN_TORRENTS}")), vec![peer(1)]);
        seen.remember("t1".into(), vec![peer(2)]);
        assert_eq!(
            seen.0.len(),
            SEEN_TORRENTS,
            "a key already there evicts nothing"
        );
        assert!(!seen.peek(&format!("t{SEEN_TORRENTS}")).is_empty());
        assert_eq!(seen.peek("t1"), vec![peer(2)]);
    }

    #[test]
    fn the_block_list_holds_ipv4_ranges_in_their_mapped_ipv6_form_too() {
        let operator = [("1.2.3.0".parse().unwrap(), "1.2.3.255".parse().unwrap())];
        let list = block_list(&AddressPolicy::allow_all(), &operator);
        for blocked in ["1.2.3.4", "::ffff:1.2.3.4", "1.2.3.255", "::ffff:1.2.3.255"] {
            assert!(list.has(blocked.parse().unwrap()), "{blocked}");
        }
        for open in ["1.2.4.0", "::ffff:1.2.4.0", "2001:db8::1"] {
            assert!(!list.has(open.parse().unwrap()), "{open}");
        }
        // Internal ranges the policy refuses, in both forms.
        let internal = block_list(&AddressPolicy::default(), &[]);
        assert!(internal.has("127.0.0.1".parse().unwrap()));
        assert!(internal.has("::ffff:127.0.0.1".parse().unwrap()));
    }
}
