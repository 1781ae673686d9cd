//! `ProfileStores`: the `StoreResolver` that opens a profile's sealed credentials and builds
//! its object store (local disk, S3, Google Drive).

use std::sync::Arc;

use async_trait::async_trait;
use ferry_application::ports::{
    ObjectStore, ProfileRepository, SecretBox, StoreError, StoreResolver, UploadSessions,
};
use ferry_domain::{Credentials, OwnerId, ProfileId, StorageBackend, StorageProfile};
use ferry_s3::{S3Settings, S3Store};

use crate::config::{GoogleConfig, StorageConfig};

pub struct ProfileStores {
    pub local: Arc<dyn ObjectStore>,
    pub profiles: Arc<dyn ProfileRepository>,
    pub secrets: Arc<dyn SecretBox>,
    pub sessions: Arc<dyn UploadSessions>,
    pub settings: StorageConfig,
    pub google: GoogleConfig,
    /// What storage endpoints may resolve to (`storage.allow_private_endpoints`, `storage.allow`).
    pub guard: Arc<ferry_net::NetGuard>,
}

#[async_trait]
impl StoreResolver for ProfileStores {
    async fn store(
        &self,
        owner: &OwnerId,
        profile: Option<ProfileId>,
    ) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let Some(id) = profile else {
            return Ok(self.local.clone());
        };
        let sealed = self
            .profiles
            .get(owner, id)
            .await
            .map_err(|e| StoreError::Unexpected(e.into()))?
            .ok_or(StoreError::NotFound)?;
        let plain = self.secrets.open(&sealed.credentials).map_err(|e| {
            StoreError::AuthFailed(format!("the profile's credentials cannot be opened: {e}"))
        })?;
        let credentials: Credentials = serde_json::from_slice(&plain).map_err(|e| {
            StoreError::Unexpected(anyhow::Error::new(e).context("sealed credentials are corrupt"))
        })?;
        self.build(&sealed.profile, &credentials).await
    }

    async fn build(
        &self,
        profile: &StorageProfile,
        credentials: &Credentials,
    ) -> Result<Arc<dyn ObjectStore>, StoreError> {
        match (&profile.backend, credentials) {
            (
                StorageBackend::S3 {
                    endpoint,
                    region,
                    bucket,
                    prefix,
                    path_style,
                },
                Credentials::S3 {
                    access_key_id,
                    secret_access_key,
                },
            ) => Ok(Arc::new(S3Store::new(
                S3Settings {
                    endpoint: endpoint.to_string().trim_end_matches('/').to_owned(),
                    region: region.clone(),
                    bucket: bucket.clone(),
                    prefix: prefix.clone(),
                    path_style: *path_style,
                    access_key_id: access_key_id.clone(),
                    secret_access_key: secret_access_key.clone(),
                    part_size: self.settings.part_size,
                    concurrency: self.settings.upload_concurrency,
                    presign_ttl: self.settings.presign_ttl,
                },
                self.sessions.clone(),
                self.guard.clone(),
            )?)),
            (
                StorageBackend::GoogleDrive { folder_id },
                Credentials::GoogleDrive { refresh_token },
            ) => {
                let g = &self.google;
                let bad = |what: &str| {
                    StoreError::Unreachable(format!("google.{what} is not a valid URL"))
                };
                Ok(Arc::new(ferry_gdrive::DriveStore::new(
                    ferry_gdrive::DriveSettings {
                        api_url: g.api_url.parse().map_err(|_| bad("api_url"))?,
                        token_url: g.token_url.parse().map_err(|_| bad("token_url"))?,
                        client_id: g.client_id.clone(),
                        client_secret: g.client_secret.expose().to_owned(),
                        refresh_token: refresh_token.clone(),
                        folder_id: folder_id.clone(),
                        chunk_size: g.chunk_size,
                    },
                    self.sessions.clone(),
                    self.guard.clone(),
                )?))
            }
            _ => Err(StoreError::AuthFailed(
                "the profile's credentials do not match its storage kind".to_owned(),
            )),
        }
    }
}
