//! Webhooks on fakes: signatures, the backoff schedule, which status changes record which
//! deliveries (and for whom), and the dispatcher's retries and outcomes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use ferry_domain::{DeliveryState, FetchUrl, Job, JobStatus, OwnerId, WebhookEvent, WebhookId};
use tokio::sync::Notify;

use crate::ports::{Clock, Delivery, JobRepository, WebhookRepository};
use crate::testing::{FakeTransport, Fakes, MemoryRateLimiter, MemoryWebhooks, PlainBox, epoch};
use crate::webhooks::{MAX_BACKOFF, backoff, signature, verify};
use crate::{WebhookNotices, WebhookSettings, Webhooks, WebhooksError};

#[test]
fn the_signature_is_hmac_sha256_of_time_dot_body() {
    // Computed independently: Python's hmac.new(b"whsec_test", b'1700000000.{"a":1}', sha256).
    assert_eq!(
        signature("whsec_test", 1_700_000_000, br#"{"a":1}"#),
        "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
    );
    let header = signature("whsec_s", 1_000, b"body");
    assert!(verify("whsec_s", &header, b"body", 1_000));
    assert!(verify("whsec_s", &header, b"body", 1_300));
    assert!(
        !verify("whsec_s", &header, b"body", 1_301),
        "too old: a replay"
    );
    assert!(!verify("whsec_s", &header, b"body", 699), "from the future");
    assert!(!verify("whsec_s", &header, b"bodY", 1_000));
    assert!(!verify("whsec_other", &header, b"body", 1_000));
    let moved = header.replace("t=1000", "t=1001");
    assert!(!verify("whsec_s", &moved, b"body", 1_000), "t is signed");
    for junk in ["", "t=1000", "v1=00", "t=x,v1=zz", "t=1000,v1="] {
        assert!(!verify("whsec_s", junk, b"body", 1_000), "{junk}");
    }
}

#[test]
fn backoff_doubles_with_jitter_and_a_ceiling() {
    let base = Duration::from_secs(30);
    let mut last_max = Duration::ZERO;
    for failed in 1..=8 {
        let low = backoff(base, failed, 0.0);
        let high = backoff(base, failed, 1.0);
        assert_eq!(low, base * (1 << (failed - 1)));
        assert_eq!(high, low.mul_f64(1.25));
        assert!(low > last_max, "waits grow strictly, whatever the jitter");
        last_max = high;
    }
    assert_eq!(backoff(base, 40, 0.0), MAX_BACKOFF);
    assert_eq!(backoff(base, u32::MAX, 0.5), MAX_BACKOFF.mul_f64(1.125));
}

struct Setup {
    fakes: Fakes,
    hooks: Arc<MemoryWebhooks>,
    transport: Arc<FakeTransport>,
    webhooks: Webhooks,
    lifecycle: crate::Lifecycle,
}

fn setup(settings: WebhookSettings) -> Setup {
    let fakes = Fakes::new();
    let hooks = Arc::new(MemoryWebhooks::default());
    let transport = Arc::new(FakeTransport::default());
    let wake = Arc::new(Notify::new());
    let notices = Arc::new(WebhookNotices {
        repo: hooks.clone(),
        clock: fakes.clock.clone(),
        render: Arc::new(
            |job: &Job| serde_json::json!({"id": job.id.to_string(), "status": job.status.as_str()}),
        ),
        wake: wake.clone(),
    });
    let lifecycle = fakes.lifecycle().with_notices(notices);
    let webhooks = Webhooks {
        repo: hooks.clone(),
        transport: transport.clone(),
        secrets: Arc::new(PlainBox),
        clock: fakes.clock.clone(),
        settings,
        wake,
        limiter: Arc::new(MemoryRateLimiter::default()),
    };
    Setup {
        fakes,
        hooks,
        transport,
        webhooks,
        lifecycle,
    }
}

fn owner(name: &str) -> OwnerId {
    OwnerId::parse(name).unwrap()
}

async fn new_job(s: &Setup, who: &OwnerId) -> Job {
    let job = Job::from_url(
        who.clone(),
        FetchUrl::parse("https://example.org/a.iso").unwrap(),
        epoch(),
    );
    s.fakes.repo.insert(&job).await.unwrap();
    job
}

async fn walk(s: &Setup, job: &Job, path: &[JobStatus]) {
    for pair in path.windows(2) {
        s.lifecycle
            .advance(job.id, pair[0], pair[1], None)
            .await
            .unwrap();
    }
}

async fn all_deliveries(s: &Setup, who: &OwnerId, id: WebhookId) -> Vec<Delivery> {
    s.hooks.deliveries(who, id, None, 100).await.unwrap()
}

fn names(events: &[&str]) -> Vec<String> {
    events.iter().map(|e| (*e).to_owned()).collect()
}

#[tokio::test]
async fn completing_failing_and_seeding_record_one_delivery_per_subscribed_webhook() {
    use JobStatus as S;
    let s = setup(WebhookSettings::default());
    let (alice, bob) = (owner("alice"), owner("bob"));
    let every = s
        .webhooks
        .create(&alice, "https://a.example/all", None, true)
        .await
        .unwrap();
    let failed_only = s
        .webhooks
        .create(
            &alice,
            "https://a.example/failed",
            Some(&names(&["job.failed"])),
            true,
        )
        .await
        .unwrap();
    let disabled = s
        .webhooks
        .create(&alice, "https://a.example/off", None, false)
        .await
        .unwrap();
    let bobs = s
        .webhooks
        .create(&bob, "https://b.example/all", None, true)
        .await
        .unwrap();

    let job = new_job(&s, &alice).await;
    walk(
        &s,
        &job,
        &[
            S::Queued,
            S::Resolving,
            S::Downloading,
            S::Uploading,
            S::Completed,
            S::Seeding,
            S::Completed,
        ],
    )
    .await;
    let other = new_job(&s, &alice).await;
    walk(
        &s,
        &other,
        &[S::Queued, S::Resolving, S::Downloading, S::Failed],
    )
    .await;

    let events = |ds: Vec<Delivery>| {
        let mut v: Vec<(WebhookEvent, ferry_domain::JobId)> =
            ds.iter().map(|d| (d.event, d.job.unwrap())).collect();
        v.sort();
        v
    };
    let mut want = vec![
        (WebhookEvent::JobCompleted, job.id),
        (WebhookEvent::JobSeedingFinished, job.id),
        (WebhookEvent::JobFailed, other.id),
    ];
    want.sort();
    assert_eq!(
        events(all_deliveries(&s, &alice, every.webhook.id).await),
        want
    );
    assert_eq!(
        events(all_deliveries(&s, &alice, failed_only.webhook.id).await),
        vec![(WebhookEvent::JobFailed, other.id)]
    );
    assert!(
        all_deliveries(&s, &alice, disabled.webhook.id)
            .await
            .is_empty()
    );
    assert!(
        all_deliveries(&s, &bob, bobs.webhook.id).await.is_empty(),
        "a user's webhook never hears of another user's job"
    );

    // The body: the delivery's id and event, and the job as rendered when it moved.
    let d = all_deliveries(&s, &alice, failed_only.webhook.id)
        .await
        .remove(0);
    let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(body["id"], d.id.to_string());
    assert_eq!(body["event"], "job.failed");
    assert_eq!(body["job"]["id"], other.id.to_string());
    assert_eq!(body["job"]["status"], "failed");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));

    // Bob's own job reaches his webhook only.
    let his = new_job(&s, &bob).await;
    walk(&s, &his, &[S::Queued, S::Failed]).await;
    assert_eq!(all_deliveries(&s, &bob, bobs.webhook.id).await.len(), 1);
    assert_eq!(all_deliveries(&s, &alice, every.webhook.id).await.len(), 3);
}

#[tokio::test]
async fn a_delivery_is_retried_with_growing_waits_then_delivered_signed_the_same_way() {
    use JobStatus as S;
    let s = setup(WebhookSettings {
        retry_base: Duration::from_secs(10),
        max_attempts: 5,
        ..WebhookSettings::default()
    });
    let alice = owner("alice");
    let created = s
        .webhooks
        .create(&alice, "https://a.example/hook", None, true)
        .await
        .unwrap();
    assert!(created.secret.starts_with("whsec_") && created.secret.len() == 6 + 64);
    let job = new_job(&s, &alice).await;
    walk(&s, &job, &[S::Queued, S::Failed]).await;
    s.transport.answer(&[500, 503]);

    let mut due_times = Vec::new();
    for _ in 0..3 {
        let d = all_deliveries(&s, &alice, created.webhook.id)
            .await
            .remove(0);
        let due = d.next_attempt_at.unwrap();
        due_times.push(due);
        let wait = due - s.fakes.clock.now();
        if wait > chrono::Duration::zero() {
            // Not a moment early.
            s.fakes
                .clock
                .advance(wait - chrono::Duration::milliseconds(1));
            assert_eq!(s.webhooks.dispatch_due().await.unwrap(), 0);
            s.fakes.clock.advance(chrono::Duration::milliseconds(1));
        }
        assert_eq!(s.webhooks.dispatch_due().await.unwrap(), 1);
    }
    let d = all_deliveries(&s, &alice, created.webhook.id)
        .await
        .remove(0);
    assert_eq!(
        (d.state, d.attempts, d.last_status),
        (DeliveryState::Delivered, 3, Some(200))
    );
    assert_eq!(d.last_error, None);
    let gaps: Vec<i64> = due_times
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    assert!(gaps[0] >= 10_000 && gaps[1] > gaps[0], "{gaps:?}");

    let sent = s.transport.sent();
    assert_eq!(sent.len(), 3);
    for r in &sent {
        assert_eq!(
            r.header("x-ferry-delivery"),
            Some(d.id.to_string().as_str())
        );
        assert_eq!(r.header("x-ferry-event"), Some("job.failed"));
        assert_eq!(r.body, d.body.as_bytes());
        let t = s.fakes.clock.now().timestamp();
        assert!(verify(
            &created.secret,
            r.header("x-ferry-signature").unwrap(),
            &r.body,
            t
        ));
    }

    // Rotated: the next delivery is signed with the new secret only.
    let rotated = s
        .webhooks
        .rotate_secret(&alice, created.webhook.id)
        .await
        .unwrap();
    assert_ne!(rotated.secret, created.secret);
    s.webhooks.ping(&alice, created.webhook.id).await.unwrap();
    assert_eq!(s.webhooks.dispatch_due().await.unwrap(), 1);
    let ping = s.transport.sent().pop().unwrap();
    assert_eq!(ping.header("x-ferry-event"), Some("ping"));
    let (sig, t) = (
        ping.header("x-ferry-signature").unwrap(),
        s.fakes.clock.now().timestamp(),
    );
    assert!(verify(&rotated.secret, sig, &ping.body, t));
    assert!(!verify(&created.secret, sig, &ping.body, t));
}

#[tokio::test]
async fn attempts_run_out_and_refused_endpoints_fail() {
    let s = setup(WebhookSettings {
        retry_base: Duration::from_secs(1),
        max_attempts: 2,
        ..WebhookSettings::default()
    });
    let alice = owner("alice");
    let hook = s
        .webhooks
        .create(&alice, "https://a.example/hook", None, true)
        .await
        .unwrap();
    s.transport.answer(&[500, 302]);
    s.webhooks.ping(&alice, hook.webhook.id).await.unwrap();
    s.webhooks.dispatch_due().await.unwrap();
    s.fakes.clock.advance(chrono::Duration::seconds(5));
    s.webhooks.dispatch_due().await.unwrap();
    let d = all_deliveries(&s, &alice, hook.webhook.id).await.remove(0);
    assert_eq!(
        (d.state, d.attempts, d.last_status),
        (DeliveryState::Failed, 2, Some(302))
    );
    assert_eq!(
        d.last_error.as_deref(),
        Some("the endpoint answered HTTP 302")
    );
    s.fakes.clock.advance(chrono::Duration::hours(10));
    assert_eq!(
        s.webhooks.dispatch_due().await.unwrap(),
        0,
        "a failed delivery is not retried"
    );

    // Refused at creation and on update; nothing is sent there.
    for url in ["http://10.0.0.1/", "https://internal.test/x"] {
        let r = s.webhooks.create(&alice, url, None, true).await;
        assert!(
            matches!(r, Err(WebhooksError::NotAllowed(_))),
            "{url}: {r:?}"
        );
        let change = crate::WebhookChange {
            url: Some(url.to_owned()),
            ..Default::default()
        };
        let r = s.webhooks.update(&alice, hook.webhook.id, change).await;
        assert!(
            matches!(r, Err(WebhooksError::NotAllowed(_))),
            "{url}: {r:?}"
        );
    }
    // Hostile input.
    for url in [
        "ftp://a.example/",
        "not a url",
        &format!("https://a.example/{}", "x".repeat(2100)),
    ] {
        assert!(matches!(
            s.webhooks.create(&alice, url, None, true).await,
            Err(WebhooksError::Invalid(_))
        ));
    }
    for events in [vec![], names(&["job.exploded"]), names(&["ping"])] {
        assert!(matches!(
            s.webhooks
                .create(&alice, "https://a.example/", Some(&events), true)
                .await,
            Err(WebhooksError::Invalid(_))
        ));
    }
    // Another user's webhook is unknown to them.
    let bob = owner("bob");
    assert!(matches!(
        s.webhooks.get(&bob, hook.webhook.id).await,
        Err(WebhooksError::NotFound)
    ));
    assert!(matches!(
        s.webhooks.ping(&bob, hook.webhook.id).await,
        Err(WebhooksError::NotFound)
    ));
    assert!(matches!(
        s.webhooks.deliveries(&bob, hook.webhook.id, None, 10).await,
        Err(WebhooksError::NotFound)
    ));
    assert!(matches!(
        s.webhooks.delete(&bob, hook.webhook.id).await,
        Err(WebhooksError::NotFound)
    ));
}

#[tokio::test]
async fn a_user_has_a_bounded_number_of_webhooks() {
    let s = setup(WebhookSettings {
        max_per_user: 2,
        ..WebhookSettings::default()
    });
    let alice = owner("alice");
    for _ in 0..2 {
        s.webhooks
            .create(&alice, "https://a.example/", None, true)
            .await
            .unwrap();
    }
    assert!(matches!(
        s.webhooks
            .create(&alice, "https://a.example/", None, true)
            .await,
        Err(WebhooksError::TooMany(2))
    ));
    s.webhooks
        .create(&owner("bob"), "https://a.example/", None, true)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_delivery_for_a_webhook_disabled_since_fails_at_once() {
    use JobStatus as S;
    let s = setup(WebhookSettings::default());
    let alice = owner("alice");
    let hook = s
        .webhooks
        .create(&alice, "https://a.example/hook", None, true)
        .await
        .unwrap();
    let job = new_job(&s, &alice).await;
    walk(&s, &job, &[S::Queued, S::Failed]).await;
    let change = crate::WebhookChange {
        enabled: Some(false),
        ..Default::default()
    };
    s.webhooks
        .update(&alice, hook.webhook.id, change)
        .await
        .unwrap();
    assert_eq!(s.webhooks.dispatch_due().await.unwrap(), 1);
    let d = all_deliveries(&s, &alice, hook.webhook.id).await.remove(0);
    assert_eq!((d.state, d.attempts), (DeliveryState::Failed, 1));
    assert_eq!(d.last_error.as_deref(), Some("the webhook is disabled"));
    assert!(s.transport.sent().is_empty(), "nothing was sent");
}

/// The event comes from the transition written, not from the job as read back: a retry
/// (`failed → queued`) racing in before the read must not lose `job.failed`.
#[tokio::test]
async fn the_event_is_the_transition_written_even_if_the_job_moved_on() {
    use crate::ports::JobNotices;
    use JobStatus as S;
    let s = setup(WebhookSettings::default());
    let alice = owner("alice");
    let hook = s
        .webhooks
        .create(&alice, "https://a.example/all", None, true)
        .await
        .unwrap();
    let notices = WebhookNotices {
        repo: s.hooks.clone(),
        clock: s.fakes.clock.clone(),
        render: Arc::new(|job: &Job| serde_json::json!({"id": job.id.to_string()})),
        wake: Arc::new(Notify::new()),
    };
    let mut job = new_job(&s, &alice).await;
    // Read back after a retry already moved it on.
    job.status = S::Queued;
    notices.job_moved(&job, S::Downloading, S::Failed).await;
    let got = all_deliveries(&s, &alice, hook.webhook.id).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event, WebhookEvent::JobFailed);
    assert_eq!(got[0].job, Some(job.id));
}

/// A subscriber deleted between reading the subscribers and enqueueing: the owner's other
/// webhooks still get their deliveries.
#[tokio::test]
async fn a_webhook_deleted_meanwhile_does_not_drop_the_others_deliveries() {
    let s = setup(WebhookSettings::default());
    let alice = owner("alice");
    let kept = s
        .webhooks
        .create(&alice, "https://a.example/kept", None, true)
        .await
        .unwrap();
    let gone = s
        .webhooks
        .create(&alice, "https://a.example/gone", None, true)
        .await
        .unwrap();
    let job = new_job(&s, &alice).await;
    let now = s.fakes.clock.now();
    let deliveries: Vec<Delivery> = [kept.webhook.id, gone.webhook.id]
        .into_iter()
        .map(|hook| {
            crate::webhooks::pending(
                hook,
                &alice,
                WebhookEvent::JobFailed,
                Some((job.id, serde_json::json!({}))),
                now,
            )
        })
        .collect();
    s.webhooks.delete(&alice, gone.webhook.id).await.unwrap();
    assert_eq!(s.hooks.enqueue(&deliveries).await.unwrap(), 1);
    assert_eq!(all_deliveries(&s, &alice, kept.webhook.id).await.len(), 1);
    assert!(matches!(
        s.webhooks.ping(&alice, gone.webhook.id).await,
        Err(WebhooksError::NotFound)
    ));
}

/// A secret box with key ids: the first byte names the key that sealed; only `known` keys
/// open, `current` seals.
struct KeyedBox {
    current: u8,
    known: Vec<u8>,
}

impl crate::ports::SecretBox for KeyedBox {
    fn seal(&self, plain: &[u8], context: &[u8]) -> Vec<u8> {
        let mut out = vec![self.current];
        out.extend(PlainBox.seal(plain, &[context, &[self.current]].concat()));
        out
    }

    fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, crate::ports::SecretError> {
        let (&key, rest) = sealed.split_first().ok_or(crate::ports::SecretError)?;
        if !self.known.contains(&key) {
            return Err(crate::ports::SecretError);
        }
        PlainBox.open(rest, &[context, &[key]].concat())
    }

    fn is_current(&self, sealed: &[u8]) -> bool {
        sealed.first() == Some(&self.current)
    }
}

/// `ferry keys rotate` re-seals webhook secrets too: after it, the old key can go and
/// deliveries are still signed with the same secret.
#[tokio::test]
async fn key_rotation_reseals_webhook_secrets_so_the_old_key_can_go() {
    use crate::ports::SecretBox;
    let s = setup(WebhookSettings::default());
    let alice = owner("alice");
    let old = Arc::new(KeyedBox {
        current: 1,
        known: vec![1],
    });
    let both = Arc::new(KeyedBox {
        current: 2,
        known: vec![2, 1],
    });
    let new_only = Arc::new(KeyedBox {
        current: 2,
        known: vec![2],
    });
    let webhooks = |secrets: Arc<KeyedBox>| Webhooks {
        repo: s.hooks.clone(),
        transport: s.transport.clone(),
        secrets,
        clock: s.fakes.clock.clone(),
        settings: WebhookSettings::default(),
        wake: Arc::new(Notify::new()),
        limiter: Arc::new(MemoryRateLimiter::default()),
    };
    let created = webhooks(old.clone())
        .create(&alice, "https://a.example/hook", None, true)
        .await
        .unwrap();
    let id = created.webhook.id;
    let rotation = |secrets: Arc<KeyedBox>| crate::KeyRotation {
        profiles: Arc::new(crate::testing::MemoryProfiles::default()),
        webhooks: s.hooks.clone(),
        secrets,
    };

    let report = rotation(both.clone()).rotate().await.unwrap();
    assert_eq!(
        report.webhooks,
        crate::ResealedWebhooks {
            resealed: 1,
            ..Default::default()
        }
    );
    assert!(report.complete());
    let again = rotation(both.clone()).rotate().await.unwrap();
    assert_eq!(again.webhooks.current, 1);
    assert_eq!(again.webhooks.resealed, 0);

    // The old key is gone: the secret still opens, bound to the same webhook.
    let sealed = s.hooks.webhook(id).await.unwrap().unwrap();
    let plain = new_only
        .open(
            &sealed.secret,
            &crate::ports::secret_context(&sealed.webhook),
        )
        .unwrap();
    assert_eq!(plain, created.secret.as_bytes());
    let pinged = webhooks(new_only.clone()).ping(&alice, id).await.unwrap();
    assert_eq!(webhooks(new_only.clone()).dispatch_due().await.unwrap(), 1);
    let sent = s.transport.sent();
    assert_eq!(sent.len(), 1);
    let header = sent[0].header("X-Ferry-Signature").unwrap();
    let now = s.fakes.clock.now().timestamp();
    assert!(verify(&created.secret, header, &sent[0].body, now));
    let done = all_deliveries(&s, &alice, id).await;
    assert_eq!(done[0].id, pinged.id);
    assert_eq!(done[0].state, DeliveryState::Delivered);

    // Without the key that sealed it, it is reported, not touched.
    let other = webhooks(old.clone())
        .create(&alice, "https://a.example/other", None, true)
        .await
        .unwrap();
    let report = rotation(new_only).rotate().await.unwrap();
    assert_eq!(report.webhooks.failed, vec![other.webhook.id]);
    assert_eq!(report.webhooks.current, 1);
    assert!(!report.complete());
}

#[tokio::test]
async fn debug_never_shows_a_secret() {
    let s = setup(WebhookSettings::default());
    let made = s
        .webhooks
        .create(&owner("alice"), "https://a.example/all", None, true)
        .await
        .unwrap();
    let shown = format!("{made:?}");
    assert!(!shown.contains(&made.secret), "{shown}");
    assert!(shown.contains("***"), "{shown}");
}

/// A user whose endpoints never answer (each attempt lasts the whole timeout) holds at most
/// their share of the dispatcher's places; another user's delivery recorded meanwhile goes
/// out at once, not after the tarpit's timeouts.
#[tokio::test(start_paused = true)]
async fn endpoints_that_never_answer_hold_up_only_their_owners_deliveries() {
    let settings = WebhookSettings {
        timeout: Duration::from_secs(10),
        concurrency: 8,
        per_owner_concurrency: 2,
        ..WebhookSettings::default()
    };
    let s = setup(settings.clone());
    s.transport.never_answer("tarpit.example");
    let (mallory, bob) = (owner("mallory"), owner("bob"));
    // More tarpit endpoints, each pinged, than the dispatcher has places.
    for i in 0..settings.concurrency + 2 {
        let hook = s
            .webhooks
            .create(&mallory, &format!("https://tarpit.example/{i}"), None, true)
            .await
            .unwrap();
        s.webhooks.ping(&mallory, hook.webhook.id).await.unwrap();
    }
    let bobs = s
        .webhooks
        .create(&bob, "https://bob.example/hook", None, true)
        .await
        .unwrap();
    let transport = s.transport.clone();
    let webhooks = Arc::new(s.webhooks);
    let stop = tokio_util::sync::CancellationToken::new();
    let dispatcher = tokio::spawn(webhooks.clone().run(stop.clone()));
    let sent_to = |host: &str| {
        transport
            .sent()
            .iter()
            .filter(|r| r.url.contains(host))
            .count()
    };
    // The tarpit's requests are under way, and hang.
    let step = Duration::from_millis(5);
    while sent_to("tarpit.example") < settings.per_owner_concurrency {
        tokio::time::sleep(step).await;
    }
    tokio::time::sleep(settings.poll * 2).await;

    let asked = tokio::time::Instant::now();
    webhooks.ping(&bob, bobs.webhook.id).await.unwrap();
    while sent_to("bob.example") == 0 {
        assert!(
            asked.elapsed() < settings.timeout / 4,
            "bob's ping waited for the tarpit"
        );
        tokio::time::sleep(step).await;
    }
    assert!(asked.elapsed() <= settings.poll, "{:?}", asked.elapsed());
    assert_eq!(
        sent_to("tarpit.example"),
        settings.per_owner_concurrency,
        "the tarpit's owner holds no more than their share"
    );
    stop.cancel();
    dispatcher.await.unwrap();
}

/// A ping is the one delivery a caller can ask for at will: one per `ping_interval` per
/// webhook, the next refused with how long to wait.
#[tokio::test(start_paused = true)]
async fn pings_are_spaced_out_per_webhook() {
    let s = setup(WebhookSettings {
        ping_interval: Duration::from_secs(10),
        ..WebhookSettings::default()
    });
    let alice = owner("alice");
    let one = s
        .webhooks
        .create(&alice, "https://a.example/one", None, true)
        .await
        .unwrap();
    let two = s
        .webhooks
        .create(&alice, "https://a.example/two", None, true)
        .await
        .unwrap();
    s.webhooks.ping(&alice, one.webhook.id).await.unwrap();
    let retry_after = match s.webhooks.ping(&alice, one.webhook.id).await {
        Err(WebhooksError::RateLimited { retry_after }) => retry_after,
        other => panic!("{other:?}"),
    };
    assert!(
        retry_after > Duration::from_secs(9) && retry_after <= Duration::from_secs(10),
        "{retry_after:?}"
    );
    // Per webhook: another one of hers may be pinged; another user's id is still unknown.
    s.webhooks.ping(&alice, two.webhook.id).await.unwrap();
    assert!(matches!(
        s.webhooks.ping(&owner("bob"), one.webhook.id).await,
        Err(WebhooksError::NotFound)
    ));
    tokio::time::advance(retry_after).await;
    s.webhooks.ping(&alice, one.webhook.id).await.unwrap();
    let pings = all_deliveries(&s, &alice, one.webhook.id).await;
    assert_eq!(pings.len(), 2, "one refused ping queued nothing");
}
