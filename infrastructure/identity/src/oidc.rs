//! `IdentityProvider` for one OpenID Connect provider (`openidconnect` over Ferry's reqwest):
//! authorization code + PKCE (S256), `state` (compared in constant time) and `nonce`; the ID
//! token's signature, `iss`, `aud`, `exp` and `nonce` verified. Discovery happens at first use
//! (so Ferry starts while the provider is down) and is retried until it succeeds; a token
//! signed with a key the cached key set lacks makes one refetch of the key set (at most one a
//! minute) before it is refused.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferry_application::ports::{
    IdentityError, IdentityProvider, LoginStart, PendingLogin, VerifiedIdentity,
};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClientAuthMethod,
    CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, DiscoveryError, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IdTokenClaims, IdTokenFields, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, SignatureVerificationError, StandardErrorResponse,
    StandardTokenResponse, TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use tokio::sync::Mutex as AsyncMutex;

use crate::claims;
use crate::http::{HttpError, IdpHttp, discovery_url, issuer_spellings};

/// How often a token with an unknown key id may make the key set be fetched again.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// One provider's settings.
#[derive(Clone)]
pub struct OidcConfig {
    /// The provider's name in URLs (`/auth/login/{name}`).
    pub name: String,
    /// Where `/.well-known/openid-configuration` is found; the `iss` its tokens carry.
    pub issuer: url::Url,
    pub client_id: String,
    /// `None` for a public client (PKCE alone).
    pub client_secret: Option<String>,
    /// Asked for at login; `openid` is always sent.
    pub scopes: Vec<String>,
    /// The ID token claim holding the user's groups.
    pub groups_claim: String,
}

impl OidcConfig {
    /// A provider with the default scopes (`openid email profile`) and groups claim (`groups`).
    pub fn new(
        name: impl Into<String>,
        issuer: url::Url,
        client_id: impl Into<String>,
        client_secret: Option<String>,
    ) -> Self {
        Self {
            name: name.into(),
            issuer,
            client_id: client_id.into(),
            client_secret,
            scopes: ["openid", "email", "profile"].map(String::from).to_vec(),
            groups_claim: "groups".into(),
        }
    }
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("name", &self.name)
            .field("issuer", &self.issuer.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "…"))
            .field("scopes", &self.scopes)
            .field("groups_claim", &self.groups_claim)
            .finish()
    }
}

/// Every claim of the ID token beyond the standard ones (the groups claim's name is
/// configured, so it cannot be a field).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OtherClaims {
    #[serde(flatten)]
    claims: serde_json::Map<String, serde_json::Value>,
}

impl AdditionalClaims for OtherClaims {}

type IdFields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type TokenAnswer = StandardTokenResponse<IdFields, CoreTokenType>;
type TokenError = StandardErrorResponse<CoreErrorResponseType>;
/// `CoreClient` with [`OtherClaims`], as built from discovery.
type Client = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    TokenError,
    TokenAnswer,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// An OpenID Connect provider Ferry signs users in with.
pub struct OidcProvider {
    config: OidcConfig,
    http: IdpHttp,
    /// The provider's metadata and keys once discovered; the lock also makes concurrent first
    /// uses wait for one discovery.
    metadata: AsyncMutex<Option<Arc<CoreProviderMetadata>>>,
    /// When a token with an unknown key last made the key set be refetched.
    last_refetch: Mutex<Option<Instant>>,
    refetch_interval: Duration,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OidcProvider {
    /// Does no I/O: the provider is discovered at the first login.
    ///
    /// # Errors
    /// `Unexpected` when the HTTP client cannot be built.
    pub fn new(config: OidcConfig) -> Result<Self, IdentityError> {
        Ok(Self {
            config,
            http: IdpHttp::new()?,
            metadata: AsyncMutex::new(None),
            last_refetch: Mutex::new(None),
            refetch_interval: JWKS_REFETCH_INTERVAL,
        })
    }

    /// How often an unknown key id may make the key set be refetched (default a minute).
    #[must_use]
    pub fn with_refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// The metadata, discovering it first if no discovery has succeeded yet.
    async fn metadata(&self) -> Result<Arc<CoreProviderMetadata>, IdentityError> {
        let mut cached = self.metadata.lock().await;
        if let Some(metadata) = cached.as_ref() {
            return Ok(metadata.clone());
        }
        let metadata = Arc::new(self.discover().await?);
        *cached = Some(metadata.clone());
        Ok(metadata)
    }

    async fn discover(&self) -> Result<CoreProviderMetadata, IdentityError> {
        let url = discovery_url(&self.config.issuer);
        let body = self.http.get_json(&url).await?;
        let metadata: CoreProviderMetadata = serde_json::from_slice(&body).map_err(|e| {
            IdentityError::Unexpected(anyhow::anyhow!("{url} is not a discovery document: {e}"))
        })?;
        let issuer = metadata.issuer().as_str();
        if !issuer_spellings(&self.config.issuer)
            .iter()
            .any(|i| i == issuer)
        {
            return Err(IdentityError::Unexpected(anyhow::anyhow!(
                "{url} names the issuer {issuer}, not {}",
                self.config.issuer
            )));
        }
        let jwks = self.fetch_jwks(&metadata).await?;
        tracing::info!(provider = %self.config.name, issuer, keys = jwks.keys().len(), "OpenID provider discovered");
        Ok(metadata.set_jwks(jwks))
    }

    async fn fetch_jwks(
        &self,
        metadata: &CoreProviderMetadata,
    ) -> Result<CoreJsonWebKeySet, IdentityError> {
        CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), &self.http)
            .await
            .map_err(discovery_error)
    }

    /// Fetches the key set again after a token named a key it lacks, unless that was done
    /// less than the refetch interval ago. Whether new keys were fetched.
    async fn refetch_jwks(&self, stale: &CoreProviderMetadata) -> Result<bool, IdentityError> {
        {
            let mut last = self
                .last_refetch
                .lock()
                .map_err(|_| IdentityError::Unexpected(anyhow::anyhow!("poisoned lock")))?;
            if last.is_some_and(|at| at.elapsed() < self.refetch_interval) {
                return Ok(false);
            }
            *last = Some(Instant::now());
        }
        let jwks = self.fetch_jwks(stale).await?;
        tracing::info!(provider = %self.config.name, keys = jwks.keys().len(), "OpenID provider keys refetched");
        let mut cached = self.metadata.lock().await;
        *cached = Some(Arc::new(stale.clone().set_jwks(jwks)));
        Ok(true)
    }

    fn client(
        &self,
        metadata: &CoreProviderMetadata,
        redirect_uri: &str,
    ) -> Result<Client, IdentityError> {
        let redirect = RedirectUrl::new(redirect_uri.to_owned()).map_err(|e| {
            IdentityError::Unexpected(anyhow::anyhow!("redirect URI {redirect_uri}: {e}"))
        })?;
        let client = Client::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            self.config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect);
        // Basic is the default (RFC 6749); a provider that offers only the form gets the form.
        let methods = metadata.token_endpoint_auth_methods_supported();
        let post_only = methods.is_some_and(|m| {
            m.contains(&CoreClientAuthMethod::ClientSecretPost)
                && !m.contains(&CoreClientAuthMethod::ClientSecretBasic)
        });
        Ok(if post_only {
            client.set_auth_type(AuthType::RequestBody)
        } else {
            client
        })
    }

    /// Verifies the ID token with the keys of `metadata`; `Ok(None)` when its key is not
    /// among them.
    fn verify_id_token(
        &self,
        client: &Client,
        metadata: &CoreProviderMetadata,
        answer: &TokenAnswer,
        nonce: &str,
    ) -> Result<Option<VerifiedIdentity>, IdentityError> {
        let id_token = answer
            .id_token()
            .ok_or_else(|| IdentityError::InvalidToken("no ID token in the answer".into()))?;
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs(asymmetric_algs(metadata));
        match id_token.claims(&verifier, &Nonce::new(nonce.to_owned())) {
            Ok(claims) => Ok(Some(self.identity(claims))),
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => Ok(None),
            Err(e) => Err(IdentityError::InvalidToken(e.to_string())),
        }
    }

    fn identity(&self, claims: &IdTokenClaims<OtherClaims, CoreGenderClaim>) -> VerifiedIdentity {
        let email = claims
            .email()
            .filter(|_| claims.email_verified() != Some(false))
            .map(|e| e.as_str().to_owned());
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned())
            .or_else(|| claims.preferred_username().map(|u| u.as_str().to_owned()));
        VerifiedIdentity {
            issuer: claims.issuer().as_str().to_owned(),
            subject: claims.subject().as_str().to_owned(),
            email,
            name,
            groups: claims::groups(
                &claims.additional_claims().claims,
                &self.config.groups_claim,
            ),
            granted: Vec::new(),
        }
    }
}

#[async_trait]
impl IdentityProvider for OidcProvider {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn begin(
        &self,
        redirect_uri: &str,
        return_to: Option<String>,
    ) -> Result<LoginStart, IdentityError> {
        let metadata = self.metadata().await?;
        let client = self.client(&metadata, redirect_uri)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let scopes = self
            .config
            .scopes
            .iter()
            .filter(|s| *s != "openid")
            .map(|s| Scope::new(s.clone()));
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(scopes)
            .set_pkce_challenge(challenge)
            .url();
        Ok(LoginStart {
            authorize_url: url.into(),
            pending: PendingLogin {
                provider: self.config.name.clone(),
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
                redirect_uri: redirect_uri.to_owned(),
                return_to,
            },
        })
    }

    async fn finish(
        &self,
        pending: &PendingLogin,
        code: &str,
        state: &str,
    ) -> Result<VerifiedIdentity, IdentityError> {
        let same_state: bool = pending.state.as_bytes().ct_eq(state.as_bytes()).into();
        if !same_state || pending.state.is_empty() || pending.provider != self.config.name {
            return Err(IdentityError::StateMismatch);
        }
        let metadata = self.metadata().await?;
        let client = self.client(&metadata, &pending.redirect_uri)?;
        let answer = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| IdentityError::Unexpected(e.into()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        if let Some(identity) = self.verify_id_token(&client, &metadata, &answer, &pending.nonce)? {
            return Ok(identity);
        }
        // Signed with a key we do not have: the provider may have rotated its keys.
        if self.refetch_jwks(&metadata).await? {
            let metadata = self.metadata().await?;
            let client = self.client(&metadata, &pending.redirect_uri)?;
            if let Some(identity) =
                self.verify_id_token(&client, &metadata, &answer, &pending.nonce)?
            {
                return Ok(identity);
            }
        }
        Err(IdentityError::InvalidToken(
            "the ID token is signed with a key the provider does not publish".into(),
        ))
    }
}

/// The signing algorithms the provider offers for ID tokens, without the shared-secret ones
/// and `none`: an ID token must be signed with one of the provider's published keys.
fn asymmetric_algs(metadata: &CoreProviderMetadata) -> HashSet<CoreJwsSigningAlgorithm> {
    metadata
        .id_token_signing_alg_values_supported()
        .iter()
        .filter(|alg| {
            !matches!(
                alg,
                CoreJwsSigningAlgorithm::HmacSha256
                    | CoreJwsSigningAlgorithm::HmacSha384
                    | CoreJwsSigningAlgorithm::HmacSha512
                    | CoreJwsSigningAlgorithm::None
            )
        })
        .cloned()
        .collect()
}

fn discovery_error(e: DiscoveryError<HttpError>) -> IdentityError {
    match e {
        DiscoveryError::Request(e) => e.into(),
        DiscoveryError::Response(status, _, _) => {
            IdentityError::Unavailable(format!("the key set answered {status}"))
        }
        other => IdentityError::Unexpected(anyhow::anyhow!("the key set: {other}")),
    }
}

fn token_error(e: RequestTokenError<HttpError, TokenError>) -> IdentityError {
    match e {
        RequestTokenError::Request(e) => e.into(),
        RequestTokenError::ServerResponse(answer) => match answer.error() {
            // Ferry's own client settings are wrong: an operator's problem, not the user's.
            CoreErrorResponseType::InvalidClient | CoreErrorResponseType::UnauthorizedClient => {
                IdentityError::Unexpected(anyhow::anyhow!(
                    "the token endpoint refused Ferry's client: {answer}"
                ))
            }
            _ => IdentityError::Refused(answer.to_string()),
        },
        RequestTokenError::Parse(e, _) => {
            IdentityError::InvalidToken(format!("the token answer cannot be read: {e}"))
        }
        RequestTokenError::Other(e) => {
            IdentityError::Unavailable(format!("the token endpoint answered oddly: {e}"))
        }
    }
}
