//! `LocalStaging`: downloads in progress under `{root}/{job id}/…`, content-addressed copies
//! under `{root}/.content/{sha256}`, and seeding data under `{root}/.seeding/{job id}/…`.
//!
//! Copies are hard links where the file system allows, so keeping content once, seeding it
//! and delivering it to local storage all share one file on disk. A content entry goes when
//! nothing else links to it any more.

use std::path::{Path, PathBuf};

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

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn content_dir(&self) -> PathBuf {
        self.root.join(".content")
    }

    /// The content-addressed copy of `sha256`.
    pub fn content(&self, sha256: &str) -> PathBuf {
        self.content_dir().join(sha256)
    }
}

/// Hard-links `from` to `to` (replacing nothing), copying across file systems.
async fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    match tokio::fs::hard_link(from, to).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(_) => {
            let tmp = to.with_extension("ferry-partial");
            let copied = async {
                tokio::fs::copy(from, &tmp).await?;
                tokio::fs::File::open(&tmp).await?.sync_all().await?;
                tokio::fs::rename(&tmp, to).await
            }
            .await;
            if copied.is_err() {
                // A copy cut short (a full disk) does not keep the space it took.
                let _ = tokio::fs::remove_file(&tmp).await;
            }
            copied
        }
    }
}

/// Makes `to` another name of `from` (a copy across file systems), replacing what `to` was.
///
/// # Errors
/// When a folder, the link or the copy cannot be made.
pub async fn replace_with_link(from: &Path, to: &Path) -> std::io::Result<()> {
    match tokio::fs::remove_file(to).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    link_or_copy(from, to).await
}

async fn remove_dir(path: &Path) -> anyhow::Result<()> {
    match tokio::fs::remove_dir_all(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(unix)]
pub(crate) fn links(m: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    m.nlink()
}

#[cfg(not(unix))]
pub(crate) fn links(_m: &std::fs::Metadata) -> u64 {
    2
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
        remove_dir(&self.job_dir(job_id)).await
    }

    async fn adopt(&self, job_id: JobId, path: &SafePath, sha256: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()),
            "not a SHA-256: {sha256:?}"
        );
        let staged = self.file(job_id, path);
        let content = self.content(sha256);
        let known = match tokio::fs::metadata(&content).await {
            Ok(_) => {
                // An entry is only trusted once its bytes are checked against its name.
                let actual = crate::digest(&content, &|_| {}).await?;
                if actual != sha256 {
                    tracing::warn!(%sha256, %actual, "a content entry no longer matches its hash: replaced");
                }
                actual == sha256
            }
            Err(_) => false,
        };
        if known {
            // Known content: the staged copy becomes a link to it (one copy on disk).
            tokio::fs::remove_file(&staged).await?;
            link_or_copy(&content, &staged).await?;
        } else {
            // New (or broken) entry: it becomes a name of the staged file, swapped in whole.
            let tmp = self
                .content_dir()
                .join(format!(".{sha256}.{}", uuid::Uuid::new_v4()));
            link_or_copy(&staged, &tmp).await?;
            tokio::fs::rename(&tmp, &content).await?;
        }
        self.sweep(sha256).await;
        Ok(())
    }

    fn seed_dir(&self, job_id: JobId) -> PathBuf {
        self.root.join(".seeding").join(job_id.to_string())
    }

    async fn keep_for_seeding(&self, job_id: JobId, files: &[SafePath]) -> anyhow::Result<()> {
        for path in files {
            let to = path
                .components()
                .fold(self.seed_dir(job_id), |p, c| p.join(c));
            if tokio::fs::metadata(&to).await.is_ok() {
                continue;
            }
            link_or_copy(&self.file(job_id, path), &to).await?;
        }
        Ok(())
    }

    async fn discard_seed(&self, job_id: JobId) -> anyhow::Result<()> {
        remove_dir(&self.seed_dir(job_id)).await
    }
}

impl LocalStaging {
    /// Drops content entries nothing links to any more (except `keep`).
    async fn sweep(&self, keep: &str) {
        let Ok(mut entries) = tokio::fs::read_dir(self.content_dir()).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            if entry.file_name().to_string_lossy() == keep {
                continue;
            }
            if let Ok(m) = entry.metadata().await
                && m.is_file()
                && links(&m) <= 1
            {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn identical_content_is_kept_once_and_seeding_shares_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStaging::new(dir.path());
        let (a, b) = (JobId::new(), JobId::new());
        let name = SafePath::parse("file.iso").unwrap();
        let sha = sha256_hex(b"same bytes");
        for job in [a, b] {
            let f = s.file(job, &name);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, b"same bytes").unwrap();
            s.adopt(job, &name, &sha).await.unwrap();
        }
        let ma = std::fs::metadata(s.file(a, &name)).unwrap();
        assert_eq!(
            links(&ma),
            3,
            "two jobs and the content entry share one file"
        );
        s.keep_for_seeding(a, std::slice::from_ref(&name))
            .await
            .unwrap();
        s.keep_for_seeding(a, std::slice::from_ref(&name))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(s.seed_dir(a).join("file.iso")).unwrap(),
            b"same bytes"
        );
        s.discard(a).await.unwrap();
        s.discard(b).await.unwrap();
        s.discard_seed(a).await.unwrap();
        // Nothing links to it any more: the next adoption sweeps it away.
        let c = JobId::new();
        let f = s.file(c, &name);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, b"other").unwrap();
        s.adopt(c, &name, &sha256_hex(b"other")).await.unwrap();
        assert!(!s.content(&sha).exists());
        assert!(s.adopt(c, &name, "../../etc").await.is_err());
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    }

    #[tokio::test]
    async fn a_content_entry_that_no_longer_matches_its_hash_is_never_linked() {
        // Issue 8, defect 1: a later job linked to a damaged entry would deliver its damage.
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStaging::new(dir.path());
        let name = SafePath::parse("file.iso").unwrap();
        let sha = sha256_hex(b"the real bytes");
        std::fs::create_dir_all(dir.path().join(".content")).unwrap();
        std::fs::write(s.content(&sha), b"damaged bytes!").unwrap();
        let job = JobId::new();
        let f = s.file(job, &name);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, b"the real bytes").unwrap();
        s.adopt(job, &name, &sha).await.unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"the real bytes");
        assert_eq!(std::fs::read(s.content(&sha)).unwrap(), b"the real bytes");
        assert_eq!(
            links(&std::fs::metadata(&f).unwrap()),
            2,
            "one copy on disk"
        );
    }
}
