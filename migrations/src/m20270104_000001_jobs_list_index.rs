//! SQLite only: an index for the jobs list's filters: the owner, then the list's order
//! (newest id first), then the status and the name the list filters by. A name search (`q`)
//! or a rare status checks each of the owner's jobs; with the status and the name in the
//! index, SQLite reads them there and loads only the rows that match. Without it, it read
//! every row, and a row stores the name after the torrent's metainfo (kilobytes, in overflow
//! pages): 5,000 finished jobs took 45 ms a search (`bench/jobs.sh`).
//!
//! PostgreSQL keeps large values out of line and was fast without it (9 ms p99); and its
//! B-tree entries must stay under about 2.7 KB, which a job's name (a magnet's `dn`, up to
//! 16 KiB) can pass: such an index would refuse the job.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Owner,
    Id,
    Status,
    Name,
}

const NAME: &str = "jobs_owner_id_status_name";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Sqlite {
            return Ok(());
        }
        manager
            .create_index(
                Index::create()
                    .name(NAME)
                    .table(Jobs::Table)
                    .col(Jobs::Owner)
                    .col(Jobs::Id)
                    .col(Jobs::Status)
                    .col(Jobs::Name)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Sqlite {
            return Ok(());
        }
        manager
            .drop_index(Index::drop().name(NAME).table(Jobs::Table).to_owned())
            .await
    }
}
