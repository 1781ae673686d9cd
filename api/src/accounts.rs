//! Accounts over HTTP: logging in (a local password, a setup link, or an identity provider's
//! redirect dance) and out, the caller's own account (`/me`) and personal tokens, and the
//! admin's users and audit log.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ferry_application::ports::{AuditEntry, AuditOutcome, AuditQuery, PendingLogin};
use ferry_application::{NewSession, UserChange};
use ferry_domain::{ErrorCode, OwnerId, Quotas, Role, Scopes, TokenId, User};
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Json, Response};
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use uuid::Uuid;

use crate::ApiState;
use crate::auth::{Caller, SESSION_COOKIE, client_info, same_origin};
use crate::error::{ApiError, Fails, statuses};

#[derive(Tags)]
enum Tag {
    /// Logging in and out.
    Auth,
    /// The caller's own account and personal tokens.
    Me,
    /// Users and the audit log (admins).
    Admin,
}

pub struct AccountsApi {
    pub state: Arc<ApiState>,
}

statuses! {
    LoginFails: 400, 401, 403, 409, 413, 415, 429, 500, 503;
    RedirectFails: 400, 403, 404, 429, 500, 502, 503;
    CallerFails: 401, 403, 429, 500, 503;
    TokenFails: 400, 401, 403, 404, 413, 415, 429, 500, 503;
    AdminFails: 400, 401, 403, 404, 413, 415, 429, 500, 503;
}

/// The cookie that carries a login from its start to the identity provider's callback.
const LOGIN_COOKIE: &str = "ferry_login";
const LOGIN_PATH: &str = "/api/v1/auth/callback";
/// How long a started login may take.
const LOGIN_TTL_SECS: i64 = 600;
const LOGIN_CONTEXT: &[u8] = b"ferry pending login v1";

#[derive(Debug, Object)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Object)]
pub struct SetupRequest {
    /// The secret of the setup link (`/setup/{link}`).
    pub link: String,
    /// The login name to choose.
    pub username: String,
    pub password: String,
}

/// A user as their own account or an admin sees them.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct UserDto {
    pub id: String,
    pub display_name: String,
    pub email: Option<String>,
    /// `user` or `admin`.
    pub role: String,
    pub disabled: bool,
    /// Overrides of the server's default quotas (absent: the default).
    pub quotas: QuotasDto,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

impl From<User> for UserDto {
    fn from(u: User) -> Self {
        Self {
            id: u.id.as_str().to_owned(),
            display_name: u.display_name,
            email: u.email,
            role: u.role.as_str().to_owned(),
            disabled: u.disabled,
            quotas: u.quotas.into(),
            created_at: u.created_at,
            last_seen_at: u.last_seen_at,
        }
    }
}

/// Per-user limits; absent means no limit (or, in an override, the server's default). Each
/// is at most 2^53 - 1 (JSON numbers every client reads exactly; 8 PiB of bytes).
#[derive(Debug, Clone, Copy, Object, Default)]
#[oai(skip_serializing_if_is_none)]
pub struct QuotasDto {
    /// Jobs queued, downloading, paused or uploading at once.
    #[oai(validator(minimum(value = "0"), maximum(value = "9007199254740991")))]
    pub active_jobs: Option<u64>,
    /// Bytes one job may fetch.
    #[oai(validator(minimum(value = "0"), maximum(value = "9007199254740991")))]
    pub job_bytes: Option<u64>,
    /// Bytes of delivered files kept in all.
    #[oai(validator(minimum(value = "0"), maximum(value = "9007199254740991")))]
    pub stored_bytes: Option<u64>,
    /// Jobs seeding at once.
    #[oai(validator(minimum(value = "0"), maximum(value = "9007199254740991")))]
    pub seeding_jobs: Option<u64>,
}

impl From<Quotas> for QuotasDto {
    fn from(q: Quotas) -> Self {
        Self {
            active_jobs: q.active_jobs,
            job_bytes: q.job_bytes,
            stored_bytes: q.stored_bytes,
            seeding_jobs: q.seeding_jobs,
        }
    }
}

/// Quota overrides to set: a field left out is the server's default (`null` is refused, as
/// everywhere in a patch).
#[derive(Debug, Clone, Object)]
pub struct QuotasPatch {
    /// Jobs queued, downloading, paused or uploading at once.
    #[oai(validator(minimum(value = "0"), maximum(value = "9007199254740991")))]
    pub active_jobs: MaybeUndefined<u64>,
    /// Bytes one job may fetch.
    #[oai(validator(minimum(value = "0"), maximum(value = "9007199254740991")))]
    pub job_bytes: MaybeUndefined<u64>,
    /// Bytes of delivered files kept in all.
    #[oai(validator(minimum(value = "0"), maximum(value = "9007199254740991")))]
    pub stored_bytes: MaybeUndefined<u64>,
    /// Jobs seeding at once.
    #[oai(validator(minimum(value = "0"), maximum(value = "9007199254740991")))]
    pub seeding_jobs: MaybeUndefined<u64>,
}

impl QuotasPatch {
    fn quotas(self) -> Result<Quotas, ApiError> {
        Ok(Quotas {
            active_jobs: given("quotas.active_jobs", self.active_jobs)?,
            job_bytes: given("quotas.job_bytes", self.job_bytes)?,
            stored_bytes: given("quotas.stored_bytes", self.stored_bytes)?,
            seeding_jobs: given("quotas.seeding_jobs", self.seeding_jobs)?,
        })
    }
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SessionDto {
    pub user: UserDto,
    /// The session's absolute end (it also ends after a while unused).
    pub expires_at: DateTime<Utc>,
}

/// The caller: who, with what rights, under which limits.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct MeDto {
    pub user: UserDto,
    /// What this credential may do: `read`, `write`, `admin`.
    pub scopes: Vec<String>,
    /// How the caller is authenticated: `session`, `token`, `access_token`, `bootstrap`.
    pub via: String,
    /// The quotas that apply (the user's overrides over the server's defaults).
    pub quotas: QuotasDto,
    /// What the user uses of them.
    pub usage: UsageDto,
}

/// What a user uses of what quotas limit.
#[derive(Debug, Object)]
pub struct UsageDto {
    /// Jobs queued, resolving, downloading, paused or uploading.
    pub active_jobs: u64,
    /// Bytes of the files of completed and seeding jobs.
    pub stored_bytes: u64,
    pub seeding_jobs: u64,
}

#[derive(Debug, Object)]
pub struct NewTokenRequest {
    /// A name to recognise the token by.
    pub name: String,
    /// `read`, `write`, `admin` (admins only).
    pub scopes: Vec<String>,
    /// When the token stops working (absent: never).
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TokenDto {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// One of the caller's browser sessions.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SessionInfoDto {
    /// Names the session (to end it); not its secret.
    pub id: String,
    pub created_at: DateTime<Utc>,
    /// Its last request (recorded at most once a minute).
    pub last_seen_at: DateTime<Utc>,
    /// Its absolute end (it also ends after a while unused).
    pub expires_at: DateTime<Utc>,
    /// The browser that signed in, as it named itself.
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// The session making this request.
    pub current: bool,
}

impl From<ferry_application::SessionView> for SessionInfoDto {
    fn from(v: ferry_application::SessionView) -> Self {
        Self {
            id: v.id,
            created_at: v.session.created_at,
            last_seen_at: v.session.last_seen_at,
            expires_at: v.session.expires_at,
            user_agent: v.session.user_agent,
            ip: v.session.ip,
            current: v.current,
        }
    }
}

impl From<ferry_domain::PersonalToken> for TokenDto {
    fn from(t: ferry_domain::PersonalToken) -> Self {
        Self {
            id: t.id.as_uuid(),
            name: t.name,
            scopes: scope_names(t.scopes),
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
        }
    }
}

/// A token just made: `token` is shown this once and never again.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CreatedTokenDto {
    /// `ferry_pat_…`: send it as `Authorization: Bearer <token>`.
    pub token: String,
    #[oai(flatten)]
    pub info: TokenDto,
}

/// A user's role.
#[derive(Debug, Clone, Copy, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum RoleDto {
    User,
    Admin,
}

/// What to change; a field left out (never `null`) stays as it is.
#[derive(Debug, Object)]
pub struct UserPatch {
    pub role: MaybeUndefined<RoleDto>,
    /// Disabling ends the user's sessions at once.
    pub disabled: MaybeUndefined<bool>,
    /// The user's quota overrides (all four replaced; absent fields: the default).
    pub quotas: MaybeUndefined<QuotasPatch>,
}

/// A field given as `null`, which no field here takes.
fn given<T>(field: &str, value: MaybeUndefined<T>) -> Result<Option<T>, ApiError> {
    match value {
        MaybeUndefined::Undefined => Ok(None),
        MaybeUndefined::Null => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("`{field}` may be left out, not null"),
        )),
        MaybeUndefined::Value(v) => Ok(Some(v)),
    }
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditDto {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: Option<String>,
    pub action: String,
    pub target: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
}

impl From<AuditEntry> for AuditDto {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: e.id,
            at: e.at,
            actor: e.actor.map(|a| a.as_str().to_owned()),
            action: e.action,
            target: e.target,
            outcome: match e.outcome {
                AuditOutcome::Success => "success",
                AuditOutcome::Failure => "failure",
            }
            .to_owned(),
            ip: e.ip,
            user_agent: e.user_agent,
            detail: e.detail,
        }
    }
}

#[derive(Debug, Object)]
pub struct ProviderDto {
    /// The name in `/auth/login/{provider}`.
    pub name: String,
}

#[derive(Debug, Object)]
pub struct EndedDto {
    /// How many sessions ended.
    pub ended: u64,
}

#[derive(ApiResponse)]
pub enum SessionResponse {
    /// Logged in; the session cookie is set.
    #[oai(status = 200)]
    Ok(Json<SessionDto>),
}

#[derive(ApiResponse)]
pub enum Redirect {
    /// Go on at `Location`.
    #[oai(status = 302)]
    Found(#[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

#[derive(ApiResponse)]
pub enum TokenCreated {
    /// The token; its secret is shown this once.
    #[oai(status = 201)]
    Created(Json<CreatedTokenDto>),
}

fn scope_names(scopes: Scopes) -> Vec<String> {
    scopes.iter().map(|s| s.as_str().to_owned()).collect()
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidAccount, message)
}

/// A path on Ferry to go back to after login (never another site: no open redirect).
pub(crate) fn safe_return(to: Option<&str>) -> Option<String> {
    let to = to?;
    let ok = to.starts_with('/')
        && !to.starts_with("//")
        && !to.contains('\\')
        && to.len() <= 512
        && !to.chars().any(char::is_control);
    ok.then(|| to.to_owned())
}

impl AccountsApi {
    fn session_cookie(&self, session: &NewSession) -> String {
        let max_age = (session.expires_at - Utc::now()).num_seconds().max(0);
        format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
            session.cookie,
            self.secure()
        )
    }

    fn cleared(&self, name: &str, path: &str) -> String {
        format!(
            "{name}=; Path={path}; HttpOnly; SameSite=Lax; Max-Age=0{}",
            self.secure()
        )
    }

    fn secure(&self) -> &'static str {
        if self.state.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    }

    fn logged_in(&self, session: NewSession) -> Response<SessionResponse> {
        let cookie = self.session_cookie(&session);
        Response::new(SessionResponse::Ok(Json(SessionDto {
            expires_at: session.expires_at,
            user: session.user.into(),
        })))
        .header("Set-Cookie", cookie)
        .header("Cache-Control", "no-store")
    }

    /// A login form posted from another site is refused (login CSRF); a client that sends
    /// no `Origin` and no `Sec-Fetch-Site` is not a browser and may log in.
    fn check_login_origin(&self, req: &Request) -> Result<(), ApiError> {
        let browser = req.headers().contains_key("sec-fetch-site")
            || req.headers().contains_key(poem::http::header::ORIGIN);
        if browser && !same_origin(&self.state, req) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "a login must come from Ferry's own pages",
            ));
        }
        Ok(())
    }

    fn provider(&self, name: &str) -> Result<&crate::LoginProvider, ApiError> {
        self.state
            .providers
            .iter()
            .find(|p| p.provider.name() == name)
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no identity provider by that name"))
    }

    fn redirect_uri(&self, provider: &str) -> Result<String, ApiError> {
        let base = self.state.public_url.as_deref().ok_or_else(|| {
            ApiError::internal(&"identity providers are configured without a public URL")
        })?;
        Ok(format!("{base}{LOGIN_PATH}/{provider}"))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SealedLogin {
    at: i64,
    pending: PendingLogin,
}

#[OpenApi(prefix_path = "/api/v1")]
impl AccountsApi {
    /// Log in with a local user name and password; sets the session cookie.
    #[oai(
        path = "/auth/login",
        method = "post",
        tag = "Tag::Auth",
        operation_id = "login"
    )]
    async fn login(
        &self,
        req: &Request,
        body: Json<LoginRequest>,
    ) -> Result<Response<SessionResponse>, Fails<LoginFails>> {
        self.check_login_origin(req)?;
        let session = self
            .state
            .accounts
            .login_local(&body.username, &body.password, &client_info(req))
            .await
            .map_err(ApiError::from)?;
        Ok(self.logged_in(session))
    }

    /// Use a one-time setup link: choose a login name and password, and log in.
    #[oai(
        path = "/auth/setup",
        method = "post",
        tag = "Tag::Auth",
        operation_id = "redeemSetupLink"
    )]
    async fn setup(
        &self,
        req: &Request,
        body: Json<SetupRequest>,
    ) -> Result<Response<SessionResponse>, Fails<LoginFails>> {
        self.check_login_origin(req)?;
        let session = self
            .state
            .accounts
            .redeem_setup_link(
                &body.link,
                &body.username,
                &body.password,
                &client_info(req),
            )
            .await
            .map_err(ApiError::from)?;
        Ok(self.logged_in(session))
    }

    /// The identity providers one can log in with.
    #[oai(
        path = "/auth/providers",
        method = "get",
        tag = "Tag::Auth",
        operation_id = "loginProviders"
    )]
    async fn providers(&self) -> Json<Vec<ProviderDto>> {
        Json(
            self.state
                .providers
                .iter()
                .map(|p| ProviderDto {
                    name: p.provider.name().to_owned(),
                })
                .collect(),
        )
    }

    /// Start logging in with an identity provider: redirects the browser to it.
    #[oai(
        path = "/auth/login/:provider",
        method = "get",
        tag = "Tag::Auth",
        operation_id = "loginWith"
    )]
    async fn login_with(
        &self,
        provider: Path<String>,
        /// A path on Ferry to return to after login.
        return_to: Query<Option<String>>,
    ) -> Result<Response<Redirect>, Fails<RedirectFails>> {
        let entry = self.provider(&provider.0)?;
        let start = entry
            .provider
            .begin(
                &self.redirect_uri(&provider.0)?,
                safe_return(return_to.0.as_deref()),
            )
            .await
            .map_err(|e| ApiError::from(ferry_application::AccountsError::from(e)))?;
        let sealed = serde_json::to_vec(&SealedLogin {
            at: Utc::now().timestamp(),
            pending: start.pending,
        })
        .map_err(|e| ApiError::internal(&e))?;
        let sealed = hex::encode(self.state.profiles.secrets.seal(&sealed, LOGIN_CONTEXT));
        Ok(Response::new(Redirect::Found(start.authorize_url))
            .header(
                "Set-Cookie",
                format!(
                    "{LOGIN_COOKIE}={sealed}; Path={LOGIN_PATH}; HttpOnly; SameSite=Lax; Max-Age={LOGIN_TTL_SECS}{}",
                    self.secure()
                ),
            )
            .header("Cache-Control", "no-store"))
    }

    /// Where the identity provider sends the browser back: finishes the login, sets the
    /// session cookie and redirects to where the login started.
    #[oai(
        path = "/auth/callback/:provider",
        method = "get",
        tag = "Tag::Auth",
        operation_id = "loginCallback"
    )]
    async fn callback(
        &self,
        req: &Request,
        provider: Path<String>,
        code: Query<Option<String>>,
        state: Query<Option<String>>,
        error: Query<Option<String>>,
    ) -> Result<Response<Redirect>, Fails<RedirectFails>> {
        let entry = self.provider(&provider.0)?;
        let failed = |m: &str| ApiError::new(ErrorCode::LoginFailed, m.to_owned());
        if let Some(error) = error.0 {
            let error: String = error.chars().filter(|c| !c.is_control()).take(64).collect();
            return Err(failed(&format!("the identity provider answered `{error}`")).into());
        }
        let (Some(code), Some(state)) = (code.0, state.0) else {
            return Err(failed("the callback has no `code` and `state`").into());
        };
        let pending = crate::auth::cookie(req, LOGIN_COOKIE)
            .and_then(|c| hex::decode(c).ok())
            .and_then(|sealed| {
                self.state
                    .profiles
                    .secrets
                    .open(&sealed, LOGIN_CONTEXT)
                    .ok()
            })
            .and_then(|plain| serde_json::from_slice::<SealedLogin>(&plain).ok())
            .filter(|s| {
                let age = Utc::now().timestamp() - s.at;
                (0..=LOGIN_TTL_SECS).contains(&age) && s.pending.provider == provider.0
            })
            .ok_or_else(|| {
                failed("this browser did not start this login, or it took too long; start again")
            })?
            .pending;
        let identity = entry
            .provider
            .finish(&pending, &code, &state)
            .await
            .map_err(|e| ApiError::from(ferry_application::AccountsError::from(e)))?;
        let session = self
            .state
            .accounts
            .login_oidc(&provider.0, &identity, &entry.policy, &client_info(req))
            .await
            .map_err(ApiError::from)?;
        let to = pending.return_to.unwrap_or_else(|| "/".to_owned());
        Ok(Response::new(Redirect::Found(to))
            .header("Set-Cookie", self.session_cookie(&session))
            .header("Set-Cookie", self.cleared(LOGIN_COOKIE, LOGIN_PATH))
            .header("Cache-Control", "no-store"))
    }

    /// End this session (with a bearer token: nothing to end).
    #[oai(
        path = "/auth/logout",
        method = "post",
        tag = "Tag::Auth",
        operation_id = "logout"
    )]
    async fn logout(
        &self,
        req: &Request,
        caller: Caller,
    ) -> Result<Response<NoContent>, Fails<CallerFails>> {
        self.state
            .accounts
            .logout(caller.get(), &client_info(req))
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(NoContent::Done).header("Set-Cookie", self.cleared(SESSION_COOKIE, "/")))
    }

    /// End every session of the caller, on every device.
    #[oai(
        path = "/auth/logout-everywhere",
        method = "post",
        tag = "Tag::Auth",
        operation_id = "logoutEverywhere"
    )]
    async fn logout_everywhere(
        &self,
        req: &Request,
        caller: Caller,
    ) -> Result<Response<Json<EndedDto>>, Fails<CallerFails>> {
        let ended = self
            .state
            .accounts
            .logout_everywhere(caller.get(), &client_info(req))
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(Json(EndedDto { ended }))
            .header("Set-Cookie", self.cleared(SESSION_COOKIE, "/")))
    }

    /// The caller's account, rights and quotas.
    #[oai(path = "/me", method = "get", tag = "Tag::Me", operation_id = "me")]
    async fn me(&self, caller: Caller) -> Result<Json<MeDto>, Fails<CallerFails>> {
        let c = caller.get();
        let (user, quotas) = self.state.accounts.me(c).await.map_err(ApiError::from)?;
        let usage = self
            .state
            .jobs
            .usage(&c.user)
            .await
            .map_err(ApiError::from)?;
        Ok(Json(MeDto {
            user: user.into(),
            scopes: scope_names(c.scopes),
            via: match c.via {
                ferry_application::Via::Session(_) => "session",
                ferry_application::Via::Token(_) => "token",
                ferry_application::Via::AccessToken => "access_token",
                ferry_application::Via::Bootstrap => "bootstrap",
            }
            .to_owned(),
            quotas: quotas.into(),
            usage: UsageDto {
                active_jobs: usage.active_jobs,
                stored_bytes: usage.stored_bytes,
                seeding_jobs: usage.seeding_jobs,
            },
        }))
    }

    /// The caller's personal tokens (never their secrets).
    #[oai(
        path = "/me/tokens",
        method = "get",
        tag = "Tag::Me",
        operation_id = "listTokens"
    )]
    async fn tokens(&self, caller: Caller) -> Result<Json<Vec<TokenDto>>, Fails<CallerFails>> {
        let tokens = self
            .state
            .accounts
            .tokens(caller.get())
            .await
            .map_err(ApiError::from)?;
        Ok(Json(tokens.into_iter().map(TokenDto::from).collect()))
    }

    /// Make a personal token; its secret is in this answer only.
    #[oai(
        path = "/me/tokens",
        method = "post",
        tag = "Tag::Me",
        operation_id = "createToken"
    )]
    async fn create_token(
        &self,
        req: &Request,
        caller: Caller,
        body: Json<NewTokenRequest>,
    ) -> Result<TokenCreated, Fails<TokenFails>> {
        let scopes = Scopes::parse(&body.scopes.join(" ")).map_err(|e| bad(e.to_string()))?;
        let (token, text) = self
            .state
            .accounts
            .create_token(
                caller.get(),
                &body.name,
                scopes,
                body.expires_at,
                &client_info(req),
            )
            .await
            .map_err(ApiError::from)?;
        Ok(TokenCreated::Created(Json(CreatedTokenDto {
            token: text,
            info: token.into(),
        })))
    }

    /// Revoke one of the caller's tokens; it stops working at once.
    #[oai(
        path = "/me/tokens/:id",
        method = "delete",
        tag = "Tag::Me",
        operation_id = "revokeToken"
    )]
    async fn revoke_token(
        &self,
        req: &Request,
        caller: Caller,
        id: Path<String>,
    ) -> Result<NoContent, Fails<TokenFails>> {
        let id = Uuid::try_parse(&id.0)
            .map_err(|_| ApiError::new(ErrorCode::TokenNotFound, "token not found"))?;
        self.state
            .accounts
            .revoke_token(caller.get(), TokenId::from_uuid(id), &client_info(req))
            .await
            .map_err(ApiError::from)?;
        Ok(NoContent::Done)
    }

    /// The caller's live browser sessions, newest first.
    #[oai(
        path = "/me/sessions",
        method = "get",
        tag = "Tag::Me",
        operation_id = "listSessions"
    )]
    async fn sessions(
        &self,
        caller: Caller,
    ) -> Result<Json<Vec<SessionInfoDto>>, Fails<CallerFails>> {
        let sessions = self
            .state
            .accounts
            .sessions(caller.get())
            .await
            .map_err(ApiError::from)?;
        Ok(Json(
            sessions.into_iter().map(SessionInfoDto::from).collect(),
        ))
    }

    /// End one of the caller's sessions (signs that browser out).
    #[oai(
        path = "/me/sessions/:id",
        method = "delete",
        tag = "Tag::Me",
        operation_id = "endSession"
    )]
    async fn end_session(
        &self,
        req: &Request,
        caller: Caller,
        #[oai(validator(max_length = 64))] id: Path<String>,
    ) -> Result<NoContent, Fails<TokenFails>> {
        self.state
            .accounts
            .end_session(caller.get(), &id.0, &client_info(req))
            .await
            .map_err(ApiError::from)?;
        Ok(NoContent::Done)
    }

    /// Every user (admins).
    #[oai(
        path = "/admin/users",
        method = "get",
        tag = "Tag::Admin",
        operation_id = "listUsers"
    )]
    async fn users(&self, caller: Caller) -> Result<Json<Vec<UserDto>>, Fails<AdminFails>> {
        let users = self
            .state
            .accounts
            .users(caller.get())
            .await
            .map_err(ApiError::from)?;
        Ok(Json(users.into_iter().map(UserDto::from).collect()))
    }

    /// Change a user's role, disabled flag or quotas (admins).
    #[oai(
        path = "/admin/users/:id",
        method = "patch",
        tag = "Tag::Admin",
        operation_id = "changeUser"
    )]
    async fn change_user(
        &self,
        req: &Request,
        caller: Caller,
        id: Path<String>,
        body: Json<UserPatch>,
    ) -> Result<Json<UserDto>, Fails<AdminFails>> {
        caller
            .get()
            .require(ferry_domain::Scope::Admin)
            .map_err(ApiError::from)?;
        let id = OwnerId::parse(&id.0)
            .ok_or_else(|| ApiError::new(ErrorCode::UserNotFound, "user not found"))?;
        let UserPatch {
            role,
            disabled,
            quotas,
        } = body.0;
        let change = UserChange {
            role: given("role", role)?.map(|r| match r {
                RoleDto::User => Role::User,
                RoleDto::Admin => Role::Admin,
            }),
            disabled: given("disabled", disabled)?,
            quotas: given("quotas", quotas)?
                .map(QuotasPatch::quotas)
                .transpose()?,
        };
        let user = self
            .state
            .accounts
            .change_user(caller.get(), &id, change, &client_info(req))
            .await
            .map_err(ApiError::from)?;
        Ok(Json(user.into()))
    }

    /// The audit log, newest first (admins). Page with `before` = the last `id` seen.
    #[oai(
        path = "/admin/audit",
        method = "get",
        tag = "Tag::Admin",
        operation_id = "auditLog"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        caller: Caller,
        /// Only this user's actions.
        #[oai(validator(pattern = "^[A-Za-z0-9_-]{1,64}$"))]
        actor: Query<Option<String>>,
        /// An action (`login`), or a prefix ending in `.` (`admin.`).
        #[oai(validator(max_length = 64))]
        action: Query<Option<String>>,
        since: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
        before: Query<Option<i64>>,
        /// At most this many records (1 to 500, default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u64>>,
    ) -> Result<Json<Vec<AuditDto>>, Fails<AdminFails>> {
        let actor = match actor.0 {
            Some(a) => Some(OwnerId::parse(&a).ok_or_else(|| bad("`actor` is not a user id"))?),
            None => None,
        };
        // The document's limit, counted the same way (characters), in case of another caller.
        if action.0.as_ref().is_some_and(|a| a.chars().count() > 64) {
            return Err(bad("`action` is at most 64 characters").into());
        }
        let query = AuditQuery {
            actor,
            action: action.0,
            since: since.0,
            until: until.0,
            before: before.0,
            limit: limit.0.unwrap_or(100),
        };
        let entries = self
            .state
            .accounts
            .audit_log(caller.get(), query)
            .await
            .map_err(ApiError::from)?;
        Ok(Json(entries.into_iter().map(AuditDto::from).collect()))
    }
}
