//! `Fetcher`: HTTP(S) downloads through the configured proxy, with address, size and type
//! limits; and `TorrentPackager`: turning a file into a torrent.

use std::path::Path;

use async_trait::async_trait;
use ferry_domain::{FetchUrl, TorrentMetadata};

use super::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL, a redirect, or an address it resolves to is internal (SSRF guard).
    #[error("{0}")]
    NotAllowed(String),
    /// The operator's block list (`blocklist.urls`) refuses the URL or a redirect.
    #[error("{0}")]
    Blocked(String),
    #[error("the content is larger than the {limit} bytes allowed")]
    TooLarge { limit: u64 },
    #[error("content type {0:?} is not allowed")]
    MimeNotAllowed(String),
    /// The server answered with an error status.
    #[error("the server answered {0}")]
    Status(u16),
    /// The server or the proxy cannot be reached (retryable).
    #[error("{0}")]
    Unreachable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl FetchError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) | Self::Unexpected(_) => true,
            Self::Status(s) => *s >= 500 || *s == 408 || *s == 429,
            _ => false,
        }
    }
}

/// What the server said about the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchInfo {
    /// Total size of the content, when the server says.
    pub size: Option<u64>,
    pub mime: Option<String>,
    /// Where the content came from after redirects, without its query (for logs).
    pub final_url: String,
    /// Bytes already held locally that the server agreed to skip (`Range`).
    pub resumed_from: u64,
}

/// What was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub size: u64,
    pub sha256: String,
}

/// An opened response, headers read, body not yet.
#[async_trait]
pub trait FetchBody: Send {
    fn info(&self) -> &FetchInfo;

    /// Reads the whole body into memory, for small content (a .torrent file).
    ///
    /// # Errors
    /// `TooLarge` past `max` bytes (or the fetch limit), `Unreachable`, `Unexpected`.
    async fn bytes(self: Box<Self>, max: u64) -> Result<Vec<u8>, FetchError>;

    /// Streams the body to `dest` (appending when the response resumed a partial file),
    /// enforcing the size limit while streaming. Returns the size and SHA-256 of the whole
    /// file.
    ///
    /// # Errors
    /// `TooLarge`, `Unreachable`, `Unexpected`.
    async fn save(
        self: Box<Self>,
        dest: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Fetched, FetchError>;
}

#[async_trait]
pub trait Fetcher: Send + Sync + 'static {
    /// Sends the request (through the proxy when one is configured), following redirects and
    /// checking every address against the policy, and reads the headers. With `partial`, it
    /// asks for the rest of that partial file (`Range`) and, if the server agrees, the body
    /// continues it.
    ///
    /// # Errors
    /// `NotAllowed`, `Status`, `TooLarge` (declared size), `MimeNotAllowed`, `Unreachable`.
    async fn open(
        &self,
        url: &FetchUrl,
        partial: Option<&Path>,
    ) -> Result<Box<dyn FetchBody>, FetchError>;
}

#[async_trait]
pub trait TorrentPackager: Send + Sync + 'static {
    /// A (private, per configuration) single-file torrent of `file` named `name`, with the
    /// configured trackers and a piece size chosen from the file's size.
    ///
    /// # Errors
    /// `Unexpected` on I/O failure; `UnsafePath` for a name that cannot be a file name.
    async fn package(&self, file: &Path, name: &str) -> Result<TorrentMetadata, EngineError>;
}
