//! The request log: a line per request with its method, path, status and duration, and
//! never a secret: a signed link's token (it is the path) is replaced by `{token}`, and
//! queries (an OIDC or Drive callback's `code` and `state`, a page's `next`) are left out.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;

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
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %loggable(req.uri().path()),
        remote_addr = %req.remote_addr(),
    );
    async move {
        let started = Instant::now();
        let answer = ep.call(req).await;
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        match answer {
            Ok(resp) => {
                let resp = resp.into_response();
                tracing::info!(status = resp.status().as_u16(), duration_ms, "response");
                Ok(resp)
            }
            Err(err) => {
                tracing::info!(status = err.status().as_u16(), error = %err, duration_ms, "error");
                Err(err)
            }
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::loggable;

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
