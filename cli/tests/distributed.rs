//! The distributed mode under faults: real `ferry-api`, worker processes, PostgreSQL, Redis,
//! opentracker and an aria2c seeder on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::login::{session_cookie, setup_link};
use common::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;
const SIGSTOP: i32 = 19;
const SIGCONT: i32 = 18;

/// `count` torrents of about 3 MiB each, a tracker that knows them and one seeder.
fn swarm(root: &std::path::Path, count: usize) -> (Vec<(Payload, Torrent)>, Tracker, Seeder) {
    let content = root.join("seed");
    let payloads: Vec<Payload> = (0..count)
        .map(|i| {
            let name = format!("t{i:02}");
            Payload::create(
                &content,
                &name,
                &[("a.bin", 3 * MIB + i as u64 * 4096), ("b.txt", 10_000)],
            )
        })
        .collect();
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
    let tracker = Tracker::start(root, &hashes);
    let torrents: Vec<Torrent> = payloads
        .iter()
        .map(|p| {
            p.make_torrent(
                &tracker.announce(),
                &root.join(format!("{}.torrent", p.name)),
            )
        })
        .collect();
    let paths: Vec<&std::path::Path> = torrents.iter().map(|t| t.path.as_path()).collect();
    let seeder = Seeder::start(root, &content, &paths);
    for t in &torrents {
        tracker.wait_for_seeders(&t.info_hash, 1);
    }
    (
        payloads.into_iter().zip(torrents).collect(),
        tracker,
        seeder,
    )
}

fn needs() -> bool {
    init();
    require(&[
        "opentracker",
        "aria2c",
        "mktorrent",
        "psql",
        "redis-cli",
        "redis-server",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_jobs_complete_exactly_once_when_a_worker_is_killed() {
    if !needs() {
        return;
    }
    let Some(db) = FreshDb::create() else { return };
    let (_keep, root) = test_dir();
    let (swarm, _tracker, _seeder) = swarm(&root, 20);
    let redis = test_redis_url();
    // Slow enough that jobs are mid-download when the worker dies.
    let cluster = Cluster::new(
        &root,
        &db.url,
        &redis,
        &[("FERRY_TORRENT__DOWNLOAD_LIMIT", "4194304")],
    );
    cluster.migrate();
    let api = cluster.api();
    let mut doomed = cluster.worker("torrent");
    let _survivor = cluster.worker("torrent");
    let _uploader = cluster.worker("upload");

    // Workers answer their probes.
    let probe = reqwest::get(format!("http://127.0.0.1:{}/health", doomed.probe))
        .await
        .unwrap();
    assert_eq!(probe.status().as_u16(), 200);

    let mut jobs: HashMap<String, usize> = HashMap::new();
    for (i, (_, torrent)) in swarm.iter().enumerate() {
        let (status, job) = api.submit_torrent(&torrent.bytes, None).await;
        assert_eq!(status, 201, "{job}");
        jobs.insert(job["id"].as_str().unwrap().to_owned(), i);
    }

    // Kill one torrent worker while it holds jobs mid-download (its log says which it runs).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = doomed.proc.log_text();
        let running = log.matches("download running").count();
        let done = log.matches("download complete").count();
        if running > done && done >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never got under way:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    doomed.proc.signal(9);
    doomed.proc.wait_timeout(Duration::from_secs(10)).unwrap();

    for id in jobs.keys() {
        api.wait_status(id, "completed", Duration::from_secs(240))
            .await;
    }
    for (id, i) in &jobs {
        let (payload, _) = &swarm[*i];
        api.assert_files_match(id, payload, None).await;
        assert_eq!(
            cluster.completions(id),
            1,
            "job {id} completed exactly once"
        );
        assert_eq!(api.job(id).await["attempts"], 0);
    }
    // Nothing left behind in the queues.
    let settled = Instant::now() + Duration::from_secs(10);
    while cluster.unacknowledged("download") + cluster.unacknowledged("upload") > 0 {
        assert!(Instant::now() < settled, "messages left pending");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(cluster.dead_letters(), 0);
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", _uploader.probe))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("ferry_stage_runs_total"), "{metrics}");
    redis_cli(
        &redis,
        &[
            "EVAL",
            "for _,k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end",
            "0",
            &format!("{}:*", cluster.prefix),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_queued_before_a_redis_restart_still_complete() {
    if !needs() {
        return;
    }
    let Some(db) = FreshDb::create() else { return };
    let (_keep, root) = test_dir();
    let (swarm, _tracker, _seeder) = swarm(&root, 3);
    let mut redis = OwnRedis::start(&root);
    let cluster = Cluster::new(&root, &db.url, &redis.url(), &[]);
    cluster.migrate();
    let api = cluster.api();
    let _uploader = cluster.worker("upload");

    // Queued, with no torrent worker to take them yet.
    let mut ids = Vec::new();
    for (_, torrent) in &swarm[..2] {
        let (status, job) = api.submit_torrent(&torrent.bytes, None).await;
        assert_eq!(status, 201, "{job}");
        ids.push(job["id"].as_str().unwrap().to_owned());
    }

    // Redis goes away (losing every stream: it keeps nothing on disk).
    redis.stop();
    let (status, body) = api.submit_torrent(&swarm[2].1.bytes, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("service_unavailable")),
        "{body}"
    );
    let health = reqwest::get(api.url("/health")).await.unwrap();
    assert_eq!(health.status().as_u16(), 503);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "degraded");
    // Reads that need only the database keep working.
    let (status, page) = api.get_json("/jobs").await;
    assert_eq!(status, 200);
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        2,
        "the refused submission left nothing behind"
    );

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = api.submit_torrent(&swarm[2].1.bytes, None).await;
        if status == 201 {
            ids.push(body["id"].as_str().unwrap().to_owned());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API did not recover: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _worker = cluster.worker("torrent");
    for (i, id) in ids.iter().enumerate() {
        api.wait_status(id, "completed", Duration::from_secs(120))
            .await;
        api.assert_files_match(id, &swarm[i].0, None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_that_keeps_failing_backs_off_then_dead_letters() {
    if !needs() {
        return;
    }
    let Some(db) = FreshDb::create() else { return };
    let (_keep, root) = test_dir();
    let redis = test_redis_url();
    let cluster = Cluster::new(
        &root,
        &db.url,
        &redis,
        &[
            ("FERRY_WORKERS__MAX_ATTEMPTS", "3"),
            ("FERRY_WORKERS__RETRY_BASE_DELAY", "1s"),
        ],
    );
    cluster.migrate();
    let api = cluster.api();
    let _worker = cluster.worker("torrent");
    // No tracker, no peer address and no DHT: the engine cannot even look for peers.
    let job = api
        .submit_magnet("magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=nowhere")
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let failed = api
        .wait_status(&id, "failed", Duration::from_secs(60))
        .await;
    let elapsed = started.elapsed();
    assert_eq!(failed["attempts"], 3, "{failed}");
    assert_eq!(failed["error"]["code"], "engine_error", "{failed}");
    // Backoff between the three attempts: 1 s, then 2 s.
    assert!(
        elapsed >= Duration::from_secs(3),
        "retried too fast: {elapsed:?}"
    );
    assert_eq!(cluster.dead_letters(), 1);
    let dead = redis_cli(&redis, &["XRANGE", &cluster.key("q:dead"), "-", "+"]);
    assert!(
        dead.contains(&id) && dead.contains("engine_error"),
        "{dead}"
    );
    assert_eq!(cluster.unacknowledged("download"), 0);
    // The user retries; it fails again the same way, and is dead-lettered again.
    let (status, retried) = api
        .post_json(&format!("/jobs/{id}/retry"), serde_json::json!({}))
        .await;
    assert_eq!(
        (status, retried["status"].as_str()),
        (200, Some("queued")),
        "{retried}"
    );
    api.wait_status(&id, "failed", Duration::from_secs(60))
        .await;
    assert_eq!(cluster.dead_letters(), 2);
    redis_cli(
        &redis,
        &[
            "EVAL",
            "for _,k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end",
            "0",
            &format!("{}:*", cluster.prefix),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_with_sigterm_hands_its_job_back_and_any_api_sees_it() {
    if !needs() {
        return;
    }
    let Some(db) = FreshDb::create() else { return };
    let (_keep, root) = test_dir();
    let (swarm, _tracker, _seeder) = swarm(&root, 1);
    let redis = test_redis_url();
    let slow = Cluster::new(
        &root,
        &db.url,
        &redis,
        &[("FERRY_TORRENT__DOWNLOAD_LIMIT", "1048576")],
    );
    slow.migrate();
    // Two stateless APIs: submit through one, watch through the other.
    let api1 = slow.api();
    let api2 = slow.api();
    let _uploader = slow.worker("upload");
    let mut first = slow.worker("torrent");
    let (status, job) = api1.submit_torrent(&swarm[0].1.bytes, None).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let watch = api2
        .req(reqwest::Method::GET, &format!("/jobs/{id}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status().as_u16(), 200);
    let events = tokio::spawn(read_sse(watch, Duration::from_secs(180), |_| false));

    let deadline = Instant::now() + Duration::from_secs(60);
    while !first.proc.log_text().contains("download running") {
        assert!(
            Instant::now() < deadline,
            "the worker never started the job"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.proc.signal(15);
    let status = first
        .proc
        .wait_timeout(Duration::from_secs(40))
        .expect("the worker stops within its grace period");
    assert!(status.success(), "{status}:\n{}", first.proc.log_text());
    assert!(first.proc.log_text().contains("worker stopped"));
    assert_eq!(
        slow.unacknowledged("download"),
        0,
        "the job was handed back, not left pending"
    );
    assert_ne!(api1.job(&id).await["status"], "completed");

    // Another worker picks it up at once (no lease to wait out) and finishes it.
    let fast = Cluster {
        env: slow
            .env
            .iter()
            .filter(|(k, _)| k != "FERRY_TORRENT__DOWNLOAD_LIMIT")
            .cloned()
            .collect(),
        ..slow
    };
    let _second = fast.worker("torrent");
    let done = api2
        .wait_status(&id, "completed", Duration::from_secs(60))
        .await;
    assert_eq!(done["attempts"], 0);
    api2.assert_files_match(&id, &swarm[0].0, None).await;
    let events = events.await.unwrap();
    assert_eq!(
        events.last().unwrap().data["status"],
        "completed",
        "api2 streamed the job to the end"
    );
    assert!(events.iter().any(|e| e.event == "progress"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_job_is_fetched_packaged_delivered_and_seeded_by_three_workers() {
    if !needs() {
        return;
    }
    let Some(db) = FreshDb::create() else { return };
    let (_keep, root) = test_dir();
    let name = "dataset.tar";
    let file = root.join("origin").join(name);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let sha = common::origin::random_file(&file, 24 * MIB);
    let origin = common::origin::Origin::start(&file, name).await;

    let (tracker, info_hash) = common::origin::tracker_for_packaged(&root, &file, name);

    let redis = test_redis_url();
    let trackers = format!("[\"{}\"]", tracker.announce());
    let cluster = Cluster::new(
        &root,
        &db.url,
        &redis,
        &[
            ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]"),
            ("FERRY_PACKAGE__TRACKERS", &trackers),
        ],
    );
    cluster.migrate();
    let api = cluster.api();
    let fetcher = cluster.worker("fetch");
    let uploader = cluster.worker("upload");
    let seeder = cluster.worker("torrent");

    let (status, job) = api
        .post_json(
            "/jobs",
            serde_json::json!({"source": {"url": format!("http://{}/{name}", origin.addr)}, "seed": true, "seed_ratio": 1.0}),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let seeding = api
        .wait_status(&id, "seeding", Duration::from_secs(120))
        .await;
    assert_eq!(seeding["content_sha256"], sha.as_str());
    assert_eq!(seeding["info_hash"], info_hash.as_str());
    assert!(
        fetcher.proc.log_text().contains(&id),
        "the fetch worker ran it"
    );
    // An admin sees the three workers, each with the stages it takes work from.
    let (_, health) = api.get_json("/health").await;
    let mut seen: Vec<Vec<&str>> = health["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("no workers: {health}"))
        .iter()
        .inspect(|w| assert!(w["idle_secs"].as_u64().unwrap() < 60, "{w}"))
        .map(|w| {
            let mut stages: Vec<&str> = w["stages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect();
            stages.sort_unstable();
            stages
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![vec!["download", "seed"], vec!["fetch"], vec!["upload"]],
        "{health}"
    );
    assert!(
        health["queues"].as_array().is_some_and(|q| q.len() == 4),
        "{health}"
    );
    api.assert_files_match_one(&id, name, &sha).await;
    tracker.wait_for_seeders(&info_hash, 1);

    // A BitTorrent client gets it from the torrent worker; one copy ends seeding (ratio 1.0).
    let torrent = api
        .req(reqwest::Method::GET, &format!("/jobs/{id}/torrent"))
        .send()
        .await
        .unwrap();
    assert_eq!(torrent.status().as_u16(), 200);
    let torrent_path = root.join("got.torrent");
    std::fs::write(&torrent_path, torrent.bytes().await.unwrap()).unwrap();
    let out = root.join("aria2-download");
    let ok = aria2c_download(&torrent_path, &out, 120);
    assert!(ok, "aria2c failed:\n{}", seeder.proc.log_text());
    assert_eq!(sha256_hex(&std::fs::read(out.join(name)).unwrap()), sha);
    let done = api
        .wait_status(&id, "completed", Duration::from_secs(60))
        .await;
    assert!(
        done["progress"]["uploaded_bytes"].as_u64().unwrap() >= 24 * MIB,
        "{done}"
    );
    assert!(
        !cluster.dir.join("staging/.seeding").join(&id).exists(),
        "the seeding copy is freed"
    );

    // Purged while it seeds: the API only marks and stops it; the torrent worker stops the
    // seed and hands the purge to the upload worker, which deletes files and job last.
    let (status, job) = api
        .post_json(
            "/jobs",
            serde_json::json!({"source": {"url": format!("http://{}/{name}?again", origin.addr)}, "seed": true, "seed_ratio": 100.0}),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    let again = job["id"].as_str().unwrap().to_owned();
    api.wait_status(&again, "seeding", Duration::from_secs(120))
        .await;
    let delivered = cluster.dir.join("storage/local").join(&again);
    assert!(delivered.exists());
    let accepted = api.purge(&again).await;
    assert_eq!(accepted["status"], "completed", "{accepted}");
    for gone in [
        delivered,
        cluster.dir.join("staging").join(&again),
        cluster.dir.join("staging/.seeding").join(&again),
    ] {
        assert!(!gone.exists(), "{} is left", gone.display());
    }
    let stopped = log_time(&seeder.proc.log_text(), &again, "seeding stopped");
    let purged = log_time(&uploader.proc.log_text(), &again, "job purged");
    assert!(
        stopped <= purged,
        "the purge ({purged}) waited for the seed to stop ({stopped})"
    );
    assert_eq!(cluster.dead_letters(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_paused_past_its_lease_writes_nothing_after_another_finished_the_job() {
    if !needs() {
        return;
    }
    let Some(db) = FreshDb::create() else { return };
    let (_keep, root) = test_dir();
    let (swarm, _tracker, _seeder) = swarm(&root, 1);
    let redis = test_redis_url();
    // The first worker downloads slowly, so it is mid-download when it is paused.
    let slow = Cluster::new(
        &root,
        &db.url,
        &redis,
        &[("FERRY_TORRENT__DOWNLOAD_LIMIT", "524288")],
    );
    slow.migrate();
    let api = slow.api();
    let uploader = slow.worker("upload");
    let first = slow.worker("torrent");
    let (status, job) = api.submit_torrent(&swarm[0].1.bytes, None).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !first.proc.log_text().contains("download running") {
        assert!(
            Instant::now() < deadline,
            "the worker never started the job"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Paused past its lease (3 s): the queue hands the job to a second worker, which
    // downloads it at full speed and has it delivered.
    first.proc.signal(SIGSTOP);
    let fast = Cluster {
        env: slow
            .env
            .iter()
            .filter(|(k, _)| k != "FERRY_TORRENT__DOWNLOAD_LIMIT")
            .cloned()
            .collect(),
        ..slow
    };
    let second = fast.worker("torrent");
    let done = api
        .wait_status(&id, "completed", Duration::from_secs(90))
        .await;
    assert!(
        second.proc.log_text().contains("download complete"),
        "the second worker finished the download"
    );
    let events_key = fast.key(&format!("progress:{id}"));
    let events = || {
        redis_cli(&redis, &["XLEN", &events_key])
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let events_before = events();

    // The first worker wakes up: it finds it lost the lease and stops without a write.
    first.proc.signal(SIGCONT);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !first.proc.log_text().contains("lost the lease") {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Long enough for a stage that kept running to publish progress (every 0.5 s) and to
    // store a progress snapshot (every 3 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = api.job(&id).await;
    assert_eq!(
        (&after["status"], &after["progress"]),
        (&done["status"], &done["progress"]),
        "the job's progress changed after it was completed:\n{}",
        first.proc.log_text()
    );
    assert_eq!(after, done, "the job changed after it was completed");
    assert_eq!(
        events(),
        events_before,
        "the paused worker published events for a job it no longer held:\n{}",
        redis_cli(&redis, &["XREVRANGE", &events_key, "+", "-", "COUNT", "3"])
    );
    let log = first.proc.log_text();
    assert!(log.contains("lost the lease"), "{log}");
    assert!(!log.contains("download complete"), "{log}");
    assert_eq!(fast.completions(&id), 1);
    assert_eq!(
        uploader.proc.log_text().matches("job delivered").count(),
        1,
        "delivered once"
    );
    assert_eq!(fast.unacknowledged("download"), 0);
    assert_eq!(fast.unacknowledged("upload"), 0);
    assert_eq!(fast.dead_letters(), 0);
    // The first worker is alive and well after its stage ended.
    let probe = reqwest::get(format!("http://127.0.0.1:{}/health", first.probe))
        .await
        .unwrap();
    assert_eq!(probe.status().as_u16(), 200);
    api.assert_files_match(&id, &swarm[0].0, None).await;
}

/// The timestamp of the first log line about `job` that says `what`.
fn log_time(log: &str, job: &str, what: &str) -> String {
    let plain: String = {
        // Strip ANSI colours (the pretty format).
        let mut out = String::new();
        let mut chars = log.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    plain
        .lines()
        .find(|l| l.contains(job) && l.contains(what))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {what:?} for {job} in:\n{plain}"))
        .to_owned()
}

/// Connections a Redis server has open (`CLIENT LIST`, less the asking `redis-cli`).
fn redis_clients(url: &str) -> usize {
    redis_cli(url, &["CLIENT", "LIST"])
        .lines()
        .filter(|l| l.starts_with("id="))
        .count()
        .saturating_sub(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_event_streams_leave_no_redis_connection_behind() {
    if !needs() {
        return;
    }
    let Some(db) = FreshDb::create() else { return };
    let (_keep, root) = test_dir();
    // A Redis of the test's own, so `CLIENT LIST` counts this cluster's connections only.
    let redis = OwnRedis::start(&root);
    let cluster = Cluster::new(
        &root,
        &db.url,
        &redis.url(),
        &[
            ("FERRY_LIMITS__MAX_STREAMS", "100000"),
            ("FERRY_LIMITS__MAX_STREAMS_PER_OWNER", "100000"),
        ],
    );
    cluster.migrate();
    let api = cluster.api();
    let _torrents = cluster.worker("torrent");
    let paused = api.paused_job("quiet").await;
    churn_event_streams(&api, &paused, 40, 8).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let clients = redis_clients(&redis.url());
    let (tasks, fds) = footprint(&api).await;

    let (ok, missing) = churn_event_streams(&api, &paused, 2000, 16).await;
    assert_eq!(
        (ok, missing),
        (1000, 1000),
        "paused job: 200, unknown ids: 404"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now_clients = redis_clients(&redis.url());
        let (now_tasks, now_fds) = footprint(&api).await;
        if now_clients <= clients + 2 && now_tasks <= tasks + 16.0 && now_fds <= fds + 8 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 2000 dropped streams: Redis clients {clients} → {now_clients}, \
             ferry-api tasks {tasks} → {now_tasks}, open fds {fds} → {now_fds}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_api_drains_requests_in_flight_on_sigterm() {
    if !needs() {
        return;
    }
    let Some(db) = FreshDb::create() else { return };
    let (_keep, root) = test_dir();
    let cluster = Cluster::new(&root, &db.url, &test_redis_url(), &[]);
    cluster.migrate();
    let api = cluster.api();
    // No worker runs: the job stays queued and its event stream open.
    let job = api.submit_magnet(&lonely_magnet("queued")).await;
    let id = job["id"].as_str().unwrap().to_owned();
    sigterm_drains(api, &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_instances_share_sessions_and_one_rate_limit_through_redis() {
    init();
    if !require(&["psql", "redis-cli"]) {
        return;
    }
    let Some(db) = FreshDb::create() else { return };
    let (_keep, root) = test_dir();
    let cluster = Cluster::new(
        &root,
        &db.url,
        &test_redis_url(),
        &[
            ("FERRY_AUTH__API_BURST", "6"),
            ("FERRY_AUTH__API_RATE", "1"),
        ],
    );
    cluster.migrate();
    let a = cluster.api();
    let b = cluster.api();
    let http = reqwest::Client::new();
    let r = http
        .post(a.url("/auth/setup"))
        .json(&serde_json::json!({"link": setup_link(&a), "username": "root", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cookie = format!("ferry_session={}", session_cookie(&r));
    let get = |f: &Ferry, path: &str| {
        http.get(f.url(path))
            .header("Cookie", cookie.clone())
            .send()
    };
    // A session made on one instance works on the other, and ends on both at logout.
    assert_eq!(get(&b, "/me").await.unwrap().status().as_u16(), 200);
    // One budget of 6 across both instances: 1 used above, 5 more alternating, then 429.
    for i in 0..5 {
        let f = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            get(f, "/jobs").await.unwrap().status().as_u16(),
            200,
            "request {i}"
        );
    }
    for f in [&a, &b] {
        let r = get(f, "/jobs").await.unwrap();
        assert_eq!(r.status().as_u16(), 429);
        assert!(r.headers().contains_key("retry-after"));
    }
    let r = http
        .post(b.url("/auth/logout"))
        .header("Cookie", cookie.clone())
        .header("Origin", b.base.clone())
        .send()
        .await
        .unwrap();
    // The budget is spent, so logging out waits for the next cell.
    assert_eq!(r.status().as_u16(), 429);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = http
        .post(b.url("/auth/logout"))
        .header("Cookie", cookie.clone())
        .header("Origin", b.base.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(get(&a, "/me").await.unwrap().status().as_u16(), 401);
    // The sessions live in Redis under the deployment's prefix.
    let keys = redis_cli(
        &cluster.redis,
        &[
            "--scan",
            "--pattern",
            &format!("{}:session:*", cluster.prefix),
        ],
    );
    assert!(
        keys.trim().is_empty(),
        "a logged-out session is still in Redis: {keys}"
    );
}
