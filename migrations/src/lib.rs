//! Ferry's schema, one set of migrations for PostgreSQL and SQLite.
//!
//! Structured values that are only ever read whole (file lists, progress snapshots, the
//! selection) are stored as JSON text, which both databases handle the same way.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_jobs;
mod m20261124_000002_storage;
mod m20261124_000003_fetch;
mod m20261201_000001_purge;
mod m20261202_000001_one_unfinished_torrent;
mod m20261210_000001_accounts;
mod m20261230_000001_job_byte_limit;
mod m20261230_000002_default_storage;
mod m20261231_000002_labels;
mod m20270101_000001_webhooks;
mod m20270101_000002_feeds;
mod m20270102_000001_feed_matches_per_feed;
mod m20270102_000002_seeding_started;
mod m20270103_000001_speed_limits;
mod m20270104_000001_jobs_list_index;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_jobs::Migration),
            Box::new(m20261124_000002_storage::Migration),
            Box::new(m20261124_000003_fetch::Migration),
            Box::new(m20261201_000001_purge::Migration),
            Box::new(m20261202_000001_one_unfinished_torrent::Migration),
            Box::new(m20261210_000001_accounts::Migration),
            Box::new(m20261230_000001_job_byte_limit::Migration),
            Box::new(m20261230_000002_default_storage::Migration),
            Box::new(m20261231_000002_labels::Migration),
            Box::new(m20270101_000001_webhooks::Migration),
            Box::new(m20270101_000002_feeds::Migration),
            Box::new(m20270102_000001_feed_matches_per_feed::Migration),
            Box::new(m20270102_000002_seeding_started::Migration),
            Box::new(m20270103_000001_speed_limits::Migration),
            Box::new(m20270104_000001_jobs_list_index::Migration),
        ]
    }
}
