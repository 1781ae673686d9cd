//! S3-compatible servers on ports of their own: s3s-fs (checks SigV4 signatures, keeps
//! objects as files) and moto (PyPI `moto[server]`; answers some calls unlike S3).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Proc;

/// The credentials s3s-fs is started with (moto takes any).
pub const ACCESS: &str = "AKIDFERRYTEST";
pub const SECRET: &str = "ferry-test-secret-key";

/// A running S3-compatible server; stopped on drop.
#[derive(Debug)]
pub struct S3Server {
    pub port: u16,
    /// Where the server keeps its data.
    pub root: PathBuf,
    pub proc: Proc,
    /// How to start it again on its port (`None` for moto, whose data lives in memory).
    again: Option<(PathBuf, PathBuf)>,
}

impl S3Server {
    /// s3s-fs in `dir` (data under `dir/s3-data`, log `dir/s3s-fs.log`); `None` when it is
    /// not installed outside CI.
    pub fn s3s_fs(dir: &Path) -> Option<Self> {
        let Some(bin) = crate::tool("FERRY_S3S_FS", "s3s-fs") else {
            crate::unavailable("s3s-fs", "not installed");
            return None;
        };
        let root = dir.join("s3-data");
        std::fs::create_dir_all(&root).unwrap();
        let (proc, port) = crate::spawn_on_free_port("s3s-fs", &dir.join("s3s-fs.log"), |port| {
            s3s_fs_command(&bin, port, &root)
        });
        Some(Self {
            port,
            root,
            proc,
            again: Some((bin, dir.join("s3s-fs-again.log"))),
        })
    }

    /// moto's S3 server in `dir` (log `dir/moto.log`); `None` when it is not installed
    /// outside CI.
    pub fn moto(dir: &Path) -> Option<Self> {
        if !crate::require(&["moto_server"]) {
            return None;
        }
        let root = dir.join("moto");
        std::fs::create_dir_all(&root).unwrap();
        let (proc, port) =
            crate::spawn_on_free_port("moto_server", &dir.join("moto.log"), |port| {
                let mut cmd = Command::new("moto_server");
                cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                cmd
            });
        Some(Self {
            port,
            root,
            proc,
            again: None,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server (an outage: connections refused), and after `outage` starts it
    /// again on the same port with the same data. s3s-fs only.
    pub fn outage(&mut self, outage: std::time::Duration) {
        let (bin, log) = self.again.clone().expect("only s3s-fs can be restarted");
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
        std::thread::sleep(outage);
        self.proc = Proc::spawn("s3s-fs", s3s_fs_command(&bin, self.port, &self.root), log);
        crate::wait_for_port(self.port, "s3s-fs", std::time::Duration::from_secs(30));
    }
}

fn s3s_fs_command(bin: &Path, port: u16, root: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS, "--secret-key", SECRET])
        .arg(root);
    cmd
}
