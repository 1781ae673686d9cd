//! URL jobs end to end: Ferry fetches through a real proxy (microsocks for SOCKS5, tinyproxy
//! for HTTP), packages the content as a private torrent, seeds it, and independent clients
//! (aria2c from the .torrent, qbittorrent-nox from the magnet) download it from Ferry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::origin::*;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

fn loopback(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_fetched_through_socks5_is_seeded_to_aria2c_and_qbittorrent() {
    init();
    if !require(&["microsocks", "opentracker", "aria2c", "qbittorrent-nox"]) {
        return;
    }
    let (_keep, root) = test_dir();
    let name = "release-1.0.iso";
    let file = root.join("origin").join(name);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let sha = random_file(&file, 100 * MIB);
    let origin = Origin::start(&file, name).await;
    let (socks, _socks_proc) = microsocks(&root, "127.0.0.3");

    let (tracker, info_hash) = tracker_for_packaged(&root, &file, name);

    let (tripwire_addr, tripwire_hits) = tripwire("127.0.0.2").await;
    let trackers = format!("[\"{}\"]", tracker.announce());
    let ferry = Ferry::start(
        &root.join("ferry"),
        &[
            (
                "FERRY_FETCH__PROXY",
                &format!("socks5h://127.0.0.1:{socks}"),
            ),
            ("FERRY_FETCH__PROXY_REQUIRED", "true"),
            ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]"),
            ("FERRY_FETCH__HOSTS", "{internal-files = \"10.20.30.40\"}"),
            ("FERRY_PACKAGE__TRACKERS", &trackers),
            ("FERRY_PACKAGE__PRIVATE", "true"),
        ],
    );

    // SSRF: refused at submission with a clear code, and nothing reaches the target.
    for url in [
        format!("http://{tripwire_addr}/secret"),
        format!("http://2130706434:{}/", tripwire_addr.port()),
        format!("http://0177.0.0.2:{}/", tripwire_addr.port()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]/".to_owned(),
        "http://internal-files/a.iso".to_owned(),
        format!(
            "http://{}/redirect?to=http://{tripwire_addr}/secret",
            origin.addr
        ),
    ] {
        let (status, body) = ferry
            .post_json("/jobs", json!({"source": {"url": url}}))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("url_not_allowed")),
            "{url}: {body}"
        );
    }
    assert_eq!(
        tripwire_hits.load(Ordering::SeqCst),
        0,
        "no connection reached the target"
    );

    let url = format!("http://{}/{name}", origin.addr);
    let (status, job) = ferry
        .post_json("/jobs", json!({"source": {"url": url}, "seed": true}))
        .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["name"], name);
    let seeding = ferry
        .wait_status(&id, "seeding", Duration::from_secs(240))
        .await;
    assert_eq!(seeding["content_sha256"], sha.as_str());

    // Everything went through the proxy: the origin only ever saw microsocks' address.
    let peers = origin.seen.peers();
    assert!(!peers.is_empty());
    assert!(
        peers.iter().all(|p| *p == loopback("127.0.0.3")),
        "direct connection seen: {peers:?}"
    );

    // The job's file and its torrent.
    ferry.assert_files_match_one(&id, name, &sha).await;
    let r = ferry
        .req(Method::GET, &format!("/jobs/{id}/torrent"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-bittorrent");
    let torrent_bytes = r.bytes().await.unwrap().to_vec();
    let made = ferry_torrent::inspect(&torrent_bytes).unwrap();
    assert!(made.private, "the torrent is private");
    assert_eq!(made.info_hash.to_hex(), info_hash);
    let (_, magnet) = ferry.get_json(&format!("/jobs/{id}/magnet")).await;
    let magnet = magnet["magnet"].as_str().unwrap().to_owned();
    assert!(
        magnet.contains(&info_hash) && magnet.contains("tr="),
        "{magnet}"
    );
    tracker.wait_for_seeders(&info_hash, 1);

    // aria2c downloads it from Ferry's .torrent.
    let torrent_path = root.join("ferry-made.torrent");
    std::fs::write(&torrent_path, &torrent_bytes).unwrap();
    let aria_dir = root.join("aria2-download");
    assert!(
        aria2c_download(&torrent_path, &aria_dir, 120),
        "aria2c failed"
    );
    assert_eq!(
        sha256_hex(&std::fs::read(aria_dir.join(name)).unwrap()),
        sha
    );

    // Seeding survives a restart, and so does what it uploaded so far.
    let ferry = Ferry::restart(ferry.stop());
    let (_, job) = ferry.get_json(&format!("/jobs/{id}")).await;
    assert_eq!(job["status"], "seeding", "{job}");
    assert!(
        job["progress"]["uploaded_bytes"].as_u64().unwrap() >= 100 * MIB,
        "{job}"
    );

    // qBittorrent downloads it from the magnet link (from the restarted Ferry).
    let qbt = Qbt::start(&root).await;
    let qbt_dir = root.join("qbt-save");
    qbt.add_magnet(&magnet, &qbt_dir).await;
    qbt.wait_complete(&info_hash, Duration::from_secs(180))
        .await;
    assert_eq!(sha256_hex(&std::fs::read(qbt_dir.join(name)).unwrap()), sha);

    // Two full copies uploaded: the default ratio limit (2.0) ends seeding, and the job shows
    // what it uploaded.
    let done = ferry
        .wait_status(&id, "completed", Duration::from_secs(60))
        .await;
    assert!(
        done["progress"]["uploaded_bytes"].as_u64().unwrap() >= 200 * MIB,
        "{done}"
    );
    assert!(done["progress"]["ratio"].as_f64().unwrap() >= 2.0, "{done}");
    let seed_dir = ferry.data_dir.join("staging/.seeding").join(&id);
    wait_gone(&seed_dir).await;
    // The delivered file stays.
    ferry.assert_files_match_one(&id, name, &sha).await;
}

async fn wait_gone(path: &std::path::Path) {
    for _ in 0..100 {
        if !path.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} is still there", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_fetched_through_an_http_proxy() {
    init();
    if !require(&["tinyproxy"]) {
        return;
    }
    let (_keep, root) = test_dir();
    let name = "data.bin";
    let file = root.join("origin").join(name);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let sha = random_file(&file, 12 * MIB);
    let origin = Origin::start(&file, name).await;
    let (proxy, _proxy_proc) = tinyproxy(&root, "127.0.0.4");
    let ferry = Ferry::start(
        &root.join("ferry"),
        &[
            ("FERRY_FETCH__PROXY", &format!("http://127.0.0.1:{proxy}")),
            ("FERRY_FETCH__PROXY_REQUIRED", "true"),
            ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]"),
        ],
    );
    let job = ferry
        .submit_url(&format!("http://{}/{name}", origin.addr))
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let done = ferry
        .wait_status(&id, "completed", Duration::from_secs(120))
        .await;
    assert_eq!(done["content_sha256"], sha.as_str());
    ferry.assert_files_match_one(&id, name, &sha).await;
    let peers = origin.seen.peers();
    assert!(
        !peers.is_empty() && peers.iter().all(|p| *p == loopback("127.0.0.4")),
        "{peers:?}"
    );
    assert!(
        origin.seen.vias().iter().all(|v| v.contains("tinyproxy")),
        "{:?}",
        origin.seen.vias()
    );

    // Identical content from another URL is stored once and packaged once.
    let (status, again) = ferry
        .post_json(
            "/jobs",
            json!({"source": {"url": format!("http://{}/{name}?mirror=2&X-Amz-Signature=QUERY-SECRET-1", origin.addr)}}),
        )
        .await;
    assert_eq!(status, 201, "{again}");
    let again_id = again["id"].as_str().unwrap().to_owned();
    ferry
        .wait_status(&again_id, "completed", Duration::from_secs(120))
        .await;
    let (_, t1) = ferry.get_json(&format!("/jobs/{id}/magnet")).await;
    let (_, t2) = ferry.get_json(&format!("/jobs/{again_id}/magnet")).await;
    assert_eq!(t1["info_hash"], t2["info_hash"]);
    let contents = std::fs::read_dir(ferry.data_dir.join("staging/.content"))
        .unwrap()
        .count();
    assert_eq!(contents, 1, "identical content is stored once");

    // A seeding job: DELETE stops seeding and frees its seeding copy; the job is completed
    // and its file stays reachable.
    let (status, seeding) = ferry
        .post_json("/jobs", json!({"source": {"url": format!("http://{}/{name}?seed=1", origin.addr)}, "seed": true}))
        .await;
    assert_eq!(status, 201, "{seeding}");
    let seed_id = seeding["id"].as_str().unwrap().to_owned();
    let job: Value = ferry
        .wait_status(&seed_id, "seeding", Duration::from_secs(120))
        .await;
    assert_eq!(
        job["seed"]["ratio"], 2.0,
        "the server default applies: {job}"
    );
    let seed_dir = ferry.data_dir.join("staging/.seeding").join(&seed_id);
    assert!(seed_dir.exists());
    let r = ferry
        .req(Method::DELETE, &format!("/jobs/{seed_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let stopped: Value = r.json().await.unwrap();
    assert_eq!(stopped["status"], "completed", "{stopped}");
    wait_gone(&seed_dir).await;
    assert_eq!(ferry.job(&seed_id).await["status"], "completed");
    ferry.assert_files_match_one(&seed_id, name, &sha).await;

    // A refused redirect: the submitted URL's query (a token) is in no answer and no log.
    let (status, body) = ferry
        .post_json(
            "/jobs",
            json!({"source": {"url": format!("http://{}/redirect?to=http://169.254.169.254/latest&token=QUERY-SECRET-2", origin.addr)}}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("url_not_allowed"))
    );
    assert!(!body.to_string().contains("QUERY-SECRET"), "{body}");
    // Logs name URLs without their query strings (signed links, tokens).
    let log = ferry.proc.log_text();
    assert!(log.contains("/data.bin"), "the fetch is logged");
    assert!(
        !log.contains("QUERY-SECRET"),
        "a query string reached the log:\n{}",
        log.lines()
            .filter(|l| l.contains("QUERY-SECRET"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Pause and resume, fail and retry: a URL job runs its own stage (the fetch) again, and the
/// resumed fetch continues the partial file with `Range` rather than starting over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_job_resumes_and_retries_with_its_own_stage() {
    init();
    let (_keep, root) = test_dir();
    let name = "resumable.bin";
    let file = root.join("origin").join(name);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let sha = random_file(&file, 8 * MIB);
    let origin = Origin::start(&file, name).await;
    let ferry = Ferry::start(
        &root.join("ferry"),
        &[
            ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]"),
            ("FERRY_WORKERS__PROGRESS_INTERVAL", "50ms"),
            ("FERRY_WORKERS__MAX_ATTEMPTS", "2"),
            ("FERRY_WORKERS__RETRY_BASE_DELAY", "200ms"),
        ],
    );
    let url = format!("http://{}/{name}", origin.addr);

    // Pause mid-fetch: the origin holds the body after 3 MiB, so the fetch is in flight.
    origin.control.hold_at(Some(3 * MIB));
    let job = ferry.submit_url(&url).await;
    let id = job["id"].as_str().unwrap().to_owned();
    let watch = ferry
        .req(Method::GET, &format!("/jobs/{id}/events"))
        .send()
        .await
        .unwrap();
    read_sse(watch, Duration::from_secs(60), |e| {
        e.data["status"] == "downloading"
            && e.data["progress"]["bytes_done"].as_u64().unwrap_or(0) >= 3 * MIB
    })
    .await;
    let (status, paused) = ferry
        .post_json(&format!("/jobs/{id}/pause"), json!({}))
        .await;
    assert_eq!((status, paused["status"].as_str()), (200, Some("paused")));
    // The fetch stage noticed the pause and hung up; the partial file stays.
    origin.control.wait_idle().await;
    origin.control.hold_at(None);
    let (status, resumed) = ferry
        .post_json(&format!("/jobs/{id}/resume"), json!({}))
        .await;
    assert_eq!(
        (status, resumed["status"].as_str()),
        (200, Some("downloading")),
        "{resumed}"
    );
    let done = ferry
        .wait_status(&id, "completed", Duration::from_secs(60))
        .await;
    assert_eq!(done["content_sha256"], sha.as_str(), "{done}");
    ferry.assert_files_match_one(&id, name, &sha).await;
    let ranges = origin.seen.ranges.lock().unwrap().clone();
    assert!(
        ranges.iter().flatten().any(|r| r.starts_with("bytes=")
            && r != "bytes=0-"
            && r.trim_start_matches("bytes=")
                .trim_end_matches('-')
                .parse::<u64>()
                .is_ok_and(|from| from > 0)),
        "the resumed fetch continued the partial file: {ranges:?}"
    );

    // Fail: the origin answers 500 until the retries run out; fixed, the retry completes.
    origin.control.fail(Some(500));
    let again = format!("{url}?second");
    let (status, job) = ferry
        .post_json("/jobs", json!({"source": {"url": again}}))
        .await;
    assert_eq!(status, 201, "a 500 at submission is worth retrying: {job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let failed = ferry
        .wait_status(&id, "failed", Duration::from_secs(60))
        .await;
    assert_eq!(failed["error"]["code"], "url_unavailable", "{failed}");
    origin.control.fail(None);
    let (status, retried) = ferry
        .post_json(&format!("/jobs/{id}/retry"), json!({}))
        .await;
    assert_eq!((status, retried["status"].as_str()), (200, Some("queued")));
    let done = ferry
        .wait_status(&id, "completed", Duration::from_secs(60))
        .await;
    assert_eq!(done["content_sha256"], sha.as_str(), "{done}");
    ferry.assert_files_match_one(&id, name, &sha).await;
}

/// A URL that answers with no content fails at once with a code that says so (there is no
/// torrent of nothing to package), and nothing is left in staging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_with_no_content_fails_as_url_empty() {
    init();
    let (_keep, root) = test_dir();
    let name = "empty.txt";
    let file = root.join("origin").join(name);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"").unwrap();
    let origin = Origin::start(&file, name).await;
    let ferry = Ferry::start(
        &root.join("ferry"),
        &[("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]")],
    );
    let job = ferry
        .submit_url(&format!("http://{}/{name}", origin.addr))
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let failed = ferry
        .wait_status(&id, "failed", Duration::from_secs(60))
        .await;
    assert_eq!(failed["error"]["code"], "url_empty", "{failed}");
    // The submission's check of the URL, then one fetch: no retry.
    assert_eq!(origin.seen.ranges.lock().unwrap().len(), 2);
    let staged = ferry.data_dir.join("staging").join(&id);
    assert!(
        !staged.exists(),
        "nothing staged is left: {}",
        staged.display()
    );
}
