//! `ferry serve` started the way a new user or a service manager starts it: no logging
//! settings, stdout not a terminal. Stdout carries JSON log lines only, libraries stay out of
//! `info`, and start-up ends by saying where Ferry listens (the port it bound, also when
//! asked for port 0) and how to authenticate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Targets whose `info` lines are Ferry's (its crates, the HTTP request log among them).
fn ferrys(target: &str) -> bool {
    target.starts_with("ferry")
}

#[tokio::test]
async fn a_first_start_logs_json_to_a_pipe_keeps_libraries_quiet_and_says_how_to_connect() {
    init();
    let (_keep, root) = test_dir();
    let (out, err) = (root.join("stdout"), root.join("stderr"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .current_dir(&root)
        .env_remove("RUST_LOG");
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("FERRY_")) {
        cmd.env_remove(key);
    }
    // No DHT and a loopback engine: the test stays off the internet.
    cmd.env("FERRY_TORRENT__DHT", "false")
        .env("FERRY_TORRENT__LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut ferry = Proc {
        child: cmd.spawn().unwrap(),
        name: "ferry".into(),
        log: err.clone(),
    };

    // Start-up ends with where Ferry listens and a request that works as printed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let said = loop {
        let said = std::fs::read_to_string(&err).unwrap_or_default();
        if said.contains("Stop with Ctrl-C") {
            break said;
        }
        if let Some(status) = ferry.child.try_wait().unwrap() {
            panic!("ferry exited with {status}:\n{said}");
        }
        assert!(Instant::now() < deadline, "no start-up message:\n{said}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Asked for port 0, Ferry names the port it bound.
    let port = ready_port(&said).unwrap_or_else(|| panic!("no port in:\n{said}"));
    assert_ne!(port, 0, "{said}");
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        said.contains(&format!("Ferry is ready on {base}")),
        "{said}"
    );
    let curl = said
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("curl -H \"Authorization: Bearer"))
        .unwrap_or_else(|| panic!("no curl line:\n{said}"));
    let token_file = curl
        .split("$(cat ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("the curl line reads no token file: {curl}"));
    let token = std::fs::read_to_string(root.join(token_file)).unwrap();
    assert!(
        said.contains(token.trim()),
        "a new token is shown once: {said}"
    );
    let url = curl.rsplit(' ').next().unwrap();
    assert_eq!(url, format!("{base}/api/v1/jobs"));
    // A first start also says how to set the admin's password, with a link that works.
    let setup = said
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("curl -X POST") && l.contains("/api/v1/auth/setup"))
        .unwrap_or_else(|| panic!("no setup line:\n{said}"));
    let body = setup
        .split("-d '")
        .nth(1)
        .and_then(|rest| rest.strip_suffix('\''))
        .unwrap_or_else(|| panic!("no body in {setup}"))
        .replace("<at least 8 characters>", "a long password");
    let answer = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/setup"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200, "{setup}");
    let answer = reqwest::Client::new()
        .get(url)
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    // A signed link's token is its path, and callbacks carry codes in their query: the
    // request log shows neither.
    let answer = reqwest::Client::new()
        .get(format!(
            "{base}/api/v1/links/LINK-SECRET-1234?code=QUERY-SECRET-5678"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 403);

    ferry.signal(15);
    let status = ferry.wait_timeout(Duration::from_secs(30)).expect("stops");
    assert!(status.success(), "{status}");

    let logged = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<Value> = logged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    // The log says where Ferry listens too: the port it bound.
    assert!(
        lines.iter().any(|l| l["message"] == "ferry is serving"
            && l["level"] == "INFO"
            && l["addr"] == format!("127.0.0.1:{port}").as_str()),
        "{logged}"
    );
    let chatter: Vec<&Value> = lines
        .iter()
        .filter(|l| matches!(l["level"].as_str(), Some("INFO" | "DEBUG" | "TRACE")))
        .filter(|l| !ferrys(l["target"].as_str().unwrap_or_default()))
        .collect();
    assert!(chatter.is_empty(), "library lines at info: {chatter:#?}");
    assert!(
        logged.contains("/api/v1/links/{token}") && logged.contains("\"status\":403"),
        "the link request is logged: {logged}"
    );
    for secret in ["LINK-SECRET-1234", "QUERY-SECRET-5678"] {
        assert!(!logged.contains(secret), "{secret} logged: {logged}");
    }
    assert!(!logged.contains("\"target\":\"opentelemetry"), "{logged}");
}
