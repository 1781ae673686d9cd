//! `.torrent` parsing against well-formed and hostile inputs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ferry_application::ports::EngineError;
use ferry_torrent::inspect;
use ferry_torrent::testing::torrent;

#[test]
fn lists_files_under_the_torrent_name() {
    let bytes = torrent("album", &[(&["cd1", "a.flac"], 20000), (&["b.txt"], 5)]);
    let meta = inspect(&bytes).unwrap();
    assert_eq!(meta.name, "album");
    assert_eq!(meta.total_bytes, 20005);
    let paths: Vec<_> = meta
        .files
        .iter()
        .map(|f| (f.index, f.path.as_str(), f.size))
        .collect();
    assert_eq!(
        paths,
        vec![(0, "album/cd1/a.flac", 20000), (1, "album/b.txt", 5)]
    );
    assert_eq!(
        meta.trackers,
        vec!["http://127.0.0.1:1/announce".to_owned()]
    );
    assert_eq!(meta.info_hash.to_hex().len(), 40);
    assert_eq!(meta.metainfo, bytes);
}

#[test]
fn refuses_bytes_that_are_not_a_torrent() {
    for bad in [
        &b""[..],
        b"not bencode",
        b"d4:infoi1ee",
        b"li1ei2ee",
        &[0xff; 64],
    ] {
        assert!(
            matches!(inspect(bad), Err(EngineError::InvalidTorrent(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn refuses_path_traversal_and_separators() {
    for path in [
        &["..", "etc", "passwd"][..],
        &["a", "..", "b"],
        &["/etc/passwd"],
        &["a\\..\\b"],
    ] {
        let bytes = torrent("t", &[(path, 10)]);
        let r = inspect(&bytes);
        assert!(
            matches!(
                r,
                Err(EngineError::InvalidTorrent(_)) | Err(EngineError::UnsafePath(_))
            ),
            "{path:?}: {r:?}"
        );
    }
    let r = inspect(&torrent("..", &[(&["a"], 10)]));
    assert!(r.is_err(), "a torrent named '..' must not escape: {r:?}");
}

#[test]
fn refuses_device_names_and_control_characters() {
    for path in [
        &["CON"][..],
        &["dir", "aux.txt"],
        &["line\nbreak"],
        &["C:", "x"],
    ] {
        let r = inspect(&torrent("t", &[(path, 10)]));
        assert!(
            matches!(r, Err(EngineError::UnsafePath(_))),
            "{path:?}: {r:?}"
        );
    }
}

#[test]
fn refuses_absurd_sizes_and_oversized_input() {
    // Lengths that overflow, or that do not match the piece hashes, are refused.
    let r = inspect(&torrent("t", &[(&["a"], i64::MAX), (&["b"], i64::MAX)]));
    assert!(matches!(r, Err(EngineError::InvalidTorrent(_))), "{r:?}");
    let r = inspect(&torrent("t", &[(&["a"], -5)]));
    assert!(matches!(r, Err(EngineError::InvalidTorrent(_))), "{r:?}");
    let huge = vec![b'a'; ferry_torrent::MAX_METAINFO_BYTES + 1];
    assert!(matches!(
        inspect(&huge),
        Err(EngineError::InvalidTorrent(_))
    ));
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // 256 cases, or `PROPTEST_CASES` (`bench/fuzz.sh` runs 10 million).
        #[test]
        fn on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = inspect(&bytes);
        }

        #[test]
        fn on_mutated_torrents(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
            let mut bytes = torrent("album", &[(&["cd1", "a.flac"], 20000), (&["b.txt"], 5)]);
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let _ = inspect(&bytes);
        }

        #[test]
        fn on_arbitrary_lengths(a in any::<i64>(), b in any::<i64>(), name in "\\PC{0,20}") {
            let _ = inspect(&torrent(&name, &[(&["a"], a), (&["b"], b)]));
        }
    }
}
