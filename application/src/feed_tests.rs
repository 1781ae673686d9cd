//! Feeds and rules on fakes: which failures of an item's .torrent are retried and which
//! settle the match, one item key in two feeds, a match whose poller stopped between the
//! job and the record of it, a refresh of a feed another poller holds, and rules' patterns
//! compiled once per version.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_domain::feed::RulePatterns;
use ferry_domain::{InfoHash, JobId, OwnerId, Role, TorrentLimits, User};
use uuid::Uuid;

use crate::feeds::{Matchers, RuleChange};
use crate::ports::{
    Category, FeedItem, FeedLimits, FeedMatch, FeedRepository, FeedRule, IdentityError, ItemLink,
    JobLabels, JobQuery, JobRepository, LabelRepository, MatchOutcome, PasswordHasher, RepoError,
    UserRepository,
};
use crate::testing::{
    FakeFeedSource, Fakes, MemoryAudit, MemoryBrowserSessions, MemoryFeeds, MemoryRateLimiter,
    MemoryTokens, MemoryUsers, PlainBox, epoch, sample_metadata,
};
use crate::{
    AccountSettings, Accounts, Categories, FeedInput, FeedSettings, Feeds, Jobs, StorageProfiles,
};

/// The largest .torrent the tests' feeds may point to.
const MAX_TORRENT: u64 = 4096;

struct NoHashes;

impl PasswordHasher for NoHashes {
    fn hash(&self, password: &str) -> Result<String, IdentityError> {
        Ok(password.to_owned())
    }
    fn verify(&self, _password: &str, _hash: &str) -> bool {
        false
    }
}

/// No categories: the tests' rules name none.
struct NoLabels;

#[async_trait]
impl LabelRepository for NoLabels {
    async fn categories(&self, _: &OwnerId) -> Result<Vec<Category>, RepoError> {
        Ok(Vec::new())
    }
    async fn create_category(&self, _: &OwnerId, _: &Category) -> Result<(), RepoError> {
        Ok(())
    }
    async fn edit_category(&self, _: &OwnerId, _: &Category) -> Result<(), RepoError> {
        Err(RepoError::NotFound)
    }
    async fn remove_categories(&self, _: &OwnerId, _: &[String]) -> Result<(), RepoError> {
        Ok(())
    }
    async fn labels(&self, _: &OwnerId) -> Result<HashMap<JobId, JobLabels>, RepoError> {
        Ok(HashMap::new())
    }
    async fn set_category(
        &self,
        _: &OwnerId,
        _: &[JobId],
        _: Option<&str>,
    ) -> Result<(), RepoError> {
        Ok(())
    }
    async fn set_removed(&self, _: &OwnerId, _: &[JobId], _: bool) -> Result<(), RepoError> {
        Ok(())
    }
    async fn tag(&self, _: &OwnerId, _: &[JobId], _: &[String], _: bool) -> Result<(), RepoError> {
        Ok(())
    }
}

struct World {
    f: Fakes,
    repo: Arc<MemoryFeeds>,
    source: Arc<FakeFeedSource>,
    jobs: Arc<Jobs>,
    feeds: Feeds,
    alice: OwnerId,
}

async fn world() -> World {
    let f = Fakes::new();
    let jobs = Arc::new(Jobs {
        lifecycle: f.lifecycle(),
        queue: f.queue.clone(),
        inspector: f.engine.clone(),
        profiles: f.profiles.clone(),
        stores: f.resolver.clone(),
        fetcher: f.fetcher.clone(),
        limits: TorrentLimits::default(),
        torrent_addresses: f.addresses.clone(),
        blocklist: Arc::default(),
        live: None,
    });
    let users = Arc::new(MemoryUsers::default());
    let alice = User::new("alice", None, Role::User, epoch()).unwrap();
    users.insert(&alice, None).await.unwrap();
    let accounts = Arc::new(Accounts::new(
        users,
        Arc::new(MemoryTokens::default()),
        Arc::new(MemoryBrowserSessions::default()),
        Arc::new(MemoryAudit::default()),
        Arc::new(NoHashes),
        Arc::new(MemoryRateLimiter::default()),
        f.clock.clone(),
        AccountSettings::default(),
    ));
    let categories = Arc::new(Categories {
        labels: Arc::new(NoLabels),
        profiles: Arc::new(StorageProfiles {
            profiles: f.profiles.clone(),
            secrets: Arc::new(PlainBox),
            resolver: f.resolver.clone(),
            clock: f.clock.clone(),
            endpoints: f.addresses.clone(),
            shared_dir: None,
        }),
        shared_dir: None,
    });
    let repo = Arc::new(MemoryFeeds::default());
    let source = Arc::new(FakeFeedSource::default());
    let feeds = Feeds {
        repo: repo.clone(),
        source: source.clone(),
        jobs: jobs.clone(),
        accounts,
        categories,
        clock: f.clock.clone(),
        settings: FeedSettings {
            default_interval: Duration::from_secs(60),
            min_interval: Duration::from_secs(1),
            limits: FeedLimits {
                max_bytes: 1 << 20,
                max_items: 100,
            },
            max_feeds_per_user: 10,
            max_rules_per_user: 10,
            lease: Duration::from_secs(120),
            max_torrent_bytes: MAX_TORRENT,
            seed_by_default: false,
            seed_limits: ferry_domain::SeedPolicy::default(),
        },
        matchers: Matchers::default(),
    };
    World {
        f,
        repo,
        source,
        jobs,
        feeds,
        alice: alice.id,
    }
}

fn magnet(seed: u8) -> ItemLink {
    ItemLink::Magnet(format!(
        "magnet:?xt=urn:btih:{}&dn=x",
        InfoHash::from_bytes([seed; 20]).to_hex()
    ))
}

fn item(title: &str, key: &str, link: ItemLink) -> FeedItem {
    FeedItem {
        title: title.to_owned(),
        key: key.to_owned(),
        published: None,
        size: None,
        link: Some(link),
    }
}

fn every_show(owner: &OwnerId) -> FeedRule {
    FeedRule {
        id: Uuid::nil(),
        owner: owner.clone(),
        name: "shows".into(),
        enabled: true,
        feeds: Vec::new(),
        patterns: RulePatterns {
            must_contain: "show".into(),
            must_not_contain: String::new(),
            use_regex: false,
            episode_filter: String::new(),
        },
        smart_filter: false,
        category: None,
        storage_profile: None,
        seed: None,
        created_at: epoch(),
        version: 0,
    }
}

impl World {
    async fn add_feed(&self, url: &str, items: Vec<FeedItem>) -> Uuid {
        self.source.serve(url, items);
        self.feeds
            .create(
                &self.alice,
                FeedInput {
                    url: Some(url.to_owned()),
                    name: None,
                    interval_secs: Some(60),
                },
            )
            .await
            .unwrap()
            .id
    }

    /// Polls every due feed, then moves the clock past their interval.
    async fn poll(&self) {
        self.feeds.poll_due().await.unwrap();
        self.f.clock.advance(chrono::Duration::seconds(61));
    }

    async fn jobs(&self) -> Vec<ferry_domain::Job> {
        self.f
            .repo
            .list(&JobQuery {
                owner: self.alice.clone(),
                status: None,
                name_contains: None,
                before: None,
                limit: 100,
                torrents: None,
            })
            .await
            .unwrap()
    }

    async fn outcomes(&self, feed: Uuid) -> HashMap<String, MatchOutcome> {
        self.repo
            .feed_matches(feed, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|m: FeedMatch| (m.item_key, m.outcome))
            .collect()
    }
}

#[tokio::test]
async fn a_torrent_that_is_gone_too_large_or_not_a_torrent_fails_for_good_and_a_5xx_is_retried() {
    let w = world().await;
    let meta = sample_metadata(7, &[100]);
    w.f.engine.register(meta.clone());
    let good = meta.metainfo.clone();
    let url = |name: &str| format!("https://tracker.example/{name}.torrent");
    // 404 and 410: gone. 503: for now. Larger than allowed, and bytes that are no torrent.
    w.f.fetcher.answer(&url("gone"), Some(404));
    w.f.fetcher.answer(&url("removed"), Some(410));
    w.f.fetcher.answer(&url("busy"), Some(503));
    w.f.fetcher.serve(
        &url("huge"),
        vec![b'd'; usize::try_from(MAX_TORRENT).unwrap() + 1],
    );
    w.f.fetcher.serve(&url("junk"), b"not bencode".to_vec());
    let keys = ["gone", "removed", "busy", "huge", "junk"];
    let items = keys
        .iter()
        .map(|k| item(&format!("Show {k}"), k, ItemLink::Torrent(url(k))))
        .collect();
    let feed = w.add_feed("https://feeds.example/shows", items).await;
    w.feeds.create_rule(every_show(&w.alice)).await.unwrap();

    w.poll().await;
    let outcomes = w.outcomes(feed).await;
    for key in ["gone", "removed", "huge", "junk"] {
        assert!(
            matches!(&outcomes[key], MatchOutcome::Failed(e) if !e.is_empty()),
            "{key}: {:?}",
            outcomes[key]
        );
    }
    assert!(
        matches!(&outcomes["busy"], MatchOutcome::Retry(_)),
        "{:?}",
        outcomes["busy"]
    );

    // Every URL now serves the torrent: only the one that failed for now is tried again.
    for key in keys {
        w.f.fetcher.answer(&url(key), None);
        w.f.fetcher.serve(&url(key), good.clone());
    }
    w.poll().await;
    w.poll().await;
    let outcomes = w.outcomes(feed).await;
    let jobs = w.jobs().await;
    assert_eq!(jobs.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes["busy"], MatchOutcome::Submitted(jobs[0].id));
    for key in ["gone", "removed", "huge", "junk"] {
        assert!(matches!(outcomes[key], MatchOutcome::Failed(_)), "{key}");
    }
}

#[tokio::test]
async fn a_rule_over_two_feeds_matches_an_item_key_in_each() {
    let w = world().await;
    // Two feeds whose items share a guid ("1") but are different torrents.
    let one = w
        .add_feed(
            "https://one.example/rss",
            vec![item("Show one", "1", magnet(1))],
        )
        .await;
    let two = w
        .add_feed(
            "https://two.example/rss",
            vec![item("Show two", "1", magnet(2))],
        )
        .await;
    w.feeds.create_rule(every_show(&w.alice)).await.unwrap();

    w.poll().await;
    w.poll().await;
    let jobs = w.jobs().await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    for feed in [one, two] {
        let outcomes = w.outcomes(feed).await;
        assert!(
            matches!(outcomes.get("1"), Some(MatchOutcome::Submitted(_))),
            "{outcomes:?}"
        );
    }
}

#[tokio::test]
async fn a_match_whose_poller_stopped_after_submitting_is_not_submitted_twice() {
    let w = world().await;
    let feed = w
        .add_feed(
            "https://feeds.example/shows",
            vec![item("Show S01E01", "e1", magnet(3))],
        )
        .await;
    w.feeds.create_rule(every_show(&w.alice)).await.unwrap();

    // The job is made, then the poller stops before it records it: the match stays
    // pending.
    w.repo.fail_next_settle();
    w.poll().await;
    let jobs = w.jobs().await;
    assert_eq!(jobs.len(), 1);
    let first = jobs[0].id;
    assert_eq!(w.outcomes(feed).await["e1"], MatchOutcome::Pending);
    // The job ends meanwhile (no unfinished duplicate to find), and the claim goes stale.
    w.jobs.cancel(&w.alice, first, false).await.unwrap();
    w.f.clock
        .advance(chrono::Duration::from_std(crate::feeds::STALE_CLAIM).unwrap());

    w.poll().await;
    w.poll().await;
    let jobs = w.jobs().await;
    assert_eq!(jobs.len(), 1, "submitted again: {jobs:?}");
    assert_eq!(w.outcomes(feed).await["e1"], MatchOutcome::Submitted(first));
}

#[tokio::test]
async fn a_refresh_leaves_a_feed_another_poller_holds_and_polls_it_once_free() {
    let w = world().await;
    let url = "https://feeds.example/hourly";
    w.source
        .serve(url, vec![item("Show S01E01", "e1", magnet(4))]);
    let feed = w
        .feeds
        .create(
            &w.alice,
            FeedInput {
                url: Some(url.to_owned()),
                name: None,
                interval_secs: Some(3600),
            },
        )
        .await
        .unwrap();
    w.feeds.create_rule(every_show(&w.alice)).await.unwrap();
    // Another poller takes it (a 120 s lease, shorter than its interval).
    let now = crate::ports::Clock::now(w.f.clock.as_ref());
    let held = w
        .repo
        .claim_due(now, now + chrono::Duration::seconds(120), 10)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);

    let answered = w.feeds.refresh(&w.alice, feed.id).await.unwrap();
    assert_eq!(answered.last_polled_at, None, "polled while held");
    assert_eq!(answered.item_count, 0);
    // That poller ends its poll; a refresh then polls.
    w.repo
        .record_poll(
            feed.id,
            &crate::ports::PollRecord {
                etag: None,
                last_modified: None,
                last_error: None,
                items: None,
                polled_at: now,
                next_poll_at: now + chrono::Duration::seconds(3600),
            },
        )
        .await
        .unwrap();
    let answered = w.feeds.refresh(&w.alice, feed.id).await.unwrap();
    assert_eq!(answered.item_count, 1, "{answered:?}");
    assert_eq!(w.jobs().await.len(), 1);
}

#[tokio::test]
async fn a_rule_change_keeps_the_fields_it_does_not_name() {
    let w = world().await;
    let rule = w.feeds.create_rule(every_show(&w.alice)).await.unwrap();
    let renamed = w
        .feeds
        .update_rule(
            &w.alice,
            rule.id,
            &RuleChange {
                name: Some("renamed".into()),
                ..RuleChange::default()
            },
        )
        .await
        .unwrap();
    let disabled = w
        .feeds
        .update_rule(
            &w.alice,
            rule.id,
            &RuleChange {
                enabled: Some(false),
                seed: Some(Some(true)),
                ..RuleChange::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.version + 1, disabled.version);
    let stored = w.feeds.rule(&w.alice, rule.id).await.unwrap();
    assert_eq!(stored, disabled);
    assert_eq!(
        (stored.name.as_str(), stored.enabled, stored.seed),
        ("renamed", false, Some(true))
    );
    // Another owner's rule is not found.
    let bob = OwnerId::parse("bob").unwrap();
    assert!(matches!(
        w.feeds
            .update_rule(&bob, rule.id, &RuleChange::default())
            .await,
        Err(crate::FeedsError::RuleNotFound)
    ));
}

#[test]
fn a_rules_patterns_are_compiled_once_per_version() {
    let matchers = Matchers::default();
    let mut rule = every_show(&OwnerId::parse("alice").unwrap());
    rule.patterns.use_regex = true;
    rule.patterns.must_contain = r"show\s+s\d+".into();
    let first = matchers.of(&rule).unwrap();
    assert!(Arc::ptr_eq(&first, &matchers.of(&rule).unwrap()));
    assert!(first.matches("Show S01E01"));
    // A changed rule has a new version: its new patterns apply.
    rule.patterns.must_contain = "other".into();
    rule.version += 1;
    let second = matchers.of(&rule).unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert!(!second.matches("Show S01E01") && second.matches("other"));
}
