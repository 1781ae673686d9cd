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
    /// The items of the last successful fetch.
    pub items: Vec<FeedItem>,
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

/// What a claim of a (rule, item) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchClaim {
    /// This caller inserted it: it submits the job.
    New,
    /// It failed for now before (or its claimer stopped long ago): this caller submits
    /// again.
    Retry,
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

    /// The owner's feeds, oldest first.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn feeds(&self, owner: &OwnerId) -> Result<Vec<Feed>, RepoError>;

    /// # Errors
    /// Only `Unavailable` / `Unexpected` (another owner's feed is `None`).
    async fn feed(&self, owner: &OwnerId, id: Uuid) -> Result<Option<Feed>, RepoError>;

    /// Changes a feed's URL, name, interval and next poll.
    ///
    /// # Errors
    /// `NotFound` for a feed the owner does not have.
    async fn update_feed(&self, feed: &Feed) -> Result<(), RepoError>;

    /// Deletes a feed and its items.
    ///
    /// # Errors
    /// `NotFound` for a feed the owner does not have.
    async fn delete_feed(&self, owner: &OwnerId, id: Uuid) -> Result<(), RepoError>;

    /// Takes up to `limit` feeds due at `now` (any owner's), each with a conditional update
    /// of its `next_poll_at` to `lease_until`: of several pollers, one gets each feed.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Feed>, RepoError>;

    /// Takes one feed of the owner now, due or not, unless a poller holds it (its lease
    /// runs past `now`); `None` when it is held.
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

    /// Records a poll (and the next one) of a feed that may have been deleted meanwhile.
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

    /// Replaces a rule's fields (not its owner, id or creation time).
    ///
    /// # Errors
    /// `NotFound` for a rule the owner does not have.
    async fn update_rule(&self, rule: &FeedRule) -> Result<(), RepoError>;

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

    /// Claims `item` for `matched.rule`, with its `episodes` (keys, each unique per rule),
    /// all or nothing: `New` for the one caller that inserted them; `Retry` for the one
    /// caller that moved a match in `Retry` (or `Pending` since before `stale_before`) back
    /// to `Pending`; else `Taken`.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn claim_match(
        &self,
        matched: &FeedMatch,
        episodes: &[String],
        stale_before: DateTime<Utc>,
    ) -> Result<MatchClaim, RepoError>;

    /// Records how a claimed match's submission ended.
    ///
    /// # Errors
    /// Only `Unavailable` / `Unexpected`.
    async fn settle_match(
        &self,
        rule: Uuid,
        item_key: &str,
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
