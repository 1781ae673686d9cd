//! What the identity tests share: the provider on loopback and a login through it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ferry_application::ports::{IdentityError, IdentityProvider, LoginStart, VerifiedIdentity};
use ferry_identity::{OidcConfig, OidcProvider};
use ferry_testkit::oidc::{self, OidcServer};

/// Where the provider sends the browser back; nothing needs to listen there, the login
/// stops at the redirect.
pub const REDIRECT: &str = "http://127.0.0.1:9/auth/callback/test";

/// The provider on a port of its own; `None` (skipped) when node is missing outside CI.
pub fn server() -> Option<OidcServer> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    OidcServer::start(&[REDIRECT])
}

pub fn issuer(server: &OidcServer) -> url::Url {
    url::Url::parse(&server.issuer()).unwrap()
}

pub fn provider(server: &OidcServer) -> OidcProvider {
    OidcProvider::new(OidcConfig::new(
        "test",
        issuer(server),
        oidc::CLIENT_ID,
        Some(oidc::CLIENT_SECRET.into()),
    ))
    .unwrap()
}

/// The `code` and `state` the provider sends back after `user` signs in at `start`.
pub async fn callback(start: &LoginStart, user: &str) -> (String, String) {
    let callback = url::Url::parse(&oidc::login(&start.authorize_url, user).await).unwrap();
    let query: std::collections::HashMap<_, _> = callback.query_pairs().into_owned().collect();
    let code = query
        .get("code")
        .unwrap_or_else(|| panic!("no code in {callback}"));
    (code.clone(), query["state"].clone())
}

/// A whole login of `user`.
pub async fn sign_in(
    provider: &OidcProvider,
    user: &str,
) -> Result<VerifiedIdentity, IdentityError> {
    let start = provider.begin(REDIRECT, None).await?;
    let (code, state) = callback(&start, user).await;
    provider.finish(&start.pending, &code, &state).await
}
