//! The distributed mode as real processes: `ferry-api` and the stage workers over a fresh
//! PostgreSQL database and a Redis key prefix (or a Redis server of the test's own).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;

#[allow(unused_imports)]
pub use ferry_testkit::postgres::{
    FreshDatabase as FreshDb, setup_needed as postgres_setup_needed,
};

/// A redis-server of the test's own (so the test may stop and restart it).
pub struct OwnRedis {
    pub port: u16,
    dir: PathBuf,
    proc: Option<Proc>,
}

impl OwnRedis {
    pub fn start(dir: &Path) -> Self {
        let mut r = Self {
            port: free_port(),
            dir: dir.to_owned(),
            proc: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        self.proc = None; // killed on drop
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "redis did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&self.dir);
        self.proc = Some(Proc::spawn(
            "redis-server",
            cmd,
            self.dir.join(format!("redis-{}.log", self.port)),
        ));
        wait_for_port_pub(self.port, "redis-server");
    }
}

/// `redis-cli` against `url`, output as text.
pub fn redis_cli(url: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-u")
        .arg(url)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The distributed processes sharing one database, Redis prefix, staging and storage.
/// The Redis the distributed tests use (`FERRY_TEST_REDIS_URL`, default the local one); each
/// cluster takes a key prefix of its own.
pub fn test_redis_url() -> String {
    ferry_testkit::redis::server_url()
}

pub struct Cluster {
    pub dir: PathBuf,
    pub db: String,
    pub redis: String,
    pub prefix: String,
    pub env: Vec<(String, String)>,
}

pub struct Worker {
    pub proc: Proc,
    pub probe: u16,
}

impl Cluster {
    pub fn new(dir: &Path, db: &str, redis: &str, extra: &[(&str, &str)]) -> Self {
        let prefix = format!("ferry-e2e-{}", uuid::Uuid::new_v4().simple());
        let mut env: Vec<(String, String)> = vec![
            ("FERRY_DATABASE_URL", db),
            ("FERRY_REDIS_URL", redis),
            ("FERRY_REDIS_PREFIX", &prefix),
            ("FERRY_TORRENT__DHT", "false"),
            ("FERRY_TORRENT__LISTEN", "127.0.0.1:0"),
            // Trackers and peers all run on loopback here.
            ("FERRY_TORRENT__ALLOW", LOOPBACK_SWARM),
            ("FERRY_WORKERS__LEASE", "3s"),
            ("FERRY_WORKERS__RECONCILE_EVERY", "2s"),
            ("FERRY_WORKERS__RETRY_BASE_DELAY", "1s"),
            ("FERRY_LOG__FORMAT", "pretty"),
            // Stress tests send thousands of requests a second; the rate-limit tests set
            // their own limits.
            ("FERRY_AUTH__API_RATE", "1000000"),
            ("FERRY_AUTH__API_BURST", "1000000"),
            // Every process of a deployment seals credentials with the same key.
            (
                "FERRY_SECRET_KEY",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let shared = [
            ("FERRY_DATA_DIR", dir.join("data")),
            ("FERRY_STAGING_DIR", dir.join("staging")),
            ("FERRY_STORAGE_DIR", dir.join("storage")),
        ];
        env.extend(
            shared
                .iter()
                .map(|(k, v)| (k.to_string(), v.display().to_string())),
        );
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Self {
            dir: dir.to_owned(),
            db: db.to_owned(),
            redis: redis.to_owned(),
            prefix,
            env,
        }
    }

    fn command(&self, bin: &str) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env_remove("FERRY_API_TOKEN")
            .env_remove("FERRY_TEST_KEEP");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env("RUST_LOG", "info,ferry=debug,librqbit=warn");
        cmd
    }

    /// Runs `ferry migrate` (as compose does before the API starts).
    pub fn migrate(&self) {
        let out = self
            .command(env!("CARGO_BIN_EXE_ferry"))
            .arg("migrate")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "migrate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A `ferry-api` on a port of its choosing (read from its ready message).
    pub fn api(&self) -> Ferry {
        let mut cmd = self.command(env!("CARGO_BIN_EXE_ferry-api"));
        cmd.arg("--listen").arg("127.0.0.1:0");
        let log = self
            .dir
            .join(format!("api-{}.log", uuid::Uuid::new_v4().simple()));
        Ferry::attach(Proc::spawn("ferry-api", cmd, log), &self.dir.join("data"))
    }

    /// A worker of `kind` whose probes listen on a port of its choosing (read from its
    /// start-up log line).
    pub fn worker(&self, kind: &str) -> Worker {
        let bin = match kind {
            "torrent" => env!("CARGO_BIN_EXE_ferry-torrent-worker"),
            "fetch" => env!("CARGO_BIN_EXE_ferry-fetch-worker"),
            _ => env!("CARGO_BIN_EXE_ferry-upload-worker"),
        };
        let mut cmd = self.command(bin);
        cmd.arg("--probe-listen").arg("127.0.0.1:0");
        let log = self.dir.join(format!(
            "{kind}-worker-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let mut proc = Proc::spawn("worker", cmd, log);
        let probe = announced(&mut proc, |log| {
            logged_port(log, "worker started", "probes")
        });
        wait_for_port_pub(probe, "worker probes");
        Worker { proc, probe }
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    /// Unacknowledged entries of a stage's consumer group.
    pub fn unacknowledged(&self, stage: &str) -> u64 {
        let out = redis_cli(
            &self.redis,
            &["XPENDING", &self.key(&format!("q:{stage}")), "workers"],
        );
        out.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn dead_letters(&self) -> u64 {
        redis_cli(&self.redis, &["XLEN", &self.key("q:dead")])
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// How many `completed` status events the job's progress stream holds.
    pub fn completions(&self, job: &str) -> usize {
        redis_cli(
            &self.redis,
            &["XRANGE", &self.key(&format!("progress:{job}")), "-", "+"],
        )
        .lines()
        .filter(|l| l.contains(r#""kind":"status""#) && l.contains(r#""status":"completed""#))
        .count()
    }
}
