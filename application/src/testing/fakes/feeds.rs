//! `FeedRepository` in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_domain::OwnerId;
use uuid::Uuid;

use crate::ports::{
    Feed, FeedMatch, FeedRepository, FeedRule, MatchClaim, MatchOutcome, PollRecord, RepoError,
};

#[derive(Default)]
struct State {
    feeds: Vec<Feed>,
    rules: Vec<FeedRule>,
    matches: BTreeMap<(Uuid, String), (FeedMatch, DateTime<Utc>)>,
    episodes: BTreeSet<(Uuid, String)>,
}

#[derive(Default)]
pub struct MemoryFeeds {
    state: Mutex<State>,
}

impl MemoryFeeds {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }
}

fn newest_first(mut all: Vec<FeedMatch>, limit: u64) -> Vec<FeedMatch> {
    all.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.item_key.cmp(&b.item_key))
    });
    all.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    all
}

#[async_trait]
impl FeedRepository for MemoryFeeds {
    async fn create_feed(&self, feed: &Feed) -> Result<(), RepoError> {
        self.with(|s| s.feeds.push(feed.clone()));
        Ok(())
    }

    async fn feeds(&self, owner: &OwnerId) -> Result<Vec<Feed>, RepoError> {
        Ok(self.with(|s| {
            s.feeds
                .iter()
                .filter(|f| &f.owner == owner)
                .cloned()
                .collect()
        }))
    }

    async fn feed(&self, owner: &OwnerId, id: Uuid) -> Result<Option<Feed>, RepoError> {
        Ok(self.with(|s| {
            s.feeds
                .iter()
                .find(|f| f.id == id && &f.owner == owner)
                .cloned()
        }))
    }

    async fn update_feed(&self, feed: &Feed) -> Result<(), RepoError> {
        self.with(|s| {
            let f = s
                .feeds
                .iter_mut()
                .find(|f| f.id == feed.id && f.owner == feed.owner)
                .ok_or(RepoError::NotFound)?;
            f.url.clone_from(&feed.url);
            f.name.clone_from(&feed.name);
            f.interval_secs = feed.interval_secs;
            f.etag.clone_from(&feed.etag);
            f.last_modified.clone_from(&feed.last_modified);
            f.next_poll_at = feed.next_poll_at;
            Ok(())
        })
    }

    async fn delete_feed(&self, owner: &OwnerId, id: Uuid) -> Result<(), RepoError> {
        self.with(|s| {
            let before = s.feeds.len();
            s.feeds.retain(|f| !(f.id == id && &f.owner == owner));
            if s.feeds.len() == before {
                Err(RepoError::NotFound)
            } else {
                Ok(())
            }
        })
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Feed>, RepoError> {
        Ok(self.with(|s| {
            let mut out = Vec::new();
            for f in s.feeds.iter_mut().filter(|f| f.next_poll_at <= now) {
                if out.len() as u64 >= limit {
                    break;
                }
                out.push(f.clone());
                f.next_poll_at = lease_until;
            }
            out
        }))
    }

    async fn claim_now(
        &self,
        owner: &OwnerId,
        id: Uuid,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Feed>, RepoError> {
        self.with(|s| {
            let f = s
                .feeds
                .iter_mut()
                .find(|f| f.id == id && &f.owner == owner)
                .ok_or(RepoError::NotFound)?;
            if f.next_poll_at > now + chrono::Duration::seconds(i64::from(f.interval_secs)) {
                return Ok(None);
            }
            let claimed = f.clone();
            f.next_poll_at = lease_until;
            Ok(Some(claimed))
        })
    }

    async fn record_poll(&self, id: Uuid, poll: &PollRecord) -> Result<(), RepoError> {
        self.with(|s| {
            if let Some(f) = s.feeds.iter_mut().find(|f| f.id == id) {
                f.etag.clone_from(&poll.etag);
                f.last_modified.clone_from(&poll.last_modified);
                f.last_error.clone_from(&poll.last_error);
                f.last_polled_at = Some(poll.polled_at);
                f.next_poll_at = poll.next_poll_at;
                if let Some(items) = &poll.items {
                    f.items.clone_from(items);
                }
            }
        });
        Ok(())
    }

    async fn create_rule(&self, rule: &FeedRule) -> Result<(), RepoError> {
        self.with(|s| s.rules.push(rule.clone()));
        Ok(())
    }

    async fn rules(&self, owner: &OwnerId) -> Result<Vec<FeedRule>, RepoError> {
        Ok(self.with(|s| {
            s.rules
                .iter()
                .filter(|r| &r.owner == owner)
                .cloned()
                .collect()
        }))
    }

    async fn rule(&self, owner: &OwnerId, id: Uuid) -> Result<Option<FeedRule>, RepoError> {
        Ok(self.with(|s| {
            s.rules
                .iter()
                .find(|r| r.id == id && &r.owner == owner)
                .cloned()
        }))
    }

    async fn update_rule(&self, rule: &FeedRule) -> Result<(), RepoError> {
        self.with(|s| {
            let r = s
                .rules
                .iter_mut()
                .find(|r| r.id == rule.id && r.owner == rule.owner)
                .ok_or(RepoError::NotFound)?;
            let created_at = r.created_at;
            *r = rule.clone();
            r.created_at = created_at;
            Ok(())
        })
    }

    async fn delete_rule(&self, owner: &OwnerId, id: Uuid) -> Result<(), RepoError> {
        self.with(|s| {
            let before = s.rules.len();
            s.rules.retain(|r| !(r.id == id && &r.owner == owner));
            if s.rules.len() == before {
                return Err(RepoError::NotFound);
            }
            s.matches.retain(|(rule, _), _| *rule != id);
            s.episodes.retain(|(rule, _)| *rule != id);
            Ok(())
        })
    }

    async fn taken_episodes(&self, rule: Uuid) -> Result<Vec<String>, RepoError> {
        Ok(self.with(|s| {
            s.episodes
                .iter()
                .filter(|(r, _)| *r == rule)
                .map(|(_, k)| k.clone())
                .collect()
        }))
    }

    async fn claim_match(
        &self,
        m: &FeedMatch,
        episodes: &[String],
        stale_before: DateTime<Utc>,
    ) -> Result<MatchClaim, RepoError> {
        Ok(self.with(|s| {
            let key = (m.rule, m.item_key.clone());
            if let Some((existing, updated)) = s.matches.get_mut(&key) {
                let again = matches!(existing.outcome, MatchOutcome::Retry(_))
                    || (existing.outcome == MatchOutcome::Pending && *updated < stale_before);
                if again {
                    existing.outcome = MatchOutcome::Pending;
                    *updated = m.created_at;
                    return MatchClaim::Retry;
                }
                return MatchClaim::Taken;
            }
            if episodes
                .iter()
                .any(|e| s.episodes.contains(&(m.rule, e.clone())))
            {
                return MatchClaim::Taken;
            }
            for e in episodes {
                s.episodes.insert((m.rule, e.clone()));
            }
            s.matches.insert(key, (m.clone(), m.created_at));
            MatchClaim::New
        }))
    }

    async fn settle_match(
        &self,
        rule: Uuid,
        item_key: &str,
        outcome: &MatchOutcome,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        self.with(|s| {
            if let Some((m, updated)) = s.matches.get_mut(&(rule, item_key.to_owned())) {
                m.outcome = outcome.clone();
                *updated = now;
            }
        });
        Ok(())
    }

    async fn matches(&self, rule: Uuid, limit: u64) -> Result<Vec<FeedMatch>, RepoError> {
        let all = self.with(|s| {
            s.matches
                .values()
                .filter(|(m, _)| m.rule == rule)
                .map(|(m, _)| m.clone())
                .collect()
        });
        Ok(newest_first(all, limit))
    }

    async fn feed_matches(&self, feed: Uuid, limit: u64) -> Result<Vec<FeedMatch>, RepoError> {
        let all = self.with(|s| {
            s.matches
                .values()
                .filter(|(m, _)| m.feed == feed)
                .map(|(m, _)| m.clone())
                .collect()
        });
        Ok(newest_first(all, limit))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_fake_keeps_the_contract() {
        crate::testing::contracts::feed_repository_contract(Arc::new(MemoryFeeds::default())).await;
    }
}
