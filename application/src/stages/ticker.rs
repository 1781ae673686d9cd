//! The beat every running stage keeps: progress published each tick it changed, snapshotted
//! now and then, and the job's status read so a pause or cancel is noticed within a tick.

use std::time::Duration;

use ferry_domain::{Job, JobId, JobStatus, OwnerId, Progress, SpeedLimits};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::lifecycle::Lifecycle;
use crate::ports::{EventKind, JobEvent, RepoError};

/// What a running stage's tick found the job's status to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observed {
    /// Still in the status the stage runs in (or it could not be read, which is logged: the
    /// stage runs on and reads it again at the next tick).
    Running,
    /// Moved by someone else: a pause, a cancel, a `DELETE`.
    Moved(JobStatus),
    /// The job no longer exists.
    Gone,
}

/// The beat every running stage keeps: each tick it publishes the job's progress (unchanged
/// progress only every [`REPUBLISH`]), writes a
/// snapshot of it to the repository every `snapshot_every` (if set), and reads the job's
/// status, so a pause or cancel takes effect within one tick. Progress that cannot be
/// written is logged and not fatal: the database keeps the last snapshot, and the next one
/// catches up.
pub(crate) struct Ticker<'a> {
    lifecycle: &'a Lifecycle,
    job: JobId,
    owner: OwnerId,
    /// The status the stage runs the job in, carried by its progress events.
    running: JobStatus,
    interval: Interval,
    snapshot_every: Option<Duration>,
    last_snapshot: Instant,
    progress: Progress,
    /// The progress last published, and when: the same progress again is published only
    /// every [`REPUBLISH`] (an idle seeding job would otherwise send an event every tick).
    published: Option<(Progress, Instant)>,
    /// The job's speed limits as last read (the user may change them while it runs).
    limits: SpeedLimits,
    /// Which of publish, snapshot and status read are failing now: each outage is logged
    /// at warn once (then at debug each tick) and its end at info.
    failing: [std::sync::atomic::AtomicBool; 3],
}

/// How often unchanged progress is published again (watchers that joined late have the
/// job's snapshot; this only keeps `at` fresh).
const REPUBLISH: Duration = Duration::from_secs(10);

const PUBLISH: usize = 0;
const SNAPSHOT: usize = 1;
const STATUS: usize = 2;

impl<'a> Ticker<'a> {
    /// A ticker for `job`, which the stage runs in `running`, starting from the job's stored
    /// progress. Its first tick is at once.
    pub(crate) fn new(
        lifecycle: &'a Lifecycle,
        job: &Job,
        running: JobStatus,
        tick: Duration,
    ) -> Self {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            lifecycle,
            job: job.id,
            owner: job.owner.clone(),
            running,
            interval,
            snapshot_every: None,
            last_snapshot: Instant::now(),
            progress: job.progress,
            published: None,
            limits: job.speed_limits,
            failing: Default::default(),
        }
    }

    /// Logs a failure of `what`: at warn when it starts failing, at debug while it goes on.
    fn failed(&self, what: usize, error: &dyn std::fmt::Display, message: &str) {
        if self.failing[what].swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::debug!(job_id = %self.job, error = %error, "{message}");
        } else {
            tracing::warn!(job_id = %self.job, error = %error, "{message} (logged once until it works again)");
        }
    }

    /// `what` worked: ends an outage, if one was logged.
    fn worked(&self, what: usize) {
        if self.failing[what].swap(false, std::sync::atomic::Ordering::Relaxed) {
            tracing::info!(job_id = %self.job, "progress reporting works again");
        }
    }

    /// Also snapshots the progress to the repository every `every`.
    pub(crate) fn snapshot_every(mut self, every: Duration) -> Self {
        self.snapshot_every = Some(every);
        self
    }

    /// Waits for the next tick.
    pub(crate) async fn tick(&mut self) {
        self.interval.tick().await;
    }

    /// Starts the ticks over: the next one is at once.
    pub(crate) fn restart(&mut self) {
        self.interval.reset_immediately();
    }

    /// The progress last reported (the job's stored progress before any).
    pub(crate) fn progress(&self) -> Progress {
        self.progress
    }

    /// The job's speed limits as last read.
    pub(crate) fn limits(&self) -> SpeedLimits {
        self.limits
    }

    /// One tick's work: report `progress` (`None`: nothing to report this tick), then read
    /// the job's status.
    pub(crate) async fn beat(&mut self, progress: Option<Progress>) -> Observed {
        if let Some(progress) = progress {
            self.report(progress).await;
        }
        self.observe().await
    }

    /// Publishes `progress`, and snapshots it when a snapshot is due.
    pub(crate) async fn report(&mut self, progress: Progress) {
        self.progress = progress;
        let unchanged = self
            .published
            .is_some_and(|(last, at)| last == progress && at.elapsed() < REPUBLISH);
        if !unchanged {
            self.publish(progress).await;
        }
        if self
            .snapshot_every
            .is_some_and(|every| self.last_snapshot.elapsed() >= every)
        {
            self.snapshot().await;
        }
    }

    async fn publish(&mut self, progress: Progress) {
        let event = JobEvent {
            job_id: self.job,
            owner: self.owner.clone(),
            kind: EventKind::Progress,
            status: self.running,
            progress,
            error: None,
            at: self.lifecycle.clock.now(),
        };
        match self.lifecycle.bus.publish(&event).await {
            Ok(_) => {
                self.published = Some((progress, Instant::now()));
                self.worked(PUBLISH);
            }
            Err(e) => self.failed(PUBLISH, &e, "could not publish progress"),
        }
    }

    /// Writes the last progress to the repository now (the stage stops or finishes).
    pub(crate) async fn snapshot(&mut self) {
        self.last_snapshot = Instant::now();
        match self
            .lifecycle
            .repo
            .record_progress(self.job, &self.progress)
            .await
        {
            Ok(()) => self.worked(SNAPSHOT),
            Err(e) => self.failed(SNAPSHOT, &e, "could not store a progress snapshot"),
        }
    }

    /// Reads the job's status (and its speed limits).
    pub(crate) async fn observe(&mut self) -> Observed {
        let read = self.lifecycle.repo.watch(self.job).await;
        if read.is_ok() {
            self.worked(STATUS);
        }
        match read {
            Ok((status, limits)) if status == self.running => {
                self.limits = limits;
                Observed::Running
            }
            Ok((status, _)) => Observed::Moved(status),
            Err(RepoError::NotFound) => Observed::Gone,
            Err(e) => {
                self.failed(STATUS, &e, "could not read the job's status");
                Observed::Running
            }
        }
    }

    /// Ticks until the job's status is no longer the one the stage runs it in.
    pub(crate) async fn until_moved(&mut self) {
        loop {
            self.tick().await;
            if self.observe().await != Observed::Running {
                return;
            }
        }
    }
}
