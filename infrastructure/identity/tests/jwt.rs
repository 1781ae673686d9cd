//! `JwtVerifier` against access tokens of a real OpenID Connect provider on loopback, and
//! against tokens it did not issue: re-signed with its own key but with wrong claims, forged
//! with other keys, `alg: none`, HS256 keyed with its public key, garbage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{issuer, server};
use ferry_application::ports::{AccessTokenVerifier, IdentityError};
use ferry_identity::{JwtConfig, JwtVerifier};
use ferry_testkit::oidc::{ADMIN_GROUP, ALICE, CLIENT_ID, OidcServer, RESOURCE};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

type Claims = serde_json::Map<String, Value>;
type Change = Box<dyn FnOnce(&mut Claims)>;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn verifier(server: &OidcServer) -> JwtVerifier {
    JwtVerifier::new(JwtConfig::new(issuer(server), RESOURCE)).unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// The claims of a token, unverified.
fn claims(token: &str) -> Claims {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

/// `claims`, changed by `change`, signed with the provider's own current key.
fn resign(
    server: &OidcServer,
    claims: &Claims,
    alg: Algorithm,
    change: impl FnOnce(&mut Claims),
) -> String {
    let mut claims = claims.clone();
    change(&mut claims);
    let key = server.signing_key();
    let mut header = Header::new(alg);
    header.kid = Some(key.kid);
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_der(&key.pkcs1_der)).unwrap()
}

/// A token with this header and claims, and `signature` over them.
fn assemble(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let signing_input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let signature = sign(signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(signature))
}

fn assert_invalid(result: Result<impl std::fmt::Debug, IdentityError>, what: &str) {
    assert!(
        matches!(result, Err(IdentityError::InvalidToken(_))),
        "{what}: {result:?}"
    );
}

#[tokio::test]
async fn access_tokens_of_the_provider_are_verified() {
    let Some(server) = server() else { return };
    let verifier = verifier(&server);
    let token = server.access_token(ALICE).await;
    assert!(verifier.accepts(&token));
    let alice = verifier.verify(&token).await.unwrap();
    assert_eq!(alice.issuer, server.issuer());
    assert_eq!(alice.subject, ALICE);
    assert_eq!(alice.email.as_deref(), Some("alice@example.test"));
    assert_eq!(alice.name.as_deref(), Some("Alice Example"));
    assert_eq!(alice.groups, [ADMIN_GROUP, "staff"]);

    // A machine client's own token (client credentials): the client is the subject.
    let machine = verifier
        .verify(&server.client_credentials_token().await)
        .await
        .unwrap();
    assert_eq!(machine.subject, CLIENT_ID);
    assert!(machine.groups.is_empty());

    // The key set named in the configuration instead of discovered.
    let mut config = JwtConfig::new(issuer(&server), RESOURCE);
    config.jwks_uri = Some(server.jwks_uri().parse().unwrap());
    let named = JwtVerifier::new(config).unwrap();
    assert_eq!(named.verify(&token).await.unwrap(), alice);
}

#[tokio::test]
async fn tokens_with_wrong_claims_are_refused_though_the_signature_is_good() {
    let Some(server) = server() else { return };
    let verifier = verifier(&server);
    let real = claims(&server.access_token(ALICE).await);
    let rs256 = Algorithm::RS256;

    // Re-signing alone changes nothing: what fails below fails for the change.
    let same = resign(&server, &real, rs256, |_| {});
    assert_eq!(verifier.verify(&same).await.unwrap().subject, ALICE);
    let late = resign(&server, &real, rs256, |c| {
        c.insert("exp".into(), json!(now() - 10));
    });
    verifier.verify(&late).await.expect("within the leeway");

    let wrong: Vec<(&str, Change)> = vec![
        (
            "expired",
            Box::new(|c| drop(c.insert("exp".into(), json!(now() - 120)))),
        ),
        ("no exp", Box::new(|c| drop(c.remove("exp")))),
        (
            "nbf ahead",
            Box::new(|c| drop(c.insert("nbf".into(), json!(now() + 300)))),
        ),
        (
            "other audience",
            Box::new(|c| drop(c.insert("aud".into(), json!("urn:other")))),
        ),
        ("no audience", Box::new(|c| drop(c.remove("aud")))),
        (
            "the client as audience",
            Box::new(|c| drop(c.insert("aud".into(), json!(CLIENT_ID)))),
        ),
        (
            "other issuer",
            Box::new(|c| drop(c.insert("iss".into(), json!("http://127.0.0.1:1")))),
        ),
        ("no issuer", Box::new(|c| drop(c.remove("iss")))),
        ("no subject", Box::new(|c| drop(c.remove("sub")))),
    ];
    for (what, change) in wrong {
        assert_invalid(
            verifier
                .verify(&resign(&server, &real, rs256, change))
                .await,
            what,
        );
    }

    // The provider's key with an algorithm its JWKS does not name for it (`alg: RS256`).
    let pss = resign(&server, &real, Algorithm::PS256, |_| {});
    assert_invalid(verifier.verify(&pss).await, "PS256 with an RS256 key");

    // Claims changed after signing.
    let mut parts: Vec<String> = same.split('.').map(str::to_owned).collect();
    let mut changed = real.clone();
    changed.insert("sub".into(), json!("bob"));
    parts[1] = B64.encode(Value::Object(changed).to_string());
    assert_invalid(verifier.verify(&parts.join(".")).await, "tampered claims");
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let Some(server) = server() else { return };
    let verifier = verifier(&server);
    let real = Value::Object(claims(&server.access_token(ALICE).await));
    let kid = server.signing_key().kid;
    let rng = aws_lc_rs::rand::SystemRandom::new();

    // Signed with another RSA key under the provider's key id.
    let stranger = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
    let forged = assemble(&header, &real, |input| {
        let mut sig = vec![0; stranger.public_modulus_len()];
        stranger
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &rng,
                input,
                &mut sig,
            )
            .unwrap();
        sig
    });
    assert_invalid(verifier.verify(&forged).await, "another RSA key");

    // ES256 under the provider's (RSA) key id, signed with an EC key of the forger's.
    let ec_alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(ec_alg, &rng).unwrap();
    let ec = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(ec_alg, pkcs8.as_ref()).unwrap();
    let header = json!({"alg": "ES256", "kid": kid});
    let forged = assemble(&header, &real, |input| {
        ec.sign(&rng, input).unwrap().as_ref().to_vec()
    });
    assert_invalid(verifier.verify(&forged).await, "ES256 with an RSA key id");
    let header = json!({"alg": "ES256"});
    let forged = assemble(&header, &real, |input| {
        ec.sign(&rng, input).unwrap().as_ref().to_vec()
    });
    assert_invalid(verifier.verify(&forged).await, "ES256 without a key id");

    // A key id the provider does not publish.
    let header = json!({"alg": "RS256", "kid": "not-a-key-of-the-provider"});
    let forged = assemble(&header, &real, |_| vec![1; 256]);
    assert_invalid(verifier.verify(&forged).await, "unknown key id");

    // `alg: none`, with and without a signature.
    for header in [
        json!({"alg": "none", "kid": kid}),
        json!({"alg": "none"}),
        json!({"alg": "None"}),
    ] {
        let unsigned = assemble(&header, &real, |_| Vec::new());
        assert_invalid(verifier.verify(&unsigned).await, "alg none");
        let signed = assemble(&header, &real, |_| b"sig".to_vec());
        assert_invalid(verifier.verify(&signed).await, "alg none with a signature");
    }
}

#[tokio::test]
async fn hs256_keyed_with_the_providers_public_key_is_refused() {
    let Some(server) = server() else { return };
    let verifier = verifier(&server);
    let real = Value::Object(claims(&server.access_token(ALICE).await));
    let jwks: Value = reqwest::get(server.jwks_uri())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = &jwks["keys"][0];
    let kid = jwk["kid"].as_str().unwrap();
    let n = B64.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = B64.decode(jwk["e"].as_str().unwrap()).unwrap();
    let der = {
        use aws_lc_rs::encoding::AsDer as _;
        let components = aws_lc_rs::rsa::PublicKeyComponents { n: &n, e: &e };
        components.as_der().unwrap().as_ref().to_vec()
    };
    // Every form an attacker might hope the verifier uses as the HMAC secret.
    let secrets = [
        n.clone(),
        der.clone(),
        jwk.to_string().into_bytes(),
        jwk["n"].as_str().unwrap().as_bytes().to_vec(),
    ];
    for (i, secret) in secrets.iter().enumerate() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            for kid in [Some(kid.to_owned()), None] {
                let mut header = Header::new(alg);
                header.kid = kid;
                let token = jsonwebtoken::encode(&header, &real, &EncodingKey::from_secret(secret))
                    .unwrap();
                assert_invalid(
                    verifier.verify(&token).await,
                    &format!("{alg:?} secret {i}"),
                );
            }
        }
    }
}

#[tokio::test]
async fn rotated_keys_are_fetched_once_a_minute_at_most() {
    let Some(mut server) = server() else { return };
    let verifier = verifier(&server);
    let old = server.access_token(ALICE).await;
    verifier.verify(&old).await.unwrap();

    server.rotate_keys();
    let new = server.access_token(ALICE).await;
    assert_eq!(verifier.verify(&new).await.unwrap().subject, ALICE);
    // The old key is no longer published.
    assert_invalid(verifier.verify(&old).await, "a token of the retired key");

    server.rotate_keys();
    let newer = server.access_token(ALICE).await;
    assert_invalid(
        verifier.verify(&newer).await,
        "second rotation within the minute",
    );
    let impatient = JwtVerifier::new(JwtConfig::new(issuer(&server), RESOURCE))
        .unwrap()
        .with_refetch_interval(Duration::ZERO);
    impatient.verify(&newer).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_provider_is_unavailable_not_invalid() {
    let Some(mut server) = server() else { return };
    let token = server.access_token(ALICE).await;
    server.stop();
    let verifier = verifier(&server);
    let err = verifier.verify(&token).await;
    assert!(matches!(err, Err(IdentityError::Unavailable(_))), "{err:?}");
    server.restart();
    assert_eq!(verifier.verify(&token).await.unwrap().subject, ALICE);
}

#[tokio::test]
async fn tokens_of_another_issuer_name_are_refused() {
    let Some(server) = server() else { return };
    let token = server.access_token(ALICE).await;
    let localhost: url::Url = server
        .issuer()
        .replace("127.0.0.1", "localhost")
        .parse()
        .unwrap();
    // Discovery names another issuer: a configuration error, not the token's fault.
    let discovered = JwtVerifier::new(JwtConfig::new(localhost.clone(), RESOURCE)).unwrap();
    let err = discovered.verify(&token).await;
    assert!(matches!(err, Err(IdentityError::Unexpected(_))), "{err:?}");
    // The provider's own keys, but the tokens' `iss` is not the configured one.
    let mut config = JwtConfig::new(localhost, RESOURCE);
    config.jwks_uri = Some(server.jwks_uri().parse().unwrap());
    let named = JwtVerifier::new(config).unwrap();
    assert_invalid(named.verify(&token).await, "another issuer name");
}

#[test]
fn accepts_only_three_base64url_parts() {
    let config = JwtConfig::new("http://127.0.0.1:1".parse().unwrap(), RESOURCE);
    let verifier = JwtVerifier::new(config).unwrap();
    assert!(verifier.accepts("aGVhZA.Ym9keQ.c2ln"));
    assert!(verifier.accepts("aGVhZA.Ym9keQ."));
    for token in [
        "",
        "ferry_pat_0123_secret",
        "a.b",
        "a.b.c.d",
        ".b.c",
        "a..c",
        "a.b+.c",
        "a.b/c.d",
        "a.b.c=",
        "a b.c.d",
    ] {
        assert!(!verifier.accepts(token), "{token:?}");
    }
}

#[test]
fn garbage_never_panics_and_never_passes() {
    use proptest::prelude::*;

    let Some(server) = server() else { return };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let verifier = verifier(&server);
    let kid = server.signing_key().kid;
    let part = "[A-Za-z0-9_-]{0,60}";
    let json_part = prop_oneof![
        any::<String>().prop_map(|s| B64.encode(s)),
        (
            prop_oneof![
                Just("none".to_owned()),
                Just("RS256".to_owned()),
                Just("HS256".to_owned()),
                Just("ES256".to_owned()),
                Just("EdDSA".to_owned()),
                ".{0,8}"
            ],
            prop_oneof![Just(kid.clone()), ".{0,12}"]
        )
            .prop_map(|(alg, kid)| B64.encode(json!({"alg": alg, "kid": kid}).to_string())),
    ];
    let tokens = prop_oneof![
        any::<String>(),
        (part, part, part).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        (json_part, part, part).prop_map(|(h, b, c)| format!("{h}.{b}.{c}")),
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    });
    runner
        .run(&tokens, |token| {
            let result = runtime.block_on(verifier.verify(&token));
            prop_assert!(
                matches!(result, Err(IdentityError::InvalidToken(_))),
                "{token:?}: {result:?}"
            );
            Ok(())
        })
        .unwrap();
}
