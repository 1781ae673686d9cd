//! `UserRepository` on sea-orm.
//!
//! Uniqueness (user id, OIDC issuer + subject, local name, one local identity per user) is
//! the database's to enforce: a check before an insert cannot see a concurrent insert, the
//! index can, and its violation comes back as `AlreadyExists`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_application::ports::{RepoError, SecretHash, UserChange, UserRepository};
use ferry_domain::{Identity, OwnerId, Quotas, User, UserName};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, TransactionTrait,
};

use super::entity::{identity, setup_link, user};
use super::{TOUCH_GAP, corrupt, to_hex};
use crate::db_error;

const OIDC: &str = "oidc";
const LOCAL: &str = "local";

pub struct SqlUsers {
    db: DatabaseConnection,
}

impl SqlUsers {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

/// A quota as stored: the columns are signed, and a limit past `i64::MAX` is no limit anyway.
fn stored_quota(quota: Option<u64>) -> Option<i64> {
    quota.map(|q| i64::try_from(q).unwrap_or(i64::MAX))
}

fn quota(id: &str, value: Option<i64>) -> Result<Option<u64>, RepoError> {
    value
        .map(|v| u64::try_from(v).map_err(|_| corrupt(format!("user {id} has a negative quota"))))
        .transpose()
}

fn to_user(row: user::Model) -> Result<User, RepoError> {
    let id = OwnerId::parse(&row.id)
        .ok_or_else(|| corrupt(format!("user id {:?} is invalid", row.id)))?;
    let quotas = Quotas {
        active_jobs: quota(&row.id, row.quota_active_jobs)?,
        job_bytes: quota(&row.id, row.quota_job_bytes)?,
        stored_bytes: quota(&row.id, row.quota_stored_bytes)?,
        seeding_jobs: quota(&row.id, row.quota_seeding_jobs)?,
    };
    Ok(User {
        role: row
            .role
            .parse()
            .map_err(|_| corrupt(format!("user {} has an unknown role", row.id)))?,
        id,
        display_name: row.display_name,
        email: row.email,
        disabled: row.disabled,
        quotas,
        created_at: row.created_at,
        last_seen_at: row.last_seen_at,
    })
}

fn to_identity(row: identity::Model) -> Result<Identity, RepoError> {
    match (row.kind.as_str(), row.issuer, row.subject, row.local_name) {
        (OIDC, Some(issuer), Some(subject), _) => Ok(Identity::Oidc { issuer, subject }),
        (LOCAL, _, _, Some(name)) => Ok(Identity::Local {
            name: UserName::parse(&name)
                .map_err(|_| corrupt(format!("identity {} has an invalid name", row.id)))?,
            password_hash: row.password_hash,
        }),
        _ => Err(corrupt(format!("identity {} is incomplete", row.id))),
    }
}

fn identity_row(user: &OwnerId, identity: &Identity) -> identity::ActiveModel {
    let (kind, issuer, subject, local_name, password_hash) = match identity {
        Identity::Oidc { issuer, subject } => (
            OIDC,
            Some(issuer.clone()),
            Some(subject.clone()),
            None,
            None,
        ),
        Identity::Local {
            name,
            password_hash,
        } => (
            LOCAL,
            None,
            None,
            Some(name.as_str().to_owned()),
            password_hash.clone(),
        ),
    };
    identity::ActiveModel {
        id: NotSet,
        user_id: Set(user.as_str().to_owned()),
        kind: Set(kind.to_owned()),
        issuer: Set(issuer),
        subject: Set(subject),
        local_name: Set(local_name),
        password_hash: Set(password_hash),
    }
}

impl SqlUsers {
    async fn find(&self, id: &str) -> Result<Option<User>, RepoError> {
        user::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await
            .map_err(db_error)?
            .map(to_user)
            .transpose()
    }

    async fn insert_identity(
        db: &impl ConnectionTrait,
        user: &OwnerId,
        identity: &Identity,
    ) -> Result<(), RepoError> {
        identity::Entity::insert(identity_row(user, identity))
            .exec_without_returning(db)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

/// `update` writing the four quota overrides.
fn set_quotas(
    update: sea_orm::UpdateMany<user::Entity>,
    q: Quotas,
) -> sea_orm::UpdateMany<user::Entity> {
    update
        .col_expr(
            user::Column::QuotaActiveJobs,
            Expr::value(stored_quota(q.active_jobs)),
        )
        .col_expr(
            user::Column::QuotaJobBytes,
            Expr::value(stored_quota(q.job_bytes)),
        )
        .col_expr(
            user::Column::QuotaStoredBytes,
            Expr::value(stored_quota(q.stored_bytes)),
        )
        .col_expr(
            user::Column::QuotaSeedingJobs,
            Expr::value(stored_quota(q.seeding_jobs)),
        )
}

#[async_trait]
impl UserRepository for SqlUsers {
    async fn insert(&self, user: &User, identity: Option<&Identity>) -> Result<(), RepoError> {
        let q = user.quotas;
        let row = user::ActiveModel {
            id: Set(user.id.as_str().to_owned()),
            display_name: Set(user.display_name.clone()),
            email: Set(user.email.clone()),
            role: Set(user.role.as_str().to_owned()),
            disabled: Set(user.disabled),
            quota_active_jobs: Set(stored_quota(q.active_jobs)),
            quota_job_bytes: Set(stored_quota(q.job_bytes)),
            quota_stored_bytes: Set(stored_quota(q.stored_bytes)),
            quota_seeding_jobs: Set(stored_quota(q.seeding_jobs)),
            created_at: Set(user.created_at),
            last_seen_at: Set(user.last_seen_at),
        };
        // One transaction: a taken identity leaves no user behind.
        let txn = self.db.begin().await.map_err(db_error)?;
        user::Entity::insert(row)
            .exec_without_returning(&txn)
            .await
            .map_err(db_error)?;
        if let Some(identity) = identity {
            Self::insert_identity(&txn, &user.id, identity).await?;
        }
        txn.commit().await.map_err(db_error)
    }

    async fn get(&self, id: &OwnerId) -> Result<Option<User>, RepoError> {
        self.find(id.as_str()).await
    }

    async fn by_oidc(&self, issuer: &str, subject: &str) -> Result<Option<User>, RepoError> {
        // One query (every request with an IdP access token asks).
        let identity = Query::select()
            .column(identity::Column::UserId)
            .from(identity::Entity)
            .and_where(Expr::col(identity::Column::Kind).eq(OIDC))
            .and_where(Expr::col(identity::Column::Issuer).eq(issuer))
            .and_where(Expr::col(identity::Column::Subject).eq(subject))
            .to_owned();
        user::Entity::find()
            .filter(Expr::col(user::Column::Id).in_subquery(identity))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .map(to_user)
            .transpose()
    }

    async fn by_local_name(
        &self,
        name: &UserName,
    ) -> Result<Option<(User, Option<String>)>, RepoError> {
        let row = identity::Entity::find()
            .filter(identity::Column::Kind.eq(LOCAL))
            .filter(identity::Column::LocalName.eq(name.as_str()))
            .one(&self.db)
            .await
            .map_err(db_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(self
            .find(&row.user_id)
            .await?
            .map(|user| (user, row.password_hash)))
    }

    async fn identities(&self, id: &OwnerId) -> Result<Vec<Identity>, RepoError> {
        identity::Entity::find()
            .filter(identity::Column::UserId.eq(id.as_str()))
            .order_by_asc(identity::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_identity)
            .collect()
    }

    async fn set_local_password(
        &self,
        id: &OwnerId,
        name: &UserName,
        password_hash: &str,
    ) -> Result<(), RepoError> {
        if self.find(id.as_str()).await?.is_none() {
            return Err(RepoError::NotFound);
        }
        // Update the local identity the user has, else add one. A concurrent first insert
        // for the same user trips the one-local-identity index: the second round updates it.
        for round in 0..2 {
            let updated = identity::Entity::update_many()
                .col_expr(
                    identity::Column::LocalName,
                    Expr::value(name.as_str().to_owned()),
                )
                .col_expr(
                    identity::Column::PasswordHash,
                    Expr::value(password_hash.to_owned()),
                )
                .filter(identity::Column::UserId.eq(id.as_str()))
                .filter(identity::Column::Kind.eq(LOCAL))
                .exec(&self.db)
                .await
                .map_err(db_error)?;
            if updated.rows_affected > 0 {
                return Ok(());
            }
            let local = Identity::Local {
                name: name.clone(),
                password_hash: Some(password_hash.to_owned()),
            };
            match Self::insert_identity(&self.db, id, &local).await {
                Err(RepoError::AlreadyExists) if round == 0 => {}
                done => return done,
            }
        }
        Err(RepoError::AlreadyExists)
    }

    async fn list(&self) -> Result<Vec<User>, RepoError> {
        user::Entity::find()
            .order_by_asc(user::Column::CreatedAt)
            .order_by_asc(user::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_user)
            .collect()
    }

    async fn update(&self, user: &User) -> Result<(), RepoError> {
        let result = set_quotas(user::Entity::update_many(), user.quotas)
            .col_expr(
                user::Column::DisplayName,
                Expr::value(user.display_name.clone()),
            )
            .col_expr(user::Column::Email, Expr::value(user.email.clone()))
            .col_expr(user::Column::Role, Expr::value(user.role.as_str()))
            .col_expr(user::Column::Disabled, Expr::value(user.disabled))
            .filter(user::Column::Id.eq(user.id.as_str()))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Err(RepoError::NotFound);
        }
        Ok(())
    }

    async fn change(&self, id: &OwnerId, change: &UserChange) -> Result<(), RepoError> {
        let mut update = user::Entity::update_many();
        if let Some(role) = change.role {
            update = update.col_expr(user::Column::Role, Expr::value(role.as_str()));
        }
        if let Some(disabled) = change.disabled {
            update = update.col_expr(user::Column::Disabled, Expr::value(disabled));
        }
        if let Some(q) = change.quotas {
            update = set_quotas(update, q);
        }
        if change == &UserChange::default() {
            // Nothing to write; the user must still exist.
            return match self.get(id).await? {
                Some(_) => Ok(()),
                None => Err(RepoError::NotFound),
            };
        }
        let result = update
            .filter(user::Column::Id.eq(id.as_str()))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Err(RepoError::NotFound);
        }
        Ok(())
    }

    async fn touch(&self, id: &OwnerId, at: DateTime<Utc>) -> Result<(), RepoError> {
        user::Entity::update_many()
            .col_expr(user::Column::LastSeenAt, Expr::value(at))
            .filter(user::Column::Id.eq(id.as_str()))
            .filter(stale(user::Column::LastSeenAt, at))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn insert_setup_link(
        &self,
        hash: &SecretHash,
        user: &OwnerId,
        expires_at: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let row = setup_link::ActiveModel {
            hash: Set(to_hex(hash)),
            user_id: Set(user.as_str().to_owned()),
            expires_at: Set(expires_at),
        };
        setup_link::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
            .map_err(|e| match db_error(e) {
                // 2^-256: not a case a caller can act on.
                RepoError::AlreadyExists => corrupt("setup link hash collision".to_owned()),
                other => other,
            })?;
        Ok(())
    }

    async fn take_setup_link(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
    ) -> Result<Option<OwnerId>, RepoError> {
        let key = to_hex(hash);
        let Some(row) = setup_link::Entity::find_by_id(key.clone())
            .one(&self.db)
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let live = row.expires_at > now;
        // The delete decides: of two requests that both read the row, one deletes it.
        let deleted = setup_link::Entity::delete_many()
            .filter(setup_link::Column::Hash.eq(key))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if !live || deleted.rows_affected != 1 {
            return Ok(None);
        }
        OwnerId::parse(&row.user_id)
            .map(Some)
            .ok_or_else(|| corrupt(format!("setup link of invalid user {:?}", row.user_id)))
    }
}

/// The last write of `column` is a minute or more before `at` (or there was none): a
/// "seen" or "used" stamp closer than that is not worth a write.
pub(super) fn stale(column: impl ColumnTrait, at: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(column.is_null())
        .add(column.lte(at - TOUCH_GAP))
}
