//! `RedisSessions`: browser sessions for the distributed mode, so every API instance sees
//! a login and a logout at once.
//!
//! - `{p}:session:{hex of the SHA-256}`: a hash (`user`, `created`, `last_seen`, `expires`,
//!   `user_agent`, `ip`; times in microseconds since the epoch) that expires `min(idle,
//!   until the absolute end)` after its last request.
//! - `{p}:user-sessions:{user}`: a set of the user's session hashes, for "sign out
//!   everywhere"; it lives as long as its longest session, and members whose session has
//!   expired are dropped whenever the user signs in again.
//!
//! Redis expires keys by its own clock, but the port's `now` decides: `get` and `touch`
//! compare the stored ends with the `now` they are given, so a key Redis has not expired yet
//! is no live session past its ends. Every change that touches both keys is one script.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_application::ports::{RepoError, SecretHash, Session, Sessions};
use ferry_domain::OwnerId;
use redis::Script;

use crate::{Redis, unavailable};

/// "Seen" stamps closer than this to the last one are not written (nor the expiry moved).
const TOUCH_GAP: Duration = Duration::from_secs(60);

/// Stores a session and adds it to its user's set, dropping members that expired.
/// KEYS: session, user set. ARGV: px, member, session key prefix, then field/value pairs.
const CREATE: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[3] .. m) == 0 then redis.call('SREM', KEYS[2], m) end
end
redis.call('SADD', KEYS[2], ARGV[2])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return 1
";

/// Deletes the session if it has ended at `now`. KEYS: session. ARGV: now, idle (µs), set
/// key prefix, member. Returns 1 when it deleted it.
const END_IF_ENDED: &str = r"
local v = redis.call('HMGET', KEYS[1], 'last_seen', 'expires', 'user')
if not v[1] or not v[2] or not v[3] then return 0 end
local now = tonumber(ARGV[1])
if now < tonumber(v[2]) and tonumber(v[1]) > now - tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[3] .. v[3], ARGV[4])
return 1
";

/// Moves a live session's idle end, unless its last request is closer than the gap.
/// KEYS: session. ARGV: now, idle (µs), gap (µs), set key prefix. Returns 1 when written.
const TOUCH: &str = r"
local v = redis.call('HMGET', KEYS[1], 'last_seen', 'expires', 'user')
if not v[1] or not v[2] or not v[3] then return 0 end
local now, last, ends = tonumber(ARGV[1]), tonumber(v[1]), tonumber(v[2])
local idle = tonumber(ARGV[2])
if now >= ends or last <= now - idle or last > now - tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'last_seen', ARGV[1])
local px = math.max(1, math.ceil(math.min(idle, ends - now) / 1000))
redis.call('PEXPIRE', KEYS[1], px)
local set = ARGV[4] .. v[3]
if redis.call('PTTL', set) < px then redis.call('PEXPIRE', set, px) end
return 1
";

/// Deletes a session and its set membership. KEYS: session. ARGV: set key prefix, member.
const DELETE: &str = r"
local user = redis.call('HGET', KEYS[1], 'user')
redis.call('DEL', KEYS[1])
if user then redis.call('SREM', ARGV[1] .. user, ARGV[2]) end
return 1
";

/// Deletes every session of a user and the set; returns how many sessions there were.
/// KEYS: user set. ARGV: session key prefix.
const DELETE_USER: &str = r"
local n = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  n = n + redis.call('DEL', ARGV[1] .. m)
end
redis.call('DEL', KEYS[1])
return n
";

pub struct RedisSessions {
    redis: Redis,
    create: Script,
    end_if_ended: Script,
    touch: Script,
    delete: Script,
    delete_user: Script,
}

fn repo_error(e: redis::RedisError) -> RepoError {
    if unavailable(&e) {
        RepoError::Unavailable(e.to_string())
    } else {
        RepoError::Unexpected(e.into())
    }
}

fn corrupt(hash: &str) -> RepoError {
    RepoError::Unexpected(anyhow::anyhow!("session {hash:.8}… is corrupt"))
}

/// Microseconds, as precise as the databases keep times; Lua's doubles hold them exactly
/// for the next hundred years.
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros())
        .unwrap_or(i64::MAX)
        .min(1 << 52)
}

fn stamp(at: DateTime<Utc>) -> String {
    at.timestamp_micros().to_string()
}

impl RedisSessions {
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            create: Script::new(CREATE),
            end_if_ended: Script::new(END_IF_ENDED),
            touch: Script::new(TOUCH),
            delete: Script::new(DELETE),
            delete_user: Script::new(DELETE_USER),
        }
    }

    fn session_prefix(&self) -> String {
        self.redis.key("session:")
    }

    fn set_prefix(&self) -> String {
        self.redis.key("user-sessions:")
    }

    fn conn(&self) -> redis::aio::ConnectionManager {
        self.redis.commands.clone()
    }
}

fn parse(hash: &str, mut fields: HashMap<String, String>) -> Result<Session, RepoError> {
    let time = |name: &str| {
        fields
            .get(name)
            .and_then(|v| v.parse().ok())
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(|| corrupt(hash))
    };
    let (created_at, last_seen_at, expires_at) =
        (time("created")?, time("last_seen")?, time("expires")?);
    let user = fields
        .get("user")
        .and_then(|u| OwnerId::parse(u))
        .ok_or_else(|| corrupt(hash))?;
    Ok(Session {
        user,
        created_at,
        last_seen_at,
        expires_at,
        user_agent: fields.remove("user_agent"),
        ip: fields.remove("ip"),
    })
}

#[async_trait]
impl Sessions for RedisSessions {
    async fn create(
        &self,
        hash: &SecretHash,
        session: &Session,
        idle: Duration,
    ) -> Result<(), RepoError> {
        let member = hex::encode(hash);
        let left = (session.expires_at - session.last_seen_at)
            .num_microseconds()
            .unwrap_or(i64::MAX);
        let ttl_ms = micros(idle).min(left).div_euclid(1000);
        if ttl_ms <= 0 {
            return Ok(()); // ended before it began
        }
        let mut call = self.create.prepare_invoke();
        call.key(format!("{}{member}", self.session_prefix()))
            .key(format!("{}{}", self.set_prefix(), session.user.as_str()))
            .arg(ttl_ms)
            .arg(&member)
            .arg(self.session_prefix())
            .arg("user")
            .arg(session.user.as_str())
            .arg("created")
            .arg(stamp(session.created_at))
            .arg("last_seen")
            .arg(stamp(session.last_seen_at))
            .arg("expires")
            .arg(stamp(session.expires_at));
        if let Some(agent) = &session.user_agent {
            call.arg("user_agent").arg(agent);
        }
        if let Some(ip) = &session.ip {
            call.arg("ip").arg(ip);
        }
        let _: i64 = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(repo_error)?;
        Ok(())
    }

    async fn get(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
        idle: Duration,
    ) -> Result<Option<Session>, RepoError> {
        let member = hex::encode(hash);
        let key = format!("{}{member}", self.session_prefix());
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut self.conn())
            .await
            .map_err(repo_error)?;
        if fields.is_empty() {
            return Ok(None);
        }
        let session = parse(&member, fields)?;
        let idle_end = session
            .last_seen_at
            .checked_add_signed(chrono::TimeDelta::microseconds(micros(idle)))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if now < session.expires_at && now < idle_end {
            return Ok(Some(session));
        }
        let _: i64 = self
            .end_if_ended
            .key(&key)
            .arg(stamp(now))
            .arg(micros(idle))
            .arg(self.set_prefix())
            .arg(&member)
            .invoke_async(&mut self.conn())
            .await
            .map_err(repo_error)?;
        Ok(None)
    }

    async fn touch(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
        idle: Duration,
    ) -> Result<(), RepoError> {
        let gap = TOUCH_GAP.min(idle / 2);
        let _: i64 = self
            .touch
            .key(format!("{}{}", self.session_prefix(), hex::encode(hash)))
            .arg(stamp(now))
            .arg(micros(idle))
            .arg(micros(gap))
            .arg(self.set_prefix())
            .invoke_async(&mut self.conn())
            .await
            .map_err(repo_error)?;
        Ok(())
    }

    async fn delete(&self, hash: &SecretHash) -> Result<(), RepoError> {
        let member = hex::encode(hash);
        let _: i64 = self
            .delete
            .key(format!("{}{member}", self.session_prefix()))
            .arg(self.set_prefix())
            .arg(&member)
            .invoke_async(&mut self.conn())
            .await
            .map_err(repo_error)?;
        Ok(())
    }

    async fn list(
        &self,
        user: &OwnerId,
        now: DateTime<Utc>,
        idle: Duration,
    ) -> Result<Vec<(SecretHash, Session)>, RepoError> {
        let mut c = self.conn();
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}{}", self.set_prefix(), user.as_str()))
            .query_async(&mut c)
            .await
            .map_err(repo_error)?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for m in &members {
            pipe.cmd("HGETALL")
                .arg(format!("{}{m}", self.session_prefix()));
        }
        let all: Vec<HashMap<String, String>> =
            pipe.query_async(&mut c).await.map_err(repo_error)?;
        let mut live = Vec::new();
        for (member, fields) in members.iter().zip(all) {
            let mut hash = [0u8; 32];
            // Gone meanwhile (expired), or not one of ours.
            if fields.is_empty() || hex::decode_to_slice(member, &mut hash).is_err() {
                continue;
            }
            let session = parse(member, fields)?;
            let idle_end = session
                .last_seen_at
                .checked_add_signed(chrono::TimeDelta::microseconds(micros(idle)))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            if &session.user == user && now < session.expires_at && now < idle_end {
                live.push((hash, session));
            }
        }
        live.sort_by(|a, b| b.1.created_at.cmp(&a.1.created_at).then(a.0.cmp(&b.0)));
        Ok(live)
    }

    async fn delete_user(&self, user: &OwnerId) -> Result<u64, RepoError> {
        let n: u64 = self
            .delete_user
            .key(format!("{}{}", self.set_prefix(), user.as_str()))
            .arg(self.session_prefix())
            .invoke_async(&mut self.conn())
            .await
            .map_err(repo_error)?;
        Ok(n)
    }

    /// Redis expires a session's key at its idle or absolute end by itself (and a user's
    /// set with their last session), so there is nothing left to sweep.
    async fn sweep(&self, _now: DateTime<Utc>, _idle: Duration) -> Result<u64, RepoError> {
        Ok(0)
    }
}
