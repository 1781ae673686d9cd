//! The `ferry` command-line client, run as a user runs it (the real binary, as a child
//! process) against the real `ferry serve`: logging in (a password on stdin or typed on a
//! terminal, the token file's mode, a wrong password), adding URL and .torrent jobs, `ls`,
//! `watch` drawing bars on a pseudo-terminal and plain lines on a pipe, `get` checked
//! against the origin's SHA-256 and resuming a cut file with `Range`, pause/resume/retry/rm,
//! the documented exit codes, completions; and a hostile server that names paths outside
//! `--out` or sends more than it said.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::login::*;
use common::origin::*;
use common::*;
use poem::web::Path as UrlPath;
use poem::{EndpointExt, Response, Route, Server, handler};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// What a run of the client printed, and its exit code.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    /// Asserts the exit code; returns self for more checks.
    fn code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code of {self:#?}");
        self
    }

    fn ok(&self) -> &Self {
        self.code(0)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:#?}"))
    }
}

/// A user of the command line: their own configuration folder and home, and the
/// environment they run `ferry` in (nothing of the test runner's own `FERRY_…`).
#[derive(Clone)]
struct Cli {
    home: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl Cli {
    fn new(root: &Path, name: &str) -> Self {
        let home = root.join(format!("home-{name}"));
        std::fs::create_dir_all(&home).unwrap();
        Self {
            config: home.join("ferry-config"),
            home,
            env: Vec::new(),
        }
    }

    /// The same user with `key=value` in their environment.
    fn with_env(&self, key: &str, value: &str) -> Self {
        let mut other = self.clone();
        other.env.push((key.to_owned(), value.to_owned()));
        other
    }

    fn command(&self, program: &Path, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args);
        for (key, _) in std::env::vars() {
            if key.starts_with("FERRY_") || key == "XDG_CONFIG_HOME" {
                cmd.env_remove(key);
            }
        }
        cmd.env("HOME", &self.home)
            .env("FERRY_CONFIG_DIR", &self.config)
            .env("TERM", "xterm");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.kill_on_drop(true);
        cmd
    }

    /// `ferry ARGS` with `input` on stdin (none: an empty stdin).
    async fn run_with(&self, args: &[&str], input: Option<&str>) -> Out {
        let mut cmd = self.command(Path::new(env!("CARGO_BIN_EXE_ferry")), args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(input) = input {
            stdin.write_all(input.as_bytes()).await.unwrap();
        }
        drop(stdin);
        let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("ferry {args:?} did not end"))
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, None).await
    }

    /// `ferry ARGS` on a pseudo-terminal (util-linux `script`), its screen written to
    /// `screen` as it comes; the child is returned to wait for.
    fn spawn_on_terminal(&self, args: &[&str], screen: &Path) -> tokio::process::Child {
        let line = std::iter::once(env!("CARGO_BIN_EXE_ferry"))
            .chain(args.iter().copied())
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = self.command(Path::new("script"), &["-qfec", &line, "/dev/null"]);
        cmd.stdin(Stdio::piped())
            .stdout(std::fs::File::create(screen).unwrap())
            .stderr(Stdio::inherit());
        cmd.spawn().unwrap()
    }

    /// The stored client file: (url, token).
    fn stored(&self) -> (String, String) {
        let text = std::fs::read_to_string(self.config.join("client.toml")).unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        (
            v["url"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }
}

/// Ferry with URL jobs allowed to reach the test's loopback origins.
fn ferry(root: &Path) -> Ferry {
    init();
    Ferry::start(
        &root.join("ferry"),
        &[("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]")],
    )
}

/// A Ferry with its first admin set up and user `alice`; `alice` logged in on the command
/// line.
async fn alice_logged_in(root: &Path) -> (Ferry, Cli) {
    let f = ferry(root);
    admin(&f).await;
    add_user(&f, "alice", false);
    let alice = Cli::new(root, "alice");
    alice
        .run_with(
            &["login", &f.base, "--user", "alice", "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        )
        .await
        .ok();
    (f, alice)
}

/// `GET /api/v1{path}` with `token`: (status, JSON).
async fn get_as(f: &Ferry, token: &str, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(f.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits until alice's job `id` is `want` (fails fast on `failed`).
async fn wait_status(f: &Ferry, cli: &Cli, id: &str, want: &str) -> Value {
    let token = cli.stored().1;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, job) = get_as(f, &token, &format!("/jobs/{id}")).await;
        assert_eq!(status, 200, "{job}");
        if job["status"] == want {
            return job;
        }
        assert!(
            job["status"] != "failed" || want == "failed",
            "job failed: {job}"
        );
        assert!(
            Instant::now() < deadline,
            "job stayed {}, wanted {want}: {job}\n{}",
            job["status"],
            f.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `path` holds text that `done` accepts; returns it.
async fn wait_for_text(path: &Path, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "never saw {what}:\n{text:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first block of a job id, as the client shows it.
fn short(id: &str) -> String {
    id.replace('-', "")[..8].to_owned()
}

fn sha256_file(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_stores_a_private_token_that_works_and_a_wrong_password_is_exit_3() {
    let (_keep, root) = test_dir();
    let (f, alice) = alice_logged_in(&root).await;

    // The token file: the URL and a personal token, readable by alice alone.
    let file = alice.config.join("client.toml");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
        let mode = std::fs::metadata(&alice.config)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
    }
    let (url, token) = alice.stored();
    assert_eq!(url, format!("{}/", f.base));
    assert!(token.starts_with("ferry_pat_"), "{token}");
    // It is alice's, named for this machine, and the login's own session was ended.
    let (status, me) = get_as(&f, &token, "/me").await;
    assert_eq!(
        (status, me["user"]["display_name"].as_str()),
        (200, Some("alice")),
        "{me}"
    );
    assert_eq!(me["via"], "token");
    let (_, tokens) = get_as(&f, &token, "/me/tokens").await;
    let names: Vec<&str> = tokens
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.len() == 1 && names[0].starts_with("ferry CLI on "),
        "{tokens}"
    );
    assert_eq!(tokens[0]["scopes"], json!(["read", "write"]));
    // The login's session made the token and was signed out (the audit log says so).
    let user = me["user"]["id"].as_str().unwrap();
    let (status, logouts) = f
        .get_json(&format!("/admin/audit?actor={user}&action=logout"))
        .await;
    assert_eq!(status, 200, "{logouts}");
    assert_eq!(logouts.as_array().map(Vec::len), Some(1), "{logouts}");
    assert_eq!(logouts[0]["outcome"], "success");
    // And the commands use it.
    let out = alice.run(&["ls", "--json"]).await;
    assert_eq!(out.ok().json(), json!([]));

    // A wrong password: exit 3 with the API's code; the stored login is untouched.
    let out = alice
        .run_with(
            &["login", &f.base, "--user", "alice", "--password-stdin"],
            Some("not the password\n"),
        )
        .await;
    out.code(3);
    assert!(out.stderr.contains("invalid_credentials"), "{out:#?}");
    assert_eq!(alice.stored().1, token);
    let out = alice
        .run_with(
            &[
                "login",
                &f.base,
                "--user",
                "alice",
                "--password-stdin",
                "--json",
            ],
            Some("not the password\n"),
        )
        .await;
    assert_eq!(out.code(3).json()["error"]["code"], "invalid_credentials");
    assert_eq!(out.json()["error"]["status"], 401);

    // A token given on stdin is checked before it is stored.
    let admin_cli = Cli::new(&root, "admin");
    admin_cli
        .run_with(
            &["login", &f.base, "--token-stdin"],
            Some("ferry_pat_forged\n"),
        )
        .await
        .code(3);
    assert!(!admin_cli.config.join("client.toml").exists());
    let out = admin_cli
        .run_with(
            &[
                "login",
                &format!("{}/api/v1", f.base),
                "--token-stdin",
                "--json",
            ],
            Some(&format!("{}\n", f.token)),
        )
        .await;
    assert_eq!(out.ok().json()["user"]["id"], "local", "{out:#?}");

    // FERRY_TOKEN and FERRY_URL override what is stored.
    alice
        .with_env("FERRY_TOKEN", "ferry_pat_revoked")
        .run(&["ls"])
        .await
        .code(3);
    let elsewhere = Cli::new(&root, "nobody")
        .with_env("FERRY_URL", &f.base)
        .with_env("FERRY_TOKEN", &token);
    elsewhere.run(&["ls", "--json"]).await.ok();

    // Without a terminal and without --password-stdin there is no way to ask: usage.
    let out = alice.run(&["login", &f.base, "--user", "alice"]).await;
    out.code(2);
    assert!(out.stderr.contains("--password-stdin"), "{out:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_reads_the_password_from_the_terminal() {
    if !require(&["script"]) {
        return;
    }
    let (_keep, root) = test_dir();
    let f = ferry(&root);
    admin(&f).await;
    add_user(&f, "bob", false);
    let bob = Cli::new(&root, "bob");
    let screen = root.join("login-screen");
    let mut child = bob.spawn_on_terminal(&["login", &f.base, "--user", "bob"], &screen);
    wait_for_text(&screen, "the password prompt", |t| t.contains("Password: ")).await;
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    drop(stdin);
    let said = std::fs::read_to_string(&screen).unwrap();
    assert!(status.success(), "{status}: {said:?}");
    assert!(said.contains("Logged in to"), "{said:?}");
    let (_, token) = bob.stored();
    let (status, me) = get_as(&f, &token, "/me").await;
    assert_eq!(
        (status, me["user"]["display_name"].as_str()),
        (200, Some("bob"))
    );
}

/// A TCP relay to `upstream` that counts the bytes it carries back to the client.
async fn counting_relay(upstream: SocketAddr) -> (u16, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let down = Arc::new(AtomicU64::new(0));
    let counted = down.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut from_client, mut to_client) = client.split();
                let (mut from_server, mut to_server) = server.split();
                let up = async {
                    let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
                    let _ = to_server.shutdown().await;
                };
                let down = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match from_server.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        counted.fetch_add(n as u64, Ordering::SeqCst);
                        if to_client.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_client.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (port, down)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_job_is_added_watched_on_a_terminal_listed_and_fetched_and_resumed() {
    if !require(&["script"]) {
        return;
    }
    let (_keep, root) = test_dir();
    std::fs::create_dir_all(root.join("origin")).unwrap();
    let name = "disk-image.bin";
    let file = root.join("origin").join(name);
    let size = 3 * MIB;
    let sha = random_file(&file, size);
    let origin = Origin::start(&file, name).await;
    let (f, alice) = alice_logged_in(&root).await;
    let url = format!("http://{}/{name}", origin.addr);

    // Added while the origin holds the download a third of the way: the watch has bars
    // to draw for as long as the test looks.
    origin.control.hold_at(Some(MIB));
    let job = alice.run(&["add", &url, "--json"]).await.ok().json();
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (job["name"].as_str(), job["source"]["kind"].as_str()),
        (Some(name), Some("url"))
    );
    wait_status(&f, &alice, &id, "downloading").await;

    let screen = root.join("watch-screen");
    let mut watch = alice.spawn_on_terminal(&["watch", &id], &screen);
    let label = short(&id);
    wait_for_text(&screen, "a progress bar", |t| {
        t.contains(&label) && t.contains(" [") && t.contains('%') && t.contains("MiB")
    })
    .await;
    origin.control.hold_at(None);
    let status = tokio::time::timeout(Duration::from_secs(120), watch.wait())
        .await
        .unwrap()
        .unwrap();
    let drawn = std::fs::read_to_string(&screen).unwrap();
    assert!(status.success(), "{status}: {drawn:?}");
    // Drawn and redrawn in place (escape sequences), up to the end.
    assert!(drawn.contains("\u{1b}["), "no bar drawing: {drawn:?}");
    assert!(drawn.contains(&"=".repeat(20)), "no full bar: {drawn:?}");
    assert!(
        drawn.contains("100%") && drawn.contains("completed"),
        "{drawn:?}"
    );

    // Without a terminal: plain lines only, and the same outcome.
    let out = alice.run(&["watch", &id]).await;
    out.ok();
    assert!(!out.stderr.contains('\u{1b}'), "{out:#?}");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with(&label) && l.contains(": completed")),
        "{out:#?}"
    );
    let final_job = alice.run(&["watch", &id, "--json"]).await.ok().json();
    assert_eq!(
        (final_job["id"].as_str(), final_job["status"].as_str()),
        (Some(id.as_str()), Some("completed"))
    );

    // ls, for people and for scripts.
    let out = alice.run(&["ls"]).await;
    let row = out
        .ok()
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{out:#?}"))
        .to_owned();
    assert!(
        row.contains("completed") && row.contains("100.0%") && row.ends_with(name),
        "{row}"
    );
    let listed = alice
        .run(&["ls", "--json", "--status", "completed"])
        .await
        .ok()
        .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], id.as_str());
    let none = alice
        .run(&["ls", "--json", "-q", "no-such-name"])
        .await
        .ok()
        .json();
    assert_eq!(none, json!([]));

    // get --out: the origin's bytes.
    let out_dir = root.join("downloads");
    let got = alice
        .run(&["get", &id, "--out", out_dir.to_str().unwrap(), "--json"])
        .await
        .ok()
        .json();
    let saved = out_dir.join(name);
    assert_eq!(sha256_file(&saved), sha);
    assert_eq!(got["files"][0]["downloaded"], size, "{got}");
    assert_eq!(got["files"][0]["sha256"], sha.as_str());

    // A download cut at a third is resumed with Range: through a relay that counts what
    // the server sends, only the missing two thirds (and the small JSON answers) come.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&saved)
        .unwrap()
        .set_len(MIB)
        .unwrap();
    let (relay, carried) = counting_relay(f.base["http://".len()..].parse().unwrap()).await;
    let via_relay = alice.with_env("FERRY_URL", &format!("http://127.0.0.1:{relay}"));
    let got = via_relay
        .run(&["get", &id, "--out", out_dir.to_str().unwrap(), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(sha256_file(&saved), sha);
    assert_eq!(got["files"][0]["resumed_from"], MIB, "{got}");
    assert_eq!(got["files"][0]["downloaded"], size - MIB, "{got}");
    let carried = carried.load(Ordering::SeqCst);
    assert!(
        carried >= size - MIB && carried < size - MIB + 64 * KIB,
        "the server sent {carried} bytes for the last {} of the file",
        size - MIB
    );
    // A whole file is kept (checked, not fetched again); human output says where.
    let out = alice
        .run(&["get", &id, "-o", out_dir.to_str().unwrap()])
        .await;
    assert!(
        out.ok().stdout.contains("1 file(s), 3.00 MiB in"),
        "{out:#?}"
    );
    assert!(out.stderr.contains("already here"), "{out:#?}");
    assert_eq!(sha256_file(&saved), sha);

    // A job that is not alice's, or not there: 404, exit 4, with the API's code.
    let unknown = uuid::Uuid::now_v7().to_string();
    for args in [
        vec!["get", unknown.as_str()],
        vec!["watch", unknown.as_str()],
        vec!["pause", unknown.as_str()],
        vec!["rm", unknown.as_str()],
    ] {
        let out = alice.run(&args).await;
        out.code(4);
        assert!(
            out.stderr.contains("job_not_found") && out.stderr.contains("HTTP 404"),
            "{out:#?}"
        );
    }
    // A destination that does not exist is refused before anything is submitted.
    let out = alice.run(&["add", &url, "--to", "no such bucket"]).await;
    out.code(4);
    assert!(out.stderr.contains("no storage profile named"), "{out:#?}");
    let missing = uuid::Uuid::new_v4().to_string();
    let out = alice.run(&["add", &url, "--to", &missing]).await;
    out.code(4);
    assert!(out.stderr.contains("storage_profile_not_found"), "{out:#?}");

    // A finished job cannot be cancelled: the API says so, and the client how to delete it.
    let out = alice.run(&["rm", &id]).await;
    out.code(1);
    assert!(
        out.stderr.contains("illegal_transition") && out.stderr.contains("--with-files"),
        "{out:#?}"
    );
    let out = alice.run(&["rm", &id, "--with-files"]).await;
    assert!(
        out.ok().stdout.contains("deleting, with its files"),
        "{out:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torrent_is_added_paused_resumed_and_removed_from_the_command_line() {
    let (_keep, root) = test_dir();
    let (f, alice) = alice_logged_in(&root).await;
    // A torrent nobody seeds: it stays downloading for as long as the test needs.
    let torrent = root.join("lonely.torrent");
    std::fs::write(&torrent, lonely_torrent("lonely.bin")).unwrap();
    let job = alice
        .run(&[
            "add",
            torrent.to_str().unwrap(),
            "--files",
            "0",
            "--to",
            "server",
            "--seed",
            "--json",
        ])
        .await
        .ok()
        .json();
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["source"]["kind"], "torrent", "{job}");
    assert_eq!(job["selected_files"], json!([0]), "{job}");
    assert!(job.get("storage_profile").is_none(), "{job}");
    assert!(job["seed"].is_object(), "--seed asks for seeding: {job}");
    wait_status(&f, &alice, &id, "downloading").await;

    // Nothing to download yet: said, exit 1.
    let out = alice
        .run(&["get", &id, "--out", root.join("x").to_str().unwrap()])
        .await;
    out.code(1);
    assert!(out.stderr.contains("is downloading"), "{out:#?}");

    let paused = alice.run(&["pause", &id, "--json"]).await.ok().json();
    assert_eq!(paused["status"], "paused");
    // Pausing twice is a conflict the API names.
    let out = alice.run(&["pause", &id]).await;
    out.code(1);
    assert!(
        out.stderr.contains("illegal_transition") && out.stderr.contains("HTTP 409"),
        "{out:#?}"
    );
    let out = alice.run(&["pause", &id, "--json"]).await;
    assert_eq!(out.code(1).json()["error"]["code"], "illegal_transition");
    // Retry is for failed jobs.
    alice.run(&["retry", &id]).await.code(1);

    let out = alice.run(&["resume", &id]).await;
    assert!(out.ok().stdout.contains("queued"), "{out:#?}");
    let out = alice.run(&["rm", &id]).await;
    assert!(out.ok().stdout.contains("cancelled"), "{out:#?}");
    // Cancelling again changes nothing; --with-files deletes the job, then it is gone.
    let out = alice.run(&["rm", &id, "--json"]).await;
    assert_eq!(out.ok().json()["status"], "cancelled");
    let gone = alice
        .run(&["rm", &id, "--with-files", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(gone["purge_pending"], true, "{gone}");
    let token = alice.stored().1;
    let deadline = Instant::now() + Duration::from_secs(60);
    while get_as(&f, &token, &format!("/jobs/{id}")).await.0 != 404 {
        assert!(Instant::now() < deadline, "the purge never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    alice.run(&["resume", &id]).await.code(4);
}

/// An origin that answers its `fail_nth` request (0-based) with 404, serves `body`
/// otherwise, and holds every answer after that one until `release` is set.
struct ScriptedOrigin {
    addr: SocketAddr,
    release: Arc<AtomicBool>,
}

#[derive(Clone)]
struct Script {
    body: Arc<Vec<u8>>,
    served: Arc<AtomicUsize>,
    fail_nth: usize,
    release: Arc<AtomicBool>,
}

#[handler]
async fn scripted(poem::web::Data(s): poem::web::Data<&Script>) -> Response {
    let n = s.served.fetch_add(1, Ordering::SeqCst);
    if n == s.fail_nth {
        return Response::builder()
            .status(poem::http::StatusCode::NOT_FOUND)
            .finish();
    }
    if n > s.fail_nth {
        while !s.release.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Response::builder()
        .header("content-type", "application/octet-stream")
        .body(s.body.as_ref().clone())
}

impl ScriptedOrigin {
    async fn start(body: Vec<u8>, fail_nth: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let release = Arc::new(AtomicBool::new(false));
        let app = Route::new().at("/*path", scripted).data(Script {
            body: Arc::new(body),
            served: Arc::new(AtomicUsize::new(0)),
            fail_nth,
            release: release.clone(),
        });
        tokio::spawn(
            Server::new_with_acceptor(poem::listener::TcpAcceptor::from_tokio(listener).unwrap())
                .run(app),
        );
        Self { addr, release }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_is_exit_5_and_retry_then_watch_all_sees_it_complete() {
    let (_keep, root) = test_dir();
    // The first request (the check at submission) succeeds, the fetch gets 404 (the job
    // fails for good), the retried fetch waits until the test lets it through.
    let body: Vec<u8> = (0..200 * KIB).map(|i| (i % 251) as u8).collect();
    let sha = sha256_hex(&body);
    let origin = ScriptedOrigin::start(body, 1).await;
    let (f, alice) = alice_logged_in(&root).await;
    let url = format!("http://{}/release.tar", origin.addr);
    let job = alice.run(&["add", &url, "--json"]).await.ok().json();
    let id = job["id"].as_str().unwrap().to_owned();

    let out = alice.run(&["watch", &id]).await;
    out.code(5);
    assert!(
        out.stderr.contains("url_unavailable") && out.stderr.contains("failed"),
        "{out:#?}"
    );
    let out = alice.run(&["watch", &id, "--json"]).await;
    let failed = out.code(5).json();
    assert_eq!(
        (failed["status"].as_str(), failed["error"]["code"].as_str()),
        (Some("failed"), Some("url_unavailable"))
    );

    let retried = alice.run(&["retry", &id, "--json"]).await.ok().json();
    assert_eq!(retried["status"], "queued", "{retried}");
    wait_status(&f, &alice, &id, "resolving").await;

    // Every unfinished job, from the jobs feed, until it ends.
    let log = root.join("watch-all.log");
    let mut watch = alice.command(Path::new(env!("CARGO_BIN_EXE_ferry")), &["watch", "--json"]);
    watch
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    let watch = watch.spawn().unwrap();
    let label = short(&id);
    wait_for_text(&log, "the job followed", |t| t.contains(&label)).await;
    origin.release.store(true, Ordering::SeqCst);
    let out = tokio::time::timeout(Duration::from_secs(120), watch.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "{said}");
    let ended: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ended.as_array().map(Vec::len), Some(1), "{ended}");
    assert_eq!(
        (ended[0]["id"].as_str(), ended[0]["status"].as_str()),
        (Some(id.as_str()), Some("completed"))
    );
    assert_eq!(ended[0]["content_sha256"], sha.as_str());
    assert!(
        said.contains(&format!("{label} release.tar: completed")),
        "{said}"
    );
    // Nothing left to watch.
    let out = alice.run(&["watch", "--json"]).await;
    assert_eq!(out.ok().json(), json!([]));
    drop(f);
}

#[tokio::test]
async fn exit_codes_without_a_login_or_a_server_and_completions() {
    let (_keep, root) = test_dir();
    let nobody = Cli::new(&root, "nobody");
    // Not logged in: exit 3, and what to do.
    let out = nobody.run(&["ls"]).await;
    out.code(3);
    assert!(out.stderr.contains("ferry login"), "{out:#?}");
    assert_eq!(
        nobody.run(&["ls", "--json"]).await.code(3).json()["error"]["code"],
        "not_logged_in"
    );

    // A server that does not answer: exit 6.
    let port = free_port();
    let away = nobody
        .with_env("FERRY_URL", &format!("http://127.0.0.1:{port}"))
        .with_env("FERRY_TOKEN", "ferry_pat_whatever");
    let out = away.run(&["ls"]).await;
    out.code(6);
    assert!(out.stderr.contains("cannot reach the server"), "{out:#?}");
    assert_eq!(
        away.run(&["watch", "--json"]).await.code(6).json()["error"]["code"],
        "server_unreachable"
    );
    away.run_with(
        &[
            "login",
            &format!("http://127.0.0.1:{port}"),
            "--token-stdin",
        ],
        Some("x\n"),
    )
    .await
    .code(6);

    // Ids that cannot be a job's are not found (4), and never sent anywhere.
    for id in ["../../admin/users", "42", "", "%2e%2e", "\u{1b}[2J"] {
        for verb in ["get", "watch", "pause", "resume", "retry", "rm"] {
            let out = away.run(&[verb, id]).await;
            out.code(4);
            assert!(!out.stderr.contains('\u{1b}'), "{out:#?}");
        }
    }

    // Usage errors are clap's 2.
    for args in [
        vec!["add"],
        vec!["add", "magnet:?xt=urn:btih:x", "--files", "a,b"],
        vec!["ls", "--status", "sleeping"],
        vec!["login", "ftp://example.org"],
        vec![
            "login",
            "http://127.0.0.1:1",
            "--user",
            "x",
            "--token-stdin",
        ],
        vec!["completions", "tcsh"],
    ] {
        away.run(&args).await.code(2);
    }
    // Something that is neither a magnet, a URL nor a file.
    let out = away
        .run(&["add", root.join("missing.torrent").to_str().unwrap()])
        .await;
    out.code(2);
    assert!(out.stderr.contains("readable .torrent file"), "{out:#?}");

    // Completions name every client command.
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef ferry"),
        ("fish", "complete -c ferry"),
    ] {
        let out = nobody.run(&["completions", shell]).await;
        out.ok();
        assert!(
            out.stdout.contains(marker),
            "{shell}: {}",
            &out.stdout[..200.min(out.stdout.len())]
        );
        for command in [
            "login", "add", "ls", "watch", "get", "pause", "resume", "retry", "rm",
        ] {
            assert!(out.stdout.contains(command), "{shell} lacks {command}");
        }
    }
}

/// What the hostile server says about its jobs.
#[derive(Clone)]
struct Hostile {
    file_requests: Arc<AtomicUsize>,
    escape_name: String,
}

fn completed_job(id: &str) -> Value {
    json!({
        "id": id, "name": "evil\u{1b}[2J", "status": "completed",
        "source": {"kind": "url"}, "progress": {"bytes_done": 5, "bytes_total": 5, "percent": 100.0,
        "download_rate": 0, "upload_rate": 0, "uploaded_bytes": 0, "peers": 0, "ratio": 0.0},
        "attempts": 1, "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
        "purge_pending": false
    })
}

fn file_entry(id: &str, index: u32, path: &str, size: u64) -> Value {
    json!({"index": index, "path": path, "size": size, "selected": true,
           "download_url": format!("/api/v1/jobs/{id}/files/{index}")})
}

/// Job ids of the hostile server: a traversal, an absolute path, an oversized body.
const TRAVERSAL: &str = "00000000-0000-7000-8000-000000000001";
const ABSOLUTE: &str = "00000000-0000-7000-8000-000000000002";
const OVERSIZED: &str = "00000000-0000-7000-8000-000000000003";

#[handler]
fn hostile_job(UrlPath(id): UrlPath<String>) -> poem::web::Json<Value> {
    poem::web::Json(completed_job(&id))
}

#[handler]
fn hostile_files(
    UrlPath(id): UrlPath<String>,
    poem::web::Data(h): poem::web::Data<&Hostile>,
) -> poem::web::Json<Value> {
    let files = match id.as_str() {
        TRAVERSAL => json!([
            file_entry(&id, 0, "fine.txt", 5),
            file_entry(&id, 1, &format!("../../{}", h.escape_name), 5),
        ]),
        ABSOLUTE => json!([file_entry(&id, 0, &format!("/tmp/{}", h.escape_name), 5)]),
        _ => json!([file_entry(&id, 0, "big.bin", 5)]),
    };
    poem::web::Json(files)
}

#[handler]
fn hostile_file(poem::web::Data(h): poem::web::Data<&Hostile>) -> Vec<u8> {
    h.file_requests.fetch_add(1, Ordering::SeqCst);
    vec![b'x'; MIB as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_server_cannot_make_get_write_outside_out() {
    let (_keep, root) = test_dir();
    let hostile = Hostile {
        file_requests: Arc::new(AtomicUsize::new(0)),
        escape_name: format!("escaped-{}.txt", uuid::Uuid::new_v4().simple()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Route::new()
        .at("/api/v1/jobs/:id", hostile_job)
        .at("/api/v1/jobs/:id/files", hostile_files)
        .at("/api/v1/jobs/:id/files/:index", hostile_file)
        .data(hostile.clone());
    tokio::spawn(
        Server::new_with_acceptor(poem::listener::TcpAcceptor::from_tokio(listener).unwrap())
            .run(app),
    );
    let cli = Cli::new(&root, "victim")
        .with_env("FERRY_URL", &format!("http://{addr}"))
        .with_env("FERRY_TOKEN", "ferry_pat_victim");
    let work = root.join("work");
    let out_dir = work.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();

    for id in [TRAVERSAL, ABSOLUTE] {
        let out = cli
            .run(&["get", id, "--out", out_dir.to_str().unwrap()])
            .await;
        out.code(1);
        assert!(out.stderr.contains("unsafe file path"), "{out:#?}");
        assert!(!out.stderr.contains('\u{1b}'), "{out:#?}");
    }
    // Nothing was fetched or written: not the safe file either, not the escaped one.
    assert_eq!(hostile.file_requests.load(Ordering::SeqCst), 0);
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
    for place in [
        root.clone(),
        work.clone(),
        std::env::temp_dir(),
        PathBuf::from("/tmp"),
    ] {
        assert!(
            !place.join(&hostile.escape_name).exists(),
            "{}",
            place.display()
        );
    }

    // A body longer than the file's listed size is cut off, not written on and on.
    let out = cli
        .run(&["get", OVERSIZED, "--out", out_dir.to_str().unwrap()])
        .await;
    out.code(1);
    assert!(out.stderr.contains("more than the file's size"), "{out:#?}");
    let written = std::fs::metadata(out_dir.join("big.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(written <= 5, "{written} bytes written");
}
