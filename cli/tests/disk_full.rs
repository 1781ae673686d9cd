//! A full disk: the staging folder (downloads, URL fetches) and the storage folder (delivery)
//! each on a small tmpfs that fills while a job writes. The job fails with `disk_full` (no
//! retry loop that fills the disk again), nothing half-written is delivered or shown as
//! complete, the server keeps answering, and once space is freed `retry` completes the job
//! with the origin's bytes.
//!
//! Mounting needs root (CAP_SYS_ADMIN); CI runs as root, so there a failed mount fails the
//! test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::origin::*;
use common::swarm::Swarm;
use common::*;
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

/// A tmpfs of `mib` MiB mounted at `path`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, mib: u64) -> Option<Self> {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self(path.to_owned())),
            Ok(o) => {
                ferry_testkit::unavailable(
                    "a small tmpfs",
                    &format!("mount: {}", String::from_utf8_lossy(&o.stderr).trim()),
                );
                None
            }
            Err(e) => {
                ferry_testkit::unavailable("a small tmpfs", &format!("mount: {e}"));
                None
            }
        }
    }

    /// Fills all but `leave` bytes with a ballast file, returned for freeing later.
    fn fill(&self, leave: u64) -> PathBuf {
        let ballast = self.0.join("ballast");
        let free = free_bytes(&self.0);
        let size = free.saturating_sub(leave);
        std::fs::write(&ballast, vec![0u8; size as usize]).unwrap();
        ballast
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process still holding a file there (a killed server's) cannot keep it up.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push((path.clone(), entry.metadata().map_or(0, |m| m.len())));
            }
        }
    }
    found
}

/// The job fails with `disk_full` and one sentence; the server answers meanwhile.
async fn fails_disk_full(ferry: &Ferry, id: &str) -> Value {
    let job = ferry
        .wait_status(id, "failed", Duration::from_secs(60))
        .await;
    assert_eq!(job["error"]["code"], "disk_full", "{job}");
    let message = job["error"]["message"].as_str().unwrap();
    assert!(message.contains("free space"), "{message}");
    assert!(
        !message.contains('/'),
        "no paths in what users see: {message}"
    );
    let (status, list) = ferry.get_json("/jobs").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(ferry.get_json("/health").await.0, 200);
    job
}

async fn retry(ferry: &Ferry, id: &str) {
    let (status, job) = ferry
        .post_json(&format!("/jobs/{id}/retry"), json!({}))
        .await;
    assert_eq!(
        (status, job["status"].as_str()),
        (200, Some("queued")),
        "{job}"
    );
}

/// A URL job whose staging fills fails `disk_full`; so does one whose delivery fills the
/// storage folder, with no partial file left there; both complete on retry once space is
/// freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_jobs_fail_disk_full_and_complete_on_retry_once_space_is_freed() {
    init();
    let (_keep, root) = test_dir();
    let Some(staging) = Tmpfs::mount(&root.join("staging"), 16) else {
        return;
    };
    let Some(storage) = Tmpfs::mount(&root.join("storage"), 16) else {
        return;
    };
    let name = "release.bin";
    let file = root.join("origin").join(name);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let sha = random_file(&file, 8 * MIB);
    let origin = Origin::start(&file, name).await;
    let staging_dir = staging.0.display().to_string();
    let storage_dir = storage.0.display().to_string();
    let ferry = Ferry::start(
        &root.join("ferry"),
        &[
            ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]"),
            ("FERRY_STAGING_DIR", &staging_dir),
            ("FERRY_STORAGE_DIR", &storage_dir),
        ],
    );

    // Staging has 3 MiB left for an 8 MiB file.
    let ballast = staging.fill(3 * MIB);
    let url = format!("http://{}/{name}", origin.addr);
    let id = ferry.submit_url(&url).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    fails_disk_full(&ferry, &id).await;
    assert!(
        files_under(&storage.0).is_empty(),
        "nothing was delivered: {:?}",
        files_under(&storage.0)
    );
    std::fs::remove_file(&ballast).unwrap();
    retry(&ferry, &id).await;
    let done = ferry
        .wait_status(&id, "completed", Duration::from_secs(60))
        .await;
    assert_eq!(done["content_sha256"], sha.as_str(), "{done}");
    ferry.assert_files_match_one(&id, name, &sha).await;

    // Storage has 3 MiB left: the download succeeds, delivery fails, and no partial copy
    // stays in the storage folder.
    let ballast = storage.fill(3 * MIB);
    let before = files_under(&storage.0);
    let id = ferry.submit_url(&format!("{url}?second")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    fails_disk_full(&ferry, &id).await;
    assert_eq!(files_under(&storage.0), before, "no partial file stays");
    let (status, body) = ferry.get_json(&format!("/jobs/{id}/files/0")).await;
    assert!(
        (400..500).contains(&status),
        "a failed job's file is not served: {status} {body}"
    );
    std::fs::remove_file(&ballast).unwrap();
    retry(&ferry, &id).await;
    let done = ferry
        .wait_status(&id, "completed", Duration::from_secs(60))
        .await;
    assert_eq!(done["content_sha256"], sha.as_str(), "{done}");
    ferry.assert_files_match_one(&id, name, &sha).await;
}

/// A torrent whose staging fills while it downloads fails `disk_full` (the engine's write
/// error, not `engine_error` retried until the attempts run out), and completes on retry
/// once space is freed, every file matching.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torrent_fails_disk_full_and_completes_on_retry_once_space_is_freed() {
    init();
    if !require(&["opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let s = Swarm::start("payload", &[("a.bin", 6 * MIB + 123), ("b.bin", 3 * MIB)]);
    let Some(staging) = Tmpfs::mount(&s.root.join("staging"), 16) else {
        return;
    };
    let staging_dir = staging.0.display().to_string();
    let ferry = Ferry::start(
        &s.root.join("ferry"),
        &[("FERRY_STAGING_DIR", &staging_dir)],
    );
    let ballast = staging.fill(4 * MIB);
    let id = ferry
        .submit_magnet(&s.torrent.magnet(&s.tracker.announce()))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = fails_disk_full(&ferry, &id).await;
    assert_eq!(
        job["attempts"].as_u64().unwrap_or(1),
        1,
        "not retried: {job}"
    );
    std::fs::remove_file(&ballast).unwrap();
    retry(&ferry, &id).await;
    ferry
        .wait_status(&id, "completed", Duration::from_secs(60))
        .await;
    ferry.assert_files_match(&id, &s.payload, None).await;
}
