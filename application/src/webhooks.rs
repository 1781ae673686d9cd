//! Webhooks: users' endpoints told when their jobs complete, fail or finish seeding.
//!
//! `Lifecycle` calls [`WebhookNotices`] right after each status change it writes has
//! committed, with the transition (`from`, `to`); it records one pending delivery per
//! subscribed webhook in the database (the outbox), in its own statement, not in the status
//! change's transaction: a crash (or a database failure) in the instant between the two loses
//! that change's notices. From the moment a delivery is written it is sent at least once. The dispatcher ([`Webhooks::run`], in
//! every API process) claims due deliveries with a lease, signs and POSTs them through the
//! fetch policy's guard, and writes each attempt's outcome before letting go; a failed
//! attempt is retried with exponential backoff and jitter until `max_attempts`.
//!
//! Signature: `X-Ferry-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
//! keyed by the secret exactly as shown (`whsec_…`), `t` the time of the attempt.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_domain::{
    DeliveryId, DeliveryState, FetchUrl, Job, JobId, JobStatus, OwnerId, Webhook, WebhookError,
    WebhookEvent, WebhookId,
};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tokio::sync::Notify;

use crate::ports::{
    Clock, Delivery, JobNotices, RateDecision, RateLimit, RateLimiter, RepoError, SealedWebhook,
    SecretBox, TransportError, WebhookRepository, WebhookTransport, secret_context,
};

mod dispatch;

/// Longest wait between two attempts, whatever the base and the attempt.
pub const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// Most deliveries one page of the history shows.
pub const MAX_DELIVERIES_PAGE: usize = 100;
/// How far a receiver's clock may be from `t` before it should refuse (documented).
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

/// Deliveries of a job, as the API shows the job: rendered by the wiring (the API's DTO).
pub type JobRenderer = Arc<dyn Fn(&Job) -> serde_json::Value + Send + Sync>;

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Webhooks one user may have.
    pub max_per_user: usize,
    /// The wait after the first failed attempt; it doubles with each further one.
    pub retry_base: Duration,
    /// Attempts before a delivery is given up (`failed`).
    pub max_attempts: u32,
    /// How long an attempt may take.
    pub timeout: Duration,
    /// How often an idle dispatcher looks for due deliveries.
    pub poll: Duration,
    /// How long delivered and failed deliveries are kept in the history.
    pub keep: Duration,
    /// Most attempts one dispatcher has in flight at once.
    pub concurrency: usize,
    /// Most of those one owner's deliveries may take.
    pub per_owner_concurrency: usize,
    /// The shortest time between two pings of one webhook.
    pub ping_interval: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            max_per_user: 20,
            retry_base: Duration::from_secs(30),
            max_attempts: 8,
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            keep: Duration::from_secs(30 * 86_400),
            concurrency: 16,
            per_owner_concurrency: 4,
            ping_interval: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhooksError {
    #[error(transparent)]
    Invalid(#[from] WebhookError),
    /// The endpoint is, or resolves to, an address webhooks may not reach.
    #[error("the webhook URL is, or resolves to, an address that may not be reached: {0}")]
    NotAllowed(String),
    #[error("no such webhook")]
    NotFound,
    #[error("you have {0} webhooks, the most allowed; delete one first")]
    TooMany(usize),
    /// The webhook was pinged less than `ping_interval` ago.
    #[error("this webhook was pinged moments ago; try again in {} s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<RepoError> for WebhooksError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::NotFound => Self::NotFound,
            RepoError::Unavailable(m) => Self::Unavailable(m),
            other => Self::Unexpected(other.into()),
        }
    }
}

/// A change to a webhook: what is `Some` changes.
#[derive(Debug, Clone, Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// A webhook and its signing secret, shown once (never in `Debug`).
#[derive(Clone)]
pub struct WithSecret {
    pub webhook: Webhook,
    pub secret: String,
}

impl std::fmt::Debug for WithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithSecret")
            .field("webhook", &self.webhook)
            .field("secret", &"***")
            .finish()
    }
}

/// `X-Ferry-Signature` of `body` signed with `secret` at `t` (unix seconds).
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is a valid `X-Ferry-Signature` of `body` with `secret`, made within
/// [`SIGNATURE_TOLERANCE_SECS`] of `now` (unix seconds); the comparison is constant-time.
/// What receivers should do, as a reference.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now - t).abs() > SIGNATURE_TOLERANCE_SECS {
        return false;
    }
    v1.iter().any(|sig| {
        let mut mac = mac(secret);
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(sig).is_ok()
    })
}

fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length: this never falls back.
    Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()))
}

/// The wait before the attempt after `failed` failed attempts: `base · 2^(failed−1)`, at
/// most [`MAX_BACKOFF`], stretched by `jitter` (0 to 1) by up to a quarter, so waits grow
/// strictly and receivers are not hit by every dispatcher at once.
pub fn backoff(base: Duration, failed: u32, jitter: f64) -> Duration {
    let doubled = base.saturating_mul(1u32 << failed.saturating_sub(1).min(20));
    doubled
        .min(MAX_BACKOFF)
        .mul_f64(1.0 + 0.25 * jitter.clamp(0.0, 1.0))
}

/// A new signing secret: 32 random bytes, `whsec_` and 64 hex digits.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}

/// The body of a delivery: what is signed, the same on every attempt.
fn body(
    id: DeliveryId,
    event: WebhookEvent,
    at: DateTime<Utc>,
    job: Option<serde_json::Value>,
) -> String {
    let mut body = serde_json::json!({
        "id": id.to_string(),
        "event": event.as_str(),
        "created_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    if let Some(job) = job {
        body["job"] = job;
    }
    body.to_string()
}

pub(crate) fn pending(
    webhook: WebhookId,
    owner: &OwnerId,
    event: WebhookEvent,
    job: Option<(JobId, serde_json::Value)>,
    at: DateTime<Utc>,
) -> Delivery {
    let id = DeliveryId::new();
    let (job_id, snapshot) = match job {
        Some((id, value)) => (Some(id), Some(value)),
        None => (None, None),
    };
    Delivery {
        id,
        webhook,
        owner: owner.clone(),
        event,
        job: job_id,
        body: body(id, event, at, snapshot),
        attempts: 0,
        state: DeliveryState::Pending,
        last_status: None,
        last_error: None,
        created_at: at,
        next_attempt_at: Some(at),
        delivered_at: None,
        claim: 0,
    }
}

/// The outbox side: records deliveries for a job's status change.
pub struct WebhookNotices {
    pub repo: Arc<dyn WebhookRepository>,
    pub clock: Arc<dyn Clock>,
    pub render: JobRenderer,
    /// Woken when deliveries are recorded, so an in-process dispatcher sends them at once.
    pub wake: Arc<Notify>,
}

impl WebhookNotices {
    /// Records one delivery of `event` about `job` per subscribed webhook of its owner.
    ///
    /// # Errors
    /// When the repository fails.
    pub async fn record(&self, job: &Job, event: WebhookEvent) -> Result<usize, RepoError> {
        let hooks = self.repo.subscribers(&job.owner, event).await?;
        if hooks.is_empty() {
            return Ok(0);
        }
        let at = self.clock.now();
        let snapshot = (self.render)(job);
        let deliveries: Vec<Delivery> = hooks
            .into_iter()
            .map(|hook| {
                pending(
                    hook,
                    &job.owner,
                    event,
                    Some((job.id, snapshot.clone())),
                    at,
                )
            })
            .collect();
        let added = self.repo.enqueue(&deliveries).await?;
        if added > 0 {
            self.wake.notify_one();
        }
        Ok(added)
    }
}

#[async_trait::async_trait]
impl JobNotices for WebhookNotices {
    async fn job_moved(&self, job: &Job, from: JobStatus, to: JobStatus) {
        // The transition written, not `job.status`: the job may have moved on since (a
        // retry right after a failure), and the failure must still be told.
        let Some(event) = WebhookEvent::of_transition(from, to) else {
            return;
        };
        if let Err(e) = self.record(job, event).await {
            tracing::warn!(job_id = %job.id, %event, error = %e, "could not record webhook deliveries");
        }
    }
}

/// The webhook use cases and the dispatcher.
pub struct Webhooks {
    pub repo: Arc<dyn WebhookRepository>,
    pub transport: Arc<dyn WebhookTransport>,
    pub secrets: Arc<dyn SecretBox>,
    pub clock: Arc<dyn Clock>,
    pub settings: WebhookSettings,
    /// Shared with [`WebhookNotices`]: wakes the dispatcher.
    pub wake: Arc<Notify>,
    /// Spaces pings out (one per webhook per `ping_interval`, across API processes).
    pub limiter: Arc<dyn RateLimiter>,
}

impl Webhooks {
    /// Refuses an endpoint the fetch policy does not let webhooks reach. A name that does
    /// not resolve now is accepted: every attempt is checked again when it connects.
    async fn check(&self, url: &FetchUrl) -> Result<(), WebhooksError> {
        match self.transport.check(url).await {
            Ok(()) | Err(TransportError::Unreachable(_) | TransportError::Timeout(_)) => Ok(()),
            Err(TransportError::NotAllowed(why)) => {
                tracing::info!(reason = %why, "webhook endpoint refused");
                Err(WebhooksError::NotAllowed(why))
            }
        }
    }

    fn seal(&self, webhook: &Webhook, secret: &str) -> Vec<u8> {
        self.secrets
            .seal(secret.as_bytes(), &secret_context(webhook))
    }

    /// Adds a webhook (subscribed to every event when `events` is `None`) with a new
    /// signing secret, returned this once.
    ///
    /// # Errors
    /// `Invalid`, `NotAllowed`, `TooMany`.
    pub async fn create(
        &self,
        owner: &OwnerId,
        url: &str,
        events: Option<&[String]>,
        enabled: bool,
    ) -> Result<WithSecret, WebhooksError> {
        let url = ferry_domain::webhook::parse_endpoint(url)?;
        let events = match events {
            Some(names) => ferry_domain::webhook::parse_events(names)?,
            None => WebhookEvent::SUBSCRIBABLE.to_vec(),
        };
        // Counted here to refuse early (before the address check); the insert counts
        // again, atomically, so concurrent creations cannot pass the limit together.
        let max = self.settings.max_per_user;
        if self.repo.list(owner).await?.len() >= max {
            return Err(WebhooksError::TooMany(max));
        }
        self.check(&url).await?;
        let webhook = Webhook {
            id: WebhookId::new(),
            owner: owner.clone(),
            url,
            events,
            enabled,
            created_at: self.clock.now(),
        };
        let secret = new_secret();
        let sealed = SealedWebhook {
            secret: self.seal(&webhook, &secret),
            webhook: webhook.clone(),
        };
        if !self.repo.insert(&sealed, max).await? {
            return Err(WebhooksError::TooMany(max));
        }
        tracing::info!(webhook_id = %webhook.id, "webhook created");
        Ok(WithSecret { webhook, secret })
    }

    /// # Errors
    /// `Unavailable`.
    pub async fn list(&self, owner: &OwnerId) -> Result<Vec<Webhook>, WebhooksError> {
        Ok(self.repo.list(owner).await?)
    }

    /// # Errors
    /// `NotFound`.
    pub async fn get(&self, owner: &OwnerId, id: WebhookId) -> Result<Webhook, WebhooksError> {
        self.repo
            .get(owner, id)
            .await?
            .map(|s| s.webhook)
            .ok_or(WebhooksError::NotFound)
    }

    /// # Errors
    /// `NotFound`, `Invalid`, `NotAllowed`.
    pub async fn update(
        &self,
        owner: &OwnerId,
        id: WebhookId,
        change: WebhookChange,
    ) -> Result<Webhook, WebhooksError> {
        let mut webhook = self.get(owner, id).await?;
        if let Some(url) = &change.url {
            let url = ferry_domain::webhook::parse_endpoint(url)?;
            self.check(&url).await?;
            webhook.url = url;
        }
        if let Some(names) = &change.events {
            webhook.events = ferry_domain::webhook::parse_events(names)?;
        }
        if let Some(enabled) = change.enabled {
            webhook.enabled = enabled;
        }
        self.repo.update(&webhook, None).await?;
        Ok(webhook)
    }

    /// Deletes a webhook and its delivery history (pending deliveries are not sent).
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn delete(&self, owner: &OwnerId, id: WebhookId) -> Result<(), WebhooksError> {
        Ok(self.repo.delete(owner, id).await?)
    }

    /// A new signing secret (returned this once); the old one stops being used at once,
    /// also for retries of earlier deliveries.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn rotate_secret(
        &self,
        owner: &OwnerId,
        id: WebhookId,
    ) -> Result<WithSecret, WebhooksError> {
        let webhook = self.get(owner, id).await?;
        let secret = new_secret();
        self.repo
            .update(&webhook, Some(&self.seal(&webhook, &secret)))
            .await?;
        Ok(WithSecret { webhook, secret })
    }

    /// Queues a `ping` delivery to the webhook (even a disabled one), at most one per
    /// `ping_interval`: pings are the one delivery a caller can ask for at will, and must
    /// not make Ferry hammer an endpoint.
    ///
    /// # Errors
    /// `NotFound`, `RateLimited`.
    pub async fn ping(&self, owner: &OwnerId, id: WebhookId) -> Result<Delivery, WebhooksError> {
        // Ownership first: another user's (or a made-up) id spends no webhook's budget.
        let webhook = self.get(owner, id).await?;
        let limit = RateLimit {
            burst: 1,
            period: self.settings.ping_interval,
        };
        if let RateDecision::Limited { retry_after } = self
            .limiter
            .check(&format!("webhook-ping:{}", webhook.id), limit)
            .await
        {
            return Err(WebhooksError::RateLimited { retry_after });
        }
        let delivery = pending(
            webhook.id,
            owner,
            WebhookEvent::Ping,
            None,
            self.clock.now(),
        );
        if self.repo.enqueue(std::slice::from_ref(&delivery)).await? == 0 {
            // Deleted since it was read.
            return Err(WebhooksError::NotFound);
        }
        self.wake.notify_one();
        Ok(delivery)
    }

    /// The webhook's deliveries, newest first (at most [`MAX_DELIVERIES_PAGE`]).
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn deliveries(
        &self,
        owner: &OwnerId,
        id: WebhookId,
        before: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<Delivery>, WebhooksError> {
        self.get(owner, id).await?;
        Ok(self
            .repo
            .deliveries(owner, id, before, limit.clamp(1, MAX_DELIVERIES_PAGE))
            .await?)
    }
}
