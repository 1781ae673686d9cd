//! Feeds and rules, second step: a match is a rule's, of one item *of one feed* (primary key
//! rule + feed + item; two feeds of a rule may carry items with the same guid), and holds the
//! id its job is to have from the moment it is claimed; a feed's poller lease is a column of
//! its own (`leased_until`, ended by the poll), so a refresh can tell a held feed from one
//! merely due later; feeds and rules carry a version that every change bumps (a change is
//! written only over the version it was made from); a feed's item count is kept beside its
//! items, so the list of feeds does not read them.
//!
//! Matches recorded before are kept as they are, marked `any_feed`: each still holds its
//! item key in every feed of its rule, as it did, so nothing already matched is matched
//! (and downloaded) again through another feed.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Feeds {
    Table,
    LeasedUntil,
    ItemCount,
    Version,
}

#[derive(DeriveIden)]
enum FeedRules {
    Table,
    Version,
}

#[derive(DeriveIden, Clone, Copy)]
enum FeedMatches {
    Table,
    RuleId,
    FeedId,
    ItemKey,
    Title,
    Episodes,
    Status,
    JobId,
    Error,
    CreatedAt,
    UpdatedAt,
    AnyFeed,
}

/// The matches' table as it is rebuilt (SQLite cannot change a primary key in place).
#[derive(DeriveIden)]
enum FeedMatchesNext {
    Table,
}

const COLUMNS: &str =
    "rule_id, feed_id, item_key, title, episodes, status, job_id, error, created_at, updated_at";

/// `feed_matches` keyed by `key` (its constraint named `key_name`: PostgreSQL's default
/// name would follow the table's first name), under the name `table`.
fn matches_table(
    table: impl IntoIden,
    key_name: &str,
    key: &[FeedMatches],
) -> TableCreateStatement {
    let mut primary = Index::create();
    primary.name(key_name);
    for col in key {
        primary.col(*col);
    }
    Table::create()
        .table(table)
        .col(ColumnDef::new(FeedMatches::RuleId).uuid().not_null())
        .col(ColumnDef::new(FeedMatches::FeedId).uuid().not_null())
        .col(ColumnDef::new(FeedMatches::ItemKey).text().not_null())
        .col(ColumnDef::new(FeedMatches::Title).text().not_null())
        .col(ColumnDef::new(FeedMatches::Episodes).text().not_null())
        // pending, submitted, failed, retry
        .col(
            ColumnDef::new(FeedMatches::Status)
                .string_len(16)
                .not_null(),
        )
        // Set at the claim: the id the match's job gets.
        .col(ColumnDef::new(FeedMatches::JobId).uuid().null())
        .col(ColumnDef::new(FeedMatches::Error).text().null())
        .col(
            ColumnDef::new(FeedMatches::CreatedAt)
                .timestamp_with_time_zone()
                .not_null(),
        )
        .col(
            ColumnDef::new(FeedMatches::UpdatedAt)
                .timestamp_with_time_zone()
                .not_null(),
        )
        .col(
            ColumnDef::new(FeedMatches::AnyFeed)
                .boolean()
                .not_null()
                .default(false),
        )
        .primary_key(&mut primary)
        .to_owned()
}

/// Moves every row of `feed_matches` into a table keyed by `key` (`any_feed` set to
/// `any_feed`; rows that collide under a narrower key: the first kept), under the old name.
async fn rebuild_matches(
    manager: &SchemaManager<'_>,
    key_name: &str,
    key: &[FeedMatches],
    any_feed: &str,
) -> Result<(), DbErr> {
    let db = manager.get_connection();
    manager
        .create_table(matches_table(FeedMatchesNext::Table, key_name, key))
        .await?;
    // `WHERE TRUE`: without it SQLite would read `ON CONFLICT` as a join's `ON`.
    db.execute_unprepared(&format!(
        "INSERT INTO feed_matches_next ({COLUMNS}, any_feed) \
         SELECT {COLUMNS}, {any_feed} FROM feed_matches WHERE TRUE ORDER BY created_at \
         ON CONFLICT DO NOTHING"
    ))
    .await?;
    manager
        .drop_table(Table::drop().table(FeedMatches::Table).to_owned())
        .await?;
    manager
        .rename_table(
            Table::rename()
                .table(FeedMatchesNext::Table, FeedMatches::Table)
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("feed_matches_feed")
                .table(FeedMatches::Table)
                .col(FeedMatches::FeedId)
                .to_owned(),
        )
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on every database: the matches' table is rebuilt all or nothing,
    /// and on SQLite every statement then runs on one connection (another connection of
    /// the pool could still read the schema from before the table was dropped).
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column a statement: SQLite alters one thing at a time.
        for column in [
            ColumnDef::new(Feeds::LeasedUntil)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
            ColumnDef::new(Feeds::ItemCount)
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
            ColumnDef::new(Feeds::Version)
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Feeds::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(FeedRules::Table)
                    .add_column(
                        ColumnDef::new(FeedRules::Version)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let items = match manager.get_database_backend() {
            DatabaseBackend::Postgres => "items::json",
            _ => "items",
        };
        db.execute_unprepared(&format!(
            "UPDATE feeds SET item_count = json_array_length({items})"
        ))
        .await?;
        rebuild_matches(
            manager,
            "feed_matches_per_feed_pkey",
            &[
                FeedMatches::RuleId,
                FeedMatches::FeedId,
                FeedMatches::ItemKey,
            ],
            "TRUE",
        )
        .await?;
        // Claims look for an older match of the key in another feed.
        manager
            .create_index(
                Index::create()
                    .name("feed_matches_rule_item")
                    .table(FeedMatches::Table)
                    .col(FeedMatches::RuleId)
                    .col(FeedMatches::ItemKey)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Per rule and item again: of a key matched in several feeds, the oldest match stays.
        rebuild_matches(
            manager,
            "feed_matches_per_item_pkey",
            &[FeedMatches::RuleId, FeedMatches::ItemKey],
            "FALSE",
        )
        .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(FeedRules::Table)
                    .drop_column(FeedRules::Version)
                    .to_owned(),
            )
            .await?;
        for column in [Feeds::LeasedUntil, Feeds::ItemCount, Feeds::Version] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Feeds::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
