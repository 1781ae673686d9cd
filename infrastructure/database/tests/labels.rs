//! Categories and tags (the qBittorrent-compatible API) on real SQLite and PostgreSQL: kept
//! per owner, removed categories leave their jobs uncategorised, concurrent tagging keeps
//! every tag, a job's labels go with the job.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ferry_application::ports::{Category, JobRepository, LabelRepository, RepoError};
use ferry_database::{Connection, SqlJobRepository, SqlLabelRepository, connect, migrate};
use ferry_domain::{FileSelection, Job, MagnetLink, OwnerId};
use ferry_testkit::postgres::FreshDatabase;

fn job(owner: &OwnerId, n: u8) -> Job {
    let magnet = MagnetLink::parse(&format!("magnet:?xt=urn:btih:{}", hex(n))).unwrap();
    Job::from_magnet(
        owner.clone(),
        magnet,
        FileSelection::All,
        ferry_application::testing::epoch(),
    )
}

fn hex(n: u8) -> String {
    format!("{n:02x}").repeat(20)
}

fn category(name: &str) -> Category {
    Category {
        name: name.to_owned(),
        save_path: String::new(),
        profile: None,
    }
}

async fn labels_hold(db: &Connection) {
    migrate(db).await.unwrap();
    let jobs = SqlJobRepository::new(db.clone());
    let labels = SqlLabelRepository::new(db.clone());
    let (alice, bob) = (
        OwnerId::parse("alice").unwrap(),
        OwnerId::parse("bob").unwrap(),
    );
    let (a1, a2, b1) = (job(&alice, 1), job(&alice, 2), job(&bob, 3));
    for j in [&a1, &a2, &b1] {
        jobs.insert(j).await.unwrap();
    }

    // Categories are per owner: the same name twice for one owner is refused.
    labels
        .create_category(&alice, &category("tv"))
        .await
        .unwrap();
    labels.create_category(&bob, &category("tv")).await.unwrap();
    assert!(matches!(
        labels.create_category(&alice, &category("tv")).await,
        Err(RepoError::AlreadyExists)
    ));
    let mut edited = category("tv");
    edited.save_path = "series".into();
    labels.edit_category(&alice, &edited).await.unwrap();
    assert_eq!(labels.categories(&alice).await.unwrap(), vec![edited]);
    assert_eq!(labels.categories(&bob).await.unwrap(), vec![category("tv")]);
    assert!(matches!(
        labels.edit_category(&alice, &category("films")).await,
        Err(RepoError::NotFound)
    ));

    // Another owner's job is never labelled.
    labels
        .set_category(&alice, &[a1.id, b1.id], Some("tv"))
        .await
        .unwrap();
    let mine = labels.labels(&alice).await.unwrap();
    assert_eq!(mine[&a1.id].category.as_deref(), Some("tv"));
    assert!(labels.labels(&bob).await.unwrap().is_empty());

    // Tags added at once by two callers are all kept.
    let (l1, l2) = (labels_clone(db), labels_clone(db));
    let one = vec!["one".to_owned()];
    let two = vec!["two".to_owned()];
    let both = [a1.id, a2.id];
    let (x, y) = tokio::join!(
        l1.tag(&alice, &both, &one, true),
        l2.tag(&alice, &both, &two, true)
    );
    x.unwrap();
    y.unwrap();
    let mine = labels.labels(&alice).await.unwrap();
    assert_eq!(mine[&a1.id].tags, vec!["one", "two"]);
    assert_eq!(mine[&a2.id].tags, vec!["one", "two"]);
    labels.tag(&alice, &[a1.id], &one, false).await.unwrap();
    assert_eq!(
        labels.labels(&alice).await.unwrap()[&a1.id].tags,
        vec!["two"]
    );

    // A removed category leaves its jobs without one; removal from the list is kept.
    labels
        .remove_categories(&alice, &["tv".to_owned()])
        .await
        .unwrap();
    assert_eq!(labels.labels(&alice).await.unwrap()[&a1.id].category, None);
    assert_eq!(labels.categories(&bob).await.unwrap().len(), 1);
    labels
        .set_removed(&alice, &[a2.id, b1.id], true)
        .await
        .unwrap();
    let mine = labels.labels(&alice).await.unwrap();
    assert!(mine[&a2.id].removed && !mine[&a1.id].removed);
    assert!(labels.labels(&bob).await.unwrap().is_empty());
    // Put back on the list (a torrent added again).
    labels.set_removed(&alice, &[a2.id], false).await.unwrap();
    assert!(!labels.labels(&alice).await.unwrap()[&a2.id].removed);
    labels.set_removed(&alice, &[a2.id], true).await.unwrap();

    // The labels go with the job.
    jobs.delete(a1.id).await.unwrap();
    assert!(!labels.labels(&alice).await.unwrap().contains_key(&a1.id));
}

fn labels_clone(db: &Connection) -> SqlLabelRepository {
    SqlLabelRepository::new(db.clone())
}

#[tokio::test]
async fn sqlite_keeps_categories_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("ferry.db").display()
    );
    labels_hold(&connect(&url).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_keeps_categories_and_tags() {
    let Some(pg) = FreshDatabase::create() else {
        return;
    };
    let db = connect(&pg.url).await.unwrap();
    labels_hold(&db).await;
    db.close().await.unwrap();
}

/// `hashes=all` over more jobs than one statement may bind (SQLite 32,766 parameters,
/// PostgreSQL 65,535; a labels row takes five): categories, tags and removal still apply to
/// every job.
async fn labels_of_many_jobs(db: &Connection, count: u32) {
    migrate(db).await.unwrap();
    let jobs = SqlJobRepository::new(db.clone());
    let labels = SqlLabelRepository::new(db.clone());
    let owner = OwnerId::parse("many").unwrap();
    let made: Vec<Job> = (0..count)
        .map(|n| {
            let magnet = MagnetLink::parse(&format!("magnet:?xt=urn:btih:{n:040x}")).unwrap();
            Job::from_magnet(
                owner.clone(),
                magnet,
                FileSelection::All,
                ferry_application::testing::epoch(),
            )
        })
        .collect();
    for chunk in made.chunks(64) {
        futures::future::try_join_all(chunk.iter().map(|job| jobs.insert(job)))
            .await
            .unwrap();
    }
    let ids: Vec<_> = made.iter().map(|job| job.id).collect();
    labels
        .create_category(&owner, &category("tv"))
        .await
        .unwrap();
    labels.set_category(&owner, &ids, Some("tv")).await.unwrap();
    labels
        .tag(&owner, &ids[..10], &["x".into()], true)
        .await
        .unwrap();
    labels.set_removed(&owner, &ids, true).await.unwrap();
    let all = labels.labels(&owner).await.unwrap();
    assert_eq!(all.len(), ids.len());
    assert!(
        all.values()
            .all(|l| l.category.as_deref() == Some("tv") && l.removed)
    );
    assert_eq!(all.values().filter(|l| l.tags == ["x"]).count(), 10);
}

#[tokio::test]
async fn sqlite_labels_thousands_of_jobs_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("ferry.db").display()
    );
    labels_of_many_jobs(&connect(&url).await.unwrap(), 7_000).await;
}

#[tokio::test]
async fn postgres_labels_thousands_of_jobs_at_once() {
    let Some(pg) = FreshDatabase::create() else {
        return;
    };
    let db = connect(&pg.url).await.unwrap();
    labels_of_many_jobs(&db, 14_000).await;
    db.close().await.unwrap();
}
