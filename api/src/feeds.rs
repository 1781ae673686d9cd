//! `/api/v1/feeds` and `/api/v1/feed-rules`: RSS feeds polled for their owner, and download
//! rules (qBittorrent's auto-downloader) that turn matching items into jobs.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ferry_application::feeds::RuleChange as Change;
use ferry_application::ports::{FeedItem, FeedMatch, FeedRule, ItemLink, MatchOutcome};
use ferry_application::{Feed, FeedInput, FeedsError};
use ferry_domain::feed::{MAX_PATTERN_CHARS, RulePatterns};
use ferry_domain::{ErrorCode, ProfileId};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{MaybeUndefined, ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use uuid::Uuid;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, Fails, statuses};

#[derive(Tags)]
enum Tag {
    /// RSS feeds and download rules: items that match a rule become jobs, once each.
    Feeds,
}

pub struct FeedsApi {
    pub state: Arc<ApiState>,
}

statuses! {
    CreateFails: 400, 401, 403, 413, 415, 422, 429, 500, 503;
    ListFails: 401, 403, 429, 500, 503;
    ReadFails: 401, 403, 404, 429, 500, 503;
    ChangeFails: 400, 401, 403, 404, 413, 415, 422, 429, 500, 503;
}

/// A JSON string of at most `N` characters (and nothing else: not a number or a boolean).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounded<const N: usize>(pub String);

impl<const N: usize> Type for Bounded<N> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> std::borrow::Cow<'static, str> {
        format!("string(max_length={N})").into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new("string");
        schema.max_length = Some(N);
        MetaSchemaRef::Inline(Box::new(schema))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl<const N: usize> ParseFromJSON for Bounded<N> {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        match value {
            Some(serde_json::Value::String(text)) if text.chars().count() <= N => Ok(Self(text)),
            Some(serde_json::Value::String(_)) => {
                Err(ParseError::custom(format!("at most {N} characters")))
            }
            other => Err(ParseError::expected_type(other.unwrap_or_default())),
        }
    }
}

impl<const N: usize> ToJSON for Bounded<N> {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}

type Url = Bounded<2048>;
type Name = Bounded<200>;
type Pattern = Bounded<MAX_PATTERN_CHARS>;

/// A new feed.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct NewFeed {
    /// The feed's `http(s)` URL. Internal addresses are refused (`422 url_not_allowed`).
    pub url: Url,
    pub name: Option<Name>,
    /// Seconds between polls (default `feeds.default_interval`; at least
    /// `feeds.min_interval`).
    #[oai(validator(minimum(value = "1"), maximum(value = "604800")))]
    pub interval_secs: Option<u64>,
}

/// Changes to a feed (absent fields stay).
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct FeedChange {
    pub url: Option<Url>,
    pub name: Option<Name>,
    #[oai(validator(minimum(value = "1"), maximum(value = "604800")))]
    pub interval_secs: Option<u64>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct FeedDto {
    pub id: Uuid,
    pub url: String,
    pub name: String,
    pub interval_secs: u64,
    /// Why the last poll failed (absent: it did not).
    pub last_error: Option<String>,
    pub last_polled_at: Option<DateTime<Utc>>,
    pub next_poll_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Items the last fetch read.
    pub items: u64,
}

impl From<&Feed> for FeedDto {
    fn from(f: &Feed) -> Self {
        Self {
            id: f.id,
            url: f.url.clone(),
            name: f.name.clone(),
            interval_secs: u64::from(f.interval_secs),
            last_error: f.last_error.clone(),
            last_polled_at: f.last_polled_at,
            next_poll_at: f.next_poll_at,
            created_at: f.created_at,
            items: f.item_count,
        }
    }
}

/// What became of an item a rule matched.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ItemMatchDto {
    pub rule: Uuid,
    /// `pending`, `submitted`, `failed` or `retry` (tried again at the next poll).
    pub status: String,
    pub job_id: Option<Uuid>,
    pub error: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct FeedItemDto {
    pub title: String,
    /// The item's guid (else its link).
    pub key: String,
    pub published: Option<String>,
    pub size: Option<u64>,
    /// `magnet`, `torrent` (a .torrent URL) or `none`.
    pub download: String,
    pub matches: Vec<ItemMatchDto>,
}

fn outcome(o: &MatchOutcome) -> (String, Option<Uuid>, Option<String>) {
    match o {
        MatchOutcome::Pending => ("pending".into(), None, None),
        MatchOutcome::Submitted(id) => ("submitted".into(), Some(id.as_uuid()), None),
        MatchOutcome::Failed(e) => ("failed".into(), None, Some(e.clone())),
        MatchOutcome::Retry(e) => ("retry".into(), None, Some(e.clone())),
    }
}

fn item_dto(item: &FeedItem, matches: &HashMap<&str, Vec<&FeedMatch>>) -> FeedItemDto {
    FeedItemDto {
        title: item.title.clone(),
        key: item.key.clone(),
        published: item.published.clone(),
        size: item.size,
        download: match item.link {
            Some(ItemLink::Magnet(_)) => "magnet",
            Some(ItemLink::Torrent(_)) => "torrent",
            None => "none",
        }
        .into(),
        matches: matches
            .get(item.key.as_str())
            .into_iter()
            .flatten()
            .map(|m| {
                let (status, job_id, error) = outcome(&m.outcome);
                ItemMatchDto {
                    rule: m.rule,
                    status,
                    job_id,
                    error,
                }
            })
            .collect(),
    }
}

/// A download rule, as qBittorrent's auto-downloader applies it.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct NewRule {
    pub name: Name,
    /// Default true.
    pub enabled: Option<bool>,
    /// Your feeds it applies to (absent or empty: all of them).
    #[oai(validator(max_items = 100))]
    pub feeds: Option<Vec<Uuid>>,
    /// Wildcards: `|` separates alternatives, each a list of whitespace-separated words
    /// (`*`, `?`) that must all appear; with `use_regex`, one regular expression.
    /// Case-insensitive; empty matches everything.
    pub must_contain: Option<Pattern>,
    /// As `must_contain`; an item any alternative matches is skipped.
    pub must_not_contain: Option<Pattern>,
    pub use_regex: Option<bool>,
    /// `1x2;8-15;30-;`: season 1, episode 2, 8 to 15, 30 onwards (and later seasons).
    pub episode_filter: Option<Pattern>,
    /// Download each episode once (a later `REPACK` or `PROPER` once more).
    pub smart_filter: Option<bool>,
    /// One of your categories (the qBittorrent API's): its folder is the destination.
    pub category: Option<Name>,
    /// One of your storage profiles (not with `category`).
    pub storage_profile: Option<Uuid>,
    /// Seed the finished jobs (absent: the server's default).
    pub seed: Option<bool>,
}

/// Changes to a rule (absent fields stay; `null` clears `category`, `storage_profile` and
/// `seed`).
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct RuleChange {
    pub name: Option<Name>,
    pub enabled: Option<bool>,
    #[oai(validator(max_items = 100))]
    pub feeds: Option<Vec<Uuid>>,
    pub must_contain: Option<Pattern>,
    pub must_not_contain: Option<Pattern>,
    pub use_regex: Option<bool>,
    pub episode_filter: Option<Pattern>,
    pub smart_filter: Option<bool>,
    pub category: MaybeUndefined<Name>,
    pub storage_profile: MaybeUndefined<Uuid>,
    pub seed: MaybeUndefined<bool>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RuleDto {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
    pub feeds: Vec<Uuid>,
    pub must_contain: String,
    pub must_not_contain: String,
    pub use_regex: bool,
    pub episode_filter: String,
    pub smart_filter: bool,
    pub category: Option<String>,
    pub storage_profile: Option<Uuid>,
    pub seed: Option<bool>,
    pub created_at: DateTime<Utc>,
}

impl From<&FeedRule> for RuleDto {
    fn from(r: &FeedRule) -> Self {
        Self {
            id: r.id,
            name: r.name.clone(),
            enabled: r.enabled,
            feeds: r.feeds.clone(),
            must_contain: r.patterns.must_contain.clone(),
            must_not_contain: r.patterns.must_not_contain.clone(),
            use_regex: r.patterns.use_regex,
            episode_filter: r.patterns.episode_filter.clone(),
            smart_filter: r.smart_filter,
            category: r.category.clone(),
            storage_profile: r.storage_profile.map(|p| p.as_uuid()),
            seed: r.seed,
            created_at: r.created_at,
        }
    }
}

/// An item a rule matched, and what became of it.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct MatchDto {
    pub title: String,
    pub item_key: String,
    pub feed: Uuid,
    /// The episodes the smart filter took with it (`S01E02`, `S01E02-REPACK`), `,`-separated.
    pub episodes: String,
    /// `pending`, `submitted`, `failed` or `retry` (tried again at the next poll).
    pub status: String,
    pub job_id: Option<Uuid>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<&FeedMatch> for MatchDto {
    fn from(m: &FeedMatch) -> Self {
        let (status, job_id, error) = outcome(&m.outcome);
        Self {
            title: m.title.clone(),
            item_key: m.item_key.clone(),
            feed: m.feed,
            episodes: m.episodes.clone(),
            status,
            job_id,
            error,
            created_at: m.created_at,
        }
    }
}

#[derive(ApiResponse)]
enum FeedCreated {
    /// The feed was saved; it is polled at once.
    #[oai(status = 201)]
    Created(Json<FeedDto>),
}

#[derive(ApiResponse)]
enum RuleCreated {
    /// The rule was saved; it applies from the next poll of its feeds.
    #[oai(status = 201)]
    Created(Json<RuleDto>),
}

#[derive(ApiResponse)]
enum Deleted {
    #[oai(status = 204)]
    Deleted,
}

impl From<FeedsError> for ApiError {
    fn from(e: FeedsError) -> Self {
        use ErrorCode as C;
        let message = e.to_string();
        let code = match e {
            FeedsError::InvalidFeed(_) => C::InvalidFeed,
            FeedsError::InvalidRule(_) | FeedsError::InvalidRuleField(_) => C::InvalidFeedRule,
            FeedsError::InvalidUrl(_) => C::InvalidUrl,
            FeedsError::UrlNotAllowed(_) => C::UrlNotAllowed,
            FeedsError::Blocked(_) => C::Blocked,
            FeedsError::Limit(_) => C::FeedLimitReached,
            FeedsError::FeedNotFound => C::FeedNotFound,
            FeedsError::RuleNotFound => C::FeedRuleNotFound,
            FeedsError::Unavailable(m) => {
                return ferry_application::JobsError::Unavailable(m).into();
            }
            FeedsError::Unexpected(e) => return Self::internal(&format!("{e:#}")),
        };
        Self::new(code, message)
    }
}

fn feed_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse()
        .map_err(|_| ApiError::new(ErrorCode::FeedNotFound, format!("no feed {id:?}")))
}

fn rule_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse()
        .map_err(|_| ApiError::new(ErrorCode::FeedRuleNotFound, format!("no feed rule {id:?}")))
}

fn text<const N: usize>(v: Option<Bounded<N>>) -> Option<String> {
    v.map(|b| b.0)
}

/// `""` means none.
fn category(v: Option<Name>) -> Option<String> {
    text(v).filter(|c| !c.is_empty())
}

/// A nullable field of a change: absent stays (`None`), `null` clears (`Some(None)`).
fn nullable<T, U>(v: MaybeUndefined<T>, f: impl FnOnce(T) -> Option<U>) -> Option<Option<U>> {
    match v {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(f(v)),
    }
}

/// Matches answered at most.
const MATCHES_MAX: u64 = 1000;

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Feeds")]
impl FeedsApi {
    /// Add an RSS feed (polled at once, then every `interval_secs`).
    #[oai(path = "/feeds", method = "post", operation_id = "createFeed")]
    async fn create_feed(
        &self,
        req: &poem::Request,
        caller: Caller,
        body: Json<NewFeed>,
    ) -> Result<FeedCreated, Fails<CreateFails>> {
        let body = body.0;
        let feed = self
            .state
            .feeds
            .create(
                caller.owner(),
                FeedInput {
                    url: Some(body.url.0),
                    name: text(body.name),
                    interval_secs: body.interval_secs,
                },
            )
            .await?;
        caller
            .audit(&self.state, req, "feed.create", feed.id.to_string())
            .await;
        Ok(FeedCreated::Created(Json((&feed).into())))
    }

    /// The caller's feeds.
    #[oai(path = "/feeds", method = "get", operation_id = "listFeeds")]
    async fn list_feeds(&self, caller: Caller) -> Result<Json<Vec<FeedDto>>, Fails<ListFails>> {
        let feeds = self.state.feeds.list(caller.owner()).await?;
        Ok(Json(feeds.iter().map(FeedDto::from).collect()))
    }

    /// One feed.
    #[oai(path = "/feeds/:id", method = "get", operation_id = "getFeed")]
    async fn get_feed(
        &self,
        caller: Caller,
        id: Path<String>,
    ) -> Result<Json<FeedDto>, Fails<ReadFails>> {
        let feed = self.state.feeds.get(caller.owner(), feed_id(&id)?).await?;
        Ok(Json((&feed).into()))
    }

    /// Change a feed's URL, name or interval.
    #[oai(path = "/feeds/:id", method = "patch", operation_id = "updateFeed")]
    async fn update_feed(
        &self,
        req: &poem::Request,
        caller: Caller,
        id: Path<String>,
        body: Json<FeedChange>,
    ) -> Result<Json<FeedDto>, Fails<ChangeFails>> {
        let id = feed_id(&id)?;
        let body = body.0;
        let feed = self
            .state
            .feeds
            .update(
                caller.owner(),
                id,
                FeedInput {
                    url: text(body.url),
                    name: text(body.name),
                    interval_secs: body.interval_secs,
                },
            )
            .await?;
        caller
            .audit(&self.state, req, "feed.update", id.to_string())
            .await;
        Ok(Json((&feed).into()))
    }

    /// Delete a feed (its rules stay; jobs it made stay).
    #[oai(path = "/feeds/:id", method = "delete", operation_id = "deleteFeed")]
    async fn delete_feed(
        &self,
        req: &poem::Request,
        caller: Caller,
        id: Path<String>,
    ) -> Result<Deleted, Fails<ReadFails>> {
        let id = feed_id(&id)?;
        self.state.feeds.delete(caller.owner(), id).await?;
        caller
            .audit(&self.state, req, "feed.delete", id.to_string())
            .await;
        Ok(Deleted::Deleted)
    }

    /// Poll a feed now (unless a poll of it is under way) and answer it as it then is.
    #[oai(
        path = "/feeds/:id/refresh",
        method = "post",
        operation_id = "refreshFeed"
    )]
    async fn refresh_feed(
        &self,
        caller: Caller,
        id: Path<String>,
    ) -> Result<Json<FeedDto>, Fails<ReadFails>> {
        let feed = self
            .state
            .feeds
            .refresh(caller.owner(), feed_id(&id)?)
            .await?;
        Ok(Json((&feed).into()))
    }

    /// The items the last fetch of a feed read, with what the caller's rules made of them.
    #[oai(path = "/feeds/:id/items", method = "get", operation_id = "feedItems")]
    async fn feed_items(
        &self,
        caller: Caller,
        id: Path<String>,
    ) -> Result<Json<Vec<FeedItemDto>>, Fails<ReadFails>> {
        let (feed, matches) = self
            .state
            .feeds
            .feed_matches(caller.owner(), feed_id(&id)?)
            .await?;
        let mut by_key: HashMap<&str, Vec<&FeedMatch>> = HashMap::new();
        for m in &matches {
            by_key.entry(m.item_key.as_str()).or_default().push(m);
        }
        Ok(Json(
            feed.items.iter().map(|i| item_dto(i, &by_key)).collect(),
        ))
    }

    /// Add a download rule.
    #[oai(path = "/feed-rules", method = "post", operation_id = "createFeedRule")]
    async fn create_rule(
        &self,
        req: &poem::Request,
        caller: Caller,
        body: Json<NewRule>,
    ) -> Result<RuleCreated, Fails<CreateFails>> {
        let b = body.0;
        let rule = FeedRule {
            id: Uuid::nil(),
            owner: caller.owner().clone(),
            name: b.name.0,
            enabled: b.enabled.unwrap_or(true),
            feeds: b.feeds.unwrap_or_default(),
            patterns: RulePatterns {
                must_contain: text(b.must_contain).unwrap_or_default(),
                must_not_contain: text(b.must_not_contain).unwrap_or_default(),
                use_regex: b.use_regex.unwrap_or(false),
                episode_filter: text(b.episode_filter).unwrap_or_default(),
            },
            smart_filter: b.smart_filter.unwrap_or(false),
            category: category(b.category),
            storage_profile: b.storage_profile.map(ProfileId::from_uuid),
            seed: b.seed,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            version: 0,
        };
        let rule = self.state.feeds.create_rule(rule).await?;
        caller
            .audit(&self.state, req, "feed_rule.create", rule.id.to_string())
            .await;
        Ok(RuleCreated::Created(Json((&rule).into())))
    }

    /// The caller's download rules.
    #[oai(path = "/feed-rules", method = "get", operation_id = "listFeedRules")]
    async fn list_rules(&self, caller: Caller) -> Result<Json<Vec<RuleDto>>, Fails<ListFails>> {
        let rules = self.state.feeds.rules(caller.owner()).await?;
        Ok(Json(rules.iter().map(RuleDto::from).collect()))
    }

    /// One download rule.
    #[oai(path = "/feed-rules/:id", method = "get", operation_id = "getFeedRule")]
    async fn get_rule(
        &self,
        caller: Caller,
        id: Path<String>,
    ) -> Result<Json<RuleDto>, Fails<ReadFails>> {
        let rule = self.state.feeds.rule(caller.owner(), rule_id(&id)?).await?;
        Ok(Json((&rule).into()))
    }

    /// Change a download rule.
    #[oai(
        path = "/feed-rules/:id",
        method = "patch",
        operation_id = "updateFeedRule"
    )]
    async fn update_rule(
        &self,
        req: &poem::Request,
        caller: Caller,
        id: Path<String>,
        body: Json<RuleChange>,
    ) -> Result<Json<RuleDto>, Fails<ChangeFails>> {
        let id = rule_id(&id)?;
        let b = body.0;
        let change = Change {
            name: text(b.name),
            enabled: b.enabled,
            feeds: b.feeds,
            must_contain: text(b.must_contain),
            must_not_contain: text(b.must_not_contain),
            use_regex: b.use_regex,
            episode_filter: text(b.episode_filter),
            smart_filter: b.smart_filter,
            category: nullable(b.category, |c| category(Some(c))),
            storage_profile: nullable(b.storage_profile, |p| Some(ProfileId::from_uuid(p))),
            seed: nullable(b.seed, Some),
        };
        let rule = self
            .state
            .feeds
            .update_rule(caller.owner(), id, &change)
            .await?;
        caller
            .audit(&self.state, req, "feed_rule.update", id.to_string())
            .await;
        Ok(Json((&rule).into()))
    }

    /// Delete a download rule (with its matches; the jobs stay).
    #[oai(
        path = "/feed-rules/:id",
        method = "delete",
        operation_id = "deleteFeedRule"
    )]
    async fn delete_rule(
        &self,
        req: &poem::Request,
        caller: Caller,
        id: Path<String>,
    ) -> Result<Deleted, Fails<ReadFails>> {
        let id = rule_id(&id)?;
        self.state.feeds.delete_rule(caller.owner(), id).await?;
        caller
            .audit(&self.state, req, "feed_rule.delete", id.to_string())
            .await;
        Ok(Deleted::Deleted)
    }

    /// What a rule matched, newest first: each item once, with its job or why it has none.
    #[oai(
        path = "/feed-rules/:id/matches",
        method = "get",
        operation_id = "feedRuleMatches"
    )]
    async fn rule_matches(
        &self,
        caller: Caller,
        id: Path<String>,
    ) -> Result<Json<Vec<MatchDto>>, Fails<ReadFails>> {
        let matches = self
            .state
            .feeds
            .rule_matches(caller.owner(), rule_id(&id)?, MATCHES_MAX)
            .await?;
        Ok(Json(matches.iter().map(MatchDto::from).collect()))
    }
}
