//! `LocalStore`: delivered files on this server's disk: the server's own storage, under
//! `{root}/{owner}/{job}/…`, or a folder profile's folder on the shared volume, under
//! `{shared_dir}/{owner}/{path}/{job}/…`, where other programs read them directly.
//!
//! Delivery moves the staged file into place when staging and storage share a file system
//! (instant, no extra space) and copies it otherwise, through a temporary name, so a reader
//! never sees a half-written object. A folder on the shared volume gets a file of its own
//! when the staged one has other names (content store, seeding copy): other programs may
//! write to what they find there, and that must not reach what Ferry shares between jobs.

mod folder;
mod staging;

pub use staging::{LocalStaging, replace_with_link};

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ferry_application::ports::{ObjectLocation, ObjectStore, PutRequest, StoreError, StoredObject};
use ferry_domain::{JobId, OwnerId, StorageKey};
use sha2::{Digest, Sha256};

pub struct LocalStore {
    root: PathBuf,
    layout: Layout,
}

/// How keys map onto files.
enum Layout {
    /// `{owner}/{job}/{path}` → `{root}/{owner}/{job}/{path}`: every owner's files.
    Owners,
    /// `{owner}/{job}/{path}` → `{root}/{job}/{path}`, for `owner`'s keys only. `real` is the
    /// folder's canonical path: folders are created, and files read, only where they resolve
    /// inside it.
    Folder { owner: OwnerId, real: PathBuf },
}

impl LocalStore {
    /// The server's own storage.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            layout: Layout::Owners,
        }
    }

    /// The store of `owner`'s folder `path` on the shared volume: `{shared_dir}/{owner}/{path}`,
    /// checked and created (every component a folder inside `{shared_dir}/{owner}`).
    ///
    /// # Errors
    /// `Unreachable` when `shared_dir` is not there; `FolderRefused` when the folder leads
    /// outside the owner's area (a symbolic link) or a file stands in its way.
    pub async fn folder(
        shared_dir: &Path,
        owner: &OwnerId,
        path: &str,
    ) -> Result<Self, StoreError> {
        let real = folder::prepare(shared_dir, owner, path).await?;
        Ok(Self {
            root: ferry_domain::profile::folder_dir(shared_dir, owner, path),
            layout: Layout::Folder {
                owner: owner.clone(),
                real,
            },
        })
    }

    /// Where the files are: the storage folder, or the profile's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Keys are validated (`StorageKey`), so joining their segments cannot leave `root`. A
    /// folder takes its owner's keys under a job only (never the folder itself).
    fn path(&self, key: &StorageKey) -> Result<PathBuf, StoreError> {
        let mut segments = key.segments();
        if let Layout::Folder { owner, .. } = &self.layout
            && (segments.next() != Some(owner.as_str()) || key.segments().count() < 2)
        {
            return Err(StoreError::Unexpected(anyhow::anyhow!(
                "key {key} is not under {}/ (this folder's owner)",
                owner.as_str()
            )));
        }
        Ok(segments.fold(self.root.clone(), |p, seg| p.join(seg)))
    }

    /// The file of `key` to read: in a folder, only one that resolves inside it.
    async fn existing(&self, key: &StorageKey) -> Result<PathBuf, StoreError> {
        let path = self.path(key)?;
        if let Layout::Folder { real, .. } = &self.layout {
            folder::resolve_within(real, &path).await?;
        }
        Ok(path)
    }

    /// Creates the folder `dest` goes in.
    async fn create_parent(&self, dest: &Path) -> Result<(), StoreError> {
        let Some(parent) = dest.parent() else {
            return Ok(());
        };
        match &self.layout {
            Layout::Owners => tokio::fs::create_dir_all(parent).await.map_err(io),
            Layout::Folder { real, .. } => {
                let below = parent.strip_prefix(&self.root).map_err(|_| {
                    StoreError::Unexpected(anyhow::anyhow!(
                        "{} is outside the folder",
                        parent.display()
                    ))
                })?;
                let segments: Vec<&str> =
                    below.iter().map(|s| s.to_str().unwrap_or("..")).collect();
                folder::create_within(real, real, segments).await.map(drop)
            }
        }
    }

    /// Whether the staged file must be copied rather than moved: in a folder, a file with
    /// other names (content store, seeding copy) is not handed to other programs.
    fn copies(&self, source: &std::fs::Metadata) -> bool {
        matches!(self.layout, Layout::Folder { .. }) && staging::links(source) > 1
    }
}

pub(crate) fn io(e: std::io::Error) -> StoreError {
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
        let dest = self.path(req.key)?;
        let source = match tokio::fs::metadata(req.source).await {
            Ok(m) => m,
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
        let size = source.len();
        let sha256 = digest(req.source, req.progress).await.map_err(io)?;
        self.create_parent(&dest).await?;
        if self.copies(&source) {
            copy_into_place(req.source, &dest).await.map_err(io)?;
            return Ok(StoredObject { size, sha256 });
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
        let path = match self.existing(key).await {
            Ok(path) => path,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        match tokio::fs::metadata(path).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn locate(&self, key: &StorageKey) -> Result<ObjectLocation, StoreError> {
        let path = self.existing(key).await?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(ObjectLocation::LocalFile(path)),
            Ok(_) => Err(StoreError::NotFound),
            Err(e) => Err(io(e)),
        }
    }

    async fn delete_prefix(&self, prefix: &StorageKey) -> Result<(), StoreError> {
        // `remove_dir_all` removes a link, never what it points to.
        let path = self.path(prefix)?;
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

    fn put_req<'a>(key: &'a StorageKey, source: &'a Path, size: u64) -> PutRequest<'a> {
        PutRequest {
            job: JobId::new(),
            key,
            source,
            size,
            progress: &|_| {},
        }
    }

    #[tokio::test]
    async fn a_folder_passes_the_contract() {
        let shared = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let alice = OwnerId::parse("alice").unwrap();
        let store = LocalStore::folder(shared.path(), &alice, "tv/shows")
            .await
            .unwrap();
        assert_eq!(store.root(), shared.path().join("alice/tv/shows"));
        ferry_application::testing::contracts::object_store_contract(
            &store,
            scratch.path(),
            3 << 20,
        )
        .await;
        assert!(
            shared.path().join("alice/tv/shows").is_dir(),
            "deleting a job's files leaves the folder"
        );
    }

    #[tokio::test]
    async fn a_folder_holds_its_owners_jobs_only_and_each_job_in_a_folder_of_its_own() {
        let shared = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let (alice, bob) = (
            OwnerId::parse("alice").unwrap(),
            OwnerId::parse("bob").unwrap(),
        );
        let store = LocalStore::folder(shared.path(), &alice, "tv")
            .await
            .unwrap();
        let bobs = LocalStore::folder(shared.path(), &bob, "tv").await.unwrap();
        let job = JobId::new();
        let path = ferry_domain::SafePath::parse("Show/e01.mkv").unwrap();
        let key = StorageKey::for_file(&alice, job, &path);
        let src = scratch.path().join("e01");
        std::fs::write(&src, b"episode one").unwrap();
        let stored = store.put_file(put_req(&key, &src, 11)).await.unwrap();
        assert_eq!(stored.sha256, hex::encode(Sha256::digest(b"episode one")));
        let file = shared.path().join(format!("alice/tv/{job}/Show/e01.mkv"));
        assert_eq!(std::fs::read(&file).unwrap(), b"episode one");
        assert_eq!(
            store.locate(&key).await.unwrap(),
            ObjectLocation::LocalFile(file.clone())
        );

        // Two owners' `tv` are two folders; one's keys never map into the other's.
        assert_ne!(store.root(), bobs.root());
        let theirs = StorageKey::for_file(&bob, job, &path);
        std::fs::write(&src, b"x").unwrap();
        assert!(matches!(
            store.put_file(put_req(&theirs, &src, 1)).await,
            Err(StoreError::Unexpected(_))
        ));
        assert!(store.size(&theirs).await.is_err());
        assert!(bobs.size(&key).await.is_err());
        assert!(
            store
                .delete_prefix(&StorageKey::parse("alice").unwrap())
                .await
                .is_err()
        );
        assert!(
            store
                .delete_prefix(&StorageKey::job_prefix(&bob, job))
                .await
                .is_err()
        );
        assert!(file.exists());

        // Deleting the job's files removes its folder, not the profile's.
        store
            .delete_prefix(&StorageKey::job_prefix(&alice, job))
            .await
            .unwrap();
        assert!(!shared.path().join(format!("alice/tv/{job}")).exists());
        assert!(shared.path().join("alice/tv").is_dir());
    }

    #[tokio::test]
    async fn a_staged_file_with_other_names_is_copied_into_a_folder() {
        let shared = tempfile::tempdir().unwrap();
        let staging = tempfile::tempdir().unwrap();
        let alice = OwnerId::parse("alice").unwrap();
        let store = LocalStore::folder(shared.path(), &alice, "").await.unwrap();
        // The content store's entry and the job's staged name are one file.
        let entry = staging.path().join("entry");
        let staged = staging.path().join("staged.bin");
        std::fs::write(&entry, b"shared bytes").unwrap();
        std::fs::hard_link(&entry, &staged).unwrap();
        let job = JobId::new();
        let key = StorageKey::for_file(
            &alice,
            job,
            &ferry_domain::SafePath::parse("staged.bin").unwrap(),
        );
        store.put_file(put_req(&key, &staged, 12)).await.unwrap();
        let delivered = shared.path().join(format!("alice/{job}/staged.bin"));
        assert_eq!(staging::links(&std::fs::metadata(&delivered).unwrap()), 1);
        assert!(!staged.exists(), "the staged name is freed");
        // Another program rewriting the delivered file leaves the entry alone.
        std::fs::write(&delivered, b"tags rewritten").unwrap();
        assert_eq!(std::fs::read(&entry).unwrap(), b"shared bytes");
    }

    #[tokio::test]
    async fn links_planted_in_a_folder_lead_nowhere() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("shared");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"not yours").unwrap();
        let alice = OwnerId::parse("alice").unwrap();
        std::fs::create_dir_all(&shared).unwrap();
        let store = LocalStore::folder(&shared, &alice, "tv").await.unwrap();
        let job = JobId::new();
        // A job's folder that is a link out: nothing is written there.
        std::os::unix::fs::symlink(&outside, shared.join(format!("alice/tv/{job}"))).unwrap();
        let key = StorageKey::for_file(
            &alice,
            job,
            &ferry_domain::SafePath::parse("a/b.bin").unwrap(),
        );
        let src = tmp.path().join("src");
        std::fs::write(&src, b"data").unwrap();
        assert!(matches!(
            store.put_file(put_req(&key, &src, 4)).await,
            Err(StoreError::FolderRefused(_))
        ));
        assert!(!outside.join("a").exists());
        // A file that is a link out is not read (nor served).
        let secret = StorageKey::for_file(
            &alice,
            job,
            &ferry_domain::SafePath::parse("secret").unwrap(),
        );
        assert!(matches!(
            store.locate(&secret).await,
            Err(StoreError::FolderRefused(_))
        ));
        assert!(store.size(&secret).await.is_err());
        // Deleting the job's files removes the link, not what it points to.
        store
            .delete_prefix(&StorageKey::job_prefix(&alice, job))
            .await
            .unwrap();
        assert!(outside.join("secret").exists());
        assert!(!shared.join(format!("alice/tv/{job}")).exists());
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
