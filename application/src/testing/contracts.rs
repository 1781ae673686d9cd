//! Contract suites: what every adapter of a port must do. Each adapter crate runs the suite
//! of its port against a real instance; this crate runs them against the fakes.

use std::path::Path;
use std::time::Duration;

use chrono::Duration as ChronoDuration;
use ferry_domain::{
    FileSelection, InfoHash, Job, JobError, JobId, JobStatus, MagnetLink, OwnerId, ProfileId,
    Progress, StorageKey,
};

use super::{epoch, sample_metadata};
use crate::ports::*;

mod accounts;
mod audit;
mod consent;
mod feeds;
mod links;
mod live;
mod sessions;
mod webhooks;

pub use accounts::{token_repository_contract, user_repository_contract};
pub use audit::{AUDIT_PAGE_MAX, audit_log_contract};
pub use consent::{Agree, drive_consent_contract};
pub use feeds::feed_repository_contract;
pub use links::link_signer_contract;
pub use live::live_files_contract;
pub use sessions::sessions_contract;
pub use webhooks::{webhook_repository_contract, webhook_transport_contract};

fn magnet_job(owner: &OwnerId, seed: u8) -> Job {
    let link = format!(
        "magnet:?xt=urn:btih:{}&dn=job-{seed}&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce",
        InfoHash::from_bytes([seed; 20]).to_hex()
    );
    Job::from_magnet(
        owner.clone(),
        MagnetLink::parse(&link).unwrap(),
        FileSelection::All,
        epoch(),
    )
}

fn change(from: JobStatus, to: JobStatus) -> Transition {
    Transition {
        from,
        to,
        at: epoch() + ChronoDuration::seconds(5),
        error: None,
    }
}

/// `JobRepository`: round-trips, conditional transitions, paging, recovery queries.
pub async fn job_repository_contract(repo: &dyn JobRepository) {
    let alice = OwnerId::parse("alice").unwrap();
    let bob = OwnerId::parse("bob").unwrap();
    repo.ping().await.unwrap();

    // Round trip of a magnet job and of a .torrent job with a file selection.
    let queued = |counts: Vec<(JobStatus, u64)>| {
        counts
            .into_iter()
            .find(|(s, _)| *s == JobStatus::Queued)
            .map_or(0, |(_, n)| n)
    };
    let before = queued(repo.count_by_status().await.unwrap());
    let magnet = magnet_job(&alice, 1);
    repo.insert(&magnet).await.unwrap();
    assert_eq!(repo.get(magnet.id).await.unwrap(), magnet);
    let counts = repo.count_by_status().await.unwrap();
    assert_eq!(queued(counts.clone()), before + 1, "{counts:?}");
    assert!(counts.iter().all(|(_, n)| *n > 0), "{counts:?}");
    assert!(matches!(
        repo.insert(&magnet).await,
        Err(RepoError::AlreadyExists)
    ));
    assert!(matches!(
        repo.get(JobId::new()).await,
        Err(RepoError::NotFound)
    ));

    let selection = FileSelection::from_indices(Some(vec![0, 2])).unwrap();
    let mut torrent = Job::from_torrent(
        alice.clone(),
        sample_metadata(2, &[10, 20, 30]),
        selection,
        epoch(),
    );
    torrent.storage_profile = Some(ferry_domain::ProfileId::new());
    repo.insert(&torrent).await.unwrap();
    let read = repo.get(torrent.id).await.unwrap();
    assert_eq!(read, torrent);
    assert_eq!(
        read.selected_files().map(|f| f.index).collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert_eq!(read.progress.bytes_total, 40);

    repo.record_digest(torrent.id, 2, &"ab".repeat(32))
        .await
        .unwrap();
    let digested = repo.get(torrent.id).await.unwrap();
    let f2 = digested.files().iter().find(|f| f.index == 2).unwrap();
    assert_eq!(f2.sha256.as_deref(), Some("ab".repeat(32).as_str()));
    assert!(
        digested
            .files()
            .iter()
            .filter(|f| f.index != 2)
            .all(|f| f.sha256.is_none())
    );

    // Conditional transitions.
    let moved = repo
        .transition(magnet.id, &change(JobStatus::Queued, JobStatus::Resolving))
        .await
        .unwrap();
    assert_eq!(moved.status, JobStatus::Resolving);
    assert_eq!(moved.updated_at, epoch() + ChronoDuration::seconds(5));
    assert_eq!(repo.status(magnet.id).await.unwrap(), JobStatus::Resolving);
    match repo
        .transition(magnet.id, &change(JobStatus::Queued, JobStatus::Resolving))
        .await
    {
        Err(RepoError::Conflict { expected, actual }) => {
            assert_eq!(
                (expected, actual),
                (JobStatus::Queued, JobStatus::Resolving)
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        repo.transition(
            JobId::new(),
            &change(JobStatus::Queued, JobStatus::Resolving)
        )
        .await,
        Err(RepoError::NotFound)
    ));

    // Metadata, progress, attempts.
    let mut meta = sample_metadata(1, &[5, 7]);
    meta.apply_selection(&FileSelection::All);
    repo.record_metadata(magnet.id, &meta).await.unwrap();
    let progress = Progress {
        bytes_done: 6,
        bytes_total: 12,
        download_rate: 3,
        upload_rate: 1,
        uploaded_bytes: 2,
        peers: 4,
        eta_seconds: Some(2),
    };
    repo.record_progress(magnet.id, &progress).await.unwrap();
    let err = JobError::new(ferry_domain::ErrorCode::EngineError, "disk full");
    repo.record_attempt(magnet.id, 2, Some(&err)).await.unwrap();
    let read = repo.get(magnet.id).await.unwrap();
    assert_eq!(read.metadata.as_ref(), Some(&meta));
    assert_eq!(read.name, "sample-1");
    assert_eq!(read.progress, progress);
    assert_eq!((read.attempts, read.error.as_ref()), (2, Some(&err)));

    // Failure records the error and finish time; a retry resets both and the attempts.
    repo.transition(
        magnet.id,
        &change(JobStatus::Resolving, JobStatus::Downloading),
    )
    .await
    .unwrap();
    let failed = repo
        .transition(
            magnet.id,
            &Transition {
                error: Some(err.clone()),
                ..change(JobStatus::Downloading, JobStatus::Failed)
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.error.as_ref(), Some(&err));
    assert!(failed.finished_at.is_some());
    let retried = repo
        .transition(magnet.id, &change(JobStatus::Failed, JobStatus::Queued))
        .await
        .unwrap();
    assert_eq!(
        (retried.attempts, retried.error, retried.finished_at),
        (0, None, None)
    );

    // Duplicate detection only sees unfinished jobs of the same owner.
    let hash2 = InfoHash::from_bytes([2; 20]);
    assert_eq!(
        repo.find_unfinished_by_info_hash(&alice, hash2)
            .await
            .unwrap(),
        Some(torrent.id)
    );
    assert_eq!(
        repo.find_unfinished_by_info_hash(&bob, hash2)
            .await
            .unwrap(),
        None
    );

    // Listing: newest first, by owner, by status, keyset paging.
    let mut later = Vec::new();
    for seed in 10..15 {
        let job = magnet_job(&alice, seed);
        repo.insert(&job).await.unwrap();
        later.push(job.id);
    }
    repo.insert(&magnet_job(&bob, 20)).await.unwrap();
    let query = |status, before, limit| JobQuery {
        owner: alice.clone(),
        status,
        name_contains: None,
        before,
        limit,
        torrents: None,
    };
    let all = repo.list(&query(None, None, 100)).await.unwrap();
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let page1 = repo.list(&query(None, None, 3)).await.unwrap();
    let page2 = repo.list(&query(None, Some(page1[2].id), 3)).await.unwrap();
    assert_eq!(
        page1.iter().chain(&page2).map(|j| j.id).collect::<Vec<_>>(),
        all.iter().take(6).map(|j| j.id).collect::<Vec<_>>()
    );
    let resolving = repo
        .list(&query(Some(JobStatus::Queued), None, 100))
        .await
        .unwrap();
    assert_eq!(resolving.len(), 7, "all of alice's jobs are queued");
    assert!(
        repo.list(&query(Some(JobStatus::Paused), None, 100))
            .await
            .unwrap()
            .is_empty()
    );
    // Searching by name: a part of it, in any ASCII case; LIKE's wildcards are plain text.
    let mut named = magnet_job(&alice, 30);
    named.name = "Big_Buck Bunny 100%.mkv".into();
    repo.insert(&named).await.unwrap();
    let search = |text: &str| JobQuery {
        name_contains: Some(text.to_owned()),
        ..query(None, None, 100)
    };
    for hit in ["buck bunny", "BIG_", "100%", ".MKV"] {
        let found = repo.list(&search(hit)).await.unwrap();
        assert_eq!(
            found.iter().map(|j| j.id).collect::<Vec<_>>(),
            [named.id],
            "{hit}"
        );
    }
    for miss in ["big%bunny", "b_ck", "bunny 1000", "\\"] {
        assert!(repo.list(&search(miss)).await.unwrap().is_empty(), "{miss}");
    }
    repo.delete(named.id).await.unwrap();
    // A name as long as a magnet's `dn` may be (16 KiB) is stored, found and filtered: no
    // index refuses it (PostgreSQL's B-tree entries stop near 2.7 KB).
    let mut long = magnet_job(&alice, 31);
    // Hex of a hash chain: text that does not compress (PostgreSQL compresses before it
    // measures an index entry).
    let mut hex = String::new();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    while hex.len() < 16 * 1024 - 7 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        hex.push_str(&format!("{state:016x}"));
    }
    long.name = format!("{} needle", &hex[..16 * 1024 - 7]);
    repo.insert(&long).await.unwrap();
    let found = repo.list(&search("NEEDLE")).await.unwrap();
    assert_eq!(found.iter().map(|j| j.id).collect::<Vec<_>>(), [long.id]);
    let queued = JobQuery {
        name_contains: Some("needle".into()),
        ..query(Some(JobStatus::Queued), None, 100)
    };
    assert_eq!(repo.list(&queued).await.unwrap().len(), 1);
    repo.delete(long.id).await.unwrap();

    // Recovery sees every unfinished, unpaused job.
    repo.transition(torrent.id, &change(JobStatus::Queued, JobStatus::Resolving))
        .await
        .unwrap();
    repo.transition(
        torrent.id,
        &change(JobStatus::Resolving, JobStatus::Downloading),
    )
    .await
    .unwrap();
    repo.transition(
        torrent.id,
        &change(JobStatus::Downloading, JobStatus::Paused),
    )
    .await
    .unwrap();
    let unfinished = repo.unfinished().await.unwrap();
    assert!(unfinished.contains(&Unfinished {
        id: magnet.id,
        status: JobStatus::Queued,
        is_url: false,
        purge: false,
    }));
    assert!(
        !unfinished.iter().any(|u| u.id == torrent.id),
        "paused jobs wait for a resume"
    );
    assert_eq!(unfinished.len(), 7);

    // A URL job with a seeding policy; its content address and packaged torrent.
    let mut url_job = Job::from_url(
        alice.clone(),
        ferry_domain::FetchUrl::parse("https://files.example/dir/Big%20File.iso").unwrap(),
        epoch(),
    );
    url_job.seed = Some(ferry_domain::SeedPolicy {
        ratio: Some(1.5),
        time_secs: None,
        idle_secs: Some(60),
    });
    url_job.byte_limit = Some(1 << 40);
    repo.insert(&url_job).await.unwrap();
    assert_eq!(repo.get(url_job.id).await.unwrap(), url_job);
    repo.record_byte_limit(url_job.id, None).await.unwrap();
    assert_eq!(repo.get(url_job.id).await.unwrap().byte_limit, None);
    repo.record_byte_limit(url_job.id, Some(1 << 40))
        .await
        .unwrap();
    assert_eq!(repo.get(url_job.id).await.unwrap(), url_job);
    assert_eq!(url_job.name, "Big File.iso");
    let sha = "cd".repeat(32);
    assert_eq!(
        repo.find_packaged(&sha, "Big File.iso").await.unwrap(),
        None
    );
    repo.record_content(url_job.id, &sha).await.unwrap();
    let mut packaged = sample_metadata(9, &[123]);
    packaged.name = "Big File.iso".into();
    repo.record_metadata(url_job.id, &packaged).await.unwrap();
    assert_eq!(
        repo.get(url_job.id)
            .await
            .unwrap()
            .content_sha256
            .as_deref(),
        Some(sha.as_str())
    );
    assert_eq!(
        repo.find_packaged(&sha, "Big File.iso")
            .await
            .unwrap()
            .map(|m| m.info_hash),
        Some(packaged.info_hash)
    );
    assert_eq!(repo.find_packaged(&sha, "other name").await.unwrap(), None);
    assert!(repo.unfinished().await.unwrap().contains(&Unfinished {
        id: url_job.id,
        status: JobStatus::Queued,
        is_url: true,
        purge: false,
    }));
    repo.delete(url_job.id).await.unwrap();

    // A pending purge: kept, seen by recovery whatever the status, and it blocks every
    // move to an unfinished status (but not the moves that end the job).
    assert!(matches!(
        repo.request_purge(JobId::new()).await,
        Err(RepoError::NotFound)
    ));
    let doomed = repo.request_purge(torrent.id).await.unwrap();
    assert!(doomed.purge_requested);
    assert_eq!(doomed.status, JobStatus::Paused);
    assert!(repo.get(torrent.id).await.unwrap().purge_requested);
    assert!(
        repo.request_purge(torrent.id)
            .await
            .unwrap()
            .purge_requested
    );
    assert!(
        repo.unfinished().await.unwrap().contains(&Unfinished {
            id: torrent.id,
            status: JobStatus::Paused,
            is_url: false,
            purge: true,
        }),
        "recovery finds a paused job pending purge"
    );
    match repo
        .transition(
            torrent.id,
            &change(JobStatus::Paused, JobStatus::Downloading),
        )
        .await
    {
        Err(RepoError::Conflict { expected, actual }) => {
            assert_eq!((expected, actual), (JobStatus::Paused, JobStatus::Paused));
        }
        other => panic!("a purge-pending job resumed: {other:?}"),
    }
    let cancelled = repo
        .transition(torrent.id, &change(JobStatus::Paused, JobStatus::Cancelled))
        .await
        .unwrap();
    assert!(cancelled.purge_requested && cancelled.finished_at.is_some());
    assert!(
        repo.unfinished().await.unwrap().contains(&Unfinished {
            id: torrent.id,
            status: JobStatus::Cancelled,
            is_url: false,
            purge: true,
        }),
        "recovery finds a cancelled job pending purge"
    );
    repo.delete(torrent.id).await.unwrap();
    assert!(!repo.get(magnet.id).await.unwrap().purge_requested);

    repo.delete(magnet.id).await.unwrap();
    assert!(matches!(
        repo.get(magnet.id).await,
        Err(RepoError::NotFound)
    ));
    assert!(matches!(
        repo.delete(magnet.id).await,
        Err(RepoError::NotFound)
    ));

    // One unfinished job per owner and torrent, whatever raced to insert it (issue 8,
    // defect 2); another owner's job of the same torrent is its own.
    let first = magnet_job(&alice, 77);
    repo.insert(&first).await.unwrap();
    assert!(matches!(
        repo.insert(&magnet_job(&alice, 77)).await,
        Err(RepoError::AlreadyExists)
    ));
    let bobs = magnet_job(&bob, 77);
    repo.insert(&bobs).await.unwrap();
    // A failed job frees the place; its retry cannot take it back from a newer job.
    repo.transition(first.id, &change(JobStatus::Queued, JobStatus::Failed))
        .await
        .unwrap();
    let second = magnet_job(&alice, 77);
    repo.insert(&second).await.unwrap();
    assert!(matches!(
        repo.transition(first.id, &change(JobStatus::Failed, JobStatus::Queued))
            .await,
        Err(RepoError::AlreadyExists)
    ));
    assert_eq!(repo.status(first.id).await.unwrap(), JobStatus::Failed);
    for id in [first.id, bobs.id, second.id] {
        repo.delete(id).await.unwrap();
    }

    seeding_time_and_torrent_filters(repo).await;
    speed_limits(repo).await;
}

/// Limits round-trip and reach `watch`; a change of one direction leaves the other as it is.
async fn speed_limits(repo: &dyn JobRepository) {
    use ferry_domain::{SpeedLimits, SpeedLimitsChange};
    let erin = OwnerId::parse("erin").unwrap();
    let job = magnet_job(&erin, 70);
    repo.insert(&job).await.unwrap();
    let (_, none) = repo.watch(job.id).await.unwrap();
    assert_eq!(none, SpeedLimits::NONE);
    let both = SpeedLimits::new(Some(100_000), Some(u64::from(u32::MAX))).unwrap();
    repo.record_speed_limits(job.id, both.into()).await.unwrap();
    assert_eq!(repo.get(job.id).await.unwrap().speed_limits, both);
    assert_eq!(repo.watch(job.id).await.unwrap(), (JobStatus::Queued, both));

    let up_only = SpeedLimits::new(None, Some(20_000)).unwrap();
    repo.record_speed_limits(
        job.id,
        SpeedLimitsChange {
            download_bps: None,
            upload_bps: Some(up_only.upload_bps),
        },
    )
    .await
    .unwrap();
    let after = repo.get(job.id).await.unwrap().speed_limits;
    assert_eq!(after.download_bps, both.download_bps, "download untouched");
    assert_eq!(after.upload_bps, up_only.upload_bps);
    repo.record_speed_limits(
        job.id,
        SpeedLimitsChange {
            download_bps: Some(None),
            upload_bps: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(repo.get(job.id).await.unwrap().speed_limits, up_only);
    repo.record_speed_limits(job.id, SpeedLimitsChange::default())
        .await
        .unwrap();
    assert_eq!(repo.get(job.id).await.unwrap().speed_limits, up_only);
    repo.delete(job.id).await.unwrap();
    assert!(matches!(
        repo.record_speed_limits(job.id, SpeedLimits::NONE.into())
            .await,
        Err(RepoError::NotFound)
    ));
}

/// The move to `seeding` is stamped and kept once seeding ends; qBittorrent's list asks for
/// torrent jobs only, by info-hash, id and status, each owner's alone.
async fn seeding_time_and_torrent_filters(repo: &dyn JobRepository) {
    use JobStatus as S;
    let carol = OwnerId::parse("carol").unwrap();
    let dave = OwnerId::parse("dave").unwrap();
    let at = |secs: i64| epoch() + ChronoDuration::seconds(secs);
    let seeded = magnet_job(&carol, 60);
    repo.insert(&seeded).await.unwrap();
    let path = [
        (S::Queued, S::Resolving, 1),
        (S::Resolving, S::Downloading, 2),
        (S::Downloading, S::Uploading, 3),
        (S::Uploading, S::Completed, 4),
        (S::Completed, S::Seeding, 5),
    ];
    for (from, to, secs) in path {
        let moved = repo
            .transition(
                seeded.id,
                &Transition {
                    at: at(secs),
                    ..change(from, to)
                },
            )
            .await
            .unwrap();
        assert_eq!(moved.seeding_started_at.is_some(), to == S::Seeding);
    }
    let done = repo
        .transition(
            seeded.id,
            &Transition {
                at: at(65),
                ..change(S::Seeding, S::Completed)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (done.seeding_started_at, done.finished_at),
        (Some(at(5)), Some(at(65)))
    );
    assert_eq!(repo.get(seeded.id).await.unwrap(), done);

    let magnet = magnet_job(&carol, 61);
    let resolving = magnet_job(&carol, 62);
    let file = Job::from_torrent(
        carol.clone(),
        sample_metadata(63, &[10]),
        FileSelection::All,
        epoch(),
    );
    let purging = magnet_job(&carol, 64);
    let mut url = Job::from_url(
        carol.clone(),
        ferry_domain::FetchUrl::parse("https://files.example/a.iso").unwrap(),
        epoch(),
    );
    url.name = "a.iso".into();
    let other = magnet_job(&dave, 61);
    for job in [&magnet, &resolving, &file, &purging, &url, &other] {
        repo.insert(job).await.unwrap();
    }
    repo.transition(resolving.id, &change(S::Queued, S::Resolving))
        .await
        .unwrap();
    repo.request_purge(purging.id).await.unwrap();
    // A packaged URL job has an info-hash, and is still no torrent job.
    repo.record_metadata(url.id, &sample_metadata(65, &[1]))
        .await
        .unwrap();
    let listed = |filter: TorrentFilter| {
        let query = JobQuery {
            owner: carol.clone(),
            status: None,
            name_contains: None,
            before: None,
            limit: 100,
            torrents: Some(filter),
        };
        async move {
            let mut ids: Vec<JobId> = repo
                .list(&query)
                .await
                .unwrap()
                .iter()
                .map(|j| j.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let sorted = |mut ids: Vec<JobId>| {
        ids.sort();
        ids
    };
    assert_eq!(
        listed(TorrentFilter::default()).await,
        sorted(vec![seeded.id, magnet.id, resolving.id, file.id])
    );
    let hash = |seed: u8| InfoHash::from_bytes([seed; 20]);
    assert_eq!(
        listed(TorrentFilter {
            info_hashes: Some(vec![hash(61), hash(63), hash(64), hash(65)]),
            ..TorrentFilter::default()
        })
        .await,
        sorted(vec![magnet.id, file.id]),
        "not dave's, not the purging one, not the URL job"
    );
    assert_eq!(
        listed(TorrentFilter {
            ids: Some(vec![magnet.id, url.id, other.id]),
            ..TorrentFilter::default()
        })
        .await,
        vec![magnet.id]
    );
    assert_eq!(
        listed(TorrentFilter {
            statuses: Some(vec![S::Resolving, S::Completed]),
            ..TorrentFilter::default()
        })
        .await,
        sorted(vec![seeded.id, resolving.id])
    );
    assert!(
        listed(TorrentFilter {
            info_hashes: Some(vec![hash(61)]),
            statuses: Some(vec![S::Resolving]),
            ..TorrentFilter::default()
        })
        .await
        .is_empty()
    );
    assert!(
        listed(TorrentFilter {
            ids: Some(Vec::new()),
            ..TorrentFilter::default()
        })
        .await
        .is_empty()
    );
    for job in [&seeded, &magnet, &resolving, &file, &purging, &url, &other] {
        repo.delete(job.id).await.unwrap();
    }
}

/// `JobQueue`: at-least-once delivery per stage, retries with attempts, dead letters.
pub async fn job_queue_contract(queue: &dyn JobQueue) {
    let short = Duration::from_millis(50);
    let a = JobId::new();
    let b = JobId::new();
    assert_eq!(queue.claim(Stage::Download, short).await.unwrap(), None);

    assert!(!queue.holds(Stage::Download, a).await.unwrap());
    queue.enqueue(Stage::Download, a).await.unwrap();
    queue.enqueue(Stage::Upload, b).await.unwrap();
    assert!(queue.holds(Stage::Download, a).await.unwrap());
    assert!(!queue.holds(Stage::Upload, a).await.unwrap(), "per stage");
    assert!(queue.depth(Stage::Download).await.unwrap() >= 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let waiting = queue.stats(Stage::Download).await.unwrap();
    assert_eq!((waiting.waiting, waiting.held), (1, 0), "{waiting:?}");
    assert!(
        waiting
            .oldest_waiting
            .is_some_and(|age| age >= Duration::from_millis(10) && age < Duration::from_secs(60)),
        "{waiting:?}"
    );
    let lease = queue
        .claim(Stage::Download, short)
        .await
        .unwrap()
        .expect("a message");
    let held = queue.stats(Stage::Download).await.unwrap();
    assert_eq!(
        (held.waiting, held.oldest_waiting, held.held),
        (0, None, 1),
        "claimed: held, no longer waiting"
    );
    assert_eq!(
        (lease.stage, lease.job_id, lease.attempt),
        (Stage::Download, a, 1)
    );
    assert_eq!(
        queue.claim(Stage::Download, short).await.unwrap(),
        None,
        "one consumer per message"
    );
    queue.renew(&lease).await.unwrap();
    assert!(
        queue.holds(Stage::Download, a).await.unwrap(),
        "held while claimed"
    );
    queue.ack(&lease).await.unwrap();
    assert!(
        !queue.holds(Stage::Download, a).await.unwrap(),
        "gone once acked"
    );
    assert_eq!(
        queue.stats(Stage::Download).await.unwrap(),
        QueueStats::default()
    );
    assert!(
        matches!(queue.renew(&lease).await, Err(QueueError::LeaseLost)),
        "a lease no longer held cannot be renewed"
    );
    assert_eq!(
        queue.claim(Stage::Download, short).await.unwrap(),
        None,
        "acked messages are gone"
    );

    // Stages are separate queues.
    let up = queue
        .claim(Stage::Upload, short)
        .await
        .unwrap()
        .expect("upload message");
    assert_eq!(up.job_id, b);

    // Release gives the message back at once, same attempt.
    queue.release(&up, Duration::ZERO).await.unwrap();
    let again = queue
        .claim(Stage::Upload, Duration::from_secs(2))
        .await
        .unwrap()
        .expect("released");
    assert_eq!((again.job_id, again.attempt), (b, 1));
    // Or after a while (the stage waits for another job), still the same attempt.
    queue
        .release(&again, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        queue
            .claim(Stage::Upload, Duration::from_millis(50))
            .await
            .unwrap(),
        None,
        "not before the delay"
    );
    let again = queue
        .claim(Stage::Upload, Duration::from_secs(3))
        .await
        .unwrap()
        .expect("released later");
    assert_eq!((again.job_id, again.attempt), (b, 1));

    // Retry redelivers after the delay, as the next attempt.
    queue
        .retry_later(&again, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        queue
            .claim(Stage::Upload, Duration::from_millis(50))
            .await
            .unwrap(),
        None,
        "not before the delay"
    );
    let retried = queue
        .claim(Stage::Upload, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("retried");
    assert_eq!((retried.job_id, retried.attempt), (b, 2));

    // A dead-lettered message is not delivered again, and is counted.
    let dead = queue.dead_letter_count().await.unwrap();
    queue.dead_letter(&retried, "gave up").await.unwrap();
    assert_eq!(queue.dead_letter_count().await.unwrap(), dead + 1);
    assert!(!queue.holds(Stage::Upload, b).await.unwrap());
    assert_eq!(queue.claim(Stage::Upload, short).await.unwrap(), None);

    // A waiting claim wakes up when a message arrives.
    let c = JobId::new();
    let (claimed, ()) = tokio::join!(
        queue.claim(Stage::Download, Duration::from_secs(5)),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            queue.enqueue(Stage::Download, c).await.unwrap();
        }
    );
    let claimed = claimed.unwrap().expect("woken by the enqueue");
    assert_eq!(claimed.job_id, c);
    queue.ack(&claimed).await.unwrap();
}

fn event(job_id: JobId, done: u64) -> JobEvent {
    JobEvent {
        job_id,
        owner: OwnerId::parse("alice").unwrap(),
        kind: EventKind::Progress,
        status: JobStatus::Downloading,
        progress: Progress::measured(done, 100, 10),
        error: None,
        at: epoch(),
    }
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<PublishedEvent>) -> PublishedEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an event within 5 s")
        .expect("the subscription is open")
}

/// `ProgressBus`: per-job ordered events, replay after an id, live delivery.
pub async fn progress_bus_contract(bus: &dyn ProgressBus) {
    let job = JobId::new();
    let other = JobId::new();
    let id1 = bus.publish(&event(job, 1)).await.unwrap();
    bus.publish(&event(other, 99)).await.unwrap();
    let id2 = bus.publish(&event(job, 2)).await.unwrap();
    assert_ne!(id1, id2);

    // From the start: both retained events of this job, in order.
    let mut all = bus.subscribe(job, &Replay::Retained).await.unwrap();
    let mut live_only = bus.subscribe(job, &Replay::LiveOnly).await.unwrap();
    let e1 = next(&mut all).await;
    let e2 = next(&mut all).await;
    assert_eq!(
        (e1.id.clone(), e1.event.progress.bytes_done),
        (id1.clone(), 1)
    );
    assert_eq!(
        (e2.id.clone(), e2.event.progress.bytes_done),
        (id2.clone(), 2)
    );

    // Resuming after id1 replays only what came after.
    let mut resumed = bus
        .subscribe(job, &Replay::After(id1.clone()))
        .await
        .unwrap();
    assert_eq!(next(&mut resumed).await.id, id2);

    // Live events reach every subscriber, and only of their job.
    let id3 = bus.publish(&event(job, 3)).await.unwrap();
    bus.publish(&event(other, 100)).await.unwrap();
    assert_eq!(next(&mut all).await.id, id3);
    assert_eq!(
        next(&mut live_only).await.id,
        id3,
        "a live-only subscriber sees only new events"
    );
    let live = next(&mut resumed).await;
    assert_eq!((live.id, live.event), (id3.clone(), event(job, 3)));

    // Nothing is lost between a replay and live delivery, even in a burst.
    let mut burst = bus
        .subscribe(job, &Replay::After(id3.clone()))
        .await
        .unwrap();
    for i in 0..50 {
        bus.publish(&event(job, 10 + i)).await.unwrap();
    }
    for i in 0..50 {
        assert_eq!(next(&mut burst).await.event.progress.bytes_done, 10 + i);
    }

    // A job nobody published for yields nothing yet, and does not fail.
    let mut quiet = bus
        .subscribe(JobId::new(), &Replay::Retained)
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), quiet.recv())
            .await
            .is_err()
    );

    assert!(matches!(
        bus.subscribe(job, &Replay::After(EventId("not an id".into())))
            .await,
        Err(BusError::BadEventId(_))
    ));
    owner_feed(bus).await;
}

/// An owner's feed: live events of every job of theirs, in order, and nobody else's.
async fn owner_feed(bus: &dyn ProgressBus) {
    let alice = OwnerId::parse("alice").unwrap();
    let bob = OwnerId::parse("bob").unwrap();
    bus.publish(&event(JobId::new(), 1)).await.unwrap();
    let mut alices = bus.subscribe_owner(&alice).await.unwrap();
    let mut bobs = bus.subscribe_owner(&bob).await.unwrap();
    let (one, two) = (JobId::new(), JobId::new());
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            bus.publish(&event(if i % 2 == 0 { one } else { two }, i))
                .await
                .unwrap(),
        );
    }
    let bobs_job = JobEvent {
        owner: bob.clone(),
        ..event(JobId::new(), 7)
    };
    let bobs_id = bus.publish(&bobs_job).await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let e = next(&mut alices).await;
        assert_eq!(
            (&e.id, e.event.progress.bytes_done),
            (id, i as u64),
            "in order, from now on"
        );
        assert_eq!(e.event.job_id, if i % 2 == 0 { one } else { two });
    }
    let e = next(&mut bobs).await;
    assert_eq!((e.id, e.event), (bobs_id, bobs_job));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), alices.recv())
            .await
            .is_err(),
        "nothing of bob's reaches alice"
    );
}

/// Puts `source` under `key` for `job` and checks the progress reports reached the size.
async fn put(
    store: &dyn ObjectStore,
    job: JobId,
    key: &StorageKey,
    source: &Path,
) -> Result<StoredObject, StoreError> {
    let size = std::fs::metadata(source).map(|m| m.len()).unwrap_or(0);
    let seen = std::sync::atomic::AtomicU64::new(0);
    let report = |n: u64| {
        seen.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
    };
    let stored = store
        .put_file(PutRequest {
            job,
            key,
            source,
            size,
            progress: &report,
        })
        .await?;
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::Relaxed),
        stored.size,
        "progress reached the size"
    );
    Ok(stored)
}

/// `ObjectStore`: put from a file (small and large), size, locate, digest, replace, prefix
/// delete. `scratch` is an empty folder the suite may write source files into; `large` is a
/// size the adapter stores in several parts.
pub async fn object_store_contract(store: &dyn ObjectStore, scratch: &Path, large: usize) {
    store.check().await.unwrap();
    let owner = OwnerId::parse("alice").unwrap();
    let job = JobId::new();
    let key =
        |p: &str| StorageKey::for_file(&owner, job, &ferry_domain::SafePath::parse(p).unwrap());

    let src = scratch.join("source.bin");
    std::fs::write(&src, b"hello ferry").unwrap();
    let small = put(store, job, &key("dir/a.bin"), &src).await.unwrap();
    assert_eq!(small.size, 11);
    assert!(small.sha256.len() == 64 && small.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(store.size(&key("dir/a.bin")).await.unwrap(), Some(11));
    assert_eq!(store.size(&key("dir/missing")).await.unwrap(), None);
    assert!(store.locate(&key("dir/a.bin")).await.is_ok());
    assert!(matches!(
        store.locate(&key("nope")).await,
        Err(StoreError::NotFound)
    ));

    // Replacing an object, with content large enough to be stored in parts.
    let src2 = scratch.join("source2.bin");
    let big: Vec<u8> = (0..large).map(|i| (i % 253) as u8).collect();
    std::fs::write(&src2, &big).unwrap();
    let stored = put(store, job, &key("dir/a.bin"), &src2).await.unwrap();
    assert_eq!(stored.size, large as u64);
    assert_ne!(stored.sha256, small.sha256);
    assert_eq!(
        store.size(&key("dir/a.bin")).await.unwrap(),
        Some(large as u64)
    );
    let again_src = scratch.join("source3.bin");
    std::fs::write(&again_src, &big).unwrap();
    let again = put(store, job, &key("other.bin"), &again_src)
        .await
        .unwrap();
    assert_eq!(again.sha256, stored.sha256, "same bytes, same digest");

    let missing = scratch.join("does-not-exist");
    assert!(matches!(
        put(store, job, &key("b"), &missing).await,
        Err(StoreError::NotFound)
    ));
    store.abort_uploads(job).await.unwrap();

    // A sibling job with a prefix-like id must survive a prefix delete.
    let src4 = scratch.join("source4.bin");
    std::fs::write(&src4, b"x").unwrap();
    let other = StorageKey::parse(&format!("{}/{}x/file", owner.as_str(), job)).unwrap();
    put(store, JobId::new(), &other, &src4).await.unwrap();
    store
        .delete_prefix(&StorageKey::job_prefix(&owner, job))
        .await
        .unwrap();
    assert_eq!(store.size(&key("dir/a.bin")).await.unwrap(), None);
    assert_eq!(store.size(&key("other.bin")).await.unwrap(), None);
    assert_eq!(store.size(&other).await.unwrap(), Some(1));
    store
        .delete_prefix(&StorageKey::job_prefix(&owner, job))
        .await
        .unwrap();
    store
        .delete_prefix(&StorageKey::parse(&format!("{}/{}x", owner.as_str(), job)).unwrap())
        .await
        .unwrap();
}

/// `ProfileRepository`: sealed profiles per owner.
pub async fn profile_repository_contract(repo: &dyn ProfileRepository) {
    let alice = OwnerId::parse("alice").unwrap();
    let bob = OwnerId::parse("bob").unwrap();
    let backend = ferry_domain::StorageBackend::s3(
        "http://s3.example:9000",
        "us-east-1",
        "bucket-a",
        Some("x"),
        true,
    )
    .unwrap();
    let first = SealedProfile {
        profile: ferry_domain::StorageProfile::new(alice.clone(), "First", backend, epoch())
            .unwrap(),
        credentials: vec![1, 2, 3, 0, 255],
    };
    let drive = ferry_domain::StorageBackend::google_drive("root-folder_1").unwrap();
    let second = SealedProfile {
        profile: ferry_domain::StorageProfile::new(
            alice.clone(),
            "Drive",
            drive,
            epoch() + ChronoDuration::seconds(1),
        )
        .unwrap(),
        credentials: vec![9; 40],
    };
    repo.insert(&first).await.unwrap();
    repo.insert(&second).await.unwrap();
    assert!(matches!(
        repo.insert(&first).await,
        Err(RepoError::AlreadyExists)
    ));
    assert_eq!(
        repo.get(&alice, first.profile.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        repo.get(&bob, first.profile.id).await.unwrap(),
        None,
        "scoped by owner"
    );
    let listed = repo.list(&alice).await.unwrap();
    assert_eq!(listed, vec![first.profile.clone(), second.profile.clone()]);
    assert!(repo.list(&bob).await.unwrap().is_empty());
    assert!(matches!(
        repo.delete(&bob, first.profile.id).await,
        Err(RepoError::NotFound)
    ));
    // Across owners, for re-sealing; a replacement only if nothing changed meanwhile.
    let bobs = SealedProfile {
        profile: ferry_domain::StorageProfile::new(
            bob.clone(),
            "Bob's",
            ferry_domain::StorageBackend::google_drive("bobs-folder").unwrap(),
            epoch(),
        )
        .unwrap(),
        credentials: vec![7; 10],
    };
    repo.insert(&bobs).await.unwrap();
    let mut all: Vec<_> = repo
        .all_sealed()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.profile.id)
        .collect();
    all.sort();
    let mut want = vec![first.profile.id, second.profile.id, bobs.profile.id];
    want.sort();
    assert_eq!(all, want);
    assert!(
        !repo
            .replace_credentials(bobs.profile.id, &[1, 2], &[3])
            .await
            .unwrap(),
        "stale expectation"
    );
    assert!(
        repo.replace_credentials(bobs.profile.id, &[7; 10], &[8, 8])
            .await
            .unwrap()
    );
    assert_eq!(
        repo.get(&bob, bobs.profile.id)
            .await
            .unwrap()
            .unwrap()
            .credentials,
        vec![8, 8]
    );
    assert!(
        !repo
            .replace_credentials(ProfileId::new(), &[], &[1])
            .await
            .unwrap()
    );
    // A default per owner: only one's own profile, replaced, cleared, gone with it.
    assert_eq!(repo.default_of(&alice).await.unwrap(), None);
    assert!(matches!(
        repo.set_default(&alice, Some(bobs.profile.id)).await,
        Err(RepoError::NotFound)
    ));
    assert!(matches!(
        repo.set_default(&alice, Some(ProfileId::new())).await,
        Err(RepoError::NotFound)
    ));
    repo.set_default(&alice, Some(second.profile.id))
        .await
        .unwrap();
    repo.set_default(&bob, Some(bobs.profile.id)).await.unwrap();
    repo.set_default(&alice, Some(first.profile.id))
        .await
        .unwrap();
    assert_eq!(
        repo.default_of(&alice).await.unwrap(),
        Some(first.profile.id)
    );
    assert_eq!(repo.default_of(&bob).await.unwrap(), Some(bobs.profile.id));
    repo.set_default(&bob, None).await.unwrap();
    repo.set_default(&bob, None).await.unwrap();
    assert_eq!(repo.default_of(&bob).await.unwrap(), None);
    repo.delete(&bob, bobs.profile.id).await.unwrap();

    repo.delete(&alice, first.profile.id).await.unwrap();
    assert_eq!(
        repo.default_of(&alice).await.unwrap(),
        None,
        "the default went with its profile"
    );
    assert_eq!(repo.get(&alice, first.profile.id).await.unwrap(), None);
    assert!(matches!(
        repo.delete(&alice, first.profile.id).await,
        Err(RepoError::NotFound)
    ));

    // A folder on the shared volume: stored, listed, the default, deleted like the others.
    let folder = SealedProfile {
        profile: ferry_domain::StorageProfile::new(
            alice.clone(),
            "TV",
            ferry_domain::StorageBackend::folder("/tv/Some Show (2024)/").unwrap(),
            epoch() + ChronoDuration::seconds(2),
        )
        .unwrap(),
        credentials: vec![4; 28],
    };
    repo.insert(&folder).await.unwrap();
    let read = repo.get(&alice, folder.profile.id).await.unwrap().unwrap();
    assert_eq!(read, folder);
    assert_eq!(
        read.profile.backend,
        ferry_domain::StorageBackend::Folder {
            path: "tv/Some Show (2024)".into()
        }
    );
    assert_eq!(
        repo.list(&alice).await.unwrap(),
        vec![second.profile.clone(), folder.profile.clone()]
    );
    repo.set_default(&alice, Some(folder.profile.id))
        .await
        .unwrap();
    assert_eq!(
        repo.default_of(&alice).await.unwrap(),
        Some(folder.profile.id)
    );
    repo.delete(&alice, folder.profile.id).await.unwrap();
    assert_eq!(repo.default_of(&alice).await.unwrap(), None);
}

/// `UploadSessions`: remembered per job and key.
pub async fn upload_sessions_contract(sessions: &dyn UploadSessions) {
    let job = JobId::new();
    let other = JobId::new();
    assert_eq!(sessions.get(job, "a/b").await.unwrap(), None);
    sessions.set(job, "a/b", Some("upload-1")).await.unwrap();
    sessions.set(job, "a/c", Some("upload-2")).await.unwrap();
    sessions.set(other, "a/b", Some("upload-3")).await.unwrap();
    sessions.set(job, "a/b", Some("upload-4")).await.unwrap();
    assert_eq!(
        sessions.get(job, "a/b").await.unwrap().as_deref(),
        Some("upload-4")
    );
    assert_eq!(
        sessions.of_job(job).await.unwrap(),
        vec![
            ("a/b".to_owned(), "upload-4".to_owned()),
            ("a/c".to_owned(), "upload-2".to_owned())
        ]
    );
    sessions.set(job, "a/b", None).await.unwrap();
    sessions.set(job, "a/b", None).await.unwrap();
    assert_eq!(sessions.get(job, "a/b").await.unwrap(), None);
    assert_eq!(sessions.of_job(other).await.unwrap().len(), 1);
}

/// `SecretBox`: round trip, no plaintext in the output, tampering detected.
pub fn secret_box_contract(secrets: &dyn SecretBox) {
    let plain = b"secret-access-key: abc123";
    let context = b"profile 1 of alice";
    let sealed = secrets.seal(plain, context);
    assert_eq!(secrets.open(&sealed, context).unwrap(), plain);
    assert!(secrets.is_current(&sealed), "just sealed: current");
    assert!(
        !sealed.windows(plain.len()).any(|w| w == plain),
        "plaintext visible"
    );
    assert!(
        secrets.open(&sealed, b"profile 2 of alice").is_err(),
        "sealed for another context"
    );
    assert!(secrets.open(&sealed, b"").is_err());
    let mut tampered = sealed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(secrets.open(&tampered, context).is_err());
    assert!(secrets.open(&[], context).is_err());
    assert!(secrets.open(&sealed[..sealed.len() / 2], context).is_err());
}

/// `AddressGuard` with the default policy, where `internal.example` resolves to a private
/// address and `public.example` to a public one: literal and resolved internal addresses are
/// refused, public ones pass, and an unknown name is `Unresolved`, not refused.
pub async fn address_guard_contract(guard: &dyn AddressGuard) {
    for host in [
        "127.0.0.1",
        "169.254.169.254",
        "10.1.2.3",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "internal.example",
        "INTERNAL.example.",
    ] {
        assert!(
            matches!(
                guard.check_host(host).await,
                Err(AddressError::NotAllowed(_))
            ),
            "{host} must be refused"
        );
    }
    for host in ["8.8.8.8", "[2001:4860:4860::8888]", "public.example"] {
        assert!(guard.check_host(host).await.is_ok(), "{host} must pass");
    }
    assert!(matches!(
        guard.check_host("nowhere.invalid").await,
        Err(AddressError::Unresolved(_))
    ));
}

/// How long `retry_after` may be: at most one period, and at least a period less the time
/// that passed since the burst began (`elapsed`, measured around the calls, so the bound
/// holds under load). 1 ms covers a store that counts in microseconds.
fn assert_retry_after(retry: Duration, period: Duration, elapsed: Duration, what: &str) {
    assert!(
        retry <= period,
        "{what}: retry_after {retry:?} beyond the period {period:?}"
    );
    assert!(
        retry + elapsed + Duration::from_millis(1) >= period,
        "{what}: retry_after {retry:?} too short for a period of {period:?} ({elapsed:?} passed)"
    );
}

/// The wait of a refused request; panics if it passed.
fn refused(decision: RateDecision, what: &str) -> Duration {
    match decision {
        RateDecision::Limited { retry_after } => retry_after,
        RateDecision::Allowed => panic!("{what} must be refused"),
    }
}

/// `RateLimiter`: exactly `burst` requests pass at once, the next is refused with a
/// `retry_after` of one period (less the time the burst took), refusals do not lengthen the
/// wait, keys and limits are independent (two limits on one key string are two buckets),
/// concurrent requests never pass more than the burst, hostile keys (huge, binary, glob and
/// hash-tag characters) are keys like any other, `burst: 0` acts as 1, a zero period
/// never limits, huge limits do not overflow, and one more request passes after waiting
/// `retry_after`.
///
/// Run it on a fresh limiter (a fresh key prefix for a shared one): it uses fixed keys.
pub async fn rate_limiter_contract(limiter: &dyn RateLimiter) {
    let minute = RateLimit {
        burst: 5,
        period: Duration::from_secs(60),
    };

    // The edge: the fifth request passes, the sixth does not.
    let start = std::time::Instant::now();
    for i in 1..=5 {
        assert_eq!(
            limiter.check("contract:edge", minute).await,
            RateDecision::Allowed,
            "request {i} of a burst of 5"
        );
    }
    let retry = refused(limiter.check("contract:edge", minute).await, "request 6");
    assert_retry_after(retry, minute.period, start.elapsed(), "request 6");
    // A client that keeps knocking is not punished further: refusals take no cell.
    for i in 7..=20 {
        let retry = refused(limiter.check("contract:edge", minute).await, "a knock");
        assert_retry_after(
            retry,
            minute.period,
            start.elapsed(),
            &format!("request {i}"),
        );
    }

    // Another key has a bucket of its own.
    for i in 1..=5 {
        assert_eq!(
            limiter.check("contract:other", minute).await,
            RateDecision::Allowed,
            "request {i} of another key"
        );
    }
    refused(
        limiter.check("contract:other", minute).await,
        "another key's sixth",
    );

    // Another limit on the same key string is another bucket: the full one above does not
    // refuse it, and using it does not refill the full one.
    let pair = RateLimit {
        burst: 2,
        period: Duration::from_secs(60),
    };
    for _ in 0..2 {
        assert_eq!(
            limiter.check("contract:edge", pair).await,
            RateDecision::Allowed,
            "a second limit on the same key"
        );
    }
    refused(
        limiter.check("contract:edge", pair).await,
        "the second limit's third",
    );
    refused(
        limiter.check("contract:edge", minute).await,
        "the first limit, still full",
    );

    // Requests at once: exactly the burst passes.
    let at_once =
        futures::future::join_all((0..20).map(|_| limiter.check("contract:at-once", minute))).await;
    let passed = at_once
        .iter()
        .filter(|d| **d == RateDecision::Allowed)
        .count();
    assert_eq!(passed, 5, "20 requests at once under a burst of 5");

    rate_limiter_hostile_keys(limiter).await;

    // Degenerate limits: no burst means one; no period means no limit.
    let none = RateLimit {
        burst: 0,
        period: Duration::from_secs(60),
    };
    assert_eq!(
        limiter.check("contract:zero-burst", none).await,
        RateDecision::Allowed
    );
    refused(
        limiter.check("contract:zero-burst", none).await,
        "burst 0, second",
    );
    let unlimited = RateLimit {
        burst: 1,
        period: Duration::ZERO,
    };
    for _ in 0..50 {
        assert_eq!(
            limiter.check("contract:unlimited", unlimited).await,
            RateDecision::Allowed
        );
    }
    // Limits past any configuration neither panic nor overflow (adapters may bound them).
    let huge = RateLimit {
        burst: u32::MAX,
        period: Duration::MAX,
    };
    assert_eq!(
        limiter.check("contract:huge", huge).await,
        RateDecision::Allowed
    );
    let forever = RateLimit {
        burst: 1,
        period: Duration::MAX,
    };
    assert_eq!(
        limiter.check("contract:forever", forever).await,
        RateDecision::Allowed
    );
    let retry = refused(
        limiter.check("contract:forever", forever).await,
        "forever's second",
    );
    assert!(retry >= Duration::from_secs(3600), "{retry:?}");

    // Refill: after waiting `retry_after`, one more passes (and only one, when the next
    // request comes sooner than another period).
    let quick = RateLimit {
        burst: 2,
        period: Duration::from_millis(300),
    };
    let start = std::time::Instant::now();
    for _ in 0..2 {
        assert_eq!(
            limiter.check("contract:refill", quick).await,
            RateDecision::Allowed
        );
    }
    let retry = refused(
        limiter.check("contract:refill", quick).await,
        "the refill's third",
    );
    assert_retry_after(retry, quick.period, start.elapsed(), "the refill's third");
    tokio::time::sleep(retry).await;
    assert_eq!(
        limiter.check("contract:refill", quick).await,
        RateDecision::Allowed,
        "one more after waiting retry_after ({retry:?})"
    );
    let next = limiter.check("contract:refill", quick).await;
    // Since the start, less than two periods have passed (else a second cell is due).
    if start.elapsed() < 2 * quick.period {
        refused(next, "the next right after the refill");
    }
}

/// Keys an attacker chooses (a login name, a forwarded address): each is its own bucket,
/// however long or strange, and none is confused with another. Every key gets one request
/// per minute, so any two keys stored alike would refuse the second one's first request.
async fn rate_limiter_hostile_keys(limiter: &dyn RateLimiter) {
    let one = RateLimit {
        burst: 1,
        period: Duration::from_secs(60),
    };
    let long = "k".repeat(100_000);
    let mut keys: Vec<String> = [
        "",
        " ",
        "*",
        "?",
        "[a-z]",
        "\\",
        "{",
        "}",
        "{tag}",
        "{tag}x",
        "a\nb",
        "a\r\nFLUSHALL",
        "\0",
        "\0\u{1}\u{7f}",
        "ключ",
        "\u{1F4A5}",
        "#",
        "#0",
        "%s%n",
        "../..",
        "rate:*",
        "contract:edge",
    ]
    .iter()
    .map(|k| (*k).to_owned())
    .collect();
    keys.push(long.clone());
    keys.push(format!("{long}x"));
    keys.push(format!("x{long}"));
    keys.push(long[..129].to_owned());
    keys.push(long[..128].to_owned());
    keys.push(long[..127].to_owned());
    keys.push("\u{e9}".repeat(5000));
    for key in &keys {
        let shown = key.chars().take(20).collect::<String>();
        assert_eq!(
            limiter.check(key, one).await,
            RateDecision::Allowed,
            "the first request of {shown:?} (len {})",
            key.len()
        );
    }
    for key in &keys {
        let shown = key.chars().take(20).collect::<String>();
        refused(
            limiter.check(key, one).await,
            &format!("the second of {shown:?}"),
        );
    }
}

/// What the fetcher contract fetches: URLs the test's origin answers.
pub struct FetchFixture {
    /// Serves `content` (honouring `Range` where the fetcher asks for it).
    pub file: ferry_domain::FetchUrl,
    pub content: Vec<u8>,
    /// Answers 404.
    pub missing: ferry_domain::FetchUrl,
    /// Names an address the fetcher's policy refuses.
    pub refused: ferry_domain::FetchUrl,
    /// A scratch folder for saved files.
    pub dir: std::path::PathBuf,
}

/// `Fetcher`: the declared size, a saved file with its digest and progress, a partial file
/// continued or started over (never both), no write through a file with other names (a
/// content-store entry, a delivered copy), a 404 as `Status(404)`, a refused address as
/// `NotAllowed`.
pub async fn fetcher_contract(fetcher: &dyn Fetcher, fx: &FetchFixture) {
    let len = fx.content.len() as u64;
    let body = fetcher.open(&fx.file, None).await.unwrap();
    assert_eq!(body.info().size, Some(len));
    assert_eq!(body.info().resumed_from, 0);
    let seen = std::sync::atomic::AtomicU64::new(0);
    let dest = fx.dir.join("whole.bin");
    let fetched = body
        .save(&dest, &|n| {
            seen.store(n, std::sync::atomic::Ordering::SeqCst)
        })
        .await
        .unwrap();
    assert_eq!(fetched.size, len);
    assert_eq!(fetched.sha256.len(), 64);
    assert!(fetched.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), len);
    assert_eq!(std::fs::read(&dest).unwrap(), fx.content);

    // A partial file: continued or started over, the result is the whole content.
    let partial = fx.dir.join("partial.bin");
    let half = fx.content.len() / 2;
    std::fs::write(&partial, &fx.content[..half]).unwrap();
    let body = fetcher.open(&fx.file, Some(&partial)).await.unwrap();
    let resumed = body.info().resumed_from;
    assert!(
        resumed == 0 || resumed == half as u64,
        "resumed from {resumed}"
    );
    let again = body.save(&partial, &|_| {}).await.unwrap();
    assert_eq!(std::fs::read(&partial).unwrap(), fx.content);
    assert_eq!(again.sha256, fetched.sha256, "same content, same digest");

    // The staged name has another name: that one keeps its bytes.
    #[cfg(unix)]
    {
        let staged = fx.dir.join("linked.bin");
        let other = fx.dir.join("content-entry");
        std::fs::write(&staged, b"another job's bytes").unwrap();
        std::fs::hard_link(&staged, &other).unwrap();
        let body = fetcher.open(&fx.file, None).await.unwrap();
        body.save(&staged, &|_| {}).await.unwrap();
        assert_eq!(std::fs::read(&staged).unwrap(), fx.content);
        assert_eq!(std::fs::read(&other).unwrap(), b"another job's bytes");
    }

    assert!(matches!(
        fetcher.open(&fx.missing, None).await.err(),
        Some(FetchError::Status(404))
    ));
    assert!(matches!(
        fetcher.open(&fx.refused, None).await.err(),
        Some(FetchError::NotAllowed(_))
    ));
}

/// A torrent whose content is already staged, for the engine contract: `files` are the
/// job-relative paths and contents the metainfo describes.
pub struct EngineFixture {
    pub metainfo: Vec<u8>,
    pub files: Vec<(ferry_domain::SafePath, Vec<u8>)>,
}

/// Waits until the engine reports `job` finished (30 s at most).
async fn finished(engine: &dyn TorrentEngine, job: JobId) -> crate::ports::EngineStats {
    finished_within(engine, job, Duration::from_secs(30)).await
}

/// Waits until the engine reports `job` finished; panics after `within`.
pub async fn finished_within(
    engine: &dyn TorrentEngine,
    job: JobId,
    within: Duration,
) -> crate::ports::EngineStats {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let s = engine.stats(job).await.unwrap();
        if s.finished {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never finished: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `TorrentEngine`: inspection, idempotent start, stats over the selected files, one
/// torrent shared by two jobs (one cancelled, the other unharmed), hand-over of a finished
/// job's files, discard. The fixture's data is placed in staging first, so the engine
/// completes without any peer.
pub async fn torrent_engine_contract(
    engine: &dyn TorrentEngine,
    inspector: &dyn TorrentInspector,
    staging: &dyn Staging,
    fixture: &EngineFixture,
) {
    assert!(matches!(
        inspector.inspect(b"not a torrent"),
        Err(EngineError::InvalidTorrent(_))
    ));
    let meta = inspector.inspect(&fixture.metainfo).unwrap();
    let total: u64 = fixture.files.iter().map(|(_, d)| d.len() as u64).sum();
    assert_eq!(meta.total_bytes, total);
    assert_eq!(meta.files.len(), fixture.files.len());
    for (path, _) in &fixture.files {
        assert!(
            meta.files.iter().any(|f| f.path == path.as_str()),
            "{path} listed"
        );
    }

    let job = JobId::new();
    assert!(matches!(
        engine.stats(job).await,
        Err(EngineError::NotRunning)
    ));
    engine.stop(job, false).await.unwrap();
    for (path, data) in &fixture.files {
        let dest = staging.file(job, path);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&dest, data).unwrap();
    }
    let spec = TorrentSpec {
        job_id: job,
        metainfo: fixture.metainfo.clone(),
        only_files: None,
        peers: vec![],
        data_dir: None,
        limits: Default::default(),
    };
    engine.start(spec.clone()).await.unwrap();
    engine.start(spec.clone()).await.unwrap(); // idempotent
    // Another job (another owner's) wants one file of the same torrent: it shares it.
    let other = JobId::new();
    let (first_path, first_data) = &fixture.files[0];
    let first = meta
        .files
        .iter()
        .find(|f| f.path == first_path.as_str())
        .unwrap()
        .index;
    engine
        .start(TorrentSpec {
            job_id: other,
            only_files: Some(vec![first]),
            ..spec
        })
        .await
        .unwrap();
    let stats = finished(engine, job).await;
    assert_eq!((stats.bytes_done, stats.bytes_total), (total, total));
    assert!(stats.error.is_none());
    let theirs = finished(engine, other).await;
    assert_eq!(theirs.bytes_total, first_data.len() as u64);

    // The first job is cancelled: the other's torrent and data are untouched.
    engine.stop(job, true).await.unwrap();
    assert!(matches!(
        engine.stats(job).await,
        Err(EngineError::NotRunning)
    ));
    assert!(finished(engine, other).await.finished);
    engine.hand_over(other).await.unwrap();
    assert!(matches!(
        engine.stats(other).await,
        Err(EngineError::NotRunning)
    ));
    assert!(matches!(
        engine.hand_over(other).await,
        Err(EngineError::NotRunning)
    ));
    assert_eq!(
        &std::fs::read(staging.file(other, first_path)).unwrap(),
        first_data
    );
    for (path, _) in &fixture.files[1..] {
        assert!(
            !staging.file(other, path).exists(),
            "{path} was not selected"
        );
    }
    staging.discard(other).await.unwrap();
    staging.discard(job).await.unwrap();
    staging.discard(job).await.unwrap();
    for (path, _) in &fixture.files {
        assert!(!staging.file(job, path).exists());
    }
    assert!(!staging.job_dir(job).exists());
}

#[cfg(test)]
mod tests {
    use super::super::*;

    #[tokio::test]
    async fn memory_repository_passes() {
        job_repository_contract_fake().await;
    }

    async fn job_repository_contract_fake() {
        super::job_repository_contract(&MemoryRepository::default()).await;
    }

    #[tokio::test]
    async fn memory_webhooks_pass() {
        let repo = MemoryWebhooks::default();
        super::webhook_repository_contract(&repo, &repo).await;
        let url = |u: &str| ferry_domain::FetchUrl::parse(u).unwrap();
        super::webhook_transport_contract(
            &FakeTransport::default(),
            &url("https://hooks.example.org/ferry"),
            &url("http://10.0.0.1/hook"),
        )
        .await;
    }

    #[tokio::test]
    async fn memory_queue_passes() {
        super::job_queue_contract(&MemoryQueue::default()).await;
    }

    #[tokio::test]
    async fn memory_bus_passes() {
        super::progress_bus_contract(&MemoryBus::default()).await;
    }

    #[tokio::test]
    async fn fake_engine_passes() {
        let engine = FakeEngine::new();
        let meta = crate::testing::sample_metadata(3, &[1000, 5]);
        engine.register(meta.clone());
        // The fake fills finished files with zeros.
        let files = meta
            .files
            .iter()
            .map(|f| (f.safe_path().unwrap(), vec![0u8; f.size as usize]))
            .collect();
        let fixture = super::EngineFixture {
            metainfo: meta.metainfo,
            files,
        };
        super::torrent_engine_contract(&engine, &engine, &engine, &fixture).await;
    }

    #[tokio::test]
    async fn fake_live_files_pass() {
        let engine = FakeEngine::new();
        let meta = crate::testing::sample_metadata(4, &[3000, 5]);
        engine.register(meta.clone());
        let files = meta
            .files
            .iter()
            .map(|f| (f.safe_path().unwrap(), vec![0u8; f.size as usize]))
            .collect();
        let fixture = super::EngineFixture {
            metainfo: meta.metainfo,
            files,
        };
        super::live_files_contract(&engine, &engine, &engine, &engine, &fixture).await;
    }

    #[tokio::test]
    async fn fake_fetcher_passes() {
        let dir = std::env::temp_dir().join(format!(
            "ferry-fetch-contract-{}-{}",
            std::process::id(),
            ferry_domain::JobId::new()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let fetcher = FakeFetcher::default();
        let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        fetcher.serve("https://example.com/file.bin", content.clone());
        let url = |u: &str| ferry_domain::FetchUrl::parse(u).unwrap();
        let fixture = super::FetchFixture {
            file: url("https://example.com/file.bin"),
            content,
            missing: url("https://example.com/nope"),
            refused: url("https://internal.example/secret"),
            dir: dir.clone(),
        };
        super::fetcher_contract(&fetcher, &fixture).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn memory_store_passes() {
        let dir = std::env::temp_dir().join(format!("ferry-store-contract-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        super::object_store_contract(&MemoryStore::default(), &dir, 70_000).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn memory_profiles_pass() {
        super::profile_repository_contract(&MemoryProfiles::default()).await;
    }

    #[tokio::test]
    async fn memory_sessions_pass() {
        super::upload_sessions_contract(&MemorySessions::default()).await;
    }

    #[tokio::test]
    async fn fake_address_guard_passes() {
        let guard = FakeAddressGuard::default();
        guard.map("internal.example", "192.168.1.5");
        guard.map("public.example", "93.184.216.34");
        super::address_guard_contract(&guard).await;
    }

    #[tokio::test]
    async fn memory_rate_limiter_passes() {
        super::rate_limiter_contract(&MemoryRateLimiter::default()).await;
    }

    #[test]
    fn plain_box_passes() {
        super::secret_box_contract(&PlainBox);
    }

    #[test]
    fn plain_link_signer_passes() {
        super::link_signer_contract(
            &PlainLinkSigner::new(1),
            &PlainLinkSigner::new(1),
            &PlainLinkSigner::new(2),
        );
    }
}
