//! A database of the test's own on the PostgreSQL server the tests use.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The server the tests use: `FERRY_TEST_POSTGRES_URL`, else the local one.
pub fn server_url() -> String {
    std::env::var("FERRY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// What `scripts/test-deps.sh` said to do when the tests could not log in to PostgreSQL (it
/// changes no server's authentication on a developer's machine unless asked).
pub fn setup_needed() -> Option<String> {
    let home = std::env::var_os("HOME")?;
    std::fs::read_to_string(Path::new(&home).join(".cache/ferry-tools/postgres-setup-needed")).ok()
}

/// A fresh database, dropped (with its connections) on drop.
#[derive(Debug)]
pub struct FreshDatabase {
    /// Its connection URL.
    pub url: String,
    pub name: String,
    admin: String,
}

impl FreshDatabase {
    /// Creates one; `None` (the test skips) when PostgreSQL is unavailable outside CI.
    pub fn create() -> Option<Self> {
        let admin = server_url();
        let name = crate::unique("ferry_test");
        let out = Command::new("psql")
            .arg(&admin)
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .stdin(Stdio::null())
            .output();
        let why = match out {
            Ok(o) if o.status.success() => {
                let (prefix, _) = admin.rsplit_once('/').expect("a database URL has a path");
                return Some(Self {
                    url: format!("{prefix}/{name}"),
                    name,
                    admin,
                });
            }
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => format!("psql: {e}"),
        };
        if let Some(help) = setup_needed() {
            panic!("{help}");
        }
        crate::unavailable(&format!("PostgreSQL at {admin}"), &why);
        None
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.admin)
            .args(["-q", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A PostgreSQL server of the test's own (`initdb` into a scratch folder, on a port of its
/// own), so that a test may stop and restart it without disturbing any other test. Run as
/// the `postgres` user when the tests run as root (the server refuses root).
#[derive(Debug)]
pub struct OwnServer {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    user: Option<(u32, u32)>,
    proc: Option<crate::Proc>,
    _dir: tempfile::TempDir,
}

impl OwnServer {
    /// `initdb` and start; `None` (the test skips) when the server programs are missing
    /// outside CI.
    pub fn start() -> Option<Self> {
        let Some(bin) = server_bin() else {
            crate::unavailable("PostgreSQL's initdb and postgres", "not installed");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("ferry-pg-")
            .tempdir()
            .unwrap();
        let user = if is_root() {
            let ids = passwd_ids("postgres").expect("running as root needs a postgres user");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            Some(ids)
        } else {
            None
        };
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .stdin(Stdio::null());
        as_user(&mut initdb, user);
        let out = initdb.output().unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = Self {
            port: crate::free_port(),
            bin,
            data,
            user,
            proc: None,
            _dir: dir,
        };
        server.restart();
        Some(server)
    }

    /// The `postgres` database on it.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it as an operator's restart does (a fast shutdown: clients are disconnected).
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.signal(2); // SIGINT: fast shutdown
            proc.wait_timeout(std::time::Duration::from_secs(30))
                .expect("postgres did not shut down");
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "fsync=off", "-c", "max_connections=200"]);
        as_user(&mut cmd, self.user);
        let log = self.data.with_file_name("postgres.log");
        let proc = crate::Proc::spawn("postgres", cmd, log);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .output()
                .unwrap();
            if ready.status.success() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "postgres did not start ({}{}):\n{}",
                String::from_utf8_lossy(&ready.stdout),
                String::from_utf8_lossy(&ready.stderr),
                proc.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.proc = Some(proc);
    }
}

/// The folder of `initdb` and `postgres`: `FERRY_TEST_PG_BIN`, `PATH`, then Debian's newest
/// `/usr/lib/postgresql/*/bin`.
fn server_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FERRY_TEST_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    if let Some(initdb) = crate::find_program("initdb") {
        // Often a link to the version's own folder, where the other programs are.
        let initdb = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        return initdb.parent().map(Path::to_path_buf);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    // The effective uid, second on the `Uid:` line.
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
            .unwrap_or(false)
    })
}

/// The uid and gid of `user` in `/etc/passwd`.
fn passwd_ids(user: &str) -> Option<(u32, u32)> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&user) && f.len() > 3)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
}

fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(gid);
    }
}
