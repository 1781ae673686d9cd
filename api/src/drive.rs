//! "Connect Google Drive": `POST /storage-profiles/google-drive/connect` starts Google's
//! consent for the caller and keeps the pending connection in a sealed, short-lived cookie
//! that only the callback receives; `GET /storage-profiles/google-drive/callback` (where
//! Google sends the browser back) finishes it, creates the profile and redirects to Ferry.
//!
//! The callback has no security scheme (a redirect carries no bearer token); what proves
//! it belongs to the connection is the pending cookie (sealed with the server key, bound to
//! this purpose) and its `state`, and the use case refuses a browser logged in as someone
//! else and an owner who was disabled meanwhile.

use std::sync::Arc;

use ferry_application::{DriveConnect, DriveConnectError, PendingConnect, ports::ConsentError};
use ferry_domain::{ErrorCode, OwnerId};
use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::payload::{Json, Response};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

use crate::ApiState;
use crate::accounts::{Redirect, safe_return};
use crate::auth::{Caller, SESSION_COOKIE, client_info, cookie};
use crate::error::{ApiError, Fails, statuses};

#[derive(Tags)]
enum Tag {
    /// Storage profiles: S3 buckets and Google Drive folders to deliver to.
    StorageProfiles,
}

pub struct DriveApi {
    pub state: Arc<ApiState>,
}

statuses! {
    ConnectFails: 400, 401, 403, 404, 413, 415, 429, 500, 503;
    CallbackFails: 400, 403, 404, 422, 500, 502, 503;
}

/// The cookie that carries a connection from its start to Google's redirect back.
const CONNECT_COOKIE: &str = "ferry_drive_connect";
const CALLBACK_PATH: &str = "/api/v1/storage-profiles/google-drive/callback";
const CONNECT_CONTEXT: &[u8] = b"ferry pending drive connect v1";

/// A Google Drive folder to connect.
#[derive(Debug, Object)]
pub struct ConnectRequest {
    /// The profile's name.
    pub name: String,
    /// The folder files are delivered to (the id in its Drive URL).
    pub folder_id: String,
    /// A path on Ferry to send the browser to once connected (default `/`).
    pub return_to: Option<String>,
}

#[derive(Debug, Object)]
pub struct ConnectDto {
    /// Google's consent page: send the browser there (in the same browser that made this
    /// request: the pending connection is in its cookie).
    pub authorize_url: String,
}

#[derive(ApiResponse)]
pub enum Connecting {
    /// Go to `authorize_url`; the pending connection's cookie is set (10 minutes).
    #[oai(status = 200)]
    Ok(Json<ConnectDto>),
}

fn failed(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::DriveConnectFailed, message)
}

impl From<DriveConnectError> for ApiError {
    fn from(e: DriveConnectError) -> Self {
        use DriveConnectError as E;
        let message = e.to_string();
        match e {
            E::Invalid(_) => Self::new(ErrorCode::InvalidStorageProfile, message),
            E::Expired | E::StateMismatch => failed(message),
            E::OtherUser => Self::new(ErrorCode::Forbidden, message),
            E::OwnerDisabled => Self::new(ErrorCode::AccountDisabled, message),
            E::Consent(ConsentError::Refused(_) | ConsentError::NoRefreshToken) => failed(message),
            E::Consent(ConsentError::Store(e)) => ferry_application::ProfilesError::from(e).into(),
            E::Profile(e) => e.into(),
        }
    }
}

impl DriveApi {
    fn drive(&self) -> Result<&DriveConnect, ApiError> {
        self.state.drive.as_deref().ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                "Google Drive connections are not set up on this server (google.client_id)",
            )
        })
    }

    fn secure(&self) -> &'static str {
        if self.state.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    }

    /// The pending connection this browser holds, if its cookie opens.
    fn pending(&self, req: &Request) -> Option<PendingConnect> {
        let sealed = hex::decode(cookie(req, CONNECT_COOKIE)?).ok()?;
        let plain = self
            .state
            .profiles
            .secrets
            .open(&sealed, CONNECT_CONTEXT)
            .ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// The user of the browser's session, if it has a live one.
    async fn browser_user(&self, req: &Request) -> Option<OwnerId> {
        let session = cookie(req, SESSION_COOKIE)?;
        let caller = self
            .state
            .accounts
            .authenticate_session(&session)
            .await
            .ok()?;
        Some(caller.user)
    }
}

#[OpenApi(prefix_path = "/api/v1")]
impl DriveApi {
    /// Start connecting a Google Drive folder: answers Google's consent page and sets a
    /// cookie holding the pending connection; after the consent, Google sends the browser
    /// to the callback, which saves the profile.
    #[oai(
        path = "/storage-profiles/google-drive/connect",
        method = "post",
        tag = "Tag::StorageProfiles",
        operation_id = "connectGoogleDrive"
    )]
    async fn connect(
        &self,
        caller: Caller,
        body: Json<ConnectRequest>,
    ) -> Result<Response<Connecting>, Fails<ConnectFails>> {
        let drive = self.drive()?;
        let return_to = match body.0.return_to.as_deref() {
            None => None,
            Some(to) => Some(safe_return(Some(to)).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "`return_to` must be a path on Ferry (`/…`)",
                )
            })?),
        };
        let base = self
            .state
            .public_url
            .as_deref()
            .ok_or_else(|| ApiError::internal(&"Google Drive connections need a public URL"))?;
        let start = drive.begin(
            caller.owner(),
            &body.name,
            &body.folder_id,
            &format!("{base}{CALLBACK_PATH}"),
            return_to,
        )?;
        let plain = serde_json::to_vec(&start.pending).map_err(|e| ApiError::internal(&e))?;
        let sealed = hex::encode(self.state.profiles.secrets.seal(&plain, CONNECT_CONTEXT));
        let max_age = ferry_application::CONNECT_TTL.num_seconds();
        Ok(Response::new(Connecting::Ok(Json(ConnectDto {
            authorize_url: start.authorize_url,
        })))
        .header(
            "Set-Cookie",
            format!(
                "{CONNECT_COOKIE}={sealed}; Path={CALLBACK_PATH}; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
                self.secure()
            ),
        )
        .header("Cache-Control", "no-store"))
    }

    /// Where Google sends the browser back after the consent: finishes the connection this
    /// browser started (its cookie), saves the profile and redirects to `return_to`.
    #[oai(
        path = "/storage-profiles/google-drive/callback",
        method = "get",
        tag = "Tag::StorageProfiles",
        operation_id = "googleDriveCallback"
    )]
    async fn callback(
        &self,
        req: &Request,
        code: Query<Option<String>>,
        state: Query<Option<String>>,
        error: Query<Option<String>>,
    ) -> Result<Response<Redirect>, Fails<CallbackFails>> {
        let drive = self.drive()?;
        // A connection started from Ferry's page (it named where to return) comes back to
        // that page whatever happened, which then says it in words; an API client gets the
        // error as JSON.
        let pending = self.pending(req);
        let back_to = pending.as_ref().and_then(|p| p.return_to.clone());
        let fail = |e: ApiError| -> Result<Response<Redirect>, Fails<CallbackFails>> {
            match &back_to {
                Some(to) => Ok(self.back(to, e.code())),
                None => Err(e.into()),
            }
        };
        if let Some(error) = error.0 {
            if error == "access_denied" {
                return fail(ApiError::new(
                    ErrorCode::DriveConsentDenied,
                    "Google Drive was not connected: access was declined on Google's page",
                ));
            }
            let error: String = error.chars().filter(|c| !c.is_control()).take(64).collect();
            return fail(failed(format!("Google answered `{error}`")));
        }
        let (Some(code), Some(state)) = (code.0, state.0) else {
            return fail(failed("the callback has no `code` and `state`"));
        };
        let Some(pending) = pending else {
            return fail(failed(
                "this browser did not start this Google Drive connection, or it took too long; start it again",
            ));
        };
        let browser_user = self.browser_user(req).await;
        let client = client_info(req);
        let profile = match drive
            .finish(&pending, &code, &state, browser_user.as_ref())
            .await
        {
            Ok(profile) => profile,
            Err(e) => {
                if matches!(
                    e,
                    DriveConnectError::StateMismatch | DriveConnectError::OtherUser
                ) {
                    let detail = format!("Google Drive connection refused: {e}");
                    self.state
                        .accounts
                        .audit_failure(
                            Some(&pending.owner),
                            "profile.create",
                            None,
                            &client,
                            &detail,
                        )
                        .await;
                }
                return fail(ApiError::from(e));
            }
        };
        self.state
            .accounts
            .audit_success(
                Some(&pending.owner),
                "profile.create",
                Some(profile.id.to_string()),
                &client,
                "Google Drive connected",
            )
            .await;
        Ok(match pending.return_to {
            Some(to) => self.back(&to, "connected"),
            None => self.redirect("/".to_owned()),
        })
    }
}

impl DriveApi {
    /// Back to `to` (a path on Ferry) with `?drive={outcome}`, the pending cookie spent.
    fn back(&self, to: &str, outcome: &str) -> Response<Redirect> {
        let joint = if to.contains('?') { '&' } else { '?' };
        self.redirect(format!("{to}{joint}drive={outcome}"))
    }

    fn redirect(&self, to: String) -> Response<Redirect> {
        Response::new(Redirect::Found(to))
            .header(
                "Set-Cookie",
                format!(
                    "{CONNECT_COOKIE}=; Path={CALLBACK_PATH}; HttpOnly; SameSite=Lax; Max-Age=0{}",
                    self.secure()
                ),
            )
            .header("Cache-Control", "no-store")
    }
}
