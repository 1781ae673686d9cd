//! The `WebhookRepository` contract on real SQLite and PostgreSQL, with two repositories on
//! separate pools standing for two API processes claiming from one outbox.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ferry_application::testing::contracts::webhook_repository_contract;
use ferry_database::{SqlWebhookRepository, connect, migrate};
use ferry_testkit::postgres::FreshDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_webhooks_and_their_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("ferry.db").display()
    );
    let one = connect(&url).await.unwrap();
    migrate(&one).await.unwrap();
    let two = connect(&url).await.unwrap();
    webhook_repository_contract(
        &SqlWebhookRepository::new(one),
        &SqlWebhookRepository::new(two),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_webhooks_and_their_outbox() {
    let Some(pg) = FreshDatabase::create() else {
        return;
    };
    let one = connect(&pg.url).await.unwrap();
    migrate(&one).await.unwrap();
    let two = connect(&pg.url).await.unwrap();
    webhook_repository_contract(
        &SqlWebhookRepository::new(one.clone()),
        &SqlWebhookRepository::new(two.clone()),
    )
    .await;
    one.close().await.unwrap();
    two.close().await.unwrap();
}
