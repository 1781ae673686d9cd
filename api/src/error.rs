//! The one place where errors become HTTP: a stable snake_case `code` decides the status.

use ferry_application::{JobsError, ProfilesError};
use ferry_domain::TorrentLimitError;
use poem_openapi::payload::Json;
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
    /// The upload is larger than the server accepts.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The torrent is well-formed but refused: unsafe file names, too many files, too large.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
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
