//! `WebhookRepository` on sea-orm: webhooks per owner and the outbox of deliveries, claimed
//! by conditional updates (`… WHERE id = ? AND state = 'pending' AND claim = ?`), which
//! PostgreSQL and SQLite both apply to one claimer only.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_application::ports::{
    Attempt, ClaimLimits, Delivery, RepoError, SealedWebhook, WebhookRepository,
};
use ferry_domain::{
    DeliveryId, DeliveryState, FetchUrl, JobId, OwnerId, Webhook, WebhookEvent, WebhookId,
};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, TransactionTrait,
};

use crate::db_error;

/// The first key of PostgreSQL's advisory lock taken while an owner's webhooks are counted
/// and one added (the second is a hash of the owner).
const OWNER_LOCK_CLASS: i32 = 0x4645_5748; // "FEWH"

/// Looks one `claim_due` takes at most (each passes over owners that have no room left).
const MAX_CLAIM_ROUNDS: usize = 8;

mod hook {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhooks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub owner: String,
        pub url: String,
        pub events: String,
        pub enabled: bool,
        pub secret: Vec<u8>,
        pub created_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod delivery {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub webhook_id: Uuid,
        pub owner: String,
        pub event: String,
        pub job_id: Option<Uuid>,
        pub body: String,
        pub attempts: i32,
        pub state: String,
        pub last_status: Option<i32>,
        pub last_error: Option<String>,
        pub created_at: ChronoDateTimeUtc,
        pub next_attempt_at: Option<ChronoDateTimeUtc>,
        pub delivered_at: Option<ChronoDateTimeUtc>,
        pub claim: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub struct SqlWebhookRepository {
    db: DatabaseConnection,
}

impl SqlWebhookRepository {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

fn corrupt(what: &str, id: uuid::Uuid) -> RepoError {
    RepoError::Unexpected(anyhow::anyhow!("{what} {id} is corrupt"))
}

fn join_events(events: &[WebhookEvent]) -> String {
    events
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn to_webhook(row: hook::Model) -> Result<SealedWebhook, RepoError> {
    let owner = OwnerId::parse(&row.owner).ok_or_else(|| corrupt("webhook", row.id))?;
    let url = FetchUrl::parse(&row.url).map_err(|_| corrupt("webhook", row.id))?;
    let events = row
        .events
        .split(',')
        .map(|e| WebhookEvent::parse(e).ok_or_else(|| corrupt("webhook", row.id)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SealedWebhook {
        webhook: Webhook {
            id: WebhookId::from_uuid(row.id),
            owner,
            url,
            events,
            enabled: row.enabled,
            created_at: row.created_at,
        },
        secret: row.secret,
    })
}

fn to_delivery(row: delivery::Model) -> Result<Delivery, RepoError> {
    let bad = || corrupt("webhook delivery", row.id);
    Ok(Delivery {
        id: DeliveryId::from_uuid(row.id),
        webhook: WebhookId::from_uuid(row.webhook_id),
        owner: OwnerId::parse(&row.owner).ok_or_else(bad)?,
        event: WebhookEvent::parse(&row.event).ok_or_else(bad)?,
        job: row.job_id.map(JobId::from_uuid),
        attempts: u32::try_from(row.attempts).map_err(|_| bad())?,
        state: DeliveryState::parse(&row.state).ok_or_else(bad)?,
        last_status: row.last_status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.last_error,
        created_at: row.created_at,
        next_attempt_at: row.next_attempt_at,
        delivered_at: row.delivered_at,
        claim: row.claim,
        body: row.body,
    })
}

fn to_row(d: &Delivery) -> delivery::ActiveModel {
    delivery::ActiveModel {
        id: Set(d.id.as_uuid()),
        webhook_id: Set(d.webhook.as_uuid()),
        owner: Set(d.owner.as_str().to_owned()),
        event: Set(d.event.as_str().to_owned()),
        job_id: Set(d.job.map(|j| j.as_uuid())),
        body: Set(d.body.clone()),
        attempts: Set(i32::try_from(d.attempts).unwrap_or(i32::MAX)),
        state: Set(d.state.as_str().to_owned()),
        last_status: Set(d.last_status.map(i32::from)),
        last_error: Set(d.last_error.clone()),
        created_at: Set(d.created_at),
        next_attempt_at: Set(d.next_attempt_at),
        delivered_at: Set(d.delivered_at),
        claim: Set(d.claim),
    }
}

#[async_trait]
impl WebhookRepository for SqlWebhookRepository {
    async fn insert(
        &self,
        sealed: &SealedWebhook,
        max_per_owner: usize,
    ) -> Result<bool, RepoError> {
        let w = &sealed.webhook;
        let owner = w.owner.as_str().to_owned();
        let tx = self.db.begin().await.map_err(db_error)?;
        if tx.get_database_backend() == DbBackend::Postgres {
            // Under READ COMMITTED two transactions would each count the other's row as not
            // there yet: inserts for one owner take turns (the lock ends with the transaction).
            tx.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                [OWNER_LOCK_CLASS.into(), owner.clone().into()],
            ))
            .await
            .map_err(db_error)?;
        }
        // One statement: the count and the insert together (SQLite runs it under its one
        // write lock; PostgreSQL under the lock above).
        let owned = Query::select()
            .expr(Expr::col(hook::Column::Id).count())
            .from(hook::Entity)
            .and_where(Expr::col(hook::Column::Owner).eq(owner.clone()))
            .to_owned();
        let row = Query::select()
            .exprs([
                Expr::val(w.id.as_uuid()),
                Expr::val(owner),
                Expr::val(w.url.to_string()),
                Expr::val(join_events(&w.events)),
                Expr::val(w.enabled),
                Expr::val(sealed.secret.clone()),
                Expr::val(w.created_at),
            ])
            .and_where(
                Expr::SubQuery(None, Box::new(owned.into()))
                    .lt(i64::try_from(max_per_owner).unwrap_or(i64::MAX)),
            )
            .to_owned();
        let insert = Query::insert()
            .into_table(hook::Entity)
            .columns([
                hook::Column::Id,
                hook::Column::Owner,
                hook::Column::Url,
                hook::Column::Events,
                hook::Column::Enabled,
                hook::Column::Secret,
                hook::Column::CreatedAt,
            ])
            .select_from(row)
            .map_err(|e| RepoError::Unexpected(e.into()))?
            .to_owned();
        let result = tx.execute(&insert).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn get(
        &self,
        owner: &OwnerId,
        id: WebhookId,
    ) -> Result<Option<SealedWebhook>, RepoError> {
        hook::Entity::find_by_id(id.as_uuid())
            .filter(hook::Column::Owner.eq(owner.as_str()))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .map(to_webhook)
            .transpose()
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<Webhook>, RepoError> {
        hook::Entity::find()
            .filter(hook::Column::Owner.eq(owner.as_str()))
            .order_by_asc(hook::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|row| to_webhook(row).map(|s| s.webhook))
            .collect()
    }

    async fn update(&self, webhook: &Webhook, secret: Option<&[u8]>) -> Result<(), RepoError> {
        let mut update = hook::Entity::update_many()
            .col_expr(hook::Column::Url, Expr::value(webhook.url.to_string()))
            .col_expr(
                hook::Column::Events,
                Expr::value(join_events(&webhook.events)),
            )
            .col_expr(hook::Column::Enabled, Expr::value(webhook.enabled));
        if let Some(secret) = secret {
            update = update.col_expr(hook::Column::Secret, Expr::value(secret.to_vec()));
        }
        let result = update
            .filter(hook::Column::Id.eq(webhook.id.as_uuid()))
            .filter(hook::Column::Owner.eq(webhook.owner.as_str()))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Err(RepoError::NotFound);
        }
        Ok(())
    }

    async fn delete(&self, owner: &OwnerId, id: WebhookId) -> Result<(), RepoError> {
        let tx = self.db.begin().await.map_err(db_error)?;
        // Not left to the foreign key alone: SQLite databases opened without foreign keys
        // would keep them.
        let result = hook::Entity::delete_many()
            .filter(hook::Column::Id.eq(id.as_uuid()))
            .filter(hook::Column::Owner.eq(owner.as_str()))
            .exec(&tx)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Err(RepoError::NotFound);
        }
        delivery::Entity::delete_many()
            .filter(delivery::Column::WebhookId.eq(id.as_uuid()))
            .exec(&tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn subscribers(
        &self,
        owner: &OwnerId,
        event: WebhookEvent,
    ) -> Result<Vec<WebhookId>, RepoError> {
        let rows: Vec<(uuid::Uuid, String)> = hook::Entity::find()
            .select_only()
            .column(hook::Column::Id)
            .column(hook::Column::Events)
            .filter(hook::Column::Owner.eq(owner.as_str()))
            .filter(hook::Column::Enabled.eq(true))
            .order_by_asc(hook::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .filter(|(_, events)| events.split(',').any(|e| e == event.as_str()))
            .map(|(id, _)| WebhookId::from_uuid(id))
            .collect())
    }

    async fn enqueue(&self, deliveries: &[Delivery]) -> Result<usize, RepoError> {
        // Only deliveries of webhooks that exist: one deleted since `subscribers` named it
        // must not take the others down with it (the foreign key would refuse the whole
        // statement). A deletion between this read and the insert makes the insert fail:
        // then read again and retry once without it.
        let mut last: Option<(HashSet<uuid::Uuid>, RepoError)> = None;
        for _ in 0..2 {
            let wanted: Vec<uuid::Uuid> = deliveries
                .iter()
                .map(|d| d.webhook.as_uuid())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            if wanted.is_empty() {
                return Ok(0);
            }
            let existing: HashSet<uuid::Uuid> = hook::Entity::find()
                .select_only()
                .column(hook::Column::Id)
                .filter(hook::Column::Id.is_in(wanted))
                .into_tuple::<uuid::Uuid>()
                .all(&self.db)
                .await
                .map_err(db_error)?
                .into_iter()
                .collect();
            if let Some((before, e)) = last.take()
                && existing == before
            {
                // Nothing was deleted meanwhile: the failure was something else.
                return Err(e);
            }
            let rows: Vec<delivery::ActiveModel> = deliveries
                .iter()
                .filter(|d| existing.contains(&d.webhook.as_uuid()))
                .map(to_row)
                .collect();
            let n = rows.len();
            if n == 0 {
                return Ok(0);
            }
            match delivery::Entity::insert_many(rows)
                .exec_without_returning(&self.db)
                .await
                .map_err(db_error)
            {
                Ok(_) => return Ok(n),
                Err(RepoError::AlreadyExists) => return Err(RepoError::AlreadyExists),
                Err(e) => last = Some((existing, e)),
            }
        }
        Err(last.map_or_else(
            || RepoError::Unexpected(anyhow::anyhow!("webhook deliveries not added")),
            |(_, e)| e,
        ))
    }

    async fn all_sealed(&self) -> Result<Vec<SealedWebhook>, RepoError> {
        hook::Entity::find()
            .order_by_asc(hook::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_webhook)
            .collect()
    }

    async fn replace_secret(
        &self,
        id: WebhookId,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool, RepoError> {
        // Conditional: a concurrent change (a new secret, or a deleted webhook) is not
        // overwritten.
        let result = hook::Entity::update_many()
            .col_expr(hook::Column::Secret, Expr::value(sealed.to_vec()))
            .filter(hook::Column::Id.eq(id.as_uuid()))
            .filter(hook::Column::Secret.eq(expected.to_vec()))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected == 1)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limits: ClaimLimits<'_>,
    ) -> Result<Vec<Delivery>, RepoError> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let mut claimed: Vec<Delivery> = Vec::new();
        let mut taken: HashMap<OwnerId, usize> = HashMap::new();
        // Owners with no room left are left out of the next look, so the deliveries behind
        // theirs are reached; each round claims something, fills an owner, or finds its
        // candidates taken by another claimer.
        for _ in 0..MAX_CLAIM_ROUNDS {
            if claimed.len() >= limits.total {
                break;
            }
            let full: HashSet<String> = limits
                .held
                .keys()
                .chain(taken.keys())
                .filter(|o| limits.room(o, taken.get(*o).copied().unwrap_or(0)) == 0)
                .map(|o| o.as_str().to_owned())
                .collect();
            let mut select = delivery::Entity::find()
                .filter(delivery::Column::State.eq(DeliveryState::Pending.as_str()))
                .filter(delivery::Column::NextAttemptAt.lte(now));
            if !full.is_empty() {
                select = select.filter(delivery::Column::Owner.is_not_in(full));
            }
            let candidates = select
                .order_by_asc(delivery::Column::NextAttemptAt)
                .order_by_asc(delivery::Column::Id)
                .limit((limits.total - claimed.len()) as u64)
                .all(&self.db)
                .await
                .map_err(db_error)?;
            if candidates.is_empty() {
                break;
            }
            for mut row in candidates {
                if claimed.len() >= limits.total {
                    break;
                }
                let owner = OwnerId::parse(&row.owner)
                    .ok_or_else(|| corrupt("webhook delivery", row.id))?;
                let of_owner = taken.get(&owner).copied().unwrap_or(0);
                if limits.room(&owner, of_owner) == 0 {
                    continue;
                }
                let result = delivery::Entity::update_many()
                    .col_expr(delivery::Column::NextAttemptAt, Expr::value(Some(until)))
                    .col_expr(delivery::Column::Claim, Expr::value(row.claim + 1))
                    .filter(delivery::Column::Id.eq(row.id))
                    .filter(delivery::Column::State.eq(DeliveryState::Pending.as_str()))
                    .filter(delivery::Column::Claim.eq(row.claim))
                    .exec(&self.db)
                    .await
                    .map_err(db_error)?;
                if result.rows_affected == 1 {
                    *taken.entry(owner).or_default() += 1;
                    row.next_attempt_at = Some(until);
                    row.claim += 1;
                    claimed.push(to_delivery(row)?);
                }
            }
        }
        Ok(claimed)
    }

    async fn record(
        &self,
        id: DeliveryId,
        claim: i64,
        attempt: &Attempt,
    ) -> Result<bool, RepoError> {
        let delivered = (attempt.state == DeliveryState::Delivered).then_some(attempt.at);
        let result = delivery::Entity::update_many()
            .col_expr(
                delivery::Column::Attempts,
                Expr::col(delivery::Column::Attempts).add(1),
            )
            .col_expr(delivery::Column::State, Expr::value(attempt.state.as_str()))
            .col_expr(
                delivery::Column::LastStatus,
                Expr::value(attempt.status.map(i32::from)),
            )
            .col_expr(
                delivery::Column::LastError,
                Expr::value(attempt.error.clone()),
            )
            .col_expr(
                delivery::Column::NextAttemptAt,
                Expr::value(attempt.next_attempt_at),
            )
            .col_expr(delivery::Column::DeliveredAt, Expr::value(delivered))
            .filter(delivery::Column::Id.eq(id.as_uuid()))
            .filter(delivery::Column::State.eq(DeliveryState::Pending.as_str()))
            .filter(delivery::Column::Claim.eq(claim))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected == 1)
    }

    async fn webhook(&self, id: WebhookId) -> Result<Option<SealedWebhook>, RepoError> {
        hook::Entity::find_by_id(id.as_uuid())
            .one(&self.db)
            .await
            .map_err(db_error)?
            .map(to_webhook)
            .transpose()
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        let result = delivery::Entity::delete_many()
            .filter(delivery::Column::State.ne(DeliveryState::Pending.as_str()))
            .filter(delivery::Column::CreatedAt.lt(before))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected)
    }

    async fn deliveries(
        &self,
        owner: &OwnerId,
        webhook: WebhookId,
        before: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<Delivery>, RepoError> {
        let mut select = delivery::Entity::find()
            .filter(delivery::Column::WebhookId.eq(webhook.as_uuid()))
            .filter(delivery::Column::Owner.eq(owner.as_str()));
        if let Some(before) = before {
            select = select.filter(delivery::Column::Id.lt(before.as_uuid()));
        }
        select
            .order_by_desc(delivery::Column::Id)
            .limit(limit as u64)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_delivery)
            .collect()
    }
}
