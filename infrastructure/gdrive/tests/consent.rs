//! The `DriveConsent` contract on `GoogleConsent`, against the fake Google's consent page and
//! token endpoint; the refresh token it yields works for the Drive store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use ferry_application::ports::{ConsentError, DriveConsent, ObjectStore, StoreError};
use ferry_application::testing::MemorySessions;
use ferry_application::testing::contracts::drive_consent_contract;
use ferry_gdrive::fake::{FakeClient, FakeDrive};
use ferry_gdrive::{CHUNK_UNIT, ConsentSettings, DriveSettings, DriveStore, GoogleConsent};
use ferry_net::NetGuard;
use futures::future::BoxFuture;

const REDIRECT: &str = "https://ferry.example/api/v1/storage-profiles/google-drive/callback";

fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

async fn google() -> FakeDrive {
    init();
    FakeDrive::start_with_client(
        "unused",
        FakeClient {
            client_id: "ferry-client".into(),
            client_secret: "ferry-client-secret".into(),
            redirect_uri: REDIRECT.into(),
        },
    )
    .await
}

fn consent(drive: &FakeDrive, client_id: &str, secret: &str) -> GoogleConsent {
    GoogleConsent::new(
        ConsentSettings {
            auth_url: drive.auth_url().parse().unwrap(),
            token_url: drive.token_url().parse().unwrap(),
            client_id: client_id.into(),
            client_secret: secret.into(),
        },
        Arc::new(NetGuard::allow_all()),
    )
    .unwrap()
}

/// The browser at the consent page: the status, and where it is sent.
async fn visit(url: &str) -> (u16, Option<String>) {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (r.status().as_u16(), location)
}

fn agree(url: String) -> BoxFuture<'static, String> {
    Box::pin(async move {
        let (status, location) = visit(&url).await;
        assert_eq!(status, 302, "the consent page agreed");
        location.unwrap()
    })
}

fn code_of(location: &str) -> String {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned()
}

#[tokio::test]
async fn google_consent_passes_the_contract_against_the_fake() {
    let drive = google().await;
    let c = consent(&drive, "ferry-client", "ferry-client-secret");
    drive_consent_contract(&c, &agree, REDIRECT).await;
    // Every consent carried a real S256 challenge (the fake checks the verifier against it).
    assert_eq!(drive.challenges().len(), 3);
}

#[tokio::test]
async fn the_granted_refresh_token_opens_the_drive() {
    let drive = google().await;
    let c = consent(&drive, "ferry-client", "ferry-client-secret");
    let start = c.begin(REDIRECT);
    let back = agree(start.authorize_url).await;
    let refresh = c
        .exchange(&code_of(&back), REDIRECT, &start.pkce_verifier)
        .await
        .unwrap();
    let store = DriveStore::new(
        DriveSettings {
            api_url: drive.url.parse().unwrap(),
            token_url: drive.token_url().parse().unwrap(),
            client_id: "ferry-client".into(),
            client_secret: "ferry-client-secret".into(),
            refresh_token: refresh,
            folder_id: drive.root_folder.clone(),
            chunk_size: CHUNK_UNIT,
        },
        Arc::new(MemorySessions::default()),
        Arc::new(NetGuard::allow_all()),
    )
    .unwrap();
    store.check().await.unwrap();
}

#[tokio::test]
async fn wrong_clients_redirects_and_grants_are_refused() {
    let drive = google().await;
    // The consent page refuses another client and another redirect URI (no redirect).
    let stranger = consent(&drive, "someone-else", "ferry-client-secret");
    assert_eq!(
        visit(&stranger.begin(REDIRECT).authorize_url).await,
        (401, None)
    );
    let ours = consent(&drive, "ferry-client", "ferry-client-secret");
    let elsewhere = ours.begin("https://evil.example/callback");
    assert_eq!(visit(&elsewhere.authorize_url).await, (400, None));

    // A wrong client secret at the token endpoint.
    let start = ours.begin(REDIRECT);
    let back = agree(start.authorize_url).await;
    let wrong = consent(&drive, "ferry-client", "not-the-secret");
    let r = wrong
        .exchange(&code_of(&back), REDIRECT, &start.pkce_verifier)
        .await;
    assert!(
        matches!(&r, Err(ConsentError::Refused(e)) if e == "invalid_client"),
        "{r:?}"
    );

    // A grant without a refresh token.
    drive.withhold_refresh_tokens(true);
    let start = ours.begin(REDIRECT);
    let back = agree(start.authorize_url).await;
    let r = ours
        .exchange(&code_of(&back), REDIRECT, &start.pkce_verifier)
        .await;
    assert!(matches!(r, Err(ConsentError::NoRefreshToken)), "{r:?}");

    // The consent page declines.
    drive.deny_consent(true);
    let start = ours.begin(REDIRECT);
    let back = agree(start.authorize_url).await;
    assert!(back.contains("error=access_denied"), "{back}");
    assert!(back.contains(&format!("state={}", start.state)), "{back}");
}

#[tokio::test]
async fn a_token_endpoint_at_a_refused_address_is_never_reached() {
    let drive = google().await;
    let closed = GoogleConsent::new(
        ConsentSettings {
            auth_url: drive.auth_url().parse().unwrap(),
            token_url: drive.token_url().parse().unwrap(),
            client_id: "ferry-client".into(),
            client_secret: "ferry-client-secret".into(),
        },
        Arc::new(NetGuard::default()),
    );
    assert!(matches!(closed.err(), Some(StoreError::NotAllowed(_))));
    // A name that resolves to the loopback server is refused when it connects.
    let mapped = Arc::new(NetGuard::new(
        ferry_domain::AddressPolicy::default(),
        [(
            "oauth.internal.example".to_owned(),
            "127.0.0.1".parse().unwrap(),
        )]
        .into_iter()
        .collect(),
    ));
    let mut token_url: url::Url = drive.token_url().parse().unwrap();
    token_url.set_host(Some("oauth.internal.example")).unwrap();
    let named = GoogleConsent::new(
        ConsentSettings {
            auth_url: drive.auth_url().parse().unwrap(),
            token_url,
            client_id: "ferry-client".into(),
            client_secret: "ferry-client-secret".into(),
        },
        mapped,
    )
    .unwrap();
    let start = named.begin(REDIRECT);
    let r = named
        .exchange("code-1", REDIRECT, &start.pkce_verifier)
        .await;
    assert!(
        matches!(r, Err(ConsentError::Store(StoreError::NotAllowed(_)))),
        "{r:?}"
    );
}
