//! `ferry-api`: the HTTP API alone, over PostgreSQL and Redis; run as many as you like.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "ferry-api",
    version,
    about = "Ferry's HTTP API (distributed mode)"
)]
struct Cli {
    #[arg(long, env = "FERRY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (default: `listen` from the configuration).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let listen = cli.listen;
    let result = ferry::boot(
        "api",
        cli.config,
        |c| {
            if let Some(l) = listen {
                c.listen = l;
            }
        },
        |config| ferry::run(ferry_wiring::Role::Api, config),
    );
    ferry::exit_with(result, "ferry-api")
}
