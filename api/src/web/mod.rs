//! The web front end (ADR 0007): pages rendered on the server with maud, one ES module and
//! one stylesheet embedded in the binary. Pages read through the same use cases as the API
//! and act through the API itself (the script calls `/api/v1` with the session cookie).
//!
//! Every page but the sign-in and setup pages needs a live session; without one it sends
//! the browser to `/login?next=…`. Every answer carries the security headers (a CSP without
//! `unsafe-inline`, no framing, HSTS behind https).

mod assets;
mod human;
mod pages;

use std::sync::Arc;

use ferry_application::Caller;
use ferry_domain::User;
use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route, get};

use crate::ApiState;
use crate::auth::{SESSION_COOKIE, cookie};

/// The Content-Security-Policy of every page: scripts and styles only from Ferry's own
/// files (no inline code at all), media also from S3's presigned URLs.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob: https:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The API (which serves `/api/v1`, and is nested at `/`) with the pages and their assets.
pub fn mount<A: Endpoint + 'static>(api: A) -> Route {
    Route::new()
        .nest(
            "/",
            RootOr {
                api,
                root: get(pages::jobs_page).around(secured),
            },
        )
        .at("/login", get(pages::login_page).around(secured))
        .at("/setup", get(pages::setup_page).around(secured))
        .at("/add", get(pages::add_page).around(secured))
        .at("/jobs/:id", get(pages::job_page).around(secured))
        .at("/account", get(pages::account_page).around(secured))
        .at("/storage", get(pages::storage_page).around(secured))
        .at("/admin", get(pages::admin_page).around(secured))
        .at("/assets/:file", get(assets::serve).around(secured))
}

/// `/` is the jobs page; every other path under the nest goes to the API (the router
/// cannot hold both `/` and a nest at `/`).
struct RootOr<A, P> {
    api: A,
    root: P,
}

impl<A: Endpoint, P: Endpoint> Endpoint for RootOr<A, P> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if req.uri().path() == "/" {
            self.root.call(req).await.map(IntoResponse::into_response)
        } else {
            self.api.call(req).await.map(IntoResponse::into_response)
        }
    }
}

/// Runs a page's endpoint, puts the security headers on whatever it answers and gzips
/// its text when the browser takes gzip.
async fn secured<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let secure = req
        .data::<Arc<ApiState>>()
        .is_some_and(|s| s.secure_cookies);
    let gzip = takes_gzip(&req) && req.method() != poem::http::Method::HEAD;
    let mut resp = match ep.call(req).await {
        Ok(resp) => resp.into_response(),
        Err(e) => e.into_response(),
    };
    protect(&mut resp, secure);
    if compressible(&resp) {
        // Every representation says it varies, gzipped or not.
        resp.headers_mut()
            .append(header::VARY, HeaderValue::from_static("accept-encoding"));
        if gzip {
            resp = compressed(resp).await;
        }
    }
    Ok(resp)
}

/// Whether the request's `Accept-Encoding` takes gzip: named with a weight above 0, or
/// not named and `*` is.
fn takes_gzip(req: &Request) -> bool {
    let mut gzip = None;
    let mut any = None;
    for coding in req
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let taken = !parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if name.eq_ignore_ascii_case("gzip") {
            gzip = Some(taken);
        } else if name == "*" {
            any = Some(taken);
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// Text worth compressing: a page, the script, the stylesheet.
fn compressible(resp: &Response) -> bool {
    resp.content_type().is_some_and(|t| {
        t.starts_with("text/html") || t.starts_with("text/css") || t.contains("javascript")
    })
}

/// Smaller bodies gain nothing from compression.
const GZIP_FROM: usize = 1024;

/// `resp` gzipped, when it is text (a page, the script, the stylesheet) worth compressing.
async fn compressed(mut resp: Response) -> Response {
    use std::io::Write;

    if !compressible(&resp) || resp.headers().contains_key(header::CONTENT_ENCODING) {
        return resp;
    }
    let Ok(body) = resp.take_body().into_bytes().await else {
        return resp;
    };
    if body.len() < GZIP_FROM {
        resp.set_body(body);
        return resp;
    }
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::new(6),
    );
    match gz.write_all(&body).and_then(|()| gz.finish()) {
        Ok(zipped) => {
            resp.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            resp.headers_mut().remove(header::CONTENT_LENGTH);
            resp.set_body(zipped);
        }
        Err(_) => resp.set_body(body),
    }
    resp
}

/// The security headers of every page answer.
fn protect(resp: &mut Response, secure: bool) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if secure {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Who is looking at a page: the session's caller and their account.
pub struct Viewer {
    pub caller: Caller,
    pub user: User,
}

impl Viewer {
    pub fn is_admin(&self) -> bool {
        self.caller.role == ferry_domain::Role::Admin
    }
}

/// The signed-in viewer, or the answer that sends the browser to sign in (and back here).
async fn viewer(req: &Request, state: &ApiState) -> Result<Viewer, Response> {
    let to_login = || {
        let here = req
            .uri()
            .path_and_query()
            .map_or("/", poem::http::uri::PathAndQuery::as_str);
        let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
        Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, format!("/login?next={next}"))
            .finish()
    };
    let Some(id) = cookie(req, SESSION_COOKIE) else {
        return Err(to_login());
    };
    let caller = state
        .accounts
        .authenticate_session(&id)
        .await
        .map_err(|_| to_login())?;
    crate::access_log::record_user(caller.user.as_str());
    if let Err(ferry_application::AccountsError::RateLimited { retry_after }) =
        state.accounts.limit_api(&caller).await
    {
        return Err(Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header(
                header::RETRY_AFTER,
                retry_after.as_secs().max(1).to_string(),
            )
            .content_type("text/plain; charset=utf-8")
            .body("Too many requests; wait a moment and reload."));
    }
    let (user, _) = state.accounts.me(&caller).await.map_err(|_| to_login())?;
    Ok(Viewer { caller, user })
}

/// A path on Ferry to return to after signing in; anything else (another site, a
/// protocol-relative `//host`, a backslash trick) becomes `/`.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.chars().any(char::is_control) =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_ferry_are_returned_to() {
        assert_eq!(local_path(Some("/jobs/1?x=2")), "/jobs/1?x=2");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "javascript:alert(1)",
            "/\nx",
            "",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn gzip_is_used_only_when_the_browser_takes_it() {
        let with = |accept: &str| {
            takes_gzip(
                &Request::builder()
                    .header(header::ACCEPT_ENCODING, accept)
                    .finish(),
            )
        };
        assert!(with("gzip, deflate, br, zstd"));
        assert!(with("br;q=1.0, GZIP;q=0.5"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("*, gzip;q=0"));
        assert!(with("*;q=0, gzip"));
        assert!(!with("br, identity"));
        assert!(!takes_gzip(&Request::builder().finish()));
    }

    #[tokio::test]
    async fn pages_are_gzipped_and_small_or_binary_answers_are_not() {
        use std::io::Read;

        let page = "<p>row</p>".repeat(500);
        let resp = compressed(
            Response::builder()
                .content_type("text/html; charset=utf-8")
                .body(page.clone()),
        )
        .await;
        assert_eq!(resp.headers()[header::CONTENT_ENCODING], "gzip");
        let zipped = resp.into_body().into_vec().await.unwrap();
        assert!(zipped.len() < page.len() / 10, "{}", zipped.len());
        let mut unzipped = String::new();
        flate2::read::GzDecoder::new(&zipped[..])
            .read_to_string(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, page);

        for (kind, body) in [
            ("text/html", "<p>short</p>".to_owned()),
            ("video/webm", "x".repeat(5000)),
        ] {
            let resp = compressed(Response::builder().content_type(kind).body(body.clone())).await;
            assert!(
                !resp.headers().contains_key(header::CONTENT_ENCODING),
                "{kind}"
            );
            assert_eq!(resp.into_body().into_string().await.unwrap(), body);
        }
    }

    #[test]
    fn the_policy_allows_no_inline_code_and_no_framing() {
        assert!(!CSP.contains("unsafe-inline") && !CSP.contains("unsafe-eval"));
        assert!(CSP.contains("frame-ancestors 'none'"));
        assert!(CSP.contains("script-src 'self'"));
    }
}
