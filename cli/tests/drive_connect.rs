//! "Connect Google Drive" on the real `ferry serve` against the fake Google (consent page,
//! token endpoint and Drive API on loopback): a user goes through the whole redirect dance
//! in a browser that keeps its cookies and follows redirects by hand, and the profile it
//! makes delivers a job; callbacks that did not come from that dance are refused and make
//! no profile.
//!
//! Ferry's public URL is `http://ferry.test` (the address Google knows it by, registered
//! with the fake client); the browser reaches it at the test server's loopback address.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use common::drive::{CALLBACK_PATH, CONNECT_COOKIE, PUBLIC, start};
use common::login::{self, add_user, expect, set_cookie};
use common::origin::*;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// A browser ([`login::Browser`], following redirects by hand) that also holds the pending
/// connection's cookie, which it sends only to the callback, as the cookie's path says.
#[derive(Clone)]
struct Browser(login::Browser);

impl Deref for Browser {
    type Target = login::Browser;
    fn deref(&self) -> &login::Browser {
        &self.0
    }
}

impl DerefMut for Browser {
    fn deref_mut(&mut self) -> &mut login::Browser {
        &mut self.0
    }
}

impl Browser {
    /// A browser with no session.
    fn new(f: &Ferry) -> Self {
        Self(login::Browser::signed_out(f).manual_redirects())
    }

    async fn login(f: &Ferry, name: &str) -> Self {
        Self(login::browser(f, name).await.manual_redirects())
    }

    /// The first admin, set up with the start-up link.
    async fn admin(f: &Ferry) -> Self {
        Self(login::admin(f).await.manual_redirects())
    }

    /// The pending connection's cookie, if held.
    fn connect_cookie(&self) -> Option<String> {
        self.held_cookie(CONNECT_COOKIE)
    }

    fn set_connect_cookie(&mut self, value: Option<String>) {
        self.hold_cookie(CONNECT_COOKIE, CALLBACK_PATH, value);
    }

    async fn me(&self) -> String {
        let (status, me) = self.json(Method::GET, "/me", None).await;
        assert_eq!(status, 200, "{me}");
        me["user"]["id"].as_str().unwrap().to_owned()
    }

    async fn profiles(&self) -> Vec<Value> {
        let (status, all) = self.json(Method::GET, "/storage-profiles", None).await;
        assert_eq!(status, 200, "{all}");
        all.as_array().unwrap().clone()
    }

    /// Starts a connection (as a page would, with fetch): Google's consent URL. Keeps the
    /// pending cookie, checking what it promises.
    async fn start_connect(&mut self, body: Value) -> String {
        let r = self
            .req(Method::POST, "/storage-profiles/google-drive/connect")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let (value, line) = set_cookie(&r, CONNECT_COOKIE)
            .unwrap_or_else(|| panic!("no pending cookie: {status} {:?}", r.headers()));
        let answer: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{answer}");
        for attribute in [
            "HttpOnly",
            "SameSite=Lax",
            &format!("Path={CALLBACK_PATH}"),
            "Max-Age=600",
        ] {
            assert!(line.contains(attribute), "{attribute} in {line}");
        }
        let url = answer["authorize_url"].as_str().unwrap().to_owned();
        let state = &query(&url)["state"];
        assert!(
            !value.contains(state.as_str()),
            "the pending cookie is sealed"
        );
        self.set_connect_cookie(Some(value));
        url
    }

    /// Google's consent page (no Ferry cookie goes there): where it redirects the browser.
    async fn consent(&self, authorize_url: &str) -> String {
        let r = self.http.get(authorize_url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{:?}", r.text().await);
        r.headers()["location"].to_str().unwrap().to_owned()
    }

    /// Arrives at Ferry from Google's redirect to `location` (Ferry's public address, which
    /// this browser reaches at the test server), with the cookies it holds for that path.
    async fn arrive(&mut self, location: &str) -> reqwest::Response {
        let path = location
            .strip_prefix(PUBLIC)
            .unwrap_or_else(|| panic!("{location} is not on Ferry"));
        let r = self.visit(path).send().await.unwrap();
        self.remember(&r, CONNECT_COOKIE, CALLBACK_PATH);
        r
    }

    /// Start, consent, arrive: the callback's answer.
    async fn connect(&mut self, name: &str, folder: &str) -> reqwest::Response {
        let url = self
            .start_connect(json!({"name": name, "folder_id": folder}))
            .await;
        let back = self.consent(&url).await;
        self.arrive(&back).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_connects_google_drive_by_consenting_and_a_job_is_delivered_there() {
    let (_keep, root) = test_dir();
    let (drive, f) = start(&root).await;
    let admin = Browser::admin(&f).await;
    add_user(&f, "alice", false);
    let mut alice = Browser::login(&f, "alice").await;
    let alice_id = alice.me().await;

    let url = alice
        .start_connect(json!({"name": "My Drive", "folder_id": drive.root_folder, "return_to": "/profiles?connected=1"}))
        .await;
    assert!(url.starts_with(&drive.auth_url()), "{url}");
    let q = query(&url);
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", "ferry-client"),
        (
            "redirect_uri",
            "http://ferry.test/api/v1/storage-profiles/google-drive/callback",
        ),
        ("scope", "https://www.googleapis.com/auth/drive.file"),
        ("access_type", "offline"),
        ("prompt", "consent"),
        ("code_challenge_method", "S256"),
    ] {
        assert_eq!(q.get(k).map(String::as_str), Some(v), "{k} in {url}");
    }
    assert!(q["state"].len() >= 32, "{url}");

    let back = alice.consent(&url).await;
    assert!(
        back.starts_with(&format!("{PUBLIC}{CALLBACK_PATH}?")),
        "{back}"
    );
    assert_eq!(query(&back)["state"], q["state"]);
    assert_eq!(drive.challenges(), vec![q["code_challenge"].clone()]);
    let done = alice.arrive(&back).await;
    assert_eq!(done.status(), StatusCode::FOUND, "{:?}", done.text().await);
    assert_eq!(
        done.headers()["location"],
        "/profiles?connected=1&drive=connected"
    );
    let (_, cleared) = set_cookie(&done, CONNECT_COOKIE).unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(alice.connect_cookie().is_none());

    let profiles = alice.profiles().await;
    assert_eq!(profiles.len(), 1, "{profiles:?}");
    let p = &profiles[0];
    assert_eq!(
        (p["name"].as_str(), p["kind"].as_str()),
        (Some("My Drive"), Some("google_drive"))
    );
    assert_eq!(p["google_drive"]["folder_id"], drive.root_folder.as_str());
    let granted = drive.granted_refresh_tokens();
    assert_eq!(granted.len(), 1);
    assert!(!p.to_string().contains(&granted[0]), "{p}");
    let pid = p["id"].as_str().unwrap().to_owned();
    let (status, tested) = alice
        .json(Method::POST, &format!("/storage-profiles/{pid}/test"), None)
        .await;
    assert_eq!((status, &tested), (200, &json!({"ok": true})));
    assert!(admin.profiles().await.is_empty(), "the profile is alice's");
    let (_, audit) = admin
        .json(Method::GET, "/admin/audit?action=profile.create", None)
        .await;
    let entry = &audit[0];
    assert_eq!(
        (
            entry["actor"].as_str(),
            entry["target"].as_str(),
            entry["outcome"].as_str()
        ),
        (Some(alice_id.as_str()), Some(pid.as_str()), Some("success")),
        "{audit}"
    );

    // A job delivered to it lands in the folder, with the bytes it fetched.
    let name = "report.bin";
    let file = root.join("origin").join(name);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let sha = random_file(&file, 700 * 1024);
    let origin = Origin::start(&file, name).await;
    let (status, job) = alice
        .json(
            Method::POST,
            "/jobs",
            Some(json!({"source": {"url": format!("http://{}/{name}", origin.addr)}, "storage_profile": pid})),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, job) = alice.json(Method::GET, &format!("/jobs/{id}"), None).await;
        match job["status"].as_str() {
            Some("completed") => break,
            Some("failed") => panic!("{job}\n{}", f.proc.log_text()),
            _ => {}
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let content = drive
        .content(&[&alice_id, &id, name])
        .unwrap_or_else(|| panic!("{name} not in Drive"));
    assert_eq!(sha256_hex(&content), sha);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_that_did_not_come_from_the_users_own_consent_are_refused() {
    let (_keep, root) = test_dir();
    let (drive, f) = start(&root).await;
    let folder = drive.root_folder.clone();
    let admin = Browser::admin(&f).await;
    add_user(&f, "alice", false);
    add_user(&f, "bob", false);
    let mut alice = Browser::login(&f, "alice").await;
    let mut bob = Browser::login(&f, "bob").await;
    let alice_id = alice.me().await;
    let connect = |b: &Browser, body: Value| {
        b.req(Method::POST, "/storage-profiles/google-drive/connect")
            .json(&body)
            .send()
    };

    // Starting: a caller, from Ferry's pages, with a valid folder, name and return path.
    let ok = json!({"name": "Drive", "folder_id": folder});
    let r = reqwest::Client::new()
        .post(f.url("/storage-profiles/google-drive/connect"))
        .json(&ok)
        .send()
        .await
        .unwrap();
    expect(r, 401, "unauthorized").await;
    let r = alice
        .http
        .post(f.url("/storage-profiles/google-drive/connect"))
        .header("Cookie", format!("ferry_session={}", alice.cookie))
        .header("Origin", "http://evil.example")
        .json(&ok)
        .send()
        .await
        .unwrap();
    expect(r, 403, "forbidden").await;
    for bad in [
        json!({"name": "Drive", "folder_id": "../root"}),
        json!({"name": "", "folder_id": folder}),
        json!({"name": "Drive", "folder_id": "x".repeat(129)}),
    ] {
        expect(
            connect(&alice, bad).await.unwrap(),
            400,
            "invalid_storage_profile",
        )
        .await;
    }
    for to in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "x",
    ] {
        let body = json!({"name": "Drive", "folder_id": folder, "return_to": to});
        expect(connect(&alice, body).await.unwrap(), 400, "invalid_request").await;
    }

    // Alice consents; the redirect back is taken elsewhere.
    let url = alice.start_connect(ok.clone()).await;
    let alice_back = alice.consent(&url).await;
    // A browser that did not start it (no pending cookie), even logged in as alice.
    let mut stranger = Browser::new(&f);
    expect(
        stranger.arrive(&alice_back).await,
        400,
        "drive_connect_failed",
    )
    .await;
    let mut alice_elsewhere = alice.clone();
    alice_elsewhere.set_connect_cookie(None);
    expect(
        alice_elsewhere.arrive(&alice_back).await,
        400,
        "drive_connect_failed",
    )
    .await;
    // A tampered cookie, a wrong state, no code.
    let mut tampered = alice.clone();
    let c = tampered.connect_cookie().unwrap();
    let flipped = if c.ends_with('0') { '1' } else { '0' };
    tampered.set_connect_cookie(Some(format!("{}{flipped}", &c[..c.len() - 1])));
    expect(
        tampered.arrive(&alice_back).await,
        400,
        "drive_connect_failed",
    )
    .await;
    let q = query(&alice_back);
    let wrong_state = format!(
        "{PUBLIC}{CALLBACK_PATH}?code={}&state={}x",
        q["code"], q["state"]
    );
    expect(
        alice.clone().arrive(&wrong_state).await,
        400,
        "drive_connect_failed",
    )
    .await;
    let no_code = format!("{PUBLIC}{CALLBACK_PATH}?state={}", q["state"]);
    expect(
        alice.clone().arrive(&no_code).await,
        400,
        "drive_connect_failed",
    )
    .await;

    // Bob's consent arrives at alice's browser: her pending cookie is not for it.
    let bob_url = bob.start_connect(ok.clone()).await;
    let bob_back = bob.consent(&bob_url).await;
    expect(
        alice.clone().arrive(&bob_back).await,
        400,
        "drive_connect_failed",
    )
    .await;
    // Bob's pending cookie in a browser logged in as alice: another user's session.
    let mut mixed = alice.clone();
    mixed.set_connect_cookie(bob.connect_cookie());
    expect(mixed.arrive(&bob_back).await, 403, "forbidden").await;
    assert!(alice.profiles().await.is_empty() && bob.profiles().await.is_empty());
    let (_, audit) = admin
        .json(Method::GET, "/admin/audit?action=profile.create", None)
        .await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == "failure"
                && e["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("another user")),
        "{audit}"
    );

    // Bob finishes his own; the same redirect replayed with the cookie he had is refused
    // (Google takes a code once) and makes no second profile.
    let kept = bob.clone();
    let done = bob.arrive(&bob_back).await;
    assert_eq!(done.status(), StatusCode::FOUND, "{:?}", done.text().await);
    assert_eq!(done.headers()["location"], "/");
    assert_eq!(bob.profiles().await.len(), 1);
    let body = expect(
        kept.clone().arrive(&bob_back).await,
        400,
        "drive_connect_failed",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("invalid_grant"),
        "{body}"
    );
    assert_eq!(bob.profiles().await.len(), 1);

    // Alice declines on Google's page.
    drive.deny_consent(true);
    let url = alice.start_connect(ok.clone()).await;
    let declined = alice.consent(&url).await;
    assert_eq!(query(&declined)["error"], "access_denied");
    expect(alice.arrive(&declined).await, 400, "drive_consent_denied").await;
    drive.deny_consent(false);

    // Google grants no refresh token: said clearly, nothing saved.
    drive.withhold_refresh_tokens(true);
    let body = expect(
        alice.connect("Drive", &folder).await,
        400,
        "drive_connect_failed",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("refresh token"),
        "{body}"
    );
    drive.withhold_refresh_tokens(false);

    // Alice is disabled between her consent and the redirect back.
    let url = alice.start_connect(ok.clone()).await;
    let back = alice.consent(&url).await;
    let (status, _) = admin
        .json(
            Method::PATCH,
            &format!("/admin/users/{alice_id}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 200);
    expect(alice.arrive(&back).await, 403, "account_disabled").await;
    let (status, _) = admin
        .json(
            Method::PATCH,
            &format!("/admin/users/{alice_id}"),
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    let alice = Browser::login(&f, "alice").await;
    assert!(alice.profiles().await.is_empty(), "alice has no profile");
    assert_eq!(bob.profiles().await.len(), 1, "bob has his one");
}
