//! Stateful in-memory fakes of every port, and the contract suites every adapter must pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//!
//! Enabled for this crate's tests and, through the `testing` feature, for adapter crates'
//! tests. Fakes behave like small real implementations; they never count calls.

pub mod contracts;
mod fakes;

pub use fakes::{
    FakeAddressGuard, FakeConsent, FakeEngine, FakeFeedSource, FakeFetcher, FakeResolver,
    FixedClock, MemoryAudit, MemoryBrowserSessions, MemoryBus, MemoryFeeds, MemoryProfiles,
    MemoryQueue, MemoryRateLimiter, MemoryRepository, MemorySessions, MemoryStore, MemoryTokens,
    MemoryUsers, PlainBox, PlainLinkSigner,
};
pub use fakes::{FakeTransport, MemoryWebhooks, SentRequest};

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use ferry_domain::{InfoHash, JobFile, TorrentMetadata};

/// A fixed instant used by tests that need a stable clock.
pub fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Metadata of a made-up torrent with files of the given sizes (`dir/file{i}.bin`).
pub fn sample_metadata(seed: u8, sizes: &[u64]) -> TorrentMetadata {
    let files: Vec<JobFile> = sizes
        .iter()
        .enumerate()
        .map(|(index, size)| JobFile {
            index,
            path: format!("sample-{seed}/file{index}.bin"),
            size: *size,
            selected: true,
            sha256: None,
        })
        .collect();
    TorrentMetadata {
        info_hash: InfoHash::from_bytes([seed; 20]),
        name: format!("sample-{seed}"),
        total_bytes: sizes.iter().sum(),
        files,
        piece_length: 16384,
        trackers: vec!["http://127.0.0.1:6969/announce".to_owned()],
        private: false,
        metainfo: format!("fake-torrent-{seed}").into_bytes(),
    }
}

/// Every fake, wired together, for use-case tests.
pub struct Fakes {
    pub repo: Arc<MemoryRepository>,
    pub queue: Arc<MemoryQueue>,
    pub bus: Arc<MemoryBus>,
    pub engine: Arc<FakeEngine>,
    pub store: Arc<MemoryStore>,
    pub profiles: Arc<MemoryProfiles>,
    pub resolver: Arc<FakeResolver>,
    pub fetcher: Arc<FakeFetcher>,
    pub clock: Arc<FixedClock>,
    /// Trackers and peers: loopback allowed (the tests' swarms run there), names unknown.
    pub addresses: Arc<FakeAddressGuard>,
}

impl Fakes {
    pub fn new() -> Self {
        let store = Arc::new(MemoryStore::default());
        let profiles = Arc::new(MemoryProfiles::default());
        Self {
            repo: Arc::new(MemoryRepository::default()),
            queue: Arc::new(MemoryQueue::default()),
            bus: Arc::new(MemoryBus::default()),
            engine: Arc::new(FakeEngine::new()),
            resolver: Arc::new(FakeResolver::new(store.clone(), profiles.clone())),
            store,
            profiles,
            fetcher: Arc::new(FakeFetcher::default()),
            clock: Arc::new(FixedClock::new(epoch())),
            addresses: Arc::new(FakeAddressGuard::new(ferry_domain::AddressPolicy {
                allow: vec!["127.0.0.0/8".parse().unwrap()],
            })),
        }
    }

    pub fn lifecycle(&self) -> crate::Lifecycle {
        crate::Lifecycle::new(self.repo.clone(), self.bus.clone(), self.clock.clone())
    }
}

impl Default for Fakes {
    fn default() -> Self {
        Self::new()
    }
}
