//! Webhooks in memory, and a transport that records what it was asked to send and answers
//! with statuses the test queues.

use ferry_domain::{DeliveryId, DeliveryState, FetchUrl, Webhook, WebhookEvent, WebhookId};

use super::*;

#[derive(Default)]
pub struct MemoryWebhooks {
    state: Mutex<(Vec<SealedWebhook>, Vec<Delivery>)>,
}

#[async_trait]
impl WebhookRepository for MemoryWebhooks {
    async fn insert(
        &self,
        webhook: &SealedWebhook,
        max_per_owner: usize,
    ) -> Result<bool, RepoError> {
        let mut s = lock(&self.state);
        if s.0.iter().any(|w| w.webhook.id == webhook.webhook.id) {
            return Err(RepoError::AlreadyExists);
        }
        let owned =
            s.0.iter()
                .filter(|w| w.webhook.owner == webhook.webhook.owner)
                .count();
        if owned >= max_per_owner {
            return Ok(false);
        }
        s.0.push(webhook.clone());
        Ok(true)
    }

    async fn get(
        &self,
        owner: &OwnerId,
        id: WebhookId,
    ) -> Result<Option<SealedWebhook>, RepoError> {
        Ok(lock(&self.state)
            .0
            .iter()
            .find(|w| w.webhook.id == id && &w.webhook.owner == owner)
            .cloned())
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<Webhook>, RepoError> {
        Ok(lock(&self.state)
            .0
            .iter()
            .filter(|w| &w.webhook.owner == owner)
            .map(|w| w.webhook.clone())
            .collect())
    }

    async fn update(&self, webhook: &Webhook, secret: Option<&[u8]>) -> Result<(), RepoError> {
        let mut s = lock(&self.state);
        let found =
            s.0.iter_mut()
                .find(|w| w.webhook.id == webhook.id && w.webhook.owner == webhook.owner)
                .ok_or(RepoError::NotFound)?;
        found.webhook.url = webhook.url.clone();
        found.webhook.events = webhook.events.clone();
        found.webhook.enabled = webhook.enabled;
        if let Some(secret) = secret {
            found.secret = secret.to_vec();
        }
        Ok(())
    }

    async fn delete(&self, owner: &OwnerId, id: WebhookId) -> Result<(), RepoError> {
        let mut s = lock(&self.state);
        let before = s.0.len();
        s.0.retain(|w| !(w.webhook.id == id && &w.webhook.owner == owner));
        if s.0.len() == before {
            return Err(RepoError::NotFound);
        }
        s.1.retain(|d| d.webhook != id);
        Ok(())
    }

    async fn subscribers(
        &self,
        owner: &OwnerId,
        event: WebhookEvent,
    ) -> Result<Vec<WebhookId>, RepoError> {
        Ok(lock(&self.state)
            .0
            .iter()
            .filter(|w| &w.webhook.owner == owner && w.webhook.wants(event))
            .map(|w| w.webhook.id)
            .collect())
    }

    async fn enqueue(&self, deliveries: &[Delivery]) -> Result<usize, RepoError> {
        let mut s = lock(&self.state);
        if deliveries.iter().any(|d| s.1.iter().any(|x| x.id == d.id)) {
            return Err(RepoError::AlreadyExists);
        }
        // A webhook deleted meanwhile: its delivery is skipped, the others are added.
        let added: Vec<Delivery> = deliveries
            .iter()
            .filter(|d| s.0.iter().any(|w| w.webhook.id == d.webhook))
            .cloned()
            .collect();
        let n = added.len();
        s.1.extend(added);
        Ok(n)
    }

    async fn all_sealed(&self) -> Result<Vec<SealedWebhook>, RepoError> {
        let mut all = lock(&self.state).0.clone();
        all.sort_by_key(|w| w.webhook.id);
        Ok(all)
    }

    async fn replace_secret(
        &self,
        id: WebhookId,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool, RepoError> {
        let mut s = lock(&self.state);
        match s
            .0
            .iter_mut()
            .find(|w| w.webhook.id == id && w.secret == expected)
        {
            Some(w) => {
                w.secret = sealed.to_vec();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limits: ClaimLimits<'_>,
    ) -> Result<Vec<Delivery>, RepoError> {
        let mut s = lock(&self.state);
        let mut due: Vec<&mut Delivery> =
            s.1.iter_mut()
                .filter(|d| {
                    d.state == DeliveryState::Pending && d.next_attempt_at.is_some_and(|t| t <= now)
                })
                .collect();
        due.sort_by_key(|d| (d.next_attempt_at, d.id));
        let lease = chrono::Duration::from_std(lease).unwrap_or_default();
        let mut taken: HashMap<OwnerId, usize> = HashMap::new();
        let mut claimed = Vec::new();
        for d in due {
            if claimed.len() >= limits.total {
                break;
            }
            let of_owner = taken.entry(d.owner.clone()).or_default();
            if limits.room(&d.owner, *of_owner) == 0 {
                continue;
            }
            *of_owner += 1;
            d.next_attempt_at = Some(now + lease);
            d.claim += 1;
            claimed.push(d.clone());
        }
        Ok(claimed)
    }

    async fn record(
        &self,
        id: DeliveryId,
        claim: i64,
        attempt: &Attempt,
    ) -> Result<bool, RepoError> {
        let mut s = lock(&self.state);
        let Some(d) =
            s.1.iter_mut()
                .find(|d| d.id == id && d.claim == claim && d.state == DeliveryState::Pending)
        else {
            return Ok(false);
        };
        d.attempts += 1;
        d.last_status = attempt.status;
        d.last_error = attempt.error.clone();
        d.state = attempt.state;
        d.next_attempt_at = attempt.next_attempt_at;
        if attempt.state == DeliveryState::Delivered {
            d.delivered_at = Some(attempt.at);
        }
        Ok(true)
    }

    async fn webhook(&self, id: WebhookId) -> Result<Option<SealedWebhook>, RepoError> {
        Ok(lock(&self.state)
            .0
            .iter()
            .find(|w| w.webhook.id == id)
            .cloned())
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        let mut s = lock(&self.state);
        let n = s.1.len();
        s.1.retain(|d| d.state == DeliveryState::Pending || d.created_at >= before);
        Ok((n - s.1.len()) as u64)
    }

    async fn deliveries(
        &self,
        owner: &OwnerId,
        webhook: WebhookId,
        before: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<Delivery>, RepoError> {
        let s = lock(&self.state);
        let mut found: Vec<Delivery> =
            s.1.iter()
                .filter(|d| d.webhook == webhook && &d.owner == owner)
                .filter(|d| before.is_none_or(|b| d.id < b))
                .cloned()
                .collect();
        found.sort_by_key(|d| std::cmp::Reverse(d.id));
        found.truncate(limit);
        Ok(found)
    }
}

/// One request the fake transport was asked to send.
#[derive(Debug, Clone)]
pub struct SentRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SentRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Refuses hosts under 10.0.0.0/8 and `internal.test`; answers the queued statuses, then 200;
/// a tarpit host (`never_answer`) takes every request and answers none (the attempt's
/// timeout ends it).
#[derive(Default)]
pub struct FakeTransport {
    answers: Mutex<VecDeque<u16>>,
    sent: Mutex<Vec<SentRequest>>,
    tarpits: Mutex<Vec<String>>,
}

impl FakeTransport {
    /// The next posts answer these statuses, in order.
    pub fn answer(&self, statuses: &[u16]) {
        lock(&self.answers).extend(statuses.iter().copied());
    }

    /// Requests to `host` are taken (and recorded) but never answered: each one lasts its
    /// whole timeout, then fails with `Timeout`.
    pub fn never_answer(&self, host: &str) {
        lock(&self.tarpits).push(host.to_owned());
    }

    pub fn sent(&self) -> Vec<SentRequest> {
        lock(&self.sent).clone()
    }

    fn refused(url: &FetchUrl) -> Option<String> {
        let host = url.as_url().host_str().unwrap_or_default();
        (host.starts_with("10.") || host == "internal.test")
            .then(|| format!("{host} is a private address"))
    }
}

#[async_trait]
impl WebhookTransport for FakeTransport {
    async fn check(&self, url: &FetchUrl) -> Result<(), TransportError> {
        match Self::refused(url) {
            Some(why) => Err(TransportError::NotAllowed(why)),
            None => Ok(()),
        }
    }

    async fn post(
        &self,
        url: &FetchUrl,
        headers: &[(&'static str, String)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<u16, TransportError> {
        if let Some(why) = Self::refused(url) {
            return Err(TransportError::NotAllowed(why));
        }
        lock(&self.sent).push(SentRequest {
            url: url.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            body: body.to_vec(),
        });
        let host = url.as_url().host_str().unwrap_or_default();
        if lock(&self.tarpits).iter().any(|t| t == host) {
            tokio::time::sleep(timeout).await;
            return Err(TransportError::Timeout(timeout));
        }
        Ok(lock(&self.answers).pop_front().unwrap_or(200))
    }
}
