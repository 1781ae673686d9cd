//! Health of the components a Ferry process depends on.

use std::sync::Arc;

use crate::ports::{JobQueue, JobRepository, ObjectStore, Stage};

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
}
