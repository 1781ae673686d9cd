//! The fetcher against a local origin server: downloads, resumes, limits, and the SSRF guard
//! (no connection ever reaches a refused address).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use ferry_application::ports::{FetchError, Fetcher};
use ferry_domain::{AddressPolicy, FetchUrl};
use ferry_fetch::{FetchSettings, HttpFetcher};
use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{EndpointExt, IntoResponse, Request, Response, Route, Server, handler};
use sha2::Digest;

struct Origin {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
}

#[derive(Clone)]
struct Content {
    data: Arc<Vec<u8>>,
    served: Arc<AtomicU64>,
}

#[handler]
fn file(req: &Request, Data(c): Data<&Content>) -> Response {
    let len = c.data.len();
    let start = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.trim_end_matches('-').parse::<usize>().ok());
    match start {
        Some(s) if s < len => {
            c.served.fetch_add((len - s) as u64, Ordering::Relaxed);
            Response::builder()
                .status(StatusCode::PARTIAL_CONTENT)
                .header("Content-Range", format!("bytes {s}-{}/{len}", len - 1))
                .content_type("application/octet-stream")
                .body(c.data[s..].to_vec())
        }
        Some(_) => StatusCode::RANGE_NOT_SATISFIABLE.into_response(),
        None => {
            c.served.fetch_add(len as u64, Ordering::Relaxed);
            Response::builder()
                .content_type("application/octet-stream")
                .body(c.data.to_vec())
        }
    }
}

#[handler]
fn redirect(Query(q): Query<HashMap<String, String>>) -> Response {
    Response::builder()
        .status(StatusCode::FOUND)
        .header("Location", q.get("to").cloned().unwrap_or_default())
        .finish()
}

#[handler]
fn html() -> Response {
    Response::builder()
        .content_type("text/html")
        .body("<html></html>")
}

async fn origin(data: Vec<u8>) -> Origin {
    let served = Arc::new(AtomicU64::new(0));
    let content = Content {
        data: Arc::new(data),
        served: served.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Route::new()
        .at("/file.bin", file)
        .at("/redirect", redirect)
        .at("/page", html)
        .data(content);
    tokio::spawn(
        Server::new_with_acceptor(poem::listener::TcpAcceptor::from_tokio(listener).unwrap())
            .run(app),
    );
    Origin { addr, served }
}

/// A listener that only counts connections (the target an SSRF attempt must never reach).
async fn tripwire(ip: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, hits)
}

fn fetcher(allow_loopback_one: bool, tweak: impl FnOnce(&mut FetchSettings)) -> HttpFetcher {
    let mut s = FetchSettings::default();
    if allow_loopback_one {
        s.policy = AddressPolicy {
            allow: vec!["127.0.0.1/32".parse().unwrap()],
        };
    }
    tweak(&mut s);
    HttpFetcher::new(s).unwrap()
}

fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[tokio::test]
async fn the_http_fetcher_passes_the_contract() {
    init();
    let content: Vec<u8> = (0..700_000u32).map(|i| (i % 247) as u8).collect();
    let o = origin(content.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = |path: &str| FetchUrl::parse(&format!("http://{}{path}", o.addr)).unwrap();
    let fixture = ferry_application::testing::contracts::FetchFixture {
        file: url("/file.bin"),
        content,
        missing: url("/nope"),
        refused: FetchUrl::parse("http://169.254.169.254/latest/meta-data").unwrap(),
        dir: dir.path().to_owned(),
    };
    ferry_application::testing::contracts::fetcher_contract(&fetcher(true, |_| {}), &fixture).await;
}

#[tokio::test]
async fn downloads_hash_and_resume() {
    init();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let o = origin(data.clone()).await;
    let f = fetcher(true, |_| {});
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("sub/file.bin");
    let url = FetchUrl::parse(&format!("http://{}/file.bin", o.addr)).unwrap();
    let body = f.open(&url, None).await.unwrap();
    assert_eq!(body.info().size, Some(3_000_000));
    let seen = AtomicU64::new(0);
    let fetched = body
        .save(&dest, &|n| {
            seen.store(n, Ordering::Relaxed);
        })
        .await
        .unwrap();
    assert_eq!(fetched.size, 3_000_000);
    assert_eq!(fetched.sha256, hex::encode(sha2::Sha256::digest(&data)));
    assert_eq!(seen.load(Ordering::Relaxed), 3_000_000);

    // A partial file is continued with Range: only the rest crosses the wire.
    std::fs::write(&dest, &data[..1_000_000]).unwrap();
    let before = o.served.load(Ordering::Relaxed);
    let body = f.open(&url, Some(&dest)).await.unwrap();
    assert_eq!(body.info().resumed_from, 1_000_000);
    let fetched = body.save(&dest, &|_| {}).await.unwrap();
    assert_eq!(fetched.sha256, hex::encode(sha2::Sha256::digest(&data)));
    assert_eq!(o.served.load(Ordering::Relaxed) - before, 2_000_000);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

#[cfg(unix)]
#[tokio::test]
async fn a_fetch_never_writes_through_a_file_with_other_names() {
    // A finished fetch is linked into the content store and delivered from there; a fetch
    // that runs again (a retry after packaging failed) must leave those names alone
    // (issue 8, defect 1).
    init();
    let data: Vec<u8> = (0..500_000u32).map(|i| (i % 251) as u8).collect();
    let o = origin(data.clone()).await;
    let f = fetcher(true, |_| {});
    let dir = tempfile::tempdir().unwrap();
    let url = FetchUrl::parse(&format!("http://{}/file.bin", o.addr)).unwrap();
    let other_bytes = b"another job's delivered file".to_vec();

    // Started over: the staged name gets a new file.
    let dest = dir.path().join("fresh.bin");
    let other = dir.path().join("content-a");
    std::fs::write(&dest, &other_bytes).unwrap();
    std::fs::hard_link(&dest, &other).unwrap();
    let body = f.open(&url, None).await.unwrap();
    body.save(&dest, &|_| {}).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(std::fs::read(&other).unwrap(), other_bytes);

    // Continued: the staged name gets a private copy of what it had, then the rest.
    let dest = dir.path().join("partial.bin");
    let other = dir.path().join("content-b");
    std::fs::write(&dest, &data[..100_000]).unwrap();
    std::fs::hard_link(&dest, &other).unwrap();
    let body = f.open(&url, Some(&dest)).await.unwrap();
    assert_eq!(body.info().resumed_from, 100_000);
    body.save(&dest, &|_| {}).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(std::fs::read(&other).unwrap(), &data[..100_000]);
}

#[tokio::test]
async fn internal_addresses_are_refused_before_any_connection() {
    init();
    let o = origin(vec![1; 10]).await;
    let (target, hits) = tripwire("127.0.0.2").await;
    let port = target.port();
    let f = fetcher(true, |s| {
        s.hosts
            .insert("internal.example".into(), "10.1.2.3".parse().unwrap());
        s.hosts
            .insert("sneaky.example".into(), "127.0.0.2".parse().unwrap());
    });
    let cases = [
        format!("http://127.0.0.2:{port}/"),
        format!("http://2130706434:{port}/"),
        format!("http://0177.0.0.2:{port}/"),
        format!("http://0x7f000002:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.2]:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://internal.example/".to_owned(),
        format!("http://sneaky.example:{port}/"),
        format!("http://localhost:{port}/"),
        format!(
            "http://{}/redirect?to=http://127.0.0.2:{port}/secret",
            o.addr
        ),
        format!(
            "http://{}/redirect?to=http://sneaky.example:{port}/x",
            o.addr
        ),
    ];
    for url in &cases {
        let r = f.open(&FetchUrl::parse(url).unwrap(), None).await;
        assert!(
            matches!(r, Err(FetchError::NotAllowed(_))),
            "{url}: {:?}",
            r.err()
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no connection reached the target"
    );
}

/// The operator's URL block list meets every hop: a redirect to a refused URL is refused
/// before it is contacted, and a list replaced since applies to the next fetch.
#[tokio::test]
async fn the_url_block_list_applies_to_every_hop() {
    init();
    let o = origin(vec![7; 1000]).await;
    let (target, hits) = tripwire("127.0.0.1").await;
    let list = Arc::new(ferry_application::SubmissionBlocklistHandle::new(
        ferry_domain::SubmissionBlocklist::parse([format!(
            "http://127.0.0.1:{}/*.iso",
            target.port()
        )
        .as_str()])
        .unwrap(),
    ));
    let f = fetcher(true, |_| {}).with_blocklist(list.clone());
    let hop = format!(
        "http://{}/redirect?to=http://127.0.0.1:{}/dist/release.iso",
        o.addr,
        target.port()
    );
    let r = f.open(&FetchUrl::parse(&hop).unwrap(), None).await;
    assert!(matches!(r, Err(FetchError::Blocked(_))), "{:?}", r.err());
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the refused URL was contacted"
    );
    // A URL the list did not hold when the job was accepted, refused once the list does.
    let direct = FetchUrl::parse(&format!("http://{}/file.bin", o.addr)).unwrap();
    assert!(f.open(&direct, None).await.is_ok());
    list.replace(
        ferry_domain::SubmissionBlocklist::parse([format!("http://{}/*", o.addr).as_str()])
            .unwrap(),
    );
    let r = f.open(&direct, None).await;
    assert!(matches!(r, Err(FetchError::Blocked(_))), "{:?}", r.err());
    // Feeds too: refused when added, and at every hop of a poll.
    use ferry_application::ports::FeedSource;
    let feed = FetchUrl::parse(&format!("http://{}/feed.xml", o.addr)).unwrap();
    let r = FeedSource::check(&f, &feed).await;
    assert!(matches!(r, Err(FetchError::Blocked(_))), "{r:?}");
    let limits = ferry_application::ports::FeedLimits {
        max_bytes: 1 << 20,
        max_items: 10,
    };
    let r = FeedSource::fetch(&f, &feed, None, None, limits).await;
    assert!(matches!(r, Err(FetchError::Blocked(_))), "{:?}", r.err());
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the refused URL was contacted"
    );
}

#[tokio::test]
async fn limits_are_enforced() {
    init();
    let o = origin(vec![9; 100_000]).await;
    let dir = tempfile::tempdir().unwrap();
    let small = fetcher(true, |s| s.max_bytes = 50_000);
    let url = FetchUrl::parse(&format!("http://{}/file.bin", o.addr)).unwrap();
    assert!(matches!(
        small.open(&url, None).await,
        Err(FetchError::TooLarge { limit: 50_000 })
    ));
    let typed = fetcher(true, |s| {
        s.allowed_types = vec!["video/".into(), "application/zip".into()]
    });
    let page = FetchUrl::parse(&format!("http://{}/page", o.addr)).unwrap();
    assert!(matches!(
        typed.open(&page, None).await,
        Err(FetchError::MimeNotAllowed(_))
    ));
    let missing = FetchUrl::parse(&format!("http://{}/nope", o.addr)).unwrap();
    assert!(matches!(
        fetcher(true, |_| {}).open(&missing, None).await,
        Err(FetchError::Status(404))
    ));
    let _ = dir;
}

#[tokio::test]
async fn a_required_proxy_is_never_bypassed() {
    init();
    let s = FetchSettings {
        proxy_required: true,
        ..FetchSettings::default()
    };
    assert!(
        HttpFetcher::new(s).is_err(),
        "no proxy configured: refuse to start"
    );
    let o = origin(vec![1; 10]).await;
    // The proxy is down: the request fails instead of going direct.
    let f = fetcher(true, |s| {
        s.proxy = Some("socks5h://127.0.0.1:9".into());
        s.proxy_required = true;
    });
    let before = o.served.load(Ordering::Relaxed);
    let r = f
        .open(
            &FetchUrl::parse(&format!("http://{}/file.bin", o.addr)).unwrap(),
            None,
        )
        .await;
    assert!(
        matches!(r, Err(FetchError::Unreachable(_))),
        "{:?}",
        r.err()
    );
    assert_eq!(o.served.load(Ordering::Relaxed), before);
}
