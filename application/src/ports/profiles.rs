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

    /// The owner's default profile (where a job that names none goes), if they chose one
    /// and it still exists.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn default_of(&self, owner: &OwnerId) -> Result<Option<ProfileId>, RepoError>;

    /// Makes `id` the owner's default profile (`None`: the server's own storage again).
    ///
    /// # Errors
    /// `NotFound` when the owner has no such profile.
    async fn set_default(&self, owner: &OwnerId, id: Option<ProfileId>) -> Result<(), RepoError>;

    /// Every owner's profiles with their sealed credentials, oldest first (for re-sealing
    /// them under a new key).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn all_sealed(&self) -> Result<Vec<SealedProfile>, RepoError>;

    /// Replaces profile `id`'s sealed credentials with `sealed` if they are still `expected`.
    /// Returns `false` (and changes nothing) when they changed meanwhile or the profile is gone.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn replace_credentials(
        &self,
        id: ProfileId,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool, RepoError>;
}

/// What a profile's credentials are sealed to (associated data): they open only for the same
/// profile id and owner, so sealed credentials copied onto another profile do not open.
pub fn credentials_context(profile: &StorageProfile) -> Vec<u8> {
    format!(
        "ferry storage credentials\0{}\0{}",
        profile.id,
        profile.owner.as_str()
    )
    .into_bytes()
}

#[derive(Debug, thiserror::Error)]
#[error("sealed data could not be opened (wrong server key or tampered data)")]
pub struct SecretError;

/// Authenticated encryption of secrets at rest with the server's keys (the current one seals;
/// older ones still open what they sealed until everything is re-sealed).
pub trait SecretBox: Send + Sync + 'static {
    /// Seals `plain` with the current key, bound to `context` (associated data: not stored,
    /// required to open).
    fn seal(&self, plain: &[u8], context: &[u8]) -> Vec<u8>;

    /// # Errors
    /// [`SecretError`] when no known key sealed the data, it was sealed for another context,
    /// or it was altered.
    fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SecretError>;

    /// Whether `sealed` is in the current format under the current key (nothing to re-seal).
    fn is_current(&self, sealed: &[u8]) -> bool;
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
