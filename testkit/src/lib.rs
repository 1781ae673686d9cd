//! Fixtures every Ferry test suite shares, so each suite stops growing its own copy:
//!
//! - [`unavailable`] / [`require`]: a service or program a test needs is missing. Outside CI
//!   the test prints `SKIPPED` and passes; with `CI` set it fails (CI must never skip).
//! - [`postgres::FreshDatabase`]: a database of the test's own on the PostgreSQL server the
//!   tests use (`FERRY_TEST_POSTGRES_URL`), dropped on drop.
//! - [`redis::Prefix`]: a Redis URL (`FERRY_TEST_REDIS_URL`) and a key prefix of the test's
//!   own, whose keys are deleted on drop.
//! - [`s3::S3Server`]: s3s-fs (checks SigV4 signatures) or moto on a port of its own,
//!   stopped on drop.
//! - [`oidc::OidcServer`]: a real OpenID Connect provider (npm `oidc-provider`) with two
//!   users, JWT access tokens and key rotation, and [`oidc::login`] through its login forms.
//! - [`Proc`]: a child process with its output in a log file, killed on drop, and
//!   [`spawn_on_free_port`] for programs that cannot be told to bind port 0 and report it.
//!
//! It is test support: it panics (with the reason) where a test cannot go on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod oidc;
pub mod postgres;
pub mod redis;
pub mod s3;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether this is a CI run (`CI` set), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// A service or program the test needs is unavailable: fails in CI, else prints `SKIPPED`
/// (the test then returns early and passes).
pub fn unavailable(what: &str, why: &str) {
    if in_ci() {
        panic!("{what} is unavailable in CI: {why} (scripts/test-deps.sh sets it up)");
    }
    eprintln!(
        "SKIPPED: {what} is unavailable ({why}); scripts/test-deps.sh sets it up, and CI would fail here"
    );
}

/// Where `program` is on `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Whether the programs a test needs exist (see [`unavailable`]).
pub fn require(programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| find_program(p).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    unavailable(&format!("{missing:?}"), "not installed");
    false
}

/// A program installed by `scripts/test-deps.sh`: the environment variable `env`, then
/// `~/.cache/ferry-tools/bin/{name}`, then `PATH`.
pub fn tool(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let cached = PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
        .join(".cache/ferry-tools/bin")
        .join(name);
    if cached.is_file() {
        return Some(cached);
    }
    find_program(name)
}

/// A port that was free a moment ago. Only for programs that cannot bind port 0 and
/// report it; start them with [`spawn_on_free_port`], which retries if the port was taken.
///
/// It is drawn below the kernel's ephemeral range (`ip_local_port_range`): a port from that
/// range (what binding port 0 gives) can be taken meanwhile as the source port of any
/// outgoing connection on the machine — with suites running in parallel, often enough that
/// a server failed to start ("Address already in use") about one run in twenty.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static DRAWN: AtomicU64 = AtomicU64::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const LOW: u16 = 10_000;
    if ephemeral_low > LOW + 1000 {
        let span = u64::from(ephemeral_low - LOW);
        for _ in 0..200 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(DRAWN.fetch_add(1, Ordering::Relaxed));
            h.write_u32(std::process::id());
            let port = LOW + (h.finish() % span) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `127.0.0.1:port`.
pub fn wait_for_port(port: u16, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not open port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process with its output in a log file; killed when dropped.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd`, its stdout and stderr going to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self {
            child,
            name: name.to_owned(),
            log,
        }
    }

    /// Sends `signal` (a number, as `kill -N`) to the process.
    pub fn signal(&self, signal: i32) {
        // Through `kill(1)`: this crate has no unsafe code.
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "signal {signal} to {}", self.name);
    }

    /// What the process wrote so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for exit; the status, or `None` after `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a program that must be told its port: picks a free one, and when the program
/// exits before it listens (another process took the port in between), tries another.
pub fn spawn_on_free_port(name: &str, log: &Path, command: impl Fn(u16) -> Command) -> (Proc, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut proc = Proc::spawn(name, command(port), log.to_owned());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Our child must still be running when the port answers: a port another process
            // took meanwhile answers too, and then our child exits.
            if proc.child.try_wait().unwrap().is_some() {
                break;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                std::thread::sleep(Duration::from_millis(100));
                if proc.child.try_wait().unwrap().is_none() {
                    return (proc, port);
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not open port {port}:\n{}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{name} exited before listening on {port}; trying another port");
    }
    panic!(
        "{name} could not be started on a free port (see {})",
        log.display()
    );
}

/// A scratch folder for one test, kept (and printed) when `FERRY_TEST_KEEP` is set so the
/// logs of every process in it can be read afterwards.
pub fn scratch() -> (Option<tempfile::TempDir>, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("ferry-test-")
        .tempdir()
        .unwrap();
    if std::env::var_os("FERRY_TEST_KEEP").is_some() {
        let path = dir.keep();
        eprintln!("test folder kept: {}", path.display());
        return (None, path);
    }
    let path = dir.path().to_owned();
    (Some(dir), path)
}

/// A name no other test run uses (databases, key prefixes, buckets).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}
