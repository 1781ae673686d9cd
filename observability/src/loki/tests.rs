//! The budget and the counts, against a stand-in for Loki on loopback that is first
//! absent, then failing, then taking lines (the push protocol itself is checked end to end
//! in `cli/tests/loki.rs`, with a receiver that decodes it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::AtomicU16;

use poem::http::StatusCode;
use poem::listener::TcpAcceptor;
use poem::{Response, Route, Server};
use tracing_subscriber::layer::SubscriberExt;

use super::courier::PUSH_TIMEOUT;
use super::*;

fn loki(url: &str, buffer_lines: usize) -> Loki {
    Loki {
        url: Url::parse(url).unwrap(),
        role: "test".to_owned(),
        instance: "here-1".to_owned(),
        buffer_lines: NonZeroUsize::new(buffer_lines).unwrap(),
    }
}

#[test]
fn the_push_path_is_added_once_to_a_base_or_a_full_push_url() {
    for (given, base) in [
        ("http://loki:3100", "http://loki:3100/"),
        ("http://loki:3100/", "http://loki:3100/"),
        (
            "https://logs.example/tenant-a",
            "https://logs.example/tenant-a/",
        ),
        ("http://loki:3100/loki/api/v1/push", "http://loki:3100/"),
        ("http://gw/a/loki/api/v1/push/", "http://gw/a/"),
    ] {
        assert_eq!(loki(given, 1).push_base().as_str(), base, "{given}");
    }
}

/// A warning's message and its `dropped` field.
type Warning = (String, Option<u64>);

/// Warnings the courier writes.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<Warning>>>);

impl<S: Subscriber> Layer<S> for Warnings {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        struct Fields(String, Option<u64>);
        impl tracing::field::Visit for Fields {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "dropped" {
                    self.1 = Some(value);
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        if *event.metadata().level() == tracing::Level::WARN {
            let mut fields = Fields(String::new(), None);
            event.record(&mut fields);
            self.0.lock().unwrap().push((fields.0, fields.1));
        }
    }
}

/// A stand-in for Loki's push endpoint answering `status` (changeable), counting pushes.
struct Receiver {
    status: Arc<AtomicU16>,
    pushes: Arc<AtomicUsize>,
}

async fn receiver(listener: tokio::net::TcpListener) -> Receiver {
    let status = Arc::new(AtomicU16::new(204));
    let pushes = Arc::new(AtomicUsize::new(0));
    let (answer, count) = (status.clone(), pushes.clone());
    let push = poem::endpoint::make_sync(move |req| {
        assert_eq!(req.method(), poem::http::Method::POST);
        count.fetch_add(1, Ordering::SeqCst);
        let status = StatusCode::from_u16(answer.load(Ordering::SeqCst)).unwrap();
        Response::builder().status(status).finish()
    });
    let app = Route::new()
        .at("/loki/api/v1/push", push)
        .at("/ready", poem::endpoint::make_sync(|_| "ready"));
    tokio::spawn(Server::new_with_acceptor(TcpAcceptor::from_tokio(listener).unwrap()).run(app));
    Receiver { status, pushes }
}

/// A subscriber with `layer` and the warnings it writes, for this crate's lines only (the
/// stand-in's server logs nothing into the counts).
fn subscriber(layer: LokiLayer, warnings: &Warnings) -> impl Subscriber + Send + Sync {
    tracing_subscriber::registry()
        .with(layer)
        .with(warnings.clone())
        .with(
            tracing_subscriber::filter::Targets::new()
                .with_target("ferry_observability", tracing::Level::TRACE),
        )
}

/// Waits (on the paused clock's terms, so for real) until `done`.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never happened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// While Loki is away, lines are kept up to the budget and the rest dropped and counted;
/// once it answers `/ready` again the kept lines go out, and one warning gives the count.
/// Lines Loki refuses (a 500) are dropped and counted too.
#[tokio::test(flavor = "current_thread")]
async fn while_loki_is_away_the_budget_is_kept_the_rest_counted_and_reported_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let limit = 700;
    let (layer, courier) = layer(&loki(&format!("http://{addr}"), limit)).unwrap();
    let shared = courier.shared.clone();
    let warnings = Warnings::default();
    let _default = tracing::subscriber::set_default(subscriber(layer, &warnings));

    // The first push finds Loki absent: its line is lost, and that is said once.
    tracing::info!("first");
    courier.flush(Duration::from_secs(10)).await;
    assert_eq!(courier.dropped(), 1);
    let said = warnings.0.lock().unwrap().clone();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].0.contains("cannot send log lines to Loki"),
        "{said:?}"
    );

    // Away: the budget fills (the warning is one of its lines), the rest is counted.
    let mut most_held = 0;
    for n in 0..3000u32 {
        let span = tracing::info_span!("request", request_id = n);
        let _entered = span.enter();
        tracing::info!(job_id = n, "a line");
        most_held = most_held.max(shared.held.load(Ordering::Relaxed));
        if n % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    courier.flush(Duration::from_secs(10)).await;
    let kept = shared.held.load(Ordering::Relaxed) as u64;
    assert_eq!(most_held, limit, "the budget fills, and no further");
    assert_eq!(kept, limit as u64);
    assert_eq!(courier.dropped(), 1 + 3001 - kept);

    // Back: asked within a second, the kept lines go out and the count is told once.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let loki = receiver(listener).await;
    until("the kept lines going out", || {
        shared.held.load(Ordering::Relaxed) <= 1 && loki.pushes.load(Ordering::SeqCst) >= 2
    })
    .await;
    let lost = courier.dropped();
    assert_eq!(lost, 1 + 3001 - kept, "nothing kept was lost");
    let said = warnings.0.lock().unwrap().clone();
    assert_eq!(said.len(), 2, "{said:?}");
    assert_eq!(said[1].1, Some(lost), "{said:?}");
    assert!(
        said[1].0.contains(&format!("{lost} were dropped")),
        "{said:?}"
    );

    // A full batch is one push; then refused lines are lost and counted.
    courier.flush(Duration::from_secs(10)).await; // the report itself goes out
    let pushes = loki.pushes.load(Ordering::SeqCst);
    for _ in 0..batch::CAPACITY {
        tracing::info!("taken");
    }
    courier.flush(Duration::from_secs(10)).await;
    assert_eq!(
        loki.pushes.load(Ordering::SeqCst),
        pushes + 1,
        "a full batch, one push"
    );
    assert_eq!(
        courier.dropped(),
        lost,
        "nothing lost while Loki takes lines"
    );
    loki.status.store(500, Ordering::SeqCst);
    for _ in 0..10 {
        tracing::info!("refused");
    }
    courier.flush(Duration::from_secs(10)).await;
    assert_eq!(courier.dropped(), lost + 10);
}

/// A Loki that takes connections and never answers: pushes are given up after
/// `PUSH_TIMEOUT`, and meanwhile no more than the budget is held; every line is counted.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_loki_that_never_answers_costs_the_budget_and_no_more() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let limit = 600;
    let (layer, courier) = layer(&loki(&format!("http://{addr}"), limit)).unwrap();
    let shared = courier.shared.clone();
    let _default = tracing::subscriber::set_default(subscriber(layer, &Warnings::default()));

    let mut most_held = 0;
    for n in 0..5000u32 {
        tracing::info!(n, "a line");
        most_held = most_held.max(shared.held.load(Ordering::Relaxed));
        if n % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(most_held, limit, "the budget fills, and no further");
    let started = tokio::time::Instant::now();
    courier.flush(Duration::from_secs(60)).await;
    assert!(
        started.elapsed() >= PUSH_TIMEOUT / 2,
        "the pushes were waited for"
    );
    // Every line is kept or counted (the warning that Loki is away is one more line).
    let held = shared.held.load(Ordering::Relaxed) as u64;
    assert!(held <= limit as u64, "{held} lines still held");
    assert_eq!(courier.dropped() + held, 5001);
    silent.abort();
}
