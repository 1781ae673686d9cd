//! Where the client keeps the server's address and its personal token: `client.toml` in the
//! user's configuration folder (`$FERRY_CONFIG_DIR`, else `$XDG_CONFIG_HOME/ferry`, else
//! `~/.config/ferry`), a file only its user may read (0600, in a 0700 folder).
//! `FERRY_URL` and `FERRY_TOKEN` override what it holds.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use reqwest::Url;

use super::error::ClientError;

/// The file's name in the configuration folder.
const FILE: &str = "client.toml";

/// What `ferry login` stores.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Stored {
    /// The server's base URL (`https://ferry.example.org/`).
    pub url: String,
    /// A personal token (`ferry_pat_…`), or any bearer token the server accepts.
    pub token: String,
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored")
            .field("url", &self.url)
            .field("token", &"…")
            .finish()
    }
}

/// The server a command talks to and the token it sends.
#[derive(Clone)]
pub struct Target {
    pub url: Url,
    pub token: String,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url.as_str())
            .field("token", &"…")
            .finish()
    }
}

/// An environment variable's value, unless unset or empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The configuration folder.
///
/// # Errors
/// When neither `FERRY_CONFIG_DIR`, `XDG_CONFIG_HOME` nor `HOME` is set.
pub fn dir() -> Result<PathBuf, ClientError> {
    if let Some(dir) = env("FERRY_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(xdg) = env("XDG_CONFIG_HOME").filter(|d| Path::new(d).is_absolute()) {
        return Ok(Path::new(&xdg).join("ferry"));
    }
    let home = env("HOME").ok_or_else(|| {
        ClientError::Usage(
            "no configuration folder: set FERRY_CONFIG_DIR, XDG_CONFIG_HOME or HOME".to_owned(),
        )
    })?;
    Ok(Path::new(&home).join(".config").join("ferry"))
}

/// The file `ferry login` writes.
///
/// # Errors
/// See [`dir`].
pub fn file() -> Result<PathBuf, ClientError> {
    Ok(dir()?.join(FILE))
}

/// What is stored, if anything.
///
/// # Errors
/// When the file exists but cannot be read or parsed.
pub fn load() -> Result<Option<Stored>, ClientError> {
    let path = file()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("reading {}", path.display()))
                .into());
        }
    };
    let stored = toml::from_str(&text)
        .with_context(|| format!("{} is not a Ferry client file", path.display()))?;
    Ok(Some(stored))
}

/// Stores `stored`, readable by this user alone: written to a new file of mode 0600 and
/// renamed over the old one, so no other user ever sees the token, not even half written.
///
/// # Errors
/// When the folder or the file cannot be written.
pub fn save(stored: &Stored) -> Result<PathBuf, ClientError> {
    let dir = dir()?;
    create_private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(FILE);
    let temp = dir.join(format!(".{FILE}.{}", std::process::id()));
    let text = toml::to_string(stored).context("writing the client file")?;
    let written = (|| -> std::io::Result<()> {
        let _ = std::fs::remove_file(&temp);
        let mut f = private_file(&temp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&temp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(anyhow::Error::new(e)
            .context(format!("writing {}", path.display()))
            .into());
    }
    Ok(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// A server address as given (`https://ferry.example.org`, with or without a trailing
/// `/` or `/api/v1`) as the base URL every API path is joined to (ending in `/`).
///
/// # Errors
/// A text that is not an `http://` or `https://` URL, or has a query or credentials.
pub fn server_url(text: &str) -> Result<Url, String> {
    let mut url = Url::parse(text.trim())
        .map_err(|e| format!("{text:?} is not a URL ({e}); give it as https://host[:port]"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{text:?} is not an http:// or https:// URL"));
    }
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{text:?}: give the server's address alone, without a query or credentials"
        ));
    }
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix("/api/v1").unwrap_or(path).to_owned();
    url.set_path(&format!("{path}/"));
    Ok(url)
}

/// The server and token a command uses: `FERRY_URL` and `FERRY_TOKEN` over what `ferry
/// login` stored.
///
/// # Errors
/// [`ClientError::NotLoggedIn`] when either is missing; a bad `FERRY_URL`.
pub fn target() -> Result<Target, ClientError> {
    let stored = load()?;
    let url = match env("FERRY_URL") {
        Some(url) => server_url(&url).map_err(|e| ClientError::Usage(format!("FERRY_URL: {e}")))?,
        None => match &stored {
            Some(s) => server_url(&s.url).map_err(|e| {
                ClientError::Usage(format!(
                    "{}: {e}",
                    file().map(|p| p.display().to_string()).unwrap_or_default()
                ))
            })?,
            None => return Err(ClientError::NotLoggedIn),
        },
    };
    let token = env("FERRY_TOKEN")
        .or_else(|| stored.map(|s| s.token))
        .filter(|t| !t.trim().is_empty())
        .ok_or(ClientError::NotLoggedIn)?;
    Ok(Target {
        url,
        token: token.trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_end_in_a_slash_without_the_api_prefix() {
        for (given, base) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
            ("https://example.org/api/v1", "https://example.org/"),
            (
                "https://example.org/ferry/api/v1/",
                "https://example.org/ferry/",
            ),
            ("https://example.org/ferry", "https://example.org/ferry/"),
        ] {
            assert_eq!(
                server_url(given).map(|u| u.to_string()),
                Ok(base.to_owned())
            );
        }
        for bad in [
            "example.org",
            "ftp://example.org",
            "https://user:pw@example.org",
            "https://example.org/?x=1",
            "",
        ] {
            assert!(server_url(bad).is_err(), "{bad}");
        }
    }
}
