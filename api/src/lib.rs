//! Ferry's HTTP API (poem + poem-openapi): JSON under `/api/v1`, the OpenAPI document at
//! `/api/v1/openapi.json` and Swagger UI at `/docs`.

mod auth;
mod dto;
mod error;
mod jobs;
mod profiles;
mod range;
mod system;

use std::sync::Arc;

use ferry_application::ports::ProgressBus;
use ferry_application::{HealthCheck, Jobs, StorageProfiles};
use ferry_domain::OwnerId;
use poem::listener::TcpAcceptor;
use poem::middleware::Tracing;
use poem::{EndpointExt, IntoResponse, Response, Route, Server};
use poem_openapi::OpenApiService;
use tokio_util::sync::CancellationToken;

pub use error::{ApiError, ErrorBody};

/// What the API needs from the rest of Ferry.
pub struct ApiState {
    pub jobs: Arc<Jobs>,
    pub profiles: Arc<StorageProfiles>,
    pub bus: Arc<dyn ProgressBus>,
    pub health: Arc<HealthCheck>,
    /// `Authorization: Bearer` token required on `/api/v1` (none: open).
    pub api_token: Option<String>,
    /// Largest .torrent upload accepted.
    pub max_torrent_bytes: u64,
    /// Whether jobs seed unless they say otherwise.
    pub seed_by_default: bool,
    /// Seeding limits for jobs that set none.
    pub seed_limits: ferry_domain::SeedPolicy,
}

impl ApiState {
    /// The caller's identity. Until user accounts exist, everyone is the local owner.
    pub fn owner(&self) -> OwnerId {
        OwnerId::local()
    }
}

/// The whole HTTP application.
pub fn app(state: Arc<ApiState>) -> impl poem::Endpoint {
    let api = OpenApiService::new(
        (
            jobs::JobsApi {
                state: state.clone(),
            },
            profiles::ProfilesApi {
                state: state.clone(),
            },
            system::SystemApi {
                state: state.clone(),
            },
        ),
        "Ferry",
        env!("CARGO_PKG_VERSION"),
    )
    .description("Ferry downloads torrents on the server and delivers the files.")
    .server("/");
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    let token = state.api_token.clone();
    let max_body = state.max_torrent_bytes + 64 * 1024;
    let requests = ferry_observability::meter()
        .u64_counter("ferry_http_requests")
        .with_description("HTTP requests by method and status")
        .build();
    let latency = ferry_observability::meter()
        .f64_histogram("ferry_http_request_duration")
        .with_unit("s")
        .with_description("HTTP request latency")
        .build();
    Route::new()
        .nest("/", api)
        .at("/api/v1/openapi.json", spec)
        .nest("/docs", docs)
        .at(
            "/metrics",
            poem::endpoint::make_sync(|_| {
                Response::builder()
                    .content_type("text/plain; version=0.0.4")
                    .body(ferry_observability::render_metrics())
            }),
        )
        .around(move |ep, req| {
            let token = token.clone();
            let (requests, latency) = (requests.clone(), latency.clone());
            async move {
                let started = std::time::Instant::now();
                let method = opentelemetry::KeyValue::new("method", req.method().to_string());
                let response = guarded(ep, req, token, max_body).await;
                let status = match &response {
                    Ok(r) => r.status().as_u16(),
                    Err(e) => e.status().as_u16(),
                };
                requests.add(
                    1,
                    &[
                        method.clone(),
                        opentelemetry::KeyValue::new("status", i64::from(status)),
                    ],
                );
                latency.record(started.elapsed().as_secs_f64(), &[method]);
                response
            }
        })
        .catch_all_error(|err| async move { json_error(err) })
        .with(Tracing)
}

/// Refuses oversized bodies, then checks the token.
async fn guarded<E: poem::Endpoint>(
    ep: E,
    req: poem::Request,
    token: Option<String>,
    max_body: u64,
) -> poem::Result<Response> {
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body) {
        return Ok(error_response(
            poem::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("request bodies may be at most {max_body} bytes"),
        ));
    }
    auth::guard(ep, req, token).await
}

fn error_response(status: poem::http::StatusCode, code: &str, message: &str) -> Response {
    poem::web::Json(serde_json::json!({ "code": code, "message": message }))
        .with_status(status)
        .into_response()
}

/// Errors raised outside the operations (unknown route, unparsable body, bad parameter)
/// get the same JSON shape as the operations' own errors.
fn json_error(err: poem::Error) -> Response {
    let status = err.status();
    let message = err.to_string();
    let response = err.into_response();
    let is_json = response
        .headers()
        .get(poem::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        // One of our own `ApiError`s: already in shape.
        return response;
    }
    let code = match status.as_u16() {
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        s if s >= 500 => "internal_error",
        _ => "invalid_request",
    };
    if status.is_server_error() {
        tracing::error!(error = %message, "request failed");
        return error_response(
            status,
            code,
            "an unexpected error occurred; see the server log",
        );
    }
    error_response(status, code, &message)
}

/// Serves the API on `acceptor` until `shutdown` fires, then lets requests in flight finish
/// (up to 10 s; open event streams are closed).
///
/// # Errors
/// When the server fails.
pub async fn serve(
    acceptor: TcpAcceptor,
    state: Arc<ApiState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            app(state),
            async move { shutdown.cancelled().await },
            Some(std::time::Duration::from_secs(10)),
        )
        .await
}
