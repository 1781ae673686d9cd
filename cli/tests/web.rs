//! The web page in a real browser (Playwright for Python driving Debian's Chromium): each
//! test starts the real `ferry serve` and the peers a scenario needs, then runs the scenario
//! in `cli/tests/web/browser.py`. Screenshots go to `$CARGO_TARGET_TMPDIR/web-artifacts/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_gdrive::fake::FakeDrive;
use reqwest::Method;

use common::drive;
use common::login::{add_user, browser, setup_link};
use common::origin::{Origin, random_file};
use common::s3::*;
use common::swarm::Swarm;
use common::*;

/// Whether a browser can be driven here (in CI its absence fails the test).
fn browser_ready() -> bool {
    if !require(&["chromium", "python3"]) {
        return false;
    }
    let playwright = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !playwright {
        ferry_testkit::unavailable("playwright (PyPI)", "not installed");
    }
    playwright
}

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-artifacts")
}

/// Runs `scenario` of browser.py against `f`; its standard output, which the scenario may
/// use to report values (`KEY=value` lines).
fn scenario(f: &Ferry, scenario: &str, env: &[(&str, &str)]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web/browser.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(scenario)
        .env("FERRY_URL", &f.base)
        .env("FERRY_WEB_ARTIFACTS", artifacts().join(scenario))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "browser scenario {scenario} failed:\n{stdout}\n{}\n--- ferry's log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        f.proc.log_text()
    );
    stdout
}

const XSS: &str = "<img src=x onerror=alert(1)>.mkv";

/// A payload whose files include one named like markup and a clip to play, seeded by aria2c
/// behind a tracker.
fn swarm(name: &str) -> Swarm {
    Swarm::start_with(
        name,
        &[
            (XSS, 600_000),
            ("notes.txt", 70_000),
            ("extras/big.bin", 3 << 20),
        ],
        |dir| clip(&dir.join("clip.webm")),
    )
}

/// A two-second VP8 test picture with ffmpeg, for the player.
fn clip(path: &Path) {
    let out = Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=2:size=320x240:rate=25",
        ])
        .args(["-c:v", "libvpx", "-b:v", "300k", "-y"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha_of(payload: &Payload, suffix: &str) -> String {
    payload
        .files
        .iter()
        .find(|f| f.0.ends_with(suffix))
        .map(|f| f.1.clone())
        .unwrap()
}

#[test]
fn the_first_admin_adds_a_magnet_watches_it_finish_and_downloads_a_file() {
    if !browser_ready() || !require(&["opentracker", "aria2c", "mktorrent", "ffmpeg"]) {
        return;
    }
    let s = swarm("webmagnet");
    let f = Ferry::start(&s.root.join("ferry"), &[]);
    scenario(
        &f,
        "magnet",
        &[
            ("FERRY_SETUP_LINK", &setup_link(&f)),
            ("FERRY_MAGNET", &s.magnet()),
            ("FERRY_TORRENT_NAME", "webmagnet"),
            ("FERRY_XSS_NAME", XSS),
            ("FERRY_NOTES_SHA256", &sha_of(&s.payload, "notes.txt")),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torrent_with_an_unticked_file_downloads_only_the_others() {
    if !browser_ready() || !require(&["opentracker", "aria2c", "mktorrent", "ffmpeg"]) {
        return;
    }
    let s = swarm("webtree");
    let f = Ferry::start(&s.root.join("ferry"), &[]);
    add_user(&f, "alice", false);
    let path = s.torrent.path.to_string_lossy().into_owned();
    let said = tokio::task::block_in_place(|| {
        scenario(
            &f,
            "torrent",
            &[
                ("FERRY_TORRENT_PATH", &path),
                ("FERRY_SKIP_FILE", "big.bin"),
                ("FERRY_FILE_COUNT", &(s.payload.files.len() + 1).to_string()),
            ],
        )
    });
    let job = said
        .lines()
        .find_map(|l| l.strip_prefix("JOB="))
        .expect("the scenario names its job");
    // Read back as an admin acting for alice: only big.bin was left out.
    let (_, users) = f.get_json("/admin/users").await;
    let alice = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["display_name"] == "alice")
        .and_then(|u| u["id"].as_str())
        .unwrap()
        .to_owned();
    let (status, files) = f
        .get_json(&format!("/jobs/{job}/files?owner={alice}"))
        .await;
    assert_eq!(status, 200, "{files}");
    let selected: Vec<(String, bool)> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["selected"].as_bool().unwrap(),
            )
        })
        .collect();
    for (path, on) in &selected {
        assert_eq!(*on, !path.ends_with("big.bin"), "{selected:?}");
    }
}

#[test]
fn users_never_see_each_others_jobs_and_a_disabled_users_page_lands_on_sign_in() {
    if !browser_ready() {
        return;
    }
    init();
    let (_dir, root) = test_dir();
    let f = Ferry::start(&root.join("ferry"), &[]);
    for (name, admin) in [("root", true), ("alice", false), ("bob", false)] {
        add_user(&f, name, admin);
    }
    scenario(
        &f,
        "apart",
        &[("FERRY_LONELY_MAGNET", &lonely_magnet("alices-secret"))],
    );
}

#[test]
fn every_page_passes_axe_in_light_and_dark_and_fits_a_phone() {
    if !browser_ready() {
        return;
    }
    init();
    let (_dir, root) = test_dir();
    let f = Ferry::start(&root.join("ferry"), &[]);
    add_user(&f, "root", true);
    scenario(
        &f,
        "a11y",
        &[("FERRY_LONELY_MAGNET", &lonely_magnet("a11y"))],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_adds_a_folder_on_the_shared_volume_from_the_storage_page() {
    if !browser_ready() {
        return;
    }
    init();
    let (_dir, root) = test_dir();
    let f = Ferry::start(&root.join("ferry"), &[]);
    add_user(&f, "alice", false);
    let alice = browser(&f, "alice").await.user_id().await;
    let folder = f.data_dir.join("shared").join(&alice).join("tv");
    let location = folder.display().to_string();
    tokio::task::block_in_place(|| scenario(&f, "folder", &[("FERRY_FOLDER", &location)]));
    assert!(folder.is_dir(), "the folder was made on the volume");
    assert!(
        !f.data_dir.join("shared").join("bob").exists(),
        "the refused path made nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_adds_an_s3_bucket_gets_a_job_delivered_there_and_revokes_a_token() {
    if !browser_ready() || !require(&["opentracker", "aria2c", "mktorrent", "ffmpeg", "aws"]) {
        return;
    }
    let s = swarm("webs3");
    let Some(bucket) = S3Server::start(&s.root) else {
        return;
    };
    bucket.aws(&["s3", "mb", "s3://alice"]);
    let f = Ferry::start(
        &s.root.join("ferry"),
        &[("FERRY_STORAGE__ALLOW_PRIVATE_ENDPOINTS", "true")],
    );
    add_user(&f, "alice", false);
    let magnet = s.magnet();
    let endpoint = bucket.endpoint();
    let said = tokio::task::block_in_place(|| {
        scenario(
            &f,
            "storage_and_tokens",
            &[
                ("FERRY_MAGNET", &magnet),
                ("FERRY_TORRENT_NAME", "webs3"),
                ("FERRY_S3_ENDPOINT", &endpoint),
                ("FERRY_S3_BUCKET", "alice"),
                ("FERRY_S3_ACCESS", ACCESS),
                ("FERRY_S3_SECRET", SECRET),
            ],
        )
    });
    // The bucket holds the job's files, as the aws CLI reads them.
    let listed = String::from_utf8(bucket.aws(&["s3", "ls", "--recursive", "s3://alice"])).unwrap();
    assert!(listed.contains("webs3/notes.txt"), "{listed}");
    let notes = listed
        .lines()
        .find(|l| l.ends_with("webs3/notes.txt"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .to_owned();
    let body = bucket.aws(&["s3", "cp", &format!("s3://alice/{notes}"), "-"]);
    assert_eq!(sha256_hex(&body), sha_of(&s.payload, "notes.txt"));
    // The revoked token no longer works.
    let token = said
        .lines()
        .find_map(|l| l.strip_prefix("TOKEN="))
        .expect("the scenario shows its token");
    let r = reqwest::Client::new()
        .get(f.url("/jobs"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[test]
fn a_user_signs_in_through_the_identity_providers_pages() {
    if !browser_ready() {
        return;
    }
    init();
    let Some(idp) = ferry_testkit::oidc::OidcServer::start_any_port(&[
        "http://127.0.0.1/api/v1/auth/callback/idp",
    ]) else {
        return;
    };
    let (_dir, root) = test_dir();
    let issuer = idp.issuer();
    let f = Ferry::start(
        &root.join("ferry"),
        &[
            ("FERRY_AUTH__OIDC__IDP__ISSUER", issuer.as_str()),
            (
                "FERRY_AUTH__OIDC__IDP__CLIENT_ID",
                ferry_testkit::oidc::CLIENT_ID,
            ),
            (
                "FERRY_AUTH__OIDC__IDP__CLIENT_SECRET",
                ferry_testkit::oidc::CLIENT_SECRET,
            ),
            ("FERRY_AUTH__OIDC__IDP__AUTO_PROVISION", "true"),
        ],
    );
    scenario(
        &f,
        "oidc",
        &[
            ("FERRY_IDP_USER", ferry_testkit::oidc::ALICE),
            ("FERRY_IDP_NAME", "Alice Example"),
        ],
    );
}

/// The value a scenario reported as `KEY=value`.
fn reported(said: &str, key: &str) -> String {
    said.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("the scenario did not report {key}:\n{said}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_url_job_shares_its_packaged_torrent_and_magnet_from_its_page() {
    if !browser_ready() {
        return;
    }
    init();
    let (_dir, root) = test_dir();
    let name = "share-me.bin";
    let file = root.join("origin").join(name);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let size = 3 << 20;
    let sha = random_file(&file, size);
    let origin = Origin::start(&file, name).await;
    let f = Ferry::start(
        &root.join("ferry"),
        &[("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]")],
    );
    add_user(&f, "alice", false);
    let url = format!("http://{}/{name}", origin.addr);
    let said = tokio::task::block_in_place(|| {
        scenario(
            &f,
            "share",
            &[("FERRY_SHARE_URL", &url), ("FERRY_SHARE_NAME", name)],
        )
    });
    let (job, magnet) = (reported(&said, "JOB"), reported(&said, "MAGNET"));

    // The .torrent the page gave is a valid one of the fetched bytes: Ferry's packager, run
    // on the origin's file, makes the same info-hash.
    let torrent = std::fs::read(reported(&said, "TORRENT")).unwrap();
    let meta = ferry_torrent::inspect(&torrent).unwrap();
    assert_eq!(
        (meta.name.as_str(), meta.total_bytes, meta.files.len()),
        (name, size, 1)
    );
    assert!(meta.private, "Ferry packages private torrents");
    let again = ferry_torrent::Packager::default()
        .create(&file, name)
        .unwrap();
    assert_eq!(
        ferry_torrent::inspect(&again).unwrap().info_hash,
        meta.info_hash
    );
    // The magnet on the clipboard names the same torrent.
    let xt: Vec<String> = url::Url::parse(&magnet)
        .unwrap()
        .query_pairs()
        .filter(|(k, _)| k == "xt")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(
        xt,
        vec![format!("urn:btih:{}", meta.info_hash.to_hex())],
        "{magnet}"
    );
    // And both are what the API gives alice for her job.
    let alice = browser(&f, "alice").await;
    let (status, api_magnet) = alice
        .json(Method::GET, &format!("/jobs/{job}/magnet"), None)
        .await;
    assert_eq!(status, 200, "{api_magnet}");
    assert_eq!(api_magnet["magnet"], magnet.as_str());
    let r = alice
        .req(Method::GET, &format!("/jobs/{job}/torrent"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), torrent.as_slice());
    let (_, fetched) = alice.json(Method::GET, &format!("/jobs/{job}"), None).await;
    assert_eq!(fetched["content_sha256"], sha.as_str(), "{fetched}");
}

/// Chromium's rule that leads Ferry's public name ([`drive::PUBLIC`]) to the test server.
fn public_name_rule(f: &Ferry) -> String {
    let host = drive::PUBLIC.strip_prefix("http://").unwrap();
    let at = f.base.strip_prefix("http://").unwrap();
    format!("MAP {host} {at}")
}

/// Runs a Google Drive scenario as alice, with Ferry at its public name.
fn drive_scenario(f: &Ferry, fake: &FakeDrive, name: &str) -> String {
    let rule = public_name_rule(f);
    tokio::task::block_in_place(|| {
        scenario(
            f,
            name,
            &[
                ("FERRY_URL", drive::PUBLIC),
                ("FERRY_HOST_RULES", &rule),
                ("FERRY_GOOGLE_AUTH", &fake.auth_url()),
                ("FERRY_GOOGLE_CLIENT", drive::CLIENT_ID),
                ("FERRY_DRIVE_FOLDER", &fake.root_folder),
            ],
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_connects_google_drive_from_the_storage_page_through_googles_consent() {
    if !browser_ready() {
        return;
    }
    let (_dir, root) = test_dir();
    let (fake, f) = drive::start(&root).await;
    add_user(&f, "alice", false);
    drive_scenario(&f, &fake, "drive_connect");
    // One consent, one Drive profile of alice's for the folder.
    assert_eq!(fake.challenges().len(), 1);
    assert_eq!(fake.granted_refresh_tokens().len(), 1);
    let alice = browser(&f, "alice").await;
    let (_, profiles) = alice.json(Method::GET, "/storage-profiles", None).await;
    let profiles = profiles.as_array().unwrap();
    assert_eq!(profiles.len(), 1, "{profiles:?}");
    assert_eq!(
        (
            profiles[0]["name"].as_str(),
            profiles[0]["kind"].as_str(),
            profiles[0]["google_drive"]["folder_id"].as_str()
        ),
        (
            Some("Alice's Drive"),
            Some("google_drive"),
            Some(fake.root_folder.as_str())
        ),
        "{profiles:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declining_on_googles_page_connects_nothing_and_says_so() {
    if !browser_ready() {
        return;
    }
    let (_dir, root) = test_dir();
    let (fake, f) = drive::start(&root).await;
    add_user(&f, "alice", false);
    fake.deny_consent(true);
    drive_scenario(&f, &fake, "drive_declined");
    assert!(fake.granted_refresh_tokens().is_empty());
    let alice = browser(&f, "alice").await;
    let (_, profiles) = alice.json(Method::GET, "/storage-profiles", None).await;
    assert_eq!(profiles, serde_json::json!([]));
}
