//! `LiveFiles` on the engine: a running job's file read while it downloads, through
//! librqbit's `FileStream`, which puts the pieces ahead of its position (32 MiB) before
//! every other piece and wakes the reader when they are verified.
//!
//! What Ferry adds around it:
//! - every wait for data is bounded (`timeout`): a read that gets nothing for that long
//!   fails with `TimedOut`, and nudged every second, so a wake-up librqbit misses costs a
//!   second, not the whole timeout;
//! - a reader outlives its torrent: when the job is handed over, the engine opens the
//!   handed-over file (a hard link of the finished data, never written again) for every
//!   file a reader has open, and the reader goes on from it at its position; when the job
//!   is stopped (paused, cancelled) the reader fails;
//! - a cap on streams: each `FileStream` holds one of librqbit's blocking permits for its
//!   life, the permits its disk writes need too, so the session gets [`STREAM_PERMITS`]
//!   extra and at most that many streams are open at once (`Busy` past it).

use std::collections::HashMap;
use std::io::{self, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use ferry_application::ports::{LiveFileError, LiveFiles, LiveReader, Staging};
use ferry_domain::{JobId, SafePath};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::RqbitEngine;

/// How many files may be streamed at once (per engine). librqbit's `FileStream` holds a
/// blocking permit for its life; the session is given this many permits more than its
/// default so its disk writes never wait for a stream.
pub const STREAM_PERMITS: usize = 16;

/// librqbit's default number of blocking permits (`runtime_worker_threads` unset).
const LIBRQBIT_BLOCKING_PERMITS: usize = 8;

/// The session's blocking permits: librqbit's own plus one per possible stream.
pub(crate) const SESSION_BLOCKING_PERMITS: usize = LIBRQBIT_BLOCKING_PERMITS + STREAM_PERMITS;

/// The most bytes one read hands on.
const CHUNK: usize = 256 * 1024;

/// How often a waiting read looks again whether its data came.
const NUDGE: Duration = Duration::from_secs(1);

/// How a running job's torrent ended for its open readers.
#[derive(Clone)]
enum Ending {
    Running,
    /// The job's files were handed over: the handed-over file of every file index a reader
    /// had open.
    HandedOver(Arc<HashMap<usize, Arc<std::fs::File>>>),
    Stopped,
}

/// Kept with each running job: tells the job's open readers how its torrent ended.
pub(crate) struct Board {
    ending: watch::Sender<Ending>,
    /// File index → readers open on it.
    readers: Arc<Mutex<HashMap<usize, usize>>>,
}

impl Default for Board {
    fn default() -> Self {
        Self {
            ending: watch::Sender::new(Ending::Running),
            readers: Arc::default(),
        }
    }
}

impl Board {
    fn open_indexes(&self) -> Vec<usize> {
        lock(&self.readers)
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(i, _)| *i)
            .collect()
    }

    /// The job's files are handed over (`path` of a file index is where it now is): open
    /// readers go on from there.
    pub(crate) fn handed_over(&self, path: impl Fn(usize) -> Option<std::path::PathBuf>) {
        let mut files = HashMap::new();
        for index in self.open_indexes() {
            let Some(path) = path(index) else { continue };
            match std::fs::File::open(&path) {
                Ok(file) => {
                    files.insert(index, Arc::new(file));
                }
                // The reader then ends with an error: the answer is cut short, not wrong.
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot reopen a streamed file after its hand-over");
                }
            }
        }
        self.ending
            .send_replace(Ending::HandedOver(Arc::new(files)));
    }

    /// The job stopped: open readers fail.
    pub(crate) fn stopped(&self) {
        self.ending.send_replace(Ending::Stopped);
    }

    /// A reader of file `index`, counted until dropped.
    fn reader(&self, index: usize) -> (watch::Receiver<Ending>, ReaderMark) {
        *lock(&self.readers).entry(index).or_insert(0) += 1;
        let mark = ReaderMark {
            readers: self.readers.clone(),
            index,
        };
        (self.ending.subscribe(), mark)
    }
}

/// Counts a reader of one file index while it lives.
struct ReaderMark {
    readers: Arc<Mutex<HashMap<usize, usize>>>,
    index: usize,
}

impl Drop for ReaderMark {
    fn drop(&mut self) {
        let mut readers = lock(&self.readers);
        if let Some(n) = readers.get_mut(&self.index) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                readers.remove(&self.index);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The engine's [`LiveFiles`]: made by [`RqbitEngine::live_files`].
pub struct LiveStreams {
    engine: Arc<RqbitEngine>,
    timeout: Duration,
    places: Arc<Semaphore>,
}

impl RqbitEngine {
    /// The files of the jobs this engine runs, for reading while they download; a read
    /// waits at most `timeout` for its data. Make one per engine: it holds the cap on
    /// streams.
    pub fn live_files(self: &Arc<Self>, timeout: Duration) -> LiveStreams {
        LiveStreams {
            engine: self.clone(),
            timeout,
            places: Arc::new(Semaphore::new(STREAM_PERMITS)),
        }
    }
}

/// librqbit's `FileStream` (a type its API returns but does not name).
type TorrentStream = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// Where a reader reads from.
enum Source {
    Torrent(TorrentStream),
    HandedOver(Arc<std::fs::File>),
}

/// One open reader: its position in the file and what it holds.
struct Reader {
    source: Source,
    position: u64,
    len: u64,
    ending: watch::Receiver<Ending>,
    index: usize,
    timeout: Duration,
    _mark: ReaderMark,
    _place: OwnedSemaphorePermit,
}

fn stopped_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the job stopped downloading while its file was read",
    )
}

impl Reader {
    /// The next bytes, `None` at the end of the file.
    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        if self.position >= self.len {
            return None;
        }
        let want = usize::try_from(self.len - self.position)
            .unwrap_or(CHUNK)
            .min(CHUNK);
        let read = match &mut self.source {
            Source::HandedOver(file) => read_at(file.clone(), self.position, want).await,
            Source::Torrent(_) => self.read_torrent(want).await,
        };
        Some(read.inspect(|bytes| self.position += bytes.len() as u64))
    }

    /// Waits (at most the timeout) for the torrent's next bytes, or switches to the
    /// handed-over file when the job's download ended meanwhile.
    async fn read_torrent(&mut self, want: usize) -> io::Result<Bytes> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut buf = BytesMut::zeroed(want);
        loop {
            if let Some(file) = self.switch()? {
                return read_at(file, self.position, want).await;
            }
            let Source::Torrent(stream) = &mut self.source else {
                return Err(stopped_error());
            };
            // A pending read leaves nothing behind (librqbit's stream only reads a piece it
            // has), so losing the race to another branch is harmless.
            let woke = tokio::select! {
                read = stream.read(&mut buf) => Some(read),
                _ = self.ending.changed() => None,
                () = tokio::time::sleep(NUDGE) => None,
                () = tokio::time::sleep_until(deadline) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the file's data did not arrive in time",
                    ));
                }
            };
            match woke {
                None => {}
                Some(Ok(0)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream ended early",
                    ));
                }
                Some(Ok(n)) => {
                    buf.truncate(n);
                    return Ok(buf.freeze());
                }
                // The torrent went away under the stream: a hand-over is announced before,
                // so `switch` finds it; otherwise this is the error.
                Some(Err(e)) => {
                    if let Some(file) = self.switch()? {
                        return read_at(file, self.position, want).await;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// The handed-over file to read from now, if the job's download ended; an error if the
    /// job stopped.
    fn switch(&mut self) -> io::Result<Option<Arc<std::fs::File>>> {
        let ending = self.ending.borrow().clone();
        let closed = self.ending.has_changed().is_err();
        match ending {
            Ending::Running if closed => Err(stopped_error()),
            Ending::Running => Ok(None),
            Ending::Stopped => Err(stopped_error()),
            Ending::HandedOver(files) => match files.get(&self.index) {
                Some(file) => {
                    self.source = Source::HandedOver(file.clone());
                    Ok(Some(file.clone()))
                }
                None => Err(stopped_error()),
            },
        }
    }
}

/// Up to `want` bytes of `file` at `offset` (positional: readers of one file share it).
async fn read_at(file: Arc<std::fs::File>, offset: u64, want: usize) -> io::Result<Bytes> {
    tokio::task::spawn_blocking(move || {
        let mut buf = BytesMut::zeroed(want);
        let n = file.read_at(&mut buf, offset)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the handed-over file is shorter than the torrent's",
            ));
        }
        buf.truncate(n);
        Ok(buf.freeze())
    })
    .await
    .map_err(io::Error::other)?
}

/// `reader` as an `AsyncRead`, `first` (already read) first.
fn into_async_read(first: Bytes, reader: Reader) -> LiveReader {
    let rest = futures::stream::unfold(reader, |mut r| async move {
        r.next().await.map(|item| (item, r))
    });
    let all = futures::stream::once(async move { Ok::<_, io::Error>(first) }).chain(rest);
    Box::pin(tokio_util::io::StreamReader::new(all))
}

#[async_trait]
impl LiveFiles for LiveStreams {
    async fn open(
        &self,
        job_id: JobId,
        index: usize,
        start: u64,
    ) -> Result<LiveReader, LiveFileError> {
        let (handle, len, ending, mark) = {
            let running = self.engine.running();
            let r = running.get(&job_id).ok_or(LiveFileError::NotRunning)?;
            let len = r
                .wanted
                .iter()
                .find(|(i, _, _)| *i == index)
                .map(|(_, len, _)| *len)
                .ok_or(LiveFileError::NotRunning)?;
            let (ending, mark) = r.board.reader(index);
            (r.handle.clone(), len, ending, mark)
        };
        if start >= len {
            return Err(LiveFileError::Unexpected(anyhow::anyhow!(
                "byte {start} is past the end of a file of {len} bytes"
            )));
        }
        let place = self
            .places
            .clone()
            .try_acquire_owned()
            .map_err(|_| LiveFileError::Busy)?;
        // librqbit waits for a torrent checking its data before it makes a stream.
        let mut stream = tokio::time::timeout(self.timeout, handle.stream(index))
            .await
            .map_err(|_| LiveFileError::TimedOut)?
            .map_err(|e| {
                if matches!(&*ending.borrow(), Ending::Running) {
                    LiveFileError::Unexpected(e.context("streaming a torrent's file"))
                } else {
                    LiveFileError::NotRunning
                }
            })?;
        stream
            .seek(SeekFrom::Start(start))
            .await
            .map_err(|e| LiveFileError::Unexpected(anyhow::Error::new(e).context("seeking")))?;
        let mut reader = Reader {
            source: Source::Torrent(Box::new(stream) as TorrentStream),
            position: start,
            len,
            ending,
            index,
            timeout: self.timeout,
            _mark: mark,
            _place: place,
        };
        match reader.next().await {
            Some(Ok(first)) => Ok(into_async_read(first, reader)),
            Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut => Err(LiveFileError::TimedOut),
            Some(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => Err(LiveFileError::NotRunning),
            Some(Err(e)) => Err(LiveFileError::Unexpected(
                anyhow::Error::new(e).context("reading a streamed file"),
            )),
            None => Err(LiveFileError::Unexpected(anyhow::anyhow!(
                "nothing to read from byte {start}"
            ))),
        }
    }

    async fn open_staged(
        &self,
        job_id: JobId,
        path: &SafePath,
        start: u64,
    ) -> Result<LiveReader, LiveFileError> {
        let path = self.engine.staging.file(job_id, path);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LiveFileError::NotRunning);
            }
            Err(e) => {
                return Err(LiveFileError::Unexpected(
                    anyhow::Error::new(e).context("opening a staged file"),
                ));
            }
        };
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| LiveFileError::Unexpected(anyhow::Error::new(e).context("seeking")))?;
        Ok(Box::pin(file))
    }
}
