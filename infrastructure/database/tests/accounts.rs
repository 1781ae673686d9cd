//! The accounts' contracts against real SQLite and PostgreSQL databases, the session sweep,
//! and the upgrade of a database from before accounts (its `local` owner becomes the first
//! admin).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ferry_application::ports::{
    JobRepository, ProfileRepository, SealedProfile, Session, Sessions, UserRepository,
};
use ferry_application::testing::contracts::{
    AUDIT_PAGE_MAX, audit_log_contract, sessions_contract, token_repository_contract,
    user_repository_contract,
};
use ferry_database::{
    Connection, SqlAudit, SqlJobRepository, SqlProfileRepository, SqlSessions, SqlTokens, SqlUsers,
    connect, migrate,
};
use ferry_domain::{
    FileSelection, InfoHash, Job, MagnetLink, OwnerId, Role, StorageBackend, StorageProfile, User,
};
use ferry_migrations::{Migrator, MigratorTrait};
use ferry_testkit::postgres::FreshDatabase;

async fn sqlite(dir: &tempfile::TempDir) -> Connection {
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("ferry.db").display()
    );
    connect(&url).await.unwrap()
}

async fn passes_the_contracts(db: &Connection) {
    migrate(db).await.unwrap();
    migrate(db).await.unwrap(); // idempotent
    assert!(
        SqlUsers::new(db.clone()).list().await.unwrap().is_empty(),
        "a fresh database has no user"
    );
    user_repository_contract(&SqlUsers::new(db.clone())).await;
    token_repository_contract(&SqlTokens::new(db.clone())).await;
    sessions_contract(&SqlSessions::new(db.clone())).await;
    audit_log_contract(&SqlAudit::new(db.clone())).await;
    assert_eq!(ferry_database::AUDIT_PAGE_MAX, AUDIT_PAGE_MAX);
    sweeps_ended_sessions(&SqlSessions::new(db.clone())).await;
}

#[tokio::test]
async fn sqlite_passes_the_accounts_contracts() {
    let dir = tempfile::tempdir().unwrap();
    passes_the_contracts(&sqlite(&dir).await).await;
}

#[tokio::test]
async fn postgres_passes_the_accounts_contracts() {
    let Some(pg) = FreshDatabase::create() else {
        return;
    };
    let db = connect(&pg.url).await.unwrap();
    passes_the_contracts(&db).await;
    db.close().await.unwrap();
}

fn at(secs: i64) -> DateTime<Utc> {
    ferry_application::testing::epoch() + TimeDelta::seconds(secs)
}

/// `sweep` deletes sessions past either end, and only those.
async fn sweeps_ended_sessions(sessions: &SqlSessions) {
    let idle = Duration::from_secs(600);
    let user = OwnerId::parse("sweep").unwrap();
    let session = |last_seen: i64, expires: i64| Session {
        user: user.clone(),
        created_at: at(0),
        last_seen_at: at(last_seen),
        expires_at: at(expires),
        user_agent: None,
        ip: None,
    };
    let now = 3600;
    sessions
        .create(&[1; 32], &session(now - 60, now), idle)
        .await
        .unwrap();
    sessions
        .create(&[2; 32], &session(now - 600, now * 2), idle)
        .await
        .unwrap();
    let live = session(now - 599, now + 1);
    sessions.create(&[3; 32], &live, idle).await.unwrap();
    assert_eq!(sessions.sweep(at(now), idle).await.unwrap(), 2);
    assert_eq!(sessions.sweep(at(now), idle).await.unwrap(), 0);
    assert_eq!(
        sessions.get(&[3; 32], at(now), idle).await.unwrap(),
        Some(live)
    );
    assert_eq!(
        sessions.delete_user(&user).await.unwrap(),
        1,
        "one was left"
    );
}

/// What a database from before accounts holds.
#[derive(Clone, Copy, Debug)]
enum Before {
    LocalJob,
    LocalProfile,
    OtherOwnersOnly,
}

/// Migrates to the step before accounts, stores `before`, then upgrades: `local` owned
/// something exactly when the first admin `local` exists, and it still owns it.
async fn upgrade(db: &Connection, before: Before) {
    let accounts = Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261210_000001_accounts")
        .unwrap() as u32;
    Migrator::up(db, Some(accounts)).await.unwrap();
    let local = OwnerId::local();
    let someone = OwnerId::parse("someone").unwrap();
    let jobs = SqlJobRepository::new(db.clone());
    let profiles = SqlProfileRepository::new(db.clone());
    let job_owner = match before {
        Before::LocalJob => &local,
        _ => &someone,
    };
    let link = MagnetLink::parse(&format!(
        "magnet:?xt=urn:btih:{}",
        InfoHash::from_bytes([4; 20]).to_hex()
    ))
    .unwrap();
    let job = Job::from_magnet(job_owner.clone(), link, FileSelection::All, at(0));
    jobs.insert(&job).await.unwrap();
    let profile_owner = match before {
        Before::LocalProfile => &local,
        _ => &someone,
    };
    let profile = StorageProfile::new(
        profile_owner.clone(),
        "Drive",
        StorageBackend::google_drive("folder-1").unwrap(),
        at(0),
    )
    .unwrap();
    profiles
        .insert(&SealedProfile {
            profile: profile.clone(),
            credentials: vec![1, 2, 3],
        })
        .await
        .unwrap();

    let started = Utc::now();
    Migrator::up(db, None).await.unwrap();
    let users = SqlUsers::new(db.clone());
    let all = users.list().await.unwrap();
    if matches!(before, Before::OtherOwnersOnly) {
        assert!(all.is_empty(), "no user to adopt: {all:?}");
        return;
    }
    let admin = users.get(&local).await.unwrap().expect("the first admin");
    assert_eq!(all, vec![admin.clone()]);
    assert_eq!(admin.display_name, "admin");
    assert_eq!(admin.role, Role::Admin);
    assert!(!admin.disabled);
    assert_eq!(admin.email, None);
    assert_eq!(admin.last_seen_at, None);
    assert!(
        admin.created_at >= started - TimeDelta::seconds(5)
            && admin.created_at <= Utc::now() + TimeDelta::seconds(5),
        "created now: {}",
        admin.created_at
    );
    assert!(users.identities(&local).await.unwrap().is_empty());
    // It owns what `local` owned, under the same id.
    assert_eq!(jobs.get(job.id).await.unwrap().owner, *job_owner);
    assert_eq!(profiles.list(profile_owner).await.unwrap(), vec![profile]);

    // The migration's "now" compares with the adapter's times (SQLite compares text).
    let user = |id: &str, created: DateTime<Utc>| User {
        id: OwnerId::parse(id).unwrap(),
        ..User::new("x", None, Role::User, created).unwrap()
    };
    let older = user("older", admin.created_at - TimeDelta::milliseconds(1));
    let newer = user("newer", admin.created_at + TimeDelta::milliseconds(1));
    users.insert(&newer, None).await.unwrap();
    users.insert(&older, None).await.unwrap();
    let order: Vec<String> = users
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id.as_str().to_owned())
        .collect();
    assert_eq!(order, ["older", "local", "newer"]);
    let seen = admin.created_at + TimeDelta::minutes(5);
    users.touch(&local, seen).await.unwrap();
    assert_eq!(
        users.get(&local).await.unwrap().unwrap().last_seen_at,
        Some(seen)
    );
}

const CASES: [Before; 3] = [
    Before::LocalJob,
    Before::LocalProfile,
    Before::OtherOwnersOnly,
];

#[tokio::test]
async fn sqlite_upgrades_the_local_owner_to_the_first_admin() {
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        upgrade(&sqlite(&dir).await, case).await;
    }
}

#[tokio::test]
async fn postgres_upgrades_the_local_owner_to_the_first_admin() {
    for case in CASES {
        let Some(pg) = FreshDatabase::create() else {
            return;
        };
        let db = connect(&pg.url).await.unwrap();
        upgrade(&db, case).await;
        db.close().await.unwrap();
    }
}
