//! `JobQueue` in memory: leases, delays, dead letters.

use super::*;

struct Delivery {
    job_id: JobId,
    attempt: u32,
    visible_at: tokio::time::Instant,
}

/// A FIFO per stage with delayed redelivery.
#[derive(Default)]
pub struct MemoryQueue {
    state: Mutex<QueueState>,
    notify: Notify,
}

#[derive(Default)]
struct QueueState {
    ready: HashMap<&'static str, VecDeque<Delivery>>,
    leased: HashMap<String, (Stage, JobId, u32)>,
    dead: Vec<(Stage, JobId, String)>,
    next: u64,
}

impl MemoryQueue {
    pub fn dead_letters(&self) -> Vec<(Stage, JobId, String)> {
        lock(&self.state).dead.clone()
    }

    /// Every waiting job id of `stage`, in order.
    pub fn waiting(&self, stage: Stage) -> Vec<JobId> {
        lock(&self.state)
            .ready
            .get(stage.as_str())
            .map(|q| q.iter().map(|d| d.job_id).collect())
            .unwrap_or_default()
    }

    fn push(&self, stage: Stage, job_id: JobId, attempt: u32, delay: Duration) {
        let mut st = lock(&self.state);
        st.ready
            .entry(stage.as_str())
            .or_default()
            .push_back(Delivery {
                job_id,
                attempt,
                visible_at: tokio::time::Instant::now() + delay,
            });
        drop(st);
        self.notify.notify_waiters();
    }

    fn take(&self, stage: Stage) -> Option<Lease> {
        let mut st = lock(&self.state);
        let now = tokio::time::Instant::now();
        let q = st.ready.entry(stage.as_str()).or_default();
        let pos = q.iter().position(|d| d.visible_at <= now)?;
        let d = q.remove(pos)?;
        st.next += 1;
        let receipt = format!("m{}", st.next);
        st.leased
            .insert(receipt.clone(), (stage, d.job_id, d.attempt));
        Some(Lease {
            stage,
            job_id: d.job_id,
            attempt: d.attempt,
            receipt,
        })
    }

    fn settle(&self, lease: &Lease) -> Option<(Stage, JobId, u32)> {
        lock(&self.state).leased.remove(&lease.receipt)
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn enqueue(&self, stage: Stage, job_id: JobId) -> Result<(), QueueError> {
        self.push(stage, job_id, 1, Duration::ZERO);
        Ok(())
    }

    async fn claim(&self, stage: Stage, wait: Duration) -> Result<Option<Lease>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            if let Some(lease) = self.take(stage) {
                return Ok(Some(lease));
            }
            let step = (deadline - tokio::time::Instant::now()).min(Duration::from_millis(20));
            if step.is_zero() {
                return Ok(None);
            }
            let _ = tokio::time::timeout(step, notified).await;
        }
    }

    async fn ack(&self, lease: &Lease) -> Result<(), QueueError> {
        self.settle(lease);
        Ok(())
    }

    async fn retry_later(&self, lease: &Lease, delay: Duration) -> Result<(), QueueError> {
        if self.settle(lease).is_some() {
            self.push(lease.stage, lease.job_id, lease.attempt + 1, delay);
        }
        Ok(())
    }

    async fn release(&self, lease: &Lease, after: Duration) -> Result<(), QueueError> {
        if self.settle(lease).is_some() {
            self.push(lease.stage, lease.job_id, lease.attempt, after);
        }
        Ok(())
    }

    async fn renew(&self, lease: &Lease) -> Result<(), QueueError> {
        if lock(&self.state).leased.contains_key(&lease.receipt) {
            Ok(())
        } else {
            Err(QueueError::LeaseLost)
        }
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<(), QueueError> {
        if self.settle(lease).is_some() {
            lock(&self.state)
                .dead
                .push((lease.stage, lease.job_id, reason.to_owned()));
        }
        Ok(())
    }

    async fn holds(&self, stage: Stage, job_id: JobId) -> Result<bool, QueueError> {
        let st = lock(&self.state);
        let waiting = st
            .ready
            .get(stage.as_str())
            .is_some_and(|q| q.iter().any(|d| d.job_id == job_id));
        let held = st
            .leased
            .values()
            .any(|(s, j, _)| *s == stage && *j == job_id);
        Ok(waiting || held)
    }

    async fn stats(&self, stage: Stage) -> Result<QueueStats, QueueError> {
        let st = lock(&self.state);
        Ok(QueueStats::in_memory(
            tokio::time::Instant::now(),
            st.ready
                .get(stage.as_str())
                .into_iter()
                .flatten()
                .map(|d| d.visible_at),
            st.leased.values().filter(|l| l.0 == stage).count() as u64,
        ))
    }

    async fn dead_letter_count(&self) -> Result<u64, QueueError> {
        Ok(lock(&self.state).dead.len() as u64)
    }

    async fn depth(&self, stage: Stage) -> Result<u64, QueueError> {
        Ok(lock(&self.state)
            .ready
            .get(stage.as_str())
            .map_or(0, |q| q.len() as u64))
    }
}
