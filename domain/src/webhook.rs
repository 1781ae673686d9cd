//! Webhooks: a user's HTTP endpoints told when their jobs end, and what they are told.
//!
//! An endpoint is a [`FetchUrl`] (http/https with a host, no credentials) of at most
//! [`MAX_WEBHOOK_URL_CHARS`] characters, subscribed to a non-empty set of [`WebhookEvent`]s.
//! Which addresses it may reach is the fetch policy's business (checked outside the domain).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{FetchUrl, JobStatus, OwnerId};

/// Longest endpoint URL accepted.
pub const MAX_WEBHOOK_URL_CHARS: usize = 2048;

macro_rules! v7_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

v7_id!(
    /// A webhook's identity: a UUID v7.
    WebhookId
);
v7_id!(
    /// One delivery (an event for one webhook, with all its attempts): a UUID v7. Receivers
    /// see it as `X-Ferry-Delivery`, the same on every retry.
    DeliveryId
);

/// What a webhook is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WebhookEvent {
    /// A job's files were delivered (`uploading → completed`).
    JobCompleted,
    /// A job failed (its retries ran out, or its input was refused).
    JobFailed,
    /// A seeding job stopped seeding (`seeding → completed`).
    JobSeedingFinished,
    /// A test delivery asked for by the user; never subscribed to.
    Ping,
}

impl WebhookEvent {
    /// The events a webhook can subscribe to.
    pub const SUBSCRIBABLE: [Self; 3] = [
        Self::JobCompleted,
        Self::JobFailed,
        Self::JobSeedingFinished,
    ];

    /// The wire name (`X-Ferry-Event`, the body's `event`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::JobCompleted => "job.completed",
            Self::JobFailed => "job.failed",
            Self::JobSeedingFinished => "job.seeding_finished",
            Self::Ping => "ping",
        }
    }

    /// The event named `s` (wire name), if there is one.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::JobCompleted,
            Self::JobFailed,
            Self::JobSeedingFinished,
            Self::Ping,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }

    /// The event a job's move `from → to` is, if any: delivery finishing is `job.completed`
    /// (once: a job that then seeds is not completed again when seeding stops, that is
    /// `job.seeding_finished`), any move to `failed` is `job.failed`.
    pub fn of_transition(from: JobStatus, to: JobStatus) -> Option<Self> {
        match (from, to) {
            (JobStatus::Seeding, JobStatus::Completed) => Some(Self::JobSeedingFinished),
            (_, JobStatus::Completed) => Some(Self::JobCompleted),
            (_, JobStatus::Failed) => Some(Self::JobFailed),
            _ => None,
        }
    }
}

impl fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the URL is longer than {MAX_WEBHOOK_URL_CHARS} characters")]
    UrlTooLong,
    #[error("webhook URL: {0}")]
    Url(#[from] crate::FetchUrlError),
    #[error("a webhook needs at least one event (job.completed, job.failed, job.seeding_finished)")]
    NoEvents,
    #[error("{0:?} is not an event a webhook can subscribe to")]
    UnknownEvent(String),
}

/// A checked endpoint URL.
///
/// # Errors
/// `UrlTooLong`, `Url` (not http/https, no host, credentials).
pub fn parse_endpoint(text: &str) -> Result<FetchUrl, WebhookError> {
    if text.chars().count() > MAX_WEBHOOK_URL_CHARS {
        return Err(WebhookError::UrlTooLong);
    }
    Ok(FetchUrl::parse(text)?)
}

/// A checked, sorted, de-duplicated set of subscribed events.
///
/// # Errors
/// `NoEvents` when empty; `UnknownEvent` for a name that is not subscribable (`ping` too).
pub fn parse_events<S: AsRef<str>>(names: &[S]) -> Result<Vec<WebhookEvent>, WebhookError> {
    let mut events = Vec::new();
    for name in names {
        let name = name.as_ref();
        match WebhookEvent::parse(name) {
            Some(e) if e != WebhookEvent::Ping => events.push(e),
            _ => return Err(WebhookError::UnknownEvent(name.chars().take(64).collect())),
        }
    }
    events.sort();
    events.dedup();
    if events.is_empty() {
        return Err(WebhookError::NoEvents);
    }
    Ok(events)
}

/// A user's endpoint (its signing secret is kept apart, sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: WebhookId,
    pub owner: OwnerId,
    pub url: FetchUrl,
    /// Sorted, without duplicates, never empty.
    pub events: Vec<WebhookEvent>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}

impl Webhook {
    pub fn wants(&self, event: WebhookEvent) -> bool {
        self.enabled && self.events.contains(&event)
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its first or next attempt.
    Pending,
    /// A 2xx was received.
    Delivered,
    /// Its attempts ran out.
    Failed,
}

impl DeliveryState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn events_come_from_the_moves_that_end_work() {
        use JobStatus as S;
        let of = WebhookEvent::of_transition;
        assert_eq!(
            of(S::Uploading, S::Completed),
            Some(WebhookEvent::JobCompleted)
        );
        assert_eq!(
            of(S::Seeding, S::Completed),
            Some(WebhookEvent::JobSeedingFinished)
        );
        assert_eq!(of(S::Downloading, S::Failed), Some(WebhookEvent::JobFailed));
        assert_eq!(of(S::Queued, S::Failed), Some(WebhookEvent::JobFailed));
        assert_eq!(of(S::Completed, S::Seeding), None);
        assert_eq!(of(S::Downloading, S::Uploading), None);
        assert_eq!(of(S::Failed, S::Queued), None);
        assert_eq!(of(S::Downloading, S::Cancelled), None);
    }

    #[test]
    fn event_names_round_trip_and_sets_are_checked() {
        for e in WebhookEvent::SUBSCRIBABLE {
            assert_eq!(WebhookEvent::parse(e.as_str()), Some(e));
        }
        assert_eq!(
            parse_events(&["job.failed", "job.completed", "job.failed"]).unwrap(),
            vec![WebhookEvent::JobCompleted, WebhookEvent::JobFailed]
        );
        assert_eq!(parse_events::<&str>(&[]), Err(WebhookError::NoEvents));
        assert!(matches!(
            parse_events(&["ping"]),
            Err(WebhookError::UnknownEvent(_))
        ));
        assert!(matches!(
            parse_events(&["job.exploded"]),
            Err(WebhookError::UnknownEvent(_))
        ));
    }

    #[test]
    fn endpoints_are_http_urls_of_bounded_length() {
        assert!(parse_endpoint("https://hooks.example.org/ferry?k=1").is_ok());
        assert!(parse_endpoint("ftp://example.org/").is_err());
        assert!(parse_endpoint("javascript:alert(1)").is_err());
        assert!(parse_endpoint("https://user:pw@example.org/").is_err());
        let long = format!("https://example.org/{}", "a".repeat(MAX_WEBHOOK_URL_CHARS));
        assert_eq!(parse_endpoint(&long), Err(WebhookError::UrlTooLong));
    }
}
