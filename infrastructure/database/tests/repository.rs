//! The `JobRepository` contract against real SQLite and PostgreSQL databases.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ferry_application::testing::contracts::{
    job_repository_contract, profile_repository_contract, upload_sessions_contract,
};
use ferry_database::{SqlJobRepository, SqlProfileRepository, SqlUploadSessions, connect, migrate};
use ferry_testkit::postgres::FreshDatabase;

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

#[tokio::test]
async fn postgres_passes_the_contract() {
    let Some(pg) = FreshDatabase::create() else {
        return;
    };
    let db = connect(&pg.url).await.unwrap();
    migrate(&db).await.unwrap();
    migrate(&db).await.unwrap();
    job_repository_contract(&SqlJobRepository::new(db.clone())).await;
    profile_repository_contract(&SqlProfileRepository::new(db.clone())).await;
    upload_sessions_contract(&SqlUploadSessions::new(db.clone())).await;
    db.close().await.unwrap();
}

/// Upgrading a database whose duplicate check raced: the older job keeps downloading, the
/// newer fails with `duplicate_job` (stamped finished), and a job past its download stays
/// as it was.
async fn upgrade_with_duplicates(db: &sea_orm::DatabaseConnection) {
    use ferry_application::ports::JobRepository;
    use ferry_domain::{FileSelection, InfoHash, Job, JobStatus, MagnetLink, OwnerId};
    use ferry_migrations::{Migrator, MigratorTrait};
    // Every migration before the one under test (not simply all but the last: more follow).
    let before_index = Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261202_000001_one_unfinished_torrent")
        .unwrap() as u32;
    Migrator::up(db, Some(before_index)).await.unwrap();
    let repo = SqlJobRepository::new(db.clone());
    let owner = OwnerId::parse("alice").unwrap();
    let link = MagnetLink::parse(&format!(
        "magnet:?xt=urn:btih:{}",
        InfoHash::from_bytes([9; 20]).to_hex()
    ))
    .unwrap();
    let at = |secs: i64| chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
    let older = Job::from_magnet(owner.clone(), link.clone(), FileSelection::All, at(0));
    let newer = Job::from_magnet(owner.clone(), link.clone(), FileSelection::All, at(10));
    let seeding = Job::from_magnet(owner.clone(), link.clone(), FileSelection::All, at(20));
    for job in [&older, &newer, &seeding] {
        repo.insert(job).await.unwrap();
    }
    // Straight to seeding, in SQL: the repository reads rows with today's columns, which
    // this older schema does not all have.
    {
        use sea_orm::ConnectionTrait;
        use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
        let seed = Query::update()
            .table(Alias::new("jobs"))
            .value(Alias::new("status"), JobStatus::Seeding.as_str())
            .and_where(Expr::col(Alias::new("id")).eq(seeding.id.as_uuid()))
            .to_owned();
        let done = db.execute(&seed).await.unwrap();
        assert_eq!(done.rows_affected(), 1);
    }
    Migrator::up(db, None).await.unwrap();
    assert_eq!(repo.status(older.id).await.unwrap(), JobStatus::Queued);
    let failed = repo.get(newer.id).await.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error.unwrap().code, "duplicate_job");
    assert!(failed.finished_at.is_some());
    assert_eq!(repo.status(seeding.id).await.unwrap(), JobStatus::Seeding);
    // The index holds from now on.
    let again = Job::from_magnet(owner, link, FileSelection::All, at(40));
    assert!(matches!(
        repo.insert(&again).await,
        Err(ferry_application::ports::RepoError::AlreadyExists)
    ));
}

#[tokio::test]
async fn sqlite_upgrades_over_duplicate_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("up.db").display());
    let db = connect(&url).await.unwrap();
    upgrade_with_duplicates(&db).await;
}

#[tokio::test]
async fn postgres_upgrades_over_duplicate_jobs() {
    let Some(pg) = FreshDatabase::create() else {
        return;
    };
    let db = connect(&pg.url).await.unwrap();
    upgrade_with_duplicates(&db).await;
    db.close().await.unwrap();
}
