//! Accounts' adapters from the configuration: the SQL stores, sessions (database or Redis),
//! the rate limiter (in process or Redis), the password hasher, the identity providers
//! with their access-token verifiers, and the signer of file links.

use std::sync::Arc;

use anyhow::Context;
use ferry_api::LoginProvider;
use ferry_application::ports::{Clock, RateLimit, RateLimiter, Sessions};
use ferry_application::{
    AccountSettings, Accounts, FileLinks, Jobs, LinkSettings, ProvisionPolicy,
};
use ferry_domain::Quotas;

use crate::config::{AuthConfig, Config, OidcConfig};

/// `per_minute` cells a minute, `burst` at once.
fn per_minute(per_minute: u32, burst: u32) -> RateLimit {
    RateLimit {
        burst,
        period: std::time::Duration::from_secs(60) / per_minute.max(1),
    }
}

pub(crate) fn settings(config: &Config) -> AccountSettings {
    let a: &AuthConfig = &config.auth;
    AccountSettings {
        session_idle: a.session_idle,
        session_absolute: a.session_absolute,
        setup_link_ttl: a.setup_link_ttl,
        default_quotas: Quotas {
            active_jobs: a.quotas.active_jobs,
            job_bytes: a.quotas.job_bytes,
            stored_bytes: a.quotas.stored_bytes,
            seeding_jobs: a.quotas.seeding_jobs,
        },
        api_limit: RateLimit {
            burst: a.api_burst.get(),
            period: std::time::Duration::from_secs(1) / a.api_rate.get(),
        },
        login_ip_limit: per_minute(a.login_ip_per_minute.get(), a.login_ip_burst.get()),
        login_account_limit: per_minute(
            a.login_account_per_minute.get(),
            a.login_account_burst.get(),
        ),
        bootstrap_token: None,
    }
}

fn policy(c: &OidcConfig) -> ProvisionPolicy {
    ProvisionPolicy {
        auto_provision: c.auto_provision,
        admin_group: c.admin_group.clone(),
    }
}

/// The account use cases over the database, `sessions` and `limiter`; with the bootstrap
/// token and the configured providers' access-token verifiers.
pub(crate) fn accounts(
    config: &Config,
    db: &ferry_database::Connection,
    sessions: Arc<dyn Sessions>,
    limiter: Arc<dyn RateLimiter>,
    clock: Arc<dyn Clock>,
    bootstrap_token: Option<String>,
) -> anyhow::Result<Accounts> {
    let hasher = ferry_identity::Argon2Hasher::new(ferry_identity::Argon2Params::default())
        .context("setting up the password hasher")?;
    let mut settings = settings(config);
    settings.bootstrap_token = bootstrap_token;
    let mut accounts = Accounts::new(
        Arc::new(ferry_database::SqlUsers::new(db.clone())),
        Arc::new(ferry_database::SqlTokens::new(db.clone())),
        sessions,
        Arc::new(ferry_database::SqlAudit::new(db.clone())),
        Arc::new(hasher),
        limiter,
        clock,
        settings,
    );
    for (name, c) in &config.auth.oidc {
        if let Some(audience) = &c.access_token_audience {
            let mut jwt = ferry_identity::JwtConfig::new(c.issuer.clone(), audience.clone());
            jwt.groups_claim = c.groups_claim.clone();
            let verifier = ferry_identity::JwtVerifier::new(jwt)
                .with_context(|| format!("auth.oidc.{name}: access tokens"))?;
            accounts = accounts.with_access_tokens(Arc::new(verifier), policy(c));
        }
    }
    Ok(accounts)
}

/// Signed links to `jobs`' files: users and limits from `accounts`, the key derived from
/// `secret_key` (the same in every process, so any API instance opens any link).
pub(crate) fn file_links(
    config: &Config,
    secret_key: &str,
    jobs: Arc<Jobs>,
    accounts: &Accounts,
) -> FileLinks {
    FileLinks {
        jobs,
        users: accounts.users.clone(),
        limiter: accounts.limiter.clone(),
        signer: Arc::new(ferry_identity::JwtLinkSigner::new(secret_key)),
        clock: accounts.clock.clone(),
        settings: LinkSettings {
            ttl: config.auth.link_ttl,
            limit: accounts.settings.api_limit,
        },
    }
}

/// The identity providers one logs in with.
pub(crate) fn login_providers(config: &Config) -> anyhow::Result<Vec<LoginProvider>> {
    config
        .auth
        .oidc
        .iter()
        .map(|(name, c)| {
            let mut oidc = ferry_identity::OidcConfig::new(
                name.clone(),
                c.issuer.clone(),
                c.client_id.clone(),
                c.client_secret.as_ref().map(|s| s.expose().to_owned()),
            );
            oidc.scopes = c.scopes.clone();
            oidc.groups_claim = c.groups_claim.clone();
            let provider = ferry_identity::OidcProvider::new(oidc)
                .with_context(|| format!("auth.oidc.{name}"))?;
            Ok(LoginProvider {
                provider: Arc::new(provider),
                policy: policy(c),
            })
        })
        .collect()
}

/// The account use cases over the database alone, for `ferry user …`: sessions in the
/// database, limits in process.
///
/// # Errors
/// When the database cannot be reached.
pub async fn user_admin(config: &Config) -> anyhow::Result<Accounts> {
    let db = crate::database(config).await?;
    accounts(
        config,
        &db,
        Arc::new(ferry_database::SqlSessions::new(db.clone())),
        Arc::new(ferry_embedded::GovernorLimiter::new()),
        Arc::new(ferry_application::ports::SystemClock),
        None,
    )
}
