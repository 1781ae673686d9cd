//! A swarm to download from: random files, their .torrent, an opentracker that knows it and
//! an aria2c seeder that has announced the whole of it.

use std::path::{Path, PathBuf};

use super::*;

/// A payload, its torrent, a tracker and a seeder, in a scratch folder of their own.
pub struct Swarm {
    _dir: Option<tempfile::TempDir>,
    /// The test's folder (the seeder's content is in `root/seed`).
    pub root: PathBuf,
    pub payload: Payload,
    pub torrent: Torrent,
    pub tracker: Tracker,
    pub seeder: Seeder,
}

impl Swarm {
    /// `name/…` made of `files` (relative path, size), seeded.
    pub fn start(name: &str, files: &[(&str, u64)]) -> Self {
        Self::start_with(name, files, |_| {})
    }

    /// As [`Swarm::start`], with `extra` called on the payload's folder (`seed/name`) before
    /// the torrent is made, to add files of its own (they are in the torrent, not in
    /// `payload.files`).
    pub fn start_with(name: &str, files: &[(&str, u64)], extra: impl FnOnce(&Path)) -> Self {
        Self::start_seeding(name, files, extra, &[])
    }

    /// As [`Swarm::start_with`], the seeder sending at most `limit` per second (aria2c's
    /// notation: `2M` is 2 MiB).
    pub fn start_throttled(
        name: &str,
        files: &[(&str, u64)],
        extra: impl FnOnce(&Path),
        limit: &str,
    ) -> Self {
        let args = [
            format!("--max-upload-limit={limit}"),
            format!("--max-overall-upload-limit={limit}"),
        ];
        Self::start_seeding(name, files, extra, &args)
    }

    fn start_seeding(
        name: &str,
        files: &[(&str, u64)],
        extra: impl FnOnce(&Path),
        seeder_args: &[String],
    ) -> Self {
        init();
        let (dir, root) = test_dir();
        let content = root.join("seed");
        let payload = Payload::create(&content, name, files);
        extra(&content.join(name));
        // The tracker's port must be known before the torrent is made, and the torrent's
        // hash before the tracker starts: make the torrent against a placeholder, start the
        // tracker with its hash (the announce URL is not part of the info-hash), then re-make
        // it.
        let probe =
            payload.make_torrent("http://127.0.0.1:1/announce", &root.join("probe.torrent"));
        let tracker = Tracker::start(&root, &[&probe.info_hash]);
        let torrent =
            payload.make_torrent(&tracker.announce(), &root.join(format!("{name}.torrent")));
        assert_eq!(torrent.info_hash, probe.info_hash);
        let seeder = Seeder::start_with(&root, &content, &[&torrent.path], seeder_args);
        tracker.wait_for_seeders(&torrent.info_hash, 1);
        Self {
            _dir: dir,
            root,
            payload,
            torrent,
            tracker,
            seeder,
        }
    }

    /// The torrent's magnet link, naming the tracker.
    pub fn magnet(&self) -> String {
        self.torrent.magnet(&self.tracker.announce())
    }
}
