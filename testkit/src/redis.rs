//! A Redis key prefix of the test's own on the Redis server the tests use.

use std::process::{Command, Stdio};

/// The server the tests use: `FERRY_TEST_REDIS_URL`, else the local one.
pub fn server_url() -> String {
    std::env::var("FERRY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test uses; its keys are deleted on drop.
#[derive(Debug)]
pub struct Prefix {
    pub url: String,
    pub prefix: String,
}

impl Prefix {
    /// A new prefix on [`server_url`]. Whether the server answers is for the test's client
    /// to find out (see [`crate::unavailable`]).
    pub fn new() -> Self {
        Self {
            url: server_url(),
            prefix: crate::unique("ferry-test"),
        }
    }
}

impl Default for Prefix {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        // Best effort, and only where redis-cli exists: the keys expire with the server.
        let Ok(out) = Command::new("redis-cli")
            .arg("-u")
            .arg(&self.url)
            .args(["--scan", "--pattern"])
            .arg(format!("{}*", self.prefix))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
        else {
            return;
        };
        let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        for chunk in keys.chunks(500) {
            let _ = Command::new("redis-cli")
                .arg("-u")
                .arg(&self.url)
                .arg("DEL")
                .args(chunk)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
