//! Ferry's use cases and the ports they need.
//!
//! The use cases are plain structs holding `Arc<dyn Port>`s; adapters live in the
//! infrastructure crates and are chosen by the wiring. Nothing here knows which database,
//! queue, torrent client or storage is behind a port.

pub mod accounts;
pub mod categories;
pub mod drive_connect;
pub mod feeds;
pub mod health;
pub mod jobs;
pub mod lifecycle;
pub mod links;
pub mod ports;
pub mod profiles;
pub mod recovery;
pub mod stages;
pub mod webhooks;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use accounts::{
    AccountSettings, Accounts, AccountsError, Caller, ClientInfo, NewSession, ProvisionPolicy,
    SessionView, SetupLink, UserChange, Via,
};
pub use categories::{Categories, CategoriesError};
pub use drive_connect::{
    CONNECT_TTL, ConnectStart, DriveConnect, DriveConnectError, PendingConnect,
};
pub use feeds::{Feed, FeedInput, FeedSettings, Feeds, FeedsError, Matchers, RuleChange};
pub use health::{ComponentHealth, HealthCheck, Worker};
pub use jobs::{
    FileDownload, FileSource, Jobs, JobsError, LiveFile, Submission, SubmissionBlocklistHandle,
    SubmitOptions, Usage,
};
pub use lifecycle::Lifecycle;
pub use links::{FileLink, FileLinks, LinkSettings, LinksError};
pub use profiles::{KeyRotation, ProfilesError, Resealed, ResealedWebhooks, StorageProfiles};
pub use recovery::Recovery;
pub use stages::{RetryPolicy, StageHandler, StageOutcome, StageRunner};
pub use webhooks::{
    JobRenderer, WebhookChange, WebhookNotices, WebhookSettings, Webhooks, WebhooksError,
    WithSecret,
};

#[cfg(test)]
mod feed_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod webhook_tests;
