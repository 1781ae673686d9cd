//! The qBittorrent-compatible API (`/api/v2`) on the real `ferry serve`: the `qbittorrent-api`
//! Python client drives it as a script or an *arr app drives qBittorrent, against a real
//! swarm (opentracker + aria2c); and the details that decide whether Sonarr works at all
//! (403s, cookies, Basic and Bearer, unknown hashes, users kept apart, hostile input).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::login::*;
use common::swarm::Swarm;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn ferry(dir: &std::path::Path) -> Ferry {
    init();
    Ferry::start(&dir.join("ferry"), &[])
}

/// A personal token for `user` (read and write).
async fn token(user: &Browser, name: &str) -> String {
    let (status, made) = user
        .json(
            Method::POST,
            "/me/tokens",
            Some(json!({"name": name, "scopes": ["read", "write"]})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    made["token"].as_str().unwrap().to_owned()
}

fn v2(f: &Ferry, path: &str) -> String {
    format!("{}/api/v2{path}", f.base)
}

#[tokio::test]
async fn the_qbittorrent_api_client_adds_a_magnet_in_a_category_and_finds_its_files() {
    if !require(&["python3", "opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let swarm = Swarm::start("season", &[("e01.mkv", 3 << 20), ("e02.mkv", 1 << 20)]);
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path());
    let _admin = admin(&f).await;
    add_user(&f, "sonarr", false);
    let user = browser(&f, "sonarr").await;
    let token = token(&user, "sonarr").await;
    let expected: serde_json::Map<String, Value> = swarm
        .payload
        .files
        .iter()
        .map(|(rel, sha, _)| (rel.clone(), Value::String(sha.clone())))
        .collect();
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/qbittorrent/arr_client.py"
        ))
        .arg(&f.base)
        .arg("sonarr")
        .arg(&token)
        .arg(swarm.magnet())
        .arg(&swarm.torrent.info_hash)
        .arg(Value::Object(expected).to_string())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the client failed: {said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(said.trim()).unwrap();
    // The files were read where the category's folder is: the user's area of the shared
    // volume, `{data}/shared/{user id}/tv-sonarr/{job}/season`.
    let content = seen["seen"]["content_path"].as_str().unwrap();
    let id = user.user_id().await;
    assert!(
        content.contains(&format!("/shared/{id}/tv-sonarr/")),
        "{content}"
    );
    assert!(content.ends_with("/season"), "{content}");
}

#[tokio::test]
async fn sonarrs_connection_details_hold() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path());
    let _admin = admin(&f).await;
    add_user(&f, "alice", false);
    add_user(&f, "bob", false);
    let alice = browser(&f, "alice").await;
    let bob = browser(&f, "bob").await;
    let alice_token = token(&alice, "sonarr").await;
    let bob_token = token(&bob, "radarr").await;
    let http = reqwest::Client::new();

    // Unauthenticated: 403 (never 401 or 404), which Sonarr reads as "qBittorrent, log in".
    let r = http.get(v2(&f, "/app/webapiVersion")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http.get(v2(&f, "/torrents/info")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // A wrong pair: "Fails." with 200; the token of another user under this name too.
    for (name, password) in [
        ("alice", "ferry_pat_nope"),
        ("alice", bob_token.as_str()),
        ("nobody", alice_token.as_str()),
    ] {
        let r = http
            .post(v2(&f, "/auth/login"))
            .form(&[("username", name), ("password", password)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(set_cookie(&r, "SID").is_none());
        assert_eq!(r.text().await.unwrap(), "Fails.");
    }

    // The operator's bootstrap token is no one's password here.
    let r = http
        .post(v2(&f, "/auth/login"))
        .form(&[("username", "root"), ("password", f.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "Fails.");

    // The right pair: "Ok." and an SID cookie that then works alone.
    let r = http
        .post(v2(&f, "/auth/login"))
        .form(&[("username", "alice"), ("password", alice_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (sid, attributes) = set_cookie(&r, "SID").expect("an SID cookie");
    assert!(attributes.contains("HttpOnly"), "{attributes}");
    assert!(attributes.contains("SameSite=Strict"), "{attributes}");
    assert!(attributes.contains("Path=/api/v2"), "{attributes}");
    assert_eq!(r.text().await.unwrap(), "Ok.");
    let with_sid = |path: &str| {
        http.get(v2(&f, path))
            .header("cookie", format!("SID={sid}"))
    };
    let r = with_sid("/app/webapiVersion").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().starts_with("2.11."));
    let r = with_sid("/app/version").send().await.unwrap();
    assert!(r.text().await.unwrap().starts_with("v5."));

    // Basic and Bearer on each request, no login.
    let r = http
        .get(v2(&f, "/torrents/info"))
        .basic_auth("alice", Some(&alice_token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
    let r = http
        .get(v2(&f, "/torrents/info"))
        .bearer_auth(&alice_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .get(v2(&f, "/torrents/info"))
        .basic_auth("bob", Some(&alice_token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Alice adds a torrent (nobody seeds it: it stays looking for peers).
    let magnet = format!("magnet:?xt=urn:btih:{}&dn=lonely", "ab".repeat(20));
    let r = http
        .post(v2(&f, "/torrents/add"))
        .bearer_auth(&alice_token)
        .multipart(
            reqwest::multipart::Form::new()
                .text("urls", magnet)
                .text("category", "tv"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "Ok.");
    let info: Value = with_sid("/torrents/info?category=tv")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t = &info[0];
    assert_eq!(t["hash"], json!("ab".repeat(20)));
    assert_eq!(t["category"], json!("tv"));
    assert!(t["eta"].is_i64() && t["size"].is_i64(), "{t}");
    assert!(
        ["metaDL", "queuedDL"].contains(&t["state"].as_str().unwrap()),
        "{t}"
    );
    let categories: Value = with_sid("/torrents/categories")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        categories["tv"]["savePath"]
            .as_str()
            .unwrap()
            .ends_with("/tv")
    );

    // Bob sees none of it, and cannot touch it.
    let bobs: Value = http
        .get(v2(&f, "/torrents/info"))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bobs, json!([]));
    let r = http
        .get(v2(
            &f,
            &format!("/torrents/properties?hash={}", "ab".repeat(20)),
        ))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http
        .post(v2(&f, "/torrents/delete"))
        .bearer_auth(&bob_token)
        .form(&[("hashes", "all"), ("deleteFiles", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let still: Value = with_sid("/torrents/info")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(still.as_array().unwrap().len(), 1);

    // Changes take POST; a cookie-borne change from another site is refused (CSRF).
    let r = with_sid("/torrents/delete?hashes=all")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "POST");
    let r = http
        .post(v2(&f, "/torrents/delete"))
        .header("cookie", format!("SID={sid}"))
        .header("origin", "https://evil.example")
        .form(&[("hashes", "all"), ("deleteFiles", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A revoked token is a 403 at once (the *arr logs in again, and fails).
    let (_, tokens) = alice.json(Method::GET, "/me/tokens", None).await;
    let id = tokens[0]["id"].as_str().unwrap().to_owned();
    let (status, _) = alice
        .json(Method::DELETE, &format!("/me/tokens/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let r = with_sid("/torrents/info").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn hostile_input_is_refused_with_a_clear_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path());
    let _admin = admin(&f).await;
    add_user(&f, "mallory", false);
    let m = browser(&f, "mallory").await;
    let token = token(&m, "x").await;
    let http = reqwest::Client::new();
    let post = |path: &str, form: Vec<(&str, String)>| {
        http.post(v2(&f, path))
            .bearer_auth(&token)
            .form(&form)
            .send()
    };
    for (name, path) in [
        ("../../etc", ""),
        ("/abs", ""),
        ("a//b", ""),
        ("ok", "/etc"),
        ("ok2", "../../../../tmp"),
        ("ok3", "a/../../b"),
        ("nul\u{0}", ""),
    ] {
        let r = post(
            "/torrents/createCategory",
            vec![("category", name.to_owned()), ("savePath", path.to_owned())],
        )
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name:?} {path:?}");
    }
    let r = post(
        "/torrents/add",
        vec![("urls", "file:///etc/passwd".to_owned())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post(
        "/torrents/add",
        vec![("urls", "http://169.254.169.254/latest.torrent".to_owned())],
    )
    .await
    .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = http
        .post(v2(&f, "/torrents/add"))
        .bearer_auth(&token)
        .multipart(
            reqwest::multipart::Form::new().part(
                "torrents",
                reqwest::multipart::Part::bytes(b"d4:infod4:name3:../ee".to_vec())
                    .file_name("x.torrent"),
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = post(
        "/torrents/setCategory",
        vec![("hashes", "all".into()), ("category", "none-such".into())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = post(
        "/torrents/addTags",
        vec![("hashes", "all".into()), ("tags", "x".repeat(300))],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = http
        .post(v2(&f, "/torrents/add"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = http
        .get(v2(&f, "/torrents/nonesuch"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// Every state qBittorrent can report, by what it means to a client.
fn meaning(state: &str) -> &'static str {
    match state {
        "metaDL" | "queuedDL" | "downloading" | "stalledDL" | "forcedDL" | "checkingDL"
        | "allocating" | "checkingResumeData" | "forcedMetaDL" => "downloading",
        "uploading" | "stalledUP" | "queuedUP" | "forcedUP" | "checkingUP" => "seeding",
        "pausedDL" | "stoppedDL" => "stopped before the end",
        "pausedUP" | "stoppedUP" => "finished",
        "moving" => "moving",
        "error" | "missingFiles" => "error",
        other => panic!("not a qBittorrent state: {other}"),
    }
}

/// The JSON type of a value as a client reads it (numbers are numbers, but an integer field
/// must never be a fraction).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Fields typed alike in both answers (an integer where qBittorrent gave one; a number
/// may be written `1` by one and `1.0` by the other).
fn same_types(field: &str, ferry: &Value, qbt: &Value) {
    let (a, b) = (kind(ferry), kind(qbt));
    let compatible = a == b
        || (b == "number" && a == "integer")
        || (a == "number"
            && b == "integer"
            && qbt.as_f64().is_some_and(|f| f.fract() == 0.0)
            && !INTEGERS.contains(&field));
    assert!(
        compatible,
        "{field}: Ferry {a} ({ferry}), qBittorrent {b} ({qbt})"
    );
}

/// Fields the *arr apps and autobrr read as integers.
const INTEGERS: &[&str] = &[
    "size",
    "eta",
    "added_on",
    "completion_on",
    "amount_left",
    "completed",
    "dlspeed",
    "upspeed",
    "downloaded",
    "uploaded",
    "seeding_time",
    "seeding_time_limit",
    "last_activity",
    "num_seeds",
    "num_leechs",
    "total_size",
    "time_active",
    "priority",
];

async fn poll(http: &reqwest::Client, url: &str, auth: Option<&str>) -> Value {
    let mut req = http.get(url);
    if let Some(token) = auth {
        req = req.bearer_auth(token);
    }
    let r = req.send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.unwrap()
}

/// `torrents/add` with `paused`/`stopped` (both spellings sent, as clients of either version
/// do): the torrent is listed stopped and fetches nothing; `torrents/resume` starts it and it
/// completes — in Ferry as in qbittorrent-nox.
#[tokio::test]
async fn a_torrent_added_stopped_waits_until_started_as_in_qbittorrent() {
    if !require(&["qbittorrent-nox", "opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let swarm = Swarm::start("held", &[("a.mkv", 2 << 20)]);
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path());
    let _admin = admin(&f).await;
    add_user(&f, "sonarr", false);
    let user = browser(&f, "sonarr").await;
    let token = token(&user, "sonarr").await;
    let qbt = common::origin::Qbt::start(dir.path()).await;
    let http = reqwest::Client::new();
    let targets = [
        (format!("{}/api/v2", f.base), Some(token.as_str())),
        (format!("{}/api/v2", qbt.url), None),
    ];
    let send = |base: &str, auth: Option<&str>, path: &str, form: Vec<(&str, String)>| {
        let mut req = http.post(format!("{base}{path}")).form(&form);
        if let Some(token) = auth {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let hash = swarm.torrent.info_hash.clone();
    for (base, auth) in &targets {
        let form = vec![
            ("urls", swarm.magnet()),
            ("paused", "true".into()),
            ("stopped", "true".into()),
        ];
        let r = send(base, *auth, "/torrents/add", form).await.unwrap();
        assert!(r.status().is_success(), "{base}: {}", r.status());
    }
    // Stopped, and staying so: polled until each has been seen stopped five times.
    let mut seen = [0, 0];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while seen.iter().any(|&n| n < 5) {
        for (i, (base, auth)) in targets.iter().enumerate() {
            let info = poll(&http, &format!("{base}/torrents/info?hashes={hash}"), *auth).await;
            let Some(t) = info.get(0) else { continue };
            let state = t["state"].as_str().unwrap();
            assert_eq!(meaning(state), "stopped before the end", "{base}: {t}");
            assert_eq!(t["progress"].as_f64(), Some(0.0), "{base}: {t}");
            seen[i] += 1;
        }
        assert!(std::time::Instant::now() < deadline, "not listed: {seen:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for (base, auth) in &targets {
        let r = send(
            base,
            *auth,
            "/torrents/resume",
            vec![("hashes", hash.clone())],
        )
        .await
        .unwrap();
        assert!(r.status().is_success(), "{base}: {}", r.status());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut done = [false, false];
    while !done.iter().all(|d| *d) {
        for (i, (base, auth)) in targets.iter().enumerate() {
            let info = poll(&http, &format!("{base}/torrents/info?hashes={hash}"), *auth).await;
            done[i] = info
                .get(0)
                .is_some_and(|t| t["progress"].as_f64() == Some(1.0));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not complete: {done:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn ferry_answers_like_qbittorrent_nox_through_a_torrents_life() {
    if !require(&["qbittorrent-nox", "opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let swarm = Swarm::start("show", &[("a.mkv", 2 << 20), ("b.nfo", 10_000)]);
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path());
    let _admin = admin(&f).await;
    add_user(&f, "sonarr", false);
    let user = browser(&f, "sonarr").await;
    let token = token(&user, "sonarr").await;
    let qbt = common::origin::Qbt::start(dir.path()).await;
    let http = reqwest::Client::new();
    // The same calls to both: Ferry with its token, qbittorrent-nox on its open loopback.
    let targets = [
        (format!("{}/api/v2", f.base), Some(token.as_str())),
        (format!("{}/api/v2", qbt.url), None),
    ];
    let send = |base: &str, auth: Option<&str>, path: &str, form: Vec<(&str, String)>| {
        let mut req = http.post(format!("{base}{path}")).form(&form);
        if let Some(token) = auth {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let hash = swarm.torrent.info_hash.clone();
    for (base, auth) in &targets {
        let r = send(
            base,
            *auth,
            "/torrents/createCategory",
            vec![("category", "tv".into()), ("savePath", String::new())],
        )
        .await
        .unwrap();
        assert!(r.status().is_success(), "{base}: {}", r.status());
        let r = send(
            base,
            *auth,
            "/torrents/add",
            vec![("urls", swarm.magnet()), ("category", "tv".into())],
        )
        .await
        .unwrap();
        assert!(r.status().is_success(), "{base}: {}", r.status());
    }
    // Each one's states until complete, by meaning.
    let mut lives: Vec<Vec<&'static str>> = vec![Vec::new(), Vec::new()];
    let mut last: Vec<Value> = vec![Value::Null, Value::Null];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let mut done = 0;
        for (i, (base, auth)) in targets.iter().enumerate() {
            let info = poll(&http, &format!("{base}/torrents/info?hashes={hash}"), *auth).await;
            let Some(t) = info.get(0) else { continue };
            let meaning = meaning(t["state"].as_str().unwrap());
            if lives[i].last() != Some(&meaning) {
                lives[i].push(meaning);
            }
            if t["progress"].as_f64() == Some(1.0) && ["seeding", "finished"].contains(&meaning) {
                done += 1;
            }
            last[i] = t.clone();
        }
        if done == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not both complete: {last:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for life in &lives {
        assert_eq!(life.last(), lives[1].last(), "how each ended: {lives:?}");
        assert!(
            life.iter()
                .all(|m| ["downloading", "moving", "seeding", "finished"].contains(m)),
            "{lives:?}"
        );
    }
    // Every field both give has the same type, and these the same meaning.
    let (ferry_t, qbt_t) = (last[0].as_object().unwrap(), last[1].as_object().unwrap());
    for (field, value) in qbt_t {
        if let Some(ours) = ferry_t.get(field) {
            same_types(field, ours, value);
        }
    }
    for field in ["hash", "name", "category"] {
        assert_eq!(ferry_t[field], qbt_t[field], "{field}");
    }
    for field in ["size", "progress", "amount_left", "total_size", "eta"] {
        assert_eq!(ferry_t[field].as_f64(), qbt_t[field].as_f64(), "{field}");
    }
    for field in [
        "hash",
        "name",
        "size",
        "progress",
        "eta",
        "state",
        "category",
        "save_path",
        "content_path",
        "ratio",
        "ratio_limit",
        "seeding_time",
        "seeding_time_limit",
        "last_activity",
        "added_on",
        "tags",
    ] {
        assert!(ferry_t.contains_key(field), "Ferry lacks {field}");
    }
    // content_path is save_path/name in both.
    for t in [ferry_t, qbt_t] {
        let (save, content) = (
            t["save_path"].as_str().unwrap(),
            t["content_path"].as_str().unwrap(),
        );
        assert_eq!(
            std::path::Path::new(content),
            std::path::Path::new(save).join("show"),
            "{t:?}"
        );
    }
    // The other answers the clients read, typed alike.
    for (path, keyed) in [
        (format!("/torrents/properties?hash={hash}"), true),
        (format!("/torrents/files?hash={hash}"), false),
        ("/torrents/categories".to_owned(), false),
        ("/app/preferences".to_owned(), true),
        ("/transfer/info".to_owned(), true),
    ] {
        let ours = poll(&http, &format!("{}{path}", targets[0].0), targets[0].1).await;
        let theirs = poll(&http, &format!("{}{path}", targets[1].0), None).await;
        let (ours, theirs) = if keyed {
            (ours, theirs)
        } else if let (Some(a), Some(b)) = (ours.get(0), theirs.get(0)) {
            (a.clone(), b.clone())
        } else {
            (ours["tv"].clone(), theirs["tv"].clone())
        };
        for (field, value) in theirs.as_object().unwrap() {
            if let Some(mine) = ours.get(field) {
                if field == "piece_range" || field == "availability" {
                    continue;
                }
                same_types(field, mine, value);
            }
        }
    }
    // Share limits, then delete with files: the same outcome in both.
    for (base, auth) in &targets {
        let r = send(
            base,
            *auth,
            "/torrents/setShareLimits",
            vec![
                ("hashes", hash.clone()),
                ("ratioLimit", "1.5".into()),
                ("seedingTimeLimit", "60".into()),
                ("inactiveSeedingTimeLimit", "-2".into()),
            ],
        )
        .await
        .unwrap();
        assert!(r.status().is_success(), "{base}: {}", r.status());
        let t = poll(&http, &format!("{base}/torrents/info?hashes={hash}"), *auth).await;
        assert_eq!(
            (
                t[0]["ratio_limit"].as_f64(),
                t[0]["seeding_time_limit"].as_i64()
            ),
            (Some(1.5), Some(60)),
            "{base}"
        );
        let r = send(
            base,
            *auth,
            "/torrents/delete",
            vec![("hashes", hash.clone()), ("deleteFiles", "true".into())],
        )
        .await
        .unwrap();
        assert!(r.status().is_success(), "{base}: {}", r.status());
    }
    for (base, auth) in &targets {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let t = poll(&http, &format!("{base}/torrents/info?hashes={hash}"), *auth).await;
            if t == json!([]) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{base} still lists it: {t}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// Sonarr's qBittorrent download client, call for call (its public source,
/// `QBittorrentProxyV2` and `QBittorrent.cs`): the connection test, adding a .torrent file,
/// polling, importing from `content_path`, removing with the data.
#[tokio::test]
async fn sonarrs_request_sequence_passes() {
    if !require(&["opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let swarm = Swarm::start("Show.S01E01", &[("Show.S01E01.mkv", 2 << 20)]);
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path());
    let _admin = admin(&f).await;
    add_user(&f, "sonarr", false);
    let user = browser(&f, "sonarr").await;
    let token = token(&user, "sonarr").await;
    let http = reqwest::Client::new();
    let hash = swarm.torrent.info_hash.clone();

    // IsApiSupported: the version without credentials must be a 403.
    let r = http.get(v2(&f, "/app/webapiVersion")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // AuthenticateClient: a form login; "Ok." and the cookie it then sends.
    let r = http
        .post(v2(&f, "/auth/login"))
        .form(&[("username", "sonarr"), ("password", token.as_str())])
        .send()
        .await
        .unwrap();
    let (sid, _) = set_cookie(&r, "SID").unwrap();
    assert_eq!(r.text().await.unwrap(), "Ok.");
    let cookie = format!("SID={sid}");
    let get = |path: String| {
        http.get(v2(&f, &path))
            .header("cookie", cookie.clone())
            .send()
    };
    let post = |path: &str, form: Vec<(&str, String)>| {
        http.post(v2(&f, path))
            .header("cookie", cookie.clone())
            .form(&form)
            .send()
    };
    // Test(): versions, preferences, categories (made when missing), the torrent list.
    let version = get("/app/version".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        version.trim_start_matches('v').starts_with('5'),
        "{version}"
    );
    let api = get("/app/webapiVersion".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(api.as_str() >= "2.11.0", "{api}");
    let prefs: Value = get("/app/preferences".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (field, is) in [
        ("max_ratio_enabled", "bool"),
        ("max_seeding_time_enabled", "bool"),
        ("queueing_enabled", "bool"),
        ("dht", "bool"),
        ("save_path", "string"),
        ("max_ratio", "number"),
        ("max_seeding_time", "integer"),
        ("max_ratio_act", "integer"),
    ] {
        let k = kind(&prefs[field]);
        assert!(
            k == is || (is == "number" && k == "integer"),
            "{field}: {prefs}"
        );
    }
    let labels: Value = get("/torrents/categories".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(labels.get("tv-sonarr").is_none());
    let r = post(
        "/torrents/createCategory",
        vec![("category", "tv-sonarr".into())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let listed: Value = get("/torrents/info?category=tv-sonarr".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([]));

    // Download(): the .torrent as a file upload, "stopped" for WebAPI ≥ 2.11, then share
    // limits, then topPrio (409 with queueing off, which Sonarr ignores).
    let form = reqwest::multipart::Form::new()
        .part(
            "torrents",
            reqwest::multipart::Part::bytes(swarm.torrent.bytes.clone())
                .file_name("Show.S01E01.torrent"),
        )
        .text("category", "tv-sonarr")
        .text("stopped", "false");
    let r = http
        .post(v2(&f, "/torrents/add"))
        .header("cookie", cookie.clone())
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = post(
        "/torrents/setShareLimits",
        vec![
            ("hashes", hash.clone()),
            ("ratioLimit", "2".into()),
            ("seedingTimeLimit", "-2".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = post("/torrents/topPrio", vec![("hashes", hash.clone())])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // GetItems(): poll the category until the torrent is complete; IsTorrentLoaded via
    // properties; the files.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let torrent = loop {
        let listed: Value = get("/torrents/info?category=tv-sonarr".into())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let t = listed[0].clone();
        if t["progress"].as_f64() == Some(1.0)
            && ["uploading", "stalledUP", "stoppedUP", "pausedUP"]
                .contains(&t["state"].as_str().unwrap_or(""))
        {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "not complete: {t}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(torrent["hash"], json!(hash));
    assert_eq!(torrent["ratio_limit"].as_f64(), Some(2.0));
    let r = get(format!("/torrents/properties?hash={hash}"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let files: Value = get(format!("/torrents/files?hash={hash}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(files[0]["name"], json!("Show.S01E01/Show.S01E01.mkv"));
    // Import: the files under content_path (the torrent's folder).
    let content = torrent["content_path"].as_str().unwrap();
    let bytes = std::fs::read(std::path::Path::new(content).join("Show.S01E01.mkv")).unwrap();
    assert_eq!(sha256_hex(&bytes), swarm.payload.files[0].1);

    // RemoveItem(): delete with the data; then the torrent is gone (properties 404).
    let r = post(
        "/torrents/delete",
        vec![("hashes", hash.clone()), ("deleteFiles", "true".into())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = get(format!("/torrents/properties?hash={hash}"))
            .await
            .unwrap();
        if r.status() == StatusCode::NOT_FOUND && !std::path::Path::new(content).exists() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still there");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Adding a torrent that is already there: qbittorrent-nox keeps the one it has and answers
/// `Fails.`; Ferry answers the same, with no second entry and the category unchanged.
/// Removed (its files kept) and added again, it is back, once, in both.
#[tokio::test]
async fn adding_a_torrent_already_there_fails_as_in_qbittorrent() {
    if !require(&["qbittorrent-nox"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path());
    let _admin = admin(&f).await;
    add_user(&f, "sonarr", false);
    let user = browser(&f, "sonarr").await;
    let token = token(&user, "sonarr").await;
    let qbt = common::origin::Qbt::start(dir.path()).await;
    let http = reqwest::Client::new();
    let targets = [
        (format!("{}/api/v2", f.base), Some(token.as_str())),
        (format!("{}/api/v2", qbt.url), None),
    ];
    let send = |base: &str, auth: Option<&str>, path: &str, form: Vec<(&str, String)>| {
        let mut req = http.post(format!("{base}{path}")).form(&form);
        if let Some(token) = auth {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    // Nobody seeds it: it stays looking for its metadata.
    let hash = "cd".repeat(20);
    let magnet = format!("magnet:?xt=urn:btih:{hash}&dn=again");
    let listed = |base: String, auth: Option<String>| {
        let http = http.clone();
        let hash = hash.clone();
        async move {
            poll(
                &http,
                &format!("{base}/torrents/info?hashes={hash}"),
                auth.as_deref(),
            )
            .await
        }
    };
    // Until it is listed `n` times (each server lists what it was given a moment later).
    let settle = |base: String, auth: Option<String>, n: usize| {
        let listed = &listed;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let got = listed(base.clone(), auth.clone()).await;
                if got.as_array().unwrap().len() == n {
                    return got;
                }
                assert!(std::time::Instant::now() < deadline, "{base}: {got}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    let mut answers = Vec::new();
    for (base, auth) in &targets {
        for category in ["tv", "films"] {
            let r = send(
                base,
                *auth,
                "/torrents/createCategory",
                vec![("category", category.into()), ("savePath", String::new())],
            )
            .await
            .unwrap();
            assert!(r.status().is_success(), "{base}: {}", r.status());
        }
        let r = send(
            base,
            *auth,
            "/torrents/add",
            vec![("urls", magnet.clone()), ("category", "tv".into())],
        )
        .await
        .unwrap();
        assert_eq!(r.text().await.unwrap(), "Ok.", "{base}");
        settle(base.clone(), auth.map(str::to_owned), 1).await;
        let mut mine = Vec::new();
        // Again, as a magnet and as a bare info hash, into another category.
        for again in [magnet.clone(), hash.clone()] {
            let r = send(
                base,
                *auth,
                "/torrents/add",
                vec![("urls", again), ("category", "films".into())],
            )
            .await
            .unwrap();
            mine.push((r.status().as_u16(), r.text().await.unwrap()));
        }
        answers.push(mine);
        let info = settle(base.clone(), auth.map(str::to_owned), 1).await;
        assert_eq!(info[0]["category"], json!("tv"), "{base}: {info}");
    }
    assert_eq!(answers[0], answers[1], "Ferry, then qbittorrent-nox");
    assert_eq!(answers[1][0], (200, "Fails.".to_owned()));

    // Removed from the list, files kept; added again: listed once more, in both.
    for (base, auth) in &targets {
        let r = send(
            base,
            *auth,
            "/torrents/delete",
            vec![("hashes", hash.clone()), ("deleteFiles", "false".into())],
        )
        .await
        .unwrap();
        assert!(r.status().is_success(), "{base}: {}", r.status());
        settle(base.clone(), auth.map(str::to_owned), 0).await;
        let r = send(
            base,
            *auth,
            "/torrents/add",
            vec![("urls", magnet.clone()), ("category", "films".into())],
        )
        .await
        .unwrap();
        assert_eq!(r.text().await.unwrap(), "Ok.", "{base}");
        let info = settle(base.clone(), auth.map(str::to_owned), 1).await;
        assert_eq!(info[0]["category"], json!("films"), "{base}: {info}");
    }
}

/// `torrents/info` narrows by `hashes`, `category` and `filter` (now asked of the
/// database) exactly as it did when it filtered the whole list: each selection alone and
/// together, another user's torrents never in it.
#[tokio::test]
async fn torrents_info_selects_by_hash_category_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path());
    let _admin = admin(&f).await;
    add_user(&f, "alice", false);
    add_user(&f, "bob", false);
    let alice = token(&browser(&f, "alice").await, "a").await;
    let bob = token(&browser(&f, "bob").await, "b").await;
    let http = reqwest::Client::new();
    let add = |token: &str, hash: String, category: &str, stopped: bool| {
        let mut form = vec![
            ("urls", format!("magnet:?xt=urn:btih:{hash}&dn=t-{hash}")),
            ("category", category.to_owned()),
        ];
        if stopped {
            form.push(("stopped", "true".to_owned()));
        }
        http.post(v2(&f, "/torrents/add"))
            .bearer_auth(token)
            .form(&form)
            .send()
    };
    let h = |c: char| c.to_string().repeat(40);
    // Nobody seeds these: running ones look for metadata, stopped ones stay stopped.
    for (hash, category, stopped) in [
        (h('1'), "tv", false),
        (h('2'), "tv", true),
        (h('3'), "films", false),
        (h('4'), "", true),
    ] {
        let r = add(&alice, hash, category, stopped).await.unwrap();
        assert_eq!(r.text().await.unwrap(), "Ok.");
    }
    // Bob has one of the same torrents, in his own "tv".
    let r = add(&bob, h('1'), "tv", false).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "Ok.");
    let hashes = |query: &str| {
        let url = v2(&f, &format!("/torrents/info{query}"));
        let http = http.clone();
        let alice = alice.clone();
        async move {
            let got = poll(&http, &url, Some(&alice)).await;
            let mut hs: Vec<String> = got
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["hash"].as_str().unwrap().to_owned())
                .collect();
            hs.sort();
            hs
        }
    };
    assert_eq!(hashes("").await, vec![h('1'), h('2'), h('3'), h('4')]);
    assert_eq!(
        hashes(&format!("?hashes={}|{}|nonsense", h('1'), h('3'))).await,
        vec![h('1'), h('3')]
    );
    assert_eq!(hashes("?category=tv").await, vec![h('1'), h('2')]);
    assert_eq!(hashes("?category=").await, vec![h('4')]);
    assert_eq!(hashes("?category=none-such").await, Vec::<String>::new());
    assert_eq!(hashes("?filter=stopped").await, vec![h('2'), h('4')]);
    assert_eq!(hashes("?filter=paused").await, vec![h('2'), h('4')]);
    assert_eq!(
        hashes("?filter=downloading").await,
        vec![h('1'), h('2'), h('3'), h('4')]
    );
    assert_eq!(hashes("?filter=running").await, vec![h('1'), h('3')]);
    assert_eq!(hashes("?filter=seeding").await, Vec::<String>::new());
    assert_eq!(hashes("?filter=errored").await, Vec::<String>::new());
    assert_eq!(hashes("?filter=checking").await, Vec::<String>::new());
    assert_eq!(
        hashes(&format!(
            "?category=tv&filter=running&hashes={}|{}",
            h('1'),
            h('2')
        ))
        .await,
        vec![h('1')]
    );
    // Paging and sorting still apply to what was selected.
    assert_eq!(hashes("?category=tv&sort=name&limit=1").await, vec![h('1')]);
    assert_eq!(
        hashes("?category=tv&sort=name&limit=1&offset=1").await,
        vec![h('2')]
    );
    assert_eq!(
        hashes("?filter=stopped&sort=name&reverse=true&limit=1").await,
        vec![h('4')]
    );
}

#[tokio::test]
async fn per_torrent_speed_limits_are_set_and_read_as_in_qbittorrent() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path());
    let _admin = admin(&f).await;
    add_user(&f, "alice", false);
    add_user(&f, "bob", false);
    let alice = token(&browser(&f, "alice").await, "a").await;
    let bob = token(&browser(&f, "bob").await, "b").await;
    let http = reqwest::Client::new();
    let hash = "7".repeat(40);
    let r = http
        .post(v2(&f, "/torrents/add"))
        .bearer_auth(&alice)
        .form(&[
            ("urls", format!("magnet:?xt=urn:btih:{hash}&dn=limited")),
            ("dlLimit", "200000".to_owned()),
            ("upLimit", "0".to_owned()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "Ok.");
    let info = |token: String| {
        let (http, url) = (http.clone(), v2(&f, "/torrents/info"));
        async move { poll(&http, &url, Some(&token)).await[0].clone() }
    };
    let t = info(alice.clone()).await;
    assert_eq!(
        (&t["dl_limit"], &t["up_limit"]),
        (&json!(200000), &json!(-1)),
        "{t}"
    );

    let post = |token: &str, path: &str, form: Vec<(&'static str, String)>| {
        http.post(v2(&f, path))
            .bearer_auth(token)
            .form(&form)
            .send()
    };
    // Below Ferry's least limit (16 KiB/s) is raised to it; 0 removes one.
    let r = post(
        &alice,
        "/torrents/setUploadLimit",
        vec![("hashes", hash.clone()), ("limit", "1000".into())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = post(
        &alice,
        "/torrents/setDownloadLimit",
        vec![("hashes", "all".into()), ("limit", "0".into())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let read = |token: &str, path: &str| {
        http.post(v2(&f, path))
            .bearer_auth(token)
            .form(&[("hashes", hash.clone())])
            .send()
    };
    let up: Value = read(&alice, "/torrents/uploadLimit")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let down: Value = read(&alice, "/torrents/downloadLimit")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(up, json!({ hash.clone(): 16384 }));
    assert_eq!(down, json!({ hash.clone(): 0 }));
    let t = info(alice.clone()).await;
    assert_eq!(
        (&t["dl_limit"], &t["up_limit"]),
        (&json!(-1), &json!(16384)),
        "{t}"
    );

    // Bob cannot reach alice's torrent: his "all" is his own (none), and naming it changes
    // nothing of hers.
    let r = post(
        &bob,
        "/torrents/setUploadLimit",
        vec![("hashes", hash.clone()), ("limit", "50000".into())],
    )
    .await
    .unwrap();
    assert!(
        r.status().is_success() || r.status() == StatusCode::NOT_FOUND,
        "{}",
        r.status()
    );
    let up: Value = read(&alice, "/torrents/uploadLimit")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(up, json!({ hash.clone(): 16384 }));
    let mine: Value = read(&bob, "/torrents/uploadLimit")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine, json!({}));

    // A limit that is not a number is refused.
    let r = post(
        &alice,
        "/torrents/setUploadLimit",
        vec![("hashes", hash.clone()), ("limit", "fast".into())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
