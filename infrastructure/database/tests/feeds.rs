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

/// Upgrading a database whose matches were keyed by rule and item only: the old matches
/// keep their outcome and still hold their item key in every feed of the rule (nothing
/// matched before is matched, and downloaded, again through another feed); feeds get their
/// item counts; rules and feeds carry on with a version.
async fn upgrade_keeps_matches(db: &sea_orm::DatabaseConnection) {
    use chrono::{DateTime, Utc};
    use ferry_application::ports::{FeedMatch, FeedRepository, MatchClaim, MatchOutcome};
    use ferry_domain::{JobId, OwnerId};
    use ferry_migrations::{Migrator, MigratorTrait};
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Alias, Query, SimpleExpr};
    use uuid::Uuid;

    let before = Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20270102_000001_feed_matches_per_feed")
        .unwrap() as u32;
    Migrator::up(db, Some(before)).await.unwrap();
    let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
    let alice = OwnerId::parse("alice").unwrap();
    let (one, two, rule, job) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), JobId::new());
    let insert = |table: &str, values: Vec<(&str, SimpleExpr)>| {
        let mut q = Query::insert();
        q.into_table(Alias::new(table));
        q.columns(values.iter().map(|(c, _)| Alias::new(*c)));
        q.values_panic(values.into_iter().map(|(_, v)| v));
        q.to_owned()
    };
    for (id, items) in [
        (
            one,
            r#"[{"title":"a","key":"g1","published":null,"size":null,"link":null},{"title":"b","key":"g2","published":null,"size":null,"link":null}]"#,
        ),
        (two, "[]"),
    ] {
        let row = insert(
            "feeds",
            vec![
                ("id", id.into()),
                ("owner", alice.as_str().into()),
                ("url", format!("https://{id}.example/rss").into()),
                ("name", "".into()),
                ("interval_secs", 60.into()),
                ("next_poll_at", at.into()),
                ("created_at", at.into()),
                ("items", items.into()),
            ],
        );
        db.execute(&row).await.unwrap();
    }
    let row = insert(
        "feed_rules",
        vec![
            ("id", rule.into()),
            ("owner", alice.as_str().into()),
            ("name", "r".into()),
            ("enabled", true.into()),
            ("feeds", "[]".into()),
            ("must_contain", "".into()),
            ("must_not_contain", "".into()),
            ("use_regex", false.into()),
            ("episode_filter", "".into()),
            ("smart_filter", false.into()),
            ("created_at", at.into()),
        ],
    );
    db.execute(&row).await.unwrap();
    // "g1" matched (in feed one) and submitted; "g2" failed for now (no job id then).
    for (key, status, job_id) in [
        ("g1", "submitted", Some(job.as_uuid())),
        ("g2", "retry", None),
    ] {
        let row = insert(
            "feed_matches",
            vec![
                ("rule_id", rule.into()),
                ("item_key", key.into()),
                ("feed_id", one.into()),
                ("title", key.into()),
                ("episodes", "".into()),
                ("status", status.into()),
                ("job_id", job_id.into()),
                ("created_at", at.into()),
                ("updated_at", at.into()),
            ],
        );
        db.execute(&row).await.unwrap();
    }

    Migrator::up(db, None).await.unwrap();
    let repo = SqlFeedRepository::new(db.clone());
    let listed = repo.feeds(&alice).await.unwrap();
    let counts: Vec<(Uuid, u64, i64)> = listed
        .iter()
        .map(|f| (f.id, f.item_count, f.version))
        .collect();
    assert_eq!(counts, vec![(one, 2, 0), (two, 0, 0)]);
    let matches = repo.matches(rule, 10).await.unwrap();
    assert_eq!(matches.len(), 2);
    let g1 = matches.iter().find(|m| m.item_key == "g1").unwrap();
    assert_eq!(g1.outcome, MatchOutcome::Submitted(job));
    assert_eq!(g1.feed, one);
    let stale = at - chrono::Duration::seconds(600);
    let claim = |feed: Uuid, key: &str| FeedMatch {
        rule,
        feed,
        item_key: key.to_owned(),
        title: key.to_owned(),
        episodes: String::new(),
        outcome: MatchOutcome::Pending,
        created_at: at,
    };
    // The submitted key is held in its own feed and in the other one.
    for feed in [one, two] {
        assert_eq!(
            repo.claim_match(&claim(feed, "g1"), &[], JobId::new(), stale)
                .await
                .unwrap(),
            MatchClaim::Taken,
            "g1 again in {feed}"
        );
    }
    // The one to retry is retried in its feed (given an id now), not taken elsewhere.
    assert_eq!(
        repo.claim_match(&claim(two, "g2"), &[], JobId::new(), stale)
            .await
            .unwrap(),
        MatchClaim::Taken
    );
    let given = JobId::new();
    assert_eq!(
        repo.claim_match(&claim(one, "g2"), &[], given, stale)
            .await
            .unwrap(),
        MatchClaim::Retry(given)
    );
    // New keys are per feed.
    for feed in [one, two] {
        assert_eq!(
            repo.claim_match(&claim(feed, "g3"), &[], JobId::new(), stale)
                .await
                .unwrap(),
            MatchClaim::New
        );
    }
    let mut r = repo.rule(&alice, rule).await.unwrap().unwrap();
    assert_eq!(r.version, 0);
    r.name = "renamed".into();
    assert!(repo.update_rule(&r).await.unwrap());
}

#[tokio::test]
async fn sqlite_upgrades_matches_to_per_feed_keeping_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/up.db?mode=rwc", dir.path().display());
    let db = connect(&url).await.unwrap();
    upgrade_keeps_matches(&db).await;
}

#[tokio::test]
async fn postgres_upgrades_matches_to_per_feed_keeping_old_ones() {
    let Some(pg) = FreshDatabase::create() else {
        return;
    };
    let db = connect(&pg.url).await.unwrap();
    upgrade_keeps_matches(&db).await;
    db.close().await.unwrap();
}
