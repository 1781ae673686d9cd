//! Gauges of what Ferry holds, sampled when `/metrics` is scraped (at most once a
//! second, coalesced): jobs by status (one query), each stage queue's backlog, its oldest
//! message's wait and the leases held, dead letters, the workers seen alive, and the free
//! space of the disks Ferry writes to.
//!
//! Every API process reports the same shared state: aggregate them with `max`, not `sum`.

use std::path::PathBuf;
use std::time::Duration;

use ferry_application::HealthCheck;
use ferry_application::ports::Stage;
use ferry_domain::JobStatus;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Gauge;

/// A worker not seen for this long is not counted as alive.
const ALIVE_WITHIN: Duration = Duration::from_secs(60);

/// A disk Ferry writes to, named for the `volume` label.
#[derive(Debug, Clone)]
pub struct Volume {
    pub name: &'static str,
    pub path: PathBuf,
}

struct Gauges {
    jobs: Gauge<u64>,
    waiting: Gauge<u64>,
    oldest: Gauge<f64>,
    held: Gauge<u64>,
    dead: Gauge<u64>,
    workers: Gauge<u64>,
    free: Gauge<u64>,
    size: Gauge<u64>,
}

impl Gauges {
    fn new() -> Self {
        let m = ferry_observability::meter();
        Self {
            jobs: m
                .u64_gauge("ferry_jobs")
                .with_description("Jobs by status, every user together")
                .build(),
            waiting: m
                .u64_gauge("ferry_queue_waiting")
                .with_description("Messages ready for a worker and not claimed, per stage")
                .build(),
            oldest: m
                .f64_gauge("ferry_queue_oldest_waiting")
                .with_unit("s")
                .with_description(
                    "How long the oldest unclaimed message of a stage has waited (0: none waits)",
                )
                .build(),
            held: m
                .u64_gauge("ferry_queue_leases")
                .with_description("Messages claimed by a worker and not settled, per stage")
                .build(),
            dead: m
                .u64_gauge("ferry_queue_dead_letters")
                .with_description("Messages parked after their retries ran out, all stages")
                .build(),
            workers: m
                .u64_gauge("ferry_workers_alive")
                .with_description(
                    "Worker processes seen asking for work of a stage in the last minute",
                )
                .build(),
            free: m
                .u64_gauge("ferry_disk_free")
                .with_unit("By")
                .with_description("Free space for Ferry on the disk of a volume (staging, storage)")
                .build(),
            size: m
                .u64_gauge("ferry_disk_size")
                .with_unit("By")
                .with_description("Size of the disk of a volume (staging, storage)")
                .build(),
        }
    }

    async fn sample(&self, health: &HealthCheck, volumes: &[Volume]) {
        if let Some(counts) = health.job_counts().await {
            for status in JobStatus::ALL {
                let n = counts
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map_or(0, |(_, n)| *n);
                self.jobs
                    .record(n, &[KeyValue::new("status", status.as_str())]);
            }
        }
        for (stage, stats) in health.queue_stats().await {
            let Some(stats) = stats else { continue };
            let label = [KeyValue::new("stage", stage.as_str())];
            self.waiting.record(stats.waiting, &label);
            self.held.record(stats.held, &label);
            self.oldest.record(
                stats.oldest_waiting.map_or(0.0, |d| d.as_secs_f64()),
                &label,
            );
        }
        if let Some(dead) = health.dead_letters().await {
            self.dead.record(dead, &[]);
        }
        if let Some(workers) = health.workers().await {
            for stage in Stage::ALL {
                let alive = workers
                    .iter()
                    .filter(|w| w.stages.contains(&stage) && w.idle < ALIVE_WITHIN)
                    .count() as u64;
                self.workers
                    .record(alive, &[KeyValue::new("stage", stage.as_str())]);
            }
        }
        for volume in volumes {
            match disk(&volume.path) {
                Ok((free, size)) => {
                    let label = [KeyValue::new("volume", volume.name)];
                    self.free.record(free, &label);
                    self.size.record(size, &label);
                }
                Err(e) => {
                    tracing::debug!(volume = volume.name, error = %e, "could not read the disk's free space");
                }
            }
        }
    }
}

/// Free bytes (for an unprivileged writer) and size of the file system holding `path`, or
/// of its nearest existing parent.
fn disk(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    let mut at = path;
    while !at.exists() {
        at = at.parent().unwrap_or(std::path::Path::new("/"));
    }
    let st = rustix::fs::statvfs(at)?;
    Ok((
        st.f_bavail.saturating_mul(st.f_frsize),
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
}

/// Samples on demand, at most once a second, one sampling at a time.
pub struct Sampler {
    gauges: Gauges,
    volumes: Vec<Volume>,
    last: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

/// Samples closer together than this are answered from the last one.
const FRESH: Duration = Duration::from_secs(1);
/// A sample that takes longer (a database or queue not answering) is abandoned: the
/// gauges keep their last values and the scrape is not held up.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(3);

impl Sampler {
    pub fn new(volumes: Vec<Volume>) -> Self {
        Self {
            gauges: Gauges::new(),
            volumes,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Brings the gauges up to date.
    pub async fn sample(&self, health: &HealthCheck) {
        let mut last = self.last.lock().await;
        if last.is_some_and(|at| at.elapsed() < FRESH) {
            return;
        }
        if tokio::time::timeout(SAMPLE_TIMEOUT, self.gauges.sample(health, &self.volumes))
            .await
            .is_err()
        {
            tracing::warn!("sampling the gauges took too long; they keep their last values");
        }
        *last = Some(tokio::time::Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::disk;

    #[test]
    fn a_disk_is_measured_from_its_nearest_existing_folder() {
        let dir = std::env::temp_dir();
        let (free, size) = disk(&dir.join("not/yet/made")).unwrap_or((0, 0));
        assert!(size > 0 && free <= size, "{free} of {size}");
    }
}
