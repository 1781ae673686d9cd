//! The `ferry` command line as a client of a Ferry server (`/api/v1`): `login` stores a
//! personal token; `add`, `ls`, `watch`, `get`, `pause`, `resume`, `retry` and `rm` act on
//! the caller's jobs. With `--json` each prints one JSON document on stdout and keeps every
//! message and progress bar on stderr; each ends with an exit code from [`Exit`].

mod api;
mod commands;
mod config;
mod error;
mod feeds;
mod get;
mod model;
mod progress;
mod watch;
mod webhooks;

use std::path::PathBuf;

use clap::{Args, Subcommand};

pub use config::{Stored, Target};
pub use error::{ClientError, Exit};
pub use webhooks::WebhooksCommand;

/// The client commands of `ferry`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in to a Ferry server and store a personal API token for the other commands.
    ///
    /// Signs in with your name and password, makes a personal token ("ferry CLI on
    /// HOST"), signs that session out, and stores the URL and token in
    /// $XDG_CONFIG_HOME/ferry/client.toml (~/.config/ferry, or $FERRY_CONFIG_DIR), readable
    /// by you alone. FERRY_URL and FERRY_TOKEN override what is stored.
    Login(LoginArgs),
    /// Submit a magnet link, a .torrent file or an HTTP(S) URL.
    Add(AddArgs),
    /// List your jobs, newest first.
    Ls(LsArgs),
    /// Show live progress of a job, or of all your unfinished jobs, until they end.
    ///
    /// Returns once the job is completed (or seeding), cancelled or failed; the exit code
    /// is 5 if a watched job failed or was cancelled.
    Watch(WatchArgs),
    /// Download a finished job's files (resuming files that are partly there).
    Get(GetArgs),
    /// Pause a downloading job (its data is kept) or a queued torrent.
    Pause(IdArgs),
    /// Resume a paused job.
    Resume(IdArgs),
    /// Run a failed job again.
    Retry(IdArgs),
    /// Cancel a job, or delete it with its files (--with-files).
    ///
    /// A seeding job stops seeding and stays completed, with its files.
    Rm(RmArgs),
    /// Your RSS feeds: add, list, remove.
    Feeds {
        #[command(subcommand)]
        action: feeds::FeedsAction,
    },
    /// Your RSS download rules: add, list, remove, and what each matched.
    Rules {
        #[command(subcommand)]
        action: feeds::RulesAction,
    },
    /// Your webhooks: endpoints told (signed) when your jobs complete, fail or finish
    /// seeding.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

/// How a command reports.
#[derive(Debug, Clone, Copy, Args)]
pub struct Output {
    /// Print one JSON document on stdout, for scripts (messages and progress go to stderr).
    #[arg(long)]
    pub json: bool,
}

/// `ferry login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server's address, e.g. https://ferry.example.org (also FERRY_URL).
    #[arg(env = "FERRY_URL", value_parser = config::server_url, hide_env_values = true)]
    pub url: reqwest::Url,
    /// Your login name (asked for when not given).
    #[arg(long, short)]
    pub user: Option<String>,
    /// Read the password from the first line of standard input instead of the terminal.
    #[arg(long, conflicts_with = "token_stdin")]
    pub password_stdin: bool,
    /// Store a token you already have (from the account page, or the admin bootstrap
    /// token), read from standard input, instead of logging in.
    #[arg(long, conflicts_with = "user")]
    pub token_stdin: bool,
    #[command(flatten)]
    pub output: Output,
}

/// `ferry add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// A magnet link, a path to a .torrent file, or an http(s):// URL.
    pub source: String,
    /// Only these files of the torrent, by index (as `ferry get`'s listing or the job page
    /// number them): 0,2,5.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub files: Option<Vec<u32>>,
    /// Deliver to this storage profile, by name or id (`server`: this server's own disk).
    #[arg(long, value_name = "PROFILE")]
    pub to: Option<String>,
    /// Seed the finished job.
    #[arg(long)]
    pub seed: bool,
    /// Then watch it until it ends, as `ferry watch` does.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub output: Output,
}

/// `ferry ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only jobs in this status.
    #[arg(long, value_parser = [
        "queued", "resolving", "downloading", "paused", "uploading", "completed", "seeding",
        "cancelled", "failed",
    ])]
    pub status: Option<String>,
    /// Only jobs whose name contains this text (any case).
    #[arg(long, short = 'q')]
    pub search: Option<String>,
    /// Every page, not only the newest 50 jobs.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub output: Output,
}

/// `ferry watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The job's id (without it: every job of yours that has not ended yet).
    pub id: Option<String>,
    #[command(flatten)]
    pub output: Output,
}

/// `ferry get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The job's id.
    pub id: String,
    /// The folder to download into (default: the current folder). Files keep the job's
    /// paths under it; a file already there in part is resumed.
    #[arg(long, short, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Only these files, by index: 0,2.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub files: Option<Vec<u32>>,
    #[command(flatten)]
    pub output: Output,
}

/// A command that names one job.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// The job's id.
    pub id: String,
    #[command(flatten)]
    pub output: Output,
}

/// `ferry rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The job's id.
    pub id: String,
    /// Also delete the job's files and the job itself (done in the background).
    #[arg(long)]
    pub with_files: bool,
    #[command(flatten)]
    pub output: Output,
}

impl Command {
    fn output(&self) -> Output {
        match self {
            Self::Login(a) => a.output,
            Self::Add(a) => a.output,
            Self::Ls(a) => a.output,
            Self::Watch(a) => a.output,
            Self::Get(a) => a.output,
            Self::Pause(a) | Self::Resume(a) | Self::Retry(a) => a.output,
            Self::Rm(a) => a.output,
            Self::Feeds { action } => action.output(),
            Self::Rules { action } => action.output(),
            Self::Webhooks(c) => c.output(),
        }
    }
}

/// Runs a client command and returns the exit code for it, having said what went wrong on
/// stderr (and, with `--json`, as `{"error": {"code", "message"}}` on stdout).
pub fn main(command: Command) -> std::process::ExitCode {
    // Both rustls crypto providers are linked in; pick one for the whole process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let output = command.output();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Unexpected(anyhow::Error::new(e).context("starting")))
        .and_then(|runtime| runtime.block_on(run(command)));
    match result {
        Ok(()) => Exit::Ok.into(),
        Err(e) => {
            eprintln!("ferry: {}", error::clean(&format!("{e:#}")));
            // A job that ended badly was printed as the answer already.
            if output.json && !matches!(e, ClientError::JobsEnded(_)) {
                commands::print_json(&e.to_json());
            }
            e.exit().into()
        }
    }
}

async fn run(command: Command) -> Result<(), ClientError> {
    if let Command::Login(args) = command {
        return commands::login(args).await;
    }
    let target = config::target()?;
    let api = api::Api::new(&target.url, Some(&target.token))?;
    match command {
        Command::Login(_) => Ok(()),
        Command::Add(args) => commands::add(&api, args).await,
        Command::Ls(args) => commands::ls(&api, args).await,
        Command::Watch(args) => watch::watch(&api, args.id.as_deref(), args.output).await,
        Command::Get(args) => get::get(&api, args).await,
        Command::Pause(args) => commands::act(&api, "pause", args).await,
        Command::Resume(args) => commands::act(&api, "resume", args).await,
        Command::Retry(args) => commands::act(&api, "retry", args).await,
        Command::Rm(args) => commands::rm(&api, args).await,
        Command::Feeds { action } => feeds::feeds(&api, action).await,
        Command::Rules { action } => feeds::rules(&api, action).await,
        Command::Webhooks(command) => webhooks::run(&api, command).await,
    }
}
