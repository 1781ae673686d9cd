//! A job's own speed limits: bytes per second down and up, each unset (no limit of its
//! own: the engine's global limits still apply) or at least [`SpeedLimits::MIN_BPS`].

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SpeedLimits {
    pub download_bps: Option<NonZeroU32>,
    pub upload_bps: Option<NonZeroU32>,
}

/// A change to a job's limits: each `Some` replaces that direction (`Some(None)` lifts it),
/// each `None` leaves it as it is, so two clients changing one direction each do not undo
/// each other's change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpeedLimitsChange {
    pub download_bps: Option<Option<NonZeroU32>>,
    pub upload_bps: Option<Option<NonZeroU32>>,
}

impl SpeedLimitsChange {
    /// The limits after this change.
    pub fn applied_to(self, limits: SpeedLimits) -> SpeedLimits {
        SpeedLimits {
            download_bps: self.download_bps.unwrap_or(limits.download_bps),
            upload_bps: self.upload_bps.unwrap_or(limits.upload_bps),
        }
    }
}

/// Both directions replaced.
impl From<SpeedLimits> for SpeedLimitsChange {
    fn from(l: SpeedLimits) -> Self {
        Self {
            download_bps: Some(l.download_bps),
            upload_bps: Some(l.upload_bps),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpeedLimitError {
    #[error(
        "{which} is {bps} bytes per second; a limit is at least {min} (one 16 KiB block per second)",
        min = SpeedLimits::MIN_BPS
    )]
    TooLow { which: &'static str, bps: u64 },
    #[error("{which} is {bps} bytes per second; a limit is at most {max}", max = u32::MAX)]
    TooHigh { which: &'static str, bps: u64 },
    /// URL fetches are not limited (only the upload of a packaged URL job that seeds is).
    #[error("download_limit applies to torrents; a URL is fetched at full speed")]
    DownloadOfUrl,
}

impl SpeedLimits {
    /// The smallest limit: BitTorrent moves data in 16 KiB blocks, and a limit below one
    /// block per second could never let one through.
    pub const MIN_BPS: u32 = 16 * 1024;

    pub const NONE: Self = Self {
        download_bps: None,
        upload_bps: None,
    };

    /// Checks limits given in bytes per second (`None`: no limit).
    ///
    /// # Errors
    /// A limit below [`Self::MIN_BPS`] or above `u32::MAX` (4 GiB/s).
    pub fn new(
        download_bps: Option<u64>,
        upload_bps: Option<u64>,
    ) -> Result<Self, SpeedLimitError> {
        Ok(Self {
            download_bps: Self::check("download_limit", download_bps)?,
            upload_bps: Self::check("upload_limit", upload_bps)?,
        })
    }

    fn check(which: &'static str, bps: Option<u64>) -> Result<Option<NonZeroU32>, SpeedLimitError> {
        let Some(bps) = bps else { return Ok(None) };
        if bps < u64::from(Self::MIN_BPS) {
            return Err(SpeedLimitError::TooLow { which, bps });
        }
        let n = u32::try_from(bps).map_err(|_| SpeedLimitError::TooHigh { which, bps })?;
        Ok(NonZeroU32::new(n))
    }

    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }

    /// The limits of a torrent several jobs share: none of its own if any of them has none,
    /// else the highest (one job's limit must not slow another's download).
    pub fn loosest<'a>(all: impl IntoIterator<Item = &'a SpeedLimits>) -> SpeedLimits {
        let mut out: Option<SpeedLimits> = None;
        for l in all {
            out = Some(match out {
                None => *l,
                Some(o) => SpeedLimits {
                    download_bps: o.download_bps.zip(l.download_bps).map(|(a, b)| a.max(b)),
                    upload_bps: o.upload_bps.zip(l.upload_bps).map(|(a, b)| a.max(b)),
                },
            });
        }
        out.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nz(n: u32) -> Option<NonZeroU32> {
        NonZeroU32::new(n)
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(SpeedLimits::new(None, None), Ok(SpeedLimits::NONE));
        let l = SpeedLimits::new(Some(16384), Some(u64::from(u32::MAX))).unwrap();
        assert_eq!(l.download_bps, nz(16384));
        assert_eq!(l.upload_bps, nz(u32::MAX));
        assert!(matches!(
            SpeedLimits::new(Some(0), None),
            Err(SpeedLimitError::TooLow {
                which: "download_limit",
                ..
            })
        ));
        assert!(matches!(
            SpeedLimits::new(None, Some(16383)),
            Err(SpeedLimitError::TooLow {
                which: "upload_limit",
                ..
            })
        ));
        assert!(matches!(
            SpeedLimits::new(Some(1 << 32), None),
            Err(SpeedLimitError::TooHigh { .. })
        ));
    }

    #[test]
    fn a_shared_torrent_takes_the_loosest_limits() {
        let a = SpeedLimits {
            download_bps: nz(100_000),
            upload_bps: nz(50_000),
        };
        let b = SpeedLimits {
            download_bps: nz(200_000),
            upload_bps: None,
        };
        assert_eq!(SpeedLimits::loosest([&a]), a);
        assert_eq!(
            SpeedLimits::loosest([&a, &b]),
            SpeedLimits {
                download_bps: nz(200_000),
                upload_bps: None
            }
        );
        assert_eq!(SpeedLimits::loosest([]), SpeedLimits::NONE);
    }

    proptest! {
        #[test]
        fn the_loosest_is_never_tighter_than_any(
            v in proptest::collection::vec((proptest::option::of(1u32..), proptest::option::of(1u32..)), 1..6)
        ) {
            let all: Vec<SpeedLimits> = v.iter()
                .map(|(d, u)| SpeedLimits { download_bps: d.and_then(NonZeroU32::new), upload_bps: u.and_then(NonZeroU32::new) })
                .collect();
            let l = SpeedLimits::loosest(&all);
            for one in &all {
                match (l.download_bps, one.download_bps) {
                    (Some(a), Some(b)) => prop_assert!(a >= b),
                    (Some(_), None) => prop_assert!(false, "a job without a limit was limited"),
                    _ => {}
                }
                match (l.upload_bps, one.upload_bps) {
                    (Some(a), Some(b)) => prop_assert!(a >= b),
                    (Some(_), None) => prop_assert!(false, "a job without a limit was limited"),
                    _ => {}
                }
            }
        }
    }
}
