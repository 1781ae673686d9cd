//! The engine's connection caps, end to end on loopback: `torrent.peer_limit` (peers per
//! torrent) and `torrent.max_connections` (peer connections across every torrent, magnet
//! metadata requests and incoming peers included). The kernel's table of connections is
//! watched while jobs download from throttled aria2c seeders: every look is an upper bound
//! that load can only make easier to keep, never a timing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::sockets::{established, sockets_of};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1 << 20;
const LONG: Duration = Duration::from_secs(240);
/// Each seeder's upload limit (aria2c's notation): slow enough that a download lasts
/// seconds, so the watcher looks many times while it runs.
const THROTTLE: &str = "512K";

fn needs() -> bool {
    init();
    require(&["opentracker", "aria2c", "mktorrent"])
}

/// Payloads of one file each, their torrents, a tracker that knows them all, and
/// `seeders` throttled aria2c processes for each torrent (its own, not shared).
struct Swarms {
    _dir: Option<tempfile::TempDir>,
    root: std::path::PathBuf,
    torrents: Vec<(Payload, Torrent, Vec<Seeder>)>,
    _tracker: Tracker,
}

impl Swarms {
    fn start(names: &[&str], size: u64, seeders: usize) -> Self {
        let (dir, root) = test_dir();
        let content = root.join("seed");
        let payloads: Vec<Payload> = names
            .iter()
            .map(|n| Payload::create(&content, n, &[("data.bin", size)]))
            .collect();
        // The tracker's port goes into the torrents, their hashes into its whitelist.
        let probes: Vec<Torrent> = payloads
            .iter()
            .map(|p| {
                p.make_torrent(
                    "http://127.0.0.1:1/announce",
                    &root.join(format!("{}.probe.torrent", p.name)),
                )
            })
            .collect();
        let hashes: Vec<&str> = probes.iter().map(|t| t.info_hash.as_str()).collect();
        let tracker = Tracker::start(&root, &hashes);
        let throttle = [
            format!("--max-upload-limit={THROTTLE}"),
            format!("--max-overall-upload-limit={THROTTLE}"),
        ];
        let torrents = payloads
            .into_iter()
            .map(|p| {
                let t = p.make_torrent(
                    &tracker.announce(),
                    &root.join(format!("{}.torrent", p.name)),
                );
                let s: Vec<Seeder> = (0..seeders)
                    .map(|_| Seeder::start_with(&root, &content, &[&t.path], &throttle))
                    .collect();
                tracker.wait_for_seeders(&t.info_hash, seeders as u64);
                (p, t, s)
            })
            .collect();
        Self {
            _dir: dir,
            root,
            torrents,
            _tracker: tracker,
        }
    }

    fn seeder_pids(&self, torrent: usize) -> Vec<u32> {
        self.torrents[torrent]
            .2
            .iter()
            .map(|s| s.proc.child.id())
            .collect()
    }
}

/// Peers Ferry may be connected to: the processes in `pids` (either side may have dialled:
/// their ends of the connections are theirs) and whatever listens on `ports` of 127.0.0.1.
#[derive(Clone, Default)]
struct Peers {
    pids: Vec<u32>,
    ports: Vec<u16>,
}

/// The connections `ferry` (a pid) holds to each group of `peers` (Ferry's end, the
/// peer's end), in one look.
fn connections(ferry: u32, peers: &[Peers]) -> Vec<BTreeSet<(SocketAddrV4, SocketAddrV4)>> {
    let own = sockets_of(ferry);
    let table = established();
    peers
        .iter()
        .map(|group| {
            let theirs: BTreeSet<String> = group.pids.iter().flat_map(|p| sockets_of(*p)).collect();
            let mut ends: BTreeSet<SocketAddrV4> = table
                .iter()
                .filter(|(_, _, inode)| theirs.contains(inode))
                .map(|(local, _, _)| *local)
                .collect();
            ends.extend(
                group
                    .ports
                    .iter()
                    .map(|p| SocketAddrV4::new(Ipv4Addr::LOCALHOST, *p)),
            );
            table
                .iter()
                .filter(|(_, remote, inode)| own.contains(inode) && ends.contains(remote))
                .map(|(local, remote, _)| (*local, *remote))
                .collect()
        })
        .collect()
}

/// What the watcher saw: the most connections at once in all (and which they were) and
/// per group, and how many looks it took (and in how many of them Ferry held any).
#[derive(Debug, Default)]
struct Seen {
    most: usize,
    busiest: Vec<(SocketAddrV4, SocketAddrV4)>,
    most_per_group: Vec<usize>,
    looks: usize,
    busy_looks: usize,
}

/// Looks at Ferry's connections to `peers` every 50 ms until stopped.
struct Watcher {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Seen>,
}

impl Watcher {
    fn start(ferry: u32, peers: Vec<Peers>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = stop.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut seen = Seen {
                most_per_group: vec![0; peers.len()],
                ..Seen::default()
            };
            while !done.load(Ordering::SeqCst) {
                let now = connections(ferry, &peers);
                let total: usize = now.iter().map(BTreeSet::len).sum();
                if total > seen.most {
                    seen.most = total;
                    seen.busiest = now.iter().flatten().copied().collect();
                }
                for (most, n) in seen.most_per_group.iter_mut().zip(&now) {
                    *most = (*most).max(n.len());
                }
                seen.looks += 1;
                seen.busy_looks += usize::from(total > 0);
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        });
        Self { stop, task }
    }

    async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        let seen = self.task.await.unwrap();
        eprintln!("watcher: {seen:?}");
        seen
    }
}

async fn submit(ferry: &Ferry, torrent: &Torrent) -> String {
    let (status, job) = ferry.submit_torrent(&torrent.bytes, None).await;
    assert_eq!(status, 201, "{job}");
    job["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torrent_never_holds_more_peers_than_its_peer_limit() {
    if !needs() {
        return;
    }
    let swarms = Swarms::start(&["one-at-a-time"], 6 * MIB, 3);
    let ferry = Ferry::start(
        &swarms.root.join("ferry"),
        &[("FERRY_TORRENT__PEER_LIMIT", "1")],
    );
    let watcher = Watcher::start(
        ferry.pid(),
        vec![Peers {
            pids: swarms.seeder_pids(0),
            ..Peers::default()
        }],
    );
    let (payload, torrent, _) = &swarms.torrents[0];
    let id = submit(&ferry, torrent).await;
    ferry.wait_status(&id, "completed", LONG).await;
    let seen = watcher.finish().await;
    ferry.assert_files_match(&id, payload, None).await;

    assert!(
        seen.busy_looks > 0,
        "the watcher never saw the download: {seen:?}"
    );
    assert!(
        seen.most <= 1,
        "Ferry held {} connections to the torrent's 3 seeders at once (peer_limit 1): {seen:?}",
        seen.most
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torrents_together_never_hold_more_connections_than_max_connections() {
    if !needs() {
        return;
    }
    let swarms = Swarms::start(&["first", "second"], 6 * MIB, 2);
    let ferry = Ferry::start(
        &swarms.root.join("ferry"),
        &[("FERRY_TORRENT__MAX_CONNECTIONS", "2")],
    );
    let groups = (0..2)
        .map(|i| Peers {
            pids: swarms.seeder_pids(i),
            ..Peers::default()
        })
        .collect();
    let watcher = Watcher::start(ferry.pid(), groups);
    // Both at once (4 seeders, 2 peers per torrent allowed by peer_limit's default).
    let first = submit(&ferry, &swarms.torrents[0].1).await;
    let second = submit(&ferry, &swarms.torrents[1].1).await;
    ferry.wait_status(&first, "completed", LONG).await;
    ferry.wait_status(&second, "completed", LONG).await;
    let seen = watcher.finish().await;
    ferry
        .assert_files_match(&first, &swarms.torrents[0].0, None)
        .await;
    ferry
        .assert_files_match(&second, &swarms.torrents[1].0, None)
        .await;

    assert!(
        seen.most_per_group.iter().all(|n| *n > 0),
        "the watcher never saw one of the downloads: {seen:?}"
    );
    assert!(
        seen.most <= 2,
        "Ferry held {} peer connections at once (max_connections 2): {seen:?}",
        seen.most
    );
}

/// A BitTorrent handshake for `info_hash` (hex) from a made-up peer.
fn handshake(info_hash: &str) -> Vec<u8> {
    let mut h = vec![19];
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&hex::decode(info_hash).unwrap());
    h.extend_from_slice(b"-XX0001-engine-limit");
    h
}

/// Connects to Ferry's peer port as a peer of `info_hash` and says hello. `Some` with
/// Ferry's handshake if it took the peer, `None` if it hung up without a word.
async fn knock(port: u16, info_hash: &str) -> (tokio::net::TcpStream, Option<Vec<u8>>) {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    conn.write_all(&handshake(info_hash)).await.unwrap();
    let mut answer = vec![0u8; 68];
    let read = tokio::time::timeout(Duration::from_secs(30), conn.read_exact(&mut answer))
        .await
        .expect("Ferry neither answered nor hung up in 30 s");
    (conn, read.ok().map(|_| answer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_peer_is_refused_while_max_connections_are_held() {
    if !needs() {
        return;
    }
    let swarms = Swarms::start(&["incoming"], 6 * MIB, 1);
    let ferry = Ferry::start(
        &swarms.root.join("ferry"),
        &[("FERRY_TORRENT__MAX_CONNECTIONS", "2")],
    );
    let log = ferry.proc.log_text();
    let port = logged_port(&log, "torrent engine started", "listen")
        .unwrap_or_else(|| panic!("Ferry did not log its peer port:\n{log}"));
    let seeder = Peers {
        pids: swarms.seeder_pids(0),
        ..Peers::default()
    };
    let (payload, torrent, _) = &swarms.torrents[0];
    let id = submit(&ferry, torrent).await;
    // Downloading from its one seeder: one of the two connections is taken.
    ferry.wait_bytes(&id, MIB / 2, LONG).await;
    let deadline = std::time::Instant::now() + LONG;
    while connections(ferry.pid(), std::slice::from_ref(&seeder))[0].is_empty() {
        assert!(std::time::Instant::now() < deadline, "no seeder connection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The second is ours to take (this also proves our handshake is one Ferry answers)...
    let (_held, answer) = knock(port, &torrent.info_hash).await;
    let answer = answer.unwrap_or_else(|| {
        panic!(
            "the second connection was refused:\n{}",
            ferry.proc.log_text()
        )
    });
    assert_eq!(
        hex::encode(&answer[28..48]),
        torrent.info_hash,
        "Ferry's handshake"
    );
    // ... and a third is refused while those two are open.
    let (_refused, answer) = knock(port, &torrent.info_hash).await;
    assert!(
        answer.is_none(),
        "a third peer connection was taken (max_connections 2)"
    );
    let job = ferry.job(&id).await;
    assert_eq!(job["status"], "downloading", "{job}");

    ferry.wait_status(&id, "completed", LONG).await;
    ferry.assert_files_match(&id, payload, None).await;
}

/// A peer that takes connections and never says a word, holding each until the other side
/// hangs up. Its address and how many connections it took.
async fn tarpit() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let taken = Arc::new(AtomicUsize::new(0));
    let count = taken.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    (port, taken)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnets_metadata_requests_count_towards_max_connections() {
    init();
    let (_keep, root) = test_dir();
    let ferry = Ferry::start(
        &root.join("ferry"),
        &[("FERRY_TORRENT__MAX_CONNECTIONS", "1")],
    );
    // Peers that never answer: librqbit holds each metadata request until its handshake
    // times out, then asks the next.
    let (a, a_taken) = tarpit().await;
    let (b, b_taken) = tarpit().await;
    let watcher = Watcher::start(
        ferry.pid(),
        vec![Peers {
            ports: vec![a, b],
            ..Peers::default()
        }],
    );
    let magnet = format!(
        "{}&x.pe=127.0.0.1:{a}&x.pe=127.0.0.1:{b}",
        lonely_magnet("tarpits")
    );
    ferry.submit_magnet(&magnet).await;
    // Both are asked in the end: the first request's connection gives its slot back.
    let deadline = std::time::Instant::now() + LONG;
    while a_taken.load(Ordering::SeqCst) == 0 || b_taken.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "not both peers were asked for the metadata:\n{}",
            ferry.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The second request is under way (it waits seconds for an answer too).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = watcher.finish().await;
    assert!(
        seen.busy_looks > 0,
        "the watcher never saw a request: {seen:?}"
    );
    assert!(
        seen.most <= 1,
        "Ferry held {} metadata connections at once (max_connections 1): {seen:?}",
        seen.most
    );
}
