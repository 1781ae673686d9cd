//! `ferry-bench auth`: requests per second of `GET /api/v1/jobs` authenticated by a session
//! cookie, a personal token, an identity provider's JWT access token and the bootstrap token,
//! against the unauthenticated `GET /api/v1/health` and `GET /api/v1/version`, on one real
//! `ferry serve` (release) and a real OpenID Connect provider, in the same run.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use ferry_testkit::Proc;
use ferry_testkit::oidc::{self, OidcServer};
use serde_json::{Value, json};

/// Requests per second of `GET url` with `header`, over `connections` keep-alive
/// connections for `seconds`; every answer must be 200.
pub async fn load(
    url: &str,
    header: Option<(&str, &str)>,
    connections: usize,
    seconds: f64,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        let mut req = client.get(url);
        if let Some((k, v)) = header {
            req = req.header(k, v);
        }
        let req = req.build()?;
        let (done, failed) = (done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let Some(r) = req.try_clone() else { break };
                match client.execute(r).await {
                    Ok(resp) if resp.status() == 200 => {
                        let _ = resp.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let failed = failed.load(Ordering::Relaxed);
    anyhow::ensure!(failed == 0, "{failed} requests to {url} did not answer 200");
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

fn wait_for(
    proc: &Proc,
    what: &str,
    find: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = find(&proc.log_text()) {
            return Ok(found);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} never appeared:\n{}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn after(text: &str, marker: &str, len: usize) -> Option<String> {
    let at = text.find(marker)? + marker.len();
    text.get(at..at + len).map(str::to_owned)
}

/// A row of the table: its name, the URL, and the header that authenticates it.
type Case<'a> = (&'a str, String, Option<(&'a str, &'a str)>);

pub async fn auth(
    ferry: &Path,
    seconds: f64,
    connections: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    let callback = "http://127.0.0.1/api/v1/auth/callback/idp";
    let idp = OidcServer::start_any_port(&[callback])
        .context("the OpenID Connect provider (node, testkit/oidc) is needed")?;
    let dir = std::env::temp_dir().join(format!("ferry-bench-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut cmd = std::process::Command::new(ferry);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .env("FERRY_TORRENT__LISTEN", "off")
        .env("FERRY_TORRENT__DHT", "false")
        .env("FERRY_LOG__LEVEL", "warn")
        .env("FERRY_AUTH__API_RATE", "1000000")
        .env("FERRY_AUTH__API_BURST", "1000000")
        .env("FERRY_AUTH__OIDC__IDP__ISSUER", idp.issuer())
        .env("FERRY_AUTH__OIDC__IDP__CLIENT_ID", oidc::CLIENT_ID)
        .env("FERRY_AUTH__OIDC__IDP__CLIENT_SECRET", oidc::CLIENT_SECRET)
        .env("FERRY_AUTH__OIDC__IDP__AUTO_PROVISION", "true")
        .env(
            "FERRY_AUTH__OIDC__IDP__ACCESS_TOKEN_AUDIENCE",
            oidc::RESOURCE,
        );
    let proc = Proc::spawn("ferry", cmd, dir.join("ferry.log"));
    let base = wait_for(&proc, "the ready message", |log| {
        let at = log.find("is ready on http://")? + "is ready on ".len();
        let end = log[at..].find(';')?;
        Some(log[at..at + end].to_owned())
    })?;
    let link = wait_for(&proc, "the setup link", |log| {
        after(log, "\"link\": \"", 64)
    })?;
    let bootstrap = std::fs::read_to_string(dir.join("data/api-token"))?
        .trim()
        .to_owned();
    let api = format!("{base}/api/v1");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{api}/auth/setup"))
        .json(&json!({"link": link, "username": "root", "password": "correct horse battery"}))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "setup: {}", r.status());
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("ferry_session="))
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?
        .to_owned();
    let cookie = format!("ferry_session={cookie}");
    let made: Value = http
        .post(format!("{api}/me/tokens"))
        .header("Cookie", &cookie)
        .header("Origin", &base)
        .json(&json!({"name": "bench", "scopes": ["read"]}))
        .send()
        .await?
        .json()
        .await?;
    let pat = format!("Bearer {}", made["token"].as_str().context("no token")?);
    let jwt = format!("Bearer {}", idp.access_token(oidc::ALICE).await);
    let bootstrap = format!("Bearer {bootstrap}");
    let jobs = format!("{api}/jobs");
    let cases: Vec<Case<'_>> = vec![
        ("/version, no auth", format!("{api}/version"), None),
        ("/health, no auth", format!("{api}/health"), None),
        (
            "/jobs, bootstrap token",
            jobs.clone(),
            Some(("Authorization", bootstrap.as_str())),
        ),
        (
            "/jobs, session cookie",
            jobs.clone(),
            Some(("Cookie", cookie.as_str())),
        ),
        (
            "/jobs, personal token",
            jobs.clone(),
            Some(("Authorization", pat.as_str())),
        ),
        (
            "/jobs, IdP JWT",
            jobs.clone(),
            Some(("Authorization", jwt.as_str())),
        ),
    ];
    // Warm up (JWKS fetched, pools filled).
    for (_, url, header) in &cases {
        load(url, *header, connections, 0.5).await?;
    }
    let mut best = vec![0f64; cases.len()];
    for _ in 0..rounds {
        for (i, (_, url, header)) in cases.iter().enumerate() {
            best[i] = best[i].max(load(url, *header, connections, seconds).await?);
        }
    }
    println!(
        "{connections} connections, {seconds} s per run, best of {rounds} rounds (alternating)"
    );
    println!(
        "{:<26} {:>10} {:>14} {:>16}",
        "request", "req/s", "vs /health", "vs bootstrap"
    );
    for (i, (name, _, _)) in cases.iter().enumerate() {
        println!(
            "{:<26} {:>10.0} {:>13.2}× {:>15.2}×",
            name,
            best[i],
            best[i] / best[1],
            best[i] / best[2]
        );
    }
    drop(proc);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
