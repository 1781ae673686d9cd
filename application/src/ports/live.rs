//! `LiveFiles`: reading a torrent job's file while it is still downloading, or while its
//! downloaded files wait in staging for delivery. Only a process that runs the engine has
//! one (`ferry serve`); elsewhere an unfinished job's files cannot be read.

use std::pin::Pin;

use async_trait::async_trait;
use ferry_domain::{JobId, SafePath};

/// The bytes of a file from the position it was opened at, in order. A read that fails
/// with [`std::io::ErrorKind::TimedOut`] waited longer than the adapter's timeout for data
/// that never came; any other error means the file can no longer be read this way (the
/// job was paused or cancelled meanwhile). Either way the reader is done.
pub type LiveReader = Pin<Box<dyn tokio::io::AsyncRead + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum LiveFileError {
    /// This process does not download the job's file right now (not started yet, paused,
    /// stopped, finished and handed over, or running in another process), or — for a
    /// staged file — the file is no longer in staging (delivered meanwhile).
    #[error("the job's file is not being downloaded here right now")]
    NotRunning,
    /// As many files are read at once as the engine allows.
    #[error("too many files are being streamed at once; try again shortly")]
    Busy,
    /// The first bytes did not come within the adapter's timeout.
    #[error("the file's data did not arrive in time")]
    TimedOut,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Opens files of unfinished jobs for reading. The caller has already decided that the
/// reader may read the file (its owner, a selected file, a job in the right status).
#[async_trait]
pub trait LiveFiles: Send + Sync + 'static {
    /// File `index` of the torrent `job_id` downloads, from byte `start` (less than the
    /// file's length). Pieces are fetched in order from `start` ahead of everything else,
    /// and each read waits for them; it returns once the first bytes can be read. When the
    /// job's download finishes while the reader is open, the reader goes on from the
    /// handed-over file; when the job stops, the reader fails.
    ///
    /// # Errors
    /// `NotRunning` when the engine does not download that file for that job; `Busy`;
    /// `TimedOut` when the first bytes did not come in time.
    async fn open(
        &self,
        job_id: JobId,
        index: usize,
        start: u64,
    ) -> Result<LiveReader, LiveFileError>;

    /// The downloaded file `path` of `job_id` in staging, waiting for delivery, from byte
    /// `start`.
    ///
    /// # Errors
    /// `NotRunning` when the file is not in staging (delivered and freed meanwhile).
    async fn open_staged(
        &self,
        job_id: JobId,
        path: &SafePath,
        start: u64,
    ) -> Result<LiveReader, LiveFileError>;
}
