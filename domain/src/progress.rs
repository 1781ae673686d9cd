//! How far a job's current stage has come.

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
}
