//! Signed file links on the real `ferry serve`: a completed job's file fetched through its
//! link by a client that has no cookie and no token (whole and by `Range`; from local
//! storage, and by redirect from S3), and every way a link must not work — another user's
//! job, a token changed to name another file or job, `alg: none`, another key, an expired
//! link, an owner disabled since, a purged job.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::login::*;
use common::origin::*;
use common::s3::*;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn ferry(dir: &std::path::Path, env: &[(&str, &str)]) -> Ferry {
    init();
    let mut all = vec![("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]")];
    all.extend_from_slice(env);
    Ferry::start(&dir.join("ferry"), &all)
}

/// A client with no cookie jar, no token, and no redirects followed.
fn anonymous() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The link's token: the last path segment of its URL.
fn token_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

/// The same link with another token.
fn with_token(url: &str, token: &str) -> String {
    format!("{}/{token}", url.rsplit_once('/').unwrap().0)
}

fn payload(token: &str) -> Value {
    serde_json::from_slice(&B64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// `token` with its payload changed by `change`, the header and signature kept.
fn tampered(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut p = payload(token);
    change(&mut p);
    format!("{}.{}.{}", parts[0], B64.encode(p.to_string()), parts[2])
}

/// A token of `header` and `payload` signed with HMAC-SHA256 under `key` (`None`: unsigned).
fn forged(header: Value, payload: &Value, key: Option<&[u8]>) -> String {
    use aws_lc_rs::hmac;
    let message = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(payload.to_string())
    );
    let signature = key.map_or_else(String::new, |key| {
        B64.encode(hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, key),
            message.as_bytes(),
        ))
    });
    format!("{message}.{signature}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_fetches_its_one_file_without_credentials_until_revoked() {
    let (_keep, root) = test_dir();
    std::fs::create_dir_all(root.join("origin")).unwrap();
    let movie = root.join("origin/movie.mp4");
    let movie_sha = random_file(&movie, 3 << 20);
    let other = root.join("origin/other.bin");
    random_file(&other, 100_000);
    let movie_origin = Origin::start(&movie, "movie.mp4").await;
    let other_origin = Origin::start(&other, "other.bin").await;
    let f = ferry(&root, &[]);
    let admin = admin(&f).await;
    add_user(&f, "alice", false);
    add_user(&f, "bob", false);
    let alice = browser(&f, "alice").await;
    let bob = browser(&f, "bob").await;
    let job = alice
        .completed_url_job(
            &format!("http://{}/movie.mp4", movie_origin.addr),
            json!({}),
        )
        .await;
    let other_job = alice
        .completed_url_job(
            &format!("http://{}/other.bin", other_origin.addr),
            json!({}),
        )
        .await;

    // The link: under the public URL, ending in an hour.
    let (status, link) = alice.link(&job, 0).await;
    assert_eq!(status, 200, "{link}");
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}/api/v1/links/", f.base)),
        "{url}"
    );
    let expires: chrono::DateTime<chrono::Utc> =
        link["expires_at"].as_str().unwrap().parse().unwrap();
    let left = expires - chrono::Utc::now();
    assert!(
        left > chrono::Duration::minutes(58) && left <= chrono::Duration::hours(1),
        "{left}"
    );
    let claims = payload(token_of(&url));
    assert_eq!(
        (claims["aud"].as_str(), claims["file"].as_u64()),
        (Some("ferry-file-link"), Some(0))
    );
    assert_eq!(claims["sub"].as_str().unwrap(), alice.user_id().await);
    assert_ne!(
        token_of(&alice.link_url(&job, 0).await),
        token_of(&url),
        "every link is new"
    );

    // Whole, and a range, with no cookie and no token.
    let http = anonymous();
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("movie.mp4")
    );
    assert_eq!(sha256_hex(&r.bytes().await.unwrap()), movie_sha);
    let whole = std::fs::read(&movie).unwrap();
    let r = http
        .get(&url)
        .header("Range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 1000-1999/{}", whole.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &whole[1000..2000]);
    let r = http
        .get(&url)
        .header("Range", format!("bytes={}-", whole.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 416);

    // Only someone who may read the job makes a link.
    expect(
        http.get(f.url(&format!("/jobs/{job}/files/0/link")))
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let (status, body) = bob.link(&job, 0).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("job_not_found")),
        "{body}"
    );
    assert!(!body.to_string().contains("ferry-file-link"), "{body}");
    let (status, body) = alice.link(&job, 1).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("file_not_found")),
        "{body}"
    );

    // A link for file 0 of this job opens nothing else: the token names the file and the
    // job, and a changed token is refused, as are forgeries.
    let token = token_of(&url).to_owned();
    let alice_id = alice.user_id().await;
    let bob_id = bob.user_id().await;
    let mut refused = vec![
        tampered(&token, |p| p["file"] = json!(1)),
        tampered(&token, |p| p["job"] = json!(other_job)),
        tampered(&token, |p| p["sub"] = json!(bob_id)),
        tampered(&token, |p| {
            p["exp"] = json!(p["exp"].as_i64().unwrap() + 86_400);
        }),
        forged(json!({"alg": "none", "typ": "JWT"}), &claims, None),
        forged(json!({"alg": "none"}), &claims, Some(b"x")),
        forged(
            json!({"alg": "HS256", "typ": "JWT"}),
            &claims,
            Some(b"another key"),
        ),
        forged(
            json!({"alg": "HS256", "typ": "JWT"}),
            &claims,
            Some(
                std::fs::read_to_string(f.data_dir.join("secret-key"))
                    .unwrap()
                    .trim()
                    .as_bytes(),
            ),
        ),
        token[..token.len() - 2].to_owned(),
        "not-a-link".to_owned(),
        "a".repeat(3000),
        "%00%2e%2e%2f".to_owned(),
        "..%2f..%2fetc%2fpasswd".to_owned(),
    ];
    // Another job of hers, linked for real, still opens only that job.
    let other_url = alice.link_url(&other_job, 0).await;
    refused.push(tampered(token_of(&other_url), |p| p["job"] = json!(job)));
    for bad in &refused {
        let r = http.get(with_token(&url, bad)).send().await.unwrap();
        let body = expect(r, 403, "invalid_link").await;
        assert!(!body.to_string().contains(&alice_id), "{body}");
    }
    let r = http.get(&other_url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 100_000);

    // Disabling the owner revokes her links at once; enabling her brings them back.
    let (status, _) = admin
        .json(
            Method::PATCH,
            &format!("/admin/users/{alice_id}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 200);
    expect(http.get(&url).send().await.unwrap(), 403, "invalid_link").await;
    let (status, _) = admin
        .json(
            Method::PATCH,
            &format!("/admin/users/{alice_id}"),
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(http.get(&url).send().await.unwrap().status().as_u16(), 200);

    // Purged: refused while the purge runs, then gone. (Disabling ended her session.)
    let alice = browser(&f, "alice").await;
    let r = alice
        .req(Method::DELETE, &format!("/jobs/{job}?purge=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = http.get(&url).send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        match (status, body["code"].as_str()) {
            (404, Some("job_not_found")) => break,
            (409, Some("job_purging")) => {}
            other => panic!("a purged job's link answered {other:?}: {body}"),
        }
        assert!(Instant::now() < deadline, "the purge never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_stops_working_when_it_expires() {
    let (_keep, root) = test_dir();
    std::fs::create_dir_all(root.join("origin")).unwrap();
    let file = root.join("origin/clip.bin");
    random_file(&file, 50_000);
    let origin = Origin::start(&file, "clip.bin").await;
    let f = ferry(&root, &[("FERRY_AUTH__LINK_TTL", "2s")]);
    add_user(&f, "carol", false);
    let carol = browser(&f, "carol").await;
    let job = carol
        .completed_url_job(&format!("http://{}/clip.bin", origin.addr), json!({}))
        .await;
    let before = chrono::Utc::now();
    let (status, link) = carol.link(&job, 0).await;
    assert_eq!(status, 200, "{link}");
    let url = link["url"].as_str().unwrap().to_owned();
    let expires: chrono::DateTime<chrono::Utc> =
        link["expires_at"].as_str().unwrap().parse().unwrap();
    // Whole seconds: the end lies within the next two seconds, after the last full one.
    assert!(
        expires > before && expires <= before + chrono::Duration::seconds(2),
        "{before} → {expires}"
    );
    let http = anonymous();
    let sent = chrono::Utc::now();
    let r = http.get(&url).send().await.unwrap();
    if sent < expires {
        // Almost always: the request left well before the end (the server's clock is ours).
        let got = r.status().as_u16();
        assert!(
            got == 200 || chrono::Utc::now() >= expires,
            "a live link answered {got}"
        );
    }
    drop(r);
    let wait = (expires - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(100)).await;
    let body = expect(http.get(&url).send().await.unwrap(), 403, "invalid_link").await;
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_to_a_file_in_s3_redirects_to_a_fresh_presigned_url() {
    init();
    if !require(&["aws"]) {
        return;
    }
    let (_keep, root) = test_dir();
    let Some(moto) = S3Server::start_moto(&root) else {
        return;
    };
    moto.aws(&["s3", "mb", "s3://links"]);
    std::fs::create_dir_all(root.join("origin")).unwrap();
    let file = root.join("origin/report.pdf");
    let sha = random_file(&file, 200_000);
    let origin = Origin::start(&file, "report.pdf").await;
    let f = ferry(&root, &[("FERRY_STORAGE__ALLOW_PRIVATE_ENDPOINTS", "true")]);
    let admin = admin(&f).await;
    add_user(&f, "dave", false);
    let dave = browser(&f, "dave").await;
    let (status, profile) = dave
        .json(
            Method::POST,
            "/storage-profiles",
            Some(json!({"name": "dave's bucket", "s3": {
                "endpoint": moto.endpoint(), "region": "us-east-1", "bucket": "links",
                "access_key_id": ACCESS, "secret_access_key": SECRET}})),
        )
        .await;
    assert_eq!(status, 201, "{profile}");
    let job = dave
        .completed_url_job(
            &format!("http://{}/report.pdf", origin.addr),
            json!({"storage_profile": profile["id"]}),
        )
        .await;
    let url = dave.link_url(&job, 0).await;
    assert!(url.starts_with(&f.base), "the link is Ferry's: {url}");

    let http = anonymous();
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&moto.endpoint()) && location.contains("X-Amz-Signature="),
        "{location}"
    );
    let bytes = reqwest::get(&location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_hex(&bytes), sha);

    // The link, not the presigned URL, is what a disabled owner loses at once.
    let dave_id = dave.user_id().await;
    let (status, _) = admin
        .json(
            Method::PATCH,
            &format!("/admin/users/{dave_id}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 200);
    expect(http.get(&url).send().await.unwrap(), 403, "invalid_link").await;
}
