//! Accounts' state: users and their identities, one-time setup links, personal tokens,
//! browser sessions and the audit log. Everything here is found by its owner or by a hash;
//! no store ever holds a secret a caller could replay (session ids, token secrets and
//! setup links are kept as SHA-256).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_domain::{Identity, OwnerId, PersonalToken, Quotas, Role, TokenId, User, UserName};

use super::RepoError;

/// SHA-256 of a secret (a session id, a token's secret, a setup link).
pub type SecretHash = [u8; 32];

/// What an admin changes on a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// The new overrides (replace all four; `None` in one means "the default").
    pub quotas: Option<Quotas>,
}

#[async_trait]
pub trait UserRepository: Send + Sync + 'static {
    /// Stores a new user, with the identity they log in with if any, in one transaction.
    ///
    /// # Errors
    /// `AlreadyExists` when the id, the OIDC issuer+subject or the local name is taken.
    async fn insert(&self, user: &User, identity: Option<&Identity>) -> Result<(), RepoError>;

    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn get(&self, id: &OwnerId) -> Result<Option<User>, RepoError>;

    /// The user an OIDC identity belongs to.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn by_oidc(&self, issuer: &str, subject: &str) -> Result<Option<User>, RepoError>;

    /// The user a local login name belongs to, with their password hash (`None` until a
    /// password is set).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn by_local_name(
        &self,
        name: &UserName,
    ) -> Result<Option<(User, Option<String>)>, RepoError>;

    /// The user's identities.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn identities(&self, id: &OwnerId) -> Result<Vec<Identity>, RepoError>;

    /// Gives the user a local login `name` with `password_hash`, or replaces the hash of
    /// the local login they have.
    ///
    /// # Errors
    /// `NotFound` for an unknown user; `AlreadyExists` when another user has `name`.
    async fn set_local_password(
        &self,
        id: &OwnerId,
        name: &UserName,
        password_hash: &str,
    ) -> Result<(), RepoError>;

    /// Every user, oldest first.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn list(&self) -> Result<Vec<User>, RepoError>;

    /// Writes the user's display name, email, role, disabled flag and quota overrides.
    ///
    /// # Errors
    /// `NotFound` for an unknown user.
    async fn update(&self, user: &User) -> Result<(), RepoError>;

    /// Writes only the columns `change` names, in one statement: two admins (or an admin
    /// and a login that maps the identity provider's groups) changing different things of
    /// one user at once both keep their change.
    ///
    /// # Errors
    /// `NotFound` for an unknown user.
    async fn change(&self, id: &OwnerId, change: &UserChange) -> Result<(), RepoError>;

    /// Records that the user was seen at `at` (adapters may skip writes closer than a
    /// minute to the last one).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn touch(&self, id: &OwnerId, at: DateTime<Utc>) -> Result<(), RepoError>;

    /// Stores a one-time setup link for `user` (its SHA-256), valid until `expires_at`.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn insert_setup_link(
        &self,
        hash: &SecretHash,
        user: &OwnerId,
        expires_at: DateTime<Utc>,
    ) -> Result<(), RepoError>;

    /// Uses up the setup link: the user it was for, if it exists and has not expired at
    /// `now`. A link works once, even when two requests race for it.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn take_setup_link(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
    ) -> Result<Option<OwnerId>, RepoError>;
}

#[async_trait]
pub trait TokenRepository: Send + Sync + 'static {
    /// # Errors
    /// `AlreadyExists` if the id is taken.
    async fn insert(&self, token: &PersonalToken) -> Result<(), RepoError>;

    /// A token by id, whoever owns it (the caller checks the secret).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn get(&self, id: TokenId) -> Result<Option<PersonalToken>, RepoError>;

    /// The owner's tokens, newest first.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn list(&self, owner: &OwnerId) -> Result<Vec<PersonalToken>, RepoError>;

    /// Deletes the owner's token.
    ///
    /// # Errors
    /// `NotFound` when the owner has no such token.
    async fn revoke(&self, owner: &OwnerId, id: TokenId) -> Result<(), RepoError>;

    /// Records a use at `at` (adapters may skip writes closer than a minute to the last).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn touch(&self, id: TokenId, at: DateTime<Utc>) -> Result<(), RepoError>;
}

/// A browser session as stored under the SHA-256 of its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: OwnerId,
    pub created_at: DateTime<Utc>,
    /// Last request seen; the session ends `idle` after it.
    pub last_seen_at: DateTime<Utc>,
    /// The absolute end, whatever the activity.
    pub expires_at: DateTime<Utc>,
    /// The client that created it, for the user's own list.
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// Server-side browser sessions: the database in the embedded mode, Redis in the
/// distributed mode.
#[async_trait]
pub trait Sessions: Send + Sync + 'static {
    /// Stores a session that ends at `session.expires_at` or `idle` after its last use.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn create(
        &self,
        hash: &SecretHash,
        session: &Session,
        idle: Duration,
    ) -> Result<(), RepoError>;

    /// The live session: `None` when it does not exist, was deleted, or has passed its
    /// idle or absolute end at `now` (an expired session is deleted on the way).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn get(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
        idle: Duration,
    ) -> Result<Option<Session>, RepoError>;

    /// Moves the idle end to `now + idle` (adapters may skip writes closer than a minute).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn touch(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
        idle: Duration,
    ) -> Result<(), RepoError>;

    /// The live sessions of `user` at `now`, each under its hash, newest first (for the
    /// user's own list: where they are signed in, to end one).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn list(
        &self,
        user: &OwnerId,
        now: DateTime<Utc>,
        idle: Duration,
    ) -> Result<Vec<(SecretHash, Session)>, RepoError>;

    /// Ends one session (logout). Ending one that does not exist is not an error.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn delete(&self, hash: &SecretHash) -> Result<(), RepoError>;

    /// Ends every session of `user` ("sign out everywhere", a disabled user); returns how
    /// many there were.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn delete_user(&self, user: &OwnerId) -> Result<u64, RepoError>;

    /// Deletes every session that has ended at `now` (its absolute end, or `idle` after its
    /// last use) and returns how many. `get` drops the ones it meets; this is for the
    /// sessions nobody presents again. Adapters whose store expires entries on its own may
    /// do nothing and answer 0.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn sweep(&self, now: DateTime<Utc>, idle: Duration) -> Result<u64, RepoError>;
}

/// Whether an audited action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Success,
    Failure,
}

/// One audit record. `action` is a dotted name (`login`, `token.create`, `job.submit`,
/// `admin.user.disable`, …); `target` names what it acted on (a job id, a user id, a token
/// id); `detail` says more in a sentence (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Assigned by the log on append, increasing (paging goes by it).
    pub id: i64,
    pub at: DateTime<Utc>,
    /// Who acted, when known (a failed login of an unknown name has none).
    pub actor: Option<OwnerId>,
    pub action: String,
    pub target: Option<String>,
    pub outcome: AuditOutcome,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
}

/// Which records to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub actor: Option<OwnerId>,
    /// An exact action, or a prefix ending in `.` (`admin.`).
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Records with an id below this one (the previous page's last id).
    pub before: Option<i64>,
    pub limit: u64,
}

/// The append-only audit log.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Appends `entry` (its `id` is ignored) and returns the id it was given.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn append(&self, entry: &AuditEntry) -> Result<i64, RepoError>;

    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, RepoError>;
}
