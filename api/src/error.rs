//! The one place where errors become HTTP: a stable snake_case `code` decides the status.
//! Each operation answers with [`Fails`] over the statuses it can really return, so the
//! OpenAPI document lists those and no others.

use std::marker::PhantomData;

use ferry_application::{JobsError, ProfilesError};
use ferry_domain::TorrentLimitError;
use poem::IntoResponse;
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaResponses, Registry};
use poem_openapi::{ApiResponse, Object};

/// The body of every error response.
#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// Stable, machine-readable snake_case code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// Every error an operation can answer with.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed: bad JSON, a bad magnet link, a bad .torrent, a bad selection.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or wrong `Authorization: Bearer` token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
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
    /// Too many event streams are open (for this caller, or on this server).
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    /// The user's storage did not answer.
    #[oai(status = 502)]
    BadGateway(Json<ErrorBody>),
    /// A backend (database, queue, storage) is unavailable; try again later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
    /// An unexpected failure; the details are in the server's log.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}

fn body(code: &str, message: impl Into<String>) -> Json<ErrorBody> {
    Json(ErrorBody {
        code: code.to_owned(),
        message: message.into(),
    })
}

impl ApiError {
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::BadRequest(body(code, message))
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::NotFound(body(code, message))
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::Conflict(body(code, message))
    }

    pub fn too_large(code: &str, message: impl Into<String>) -> Self {
        Self::PayloadTooLarge(body(code, message))
    }

    pub fn too_many(code: &str, message: impl Into<String>) -> Self {
        Self::TooManyRequests(body(code, message))
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::UnsupportedMediaType(body("unsupported_media_type", message))
    }

    pub fn unauthorized() -> Self {
        Self::Unauthorized(
            body(
                "unauthorized",
                "send the API token as `Authorization: Bearer <token>`",
            ),
            "Bearer".to_owned(),
        )
    }

    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "request failed");
        Self::Internal(body(
            "internal_error",
            "an unexpected error occurred; see the server log",
        ))
    }
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized(..) => 401,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::PayloadTooLarge(_) => 413,
            Self::UnsupportedMediaType(_) => 415,
            Self::Unprocessable(_) => 422,
            Self::TooManyRequests(_) => 429,
            Self::BadGateway(_) => 502,
            Self::Unavailable(_) => 503,
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
        let message = e.to_string();
        match e {
            JobsError::InvalidMagnet(_) => Self::bad_request("invalid_magnet", message),
            JobsError::InvalidUrl(_) => Self::bad_request("invalid_url", message),
            JobsError::UrlNotAllowed(_) => Self::Unprocessable(body("url_not_allowed", message)),
            JobsError::UrlRefused(_) => Self::Unprocessable(body("url_unavailable", message)),
            JobsError::TrackerNotAllowed { .. } => {
                Self::Unprocessable(body("tracker_not_allowed", message))
            }
            JobsError::PeerNotAllowed(_) => Self::Unprocessable(body("peer_not_allowed", message)),
            JobsError::TorrentNotReady => Self::conflict("torrent_not_ready", message),
            JobsError::InvalidTorrent(_) => Self::bad_request("invalid_torrent", message),
            JobsError::InvalidSelection(_) => Self::bad_request("invalid_file_selection", message),
            JobsError::UnsafePath(_) => Self::Unprocessable(body("torrent_unsafe_path", message)),
            JobsError::TorrentLimit(TorrentLimitError::TooManyFiles { .. }) => {
                Self::Unprocessable(body("torrent_too_many_files", message))
            }
            JobsError::TorrentLimit(TorrentLimitError::TooLarge { .. }) => {
                Self::Unprocessable(body("torrent_too_large", message))
            }
            JobsError::NotFound => Self::not_found("job_not_found", message),
            JobsError::ProfileNotFound(_) => {
                Self::Unprocessable(body("storage_profile_not_found", message))
            }
            JobsError::FileNotFound(_) => Self::not_found("file_not_found", message),
            JobsError::FileNotSelected(_) => Self::not_found("file_not_selected", message),
            JobsError::Duplicate(_) => Self::conflict("job_already_exists", message),
            JobsError::IllegalTransition(_) => Self::conflict("illegal_transition", message),
            JobsError::NotFinished(_) => Self::conflict("job_not_finished", message),
            JobsError::Purging => Self::conflict("job_purging", message),
            JobsError::Unavailable(_) => {
                tracing::warn!(error = %message, "backend unavailable");
                Self::Unavailable(body(
                    "service_unavailable",
                    "a backend is unavailable; try again shortly",
                ))
            }
            JobsError::Unexpected(e) => Self::internal(&format!("{e:#}")),
        }
    }
}

impl From<ProfilesError> for ApiError {
    fn from(e: ProfilesError) -> Self {
        let message = e.to_string();
        match e {
            ProfilesError::Invalid(_) => Self::bad_request("invalid_storage_profile", message),
            ProfilesError::CredentialsMismatch => {
                Self::bad_request("invalid_storage_profile", message)
            }
            ProfilesError::PrivateEndpoint(_) => {
                Self::Unprocessable(body("storage_endpoint_not_allowed", message))
            }
            ProfilesError::NotFound => Self::not_found("storage_profile_not_found", message),
            ProfilesError::Unreachable(_) => Self::BadGateway(body("storage_unreachable", message)),
            ProfilesError::AuthFailed(_) => {
                Self::Unprocessable(body("storage_auth_failed", message))
            }
            ProfilesError::Unavailable(_) => Self::from(JobsError::Unavailable(message)),
            ProfilesError::Unexpected(e) => Self::internal(&format!("{e:#}")),
        }
    }
}
