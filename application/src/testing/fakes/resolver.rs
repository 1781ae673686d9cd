//! `StoreResolver` over the memory store.

use super::*;

/// Resolves `None` to the local store and each profile to a memory store of its own.
pub struct FakeResolver {
    pub local: std::sync::Arc<MemoryStore>,
    pub profiles: std::sync::Arc<MemoryProfiles>,
    remote: Mutex<HashMap<ProfileId, std::sync::Arc<MemoryStore>>>,
}

impl FakeResolver {
    pub fn new(
        local: std::sync::Arc<MemoryStore>,
        profiles: std::sync::Arc<MemoryProfiles>,
    ) -> Self {
        Self {
            local,
            profiles,
            remote: Mutex::new(HashMap::new()),
        }
    }

    /// The memory store standing for a profile's remote storage.
    pub fn remote(&self, id: ProfileId) -> std::sync::Arc<MemoryStore> {
        lock(&self.remote).entry(id).or_default().clone()
    }
}

#[async_trait]
impl StoreResolver for FakeResolver {
    async fn store(
        &self,
        owner: &OwnerId,
        profile: Option<ProfileId>,
    ) -> Result<std::sync::Arc<dyn ObjectStore>, StoreError> {
        match profile {
            None => Ok(self.local.clone()),
            Some(id) => {
                let found = self
                    .profiles
                    .get(owner, id)
                    .await
                    .map_err(|e| StoreError::Unexpected(e.into()))?;
                if found.is_none() {
                    return Err(StoreError::NotFound);
                }
                Ok(self.remote(id))
            }
        }
    }

    async fn build(
        &self,
        profile: &StorageProfile,
        _credentials: &Credentials,
    ) -> Result<std::sync::Arc<dyn ObjectStore>, StoreError> {
        Ok(self.remote(profile.id))
    }
}
