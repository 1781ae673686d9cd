//! The relational adapters (sea-orm over PostgreSQL or SQLite): `JobRepository`, the
//! profiles' and the accounts' repositories.

mod accounts;
mod entity;
mod feeds;
mod labels;
mod mapping;
mod profiles;
mod webhooks;

pub use accounts::{AUDIT_PAGE_MAX, SqlAudit, SqlSessions, SqlTokens, SqlUsers};
pub use feeds::SqlFeedRepository;
pub use labels::SqlLabelRepository;
pub use profiles::{SqlProfileRepository, SqlUploadSessions};
pub use webhooks::SqlWebhookRepository;

use std::time::Duration;

use async_trait::async_trait;
use ferry_application::ports::{JobQuery, JobRepository, RepoError, Transition, Unfinished};
use ferry_domain::{
    InfoHash, Job, JobError, JobId, JobStatus, OwnerId, Progress, SeedPolicy, TorrentMetadata,
};
use ferry_migrations::{Migrator, MigratorTrait};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, SqlErr,
};

pub use sea_orm::DatabaseConnection as Connection;

use entity::{Column, Entity as Jobs};

/// Opens a pool for `url` (`postgres://…` or `sqlite://…?mode=rwc`). SQLite runs in WAL
/// mode with a busy timeout so the API and workers of one process can share it.
///
/// # Errors
/// When the database cannot be reached.
pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10));
    if url.starts_with("sqlite:") {
        opts.max_connections(8).map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(15))
                .foreign_keys(true)
        });
    } else {
        opts.max_connections(16);
    }
    Ok(Database::connect(opts).await?)
}

/// Brings the schema up to date.
///
/// # Errors
/// When a migration fails.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None).await?;
    Ok(())
}

pub struct SqlJobRepository {
    db: DatabaseConnection,
}

impl SqlJobRepository {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

pub(crate) fn db_error(e: DbErr) -> RepoError {
    match &e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => RepoError::Unavailable(e.to_string()),
        _ if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            RepoError::AlreadyExists
        }
        _ => RepoError::Unexpected(e.into()),
    }
}

fn json(value: &impl serde::Serialize) -> Result<String, RepoError> {
    serde_json::to_string(value).map_err(|e| RepoError::Unexpected(e.into()))
}

impl SqlJobRepository {
    async fn update_one(
        &self,
        id: JobId,
        update: sea_orm::UpdateMany<Jobs>,
    ) -> Result<(), RepoError> {
        let result = update
            .filter(Column::Id.eq(id.as_uuid()))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Err(RepoError::NotFound);
        }
        Ok(())
    }
}

#[async_trait]
impl JobRepository for SqlJobRepository {
    async fn insert(&self, job: &Job) -> Result<(), RepoError> {
        let row = mapping::to_active(job)?;
        Jobs::insert(row)
            .exec_without_returning(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn get(&self, id: JobId) -> Result<Job, RepoError> {
        let row = Jobs::find_by_id(id.as_uuid())
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or(RepoError::NotFound)?;
        Ok(mapping::from_row(row)?)
    }

    async fn count_by_status(&self) -> Result<Vec<(JobStatus, u64)>, RepoError> {
        let rows: Vec<(String, i64)> = Jobs::find()
            .select_only()
            .column(Column::Status)
            .column_as(Column::Id.count(), "n")
            .group_by(Column::Status)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_error)?;
        let mut out = rows
            .into_iter()
            .map(|(status, n)| {
                let status: JobStatus = status
                    .parse()
                    .map_err(|e| RepoError::Unexpected(anyhow::Error::new(e)))?;
                Ok((status, u64::try_from(n).unwrap_or(0)))
            })
            .collect::<Result<Vec<_>, RepoError>>()?;
        out.sort_by_key(|(s, _)| s.as_str());
        Ok(out)
    }

    async fn status(&self, id: JobId) -> Result<JobStatus, RepoError> {
        let status: Option<String> = Jobs::find_by_id(id.as_uuid())
            .select_only()
            .column(Column::Status)
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(db_error)?;
        let status = status.ok_or(RepoError::NotFound)?;
        status
            .parse()
            .map_err(|e| RepoError::Unexpected(anyhow::Error::new(e)))
    }

    async fn watch(&self, id: JobId) -> Result<(JobStatus, ferry_domain::SpeedLimits), RepoError> {
        let row: Option<(String, Option<i64>, Option<i64>)> = Jobs::find_by_id(id.as_uuid())
            .select_only()
            .column(Column::Status)
            .column(Column::DownloadLimit)
            .column(Column::UploadLimit)
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(db_error)?;
        let (status, down, up) = row.ok_or(RepoError::NotFound)?;
        let status = status
            .parse()
            .map_err(|e| RepoError::Unexpected(anyhow::Error::new(e)))?;
        Ok((status, mapping::speed_limits(down, up)))
    }

    async fn queue_positions(
        &self,
        ids: &[JobId],
    ) -> Result<std::collections::HashMap<JobId, u32>, RepoError> {
        let mut out = std::collections::HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        // The whole queue, in the order it was queued; ids and kinds only (the index on
        // status finds the rows).
        let queued: Vec<(uuid::Uuid, String)> = Jobs::find()
            .select_only()
            .column(Column::Id)
            .column(Column::SourceKind)
            .filter(Column::Status.eq(JobStatus::Queued.as_str()))
            .order_by_asc(Column::UpdatedAt)
            .order_by_asc(Column::Id)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_error)?;
        let mut next = [0u32; 2];
        for (id, kind) in queued {
            let kind = usize::from(kind == "url");
            next[kind] += 1;
            let id = JobId::from_uuid(id);
            if ids.contains(&id) {
                out.insert(id, next[kind]);
            }
        }
        Ok(out)
    }

    async fn list(&self, q: &JobQuery) -> Result<Vec<Job>, RepoError> {
        let mut select = Jobs::find().filter(Column::Owner.eq(q.owner.as_str()));
        if let Some(status) = q.status {
            select = select.filter(Column::Status.eq(status.as_str()));
        }
        if let Some(before) = q.before {
            select = select.filter(Column::Id.lt(before.as_uuid()));
        }
        if let Some(t) = &q.torrents {
            select = select
                .filter(Column::SourceKind.ne("url"))
                .filter(Column::InfoHash.is_not_null())
                .filter(Column::PurgeRequested.eq(false));
            if let Some(hashes) = &t.info_hashes {
                select = select.filter(Column::InfoHash.is_in(hashes.iter().map(InfoHash::to_hex)));
            }
            if let Some(ids) = &t.ids {
                select = select.filter(Column::Id.is_in(ids.iter().map(JobId::as_uuid)));
            }
            if let Some(statuses) = &t.statuses {
                select = select.filter(Column::Status.is_in(statuses.iter().map(|s| s.as_str())));
            }
        }
        if let Some(text) = q.name_contains.as_deref().filter(|t| !t.is_empty()) {
            // LOWER on the column, lowercase text on the other side: PostgreSQL's LIKE minds
            // case (and its LOWER knows Unicode); SQLite's ignores ASCII case only.
            let escaped: String = text
                .to_lowercase()
                .chars()
                .flat_map(|c| match c {
                    '%' | '_' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            select = select.filter(
                Expr::expr(Func::lower(Expr::col(Column::Name)))
                    .like(LikeExpr::new(format!("%{escaped}%")).escape('\\')),
            );
        }
        let select = select.order_by_desc(Column::Id).limit(u64::from(q.limit));
        let rows = if q.torrents.is_none() && (q.status.is_some() || q.name_contains.is_some()) {
            // A filter that may pass over many of the owner's jobs picks the page's ids from
            // the index that holds owner, id, status and name (SQLite), and only those rows
            // are loaded: on SQLite a row keeps its name behind the metainfo's overflow
            // pages, and checking 5,000 names row by row took 45 ms (`bench/jobs.sh`). One
            // statement, so the page is what one snapshot of the table holds.
            let ids = select.select_only().column(Column::Id).into_query();
            Jobs::find()
                .filter(Column::Id.in_subquery(ids))
                .order_by_desc(Column::Id)
                .all(&self.db)
                .await
                .map_err(db_error)?
        } else {
            select.all(&self.db).await.map_err(db_error)?
        };
        rows.into_iter()
            .map(|r| mapping::from_row(r).map_err(RepoError::Unexpected))
            .collect()
    }

    async fn transition(&self, id: JobId, c: &Transition) -> Result<Job, RepoError> {
        let mut update = Jobs::update_many()
            .col_expr(Column::Status, Expr::value(c.to.as_str()))
            .col_expr(Column::UpdatedAt, Expr::value(c.at))
            .col_expr(
                Column::ErrorCode,
                Expr::value(c.error.as_ref().map(|e| e.code.clone())),
            )
            .col_expr(
                Column::ErrorMessage,
                Expr::value(c.error.as_ref().map(|e| e.message.clone())),
            )
            .col_expr(
                Column::FinishedAt,
                Expr::value(c.to.is_terminal().then_some(c.at)),
            )
            .filter(Column::Id.eq(id.as_uuid()))
            .filter(Column::Status.eq(c.from.as_str()));
        if c.to == JobStatus::Seeding {
            update = update.col_expr(Column::SeedingStartedAt, Expr::value(Some(c.at)));
        }
        if c.to == JobStatus::Queued {
            update = update.col_expr(Column::Attempts, Expr::value(0));
        }
        if !c.to.is_terminal() {
            // A job being purged never starts new work.
            update = update.filter(Column::PurgeRequested.eq(false));
        }
        let result = update.exec(&self.db).await.map_err(db_error)?;
        if result.rows_affected == 0 {
            let actual = self.status(id).await?;
            return Err(RepoError::Conflict {
                expected: c.from,
                actual,
            });
        }
        self.get(id).await
    }

    async fn request_purge(&self, id: JobId) -> Result<Job, RepoError> {
        let update = Jobs::update_many().col_expr(Column::PurgeRequested, Expr::value(true));
        self.update_one(id, update).await?;
        self.get(id).await
    }

    async fn record_metadata(&self, id: JobId, m: &TorrentMetadata) -> Result<(), RepoError> {
        let progress_total = m.selected_bytes();
        let mut job = self.get(id).await?;
        job.progress.bytes_total = progress_total;
        let update = Jobs::update_many()
            .col_expr(Column::Name, Expr::value(m.name.clone()))
            .col_expr(Column::InfoHash, Expr::value(m.info_hash.to_hex()))
            .col_expr(Column::Metadata, Expr::value(mapping::metadata_json(m)?))
            .col_expr(Column::Metainfo, Expr::value(m.metainfo.clone()))
            .col_expr(Column::Progress, Expr::value(json(&job.progress)?));
        self.update_one(id, update).await
    }

    async fn record_digest(&self, id: JobId, index: usize, sha256: &str) -> Result<(), RepoError> {
        // Only the delivery stage writes digests, one file at a time: read-modify-write is safe.
        let job = self.get(id).await?;
        let Some(mut meta) = job.metadata else {
            return Err(RepoError::Unexpected(anyhow::anyhow!(
                "job {id} has no metadata"
            )));
        };
        if let Some(f) = meta.files.iter_mut().find(|f| f.index == index) {
            f.sha256 = Some(sha256.to_owned());
        }
        let update = Jobs::update_many().col_expr(
            Column::Metadata,
            Expr::value(mapping::metadata_json(&meta)?),
        );
        self.update_one(id, update).await
    }

    async fn record_progress(&self, id: JobId, p: &Progress) -> Result<(), RepoError> {
        let update = Jobs::update_many().col_expr(Column::Progress, Expr::value(json(p)?));
        self.update_one(id, update).await
    }

    async fn record_attempt(
        &self,
        id: JobId,
        attempts: u32,
        error: Option<&JobError>,
    ) -> Result<(), RepoError> {
        let update = Jobs::update_many()
            .col_expr(
                Column::Attempts,
                Expr::value(i32::try_from(attempts).unwrap_or(i32::MAX)),
            )
            .col_expr(
                Column::ErrorCode,
                Expr::value(error.map(|e| e.code.clone())),
            )
            .col_expr(
                Column::ErrorMessage,
                Expr::value(error.map(|e| e.message.clone())),
            );
        self.update_one(id, update).await
    }

    async fn find_unfinished_by_info_hash(
        &self,
        owner: &OwnerId,
        info_hash: InfoHash,
    ) -> Result<Option<JobId>, RepoError> {
        let finished = [
            JobStatus::Completed,
            JobStatus::Cancelled,
            JobStatus::Failed,
        ]
        .map(JobStatus::as_str);
        let id: Option<uuid::Uuid> = Jobs::find()
            .select_only()
            .column(Column::Id)
            .filter(Column::Owner.eq(owner.as_str()))
            .filter(Column::InfoHash.eq(info_hash.to_hex()))
            .filter(Column::Status.is_not_in(finished))
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(db_error)?;
        Ok(id.map(JobId::from_uuid))
    }

    async fn unfinished(&self) -> Result<Vec<Unfinished>, RepoError> {
        let skip = [
            JobStatus::Completed,
            JobStatus::Cancelled,
            JobStatus::Failed,
            JobStatus::Paused,
        ]
        .map(JobStatus::as_str);
        let rows: Vec<(uuid::Uuid, String, String, bool)> = Jobs::find()
            .select_only()
            .column(Column::Id)
            .column(Column::Status)
            .column(Column::SourceKind)
            .column(Column::PurgeRequested)
            .filter(
                sea_orm::Condition::any()
                    .add(Column::Status.is_not_in(skip))
                    .add(Column::PurgeRequested.eq(true)),
            )
            .order_by_asc(Column::Id)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|(id, status, kind, purge)| {
                let status = status
                    .parse()
                    .map_err(|e| RepoError::Unexpected(anyhow::Error::new(e)))?;
                Ok(Unfinished {
                    id: JobId::from_uuid(id),
                    status,
                    is_url: kind == "url",
                    purge,
                })
            })
            .collect()
    }

    async fn record_byte_limit(&self, id: JobId, limit: Option<u64>) -> Result<(), RepoError> {
        let limit = limit.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        let update = Jobs::update_many().col_expr(Column::ByteLimit, Expr::value(limit));
        self.update_one(id, update).await
    }

    async fn record_seed(&self, id: JobId, seed: Option<SeedPolicy>) -> Result<(), RepoError> {
        let seed = seed.as_ref().map(json).transpose()?;
        let update = Jobs::update_many().col_expr(Column::Seed, Expr::value(seed));
        self.update_one(id, update).await
    }

    async fn record_speed_limits(
        &self,
        id: JobId,
        change: ferry_domain::SpeedLimitsChange,
    ) -> Result<(), RepoError> {
        let bps = |v: Option<std::num::NonZeroU32>| v.map(|v| i64::from(v.get()));
        // `updated_at` stays: it is the job's place in the queue. A direction the change
        // does not name is not written (a concurrent change of it stands).
        let mut update = Jobs::update_many();
        let mut wrote = false;
        if let Some(down) = change.download_bps {
            update = update.col_expr(Column::DownloadLimit, Expr::value(bps(down)));
            wrote = true;
        }
        if let Some(up) = change.upload_bps {
            update = update.col_expr(Column::UploadLimit, Expr::value(bps(up)));
            wrote = true;
        }
        if !wrote {
            update = update.col_expr(Column::UploadLimit, Expr::col(Column::UploadLimit));
        }
        self.update_one(id, update).await
    }

    async fn record_content(&self, id: JobId, sha256: &str) -> Result<(), RepoError> {
        let update =
            Jobs::update_many().col_expr(Column::ContentSha256, Expr::value(sha256.to_owned()));
        self.update_one(id, update).await
    }

    async fn find_packaged(
        &self,
        sha256: &str,
        name: &str,
    ) -> Result<Option<TorrentMetadata>, RepoError> {
        let rows = Jobs::find()
            .filter(Column::ContentSha256.eq(sha256))
            .filter(Column::Metadata.is_not_null())
            .order_by_asc(Column::Id)
            .limit(20)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        for row in rows {
            let job = mapping::from_row(row).map_err(RepoError::Unexpected)?;
            if let Some(meta) = job.metadata.filter(|m| m.name == name) {
                return Ok(Some(meta));
            }
        }
        Ok(None)
    }

    async fn delete(&self, id: JobId) -> Result<(), RepoError> {
        let result = Jobs::delete_by_id(id.as_uuid())
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Err(RepoError::NotFound);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), RepoError> {
        self.db
            .ping()
            .await
            .map_err(|e| RepoError::Unavailable(e.to_string()))?;
        // A query proves more than a live socket: the schema is there.
        self.db
            .execute_unprepared("SELECT 1")
            .await
            .map_err(|e| RepoError::Unavailable(e.to_string()))?;
        Ok(())
    }
}
