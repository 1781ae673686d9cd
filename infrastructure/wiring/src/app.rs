//! `App`: one Ferry process of a [`Role`], built from the configuration and run until its
//! [`Shutdown`] is requested.
//!
//! [`App::build`] does everything that can fail at start (ports, the engine, listeners, the
//! re-queue of unfinished jobs), so a process that was built serves; [`App::run`] starts its
//! tasks — the HTTP API, the probe server, the reconciler, the stage pools — and, on a stop
//! request, drains them: the API stops accepting, ends its event streams and answers the
//! requests in flight, workers stop claiming and finish or release the jobs in hand, then the
//! engine and the database close. `ferry serve` is the API and every worker pool in one
//! process, over the embedded ports; the other roles run over PostgreSQL and Redis.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferry_api::ApiState;
use ferry_torrent::RqbitEngine;
use poem::listener::TcpAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::ports::{Ports, StagePool};
use crate::token::{self, ApiToken};

/// How long a process's tasks get to finish (workers: finish or release their jobs; the API:
/// answer the requests in flight) after a stop request.
const GRACE: Duration = Duration::from_secs(30);

/// What a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `ferry serve`: the API and every stage in one process, over the embedded queue and
    /// bus (SQLite by default, local storage, the embedded engine).
    Serve,
    /// `ferry-api`: the HTTP API alone, over PostgreSQL and Redis; stateless.
    Api,
    /// `ferry-torrent-worker`: the download and seed stages, with the embedded engine.
    TorrentWorker,
    /// `ferry-upload-worker`: the delivery stage.
    UploadWorker,
    /// `ferry-fetch-worker`: the URL fetch stage (fetch, content-address, package).
    FetchWorker,
}

impl Role {
    fn serves_api(self) -> bool {
        matches!(self, Self::Serve | Self::Api)
    }

    fn is_worker(self) -> bool {
        matches!(
            self,
            Self::TorrentWorker | Self::UploadWorker | Self::FetchWorker
        )
    }

    /// The worker's name in its start-up log line.
    fn worker_name(self) -> &'static str {
        match self {
            Self::TorrentWorker => "Torrent",
            Self::UploadWorker => "Upload",
            Self::FetchWorker => "Fetch",
            Self::Serve | Self::Api => "",
        }
    }
}

/// A process's stop requests: the first asks it to drain and stop, another one to stop
/// waiting for the drain. Clones share the requests.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    stop: CancellationToken,
    force: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the process to stop; asked again, to stop at once.
    pub fn request(&self) {
        if self.stop.is_cancelled() {
            self.force.cancel();
        } else {
            self.stop.cancel();
        }
    }

    /// Resolves once a stop was requested.
    pub async fn requested(&self) {
        self.stop.cancelled().await;
    }

    async fn forced(&self) {
        self.force.cancelled().await;
    }
}

/// The HTTP API of a process, bound but not yet serving.
struct Api {
    acceptor: TcpAcceptor,
    addr: SocketAddr,
    state: Arc<ApiState>,
    token: ApiToken,
    /// Ferry's public base URL.
    public_url: String,
    /// A setup link for the first admin, when no admin can log in yet.
    setup: Option<ferry_application::SetupLink>,
}

/// One Ferry process, built and ready to run.
pub struct App {
    role: Role,
    ports: Ports,
    api: Option<Api>,
    /// Workers' `/health` and `/metrics`.
    probes: Option<TcpAcceptor>,
    pools: Vec<StagePool>,
    engine: Option<Arc<RqbitEngine>>,
}

impl App {
    /// Builds the process of `role`: its ports, its stage pools (starting the engine where
    /// one runs), its listeners; `ferry serve` also re-queues unfinished jobs.
    ///
    /// # Errors
    /// When a backend cannot be reached or set up, the engine cannot start, or an address
    /// cannot be listened on.
    pub async fn build(role: Role, config: &Config) -> anyhow::Result<Self> {
        let serve;
        let config = if role == Role::Serve {
            serve = config.for_serve();
            &serve
        } else {
            config
        };
        let token = if role.serves_api() {
            Some(token::ensure(
                config.api_token.as_ref().map(|s| s.expose()),
                &config.data_dir,
            )?)
        } else {
            None
        };
        let ports = if role == Role::Serve {
            Ports::embedded(config).await?
        } else {
            Ports::distributed(config).await?
        };
        let (pools, engine) = pools(role, &ports).await?;
        let requeued = if role == Role::Serve {
            ports
                .recovery()
                .requeue_orphans()
                .await
                .context("re-queueing unfinished jobs")?
        } else {
            0
        };
        // Files are streamed while they download only where the API and the engine share
        // a process.
        let live = match (role, &engine) {
            (Role::Serve, Some(engine)) => {
                Some(Arc::new(engine.live_files(config.torrent.stream_timeout))
                    as Arc<dyn ferry_application::ports::LiveFiles>)
            }
            _ => None,
        };
        let api = match token {
            Some(token) => Some(api(&ports, config, token, live).await?),
            None => None,
        };
        let probes = if role.is_worker() {
            let listen = config.workers.probe_listen;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen} for probes"))?;
            let addr = listener.local_addr()?;
            tracing::info!(role = role.worker_name(), probes = %addr, consumer = %crate::consumer_name(), "worker started");
            Some(TcpAcceptor::from_tokio(listener)?)
        } else {
            None
        };
        match (role, &api) {
            (Role::Serve, Some(api)) => {
                tracing::info!(addr = %api.addr, data_dir = %config.data_dir.display(), requeued, "ferry is serving");
            }
            (Role::Api, Some(api)) => tracing::info!(addr = %api.addr, "ferry-api is serving"),
            _ => {}
        }
        Ok(Self {
            role,
            ports,
            api,
            probes,
            pools,
            engine,
        })
    }

    /// Where the HTTP API listens (the port actually bound), for the roles that serve it.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(|api| api.addr)
    }

    /// The token the HTTP API asks for, and where it came from.
    pub fn api_token(&self) -> Option<&ApiToken> {
        self.api.as_ref().map(|api| &api.token)
    }

    /// Ferry's public base URL (configured, or the address the API is bound to).
    pub fn public_url(&self) -> Option<&str> {
        self.api.as_ref().map(|api| api.public_url.as_str())
    }

    /// When no admin can log in yet: the one-time setup link made at this start.
    pub fn setup_link(&self) -> Option<&ferry_application::SetupLink> {
        self.api.as_ref().and_then(|api| api.setup.as_ref())
    }

    /// Runs until `shutdown` is requested, then drains: the API stops accepting, ends its
    /// event streams and answers the requests in flight (closing connections still busy
    /// after [`ferry_api::DRAIN_GRACE`]); workers stop claiming and finish or release their
    /// jobs. After at most 30 s, or a second request, the engine stops and the database
    /// closes.
    ///
    /// # Errors
    /// When the API server fails on its own.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Self {
            role,
            ports,
            api,
            probes,
            pools,
            engine,
        } = self;
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        if let Some(api) = &api {
            tasks.spawn(sweep_sessions(api.state.accounts.clone(), stop.clone()));
            tasks.spawn(poll_feeds(
                api.state.feeds.clone(),
                ports.feeds_check_every(),
                stop.clone(),
            ));
            // The webhooks' dispatcher: in every API process (claims are leased, so several
            // may run at once).
            tasks.spawn(api.state.webhooks.clone().run(stop.clone()));
        }
        let mut server =
            api.map(|api| tasks.spawn(ferry_api::serve(api.acceptor, api.state, stop.clone())));
        if let Some(probes) = probes {
            tasks.spawn(ferry_observability::serve_probes(
                probes,
                health_check(&ports),
                stop.clone(),
            ));
        }
        if role.is_worker() {
            tasks.spawn(ferry_workers::reconcile(
                ports.recovery(),
                ports.queue.clone(),
                ports.reconcile_every(),
                stop.clone(),
            ));
        }
        let runner = ports.runner();
        for pool in pools {
            tasks.spawn(ferry_workers::run_pool(
                ports.queue.clone(),
                runner.clone(),
                pool.handler,
                pool.concurrency,
                ports.renew_every(),
                stop.clone(),
            ));
        }
        tasks.close();

        let server_ended = async {
            match server.as_mut() {
                Some(server) => server.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.requested() => match role {
                Role::Api => tracing::info!("stop requested; answering the requests in flight"),
                _ => tracing::info!("stop requested; finishing or releasing jobs in hand"),
            },
            ended = server_ended => {
                // The server ended on its own: that is a failure.
                stop.cancel();
                ended.context("the API task panicked")?.context("the API server failed")?;
                anyhow::bail!("the API server stopped on its own");
            }
        }
        stop.cancel();
        let settled = tokio::select! {
            () = tasks.wait() => true,
            () = tokio::time::sleep(GRACE) => {
                match role {
                    Role::Serve => tracing::warn!("workers did not stop within {GRACE:?}"),
                    Role::Api => tracing::warn!("requests did not finish within {GRACE:?}"),
                    _ => tracing::warn!("jobs did not settle within {GRACE:?}"),
                }
                false
            }
            () = shutdown.forced() => {
                tracing::warn!("second stop signal: exiting at once");
                false
            }
        };
        if settled {
            if let Some(engine) = engine {
                engine.shutdown().await;
            }
            ports.close().await;
        } else {
            // Stages still running would see the engine or the database go and settle their
            // jobs as failed attempts; exiting drops them unsettled instead, and their
            // messages go to another worker once their leases run out.
            tracing::warn!("exiting with work in hand; it is handed on after its lease");
        }
        match role {
            Role::Serve => tracing::info!("ferry stopped"),
            Role::Api => tracing::info!("ferry-api stopped"),
            _ => tracing::info!("worker stopped"),
        }
        Ok(())
    }
}

/// The stage pools of `role` (and the engine, where one runs).
async fn pools(
    role: Role,
    ports: &Ports,
) -> anyhow::Result<(Vec<StagePool>, Option<Arc<RqbitEngine>>)> {
    Ok(match role {
        Role::Serve => {
            let (download, engine, metered) = ports.download_pool().await?;
            let seed = ports.seed_pool(metered);
            let pools = vec![download, ports.deliver_pool(), ports.fetch_pool(), seed];
            (pools, Some(engine))
        }
        Role::TorrentWorker => {
            let (download, engine, metered) = ports.download_pool().await?;
            (vec![download, ports.seed_pool(metered)], Some(engine))
        }
        Role::UploadWorker => (vec![ports.deliver_pool()], None),
        Role::FetchWorker => (vec![ports.fetch_pool()], None),
        Role::Api => (Vec::new(), None),
    })
}

/// The HTTP API on `listen`, bound (to the port asked for, or a free one for port 0).
/// How often an API process deletes the browser sessions that ended unseen.
const SESSION_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Deletes ended sessions every [`SESSION_SWEEP_EVERY`] (at start too) until `stop`.
async fn sweep_sessions(accounts: Arc<ferry_application::Accounts>, stop: CancellationToken) {
    loop {
        match accounts.sweep_sessions().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "deleted ended sessions"),
            Err(e) => tracing::warn!(error = %e, "could not delete ended sessions"),
        }
        tokio::select! {
            () = tokio::time::sleep(SESSION_SWEEP_EVERY) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// How long a stopping process gives the feed polls in hand to finish.
const FEED_DRAIN: Duration = Duration::from_secs(10);

/// Polls the feeds that are due, every `every` (at start too), until `stop`: several API
/// processes share the work, each feed taken by one at a time.
async fn poll_feeds(
    feeds: Arc<ferry_application::Feeds>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        let polled = feeds.poll_due();
        tokio::pin!(polled);
        let polled = tokio::select! {
            polled = &mut polled => polled,
            // The batch in hand is finished (briefly), so its feeds are not left held until
            // their lease ends.
            () = stop.cancelled() => match tokio::time::timeout(FEED_DRAIN, polled).await {
                Ok(polled) => polled,
                Err(_) => return,
            },
        };
        if stop.is_cancelled() {
            return;
        }
        // A full batch: more may be due at once.
        let busy = match polled {
            Ok(n) => n >= ferry_application::feeds::CLAIM_BATCH,
            Err(e) => {
                tracing::warn!(error = %e, "could not poll feeds");
                false
            }
        };
        if busy {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn api(
    ports: &Ports,
    config: &Config,
    token: ApiToken,
    live: Option<Arc<dyn ferry_application::ports::LiveFiles>>,
) -> anyhow::Result<Api> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let public_url = match &config.auth.public_url {
        Some(_) => config.public_url(),
        None => format!("http://{addr}"),
    };
    let public_origin = url::Url::parse(&public_url)
        .map(|u| u.origin().ascii_serialization())
        .ok();
    let accounts = Arc::new(crate::accounts::accounts(
        config,
        &ports.database,
        ports.sessions.clone(),
        ports.limiter.clone(),
        ports.clock(),
        Some(token.value.clone()),
    )?);
    let setup = accounts
        .ensure_first_admin()
        .await
        .context("making sure an admin can log in")?;
    let jobs = ports.jobs(live);
    let links = Arc::new(crate::accounts::file_links(
        config,
        &crate::secret_key(config, false)?,
        jobs.clone(),
        &accounts,
    ));
    let profiles = ports.storage_profiles();
    let drive = ports.drive_connect(&profiles, &accounts)?;
    let categories = ports.categories(&profiles);
    let feeds = ports.feeds(jobs.clone(), accounts.clone(), categories.clone())?;
    let state = Arc::new(ApiState {
        jobs,
        categories,
        feeds,
        // Absolute, as the paths the qBittorrent API shows must be.
        local_storage_dir: Some(std::path::absolute(config.storage_dir())?),
        network: {
            let n = config.torrent.network(&config.fetch)?;
            ferry_api::NetworkInfo {
                torrent_proxied: n.proxy.is_some(),
                torrent_proxy_required: n.proxy_required,
                dht: n.dht,
                lsd: n.lsd,
                udp_trackers: n.udp_trackers,
                incoming: n.listen.is_some(),
                fetch_proxied: config.fetch.proxy.is_some(),
            }
        },
        links,
        profiles,
        drive,
        bus: ports.bus.clone(),
        health: ports.health(),
        accounts,
        providers: crate::accounts::login_providers(config)?,
        secure_cookies: public_url.starts_with("https://"),
        trusted_proxies: config.auth.trusted_proxies.clone(),
        public_url: Some(public_url.clone()),
        public_origin,
        max_torrent_bytes: config.limits.max_torrent_file_bytes.get(),
        max_json_bytes: config.limits.max_json_bytes(),
        max_streams: config.limits.max_streams.get(),
        max_streams_per_owner: config.limits.max_streams_per_owner.get(),
        seed_by_default: config.seed.default,
        seed_limits: ports.seed_policy(),
        gauges: ferry_api::Sampler::new(ports.volumes()),
        webhooks: ports.webhooks(),
    });
    Ok(Api {
        acceptor: TcpAcceptor::from_tokio(listener)?,
        addr,
        state,
        token,
        public_url,
        setup,
    })
}

/// The workers' `/health`: every component the process uses.
fn health_check(ports: &Ports) -> ferry_observability::HealthFn {
    let health = ports.health();
    Arc::new(move || {
        let health = health.clone();
        Box::pin(async move {
            let components = health.check().await;
            let body = components
                .iter()
                .map(|c| format!("{} {}", c.name, if c.ok { "ok" } else { "failing" }))
                .collect::<Vec<_>>()
                .join("\n");
            if components.iter().all(|c| c.ok) {
                Ok(body)
            } else {
                Err(body)
            }
        })
    })
}
