//! `AccessTokenVerifier` for IdP access tokens in JWT form (`jsonwebtoken` on aws-lc-rs):
//! keys from the issuer's JWKS (fetched at first use, refetched on an unknown `kid` at most
//! once a minute). Which algorithm may verify a token is decided by the key (its `kty`, `crv`
//! and `alg`), never by the token's header: `none` and HMAC are refused outright, and an RSA
//! key verifies only RS*/PS*, an EC key only its curve's ES*, so a token "signed" with HS256
//! using the public key as the secret fails. `iss`, `aud`, `exp` and `nbf` are checked with
//! 30 seconds of leeway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferry_application::ports::{AccessTokenVerifier, IdentityError, VerifiedIdentity};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};
use tokio::sync::Mutex as AsyncMutex;

use crate::claims;
use crate::http::{IdpHttp, discovery_url, issuer_spellings};
use crate::oidc::JWKS_REFETCH_INTERVAL;

/// Clock difference tolerated on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// What access tokens must be.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Their `iss` (and where the key set is discovered when `jwks_uri` is not given).
    pub issuer: url::Url,
    /// Their `aud` must contain this (the API's audience, not a client id: an ID token is not
    /// an access token).
    pub audience: String,
    /// The key set; `None` to take it from the issuer's discovery document.
    pub jwks_uri: Option<url::Url>,
    /// The claim holding the user's groups.
    pub groups_claim: String,
}

impl JwtConfig {
    /// Keys from discovery, groups in `groups`.
    pub fn new(issuer: url::Url, audience: impl Into<String>) -> Self {
        Self {
            issuer,
            audience: audience.into(),
            jwks_uri: None,
            groups_claim: "groups".into(),
        }
    }
}

/// One key of the set, with the algorithms it may verify.
struct Key {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

#[derive(Default)]
struct KeyCache {
    jwks_uri: Option<String>,
    keys: Option<Arc<Vec<Key>>>,
}

/// Verifies one issuer's access tokens.
pub struct JwtVerifier {
    config: JwtConfig,
    issuers: Vec<String>,
    http: IdpHttp,
    cache: AsyncMutex<KeyCache>,
    /// When an unknown key id last made the key set be refetched.
    last_refetch: Mutex<Option<Instant>>,
    refetch_interval: Duration,
    /// Tokens verified lately (by SHA-256), until their `exp` or [`VERIFIED_FOR`]: a
    /// machine client sends the same token with every request, and its signature, issuer,
    /// audience and expiry do not change. (The user behind it is looked up every time.)
    verified: Mutex<HashMap<[u8; 32], Verified>>,
}

/// A token verified lately: until when it is trusted, the key that signed it (trusted only
/// while the provider still publishes that key), and whom it names.
#[derive(Clone)]
struct Verified {
    until: Instant,
    kid: Option<String>,
    identity: VerifiedIdentity,
}

/// The longest a verified token is trusted without checking its signature again (a key
/// withdrawn from the provider's set stops its tokens within this).
const VERIFIED_FOR: Duration = Duration::from_secs(300);
/// Verified tokens remembered at most (the map is emptied when it grows past this).
const VERIFIED_MAX: usize = 10_000;

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Does no I/O: the keys are fetched at the first token.
    ///
    /// # Errors
    /// `Unexpected` when the HTTP client cannot be built.
    pub fn new(config: JwtConfig) -> Result<Self, IdentityError> {
        // The provider the crate features name; installing it keeps a second crypto feature
        // enabled elsewhere in the build from turning every verification into a panic.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        Ok(Self {
            issuers: issuer_spellings(&config.issuer),
            cache: AsyncMutex::new(KeyCache {
                jwks_uri: config.jwks_uri.as_ref().map(|u| u.to_string()),
                keys: None,
            }),
            config,
            http: IdpHttp::new()?,
            last_refetch: Mutex::new(None),
            refetch_interval: JWKS_REFETCH_INTERVAL,
            verified: Mutex::default(),
        })
    }

    /// How often an unknown key id may make the key set be refetched (default a minute).
    #[must_use]
    pub fn with_refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// The cached keys, fetched first if there are none yet.
    async fn keys(&self) -> Result<Arc<Vec<Key>>, IdentityError> {
        let mut cache = self.cache.lock().await;
        if let Some(keys) = &cache.keys {
            return Ok(keys.clone());
        }
        self.load(&mut cache).await
    }

    async fn load(&self, cache: &mut KeyCache) -> Result<Arc<Vec<Key>>, IdentityError> {
        let jwks_uri = match &cache.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let uri = self.discover_jwks_uri().await?;
                cache.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let body = self.http.get_json(&jwks_uri).await?;
        let keys = Arc::new(parse_jwks(&body).map_err(|e| {
            IdentityError::Unavailable(format!("{jwks_uri} is not a key set: {e}"))
        })?);
        tracing::debug!(jwks_uri, keys = keys.len(), "access token keys fetched");
        cache.keys = Some(keys.clone());
        Ok(keys)
    }

    async fn discover_jwks_uri(&self) -> Result<String, IdentityError> {
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = discovery_url(&self.config.issuer);
        let body = self.http.get_json(&url).await?;
        let doc: Discovery = serde_json::from_slice(&body).map_err(|e| {
            IdentityError::Unexpected(anyhow::anyhow!("{url} is not a discovery document: {e}"))
        })?;
        if !self.issuers.contains(&doc.issuer) {
            return Err(IdentityError::Unexpected(anyhow::anyhow!(
                "{url} names the issuer {}, not {}",
                doc.issuer,
                self.config.issuer
            )));
        }
        Ok(doc.jwks_uri)
    }

    /// Fetches the key set again, unless an unknown key id did so less than the refetch
    /// interval ago; the new keys, or `None` when it was too soon.
    async fn refetch(&self) -> Result<Option<Arc<Vec<Key>>>, IdentityError> {
        {
            let mut last = self
                .last_refetch
                .lock()
                .map_err(|_| IdentityError::Unexpected(anyhow::anyhow!("poisoned lock")))?;
            if last.is_some_and(|at| at.elapsed() < self.refetch_interval) {
                return Ok(None);
            }
            *last = Some(Instant::now());
        }
        let mut cache = self.cache.lock().await;
        self.load(&mut cache).await.map(Some)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = LEEWAY.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&self.issuers);
        v.set_audience(&[&self.config.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v
    }

    fn identity(&self, claims: &Map<String, Value>) -> VerifiedIdentity {
        let verified = claims.get("email_verified").and_then(Value::as_bool) != Some(false);
        VerifiedIdentity {
            issuer: claims::string(claims, "iss").unwrap_or_default(),
            subject: claims::string(claims, "sub").unwrap_or_default(),
            email: claims::string(claims, "email").filter(|_| verified),
            name: claims::string(claims, "name")
                .or_else(|| claims::string(claims, "preferred_username")),
            groups: claims::groups(claims, &self.config.groups_claim),
            granted: claims::granted(claims),
        }
    }
}

#[async_trait]
impl AccessTokenVerifier for JwtVerifier {
    fn accepts(&self, token: &str) -> bool {
        let parts: Vec<&str> = token.split('.').collect();
        parts.len() == 3
            && parts[..2].iter().all(|p| !p.is_empty())
            && parts.iter().all(|p| {
                p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    }

    async fn verify(&self, token: &str) -> Result<VerifiedIdentity, IdentityError> {
        if !self.accepts(token) {
            return Err(IdentityError::InvalidToken("not a JWT".into()));
        }
        let digest: [u8; 32] =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
                .as_ref()
                .try_into()
                .unwrap_or([0; 32]);
        let known = self.verified().get(&digest).cloned();
        if let Some(v) = known.filter(|v| Instant::now() < v.until)
            && self.keys().await?.iter().any(|k| k.kid == v.kid)
        {
            return Ok(v.identity);
        }
        // The header only says which key and algorithm the token claims; both are checked
        // against the key set below.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| IdentityError::InvalidToken(format!("header: {e}")))?;
        if header.alg.family() == AlgorithmFamily::Hmac {
            return Err(IdentityError::InvalidToken(format!(
                "{:?} (a shared secret) is never accepted",
                header.alg
            )));
        }
        let mut keys = self.keys().await?;
        let known = |keys: &[Key]| match &header.kid {
            Some(kid) => keys.iter().any(|k| k.kid.as_ref() == Some(kid)),
            None => !keys.is_empty(),
        };
        if !known(&keys) {
            match self.refetch().await? {
                Some(fresh) if known(&fresh) => keys = fresh,
                _ => return Err(IdentityError::InvalidToken("unknown signing key".into())),
            }
        }
        let candidates: Vec<&Key> = keys
            .iter()
            .filter(|k| header.kid.is_none() || k.kid == header.kid)
            .filter(|k| k.algorithms.contains(&header.alg))
            .collect();
        if candidates.is_empty() {
            return Err(IdentityError::InvalidToken(format!(
                "{:?} is not an algorithm of the signing key",
                header.alg
            )));
        }
        let validation = self.validation(header.alg);
        let mut failure = None;
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    let identity = self.identity(&data.claims);
                    self.remember(digest, key.kid.clone(), &data.claims, &identity);
                    return Ok(identity);
                }
                Err(e) => failure = Some(e),
            }
        }
        Err(IdentityError::InvalidToken(
            failure.map_or_else(String::new, |e| reason(&e)),
        ))
    }
}

impl JwtVerifier {
    fn verified(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Verified>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Trusts a verified token until its `exp` (at most [`VERIFIED_FOR`] from now).
    fn remember(
        &self,
        digest: [u8; 32],
        kid: Option<String>,
        claims: &Map<String, Value>,
        identity: &VerifiedIdentity,
    ) {
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let Some(exp) = claims.get("exp").and_then(Value::as_u64) else {
            return;
        };
        let left = Duration::from_secs(exp.saturating_sub(now_unix)).min(VERIFIED_FOR);
        if left.is_zero() {
            return;
        }
        let mut verified = self.verified();
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(
            digest,
            Verified {
                until: Instant::now() + left,
                kid,
                identity: identity.clone(),
            },
        );
    }
}

/// Why `jsonwebtoken` refused a token, in words.
fn reason(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => "the signature does not match".into(),
        ErrorKind::ExpiredSignature => "expired".into(),
        ErrorKind::ImmatureSignature => "not valid yet (nbf)".into(),
        ErrorKind::InvalidAudience => "not for this audience".into(),
        ErrorKind::InvalidIssuer => "from another issuer".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("no {claim} claim"),
        _ => e.to_string(),
    }
}

/// The signing keys of a JWKS that Ferry can use; keys of other kinds (HMAC secrets,
/// encryption keys, curves it does not support, malformed entries) are skipped.
fn parse_jwks(body: &[u8]) -> Result<Vec<Key>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Jwks {
        keys: Vec<Value>,
    }
    let jwks: Jwks = serde_json::from_slice(body)?;
    Ok(jwks
        .keys
        .into_iter()
        .filter_map(|value| {
            let jwk: Jwk = serde_json::from_value(value).ok()?;
            let algorithms = algorithms(&jwk);
            if algorithms.is_empty() {
                return None;
            }
            Some(Key {
                kid: jwk.common.key_id.clone(),
                key: DecodingKey::from_jwk(&jwk).ok()?,
                algorithms,
            })
        })
        .collect())
}

/// The algorithms a key may verify: by its type (and curve), narrowed to its `alg` when it
/// names one. Empty for keys that are not for signatures or not asymmetric.
fn algorithms(jwk: &Jwk) -> Vec<Algorithm> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Vec::new();
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Vec::new();
    }
    let by_type: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => &[],
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            &[Algorithm::EdDSA]
        }
        // Shared secrets (`oct`) and other curves: never.
        _ => &[],
    };
    match jwk.common.key_algorithm {
        None => by_type.to_vec(),
        Some(named) => match key_algorithm(named) {
            Some(alg) if by_type.contains(&alg) => vec![alg],
            _ => Vec::new(),
        },
    }
}

fn key_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const RSA_N: &str = "v0NyVXyrT2vk3IsQ7UpLzmr7lu3usFqCc5ZRDCLwz4FiZmN5s7VsfKhKfOJhEcGg1hbjLmPA_jNCeclABxUSoGPjz1PopWaCXnhwIs8Ch4i9Lg3WBZQ1_DY_4gOjdBmLLXYftX5L73RmUgO6S5sb3sVCLMIDkPd3j8trQWKCrejUgu74q86GGbdE0wvSQl96VgUFEjAkNMDmiMG1Li2NxeBdidijXK9jP0JKqvVeNN0iB6fZa9070SE9equqMUfxqnSr-Gu9j9vYQIdB8PJJsVcd6253o1tL7bLxf2hI_IbcVHg-uLCgCydy4BTybElnbozLu5nu3Tto_Ds_vmqFIQ";

    fn algs(json: String) -> Vec<Algorithm> {
        parse_jwks(format!(r#"{{"keys":[{json}]}}"#).as_bytes())
            .unwrap()
            .into_iter()
            .flat_map(|k| k.algorithms)
            .collect()
    }

    #[test]
    fn the_key_decides_the_algorithm() {
        let rsa = |extra: &str| format!(r#"{{"kty":"RSA","e":"AQAB","n":"{RSA_N}"{extra}}}"#);
        assert_eq!(algs(rsa(r#","alg":"RS256""#)), [Algorithm::RS256]);
        assert_eq!(algs(rsa("")).len(), 6, "any RSA algorithm, none other");
        assert!(
            algs(rsa(""))
                .iter()
                .all(|a| a.family() == AlgorithmFamily::Rsa)
        );
        // A key that names an algorithm of another type, or is for encryption, verifies nothing.
        assert!(algs(rsa(r#","alg":"HS256""#)).is_empty());
        assert!(algs(rsa(r#","alg":"ES256""#)).is_empty());
        assert!(algs(rsa(r#","use":"enc""#)).is_empty());
        assert!(algs(rsa(r#","key_ops":["encrypt"]"#)).is_empty());
        // Shared secrets are never keys.
        assert!(algs(r#"{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}"#.into()).is_empty());
        // Malformed entries are skipped, not fatal.
        assert!(algs(r#"{"kty":"RSA"}"#.into()).is_empty());
        assert!(algs(r#"{"kty":"nonsense"}"#.into()).is_empty());
    }

    #[test]
    fn a_document_without_keys_is_an_error() {
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"<html>").is_err());
        assert!(parse_jwks(br#"{"keys":[]}"#).unwrap().is_empty());
    }
}
