//! Each user's default storage profile: where a job goes when its submission names none.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DefaultStorageProfiles {
    Table,
    Owner,
    ProfileId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DefaultStorageProfiles::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(DefaultStorageProfiles::Owner)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(DefaultStorageProfiles::ProfileId)
                            .uuid()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(DefaultStorageProfiles::Table)
                    .to_owned(),
            )
            .await
    }
}
