//! Logging in to the real `ferry serve` through a real OpenID Connect provider (npm
//! `oidc-provider` on loopback): the whole redirect dance with a client that keeps cookies,
//! roles from the group claim, the login's binding to the browser that started it, and the
//! provider's JWT access tokens as bearer tokens for machine clients.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::*;
use ferry_testkit::oidc::{self, OidcServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CALLBACK: &str = "http://127.0.0.1/api/v1/auth/callback/idp";

fn ferry_with(idp: &OidcServer, dir: &std::path::Path, auto_provision: bool) -> Ferry {
    init();
    let issuer = idp.issuer();
    let provision = if auto_provision { "true" } else { "false" };
    Ferry::start(
        &dir.join("ferry"),
        &[
            ("FERRY_AUTH__OIDC__IDP__ISSUER", issuer.as_str()),
            ("FERRY_AUTH__OIDC__IDP__CLIENT_ID", oidc::CLIENT_ID),
            ("FERRY_AUTH__OIDC__IDP__CLIENT_SECRET", oidc::CLIENT_SECRET),
            ("FERRY_AUTH__OIDC__IDP__ADMIN_GROUP", oidc::ADMIN_GROUP),
            ("FERRY_AUTH__OIDC__IDP__AUTO_PROVISION", provision),
            (
                "FERRY_AUTH__OIDC__IDP__ACCESS_TOKEN_AUDIENCE",
                oidc::RESOURCE,
            ),
        ],
    )
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of cookie `name` a response sets.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    common::login::set_cookie(r, name).map(|(value, _)| value)
}

/// The start of a login at Ferry: where the browser goes, and the login cookie it holds.
async fn start(f: &Ferry, return_to: &str) -> (String, String) {
    let r = no_redirects()
        .get(f.url(&format!("/auth/login/idp?return_to={return_to}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let cookie = set_cookie(&r, "ferry_login").expect("a login cookie");
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    (location, cookie)
}

/// Ferry's answer to the provider's redirect back, with the browser's login cookie.
async fn callback(callback_url: &str, login_cookie: Option<&str>) -> reqwest::Response {
    let mut r = no_redirects().get(callback_url);
    if let Some(c) = login_cookie {
        r = r.header("Cookie", format!("ferry_login={c}"));
    }
    r.send().await.unwrap()
}

/// A whole login of `user`; returns the session cookie.
async fn log_in(f: &Ferry, user: &str) -> String {
    let (authorize, cookie) = start(f, "/").await;
    let back = oidc::login(&authorize, user).await;
    let r = callback(&back, Some(&cookie)).await;
    assert_eq!(r.status(), StatusCode::FOUND, "{:?}", r.text().await);
    set_cookie(&r, "ferry_session").unwrap()
}

async fn me(f: &Ferry, auth: (&str, &str)) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(f.url("/me"))
        .header(auth.0, auth.1)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_log_in_through_the_provider_and_get_their_role_from_its_groups() {
    let Some(idp) = OidcServer::start_any_port(&[CALLBACK]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let f = ferry_with(&idp, dir.path(), true);
    let (providers_status, providers) = f.get_json("/auth/providers").await;
    assert_eq!(
        (providers_status, providers),
        (200, json!([{"name": "idp"}]))
    );

    // Alice: the whole dance, back to where she started.
    let (authorize, login_cookie) = start(&f, "/jobs?status=completed").await;
    assert!(authorize.starts_with(&idp.issuer()), "{authorize}");
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    assert!(authorize.contains("nonce="), "{authorize}");
    let back = oidc::login(&authorize, oidc::ALICE).await;
    assert!(back.contains("code="), "{back}");
    let r = callback(&back, Some(&login_cookie)).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()["location"], "/jobs?status=completed");
    let alice = set_cookie(&r, "ferry_session").unwrap();
    let (status, me_alice) = me(&f, ("Cookie", &format!("ferry_session={alice}"))).await;
    assert_eq!(status, 200, "{me_alice}");
    assert_eq!(me_alice["user"]["role"], "admin", "{me_alice}");
    assert_eq!(me_alice["user"]["email"], "alice@example.test");

    // The code is spent: the same callback again is refused.
    let again = callback(&back, Some(&login_cookie)).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["code"], "login_failed", "{body}");

    // Bob is a user; a second login is the same account.
    let bob = log_in(&f, oidc::BOB).await;
    let (_, me_bob) = me(&f, ("Cookie", &format!("ferry_session={bob}"))).await;
    assert_eq!(me_bob["user"]["role"], "user", "{me_bob}");
    let bob2 = log_in(&f, oidc::BOB).await;
    let (_, me_bob2) = me(&f, ("Cookie", &format!("ferry_session={bob2}"))).await;
    assert_eq!(me_bob["user"]["id"], me_bob2["user"]["id"]);
    assert_ne!(me_alice["user"]["id"], me_bob["user"]["id"]);

    // Machine clients: the provider's access token for Alice is Alice.
    let token = idp.access_token(oidc::ALICE).await;
    let (status, via_token) = me(&f, ("Authorization", &format!("Bearer {token}"))).await;
    assert_eq!(status, 200, "{via_token}");
    assert_eq!(via_token["via"], "access_token");
    assert_eq!(via_token["user"]["id"], me_alice["user"]["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_only_finishes_in_the_browser_that_started_it_and_returns_only_to_ferry() {
    let Some(idp) = OidcServer::start_any_port(&[CALLBACK]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let f = ferry_with(&idp, dir.path(), true);

    // An attacker's callback (their own code and state) sent to a victim's browser, which
    // holds no login cookie, or the victim's own login cookie of another login.
    let (authorize, _attacker_cookie) = start(&f, "/").await;
    let attackers = oidc::login(&authorize, oidc::BOB).await;
    let (_, victims_cookie) = start(&f, "/").await;
    for cookie in [
        None,
        Some(victims_cookie.as_str()),
        Some("00ff"),
        Some("garbage"),
    ] {
        let r = callback(&attackers, cookie).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{cookie:?}");
        assert!(set_cookie(&r, "ferry_session").is_none());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "login_failed", "{body}");
    }
    // The provider's refusal, and a callback with nothing.
    let base = f.url("/auth/callback/idp");
    for url in [format!("{base}?error=access_denied&state=x"), base.clone()] {
        let r = callback(&url, None).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
    let r = callback(&f.url("/auth/callback/nope?code=a&state=b"), None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Off-site return addresses are dropped: the login comes back to Ferry's root.
    for evil in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let encoded: String = url::form_urlencoded::byte_serialize(evil.as_bytes()).collect();
        let (authorize, cookie) = start(&f, &encoded).await;
        let back = oidc::login(&authorize, oidc::ALICE).await;
        let r = callback(&back, Some(&cookie)).await;
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(r.headers()["location"], "/", "{evil}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_only_providers_refuse_strangers() {
    let Some(idp) = OidcServer::start_any_port(&[CALLBACK]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let f = ferry_with(&idp, dir.path(), false);
    let (authorize, cookie) = start(&f, "/").await;
    let back = oidc::login(&authorize, oidc::BOB).await;
    let r = callback(&back, Some(&cookie)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "not_invited", "{body}");
    // Nor does an access token create an account.
    let token = idp.access_token(oidc::BOB).await;
    let (status, _) = me(&f, ("Authorization", &format!("Bearer {token}"))).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_access_tokens_are_refused() {
    let Some(idp) = OidcServer::start_any_port(&[CALLBACK]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let f = ferry_with(&idp, dir.path(), true);

    // Forgeries of a real token: no signature, a changed payload, HS256 keyed with the
    // provider's public key material, an expired one signed by the provider's own key.
    let real = idp.access_token(oidc::ALICE).await;
    let parts: Vec<&str> = real.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    let none_header =
        b64.encode(json!({"alg": "none", "typ": "JWT", "kid": header["kid"]}).to_string());
    let unsigned = format!("{none_header}.{}.", parts[1]);
    payload["sub"] = json!("someone-else");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(payload.to_string()),
        parts[2]
    );
    let jwks: Value = reqwest::get(idp.jwks_uri())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = jwks["keys"][0]["n"].as_str().unwrap().to_owned();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: header["kid"].as_str().map(str::to_owned),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &payload,
        &jsonwebtoken::EncodingKey::from_secret(n.as_bytes()),
    )
    .unwrap();
    // The real one works (so each refusal below is the forgery's).
    let (status, body) = me(&f, ("Authorization", &format!("Bearer {real}"))).await;
    assert_eq!(status, 200, "{body}");
    let key = idp.signing_key();
    let mut expired: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    expired["iat"] = json!(chrono::Utc::now().timestamp() - 7200);
    let mut rs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    rs.kid = Some(key.kid.clone());
    let signing = jsonwebtoken::EncodingKey::from_rsa_der(&key.pkcs1_der);
    let expired = jsonwebtoken::encode(&rs, &expired, &signing).unwrap();
    let mut other_aud: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    other_aud["aud"] = json!("urn:another:api");
    let other_aud = jsonwebtoken::encode(&rs, &other_aud, &signing).unwrap();
    let mut other_iss: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    other_iss["iss"] = json!("http://127.0.0.1:1");
    let other_iss = jsonwebtoken::encode(&rs, &other_iss, &signing).unwrap();
    for (what, token) in [
        ("alg none", unsigned),
        ("tampered payload", tampered),
        ("HS256 keyed with the public key", hs),
        ("expired", expired),
        ("another audience", other_aud),
        ("another issuer", other_iss),
    ] {
        let (status, body) = me(&f, ("Authorization", &format!("Bearer {token}"))).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthorized")),
            "{what}: {body}"
        );
    }
}
