//! The fakes, one module per port. Small, real-enough implementations backed by memory
//! (and, for the engine, a temporary staging folder so delivery has real files to read).

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

mod accounts;
mod audit;
mod bus;
mod clock;
mod consent;
mod engine;
mod feeds;
mod fetch;
mod links;
mod net;
mod profiles;
mod queue;
mod rate;
mod repository;
mod resolver;
mod store;
mod webhooks;

pub use accounts::{MemoryBrowserSessions, MemoryTokens, MemoryUsers};
pub use audit::MemoryAudit;
pub use bus::MemoryBus;
pub use clock::FixedClock;
pub use consent::FakeConsent;
pub use engine::FakeEngine;
pub use feeds::{FakeFeedSource, MemoryFeeds};
pub use fetch::FakeFetcher;
pub use links::PlainLinkSigner;
pub use net::FakeAddressGuard;
pub use profiles::{MemoryProfiles, MemorySessions, PlainBox};
pub use queue::MemoryQueue;
pub use rate::MemoryRateLimiter;
pub use repository::MemoryRepository;
pub use resolver::FakeResolver;
pub use store::MemoryStore;
pub use webhooks::{FakeTransport, MemoryWebhooks, SentRequest};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Not SHA-256: a stand-in digest for the fakes (the application does not hash).
fn fake_digest(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}{:048x}", bytes.len())
}
