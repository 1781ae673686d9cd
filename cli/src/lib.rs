//! What Ferry's binaries share: `ferry` (serve, migrate, keys), `ferry-api`,
//! `ferry-torrent-worker`, `ferry-upload-worker` and `ferry-fetch-worker` load the
//! configuration, set up logging and metrics, and run a [`Role`]'s [`ferry_wiring::App`]
//! (the composition root) until SIGTERM or SIGINT.
//!
//! They live in one package so the end-to-end tests can start every binary. `ferry` is
//! also the API's command-line client ([`client`]: `login`, `add`, `ls`, `watch`, `get`, …).

mod banner;
pub mod client;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use ferry_wiring::{App, Config, Role, Shutdown};

/// Loads the configuration, installs metrics, the rustls provider and logging (stdout, and
/// Loki when `log.loki.url` is set, labelled with `role` and this process), and runs `main`
/// on a multi-threaded runtime; then sends the log lines still waiting for Loki.
///
/// # Errors
/// Whatever `main` or the start-up returns.
pub fn boot<F, Fut>(
    role: &'static str,
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
    // Before logging: the Loki courier's counter needs the meter provider.
    ferry_observability::init_metrics()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let json = config.log.format.json(std::io::stdout().is_terminal());
    let loki = config
        .log
        .loki
        .url
        .as_ref()
        .map(|url| ferry_observability::Loki {
            url: url.clone(),
            role: role.to_owned(),
            instance: ferry_wiring::consumer_name(),
            buffer_lines: config.log.loki.buffer_lines,
        });
    let logs = {
        // The courier that sends lines to Loki runs on this runtime.
        let _runtime = runtime.enter();
        ferry_observability::init_logging(json, &config.log.level, loki.as_ref())?
    };
    for key in &loaded.unknown_keys {
        tracing::warn!(key, "unknown configuration key ignored");
    }
    let result = runtime.block_on(main(config));
    runtime.block_on(logs.flush(LOG_FLUSH));
    result
}

/// How long an ending process waits for Loki to take its last lines.
const LOG_FLUSH: std::time::Duration = std::time::Duration::from_secs(3);

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
