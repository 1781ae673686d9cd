//! Accounts: users and the identities they log in with, one-time setup links, personal
//! tokens, browser sessions and the audit log. Secrets are never stored, only their SHA-256
//! (hex).
//!
//! Upgrading an installation that had no accounts: everything it made belongs to the owner
//! id `local`, so when `jobs` or `storage_profiles` hold such a row, the first admin is
//! created with that very id (no identity yet: it gets one through a setup link). Its
//! storage keys and staged paths, which start with the owner id, stay valid. A fresh
//! database gets no user.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    DisplayName,
    Email,
    Role,
    Disabled,
    QuotaActiveJobs,
    QuotaJobBytes,
    QuotaStoredBytes,
    QuotaSeedingJobs,
    CreatedAt,
    LastSeenAt,
}

#[derive(DeriveIden)]
enum Identities {
    Table,
    Id,
    UserId,
    Kind,
    Issuer,
    Subject,
    LocalName,
    PasswordHash,
}

#[derive(DeriveIden)]
enum SetupLinks {
    Table,
    Hash,
    UserId,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    Owner,
    Name,
    Scopes,
    SecretSha256,
    CreatedAt,
    ExpiresAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Hash,
    UserId,
    CreatedAt,
    LastSeenAt,
    ExpiresAt,
    UserAgent,
    Ip,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    Actor,
    Action,
    Target,
    Outcome,
    Ip,
    UserAgent,
    Detail,
}

fn at(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn at_or_null(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

fn user_id(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).string_len(64).not_null().to_owned()
}

fn hash_key(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name)
        .string_len(64)
        .not_null()
        .primary_key()
        .to_owned()
}

fn of_user(table: impl IntoIden, column: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(Users::Table, Users::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn index(name: &str, table: impl IntoIden, cols: &[&'static str]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table).if_not_exists();
    for col in cols {
        index.col(Alias::new(*col));
    }
    index
}

async fn users(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Users::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(Users::Id)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Users::DisplayName).text().not_null())
                .col(ColumnDef::new(Users::Email).text().null())
                .col(ColumnDef::new(Users::Role).string_len(16).not_null())
                .col(
                    ColumnDef::new(Users::Disabled)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(ColumnDef::new(Users::QuotaActiveJobs).big_integer().null())
                .col(ColumnDef::new(Users::QuotaJobBytes).big_integer().null())
                .col(ColumnDef::new(Users::QuotaStoredBytes).big_integer().null())
                .col(ColumnDef::new(Users::QuotaSeedingJobs).big_integer().null())
                .col(at(Users::CreatedAt))
                .col(at_or_null(Users::LastSeenAt))
                .to_owned(),
        )
        .await?;
    manager
        .create_table(
            Table::create()
                .table(Identities::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(Identities::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(user_id(Identities::UserId))
                .col(
                    ColumnDef::new(Identities::Kind)
                        .string_len(8)
                        .not_null()
                        .check(Expr::col(Identities::Kind).is_in(["oidc", "local"])),
                )
                .col(ColumnDef::new(Identities::Issuer).text().null())
                .col(ColumnDef::new(Identities::Subject).text().null())
                .col(ColumnDef::new(Identities::LocalName).string_len(64).null())
                .col(ColumnDef::new(Identities::PasswordHash).text().null())
                .foreign_key(&mut of_user(Identities::Table, Identities::UserId))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(index("identities_user", Identities::Table, &["user_id"]))
        .await?;
    // NULLs are distinct in unique indexes on both databases: a local identity (no issuer)
    // never collides with another, nor an OIDC one (no local name).
    manager
        .create_index(
            index("identities_oidc", Identities::Table, &["issuer", "subject"])
                .unique()
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            index("identities_local_name", Identities::Table, &["local_name"])
                .unique()
                .to_owned(),
        )
        .await?;
    manager
        .get_connection()
        .execute_unprepared(
            "CREATE UNIQUE INDEX IF NOT EXISTS identities_one_local \
             ON identities (user_id) WHERE kind = 'local'",
        )
        .await?;
    manager
        .create_table(
            Table::create()
                .table(SetupLinks::Table)
                .if_not_exists()
                .col(hash_key(SetupLinks::Hash))
                .col(user_id(SetupLinks::UserId))
                .col(at(SetupLinks::ExpiresAt))
                .foreign_key(&mut of_user(SetupLinks::Table, SetupLinks::UserId))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(index("setup_links_user", SetupLinks::Table, &["user_id"]))
        .await
}

async fn tokens_and_sessions(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    // Owners are not foreign keys (as for jobs): tokens and sessions are found by owner and
    // go with "sign out everywhere", not with a cascade.
    manager
        .create_table(
            Table::create()
                .table(ApiTokens::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(ApiTokens::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(user_id(ApiTokens::Owner))
                .col(ColumnDef::new(ApiTokens::Name).text().not_null())
                .col(ColumnDef::new(ApiTokens::Scopes).string_len(64).not_null())
                .col(
                    ColumnDef::new(ApiTokens::SecretSha256)
                        .string_len(64)
                        .not_null(),
                )
                .col(at(ApiTokens::CreatedAt))
                .col(at_or_null(ApiTokens::ExpiresAt))
                .col(at_or_null(ApiTokens::LastUsedAt))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(index("api_tokens_owner", ApiTokens::Table, &["owner"]))
        .await?;
    manager
        .create_table(
            Table::create()
                .table(Sessions::Table)
                .if_not_exists()
                .col(hash_key(Sessions::Hash))
                .col(user_id(Sessions::UserId))
                .col(at(Sessions::CreatedAt))
                .col(at(Sessions::LastSeenAt))
                .col(at(Sessions::ExpiresAt))
                .col(ColumnDef::new(Sessions::UserAgent).text().null())
                .col(ColumnDef::new(Sessions::Ip).text().null())
                .to_owned(),
        )
        .await?;
    manager
        .create_index(index("sessions_user", Sessions::Table, &["user_id"]))
        .await?;
    manager
        .create_index(index("sessions_expires", Sessions::Table, &["expires_at"]))
        .await
}

async fn audit_log(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(AuditLog::Table)
                .if_not_exists()
                // AUTOINCREMENT on SQLite: ids are never reused, so paging by id holds.
                .col(
                    ColumnDef::new(AuditLog::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(at(AuditLog::At))
                .col(ColumnDef::new(AuditLog::Actor).string_len(64).null())
                .col(ColumnDef::new(AuditLog::Action).string_len(128).not_null())
                .col(ColumnDef::new(AuditLog::Target).text().null())
                .col(ColumnDef::new(AuditLog::Outcome).string_len(16).not_null())
                .col(ColumnDef::new(AuditLog::Ip).text().null())
                .col(ColumnDef::new(AuditLog::UserAgent).text().null())
                .col(ColumnDef::new(AuditLog::Detail).text().null())
                .to_owned(),
        )
        .await?;
    manager
        .create_index(index("audit_log_actor", AuditLog::Table, &["actor", "id"]))
        .await?;
    manager
        .create_index(index(
            "audit_log_action",
            AuditLog::Table,
            &["action", "id"],
        ))
        .await?;
    manager
        .create_index(index("audit_log_at", AuditLog::Table, &["at"]))
        .await
}

/// The first admin keeps the owner id of everything made before accounts (see
/// `OwnerId::local`), when there is anything.
async fn adopt_local_owner(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let now = match manager.get_database_backend() {
        // The text form the SQLite driver writes (RFC 3339, UTC), so times compare as text.
        DatabaseBackend::Sqlite => "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')",
        _ => "CURRENT_TIMESTAMP",
    };
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "INSERT INTO users (id, display_name, role, disabled, created_at) \
             SELECT 'local', 'admin', 'admin', FALSE, {now} \
             WHERE (EXISTS (SELECT 1 FROM jobs WHERE owner = 'local') \
                 OR EXISTS (SELECT 1 FROM storage_profiles WHERE owner = 'local')) \
               AND NOT EXISTS (SELECT 1 FROM users WHERE id = 'local')"
        ))
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        users(manager).await?;
        tokens_and_sessions(manager).await?;
        audit_log(manager).await?;
        adopt_local_owner(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditLog::Table.into_iden(),
            Sessions::Table.into_iden(),
            ApiTokens::Table.into_iden(),
            SetupLinks::Table.into_iden(),
            Identities::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
