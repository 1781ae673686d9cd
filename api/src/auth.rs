//! Until user accounts exist, one operator token guards the API.

use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Request, Response};

/// Paths that answer without a token: probes and the API description carry no user data.
const OPEN: &[&str] = &["/api/v1/health", "/api/v1/version", "/api/v1/openapi.json"];

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn authorized(req: &Request, token: &str) -> bool {
    let path = req.uri().path();
    if !path.starts_with("/api/v1") || OPEN.contains(&path) {
        return true;
    }
    req.headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .is_some_and(|given| same(given.trim().as_bytes(), token.as_bytes()))
}

pub async fn guard<E: Endpoint>(
    next: E,
    req: Request,
    token: Option<String>,
) -> poem::Result<Response> {
    if let Some(token) = &token
        && !authorized(&req, token)
    {
        let body = serde_json::json!({
            "code": "unauthorized",
            "message": "send the API token as `Authorization: Bearer <token>`",
        });
        return Ok(poem::web::Json(body)
            .with_status(StatusCode::UNAUTHORIZED)
            .with_header("WWW-Authenticate", "Bearer")
            .into_response());
    }
    next.call(req).await.map(IntoResponse::into_response)
}
