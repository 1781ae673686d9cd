//! The end-to-end harness: real processes on loopback.
//!
//! `Ferry` is the real `ferry serve` binary; `Tracker` is opentracker; `Seeder` is aria2c.
//! Each test gets its own ports and folders, so tests run in parallel without colliding.
//! A missing peer program skips the test on a developer machine and fails it in CI.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cluster;
pub mod drive;
pub mod gate;
pub mod login;
pub mod loki;
pub mod origin;
pub mod prometheus;
pub mod s3;
pub mod sockets;
pub mod swarm;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `torrent.allow` for tests whose trackers and peers run on loopback (every test swarm):
/// without it Ferry refuses loopback trackers and peers, as it must in production.
pub const LOOPBACK_SWARM: &str = "[\"127.0.0.0/8\"]";

/// Installs the process-wide rustls provider (both are linked in).
pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[allow(unused_imports)]
pub use ferry_testkit::{Proc, free_port, require};

/// A scratch folder for one test, and its path. With `FERRY_TEST_KEEP` set it is kept (and
/// printed) so the logs of every process in it can be read afterwards.
pub fn test_dir() -> (Option<tempfile::TempDir>, PathBuf) {
    ferry_testkit::scratch()
}

/// aria2c as an independent leecher: downloads `torrent` into `dir` (peers from its tracker,
/// no DHT/PEX/LSD), exits once done. Whether it succeeded within `timeout_secs`.
pub fn aria2c_download(torrent: &Path, dir: &Path, timeout_secs: u32) -> bool {
    Command::new("timeout")
        .arg(timeout_secs.to_string())
        .arg("aria2c")
        .arg("--interface=127.0.0.1")
        .arg(format!("--dir={}", dir.display()))
        .args([
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--seed-time=0",
            "--disable-ipv6=true",
            "--summary-interval=0",
            "--console-log-level=warn",
            "--file-allocation=none",
        ])
        .arg(format!("--listen-port={}", free_port()))
        .arg(torrent)
        .status()
        .unwrap()
        .success()
}

/// The port of the address a server announced in its ready message (`… is ready on
/// http://127.0.0.1:PORT; …`).
pub fn ready_port(said: &str) -> Option<u16> {
    let rest = said.split(" is ready on http://").nth(1)?;
    let authority = rest.split([';', ' ', '\n']).next()?;
    authority.rsplit(':').next()?.parse().ok()
}

/// The port of the loopback address a log line containing `marker` names after `field`
/// (`probes=127.0.0.1:PORT`; the line may carry colour codes).
pub fn logged_port(log: &str, marker: &str, field: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains(marker))?;
    let after = line.split(field).nth(1)?;
    let addr = after.split("127.0.0.1:").nth(1)?;
    let digits: String = addr.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Waits until `proc` announced its port (as `find` reads it from its log), failing if it
/// exits or takes longer than a minute.
pub fn announced(proc: &mut Proc, find: impl Fn(&str) -> Option<u16>) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = proc.log_text();
        if let Some(port) = find(&log) {
            return port;
        }
        if let Some(status) = proc.child.try_wait().unwrap() {
            panic!("{} exited with {status}:\n{log}", proc.name);
        }
        assert!(
            Instant::now() < deadline,
            "{} did not say where it listens:\n{log}",
            proc.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_for_port_pub(port: u16, what: &str) {
    wait_for_port(port, what)
}

fn wait_for_port(port: u16, what: &str) {
    ferry_testkit::wait_for_port(port, what, Duration::from_secs(15));
}

/// Random files with their SHA-256.
pub struct Payload {
    /// The folder that contains the torrent's top-level entry.
    pub parent: PathBuf,
    pub name: String,
    /// (path relative to `parent`, sha256 hex, size) in torrent order (sorted by path).
    pub files: Vec<(String, String, u64)>,
}

impl Payload {
    /// Creates `parent/name/…` with files of the given relative paths and sizes.
    pub fn create(parent: &Path, name: &str, files: &[(&str, u64)]) -> Self {
        let mut rng = rand::rng();
        let mut out = Vec::new();
        for (rel, size) in files {
            let path = parent.join(name).join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut f = std::fs::File::create(&path).unwrap();
            let mut hasher = Sha256::new();
            let mut left = *size;
            let mut buf = vec![0u8; 1 << 20];
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                rng.fill_bytes(&mut buf[..n]);
                hasher.update(&buf[..n]);
                f.write_all(&buf[..n]).unwrap();
                left -= n as u64;
            }
            out.push((
                format!("{name}/{rel}"),
                hex::encode(hasher.finalize()),
                *size,
            ));
        }
        out.sort();
        Self {
            parent: parent.to_owned(),
            name: name.to_owned(),
            files: out,
        }
    }

    pub fn total(&self) -> u64 {
        self.files.iter().map(|f| f.2).sum()
    }

    /// Makes a .torrent with mktorrent (256 KiB pieces) announcing to `tracker`.
    pub fn make_torrent(&self, tracker: &str, out: &Path) -> Torrent {
        let status = Command::new("mktorrent")
            .args(["-l", "18", "-a", tracker, "-o"])
            .arg(out)
            .arg(self.parent.join(&self.name))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "mktorrent failed");
        let bytes = std::fs::read(out).unwrap();
        let meta = ferry_torrent::inspect(&bytes).unwrap();
        Torrent {
            path: out.to_owned(),
            bytes,
            info_hash: meta.info_hash.to_hex(),
            meta,
        }
    }
}

pub struct Torrent {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub info_hash: String,
    pub meta: ferry_domain::TorrentMetadata,
}

impl Torrent {
    pub fn magnet(&self, tracker: &str) -> String {
        format!(
            "magnet:?xt=urn:btih:{}&dn={}&tr={}",
            self.info_hash,
            self.meta.name,
            url_escape(tracker)
        )
    }
}

/// `s` with every byte but unreserved ones percent-escaped (a URL in a magnet's `tr=`).
pub fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// opentracker on its own port, with a whitelist of the test's info-hashes.
pub struct Tracker {
    pub port: u16,
    _proc: Proc,
}

impl Tracker {
    /// opentracker on a free port (another one if the port was taken meanwhile).
    pub fn start(dir: &Path, info_hashes: &[&str]) -> Self {
        let (proc, port) = ferry_testkit::spawn_on_free_port(
            "opentracker",
            &dir.join("opentracker.log"),
            |port| Self::command(dir, port, info_hashes),
        );
        Self { port, _proc: proc }
    }

    /// opentracker on `port` (a restart on the port it had).
    pub fn start_on(dir: &Path, port: u16, info_hashes: &[&str]) -> Self {
        let cmd = Self::command(dir, port, info_hashes);
        let proc = Proc::spawn("opentracker", cmd, dir.join("opentracker.log"));
        wait_for_port(port, "opentracker");
        Self { port, _proc: proc }
    }

    fn command(dir: &Path, port: u16, info_hashes: &[&str]) -> Command {
        let root = dir.join("tracker");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("whitelist.txt"), info_hashes.join("\n") + "\n").unwrap();
        let conf = root.join("opentracker.conf");
        std::fs::write(
            &conf,
            format!(
                "listen.tcp_udp 127.0.0.1:{port}\naccess.whitelist /whitelist.txt\ntracker.rootdir {}\ntracker.user nobody\n",
                root.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("opentracker");
        cmd.arg("-f").arg(&conf);
        cmd
    }

    pub fn announce(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }

    /// Waits until `seeders` peers with the whole torrent have announced (a leecher that
    /// asks earlier gets an empty peer list and would wait a whole announce interval).
    pub fn wait_for_seeders(&self, info_hash: &str, seeders: u64) {
        let escaped: String = (0..info_hash.len())
            .step_by(2)
            .map(|i| format!("%{}", &info_hash[i..i + 2]))
            .collect();
        let url = format!("http://127.0.0.1:{}/scrape?info_hash={escaped}", self.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new("curl").args(["-s", &url]).output().unwrap();
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            let complete = body
                .split("8:completei")
                .nth(1)
                .and_then(|rest| rest.split('e').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            if complete >= seeders {
                return;
            }
            assert!(Instant::now() < deadline, "no seeder announced: {body:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// aria2c seeding torrents whose content lies in `content_dir`.
pub struct Seeder {
    pub port: u16,
    pub proc: Proc,
}

impl Seeder {
    pub fn start(dir: &Path, content_dir: &Path, torrents: &[&Path]) -> Self {
        Self::start_with(dir, content_dir, torrents, &[])
    }

    /// As [`Seeder::start`], with more aria2c arguments (`--max-upload-limit=2M`).
    pub fn start_with(dir: &Path, content_dir: &Path, torrents: &[&Path], args: &[String]) -> Self {
        Self::start_on(dir, content_dir, torrents, args, free_port())
    }

    /// As [`Seeder::start_with`], listening on `port` (a seeder back where it was).
    pub fn start_on(
        dir: &Path,
        content_dir: &Path,
        torrents: &[&Path],
        args: &[String],
        port: u16,
    ) -> Self {
        let mut cmd = Command::new("aria2c");
        cmd.arg("--interface=127.0.0.1")
            .arg(format!("--dir={}", content_dir.display()))
            .args([
                "--bt-seed-unverified=true",
                "--seed-ratio=0.0",
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=false",
                "--disable-ipv6=true",
                "--summary-interval=0",
                "--console-log-level=warn",
                "--check-integrity=false",
                "--bt-max-peers=0",
            ])
            .arg(format!(
                "--max-concurrent-downloads={}",
                torrents.len().max(5)
            ))
            .arg(format!("--listen-port={port}"))
            .args(args)
            .args(torrents);
        let proc = Proc::spawn("aria2c", cmd, dir.join(format!("aria2c-{port}.log")));
        wait_for_port(port, "aria2c");
        Self { port, proc }
    }
}

/// The real `ferry serve`.
pub struct Ferry {
    pub base: String,
    pub data_dir: PathBuf,
    pub token: String,
    pub proc: Proc,
    port: u16,
    env: Vec<(String, String)>,
    http: reqwest::Client,
}

impl Ferry {
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::launch(data_dir, env)
    }

    /// Starts `ferry serve` on a port of its choosing and reads the port from its ready
    /// message (no other process can take it in between).
    fn launch(data_dir: &Path, env: Vec<(String, String)>) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("FERRY_API_TOKEN")
            .env_remove("FERRY_TEST_KEEP")
            .env("FERRY_TORRENT__DHT", "false")
            .env("FERRY_TORRENT__LISTEN", "127.0.0.1:0")
            .env("FERRY_TORRENT__ALLOW", LOOPBACK_SWARM)
            .env("FERRY_LOG__FORMAT", "pretty")
            .env("FERRY_WORKERS__RETRY_BASE_DELAY", "1s")
            // Stress tests send thousands of requests a second; the rate-limit tests set
            // their own limits.
            .env("FERRY_AUTH__API_RATE", "1000000")
            .env("FERRY_AUTH__API_BURST", "1000000")
            .env("RUST_LOG", "info,librqbit=info,ferry=debug");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let n = std::fs::read_dir(data_dir).map(|d| d.count()).unwrap_or(0);
        let log = data_dir.with_extension(format!("log{n}"));
        let proc = Proc::spawn("ferry", cmd, log);
        let mut ferry = Self::attach(proc, data_dir);
        ferry.env = env;
        ferry
    }

    /// Wraps an API process (`ferry serve`, `ferry-api`) started on port 0: waits for its
    /// ready message and talks to the port it names.
    pub fn attach(mut proc: Proc, data_dir: &Path) -> Self {
        let port = announced(&mut proc, ready_port);
        let token = std::fs::read_to_string(data_dir.join("api-token"))
            .unwrap()
            .trim()
            .to_owned();
        Self {
            base: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_owned(),
            token,
            proc,
            port,
            env: Vec::new(),
            http: reqwest::Client::new(),
        }
    }

    /// Stops with SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> (PathBuf, u16, Vec<(String, String)>) {
        self.proc.signal(15);
        let status = self.proc.wait_timeout(Duration::from_secs(40));
        let status = status
            .unwrap_or_else(|| panic!("ferry did not stop on SIGTERM:\n{}", self.proc.log_text()));
        assert!(
            status.success(),
            "ferry exited with {status}:\n{}",
            self.proc.log_text()
        );
        (
            self.data_dir.clone(),
            self.port,
            std::mem::take(&mut self.env),
        )
    }

    /// Kills with SIGKILL (a crash).
    pub fn crash(mut self) -> (PathBuf, u16, Vec<(String, String)>) {
        self.proc.signal(9);
        self.proc.wait_timeout(Duration::from_secs(10)).unwrap();
        (
            self.data_dir.clone(),
            self.port,
            std::mem::take(&mut self.env),
        )
    }

    /// Starts `ferry serve` again on the data of a stopped one (on a port of its choosing).
    pub fn restart(parts: (PathBuf, u16, Vec<(String, String)>)) -> Self {
        Self::launch(&parts.0, parts.2)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.req(reqwest::Method::GET, path).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .req(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn submit_magnet(&self, magnet: &str) -> Value {
        let (status, job) = self
            .post_json("/jobs", serde_json::json!({"source": {"magnet": magnet}}))
            .await;
        assert_eq!(status, 201, "{job}");
        job
    }

    /// Submits a URL job, which must be accepted (201); the job as answered.
    pub async fn submit_url(&self, url: &str) -> Value {
        let (status, job) = self
            .post_json("/jobs", serde_json::json!({"source": {"url": url}}))
            .await;
        assert_eq!(status, 201, "{job}");
        job
    }

    pub async fn submit_torrent(&self, bytes: &[u8], files: Option<&str>) -> (u16, Value) {
        let mut form = reqwest::multipart::Form::new().part(
            "torrent",
            reqwest::multipart::Part::bytes(bytes.to_vec()).file_name("x.torrent"),
        );
        if let Some(files) = files {
            form = form.text("files", files.to_owned());
        }
        let r = self
            .req(reqwest::Method::POST, "/jobs/torrent")
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn job(&self, id: &str) -> Value {
        let (status, job) = self.get_json(&format!("/jobs/{id}")).await;
        assert_eq!(status, 200, "{job}");
        job
    }

    /// Polls until the job's status is `want` (fails fast on `failed`).
    pub async fn wait_status(&self, id: &str, want: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job(id).await;
            let status = job["status"].as_str().unwrap_or_default().to_owned();
            if status == want {
                return job;
            }
            if status == "failed" && want != "failed" {
                panic!("job failed: {job}\n{}", self.proc.log_text());
            }
            if Instant::now() > deadline {
                panic!(
                    "job stayed {status}, wanted {want}: {job}\n{}",
                    self.proc.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `DELETE …?purge=true`: accepted with the job (202, `purge_pending`), then carried out
    /// once the job's stage has let go; waits until the job answers 404. Returns the 202's
    /// job.
    pub async fn purge(&self, id: &str) -> Value {
        let r = self
            .req(reqwest::Method::DELETE, &format!("/jobs/{id}?purge=true"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let job: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 202, "{job}");
        assert_eq!(job["purge_pending"], true, "{job}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.get_json(&format!("/jobs/{id}")).await.0 != 404 {
            assert!(
                Instant::now() < deadline,
                "the purge of {id} never finished:\n{}",
                self.proc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        job
    }

    /// Waits until at least `bytes` are downloaded.
    pub async fn wait_bytes(&self, id: &str, bytes: u64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job(id).await;
            if job["progress"]["bytes_done"].as_u64().unwrap_or(0) >= bytes {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "no progress: {job}\n{}",
                self.proc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn file_bytes(&self, id: &str, index: u64) -> Vec<u8> {
        let r = self
            .req(reqwest::Method::GET, &format!("/jobs/{id}/files/{index}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "file {index}");
        r.bytes().await.unwrap().to_vec()
    }

    /// Checks the single file of a job (URL jobs).
    pub async fn assert_files_match_one(&self, id: &str, name: &str, sha: &str) {
        let (status, files) = self.get_json(&format!("/jobs/{id}/files")).await;
        assert_eq!(status, 200);
        let files = files.as_array().unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files[0]["path"], name);
        assert_eq!(files[0]["sha256"], sha);
        let bytes = self.file_bytes(id, 0).await;
        assert_eq!(sha256_hex(&bytes), sha);
    }

    /// Checks every listed file of a completed job against the payload's hashes.
    pub async fn assert_files_match(&self, id: &str, payload: &Payload, selected: Option<&[u64]>) {
        let (status, files) = self.get_json(&format!("/jobs/{id}/files")).await;
        assert_eq!(status, 200);
        let files = files.as_array().unwrap().clone();
        assert_eq!(files.len(), payload.files.len());
        for f in files {
            let index = f["index"].as_u64().unwrap();
            let path = f["path"].as_str().unwrap();
            let expected = payload
                .files
                .iter()
                .find(|p| p.0 == path)
                .unwrap_or_else(|| panic!("unknown path {path}"));
            let wanted = selected.is_none_or(|s| s.contains(&index));
            assert_eq!(f["selected"].as_bool(), Some(wanted), "{f}");
            if wanted {
                let bytes = self.file_bytes(id, index).await;
                assert_eq!(bytes.len() as u64, expected.2, "{path} size");
                assert_eq!(sha256_hex(&bytes), expected.1, "{path} sha256");
            } else {
                let (status, body) = self.get_json(&format!("/jobs/{id}/files/{index}")).await;
                assert_eq!(
                    (status, body["code"].as_str()),
                    (404, Some("file_not_selected"))
                );
            }
        }
    }
}

/// SIGTERM while a request is in flight (its body half sent) and an event stream of `job` is
/// open: the server stops accepting at once, ends the event stream, still answers the request
/// when its body arrives, and exits 0. `ferry serve` and `ferry-api` drain alike.
pub async fn sigterm_drains(mut f: Ferry, job: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let events = f
        .req(reqwest::Method::GET, &format!("/jobs/{job}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status().as_u16(), 200);
    let events = tokio::spawn(read_sse(events, Duration::from_secs(60), |_| false));

    // A submission whose body is half sent when the signal comes.
    let body = format!(
        r#"{{"source": {{"magnet": "{}"}}}}"#,
        lonely_magnet("drain")
    );
    let (first, rest) = body.split_at(body.len() / 2);
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", f.port))
        .await
        .unwrap();
    let head = format!(
        "POST /api/v1/jobs HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{first}",
        f.token,
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    // The server has the request in hand (its handler waits for the rest of the body).
    tokio::time::sleep(Duration::from_millis(500)).await;

    f.proc.signal(15);
    let signalled = Instant::now();
    // No new connection is accepted: the listener is closed.
    while tokio::net::TcpStream::connect(("127.0.0.1", f.port))
        .await
        .is_ok()
    {
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "{} still accepts connections after SIGTERM:\n{}",
            f.proc.name,
            f.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The open event stream ends, well within the grace requests get.
    let seen = tokio::time::timeout(Duration::from_secs(5), events)
        .await
        .unwrap_or_else(|_| panic!("the event stream was left open:\n{}", f.proc.log_text()))
        .unwrap();
    assert_eq!(
        seen.first().map(|e| e.event.as_str()),
        Some("snapshot"),
        "{seen:?}"
    );
    // The request in flight still gets its answer.
    slow.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_string(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("no answer to the request in flight:\n{}", f.proc.log_text()))
        .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "{answer}\n{}",
        f.proc.log_text()
    );
    // And the process ends cleanly.
    let status = f
        .proc
        .wait_timeout(Duration::from_secs(40))
        .unwrap_or_else(|| panic!("{} did not stop:\n{}", f.proc.name, f.proc.log_text()));
    assert!(
        status.success(),
        "{} exited with {status}:\n{}",
        f.proc.name,
        f.proc.log_text()
    );
}

/// One parsed Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Sse {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// Reads SSE events from a response until the stream ends or `until` says stop.
pub async fn read_sse(
    resp: reqwest::Response,
    timeout: Duration,
    mut until: impl FnMut(&Sse) -> bool,
) -> Vec<Sse> {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => panic!("SSE timed out after {} events: {:?}", out.len(), out.last()),
            Ok(None) => return out,
            Ok(Some(c)) => c.unwrap(),
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut ev = Sse {
                id: None,
                event: "message".into(),
                data: Value::Null,
            };
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    ev.id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("event:") {
                    ev.event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if data.is_empty() {
                continue; // keep-alive comment
            }
            ev.data = serde_json::from_str(&data).unwrap();
            let stop = until(&ev);
            out.push(ev);
            if stop {
                return out;
            }
        }
    }
}

/// The series of metric `family` in a Prometheus scrape (one line each, comments skipped).
pub fn series<'a>(scrape: &'a str, family: &str) -> Vec<&'a str> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .collect()
}

/// The value of the unlabelled metric `name` in a Prometheus scrape.
pub fn gauge(scrape: &str, name: &str) -> Option<f64> {
    series(scrape, name)
        .iter()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// How many file descriptors process `pid` has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The peak resident set size of process `pid`, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A magnet of a random info hash that names no tracker: with DHT off nothing is ever
/// contacted for it.
pub fn lonely_magnet(name: &str) -> String {
    let hash = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    format!("magnet:?xt=urn:btih:{hash}&dn={name}")
}

/// A well-formed .torrent that names no tracker: with DHT off nothing is ever contacted for
/// it, and its download waits for peers for ever (a job that stays `downloading`).
pub fn lonely_torrent(name: &str) -> Vec<u8> {
    use ferry_torrent::testing::{B, encode, s};
    encode(&B::Dict(vec![(
        "info",
        B::Dict(vec![
            ("name", s(name)),
            ("piece length", B::Int(16384)),
            ("pieces", B::Str(vec![7u8; 20])),
            ("length", B::Int(1000)),
        ]),
    )]))
}

impl Ferry {
    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// `/metrics` (Prometheus text).
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A job that is `paused` (it had no peer to download from): its event stream stays
    /// open and silent until the client leaves.
    pub async fn paused_job(&self, name: &str) -> String {
        let (status, job) = self.submit_torrent(&lonely_torrent(name), None).await;
        assert_eq!(status, 201, "{job}");
        let id = job["id"].as_str().unwrap().to_owned();
        self.wait_status(&id, "downloading", Duration::from_secs(60))
            .await;
        let (status, job) = self
            .post_json(&format!("/jobs/{id}/pause"), serde_json::json!({}))
            .await;
        assert_eq!(
            (status, job["status"].as_str()),
            (200, Some("paused")),
            "{job}"
        );
        id
    }
}

/// Opens `count` event streams, alternately for an unknown job id and for `job`, `parallel`
/// at a time, and drops each as soon as its answer's head has arrived (a client that
/// leaves). Returns how many answered 200 and how many 404.
pub async fn churn_event_streams(
    f: &Ferry,
    job: &str,
    count: usize,
    parallel: usize,
) -> (usize, usize) {
    // No idle connections are kept: a dropped stream closes its connection, as a browser
    // tab that goes away does.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let statuses: Vec<(u16, String)> = futures::stream::iter(0..count)
        .map(|i| {
            let id = if i % 2 == 0 {
                uuid::Uuid::now_v7().to_string()
            } else {
                job.to_owned()
            };
            let req = http
                .get(f.url(&format!("/jobs/{id}/events")))
                .bearer_auth(&f.token)
                .send();
            async move {
                let r = req.await.unwrap();
                let status = r.status().as_u16();
                // Anything but 200 or 404 is reported with what the server said.
                let said = if status == 200 || status == 404 {
                    String::new()
                } else {
                    let headers = format!("{:?}", r.headers());
                    format!("{status} {headers}: {}", r.text().await.unwrap_or_default())
                };
                (status, said)
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    let ok = statuses.iter().filter(|s| s.0 == 200).count();
    let missing = statuses.iter().filter(|s| s.0 == 404).count();
    let unexpected: Vec<&String> = statuses
        .iter()
        .filter(|s| !s.1.is_empty())
        .map(|s| &s.1)
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} answers neither 200 nor 404: {unexpected:?}",
        unexpected.len()
    );
    (ok, missing)
}

/// Live tasks (`ferry_runtime_tasks`) and open file descriptors of a Ferry process.
pub async fn footprint(f: &Ferry) -> (f64, usize) {
    let scrape = f.metrics().await;
    let tasks = gauge(&scrape, "ferry_runtime_tasks")
        .unwrap_or_else(|| panic!("no ferry_runtime_tasks in /metrics:\n{scrape}"));
    (tasks, open_fds(f.pid()))
}
