//! The storage-profile use cases: create (with sealed credentials), list, delete, test; and
//! re-sealing every profile's credentials and every webhook's signing secret under the
//! current key (`ferry keys rotate`).

use std::path::PathBuf;
use std::sync::Arc;

use ferry_domain::{
    Credentials, OwnerId, ProfileError, ProfileId, StorageBackend, StorageProfile, WebhookId,
};

use crate::ports::{
    AddressError, AddressGuard, Clock, ProfileRepository, RepoError, SealedProfile, SecretBox,
    StoreError, StoreResolver, WebhookRepository, credentials_context, secret_context,
};

/// The strings of `PrivateEndpoint`, `Unreachable` and `AuthFailed` are details for the
/// server log; their messages are fixed sentences, so a caller learns nothing about hosts
/// and ports beyond "it did not work" (no port scanning through the API).
#[derive(Debug, thiserror::Error)]
pub enum ProfilesError {
    #[error(transparent)]
    Invalid(#[from] ProfileError),
    #[error("the credentials do not match the storage kind")]
    CredentialsMismatch,
    #[error(
        "the endpoint is, or resolves to, a private or local address; an operator must allow private endpoints"
    )]
    PrivateEndpoint(String),
    #[error("storage profile not found")]
    NotFound,
    #[error(
        "folder profiles are not available: this server has no shared volume (storage.shared_dir)"
    )]
    SharedDirUnset,
    #[error(
        "the folder leads outside your area of the shared volume (through a symbolic link), or a file stands in its way"
    )]
    FolderRefused(String),
    #[error("the storage cannot be reached, or it does not answer like the storage it should be")]
    Unreachable(String),
    #[error("the storage rejected the credentials")]
    AuthFailed(String),
    #[error("a backend is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<RepoError> for ProfilesError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::NotFound => Self::NotFound,
            RepoError::Unavailable(m) => Self::Unavailable(m),
            other => Self::Unexpected(other.into()),
        }
    }
}

impl From<StoreError> for ProfilesError {
    fn from(e: StoreError) -> Self {
        // The details stay in the server log; the caller gets the variant's sentence.
        match e {
            StoreError::NotFound => Self::NotFound,
            StoreError::Unreachable(m) => {
                tracing::info!(error = %m, "storage check: unreachable");
                Self::Unreachable(m)
            }
            StoreError::AuthFailed(m) => {
                tracing::info!(error = %m, "storage check: credentials refused");
                Self::AuthFailed(m)
            }
            StoreError::NotAllowed(m) => {
                tracing::info!(error = %m, "storage check: address not allowed");
                Self::PrivateEndpoint(m)
            }
            StoreError::NotConfigured(m) => {
                tracing::info!(error = %m, "storage check: not configured");
                Self::SharedDirUnset
            }
            StoreError::FolderRefused(m) => {
                tracing::info!(error = %m, "storage check: folder refused");
                Self::FolderRefused(m)
            }
            StoreError::Unexpected(e) => Self::Unexpected(e),
        }
    }
}

pub struct StorageProfiles {
    pub profiles: Arc<dyn ProfileRepository>,
    pub secrets: Arc<dyn SecretBox>,
    pub resolver: Arc<dyn StoreResolver>,
    pub clock: Arc<dyn Clock>,
    /// The storage policy (`storage.allow_private_endpoints`, `storage.allow`): the same one
    /// the storage clients resolve names with.
    pub endpoints: Arc<dyn AddressGuard>,
    /// The shared volume folder profiles deliver into (`storage.shared_dir`), if any.
    pub shared_dir: Option<PathBuf>,
}

impl StorageProfiles {
    /// Validates, checks the connection, seals the credentials and saves the profile.
    ///
    /// # Errors
    /// `Invalid`, `CredentialsMismatch`, `PrivateEndpoint`; `Unreachable`/`AuthFailed` when
    /// the storage refuses the connection test.
    pub async fn create(
        &self,
        owner: OwnerId,
        name: &str,
        backend: StorageBackend,
        credentials: Credentials,
    ) -> Result<StorageProfile, ProfilesError> {
        if !credentials.matches(&backend) {
            return Err(ProfilesError::CredentialsMismatch);
        }
        if let StorageBackend::S3 {
            endpoint,
            bucket,
            path_style,
            ..
        } = &backend
        {
            self.check_endpoint(endpoint, bucket, *path_style).await?;
        }
        let profile = StorageProfile::new(owner, name, backend, self.clock.now())?;
        let store = self.resolver.build(&profile, &credentials).await?;
        store.check().await?;
        let plain =
            serde_json::to_vec(&credentials).map_err(|e| ProfilesError::Unexpected(e.into()))?;
        let sealed = SealedProfile {
            profile: profile.clone(),
            credentials: self.secrets.seal(&plain, &credentials_context(&profile)),
        };
        self.profiles.insert(&sealed).await?;
        tracing::info!(profile_id = %profile.id, kind = profile.backend.kind(), "storage profile created");
        Ok(profile)
    }

    /// Refuses an endpoint whose host (or, with virtual-hosted addressing, `{bucket}.{host}`)
    /// is or resolves to an internal address, before anything is sent to it. The clients
    /// resolve through the same policy when they connect, so a name that changes its answer
    /// later is refused then.
    async fn check_endpoint(
        &self,
        endpoint: &url::Url,
        bucket: &str,
        path_style: bool,
    ) -> Result<(), ProfilesError> {
        let Some(host) = endpoint.host_str() else {
            return Err(ProfileError::Endpoint.into());
        };
        let mut hosts = vec![host.to_owned()];
        if !path_style && matches!(endpoint.host(), Some(url::Host::Domain(_))) {
            hosts.push(format!("{bucket}.{host}"));
        }
        for host in hosts {
            match self.endpoints.check_host(&host).await {
                Ok(()) => {}
                Err(AddressError::NotAllowed(why)) => {
                    tracing::info!(reason = %why, "storage endpoint refused");
                    return Err(ProfilesError::PrivateEndpoint(why));
                }
                // Not resolvable now: the connection test decides.
                Err(AddressError::Unresolved(_)) => {}
            }
        }
        Ok(())
    }

    /// The absolute directory a folder profile delivers into, as this server sees it
    /// (`None` for other kinds, or without a shared volume).
    pub fn location(&self, profile: &StorageProfile) -> Option<PathBuf> {
        profile.folder_dir(self.shared_dir.as_deref()?)
    }

    /// # Errors
    /// `Unavailable` when the repository is.
    pub async fn list(&self, owner: &OwnerId) -> Result<Vec<StorageProfile>, ProfilesError> {
        Ok(self.profiles.list(owner).await?)
    }

    /// # Errors
    /// `NotFound`.
    pub async fn get(
        &self,
        owner: &OwnerId,
        id: ProfileId,
    ) -> Result<StorageProfile, ProfilesError> {
        self.profiles
            .get(owner, id)
            .await?
            .map(|s| s.profile)
            .ok_or(ProfilesError::NotFound)
    }

    /// # Errors
    /// `NotFound`.
    pub async fn delete(&self, owner: &OwnerId, id: ProfileId) -> Result<(), ProfilesError> {
        Ok(self.profiles.delete(owner, id).await?)
    }

    /// The owner's default profile: where a job goes when its submission names none.
    ///
    /// # Errors
    /// `Unavailable` when the repository is.
    pub async fn default_of(&self, owner: &OwnerId) -> Result<Option<ProfileId>, ProfilesError> {
        Ok(self.profiles.default_of(owner).await?)
    }

    /// Makes `id` the owner's default profile (`None`: the server's own storage).
    ///
    /// # Errors
    /// `NotFound` for a profile that is not the owner's.
    pub async fn set_default(
        &self,
        owner: &OwnerId,
        id: Option<ProfileId>,
    ) -> Result<(), ProfilesError> {
        Ok(self.profiles.set_default(owner, id).await?)
    }

    /// Connects with the saved credentials.
    ///
    /// # Errors
    /// `NotFound`, `Unreachable`, `AuthFailed`.
    pub async fn test(&self, owner: &OwnerId, id: ProfileId) -> Result<(), ProfilesError> {
        let store = self.resolver.store(owner, Some(id)).await?;
        store.check().await?;
        Ok(())
    }
}

/// What a re-sealing run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Profiles' credentials sealed again with the current key (and bound to their profile).
    pub resealed: usize,
    /// Already sealed with the current key.
    pub current: usize,
    /// Changed by someone else meanwhile; a next run picks them up.
    pub skipped: usize,
    /// Could not be opened with any configured key (a missing old key, or data that was
    /// altered or copied from another profile).
    pub failed: Vec<ProfileId>,
    /// The same for webhooks' signing secrets.
    pub webhooks: ResealedWebhooks,
}

impl Resealed {
    /// Whether everything is sealed with the current key now, so older keys can go.
    pub fn complete(&self) -> bool {
        self.failed.is_empty()
            && self.skipped == 0
            && self.webhooks.failed.is_empty()
            && self.webhooks.skipped == 0
    }
}

/// What a re-sealing run did to webhooks' signing secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResealedWebhooks {
    /// Sealed again with the current key (and bound to their webhook and owner).
    pub resealed: usize,
    /// Already sealed with the current key.
    pub current: usize,
    /// Changed meanwhile (a new secret, a deleted webhook); a next run picks them up.
    pub skipped: usize,
    /// Could not be opened with any configured key.
    pub failed: Vec<WebhookId>,
}

/// Re-seals every profile's credentials and every webhook's signing secret with the current
/// key, so older keys can be removed.
pub struct KeyRotation {
    pub profiles: Arc<dyn ProfileRepository>,
    pub webhooks: Arc<dyn WebhookRepository>,
    pub secrets: Arc<dyn SecretBox>,
}

/// How re-sealing one secret went.
enum Outcome {
    Current,
    Resealed,
    Skipped,
    Failed,
}

impl KeyRotation {
    /// Opens each profile's credentials and each webhook's signing secret (with whichever
    /// configured key sealed them, in any format the box reads) and seals them again with
    /// the current key, bound to the same context. Idempotent; what cannot be opened is
    /// reported, not touched.
    ///
    /// # Errors
    /// `Unavailable` when a repository is.
    pub async fn rotate(&self) -> Result<Resealed, ProfilesError> {
        let mut report = Resealed::default();
        for sealed in self.profiles.all_sealed().await? {
            let id = sealed.profile.id;
            let context = credentials_context(&sealed.profile);
            let Some(again) = self.reseal(&sealed.credentials, &context) else {
                report.current += 1;
                continue;
            };
            match again {
                Err(()) => {
                    tracing::warn!(profile_id = %id, "credentials cannot be opened with any configured key; left as they are");
                    report.failed.push(id);
                }
                Ok(again) => {
                    if self
                        .profiles
                        .replace_credentials(id, &sealed.credentials, &again)
                        .await?
                    {
                        report.resealed += 1;
                    } else {
                        report.skipped += 1;
                    }
                }
            }
        }
        for sealed in self.webhooks.all_sealed().await? {
            let id = sealed.webhook.id;
            let outcome = match self.reseal(&sealed.secret, &secret_context(&sealed.webhook)) {
                None => Outcome::Current,
                Some(Err(())) => Outcome::Failed,
                Some(Ok(again)) => {
                    if self
                        .webhooks
                        .replace_secret(id, &sealed.secret, &again)
                        .await?
                    {
                        Outcome::Resealed
                    } else {
                        Outcome::Skipped
                    }
                }
            };
            let w = &mut report.webhooks;
            match outcome {
                Outcome::Current => w.current += 1,
                Outcome::Resealed => w.resealed += 1,
                Outcome::Skipped => w.skipped += 1,
                Outcome::Failed => {
                    tracing::warn!(webhook_id = %id, "webhook secret cannot be opened with any configured key; left as it is");
                    w.failed.push(id);
                }
            }
        }
        tracing::info!(
            resealed = report.resealed,
            current = report.current,
            skipped = report.skipped,
            failed = report.failed.len(),
            webhooks_resealed = report.webhooks.resealed,
            webhooks_current = report.webhooks.current,
            webhooks_skipped = report.webhooks.skipped,
            webhooks_failed = report.webhooks.failed.len(),
            "credentials and webhook secrets re-sealed"
        );
        Ok(report)
    }

    /// `None` when `sealed` is current; else it, sealed again with the current key, or
    /// `Err` when no configured key opens it.
    fn reseal(&self, sealed: &[u8], context: &[u8]) -> Option<Result<Vec<u8>, ()>> {
        if self.secrets.is_current(sealed) {
            return None;
        }
        Some(
            self.secrets
                .open(sealed, context)
                .map(|plain| self.secrets.seal(&plain, context))
                .map_err(|_| ()),
        )
    }
}
