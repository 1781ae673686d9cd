//! `Sessions` on sea-orm, for the embedded mode. A session is live while `now` is before
//! both its absolute end and `last_seen_at + idle`; every write that depends on that says
//! so in its `WHERE`, so a late `touch` never revives an expired session.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use ferry_application::ports::{RepoError, SecretHash, Session, Sessions};
use ferry_domain::OwnerId;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::entity::session::{ActiveModel, Column, Entity, Model};
use super::{TOUCH_GAP, corrupt, from_hex, to_hex};
use crate::db_error;

/// The most sessions one user's list shows.
const MAX_LISTED: u64 = 10_000;

pub struct SqlSessions {
    db: DatabaseConnection,
}

impl SqlSessions {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

/// The moment before which a last request means the session idled out at `now`.
fn idle_cutoff(now: DateTime<Utc>, idle: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(idle)
        .ok()
        .and_then(|idle| now.checked_sub_signed(idle))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn ended(now: DateTime<Utc>, idle: Duration) -> Condition {
    Condition::any()
        .add(Column::ExpiresAt.lte(now))
        .add(Column::LastSeenAt.lte(idle_cutoff(now, idle)))
}

fn is_live(row: &Model, now: DateTime<Utc>, idle: Duration) -> bool {
    now < row.expires_at && row.last_seen_at > idle_cutoff(now, idle)
}

/// How close to the last one a `touch` is skipped: a minute, but never so long that a
/// short idle time could run out between two writes.
fn touch_gap(idle: Duration) -> TimeDelta {
    TimeDelta::from_std(idle / 2)
        .unwrap_or(TOUCH_GAP)
        .min(TOUCH_GAP)
}

fn to_session(row: Model) -> Result<Session, RepoError> {
    Ok(Session {
        user: OwnerId::parse(&row.user_id)
            .ok_or_else(|| corrupt(format!("a session of invalid user {:?}", row.user_id)))?,
        created_at: row.created_at,
        last_seen_at: row.last_seen_at,
        expires_at: row.expires_at,
        user_agent: row.user_agent,
        ip: row.ip,
    })
}

#[async_trait]
impl Sessions for SqlSessions {
    async fn create(
        &self,
        hash: &SecretHash,
        session: &Session,
        _idle: Duration,
    ) -> Result<(), RepoError> {
        let row = ActiveModel {
            hash: Set(to_hex(hash)),
            user_id: Set(session.user.as_str().to_owned()),
            created_at: Set(session.created_at),
            last_seen_at: Set(session.last_seen_at),
            expires_at: Set(session.expires_at),
            user_agent: Set(session.user_agent.clone()),
            ip: Set(session.ip.clone()),
        };
        Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
            .map_err(|e| match db_error(e) {
                // 2^-256: not a case a caller can act on.
                RepoError::AlreadyExists => corrupt("session hash collision".to_owned()),
                other => other,
            })?;
        Ok(())
    }

    async fn get(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
        idle: Duration,
    ) -> Result<Option<Session>, RepoError> {
        let key = to_hex(hash);
        let Some(row) = Entity::find_by_id(key.clone())
            .one(&self.db)
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        if is_live(&row, now, idle) {
            return to_session(row).map(Some);
        }
        Entity::delete_many()
            .filter(Column::Hash.eq(key))
            .filter(ended(now, idle))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(None)
    }

    async fn touch(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
        idle: Duration,
    ) -> Result<(), RepoError> {
        Entity::update_many()
            .col_expr(Column::LastSeenAt, Expr::value(now))
            .filter(Column::Hash.eq(to_hex(hash)))
            .filter(Column::LastSeenAt.lte(now - touch_gap(idle)))
            .filter(Column::LastSeenAt.gt(idle_cutoff(now, idle)))
            .filter(Column::ExpiresAt.gt(now))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn list(
        &self,
        user: &OwnerId,
        now: DateTime<Utc>,
        idle: Duration,
    ) -> Result<Vec<(SecretHash, Session)>, RepoError> {
        let rows = Entity::find()
            .filter(Column::UserId.eq(user.as_str()))
            .filter(Column::ExpiresAt.gt(now))
            .filter(Column::LastSeenAt.gt(idle_cutoff(now, idle)))
            .order_by_desc(Column::CreatedAt)
            .order_by_asc(Column::Hash)
            .limit(MAX_LISTED)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|row| {
                let hash = from_hex(&row.hash)
                    .ok_or_else(|| corrupt(format!("a session under {:?}", row.hash)))?;
                Ok((hash, to_session(row)?))
            })
            .collect()
    }

    async fn delete(&self, hash: &SecretHash) -> Result<(), RepoError> {
        Entity::delete_by_id(to_hex(hash))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn delete_user(&self, user: &OwnerId) -> Result<u64, RepoError> {
        let result = Entity::delete_many()
            .filter(Column::UserId.eq(user.as_str()))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected)
    }

    async fn sweep(&self, now: DateTime<Utc>, idle: Duration) -> Result<u64, RepoError> {
        let result = Entity::delete_many()
            .filter(ended(now, idle))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected)
    }
}
