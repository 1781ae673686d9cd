//! The distributed mode's processes: `ferry-api` and the stage workers, over PostgreSQL and
//! Redis Streams (see `docker-compose.yml`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferry_api::ApiState;
use ferry_wiring::{Config, Ports};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{stop_signal, token};

/// How long a worker gets to finish or release its jobs after a stop signal.
const GRACE: Duration = Duration::from_secs(30);

/// `ferry-api`: stateless; every instance talks to the same database and Redis.
///
/// # Errors
/// When a backend cannot be reached at start or the server fails.
pub async fn api(config: Config) -> anyhow::Result<()> {
    let token = token::ensure(
        config.api_token.as_ref().map(|s| s.expose()),
        &config.data_dir,
    )?;
    let ports = ferry_wiring::distributed(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener)?;
    let state = Arc::new(ApiState {
        jobs: ports.jobs(),
        profiles: ports.storage_profiles(),
        bus: ports.bus.clone(),
        health: ports.health(),
        api_token: Some(token.value.clone()),
        max_torrent_bytes: config.limits.max_torrent_file_bytes.get(),
        max_json_bytes: config.limits.max_json_bytes(),
        max_streams: config.limits.max_streams.get(),
        max_streams_per_owner: config.limits.max_streams_per_owner.get(),
        seed_by_default: config.seed.default,
        seed_limits: ports.seed_policy(),
    });
    tracing::info!(%addr, "ferry-api is serving");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(ferry_api::serve(acceptor, state, shutdown.clone()));
    eprintln!("{}", crate::banner::ready("ferry-api", addr, &token));
    tokio::select! {
        () = stop_signal() => tracing::info!("stop requested"),
        r = server => {
            r.context("the API task panicked")?.context("the API server failed")?;
            return Ok(());
        }
    }
    shutdown.cancel();
    ports.database.close().await.ok();
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The download and seed stages, with the embedded BitTorrent engine.
    Torrent,
    /// The delivery stage.
    Upload,
    /// The URL fetch stage (fetch, content-address, package).
    Fetch,
}

/// A stage worker: claims its stage's messages until SIGTERM, then stops claiming and
/// finishes or releases the jobs in hand. Serves `/health` and `/metrics` on
/// `workers.probe_listen`.
///
/// # Errors
/// When a backend cannot be reached at start.
pub async fn worker(config: Config, role: Role) -> anyhow::Result<()> {
    let ports = ferry_wiring::distributed(&config).await?;
    let (pools, engine) = match role {
        Role::Torrent => {
            let (pool, engine) = ports.download_pool().await?;
            (vec![pool, ports.seed_pool(engine.clone())], Some(engine))
        }
        Role::Upload => (vec![ports.deliver_pool()], None),
        Role::Fetch => (vec![ports.fetch_pool()], None),
    };
    let probe = tokio::net::TcpListener::bind(config.workers.probe_listen)
        .await
        .with_context(|| format!("listening on {} for probes", config.workers.probe_listen))?;
    let probe_addr = probe.local_addr()?;
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(ferry_observability::serve_probes(
        poem::listener::TcpAcceptor::from_tokio(probe)?,
        health_check(&ports),
        shutdown.clone(),
    ));
    tasks.spawn(ferry_workers::reconcile(
        ports.recovery(),
        ports.queue.clone(),
        ports.reconcile_every(),
        shutdown.clone(),
    ));
    for pool in pools {
        tasks.spawn(ferry_workers::run_pool(
            ports.queue.clone(),
            ports.runner(),
            pool.handler,
            pool.concurrency,
            ports.renew_every(),
            shutdown.clone(),
        ));
    }
    tasks.close();
    tracing::info!(?role, probes = %probe_addr, consumer = %ferry_wiring::consumer_name(), "worker started");

    stop_signal().await;
    tracing::info!("stop requested; finishing or releasing jobs in hand");
    shutdown.cancel();
    tokio::select! {
        () = tasks.wait() => {}
        () = tokio::time::sleep(GRACE) => tracing::warn!("jobs did not settle within {GRACE:?}"),
        () = stop_signal() => tracing::warn!("second stop signal: exiting at once"),
    }
    if let Some(engine) = engine {
        engine.shutdown().await;
    }
    ports.database.close().await.ok();
    tracing::info!("worker stopped");
    Ok(())
}

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
