//! The dispatcher: claims due deliveries with a lease, signs and POSTs each, and writes the
//! outcome (delivered, retried after a backoff, or failed) before letting it go; every hour it
//! also deletes finished deliveries older than `keep`.
//!
//! Sends are a pipeline, not batches: up to `concurrency` are in flight, and a place that
//! frees is filled at once, so a slow endpoint holds up only its own send. One owner holds at
//! most `per_owner_concurrency` of those places, so a user whose endpoints never answer (each
//! attempt lasting the whole `timeout`) cannot keep other users' deliveries waiting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_domain::{DeliveryState, OwnerId, WebhookEvent};
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use super::{Webhooks, backoff, signature};
use crate::ports::{Attempt, ClaimLimits, Delivery, RepoError, TransportError, secret_context};

/// How often a dispatcher deletes deliveries past `keep`.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Why an attempt got no answer, and whether another attempt could do better.
enum Failure {
    Retry(String),
    Final(String),
}

impl Webhooks {
    /// Deletes finished deliveries older than `keep` (logged, never fatal).
    async fn prune(&self) {
        let keep = chrono::Duration::from_std(self.settings.keep).unwrap_or(chrono::Duration::MAX);
        let Some(before) = self.clock.now().checked_sub_signed(keep) else {
            return;
        };
        match self.repo.prune(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deliveries = n, "deleted old webhook deliveries"),
            Err(e) => tracing::warn!(error = %e, "could not delete old webhook deliveries"),
        }
    }

    /// How long a claim holds a delivery: well past an attempt's timeout.
    fn lease(&self) -> Duration {
        self.settings.timeout * 2 + Duration::from_secs(10)
    }

    /// Claims what is due now, within the places left beside the sends in flight (`held`
    /// of them per owner).
    async fn claim(
        &self,
        room: usize,
        held: &HashMap<OwnerId, usize>,
    ) -> Result<Vec<Delivery>, RepoError> {
        let limits = ClaimLimits {
            total: room,
            per_owner: self.settings.per_owner_concurrency.max(1),
            held,
        };
        self.repo
            .claim_due(self.clock.now(), self.lease(), limits)
            .await
    }

    /// Claims the deliveries due now (as many as one dispatcher sends at once, within the
    /// per-owner share) and makes one attempt of each, concurrently; returns how many were
    /// claimed.
    ///
    /// # Errors
    /// When the repository fails to claim.
    pub async fn dispatch_due(&self) -> Result<usize, RepoError> {
        let claimed = self
            .claim(self.settings.concurrency.max(1), &HashMap::new())
            .await?;
        let n = claimed.len();
        futures::future::join_all(claimed.into_iter().map(|d| self.attempt(d))).await;
        Ok(n)
    }

    /// One attempt of a claimed delivery, its outcome written before it is let go.
    async fn attempt(&self, delivery: Delivery) {
        let outcome = self.send(&delivery).await;
        let at = self.clock.now();
        let attempts = delivery.attempts + 1;
        // A delivery that can never be sent (its webhook disabled or gone, its secret
        // unreadable) fails at once; anything the endpoint did is retried.
        let (status, error, last) = match outcome {
            Ok(status) if (200..300).contains(&status) => (Some(status), None, false),
            Ok(status) => (
                Some(status),
                Some(format!("the endpoint answered HTTP {status}")),
                false,
            ),
            Err(Failure::Retry(e)) => (None, Some(e), false),
            Err(Failure::Final(e)) => (None, Some(e), true),
        };
        let attempt = if error.is_none() {
            Attempt {
                at,
                status,
                error,
                state: DeliveryState::Delivered,
                next_attempt_at: None,
            }
        } else if last || attempts >= self.settings.max_attempts {
            Attempt {
                at,
                status,
                error,
                state: DeliveryState::Failed,
                next_attempt_at: None,
            }
        } else {
            let wait = backoff(self.settings.retry_base, attempts, rand::random::<f64>());
            Attempt {
                at,
                status,
                error,
                state: DeliveryState::Pending,
                next_attempt_at: Some(at + chrono::Duration::from_std(wait).unwrap_or_default()),
            }
        };
        match self
            .repo
            .record(delivery.id, delivery.claim, &attempt)
            .await
        {
            Ok(true) => tracing::info!(
                delivery_id = %delivery.id,
                webhook_id = %delivery.webhook,
                event = %delivery.event,
                attempts,
                status = ?attempt.status,
                state = attempt.state.as_str(),
                error = attempt.error.as_deref().unwrap_or(""),
                "webhook delivery attempted"
            ),
            Ok(false) => {
                tracing::info!(delivery_id = %delivery.id, "webhook delivery was claimed again meanwhile; outcome dropped")
            }
            Err(e) => {
                tracing::warn!(delivery_id = %delivery.id, error = %e, "could not record a webhook attempt; it is retried after its lease")
            }
        }
    }

    /// Signs and POSTs the delivery: the status, or why there is none.
    async fn send(&self, delivery: &Delivery) -> Result<u16, Failure> {
        let sealed = match self.repo.webhook(delivery.webhook).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(Failure::Final("the webhook was deleted".to_owned())),
            Err(e) => return Err(Failure::Retry(format!("the database failed: {e}"))),
        };
        let secret = self
            .secrets
            .open(&sealed.secret, &secret_context(&sealed.webhook))
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                Failure::Final(
                    "the signing secret cannot be opened (the server key changed)".to_owned(),
                )
            })?;
        if !sealed.webhook.enabled && delivery.event != WebhookEvent::Ping {
            return Err(Failure::Final("the webhook is disabled".to_owned()));
        }
        let t = self.clock.now().timestamp();
        let headers = [
            ("content-type", "application/json".to_owned()),
            ("x-ferry-event", delivery.event.as_str().to_owned()),
            ("x-ferry-delivery", delivery.id.to_string()),
            (
                "x-ferry-signature",
                signature(&secret, t, delivery.body.as_bytes()),
            ),
        ];
        self.transport
            .post(
                &sealed.webhook.url,
                &headers,
                delivery.body.as_bytes(),
                self.settings.timeout,
            )
            .await
            .map_err(|e| {
                Failure::Retry(match e {
                    TransportError::NotAllowed(why) => {
                        format!("the endpoint's address may not be reached: {why}")
                    }
                    other => other.to_string(),
                })
            })
    }

    /// The dispatcher: sends due deliveries until `stop`, claiming more whenever a send
    /// ends, every `poll`, and whenever a delivery is recorded in this process. Deliveries in
    /// hand when `stop` fires are finished (an attempt is bounded by `timeout`).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut sending: JoinSet<()> = JoinSet::new();
        // Whose delivery each send is, and how many each owner has in flight.
        let mut owners: HashMap<Id, OwnerId> = HashMap::new();
        let mut held: HashMap<OwnerId, usize> = HashMap::new();
        let mut pruned_at: Option<tokio::time::Instant> = None;
        loop {
            if pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                pruned_at = Some(tokio::time::Instant::now());
                self.prune().await;
            }
            let room = self
                .settings
                .concurrency
                .max(1)
                .saturating_sub(sending.len());
            if room > 0 {
                match self.claim(room, &held).await {
                    Ok(claimed) => {
                        for delivery in claimed {
                            *held.entry(delivery.owner.clone()).or_default() += 1;
                            let owner = delivery.owner.clone();
                            let me = self.clone();
                            let task = sending.spawn(async move { me.attempt(delivery).await });
                            owners.insert(task.id(), owner);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not claim webhook deliveries"),
                }
            }
            tokio::select! {
                () = stop.cancelled() => break,
                Some(done) = sending.join_next_with_id(), if !sending.is_empty() => {
                    release(&mut owners, &mut held, done);
                }
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.settings.poll) => {}
            }
        }
        while let Some(done) = sending.join_next_with_id().await {
            release(&mut owners, &mut held, done);
        }
    }
}

/// A send ended (or its task died): its owner's place is free again.
fn release(
    owners: &mut HashMap<Id, OwnerId>,
    held: &mut HashMap<OwnerId, usize>,
    done: Result<(Id, ()), tokio::task::JoinError>,
) {
    let id = match done {
        Ok((id, ())) => id,
        Err(e) => {
            tracing::error!(error = %e, "a webhook send ended abnormally; its delivery is retried after its lease");
            e.id()
        }
    };
    if let Some(owner) = owners.remove(&id)
        && let Some(n) = held.get_mut(&owner)
    {
        *n = n.saturating_sub(1);
        if *n == 0 {
            held.remove(&owner);
        }
    }
}
