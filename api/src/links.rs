//! Signed file links. `GET /jobs/{id}/files/{index}/link` (a caller who may read the job,
//! like every jobs operation) makes a short-lived link; `GET /links/{token}` is the link
//! itself, an open operation: it answers exactly as the file endpoint does (the bytes with
//! `Range`, or a redirect to remote storage), with nothing but the token to go on.
//!
//! Why a path of its own rather than `?sig=` on the file endpoint: the file endpoint is an
//! authenticated operation (its security schemes, `?owner=` for admins, rate limit per
//! caller); a link is a different credential with its own checks, and one open operation
//! keeps the two apart in the code and in the OpenAPI document. The token is the whole
//! credential and names the job, file and owner, so there is nothing in the path to
//! disagree with it.

use std::sync::Arc;

use ferry_application::LinksError;
use ferry_domain::ErrorCode;
use poem_openapi::OpenApi;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;

use crate::ApiState;
use crate::auth::Caller;
use crate::download::{self, FileResponse};
use crate::dto::FileLinkDto;
use crate::error::{ApiError, Fails, statuses};
use crate::jobs::{Tag, parse_id};

pub struct LinksApi {
    pub state: Arc<ApiState>,
}

// 400 an unparsable index; 401/403/429 the caller (403 also `invalid_link`); 404/409 what
// the file endpoint answers; 503 a backend down.
statuses! {
    MintFails: 400, 401, 403, 404, 409, 429, 500, 503;
    OpenFails: 403, 404, 409, 429, 500, 503, 504;
}

impl From<LinksError> for ApiError {
    fn from(e: LinksError) -> Self {
        match e {
            LinksError::Expired | LinksError::Invalid => {
                Self::new(ErrorCode::InvalidLink, e.to_string())
            }
            LinksError::RateLimited { retry_after } => Self::rate_limited(retry_after),
            LinksError::Jobs(e) => e.into(),
            LinksError::Unexpected(e) => Self::internal(&format!("{e:#}")),
        }
    }
}

#[OpenApi(prefix_path = "/api/v1")]
impl LinksApi {
    /// A link to one file (finished, or — with `ferry serve` — one a torrent job is
    /// downloading) that works without a cookie or a token, for `<video src>`, download
    /// managers and sharing: whoever has it can download the file until `expires_at`
    /// (`auth.link_ttl`), unless the job is deleted or its owner disabled first.
    #[oai(
        path = "/jobs/:id/files/:index/link",
        method = "get",
        tag = "Tag::Jobs",
        operation_id = "jobFileLink"
    )]
    async fn mint(
        &self,
        caller: Caller,
        id: Path<String>,
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))] index: Path<u32>,
    ) -> Result<Json<FileLinkDto>, Fails<MintFails>> {
        let link = self
            .state
            .links
            .mint(caller.owner(), parse_id(&id)?, index.0 as usize)
            .await?;
        let base = self.state.public_url.as_deref().unwrap_or_default();
        Ok(Json(FileLinkDto {
            url: format!("{base}/api/v1/links/{}", link.token),
            expires_at: link.expires_at,
        }))
    }

    /// Download the file a link stands for; no cookie or token needed. Answers as
    /// `jobFile` does: `Range: bytes=…`, a redirect for a file in remote storage, and (with
    /// `ferry serve`) a file streamed while it downloads. An expired, altered or revoked
    /// link is `403 invalid_link`.
    #[oai(
        path = "/links/:token",
        method = "get",
        tag = "Tag::Jobs",
        operation_id = "fileByLink"
    )]
    async fn open(
        &self,
        req: &poem::Request,
        /// The link's token, as `jobFileLink` made it.
        token: Path<String>,
        #[oai(name = "Range")] range: Header<Option<String>>,
    ) -> Result<FileResponse, Fails<OpenFails>> {
        let source = self.state.links.open(&token).await?;
        Ok(download::send_source(source, range.0.as_deref(), crate::edge::is_head(req)).await?)
    }
}
