//! Storage profiles and their sealed credentials, resumable-upload sessions, and the
//! resolver that turns a job's destination into an `ObjectStore`.

use std::sync::Arc;

use async_trait::async_trait;
use ferry_domain::{Credentials, JobId, OwnerId, ProfileId, StorageProfile};

use super::{ObjectStore, RepoError, StoreError};

/// A profile as stored: its credentials sealed by a [`SecretBox`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedProfile {
    pub profile: StorageProfile,
    pub credentials: Vec<u8>,
}

#[async_trait]
pub trait ProfileRepository: Send + Sync + 'static {
    /// # Errors
    /// `AlreadyExists` if the id is taken.
    async fn insert(&self, profile: &SealedProfile) -> Result<(), RepoError>;

    /// The owner's profile, if it exists.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn get(&self, owner: &OwnerId, id: ProfileId)
    -> Result<Option<SealedProfile>, RepoError>;

    /// The owner's profiles, oldest first.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn list(&self, owner: &OwnerId) -> Result<Vec<StorageProfile>, RepoError>;

    /// # Errors
    /// `NotFound` when the owner has no such profile.
    async fn delete(&self, owner: &OwnerId, id: ProfileId) -> Result<(), RepoError>;
}

#[derive(Debug, thiserror::Error)]
#[error("sealed data could not be opened (wrong server key or tampered data)")]
pub struct SecretError;

/// Authenticated encryption of secrets at rest with the server's key.
pub trait SecretBox: Send + Sync + 'static {
    fn seal(&self, plain: &[u8]) -> Vec<u8>;

    /// # Errors
    /// [`SecretError`] when the data was not sealed with this key or was altered.
    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SecretError>;
}

/// Where unfinished resumable uploads are remembered, so a restarted worker resumes them
/// (and a cancelled job's can be aborted).
#[async_trait]
pub trait UploadSessions: Send + Sync + 'static {
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn get(&self, job: JobId, key: &str) -> Result<Option<String>, RepoError>;

    /// Records (or with `None` forgets) the session of `key`.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn set(&self, job: JobId, key: &str, session: Option<&str>) -> Result<(), RepoError>;

    /// Every remembered session of a job: `(key, session)`.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn of_job(&self, job: JobId) -> Result<Vec<(String, String)>, RepoError>;
}

/// Builds the object store for a destination.
#[async_trait]
pub trait StoreResolver: Send + Sync + 'static {
    /// The store of `owner`'s `profile` (`None`: the server's local storage).
    ///
    /// # Errors
    /// `NotFound` when the profile does not exist (any more); `AuthFailed` when its
    /// credentials cannot be opened; backend errors otherwise.
    async fn store(
        &self,
        owner: &OwnerId,
        profile: Option<ProfileId>,
    ) -> Result<Arc<dyn ObjectStore>, StoreError>;

    /// A store for a profile that is not saved yet (to test it before saving).
    ///
    /// # Errors
    /// Backend construction errors.
    async fn build(
        &self,
        profile: &StorageProfile,
        credentials: &Credentials,
    ) -> Result<Arc<dyn ObjectStore>, StoreError>;
}
