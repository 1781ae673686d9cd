//! The one place where errors become HTTP: a registered [`ErrorCode`] decides the status
//! ([`status`]).
//! Each operation answers with [`Fails`] over the statuses it can really return, so the
//! OpenAPI document lists those and no others.

use std::marker::PhantomData;

use ferry_application::ports::LiveFileError;
use ferry_application::{JobsError, ProfilesError, WebhooksError};
use ferry_domain::{ErrorCode, TorrentLimitError};
use poem::IntoResponse;
use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaResponses, Registry};
use poem_openapi::{ApiResponse, Object};

/// The body of every error response.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ErrorBody {
    /// Stable, machine-readable snake_case code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The request's id (also its `X-Request-Id`), to find it in the server's logs.
    pub request_id: Option<String>,
}

/// Every error an operation can answer with.
#[derive(Debug, Clone, ApiResponse)]
pub enum ApiError {
    /// The request is malformed: bad JSON, a bad magnet link, a bad .torrent, a bad selection.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No valid credential (bearer token or session cookie), or a wrong password.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// The credential may not do this: a scope it lacks, an admin operation, a change from
    /// another origin with a cookie, a disabled account, a quota; or a file link that is
    /// expired, altered or revoked (`invalid_link`).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such job or file (or it belongs to someone else).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The job is not in a state that allows this (pause a completed job, fetch an unfinished file).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The body is larger than the server accepts.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body is not in a media type the operation takes (or has no `Content-Type`).
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// Well-formed but refused: an unsafe or too large torrent, a URL or storage endpoint
    /// that may not be reached, credentials the storage refused.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many requests (`rate_limited`: try again after `Retry-After` seconds), or too
    /// many event streams open (for this caller, or on this server).
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] Option<u64>),
    /// The user's storage did not answer.
    #[oai(status = 502)]
    BadGateway(Json<ErrorBody>),
    /// A backend (database, queue, storage) is unavailable; try again later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
    /// A file read while it downloads: its data did not arrive in time (`stream_timeout`).
    #[oai(status = 504)]
    GatewayTimeout(Json<ErrorBody>),
    /// An unexpected failure; the details are in the server's log.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}

/// The HTTP status of every code an API error body can carry: the one place where codes
/// meet HTTP (README, "API", lists the same table and a test holds the two together).
/// `None`: the code is only ever on a failed job, never in an API answer.
pub fn status(code: ErrorCode) -> Option<StatusCode> {
    use ErrorCode as C;
    let status = match code {
        C::InvalidRequest
        | C::InvalidMagnet
        | C::InvalidTorrent
        | C::InvalidFileSelection
        | C::InvalidUrl
        | C::InvalidEventId
        | C::InvalidStorageProfile
        | C::StorageFolderNotAllowed
        | C::InvalidAccount
        | C::LoginFailed
        | C::InvalidSetupLink
        | C::DriveConnectFailed
        | C::DriveConsentDenied
        | C::InvalidWebhook => StatusCode::BAD_REQUEST,
        C::Unauthorized | C::InvalidCredentials => StatusCode::UNAUTHORIZED,
        C::Forbidden | C::AccountDisabled | C::InvalidLink | C::NotInvited | C::QuotaExceeded => {
            StatusCode::FORBIDDEN
        }
        C::NotFound
        | C::JobNotFound
        | C::FileNotFound
        | C::FileNotSelected
        | C::StorageProfileNotFound
        | C::UserNotFound
        | C::TokenNotFound
        | C::SessionNotFound
        | C::FeedNotFound
        | C::FeedRuleNotFound
        | C::WebhookNotFound => StatusCode::NOT_FOUND,
        C::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        C::IllegalTransition
        | C::JobAlreadyExists
        | C::UserNameTaken
        | C::JobNotFinished
        | C::JobPurging
        | C::TorrentNotReady
        | C::ArchiveNotAvailable => StatusCode::CONFLICT,
        C::TorrentFileTooLarge | C::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        C::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        C::TorrentUnsafePath
        | C::TorrentTooManyFiles
        | C::TorrentTooLarge
        | C::StorageEndpointNotAllowed
        | C::StorageAuthFailed
        | C::SharedDirUnset
        | C::UrlNotAllowed
        | C::UrlUnavailable
        | C::TrackerNotAllowed
        | C::PeerNotAllowed
        | C::Blocked
        | C::InvalidFeed
        | C::InvalidFeedRule
        | C::FeedLimitReached => StatusCode::UNPROCESSABLE_ENTITY,
        C::TooManyStreams | C::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        C::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        C::StorageUnreachable | C::IdentityProviderUnreachable => StatusCode::BAD_GATEWAY,
        C::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        C::StreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        C::MetadataTimeout
        | C::EngineError
        | C::ProxyUnavailable
        | C::DatabaseError
        | C::QueueError
        | C::StorageError
        | C::DiskFull
        | C::StagedDataMissing
        | C::StorageProfileMissing
        | C::UrlTooLarge
        | C::UrlTypeNotAllowed
        | C::UrlUnreachable
        | C::UrlEmpty
        | C::DuplicateJob => return None,
    };
    Some(status)
}

/// The one code with a second status: a job submission naming a storage profile that is not
/// there is unprocessable (422), where the profile's own URL is not found (404, [`status`]).
/// The README lists it under both.
pub const PROFILE_NAMED_BY_A_JOB: (ErrorCode, StatusCode) = (
    ErrorCode::StorageProfileNotFound,
    StatusCode::UNPROCESSABLE_ENTITY,
);

fn body(code: ErrorCode, message: impl Into<String>) -> Json<ErrorBody> {
    Json(ErrorBody {
        code: code.as_str().to_owned(),
        message: message.into(),
        request_id: crate::access_log::current_request_id(),
    })
}

const INTERNAL_MESSAGE: &str = "an unexpected error occurred; see the server log";

impl ApiError {
    /// The error's body, whatever its status.
    fn body(&self) -> &ErrorBody {
        match self {
            Self::BadRequest(b)
            | Self::Unauthorized(b, _)
            | Self::Forbidden(b)
            | Self::NotFound(b)
            | Self::Conflict(b)
            | Self::PayloadTooLarge(b)
            | Self::UnsupportedMediaType(b)
            | Self::Unprocessable(b)
            | Self::TooManyRequests(b, _)
            | Self::BadGateway(b)
            | Self::Unavailable(b)
            | Self::GatewayTimeout(b)
            | Self::Internal(b) => &b.0,
        }
    }

    /// The error's code (`drive_connect_failed`, …).
    pub fn code(&self) -> &str {
        &self.body().code
    }

    /// The error's message.
    pub fn message(&self) -> &str {
        &self.body().message
    }

    /// The error with `code`, answered with the code's [`status`].
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        match status(code) {
            Some(status) => Self::with_status(status, code, message),
            None => {
                // A job's code in an API answer: a bug in the caller.
                tracing::error!(%code, "an API error was built from a code the API does not answer with");
                Self::Internal(body(ErrorCode::InternalError, INTERNAL_MESSAGE))
            }
        }
    }

    fn with_status(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        let body = body(code, message);
        match status {
            StatusCode::BAD_REQUEST => Self::BadRequest(body),
            StatusCode::UNAUTHORIZED => Self::Unauthorized(body, "Bearer".to_owned()),
            StatusCode::FORBIDDEN => Self::Forbidden(body),
            StatusCode::NOT_FOUND => Self::NotFound(body),
            StatusCode::CONFLICT => Self::Conflict(body),
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge(body),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(body),
            StatusCode::UNPROCESSABLE_ENTITY => Self::Unprocessable(body),
            StatusCode::TOO_MANY_REQUESTS => Self::TooManyRequests(body, None),
            StatusCode::BAD_GATEWAY => Self::BadGateway(body),
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(body),
            StatusCode::GATEWAY_TIMEOUT => Self::GatewayTimeout(body),
            StatusCode::INTERNAL_SERVER_ERROR => Self::Internal(body),
            other => {
                // 405 comes from the router (`edge`), never from an operation.
                tracing::error!(%code, status = %other, "no operation answers with this status");
                Self::Internal(self::body(ErrorCode::InternalError, INTERNAL_MESSAGE))
            }
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "log in, or send a token as `Authorization: Bearer <token>` (missing, wrong, expired or revoked credentials)",
        )
    }

    /// `429 rate_limited` with `Retry-After` (whole seconds, at least 1).
    pub fn rate_limited(retry_after: std::time::Duration) -> Self {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        let secs = secs.max(1);
        Self::TooManyRequests(
            body(
                ErrorCode::RateLimited,
                format!("too many requests; try again in {secs} s"),
            ),
            Some(secs),
        )
    }

    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "request failed");
        Self::new(ErrorCode::InternalError, INTERNAL_MESSAGE)
    }
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized(..) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::PayloadTooLarge(_) => 413,
            Self::UnsupportedMediaType(_) => 415,
            Self::Unprocessable(_) => 422,
            Self::TooManyRequests(..) => 429,
            Self::BadGateway(_) => 502,
            Self::Unavailable(_) => 503,
            Self::GatewayTimeout(_) => 504,
            Self::Internal(_) => 500,
        }
    }
}

/// The failure statuses one operation can answer with.
pub trait Statuses: 'static {
    const LIST: &'static [u16];
}

/// Declares a [`Statuses`] list: `statuses!(JobRead: 401, 404, 500, 503);`.
macro_rules! statuses {
    ($($(#[$meta:meta])* $name:ident: $($status:literal),+;)+) => {
        $(
            $(#[$meta])*
            pub enum $name {}
            impl $crate::error::Statuses for $name {
                const LIST: &'static [u16] = &[$($status),+];
            }
        )+
    };
}
pub(crate) use statuses;

/// An [`ApiError`] from an operation that can fail only with the statuses of `S`: the
/// OpenAPI document lists exactly those.
pub struct Fails<S>(ApiError, PhantomData<fn() -> S>);

impl<S: Statuses, E: Into<ApiError>> From<E> for Fails<S> {
    fn from(e: E) -> Self {
        let e = e.into();
        if !S::LIST.contains(&e.status()) {
            // The document promised otherwise: a bug to fix in the operation's list.
            tracing::error!(
                status = e.status(),
                "an operation answered with a status its OpenAPI document does not list"
            );
        }
        Self(e, PhantomData)
    }
}

impl<S: Statuses> ApiResponse for Fails<S> {
    fn meta() -> MetaResponses {
        let mut meta = ApiError::meta();
        meta.responses
            .retain(|r| r.status.is_some_and(|s| S::LIST.contains(&s)));
        meta
    }

    fn register(registry: &mut Registry) {
        ApiError::register(registry);
    }
}

impl<S: Statuses> IntoResponse for Fails<S> {
    fn into_response(self) -> poem::Response {
        self.0.into_response()
    }
}

impl<S> From<Fails<S>> for poem::Error {
    fn from(f: Fails<S>) -> Self {
        f.0.into()
    }
}

impl From<JobsError> for ApiError {
    fn from(e: JobsError) -> Self {
        use ErrorCode as C;
        let message = e.to_string();
        let code = match e {
            JobsError::InvalidMagnet(_) => C::InvalidMagnet,
            JobsError::InvalidUrl(_) => C::InvalidUrl,
            JobsError::UrlNotAllowed(_) => C::UrlNotAllowed,
            JobsError::UrlRefused(_) | JobsError::UrlUnreachable(_) => C::UrlUnavailable,
            JobsError::TrackerNotAllowed { .. } => C::TrackerNotAllowed,
            JobsError::PeerNotAllowed(_) => C::PeerNotAllowed,
            JobsError::Blocked(_) => C::Blocked,
            JobsError::TorrentNotReady => C::TorrentNotReady,
            JobsError::InvalidTorrent(_) => C::InvalidTorrent,
            JobsError::InvalidSelection(_) => C::InvalidFileSelection,
            // The OpenAPI document states the same bounds, so this is a body that breaks it.
            JobsError::InvalidSpeedLimit(_) => C::InvalidRequest,
            JobsError::UnsafePath(_) => C::TorrentUnsafePath,
            JobsError::TorrentLimit(TorrentLimitError::TooManyFiles { .. }) => {
                C::TorrentTooManyFiles
            }
            JobsError::TorrentLimit(TorrentLimitError::TooLarge { .. }) => C::TorrentTooLarge,
            JobsError::NotFound => C::JobNotFound,
            JobsError::ProfileNotFound(_) => {
                let (code, status) = PROFILE_NAMED_BY_A_JOB;
                return Self::with_status(status, code, message);
            }
            JobsError::FileNotFound(_) => C::FileNotFound,
            JobsError::FileNotSelected(_) => C::FileNotSelected,
            JobsError::Duplicate(_) | JobsError::AlreadySubmitted(_) => C::JobAlreadyExists,
            JobsError::QuotaExceeded { .. } => C::QuotaExceeded,
            JobsError::IllegalTransition(_) => C::IllegalTransition,
            JobsError::NotFinished(_) => C::JobNotFinished,
            JobsError::Purging => C::JobPurging,
            JobsError::Unavailable(_) => {
                tracing::warn!(error = %message, "backend unavailable");
                return Self::new(
                    C::ServiceUnavailable,
                    "a backend is unavailable; try again shortly",
                );
            }
            JobsError::Unexpected(e) => return Self::internal(&format!("{e:#}")),
        };
        Self::new(code, message)
    }
}

impl From<LiveFileError> for ApiError {
    fn from(e: LiveFileError) -> Self {
        use ErrorCode as C;
        match e {
            // Between two of the job's steps (starting, pausing, handed over for delivery).
            LiveFileError::NotRunning => Self::new(
                C::JobNotFinished,
                "the job's file cannot be read right now (its download is starting or stopping, or the file is being delivered); try again shortly",
            ),
            LiveFileError::Busy => Self::new(C::TooManyStreams, e.to_string()),
            LiveFileError::TimedOut => Self::new(
                C::StreamTimeout,
                "the file's data did not arrive in time: no peer sent the pieces it asks for",
            ),
            LiveFileError::Unexpected(e) => Self::internal(&format!("{e:#}")),
        }
    }
}

impl From<ProfilesError> for ApiError {
    fn from(e: ProfilesError) -> Self {
        use ErrorCode as C;
        let message = e.to_string();
        let code = match e {
            ProfilesError::Invalid(_) | ProfilesError::CredentialsMismatch => {
                C::InvalidStorageProfile
            }
            ProfilesError::PrivateEndpoint(_) => C::StorageEndpointNotAllowed,
            ProfilesError::NotFound => C::StorageProfileNotFound,
            ProfilesError::Unreachable(_) => C::StorageUnreachable,
            ProfilesError::AuthFailed(_) => C::StorageAuthFailed,
            ProfilesError::SharedDirUnset => C::SharedDirUnset,
            ProfilesError::FolderRefused(_) => C::StorageFolderNotAllowed,
            ProfilesError::Unavailable(_) => return Self::from(JobsError::Unavailable(message)),
            ProfilesError::Unexpected(e) => return Self::internal(&format!("{e:#}")),
        };
        Self::new(code, message)
    }
}

impl From<WebhooksError> for ApiError {
    fn from(e: WebhooksError) -> Self {
        use ErrorCode as C;
        let message = e.to_string();
        let code = match e {
            WebhooksError::Invalid(_) => C::InvalidWebhook,
            WebhooksError::NotAllowed(_) => C::UrlNotAllowed,
            WebhooksError::NotFound => C::WebhookNotFound,
            WebhooksError::TooMany(_) => C::QuotaExceeded,
            WebhooksError::RateLimited { retry_after } => return Self::rate_limited(retry_after),
            WebhooksError::Unavailable(_) => return Self::from(JobsError::Unavailable(message)),
            WebhooksError::Unexpected(e) => return Self::internal(&format!("{e:#}")),
        };
        Self::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    //! The README's code tables and the registry must agree, both ways: a code the README
    //! lists that is not registered (or under another status), and a registered code the
    //! README does not list, both fail.
    use std::collections::BTreeSet;

    use super::*;

    const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));

    /// The rows of the README table headed `header`: the first cell, and the codes (the
    /// backticked snake_case words) of the second.
    fn table(header: &str) -> Vec<(String, Vec<String>)> {
        let mut lines = README.lines().skip_while(|l| l.trim() != header);
        assert!(
            lines.next().is_some(),
            "the README has no table headed {header}"
        );
        lines
            .skip(1) // |---|---|
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.trim().trim_matches('|').split('|').collect();
                let codes = cells[1]
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .filter(|w| {
                        w.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !w.is_empty()
                    })
                    .map(str::to_owned)
                    .collect();
                (cells[0].trim().to_owned(), codes)
            })
            .collect()
    }

    fn registered(word: &str) -> ErrorCode {
        ErrorCode::parse(word)
            .unwrap_or_else(|| panic!("the README lists `{word}`, which ErrorCode does not have"))
    }

    #[test]
    fn the_readme_lists_every_api_code_under_its_status() {
        let readme: BTreeSet<(u16, ErrorCode)> = table("| status | codes |")
            .into_iter()
            .flat_map(|(status, codes)| {
                let status: u16 = status.parse().unwrap_or_else(|_| panic!("status {status}"));
                codes.into_iter().map(move |c| (status, registered(&c)))
            })
            .collect();
        let mut expected: BTreeSet<(u16, ErrorCode)> = ErrorCode::ALL
            .iter()
            .filter_map(|&c| status(c).map(|s| (s.as_u16(), c)))
            .collect();
        let (code, second) = PROFILE_NAMED_BY_A_JOB;
        expected.insert((second.as_u16(), code));
        let missing: Vec<_> = expected.difference(&readme).collect();
        let wrong: Vec<_> = readme.difference(&expected).collect();
        assert!(
            missing.is_empty(),
            "API codes missing from the README's status table: {missing:?}"
        );
        assert!(
            wrong.is_empty(),
            "the README's status table lists codes the API does not answer with under that status: {wrong:?}"
        );
    }

    #[test]
    fn the_readme_lists_every_job_code() {
        let readme: BTreeSet<ErrorCode> = table("| stage | codes |")
            .into_iter()
            .flat_map(|(_, codes)| codes)
            .map(|c| registered(&c))
            .collect();
        let expected: BTreeSet<ErrorCode> = ErrorCode::ALL
            .iter()
            .copied()
            .filter(|c| c.on_jobs())
            .collect();
        let missing: Vec<_> = expected.difference(&readme).collect();
        let wrong: Vec<_> = readme.difference(&expected).collect();
        assert!(
            missing.is_empty(),
            "job error codes missing from the README's job error table: {missing:?}"
        );
        assert!(
            wrong.is_empty(),
            "the README's job error table lists codes no job carries: {wrong:?}"
        );
    }

    #[test]
    fn every_code_is_answered_or_carried() {
        for &code in ErrorCode::ALL {
            assert!(
                status(code).is_some() || code.on_jobs(),
                "{code} is neither an API code nor a job code"
            );
        }
    }

    #[test]
    fn a_code_decides_the_status() {
        for &code in ErrorCode::ALL {
            if let Some(s) = status(code)
                && s != StatusCode::METHOD_NOT_ALLOWED
            {
                let e = ApiError::new(code, "x");
                assert_eq!(e.status(), s.as_u16(), "{code}");
            }
        }
    }
}
