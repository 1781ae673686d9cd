//! `LiveFiles` on the real librqbit session: the contract, and streams of a download in
//! progress from a rate-limited seeder (prioritised pieces, timeouts, a stop mid-read, the
//! cap on streams).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use ferry_application::ports::{LiveFileError, LiveFiles, LiveReader, TorrentEngine, TorrentSpec};
use ferry_application::testing::contracts::{EngineFixture, live_files_contract};
use ferry_domain::{JobId, SafePath};
use ferry_local_storage::LocalStaging;
use ferry_torrent::{EngineConfig, Inspector, RqbitEngine, STREAM_PERMITS};
use tokio::io::AsyncReadExt;

/// A torrent (`piece` bytes a piece, no trackers) of a file or folder, made by librqbit.
async fn metainfo_of(path: &std::path::Path, piece: u32) -> Vec<u8> {
    let created = librqbit::create_torrent(
        path,
        librqbit::CreateTorrentOptions {
            name: None,
            trackers: vec![],
            piece_length: Some(piece),
        },
        &librqbit::spawn_utils::BlockingSpawner::new(2),
    )
    .await
    .unwrap();
    created.as_bytes().unwrap().to_vec()
}

fn config(staging: std::path::PathBuf, upload_limit: Option<u32>) -> EngineConfig {
    EngineConfig {
        staging_dir: staging,
        listen: Some("127.0.0.1:0".parse().unwrap()),
        dht: false,
        lsd: false,
        upnp: false,
        download_limit_bps: None,
        upload_limit_bps: upload_limit.and_then(NonZeroU32::new),
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

/// Bytes that differ at every position (a misplaced read shows).
fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761).to_le_bytes()[1])
        .collect()
}

async fn drain(mut reader: LiveReader, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        (&mut reader).take(limit as u64).read_to_end(&mut out),
    )
    .await
    .expect("read in time")
    .expect("read");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librqbit_passes_the_live_files_contract() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("content").join("show");
    std::fs::create_dir_all(&folder).unwrap();
    let a = content(700_000);
    let b = b"subtitles".to_vec();
    std::fs::write(folder.join("episode.mkv"), &a).unwrap();
    std::fs::write(folder.join("episode.srt"), &b).unwrap();
    let fixture = EngineFixture {
        metainfo: metainfo_of(&folder, 65536).await,
        files: vec![
            (SafePath::parse("show/episode.mkv").unwrap(), a),
            (SafePath::parse("show/episode.srt").unwrap(), b),
        ],
    };
    let engine = Arc::new(
        RqbitEngine::start(config(dir.path().join("staging"), None))
            .await
            .unwrap(),
    );
    let live = engine.live_files(Duration::from_secs(10));
    let staging = LocalStaging::new(dir.path().join("staging"));
    live_files_contract(engine.as_ref(), &live, &Inspector, &staging, &fixture).await;
    engine.shutdown().await;
}

/// A seeder engine (rate-limited) with `data` as `movie.bin`, and a leecher engine.
struct Swarm {
    _dir: tempfile::TempDir,
    seeder: RqbitEngine,
    leecher: Arc<RqbitEngine>,
    metainfo: Vec<u8>,
    data: Vec<u8>,
}

impl Swarm {
    async fn start(len: usize, upload_limit: u32) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let seed = dir.path().join("seed");
        std::fs::create_dir_all(&seed).unwrap();
        // Not a multiple of the piece length: librqbit's torrent maker gets those wrong.
        let data = content(len + 1234);
        std::fs::write(seed.join("movie.bin"), &data).unwrap();
        let metainfo = metainfo_of(&seed.join("movie.bin"), 32768).await;
        let seeder = RqbitEngine::start(config(dir.path().join("s"), Some(upload_limit)))
            .await
            .unwrap();
        seeder
            .start(TorrentSpec {
                job_id: JobId::new(),
                metainfo: metainfo.clone(),
                only_files: None,
                peers: vec![],
                data_dir: Some(seed),
                limits: Default::default(),
            })
            .await
            .unwrap();
        let leecher = Arc::new(
            RqbitEngine::start(config(dir.path().join("l"), None))
                .await
                .unwrap(),
        );
        Self {
            _dir: dir,
            seeder,
            leecher,
            metainfo,
            data,
        }
    }

    async fn download(&self, peers: bool) -> JobId {
        let job = JobId::new();
        self.leecher
            .start(TorrentSpec {
                job_id: job,
                metainfo: self.metainfo.clone(),
                only_files: None,
                peers: if peers {
                    vec![self.seeder.listen_addr().unwrap()]
                } else {
                    vec![]
                },
                data_dir: None,
                limits: Default::default(),
            })
            .await
            .unwrap();
        job
    }

    async fn stop(self) {
        self.leecher.shutdown().await;
        self.seeder.shutdown().await;
    }
}

/// A read far ahead of what has arrived gets its pieces first: it is answered long before
/// the download is done, with the seeder's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_ahead_of_the_download_gets_its_pieces_first() {
    // 6 MiB at 512 KiB/s: about 12 s for the whole file.
    let swarm = Swarm::start(6 << 20, 512 << 10).await;
    let live = swarm.leecher.live_files(Duration::from_secs(30));
    let job = swarm.download(true).await;
    let start = 5 << 20;
    let reader = live.open(job, 0, start).await.unwrap();
    let stats = swarm.leecher.stats(job).await.unwrap();
    assert!(
        stats.bytes_done < stats.bytes_total / 2,
        "the read waited for most of the file: {stats:?}"
    );
    let got = drain(reader, 256 << 10).await;
    assert!(
        got == swarm.data[start as usize..][..256 << 10],
        "the seeder's bytes"
    );
    swarm.stop().await;
}

/// No peer has the data: the first read gives up after the timeout; a read already
/// answering that stalls fails the same way; the job stopping ends an open reader at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_get_no_data_time_out_and_a_stop_ends_them() {
    let swarm = Swarm::start(2 << 20, 512 << 10).await;
    let live = swarm.leecher.live_files(Duration::from_millis(800));
    let lonely = swarm.download(false).await;
    let began = tokio::time::Instant::now();
    assert!(matches!(
        live.open(lonely, 0, 0).await,
        Err(LiveFileError::TimedOut)
    ));
    assert!(began.elapsed() < Duration::from_secs(10));
    swarm.leecher.stop(lonely, true).await.unwrap();

    // A reader that waits (patiently) when the job is stopped fails at once.
    let slow = swarm.leecher.live_files(Duration::from_secs(60));
    let job = swarm.download(true).await;
    let mut reader = slow.open(job, 0, 0).await.unwrap();
    let mut first = vec![0u8; 1000];
    reader.read_exact(&mut first).await.unwrap();
    assert!(first == swarm.data[..1000]);
    let read = tokio::spawn(async move {
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = tokio::time::Instant::now();
    swarm.leecher.stop(job, false).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the reader ended when the job stopped")
        .unwrap();
    assert!(ended.is_err(), "a stopped job's reader fails: {ended:?}");
    assert!(stopped.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        slow.open(job, 0, 0).await,
        Err(LiveFileError::NotRunning)
    ));
    swarm.stop().await;
}

/// At most [`STREAM_PERMITS`] streams are open at once; a place frees when one ends. The
/// download goes on meanwhile (the streams do not take the permits its disk writes need).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_capped_and_never_stall_the_download() {
    let swarm = Swarm::start(3 << 20, 4 << 20).await;
    let live = swarm.leecher.live_files(Duration::from_secs(30));
    let job = swarm.download(true).await;
    let mut open = Vec::new();
    for i in 0..STREAM_PERMITS {
        open.push(live.open(job, 0, (i as u64) * 4096).await.unwrap());
    }
    assert!(matches!(
        live.open(job, 0, 0).await,
        Err(LiveFileError::Busy)
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !swarm.leecher.stats(job).await.unwrap().finished {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the download stalled with every stream open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(open.pop());
    let last = live.open(job, 0, 100).await.unwrap();
    assert!(drain(last, 1000).await == swarm.data[100..1100]);
    swarm.stop().await;
}
