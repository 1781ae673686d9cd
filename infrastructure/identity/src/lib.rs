//! Proving who someone is (ADR 0006): the adapters behind `ferry_application`'s identity
//! ports. [`OidcProvider`] signs users in with an OpenID Connect provider (code + PKCE);
//! [`JwtVerifier`] checks the provider's access tokens that machine clients present;
//! [`Argon2Hasher`] hashes local passwords; [`JwtLinkSigner`] signs and verifies the short-lived
//! links to finished files. They do the protocol and the cryptography; which
//! user an identity is, is the use cases' business.
//!
//! Every request to a provider goes through Ferry's reqwest (rustls, no redirects followed,
//! bounded time and size); an unreachable provider is `IdentityError::Unavailable`, and
//! nothing is fetched before the first use, so Ferry starts while its provider is down.

mod claims;
mod http;
mod jwt;
mod links;
mod oidc;
mod password;

pub use jwt::{JwtConfig, JwtVerifier, LEEWAY};
pub use links::{JwtLinkSigner, LINK_AUDIENCE};
pub use oidc::{JWKS_REFETCH_INTERVAL, OidcConfig, OidcProvider};
pub use password::{Argon2Hasher, Argon2Params};
