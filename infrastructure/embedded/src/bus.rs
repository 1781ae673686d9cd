//! `EmbeddedBus`: per-job ring buffers plus a broadcast for live delivery.
//!
//! Event ids are `{epoch}-{seq}`: `epoch` is fixed for the life of the process, `seq`
//! grows by one per event. A client resuming with an id from an earlier process (another
//! epoch) gets everything still retained, so a restart never makes it skip events.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use ferry_application::ports::{
    BusError, EventId, EventKind, JobEvent, ProgressBus, PublishedEvent, Replay,
};
use ferry_domain::{JobId, OwnerId};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

/// Events kept per job for replay.
const RETAINED: usize = 1000;
/// How long a finished job's events stay after its last event.
const LINGER: Duration = Duration::from_secs(15 * 60);
/// How often channels past their linger are looked for (a sweep visits every job's channel:
/// on every event, 500 running jobs made it quadratic).
const SWEEP_EVERY: Duration = Duration::from_secs(30);

struct Channel {
    retained: VecDeque<(u64, PublishedEvent)>,
    live: broadcast::Sender<(u64, PublishedEvent)>,
    last_event: Instant,
    finished: bool,
}

#[derive(Default)]
struct State {
    channels: HashMap<JobId, Channel>,
    /// Owners' feeds, while someone follows them.
    owners: HashMap<OwnerId, broadcast::Sender<PublishedEvent>>,
    seq: u64,
    swept: Option<Instant>,
}

#[derive(Clone)]
pub struct EmbeddedBus {
    epoch: u64,
    state: Arc<Mutex<State>>,
}

impl Default for EmbeddedBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EmbeddedBus {
    pub fn new() -> Self {
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self {
            epoch,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The sequence number after which to replay.
    fn replay_from(&self, from: &Replay, current: u64) -> Result<u64, BusError> {
        let id = match from {
            Replay::Retained => return Ok(0),
            Replay::LiveOnly => return Ok(current),
            Replay::After(id) => id,
        };
        let bad = || BusError::BadEventId(id.0.clone());
        let (epoch, seq) = id.0.split_once('-').ok_or_else(bad)?;
        let epoch: u64 = epoch.parse().map_err(|_| bad())?;
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        Ok(if epoch == self.epoch { seq } else { 0 })
    }

    fn backlog(&self, job_id: JobId, after: u64) -> Vec<(u64, PublishedEvent)> {
        self.lock()
            .channels
            .get(&job_id)
            .map(|c| {
                c.retained
                    .iter()
                    .filter(|(s, _)| *s > after)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn sweep(state: &mut State) {
        if state.channels.len() < 256 || state.swept.is_some_and(|t| t.elapsed() < SWEEP_EVERY) {
            return;
        }
        state.swept = Some(Instant::now());
        state.channels.retain(|_, c| {
            let idle = c.last_event.elapsed();
            c.live.receiver_count() > 0 || !(c.finished && idle > LINGER || idle > 4 * LINGER)
        });
    }
}

fn is_final(event: &JobEvent) -> bool {
    event.kind == EventKind::Status && event.status.is_terminal()
}

#[async_trait]
impl ProgressBus for EmbeddedBus {
    async fn publish(&self, event: &JobEvent) -> Result<EventId, BusError> {
        let mut st = self.lock();
        Self::sweep(&mut st);
        st.seq += 1;
        let seq = st.seq;
        let id = EventId(format!("{}-{seq}", self.epoch));
        let published = PublishedEvent {
            id: id.clone(),
            event: event.clone(),
        };
        let channel = st.channels.entry(event.job_id).or_insert_with(|| Channel {
            retained: VecDeque::new(),
            live: broadcast::channel(256).0,
            last_event: Instant::now(),
            finished: false,
        });
        if channel.retained.len() == RETAINED {
            channel.retained.pop_front();
        }
        channel.retained.push_back((seq, published.clone()));
        channel.last_event = Instant::now();
        channel.finished = is_final(event);
        // No receiver is not an error: nobody is watching.
        let _ = channel.live.send((seq, published.clone()));
        if let Some(feed) = st.owners.get(&event.owner) {
            if feed.receiver_count() == 0 {
                st.owners.remove(&event.owner);
            } else {
                let _ = feed.send(published);
            }
        }
        Ok(id)
    }

    async fn subscribe(
        &self,
        job_id: JobId,
        from: &Replay,
    ) -> Result<mpsc::Receiver<PublishedEvent>, BusError> {
        let (mut last, backlog, mut live) = {
            let mut st = self.lock();
            let last = self.replay_from(from, st.seq)?;
            let channel = st.channels.entry(job_id).or_insert_with(|| Channel {
                retained: VecDeque::new(),
                live: broadcast::channel(256).0,
                last_event: Instant::now(),
                finished: false,
            });
            let backlog: Vec<_> = channel
                .retained
                .iter()
                .filter(|(s, _)| *s > last)
                .cloned()
                .collect();
            (last, backlog, channel.live.subscribe())
        };
        let (tx, rx) = mpsc::channel(256);
        let bus = self.clone();
        tokio::spawn(async move {
            let mut pending: VecDeque<_> = backlog.into();
            loop {
                while let Some((seq, event)) = pending.pop_front() {
                    if seq <= last {
                        continue;
                    }
                    if tx.send(event).await.is_err() {
                        return;
                    }
                    last = seq;
                }
                let received = tokio::select! {
                    // The subscriber left: stop following now, not at the next event (a
                    // quiet job may never have one).
                    () = tx.closed() => return,
                    received = live.recv() => received,
                };
                match received {
                    Ok(item) => pending.push_back(item),
                    // Fell behind the broadcast: catch up from the retained events.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        pending.extend(bus.backlog(job_id, last));
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(rx)
    }

    async fn subscribe_owner(
        &self,
        owner: &OwnerId,
    ) -> Result<mpsc::Receiver<PublishedEvent>, BusError> {
        let mut live = self
            .lock()
            .owners
            .entry(owner.clone())
            .or_insert_with(|| broadcast::channel(1024).0)
            .subscribe();
        let (tx, rx) = mpsc::channel(256);
        let (bus, owner) = (self.clone(), owner.clone());
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    () = tx.closed() => break,
                    received = live.recv() => received,
                };
                match received {
                    Ok(event) => {
                        if tx.send(event).await.is_err() {
                            break;
                        }
                    }
                    // A feed is live only: one that fell behind ends, and its follower
                    // reconnects and reloads what it shows (never a silent gap).
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "an owner's feed fell behind; ending it");
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            // The last follower gone, the owner's feed goes too.
            drop(live);
            let mut st = bus.lock();
            if st
                .owners
                .get(&owner)
                .is_some_and(|f| f.receiver_count() == 0)
            {
                st.owners.remove(&owner);
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn passes_the_contract() {
        ferry_application::testing::contracts::progress_bus_contract(&EmbeddedBus::new()).await;
    }

    #[tokio::test]
    async fn an_id_from_another_process_replays_everything_retained() {
        let bus = EmbeddedBus::new();
        let job = JobId::new();
        let event = JobEvent {
            job_id: job,
            owner: ferry_domain::OwnerId::local(),
            kind: EventKind::Progress,
            status: ferry_domain::JobStatus::Downloading,
            progress: ferry_domain::Progress::default(),
            error: None,
            at: chrono::Utc::now(),
        };
        bus.publish(&event).await.unwrap();
        let mut rx = bus
            .subscribe(job, &Replay::After(EventId("1-999".into())))
            .await
            .unwrap();
        assert!(rx.recv().await.is_some());
    }

    #[tokio::test]
    async fn a_subscriber_that_leaves_a_quiet_job_is_forgotten_at_once() {
        let bus = EmbeddedBus::new();
        let job = JobId::new();
        let receivers: Vec<_> = futures_join(&bus, job, 50).await;
        let following = || {
            bus.lock()
                .channels
                .get(&job)
                .map_or(0, |c| c.live.receiver_count())
        };
        assert_eq!(following(), 50);
        drop(receivers);
        // Nothing is published: only the departure can end the forwarding tasks.
        let deadline = Instant::now() + Duration::from_secs(1);
        while following() > 0 {
            assert!(Instant::now() < deadline, "{} still following", following());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn futures_join(
        bus: &EmbeddedBus,
        job: JobId,
        n: usize,
    ) -> Vec<mpsc::Receiver<PublishedEvent>> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(bus.subscribe(job, &Replay::LiveOnly).await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn a_slow_subscriber_misses_nothing() {
        let bus = EmbeddedBus::new();
        let job = JobId::new();
        let mut rx = bus.subscribe(job, &Replay::LiveOnly).await.unwrap();
        for i in 0..900u64 {
            let p = ferry_domain::Progress {
                bytes_done: i,
                ..Default::default()
            };
            let event = JobEvent {
                job_id: job,
                owner: ferry_domain::OwnerId::local(),
                kind: EventKind::Progress,
                status: ferry_domain::JobStatus::Downloading,
                progress: p,
                error: None,
                at: chrono::Utc::now(),
            };
            bus.publish(&event).await.unwrap();
        }
        for i in 0..900u64 {
            assert_eq!(rx.recv().await.unwrap().event.progress.bytes_done, i);
        }
    }
}
