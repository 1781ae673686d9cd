//! Accounts on the real `ferry serve`: the first admin's setup link, local logins and
//! session cookies, CSRF, personal tokens and their scopes, users kept apart in every
//! operation of the OpenAPI document, admins, disabling, rate limits and the audit log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::login::*;
use common::s3::*;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn ferry(dir: &std::path::Path, env: &[(&str, &str)]) -> Ferry {
    init();
    Ferry::start(&dir.join("ferry"), env)
}

#[tokio::test]
async fn the_first_start_link_makes_the_admin_who_then_logs_in_with_a_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path(), &[]);
    let link = setup_link(&f);
    let http = reqwest::Client::new();
    let setup = |body: Value| http.post(f.url("/auth/setup")).json(&body).send();

    // A wrong link, a short password, a bad name: each refused, the link still unused.
    let wrong = "0".repeat(64);
    expect(
        setup(json!({"link": wrong, "username": "root", "password": PASSWORD}))
            .await
            .unwrap(),
        400,
        "invalid_setup_link",
    )
    .await;
    expect(
        setup(json!({"link": link, "username": "root", "password": "short"}))
            .await
            .unwrap(),
        400,
        "invalid_account",
    )
    .await;
    expect(
        setup(json!({"link": link, "username": "no spaces", "password": PASSWORD}))
            .await
            .unwrap(),
        400,
        "invalid_account",
    )
    .await;
    let admin = admin(&f).await;
    expect(
        setup(json!({"link": link, "username": "again", "password": PASSWORD}))
            .await
            .unwrap(),
        400,
        "invalid_setup_link",
    )
    .await;

    let (status, me) = admin.json(Method::GET, "/me", None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["role"], "admin");
    assert_eq!(me["via"], "session");
    assert_eq!(me["scopes"], json!(["read", "write", "admin"]));

    // Wrong passwords and unknown names get one answer.
    let a = expect(
        login(&f, "root", "wrong password").await,
        401,
        "invalid_credentials",
    )
    .await;
    let b = expect(
        login(&f, "nobody", PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(a["message"], b["message"]);
    // Names are case-insensitive.
    let again = login(&f, "ROOT", PASSWORD).await;
    assert_eq!(again.status(), StatusCode::OK);

    // Logging out ends the session: the cookie replayed is refused.
    let r = admin
        .req(Method::POST, "/auth/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let cleared = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    expect(
        admin.req(Method::GET, "/me").send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    // A restart keeps the admin (no new setup link is needed).
    let f = Ferry::restart(f.stop());
    assert!(
        !f.proc.log_text().contains("\"link\": \""),
        "a second setup link after the admin set a password"
    );
    browser(&f, "root").await;
}

#[tokio::test]
async fn cookie_changes_must_come_from_ferrys_own_pages() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path(), &[]);
    let admin = admin(&f).await;
    let job = json!({"source": {"magnet": lonely_magnet("csrf")}});
    let cookie = format!("ferry_session={}", admin.cookie);
    let post = |origin: Option<&str>, site: Option<&str>| {
        let mut r = reqwest::Client::new()
            .post(f.url("/jobs"))
            .header("Cookie", &cookie)
            .json(&job);
        if let Some(o) = origin {
            r = r.header("Origin", o);
        }
        if let Some(s) = site {
            r = r.header("Sec-Fetch-Site", s);
        }
        r.send()
    };
    for (origin, site) in [
        (None, None),
        (Some("http://evil.example"), None),
        (Some("null"), None),
        (Some(f.base.as_str()), Some("cross-site")),
        (None, Some("same-site")),
    ] {
        let body = expect(post(origin, site).await.unwrap(), 403, "forbidden").await;
        assert!(
            body["message"].as_str().unwrap().contains("Origin"),
            "{body}"
        );
    }
    let (status, page) = admin.json(Method::GET, "/jobs", None).await;
    assert_eq!(
        (status, page["items"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    // From Ferry's own origin it goes through.
    assert_eq!(post(Some(&f.base), None).await.unwrap().status(), 201);
    assert_eq!(
        post(None, Some("same-origin")).await.unwrap().status(),
        409,
        "same torrent again: past the CSRF check"
    );
    // A login form posted from another site is refused too.
    let r = reqwest::Client::new()
        .post(f.url("/auth/login"))
        .header("Origin", "http://evil.example")
        .json(&json!({"username": "root", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    expect(r, 403, "forbidden").await;
}

#[tokio::test]
async fn personal_tokens_carry_scopes_expire_and_are_revoked_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path(), &[]);
    let _admin = admin(&f).await;
    add_user(&f, "bob", false);
    let bob = browser(&f, "bob").await;

    let (status, made) = bob
        .json(
            Method::POST,
            "/me/tokens",
            Some(json!({"name": "sonarr", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let read_only = made["token"].as_str().unwrap().to_owned();
    assert!(read_only.starts_with("ferry_pat_"), "{made}");
    let http = reqwest::Client::new();
    let with = |token: &str, method: Method, path: &str| {
        http.request(method, f.url(path))
            .bearer_auth(token.to_owned())
    };
    let r = with(&read_only, Method::GET, "/me").send().await.unwrap();
    let me: Value = r.json().await.unwrap();
    assert_eq!(
        (me["via"].as_str(), &me["scopes"]),
        (Some("token"), &json!(["read"]))
    );
    let r = with(&read_only, Method::POST, "/jobs")
        .json(&json!({"source": {"magnet": lonely_magnet("scoped")}}))
        .send()
        .await
        .unwrap();
    expect(r, 403, "forbidden").await;

    // A user cannot mint an admin token, nor one that has already expired.
    let (status, body) = bob
        .json(
            Method::POST,
            "/me/tokens",
            Some(json!({"name": "x", "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, body) = bob
        .json(
            Method::POST,
            "/me/tokens",
            Some(json!({"name": "x", "scopes": ["read"], "expires_at": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_account")),
        "{body}"
    );
    let (status, body) = bob
        .json(
            Method::POST,
            "/me/tokens",
            Some(json!({"name": "x", "scopes": ["root"]})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_account")),
        "{body}"
    );

    // The list shows the token, never its secret.
    let (_, list) = bob.json(Method::GET, "/me/tokens", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert!(!list.to_string().contains(&read_only[20..]), "{list}");

    // A forged secret on a real id, an expired token, a revoked token: all refused.
    let forged = format!("{}{}", &read_only[..read_only.len() - 4], "0000");
    expect(
        with(&forged, Method::GET, "/me").send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (_, short) = bob
        .json(
            Method::POST,
            "/me/tokens",
            Some(json!({"name": "short", "scopes": ["read", "write"], "expires_at": soon})),
        )
        .await;
    let short = short["token"].as_str().unwrap().to_owned();
    assert_eq!(
        with(&short, Method::GET, "/jobs")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    expect(
        with(&short, Method::GET, "/jobs").send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;

    let id = made["id"].as_str().unwrap();
    let r = bob
        .req(Method::DELETE, &format!("/me/tokens/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    expect(
        with(&read_only, Method::GET, "/me").send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let r = bob
        .req(Method::DELETE, &format!("/me/tokens/{id}"))
        .send()
        .await
        .unwrap();
    expect(r, 404, "token_not_found").await;
}

/// Fills an OpenAPI path template with the ids of `ids` (by parameter name).
fn fill(template: &str, ids: &serde_json::Map<String, Value>) -> String {
    let mut out = template.to_owned();
    for (name, value) in ids {
        out = out.replace(&format!("{{{name}}}"), value.as_str().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_ids_answer_like_unknown_ids_in_every_operation() {
    if !require(&["aws"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_keep, root) = test_dir();
    let Some(s3) = S3Server::start(&root) else {
        return;
    };
    s3.aws(&["s3", "mb", "s3://tenants"]);
    let f = ferry(
        dir.path(),
        &[("FERRY_STORAGE__ALLOW_PRIVATE_ENDPOINTS", "true")],
    );
    let _admin = admin(&f).await;
    add_user(&f, "alice", false);
    add_user(&f, "bob", false);
    let alice = browser(&f, "alice").await;
    let bob = browser(&f, "bob").await;

    // Alice's things: a job, a storage profile, a token.
    let (status, job) = alice
        .json(
            Method::POST,
            "/jobs",
            Some(json!({"source": {"magnet": lonely_magnet("alices")}})),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    let (status, profile) = alice
        .json(
            Method::POST,
            "/storage-profiles",
            Some(json!({"name": "alice's bucket", "s3": {
                "endpoint": s3.endpoint(), "region": "us-east-1", "bucket": "tenants",
                "access_key_id": ACCESS, "secret_access_key": SECRET}})),
        )
        .await;
    assert_eq!(status, 201, "{profile}");
    let (status, token) = alice
        .json(
            Method::POST,
            "/me/tokens",
            Some(json!({"name": "a", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let secrets = [
        job["id"].as_str().unwrap().to_owned(),
        profile["id"].as_str().unwrap().to_owned(),
        token["id"].as_str().unwrap().to_owned(),
        "alice".to_owned(),
    ];

    // Every operation of the document that takes an id, called by Bob with Alice's ids.
    let doc: Value = reqwest::get(f.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut probed = 0;
    for (template, ops) in doc["paths"].as_object().unwrap() {
        if !template.contains('{') {
            continue;
        }
        for (method, op) in ops.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let mut ids = serde_json::Map::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    let name = p["name"].as_str().unwrap();
                    let id = if template.starts_with("/api/v1/jobs") {
                        &secrets[0]
                    } else if template.starts_with("/api/v1/storage-profiles") {
                        &secrets[1]
                    } else if template.starts_with("/api/v1/me/tokens") {
                        &secrets[2]
                    } else if name == "index" {
                        "0"
                    } else {
                        "alice"
                    };
                    let id = if name == "index" { "0" } else { id };
                    ids.insert(name.to_owned(), Value::String(id.to_owned()));
                }
            }
            let path = fill(template, &ids);
            let mut r = bob
                .http
                .request(method.clone(), format!("{}{path}", f.base))
                .header("Cookie", format!("ferry_session={}", bob.cookie))
                .header("Origin", &f.base);
            if op.get("requestBody").is_some() {
                r = r.json(&json!({}));
            }
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let headers = format!("{:?}", r.headers());
            let body = r.text().await.unwrap_or_default();
            assert!(
                matches!(status, 400 | 403 | 404 | 405 | 415 | 422),
                "{method} {path} as another user: {status} {body}"
            );
            for s in &secrets[..3] {
                assert!(
                    !body.contains(s.as_str()),
                    "{method} {path} leaks {s}: {body}"
                );
                assert!(
                    !headers.contains(s.as_str()),
                    "{method} {path} leaks {s}: {headers}"
                );
            }
            probed += 1;
        }
    }
    assert!(probed >= 15, "only {probed} operations take an id");
    // Lists show Bob nothing of Alice's.
    for path in ["/jobs", "/storage-profiles", "/me/tokens"] {
        let (status, body) = bob.json(Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        for s in &secrets[..3] {
            assert!(
                !body.to_string().contains(s.as_str()),
                "{path} leaks {s}: {body}"
            );
        }
    }
    // Bob may not look at Alice's jobs by naming her either; an admin may.
    let r = bob
        .req(Method::GET, "/jobs?owner=alice")
        .send()
        .await
        .unwrap();
    expect(r, 403, "forbidden").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_feed_carries_only_the_callers_jobs_and_ends_with_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path(), &[]);
    let _admin = admin(&f).await;
    add_user(&f, "alice", false);
    add_user(&f, "bob", false);
    let (alice, bob) = (browser(&f, "alice").await, browser(&f, "bob").await);
    let feed = |b: &Browser| b.req(Method::GET, "/jobs/events").send();
    let (alices, bobs) = (feed(&alice).await.unwrap(), feed(&bob).await.unwrap());
    assert_eq!(
        (alices.status().as_u16(), bobs.status().as_u16()),
        (200, 200)
    );
    let bob_reads = tokio::spawn(tokio::time::timeout(
        Duration::from_secs(3),
        read_sse(bobs, Duration::from_secs(60), |e| e.event != "ready"),
    ));
    let alice_reads = tokio::spawn(read_sse(alices, Duration::from_secs(30), |e| {
        e.event == "status"
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, job) = alice
        .json(
            Method::POST,
            "/jobs",
            Some(json!({"source": {"magnet": lonely_magnet("alices-feed")}})),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    let seen = alice_reads.await.unwrap();
    assert_eq!(seen[0].event, "ready", "{seen:?}");
    assert_eq!(seen.last().unwrap().data["job_id"], job["id"], "{seen:?}");
    assert!(
        bob_reads.await.unwrap().is_err(),
        "nothing of alice's reaches bob's feed"
    );
    // Bob cannot follow hers by naming her.
    let r = bob
        .req(Method::GET, "/jobs/events?owner=alice")
        .send()
        .await
        .unwrap();
    expect(r, 403, "forbidden").await;
    // A feed ends soon after its session does.
    let open = feed(&alice).await.unwrap();
    let (status, _) = alice.json(Method::POST, "/auth/logout", None).await;
    assert_eq!(status, 204);
    let events = read_sse(open, Duration::from_secs(20), |_| false).await;
    assert!(events.iter().all(|e| e.event == "ready"), "{events:?}");
    let r = feed(&alice).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_and_tokens_at_once_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path(), &[]);
    let admin = admin(&f).await;
    add_user(&f, "bob", false);
    let bob = browser(&f, "bob").await;
    let (_, token) = bob
        .json(
            Method::POST,
            "/me/tokens",
            Some(json!({"name": "t", "scopes": ["read"]})),
        )
        .await;
    let token = token["token"].as_str().unwrap().to_owned();
    let (_, me) = bob.json(Method::GET, "/me", None).await;
    let bob_id = me["user"]["id"].as_str().unwrap().to_owned();
    let (status, job) = bob
        .json(
            Method::POST,
            "/jobs",
            Some(json!({"source": {"magnet": lonely_magnet("bobs")}})),
        )
        .await;
    assert_eq!(status, 201, "{job}");

    // Users see no one; admins see everyone, and everyone's jobs by owner.
    let (status, _) = bob.json(Method::GET, "/admin/users", None).await;
    assert_eq!(status, 403);
    let (status, _) = bob.json(Method::GET, "/admin/audit", None).await;
    assert_eq!(status, 403);
    let (_, users) = admin.json(Method::GET, "/admin/users", None).await;
    assert_eq!(users.as_array().unwrap().len(), 2, "{users}");
    let (status, theirs) = admin
        .json(Method::GET, &format!("/jobs?owner={bob_id}"), None)
        .await;
    assert_eq!(status, 200, "{theirs}");
    assert_eq!(theirs["items"][0]["id"], job["id"], "{theirs}");
    let (_, own) = admin.json(Method::GET, "/jobs", None).await;
    assert_eq!(own["items"].as_array().unwrap().len(), 0, "{own}");

    // An admin cannot lock themselves out.
    let (_, me) = admin.json(Method::GET, "/me", None).await;
    let admin_id = me["user"]["id"].as_str().unwrap().to_owned();
    let (status, body) = admin
        .json(
            Method::PATCH,
            &format!("/admin/users/{admin_id}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    let (status, changed) = admin
        .json(
            Method::PATCH,
            &format!("/admin/users/{bob_id}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(
        (status, changed["disabled"].as_bool()),
        (200, Some(true)),
        "{changed}"
    );
    let (status, _) = bob.json(Method::GET, "/me", None).await;
    assert_eq!(status, 401, "a disabled user's session");
    let r = reqwest::Client::new()
        .get(f.url("/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "a disabled user's token");
    expect(login(&f, "bob", PASSWORD).await, 403, "account_disabled").await;
    let (status, body) = admin
        .json(
            Method::PATCH,
            "/admin/users/nobody-here",
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("user_not_found")),
        "{body}"
    );

    // The audit log has it all, newest first, with who, what, whom and from where.
    let (status, log) = admin
        .json(Method::GET, "/admin/audit?limit=500", None)
        .await;
    assert_eq!(status, 200, "{log}");
    let log = log.as_array().unwrap();
    let find = |action: &str, outcome: &str| {
        log.iter()
            .find(|e| e["action"] == action && e["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {action} {outcome} in {log:#?}"))
    };
    let disable = find("admin.user.disable", "success");
    assert_eq!(disable["actor"].as_str(), Some(admin_id.as_str()));
    assert_eq!(disable["target"].as_str(), Some(bob_id.as_str()));
    assert_eq!(disable["ip"], "127.0.0.1");
    find("login", "failure");
    find("token.create", "success");
    let ids: Vec<i64> = log.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    // Filtered and paged.
    let (_, admins) = admin
        .json(Method::GET, "/admin/audit?action=admin.", None)
        .await;
    assert!(
        admins
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"].as_str().unwrap().starts_with("admin.")),
        "{admins}"
    );
    let (_, page) = admin
        .json(
            Method::GET,
            &format!("/admin/audit?limit=2&before={}", ids[0]),
            None,
        )
        .await;
    assert_eq!(page.as_array().unwrap().len(), 2);
    assert_eq!(page[0]["id"].as_i64(), Some(ids[1]));
}

#[tokio::test]
async fn rate_limits_refuse_the_request_past_the_line_and_not_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(
        dir.path(),
        &[
            ("FERRY_AUTH__API_BURST", "5"),
            ("FERRY_AUTH__API_RATE", "1"),
            ("FERRY_AUTH__LOGIN_ACCOUNT_BURST", "3"),
            ("FERRY_AUTH__LOGIN_ACCOUNT_PER_MINUTE", "1"),
        ],
    );
    let admin = admin(&f).await;
    let (_, made) = admin
        .json(
            Method::POST,
            "/me/tokens",
            Some(json!({"name": "t", "scopes": ["read"]})),
        )
        .await;
    let token = made["token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    // One budget of 5 at once per user, whatever the credential: the session made the
    // token (1), the token takes 4 more, and the next request is refused either way.
    for i in 0..4 {
        let r = http
            .get(f.url("/jobs"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "request {i}");
    }
    let r = http
        .get(f.url("/jobs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    expect(r, 429, "rate_limited").await;
    let r = admin.req(Method::GET, "/jobs").send().await.unwrap();
    expect(r, 429, "rate_limited").await;

    // Logins per account: three tries, then 429 even with the right password.
    for _ in 0..3 {
        expect(
            login(&f, "root", "wrong password").await,
            401,
            "invalid_credentials",
        )
        .await;
    }
    let r = login(&f, "root", PASSWORD).await;
    assert!(r.headers().contains_key("retry-after"));
    expect(r, 429, "rate_limited").await;
}

#[tokio::test]
async fn a_user_lists_their_sessions_and_signs_one_browser_out() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path(), &[]);
    let root = admin(&f).await;
    add_user(&f, "alice", false);
    add_user(&f, "bob", false);
    let laptop = browser(&f, "alice").await;
    let r = reqwest::Client::new()
        .post(f.url("/auth/login"))
        .header(
            "User-Agent",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) <b>Safari/604.1",
        )
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let phone = Browser::new(&f, session_cookie(&r));
    let bob = browser(&f, "bob").await;

    let (status, list) = laptop.json(Method::GET, "/me/sessions", None).await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    let current: Vec<bool> = list
        .iter()
        .map(|s| s["current"].as_bool().unwrap())
        .collect();
    assert_eq!(
        current,
        vec![false, true],
        "newest (the phone) first: {list:?}"
    );
    let phones = list[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(phones.len(), 16);
    assert!(
        !list.iter().any(|s| s.to_string().contains(&phone.cookie)),
        "no secret in the list"
    );
    assert!(list[0]["user_agent"].as_str().unwrap().contains("iPhone"));
    // The account page names the browser, and escapes what it said.
    let page = laptop
        .http
        .get(format!("{}/account", f.base))
        .header("Cookie", format!("ferry_session={}", laptop.cookie))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Safari on iOS") && page.contains("(this one)"),
        "{page}"
    );
    assert!(!page.contains("<b>Safari"));

    // A script's token may not see where Alice is signed in.
    let (status, made) = laptop
        .json(
            Method::POST,
            "/me/tokens",
            Some(json!({"name": "script", "scopes": ["read", "write"]})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, "/me/sessions".to_owned()),
        (Method::DELETE, format!("/me/sessions/{phones}")),
    ] {
        let r = reqwest::Client::new()
            .request(method, f.url(&path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        expect(r, 403, "forbidden").await;
    }

    // Bob can neither see nor end Alice's sessions.
    let (_, bobs) = bob.json(Method::GET, "/me/sessions", None).await;
    assert_eq!(bobs.as_array().unwrap().len(), 1, "{bobs}");
    for id in [
        phones.as_str(),
        "0000000000000000",
        "not-hex",
        &"f".repeat(64),
    ] {
        let r = bob
            .req(Method::DELETE, &format!("/me/sessions/{id}"))
            .send()
            .await
            .unwrap();
        expect(r, 404, "session_not_found").await;
    }
    assert_eq!(phone.json(Method::GET, "/me", None).await.0, 200);

    // Alice signs the phone out from the laptop; the laptop stays signed in.
    let (status, _) = laptop
        .json(Method::DELETE, &format!("/me/sessions/{phones}"), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(phone.json(Method::GET, "/me", None).await.0, 401);
    assert_eq!(laptop.json(Method::GET, "/me", None).await.0, 200);
    let (_, list) = laptop.json(Method::GET, "/me/sessions", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let (_, log) = root
        .json(Method::GET, "/admin/audit?action=logout", None)
        .await;
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|e| e["target"] == phones.as_str()),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bytes_per_job_quota_holds_for_a_url_job() {
    init();
    let (_keep, root) = test_dir();
    let file = root.join("origin").join("big.bin");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    common::origin::random_file(&file, 256 * 1024);
    let origin = common::origin::Origin::start(&file, "big.bin").await;
    let f = ferry(
        &root,
        &[
            ("FERRY_AUTH__QUOTAS__JOB_BYTES", "100000"),
            ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]"),
        ],
    );
    let admin = admin(&f).await;
    let url = format!("http://{}/big.bin", origin.addr);
    let (status, body) = admin
        .json(Method::POST, "/jobs", Some(json!({"source": {"url": url}})))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("quota_exceeded")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("job_bytes"),
        "{body}"
    );
    let (_, page) = admin.json(Method::GET, "/jobs", None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0, "{page}");
}

#[tokio::test]
async fn quotas_refuse_the_job_past_the_line_and_me_shows_the_usage() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path(), &[("FERRY_AUTH__QUOTAS__ACTIVE_JOBS", "2")]);
    let admin = admin(&f).await;
    add_user(&f, "bob", false);
    let bob = browser(&f, "bob").await;
    let submit = |name: &str| {
        let body = json!({"source": {"magnet": lonely_magnet(name)}});
        bob.json(Method::POST, "/jobs", Some(body))
    };
    let (status, first) = submit("q1").await;
    assert_eq!(status, 201, "{first}");
    let (status, _) = submit("q2").await;
    assert_eq!(status, 201, "the second of two");
    let (status, body) = submit("q3").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("quota_exceeded")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("active_jobs") && message.contains('2'),
        "{message}"
    );
    let (_, me) = bob.json(Method::GET, "/me", None).await;
    assert_eq!(me["quotas"]["active_jobs"], 2, "{me}");
    assert_eq!(me["usage"]["active_jobs"], 2, "{me}");

    // An admin raises Bob's own limit: one more fits, and the next does not.
    let bob_id = me["user"]["id"].as_str().unwrap();
    // (A quota given as null is refused: leaving it out means the default.)
    let r = admin
        .req(Method::PATCH, &format!("/admin/users/{bob_id}"))
        .json(&json!({"quotas": {"active_jobs": null}}))
        .send()
        .await
        .unwrap();
    expect(r, 400, "invalid_request").await;
    let (status, changed) = admin
        .json(
            Method::PATCH,
            &format!("/admin/users/{bob_id}"),
            Some(json!({"quotas": {"active_jobs": 3}})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(submit("q3").await.0, 201);
    assert_eq!(submit("q4").await.0, 403);
    // Cancelling one frees its place.
    let id = first["id"].as_str().unwrap();
    let (status, _) = bob.json(Method::DELETE, &format!("/jobs/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(submit("q4").await.0, 201);
    // Other users are not held back by Bob's jobs.
    let (status, _) = admin
        .json(
            Method::POST,
            "/jobs",
            Some(json!({"source": {"magnet": lonely_magnet("q5")}})),
        )
        .await;
    assert_eq!(status, 201);
    // The job actions are in the audit log.
    let (_, log) = admin
        .json(Method::GET, "/admin/audit?action=job.", None)
        .await;
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"job.cancel") && actions.contains(&"job.submit"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn an_installation_from_before_accounts_opens_and_its_first_admin_owns_everything() {
    use ferry_application::ports::JobRepository;
    use ferry_migrations::{Migrator, MigratorTrait};
    init();
    // A data dir as the version before accounts left it: its schema, and a job of the
    // single owner `local`.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ferry");
    std::fs::create_dir_all(&data).unwrap();
    let url = format!("sqlite://{}?mode=rwc", data.join("ferry.db").display());
    let db = ferry_database::connect(&url).await.unwrap();
    let accounts = Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261210_000001_accounts")
        .unwrap() as u32;
    Migrator::up(&db, Some(accounts)).await.unwrap();
    let magnet = ferry_domain::MagnetLink::parse(&lonely_magnet("from-before")).unwrap();
    let job = ferry_domain::Job::from_magnet(
        ferry_domain::OwnerId::local(),
        magnet,
        ferry_domain::FileSelection::All,
        chrono::Utc::now(),
    );
    ferry_database::SqlJobRepository::new(db.clone())
        .insert(&job)
        .await
        .unwrap();
    db.close().await.unwrap();

    // The new version opens it, offers a setup link for the first admin, who owns the job.
    let f = Ferry::start(&data, &[]);
    let admin = admin(&f).await;
    let (_, me) = admin.json(Method::GET, "/me", None).await;
    assert_eq!(me["user"]["id"], "local", "{me}");
    assert_eq!(me["user"]["role"], "admin", "{me}");
    let (status, page) = admin.json(Method::GET, "/jobs", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["items"][0]["id"].as_str(),
        Some(job.id.to_string().as_str()),
        "{page}"
    );
    // The bootstrap token stands for that admin too.
    let (status, via) = f.get_json("/me").await;
    assert_eq!(
        (status, via["user"]["id"].as_str()),
        (200, Some("local")),
        "{via}"
    );
}
