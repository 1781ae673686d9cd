//! qBittorrent's WebAPI v2 under `/api/v2`, so that Sonarr, Radarr, Prowlarr, autobrr and
//! scripts written for qBittorrent drive a Ferry user's torrent jobs.
//!
//! Who calls: `auth/login` takes the user's name and one of their API tokens as the
//! password and answers with an `SID` cookie (the token itself: the cookie is worth exactly
//! what the client already holds, is revoked with the token, and is `HttpOnly`,
//! `SameSite=Strict`); `Authorization: Basic name:token` and `Authorization: Bearer token`
//! (qBittorrent 5.2's API keys) work on every request too. Anything else is a 403, which the
//! *arr apps take as "log in again". A cookie-authenticated change whose `Origin` or
//! `Referer` is another site is refused (401), as qBittorrent does.
//!
//! What is listed: the caller's torrent jobs (magnets and .torrent files; URL jobs are not
//! torrents), with qBittorrent's fields and state names (WebAPI 2.11: `stoppedDL`/`stoppedUP`).
//! A category is a destination: on a shared volume (`storage.shared_dir`) each category
//! delivers into its own folder, so `content_path` is where the app that asked reads the
//! files. Removing a torrent without its files takes it off this list only; the job and its
//! files stay in Ferry.

// A refusal is a whole answer (`Response`), returned early through `?`; it is not worth
// boxing on these paths.
#![allow(clippy::result_large_err)]

mod model;
mod params;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ferry_application::ports::{JobLabels, JobQuery, MAX_FILTER_VALUES, TorrentFilter};
use ferry_application::{CategoriesError, Submission, SubmitOptions};
use ferry_domain::{ErrorCode, InfoHash, Job, JobId, JobSource, JobStatus, OwnerId, Scope};
use poem::http::{Method, StatusCode, header};
use poem::{Body, Endpoint, IntoResponse, Request, Response, Route};

use crate::ApiState;
use crate::auth::client_info;
use crate::error::ApiError;
use model::{Place, TorrentInfo};
use params::Params;

/// The WebAPI version Ferry speaks, and the qBittorrent version it answers as.
pub const WEBAPI_VERSION: &str = "2.11.2";
pub const APP_VERSION: &str = "v5.0.4";

/// The cookie qBittorrent's clients keep.
const SID: &str = "SID";

/// Most torrents one user's list holds in an answer.
const MAX_LISTED: u32 = 100_000;

/// Most torrents one `torrents/add` may name (links, magnets and files together).
const MAX_ADDED: usize = 100;

/// One torrent a `torrents/add` names.
enum Source {
    Magnet(String),
    /// An http(s) link to a .torrent file, fetched like a URL job's content.
    Link(String),
    /// The index of an uploaded .torrent file.
    Upload(usize),
}

/// What every operation needs: which one, and the scope it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Login,
    Logout,
    Version,
    WebapiVersion,
    BuildInfo,
    Preferences,
    SetPreferences,
    DefaultSavePath,
    Info,
    Properties,
    Files,
    Trackers,
    Add,
    Delete,
    Stop,
    Start,
    SetCategory,
    CreateCategory,
    EditCategory,
    RemoveCategories,
    Categories,
    AddTags,
    RemoveTags,
    Tags,
    SetShareLimits,
    SetDownloadLimit,
    SetUploadLimit,
    DownloadLimit,
    UploadLimit,
    Prio,
    SetForceStart,
    Reannounce,
    TransferInfo,
}

impl Op {
    /// Operations that change something: POST only, and the `write` scope.
    fn changes(self) -> bool {
        matches!(
            self,
            Self::Login
                | Self::Logout
                | Self::SetPreferences
                | Self::Add
                | Self::Delete
                | Self::Stop
                | Self::Start
                | Self::SetCategory
                | Self::CreateCategory
                | Self::EditCategory
                | Self::RemoveCategories
                | Self::AddTags
                | Self::RemoveTags
                | Self::SetShareLimits
                | Self::SetDownloadLimit
                | Self::SetUploadLimit
                | Self::Prio
                | Self::SetForceStart
                | Self::Reannounce
        )
    }
}

const ROUTES: &[(&str, Op)] = &[
    ("/auth/login", Op::Login),
    ("/auth/logout", Op::Logout),
    ("/app/version", Op::Version),
    ("/app/webapiVersion", Op::WebapiVersion),
    ("/app/buildInfo", Op::BuildInfo),
    ("/app/preferences", Op::Preferences),
    ("/app/setPreferences", Op::SetPreferences),
    ("/app/defaultSavePath", Op::DefaultSavePath),
    ("/torrents/info", Op::Info),
    ("/torrents/properties", Op::Properties),
    ("/torrents/files", Op::Files),
    ("/torrents/trackers", Op::Trackers),
    ("/torrents/add", Op::Add),
    ("/torrents/delete", Op::Delete),
    ("/torrents/pause", Op::Stop),
    ("/torrents/stop", Op::Stop),
    ("/torrents/resume", Op::Start),
    ("/torrents/start", Op::Start),
    ("/torrents/setCategory", Op::SetCategory),
    ("/torrents/createCategory", Op::CreateCategory),
    ("/torrents/editCategory", Op::EditCategory),
    ("/torrents/removeCategories", Op::RemoveCategories),
    ("/torrents/categories", Op::Categories),
    ("/torrents/addTags", Op::AddTags),
    ("/torrents/removeTags", Op::RemoveTags),
    ("/torrents/tags", Op::Tags),
    ("/torrents/setShareLimits", Op::SetShareLimits),
    ("/torrents/setDownloadLimit", Op::SetDownloadLimit),
    ("/torrents/setUploadLimit", Op::SetUploadLimit),
    ("/torrents/downloadLimit", Op::DownloadLimit),
    ("/torrents/uploadLimit", Op::UploadLimit),
    ("/torrents/topPrio", Op::Prio),
    ("/torrents/bottomPrio", Op::Prio),
    ("/torrents/increasePrio", Op::Prio),
    ("/torrents/decreasePrio", Op::Prio),
    ("/torrents/setForceStart", Op::SetForceStart),
    ("/torrents/reannounce", Op::Reannounce),
    ("/transfer/info", Op::TransferInfo),
];

/// The `/api/v2` routes (every other path under it is a 404).
pub fn routes() -> Route {
    ROUTES
        .iter()
        .fold(Route::new(), |route, (path, op)| route.at(*path, Qbt(*op)))
}

/// Whether `path` is one of the operations that take a multipart upload.
pub fn is_upload(path: &str) -> bool {
    path == "/api/v2/torrents/add"
}

struct Qbt(Op);

impl Endpoint for Qbt {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let op = self.0;
        let Some(state) = req.data::<Arc<ApiState>>().cloned() else {
            return Ok(text(StatusCode::INTERNAL_SERVER_ERROR, "Internal error"));
        };
        if op.changes() && req.method() != Method::POST {
            return Ok(Response::builder()
                .status(StatusCode::METHOD_NOT_ALLOWED)
                .header(header::ALLOW, "POST")
                .body("Method Not Allowed"));
        }
        if ![Method::GET, Method::HEAD, Method::POST].contains(req.method()) {
            return Ok(Response::builder()
                .status(StatusCode::METHOD_NOT_ALLOWED)
                .header(header::ALLOW, "GET, HEAD, POST")
                .body("Method Not Allowed"));
        }
        let body = req.take_body();
        let qbt = Session { state, req: &req };
        // Who calls is read from the headers before any body is.
        let caller = match op {
            Op::Login | Op::Logout => None,
            _ => match qbt.authenticate(op).await {
                Ok(caller) => Some(caller),
                Err(refusal) => return Ok(refusal),
            },
        };
        let params = match Params::read(&req, body, qbt.state.max_torrent_bytes).await {
            Ok(params) => params,
            Err(refusal) => return Ok(refusal),
        };
        Ok(match (op, caller) {
            (Op::Login, _) => qbt.login(&params).await,
            (Op::Logout, _) => logout(),
            (_, Some(caller)) => qbt.run(op, &caller, &params).await,
            (_, None) => forbidden(),
        })
    }
}

/// One request: the API's state and the request itself.
struct Session<'a> {
    state: Arc<ApiState>,
    req: &'a Request,
}

/// A plain-text answer, as qBittorrent gives them.
fn text(status: StatusCode, body: impl Into<String>) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/plain; charset=UTF-8")
        .body(body.into())
}

fn ok() -> Response {
    text(StatusCode::OK, "Ok.")
}

fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => Response::builder()
            .content_type("application/json")
            .body(bytes),
        Err(e) => {
            tracing::error!(error = %e, "a qBittorrent answer could not be serialized");
            text(StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
        }
    }
}

/// An API error as qBittorrent's clients read one: its status, and a line saying why.
fn refusal(e: ApiError) -> Response {
    let status = match StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST) {
        // The *arr apps read any 403 as "log in again": a quota or a missing scope is a
        // conflict with the account's limits instead.
        StatusCode::FORBIDDEN => StatusCode::CONFLICT,
        other => other,
    };
    text(status, format!("{} ({})", e.message(), e.code()))
}

fn forbidden() -> Response {
    text(StatusCode::FORBIDDEN, "Forbidden")
}

fn logout() -> Response {
    Response::builder()
        .header(header::SET_COOKIE, sid_cookie("", true))
        .content_type("text/plain; charset=UTF-8")
        .body("Ok.")
}

/// The `SID` cookie: only for `/api/v2`. Not `Secure`: the *arr apps often reach Ferry over
/// an internal `http://` address while its public URL is https, and their HTTP clients would
/// then never send it back (the login form carried the same token on the same channel).
fn sid_cookie(value: &str, expire: bool) -> String {
    let mut cookie = format!("{SID}={value}; HttpOnly; SameSite=Strict; Path=/api/v2");
    if expire {
        cookie.push_str("; Max-Age=0");
    }
    cookie
}

fn categories_error(e: CategoriesError) -> Response {
    match e {
        CategoriesError::Invalid(m) => text(StatusCode::BAD_REQUEST, m),
        CategoriesError::Exists => text(StatusCode::CONFLICT, "Category already exists"),
        CategoriesError::NotFound => text(StatusCode::CONFLICT, "Category does not exist"),
        CategoriesError::Folder(e) => refusal(e.into()),
        CategoriesError::Unavailable(_) => refusal(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "a backend is unavailable; try again shortly",
        )),
        CategoriesError::Unexpected(e) => refusal(ApiError::internal(&format!("{e:#}"))),
    }
}

/// A job as this API sees it, with its labels.
struct Listed {
    job: Job,
    hash: InfoHash,
    labels: JobLabels,
}

/// Which torrents a request is about: `None` is any.
struct Wanted<'a> {
    /// Lowercase hex, as clients send them.
    hashes: Option<HashSet<String>>,
    /// A category's name (`""`: no category).
    category: Option<&'a str>,
    /// Statuses the job may be in (what a `filter` can match).
    statuses: Option<Vec<JobStatus>>,
}

impl Wanted<'_> {
    fn named(hashes: Option<HashSet<String>>) -> Self {
        Self {
            hashes,
            category: None,
            statuses: None,
        }
    }

    /// The part the database selects by: every job this request wants is in it. A list past
    /// [`MAX_FILTER_VALUES`] is left to the checks made on the rows.
    fn torrent_filter(&self, labels: &HashMap<JobId, JobLabels>) -> TorrentFilter {
        let info_hashes = self
            .hashes
            .as_ref()
            .filter(|hs| hs.len() <= MAX_FILTER_VALUES)
            // A hash that is not one matches no job.
            .map(|hs| hs.iter().filter_map(|h| InfoHash::parse(h).ok()).collect());
        let ids = self.category.filter(|c| !c.is_empty()).and_then(|c| {
            let ids: Vec<JobId> = labels
                .iter()
                .filter(|(_, l)| !l.removed && l.category.as_deref() == Some(c))
                .map(|(id, _)| *id)
                .collect();
            (ids.len() <= MAX_FILTER_VALUES).then_some(ids)
        });
        TorrentFilter {
            info_hashes,
            ids,
            statuses: self.statuses.clone(),
        }
    }
}

impl Session<'_> {
    /// The caller, from `Authorization` (Bearer or Basic) or the `SID` cookie, with the
    /// scope `op` needs and one request of their API budget taken.
    async fn authenticate(&self, op: Op) -> Result<ferry_application::Caller, Response> {
        let accounts = &self.state.accounts;
        let authorization = self
            .req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = if let Some(value) = authorization {
            if let Some(token) = strip_scheme(value, "bearer") {
                accounts.authenticate_bearer(token).await
            } else if let Some(basic) = strip_scheme(value, "basic") {
                let Some((name, token)) = params::decode_basic(basic) else {
                    return Err(forbidden());
                };
                accounts
                    .login_with_token(&name, &token, &client_info(self.req))
                    .await
            } else {
                return Err(forbidden());
            }
        } else if let Some(token) = self.sid() {
            if op.changes() && !self.same_origin() {
                return Err(text(StatusCode::UNAUTHORIZED, "Unauthorized"));
            }
            accounts.authenticate_bearer(&token).await
        } else {
            return Err(forbidden());
        };
        let caller = match caller {
            Ok(caller) => caller,
            Err(ferry_application::AccountsError::RateLimited { retry_after }) => {
                return Err(refusal(ApiError::rate_limited(retry_after)));
            }
            Err(ferry_application::AccountsError::Unavailable(_)) => {
                return Err(refusal(ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "a backend is unavailable; try again shortly",
                )));
            }
            Err(_) => return Err(forbidden()),
        };
        let scope = if op.changes() {
            Scope::Write
        } else {
            Scope::Read
        };
        if let Err(e) = caller.require(scope) {
            return Err(refusal(e.into()));
        }
        if let Err(e) = accounts.limit_api(&caller).await {
            return Err(refusal(e.into()));
        }
        crate::access_log::record_user(caller.user.as_str());
        Ok(caller)
    }

    fn sid(&self) -> Option<String> {
        self.req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, value)| *name == SID && !value.is_empty())
            .map(|(_, value)| value.to_owned())
    }

    /// Whether a browser's `Origin` or `Referer`, when sent, is this server (qBittorrent's
    /// CSRF protection): the host must be the request's `Host`, or Ferry's public URL.
    fn same_origin(&self) -> bool {
        let headers = self.req.headers();
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let claimed = headers
            .get(header::ORIGIN)
            .or_else(|| headers.get(header::REFERER))
            .and_then(|v| v.to_str().ok());
        let Some(claimed) = claimed else {
            return true;
        };
        let Ok(url) = url::Url::parse(claimed) else {
            return false;
        };
        let authority = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => return false,
        };
        host.is_some_and(|h| h.eq_ignore_ascii_case(&authority))
            || self.state.public_origin.as_deref().is_some_and(|o| {
                o.eq_ignore_ascii_case(url.origin().ascii_serialization().as_str())
            })
    }

    async fn login(&self, params: &Params) -> Response {
        if !self.same_origin() {
            return text(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
        let name = params.get("username").unwrap_or_default();
        let token = params.get("password").unwrap_or_default();
        match self
            .state
            .accounts
            .login_with_token(name, token, &client_info(self.req))
            .await
        {
            Ok(_) => Response::builder()
                .header(header::SET_COOKIE, sid_cookie(token.trim(), false))
                .content_type("text/plain; charset=UTF-8")
                .body("Ok."),
            Err(ferry_application::AccountsError::RateLimited { .. }) => text(
                StatusCode::FORBIDDEN,
                "Your IP address has been banned after too many failed authentication attempts.",
            ),
            Err(ferry_application::AccountsError::Unavailable(_)) => refusal(ApiError::new(
                ErrorCode::ServiceUnavailable,
                "a backend is unavailable; try again shortly",
            )),
            Err(_) => text(StatusCode::OK, "Fails."),
        }
    }

    async fn run(&self, op: Op, caller: &ferry_application::Caller, params: &Params) -> Response {
        let owner = &caller.user;
        let result = match op {
            Op::Version => Ok(text(StatusCode::OK, APP_VERSION)),
            Op::WebapiVersion => Ok(text(StatusCode::OK, WEBAPI_VERSION)),
            Op::BuildInfo => Ok(json(&model::build_info())),
            Op::Preferences => Ok(json(&model::preferences(
                &self.state,
                &self.place(owner).default_save_path(),
            ))),
            // Ferry's settings are the operator's; a client's wishes are acknowledged.
            Op::SetPreferences => Ok(ok()),
            Op::DefaultSavePath => Ok(text(StatusCode::OK, self.place(owner).default_save_path())),
            Op::Info => self.info(owner, params).await,
            Op::Properties => self.properties(owner, params).await,
            Op::Files => self.files(owner, params).await,
            Op::Trackers => self.trackers(owner, params).await,
            Op::Add => self.add(caller, params).await,
            Op::Delete => self.delete(caller, params).await,
            Op::Stop | Op::Start => self.stop_or_start(owner, params, op == Op::Start).await,
            Op::SetForceStart => {
                if params.flag("value") == Some(true) {
                    self.stop_or_start(owner, params, true).await
                } else {
                    Ok(ok())
                }
            }
            Op::SetCategory => self.set_category(owner, params).await,
            Op::CreateCategory | Op::EditCategory => {
                self.category(owner, params, op == Op::CreateCategory).await
            }
            Op::RemoveCategories => {
                let names: Vec<String> = params
                    .get("categories")
                    .unwrap_or_default()
                    .split('\n')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect();
                Ok(match self.state.categories.remove(owner, &names).await {
                    Ok(()) => ok(),
                    Err(e) => categories_error(e),
                })
            }
            Op::Categories => self.categories(owner).await,
            Op::AddTags | Op::RemoveTags => self.tag(owner, params, op == Op::AddTags).await,
            Op::Tags => self.tags(owner).await,
            Op::SetShareLimits => self.share_limits(owner, params).await,
            Op::SetDownloadLimit | Op::SetUploadLimit => {
                self.set_speed_limit(owner, params, op == Op::SetDownloadLimit)
                    .await
            }
            Op::DownloadLimit | Op::UploadLimit => {
                self.speed_limits(owner, params, op == Op::DownloadLimit)
                    .await
            }
            // Ferry's queue runs in the order jobs were queued, with nothing to reorder: as
            // qBittorrent answers with queueing off.
            Op::Prio => Ok(text(
                StatusCode::CONFLICT,
                "Torrent queueing must be enabled",
            )),
            Op::Reannounce => self.listed_for(owner, params, "hashes").await.map(|_| ok()),
            Op::TransferInfo => self.transfer_info(owner).await,
            Op::Login | Op::Logout => Ok(ok()),
        };
        result.unwrap_or_else(|response| response)
    }

    /// Where the owner's jobs lie on this server's disks.
    fn place(&self, owner: &OwnerId) -> Place {
        Place {
            local_root: self
                .state
                .local_storage_dir
                .as_ref()
                .map(|d| d.join(owner.as_str())),
            area: self.state.categories.area(owner),
        }
    }

    /// The owner's torrent jobs on this API's list, oldest first: those `wanted` names as
    /// far as the database can tell (info-hashes, a category's jobs, the statuses a
    /// `filter` can match), the rest decided here.
    async fn listed(&self, owner: &OwnerId, wanted: &Wanted<'_>) -> Result<Vec<Listed>, Response> {
        let mut labels = self
            .state
            .categories
            .labels(owner)
            .await
            .map_err(categories_error)?;
        let query = JobQuery {
            owner: owner.clone(),
            status: None,
            name_contains: None,
            before: None,
            limit: MAX_LISTED,
            torrents: Some(wanted.torrent_filter(&labels)),
        };
        let jobs = self
            .state
            .jobs
            .list(&query)
            .await
            .map_err(|e| refusal(e.into()))?;
        let mut listed: Vec<Listed> = jobs
            .into_iter()
            .filter(|job| !job.purge_requested && !matches!(job.source, JobSource::Url(_)))
            .filter_map(|job| {
                let hash = job.info_hash?;
                let labels = labels.remove(&job.id).unwrap_or_default();
                (!labels.removed).then_some(Listed { job, hash, labels })
            })
            .filter(|l| {
                wanted
                    .hashes
                    .as_ref()
                    .is_none_or(|hs| hs.contains(&l.hash.to_hex()))
            })
            .filter(|l| {
                wanted
                    .category
                    .is_none_or(|c| l.labels.category.as_deref().unwrap_or("") == c)
            })
            .collect();
        listed.reverse();
        Ok(listed)
    }

    /// The listed jobs the `key` parameter names (`hash|hash|…` or `all`).
    async fn listed_for(
        &self,
        owner: &OwnerId,
        params: &Params,
        key: &str,
    ) -> Result<Vec<Listed>, Response> {
        self.listed(owner, &Wanted::named(self.hashes_param(params, key)))
            .await
    }

    /// What the `key` parameter names: `None` for every torrent.
    fn hashes_param(&self, params: &Params, key: &str) -> Option<HashSet<String>> {
        // `torrents/info` without `hashes` lists everything; a change names what it changes.
        match params.get(key) {
            None if key == "hashes" && self.req.uri().path().ends_with("/torrents/info") => None,
            given => params::hashes(given.unwrap_or_default()),
        }
    }

    /// The ids of the listed jobs `hashes` names.
    async fn ids_for(&self, owner: &OwnerId, params: &Params) -> Result<Vec<JobId>, Response> {
        let listed = self.listed_for(owner, params, "hashes").await?;
        Ok(listed.iter().map(|l| l.job.id).collect())
    }

    /// The one listed job `hash` names: 404 otherwise (Sonarr polls `properties` to learn
    /// whether a torrent is still there).
    async fn one(&self, owner: &OwnerId, params: &Params) -> Result<Listed, Response> {
        let hash = params
            .get("hash")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        self.listed(owner, &Wanted::named(Some(HashSet::from([hash]))))
            .await?
            .pop()
            .ok_or_else(|| text(StatusCode::NOT_FOUND, "Not Found"))
    }

    async fn folders(
        &self,
        owner: &OwnerId,
    ) -> Result<HashMap<ferry_domain::ProfileId, String>, Response> {
        let profiles = self
            .state
            .profiles
            .list(owner)
            .await
            .map_err(|e| refusal(e.into()))?;
        Ok(profiles
            .into_iter()
            .filter_map(|p| match p.backend {
                ferry_domain::StorageBackend::Folder { path } => Some((p.id, path)),
                _ => None,
            })
            .collect())
    }

    async fn info(&self, owner: &OwnerId, params: &Params) -> Result<Response, Response> {
        let filter = params.get("filter").unwrap_or("all");
        let wanted = Wanted {
            hashes: self.hashes_param(params, "hashes"),
            category: params.get("category"),
            statuses: model::statuses_for(filter),
        };
        let listed = self.listed(owner, &wanted).await?;
        let folders = self.folders(owner).await?;
        let place = self.place(owner);
        let now = chrono::Utc::now();
        let tag = params.get("tag");
        let mut torrents: Vec<TorrentInfo> = listed
            .iter()
            .filter(|l| match tag {
                None => true,
                Some("") => l.labels.tags.is_empty(),
                Some(t) => l.labels.tags.iter().any(|x| x == t),
            })
            .map(|l| TorrentInfo::of(&l.job, l.hash, &l.labels, &place, &folders, now))
            .filter(|t| model::matches_filter(t, filter))
            .collect();
        if let Some(key) = params.get("sort") {
            model::sort(&mut torrents, key);
        }
        if params.flag("reverse") == Some(true) {
            torrents.reverse();
        }
        let offset = params.int("offset").unwrap_or(0);
        let offset = if offset < 0 {
            usize::try_from(i64::try_from(torrents.len()).unwrap_or(i64::MAX) + offset).unwrap_or(0)
        } else {
            usize::try_from(offset).unwrap_or(usize::MAX)
        };
        let limit = params
            .int("limit")
            .filter(|l| *l > 0)
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let page: Vec<&TorrentInfo> = torrents.iter().skip(offset).take(limit).collect();
        Ok(json(&page))
    }

    async fn properties(&self, owner: &OwnerId, params: &Params) -> Result<Response, Response> {
        let l = self.one(owner, params).await?;
        let folders = self.folders(owner).await?;
        let info = TorrentInfo::of(
            &l.job,
            l.hash,
            &l.labels,
            &self.place(owner),
            &folders,
            chrono::Utc::now(),
        );
        Ok(json(&model::properties(&l.job, &info)))
    }

    async fn files(&self, owner: &OwnerId, params: &Params) -> Result<Response, Response> {
        let l = self.one(owner, params).await?;
        Ok(json(&model::files(&l.job)))
    }

    async fn trackers(&self, owner: &OwnerId, params: &Params) -> Result<Response, Response> {
        let l = self.one(owner, params).await?;
        Ok(json(&model::trackers(&l.job)))
    }

    async fn transfer_info(&self, owner: &OwnerId) -> Result<Response, Response> {
        let listed = self.listed(owner, &Wanted::named(None)).await?;
        Ok(json(&model::transfer_info(listed.iter().map(|l| &l.job))))
    }

    async fn add(
        &self,
        caller: &ferry_application::Caller,
        params: &Params,
    ) -> Result<Response, Response> {
        let owner = &caller.user;
        // What to add, checked before anything is fetched: at most MAX_ADDED in all.
        let mut sources: Vec<Source> = Vec::new();
        for line in params.get("urls").unwrap_or_default().lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            sources.push(if line.len() == 40 && line.chars().all(|c| c.is_ascii_hexdigit()) {
                Source::Magnet(format!("magnet:?xt=urn:btih:{line}"))
            } else if line.starts_with("magnet:") {
                Source::Magnet(line.to_owned())
            } else if line.starts_with("http://") || line.starts_with("https://") {
                Source::Link(line.to_owned())
            } else {
                return Err(text(
                    StatusCode::BAD_REQUEST,
                    "urls: each line is a magnet link, an info hash or an http(s) URL of a .torrent",
                ));
            });
        }
        for (index, _) in params.torrents.iter().enumerate() {
            sources.push(Source::Upload(index));
        }
        if sources.is_empty() {
            return Err(text(StatusCode::BAD_REQUEST, "Fails."));
        }
        if sources.len() > MAX_ADDED {
            return Err(text(
                StatusCode::BAD_REQUEST,
                format!("at most {MAX_ADDED} torrents in one request"),
            ));
        }
        let category = params
            .get("category")
            .map(str::trim)
            .filter(|c| !c.is_empty());
        let tags = params.get("tags").unwrap_or_default();
        ferry_application::categories::parse_tags(tags).map_err(categories_error)?;
        let storage_profile = self.destination(owner, params, category).await?;
        let seed = self.seed_policy(params)?;
        // `paused` before WebAPI 2.11, `stopped` since: added, not started.
        let paused = params
            .flag("stopped")
            .or_else(|| params.flag("paused"))
            .unwrap_or(false);
        let quotas = self
            .state
            .accounts
            .quotas_of(owner)
            .await
            .map_err(|e| refusal(e.into()))?;
        // qBittorrent's per-torrent limits, bytes per second (0 or less: none).
        let limits = ferry_domain::SpeedLimits {
            download_bps: params.int("dlLimit").and_then(qb_limit),
            upload_bps: params.int("upLimit").and_then(qb_limit),
        };
        let mut added = 0usize;
        let mut known = 0usize;
        let mut last_error = None;
        for source in sources {
            // One at a time: a fetched .torrent is submitted, then dropped.
            let submission = match source {
                Source::Magnet(text) => Submission::Magnet(text),
                Source::Upload(index) => Submission::Torrent(params.torrents[index].1.clone()),
                Source::Link(url) => match self
                    .state
                    .jobs
                    .fetch_torrent(&url, self.state.max_torrent_bytes)
                    .await
                {
                    Ok(bytes) => Submission::Torrent(bytes),
                    Err(e) => {
                        last_error = Some(ApiError::from(e));
                        continue;
                    }
                },
            };
            // A torrent already on the list, whatever its state, is not added again (nor
            // moved to this category): qBittorrent answers `Fails.` for one it has.
            if self.is_listed(owner, &submission).await? {
                known += 1;
                continue;
            }
            let options = SubmitOptions {
                files: None,
                storage_profile,
                seed,
                paused,
                id: None,
                limits,
            };
            let submitted = match self
                .state
                .jobs
                .submit_within(owner.clone(), submission.clone(), options, quotas)
                .await
            {
                // The seeding allowance is used up: the torrent is still wanted, unseeded.
                Err(ferry_application::JobsError::QuotaExceeded {
                    quota: "seeding_jobs",
                    ..
                }) => {
                    let options = SubmitOptions {
                        files: None,
                        storage_profile,
                        seed: None,
                        paused,
                        id: None,
                        limits,
                    };
                    self.state
                        .jobs
                        .submit_within(owner.clone(), submission, options, quotas)
                        .await
                }
                other => other,
            };
            let id = match submitted {
                Ok(job) => {
                    self.audit(caller, "job.submit", job.id.to_string()).await;
                    job.id
                }
                // Unfinished but off the list (removed from it while its delivery was under
                // way): added again, it is back on the list, as a removed torrent would be.
                Err(ferry_application::JobsError::Duplicate(id)) => {
                    if !self.restore(owner, id).await? {
                        let e = ferry_application::JobsError::Duplicate(id);
                        last_error = Some(ApiError::from(e));
                        continue;
                    }
                    id
                }
                Err(e) => {
                    last_error = Some(ApiError::from(e));
                    continue;
                }
            };
            added += 1;
            self.label(owner, id, category, tags).await;
        }
        match (added, last_error) {
            (0, Some(e)) if e.code() == ErrorCode::InvalidTorrent.as_str() => Err(text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Torrent file is not valid. ({})", e.message()),
            )),
            (0, Some(e)) => Err(refusal(e)),
            // Every torrent named was already there.
            (0, None) if known > 0 => Ok(text(StatusCode::OK, "Fails.")),
            _ => Ok(ok()),
        }
    }

    /// Whether the torrent `submission` names is on the owner's list already (a submission
    /// that does not parse is not: submitting it says why).
    async fn is_listed(&self, owner: &OwnerId, submission: &Submission) -> Result<bool, Response> {
        let hash = match submission {
            Submission::Magnet(text) => ferry_domain::MagnetLink::parse(text)
                .ok()
                .map(|m| m.info_hash()),
            Submission::Torrent(bytes) => self.state.jobs.analyze(bytes).ok().map(|m| m.info_hash),
            Submission::Url(_) => None,
        };
        let Some(hash) = hash else {
            return Ok(false);
        };
        let wanted = Wanted::named(Some(HashSet::from([hash.to_hex()])));
        Ok(!self.listed(owner, &wanted).await?.is_empty())
    }

    /// Puts the owner's unfinished job `id`, taken off the list, back on it; `false` when
    /// it is being deleted (then it stays a duplicate).
    async fn restore(&self, owner: &OwnerId, id: JobId) -> Result<bool, Response> {
        match self.state.jobs.get(owner, id).await {
            Ok(job) if !job.purge_requested => {}
            Ok(_) | Err(ferry_application::JobsError::NotFound) => return Ok(false),
            Err(e) => return Err(refusal(e.into())),
        }
        self.state
            .categories
            .set_removed(owner, &[id], false)
            .await
            .map_err(categories_error)?;
        Ok(true)
    }

    /// Where added torrents go: an explicit save path, the category's folder (a category
    /// named for the first time is made, as qBittorrent does), else the user's default
    /// destination.
    async fn destination(
        &self,
        owner: &OwnerId,
        params: &Params,
        category: Option<&str>,
    ) -> Result<Option<ferry_domain::ProfileId>, Response> {
        let categories = &self.state.categories;
        if let Some(path) = params.get("savepath").filter(|p| !p.trim().is_empty()) {
            return categories
                .folder_for(owner, path)
                .await
                .map_err(categories_error);
        }
        let Some(category) = category else {
            return self.default_profile(owner).await;
        };
        let folder = match categories.destination(owner, category).await {
            Ok(folder) => folder,
            Err(CategoriesError::NotFound) => match categories.create(owner, category, "").await {
                Ok(created) => created.profile,
                // Made meanwhile by another request.
                Err(CategoriesError::Exists) => categories
                    .destination(owner, category)
                    .await
                    .map_err(categories_error)?,
                Err(e) => return Err(categories_error(e)),
            },
            Err(e) => return Err(categories_error(e)),
        };
        match folder {
            Some(profile) => Ok(Some(profile)),
            None => self.default_profile(owner).await,
        }
    }

    /// Puts a new job in its category and tags; a job gone meanwhile is left alone (the
    /// job exists: the add has succeeded).
    async fn label(&self, owner: &OwnerId, job: JobId, category: Option<&str>, tags: &str) {
        let categories = &self.state.categories;
        let mut done = Ok(());
        if let Some(category) = category {
            done = categories.set_category(owner, &[job], category).await;
        }
        if done.is_ok() {
            done = categories.tag(owner, &[job], tags, true).await;
        }
        if let Err(e) = done {
            tracing::warn!(job_id = %job, error = %e, "could not label a job added through /api/v2");
        }
    }

    async fn default_profile(
        &self,
        owner: &OwnerId,
    ) -> Result<Option<ferry_domain::ProfileId>, Response> {
        self.state
            .profiles
            .default_of(owner)
            .await
            .map_err(|e| refusal(e.into()))
    }

    /// The seeding wanted by `ratioLimit` / `seedingTimeLimit` (minutes) /
    /// `inactiveSeedingTimeLimit`: -2 is the server's default, -1 no limit. Torrents added
    /// here seed, as qBittorrent's do, until the first limit is reached (`seed.default` is
    /// for Ferry's own API).
    fn seed_policy(&self, params: &Params) -> Result<Option<ferry_domain::SeedPolicy>, Response> {
        let ratio = params.float("ratioLimit");
        let time = params.int("seedingTimeLimit");
        let idle = params.int("inactiveSeedingTimeLimit");
        if ratio.is_some_and(|r| !r.is_finite()) {
            return Err(text(StatusCode::BAD_REQUEST, "ratioLimit must be a number"));
        }
        let defaults = self.state.seed_limits;
        let minutes = |v: Option<i64>, default: Option<u64>| match v {
            Some(m) if m >= 0 => Some(u64::try_from(m).unwrap_or(0).saturating_mul(60)),
            Some(-1) => None,
            _ => default,
        };
        Ok(Some(ferry_domain::SeedPolicy {
            ratio: match ratio {
                Some(r) if r >= 0.0 => Some(r),
                Some(r) if r > -1.5 => None,
                _ => defaults.ratio,
            },
            time_secs: minutes(time, defaults.time_secs),
            idle_secs: minutes(idle, defaults.idle_secs),
        }))
    }

    async fn delete(
        &self,
        caller: &ferry_application::Caller,
        params: &Params,
    ) -> Result<Response, Response> {
        let owner = &caller.user;
        let with_files = params.flag("deleteFiles") == Some(true);
        let listed = self.listed_for(owner, params, "hashes").await?;
        let mut kept = Vec::new();
        for l in &listed {
            if with_files {
                match self.state.jobs.cancel(owner, l.job.id, true).await {
                    Ok(_) | Err(ferry_application::JobsError::NotFound) => {}
                    Err(e) => return Err(refusal(e.into())),
                }
                self.audit(caller, "job.delete", l.job.id.to_string()).await;
            } else {
                // Off the list, files kept: a job still under way stops first.
                if !l.job.status.is_terminal() {
                    match self.state.jobs.cancel(owner, l.job.id, false).await {
                        Ok(_)
                        | Err(ferry_application::JobsError::NotFound)
                        | Err(ferry_application::JobsError::IllegalTransition(_)) => {}
                        Err(e) => return Err(refusal(e.into())),
                    }
                }
                kept.push(l.job.id);
                self.audit(caller, "job.remove", l.job.id.to_string()).await;
            }
        }
        self.state
            .categories
            .set_removed(owner, &kept, true)
            .await
            .map_err(categories_error)?;
        Ok(ok())
    }

    async fn stop_or_start(
        &self,
        owner: &OwnerId,
        params: &Params,
        start: bool,
    ) -> Result<Response, Response> {
        for l in self.listed_for(owner, params, "hashes").await? {
            let done = if start {
                match l.job.status {
                    JobStatus::Paused => self.state.jobs.resume(owner, l.job.id).await.map(|_| ()),
                    // A failed torrent started again is retried.
                    JobStatus::Failed => match self.state.accounts.quotas_of(owner).await {
                        Ok(quotas) => self
                            .state
                            .jobs
                            .retry_within(owner, l.job.id, quotas)
                            .await
                            .map(|_| ()),
                        Err(e) => return Err(refusal(e.into())),
                    },
                    _ => Ok(()),
                }
            } else if l.job.status.is_terminal() || l.job.status == JobStatus::Paused {
                Ok(())
            } else if l.job.status == JobStatus::Seeding {
                // Stopping a seeding torrent ends its seeding; the files stay.
                self.state
                    .jobs
                    .cancel(owner, l.job.id, false)
                    .await
                    .map(|_| ())
            } else {
                self.state.jobs.pause(owner, l.job.id).await.map(|_| ())
            };
            match done {
                Ok(())
                | Err(ferry_application::JobsError::IllegalTransition(_))
                | Err(ferry_application::JobsError::NotFound) => {}
                Err(e) => return Err(refusal(e.into())),
            }
        }
        Ok(ok())
    }

    async fn set_category(&self, owner: &OwnerId, params: &Params) -> Result<Response, Response> {
        let category = params.get("category").unwrap_or_default().trim();
        let jobs = self.ids_for(owner, params).await?;
        self.state
            .categories
            .set_category(owner, &jobs, category)
            .await
            .map_err(categories_error)?;
        Ok(ok())
    }

    async fn category(
        &self,
        owner: &OwnerId,
        params: &Params,
        create: bool,
    ) -> Result<Response, Response> {
        let name = params.get("category").unwrap_or_default().trim();
        let save_path = params.get("savePath").unwrap_or_default();
        let categories = &self.state.categories;
        let done = if create {
            categories.create(owner, name, save_path).await
        } else {
            categories.edit(owner, name, save_path).await
        };
        done.map_err(categories_error)?;
        Ok(ok())
    }

    async fn categories(&self, owner: &OwnerId) -> Result<Response, Response> {
        let categories = &self.state.categories;
        let list = categories.list(owner).await.map_err(categories_error)?;
        let map: serde_json::Map<String, serde_json::Value> = list
            .iter()
            .map(|c| {
                let save_path = categories
                    .folder_of(owner, c)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                (
                    c.name.clone(),
                    serde_json::json!({ "name": c.name, "savePath": save_path }),
                )
            })
            .collect();
        Ok(json(&map))
    }

    async fn tag(&self, owner: &OwnerId, params: &Params, add: bool) -> Result<Response, Response> {
        let jobs = self.ids_for(owner, params).await?;
        self.state
            .categories
            .tag(owner, &jobs, params.get("tags").unwrap_or_default(), add)
            .await
            .map_err(categories_error)?;
        Ok(ok())
    }

    async fn tags(&self, owner: &OwnerId) -> Result<Response, Response> {
        let labels = self
            .state
            .categories
            .labels(owner)
            .await
            .map_err(categories_error)?;
        let mut tags: Vec<&String> = labels.values().flat_map(|l| &l.tags).collect();
        tags.sort();
        tags.dedup();
        Ok(json(&tags))
    }

    /// `torrents/setDownloadLimit` / `setUploadLimit`: `limit` in bytes per second for each
    /// of `hashes`; 0 or less removes it, and a limit under Ferry's least (16 KiB/s) is
    /// raised to it.
    async fn set_speed_limit(
        &self,
        owner: &OwnerId,
        params: &Params,
        download: bool,
    ) -> Result<Response, Response> {
        let Some(limit) = params.int("limit") else {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "limit must be a whole number",
            ));
        };
        let bps = qb_limit(limit);
        // One direction only: a concurrent change of the other stands.
        let change = if download {
            ferry_domain::SpeedLimitsChange {
                download_bps: Some(bps),
                upload_bps: None,
            }
        } else {
            ferry_domain::SpeedLimitsChange {
                download_bps: None,
                upload_bps: Some(bps),
            }
        };
        for l in self.listed_for(owner, params, "hashes").await? {
            self.state
                .jobs
                .set_speed_limits(owner, l.job.id, change)
                .await
                .map_err(|e| refusal(e.into()))?;
        }
        Ok(ok())
    }

    /// `torrents/downloadLimit` / `uploadLimit`: `{hash: bytes per second}`, 0 for none.
    async fn speed_limits(
        &self,
        owner: &OwnerId,
        params: &Params,
        download: bool,
    ) -> Result<Response, Response> {
        let mut out = std::collections::BTreeMap::new();
        for l in self.listed_for(owner, params, "hashes").await? {
            let limits = l.job.speed_limits;
            let bps = if download {
                limits.download_bps
            } else {
                limits.upload_bps
            };
            out.insert(l.hash.to_hex(), bps.map_or(0, |b| i64::from(b.get())));
        }
        Ok(json(&out))
    }

    async fn share_limits(&self, owner: &OwnerId, params: &Params) -> Result<Response, Response> {
        if params.get("ratioLimit").is_none() && params.get("seedingTimeLimit").is_none() {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "ratioLimit and seedingTimeLimit are required",
            ));
        }
        let seed = self.seed_policy(params)?;
        for l in self.listed_for(owner, params, "hashes").await? {
            self.state
                .jobs
                .set_seed_policy(owner, l.job.id, seed)
                .await
                .map_err(|e| refusal(e.into()))?;
        }
        Ok(ok())
    }

    async fn audit(&self, caller: &ferry_application::Caller, action: &str, target: String) {
        self.state
            .accounts
            .audit_success(
                Some(&caller.user),
                action,
                Some(target),
                &client_info(self.req),
                "qBittorrent API",
            )
            .await;
    }
}

/// A qBittorrent speed limit (bytes per second; 0 or less: none) as Ferry's: at least
/// [`ferry_domain::SpeedLimits::MIN_BPS`], at most `u32::MAX`.
fn qb_limit(limit: i64) -> Option<std::num::NonZeroU32> {
    if limit <= 0 {
        return None;
    }
    let bps = u32::try_from(limit)
        .unwrap_or(u32::MAX)
        .max(ferry_domain::SpeedLimits::MIN_BPS);
    std::num::NonZeroU32::new(bps)
}

/// The credentials after `scheme ` in an `Authorization` value (scheme case-insensitive).
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.trim().split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

#[allow(dead_code)]
fn into_response(r: impl IntoResponse) -> Response {
    r.into_response()
}

#[allow(dead_code)]
fn empty_body() -> Body {
    Body::empty()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// What `torrents/info` asks of the database: the hashes named (one that is not a hash
    /// matching nothing), a category's jobs still on the list, the statuses of a filter.
    #[test]
    fn the_database_is_asked_only_for_what_a_request_names() {
        let (tv, other, removed) = (JobId::new(), JobId::new(), JobId::new());
        let labels: HashMap<JobId, JobLabels> = [
            (tv, Some("tv"), false),
            (other, Some("films"), false),
            (removed, Some("tv"), true),
        ]
        .into_iter()
        .map(|(id, category, removed)| {
            let labels = JobLabels {
                category: category.map(str::to_owned),
                tags: Vec::new(),
                removed,
            };
            (id, labels)
        })
        .collect();
        let hash = "ab".repeat(20);
        let wanted = Wanted {
            hashes: Some(HashSet::from([hash.clone(), "nonsense".to_owned()])),
            category: Some("tv"),
            statuses: model::statuses_for("seeding"),
        };
        let filter = wanted.torrent_filter(&labels);
        assert_eq!(
            filter.info_hashes,
            Some(vec![InfoHash::parse(&hash).unwrap()])
        );
        assert_eq!(filter.ids, Some(vec![tv]));
        assert_eq!(filter.statuses, Some(vec![JobStatus::Seeding]));
        // Nothing named: every torrent; no category (`""`) is decided on the rows.
        let all = Wanted::named(None).torrent_filter(&labels);
        assert_eq!(all, TorrentFilter::default());
        let uncategorised = Wanted {
            category: Some(""),
            ..Wanted::named(None)
        };
        assert_eq!(uncategorised.torrent_filter(&labels).ids, None);
        // Too many to bind: left to the checks on the rows.
        let many = Wanted::named(Some(
            (0..=MAX_FILTER_VALUES)
                .map(|i| format!("{i:040x}"))
                .collect(),
        ));
        assert_eq!(many.torrent_filter(&labels).info_hashes, None);
    }
}
