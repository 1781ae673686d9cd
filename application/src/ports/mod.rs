//! The ports: what the use cases need from the outside world, as object-safe traits.
//!
//! Each port's error enum holds only the variants a caller branches on, plus
//! `Unexpected`. Adapters translate their drivers' errors into these.

pub mod accounts;
pub mod clock;
pub mod drive;
pub mod engine;
pub mod feeds;
pub mod fetch;
pub mod identity;
pub mod jobs;
pub mod labels;
pub mod links;
pub mod live;
pub mod net;
pub mod profiles;
pub mod progress;
pub mod queue;
pub mod staging;
pub mod storage;
pub mod webhooks;

pub use accounts::{
    AuditEntry, AuditLog, AuditOutcome, AuditQuery, SecretHash, Session, Sessions, TokenRepository,
    UserChange, UserRepository,
};
pub use clock::{Clock, SystemClock};
pub use drive::{ConsentError, ConsentStart, DriveConsent};
pub use engine::{EngineError, EngineStats, TorrentEngine, TorrentInspector, TorrentSpec};
pub use feeds::{
    Feed, FeedFetch, FeedItem, FeedLimits, FeedMatch, FeedRepository, FeedRule, FeedSource,
    ItemLink, MatchClaim, MatchKey, MatchOutcome, PollRecord,
};
pub use fetch::{FetchBody, FetchError, FetchInfo, Fetched, Fetcher, TorrentPackager};
pub use identity::{
    AccessTokenVerifier, IdentityError, IdentityProvider, LoginStart, PasswordHasher, PendingLogin,
    RateDecision, RateLimit, RateLimiter, VerifiedIdentity,
};
pub use jobs::{
    JobQuery, JobRepository, MAX_FILTER_VALUES, RepoError, TorrentFilter, Transition, Unfinished,
};
pub use labels::{Category, JobLabels, LabelRepository};
pub use links::{LinkClaims, LinkError, LinkSigner};
pub use live::{LiveFileError, LiveFiles, LiveReader};
pub use net::{AddressError, AddressGuard};
pub use profiles::{
    ProfileRepository, SealedProfile, SecretBox, SecretError, StoreResolver, UploadSessions,
    credentials_context,
};
pub use progress::{BusError, EventId, EventKind, JobEvent, ProgressBus, PublishedEvent, Replay};
pub use queue::{JobQueue, Lease, QueueError, QueueStats, Stage, WorkerSeen};
pub use staging::Staging;
pub use storage::{ObjectLocation, ObjectStore, PutRequest, StoreError, StoredObject};
pub use webhooks::{
    Attempt, ClaimLimits, Delivery, JobNotices, SealedWebhook, TransportError, WebhookRepository,
    WebhookTransport, secret_context,
};
