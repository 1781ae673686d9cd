//! How the identity provider is reached: Ferry's reqwest (rustls), no redirects followed,
//! bounded time and answer size, and a 5xx counted as the provider being unavailable.
//! `openidconnect` calls it through oauth2's `AsyncHttpClient`, implemented here with a boxed
//! `Send` future (oauth2's own implementation for closures makes futures that are not `Send`
//! for every lifetime, which `async_trait` methods need).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use ferry_application::ports::IdentityError;

/// Discovery documents, key sets and token answers are a few KiB; anything past this is not
/// one of them.
const MAX_ANSWER: usize = 1 << 20;

/// Why a request to the provider failed (all of it means "unavailable" to the caller).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
    #[error("the identity provider answered {0}")]
    ServerError(http::StatusCode),
    #[error("the identity provider's answer is over {MAX_ANSWER} bytes")]
    TooLarge,
    #[error("{0}")]
    Http(#[from] http::Error),
}

impl From<HttpError> for IdentityError {
    fn from(e: HttpError) -> Self {
        IdentityError::Unavailable(e.to_string())
    }
}

/// The client for one provider.
#[derive(Clone)]
pub(crate) struct IdpHttp {
    client: reqwest::Client,
}

impl IdpHttp {
    pub(crate) fn new() -> Result<Self, IdentityError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            // A token request must not be replayed to wherever a redirect points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| IdentityError::Unexpected(e.into()))?;
        Ok(Self { client })
    }

    /// Sends `request` and reads the whole answer.
    pub(crate) async fn execute(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        let (parts, body) = request.into_parts();
        let mut response = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        if status.is_server_error() {
            return Err(HttpError::ServerError(status));
        }
        let mut answer = http::Response::builder().status(status);
        if let Some(headers) = answer.headers_mut() {
            *headers = std::mem::take(response.headers_mut());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(answer.body(body)?)
    }

    /// GETs a JSON document: its bytes when the answer is 200.
    pub(crate) async fn get_json(&self, url: &str) -> Result<Vec<u8>, IdentityError> {
        let request = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| IdentityError::Unexpected(e.into()))?;
        let response = self.execute(request).await?;
        if response.status() != http::StatusCode::OK {
            return Err(IdentityError::Unavailable(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        Ok(response.into_body())
    }
}

/// The issuer as configured and with or without a trailing slash: `Url` adds one to a bare
/// origin (`https://idp.example` → `https://idp.example/`), while issuers are compared as
/// strings and are written both ways (Google without, Auth0 with).
pub(crate) fn issuer_spellings(issuer: &url::Url) -> Vec<String> {
    let full = issuer.as_str().to_owned();
    let trimmed = full.trim_end_matches('/').to_owned();
    if trimmed == full {
        vec![full.clone(), format!("{full}/")]
    } else {
        vec![trimmed, full]
    }
}

impl<'c> openidconnect::AsyncHttpClient<'c> for IdpHttp {
    type Error = HttpError;
    type Future =
        Pin<Box<dyn Future<Output = Result<http::Response<Vec<u8>>, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: http::Request<Vec<u8>>) -> Self::Future {
        Box::pin(self.execute(request))
    }
}

/// `{issuer}/.well-known/openid-configuration`.
pub(crate) fn discovery_url(issuer: &url::Url) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.as_str().trim_end_matches('/')
    )
}
