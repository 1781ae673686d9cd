//! `LocalStaging`: downloads in progress under `{root}/{job id}/…`.

use std::path::PathBuf;

use async_trait::async_trait;
use ferry_application::ports::Staging;
use ferry_domain::{JobId, SafePath};

#[derive(Debug, Clone)]
pub struct LocalStaging {
    root: PathBuf,
}

impl LocalStaging {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &std::path::Path {
        &self.root
    }
}

#[async_trait]
impl Staging for LocalStaging {
    fn file(&self, job_id: JobId, path: &SafePath) -> PathBuf {
        path.components()
            .fold(self.job_dir(job_id), |p, c| p.join(c))
    }

    fn job_dir(&self, job_id: JobId) -> PathBuf {
        self.root.join(job_id.to_string())
    }

    async fn discard(&self, job_id: JobId) -> anyhow::Result<()> {
        match tokio::fs::remove_dir_all(self.job_dir(job_id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
