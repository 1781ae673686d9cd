//! The `FeedRepository` contract: owner scoping, feed claims by one poller at a time, and
//! matches and episodes claimed once.

use std::sync::Arc;

use chrono::Duration;
use ferry_domain::feed::RulePatterns;
use ferry_domain::{JobId, OwnerId};
use uuid::Uuid;

use crate::ports::{
    Feed, FeedItem, FeedMatch, FeedRepository, FeedRule, ItemLink, MatchClaim, MatchOutcome,
    PollRecord, RepoError,
};
use crate::testing::epoch;

fn feed(owner: &OwnerId, url: &str) -> Feed {
    Feed {
        id: Uuid::now_v7(),
        owner: owner.clone(),
        url: url.to_owned(),
        name: "n".into(),
        interval_secs: 60,
        etag: None,
        last_modified: None,
        last_error: None,
        last_polled_at: None,
        next_poll_at: epoch(),
        created_at: epoch(),
        items: Vec::new(),
    }
}

fn rule(owner: &OwnerId, feeds: Vec<Uuid>) -> FeedRule {
    FeedRule {
        id: Uuid::now_v7(),
        owner: owner.clone(),
        name: "r".into(),
        enabled: true,
        feeds,
        patterns: RulePatterns {
            must_contain: "show".into(),
            must_not_contain: String::new(),
            use_regex: false,
            episode_filter: "1x1-;".into(),
        },
        smart_filter: true,
        category: Some("tv".into()),
        storage_profile: None,
        seed: Some(false),
        created_at: epoch(),
    }
}

fn matched(rule: &FeedRule, feed: Uuid, key: &str) -> FeedMatch {
    FeedMatch {
        rule: rule.id,
        feed,
        item_key: key.to_owned(),
        title: format!("Show {key}"),
        episodes: String::new(),
        outcome: MatchOutcome::Pending,
        created_at: epoch(),
    }
}

/// Runs the contract on a repository over an empty store.
pub async fn feed_repository_contract(repo: Arc<dyn FeedRepository>) {
    let alice = OwnerId::parse("alice").unwrap();
    let bob = OwnerId::parse("bob").unwrap();

    // Feeds are their owner's.
    let mut a = feed(&alice, "https://a.example/rss");
    let b = feed(&bob, "https://b.example/rss");
    repo.create_feed(&a).await.unwrap();
    repo.create_feed(&b).await.unwrap();
    assert_eq!(repo.feeds(&alice).await.unwrap(), vec![a.clone()]);
    assert!(repo.feed(&alice, b.id).await.unwrap().is_none());
    assert!(matches!(
        repo.delete_feed(&alice, b.id).await,
        Err(RepoError::NotFound)
    ));
    let mut stolen = b.clone();
    stolen.owner = alice.clone();
    assert!(matches!(
        repo.update_feed(&stolen).await,
        Err(RepoError::NotFound)
    ));
    a.name = "renamed".into();
    repo.update_feed(&a).await.unwrap();
    assert_eq!(
        repo.feed(&alice, a.id).await.unwrap().unwrap().name,
        "renamed"
    );

    // Due feeds are taken by one poller at a time.
    let now = epoch() + Duration::seconds(1);
    let lease = now + Duration::seconds(120);
    let (one, two) = tokio::join!(
        repo.claim_due(now, lease, 10),
        repo.claim_due(now, lease, 10)
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(
        one.len() + two.len(),
        2,
        "each due feed once: {one:?} {two:?}"
    );
    assert!(repo.claim_due(now, lease, 10).await.unwrap().is_empty());
    // Held: not taken by a refresh either.
    assert!(
        repo.claim_now(&alice, a.id, now, lease)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        repo.claim_now(&alice, b.id, now, lease).await,
        Err(RepoError::NotFound)
    ));

    // A poll records validators, items and the next poll.
    let items = vec![FeedItem {
        title: "Show S01E01".into(),
        key: "k1".into(),
        published: None,
        size: Some(1),
        link: Some(ItemLink::Magnet("magnet:?xt=urn:btih:x".into())),
    }];
    let next = now + Duration::seconds(60);
    repo.record_poll(
        a.id,
        &PollRecord {
            etag: Some("\"v1\"".into()),
            last_modified: None,
            last_error: None,
            items: Some(items.clone()),
            polled_at: now,
            next_poll_at: next,
        },
    )
    .await
    .unwrap();
    let polled = repo.feed(&alice, a.id).await.unwrap().unwrap();
    assert_eq!(polled.items, items);
    assert_eq!(polled.etag.as_deref(), Some("\"v1\""));
    assert_eq!(polled.next_poll_at, next);
    // Not modified: the items stay.
    repo.record_poll(
        a.id,
        &PollRecord {
            etag: Some("\"v1\"".into()),
            last_modified: None,
            last_error: Some("boom".into()),
            items: None,
            polled_at: now,
            next_poll_at: next,
        },
    )
    .await
    .unwrap();
    let polled = repo.feed(&alice, a.id).await.unwrap().unwrap();
    assert_eq!(polled.items, items);
    assert_eq!(polled.last_error.as_deref(), Some("boom"));
    // Due again later; a refresh takes it now.
    assert!(
        repo.claim_now(&alice, a.id, now, lease)
            .await
            .unwrap()
            .is_some()
    );

    // Rules are their owner's.
    let r = rule(&alice, vec![a.id]);
    let other = rule(&bob, Vec::new());
    repo.create_rule(&r).await.unwrap();
    repo.create_rule(&other).await.unwrap();
    assert_eq!(repo.rules(&alice).await.unwrap(), vec![r.clone()]);
    assert!(repo.rule(&alice, other.id).await.unwrap().is_none());
    let mut changed = r.clone();
    changed.enabled = false;
    changed.patterns.use_regex = true;
    changed.category = None;
    repo.update_rule(&changed).await.unwrap();
    assert_eq!(repo.rule(&alice, r.id).await.unwrap(), Some(changed));
    let mut stolen = other.clone();
    stolen.owner = alice.clone();
    assert!(matches!(
        repo.update_rule(&stolen).await,
        Err(RepoError::NotFound)
    ));

    // Two claims of one (rule, item) at once: exactly one wins.
    let m = matched(&r, a.id, "k1");
    let stale = epoch() - Duration::seconds(600);
    let e01 = vec!["S01E01".to_owned()];
    let (x, y) = tokio::join!(
        repo.claim_match(&m, &e01, stale),
        repo.claim_match(&m, &e01, stale)
    );
    let claims = [x.unwrap(), y.unwrap()];
    assert_eq!(
        claims.iter().filter(|c| **c == MatchClaim::New).count(),
        1,
        "{claims:?}"
    );
    assert!(claims.contains(&MatchClaim::Taken));
    assert_eq!(repo.taken_episodes(r.id).await.unwrap(), vec!["S01E01"]);
    // Another item with a taken episode: nothing is taken, all or nothing.
    let m2 = matched(&r, a.id, "k2");
    assert_eq!(
        repo.claim_match(&m2, &["S01E02".into(), "S01E01".into()], stale)
            .await
            .unwrap(),
        MatchClaim::Taken
    );
    assert_eq!(repo.taken_episodes(r.id).await.unwrap(), vec!["S01E01"]);
    assert_eq!(repo.matches(r.id, 10).await.unwrap().len(), 1);

    // Pending (fresh) is taken; retry is claimed again by one caller.
    assert_eq!(
        repo.claim_match(&m, &[], stale).await.unwrap(),
        MatchClaim::Taken
    );
    repo.settle_match(r.id, "k1", &MatchOutcome::Retry("later".into()), epoch())
        .await
        .unwrap();
    let (x, y) = tokio::join!(
        repo.claim_match(&m, &[], stale),
        repo.claim_match(&m, &[], stale)
    );
    let claims = [x.unwrap(), y.unwrap()];
    assert_eq!(
        claims.iter().filter(|c| **c == MatchClaim::Retry).count(),
        1,
        "{claims:?}"
    );
    let job = JobId::new();
    repo.settle_match(r.id, "k1", &MatchOutcome::Submitted(job), epoch())
        .await
        .unwrap();
    assert_eq!(
        repo.claim_match(&m, &[], stale).await.unwrap(),
        MatchClaim::Taken
    );
    let listed = repo.matches(r.id, 10).await.unwrap();
    assert_eq!(listed[0].outcome, MatchOutcome::Submitted(job));
    assert_eq!(listed[0].title, "Show k1");
    assert_eq!(repo.feed_matches(a.id, 10).await.unwrap().len(), 1);
    // A pending claim whose claimer went silent is taken again once stale.
    let m3 = matched(&r, a.id, "k3");
    assert_eq!(
        repo.claim_match(&m3, &[], stale).await.unwrap(),
        MatchClaim::New
    );
    assert_eq!(
        repo.claim_match(&m3, &[], epoch() + Duration::seconds(1))
            .await
            .unwrap(),
        MatchClaim::Retry
    );

    // Deleting a rule takes its matches and episodes; another owner's is not found.
    assert!(matches!(
        repo.delete_rule(&alice, other.id).await,
        Err(RepoError::NotFound)
    ));
    repo.delete_rule(&alice, r.id).await.unwrap();
    assert!(repo.matches(r.id, 10).await.unwrap().is_empty());
    assert!(repo.taken_episodes(r.id).await.unwrap().is_empty());
    repo.delete_feed(&alice, a.id).await.unwrap();
    assert!(repo.feeds(&alice).await.unwrap().is_empty());
    assert_eq!(repo.feeds(&bob).await.unwrap().len(), 1);
}
