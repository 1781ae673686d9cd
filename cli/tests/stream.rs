//! Streaming while downloading, on the real `ferry serve` with an aria2c seeder held to
//! 2 MiB/s: ffprobe reads a video's duration and decodes its first frames through Ferry's
//! URL while the job is under 20 % done; `Range` reads at random offsets of the half-done
//! file are the seeder's bytes (also through a signed link, and `HEAD`); a stream held open
//! across the job's end goes on from the handed-over file; who may not read it (another
//! user, a file not selected) and when it cannot be read (resolving, paused, no data in
//! time: `504`, or the connection closed once bytes were sent).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::login::*;
use common::swarm::Swarm;
use common::*;
use futures::StreamExt;
use rand::Rng;
use reqwest::Method;
use serde_json::Value;

/// A two-minute 1280×720 H.264 video at 5 Mbit/s (about 75 MB), its index first (as a file
/// streamed over HTTP needs), made once per target folder.
fn video() -> PathBuf {
    let cached = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ferry-stream-video-v1.mp4");
    if cached.exists() {
        return cached;
    }
    let part = cached.with_extension(format!("{}.part.mp4", std::process::id()));
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "testsrc2=duration=120:size=1280x720:rate=30"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args([
            "-b:v", "5M", "-minrate", "5M", "-maxrate", "5M", "-bufsize", "2M",
        ])
        .args(["-x264-params", "nal-hrd=cbr", "-movflags", "+faststart"])
        .arg(&part)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&part, &cached).unwrap();
    cached
}

/// What ffprobe makes of `url` (sent with the bearer `token`): the container's duration,
/// the video stream, and how many of its first 30 packets it decoded.
fn ffprobe(url: &str, token: &str) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-headers"])
        .arg(format!("Authorization: Bearer {token}\r\n"))
        .args([
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#30",
            "-count_frames",
        ])
        .args([
            "-show_entries",
            "format=duration:stream=codec_name,width,height,nb_read_frames",
        ])
        .args(["-of", "json", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The job's progress events as they arrive: (when received, bytes done, bytes total).
type Seen = Arc<Mutex<Vec<(Instant, u64, u64)>>>;

/// Follows the job's events until it completes, recording its progress.
async fn follow(f: &Ferry, id: &str) -> (Seen, tokio::task::JoinHandle<Vec<Sse>>) {
    let resp = f
        .req(Method::GET, &format!("/jobs/{id}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let task = tokio::spawn(read_sse(resp, Duration::from_secs(600), move |e| {
        let p = &e.data["progress"];
        if let (Some(done), Some(total)) = (p["bytes_done"].as_u64(), p["bytes_total"].as_u64()) {
            log.lock().unwrap().push((Instant::now(), done, total));
        }
        e.data["status"] == "completed"
    }));
    (seen, task)
}

/// The progress of the first event received at `at` or later: an upper bound of the
/// progress at `at`.
async fn progress_after(seen: &Seen, at: Instant) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = seen
            .lock()
            .unwrap()
            .iter()
            .find(|(when, ..)| *when >= at)
            .map(|(_, done, total)| (*done, *total));
        if let Some(p) = found {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "no progress event after the read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the job's progress reaches `share` of its bytes.
async fn progress_reaches(seen: &Seen, share: f64) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let last = seen.lock().unwrap().last().map(|(_, d, t)| (*d, *t));
        if let Some((done, total)) = last
            && total > 0
            && done as f64 >= share * total as f64
        {
            return (done, total);
        }
        assert!(Instant::now() < deadline, "the job never got {share} done");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_plays_through_ferry_while_it_downloads() {
    if !require(&["opentracker", "aria2c", "mktorrent", "ffmpeg", "ffprobe"]) {
        return;
    }
    let video = video();
    let bytes = std::fs::read(&video).unwrap();
    let size = bytes.len() as u64;
    assert!(size >= 60 << 20, "the video is {size} bytes");
    let swarm = Swarm::start_throttled(
        "show",
        &[("bonus.bin", 2 << 20)],
        |dir| {
            std::fs::copy(&video, dir.join("video.mp4")).unwrap();
        },
        "2M",
    );
    let f = Ferry::start(
        &swarm.root.join("ferry"),
        &[("FERRY_WORKERS__PROGRESS_INTERVAL", "250ms")],
    );
    // Files are in path order: 0 is bonus.bin, 1 the video.
    let (status, job) = f.submit_torrent(&swarm.torrent.bytes, Some("1")).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let (seen, events) = follow(&f, &id).await;
    let path = format!("/jobs/{id}/files/1");
    f.wait_status(&id, "downloading", Duration::from_secs(60))
        .await;

    // ffprobe, as a player would, seconds into the download.
    let url = f.url(&path);
    let token = f.token.clone();
    let began = Instant::now();
    let probed = tokio::task::spawn_blocking(move || ffprobe(&url, &token))
        .await
        .unwrap();
    let probe_took = began.elapsed();
    let (done, total) = progress_after(&seen, Instant::now()).await;
    eprintln!("ffprobe took {probe_took:?}; the job was at most {done}/{total} bytes done");
    assert!(
        done * 5 < total,
        "the job was {done}/{total} done when ffprobe finished: {probed}"
    );
    let duration: f64 = probed["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((duration - 120.0).abs() < 0.5, "{probed}");
    let stream = &probed["streams"][0];
    assert_eq!(
        (
            stream["codec_name"].as_str(),
            stream["width"].as_u64(),
            stream["height"].as_u64()
        ),
        (Some("h264"), Some(1280), Some(720)),
        "{probed}"
    );
    let frames: u64 = stream["nb_read_frames"].as_str().unwrap().parse().unwrap();
    assert!(frames >= 20, "decoded {frames} frames: {probed}");

    // A whole-file read held open (as a paused player holds it) across the job's end.
    let held = f.req(Method::GET, &path).send().await.unwrap();
    assert_eq!(held.status(), 200);
    assert_eq!(header(&held, "content-length"), size.to_string());
    assert_eq!(header(&held, "accept-ranges"), "bytes");
    let mut held = held.bytes_stream();
    let mut head = Vec::new();
    while head.len() < 1 << 20 {
        head.extend_from_slice(&held.next().await.unwrap().unwrap());
    }

    // Half done: reads at random offsets, most of them past what has arrived, are the
    // seeder's bytes.
    let (done, total) = progress_reaches(&seen, 0.5).await;
    eprintln!("half done: {done}/{total}");
    let mut offsets: Vec<u64> = {
        let mut rng = rand::rng();
        (0..10).map(|_| rng.random_range(0..size - 1)).collect()
    };
    offsets.push(size - 100);
    let mut waited = Vec::new();
    for &start in &offsets {
        let end = (start + (256 << 10) - 1).min(size - 1);
        let asked = Instant::now();
        let r = f
            .req(Method::GET, &path)
            .header("Range", format!("bytes={start}-{end}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206, "bytes={start}-{end}");
        assert_eq!(
            header(&r, "content-range"),
            format!("bytes {start}-{end}/{size}")
        );
        assert_eq!(header(&r, "content-length"), (end - start + 1).to_string());
        let got = r.bytes().await.unwrap();
        assert!(
            got[..] == bytes[start as usize..=end as usize],
            "bytes={start}-{end} differ from the seeder's"
        );
        waited.push((start, asked.elapsed()));
    }
    eprintln!("random reads (offset, time): {waited:?}");
    let job = f.job(&id).await;
    assert_eq!(
        job["status"], "downloading",
        "read while downloading: {job}"
    );

    // The last bytes, a suffix range, HEAD, a range past the end.
    let r = f
        .req(Method::GET, &path)
        .header("Range", "bytes=-1000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert!(r.bytes().await.unwrap()[..] == bytes[bytes.len() - 1000..]);
    let r = f.req(Method::HEAD, &path).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), size.to_string());
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    let r = f
        .req(Method::HEAD, &path)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-length"), "100");
    assert_eq!(header(&r, "content-range"), format!("bytes 100-199/{size}"));
    let r = f
        .req(Method::GET, &path)
        .header("Range", format!("bytes={size}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "content-range"), format!("bytes */{size}"));

    // A signed link streams too, with no credentials.
    let (status, link) = f.get_json(&format!("{path}/link")).await;
    assert_eq!(status, 200, "{link}");
    let r = reqwest::Client::new()
        .get(link["url"].as_str().unwrap())
        .header("Range", "bytes=5000000-5099999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert!(r.bytes().await.unwrap()[..] == bytes[5_000_000..5_100_000]);

    // Not a selected file; not the caller's job.
    let r = f
        .req(Method::GET, &format!("/jobs/{id}/files/0"))
        .header("Range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "file_not_selected", "{body}");
    add_user(&f, "bob", false);
    let bob = browser(&f, "bob").await;
    for range in [None, Some("bytes=0-99")] {
        let mut req = bob.req(Method::GET, &path);
        if let Some(range) = range {
            req = req.header("Range", range);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 404);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "job_not_found", "{body}");
    }

    // The job finishes with the held read still open: it goes on, from the handed-over
    // file, to the file's last byte.
    let sse = tokio::time::timeout(Duration::from_secs(240), events)
        .await
        .unwrap_or_else(|_| panic!("the job did not complete:\n{}", f.proc.log_text()))
        .unwrap();
    assert_eq!(sse.last().unwrap().data["status"], "completed");
    let mut all = head;
    while let Some(chunk) = held.next().await {
        all.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(all.len() as u64, size);
    assert!(all == bytes, "the held read is the seeder's file");
    // And the delivered file answers as before.
    let r = f
        .req(Method::GET, &path)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert!(r.bytes().await.unwrap()[..] == bytes[10..20]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_clearly_when_its_data_does_not_come() {
    if !require(&["opentracker", "aria2c", "mktorrent"]) {
        return;
    }
    let swarm = Swarm::start_throttled("big", &[("movie.bin", 24 << 20)], |_| {}, "1M");
    let f = Ferry::start(
        &swarm.root.join("ferry"),
        &[("FERRY_TORRENT__STREAM_TIMEOUT", "2s")],
    );

    // A torrent nobody seeds: the read waits its 2 s and answers 504; HEAD does not wait.
    let (status, job) = f.submit_torrent(&lonely_torrent("nobody"), None).await;
    assert_eq!(status, 201, "{job}");
    let lonely = job["id"].as_str().unwrap().to_owned();
    f.wait_status(&lonely, "downloading", Duration::from_secs(60))
        .await;
    let path = format!("/jobs/{lonely}/files/0");
    let asked = Instant::now();
    let r = f.req(Method::GET, &path).send().await.unwrap();
    let took = asked.elapsed();
    assert_eq!(r.status(), 504);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "stream_timeout", "{body}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(20),
        "{took:?}"
    );
    let asked = Instant::now();
    let r = f.req(Method::HEAD, &path).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), "1000");
    assert!(asked.elapsed() < Duration::from_millis(1500));
    // Paused: not readable.
    let (status, body) = f
        .post_json(&format!("/jobs/{lonely}/pause"), serde_json::json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = f.get_json(&path).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("job_not_finished")),
        "{body}"
    );
    // A magnet still resolving has no files yet.
    let resolving = f.submit_magnet(&lonely_magnet("nameless")).await;
    let resolving = resolving["id"].as_str().unwrap();
    f.wait_status(resolving, "resolving", Duration::from_secs(60))
        .await;
    let (status, body) = f.get_json(&format!("/jobs/{resolving}/files/0")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("torrent_not_ready")),
        "{body}"
    );

    // A read under way whose data stops coming (the seeder dies): once the bytes that
    // arrived are sent, the connection is closed — never a short body taken for the file.
    let size = swarm.payload.files[0].2;
    let (status, job) = f.submit_torrent(&swarm.torrent.bytes, None).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    f.wait_status(&id, "downloading", Duration::from_secs(60))
        .await;
    let r = f
        .req(Method::GET, &format!("/jobs/{id}/files/0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut got = 0usize;
    while got < 1 << 20 {
        got += body.next().await.unwrap().unwrap().len();
    }
    swarm.seeder.proc.signal(9);
    let killed = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => got += c.len(),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .await
    .expect("the stalled read ended");
    assert!(
        ended.is_err(),
        "the connection was closed, not ended as if whole"
    );
    assert!((got as u64) < size, "{got} of {size}");
    eprintln!(
        "stalled read ended {:?} after the seeder died, {got} bytes in",
        killed.elapsed()
    );
    let job = f.job(&id).await;
    assert_eq!(job["status"], "downloading", "{job}");
}
