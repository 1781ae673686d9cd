//! Storage profiles, resumable-upload sessions, and a job's destination.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum StorageProfiles {
    Table,
    Id,
    Owner,
    Name,
    Backend,
    Credentials,
    CreatedAt,
}

#[derive(DeriveIden)]
enum UploadSessions {
    Table,
    JobId,
    Key,
    Session,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    StorageProfile,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StorageProfiles::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(StorageProfiles::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(StorageProfiles::Owner)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(StorageProfiles::Name).text().not_null())
                    .col(ColumnDef::new(StorageProfiles::Backend).text().not_null())
                    .col(
                        ColumnDef::new(StorageProfiles::Credentials)
                            .blob()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(StorageProfiles::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("storage_profiles_owner")
                    .table(StorageProfiles::Table)
                    .col(StorageProfiles::Owner)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UploadSessions::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(UploadSessions::JobId).uuid().not_null())
                    .col(ColumnDef::new(UploadSessions::Key).text().not_null())
                    .col(ColumnDef::new(UploadSessions::Session).text().not_null())
                    .col(
                        ColumnDef::new(UploadSessions::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(UploadSessions::JobId)
                            .col(UploadSessions::Key),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Jobs::Table)
                    .add_column(ColumnDef::new(Jobs::StorageProfile).uuid().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UploadSessions::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(StorageProfiles::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Jobs::Table)
                    .drop_column(Jobs::StorageProfile)
                    .to_owned(),
            )
            .await
    }
}
