//! One torrent job per owner and info-hash that is still downloading (queued, resolving,
//! downloading or paused), enforced by the database: the duplicate check before an insert
//! (or a retry) cannot see a concurrent one, the index can. (The check also refuses a new
//! job while one uploads or seeds; the index leaves those out, so that finishing a download
//! never trips over it.)
//!
//! An older database may already hold duplicates (the check raced): all but the oldest of
//! each set are failed with `duplicate_job` first, keeping their rows and files.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UNFINISHED: &str = "info_hash IS NOT NULL AND source_kind IN ('magnet', 'torrent') \
     AND status IN ('queued', 'resolving', 'downloading', 'paused')";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let duplicates = format!(
            "UPDATE jobs SET status = 'failed', error_code = 'duplicate_job', \
             error_message = 'an older job of this owner downloads the same torrent', \
             finished_at = updated_at \
             WHERE {UNFINISHED} AND EXISTS (SELECT 1 FROM jobs older \
               WHERE older.owner = jobs.owner AND older.info_hash = jobs.info_hash \
               AND older.source_kind IN ('magnet', 'torrent') \
               AND older.status IN ('queued', 'resolving', 'downloading', 'paused') \
               AND (older.created_at < jobs.created_at \
                    OR (older.created_at = jobs.created_at AND older.id < jobs.id)))"
        );
        db.execute_unprepared(&duplicates).await?;
        db.execute_unprepared(&format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_unfinished_torrent \
             ON jobs (owner, info_hash) WHERE {UNFINISHED}"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS jobs_one_unfinished_torrent")
            .await?;
        Ok(())
    }
}
