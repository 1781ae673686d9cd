//! Who is calling: an `Authorization: Bearer` token (a personal token `ferry_pat_…`, an
//! identity provider's access token, or the bootstrap `FERRY_API_TOKEN`) or the browser's
//! session cookie becomes a [`Caller`] that every `/api/v1` operation takes as a parameter
//! (so the OpenAPI document, and Swagger UI's "Authorize", know both schemes).
//!
//! Here, once per request: the credential is checked, the method's scope is required
//! (`read` for GET and HEAD, `write` for the rest), a cookie-authenticated change must come
//! from Ferry's own origin (CSRF), and the caller's API rate limit is taken.

use std::sync::Arc;

use ferry_application::{AccountsError, ClientInfo};
use ferry_domain::{ErrorCode, OwnerId, Scope};
use poem::Request;
use poem::http::{Method, header};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::{ApiKey, Bearer};

use crate::ApiState;
use crate::error::ApiError;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "ferry_session";

/// A bearer token.
#[derive(SecurityScheme)]
#[oai(
    rename = "token",
    ty = "bearer",
    checker = "check_bearer",
    bearer_format = "ferry_pat_… personal token, an identity provider's JWT access token, or FERRY_API_TOKEN"
)]
pub struct BearerAuth(Authed);

/// The browser's session cookie (set by a login).
#[derive(SecurityScheme)]
#[oai(
    rename = "session",
    ty = "api_key",
    key_name = "ferry_session",
    key_in = "cookie",
    checker = "check_cookie"
)]
pub struct SessionAuth(Authed);

/// A checked caller, and the owner a jobs operation acts for: the caller, or the user an
/// admin names with `?owner=` on `/api/v1/jobs…`.
pub struct Authed {
    caller: ferry_application::Caller,
    owner: OwnerId,
    credential: Credential,
}

/// The credential a request was authenticated with, kept so that a long answer (an event
/// stream) can ask whether it still holds.
#[derive(Clone)]
enum Credential {
    Bearer(String),
    Session(String),
}

/// The authenticated caller of an operation.
#[derive(SecurityScheme)]
pub enum Caller {
    Bearer(BearerAuth),
    Session(SessionAuth),
}

impl Caller {
    fn authed(&self) -> &Authed {
        match self {
            Self::Bearer(BearerAuth(a)) | Self::Session(SessionAuth(a)) => a,
        }
    }

    pub fn get(&self) -> &ferry_application::Caller {
        &self.authed().caller
    }

    /// Whose jobs a jobs operation acts on.
    pub fn owner(&self) -> &OwnerId {
        &self.authed().owner
    }

    /// A check that the credential of this request still stands for the same user (not
    /// logged out, revoked, expired, or its user disabled) with the same rights over the
    /// owner acted for, for answers that last: an event stream ends when it fails. It
    /// changes nothing (no last-use time, no session extended) and takes no rate limit.
    pub fn still_valid(
        &self,
        state: Arc<ApiState>,
    ) -> impl Fn() -> futures::future::BoxFuture<'static, bool> + Send + Sync + 'static {
        let credential = self.authed().credential.clone();
        let user = self.get().user.clone();
        let owner = self.owner().clone();
        move || {
            let (state, credential) = (state.clone(), credential.clone());
            let (user, owner) = (user.clone(), owner.clone());
            Box::pin(async move {
                let now = match &credential {
                    Credential::Bearer(token) => state.accounts.recheck_bearer(token).await,
                    Credential::Session(id) => state.accounts.recheck_session(id).await,
                };
                match now {
                    // The same user, still allowed to read, and (an admin following someone
                    // else's jobs) still allowed to act for that owner.
                    Ok(caller) => {
                        caller.user == user
                            && caller.require(Scope::Read).is_ok()
                            && caller.acting_for(Some(&owner)).is_ok()
                    }
                    // A backend that is down is not a revocation: the stream goes on.
                    Err(AccountsError::Unavailable(_)) => true,
                    Err(_) => false,
                }
            })
        }
    }
}

fn state(req: &Request) -> poem::Result<&Arc<ApiState>> {
    req.data::<Arc<ApiState>>()
        .ok_or_else(|| poem::Error::from(ApiError::internal(&"the API state is missing")))
}

/// The client's address and user agent, for rate limits and the audit log. Behind a
/// reverse proxy in `auth.trusted_proxies`, the address is the last one in
/// `X-Forwarded-For` that is not a trusted proxy (earlier ones are the client's word).
pub fn client_info(req: &Request) -> ClientInfo {
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    let trusted = req
        .data::<Arc<ApiState>>()
        .map(|s| s.trusted_proxies.as_slice())
        .unwrap_or_default();
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|c| c.contains(ip));
    let ip = match peer {
        Some(peer) if is_trusted(peer) => req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .find(|ip| !is_trusted(*ip))
            .or(Some(peer)),
        other => other,
    };
    ClientInfo {
        ip: ip.map(|ip| ip.to_string()),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
    }
}

impl Caller {
    /// Records an action in the audit log, naming the owner acted for when an admin acts
    /// on someone else's things.
    pub async fn audit(&self, state: &ApiState, req: &Request, action: &str, target: String) {
        let c = self.get();
        let detail = if self.owner() == &c.user {
            String::new()
        } else {
            format!("for owner {}", self.owner().as_str())
        };
        state
            .accounts
            .audit_success(
                Some(&c.user),
                action,
                Some(target),
                &client_info(req),
                &detail,
            )
            .await;
    }
}

/// The scope a request's method needs.
fn scope_of(method: &Method) -> Scope {
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        Scope::Read
    } else {
        Scope::Write
    }
}

async fn admit(
    state: &ApiState,
    req: &Request,
    caller: ferry_application::Caller,
    credential: Credential,
) -> Result<Authed, ApiError> {
    crate::access_log::record_user(caller.user.as_str());
    caller
        .require(scope_of(req.method()))
        .map_err(ApiError::from)?;
    state
        .accounts
        .limit_api(&caller)
        .await
        .map_err(ApiError::from)?;
    let named = if req.uri().path().starts_with("/api/v1/jobs") {
        query_param(req, "owner")
    } else {
        None
    };
    let owner = match named {
        None => caller.user.clone(),
        Some(text) => {
            let owner = OwnerId::parse(&text).ok_or_else(|| {
                ApiError::new(ErrorCode::InvalidRequest, "`owner` is not a user id")
            })?;
            caller.acting_for(Some(&owner)).map_err(ApiError::from)?
        }
    };
    Ok(Authed {
        caller,
        owner,
        credential,
    })
}

/// A query parameter's first value, percent-decoded.
fn query_param(req: &Request, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Why a credential the caller presented was refused, kept for the edge: an operation takes
/// either scheme, and poem-openapi answers with the error of the scheme it tried last (often
/// "no cookie" when a token was refused); the edge answers with this one instead.
#[derive(Clone, Default)]
pub struct Refusal(Arc<std::sync::Mutex<Option<ApiError>>>);

impl Refusal {
    fn record(req: &Request, error: ApiError) -> poem::Error {
        if let Some(slot) = req.extensions().get::<Self>() {
            *slot
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error.clone());
        }
        error.into()
    }

    pub fn take(&self) -> Option<ApiError> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Authed> {
    let state = state(req)?;
    let caller = match state.accounts.authenticate_bearer(&bearer.token).await {
        Ok(caller) => caller,
        Err(e) => return Err(Refusal::record(req, e.into())),
    };
    admit(state, req, caller, Credential::Bearer(bearer.token))
        .await
        .map_err(|e| Refusal::record(req, e))
}

async fn check_cookie(req: &Request, key: ApiKey) -> poem::Result<Authed> {
    let state = state(req)?;
    let caller = match state.accounts.authenticate_session(&key.key).await {
        Ok(caller) => caller,
        Err(e) => return Err(Refusal::record(req, e.into())),
    };
    if scope_of(req.method()) != Scope::Read && !same_origin(state, req) {
        return Err(Refusal::record(
            req,
            ApiError::new(
                ErrorCode::Forbidden,
                "a change made with a session cookie must come from Ferry's own pages (Origin or Sec-Fetch-Site)",
            ),
        ));
    }
    admit(state, req, caller, Credential::Session(key.key))
        .await
        .map_err(|e| Refusal::record(req, e))
}

/// Whether a browser request comes from Ferry's own origin: `Sec-Fetch-Site: same-origin`,
/// or an `Origin` that is the configured public URL's or names the host the request was
/// sent to. A request with neither header is refused (browsers send at least one on every
/// cross-site POST; other clients use bearer tokens).
pub fn same_origin(state: &ApiState, req: &Request) -> bool {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site.eq_ignore_ascii_case("same-origin");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if origin == "null" {
        return false;
    }
    if let Some(public) = &state.public_origin
        && origin.eq_ignore_ascii_case(public)
    {
        return true;
    }
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// The caller a request's bearer token or cookie stands for, for the few open operations
/// that show more to an authenticated caller (`/health`); `None` without a valid one.
pub async fn optional_caller(req: &Request, state: &ApiState) -> Option<ferry_application::Caller> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some((scheme, token)) = header.and_then(|h| h.split_once(' '))
        && scheme.eq_ignore_ascii_case("bearer")
    {
        return state.accounts.authenticate_bearer(token).await.ok();
    }
    let cookie = cookie(req, SESSION_COOKIE)?;
    state.accounts.authenticate_session(&cookie).await.ok()
}

/// The value of the request's cookie `name` (the first, if a client sent it twice).
pub fn cookie(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

impl From<AccountsError> for ApiError {
    fn from(e: AccountsError) -> Self {
        use AccountsError as E;
        match e {
            E::Unauthorized => Self::unauthorized(),
            E::InvalidCredentials => Self::new(ErrorCode::InvalidCredentials, e.to_string()),
            E::Forbidden(_) => Self::new(ErrorCode::Forbidden, e.to_string()),
            E::AccountDisabled => Self::new(ErrorCode::AccountDisabled, e.to_string()),
            E::NotInvited => Self::new(ErrorCode::NotInvited, e.to_string()),
            E::RateLimited { retry_after } => Self::rate_limited(retry_after),
            E::Invalid(_) | E::BadPassword | E::ExpiryInPast => {
                Self::new(ErrorCode::InvalidAccount, e.to_string())
            }
            E::NameTaken => Self::new(ErrorCode::UserNameTaken, e.to_string()),
            E::UserNotFound => Self::new(ErrorCode::UserNotFound, e.to_string()),
            E::TokenNotFound => Self::new(ErrorCode::TokenNotFound, e.to_string()),
            E::SessionNotFound => Self::new(ErrorCode::SessionNotFound, e.to_string()),
            E::InvalidSetupLink => Self::new(ErrorCode::InvalidSetupLink, e.to_string()),
            E::Login(ferry_application::ports::IdentityError::Unavailable(m)) => {
                tracing::warn!(error = %m, "identity provider unreachable");
                Self::new(
                    ErrorCode::IdentityProviderUnreachable,
                    "the identity provider could not be reached; try again later",
                )
            }
            E::Login(inner) => {
                tracing::info!(error = %inner, "login refused");
                Self::new(ErrorCode::LoginFailed, inner.to_string())
            }
            E::Unavailable(m) => {
                tracing::warn!(error = %m, "accounts: backend unavailable");
                Self::new(
                    ErrorCode::ServiceUnavailable,
                    "a backend is unavailable; try again shortly",
                )
            }
            E::Unexpected(e) => Self::internal(&e),
        }
    }
}
