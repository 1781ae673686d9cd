//! End to end with real peers on loopback: opentracker, an aria2c seeder, and the real
//! `ferry serve` binary talked to over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::swarm::Swarm;
use common::*;
use reqwest::Method;

const MIB: u64 = 1 << 20;
const LONG: Duration = Duration::from_secs(180);

/// Several files, one over 16 MiB, for a [`Swarm`].
fn standard_files() -> Vec<(&'static str, u64)> {
    vec![
        ("big/movie.bin", 20 * MIB + 12345),
        ("notes.txt", 70_000),
        ("extras/one.bin", 3 * MIB),
        ("extras/two.bin", MIB + 1),
    ]
}

fn id_of(job: &serde_json::Value) -> String {
    job["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_downloads_with_live_progress_and_every_file_matches() {
    if !require(&["opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let s = Swarm::start("payload", &standard_files());
    let ferry = Ferry::start(&s.root.join("ferry"), &[]);
    let job = ferry
        .submit_magnet(&s.torrent.magnet(&s.tracker.announce()))
        .await;
    let id = id_of(&job);
    assert_eq!(job["status"], "queued");
    assert_eq!(job["info_hash"], s.torrent.info_hash.as_str());

    // Watch the whole life of the job over SSE.
    let resp = ferry
        .req(Method::GET, &format!("/jobs/{id}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = read_sse(resp, LONG, |_| false).await;
    assert_eq!(events[0].event, "snapshot");
    let last = events.last().unwrap();
    assert_eq!(
        (last.event.as_str(), last.data["status"].as_str()),
        ("status", Some("completed")),
        "{events:?}"
    );
    let done: Vec<u64> = events
        .iter()
        .filter(|e| e.event == "progress" && e.data["status"] == "downloading")
        .map(|e| e.data["progress"]["bytes_done"].as_u64().unwrap())
        .collect();
    assert!(!done.is_empty(), "progress events: {events:?}");
    assert!(
        done.windows(2).all(|w| w[0] <= w[1]),
        "progress climbs: {done:?}"
    );
    assert_eq!(
        *done.last().unwrap(),
        s.payload.total(),
        "progress reaches the total"
    );
    // Every status from the one the client joined at (the snapshot's: the stream is live
    // from there, and the job may already be resolving) to the end arrives as an event.
    let statuses: Vec<&str> = events
        .iter()
        .filter(|e| e.event == "status")
        .filter_map(|e| e.data["status"].as_str())
        .collect();
    let life = [
        "queued",
        "resolving",
        "downloading",
        "uploading",
        "completed",
    ];
    let joined = events[0].data["status"].as_str().unwrap();
    let from = life.iter().position(|s| *s == joined).unwrap();
    assert!(from <= 1, "the client joined at {joined}");
    for want in &life[(from + 1).max(1)..] {
        assert!(
            statuses.contains(want),
            "{want} in {statuses:?} (joined at {joined})"
        );
    }
    assert!(
        events
            .iter()
            .filter(|e| e.event != "snapshot")
            .all(|e| e.id.is_some())
    );

    // The finished job and its files.
    let job = ferry.job(&id).await;
    assert_eq!(job["status"], "completed");
    assert_eq!(job["name"], "payload");
    assert_eq!(job["progress"]["percent"], 100.0);
    ferry.assert_files_match(&id, &s.payload, None).await;

    // Range requests on the big file.
    let (_, files) = ferry.get_json(&format!("/jobs/{id}/files")).await;
    let big = files
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "payload/big/movie.bin")
        .unwrap()
        .clone();
    let whole = ferry.file_bytes(&id, big["index"].as_u64().unwrap()).await;
    let url = format!("/jobs/{id}/files/{}", big["index"]);
    let r = ferry
        .req(Method::GET, &url)
        .header("Range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 1000-1999/{}", whole.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &whole[1000..2000]);
    let r = ferry
        .req(Method::GET, &url)
        .header("Range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        &whole[whole.len() - 10..]
    );
    let r = ferry
        .req(Method::GET, &url)
        .header("Range", format!("bytes={}-", whole.len() + 5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 416);

    // Resuming the event stream from an early id replays what came after it.
    let early = events.iter().find(|e| e.id.is_some()).unwrap();
    let resp = ferry
        .req(Method::GET, &format!("/jobs/{id}/events"))
        .header("Last-Event-ID", early.id.clone().unwrap())
        .send()
        .await
        .unwrap();
    let replay = read_sse(resp, Duration::from_secs(20), |_| false).await;
    assert_eq!(replay[0].event, "snapshot");
    assert_eq!(
        replay[1].id,
        events
            .iter()
            .skip_while(|e| e.id != early.id)
            .nth(1)
            .unwrap()
            .id
    );
    assert_eq!(replay.last().unwrap().data["status"], "completed");

    // A completed job cannot be paused; a second submission of the same magnet is fine now.
    let (status, body) = ferry
        .post_json(&format!("/jobs/{id}/pause"), serde_json::json!({}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("illegal_transition")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torrent_upload_downloads_only_the_selected_files() {
    if !require(&["opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let s = Swarm::start("subset", &standard_files());
    let ferry = Ferry::start(&s.root.join("ferry"), &[]);

    // Analysis without starting anything.
    let form = reqwest::multipart::Form::new().part(
        "torrent",
        reqwest::multipart::Part::bytes(s.torrent.bytes.clone()).file_name("s.torrent"),
    );
    let r = ferry
        .req(Method::POST, "/torrents/analyze")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let analysis: serde_json::Value = r.json().await.unwrap();
    assert_eq!(analysis["info_hash"], s.torrent.info_hash.as_str());
    assert_eq!(analysis["files"].as_array().unwrap().len(), 4);
    assert_eq!(analysis["trackers"][0], s.tracker.announce().as_str());
    let (_, list) = ferry.get_json("/jobs").await;
    assert!(
        list["items"].as_array().unwrap().is_empty(),
        "analysis creates no job"
    );

    // Choose the two small extras only (indices follow the torrent's order).
    let index_of = |path: &str| {
        analysis["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .unwrap()["index"]
            .as_u64()
            .unwrap()
    };
    let chosen = [
        index_of("subset/extras/one.bin"),
        index_of("subset/notes.txt"),
    ];
    let (status, job) = ferry
        .submit_torrent(
            &s.torrent.bytes,
            Some(&format!("{},{}", chosen[0], chosen[1])),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    let id = id_of(&job);
    assert_eq!(job["progress"]["bytes_total"], 3 * MIB + 70_000);
    let job = ferry.wait_status(&id, "completed", LONG).await;
    assert_eq!(job["progress"]["bytes_done"], 3 * MIB + 70_000);
    ferry
        .assert_files_match(&id, &s.payload, Some(&chosen))
        .await;

    // Nothing of the big unselected file was delivered.
    let stored = ferry
        .data_dir
        .join("storage/local")
        .join(&id)
        .join("subset");
    assert!(!stored.join("big/movie.bin").exists());
    assert!(stored.join("extras/one.bin").exists());
    assert!(
        !ferry.data_dir.join("staging").join(&id).exists(),
        "staging freed"
    );
}

/// Limits Ferry's download rate so there is time to act mid-download.
const SLOW: [(&str, &str); 1] = [("FERRY_TORRENT__DOWNLOAD_LIMIT", "4194304")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_cancel_mid_download() {
    if !require(&["opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let s = Swarm::start("pausable", &standard_files());
    let ferry = Ferry::start(&s.root.join("ferry"), &SLOW);
    let magnet = s.torrent.magnet(&s.tracker.announce());
    let id = id_of(&ferry.submit_magnet(&magnet).await);
    ferry.wait_bytes(&id, 2 * MIB, LONG).await;

    let (status, job) = ferry
        .post_json(&format!("/jobs/{id}/pause"), serde_json::json!({}))
        .await;
    assert_eq!(
        (status, job["status"].as_str()),
        (200, Some("paused")),
        "{job}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_pause = ferry.job(&id).await["progress"]["bytes_done"]
        .as_u64()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = ferry.job(&id).await;
    assert_eq!(later["status"], "paused");
    assert_eq!(
        later["progress"]["bytes_done"].as_u64().unwrap(),
        at_pause,
        "no progress while paused"
    );
    assert!(at_pause < s.payload.total());

    let (status, job) = ferry
        .post_json(&format!("/jobs/{id}/resume"), serde_json::json!({}))
        .await;
    assert_eq!(
        (status, job["status"].as_str()),
        (200, Some("queued")),
        "{job}"
    );
    ferry.wait_status(&id, "completed", LONG).await;
    ferry.assert_files_match(&id, &s.payload, None).await;

    // Cancel a second run of the same torrent mid-download: it ends cancelled, its staged
    // data is removed, and purge removes the job.
    let id2 = id_of(&ferry.submit_magnet(&magnet).await);
    ferry.wait_bytes(&id2, 2 * MIB, LONG).await;
    let r = ferry
        .req(Method::DELETE, &format!("/jobs/{id2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cancelled: serde_json::Value = r.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    let staging = ferry.data_dir.join("staging").join(&id2);
    for _ in 0..100 {
        if !staging.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !staging.exists(),
        "the cancelled job's staged data is removed"
    );
    let (status, body) = ferry.get_json(&format!("/jobs/{id2}/files/0")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("job_not_finished"))
    );
    ferry.purge(&id2).await;
    // The first job is untouched.
    assert_eq!(ferry.job(&id).await["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_mid_download_loses_nothing() {
    if !require(&["opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let s = Swarm::start("restartable", &standard_files());
    let ferry = Ferry::start(
        &s.root.join("ferry"),
        &[("FERRY_TORRENT__DOWNLOAD_LIMIT", "2097152")],
    );
    let id = id_of(
        &ferry
            .submit_magnet(&s.torrent.magnet(&s.tracker.announce()))
            .await,
    );
    ferry.wait_bytes(&id, 2 * MIB, LONG).await;

    // A graceful stop in the middle: the job stays downloading and resumes after a start.
    let ferry = Ferry::restart(ferry.stop());
    let job = ferry.job(&id).await;
    assert!(
        ["queued", "resolving", "downloading"].contains(&job["status"].as_str().unwrap()),
        "{job}"
    );
    let before_crash = ferry
        .wait_bytes(
            &id,
            job["progress"]["bytes_done"].as_u64().unwrap() + MIB / 2,
            LONG,
        )
        .await;

    // A crash in the middle: the same.
    let ferry = Ferry::restart(ferry.crash());
    let job = ferry.wait_status(&id, "completed", LONG).await;
    assert!(before_crash["progress"]["bytes_done"].as_u64().unwrap() < s.payload.total());
    assert_eq!(job["attempts"], 0);
    ferry.assert_files_match(&id, &s.payload, None).await;
}

/// A TCP listener that only counts connections (a stand-in for Redis, a metadata service).
fn tripwire(
    ip: &str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, seen)
}

/// An HTTP tracker that answers every announce with one peer, `peer`; counts announces.
fn lying_tracker(
    peer: std::net::SocketAddr,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/announce", listener.local_addr().unwrap());
    let std::net::SocketAddr::V4(v4) = peer else {
        panic!("an IPv4 peer")
    };
    let mut compact = v4.ip().octets().to_vec();
    compact.extend(v4.port().to_be_bytes());
    let mut body = b"d8:intervali5e5:peers6:".to_vec();
    body.extend(&compact);
    body.push(b'e');
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            if stream.read(&mut buf).unwrap_or(0) == 0 {
                continue;
            }
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (url, seen)
}

/// A .torrent (one 1000-byte file) announcing to `tracker`.
fn tiny_torrent(name: &str, tracker: &str) -> Vec<u8> {
    use ferry_torrent::testing::{B, encode, s};
    encode(&B::Dict(vec![
        ("announce", s(tracker)),
        (
            "info",
            B::Dict(vec![
                ("name", s(name)),
                ("piece length", B::Int(16384)),
                ("pieces", B::Str(vec![7u8; 20])),
                ("length", B::Int(1000)),
            ]),
        ),
    ]))
}

fn random_hash() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_at_internal_addresses_are_never_contacted() {
    init();
    let (_keep, root) = test_dir();
    // The tracker is allowed (the operator's own, 127.0.0.1), the peer it hands out is not:
    // a "Redis" on another loopback address.
    let (wire, touched) = tripwire("127.0.0.2");
    let (tracker, announces) = lying_tracker(wire);
    let ferry = Ferry::start(
        &root.join("ferry"),
        &[("FERRY_TORRENT__ALLOW", "[\"127.0.0.1/32\"]")],
    );

    let (status, body) = ferry
        .post_json(
            "/jobs",
            serde_json::json!({"source": {"magnet": format!("magnet:?xt=urn:btih:{}&x.pe={wire}", random_hash())}}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("peer_not_allowed")),
        "{body}"
    );
    // A magnet resolving through the tracker, and a .torrent announcing to it.
    let magnet = format!("magnet:?xt=urn:btih:{}&tr={tracker}", random_hash());
    let job = ferry.submit_magnet(&magnet).await;
    assert_eq!(job["status"], "queued");
    let (status, body) = ferry
        .submit_torrent(&tiny_torrent("tripwire.bin", &tracker), None)
        .await;
    assert_eq!(status, 201, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while announces.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the engine never asked the tracker:\n{}",
            ferry.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The engine has had the peer for a while: it never connected.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        touched.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the engine connected to an internal peer"
    );
    drop(ferry);

    // Control: where the operator allows the range, the same peer is contacted (so the
    // tripwire does see the engine when it comes).
    let open = Ferry::start(&root.join("open"), &[]);
    open.submit_magnet(&format!(
        "magnet:?xt=urn:btih:{}&tr={tracker}",
        random_hash()
    ))
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while touched.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "an allowed peer was never contacted:\n{}",
            open.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
