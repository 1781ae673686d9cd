//! The operator token: configured, or generated once into the data dir.

use std::path::Path;

use anyhow::Context;
use rand::RngCore;

const FILE: &str = "api-token";

/// The configured token, else the one stored in `data_dir`, else a new one (stored with
/// owner-only permissions and printed once).
pub fn ensure(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(token) = configured.filter(|t| !t.is_empty()) {
        return Ok(token.to_owned());
    }
    let path = data_dir.join(FILE);
    if let Ok(stored) = std::fs::read_to_string(&path) {
        let stored = stored.trim();
        if !stored.is_empty() {
            eprintln!("API token: stored in {}", path.display());
            return Ok(stored.to_owned());
        }
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    write_private(&path, &token).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "\nGenerated an API token (saved in {}):\n\n    {token}\n\nSend it as `Authorization: Bearer <token>`.\n",
        path.display()
    );
    Ok(token)
}

#[cfg(unix)]
fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(token.as_bytes())?;
    f.write_all(b"\n")
}

#[cfg(not(unix))]
fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{token}\n"))
}
