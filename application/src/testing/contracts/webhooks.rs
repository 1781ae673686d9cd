//! The `WebhookRepository` contract: webhooks kept per owner, subscribers by event, the
//! outbox claimed with a lease (never by two claimers at once, again once the lease ends),
//! outcomes written only by the claim that holds a delivery, history paged newest first,
//! and a deleted webhook's deliveries gone with it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use ferry_domain::{
    DeliveryId, DeliveryState, FetchUrl, JobId, OwnerId, Webhook, WebhookEvent, WebhookId,
};

use crate::ports::*;
use crate::testing::epoch;

fn at(secs: i64) -> DateTime<Utc> {
    epoch() + ChronoDuration::seconds(secs)
}

fn hook(owner: &OwnerId, events: &[WebhookEvent], enabled: bool) -> SealedWebhook {
    SealedWebhook {
        webhook: Webhook {
            id: WebhookId::new(),
            owner: owner.clone(),
            url: FetchUrl::parse("https://hooks.example.org/ferry?k=v").unwrap(),
            events: events.to_vec(),
            enabled,
            created_at: epoch(),
        },
        secret: b"sealed secret".to_vec(),
    }
}

fn delivery(w: &SealedWebhook, due: DateTime<Utc>) -> Delivery {
    let id = DeliveryId::new();
    Delivery {
        id,
        webhook: w.webhook.id,
        owner: w.webhook.owner.clone(),
        event: WebhookEvent::JobCompleted,
        job: Some(JobId::new()),
        body: format!("{{\"id\":\"{id}\",\"job\":{{\"name\":\"ünïcode ✓\"}}}}"),
        attempts: 0,
        state: DeliveryState::Pending,
        last_status: None,
        last_error: None,
        created_at: due,
        next_attempt_at: Some(due),
        delivered_at: None,
        claim: 0,
    }
}

fn ids(ds: &[Delivery]) -> HashSet<DeliveryId> {
    ds.iter().map(|d| d.id).collect()
}

/// `repo` and `other` share one store (two processes on one database).
pub async fn webhook_repository_contract(
    repo: &dyn WebhookRepository,
    other: &dyn WebhookRepository,
) {
    use WebhookEvent as E;
    let alice = OwnerId::parse("alice").unwrap();
    let bob = OwnerId::parse("bob").unwrap();
    let w1 = hook(&alice, &[E::JobCompleted, E::JobFailed], true);
    let w2 = hook(&alice, &[E::JobFailed], true);
    let off = hook(&alice, &E::SUBSCRIBABLE, false);
    let b1 = hook(&bob, &E::SUBSCRIBABLE, true);
    for w in [&w1, &w2, &off, &b1] {
        assert!(repo.insert(w, 100).await.unwrap());
    }
    assert!(matches!(
        repo.insert(&w1, 100).await,
        Err(RepoError::AlreadyExists)
    ));
    let none = HashMap::new();
    let up_to = |total| ClaimLimits {
        total,
        per_owner: usize::MAX,
        held: &none,
    };

    // Kept per owner: another owner's id is unknown to them.
    assert_eq!(
        repo.get(&alice, w1.webhook.id).await.unwrap(),
        Some(w1.clone())
    );
    assert_eq!(repo.get(&bob, w1.webhook.id).await.unwrap(), None);
    let listed: HashSet<WebhookId> = repo
        .list(&alice)
        .await
        .unwrap()
        .iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(
        listed,
        [w1.webhook.id, w2.webhook.id, off.webhook.id]
            .into_iter()
            .collect()
    );
    assert_eq!(repo.list(&bob).await.unwrap(), vec![b1.webhook.clone()]);

    // Updates: only the owner's; a new secret when given.
    let mut changed = w2.webhook.clone();
    changed.owner = bob.clone();
    assert!(matches!(
        repo.update(&changed, None).await,
        Err(RepoError::NotFound)
    ));
    let mut changed = w2.webhook.clone();
    changed.events = vec![E::JobFailed, E::JobSeedingFinished];
    changed.url = FetchUrl::parse("http://hooks.example.org:8080/other").unwrap();
    repo.update(&changed, Some(b"new secret")).await.unwrap();
    let got = repo.get(&alice, w2.webhook.id).await.unwrap().unwrap();
    assert_eq!(got.webhook, changed);
    assert_eq!(got.secret, b"new secret");

    // Subscribers: enabled ones of the owner that want the event.
    let subs = |ws: Vec<WebhookId>| ws.into_iter().collect::<HashSet<_>>();
    assert_eq!(
        subs(repo.subscribers(&alice, E::JobFailed).await.unwrap()),
        subs(vec![w1.webhook.id, w2.webhook.id])
    );
    assert_eq!(
        repo.subscribers(&alice, E::JobCompleted).await.unwrap(),
        vec![w1.webhook.id]
    );
    assert_eq!(
        repo.subscribers(&bob, E::JobSeedingFinished).await.unwrap(),
        vec![b1.webhook.id]
    );
    assert!(
        repo.subscribers(&OwnerId::parse("carol").unwrap(), E::JobFailed)
            .await
            .unwrap()
            .is_empty()
    );

    // The outbox: due ones are claimed once, until the lease ends.
    let d1 = delivery(&w1, at(0));
    let d2 = delivery(&w2, at(0));
    let later = delivery(&w1, at(60));
    assert_eq!(
        repo.enqueue(&[d1.clone(), d2.clone(), later.clone()])
            .await
            .unwrap(),
        3
    );
    assert!(matches!(
        repo.enqueue(std::slice::from_ref(&d1)).await,
        Err(RepoError::AlreadyExists)
    ));
    let lease = Duration::from_secs(30);
    let first = repo.claim_due(at(1), lease, up_to(10)).await.unwrap();
    assert_eq!(ids(&first), ids(&[d1.clone(), d2.clone()]));
    assert!(first.iter().all(|d| d.next_attempt_at == Some(at(31))));
    let stored = first.iter().find(|d| d.id == d1.id).unwrap();
    assert_eq!(stored.body, d1.body, "the body is kept byte for byte");
    assert_eq!(
        (stored.event, stored.job, stored.attempts),
        (d1.event, d1.job, 0)
    );
    assert!(
        other
            .claim_due(at(2), lease, up_to(10))
            .await
            .unwrap()
            .is_empty()
    );

    // A claim whose lease ended is taken over; the first claim can no longer write.
    let again = other.claim_due(at(32), lease, up_to(1)).await.unwrap();
    assert_eq!(again.len(), 1);
    let taken = &again[0];
    let stale = first.iter().find(|d| d.id == taken.id).unwrap();
    assert_ne!(stale.claim, taken.claim);
    let retry = Attempt {
        at: at(33),
        status: Some(500),
        error: Some("the endpoint answered HTTP 500".to_owned()),
        state: DeliveryState::Pending,
        next_attempt_at: Some(at(100)),
    };
    assert!(!repo.record(stale.id, stale.claim, &retry).await.unwrap());
    assert!(other.record(taken.id, taken.claim, &retry).await.unwrap());

    // Recorded outcomes show in the history, newest first, for the owner only.
    let page = repo
        .deliveries(&alice, taken.webhook, None, 10)
        .await
        .unwrap();
    let rec = page.iter().find(|d| d.id == taken.id).unwrap();
    assert_eq!(rec.state, DeliveryState::Pending);
    assert!(rec.attempts >= 1);
    assert_eq!(rec.last_status, Some(500));
    assert_eq!(
        rec.last_error.as_deref(),
        Some("the endpoint answered HTTP 500")
    );
    assert_eq!(rec.next_attempt_at, Some(at(100)));
    assert!(
        repo.deliveries(&bob, taken.webhook, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Delivered: not due again.
    let due = repo.claim_due(at(200), lease, up_to(10)).await.unwrap();
    for d in &due {
        let done = Attempt {
            at: at(201),
            status: Some(204),
            error: None,
            state: DeliveryState::Delivered,
            next_attempt_at: None,
        };
        assert!(repo.record(d.id, d.claim, &done).await.unwrap());
    }
    assert_eq!(due.len(), 3);
    assert!(
        repo.claim_due(at(10_000), lease, up_to(10))
            .await
            .unwrap()
            .is_empty()
    );
    let delivered = repo
        .deliveries(&alice, w1.webhook.id, None, 10)
        .await
        .unwrap();
    assert_eq!(delivered.len(), 2);
    for d in &delivered {
        assert_eq!(d.state, DeliveryState::Delivered);
        assert_eq!(d.delivered_at, Some(at(201)));
        assert_eq!(d.last_error, None);
    }

    // Two claimers at once never hold the same delivery.
    let many: Vec<Delivery> = (0..24).map(|i| delivery(&b1, at(300 + i % 3))).collect();
    repo.enqueue(&many).await.unwrap();
    let mut seen = HashSet::new();
    for round in 0..4 {
        let now = at(400 + round * 100);
        let (x, y) = tokio::join!(
            repo.claim_due(now, lease, up_to(5)),
            other.claim_due(now, lease, up_to(5))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let (xs, ys) = (ids(&x), ids(&y));
        assert!(
            xs.is_disjoint(&ys),
            "claimed twice: {:?}",
            xs.intersection(&ys)
        );
        for d in x.iter().chain(&y) {
            let failed = Attempt {
                at: now,
                status: None,
                error: Some("refused".to_owned()),
                state: DeliveryState::Failed,
                next_attempt_at: None,
            };
            assert!(repo.record(d.id, d.claim, &failed).await.unwrap());
            assert!(seen.insert(d.id));
        }
    }
    // Whatever was left is claimed by the next call.
    let rest = repo.claim_due(at(10_000), lease, up_to(100)).await.unwrap();
    assert_eq!(seen.len() + rest.len(), many.len());

    // History pages: newest first, `before` continues.
    let mut want: Vec<DeliveryId> = many.iter().map(|d| d.id).collect();
    want.sort_by(|a, b| b.cmp(a));
    let p1 = repo
        .deliveries(&bob, b1.webhook.id, None, 10)
        .await
        .unwrap();
    let p2 = repo
        .deliveries(&bob, b1.webhook.id, Some(p1[9].id), 10)
        .await
        .unwrap();
    let got: Vec<DeliveryId> = p1.iter().chain(&p2).map(|d| d.id).collect();
    assert_eq!(got, want[..20].to_vec());

    // Pruning takes finished deliveries made before the cut, never pending ones.
    assert_eq!(repo.prune(at(0)).await.unwrap(), 0);
    let pruned = repo.prune(at(1_000_000)).await.unwrap();
    assert_eq!(
        pruned as usize,
        seen.len() + 3,
        "b1's failed ones and the three delivered"
    );
    let left = repo
        .deliveries(&bob, b1.webhook.id, None, 100)
        .await
        .unwrap();
    assert_eq!(ids(&left), ids(&rest));
    assert!(left.iter().all(|d| d.state == DeliveryState::Pending));

    // Deleting a webhook takes its deliveries; only the owner may.
    assert!(matches!(
        repo.delete(&bob, w1.webhook.id).await,
        Err(RepoError::NotFound)
    ));
    repo.delete(&alice, w1.webhook.id).await.unwrap();
    assert_eq!(repo.webhook(w1.webhook.id).await.unwrap(), None);
    assert!(
        repo.deliveries(&alice, w1.webhook.id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        repo.delete(&alice, w1.webhook.id).await,
        Err(RepoError::NotFound)
    ));
    assert_eq!(
        repo.webhook(b1.webhook.id)
            .await
            .unwrap()
            .map(|w| w.webhook),
        Some(b1.webhook.clone())
    );

    // A subscriber deleted between `subscribers` and `enqueue`: its delivery is skipped,
    // the owner's other webhooks still get theirs.
    let gone = delivery(&w1, at(20_000));
    let kept = delivery(&w2, at(20_000));
    assert_eq!(
        repo.enqueue(&[gone.clone(), kept.clone()]).await.unwrap(),
        1
    );
    let w2s = repo
        .deliveries(&alice, w2.webhook.id, None, 100)
        .await
        .unwrap();
    assert!(w2s.iter().any(|d| d.id == kept.id));
    assert_eq!(repo.enqueue(std::slice::from_ref(&gone)).await.unwrap(), 0);
    assert!(
        repo.deliveries(&alice, w1.webhook.id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Across owners, for re-sealing; a replacement only if nothing changed meanwhile.
    let all: HashSet<WebhookId> = repo
        .all_sealed()
        .await
        .unwrap()
        .iter()
        .map(|w| w.webhook.id)
        .collect();
    assert_eq!(
        all,
        [w2.webhook.id, off.webhook.id, b1.webhook.id]
            .into_iter()
            .collect()
    );
    assert!(
        !repo
            .replace_secret(b1.webhook.id, b"stale", b"resealed")
            .await
            .unwrap(),
        "stale expectation"
    );
    assert!(
        repo.replace_secret(b1.webhook.id, b"sealed secret", b"resealed")
            .await
            .unwrap()
    );
    assert_eq!(
        other
            .get(&bob, b1.webhook.id)
            .await
            .unwrap()
            .unwrap()
            .secret,
        b"resealed"
    );
    assert!(
        !repo
            .replace_secret(w1.webhook.id, b"sealed secret", b"x")
            .await
            .unwrap(),
        "a deleted webhook"
    );

    // Fairness: an owner with no room left is passed over, and the deliveries due after
    // theirs are claimed instead (nothing else is due this early).
    let erin = OwnerId::parse("erin").unwrap();
    let frank = OwnerId::parse("frank").unwrap();
    let e1 = hook(&erin, &E::SUBSCRIBABLE, true);
    let f1 = hook(&frank, &E::SUBSCRIBABLE, true);
    assert!(repo.insert(&e1, 100).await.unwrap());
    assert!(repo.insert(&f1, 100).await.unwrap());
    let erins: Vec<Delivery> = (0..6).map(|_| delivery(&e1, at(5))).collect();
    let franks = delivery(&f1, at(6));
    repo.enqueue(&erins).await.unwrap();
    repo.enqueue(std::slice::from_ref(&franks)).await.unwrap();
    let mut held = HashMap::from([(erin.clone(), 1)]);
    fn limits(held: &HashMap<OwnerId, usize>) -> ClaimLimits<'_> {
        ClaimLimits {
            total: 3,
            per_owner: 2,
            held,
        }
    }
    let got = other.claim_due(at(6), lease, limits(&held)).await.unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got.iter().filter(|d| d.owner == erin).count(), 1);
    assert!(got.iter().any(|d| d.id == franks.id));
    held.insert(erin.clone(), 2);
    assert!(
        repo.claim_due(at(6), lease, limits(&held))
            .await
            .unwrap()
            .is_empty(),
        "erin has no room, frank nothing due"
    );
    held.remove(&erin);
    assert_eq!(
        repo.claim_due(at(6), lease, limits(&held))
            .await
            .unwrap()
            .len(),
        2,
        "two of erin's, her share"
    );

    // The per-owner limit holds when inserts race, from both processes at once.
    let dave = OwnerId::parse("dave").unwrap();
    let racing: Vec<SealedWebhook> = (0..12)
        .map(|_| hook(&dave, &E::SUBSCRIBABLE, true))
        .collect();
    let results = futures::future::join_all(racing.iter().enumerate().map(|(i, w)| async move {
        if i % 2 == 0 {
            repo.insert(w, 5).await
        } else {
            other.insert(w, 5).await
        }
    }))
    .await;
    let added = results.iter().filter(|r| matches!(r, Ok(true))).count();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(added, 5, "{results:?}");
    assert_eq!(repo.list(&dave).await.unwrap().len(), 5);
    assert!(
        !repo
            .insert(&hook(&dave, &E::SUBSCRIBABLE, true), 5)
            .await
            .unwrap()
    );
    assert!(
        repo.insert(&hook(&dave, &E::SUBSCRIBABLE, true), 6)
            .await
            .unwrap()
    );
}

/// `WebhookTransport`: `ok` answers a 2xx to a POST; `refused` is an address the policy
/// refuses, both to `check` and to `post`.
pub async fn webhook_transport_contract(
    transport: &dyn WebhookTransport,
    ok: &FetchUrl,
    refused: &FetchUrl,
) {
    transport.check(ok).await.unwrap();
    assert!(matches!(
        transport.check(refused).await,
        Err(TransportError::NotAllowed(_))
    ));
    let headers = [("x-ferry-event", "ping".to_owned())];
    let status = transport
        .post(ok, &headers, b"{}", Duration::from_secs(10))
        .await
        .unwrap();
    assert!((200..300).contains(&status), "{status}");
    assert!(matches!(
        transport
            .post(refused, &headers, b"{}", Duration::from_secs(10))
            .await,
        Err(TransportError::NotAllowed(_))
    ));
}
