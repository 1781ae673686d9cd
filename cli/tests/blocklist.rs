//! The operator's block lists end to end: torrents and URLs refused at submission with
//! `422 blocked` (nothing contacted), peers in an eMule or P2P list never connected to, and
//! both lists re-read when their files change, without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::origin::tripwire;
use common::*;
use serde_json::json;

/// Waits until `what` is in the server's log `count` times.
fn wait_for_log(ferry: &Ferry, what: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ferry.proc.log_text().matches(what).count() < count {
        assert!(Instant::now() < deadline, "no {what:?} in the log");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn wait_for_hit(hits: &std::sync::atomic::AtomicUsize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while hits.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "{what} was never connected to");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_torrents_and_urls_are_refused_and_the_list_reloads() {
    init();
    let (_keep, root) = test_dir();
    let torrent = lonely_torrent("blocked-release");
    let hash = ferry_torrent::inspect(&torrent).unwrap().info_hash.to_hex();
    let (origin, origin_hits) = tripwire("127.0.0.1").await;
    let list = root.join("blocklist.txt");
    std::fs::write(
        &list,
        format!(
            "# refused here\n{hash}\nhttp://127.0.0.1:{}/*.iso\n",
            origin.port()
        ),
    )
    .unwrap();
    let ferry = Ferry::start(
        &root.join("ferry"),
        &[
            ("FERRY_BLOCKLIST__FILE", list.to_str().unwrap()),
            ("FERRY_BLOCKLIST__RELOAD_EVERY", "200ms"),
            (
                "FERRY_BLOCKLIST__INFO_HASHES",
                &format!("[\"{}\"]", "a".repeat(40)),
            ),
            ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]"),
        ],
    );

    let magnet = format!("magnet:?xt=urn:btih:{hash}&dn=blocked");
    let (status, body) = ferry
        .post_json("/jobs", json!({"source": {"magnet": magnet}}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("blocked")),
        "{body}"
    );
    let (status, body) = ferry.submit_torrent(&torrent, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("blocked")),
        "{body}"
    );
    // A fixed entry from the configuration.
    let fixed = format!("magnet:?xt=urn:btih:{}", "a".repeat(40));
    let (status, body) = ferry
        .post_json("/jobs", json!({"source": {"magnet": fixed}}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("blocked")),
        "{body}"
    );
    let url = format!("http://127.0.0.1:{}/dist/Release.ISO", origin.port());
    let (status, body) = ferry
        .post_json("/jobs", json!({"source": {"url": url}}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("blocked")),
        "{body}"
    );
    // A URL that is not on the list but redirects to one that is: refused as well.
    let page = root.join("page.html");
    std::fs::write(&page, "<html></html>").unwrap();
    let redirecting = common::origin::Origin::start(&page, "page.html").await;
    let (status, body) = ferry
        .post_json(
            "/jobs",
            json!({"source": {"url": format!(
                "http://{}/redirect?to=http://127.0.0.1:{}/mirror/release.iso",
                redirecting.addr,
                origin.port()
            )}}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("blocked")),
        "{body}"
    );
    assert_eq!(
        origin_hits.load(Ordering::SeqCst),
        0,
        "a refused URL is never contacted"
    );
    let (_, jobs) = ferry.get_json("/jobs").await;
    assert_eq!(jobs["items"].as_array().map(Vec::len), Some(0), "{jobs}");

    // The operator takes the hash off the list: accepted without a restart. A list that
    // does not parse leaves the one in force.
    std::fs::write(&list, "not an entry\n").unwrap();
    wait_for_log(&ferry, "a changed block list was not loaded", 1);
    let (status, _) = ferry
        .post_json("/jobs", json!({"source": {"magnet": magnet}}))
        .await;
    assert_eq!(status, 422, "still blocked");
    std::fs::write(&list, format!("http://127.0.0.1:{}/*.iso\n", origin.port())).unwrap();
    wait_for_log(&ferry, "submission block list reloaded", 1);
    let (status, body) = ferry
        .post_json("/jobs", json!({"source": {"magnet": magnet}}))
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_on_the_ip_list_are_never_connected_to_and_the_list_reloads() {
    init();
    let (_keep, root) = test_dir();
    let list = root.join("ipfilter.dat");
    // eMule's format, zero-padded: 127.0.0.5 is blocked; a level of 128 or more allows.
    std::fs::write(
        &list,
        "127.000.000.005 - 127.000.000.005 , 000 , test peers\n\
         127.000.000.006 - 127.000.000.006 , 200 , allowed by its level\n",
    )
    .unwrap();
    let ferry = Ferry::start(
        &root.join("ferry"),
        &[
            ("FERRY_BLOCKLIST__PEERS", list.to_str().unwrap()),
            ("FERRY_BLOCKLIST__RELOAD_EVERY", "200ms"),
        ],
    );

    // A magnet naming a blocked and an open peer: the open one is dialled, the blocked
    // one never (librqbit dials a magnet's peers together).
    let (blocked, blocked_hits) = tripwire("127.0.0.5").await;
    let (open, open_hits) = tripwire("127.0.0.6").await;
    let magnet = format!("{}&x.pe={blocked}&x.pe={open}", lonely_magnet("peers-one"));
    ferry.submit_magnet(&magnet).await;
    wait_for_hit(&open_hits, "the open peer").await;
    // The blocked peer comes first in the magnet: it would have been dialled by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(blocked_hits.load(Ordering::SeqCst), 0, "the blocked peer");

    // The operator swaps the list (P2P format now): 127.0.0.6 blocked, 127.0.0.5 open.
    std::fs::write(&list, "# PeerGuardian\nsome range:127.0.0.6-127.0.0.6\n").unwrap();
    wait_for_log(&ferry, "peer block list reloaded", 1);
    let (blocked, blocked_hits) = tripwire("127.0.0.6").await;
    let (open, open_hits) = tripwire("127.0.0.5").await;
    let magnet = format!("{}&x.pe={blocked}&x.pe={open}", lonely_magnet("peers-two"));
    ferry.submit_magnet(&magnet).await;
    wait_for_hit(&open_hits, "the newly open peer").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        blocked_hits.load(Ordering::SeqCst),
        0,
        "the newly blocked peer"
    );
}
