//! The composition roots of Ferry's binaries: `ferry` (serve, migrate), `ferry-api`,
//! `ferry-torrent-worker` and `ferry-upload-worker`.
//!
//! They live in one package so the end-to-end tests can start every binary.

mod banner;
pub mod processes;
pub mod serve;
mod token;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use ferry_wiring::Config;

/// Loads the configuration, installs logging, metrics and the rustls provider, and runs
/// `main` on a multi-threaded runtime.
///
/// # Errors
/// Whatever `main` or the start-up returns.
pub fn boot<F, Fut>(
    config_file: Option<PathBuf>,
    adjust: impl FnOnce(&mut Config),
    main: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    // Both rustls crypto providers are linked in; pick one for the whole process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let loaded = Config::load(config_file.as_deref())?;
    let mut config = loaded.config;
    adjust(&mut config);
    let json = config.log.format.json(std::io::stdout().is_terminal());
    ferry_observability::init_logging(json, &config.log.level)?;
    ferry_observability::init_metrics()?;
    for key in &loaded.unknown_keys {
        tracing::warn!(key, "unknown configuration key ignored");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(main(config))
}

/// Runs a binary's `main`, printing its error chain and exiting non-zero on failure.
pub fn exit_with(result: anyhow::Result<()>, name: &str) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// SIGINT or SIGTERM.
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
