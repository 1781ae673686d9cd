//! `S3Store`: delivery to any S3-compatible bucket with aws-sdk-s3.
//!
//! Small files go up in one `PutObject`; larger ones as a multipart upload whose parts are
//! read in order (hashing the whole file for its SHA-256 on the way) and sent `concurrency`
//! at a time, so memory stays near `2 × concurrency × part_size` whatever the file size. The
//! upload id is remembered per job and key: a worker that dies mid-upload is followed by one
//! that lists the parts already there and sends only the rest. A failed upload is aborted.
//! Downloads are presigned `GET` URLs.
//!
//! Every connection resolves names through the storage [`NetGuard`] (an endpoint, or a
//! virtual-hosted `{bucket}.{endpoint}`, that resolves to an internal address is refused when
//! it connects) and a literal internal endpoint is refused when the store is built.
//!
//! S3-compatible servers differ: when the answer to `CompleteMultipartUpload` cannot be read
//! (moto answers with another root element) or never arrives, the object is looked at
//! (`HeadObject`: size and multipart ETag) before the upload counts as failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    timeout::TimeoutConfig,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use bytes::Bytes;
use ferry_application::ports::{
    ObjectLocation, ObjectStore, PutRequest, StoreError, StoredObject, UploadSessions,
};
use ferry_domain::{JobId, StorageKey};
use ferry_net::{GuardError, NetGuard};
use futures::StreamExt;
use sha2::{Digest, Sha256};

/// The smallest part S3 accepts (except the last).
pub const MIN_PART: u64 = 5 << 20;
/// Most parts one upload may have.
const MAX_PARTS: u64 = 10_000;

#[derive(Clone)]
pub struct S3Settings {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Keys start with `{prefix}/` when set.
    pub prefix: Option<String>,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Bytes per part (at least 5 MiB); files up to this size go up in one request.
    pub part_size: u64,
    /// Parts in flight at once.
    pub concurrency: usize,
    /// How long a presigned download URL stays valid.
    pub presign_ttl: Duration,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

pub struct S3Store {
    client: Client,
    settings: S3Settings,
    sessions: Arc<dyn UploadSessions>,
}

/// The resolver of every connection: names go through the storage guard.
#[derive(Debug, Clone)]
struct GuardedDns(Arc<NetGuard>);

impl aws_smithy_runtime_api::client::dns::ResolveDns for GuardedDns {
    fn resolve_dns<'a>(
        &'a self,
        name: &'a str,
    ) -> aws_smithy_runtime_api::client::dns::DnsFuture<'a> {
        aws_smithy_runtime_api::client::dns::DnsFuture::new(async move {
            self.0.resolve(name).await.map_err(|e| match e {
                GuardError::Refused(r) => {
                    aws_smithy_runtime_api::client::dns::ResolveDnsError::new(r)
                }
                GuardError::Lookup(e) => {
                    aws_smithy_runtime_api::client::dns::ResolveDnsError::new(e)
                }
            })
        })
    }
}

/// Error codes that mean the credentials are wrong.
const AUTH_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
];

/// Maps an SDK error onto the port's: connection problems are "unreachable" (or "not
/// allowed" when the guard refused the address), refused credentials "auth failed", missing
/// keys "not found". The strings are for the log.
fn store_error<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let Some(refused) = ferry_net::refusal(&e) {
        return StoreError::NotAllowed(refused.0.clone());
    }
    let detail = || format!("{}", aws_sdk_s3::error::DisplayErrorContext(&e));
    match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            StoreError::Unreachable(detail())
        }
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default().to_owned();
            let message = se.err().message().unwrap_or_default().to_owned();
            match code.as_str() {
                c if AUTH_CODES.contains(&c) => {
                    StoreError::AuthFailed(format!("{code}: {message}"))
                }
                "NoSuchKey" | "NotFound" => StoreError::NotFound,
                "NoSuchBucket" => {
                    StoreError::Unreachable(format!("the bucket does not exist: {message}"))
                }
                _ => StoreError::Unexpected(anyhow::anyhow!("{code}: {message} ({})", detail())),
            }
        }
        _ => StoreError::Unexpected(anyhow::anyhow!("{}", detail())),
    }
}

/// `HeadObject`/`HeadBucket` errors carry no code, only the status.
fn head_error<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let SdkError::ServiceError(se) = &e {
        let raw = format!("{:?}", se.raw());
        if raw.contains("StatusCode(404)") || raw.contains("status: 404") {
            return StoreError::NotFound;
        }
        if raw.contains("StatusCode(403)") || raw.contains("status: 403") {
            return StoreError::AuthFailed("the storage refused the credentials (403)".into());
        }
    }
    store_error(e)
}

/// The ETag S3 gives an object completed from parts with these ETags: the MD5 of their
/// binary MD5s, then `-{count}`. `None` when a part's ETag is not an MD5.
fn multipart_etag(parts: &[(i32, String)]) -> Option<String> {
    let mut digests = Vec::with_capacity(parts.len() * 16);
    for (_, tag) in parts {
        let hex = tag.trim_matches('"');
        if hex.len() != 32 {
            return None;
        }
        digests.extend(hex::decode(hex).ok()?);
    }
    Some(format!(
        "{}-{}",
        hex::encode(md5::Md5::digest(&digests)),
        parts.len()
    ))
}

impl S3Store {
    /// A store whose connections resolve names through `guard`.
    ///
    /// # Errors
    /// `NotAllowed` when the endpoint is a literal address the guard refuses (literal
    /// addresses never reach a resolver); `Unreachable` for an endpoint that is not a URL.
    pub fn new(
        settings: S3Settings,
        sessions: Arc<dyn UploadSessions>,
        guard: Arc<NetGuard>,
    ) -> Result<Self, StoreError> {
        let endpoint = url::Url::parse(&settings.endpoint)
            .map_err(|e| StoreError::Unreachable(format!("the endpoint is not a URL: {e}")))?;
        let literal = match endpoint.host() {
            Some(url::Host::Ipv4(v4)) => Some(std::net::IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(std::net::IpAddr::V6(v6)),
            _ => None,
        };
        if let Some(ip) = literal {
            guard
                .check_ip(ip)
                .map_err(|r| StoreError::NotAllowed(r.0))?;
        }
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build_with_resolver(GuardedDns(guard));
        let credentials = Credentials::new(
            settings.access_key_id.clone(),
            settings.secret_access_key.clone(),
            None,
            None,
            "ferry",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .endpoint_url(settings.endpoint.clone())
            .credentials_provider(credentials)
            .http_client(http)
            .force_path_style(settings.path_style)
            // Many S3-compatible servers do not know the SDK's default CRC checksums.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(120))
                    .build(),
            )
            .build();
        let mut settings = settings;
        settings.part_size = settings.part_size.max(MIN_PART);
        settings.concurrency = settings.concurrency.max(1);
        Ok(Self {
            client: Client::from_conf(config),
            settings,
            sessions,
        })
    }

    fn full_key(&self, key: &str) -> String {
        match &self.settings.prefix {
            Some(p) => format!("{p}/{key}"),
            None => key.to_owned(),
        }
    }

    /// Creates the bucket if it does not exist (for tests and first-time setups).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn create_bucket_if_missing(&self) -> Result<(), StoreError> {
        if self
            .client
            .head_bucket()
            .bucket(&self.settings.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        self.client
            .create_bucket()
            .bucket(&self.settings.bucket)
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Part size for a file: the configured one, grown to stay within 10 000 parts.
    fn part_size_for(&self, size: u64) -> u64 {
        self.settings.part_size.max(size.div_ceil(MAX_PARTS))
    }

    async fn put_single(
        &self,
        key: &str,
        req: &PutRequest<'_>,
    ) -> Result<StoredObject, StoreError> {
        let bytes = match tokio::fs::read(req.source).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NotFound),
            Err(e) => return Err(StoreError::Unexpected(e.into())),
        };
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let size = bytes.len() as u64;
        self.client
            .put_object()
            .bucket(&self.settings.bucket)
            .key(key)
            .content_length(size as i64)
            .body(ByteStream::from(bytes))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(store_error)?;
        (req.progress)(size);
        Ok(StoredObject { size, sha256 })
    }

    /// Parts already uploaded under `upload_id`: (part number, etag or "", size). `None` if
    /// the upload no longer exists.
    async fn uploaded_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<Vec<(i32, String, u64)>>, StoreError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut call = self
                .client
                .list_parts()
                .bucket(&self.settings.bucket)
                .key(key)
                .upload_id(upload_id);
            if let Some(m) = &marker {
                call = call.part_number_marker(m);
            }
            let page = match call.send().await {
                Ok(p) => p,
                Err(e) => {
                    let err = store_error(e);
                    if matches!(&err, StoreError::Unexpected(m) if m.to_string().contains("NoSuchUpload"))
                    {
                        return Ok(None);
                    }
                    return Err(err);
                }
            };
            for p in page.parts() {
                if let Some(n) = p.part_number() {
                    // Some servers list no ETag; it is then derived from the bytes (MD5).
                    let tag = p.e_tag().unwrap_or_default().to_owned();
                    parts.push((n, tag, p.size().unwrap_or(0).max(0) as u64));
                }
            }
            if page.is_truncated() == Some(true) {
                marker = page.next_part_number_marker().map(str::to_owned);
                if marker.is_none() {
                    break;
                }
            } else {
                break;
            }
        }
        Ok(Some(parts))
    }

    async fn put_multipart(
        &self,
        key: &str,
        req: &PutRequest<'_>,
        size: u64,
    ) -> Result<StoredObject, StoreError> {
        let session_key = req.key.as_str();
        let remembered = self
            .sessions
            .get(req.job, session_key)
            .await
            .map_err(|e| StoreError::Unexpected(e.into()))?;
        let mut existing = Vec::new();
        let upload_id = match remembered {
            Some(id) => match self.uploaded_parts(key, &id).await? {
                Some(parts) => {
                    tracing::info!(key, parts = parts.len(), "resuming a multipart upload");
                    existing = parts;
                    id
                }
                None => self.create_upload(key, req).await?,
            },
            None => self.create_upload(key, req).await?,
        };
        match self.send_parts(key, req, size, &upload_id, existing).await {
            Ok(stored) => {
                let _ = self.sessions.set(req.job, session_key, None).await;
                Ok(stored)
            }
            Err(e) => {
                // Leave nothing half-done behind: a later attempt starts afresh.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.settings.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                let _ = self.sessions.set(req.job, session_key, None).await;
                Err(e)
            }
        }
    }

    async fn create_upload(&self, key: &str, req: &PutRequest<'_>) -> Result<String, StoreError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.settings.bucket)
            .key(key)
            .send()
            .await
            .map_err(store_error)?;
        let id = created
            .upload_id()
            .ok_or_else(|| StoreError::Unexpected(anyhow::anyhow!("no upload id returned")))?
            .to_owned();
        self.sessions
            .set(req.job, req.key.as_str(), Some(&id))
            .await
            .map_err(|e| StoreError::Unexpected(e.into()))?;
        Ok(id)
    }

    async fn send_parts(
        &self,
        key: &str,
        req: &PutRequest<'_>,
        size: u64,
        upload_id: &str,
        existing: Vec<(i32, String, u64)>,
    ) -> Result<StoredObject, StoreError> {
        let part_size = self.part_size_for(size);
        let count = size.div_ceil(part_size).max(1);
        let expected = move |n: u64| {
            if n + 1 == count {
                size - part_size * (count - 1)
            } else {
                part_size
            }
        };
        // Parts already there (with the size they must have) are not sent again.
        let mut done: Vec<(i32, String)> = existing
            .into_iter()
            .filter(|(n, _, len)| {
                (*n as u64) >= 1 && (*n as u64) <= count && *len == expected(*n as u64 - 1)
            })
            .map(|(n, tag, _)| (n, tag))
            .collect();
        let skip: std::collections::HashSet<i32> = done.iter().map(|(n, _)| *n).collect();
        // Parts listed without an ETag get theirs from the bytes, as S3 computes it (MD5).
        let unknown: std::collections::HashSet<i32> = done
            .iter()
            .filter(|(_, tag)| tag.is_empty())
            .map(|(n, _)| *n)
            .collect();
        done.retain(|(_, tag)| !tag.is_empty());
        let sent = Arc::new(AtomicU64::new(
            skip.iter().map(|n| expected(*n as u64 - 1)).sum(),
        ));
        (req.progress)(sent.load(Ordering::Relaxed));

        // Reader: in order, hashing everything, handing over the parts still to send.
        let (tx, rx) = tokio::sync::mpsc::channel::<(i32, Bytes)>(self.settings.concurrency);
        let source = req.source.to_owned();
        type Read = (String, u64, Vec<(i32, String)>);
        let reader = tokio::task::spawn_blocking(move || -> std::io::Result<Read> {
            use std::io::Read;
            let mut file = std::fs::File::open(&source)?;
            let mut hasher = Sha256::new();
            let mut total = 0u64;
            let mut derived = Vec::new();
            for n in 0..count {
                let len = expected(n) as usize;
                let mut buf = vec![0u8; len];
                file.read_exact(&mut buf)?;
                hasher.update(&buf);
                total += len as u64;
                let number = (n + 1) as i32;
                if unknown.contains(&number) {
                    derived.push((
                        number,
                        format!("\"{}\"", hex::encode(md5::Md5::digest(&buf))),
                    ));
                }
                if !skip.contains(&number) && tx.blocking_send((number, Bytes::from(buf))).is_err()
                {
                    return Err(std::io::Error::other("the upload stopped"));
                }
            }
            Ok((hex::encode(hasher.finalize()), total, derived))
        });

        let mut uploads = Box::pin(
            tokio_stream_from(rx)
                .map(|(number, body)| {
                    let client = self.client.clone();
                    let (bucket, key, upload_id) = (
                        self.settings.bucket.clone(),
                        key.to_owned(),
                        upload_id.to_owned(),
                    );
                    let sent = sent.clone();
                    async move {
                        let len = body.len() as u64;
                        let out = client
                            .upload_part()
                            .bucket(bucket)
                            .key(key)
                            .upload_id(upload_id)
                            .part_number(number)
                            .content_length(len as i64)
                            .body(ByteStream::from(body))
                            .send()
                            .await
                            .map_err(store_error)?;
                        sent.fetch_add(len, Ordering::Relaxed);
                        let tag = out.e_tag().unwrap_or_default().to_owned();
                        Ok::<_, StoreError>((number, tag))
                    }
                })
                .buffer_unordered(self.settings.concurrency),
        );
        let mut failure = None;
        while let Some(result) = uploads.next().await {
            match result {
                Ok(part) => {
                    done.push(part);
                    (req.progress)(sent.load(Ordering::Relaxed));
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // Dropping the stream closes the channel, so a reader still sending stops.
        drop(uploads);
        let read = reader.await.map_err(|e| StoreError::Unexpected(e.into()))?;
        if let Some(e) = failure {
            return Err(e);
        }
        let (sha256, total, derived) = match read {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NotFound),
            Err(e) => return Err(StoreError::Unexpected(e.into())),
        };
        done.extend(derived);
        done.sort_by_key(|(n, _)| *n);
        let etag = multipart_etag(&done);
        let parts = done
            .into_iter()
            .map(|(n, tag)| CompletedPart::builder().part_number(n).e_tag(tag).build())
            .collect();
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.settings.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        if let Err(e) = completed {
            // A clear refusal (a service error with a code) failed the upload; anything else
            // (an answer that cannot be read, a timeout, a lost connection) may have come
            // after the server completed it: look before calling it a failure.
            let clear = matches!(&e, SdkError::ServiceError(se) if se.err().code().is_some());
            let e = store_error(e);
            if clear
                || !self
                    .completed_as_expected(key, total, etag.as_deref())
                    .await
            {
                return Err(e);
            }
            tracing::warn!(
                key,
                error = format!("{e:#}"),
                "the answer to CompleteMultipartUpload could not be read, but the object is complete"
            );
        }
        Ok(StoredObject {
            size: total,
            sha256,
        })
    }

    /// Whether the object at `key` is the one this upload completed: its size, and its
    /// multipart ETag when the parts' ETags are MD5s.
    async fn completed_as_expected(&self, key: &str, size: u64, etag: Option<&str>) -> bool {
        let head = match self
            .client
            .head_object()
            .bucket(&self.settings.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => head,
            Err(e) => {
                tracing::info!(
                    key,
                    error = format!("{:#}", head_error(e)),
                    "no completed object after an unclear completion"
                );
                return false;
            }
        };
        let stored_size = head.content_length().unwrap_or(-1);
        let stored_tag = head
            .e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned();
        let size_ok = u64::try_from(stored_size).is_ok_and(|s| s == size);
        let tag_ok = etag.is_none_or(|want| stored_tag == want);
        if !(size_ok && tag_ok) {
            tracing::info!(
                key,
                stored_size,
                stored_tag,
                expected_tag = etag,
                "the object is not the one this upload completed"
            );
        }
        size_ok && tag_ok
    }

    async fn delete_batch(&self, keys: &[String]) -> Result<(), StoreError> {
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Unexpected(e.into()))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| StoreError::Unexpected(e.into()))?;
        self.client
            .delete_objects()
            .bucket(&self.settings.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn keys_under(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut call = self
                .client
                .list_objects_v2()
                .bucket(&self.settings.bucket)
                .prefix(prefix);
            if let Some(t) = &token {
                call = call.continuation_token(t);
            }
            let page = call.send().await.map_err(store_error)?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                return Ok(keys);
            }
        }
    }
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put_file(&self, req: PutRequest<'_>) -> Result<StoredObject, StoreError> {
        let key = self.full_key(req.key.as_str());
        let size = match tokio::fs::metadata(req.source).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NotFound),
            Err(e) => return Err(StoreError::Unexpected(e.into())),
        };
        if size <= self.part_size_for(size) {
            self.put_single(&key, &req).await
        } else {
            self.put_multipart(&key, &req, size).await
        }
    }

    async fn abort_uploads(&self, job: JobId) -> Result<(), StoreError> {
        let sessions = self
            .sessions
            .of_job(job)
            .await
            .map_err(|e| StoreError::Unexpected(e.into()))?;
        for (key, upload_id) in sessions {
            let result = self
                .client
                .abort_multipart_upload()
                .bucket(&self.settings.bucket)
                .key(self.full_key(&key))
                .upload_id(&upload_id)
                .send()
                .await;
            if let Err(e) = result {
                match store_error(e) {
                    StoreError::NotFound => {}
                    StoreError::Unexpected(m) if m.to_string().contains("NoSuchUpload") => {}
                    other => return Err(other),
                }
            }
            let _ = self.sessions.set(job, &key, None).await;
        }
        Ok(())
    }

    async fn size(&self, key: &StorageKey) -> Result<Option<u64>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key.as_str()))
            .send()
            .await
        {
            Ok(head) => Ok(Some(head.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) => match head_error(e) {
                StoreError::NotFound => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn locate(&self, key: &StorageKey) -> Result<ObjectLocation, StoreError> {
        if self.size(key).await?.is_none() {
            return Err(StoreError::NotFound);
        }
        let config = PresigningConfig::expires_in(self.settings.presign_ttl)
            .map_err(|e| StoreError::Unexpected(e.into()))?;
        let presigned = self
            .client
            .get_object()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key.as_str()))
            .presigned(config)
            .await
            .map_err(store_error)?;
        Ok(ObjectLocation::Url(presigned.uri().to_owned()))
    }

    async fn delete_prefix(&self, prefix: &StorageKey) -> Result<(), StoreError> {
        let full = self.full_key(prefix.as_str());
        // Job prefixes are folders: everything under `{prefix}/` goes.
        let keys = self.keys_under(&format!("{full}/")).await?;
        for chunk in keys.chunks(1000) {
            if let Err(e) = self.delete_batch(chunk).await {
                // Some S3-compatible servers reject DeleteObjects: delete one by one.
                tracing::debug!(error = %e, "batch delete refused; deleting objects one by one");
                for key in chunk {
                    self.client
                        .delete_object()
                        .bucket(&self.settings.bucket)
                        .key(key)
                        .send()
                        .await
                        .map_err(store_error)?;
                }
            }
        }
        Ok(())
    }

    /// Lists at most one key: only an S3 server answers that with a listing, so a port that
    /// speaks anything else (an HTML page, another protocol, a bare 403) is "unreachable"
    /// like a closed one, and credentials are judged by S3's own error codes.
    async fn check(&self) -> Result<(), StoreError> {
        self.client
            .list_objects_v2()
            .bucket(&self.settings.bucket)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| match store_error(e) {
                StoreError::NotFound => StoreError::Unreachable(format!(
                    "bucket {} does not exist",
                    self.settings.bucket
                )),
                StoreError::Unexpected(e) => {
                    StoreError::Unreachable(format!("not an S3 answer: {e:#}"))
                }
                other => other,
            })?;
        Ok(())
    }
}
