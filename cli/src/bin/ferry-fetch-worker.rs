//! `ferry-fetch-worker`: runs the URL fetch stage from Redis Streams; run as many as you like.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "ferry-fetch-worker",
    version,
    about = "Ferry's fetch worker (distributed mode)"
)]
struct Cli {
    #[arg(long, env = "FERRY_CONFIG")]
    config: Option<PathBuf>,
    /// Where to serve /health and /metrics (default: `workers.probe_listen`).
    #[arg(long)]
    probe_listen: Option<SocketAddr>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let probe = cli.probe_listen;
    let result = ferry::boot(
        "fetch-worker",
        cli.config,
        |c| {
            if let Some(p) = probe {
                c.workers.probe_listen = p;
            }
        },
        |config| ferry::run(ferry_wiring::Role::FetchWorker, config),
    );
    ferry::exit_with(result, "ferry-fetch-worker")
}
