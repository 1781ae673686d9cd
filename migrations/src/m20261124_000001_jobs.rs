//! The `jobs` table.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    Owner,
    SourceKind,
    Source,
    Metainfo,
    Status,
    Name,
    InfoHash,
    Selection,
    Metadata,
    Progress,
    ErrorCode,
    ErrorMessage,
    Attempts,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Jobs::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Jobs::Owner).string_len(64).not_null())
                    .col(ColumnDef::new(Jobs::SourceKind).string_len(16).not_null())
                    .col(ColumnDef::new(Jobs::Source).text().null())
                    .col(ColumnDef::new(Jobs::Metainfo).blob().null())
                    .col(ColumnDef::new(Jobs::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Jobs::Name).text().not_null())
                    .col(ColumnDef::new(Jobs::InfoHash).string_len(40).null())
                    .col(ColumnDef::new(Jobs::Selection).text().null())
                    .col(ColumnDef::new(Jobs::Metadata).text().null())
                    .col(ColumnDef::new(Jobs::Progress).text().not_null())
                    .col(ColumnDef::new(Jobs::ErrorCode).string_len(64).null())
                    .col(ColumnDef::new(Jobs::ErrorMessage).text().null())
                    .col(
                        ColumnDef::new(Jobs::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Jobs::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Jobs::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Jobs::FinishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("jobs_owner_id")
                    .table(Jobs::Table)
                    .col(Jobs::Owner)
                    .col(Jobs::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("jobs_status")
                    .table(Jobs::Table)
                    .col(Jobs::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("jobs_owner_info_hash")
                    .table(Jobs::Table)
                    .col(Jobs::Owner)
                    .col(Jobs::InfoHash)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Jobs::Table).to_owned())
            .await
    }
}
