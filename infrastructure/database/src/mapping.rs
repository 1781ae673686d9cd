//! Conversions between domain jobs and rows. A row that does not map back to a valid job
//! is reported as corrupt rather than papered over.

use anyhow::{Context, anyhow};
use ferry_domain::{
    FileSelection, InfoHash, Job, JobError, JobFile, JobId, JobSource, JobStatus, MagnetLink,
    OwnerId, Progress, TorrentFile, TorrentMetadata,
};
use sea_orm::ActiveValue::{NotSet, Set};

use crate::entity;

/// The metadata columns minus the metainfo bytes, which get a column of their own.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredMetadata {
    info_hash: InfoHash,
    name: String,
    files: Vec<JobFile>,
    total_bytes: u64,
    piece_length: u32,
    trackers: Vec<String>,
    private: bool,
}

pub fn to_active(job: &Job) -> anyhow::Result<entity::ActiveModel> {
    let (source, metainfo) = match &job.source {
        JobSource::Magnet(m) => (
            Some(m.to_string()),
            job.metadata.as_ref().map(|m| m.metainfo.clone()),
        ),
        JobSource::Torrent(t) => (None, Some(t.0.clone())),
        JobSource::Url(u) => (Some(u.to_string()), None),
    };
    Ok(entity::ActiveModel {
        id: Set(job.id.as_uuid()),
        owner: Set(job.owner.as_str().to_owned()),
        source_kind: Set(job.source.kind().to_owned()),
        source: Set(source),
        metainfo: Set(metainfo),
        status: Set(job.status.as_str().to_owned()),
        name: Set(job.name.clone()),
        info_hash: Set(job.info_hash.map(|h| h.to_hex())),
        selection: Set(selection_json(&job.selection)?),
        storage_profile: Set(job.storage_profile.map(|p| p.as_uuid())),
        seed: Set(job.seed.as_ref().map(serde_json::to_string).transpose()?),
        content_sha256: Set(job.content_sha256.clone()),
        metadata: Set(job.metadata.as_ref().map(metadata_json).transpose()?),
        progress: Set(serde_json::to_string(&job.progress)?),
        error_code: Set(job.error.as_ref().map(|e| e.code.clone())),
        error_message: Set(job.error.as_ref().map(|e| e.message.clone())),
        attempts: Set(i32::try_from(job.attempts).unwrap_or(i32::MAX)),
        created_at: Set(job.created_at),
        updated_at: Set(job.updated_at),
        finished_at: Set(job.finished_at),
        purge_requested: Set(job.purge_requested),
        // These are left out when absent, so a job can be stored in a schema from
        // before their columns (upgrade tests write one).
        seeding_started_at: job.seeding_started_at.map_or(NotSet, |t| Set(Some(t))),
        byte_limit: job
            .byte_limit
            .map_or(NotSet, |b| Set(Some(i64::try_from(b).unwrap_or(i64::MAX)))),
        download_limit: job
            .speed_limits
            .download_bps
            .map_or(NotSet, |b| Set(Some(i64::from(b.get())))),
        upload_limit: job
            .speed_limits
            .upload_bps
            .map_or(NotSet, |b| Set(Some(i64::from(b.get())))),
    })
}

fn selection_json(selection: &FileSelection) -> anyhow::Result<Option<String>> {
    Ok(selection
        .indices()
        .map(|v| serde_json::to_string(&v))
        .transpose()?)
}

pub fn metadata_json(meta: &TorrentMetadata) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&StoredMetadata {
        info_hash: meta.info_hash,
        name: meta.name.clone(),
        files: meta.files.clone(),
        total_bytes: meta.total_bytes,
        piece_length: meta.piece_length,
        trackers: meta.trackers.clone(),
        private: meta.private,
    })?)
}

pub fn from_row(row: entity::Model) -> anyhow::Result<Job> {
    let id = row.id;
    (|| {
        let status: JobStatus = row.status.parse()?;
        let source = match row.source_kind.as_str() {
            "magnet" => JobSource::Magnet(MagnetLink::parse(
                row.source.as_deref().unwrap_or_default(),
            )?),
            "torrent" => JobSource::Torrent(TorrentFile(
                row.metainfo
                    .clone()
                    .ok_or_else(|| anyhow!("torrent job without metainfo"))?,
            )),
            "url" => JobSource::Url(row.source.as_deref().unwrap_or_default().parse()?),
            other => return Err(anyhow!("unknown source kind {other:?}")),
        };
        let selection = match &row.selection {
            None => FileSelection::All,
            Some(text) => FileSelection::from_indices(Some(serde_json::from_str(text)?))?,
        };
        let metadata = match &row.metadata {
            None => None,
            Some(text) => {
                let m: StoredMetadata = serde_json::from_str(text)?;
                Some(TorrentMetadata {
                    info_hash: m.info_hash,
                    name: m.name,
                    files: m.files,
                    total_bytes: m.total_bytes,
                    piece_length: m.piece_length,
                    trackers: m.trackers,
                    private: m.private,
                    metainfo: row.metainfo.clone().unwrap_or_default(),
                })
            }
        };
        let error = match (row.error_code, row.error_message) {
            (Some(code), message) => Some(JobError::stored(code, message.unwrap_or_default())),
            _ => None,
        };
        let progress: Progress = serde_json::from_str(&row.progress)?;
        Ok(Job {
            id: JobId::from_uuid(row.id),
            owner: OwnerId::parse(&row.owner).ok_or_else(|| anyhow!("invalid owner"))?,
            source,
            status,
            name: row.name,
            info_hash: row.info_hash.as_deref().map(InfoHash::parse).transpose()?,
            selection,
            storage_profile: row.storage_profile.map(ferry_domain::ProfileId::from_uuid),
            seed: row.seed.as_deref().map(serde_json::from_str).transpose()?,
            content_sha256: row.content_sha256.clone(),
            metadata,
            progress,
            error,
            attempts: u32::try_from(row.attempts).unwrap_or(0),
            created_at: row.created_at,
            updated_at: row.updated_at,
            finished_at: row.finished_at,
            seeding_started_at: row.seeding_started_at,
            purge_requested: row.purge_requested,
            byte_limit: row.byte_limit.map(|b| u64::try_from(b).unwrap_or(0)),
            speed_limits: speed_limits(row.download_limit, row.upload_limit),
        })
    })()
    .with_context(|| format!("job row {id} is corrupt"))
}

/// The stored limits (written only through [`ferry_domain::SpeedLimits`], so in range; a
/// row changed by hand reads as no limit (zero or less), the least limit, or the most,
/// rather than failing the whole row or giving the engine a budget no block fits in).
pub fn speed_limits(download: Option<i64>, upload: Option<i64>) -> ferry_domain::SpeedLimits {
    let bps = |v: Option<i64>| {
        v.filter(|v| *v > 0)
            .map(|v| {
                u32::try_from(v)
                    .unwrap_or(u32::MAX)
                    .max(ferry_domain::SpeedLimits::MIN_BPS)
            })
            .and_then(std::num::NonZeroU32::new)
    };
    ferry_domain::SpeedLimits {
        download_bps: bps(download),
        upload_bps: bps(upload),
    }
}
