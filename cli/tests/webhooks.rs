//! Webhooks end to end, with the real `ferry serve` and a receiver written here: URL jobs
//! against a local origin complete and fail; the receiver checks each delivery's signature
//! (HMAC-SHA256 computed here, independently) with the secret given at creation, its event
//! and its job; it answers 500 twice, then 200, and sees three attempts, each wait at least
//! its step of the backoff schedule, and one delivery id; a failed job has exactly one
//! `job.failed` delivery; internal endpoints are refused at creation (a tripwire sees nothing);
//! another user's webhooks answer 404; hostile bodies get 4xx with a code; a delivery
//! pending across a restart is still delivered; `ferry keys rotate` re-seals the secrets (a
//! delivery after the old key is gone is signed with the same secret); and `ferry webhooks …`
//! on the command line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::login::*;
use common::origin::*;
use common::*;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{EndpointExt, Request, Response, Route, Server, handler};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    at: Instant,
    event: String,
    delivery: String,
    signature: String,
    body: Vec<u8>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone, Default)]
struct Inbox {
    got: Arc<Mutex<Vec<Got>>>,
    /// Statuses to answer, in order; then `otherwise`.
    answers: Arc<Mutex<VecDeque<u16>>>,
    otherwise: Arc<std::sync::atomic::AtomicU16>,
}

#[handler]
async fn receive(req: &Request, body: poem::Body, Data(inbox): Data<&Inbox>) -> Response {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let got = Got {
        at: Instant::now(),
        event: header("x-ferry-event"),
        delivery: header("x-ferry-delivery"),
        signature: header("x-ferry-signature"),
        body: body.into_vec().await.unwrap(),
    };
    inbox.got.lock().unwrap().push(got);
    let status = inbox
        .answers
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| inbox.otherwise.load(Ordering::SeqCst));
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .finish()
}

struct Receiver {
    addr: SocketAddr,
    inbox: Inbox,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inbox = Inbox::default();
        inbox.otherwise.store(200, Ordering::SeqCst);
        let app = Route::new().at("/hook", receive).data(inbox.clone());
        tokio::spawn(
            Server::new_with_acceptor(poem::listener::TcpAcceptor::from_tokio(listener).unwrap())
                .run(app),
        );
        Self { addr, inbox }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn got(&self) -> Vec<Got> {
        self.inbox.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests with `event` arrived; returns them.
    async fn wait_for(&self, event: &str, n: usize) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let got: Vec<Got> = self
                .got()
                .into_iter()
                .filter(|g| g.event == event)
                .collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{event} × {n} never arrived: {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// HMAC-SHA256, written here from its definition (RFC 2104), not Ferry's.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Checks `X-Ferry-Signature` as a receiver should: `t` within 5 minutes, `v1` the HMAC of
/// `"{t}.{body}"` keyed by the secret as given.
fn assert_signed(got: &Got, secret: &str) {
    let mut t = None;
    let mut v1 = None;
    for part in got.signature.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().unwrap()),
            Some(("v1", v)) => v1 = Some(hex::decode(v).unwrap()),
            _ => {}
        }
    }
    let (t, v1) = (t.unwrap(), v1.unwrap());
    let now = chrono::Utc::now().timestamp();
    assert!((now - t).abs() <= 300, "signed at {t}, now {now}");
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(&got.body);
    assert_eq!(v1, hmac_sha256(secret.as_bytes(), &message), "{got:?}");
}

fn ferry(root: &Path) -> Ferry {
    init();
    Ferry::start(
        &root.join("ferry"),
        &[
            ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]"),
            ("FERRY_WEBHOOKS__RETRY_BASE", "1s"),
            ("FERRY_WEBHOOKS__MAX_ATTEMPTS", "8"),
            ("FERRY_WEBHOOKS__TIMEOUT", "5s"),
            ("FERRY_WEBHOOKS__POLL", "200ms"),
            ("FERRY_WORKERS__MAX_ATTEMPTS", "2"),
        ],
    )
}

async fn send(f: &Ferry, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = f.req(method, path);
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn deliveries(f: &Ferry, hook: &str) -> Vec<Value> {
    let (status, list) = f
        .get_json(&format!("/webhooks/{hook}/deliveries?limit=100"))
        .await;
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().clone()
}

/// Waits until the webhook's delivery `id` is `state`.
async fn wait_delivery(f: &Ferry, hook: &str, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let found = deliveries(f, hook)
            .await
            .into_iter()
            .find(|d| d["id"] == id);
        if let Some(d) = &found
            && d["state"] == state
        {
            return d.clone();
        }
        assert!(
            Instant::now() < deadline,
            "delivery {id} never {state}: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_kept_apart_and_survive_a_restart() {
    let (_keep, root) = test_dir();
    let receiver = Receiver::start().await;
    let (tripwire_addr, tripwire_hits) = tripwire("127.0.0.2").await;
    let good = root.join("origin").join("release.bin");
    std::fs::create_dir_all(good.parent().unwrap()).unwrap();
    let sha = random_file(&good, 64 * 1024);
    let origin = Origin::start(&good, "release.bin").await;
    let broken = Origin::start(&good, "release.bin").await;
    let f = ferry(&root);
    admin(&f).await;
    add_user(&f, "bob", false);
    let bob = browser(&f, "bob").await;

    // Internal endpoints are refused at creation, and nothing connects to them.
    for url in [
        format!("http://{tripwire_addr}/hook"),
        format!("http://2130706434:{}/hook", tripwire_addr.port()),
        "http://10.0.0.1/hook".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]/hook".to_owned(),
    ] {
        let (status, body) = send(&f, Method::POST, "/webhooks", Some(json!({"url": url}))).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("url_not_allowed")),
            "{url}: {body}"
        );
    }

    // Hostile bodies: a clear 4xx with a code.
    let long = format!("http://127.0.0.1/{}", "a".repeat(3000));
    for (body, code) in [
        (json!({"url": long}), None),
        (
            json!({"url": "ftp://127.0.0.1/hook"}),
            Some("invalid_webhook"),
        ),
        (
            json!({"url": "javascript:alert(1)"}),
            Some("invalid_webhook"),
        ),
        (
            json!({"url": "http://user:pw@127.0.0.1/"}),
            Some("invalid_webhook"),
        ),
        (
            json!({"url": receiver.url(), "events": ["job.exploded"]}),
            None,
        ),
        (json!({"url": receiver.url(), "events": []}), None),
        (json!({"url": receiver.url(), "events": ["ping"]}), None),
        (json!({"url": receiver.url(), "enabled": "yes"}), None),
        (json!({"events": ["job.failed"]}), None),
        (json!([1, 2]), None),
    ] {
        let (status, answer) = send(&f, Method::POST, "/webhooks", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let got = answer["code"].as_str().unwrap_or_default().to_owned();
        match code {
            Some(code) => assert_eq!(got, code, "{body}: {answer}"),
            None => assert!(
                got == "invalid_request" || got == "invalid_webhook",
                "{body}: {answer}"
            ),
        }
    }
    let r = f
        .req(Method::POST, "/webhooks")
        .header("content-type", "application/json")
        .body("{\"url\": ")
        .send()
        .await
        .unwrap();
    expect(r, 400, "invalid_request").await;
    for path in [
        "/webhooks/not-a-uuid",
        "/webhooks/0198f0a2-0000-7000-8000-000000000000",
    ] {
        let (status, body) = f.get_json(path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("webhook_not_found")),
            "{body}"
        );
    }
    assert_eq!(
        tripwire_hits.load(Ordering::SeqCst),
        0,
        "nothing reached the tripwire"
    );

    // A webhook on every event; its secret is shown once.
    let (status, created) = send(
        &f,
        Method::POST,
        "/webhooks",
        Some(json!({"url": receiver.url()})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let hook = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    assert_eq!(
        created["events"],
        json!(["job.completed", "job.failed", "job.seeding_finished"])
    );
    let (_, listed) = f.get_json("/webhooks").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(
        listed[0].get("secret").is_none(),
        "the secret is never shown again: {listed}"
    );

    for query in ["limit=0", "limit=101", "limit=x", "before=nope"] {
        let (status, body) = f
            .get_json(&format!("/webhooks/{hook}/deliveries?{query}"))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_request")),
            "{query}: {body}"
        );
    }
    let (status, body) = send(
        &f,
        Method::PATCH,
        &format!("/webhooks/{hook}"),
        Some(json!({"events": ["job.exploded"]})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );

    // Another user: the webhook, its deliveries and every action answer 404.
    for (method, path) in [
        (Method::GET, format!("/webhooks/{hook}")),
        (Method::GET, format!("/webhooks/{hook}/deliveries")),
        (Method::POST, format!("/webhooks/{hook}/ping")),
        (Method::POST, format!("/webhooks/{hook}/secret")),
        (Method::DELETE, format!("/webhooks/{hook}")),
    ] {
        let (status, body) = bob.json(method.clone(), &path, None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("webhook_not_found")),
            "{method} {path}: {body}"
        );
    }
    let (status, body) = bob
        .json(
            Method::PATCH,
            &format!("/webhooks/{hook}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("webhook_not_found")),
        "{body}"
    );
    assert_eq!(bob.json(Method::GET, "/webhooks", None).await.1, json!([]));

    // Bob's own webhook, on every event, there before alice's jobs run: it must never hear
    // of them.
    let bobs_receiver = Receiver::start().await;
    let (status, _) = bob
        .json(
            Method::POST,
            "/webhooks",
            Some(json!({"url": bobs_receiver.url()})),
        )
        .await;
    assert_eq!(status, 201);

    // A completed job: the receiver answers 500 twice, then 200.
    receiver.inbox.answers.lock().unwrap().extend([500, 500]);
    let (status, job) = f
        .post_json(
            "/jobs",
            json!({"source": {"url": format!("http://{}/release.bin", origin.addr)}}),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    let job_id = job["id"].as_str().unwrap().to_owned();
    let done = f
        .wait_status(&job_id, "completed", Duration::from_secs(120))
        .await;
    assert_eq!(done["content_sha256"], sha.as_str());
    let tries = receiver.wait_for("job.completed", 3).await;
    let id = tries[0].delivery.clone();
    for got in &tries {
        assert_eq!(got.delivery, id, "one delivery id on every attempt");
        assert_eq!(got.body, tries[0].body, "the same body on every attempt");
        assert_signed(got, &secret);
        let body = got.json();
        assert_eq!(body["id"], id.as_str());
        assert_eq!(body["event"], "job.completed");
        assert_eq!(body["job"]["id"], job_id.as_str());
        assert_eq!(body["job"]["status"], "completed");
        assert_eq!(body["job"]["content_sha256"], sha.as_str());
    }
    // Each wait is at least its step of the schedule: retry_base (1s) × 2ⁿ, stretched (never
    // shortened) by up to 25 % jitter, counted from after the failed attempt's answer. Each
    // gap is checked against its own lower bound (with 10 % slack for the clocks), not
    // against the other gap: under load either may run long.
    let gaps: Vec<Duration> = tries.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps[0] >= Duration::from_millis(900),
        "first wait ≥ 1s: {gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_millis(1800),
        "second wait ≥ 2s: {gaps:?}"
    );
    let d = wait_delivery(&f, &hook, &id, "delivered").await;
    assert_eq!(
        (d["attempts"].as_u64(), d["last_status"].as_u64()),
        (Some(3), Some(200)),
        "{d}"
    );
    assert_eq!(d["event"], "job.completed");
    assert_eq!(d["job_id"], job_id.as_str());
    assert!(
        d.get("last_error").is_none() && d["delivered_at"].is_string(),
        "{d}"
    );

    // A failed job (the origin answers 500 until the fetch's attempts run out).
    broken.control.fail(Some(500));
    let (status, job) = f
        .post_json(
            "/jobs",
            json!({"source": {"url": format!("http://{}/release.bin", broken.addr)}}),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    let failed_id = job["id"].as_str().unwrap().to_owned();
    f.wait_status(&failed_id, "failed", Duration::from_secs(120))
        .await;
    let failed = receiver.wait_for("job.failed", 1).await;
    assert_eq!(failed.len(), 1, "one delivery per event");
    assert_signed(&failed[0], &secret);
    let body = failed[0].json();
    assert_eq!(body["job"]["id"], failed_id.as_str());
    assert_eq!(body["job"]["status"], "failed");
    assert_eq!(body["job"]["error"]["code"], "url_unavailable");
    // Exactly one job.failed delivery for that job in the history, once delivered.
    let failed_delivery = failed[0].delivery.clone();
    wait_delivery(&f, &hook, &failed_delivery, "delivered").await;
    let of_failed: Vec<Value> = deliveries(&f, &hook)
        .await
        .into_iter()
        .filter(|d| d["event"] == "job.failed" && d["job_id"] == failed_id.as_str())
        .collect();
    assert_eq!(of_failed.len(), 1, "no duplicate: {of_failed:?}");
    assert_eq!(of_failed[0]["id"], failed_delivery.as_str());

    // A delivery pending across a restart: the receiver is down (503) for the first
    // attempt, Ferry stops, the receiver comes back, Ferry starts again and delivers it.
    receiver.inbox.otherwise.store(503, Ordering::SeqCst);
    let (status, ping) = send(&f, Method::POST, &format!("/webhooks/{hook}/ping"), None).await;
    assert_eq!(status, 202, "{ping}");
    let ping_id = ping["id"].as_str().unwrap().to_owned();
    // Pings are spaced out per webhook: a second one at once is refused, with when to retry.
    let r = f
        .req(Method::POST, &format!("/webhooks/{hook}/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&wait), "Retry-After: {wait}");
    let refused: Value = r.json().await.unwrap();
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    receiver.wait_for("ping", 1).await;
    let f = Ferry::restart(f.stop());
    receiver.inbox.otherwise.store(200, Ordering::SeqCst);
    let d = wait_delivery(&f, &hook, &ping_id, "delivered").await;
    assert!(d["attempts"].as_u64().unwrap() >= 2, "{d}");
    let pings = receiver.got();
    let pings: Vec<&Got> = pings.iter().filter(|g| g.event == "ping").collect();
    assert!(pings.iter().all(|g| g.delivery == ping_id));
    assert_signed(pings.last().unwrap(), &secret);
    assert!(pings.last().unwrap().json().get("job").is_none());

    assert!(
        bobs_receiver.got().is_empty(),
        "bob's webhook heard of alice's jobs: {:?}",
        bobs_receiver.got()
    );

    // Disabled, then deleted with its history.
    let (status, patched) = send(
        &f,
        Method::PATCH,
        &format!("/webhooks/{hook}"),
        Some(json!({"enabled": false, "events": ["job.failed"]})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        (patched["enabled"].as_bool(), patched["events"].clone()),
        (Some(false), json!(["job.failed"]))
    );
    let (status, body) = send(
        &f,
        Method::PATCH,
        &format!("/webhooks/{hook}"),
        Some(json!({"url": format!("http://{tripwire_addr}/x")})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("url_not_allowed")),
        "{body}"
    );
    let r = f
        .req(Method::DELETE, &format!("/webhooks/{hook}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (status, _) = f.get_json(&format!("/webhooks/{hook}/deliveries")).await;
    assert_eq!(status, 404);
    assert_eq!(
        tripwire_hits.load(Ordering::SeqCst),
        0,
        "nothing reached the tripwire"
    );
    f.stop();
}

/// `ferry keys rotate` re-seals webhook signing secrets too: after it, with the old key gone
/// from the configuration, a delivery is still signed with the secret shown at creation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_secret_key_keeps_webhook_secrets_working() {
    init();
    let (_keep, root) = test_dir();
    let receiver = Receiver::start().await;
    let data = root.join("ferry");
    let old_key = "1111111111111111111111111111111111111111111111111111111111111111";
    let new_key = "2222222222222222222222222222222222222222222222222222222222222222";
    let allow = ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]");
    let poll = ("FERRY_WEBHOOKS__POLL", "200ms");
    let f = Ferry::start(&data, &[allow, poll, ("FERRY_SECRET_KEY", old_key)]);
    let (status, created) = send(
        &f,
        Method::POST,
        "/webhooks",
        Some(json!({"url": receiver.url()})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let hook = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    f.stop();

    let rotate = |env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(["keys", "rotate", "--data-dir"])
            .arg(&data)
            .env("FERRY_LOG__FORMAT", "pretty");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let both = format!("[\"{old_key}\"]");
    let env = [
        ("FERRY_SECRET_KEY", new_key),
        ("FERRY_OLD_SECRET_KEYS", both.as_str()),
    ];
    let (ok, out) = rotate(&env);
    assert!(
        ok && out.contains("webhook secrets: re-sealed 1, already current 0"),
        "{out}"
    );
    let (ok, out) = rotate(&env);
    assert!(
        ok && out.contains("webhook secrets: re-sealed 0, already current 1"),
        "{out}"
    );

    // The old key is gone: a ping is delivered, signed with the same secret.
    let f = Ferry::start(&data, &[allow, poll, ("FERRY_SECRET_KEY", new_key)]);
    let (status, ping) = send(&f, Method::POST, &format!("/webhooks/{hook}/ping"), None).await;
    assert_eq!(status, 202, "{ping}");
    let ping_id = ping["id"].as_str().unwrap().to_owned();
    let d = wait_delivery(&f, &hook, &ping_id, "delivered").await;
    assert_eq!(d["attempts"].as_u64(), Some(1), "{d}");
    let got = receiver.wait_for("ping", 1).await;
    assert_signed(&got[0], &secret);
    f.stop();

    // Without the key that sealed it, rotation reports the webhook and fails.
    let (ok, out) = rotate(&[(
        "FERRY_SECRET_KEY",
        "3333333333333333333333333333333333333333333333333333333333333333",
    )]);
    assert!(
        !ok && out.contains(
            "webhook secrets: re-sealed 0, already current 0, changed meanwhile 0, unreadable 1"
        ),
        "{out}"
    );
}

/// `ferry webhooks add/ls/ping/deliveries/rm` with `--json` and without, and exit codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_manages_webhooks() {
    let (_keep, root) = test_dir();
    let receiver = Receiver::start().await;
    let f = ferry(&root);
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let run = |args: Vec<String>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(&args);
        for (key, _) in std::env::vars() {
            if key.starts_with("FERRY_") || key == "XDG_CONFIG_HOME" {
                cmd.env_remove(key);
            }
        }
        cmd.env("HOME", &home)
            .env("FERRY_CONFIG_DIR", home.join("config"))
            .env("FERRY_URL", &f.base)
            .env("FERRY_TOKEN", &f.token)
            .kill_on_drop(true);
        async move {
            let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
                .await
                .unwrap()
                .unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let args = |s: &[&str]| s.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();

    let (code, out, err) = run(args(&[
        "webhooks",
        "add",
        &receiver.url(),
        "--events",
        "completed,failed",
        "--json",
    ]))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let made: Value = serde_json::from_str(&out).unwrap();
    let id = made["id"].as_str().unwrap().to_owned();
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert_eq!(made["events"], json!(["job.completed", "job.failed"]));

    let (code, out, _) = run(args(&["webhooks", "ls"])).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&id) && out.contains("completed,failed"),
        "{out}"
    );
    let (code, out, _) = run(args(&["webhooks", "ls", "--json"])).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()[0]["id"],
        id.as_str()
    );

    let (code, out, err) = run(args(&["webhooks", "ping", &id])).await;
    assert_eq!(code, 0, "{out}{err}");
    let got = receiver.wait_for("ping", 1).await;
    assert_signed(&got[0], &secret);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out, _) = run(args(&["webhooks", "deliveries", &id, "--json"])).await;
        assert_eq!(code, 0);
        let list: Value = serde_json::from_str(&out).unwrap();
        if list[0]["state"] == "delivered" {
            assert_eq!(list[0]["event"], "ping");
            break;
        }
        assert!(Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, out, _) = run(args(&["webhooks", "deliveries", &id])).await;
    assert_eq!(code, 0);
    assert!(out.contains("ping") && out.contains("delivered"), "{out}");

    // Refusals keep the documented exit codes.
    let (code, out, _) = run(args(&["webhooks", "add", "ftp://example.org/", "--json"])).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["error"]["code"],
        "invalid_webhook"
    );
    let (code, _, err) = run(args(&[
        "webhooks",
        "add",
        &receiver.url(),
        "--events",
        "exploded",
    ]))
    .await;
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = run(args(&["webhooks", "rm", "not-a-uuid"])).await;
    assert_eq!(code, 4);

    let (code, out, err) = run(args(&["webhooks", "rm", &id])).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run(args(&["webhooks", "rm", &id, "--json"])).await;
    assert_eq!(code, 4, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["error"]["code"],
        "webhook_not_found"
    );
    let (code, out, _) = run(args(&["webhooks", "ls", "--json"])).await;
    assert_eq!((code, out.trim()), (0, "[]"));
    f.stop();
}
