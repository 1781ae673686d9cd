//! Webhook deliveries through the fetcher's client, against a local receiver: the contract,
//! the headers and body as sent, a redirect answered rather than followed, statuses passed
//! on, a timeout, and refused addresses never connected to.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_application::ports::{TransportError, WebhookTransport};
use ferry_domain::{AddressPolicy, FetchUrl};
use ferry_fetch::{FetchSettings, HttpFetcher};
use poem::http::StatusCode;
use poem::web::Data;
use poem::{EndpointExt, Request, Response, Route, Server, handler};

type Seen = Arc<Mutex<Vec<(String, Option<String>, Vec<u8>)>>>;

#[handler]
async fn hook(req: &Request, body: poem::Body, Data(seen): Data<&Seen>) -> Response {
    let event = req
        .headers()
        .get("x-ferry-event")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = body.into_vec().await.unwrap();
    seen.lock()
        .unwrap()
        .push((req.uri().path().to_owned(), event, body));
    match req.uri().path() {
        "/error" => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .finish(),
        "/moved" => Response::builder()
            .status(StatusCode::FOUND)
            .header("Location", "/ok")
            .finish(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Response::builder().finish()
        }
        _ => Response::builder().status(StatusCode::NO_CONTENT).finish(),
    }
}

async fn receiver() -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let app = Route::new().at("/*path", hook).data(seen.clone());
    tokio::spawn(
        Server::new_with_acceptor(poem::listener::TcpAcceptor::from_tokio(listener).unwrap())
            .run(app),
    );
    (addr, seen)
}

fn transport() -> HttpFetcher {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    HttpFetcher::new(FetchSettings {
        policy: AddressPolicy {
            allow: vec!["127.0.0.1/32".parse().unwrap()],
        },
        ..FetchSettings::default()
    })
    .unwrap()
}

#[tokio::test]
async fn webhooks_are_posted_as_given_and_redirects_are_not_followed() {
    let (addr, seen) = receiver().await;
    let t = transport();
    let url = |path: &str| FetchUrl::parse(&format!("http://{addr}{path}")).unwrap();
    ferry_application::testing::contracts::webhook_transport_contract(
        &t,
        &url("/ok"),
        &FetchUrl::parse("http://169.254.169.254/latest").unwrap(),
    )
    .await;

    let headers = [("x-ferry-event", "job.failed".to_owned())];
    let post = |path: &'static str| {
        let t = &t;
        let headers = &headers;
        let url = url(path);
        async move {
            t.post(&url, headers, b"{\"a\":1}", Duration::from_secs(2))
                .await
        }
    };
    assert_eq!(post("/error").await.unwrap(), 500);
    seen.lock().unwrap().clear();
    assert_eq!(post("/moved").await.unwrap(), 302);
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "the redirect was not followed: {got:?}");
    assert_eq!(
        got[0],
        (
            "/moved".to_owned(),
            Some("job.failed".to_owned()),
            b"{\"a\":1}".to_vec()
        )
    );
    let started = Instant::now();
    assert!(matches!(
        post("/slow").await,
        Err(TransportError::Timeout(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn refused_endpoints_are_never_connected_to() {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok(_conn) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let t = transport();
    for url in [
        format!("http://127.0.0.2:{port}/hook"),
        format!("http://2130706434:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://[::ffff:127.0.0.2]:{port}/hook"),
    ] {
        let url = FetchUrl::parse(&url).unwrap();
        assert!(
            matches!(t.check(&url).await, Err(TransportError::NotAllowed(_))),
            "{url}"
        );
        let r = t.post(&url, &[], b"{}", Duration::from_secs(2)).await;
        assert!(
            matches!(r, Err(TransportError::NotAllowed(_))),
            "{url}: {r:?}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}
