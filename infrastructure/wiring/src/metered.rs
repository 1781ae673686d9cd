//! Metrics of the work itself, taken around the ports so no adapter (and no use case) has
//! to know about them: bytes and durations of fetches and deliveries by backend, and the
//! BitTorrent engine's peers, rates and bytes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use ferry_application::ports::{
    EngineError, EngineStats, FetchBody, FetchError, FetchInfo, Fetched, Fetcher, ObjectLocation,
    ObjectStore, PutRequest, StoreError, StoredObject, TorrentEngine, TorrentSpec,
};
use ferry_domain::{FetchUrl, JobId, MagnetLink, StorageKey};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

/// The instruments, made once per process.
struct Instruments {
    fetch_bytes: Counter<u64>,
    fetch_duration: Histogram<f64>,
    delivery_bytes: Counter<u64>,
    delivery_duration: Histogram<f64>,
    torrent_down: Counter<u64>,
    torrent_up: Counter<u64>,
}

fn instruments() -> &'static Instruments {
    static ONCE: OnceLock<Instruments> = OnceLock::new();
    ONCE.get_or_init(|| {
        let m = ferry_observability::meter();
        Instruments {
            fetch_bytes: m
                .u64_counter("ferry_fetch")
                .with_unit("By")
                .with_description("Bytes fetched from URLs, by route (proxy or direct)")
                .build(),
            fetch_duration: m
                .f64_histogram("ferry_fetch_duration")
                .with_unit("s")
                .with_description("Time a URL's body took to fetch, by route and outcome")
                .build(),
            delivery_bytes: m
                .u64_counter("ferry_delivery")
                .with_unit("By")
                .with_description("Bytes delivered to storage, by backend")
                .build(),
            delivery_duration: m
                .f64_histogram("ferry_delivery_duration")
                .with_unit("s")
                .with_description("Time a file took to deliver, by backend and outcome")
                .build(),
            torrent_down: m
                .u64_counter("ferry_torrent_downloaded")
                .with_unit("By")
                .with_description("Bytes downloaded from BitTorrent peers")
                .build(),
            torrent_up: m
                .u64_counter("ferry_torrent_uploaded")
                .with_unit("By")
                .with_description("Bytes uploaded to BitTorrent peers")
                .build(),
        }
    })
}

fn outcome<T, E>(r: &Result<T, E>) -> &'static str {
    if r.is_ok() { "ok" } else { "error" }
}

// ---- fetches ----

/// A [`Fetcher`] whose bodies count their bytes and time.
pub struct MeteredFetcher {
    inner: Arc<dyn Fetcher>,
    route: &'static str,
}

impl MeteredFetcher {
    /// `proxied`: whether fetches go through the configured proxy.
    pub fn new(inner: Arc<dyn Fetcher>, proxied: bool) -> Self {
        Self {
            inner,
            route: if proxied { "proxy" } else { "direct" },
        }
    }
}

#[async_trait]
impl Fetcher for MeteredFetcher {
    async fn open(
        &self,
        url: &FetchUrl,
        partial: Option<&Path>,
    ) -> Result<Box<dyn FetchBody>, FetchError> {
        let body = self.inner.open(url, partial).await?;
        Ok(Box::new(MeteredBody {
            inner: body,
            route: self.route,
        }))
    }
}

struct MeteredBody {
    inner: Box<dyn FetchBody>,
    route: &'static str,
}

#[async_trait]
impl FetchBody for MeteredBody {
    fn info(&self) -> &FetchInfo {
        self.inner.info()
    }

    async fn bytes(self: Box<Self>, max: u64) -> Result<Vec<u8>, FetchError> {
        let route = self.route;
        let bytes = self.inner.bytes(max).await?;
        instruments()
            .fetch_bytes
            .add(bytes.len() as u64, &[KeyValue::new("route", route)]);
        Ok(bytes)
    }

    async fn save(
        self: Box<Self>,
        dest: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Fetched, FetchError> {
        let route = self.route;
        let resumed = self.inner.info().resumed_from;
        let started = Instant::now();
        // Counted as they arrive, so a stopped or failed fetch counts what it moved.
        let counted = std::sync::atomic::AtomicU64::new(resumed);
        let i = instruments();
        let report = |n: u64| {
            let before = counted.swap(n, std::sync::atomic::Ordering::Relaxed);
            if n > before {
                i.fetch_bytes
                    .add(n - before, &[KeyValue::new("route", route)]);
            }
            progress(n);
        };
        let saved = self.inner.save(dest, &report).await;
        i.fetch_duration.record(
            started.elapsed().as_secs_f64(),
            &[
                KeyValue::new("route", route),
                KeyValue::new("outcome", outcome(&saved)),
            ],
        );
        saved
    }
}

// ---- deliveries ----

/// An [`ObjectStore`] whose uploads count their bytes and time under `backend`.
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    backend: &'static str,
}

impl MeteredStore {
    pub fn wrap(inner: Arc<dyn ObjectStore>, backend: &'static str) -> Arc<dyn ObjectStore> {
        Arc::new(Self { inner, backend })
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn put_file(&self, req: PutRequest<'_>) -> Result<StoredObject, StoreError> {
        let started = Instant::now();
        let stored = self.inner.put_file(req).await;
        let i = instruments();
        if let Ok(s) = &stored {
            i.delivery_bytes
                .add(s.size, &[KeyValue::new("backend", self.backend)]);
        }
        i.delivery_duration.record(
            started.elapsed().as_secs_f64(),
            &[
                KeyValue::new("backend", self.backend),
                KeyValue::new("outcome", outcome(&stored)),
            ],
        );
        stored
    }

    async fn abort_uploads(&self, job: JobId) -> Result<(), StoreError> {
        self.inner.abort_uploads(job).await
    }

    async fn size(&self, key: &StorageKey) -> Result<Option<u64>, StoreError> {
        self.inner.size(key).await
    }

    async fn locate(&self, key: &StorageKey) -> Result<ObjectLocation, StoreError> {
        self.inner.locate(key).await
    }

    async fn delete_prefix(&self, prefix: &StorageKey) -> Result<(), StoreError> {
        self.inner.delete_prefix(prefix).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.inner.check().await
    }
}

// ---- the engine ----

/// What the engine last said of a running job.
#[derive(Clone, Copy, Default)]
struct Seen {
    peers: u64,
    down_rate: u64,
    up_rate: u64,
    done: u64,
    uploaded: u64,
}

/// A [`TorrentEngine`] whose stats feed the torrent metrics: gauges of peers and rates over
/// the running jobs, counters of the bytes moved (from the changes between two stats).
pub struct MeteredEngine {
    inner: Arc<dyn TorrentEngine>,
    seen: Arc<Mutex<HashMap<JobId, Seen>>>,
}

impl MeteredEngine {
    pub fn new(inner: Arc<dyn TorrentEngine>) -> Arc<Self> {
        let seen: Arc<Mutex<HashMap<JobId, Seen>>> = Arc::default();
        let m = ferry_observability::meter();
        let gauge =
            |name: &'static str, unit: &'static str, what: &'static str, f: fn(&Seen) -> u64| {
                let seen = seen.clone();
                // The SDK keeps the callback for the life of the meter provider.
                let _ = m
                    .u64_observable_gauge(name)
                    .with_unit(unit)
                    .with_description(what)
                    .with_callback(move |observer| {
                        let all = seen
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        observer.observe(all.values().map(f).sum(), &[]);
                    })
                    .build();
            };
        gauge(
            "ferry_torrent_peers",
            "",
            "Peers connected, over the running torrents",
            |s| s.peers,
        );
        gauge(
            "ferry_torrent_download_rate",
            "By/s",
            "Download rate, over the running torrents",
            |s| s.down_rate,
        );
        gauge(
            "ferry_torrent_upload_rate",
            "By/s",
            "Upload rate, over the running torrents",
            |s| s.up_rate,
        );
        gauge(
            "ferry_torrents_running",
            "",
            "Torrents the engine runs (downloading or seeding)",
            |_| 1,
        );
        Arc::new(Self { inner, seen })
    }

    fn record(&self, job: JobId, stats: &EngineStats) {
        let mut all = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = all.get(&job).copied().unwrap_or_default();
        let now = Seen {
            peers: u64::from(stats.peers),
            down_rate: if stats.checking {
                0
            } else {
                stats.download_rate
            },
            up_rate: stats.upload_rate,
            // Checked bytes are not downloaded ones.
            done: if stats.checking {
                before.done
            } else {
                stats.bytes_done
            },
            uploaded: stats.uploaded_bytes,
        };
        let i = instruments();
        // A first sight counts nothing (bytes from before this process, or checked data).
        if all.contains_key(&job) {
            if now.done > before.done {
                i.torrent_down.add(now.done - before.done, &[]);
            }
            if now.uploaded > before.uploaded {
                i.torrent_up.add(now.uploaded - before.uploaded, &[]);
            }
        }
        all.insert(job, now);
    }

    fn forget(&self, job: JobId) {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&job);
    }
}

#[async_trait]
impl TorrentEngine for MeteredEngine {
    async fn resolve(
        &self,
        magnet: &MagnetLink,
    ) -> Result<ferry_domain::TorrentMetadata, EngineError> {
        self.inner.resolve(magnet).await
    }

    async fn start(&self, spec: TorrentSpec) -> Result<(), EngineError> {
        self.inner.start(spec).await
    }

    async fn stats(&self, job_id: JobId) -> Result<EngineStats, EngineError> {
        let stats = self.inner.stats(job_id).await;
        match &stats {
            Ok(s) => self.record(job_id, s),
            Err(_) => self.forget(job_id),
        }
        stats
    }

    async fn stop(&self, job_id: JobId, delete_data: bool) -> Result<(), EngineError> {
        self.forget(job_id);
        self.inner.stop(job_id, delete_data).await
    }

    async fn set_limits(
        &self,
        job_id: JobId,
        limits: ferry_domain::SpeedLimits,
    ) -> Result<(), EngineError> {
        self.inner.set_limits(job_id, limits).await
    }

    async fn hand_over(&self, job_id: JobId) -> Result<(), EngineError> {
        self.forget(job_id);
        self.inner.hand_over(job_id).await
    }

    async fn network(&self) -> Result<(), EngineError> {
        self.inner.network().await
    }
}
