//! The `JobRepository` contract against real SQLite and PostgreSQL databases.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ferry_application::testing::contracts::{
    job_repository_contract, profile_repository_contract, upload_sessions_contract,
};
use ferry_database::{SqlJobRepository, SqlProfileRepository, SqlUploadSessions, connect, migrate};
use sea_orm::ConnectionTrait;

#[tokio::test]
async fn sqlite_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("ferry.db").display()
    );
    let db = connect(&url).await.unwrap();
    migrate(&db).await.unwrap();
    migrate(&db).await.unwrap(); // idempotent
    job_repository_contract(&SqlJobRepository::new(db.clone())).await;
    profile_repository_contract(&SqlProfileRepository::new(db.clone())).await;
    upload_sessions_contract(&SqlUploadSessions::new(db)).await;
}

/// What `scripts/test-deps.sh` said to do when it could not set PostgreSQL up for the tests.
fn setup_needed() -> Option<String> {
    let home = std::env::var_os("HOME")?;
    std::fs::read_to_string(
        std::path::Path::new(&home).join(".cache/ferry-tools/postgres-setup-needed"),
    )
    .ok()
}

/// A fresh PostgreSQL database for one test, dropped afterwards.
struct FreshPostgres {
    admin: sea_orm::DatabaseConnection,
    name: String,
    url: String,
}

impl FreshPostgres {
    async fn create() -> Option<Self> {
        let base = std::env::var("FERRY_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let admin = match connect(&base).await {
            Ok(db) => db,
            // scripts/test-deps.sh could not set PostgreSQL up and said what to do.
            Err(_) if setup_needed().is_some() => panic!("{}", setup_needed().unwrap()),
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("SKIPPED: PostgreSQL at {base} is unreachable ({e}); CI would fail here");
                return None;
            }
            Err(e) => panic!("PostgreSQL at {base} is unreachable: {e}"),
        };
        let name = format!("ferry_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let (prefix, _) = base.rsplit_once('/').unwrap();
        let url = format!("{prefix}/{name}");
        Some(Self { admin, name, url })
    }

    async fn drop_db(self) {
        let _ = self
            .admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

#[tokio::test]
async fn postgres_passes_the_contract() {
    let Some(pg) = FreshPostgres::create().await else {
        return;
    };
    let db = connect(&pg.url).await.unwrap();
    migrate(&db).await.unwrap();
    migrate(&db).await.unwrap();
    job_repository_contract(&SqlJobRepository::new(db.clone())).await;
    profile_repository_contract(&SqlProfileRepository::new(db.clone())).await;
    upload_sessions_contract(&SqlUploadSessions::new(db.clone())).await;
    db.close().await.unwrap();
    pg.drop_db().await;
}
