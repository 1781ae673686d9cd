//! RSS feeds and download rules end to end: a real `ferry serve` (then two `ferry-api`
//! processes over one PostgreSQL database) polling a feed server written here, which
//! counts requests and answers `304` to the ETag Ferry sends back. A rule with must-contain,
//! must-not-contain, an episode filter and the smart filter over a feed with repeats and
//! repacks makes exactly the expected jobs, once, across a restart and across instances.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::login::*;
use common::*;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{EndpointExt, Request, Response, Route, Server, handler};
use reqwest::Method;
use serde_json::{Value, json};

/// A made-up info hash.
fn hash(n: u8) -> String {
    format!("{n:02x}").repeat(20)
}

#[derive(Default)]
struct Feed {
    /// (title, info hash), oldest first.
    items: Mutex<Vec<(String, String)>>,
    version: AtomicUsize,
    requests: AtomicUsize,
    /// Requests that sent back the current ETag (answered 304).
    not_modified: AtomicUsize,
    /// `/show.torrent` answers 503 this many times before the file.
    torrent_failures: AtomicUsize,
    torrent_requests: AtomicUsize,
    /// Requests for `/gone.torrent` (always `404`).
    gone_requests: AtomicUsize,
}

impl Feed {
    fn etag(&self) -> String {
        format!("\"v{}\"", self.version.load(Ordering::SeqCst))
    }

    fn xml(&self) -> String {
        let items: String = self
            .items
            .lock()
            .unwrap()
            .iter()
            .rev()
            .map(|(title, h)| {
                format!(
                    "<item><title>{title}</title><guid>{h}</guid>\
                     <link>magnet:?xt=urn:btih:{h}&amp;dn=x</link></item>"
                )
            })
            .collect();
        format!(
            r#"<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>http://x</link><description>d</description>{items}</channel></rss>"#
        )
    }

    fn set(&self, items: &[(&str, u8)]) {
        *self.items.lock().unwrap() = items
            .iter()
            .map(|(t, n)| ((*t).to_owned(), hash(*n)))
            .collect();
        self.version.fetch_add(1, Ordering::SeqCst);
    }
}

#[handler]
fn rss(req: &Request, feed: Data<&Arc<Feed>>) -> Response {
    feed.requests.fetch_add(1, Ordering::SeqCst);
    let etag = feed.etag();
    if req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        feed.not_modified.fetch_add(1, Ordering::SeqCst);
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header("etag", etag)
            .finish();
    }
    Response::builder()
        .header("etag", etag)
        .content_type("application/rss+xml")
        .body(feed.xml())
}

#[handler]
fn torrent(feed: Data<&Arc<Feed>>) -> Response {
    feed.torrent_requests.fetch_add(1, Ordering::SeqCst);
    let left = feed.torrent_failures.load(Ordering::SeqCst);
    if left > 0 {
        feed.torrent_failures.store(left - 1, Ordering::SeqCst);
        return Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .finish();
    }
    Response::builder()
        .content_type("application/x-bittorrent")
        .body(lonely_torrent("show-s01e05"))
}

#[handler]
fn gone(feed: Data<&Arc<Feed>>) -> StatusCode {
    feed.gone_requests.fetch_add(1, Ordering::SeqCst);
    StatusCode::NOT_FOUND
}

#[handler]
fn torrent_feed(req: &Request, feed: Data<&Arc<Feed>>) -> String {
    feed.requests.fetch_add(1, Ordering::SeqCst);
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    format!(
        r#"<rss version="2.0"><channel><title>t</title><item><title>Show S01E05</title><guid>t5</guid><enclosure url="http://{host}/show.torrent" length="1000" type="application/x-bittorrent"/></item><item><title>Show S01E06</title><guid>t6</guid><enclosure url="http://{host}/gone.torrent" length="1000" type="application/x-bittorrent"/></item></channel></rss>"#
    )
}

#[handler]
fn huge() -> Response {
    // 50 MiB of a never-ending title.
    let head = r#"<rss version="2.0"><channel><title>"#.as_bytes().to_vec();
    let body = futures::stream::iter(
        std::iter::once(head)
            .chain(std::iter::repeat_n(vec![b'a'; 1 << 20], 50))
            .map(Ok::<_, std::io::Error>),
    );
    Response::builder().body(poem::Body::from_bytes_stream(body))
}

#[handler]
fn not_xml() -> &'static str {
    "this is { not xml"
}

#[handler]
fn lolz() -> &'static str {
    r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]><rss version="2.0"><channel><title>&lol2;</title><item><title>&lol2;</title><link>magnet:?xt=urn:btih:0101010101010101010101010101010101010101</link></item></channel></rss>"#
}

/// Extension elements nested 8,000 deep in 40 KB: the `rss` crate's recursive reader would
/// overflow its stack and abort the process.
#[handler]
fn deep() -> String {
    format!(
        r#"<rss version="2.0" xmlns:x="urn:x"><channel><title>t</title><item><title>a</title>{}{}</item></channel></rss>"#,
        "<x:a>".repeat(8000),
        "</x:a>".repeat(8000)
    )
}

async fn feed_server() -> (SocketAddr, Arc<Feed>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let feed = Arc::new(Feed::default());
    let app = Route::new()
        .at("/feed.xml", rss)
        .at("/huge.xml", huge)
        .at("/not.xml", not_xml)
        .at("/lolz.xml", lolz)
        .at("/deep.xml", deep)
        .at("/torrents.xml", torrent_feed)
        .at("/show.torrent", torrent)
        .at("/gone.torrent", gone)
        .data(feed.clone());
    tokio::spawn(
        Server::new_with_acceptor(poem::listener::TcpAcceptor::from_tokio(listener).unwrap())
            .run(app),
    );
    (addr, feed)
}

/// The feed of the tests: repeats, repacks, and titles each filter must refuse. Expected
/// jobs: 1 (S01E01), 3 (S01E02), 4 (the first repack of S01E01).
const ITEMS: &[(&str, u8)] = &[
    ("Show S01E01 1080p", 1),
    ("Show S01E01 720p", 2),
    ("Show S01E02 1080p", 3),
    ("Show S01E01 REPACK 1080p", 4),
    ("Show S01E01 PROPER", 5),
    ("Show S01E09", 6),
    ("Other S01E03", 7),
    ("Show S01E03 CAM", 8),
    ("Show S02E01", 9),
];

const FAST: &[(&str, &str)] = &[
    ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]"),
    ("FERRY_FEEDS__MIN_INTERVAL", "1s"),
    ("FERRY_FEEDS__CHECK_EVERY", "200ms"),
];

fn rule_body() -> Value {
    json!({
        "name": "show",
        "must_contain": "show",
        "must_not_contain": "cam",
        "episode_filter": "1x1-5;",
        "smart_filter": true,
    })
}

/// The info hashes of the caller's jobs.
async fn job_hashes(f: &Ferry) -> Vec<String> {
    let (status, page) = f.get_json("/jobs?limit=200").await;
    assert_eq!(status, 200, "{page}");
    let mut hashes: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["info_hash"].as_str().unwrap_or_default().to_owned())
        .collect();
    hashes.sort();
    hashes
}

fn hashes(ns: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = ns.iter().map(|n| hash(*n)).collect();
    v.sort();
    v
}

/// Waits until `f`'s jobs are `want` and the feed was answered `304` at least `polls` times
/// since `before` (so Ferry polled again with the validator and still made nothing more).
async fn settle(f: &Ferry, feed: &Feed, before: usize, want: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = job_hashes(f).await;
        let conditional = feed.not_modified.load(Ordering::SeqCst) - before;
        if got == hashes(want) && conditional >= 3 {
            return;
        }
        assert!(got.len() <= want.len(), "more jobs than expected: {got:?}");
        assert!(
            Instant::now() < deadline,
            "jobs {got:?} (want {:?}), {conditional} conditional polls",
            hashes(want)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_makes_each_episode_once_across_polls_and_restarts() {
    init();
    let (_keep, root) = test_dir();
    let (addr, feed) = feed_server().await;
    feed.set(ITEMS);
    let ferry = Ferry::start(&root.join("ferry"), FAST);

    let (status, rule) = ferry.post_json("/feed-rules", rule_body()).await;
    assert_eq!(status, 201, "{rule}");
    let rule_id = rule["id"].as_str().unwrap().to_owned();
    let (status, created) = ferry
        .post_json(
            "/feeds",
            json!({"url": format!("http://{addr}/feed.xml"), "name": "shows", "interval_secs": 1}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let feed_id = created["id"].as_str().unwrap().to_owned();

    settle(&ferry, &feed, 0, &[1, 3, 4]).await;

    // What the rule made of each item, and the feed's items.
    let (status, matches) = ferry
        .get_json(&format!("/feed-rules/{rule_id}/matches"))
        .await;
    assert_eq!(status, 200);
    let titles: BTreeSet<&str> = matches
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["status"], "submitted", "{m}");
            assert!(m["job_id"].is_string());
            m["title"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        titles,
        BTreeSet::from([
            "Show S01E01 1080p",
            "Show S01E02 1080p",
            "Show S01E01 REPACK 1080p"
        ])
    );
    let (_, items) = ferry.get_json(&format!("/feeds/{feed_id}/items")).await;
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), ITEMS.len());
    assert!(items.iter().all(|i| i["download"] == "magnet"));
    assert_eq!(
        items
            .iter()
            .filter(|i| !i["matches"].as_array().unwrap().is_empty())
            .count(),
        3
    );
    let (_, got) = ferry.get_json(&format!("/feeds/{feed_id}")).await;
    assert!(got.get("last_error").is_none(), "{got}");

    // A restart on the same data polls with the stored validator and makes nothing twice;
    // a new episode published meanwhile is made once.
    let requests = feed.requests.load(Ordering::SeqCst);
    let parts = ferry.stop();
    let mut more = ITEMS.to_vec();
    more.push(("Show S01E04", 10));
    more.push(("Show.S01E04.720p", 11));
    feed.set(&more);
    let ferry = Ferry::restart(parts);
    let seen = feed.not_modified.load(Ordering::SeqCst);
    settle(&ferry, &feed, seen, &[1, 3, 4, 10]).await;
    assert!(feed.requests.load(Ordering::SeqCst) > requests);

    // Refresh polls now.
    let before = feed.requests.load(Ordering::SeqCst);
    let r = ferry
        .req(Method::POST, &format!("/feeds/{feed_id}/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(feed.requests.load(Ordering::SeqCst) > before);
    assert_eq!(job_hashes(&ferry).await, hashes(&[1, 3, 4, 10]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_and_rules_are_their_owners_and_hostile_input_is_refused() {
    init();
    let (_keep, root) = test_dir();
    let (addr, served) = feed_server().await;
    let (tripwire_addr, tripwire_hits) = origin::tripwire("127.0.0.2").await;
    let ferry = Ferry::start(&root.join("ferry"), FAST);

    // Internal addresses: refused with a clear code, nothing sent.
    for url in [
        format!("http://{tripwire_addr}/feed.xml"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]/feed".to_owned(),
        "http://localhost/feed".to_owned(),
    ] {
        let (status, body) = ferry.post_json("/feeds", json!({"url": url})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("url_not_allowed")),
            "{url}: {body}"
        );
    }
    assert_eq!(tripwire_hits.load(Ordering::SeqCst), 0);

    // Other hostile feeds and rules.
    let long = "a".repeat(2049);
    for (body, status, code) in [
        (json!({"url": "ftp://example.org/feed"}), 400, "invalid_url"),
        (json!({"url": "not a url"}), 400, "invalid_url"),
        (
            json!({"url": format!("http://{addr}/{long}")}),
            400,
            "invalid_request",
        ),
        (
            json!({"url": format!("http://{addr}/feed.xml"), "interval_secs": 0}),
            400,
            "invalid_request",
        ),
        (
            json!({"url": format!("http://{addr}/feed.xml"), "name": "x".repeat(201)}),
            400,
            "invalid_request",
        ),
        (
            json!({"url": format!("http://{addr}/feed.xml"), "name": "a\u{1b}[2J"}),
            422,
            "invalid_feed",
        ),
    ] {
        let (got, answer) = ferry.post_json("/feeds", body.clone()).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    for (body, status, code) in [
        (
            json!({"name": "r", "must_contain": "(", "use_regex": true}),
            422,
            "invalid_feed_rule",
        ),
        (
            json!({"name": "r", "must_contain": "\\w{1000}\\w{1000}\\w{1000}", "use_regex": true}),
            422,
            "invalid_feed_rule",
        ),
        (
            json!({"name": "r", "episode_filter": "1x2"}),
            422,
            "invalid_feed_rule",
        ),
        (
            json!({"name": "r", "episode_filter": "S01E02"}),
            422,
            "invalid_feed_rule",
        ),
        (
            json!({"name": "r", "must_contain": "a".repeat(1001)}),
            400,
            "invalid_request",
        ),
        (json!({"name": ""}), 422, "invalid_feed_rule"),
        (
            json!({"name": "r", "category": "nope"}),
            422,
            "invalid_feed_rule",
        ),
        (
            json!({"name": "r", "feeds": [uuid::Uuid::new_v4()]}),
            422,
            "invalid_feed_rule",
        ),
        (
            json!({"name": "r", "storage_profile": uuid::Uuid::new_v4()}),
            422,
            "invalid_feed_rule",
        ),
        (json!({"name": "r", "extra": 1}), 400, "invalid_request"),
    ] {
        let (got, answer) = ferry.post_json("/feed-rules", body.clone()).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }

    // Feeds that are too large, not XML, an entity bomb or a nesting bomb: the error is
    // recorded, the server carries on.
    let mut ids = Vec::new();
    for path in ["huge.xml", "not.xml", "lolz.xml", "deep.xml"] {
        let (status, f) = ferry
            .post_json(
                "/feeds",
                json!({"url": format!("http://{addr}/{path}"), "interval_secs": 1}),
            )
            .await;
        assert_eq!(status, 201, "{f}");
        ids.push(f["id"].as_str().unwrap().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &ids {
        loop {
            let (status, f) = ferry.get_json(&format!("/feeds/{id}")).await;
            assert_eq!(status, 200);
            if f["last_error"].is_string() {
                assert_eq!(f["items"], 0, "{f}");
                break;
            }
            assert!(Instant::now() < deadline, "no error recorded: {f}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (status, _) = ferry.get_json("/feeds").await;
    assert_eq!(status, 200);
    assert!(job_hashes(&ferry).await.is_empty());

    // Another user's feeds and rules answer like unknown ones.
    let (status, rule) = ferry
        .post_json("/feed-rules", json!({"name": "mine"}))
        .await;
    assert_eq!(status, 201, "{rule}");
    let admin = admin(&ferry).await;
    add_user(&ferry, "mallory", false);
    let mallory = browser(&ferry, "mallory").await;
    let feed_id = &ids[0];
    let rule_id = rule["id"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, format!("/feeds/{feed_id}")),
        (Method::GET, format!("/feeds/{feed_id}/items")),
        (Method::POST, format!("/feeds/{feed_id}/refresh")),
        (Method::DELETE, format!("/feeds/{feed_id}")),
        (Method::GET, format!("/feed-rules/{rule_id}")),
        (Method::GET, format!("/feed-rules/{rule_id}/matches")),
        (Method::DELETE, format!("/feed-rules/{rule_id}")),
    ] {
        let (status, body) = mallory.json(method.clone(), &path, None).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    let (status, body) = mallory
        .json(
            Method::PATCH,
            &format!("/feed-rules/{rule_id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("feed_rule_not_found"))
    );
    let (status, body) = mallory
        .json(
            Method::POST,
            "/feed-rules",
            Some(json!({"name": "x", "feeds": [feed_id]})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("invalid_feed_rule"))
    );
    let (_, listed) = mallory.json(Method::GET, "/feeds", None).await;
    assert_eq!(listed, json!([]));
    let (_, listed) = mallory.json(Method::GET, "/feed-rules", None).await;
    assert_eq!(listed, json!([]));
    // The owner still has them.
    let (status, _) = ferry.get_json(&format!("/feed-rules/{rule_id}")).await;
    assert_eq!(status, 200);

    // A disabled user's feeds are not fetched (their rules make nothing): mallory's feed is
    // polled, mallory is disabled, and while the owner's feeds are polled three more times
    // hers is asked at most once more (a poll already under way).
    let (status, mine) = mallory
        .json(
            Method::POST,
            "/feeds",
            Some(json!({"url": format!("http://{addr}/feed.xml"), "interval_secs": 1})),
        )
        .await;
    assert_eq!(status, 201, "{mine}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while served.requests.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "mallory's feed never polled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, me) = mallory.json(Method::GET, "/me", None).await;
    let mallory_id = me["user"]["id"].as_str().unwrap().to_owned();
    let (status, changed) = admin
        .json(
            Method::PATCH,
            &format!("/admin/users/{mallory_id}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    let asked = served.requests.load(Ordering::SeqCst);
    let polled_at = |f: &Value| f["last_polled_at"].as_str().map(str::to_owned);
    let (_, first) = ferry.get_json(&format!("/feeds/{}", ids[1])).await;
    let mut seen = vec![polled_at(&first)];
    while seen.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the owner's feeds stopped being polled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, f) = ferry.get_json(&format!("/feeds/{}", ids[1])).await;
        if seen.last() != Some(&polled_at(&f)) {
            seen.push(polled_at(&f));
        }
    }
    assert!(
        served.requests.load(Ordering::SeqCst) <= asked + 1,
        "a disabled user's feed was fetched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_instances_make_each_match_once() {
    init();
    if !require(&["psql", "redis-cli"]) {
        return;
    }
    let Some(db) = FreshDb::create() else { return };
    let (_keep, root) = test_dir();
    let (addr, feed) = feed_server().await;
    feed.set(ITEMS);
    let redis = test_redis_url();
    let cluster = Cluster::new(&root, &db.url, &redis, FAST);
    cluster.migrate();
    let one = cluster.api();
    let two = cluster.api();

    let (status, rule) = one.post_json("/feed-rules", rule_body()).await;
    assert_eq!(status, 201, "{rule}");
    // Two feeds with the same items: each its own matches, each made once (a magnet
    // submitted twice by one owner is one job).
    for _ in 0..2 {
        let (status, f) = two
            .post_json(
                "/feeds",
                json!({"url": format!("http://{addr}/feed.xml"), "interval_secs": 1}),
            )
            .await;
        assert_eq!(status, 201, "{f}");
    }
    settle(&one, &feed, 0, &[1, 3, 4]).await;
    let seen = feed.not_modified.load(Ordering::SeqCst);
    settle(&two, &feed, seen, &[1, 3, 4]).await;
    let (_, matches) = two
        .get_json(&format!(
            "/feed-rules/{}/matches",
            rule["id"].as_str().unwrap()
        ))
        .await;
    // The smart filter took each episode once across both feeds.
    assert_eq!(matches.as_array().unwrap().len(), 3, "{matches}");

    // One instance stops; the other polls on (feeds it held are taken again when their
    // lease ends or at once, as they are due) and makes a new episode once.
    one.stop();
    let mut more = ITEMS.to_vec();
    more.push(("Show S01E04", 10));
    feed.set(&more);
    let seen = feed.not_modified.load(Ordering::SeqCst);
    settle(&two, &feed, seen, &[1, 3, 4, 10]).await;
}

/// `ferry ARGS` as a user of the command line with `FERRY_URL` and `FERRY_TOKEN` set: exit
/// code and stdout.
async fn cli(f: &Ferry, home: &std::path::Path, args: &[&str]) -> (i32, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("FERRY_") || key == "XDG_CONFIG_HOME" {
            cmd.env_remove(key);
        }
    }
    cmd.env("HOME", home)
        .env("FERRY_CONFIG_DIR", home.join("config"))
        .env("FERRY_URL", &f.base)
        .env("FERRY_TOKEN", &f.token)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_adds_feeds_and_rules_and_shows_matches() {
    init();
    let (_keep, root) = test_dir();
    let (addr, feed) = feed_server().await;
    feed.set(ITEMS);
    let ferry = Ferry::start(&root.join("ferry"), FAST);
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let url = format!("http://{addr}/feed.xml");

    let (code, out) = cli(
        &ferry,
        &home,
        &[
            "feeds",
            "add",
            &url,
            "--interval",
            "1s",
            "--name",
            "shows",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let feed_id = created["id"].as_str().unwrap().to_owned();
    let (code, out) = cli(
        &ferry,
        &home,
        &[
            "rules",
            "add",
            "show",
            "--feed",
            &feed_id,
            "--must-contain",
            "show",
            "--must-not-contain",
            "cam",
            "--episodes",
            "1x1-5;",
            "--smart",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let rule: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rule["feeds"], json!([feed_id]));
    let rule_id = rule["id"].as_str().unwrap().to_owned();

    let (code, out) = cli(&ferry, &home, &["feeds", "ls"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(&feed_id) && out.contains(&url), "{out}");
    let (code, out) = cli(&ferry, &home, &["rules", "ls", "--json"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()[0]["id"],
        json!(rule_id)
    );

    settle(&ferry, &feed, 0, &[1, 3, 4]).await;
    let (code, out) = cli(&ferry, &home, &["rules", "matches", &rule_id]).await;
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.contains("Show S01E01 REPACK 1080p") && out.contains("job "),
        "{out}"
    );

    // Bad input: the server's refusal, and the existing exit codes.
    let (code, out) = cli(
        &ferry,
        &home,
        &[
            "rules",
            "add",
            "bad",
            "--regex",
            "--must-contain",
            "(",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("invalid_feed_rule"), "{out}");
    let (code, _) = cli(&ferry, &home, &["rules", "matches", "not-an-id"]).await;
    assert_eq!(code, 4);
    let (code, _) = cli(
        &ferry,
        &home,
        &["rules", "matches", &uuid::Uuid::new_v4().to_string()],
    )
    .await;
    assert_eq!(code, 4);
    let (code, _) = cli(&ferry, &home, &["feeds", "add", &url, "--interval", "15x"]).await;
    assert_eq!(code, 2);

    let (code, _) = cli(&ferry, &home, &["rules", "rm", &rule_id]).await;
    assert_eq!(code, 0);
    let (code, _) = cli(&ferry, &home, &["feeds", "rm", &feed_id]).await;
    assert_eq!(code, 0);
    let (code, out) = cli(&ferry, &home, &["feeds", "ls", "--json"]).await;
    assert_eq!((code, out.trim()), (0, "[]"));
}

/// A .torrent that answers 503 three times is submitted at a later poll; one that answers
/// 404 is recorded `failed` and never asked for again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torrent_that_fails_for_now_is_submitted_at_a_later_poll() {
    init();
    let (_keep, root) = test_dir();
    let (addr, feed) = feed_server().await;
    feed.torrent_failures.store(3, Ordering::SeqCst);
    let ferry = Ferry::start(&root.join("ferry"), FAST);
    let (status, rule) = ferry
        .post_json(
            "/feed-rules",
            json!({"name": "all", "must_contain": "show"}),
        )
        .await;
    assert_eq!(status, 201, "{rule}");
    let rule_id = rule["id"].as_str().unwrap().to_owned();
    let (status, created) = ferry
        .post_json(
            "/feeds",
            json!({"url": format!("http://{addr}/torrents.xml"), "interval_secs": 1}),
        )
        .await;
    assert_eq!(status, 201, "{created}");

    // First `retry` (the .torrent answers 503), then one job once it answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut saw_retry = false;
    let job = loop {
        let (_, matches) = ferry
            .get_json(&format!("/feed-rules/{rule_id}/matches"))
            .await;
        let matches = matches.as_array().unwrap().clone();
        assert!(matches.len() <= 2, "{matches:?}");
        if let Some(m) = matches.iter().find(|m| m["item_key"] == "t5") {
            match m["status"].as_str().unwrap() {
                "retry" => saw_retry = true,
                "submitted" => break m["job_id"].as_str().unwrap().to_owned(),
                "pending" => {}
                other => panic!("{other}: {m}"),
            }
        }
        assert!(Instant::now() < deadline, "no job: {matches:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(saw_retry);
    // Three 503s, then the file: each poll tried once.
    assert_eq!(feed.torrent_requests.load(Ordering::SeqCst), 4);
    let (status, got) = ferry.get_json(&format!("/jobs/{job}")).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["name"], "show-s01e05");
    // Polls go on; the .torrent is not fetched again.
    let fetched = feed.torrent_requests.load(Ordering::SeqCst);
    let polls = feed.requests.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while feed.requests.load(Ordering::SeqCst) < polls + 3 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(feed.torrent_requests.load(Ordering::SeqCst), fetched);
    let (_, page) = ferry.get_json("/jobs").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    // The 404 settled its match at the first answer, with the reason.
    assert_eq!(feed.gone_requests.load(Ordering::SeqCst), 1);
    let (_, matches) = ferry
        .get_json(&format!("/feed-rules/{rule_id}/matches"))
        .await;
    let refused = matches
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["item_key"] == "t6")
        .expect("a match of the gone .torrent")
        .clone();
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("404"),
        "{refused}"
    );
}
