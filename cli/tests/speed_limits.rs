//! A job's own speed limits and the queue behind the cap of torrents running at once, end to
//! end with real peers on loopback (opentracker, aria2c) and the real `ferry serve`.
//!
//! The limits are checked from below only: a limited transfer must take at least the time
//! its limit allows (load can only make it slower), and a lifted limit must let the rest
//! through well before the old limit could have.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::swarm::Swarm;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const LONG: Duration = Duration::from_secs(180);

fn id_of(job: &Value) -> String {
    job["id"].as_str().unwrap().to_owned()
}

async fn put_limits(ferry: &Ferry, id: &str, body: Value) -> (u16, Value) {
    let r = ferry
        .req(Method::PUT, &format!("/jobs/{id}/limits"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_download_limit_holds_and_lifting_it_lets_the_rest_through() {
    if !require(&["opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let size = 12 * MIB;
    let limit = 256 * KIB;
    let s = Swarm::start("limited", &[("limited.bin", size)]);
    let ferry = Ferry::start(&s.root.join("ferry"), &[]);
    let (status, job) = ferry
        .post_json(
            "/jobs",
            json!({"source": {"magnet": s.magnet()}, "download_limit": limit}),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["download_limit"], limit, "{job}");
    assert!(job.get("upload_limit").is_none(), "{job}");
    let id = id_of(&job);

    // Unlimited, this seeder sends 1.5 MiB in a fraction of a second. At 256 KiB/s it takes
    // at least 5 s (4.5 s after a full first second's burst), counted from the first bytes
    // seen (which are seen late, so the time measured is if anything too short).
    let started = ferry.wait_bytes(&id, 1, LONG).await;
    let seen = Instant::now();
    let from = started["progress"]["bytes_done"].as_u64().unwrap();
    ferry.wait_bytes(&id, from + 3 * MIB / 2, LONG).await;
    let limited = seen.elapsed();
    assert!(
        limited >= Duration::from_millis(3500),
        "1.5 MiB arrived in {limited:?} under a limit of 256 KiB/s"
    );
    let running = ferry.job(&id).await;
    assert_eq!(running["status"], "downloading", "{running}");
    assert!(
        running["progress"]["bytes_done"].as_u64().unwrap() < size / 2,
        "{running}"
    );

    // Lifted while it runs: the other 10 MiB or more would take 40 s at the limit.
    let (status, lifted) = put_limits(&ferry, &id, json!({})).await;
    assert_eq!(status, 200, "{lifted}");
    assert!(lifted.get("download_limit").is_none(), "{lifted}");
    let lifted_at = Instant::now();
    ferry.wait_status(&id, "completed", LONG).await;
    let rest = lifted_at.elapsed();
    assert!(
        rest < Duration::from_secs(30),
        "the rest took {rest:?}: the limit was not lifted"
    );
    ferry.assert_files_match(&id, &s.payload, None).await;
    eprintln!("1.5 MiB under the limit: {limited:?}; the rest once lifted: {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeding_jobs_upload_limit_holds() {
    if !require(&["opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let size = MIB;
    let limit = 128 * KIB;
    let s = Swarm::start("shared", &[("shared.bin", size)]);
    let ferry = Ferry::start(&s.root.join("ferry"), &[]);
    let (status, job) = ferry
        .post_json(
            "/jobs",
            json!({
                "source": {"magnet": s.magnet()},
                "seed": true,
                "seed_ratio": 100.0,
                "upload_limit": limit,
            }),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    let id = id_of(&job);
    ferry.wait_status(&id, "seeding", LONG).await;

    // Ferry is now the only seeder: a new leecher gets every byte from it.
    let Swarm {
        root,
        torrent,
        seeder,
        tracker,
        ..
    } = s;
    drop(seeder);
    tracker.wait_for_seeders(&torrent.info_hash, 1);
    let leecher = root.join("leecher");
    let started = Instant::now();
    let done = tokio::task::spawn_blocking({
        let (path, leecher) = (torrent.path.clone(), leecher.clone());
        move || aria2c_download(&path, &leecher, 120)
    })
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(
        done,
        "the leecher did not finish:\n{}",
        ferry.proc.log_text()
    );
    // 1 MiB at 128 KiB/s, less a first second's burst: at least 7 s.
    assert!(
        took >= Duration::from_secs(6),
        "the leecher got 1 MiB in {took:?} from a seed limited to 128 KiB/s"
    );
    let got = std::fs::read(leecher.join("shared").join("shared.bin")).unwrap();
    assert_eq!(got.len() as u64, size);
    let seeding = ferry.job(&id).await;
    assert_eq!(seeding["status"], "seeding", "{seeding}");
    assert_eq!(seeding["upload_limit"], limit, "{seeding}");
    eprintln!("1 MiB from a seed limited to 128 KiB/s took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_show_their_place_and_move_up_as_others_leave() {
    if !require(&["opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    // One torrent at a time. `a` and `b` are held at 16 KiB/s (a minute each), so they are
    // still running at every check below.
    let a = Swarm::start("first", &[("first.bin", MIB)]);
    let b = Swarm::start("second", &[("second.bin", MIB)]);
    let c = Swarm::start("third", &[("third.bin", 64 * KIB)]);
    let ferry = Ferry::start(&a.root.join("ferry"), &[("FERRY_WORKERS__DOWNLOADS", "1")]);
    let submit = |magnet: String, limit: Option<u64>| {
        let ferry = &ferry;
        async move {
            let mut body = json!({"source": {"magnet": magnet}});
            if let Some(limit) = limit {
                body["download_limit"] = json!(limit);
            }
            let (status, job) = ferry.post_json("/jobs", body).await;
            assert_eq!(status, 201, "{job}");
            id_of(&job)
        }
    };
    let slow = Some(16 * KIB);
    let first = submit(a.magnet(), slow).await;
    ferry.wait_status(&first, "downloading", LONG).await;
    let second = submit(b.magnet(), slow).await;
    let third = submit(c.magnet(), None).await;

    let place = |id: String| {
        let ferry = &ferry;
        async move { ferry.job(&id).await["queue_position"].as_u64() }
    };
    assert_eq!(
        place(first.clone()).await,
        None,
        "a running job has no place"
    );
    assert_eq!(place(second.clone()).await, Some(1));
    assert_eq!(place(third.clone()).await, Some(2));
    let (status, page) = ferry.get_json("/jobs").await;
    assert_eq!(status, 200);
    let listed: Vec<(String, Option<u64>)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (id_of(j), j["queue_position"].as_u64()))
        .collect();
    for (id, want) in [(&first, None), (&second, Some(1)), (&third, Some(2))] {
        assert!(
            listed.contains(&(id.clone(), want)),
            "{id} listed with place {want:?}: {listed:?}"
        );
    }

    // The running job pauses: the next one starts, the last moves up.
    let (status, paused) = ferry
        .post_json(&format!("/jobs/{first}/pause"), json!({}))
        .await;
    assert_eq!(status, 200, "{paused}");
    ferry.wait_status(&second, "downloading", LONG).await;
    assert_eq!(place(third.clone()).await, Some(1));
    assert_eq!(
        place(first.clone()).await,
        None,
        "a paused job has no place"
    );

    // Resumed while the worker is busy: it queues behind the others, with its place.
    let (status, _) = put_limits(&ferry, &first, json!({})).await;
    assert_eq!(status, 200);
    let (status, resumed) = ferry
        .post_json(&format!("/jobs/{first}/resume"), json!({}))
        .await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(
        (
            resumed["status"].as_str(),
            resumed["queue_position"].as_u64()
        ),
        (Some("queued"), Some(2)),
        "{resumed}"
    );
    assert_eq!(place(third.clone()).await, Some(1));

    // A queued job can be paused (it leaves the queue; the one behind it moves up) and
    // resumed (queued again, with a place).
    let (status, paused) = ferry
        .post_json(&format!("/jobs/{third}/pause"), json!({}))
        .await;
    assert_eq!(
        (
            status,
            paused["status"].as_str(),
            paused["queue_position"].as_u64()
        ),
        (200, Some("paused"), None),
        "{paused}"
    );
    assert_eq!(place(first.clone()).await, Some(1));
    let (status, resumed) = ferry
        .post_json(&format!("/jobs/{third}/resume"), json!({}))
        .await;
    assert_eq!(
        (status, resumed["status"].as_str()),
        (200, Some("queued")),
        "{resumed}"
    );
    assert!(resumed["queue_position"].as_u64().is_some(), "{resumed}");

    // Lifting the running job's limit lets it finish, and the queue runs on.
    let (status, _) = put_limits(&ferry, &second, json!({"download_limit": null})).await;
    assert_eq!(status, 200);
    ferry.wait_status(&second, "completed", LONG).await;
    ferry.wait_status(&third, "completed", LONG).await;
    ferry.wait_status(&first, "completed", LONG).await;
    ferry.assert_files_match(&first, &a.payload, None).await;
    ferry.assert_files_match(&second, &b.payload, None).await;
    ferry.assert_files_match(&third, &c.payload, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_speed_limits_are_refused_with_clear_errors() {
    let (_dir, root) = test_dir();
    let ferry = Ferry::start(&root.join("ferry"), &[]);
    let magnet = lonely_magnet("limits");

    for bad in [
        json!({"source": {"magnet": magnet}, "download_limit": 100}),
        json!({"source": {"magnet": magnet}, "upload_limit": 0}),
        json!({"source": {"magnet": magnet}, "download_limit": 5_000_000_000u64}),
        json!({"source": {"magnet": magnet}, "download_limit": -1}),
        json!({"source": {"magnet": magnet}, "upload_limit": "fast"}),
    ] {
        let (status, body) = ferry.post_json("/jobs", bad.clone()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}: {body}"
        );
    }
    // A URL is fetched at full speed: a download limit for one is refused, not ignored.
    let (status, body) = ferry
        .post_json(
            "/jobs",
            json!({"source": {"url": "https://files.example/big.iso"}, "download_limit": 20000}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("torrents"),
        "{body}"
    );
    // The multipart form of a .torrent checks them too.
    let form = reqwest::multipart::Form::new()
        .part(
            "torrent",
            reqwest::multipart::Part::bytes(lonely_torrent("limits")).file_name("x.torrent"),
        )
        .text("download_limit", "1");
    let r = ferry
        .req(Method::POST, "/jobs/torrent")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    let (status, job) = ferry
        .post_json(
            "/jobs",
            json!({"source": {"magnet": magnet}, "download_limit": 16384, "upload_limit": 4294967295u64}),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(
        (&job["download_limit"], &job["upload_limit"]),
        (&json!(16384), &json!(4294967295u64))
    );
    let id = id_of(&job);
    for bad in [
        json!({"download_limit": 16383}),
        json!({"upload_limit": 4294967296u64}),
        json!({"download_limit": 1.5}),
        json!([]),
        // A misspelt field would otherwise read as "no limit".
        json!({"download_limt": 20000}),
        json!({"downloadLimit": 20000}),
    ] {
        let (status, body) = put_limits(&ferry, &id, bad.clone()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}: {body}"
        );
    }
    let unchanged = ferry.job(&id).await;
    assert_eq!(unchanged["download_limit"], 16384, "{unchanged}");
    let (status, body) = put_limits(
        &ferry,
        "00000000-0000-7000-8000-000000000000",
        json!({"download_limit": 20000}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("job_not_found"))
    );
    let (status, body) = put_limits(&ferry, "not-an-id", json!({})).await;
    assert_eq!(status, 404, "{body}");
}
