//! Logs to Loki end to end: the real `ferry serve` pushes to a receiver that decodes Loki's
//! push protocol (snappy-compressed protobuf). A job's lines arrive in a few low-cardinality
//! streams with the job's id in the line; with Loki stopped for 30 s while jobs run and
//! requests pour in, Ferry answers as before, its memory stays flat, and the lines it could
//! not deliver are counted and reported once Loki is back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::loki::{Line, Loki, parse_labels};
use common::origin::{Origin, random_file};
use common::*;
use serde_json::json;

/// Ferry with Loki at `loki`, allowed to fetch from the test's origin on loopback.
fn ferry(dir: &std::path::Path, loki: &Loki, more: &[(&str, &str)]) -> Ferry {
    init();
    let url = loki.url();
    let mut env = vec![
        ("FERRY_LOG__LOKI__URL", url.as_str()),
        ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]"),
    ];
    env.extend_from_slice(more);
    Ferry::start(&dir.join("ferry"), &env)
}

/// The instance label Ferry should use: this machine's name and the process id.
fn instance(f: &Ferry) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!("{host}-{}", f.pid())
}

/// A URL job for `origin`'s file (`tag` makes its URL its own); its id.
async fn submit(f: &Ferry, origin: &Origin, tag: &str) -> String {
    let url = format!("http://{}/file.bin?tag={tag}", origin.addr);
    let (status, job) = f.post_json("/jobs", json!({"source": {"url": url}})).await;
    assert_eq!(status, 201, "{job}");
    job["id"].as_str().unwrap().to_owned()
}

async fn origin(root: &std::path::Path) -> Origin {
    let file = root.join("origin").join("file.bin");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    random_file(&file, 256 * 1024);
    Origin::start(&file, "file.bin").await
}

async fn dropped(f: &Ferry) -> f64 {
    let scrape = f.metrics().await;
    gauge(&scrape, "ferry_log_lines_dropped_total")
        .unwrap_or_else(|| panic!("no ferry_log_lines_dropped_total in /metrics:\n{scrape}"))
}

#[test]
fn labels_parse_as_loki_writes_them() {
    let parsed =
        parse_labels(r#"{service="ferry", role="serve",level="info", q="a \"b\" \\"}"#).unwrap();
    assert_eq!(parsed["service"], "ferry");
    assert_eq!(parsed["role"], "serve");
    assert_eq!(parsed["q"], r#"a "b" \"#);
    assert!(parse_labels("{}").unwrap().is_empty());
    for bad in [
        r#"service="ferry""#,
        "{service=ferry}",
        r#"{a="1",a="2"}"#,
        r#"{a="1" b="2"}"#,
    ] {
        assert!(parse_labels(bad).is_none(), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_lines_reach_loki_labelled_by_process_with_the_job_id_in_the_line() {
    let (_keep, root) = test_dir();
    let loki = Loki::start().await;
    let origin = origin(&root).await;
    let f = ferry(&root, &loki, &[]);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();

    let r = f
        .req(reqwest::Method::POST, "/jobs")
        .header("x-request-id", "loki-e2e-submit")
        .json(&json!({"source": {"url": format!("http://{}/file.bin", origin.addr)}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let job: serde_json::Value = r.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    f.wait_status(&id, "completed", Duration::from_secs(60))
        .await;

    // The fetch stage's line, from inside the job's span, with the job's id in it.
    let fetched = loki
        .wait_for("the job's `fetched` line", Duration::from_secs(20), |l| {
            l.field("message") == Some("fetched") && l.field("job_id") == Some(id.as_str())
        })
        .await;
    let want: BTreeMap<String, String> = [
        ("service", "ferry".to_owned()),
        ("role", "serve".to_owned()),
        ("instance", instance(&f)),
        ("level", "info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(fetched.labels, want, "{fetched:?}");
    assert!(fetched.json["sha256"].is_string(), "{fetched:?}");
    assert!(
        fetched.time >= started - 5.0 && fetched.time <= started + 120.0,
        "{fetched:?}"
    );

    // The request that submitted it: its request id and caller are in the line.
    let request = loki
        .wait_for(
            "the submission's request line",
            Duration::from_secs(20),
            |l| {
                l.field("request_id") == Some("loki-e2e-submit")
                    && l.field("message") == Some("response")
            },
        )
        .await;
    assert_eq!(request.json["status"], 201, "{request:?}");
    assert!(
        request.field("user_id").is_some_and(|u| !u.is_empty()),
        "{request:?}"
    );

    // Every line so far is in one of a handful of streams, and no label names a job, a
    // request or a user.
    let lines = loki.lines();
    let streams: BTreeSet<&BTreeMap<String, String>> = lines.iter().map(|l| &l.labels).collect();
    assert!(
        streams.len() <= 5,
        "one stream per level at most: {streams:?}"
    );
    for labels in &streams {
        let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
        assert_eq!(keys, ["instance", "level", "role", "service"], "{labels:?}");
        assert!(!labels.values().any(|v| v.contains(&id)), "{labels:?}");
    }
    // And stdout still has its lines.
    assert!(
        f.proc.log_text().contains("fetched"),
        "stdout lost the lines"
    );

    // A burst of requests: every one of their lines arrives, none is dropped.
    let http = reqwest::Client::new();
    let ids: Vec<String> = (0..1500).map(|n| format!("burst-{n}")).collect();
    futures::future::join_all(ids.chunks(100).map(|chunk| {
        let http = http.clone();
        let base = f.base.clone();
        async move {
            for id in chunk {
                let r = http
                    .get(format!("{base}/api/v1/version"))
                    .header("x-request-id", id)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200);
            }
        }
    }))
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen: BTreeSet<String> = loki
            .lines()
            .iter()
            .filter_map(|l| l.field("request_id").map(str::to_owned))
            .collect();
        let missing = ids.iter().filter(|id| !seen.contains(*id)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of the burst's request lines never reached Loki"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(dropped(&f).await, 0.0, "a healthy Loki loses nothing");
    assert!(loki.refused().is_empty(), "{:?}", loki.refused());
    f.stop();
}

/// Requests from `parallel` clients until `stop`, with request ids `{tag}-{client}-{n}`:
/// each answered request is one line of the request log. Returns how many were answered;
/// any other answer fails the test.
fn pour(
    f: &Ferry,
    tag: &str,
    parallel: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    let (base, tag) = (f.base.clone(), tag.to_owned());
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let answered = Arc::new(AtomicUsize::new(0));
        let clients = (0..parallel).map(|client| {
            let (http, base, stop, answered) =
                (http.clone(), base.clone(), stop.clone(), answered.clone());
            let tag = tag.clone();
            async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let r = http
                        .get(format!("{base}/api/v1/version"))
                        .header("x-request-id", format!("{tag}-{client}-{n}"))
                        .send()
                        .await
                        .unwrap();
                    n += 1;
                    assert_eq!(r.status().as_u16(), 200);
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        futures::future::join_all(clients).await;
        answered.load(Ordering::Relaxed)
    })
}

/// Runs URL jobs until `stop`, each to completion and a few seconds apart; how many ran.
async fn jobs_while(f: &Ferry, origin: &Origin, tag: &str, stop: &AtomicBool) -> usize {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = submit(f, origin, &format!("{tag}-{n}")).await;
        f.wait_status(&id, "completed", Duration::from_secs(30))
            .await;
        n += 1;
        // Paced: what the test watches is the log lines' memory, not the jobs'.
        for _ in 0..20 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    n
}

/// Load for `period`: requests pouring in, jobs running; (requests answered, jobs done).
async fn load(f: &Ferry, origin: &Origin, tag: &str, period: Duration) -> (usize, usize) {
    load_until(f, origin, tag, period, 0.0).await
}

/// [`load`], kept on after `period` until Ferry has counted `lost` dropped lines (a busy
/// machine writes fewer lines a second; the test needs enough of them, not a fixed time),
/// for at most four periods.
async fn load_until(
    f: &Ferry,
    origin: &Origin,
    tag: &str,
    period: Duration,
    lost: f64,
) -> (usize, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let requests = pour(f, tag, 8, stop.clone());
    let timer = async {
        let started = Instant::now();
        tokio::time::sleep(period).await;
        while dropped(f).await < lost && started.elapsed() < period * 4 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        stop.store(true, Ordering::Relaxed);
    };
    let ((), jobs) = tokio::join!(timer, jobs_while(f, origin, tag, &stop));
    (requests.await.unwrap(), jobs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_loki_stopped_for_30s_ferry_works_on_in_flat_memory_and_counts_the_lost_lines() {
    let (_keep, root) = test_dir();
    let mut loki = Loki::start().await;
    let origin = origin(&root).await;
    let buffer = 1000;
    let f = ferry(
        &root,
        &loki,
        &[("FERRY_LOG__LOKI__BUFFER_LINES", &buffer.to_string())],
    );

    // Warm: the same load with Loki up, until the process has the memory that load needs.
    let (warm_requests, warm_jobs) = load(&f, &origin, "warm", Duration::from_secs(8)).await;
    loki.wait_for("the warm-up's lines", Duration::from_secs(20), |l| {
        l.field("message") == Some("response")
    })
    .await;
    assert_eq!(dropped(&f).await, 0.0, "nothing lost while Loki is up");
    let lines = loki.lines();
    let line_bytes = lines.iter().map(|l| l.bytes).sum::<usize>() / lines.len();
    let peak_before = peak_rss_kib(f.pid());
    // The memory bound below, and the lines that must be lost for it to tell anything.
    let bound_kib = 8 * 1024;
    let enough = (bound_kib * 1024 / line_bytes as u64) as f64 * 1.25;

    loki.stop().await;
    let outage = Instant::now();
    let (requests, jobs) = load_until(&f, &origin, "outage", Duration::from_secs(30), enough).await;
    // All but the kept lines are counted as dropped (the last batch within a second or two).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lost = dropped(&f).await;
    while lost < (requests - buffer) as f64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        lost = dropped(&f).await;
    }
    let peak_after = peak_rss_kib(f.pid());
    let grew_kib = peak_after.saturating_sub(peak_before);
    let lost_kib = (lost * line_bytes as f64 / 1024.0) as u64;
    println!(
        "warm: {warm_requests} requests, {warm_jobs} jobs; outage of {:?}: {requests} requests, \
         {jobs} jobs, {lost} lines of ~{line_bytes} bytes dropped ({lost_kib} KiB); peak \
         memory {peak_before} → {peak_after} KiB",
        outage.elapsed()
    );
    // Ferry worked on: every request answered (checked as they came), jobs ran to the end.
    assert!(jobs >= 3, "only {jobs} jobs finished during the outage");
    // The lines past the buffer were counted: each request wrote one, at least.
    assert!(
        lost >= (requests - buffer) as f64,
        "{lost} lines counted as dropped for {requests} request lines"
    );
    // Memory stayed flat: the lost lines were not kept. (Kept, they would have taken more
    // than the bound; `tracing-loki` alone keeps them all and grows by ~1 KiB a line.)
    assert!(
        lost_kib > bound_kib,
        "too few lines ({lost}) for the memory bound to tell anything"
    );
    assert!(
        grew_kib < bound_kib,
        "peak memory grew {grew_kib} KiB while {lost_kib} KiB of lines were lost"
    );

    // Back: the kept lines arrive, the lost ones are reported with their number, and lines
    // flow again.
    loki.restart().await;
    loki.wait_for(
        "a line kept during the outage",
        Duration::from_secs(20),
        |l| {
            l.field("request_id")
                .is_some_and(|id| id.starts_with("outage-"))
        },
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let reported = loop {
        let reports: Vec<Line> = loki
            .lines()
            .into_iter()
            .filter(|l| {
                l.labels.get("level").map(String::as_str) == Some("warn")
                    && l.json["dropped"].is_u64()
            })
            .collect();
        let sum: u64 = reports
            .iter()
            .map(|l| l.json["dropped"].as_u64().unwrap())
            .sum();
        let now = dropped(&f).await;
        if !reports.is_empty() && sum as f64 == now {
            break sum;
        }
        assert!(
            Instant::now() < deadline,
            "the reports say {sum} lines were dropped, the counter {now}: {reports:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        reported as f64 >= lost,
        "reported {reported}, counted {lost}"
    );
    let after = submit(&f, &origin, "after").await;
    f.wait_status(&after, "completed", Duration::from_secs(30))
        .await;
    loki.wait_for(
        "a job's line after Loki came back",
        Duration::from_secs(20),
        |l| l.field("job_id") == Some(after.as_str()),
    )
    .await;
    assert!(loki.refused().is_empty(), "{:?}", loki.refused());
    f.stop();
}
