//! `ProgressBus`: live job events, resumable from an event id.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_domain::{JobError, JobId, JobStatus, OwnerId, Progress};
use tokio::sync::mpsc;

/// An opaque, per-job ordered event id (the SSE event id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(pub String);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Every event the bus still retains for the job, then live ones.
    Retained,
    /// The retained events after this id (a client resuming), then live ones.
    After(EventId),
    /// Only events published from now on.
    LiveOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The job changed status.
    Status,
    /// The current stage moved forward.
    Progress,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobEvent {
    pub job_id: JobId,
    /// Whose job it is (never sent to clients; it routes the event to its owner's feed).
    /// Events written before owners were recorded read as [`nobody`]'s.
    #[serde(default = "nobody")]
    pub owner: OwnerId,
    pub kind: EventKind,
    pub status: JobStatus,
    pub progress: Progress,
    pub error: Option<JobError>,
    pub at: DateTime<Utc>,
}

/// The owner of events that name none (written by an older Ferry): no user's id, so no
/// feed carries them.
pub fn nobody() -> OwnerId {
    OwnerId::parse("nobody-recorded").unwrap_or_else(OwnerId::local)
}

#[derive(Debug, Clone, PartialEq)]
pub struct PublishedEvent {
    pub id: EventId,
    pub event: JobEvent,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the event id {0:?} is not one this bus issued")]
    BadEventId(String),
    #[error("the progress bus is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[async_trait]
pub trait ProgressBus: Send + Sync + 'static {
    /// # Errors
    /// `Unavailable` when the event cannot be published.
    async fn publish(&self, event: &JobEvent) -> Result<EventId, BusError>;

    /// Events of `job_id` from `from`, in order and without gaps. The channel closes when
    /// the bus shuts down; dropping the receiver unsubscribes.
    ///
    /// # Errors
    /// `BadEventId` when the id in `from` is malformed; `Unavailable` when the bus cannot be
    /// read.
    async fn subscribe(
        &self,
        job_id: JobId,
        from: &Replay,
    ) -> Result<mpsc::Receiver<PublishedEvent>, BusError>;

    /// Live events of every job `owner` has, from now on (no replay): the feed a page of
    /// many jobs follows. A subscriber that falls far behind may miss events (it reloads
    /// the jobs it shows); dropping the receiver unsubscribes at once.
    ///
    /// # Errors
    /// `Unavailable` when the bus cannot be read.
    async fn subscribe_owner(
        &self,
        owner: &OwnerId,
    ) -> Result<mpsc::Receiver<PublishedEvent>, BusError>;
}
