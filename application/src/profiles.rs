//! The storage-profile use cases: create (with sealed credentials), list, delete, test.

use std::sync::Arc;

use ferry_domain::{Credentials, OwnerId, ProfileError, ProfileId, StorageBackend, StorageProfile};

use crate::ports::{
    Clock, ProfileRepository, RepoError, SealedProfile, SecretBox, StoreError, StoreResolver,
};

#[derive(Debug, thiserror::Error)]
pub enum ProfilesError {
    #[error(transparent)]
    Invalid(#[from] ProfileError),
    #[error("the credentials do not match the storage kind")]
    CredentialsMismatch,
    #[error(
        "the endpoint's host {0} is private or local; an operator must allow private endpoints"
    )]
    PrivateEndpoint(String),
    #[error("storage profile not found")]
    NotFound,
    #[error("the storage cannot be reached: {0}")]
    Unreachable(String),
    #[error("the storage rejected the credentials: {0}")]
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
        match e {
            StoreError::NotFound => Self::NotFound,
            StoreError::Unreachable(m) => Self::Unreachable(m),
            StoreError::AuthFailed(m) => Self::AuthFailed(m),
            StoreError::Unexpected(e) => Self::Unexpected(e),
        }
    }
}

pub struct StorageProfiles {
    pub profiles: Arc<dyn ProfileRepository>,
    pub secrets: Arc<dyn SecretBox>,
    pub resolver: Arc<dyn StoreResolver>,
    pub clock: Arc<dyn Clock>,
    /// Whether endpoints on loopback, private or link-local hosts are accepted.
    pub allow_private_endpoints: bool,
}

/// Hosts a user must not point the server at unless the operator allows it.
fn private_host(url: &url::Url) -> Option<String> {
    match url.host()? {
        url::Host::Ipv4(v4) => {
            ferry_domain::net::forbidden_reason(v4.into()).map(|_| v4.to_string())
        }
        url::Host::Ipv6(v6) => {
            ferry_domain::net::forbidden_reason(v6.into()).map(|_| v6.to_string())
        }
        url::Host::Domain(d) => ferry_domain::net::local_name(d).then(|| d.to_owned()),
    }
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
        if let StorageBackend::S3 { endpoint, .. } = &backend
            && !self.allow_private_endpoints
            && let Some(host) = private_host(endpoint)
        {
            return Err(ProfilesError::PrivateEndpoint(host));
        }
        let profile = StorageProfile::new(owner, name, backend, self.clock.now())?;
        let store = self.resolver.build(&profile, &credentials).await?;
        store.check().await?;
        let plain =
            serde_json::to_vec(&credentials).map_err(|e| ProfilesError::Unexpected(e.into()))?;
        let sealed = SealedProfile {
            profile: profile.clone(),
            credentials: self.secrets.seal(&plain),
        };
        self.profiles.insert(&sealed).await?;
        tracing::info!(profile_id = %profile.id, kind = profile.backend.kind(), "storage profile created");
        Ok(profile)
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

#[cfg(test)]
mod tests {
    use super::private_host;

    #[test]
    fn private_hosts_are_recognised() {
        for h in [
            "http://127.0.0.1:9000",
            "http://10.1.2.3",
            "http://[::1]",
            "http://169.254.169.254",
            "http://localhost:9000",
            "http://192.168.0.1",
            "http://[fd00::1]",
            "http://100.64.0.1",
        ] {
            assert!(
                private_host(&url::Url::parse(h).unwrap_or_else(|e| panic!("{e}"))).is_some(),
                "{h}"
            );
        }
        for h in [
            "https://s3.amazonaws.com",
            "http://8.8.8.8",
            "https://[2001:db8::1]",
        ] {
            assert!(
                private_host(&url::Url::parse(h).unwrap_or_else(|e| panic!("{e}"))).is_none(),
                "{h}"
            );
        }
    }
}
