//! `ProfileRepository`, `SecretBox` and `UploadSessions` in memory.

use super::*;

#[derive(Default)]
pub struct MemoryProfiles {
    profiles: Mutex<Vec<SealedProfile>>,
    defaults: Mutex<HashMap<OwnerId, ProfileId>>,
}

#[async_trait]
impl ProfileRepository for MemoryProfiles {
    async fn insert(&self, profile: &SealedProfile) -> Result<(), RepoError> {
        let mut all = lock(&self.profiles);
        if all.iter().any(|p| p.profile.id == profile.profile.id) {
            return Err(RepoError::AlreadyExists);
        }
        all.push(profile.clone());
        Ok(())
    }

    async fn get(
        &self,
        owner: &OwnerId,
        id: ProfileId,
    ) -> Result<Option<SealedProfile>, RepoError> {
        Ok(lock(&self.profiles)
            .iter()
            .find(|p| p.profile.id == id && &p.profile.owner == owner)
            .cloned())
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<StorageProfile>, RepoError> {
        Ok(lock(&self.profiles)
            .iter()
            .filter(|p| &p.profile.owner == owner)
            .map(|p| p.profile.clone())
            .collect())
    }

    async fn delete(&self, owner: &OwnerId, id: ProfileId) -> Result<(), RepoError> {
        let mut all = lock(&self.profiles);
        let before = all.len();
        all.retain(|p| !(p.profile.id == id && &p.profile.owner == owner));
        if all.len() == before {
            return Err(RepoError::NotFound);
        }
        let mut defaults = lock(&self.defaults);
        if defaults.get(owner) == Some(&id) {
            defaults.remove(owner);
        }
        Ok(())
    }

    async fn default_of(&self, owner: &OwnerId) -> Result<Option<ProfileId>, RepoError> {
        Ok(lock(&self.defaults).get(owner).copied())
    }

    async fn set_default(&self, owner: &OwnerId, id: Option<ProfileId>) -> Result<(), RepoError> {
        let Some(id) = id else {
            lock(&self.defaults).remove(owner);
            return Ok(());
        };
        if self.get(owner, id).await?.is_none() {
            return Err(RepoError::NotFound);
        }
        lock(&self.defaults).insert(owner.clone(), id);
        Ok(())
    }

    async fn all_sealed(&self) -> Result<Vec<SealedProfile>, RepoError> {
        let mut all = lock(&self.profiles).clone();
        all.sort_by_key(|p| p.profile.id);
        Ok(all)
    }

    async fn replace_credentials(
        &self,
        id: ProfileId,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool, RepoError> {
        let mut all = lock(&self.profiles);
        match all
            .iter_mut()
            .find(|p| p.profile.id == id && p.credentials == expected)
        {
            Some(p) => {
                p.credentials = sealed.to_vec();
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// A "secret box" for tests: reversible, with a check byte so tampering is detected. Not
/// encryption.
#[derive(Default)]
pub struct PlainBox;

impl PlainBox {
    /// A check over the plaintext and the context, so tampering and a wrong context show.
    fn check(plain: &[u8], context: &[u8]) -> [u8; 8] {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in plain.iter().chain(b"\0").chain(context) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        h.to_le_bytes()
    }
}

impl SecretBox for PlainBox {
    fn seal(&self, plain: &[u8], context: &[u8]) -> Vec<u8> {
        let mut out = Self::check(plain, context).to_vec();
        out.extend(plain.iter().map(|b| b ^ 0x5a));
        out
    }

    fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < 8 {
            return Err(SecretError);
        }
        let (check, body) = sealed.split_at(8);
        let plain: Vec<u8> = body.iter().map(|b| b ^ 0x5a).collect();
        if Self::check(&plain, context) != check {
            return Err(SecretError);
        }
        Ok(plain)
    }

    fn is_current(&self, _sealed: &[u8]) -> bool {
        true
    }
}

#[derive(Default)]
pub struct MemorySessions {
    sessions: Mutex<HashMap<(JobId, String), String>>,
}

#[async_trait]
impl UploadSessions for MemorySessions {
    async fn get(&self, job: JobId, key: &str) -> Result<Option<String>, RepoError> {
        Ok(lock(&self.sessions).get(&(job, key.to_owned())).cloned())
    }

    async fn set(&self, job: JobId, key: &str, session: Option<&str>) -> Result<(), RepoError> {
        let mut all = lock(&self.sessions);
        match session {
            Some(s) => {
                all.insert((job, key.to_owned()), s.to_owned());
            }
            None => {
                all.remove(&(job, key.to_owned()));
            }
        }
        Ok(())
    }

    async fn of_job(&self, job: JobId) -> Result<Vec<(String, String)>, RepoError> {
        let mut out: Vec<_> = lock(&self.sessions)
            .iter()
            .filter(|((j, _), _)| *j == job)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect();
        out.sort();
        Ok(out)
    }
}
