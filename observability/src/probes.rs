//! `/health` and `/metrics` for processes without the API (the workers).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use poem::http::StatusCode;
use poem::listener::TcpAcceptor;
use poem::{Response, Route, Server};
use tokio_util::sync::CancellationToken;

/// Answers `Ok(detail)` when the process can work, `Err(detail)` when it cannot.
pub type HealthFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// Serves `/health` and `/metrics` until `shutdown`.
///
/// # Errors
/// When the server fails.
pub async fn serve_probes(
    acceptor: TcpAcceptor,
    check: HealthFn,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let health = poem::endpoint::make(move |_req| {
        let pending = check();
        async move {
            let (status, body) = match pending.await {
                Ok(body) => (StatusCode::OK, body),
                Err(body) => (StatusCode::SERVICE_UNAVAILABLE, body),
            };
            Ok::<_, poem::Error>(Response::builder().status(status).body(body))
        }
    });
    let metrics = poem::endpoint::make_sync(|_req| {
        Response::builder()
            .content_type("text/plain; version=0.0.4")
            .body(crate::metrics::render())
    });
    let app = Route::new().at("/health", health).at("/metrics", metrics);
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, async move { shutdown.cancelled().await }, None)
        .await
}
