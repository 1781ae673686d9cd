//! A database of the test's own on the PostgreSQL server the tests use.

use std::path::Path;
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
