//! `LocalStore`: delivered files on this server's disk, under `{root}/{owner}/{job}/…`.
//!
//! Delivery moves the staged file into place when staging and storage share a file system
//! (instant, no extra space) and copies it otherwise, through a temporary name, so a reader
//! never sees a half-written object.

mod staging;

pub use staging::{LocalStaging, replace_with_link};

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ferry_application::ports::{ObjectLocation, ObjectStore, PutRequest, StoreError, StoredObject};
use ferry_domain::{JobId, StorageKey};
use sha2::{Digest, Sha256};

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Keys are validated (`StorageKey`), so joining their segments cannot leave `root`.
    fn path(&self, key: &StorageKey) -> PathBuf {
        key.segments().fold(self.root.clone(), |p, seg| p.join(seg))
    }
}

fn io(e: std::io::Error) -> StoreError {
    match e.kind() {
        ErrorKind::NotFound => StoreError::NotFound,
        _ => StoreError::Unexpected(e.into()),
    }
}

async fn copy_into_place(source: &Path, dest: &Path) -> std::io::Result<u64> {
    let tmp = dest.with_extension("ferry-partial");
    let copied = async {
        let n = tokio::fs::copy(source, &tmp).await?;
        tokio::fs::File::open(&tmp).await?.sync_all().await?;
        tokio::fs::rename(&tmp, dest).await?;
        Ok::<_, std::io::Error>(n)
    }
    .await;
    if copied.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    let n = copied?;
    let _ = tokio::fs::remove_file(source).await;
    Ok(n)
}

/// SHA-256 of a file, reading it on a blocking thread, reporting bytes read.
pub(crate) async fn digest(
    path: &Path,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> std::io::Result<String> {
    use std::io::Read;
    let path = path.to_owned();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            total += n as u64;
            let _ = tx.send(total);
        }
        Ok::<_, std::io::Error>(hex::encode(hasher.finalize()))
    });
    while let Some(n) = rx.recv().await {
        progress(n);
    }
    task.await.map_err(std::io::Error::other)?
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_file(&self, req: PutRequest<'_>) -> Result<StoredObject, StoreError> {
        let dest = self.path(req.key);
        let size = match tokio::fs::metadata(req.source).await {
            Ok(m) => m.len(),
            // A retry after the file was moved into place but before it was recorded.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return match tokio::fs::metadata(&dest).await {
                    Ok(m) if m.is_file() && m.len() == req.size => {
                        let sha256 = digest(&dest, req.progress).await.map_err(io)?;
                        Ok(StoredObject {
                            size: m.len(),
                            sha256,
                        })
                    }
                    _ => Err(StoreError::NotFound),
                };
            }
            Err(e) => return Err(io(e)),
        };
        let sha256 = digest(req.source, req.progress).await.map_err(io)?;
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        match tokio::fs::rename(req.source, &dest).await {
            Ok(()) => {}
            // EXDEV (18): staging is on another file system.
            Err(e) if e.raw_os_error() == Some(18) => {
                copy_into_place(req.source, &dest).await.map_err(io)?;
            }
            Err(e) => return Err(io(e)),
        }
        Ok(StoredObject { size, sha256 })
    }

    async fn abort_uploads(&self, _job: JobId) -> Result<(), StoreError> {
        // Local delivery has no unfinished uploads to abort.
        Ok(())
    }

    async fn size(&self, key: &StorageKey) -> Result<Option<u64>, StoreError> {
        match tokio::fs::metadata(self.path(key)).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn locate(&self, key: &StorageKey) -> Result<ObjectLocation, StoreError> {
        let path = self.path(key);
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(ObjectLocation::LocalFile(path)),
            Ok(_) => Err(StoreError::NotFound),
            Err(e) => Err(io(e)),
        }
    }

    async fn delete_prefix(&self, prefix: &StorageKey) -> Result<(), StoreError> {
        let path = self.path(prefix);
        let result = match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(&path).await,
            Ok(_) => tokio::fs::remove_file(&path).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        let unreachable =
            |e: std::io::Error| StoreError::Unreachable(format!("{}: {e}", self.root.display()));
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(unreachable)?;
        // A name of this check's own: processes sharing the volume start at the same time,
        // and one's removal must not fail another's check.
        let probe = self.root.join(format!(
            ".ferry-write-check-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        tokio::fs::write(&probe, b"ok").await.map_err(unreachable)?;
        tokio::fs::remove_file(&probe).await.map_err(unreachable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn passes_the_contract() {
        let root = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let store = LocalStore::new(root.path().join("storage"));
        ferry_application::testing::contracts::object_store_contract(
            &store,
            scratch.path(),
            3 << 20,
        )
        .await;
    }

    #[tokio::test]
    async fn copies_across_file_systems_without_leaving_partials() {
        // /dev/shm is a tmpfs on Linux: a rename from there into a disk folder is EXDEV.
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            return;
        }
        let src_dir = tempfile::tempdir_in(shm).unwrap();
        let root = tempfile::tempdir().unwrap();
        let src = src_dir.path().join("big.bin");
        std::fs::write(&src, vec![1u8; 3 << 20]).unwrap();
        let store = LocalStore::new(root.path());
        let key = StorageKey::parse("u/j/big.bin").unwrap();
        let req = PutRequest {
            job: JobId::new(),
            key: &key,
            source: &src,
            size: 3 << 20,
            progress: &|_| {},
        };
        let stored = store.put_file(req).await.unwrap();
        assert_eq!(stored.size, 3 << 20);
        assert_eq!(
            stored.sha256,
            hex::encode(Sha256::digest(vec![1u8; 3 << 20]))
        );
        // A retry after the move: the source is gone, the object is complete.
        let req = PutRequest {
            job: JobId::new(),
            key: &key,
            source: &src,
            size: 3 << 20,
            progress: &|_| {},
        };
        assert_eq!(store.put_file(req).await.unwrap(), stored);
        assert!(!src.exists(), "the staged copy is freed");
        let stored = root.path().join("u/j/big.bin");
        assert_eq!(std::fs::read(&stored).unwrap(), vec![1u8; 3 << 20]);
        assert!(!root.path().join("u/j/big.ferry-partial").exists());
    }

    #[tokio::test]
    async fn an_unwritable_root_is_reported_unreachable() {
        let store = LocalStore::new("/proc/ferry-cannot-write-here");
        assert!(matches!(
            store.check().await,
            Err(StoreError::Unreachable(_))
        ));
    }
}
