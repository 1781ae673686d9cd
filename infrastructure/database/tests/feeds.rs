//! RSS feeds and rules on real SQLite and PostgreSQL: the `FeedRepository` contract, with
//! concurrent claims of one feed and of one (rule, item) where exactly one wins.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use ferry_application::testing::contracts::feed_repository_contract;
use ferry_database::{SqlFeedRepository, connect, migrate};
use ferry_testkit::postgres::FreshDatabase;

#[tokio::test]
async fn sqlite_keeps_the_feed_contract() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/ferry.db?mode=rwc", dir.path().display());
    let db = connect(&url).await.unwrap();
    migrate(&db).await.unwrap();
    feed_repository_contract(Arc::new(SqlFeedRepository::new(db))).await;
}

#[tokio::test]
async fn postgres_keeps_the_feed_contract() {
    let Some(pg) = FreshDatabase::create() else {
        return;
    };
    let db = connect(&pg.url).await.unwrap();
    migrate(&db).await.unwrap();
    feed_repository_contract(Arc::new(SqlFeedRepository::new(db.clone()))).await;
    db.close().await.unwrap();
}
