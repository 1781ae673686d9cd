//! `WebhookTransport` on the fetcher's client: webhook endpoints are reached exactly like
//! URL jobs' (the same address guard, `fetch.allow`, `fetch.hosts` and `fetch.proxy`), with
//! no redirect followed (a 3xx is the answer) and the whole attempt bounded by a timeout.

use std::time::Duration;

use async_trait::async_trait;
use ferry_application::ports::{FetchError, TransportError, WebhookTransport};
use ferry_domain::FetchUrl;

use crate::{HttpFetcher, request_error};

fn transport_error(e: FetchError) -> TransportError {
    match e {
        FetchError::NotAllowed(why) => TransportError::NotAllowed(why),
        other => TransportError::Unreachable(other.to_string()),
    }
}

#[async_trait]
impl WebhookTransport for HttpFetcher {
    async fn check(&self, url: &FetchUrl) -> Result<(), TransportError> {
        HttpFetcher::check(self, url).await.map_err(transport_error)
    }

    async fn post(
        &self,
        url: &FetchUrl,
        headers: &[(&'static str, String)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<u16, TransportError> {
        let attempt = async {
            HttpFetcher::check(self, url)
                .await
                .map_err(transport_error)?;
            let mut request = self
                .client
                .post(url.as_url().clone())
                .timeout(timeout)
                .body(body.to_vec());
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let response = request.send().await.map_err(|e| {
                if e.is_timeout() {
                    TransportError::Timeout(timeout)
                } else {
                    transport_error(request_error(e))
                }
            })?;
            // The answer's body is not read: the status says it all.
            Ok(response.status().as_u16())
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or(Err(TransportError::Timeout(timeout)))
    }
}
