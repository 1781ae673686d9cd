//! The accounts' adapters on sea-orm: users and their identities and setup links
//! ([`SqlUsers`]), personal tokens ([`SqlTokens`]), browser sessions ([`SqlSessions`]) and
//! the append-only audit log ([`SqlAudit`]). Hashes of secrets are stored as lower-case hex.

mod audit;
mod entity;
mod sessions;
mod tokens;
mod users;

pub use audit::{AUDIT_PAGE_MAX, SqlAudit};
pub use sessions::SqlSessions;
pub use tokens::SqlTokens;
pub use users::SqlUsers;

use ferry_application::ports::RepoError;

/// "Seen" and "used" stamps closer than this to the stored one are not written.
const TOUCH_GAP: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

fn corrupt(what: String) -> RepoError {
    RepoError::Unexpected(anyhow::anyhow!("{what}"))
}

fn to_hex(bytes: &[u8; 32]) -> String {
    hex::encode(bytes)
}

fn from_hex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}
