//! `TokenRepository` on sea-orm: personal tokens, found by id (whoever owns them) or listed
//! and revoked by their owner only.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_application::ports::{RepoError, TokenRepository};
use ferry_domain::{OwnerId, PersonalToken, Scopes, TokenId};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};

use super::entity::token;
use super::users::stale;
use super::{corrupt, from_hex, to_hex};
use crate::db_error;

pub struct SqlTokens {
    db: DatabaseConnection,
}

impl SqlTokens {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

fn to_token(row: token::Model) -> Result<PersonalToken, RepoError> {
    let bad = |what: &str| corrupt(format!("token {} has an invalid {what}", row.id));
    let scopes = if row.scopes.trim().is_empty() {
        Scopes::NONE
    } else {
        Scopes::parse(&row.scopes).map_err(|_| bad("scope list"))?
    };
    Ok(PersonalToken {
        id: TokenId::from_uuid(row.id),
        owner: OwnerId::parse(&row.owner).ok_or_else(|| bad("owner"))?,
        name: row.name.clone(),
        scopes,
        secret_sha256: from_hex(&row.secret_sha256).ok_or_else(|| bad("secret hash"))?,
        created_at: row.created_at,
        expires_at: row.expires_at,
        last_used_at: row.last_used_at,
    })
}

#[async_trait]
impl TokenRepository for SqlTokens {
    async fn insert(&self, t: &PersonalToken) -> Result<(), RepoError> {
        let row = token::ActiveModel {
            id: Set(t.id.as_uuid()),
            owner: Set(t.owner.as_str().to_owned()),
            name: Set(t.name.clone()),
            scopes: Set(t.scopes.to_text()),
            secret_sha256: Set(to_hex(&t.secret_sha256)),
            created_at: Set(t.created_at),
            expires_at: Set(t.expires_at),
            last_used_at: Set(t.last_used_at),
        };
        token::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn get(&self, id: TokenId) -> Result<Option<PersonalToken>, RepoError> {
        token::Entity::find_by_id(id.as_uuid())
            .one(&self.db)
            .await
            .map_err(db_error)?
            .map(to_token)
            .transpose()
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<PersonalToken>, RepoError> {
        token::Entity::find()
            .filter(token::Column::Owner.eq(owner.as_str()))
            .order_by_desc(token::Column::CreatedAt)
            .order_by_desc(token::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_token)
            .collect()
    }

    async fn revoke(&self, owner: &OwnerId, id: TokenId) -> Result<(), RepoError> {
        let result = token::Entity::delete_many()
            .filter(token::Column::Id.eq(id.as_uuid()))
            .filter(token::Column::Owner.eq(owner.as_str()))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Err(RepoError::NotFound);
        }
        Ok(())
    }

    async fn touch(&self, id: TokenId, at: DateTime<Utc>) -> Result<(), RepoError> {
        token::Entity::update_many()
            .col_expr(token::Column::LastUsedAt, Expr::value(at))
            .filter(token::Column::Id.eq(id.as_uuid()))
            .filter(stale(token::Column::LastUsedAt, at))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
