//! `RedisBus`: one stream per job (`XADD … MAXLEN ~ 1000`), the stream id as event id.
//!
//! Each process reads a job's stream with a single `XREAD BLOCK` loop (a hub) however many
//! local subscribers watch it, and fans events out in memory; a subscriber resuming from an
//! id first reads what it missed with `XRANGE`, then follows the hub, skipping ids it has.
//! A hub lives exactly as long as its subscribers: when the last one drops its receiver,
//! its forwarding task ends, and the hub stops and closes its connection at once, even in
//! the middle of an `XREAD BLOCK`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ferry_application::ports::{
    BusError, EventId, EventKind, JobEvent, ProgressBus, PublishedEvent, Replay,
};
use ferry_domain::{JobId, OwnerId};
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{Redis, unavailable};

/// Events kept per job stream (approximately).
const RETAINED: usize = 1000;
/// How long a finished job's events stay readable.
const FINISHED_TTL_SECS: u64 = 24 * 3600;
/// Events kept per owner's feed (approximately), and for how long after the last one: the
/// feed is for live followers, who read it as it grows.
const FEED_RETAINED: usize = 200;
const FEED_TTL_SECS: u64 = 3600;

/// A job's hub: its fan-out, how many subscribers it has, and how to stop it.
struct Hub {
    tx: broadcast::Sender<PublishedEvent>,
    members: usize,
    stop: CancellationToken,
}

/// Hubs by the stream they read (a job's, or an owner's feed).
type Hubs = Arc<Mutex<HashMap<String, Hub>>>;

/// One subscriber's share in a hub; the last one dropped stops the hub.
struct Membership {
    hubs: Hubs,
    key: String,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut hubs = RedisBus::lock_hubs(&self.hubs);
        if let Some(hub) = hubs.get_mut(&self.key) {
            hub.members = hub.members.saturating_sub(1);
            if hub.members == 0 {
                hub.stop.cancel();
                hubs.remove(&self.key);
            }
        }
    }
}

#[derive(Clone)]
pub struct RedisBus {
    redis: Redis,
    hubs: Hubs,
}

fn bus_error(e: redis::RedisError) -> BusError {
    if unavailable(&e) {
        BusError::Unavailable(e.to_string())
    } else {
        BusError::Unexpected(e.into())
    }
}

/// A stream id as a comparable pair.
fn order(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// An entry of a job's stream (its id is the event id), or of an owner's feed (which
/// carries the job stream's id in `id`).
fn decode(entry: &StreamId) -> Option<PublishedEvent> {
    let json: String = entry.get("e")?;
    let event: JobEvent = serde_json::from_str(&json).ok()?;
    let id: Option<String> = entry.get("id");
    Some(PublishedEvent {
        id: EventId(id.unwrap_or_else(|| entry.id.clone())),
        event,
    })
}

impl RedisBus {
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            hubs: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn key(&self, job: JobId) -> String {
        self.redis.key(&format!("progress:{job}"))
    }

    /// An owner's feed: every event of their jobs, kept briefly for live followers.
    fn owner_key(&self, owner: &OwnerId) -> String {
        self.redis
            .key(&format!("progress-owner:{}", owner.as_str()))
    }

    fn lock_hubs(hubs: &Hubs) -> std::sync::MutexGuard<'_, HashMap<String, Hub>> {
        hubs.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Events after `after` (exclusive), oldest first.
    async fn range_after(
        &self,
        job: JobId,
        after: Option<&str>,
    ) -> Result<Vec<PublishedEvent>, BusError> {
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let mut c = self.redis.commands.clone();
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.key(job))
            .arg(start)
            .arg("+")
            .query_async(&mut c)
            .await
            .map_err(bus_error)?;
        Ok(reply.ids.iter().filter_map(decode).collect())
    }

    /// A place in the hub of stream `key` (started if this process has none).
    async fn join(
        &self,
        key: String,
    ) -> Result<(broadcast::Receiver<PublishedEvent>, Membership), BusError> {
        let membership = |key: &String| Membership {
            hubs: self.hubs.clone(),
            key: key.clone(),
        };
        if let Some(hub) = Self::lock_hubs(&self.hubs).get_mut(&key) {
            hub.members += 1;
            return Ok((hub.tx.subscribe(), membership(&key)));
        }
        // Start reading after the newest event that exists now.
        let mut c = self.redis.commands.clone();
        let newest: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut c)
            .await
            .map_err(bus_error)?;
        let start = newest
            .ids
            .first()
            .map_or_else(|| "0-0".to_owned(), |e| e.id.clone());
        let mut hubs = Self::lock_hubs(&self.hubs);
        if let Some(hub) = hubs.get_mut(&key) {
            hub.members += 1;
            return Ok((hub.tx.subscribe(), membership(&key)));
        }
        let (tx, rx) = broadcast::channel(1024);
        let stop = CancellationToken::new();
        hubs.insert(
            key.clone(),
            Hub {
                tx: tx.clone(),
                members: 1,
                stop: stop.clone(),
            },
        );
        drop(hubs);
        let member = membership(&key);
        tokio::spawn(hub(self.redis.clone(), key, start, tx, stop));
        Ok((rx, member))
    }

    /// Hubs running in this process (one per job with local subscribers).
    pub fn followed_jobs(&self) -> usize {
        Self::lock_hubs(&self.hubs).len()
    }
}

/// Reads one job's stream for every local subscriber until `stop`; stopping drops the
/// pending `XREAD` and the connection with it, so its socket closes at once.
async fn hub(
    redis: Redis,
    key: String,
    mut last: String,
    tx: broadcast::Sender<PublishedEvent>,
    stop: CancellationToken,
) {
    let mut conn = None;
    loop {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let connected = tokio::select! {
                    () = stop.cancelled() => return,
                    c = redis.blocking() => c,
                };
                match connected {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        tracing::debug!(error = %e, "progress hub cannot reach Redis");
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                        }
                    }
                }
            }
        };
        let mut xread = redis::cmd("XREAD");
        xread
            .arg("COUNT")
            .arg(100)
            .arg("BLOCK")
            .arg(2000)
            .arg("STREAMS")
            .arg(&key)
            .arg(&last);
        let read = xread.query_async::<Option<StreamReadReply>>(c);
        let reply = tokio::select! {
            () = stop.cancelled() => return,
            reply = read => reply,
        };
        match reply {
            Ok(Some(r)) => {
                for entry in r.keys.iter().flat_map(|k| k.ids.iter()) {
                    last.clone_from(&entry.id);
                    if let Some(event) = decode(entry) {
                        let _ = tx.send(event);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "progress hub read failed");
                conn = None;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

#[async_trait]
impl ProgressBus for RedisBus {
    async fn publish(&self, event: &JobEvent) -> Result<EventId, BusError> {
        let json = serde_json::to_string(event).map_err(|e| BusError::Unexpected(e.into()))?;
        let key = self.key(event.job_id);
        let mut c = self.redis.commands.clone();
        let id: String = redis::cmd("XADD")
            .arg(&key)
            .arg("MAXLEN")
            .arg("~")
            .arg(RETAINED)
            .arg("*")
            .arg("e")
            .arg(json)
            .query_async(&mut c)
            .await
            .map_err(bus_error)?;
        if event.kind == EventKind::Status && event.status.is_terminal() {
            let _: redis::RedisResult<i64> = redis::cmd("EXPIRE")
                .arg(&key)
                .arg(FINISHED_TTL_SECS)
                .query_async(&mut c)
                .await;
        }
        // The owner's feed carries the same event under the job stream's id (the feed's own
        // ids only order the feed). Best effort: the job's stream is the record.
        let feed = self.owner_key(&event.owner);
        let published: redis::RedisResult<()> = redis::pipe()
            .cmd("XADD")
            .arg(&feed)
            .arg("MAXLEN")
            .arg("~")
            .arg(FEED_RETAINED)
            .arg("*")
            .arg("e")
            .arg(serde_json::to_string(event).unwrap_or_default())
            .arg("id")
            .arg(&id)
            .ignore()
            .cmd("EXPIRE")
            .arg(&feed)
            .arg(FEED_TTL_SECS)
            .ignore()
            .query_async(&mut c)
            .await;
        if let Err(e) = published {
            tracing::debug!(error = %e, "could not add an event to its owner's feed");
        }
        Ok(EventId(id))
    }

    async fn subscribe_owner(
        &self,
        owner: &OwnerId,
    ) -> Result<mpsc::Receiver<PublishedEvent>, BusError> {
        let (mut live, membership) = self.join(self.owner_key(owner)).await?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let _membership = membership;
            loop {
                let received = tokio::select! {
                    () = tx.closed() => return,
                    received = live.recv() => received,
                };
                match received {
                    Ok(event) => {
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                    // A feed is live only: one that fell behind ends, and its follower
                    // reconnects and reloads what it shows (never a silent gap).
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "an owner's feed fell behind; ending it");
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(rx)
    }

    async fn subscribe(
        &self,
        job_id: JobId,
        from: &Replay,
    ) -> Result<mpsc::Receiver<PublishedEvent>, BusError> {
        let after = match from {
            Replay::After(id) => {
                order(&id.0).ok_or_else(|| BusError::BadEventId(id.0.clone()))?;
                Some(id.0.clone())
            }
            _ => None,
        };
        // Join first, so nothing published while the backlog is read is missed.
        let (mut live, membership) = self.join(self.key(job_id)).await?;
        let backlog = match from {
            Replay::LiveOnly => Vec::new(),
            _ => self.range_after(job_id, after.as_deref()).await?,
        };
        let mut last = backlog
            .last()
            .map(|e| e.id.0.clone())
            .or(after)
            .and_then(|id| order(&id))
            .unwrap_or((0, 0));
        let (tx, rx) = mpsc::channel(256);
        let bus = self.clone();
        tokio::spawn(async move {
            // Held for as long as this subscriber follows the hub.
            let _membership = membership;
            for event in backlog {
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            loop {
                let received = tokio::select! {
                    // The subscriber left: stop now, not at the next event (a quiet job may
                    // never have one).
                    () = tx.closed() => return,
                    received = live.recv() => received,
                };
                let event = match received {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Fell behind: catch up from the stream itself.
                        let id = format!("{}-{}", last.0, last.1);
                        let Ok(missed) = bus.range_after(job_id, Some(&id)).await else {
                            return;
                        };
                        for e in missed {
                            let Some(o) = order(&e.id.0) else { continue };
                            last = o;
                            if tx.send(e).await.is_err() {
                                return;
                            }
                        }
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(o) = order(&event.id.0) else {
                    continue;
                };
                if o <= last {
                    continue;
                }
                last = o;
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}
