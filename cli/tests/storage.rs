//! Delivery to users' storage: storage profiles over the API, a real S3-compatible server
//! (s3s-fs) and the aws CLI as the independent reader.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::cluster::*;
use common::s3::*;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

/// One payload seeded by aria2c behind opentracker.
fn seeded(
    root: &std::path::Path,
    name: &str,
    files: &[(&str, u64)],
) -> (Payload, Torrent, Tracker, Seeder) {
    let content = root.join("seed");
    let payload = Payload::create(&content, name, files);
    let probe = payload.make_torrent("http://127.0.0.1:1/announce", &root.join("probe.torrent"));
    let tracker = Tracker::start(root, &[&probe.info_hash]);
    let torrent = payload.make_torrent(&tracker.announce(), &root.join(format!("{name}.torrent")));
    let seeder = Seeder::start(root, &content, &[&torrent.path]);
    tracker.wait_for_seeders(&torrent.info_hash, 1);
    (payload, torrent, tracker, seeder)
}

fn s3_profile(s3: &S3Server, secret: &str) -> Value {
    json!({
        "name": "my bucket",
        "s3": {
            "endpoint": s3.endpoint(),
            "region": "us-east-1",
            "bucket": "ferry-e2e",
            "prefix": "incoming",
            "access_key_id": ACCESS,
            "secret_access_key": secret,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_is_delivered_to_an_s3_bucket_and_read_back_independently() {
    init();
    if !require(&["opentracker", "aria2c", "mktorrent", "aws"]) {
        return;
    }
    let (_keep, root) = test_dir();
    let Some(s3) = S3Server::start(&root) else {
        return;
    };
    s3.aws(&["s3", "mb", "s3://ferry-e2e"]);
    let (payload, torrent, tracker, _seeder) = seeded(
        &root,
        "bucketed",
        &[
            ("big.bin", 13 * MIB + 5),
            ("small.txt", 2000),
            ("sub/mid.bin", MIB),
        ],
    );
    let ferry = Ferry::start(
        &root.join("ferry"),
        &[
            ("FERRY_STORAGE__ALLOW_PRIVATE_ENDPOINTS", "true"),
            ("FERRY_STORAGE__PART_SIZE", "5242880"),
        ],
    );

    // Profiles: wrong keys and an unreachable endpoint are refused with their reason.
    let (status, body) = ferry
        .post_json("/storage-profiles", s3_profile(&s3, "wrong-secret"))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("storage_auth_failed")),
        "{body}"
    );
    let mut down = s3_profile(&s3, SECRET);
    down["s3"]["endpoint"] = json!("http://127.0.0.1:9");
    let (status, body) = ferry.post_json("/storage-profiles", down).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (502, Some("storage_unreachable")),
        "{body}"
    );
    let (status, profile) = ferry
        .post_json("/storage-profiles", s3_profile(&s3, SECRET))
        .await;
    assert_eq!(status, 201, "{profile}");
    let text = profile.to_string();
    assert!(
        !text.contains(SECRET) && !text.contains("secret_access_key"),
        "credentials never come back: {text}"
    );
    let pid = profile["id"].as_str().unwrap().to_owned();
    let (status, tested) = ferry
        .post_json(&format!("/storage-profiles/{pid}/test"), json!({}))
        .await;
    assert_eq!((status, tested["ok"].as_bool()), (200, Some(true)));
    let (_, listed) = ferry.get_json("/storage-profiles").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(SECRET));

    // Sealed at rest: the secret is nowhere in the database file.
    let db = std::fs::read(ferry.data_dir.join("ferry.db")).unwrap();
    assert!(
        !db.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "secret stored in clear"
    );

    // Made the default destination, the bucket takes the jobs that name none; `null`
    // still means this server's disk.
    assert_eq!(listed[0]["default"], false);
    let (status, none) = ferry.get_json("/me/default-storage-profile").await;
    assert_eq!((status, none), (200, json!({})));
    let put = |body: serde_json::Value| {
        ferry
            .req(Method::PUT, "/me/default-storage-profile")
            .json(&body)
            .send()
    };
    let r = put(json!({"profile": uuid::Uuid::new_v4()})).await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = put(json!({"profile": pid})).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, listed) = ferry.get_json("/storage-profiles").await;
    assert_eq!(listed[0]["default"], true, "{listed}");
    let (status, local) = ferry
        .post_json(
            "/jobs",
            json!({"source": {"magnet": lonely_magnet("stays-here")}, "storage_profile": null}),
        )
        .await;
    assert_eq!(status, 201, "{local}");
    assert!(local.get("storage_profile").is_none(), "{local}");
    let local_id = local["id"].as_str().unwrap();
    let r = ferry
        .req(Method::DELETE, &format!("/jobs/{local_id}?purge=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        202,
        "a purge is accepted and carried out by the stage"
    );

    let (status, job) = ferry
        .post_json(
            "/jobs",
            json!({"source": {"magnet": torrent.magnet(&tracker.announce())}}),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["storage_profile"], pid.as_str());
    let id = job["id"].as_str().unwrap().to_owned();

    let watch = ferry
        .req(Method::GET, &format!("/jobs/{id}/events"))
        .send()
        .await
        .unwrap();
    let events = read_sse(watch, Duration::from_secs(180), |_| false).await;
    assert_eq!(
        events.last().unwrap().data["status"],
        "completed",
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.event == "progress" && e.data["status"] == "uploading"),
        "upload progress is streamed"
    );

    // Every file: recorded SHA-256, the aws CLI reads the same bytes, the link redirects.
    let (_, files) = ferry.get_json(&format!("/jobs/{id}/files")).await;
    for f in files.as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        let (_, want_sha, size) = payload.files.iter().find(|p| p.0 == path).unwrap();
        assert_eq!(f["sha256"].as_str(), Some(want_sha.as_str()), "{path}");
        let object = format!("s3://ferry-e2e/incoming/local/{id}/{path}");
        let bytes = s3.aws(&["s3", "cp", &object, "-"]);
        assert_eq!(bytes.len() as u64, *size);
        assert_eq!(sha256_hex(&bytes), *want_sha, "{object}");
        let link = ferry
            .req(Method::GET, &format!("/jobs/{id}/files/{}", f["index"]))
            .send()
            .await
            .unwrap();
        assert_eq!(
            sha256_hex(&link.bytes().await.unwrap()),
            *want_sha,
            "the presigned redirect serves {path}"
        );
    }
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .get(ferry.url(&format!("/jobs/{id}/files/0")))
        .bearer_auth(&ferry.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("X-Amz-Signature")
    );
    assert!(
        !ferry.data_dir.join("staging").join(&id).exists(),
        "staging freed"
    );
    assert!(
        !ferry.data_dir.join("storage/local").join(&id).exists(),
        "nothing kept on the server"
    );
    assert!(s3.unfinished_uploads().is_empty());

    // Purging deletes the objects.
    ferry.purge(&id).await;
    let listing =
        String::from_utf8(s3.aws(&["s3", "ls", "--recursive", "s3://ferry-e2e/"])).unwrap();
    assert!(!listing.contains(&id), "{listing}");

    // Deleting the profile; an unknown profile on a job is refused.
    let r = ferry
        .req(Method::DELETE, &format!("/storage-profiles/{pid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (status, body) = ferry
        .post_json("/jobs", json!({"source": {"magnet": torrent.magnet(&tracker.announce())}, "storage_profile": pid}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("storage_profile_not_found")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_upload_worker_mid_multipart_upload_leaves_no_orphan() {
    init();
    if !require(&[
        "opentracker",
        "aria2c",
        "mktorrent",
        "aws",
        "psql",
        "redis-cli",
    ]) {
        return;
    }
    let Some(db) = FreshDb::create() else { return };
    let (_keep, root) = test_dir();
    let Some(s3) = S3Server::start(&root) else {
        return;
    };
    s3.aws(&["s3", "mb", "s3://ferry-e2e"]);
    let (payload, torrent, _tracker, _seeder) =
        seeded(&root, "huge", &[("huge.bin", 96 * MIB + 17)]);
    let redis = test_redis_url();
    let cluster = Cluster::new(
        &root,
        &db.url,
        &redis,
        &[
            ("FERRY_STORAGE__ALLOW_PRIVATE_ENDPOINTS", "true"),
            ("FERRY_STORAGE__PART_SIZE", "5242880"),
            ("FERRY_STORAGE__UPLOAD_CONCURRENCY", "1"),
            ("FERRY_WORKERS__PROGRESS_INTERVAL", "50ms"),
        ],
    );
    cluster.migrate();
    let api = cluster.api();
    let _torrent_worker = cluster.worker("torrent");
    let mut doomed = cluster.worker("upload");
    let (status, profile) = api
        .post_json("/storage-profiles", s3_profile(&s3, SECRET))
        .await;
    assert_eq!(status, 201, "{profile}");
    let mut form = reqwest::multipart::Form::new().part(
        "torrent",
        reqwest::multipart::Part::bytes(torrent.bytes.clone()).file_name("t.torrent"),
    );
    form = form.text(
        "storage_profile",
        profile["id"].as_str().unwrap().to_owned(),
    );
    let r = api
        .req(Method::POST, "/jobs/torrent")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Kill the upload worker once a few parts are up.
    let watch = api
        .req(Method::GET, &format!("/jobs/{id}/events"))
        .send()
        .await
        .unwrap();
    read_sse(watch, Duration::from_secs(180), |e| {
        e.event == "progress"
            && e.data["status"] == "uploading"
            && e.data["progress"]["bytes_done"].as_u64().unwrap_or(0) >= 15 * MIB
    })
    .await;
    doomed.proc.signal(9);
    doomed.proc.wait_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        s3.unfinished_uploads().len(),
        1,
        "the upload was left unfinished"
    );

    // Another upload worker takes the job over after the lease and resumes the upload.
    let _second = cluster.worker("upload");
    let started = Instant::now();
    let done = api
        .wait_status(&id, "completed", Duration::from_secs(180))
        .await;
    eprintln!("resumed and completed in {:?}", started.elapsed());
    assert_eq!(done["attempts"], 0);
    let (_, files) = api.get_json(&format!("/jobs/{id}/files")).await;
    let f = &files[0];
    assert_eq!(f["sha256"].as_str(), Some(payload.files[0].1.as_str()));
    let bytes = s3.aws(&[
        "s3",
        "cp",
        &format!("s3://ferry-e2e/incoming/local/{id}/huge/huge.bin"),
        "-",
    ]);
    assert_eq!(sha256_hex(&bytes), payload.files[0].1);
    assert!(
        s3.unfinished_uploads().is_empty(),
        "no orphan multipart upload: {:?}",
        s3.unfinished_uploads()
    );
}

/// The user the bootstrap token acts as (the first admin): keys start with their id.
async fn owner_id(ferry: &Ferry) -> String {
    let (status, me) = ferry.get_json("/me").await;
    assert_eq!(status, 200, "{me}");
    me["user"]["id"].as_str().unwrap().to_owned()
}

fn drive_env(drive: &ferry_gdrive::fake::FakeDrive) -> Vec<(String, String)> {
    vec![
        ("FERRY_GOOGLE__API_URL".into(), drive.url.clone()),
        ("FERRY_GOOGLE__TOKEN_URL".into(), drive.token_url()),
        ("FERRY_GOOGLE__CLIENT_ID".into(), "ferry-client".into()),
        (
            "FERRY_GOOGLE__CLIENT_SECRET".into(),
            "ferry-client-secret".into(),
        ),
        ("FERRY_GOOGLE__CHUNK_SIZE".into(), "262144".into()),
        ("FERRY_WORKERS__PROGRESS_INTERVAL".into(), "50ms".into()),
        // The fake Drive runs on loopback, which storage clients refuse unless allowed.
        ("FERRY_STORAGE__ALLOW".into(), "[\"127.0.0.1/32\"]".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_is_delivered_to_a_google_drive_folder() {
    init();
    if !require(&["opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let (_keep, root) = test_dir();
    let drive = ferry_gdrive::fake::FakeDrive::start("users-refresh-token").await;
    let (payload, torrent, tracker, _seeder) = seeded(
        &root,
        "drived",
        &[("a/one.bin", 3 * MIB + 9), ("two.txt", 1234)],
    );
    let env = drive_env(&drive);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let ferry = Ferry::start(&root.join("ferry"), &env);

    let profile = |token: &str| json!({"name": "Drive", "google_drive": {"folder_id": drive.root_folder, "refresh_token": token}});
    let (status, body) = ferry
        .post_json("/storage-profiles", profile("revoked"))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("storage_auth_failed")),
        "{body}"
    );
    let (status, created) = ferry
        .post_json("/storage-profiles", profile("users-refresh-token"))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["kind"], "google_drive");
    assert!(!created.to_string().contains("users-refresh-token"));
    let pid = created["id"].as_str().unwrap().to_owned();

    let (status, job) = ferry
        .post_json("/jobs", json!({"source": {"magnet": torrent.magnet(&tracker.announce())}, "storage_profile": pid}))
        .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    ferry
        .wait_status(&id, "completed", Duration::from_secs(180))
        .await;
    let (_, files) = ferry.get_json(&format!("/jobs/{id}/files")).await;
    let owner = owner_id(&ferry).await;
    for f in files.as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        let (_, want, _) = payload.files.iter().find(|p| p.0 == path).unwrap();
        assert_eq!(f["sha256"].as_str(), Some(want.as_str()));
        let mut tree = vec![owner.as_str(), id.as_str()];
        tree.extend(path.split('/'));
        let content = drive
            .content(&tree)
            .unwrap_or_else(|| panic!("{tree:?} not in Drive"));
        assert_eq!(sha256_hex(&content), *want, "Drive holds {path}");
    }
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .get(ferry.url(&format!("/jobs/{id}/files/0")))
        .bearer_auth(&ferry.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert!(r.headers()["location"].to_str().unwrap().ends_with("/view"));
    assert_eq!(drive.open_sessions(), 0);
    ferry.purge(&id).await;
    assert_eq!(drive.file_count(), 0, "purge removed the job's folder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_upload_worker_mid_drive_upload_resumes_the_session() {
    init();
    if !require(&["opentracker", "aria2c", "mktorrent", "psql", "redis-cli"]) {
        return;
    }
    let Some(db) = FreshDb::create() else { return };
    let (_keep, root) = test_dir();
    let drive = ferry_gdrive::fake::FakeDrive::start("users-refresh-token").await;
    let (payload, torrent, _tracker, _seeder) =
        seeded(&root, "long", &[("long.bin", 40 * MIB + 3)]);
    let redis = test_redis_url();
    let env = drive_env(&drive);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cluster = Cluster::new(&root, &db.url, &redis, &env);
    cluster.migrate();
    let api = cluster.api();
    let _torrent_worker = cluster.worker("torrent");
    let mut doomed = cluster.worker("upload");
    let (status, created) = api
        .post_json("/storage-profiles", json!({"name": "Drive", "google_drive": {"folder_id": drive.root_folder, "refresh_token": "users-refresh-token"}}))
        .await;
    assert_eq!(status, 201, "{created}");
    let form = reqwest::multipart::Form::new()
        .part(
            "torrent",
            reqwest::multipart::Part::bytes(torrent.bytes.clone()).file_name("t.torrent"),
        )
        .text(
            "storage_profile",
            created["id"].as_str().unwrap().to_owned(),
        );
    let r = api
        .req(Method::POST, "/jobs/torrent")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let watch = api
        .req(Method::GET, &format!("/jobs/{id}/events"))
        .send()
        .await
        .unwrap();
    read_sse(watch, Duration::from_secs(180), |e| {
        e.event == "progress"
            && e.data["status"] == "uploading"
            && e.data["progress"]["bytes_done"].as_u64().unwrap_or(0) >= 8 * MIB
    })
    .await;
    doomed.proc.signal(9);
    doomed.proc.wait_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(drive.open_sessions(), 1, "the upload was left unfinished");
    let chunks_before = drive.chunks();

    let _second = cluster.worker("upload");
    api.wait_status(&id, "completed", Duration::from_secs(180))
        .await;
    let resent = drive.chunks() - chunks_before;
    assert!(
        resent < 160,
        "the rest was sent, not all 161 chunks again ({resent})"
    );
    let owner = owner_id(&api).await;
    let content = drive.content(&[&owner, &id, "long", "long.bin"]).unwrap();
    assert_eq!(sha256_hex(&content), payload.files[0].1);
    assert_eq!(drive.open_sessions(), 0, "no unfinished session left");
    assert_eq!(drive.file_count(), 1, "one file, not a duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_that_goes_down_fails_the_job_clearly_after_retries() {
    init();
    if !require(&["opentracker", "aria2c", "mktorrent", "aws"]) {
        return;
    }
    let (_keep, root) = test_dir();
    let Some(s3) = S3Server::start(&root) else {
        return;
    };
    s3.aws(&["s3", "mb", "s3://ferry-e2e"]);
    let (_payload, torrent, tracker, _seeder) = seeded(&root, "doomed", &[("f.bin", MIB)]);
    let ferry = Ferry::start(
        &root.join("ferry"),
        &[
            ("FERRY_STORAGE__ALLOW_PRIVATE_ENDPOINTS", "true"),
            ("FERRY_WORKERS__MAX_ATTEMPTS", "2"),
            ("FERRY_WORKERS__RETRY_BASE_DELAY", "500ms"),
        ],
    );
    let (status, profile) = ferry
        .post_json("/storage-profiles", s3_profile(&s3, SECRET))
        .await;
    assert_eq!(status, 201, "{profile}");
    let pid = profile["id"].as_str().unwrap().to_owned();
    drop(s3); // the storage goes away
    let (status, body) = ferry
        .post_json(&format!("/storage-profiles/{pid}/test"), json!({}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (502, Some("storage_unreachable")),
        "{body}"
    );
    let (status, job) = ferry
        .post_json("/jobs", json!({"source": {"magnet": torrent.magnet(&tracker.announce())}, "storage_profile": pid}))
        .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let failed = ferry
        .wait_status(&id, "failed", Duration::from_secs(120))
        .await;
    assert_eq!(failed["error"]["code"], "storage_unreachable", "{failed}");
    assert_eq!(failed["attempts"], 2);
    let (status, body) = ferry.get_json(&format!("/jobs/{id}/files/0")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("job_not_finished"))
    );
}

/// A loopback TCP service that is not S3: answers every connection with `reply` and closes.
/// Returns its port and how many connections it saw.
fn not_s3(reply: &'static [u8]) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(reply);
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_endpoints_are_judged_after_dns_and_errors_do_not_scan_ports() {
    init();
    if !require(&["aws"]) {
        return;
    }
    let (_keep, root) = test_dir();
    let Some(s3) = S3Server::start(&root) else {
        return;
    };
    s3.aws(&["s3", "mb", "s3://ferry-e2e"]);
    let profile = |endpoint: &str, path_style: bool| {
        json!({"name": "p", "s3": {"endpoint": endpoint, "region": "us-east-1",
               "bucket": "ferry-e2e", "path_style": path_style,
               "access_key_id": ACCESS, "secret_access_key": SECRET}})
    };

    // Private endpoints not allowed: names are judged by what they resolve to.
    let ferry = Ferry::start(
        &root.join("closed"),
        &[(
            "FERRY_HOSTS",
            "{\"s3.ferry-test.example\" = \"127.0.0.1\", \"pub.ferry-test.example\" = \"192.0.2.10\", \"ferry-e2e.pub.ferry-test.example\" = \"127.0.0.1\"}",
        )],
    );
    let port = s3.port;
    let mut endpoints = vec![(format!("http://s3.ferry-test.example:{port}"), true)];
    // The machine's own name usually resolves to a loopback or private address: the real
    // resolver is judged too, not only the operator's mappings.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let own = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .map(|a| a.map(|a| a.ip()).collect::<Vec<_>>())
        .unwrap_or_default();
    if !host.is_empty() && !own.is_empty() && own.iter().all(|ip| ip.is_loopback()) {
        endpoints.push((format!("http://{host}:{port}"), true));
    } else {
        eprintln!("the host name {host:?} does not resolve to loopback ({own:?}); not tried");
    }
    // Virtual-hosted style: the endpoint's name is public, `{bucket}.{name}` is not.
    endpoints.push((format!("http://pub.ferry-test.example:{port}"), false));
    for (endpoint, path_style) in endpoints {
        let (status, body) = ferry
            .post_json("/storage-profiles", profile(&endpoint, path_style))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("storage_endpoint_not_allowed")),
            "{endpoint} (path style {path_style}): {body}"
        );
    }
    let (_, listed) = ferry.get_json("/storage-profiles").await;
    assert_eq!(listed, json!([]), "no profile reaches the internal S3");
    drop(ferry);

    // Private endpoints allowed (as here, on loopback): a closed port and ports that answer
    // something other than S3 look the same to the caller, with the details in the log.
    let ferry = Ferry::start(
        &root.join("open"),
        &[("FERRY_STORAGE__ALLOW_PRIVATE_ENDPOINTS", "true")],
    );
    let closed = free_port();
    let (web, web_seen) = not_s3(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 17\r\nConnection: close\r\n\r\n<html>hi</html>\r\n",
    );
    let (banner, banner_seen) = not_s3(b"-ERR unknown command 'HEAD'\r\n");
    let (forbidden, _) =
        not_s3(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let mut answers = Vec::new();
    for port in [closed, web, banner, forbidden] {
        let (status, body) = ferry
            .post_json(
                "/storage-profiles",
                profile(&format!("http://127.0.0.1:{port}"), true),
            )
            .await;
        let mut body = body;
        // Each answer names its own request; everything else must be the same.
        body.as_object_mut().unwrap().remove("request_id");
        answers.push((port, status, body));
    }
    assert!(web_seen.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert!(banner_seen.load(std::sync::atomic::Ordering::SeqCst) > 0);
    let (_, status, first) = &answers[0];
    assert_eq!(
        (*status, first["code"].as_str()),
        (502, Some("storage_unreachable")),
        "{first}"
    );
    for (port, status, body) in &answers {
        assert_eq!(
            (*status, body),
            (502, first),
            "port {port} answers like a closed port"
        );
        let message = body["message"].as_str().unwrap();
        assert!(
            !message.contains(&port.to_string()) && !message.contains("127.0.0.1"),
            "{message}"
        );
    }
    let log = ferry.proc.log_text();
    assert!(
        log.contains(&closed.to_string()) || log.to_lowercase().contains("connection refused"),
        "the details are in the server log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_delivery_to_moto_completes_the_first_time() {
    init();
    if !require(&["opentracker", "aria2c", "mktorrent", "aws"]) {
        return;
    }
    let (_keep, root) = test_dir();
    let Some(moto) = S3Server::start_moto(&root) else {
        return;
    };
    moto.aws(&["s3", "mb", "s3://ferry-e2e"]);
    let (payload, torrent, tracker, _seeder) = seeded(
        &root,
        "emulated",
        &[("big.bin", 13 * MIB + 5), ("small.txt", 2000)],
    );
    let ferry = Ferry::start(
        &root.join("ferry"),
        &[
            ("FERRY_STORAGE__ALLOW_PRIVATE_ENDPOINTS", "true"),
            ("FERRY_STORAGE__PART_SIZE", "5242880"),
        ],
    );
    let (status, profile) = ferry
        .post_json("/storage-profiles", s3_profile(&moto, SECRET))
        .await;
    assert_eq!(status, 201, "{profile}");
    let pid = profile["id"].as_str().unwrap().to_owned();
    let (status, job) = ferry
        .post_json("/jobs", json!({"source": {"magnet": torrent.magnet(&tracker.announce())}, "storage_profile": pid}))
        .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    // moto answers CompleteMultipartUpload with a root element the SDK cannot read; the
    // object is complete all the same, and the job must see that rather than start over.
    let done = ferry
        .wait_status(&id, "completed", Duration::from_secs(180))
        .await;
    assert_eq!(
        done["attempts"], 0,
        "delivered on the first attempt: {done}"
    );
    let (_, files) = ferry.get_json(&format!("/jobs/{id}/files")).await;
    for f in files.as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        let (_, want_sha, size) = payload.files.iter().find(|p| p.0 == path).unwrap();
        assert_eq!(f["sha256"].as_str(), Some(want_sha.as_str()), "{path}");
        let bytes = moto.aws(&[
            "s3",
            "cp",
            &format!("s3://ferry-e2e/incoming/local/{id}/{path}"),
            "-",
        ]);
        assert_eq!(bytes.len() as u64, *size, "{path}");
        assert_eq!(sha256_hex(&bytes), *want_sha, "{path}");
    }
    let uploads =
        String::from_utf8(moto.aws(&["s3api", "list-multipart-uploads", "--bucket", "ferry-e2e"]))
            .unwrap();
    assert!(
        !uploads.contains("UploadId"),
        "no unfinished upload: {uploads}"
    );
    assert!(
        ferry.proc.log_text().contains("the object is complete"),
        "the unreadable answer was noticed and checked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_secret_key_reseals_every_profile_and_the_old_key_can_go() {
    init();
    if !require(&["aws"]) {
        return;
    }
    let (_keep, root) = test_dir();
    let Some(s3) = S3Server::start(&root) else {
        return;
    };
    s3.aws(&["s3", "mb", "s3://ferry-e2e"]);
    let old_key = "1111111111111111111111111111111111111111111111111111111111111111";
    let new_key = "2222222222222222222222222222222222222222222222222222222222222222";
    let data = root.join("ferry");
    let private = ("FERRY_STORAGE__ALLOW_PRIVATE_ENDPOINTS", "true");
    let ferry = Ferry::start(&data, &[private, ("FERRY_SECRET_KEY", old_key)]);
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let mut body = s3_profile(&s3, SECRET);
        body["name"] = json!(name);
        let (status, profile) = ferry.post_json("/storage-profiles", body).await;
        assert_eq!(status, 201, "{profile}");
        ids.push(profile["id"].as_str().unwrap().to_owned());
    }
    drop(ferry);
    let test_all = |ferry: Ferry, want: u16| {
        let ids = ids.clone();
        async move {
            for id in &ids {
                let (status, body) = ferry
                    .post_json(&format!("/storage-profiles/{id}/test"), json!({}))
                    .await;
                assert_eq!(status, want, "{id}: {body}");
            }
        }
    };

    // The new key alone cannot open what the old one sealed.
    test_all(
        Ferry::start(&data, &[private, ("FERRY_SECRET_KEY", new_key)]),
        422,
    )
    .await;
    // With the old key kept as an old key, everything still opens.
    let both = format!("[\"{old_key}\"]");
    let rotate_env = [
        ("FERRY_SECRET_KEY", new_key),
        ("FERRY_OLD_SECRET_KEYS", both.as_str()),
    ];
    test_all(
        Ferry::start(&data, &[private, rotate_env[0], rotate_env[1]]),
        200,
    )
    .await;
    let rotate = |env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(["keys", "rotate", "--data-dir"])
            .arg(&data)
            .env("FERRY_LOG__FORMAT", "pretty");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = rotate(&rotate_env);
    assert!(ok, "{out}");
    assert!(out.contains("re-sealed 2, already current 0"), "{out}");
    let (ok, out) = rotate(&rotate_env);
    assert!(
        ok && out.contains("re-sealed 0, already current 2"),
        "{out}"
    );
    // The old key is gone from the configuration: every profile still opens.
    test_all(
        Ferry::start(&data, &[private, ("FERRY_SECRET_KEY", new_key)]),
        200,
    )
    .await;
    // Without the key that sealed them, rotation reports the profiles and fails.
    let (ok, out) = rotate(&[(
        "FERRY_SECRET_KEY",
        "3333333333333333333333333333333333333333333333333333333333333333",
    )]);
    assert!(!ok && out.contains("unreadable 2"), "{out}");
}

/// A purge while delivery runs: the upload to S3 is held mid-request by a proxy (so it is
/// provably in flight), the job is purged, then the proxy lets the upload go on. Nothing the
/// delivery still had in hand may land: no object, no unfinished upload, no staged file, no
/// job. Once with a single `PutObject`, once with a multipart upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_a_job_mid_upload_leaves_no_object_no_staging_and_no_job() {
    init();
    if !require(&["aws"]) {
        return;
    }
    let (_keep, root) = test_dir();
    let Some(s3) = S3Server::start(&root) else {
        return;
    };
    s3.aws(&["s3", "mb", "s3://ferry-e2e"]);
    let gate = common::gate::GateProxy::start(([127, 0, 0, 1], s3.port).into()).await;
    let ferry = Ferry::start(
        &root.join("ferry"),
        &[
            ("FERRY_STORAGE__ALLOW_PRIVATE_ENDPOINTS", "true"),
            ("FERRY_STORAGE__PART_SIZE", "8388608"),
            ("FERRY_STORAGE__UPLOAD_CONCURRENCY", "1"),
            ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]"),
            ("FERRY_WORKERS__PROGRESS_INTERVAL", "50ms"),
        ],
    );
    let mut body = s3_profile(&s3, SECRET);
    body["s3"]["endpoint"] = json!(format!("http://127.0.0.1:{}", gate.port));
    let (status, profile) = ferry.post_json("/storage-profiles", body).await;
    assert_eq!(status, 201, "{profile}");
    let pid = profile["id"].as_str().unwrap().to_owned();

    // One part (a PutObject held halfway), then three parts (held in the second).
    for (name, size, hold, multipart) in [
        ("single.bin", 6 * MIB, 3 * MIB, false),
        ("multi.bin", 20 * MIB, 12 * MIB, true),
    ] {
        let file = root.join("origin").join(name);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        common::origin::random_file(&file, size);
        let origin = common::origin::Origin::start(&file, name).await;
        gate.hold_after(Some(hold));
        let (status, job) = ferry
            .post_json(
                "/jobs",
                json!({"source": {"url": format!("http://{}/{name}", origin.addr)}, "storage_profile": pid}),
            )
            .await;
        assert_eq!(status, 201, "{job}");
        let id = job["id"].as_str().unwrap().to_owned();
        gate.wait_held(Duration::from_secs(120)).await;
        assert_eq!(ferry.job(&id).await["status"], "uploading");
        let staged = ferry.data_dir.join("staging").join(&id);
        assert!(staged.exists(), "{name}: the staged file is being uploaded");
        assert_eq!(
            s3.unfinished_uploads().len(),
            usize::from(multipart),
            "{name}: multipart upload open"
        );

        let r = ferry
            .req(Method::DELETE, &format!("/jobs/{id}?purge=true"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let answer: Value = r.json().await.unwrap_or(Value::Null);
        // The purge is done once the job is gone.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, _) = ferry.get_json(&format!("/jobs/{id}")).await;
            if code == 404 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: the purge never finished"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let whatever the delivery still holds go through, and wait until it has.
        gate.hold_after(None);
        gate.wait_quiet(Duration::from_secs(2)).await;

        let listing =
            String::from_utf8(s3.aws(&["s3", "ls", "--recursive", "s3://ferry-e2e/"])).unwrap();
        assert!(!listing.contains(&id), "{name}: objects left: {listing}");
        assert!(
            s3.unfinished_uploads().is_empty(),
            "{name}: unfinished uploads left: {:?}",
            s3.unfinished_uploads()
        );
        assert!(
            !staged.exists(),
            "{name}: staged data left at {}",
            staged.display()
        );
        let (_, list) = ferry.get_json("/jobs").await;
        assert!(
            !list.to_string().contains(&id),
            "{name}: the job is gone: {list}"
        );
        // While the purge was pending the answer was honest: accepted, with the job.
        assert_eq!(status, 202, "{name}: {answer}");
        assert_eq!(
            (answer["status"].as_str(), answer["purge_pending"].as_bool()),
            (Some("cancelled"), Some(true)),
            "{name}: {answer}"
        );
    }
}

// ---- folders on the shared volume ----

fn folder_profile(name: &str, path: &str) -> Value {
    json!({"name": name, "kind": "folder", "path": path})
}

/// Asserts an error answer: its status, its code, and a message saying why.
fn assert_refused((status, answer): &(u16, Value), want: u16, code: &str, what: &str) {
    assert_eq!(
        (*status, answer["code"].as_str()),
        (want, Some(code)),
        "{what}: {answer}"
    );
    assert!(
        answer["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {answer}"
    );
}

/// Serves `size` random bytes as `/{name}` from the test's own origin; returns its URL (the
/// origin lives as long as the test's runtime) and their SHA-256.
async fn origin_file(root: &std::path::Path, name: &str, size: u64) -> (String, String) {
    let file = root.join("origin").join(name);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let sha = common::origin::random_file(&file, size);
    let origin = common::origin::Origin::start(&file, name).await;
    (format!("http://{}/{name}", origin.addr), sha)
}

/// `ferry serve` (its shared folder the default `{data_dir}/shared`), allowed to fetch from
/// the test's own origin on loopback.
fn serve_with_origin(root: &std::path::Path) -> Ferry {
    Ferry::start(
        &root.join("ferry"),
        &[
            ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]"),
            ("FERRY_WORKERS__PROGRESS_INTERVAL", "50ms"),
        ],
    )
}

/// Submits a URL job delivered to `profile`; returns its id.
async fn url_job(ferry: &Ferry, url: &str, profile: &str) -> String {
    let (status, job) = ferry
        .post_json(
            "/jobs",
            json!({"source": {"url": url}, "storage_profile": profile}),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    job["id"].as_str().unwrap().to_owned()
}

/// The names in a folder.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A folder profile: a URL job delivered there is a plain file in
/// `{shared_dir}/{owner}/{path}/{job}/`, where another program reads it (and may rewrite it
/// without touching Ferry's copies); the API serves it; the folder takes the jobs that name
/// none once it is the default; a purge removes the job's folder only, and deleting the
/// profile leaves the files where they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_job_is_delivered_into_a_folder_of_the_shared_volume_and_stays_there() {
    use std::os::unix::fs::MetadataExt;
    init();
    let (_keep, root) = test_dir();
    let ferry = serve_with_origin(&root);
    let owner = owner_id(&ferry).await;
    let shared = ferry.data_dir.join("shared");
    assert!(shared.is_dir(), "ferry serve makes {{data_dir}}/shared");

    let (status, profile) = ferry
        .post_json("/storage-profiles", folder_profile("TV", "tv/"))
        .await;
    assert_eq!(status, 201, "{profile}");
    let folder = shared.join(&owner).join("tv");
    assert_eq!(
        (
            profile["kind"].as_str(),
            profile["path"].as_str(),
            profile["location"].as_str()
        ),
        (Some("folder"), Some("tv"), folder.to_str()),
        "{profile}"
    );
    assert!(folder.is_dir(), "the profile's check made its folder");
    let pid = profile["id"].as_str().unwrap().to_owned();
    let (status, tested) = ferry
        .post_json(&format!("/storage-profiles/{pid}/test"), json!({}))
        .await;
    assert_eq!(
        (status, tested["ok"].as_bool()),
        (200, Some(true)),
        "{tested}"
    );
    let (_, listed) = ferry.get_json("/storage-profiles").await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["location"].as_str(), folder.to_str(), "{listed}");
    let (status, got) = ferry.get_json(&format!("/storage-profiles/{pid}")).await;
    assert_eq!((status, got["path"].as_str()), (200, Some("tv")), "{got}");

    // A URL job with the folder as its destination.
    let (url, sha) = origin_file(&root, "episode.mkv", 3 * MIB + 7).await;
    let id = url_job(&ferry, &url, &pid).await;
    ferry
        .wait_status(&id, "completed", Duration::from_secs(120))
        .await;
    let (_, files) = ferry.get_json(&format!("/jobs/{id}/files")).await;
    let name = files[0]["path"].as_str().unwrap().to_owned();
    assert_eq!(files[0]["sha256"].as_str(), Some(sha.as_str()), "{files}");
    let delivered = folder.join(&id).join(&name);
    assert_eq!(sha256_hex(&std::fs::read(&delivered).unwrap()), sha);
    assert_eq!(
        std::fs::metadata(&delivered).unwrap().nlink(),
        1,
        "the delivered file is its own, not another name of the content store's"
    );
    let r = ferry
        .req(Method::GET, &format!("/jobs/{id}/files/0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(sha256_hex(&r.bytes().await.unwrap()), sha);

    // The default destination: a job that names none goes there (the same content, stored
    // once by Ferry, is a file of its own in the folder).
    let r = ferry
        .req(Method::PUT, "/me/default-storage-profile")
        .json(&json!({"profile": pid}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (status, again) = ferry
        .post_json("/jobs", json!({"source": {"url": url}}))
        .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(
        again["storage_profile"].as_str(),
        Some(pid.as_str()),
        "{again}"
    );
    let again = again["id"].as_str().unwrap().to_owned();
    ferry
        .wait_status(&again, "completed", Duration::from_secs(120))
        .await;
    let second = folder.join(&again).join(&name);
    assert_eq!(sha256_hex(&std::fs::read(&second).unwrap()), sha);
    // Another program rewriting one delivered file changes nothing else.
    std::fs::write(&delivered, b"retagged").unwrap();
    assert_eq!(sha256_hex(&std::fs::read(&second).unwrap()), sha);

    // A purge removes the job's folder, not the profile's; nor the other job's files.
    ferry.purge(&id).await;
    assert!(
        !folder.join(&id).exists(),
        "the purged job's folder is gone"
    );
    assert!(folder.is_dir() && second.is_file());
    // Deleting the profile leaves the delivered files in place.
    let r = ferry
        .req(Method::DELETE, &format!("/storage-profiles/{pid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(sha256_hex(&std::fs::read(&second).unwrap()), sha);
    let (_, default) = ferry.get_json("/me/default-storage-profile").await;
    assert_eq!(default, json!({}), "the default went with the profile");
}

/// Hostile folder paths, links planted in a user's area by another program on the volume,
/// and two users with a folder of the same name: every path stays in its owner's area.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_profiles_keep_each_user_inside_their_own_area() {
    use common::login::{add_user, browser};
    init();
    let (_keep, root) = test_dir();
    let ferry = serve_with_origin(&root);
    let shared = ferry.data_dir.join("shared");
    let alice = owner_id(&ferry).await;
    add_user(&ferry, "bob", false);
    let bob = browser(&ferry, "bob").await;
    let bob_id = bob.user_id().await;
    assert_ne!(alice, bob_id);

    let long = "x".repeat(300);
    let cases: Vec<(Value, &str)> = vec![
        (folder_profile("p", "../x"), "invalid_storage_profile"),
        (folder_profile("p", "/etc"), "invalid_storage_profile"),
        (folder_profile("p", "a/../../b"), "invalid_storage_profile"),
        (folder_profile("p", ".."), "invalid_storage_profile"),
        (folder_profile("p", "tv/./x"), "invalid_storage_profile"),
        (folder_profile("p", "a//b"), "invalid_storage_profile"),
        (folder_profile("p", "a\u{0}b"), "invalid_storage_profile"),
        (folder_profile("p", "a\\b"), "invalid_storage_profile"),
        (folder_profile("p", "tv\nx"), "invalid_storage_profile"),
        (folder_profile("p", &long), "invalid_storage_profile"),
        (
            folder_profile("p", &format!("../{bob_id}/tv")),
            "invalid_storage_profile",
        ),
        (folder_profile("", "tv"), "invalid_storage_profile"),
        (
            json!({"name": "p", "kind": "folder", "path": "tv", "prefix": "x"}),
            "invalid_request",
        ),
        (
            json!({"name": "p", "kind": "disk", "path": "tv"}),
            "invalid_request",
        ),
        (json!({"name": "p", "kind": "folder"}), "invalid_request"),
        (
            json!({"name": false, "kind": "folder", "path": "tv"}),
            "invalid_request",
        ),
        (
            json!({"name": "p", "kind": "folder", "path": 5}),
            "invalid_request",
        ),
    ];
    for (body, code) in cases {
        let answer = ferry.post_json("/storage-profiles", body.clone()).await;
        assert_refused(&answer, 400, code, &body.to_string());
    }
    assert!(!shared.join("x").exists() && !shared.join("b").exists());

    // Two users, one folder name, two folders.
    let (status, mine) = ferry
        .post_json("/storage-profiles", folder_profile("TV", "tv"))
        .await;
    assert_eq!(status, 201, "{mine}");
    let (status, theirs) = bob
        .json(
            Method::POST,
            "/storage-profiles",
            Some(folder_profile("TV", "tv")),
        )
        .await;
    assert_eq!(status, 201, "{theirs}");
    assert_eq!(
        mine["location"].as_str(),
        shared.join(&alice).join("tv").to_str()
    );
    assert_eq!(
        theirs["location"].as_str(),
        shared.join(&bob_id).join("tv").to_str()
    );
    let mine = mine["id"].as_str().unwrap().to_owned();

    // Bob can neither see, test, use nor delete Alice's profile, nor read her files.
    for (method, path) in [
        (Method::GET, format!("/storage-profiles/{mine}")),
        (Method::POST, format!("/storage-profiles/{mine}/test")),
        (Method::DELETE, format!("/storage-profiles/{mine}")),
    ] {
        let answer = bob.json(method.clone(), &path, None).await;
        assert_refused(&answer, 404, "storage_profile_not_found", &path);
    }
    let (url, sha) = origin_file(&root, "film.mkv", MIB).await;
    let answer = bob
        .json(
            Method::POST,
            "/jobs",
            Some(json!({"source": {"url": url}, "storage_profile": mine})),
        )
        .await;
    assert_refused(&answer, 422, "storage_profile_not_found", "a job");
    let id = url_job(&ferry, &url, &mine).await;
    ferry
        .wait_status(&id, "completed", Duration::from_secs(120))
        .await;
    let (status, _) = bob
        .json(Method::GET, &format!("/jobs/{id}/files/0"), None)
        .await;
    assert_eq!(status, 404);
    let (_, files) = ferry.get_json(&format!("/jobs/{id}/files")).await;
    let name = files[0]["path"].as_str().unwrap();
    let delivered = shared.join(&alice).join("tv").join(&id).join(name);
    assert_eq!(sha256_hex(&std::fs::read(delivered).unwrap()), sha);

    // Links another program planted in Alice's area: to `/`, to Bob's area.
    let area = shared.join(&alice);
    std::os::unix::fs::symlink("/", area.join("root")).unwrap();
    std::os::unix::fs::symlink(shared.join(&bob_id), area.join("bob")).unwrap();
    std::os::unix::fs::symlink(format!("../{bob_id}/tv"), area.join("bobs-tv")).unwrap();
    for path in ["root", "root/tmp", "bob", "bob/tv", "bobs-tv/new"] {
        let answer = ferry
            .post_json("/storage-profiles", folder_profile("p", path))
            .await;
        assert_refused(&answer, 400, "storage_folder_not_allowed", path);
    }
    assert_eq!(
        names(&shared.join(&bob_id)),
        ["tv"],
        "nothing made in Bob's area"
    );
    assert!(names(&shared.join(&bob_id).join("tv")).is_empty());

    // A folder that becomes a link after the profile was saved: refused by the test, and a
    // job delivering there fails with the same code, writing nothing in Bob's area.
    let (status, later) = ferry
        .post_json("/storage-profiles", folder_profile("Later", "later"))
        .await;
    assert_eq!(status, 201, "{later}");
    let later = later["id"].as_str().unwrap().to_owned();
    std::fs::remove_dir(area.join("later")).unwrap();
    std::os::unix::fs::symlink(shared.join(&bob_id), area.join("later")).unwrap();
    let answer = ferry
        .post_json(&format!("/storage-profiles/{later}/test"), json!({}))
        .await;
    assert_refused(&answer, 400, "storage_folder_not_allowed", "the test");
    let id = url_job(&ferry, &url, &later).await;
    let failed = ferry
        .wait_status(&id, "failed", Duration::from_secs(120))
        .await;
    assert_eq!(
        failed["error"]["code"].as_str(),
        Some("storage_folder_not_allowed"),
        "{failed}"
    );
    assert_eq!(
        names(&shared.join(&bob_id)),
        ["tv"],
        "nothing delivered to Bob"
    );
}

/// The distributed processes have no shared volume unless one is configured: a folder profile
/// is then refused (`422 shared_dir_unset`), and a job whose upload worker lacks the volume
/// fails with that code rather than writing somewhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_shared_dir_folder_profiles_are_refused_and_their_jobs_fail_clearly() {
    init();
    if !require(&["psql", "redis-cli"]) {
        return;
    }
    let Some(db) = FreshDb::create() else { return };
    let (_keep, root) = test_dir();
    let redis = test_redis_url();
    let mut cluster = Cluster::new(
        &root,
        &db.url,
        &redis,
        &[
            ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]"),
            ("FERRY_WORKERS__PROGRESS_INTERVAL", "50ms"),
        ],
    );
    cluster.migrate();
    let plain = cluster.api();
    let answer = plain
        .post_json("/storage-profiles", folder_profile("TV", "tv"))
        .await;
    assert_refused(&answer, 422, "shared_dir_unset", "an API without a volume");

    // An API with the volume saves the profile; the upload worker has none.
    let shared = root.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    cluster.env.push((
        "FERRY_STORAGE__SHARED_DIR".to_owned(),
        shared.display().to_string(),
    ));
    let api = cluster.api();
    cluster.env.pop();
    let (status, profile) = api
        .post_json("/storage-profiles", folder_profile("TV", "tv"))
        .await;
    assert_eq!(status, 201, "{profile}");
    let pid = profile["id"].as_str().unwrap().to_owned();
    let (_, seen) = plain.get_json(&format!("/storage-profiles/{pid}")).await;
    assert_eq!(seen["kind"], "folder", "{seen}");
    assert!(
        seen.get("location").is_none(),
        "no volume, no location: {seen}"
    );
    let _fetcher = cluster.worker("fetch");
    let _uploader = cluster.worker("upload");
    let (url, _) = origin_file(&root, "film.mkv", MIB).await;
    let id = url_job(&api, &url, &pid).await;
    let failed = api
        .wait_status(&id, "failed", Duration::from_secs(120))
        .await;
    assert_eq!(
        failed["error"]["code"].as_str(),
        Some("shared_dir_unset"),
        "{failed}"
    );
    assert!(
        names(&shared.join(owner_id(&api).await).join("tv")).is_empty(),
        "nothing delivered"
    );
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
