//! Webhooks: users' endpoints with their sealed signing secrets, the outbox of deliveries
//! (claimed with a lease, so several dispatchers never send one delivery at once), the
//! transport that POSTs a signed body, and the hook `Lifecycle` calls after a status change.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_domain::{
    DeliveryId, DeliveryState, FetchUrl, Job, JobId, JobStatus, OwnerId, Webhook, WebhookEvent,
    WebhookId,
};

use super::RepoError;

/// A webhook as stored: its signing secret sealed by a [`super::SecretBox`] (bound to
/// [`secret_context`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedWebhook {
    pub webhook: Webhook,
    pub secret: Vec<u8>,
}

/// What a webhook's secret is sealed to: it opens only for the same webhook and owner.
pub fn secret_context(webhook: &Webhook) -> Vec<u8> {
    format!(
        "ferry webhook secret\0{}\0{}",
        webhook.id,
        webhook.owner.as_str()
    )
    .into_bytes()
}

/// One event for one webhook, with every attempt's outcome so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub webhook: WebhookId,
    pub owner: OwnerId,
    pub event: WebhookEvent,
    /// The job it is about (`None`: a ping).
    pub job: Option<JobId>,
    /// The exact body sent (and signed) on every attempt.
    pub body: String,
    pub attempts: u32,
    pub state: DeliveryState,
    /// The HTTP status of the last attempt, if one was received.
    pub last_status: Option<u16>,
    /// Why the last attempt failed, in one sentence.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it is due (pending only; while claimed: when the claim's lease ends).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// Which claim holds it: a claim's outcome is written only while this is unchanged.
    pub claim: i64,
}

/// The outcome of one attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// `Pending` (with `next_attempt_at`) to retry, `Delivered` or `Failed` to end.
    pub state: DeliveryState,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// How much one `claim_due` may take: at most `total`, and of one owner no more than
/// `per_owner` less what the claimer already holds of that owner (`held`), so one owner's
/// slow endpoints never take every place a dispatcher has.
#[derive(Debug, Clone, Copy)]
pub struct ClaimLimits<'a> {
    pub total: usize,
    pub per_owner: usize,
    pub held: &'a HashMap<OwnerId, usize>,
}

impl ClaimLimits<'_> {
    /// How many more of `owner`'s deliveries may be claimed, `taken` being those this claim
    /// already took.
    pub fn room(&self, owner: &OwnerId, taken: usize) -> usize {
        let held = self.held.get(owner).copied().unwrap_or(0);
        self.per_owner.saturating_sub(held + taken)
    }
}

#[async_trait]
pub trait WebhookRepository: Send + Sync + 'static {
    /// Adds the webhook unless its owner already has `max_per_owner`; the count and the
    /// insert are one atomic step, so concurrent inserts (from any process) never take an
    /// owner past it. Returns `false`, adding nothing, when the owner is at the limit.
    ///
    /// # Errors
    /// `AlreadyExists` if the id is taken.
    async fn insert(
        &self,
        webhook: &SealedWebhook,
        max_per_owner: usize,
    ) -> Result<bool, RepoError>;

    /// The owner's webhook, if it exists.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn get(&self, owner: &OwnerId, id: WebhookId)
    -> Result<Option<SealedWebhook>, RepoError>;

    /// The owner's webhooks, oldest first.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn list(&self, owner: &OwnerId) -> Result<Vec<Webhook>, RepoError>;

    /// Replaces the owner's webhook's URL, events and enabled flag (and, with `secret`, its
    /// sealed secret).
    ///
    /// # Errors
    /// `NotFound` when the owner has no such webhook.
    async fn update(&self, webhook: &Webhook, secret: Option<&[u8]>) -> Result<(), RepoError>;

    /// Deletes the webhook and its deliveries.
    ///
    /// # Errors
    /// `NotFound` when the owner has no such webhook.
    async fn delete(&self, owner: &OwnerId, id: WebhookId) -> Result<(), RepoError>;

    /// The owner's enabled webhooks subscribed to `event` (one query; none is cheap).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn subscribers(
        &self,
        owner: &OwnerId,
        event: WebhookEvent,
    ) -> Result<Vec<WebhookId>, RepoError>;

    /// Adds pending deliveries (due at their `next_attempt_at`). A delivery for a webhook
    /// that does not exist (deleted since `subscribers` named it) is skipped, never the
    /// others with it. Returns how many were added.
    ///
    /// # Errors
    /// `AlreadyExists` for a taken id (then none is added).
    async fn enqueue(&self, deliveries: &[Delivery]) -> Result<usize, RepoError>;

    /// Claims pending deliveries due at `now`, oldest due first, within `limits` (an owner
    /// with no room left is passed over, and the next owners' deliveries are claimed
    /// instead): each one's `next_attempt_at` becomes `now + lease` and its `claim`
    /// changes, by a conditional update, so two claimers never hold the same delivery; one
    /// whose claimer died is due again when its lease ends. Returns them as claimed.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limits: ClaimLimits<'_>,
    ) -> Result<Vec<Delivery>, RepoError>;

    /// Records an attempt of a claimed delivery (attempts + 1) if `claim` still holds it.
    /// Returns `false` (and changes nothing) when it does not.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn record(
        &self,
        id: DeliveryId,
        claim: i64,
        attempt: &Attempt,
    ) -> Result<bool, RepoError>;

    /// Every owner's webhooks with their sealed secrets, oldest first (for re-sealing them
    /// under a new key).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn all_sealed(&self) -> Result<Vec<SealedWebhook>, RepoError>;

    /// Replaces webhook `id`'s sealed secret with `sealed` if it is still `expected`.
    /// Returns `false` (and changes nothing) when it changed meanwhile or the webhook is gone.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn replace_secret(
        &self,
        id: WebhookId,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool, RepoError>;

    /// The webhook a delivery goes to, whoever owns it (for the dispatcher).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn webhook(&self, id: WebhookId) -> Result<Option<SealedWebhook>, RepoError>;

    /// Deletes delivered and failed deliveries made before `before` (pending ones stay).
    /// Returns how many went.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, RepoError>;

    /// The owner's webhook's deliveries, newest first, older than `before` when given, at
    /// most `limit`.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn deliveries(
        &self,
        owner: &OwnerId,
        webhook: WebhookId,
        before: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<Delivery>, RepoError>;
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The endpoint is, or resolves to, an address webhooks may not reach (the fetch policy).
    #[error("{0}")]
    NotAllowed(String),
    /// No answer: refused, reset, name unknown, TLS failure.
    #[error("{0}")]
    Unreachable(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// POSTs webhook bodies, through the same address guard and proxy as URL jobs.
#[async_trait]
pub trait WebhookTransport: Send + Sync + 'static {
    /// Whether `url`'s host is, or resolves to, an address that may be reached, without
    /// connecting to it.
    ///
    /// # Errors
    /// `NotAllowed`; `Unreachable` when the name does not resolve now.
    async fn check(&self, url: &FetchUrl) -> Result<(), TransportError>;

    /// POSTs `body` (JSON) with `headers` to `url`, following no redirect, and returns the
    /// answer's status (the body is not read past a few KiB).
    ///
    /// # Errors
    /// `NotAllowed`, `Unreachable`, `Timeout` (past `timeout`).
    async fn post(
        &self,
        url: &FetchUrl,
        headers: &[(&'static str, String)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<u16, TransportError>;
}

/// Told about every status change `Lifecycle` makes, after it is written. Must not fail the
/// change: an implementation logs what it could not do.
#[async_trait]
pub trait JobNotices: Send + Sync + 'static {
    /// The job moved `from → to` (the transition written, whatever moved it since: `job` is
    /// as it was read back, and its `status` may already be a later one).
    async fn job_moved(&self, job: &Job, from: JobStatus, to: JobStatus);
}
