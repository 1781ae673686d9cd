//! The request log: a line per request with its method, path, status and duration, and
//! never a secret: a signed link's token (it is the path) is replaced by `{token}`, and
//! queries (an OIDC or Drive callback's `code` and `state`, a page's `next`) are left out.
//!
//! Every request has a `request_id`: the caller's `X-Request-Id` when it is a short plain
//! token, else a new one. It is a field of every log line the request writes (with the
//! `user_id` once the caller is known), the `X-Request-Id` of the answer and the
//! `request_id` of an error body.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;

/// The header that carries a request's id, both ways.
pub(crate) const REQUEST_ID: &str = "x-request-id";

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being answered (inside [`logged`]).
pub(crate) fn current_request_id() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The caller's id for this request when it is usable (1–64 of `A-Za-z0-9._:-`), else a
/// new one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}

/// Names the request's caller in its log lines (called once authenticated).
pub(crate) fn record_user(user: &str) {
    tracing::Span::current().record("user_id", user);
}

/// Paths whose last segment is a bearer secret.
const SECRET_TAILS: [&str; 1] = ["/api/v1/links/"];

/// `path` as the log may show it.
pub(crate) fn loggable(path: &str) -> Cow<'_, str> {
    for prefix in SECRET_TAILS {
        if let Some(rest) = path.strip_prefix(prefix)
            && !rest.is_empty()
        {
            return Cow::Owned(format!("{prefix}{{token}}"));
        }
    }
    Cow::Borrowed(path)
}

/// Calls `ep` inside a `request` span and logs how it answered.
pub(crate) async fn logged<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let id = request_id(&req);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        user_id = tracing::field::Empty,
        method = %req.method(),
        path = %loggable(req.uri().path()),
        remote_addr = %req.remote_addr(),
    );
    let header = HeaderValue::from_str(&id).ok();
    let answered = async move {
        let started = Instant::now();
        let answer = ep.call(req).await;
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        match answer {
            Ok(resp) => {
                let resp = resp.into_response();
                tracing::info!(status = resp.status().as_u16(), duration_ms, "response");
                resp
            }
            Err(err) => {
                tracing::info!(status = err.status().as_u16(), error = %err, duration_ms, "error");
                err.into_response()
            }
        }
    }
    .instrument(span);
    let mut resp = CURRENT.scope(id, answered).await;
    if let Some(header) = header {
        resp.headers_mut().insert(REQUEST_ID, header);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::{loggable, request_id};

    #[test]
    fn a_request_keeps_a_plain_id_and_gets_one_otherwise() {
        let with = |id: &str| {
            request_id(
                &poem::Request::builder()
                    .header(super::REQUEST_ID, id)
                    .finish(),
            )
        };
        assert_eq!(with("abc-123_x.y:z"), "abc-123_x.y:z");
        for hostile in ["", "a b", "<script>", &"x".repeat(65), "id\u{7f}"] {
            let made = with(hostile);
            assert_eq!(made.len(), 32, "{hostile:?} → {made}");
            assert_ne!(made, hostile);
        }
        let fresh = request_id(&poem::Request::builder().finish());
        assert!(fresh.bytes().all(|b| b.is_ascii_hexdigit()), "{fresh}");
    }

    #[test]
    fn link_tokens_never_reach_the_log() {
        assert_eq!(
            loggable("/api/v1/links/eyJhbGciOi.abc.def"),
            "/api/v1/links/{token}"
        );
        assert_eq!(loggable("/api/v1/links/a/b"), "/api/v1/links/{token}");
        assert_eq!(loggable("/api/v1/links/"), "/api/v1/links/");
        assert_eq!(
            loggable("/api/v1/jobs/1/files/0/link"),
            "/api/v1/jobs/1/files/0/link"
        );
        assert_eq!(loggable("/"), "/");
    }
}
