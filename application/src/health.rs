//! Health of the components a Ferry process depends on.

use std::sync::Arc;

use std::time::Duration;

use crate::ports::{JobQueue, JobRepository, ObjectStore, QueueStats, Stage};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentHealth {
    pub name: &'static str,
    pub ok: bool,
    /// What went wrong; never a secret (adapters' error texts carry no credentials).
    pub detail: Option<String>,
}

pub struct HealthCheck {
    pub repo: Arc<dyn JobRepository>,
    pub queue: Arc<dyn JobQueue>,
    pub store: Arc<dyn ObjectStore>,
}

impl HealthCheck {
    pub async fn check(&self) -> Vec<ComponentHealth> {
        let component = |name, result: Result<(), String>| ComponentHealth {
            name,
            ok: result.is_ok(),
            detail: result.err(),
        };
        let (db, queue, store) = tokio::join!(
            self.repo.ping(),
            self.queue.depth(Stage::Download),
            self.store.check()
        );
        vec![
            component("database", db.map_err(|e| e.to_string())),
            component("queue", queue.map(|_| ()).map_err(|e| e.to_string())),
            component("storage", store.map_err(|e| e.to_string())),
        ]
    }

    /// Messages waiting in each stage's queue (`None`: the queue did not answer).
    pub async fn queue_depths(&self) -> Vec<(Stage, Option<u64>)> {
        let mut out = Vec::new();
        for stage in Stage::ALL {
            out.push((stage, self.queue.depth(stage).await.ok()));
        }
        out
    }

    /// Jobs per status, every owner together (`None`: the database did not answer).
    pub async fn job_counts(&self) -> Option<Vec<(ferry_domain::JobStatus, u64)>> {
        self.repo.count_by_status().await.ok()
    }

    /// Each stage queue's contents (`None` for a stage whose queue did not answer).
    pub async fn queue_stats(&self) -> Vec<(Stage, Option<QueueStats>)> {
        let mut out = Vec::new();
        for stage in Stage::ALL {
            out.push((stage, self.queue.stats(stage).await.ok()));
        }
        out
    }

    /// Dead letters, all stages (`None`: the queue did not answer).
    pub async fn dead_letters(&self) -> Option<u64> {
        self.queue.dead_letter_count().await.ok()
    }

    /// The workers the queue has seen, each with the stages it claims, since it last asked
    /// (the least idle of its stages) and the messages it holds; most recently seen first.
    /// `None`: the queue did not answer.
    pub async fn workers(&self) -> Option<Vec<Worker>> {
        let mut workers: Vec<Worker> = Vec::new();
        for stage in Stage::ALL {
            for seen in self.queue.workers(stage).await.ok()? {
                match workers.iter_mut().find(|w| w.name == seen.name) {
                    Some(w) => {
                        w.stages.push(stage);
                        w.idle = w.idle.min(seen.idle);
                        w.pending += seen.pending;
                    }
                    None => workers.push(Worker {
                        name: seen.name,
                        stages: vec![stage],
                        idle: seen.idle,
                        pending: seen.pending,
                    }),
                }
            }
        }
        workers.sort_by(|a, b| a.idle.cmp(&b.idle).then_with(|| a.name.cmp(&b.name)));
        Some(workers)
    }
}

/// A worker process as the queue saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    pub name: String,
    pub stages: Vec<Stage>,
    pub idle: Duration,
    pub pending: u64,
}
