//! `ProfileStores`: the `StoreResolver` that opens a profile's sealed credentials and builds
//! its object store (local disk, a folder on the shared volume, S3, Google Drive).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use ferry_application::ports::{
    ObjectStore, ProfileRepository, SecretBox, StoreError, StoreResolver, UploadSessions,
    credentials_context,
};
use ferry_domain::{Credentials, OwnerId, ProfileId, StorageBackend, StorageProfile};
use ferry_local_storage::LocalStore;
use ferry_s3::{S3Settings, S3Store};

use crate::config::{GoogleConfig, StorageConfig};
use crate::metered::MeteredStore;

pub struct ProfileStores {
    pub local: Arc<dyn ObjectStore>,
    pub profiles: Arc<dyn ProfileRepository>,
    pub secrets: Arc<dyn SecretBox>,
    pub sessions: Arc<dyn UploadSessions>,
    pub settings: StorageConfig,
    pub google: GoogleConfig,
    /// What storage endpoints may resolve to (`storage.allow_private_endpoints`, `storage.allow`).
    pub guard: Arc<ferry_net::NetGuard>,
    /// The shared volume of folder profiles (`storage.shared_dir`), if this process has one.
    pub shared_dir: Option<PathBuf>,
}

#[async_trait]
impl StoreResolver for ProfileStores {
    async fn store(
        &self,
        owner: &OwnerId,
        profile: Option<ProfileId>,
    ) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let Some(id) = profile else {
            return Ok(MeteredStore::wrap(self.local.clone(), "local"));
        };
        let sealed = self
            .profiles
            .get(owner, id)
            .await
            .map_err(|e| StoreError::Unexpected(e.into()))?
            .ok_or(StoreError::NotFound)?;
        let context = credentials_context(&sealed.profile);
        let plain = self
            .secrets
            .open(&sealed.credentials, &context)
            .map_err(|e| {
                StoreError::AuthFailed(format!("the profile's credentials cannot be opened: {e}"))
            })?;
        let credentials: Credentials = serde_json::from_slice(&plain).map_err(|e| {
            StoreError::Unexpected(anyhow::Error::new(e).context("sealed credentials are corrupt"))
        })?;
        Ok(MeteredStore::wrap(
            self.build(&sealed.profile, &credentials).await?,
            sealed.profile.backend.kind(),
        ))
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
                    concurrency: self.settings.upload_concurrency.get(),
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
                Ok(Arc::new(ferry_gdrive::DriveStore::new(
                    ferry_gdrive::DriveSettings {
                        api_url: g.api_url.clone(),
                        token_url: g.token_url.clone(),
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
            (StorageBackend::Folder { path }, Credentials::None) => {
                let shared = self.shared_dir.as_deref().ok_or_else(|| {
                    StoreError::NotConfigured("storage.shared_dir is not set".to_owned())
                })?;
                Ok(Arc::new(
                    LocalStore::folder(shared, &profile.owner, path).await?,
                ))
            }
            _ => Err(StoreError::AuthFailed(
                "the profile's credentials do not match its storage kind".to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use ferry_application::ports::{SealedProfile, credentials_context};
    use ferry_application::testing::{MemoryProfiles, MemorySessions, MemoryStore};
    use ferry_domain::OwnerId;

    fn profile(owner: &str, bucket: &str) -> StorageProfile {
        let backend =
            StorageBackend::s3("https://s3.example", "us-east-1", bucket, None, true).unwrap();
        StorageProfile::new(
            OwnerId::parse(owner).unwrap(),
            bucket,
            backend,
            chrono_now(),
        )
        .unwrap()
    }

    fn chrono_now() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }

    /// A resolver over `profiles`, sealed with `secrets`, with `shared_dir` as its volume.
    fn stores(
        profiles: &Arc<MemoryProfiles>,
        secrets: &Arc<dyn SecretBox>,
        shared_dir: Option<PathBuf>,
    ) -> ProfileStores {
        ProfileStores {
            local: Arc::new(MemoryStore::default()),
            profiles: profiles.clone(),
            secrets: secrets.clone(),
            sessions: Arc::new(MemorySessions::default()),
            settings: StorageConfig::default(),
            google: GoogleConfig::default(),
            guard: Arc::new(ferry_net::NetGuard::allow_all()),
            shared_dir,
        }
    }

    #[tokio::test]
    async fn sealed_credentials_open_only_for_their_own_profile() {
        let secrets: Arc<dyn SecretBox> = Arc::new(ferry_secrets::AesGcmBox::new(&[7; 32]));
        let profiles = Arc::new(MemoryProfiles::default());
        let (mine, theirs) = (
            profile("alice", "alice-bucket"),
            profile("mallory", "mallory-bucket"),
        );
        for (p, secret) in [(&mine, "alice-secret"), (&theirs, "mallory-secret")] {
            let plain = serde_json::to_vec(&Credentials::S3 {
                access_key_id: "AK".into(),
                secret_access_key: secret.into(),
            })
            .unwrap();
            profiles
                .insert(&SealedProfile {
                    profile: p.clone(),
                    credentials: secrets.seal(&plain, &credentials_context(p)),
                })
                .await
                .unwrap();
        }
        let stores = stores(&profiles, &secrets, None);
        assert!(stores.store(&mine.owner, Some(mine.id)).await.is_ok());
        // A database writer copies one profile's sealed credentials onto another's.
        let stolen = profiles
            .get(&theirs.owner, theirs.id)
            .await
            .unwrap()
            .unwrap()
            .credentials;
        let own = profiles
            .get(&mine.owner, mine.id)
            .await
            .unwrap()
            .unwrap()
            .credentials;
        assert!(
            profiles
                .replace_credentials(mine.id, &own, &stolen)
                .await
                .unwrap()
        );
        match stores.store(&mine.owner, Some(mine.id)).await {
            Err(StoreError::AuthFailed(_)) => {}
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("another profile's credentials opened"),
        }
    }

    #[tokio::test]
    async fn a_folder_profile_needs_the_shared_dir_and_delivers_into_its_folder() {
        let secrets: Arc<dyn SecretBox> = Arc::new(ferry_secrets::AesGcmBox::new(&[7; 32]));
        let profiles = Arc::new(MemoryProfiles::default());
        let owner = OwnerId::parse("alice").unwrap();
        let folder = StorageProfile::new(
            owner.clone(),
            "TV",
            StorageBackend::folder("tv").unwrap(),
            chrono_now(),
        )
        .unwrap();
        let plain = serde_json::to_vec(&Credentials::None).unwrap();
        profiles
            .insert(&SealedProfile {
                profile: folder.clone(),
                credentials: secrets.seal(&plain, &credentials_context(&folder)),
            })
            .await
            .unwrap();
        let shared = tempfile::tempdir().unwrap();
        match stores(&profiles, &secrets, None)
            .store(&owner, Some(folder.id))
            .await
        {
            Err(StoreError::NotConfigured(_)) => {}
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a folder without a shared volume"),
        }
        let store = stores(&profiles, &secrets, Some(shared.path().to_owned()))
            .store(&owner, Some(folder.id))
            .await
            .unwrap();
        store.check().await.unwrap();
        let job = ferry_domain::JobId::new();
        let path = ferry_domain::SafePath::parse("e01.mkv").unwrap();
        let key = ferry_domain::StorageKey::for_file(&owner, job, &path);
        let src = shared.path().join("staged");
        std::fs::write(&src, b"episode").unwrap();
        store
            .put_file(ferry_application::ports::PutRequest {
                job,
                key: &key,
                source: &src,
                size: 7,
                progress: &|_| {},
            })
            .await
            .unwrap();
        assert_eq!(
            store.locate(&key).await.unwrap(),
            ferry_application::ports::ObjectLocation::LocalFile(
                shared.path().join(format!("alice/tv/{job}/e01.mkv"))
            )
        );
    }
}
