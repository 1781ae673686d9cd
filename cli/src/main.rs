//! `ferry`: run the server (`ferry serve`), migrate the database (`ferry migrate`).

mod startup;
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferry_wiring::{Config, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Ferry: a self-hosted remote download manager"
)]
struct Cli {
    /// A TOML configuration file (also FERRY_CONFIG). Environment variables FERRY_… override it.
    #[arg(long, global = true, env = "FERRY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API and the workers in one process (SQLite, local storage, embedded engine).
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Where Ferry keeps its database, downloads and token (default ./ferry-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Bring the database schema up to date, then exit.
    Migrate,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    // Both rustls crypto providers are linked in; pick one for the whole process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let loaded = Config::load(cli.config.as_deref())?;
    let mut config = loaded.config;
    if let Command::Serve { listen, data_dir } = &cli.command {
        if let Some(listen) = listen {
            config.listen = *listen;
        }
        if let Some(dir) = data_dir {
            config.data_dir.clone_from(dir);
        }
    }
    ferry_observability::init_logging(config.log.format == LogFormat::Json, &config.log.level)?;
    for key in &loaded.unknown_keys {
        tracing::warn!(key, "unknown configuration key ignored");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { .. } => startup::serve(config).await,
            Command::Migrate => {
                ferry_wiring::database(&config).await?;
                tracing::info!("database is up to date");
                Ok(())
            }
        }
    })
}
