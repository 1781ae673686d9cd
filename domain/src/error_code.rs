//! Every error code Ferry can put on the wire, in one registry: the `code` of an API error
//! body and the `code` of a failed job's error. A code is a promise to clients (they branch on
//! it), so it is added here, documented here and in the README, and never renamed.
//!
//! HTTP statuses are not the domain's business: `ferry-api` maps each code it answers with to
//! its status in one function. Job error codes are stored as text; [`ErrorCode::parse`] reads
//! them back (a code written by an older version may no longer be here, so stored codes stay
//! strings on [`JobError`](crate::JobError)).

use std::fmt;
use std::str::FromStr;

/// Declares [`ErrorCode`] from one list, so a variant, its wire string and where it appears
/// cannot drift apart.
macro_rules! error_codes {
    ($(
        $(#[doc = $doc:literal])+
        $variant:ident = $wire:literal, jobs: $jobs:literal;
    )+) => {
        /// A stable, machine-readable snake_case error code.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
        )]
        pub enum ErrorCode {
            $(
                $(#[doc = $doc])+
                #[serde(rename = $wire)]
                $variant,
            )+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The code as it appears on the wire and in the database.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }

            /// Whether a failed job's error can carry this code (set by a stage, the retry
            /// policy or a migration). The codes the API answers with are `ferry-api`'s list.
            pub const fn on_jobs(self) -> bool {
                match self {
                    $(Self::$variant => $jobs,)+
                }
            }
        }
    };
}

error_codes! {
    // Requests that do not parse (400).

    /// The body or a parameter does not match the OpenAPI document, or an upload could not
    /// be read.
    InvalidRequest = "invalid_request", jobs: false;
    /// The magnet link does not parse.
    InvalidMagnet = "invalid_magnet", jobs: false;
    /// The .torrent (uploaded, or fetched for a magnet) is not a valid torrent.
    InvalidTorrent = "invalid_torrent", jobs: true;
    /// The file selection names files the torrent does not have, or too many.
    InvalidFileSelection = "invalid_file_selection", jobs: true;
    /// The URL does not parse, or is not `http`/`https` with a host.
    InvalidUrl = "invalid_url", jobs: false;
    /// `Last-Event-ID` was not issued by this server.
    InvalidEventId = "invalid_event_id", jobs: false;
    /// The storage profile's fields are not valid.
    InvalidStorageProfile = "invalid_storage_profile", jobs: false;
    /// A folder profile's path leads outside its owner's area of the shared volume (through
    /// a symbolic link), or something other than a folder stands in its way.
    StorageFolderNotAllowed = "storage_folder_not_allowed", jobs: true;
    /// A user name, display name, email, token name, scope or role is not valid.
    InvalidAccount = "invalid_account", jobs: false;
    /// The login's `state` does not match this browser's, the login is too old, or the
    /// identity provider answered the callback with an error.
    LoginFailed = "login_failed", jobs: false;
    /// The setup link is unknown, used or expired.
    InvalidSetupLink = "invalid_setup_link", jobs: false;
    /// A Google Drive connection could not be finished: this browser did not start it (no or
    /// another pending cookie), it took too long, its `state` does not match, Google refused
    /// the code (used, expired, for another verifier) or granted no refresh token.
    DriveConnectFailed = "drive_connect_failed", jobs: false;
    /// The user declined Ferry's access to their Google Drive on Google's consent page.
    DriveConsentDenied = "drive_consent_denied", jobs: false;
    /// The webhook's URL is not an http(s) URL of at most 2048 characters, or its events
    /// are empty or unknown.
    InvalidWebhook = "invalid_webhook", jobs: false;

    // Who and what (401, 404, 405).

    /// No valid credential: the bearer token or session cookie is missing, wrong, expired
    /// or revoked, or its user is disabled.
    Unauthorized = "unauthorized", jobs: false;
    /// The user name or password is wrong (the same answer for an unknown name).
    InvalidCredentials = "invalid_credentials", jobs: false;
    /// The credential is valid but may not do this: a scope it lacks, an admin operation,
    /// or a cookie-authenticated change from another origin (CSRF).
    Forbidden = "forbidden", jobs: false;
    /// The account is disabled.
    AccountDisabled = "account_disabled", jobs: false;
    /// The file link is expired, forged or altered, signed with another key or for another
    /// purpose, or its owner was disabled or deleted since it was made.
    InvalidLink = "invalid_link", jobs: false;
    /// The identity provider vouched for someone who has no account here, and accounts are
    /// by invitation.
    NotInvited = "not_invited", jobs: false;
    /// One of the user's quotas would be exceeded (the message names it, its limit and the
    /// usage). On a job: a magnet's chosen files or a URL's content turned out larger than
    /// the `job_bytes` quota.
    QuotaExceeded = "quota_exceeded", jobs: true;
    /// No such user.
    UserNotFound = "user_not_found", jobs: false;
    /// No such token (or it is someone else's).
    TokenNotFound = "token_not_found", jobs: false;
    /// No such live session among the caller's.
    SessionNotFound = "session_not_found", jobs: false;
    /// No such route.
    NotFound = "not_found", jobs: false;
    /// No such job (or it is someone else's).
    JobNotFound = "job_not_found", jobs: false;
    /// The job has no file with that index.
    FileNotFound = "file_not_found", jobs: false;
    /// The file exists in the torrent but was not selected for download.
    FileNotSelected = "file_not_selected", jobs: false;
    /// No such storage profile (or it is someone else's); on a job submission, the profile
    /// the job names.
    StorageProfileNotFound = "storage_profile_not_found", jobs: false;
    /// No such RSS feed (or it is someone else's).
    FeedNotFound = "feed_not_found", jobs: false;
    /// No such RSS download rule (or it is someone else's).
    FeedRuleNotFound = "feed_rule_not_found", jobs: false;
    /// The route exists but not with this method (the answer has `Allow`).
    MethodNotAllowed = "method_not_allowed", jobs: false;
    /// No such webhook (or it is someone else's).
    WebhookNotFound = "webhook_not_found", jobs: false;

    // The job's state (409).

    /// The job's status does not allow this action (pause a completed job).
    IllegalTransition = "illegal_transition", jobs: false;
    /// The owner already has an unfinished job for this torrent.
    JobAlreadyExists = "job_already_exists", jobs: false;
    /// The login name is taken by another user.
    UserNameTaken = "user_name_taken", jobs: false;
    /// The job's files are not delivered yet.
    JobNotFinished = "job_not_finished", jobs: false;
    /// The job is being purged.
    JobPurging = "job_purging", jobs: false;
    /// The job's torrent is not known yet (a magnet still resolving).
    TorrentNotReady = "torrent_not_ready", jobs: false;
    /// An archive of a job whose files are in remote storage (fetch them one by one).
    ArchiveNotAvailable = "archive_not_available", jobs: false;

    // Bodies (413, 415).

    /// The .torrent upload is larger than `limits.max_torrent_file_bytes`.
    TorrentFileTooLarge = "torrent_file_too_large", jobs: false;
    /// The request body is larger than the server accepts.
    PayloadTooLarge = "payload_too_large", jobs: false;
    /// The body is not of a media type the operation takes.
    UnsupportedMediaType = "unsupported_media_type", jobs: false;

    // Refused input (422, and the same refusals found by a stage).

    /// A file name in the torrent is unsafe (`..`, separators, device names, …).
    TorrentUnsafePath = "torrent_unsafe_path", jobs: true;
    /// The torrent has more files than `limits.max_files`.
    TorrentTooManyFiles = "torrent_too_many_files", jobs: true;
    /// The torrent is larger than `limits.max_total_bytes`.
    TorrentTooLarge = "torrent_too_large", jobs: true;
    /// The storage endpoint is, or resolves to, an internal address.
    StorageEndpointNotAllowed = "storage_endpoint_not_allowed", jobs: true;
    /// The storage refused the profile's credentials.
    StorageAuthFailed = "storage_auth_failed", jobs: true;
    /// Folder profiles need a shared volume, and this server has none configured
    /// (`storage.shared_dir`).
    SharedDirUnset = "shared_dir_unset", jobs: true;
    /// The URL (or a redirect) is, or resolves to, an address that may not be reached.
    UrlNotAllowed = "url_not_allowed", jobs: true;
    /// The URL answered with an HTTP error.
    UrlUnavailable = "url_unavailable", jobs: true;
    /// A tracker is, or resolves to, an internal address.
    TrackerNotAllowed = "tracker_not_allowed", jobs: false;
    /// A magnet's `x.pe` peer is at an internal address.
    PeerNotAllowed = "peer_not_allowed", jobs: false;
    /// The operator's block list refuses this torrent (its info-hash) or URL (a pattern); a
    /// URL job also fails with it when a redirect leads to a refused URL, or the list came to
    /// refuse its URL after it was accepted.
    Blocked = "blocked", jobs: true;
    /// An RSS feed's fields are not valid (name, interval).
    InvalidFeed = "invalid_feed", jobs: false;
    /// An RSS download rule's fields are not valid: a pattern that does not compile or is
    /// too large, an episode filter that does not parse, a feed, category or storage profile
    /// the caller does not have.
    InvalidFeedRule = "invalid_feed_rule", jobs: false;
    /// The caller has as many feeds (or rules) as `feeds.max_per_user`
    /// (`feeds.max_rules_per_user`) allows.
    FeedLimitReached = "feed_limit_reached", jobs: false;

    // Capacity and failures (429, 5xx, and the same failures in a stage).

    /// Too many event streams are open, for this owner or on this server; or too many files
    /// are streamed while they download.
    TooManyStreams = "too_many_streams", jobs: false;
    /// Too many requests from this user, token or address: try again after `Retry-After`
    /// seconds.
    RateLimited = "rate_limited", jobs: false;
    /// An unexpected failure; the details are in the server log.
    InternalError = "internal_error", jobs: true;
    /// The storage could not be reached.
    StorageUnreachable = "storage_unreachable", jobs: true;
    /// The identity provider (OIDC discovery, token or key endpoint) could not be reached.
    IdentityProviderUnreachable = "identity_provider_unreachable", jobs: false;
    /// A backend (database, queue) is unavailable; try again shortly.
    ServiceUnavailable = "service_unavailable", jobs: false;
    /// A file read while it downloads: the data it asks for did not arrive within
    /// `torrent.stream_timeout`.
    StreamTimeout = "stream_timeout", jobs: false;

    // Only on failed jobs.

    /// No peer sent a magnet's metadata within `torrent.resolve_timeout`.
    MetadataTimeout = "metadata_timeout", jobs: true;
    /// The BitTorrent engine (or the packager) failed.
    EngineError = "engine_error", jobs: true;
    /// `torrent.proxy_required` is set and the torrent proxy could not be reached: the job
    /// stopped rather than connect to anyone directly.
    ProxyUnavailable = "proxy_unavailable", jobs: true;
    /// The database failed while a stage ran.
    DatabaseError = "database_error", jobs: true;
    /// The queue failed while a stage ran.
    QueueError = "queue_error", jobs: true;
    /// The storage (or the staging area) answered with an error.
    StorageError = "storage_error", jobs: true;
    /// The staging area or the storage folder ran out of space (or the disk quota): nothing
    /// half-written is kept as done; free space, then retry the job.
    DiskFull = "disk_full", jobs: true;
    /// A downloaded file is missing from staging at delivery.
    StagedDataMissing = "staged_data_missing", jobs: true;
    /// The job's storage profile was deleted before delivery.
    StorageProfileMissing = "storage_profile_missing", jobs: true;
    /// The URL's content is larger than `fetch.max_bytes`.
    UrlTooLarge = "url_too_large", jobs: true;
    /// The URL's content type is not in `fetch.allowed_types`.
    UrlTypeNotAllowed = "url_type_not_allowed", jobs: true;
    /// The URL could not be fetched (after its retries).
    UrlUnreachable = "url_unreachable", jobs: true;
    /// The URL answered with no content (0 bytes): there is nothing to deliver or seed.
    UrlEmpty = "url_empty", jobs: true;
    /// Set on upgrade on all but the oldest of an owner's unfinished jobs of one torrent
    /// (migration `m20261202_000001_one_unfinished_torrent`).
    DuplicateJob = "duplicate_job", jobs: true;
}

impl ErrorCode {
    /// The code spelled `s`, if it is registered.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a registered code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a registered error code")]
pub struct UnknownErrorCode(pub String);

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| UnknownErrorCode(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn wire_strings_are_unique_snake_case_and_serde_agrees() {
        let mut seen = HashSet::new();
        for &code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} is registered twice");
            assert!(
                !s.is_empty()
                    && s.starts_with(|c: char| c.is_ascii_lowercase())
                    && s.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{s} is not snake_case"
            );
            assert_eq!(serde_json::to_value(code).unwrap(), s);
            assert_eq!(
                serde_json::from_value::<ErrorCode>(serde_json::json!(s)).unwrap(),
                code
            );
            assert_eq!(s.parse::<ErrorCode>().unwrap(), code);
            assert_eq!(code.to_string(), s);
        }
        assert!("engine_exploded".parse::<ErrorCode>().is_err());
    }

    #[test]
    fn the_migrations_code_is_a_job_code() {
        assert_eq!(ErrorCode::DuplicateJob.as_str(), "duplicate_job");
        assert!(ErrorCode::DuplicateJob.on_jobs());
        assert!(!ErrorCode::JobAlreadyExists.on_jobs());
    }
}
