//! Ferry's pure model: jobs, their sources and statuses, torrent identities and safe paths.
//!
//! Nothing here does I/O or knows about async; every value that exists is valid
//! ("parse, don't validate"), so the layers above can trust what they hold.

pub mod account;
pub mod blocklist;
pub mod error_code;
pub mod feed;
pub mod info_hash;
pub mod job;
pub mod magnet;
pub mod net;
pub mod profile;
pub mod progress;
pub mod speed;
pub mod status;
pub mod storage_key;
pub mod torrent;
pub mod webhook;

pub use account::{
    AccountError, Identity, PersonalToken, Quotas, Role, Scope, Scopes, TokenId, User, UserName,
    clean_text,
};
pub use blocklist::{BlocklistError, PeerBlocklist, SubmissionBlocklist};
pub use error_code::{ErrorCode, UnknownErrorCode};
pub use info_hash::{InfoHash, InfoHashError};
pub use job::{
    FileSelection, FileSelectionError, Job, JobError, JobFile, JobId, JobSource, OwnerId,
    SeedPolicy, TorrentFile, TorrentMetadata,
};
pub use magnet::{MagnetError, MagnetLink};
pub use net::{AddressPolicy, Cidr, FetchUrl, FetchUrlError};
pub use profile::{Credentials, ProfileError, ProfileId, StorageBackend, StorageProfile};
pub use progress::Progress;
pub use speed::{SpeedLimitError, SpeedLimits, SpeedLimitsChange};
pub use status::{IllegalTransition, JobStatus};
pub use storage_key::{StorageKey, StorageKeyError};
pub use torrent::{SafePath, SafePathError, TorrentLimitError, TorrentLimits};
pub use webhook::{
    DeliveryId, DeliveryState, MAX_WEBHOOK_URL_CHARS, Webhook, WebhookError, WebhookEvent,
    WebhookId,
};
