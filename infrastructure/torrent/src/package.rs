//! `Packager`: makes a single-file torrent of fetched content, hashing pieces with SHA-1 on
//! every core, as fast as `mktorrent -t <cores>`. Which SHA-1 does the hashing is measured
//! once per process ([`Sha1Path::fastest`]): aws-lc and the `sha1` crate each detect the SHA
//! extensions on their own, and on some CPUs one of them misses them.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferry_application::ports::{EngineError, TorrentPackager};
use ferry_domain::{SafePath, TorrentMetadata};

/// Piece sizes run from 16 KiB to 16 MiB, aiming at about 1500 pieces.
pub fn piece_length_for(size: u64) -> u32 {
    let target = (size / 1500).max(1);
    let pow = target.next_power_of_two().clamp(16 << 10, 16 << 20);
    pow as u32
}

#[derive(Debug, Clone)]
pub struct Packager {
    /// Set the private flag (BEP 27): peers come from the trackers only.
    pub private: bool,
    pub trackers: Vec<String>,
    /// Hashing threads (default: the number of cores).
    pub threads: usize,
    /// Fixed piece length; chosen from the size when `None`.
    pub piece_length: Option<u32>,
}

impl Default for Packager {
    fn default() -> Self {
        Self {
            private: true,
            trackers: Vec::new(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            piece_length: None,
        }
    }
}

fn io(e: std::io::Error) -> EngineError {
    EngineError::Unexpected(e.into())
}

/// A SHA-1 implementation pieces can be hashed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sha1Path {
    /// aws-lc's assembly (SHA extensions, AVX2 or SSSE3, by its own CPU detection).
    AwsLc,
    /// The RustCrypto `sha1` crate (SHA extensions by `cpufeatures`, else portable code).
    RustCrypto,
}

impl Sha1Path {
    pub const ALL: [Self; 2] = [Self::AwsLc, Self::RustCrypto];

    pub fn name(self) -> &'static str {
        match self {
            Self::AwsLc => "aws-lc",
            Self::RustCrypto => "sha1-crate",
        }
    }

    pub fn digest(self, data: &[u8]) -> [u8; 20] {
        match self {
            Self::AwsLc => {
                let d =
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, data);
                let mut out = [0u8; 20];
                out.copy_from_slice(d.as_ref());
                out
            }
            Self::RustCrypto => {
                use sha1::Digest as _;
                sha1::Sha1::digest(data).into()
            }
        }
    }

    /// The faster path on this CPU, measured on first use (a few milliseconds: each path
    /// hashes 256 KiB five times, alternately, and its best round counts).
    pub fn fastest() -> Self {
        static CHOSEN: OnceLock<Sha1Path> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let sample: Vec<u8> = (0..256u32 << 10)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            let mut best = [Duration::MAX; 2];
            for _ in 0..5 {
                for (slot, path) in best.iter_mut().zip(Self::ALL) {
                    let started = Instant::now();
                    std::hint::black_box(path.digest(std::hint::black_box(&sample)));
                    *slot = (*slot).min(started.elapsed());
                }
            }
            let chosen = if best[1] < best[0] {
                Self::RustCrypto
            } else {
                Self::AwsLc
            };
            tracing::debug!(
                sha1 = chosen.name(),
                aws_lc_us = best[0].as_micros(),
                sha1_crate_us = best[1].as_micros(),
                "chose the SHA-1 for packaging"
            );
            chosen
        })
    }
}

/// SHA-1 of every piece of `file`, split across `threads` contiguous ranges.
fn hash_pieces(file: &Path, size: u64, piece: u64, threads: usize) -> std::io::Result<Vec<u8>> {
    let sha1 = Sha1Path::fastest();
    let count = size.div_ceil(piece).max(1);
    let threads = (threads.max(1) as u64).min(count);
    let per = count.div_ceil(threads);
    let results: Vec<std::io::Result<Vec<u8>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (first, last) = (t * per, ((t + 1) * per).min(count));
                scope.spawn(move || -> std::io::Result<Vec<u8>> {
                    let mut f = std::fs::File::open(file)?;
                    f.seek(SeekFrom::Start(first * piece))?;
                    let mut out = Vec::with_capacity(((last - first) * 20) as usize);
                    let mut buf = vec![0u8; piece as usize];
                    for n in first..last {
                        let len = piece.min(size - n * piece) as usize;
                        f.read_exact(&mut buf[..len])?;
                        out.extend_from_slice(&sha1.digest(&buf[..len]));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a hashing thread panicked")))
            })
            .collect()
    });
    let mut pieces = Vec::with_capacity((count * 20) as usize);
    for r in results {
        pieces.extend(r?);
    }
    Ok(pieces)
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend(format!("{}:", b.len()).bytes());
    out.extend_from_slice(b);
}

fn int(out: &mut Vec<u8>, i: u64) {
    out.extend(format!("i{i}e").bytes());
}

/// The bencoded .torrent (dictionary keys in sorted order, as bencode requires).
pub fn encode(
    name: &str,
    size: u64,
    piece: u32,
    pieces: &[u8],
    private: bool,
    trackers: &[String],
) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(b'd');
    if let Some(first) = trackers.first() {
        bytes(&mut out, b"announce");
        bytes(&mut out, first.as_bytes());
        bytes(&mut out, b"announce-list");
        out.push(b'l');
        for t in trackers {
            out.push(b'l');
            bytes(&mut out, t.as_bytes());
            out.push(b'e');
        }
        out.push(b'e');
    }
    bytes(&mut out, b"created by");
    bytes(
        &mut out,
        format!("Ferry {}", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    bytes(&mut out, b"info");
    out.push(b'd');
    bytes(&mut out, b"length");
    int(&mut out, size);
    bytes(&mut out, b"name");
    bytes(&mut out, name.as_bytes());
    bytes(&mut out, b"piece length");
    int(&mut out, u64::from(piece));
    bytes(&mut out, b"pieces");
    bytes(&mut out, pieces);
    if private {
        bytes(&mut out, b"private");
        int(&mut out, 1);
    }
    out.push(b'e');
    out.push(b'e');
    out
}

impl Packager {
    /// Hashes `file` and returns the .torrent bytes (blocking; run off the async runtime).
    ///
    /// # Errors
    /// I/O errors.
    pub fn create(&self, file: &Path, name: &str) -> std::io::Result<Vec<u8>> {
        let size = std::fs::metadata(file)?.len();
        let piece = self.piece_length.unwrap_or_else(|| piece_length_for(size));
        let pieces = hash_pieces(file, size, u64::from(piece), self.threads)?;
        Ok(encode(
            name,
            size,
            piece,
            &pieces,
            self.private,
            &self.trackers,
        ))
    }
}

#[async_trait]
impl TorrentPackager for Packager {
    async fn package(&self, file: &Path, name: &str) -> Result<TorrentMetadata, EngineError> {
        SafePath::from_components(&[name])?;
        let (me, file, name): (Self, PathBuf, String) =
            (self.clone(), file.to_owned(), name.to_owned());
        let metainfo = tokio::task::spawn_blocking(move || me.create(&file, &name))
            .await
            .map_err(|e| EngineError::Unexpected(e.into()))?
            .map_err(io)?;
        crate::inspect(&metainfo)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn piece_lengths_follow_the_size() {
        assert_eq!(piece_length_for(0), 16 << 10);
        assert_eq!(piece_length_for(100 << 20), 128 << 10);
        assert_eq!(piece_length_for(1 << 30), 1 << 20);
        assert_eq!(piece_length_for(1 << 45), 16 << 20);
    }

    #[tokio::test]
    async fn packages_match_what_mktorrent_would_hash() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("data.bin");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&f, &data).unwrap();
        let p = Packager {
            private: true,
            trackers: vec!["http://127.0.0.1:6969/announce".into()],
            threads: 3,
            piece_length: Some(1 << 16),
        };
        let meta = p.package(&f, "data.bin").await.unwrap();
        assert!(meta.private);
        assert_eq!(meta.total_bytes, 300_000);
        assert_eq!(meta.piece_length, 1 << 16);
        assert_eq!(
            meta.trackers,
            vec!["http://127.0.0.1:6969/announce".to_owned()]
        );
        assert_eq!(meta.files[0].path, "data.bin");
        // Same pieces whatever the thread count.
        let one = Packager {
            threads: 1,
            ..p.clone()
        }
        .create(&f, "data.bin")
        .unwrap();
        assert_eq!(one, p.create(&f, "data.bin").unwrap());
        // The first piece's hash is the SHA-1 of the first 64 KiB.
        let sha = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            &data[..1 << 16],
        );
        assert!(one.windows(20).any(|w| w == sha.as_ref()));
        assert!(p.package(&f, "../evil").await.is_err());
    }

    #[test]
    fn both_sha1_paths_agree_with_the_standard_vectors() {
        let million_a = vec![b'a'; 1_000_000];
        for path in Sha1Path::ALL {
            for (input, hex) in [
                (&b""[..], "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
                (&b"abc"[..], "a9993e364706816aba3e25717850c26c9cd0d89d"),
                (&million_a[..], "34aa973cd4c4daa4f61eeb2bdbad27316534016f"),
            ] {
                let got: String = path
                    .digest(input)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(got, hex, "{}", path.name());
            }
        }
        assert!(Sha1Path::ALL.contains(&Sha1Path::fastest()));
    }
}
