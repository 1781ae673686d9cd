//! Reading and checking .torrent bytes: the parser is librqbit's, the rules are Ferry's.

use ferry_application::ports::EngineError;
use ferry_domain::{InfoHash, JobFile, SafePath, TorrentMetadata};
use librqbit::torrent_from_bytes;

/// Largest .torrent accepted (the info dict of a torrent with ~100 000 files fits).
pub const MAX_METAINFO_BYTES: usize = 32 << 20;

/// Parses `metainfo`, checks every file path, and lists the files (padding files left out,
/// indices kept as in the torrent).
///
/// # Errors
/// `InvalidTorrent` for bytes that are not a valid v1 torrent, `UnsafePath` for a hostile
/// file name.
pub fn inspect(metainfo: &[u8]) -> Result<TorrentMetadata, EngineError> {
    if metainfo.len() > MAX_METAINFO_BYTES {
        return Err(EngineError::InvalidTorrent(format!(
            "the .torrent is larger than {MAX_METAINFO_BYTES} bytes"
        )));
    }
    let torrent = torrent_from_bytes(metainfo)
        .map_err(|e| EngineError::InvalidTorrent(format!("not a valid .torrent: {e}")))?;
    let info_hash = InfoHash::from_bytes(torrent.info_hash.0);
    let trackers: Vec<String> = torrent
        .iter_announce()
        .filter_map(|t| std::str::from_utf8(t.as_ref()).ok().map(str::to_owned))
        .collect();
    let private = torrent.info.data.private;
    let piece_length = torrent.info.data.piece_length;
    check_lengths(&torrent.info.data)?;
    let info = torrent
        .info
        .data
        .validate()
        .map_err(|e| EngineError::InvalidTorrent(format!("invalid torrent metadata: {e}")))?;

    let multi_file = info.info().files.is_some();
    let name = info.name().map(|n| n.into_owned());
    let mut files = Vec::new();
    let mut total: u64 = 0;
    for (index, fd) in info.iter_file_details().enumerate() {
        total = total.saturating_add(fd.len);
        if fd.attrs().padding {
            continue;
        }
        let mut components: Vec<String> = Vec::new();
        if multi_file {
            components.push(name.clone().unwrap_or_else(|| info_hash.to_hex()));
        }
        components.extend(fd.filename.iter_components().map(|c| c.into_owned()));
        let path = SafePath::from_components(&components)?;
        files.push(JobFile {
            index,
            path: path.as_str().to_owned(),
            size: fd.len,
            selected: true,
            sha256: None,
        });
    }
    let name = name
        .filter(|n| !n.is_empty())
        .or_else(|| files.first().map(|f| f.path.clone()))
        .unwrap_or_else(|| info_hash.to_hex());
    Ok(TorrentMetadata {
        info_hash,
        name,
        files,
        total_bytes: total,
        piece_length,
        trackers,
        private,
        metainfo: metainfo.to_vec(),
    })
}

/// Largest torrent content accepted by the parser (1 PiB); operators cap far lower.
const MAX_CONTENT_BYTES: u64 = 1 << 50;

/// librqbit trusts the lengths it is given (a zero piece length divides by zero, a total
/// that overflows wraps): check them first, and that the piece hashes match the content.
fn check_lengths<B: AsRef<[u8]>>(info: &librqbit::TorrentMetaV1Info<B>) -> Result<(), EngineError> {
    let invalid = |m: &str| Err(EngineError::InvalidTorrent(m.to_owned()));
    if info.piece_length == 0 {
        return invalid("the piece length is zero");
    }
    let lengths: Vec<u64> = match (&info.files, info.length) {
        (Some(files), _) => files.iter().map(|f| f.length).collect(),
        (None, Some(len)) => vec![len],
        (None, None) => return invalid("the torrent has neither a length nor files"),
    };
    let mut total: u64 = 0;
    for len in lengths {
        total = match total.checked_add(len) {
            Some(t) if t <= MAX_CONTENT_BYTES => t,
            _ => return invalid("the torrent's total size is absurd (over 1 PiB)"),
        };
    }
    if total == 0 {
        return invalid("the torrent is empty");
    }
    let pieces = total.div_ceil(u64::from(info.piece_length));
    let hashes = info.pieces.as_ref().len();
    if hashes % 20 != 0 || pieces != (hashes / 20) as u64 {
        return invalid("the piece hashes do not match the torrent's size");
    }
    Ok(())
}
