//! The account use cases: who is calling (a session cookie, a personal token, an IdP access
//! token or the bootstrap token), logging in (local password, OpenID Connect) and out,
//! personal tokens, first-start setup, users administration, API rate limits and the audit
//! log. Every credential is checked here, once per request, and becomes a [`Caller`] the
//! other use cases take as their owner.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ferry_domain::{
    AccountError, Identity, OwnerId, PersonalToken, Quotas, Role, Scope, Scopes, TokenId, User,
    UserName, clean_text,
};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::ports::{
    AccessTokenVerifier, AuditEntry, AuditLog, AuditOutcome, AuditQuery, Clock, IdentityError,
    PasswordHasher, RateDecision, RateLimit, RateLimiter, RepoError, SecretHash, Session, Sessions,
    TokenRepository, UserRepository, VerifiedIdentity,
};

/// The prefix of every personal access token (secret scanners match it).
pub const TOKEN_PREFIX: &str = "ferry_pat_";
/// Passwords longer than this are refused before hashing (a slow hash of a huge input is a
/// denial of service).
const MAX_PASSWORD_BYTES: usize = 1024;
const MIN_PASSWORD_CHARS: usize = 8;

/// Limits and lifetimes, from the configuration.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    /// A session ends this long after its last use…
    pub session_idle: Duration,
    /// …and this long after it began, whatever its use.
    pub session_absolute: Duration,
    /// How long a setup link works.
    pub setup_link_ttl: Duration,
    /// Quotas of users who have no override.
    pub default_quotas: Quotas,
    /// Requests per user (or per personal token) on the API.
    pub api_limit: RateLimit,
    /// Login attempts per client address…
    pub login_ip_limit: RateLimit,
    /// …and per account name.
    pub login_account_limit: RateLimit,
    /// `FERRY_API_TOKEN`: acts as the first admin, for automation that sets Ferry up.
    pub bootstrap_token: Option<String>,
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            session_idle: Duration::from_secs(7 * 24 * 3600),
            session_absolute: Duration::from_secs(30 * 24 * 3600),
            setup_link_ttl: Duration::from_secs(24 * 3600),
            default_quotas: Quotas::default(),
            api_limit: RateLimit {
                burst: 300,
                period: Duration::from_millis(10),
            },
            login_ip_limit: RateLimit {
                burst: 20,
                period: Duration::from_secs(3),
            },
            login_account_limit: RateLimit {
                burst: 5,
                period: Duration::from_secs(12),
            },
            bootstrap_token: None,
        }
    }
}

/// How users who log in through an identity provider become (and stay) Ferry users.
#[derive(Debug, Clone, Default)]
pub struct ProvisionPolicy {
    /// Create a user at their first login; otherwise only users an admin added may log in.
    pub auto_provision: bool,
    /// Members of this group (in the provider's group claim) are admins, others users; the
    /// role follows the group at every login. `None`: roles are set by admins only.
    pub admin_group: Option<String>,
}

/// How a caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A browser session (the SHA-256 of its cookie).
    Session(SecretHash),
    /// A personal access token.
    Token(TokenId),
    /// An access token from the identity provider.
    AccessToken,
    /// `FERRY_API_TOKEN`.
    Bootstrap,
}

/// Who is calling, with what rights: resolved once per request at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: OwnerId,
    pub role: Role,
    pub scopes: Scopes,
    pub via: Via,
}

impl Caller {
    pub fn owner(&self) -> &OwnerId {
        &self.user
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin && self.scopes.contains(Scope::Admin)
    }

    /// # Errors
    /// [`AccountsError::Forbidden`] when the credential lacks `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), AccountsError> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(AccountsError::Forbidden(match scope {
                Scope::Read => "this token lacks the `read` scope",
                Scope::Write => "this token lacks the `write` scope",
                Scope::Admin => "this needs an admin with the `admin` scope",
            }))
        }
    }

    /// The owner an operation acts for: the caller, or (for an admin) `owner` when given.
    ///
    /// # Errors
    /// `Forbidden` when a non-admin names another owner.
    pub fn acting_for(&self, owner: Option<&OwnerId>) -> Result<OwnerId, AccountsError> {
        match owner {
            Some(other) if other != &self.user => {
                self.require(Scope::Admin)?;
                Ok(other.clone())
            }
            _ => Ok(self.user.clone()),
        }
    }
}

/// Where a request came from, for rate limits and the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A session just created: `cookie` goes to the browser (and nowhere else).
#[derive(Debug)]
pub struct NewSession {
    pub cookie: String,
    pub user: User,
    pub expires_at: DateTime<Utc>,
}

/// A setup link's secret: the path segment of `/setup/{secret}`.
#[derive(Debug, Clone)]
pub struct SetupLink {
    pub user: User,
    pub secret: String,
    pub expires_at: DateTime<Utc>,
}

pub use crate::ports::UserChange;

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("missing, wrong, expired or revoked credentials")]
    Unauthorized,
    #[error("wrong user name or password")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("this account is disabled")]
    AccountDisabled,
    #[error("there is no account for this identity here; ask an admin for an invitation")]
    NotInvited,
    #[error("too many requests; try again in {} s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    #[error(transparent)]
    Invalid(#[from] AccountError),
    #[error("a password is {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} bytes long")]
    BadPassword,
    #[error("this login name is taken")]
    NameTaken,
    #[error("user not found")]
    UserNotFound,
    #[error("token not found")]
    TokenNotFound,
    #[error("no such session")]
    SessionNotFound,
    #[error("the setup link is unknown, used or expired")]
    InvalidSetupLink,
    #[error("an expiry must be in the future")]
    ExpiryInPast,
    #[error("login failed: {0}")]
    Login(IdentityError),
    #[error("a backend is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<RepoError> for AccountsError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Unavailable(m) => Self::Unavailable(m),
            other => Self::Unexpected(other.into()),
        }
    }
}

impl From<IdentityError> for AccountsError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Unexpected(e) => Self::Unexpected(e),
            other => Self::Login(other),
        }
    }
}

pub struct Accounts {
    pub users: Arc<dyn UserRepository>,
    pub tokens: Arc<dyn TokenRepository>,
    pub sessions: Arc<dyn Sessions>,
    pub audit: Arc<dyn AuditLog>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub limiter: Arc<dyn RateLimiter>,
    pub clock: Arc<dyn Clock>,
    /// Machine clients' IdP access tokens (one verifier per provider that accepts them),
    /// with how their users are provisioned.
    pub access_tokens: Vec<(Arc<dyn AccessTokenVerifier>, ProvisionPolicy)>,
    pub settings: AccountSettings,
    /// A hash to verify against when a login names no account, so that answers take as
    /// long for unknown names as for wrong passwords.
    decoy_hash: OnceLock<String>,
    /// Password hashes computed at once (each takes tens of MiB and milliseconds of CPU, on
    /// the blocking pool, never on the request threads).
    hashing: tokio::sync::Semaphore,
    /// Users a session was checked against in the last [`SEEN_FOR`]: a session read proves
    /// the session live, and disabling a user deletes their sessions, so only a role change
    /// made by another API process can take up to that long to show.
    seen: std::sync::Mutex<HashMap<OwnerId, (std::time::Instant, User)>>,
}

/// How long a session's user, once read, serves the next requests of that session.
const SEEN_FOR: std::time::Duration = std::time::Duration::from_secs(1);
/// Users remembered at most (the map is emptied when it grows past this).
const SEEN_MAX: usize = 10_000;

/// How stale a last-use time (a user's, a token's, a session's) may get before a request
/// writes a new one: reads stay reads, and the times stay within a minute. The adapters
/// apply the same gap in their `touch`, so a late or concurrent write changes nothing.
const TOUCH_EVERY: TimeDelta = TimeDelta::seconds(60);

/// Whether a last-use time `last` is older than `every` at `now` (or was never written).
fn due(last: Option<DateTime<Utc>>, now: DateTime<Utc>, every: TimeDelta) -> bool {
    last.is_none_or(|last| last <= now - every)
}

/// Why a credential is checked: a request (which records its use and moves a session's idle
/// end), or a recheck of one already admitted (which changes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Request,
    Recheck,
}

/// What an IdP access token may do: its user's role, narrowed to the `ferry:read`,
/// `ferry:write` and `ferry:admin` scopes it was granted when it names any `ferry:` scope
/// (a token for Ferry alone, its audience checked, that names none acts with the role).
fn access_token_scopes(role: Role, granted: &[String]) -> Scopes {
    let mut named = false;
    let mut scopes = Scopes::NONE;
    for name in granted.iter().filter_map(|g| g.strip_prefix("ferry:")) {
        named = true;
        if let Some(scope) = Scope::ALL.into_iter().find(|s| s.as_str() == name) {
            scopes = scopes.with(scope);
        }
    }
    if named {
        scopes.intersect(Scopes::of_role(role))
    } else {
        Scopes::of_role(role)
    }
}

/// 32 random bytes, hex.
fn secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex_lower(&bytes)
}

/// Sessions are the browsers' business: a script's token may not see where its user is
/// signed in (addresses, browsers) nor sign them out.
fn refuse_tokens(caller: &Caller) -> Result<(), AccountsError> {
    if matches!(caller.via, Via::Token(_) | Via::AccessToken) {
        return Err(AccountsError::Forbidden(
            "sessions are managed from a logged-in session",
        ));
    }
    Ok(())
}

/// A session's public name: the first 8 bytes of its hash (never enough to use it).
fn session_id(hash: &SecretHash) -> String {
    hex_lower(&hash[..8])
}

/// A session as its user sees it in their list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub id: String,
    pub session: crate::ports::Session,
    /// It is the session making this request.
    pub current: bool,
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// SHA-256 of a secret as presented.
pub fn secret_hash(secret: &str) -> SecretHash {
    Sha256::digest(secret.as_bytes()).into()
}

/// Compares in time independent of where the first difference is.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Accounts {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        users: Arc<dyn UserRepository>,
        tokens: Arc<dyn TokenRepository>,
        sessions: Arc<dyn Sessions>,
        audit: Arc<dyn AuditLog>,
        hasher: Arc<dyn PasswordHasher>,
        limiter: Arc<dyn RateLimiter>,
        clock: Arc<dyn Clock>,
        settings: AccountSettings,
    ) -> Self {
        Self {
            users,
            tokens,
            sessions,
            audit,
            hasher,
            limiter,
            clock,
            access_tokens: Vec::new(),
            settings,
            decoy_hash: OnceLock::new(),
            hashing: tokio::sync::Semaphore::new(2),
            seen: std::sync::Mutex::default(),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<OwnerId, (std::time::Instant, User)>> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The enabled user behind a live session: read at most once per [`SEEN_FOR`] on a
    /// request (a recheck always reads).
    async fn session_user(&self, id: &OwnerId, used: Use) -> Result<User, AccountsError> {
        if used == Use::Request
            && let Some((at, user)) = self.seen().get(id)
            && at.elapsed() < SEEN_FOR
        {
            return Ok(user.clone());
        }
        let user = self.active(id, used).await?;
        let mut seen = self.seen();
        if seen.len() >= SEEN_MAX {
            seen.clear();
        }
        seen.insert(id.clone(), (std::time::Instant::now(), user.clone()));
        Ok(user)
    }

    /// Also accepts `verifier`'s access tokens as bearer tokens.
    #[must_use]
    pub fn with_access_tokens(
        mut self,
        verifier: Arc<dyn AccessTokenVerifier>,
        policy: ProvisionPolicy,
    ) -> Self {
        self.access_tokens.push((verifier, policy));
        self
    }

    // ---- who is calling ----

    /// The caller a bearer token stands for: a personal token, the bootstrap token, or an
    /// IdP access token.
    ///
    /// # Errors
    /// `Unauthorized` for anything that is not a live credential of an enabled user.
    pub async fn authenticate_bearer(&self, token: &str) -> Result<Caller, AccountsError> {
        self.bearer(token, Use::Request).await
    }

    /// The caller for a user name and a token given as its password (qBittorrent's login, and
    /// HTTP Basic authentication): the token must be a live credential of the user so named
    /// (their local login name, their e-mail address or their id), and a personal token.
    /// Failures are audited and rate limited per address, like password logins.
    ///
    /// # Errors
    /// `RateLimited`, `InvalidCredentials` (a wrong pair, whichever half is wrong).
    pub async fn login_with_token(
        &self,
        name: &str,
        token: &str,
        client: &ClientInfo,
    ) -> Result<Caller, AccountsError> {
        let ip = client_key(client);
        // Only failures count against the address: a client authenticating every request
        // (HTTP Basic) must not use up the budget of the people logging in beside it.
        let refused = async |detail: &str, user: Option<&OwnerId>| {
            // A name that looks like a token (fields swapped) is not written down.
            let named = (!name.contains(TOKEN_PREFIX)).then(|| name.trim().to_owned());
            self.audit_failure(user, "login", named, client, detail)
                .await;
            self.limited(&format!("login-ip:{ip}"), self.settings.login_ip_limit)
                .await
                .and(Err(AccountsError::InvalidCredentials))
        };
        let name = name.trim();
        let caller = match self.authenticate_bearer(token).await {
            // Personal tokens only: the bootstrap token is the operator's, and an identity
            // provider's access tokens expire under a client that stores its password.
            Ok(caller) if matches!(caller.via, Via::Token(_)) => caller,
            Ok(_) | Err(AccountsError::Unauthorized) => return refused("bad token", None).await,
            Err(other) => return Err(other),
        };
        let user = self.users.get(&caller.user).await?;
        let named = match &user {
            _ if caller.user.as_str() == name => true,
            Some(user)
                if user
                    .email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(name)) =>
            {
                true
            }
            Some(user) => match UserName::parse(name) {
                Ok(parsed) => matches!(
                    self.users.by_local_name(&parsed).await?,
                    Some((found, _)) if found.id == user.id
                ),
                Err(_) => false,
            },
            None => false,
        };
        if !named {
            return refused("the token belongs to another user", Some(&caller.user)).await;
        }
        Ok(caller)
    }

    /// Whom a bearer token stands for now, changing nothing (no last-use times, no
    /// provisioning): for an answer that lasts, such as an event stream, to ask again.
    ///
    /// # Errors
    /// As [`Self::authenticate_bearer`].
    pub async fn recheck_bearer(&self, token: &str) -> Result<Caller, AccountsError> {
        self.bearer(token, Use::Recheck).await
    }

    async fn bearer(&self, token: &str, used: Use) -> Result<Caller, AccountsError> {
        let token = token.trim();
        if let Some(rest) = token.strip_prefix(TOKEN_PREFIX) {
            return self.personal_token(rest, used).await;
        }
        if let Some(expected) = &self.settings.bootstrap_token
            && same(token.as_bytes(), expected.as_bytes())
        {
            let user = self.active(&self.bootstrap_admin().await?, used).await?;
            if user.role != Role::Admin {
                return Err(AccountsError::Unauthorized);
            }
            return Ok(Caller {
                user: user.id,
                role: Role::Admin,
                scopes: Scopes::of_role(Role::Admin),
                via: Via::Bootstrap,
            });
        }
        for (verifier, policy) in self.access_tokens.iter().filter(|(v, _)| v.accepts(token)) {
            let identity = match verifier.verify(token).await {
                Ok(identity) => identity,
                Err(IdentityError::Unavailable(m)) => return Err(AccountsError::Unavailable(m)),
                Err(other) => {
                    // Another provider's token, or a bad one: the next verifier may know it.
                    tracing::debug!(error = %other, "an access token was refused");
                    continue;
                }
            };
            let provisioned = match used {
                Use::Request => self.provision(&identity, policy).await,
                Use::Recheck => match self
                    .users
                    .by_oidc(&identity.issuer, &identity.subject)
                    .await?
                {
                    Some(user) if !user.disabled => Ok(user),
                    _ => Err(AccountsError::AccountDisabled),
                },
            };
            let user = match provisioned {
                Ok(user) => user,
                Err(AccountsError::NotInvited | AccountsError::AccountDisabled) => {
                    return Err(AccountsError::Unauthorized);
                }
                Err(e) => return Err(e),
            };
            return Ok(Caller {
                scopes: access_token_scopes(user.role, &identity.granted),
                role: user.role,
                user: user.id,
                via: Via::AccessToken,
            });
        }
        Err(AccountsError::Unauthorized)
    }

    async fn personal_token(&self, rest: &str, used: Use) -> Result<Caller, AccountsError> {
        let (id, secret) = rest.split_once('_').ok_or(AccountsError::Unauthorized)?;
        let id = uuid_simple(id).ok_or(AccountsError::Unauthorized)?;
        let token = self
            .tokens
            .get(TokenId::from_uuid(id))
            .await?
            .ok_or(AccountsError::Unauthorized)?;
        if !same(&secret_hash(secret), &token.secret_sha256) {
            return Err(AccountsError::Unauthorized);
        }
        let now = self.clock.now();
        if token.expires_at.is_some_and(|end| end <= now) {
            return Err(AccountsError::Unauthorized);
        }
        let user = self.active(&token.owner, used).await?;
        if used == Use::Request
            && due(token.last_used_at, now, TOUCH_EVERY)
            && let Err(e) = self.tokens.touch(token.id, now).await
        {
            tracing::warn!(error = %e, "could not record a token's use");
        }
        Ok(Caller {
            // A token never holds more than its user's role allows today.
            scopes: token.scopes.intersect(Scopes::of_role(user.role)),
            role: user.role,
            user: user.id,
            via: Via::Token(token.id),
        })
    }

    /// The caller a session cookie stands for; moves the session's idle end.
    ///
    /// # Errors
    /// `Unauthorized` for an unknown, ended or expired session, or a disabled user.
    pub async fn authenticate_session(&self, cookie: &str) -> Result<Caller, AccountsError> {
        self.session(cookie, Use::Request).await
    }

    /// Whom a session cookie stands for now, changing nothing (its idle end does not move:
    /// an open page's event stream does not keep a session alive).
    ///
    /// # Errors
    /// As [`Self::authenticate_session`].
    pub async fn recheck_session(&self, cookie: &str) -> Result<Caller, AccountsError> {
        self.session(cookie, Use::Recheck).await
    }

    async fn session(&self, cookie: &str, used: Use) -> Result<Caller, AccountsError> {
        let cookie = cookie.trim();
        if cookie.len() != 64 || !cookie.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AccountsError::Unauthorized);
        }
        let hash = secret_hash(cookie);
        let now = self.clock.now();
        let idle = self.settings.session_idle;
        let session = self
            .sessions
            .get(&hash, now, idle)
            .await?
            .ok_or(AccountsError::Unauthorized)?;
        let user = self.session_user(&session.user, used).await?;
        if used == Use::Request
            && due(
                Some(session.last_seen_at),
                now,
                TOUCH_EVERY.min(TimeDelta::from_std(idle / 2).unwrap_or(TOUCH_EVERY)),
            )
            && let Err(e) = self.sessions.touch(&hash, now, idle).await
        {
            tracing::warn!(error = %e, "could not extend a session");
        }
        Ok(Caller {
            scopes: Scopes::of_role(user.role),
            role: user.role,
            user: user.id,
            via: Via::Session(hash),
        })
    }

    /// The user, if they exist and are enabled; records that they were seen (on a request).
    async fn active(&self, id: &OwnerId, used: Use) -> Result<User, AccountsError> {
        let user = self
            .users
            .get(id)
            .await?
            .ok_or(AccountsError::Unauthorized)?;
        if user.disabled {
            return Err(AccountsError::Unauthorized);
        }
        let now = self.clock.now();
        if used == Use::Request
            && due(user.last_seen_at, now, TOUCH_EVERY)
            && let Err(e) = self.users.touch(id, now).await
        {
            tracing::warn!(error = %e, "could not record a user's last visit");
        }
        Ok(user)
    }

    /// The oldest enabled admin, looked up at each use (a demoted or disabled admin is no
    /// longer who the token stands for).
    async fn bootstrap_admin(&self) -> Result<OwnerId, AccountsError> {
        let users = self.users.list().await?;
        let admin = users
            .into_iter()
            .find(|u| u.role == Role::Admin && !u.disabled)
            .ok_or(AccountsError::Unauthorized)?;
        Ok(admin.id)
    }

    /// Takes one request from the caller's API budget.
    ///
    /// # Errors
    /// `RateLimited` with when to try again.
    pub async fn limit_api(&self, caller: &Caller) -> Result<(), AccountsError> {
        // Per user, whatever the credential: more tokens are not more budget.
        let key = format!("api:user:{}", caller.user.as_str());
        self.limited(&key, self.settings.api_limit).await
    }

    // ---- logging in and out ----

    /// Logs in with a local name and password.
    ///
    /// # Errors
    /// `RateLimited` (per address and per name), `InvalidCredentials` (also for an unknown
    /// name), `AccountDisabled`.
    pub async fn login_local(
        &self,
        name: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<NewSession, AccountsError> {
        let ip = client_key(client);
        self.limited(&format!("login-ip:{ip}"), self.settings.login_ip_limit)
            .await?;
        let Ok(name) = UserName::parse(name) else {
            self.audit_failure(None, "login", None, client, "malformed user name")
                .await;
            return Err(AccountsError::InvalidCredentials);
        };
        // Per account and address: guesses at one account are slowed without letting
        // anyone elsewhere lock its owner out.
        self.limited(
            &format!("login-user:{}:{ip}", name.as_str()),
            self.settings.login_account_limit,
        )
        .await?;
        let found = self.users.by_local_name(&name).await?;
        let verified = match &found {
            Some((_, Some(hash))) if password.len() <= MAX_PASSWORD_BYTES => {
                self.verify_password(password, hash).await
            }
            _ => {
                // The same work as a real check, so timing tells nothing.
                let decoy = self.decoy_hash().await?;
                let _ = self.verify_password(password, &decoy).await;
                false
            }
        };
        let Some((user, _)) = found.filter(|_| verified) else {
            self.audit_failure(
                None,
                "login",
                Some(name.to_string()),
                client,
                "wrong user name or password",
            )
            .await;
            return Err(AccountsError::InvalidCredentials);
        };
        if user.disabled {
            self.audit_failure(Some(&user.id), "login", None, client, "account disabled")
                .await;
            return Err(AccountsError::AccountDisabled);
        }
        self.start_session(user, client, "login", "local password")
            .await
    }

    async fn decoy_hash(&self) -> Result<String, AccountsError> {
        if let Some(hash) = self.decoy_hash.get() {
            return Ok(hash.clone());
        }
        let hash = self.run_hasher(|h| h.hash("ferry decoy password")).await?;
        Ok(self.decoy_hash.get_or_init(|| hash).clone())
    }

    /// Runs `work` on the blocking pool, at most two at once.
    async fn run_hasher<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn PasswordHasher) -> Result<T, IdentityError> + Send + 'static,
    ) -> Result<T, AccountsError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|e| AccountsError::Unexpected(e.into()))?;
        let hasher = self.hasher.clone();
        tokio::task::spawn_blocking(move || work(hasher.as_ref()))
            .await
            .map_err(|e| AccountsError::Unexpected(e.into()))?
            .map_err(AccountsError::from)
    }

    async fn verify_password(&self, password: &str, hash: &str) -> bool {
        let (password, hash) = (password.to_owned(), hash.to_owned());
        self.run_hasher(move |h| Ok(h.verify(&password, &hash)))
            .await
            .unwrap_or(false)
    }

    async fn limited(&self, key: &str, limit: RateLimit) -> Result<(), AccountsError> {
        match self.limiter.check(key, limit).await {
            RateDecision::Allowed => Ok(()),
            RateDecision::Limited { retry_after } => {
                Err(AccountsError::RateLimited { retry_after })
            }
        }
    }

    /// Logs in a user an identity provider vouched for (after [`IdentityProvider::finish`]),
    /// creating them first when `policy` allows.
    ///
    /// [`IdentityProvider::finish`]: crate::ports::IdentityProvider::finish
    ///
    /// # Errors
    /// `NotInvited`, `AccountDisabled`, `RateLimited`.
    pub async fn login_oidc(
        &self,
        provider: &str,
        identity: &VerifiedIdentity,
        policy: &ProvisionPolicy,
        client: &ClientInfo,
    ) -> Result<NewSession, AccountsError> {
        let ip = client_key(client);
        self.limited(&format!("login-ip:{ip}"), self.settings.login_ip_limit)
            .await?;
        let user = match self.provision(identity, policy).await {
            Ok(user) => user,
            Err(e @ (AccountsError::NotInvited | AccountsError::AccountDisabled)) => {
                self.audit_failure(
                    None,
                    "login",
                    Some(format!("{}#{}", identity.issuer, identity.subject)),
                    client,
                    &e.to_string(),
                )
                .await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        self.start_session(
            user,
            client,
            "login",
            &format!("identity provider {provider}"),
        )
        .await
    }

    /// The user `identity` belongs to: found, or created when the policy provisions users;
    /// their role follows the admin group when one is configured.
    async fn provision(
        &self,
        identity: &VerifiedIdentity,
        policy: &ProvisionPolicy,
    ) -> Result<User, AccountsError> {
        let role_by_group = policy.admin_group.as_ref().map(|group| {
            if identity.groups.iter().any(|g| g == group) {
                Role::Admin
            } else {
                Role::User
            }
        });
        if let Some(mut user) = self
            .users
            .by_oidc(&identity.issuer, &identity.subject)
            .await?
        {
            if user.disabled {
                return Err(AccountsError::AccountDisabled);
            }
            if let Some(role) = role_by_group
                && role != user.role
            {
                user.role = role;
                self.users
                    .change(
                        &user.id,
                        &UserChange {
                            role: Some(role),
                            ..UserChange::default()
                        },
                    )
                    .await?;
                self.seen().remove(&user.id);
                self.audit_success(
                    Some(&user.id),
                    "user.role",
                    Some(user.id.as_str().to_owned()),
                    &ClientInfo::default(),
                    &format!("role {role} from the identity provider's group claim"),
                )
                .await;
            }
            return Ok(user);
        }
        if !policy.auto_provision {
            return Err(AccountsError::NotInvited);
        }
        let name = identity
            .name
            .clone()
            .or_else(|| identity.email.clone())
            .unwrap_or_else(|| identity.subject.clone());
        let display = clean_text("display name", &name, 128)
            .unwrap_or_else(|_| name.chars().filter(|c| !c.is_control()).take(128).collect());
        let email = identity
            .email
            .as_deref()
            .and_then(|e| clean_text("email", e, 254).ok());
        let user = User::new(
            if display.is_empty() { "user" } else { &display },
            email.as_deref(),
            role_by_group.unwrap_or(Role::User),
            self.clock.now(),
        )?;
        let id = Identity::Oidc {
            issuer: identity.issuer.clone(),
            subject: identity.subject.clone(),
        };
        match self.users.insert(&user, Some(&id)).await {
            Ok(()) => {
                self.audit_success(
                    Some(&user.id),
                    "user.create",
                    Some(user.id.as_str().to_owned()),
                    &ClientInfo::default(),
                    "created at first login",
                )
                .await;
                Ok(user)
            }
            // Two first logins at once: the other one created the user.
            Err(RepoError::AlreadyExists) => self
                .users
                .by_oidc(&identity.issuer, &identity.subject)
                .await?
                .ok_or(AccountsError::Unexpected(anyhow::anyhow!(
                    "the identity exists but has no user"
                ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn start_session(
        &self,
        user: User,
        client: &ClientInfo,
        action: &str,
        how: &str,
    ) -> Result<NewSession, AccountsError> {
        let cookie = secret();
        let now = self.clock.now();
        let expires_at = now + chrono(self.settings.session_absolute);
        let session = Session {
            user: user.id.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at,
            user_agent: client.user_agent.clone(),
            ip: client.ip.clone(),
        };
        self.sessions
            .create(&secret_hash(&cookie), &session, self.settings.session_idle)
            .await?;
        self.audit_success(Some(&user.id), action, None, client, how)
            .await;
        Ok(NewSession {
            cookie,
            user,
            expires_at,
        })
    }

    /// Deletes the sessions that have ended (idle or past their absolute end) and that
    /// nobody presented again; returns how many.
    ///
    /// # Errors
    /// A backend failure.
    pub async fn sweep_sessions(&self) -> Result<u64, AccountsError> {
        Ok(self
            .sessions
            .sweep(self.clock.now(), self.settings.session_idle)
            .await?)
    }

    /// Ends the caller's session (a no-op for other credentials).
    ///
    /// # Errors
    /// A backend failure.
    pub async fn logout(&self, caller: &Caller, client: &ClientInfo) -> Result<(), AccountsError> {
        if let Via::Session(hash) = &caller.via {
            self.sessions.delete(hash).await?;
            self.audit_success(Some(&caller.user), "logout", None, client, "one session")
                .await;
        }
        Ok(())
    }

    /// Ends every session of the caller ("sign out everywhere"); returns how many.
    ///
    /// # Errors
    /// A backend failure.
    pub async fn logout_everywhere(
        &self,
        caller: &Caller,
        client: &ClientInfo,
    ) -> Result<u64, AccountsError> {
        let n = self.sessions.delete_user(&caller.user).await?;
        self.audit_success(
            Some(&caller.user),
            "logout",
            None,
            client,
            &format!("every session ({n})"),
        )
        .await;
        Ok(n)
    }

    /// The caller's live sessions, newest first, each under an id that names it without
    /// being its secret (the first 8 bytes of its hash, in hex).
    ///
    /// # Errors
    /// A backend failure.
    pub async fn sessions(&self, caller: &Caller) -> Result<Vec<SessionView>, AccountsError> {
        caller.require(Scope::Read)?;
        refuse_tokens(caller)?;
        let current = match &caller.via {
            Via::Session(hash) => Some(*hash),
            _ => None,
        };
        let list = self
            .sessions
            .list(&caller.user, self.clock.now(), self.settings.session_idle)
            .await?;
        Ok(list
            .into_iter()
            .map(|(hash, session)| SessionView {
                id: session_id(&hash),
                current: current == Some(hash),
                session,
            })
            .collect())
    }

    /// Ends one of the caller's sessions, named as [`Self::sessions`] names it.
    ///
    /// # Errors
    /// `SessionNotFound` (also for another user's session).
    pub async fn end_session(
        &self,
        caller: &Caller,
        id: &str,
        client: &ClientInfo,
    ) -> Result<(), AccountsError> {
        caller.require(Scope::Write)?;
        refuse_tokens(caller)?;
        let found = self
            .sessions
            .list(&caller.user, self.clock.now(), self.settings.session_idle)
            .await?
            .into_iter()
            .find(|(hash, _)| session_id(hash) == id);
        let Some((hash, _)) = found else {
            return Err(AccountsError::SessionNotFound);
        };
        self.sessions.delete(&hash).await?;
        self.audit_success(
            Some(&caller.user),
            "logout",
            Some(id.to_owned()),
            client,
            "one session, from the list",
        )
        .await;
        Ok(())
    }

    // ---- first start and local users ----

    /// Makes sure someone can administer Ferry: when no admin can log in yet, returns a
    /// setup link for the first admin (creating them when there is no user at all). With
    /// identity providers that make admins by group, nothing is needed.
    ///
    /// # Errors
    /// A backend failure.
    pub async fn ensure_first_admin(&self) -> Result<Option<SetupLink>, AccountsError> {
        let users = self.users.list().await?;
        let mut first_without_login = None;
        for user in users
            .iter()
            .filter(|u| u.role == Role::Admin && !u.disabled)
        {
            if self.users.identities(&user.id).await?.iter().any(|i| {
                matches!(
                    i,
                    Identity::Oidc { .. }
                        | Identity::Local {
                            password_hash: Some(_),
                            ..
                        }
                )
            }) {
                return Ok(None);
            }
            first_without_login.get_or_insert(user.clone());
        }
        let admin = match first_without_login {
            Some(admin) => admin,
            None => {
                // The first admin is `local`, as on an installation from before accounts:
                // two processes starting at once make one admin, not two.
                let admin = User {
                    id: OwnerId::local(),
                    ..User::new("admin", None, Role::Admin, self.clock.now())?
                };
                match self.users.insert(&admin, None).await {
                    Ok(()) => {
                        self.audit_success(
                            None,
                            "user.create",
                            Some(admin.id.as_str().to_owned()),
                            &ClientInfo::default(),
                            "first admin, at first start",
                        )
                        .await;
                        admin
                    }
                    Err(RepoError::AlreadyExists) => self
                        .users
                        .get(&admin.id)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("the first admin vanished"))?,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        self.setup_link(admin).await.map(Some)
    }

    /// A one-time link that lets `user` choose a login name and password.
    ///
    /// # Errors
    /// A backend failure.
    pub async fn setup_link(&self, user: User) -> Result<SetupLink, AccountsError> {
        let secret = secret();
        let expires_at = self.clock.now() + chrono(self.settings.setup_link_ttl);
        self.users
            .insert_setup_link(&secret_hash(&secret), &user.id, expires_at)
            .await?;
        Ok(SetupLink {
            user,
            secret,
            expires_at,
        })
    }

    /// Uses a setup link: sets the user's login name and password, and logs them in.
    ///
    /// # Errors
    /// `InvalidSetupLink`, `Invalid`/`BadPassword`, `NameTaken`, `AccountDisabled`.
    pub async fn redeem_setup_link(
        &self,
        link: &str,
        name: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<NewSession, AccountsError> {
        let ip = client_key(client);
        self.limited(&format!("login-ip:{ip}"), self.settings.login_ip_limit)
            .await?;
        let link = link.trim();
        if link.len() != 64 || !link.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AccountsError::InvalidSetupLink);
        }
        let name = UserName::parse(name)?;
        if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
            return Err(AccountsError::BadPassword);
        }
        // A taken name is refused before the link is used up.
        if self.users.by_local_name(&name).await?.is_some() {
            return Err(AccountsError::NameTaken);
        }
        let hash = self.password_hash(password).await?;
        let user_id = self
            .users
            .take_setup_link(&secret_hash(link), self.clock.now())
            .await?
            .ok_or(AccountsError::InvalidSetupLink)?;
        let user = self
            .users
            .get(&user_id)
            .await?
            .ok_or(AccountsError::InvalidSetupLink)?;
        if user.disabled {
            return Err(AccountsError::AccountDisabled);
        }
        match self.users.set_local_password(&user.id, &name, &hash).await {
            Ok(()) => {}
            Err(RepoError::AlreadyExists) => return Err(AccountsError::NameTaken),
            Err(e) => return Err(e.into()),
        }
        self.start_session(user, client, "login", "setup link")
            .await
    }

    async fn password_hash(&self, password: &str) -> Result<String, AccountsError> {
        if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
            return Err(AccountsError::BadPassword);
        }
        let password = password.to_owned();
        self.run_hasher(move |h| h.hash(&password)).await
    }

    /// Adds a user with a local login (`ferry user add`): with `password`, ready to log in;
    /// without, with a setup link to choose one.
    ///
    /// # Errors
    /// `Invalid`, `BadPassword`, `NameTaken`.
    pub async fn add_local_user(
        &self,
        name: &str,
        role: Role,
        password: Option<&str>,
    ) -> Result<(User, Option<SetupLink>), AccountsError> {
        let name = UserName::parse(name)?;
        let hash = match password {
            Some(p) => Some(self.password_hash(p).await?),
            None => None,
        };
        let user = User::new(name.as_str(), None, role, self.clock.now())?;
        let identity = Identity::Local {
            name,
            password_hash: hash.clone(),
        };
        match self.users.insert(&user, Some(&identity)).await {
            Ok(()) => {}
            Err(RepoError::AlreadyExists) => return Err(AccountsError::NameTaken),
            Err(e) => return Err(e.into()),
        }
        self.audit_success(
            None,
            "user.create",
            Some(user.id.as_str().to_owned()),
            &ClientInfo::default(),
            &format!("local user, role {role}, from the command line"),
        )
        .await;
        let link = match hash {
            Some(_) => None,
            None => Some(self.setup_link(user.clone()).await?),
        };
        Ok((user, link))
    }

    // ---- the caller's own account ----

    /// The caller's user and the quotas that apply to them.
    ///
    /// # Errors
    /// `Unauthorized` when the user is gone.
    pub async fn me(&self, caller: &Caller) -> Result<(User, Quotas), AccountsError> {
        let user = self
            .users
            .get(&caller.user)
            .await?
            .ok_or(AccountsError::Unauthorized)?;
        let quotas = user.quotas.over(self.settings.default_quotas);
        Ok((user, quotas))
    }

    /// Whether `owner` is a user who may act now (exists and is not disabled): what a
    /// background task acting for them (feed rules) checks first.
    ///
    /// # Errors
    /// A backend failure.
    pub async fn is_active(&self, owner: &OwnerId) -> Result<bool, AccountsError> {
        Ok(self.users.get(owner).await?.is_some_and(|u| !u.disabled))
    }

    /// The quotas that apply to `owner`: their overrides over the server's defaults.
    ///
    /// # Errors
    /// A backend failure.
    pub async fn quotas_of(&self, owner: &OwnerId) -> Result<Quotas, AccountsError> {
        let own = self
            .users
            .get(owner)
            .await?
            .map(|u| u.quotas)
            .unwrap_or_default();
        Ok(own.over(self.settings.default_quotas))
    }

    /// Makes a personal token; the returned string is its only copy.
    ///
    /// # Errors
    /// `Invalid` name or scopes, `Forbidden` for scopes beyond the caller's, `ExpiryInPast`.
    pub async fn create_token(
        &self,
        caller: &Caller,
        name: &str,
        scopes: Scopes,
        expires_at: Option<DateTime<Utc>>,
        client: &ClientInfo,
    ) -> Result<(PersonalToken, String), AccountsError> {
        caller.require(Scope::Write)?;
        if matches!(caller.via, Via::Token(_) | Via::AccessToken) {
            // Otherwise a short-lived or revocable credential could mint a lasting one.
            return Err(AccountsError::Forbidden(
                "personal tokens are made from a logged-in session",
            ));
        }
        let name = clean_text("token name", name, 100)?;
        if scopes.is_empty() {
            return Err(AccountError::NoScopes.into());
        }
        if scopes.intersect(caller.scopes) != scopes {
            return Err(AccountsError::Forbidden(
                "a token cannot hold a scope its creator lacks",
            ));
        }
        let now = self.clock.now();
        if expires_at.is_some_and(|end| end <= now) {
            return Err(AccountsError::ExpiryInPast);
        }
        let id = TokenId::new();
        let secret = secret();
        let token = PersonalToken {
            id,
            owner: caller.user.clone(),
            name,
            scopes,
            secret_sha256: secret_hash(&secret),
            created_at: now,
            expires_at,
            last_used_at: None,
        };
        self.tokens.insert(&token).await?;
        self.audit_success(
            Some(&caller.user),
            "token.create",
            Some(id.to_string()),
            client,
            &format!("scopes {}", scopes.to_text()),
        )
        .await;
        let text = format!("{TOKEN_PREFIX}{}_{secret}", id.as_uuid().simple());
        Ok((token, text))
    }

    /// # Errors
    /// A backend failure.
    pub async fn tokens(&self, caller: &Caller) -> Result<Vec<PersonalToken>, AccountsError> {
        caller.require(Scope::Read)?;
        Ok(self.tokens.list(&caller.user).await?)
    }

    /// # Errors
    /// `TokenNotFound` (also for another user's token).
    pub async fn revoke_token(
        &self,
        caller: &Caller,
        id: TokenId,
        client: &ClientInfo,
    ) -> Result<(), AccountsError> {
        caller.require(Scope::Write)?;
        match self.tokens.revoke(&caller.user, id).await {
            Ok(()) => {}
            Err(RepoError::NotFound) => return Err(AccountsError::TokenNotFound),
            Err(e) => return Err(e.into()),
        }
        self.audit_success(
            Some(&caller.user),
            "token.revoke",
            Some(id.to_string()),
            client,
            "",
        )
        .await;
        Ok(())
    }

    // ---- administration ----

    /// # Errors
    /// `Forbidden` for a non-admin.
    pub async fn users(&self, caller: &Caller) -> Result<Vec<User>, AccountsError> {
        caller.require(Scope::Admin)?;
        Ok(self.users.list().await?)
    }

    /// Changes a user's role, disabled flag or quotas. Disabling ends their sessions at once.
    ///
    /// # Errors
    /// `Forbidden` for a non-admin or for an admin disabling or demoting themselves (someone
    /// must stay able to administer), `UserNotFound`.
    pub async fn change_user(
        &self,
        caller: &Caller,
        id: &OwnerId,
        change: UserChange,
        client: &ClientInfo,
    ) -> Result<User, AccountsError> {
        caller.require(Scope::Admin)?;
        if id == &caller.user && (change.disabled == Some(true) || change.role == Some(Role::User))
        {
            return Err(AccountsError::Forbidden(
                "admins cannot disable or demote themselves",
            ));
        }
        let before = self
            .users
            .get(id)
            .await?
            .ok_or(AccountsError::UserNotFound)?;
        let mut what = Vec::new();
        if let Some(role) = change.role
            && role != before.role
        {
            what.push(("admin.user.role", format!("role {role}")));
        }
        if let Some(disabled) = change.disabled
            && disabled != before.disabled
        {
            what.push((
                if disabled {
                    "admin.user.disable"
                } else {
                    "admin.user.enable"
                },
                String::new(),
            ));
        }
        if let Some(quotas) = change.quotas
            && quotas != before.quotas
        {
            what.push(("admin.user.quota", format!("{quotas:?}")));
        }
        // Only the columns asked for: a concurrent change of another field stays.
        match self.users.change(id, &change).await {
            Ok(()) => {}
            Err(RepoError::NotFound) => return Err(AccountsError::UserNotFound),
            Err(e) => return Err(e.into()),
        }
        self.seen().remove(id);
        let user = self
            .users
            .get(id)
            .await?
            .ok_or(AccountsError::UserNotFound)?;
        if user.disabled {
            self.sessions.delete_user(&user.id).await?;
        }
        for (action, detail) in what {
            self.audit_success(
                Some(&caller.user),
                action,
                Some(user.id.as_str().to_owned()),
                client,
                &detail,
            )
            .await;
        }
        Ok(user)
    }

    /// # Errors
    /// `Forbidden` for a non-admin.
    pub async fn audit_log(
        &self,
        caller: &Caller,
        mut query: AuditQuery,
    ) -> Result<Vec<AuditEntry>, AccountsError> {
        caller.require(Scope::Admin)?;
        query.limit = query.limit.clamp(1, 500);
        Ok(self.audit.query(&query).await?)
    }

    // ---- the audit log ----

    /// Records an action that succeeded (also as a structured log event).
    pub async fn audit_success(
        &self,
        actor: Option<&OwnerId>,
        action: &str,
        target: Option<String>,
        client: &ClientInfo,
        detail: &str,
    ) {
        self.record(actor, action, target, AuditOutcome::Success, client, detail)
            .await;
    }

    /// Records an action that was refused.
    pub async fn audit_failure(
        &self,
        actor: Option<&OwnerId>,
        action: &str,
        target: Option<String>,
        client: &ClientInfo,
        detail: &str,
    ) {
        self.record(actor, action, target, AuditOutcome::Failure, client, detail)
            .await;
    }

    async fn record(
        &self,
        actor: Option<&OwnerId>,
        action: &str,
        target: Option<String>,
        outcome: AuditOutcome,
        client: &ClientInfo,
        detail: &str,
    ) {
        let entry = AuditEntry {
            id: 0,
            at: self.clock.now(),
            actor: actor.cloned(),
            action: action.to_owned(),
            target,
            outcome,
            ip: client.ip.clone(),
            user_agent: client
                .user_agent
                .as_ref()
                .map(|ua| ua.chars().filter(|c| !c.is_control()).take(256).collect()),
            detail: (!detail.is_empty()).then(|| detail.to_owned()),
        };
        tracing::info!(
            audit = true,
            action = %entry.action,
            actor = entry.actor.as_ref().map(OwnerId::as_str),
            target = entry.target.as_deref(),
            outcome = ?entry.outcome,
            ip = entry.ip.as_deref(),
            detail = entry.detail.as_deref(),
            "audit"
        );
        if let Err(e) = self.audit.append(&entry).await {
            tracing::error!(error = %e, action = %entry.action, "could not write an audit record");
        }
    }
}

/// The address a client's login attempts are counted under: an IPv4 address, or an IPv6
/// address's /64 (one host holds a whole /64, so counting addresses would count nothing).
fn client_key(client: &ClientInfo) -> String {
    match client.ip.as_deref().map(str::parse::<std::net::IpAddr>) {
        Some(Ok(std::net::IpAddr::V6(v6))) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(Ok(std::net::IpAddr::V6(v6))) => v6
            .to_ipv4_mapped()
            .map_or_else(String::new, |v4| v4.to_string()),
        Some(Ok(ip)) => ip.to_string(),
        _ => "unknown".to_owned(),
    }
}

/// A UUID in its 32-hex-digit form.
fn uuid_simple(text: &str) -> Option<uuid::Uuid> {
    (text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| uuid::Uuid::try_parse(text).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::testing::{
        FixedClock, MemoryAudit, MemoryBrowserSessions, MemoryRateLimiter, MemoryTokens,
        MemoryUsers, epoch,
    };

    /// A real (if weak) hasher: the tests are about accounts, not Argon2.
    struct Reversed;

    impl PasswordHasher for Reversed {
        fn hash(&self, password: &str) -> Result<String, IdentityError> {
            Ok(format!(
                "rev${}",
                password.chars().rev().collect::<String>()
            ))
        }
        fn verify(&self, password: &str, hash: &str) -> bool {
            hash.strip_prefix("rev$")
                .is_some_and(|h| h.chars().rev().collect::<String>() == password)
        }
    }

    struct Fixture {
        accounts: Accounts,
        clock: Arc<FixedClock>,
    }

    fn fixture(settings: AccountSettings) -> Fixture {
        let clock = Arc::new(FixedClock::new(epoch()));
        let accounts = Accounts::new(
            Arc::new(MemoryUsers::default()),
            Arc::new(MemoryTokens::default()),
            Arc::new(MemoryBrowserSessions::default()),
            Arc::new(MemoryAudit::default()),
            Arc::new(Reversed),
            Arc::new(MemoryRateLimiter::default()),
            clock.clone(),
            settings,
        );
        Fixture { accounts, clock }
    }

    const PW: &str = "long enough";

    fn here() -> ClientInfo {
        ClientInfo {
            ip: Some("192.0.2.1".into()),
            user_agent: Some("test".into()),
        }
    }

    #[tokio::test]
    async fn the_first_start_makes_one_admin_whose_link_works_once() {
        let f = fixture(AccountSettings::default());
        let link = f.accounts.ensure_first_admin().await.unwrap().unwrap();
        assert_eq!(link.user.role, Role::Admin);
        // Until the link is used, every start offers a new one, for the same admin.
        let again = f.accounts.ensure_first_admin().await.unwrap().unwrap();
        assert_eq!(again.user.id, link.user.id);
        let session = f
            .accounts
            .redeem_setup_link(&link.secret, "Root", PW, &here())
            .await
            .unwrap();
        let caller = f
            .accounts
            .authenticate_session(&session.cookie)
            .await
            .unwrap();
        assert!(caller.is_admin());
        assert!(f.accounts.ensure_first_admin().await.unwrap().is_none());
        assert!(matches!(
            f.accounts
                .redeem_setup_link(&link.secret, "other", PW, &here())
                .await,
            Err(AccountsError::InvalidSetupLink)
        ));
        // The older link still works (until its expiry), once.
        f.clock.advance(chrono::Duration::hours(25));
        assert!(matches!(
            f.accounts
                .redeem_setup_link(&again.secret, "other", PW, &here())
                .await,
            Err(AccountsError::InvalidSetupLink)
        ));
    }

    #[tokio::test]
    async fn sessions_end_when_idle_when_old_and_at_logout() {
        let f = fixture(AccountSettings {
            session_idle: Duration::from_secs(3600),
            session_absolute: Duration::from_secs(3 * 3600),
            ..AccountSettings::default()
        });
        f.accounts
            .add_local_user("ann", Role::User, Some(PW))
            .await
            .unwrap();
        let s = f.accounts.login_local("ann", PW, &here()).await.unwrap();
        // Used every 50 minutes it lives, but not past its absolute end.
        for _ in 0..3 {
            f.clock.advance(chrono::Duration::minutes(50));
            f.accounts.authenticate_session(&s.cookie).await.unwrap();
        }
        f.clock.advance(chrono::Duration::minutes(40));
        assert!(f.accounts.authenticate_session(&s.cookie).await.is_err());
        let s = f.accounts.login_local("ann", PW, &here()).await.unwrap();
        f.clock.advance(chrono::Duration::minutes(61));
        assert!(f.accounts.authenticate_session(&s.cookie).await.is_err());
        let s = f.accounts.login_local("ann", PW, &here()).await.unwrap();
        let caller = f.accounts.authenticate_session(&s.cookie).await.unwrap();
        f.accounts.logout(&caller, &here()).await.unwrap();
        assert!(f.accounts.authenticate_session(&s.cookie).await.is_err());
        // Malformed cookies are refused before any lookup.
        for bad in ["", "x", &"g".repeat(64), &format!("{} ", "a".repeat(65))] {
            assert!(
                f.accounts.authenticate_session(bad).await.is_err(),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn tokens_never_exceed_their_users_role_and_die_with_the_user() {
        let f = fixture(AccountSettings::default());
        let (admin, _) = f
            .accounts
            .add_local_user("boss", Role::Admin, Some(PW))
            .await
            .unwrap();
        let s = f.accounts.login_local("boss", PW, &here()).await.unwrap();
        let boss = f.accounts.authenticate_session(&s.cookie).await.unwrap();
        let (_, token) = f
            .accounts
            .create_token(&boss, "ci", Scopes::of_role(Role::Admin), None, &here())
            .await
            .unwrap();
        let via_token = f.accounts.authenticate_bearer(&token).await.unwrap();
        assert!(via_token.is_admin());
        // Demoted (by another admin), the token keeps only what a user may do.
        let (_, _) = f
            .accounts
            .add_local_user("other", Role::Admin, Some(PW))
            .await
            .unwrap();
        let o = f.accounts.login_local("other", PW, &here()).await.unwrap();
        let other = f.accounts.authenticate_session(&o.cookie).await.unwrap();
        f.accounts
            .change_user(
                &other,
                &admin.id,
                UserChange {
                    role: Some(Role::User),
                    ..UserChange::default()
                },
                &here(),
            )
            .await
            .unwrap();
        let via_token = f.accounts.authenticate_bearer(&token).await.unwrap();
        assert!(!via_token.scopes.contains(Scope::Admin));
        assert!(via_token.require(Scope::Admin).is_err());
        // The session, whose user was read a moment ago, sees the new role at once too.
        let via_session = f.accounts.authenticate_session(&s.cookie).await.unwrap();
        assert_eq!(via_session.role, Role::User);
        assert!(via_session.require(Scope::Admin).is_err());
        // Disabled: the token and the session stop at once.
        f.accounts
            .change_user(
                &other,
                &admin.id,
                UserChange {
                    disabled: Some(true),
                    ..UserChange::default()
                },
                &here(),
            )
            .await
            .unwrap();
        assert!(f.accounts.authenticate_bearer(&token).await.is_err());
        assert!(f.accounts.authenticate_session(&s.cookie).await.is_err());
        assert!(matches!(
            f.accounts.login_local("boss", PW, &here()).await,
            Err(AccountsError::AccountDisabled)
        ));
        // Hostile bearer strings are refused, never a panic.
        for bad in [
            "ferry_pat_",
            "ferry_pat__",
            "ferry_pat_zz_zz",
            &format!("ferry_pat_{}_x", "0".repeat(32)),
            &format!("ferry_pat_{}", "é".repeat(40)),
        ] {
            assert!(
                f.accounts.authenticate_bearer(bad).await.is_err(),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_bootstrap_token_is_the_first_admin_and_nothing_else() {
        let f = fixture(AccountSettings {
            bootstrap_token: Some("s3cret-bootstrap".into()),
            ..AccountSettings::default()
        });
        assert!(
            f.accounts
                .authenticate_bearer("s3cret-bootstrap")
                .await
                .is_err(),
            "no admin yet"
        );
        let link = f.accounts.ensure_first_admin().await.unwrap().unwrap();
        let c = f
            .accounts
            .authenticate_bearer("s3cret-bootstrap")
            .await
            .unwrap();
        assert_eq!((c.user, c.via), (link.user.id, Via::Bootstrap));
        assert!(
            f.accounts
                .authenticate_bearer("s3cret-bootstrap ")
                .await
                .is_ok()
        );
        assert!(
            f.accounts
                .authenticate_bearer("s3cret-bootstrax")
                .await
                .is_err()
        );
        assert!(f.accounts.authenticate_bearer("s3cret").await.is_err());
    }

    #[test]
    fn access_tokens_act_with_the_role_narrowed_to_their_ferry_scopes() {
        let of = |role, granted: &[&str]| {
            let granted: Vec<String> = granted.iter().map(|&g| g.to_owned()).collect();
            access_token_scopes(role, &granted).to_text()
        };
        assert_eq!(of(Role::User, &["openid", "profile"]), "read write");
        assert_eq!(of(Role::Admin, &[]), "read write admin");
        assert_eq!(of(Role::Admin, &["openid", "ferry:read"]), "read");
        assert_eq!(
            of(Role::User, &["ferry:read", "ferry:admin"]),
            "read",
            "never above the role"
        );
        assert_eq!(
            of(Role::Admin, &["ferry:everything"]),
            "",
            "an unknown ferry scope grants nothing"
        );
        assert_eq!(
            of(Role::User, &["read", "write"]),
            "read write",
            "others' scopes are not Ferry's"
        );
    }

    #[tokio::test]
    async fn identity_provider_users_are_provisioned_by_policy_and_roles_follow_the_group() {
        let f = fixture(AccountSettings::default());
        let alice = VerifiedIdentity {
            issuer: "https://idp.example".into(),
            subject: "a-1".into(),
            email: Some("alice@example.org".into()),
            name: Some("Alice".into()),
            groups: vec!["ferry-admins".into()],
            granted: vec![],
        };
        let invite_only = ProvisionPolicy::default();
        assert!(matches!(
            f.accounts
                .login_oidc("idp", &alice, &invite_only, &here())
                .await,
            Err(AccountsError::NotInvited)
        ));
        let open = ProvisionPolicy {
            auto_provision: true,
            admin_group: Some("ferry-admins".into()),
        };
        let s = f
            .accounts
            .login_oidc("idp", &alice, &open, &here())
            .await
            .unwrap();
        assert_eq!(
            (s.user.role, s.user.display_name.as_str()),
            (Role::Admin, "Alice")
        );
        // Out of the group: a user at the next login; the same account all along.
        let demoted = VerifiedIdentity {
            groups: vec![],
            ..alice.clone()
        };
        let s2 = f
            .accounts
            .login_oidc("idp", &demoted, &open, &here())
            .await
            .unwrap();
        assert_eq!((s2.user.id, s2.user.role), (s.user.id.clone(), Role::User));
        // Another issuer's subject with the same id is another person.
        let mallory = VerifiedIdentity {
            issuer: "https://evil.example".into(),
            ..alice
        };
        let s3 = f
            .accounts
            .login_oidc("idp", &mallory, &open, &here())
            .await
            .unwrap();
        assert_ne!(s3.user.id, s.user.id);
    }

    #[tokio::test]
    async fn logins_are_limited_per_account_and_audited() {
        let f = fixture(AccountSettings {
            login_account_limit: RateLimit {
                burst: 2,
                period: Duration::from_secs(3600),
            },
            ..AccountSettings::default()
        });
        f.accounts
            .add_local_user("ann", Role::User, Some(PW))
            .await
            .unwrap();
        for _ in 0..2 {
            assert!(matches!(
                f.accounts.login_local("ann", "wrong!!!", &here()).await,
                Err(AccountsError::InvalidCredentials)
            ));
        }
        assert!(matches!(
            f.accounts.login_local("ann", PW, &here()).await,
            Err(AccountsError::RateLimited { .. })
        ));
        // Another account from the same address is not held back by ann's.
        assert!(matches!(
            f.accounts.login_local("bob", PW, &here()).await,
            Err(AccountsError::InvalidCredentials)
        ));
        let log = f
            .accounts
            .audit
            .query(&AuditQuery {
                limit: 100,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        let failures = log
            .iter()
            .filter(|e| e.action == "login" && e.outcome == AuditOutcome::Failure)
            .count();
        assert_eq!(failures, 3, "{log:#?}");
        assert!(
            log.iter()
                .all(|e| e.ip.as_deref() == Some("192.0.2.1") || e.ip.is_none())
        );
    }
}
