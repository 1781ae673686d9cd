//! `Range: bytes=…` for file downloads (RFC 9110 §14): one range is served as 206; several
//! ranges are answered with the whole file (allowed, and what most file servers do).

/// What to send for a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeReply {
    Full,
    /// Inclusive byte positions.
    Partial {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

pub fn resolve(header: Option<&str>, size: u64) -> RangeReply {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeReply::Full;
    };
    if spec.contains(',') {
        return RangeReply::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeReply::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    let range = match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(last) {
            Some(0) | None => return RangeReply::Unsatisfiable,
            Some(n) => (size.saturating_sub(n), size.saturating_sub(1)),
        },
        (false, true) => match parse(first) {
            Some(start) => (start, size.saturating_sub(1)),
            None => return RangeReply::Full,
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
            (Some(_), Some(_)) => return RangeReply::Full,
            _ => return RangeReply::Full,
        },
        (true, true) => return RangeReply::Full,
    };
    if size == 0 || range.0 >= size {
        return RangeReply::Unsatisfiable;
    }
    RangeReply::Partial {
        start: range.0,
        end: range.1,
    }
}

#[cfg(test)]
mod tests {
    use super::RangeReply::*;
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(resolve(None, 100), Full);
        assert_eq!(
            resolve(Some("bytes=0-9"), 100),
            Partial { start: 0, end: 9 }
        );
        assert_eq!(
            resolve(Some("bytes=90-"), 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            resolve(Some("bytes=-10"), 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            resolve(Some("bytes=-500"), 100),
            Partial { start: 0, end: 99 }
        );
        assert_eq!(
            resolve(Some("bytes=50-5000"), 100),
            Partial { start: 50, end: 99 }
        );
    }

    #[test]
    fn odd_or_unsatisfiable_ranges() {
        assert_eq!(resolve(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(resolve(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(resolve(Some("bytes=0-0"), 0), Unsatisfiable);
        assert_eq!(resolve(Some("bytes=0-1,5-6"), 100), Full);
        assert_eq!(resolve(Some("items=0-1"), 100), Full);
        assert_eq!(resolve(Some("bytes=9-1"), 100), Full);
        assert_eq!(resolve(Some("bytes=x-y"), 100), Full);
        assert_eq!(resolve(Some("bytes=99999999999999999999999-"), 100), Full);
    }

    /// Range headers as clients (and attackers) write them: digits, dashes, commas, spaces
    /// and the odd other byte, after `bytes=` or not.
    fn range_header() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "\\PC{0,60}",
            "(bytes|BYTES|items)?=?[0-9 ,+-]{0,40}",
            (any::<u64>(), any::<u64>()).prop_map(|(a, b)| format!("bytes={a}-{b}")),
            any::<u64>().prop_map(|n| format!("bytes=-{n}")),
            any::<u64>().prop_map(|n| format!("bytes={n}-")),
        ]
    }

    proptest::proptest! {
        // 256 cases, or `PROPTEST_CASES` (`bench/fuzz.sh` runs 10 million).
        /// Whatever the header, a partial answer lies inside the file: never a panic, an
        /// overflow or a range past its end.
        #[test]
        fn every_header_answers_inside_the_file(
            header in range_header(),
            size in proptest::prop_oneof![0..4096u64, proptest::prelude::any::<u64>()],
        ) {
            if let Partial { start, end } = resolve(Some(&header), size) {
                proptest::prop_assert!(start <= end && end < size, "{header:?} {size}: {start}-{end}");
            }
        }
    }
}
