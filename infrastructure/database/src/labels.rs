//! `LabelRepository` on sea-orm: categories and each job's category and tags.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use ferry_application::ports::{Category, JobLabels, LabelRepository, RepoError};
use ferry_domain::{JobId, OwnerId, ProfileId};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::db_error;
use crate::entity::{Column as JobColumn, Entity as Jobs, category, job_label};

/// Jobs changed per statement: a `hashes=all` over thousands of jobs stays under the
/// databases' bind-parameter limits (PostgreSQL's 65,535; five per inserted row).
const CHUNK: usize = 1000;

pub struct SqlLabelRepository {
    db: DatabaseConnection,
}

impl SqlLabelRepository {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// The ids among `jobs` that belong to `owner`.
    async fn owned(&self, owner: &OwnerId, jobs: &[JobId]) -> Result<Vec<JobId>, RepoError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<uuid::Uuid> = Jobs::find()
            .select_only()
            .column(JobColumn::Id)
            .filter(JobColumn::Owner.eq(owner.as_str()))
            .filter(JobColumn::Id.is_in(jobs.iter().map(JobId::as_uuid)))
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(ids.into_iter().map(JobId::from_uuid).collect())
    }

    /// Makes sure each job has a labels row (with no category and no tags if new).
    async fn ensure_rows(&self, owner: &OwnerId, jobs: &[JobId]) -> Result<(), RepoError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let rows = jobs.iter().map(|id| job_label::ActiveModel {
            job_id: Set(id.as_uuid()),
            owner: Set(owner.as_str().to_owned()),
            category: Set(None),
            tags: Set(String::new()),
            removed: Set(false),
        });
        job_label::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(job_label::Column::JobId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

fn to_category(row: category::Model) -> Category {
    Category {
        name: row.name,
        save_path: row.save_path,
        profile: row.profile_id.map(ProfileId::from_uuid),
    }
}

fn split_tags(text: &str) -> BTreeSet<String> {
    text.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

fn join_tags(tags: &BTreeSet<String>) -> String {
    tags.iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

#[async_trait]
impl LabelRepository for SqlLabelRepository {
    async fn categories(&self, owner: &OwnerId) -> Result<Vec<Category>, RepoError> {
        Ok(category::Entity::find()
            .filter(category::Column::Owner.eq(owner.as_str()))
            .order_by_asc(category::Column::Name)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_category)
            .collect())
    }

    async fn create_category(&self, owner: &OwnerId, category: &Category) -> Result<(), RepoError> {
        let row = category::ActiveModel {
            owner: Set(owner.as_str().to_owned()),
            name: Set(category.name.clone()),
            save_path: Set(category.save_path.clone()),
            profile_id: Set(category.profile.map(|p| p.as_uuid())),
        };
        category::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn edit_category(&self, owner: &OwnerId, category: &Category) -> Result<(), RepoError> {
        let result = category::Entity::update_many()
            .col_expr(
                category::Column::SavePath,
                Expr::value(category.save_path.clone()),
            )
            .col_expr(
                category::Column::ProfileId,
                Expr::value(category.profile.map(|p| p.as_uuid())),
            )
            .filter(category::Column::Owner.eq(owner.as_str()))
            .filter(category::Column::Name.eq(category.name.as_str()))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Err(RepoError::NotFound);
        }
        Ok(())
    }

    async fn remove_categories(&self, owner: &OwnerId, names: &[String]) -> Result<(), RepoError> {
        if names.is_empty() {
            return Ok(());
        }
        category::Entity::delete_many()
            .filter(category::Column::Owner.eq(owner.as_str()))
            .filter(category::Column::Name.is_in(names.iter().map(String::as_str)))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        job_label::Entity::update_many()
            .col_expr(job_label::Column::Category, Expr::value(None::<String>))
            .filter(job_label::Column::Owner.eq(owner.as_str()))
            .filter(job_label::Column::Category.is_in(names.iter().map(String::as_str)))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn labels(&self, owner: &OwnerId) -> Result<HashMap<JobId, JobLabels>, RepoError> {
        Ok(job_label::Entity::find()
            .filter(job_label::Column::Owner.eq(owner.as_str()))
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|row| {
                let labels = JobLabels {
                    category: row.category,
                    tags: split_tags(&row.tags).into_iter().collect(),
                    removed: row.removed,
                };
                (JobId::from_uuid(row.job_id), labels)
            })
            .collect())
    }

    async fn set_category(
        &self,
        owner: &OwnerId,
        jobs: &[JobId],
        category: Option<&str>,
    ) -> Result<(), RepoError> {
        for jobs in jobs.chunks(CHUNK) {
            let jobs = self.owned(owner, jobs).await?;
            self.ensure_rows(owner, &jobs).await?;
            if jobs.is_empty() {
                continue;
            }
            job_label::Entity::update_many()
                .col_expr(
                    job_label::Column::Category,
                    Expr::value(category.map(str::to_owned)),
                )
                .filter(job_label::Column::Owner.eq(owner.as_str()))
                .filter(job_label::Column::JobId.is_in(jobs.iter().map(JobId::as_uuid)))
                .exec(&self.db)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    async fn set_removed(
        &self,
        owner: &OwnerId,
        jobs: &[JobId],
        removed: bool,
    ) -> Result<(), RepoError> {
        for jobs in jobs.chunks(CHUNK) {
            let jobs = self.owned(owner, jobs).await?;
            self.ensure_rows(owner, &jobs).await?;
            if jobs.is_empty() {
                continue;
            }
            job_label::Entity::update_many()
                .col_expr(job_label::Column::Removed, Expr::value(removed))
                .filter(job_label::Column::Owner.eq(owner.as_str()))
                .filter(job_label::Column::JobId.is_in(jobs.iter().map(JobId::as_uuid)))
                .exec(&self.db)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    async fn tag(
        &self,
        owner: &OwnerId,
        jobs: &[JobId],
        tags: &[String],
        add: bool,
    ) -> Result<(), RepoError> {
        let mut owned = Vec::with_capacity(jobs.len());
        for jobs in jobs.chunks(CHUNK) {
            let jobs = self.owned(owner, jobs).await?;
            self.ensure_rows(owner, &jobs).await?;
            owned.extend(jobs);
        }
        for job in owned {
            // Compare and set: two callers tagging the same job at once both keep theirs.
            loop {
                let Some(row) = job_label::Entity::find_by_id(job.as_uuid())
                    .one(&self.db)
                    .await
                    .map_err(db_error)?
                else {
                    break; // The job went meanwhile.
                };
                let mut now = split_tags(&row.tags);
                for tag in tags {
                    if add {
                        now.insert(tag.clone());
                    } else {
                        now.remove(tag);
                    }
                }
                let updated = job_label::Entity::update_many()
                    .col_expr(job_label::Column::Tags, Expr::value(join_tags(&now)))
                    .filter(job_label::Column::JobId.eq(job.as_uuid()))
                    .filter(job_label::Column::Tags.eq(row.tags.as_str()))
                    .exec(&self.db)
                    .await
                    .map_err(db_error)?;
                if updated.rows_affected > 0 {
                    break;
                }
            }
        }
        Ok(())
    }
}
