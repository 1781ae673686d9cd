//! The `FeedRepository` contract: owner scoping, feed claims by one poller at a time (a
//! refresh too), changes written only over the version they were made from, and matches
//! (per rule, feed and item) and episodes claimed once, each with the id its job is to have.

use std::sync::Arc;

use chrono::Duration;
use ferry_domain::feed::RulePatterns;
use ferry_domain::{JobId, OwnerId};
use uuid::Uuid;

use crate::ports::{
    Feed, FeedItem, FeedMatch, FeedRepository, FeedRule, ItemLink, MatchClaim, MatchKey,
    MatchOutcome, PollRecord, RepoError,
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
        item_count: 0,
        version: 0,
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
        version: 0,
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
        repo.update_feed(&stolen, false).await,
        Err(RepoError::NotFound)
    ));
    // A change is written over the version it was made from, and bumps it; one made from
    // an older version is not written.
    let mut older = a.clone();
    a.name = "renamed".into();
    assert!(repo.update_feed(&a, false).await.unwrap());
    a.version += 1;
    older.interval_secs = 3600;
    assert!(!repo.update_feed(&older, false).await.unwrap());
    let stored = repo.feed(&alice, a.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.name.as_str(), stored.interval_secs, stored.version),
        ("renamed", 60, 1)
    );
    // Without a new URL, what polls write stays as it is.
    let mut changed = a.clone();
    changed.etag = Some("\"x\"".into());
    changed.next_poll_at = epoch() + Duration::days(1);
    assert!(repo.update_feed(&changed, false).await.unwrap());
    a.version += 1;
    let stored = repo.feed(&alice, a.id).await.unwrap().unwrap();
    assert_eq!((stored.etag, stored.next_poll_at), (None, epoch()));

    // Due feeds are taken by one poller at a time.
    let mut slow = feed(&alice, "https://slow.example/rss");
    slow.interval_secs = 3600;
    repo.create_feed(&slow).await.unwrap();
    let now = epoch() + Duration::seconds(1);
    let lease = now + Duration::seconds(120);
    let (one, two) = tokio::join!(
        repo.claim_due(now, lease, 10),
        repo.claim_due(now, lease, 10)
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(
        one.len() + two.len(),
        3,
        "each due feed once: {one:?} {two:?}"
    );
    assert!(repo.claim_due(now, lease, 10).await.unwrap().is_empty());
    // Held: not taken by a refresh either, whatever its interval (a lease shorter than
    // the interval too).
    for id in [a.id, slow.id] {
        assert!(
            repo.claim_now(&alice, id, now, lease)
                .await
                .unwrap()
                .is_none(),
            "a held feed refreshed"
        );
    }
    // A new URL makes it due, but the poller's lease holds.
    let mut moved = repo.feed(&alice, slow.id).await.unwrap().unwrap();
    moved.url = "https://slow.example/other".into();
    moved.next_poll_at = now;
    assert!(repo.update_feed(&moved, true).await.unwrap());
    assert!(repo.claim_due(now, lease, 10).await.unwrap().is_empty());
    assert!(
        repo.claim_now(&alice, slow.id, now, lease)
            .await
            .unwrap()
            .is_none()
    );
    // Once the lease is over, a refresh takes it (and then holds it).
    let later = lease + Duration::seconds(1);
    let taken = repo
        .claim_now(&alice, slow.id, later, later + Duration::seconds(120))
        .await
        .unwrap()
        .expect("a lease that ended");
    assert_eq!(taken.url, "https://slow.example/other");
    let due = repo
        .claim_due(later, later + Duration::seconds(120), 10)
        .await
        .unwrap();
    assert!(due.iter().all(|f| f.id != slow.id), "{due:?}");
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
    assert_eq!(polled.item_count, 1);
    assert_eq!(polled.etag.as_deref(), Some("\"v1\""));
    assert_eq!(polled.next_poll_at, next);
    // The list leaves the items out; it says how many there are.
    let listed = repo.feeds(&alice).await.unwrap();
    let listed = listed.iter().find(|f| f.id == a.id).unwrap();
    assert_eq!((listed.items.len(), listed.item_count), (0, 1));
    assert_eq!(listed.url, polled.url);
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
    assert_eq!(polled.item_count, 1);
    assert_eq!(polled.last_error.as_deref(), Some("boom"));
    // The poll ended the lease: due again later, a refresh takes it now.
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
    assert!(repo.update_rule(&changed).await.unwrap());
    changed.version += 1;
    assert_eq!(
        repo.rule(&alice, r.id).await.unwrap(),
        Some(changed.clone())
    );
    // A change made from the older version is not written.
    let mut stale_change = r.clone();
    stale_change.name = "lost".into();
    assert!(!repo.update_rule(&stale_change).await.unwrap());
    assert_eq!(repo.rule(&alice, r.id).await.unwrap(), Some(changed));
    let mut stolen = other.clone();
    stolen.owner = alice.clone();
    assert!(matches!(
        repo.update_rule(&stolen).await,
        Err(RepoError::NotFound)
    ));

    // Two claims of one (rule, feed, item) at once: exactly one wins.
    let m = matched(&r, a.id, "k1");
    let stale = epoch() - Duration::seconds(600);
    let e01 = vec!["S01E01".to_owned()];
    let ids = [JobId::new(), JobId::new()];
    let (x, y) = tokio::join!(
        repo.claim_match(&m, &e01, ids[0], stale),
        repo.claim_match(&m, &e01, ids[1], stale)
    );
    let claims = [x.unwrap(), y.unwrap()];
    assert_eq!(
        claims.iter().filter(|c| **c == MatchClaim::New).count(),
        1,
        "{claims:?}"
    );
    assert!(claims.contains(&MatchClaim::Taken));
    let first_job = if claims[0] == MatchClaim::New {
        ids[0]
    } else {
        ids[1]
    };
    assert_eq!(repo.taken_episodes(r.id).await.unwrap(), vec!["S01E01"]);
    // Another item with a taken episode: nothing is taken, all or nothing.
    let m2 = matched(&r, a.id, "k2");
    assert_eq!(
        repo.claim_match(
            &m2,
            &["S01E02".into(), "S01E01".into()],
            JobId::new(),
            stale
        )
        .await
        .unwrap(),
        MatchClaim::Taken
    );
    assert_eq!(repo.taken_episodes(r.id).await.unwrap(), vec!["S01E01"]);
    assert_eq!(repo.matches(r.id, 10).await.unwrap().len(), 1);

    // Pending (fresh) is taken; retry is claimed again by one caller, with the id the
    // winning claim recorded.
    assert_eq!(
        repo.claim_match(&m, &[], JobId::new(), stale)
            .await
            .unwrap(),
        MatchClaim::Taken
    );
    repo.settle_match(&m.key(), &MatchOutcome::Retry("later".into()), epoch())
        .await
        .unwrap();
    let (x, y) = tokio::join!(
        repo.claim_match(&m, &[], JobId::new(), stale),
        repo.claim_match(&m, &[], JobId::new(), stale)
    );
    let claims = [x.unwrap(), y.unwrap()];
    let retried: Vec<JobId> = claims
        .iter()
        .filter_map(|c| match c {
            MatchClaim::Retry(id) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(retried, vec![first_job], "{claims:?}");
    let job = first_job;
    repo.settle_match(&m.key(), &MatchOutcome::Submitted(job), epoch())
        .await
        .unwrap();
    assert_eq!(
        repo.claim_match(&m, &[], JobId::new(), stale)
            .await
            .unwrap(),
        MatchClaim::Taken
    );
    let listed = repo.matches(r.id, 10).await.unwrap();
    assert_eq!(listed[0].outcome, MatchOutcome::Submitted(job));
    assert_eq!(listed[0].title, "Show k1");
    assert_eq!(repo.feed_matches(a.id, 10).await.unwrap().len(), 1);
    // A pending claim whose claimer went silent is taken again once stale, with its id.
    let m3 = matched(&r, a.id, "k3");
    let silent = JobId::new();
    assert_eq!(
        repo.claim_match(&m3, &[], silent, stale).await.unwrap(),
        MatchClaim::New
    );
    assert_eq!(
        repo.claim_match(&m3, &[], JobId::new(), epoch() + Duration::seconds(1))
            .await
            .unwrap(),
        MatchClaim::Retry(silent)
    );
    // Failed for now, it keeps that id too.
    repo.settle_match(&m3.key(), &MatchOutcome::Retry("503".into()), epoch())
        .await
        .unwrap();
    assert_eq!(
        repo.claim_match(&m3, &[], JobId::new(), stale)
            .await
            .unwrap(),
        MatchClaim::Retry(silent)
    );

    // The same item key in another feed of the rule is another item: its own match,
    // settled on its own.
    let second = feed(&alice, "https://second.example/rss");
    repo.create_feed(&second).await.unwrap();
    let elsewhere = matched(&r, second.id, "k1");
    assert_eq!(
        repo.claim_match(&elsewhere, &[], JobId::new(), stale)
            .await
            .unwrap(),
        MatchClaim::New
    );
    repo.settle_match(
        &MatchKey {
            rule: r.id,
            feed: second.id,
            item_key: "k1".into(),
        },
        &MatchOutcome::Failed("gone".into()),
        epoch(),
    )
    .await
    .unwrap();
    let in_second = repo.feed_matches(second.id, 10).await.unwrap();
    assert_eq!(in_second.len(), 1);
    assert_eq!(in_second[0].outcome, MatchOutcome::Failed("gone".into()));
    let in_first = repo.feed_matches(a.id, 10).await.unwrap();
    let k1 = in_first.iter().find(|m| m.item_key == "k1").unwrap();
    assert_eq!(k1.outcome, MatchOutcome::Submitted(job));
    assert_eq!(repo.matches(r.id, 10).await.unwrap().len(), 3);

    // Deleting a rule takes its matches and episodes; another owner's is not found.
    assert!(matches!(
        repo.delete_rule(&alice, other.id).await,
        Err(RepoError::NotFound)
    ));
    repo.delete_rule(&alice, r.id).await.unwrap();
    assert!(repo.matches(r.id, 10).await.unwrap().is_empty());
    assert!(repo.taken_episodes(r.id).await.unwrap().is_empty());
    for id in [a.id, slow.id, second.id] {
        repo.delete_feed(&alice, id).await.unwrap();
    }
    assert!(repo.feeds(&alice).await.unwrap().is_empty());
    assert_eq!(repo.feeds(&bob).await.unwrap().len(), 1);
}
