//! `AuditLog` on sea-orm: append and read, nothing else (no update, no delete).
//!
//! The action prefix filter compares `SUBSTR(action, 1, n)` with the prefix, never `LIKE`:
//! a `%` or `_` a caller puts in the filter is a character, not a wildcard, and no
//! collation's ordering of punctuation can let a neighbour in.

use async_trait::async_trait;
use ferry_application::ports::{AuditEntry, AuditLog, AuditOutcome, AuditQuery, RepoError};
use ferry_domain::OwnerId;
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::corrupt;
use super::entity::audit::{ActiveModel, Column, Entity, Model};
use crate::db_error;

/// The most records one query returns (a limit of 0 asks for this many).
pub const AUDIT_PAGE_MAX: u64 = 500;

pub struct SqlAudit {
    db: DatabaseConnection,
}

impl SqlAudit {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

fn outcome_text(outcome: AuditOutcome) -> &'static str {
    match outcome {
        AuditOutcome::Success => "success",
        AuditOutcome::Failure => "failure",
    }
}

fn to_entry(row: Model) -> Result<AuditEntry, RepoError> {
    let outcome = match row.outcome.as_str() {
        "success" => AuditOutcome::Success,
        "failure" => AuditOutcome::Failure,
        _ => return Err(corrupt(format!("audit record {} has no outcome", row.id))),
    };
    let actor = match row.actor {
        None => None,
        Some(a) => Some(
            OwnerId::parse(&a)
                .ok_or_else(|| corrupt(format!("audit record {} has an invalid actor", row.id)))?,
        ),
    };
    Ok(AuditEntry {
        id: row.id,
        at: row.at,
        actor,
        action: row.action,
        target: row.target,
        outcome,
        ip: row.ip,
        user_agent: row.user_agent,
        detail: row.detail,
    })
}

#[async_trait]
impl AuditLog for SqlAudit {
    async fn append(&self, e: &AuditEntry) -> Result<i64, RepoError> {
        let row = ActiveModel {
            id: NotSet,
            at: Set(e.at),
            actor: Set(e.actor.as_ref().map(|a| a.as_str().to_owned())),
            action: Set(e.action.clone()),
            target: Set(e.target.clone()),
            outcome: Set(outcome_text(e.outcome).to_owned()),
            ip: Set(e.ip.clone()),
            user_agent: Set(e.user_agent.clone()),
            detail: Set(e.detail.clone()),
        };
        let done = Entity::insert(row).exec(&self.db).await.map_err(db_error)?;
        Ok(done.last_insert_id)
    }

    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, RepoError> {
        let mut select = Entity::find();
        if let Some(actor) = &q.actor {
            select = select.filter(Column::Actor.eq(actor.as_str()));
        }
        match q.action.as_deref() {
            Some(prefix) if prefix.ends_with('.') => {
                let len = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
                let head = Func::cust("SUBSTR")
                    .arg(Expr::col(Column::Action))
                    .arg(1)
                    .arg(len);
                select = select.filter(Expr::expr(head).eq(prefix));
            }
            Some(action) => select = select.filter(Column::Action.eq(action)),
            None => {}
        }
        if let Some(since) = q.since {
            select = select.filter(Column::At.gte(since));
        }
        if let Some(until) = q.until {
            select = select.filter(Column::At.lt(until));
        }
        if let Some(before) = q.before {
            select = select.filter(Column::Id.lt(before));
        }
        let limit = match q.limit {
            0 => AUDIT_PAGE_MAX,
            n => Ord::min(n, AUDIT_PAGE_MAX),
        };
        select
            .order_by_desc(Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_entry)
            .collect()
    }
}
