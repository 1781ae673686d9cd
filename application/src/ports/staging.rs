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
}
