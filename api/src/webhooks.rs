//! `/api/v1/webhooks`: the caller's endpoints, told when their jobs complete, fail or finish
//! seeding (signed deliveries, retried), and each one's delivery history. A signing secret
//! is shown once, when it is made.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ferry_application::WebhookChange;
use ferry_application::ports::Delivery;
use ferry_domain::{ErrorCode, MAX_WEBHOOK_URL_CHARS, Webhook, WebhookEvent, WebhookId};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags};
use uuid::Uuid;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, Fails, statuses};

#[derive(Tags)]
enum Tag {
    /// Webhooks: your HTTP endpoints, told when your jobs complete, fail or finish seeding.
    Webhooks,
}

pub struct WebhooksApi {
    pub state: Arc<ApiState>,
}

statuses! {
    CreateFails: 400, 401, 403, 413, 415, 422, 429, 500, 503;
    ListFails: 401, 403, 429, 500, 503;
    ReadFails: 400, 401, 403, 404, 429, 500, 503;
    UpdateFails: 400, 401, 403, 404, 413, 415, 422, 429, 500, 503;
}

/// An event a webhook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum WebhookEventName {
    /// A job's files were delivered.
    #[oai(rename = "job.completed")]
    Completed,
    /// A job failed.
    #[oai(rename = "job.failed")]
    Failed,
    /// A seeding job stopped seeding.
    #[oai(rename = "job.seeding_finished")]
    SeedingFinished,
}

impl WebhookEventName {
    fn of(event: WebhookEvent) -> Option<Self> {
        match event {
            WebhookEvent::JobCompleted => Some(Self::Completed),
            WebhookEvent::JobFailed => Some(Self::Failed),
            WebhookEvent::JobSeedingFinished => Some(Self::SeedingFinished),
            WebhookEvent::Ping => None,
        }
    }

    fn wire(self) -> String {
        match self {
            Self::Completed => WebhookEvent::JobCompleted,
            Self::Failed => WebhookEvent::JobFailed,
            Self::SeedingFinished => WebhookEvent::JobSeedingFinished,
        }
        .as_str()
        .to_owned()
    }
}

/// A new webhook.
#[derive(Debug, Object)]
pub struct NewWebhook {
    /// Where deliveries are POSTed: an http(s) URL that is not, and does not resolve to, an
    /// internal address (unless the operator allows it with `fetch.allow`).
    #[oai(validator(max_length = 2048))]
    pub url: String,
    /// What it is told about (default: every event).
    #[oai(validator(min_items = 1, max_items = 16))]
    pub events: Option<Vec<WebhookEventName>>,
    /// Whether deliveries are made (default true).
    pub enabled: Option<bool>,
}

/// A change to a webhook: the fields given change.
#[derive(Debug, Object)]
pub struct WebhookPatch {
    #[oai(validator(max_length = 2048))]
    pub url: Option<String>,
    #[oai(validator(min_items = 1, max_items = 16))]
    pub events: Option<Vec<WebhookEventName>>,
    pub enabled: Option<bool>,
}

/// A webhook (its secret is never shown again after it is made).
#[derive(Debug, Object)]
pub struct WebhookDto {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<WebhookEventName>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}

impl From<&Webhook> for WebhookDto {
    fn from(w: &Webhook) -> Self {
        Self {
            id: w.id.as_uuid(),
            url: w.url.to_string(),
            events: w
                .events
                .iter()
                .copied()
                .filter_map(WebhookEventName::of)
                .collect(),
            enabled: w.enabled,
            created_at: w.created_at,
        }
    }
}

/// A webhook with its signing secret, shown this once (never in `Debug`).
#[derive(Object)]
pub struct WebhookWithSecret {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<WebhookEventName>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    /// `whsec_…`: the HMAC-SHA256 key of `X-Ferry-Signature`, as is. Shown once.
    pub secret: String,
}

impl std::fmt::Debug for WebhookWithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookWithSecret")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("enabled", &self.enabled)
            .field("created_at", &self.created_at)
            .field("secret", &"***")
            .finish()
    }
}

impl WebhookWithSecret {
    fn of(w: ferry_application::WithSecret) -> Self {
        let dto = WebhookDto::from(&w.webhook);
        Self {
            id: dto.id,
            url: dto.url,
            events: dto.events,
            enabled: dto.enabled,
            created_at: dto.created_at,
            secret: w.secret,
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum DeliveryStateDto {
    Pending,
    Delivered,
    Failed,
}

/// One event sent (or to be sent) to a webhook, with its attempts.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DeliveryDto {
    /// Also the `X-Ferry-Delivery` header and the body's `id`, the same on every attempt.
    pub id: Uuid,
    pub webhook_id: Uuid,
    /// `job.completed`, `job.failed`, `job.seeding_finished` or `ping`.
    pub event: String,
    pub job_id: Option<Uuid>,
    pub attempts: u32,
    pub state: DeliveryStateDto,
    /// The HTTP status of the last attempt, when there was an answer.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<&Delivery> for DeliveryDto {
    fn from(d: &Delivery) -> Self {
        use ferry_domain::DeliveryState as S;
        let state = match d.state {
            S::Pending => DeliveryStateDto::Pending,
            S::Delivered => DeliveryStateDto::Delivered,
            S::Failed => DeliveryStateDto::Failed,
        };
        Self {
            id: d.id.as_uuid(),
            webhook_id: d.webhook.as_uuid(),
            event: d.event.as_str().to_owned(),
            job_id: d.job.map(|j| j.as_uuid()),
            attempts: d.attempts,
            state,
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            created_at: d.created_at,
            next_attempt_at: d.next_attempt_at.filter(|_| d.state == S::Pending),
            delivered_at: d.delivered_at,
        }
    }
}

#[derive(ApiResponse)]
pub enum Created {
    /// The webhook was saved; `secret` is shown this once.
    #[oai(status = 201)]
    Created(Json<WebhookWithSecret>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// The webhook and its delivery history were deleted.
    #[oai(status = 204)]
    Deleted,
}

#[derive(ApiResponse)]
pub enum Queued {
    /// A `ping` delivery was queued; follow it in the deliveries.
    #[oai(status = 202)]
    Queued(Json<DeliveryDto>),
}

fn parse_id(id: &str) -> Result<WebhookId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::new(ErrorCode::WebhookNotFound, "no such webhook"))
}

/// The document's URL limit, counted in characters as the document counts.
fn check_url(url: &str) -> Result<(), ApiError> {
    if url.chars().count() > MAX_WEBHOOK_URL_CHARS {
        return Err(ApiError::new(
            ErrorCode::InvalidWebhook,
            format!("the URL is longer than {MAX_WEBHOOK_URL_CHARS} characters"),
        ));
    }
    Ok(())
}

fn wire(events: Option<Vec<WebhookEventName>>) -> Option<Vec<String>> {
    events.map(|v| v.into_iter().map(WebhookEventName::wire).collect())
}

#[OpenApi(prefix_path = "/api/v1")]
impl WebhooksApi {
    /// Add a webhook. The URL is checked against the server's address policy (as URL jobs
    /// are); the answer holds the signing secret, shown only this once.
    #[oai(
        path = "/webhooks",
        method = "post",
        tag = "Tag::Webhooks",
        operation_id = "createWebhook"
    )]
    async fn create(
        &self,
        req: &poem::Request,
        caller: Caller,
        body: Json<NewWebhook>,
    ) -> Result<Created, Fails<CreateFails>> {
        let body = body.0;
        check_url(&body.url)?;
        let events = wire(body.events);
        let made = self
            .state
            .webhooks
            .create(
                caller.owner(),
                &body.url,
                events.as_deref(),
                body.enabled.unwrap_or(true),
            )
            .await?;
        caller
            .audit(
                &self.state,
                req,
                "webhook.create",
                made.webhook.id.to_string(),
            )
            .await;
        Ok(Created::Created(Json(WebhookWithSecret::of(made))))
    }

    /// The caller's webhooks.
    #[oai(
        path = "/webhooks",
        method = "get",
        tag = "Tag::Webhooks",
        operation_id = "listWebhooks"
    )]
    async fn list(&self, caller: Caller) -> Result<Json<Vec<WebhookDto>>, Fails<ListFails>> {
        let all = self.state.webhooks.list(caller.owner()).await?;
        Ok(Json(all.iter().map(WebhookDto::from).collect()))
    }

    /// One webhook.
    #[oai(
        path = "/webhooks/:id",
        method = "get",
        tag = "Tag::Webhooks",
        operation_id = "getWebhook"
    )]
    async fn get(
        &self,
        caller: Caller,
        #[oai(validator(max_length = 64))] id: Path<String>,
    ) -> Result<Json<WebhookDto>, Fails<ReadFails>> {
        let w = self
            .state
            .webhooks
            .get(caller.owner(), parse_id(&id)?)
            .await?;
        Ok(Json(WebhookDto::from(&w)))
    }

    /// Change a webhook's URL, events or whether it is enabled.
    #[oai(
        path = "/webhooks/:id",
        method = "patch",
        tag = "Tag::Webhooks",
        operation_id = "updateWebhook"
    )]
    async fn update(
        &self,
        req: &poem::Request,
        caller: Caller,
        #[oai(validator(max_length = 64))] id: Path<String>,
        body: Json<WebhookPatch>,
    ) -> Result<Json<WebhookDto>, Fails<UpdateFails>> {
        let id = parse_id(&id)?;
        let body = body.0;
        if let Some(url) = &body.url {
            check_url(url)?;
        }
        let change = WebhookChange {
            url: body.url,
            events: wire(body.events),
            enabled: body.enabled,
        };
        let w = self
            .state
            .webhooks
            .update(caller.owner(), id, change)
            .await?;
        caller
            .audit(&self.state, req, "webhook.update", id.to_string())
            .await;
        Ok(Json(WebhookDto::from(&w)))
    }

    /// Delete a webhook and its delivery history.
    #[oai(
        path = "/webhooks/:id",
        method = "delete",
        tag = "Tag::Webhooks",
        operation_id = "deleteWebhook"
    )]
    async fn delete(
        &self,
        req: &poem::Request,
        caller: Caller,
        #[oai(validator(max_length = 64))] id: Path<String>,
    ) -> Result<Deleted, Fails<ReadFails>> {
        let id = parse_id(&id)?;
        self.state.webhooks.delete(caller.owner(), id).await?;
        caller
            .audit(&self.state, req, "webhook.delete", id.to_string())
            .await;
        Ok(Deleted::Deleted)
    }

    /// Make a new signing secret (shown this once); the old one is not used again.
    #[oai(
        path = "/webhooks/:id/secret",
        method = "post",
        tag = "Tag::Webhooks",
        operation_id = "rotateWebhookSecret"
    )]
    async fn rotate(
        &self,
        req: &poem::Request,
        caller: Caller,
        #[oai(validator(max_length = 64))] id: Path<String>,
    ) -> Result<Json<WebhookWithSecret>, Fails<ReadFails>> {
        let id = parse_id(&id)?;
        let made = self
            .state
            .webhooks
            .rotate_secret(caller.owner(), id)
            .await?;
        caller
            .audit(&self.state, req, "webhook.secret", id.to_string())
            .await;
        Ok(Json(WebhookWithSecret::of(made)))
    }

    /// Queue a `ping` delivery (no job), to try the endpoint and its signature check. One
    /// per webhook per `webhooks.ping_interval` (10 s by default); a ping sooner is answered
    /// 429 `rate_limited` with `Retry-After`.
    #[oai(
        path = "/webhooks/:id/ping",
        method = "post",
        tag = "Tag::Webhooks",
        operation_id = "pingWebhook"
    )]
    async fn ping(
        &self,
        caller: Caller,
        #[oai(validator(max_length = 64))] id: Path<String>,
    ) -> Result<Queued, Fails<ReadFails>> {
        let d = self
            .state
            .webhooks
            .ping(caller.owner(), parse_id(&id)?)
            .await?;
        Ok(Queued::Queued(Json(DeliveryDto::from(&d))))
    }

    /// The webhook's deliveries, newest first. Page with `before` = the last `id` seen.
    #[oai(
        path = "/webhooks/:id/deliveries",
        method = "get",
        tag = "Tag::Webhooks",
        operation_id = "webhookDeliveries"
    )]
    async fn deliveries(
        &self,
        caller: Caller,
        #[oai(validator(max_length = 64))] id: Path<String>,
        /// At most this many (1 to 100, default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// Only deliveries older than this one.
        before: Query<Option<Uuid>>,
    ) -> Result<Json<Vec<DeliveryDto>>, Fails<ReadFails>> {
        let found = self
            .state
            .webhooks
            .deliveries(
                caller.owner(),
                parse_id(&id)?,
                before.0.map(ferry_domain::DeliveryId::from_uuid),
                limit.0.unwrap_or(20) as usize,
            )
            .await?;
        Ok(Json(found.iter().map(DeliveryDto::from).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let w = WebhookWithSecret {
            id: Uuid::nil(),
            url: "https://hooks.example.org/ferry".to_owned(),
            events: Vec::new(),
            enabled: true,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            secret: "whsec_0123456789abcdef".to_owned(),
        };
        let shown = format!("{w:?}");
        assert!(!shown.contains("whsec_0123"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }
}
