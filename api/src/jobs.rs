//! `/api/v1/jobs…` and `/api/v1/torrents/analyze`.

use std::sync::Arc;
use std::time::Duration;

use ferry_application::ports::{EventId, JobQuery, Replay};
use ferry_application::{Submission, SubmitOptions};
use ferry_domain::{ErrorCode, JobId, JobStatus};
use futures::stream::BoxStream;
use poem::Request;
use poem::web::sse::Event;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Binary, EventStream, Json};
use poem_openapi::types::multipart::Upload;
use poem_openapi::types::{MaybeUndefined, ToJSON};
use poem_openapi::{ApiResponse, Multipart, OpenApi, Tags};
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use crate::ApiState;
use crate::archive;
use crate::auth::Caller;
use crate::download::{self, FileResponse, content_disposition};
use crate::dto::*;
use crate::error::{ApiError, Fails, statuses};
use crate::streams::{
    REVALIDATE_EVERY, Refused, StreamLimits, job_events, owner_feed, while_valid,
};

#[derive(Tags)]
pub(crate) enum Tag {
    /// Download jobs.
    Jobs,
    /// Torrent tools.
    Torrents,
}

pub struct JobsApi {
    pub state: Arc<ApiState>,
    pub streams: Arc<StreamLimits>,
    /// Fires when the server stops: event streams end then, so they do not hold it up.
    pub stopping: tokio_util::sync::CancellationToken,
}

// What each operation can fail with (the OpenAPI document lists exactly these). 400 covers
// unparsable parameters and bodies, 401 a missing or wrong token, 413/415 bodies too large or
// not of the operation's media type, 500 the unexpected, 503 a backend that is down.
statuses! {
    SubmitFails: 400, 401, 403, 409, 413, 415, 422, 429, 500, 503;
    ListFails: 400, 401, 403, 429, 500, 503;
    ReadFails: 401, 403, 404, 429, 500, 503;
    MoveFails: 401, 403, 404, 409, 429, 500, 503;
    LimitsFails: 400, 401, 403, 404, 409, 413, 415, 429, 500, 503;
    CancelFails: 400, 401, 403, 404, 409, 429, 500, 503;
    EventsFails: 400, 401, 403, 404, 429, 500, 503;
    FeedFails: 400, 401, 403, 429, 500, 503;
    FileFails: 400, 401, 403, 404, 409, 429, 500, 503, 504;
    ArchiveFails: 400, 401, 403, 404, 409, 429, 500, 503;
    TorrentFails: 401, 403, 404, 409, 429, 500, 503;
    AnalyzeFails: 400, 401, 403, 413, 415, 422, 429, 500;
}

/// What `GET /jobs/{id}/archive` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum ArchiveFormat {
    Zip,
    Tar,
}

#[derive(ApiResponse)]
pub enum ArchiveResponse {
    /// The archive.
    #[oai(status = 200)]
    Ok(
        Binary<poem::Body>,
        #[oai(header = "Content-Disposition")] String,
        #[oai(header = "Content-Length")] u64,
    ),
}

#[derive(Debug, Multipart)]
pub struct TorrentUpload {
    /// The .torrent file.
    pub torrent: Upload,
    /// Indices of the files to download, as `0,2,5` or `[0,2,5]`; all files when absent.
    pub files: Option<String>,
    /// Deliver to this storage profile's id, or `server` for this server's own storage
    /// (absent: the caller's default, see `/me/default-storage-profile`).
    #[oai(validator(max_length = 64))]
    pub storage_profile: Option<String>,
    /// `true` to seed the finished job, `false` not to (absent: the server's default).
    pub seed: Option<bool>,
    /// The job's download speed limit, bytes per second (at least 16384).
    #[oai(validator(minimum(value = "16384"), maximum(value = "4294967295")))]
    pub download_limit: Option<u64>,
    /// The job's upload speed limit, bytes per second (at least 16384).
    #[oai(validator(minimum(value = "16384"), maximum(value = "4294967295")))]
    pub upload_limit: Option<u64>,
}

#[derive(Debug, Multipart)]
pub struct AnalyzeUpload {
    /// The .torrent file.
    pub torrent: Upload,
}

#[derive(ApiResponse)]
pub enum Created {
    /// The job was created and queued.
    #[oai(status = 201)]
    Created(Json<JobDto>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
#[allow(clippy::large_enum_variant)]
pub enum Deleted {
    /// The job was stopped: cancelled, or completed if it was seeding (its files stay).
    #[oai(status = 200)]
    Cancelled(Json<JobDto>),
    /// The purge was accepted (`purge_pending` is true): the job is stopped and, once the
    /// stage that held it has let go, its files, staged data and the job itself are deleted;
    /// `GET /jobs/{id}` answers 404 from then on.
    #[oai(status = 202)]
    PurgeAccepted(Json<JobDto>),
}

#[derive(ApiResponse)]
pub enum TorrentFileResponse {
    /// The .torrent file.
    #[oai(status = 200, content_type = "application/x-bittorrent")]
    Ok(
        Binary<Vec<u8>>,
        #[oai(header = "Content-Disposition")] String,
    ),
}

type ApiResult<T> = Result<T, ApiError>;

impl JobsApi {
    /// A place for one more event stream of the caller's (an admin following another
    /// user's jobs spends their own place, not that user's), under the caps.
    fn admit_stream(&self, caller: &Caller) -> ApiResult<crate::streams::StreamPermit> {
        self.streams
            .admit(&caller.get().user)
            .map_err(|refused| match refused {
                Refused::Owner(n) => ApiError::new(
                    ErrorCode::TooManyStreams,
                    format!("you have {n} event streams open already; close one first"),
                ),
                Refused::Server(n) => ApiError::new(
                    ErrorCode::TooManyStreams,
                    format!("the server has {n} event streams open; try again shortly"),
                ),
            })
    }
}

pub(crate) fn parse_id(id: &str) -> ApiResult<JobId> {
    id.parse()
        .map_err(|_| ApiError::new(ErrorCode::JobNotFound, format!("no job {id:?}")))
}

/// The multipart `files` field: at most `max_files` indices (counted before any is parsed).
fn parse_files(text: Option<&str>, max_files: usize) -> ApiResult<Option<Vec<usize>>> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let inner = text.trim_start_matches('[').trim_end_matches(']');
    if inner.split(',').nth(max_files).is_some() {
        return Err(ApiError::from(
            ferry_application::JobsError::InvalidSelection(
                ferry_domain::FileSelectionError::TooMany { max: max_files },
            ),
        ));
    }
    inner
        .split(',')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidFileSelection,
                "files must be a list of file indices, like 0,2,5",
            )
        })
}

fn indices(files: Option<Vec<u32>>) -> Option<Vec<usize>> {
    files.map(|v| v.into_iter().map(|i| i as usize).collect())
}

impl JobsApi {
    /// The quotas of the owner the caller acts for.
    async fn quotas(&self, caller: &Caller) -> Result<ferry_domain::Quotas, ApiError> {
        self.state
            .accounts
            .quotas_of(caller.owner())
            .await
            .map_err(ApiError::from)
    }

    /// Where a job that names no destination goes: the caller's default profile, if any.
    async fn default_profile(
        &self,
        caller: &Caller,
    ) -> Result<Option<ferry_domain::ProfileId>, ApiError> {
        self.state
            .profiles
            .default_of(caller.owner())
            .await
            .map_err(ApiError::from)
    }

    async fn read_torrent(&self, upload: Upload) -> ApiResult<Vec<u8>> {
        let max = self.state.max_torrent_bytes;
        if upload.size() as u64 > max {
            return Err(ApiError::new(
                ErrorCode::TorrentFileTooLarge,
                format!("a .torrent may be at most {max} bytes"),
            ));
        }
        // Exactly the upload's size (known, and under the limit): no doubling growth.
        let mut bytes = vec![0u8; upload.size()];
        upload
            .into_async_read()
            .read_exact(&mut bytes)
            .await
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("reading the upload: {e}"),
                )
            })?;
        Ok(bytes)
    }

    /// The job's seeding policy: its own limits over the server's, or none.
    fn seed_policy(
        &self,
        seed: Option<bool>,
        ratio: Option<f64>,
        time_secs: Option<u64>,
        idle_secs: Option<u64>,
    ) -> ApiResult<Option<ferry_domain::SeedPolicy>> {
        if ratio.is_some_and(|r| !r.is_finite() || r < 0.0) {
            // The schema's minimum refuses these first; kept in case another caller sends one.
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "seed_ratio must be a number ≥ 0",
            ));
        }
        let asked = ratio.is_some() || time_secs.is_some() || idle_secs.is_some();
        if !seed.unwrap_or(self.state.seed_by_default || asked) {
            return Ok(None);
        }
        let d = self.state.seed_limits;
        Ok(Some(if asked {
            ferry_domain::SeedPolicy {
                ratio,
                time_secs,
                idle_secs,
            }
        } else {
            d
        }))
    }

    /// The job's view with its place in the queue, if queued.
    async fn placed(&self, job: &ferry_domain::Job) -> ApiResult<JobDto> {
        let positions = self
            .state
            .jobs
            .queue_positions(std::slice::from_ref(job))
            .await?;
        Ok(JobDto::placed(job, &positions))
    }

    /// The view of a job a change has just been made to: with its queue place when that can
    /// be read, else without (the change stands; failing the answer would make the client
    /// try it again).
    async fn changed(&self, job: &ferry_domain::Job) -> JobDto {
        match self.placed(job).await {
            Ok(dto) => dto,
            Err(e) => {
                tracing::warn!(job_id = %job.id, error = ?e, "could not read the job's queue place");
                job.into()
            }
        }
    }

    fn created(job: &ferry_domain::Job) -> Created {
        Created::Created(Json(job.into()), format!("/api/v1/jobs/{}", job.id))
    }
}

#[OpenApi(prefix_path = "/api/v1")]
impl JobsApi {
    /// Submit a magnet link or a URL.
    #[oai(
        path = "/jobs",
        method = "post",
        tag = "Tag::Jobs",
        operation_id = "submitJob"
    )]
    async fn submit(
        &self,
        req: &Request,
        caller: Caller,
        body: Json<SubmitRequest>,
    ) -> Result<Created, Fails<SubmitFails>> {
        let SubmitRequest {
            source,
            files,
            storage_profile,
            seed,
            seed_ratio,
            seed_time_secs,
            seed_idle_secs,
            download_limit,
            upload_limit,
        } = body.0;
        let seed = self.seed_policy(seed, seed_ratio, seed_time_secs, seed_idle_secs)?;
        let limits = ferry_domain::SpeedLimits::new(download_limit, upload_limit)
            .map_err(ferry_application::JobsError::from)?;
        let submission = match source {
            SourceRequest::Magnet(m) => Submission::Magnet(m.magnet),
            SourceRequest::Url(u) => Submission::Url(u.url),
        };
        let storage_profile = match storage_profile {
            MaybeUndefined::Value(id) => Some(ferry_domain::ProfileId::from_uuid(id)),
            MaybeUndefined::Null => None,
            MaybeUndefined::Undefined => self.default_profile(&caller).await?,
        };
        let options = SubmitOptions {
            files: indices(files),
            storage_profile,
            seed,
            paused: false,
            id: None,
            limits,
        };
        let job = self
            .state
            .jobs
            .submit_within(
                caller.owner().clone(),
                submission,
                options,
                self.quotas(&caller).await?,
            )
            .await?;
        caller
            .audit(&self.state, req, "job.submit", job.id.to_string())
            .await;
        Ok(Self::created(&job))
    }

    /// Submit a .torrent file (multipart form: `torrent`, optional `files`).
    #[oai(
        path = "/jobs/torrent",
        method = "post",
        tag = "Tag::Jobs",
        operation_id = "submitTorrent"
    )]
    async fn submit_torrent(
        &self,
        req: &Request,
        caller: Caller,
        form: TorrentUpload,
    ) -> Result<Created, Fails<SubmitFails>> {
        let files = parse_files(form.files.as_deref(), self.state.jobs.limits.max_files)?;
        let seed = self.seed_policy(form.seed, None, None, None)?;
        let limits = ferry_domain::SpeedLimits::new(form.download_limit, form.upload_limit)
            .map_err(ferry_application::JobsError::from)?;
        let bytes = self.read_torrent(form.torrent).await?;
        let storage_profile = match form.storage_profile.as_deref().map(str::trim) {
            None => self.default_profile(&caller).await?,
            Some("server") => None,
            Some(id) => Some(
                Uuid::try_parse(id)
                    .map(ferry_domain::ProfileId::from_uuid)
                    .map_err(|_| {
                        ApiError::new(
                            ErrorCode::InvalidRequest,
                            "storage_profile is a profile's id or `server`",
                        )
                    })?,
            ),
        };
        let options = SubmitOptions {
            files,
            storage_profile,
            seed,
            paused: false,
            id: None,
            limits,
        };
        let job = self
            .state
            .jobs
            .submit_within(
                caller.owner().clone(),
                Submission::Torrent(bytes),
                options,
                self.quotas(&caller).await?,
            )
            .await?;
        caller
            .audit(&self.state, req, "job.submit", job.id.to_string())
            .await;
        Ok(Self::created(&job))
    }

    /// List jobs, newest first.
    #[oai(
        path = "/jobs",
        method = "get",
        tag = "Tag::Jobs",
        operation_id = "listJobs"
    )]
    async fn list(
        &self,
        caller: Caller,
        /// Only jobs in this status.
        status: Query<Option<StatusDto>>,
        /// Only jobs whose name contains this text (ignoring ASCII case).
        #[oai(validator(max_length = 200))]
        q: Query<Option<String>>,
        /// Page size (1–200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u32>>,
        /// The `next_cursor` of the previous page.
        before: Query<Option<Uuid>>,
        /// Admins: another user's jobs (every `/jobs…` operation takes it).
        #[oai(name = "owner", validator(pattern = "^[A-Za-z0-9_-]{1,64}$"))]
        _owner: Query<Option<String>>,
    ) -> Result<Json<JobPage>, Fails<ListFails>> {
        let limit = limit.0.unwrap_or(50);
        let query = JobQuery {
            owner: caller.owner().clone(),
            status: status.0.map(JobStatus::from),
            name_contains: q.0.filter(|q| !q.trim().is_empty()),
            before: before.0.map(JobId::from_uuid),
            limit,
            torrents: None,
        };
        let jobs = self.state.jobs.list(&query).await?;
        let positions = self.state.jobs.queue_positions(&jobs).await?;
        let next_cursor = (jobs.len() == limit as usize)
            .then(|| jobs.last().map(|j| j.id.as_uuid()))
            .flatten();
        Ok(Json(JobPage {
            items: jobs.iter().map(|j| JobDto::placed(j, &positions)).collect(),
            next_cursor,
        }))
    }

    /// One job.
    #[oai(
        path = "/jobs/:id",
        method = "get",
        tag = "Tag::Jobs",
        operation_id = "getJob"
    )]
    async fn get(
        &self,
        caller: Caller,
        id: Path<String>,
    ) -> Result<Json<JobDto>, Fails<ReadFails>> {
        let job = self.state.jobs.get(caller.owner(), parse_id(&id)?).await?;
        Ok(Json(self.placed(&job).await?))
    }

    /// Change a job's own speed limits (bytes per second; an absent or `null` one removes
    /// it). A running torrent takes them within a second, while it downloads or seeds; a
    /// queued or paused job starts with them. A torrent that jobs of several users share
    /// runs at the loosest of their limits.
    #[oai(
        path = "/jobs/:id/limits",
        method = "put",
        tag = "Tag::Jobs",
        operation_id = "setJobSpeedLimits"
    )]
    async fn set_limits(
        &self,
        caller: Caller,
        id: Path<String>,
        body: Json<SpeedLimitsRequest>,
    ) -> Result<Json<JobDto>, Fails<LimitsFails>> {
        let limits = ferry_domain::SpeedLimits::new(body.0.download_limit, body.0.upload_limit)
            .map_err(ferry_application::JobsError::from)?;
        let job = self
            .state
            .jobs
            .set_speed_limits(caller.owner(), parse_id(&id)?, limits)
            .await?;
        Ok(Json(self.changed(&job).await))
    }

    /// Cancel a job (a seeding job stops seeding and stays completed, with its files); with
    /// `purge=true` also delete its files and the job itself. A purge is carried out in the
    /// background once the stage running the job has stopped (202 with the job, then 404).
    #[oai(
        path = "/jobs/:id",
        method = "delete",
        tag = "Tag::Jobs",
        operation_id = "cancelJob"
    )]
    async fn delete(
        &self,
        req: &Request,
        caller: Caller,
        id: Path<String>,
        purge: Query<Option<bool>>,
    ) -> Result<Deleted, Fails<CancelFails>> {
        let purge = purge.0.unwrap_or(false);
        let job = self
            .state
            .jobs
            .cancel(caller.owner(), parse_id(&id)?, purge)
            .await?;
        let action = if purge { "job.purge" } else { "job.cancel" };
        caller
            .audit(&self.state, req, action, job.id.to_string())
            .await;
        let dto = Json((&job).into());
        Ok(if purge {
            Deleted::PurgeAccepted(dto)
        } else {
            Deleted::Cancelled(dto)
        })
    }

    /// Pause a downloading job (its data is kept) or a queued torrent (it leaves the queue
    /// until resumed).
    #[oai(
        path = "/jobs/:id/pause",
        method = "post",
        tag = "Tag::Jobs",
        operation_id = "pauseJob"
    )]
    async fn pause(
        &self,
        caller: Caller,
        id: Path<String>,
    ) -> Result<Json<JobDto>, Fails<MoveFails>> {
        let job = self
            .state
            .jobs
            .pause(caller.owner(), parse_id(&id)?)
            .await?;
        Ok(Json((&job).into()))
    }

    /// Resume a paused job: a torrent joins the queue (`queued`, with its `queue_position`)
    /// and runs again, from the data it has, when a worker is free; a URL job goes back to
    /// `downloading` and its fetch continues where it stopped.
    #[oai(
        path = "/jobs/:id/resume",
        method = "post",
        tag = "Tag::Jobs",
        operation_id = "resumeJob"
    )]
    async fn resume(
        &self,
        caller: Caller,
        id: Path<String>,
    ) -> Result<Json<JobDto>, Fails<MoveFails>> {
        let job = self
            .state
            .jobs
            .resume(caller.owner(), parse_id(&id)?)
            .await?;
        Ok(Json(self.changed(&job).await))
    }

    /// Run a failed job again.
    #[oai(
        path = "/jobs/:id/retry",
        method = "post",
        tag = "Tag::Jobs",
        operation_id = "retryJob"
    )]
    async fn retry(
        &self,
        caller: Caller,
        id: Path<String>,
    ) -> Result<Json<JobDto>, Fails<MoveFails>> {
        let id = parse_id(&id)?;
        let quotas = self.quotas(&caller).await?;
        let job = self
            .state
            .jobs
            .retry_within(caller.owner(), id, quotas)
            .await?;
        Ok(Json(self.changed(&job).await))
    }

    /// Live progress and status of all your jobs (an admin's `?owner=`: that user's), as
    /// Server-Sent Events: a `ready` event, then each `status` and `progress` event of every
    /// job as it happens. It does not replay: on `ready` (also after a reconnect) reload the
    /// jobs you show. It ends when your session or token stops being valid. Streams count
    /// against the same caps as a job's (429 `too_many_streams`).
    #[oai(
        path = "/jobs/events",
        method = "get",
        tag = "Tag::Jobs",
        operation_id = "jobsFeed"
    )]
    async fn feed(
        &self,
        caller: Caller,
    ) -> Result<EventStream<BoxStream<'static, FeedEventDto>>, Fails<FeedFails>> {
        let permit = self.admit_stream(&caller)?;
        let rx = self
            .state
            .bus
            .subscribe_owner(caller.owner())
            .await
            .map_err(|e| {
                ApiError::from(ferry_application::JobsError::Unavailable(e.to_string()))
            })?;
        let stream = while_valid(
            owner_feed(
                FeedEventDto::ready(chrono::Utc::now()),
                rx,
                permit,
                self.stopping.clone(),
            ),
            caller.still_valid(self.state.clone()),
            REVALIDATE_EVERY,
        );
        Ok(EventStream::new(stream)
            .keep_alive(Duration::from_secs(15))
            .to_event(|e| {
                let kind = match e.kind {
                    FeedEventType::Ready => "ready",
                    FeedEventType::Status => "status",
                    FeedEventType::Progress => "progress",
                };
                Event::message(e.to_json_string()).event_type(kind)
            }))
    }

    /// Live progress and status as Server-Sent Events. The first event is a snapshot of the
    /// job; send the last `id:` you saw as `Last-Event-ID` to resume without gaps. The
    /// stream ends after the job reaches `completed`, `cancelled` or `failed`. Each caller,
    /// and the server, may have only so many streams open (429 `too_many_streams`).
    #[oai(
        path = "/jobs/:id/events",
        method = "get",
        tag = "Tag::Jobs",
        operation_id = "jobEvents"
    )]
    async fn events(
        &self,
        caller: Caller,
        id: Path<String>,
        #[oai(name = "Last-Event-ID")] last_event_id: Header<Option<String>>,
        req: &Request,
    ) -> Result<EventStream<BoxStream<'static, JobEventDto>>, Fails<EventsFails>> {
        let id = parse_id(&id)?;
        // A value that is not visible ASCII reaches `last_event_id` as absent; it is no id
        // this server issued either.
        let unreadable = last_event_id.0.is_none()
            && req
                .headers()
                .get("last-event-id")
                .is_some_and(|v| !v.is_empty());
        if unreadable {
            return Err(ApiError::new(
                ErrorCode::InvalidEventId,
                "Last-Event-ID was not issued by this server",
            )
            .into());
        }
        // Ownership first: an id that is not the caller's costs this one read, and nothing
        // is subscribed, counted or spawned for it.
        self.state.jobs.get(caller.owner(), id).await?;
        let permit = self.admit_stream(&caller)?;
        let from = match last_event_id.0.filter(|s| !s.is_empty()) {
            Some(last) => Replay::After(EventId(last)),
            None => Replay::LiveOnly,
        };
        let rx = self
            .state
            .bus
            .subscribe(id, &from)
            .await
            .map_err(|e| match e {
                ferry_application::ports::BusError::BadEventId(id) => ApiError::new(
                    ErrorCode::InvalidEventId,
                    format!("Last-Event-ID {id:?} was not issued by this server"),
                ),
                other => {
                    ApiError::from(ferry_application::JobsError::Unavailable(other.to_string()))
                }
            })?;
        // The snapshot is read after subscribing, so nothing falls between the two.
        let job = self.state.jobs.get(caller.owner(), id).await?;
        let stream = while_valid(
            job_events(
                JobEventDto::snapshot(&job),
                job.status.is_terminal(),
                rx,
                permit,
                self.stopping.clone(),
            ),
            caller.still_valid(self.state.clone()),
            REVALIDATE_EVERY,
        );
        Ok(EventStream::new(stream)
            .keep_alive(Duration::from_secs(15))
            .to_event(|e| {
                let kind = match e.kind {
                    EventType::Snapshot => "snapshot",
                    EventType::Status => "status",
                    EventType::Progress => "progress",
                };
                let event = Event::message(e.to_json_string()).event_type(kind);
                match &e.id {
                    Some(id) => event.id(id.clone()),
                    None => event,
                }
            }))
    }

    /// The job's files (available once the torrent's metadata is known).
    #[oai(
        path = "/jobs/:id/files",
        method = "get",
        tag = "Tag::Jobs",
        operation_id = "jobFiles"
    )]
    async fn files(
        &self,
        caller: Caller,
        id: Path<String>,
    ) -> Result<Json<Vec<FileDto>>, Fails<ReadFails>> {
        let job = self.state.jobs.get(caller.owner(), parse_id(&id)?).await?;
        let finished = matches!(job.status, JobStatus::Completed | JobStatus::Seeding);
        Ok(Json(
            job.files()
                .iter()
                .map(|f| FileDto::of(f, job.id.as_uuid(), finished))
                .collect(),
        ))
    }

    /// Download one file. Supports `Range: bytes=…`. A finished job's file comes from its
    /// storage (a file in S3 or Google Drive answers with a redirect). With `ferry serve`,
    /// a torrent job's file can also be read while it downloads (and until it is
    /// delivered): each read waits for the pieces it needs, which are fetched before all
    /// others, so a video plays from the start or any position seconds after the job
    /// starts. If they do not come within `torrent.stream_timeout` the answer is `504
    /// stream_timeout`, or — once bytes were sent — the connection is closed. Elsewhere (an
    /// API process without an engine) an unfinished job's file is `409 job_not_finished`.
    #[oai(
        path = "/jobs/:id/files/:index",
        method = "get",
        tag = "Tag::Jobs",
        operation_id = "jobFile"
    )]
    async fn file(
        &self,
        req: &Request,
        caller: Caller,
        id: Path<String>,
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))] index: Path<u32>,
        #[oai(name = "Range")] range: Header<Option<String>>,
    ) -> Result<FileResponse, Fails<FileFails>> {
        let source = self
            .state
            .jobs
            .source(caller.owner(), parse_id(&id)?, index.0 as usize)
            .await?;
        Ok(download::send_source(source, range.0.as_deref(), crate::edge::is_head(req)).await?)
    }

    /// Download a finished job's files as one archive, streamed without staging it: `zip`
    /// (stored, ZIP64 past 4 GiB) or `tar`. `Content-Length` is exact, so a browser shows
    /// progress. Files in remote storage (S3, Google Drive) answer 409
    /// `archive_not_available`: fetch those one by one.
    #[oai(
        path = "/jobs/:id/archive",
        method = "get",
        tag = "Tag::Jobs",
        operation_id = "jobArchive"
    )]
    async fn archive(
        &self,
        caller: Caller,
        id: Path<String>,
        /// `zip` (default) or `tar`.
        format: Query<Option<ArchiveFormat>>,
        /// Indices of the files to put in, as `0,2,5`; every downloaded file when absent.
        #[oai(validator(max_length = 4096, pattern = r"^[0-9]{1,9}(,[0-9]{1,9})*$"))]
        files: Query<Option<String>>,
    ) -> Result<ArchiveResponse, Fails<ArchiveFails>> {
        let format = match format.0.unwrap_or(ArchiveFormat::Zip) {
            ArchiveFormat::Zip => archive::Format::Zip,
            ArchiveFormat::Tar => archive::Format::Tar,
        };
        let files = parse_files(files.0.as_deref(), self.state.jobs.limits.max_files)?;
        let (job, located) = self
            .state
            .jobs
            .archive(caller.owner(), parse_id(&id)?, files.as_deref())
            .await?;
        let mut entries = Vec::with_capacity(located.len());
        for found in located {
            let ferry_application::ports::ObjectLocation::LocalFile(path) = found.location else {
                return Err(ApiError::new(
                    ErrorCode::ArchiveNotAvailable,
                    "this job's files are in remote storage: download them one by one",
                )
                .into());
            };
            entries.push(archive::Entry {
                name: found.file.path.clone(),
                size: found.file.size,
                path,
            });
        }
        let archive = archive::Archive {
            format,
            entries,
            modified: job.finished_at.unwrap_or(job.updated_at),
        };
        let len = archive.len();
        let body = poem::Body::from_bytes_stream(tokio_stream::wrappers::ReceiverStream::new(
            archive.stream(),
        ));
        Ok(ArchiveResponse::Ok(
            Binary(body),
            content_disposition(&format!("{}.{}", job.name, format.extension())),
            len,
        ))
    }

    /// The job's .torrent: the uploaded one, a magnet's once resolved, or the one made of a
    /// fetched URL (private per the server's settings).
    #[oai(
        path = "/jobs/:id/torrent",
        method = "get",
        tag = "Tag::Jobs",
        operation_id = "jobTorrent"
    )]
    async fn torrent(
        &self,
        caller: Caller,
        id: Path<String>,
    ) -> Result<TorrentFileResponse, Fails<TorrentFails>> {
        let meta = self
            .state
            .jobs
            .torrent(caller.owner(), parse_id(&id)?)
            .await?;
        let name = format!("{}.torrent", meta.name);
        Ok(TorrentFileResponse::Ok(
            Binary(meta.metainfo),
            content_disposition(&name),
        ))
    }

    /// A magnet link for the job's torrent (with its trackers).
    #[oai(
        path = "/jobs/:id/magnet",
        method = "get",
        tag = "Tag::Jobs",
        operation_id = "jobMagnet"
    )]
    async fn magnet(
        &self,
        caller: Caller,
        id: Path<String>,
    ) -> Result<Json<MagnetDto>, Fails<TorrentFails>> {
        let meta = self
            .state
            .jobs
            .torrent(caller.owner(), parse_id(&id)?)
            .await?;
        let link = ferry_domain::MagnetLink::new(meta.info_hash, Some(&meta.name), &meta.trackers);
        Ok(Json(MagnetDto {
            magnet: link.to_string(),
            info_hash: meta.info_hash.to_hex(),
        }))
    }

    /// Read a .torrent without starting it: name, files, sizes, info-hash, trackers.
    #[oai(
        path = "/torrents/analyze",
        method = "post",
        tag = "Tag::Torrents",
        operation_id = "analyzeTorrent"
    )]
    async fn analyze(
        &self,
        // Any caller may analyze; who it is does not matter beyond that.
        _caller: Caller,
        form: AnalyzeUpload,
    ) -> Result<Json<TorrentAnalysis>, Fails<AnalyzeFails>> {
        let bytes = self.read_torrent(form.torrent).await?;
        let meta = self.state.jobs.analyze(&bytes)?;
        Ok(Json((&meta).into()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn file_selections_parse_both_forms() {
        assert_eq!(parse_files(None, 10).ok().flatten(), None);
        assert_eq!(
            parse_files(Some("0,2, 5"), 10).ok().flatten(),
            Some(vec![0, 2, 5])
        );
        assert_eq!(
            parse_files(Some("[1,3]"), 10).ok().flatten(),
            Some(vec![1, 3])
        );
        assert!(parse_files(Some("a,b"), 10).is_err());
        assert!(parse_files(Some("-1"), 10).is_err());
        assert_eq!(
            parse_files(Some("0,1,2"), 3).ok().flatten(),
            Some(vec![0, 1, 2])
        );
        assert!(parse_files(Some("0,1,2,3"), 3).is_err());
    }
}
