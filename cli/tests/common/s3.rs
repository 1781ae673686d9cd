//! S3-compatible servers for tests (s3s-fs, which checks SigV4 signatures; moto, which answers
//! some calls unlike S3), and the aws CLI as the independent client that reads back what Ferry
//! delivered.

use std::path::{Path, PathBuf};
use std::process::Command;

pub use ferry_testkit::s3::{ACCESS, SECRET};

/// An S3-compatible server of the test's own (see `ferry_testkit::s3`), with the aws CLI
/// as the independent client.
pub struct S3Server {
    pub port: u16,
    pub root: PathBuf,
    _server: ferry_testkit::s3::S3Server,
}

impl S3Server {
    fn wrap(server: Option<ferry_testkit::s3::S3Server>) -> Option<Self> {
        server.map(|s| Self {
            port: s.port,
            root: s.root.clone(),
            _server: s,
        })
    }

    /// s3s-fs, which checks SigV4 signatures (data in `dir/s3-data`).
    pub fn start(dir: &Path) -> Option<Self> {
        Self::wrap(ferry_testkit::s3::S3Server::s3s_fs(dir))
    }

    /// moto's S3 server (`moto_server`, PyPI `moto[server]`); it takes any credentials.
    pub fn start_moto(dir: &Path) -> Option<Self> {
        Self::wrap(ferry_testkit::s3::S3Server::moto(dir))
    }

    /// Down for `outage` (killed), then up again on the same port with the same data.
    pub fn outage(&mut self, outage: std::time::Duration) {
        self._server.outage(outage);
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
