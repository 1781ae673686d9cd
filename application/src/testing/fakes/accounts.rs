//! `UserRepository`, `TokenRepository` and `Sessions` in memory.

use ferry_domain::{Identity, PersonalToken, TokenId, User, UserName};

use super::*;

/// "Seen" and "used" stamps closer than this to the last one are skipped, as adapters may.
const TOUCH_GAP: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

#[derive(Default)]
struct UserState {
    users: Vec<User>,
    identities: Vec<(OwnerId, Identity)>,
    setup_links: HashMap<SecretHash, (OwnerId, DateTime<Utc>)>,
}

impl UserState {
    /// Whether `identity` is someone's (other than `except`): the same OIDC issuer and
    /// subject, or the same local name.
    fn taken(&self, identity: &Identity, except: Option<&OwnerId>) -> bool {
        self.identities.iter().any(|(owner, held)| {
            Some(owner) != except
                && match (held, identity) {
                    (
                        Identity::Oidc { issuer, subject },
                        Identity::Oidc {
                            issuer: i,
                            subject: s,
                        },
                    ) => issuer == i && subject == s,
                    (Identity::Local { name, .. }, Identity::Local { name: n, .. }) => name == n,
                    _ => false,
                }
        })
    }

    fn user(&self, id: &OwnerId) -> Option<User> {
        self.users.iter().find(|u| &u.id == id).cloned()
    }
}

#[derive(Default)]
pub struct MemoryUsers {
    state: Mutex<UserState>,
}

#[async_trait]
impl UserRepository for MemoryUsers {
    async fn insert(&self, user: &User, identity: Option<&Identity>) -> Result<(), RepoError> {
        let mut s = lock(&self.state);
        if s.user(&user.id).is_some() || identity.is_some_and(|i| s.taken(i, None)) {
            return Err(RepoError::AlreadyExists);
        }
        s.users.push(user.clone());
        if let Some(identity) = identity {
            s.identities.push((user.id.clone(), identity.clone()));
        }
        Ok(())
    }

    async fn get(&self, id: &OwnerId) -> Result<Option<User>, RepoError> {
        Ok(lock(&self.state).user(id))
    }

    async fn by_oidc(&self, issuer: &str, subject: &str) -> Result<Option<User>, RepoError> {
        let s = lock(&self.state);
        let owner = s.identities.iter().find_map(|(owner, i)| match i {
            Identity::Oidc {
                issuer: i,
                subject: sub,
            } if i == issuer && sub == subject => Some(owner.clone()),
            _ => None,
        });
        Ok(owner.and_then(|o| s.user(&o)))
    }

    async fn by_local_name(
        &self,
        name: &UserName,
    ) -> Result<Option<(User, Option<String>)>, RepoError> {
        let s = lock(&self.state);
        let found = s.identities.iter().find_map(|(owner, i)| match i {
            Identity::Local {
                name: n,
                password_hash,
            } if n == name => Some((owner.clone(), password_hash.clone())),
            _ => None,
        });
        Ok(found.and_then(|(owner, hash)| s.user(&owner).map(|u| (u, hash))))
    }

    async fn identities(&self, id: &OwnerId) -> Result<Vec<Identity>, RepoError> {
        Ok(lock(&self.state)
            .identities
            .iter()
            .filter(|(owner, _)| owner == id)
            .map(|(_, i)| i.clone())
            .collect())
    }

    async fn set_local_password(
        &self,
        id: &OwnerId,
        name: &UserName,
        password_hash: &str,
    ) -> Result<(), RepoError> {
        let mut s = lock(&self.state);
        if s.user(id).is_none() {
            return Err(RepoError::NotFound);
        }
        let local = Identity::Local {
            name: name.clone(),
            password_hash: Some(password_hash.to_owned()),
        };
        if s.taken(&local, Some(id)) {
            return Err(RepoError::AlreadyExists);
        }
        let held = s
            .identities
            .iter_mut()
            .find(|(owner, i)| owner == id && matches!(i, Identity::Local { .. }));
        match held {
            Some((_, i)) => *i = local,
            None => s.identities.push((id.clone(), local)),
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<User>, RepoError> {
        let mut all = lock(&self.state).users.clone();
        all.sort_by(|a, b| (a.created_at, a.id.as_str()).cmp(&(b.created_at, b.id.as_str())));
        Ok(all)
    }

    async fn update(&self, user: &User) -> Result<(), RepoError> {
        let mut s = lock(&self.state);
        let stored = s
            .users
            .iter_mut()
            .find(|u| u.id == user.id)
            .ok_or(RepoError::NotFound)?;
        stored.display_name.clone_from(&user.display_name);
        stored.email.clone_from(&user.email);
        stored.role = user.role;
        stored.disabled = user.disabled;
        stored.quotas = user.quotas;
        Ok(())
    }

    async fn change(&self, id: &OwnerId, change: &UserChange) -> Result<(), RepoError> {
        let mut s = lock(&self.state);
        let stored = s
            .users
            .iter_mut()
            .find(|u| &u.id == id)
            .ok_or(RepoError::NotFound)?;
        if let Some(role) = change.role {
            stored.role = role;
        }
        if let Some(disabled) = change.disabled {
            stored.disabled = disabled;
        }
        if let Some(quotas) = change.quotas {
            stored.quotas = quotas;
        }
        Ok(())
    }

    async fn touch(&self, id: &OwnerId, at: DateTime<Utc>) -> Result<(), RepoError> {
        let mut s = lock(&self.state);
        if let Some(u) = s.users.iter_mut().find(|u| &u.id == id)
            && u.last_seen_at.is_none_or(|last| last <= at - TOUCH_GAP)
        {
            u.last_seen_at = Some(at);
        }
        Ok(())
    }

    async fn insert_setup_link(
        &self,
        hash: &SecretHash,
        user: &OwnerId,
        expires_at: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        lock(&self.state)
            .setup_links
            .insert(*hash, (user.clone(), expires_at));
        Ok(())
    }

    async fn take_setup_link(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
    ) -> Result<Option<OwnerId>, RepoError> {
        let taken = lock(&self.state).setup_links.remove(hash);
        Ok(taken.and_then(|(user, expires_at)| (now < expires_at).then_some(user)))
    }
}

#[derive(Default)]
pub struct MemoryTokens {
    tokens: Mutex<Vec<PersonalToken>>,
}

#[async_trait]
impl TokenRepository for MemoryTokens {
    async fn insert(&self, token: &PersonalToken) -> Result<(), RepoError> {
        let mut all = lock(&self.tokens);
        if all.iter().any(|t| t.id == token.id) {
            return Err(RepoError::AlreadyExists);
        }
        all.push(token.clone());
        Ok(())
    }

    async fn get(&self, id: TokenId) -> Result<Option<PersonalToken>, RepoError> {
        Ok(lock(&self.tokens).iter().find(|t| t.id == id).cloned())
    }

    async fn list(&self, owner: &OwnerId) -> Result<Vec<PersonalToken>, RepoError> {
        let mut mine: Vec<PersonalToken> = lock(&self.tokens)
            .iter()
            .filter(|t| &t.owner == owner)
            .cloned()
            .collect();
        mine.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
        Ok(mine)
    }

    async fn revoke(&self, owner: &OwnerId, id: TokenId) -> Result<(), RepoError> {
        let mut all = lock(&self.tokens);
        let before = all.len();
        all.retain(|t| !(t.id == id && &t.owner == owner));
        if all.len() == before {
            return Err(RepoError::NotFound);
        }
        Ok(())
    }

    async fn touch(&self, id: TokenId, at: DateTime<Utc>) -> Result<(), RepoError> {
        if let Some(t) = lock(&self.tokens).iter_mut().find(|t| t.id == id)
            && t.last_used_at.is_none_or(|last| last <= at - TOUCH_GAP)
        {
            t.last_used_at = Some(at);
        }
        Ok(())
    }
}

/// Browser sessions (not to be confused with [`super::MemorySessions`], the upload ids).
#[derive(Default)]
pub struct MemoryBrowserSessions {
    sessions: Mutex<HashMap<SecretHash, Session>>,
}

fn idle_delta(idle: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(idle).unwrap_or(chrono::TimeDelta::MAX)
}

fn is_live(s: &Session, now: DateTime<Utc>, idle: Duration) -> bool {
    now < s.expires_at
        && s.last_seen_at
            .checked_add_signed(idle_delta(idle))
            .is_none_or(|idle_end| now < idle_end)
}

#[async_trait]
impl Sessions for MemoryBrowserSessions {
    async fn create(
        &self,
        hash: &SecretHash,
        session: &Session,
        _idle: Duration,
    ) -> Result<(), RepoError> {
        lock(&self.sessions).insert(*hash, session.clone());
        Ok(())
    }

    async fn get(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
        idle: Duration,
    ) -> Result<Option<Session>, RepoError> {
        let mut all = lock(&self.sessions);
        match all.get(hash) {
            Some(s) if is_live(s, now, idle) => Ok(Some(s.clone())),
            Some(_) => {
                all.remove(hash);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn touch(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
        idle: Duration,
    ) -> Result<(), RepoError> {
        let gap = idle_delta(idle / 2).min(TOUCH_GAP);
        if let Some(s) = lock(&self.sessions).get_mut(hash)
            && is_live(s, now, idle)
            && s.last_seen_at <= now - gap
        {
            s.last_seen_at = now;
        }
        Ok(())
    }

    async fn list(
        &self,
        user: &OwnerId,
        now: DateTime<Utc>,
        idle: Duration,
    ) -> Result<Vec<(SecretHash, Session)>, RepoError> {
        let mut mine: Vec<(SecretHash, Session)> = lock(&self.sessions)
            .iter()
            .filter(|(_, s)| &s.user == user && is_live(s, now, idle))
            .map(|(h, s)| (*h, s.clone()))
            .collect();
        mine.sort_by(|a, b| b.1.created_at.cmp(&a.1.created_at).then(a.0.cmp(&b.0)));
        Ok(mine)
    }

    async fn delete(&self, hash: &SecretHash) -> Result<(), RepoError> {
        lock(&self.sessions).remove(hash);
        Ok(())
    }

    async fn delete_user(&self, user: &OwnerId) -> Result<u64, RepoError> {
        let mut all = lock(&self.sessions);
        let before = all.len();
        all.retain(|_, s| &s.user != user);
        Ok((before - all.len()) as u64)
    }

    async fn sweep(&self, now: DateTime<Utc>, idle: Duration) -> Result<u64, RepoError> {
        let mut all = lock(&self.sessions);
        let before = all.len();
        all.retain(|_, s| is_live(s, now, idle));
        Ok((before - all.len()) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::contracts::{
        sessions_contract, token_repository_contract, user_repository_contract,
    };

    #[tokio::test]
    async fn the_fakes_pass_the_contracts() {
        user_repository_contract(&MemoryUsers::default()).await;
        token_repository_contract(&MemoryTokens::default()).await;
        sessions_contract(&MemoryBrowserSessions::default()).await;
    }
}
