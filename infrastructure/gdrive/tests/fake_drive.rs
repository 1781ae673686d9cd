//! The `ObjectStore` contract on the Drive adapter, against a local server speaking the
//! Drive v3 protocol (Google's servers cannot be reached here).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_application::ports::{
    ObjectLocation, ObjectStore, PutRequest, StoreError, UploadSessions,
};
use ferry_application::testing::MemorySessions;
use ferry_application::testing::contracts::object_store_contract;
use ferry_domain::{JobId, StorageKey};
use ferry_gdrive::fake::FakeDrive;
use ferry_gdrive::{CHUNK_UNIT, DriveSettings, DriveStore};
use ferry_net::NetGuard;

fn settings(drive: &FakeDrive, refresh: &str, folder: &str) -> DriveSettings {
    DriveSettings {
        api_url: drive.url.parse().unwrap(),
        token_url: drive.token_url().parse().unwrap(),
        client_id: "ferry-client".into(),
        client_secret: "ferry-client-secret".into(),
        refresh_token: refresh.into(),
        folder_id: folder.into(),
        chunk_size: CHUNK_UNIT,
    }
}

fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The fake server runs on loopback: a guard that allows it.
fn open() -> Arc<NetGuard> {
    Arc::new(NetGuard::allow_all())
}

#[tokio::test]
async fn internal_addresses_are_refused_unless_allowed() {
    init();
    let drive = FakeDrive::start("refresh-1").await;
    let closed = Arc::new(NetGuard::default());
    assert!(matches!(
        DriveStore::new(
            settings(&drive, "refresh-1", &drive.root_folder),
            Arc::new(MemorySessions::default()),
            closed,
        )
        .err(),
        Some(StoreError::NotAllowed(_))
    ));
    // A name that resolves to the loopback server is refused when it connects.
    let mapped = Arc::new(NetGuard::new(
        ferry_domain::AddressPolicy::default(),
        [(
            "drive.internal.example".to_owned(),
            "127.0.0.1".parse().unwrap(),
        )]
        .into_iter()
        .collect(),
    ));
    let mut named = settings(&drive, "refresh-1", &drive.root_folder);
    named
        .api_url
        .set_host(Some("drive.internal.example"))
        .unwrap();
    named
        .token_url
        .set_host(Some("drive.internal.example"))
        .unwrap();
    let store = DriveStore::new(named, Arc::new(MemorySessions::default()), mapped).unwrap();
    let err = store.check().await;
    assert!(matches!(err, Err(StoreError::NotAllowed(_))), "{err:?}");
}

#[tokio::test]
async fn the_drive_adapter_passes_the_contract() {
    init();
    let drive = FakeDrive::start("refresh-1").await;
    let store = DriveStore::new(
        settings(&drive, "refresh-1", &drive.root_folder),
        Arc::new(MemorySessions::default()),
        open(),
    )
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    object_store_contract(&store, scratch.path(), 3 * CHUNK_UNIT as usize + 11).await;
    assert_eq!(drive.open_sessions(), 0);
}

#[tokio::test]
async fn files_mirror_the_tree_and_links_point_at_drive() {
    init();
    let drive = FakeDrive::start("refresh-1").await;
    let store = DriveStore::new(
        settings(&drive, "refresh-1", &drive.root_folder),
        Arc::new(MemorySessions::default()),
        open(),
    )
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("f");
    std::fs::write(&src, b"tree").unwrap();
    let key = StorageKey::parse("alice/job1/album/cd1/track.flac").unwrap();
    store
        .put_file(PutRequest {
            job: JobId::new(),
            key: &key,
            source: &src,
            size: 4,
            progress: &|_| {},
        })
        .await
        .unwrap();
    assert_eq!(
        drive
            .content(&["alice", "job1", "album", "cd1", "track.flac"])
            .unwrap(),
        b"tree"
    );
    let ObjectLocation::Url(link) = store.locate(&key).await.unwrap() else {
        panic!()
    };
    assert!(link.contains("/view"), "{link}");
    // An empty file is a file too.
    let empty = scratch.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let key = StorageKey::parse("alice/job1/empty.txt").unwrap();
    let stored = store
        .put_file(PutRequest {
            job: JobId::new(),
            key: &key,
            source: &empty,
            size: 0,
            progress: &|_| {},
        })
        .await
        .unwrap();
    assert_eq!(stored.size, 0);
    assert_eq!(drive.content(&["alice", "job1", "empty.txt"]).unwrap(), b"");
}

#[tokio::test]
async fn bad_credentials_and_missing_folders_are_reported_clearly() {
    init();
    let drive = FakeDrive::start("refresh-1").await;
    let revoked = DriveStore::new(
        settings(&drive, "revoked", &drive.root_folder),
        Arc::new(MemorySessions::default()),
        open(),
    )
    .unwrap();
    assert!(
        matches!(revoked.check().await, Err(StoreError::AuthFailed(_))),
        "{:?}",
        revoked.check().await
    );
    let nowhere = DriveStore::new(
        settings(&drive, "refresh-1", "no-such-folder"),
        Arc::new(MemorySessions::default()),
        open(),
    )
    .unwrap();
    assert!(matches!(
        nowhere.check().await,
        Err(StoreError::Unreachable(_))
    ));
    let mut down = settings(&drive, "refresh-1", &drive.root_folder);
    down.token_url = "http://127.0.0.1:9/token".parse().unwrap();
    let down = DriveStore::new(down, Arc::new(MemorySessions::default()), open()).unwrap();
    assert!(matches!(
        down.check().await,
        Err(StoreError::Unreachable(_))
    ));
}

#[tokio::test]
async fn an_interrupted_upload_resumes_from_the_session() {
    init();
    let drive = FakeDrive::start("refresh-1").await;
    let sessions = Arc::new(MemorySessions::default());
    let store = DriveStore::new(
        settings(&drive, "refresh-1", &drive.root_folder),
        sessions.clone(),
        open(),
    )
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("big.bin");
    let data: Vec<u8> = (0..(10 * CHUNK_UNIT as usize + 123))
        .map(|i| (i % 247) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let key = StorageKey::parse("alice/job/big.bin").unwrap();
    let job = JobId::new();
    let seen = AtomicU64::new(0);
    let report = |n: u64| seen.store(n, Ordering::Relaxed);
    let mut first = Box::pin(store.put_file(PutRequest {
        job,
        key: &key,
        source: &src,
        size: data.len() as u64,
        progress: &report,
    }));
    loop {
        tokio::select! {
            r = &mut first => panic!("finished too early: {r:?}"),
            () = tokio::time::sleep(Duration::from_millis(1)) => {
                if seen.load(Ordering::Relaxed) >= 3 * CHUNK_UNIT { break; }
            }
        }
    }
    drop(first); // the worker dies mid-upload
    assert!(
        sessions.get(job, key.as_str()).await.unwrap().is_some(),
        "the session URI is remembered"
    );
    let chunks_before = drive.chunks();
    let start = AtomicU64::new(u64::MAX);
    let report = |n: u64| {
        let _ = start.compare_exchange(u64::MAX, n, Ordering::Relaxed, Ordering::Relaxed);
    };
    let stored = store
        .put_file(PutRequest {
            job,
            key: &key,
            source: &src,
            size: data.len() as u64,
            progress: &report,
        })
        .await
        .unwrap();
    assert!(
        start.load(Ordering::Relaxed) >= 3 * CHUNK_UNIT,
        "resumed where the session was"
    );
    assert!(
        drive.chunks() - chunks_before <= 8,
        "only the rest was sent"
    );
    {
        use sha2::Digest;
        assert_eq!(stored.sha256, hex::encode(sha2::Sha256::digest(&data)));
    }
    assert_eq!(drive.content(&["alice", "job", "big.bin"]).unwrap(), data);
    assert_eq!(sessions.get(job, key.as_str()).await.unwrap(), None);
    assert_eq!(drive.file_count(), 1);
}
