//! What Ferry's binaries share: `ferry` (serve, migrate, keys), `ferry-api`,
//! `ferry-torrent-worker`, `ferry-upload-worker` and `ferry-fetch-worker` load the
//! configuration, set up logging and metrics, and run a [`Role`]'s [`ferry_wiring::App`]
//! (the composition root) until SIGTERM or SIGINT.
//!
//! They live in one package so the end-to-end tests can start every binary.

mod banner;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use ferry_wiring::{App, Config, Role, Shutdown};

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

/// Builds the process of `role` and runs it until SIGTERM or SIGINT (a second one stops the
/// drain). A server says where it listens, on stderr, once it is built.
///
/// # Errors
/// When the process cannot be built or its API server fails.
pub async fn run(role: Role, config: Config) -> anyhow::Result<()> {
    // Signals first: a stop while the process is being built still stops it cleanly.
    let shutdown = stop_signals()?;
    let app = App::build(role, &config).await?;
    if let (Some(addr), Some(token)) = (app.api_addr(), app.api_token()) {
        let name = if role == Role::Serve {
            "Ferry"
        } else {
            "ferry-api"
        };
        if let (Some(link), Some(public)) = (app.setup_link(), app.public_url()) {
            eprintln!("{}", banner::setup(public, link));
        }
        // The last thing start-up says: where Ferry is and how to talk to it.
        eprintln!("{}", banner::ready(name, addr, token));
    }
    app.run(shutdown).await
}

/// A [`Shutdown`] requested by every SIGTERM and SIGINT from now on.
///
/// # Errors
/// When the signal handlers cannot be installed.
fn stop_signals() -> anyhow::Result<Shutdown> {
    let shutdown = Shutdown::new();
    let requests = shutdown.clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                requests.request();
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            requests.request();
        }
    });
    Ok(shutdown)
}
