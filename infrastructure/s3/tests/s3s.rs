//! The `ObjectStore` contract against two S3-compatible servers, each started by the test on
//! its own port: s3s-fs (checks SigV4 signatures) and moto (answers some calls unlike S3:
//! `CompleteMultipartUpload` with another root element).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use ferry_application::ports::{
    ObjectLocation, ObjectStore, PutRequest, StoreError, UploadSessions,
};
use ferry_application::testing::MemorySessions;
use ferry_application::testing::contracts::object_store_contract;
use ferry_domain::{JobId, StorageKey};
use ferry_net::NetGuard;
use ferry_s3::{S3Settings, S3Store};

use ferry_testkit::s3::{ACCESS, S3Server, SECRET};

/// A server of the test's own and the folder it keeps its data in.
struct Server {
    _server: S3Server,
    port: u16,
    _dir: tempfile::TempDir,
}

fn launch(start: fn(&std::path::Path) -> Option<S3Server>) -> Option<Server> {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path())?;
    Some(Server {
        port: server.port,
        _server: server,
        _dir: dir,
    })
}

/// moto's S3 server (`moto_server`, PyPI `moto[server]`), which takes any credentials.
fn start_moto() -> Option<Server> {
    launch(S3Server::moto)
}

/// s3s-fs, which checks SigV4 signatures.
fn start() -> Option<Server> {
    launch(S3Server::s3s_fs)
}

fn settings(port: u16, secret: &str) -> S3Settings {
    S3Settings {
        endpoint: format!("http://127.0.0.1:{port}"),
        region: "us-east-1".into(),
        bucket: "ferry-test".into(),
        prefix: Some("deliveries".into()),
        path_style: true,
        access_key_id: ACCESS.into(),
        secret_access_key: secret.into(),
        part_size: 5 << 20,
        concurrency: 3,
        presign_ttl: Duration::from_secs(600),
    }
}

fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A store on the loopback test server: the guard must allow loopback.
fn open_store(settings: S3Settings, sessions: Arc<dyn UploadSessions>) -> S3Store {
    S3Store::new(settings, sessions, Arc::new(NetGuard::allow_all())).unwrap()
}

#[tokio::test]
async fn moto_passes_the_contract() {
    init();
    let Some(server) = start_moto() else { return };
    let store = open_store(
        settings(server.port, SECRET),
        Arc::new(MemorySessions::default()),
    );
    store.create_bucket_if_missing().await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    // Multipart (three parts): moto's answer to the completion cannot be parsed by the SDK,
    // yet the upload must count as done, once, without aborting it.
    object_store_contract(&store, scratch.path(), (12 << 20) + 7).await;
}

#[tokio::test]
async fn internal_endpoints_are_refused_before_and_while_connecting() {
    init();
    let sessions: Arc<dyn UploadSessions> = Arc::new(MemorySessions::default());
    let closed = Arc::new(NetGuard::default());
    // A literal internal endpoint never reaches a resolver: refused when the store is built.
    assert!(matches!(
        S3Store::new(settings(9, SECRET), sessions.clone(), closed.clone()),
        Err(StoreError::NotAllowed(_))
    ));
    // A name that resolves internally, path style and virtual-hosted.
    let mapped = Arc::new(NetGuard::new(
        ferry_domain::AddressPolicy::default(),
        [
            (
                "s3.internal.example".to_owned(),
                "127.0.0.1".parse().unwrap(),
            ),
            ("public.example".to_owned(), "192.0.2.10".parse().unwrap()),
            (
                "ferry-test.public.example".to_owned(),
                "127.0.0.1".parse().unwrap(),
            ),
        ]
        .into_iter()
        .collect(),
    ));
    for (endpoint, path_style) in [
        ("http://s3.internal.example:9", true),
        ("http://public.example:9", false),
    ] {
        let mut s = settings(9, SECRET);
        s.endpoint = endpoint.to_owned();
        s.path_style = path_style;
        let store = S3Store::new(s, sessions.clone(), mapped.clone()).unwrap();
        let err = store.check().await;
        assert!(
            matches!(err, Err(StoreError::NotAllowed(_))),
            "{endpoint}: {err:?}"
        );
    }
}

#[tokio::test]
async fn s3s_fs_passes_the_contract() {
    init();
    let Some(server) = start() else { return };
    let store = open_store(
        settings(server.port, SECRET),
        Arc::new(MemorySessions::default()),
    );
    store.create_bucket_if_missing().await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    // 12 MiB + 7 bytes: three parts of 5 MiB.
    object_store_contract(&store, scratch.path(), (12 << 20) + 7).await;
}

#[tokio::test]
async fn presigned_links_download_and_wrong_keys_are_auth_failures() {
    init();
    let Some(server) = start() else { return };
    let store = open_store(
        settings(server.port, SECRET),
        Arc::new(MemorySessions::default()),
    );
    store.create_bucket_if_missing().await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("f");
    std::fs::write(&src, b"presigned bytes").unwrap();
    let key = StorageKey::parse("u/j/f.txt").unwrap();
    store
        .put_file(PutRequest {
            job: JobId::new(),
            key: &key,
            source: &src,
            size: 15,
            progress: &|_| {},
        })
        .await
        .unwrap();
    let ObjectLocation::Url(url) = store.locate(&key).await.unwrap() else {
        panic!("not a URL")
    };
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let body = reqwest_get(&url).await;
    assert_eq!(body, b"presigned bytes");

    let wrong = open_store(
        settings(server.port, "not-the-secret"),
        Arc::new(MemorySessions::default()),
    );
    assert!(
        matches!(wrong.check().await, Err(StoreError::AuthFailed(_))),
        "{:?}",
        wrong.check().await
    );
    let nowhere = open_store(settings(1, SECRET), Arc::new(MemorySessions::default()));
    assert!(matches!(
        nowhere.check().await,
        Err(StoreError::Unreachable(_))
    ));
    let mut missing = settings(server.port, SECRET);
    missing.bucket = "no-such-bucket".into();
    let missing = open_store(missing, Arc::new(MemorySessions::default()));
    assert!(
        matches!(missing.check().await, Err(StoreError::Unreachable(_))),
        "{:?}",
        missing.check().await
    );
}

#[tokio::test]
async fn an_interrupted_multipart_upload_is_resumed_not_restarted() {
    init();
    let Some(server) = start() else { return };
    let sessions = Arc::new(MemorySessions::default());
    let store = open_store(settings(server.port, SECRET), sessions.clone());
    store.create_bucket_if_missing().await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("big.bin");
    let data: Vec<u8> = (0..(16 << 20) + 3).map(|i: u32| (i % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let key = StorageKey::parse("u/j/big.bin").unwrap();
    let job = JobId::new();
    // The first attempt dies after some parts (the future is dropped, like a killed worker).
    let seen = std::sync::atomic::AtomicU64::new(0);
    let report = |n: u64| {
        seen.store(n, std::sync::atomic::Ordering::Relaxed);
    };
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
            () = tokio::time::sleep(Duration::from_millis(5)) => {
                if seen.load(std::sync::atomic::Ordering::Relaxed) >= 5 << 20 { break; }
            }
        }
    }
    drop(first); // like a killed worker: the upload stops mid-way
    let upload = sessions
        .get(job, key.as_str())
        .await
        .unwrap()
        .expect("the upload id is remembered");
    // The second attempt resumes it: its progress starts at the parts already there.
    let starts = std::sync::atomic::AtomicU64::new(u64::MAX);
    let report = |n: u64| {
        let _ = starts.compare_exchange(
            u64::MAX,
            n,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
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
        starts.load(std::sync::atomic::Ordering::Relaxed) >= 5 << 20,
        "resumed after the parts already sent"
    );
    assert_eq!(stored.size, data.len() as u64);
    {
        use sha2::Digest;
        assert_eq!(stored.sha256, hex::encode(sha2::Sha256::digest(&data)));
    }
    assert_eq!(
        sessions.get(job, key.as_str()).await.unwrap(),
        None,
        "session forgotten once complete"
    );
    let ObjectLocation::Url(url) = store.locate(&key).await.unwrap() else {
        panic!()
    };
    assert_eq!(reqwest_get(&url).await, data);
    let _ = upload;
}

async fn reqwest_get(url: &str) -> Vec<u8> {
    let out = tokio::process::Command::new("curl")
        .args(["-sf", url])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "curl {url} failed");
    out.stdout
}
