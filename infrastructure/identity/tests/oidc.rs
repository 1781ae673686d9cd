//! `OidcProvider` against a real OpenID Connect provider (npm `oidc-provider`) on loopback:
//! the whole code + PKCE login through its login forms, every check `finish` makes, discovery
//! while the provider is down, and key rotation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{REDIRECT, callback, provider, server, sign_in};
use ferry_application::ports::{IdentityError, IdentityProvider};
use ferry_testkit::oidc::{ADMIN_GROUP, ALICE, BOB};

#[tokio::test]
async fn alice_signs_in_with_code_and_pkce() {
    let Some(server) = server() else { return };
    let provider = provider(&server);
    assert_eq!(provider.name(), "test");

    let start = provider
        .begin(REDIRECT, Some("/jobs".into()))
        .await
        .unwrap();
    let url = url::Url::parse(&start.authorize_url).unwrap();
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert!(
        start
            .authorize_url
            .starts_with(&format!("{}/auth?", server.issuer()))
    );
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["redirect_uri"], REDIRECT);
    assert_eq!(query["state"], start.pending.state);
    assert_eq!(query["nonce"], start.pending.nonce);
    assert_eq!(query["scope"], "openid email profile");
    assert!(!query.contains_key("code_verifier"));
    assert_ne!(query["code_challenge"], start.pending.pkce_verifier);
    assert_eq!(start.pending.return_to.as_deref(), Some("/jobs"));
    assert_eq!(start.pending.provider, "test");

    let (code, state) = callback(&start, ALICE).await;
    let alice = provider
        .finish(&start.pending, &code, &state)
        .await
        .unwrap();
    assert_eq!(alice.issuer, server.issuer());
    assert_eq!(alice.subject, ALICE);
    assert_eq!(alice.email.as_deref(), Some("alice@example.test"));
    assert_eq!(alice.name.as_deref(), Some("Alice Example"));
    assert_eq!(alice.groups, [ADMIN_GROUP, "staff"]);

    let bob = sign_in(&provider, BOB).await.unwrap();
    assert_eq!(bob.subject, BOB);
    assert_eq!(bob.groups, ["staff"]);
}

#[tokio::test]
async fn a_wrong_state_is_refused_before_the_code_is_spent() {
    let Some(server) = server() else { return };
    let provider = provider(&server);
    let start = provider.begin(REDIRECT, None).await.unwrap();
    let (code, state) = callback(&start, ALICE).await;

    for wrong in ["", "x", &state[..state.len() - 1], &format!("{state}x")] {
        let err = provider.finish(&start.pending, &code, wrong).await;
        assert!(
            matches!(err, Err(IdentityError::StateMismatch)),
            "{wrong:?}: {err:?}"
        );
    }
    // A login started at another provider does not finish here.
    let mut elsewhere = start.pending.clone();
    elsewhere.provider = "other".into();
    let err = provider.finish(&elsewhere, &code, &state).await;
    assert!(matches!(err, Err(IdentityError::StateMismatch)), "{err:?}");
    // An empty state in the pending login matches nothing, not even an empty one.
    let mut empty = start.pending.clone();
    empty.state = String::new();
    let err = provider.finish(&empty, &code, "").await;
    assert!(matches!(err, Err(IdentityError::StateMismatch)), "{err:?}");

    // None of them reached the provider: the code still works.
    let alice = provider
        .finish(&start.pending, &code, &state)
        .await
        .unwrap();
    assert_eq!(alice.subject, ALICE);
}

#[tokio::test]
async fn a_code_works_once() {
    let Some(server) = server() else { return };
    let provider = provider(&server);
    let start = provider.begin(REDIRECT, None).await.unwrap();
    let (code, state) = callback(&start, ALICE).await;
    provider
        .finish(&start.pending, &code, &state)
        .await
        .unwrap();
    let replay = provider.finish(&start.pending, &code, &state).await;
    assert!(
        matches!(&replay, Err(IdentityError::Refused(e)) if e.contains("invalid_grant")),
        "{replay:?}"
    );
    let long = "x".repeat(10_000);
    for hostile in [
        "made-up",
        "",
        "../../token",
        "a&grant_type=client_credentials",
        "%00\u{0}ü",
        &long,
    ] {
        let err = provider.finish(&start.pending, hostile, &state).await;
        assert!(
            matches!(err, Err(IdentityError::Refused(_))),
            "{hostile:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_provider_that_names_another_issuer_is_not_used() {
    let Some(server) = server() else { return };
    // The same server under another name: its discovery document names 127.0.0.1.
    let localhost = server.issuer().replace("127.0.0.1", "localhost");
    let provider = ferry_identity::OidcProvider::new(ferry_identity::OidcConfig::new(
        "test",
        localhost.parse().unwrap(),
        ferry_testkit::oidc::CLIENT_ID,
        Some(ferry_testkit::oidc::CLIENT_SECRET.into()),
    ))
    .unwrap();
    let err = provider.begin(REDIRECT, None).await;
    assert!(
        matches!(&err, Err(IdentityError::Unexpected(e)) if e.to_string().contains("issuer")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_tampered_pending_login_fails() {
    let Some(server) = server() else { return };
    let provider = provider(&server);

    // Another nonce: the ID token is not the one this login asked for.
    let start = provider.begin(REDIRECT, None).await.unwrap();
    let (code, state) = callback(&start, ALICE).await;
    let mut tampered = start.pending.clone();
    tampered.nonce = "another-nonce".into();
    let err = provider.finish(&tampered, &code, &state).await;
    assert!(
        matches!(&err, Err(IdentityError::InvalidToken(e)) if e.contains("nonce")),
        "{err:?}"
    );

    // Another PKCE verifier: the code is not exchanged.
    let start = provider.begin(REDIRECT, None).await.unwrap();
    let (code, state) = callback(&start, ALICE).await;
    let mut tampered = start.pending.clone();
    tampered.pkce_verifier = "a".repeat(43);
    let err = provider.finish(&tampered, &code, &state).await;
    assert!(
        matches!(&err, Err(IdentityError::Refused(e)) if e.contains("invalid_grant")),
        "{err:?}"
    );

    // Another redirect URI than the code was issued for.
    let start = provider.begin(REDIRECT, None).await.unwrap();
    let (code, state) = callback(&start, ALICE).await;
    let mut tampered = start.pending.clone();
    tampered.redirect_uri = format!("{REDIRECT}/elsewhere");
    let err = provider.finish(&tampered, &code, &state).await;
    assert!(matches!(err, Err(IdentityError::Refused(_))), "{err:?}");
}

#[tokio::test]
async fn an_unknown_user_is_not_signed_in() {
    let Some(server) = server() else { return };
    let provider = provider(&server);
    let start = provider.begin(REDIRECT, None).await.unwrap();
    let callback = ferry_testkit::oidc::login(&start.authorize_url, "mallory").await;
    let url = url::Url::parse(&callback).unwrap();
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert!(callback.starts_with(REDIRECT), "{callback}");
    assert_eq!(
        query.get("error").map(String::as_str),
        Some("access_denied"),
        "{callback}"
    );
    assert_eq!(query.get("state"), Some(&start.pending.state));
    assert!(!query.contains_key("code"), "{callback}");
}

#[tokio::test]
async fn ferry_starts_while_the_provider_is_down_and_logs_in_once_it_is_up() {
    let Some(mut server) = server() else { return };
    server.stop();
    // Construction does no I/O.
    let provider = provider(&server);
    for _ in 0..2 {
        let err = provider.begin(REDIRECT, None).await;
        assert!(matches!(err, Err(IdentityError::Unavailable(_))), "{err:?}");
    }
    server.restart();
    let alice = sign_in(&provider, ALICE).await.unwrap();
    assert_eq!(alice.subject, ALICE);

    // Discovered once, a provider that goes down again makes the exchange unavailable.
    let start = provider.begin(REDIRECT, None).await.unwrap();
    let (code, state) = callback(&start, ALICE).await;
    server.stop();
    let err = provider.finish(&start.pending, &code, &state).await;
    assert!(matches!(err, Err(IdentityError::Unavailable(_))), "{err:?}");
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_once_a_minute_at_most() {
    let Some(mut server) = server() else { return };
    let provider = provider(&server);
    let first_key = server.signing_key().kid;
    sign_in(&provider, ALICE).await.unwrap();

    // The provider signs with a key the cached set lacks: one refetch, and the login works.
    server.rotate_keys();
    assert_ne!(server.signing_key().kid, first_key);
    let alice = sign_in(&provider, ALICE).await.unwrap();
    assert_eq!(alice.subject, ALICE);

    // Another rotation within the minute: the set is not fetched again, so the login fails…
    server.rotate_keys();
    let err = sign_in(&provider, ALICE).await;
    assert!(
        matches!(&err, Err(IdentityError::InvalidToken(e)) if e.contains("key")),
        "{err:?}"
    );
    // …until the interval has passed.
    let impatient = common::provider(&server).with_refetch_interval(std::time::Duration::ZERO);
    sign_in(&impatient, ALICE).await.unwrap();
    server.rotate_keys();
    sign_in(&impatient, ALICE).await.unwrap();
}

#[tokio::test]
async fn a_native_client_comes_back_to_any_loopback_port_but_not_another_path() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let Some(server) =
        ferry_testkit::oidc::OidcServer::start_any_port(&["http://127.0.0.1/auth/callback/test"])
    else {
        return;
    };
    let provider = provider(&server);
    let start = provider
        .begin("http://127.0.0.1:4567/auth/callback/test", None)
        .await
        .unwrap();
    let (code, state) = callback(&start, ALICE).await;
    assert_eq!(
        provider
            .finish(&start.pending, &code, &state)
            .await
            .unwrap()
            .subject,
        ALICE
    );

    let elsewhere = provider
        .begin("http://127.0.0.1:4567/elsewhere", None)
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = client.get(&elsewhere.authorize_url).send().await.unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::BAD_REQUEST);
    assert!(answer.text().await.unwrap().contains("redirect_uri"));
}
