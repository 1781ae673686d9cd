//! The `TorrentEngine` contract against the real librqbit session.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_application::testing::contracts::{
    EngineFixture, finished_within, torrent_engine_contract,
};
use ferry_domain::SafePath;
use ferry_local_storage::LocalStaging;
use ferry_torrent::{EngineConfig, Inspector, RqbitEngine};

/// A torrent (64 KiB pieces, no trackers) of a file or folder, made by librqbit.
async fn metainfo_of(path: &std::path::Path) -> Vec<u8> {
    let created = librqbit::create_torrent(
        path,
        librqbit::CreateTorrentOptions {
            name: None,
            trackers: vec![],
            piece_length: Some(65536),
        },
        &librqbit::spawn_utils::BlockingSpawner::new(2),
    )
    .await
    .unwrap();
    created.as_bytes().unwrap().to_vec()
}

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
    let metainfo = metainfo_of(&content).await;
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
        max_connections: None,
        peer_policy: ferry_domain::AddressPolicy::default(),
        proxy: None,
        proxy_required: false,
        peer_blocklist: Vec::new(),
    })
    .await
    .unwrap();
    let staging = LocalStaging::new(dir.path().join("staging"));
    torrent_engine_contract(&engine, &Inspector, &staging, &fixture).await;
    // Every job let go of the torrent: the engine's copy of its data is gone.
    let torrents = dir.path().join("staging/.torrents");
    let left: Vec<_> = std::fs::read_dir(&torrents)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "torrent data left behind: {left:?}");
    engine.shutdown().await;
}

fn engine_config(staging: std::path::PathBuf, listen: bool) -> EngineConfig {
    EngineConfig {
        staging_dir: staging,
        listen: listen.then(|| "127.0.0.1:0".parse().unwrap()),
        dht: false,
        lsd: false,
        upnp: false,
        download_limit_bps: None,
        upload_limit_bps: None,
        peer_limit: None,
        max_connections: None,
        peer_policy: ferry_domain::AddressPolicy {
            allow: vec!["127.0.0.1/32".parse().unwrap()],
        },
        proxy: None,
        proxy_required: false,
        peer_blocklist: Vec::new(),
    }
}

/// Issue 8, defect 1: a staged file with another name (a delivered copy, a content entry)
/// is repaired from peers without the other name changing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repairing_a_file_never_writes_through_its_other_names() {
    use ferry_application::ports::{Staging, TorrentEngine, TorrentSpec};
    use std::time::Duration;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("seed");
    std::fs::create_dir_all(&content).unwrap();
    let data: Vec<u8> = (0..400_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(content.join("movie.bin"), &data).unwrap();
    let metainfo = metainfo_of(&content.join("movie.bin")).await;

    let seeder = RqbitEngine::start(engine_config(dir.path().join("s-staging"), true))
        .await
        .unwrap();
    let seed_job = ferry_domain::JobId::new();
    seeder
        .start(TorrentSpec {
            job_id: seed_job,
            metainfo: metainfo.clone(),
            only_files: None,
            peers: vec![],
            data_dir: Some(content.clone()),
            limits: Default::default(),
        })
        .await
        .unwrap();

    // The downloader has the file with its first piece damaged, and the same file has
    // another name (as a delivered copy would).
    let leecher = RqbitEngine::start(engine_config(dir.path().join("l-staging"), true))
        .await
        .unwrap();
    let staging = LocalStaging::new(dir.path().join("l-staging"));
    let job = ferry_domain::JobId::new();
    let name = SafePath::parse("movie.bin").unwrap();
    let staged = staging.file(job, &name);
    std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
    let mut damaged = data.clone();
    damaged[..1000].fill(0xAA);
    std::fs::write(&staged, &damaged).unwrap();
    let delivered = dir.path().join("delivered-movie.bin");
    std::fs::hard_link(&staged, &delivered).unwrap();

    leecher
        .start(TorrentSpec {
            job_id: job,
            metainfo,
            only_files: None,
            peers: vec![seeder.listen_addr().unwrap()],
            data_dir: None,
            limits: Default::default(),
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = leecher.stats(job).await.unwrap();
        if s.finished {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never repaired: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    leecher.hand_over(job).await.unwrap();
    assert!(
        std::fs::read(staging.file(job, &name)).unwrap() == data,
        "repaired"
    );
    assert!(
        std::fs::read(&delivered).unwrap() == damaged,
        "the other name was written through"
    );
    leecher.shutdown().await;
    seeder.stop(seed_job, false).await.unwrap();
    seeder.shutdown().await;
}

/// Torrent workers may share one staging volume: two engines never run a torrent in one
/// folder, and each cleans up its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_one_staging_volume_never_share_a_folder() {
    use ferry_application::ports::{TorrentEngine, TorrentSpec};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("f.bin"), vec![7u8; 100_000]).unwrap();
    let metainfo = metainfo_of(&content.join("f.bin")).await;
    let hash = ferry_torrent::inspect(&metainfo)
        .unwrap()
        .info_hash
        .to_hex();
    let staging = dir.path().join("staging");
    let one = RqbitEngine::start(engine_config(staging.clone(), false))
        .await
        .unwrap();
    let two = RqbitEngine::start(engine_config(staging.clone(), false))
        .await
        .unwrap();
    let (a, b) = (ferry_domain::JobId::new(), ferry_domain::JobId::new());
    let spec = |job| TorrentSpec {
        job_id: job,
        metainfo: metainfo.clone(),
        only_files: None,
        peers: vec![],
        data_dir: None,
        limits: Default::default(),
    };
    one.start(spec(a)).await.unwrap();
    two.start(spec(b)).await.unwrap();
    let torrents = staging.join(".torrents");
    assert!(
        torrents
            .join(&hash)
            .join("jobs")
            .join(a.to_string())
            .exists()
    );
    assert!(
        torrents
            .join(format!("{hash}.{b}"))
            .join("jobs")
            .join(b.to_string())
            .exists(),
        "the second engine runs its job in a folder of its own"
    );
    assert!(
        !torrents
            .join(&hash)
            .join("jobs")
            .join(b.to_string())
            .exists()
    );
    one.stop(a, true).await.unwrap();
    two.stop(b, true).await.unwrap();
    let left: Vec<_> = std::fs::read_dir(&torrents)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "torrent data left behind: {left:?}");
    one.shutdown().await;
    two.shutdown().await;
}

/// A download of a torrent this engine seeds takes the seed's files when the seed has them
/// all; a seed of a torrent a job downloads waits (`Busy`) rather than share its folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_and_seeds_of_one_torrent_never_write_each_others_folders() {
    use ferry_application::ports::{EngineError, Staging, TorrentEngine, TorrentSpec};
    use std::time::Duration;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("seed");
    std::fs::create_dir_all(&content).unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 239) as u8).collect();
    std::fs::write(content.join("f.bin"), &data).unwrap();
    let metainfo = metainfo_of(&content.join("f.bin")).await;
    let staging_dir = dir.path().join("staging");
    let engine = RqbitEngine::start(engine_config(staging_dir.clone(), false))
        .await
        .unwrap();
    let staging = LocalStaging::new(&staging_dir);
    let spec = |job, data_dir: Option<std::path::PathBuf>| TorrentSpec {
        job_id: job,
        metainfo: metainfo.clone(),
        only_files: None,
        peers: vec![],
        data_dir,
        limits: Default::default(),
    };
    let until_finished = |job| {
        let engine = &engine;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !engine.stats(job).await.unwrap().finished {
                assert!(tokio::time::Instant::now() < deadline, "never finished");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    let seed = ferry_domain::JobId::new();
    engine
        .start(spec(seed, Some(content.clone())))
        .await
        .unwrap();
    until_finished(seed).await;
    let download = ferry_domain::JobId::new();
    engine.start(spec(download, None)).await.unwrap();
    until_finished(download).await;
    engine.hand_over(download).await.unwrap();
    let name = SafePath::parse("f.bin").unwrap();
    assert!(std::fs::read(staging.file(download, &name)).unwrap() == data);
    assert!(
        engine.stats(seed).await.unwrap().finished,
        "the seed runs on"
    );
    engine.stop(seed, false).await.unwrap();

    // A download with nothing yet; a seed of the same torrent now waits for it.
    let other = ferry_domain::JobId::new();
    engine.start(spec(other, None)).await.unwrap();
    let second_seed = ferry_domain::JobId::new();
    assert!(matches!(
        engine.start(spec(second_seed, Some(content.clone()))).await,
        Err(EngineError::Busy)
    ));
    engine.stop(other, true).await.unwrap();
    engine
        .start(spec(second_seed, Some(content.clone())))
        .await
        .unwrap();
    engine.stop(second_seed, false).await.unwrap();
    let left: Vec<_> = std::fs::read_dir(staging_dir.join(".torrents"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "torrent data left behind: {left:?}");
    assert!(
        std::fs::read(content.join("f.bin")).unwrap() == data,
        "the seed's file is intact"
    );
    engine.shutdown().await;
}

/// A private tracker's announce URL names its user: jobs whose torrents announce to other
/// trackers never share a run (the second waits: `Busy`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_announcing_to_other_trackers_never_share_a_run() {
    use ferry_application::ports::{EngineError, TorrentEngine, TorrentSpec};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.bin");
    std::fs::write(&file, vec![3u8; 100_000]).unwrap();
    let with_tracker = |tracker: &'static str| {
        let file = file.clone();
        async move {
            let created = librqbit::create_torrent(
                &file,
                librqbit::CreateTorrentOptions {
                    name: None,
                    trackers: vec![tracker.to_owned()],
                    piece_length: Some(65536),
                },
                &librqbit::spawn_utils::BlockingSpawner::new(2),
            )
            .await
            .unwrap();
            created.as_bytes().unwrap().to_vec()
        }
    };
    let alices = with_tracker("http://tracker.example/announce?passkey=alice").await;
    let bobs = with_tracker("http://tracker.example/announce?passkey=bob").await;
    assert_eq!(
        ferry_torrent::inspect(&alices).unwrap().info_hash,
        ferry_torrent::inspect(&bobs).unwrap().info_hash
    );
    let engine = RqbitEngine::start(engine_config(dir.path().join("staging"), false))
        .await
        .unwrap();
    let spec = |job, metainfo: &Vec<u8>| TorrentSpec {
        job_id: job,
        metainfo: metainfo.clone(),
        only_files: None,
        peers: vec![],
        data_dir: None,
        limits: Default::default(),
    };
    let (a, b, c) = (
        ferry_domain::JobId::new(),
        ferry_domain::JobId::new(),
        ferry_domain::JobId::new(),
    );
    engine.start(spec(a, &alices)).await.unwrap();
    assert!(matches!(
        engine.start(spec(b, &bobs)).await,
        Err(EngineError::Busy)
    ));
    // The same trackers share.
    engine.start(spec(c, &alices)).await.unwrap();
    engine.stop(a, true).await.unwrap();
    engine.stop(c, true).await.unwrap();
    // Once the other run ended, the waiting job starts.
    engine.start(spec(b, &bobs)).await.unwrap();
    engine.stop(b, true).await.unwrap();
    engine.shutdown().await;
}

/// A zero-length file between two files that share a piece: the file after it gets that
/// piece's bytes too, so a job of the whole torrent, or of that file alone, finishes
/// (vendored librqbit, `FERRY-PATCH.md` change 6; before it, the job stayed at 95 %).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_after_an_empty_file_finishes() {
    use ferry_application::ports::{Staging, TorrentEngine, TorrentSpec};
    use ferry_torrent::testing::{B, encode, s};
    use std::time::Duration;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    // `a.bin` ends inside the second piece, where `c.bin` begins; `b.nfo` lies between.
    let files: [(&str, Vec<u8>); 3] = [
        ("a.bin", (0..100_000u32).map(|i| (i % 251) as u8).collect()),
        ("b.nfo", Vec::new()),
        ("c.bin", (0..200_000u32).map(|i| (i % 239) as u8).collect()),
    ];
    let content = dir.path().join("seed");
    std::fs::create_dir_all(content.join("album")).unwrap();
    let mut all = Vec::new();
    for (name, bytes) in &files {
        std::fs::write(content.join("album").join(name), bytes).unwrap();
        all.extend_from_slice(bytes);
    }
    let piece = 65_536usize;
    let pieces: Vec<u8> = all
        .chunks(piece)
        .flat_map(|p| {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, p)
                .as_ref()
                .to_vec()
        })
        .collect();
    let list = files
        .iter()
        .map(|(name, bytes)| {
            B::Dict(vec![
                ("length", B::Int(bytes.len() as i64)),
                ("path", B::List(vec![s(name)])),
            ])
        })
        .collect();
    let metainfo = encode(&B::Dict(vec![(
        "info",
        B::Dict(vec![
            ("name", s("album")),
            ("piece length", B::Int(piece as i64)),
            ("pieces", B::Str(pieces)),
            ("files", B::List(list)),
        ]),
    )]));

    let seeder = RqbitEngine::start(engine_config(dir.path().join("s-staging"), true))
        .await
        .unwrap();
    let seed_job = ferry_domain::JobId::new();
    let spec = |job_id, only_files, peers, data_dir| TorrentSpec {
        job_id,
        metainfo: metainfo.clone(),
        only_files,
        peers,
        data_dir,
        limits: Default::default(),
    };
    seeder
        .start(spec(seed_job, None, vec![], Some(content.clone())))
        .await
        .unwrap();
    let leecher = RqbitEngine::start(engine_config(dir.path().join("l-staging"), true))
        .await
        .unwrap();
    let staging = LocalStaging::new(dir.path().join("l-staging"));
    let peers = vec![seeder.listen_addr().unwrap()];
    // The whole torrent, then `c.bin` alone.
    for (only, wanted) in [(None, vec![0, 1, 2]), (Some(vec![2]), vec![2])] {
        let job = ferry_domain::JobId::new();
        leecher
            .start(spec(job, only, peers.clone(), None))
            .await
            .unwrap();
        let total: u64 = wanted.iter().map(|&i| files[i].1.len() as u64).sum();
        let s = finished_within(&leecher, job, Duration::from_secs(60)).await;
        assert_eq!(
            (s.bytes_done, s.bytes_total),
            (total, total),
            "{wanted:?}: {s:?}"
        );
        leecher.hand_over(job).await.unwrap();
        for i in wanted {
            let (name, bytes) = &files[i];
            let path = SafePath::parse(&format!("album/{name}")).unwrap();
            assert!(
                std::fs::read(staging.file(job, &path)).unwrap() == *bytes,
                "{name}"
            );
        }
    }
    leecher.shutdown().await;
    seeder.stop(seed_job, false).await.unwrap();
    seeder.shutdown().await;
}

/// A seeding engine (listening on loopback) of one file of `bytes` under `dir`, and the
/// torrent's metainfo: what a download or a raw peer connection is tested against.
async fn seeding_engine(
    dir: &std::path::Path,
    bytes: &[u8],
) -> (RqbitEngine, Vec<u8>, ferry_domain::InfoHash) {
    use ferry_application::ports::{TorrentEngine, TorrentSpec};
    let content = dir.join("seed").join("clip.bin");
    std::fs::create_dir_all(content.parent().unwrap()).unwrap();
    std::fs::write(&content, bytes).unwrap();
    let metainfo = metainfo_of(&content).await;
    let info_hash = ferry_torrent::inspect(&metainfo).unwrap().info_hash;
    let seeder = RqbitEngine::start(engine_config(dir.join("s-staging"), true))
        .await
        .unwrap();
    seeder
        .start(TorrentSpec {
            job_id: ferry_domain::JobId::new(),
            metainfo: metainfo.clone(),
            only_files: None,
            peers: vec![],
            data_dir: Some(content.parent().unwrap().to_path_buf()),
            limits: Default::default(),
        })
        .await
        .unwrap();
    (seeder, metainfo, info_hash)
}

/// A download of `metainfo` for `job_id` with no peers of its own, into the engine's staging.
fn download_spec(
    job_id: ferry_domain::JobId,
    metainfo: &[u8],
) -> ferry_application::ports::TorrentSpec {
    ferry_application::ports::TorrentSpec {
        job_id,
        metainfo: metainfo.to_vec(),
        only_files: None,
        peers: vec![],
        data_dir: None,
        limits: Default::default(),
    }
}

/// The peers a magnet's resolution found go to its download: it connects to them at once,
/// even when nothing else (no tracker, no DHT, no `x.pe` of its own) would find them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_starts_with_the_peers_its_magnet_was_resolved_from() {
    use ferry_application::ports::TorrentEngine;
    use std::time::Duration;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..400_000u32).map(|i| (i % 241) as u8).collect();
    let (seeder, metainfo, info_hash) = seeding_engine(dir.path(), &bytes).await;
    let leecher = RqbitEngine::start(engine_config(dir.path().join("l-staging"), true))
        .await
        .unwrap();
    let magnet = ferry_domain::MagnetLink::parse(&format!(
        "magnet:?xt=urn:btih:{}&x.pe={}",
        info_hash.to_hex(),
        seeder.listen_addr().unwrap()
    ))
    .unwrap();
    let meta = tokio::time::timeout(Duration::from_secs(30), leecher.resolve(&magnet))
        .await
        .expect("the seeder sends the metadata")
        .unwrap();
    assert_eq!(meta.info_hash, info_hash);

    // The download is given no peer: only the resolution's can serve it.
    let job = ferry_domain::JobId::new();
    leecher.start(download_spec(job, &metainfo)).await.unwrap();
    // Without the resolution's peers it never finishes.
    let s = finished_within(&leecher, job, Duration::from_secs(30)).await;
    assert_eq!(s.bytes_done, bytes.len() as u64, "{s:?}");
    leecher.stop(job, true).await.unwrap();
    leecher.shutdown().await;
    seeder.shutdown().await;
}

/// A relay in front of a peer that holds the first connection until a second one comes (or
/// `hold` passes), as a peer that accepts connections only now and then does, and records when
/// each connection arrived.
async fn batching_relay(
    upstream: std::net::SocketAddr,
    hold: std::time::Duration,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    tokio::spawn(async move {
        let pipe = |mut down: tokio::net::TcpStream| {
            tokio::spawn(async move {
                if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
            });
        };
        let (first, _) = listener.accept().await.unwrap();
        seen.lock().unwrap().push(std::time::Instant::now());
        if let Ok(Ok((second, _))) = tokio::time::timeout(hold, listener.accept()).await {
            seen.lock().unwrap().push(std::time::Instant::now());
            pipe(first);
            pipe(second);
        } else {
            pipe(first);
        }
        while let Ok((next, _)) = listener.accept().await {
            seen.lock().unwrap().push(std::time::Instant::now());
            pipe(next);
        }
    });
    (addr, arrivals)
}

/// A download takes the spare connection its magnet's resolution opened to the peer (vendored
/// librqbit, FERRY-PATCH.md change 9) instead of connecting again once the metadata is read: a
/// peer that accepts connections only now and then (aria2c, once a second) then answers the
/// download at once. Here the peer serves no connection until a second one comes (at most
/// 10 s), and the download must not open one after the metadata was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_uses_the_spare_connection_its_resolution_opened() {
    use ferry_application::ports::TorrentEngine;
    use std::time::{Duration, Instant};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..400_000u32).map(|i| (i % 239) as u8).collect();
    let (seeder, metainfo, info_hash) = seeding_engine(dir.path(), &bytes).await;
    let (relay, arrivals) =
        batching_relay(seeder.listen_addr().unwrap(), Duration::from_secs(10)).await;
    let leecher = RqbitEngine::start(engine_config(dir.path().join("l-staging"), false))
        .await
        .unwrap();
    let magnet = ferry_domain::MagnetLink::parse(&format!(
        "magnet:?xt=urn:btih:{}&x.pe={relay}",
        info_hash.to_hex()
    ))
    .unwrap();
    let meta = tokio::time::timeout(Duration::from_secs(30), leecher.resolve(&magnet))
        .await
        .expect("the seeder sends the metadata")
        .unwrap();
    let resolved = Instant::now();
    assert_eq!(meta.info_hash, info_hash);
    let job = ferry_domain::JobId::new();
    leecher.start(download_spec(job, &metainfo)).await.unwrap();
    let s = finished_within(&leecher, job, Duration::from_secs(30)).await;
    assert_eq!(s.bytes_done, bytes.len() as u64, "{s:?}");
    let arrivals = arrivals.lock().unwrap().clone();
    let late = arrivals.iter().filter(|t| **t > resolved).count();
    assert!(
        arrivals.len() >= 2 && late == 0,
        "{} connections, {late} of them opened after the metadata was read: the download did not take the spare",
        arrivals.len()
    );
    leecher.stop(job, true).await.unwrap();
    leecher.shutdown().await;
    seeder.shutdown().await;
}

/// An incoming connection whose check failed (an unknown torrent, here) does not hold up
/// the others (vendored librqbit, FERRY-PATCH.md change 9): upstream stopped polling the
/// pending checks until another connection came in, so an idle connection — a peer's spare
/// — whose handshake came after a failed one was never answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_incoming_check_holds_up_no_other_connection() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (seeder, _, info_hash) = seeding_engine(dir.path(), &[5u8; 100_000]).await;
    let listen = seeder.listen_addr().unwrap();
    let handshake = |hash: &[u8]| {
        let mut h = vec![19u8];
        h.extend_from_slice(b"BitTorrent protocol");
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(hash);
        h.extend_from_slice(b"-FT0001-abcdefghijkl");
        h
    };
    // The idle one is accepted and waits for its handshake.
    let mut idle = tokio::net::TcpStream::connect(listen).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another fails its check: no such torrent.
    let mut unknown = tokio::net::TcpStream::connect(listen).await.unwrap();
    unknown.write_all(&handshake(&[7u8; 20])).await.unwrap();
    let mut buf = [0u8; 68];
    let refused = tokio::time::timeout(Duration::from_secs(10), unknown.read(&mut buf))
        .await
        .expect("the unknown torrent's connection is closed");
    assert!(matches!(refused, Ok(0) | Err(_)), "{refused:?}");
    // Now the idle one says which torrent it wants: it is answered.
    idle.write_all(&handshake(info_hash.as_bytes()))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), idle.read_exact(&mut buf))
        .await
        .expect("the waiting connection was never answered")
        .unwrap();
    assert_eq!(&buf[28..48], &info_hash.as_bytes()[..]);
    seeder.shutdown().await;
}
