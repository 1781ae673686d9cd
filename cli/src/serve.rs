//! `ferry serve`: the composition root of the one-box mode.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferry_api::ApiState;
use ferry_wiring::Config;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{stop_signal, token};

/// How long workers get to finish or release their jobs after a stop signal.
const GRACE: Duration = Duration::from_secs(30);

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let token = token::ensure(
        config.api_token.as_ref().map(|s| s.expose()),
        &config.data_dir,
    )?;
    let ports = ferry_wiring::embedded(&config).await?;
    let (download, engine) = ports.download_pool().await?;
    let requeued = ports
        .recovery()
        .requeue_orphans()
        .await
        .context("re-queueing unfinished jobs")?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener)?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), requeued, "ferry is serving");

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
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
    let api = tasks.spawn(ferry_api::serve(acceptor, state, shutdown.clone()));
    let runner = ports.runner();
    let seed = ports.seed_pool(engine.clone());
    for pool in [download, ports.deliver_pool(), ports.fetch_pool(), seed] {
        tasks.spawn(ferry_workers::run_pool(
            ports.queue.clone(),
            runner.clone(),
            pool.handler,
            pool.concurrency,
            ports.renew_every(),
            shutdown.clone(),
        ));
    }
    tasks.close();
    // The last thing start-up says: where Ferry is and how to talk to it.
    eprintln!("{}", crate::banner::ready("Ferry", addr, &token));

    tokio::select! {
        () = stop_signal() => tracing::info!("stop requested; finishing or releasing jobs in hand"),
        r = api => {
            // The server ended on its own: that is a failure.
            shutdown.cancel();
            r.context("the API task panicked")?.context("the API server failed")?;
        }
    }
    shutdown.cancel();
    tokio::select! {
        () = tasks.wait() => {}
        () = tokio::time::sleep(GRACE) => tracing::warn!("workers did not stop within {GRACE:?}"),
        () = stop_signal() => tracing::warn!("second stop signal: exiting at once"),
    }
    engine.shutdown().await;
    ports.database.close().await.ok();
    tracing::info!("ferry stopped");
    Ok(())
}
