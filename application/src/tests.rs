//! Use-case tests on the in-memory fakes: the whole life of a job without any I/O but the
//! fake engine's staging folder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use ferry_domain::{ErrorCode, InfoHash, JobStatus, OwnerId, TorrentLimits};
use tokio_util::sync::CancellationToken;

use crate::ports::*;
use crate::stages::{DeliverStage, DownloadSettings, DownloadStage, FetchStage, SeedStage};
use crate::testing::{Fakes, sample_metadata};
use crate::*;

struct World {
    f: Fakes,
    jobs: Jobs,
    download: DownloadStage,
    deliver: DeliverStage,
    fetch: FetchStage,
    seed: SeedStage,
    runner: StageRunner,
}

fn world() -> World {
    world_with_limits(TorrentLimits::default())
}

/// The user-facing use cases over `f`.
fn jobs_over(f: &Fakes, limits: TorrentLimits) -> Jobs {
    Jobs {
        lifecycle: f.lifecycle(),
        queue: f.queue.clone(),
        inspector: f.engine.clone(),
        profiles: f.profiles.clone(),
        stores: f.resolver.clone(),
        fetcher: f.fetcher.clone(),
        limits,
        torrent_addresses: f.addresses.clone(),
        blocklist: Arc::default(),
        live: Some(f.engine.clone()),
    }
}

fn world_with_limits(limits: TorrentLimits) -> World {
    let f = Fakes::new();
    let jobs = jobs_over(&f, limits);
    let download = DownloadStage {
        lifecycle: f.lifecycle(),
        queue: f.queue.clone(),
        engine: f.engine.clone(),
        staging: f.engine.clone(),
        limits,
        settings: DownloadSettings {
            tick: Duration::from_millis(5),
            snapshot_every: Duration::from_millis(20),
            resolve_timeout: Duration::from_millis(300),
        },
    };
    let fetch = FetchStage {
        lifecycle: f.lifecycle(),
        queue: f.queue.clone(),
        fetcher: f.fetcher.clone(),
        packager: f.engine.clone(),
        staging: f.engine.clone(),
        settings: DownloadSettings {
            tick: Duration::from_millis(5),
            snapshot_every: Duration::from_millis(20),
            resolve_timeout: Duration::from_millis(300),
        },
    };
    let seed = SeedStage {
        lifecycle: f.lifecycle(),
        queue: f.queue.clone(),
        engine: f.engine.clone(),
        staging: f.engine.clone(),
        tick: Duration::from_millis(5),
        snapshot_every: Duration::from_millis(20),
        default_policy: ferry_domain::SeedPolicy {
            ratio: None,
            time_secs: Some(0),
            idle_secs: None,
        },
    };
    let deliver = DeliverStage {
        lifecycle: f.lifecycle(),
        queue: f.queue.clone(),
        staging: f.engine.clone(),
        stores: f.resolver.clone(),
        tick: Duration::from_millis(5),
    };
    let runner = StageRunner {
        lifecycle: f.lifecycle(),
        queue: f.queue.clone(),
        policy: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
    };
    World {
        f,
        jobs,
        download,
        deliver,
        fetch,
        seed,
        runner,
    }
}

fn magnet_for(seed: u8) -> String {
    format!(
        "magnet:?xt=urn:btih:{}&dn=demo&x.pe=127.0.0.1:6881",
        InfoHash::from_bytes([seed; 20]).to_hex()
    )
}

impl World {
    /// Claims the next message of `stage`, runs its handler, settles the outcome.
    async fn run_stage(&self, stage: Stage) -> StageOutcome {
        let lease = self
            .f
            .queue
            .claim(stage, Duration::from_secs(2))
            .await
            .unwrap()
            .expect("a queued stage");
        let handler: &dyn StageHandler = match stage {
            Stage::Download => &self.download,
            Stage::Upload => &self.deliver,
            Stage::Fetch => &self.fetch,
            Stage::Seed => &self.seed,
        };
        let outcome = handler.run(&lease, &CancellationToken::new()).await;
        self.runner.settle(&lease, outcome.clone()).await.unwrap();
        outcome
    }

    async fn status(&self, id: ferry_domain::JobId) -> JobStatus {
        self.f.repo.status(id).await.unwrap()
    }
}

fn me() -> OwnerId {
    OwnerId::local()
}

#[tokio::test]
async fn a_magnet_goes_from_submission_to_delivered_files() {
    let w = world();
    w.f.engine.register(sample_metadata(1, &[100, 200, 300]));
    let job = w
        .jobs
        .submit(me(), Submission::Magnet(magnet_for(1)), None, None)
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.name, "demo");
    assert_eq!(w.f.queue.waiting(Stage::Download), vec![job.id]);

    assert_eq!(w.run_stage(Stage::Download).await, StageOutcome::Done);
    assert_eq!(w.status(job.id).await, JobStatus::Uploading);
    let stored = w.f.repo.get(job.id).await.unwrap();
    assert_eq!(stored.name, "sample-1");
    assert_eq!(stored.progress.bytes_done, 600);

    assert_eq!(w.run_stage(Stage::Upload).await, StageOutcome::Done);
    let done = w.jobs.get(&me(), job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert!(done.finished_at.is_some());
    assert_eq!(w.f.store.keys().len(), 3);
    assert!(
        !w.f.engine.staging_root().join(job.id.to_string()).exists(),
        "staging freed"
    );

    let file = w.jobs.file(&me(), job.id, 1).await.unwrap();
    assert_eq!(file.file.size, 200);
    assert!(matches!(file.location, ObjectLocation::Url(_)));

    // Watchers saw the status climb in order, with progress between.
    let statuses: Vec<JobStatus> =
        w.f.bus
            .events_of(job.id)
            .iter()
            .filter(|e| e.kind == EventKind::Status)
            .map(|e| e.status)
            .collect();
    assert_eq!(
        statuses,
        vec![
            JobStatus::Queued,
            JobStatus::Resolving,
            JobStatus::Downloading,
            JobStatus::Uploading,
            JobStatus::Completed
        ]
    );
}

#[tokio::test]
async fn a_torrent_with_a_file_selection_delivers_only_those_files() {
    let w = world();
    let meta = sample_metadata(2, &[10, 20, 30]);
    w.f.engine.register(meta.clone());
    let job = w
        .jobs
        .submit(
            me(),
            Submission::Torrent(meta.metainfo.clone()),
            Some(vec![0, 2]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(job.progress.bytes_total, 40);
    w.run_stage(Stage::Download).await;
    w.run_stage(Stage::Upload).await;
    assert_eq!(w.status(job.id).await, JobStatus::Completed);
    let keys = w.f.store.keys();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| !k.ends_with("file1.bin")));
    assert!(matches!(
        w.jobs.file(&me(), job.id, 1).await,
        Err(JobsError::FileNotSelected(1))
    ));
    assert!(matches!(
        w.jobs.file(&me(), job.id, 9).await,
        Err(JobsError::FileNotFound(9))
    ));
}

#[tokio::test]
async fn bad_submissions_are_refused_with_their_reason() {
    let w = world_with_limits(TorrentLimits {
        max_files: 2,
        max_total_bytes: 1000,
    });
    let r = w
        .jobs
        .submit(
            me(),
            Submission::Magnet("magnet:?xt=urn:btih:zz".into()),
            None,
            None,
        )
        .await;
    assert!(matches!(r, Err(JobsError::InvalidMagnet(_))));
    let r = w
        .jobs
        .submit(me(), Submission::Torrent(b"garbage".to_vec()), None, None)
        .await;
    assert!(matches!(r, Err(JobsError::InvalidTorrent(_))));

    let many = sample_metadata(3, &[1, 1, 1]);
    w.f.engine.register(many.clone());
    let r = w
        .jobs
        .submit(me(), Submission::Torrent(many.metainfo.clone()), None, None)
        .await;
    assert!(matches!(r, Err(JobsError::TorrentLimit(_))));

    let ok = sample_metadata(4, &[1, 1]);
    w.f.engine.register(ok.clone());
    let r = w
        .jobs
        .submit(
            me(),
            Submission::Torrent(ok.metainfo.clone()),
            Some(vec![5]),
            None,
        )
        .await;
    assert!(matches!(r, Err(JobsError::InvalidSelection(_))));
    let r = w
        .jobs
        .submit(
            me(),
            Submission::Torrent(ok.metainfo.clone()),
            Some(vec![]),
            None,
        )
        .await;
    assert!(matches!(r, Err(JobsError::InvalidSelection(_))));

    let first = w
        .jobs
        .submit(me(), Submission::Torrent(ok.metainfo.clone()), None, None)
        .await
        .unwrap();
    let dup = w
        .jobs
        .submit(me(), Submission::Magnet(magnet_for(4)), None, None)
        .await;
    assert!(matches!(dup, Err(JobsError::Duplicate(id)) if id == first.id));
    assert!(
        w.f.repo
            .list(&JobQuery {
                owner: me(),
                status: None,
                name_contains: None,
                before: None,
                limit: 10,
                torrents: None,
            })
            .await
            .unwrap()
            .len()
            == 1
    );
}

#[tokio::test]
async fn a_magnet_whose_metadata_breaks_the_limits_fails_the_job() {
    let w = world_with_limits(TorrentLimits {
        max_files: 2,
        max_total_bytes: 1000,
    });
    w.f.engine.register(sample_metadata(5, &[1, 1, 1]));
    let job = w
        .jobs
        .submit(me(), Submission::Magnet(magnet_for(5)), None, None)
        .await
        .unwrap();
    assert!(matches!(
        w.run_stage(Stage::Download).await,
        StageOutcome::Fail(_)
    ));
    let failed = w.jobs.get(&me(), job.id).await.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(
        failed.error.unwrap().code,
        ErrorCode::TorrentTooManyFiles.as_str()
    );
}

#[tokio::test]
async fn the_job_bytes_quota_holds_once_a_magnet_or_a_url_shows_its_size() {
    let w = world();
    let quotas = |bytes| ferry_domain::Quotas {
        job_bytes: Some(bytes),
        ..ferry_domain::Quotas::default()
    };
    let submit = |what: Submission, files: Option<Vec<usize>>| {
        w.jobs.submit_within(
            me(),
            what,
            SubmitOptions {
                files,
                ..SubmitOptions::default()
            },
            quotas(100),
        )
    };
    let code = |job: ferry_domain::Job| job.error.map(|e| e.code);
    let quota = Some(ErrorCode::QuotaExceeded.as_str().to_owned());

    // A magnet is accepted (its size is unknown), then fails once its metadata shows 120 bytes.
    w.f.engine.register(sample_metadata(6, &[60, 60]));
    let magnet = submit(Submission::Magnet(magnet_for(6)), None)
        .await
        .unwrap();
    assert_eq!(magnet.byte_limit, Some(100));
    assert!(matches!(
        w.run_stage(Stage::Download).await,
        StageOutcome::Fail(_)
    ));
    let failed = w.f.repo.get(magnet.id).await.unwrap();
    assert_eq!(
        (failed.status, code(failed)),
        (JobStatus::Failed, quota.clone())
    );
    // The same torrent with one of its files chosen fits.
    w.f.engine.register(sample_metadata(7, &[60, 60]));
    let one = submit(Submission::Magnet(magnet_for(7)), Some(vec![0]))
        .await
        .unwrap();
    w.run_stage(Stage::Download).await;
    assert_ne!(w.status(one.id).await, JobStatus::Failed);

    // A URL whose server says it is 500 bytes is refused at once.
    let big = "https://files.example/big.iso";
    w.f.fetcher.serve(big, vec![1u8; 500]);
    assert!(matches!(
        submit(Submission::Url(big.into()), None).await,
        Err(JobsError::QuotaExceeded {
            quota: "job_bytes",
            limit: 100,
            usage: 500
        })
    ));
    // One that does not say is stopped once it has sent more, and what it sent goes.
    let chunked = "https://files.example/chunked.iso";
    w.f.fetcher.serve(chunked, vec![2u8; 500]);
    w.f.fetcher.hide_size(chunked);
    for held in [true, false] {
        let job = submit(Submission::Url(chunked.into()), None).await.unwrap();
        w.f.fetcher.hold(held);
        assert!(matches!(
            w.run_stage(Stage::Fetch).await,
            StageOutcome::Fail(_)
        ));
        w.f.fetcher.hold(false);
        let failed = w.f.repo.get(job.id).await.unwrap();
        assert_eq!(
            (failed.status, code(failed)),
            (JobStatus::Failed, quota.clone())
        );
        assert!(
            !w.f.engine.staging_root().join(job.id.to_string()).exists(),
            "nothing of it stays staged (held: {held})"
        );
    }
    // Retried after an admin raised the quota, it runs under the new one.
    let job = submit(Submission::Url(chunked.into()), None).await.unwrap();
    w.run_stage(Stage::Fetch).await;
    let retried = w
        .jobs
        .retry_within(&me(), job.id, quotas(1000))
        .await
        .unwrap();
    assert_eq!(retried.byte_limit, Some(1000));
    assert_eq!(w.run_stage(Stage::Fetch).await, StageOutcome::Done);
    assert_eq!(w.status(job.id).await, JobStatus::Uploading);

    // A torrent known to hold 120 bytes: a retry under a quota of 100 is refused at once,
    // and a limit lowered under a queued job fails it before a byte is fetched.
    let known = sample_metadata(8, &[60, 60]);
    w.f.engine.register(known.clone());
    let torrent = w
        .jobs
        .submit_within(
            me(),
            Submission::Torrent(known.metainfo.clone()),
            SubmitOptions::default(),
            quotas(1000),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        w.f.engine
            .fail_next_start(EngineError::Unexpected(anyhow::anyhow!("disk")));
    }
    for _ in 0..3 {
        w.run_stage(Stage::Download).await;
    }
    assert_eq!(w.status(torrent.id).await, JobStatus::Failed);
    assert!(matches!(
        w.jobs.retry_within(&me(), torrent.id, quotas(100)).await,
        Err(JobsError::QuotaExceeded {
            quota: "job_bytes",
            limit: 100,
            usage: 120
        })
    ));
    w.jobs
        .retry_within(&me(), torrent.id, quotas(1000))
        .await
        .unwrap();
    w.f.repo
        .record_byte_limit(torrent.id, Some(100))
        .await
        .unwrap();
    assert!(matches!(
        w.run_stage(Stage::Download).await,
        StageOutcome::Fail(_)
    ));
    let failed = w.f.repo.get(torrent.id).await.unwrap();
    assert_eq!(
        (failed.status, code(failed)),
        (JobStatus::Failed, quota.clone())
    );
    assert!(!w.f.engine.is_running(torrent.id), "never started");
}

#[tokio::test]
async fn pause_stops_the_download_and_resume_finishes_it() {
    let w = Arc::new(world());
    w.f.engine.register(sample_metadata(6, &[1000]));
    w.f.engine
        .step
        .store(10, std::sync::atomic::Ordering::SeqCst);
    let job = w
        .jobs
        .submit(me(), Submission::Magnet(magnet_for(6)), None, None)
        .await
        .unwrap();
    let runner = {
        let w = w.clone();
        tokio::spawn(async move { w.run_stage(Stage::Download).await })
    };
    while w.status(job.id).await != JobStatus::Downloading {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let paused = w.jobs.pause(&me(), job.id).await.unwrap();
    assert_eq!(paused.status, JobStatus::Paused);
    assert_eq!(runner.await.unwrap(), StageOutcome::Done);
    assert!(!w.f.engine.is_running(job.id), "the torrent stopped");
    let snapshot = w.f.repo.get(job.id).await.unwrap().progress;
    assert!(
        snapshot.bytes_done > 0 && snapshot.bytes_done < 1000,
        "{snapshot:?}"
    );

    assert!(matches!(
        w.jobs.pause(&me(), job.id).await,
        Err(JobsError::IllegalTransition(_))
    ));
    w.f.engine
        .step
        .store(u64::MAX, std::sync::atomic::Ordering::SeqCst);
    w.jobs.resume(&me(), job.id).await.unwrap();
    w.run_stage(Stage::Download).await;
    w.run_stage(Stage::Upload).await;
    assert_eq!(w.status(job.id).await, JobStatus::Completed);
    // A completed job cannot be paused.
    let err = w.jobs.pause(&me(), job.id).await.unwrap_err();
    assert!(matches!(err, JobsError::IllegalTransition(t) if t.from == JobStatus::Completed));
}

#[tokio::test]
async fn checking_data_on_disk_is_not_reported_as_progress() {
    // librqbit counts the bytes it has checked as progress while it checks: progress must
    // not jump to them and back (issue 8, defect 15).
    let w = world();
    w.f.engine.register(sample_metadata(16, &[1000]));
    w.f.engine
        .step
        .store(100, std::sync::atomic::Ordering::SeqCst);
    w.f.engine
        .checking_calls
        .store(3, std::sync::atomic::Ordering::SeqCst);
    let job = w
        .jobs
        .submit(me(), Submission::Magnet(magnet_for(16)), None, None)
        .await
        .unwrap();
    assert_eq!(w.run_stage(Stage::Download).await, StageOutcome::Done);
    let done: Vec<u64> =
        w.f.bus
            .events_of(job.id)
            .iter()
            .filter(|e| e.kind == EventKind::Progress && e.status == JobStatus::Downloading)
            .map(|e| e.progress.bytes_done)
            .collect();
    assert!(!done.is_empty());
    assert!(
        done.windows(2).all(|p| p[0] <= p[1]),
        "progress climbs: {done:?}"
    );
    assert_eq!(done.first(), Some(&100), "{done:?}");
    assert_eq!(done.last(), Some(&1000), "{done:?}");
}

#[tokio::test]
async fn cancel_mid_download_removes_staged_data_and_purge_removes_the_job() {
    let w = Arc::new(world());
    w.f.engine.register(sample_metadata(7, &[1000]));
    w.f.engine.set_stalled(true);
    let job = w
        .jobs
        .submit(me(), Submission::Magnet(magnet_for(7)), None, None)
        .await
        .unwrap();
    let runner = {
        let w = w.clone();
        tokio::spawn(async move { w.run_stage(Stage::Download).await })
    };
    while !w.f.engine.is_running(job.id) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    std::fs::create_dir_all(w.f.engine.staging_root().join(job.id.to_string())).unwrap();
    let cancelled = w.jobs.cancel(&me(), job.id, false).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_eq!(runner.await.unwrap(), StageOutcome::Done);
    assert!(!w.f.engine.is_running(job.id));
    assert!(!w.f.engine.staging_root().join(job.id.to_string()).exists());
    // The clean-up message the cancel queued is harmless.
    assert_eq!(w.run_stage(Stage::Download).await, StageOutcome::Done);

    // Cancelling again answers the cancelled job; purging is accepted, the download side
    // lets go and hands the purge to delivery, which deletes the job.
    assert!(matches!(
        w.jobs.cancel(&me(), job.id, false).await.map(|j| j.status),
        Ok(JobStatus::Cancelled)
    ));
    let purging = w.jobs.cancel(&me(), job.id, true).await.unwrap();
    assert!(purging.purge_requested);
    assert_eq!(w.jobs.get(&me(), job.id).await.unwrap().id, job.id);
    assert_eq!(w.run_stage(Stage::Download).await, StageOutcome::Done);
    assert_eq!(w.run_stage(Stage::Upload).await, StageOutcome::Done);
    assert!(matches!(
        w.jobs.get(&me(), job.id).await,
        Err(JobsError::NotFound)
    ));
}

#[tokio::test]
async fn a_completed_job_can_only_be_purged() {
    let w = world();
    w.f.engine.register(sample_metadata(8, &[5]));
    let job = w
        .jobs
        .submit(me(), Submission::Magnet(magnet_for(8)), None, None)
        .await
        .unwrap();
    w.run_stage(Stage::Download).await;
    w.run_stage(Stage::Upload).await;
    assert!(matches!(
        w.jobs.cancel(&me(), job.id, false).await,
        Err(JobsError::IllegalTransition(_))
    ));
    assert_eq!(w.f.store.keys().len(), 1);
    let purging = w.jobs.cancel(&me(), job.id, true).await.unwrap();
    assert_eq!(
        (purging.status, purging.purge_requested),
        (JobStatus::Completed, true)
    );
    assert!(matches!(
        w.jobs.file(&me(), job.id, 0).await,
        Err(JobsError::Purging)
    ));
    // Nothing runs for a completed job: delivery purges it straight away.
    assert_eq!(w.run_stage(Stage::Upload).await, StageOutcome::Done);
    assert!(w.f.store.keys().is_empty(), "delivered files deleted");
    assert!(matches!(
        w.jobs.get(&me(), job.id).await,
        Err(JobsError::NotFound)
    ));
}

#[tokio::test]
async fn engine_failures_are_retried_then_fail_the_job_into_the_dead_letters() {
    let w = world();
    let meta = sample_metadata(9, &[5]);
    w.f.engine.register(meta.clone());
    for _ in 0..3 {
        w.f.engine
            .fail_next_start(EngineError::Unexpected(anyhow::anyhow!("disk on fire")));
    }
    let job = w
        .jobs
        .submit(me(), Submission::Torrent(meta.metainfo.clone()), None, None)
        .await
        .unwrap();
    assert!(matches!(
        w.run_stage(Stage::Download).await,
        StageOutcome::Retry(_)
    ));
    let after_one = w.f.repo.get(job.id).await.unwrap();
    assert_eq!(
        (after_one.status, after_one.attempts),
        (JobStatus::Downloading, 1)
    );
    assert_eq!(
        after_one.error.unwrap().code,
        ErrorCode::EngineError.as_str()
    );
    w.run_stage(Stage::Download).await;
    w.run_stage(Stage::Download).await;
    let failed = w.jobs.get(&me(), job.id).await.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.attempts, 3);
    assert_eq!(w.f.queue.dead_letters().len(), 1);

    // The user retries: it starts over and completes.
    let retried = w.jobs.retry(&me(), job.id).await.unwrap();
    assert_eq!(
        (retried.status, retried.attempts, retried.error),
        (JobStatus::Queued, 0, None)
    );
    w.run_stage(Stage::Download).await;
    w.run_stage(Stage::Upload).await;
    assert_eq!(w.status(job.id).await, JobStatus::Completed);
    assert!(matches!(
        w.jobs.retry(&me(), job.id).await,
        Err(JobsError::IllegalTransition(_))
    ));
}

#[tokio::test]
async fn a_magnet_nobody_seeds_times_out_and_is_retried() {
    let w = world();
    let job = w
        .jobs
        .submit(me(), Submission::Magnet(magnet_for(10)), None, None)
        .await
        .unwrap();
    match w.run_stage(Stage::Download).await {
        StageOutcome::Retry(e) => assert_eq!(e.code, ErrorCode::MetadataTimeout.as_str()),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.status(job.id).await, JobStatus::Resolving);
}

#[tokio::test]
async fn shutdown_releases_the_job_and_recovery_requeues_it() {
    let w = world();
    w.f.engine.register(sample_metadata(11, &[1000]));
    w.f.engine.set_stalled(true);
    let job = w
        .jobs
        .submit(me(), Submission::Magnet(magnet_for(11)), None, None)
        .await
        .unwrap();
    let lease =
        w.f.queue
            .claim(Stage::Download, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.cancel();
    });
    assert_eq!(
        w.download.run(&lease, &shutdown).await,
        StageOutcome::Released
    );
    assert_eq!(w.status(job.id).await, JobStatus::Downloading);
    w.f.queue.ack(&lease).await.unwrap(); // as if the process died with the message lost

    let recovery = Recovery {
        repo: w.f.repo.clone(),
        queue: w.f.queue.clone(),
    };
    assert_eq!(recovery.requeue_orphans().await.unwrap(), 1);
    assert_eq!(
        recovery.requeue_orphans().await.unwrap(),
        0,
        "a job with a live message is left alone"
    );
    w.f.engine.set_stalled(false);
    w.run_stage(Stage::Download).await;
    w.run_stage(Stage::Upload).await;
    assert_eq!(w.status(job.id).await, JobStatus::Completed);
}

#[tokio::test]
async fn other_owners_jobs_are_invisible() {
    let w = world();
    w.f.engine.register(sample_metadata(12, &[5]));
    let job = w
        .jobs
        .submit(me(), Submission::Magnet(magnet_for(12)), None, None)
        .await
        .unwrap();
    let eve = OwnerId::parse("eve").unwrap();
    assert!(matches!(
        w.jobs.get(&eve, job.id).await,
        Err(JobsError::NotFound)
    ));
    assert!(matches!(
        w.jobs.pause(&eve, job.id).await,
        Err(JobsError::NotFound)
    ));
    assert!(matches!(
        w.jobs.cancel(&eve, job.id, true).await,
        Err(JobsError::NotFound)
    ));
}

#[tokio::test]
async fn a_job_with_a_storage_profile_is_delivered_there_with_digests() {
    use crate::profiles::StorageProfiles;
    use ferry_domain::{Credentials, StorageBackend};
    let w = world();
    let profiles = StorageProfiles {
        profiles: w.f.profiles.clone(),
        secrets: Arc::new(crate::testing::PlainBox),
        resolver: w.f.resolver.clone(),
        clock: w.f.clock.clone(),
        endpoints: {
            let guard = crate::testing::FakeAddressGuard::default();
            guard.map("s3.example", "93.184.216.34");
            guard.map("bucket.s3.example", "10.0.0.9");
            guard.map("s3.internal.example", "10.0.0.9");
            Arc::new(guard)
        },
        shared_dir: None,
    };
    let creds = Credentials::S3 {
        access_key_id: "AK".into(),
        secret_access_key: "SK".into(),
    };
    // Literal internal addresses, names resolving to one, and a virtual-hosted bucket name
    // resolving to one are all refused.
    for (endpoint, path_style) in [
        ("http://127.0.0.1:9000", true),
        ("http://s3.internal.example", true),
        ("https://s3.example", false),
    ] {
        let private = StorageBackend::s3(endpoint, "r", "bucket", None, path_style).unwrap();
        assert!(
            matches!(
                profiles.create(me(), "local", private, creds.clone()).await,
                Err(crate::ProfilesError::PrivateEndpoint(_))
            ),
            "{endpoint}"
        );
    }
    let drive = StorageBackend::google_drive("folder1").unwrap();
    assert!(matches!(
        profiles
            .create(me(), "mismatch", drive, creds.clone())
            .await,
        Err(crate::ProfilesError::CredentialsMismatch)
    ));
    let backend = StorageBackend::s3("https://s3.example", "r", "bucket", None, true).unwrap();
    let profile = profiles.create(me(), "S3", backend, creds).await.unwrap();
    profiles.test(&me(), profile.id).await.unwrap();
    assert_eq!(profiles.list(&me()).await.unwrap().len(), 1);
    let sealed = w.f.profiles.get(&me(), profile.id).await.unwrap().unwrap();
    assert!(
        !String::from_utf8_lossy(&sealed.credentials).contains("SK"),
        "sealed at rest"
    );

    let unknown = ferry_domain::ProfileId::new();
    let r = w
        .jobs
        .submit(
            me(),
            Submission::Magnet(magnet_for(20)),
            None,
            Some(unknown),
        )
        .await;
    assert!(matches!(r, Err(JobsError::ProfileNotFound(_))));

    w.f.engine.register(sample_metadata(20, &[10, 20]));
    let job = w
        .jobs
        .submit(
            me(),
            Submission::Magnet(magnet_for(20)),
            None,
            Some(profile.id),
        )
        .await
        .unwrap();
    w.run_stage(Stage::Download).await;
    w.run_stage(Stage::Upload).await;
    let done = w.jobs.get(&me(), job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert!(w.f.store.keys().is_empty(), "nothing on the local store");
    assert_eq!(w.f.resolver.remote(profile.id).keys().len(), 2);
    assert!(
        done.files()
            .iter()
            .all(|f| f.sha256.as_ref().is_some_and(|d| d.len() == 64))
    );

    // Upload progress went through the same event stream.
    assert!(
        w.f.bus
            .events_of(job.id)
            .iter()
            .any(|e| e.kind == EventKind::Progress && e.status == JobStatus::Uploading)
    );

    // A deleted profile fails a later delivery clearly.
    let job2 = w
        .jobs
        .submit(
            me(),
            Submission::Magnet(magnet_for(21)),
            None,
            Some(profile.id),
        )
        .await;
    w.f.engine.register(sample_metadata(21, &[5]));
    let job2 = job2.unwrap();
    w.run_stage(Stage::Download).await;
    profiles.delete(&me(), profile.id).await.unwrap();
    assert!(matches!(
        w.run_stage(Stage::Upload).await,
        StageOutcome::Fail(_)
    ));
    let failed = w.jobs.get(&me(), job2.id).await.unwrap();
    assert_eq!(
        failed.error.unwrap().code,
        ErrorCode::StorageProfileMissing.as_str()
    );
}

#[tokio::test]
async fn a_url_is_fetched_packaged_delivered_and_seeded() {
    let w = world();
    let url = "https://files.example/dist/tool%201.0.tar";
    w.f.fetcher
        .serve("https://files.example/dist/tool%201.0.tar", vec![7u8; 5000]);
    let options = SubmitOptions {
        seed: Some(ferry_domain::SeedPolicy {
            ratio: None,
            time_secs: Some(0),
            idle_secs: None,
        }),
        ..SubmitOptions::default()
    };
    let job = w
        .jobs
        .submit_with(me(), Submission::Url(url.into()), options)
        .await
        .unwrap();
    assert_eq!(job.name, "tool 1.0.tar");
    assert_eq!(w.f.queue.waiting(Stage::Fetch), vec![job.id]);
    assert!(matches!(
        w.jobs.torrent(&me(), job.id).await,
        Err(JobsError::TorrentNotReady)
    ));

    assert_eq!(w.run_stage(Stage::Fetch).await, StageOutcome::Done);
    let fetched = w.f.repo.get(job.id).await.unwrap();
    assert_eq!(fetched.status, JobStatus::Uploading);
    assert!(fetched.content_sha256.is_some());
    let torrent = w.jobs.torrent(&me(), job.id).await.unwrap();
    assert_eq!(torrent.files[0].size, 5000);

    assert_eq!(w.run_stage(Stage::Upload).await, StageOutcome::Done);
    assert_eq!(w.status(job.id).await, JobStatus::Seeding);
    assert_eq!(w.run_stage(Stage::Seed).await, StageOutcome::Done);
    let done = w.f.repo.get(job.id).await.unwrap();
    assert_eq!(
        done.status,
        JobStatus::Completed,
        "seeding stopped at its limit"
    );
    assert!(
        w.jobs.file(&me(), job.id, 0).await.is_ok(),
        "files reachable"
    );
    assert_eq!(w.f.store.keys().len(), 1);
    assert!(
        !w.f.engine
            .staging_root()
            .join("seeding")
            .join(job.id.to_string())
            .exists(),
        "seed data freed"
    );

    // Identical content is packaged once: the second job reuses the first torrent.
    w.f.fetcher
        .serve("https://mirror.example/tool%201.0.tar", vec![7u8; 5000]);
    let again = w
        .jobs
        .submit(
            me(),
            Submission::Url("https://mirror.example/tool%201.0.tar".into()),
            None,
            None,
        )
        .await
        .unwrap();
    w.run_stage(Stage::Fetch).await;
    let second = w.f.repo.get(again.id).await.unwrap();
    assert_eq!(second.metadata.unwrap().info_hash, torrent.info_hash);
}

#[tokio::test]
async fn urls_are_checked_before_a_job_exists() {
    let w = world();
    let submit = |url: &str| {
        w.jobs
            .submit(me(), Submission::Url(url.to_owned()), None, None)
    };
    let r = submit("ftp://x/y").await;
    assert!(matches!(r, Err(JobsError::InvalidUrl(_))));
    let r = submit("http://internal.example/secret").await;
    assert!(matches!(r, Err(JobsError::UrlNotAllowed(_))));
    let r = submit("http://files.example/missing").await;
    assert!(matches!(r, Err(JobsError::UrlRefused(_))));
    assert!(
        w.f.repo
            .list(&JobQuery {
                owner: me(),
                status: None,
                name_contains: None,
                before: None,
                limit: 10,
                torrents: None,
            })
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_seeding_job_can_be_cancelled_and_its_data_goes() {
    let w = world();
    w.f.engine.register(sample_metadata(30, &[10]));
    let options = SubmitOptions {
        seed: Some(ferry_domain::SeedPolicy::default()),
        ..SubmitOptions::default()
    };
    let job = w
        .jobs
        .submit_with(me(), Submission::Magnet(magnet_for(30)), options)
        .await
        .unwrap();
    w.run_stage(Stage::Download).await;
    w.run_stage(Stage::Upload).await;
    assert_eq!(w.status(job.id).await, JobStatus::Seeding);
    let seed_dir =
        w.f.engine
            .staging_root()
            .join("seeding")
            .join(job.id.to_string());
    assert!(seed_dir.exists(), "a copy kept for seeding");
    // Without limits it seeds until cancelled.
    let runner = {
        let w = Arc::new(w);
        let handle = {
            let w = w.clone();
            tokio::spawn(async move { w.run_stage(Stage::Seed).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(w.status(job.id).await, JobStatus::Seeding);
        // Stopping a seed ends the job as completed: its files stay reachable.
        let stopped = w.jobs.cancel(&me(), job.id, false).await.unwrap();
        assert_eq!(stopped.status, JobStatus::Completed);
        let outcome = handle.await.unwrap();
        assert!(
            w.jobs.file(&me(), job.id, 0).await.is_ok(),
            "files reachable"
        );
        // The stop message the DELETE queued is harmless.
        assert_eq!(w.run_stage(Stage::Seed).await, StageOutcome::Done);
        outcome
    };
    assert_eq!(runner, StageOutcome::Done);
    assert!(!seed_dir.exists(), "seeding data freed");
}

#[tokio::test]
async fn internal_trackers_and_peers_are_refused_at_submission() {
    let w = world();
    w.f.addresses.map("tracker.public.example", "93.184.216.34");
    w.f.addresses.map("metadata.example", "169.254.169.254");
    let hash = InfoHash::from_bytes([40; 20]).to_hex();
    let magnet = |extra: &str| Submission::Magnet(format!("magnet:?xt=urn:btih:{hash}{extra}"));
    for tracker in [
        "http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data",
        "udp%3A%2F%2F10.0.0.1%3A6969",
        "http%3A%2F%2F%5B%3A%3Affff%3A192.168.1.1%5D%2Fannounce",
        "https%3A%2F%2Fmetadata.example%2Fannounce%3Fpasskey%3Dsecret",
    ] {
        let r = w
            .jobs
            .submit(
                me(),
                magnet(&format!(
                    "&tr=http%3A%2F%2Ftracker.public.example%2Fa&tr={tracker}"
                )),
                None,
                None,
            )
            .await;
        match r {
            Err(e @ JobsError::TrackerNotAllowed { .. }) => {
                assert!(!e.to_string().contains("secret"), "{e}");
            }
            other => panic!("{tracker}: {other:?}"),
        }
    }
    let r = w
        .jobs
        .submit(me(), magnet("&x.pe=10.1.2.3:6379"), None, None)
        .await;
    assert!(matches!(r, Err(JobsError::PeerNotAllowed(_))), "{r:?}");
    // A .torrent's announce list is checked the same way.
    let mut meta = sample_metadata(41, &[1]);
    meta.trackers = vec![
        "http://tracker.public.example/a".into(),
        "udp://[fd00::1]:6969".into(),
    ];
    w.f.engine.register(meta.clone());
    let r = w
        .jobs
        .submit(me(), Submission::Torrent(meta.metainfo.clone()), None, None)
        .await;
    assert!(
        matches!(r, Err(JobsError::TrackerNotAllowed { .. })),
        "{r:?}"
    );
    assert!(
        w.f.queue.waiting(Stage::Download).is_empty(),
        "nothing queued"
    );
    // Public trackers, unresolvable names and loopback (allowed here) pass.
    w.jobs
        .submit(
            me(),
            magnet("&tr=http%3A%2F%2Ftracker.public.example%2Fa&tr=udp%3A%2F%2Fgone.example%3A1&x.pe=127.0.0.1:6881"),
            None,
            None,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_seed_whose_retries_run_out_completes_with_its_files() {
    let w = world();
    w.f.engine.register(sample_metadata(31, &[10, 20]));
    let options = SubmitOptions {
        seed: Some(ferry_domain::SeedPolicy::default()),
        ..SubmitOptions::default()
    };
    let job = w
        .jobs
        .submit_with(me(), Submission::Magnet(magnet_for(31)), options)
        .await
        .unwrap();
    w.run_stage(Stage::Download).await;
    w.run_stage(Stage::Upload).await;
    assert_eq!(w.status(job.id).await, JobStatus::Seeding);
    let seed_dir =
        w.f.engine
            .staging_root()
            .join("seeding")
            .join(job.id.to_string());
    assert!(seed_dir.exists());
    for _ in 0..3 {
        w.f.engine
            .fail_next_start(EngineError::Unexpected(anyhow::anyhow!("port in use")));
        assert!(matches!(
            w.run_stage(Stage::Seed).await,
            StageOutcome::Retry(_)
        ));
    }
    let done = w.jobs.get(&me(), job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    assert!(
        w.jobs.file(&me(), job.id, 1).await.is_ok(),
        "files reachable"
    );
    assert_eq!(w.f.queue.dead_letters().len(), 1);
    // The seeding copy is freed by the seed stage, where the engine is.
    assert_eq!(w.run_stage(Stage::Seed).await, StageOutcome::Done);
    assert!(!seed_dir.exists(), "seeding data freed");
    assert!(!w.f.engine.is_running(job.id));
}

#[tokio::test]
async fn a_paused_url_job_resumes_with_the_fetch_stage() {
    let w = Arc::new(world());
    let url = "https://files.example/big.bin";
    w.f.fetcher.serve(url, vec![3u8; 10_000]);
    w.f.fetcher.hold(true);
    let job = w
        .jobs
        .submit(me(), Submission::Url(url.into()), None, None)
        .await
        .unwrap();
    let runner = {
        let w = w.clone();
        tokio::spawn(async move { w.run_stage(Stage::Fetch).await })
    };
    while w.status(job.id).await != JobStatus::Downloading {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let paused = w.jobs.pause(&me(), job.id).await.unwrap();
    assert_eq!(paused.status, JobStatus::Paused);
    assert_eq!(runner.await.unwrap(), StageOutcome::Done);
    w.f.fetcher.hold(false);

    let resumed = w.jobs.resume(&me(), job.id).await.unwrap();
    assert_eq!(resumed.status, JobStatus::Downloading);
    assert_eq!(
        (
            w.f.queue.waiting(Stage::Fetch),
            w.f.queue.waiting(Stage::Download)
        ),
        (vec![job.id], vec![]),
        "a URL job resumes with its own stage"
    );
    assert_eq!(w.run_stage(Stage::Fetch).await, StageOutcome::Done);
    assert_eq!(w.run_stage(Stage::Upload).await, StageOutcome::Done);
    assert_eq!(w.status(job.id).await, JobStatus::Completed);
}

#[tokio::test]
async fn a_url_with_no_content_fails_at_once_and_says_why() {
    let w = world();
    let url = "https://files.example/empty.bin";
    w.f.fetcher.serve(url, Vec::new());
    let job = w
        .jobs
        .submit(me(), Submission::Url(url.into()), None, None)
        .await
        .unwrap();
    assert!(matches!(
        w.run_stage(Stage::Fetch).await,
        StageOutcome::Fail(_)
    ));
    let failed = w.jobs.get(&me(), job.id).await.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    let error = failed.error.unwrap();
    assert_eq!(error.code, ErrorCode::UrlEmpty.as_str());
    assert!(error.message.contains("no content"), "{}", error.message);
    assert!(
        w.f.queue.waiting(Stage::Upload).is_empty(),
        "nothing to deliver"
    );
}

#[tokio::test]
async fn a_failed_url_job_is_retried_with_the_fetch_stage() {
    let w = world();
    let url = "https://files.example/flaky.bin";
    w.f.fetcher.serve(url, vec![4u8; 1000]);
    let job = w
        .jobs
        .submit(me(), Submission::Url(url.into()), None, None)
        .await
        .unwrap();
    w.f.fetcher.answer(url, Some(503));
    for _ in 0..3 {
        assert!(matches!(
            w.run_stage(Stage::Fetch).await,
            StageOutcome::Retry(_)
        ));
    }
    let failed = w.jobs.get(&me(), job.id).await.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(
        failed.error.unwrap().code,
        ErrorCode::UrlUnavailable.as_str()
    );

    w.f.fetcher.answer(url, None);
    let retried = w.jobs.retry(&me(), job.id).await.unwrap();
    assert_eq!(retried.status, JobStatus::Queued);
    assert_eq!(
        (
            w.f.queue.waiting(Stage::Fetch),
            w.f.queue.waiting(Stage::Download)
        ),
        (vec![job.id], vec![]),
        "a URL job is retried with its own stage"
    );
    assert_eq!(w.run_stage(Stage::Fetch).await, StageOutcome::Done);
    assert_eq!(w.run_stage(Stage::Upload).await, StageOutcome::Done);
    assert_eq!(w.status(job.id).await, JobStatus::Completed);
}

#[tokio::test]
async fn a_purge_during_delivery_stops_it_and_leaves_nothing() {
    let w = Arc::new(world());
    w.f.engine.register(sample_metadata(40, &[100, 200]));
    let job = w
        .jobs
        .submit(me(), Submission::Magnet(magnet_for(40)), None, None)
        .await
        .unwrap();
    w.run_stage(Stage::Download).await;
    assert_eq!(w.status(job.id).await, JobStatus::Uploading);
    let staged = w.f.engine.staging_root().join(job.id.to_string());
    assert!(staged.exists());
    w.f.store.hold(true);
    let delivery = {
        let w = w.clone();
        tokio::spawn(async move { w.run_stage(Stage::Upload).await })
    };
    while w.f.store.puts_in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let purging = w.jobs.cancel(&me(), job.id, true).await.unwrap();
    assert_eq!(
        (purging.status, purging.purge_requested),
        (JobStatus::Cancelled, true)
    );
    assert_eq!(
        w.jobs.get(&me(), job.id).await.unwrap().id,
        job.id,
        "kept while the delivery runs"
    );
    // The delivery notices at its next tick, drops the put in hand and carries the purge out.
    assert_eq!(delivery.await.unwrap(), StageOutcome::Done);
    w.f.store.hold(false);
    assert_eq!(w.f.store.puts_in_flight(), 0, "the put was dropped");
    assert!(w.f.store.keys().is_empty(), "{:?}", w.f.store.keys());
    assert!(!staged.exists(), "staging freed");
    assert!(matches!(
        w.jobs.get(&me(), job.id).await,
        Err(JobsError::NotFound)
    ));
    // The message the DELETE queued finds nothing left.
    assert_eq!(w.run_stage(Stage::Upload).await, StageOutcome::Done);
    assert!(w.f.store.keys().is_empty());
}

#[tokio::test]
async fn a_purge_during_seeding_waits_for_the_seed_to_stop() {
    let w = Arc::new(world());
    w.f.engine.register(sample_metadata(41, &[10]));
    let options = SubmitOptions {
        seed: Some(ferry_domain::SeedPolicy::default()),
        ..SubmitOptions::default()
    };
    let job = w
        .jobs
        .submit_with(me(), Submission::Magnet(magnet_for(41)), options)
        .await
        .unwrap();
    w.run_stage(Stage::Download).await;
    w.run_stage(Stage::Upload).await;
    assert_eq!(w.status(job.id).await, JobStatus::Seeding);
    let seeding = {
        let w = w.clone();
        tokio::spawn(async move { w.run_stage(Stage::Seed).await })
    };
    while !w.f.engine.is_running(job.id) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let purging = w.jobs.cancel(&me(), job.id, true).await.unwrap();
    assert_eq!(
        (purging.status, purging.purge_requested),
        (JobStatus::Completed, true)
    );
    assert!(
        w.f.queue.waiting(Stage::Upload).is_empty(),
        "nothing is deleted while the seed runs"
    );
    assert_eq!(seeding.await.unwrap(), StageOutcome::Done);
    assert!(!w.f.engine.is_running(job.id));
    // The seed let go and handed the purge to delivery.
    assert_eq!(w.f.queue.waiting(Stage::Upload), vec![job.id]);
    assert_eq!(w.run_stage(Stage::Upload).await, StageOutcome::Done);
    assert!(w.f.store.keys().is_empty());
    assert!(
        !w.f.engine
            .staging_root()
            .join("seeding")
            .join(job.id.to_string())
            .exists()
    );
    assert!(matches!(
        w.jobs.get(&me(), job.id).await,
        Err(JobsError::NotFound)
    ));
    // The seed message the DELETE queued finds the job gone.
    assert_eq!(w.run_stage(Stage::Seed).await, StageOutcome::Done);
}

#[tokio::test]
async fn a_pending_purge_survives_a_lost_message_and_an_interrupted_request() {
    let w = world();
    let recovery = Recovery {
        repo: w.f.repo.clone(),
        queue: w.f.queue.clone(),
    };
    // A completed job whose purge message was lost (a crash): recovery queues delivery.
    w.f.engine.register(sample_metadata(42, &[5]));
    let done = w
        .jobs
        .submit(me(), Submission::Magnet(magnet_for(42)), None, None)
        .await
        .unwrap();
    w.run_stage(Stage::Download).await;
    w.run_stage(Stage::Upload).await;
    w.jobs.cancel(&me(), done.id, true).await.unwrap();
    let lost =
        w.f.queue
            .claim(Stage::Upload, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
    w.f.queue.ack(&lost).await.unwrap();
    assert_eq!(recovery.requeue_orphans().await.unwrap(), 1);
    assert_eq!(w.f.queue.waiting(Stage::Upload), vec![done.id]);
    assert_eq!(
        recovery.requeue_orphans().await.unwrap(),
        0,
        "a job with a live message is left alone"
    );
    w.run_stage(Stage::Upload).await;
    assert!(matches!(
        w.jobs.get(&me(), done.id).await,
        Err(JobsError::NotFound)
    ));
    assert!(w.f.store.keys().is_empty());

    // A purge marked but never carried on (the request died before it stopped the job): the
    // job's own stage stops it, frees its data and hands the purge on.
    w.f.engine.register(sample_metadata(43, &[5]));
    let queued = w
        .jobs
        .submit(me(), Submission::Magnet(magnet_for(43)), None, None)
        .await
        .unwrap();
    w.f.repo.request_purge(queued.id).await.unwrap();
    assert_eq!(w.run_stage(Stage::Download).await, StageOutcome::Done);
    assert_eq!(w.status(queued.id).await, JobStatus::Cancelled);
    assert!(!w.f.engine.is_running(queued.id));
    assert_eq!(w.run_stage(Stage::Upload).await, StageOutcome::Done);
    assert!(matches!(
        w.f.repo.get(queued.id).await,
        Err(RepoError::NotFound)
    ));
    assert_eq!(recovery.requeue_orphans().await.unwrap(), 0);
}

// ---- signed file links ----

struct LinkWorld {
    w: World,
    links: FileLinks,
    users: Arc<crate::testing::MemoryUsers>,
    user: ferry_domain::User,
}

const LINK_TTL: Duration = Duration::from_secs(3600);

/// A world whose owner `me()` is a user, with one completed job of three files (the middle
/// one not selected) and the links over it.
async fn link_world() -> (LinkWorld, ferry_domain::JobId) {
    link_world_with_burst(100).await
}

async fn link_world_with_burst(burst: u32) -> (LinkWorld, ferry_domain::JobId) {
    let w = world();
    let users = Arc::new(crate::testing::MemoryUsers::default());
    let mut user = ferry_domain::User::new(
        "Owner",
        None,
        ferry_domain::Role::User,
        crate::testing::epoch(),
    )
    .unwrap();
    user.id = me();
    users.insert(&user, None).await.unwrap();
    let links = FileLinks {
        jobs: Arc::new(jobs_over(&w.f, TorrentLimits::default())),
        users: users.clone(),
        limiter: Arc::new(crate::testing::MemoryRateLimiter::default()),
        signer: Arc::new(crate::testing::PlainLinkSigner::new(7)),
        clock: w.f.clock.clone(),
        settings: LinkSettings {
            ttl: LINK_TTL,
            limit: RateLimit {
                burst,
                period: Duration::from_secs(3600),
            },
        },
    };
    let meta = sample_metadata(60, &[10, 20, 30]);
    w.f.engine.register(meta.clone());
    let job = w
        .jobs
        .submit(
            me(),
            Submission::Torrent(meta.metainfo.clone()),
            Some(vec![0, 2]),
            None,
        )
        .await
        .unwrap();
    w.run_stage(Stage::Download).await;
    w.run_stage(Stage::Upload).await;
    assert_eq!(w.status(job.id).await, JobStatus::Completed);
    (
        LinkWorld {
            w,
            links,
            users,
            user,
        },
        job.id,
    )
}

#[tokio::test]
async fn a_link_opens_its_one_file_until_it_expires() {
    let (lw, job) = link_world().await;
    let link = lw.links.mint(&me(), job, 2).await.unwrap();
    assert_eq!(
        link.expires_at,
        crate::testing::epoch() + chrono::Duration::seconds(3600)
    );
    let FileSource::Stored(opened) = lw.links.open(&link.token).await.unwrap() else {
        panic!("a finished file comes from storage");
    };
    assert_eq!((opened.file.index, opened.file.size), (2, 30));
    assert!(matches!(opened.location, ObjectLocation::Url(_)));

    // One second before the end it works; at the end it does not.
    lw.w.f.clock.advance(chrono::Duration::seconds(3599));
    assert_eq!(lw.links.open(&link.token).await.unwrap().file().index, 2);
    lw.w.f.clock.advance(chrono::Duration::seconds(1));
    assert!(matches!(
        lw.links.open(&link.token).await,
        Err(LinksError::Expired)
    ));
}

#[tokio::test]
async fn links_are_made_only_for_files_the_caller_can_read() {
    let (lw, job) = link_world().await;
    let stranger = OwnerId::parse("someone-else").unwrap();
    assert!(matches!(
        lw.links.mint(&stranger, job, 0).await,
        Err(LinksError::Jobs(JobsError::NotFound))
    ));
    assert!(matches!(
        lw.links.mint(&me(), job, 1).await,
        Err(LinksError::Jobs(JobsError::FileNotSelected(1)))
    ));
    assert!(matches!(
        lw.links.mint(&me(), job, 9).await,
        Err(LinksError::Jobs(JobsError::FileNotFound(9)))
    ));
    let meta = sample_metadata(61, &[5]);
    lw.w.f.engine.register(meta.clone());
    let running =
        lw.w.jobs
            .submit(me(), Submission::Torrent(meta.metainfo), None, None)
            .await
            .unwrap();
    assert!(matches!(
        lw.links.mint(&me(), running.id, 0).await,
        Err(LinksError::Jobs(JobsError::NotFinished(_)))
    ));
}

#[tokio::test]
async fn a_link_stops_working_when_its_owner_is_disabled_or_deleted_or_the_job_purged() {
    let (lw, job) = link_world().await;
    let link = lw.links.mint(&me(), job, 0).await.unwrap();
    let mut disabled = lw.user.clone();
    disabled.disabled = true;
    lw.users.update(&disabled).await.unwrap();
    assert!(matches!(
        lw.links.open(&link.token).await,
        Err(LinksError::Invalid)
    ));
    lw.users.update(&lw.user).await.unwrap();
    assert_eq!(lw.links.open(&link.token).await.unwrap().file().index, 0);

    // A link signed for an owner who does not exist (as after a user is deleted).
    let ghost = crate::testing::PlainLinkSigner::new(7)
        .sign(&LinkClaims {
            job,
            file: 0,
            owner: OwnerId::parse("deleted-user").unwrap(),
            expires_at: crate::testing::epoch() + chrono::Duration::seconds(60),
        })
        .unwrap();
    assert!(matches!(
        lw.links.open(&ghost).await,
        Err(LinksError::Invalid)
    ));

    // Purged: refused while the purge runs, gone after.
    lw.w.jobs.cancel(&me(), job, true).await.unwrap();
    assert!(matches!(
        lw.links.open(&link.token).await,
        Err(LinksError::Jobs(JobsError::Purging))
    ));
    lw.w.run_stage(Stage::Upload).await;
    assert!(matches!(
        lw.links.open(&link.token).await,
        Err(LinksError::Jobs(JobsError::NotFound))
    ));
}

#[tokio::test]
async fn forged_and_oversized_links_are_refused_and_genuine_ones_are_rate_limited() {
    let (lw, job) = link_world_with_burst(3).await;
    let forged = crate::testing::PlainLinkSigner::new(8)
        .sign(&LinkClaims {
            job,
            file: 0,
            owner: me(),
            expires_at: crate::testing::epoch() + chrono::Duration::seconds(60),
        })
        .unwrap();
    for bad in [
        forged,
        String::new(),
        "x".repeat(crate::links::MAX_LINK_TOKEN_BYTES + 1),
    ] {
        assert!(matches!(
            lw.links.open(&bad).await,
            Err(LinksError::Invalid)
        ));
    }
    // Forged links spent nothing: the owner's three uses are all there, then no more.
    let link = lw.links.mint(&me(), job, 0).await.unwrap();
    for _ in 0..3 {
        lw.links.open(&link.token).await.unwrap();
    }
    assert!(matches!(
        lw.links.open(&link.token).await,
        Err(LinksError::RateLimited { .. })
    ));
}

/// A job waiting in the queue can be paused: the worker that takes its message finds it paused
/// and leaves it; resumed, it is queued again (with its place) and runs once.
#[tokio::test]
async fn a_queued_job_is_paused_and_resumed_into_the_queue() {
    let w = world();
    w.f.engine.register(sample_metadata(61, &[100]));
    let job = w
        .jobs
        .submit(me(), Submission::Magnet(magnet_for(61)), None, None)
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    let paused = w.jobs.pause(&me(), job.id).await.unwrap();
    assert_eq!(paused.status, JobStatus::Paused);
    let places = w
        .jobs
        .queue_positions(std::slice::from_ref(&paused))
        .await
        .unwrap();
    assert!(places.is_empty(), "a paused job has no place: {places:?}");
    // Its message is taken and dropped: nothing runs.
    assert_eq!(w.run_stage(Stage::Download).await, StageOutcome::Done);
    assert_eq!(w.status(job.id).await, JobStatus::Paused);
    assert_eq!(w.f.queue.depth(Stage::Download).await.unwrap(), 0);

    let resumed = w.jobs.resume(&me(), job.id).await.unwrap();
    assert_eq!(resumed.status, JobStatus::Queued);
    let places = w
        .jobs
        .queue_positions(std::slice::from_ref(&resumed))
        .await
        .unwrap();
    assert_eq!(places.get(&job.id), Some(&1));
    w.run_stage(Stage::Download).await;
    assert_eq!(w.status(job.id).await, JobStatus::Uploading);
    assert_eq!(
        w.f.queue.depth(Stage::Download).await.unwrap(),
        0,
        "it ran once"
    );
}

/// A queued URL job is not paused: it would resume as `downloading` and continue a partial
/// file from an earlier run that a fresh start must not use.
#[tokio::test]
async fn a_queued_url_job_is_not_paused() {
    let w = world();
    w.f.fetcher
        .serve("https://cdn.example/waiting.iso", b"ISO".to_vec());
    let job = w
        .jobs
        .submit(
            me(),
            Submission::Url("https://cdn.example/waiting.iso".into()),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    let r = w.jobs.pause(&me(), job.id).await;
    assert!(matches!(r, Err(JobsError::IllegalTransition(_))), "{r:?}");
    assert_eq!(w.status(job.id).await, JobStatus::Queued);
}

/// Added paused (qBittorrent's `paused`/`stopped`): nothing is queued and nothing runs until
/// the job is resumed; a magnet without metadata then starts from the beginning (`queued`)
/// and downloads like any other.
#[tokio::test]
async fn a_job_added_paused_waits_for_resume_then_runs() {
    let w = world();
    w.f.engine.register(sample_metadata(60, &[100, 200]));
    let options = SubmitOptions {
        paused: true,
        ..SubmitOptions::default()
    };
    let job = w
        .jobs
        .submit_with(me(), Submission::Magnet(magnet_for(60)), options)
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Paused);
    assert_eq!(w.status(job.id).await, JobStatus::Paused);
    assert_eq!(w.f.queue.depth(Stage::Download).await.unwrap(), 0);
    let resumed = w.jobs.resume(&me(), job.id).await.unwrap();
    assert_eq!(resumed.status, JobStatus::Queued);
    assert_eq!(w.f.queue.depth(Stage::Download).await.unwrap(), 1);
    w.run_stage(Stage::Download).await;
    assert_eq!(w.status(job.id).await, JobStatus::Uploading);
    w.run_stage(Stage::Upload).await;
    assert_eq!(w.status(job.id).await, JobStatus::Completed);
}

#[tokio::test]
async fn a_required_proxy_that_is_down_fails_the_download_before_it_starts() {
    let w = world();
    let meta = sample_metadata(40, &[5]);
    w.f.engine.register(meta.clone());
    w.f.engine
        .set_proxy_down(Some("the torrent proxy 127.0.0.9:1080 is unreachable"));
    let job = w
        .jobs
        .submit(me(), Submission::Torrent(meta.metainfo.clone()), None, None)
        .await
        .unwrap();
    assert!(matches!(
        w.run_stage(Stage::Download).await,
        StageOutcome::Fail(_)
    ));
    let failed = w.jobs.get(&me(), job.id).await.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(
        failed.error.unwrap().code,
        ErrorCode::ProxyUnavailable.as_str()
    );
    assert!(!w.f.engine.is_running(job.id), "the torrent never started");

    // Once the proxy is back, the user's retry completes.
    w.f.engine.set_proxy_down(None);
    w.jobs.retry(&me(), job.id).await.unwrap();
    w.run_stage(Stage::Download).await;
    w.run_stage(Stage::Upload).await;
    assert_eq!(w.status(job.id).await, JobStatus::Completed);
}

#[tokio::test]
async fn a_required_proxy_going_down_stops_a_running_download_and_a_resolve() {
    let w = world();
    let meta = sample_metadata(41, &[1000]);
    w.f.engine.register(meta.clone());
    w.f.engine.set_stalled(true);
    let job = w
        .jobs
        .submit(me(), Submission::Torrent(meta.metainfo.clone()), None, None)
        .await
        .unwrap();
    let magnet = w
        .jobs
        .submit(me(), Submission::Magnet(magnet_for(42)), None, None)
        .await
        .unwrap();
    let engine = w.f.engine.clone();
    let down = async {
        // Both stages are waiting (a stalled download, a magnet nobody answers) when the
        // proxy goes.
        tokio::time::sleep(Duration::from_millis(30)).await;
        engine.set_proxy_down(Some("the torrent proxy is unreachable"));
    };
    let (a, b, ()) = tokio::join!(
        w.run_stage(Stage::Download),
        w.run_stage(Stage::Download),
        down
    );
    assert!(matches!(a, StageOutcome::Fail(_)), "{a:?}");
    assert!(matches!(b, StageOutcome::Fail(_)), "{b:?}");
    for id in [job.id, magnet.id] {
        let failed = w.jobs.get(&me(), id).await.unwrap();
        assert_eq!(failed.status, JobStatus::Failed);
        assert_eq!(
            failed.error.unwrap().code,
            ErrorCode::ProxyUnavailable.as_str()
        );
        assert!(!w.f.engine.is_running(id), "the torrent was stopped");
    }
}

#[tokio::test]
async fn the_operators_block_list_refuses_torrents_and_urls_and_can_be_replaced() {
    let w = world();
    let meta = sample_metadata(43, &[5]);
    w.f.engine.register(meta.clone());
    w.f.fetcher
        .serve("https://cdn.example/setup.exe", b"MZ".to_vec());
    let list = ferry_domain::SubmissionBlocklist::parse([
        meta.info_hash.to_hex().as_str(),
        "https://*.exe",
    ])
    .unwrap();
    w.jobs.blocklist.replace(list);
    let magnet = format!("magnet:?xt=urn:btih:{}&dn=x", meta.info_hash.to_hex());
    for submission in [
        Submission::Magnet(magnet.clone()),
        Submission::Torrent(meta.metainfo.clone()),
        Submission::Url("https://CDN.example/setup.EXE".into()),
        // A torrent the list does not name, announcing to a tracker it refuses.
        Submission::Magnet(format!(
            "{}&tr=https%3A%2F%2Ftracker.example%2Fannounce.exe",
            magnet_for(44)
        )),
    ] {
        let r = w.jobs.submit(me(), submission, None, None).await;
        assert!(matches!(r, Err(JobsError::Blocked(_))), "{r:?}");
    }
    assert!(matches!(
        w.jobs
            .fetch_torrent("https://cdn.example/setup.exe", 1 << 20)
            .await,
        Err(JobsError::Blocked(_))
    ));
    assert!(
        w.jobs
            .list(&JobQuery {
                owner: me(),
                status: None,
                name_contains: None,
                before: None,
                limit: 10,
                torrents: None,
            })
            .await
            .unwrap()
            .is_empty(),
        "nothing was created"
    );

    // A new list replaces the old one at once.
    w.jobs
        .blocklist
        .replace(ferry_domain::SubmissionBlocklist::default());
    w.jobs
        .submit(me(), Submission::Magnet(magnet), None, None)
        .await
        .unwrap();
}

/// Reads all of a live file from `start`.
async fn read_live(source: FileSource, start: u64) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let FileSource::Live(live) = source else {
        panic!("an unfinished file is read live");
    };
    let mut out = Vec::new();
    live.open(start)
        .await
        .unwrap()
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

#[tokio::test]
async fn a_downloading_torrent_jobs_file_is_read_live_by_its_owner_only() {
    let w = Arc::new(world());
    let meta = sample_metadata(70, &[1000, 50]);
    w.f.engine.register(meta.clone());
    w.f.engine.set_stalled(true);
    let job = w
        .jobs
        .submit(
            me(),
            Submission::Torrent(meta.metainfo.clone()),
            Some(vec![0]),
            None,
        )
        .await
        .unwrap();
    // Queued: nothing to read yet.
    assert!(matches!(
        w.jobs.source(&me(), job.id, 0).await,
        Err(JobsError::NotFinished(JobStatus::Queued))
    ));
    let runner = {
        let w = w.clone();
        tokio::spawn(async move { w.run_stage(Stage::Download).await })
    };
    while !w.f.engine.is_running(job.id) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(w.status(job.id).await, JobStatus::Downloading);
    let source = w.jobs.source(&me(), job.id, 0).await.unwrap();
    assert_eq!(source.file().size, 1000);
    assert_eq!(read_live(source, 0).await.len(), 1000);
    let source = w.jobs.source(&me(), job.id, 0).await.unwrap();
    assert_eq!(read_live(source, 990).await.len(), 10);
    // Only the owner's, only selected files, only known ones.
    let stranger = OwnerId::parse("someone-else").unwrap();
    assert!(matches!(
        w.jobs.source(&stranger, job.id, 0).await,
        Err(JobsError::NotFound)
    ));
    assert!(matches!(
        w.jobs.source(&me(), job.id, 1).await,
        Err(JobsError::FileNotSelected(1))
    ));
    assert!(matches!(
        w.jobs.source(&me(), job.id, 7).await,
        Err(JobsError::FileNotFound(7))
    ));
    // A process without the engine (the distributed API) cannot read it.
    let apart = Jobs {
        live: None,
        ..jobs_over(&w.f, TorrentLimits::default())
    };
    assert!(matches!(
        apart.source(&me(), job.id, 0).await,
        Err(JobsError::NotFinished(JobStatus::Downloading))
    ));
    assert!(matches!(
        apart.file(&me(), job.id, 0).await,
        Err(JobsError::NotFinished(JobStatus::Downloading))
    ));

    // Paused: not readable; the download finishing: read from staging until delivered,
    // then from storage.
    w.jobs.pause(&me(), job.id).await.unwrap();
    assert_eq!(runner.await.unwrap(), StageOutcome::Done);
    assert!(matches!(
        w.jobs.source(&me(), job.id, 0).await,
        Err(JobsError::NotFinished(JobStatus::Paused))
    ));
    w.f.engine.set_stalled(false);
    w.jobs.resume(&me(), job.id).await.unwrap();
    assert_eq!(w.run_stage(Stage::Download).await, StageOutcome::Done);
    assert_eq!(w.status(job.id).await, JobStatus::Uploading);
    let staged = w.jobs.source(&me(), job.id, 0).await.unwrap();
    assert_eq!(read_live(staged, 400).await.len(), 600);
    w.run_stage(Stage::Upload).await;
    assert!(matches!(
        w.jobs.source(&me(), job.id, 0).await,
        Ok(FileSource::Stored(_))
    ));
}

#[tokio::test]
async fn a_file_is_not_ready_while_its_magnet_resolves_nor_while_a_url_fetches() {
    let w = Arc::new(world());
    let job = w
        .jobs
        .submit(me(), Submission::Magnet(magnet_for(71)), None, None)
        .await
        .unwrap();
    // The engine does not know the magnet: it stays resolving.
    let runner = {
        let w = w.clone();
        tokio::spawn(async move { w.run_stage(Stage::Download).await })
    };
    while w.status(job.id).await != JobStatus::Resolving {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(matches!(
        w.jobs.source(&me(), job.id, 0).await,
        Err(JobsError::TorrentNotReady)
    ));
    runner.abort();
    let mut fetching = ferry_domain::Job::from_magnet(
        me(),
        ferry_domain::MagnetLink::parse(&magnet_for(72)).unwrap(),
        ferry_domain::FileSelection::All,
        crate::testing::epoch(),
    );
    fetching.source =
        ferry_domain::JobSource::Url(url::Url::parse("https://example.org/a.iso").unwrap());
    fetching.status = JobStatus::Downloading;
    w.f.repo.insert(&fetching).await.unwrap();
    assert!(matches!(
        w.jobs.source(&me(), fetching.id, 0).await,
        Err(JobsError::NotFinished(JobStatus::Downloading))
    ));
}

#[tokio::test]
async fn a_link_can_be_made_to_a_file_that_is_downloading() {
    let (lw, _) = link_world().await;
    let w = &lw.w;
    let meta = sample_metadata(73, &[64]);
    w.f.engine.register(meta.clone());
    w.f.engine.set_stalled(true);
    let job = w
        .jobs
        .submit(me(), Submission::Torrent(meta.metainfo), None, None)
        .await
        .unwrap();
    let claim =
        w.f.queue
            .claim(Stage::Download, Duration::from_secs(2))
            .await
            .unwrap()
            .unwrap();
    let never = CancellationToken::new();
    let run = w.download.run(&claim, &never);
    tokio::pin!(run);
    // Drive the stage until the engine runs the job (it then waits for progress).
    loop {
        tokio::select! {
            _ = &mut run => panic!("the stalled download ended"),
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
        if w.f.engine.is_running(job.id) {
            break;
        }
    }
    let link = lw.links.mint(&me(), job.id, 0).await.unwrap();
    let opened = lw.links.open(&link.token).await.unwrap();
    assert_eq!(read_live(opened, 0).await.len(), 64);
}

#[tokio::test]
async fn a_jobs_speed_limits_reach_its_torrent_from_the_start_and_when_changed() {
    let w = Arc::new(world());
    let meta = sample_metadata(80, &[1000]);
    w.f.engine.register(meta.clone());
    w.f.engine.set_stalled(true);
    let limits = ferry_domain::SpeedLimits::new(Some(32 * 1024), None).unwrap();
    let options = SubmitOptions {
        limits,
        ..SubmitOptions::default()
    };
    let job = w
        .jobs
        .submit_with(me(), Submission::Torrent(meta.metainfo.clone()), options)
        .await
        .unwrap();
    assert_eq!(job.speed_limits, limits);
    assert_eq!(w.f.repo.get(job.id).await.unwrap().speed_limits, limits);
    let runner = {
        let w = w.clone();
        tokio::spawn(async move { w.run_stage(Stage::Download).await })
    };
    let engine_limits = |want: ferry_domain::SpeedLimits| {
        let engine = w.f.engine.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(5), async {
                while engine.limits(job.id) != Some(want) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("the torrent never ran at {want:?}"));
        }
    };
    // From its first byte.
    engine_limits(limits).await;

    // Changed while it runs: the torrent takes them within a tick.
    let looser = ferry_domain::SpeedLimits::new(None, Some(64 * 1024)).unwrap();
    let changed = w
        .jobs
        .set_speed_limits(&me(), job.id, looser)
        .await
        .unwrap();
    assert_eq!(changed.speed_limits, looser);
    engine_limits(looser).await;

    // Only by its owner.
    let eve = OwnerId::parse("eve").unwrap();
    assert!(matches!(
        w.jobs
            .set_speed_limits(&eve, job.id, ferry_domain::SpeedLimits::NONE)
            .await,
        Err(JobsError::NotFound)
    ));
    assert_eq!(w.f.repo.get(job.id).await.unwrap().speed_limits, looser);

    w.f.engine.set_stalled(false);
    assert_eq!(runner.await.unwrap(), StageOutcome::Done);
    assert_eq!(w.status(job.id).await, JobStatus::Uploading);
}

#[tokio::test]
async fn a_url_job_takes_an_upload_limit_but_no_download_limit() {
    let w = world();
    let url = "https://files.example/limited.bin";
    w.f.fetcher.serve(url, vec![1u8; 100]);
    let down = ferry_domain::SpeedLimits::new(Some(32 * 1024), None).unwrap();
    let refused = w
        .jobs
        .submit_with(
            me(),
            Submission::Url(url.into()),
            SubmitOptions {
                limits: down,
                ..SubmitOptions::default()
            },
        )
        .await;
    assert!(
        matches!(refused, Err(JobsError::InvalidSpeedLimit(_))),
        "{refused:?}"
    );
    let job = w
        .jobs
        .submit(me(), Submission::Url(url.into()), None, None)
        .await
        .unwrap();
    assert!(matches!(
        w.jobs.set_speed_limits(&me(), job.id, down).await,
        Err(JobsError::InvalidSpeedLimit(_))
    ));
    let up = ferry_domain::SpeedLimits::new(None, Some(32 * 1024)).unwrap();
    let limited = w.jobs.set_speed_limits(&me(), job.id, up).await.unwrap();
    assert_eq!(limited.speed_limits, up);
}

#[tokio::test]
async fn queued_jobs_know_their_place_in_the_queue_of_their_kind() {
    let w = world();
    let eve = OwnerId::parse("eve").unwrap();
    let url = "https://files.example/queued.bin";
    w.f.fetcher.serve(url, vec![1u8; 100]);
    let mut submitted = Vec::new();
    for (owner, submission) in [
        (me(), Submission::Magnet(magnet_for(90))),
        (eve.clone(), Submission::Magnet(magnet_for(91))),
        (me(), Submission::Url(url.into())),
        (me(), Submission::Magnet(magnet_for(92))),
    ] {
        submitted.push(w.jobs.submit(owner, submission, None, None).await.unwrap());
        w.f.clock.advance(chrono::Duration::seconds(1));
    }
    let [first, others, fetch, last] = <[_; 4]>::try_from(submitted).unwrap();
    let places = w
        .jobs
        .queue_positions(&[first.clone(), fetch.clone(), last.clone()])
        .await
        .unwrap();
    // Another user's queued torrent counts; a URL waits in a queue of its own.
    assert_eq!(places.get(&first.id), Some(&1));
    assert_eq!(places.get(&fetch.id), Some(&1));
    assert_eq!(places.get(&last.id), Some(&3));
    assert_eq!(places.len(), 3, "only the jobs asked about: {places:?}");

    // The first starts: it leaves the queue, and the others move up.
    w.f.engine.register(sample_metadata(90, &[10]));
    w.run_stage(Stage::Download).await;
    assert_eq!(w.status(first.id).await, JobStatus::Uploading);
    let jobs = [
        w.f.repo.get(first.id).await.unwrap(),
        w.f.repo.get(others.id).await.unwrap(),
        w.f.repo.get(last.id).await.unwrap(),
    ];
    let places = w.jobs.queue_positions(&jobs).await.unwrap();
    assert_eq!(places.get(&first.id), None);
    assert_eq!(places.get(&others.id), Some(&1));
    assert_eq!(places.get(&last.id), Some(&2));
}
