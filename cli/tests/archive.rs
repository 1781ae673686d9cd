//! A finished job's files as one archive, from the real `ferry serve` after a real swarm:
//! the zip unpacked by `unzip` and the tar by GNU `tar` and `bsdtar` match the
//! seeder's files, whole and for a selection; `Content-Length` is the archive's length; and
//! what must not work does not (another user's job, an unfinished job, bad parameters).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::login::*;
use common::swarm::Swarm;
use common::*;
use reqwest::Method;

const LONG: Duration = Duration::from_secs(180);

fn files() -> Vec<(&'static str, u64)> {
    vec![
        ("Season 1/Épisode 1.mkv", 3 * (1 << 20) + 17),
        ("Season 1/Épisode 1.srt", 70_001),
        (
            "extras/a very long folder name that goes on and on and on for a while/and a file name that is long as well.txt",
            1234,
        ),
    ]
}

/// Downloads the archive at `path` into `dest`; checks `Content-Length` against its bytes.
async fn fetch(ferry: &Ferry, path: &str, dest: &Path) {
    let r = ferry.req(Method::GET, path).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{path}");
    let declared: u64 = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, declared);
    std::fs::write(dest, &bytes).unwrap();
}

/// Unpacks `archive` with `tool` into a fresh folder and compares each expected file.
fn unpack_and_check(tool: &[&str], archive: &Path, expected: &[(String, String, u64)]) {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(tool[0])
        .args(&tool[1..])
        .arg(archive)
        .current_dir(out.path())
        .status()
        .unwrap();
    assert!(status.success(), "{tool:?}");
    let mut found = 0;
    for entry in walk(out.path()) {
        let rel = entry
            .strip_prefix(out.path())
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let (_, sha, _) = expected
            .iter()
            .find(|(p, _, _)| *p == rel)
            .unwrap_or_else(|| panic!("{tool:?}: unexpected {rel}"));
        assert_eq!(&sha256_hex(&std::fs::read(&entry).unwrap()), sha, "{rel}");
        found += 1;
    }
    assert_eq!(found, expected.len(), "{tool:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(walk(&path));
        } else {
            all.push(path);
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_downloads_as_one_zip_or_tar() {
    if !require(&["opentracker", "aria2c", "mktorrent", "unzip", "bsdtar"]) {
        return;
    }
    let s = Swarm::start("Show", &files());
    let ferry = Ferry::start(&s.root.join("ferry"), &[]);
    let job = ferry.submit_magnet(&s.magnet()).await;
    let id = job["id"].as_str().unwrap().to_owned();
    ferry.wait_status(&id, "completed", LONG).await;
    let (_, listed) = ferry.get_json(&format!("/jobs/{id}/files")).await;
    let names: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    let expected = &s.payload.files;
    assert_eq!(
        names,
        expected.iter().map(|f| f.0.clone()).collect::<Vec<_>>()
    );

    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("show.zip");
    fetch(&ferry, &format!("/jobs/{id}/archive"), &zip).await;
    unpack_and_check(&["unzip", "-q"], &zip, expected);
    let test = Command::new("unzip").arg("-tq").arg(&zip).output().unwrap();
    assert!(test.status.success(), "{test:?}");

    let tar = dir.path().join("show.tar");
    fetch(&ferry, &format!("/jobs/{id}/archive?format=tar"), &tar).await;
    unpack_and_check(&["tar", "-xf"], &tar, expected);
    unpack_and_check(&["bsdtar", "-xf"], &tar, expected);

    // A selection: the files named, in the order named, each once.
    let chosen = vec![expected[2].clone(), expected[0].clone()];
    let part = dir.path().join("part.zip");
    fetch(&ferry, &format!("/jobs/{id}/archive?files=2,0,2"), &part).await;
    unpack_and_check(&["unzip", "-q"], &part, &chosen);
    let part = dir.path().join("part.tar");
    fetch(
        &ferry,
        &format!("/jobs/{id}/archive?format=tar&files=2,0"),
        &part,
    )
    .await;
    unpack_and_check(&["tar", "-xf"], &part, &chosen);

    // What must not work.
    for (query, status, code) in [
        ("format=rar", 400, "invalid_request"),
        ("files=9", 404, "file_not_found"),
        ("files=zero", 400, "invalid_request"),
        ("files=99999999999", 400, "invalid_request"),
    ] {
        let r = ferry
            .req(Method::GET, &format!("/jobs/{id}/archive?{query}"))
            .send()
            .await
            .unwrap();
        expect(r, status, code).await;
    }
    let r = ferry
        .req(
            Method::GET,
            "/jobs/00000000-0000-7000-8000-000000000000/archive",
        )
        .send()
        .await
        .unwrap();
    expect(r, 404, "job_not_found").await;
    add_user(&ferry, "mallory", false);
    let mallory = browser(&ferry, "mallory").await;
    let r = mallory
        .req(Method::GET, &format!("/jobs/{id}/archive"))
        .send()
        .await
        .unwrap();
    expect(r, 404, "job_not_found").await;
    let lonely = ferry
        .submit_magnet(&format!(
            "magnet:?xt=urn:btih:{}&dn=lonely",
            "ab".repeat(20)
        ))
        .await;
    let r = ferry
        .req(
            Method::GET,
            &format!("/jobs/{}/archive", lonely["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    expect(r, 409, "job_not_finished").await;
}
