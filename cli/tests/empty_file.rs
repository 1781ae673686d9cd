//! A torrent with a zero-length file, end to end (real `ferry serve`, an aria2c seeder,
//! opentracker): the job completes whether the empty file is selected with the others, alone,
//! or left out; the delivered folder holds it with length 0; the file endpoint, `Range` and
//! both archive formats treat it as the empty file it is; and a job that seeds hands it on.
//! The layout that stalled jobs for good is an empty file between two files that share a
//! piece (vendored librqbit, `FERRY-PATCH.md` change 6).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::swarm::Swarm;
use common::*;
use reqwest::Method;

const LONG: Duration = Duration::from_secs(180);
const MIB: u64 = 1 << 20;

/// An empty file between two files that share a piece (`cover.jpg` ends inside the first
/// piece, where `video.bin` begins): in torrent order `x/cover.jpg` (0), `x/empty.nfo` (1),
/// `x/video.bin` (2).
const BETWEEN: [(&str, u64); 3] = [
    ("video.bin", 3 * MIB),
    ("empty.nfo", 0),
    ("cover.jpg", 100_000),
];

/// The empty file first (`x/empty.nfo` (0), `x/video.bin` (1)).
const FIRST: [(&str, u64); 2] = [("video.bin", 3 * MIB), ("empty.nfo", 0)];

/// A swarm of `files`, and the index of its empty file.
fn swarm(files: &[(&str, u64)]) -> (Swarm, u64) {
    let s = Swarm::start("x", files);
    let paths: Vec<&str> = s
        .torrent
        .meta
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    let expected: Vec<&str> = s.payload.files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(paths, expected, "mktorrent keeps the empty file");
    let empty = s.payload.files.iter().position(|f| f.2 == 0).unwrap() as u64;
    (s, empty)
}

/// Submits the torrent with `files` selected, waits for it to complete, and checks the
/// progress and the delivered folder: the selected files, byte for byte, and nothing else.
async fn completes(ferry: &Ferry, s: &Swarm, files: Option<&[u64]>) -> String {
    let selection = files.map(|f| f.iter().map(u64::to_string).collect::<Vec<_>>().join(","));
    let (status, job) = ferry
        .submit_torrent(&s.torrent.bytes, selection.as_deref())
        .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let job = ferry.wait_status(&id, "completed", LONG).await;
    let total: u64 = s
        .payload
        .files
        .iter()
        .enumerate()
        .filter(|(i, _)| files.is_none_or(|f| f.contains(&(*i as u64))))
        .map(|(_, f)| f.2)
        .sum();
    assert_eq!(job["progress"]["bytes_done"], total, "{job}");
    assert_eq!(job["progress"]["bytes_total"], total, "{job}");
    assert_eq!(job["progress"]["percent"], 100.0, "{job}");
    ferry.assert_files_match(&id, &s.payload, files).await;

    let stored = ferry.data_dir.join("storage/local").join(&id);
    for (i, (path, sha, size)) in s.payload.files.iter().enumerate() {
        let file = stored.join(path);
        if files.is_none_or(|f| f.contains(&(i as u64))) {
            let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(bytes.len() as u64, *size, "{path}");
            assert_eq!(&sha256_hex(&bytes), sha, "{path}");
        } else {
            assert!(!file.exists(), "{path} was not selected");
        }
    }
    assert!(
        !ferry.data_dir.join("staging").join(&id).exists(),
        "staging freed"
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torrent_with_an_empty_file_completes_whatever_is_selected() {
    if !require(&["opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    for files in [&BETWEEN[..], &FIRST[..]] {
        let (s, empty) = swarm(files);
        let ferry = Ferry::start(&s.root.join("ferry"), &[]);
        let others: Vec<u64> = (0..s.payload.files.len() as u64)
            .filter(|i| *i != empty)
            .collect();
        completes(&ferry, &s, None).await;
        completes(&ferry, &s, Some(&[empty])).await;
        completes(&ferry, &s, Some(&others)).await;
        if others.len() > 1 {
            // The file after the empty one alone (it shares a piece with the one before).
            completes(&ferry, &s, Some(&[others[others.len() - 1]])).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_downloads_as_itself_and_inside_both_archives() {
    if !require(&["opentracker", "aria2c", "mktorrent", "unzip", "bsdtar"]) {
        return;
    }
    let (s, empty) = swarm(&BETWEEN);
    let ferry = Ferry::start(&s.root.join("ferry"), &[]);
    let id = completes(&ferry, &s, None).await;

    // The empty file on its own: 200 with no bytes; any range of it is unsatisfiable.
    let url = format!("/jobs/{id}/files/{empty}");
    let r = ferry.req(Method::GET, &url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-length"], "0");
    assert!(r.bytes().await.unwrap().is_empty());
    for range in ["bytes=0-", "bytes=0-0", "bytes=-1"] {
        let r = ferry
            .req(Method::GET, &url)
            .header("Range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 416, "{range}");
        assert_eq!(r.headers()["content-range"], "bytes */0", "{range}");
    }

    let dir = tempfile::tempdir().unwrap();
    for (format, tools) in [
        ("zip", vec![vec!["unzip", "-q"], vec!["bsdtar", "-xf"]]),
        ("tar", vec![vec!["tar", "-xf"], vec!["bsdtar", "-xf"]]),
    ] {
        let archive = dir.path().join(format!("x.{format}"));
        let r = ferry
            .req(Method::GET, &format!("/jobs/{id}/archive?format={format}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{format}");
        let declared: u64 = r.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let bytes = r.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, declared, "{format}");
        std::fs::write(&archive, &bytes).unwrap();
        if format == "zip" {
            let test = Command::new("unzip")
                .arg("-tq")
                .arg(&archive)
                .output()
                .unwrap();
            assert!(test.status.success(), "{test:?}");
        }
        for tool in tools {
            unpacks_to_the_payload(&tool, &archive, &s);
        }
    }
}

/// Unpacks `archive` with `tool` into a fresh folder: exactly the payload's files, the empty
/// one with length 0.
fn unpacks_to_the_payload(tool: &[&str], archive: &Path, s: &Swarm) {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(tool[0])
        .args(&tool[1..])
        .arg(archive)
        .current_dir(out.path())
        .status()
        .unwrap();
    assert!(status.success(), "{tool:?}");
    let mut unpacked: Vec<String> = std::fs::read_dir(out.path().join("x"))
        .unwrap()
        .map(|e| format!("x/{}", e.unwrap().file_name().to_str().unwrap()))
        .collect();
    unpacked.sort();
    let expected: Vec<String> = s.payload.files.iter().map(|f| f.0.clone()).collect();
    assert_eq!(unpacked, expected, "{tool:?}");
    for (path, sha, size) in &s.payload.files {
        let bytes = std::fs::read(out.path().join(path)).unwrap();
        assert_eq!(bytes.len() as u64, *size, "{tool:?} {path}");
        assert_eq!(&sha256_hex(&bytes), sha, "{tool:?} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torrent_job_with_an_empty_file_seeds_it() {
    if !require(&["opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let (s, _) = swarm(&BETWEEN);
    let ferry = Ferry::start(&s.root.join("ferry"), &[]);
    let form = reqwest::multipart::Form::new()
        .part(
            "torrent",
            reqwest::multipart::Part::bytes(s.torrent.bytes.clone()).file_name("x.torrent"),
        )
        .text("seed", "true");
    let r = ferry
        .req(Method::POST, "/jobs/torrent")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let job: serde_json::Value = r.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    ferry.wait_status(&id, "seeding", LONG).await;
    ferry.assert_files_match(&id, &s.payload, None).await;

    // Ferry is the only seeder left: aria2c gets every file, the empty one too, from it.
    s.tracker.wait_for_seeders(&s.torrent.info_hash, 2);
    s.seeder.proc.signal(9);
    let out = s.root.join("leecher");
    assert!(
        aria2c_download(&s.torrent.path, &out, 120),
        "aria2c could not download from Ferry:\n{}",
        ferry.proc.log_text()
    );
    for (path, sha, size) in &s.payload.files {
        let bytes = std::fs::read(out.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(bytes.len() as u64, *size, "{path}");
        assert_eq!(&sha256_hex(&bytes), sha, "{path}");
    }
}
