//! The web page in a real browser (Playwright for Python driving Debian's Chromium): each
//! test starts the real `ferry serve` and the peers a scenario needs, then runs the scenario
//! in `cli/tests/web/browser.py`. Screenshots go to `$CARGO_TARGET_TMPDIR/web-artifacts/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::login::{add_user, setup_link};
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

/// A payload whose files include one named like markup, seeded by aria2c behind a tracker.
struct Swarm {
    _dir: Option<tempfile::TempDir>,
    root: PathBuf,
    payload: Payload,
    torrent: Torrent,
    tracker: Tracker,
    _seeder: Seeder,
}

const XSS: &str = "<img src=x onerror=alert(1)>.mkv";

fn swarm(name: &str) -> Swarm {
    init();
    let (dir, root) = test_dir();
    let content = root.join("seed");
    let payload = Payload::create(
        &content,
        name,
        &[
            (XSS, 600_000),
            ("notes.txt", 70_000),
            ("extras/big.bin", 3 << 20),
        ],
    );
    let probe = payload.make_torrent("http://127.0.0.1:1/announce", &root.join("probe.torrent"));
    let tracker = Tracker::start(&root, &[&probe.info_hash]);
    let torrent = payload.make_torrent(&tracker.announce(), &root.join(format!("{name}.torrent")));
    let seeder = Seeder::start(&root, &content, &[&torrent.path]);
    tracker.wait_for_seeders(&torrent.info_hash, 1);
    Swarm {
        _dir: dir,
        root,
        payload,
        torrent,
        tracker,
        _seeder: seeder,
    }
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
    if !browser_ready() || !require(&["opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let s = swarm("webmagnet");
    let f = Ferry::start(&s.root.join("ferry"), &[]);
    scenario(
        &f,
        "magnet",
        &[
            ("FERRY_SETUP_LINK", &setup_link(&f)),
            ("FERRY_MAGNET", &s.torrent.magnet(&s.tracker.announce())),
            ("FERRY_TORRENT_NAME", "webmagnet"),
            ("FERRY_XSS_NAME", XSS),
            ("FERRY_NOTES_SHA256", &sha_of(&s.payload, "notes.txt")),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torrent_with_an_unticked_file_downloads_only_the_others() {
    if !browser_ready() || !require(&["opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let s = swarm("webtree");
    let f = Ferry::start(&s.root.join("ferry"), &[]);
    add_user(&f, "alice", false);
    let path = s.torrent.path.to_string_lossy().into_owned();
    let count = s.payload.files.len().to_string();
    let said = tokio::task::block_in_place(|| {
        scenario(
            &f,
            "torrent",
            &[
                ("FERRY_TORRENT_PATH", &path),
                ("FERRY_SKIP_FILE", "big.bin"),
                ("FERRY_FILE_COUNT", &count),
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
