//! Signed file links: a caller who may read a file (finished, or streamed while it
//! downloads) gets a short-lived link to it that works without a cookie or a token
//! (`<video src>`, download managers, sharing).
//!
//! A link names one file of one job of one owner and ends at its expiry. Whether it still
//! works is decided again at every use: the signature and expiry (the [`LinkSigner`]), then
//! whether the owner still exists and is enabled, then whether the file can still be read
//! (a purged job or a job being purged cannot). Disabling the owner therefore revokes every
//! link they made, at once, on every API process.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_domain::{JobId, OwnerId};

use crate::jobs::{FileSource, Jobs, JobsError};
use crate::ports::{
    Clock, LinkClaims, LinkError, LinkSigner, RateDecision, RateLimit, RateLimiter, RepoError,
    UserRepository,
};

/// Tokens longer than this are refused before any decoding (a link this server signs is a
/// few hundred bytes).
pub const MAX_LINK_TOKEN_BYTES: usize = 2048;

/// How links are made and used.
#[derive(Debug, Clone, Copy)]
pub struct LinkSettings {
    /// How long a link works.
    pub ttl: Duration,
    /// Uses of all of one owner's links (each request, a video's seeks included).
    pub limit: RateLimit,
}

/// A link just made: the token goes into the link's URL.
#[derive(Debug, Clone)]
pub struct FileLink {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum LinksError {
    /// A genuine link whose time is up.
    #[error("this link has expired; ask for a new one")]
    Expired,
    /// Not a link this server made, or one whose owner is gone or disabled since.
    #[error("this link is not valid, or no longer is")]
    Invalid,
    #[error("too many requests through this owner's links; try again in {} s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    /// What the file's own endpoint would answer: not found, not finished, purging, …
    #[error(transparent)]
    Jobs(#[from] JobsError),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<RepoError> for LinksError {
    fn from(e: RepoError) -> Self {
        Self::Jobs(e.into())
    }
}

pub struct FileLinks {
    pub jobs: Arc<Jobs>,
    pub users: Arc<dyn UserRepository>,
    pub limiter: Arc<dyn RateLimiter>,
    pub signer: Arc<dyn LinkSigner>,
    pub clock: Arc<dyn Clock>,
    pub settings: LinkSettings,
}

impl FileLinks {
    /// A link to file `index` of `owner`'s job `id`, which must be readable now (the same
    /// checks as [`Jobs::source`]: a finished file, or one being downloaded by this
    /// process's engine).
    ///
    /// # Errors
    /// `Jobs` with what [`Jobs::source`] refuses (`NotFound` for another owner's job).
    pub async fn mint(
        &self,
        owner: &OwnerId,
        id: JobId,
        index: usize,
    ) -> Result<FileLink, LinksError> {
        // Ownership and readiness first: nothing is signed for a file the caller cannot read.
        self.jobs.source(owner, id, index).await?;
        let ttl = chrono::Duration::from_std(self.settings.ttl).unwrap_or(chrono::Duration::MAX);
        let end = self
            .clock
            .now()
            .checked_add_signed(ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        // Whole seconds, as the token carries it.
        let expires_at = DateTime::from_timestamp(end.timestamp(), 0).unwrap_or(end);
        let claims = LinkClaims {
            job: id,
            file: index,
            owner: owner.clone(),
            expires_at,
        };
        let token = self.signer.sign(&claims).map_err(|e| match e {
            LinkError::Unexpected(e) => LinksError::Unexpected(e),
            other => LinksError::Unexpected(other.into()),
        })?;
        tracing::info!(job_id = %id, file = index, %expires_at, "file link made");
        Ok(FileLink { token, expires_at })
    }

    /// The file a link stands for, if the link still works.
    ///
    /// # Errors
    /// `Expired`; `Invalid` for a token this server did not sign (or signed for something
    /// else), and for a link whose owner was deleted or disabled; `RateLimited`; `Jobs` with
    /// what [`Jobs::source`] answers now (the job purged, being purged, …).
    pub async fn open(&self, token: &str) -> Result<FileSource, LinksError> {
        if token.len() > MAX_LINK_TOKEN_BYTES {
            return Err(LinksError::Invalid);
        }
        let claims = match self.signer.verify(token, self.clock.now()) {
            Ok(claims) => claims,
            Err(LinkError::Expired) => return Err(LinksError::Expired),
            Err(LinkError::Invalid(why)) => {
                tracing::info!(reason = %why, "a file link was refused");
                return Err(LinksError::Invalid);
            }
            Err(LinkError::Unexpected(e)) => return Err(LinksError::Unexpected(e)),
        };
        // Only genuine links reach the limiter, so forged ones cannot spend an owner's budget.
        let key = format!("link:user:{}", claims.owner.as_str());
        if let RateDecision::Limited { retry_after } =
            self.limiter.check(&key, self.settings.limit).await
        {
            return Err(LinksError::RateLimited { retry_after });
        }
        match self.users.get(&claims.owner).await? {
            Some(user) if !user.disabled => {}
            _ => {
                tracing::info!(job_id = %claims.job, "a file link of a deleted or disabled user was refused");
                return Err(LinksError::Invalid);
            }
        }
        Ok(self
            .jobs
            .source(&claims.owner, claims.job, claims.file)
            .await?)
    }
}
