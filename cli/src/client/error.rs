//! What can go wrong in a client command, and the exit code each outcome gives scripts
//! ([`Exit`]): one table, in one place, that the README repeats.

use std::fmt;

/// The exit codes of the client commands. Scripts may rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// Anything else: a refusal of the server not named below, a local file that cannot be
    /// read or written, an answer that makes no sense.
    Other = 1,
    /// The command line is wrong (clap's own code for usage errors).
    Usage = 2,
    /// Not logged in, or the server refused the credentials (401, or 403 for the account).
    Auth = 3,
    /// No such job, file or storage profile (404, or an id that cannot be a job's).
    NotFound = 4,
    /// A watched job ended `failed` or `cancelled`.
    JobFailed = 5,
    /// The server could not be reached (connection refused, name unknown, timeout).
    Unreachable = 6,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(exit as u8)
    }
}

/// A client command's failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No server URL or token is stored, and none is in the environment.
    #[error("not logged in: run `ferry login URL` (or set FERRY_URL and FERRY_TOKEN)")]
    NotLoggedIn,
    /// The server answered with an error body (`{"code", "message"}`), or with a status and
    /// something else.
    #[error("{}: {} (HTTP {status}{})", clean(.code), clean(.message), request_note(.request_id.as_deref()))]
    Api {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// The server did not answer at all.
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The command line asks for something that cannot be done as asked.
    #[error("{0}")]
    Usage(String),
    /// A job, file or profile named on the command line does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Watched jobs ended without their files: (id, name, status, error code and message).
    #[error("{}", ended_text(.0))]
    JobsEnded(Vec<EndedJob>),
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// A job that ended `failed` or `cancelled`.
#[derive(Debug, Clone)]
pub struct EndedJob {
    pub id: String,
    pub name: String,
    pub status: String,
    pub error: Option<(String, String)>,
}

fn request_note(id: Option<&str>) -> String {
    id.map(|id| format!(", request id {}", clean(id)))
        .unwrap_or_default()
}

fn ended_text(jobs: &[EndedJob]) -> String {
    jobs.iter()
        .map(|j| match &j.error {
            Some((code, message)) => format!(
                "job {} ({}) {}: {}: {}",
                j.id,
                clean(&j.name),
                j.status,
                clean(code),
                clean(message)
            ),
            None => format!("job {} ({}) {}", j.id, clean(&j.name), j.status),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl ClientError {
    /// The exit code this failure ends the command with.
    pub fn exit(&self) -> Exit {
        match self {
            Self::NotLoggedIn => Exit::Auth,
            Self::Api { status, code, .. } => match (*status, code.as_str()) {
                (401, _) => Exit::Auth,
                (403, "forbidden" | "account_disabled" | "unauthorized") => Exit::Auth,
                (404, _) => Exit::NotFound,
                (_, code) if code.ends_with("_not_found") => Exit::NotFound,
                _ => Exit::Other,
            },
            Self::Unreachable { .. } => Exit::Unreachable,
            Self::Usage(_) => Exit::Usage,
            Self::NotFound(_) => Exit::NotFound,
            Self::JobsEnded(_) => Exit::JobFailed,
            Self::Unexpected(_) => Exit::Other,
        }
    }

    /// The failure as `--json` prints it: `{"error": {"code", "message", "status"?}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let (code, status) = match self {
            Self::NotLoggedIn => ("not_logged_in".to_owned(), None),
            Self::Api { status, code, .. } => (code.clone(), Some(*status)),
            Self::Unreachable { .. } => ("server_unreachable".to_owned(), None),
            Self::Usage(_) => ("usage".to_owned(), None),
            Self::NotFound(_) => ("not_found".to_owned(), None),
            Self::JobsEnded(_) => ("job_failed".to_owned(), None),
            Self::Unexpected(_) => ("client_error".to_owned(), None),
        };
        let message = match self {
            Self::Api { message, .. } => message.clone(),
            other => format!("{other:#}"),
        };
        let mut error = serde_json::json!({"code": code, "message": message});
        if let Some(status) = status {
            error["status"] = status.into();
        }
        if let Self::Api {
            request_id: Some(id),
            ..
        } = self
        {
            error["request_id"] = id.as_str().into();
        }
        serde_json::json!({ "error": error })
    }

    /// An [`ClientError::Api`] with a hint appended to its message.
    pub fn with_hint(self, hint: &str) -> Self {
        match self {
            Self::Api {
                status,
                code,
                message,
                request_id,
            } => Self::Api {
                status,
                code,
                message: format!("{message}; {hint}"),
                request_id,
            },
            other => other,
        }
    }
}

/// `text` without control characters: what a server says is shown on a terminal, and must
/// not move its cursor, change its colours or rewrite what is already there.
pub fn clean(text: &str) -> Cleaned<'_> {
    Cleaned(text)
}

/// Text shown without its control characters (see [`clean`]).
pub struct Cleaned<'a>(&'a str);

impl fmt::Display for Cleaned<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                f.write_str("\u{fffd}")?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> ClientError {
        ClientError::Api {
            status,
            code: code.to_owned(),
            message: "m".to_owned(),
            request_id: None,
        }
    }

    #[test]
    fn every_outcome_has_its_documented_code() {
        assert_eq!(api(401, "invalid_credentials").exit(), Exit::Auth);
        assert_eq!(api(403, "account_disabled").exit(), Exit::Auth);
        assert_eq!(api(403, "quota_exceeded").exit(), Exit::Other);
        assert_eq!(api(404, "job_not_found").exit(), Exit::NotFound);
        assert_eq!(api(422, "storage_profile_not_found").exit(), Exit::NotFound);
        assert_eq!(api(409, "illegal_transition").exit(), Exit::Other);
        assert_eq!(ClientError::NotLoggedIn.exit(), Exit::Auth);
        assert_eq!(ClientError::JobsEnded(Vec::new()).exit(), Exit::JobFailed);
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let shown = clean("a\u{1b}[2Jb\r\nc").to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.starts_with('a') && shown.ends_with('c'));
    }
}
