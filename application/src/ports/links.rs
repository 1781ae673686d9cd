//! Signed file links: a short-lived token that stands for "file `index` of job `job`, owned
//! by `owner`, until `expires_at`", so the file can be fetched without a cookie or a bearer
//! token (`<video src>`, download managers, sharing). The adapter does the cryptography; the
//! use case decides whether what a valid token names may still be read.

use chrono::{DateTime, Utc};
use ferry_domain::{JobId, OwnerId};

/// What a link is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClaims {
    pub job: JobId,
    /// The file's index in the job.
    pub file: usize,
    /// The job's owner when the link was made.
    pub owner: OwnerId,
    /// The link stops working at this instant (whole seconds).
    pub expires_at: DateTime<Utc>,
}

/// Why a token is not a working link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The link was genuine but its time is up.
    #[error("the link has expired")]
    Expired,
    /// Not a link this server signed: malformed, forged, tampered with, signed with another
    /// key or for another purpose, or of an algorithm other than the signer's.
    #[error("the link is not valid: {0}")]
    Invalid(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Signs and verifies file links with a key every API process shares.
pub trait LinkSigner: Send + Sync + 'static {
    /// The token for `claims`: URL-safe (fits a path segment unescaped), and different on
    /// every call, even for the same claims.
    ///
    /// # Errors
    /// Only `Unexpected`.
    fn sign(&self, claims: &LinkClaims) -> Result<String, LinkError>;

    /// The claims of a token this signer (or one with the same key) made, if it is still
    /// valid at `now`.
    ///
    /// # Errors
    /// `Expired` at or after its `expires_at`; `Invalid` for anything that is not exactly a
    /// token signed with this key for file links.
    fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<LinkClaims, LinkError>;
}
