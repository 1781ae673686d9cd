//! The parts of the API's answers the client reads (see the server's OpenAPI document);
//! everything else is kept as the server sent it and shown as is with `--json`.

use ferry_domain::JobStatus;
use uuid::Uuid;

/// A job (`JobDto`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Job {
    pub id: Uuid,
    pub name: String,
    pub status: JobStatus,
    #[serde(default)]
    pub progress: Progress,
    pub error: Option<JobError>,
    #[serde(default)]
    pub purge_pending: bool,
}

/// A job's progress (`ProgressDto`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct Progress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub percent: f64,
    pub download_rate: u64,
    pub upload_rate: u64,
    pub peers: u32,
    pub eta_seconds: Option<u64>,
    pub ratio: f64,
}

/// Why a job failed (`JobErrorDto`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

/// A page of `GET /jobs`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct JobPage {
    pub items: Vec<serde_json::Value>,
    pub next_cursor: Option<Uuid>,
}

/// One of a job's files (`FileDto`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct JobFile {
    pub index: u32,
    pub path: String,
    pub size: u64,
    #[serde(default)]
    pub selected: bool,
    pub sha256: Option<String>,
    pub download_url: Option<String>,
}

/// An event of a job's stream (`JobEventDto`) or of the jobs feed (`FeedEventDto`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct JobEvent {
    pub job_id: Option<Uuid>,
    pub status: Option<JobStatus>,
    pub progress: Option<Progress>,
    pub error: Option<JobError>,
}

/// A storage profile (`ProfileDto`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Profile {
    pub id: Uuid,
    pub name: String,
}

/// A freshly made personal token (`CreatedTokenDto`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CreatedToken {
    pub token: String,
}

/// The caller (`MeDto`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Me {
    pub user: MeUser,
}

/// The caller's account (`UserDto`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct MeUser {
    pub id: String,
    pub display_name: String,
}

/// Whether a watched job has got as far as it will: its files are delivered (`completed`,
/// or already `seeding` them), or it stopped without them.
pub fn has_ended(status: JobStatus) -> bool {
    matches!(
        status,
        JobStatus::Completed | JobStatus::Seeding | JobStatus::Cancelled | JobStatus::Failed
    )
}

/// Whether a job that ended did so without its files.
pub fn ended_badly(status: JobStatus) -> bool {
    matches!(status, JobStatus::Cancelled | JobStatus::Failed)
}

/// The statuses of jobs that have not ended.
pub const UNFINISHED: [JobStatus; 5] = [
    JobStatus::Queued,
    JobStatus::Resolving,
    JobStatus::Downloading,
    JobStatus::Paused,
    JobStatus::Uploading,
];
