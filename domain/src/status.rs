//! A job's status and the one table that decides which status may follow which.
//!
//! ```text
//! queued ──> resolving ──> downloading <──> paused     (added paused: a job starts
//!                               │                      paused; a magnet without metadata
//!                               │                      resumes as queued)
//!                               ▼
//!                           uploading ──> completed ──(optional)──> seeding ──> completed
//! any unfinished but seeding ──> cancelled    any unfinished but seeding ──(retries exhausted)──> failed
//! ```
//! Two user actions reopen a finished job, and nothing else does: *retry* moves `failed`
//! back to `queued`, and seeding moves `completed` to `seeding` and back. A seeding job has
//! delivered its files, so however seeding stops (its limit, a `DELETE`, a failure) it
//! becomes `completed` again and its files stay reachable.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Resolving,
    Downloading,
    Paused,
    Uploading,
    Completed,
    Seeding,
    Cancelled,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} job cannot become {to}")]
pub struct IllegalTransition {
    pub from: JobStatus,
    pub to: JobStatus,
}

impl JobStatus {
    pub const ALL: [JobStatus; 9] = [
        Self::Queued,
        Self::Resolving,
        Self::Downloading,
        Self::Paused,
        Self::Uploading,
        Self::Completed,
        Self::Seeding,
        Self::Cancelled,
        Self::Failed,
    ];

    /// Finished: no worker has anything left to do for the job.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::Failed)
    }

    /// Whether `self → to` is allowed.
    pub fn can_become(self, to: JobStatus) -> bool {
        use JobStatus::*;
        match (self, to) {
            (Queued, Resolving) => true,
            (Resolving, Downloading) => true,
            (Downloading, Paused) | (Paused, Downloading) => true,
            // A job waiting for a worker can be paused: its message, when a worker takes it,
            // finds it paused and is dropped (so a resumed torrent job, which waits in the
            // queue, can be paused again).
            (Queued, Paused) => true,
            // A resumed torrent job joins the queue again (a magnet added paused, with no
            // metadata yet, resolves it first); a URL job goes back to downloading.
            (Paused, Queued) => true,
            (Downloading, Uploading) => true,
            (Uploading, Completed) => true,
            (Completed, Seeding) | (Seeding, Completed) => true,
            // Stopping a seed, for whatever reason, never takes the delivered files away.
            (Seeding, _) => false,
            // The user's retry of a failed job.
            (Failed, Queued) => true,
            (from, Cancelled | Failed) => !from.is_terminal(),
            _ => false,
        }
    }

    /// Checks `self → to` against the table.
    ///
    /// # Errors
    /// [`IllegalTransition`] when the table forbids it.
    pub fn check(self, to: JobStatus) -> Result<JobStatus, IllegalTransition> {
        if self.can_become(to) {
            Ok(to)
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Resolving => "resolving",
            Self::Downloading => "downloading",
            Self::Paused => "paused",
            Self::Uploading => "uploading",
            Self::Completed => "completed",
            Self::Seeding => "seeding",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_happy_path_is_allowed() {
        let path = [
            Queued,
            Resolving,
            Downloading,
            Paused,
            Downloading,
            Uploading,
            Completed,
        ];
        for pair in path.windows(2) {
            assert!(pair[0].can_become(pair[1]), "{} -> {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn illegal_moves_are_named() {
        assert_eq!(
            Completed.check(Paused),
            Err(IllegalTransition {
                from: Completed,
                to: Paused
            })
        );
        assert!(Queued.check(Downloading).is_err());
        assert!(
            Queued.check(Paused).is_ok(),
            "a job waiting in the queue can be paused"
        );
        assert!(Cancelled.check(Queued).is_err());
        assert!(Queued.check(Queued).is_err());
    }

    #[test]
    fn every_status_round_trips_through_text() {
        for st in JobStatus::ALL {
            assert_eq!(st.as_str().parse::<JobStatus>().unwrap(), st);
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{st}\""));
        }
        assert!("nope".parse::<JobStatus>().is_err());
    }

    fn arb_status() -> impl Strategy<Value = JobStatus> {
        proptest::sample::select(JobStatus::ALL.to_vec())
    }

    proptest! {
        /// Apply random requested moves, keeping only the allowed ones: a job that reached a
        /// terminal status only ever leaves it by the two documented user actions, and a
        /// cancelled job never moves again.
        #[test]
        fn no_sequence_leaves_a_terminal_state(moves in proptest::collection::vec(arb_status(), 0..64)) {
            let mut current = Queued;
            for to in moves {
                let Ok(next) = current.check(to) else { continue };
                match current {
                    Cancelled => prop_assert!(false, "cancelled moved to {next}"),
                    Failed => prop_assert_eq!(next, Queued),
                    Completed => prop_assert_eq!(next, Seeding),
                    Seeding => prop_assert_eq!(next, Completed),
                    _ => {}
                }
                current = next;
            }
        }

        #[test]
        fn every_unfinished_status_but_seeding_can_be_cancelled_or_failed(st in arb_status()) {
            let stoppable = !st.is_terminal() && st != Seeding;
            prop_assert_eq!(st.can_become(Cancelled), stoppable);
            prop_assert_eq!(st.can_become(Failed), stoppable);
        }

        /// A seeding job's files are delivered: whatever is asked of it, it can only become
        /// completed again, never cancelled or failed.
        #[test]
        fn a_seeding_job_only_ever_completes(to in arb_status()) {
            prop_assert_eq!(Seeding.can_become(to), to == Completed);
        }
    }
}
