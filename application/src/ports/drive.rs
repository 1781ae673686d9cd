//! Connecting a user's Google Drive: Google's OAuth consent (authorization code with PKCE)
//! that ends in the refresh token a Drive profile keeps. The adapter speaks the protocol;
//! the use case ([`crate::DriveConnect`]) decides whose profile it becomes.

use async_trait::async_trait;

use super::StoreError;

/// Why a consent could not be turned into a refresh token.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    /// Google refused the authorization code: unknown, already used, expired, or issued for
    /// another redirect URI, client or PKCE verifier. The string is Google's error code.
    #[error("Google refused the authorization code ({0}); start the connection again")]
    Refused(String),
    /// Google granted access but returned no refresh token (it sends one only at a consent
    /// given with `access_type=offline` and `prompt=consent`).
    #[error(
        "Google granted access without a refresh token, so Ferry could not keep it; remove Ferry from your Google account's third-party access and connect again"
    )]
    NoRefreshToken,
    /// The token endpoint could not be reached (`Unreachable`), is at an address the storage
    /// policy refuses (`NotAllowed`), or answered something unexpected.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The start of a consent: where to send the browser, and the secrets to keep (sealed, in
/// the browser's pending cookie) until it comes back.
#[derive(Clone)]
pub struct ConsentStart {
    pub authorize_url: String,
    /// The `state` in the URL, to compare with the callback's.
    pub state: String,
    /// The PKCE verifier whose S256 challenge is in the URL.
    pub pkce_verifier: String,
}

impl std::fmt::Debug for ConsentStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentStart").finish_non_exhaustive()
    }
}

/// Google's consent for Drive access (`drive.file` scope, offline), for the operator's OAuth
/// client.
#[async_trait]
pub trait DriveConsent: Send + Sync + 'static {
    /// A consent URL that sends the browser back to `redirect_uri`, with a fresh random
    /// `state` and PKCE pair.
    fn begin(&self, redirect_uri: &str) -> ConsentStart;

    /// Exchanges the callback's `code` (with the same `redirect_uri` and the PKCE verifier)
    /// for the user's refresh token.
    ///
    /// # Errors
    /// `Refused` when Google refuses the code, `NoRefreshToken`, `Store(Unreachable)` when
    /// Google cannot be reached, `Store(NotAllowed)` when the token endpoint is at a refused
    /// address.
    async fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: &str,
    ) -> Result<String, ConsentError>;
}
