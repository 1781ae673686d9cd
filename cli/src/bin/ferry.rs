//! `ferry`: run the server (`ferry serve`), migrate the database (`ferry migrate`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { listen, data_dir } => ferry::boot(
            cli.config,
            |c| {
                if let Some(l) = listen {
                    c.listen = l;
                }
                if let Some(d) = data_dir {
                    c.data_dir = d;
                }
            },
            ferry::serve::serve,
        ),
        Command::Migrate => ferry::boot(
            cli.config,
            |_| {},
            |config| async move {
                ferry_wiring::database(&config).await?;
                tracing::info!("database is up to date");
                Ok(())
            },
        ),
    };
    ferry::exit_with(result, "ferry")
}
