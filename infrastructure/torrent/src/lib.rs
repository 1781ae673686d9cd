//! The embedded BitTorrent engine: librqbit behind the `TorrentEngine` port.
//!
//! Each job downloads into `{staging}/{job id}/`, with a multi-file torrent's files under
//! its name (`{staging}/{job}/{name}/{path}`), so the job's [`SafePath`]s are exactly the
//! paths on disk. Torrent metadata is validated by [`inspect`] before anything is written.
//!
//! Peers at internal addresses the operator has not allowed (`peer_policy`) are neither
//! connected to nor accepted: the session gets them as its block list, which the vendored
//! librqbit applies to every peer source (trackers, DHT, `x.pe`, PEX), also while a magnet's
//! metadata is resolved.

mod inspect;
mod package;
#[cfg(feature = "testing")]
pub mod testing;

pub use package::{Packager, piece_length_for};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use async_trait::async_trait;
use ferry_application::ports::{
    EngineError, EngineStats, Staging, TorrentEngine, TorrentInspector, TorrentSpec,
};
use ferry_domain::{AddressPolicy, JobId, MagnetLink, TorrentMetadata};
use ferry_local_storage::LocalStaging;
use librqbit::api::TorrentIdOrHash;
use librqbit::limits::LimitsConfig;
use librqbit::{
    AddTorrent, AddTorrentOptions, AddTorrentResponse, ListenerMode, ListenerOptions,
    ManagedTorrent, Session, SessionOptions,
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
    /// Peers per torrent.
    pub peer_limit: Option<usize>,
    /// Which peer addresses the engine may connect to or accept (`torrent.allow`).
    pub peer_policy: AddressPolicy,
}

/// Writes the ranges `policy` refuses as a P2P block list (`name:first-last` lines) into
/// `dir`; `None` when it refuses nothing. The file is only read while the session starts.
fn block_list(
    policy: &AddressPolicy,
    dir: &std::path::Path,
) -> anyhow::Result<Option<tempfile::TempPath>> {
    use std::io::Write;
    let ranges = policy.refused_ranges();
    if ranges.is_empty() {
        return Ok(None);
    }
    let mut file = tempfile::Builder::new()
        .prefix(".peer-blocklist-")
        .tempfile_in(dir)
        .context("writing the peer block list")?;
    for (first, last) in ranges {
        writeln!(file, "ferry:{first}-{last}")?;
    }
    file.flush()?;
    Ok(Some(file.into_temp_path()))
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
}

struct Running {
    handle: Arc<ManagedTorrent>,
    /// (file index, length) of the files the job wants.
    wanted: Vec<(usize, u64)>,
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
        let blocked = block_list(&config.peer_policy, &config.staging_dir)?;
        let blocklist_url = match &blocked {
            Some(path) => Some(
                url::Url::from_file_path(std::path::absolute(path)?)
                    .map_err(|()| anyhow::anyhow!("the block list's path is not absolute"))?
                    .to_string(),
            ),
            None => None,
        };
        let opts = SessionOptions {
            blocklist_url,
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
            client_name_and_version: Some(format!("Ferry {}", env!("CARGO_PKG_VERSION"))),
            ..Default::default()
        };
        let session = Session::new_with_opts(config.staging_dir.clone(), opts)
            .await
            .context("starting the BitTorrent session")?;
        drop(blocked);
        tracing::info!(listen = ?session.listen_addr(), dht = config.dht, "torrent engine started");
        Ok(Self {
            session,
            staging: LocalStaging::new(config.staging_dir),
            running: Mutex::new(HashMap::new()),
        })
    }

    /// The address peers can reach this engine on, if it listens.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.session.listen_addr()
    }

    /// Stops every torrent and the session.
    pub async fn shutdown(&self) {
        self.session.stop().await;
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
            AddTorrentResponse::ListOnly(r) => inspect(&r.torrent_bytes),
            _ => Err(unexpected(anyhow::anyhow!(
                "the engine started a torrent it was asked to list"
            ))),
        }
    }

    async fn start(&self, spec: TorrentSpec) -> Result<(), EngineError> {
        if self.running().contains_key(&spec.job_id) {
            return Ok(());
        }
        let meta = inspect(&spec.metainfo)?;
        let mut folder = spec
            .data_dir
            .clone()
            .unwrap_or_else(|| self.staging.job_dir(spec.job_id));
        if let Some(top) = torrent_folder(&meta) {
            folder.push(top);
        }
        let opts = AddTorrentOptions {
            only_files: spec.only_files.clone(),
            output_folder: Some(folder.to_string_lossy().into_owned()),
            // Our own job folder: reuse what an earlier run of this job wrote.
            overwrite: true,
            initial_peers: Some(spec.peers.clone()).filter(|p| !p.is_empty()),
            ..Default::default()
        };
        let response = self
            .session
            .add_torrent(AddTorrent::from_bytes(spec.metainfo.clone()), Some(opts))
            .await
            .map_err(|e| unexpected(e.context("adding the torrent")))?;
        let handle = match response {
            AddTorrentResponse::Added(_, handle) => handle,
            AddTorrentResponse::AlreadyManaged(_, handle) => {
                let mine = self
                    .running()
                    .values()
                    .any(|r| Arc::ptr_eq(&r.handle, &handle));
                if !mine {
                    return Err(EngineError::Busy);
                }
                handle
            }
            AddTorrentResponse::ListOnly(_) => {
                return Err(unexpected(anyhow::anyhow!(
                    "the engine only listed the torrent"
                )));
            }
        };
        let wanted = meta
            .files
            .iter()
            .filter(|f| {
                spec.only_files
                    .as_ref()
                    .is_none_or(|o| o.contains(&f.index))
            })
            .map(|f| (f.index, f.size))
            .collect();
        self.running()
            .insert(spec.job_id, Running { handle, wanted });
        Ok(())
    }

    async fn stats(&self, job_id: JobId) -> Result<EngineStats, EngineError> {
        let (handle, wanted) = {
            let running = self.running();
            let r = running.get(&job_id).ok_or(EngineError::NotRunning)?;
            (r.handle.clone(), r.wanted.clone())
        };
        let s = handle.stats();
        // librqbit counts whole pieces, including the parts of boundary pieces that belong
        // to files the job did not select: count the selected files' bytes instead.
        let (bytes_done, bytes_total) = if s.file_progress.is_empty() {
            (s.progress_bytes, s.total_bytes)
        } else {
            wanted.iter().fold((0, 0), |(done, total), (index, len)| {
                let have = s.file_progress.get(*index).copied().unwrap_or(0).min(*len);
                (done + have, total + len)
            })
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
            finished: s.finished,
            error: s.error,
        })
    }

    async fn stop(&self, job_id: JobId, delete_data: bool) -> Result<(), EngineError> {
        let Some(running) = self.running().remove(&job_id) else {
            return Ok(());
        };
        self.session
            .delete(TorrentIdOrHash::Id(running.handle.id()), delete_data)
            .await
            .map_err(|e| unexpected(e.context("removing the torrent")))
    }
}

/// The folder a multi-file torrent's files live in (its name); `None` for a single file.
fn torrent_folder(meta: &TorrentMetadata) -> Option<&str> {
    let first = meta.files.first()?;
    first.path.split_once('/').map(|(top, _)| top)
}
