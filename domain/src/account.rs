//! Accounts: users, their roles, the scopes a credential carries, personal tokens and
//! quotas. A user's id is the [`OwnerId`] of everything they own.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::OwnerId;

/// What a user may do beyond their own things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AccountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Self::User),
            "admin" => Ok(Self::Admin),
            other => Err(AccountError::UnknownRole(other.chars().take(32).collect())),
        }
    }
}

/// One permission a credential carries: `read` (look), `write` (submit, change, delete
/// one's own things), `admin` (act on other users and the server; only an admin's
/// credential may hold it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub const ALL: [Self; 3] = [Self::Read, Self::Write, Self::Admin];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Self::Read => 1,
            Self::Write => 2,
            Self::Admin => 4,
        }
    }
}

impl FromStr for Scope {
    type Err = AccountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| AccountError::UnknownScope(s.chars().take(32).collect()))
    }
}

/// A set of [`Scope`]s.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub const NONE: Self = Self(0);
    /// Everything a role allows: a browser session or the bootstrap token.
    pub const fn of_role(role: Role) -> Self {
        match role {
            Role::User => Self(Scope::Read.bit() | Scope::Write.bit()),
            Role::Admin => Self(Scope::Read.bit() | Scope::Write.bit() | Scope::Admin.bit()),
        }
    }

    pub const fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    #[must_use]
    pub const fn with(self, scope: Scope) -> Self {
        Self(self.0 | scope.bit())
    }

    /// What both sets hold (a token's scopes cut down to what its user's role allows now).
    #[must_use]
    pub const fn intersect(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Space-separated, in a fixed order (`"read write"`), as stored and shown.
    pub fn to_text(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }

    /// Parses space- or comma-separated scope names.
    ///
    /// # Errors
    /// An unknown name, or none at all.
    pub fn parse(text: &str) -> Result<Self, AccountError> {
        let mut scopes = Self::NONE;
        for name in text.split([' ', ',']).filter(|s| !s.is_empty()) {
            scopes = scopes.with(name.parse()?);
        }
        if scopes.is_empty() {
            return Err(AccountError::NoScopes);
        }
        Ok(scopes)
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({})", self.to_text())
    }
}

/// Why account input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("unknown role {0:?} (roles: user, admin)")]
    UnknownRole(String),
    #[error("unknown scope {0:?} (scopes: read, write, admin)")]
    UnknownScope(String),
    #[error("at least one scope is needed (read, write, admin)")]
    NoScopes,
    #[error("{field} must be 1 to {max} printable characters")]
    BadText { field: &'static str, max: usize },
    #[error("a user name is 1 to 64 characters of letters, digits, '.', '_', '-' and '@'")]
    BadUserName,
}

/// Printable text of 1 to `max` characters, trimmed (names, emails, token names).
///
/// # Errors
/// [`AccountError::BadText`] when empty, too long or holding control characters.
pub fn clean_text(field: &'static str, text: &str, max: usize) -> Result<String, AccountError> {
    let text = text.trim();
    let ok = !text.is_empty() && text.chars().count() <= max && !text.chars().any(char::is_control);
    if ok {
        Ok(text.to_owned())
    } else {
        Err(AccountError::BadText { field, max })
    }
}

/// The name a local account logs in with: letters, digits, `.`, `_`, `-`, `@`; compared
/// case-insensitively (stored lower-case).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct UserName(String);

impl UserName {
    /// # Errors
    /// [`AccountError::BadUserName`].
    pub fn parse(text: &str) -> Result<Self, AccountError> {
        let text = text.trim();
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
        if ok {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err(AccountError::BadUserName)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Per-user limits. `None` means "the server's default" in an override, and "no limit" in
/// the effective quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Quotas {
    /// Jobs queued, resolving, downloading, paused or uploading at once.
    pub active_jobs: Option<u64>,
    /// Bytes one job may fetch.
    pub job_bytes: Option<u64>,
    /// Bytes of delivered files kept in all.
    pub stored_bytes: Option<u64>,
    /// Jobs seeding at once.
    pub seeding_jobs: Option<u64>,
}

impl Quotas {
    /// Each override where set, else the default.
    #[must_use]
    pub fn over(self, defaults: Self) -> Self {
        Self {
            active_jobs: self.active_jobs.or(defaults.active_jobs),
            job_bytes: self.job_bytes.or(defaults.job_bytes),
            stored_bytes: self.stored_bytes.or(defaults.stored_bytes),
            seeding_jobs: self.seeding_jobs.or(defaults.seeding_jobs),
        }
    }
}

/// Someone who uses Ferry. Their `id` owns their jobs, profiles, tokens and audit records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: OwnerId,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub disabled: bool,
    /// Overrides of the server's default quotas.
    pub quotas: Quotas,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

impl User {
    /// A new, enabled user with a fresh id.
    ///
    /// # Errors
    /// A display name or email that is empty, too long or not printable.
    pub fn new(
        display_name: &str,
        email: Option<&str>,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<Self, AccountError> {
        Ok(Self {
            id: OwnerId::new_user(),
            display_name: clean_text("display name", display_name, 128)?,
            email: email.map(|e| clean_text("email", e, 254)).transpose()?,
            role,
            disabled: false,
            quotas: Quotas::default(),
            created_at: now,
            last_seen_at: None,
        })
    }
}

/// How a user proves who they are.
#[derive(Clone, PartialEq, Eq)]
pub enum Identity {
    /// An OpenID Connect account: issuer and subject, exactly as the ID token says.
    Oidc { issuer: String, subject: String },
    /// A local account: its login name and Argon2id hash (PHC string).
    Local {
        name: UserName,
        password_hash: Option<String>,
    },
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Oidc { issuer, subject } => write!(f, "Oidc({issuer}, {subject})"),
            Self::Local {
                name,
                password_hash,
            } => write!(
                f,
                "Local({name}, password {})",
                if password_hash.is_some() {
                    "set"
                } else {
                    "unset"
                }
            ),
        }
    }
}

/// A personal access token's id (the part of `ferry_pat_{id}_{secret}` that finds it).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct TokenId(Uuid);

impl TokenId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for TokenId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({})", self.0)
    }
}

/// A personal access token as stored: never its secret, only the secret's SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonalToken {
    pub id: TokenId,
    pub owner: OwnerId,
    pub name: String,
    pub scopes: Scopes,
    pub secret_sha256: [u8; 32],
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for PersonalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersonalToken")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_print_and_refuse_the_unknown() {
        let s = Scopes::parse("write, read").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.to_text(), "read write");
        assert!(!s.contains(Scope::Admin));
        assert!(Scopes::parse("").is_err());
        assert!(Scopes::parse("read root").is_err());
        assert_eq!(
            Scopes::parse("admin read")
                .unwrap_or_else(|e| panic!("{e}"))
                .intersect(Scopes::of_role(Role::User)),
            Scopes::NONE.with(Scope::Read)
        );
    }

    #[test]
    fn names_and_texts_are_checked() {
        assert_eq!(
            UserName::parse(" Alice@Example.org ").map(|n| n.to_string()),
            Ok("alice@example.org".to_owned())
        );
        assert!(UserName::parse("a b").is_err());
        assert!(UserName::parse("../x").is_err());
        assert!(clean_text("name", "a\u{0}b", 10).is_err());
        assert!(clean_text("name", "   ", 10).is_err());
        assert!(clean_text("name", &"x".repeat(11), 10).is_err());
    }

    #[test]
    fn overrides_win_over_defaults() {
        let defaults = Quotas {
            active_jobs: Some(5),
            job_bytes: Some(100),
            ..Quotas::default()
        };
        let mine = Quotas {
            active_jobs: Some(1),
            ..Quotas::default()
        };
        assert_eq!(
            mine.over(defaults),
            Quotas {
                active_jobs: Some(1),
                job_bytes: Some(100),
                stored_bytes: None,
                seeding_jobs: None
            }
        );
    }
}
