//! BitTorrent through a SOCKS5 proxy (`torrent.proxy`), end to end on loopback: microsocks
//! makes its outgoing connections from an address of its own, so every tracker and peer
//! can tell whether a connection came through it. With `torrent.proxy_required` and the
//! proxy gone, jobs fail `proxy_unavailable` and nothing is ever contacted directly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::origin::{microsocks, tripwire};
use common::sockets::{established, sockets_of};
use common::swarm::Swarm;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1 << 20;
const LONG: Duration = Duration::from_secs(180);
/// The address microsocks connects from.
const PROXY_EGRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 7);

/// A UDP socket counting the datagrams it gets (a `udp://` tracker nobody may announce to).
async fn udp_tripwire() -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while socket.recv_from(&mut buf).await.is_ok() {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, hits)
}

/// An HTTP tracker that answers every announce with no peers and records where each
/// connection came from.
async fn recording_tracker() -> (SocketAddr, Arc<Mutex<Vec<SocketAddr>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, from)) = listener.accept().await {
            record.lock().unwrap().push(from);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") && read < buf.len() {
                    match conn.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let body = b"d8:intervali1800e5:peers0:e";
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body).await;
            });
        }
    });
    (addr, seen)
}

/// One look at `/proc/net/tcp` (every loopback connection of the machine, both ends):
/// whether `ferry` (a pid) holds a connection to `port` itself, and the addresses the
/// listener on `port` sees at the other end of its connections.
fn look(ferry: u32, port: u16) -> (bool, BTreeSet<Ipv4Addr>) {
    let table = established();
    let own = sockets_of(ferry);
    let direct = table
        .iter()
        .any(|(_, remote, inode)| remote.port() == port && own.contains(inode));
    let seen = table
        .iter()
        .filter(|(local, _, _)| local.port() == port)
        .map(|(_, remote, _)| *remote.ip())
        .collect();
    (direct, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_and_trackers_see_only_the_proxy_and_udp_trackers_are_never_used() {
    if !require(&["microsocks", "opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let s = Swarm::start(
        "payload",
        &[("big.bin", 48 * MIB + 777), ("small.txt", 5000)],
    );
    let (socks, _socks) = microsocks(&s.root, &PROXY_EGRESS.to_string());
    let (udp, udp_hits) = udp_tripwire().await;
    let (recorder, announces) = recording_tracker().await;
    let ferry = Ferry::start(
        &s.root.join("ferry"),
        &[
            (
                "FERRY_TORRENT__PROXY",
                &format!("socks5h://127.0.0.1:{socks}"),
            ),
            ("FERRY_TORRENT__PROXY_REQUIRED", "true"),
        ],
    );

    // The API says what the proxy turns off.
    let (status, network) = ferry.get_json("/network").await;
    assert_eq!(status, 200, "{network}");
    assert_eq!(network["torrent"]["proxied"], true);
    assert_eq!(network["torrent"]["proxy_required"], true);
    assert_eq!(network["torrent"]["dht"], false);
    assert_eq!(network["torrent"]["udp_trackers"], false);
    assert_eq!(
        network["torrent"]["incoming"], false,
        "no listening while proxied"
    );

    // Watch the seeder's connections for as long as the job runs: Ferry never holds one
    // itself, and the seeder sees the proxy's address. (It may also see 127.0.0.1: aria2c
    // dials its own address when the tracker lists it.)
    let done = Arc::new(AtomicBool::new(false));
    let seeder_port = s.seeder.port;
    let ferry_pid = ferry.pid();
    let watcher = {
        let done = done.clone();
        tokio::task::spawn_blocking(move || {
            let (mut direct, mut seen) = (false, BTreeSet::new());
            while !done.load(Ordering::SeqCst) {
                let (d, s) = look(ferry_pid, seeder_port);
                direct |= d;
                seen.extend(s);
                std::thread::sleep(Duration::from_millis(10));
            }
            (direct, seen)
        })
    };

    let magnet = format!(
        "{}&tr={}&tr={}",
        s.magnet(),
        url_escape(&format!("udp://{udp}/announce")),
        url_escape(&format!("http://{recorder}/announce")),
    );
    let job = ferry.submit_magnet(&magnet).await;
    let id = job["id"].as_str().unwrap().to_owned();
    ferry.wait_status(&id, "completed", LONG).await;
    done.store(true, Ordering::SeqCst);
    let (direct, seen) = watcher.await.unwrap();
    ferry.assert_files_match(&id, &s.payload, None).await;

    assert!(!direct, "Ferry never connected to the seeder itself");
    assert!(
        seen.contains(&PROXY_EGRESS),
        "the seeder was reached through the proxy: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|ip| *ip == PROXY_EGRESS || *ip == Ipv4Addr::LOCALHOST),
        "{seen:?}"
    );
    let announces = announces.lock().unwrap().clone();
    assert!(!announces.is_empty(), "the HTTP tracker was announced to");
    assert!(
        announces
            .iter()
            .all(|a| a.ip() == std::net::IpAddr::V4(PROXY_EGRESS)),
        "every announce came through the proxy: {announces:?}"
    );
    assert_eq!(udp_hits.load(Ordering::SeqCst), 0, "no UDP announce");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_required_proxy_down_jobs_fail_and_nothing_is_contacted_directly() {
    if !require(&["microsocks"]) {
        return;
    }
    init();
    let (_keep, root) = test_dir();
    let (socks, mut socks_proc) = microsocks(&root, &PROXY_EGRESS.to_string());
    // The proxy is stopped: its port refuses connections.
    socks_proc.signal(9);
    socks_proc.wait_timeout(Duration::from_secs(10));

    let (peer, peer_hits) = tripwire("127.0.0.1").await;
    let (tracker, tracker_hits) = tripwire("127.0.0.1").await;
    let (udp, udp_hits) = udp_tripwire().await;
    let ferry = Ferry::start(
        &root.join("ferry"),
        &[
            (
                "FERRY_TORRENT__PROXY",
                &format!("socks5h://127.0.0.1:{socks}"),
            ),
            ("FERRY_TORRENT__PROXY_REQUIRED", "true"),
        ],
    );
    let magnet = format!(
        "{}&x.pe={peer}&tr={}&tr={}",
        lonely_magnet("behind-the-proxy"),
        url_escape(&format!("http://{tracker}/announce")),
        url_escape(&format!("udp://{udp}/announce")),
    );
    let job = ferry.submit_magnet(&magnet).await;
    let id = job["id"].as_str().unwrap().to_owned();
    let failed = ferry
        .wait_status(&id, "failed", Duration::from_secs(60))
        .await;
    assert_eq!(failed["error"]["code"], "proxy_unavailable", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.contains("proxy is unreachable"), "{message}");
    assert!(
        !message.contains(&socks.to_string()),
        "no address for users: {message}"
    );
    assert!(
        ferry
            .proc
            .log_text()
            .contains(&format!("127.0.0.1:{socks}")),
        "the operator's log names the proxy"
    );

    // A .torrent whose metadata is known starts no download either.
    let (status, torrent_job) = ferry
        .submit_torrent(&lonely_torrent("behind-the-proxy-2"), None)
        .await;
    assert_eq!(status, 201, "{torrent_job}");
    let id = torrent_job["id"].as_str().unwrap().to_owned();
    let failed = ferry
        .wait_status(&id, "failed", Duration::from_secs(60))
        .await;
    assert_eq!(failed["error"]["code"], "proxy_unavailable", "{failed}");

    assert_eq!(
        peer_hits.load(Ordering::SeqCst),
        0,
        "no direct peer connection"
    );
    assert_eq!(tracker_hits.load(Ordering::SeqCst), 0, "no direct announce");
    assert_eq!(udp_hits.load(Ordering::SeqCst), 0, "no UDP announce");
}

#[test]
fn a_required_proxy_that_is_not_configured_stops_the_server_from_starting() {
    init();
    let (_keep, root) = test_dir();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(root.join("ferry"))
        .env("FERRY_TORRENT__PROXY_REQUIRED", "true")
        .env_remove("FERRY_TORRENT__PROXY")
        .env_remove("FERRY_FETCH__PROXY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("torrent.proxy_required is set but there is no torrent.proxy"),
        "{stderr}"
    );
}
