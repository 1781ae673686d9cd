//! The ports of one process (the embedded set for `ferry serve`, the distributed set for
//! the other binaries) and the use cases and stage pools built on them. Internal to wiring:
//! only [`crate::App`] sees them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferry_application::ports::{
    Clock, JobQueue, JobRepository, ObjectStore, ProfileRepository, ProgressBus, SecretBox,
    Staging, StoreResolver, SystemClock, TorrentEngine, UploadSessions,
};
use ferry_application::stages::{
    DeliverStage, DownloadSettings, DownloadStage, FetchStage, SeedStage,
};
use ferry_application::{
    Accounts, Categories, DriveConnect, HealthCheck, Jobs, Lifecycle, Recovery, RetryPolicy,
    StageHandler, StageRunner, StorageProfiles,
};
use ferry_domain::TorrentLimits;
use ferry_embedded::{EmbeddedBus, EmbeddedQueue};
use ferry_local_storage::{LocalStaging, LocalStore};
use ferry_redis::{Redis, RedisQueue};
use ferry_torrent::{EngineConfig, Inspector, RqbitEngine};

use crate::config::{self, Config};
use crate::stores::ProfileStores;
use crate::{consumer_name, database, redact, secret_box, secret_key};

/// A stage handler and how many copies of it run at once.
pub(crate) struct StagePool {
    pub handler: Arc<dyn StageHandler>,
    pub concurrency: usize,
}

/// The ports of one process, and the use cases built on them.
pub(crate) struct Ports {
    repo: Arc<dyn JobRepository>,
    pub queue: Arc<dyn JobQueue>,
    pub bus: Arc<dyn ProgressBus>,
    store: Arc<dyn ObjectStore>,
    staging: Arc<dyn Staging>,
    clock: Arc<dyn Clock>,
    profiles: Arc<dyn ProfileRepository>,
    secrets: Arc<dyn SecretBox>,
    stores: Arc<dyn StoreResolver>,
    fetcher: Arc<dyn ferry_application::ports::Fetcher>,
    pub database: ferry_database::Connection,
    /// Browser sessions: the database (embedded) or Redis (distributed).
    pub sessions: Arc<dyn ferry_application::ports::Sessions>,
    /// Rate limits: in process (embedded) or shared through Redis (distributed).
    pub limiter: Arc<dyn ferry_application::ports::RateLimiter>,
    /// The address policy of storage endpoints and of trackers and peers.
    storage_guard: Arc<ferry_net::NetGuard>,
    torrent_guard: Arc<ferry_net::NetGuard>,
    /// The operator's block lists, re-read when their files change.
    blocklists: Arc<crate::blocklists::Blocklists>,
    config: Config,
    /// Webhooks: the outbox every lifecycle writes to, and what the dispatcher sends with.
    webhooks: WebhookParts,
}

/// The webhooks' ports: built once per process, shared by every lifecycle and the use case.
struct WebhookParts {
    repo: Arc<dyn ferry_application::ports::WebhookRepository>,
    transport: Arc<dyn ferry_application::ports::WebhookTransport>,
    notices: Arc<dyn ferry_application::ports::JobNotices>,
    /// Wakes this process's dispatcher when a delivery is recorded here.
    wake: Arc<tokio::sync::Notify>,
}

impl WebhookParts {
    fn new(config: &Config, db: &ferry_database::Connection) -> anyhow::Result<Self> {
        let repo: Arc<dyn ferry_application::ports::WebhookRepository> =
            Arc::new(ferry_database::SqlWebhookRepository::new(db.clone()));
        let wake = Arc::new(tokio::sync::Notify::new());
        let notices = Arc::new(ferry_application::WebhookNotices {
            repo: repo.clone(),
            clock: Arc::new(SystemClock),
            render: Arc::new(ferry_api::job_json),
            wake: wake.clone(),
        });
        Ok(Self {
            repo,
            // Endpoints are reached like URL jobs: the same guard, allow list and proxy.
            transport: Arc::new(ferry_fetch::HttpFetcher::new(fetch_settings(config))?),
            notices,
            wake,
        })
    }
}

/// What both modes share: the database, local storage and staging, profiles and secrets.
struct Shared {
    fetcher: Arc<dyn ferry_application::ports::Fetcher>,
    repo: Arc<dyn JobRepository>,
    store: Arc<dyn ObjectStore>,
    staging: Arc<dyn Staging>,
    profiles: Arc<dyn ProfileRepository>,
    secrets: Arc<dyn SecretBox>,
    stores: Arc<dyn StoreResolver>,
    db: ferry_database::Connection,
    storage_guard: Arc<ferry_net::NetGuard>,
    torrent_guard: Arc<ferry_net::NetGuard>,
    blocklists: Arc<crate::blocklists::Blocklists>,
}

/// The guard storage clients resolve through: everything when private endpoints are
/// allowed, else the public internet plus `storage.allow`.
fn storage_guard(config: &Config) -> ferry_net::NetGuard {
    let policy = if config.storage.allow_private_endpoints {
        ferry_domain::AddressPolicy::allow_all()
    } else {
        ferry_domain::AddressPolicy {
            allow: config.storage.allow.clone(),
        }
    };
    ferry_net::NetGuard::new(policy, hosts(config, None))
}

/// The policy of trackers and peers (`torrent.allow`).
fn torrent_policy(config: &Config) -> ferry_domain::AddressPolicy {
    ferry_domain::AddressPolicy {
        allow: config.torrent.allow.clone(),
    }
}

/// `hosts`, with a family's own mappings (`fetch.hosts`) over them.
fn hosts(
    config: &Config,
    own: Option<&std::collections::BTreeMap<String, std::net::IpAddr>>,
) -> std::collections::HashMap<String, std::net::IpAddr> {
    config
        .hosts
        .iter()
        .chain(own.into_iter().flatten())
        .map(|(k, v)| (k.to_ascii_lowercase(), *v))
        .collect()
}

async fn shared(config: &Config, secret_key: &str) -> anyhow::Result<Shared> {
    let db = database(config).await?;
    let repo: Arc<dyn JobRepository> = Arc::new(ferry_database::SqlJobRepository::new(db.clone()));
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(config.storage_dir()));
    store.check().await.context("checking the storage folder")?;
    if let Some(shared) = config.shared_dir() {
        LocalStore::new(shared)
            .check()
            .await
            .context("checking the shared folder (storage.shared_dir)")?;
    }
    let staging: Arc<dyn Staging> = Arc::new(LocalStaging::new(config.staging_dir()));
    let profiles: Arc<dyn ProfileRepository> =
        Arc::new(ferry_database::SqlProfileRepository::new(db.clone()));
    let sessions: Arc<dyn UploadSessions> =
        Arc::new(ferry_database::SqlUploadSessions::new(db.clone()));
    let secrets: Arc<dyn SecretBox> = Arc::new(secret_box(config, secret_key)?);
    let storage_guard = Arc::new(storage_guard(config));
    let torrent_guard = Arc::new(ferry_net::NetGuard::new(
        torrent_policy(config),
        hosts(config, None),
    ));
    let stores: Arc<dyn StoreResolver> = Arc::new(ProfileStores {
        local: store.clone(),
        profiles: profiles.clone(),
        secrets: secrets.clone(),
        sessions,
        settings: config.storage.clone(),
        google: config.google.clone(),
        guard: storage_guard.clone(),
        shared_dir: config.shared_dir(),
    });
    let blocklists = crate::blocklists::Blocklists::load(&config.blocklist)?;
    // URL jobs' every hop meets the operator's URL block list, not only the submitted URL.
    let fetcher = Arc::new(crate::metered::MeteredFetcher::new(
        Arc::new(
            ferry_fetch::HttpFetcher::new(fetch_settings(config))?
                .with_blocklist(blocklists.submission.clone()),
        ),
        config.fetch.proxy.is_some(),
    ));
    Ok(Shared {
        blocklists,
        fetcher,
        repo,
        store,
        staging,
        profiles,
        secrets,
        stores,
        db,
        storage_guard,
        torrent_guard,
    })
}

/// The fetcher's settings from the configuration.
fn fetch_settings(config: &Config) -> ferry_fetch::FetchSettings {
    let c = &config.fetch;
    ferry_fetch::FetchSettings {
        proxy: c.proxy.as_ref().map(|url| url.as_str().to_owned()),
        proxy_required: c.proxy_required,
        proxy_dns: match c.proxy_dns {
            config::ProxyDns::Proxy => ferry_fetch::ProxyDns::Proxy,
            config::ProxyDns::Local => ferry_fetch::ProxyDns::Local,
        },
        policy: ferry_domain::AddressPolicy {
            allow: c.allow.clone(),
        },
        hosts: hosts(config, Some(&c.hosts)),
        max_bytes: c.max_bytes.get(),
        allowed_types: c.allowed_types.clone(),
        connect_timeout: c.connect_timeout,
        read_timeout: c.read_timeout,
        max_redirects: 10,
    }
}

impl Ports {
    /// The one-box mode: the configured database (SQLite by default), the embedded queue and
    /// progress bus, local storage and staging.
    ///
    /// # Errors
    /// When the database or the storage folder cannot be set up.
    pub async fn embedded(config: &Config) -> anyhow::Result<Self> {
        let s = shared(config, &secret_key(config, true)?).await?;
        let webhooks = WebhookParts::new(config, &s.db)?;
        Ok(Self {
            repo: s.repo,
            queue: Arc::new(EmbeddedQueue::new()),
            bus: Arc::new(EmbeddedBus::new()),
            store: s.store,
            staging: s.staging,
            clock: Arc::new(SystemClock),
            profiles: s.profiles,
            secrets: s.secrets,
            stores: s.stores,
            fetcher: s.fetcher,
            sessions: Arc::new(ferry_database::SqlSessions::new(s.db.clone())),
            limiter: Arc::new(ferry_embedded::GovernorLimiter::new()),
            database: s.db,
            webhooks,
            storage_guard: s.storage_guard,
            torrent_guard: s.torrent_guard,
            blocklists: s.blocklists,
            config: config.clone(),
        })
    }

    /// The distributed mode: the configured database (PostgreSQL) and Redis Streams.
    ///
    /// # Errors
    /// When `redis_url` is missing or Redis, the database or the storage cannot be reached.
    pub async fn distributed(config: &Config) -> anyhow::Result<Self> {
        let url = config
            .redis_url
            .as_ref()
            .map(url::Url::as_str)
            .context("redis_url (FERRY_REDIS_URL) is required in the distributed mode")?;
        let redis = Redis::connect(url, &config.redis_prefix)
            .await
            .with_context(|| format!("connecting to Redis at {}", redact(url)))?;
        let s = shared(config, &secret_key(config, false)?).await?;
        let webhooks = WebhookParts::new(config, &s.db)?;
        let queue = Arc::new(RedisQueue::new(
            redis.clone(),
            consumer_name(),
            config.workers.lease,
        ));
        Ok(Self {
            repo: s.repo,
            queue,
            bus: Arc::new(ferry_redis::RedisBus::new(redis.clone())),
            store: s.store,
            staging: s.staging,
            clock: Arc::new(SystemClock),
            profiles: s.profiles,
            secrets: s.secrets,
            stores: s.stores,
            fetcher: s.fetcher,
            sessions: Arc::new(ferry_redis::RedisSessions::new(redis.clone())),
            limiter: Arc::new(ferry_redis::RedisRateLimiter::new(redis)),
            database: s.db,
            webhooks,
            storage_guard: s.storage_guard,
            torrent_guard: s.torrent_guard,
            blocklists: s.blocklists,
            config: config.clone(),
        })
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Closes the database pool (last, once nothing uses it).
    pub async fn close(self) {
        self.database.close().await.ok();
    }

    fn limits(&self) -> TorrentLimits {
        TorrentLimits {
            max_files: self.config.limits.max_files.get(),
            max_total_bytes: self.config.limits.max_total_bytes.get(),
        }
    }

    pub fn lifecycle(&self) -> Lifecycle {
        Lifecycle::new(self.repo.clone(), self.bus.clone(), self.clock.clone())
            .with_notices(self.webhooks.notices.clone())
    }

    /// The webhook use cases and dispatcher.
    pub fn webhooks(&self) -> Arc<ferry_application::Webhooks> {
        let c = &self.config.webhooks;
        Arc::new(ferry_application::Webhooks {
            repo: self.webhooks.repo.clone(),
            transport: self.webhooks.transport.clone(),
            secrets: self.secrets.clone(),
            clock: self.clock.clone(),
            settings: ferry_application::WebhookSettings {
                max_per_user: c.max_per_user.get(),
                retry_base: c.retry_base,
                max_attempts: c.max_attempts.get(),
                timeout: c.timeout,
                poll: c.poll,
                keep: c.keep,
                concurrency: c.concurrency.get(),
                per_owner_concurrency: c.concurrency_per_user.get(),
                ping_interval: c.ping_interval,
            },
            wake: self.webhooks.wake.clone(),
            limiter: self.limiter.clone(),
        })
    }

    /// The API's use cases; `live`: the engine's files of unfinished jobs, where the API
    /// runs in the engine's process.
    pub fn jobs(&self, live: Option<Arc<dyn ferry_application::ports::LiveFiles>>) -> Arc<Jobs> {
        Arc::new(Jobs {
            lifecycle: self.lifecycle(),
            queue: self.queue.clone(),
            inspector: Arc::new(Inspector),
            profiles: self.profiles.clone(),
            stores: self.stores.clone(),
            fetcher: self.fetcher.clone(),
            limits: self.limits(),
            torrent_addresses: self.torrent_guard.clone(),
            blocklist: self.blocklists.submission.clone(),
            live,
        })
    }

    /// The storage-profile use cases.
    pub fn storage_profiles(&self) -> Arc<StorageProfiles> {
        Arc::new(StorageProfiles {
            profiles: self.profiles.clone(),
            secrets: self.secrets.clone(),
            resolver: self.stores.clone(),
            clock: self.clock.clone(),
            endpoints: self.storage_guard.clone(),
            shared_dir: self
                .config
                .shared_dir()
                .map(|d| std::path::absolute(&d).unwrap_or(d)),
        })
    }

    /// Categories and tags (the qBittorrent-compatible API), with folders on the shared
    /// volume when one is configured.
    pub fn categories(&self, profiles: &Arc<StorageProfiles>) -> Arc<Categories> {
        Arc::new(Categories {
            labels: Arc::new(ferry_database::SqlLabelRepository::new(
                self.database.clone(),
            )),
            profiles: profiles.clone(),
            shared_dir: self
                .config
                .shared_dir()
                .map(|d| std::path::absolute(&d).unwrap_or(d)),
        })
    }

    /// How often a process looks for feeds that are due.
    pub fn feeds_check_every(&self) -> Duration {
        self.config.feeds.check_every
    }

    /// RSS feeds and download rules: the poller's and the API's use case. Feeds are read
    /// with a client of their own on the fetch settings (proxy, guard), without the URL
    /// jobs' content types.
    ///
    /// # Errors
    /// When the fetch proxy is misconfigured.
    pub fn feeds(
        &self,
        jobs: Arc<Jobs>,
        accounts: Arc<Accounts>,
        categories: Arc<Categories>,
    ) -> anyhow::Result<Arc<ferry_application::Feeds>> {
        let f = &self.config.feeds;
        Ok(Arc::new(ferry_application::Feeds {
            repo: Arc::new(ferry_database::SqlFeedRepository::new(
                self.database.clone(),
            )),
            // Feeds meet the operator's URL block list like URL jobs: at creation, every hop.
            source: Arc::new(
                ferry_fetch::HttpFetcher::new(fetch_settings(&self.config))?
                    .with_blocklist(self.blocklists.submission.clone()),
            ),
            jobs,
            accounts,
            categories,
            clock: self.clock.clone(),
            matchers: ferry_application::feeds::Matchers::default(),
            settings: ferry_application::FeedSettings {
                default_interval: f.default_interval.max(f.min_interval),
                min_interval: f.min_interval,
                limits: ferry_application::ports::FeedLimits {
                    max_bytes: f.max_bytes.get(),
                    max_items: f.max_items.get(),
                },
                max_feeds_per_user: f.max_per_user.get(),
                max_rules_per_user: f.max_rules_per_user.get(),
                lease: std::time::Duration::from_secs(120),
                max_torrent_bytes: self.config.limits.max_torrent_file_bytes.get(),
                seed_by_default: self.config.seed.default,
                seed_limits: self.seed_policy(),
            },
        }))
    }

    /// "Connect Google Drive", when the operator configured a Google OAuth client
    /// (`google.client_id`); its token exchange goes through the storage guard.
    ///
    /// # Errors
    /// When `google.token_url` is a literal address the storage policy refuses.
    pub fn drive_connect(
        &self,
        profiles: &Arc<StorageProfiles>,
        accounts: &Accounts,
    ) -> anyhow::Result<Option<Arc<DriveConnect>>> {
        let g = &self.config.google;
        if g.client_id.is_empty() {
            return Ok(None);
        }
        let consent = ferry_gdrive::GoogleConsent::new(
            ferry_gdrive::ConsentSettings {
                auth_url: g.auth_url.clone(),
                token_url: g.token_url.clone(),
                client_id: g.client_id.clone(),
                client_secret: g.client_secret.expose().to_owned(),
            },
            self.storage_guard.clone(),
        )
        .map_err(|e| anyhow::anyhow!("google.token_url: {e}"))?;
        Ok(Some(Arc::new(DriveConnect {
            consent: Arc::new(consent),
            profiles: profiles.clone(),
            users: accounts.users.clone(),
            clock: self.clock.clone(),
        })))
    }

    /// The disks Ferry writes to, for the free-space gauges.
    pub fn volumes(&self) -> Vec<ferry_api::Volume> {
        vec![
            ferry_api::Volume {
                name: "staging",
                path: self.config.staging_dir(),
            },
            ferry_api::Volume {
                name: "storage",
                path: self.config.storage_dir(),
            },
        ]
        .into_iter()
        .chain(self.config.shared_dir().map(|path| ferry_api::Volume {
            name: "shared",
            path,
        }))
        .collect()
    }

    pub fn health(&self) -> Arc<HealthCheck> {
        Arc::new(HealthCheck {
            repo: self.repo.clone(),
            queue: self.queue.clone(),
            store: self.store.clone(),
        })
    }

    pub fn runner(&self) -> Arc<StageRunner> {
        let w = &self.config.workers;
        Arc::new(StageRunner {
            lifecycle: self.lifecycle(),
            queue: self.queue.clone(),
            policy: RetryPolicy {
                max_attempts: w.max_attempts.get(),
                base_delay: w.retry_base_delay,
                max_delay: w.retry_max_delay,
            },
        })
    }

    pub fn recovery(&self) -> Recovery {
        Recovery {
            repo: self.repo.clone(),
            queue: self.queue.clone(),
        }
    }

    /// How often a worker renews the leases it holds: a third of the lease.
    pub fn renew_every(&self) -> Duration {
        self.config.workers.lease / 3
    }

    /// How often to look for jobs that lost their queue message.
    pub fn reconcile_every(&self) -> Duration {
        self.config.workers.reconcile_every
    }

    /// The delivery stage.
    pub fn deliver_pool(&self) -> StagePool {
        StagePool {
            handler: Arc::new(DeliverStage {
                lifecycle: self.lifecycle(),
                queue: self.queue.clone(),
                staging: self.staging.clone(),
                stores: self.stores.clone(),
                tick: self.config.workers.progress_interval,
            }),
            concurrency: self.config.workers.uploads.get(),
        }
    }

    /// The fetch stage (URL jobs): fetcher, content store, packager.
    pub fn fetch_pool(&self) -> StagePool {
        let packager = ferry_torrent::Packager {
            private: self.config.package.private,
            trackers: self
                .config
                .package
                .trackers
                .iter()
                .map(|url| url.as_str().to_owned())
                .collect(),
            ..ferry_torrent::Packager::default()
        };
        StagePool {
            handler: Arc::new(FetchStage {
                lifecycle: self.lifecycle(),
                queue: self.queue.clone(),
                fetcher: self.fetcher.clone(),
                packager: Arc::new(packager),
                staging: self.staging.clone(),
                settings: DownloadSettings {
                    tick: self.config.workers.progress_interval,
                    ..DownloadSettings::default()
                },
            }),
            concurrency: self.config.workers.fetches.get(),
        }
    }

    /// The server's default seeding limits.
    pub fn seed_policy(&self) -> ferry_domain::SeedPolicy {
        let s = &self.config.seed;
        ferry_domain::SeedPolicy {
            ratio: s.ratio,
            time_secs: s.time.map(|d| d.as_secs()),
            idle_secs: s.idle.map(|d| d.as_secs()),
        }
    }

    /// The seed stage on a running engine.
    pub fn seed_pool(&self, engine: Arc<dyn TorrentEngine>) -> StagePool {
        StagePool {
            handler: Arc::new(SeedStage {
                lifecycle: self.lifecycle(),
                queue: self.queue.clone(),
                engine,
                staging: self.staging.clone(),
                tick: self
                    .config
                    .workers
                    .progress_interval
                    .max(Duration::from_secs(1)),
                snapshot_every: Duration::from_secs(10),
                default_policy: self.seed_policy(),
            }),
            concurrency: self.config.workers.seeds.get(),
        }
    }

    /// Starts the embedded BitTorrent engine and the download stage on it.
    ///
    /// # Errors
    /// When the engine cannot start (staging folder, listening port).
    /// Also returns the engine as the stages see it (metered), for the seed stage.
    pub async fn download_pool(
        &self,
    ) -> anyhow::Result<(StagePool, Arc<RqbitEngine>, Arc<dyn TorrentEngine>)> {
        let t = &self.config.torrent;
        let network = t.network(&self.config.fetch)?;
        let engine = Arc::new(
            RqbitEngine::start(EngineConfig {
                staging_dir: self.config.staging_dir(),
                listen: network.listen,
                dht: network.dht,
                lsd: network.lsd,
                upnp: network.upnp,
                download_limit_bps: t.download_limit,
                upload_limit_bps: t.upload_limit,
                peer_limit: t.peer_limit.map(std::num::NonZeroUsize::get),
                max_connections: t.max_connections.map(std::num::NonZeroUsize::get),
                peer_policy: self.torrent_guard.policy().clone(),
                proxy: network.proxy.map(|u| u.to_string()),
                proxy_required: network.proxy_required,
                peer_blocklist: self.blocklists.peer_ranges(),
            })
            .await?,
        );
        self.blocklists.attach(&engine);
        let port: Arc<dyn TorrentEngine> = crate::metered::MeteredEngine::new(engine.clone());
        let pool = StagePool {
            handler: Arc::new(DownloadStage {
                lifecycle: self.lifecycle(),
                queue: self.queue.clone(),
                engine: port.clone(),
                staging: self.staging.clone(),
                limits: self.limits(),
                settings: DownloadSettings {
                    tick: self.config.workers.progress_interval,
                    resolve_timeout: t.resolve_timeout,
                    ..DownloadSettings::default()
                },
            }),
            concurrency: self.config.workers.downloads.get(),
        };
        Ok((pool, engine, port))
    }
}
