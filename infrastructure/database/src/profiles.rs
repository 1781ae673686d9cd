//! `ProfileRepository` and `UploadSessions` on sea-orm.

use async_trait::async_trait;
use chrono::Utc;
use ferry_application::ports::{ProfileRepository, RepoError, SealedProfile, UploadSessions};
use ferry_domain::{JobId, OwnerId, ProfileId, StorageBackend, StorageProfile};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};

use crate::db_error;
use crate::entity::{default_profile, profile, session};

pub struct SqlProfileRepository {
    db: DatabaseConnection,
}

impl SqlProfileRepository {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

fn to_profile(row: profile::Model) -> Result<SealedProfile, RepoError> {
    let backend: StorageBackend = serde_json::from_str(&row.backend).map_err(|e| {
        RepoError::Unexpected(
            anyhow::Error::new(e).context(format!("profile {} is corrupt", row.id)),
        )
    })?;
    let owner = OwnerId::parse(&row.owner).ok_or_else(|| {
        RepoError::Unexpected(anyhow::anyhow!("profile {} has an invalid owner", row.id))
    })?;
    Ok(SealedProfile {
        profile: StorageProfile {
            id: ProfileId::from_uuid(row.id),
            owner,
            name: row.name,
            backend,
            created_at: row.created_at,
        },
        credentials: row.credentials,
    })
}

#[async_trait]
impl ProfileRepository for SqlProfileRepository {
    async fn insert(&self, sealed: &SealedProfile) -> Result<(), RepoError> {
        let p = &sealed.profile;
        let row = profile::ActiveModel {
            id: Set(p.id.as_uuid()),
            owner: Set(p.owner.as_str().to_owned()),
            name: Set(p.name.clone()),
            backend: Set(
                serde_json::to_string(&p.backend).map_err(|e| RepoError::Unexpected(e.into()))?
            ),
            credentials: Set(sealed.credentials.clone()),
            created_at: Set(p.created_at),
        };
        profile::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn get(
        &self,
        owner: &OwnerId,
        id: ProfileId,
    ) -> Result<Option<SealedProfile>, RepoError> {
        profile::Entity::find_by_id(id.as_uuid())
            .filter(profile::Column::Owner.eq(owner.as_str()))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .map(to_profile)
            .transpose()
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<StorageProfile>, RepoError> {
        profile::Entity::find()
            .filter(profile::Column::Owner.eq(owner.as_str()))
            .order_by_asc(profile::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|r| to_profile(r).map(|s| s.profile))
            .collect()
    }

    async fn delete(&self, owner: &OwnerId, id: ProfileId) -> Result<(), RepoError> {
        let result = profile::Entity::delete_many()
            .filter(profile::Column::Id.eq(id.as_uuid()))
            .filter(profile::Column::Owner.eq(owner.as_str()))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Err(RepoError::NotFound);
        }
        default_profile::Entity::delete_many()
            .filter(default_profile::Column::Owner.eq(owner.as_str()))
            .filter(default_profile::Column::ProfileId.eq(id.as_uuid()))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn default_of(&self, owner: &OwnerId) -> Result<Option<ProfileId>, RepoError> {
        let Some(row) = default_profile::Entity::find_by_id(owner.as_str().to_owned())
            .one(&self.db)
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        // A default whose profile went (deleted meanwhile) is no default.
        let exists = profile::Entity::find_by_id(row.profile_id)
            .filter(profile::Column::Owner.eq(owner.as_str()))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .is_some();
        Ok(exists.then(|| ProfileId::from_uuid(row.profile_id)))
    }

    async fn set_default(&self, owner: &OwnerId, id: Option<ProfileId>) -> Result<(), RepoError> {
        let Some(id) = id else {
            default_profile::Entity::delete_by_id(owner.as_str().to_owned())
                .exec(&self.db)
                .await
                .map_err(db_error)?;
            return Ok(());
        };
        if self.get(owner, id).await?.is_none() {
            return Err(RepoError::NotFound);
        }
        let row = default_profile::ActiveModel {
            owner: Set(owner.as_str().to_owned()),
            profile_id: Set(id.as_uuid()),
        };
        default_profile::Entity::insert(row)
            .on_conflict(
                OnConflict::column(default_profile::Column::Owner)
                    .update_column(default_profile::Column::ProfileId)
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn all_sealed(&self) -> Result<Vec<SealedProfile>, RepoError> {
        profile::Entity::find()
            .order_by_asc(profile::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_profile)
            .collect()
    }

    async fn replace_credentials(
        &self,
        id: ProfileId,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool, RepoError> {
        // Conditional: a concurrent change (or a deleted profile) is not overwritten.
        let result = profile::Entity::update_many()
            .col_expr(
                profile::Column::Credentials,
                sea_orm::sea_query::Expr::value(sealed.to_vec()),
            )
            .filter(profile::Column::Id.eq(id.as_uuid()))
            .filter(profile::Column::Credentials.eq(expected.to_vec()))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected == 1)
    }
}

pub struct SqlUploadSessions {
    db: DatabaseConnection,
}

impl SqlUploadSessions {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait]
impl UploadSessions for SqlUploadSessions {
    async fn get(&self, job: JobId, key: &str) -> Result<Option<String>, RepoError> {
        Ok(session::Entity::find_by_id((job.as_uuid(), key.to_owned()))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .map(|r| r.session))
    }

    async fn set(&self, job: JobId, key: &str, value: Option<&str>) -> Result<(), RepoError> {
        match value {
            Some(v) => {
                let row = session::ActiveModel {
                    job_id: Set(job.as_uuid()),
                    key: Set(key.to_owned()),
                    session: Set(v.to_owned()),
                    updated_at: Set(Utc::now()),
                };
                session::Entity::insert(row)
                    .on_conflict(
                        OnConflict::columns([session::Column::JobId, session::Column::Key])
                            .update_columns([session::Column::Session, session::Column::UpdatedAt])
                            .to_owned(),
                    )
                    .exec_without_returning(&self.db)
                    .await
                    .map_err(db_error)?;
            }
            None => {
                session::Entity::delete_by_id((job.as_uuid(), key.to_owned()))
                    .exec(&self.db)
                    .await
                    .map_err(db_error)?;
            }
        }
        Ok(())
    }

    async fn of_job(&self, job: JobId) -> Result<Vec<(String, String)>, RepoError> {
        Ok(session::Entity::find()
            .filter(session::Column::JobId.eq(job.as_uuid()))
            .order_by_asc(session::Column::Key)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|r| (r.key, r.session))
            .collect())
    }
}
