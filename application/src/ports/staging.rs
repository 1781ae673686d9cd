//! `Staging`: where downloads land before delivery, one folder per job. Download workers
//! write there and delivery workers read from it, so in the distributed mode it is a shared
//! volume.

use std::path::PathBuf;

use async_trait::async_trait;
use ferry_domain::{JobId, SafePath};

#[async_trait]
pub trait Staging: Send + Sync + 'static {
    /// Where a job's file is (or will be) staged.
    fn file(&self, job_id: JobId, path: &SafePath) -> PathBuf;

    /// The folder of a job's staged data.
    fn job_dir(&self, job_id: JobId) -> PathBuf;

    /// Removes a job's staged data. Idempotent.
    ///
    /// # Errors
    /// On I/O failure other than "already gone".
    async fn discard(&self, job_id: JobId) -> anyhow::Result<()>;

    /// Keeps one copy of content per SHA-256: the staged file and the content store end up
    /// as the same file (hard links where the file system allows).
    ///
    /// # Errors
    /// On I/O failure.
    async fn adopt(&self, job_id: JobId, path: &SafePath, sha256: &str) -> anyhow::Result<()>;

    /// The folder a seeding job's data lives in (it outlives delivery).
    fn seed_dir(&self, job_id: JobId) -> PathBuf;

    /// Puts the job's staged `files` into its seed folder (hard links where possible).
    /// Idempotent.
    ///
    /// # Errors
    /// On I/O failure.
    async fn keep_for_seeding(&self, job_id: JobId, files: &[SafePath]) -> anyhow::Result<()>;

    /// Removes a job's seed folder. Idempotent.
    ///
    /// # Errors
    /// On I/O failure other than "already gone".
    async fn discard_seed(&self, job_id: JobId) -> anyhow::Result<()>;
}
