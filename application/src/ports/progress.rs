//! `ProgressBus`: live job events, resumable from an event id.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_domain::{JobError, JobId, JobStatus, Progress};
use tokio::sync::mpsc;

/// An opaque, per-job ordered event id (the SSE event id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(pub String);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
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
    pub kind: EventKind,
    pub status: JobStatus,
    pub progress: Progress,
    pub error: Option<JobError>,
    pub at: DateTime<Utc>,
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

    /// Events of `job_id` after `after` (all retained ones when `None`), then live ones, in
    /// order and without gaps while the subscriber keeps up. The channel closes when the bus
    /// shuts down; dropping the receiver unsubscribes.
    ///
    /// # Errors
    /// `BadEventId` when `after` is malformed; `Unavailable` when the bus cannot be read.
    async fn subscribe(
        &self,
        job_id: JobId,
        after: Option<&EventId>,
    ) -> Result<mpsc::Receiver<PublishedEvent>, BusError>;
}
