//! Ferry's jobs in qBittorrent's words: the JSON its clients read, field for field (integers
//! as integers, `-1`/`8640000` where qBittorrent says "none" or "unknown").

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ferry_application::ports::JobLabels;
use ferry_domain::{InfoHash, Job, JobStatus, ProfileId};
use serde::Serialize;

use crate::ApiState;

/// qBittorrent's ETA for "unknown" (100 days).
pub const ETA_UNKNOWN: i64 = 8_640_000;

/// Where an owner's jobs lie on this server: the local storage (jobs with no destination)
/// and their area on the shared volume (folder destinations).
pub struct Place {
    pub local_root: Option<PathBuf>,
    pub area: Option<PathBuf>,
}

impl Place {
    /// Where jobs with no category go (the local storage, else the shared area).
    pub fn default_save_path(&self) -> String {
        self.local_root
            .as_ref()
            .or(self.area.as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    /// The directory holding the job's content (`{base}/{job id}`), if it is on this
    /// server's disks.
    fn job_dir(&self, job: &Job, folders: &HashMap<ProfileId, String>) -> Option<PathBuf> {
        let base = match job.storage_profile {
            None => self.local_root.clone()?,
            Some(profile) => {
                let path = folders.get(&profile)?;
                let area = self.area.clone()?;
                if path.is_empty() {
                    area
                } else {
                    area.join(path)
                }
            }
        };
        Some(base.join(job.id.to_string()))
    }
}

/// One entry of `torrents/info`.
#[derive(Debug, Clone, Serialize)]
pub struct TorrentInfo {
    pub added_on: i64,
    pub amount_left: i64,
    pub auto_tmm: bool,
    pub availability: f64,
    pub category: String,
    pub comment: String,
    pub completed: i64,
    pub completion_on: i64,
    pub content_path: String,
    pub dl_limit: i64,
    pub dlspeed: i64,
    pub download_path: String,
    pub downloaded: i64,
    pub downloaded_session: i64,
    pub eta: i64,
    pub f_l_piece_prio: bool,
    pub force_start: bool,
    pub has_metadata: bool,
    pub hash: String,
    pub inactive_seeding_time_limit: i64,
    pub infohash_v1: String,
    pub infohash_v2: String,
    pub last_activity: i64,
    pub magnet_uri: String,
    pub max_inactive_seeding_time: i64,
    pub max_ratio: f64,
    pub max_seeding_time: i64,
    pub name: String,
    pub num_complete: i64,
    pub num_incomplete: i64,
    pub num_leechs: i64,
    pub num_seeds: i64,
    pub popularity: f64,
    pub priority: i64,
    pub private: bool,
    pub progress: f64,
    pub ratio: f64,
    pub ratio_limit: f64,
    pub reannounce: i64,
    pub root_path: String,
    pub save_path: String,
    pub seeding_time: i64,
    pub seeding_time_limit: i64,
    pub seen_complete: i64,
    pub seq_dl: bool,
    pub size: i64,
    pub state: &'static str,
    pub super_seeding: bool,
    pub tags: String,
    pub time_active: i64,
    pub total_size: i64,
    pub tracker: String,
    pub trackers_count: i64,
    pub up_limit: i64,
    pub uploaded: i64,
    pub uploaded_session: i64,
    pub upspeed: i64,
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// qBittorrent's state name for a job (WebAPI 2.11 words: `stoppedDL`, `stoppedUP`).
pub fn state(job: &Job) -> &'static str {
    let p = &job.progress;
    let complete = p.bytes_total > 0 && p.bytes_done >= p.bytes_total;
    match job.status {
        JobStatus::Queued => "queuedDL",
        JobStatus::Resolving => "metaDL",
        JobStatus::Downloading if p.download_rate > 0 => "downloading",
        JobStatus::Downloading => "stalledDL",
        JobStatus::Paused if complete => "stoppedUP",
        JobStatus::Paused => "stoppedDL",
        // Delivering to the destination: qBittorrent's word for files on the move.
        JobStatus::Uploading => "moving",
        JobStatus::Seeding if p.upload_rate > 0 => "uploading",
        JobStatus::Seeding => "stalledUP",
        JobStatus::Completed => "stoppedUP",
        // Stopped before its delivery finished: nothing to import.
        JobStatus::Cancelled => "stoppedDL",
        JobStatus::Failed => "error",
    }
}

fn magnet(hash: InfoHash, name: &str, trackers: &[String]) -> String {
    let mut uri = format!("magnet:?xt=urn:btih:{}", hash.to_hex());
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("dn", name);
    for tracker in trackers {
        query.append_pair("tr", tracker);
    }
    uri.push('&');
    uri.push_str(&query.finish());
    uri
}

fn trackers_of(job: &Job) -> Vec<String> {
    job.metadata
        .as_ref()
        .map(|m| m.trackers.clone())
        .or_else(|| match &job.source {
            ferry_domain::JobSource::Magnet(m) => {
                Some(m.trackers().iter().map(ToString::to_string).collect())
            }
            _ => None,
        })
        .unwrap_or_default()
}

fn unix(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

impl TorrentInfo {
    pub fn of(
        job: &Job,
        hash: InfoHash,
        labels: &JobLabels,
        place: &Place,
        folders: &HashMap<ProfileId, String>,
        now: DateTime<Utc>,
    ) -> Self {
        let p = &job.progress;
        let total = job
            .metadata
            .as_ref()
            .map_or(p.bytes_total, |m| m.selected_bytes().max(p.bytes_total));
        let done = if matches!(
            job.status,
            JobStatus::Completed | JobStatus::Seeding | JobStatus::Uploading
        ) {
            total
        } else {
            p.bytes_done.min(total)
        };
        let progress = if total == 0 {
            0.0
        } else {
            done as f64 / total as f64
        };
        let finished = job.finished_at.filter(|_| done >= total && total > 0);
        let ratio = if done == 0 {
            0.0
        } else {
            p.uploaded_bytes as f64 / done as f64
        };
        let seeding_time = seeding_secs(job, now);
        let trackers = trackers_of(job);
        let job_dir = place.job_dir(job, folders);
        let root = job
            .metadata
            .as_ref()
            .and_then(|m| m.files.first())
            .and_then(|f| f.path.split('/').next().map(str::to_owned))
            .unwrap_or_else(|| job.name.clone());
        let multi = job.metadata.as_ref().is_some_and(|m| {
            m.files.len() > 1 || m.files.first().is_some_and(|f| f.path.contains('/'))
        });
        let save_path = job_dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let content_path = job_dir
            .as_ref()
            .map(|d| d.join(&root).display().to_string())
            .unwrap_or_default();
        let seed = job.seed;
        Self {
            added_on: unix(job.created_at),
            amount_left: int(total.saturating_sub(done)),
            auto_tmm: false,
            availability: if job.status == JobStatus::Downloading && p.peers > 0 {
                1.0
            } else {
                -1.0
            },
            category: labels.category.clone().unwrap_or_default(),
            comment: String::new(),
            completed: int(done),
            completion_on: finished.map_or(-1, unix),
            content_path: content_path.clone(),
            dl_limit: job
                .speed_limits
                .download_bps
                .map_or(-1, |b| i64::from(b.get())),
            dlspeed: int(p.download_rate),
            download_path: String::new(),
            downloaded: int(done),
            downloaded_session: int(done),
            // As qBittorrent: the time to the end of the download, else "unknown" (a
            // finished or seeding torrent included).
            eta: match job.status {
                JobStatus::Downloading => p.eta_seconds.map_or(ETA_UNKNOWN, int),
                _ => ETA_UNKNOWN,
            },
            f_l_piece_prio: false,
            force_start: false,
            has_metadata: job.metadata.is_some(),
            hash: hash.to_hex(),
            inactive_seeding_time_limit: seed.and_then(|s| s.idle_secs).map_or(-2, |s| int(s / 60)),
            infohash_v1: hash.to_hex(),
            infohash_v2: String::new(),
            last_activity: unix(job.updated_at),
            magnet_uri: magnet(hash, &job.name, &trackers),
            max_inactive_seeding_time: seed.and_then(|s| s.idle_secs).map_or(-1, |s| int(s / 60)),
            max_ratio: seed.and_then(|s| s.ratio).unwrap_or(-1.0),
            max_seeding_time: seed.and_then(|s| s.time_secs).map_or(-1, |s| int(s / 60)),
            name: job.name.clone(),
            num_complete: 0,
            num_incomplete: 0,
            num_leechs: if job.status == JobStatus::Seeding {
                i64::from(p.peers)
            } else {
                0
            },
            num_seeds: if job.status == JobStatus::Downloading {
                i64::from(p.peers)
            } else {
                0
            },
            popularity: 0.0,
            priority: 0,
            private: job.metadata.as_ref().is_some_and(|m| m.private),
            progress,
            ratio,
            ratio_limit: seed.map_or(-2.0, |s| s.ratio.unwrap_or(-1.0)),
            reannounce: 0,
            root_path: if multi {
                content_path.clone()
            } else {
                String::new()
            },
            save_path,
            seeding_time,
            seeding_time_limit: seed.map_or(-2, |s| s.time_secs.map_or(-1, |t| int(t / 60))),
            seen_complete: finished.map_or(-1, unix),
            seq_dl: false,
            size: int(total),
            state: state(job),
            super_seeding: false,
            tags: labels.tags.join(", "),
            time_active: (now - job.created_at).num_seconds().max(0),
            total_size: int(job
                .metadata
                .as_ref()
                .map_or(p.bytes_total, |m| m.total_bytes)),
            tracker: trackers.first().cloned().unwrap_or_default(),
            trackers_count: i64::try_from(trackers.len()).unwrap_or(0),
            up_limit: job
                .speed_limits
                .upload_bps
                .map_or(-1, |b| i64::from(b.get())),
            uploaded: int(p.uploaded_bytes),
            uploaded_session: int(p.uploaded_bytes),
            upspeed: int(p.upload_rate),
        }
    }
}

/// Seconds the job has seeded: since its move to `seeding` while it seeds (a job from
/// before that was recorded: since its last status change, which was that move), until
/// its seeding ended once it has.
fn seeding_secs(job: &Job, now: DateTime<Utc>) -> i64 {
    let end = match job.status {
        JobStatus::Seeding => now,
        _ => match (job.seeding_started_at, job.finished_at) {
            (Some(_), Some(end)) => end,
            _ => return 0,
        },
    };
    let start = job.seeding_started_at.unwrap_or(job.updated_at);
    (end - start).num_seconds().max(0)
}

/// The statuses a job must be in to match `filter` (a superset: the exact test is
/// [`matches_filter`] on the job as listed), or `None` when any status may.
pub fn statuses_for(filter: &str) -> Option<Vec<JobStatus>> {
    use JobStatus as S;
    Some(match filter {
        "all" | "" | "completed" | "active" | "inactive" => return None,
        "downloading" => vec![
            S::Queued,
            S::Resolving,
            S::Downloading,
            S::Paused,
            S::Cancelled,
        ],
        "seeding" | "stalled_uploading" => vec![S::Seeding],
        "paused" | "stopped" => vec![S::Paused, S::Completed, S::Cancelled],
        "resumed" | "running" => vec![
            S::Queued,
            S::Resolving,
            S::Downloading,
            S::Uploading,
            S::Seeding,
        ],
        "stalled" => vec![S::Downloading, S::Seeding],
        "stalled_downloading" => vec![S::Downloading],
        "moving" => vec![S::Uploading],
        "errored" => vec![S::Failed],
        // `checking` and unknown filters match nothing.
        _ => Vec::new(),
    })
}

/// qBittorrent's `filter` values, both vocabularies (`paused`/`stopped`,
/// `resumed`/`running`).
pub fn matches_filter(t: &TorrentInfo, filter: &str) -> bool {
    let s = t.state;
    let downloading = matches!(
        s,
        "downloading" | "stalledDL" | "metaDL" | "queuedDL" | "forcedDL"
    );
    let seeding = matches!(s, "uploading" | "stalledUP" | "queuedUP" | "forcedUP");
    let stopped = matches!(s, "stoppedDL" | "stoppedUP");
    match filter {
        "all" | "" => true,
        "downloading" => downloading || s == "stoppedDL",
        "seeding" => seeding,
        "completed" => t.progress >= 1.0,
        "paused" | "stopped" => stopped,
        "resumed" | "running" => !stopped && s != "error",
        "active" => t.dlspeed > 0 || t.upspeed > 0,
        "inactive" => t.dlspeed == 0 && t.upspeed == 0,
        "stalled" => matches!(s, "stalledDL" | "stalledUP"),
        "stalled_uploading" => s == "stalledUP",
        "stalled_downloading" => s == "stalledDL",
        "checking" => s.starts_with("checking"),
        "moving" => s == "moving",
        "errored" => s == "error" || s == "missingFiles",
        _ => false,
    }
}

/// Sorts by one of the fields (unknown keys keep the order).
pub fn sort(torrents: &mut [TorrentInfo], key: &str) {
    let Ok(serde_json::Value::Array(values)) = serde_json::to_value(&*torrents) else {
        return;
    };
    let mut keyed: Vec<(serde_json::Value, TorrentInfo)> = values
        .into_iter()
        .map(|v| v.get(key).cloned().unwrap_or(serde_json::Value::Null))
        .zip(torrents.iter().cloned())
        .collect();
    keyed.sort_by(|(a, _), (b, _)| compare(a, b));
    for (slot, (_, t)) in torrents.iter_mut().zip(keyed) {
        *slot = t;
    }
}

fn compare(a: &serde_json::Value, b: &serde_json::Value) -> std::cmp::Ordering {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    }
}

/// `torrents/properties`.
pub fn properties(job: &Job, t: &TorrentInfo) -> serde_json::Value {
    let piece = job
        .metadata
        .as_ref()
        .map_or(-1, |m| i64::from(m.piece_length));
    let pieces = job.metadata.as_ref().map_or(-1, |m| {
        let len = u64::from(m.piece_length.max(1));
        int(m.total_bytes.div_ceil(len))
    });
    serde_json::json!({
        "addition_date": t.added_on,
        "comment": "",
        "completion_date": t.completion_on,
        "created_by": "",
        "creation_date": -1,
        "dl_limit": -1,
        "dl_speed": t.dlspeed,
        "dl_speed_avg": t.dlspeed,
        "download_path": "",
        "eta": t.eta,
        "hash": t.hash,
        "infohash_v1": t.infohash_v1,
        "infohash_v2": "",
        "is_private": t.private,
        "last_seen": t.seen_complete,
        "name": t.name,
        "nb_connections": t.num_seeds + t.num_leechs,
        "nb_connections_limit": -1,
        "peers": t.num_leechs,
        "peers_total": t.num_leechs,
        "piece_size": piece,
        "pieces_have": if t.progress >= 1.0 { pieces } else { 0 },
        "pieces_num": pieces,
        "reannounce": 0,
        "save_path": t.save_path,
        "seeding_time": t.seeding_time,
        "seeds": t.num_seeds,
        "seeds_total": t.num_seeds,
        "share_ratio": t.ratio,
        "time_elapsed": t.time_active,
        "total_downloaded": t.downloaded,
        "total_downloaded_session": t.downloaded_session,
        "total_size": t.total_size,
        "total_uploaded": t.uploaded,
        "total_uploaded_session": t.uploaded_session,
        "total_wasted": 0,
        "up_limit": -1,
        "up_speed": t.upspeed,
        "up_speed_avg": t.upspeed,
    })
}

/// `torrents/files`.
pub fn files(job: &Job) -> Vec<serde_json::Value> {
    let Some(meta) = &job.metadata else {
        return Vec::new();
    };
    let finished = matches!(
        job.status,
        JobStatus::Completed | JobStatus::Seeding | JobStatus::Uploading
    );
    let fraction = if finished {
        1.0
    } else {
        job.progress.fraction()
    };
    meta.files
        .iter()
        .map(|f| {
            serde_json::json!({
                "index": f.index,
                "name": f.path,
                "size": f.size,
                "progress": if f.selected { fraction } else { 0.0 },
                "priority": if f.selected { 1 } else { 0 },
                "is_seed": finished && f.selected,
                "piece_range": [0, 0],
                "availability": if finished { 1.0 } else { -1.0 },
            })
        })
        .collect()
}

/// `torrents/trackers`: the three pseudo-entries qBittorrent lists first (`0`, disabled:
/// Ferry's DHT, PeX and LSD are not reported per torrent), then the trackers: `2`
/// (working) once the torrent has peers or is past its download, `1` (not contacted yet)
/// before. Ferry does not keep each tracker's own answer.
pub fn trackers(job: &Job) -> Vec<serde_json::Value> {
    let peers = i64::from(job.progress.peers);
    let working = peers > 0
        || matches!(
            job.status,
            JobStatus::Uploading | JobStatus::Completed | JobStatus::Seeding
        );
    let mut list: Vec<serde_json::Value> = ["** [DHT] **", "** [PeX] **", "** [LSD] **"]
        .iter()
        .map(|url| {
            serde_json::json!({
                "url": url, "status": 0, "tier": -1, "num_peers": 0,
                "num_seeds": 0, "num_leeches": 0, "num_downloaded": 0, "msg": "",
            })
        })
        .collect();
    for (tier, url) in trackers_of(job).iter().enumerate() {
        list.push(serde_json::json!({
            "url": url,
            "status": if working { 2 } else { 1 },
            "tier": tier,
            "num_peers": peers,
            "num_seeds": -1,
            "num_leeches": -1,
            "num_downloaded": -1,
            "msg": "",
        }));
    }
    list
}

/// `transfer/info`: the owner's rates and amounts, all jobs together.
pub fn transfer_info<'a>(jobs: impl Iterator<Item = &'a Job>) -> serde_json::Value {
    let (mut down, mut up, mut down_total, mut up_total) = (0u64, 0u64, 0u64, 0u64);
    for job in jobs {
        down = down.saturating_add(job.progress.download_rate);
        up = up.saturating_add(job.progress.upload_rate);
        down_total = down_total.saturating_add(job.progress.bytes_done);
        up_total = up_total.saturating_add(job.progress.uploaded_bytes);
    }
    serde_json::json!({
        "connection_status": "connected",
        "dht_nodes": 0,
        "dl_info_data": down_total,
        "dl_info_speed": down,
        "dl_rate_limit": 0,
        "up_info_data": up_total,
        "up_info_speed": up,
        "up_rate_limit": 0,
    })
}

/// `app/buildInfo`.
pub fn build_info() -> serde_json::Value {
    serde_json::json!({
        "app": format!("ferry {}", env!("CARGO_PKG_VERSION")),
        "bitness": 64,
        "boost": "",
        "libtorrent": "",
        "openssl": "",
        "qt": "",
        "zlib": "",
    })
}

/// `app/preferences`: what the clients read (the save path, share limits, queueing, DHT),
/// from the server's settings.
pub fn preferences(state: &ApiState, save_path: &str) -> serde_json::Value {
    let limits = state.seed_limits;
    serde_json::json!({
        "save_path": save_path,
        "temp_path_enabled": false,
        "temp_path": "",
        "max_ratio_enabled": limits.ratio.is_some(),
        "max_ratio": limits.ratio.unwrap_or(-1.0),
        "max_seeding_time_enabled": limits.time_secs.is_some(),
        "max_seeding_time": limits.time_secs.map_or(-1, |s| int(s / 60)),
        "max_inactive_seeding_time_enabled": limits.idle_secs.is_some(),
        "max_inactive_seeding_time": limits.idle_secs.map_or(-1, |s| int(s / 60)),
        // 0, "pause": at a limit Ferry stops seeding and keeps the torrent and its files.
        "max_ratio_act": 0,
        "queueing_enabled": false,
        "dht": state.network.dht,
        "auto_tmm_enabled": false,
        "torrent_content_layout": "Original",
        "start_paused_enabled": false,
        "web_ui_username": "",
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ferry_domain::{FileSelection, MagnetLink, OwnerId, Progress};

    use super::*;

    fn job(status: JobStatus, progress: Progress) -> Job {
        let magnet =
            MagnetLink::parse(&format!("magnet:?xt=urn:btih:{}", "ab".repeat(20))).unwrap();
        let mut job = Job::from_magnet(
            OwnerId::parse("alice").unwrap(),
            magnet,
            FileSelection::All,
            DateTime::<Utc>::UNIX_EPOCH,
        );
        job.status = status;
        job.progress = progress;
        job
    }

    fn info(job: &Job, now: DateTime<Utc>) -> TorrentInfo {
        let place = Place {
            local_root: None,
            area: None,
        };
        TorrentInfo::of(
            job,
            job.info_hash.unwrap(),
            &JobLabels::default(),
            &place,
            &HashMap::new(),
            now,
        )
    }

    /// The database is asked only for the statuses a filter can match: every job that
    /// matches a filter is in one of them, whatever its progress.
    #[test]
    fn a_filters_statuses_hold_every_job_it_matches() {
        let filters = [
            "all",
            "",
            "downloading",
            "seeding",
            "completed",
            "paused",
            "stopped",
            "resumed",
            "running",
            "active",
            "inactive",
            "stalled",
            "stalled_uploading",
            "stalled_downloading",
            "checking",
            "moving",
            "errored",
            "nonsense",
        ];
        let progresses = [
            Progress::default(),
            Progress::measured(5, 10, 3),
            Progress::measured(10, 10, 0),
            Progress {
                upload_rate: 7,
                ..Progress::measured(10, 10, 0)
            },
        ];
        let now = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::hours(1);
        for status in JobStatus::ALL {
            for progress in &progresses {
                let t = info(&job(status, *progress), now);
                for filter in filters {
                    if matches_filter(&t, filter)
                        && let Some(statuses) = statuses_for(filter)
                    {
                        assert!(
                            statuses.contains(&status),
                            "{filter}: {status} ({}) left out",
                            t.state
                        );
                    }
                }
            }
        }
    }

    /// A torrent that seeded reports how long it did, while seeding and once it stopped.
    #[test]
    fn seeding_time_is_the_time_spent_seeding() {
        let at = |secs: i64| DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(secs);
        let mut seeding = job(JobStatus::Seeding, Progress::measured(10, 10, 0));
        seeding.seeding_started_at = Some(at(100));
        seeding.updated_at = at(100);
        assert_eq!(info(&seeding, at(130)).seeding_time, 30);
        let mut done = seeding.clone();
        done.status = JobStatus::Completed;
        done.finished_at = Some(at(190));
        done.updated_at = at(190);
        assert_eq!(info(&done, at(5_000)).seeding_time, 90);
        // Completed without seeding: none.
        let mut never = job(JobStatus::Completed, Progress::measured(10, 10, 0));
        never.finished_at = Some(at(50));
        assert_eq!(info(&never, at(5_000)).seeding_time, 0);
        // Seeding since before the start was recorded: since its move to seeding.
        let mut old = seeding.clone();
        old.seeding_started_at = None;
        assert_eq!(info(&old, at(160)).seeding_time, 60);
    }
}
