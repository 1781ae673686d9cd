//! Proving who someone is: OpenID Connect login, IdP access tokens (JWT) and local
//! passwords. Adapters do the protocol and the cryptography; the use cases decide which
//! user an identity is.

use std::time::Duration;

use async_trait::async_trait;

/// Why an identity could not be proved. Every variant is the caller's problem (401/400)
/// except `Unavailable` (the IdP cannot be reached: 502/503) and `Unexpected`.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The callback's `state` is not the one this browser started with, or the login is
    /// too old.
    #[error("the login's state does not match (start the login again)")]
    StateMismatch,
    /// The IdP answered the callback with an error (`error=access_denied`, …).
    #[error("the identity provider refused the login: {0}")]
    Refused(String),
    /// A token's signature, issuer, audience, nonce, times or algorithm is wrong.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// What an IdP vouches for, from a verified ID token (and user info) or access token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifiedIdentity {
    /// `iss`, exactly as in the token.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    pub email: Option<String>,
    /// `name`, else `preferred_username`.
    pub name: Option<String>,
    /// The configured group claim's values (`groups` by default), for admin mapping.
    pub groups: Vec<String>,
    /// An access token's granted scopes (`scope`, space-separated, or `scp`); empty for ID
    /// tokens. Those named `ferry:read`, `ferry:write`, `ferry:admin` narrow what a machine
    /// client may do (see [`crate::accounts::Accounts`]).
    pub granted: Vec<String>,
}

/// What the browser must carry from the login's start to its callback (Ferry keeps it in
/// a sealed, short-lived cookie): nothing in it may be shown to anyone else.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingLogin {
    pub provider: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub redirect_uri: String,
    /// Where to send the browser after login (a path on Ferry only).
    pub return_to: Option<String>,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin")
            .field("provider", &self.provider)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// The start of a login: where to send the browser, and what to keep until it comes back.
#[derive(Debug, Clone)]
pub struct LoginStart {
    pub authorize_url: String,
    pub pending: PendingLogin,
}

/// One configured OpenID Connect provider (authorization code + PKCE, `state` and `nonce`
/// checked, discovery and key rotation handled by the adapter).
#[async_trait]
pub trait IdentityProvider: Send + Sync + 'static {
    /// The provider's name in URLs (`/auth/login/{name}`).
    fn name(&self) -> &str;

    /// Starts a login that comes back to `redirect_uri`.
    ///
    /// # Errors
    /// `Unavailable` when discovery fails.
    async fn begin(
        &self,
        redirect_uri: &str,
        return_to: Option<String>,
    ) -> Result<LoginStart, IdentityError>;

    /// Finishes a login: checks `state` against `pending`, exchanges `code` (with the PKCE
    /// verifier), verifies the ID token (signature, issuer, audience, expiry, nonce).
    ///
    /// # Errors
    /// `StateMismatch`, `InvalidToken`, `Refused`, `Unavailable`.
    async fn finish(
        &self,
        pending: &PendingLogin,
        code: &str,
        state: &str,
    ) -> Result<VerifiedIdentity, IdentityError>;
}

/// Verifies IdP access tokens (JWT) presented as bearer tokens by machine clients.
#[async_trait]
pub trait AccessTokenVerifier: Send + Sync + 'static {
    /// Whether `token` looks like this verifier's kind (a JWT: three dot-separated parts),
    /// so other bearer kinds are not sent to it.
    fn accepts(&self, token: &str) -> bool;

    /// Verifies signature (keys from the issuer's JWKS, refetched on an unknown `kid`),
    /// `iss`, `aud`, `exp`, `nbf`; refuses `alg: none` and algorithms the key is not for.
    ///
    /// # Errors
    /// `InvalidToken`, `Unavailable`.
    async fn verify(&self, token: &str) -> Result<VerifiedIdentity, IdentityError>;
}

/// Slow, salted password hashes (Argon2id).
pub trait PasswordHasher: Send + Sync + 'static {
    /// A PHC string.
    ///
    /// # Errors
    /// Only `Unexpected`.
    fn hash(&self, password: &str) -> Result<String, IdentityError>;

    /// Whether `password` matches `hash`; a malformed hash is `false`.
    fn verify(&self, password: &str, hash: &str) -> bool;
}

/// How often a key may act: `burst` at once, then one more every `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub period: Duration,
}

/// A rate limiter's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    /// Refused; the next request may pass after this long.
    Limited {
        retry_after: Duration,
    },
}

/// Limits per key (`api:{user}`, `login-ip:{ip}`, `login-user:{name}`): in process in the
/// embedded mode, shared through Redis in the distributed mode so every API instance
/// enforces one limit.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes one cell from `key`'s bucket under `limit`. A limiter whose store cannot be
    /// reached allows the request (and says so in the logs): limits protect, they must not
    /// take the API down.
    async fn check(&self, key: &str, limit: RateLimit) -> RateDecision;
}
