//! Webhooks: each user's endpoints (signing secret sealed), and the outbox of deliveries
//! with every attempt's outcome. A delivery keeps its job's id without a foreign key, so the
//! history outlives a purged job; it goes with its webhook.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    Owner,
    Url,
    Events,
    Enabled,
    Secret,
    CreatedAt,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    WebhookId,
    Owner,
    Event,
    JobId,
    Body,
    Attempts,
    State,
    LastStatus,
    LastError,
    CreatedAt,
    NextAttemptAt,
    DeliveredAt,
    Claim,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Webhooks::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Webhooks::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Webhooks::Owner).string_len(64).not_null())
                    .col(ColumnDef::new(Webhooks::Url).text().not_null())
                    // Comma-separated wire names (`job.completed,job.failed`).
                    .col(ColumnDef::new(Webhooks::Events).text().not_null())
                    .col(ColumnDef::new(Webhooks::Enabled).boolean().not_null())
                    .col(ColumnDef::new(Webhooks::Secret).blob().not_null())
                    .col(
                        ColumnDef::new(Webhooks::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhooks_owner")
                    .table(Webhooks::Table)
                    .col(Webhooks::Owner)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(WebhookDeliveries::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::WebhookId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::Owner)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::Event)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(ColumnDef::new(WebhookDeliveries::JobId).uuid().null())
                    .col(ColumnDef::new(WebhookDeliveries::Body).text().not_null())
                    .col(
                        ColumnDef::new(WebhookDeliveries::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    // pending, delivered, failed
                    .col(
                        ColumnDef::new(WebhookDeliveries::State)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::LastStatus)
                            .integer()
                            .null(),
                    )
                    .col(ColumnDef::new(WebhookDeliveries::LastError).text().null())
                    .col(
                        ColumnDef::new(WebhookDeliveries::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::NextAttemptAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::DeliveredAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    // Changed by every claim: an outcome is written only by the claim
                    // that still holds the delivery.
                    .col(
                        ColumnDef::new(WebhookDeliveries::Claim)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookDeliveries::Table, WebhookDeliveries::WebhookId)
                            .to(Webhooks::Table, Webhooks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The dispatcher's query: pending deliveries by due time.
        manager
            .create_index(
                Index::create()
                    .name("webhook_deliveries_due")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::State)
                    .col(WebhookDeliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        // A webhook's history, newest first.
        manager
            .create_index(
                Index::create()
                    .name("webhook_deliveries_webhook")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::WebhookId)
                    .col(WebhookDeliveries::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WebhookDeliveries::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Webhooks::Table).to_owned())
            .await
    }
}
