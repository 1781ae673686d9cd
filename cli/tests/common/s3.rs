//! S3-compatible servers for tests (s3s-fs, which checks SigV4 signatures; moto, which answers
//! some calls unlike S3), and the aws CLI as the independent client that reads back what Ferry
//! delivered.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

pub const ACCESS: &str = "AKIDFERRYE2E";
pub const SECRET: &str = "ferry-e2e-secret-key";

pub fn s3s_fs_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FERRY_S3S_FS") {
        return Some(PathBuf::from(p));
    }
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/ferry-tools/bin/s3s-fs");
    if cached.exists() {
        return Some(cached);
    }
    let found = Command::new("sh")
        .arg("-c")
        .arg("command -v s3s-fs")
        .output()
        .ok()?;
    found
        .status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&found.stdout).trim()))
}

pub struct S3Server {
    pub port: u16,
    pub root: PathBuf,
    _proc: Proc,
}

impl S3Server {
    pub fn start(dir: &Path) -> Option<Self> {
        let Some(bin) = s3s_fs_binary() else {
            if std::env::var_os("CI").is_some() {
                panic!("s3s-fs is missing (scripts/test-deps.sh installs it)");
            }
            eprintln!("SKIPPED: s3s-fs is missing; scripts/test-deps.sh installs it");
            return None;
        };
        let root = dir.join("s3-data");
        std::fs::create_dir_all(&root).unwrap();
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            ACCESS,
            "--secret-key",
            SECRET,
        ])
        .arg(&root);
        let proc = Proc::spawn("s3s-fs", cmd, dir.join("s3s-fs.log"));
        wait_for_port_pub(port, "s3s-fs");
        Some(Self {
            port,
            root,
            _proc: proc,
        })
    }

    /// moto's S3 server (`moto_server`, PyPI `moto[server]`); it takes any credentials.
    pub fn start_moto(dir: &Path) -> Option<Self> {
        if !require(&["moto_server"]) {
            return None;
        }
        let root = dir.join("moto");
        std::fs::create_dir_all(&root).unwrap();
        let port = free_port();
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let proc = Proc::spawn("moto_server", cmd, dir.join("moto.log"));
        wait_for_port_pub(port, "moto_server");
        Some(Self {
            port,
            root,
            _proc: proc,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs the aws CLI against this server; returns stdout.
    pub fn aws(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("aws")
            .arg("--endpoint-url")
            .arg(self.endpoint())
            .args(args)
            .env("AWS_ACCESS_KEY_ID", ACCESS)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "aws {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Unfinished multipart uploads on the server (s3s-fs keeps one `.upload-*.json` each).
    pub fn unfinished_uploads(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(".upload-"))
                    .collect()
            })
            .unwrap_or_default()
    }
}
