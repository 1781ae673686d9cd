//! `DriveStore`: delivery to a Google Drive folder over the Drive v3 REST API.
//!
//! Each key `{owner}/{job}/{path}` becomes folders under the profile's folder, mirroring the
//! torrent's tree, with the file in the last one. Files go up as resumable uploads in chunks
//! (a multiple of 256 KiB): the session URI is remembered per job and key, so a worker that
//! dies mid-upload is followed by one that asks the session how far it got and sends the
//! rest. Access tokens come from the user's refresh token at the operator's OAuth client.
//! See ADR 0003 for why this speaks the protocol itself rather than through google-drive3.
//!
//! Connections resolve names through the storage [`NetGuard`]; literal addresses (in the
//! configured URLs and in the session URIs Drive hands out) are checked before use, and
//! redirects are not followed, so Drive's answers cannot steer a worker to an internal host.

mod consent;
#[cfg(feature = "fake")]
pub mod fake;

pub use consent::{ConsentSettings, DRIVE_SCOPE, GoogleConsent};

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferry_application::ports::{
    ObjectLocation, ObjectStore, PutRequest, StoreError, StoredObject, UploadSessions,
};
use ferry_domain::{JobId, StorageKey};
use ferry_net::{NetGuard, ReqwestResolver};
use reqwest::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::Mutex;

const FOLDER: &str = "application/vnd.google-apps.folder";
/// Chunks must be multiples of this.
pub const CHUNK_UNIT: u64 = 256 * 1024;

#[derive(Clone)]
pub struct DriveSettings {
    /// `https://www.googleapis.com/` (Drive's `rootUrl`).
    pub api_url: url::Url,
    /// `https://oauth2.googleapis.com/token`.
    pub token_url: url::Url,
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    /// The profile's folder.
    pub folder_id: String,
    /// Bytes per upload request (rounded down to 256 KiB, at least 256 KiB).
    pub chunk_size: u64,
}

impl std::fmt::Debug for DriveSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriveSettings")
            .field("api_url", &self.api_url.as_str())
            .field("folder_id", &self.folder_id)
            .finish_non_exhaustive()
    }
}

pub struct DriveStore {
    http: reqwest::Client,
    guard: Arc<NetGuard>,
    settings: DriveSettings,
    sessions: Arc<dyn UploadSessions>,
    token: Mutex<Option<(String, Instant)>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DriveFile {
    id: String,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    web_view_link: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FileList {
    #[serde(default)]
    files: Vec<DriveFile>,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

fn unreachable(e: reqwest::Error) -> StoreError {
    if let Some(refused) = ferry_net::refusal(&e) {
        return StoreError::NotAllowed(refused.0.clone());
    }
    // Session URIs carry the upload id in their query: keep URLs out of the message.
    let e = e.without_url();
    let cause = std::error::Error::source(&e)
        .map(|c| format!(": {c}"))
        .unwrap_or_default();
    StoreError::Unreachable(format!("Google Drive: {e}{cause}"))
}

/// Maps an unexpected HTTP status to the port's errors.
async fn status_error(what: &str, resp: reqwest::Response) -> StoreError {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            StoreError::AuthFailed(format!("Google Drive refused {what}: {status} {body}"))
        }
        StatusCode::NOT_FOUND => StoreError::NotFound,
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            StoreError::Unreachable(format!("Google Drive answered {what} with {status}"))
        }
        _ => StoreError::Unexpected(anyhow::anyhow!(
            "Google Drive answered {what} with {status}: {body}"
        )),
    }
}

/// Literal addresses never reach the resolver: check them against the guard.
fn check_literal(guard: &NetGuard, url: &url::Url) -> Result<(), StoreError> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => std::net::IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => std::net::IpAddr::V6(v6),
        _ => return Ok(()),
    };
    guard.check_ip(ip).map_err(|r| StoreError::NotAllowed(r.0))
}

/// The HTTP client of every connection to Google: names resolved through `guard`, no
/// redirects followed.
fn client(guard: &Arc<NetGuard>) -> Result<reqwest::Client, StoreError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(300))
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(ReqwestResolver(guard.clone())))
        .build()
        .map_err(|e| StoreError::Unexpected(e.into()))
}

/// A Drive query string literal.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl DriveStore {
    /// A store whose connections resolve names through `guard`.
    ///
    /// # Errors
    /// `NotAllowed` when the API or token URL is a literal address the guard refuses.
    pub fn new(
        settings: DriveSettings,
        sessions: Arc<dyn UploadSessions>,
        guard: Arc<NetGuard>,
    ) -> Result<Self, StoreError> {
        let mut settings = settings;
        settings.chunk_size = (settings.chunk_size / CHUNK_UNIT).max(1) * CHUNK_UNIT;
        check_literal(&guard, &settings.api_url)?;
        check_literal(&guard, &settings.token_url)?;
        let http = client(&guard)?;
        Ok(Self {
            http,
            guard,
            settings,
            sessions,
            token: Mutex::new(None),
        })
    }

    /// A session URI Drive handed out (or a worker remembered), checked like the API's.
    fn session_uri(&self, uri: &str) -> Result<url::Url, StoreError> {
        let url = url::Url::parse(uri)
            .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("bad upload session URI: {e}")))?;
        check_literal(&self.guard, &url)?;
        Ok(url)
    }

    fn url(&self, path: &str) -> Result<url::Url, StoreError> {
        self.settings
            .api_url
            .join(path)
            .map_err(|e| StoreError::Unexpected(e.into()))
    }

    /// A valid access token, refreshed a minute before it expires.
    async fn access_token(&self) -> Result<String, StoreError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let resp = self
            .http
            .post(self.settings.token_url.clone())
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", self.settings.refresh_token.as_str()),
                ("client_id", self.settings.client_id.as_str()),
                ("client_secret", self.settings.client_secret.as_str()),
            ])
            .send()
            .await
            .map_err(unreachable)?;
        if resp.status() == StatusCode::BAD_REQUEST || resp.status() == StatusCode::UNAUTHORIZED {
            return Err(StoreError::AuthFailed(
                "Google refused the refresh token (revoked or expired?)".to_owned(),
            ));
        }
        if !resp.status().is_success() {
            return Err(status_error("the token refresh", resp).await);
        }
        let token: TokenResponse = resp
            .json()
            .await
            .map_err(|e| StoreError::Unexpected(e.into()))?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600).saturating_sub(60));
        *cached = Some((token.access_token.clone(), Instant::now() + lifetime));
        Ok(token.access_token)
    }

    async fn find(
        &self,
        parent: &str,
        name: &str,
        folder: bool,
    ) -> Result<Option<DriveFile>, StoreError> {
        let mut q = format!(
            "name = {} and {} in parents and trashed = false",
            quoted(name),
            quoted(parent)
        );
        if folder {
            q.push_str(&format!(" and mimeType = {}", quoted(FOLDER)));
        }
        let resp = self
            .http
            .get(self.url("drive/v3/files")?)
            .bearer_auth(self.access_token().await?)
            .query(&[
                ("q", q.as_str()),
                ("fields", "files(id,size,webViewLink)"),
                ("spaces", "drive"),
            ])
            .send()
            .await
            .map_err(unreachable)?;
        if !resp.status().is_success() {
            return Err(status_error("a search", resp).await);
        }
        let list: FileList = resp
            .json()
            .await
            .map_err(|e| StoreError::Unexpected(e.into()))?;
        Ok(list.files.into_iter().next())
    }

    async fn create_folder(&self, parent: &str, name: &str) -> Result<String, StoreError> {
        let resp = self
            .http
            .post(self.url("drive/v3/files")?)
            .bearer_auth(self.access_token().await?)
            .query(&[("fields", "id")])
            .json(&serde_json::json!({ "name": name, "mimeType": FOLDER, "parents": [parent] }))
            .send()
            .await
            .map_err(unreachable)?;
        if !resp.status().is_success() {
            return Err(status_error("a folder creation", resp).await);
        }
        let f: DriveFile = resp
            .json()
            .await
            .map_err(|e| StoreError::Unexpected(e.into()))?;
        Ok(f.id)
    }

    /// The folder for `segments` under the profile's folder; created when `create`.
    async fn folder(&self, segments: &[&str], create: bool) -> Result<Option<String>, StoreError> {
        let mut parent = self.settings.folder_id.clone();
        for name in segments {
            parent = match self.find(&parent, name, true).await? {
                Some(f) => f.id,
                None if create => self.create_folder(&parent, name).await?,
                None => return Ok(None),
            };
        }
        Ok(Some(parent))
    }

    /// The file at `key`, if any.
    async fn file(&self, key: &StorageKey) -> Result<Option<DriveFile>, StoreError> {
        let segments: Vec<&str> = key.segments().collect();
        let Some((name, dirs)) = segments.split_last() else {
            return Ok(None);
        };
        match self.folder(dirs, false).await? {
            Some(folder) => self.find(&folder, name, false).await,
            None => Ok(None),
        }
    }

    async fn delete_id(&self, id: &str) -> Result<(), StoreError> {
        let resp = self
            .http
            .delete(self.url(&format!("drive/v3/files/{id}"))?)
            .bearer_auth(self.access_token().await?)
            .send()
            .await
            .map_err(unreachable)?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(status_error("a delete", resp).await),
        }
    }

    async fn start_session(
        &self,
        folder: &str,
        name: &str,
        size: u64,
    ) -> Result<String, StoreError> {
        let resp = self
            .http
            .post(self.url("upload/drive/v3/files")?)
            .bearer_auth(self.access_token().await?)
            .query(&[("uploadType", "resumable"), ("fields", "id,size")])
            .header("X-Upload-Content-Type", "application/octet-stream")
            .header("X-Upload-Content-Length", size.to_string())
            .json(&serde_json::json!({ "name": name, "parents": [folder] }))
            .send()
            .await
            .map_err(unreachable)?;
        if !resp.status().is_success() {
            return Err(status_error("an upload session", resp).await);
        }
        let uri = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Unexpected(anyhow::anyhow!("no upload session URI")))?;
        self.session_uri(&uri)?;
        Ok(uri)
    }

    /// How many bytes the session holds; `None` when it is gone (expired or finished).
    async fn session_offset(&self, uri: &str, size: u64) -> Result<Option<u64>, StoreError> {
        let uri = self.session_uri(uri)?;
        let resp = self
            .http
            .put(uri)
            .bearer_auth(self.access_token().await?)
            .header(reqwest::header::CONTENT_RANGE, format!("bytes */{size}"))
            .header(reqwest::header::CONTENT_LENGTH, "0")
            .send()
            .await
            .map_err(unreachable)?;
        match resp.status().as_u16() {
            308 => Ok(Some(received(&resp))),
            // Finished before the worker could record it: upload again to be sure of the bytes.
            200 | 201 | 404 | 410 => Ok(None),
            _ => Err(status_error("an upload status query", resp).await),
        }
    }

    async fn send(
        &self,
        req: &PutRequest<'_>,
        uri: &str,
        size: u64,
        mut offset: u64,
    ) -> Result<StoredObject, StoreError> {
        let uri = self.session_uri(uri)?;
        let mut file = match tokio::fs::File::open(req.source).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NotFound),
            Err(e) => return Err(StoreError::Unexpected(e.into())),
        };
        // The digest covers the whole file, including what an earlier run already sent.
        let mut hasher = Sha256::new();
        let mut hashed = 0u64;
        let mut buf = vec![0u8; self.settings.chunk_size as usize];
        let read = |e: std::io::Error| StoreError::Unexpected(e.into());
        while hashed < offset {
            let want = (offset - hashed).min(buf.len() as u64) as usize;
            file.read_exact(&mut buf[..want]).await.map_err(read)?;
            hasher.update(&buf[..want]);
            hashed += want as u64;
        }
        (req.progress)(offset);
        loop {
            let len = (size - offset).min(self.settings.chunk_size) as usize;
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(read)?;
            file.read_exact(&mut buf[..len]).await.map_err(read)?;
            if offset == hashed {
                hasher.update(&buf[..len]);
                hashed += len as u64;
            }
            let range = if size == 0 {
                "bytes */0".to_owned()
            } else {
                format!("bytes {offset}-{}/{size}", offset + len as u64 - 1)
            };
            let resp = self
                .http
                .put(uri.clone())
                .bearer_auth(self.access_token().await?)
                .header(reqwest::header::CONTENT_RANGE, range)
                .body(buf[..len].to_vec())
                .send()
                .await
                .map_err(unreachable)?;
            match resp.status().as_u16() {
                200 | 201 => {
                    (req.progress)(size);
                    let sha256 = hex::encode(hasher.finalize());
                    return Ok(StoredObject { size, sha256 });
                }
                308 => {
                    let next = received(&resp);
                    // The server keeps what it got; go on from there.
                    offset = next.min(size);
                    if offset > hashed {
                        return Err(StoreError::Unexpected(anyhow::anyhow!(
                            "the upload session skipped ahead to {offset}"
                        )));
                    }
                    (req.progress)(offset);
                }
                _ => return Err(status_error("an upload chunk", resp).await),
            }
        }
    }
}

/// Bytes a 308 response says the session holds (`Range: bytes=0-N` → N+1; none → 0).
fn received(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get(reqwest::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit('-').next())
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |last| last + 1)
}

#[async_trait]
impl ObjectStore for DriveStore {
    async fn put_file(&self, req: PutRequest<'_>) -> Result<StoredObject, StoreError> {
        let size = match tokio::fs::metadata(req.source).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NotFound),
            Err(e) => return Err(StoreError::Unexpected(e.into())),
        };
        let segments: Vec<&str> = req.key.segments().collect();
        let Some((name, dirs)) = segments.split_last() else {
            return Err(StoreError::Unexpected(anyhow::anyhow!("empty key")));
        };
        let remembered = self
            .sessions
            .get(req.job, req.key.as_str())
            .await
            .map_err(|e| StoreError::Unexpected(e.into()))?;
        let resumed = match remembered {
            Some(uri) => self.session_offset(&uri, size).await?.map(|at| (uri, at)),
            None => None,
        };
        let (uri, offset) = match resumed {
            Some((uri, at)) => {
                tracing::info!(key = %req.key, at, "resuming a Drive upload");
                (uri, at)
            }
            None => {
                let folder = self
                    .folder(dirs, true)
                    .await?
                    .ok_or_else(|| StoreError::Unexpected(anyhow::anyhow!("no folder")))?;
                // Replacing: a file of the same name goes first.
                if let Some(old) = self.find(&folder, name, false).await? {
                    self.delete_id(&old.id).await?;
                }
                let uri = self.start_session(&folder, name, size).await?;
                self.sessions
                    .set(req.job, req.key.as_str(), Some(&uri))
                    .await
                    .map_err(|e| StoreError::Unexpected(e.into()))?;
                (uri, 0)
            }
        };
        let stored = self.send(&req, &uri, size, offset).await?;
        let _ = self.sessions.set(req.job, req.key.as_str(), None).await;
        Ok(stored)
    }

    async fn abort_uploads(&self, job: JobId) -> Result<(), StoreError> {
        let sessions = self
            .sessions
            .of_job(job)
            .await
            .map_err(|e| StoreError::Unexpected(e.into()))?;
        for (key, uri) in sessions {
            // Cancelling a session is best effort: Drive expires it in a week anyway.
            if let (Ok(token), Ok(uri)) = (self.access_token().await, self.session_uri(&uri)) {
                let _ = self.http.delete(uri).bearer_auth(token).send().await;
            }
            let _ = self.sessions.set(job, &key, None).await;
        }
        Ok(())
    }

    async fn size(&self, key: &StorageKey) -> Result<Option<u64>, StoreError> {
        Ok(self
            .file(key)
            .await?
            .map(|f| f.size.and_then(|s| s.parse().ok()).unwrap_or(0)))
    }

    async fn locate(&self, key: &StorageKey) -> Result<ObjectLocation, StoreError> {
        let f = self.file(key).await?.ok_or(StoreError::NotFound)?;
        Ok(ObjectLocation::Url(f.web_view_link.unwrap_or_else(|| {
            format!("https://drive.google.com/file/d/{}/view", f.id)
        })))
    }

    async fn delete_prefix(&self, prefix: &StorageKey) -> Result<(), StoreError> {
        let segments: Vec<&str> = prefix.segments().collect();
        if let Some(folder) = self.folder(&segments, false).await? {
            self.delete_id(&folder).await?;
        }
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        let resp = self
            .http
            .get(self.url(&format!("drive/v3/files/{}", self.settings.folder_id))?)
            .bearer_auth(self.access_token().await?)
            .query(&[("fields", "id,mimeType")])
            .send()
            .await
            .map_err(unreachable)?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(StoreError::Unreachable(format!(
                "Drive folder {} does not exist or is not shared with this account",
                self.settings.folder_id
            ))),
            _ => Err(status_error("the folder check", resp).await),
        }
    }
}
