//! Wiring: builds the ports from [`Config`] and hands the use cases to the binaries.
//!
//! Only this crate knows which adapter backs which port; `api`, `workers` and `cli` see
//! the application's use cases and port traits.

pub mod config;

use std::sync::Arc;

use anyhow::Context;
use ferry_application::ports::{
    Clock, JobQueue, JobRepository, ObjectStore, ProgressBus, Staging, SystemClock, TorrentEngine,
};
use ferry_application::stages::{DeliverStage, DownloadSettings, DownloadStage};
use ferry_application::{
    HealthCheck, Jobs, Lifecycle, Recovery, RetryPolicy, StageHandler, StageRunner,
};
use ferry_domain::TorrentLimits;
use ferry_embedded::{EmbeddedBus, EmbeddedQueue};
use ferry_local_storage::{LocalStaging, LocalStore};
use ferry_torrent::{EngineConfig, Inspector, RqbitEngine};

pub use config::{Config, LogFormat, Secret};

/// A stage handler and how many copies of it run at once.
pub struct StagePool {
    pub handler: Arc<dyn StageHandler>,
    pub concurrency: usize,
}

/// Everything one `ferry serve` process runs: the API's use cases and the workers' stages.
pub struct Embedded {
    pub jobs: Arc<Jobs>,
    pub bus: Arc<dyn ProgressBus>,
    pub queue: Arc<dyn JobQueue>,
    pub runner: Arc<StageRunner>,
    pub stages: Vec<StagePool>,
    pub health: Arc<HealthCheck>,
    pub recovery: Recovery,
    pub engine: Arc<RqbitEngine>,
    pub database: ferry_database::Connection,
}

/// Connects to the database and brings its schema up to date.
///
/// # Errors
/// When the database is unreachable or a migration fails.
pub async fn database(config: &Config) -> anyhow::Result<ferry_database::Connection> {
    let url = config.database_url();
    if url.starts_with("sqlite:") {
        tokio::fs::create_dir_all(&config.data_dir)
            .await
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    }
    let db = ferry_database::connect(&url)
        .await
        .with_context(|| format!("connecting to the database at {}", redact(&url)))?;
    ferry_database::migrate(&db)
        .await
        .context("migrating the database")?;
    Ok(db)
}

/// A URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Builds the one-box mode: SQLite (or the configured database), the embedded queue and
/// progress bus, local storage and the embedded torrent engine.
///
/// # Errors
/// When the database, the storage folder or the torrent engine cannot be set up.
pub async fn build_embedded(config: &Config) -> anyhow::Result<Embedded> {
    let db = database(config).await?;
    let repo: Arc<dyn JobRepository> = Arc::new(ferry_database::SqlJobRepository::new(db.clone()));
    let queue: Arc<dyn JobQueue> = Arc::new(EmbeddedQueue::new());
    let bus: Arc<dyn ProgressBus> = Arc::new(EmbeddedBus::new());
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(config.storage_dir()));
    store.check().await.context("checking the storage folder")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Arc::new(
        RqbitEngine::start(EngineConfig {
            staging_dir: config.staging_dir(),
            listen: config.torrent.listen,
            dht: config.torrent.dht,
            lsd: config.torrent.lsd,
            upnp: config.torrent.upnp,
            download_limit_bps: config.torrent.download_limit,
            upload_limit_bps: config.torrent.upload_limit,
            peer_limit: config.torrent.peer_limit,
        })
        .await?,
    );
    let engine_port: Arc<dyn TorrentEngine> = engine.clone();
    let staging: Arc<dyn Staging> = Arc::new(LocalStaging::new(config.staging_dir()));
    let limits = TorrentLimits {
        max_files: config.limits.max_files,
        max_total_bytes: config.limits.max_total_bytes,
    };
    let lifecycle = Lifecycle::new(repo.clone(), bus.clone(), clock);
    let jobs = Arc::new(Jobs {
        lifecycle: lifecycle.clone(),
        queue: queue.clone(),
        inspector: Arc::new(Inspector),
        store: store.clone(),
        limits,
    });
    let download = Arc::new(DownloadStage {
        lifecycle: lifecycle.clone(),
        queue: queue.clone(),
        engine: engine_port,
        staging: staging.clone(),
        limits,
        settings: DownloadSettings {
            tick: config.workers.progress_interval,
            resolve_timeout: config.torrent.resolve_timeout,
            ..DownloadSettings::default()
        },
    });
    let deliver = Arc::new(DeliverStage {
        lifecycle: lifecycle.clone(),
        staging,
        store: store.clone(),
    });
    let runner = Arc::new(StageRunner {
        lifecycle,
        queue: queue.clone(),
        policy: RetryPolicy {
            max_attempts: config.workers.max_attempts.max(1),
            base_delay: config.workers.retry_base_delay,
            max_delay: config.workers.retry_max_delay,
        },
    });
    Ok(Embedded {
        jobs,
        bus,
        queue: queue.clone(),
        runner,
        stages: vec![
            StagePool {
                handler: download,
                concurrency: config.workers.downloads.max(1),
            },
            StagePool {
                handler: deliver,
                concurrency: config.workers.uploads.max(1),
            },
        ],
        health: Arc::new(HealthCheck {
            repo: repo.clone(),
            queue: queue.clone(),
            store,
        }),
        recovery: Recovery { repo, queue },
        engine,
        database: db,
    })
}
