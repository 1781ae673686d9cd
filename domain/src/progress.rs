//! How far a job's current stage has come.

use crate::JobStatus;

/// A snapshot of a stage's progress. Rates are bytes per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub download_rate: u64,
    pub upload_rate: u64,
    pub uploaded_bytes: u64,
    pub peers: u32,
    /// Seconds left at the current rate; `None` while nothing moves.
    pub eta_seconds: Option<u64>,
}

impl Progress {
    /// A snapshot whose ETA is derived from the remaining bytes and `rate`.
    pub fn measured(bytes_done: u64, bytes_total: u64, rate: u64) -> Self {
        let remaining = bytes_total.saturating_sub(bytes_done);
        let eta_seconds = match (remaining, rate) {
            (0, _) => Some(0),
            (_, 0) => None,
            (r, rate) => Some(r.div_ceil(rate)),
        };
        Self {
            bytes_done,
            bytes_total,
            download_rate: rate,
            eta_seconds,
            ..Self::default()
        }
    }

    /// Done fraction in `0.0..=1.0` (0 while the total is unknown).
    pub fn fraction(&self) -> f64 {
        if self.bytes_total == 0 {
            0.0
        } else {
            (self.bytes_done as f64 / self.bytes_total as f64).min(1.0)
        }
    }

    /// Done fraction of a job in `status`: as [`Progress::fraction`], except that a completed
    /// or seeding job with nothing to transfer (it chose only empty files) is done, not at 0.
    pub fn fraction_in(&self, status: JobStatus) -> f64 {
        let finished = matches!(status, JobStatus::Completed | JobStatus::Seeding);
        if finished && self.bytes_total == 0 {
            1.0
        } else {
            self.fraction()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_follows_the_rate() {
        assert_eq!(Progress::measured(0, 100, 10).eta_seconds, Some(10));
        assert_eq!(Progress::measured(95, 100, 10).eta_seconds, Some(1));
        assert_eq!(Progress::measured(50, 100, 0).eta_seconds, None);
        assert_eq!(Progress::measured(100, 100, 0).eta_seconds, Some(0));
        assert_eq!(Progress::measured(5, 0, 0).fraction(), 0.0);
        assert_eq!(Progress::measured(50, 100, 0).fraction(), 0.5);
    }

    #[test]
    fn a_finished_job_of_empty_files_is_done() {
        let empty = Progress::measured(0, 0, 0);
        assert_eq!(empty.fraction_in(JobStatus::Completed), 1.0);
        assert_eq!(empty.fraction_in(JobStatus::Seeding), 1.0);
        // Unknown totals (a magnet before its metadata) and unfinished jobs are not.
        assert_eq!(Progress::default().fraction_in(JobStatus::Resolving), 0.0);
        assert_eq!(empty.fraction_in(JobStatus::Downloading), 0.0);
        assert_eq!(
            Progress::measured(50, 100, 0).fraction_in(JobStatus::Completed),
            0.5
        );
    }
}
