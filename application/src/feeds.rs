//! RSS feeds and download rules (qBittorrent's auto-downloader, per user): feeds polled on
//! an interval with conditional GETs, rules applied to every item of the feeds they name,
//! and each match submitted as a job of the rule's owner exactly once.
//!
//! Exactly once, across restarts and API instances: a poller takes a feed with a lease (a
//! conditional update of its next poll time and lease), and a match is claimed by inserting
//! (rule, feed, item) — with the smart filter's episode keys, all or nothing, and the id its
//! job is to have — under unique constraints; only the inserter submits. A submission that
//! failed for now (an unreachable .torrent, a full quota, a backend down) is left in `Retry`
//! and submitted again at a later poll; one that cannot succeed (a .torrent that is gone,
//! too large or not a torrent) is `Failed` for good. A claimer that stopped between claim
//! and answer leaves it `Pending`, taken again after [`STALE_CLAIM`] and submitted with the
//! id recorded at the claim: a job the first attempt made is found, not made twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_domain::feed::{RuleError, RuleMatcher, smart_filter};
use ferry_domain::{FetchUrl, JobId, OwnerId, ProfileId, SeedPolicy};
use uuid::Uuid;

use crate::ports::{
    Clock, FeedFetch, FeedItem, FeedLimits, FeedMatch, FeedRepository, FeedRule, FeedSource,
    FetchError, ItemLink, MatchClaim, MatchOutcome, PollRecord, RepoError,
};
use crate::{Accounts, Categories, Jobs, JobsError, Submission, SubmitOptions};

pub use crate::ports::Feed;

/// A claim whose claimer gave no answer for this long is taken again.
pub const STALE_CLAIM: Duration = Duration::from_secs(600);
/// Longest feed URL.
pub const MAX_URL_CHARS: usize = 2048;
/// Longest feed or rule name, and category.
pub const MAX_NAME_CHARS: usize = 200;
/// Feeds a poller takes at once.
pub const CLAIM_BATCH: u64 = 16;
/// Matches kept in view per rule for retries.
const RETRY_WINDOW: u64 = 1000;
/// Longest a feed's fetch may take, however slowly its server drips the body.
const FETCH_DEADLINE: Duration = Duration::from_secs(60);
/// Longest a .torrent of an item may take to arrive.
const TORRENT_DEADLINE: Duration = Duration::from_secs(30);
/// Longest one poll applies its rules; items left over are taken at the next poll (oldest
/// first, so nothing is skipped for good), and other feeds are not held up.
const APPLY_BUDGET: Duration = Duration::from_secs(60);
/// Times a change of a feed or rule is made again over a newer version before giving up.
const CHANGE_ATTEMPTS: usize = 5;
/// Rules whose compiled patterns are kept at most (all forgotten past it).
const MATCHERS_KEPT: usize = 10_000;

#[derive(Debug, Clone)]
pub struct FeedSettings {
    pub default_interval: Duration,
    pub min_interval: Duration,
    pub limits: FeedLimits,
    pub max_feeds_per_user: usize,
    pub max_rules_per_user: usize,
    /// How long a poller holds a feed.
    pub lease: Duration,
    /// Largest .torrent fetched for an item.
    pub max_torrent_bytes: u64,
    pub seed_by_default: bool,
    pub seed_limits: SeedPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum FeedsError {
    #[error("{0}")]
    InvalidFeed(String),
    #[error(transparent)]
    InvalidRule(#[from] RuleError),
    #[error("{0}")]
    InvalidRuleField(String),
    #[error(transparent)]
    InvalidUrl(#[from] ferry_domain::FetchUrlError),
    #[error("{0}")]
    UrlNotAllowed(String),
    /// The operator's URL block list refuses the feed's URL.
    #[error("{0}")]
    Blocked(String),
    #[error("{0}")]
    Limit(String),
    #[error("no such feed")]
    FeedNotFound,
    #[error("no such feed rule")]
    RuleNotFound,
    #[error("a backend is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<RepoError> for FeedsError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Unavailable(m) => Self::Unavailable(m),
            other => Self::Unexpected(other.into()),
        }
    }
}

/// A feed as a user gives it.
#[derive(Debug, Clone, Default)]
pub struct FeedInput {
    pub url: Option<String>,
    pub name: Option<String>,
    pub interval_secs: Option<u64>,
}

/// Changes to a rule (`None`: the field stays; `Some(None)` clears an optional one).
#[derive(Debug, Clone, Default)]
pub struct RuleChange {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub feeds: Option<Vec<Uuid>>,
    pub must_contain: Option<String>,
    pub must_not_contain: Option<String>,
    pub use_regex: Option<bool>,
    pub episode_filter: Option<String>,
    pub smart_filter: Option<bool>,
    pub category: Option<Option<String>>,
    pub storage_profile: Option<Option<ProfileId>>,
    pub seed: Option<Option<bool>>,
}

impl RuleChange {
    fn apply(&self, rule: &mut FeedRule) {
        fn set<T: Clone>(field: &mut T, value: Option<&T>) {
            if let Some(v) = value {
                field.clone_from(v);
            }
        }
        set(&mut rule.name, self.name.as_ref());
        set(&mut rule.enabled, self.enabled.as_ref());
        set(&mut rule.feeds, self.feeds.as_ref());
        let p = &mut rule.patterns;
        set(&mut p.must_contain, self.must_contain.as_ref());
        set(&mut p.must_not_contain, self.must_not_contain.as_ref());
        set(&mut p.use_regex, self.use_regex.as_ref());
        set(&mut p.episode_filter, self.episode_filter.as_ref());
        set(&mut rule.smart_filter, self.smart_filter.as_ref());
        set(&mut rule.category, self.category.as_ref());
        set(&mut rule.storage_profile, self.storage_profile.as_ref());
        set(&mut rule.seed, self.seed.as_ref());
    }
}

/// Rules' compiled patterns, each kept while its rule's version stays (a poll does not
/// compile them again).
#[derive(Default)]
pub struct Matchers(std::sync::Mutex<HashMap<Uuid, (i64, Arc<RuleMatcher>)>>);

impl Matchers {
    fn kept(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (i64, Arc<RuleMatcher>)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The rule's compiled patterns, compiled only if its version has none yet.
    ///
    /// # Errors
    /// The rule's patterns do not compile.
    pub fn of(&self, rule: &FeedRule) -> Result<Arc<RuleMatcher>, RuleError> {
        if let Some((version, matcher)) = self.kept().get(&rule.id)
            && *version == rule.version
        {
            return Ok(matcher.clone());
        }
        let matcher = Arc::new(RuleMatcher::new(&rule.patterns)?);
        let mut kept = self.kept();
        if kept.len() >= MATCHERS_KEPT {
            kept.clear();
        }
        kept.insert(rule.id, (rule.version, matcher.clone()));
        Ok(matcher)
    }
}

pub struct Feeds {
    pub repo: Arc<dyn FeedRepository>,
    pub source: Arc<dyn FeedSource>,
    pub jobs: Arc<Jobs>,
    pub accounts: Arc<Accounts>,
    pub categories: Arc<Categories>,
    pub clock: Arc<dyn Clock>,
    pub settings: FeedSettings,
    pub matchers: Matchers,
}

fn bounded(field: &str, text: &str, max: usize) -> Result<(), String> {
    if text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(format!(
            "{field}: at most {max} characters, without control characters"
        ));
    }
    Ok(())
}

fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(now)
}

impl Feeds {
    async fn url(&self, url: &str) -> Result<String, FeedsError> {
        if url.chars().count() > MAX_URL_CHARS {
            return Err(FeedsError::InvalidFeed(format!(
                "url: at most {MAX_URL_CHARS} characters"
            )));
        }
        let parsed = FetchUrl::parse(url)?;
        match self.source.check(&parsed).await {
            Ok(()) => Ok(parsed.as_url().to_string()),
            Err(FetchError::NotAllowed(m)) => Err(FeedsError::UrlNotAllowed(m)),
            Err(FetchError::Blocked(m)) => Err(FeedsError::Blocked(m)),
            // A name that does not resolve now may later: the poll records it.
            Err(_) => Ok(parsed.as_url().to_string()),
        }
    }

    fn interval(&self, secs: Option<u64>) -> Result<u32, FeedsError> {
        let secs = secs.unwrap_or(self.settings.default_interval.as_secs());
        let min = self.settings.min_interval.as_secs();
        let max = 7 * 24 * 3600;
        if secs < min || secs > max {
            return Err(FeedsError::InvalidFeed(format!(
                "interval_secs: from {min} (feeds.min_interval) to {max}"
            )));
        }
        u32::try_from(secs).map_err(|_| FeedsError::InvalidFeed("interval_secs".into()))
    }

    /// Adds a feed, polled at once.
    ///
    /// # Errors
    /// `InvalidFeed`, `InvalidUrl`, `UrlNotAllowed`, `Blocked`, `Limit`.
    pub async fn create(&self, owner: &OwnerId, input: FeedInput) -> Result<Feed, FeedsError> {
        let url = self.url(input.url.as_deref().unwrap_or_default()).await?;
        let name = input.name.unwrap_or_default();
        bounded("name", &name, MAX_NAME_CHARS).map_err(FeedsError::InvalidFeed)?;
        let interval_secs = self.interval(input.interval_secs)?;
        if self.repo.feeds(owner).await?.len() >= self.settings.max_feeds_per_user {
            return Err(FeedsError::Limit(format!(
                "at most {} feeds per user",
                self.settings.max_feeds_per_user
            )));
        }
        let now = self.clock.now();
        let feed = Feed {
            id: Uuid::now_v7(),
            owner: owner.clone(),
            url,
            name,
            interval_secs,
            etag: None,
            last_modified: None,
            last_error: None,
            last_polled_at: None,
            next_poll_at: now,
            created_at: now,
            items: Vec::new(),
            item_count: 0,
            version: 0,
        };
        self.repo.create_feed(&feed).await?;
        Ok(feed)
    }

    /// The owner's feeds, without their items (`item_count` says how many).
    ///
    /// # Errors
    /// `Unavailable`.
    pub async fn list(&self, owner: &OwnerId) -> Result<Vec<Feed>, FeedsError> {
        Ok(self.repo.feeds(owner).await?)
    }

    /// # Errors
    /// `FeedNotFound` (also for another owner's).
    pub async fn get(&self, owner: &OwnerId, id: Uuid) -> Result<Feed, FeedsError> {
        self.repo
            .feed(owner, id)
            .await?
            .ok_or(FeedsError::FeedNotFound)
    }

    /// Changes a feed's URL (its validators are forgotten), name or interval. The change is
    /// written over the version it was made from: a concurrent change of another field is
    /// kept (this one is made again over it).
    ///
    /// # Errors
    /// As [`Self::create`], `FeedNotFound`, and `Unavailable` when the feed kept changing.
    pub async fn update(
        &self,
        owner: &OwnerId,
        id: Uuid,
        input: FeedInput,
    ) -> Result<Feed, FeedsError> {
        // Checked once, before the feed is read: a URL's check may take a while.
        let url = match &input.url {
            Some(url) => Some(self.url(url).await?),
            None => None,
        };
        if let Some(name) = &input.name {
            bounded("name", name, MAX_NAME_CHARS).map_err(FeedsError::InvalidFeed)?;
        }
        let interval = match input.interval_secs {
            Some(secs) => Some(self.interval(Some(secs))?),
            None => None,
        };
        for _ in 0..CHANGE_ATTEMPTS {
            let mut feed = self.get(owner, id).await?;
            let new_url = url.as_ref().filter(|url| **url != feed.url);
            if let Some(url) = new_url {
                feed.url.clone_from(url);
                feed.etag = None;
                feed.last_modified = None;
                feed.next_poll_at = self.clock.now();
            }
            if let Some(name) = &input.name {
                feed.name.clone_from(name);
            }
            if let Some(interval) = interval {
                feed.interval_secs = interval;
            }
            if self
                .repo
                .update_feed(&feed, new_url.is_some())
                .await
                .map_err(not_found_feed)?
            {
                feed.version += 1;
                return Ok(feed);
            }
        }
        Err(FeedsError::Unavailable(
            "the feed kept changing meanwhile; try again".into(),
        ))
    }

    /// # Errors
    /// `FeedNotFound`.
    pub async fn delete(&self, owner: &OwnerId, id: Uuid) -> Result<(), FeedsError> {
        self.repo
            .delete_feed(owner, id)
            .await
            .map_err(not_found_feed)
    }

    /// Polls a feed now and answers it as it then is; while a poller holds it (its lease
    /// runs), it is not polled again, only answered as it is.
    ///
    /// # Errors
    /// `FeedNotFound`.
    pub async fn refresh(&self, owner: &OwnerId, id: Uuid) -> Result<Feed, FeedsError> {
        let now = self.clock.now();
        let claimed = self
            .repo
            .claim_now(owner, id, now, after(now, self.settings.lease))
            .await
            .map_err(not_found_feed)?;
        if let Some(feed) = claimed {
            self.poll(feed).await;
        }
        self.get(owner, id).await
    }

    /// The matches of a feed's items.
    ///
    /// # Errors
    /// `FeedNotFound`.
    pub async fn feed_matches(
        &self,
        owner: &OwnerId,
        id: Uuid,
    ) -> Result<(Feed, Vec<FeedMatch>), FeedsError> {
        let feed = self.get(owner, id).await?;
        let matches = self.repo.feed_matches(id, RETRY_WINDOW).await?;
        Ok((feed, matches))
    }

    fn check_rule(&self, rule: &FeedRule) -> Result<(), FeedsError> {
        RuleMatcher::new(&rule.patterns)?;
        let invalid = FeedsError::InvalidRuleField;
        bounded("name", &rule.name, MAX_NAME_CHARS).map_err(invalid)?;
        if rule.name.trim().is_empty() {
            return Err(FeedsError::InvalidRuleField("name: required".into()));
        }
        if rule.feeds.len() > self.settings.max_feeds_per_user {
            return Err(FeedsError::InvalidRuleField("feeds: too many".into()));
        }
        if rule.category.is_some() && rule.storage_profile.is_some() {
            return Err(FeedsError::InvalidRuleField(
                "category and storage_profile: one or the other".into(),
            ));
        }
        if let Some(c) = &rule.category {
            crate::categories::check_category_name(c)
                .map_err(|e| FeedsError::InvalidRuleField(format!("category: {e}")))?;
        }
        Ok(())
    }

    /// Checks that the feeds, the category and the profile a rule names are the owner's.
    async fn check_refs(&self, rule: &FeedRule) -> Result<(), FeedsError> {
        let feeds: HashSet<Uuid> = self
            .repo
            .feeds(&rule.owner)
            .await?
            .into_iter()
            .map(|f| f.id)
            .collect();
        if let Some(id) = rule.feeds.iter().find(|id| !feeds.contains(id)) {
            return Err(FeedsError::InvalidRuleField(format!("feeds: no feed {id}")));
        }
        if let Some(c) = &rule.category
            && self
                .categories
                .get(&rule.owner, c)
                .await
                .map_err(|e| FeedsError::Unavailable(e.to_string()))?
                .is_none()
        {
            return Err(FeedsError::InvalidRuleField(format!(
                "category: you have no category {c:?}"
            )));
        }
        if let Some(p) = rule.storage_profile
            && self.jobs.profiles.get(&rule.owner, p).await?.is_none()
        {
            return Err(FeedsError::InvalidRuleField(format!(
                "storage_profile: you have no storage profile {p}"
            )));
        }
        Ok(())
    }

    /// Adds a rule (its patterns compiled, what it names checked).
    ///
    /// # Errors
    /// `InvalidRule`, `InvalidRuleField`, `Limit`.
    pub async fn create_rule(&self, mut rule: FeedRule) -> Result<FeedRule, FeedsError> {
        self.check_rule(&rule)?;
        self.check_refs(&rule).await?;
        if self.repo.rules(&rule.owner).await?.len() >= self.settings.max_rules_per_user {
            return Err(FeedsError::Limit(format!(
                "at most {} rules per user",
                self.settings.max_rules_per_user
            )));
        }
        rule.id = Uuid::now_v7();
        rule.created_at = self.clock.now();
        rule.version = 0;
        self.repo.create_rule(&rule).await?;
        Ok(rule)
    }

    /// # Errors
    /// `Unavailable`.
    pub async fn rules(&self, owner: &OwnerId) -> Result<Vec<FeedRule>, FeedsError> {
        Ok(self.repo.rules(owner).await?)
    }

    /// # Errors
    /// `RuleNotFound` (also for another owner's).
    pub async fn rule(&self, owner: &OwnerId, id: Uuid) -> Result<FeedRule, FeedsError> {
        self.repo
            .rule(owner, id)
            .await?
            .ok_or(FeedsError::RuleNotFound)
    }

    /// Changes the fields of the owner's rule `id` that `change` names. The change is written
    /// over the version it was made from: a concurrent change of other fields is kept (this
    /// one is made again over it).
    ///
    /// # Errors
    /// As [`Self::create_rule`], `RuleNotFound`, and `Unavailable` when the rule kept
    /// changing.
    pub async fn update_rule(
        &self,
        owner: &OwnerId,
        id: Uuid,
        change: &RuleChange,
    ) -> Result<FeedRule, FeedsError> {
        for _ in 0..CHANGE_ATTEMPTS {
            let mut rule = self.rule(owner, id).await?;
            change.apply(&mut rule);
            self.check_rule(&rule)?;
            self.check_refs(&rule).await?;
            if self.repo.update_rule(&rule).await.map_err(not_found_rule)? {
                rule.version += 1;
                return Ok(rule);
            }
        }
        Err(FeedsError::Unavailable(
            "the rule kept changing meanwhile; try again".into(),
        ))
    }

    /// # Errors
    /// `RuleNotFound`.
    pub async fn delete_rule(&self, owner: &OwnerId, id: Uuid) -> Result<(), FeedsError> {
        self.repo
            .delete_rule(owner, id)
            .await
            .map_err(not_found_rule)
    }

    /// # Errors
    /// `RuleNotFound`.
    pub async fn rule_matches(
        &self,
        owner: &OwnerId,
        id: Uuid,
        limit: u64,
    ) -> Result<Vec<FeedMatch>, FeedsError> {
        self.rule(owner, id).await?;
        Ok(self.repo.matches(id, limit).await?)
    }

    /// Polls every feed that is due (one batch); returns how many were polled.
    ///
    /// # Errors
    /// `Unavailable` when the feeds cannot be claimed.
    pub async fn poll_due(&self) -> Result<u64, FeedsError> {
        let now = self.clock.now();
        let feeds = self
            .repo
            .claim_due(now, after(now, self.settings.lease), CLAIM_BATCH)
            .await?;
        let count = feeds.len() as u64;
        for feed in feeds {
            self.poll(feed).await;
        }
        Ok(count)
    }

    /// Fetches a claimed feed, records what came, and applies its owner's rules to its items
    /// (every item of the feed, as qBittorrent does, also when nothing changed: a rule made
    /// since, or a submission to try again, then takes effect).
    async fn poll(&self, feed: Feed) {
        let fetched = match self.accounts.is_active(&feed.owner).await {
            // A disabled (or deleted) user's rules do nothing: their feeds are not fetched.
            Ok(false) => Err(FetchError::NotAllowed(
                "the feed's owner is disabled: not polled".into(),
            )),
            Err(e) => Err(FetchError::Unreachable(e.to_string())),
            Ok(true) => match FetchUrl::parse(&feed.url) {
                Ok(url) => tokio::time::timeout(
                    FETCH_DEADLINE,
                    self.source.fetch(
                        &url,
                        feed.etag.as_deref(),
                        feed.last_modified.as_deref(),
                        self.settings.limits,
                    ),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(FetchError::Unreachable(format!(
                        "the feed took longer than {} s to arrive",
                        FETCH_DEADLINE.as_secs()
                    )))
                }),
                Err(e) => Err(FetchError::NotAllowed(e.to_string())),
            },
        };
        let now = self.clock.now();
        let next = after(now, Duration::from_secs(u64::from(feed.interval_secs)));
        let (record, items) = match fetched {
            Ok(FeedFetch::NotModified) => (
                PollRecord {
                    etag: feed.etag.clone(),
                    last_modified: feed.last_modified.clone(),
                    last_error: None,
                    items: None,
                    polled_at: now,
                    next_poll_at: next,
                },
                Some(feed.items.clone()),
            ),
            Ok(FeedFetch::Fetched {
                items,
                etag,
                last_modified,
            }) => (
                PollRecord {
                    etag,
                    last_modified,
                    last_error: None,
                    items: Some(items.clone()),
                    polled_at: now,
                    next_poll_at: next,
                },
                Some(items),
            ),
            Err(e) => {
                tracing::info!(feed = %feed.id, error = %e, "feed poll failed");
                (
                    PollRecord {
                        etag: feed.etag.clone(),
                        last_modified: feed.last_modified.clone(),
                        last_error: Some(truncate(&e.to_string(), 500)),
                        items: None,
                        polled_at: now,
                        next_poll_at: next,
                    },
                    None,
                )
            }
        };
        if let Err(e) = self.repo.record_poll(feed.id, &record).await {
            tracing::warn!(feed = %feed.id, error = %e, "cannot record a feed poll");
        }
        if let Some(items) = items
            && let Err(e) = self.apply(&feed, &items).await
        {
            tracing::warn!(feed = %feed.id, error = %e, "cannot apply the feed's rules");
        }
    }

    /// Applies the owner's enabled rules for `feed` to `items` (oldest first, so the first
    /// release of an episode is the one the smart filter takes, and a later repack a repack).
    async fn apply(&self, feed: &Feed, items: &[FeedItem]) -> Result<(), FeedsError> {
        let started = tokio::time::Instant::now();
        let rules = self.repo.rules(&feed.owner).await?;
        for rule in rules
            .iter()
            .filter(|r| r.enabled && (r.feeds.is_empty() || r.feeds.contains(&feed.id)))
        {
            let Ok(matcher) = self.matchers.of(rule) else {
                continue;
            };
            let mut taken: HashSet<String> = if rule.smart_filter {
                self.repo
                    .taken_episodes(rule.id)
                    .await?
                    .into_iter()
                    .collect()
            } else {
                HashSet::new()
            };
            let recent = self.repo.matches(rule.id, RETRY_WINDOW).await?;
            // This feed's matches: another feed's item with the same key is another item.
            let ours = |settled: bool| -> HashSet<&str> {
                recent
                    .iter()
                    .filter(|m| m.feed == feed.id)
                    .filter(|m| {
                        settled
                            == matches!(
                                m.outcome,
                                MatchOutcome::Submitted(_) | MatchOutcome::Failed(_)
                            )
                    })
                    .map(|m| m.item_key.as_str())
                    .collect()
            };
            let again = ours(false);
            // Settled for good (submitted or failed): not claimed again at every poll.
            let settled = ours(true);
            for item in items.iter().rev() {
                if started.elapsed() > APPLY_BUDGET {
                    tracing::info!(feed = %feed.id, "feed rules out of time: the rest next poll");
                    return Ok(());
                }
                let Some(link) = &item.link else { continue };
                if settled.contains(item.key.as_str()) || !matcher.matches(&item.title) {
                    continue;
                }
                let episodes = if again.contains(item.key.as_str()) {
                    Vec::new()
                } else if rule.smart_filter {
                    match smart_filter(&item.title, |k| taken.contains(k)) {
                        Some(keys) => keys,
                        None => continue,
                    }
                } else {
                    Vec::new()
                };
                let matched = FeedMatch {
                    rule: rule.id,
                    feed: feed.id,
                    item_key: item.key.clone(),
                    title: item.title.clone(),
                    episodes: episodes.join(","),
                    outcome: MatchOutcome::Pending,
                    created_at: self.clock.now(),
                };
                let Some(job) = self
                    .claim(rule, matched.clone(), episodes, &mut taken)
                    .await?
                else {
                    continue;
                };
                let outcome = self.submit(rule, link, job).await;
                tracing::info!(
                    rule = %rule.id,
                    item = %ferry_domain::net::loggable_url(&item.key),
                    ?outcome,
                    "feed rule matched"
                );
                self.repo
                    .settle_match(&matched.key(), &outcome, self.clock.now())
                    .await?;
            }
        }
        Ok(())
    }

    /// Claims `matched` with its episode keys; the id to submit its job with when this
    /// caller has it (the episodes it took added to `taken`), `None` when someone else has.
    async fn claim(
        &self,
        rule: &FeedRule,
        mut matched: FeedMatch,
        mut episodes: Vec<String>,
        taken: &mut HashSet<String>,
    ) -> Result<Option<JobId>, FeedsError> {
        let stale =
            matched.created_at - chrono::Duration::from_std(STALE_CLAIM).unwrap_or_default();
        let job = JobId::new();
        let mut claim = self
            .repo
            .claim_match(&matched, &episodes, job, stale)
            .await?;
        if claim == MatchClaim::Taken && !episodes.is_empty() {
            // Another poller took an episode meanwhile: decide again on what it took (this
            // may be a repack of it now).
            *taken = self
                .repo
                .taken_episodes(rule.id)
                .await?
                .into_iter()
                .collect();
            match smart_filter(&matched.title, |k| taken.contains(k)) {
                Some(keys) if keys != episodes => {
                    matched.episodes = keys.join(",");
                    claim = self.repo.claim_match(&matched, &keys, job, stale).await?;
                    episodes = keys;
                }
                _ => {}
            }
        }
        let job = match claim {
            MatchClaim::New => job,
            MatchClaim::Retry(recorded) => recorded,
            MatchClaim::Taken => return Ok(None),
        };
        taken.extend(episodes);
        Ok(Some(job))
    }

    /// Submits an item's download as the rule's owner, within the owner's quotas.
    /// The job gets the id `job` (recorded with the claim): when an earlier attempt made
    /// it, it is found and the match settled with it.
    async fn submit(&self, rule: &FeedRule, link: &ItemLink, job: JobId) -> MatchOutcome {
        match self.try_submit(rule, link, job).await {
            Ok(outcome) => outcome,
            Err(e) => {
                let message = truncate(&e.to_string(), 500);
                match e {
                    // May pass: a later poll tries again.
                    JobsError::Unavailable(_)
                    | JobsError::UrlUnreachable(_)
                    | JobsError::QuotaExceeded { .. }
                    | JobsError::Unexpected(_) => MatchOutcome::Retry(message),
                    // Will not (a .torrent gone, too large or not a torrent; a refused
                    // tracker…): recorded for good, not fetched again at every poll.
                    _ => MatchOutcome::Failed(message),
                }
            }
        }
    }

    async fn try_submit(
        &self,
        rule: &FeedRule,
        link: &ItemLink,
        job: JobId,
    ) -> Result<MatchOutcome, JobsError> {
        let owner = &rule.owner;
        // An earlier attempt made it (and stopped before it could say): nothing to fetch.
        match self.jobs.get(owner, job).await {
            Ok(_) => return self.submitted(rule, job).await,
            Err(JobsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let quotas = self
            .accounts
            .quotas_of(owner)
            .await
            .map_err(|e| JobsError::Unavailable(e.to_string()))?;
        let submission = match link {
            ItemLink::Magnet(m) => Submission::Magnet(m.clone()),
            ItemLink::Torrent(url) => Submission::Torrent(
                tokio::time::timeout(
                    TORRENT_DEADLINE,
                    self.jobs
                        .fetch_torrent(url, self.settings.max_torrent_bytes),
                )
                .await
                .map_err(|_| {
                    JobsError::Unavailable(format!(
                        "the .torrent took longer than {} s to arrive",
                        TORRENT_DEADLINE.as_secs()
                    ))
                })??,
            ),
        };
        let storage_profile = match (&rule.category, rule.storage_profile) {
            (Some(c), _) => match self.categories.destination(owner, c).await {
                Ok(p) => p,
                Err(crate::CategoriesError::NotFound) => {
                    return Ok(MatchOutcome::Failed(format!("no category {c:?}")));
                }
                Err(e) => return Err(JobsError::Unavailable(e.to_string())),
            },
            (None, p) => p,
        };
        let seed = rule
            .seed
            .unwrap_or(self.settings.seed_by_default)
            .then_some(self.settings.seed_limits);
        let options = SubmitOptions {
            files: None,
            storage_profile,
            seed,
            paused: false,
            id: Some(job),
            limits: Default::default(),
        };
        let id = match self
            .jobs
            .submit_within(owner.clone(), submission, options, quotas)
            .await
        {
            Ok(job) => job.id,
            Err(JobsError::Duplicate(id) | JobsError::AlreadySubmitted(id)) => id,
            Err(e) => return Err(e),
        };
        self.submitted(rule, id).await
    }

    /// The match's job `id` is submitted: it gets the rule's category (again, if an earlier
    /// attempt stopped before).
    async fn submitted(&self, rule: &FeedRule, id: JobId) -> Result<MatchOutcome, JobsError> {
        let owner = &rule.owner;
        if let Some(c) = &rule.category
            && let Err(e) = self
                .categories
                .labels
                .set_category(owner, &[id], Some(c.as_str()))
                .await
        {
            tracing::warn!(job = %id, error = %e, "cannot set a feed job's category");
        }
        Ok(MatchOutcome::Submitted(id))
    }
}

fn not_found_feed(e: RepoError) -> FeedsError {
    match e {
        RepoError::NotFound => FeedsError::FeedNotFound,
        other => other.into(),
    }
}

fn not_found_rule(e: RepoError) -> FeedsError {
    match e {
        RepoError::NotFound => FeedsError::RuleNotFound,
        other => other.into(),
    }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}
