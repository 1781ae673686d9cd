//! The operator's block lists (`blocklist.*`): loaded at start (a list that does not parse
//! stops the start, naming its line), then re-read whenever a file changes; a change that
//! does not parse is logged and the list in force stays.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use anyhow::Context;
use ferry_application::SubmissionBlocklistHandle;
use ferry_domain::{PeerBlocklist, SubmissionBlocklist};
use ferry_torrent::RqbitEngine;

use crate::config::BlocklistConfig;

/// Largest list file read (public P2P lists are a few tens of MB).
const MAX_LIST_BYTES: u64 = 256 << 20;

/// What a file looked like when it was last read.
type Signature = Option<(SystemTime, u64)>;

pub struct Blocklists {
    /// Torrents and URLs refused at submission (the use cases hold it).
    pub submission: Arc<SubmissionBlocklistHandle>,
    /// Fixed entries from the configuration (`info_hashes`, `urls`).
    fixed: SubmissionBlocklist,
    peers: Mutex<Vec<(IpAddr, IpAddr)>>,
    /// The engines of this process, told when the peer list changes.
    engines: Mutex<Vec<Weak<RqbitEngine>>>,
    file: Option<PathBuf>,
    peers_file: Option<PathBuf>,
    seen: Mutex<(Signature, Signature)>,
}

impl Blocklists {
    /// Loads the lists and, when there are files, watches them every `reload_every`.
    ///
    /// # Errors
    /// An entry or a file that does not parse, or a file that cannot be read.
    pub fn load(config: &BlocklistConfig) -> anyhow::Result<Arc<Self>> {
        let hashes = SubmissionBlocklist::parse(config.info_hashes.iter().map(String::as_str))
            .context("blocklist.info_hashes")?;
        let urls = SubmissionBlocklist::parse(config.urls.iter().map(String::as_str))
            .context("blocklist.urls")?;
        let fixed = hashes.merged(urls);
        let (listed, file_seen) = match &config.file {
            Some(path) => read_submission(path)?,
            None => (SubmissionBlocklist::default(), None),
        };
        let (peers, peers_seen) = match &config.peers {
            Some(path) => read_peers(path)?,
            None => (Vec::new(), None),
        };
        let submission = fixed.clone().merged(listed);
        if !submission.is_empty() || !peers.is_empty() {
            tracing::info!(
                submission = submission.len(),
                peer_ranges = peers.len(),
                "block lists loaded"
            );
        }
        let lists = Arc::new(Self {
            submission: Arc::new(SubmissionBlocklistHandle::new(submission)),
            fixed,
            peers: Mutex::new(peers),
            engines: Mutex::new(Vec::new()),
            file: config.file.clone(),
            peers_file: config.peers.clone(),
            seen: Mutex::new((file_seen, peers_seen)),
        });
        if config.file.is_some() || config.peers.is_some() {
            let weak = Arc::downgrade(&lists);
            let every = config
                .reload_every
                .max(std::time::Duration::from_millis(100));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(lists) = weak.upgrade() else {
                        return;
                    };
                    lists.reload().await;
                }
            });
        }
        Ok(lists)
    }

    /// The peer list in force.
    pub fn peer_ranges(&self) -> Vec<(IpAddr, IpAddr)> {
        lock(&self.peers).clone()
    }

    /// Tells `engine` about every later change of the peer list, and gives it the list in
    /// force now (a reload may have happened while it started).
    pub fn attach(&self, engine: &Arc<RqbitEngine>) {
        let mut engines = lock(&self.engines);
        engines.push(Arc::downgrade(engine));
        engine.set_peer_blocklist(&lock(&self.peers));
    }

    /// Re-reads the files that changed since they were last read.
    async fn reload(&self) {
        let (file_seen, peers_seen) = *lock(&self.seen);
        if let Some(path) = &self.file
            && signature(path) != file_seen
        {
            let path = path.clone();
            match tokio::task::spawn_blocking(move || read_submission(&path)).await {
                Ok(Ok((list, seen))) => {
                    let list = self.fixed.clone().merged(list);
                    tracing::info!(entries = list.len(), "submission block list reloaded");
                    self.submission.replace(list);
                    lock(&self.seen).0 = seen;
                }
                Ok(Err(e)) => self.keep(e, true),
                Err(e) => tracing::error!(error = %e, "reading the block list failed"),
            }
        }
        if let Some(path) = &self.peers_file
            && signature(path) != peers_seen
        {
            let path = path.clone();
            match tokio::task::spawn_blocking(move || read_peers(&path)).await {
                Ok(Ok((ranges, seen))) => {
                    // Under the engines' lock, as `attach`: an engine attached meanwhile
                    // gets this list, not the one before.
                    let engines = lock(&self.engines);
                    for engine in engines.iter().filter_map(Weak::upgrade) {
                        engine.set_peer_blocklist(&ranges);
                    }
                    tracing::info!(ranges = ranges.len(), "peer block list reloaded");
                    *lock(&self.peers) = ranges;
                    drop(engines);
                    lock(&self.seen).1 = seen;
                }
                Ok(Err(e)) => self.keep(e, false),
                Err(e) => tracing::error!(error = %e, "reading the peer block list failed"),
            }
        }
    }

    /// A changed file that does not parse: said once per change, the list in force stays.
    fn keep(&self, e: anyhow::Error, submission: bool) {
        let path = if submission {
            &self.file
        } else {
            &self.peers_file
        };
        let seen = path.as_deref().and_then(signature);
        let mut s = lock(&self.seen);
        if submission {
            s.0 = seen;
        } else {
            s.1 = seen;
        }
        tracing::error!(
            error = format!("{e:#}"),
            "a changed block list was not loaded; the previous one stays in force"
        );
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn signature(path: &Path) -> Signature {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read(path: &Path) -> anyhow::Result<(String, Signature)> {
    use std::io::Read;
    let seen = signature(path);
    let file = std::fs::File::open(path)
        .with_context(|| format!("reading the block list {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_LIST_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading the block list {} (UTF-8 text)", path.display()))?;
    anyhow::ensure!(
        text.len() as u64 <= MAX_LIST_BYTES,
        "the block list {} is over {MAX_LIST_BYTES} bytes",
        path.display()
    );
    Ok((text, seen))
}

fn read_submission(path: &Path) -> anyhow::Result<(SubmissionBlocklist, Signature)> {
    let (text, seen) = read(path)?;
    let list = SubmissionBlocklist::parse(text.lines())
        .with_context(|| format!("blocklist.file {}", path.display()))?;
    Ok((list, seen))
}

fn read_peers(path: &Path) -> anyhow::Result<(Vec<(IpAddr, IpAddr)>, Signature)> {
    let (text, seen) = read(path)?;
    let list = PeerBlocklist::parse(&text)
        .with_context(|| format!("blocklist.peers {}", path.display()))?;
    Ok((list.ranges, seen))
}
