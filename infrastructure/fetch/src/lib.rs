//! `HttpFetcher`: HTTP(S) downloads with reqwest, through an HTTP or SOCKS5 proxy when one is
//! configured, guarded against server-side request forgery.
//!
//! Every hop (the URL and each redirect, followed here one by one) is checked before any
//! connection: a literal address against the policy, a name by resolving it. Direct
//! connections go through a resolver that refuses internal addresses, so a name cannot
//! resolve one way for the check and another way for the connection. With a proxy, names are
//! resolved by the proxy (`socks5h`, HTTP) in the `proxy` mode, and the check can only refuse
//! literal addresses and names that also resolve locally to internal ones; the `local` mode
//! refuses names that do not resolve locally. Nothing bypasses a configured proxy.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_application::ports::{FetchBody, FetchError, FetchInfo, Fetched, Fetcher};
use ferry_domain::{AddressPolicy, FetchUrl};
use ferry_net::{GuardError, NetGuard, ReqwestResolver};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub mod feed;
mod webhook;

/// Who resolves names when a proxy is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyDns {
    /// The proxy does (`socks5h`, HTTP proxies): no DNS query leaves without it.
    Proxy,
    /// This server does, and refuses names it cannot resolve.
    Local,
}

#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// `http://host:port`, `socks5h://host:port` or `socks5://host:port`.
    pub proxy: Option<String>,
    /// Refuse to run without a proxy.
    pub proxy_required: bool,
    pub proxy_dns: ProxyDns,
    pub policy: AddressPolicy,
    /// Fixed name → address mappings, checked like any other address.
    pub hosts: HashMap<String, IpAddr>,
    pub max_bytes: u64,
    /// Allowed content types (`video/`, `application/zip`, …); empty allows any.
    pub allowed_types: Vec<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub max_redirects: usize,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            proxy: None,
            proxy_required: false,
            proxy_dns: ProxyDns::Proxy,
            policy: AddressPolicy::default(),
            hosts: HashMap::new(),
            max_bytes: 50 << 30,
            allowed_types: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            max_redirects: 10,
        }
    }
}

pub struct HttpFetcher {
    client: reqwest::Client,
    settings: FetchSettings,
    guard: Arc<NetGuard>,
    /// The operator's URL block list, applied to every hop (see [`HttpFetcher::with_blocklist`]).
    blocklist: Option<Arc<ferry_application::SubmissionBlocklistHandle>>,
}

impl HttpFetcher {
    /// # Errors
    /// When a proxy is required but not configured, or its URL is invalid.
    pub fn new(settings: FetchSettings) -> anyhow::Result<Self> {
        let guard = Arc::new(NetGuard::new(
            settings.policy.clone(),
            settings.hosts.clone(),
        ));
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .user_agent(concat!("Ferry/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(ReqwestResolver(guard.clone())));
        match &settings.proxy {
            Some(url) => {
                let scheme = url.split("://").next().unwrap_or_default();
                anyhow::ensure!(
                    matches!(scheme, "http" | "https" | "socks5" | "socks5h"),
                    "fetch.proxy must be an http://, socks5:// or socks5h:// URL"
                );
                builder = builder.proxy(reqwest::Proxy::all(url)?);
            }
            None => anyhow::ensure!(
                !settings.proxy_required,
                "fetch.proxy_required is set but no fetch.proxy is configured: refusing to fetch directly"
            ),
        }
        Ok(Self {
            client: builder.build()?,
            settings,
            guard,
            blocklist: None,
        })
    }

    /// Refuses (`FetchError::Blocked`) a URL, or a redirect, that the operator's block list
    /// (`blocklist.urls`) holds when the hop is made — not only when the job was submitted: a
    /// redirect cannot lead around the list, and a list reloaded since applies.
    #[must_use]
    pub fn with_blocklist(
        mut self,
        list: Arc<ferry_application::SubmissionBlocklistHandle>,
    ) -> Self {
        self.blocklist = Some(list);
        self
    }

    fn check_blocklist(&self, url: &FetchUrl) -> Result<(), FetchError> {
        let Some(list) = &self.blocklist else {
            return Ok(());
        };
        if let Some(pattern) = list.current().blocking_pattern(url.as_url().as_str()) {
            tracing::info!(pattern, "URL refused by the block list while fetching");
            return Err(FetchError::Blocked(format!(
                "this server does not fetch {} (the operator's block list)",
                url.for_log()
            )));
        }
        Ok(())
    }

    /// Refuses a hop that the operator's block list holds or whose address is internal,
    /// before anything is sent.
    async fn check(&self, url: &FetchUrl) -> Result<(), FetchError> {
        self.check_blocklist(url)?;
        if let Some(ip) = url.literal_ip() {
            return self
                .guard
                .check_ip(ip)
                .map_err(|r| FetchError::NotAllowed(r.0));
        }
        let host = url.as_url().host_str().unwrap_or_default();
        if ferry_domain::net::local_name(host) && !self.guard.is_mapped(host) {
            return Err(FetchError::NotAllowed(format!("{host} is a local name")));
        }
        match self.guard.resolve(host).await {
            Ok(_) => Ok(()),
            Err(GuardError::Refused(r)) => Err(FetchError::NotAllowed(r.0)),
            // Through a proxy that resolves names, a name unknown here may be fine.
            Err(GuardError::Lookup(_))
                if self.settings.proxy.is_some() && self.settings.proxy_dns == ProxyDns::Proxy =>
            {
                Ok(())
            }
            Err(GuardError::Lookup(e)) => Err(FetchError::Unreachable(format!(
                "cannot resolve {host}: {e}"
            ))),
        }
    }

    fn type_allowed(&self, mime: Option<&str>) -> bool {
        if self.settings.allowed_types.is_empty() {
            return true;
        }
        let Some(mime) = mime else { return false };
        let mime = mime
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        self.settings.allowed_types.iter().any(|t| {
            if t.ends_with('/') {
                mime.starts_with(t.as_str())
            } else {
                mime == *t
            }
        })
    }
}

fn request_error(e: reqwest::Error) -> FetchError {
    if let Some(refused) = ferry_net::refusal(&e) {
        return FetchError::NotAllowed(refused.0.clone());
    }
    // The URL (and its query: signed links, tokens) stays out of messages and logs.
    let e = e.without_url();
    let cause = std::error::Error::source(&e)
        .map(ToString::to_string)
        .unwrap_or_default();
    FetchError::Unreachable(format!("{e}: {cause}"))
}

#[async_trait]
impl Fetcher for HttpFetcher {
    async fn open(
        &self,
        url: &FetchUrl,
        partial: Option<&Path>,
    ) -> Result<Box<dyn FetchBody>, FetchError> {
        let mut offset = match partial {
            Some(p) => tokio::fs::metadata(p).await.map(|m| m.len()).unwrap_or(0),
            None => 0,
        };
        let mut hop = url.clone();
        let mut redirects = 0;
        loop {
            self.check(&hop).await?;
            let mut req = self.client.get(hop.as_url().clone());
            if offset > 0 {
                req = req.header(reqwest::header::RANGE, format!("bytes={offset}-"));
            }
            let resp = req.send().await.map_err(request_error)?;
            let status = resp.status();
            if status.is_redirection() {
                redirects += 1;
                if redirects > self.settings.max_redirects {
                    return Err(FetchError::Status(status.as_u16()));
                }
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(FetchError::Status(status.as_u16()))?;
                let next = hop
                    .as_url()
                    .join(location)
                    .map_err(|_| FetchError::Status(status.as_u16()))?;
                hop = FetchUrl::parse(next.as_str()).map_err(|e| {
                    FetchError::NotAllowed(format!(
                        "redirect to {}: {e}",
                        ferry_domain::net::loggable_url(next.as_str())
                    ))
                })?;
                continue;
            }
            if status == StatusCode::RANGE_NOT_SATISFIABLE && offset > 0 {
                // The partial file is no good for this server: start over.
                offset = 0;
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            let resumed_from = if status == StatusCode::PARTIAL_CONTENT && offset > 0 {
                offset
            } else {
                0
            };
            let mime = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if !self.type_allowed(mime.as_deref()) {
                return Err(FetchError::MimeNotAllowed(
                    mime.unwrap_or_else(|| "unknown".into()),
                ));
            }
            let size = resp.content_length().map(|n| n + resumed_from);
            if size.is_some_and(|s| s > self.settings.max_bytes) {
                return Err(FetchError::TooLarge {
                    limit: self.settings.max_bytes,
                });
            }
            return Ok(Box::new(Body {
                info: FetchInfo {
                    size,
                    mime,
                    final_url: hop.for_log(),
                    resumed_from,
                },
                resp,
                max: self.settings.max_bytes,
            }));
        }
    }
}

struct Body {
    info: FetchInfo,
    resp: reqwest::Response,
    max: u64,
}

#[async_trait]
impl FetchBody for Body {
    fn info(&self) -> &FetchInfo {
        &self.info
    }

    async fn bytes(self: Box<Self>, max: u64) -> Result<Vec<u8>, FetchError> {
        let limit = max.min(self.max);
        let mut resp = self.resp;
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(request_error)? {
            if (bytes.len() + chunk.len()) as u64 > limit {
                return Err(FetchError::TooLarge { limit });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    async fn save(
        self: Box<Self>,
        dest: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Fetched, FetchError> {
        let io = |e: std::io::Error| FetchError::Unexpected(e.into());
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        let mut hasher = Sha256::new();
        let mut size = self.info.resumed_from;
        // The file may have other names (a finished fetch is linked into the content store
        // and delivered from there): never write through them.
        own_file(dest, size > 0).await.map_err(io)?;
        let mut file = if size > 0 {
            // Hash what the earlier attempt saved, then continue after it.
            let mut prefix = tokio::fs::File::open(dest).await.map_err(io)?;
            let mut buf = vec![0u8; 1 << 20];
            let mut left = size;
            while left > 0 {
                let n = prefix
                    .read(&mut buf[..left.min(1 << 20) as usize])
                    .await
                    .map_err(io)?;
                if n == 0 {
                    return Err(FetchError::Unexpected(anyhow::anyhow!(
                        "the partial file shrank"
                    )));
                }
                hasher.update(&buf[..n]);
                left -= n as u64;
            }
            let f = tokio::fs::OpenOptions::new()
                .write(true)
                .open(dest)
                .await
                .map_err(io)?;
            f.set_len(size).await.map_err(io)?;
            let mut f = f;
            tokio::io::AsyncSeekExt::seek(&mut f, std::io::SeekFrom::Start(size))
                .await
                .map_err(io)?;
            f
        } else {
            tokio::fs::File::create(dest).await.map_err(io)?
        };
        progress(size);
        let mut resp = self.resp;
        while let Some(chunk) = resp.chunk().await.map_err(request_error)? {
            size += chunk.len() as u64;
            if size > self.max {
                return Err(FetchError::TooLarge { limit: self.max });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io)?;
            progress(size);
        }
        file.flush().await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        if let Some(expected) = self.info.size
            && expected != size
        {
            return Err(FetchError::Unreachable(format!(
                "the transfer ended at {size} of {expected} bytes"
            )));
        }
        Ok(Fetched {
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

/// Makes `dest` a file with no other names before it is written: a linked file is
/// replaced by a private copy (`keep`: its bytes are continued) or dropped.
async fn own_file(dest: &Path, keep: bool) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let linked = match tokio::fs::metadata(dest).await {
            Ok(m) => m.nlink() > 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if linked {
            if keep {
                let mut tmp = dest.as_os_str().to_owned();
                tmp.push(".ferry-private");
                let tmp = std::path::PathBuf::from(tmp);
                tokio::fs::copy(dest, &tmp).await?;
                tokio::fs::File::open(&tmp).await?.sync_all().await?;
                tokio::fs::rename(&tmp, dest).await?;
            } else {
                tokio::fs::remove_file(dest).await?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (dest, keep);
    Ok(())
}
