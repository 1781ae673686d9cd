//! `ObjectStore`: where delivered files end up (the server's disk, a folder on the shared
//! volume, S3, Google Drive).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ferry_domain::{JobId, StorageKey};

/// The strings are details for the server log (addresses, driver messages): callers show
/// users a sentence of their own.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no object at that key")]
    NotFound,
    /// No answer, or an answer that is not the storage's protocol.
    #[error("the storage cannot be reached: {0}")]
    Unreachable(String),
    #[error("the storage rejected the credentials: {0}")]
    AuthFailed(String),
    /// The storage's address is internal and the operator does not allow it.
    #[error("the storage's address is not allowed: {0}")]
    NotAllowed(String),
    /// The storage needs a setting this server lacks (a folder profile without
    /// `storage.shared_dir`).
    #[error("this server is not configured for the storage: {0}")]
    NotConfigured(String),
    /// A folder leads outside its owner's area of the shared volume (a symbolic link), or
    /// something other than a folder stands where one must be created.
    #[error("the folder cannot be used: {0}")]
    FolderRefused(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Where a client can read an object from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectLocation {
    /// A file on this server's disk, streamed by the API.
    LocalFile(PathBuf),
    /// A URL the client is redirected to (presigned S3 URL, Drive link).
    Url(String),
}

/// One file to deliver.
pub struct PutRequest<'a> {
    /// The job the file belongs to (resumable sessions are remembered per job).
    pub job: JobId,
    pub key: &'a StorageKey,
    pub source: &'a Path,
    /// The file's expected size.
    pub size: u64,
    /// Called with the bytes of this file stored so far.
    pub progress: &'a (dyn Fn(u64) + Send + Sync),
}

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub size: u64,
    /// Hex SHA-256 of the bytes stored.
    pub sha256: String,
}

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores the file at `req.source` under `req.key` (replacing any object there), resuming
    /// an upload an earlier attempt left unfinished. The source may be moved rather than
    /// copied; a retry whose source is gone but whose object is complete succeeds.
    ///
    /// # Errors
    /// `NotFound` if the source does not exist; `Unreachable`/`AuthFailed` for the backend.
    async fn put_file(&self, req: PutRequest<'_>) -> Result<StoredObject, StoreError>;

    /// Aborts every unfinished upload a job left (multipart uploads, resumable sessions).
    ///
    /// # Errors
    /// `Unreachable`/`AuthFailed` for the backend.
    async fn abort_uploads(&self, job: JobId) -> Result<(), StoreError>;

    /// The stored object's size, if it exists.
    ///
    /// # Errors
    /// `Unreachable`/`AuthFailed` for the backend.
    async fn size(&self, key: &StorageKey) -> Result<Option<u64>, StoreError>;

    /// # Errors
    /// `NotFound` when there is no object at `key`.
    async fn locate(&self, key: &StorageKey) -> Result<ObjectLocation, StoreError>;

    /// Deletes every object whose key starts with `prefix/` (or equals `prefix`). Idempotent.
    ///
    /// # Errors
    /// `Unreachable`/`AuthFailed` for the backend.
    async fn delete_prefix(&self, prefix: &StorageKey) -> Result<(), StoreError>;

    /// Checks that the store is usable.
    ///
    /// # Errors
    /// `Unreachable`/`AuthFailed` for the backend.
    async fn check(&self) -> Result<(), StoreError>;
}
