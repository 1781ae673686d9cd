//! `GoogleConsent`: Google's OAuth 2.0 consent for Drive access, for the operator's client —
//! the consent URL (authorization code, `drive.file` scope, offline access, a fresh random
//! `state`, PKCE S256) and the exchange of the callback's code for the user's refresh token.
//!
//! The exchange goes through the same guarded client as Drive itself: the token endpoint is
//! resolved through the storage [`NetGuard`] and no redirect is followed.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferry_application::ports::{ConsentError, ConsentStart, DriveConsent, StoreError};
use ferry_net::NetGuard;
use rand::RngCore;
use reqwest::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{check_literal, client, status_error, unreachable};

/// Per-file access: Ferry sees only the files it creates (and folders shared with it).
pub const DRIVE_SCOPE: &str = "https://www.googleapis.com/auth/drive.file";

#[derive(Clone)]
pub struct ConsentSettings {
    /// `https://accounts.google.com/o/oauth2/v2/auth`.
    pub auth_url: url::Url,
    /// `https://oauth2.googleapis.com/token`.
    pub token_url: url::Url,
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for ConsentSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentSettings")
            .field("auth_url", &self.auth_url.as_str())
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

pub struct GoogleConsent {
    http: reqwest::Client,
    settings: ConsentSettings,
}

#[derive(Deserialize)]
struct Grant {
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct GrantError {
    #[serde(default)]
    error: String,
}

/// 32 random bytes, base64url: 43 characters (PKCE's minimum verifier length).
fn random() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// PKCE S256: base64url(SHA-256(verifier)).
pub(crate) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl GoogleConsent {
    /// A consent whose token exchange resolves names through `guard`.
    ///
    /// # Errors
    /// `NotAllowed` when the token URL is a literal address the guard refuses.
    pub fn new(settings: ConsentSettings, guard: Arc<NetGuard>) -> Result<Self, StoreError> {
        check_literal(&guard, &settings.token_url)?;
        Ok(Self {
            http: client(&guard)?,
            settings,
        })
    }
}

#[async_trait]
impl DriveConsent for GoogleConsent {
    fn begin(&self, redirect_uri: &str) -> ConsentStart {
        let (state, verifier) = (random(), random());
        let mut url = self.settings.auth_url.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", DRIVE_SCOPE)
            // A refresh token is granted only for offline access, and again at a later
            // connection only when the consent is asked for again.
            .append_pair("access_type", "offline")
            .append_pair("prompt", "consent")
            .append_pair("state", &state)
            .append_pair("code_challenge", &s256(&verifier))
            .append_pair("code_challenge_method", "S256");
        ConsentStart {
            authorize_url: url.into(),
            state,
            pkce_verifier: verifier,
        }
    }

    async fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: &str,
    ) -> Result<String, ConsentError> {
        let resp = self
            .http
            .post(self.settings.token_url.clone())
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("client_id", self.settings.client_id.as_str()),
                ("client_secret", self.settings.client_secret.as_str()),
                ("code_verifier", pkce_verifier),
            ])
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status();
        if status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED {
            let body: GrantError = resp.json().await.unwrap_or(GrantError {
                error: String::new(),
            });
            // Google's error code only (`invalid_grant`, `invalid_client`): short and plain.
            let error: String = body
                .error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(40)
                .collect();
            tracing::info!(%status, %error, "Google refused a Drive authorization code");
            return Err(ConsentError::Refused(if error.is_empty() {
                status.as_u16().to_string()
            } else {
                error
            }));
        }
        if !status.is_success() {
            return Err(status_error("the authorization code", resp).await.into());
        }
        let grant: Grant = resp
            .json()
            .await
            .map_err(|e| StoreError::Unexpected(e.into()))?;
        match grant.refresh_token {
            Some(token) if !token.is_empty() => Ok(token),
            _ => Err(ConsentError::NoRefreshToken),
        }
    }
}
