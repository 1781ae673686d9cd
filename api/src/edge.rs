//! What every request goes through around its operation: body caps enforced while the body
//! streams (a `Content-Length` is only a promise), errors in the API's JSON shape, `Allow`
//! on a 405, and HTTP metrics labelled by method, route template and status, all from
//! closed sets, so no request can add a series.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ferry_domain::ErrorCode;
use futures::StreamExt;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use poem::PathPattern;
use poem::http::{Method, StatusCode, header};
use poem::{Body, Endpoint, IntoResponse, Request, Response};

use crate::error::{self, ApiError};

/// Operations whose body is a multipart .torrent upload; every other body is JSON.
const UPLOADS: &[&str] = &["/api/v1/jobs/torrent", "/api/v1/torrents/analyze"];

/// The route label of requests that matched no route.
const UNMATCHED: &str = "unmatched";

/// Marks a `HEAD` request: poem answers it with the `GET` operation, which then sees `GET`
/// as the method; an operation that would start work for a body reads this instead.
#[derive(Debug, Clone, Copy)]
struct HeadRequest;

/// Whether `req` came as `HEAD` (its body will not be sent).
pub fn is_head(req: &Request) -> bool {
    req.method() == Method::HEAD || req.extensions().get::<HeadRequest>().is_some()
}

pub struct Edge {
    json_cap: u64,
    upload_cap: u64,
    /// A route's shape (parameters as `*`) → its template in the OpenAPI document
    /// (`/api/v1/jobs/{id}`) and its `Allow` header value.
    routes: HashMap<String, (String, String)>,
    requests: Counter<u64>,
    latency: Histogram<f64>,
}

impl Edge {
    /// `spec` is the OpenAPI document; its paths and methods give each route's `Allow`.
    pub fn new(json_cap: u64, upload_cap: u64, spec: &serde_json::Value) -> Self {
        let meter = ferry_observability::meter();
        Self {
            json_cap,
            upload_cap,
            routes: routes(spec),
            requests: meter
                .u64_counter("ferry_http_requests")
                .with_description("HTTP requests by method, route template and status")
                .build(),
            latency: meter
                .f64_histogram("ferry_http_request_duration")
                .with_unit("s")
                .with_description("HTTP request latency by method, route template and status")
                .build(),
        }
    }

    pub async fn handle<E: Endpoint>(&self, ep: &E, mut req: Request) -> Response {
        let started = Instant::now();
        let method = method_label(req.method());
        let path = req.uri().path();
        let cap = if UPLOADS.contains(&path) || crate::qbittorrent::is_upload(path) {
            self.upload_cap
        } else {
            self.json_cap
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let takes_body = [Method::POST, Method::PUT, Method::PATCH].contains(req.method());
        let exceeded = Arc::new(AtomicBool::new(false));
        let (route, mut resp) = if takes_body && declared.is_some_and(|len| len > cap) {
            let route = UNMATCHED.to_owned();
            (route, too_large(cap))
        } else {
            let body = limited(req.take_body(), cap, exceeded.clone());
            req.set_body(body);
            let refused = crate::auth::Refusal::default();
            req.extensions_mut().insert(refused.clone());
            if req.method() == Method::HEAD {
                req.extensions_mut().insert(HeadRequest);
            }
            match ep.call(req).await {
                Ok(out) => {
                    let resp = out.into_response();
                    (self.route(resp.data::<PathPattern>()), resp)
                }
                Err(err) => {
                    let route = self.route(err.data::<PathPattern>());
                    // The operation takes a cookie or a token, and a caller presented one
                    // that was refused: that refusal, not "no credentials" from whichever
                    // scheme was tried last.
                    let resp = match refused.take() {
                        Some(refusal) if err.status() == StatusCode::UNAUTHORIZED => {
                            refusal.into_response()
                        }
                        _ => json_error(err),
                    };
                    (route, resp)
                }
            }
        };
        if exceeded.load(Ordering::SeqCst) {
            // Whatever the operation made of a body cut short, the answer is that it was
            // too large.
            resp = too_large(cap);
        }
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED
            && !resp.headers().contains_key(header::ALLOW)
        {
            let allow = self
                .routes
                .get(&shape(&route))
                .map_or("GET, HEAD", |(_, allow)| allow.as_str());
            resp.headers_mut().insert(
                header::ALLOW,
                header::HeaderValue::from_str(allow)
                    .unwrap_or(header::HeaderValue::from_static("GET, HEAD")),
            );
        }
        let labels = [
            KeyValue::new("method", method),
            KeyValue::new("route", route),
            KeyValue::new("status", i64::from(resp.status().as_u16())),
        ];
        self.requests.add(1, &labels);
        self.latency
            .record(started.elapsed().as_secs_f64(), &labels);
        resp
    }

    /// The matched route's template, as the OpenAPI document writes it (a closed set: the
    /// application's routes), or `unmatched`.
    fn route(&self, found: Option<&PathPattern>) -> String {
        match found.map(|p| p.0.as_ref()).filter(|p| !p.is_empty()) {
            None => UNMATCHED.to_owned(),
            Some(pattern) => self
                .routes
                .get(&shape(pattern))
                .map_or_else(|| pattern.to_owned(), |(template, _)| template.clone()),
        }
    }
}

/// A route with its parameters blanked (`:param0`, `:id` and `{id}` all become `*`), to
/// match poem's patterns with the document's paths.
fn shape(route: &str) -> String {
    route
        .split('/')
        .map(|seg| {
            if seg.starts_with(':') || (seg.starts_with('{') && seg.ends_with('}')) {
                "*"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The method as a label: one of the standard methods, or `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Each documented path's shape → (the path, its `Allow` value).
fn routes(spec: &serde_json::Value) -> HashMap<String, (String, String)> {
    let Some(paths) = spec.get("paths").and_then(|p| p.as_object()) else {
        return HashMap::new();
    };
    paths
        .iter()
        .map(|(path, ops)| {
            let mut methods: Vec<String> = ops
                .as_object()
                .map(|o| o.keys().map(|m| m.to_ascii_uppercase()).collect())
                .unwrap_or_default();
            if methods.iter().any(|m| m == "GET") {
                // poem answers HEAD wherever it answers GET.
                methods.push("HEAD".to_owned());
            }
            (shape(path), (path.clone(), methods.join(", ")))
        })
        .collect()
}

/// `body`, failing once more than `cap` bytes have arrived (and then reading no further);
/// `exceeded` records that it did, whatever the reader makes of the error.
fn limited(body: Body, cap: u64, exceeded: Arc<AtomicBool>) -> Body {
    let chunks = futures::stream::unfold(Some((body.into_bytes_stream(), 0u64)), move |state| {
        let exceeded = exceeded.clone();
        async move {
            let (mut inner, seen) = state?;
            match inner.next().await? {
                Err(e) => Some((Err(e), None)),
                Ok(chunk) => {
                    let seen = seen + chunk.len() as u64;
                    if seen > cap {
                        exceeded.store(true, Ordering::SeqCst);
                        let e = std::io::Error::other("the request body is too large");
                        // Ending here drops the connection's body: nothing more is read.
                        Some((Err(e), None))
                    } else {
                        Some((Ok(chunk), Some((inner, seen))))
                    }
                }
            }
        }
    });
    Body::from_bytes_stream(chunks)
}

fn too_large(cap: u64) -> Response {
    error_response(
        ErrorCode::PayloadTooLarge,
        &format!("request bodies here may be at most {cap} bytes"),
    )
}

/// An error raised outside the operations, answered with its code's status.
fn error_response(code: ErrorCode, message: &str) -> Response {
    let status = error::status(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    answer(status, code, message)
}

fn answer(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    poem::web::Json(serde_json::json!({ "code": code, "message": message }))
        .with_status(status)
        .into_response()
}

/// The codes of the errors the router itself raises, found by their status.
const ROUTER_CODES: [ErrorCode; 4] = [
    ErrorCode::NotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::PayloadTooLarge,
    ErrorCode::UnsupportedMediaType,
];

/// Errors raised outside the operations (unknown route, missing token, unparsable body, bad
/// parameter) get the same JSON shape as the operations' own errors.
pub fn json_error(err: poem::Error) -> Response {
    let status = err.status();
    let message = err.to_string();
    let response = err.into_response();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        // One of our own `ApiError`s: already in shape.
        return response;
    }
    if status == StatusCode::UNAUTHORIZED {
        return ApiError::unauthorized().into_response();
    }
    let code = ROUTER_CODES
        .into_iter()
        .find(|&c| error::status(c) == Some(status))
        .unwrap_or(if status.is_server_error() {
            ErrorCode::InternalError
        } else {
            ErrorCode::InvalidRequest
        });
    // The status stays poem's: it decided what went wrong (400 for whatever else it
    // refuses, 500 for its own failures).
    if status.is_server_error() {
        tracing::error!(error = %message, "request failed");
        return answer(
            status,
            code,
            "an unexpected error occurred; see the server log",
        );
    }
    answer(status, code, &message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn templates_and_allow_lists_come_from_the_document() {
        let spec = serde_json::json!({"paths": {
            "/api/v1/jobs/{id}": {"get": {}, "delete": {}},
            "/api/v1/jobs": {"post": {}},
        }});
        let routes = routes(&spec);
        assert_eq!(
            routes[&shape("/api/v1/jobs/:param0")],
            (
                "/api/v1/jobs/{id}".to_owned(),
                "DELETE, GET, HEAD".to_owned()
            )
        );
        assert_eq!(routes["/api/v1/jobs"].1, "POST");
    }

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
    }

    #[tokio::test]
    async fn a_body_past_its_cap_fails_and_says_so() {
        let exceeded = Arc::new(AtomicBool::new(false));
        let body = limited(Body::from(vec![1u8; 100]), 99, exceeded.clone());
        assert!(body.into_vec().await.is_err());
        assert!(exceeded.load(Ordering::SeqCst));
        let exceeded = Arc::new(AtomicBool::new(false));
        let body = limited(Body::from(vec![1u8; 100]), 100, exceeded.clone());
        assert_eq!(body.into_vec().await.unwrap().len(), 100);
        assert!(!exceeded.load(Ordering::SeqCst));
    }
}
