//! Wiring: the composition root. [`App::build`] turns a [`Config`] into one process of a
//! [`Role`] — `ferry serve`, `ferry-api` or a stage worker — and [`App::run`] runs it until
//! its [`Shutdown`] is requested, then drains it.
//!
//! Only this crate knows which adapter backs which port; `api`, `workers` and `cli` see
//! the application's use cases and port traits. Two sets of ports exist: the embedded one
//! (`ferry serve`: in-process queue and bus) and the distributed one (`ferry-api` and the
//! worker binaries: Redis Streams); both share the database, storage and staging adapters.

mod accounts;
mod app;
mod blocklists;
pub mod config;
mod metered;
mod ports;
mod stores;
mod token;

use std::sync::Arc;

use anyhow::Context;

pub use accounts::user_admin;
pub use app::{App, Role, Shutdown};
pub use config::{Config, LogFormat, Secret};
pub use token::{ApiToken, TokenSource};

/// Connects to the database and brings its schema up to date.
///
/// # Errors
/// When the database is unreachable or a migration fails.
pub async fn database(config: &Config) -> anyhow::Result<ferry_database::Connection> {
    let url = config.database_url();
    if url.starts_with("sqlite:") {
        tokio::fs::create_dir_all(&config.data_dir)
            .await
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    }
    let db = ferry_database::connect(&url)
        .await
        .with_context(|| format!("connecting to the database at {}", redact(&url)))?;
    ferry_database::migrate(&db)
        .await
        .context("migrating the database")?;
    Ok(db)
}

/// A URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// This process's name among a queue's consumers.
pub fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "ferry".to_owned());
    format!("{host}-{}", std::process::id())
}

/// The box sealing stored credentials: `secret_key` seals, `old_secret_keys` still open.
fn secret_box(config: &Config, secret_key: &str) -> anyhow::Result<ferry_secrets::AesGcmBox> {
    let old: Vec<&str> = config.old_secret_keys.iter().map(Secret::expose).collect();
    ferry_secrets::AesGcmBox::from_hex_keys(secret_key, &old).context("invalid secret_key")
}

/// A fresh random key for `secret_key`, as 64 hex digits.
pub fn new_secret_key() -> String {
    ferry_secrets::AesGcmBox::generate_hex()
}

/// Re-sealing every storage profile's credentials and every webhook's signing secret with
/// the current `secret_key` (`ferry keys rotate`): the database and the keys, nothing else.
///
/// # Errors
/// When the database cannot be reached or no secret key is configured or stored.
pub async fn key_rotation(config: &Config) -> anyhow::Result<ferry_application::KeyRotation> {
    let db = database(config).await?;
    let secrets = secret_box(config, &secret_key(config, false)?)?;
    tracing::info!(key_id = %secrets.key_id(), old_keys = config.old_secret_keys.len(), "sealing with the current key");
    Ok(ferry_application::KeyRotation {
        profiles: Arc::new(ferry_database::SqlProfileRepository::new(db.clone())),
        webhooks: Arc::new(ferry_database::SqlWebhookRepository::new(db)),
        secrets: Arc::new(secrets),
    })
}

/// The key sealing stored credentials: configured, else (when `generate`) stored in or
/// generated into `{data_dir}/secret-key`.
///
/// # Errors
/// When no key is configured and `generate` is false, or the file cannot be written.
pub fn secret_key(config: &Config, generate: bool) -> anyhow::Result<String> {
    if let Some(key) = &config.secret_key {
        return Ok(key.expose().to_owned());
    }
    let path = config.data_dir.join("secret-key");
    if let Ok(stored) = std::fs::read_to_string(&path) {
        return Ok(stored.trim().to_owned());
    }
    anyhow::ensure!(
        generate,
        "secret_key (FERRY_SECRET_KEY, 64 hex digits) is required: every process must seal and open credentials with the same key"
    );
    std::fs::create_dir_all(&config.data_dir)?;
    let key = ferry_secrets::AesGcmBox::generate_hex();
    write_private(&path, &key).with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated the key that seals stored credentials; back it up");
    Ok(key)
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}
