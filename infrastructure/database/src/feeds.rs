//! `FeedRepository` on sea-orm (schema: `m20270101_000002_feeds`, matches per feed and
//! versions in `m20270102_000001_feed_matches_per_feed`): feeds claimed by a conditional
//! update of their next poll time and lease, changes written over the version they were
//! made from, matches and episodes claimed by inserts under their primary keys (one
//! transaction for a match and its episodes).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_application::ports::{
    Feed, FeedMatch, FeedRepository, FeedRule, MatchClaim, MatchKey, MatchOutcome, PollRecord,
    RepoError,
};
use ferry_domain::feed::RulePatterns;
use ferry_domain::{JobId, OwnerId, ProfileId};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, Func, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use crate::db_error;

mod entity {
    pub mod feed {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "feeds")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub owner: String,
            pub url: String,
            pub name: String,
            pub interval_secs: i32,
            pub etag: Option<String>,
            pub last_modified: Option<String>,
            pub last_error: Option<String>,
            pub last_polled_at: Option<ChronoDateTimeUtc>,
            pub next_poll_at: ChronoDateTimeUtc,
            pub created_at: ChronoDateTimeUtc,
            pub items: String,
            /// The end of a poller's lease (`None`: no poller holds it).
            pub leased_until: Option<ChronoDateTimeUtc>,
            pub item_count: i64,
            pub version: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod rule {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "feed_rules")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub owner: String,
            pub name: String,
            pub enabled: bool,
            pub feeds: String,
            pub must_contain: String,
            pub must_not_contain: String,
            pub use_regex: bool,
            pub episode_filter: String,
            pub smart_filter: bool,
            pub category: Option<String>,
            pub storage_profile: Option<Uuid>,
            pub seed: Option<bool>,
            pub created_at: ChronoDateTimeUtc,
            pub version: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod matched {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "feed_matches")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub rule_id: Uuid,
            #[sea_orm(primary_key, auto_increment = false)]
            pub feed_id: Uuid,
            #[sea_orm(primary_key, auto_increment = false)]
            pub item_key: String,
            pub title: String,
            pub episodes: String,
            pub status: String,
            pub job_id: Option<Uuid>,
            pub error: Option<String>,
            pub created_at: ChronoDateTimeUtc,
            pub updated_at: ChronoDateTimeUtc,
            /// Recorded when matches were kept per rule and item only: it holds its item
            /// key in every feed of the rule.
            pub any_feed: bool,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod episode {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "feed_episodes")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub rule_id: Uuid,
            #[sea_orm(primary_key, auto_increment = false)]
            pub episode_key: String,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entity::{episode, feed, matched, rule};

pub struct SqlFeedRepository {
    db: DatabaseConnection,
}

impl SqlFeedRepository {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// A match already there is taken again only from `retry`, or from a claim left long
    /// ago, by one caller (a conditional update), with the job id it was first given (a
    /// match recorded before ids were, `job`).
    async fn claim_again(
        &self,
        m: &FeedMatch,
        job: JobId,
        stale_before: DateTime<Utc>,
    ) -> Result<MatchClaim, RepoError> {
        let result = matched::Entity::update_many()
            .col_expr(matched::Column::Status, Expr::value("pending"))
            .col_expr(matched::Column::UpdatedAt, Expr::value(m.created_at))
            .col_expr(
                matched::Column::JobId,
                Func::coalesce([
                    Expr::col(matched::Column::JobId),
                    Expr::value(job.as_uuid()),
                ])
                .into(),
            )
            .filter(matched::Column::RuleId.eq(m.rule))
            .filter(matched::Column::FeedId.eq(m.feed))
            .filter(matched::Column::ItemKey.eq(m.item_key.as_str()))
            .filter(
                Condition::any()
                    .add(matched::Column::Status.eq("retry"))
                    .add(
                        Condition::all()
                            .add(matched::Column::Status.eq("pending"))
                            .add(matched::Column::UpdatedAt.lt(stale_before)),
                    ),
            )
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if result.rows_affected != 1 {
            return Ok(MatchClaim::Taken);
        }
        // Ours now (pending since just now): nobody else writes its id.
        let recorded: Option<Option<Uuid>> = matched::Entity::find()
            .select_only()
            .column(matched::Column::JobId)
            .filter(matched::Column::RuleId.eq(m.rule))
            .filter(matched::Column::FeedId.eq(m.feed))
            .filter(matched::Column::ItemKey.eq(m.item_key.as_str()))
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(db_error)?;
        let id = recorded.flatten().map_or(job, JobId::from_uuid);
        Ok(MatchClaim::Retry(id))
    }
}

fn unexpected(e: impl std::fmt::Display) -> RepoError {
    RepoError::Unexpected(anyhow::anyhow!("{e}"))
}

fn to_feed(row: feed::Model) -> Result<Feed, RepoError> {
    Ok(Feed {
        id: row.id,
        owner: OwnerId::parse(&row.owner)
            .ok_or_else(|| unexpected("a stored owner does not parse"))?,
        url: row.url,
        name: row.name,
        interval_secs: u32::try_from(row.interval_secs).unwrap_or(u32::MAX),
        etag: row.etag,
        last_modified: row.last_modified,
        last_error: row.last_error,
        last_polled_at: row.last_polled_at,
        next_poll_at: row.next_poll_at,
        created_at: row.created_at,
        items: serde_json::from_str(&row.items).unwrap_or_default(),
        item_count: u64::try_from(row.item_count).unwrap_or_default(),
        version: row.version,
    })
}

fn to_rule(row: rule::Model) -> Result<FeedRule, RepoError> {
    Ok(FeedRule {
        id: row.id,
        owner: OwnerId::parse(&row.owner)
            .ok_or_else(|| unexpected("a stored owner does not parse"))?,
        name: row.name,
        enabled: row.enabled,
        feeds: serde_json::from_str(&row.feeds).unwrap_or_default(),
        patterns: RulePatterns {
            must_contain: row.must_contain,
            must_not_contain: row.must_not_contain,
            use_regex: row.use_regex,
            episode_filter: row.episode_filter,
        },
        smart_filter: row.smart_filter,
        category: row.category,
        storage_profile: row.storage_profile.map(ProfileId::from_uuid),
        seed: row.seed,
        created_at: row.created_at,
        version: row.version,
    })
}

fn rule_row(r: &FeedRule) -> Result<rule::ActiveModel, RepoError> {
    Ok(rule::ActiveModel {
        id: Set(r.id),
        owner: Set(r.owner.as_str().to_owned()),
        name: Set(r.name.clone()),
        enabled: Set(r.enabled),
        feeds: Set(serde_json::to_string(&r.feeds).map_err(unexpected)?),
        must_contain: Set(r.patterns.must_contain.clone()),
        must_not_contain: Set(r.patterns.must_not_contain.clone()),
        use_regex: Set(r.patterns.use_regex),
        episode_filter: Set(r.patterns.episode_filter.clone()),
        smart_filter: Set(r.smart_filter),
        category: Set(r.category.clone()),
        storage_profile: Set(r.storage_profile.map(|p| p.as_uuid())),
        seed: Set(r.seed),
        created_at: Set(r.created_at),
        version: Set(r.version),
    })
}

fn to_match(row: matched::Model) -> FeedMatch {
    let error = row.error.unwrap_or_default();
    FeedMatch {
        rule: row.rule_id,
        feed: row.feed_id,
        item_key: row.item_key,
        title: row.title,
        episodes: row.episodes,
        outcome: match (row.status.as_str(), row.job_id) {
            ("submitted", Some(id)) => MatchOutcome::Submitted(JobId::from_uuid(id)),
            ("failed", _) => MatchOutcome::Failed(error),
            ("retry", _) => MatchOutcome::Retry(error),
            _ => MatchOutcome::Pending,
        },
        created_at: row.created_at,
    }
}

/// A feed row's count of items, as stored.
fn count(items: usize) -> i64 {
    i64::try_from(items).unwrap_or(i64::MAX)
}

/// Whether the owner has feed `id` (a conditional update that changed nothing tells apart a
/// feed that changed meanwhile from one that is not there).
async fn feed_exists(
    db: &DatabaseConnection,
    owner: &OwnerId,
    id: Uuid,
) -> Result<bool, RepoError> {
    Ok(feed::Entity::find_by_id(id)
        .filter(feed::Column::Owner.eq(owner.as_str()))
        .count(db)
        .await
        .map_err(db_error)?
        > 0)
}

/// No poller's lease on the feed runs past `now`.
fn not_leased(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(feed::Column::LeasedUntil.is_null())
        .add(feed::Column::LeasedUntil.lte(now))
}

fn outcome_columns(o: &MatchOutcome) -> (&'static str, Option<Uuid>, Option<String>) {
    match o {
        MatchOutcome::Pending => ("pending", None, None),
        MatchOutcome::Submitted(id) => ("submitted", Some(id.as_uuid()), None),
        MatchOutcome::Failed(e) => ("failed", None, Some(e.clone())),
        MatchOutcome::Retry(e) => ("retry", None, Some(e.clone())),
    }
}

#[async_trait]
impl FeedRepository for SqlFeedRepository {
    async fn create_feed(&self, f: &Feed) -> Result<(), RepoError> {
        let row = feed::ActiveModel {
            id: Set(f.id),
            owner: Set(f.owner.as_str().to_owned()),
            url: Set(f.url.clone()),
            name: Set(f.name.clone()),
            interval_secs: Set(i32::try_from(f.interval_secs).unwrap_or(i32::MAX)),
            etag: Set(f.etag.clone()),
            last_modified: Set(f.last_modified.clone()),
            last_error: Set(f.last_error.clone()),
            last_polled_at: Set(f.last_polled_at),
            next_poll_at: Set(f.next_poll_at),
            created_at: Set(f.created_at),
            items: Set(serde_json::to_string(&f.items).map_err(unexpected)?),
            leased_until: Set(None),
            item_count: Set(count(f.items.len())),
            version: Set(f.version),
        };
        feed::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn feeds(&self, owner: &OwnerId) -> Result<Vec<Feed>, RepoError> {
        use sea_orm::Iterable;
        // Every column but the items (a feed's items may weigh megabytes): an empty list
        // stands in for them.
        feed::Entity::find()
            .select_only()
            .columns(feed::Column::iter().filter(|c| !matches!(c, feed::Column::Items)))
            .column_as(Expr::val("[]"), feed::Column::Items)
            .filter(feed::Column::Owner.eq(owner.as_str()))
            .order_by_asc(feed::Column::CreatedAt)
            .order_by_asc(feed::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_feed)
            .collect()
    }

    async fn feed(&self, owner: &OwnerId, id: Uuid) -> Result<Option<Feed>, RepoError> {
        feed::Entity::find_by_id(id)
            .filter(feed::Column::Owner.eq(owner.as_str()))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .map(to_feed)
            .transpose()
    }

    async fn update_feed(&self, f: &Feed, new_url: bool) -> Result<bool, RepoError> {
        let mut update = feed::Entity::update_many()
            .col_expr(feed::Column::Url, Expr::value(f.url.clone()))
            .col_expr(feed::Column::Name, Expr::value(f.name.clone()))
            .col_expr(
                feed::Column::IntervalSecs,
                Expr::value(i32::try_from(f.interval_secs).unwrap_or(i32::MAX)),
            )
            .col_expr(
                feed::Column::Version,
                Expr::col(feed::Column::Version).add(1),
            );
        if new_url {
            update = update
                .col_expr(feed::Column::Etag, Expr::value(Option::<String>::None))
                .col_expr(
                    feed::Column::LastModified,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(feed::Column::NextPollAt, Expr::value(f.next_poll_at));
        }
        let result = update
            .filter(feed::Column::Id.eq(f.id))
            .filter(feed::Column::Owner.eq(f.owner.as_str()))
            .filter(feed::Column::Version.eq(f.version))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 1 {
            Ok(true)
        } else if feed_exists(&self.db, &f.owner, f.id).await? {
            Ok(false)
        } else {
            Err(RepoError::NotFound)
        }
    }

    async fn delete_feed(&self, owner: &OwnerId, id: Uuid) -> Result<(), RepoError> {
        let result = feed::Entity::delete_many()
            .filter(feed::Column::Id.eq(id))
            .filter(feed::Column::Owner.eq(owner.as_str()))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Err(RepoError::NotFound);
        }
        Ok(())
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Feed>, RepoError> {
        let due = feed::Entity::find()
            .filter(feed::Column::NextPollAt.lte(now))
            .filter(not_leased(now))
            .order_by_asc(feed::Column::NextPollAt)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        let mut claimed = Vec::new();
        for row in due {
            // Taken only if no other poller moved its time (or took it) meanwhile.
            let result = feed::Entity::update_many()
                .col_expr(feed::Column::NextPollAt, Expr::value(lease_until))
                .col_expr(feed::Column::LeasedUntil, Expr::value(Some(lease_until)))
                .filter(feed::Column::Id.eq(row.id))
                .filter(feed::Column::NextPollAt.eq(row.next_poll_at))
                .filter(not_leased(now))
                .exec(&self.db)
                .await
                .map_err(db_error)?;
            if result.rows_affected == 1 {
                claimed.push(to_feed(row)?);
            }
        }
        Ok(claimed)
    }

    async fn claim_now(
        &self,
        owner: &OwnerId,
        id: Uuid,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Feed>, RepoError> {
        let row = feed::Entity::find_by_id(id)
            .filter(feed::Column::Owner.eq(owner.as_str()))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or(RepoError::NotFound)?;
        if row.leased_until.is_some_and(|until| until > now) {
            return Ok(None);
        }
        let result = feed::Entity::update_many()
            .col_expr(feed::Column::NextPollAt, Expr::value(lease_until))
            .col_expr(feed::Column::LeasedUntil, Expr::value(Some(lease_until)))
            .filter(feed::Column::Id.eq(row.id))
            .filter(feed::Column::NextPollAt.eq(row.next_poll_at))
            .filter(not_leased(now))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 1 {
            Ok(Some(to_feed(row)?))
        } else {
            Ok(None)
        }
    }

    async fn record_poll(&self, id: Uuid, poll: &PollRecord) -> Result<(), RepoError> {
        let mut update = feed::Entity::update_many()
            .col_expr(feed::Column::Etag, Expr::value(poll.etag.clone()))
            .col_expr(
                feed::Column::LastModified,
                Expr::value(poll.last_modified.clone()),
            )
            .col_expr(
                feed::Column::LastError,
                Expr::value(poll.last_error.clone()),
            )
            .col_expr(feed::Column::LastPolledAt, Expr::value(poll.polled_at))
            .col_expr(feed::Column::NextPollAt, Expr::value(poll.next_poll_at))
            .col_expr(
                feed::Column::LeasedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            );
        if let Some(items) = &poll.items {
            update = update
                .col_expr(
                    feed::Column::Items,
                    Expr::value(serde_json::to_string(items).map_err(unexpected)?),
                )
                .col_expr(feed::Column::ItemCount, Expr::value(count(items.len())));
        }
        update
            .filter(feed::Column::Id.eq(id))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn create_rule(&self, r: &FeedRule) -> Result<(), RepoError> {
        rule::Entity::insert(rule_row(r)?)
            .exec_without_returning(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn rules(&self, owner: &OwnerId) -> Result<Vec<FeedRule>, RepoError> {
        rule::Entity::find()
            .filter(rule::Column::Owner.eq(owner.as_str()))
            .order_by_asc(rule::Column::CreatedAt)
            .order_by_asc(rule::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_rule)
            .collect()
    }

    async fn rule(&self, owner: &OwnerId, id: Uuid) -> Result<Option<FeedRule>, RepoError> {
        rule::Entity::find_by_id(id)
            .filter(rule::Column::Owner.eq(owner.as_str()))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .map(to_rule)
            .transpose()
    }

    async fn update_rule(&self, r: &FeedRule) -> Result<bool, RepoError> {
        let mut row = rule_row(r)?;
        // Not its owner, id or creation time.
        row.id = sea_orm::ActiveValue::NotSet;
        row.owner = sea_orm::ActiveValue::NotSet;
        row.created_at = sea_orm::ActiveValue::NotSet;
        row.version = Set(r.version.saturating_add(1));
        let result = rule::Entity::update_many()
            .set(row)
            .filter(rule::Column::Id.eq(r.id))
            .filter(rule::Column::Owner.eq(r.owner.as_str()))
            .filter(rule::Column::Version.eq(r.version))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 1 {
            return Ok(true);
        }
        let exists = rule::Entity::find_by_id(r.id)
            .filter(rule::Column::Owner.eq(r.owner.as_str()))
            .count(&self.db)
            .await
            .map_err(db_error)?
            > 0;
        if exists {
            Ok(false)
        } else {
            Err(RepoError::NotFound)
        }
    }

    async fn delete_rule(&self, owner: &OwnerId, id: Uuid) -> Result<(), RepoError> {
        let txn = self.db.begin().await.map_err(db_error)?;
        let result = rule::Entity::delete_many()
            .filter(rule::Column::Id.eq(id))
            .filter(rule::Column::Owner.eq(owner.as_str()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Err(RepoError::NotFound);
        }
        matched::Entity::delete_many()
            .filter(matched::Column::RuleId.eq(id))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        episode::Entity::delete_many()
            .filter(episode::Column::RuleId.eq(id))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)
    }

    async fn taken_episodes(&self, rule: Uuid) -> Result<Vec<String>, RepoError> {
        episode::Entity::find()
            .select_only()
            .column(episode::Column::EpisodeKey)
            .filter(episode::Column::RuleId.eq(rule))
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_error)
    }

    async fn claim_match(
        &self,
        m: &FeedMatch,
        episodes: &[String],
        job: JobId,
        stale_before: DateTime<Utc>,
    ) -> Result<MatchClaim, RepoError> {
        let row = matched::ActiveModel {
            rule_id: Set(m.rule),
            feed_id: Set(m.feed),
            item_key: Set(m.item_key.clone()),
            title: Set(m.title.clone()),
            episodes: Set(m.episodes.clone()),
            status: Set("pending".to_owned()),
            job_id: Set(Some(job.as_uuid())),
            error: Set(None),
            created_at: Set(m.created_at),
            updated_at: Set(m.created_at),
            any_feed: Set(false),
        };
        // The insert comes first: it takes SQLite's write lock (waiting its turn), where a
        // read first would fail at the write if another claim wrote meanwhile.
        let txn = self.db.begin().await.map_err(db_error)?;
        // Inserted only if absent (`ON CONFLICT DO NOTHING`): a match already there is the
        // common case at every poll, and a failed insert would be an error in PostgreSQL's
        // log each time.
        let inserted = matched::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    matched::Column::RuleId,
                    matched::Column::FeedId,
                    matched::Column::ItemKey,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .map_err(db_error)?;
        if inserted != 1 {
            txn.rollback().await.map_err(db_error)?;
            return self.claim_again(m, job, stale_before).await;
        }
        // A match recorded before matches were kept per feed holds the key in every feed.
        let held_elsewhere = matched::Entity::find()
            .filter(matched::Column::RuleId.eq(m.rule))
            .filter(matched::Column::ItemKey.eq(m.item_key.as_str()))
            .filter(matched::Column::AnyFeed.eq(true))
            .filter(matched::Column::FeedId.ne(m.feed))
            .count(&txn)
            .await
            .map_err(db_error)?
            > 0;
        if held_elsewhere {
            txn.rollback().await.map_err(db_error)?;
            return Ok(MatchClaim::Taken);
        }
        for key in episodes {
            let row = episode::ActiveModel {
                rule_id: Set(m.rule),
                episode_key: Set(key.clone()),
            };
            let inserted = episode::Entity::insert(row)
                .on_conflict(
                    OnConflict::columns([episode::Column::RuleId, episode::Column::EpisodeKey])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
            if inserted != 1 {
                txn.rollback().await.map_err(db_error)?;
                return Ok(MatchClaim::Taken);
            }
        }
        txn.commit().await.map_err(db_error)?;
        Ok(MatchClaim::New)
    }

    async fn settle_match(
        &self,
        key: &MatchKey,
        outcome: &MatchOutcome,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let (status, job_id, error) = outcome_columns(outcome);
        let mut update = matched::Entity::update_many()
            .col_expr(matched::Column::Status, Expr::value(status))
            .col_expr(matched::Column::Error, Expr::value(error))
            .col_expr(matched::Column::UpdatedAt, Expr::value(now));
        // The id recorded at the claim stays until a job is known: a later attempt submits
        // with it again.
        if let Some(id) = job_id {
            update = update.col_expr(matched::Column::JobId, Expr::value(Some(id)));
        }
        update
            .filter(matched::Column::RuleId.eq(key.rule))
            .filter(matched::Column::FeedId.eq(key.feed))
            .filter(matched::Column::ItemKey.eq(key.item_key.as_str()))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn matches(&self, rule: Uuid, limit: u64) -> Result<Vec<FeedMatch>, RepoError> {
        Ok(matched::Entity::find()
            .filter(matched::Column::RuleId.eq(rule))
            .order_by_desc(matched::Column::CreatedAt)
            .order_by_asc(matched::Column::ItemKey)
            .order_by_asc(matched::Column::FeedId)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_match)
            .collect())
    }

    async fn feed_matches(&self, feed: Uuid, limit: u64) -> Result<Vec<FeedMatch>, RepoError> {
        Ok(matched::Entity::find()
            .filter(matched::Column::FeedId.eq(feed))
            .order_by_desc(matched::Column::CreatedAt)
            .order_by_asc(matched::Column::ItemKey)
            .order_by_asc(matched::Column::FeedId)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_match)
            .collect())
    }
}
