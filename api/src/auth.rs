//! Who is calling: the `Authorization: Bearer` token becomes a [`Caller`] that every
//! `/api/v1` operation takes as a parameter (so the OpenAPI document, and Swagger UI, know
//! the scheme). Until user accounts exist, one operator token stands for the local owner;
//! accounts will change only [`check`].

use std::sync::Arc;

use ferry_domain::OwnerId;
use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use crate::ApiState;
use crate::error::ApiError;

/// The authenticated caller of an operation.
#[derive(SecurityScheme)]
#[oai(
    rename = "token",
    ty = "bearer",
    checker = "check",
    bearer_format = "opaque"
)]
pub struct Caller(OwnerId);

impl Caller {
    pub fn owner(&self) -> &OwnerId {
        &self.0
    }
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The owner `token` stands for, if any.
fn owner_of(state: &ApiState, token: &str) -> Option<OwnerId> {
    match &state.api_token {
        Some(expected) => same(token.trim().as_bytes(), expected.as_bytes()).then(OwnerId::local),
        None => Some(OwnerId::local()),
    }
}

async fn check(req: &Request, bearer: Bearer) -> poem::Result<OwnerId> {
    let state = req
        .data::<Arc<ApiState>>()
        .ok_or_else(|| poem::Error::from(ApiError::internal(&"the API state is missing")))?;
    owner_of(state, &bearer.token).ok_or_else(|| ApiError::unauthorized().into())
}

/// The caller a request's token stands for, for the few open operations that show more to
/// an authenticated caller (`/health`); `None` without a valid token.
pub fn optional_caller(req: &Request, state: &ApiState) -> Option<Caller> {
    if state.api_token.is_none() {
        return Some(Caller(OwnerId::local()));
    }
    let header = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    owner_of(state, token).map(Caller)
}
