//! `LocalStore`: delivered files on this server's disk, under `{root}/{owner}/{job}/…`.
//!
//! Delivery moves the staged file into place when staging and storage share a file system
//! (instant, no extra space) and copies it otherwise, through a temporary name, so a reader
//! never sees a half-written object.

mod staging;

pub use staging::LocalStaging;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ferry_application::ports::{ObjectLocation, ObjectStore, StoreError};
use ferry_domain::StorageKey;

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

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_file(&self, key: &StorageKey, source: &Path) -> Result<u64, StoreError> {
        let size = tokio::fs::metadata(source).await.map_err(io)?.len();
        let dest = self.path(key);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        match tokio::fs::rename(source, &dest).await {
            Ok(()) => Ok(size),
            // EXDEV (18): staging is on another file system.
            Err(e) if e.raw_os_error() == Some(18) => {
                copy_into_place(source, &dest).await.map_err(io)
            }
            Err(e) => Err(io(e)),
        }
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
        let probe = self.root.join(".ferry-write-check");
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
        ferry_application::testing::contracts::object_store_contract(&store, scratch.path()).await;
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
        assert_eq!(store.put_file(&key, &src).await.unwrap(), 3 << 20);
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
