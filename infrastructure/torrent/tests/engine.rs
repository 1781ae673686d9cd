//! The `TorrentEngine` contract against the real librqbit session.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_application::testing::contracts::{EngineFixture, torrent_engine_contract};
use ferry_domain::SafePath;
use ferry_local_storage::LocalStaging;
use ferry_torrent::{EngineConfig, Inspector, RqbitEngine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librqbit_passes_the_contract() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    // Content to make a torrent of: a folder with two files.
    let content = dir.path().join("content").join("album");
    std::fs::create_dir_all(content.join("cd1")).unwrap();
    let a: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let b = b"liner notes".to_vec();
    std::fs::write(content.join("cd1/a.bin"), &a).unwrap();
    std::fs::write(content.join("notes.txt"), &b).unwrap();
    let created = librqbit::create_torrent(
        &content,
        librqbit::CreateTorrentOptions {
            name: None,
            trackers: vec![],
            piece_length: Some(65536),
        },
        &librqbit::spawn_utils::BlockingSpawner::new(2),
    )
    .await
    .unwrap();
    let metainfo = created.as_bytes().unwrap().to_vec();
    let fixture = EngineFixture {
        metainfo,
        files: vec![
            (SafePath::parse("album/cd1/a.bin").unwrap(), a),
            (SafePath::parse("album/notes.txt").unwrap(), b),
        ],
    };
    let engine = RqbitEngine::start(EngineConfig {
        staging_dir: dir.path().join("staging"),
        listen: None,
        dht: false,
        lsd: false,
        upnp: false,
        download_limit_bps: None,
        upload_limit_bps: None,
        peer_limit: None,
        peer_policy: ferry_domain::AddressPolicy::default(),
    })
    .await
    .unwrap();
    let staging = LocalStaging::new(dir.path().join("staging"));
    torrent_engine_contract(&engine, &Inspector, &staging, &fixture).await;
    engine.shutdown().await;
}
