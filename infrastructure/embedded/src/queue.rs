//! `EmbeddedQueue`: a FIFO per stage, with delayed retries and no duplicate deliveries.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use ferry_application::ports::{JobQueue, Lease, QueueError, QueueStats, Stage, WorkerSeen};
use ferry_domain::JobId;
use tokio::sync::Notify;
use tokio::time::Instant;

struct Waiting {
    job_id: JobId,
    attempt: u32,
    visible_at: Instant,
}

#[derive(Default)]
struct State {
    waiting: HashMap<Stage, VecDeque<Waiting>>,
    /// receipt → lease
    leased: HashMap<String, Lease>,
    /// Jobs enqueued again while a worker held them: queued once more when settled.
    again: HashSet<(Stage, JobId)>,
    dead: Vec<(Lease, String)>,
    next_receipt: u64,
    /// When each stage's workers (in this process) first asked for work.
    asked: HashMap<Stage, Instant>,
}

/// The one-process job queue. A job waits at most once per stage: enqueueing it again
/// while it waits is a no-op, and while a worker holds it the request is remembered and
/// honoured once the worker lets go, so a stage never runs twice at once for one job.
#[derive(Default)]
pub struct EmbeddedQueue {
    state: Mutex<State>,
    notify: Notify,
}

impl EmbeddedQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Messages parked after their retries ran out (for operators and tests).
    pub fn dead_letters(&self) -> Vec<(Lease, String)> {
        self.lock().dead.clone()
    }

    fn push(&self, st: &mut State, stage: Stage, job_id: JobId, attempt: u32, delay: Duration) {
        let q = st.waiting.entry(stage).or_default();
        if delay.is_zero() && q.iter().any(|w| w.job_id == job_id) {
            return;
        }
        q.push_back(Waiting {
            job_id,
            attempt,
            visible_at: Instant::now() + delay,
        });
    }

    /// Removes the lease, applies `then`, and re-queues a job enqueued again while held.
    fn finish(&self, lease: &Lease, then: impl FnOnce(&Self, &mut State)) {
        let mut st = self.lock();
        if st.leased.remove(&lease.receipt).is_none() {
            return;
        }
        then(self, &mut st);
        if st.again.remove(&(lease.stage, lease.job_id)) {
            self.push(&mut st, lease.stage, lease.job_id, 1, Duration::ZERO);
        }
        drop(st);
        self.notify.notify_waiters();
    }

    fn take(&self, stage: Stage) -> Option<Lease> {
        let mut st = self.lock();
        let now = Instant::now();
        let q = st.waiting.entry(stage).or_default();
        let pos = q.iter().position(|w| w.visible_at <= now)?;
        let w = q.remove(pos)?;
        st.next_receipt += 1;
        let lease = Lease {
            stage,
            job_id: w.job_id,
            attempt: w.attempt,
            receipt: st.next_receipt.to_string(),
        };
        st.leased.insert(lease.receipt.clone(), lease.clone());
        Some(lease)
    }

    /// When the next delayed message of `stage` becomes visible.
    fn next_visible(&self, stage: Stage) -> Option<Instant> {
        self.lock()
            .waiting
            .get(&stage)
            .and_then(|q| q.iter().map(|w| w.visible_at).min())
    }
}

#[async_trait]
impl JobQueue for EmbeddedQueue {
    async fn enqueue(&self, stage: Stage, job_id: JobId) -> Result<(), QueueError> {
        let mut st = self.lock();
        if st
            .leased
            .values()
            .any(|l| l.stage == stage && l.job_id == job_id)
        {
            st.again.insert((stage, job_id));
        } else {
            self.push(&mut st, stage, job_id, 1, Duration::ZERO);
        }
        drop(st);
        self.notify.notify_waiters();
        Ok(())
    }

    async fn claim(&self, stage: Stage, wait: Duration) -> Result<Option<Lease>, QueueError> {
        self.lock().asked.entry(stage).or_insert_with(Instant::now);
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(lease) = self.take(stage) {
                return Ok(Some(lease));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let wake = self
                .next_visible(stage)
                .map_or(deadline, |t| t.min(deadline));
            let _ = tokio::time::timeout_at(wake.max(now), notified).await;
        }
    }

    async fn ack(&self, lease: &Lease) -> Result<(), QueueError> {
        self.finish(lease, |_, _| {});
        Ok(())
    }

    async fn retry_later(&self, lease: &Lease, delay: Duration) -> Result<(), QueueError> {
        let l = lease.clone();
        self.finish(lease, move |q, st| {
            q.push(st, l.stage, l.job_id, l.attempt + 1, delay);
        });
        Ok(())
    }

    async fn release(&self, lease: &Lease, after: Duration) -> Result<(), QueueError> {
        let l = lease.clone();
        self.finish(lease, move |q, st| {
            q.push(st, l.stage, l.job_id, l.attempt, after);
        });
        Ok(())
    }

    async fn renew(&self, lease: &Lease) -> Result<(), QueueError> {
        // One process: a lease cannot expire under a live worker, only be settled.
        if self.lock().leased.contains_key(&lease.receipt) {
            Ok(())
        } else {
            Err(QueueError::LeaseLost)
        }
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<(), QueueError> {
        let l = lease.clone();
        let reason = reason.to_owned();
        self.finish(lease, move |_, st| st.dead.push((l, reason)));
        Ok(())
    }

    async fn holds(&self, stage: Stage, job_id: JobId) -> Result<bool, QueueError> {
        let st = self.lock();
        let waiting = st
            .waiting
            .get(&stage)
            .is_some_and(|q| q.iter().any(|w| w.job_id == job_id));
        let held = st
            .leased
            .values()
            .any(|l| l.stage == stage && l.job_id == job_id);
        Ok(waiting || held)
    }

    async fn stats(&self, stage: Stage) -> Result<QueueStats, QueueError> {
        let st = self.lock();
        Ok(QueueStats::in_memory(
            Instant::now(),
            st.waiting
                .get(&stage)
                .into_iter()
                .flatten()
                .map(|w| w.visible_at),
            st.leased.values().filter(|l| l.stage == stage).count() as u64,
        ))
    }

    /// This process's workers, for each stage they have claimed from: alive as long as the
    /// process answers (a busy worker does not ask for more).
    async fn workers(&self, stage: Stage) -> Result<Vec<WorkerSeen>, QueueError> {
        let st = self.lock();
        Ok(st
            .asked
            .get(&stage)
            .map(|_| WorkerSeen {
                name: "this process".to_owned(),
                idle: Duration::ZERO,
                pending: st.leased.values().filter(|l| l.stage == stage).count() as u64,
            })
            .into_iter()
            .collect())
    }

    async fn dead_letter_count(&self) -> Result<u64, QueueError> {
        Ok(self.lock().dead.len() as u64)
    }

    async fn depth(&self, stage: Stage) -> Result<u64, QueueError> {
        Ok(self
            .lock()
            .waiting
            .get(&stage)
            .map_or(0, |q| q.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn passes_the_contract() {
        ferry_application::testing::contracts::job_queue_contract(&EmbeddedQueue::new()).await;
    }

    #[tokio::test]
    async fn a_job_waits_once_and_never_runs_twice_at_once() {
        let q = EmbeddedQueue::new();
        let job = JobId::new();
        q.enqueue(Stage::Download, job).await.unwrap();
        q.enqueue(Stage::Download, job).await.unwrap();
        assert_eq!(q.depth(Stage::Download).await.unwrap(), 1);
        let lease = q
            .claim(Stage::Download, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        // Asked again while held: not handed to a second worker now…
        q.enqueue(Stage::Download, job).await.unwrap();
        assert!(
            q.claim(Stage::Download, Duration::from_millis(20))
                .await
                .unwrap()
                .is_none()
        );
        // …but once the first run is settled.
        q.ack(&lease).await.unwrap();
        let again = q
            .claim(Stage::Download, Duration::from_millis(200))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.job_id, again.attempt), (job, 1));
    }
}
