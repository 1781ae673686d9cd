//! `ferry`: run the server (`ferry serve`), migrate the database (`ferry migrate`), manage the
//! keys that seal stored credentials (`ferry keys generate|rotate`) and local users (`ferry
//! user add`); and, as a client of a server's API, `ferry login`, `add`, `ls`, `watch`,
//! `get`, `pause`, `resume`, `retry`, `rm` ([`ferry::client`]), with shell completions
//! (`ferry completions bash|zsh|fish`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

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
    /// The keys that seal stored credentials.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Local user accounts.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    #[command(flatten)]
    Client(ferry::client::Command),
    /// Print a shell's completion script for `ferry`.
    ///
    /// For example: `ferry completions bash >
    /// ~/.local/share/bash-completion/completions/ferry`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Add a user who logs in with a name and password. Without `--password-stdin`, prints
    /// a one-time setup link with which they choose their password.
    Add {
        /// The login name (letters, digits, '.', '_', '-', '@').
        name: String,
        /// Make them an admin.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Where `ferry serve` keeps its data (default ./ferry-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Print a new random key (64 hex digits) for `secret_key`.
    Generate,
    /// Re-seal every storage profile's credentials and every webhook's signing secret with
    /// `secret_key` (opening them with it or any of `old_secret_keys`); afterwards the old
    /// keys can be removed.
    Rotate {
        /// Where `ferry serve` keeps its data (and a generated key), if no key is configured.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Client(command) => return ferry::client::main(command),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut std::io::stdout());
            return std::process::ExitCode::SUCCESS;
        }
        Command::Serve { listen, data_dir } => ferry::boot(
            "serve",
            cli.config,
            |c| {
                if let Some(l) = listen {
                    c.listen = l;
                }
                if let Some(d) = data_dir {
                    c.data_dir = d;
                }
            },
            |config| ferry::run(ferry_wiring::Role::Serve, config),
        ),
        Command::Migrate => ferry::boot(
            "migrate",
            cli.config,
            |_| {},
            |config| async move {
                ferry_wiring::database(&config).await?;
                tracing::info!("database is up to date");
                Ok(())
            },
        ),
        Command::Keys {
            action: KeysAction::Generate,
        } => {
            println!("{}", ferry_wiring::new_secret_key());
            Ok(())
        }
        Command::Keys {
            action: KeysAction::Rotate { data_dir },
        } => ferry::boot(
            "keys",
            cli.config,
            |c| {
                if let Some(d) = data_dir {
                    c.data_dir = d;
                }
            },
            |config| async move {
                let report = ferry_wiring::key_rotation(&config).await?.rotate().await?;
                let w = &report.webhooks;
                println!(
                    "re-sealed {}, already current {}, changed meanwhile {}, unreadable {}; \
                     webhook secrets: re-sealed {}, already current {}, changed meanwhile {}, unreadable {}",
                    report.resealed,
                    report.current,
                    report.skipped,
                    report.failed.len(),
                    w.resealed,
                    w.current,
                    w.skipped,
                    w.failed.len()
                );
                anyhow::ensure!(
                    report.complete(),
                    "not every profile and webhook secret is sealed with the current key yet (unreadable profiles: {:?}, webhooks: {:?}); keep the old keys",
                    report.failed,
                    w.failed
                );
                Ok(())
            },
        ),
        Command::User {
            action:
                UserAction::Add {
                    name,
                    admin,
                    password_stdin,
                    data_dir,
                },
        } => ferry::boot(
            "user",
            cli.config,
            |c| {
                if let Some(d) = data_dir {
                    c.data_dir = d;
                }
            },
            |config| async move {
                let password = if password_stdin {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    Some(line.trim_end_matches(['\r', '\n']).to_owned())
                } else {
                    None
                };
                let accounts = ferry_wiring::user_admin(&config).await?;
                let role = if admin {
                    ferry_domain::Role::Admin
                } else {
                    ferry_domain::Role::User
                };
                let (user, link) = accounts
                    .add_local_user(&name, role, password.as_deref())
                    .await?;
                println!("added {} ({role}), id {}", name, user.id.as_str());
                if let Some(link) = link {
                    println!(
                        "setup link (valid until {}): {}",
                        link.expires_at.format("%Y-%m-%d %H:%M UTC"),
                        link.secret
                    );
                    println!(
                        "they choose a password with: curl -X POST {}/api/v1/auth/setup -H 'Content-Type: application/json' -d '{{\"link\": \"{}\", \"username\": \"{}\", \"password\": \"…\"}}'",
                        config.public_url(),
                        link.secret,
                        name
                    );
                }
                Ok(())
            },
        ),
    };
    ferry::exit_with(result, "ferry")
}
