//! What the API speaks: request and response bodies, converted at the edge.

use chrono::{DateTime, Utc};
use ferry_application::ports::{EventKind, PublishedEvent};
use ferry_domain::{Job, JobFile, JobSource, Progress, TorrentMetadata};
use poem_openapi::types::{Example, MaybeUndefined};
use poem_openapi::{Enum, Object, Union};
use uuid::Uuid;

// Response objects leave out what they do not have (`skip_serializing_if_is_none`): the
// document declares such fields optional, not nullable, so an absent field is exactly what
// it promises.

/// What to download: a magnet link or an HTTP(S) URL.
#[derive(Debug, Union)]
#[oai(one_of)]
pub enum SourceRequest {
    Magnet(MagnetSource),
    Url(UrlSource),
}

#[derive(Debug, Object)]
pub struct MagnetSource {
    /// A `magnet:?xt=urn:btih:…` link (its trackers and peers are checked too).
    pub magnet: String,
}

#[derive(Debug, Object)]
pub struct UrlSource {
    /// An `http://` or `https://` URL, fetched through the server's proxy.
    pub url: String,
}

#[derive(Debug, Object)]
#[oai(example)]
pub struct SubmitRequest {
    pub source: SourceRequest,
    /// Indices of the files to download (see `files` of the job or of `/torrents/analyze`);
    /// all files when absent.
    #[oai(validator(min_items = 1, minimum(value = "0"), maximum(value = "4294967295")))]
    pub files: Option<Vec<u32>>,
    /// Deliver to this storage profile; `null`: this server's own storage; absent: the
    /// caller's default (`/me/default-storage-profile`, itself the server's storage unless
    /// chosen).
    #[oai(nullable)]
    pub storage_profile: MaybeUndefined<Uuid>,
    /// Seed the finished job (absent: the server's default).
    pub seed: Option<bool>,
    /// Stop seeding at this upload ratio (default: the server's).
    #[oai(validator(minimum(value = "0")))]
    pub seed_ratio: Option<f64>,
    /// Stop seeding after this many seconds (at most about a hundred years).
    #[oai(validator(minimum(value = "0"), maximum(value = "3155760000")))]
    pub seed_time_secs: Option<u64>,
    /// Stop seeding after this many seconds without uploading.
    #[oai(validator(minimum(value = "0"), maximum(value = "3155760000")))]
    pub seed_idle_secs: Option<u64>,
    /// This job's download speed limit in bytes per second (at least 16384; absent: none
    /// of its own), for a torrent (a URL is fetched at full speed). The server's global
    /// limits apply too.
    #[oai(validator(minimum(value = "16384"), maximum(value = "4294967295")))]
    pub download_limit: Option<u64>,
    /// This job's upload speed limit in bytes per second, while it downloads and seeds.
    #[oai(validator(minimum(value = "16384"), maximum(value = "4294967295")))]
    pub upload_limit: Option<u64>,
}

/// A job's own speed limits in bytes per second; an absent or `null` one: no limit of the
/// job's own (the server's global limits still apply). A URL job takes `upload_limit` only.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct SpeedLimitsRequest {
    #[oai(validator(minimum(value = "16384"), maximum(value = "4294967295")))]
    pub download_limit: Option<u64>,
    #[oai(validator(minimum(value = "16384"), maximum(value = "4294967295")))]
    pub upload_limit: Option<u64>,
}

impl Example for SubmitRequest {
    fn example() -> Self {
        Self {
            source: SourceRequest::Magnet(MagnetSource {
                magnet: "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&dn=example"
                    .to_owned(),
            }),
            files: None,
            storage_profile: MaybeUndefined::Undefined,
            seed: None,
            seed_ratio: None,
            seed_time_secs: None,
            seed_idle_secs: None,
            download_limit: None,
            upload_limit: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum StatusDto {
    Queued,
    Resolving,
    Downloading,
    Paused,
    Uploading,
    Completed,
    Seeding,
    Cancelled,
    Failed,
}

impl From<ferry_domain::JobStatus> for StatusDto {
    fn from(s: ferry_domain::JobStatus) -> Self {
        use ferry_domain::JobStatus as S;
        match s {
            S::Queued => Self::Queued,
            S::Resolving => Self::Resolving,
            S::Downloading => Self::Downloading,
            S::Paused => Self::Paused,
            S::Uploading => Self::Uploading,
            S::Completed => Self::Completed,
            S::Seeding => Self::Seeding,
            S::Cancelled => Self::Cancelled,
            S::Failed => Self::Failed,
        }
    }
}

impl From<StatusDto> for ferry_domain::JobStatus {
    fn from(s: StatusDto) -> Self {
        use ferry_domain::JobStatus as S;
        match s {
            StatusDto::Queued => S::Queued,
            StatusDto::Resolving => S::Resolving,
            StatusDto::Downloading => S::Downloading,
            StatusDto::Paused => S::Paused,
            StatusDto::Uploading => S::Uploading,
            StatusDto::Completed => S::Completed,
            StatusDto::Seeding => S::Seeding,
            StatusDto::Cancelled => S::Cancelled,
            StatusDto::Failed => S::Failed,
        }
    }
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ProgressDto {
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// 0–100.
    pub percent: f64,
    /// Bytes per second.
    pub download_rate: u64,
    pub upload_rate: u64,
    pub uploaded_bytes: u64,
    pub peers: u32,
    pub eta_seconds: Option<u64>,
    /// Uploaded bytes / content bytes (while and after seeding).
    pub ratio: f64,
}

impl ProgressDto {
    /// The progress of a job in `status`.
    fn of(p: &Progress, status: ferry_domain::JobStatus) -> Self {
        Self {
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
            percent: (p.fraction_in(status) * 10_000.0).round() / 100.0,
            download_rate: p.download_rate,
            upload_rate: p.upload_rate,
            uploaded_bytes: p.uploaded_bytes,
            peers: p.peers,
            eta_seconds: p.eta_seconds,
            ratio: if p.bytes_total == 0 {
                0.0
            } else {
                (p.uploaded_bytes as f64 / p.bytes_total as f64 * 1000.0).round() / 1000.0
            },
        }
    }
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct JobErrorDto {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SourceDto {
    /// `magnet`, `torrent` or `url`.
    pub kind: String,
    /// The magnet link or URL (absent for an uploaded .torrent).
    pub uri: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct JobDto {
    pub id: Uuid,
    pub name: String,
    pub status: StatusDto,
    pub source: SourceDto,
    pub info_hash: Option<String>,
    /// The storage profile the files are delivered to (absent: the server's storage).
    pub storage_profile: Option<Uuid>,
    /// SHA-256 of a fetched URL's content.
    pub content_sha256: Option<String>,
    /// The seeding policy, when the job seeds.
    pub seed: Option<SeedDto>,
    pub progress: ProgressDto,
    /// Files chosen at submission; absent means all.
    pub selected_files: Option<Vec<u32>>,
    /// Number of files, once the torrent's metadata is known.
    pub file_count: Option<u32>,
    pub error: Option<JobErrorDto>,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `DELETE …?purge=true` was accepted: the job and its files are being deleted, and the
    /// job answers 404 once that is done.
    pub purge_pending: bool,
    /// The job's own download speed limit, bytes per second (absent: none).
    pub download_limit: Option<u64>,
    /// The job's own upload speed limit, bytes per second (absent: none).
    pub upload_limit: Option<u64>,
    /// A queued job's place in the queue: 1 starts next, when a worker has a free slot
    /// (`workers.downloads` torrents, `workers.fetches` URLs at once per worker). Jobs of
    /// every user count; absent unless queued.
    pub queue_position: Option<u32>,
}

impl JobDto {
    /// The job's view with its place in the queue, if queued (`positions` from
    /// `Jobs::queue_positions`).
    pub fn placed(
        job: &Job,
        positions: &std::collections::HashMap<ferry_domain::JobId, u32>,
    ) -> Self {
        Self {
            queue_position: positions.get(&job.id).copied(),
            ..job.into()
        }
    }
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<&Job> for JobDto {
    fn from(job: &Job) -> Self {
        let uri = match &job.source {
            JobSource::Magnet(m) => Some(m.to_string()),
            JobSource::Url(u) => Some(u.to_string()),
            JobSource::Torrent(_) => None,
        };
        Self {
            id: job.id.as_uuid(),
            name: job.name.clone(),
            status: job.status.into(),
            source: SourceDto {
                kind: job.source.kind().to_owned(),
                uri,
            },
            info_hash: job.info_hash.map(|h| h.to_hex()),
            storage_profile: job.storage_profile.map(|p| p.as_uuid()),
            content_sha256: job.content_sha256.clone(),
            seed: job.seed.map(|s| SeedDto {
                ratio: s.ratio,
                time_secs: s.time_secs,
                idle_secs: s.idle_secs,
            }),
            progress: ProgressDto::of(&job.progress, job.status),
            selected_files: job
                .selection
                .indices()
                .map(|v| v.into_iter().map(u32_of).collect()),
            file_count: job.metadata.as_ref().map(|m| u32_of(m.files.len())),
            error: job.error.as_ref().map(|e| JobErrorDto {
                code: e.code.clone(),
                message: e.message.clone(),
            }),
            attempts: job.attempts,
            created_at: job.created_at,
            updated_at: job.updated_at,
            finished_at: job.finished_at,
            purge_pending: job.purge_requested,
            download_limit: job.speed_limits.download_bps.map(|b| u64::from(b.get())),
            upload_limit: job.speed_limits.upload_bps.map(|b| u64::from(b.get())),
            queue_position: None,
        }
    }
}

/// When seeding stops: the first limit reached (none: never, until deleted).
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SeedDto {
    pub ratio: Option<f64>,
    pub time_secs: Option<u64>,
    pub idle_secs: Option<u64>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct MagnetDto {
    pub magnet: String,
    pub info_hash: String,
}

/// A short-lived link to one finished file: fetching `url` needs no cookie or token.
#[derive(Debug, Object)]
pub struct FileLinkDto {
    /// `GET` it to download the file (`Range` supported); it works until `expires_at`, and
    /// stops working if the job is deleted or its owner disabled.
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct JobPage {
    pub items: Vec<JobDto>,
    /// Pass as `before` to get the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct FileDto {
    /// The file's index in the torrent (use it in `files` selections and download URLs).
    pub index: u32,
    pub path: String,
    pub size: u64,
    pub selected: bool,
    /// Hex SHA-256, once delivered.
    pub sha256: Option<String>,
    /// Where to download the file once the job is completed.
    pub download_url: Option<String>,
}

impl FileDto {
    pub fn of(file: &JobFile, job_id: Uuid, finished: bool) -> Self {
        Self {
            index: u32_of(file.index),
            path: file.path.clone(),
            size: file.size,
            selected: file.selected,
            sha256: file.sha256.clone(),
            download_url: (finished && file.selected)
                .then(|| format!("/api/v1/jobs/{job_id}/files/{}", file.index)),
        }
    }
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TorrentAnalysis {
    pub name: String,
    pub info_hash: String,
    pub total_bytes: u64,
    pub piece_length: u32,
    pub private: bool,
    pub trackers: Vec<String>,
    pub files: Vec<FileDto>,
}

impl From<&TorrentMetadata> for TorrentAnalysis {
    fn from(m: &TorrentMetadata) -> Self {
        Self {
            name: m.name.clone(),
            info_hash: m.info_hash.to_hex(),
            total_bytes: m.total_bytes,
            piece_length: m.piece_length,
            private: m.private,
            trackers: m.trackers.clone(),
            files: m
                .files
                .iter()
                .map(|f| FileDto {
                    index: u32_of(f.index),
                    path: f.path.clone(),
                    size: f.size,
                    selected: true,
                    sha256: None,
                    download_url: None,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum EventType {
    /// The job's state when the stream (re)starts; carries no event id.
    Snapshot,
    Status,
    Progress,
}

/// One Server-Sent Event. The SSE `event:` field is `type`, and `id:` is `id`.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct JobEventDto {
    /// The event id to send back as `Last-Event-ID` (absent on snapshots).
    pub id: Option<String>,
    #[oai(rename = "type")]
    pub kind: EventType,
    pub job_id: Uuid,
    pub status: StatusDto,
    pub progress: ProgressDto,
    pub error: Option<JobErrorDto>,
    pub at: DateTime<Utc>,
}

impl JobEventDto {
    pub fn snapshot(job: &Job) -> Self {
        Self {
            id: None,
            kind: EventType::Snapshot,
            job_id: job.id.as_uuid(),
            status: job.status.into(),
            progress: ProgressDto::of(&job.progress, job.status),
            error: job.error.as_ref().map(|e| JobErrorDto {
                code: e.code.clone(),
                message: e.message.clone(),
            }),
            at: job.updated_at,
        }
    }
}

impl From<PublishedEvent> for JobEventDto {
    fn from(p: PublishedEvent) -> Self {
        let e = p.event;
        Self {
            id: Some(p.id.0),
            kind: match e.kind {
                EventKind::Status => EventType::Status,
                EventKind::Progress => EventType::Progress,
            },
            job_id: e.job_id.as_uuid(),
            status: e.status.into(),
            progress: ProgressDto::of(&e.progress, e.status),
            error: e.error.map(|e| JobErrorDto {
                code: e.code,
                message: e.message,
            }),
            at: e.at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum FeedEventType {
    /// The feed is open (the first event): reload what you show, then apply what follows.
    Ready,
    Status,
    Progress,
}

/// One Server-Sent Event of the jobs feed (`GET /jobs/events`). The SSE `event:` field is
/// `type`.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct FeedEventDto {
    #[oai(rename = "type")]
    pub kind: FeedEventType,
    /// The job the event is about (absent on `ready`).
    pub job_id: Option<Uuid>,
    pub status: Option<StatusDto>,
    pub progress: Option<ProgressDto>,
    pub error: Option<JobErrorDto>,
    pub at: DateTime<Utc>,
}

impl FeedEventDto {
    pub fn ready(at: DateTime<Utc>) -> Self {
        Self {
            kind: FeedEventType::Ready,
            job_id: None,
            status: None,
            progress: None,
            error: None,
            at,
        }
    }
}

impl From<PublishedEvent> for FeedEventDto {
    fn from(p: PublishedEvent) -> Self {
        let e = JobEventDto::from(p);
        Self {
            kind: match e.kind {
                EventType::Progress => FeedEventType::Progress,
                EventType::Status | EventType::Snapshot => FeedEventType::Status,
            },
            job_id: Some(e.job_id),
            status: Some(e.status),
            progress: Some(e.progress),
            error: e.error,
            at: e.at,
        }
    }
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ComponentDto {
    pub name: String,
    pub ok: bool,
    /// What a failing component reported (only with a valid token).
    pub detail: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct HealthDto {
    /// `ok` or `degraded`.
    pub status: String,
    pub components: Vec<ComponentDto>,
    /// Messages waiting per stage (admins only; absent when the queue does not answer).
    pub queues: Option<Vec<QueueDto>>,
    /// The worker processes the queue has seen, most recently seen first (admins only;
    /// empty when one process runs every stage, as `ferry serve` does).
    pub workers: Option<Vec<WorkerDto>>,
}

#[derive(Debug, Object)]
pub struct QueueDto {
    /// `download`, `upload`, `fetch` or `seed`.
    pub stage: String,
    pub waiting: u64,
}

#[derive(Debug, Object)]
pub struct WorkerDto {
    /// The name it claims work under (`hostname-pid`).
    pub name: String,
    /// The stages it takes work from.
    pub stages: Vec<String>,
    /// Seconds since it last asked for work.
    pub idle_secs: u64,
    /// Jobs it holds now.
    pub pending: u64,
}

/// How the server's downloads reach the network.
#[derive(Debug, Object)]
pub struct NetworkDto {
    pub torrent: TorrentNetworkDto,
    pub fetch: FetchNetworkDto,
}

/// The BitTorrent engine's ways into the swarm.
#[derive(Debug, Object)]
pub struct TorrentNetworkDto {
    /// Peer connections and HTTP(S) tracker announces go through the operator's SOCKS5
    /// proxy; nothing connects around it.
    pub proxied: bool,
    /// A job fails with `proxy_unavailable` when the proxy is down.
    pub proxy_required: bool,
    /// The DHT (trackerless magnets). Off while proxied.
    pub dht: bool,
    /// Local service discovery. Off while proxied.
    pub lsd: bool,
    /// `udp://` trackers are announced to. Off while proxied: a magnet or torrent then
    /// needs an `http(s)://` tracker or `x.pe` peers.
    pub udp_trackers: bool,
    /// Peers can connect to the server (off while proxied unless the operator says so).
    pub incoming: bool,
    /// What the above means for a user, in a sentence.
    pub note: String,
}

/// URL jobs.
#[derive(Debug, Object)]
pub struct FetchNetworkDto {
    /// URL fetches go through the operator's proxy.
    pub proxied: bool,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct VersionDto {
    pub name: String,
    pub version: String,
}

/// A request field that is a JSON string and nothing else: poem-openapi's `String` also
/// takes numbers and booleans (`false` → `"false"`), which the document does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl poem_openapi::types::Type for Text {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> std::borrow::Cow<'static, str> {
        String::name()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        String::schema_ref()
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl poem_openapi::types::ParseFromJSON for Text {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        match value {
            Some(serde_json::Value::String(text)) => Ok(Self(text)),
            other => Err(poem_openapi::types::ParseError::expected_type(
                other.unwrap_or_default(),
            )),
        }
    }
}

impl poem_openapi::types::ToJSON for Text {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}
