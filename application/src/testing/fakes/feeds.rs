//! `FeedRepository` in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_domain::{JobId, OwnerId};
use uuid::Uuid;

use crate::ports::{
    Feed, FeedFetch, FeedItem, FeedLimits, FeedMatch, FeedRepository, FeedRule, FeedSource,
    FetchError, MatchClaim, MatchKey, MatchOutcome, PollRecord, RepoError,
};

/// A match as kept: when it last changed, and the id its job is to have.
struct Kept {
    matched: FeedMatch,
    updated: DateTime<Utc>,
    job: JobId,
}

#[derive(Default)]
struct State {
    feeds: Vec<Feed>,
    /// Feeds a poller holds, until when.
    leases: HashMap<Uuid, DateTime<Utc>>,
    rules: Vec<FeedRule>,
    matches: BTreeMap<(Uuid, Uuid, String), Kept>,
    episodes: BTreeSet<(Uuid, String)>,
    /// The next `settle_match` fails (a poller that stops between submitting and recording).
    fail_settle: bool,
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

    /// The next [`FeedRepository::settle_match`] answers `Unavailable` and records
    /// nothing, as if its caller stopped between submitting a match's job and recording it.
    pub fn fail_next_settle(&self) {
        self.with(|s| s.fail_settle = true);
    }
}

fn key_of(m: &MatchKey) -> (Uuid, Uuid, String) {
    (m.rule, m.feed, m.item_key.clone())
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
                .map(|f| Feed {
                    items: Vec::new(),
                    ..f.clone()
                })
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

    async fn update_feed(&self, feed: &Feed, new_url: bool) -> Result<bool, RepoError> {
        self.with(|s| {
            let f = s
                .feeds
                .iter_mut()
                .find(|f| f.id == feed.id && f.owner == feed.owner)
                .ok_or(RepoError::NotFound)?;
            if f.version != feed.version {
                return Ok(false);
            }
            f.url.clone_from(&feed.url);
            f.name.clone_from(&feed.name);
            f.interval_secs = feed.interval_secs;
            f.version += 1;
            if new_url {
                f.etag = None;
                f.last_modified = None;
                f.next_poll_at = feed.next_poll_at;
            }
            Ok(true)
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
            let leases = &mut s.leases;
            for f in s.feeds.iter_mut().filter(|f| f.next_poll_at <= now) {
                if out.len() as u64 >= limit {
                    break;
                }
                if leases.get(&f.id).is_some_and(|until| *until > now) {
                    continue;
                }
                out.push(f.clone());
                f.next_poll_at = lease_until;
                leases.insert(f.id, lease_until);
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
            if s.leases.get(&id).is_some_and(|until| *until > now) {
                return Ok(None);
            }
            let claimed = f.clone();
            f.next_poll_at = lease_until;
            s.leases.insert(id, lease_until);
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
                    f.item_count = items.len() as u64;
                }
            }
            s.leases.remove(&id);
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

    async fn update_rule(&self, rule: &FeedRule) -> Result<bool, RepoError> {
        self.with(|s| {
            let r = s
                .rules
                .iter_mut()
                .find(|r| r.id == rule.id && r.owner == rule.owner)
                .ok_or(RepoError::NotFound)?;
            if r.version != rule.version {
                return Ok(false);
            }
            let created_at = r.created_at;
            *r = rule.clone();
            r.created_at = created_at;
            r.version += 1;
            Ok(true)
        })
    }

    async fn delete_rule(&self, owner: &OwnerId, id: Uuid) -> Result<(), RepoError> {
        self.with(|s| {
            let before = s.rules.len();
            s.rules.retain(|r| !(r.id == id && &r.owner == owner));
            if s.rules.len() == before {
                return Err(RepoError::NotFound);
            }
            s.matches.retain(|(rule, _, _), _| *rule != id);
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
        job: JobId,
        stale_before: DateTime<Utc>,
    ) -> Result<MatchClaim, RepoError> {
        Ok(self.with(|s| {
            let key = key_of(&m.key());
            if let Some(kept) = s.matches.get_mut(&key) {
                let again = matches!(kept.matched.outcome, MatchOutcome::Retry(_))
                    || (kept.matched.outcome == MatchOutcome::Pending
                        && kept.updated < stale_before);
                if again {
                    kept.matched.outcome = MatchOutcome::Pending;
                    kept.updated = m.created_at;
                    return MatchClaim::Retry(kept.job);
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
            s.matches.insert(
                key,
                Kept {
                    matched: m.clone(),
                    updated: m.created_at,
                    job,
                },
            );
            MatchClaim::New
        }))
    }

    async fn settle_match(
        &self,
        matched: &MatchKey,
        outcome: &MatchOutcome,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        self.with(|s| {
            if std::mem::take(&mut s.fail_settle) {
                return Err(RepoError::Unavailable(
                    "the fake's settle fails once".into(),
                ));
            }
            if let Some(kept) = s.matches.get_mut(&key_of(matched)) {
                kept.matched.outcome = outcome.clone();
                kept.updated = now;
            }
            Ok(())
        })
    }

    async fn matches(&self, rule: Uuid, limit: u64) -> Result<Vec<FeedMatch>, RepoError> {
        let all = self.with(|s| {
            s.matches
                .values()
                .filter(|k| k.matched.rule == rule)
                .map(|k| k.matched.clone())
                .collect()
        });
        Ok(newest_first(all, limit))
    }

    async fn feed_matches(&self, feed: Uuid, limit: u64) -> Result<Vec<FeedMatch>, RepoError> {
        let all = self.with(|s| {
            s.matches
                .values()
                .filter(|k| k.matched.feed == feed)
                .map(|k| k.matched.clone())
                .collect()
        });
        Ok(newest_first(all, limit))
    }
}

/// A `FeedSource` serving the items set per URL (every fetch a `200`).
#[derive(Default)]
pub struct FakeFeedSource {
    feeds: Mutex<HashMap<String, Vec<FeedItem>>>,
}

impl FakeFeedSource {
    /// `url` serves `items` (newest first, as feeds list them).
    pub fn serve(&self, url: &str, items: Vec<FeedItem>) {
        self.feeds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(url.to_owned(), items);
    }
}

#[async_trait]
impl FeedSource for FakeFeedSource {
    async fn check(&self, _url: &ferry_domain::FetchUrl) -> Result<(), FetchError> {
        Ok(())
    }

    async fn fetch(
        &self,
        url: &ferry_domain::FetchUrl,
        _etag: Option<&str>,
        _last_modified: Option<&str>,
        _limits: FeedLimits,
    ) -> Result<FeedFetch, FetchError> {
        let items = self
            .feeds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(url.as_url().as_str())
            .cloned()
            .ok_or(FetchError::Status(404))?;
        Ok(FeedFetch::Fetched {
            items,
            etag: None,
            last_modified: None,
        })
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
