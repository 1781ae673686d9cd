//! `RedisQueue`: one stream and consumer group per stage, at-least-once.
//!
//! - claim: promote due retries, take over a dead worker's message idle for longer than the
//!   lease (`XAUTOCLAIM`), else wait for a new one (`XREADGROUP … BLOCK`). A message is only
//!   run while its job's stage lock is held, so one job never runs a stage twice at once; a
//!   duplicate that finds the lock taken is put back with a short delay, never dropped.
//! - The lock holds the claim's receipt, `{message id}|{consumer}|{claim number}`: unique per
//!   claim, so a second consumer (or a second claim in the same process) that takes a message
//!   over while its first claimer still holds the lock leaves it alone, and a claimer whose
//!   lock expired learns so at its next renewal (`LeaseLost`) instead of running on.
//! - ack / retry / release / dead-letter are one Lua script each way, so the message, the
//!   lock and the job's message count always change together; a claimer that lost its lease
//!   can settle nothing.
//! - renew: only while the lock is still this claim's: the lock's expiry moves on and
//!   `XCLAIM … JUSTID` resets the message's idle time (taking it back from a consumer that
//!   took it over but found the lock held).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use ferry_application::ports::{JobQueue, Lease, QueueError, QueueStats, Stage, WorkerSeen};
use ferry_domain::JobId;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{Script, Value};

use crate::{Redis, unavailable};

const GROUP: &str = "workers";
/// How long a duplicate waits before it is tried again.
const DUPLICATE_DELAY: Duration = Duration::from_secs(2);
/// How often a claimer promotes due retries and looks for dead workers' messages; between
/// those, a claim is one blocking read and one lock.
const MAINTENANCE_EVERY: Duration = Duration::from_millis(500);
/// How often a claiming worker says it is alive (`q:seen:{stage}`, for operators).
const SEEN_EVERY: Duration = Duration::from_secs(5);
/// Workers not seen for this long are forgotten.
const FORGET_AFTER_MS: u64 = 24 * 3600 * 1000;

/// Moves due retries back into their stage streams.
const PROMOTE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  local stage, job, attempt = string.match(m, '^([^|]+)|([^|]+)|([^|]+)')
  redis.call('XADD', ARGV[2] .. ':q:' .. stage, '*', 'job', job, 'attempt', attempt)
end
return #due
";

/// Adds a message and counts it for its job.
/// KEYS: stream, jobs, the job's stage lock. ARGV: job, attempt. Returns 0 (and adds
/// nothing) when a message of the job waits already and none is held: it will run the stage
/// (a job paused while queued and resumed keeps that one message and its turn). While one is
/// held the new message is added, so a change made during the run gets a run after it.
const ENQUEUE: &str = r"
if redis.call('EXISTS', KEYS[3]) == 0 and tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') > 0 then
  return 0
end
redis.call('XADD', KEYS[1], '*', 'job', ARGV[1], 'attempt', ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return 1
";

/// Settles a held message. KEYS: stream, lock, delayed, dead, jobs.
/// ARGV: group, id, action, stage, job, attempt, due_ms, reason, consumer, receipt.
/// Returns -1 (and changes nothing) when the message is not this claim's: its lock names
/// another claim of it, or, with no lock of its own, another consumer holds it.
const SETTLE: &str = r"
local holder = redis.call('GET', KEYS[2])
if holder == ARGV[10] then
  redis.call('DEL', KEYS[2])
elseif holder and string.sub(holder, 1, #ARGV[2] + 1) == ARGV[2] .. '|' then
  return -1
else
  local pending = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1, ARGV[9])
  if type(pending) ~= 'table' or #pending == 0 then return -1 end
end
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if acked == 0 then return 0 end
local action = ARGV[3]
if action == 'retry' then
  redis.call('ZADD', KEYS[3], ARGV[7], ARGV[4] .. '|' .. ARGV[5] .. '|' .. ARGV[6] .. '|' .. ARGV[2])
elseif action == 'release' then
  redis.call('XADD', KEYS[1], '*', 'job', ARGV[5], 'attempt', ARGV[6])
else
  if action == 'dead' then
    redis.call('XADD', KEYS[4], '*', 'stage', ARGV[4], 'job', ARGV[5], 'attempt', ARGV[6], 'reason', ARGV[8])
  end
  if redis.call('HINCRBY', KEYS[5], ARGV[5], -1) <= 0 then redis.call('HDEL', KEYS[5], ARGV[5]) end
end
return 1
";

/// Takes the job's stage lock for this claim, or reports who holds it.
/// KEYS: lock. ARGV: receipt, lease_ms, id. Returns 1 when this claim holds it now, 2 when
/// another claim of this same message still holds it (its claimer is alive but late), 0
/// when another message of the job holds it (a duplicate).
const LOCK: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if string.sub(holder, 1, #ARGV[3] + 1) == ARGV[3] .. '|' then return 2 end
return 0
";

/// Extends the lock and resets the message's idle time, if this claim still holds the lock.
/// KEYS: lock, stream. ARGV: receipt, lease_ms, group, consumer, id. Returns 0 when lost.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('XCLAIM', KEYS[2], ARGV[3], ARGV[4], 0, ARGV[5], 'JUSTID')
return 1
";

pub struct RedisQueue {
    redis: Redis,
    consumer: String,
    lease: Duration,
    /// Numbers this process's claims, so each claim's receipt (and lock) is its own.
    claims: AtomicU64,
    /// Connections for blocking reads, reused across claims.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    /// Per stage: whether its group is known to exist, and when maintenance last ran.
    stages: Mutex<HashMap<Stage, (bool, Option<tokio::time::Instant>)>>,
    /// Per stage: when this worker last said it was alive.
    seen: Mutex<HashMap<Stage, tokio::time::Instant>>,
    promote: Script,
    enqueue: Script,
    settle: Script,
    lock: Script,
    renew: Script,
}

fn queue_error(e: redis::RedisError) -> QueueError {
    if unavailable(&e) {
        QueueError::Unavailable(e.to_string())
    } else {
        QueueError::Unexpected(e.into())
    }
}

/// The stream entry id a receipt names.
fn message_id(receipt: &str) -> &str {
    receipt.split('|').next().unwrap_or(receipt)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RedisQueue {
    /// `consumer` names this worker in the consumer groups (`hostname-pid`); `lease` is how
    /// long a silent worker keeps its messages before others take them over.
    pub fn new(redis: Redis, consumer: impl Into<String>, lease: Duration) -> Self {
        Self {
            redis,
            consumer: consumer.into(),
            lease,
            claims: AtomicU64::new(0),
            blocking: Mutex::new(Vec::new()),
            stages: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            promote: Script::new(PROMOTE),
            enqueue: Script::new(ENQUEUE),
            settle: Script::new(SETTLE),
            lock: Script::new(LOCK),
            renew: Script::new(RENEW),
        }
    }

    fn stream(&self, stage: Stage) -> String {
        self.redis.key(&format!("q:{}", stage.as_str()))
    }

    fn jobs_key(&self, stage: Stage) -> String {
        self.redis.key(&format!("q:jobs:{}", stage.as_str()))
    }

    fn lock_key(&self, stage: Stage, job: JobId) -> String {
        self.redis.key(&format!("lock:{}:{job}", stage.as_str()))
    }

    fn seen_key(&self, stage: Stage) -> String {
        self.redis.key(&format!("q:seen:{}", stage.as_str()))
    }

    /// Records that this worker is alive and takes work of `stage` (at most every
    /// [`SEEN_EVERY`]; when it claims, and while it holds a lease). Best effort: a failed
    /// write is logged and never stops the work.
    async fn say_seen(&self, stage: Stage) {
        {
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = tokio::time::Instant::now();
            match seen.get(&stage) {
                Some(last) if now.duration_since(*last) < SEEN_EVERY => return,
                _ => seen.insert(stage, now),
            };
        }
        let mut c = self.conn();
        let written: redis::RedisResult<i64> = redis::cmd("HSET")
            .arg(self.seen_key(stage))
            .arg(&self.consumer)
            .arg(now_ms())
            .query_async(&mut c)
            .await;
        if let Err(e) = written {
            tracing::debug!(error = %e, stage = stage.as_str(), "could not record that this worker is alive");
        }
    }

    fn conn(&self) -> redis::aio::ConnectionManager {
        self.redis.commands.clone()
    }

    fn stage_state(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Stage, (bool, Option<tokio::time::Instant>)>> {
        self.stages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this claim should promote retries and look for abandoned messages.
    fn maintenance_due(&self, stage: Stage) -> bool {
        let mut st = self.stage_state();
        let entry = st.entry(stage).or_insert((false, None));
        let now = tokio::time::Instant::now();
        match entry.1 {
            Some(last) if now.duration_since(last) < MAINTENANCE_EVERY => false,
            _ => {
                entry.1 = Some(now);
                true
            }
        }
    }

    /// Creates the stage's stream and group if missing (after a Redis restart, too).
    async fn ensure_group(&self, stage: Stage) -> Result<(), QueueError> {
        if self.stage_state().get(&stage).is_some_and(|s| s.0) {
            return Ok(());
        }
        let mut c = self.conn();
        let created: redis::RedisResult<Value> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.stream(stage))
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut c)
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(queue_error(e)),
        }
        self.stage_state().entry(stage).or_insert((false, None)).0 = true;
        Ok(())
    }

    /// Forgets that the stage's group exists (Redis lost it), so the next claim recreates it.
    fn group_lost(&self, stage: Stage) {
        self.stage_state().entry(stage).or_insert((false, None)).0 = false;
    }

    async fn promote_due(&self) -> Result<(), QueueError> {
        let mut c = self.conn();
        let _: i64 = self
            .promote
            .key(self.redis.key("q:delayed"))
            .arg(now_ms())
            .arg(&self.redis.prefix)
            .invoke_async(&mut c)
            .await
            .map_err(queue_error)?;
        Ok(())
    }

    /// A lease for a claimed entry, with a receipt naming this claim.
    fn lease_of(&self, stage: Stage, entry: &StreamId) -> Option<Lease> {
        let job: String = entry.get("job")?;
        let attempt: u32 = entry.get("attempt").unwrap_or(1);
        let claim = self.claims.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            stage,
            job_id: job.parse().ok()?,
            attempt,
            receipt: format!("{}|{}|{claim}", entry.id, self.consumer),
        })
    }

    /// A dead worker's message, idle for longer than the lease.
    async fn take_over(&self, stage: Stage) -> Result<Option<StreamId>, QueueError> {
        let mut c = self.conn();
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(self.stream(stage))
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(self.lease.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut c)
            .await
            .map_err(queue_error)?;
        Ok(reply.claimed.into_iter().next())
    }

    async fn read_new(&self, stage: Stage, wait: Duration) -> Result<Option<StreamId>, QueueError> {
        let pooled = self
            .blocking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let mut c = match pooled {
            Some(c) => c,
            None => self.redis.blocking().await.map_err(queue_error)?,
        };
        let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(self.stream(stage))
            .arg(">")
            .query_async(&mut c)
            .await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) if e.code() == Some("NOGROUP") => {
                self.group_lost(stage);
                self.ensure_group(stage).await?;
                return Ok(None);
            }
            Err(e) => return Err(queue_error(e)),
        };
        self.blocking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(c);
        Ok(reply
            .and_then(|r| r.keys.into_iter().next())
            .and_then(|k| k.ids.into_iter().next()))
    }

    async fn run_settle(
        &self,
        lease: &Lease,
        action: &str,
        attempt: u32,
        due_ms: u64,
        reason: &str,
    ) -> Result<(), QueueError> {
        let mut c = self.conn();
        let settled: i64 = self
            .settle
            .key(self.stream(lease.stage))
            .key(self.lock_key(lease.stage, lease.job_id))
            .key(self.redis.key("q:delayed"))
            .key(self.redis.key("q:dead"))
            .key(self.jobs_key(lease.stage))
            .arg(GROUP)
            .arg(message_id(&lease.receipt))
            .arg(action)
            .arg(lease.stage.as_str())
            .arg(lease.job_id.to_string())
            .arg(attempt)
            .arg(due_ms)
            .arg(reason)
            .arg(&self.consumer)
            .arg(&lease.receipt)
            .invoke_async(&mut c)
            .await
            .map_err(queue_error)?;
        if settled < 0 {
            return Err(QueueError::LeaseLost);
        }
        Ok(())
    }

    /// Messages of `stage` for `job` that are alive (waiting, delayed or held).
    ///
    /// # Errors
    /// When Redis cannot be reached.
    pub async fn pending_for(&self, stage: Stage, job: JobId) -> Result<u64, QueueError> {
        let mut c = self.conn();
        let n: Option<i64> = redis::cmd("HGET")
            .arg(self.jobs_key(stage))
            .arg(job.to_string())
            .query_async(&mut c)
            .await
            .map_err(queue_error)?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// Entries held by consumers and not yet acknowledged, for operators and tests.
    ///
    /// # Errors
    /// When Redis cannot be reached.
    pub async fn unacknowledged(&self, stage: Stage) -> Result<u64, QueueError> {
        let mut c = self.conn();
        let reply: redis::RedisResult<Value> = redis::cmd("XPENDING")
            .arg(self.stream(stage))
            .arg(GROUP)
            .query_async(&mut c)
            .await;
        match reply {
            Ok(Value::Array(items)) => Ok(match items.first() {
                Some(Value::Int(n)) => *n as u64,
                _ => 0,
            }),
            Ok(_) => Ok(0),
            Err(e) if e.code() == Some("NOGROUP") => Ok(0),
            Err(e) => Err(queue_error(e)),
        }
    }

    /// Entries in the dead-letter stream.
    ///
    /// # Errors
    /// When Redis cannot be reached.
    pub async fn dead_letters(&self) -> Result<u64, QueueError> {
        let mut c = self.conn();
        redis::cmd("XLEN")
            .arg(self.redis.key("q:dead"))
            .query_async(&mut c)
            .await
            .map_err(queue_error)
    }
}

#[async_trait]
impl JobQueue for RedisQueue {
    async fn enqueue(&self, stage: Stage, job_id: JobId) -> Result<(), QueueError> {
        let mut c = self.conn();
        let _: i64 = self
            .enqueue
            .key(self.stream(stage))
            .key(self.jobs_key(stage))
            .key(self.lock_key(stage, job_id))
            .arg(job_id.to_string())
            .arg(1)
            .invoke_async(&mut c)
            .await
            .map_err(queue_error)?;
        Ok(())
    }

    async fn claim(&self, stage: Stage, wait: Duration) -> Result<Option<Lease>, QueueError> {
        self.ensure_group(stage).await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.say_seen(stage).await;
            let mut entry = None;
            if self.maintenance_due(stage) {
                self.promote_due().await?;
                entry = self.take_over(stage).await?;
            }
            if entry.is_none() {
                // Wake up regularly to promote due retries.
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                entry = self.read_new(stage, left.min(MAINTENANCE_EVERY)).await?;
            }
            if let Some(entry) = entry {
                let Some(lease) = self.lease_of(stage, &entry) else {
                    // Not a message of ours: drop it rather than loop on it.
                    let broken = Lease {
                        stage,
                        job_id: JobId::new(),
                        attempt: 0,
                        receipt: entry.id,
                    };
                    self.run_settle(&broken, "ack", 0, 0, "").await?;
                    continue;
                };
                let mut c = self.conn();
                let locked: i64 = self
                    .lock
                    .key(self.lock_key(stage, lease.job_id))
                    .arg(&lease.receipt)
                    .arg(self.lease.as_millis() as u64)
                    .arg(&entry.id)
                    .invoke_async(&mut c)
                    .await
                    .map_err(queue_error)?;
                match locked {
                    1 => return Ok(Some(lease)),
                    // Its first claimer still holds the lock: it is alive, only late to
                    // renew, and takes the message back when it does. If it is dead, the
                    // lock expires and the message is taken over after another lease.
                    2 => {}
                    // Another message runs this job's stage: try this one again later.
                    _ => {
                        let due = now_ms() + DUPLICATE_DELAY.as_millis() as u64;
                        self.run_settle(&lease, "retry", lease.attempt, due, "")
                            .await?;
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    async fn ack(&self, lease: &Lease) -> Result<(), QueueError> {
        self.run_settle(lease, "ack", lease.attempt, 0, "").await
    }

    async fn retry_later(&self, lease: &Lease, delay: Duration) -> Result<(), QueueError> {
        let due = now_ms() + delay.as_millis() as u64;
        self.run_settle(lease, "retry", lease.attempt + 1, due, "")
            .await
    }

    async fn release(&self, lease: &Lease, after: Duration) -> Result<(), QueueError> {
        if after.is_zero() {
            return self
                .run_settle(lease, "release", lease.attempt, 0, "")
                .await;
        }
        // Delayed like a retry, as the same attempt.
        let due = now_ms() + after.as_millis() as u64;
        self.run_settle(lease, "retry", lease.attempt, due, "")
            .await
    }

    async fn renew(&self, lease: &Lease) -> Result<(), QueueError> {
        self.say_seen(lease.stage).await;
        let mut c = self.conn();
        let held: i64 = self
            .renew
            .key(self.lock_key(lease.stage, lease.job_id))
            .key(self.stream(lease.stage))
            .arg(&lease.receipt)
            .arg(self.lease.as_millis() as u64)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(message_id(&lease.receipt))
            .invoke_async(&mut c)
            .await
            .map_err(queue_error)?;
        if held == 1 {
            Ok(())
        } else {
            Err(QueueError::LeaseLost)
        }
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<(), QueueError> {
        self.run_settle(lease, "dead", lease.attempt, 0, reason)
            .await
    }

    async fn holds(&self, stage: Stage, job_id: JobId) -> Result<bool, QueueError> {
        Ok(self.pending_for(stage, job_id).await? > 0)
    }

    async fn depth(&self, stage: Stage) -> Result<u64, QueueError> {
        let mut c = self.conn();
        let len: u64 = redis::cmd("XLEN")
            .arg(self.stream(stage))
            .query_async(&mut c)
            .await
            .map_err(queue_error)?;
        Ok(len)
    }

    async fn stats(&self, stage: Stage) -> Result<QueueStats, QueueError> {
        let mut c = self.conn();
        let stream = self.stream(stage);
        let groups: redis::RedisResult<redis::streams::StreamInfoGroupsReply> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(&mut c)
            .await;
        let group = match groups {
            Ok(reply) => reply.groups.into_iter().find(|g| g.name == GROUP),
            Err(e) if e.to_string().contains("no such key") => None,
            Err(e) => return Err(queue_error(e)),
        };
        let Some(group) = group else {
            return Ok(QueueStats::default());
        };
        // Entries are deleted once settled: the stream holds what waits and what is held.
        let len: u64 = redis::cmd("XLEN")
            .arg(&stream)
            .query_async(&mut c)
            .await
            .map_err(queue_error)?;
        let held = group.pending as u64;
        let waiting = len.saturating_sub(held);
        // The oldest entry not yet delivered comes right after the last delivered one; its
        // id is the time it was added (due retries are added when they become due).
        let next: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&stream)
            .arg(format!("({}", group.last_delivered_id))
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut c)
            .await
            .map_err(queue_error)?;
        let oldest_waiting = next
            .ids
            .first()
            .and_then(|e| e.id.split('-').next())
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(|added| Duration::from_millis(now_ms().saturating_sub(added)));
        Ok(QueueStats {
            waiting,
            oldest_waiting: oldest_waiting.filter(|_| waiting > 0),
            held,
        })
    }

    async fn dead_letter_count(&self) -> Result<u64, QueueError> {
        self.dead_letters().await
    }

    async fn workers(&self, stage: Stage) -> Result<Vec<WorkerSeen>, QueueError> {
        let mut c = self.conn();
        let seen: HashMap<String, u64> = redis::cmd("HGETALL")
            .arg(self.seen_key(stage))
            .query_async(&mut c)
            .await
            .map_err(queue_error)?;
        let reply: redis::RedisResult<redis::streams::StreamInfoConsumersReply> =
            redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(self.stream(stage))
                .arg(GROUP)
                .query_async(&mut c)
                .await;
        let consumers: Vec<redis::streams::StreamInfoConsumer> = match reply {
            Ok(reply) => reply.consumers,
            // No worker has asked yet: the stream or its group does not exist.
            Err(e) if e.code() == Some("NOGROUP") || e.to_string().contains("no such key") => {
                Vec::new()
            }
            Err(e) => return Err(queue_error(e)),
        };
        let pending: HashMap<&str, u64> = consumers
            .iter()
            .map(|c| (c.name.as_str(), c.pending as u64))
            .collect();
        let now = now_ms();
        let mut workers = Vec::new();
        // A worker that holds messages is shown even if its heartbeat is missing.
        for c in consumers.iter().filter(|c| c.pending > 0) {
            if !seen.contains_key(&c.name) {
                workers.push(WorkerSeen {
                    name: c.name.clone(),
                    idle: Duration::from_millis(c.idle as u64),
                    pending: c.pending as u64,
                });
            }
        }
        for (name, at) in seen {
            let idle = now.saturating_sub(at);
            if idle > FORGET_AFTER_MS {
                let _: redis::RedisResult<i64> = redis::cmd("HDEL")
                    .arg(self.seen_key(stage))
                    .arg(&name)
                    .query_async(&mut c)
                    .await;
                continue;
            }
            workers.push(WorkerSeen {
                pending: pending.get(name.as_str()).copied().unwrap_or(0),
                name,
                idle: Duration::from_millis(idle),
            });
        }
        workers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(workers)
    }
}
