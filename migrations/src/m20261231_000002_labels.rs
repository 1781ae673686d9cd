//! Categories and tags, as the qBittorrent-compatible API (`/api/v2`) gives them: each
//! user's categories (a name and where its jobs are delivered), and each job's category
//! and tags.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Categories {
    Table,
    Owner,
    Name,
    SavePath,
    ProfileId,
}

#[derive(DeriveIden)]
enum JobLabels {
    Table,
    JobId,
    Owner,
    Category,
    Tags,
    Removed,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Categories::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Categories::Owner).string_len(64).not_null())
                    .col(ColumnDef::new(Categories::Name).string_len(200).not_null())
                    .col(ColumnDef::new(Categories::SavePath).text().not_null())
                    .col(ColumnDef::new(Categories::ProfileId).uuid().null())
                    .primary_key(Index::create().col(Categories::Owner).col(Categories::Name))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(JobLabels::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(JobLabels::JobId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(JobLabels::Owner).string_len(64).not_null())
                    .col(ColumnDef::new(JobLabels::Category).string_len(200).null())
                    // Comma-separated, sorted, each tag without commas.
                    .col(ColumnDef::new(JobLabels::Tags).text().not_null())
                    // Removed from the qBittorrent client's list, files kept (the job stays
                    // in Ferry's own list).
                    .col(
                        ColumnDef::new(JobLabels::Removed)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(JobLabels::Table, JobLabels::JobId)
                            .to(Jobs::Table, Jobs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("job_labels_owner")
                    .table(JobLabels::Table)
                    .col(JobLabels::Owner)
                    .col(JobLabels::Category)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(JobLabels::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Categories::Table).to_owned())
            .await
    }
}
