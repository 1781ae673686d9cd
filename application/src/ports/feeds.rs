//! RSS feeds and download rules, per user: where they are kept ([`FeedRepository`]) and how
//! a feed is read ([`FeedSource`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_domain::feed::RulePatterns;
use ferry_domain::{JobId, OwnerId, ProfileId};
use uuid::Uuid;

use super::{FetchError, RepoError};

/// What an item offers to download.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "url", rename_all = "snake_case")]
pub enum ItemLink {
    /// A magnet link (given, or made from an info hash the feed named).
    Magnet(String),
    /// The URL of a .torrent file.
    Torrent(String),
}

/// One item of a feed, as the last fetch read it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeedItem {
    pub title: String,
    /// What identifies the item in its feed: its guid, else its link, else its title.
    pub key: String,
    pub published: Option<String>,
    pub size: Option<u64>,
    pub link: Option<ItemLink>,
}

/// A user's feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    pub id: Uuid,
    pub owner: OwnerId,
    pub url: String,
    pub name: String,
    pub interval_secs: u32,
    /// The validators of the last answer, sent back for a conditional GET.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Why the last poll failed (`None`: it did not).
    pub last_error: Option<String>,
    pub last_polled_at: Option<DateTime<Utc>>,
    /// When it is due; while a poller holds it, the end of that poller's lease.
    pub next_poll_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// The items of the last successful fetch (left empty by [`FeedRepository::feeds`]).
    pub items: Vec<FeedItem>,
    /// How many items the last successful fetch read.
    pub item_count: u64,
    /// Bumped by every change of its URL, name or interval (not by polls): a change is
    /// written only over the version it was made from.
    pub version: i64,
}

/// A download rule (qBittorrent's auto-downloading rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRule {
    pub id: Uuid,
    pub owner: OwnerId,
    pub name: String,
    pub enabled: bool,
    /// The owner's feeds it applies to (empty: all of them).
    pub feeds: Vec<Uuid>,
    pub patterns: RulePatterns,
    pub smart_filter: bool,
    /// A category of the owner (its folder is the destination).
    pub category: Option<String>,
    pub storage_profile: Option<ProfileId>,
    /// `None`: the server's default.
    pub seed: Option<bool>,
    pub created_at: DateTime<Utc>,
    /// Bumped by every change: a change is written only over the version it was made from
    /// (and compiled patterns are kept per version).
    pub version: i64,
}

/// How a match's submission ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchOutcome {
    /// Claimed, not submitted yet (or the claimer stopped before it could say).
    Pending,
    Submitted(JobId),
    /// Failed for good (the code says why).
    Failed(String),
    /// Failed for now (an unreachable .torrent, a backend down): tried again at a later
    /// poll.
    Retry(String),
}

/// An item a rule matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedMatch {
    pub rule: Uuid,
    pub feed: Uuid,
    pub item_key: String,
    pub title: String,
    /// The episode keys taken with it (smart filter), `,`-separated.
    pub episodes: String,
    pub outcome: MatchOutcome,
    pub created_at: DateTime<Utc>,
}

/// Which match: a rule's, of one item of one feed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MatchKey {
    pub rule: Uuid,
    pub feed: Uuid,
    pub item_key: String,
}

impl FeedMatch {
    pub fn key(&self) -> MatchKey {
        MatchKey {
            rule: self.rule,
            feed: self.feed,
            item_key: self.item_key.clone(),
        }
    }
}

/// What a claim of a (rule, feed, item) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchClaim {
    /// This caller inserted it: it submits the job, with the id it gave the claim.
    New,
    /// It failed for now before (or its claimer stopped long ago): this caller submits
    /// again, with this id (the one recorded at the first claim, so a job that attempt made
    /// is found rather than made twice).
    Retry(JobId),
    /// Someone has it, or one of its episodes was taken: nothing to do.
    Taken,
}

/// What a poll of a feed found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollRecord {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub last_error: Option<String>,
    /// `None`: keep the items of the last fetch (not modified, or an error).
    pub items: Option<Vec<FeedItem>>,
    pub polled_at: DateTime<Utc>,
    pub next_poll_at: DateTime<Utc>,
}

#[async_trait]
pub trait FeedRepository: Send + Sync + 'static {
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn create_feed(&self, feed: &Feed) -> Result<(), RepoError>;

    /// The owner's feeds, oldest first, without their items (`item_count` says how many).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn feeds(&self, owner: &OwnerId) -> Result<Vec<Feed>, RepoError>;

    /// # Errors
    /// Only `Unavailable` / `Unexpected` (another owner's feed is `None`).
    async fn feed(&self, owner: &OwnerId, id: Uuid) -> Result<Option<Feed>, RepoError>;

    /// Writes a feed's URL, name and interval and bumps its version, only if its version is
    /// still `feed.version`: `Ok(false)` (nothing written) when another change came first.
    /// With `new_url`, its validators are also forgotten and it is due at
    /// `feed.next_poll_at` (a poller's lease on it still holds). Nothing a poll writes is
    /// touched otherwise.
    ///
    /// # Errors
    /// `NotFound` for a feed the owner does not have.
    async fn update_feed(&self, feed: &Feed, new_url: bool) -> Result<bool, RepoError>;

    /// Deletes a feed and its items.
    ///
    /// # Errors
    /// `NotFound` for a feed the owner does not have.
    async fn delete_feed(&self, owner: &OwnerId, id: Uuid) -> Result<(), RepoError>;

    /// Takes up to `limit` feeds due at `now` (any owner's) and not leased past `now`, each
    /// with a conditional update of its `next_poll_at` and its lease to `lease_until`: of
    /// several pollers, one gets each feed.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Feed>, RepoError>;

    /// Takes one feed of the owner now (its lease and `next_poll_at` to `lease_until`), due
    /// or not, unless a poller holds it (a lease given by [`Self::claim_due`] or this, not
    /// yet ended by [`Self::record_poll`], runs past `now`); `None` when it is held.
    ///
    /// # Errors
    /// `NotFound` for a feed the owner does not have.
    async fn claim_now(
        &self,
        owner: &OwnerId,
        id: Uuid,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Feed>, RepoError>;

    /// Records a poll (and the next one) of a feed that may have been deleted meanwhile, and
    /// ends the poller's lease.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn record_poll(&self, id: Uuid, poll: &PollRecord) -> Result<(), RepoError>;

    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn create_rule(&self, rule: &FeedRule) -> Result<(), RepoError>;

    /// The owner's rules, oldest first.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn rules(&self, owner: &OwnerId) -> Result<Vec<FeedRule>, RepoError>;

    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn rule(&self, owner: &OwnerId, id: Uuid) -> Result<Option<FeedRule>, RepoError>;

    /// Replaces a rule's fields (not its owner, id or creation time) and bumps its version,
    /// only if its version is still `rule.version`: `Ok(false)` (nothing written) when
    /// another change came first.
    ///
    /// # Errors
    /// `NotFound` for a rule the owner does not have.
    async fn update_rule(&self, rule: &FeedRule) -> Result<bool, RepoError>;

    /// Deletes a rule with its matches and taken episodes.
    ///
    /// # Errors
    /// `NotFound` for a rule the owner does not have.
    async fn delete_rule(&self, owner: &OwnerId, id: Uuid) -> Result<(), RepoError>;

    /// The episode keys the rule took (smart filter).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn taken_episodes(&self, rule: Uuid) -> Result<Vec<String>, RepoError>;

    /// Claims the item (`matched.feed`, `matched.item_key`) for `matched.rule`, with its
    /// `episodes` (keys, each unique per rule), all or nothing, recording `job` as the id
    /// its job is to have: `New` for the one caller that inserted them; `Retry` (with the
    /// id recorded first, else `job`) for the one caller that moved a match in `Retry` (or
    /// `Pending` since before `stale_before`) back to `Pending`; else `Taken`. A match
    /// recorded before matches were kept per feed holds its item key in every feed of the
    /// rule (`Taken` elsewhere).
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn claim_match(
        &self,
        matched: &FeedMatch,
        episodes: &[String],
        job: JobId,
        stale_before: DateTime<Utc>,
    ) -> Result<MatchClaim, RepoError>;

    /// Records how a claimed match's submission ended.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn settle_match(
        &self,
        matched: &MatchKey,
        outcome: &MatchOutcome,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError>;

    /// A rule's matches, newest first, at most `limit`.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn matches(&self, rule: Uuid, limit: u64) -> Result<Vec<FeedMatch>, RepoError>;

    /// The matches of a feed's items (any rule of the feed's owner), newest first.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn feed_matches(&self, feed: Uuid, limit: u64) -> Result<Vec<FeedMatch>, RepoError>;
}

/// A fetched feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedFetch {
    /// `304`: nothing changed since the validators sent.
    NotModified,
    Fetched {
        items: Vec<FeedItem>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// Limits on what a feed may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedLimits {
    pub max_bytes: u64,
    pub max_items: usize,
}

#[async_trait]
pub trait FeedSource: Send + Sync + 'static {
    /// Refuses a URL whose host is, or resolves to, an internal address (nothing is sent).
    ///
    /// # Errors
    /// `NotAllowed`, `Unreachable` (the name does not resolve).
    async fn check(&self, url: &ferry_domain::FetchUrl) -> Result<(), FetchError>;

    /// GETs the feed with `If-None-Match` / `If-Modified-Since` from the validators, through
    /// the same guard and proxy as URL jobs, and reads its items.
    ///
    /// # Errors
    /// `NotAllowed`, `Unreachable`, `Status`, `TooLarge`; `Unexpected` for a body that is
    /// not a feed (the message says what is wrong).
    async fn fetch(
        &self,
        url: &ferry_domain::FetchUrl,
        etag: Option<&str>,
        last_modified: Option<&str>,
        limits: FeedLimits,
    ) -> Result<FeedFetch, FetchError>;
}
