//! The HTTP API against hostile and wrong input: every case answers a clear 4xx with a
//! stable code, and nothing needs a peer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::login::expect;
use common::*;
use ferry_torrent::testing::{B, encode, s, torrent};
use reqwest::Method;
use serde_json::{Value, json};

fn ferry(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> Ferry {
    init();
    Ferry::start(&dir.path().join("ferry"), env)
}

const HASH: &str = "6e66cd5b6d13827df56add6069693192e4e09c1b";

#[tokio::test]
async fn the_token_guards_the_api_but_not_the_probes() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(&dir, &[]);
    let http = reqwest::Client::new();
    expect(
        http.get(f.url("/jobs")).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let wrong = http
        .get(f.url("/jobs"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.headers()["www-authenticate"], "Bearer");
    expect(wrong, 401, "unauthorized").await;
    let almost = format!("{}x", &f.token[..f.token.len() - 1]);
    expect(
        http.get(f.url("/jobs"))
            .bearer_auth(almost)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;

    let health = http.get(f.url("/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let names: Vec<_> = health["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, vec!["database", "queue", "storage"]);
    let version: Value = http
        .get(f.url("/version"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(version["name"], "ferry");

    let spec: Value = http
        .get(f.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/jobs",
        "/api/v1/jobs/torrent",
        "/api/v1/jobs/{id}/events",
        "/api/v1/jobs/{id}/files/{index}",
        "/api/v1/torrents/analyze",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} documented");
    }
    assert!(
        spec["paths"]["/api/v1/jobs"]["post"]["responses"]["400"].is_object(),
        "4xx documented"
    );
    // The token and the session cookie are security schemes of the document (Swagger UI can
    // send them); every operation needs one but the probes and the logins.
    assert_eq!(
        spec["components"]["securitySchemes"]["token"]["scheme"],
        "bearer"
    );
    assert_eq!(
        spec["components"]["securitySchemes"]["session"]["in"],
        "cookie"
    );
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let open = [
                "/api/v1/health",
                "/api/v1/version",
                "/api/v1/links/{token}",
                "/api/v1/storage-profiles/google-drive/callback",
            ]
            .contains(&path.as_str())
                || (path.starts_with("/api/v1/auth/") && !path.starts_with("/api/v1/auth/logout"));
            assert_eq!(
                op["security"].is_array(),
                !open,
                "{method} {path}: security {}",
                op["security"]
            );
        }
    }
    let docs = http.get(format!("{}/docs", f.base)).send().await.unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));

    // The generated token persists across restarts.
    let token = f.token.clone();
    let f = Ferry::restart(f.stop());
    assert_eq!(f.token, token);
}

#[tokio::test]
async fn malformed_requests_and_magnets_are_400s() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(&dir, &[]);
    let post = |body: &'static str| {
        f.req(Method::POST, "/jobs")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    expect(post("{not json").await.unwrap(), 400, "invalid_request").await;
    expect(post("{}").await.unwrap(), 400, "invalid_request").await;
    // `source` is one of a magnet or a URL: neither, or both, does not match the schema.
    expect(
        post(r#"{"source": {}}"#).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    expect(post(r#"{"source": {"magnet": "magnet:?xt=urn:btih:6e66cd5b6d13827df56add6069693192e4e09c1b", "url": "http://x"}}"#).await.unwrap(), 400, "invalid_request").await;
    for url in [
        "ftp://example.com/a.iso",
        "file:///etc/passwd",
        "http://user:pw@example.com/x",
        "not a url",
        "gopher://x/",
    ] {
        let (status, body) = f.post_json("/jobs", json!({"source": {"url": url}})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_url")),
            "{url}: {body}"
        );
    }
    // Internal addresses, in any spelling, never get a job (and nothing connects to them).
    for url in [
        "http://127.0.0.1:1/x",
        "http://[::1]:1/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://2130706433:1/",
        "http://0177.0.0.1:1/",
        "http://10.0.0.1/",
        "http://localhost:1/",
        "http://[fd00::1]/",
    ] {
        let (status, body) = f.post_json("/jobs", json!({"source": {"url": url}})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("url_not_allowed")),
            "{url}: {body}"
        );
    }
    let (status, body) = f
        .post_json("/jobs", json!({"source": {"magnet": format!("magnet:?xt=urn:btih:{HASH}")}, "seed_ratio": -1.0}))
        .await;
    // The schema says a ratio is at least 0.
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let too_long = format!("magnet:?xt=urn:btih:{HASH}&dn={}", "a".repeat(20_000));
    let padded = format!(
        "magnet:?xt=urn:btih:{HASH}{}",
        "&tr=http://t.example/a".repeat(300)
    );
    for magnet in [
        "",
        "http://example.com/file.torrent",
        "magnet:?dn=no-hash",
        "magnet:?xt=urn:btih:123",
        "magnet:?xt=urn:btih:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        "magnet:?xt=urn:btih:6e66cd5b6d13827df56add6069693192e4e09c1b&tr=javascript:alert(1)",
        "magnet:?xt=urn:btih:6e66cd5b6d13827df56add6069693192e4e09c1b&x.pe=not-an-address",
        &too_long,
        &padded,
    ] {
        let (status, body) = f
            .post_json("/jobs", json!({"source": {"magnet": magnet}}))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_magnet")),
            "{magnet:.60}: {body}"
        );
    }
    let (status, body) = f
        .post_json(
            "/jobs",
            json!({"source": {"magnet": format!("magnet:?xt=urn:btih:{HASH}")}, "files": []}),
        )
        .await;
    // The schema says a selection has at least one index.
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (status, body) = f
        .post_json(
            "/jobs",
            json!({"source": {"magnet": format!("magnet:?xt=urn:btih:{HASH}")}, "files": [-1]}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (_, list) = f.get_json("/jobs").await;
    assert!(
        list["items"].as_array().unwrap().is_empty(),
        "nothing was created"
    );
}

async fn upload(f: &Ferry, path: &str, bytes: Vec<u8>, files: Option<&str>) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new().part(
        "torrent",
        reqwest::multipart::Part::bytes(bytes).file_name("t.torrent"),
    );
    if let Some(files) = files {
        form = form.text("files", files.to_owned());
    }
    f.req(Method::POST, path)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn hostile_torrents_are_refused_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(
        &dir,
        &[
            ("FERRY_LIMITS__MAX_FILES", "3"),
            ("FERRY_LIMITS__MAX_TOTAL_BYTES", "1000000"),
            ("FERRY_LIMITS__MAX_TORRENT_FILE_BYTES", "50000"),
        ],
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "not bencode",
            b"this is not a torrent".to_vec(),
            400,
            "invalid_torrent",
        ),
        ("empty", Vec::new(), 400, "invalid_torrent"),
        (
            "bencode but not a torrent",
            encode(&B::Dict(vec![("info", B::Int(1))])),
            400,
            "invalid_torrent",
        ),
        (
            "truncated",
            torrent("t", &[(&["a"], 10)])[..40].to_vec(),
            400,
            "invalid_torrent",
        ),
        (
            "dot-dot path",
            torrent("t", &[(&["..", "..", "etc", "passwd"], 10)]),
            400,
            "invalid_torrent",
        ),
        (
            "separator in a name",
            torrent("t", &[(&["a/../../b"], 10)]),
            400,
            "invalid_torrent",
        ),
        (
            "absolute name",
            torrent("/etc", &[(&["passwd"], 10)]),
            422,
            "torrent_unsafe_path",
        ),
        (
            "device name",
            torrent("t", &[(&["CON"], 10)]),
            422,
            "torrent_unsafe_path",
        ),
        (
            "control character",
            torrent("t", &[(&["bell\u{7}"], 10)]),
            422,
            "torrent_unsafe_path",
        ),
        (
            "drive letter",
            torrent("t", &[(&["C:", "x"], 10)]),
            422,
            "torrent_unsafe_path",
        ),
        (
            "negative length",
            torrent("t", &[(&["a"], -1)]),
            400,
            "invalid_torrent",
        ),
        (
            "overflowing lengths",
            torrent("t", &[(&["a"], i64::MAX), (&["b"], i64::MAX)]),
            400,
            "invalid_torrent",
        ),
        (
            "too many files",
            torrent("t", &[(&["a"], 1), (&["b"], 1), (&["c"], 1), (&["d"], 1)]),
            422,
            "torrent_too_many_files",
        ),
        (
            "too large",
            torrent("t", &[(&["a"], 2_000_000)]),
            422,
            "torrent_too_large",
        ),
    ];
    for (what, bytes, status, code) in &cases {
        for path in ["/jobs/torrent", "/torrents/analyze"] {
            let resp = upload(&f, path, bytes.clone(), None).await;
            let got = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert_eq!(
                (got, body["code"].as_str()),
                (*status, Some(*code)),
                "{what} at {path}: {body}"
            );
        }
    }
    // Larger than the configured upload limit.
    let big = vec![b'x'; 60_000];
    expect(
        upload(&f, "/jobs/torrent", big, None).await,
        413,
        "torrent_file_too_large",
    )
    .await;

    // A sound torrent with a bad selection.
    let ok = torrent("fine", &[(&["a"], 10), (&["b"], 10)]);
    expect(
        upload(&f, "/jobs/torrent", ok.clone(), Some("0,7")).await,
        400,
        "invalid_file_selection",
    )
    .await;
    expect(
        upload(&f, "/jobs/torrent", ok.clone(), Some("zero")).await,
        400,
        "invalid_file_selection",
    )
    .await;
    // More indices than a torrent may have files (limits.max_files = 3), in either form:
    // refused for what it is, before any torrent or magnet is looked at.
    let body = expect(
        upload(&f, "/jobs/torrent", ok.clone(), Some("0,1,2,3")).await,
        400,
        "invalid_file_selection",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("at most 3 files"),
        "{body}"
    );
    let (status, body) = f
        .post_json(
            "/jobs",
            json!({"source": {"magnet": format!("magnet:?xt=urn:btih:{}", "ab".repeat(20))}, "files": [0, 1, 2, 3]}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_file_selection")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("at most 3 files"),
        "{body}"
    );
    let (_, list) = f.get_json("/jobs").await;
    assert!(
        list["items"].as_array().unwrap().is_empty(),
        "nothing was created"
    );

    // And accepted without one; a duplicate of an unfinished job is a conflict.
    let resp = upload(&f, "/jobs/torrent", ok.clone(), Some("[1]")).await;
    assert_eq!(resp.status().as_u16(), 201);
    let job: Value = resp.json().await.unwrap();
    assert_eq!(job["selected_files"], json!([1]));
    assert_eq!(job["file_count"], 2);
    let (_, files) = f
        .get_json(&format!("/jobs/{}/files", job["id"].as_str().unwrap()))
        .await;
    assert_eq!(files[0]["path"], "fine/a");
    assert_eq!(
        (
            files[0]["selected"].as_bool(),
            files[1]["selected"].as_bool()
        ),
        (Some(false), Some(true))
    );
    expect(
        upload(&f, "/jobs/torrent", ok, None).await,
        409,
        "job_already_exists",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_of_one_torrent_make_one_job() {
    // Issue 8, defect 2: the duplicate check alone let 3 of 8 concurrent uploads through.
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(&dir, &[]);
    let bytes = torrent("raced", &[(&["a"], 10), (&["b"], 10)]);
    let answers =
        futures::future::join_all((0..8).map(|_| upload(&f, "/jobs/torrent", bytes.clone(), None)))
            .await;
    let mut created = 0;
    for resp in answers {
        match resp.status().as_u16() {
            201 => created += 1,
            409 => {
                let body: Value = resp.json().await.unwrap();
                assert_eq!(body["code"], "job_already_exists", "{body}");
            }
            other => panic!("unexpected {other}: {}", resp.text().await.unwrap()),
        }
    }
    assert_eq!(created, 1, "exactly one job");
    let (_, list) = f.get_json("/jobs").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn unknown_jobs_and_illegal_moves_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(&dir, &[]);
    for path in [
        "/jobs/0000",
        "/jobs/01a20cd5-fb9d-70ea-af77-37ba1ebf9a87",
        "/jobs/01a20cd5-fb9d-70ea-af77-37ba1ebf9a87/files",
    ] {
        let (status, body) = f.get_json(path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("job_not_found")),
            "{path}: {body}"
        );
    }
    let (status, body) = f
        .post_json(
            "/jobs/01a20cd5-fb9d-70ea-af77-37ba1ebf9a87/pause",
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("job_not_found"))
    );
    expect(
        f.req(Method::GET, "/nothing-here").send().await.unwrap(),
        404,
        "not_found",
    )
    .await;

    // A magnet nobody seeds stays queued/resolving: it cannot be paused, its files cannot
    // be fetched, the same magnet cannot be submitted twice, but it can be cancelled.
    let magnet = format!("magnet:?xt=urn:btih:{HASH}&dn=lonely");
    let job = f.submit_magnet(&magnet).await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["name"], "lonely");
    let (status, body) = f.post_json(&format!("/jobs/{id}/pause"), json!({})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("illegal_transition")),
        "{body}"
    );
    let (status, body) = f.post_json(&format!("/jobs/{id}/resume"), json!({})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("illegal_transition")),
        "{body}"
    );
    let (status, body) = f.post_json(&format!("/jobs/{id}/retry"), json!({})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("illegal_transition")),
        "{body}"
    );
    // Its files are not known until its metadata is.
    let (status, body) = f.get_json(&format!("/jobs/{id}/files/0")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("torrent_not_ready")),
        "{body}"
    );
    let (status, body) = f
        .post_json("/jobs", json!({"source": {"magnet": magnet}}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("job_already_exists")),
        "{body}"
    );
    let resp = f
        .req(Method::GET, &format!("/jobs/{id}/events"))
        .header("Last-Event-ID", "garbage")
        .send()
        .await
        .unwrap();
    expect(resp, 400, "invalid_event_id").await;
    // Bytes that are not visible ASCII (schemathesis sent U+0084) are no id either.
    let resp = f
        .req(Method::GET, &format!("/jobs/{id}/events"))
        .header(
            "Last-Event-ID",
            reqwest::header::HeaderValue::from_bytes(&[0xc2, 0x84]).unwrap(),
        )
        .send()
        .await
        .unwrap();
    expect(resp, 400, "invalid_event_id").await;

    let (status, body) = f.get_json("/jobs?status=bogus").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (status, page) = f.get_json("/jobs?status=failed").await;
    assert_eq!(status, 200);
    assert!(page["items"].as_array().unwrap().is_empty());

    let r = f
        .req(Method::DELETE, &format!("/jobs/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cancelled: Value = r.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    // A cancelled job cannot be resumed, and the magnet may be submitted again.
    let (status, _) = f.post_json(&format!("/jobs/{id}/resume"), json!({})).await;
    assert_eq!(status, 409);
    f.submit_magnet(&magnet).await;
}

#[tokio::test]
async fn jobs_list_pages_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(&dir, &[]);
    let mut ids = Vec::new();
    for i in 0..5u8 {
        let hash = format!("{:02x}{}", i, &HASH[2..]);
        ids.push(
            f.submit_magnet(&format!("magnet:?xt=urn:btih:{hash}"))
                .await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let (_, p1) = f.get_json("/jobs?limit=2").await;
    let cursor = p1["next_cursor"].as_str().unwrap().to_owned();
    let (_, p2) = f.get_json(&format!("/jobs?limit=2&before={cursor}")).await;
    let (_, p3) = f
        .get_json(&format!(
            "/jobs?limit=2&before={}",
            p2["next_cursor"].as_str().unwrap()
        ))
        .await;
    let seen: Vec<String> = [&p1, &p2, &p3]
        .iter()
        .flat_map(|p| {
            p["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned())
        })
        .collect();
    ids.reverse();
    assert_eq!(seen, ids);
    assert!(p3["next_cursor"].is_null());

    // Search by name: case-insensitive, LIKE's wildcards are plain characters, and a query
    // over 200 characters is refused with a clear code.
    let (_, named) = f.get_json("/jobs?q=66CD5B6D1382").await;
    assert_eq!(named["items"].as_array().unwrap().len(), 5, "{named}");
    for q in [
        "%25",
        "_",
        "%5C",
        "nothing-like-it",
        "%27%3B%20DROP%20TABLE%20jobs%3B--",
    ] {
        let (status, none) = f.get_json(&format!("/jobs?q={q}")).await;
        assert_eq!(
            (status, none["items"].as_array().map(Vec::len)),
            (200, Some(0)),
            "{q}: {none}"
        );
    }
    let (status, body) = f.get_json(&format!("/jobs?q={}", "a".repeat(201))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
}

/// The value of the series of `family` whose labels include `labels` (`status="queued"`).
fn labelled(scrape: &str, family: &str, labels: &str) -> Option<f64> {
    series(scrape, family)
        .into_iter()
        .find(|l| l.contains(labels))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_what_ferry_holds_and_requests_carry_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(&dir, &[("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]")]);
    // A URL job fetched and delivered: its bytes are counted on the way in and out.
    let file = dir.path().join("origin").join("counted.bin");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    common::origin::random_file(&file, 300 * 1024);
    let origin = common::origin::Origin::start(&file, "counted.bin").await;
    let (status, job) = f
        .post_json(
            "/jobs",
            json!({"source": {"url": format!("http://{}/counted.bin", origin.addr)}, "seed": false}),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    f.wait_status(
        job["id"].as_str().unwrap(),
        "completed",
        std::time::Duration::from_secs(60),
    )
    .await;
    for i in 0..3u8 {
        let hash = format!("{:02x}{}", i + 0x40, &HASH[2..]);
        f.submit_magnet(&format!("magnet:?xt=urn:btih:{hash}"))
            .await;
    }
    let scrape = f.metrics().await;
    let statuses = [
        "queued",
        "resolving",
        "downloading",
        "paused",
        "uploading",
        "seeding",
        "completed",
        "failed",
        "cancelled",
    ];
    let jobs: f64 = statuses
        .iter()
        .map(|s| {
            labelled(&scrape, "ferry_jobs", &format!("status=\"{s}\""))
                .unwrap_or_else(|| panic!("no ferry_jobs for {s}:\n{scrape}"))
        })
        .sum();
    assert_eq!(jobs, 4.0, "{scrape}");
    let counted = |family: &str, labels: &str| labelled(&scrape, family, labels).unwrap_or(0.0);
    assert!(
        counted("ferry_fetch_bytes_total", "route=\"direct\"") >= 300.0 * 1024.0,
        "{scrape}"
    );
    assert!(
        counted("ferry_delivery_bytes_total", "backend=\"local\"") >= 300.0 * 1024.0,
        "{scrape}"
    );
    assert!(
        counted("ferry_fetch_duration_seconds_count", "outcome=\"ok\"") >= 1.0,
        "{scrape}"
    );
    for family in [
        "ferry_torrent_peers",
        "ferry_torrent_download_rate_bytes_per_second",
        "ferry_torrent_upload_rate_bytes_per_second",
        "ferry_torrents_running",
    ] {
        assert!(
            gauge(&scrape, family).is_some(),
            "{family} missing:\n{scrape}"
        );
    }
    for stage in ["download", "upload", "fetch", "seed"] {
        let label = format!("stage=\"{stage}\"");
        for family in [
            "ferry_queue_waiting",
            "ferry_queue_leases",
            "ferry_queue_oldest_waiting_seconds",
            "ferry_workers_alive",
        ] {
            assert!(
                labelled(&scrape, family, &label).is_some(),
                "{family}{{{label}}} missing:\n{scrape}"
            );
        }
    }
    // `ferry serve` runs every stage itself: its workers are alive.
    assert_eq!(
        labelled(&scrape, "ferry_workers_alive", "stage=\"download\""),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(gauge(&scrape, "ferry_queue_dead_letters"), Some(0.0));
    for volume in ["staging", "storage"] {
        let label = format!("volume=\"{volume}\"");
        let free = labelled(&scrape, "ferry_disk_free_bytes", &label).unwrap_or(0.0);
        let size = labelled(&scrape, "ferry_disk_size_bytes", &label).unwrap_or(0.0);
        assert!(free > 0.0 && free <= size, "{volume}: {free} of {size}");
    }

    // A caller's plain request id comes back; a hostile one is replaced; errors carry it.
    let r = f
        .req(Method::GET, "/jobs/00000000-0000-0000-0000-000000000000")
        .header("X-Request-Id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (body["code"].as_str(), body["request_id"].as_str()),
        (Some("job_not_found"), Some("trace-42")),
        "{body}"
    );
    let r = f
        .req(Method::GET, "/jobs")
        .header("X-Request-Id", "a b<c>")
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert!(
        f.proc.log_text().contains("trace-42"),
        "the request log names it"
    );
}

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish_and_ends_event_streams() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(&dir, &[]);
    let job = f.paused_job("drain").await;
    sigterm_drains(f, &job).await;
}

/// One hostile value of each kind (a wrong type, a choice, an address range, an address, a
/// URL, a count, an interval): every binary refuses to start, exits non-zero and names the key.
#[tokio::test]
async fn bad_configuration_is_refused_at_start() {
    init();
    let cases: [(&str, &str, &str, &str); 9] = [
        (
            "ferry",
            "FERRY_WORKERS__DOWNLOADS",
            "lots",
            "workers.downloads",
        ),
        (
            "ferry",
            "FERRY_FETCH__PROXY_DNS",
            "remot",
            r#"fetch.proxy_dns: expected one of "proxy", "local", got "remot""#,
        ),
        (
            "ferry",
            "FERRY_TORRENT__ALLOW",
            r#"["192.168.1.0/240"]"#,
            "torrent.allow[0]",
        ),
        (
            "ferry",
            "FERRY_HOSTS",
            r#"{tracker = "10.1"}"#,
            "hosts.tracker",
        ),
        (
            "ferry",
            "FERRY_FETCH__PROXY",
            "sock5h://vpn:1080",
            "fetch.proxy",
        ),
        (
            "ferry",
            "FERRY_WORKERS__MAX_ATTEMPTS",
            "0",
            "workers.max_attempts",
        ),
        (
            "ferry",
            "FERRY_WORKERS__PROGRESS_INTERVAL",
            "0s",
            "workers.progress_interval",
        ),
        (
            "ferry-api",
            "FERRY_REDIS_URL",
            "redis//localhost",
            "redis_url",
        ),
        (
            "ferry-upload-worker",
            "FERRY_LIMITS__MAX_STREAMS",
            "0",
            "limits.max_streams",
        ),
    ];
    for (bin, key, value, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let program = match bin {
            "ferry" => env!("CARGO_BIN_EXE_ferry"),
            "ferry-api" => env!("CARGO_BIN_EXE_ferry-api"),
            _ => env!("CARGO_BIN_EXE_ferry-upload-worker"),
        };
        let mut cmd = std::process::Command::new(program);
        if bin == "ferry" {
            cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .env("FERRY_DATA_DIR", dir.path())
            .env("FERRY_TORRENT__DHT", "false")
            .env("FERRY_TORRENT__LISTEN", "127.0.0.1:0")
            .env("FERRY_WORKERS__PROBE_LISTEN", "127.0.0.1:0")
            .env(key, value)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{bin} started with {key}={value}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(1), "{bin} with {key}={value}: {err}");
        assert!(err.contains(says), "{bin} with {key}={value}: {err}");
        assert!(err.contains(key), "says where the value came from: {err}");
    }
    let _ = s("unused");
}

#[tokio::test]
async fn storage_profiles_refuse_bad_input_and_private_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(&dir, &[]);
    let s3 = |endpoint: &str, bucket: &str| {
        json!({"name": "p", "s3": {"endpoint": endpoint, "region": "us-east-1", "bucket": bucket,
               "access_key_id": "AK", "secret_access_key": "SK"}})
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        // Exactly one of `s3` or `google_drive`, as the schema says (`oneOf`).
        (json!({"name": "p"}), 400, "invalid_request"),
        (
            json!({"name": "p", "s3": s3("http://s3.example", "bucket")["s3"], "google_drive": {"folder_id": "x", "refresh_token": "t"}}),
            400,
            "invalid_request",
        ),
        (
            s3("ftp://s3.example", "bucket"),
            400,
            "invalid_storage_profile",
        ),
        (
            s3("http://user:pw@s3.example", "bucket"),
            400,
            "invalid_storage_profile",
        ),
        (
            s3("http://s3.example", "Bad_Bucket"),
            400,
            "invalid_storage_profile",
        ),
        (
            json!({"name": "", "s3": s3("http://s3.example", "bucket")["s3"]}),
            400,
            "invalid_storage_profile",
        ),
        (
            json!({"name": "p", "google_drive": {"folder_id": "../etc", "refresh_token": "t"}}),
            400,
            "invalid_storage_profile",
        ),
        (
            json!({"name": "p", "s3": {"endpoint": "http://x"}}),
            400,
            "invalid_request",
        ),
        // Internal addresses are refused unless the operator allows them.
        (
            s3("http://127.0.0.1:9000", "bucket"),
            422,
            "storage_endpoint_not_allowed",
        ),
        (
            s3("http://169.254.169.254", "bucket"),
            422,
            "storage_endpoint_not_allowed",
        ),
        (
            s3("http://[::1]:9000", "bucket"),
            422,
            "storage_endpoint_not_allowed",
        ),
        (
            s3("http://10.0.0.8", "bucket"),
            422,
            "storage_endpoint_not_allowed",
        ),
        (
            s3("http://localhost:9000", "bucket"),
            422,
            "storage_endpoint_not_allowed",
        ),
    ];
    for (body, status, code) in cases {
        let (got, resp) = f.post_json("/storage-profiles", body.clone()).await;
        assert_eq!(
            (got, resp["code"].as_str()),
            (status, Some(code)),
            "{body}: {resp}"
        );
    }
    for path in [
        "/storage-profiles/nope",
        "/storage-profiles/01a20cd5-fb9d-70ea-af77-37ba1ebf9a87",
    ] {
        let (status, body) = f.get_json(path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("storage_profile_not_found")),
            "{path}"
        );
    }
    let r = f
        .req(
            Method::DELETE,
            "/storage-profiles/01a20cd5-fb9d-70ea-af77-37ba1ebf9a87",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let (_, list) = f.get_json("/storage-profiles").await;
    assert!(list.as_array().unwrap().is_empty());
    // A job naming an unknown profile is refused before anything is queued.
    let (status, body) = f
        .post_json("/jobs", json!({"source": {"magnet": format!("magnet:?xt=urn:btih:{HASH}")}, "storage_profile": "01a20cd5-fb9d-70ea-af77-37ba1ebf9a87"}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("storage_profile_not_found")),
        "{body}"
    );
}

#[tokio::test]
async fn internal_trackers_and_peers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(
        &dir,
        &[(
            "FERRY_HOSTS",
            "{\"tracker.internal.example\" = \"10.9.8.7\"}",
        )],
    );
    let magnet =
        |extra: &str| json!({"source": {"magnet": format!("magnet:?xt=urn:btih:{HASH}{extra}")}});
    for (extra, code) in [
        (
            "&tr=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F",
            "tracker_not_allowed",
        ),
        ("&tr=udp%3A%2F%2F10.0.0.1%3A6969", "tracker_not_allowed"),
        (
            "&tr=http%3A%2F%2Ftracker.internal.example%2Fannounce%3Fpasskey%3Dp4ss",
            "tracker_not_allowed",
        ),
        (
            "&tr=http%3A%2F%2F%5Bfd00%3A%3A1%5D%2Fa",
            "tracker_not_allowed",
        ),
        ("&x.pe=169.254.169.254:80", "peer_not_allowed"),
        ("&x.pe=%5B%3A%3Affff%3A10.0.0.1%5D:6379", "peer_not_allowed"),
    ] {
        let r = f
            .req(Method::POST, "/jobs")
            .json(&magnet(extra))
            .send()
            .await
            .unwrap();
        let body = expect(r, 422, code).await;
        assert!(!body.to_string().contains("p4ss"), "{body}");
    }
    // A .torrent whose announce list names an internal tracker.
    let meta = encode(&B::Dict(vec![
        ("announce", s("http://tracker.example.org/announce")),
        (
            "announce-list",
            B::List(vec![B::List(vec![s("http://169.254.169.254/announce")])]),
        ),
        (
            "info",
            B::Dict(vec![
                ("name", s("x.bin")),
                ("piece length", B::Int(16384)),
                ("pieces", B::Str(vec![1u8; 20])),
                ("length", B::Int(10)),
            ]),
        ),
    ]));
    expect(
        upload(&f, "/jobs/torrent", meta, None).await,
        422,
        "tracker_not_allowed",
    )
    .await;
    let (_, jobs) = f.get_json("/jobs").await;
    assert_eq!(jobs["items"].as_array().map(Vec::len), Some(0), "{jobs}");
}
