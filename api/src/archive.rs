//! A job's files as one archive, streamed as it is read: zip (stored, not compressed; CRC-32
//! computed while streaming and written in a data descriptor after each file; ZIP64 where a
//! size or an offset needs it) or tar (POSIX ustar, with a PAX header for names ustar cannot
//! hold and sizes of 8 GiB and more). Every header's size is known before the first byte, so
//! the answer's `Content-Length` is exact and nothing is staged on disk.

use std::path::PathBuf;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Timelike, Utc};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Chunks read from a file at a time, and chunks in flight to the client.
const CHUNK: usize = 256 << 10;
const IN_FLIGHT: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Zip,
    Tar,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Zip => "zip",
            Self::Tar => "tar",
        }
    }
}

/// One file of the archive.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its path inside the archive (`/`-separated, already a safe relative path).
    pub name: String,
    pub size: u64,
    /// Where its bytes are.
    pub path: PathBuf,
}

/// An archive of `entries`, all stamped with `modified`.
#[derive(Debug, Clone)]
pub struct Archive {
    pub format: Format,
    pub entries: Vec<Entry>,
    pub modified: DateTime<Utc>,
}

impl Archive {
    /// The archive's exact length in bytes.
    pub fn len(&self) -> u64 {
        match self.format {
            Format::Zip => zip::Layout::of(&self.entries).total,
            Format::Tar => self.entries.iter().map(tar::entry_len).sum::<u64>() + 1024,
        }
    }

    /// Streams the archive through a bounded channel: a task reads the files one after the
    /// other and stops when the receiver goes (the client left). A file that turns out
    /// shorter or longer than recorded ends the stream with an error, so the client sees a
    /// short body rather than a wrong archive.
    pub fn stream(self) -> mpsc::Receiver<std::io::Result<Bytes>> {
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        tokio::spawn(async move {
            if let Err(e) = self.write(&tx).await {
                // Nobody to tell when the client left; otherwise the body ends in an error.
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }

    async fn write(self, tx: &Sender) -> std::io::Result<()> {
        match self.format {
            Format::Zip => zip::write(&self, tx).await,
            Format::Tar => tar::write(&self, tx).await,
        }
    }
}

type Sender = mpsc::Sender<std::io::Result<Bytes>>;

async fn send(tx: &Sender, bytes: Vec<u8>) -> std::io::Result<()> {
    tx.send(Ok(Bytes::from(bytes)))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))
}

/// Sends exactly `entry.size` bytes of the entry's file, handing each chunk to `seen`.
async fn send_file(tx: &Sender, entry: &Entry, mut seen: impl FnMut(&[u8])) -> std::io::Result<()> {
    let mut file = tokio::fs::File::open(&entry.path).await?;
    let mut left = entry.size;
    while left > 0 {
        let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        let mut buf = vec![0; want];
        let mut filled = 0;
        while filled < want {
            let n = file.read(&mut buf[filled..]).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} is shorter than recorded", entry.name),
                ));
            }
            filled += n;
        }
        seen(&buf);
        left -= want as u64;
        send(tx, buf).await?;
    }
    if file.read(&mut [0u8; 1]).await? != 0 {
        return Err(std::io::Error::other(format!(
            "{} is longer than recorded",
            entry.name
        )));
    }
    Ok(())
}

mod zip {
    //! PKWARE APPNOTE 6.3.10: local headers with bit 3 (sizes and CRC in a data descriptor)
    //! and bit 11 (UTF-8 names), method 0, ZIP64 extra fields and end records when needed.

    use super::{Archive, Entry, Sender, send, send_file};

    const LOCAL: u32 = 0x0403_4b50;
    const DESCRIPTOR: u32 = 0x0807_4b50;
    const CENTRAL: u32 = 0x0201_4b50;
    const END: u32 = 0x0605_4b50;
    const END64: u32 = 0x0606_4b50;
    const LOCATOR64: u32 = 0x0706_4b50;
    const FLAGS: u16 = 0x0008 | 0x0800;
    const MAX32: u64 = 0xFFFF_FFFF;

    /// Where each entry starts and how long everything is.
    pub(super) struct Layout {
        pub offsets: Vec<u64>,
        pub central_start: u64,
        pub central_len: u64,
        pub total: u64,
    }

    fn big(entry: &Entry) -> bool {
        entry.size >= MAX32
    }

    fn local_len(entry: &Entry) -> u64 {
        let extra = if big(entry) { 20 } else { 0 };
        let descriptor = if big(entry) { 24 } else { 16 };
        30 + entry.name.len() as u64 + extra + entry.size + descriptor
    }

    fn central_extra(entry: &Entry, offset: u64) -> Vec<u8> {
        let mut fields = Vec::new();
        if big(entry) {
            fields.extend_from_slice(&entry.size.to_le_bytes());
            fields.extend_from_slice(&entry.size.to_le_bytes());
        }
        if offset >= MAX32 {
            fields.extend_from_slice(&offset.to_le_bytes());
        }
        if fields.is_empty() {
            return fields;
        }
        let mut extra = Vec::with_capacity(4 + fields.len());
        extra.extend_from_slice(&1u16.to_le_bytes());
        extra.extend_from_slice(&u16::try_from(fields.len()).unwrap_or(0).to_le_bytes());
        extra.extend_from_slice(&fields);
        extra
    }

    impl Layout {
        pub(super) fn of(entries: &[Entry]) -> Self {
            let mut offsets = Vec::with_capacity(entries.len());
            let mut at = 0u64;
            for entry in entries {
                offsets.push(at);
                at += local_len(entry);
            }
            let central_start = at;
            let central_len: u64 = entries
                .iter()
                .zip(&offsets)
                .map(|(e, &o)| 46 + e.name.len() as u64 + central_extra(e, o).len() as u64)
                .sum();
            let end = if needs_zip64_end(entries.len(), central_start, central_len) {
                56 + 20 + 22
            } else {
                22
            };
            Self {
                offsets,
                central_start,
                central_len,
                total: central_start + central_len + end,
            }
        }
    }

    fn needs_zip64_end(count: usize, start: u64, len: u64) -> bool {
        count >= 0xFFFF || start >= MAX32 || len >= MAX32
    }

    fn u16_of(n: usize) -> u16 {
        u16::try_from(n).unwrap_or(u16::MAX)
    }

    fn u32_or_max(n: u64) -> u32 {
        u32::try_from(n)
            .ok()
            .filter(|&n| u64::from(n) < MAX32)
            .unwrap_or(u32::MAX)
    }

    pub(super) async fn write(archive: &Archive, tx: &Sender) -> std::io::Result<()> {
        let layout = Layout::of(&archive.entries);
        let (time, date) = super::dos_time(archive.modified);
        let mut crcs = Vec::with_capacity(archive.entries.len());
        for entry in &archive.entries {
            let mut h = Vec::with_capacity(64 + entry.name.len());
            h.extend_from_slice(&LOCAL.to_le_bytes());
            h.extend_from_slice(&(if big(entry) { 45u16 } else { 20 }).to_le_bytes());
            h.extend_from_slice(&FLAGS.to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // stored
            h.extend_from_slice(&time.to_le_bytes());
            h.extend_from_slice(&date.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes()); // CRC: in the descriptor
            let unknown = if big(entry) { u32::MAX } else { 0 };
            h.extend_from_slice(&unknown.to_le_bytes());
            h.extend_from_slice(&unknown.to_le_bytes());
            h.extend_from_slice(&u16_of(entry.name.len()).to_le_bytes());
            h.extend_from_slice(&(if big(entry) { 20u16 } else { 0 }).to_le_bytes());
            h.extend_from_slice(entry.name.as_bytes());
            if big(entry) {
                h.extend_from_slice(&1u16.to_le_bytes());
                h.extend_from_slice(&16u16.to_le_bytes());
                h.extend_from_slice(&0u64.to_le_bytes());
                h.extend_from_slice(&0u64.to_le_bytes());
            }
            send(tx, h).await?;
            let mut crc = crc32fast::Hasher::new();
            send_file(tx, entry, |chunk| crc.update(chunk)).await?;
            let crc = crc.finalize();
            crcs.push(crc);
            let mut d = Vec::with_capacity(24);
            d.extend_from_slice(&DESCRIPTOR.to_le_bytes());
            d.extend_from_slice(&crc.to_le_bytes());
            if big(entry) {
                d.extend_from_slice(&entry.size.to_le_bytes());
                d.extend_from_slice(&entry.size.to_le_bytes());
            } else {
                d.extend_from_slice(&u32_or_max(entry.size).to_le_bytes());
                d.extend_from_slice(&u32_or_max(entry.size).to_le_bytes());
            }
            send(tx, d).await?;
        }
        let mut c = Vec::with_capacity(usize::try_from(layout.central_len).unwrap_or(0) + 100);
        for ((entry, &offset), crc) in archive.entries.iter().zip(&layout.offsets).zip(&crcs) {
            let extra = central_extra(entry, offset);
            let zip64 = !extra.is_empty();
            let version: u16 = if zip64 { 45 } else { 20 };
            c.extend_from_slice(&CENTRAL.to_le_bytes());
            c.extend_from_slice(&(version | (3 << 8)).to_le_bytes()); // made on Unix
            c.extend_from_slice(&version.to_le_bytes());
            c.extend_from_slice(&FLAGS.to_le_bytes());
            c.extend_from_slice(&0u16.to_le_bytes());
            c.extend_from_slice(&time.to_le_bytes());
            c.extend_from_slice(&date.to_le_bytes());
            c.extend_from_slice(&crc.to_le_bytes());
            let size = if big(entry) {
                u32::MAX
            } else {
                u32_or_max(entry.size)
            };
            c.extend_from_slice(&size.to_le_bytes());
            c.extend_from_slice(&size.to_le_bytes());
            c.extend_from_slice(&u16_of(entry.name.len()).to_le_bytes());
            c.extend_from_slice(&u16_of(extra.len()).to_le_bytes());
            c.extend_from_slice(&0u16.to_le_bytes()); // comment
            c.extend_from_slice(&0u16.to_le_bytes()); // disk
            c.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            c.extend_from_slice(&(0o100_644u32 << 16).to_le_bytes());
            c.extend_from_slice(&u32_or_max(offset).to_le_bytes());
            c.extend_from_slice(entry.name.as_bytes());
            c.extend_from_slice(&extra);
            if c.len() >= super::CHUNK {
                send(tx, std::mem::take(&mut c)).await?;
            }
        }
        let count = archive.entries.len() as u64;
        let end64_at = layout.central_start + layout.central_len;
        if needs_zip64_end(
            archive.entries.len(),
            layout.central_start,
            layout.central_len,
        ) {
            c.extend_from_slice(&END64.to_le_bytes());
            c.extend_from_slice(&44u64.to_le_bytes());
            c.extend_from_slice(&(45u16 | (3 << 8)).to_le_bytes());
            c.extend_from_slice(&45u16.to_le_bytes());
            c.extend_from_slice(&0u32.to_le_bytes());
            c.extend_from_slice(&0u32.to_le_bytes());
            c.extend_from_slice(&count.to_le_bytes());
            c.extend_from_slice(&count.to_le_bytes());
            c.extend_from_slice(&layout.central_len.to_le_bytes());
            c.extend_from_slice(&layout.central_start.to_le_bytes());
            c.extend_from_slice(&LOCATOR64.to_le_bytes());
            c.extend_from_slice(&0u32.to_le_bytes());
            c.extend_from_slice(&end64_at.to_le_bytes());
            c.extend_from_slice(&1u32.to_le_bytes());
        }
        c.extend_from_slice(&END.to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes());
        let count16 = u16::try_from(count)
            .ok()
            .filter(|&n| n < u16::MAX)
            .unwrap_or(u16::MAX);
        c.extend_from_slice(&count16.to_le_bytes());
        c.extend_from_slice(&count16.to_le_bytes());
        c.extend_from_slice(&u32_or_max(layout.central_len).to_le_bytes());
        c.extend_from_slice(&u32_or_max(layout.central_start).to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes());
        send(tx, c).await
    }
}

mod tar {
    //! POSIX.1-2001 ustar with PAX extended headers (`path`, `size`) where ustar's fields are
    //! too small; 512-byte blocks, two zero blocks at the end.

    use super::{Archive, Entry, Sender, send, send_file};

    const BLOCK: u64 = 512;
    /// Largest size ustar's 11 octal digits hold.
    const MAX_USTAR_SIZE: u64 = 0o777_7777_7777;

    fn padded(n: u64) -> u64 {
        n.div_ceil(BLOCK) * BLOCK
    }

    /// `(prefix, name)` when ustar can hold the path, split at a `/`.
    fn ustar_name(path: &str) -> Option<(&str, &str)> {
        if !path.is_ascii() {
            return None;
        }
        if path.len() <= 100 {
            return Some(("", path));
        }
        path.char_indices()
            .filter(|&(_, c)| c == '/')
            .map(|(i, _)| (&path[..i], &path[i + 1..]))
            .find(|(prefix, name)| prefix.len() <= 155 && name.len() <= 100 && !name.is_empty())
    }

    /// One PAX record: `"{len} {key}={value}\n"`, where `len` counts the whole record.
    pub(super) fn record(key: &str, value: &str) -> String {
        let body = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        format!("{len} {key}={value}\n")
    }

    fn pax(entry: &Entry) -> Option<String> {
        let mut records = String::new();
        if ustar_name(&entry.name).is_none() {
            records.push_str(&record("path", &entry.name));
        }
        if entry.size > MAX_USTAR_SIZE {
            records.push_str(&record("size", &entry.size.to_string()));
        }
        (!records.is_empty()).then_some(records)
    }

    pub(super) fn entry_len(entry: &Entry) -> u64 {
        let extended = pax(entry).map_or(0, |p| BLOCK + padded(p.len() as u64));
        extended + BLOCK + padded(entry.size)
    }

    fn octal(field: &mut [u8], n: u64) {
        let digits = field.len() - 1;
        let text = format!("{n:0digits$o}");
        let text = &text.as_bytes()[text.len().saturating_sub(digits)..];
        field[..digits].copy_from_slice(text);
        field[digits] = 0;
    }

    fn header(name: &str, size: u64, mtime: i64, kind: u8) -> [u8; 512] {
        let mut h = [0u8; 512];
        let (prefix, short) = ustar_name(name).unwrap_or(("", ""));
        let short = if short.is_empty() {
            // Named by the PAX header; a readable stand-in for old readers.
            let tail: String = name.chars().rev().take(90).collect::<String>();
            let tail: String = tail.chars().rev().filter(char::is_ascii).collect();
            h[..tail.len()].copy_from_slice(tail.as_bytes());
            ""
        } else {
            short
        };
        h[..short.len()].copy_from_slice(short.as_bytes());
        octal(&mut h[100..108], 0o644);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size.min(MAX_USTAR_SIZE));
        octal(&mut h[136..148], u64::try_from(mtime).unwrap_or(0));
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        octal(&mut h[148..155], u64::from(sum));
        h[155] = b' ';
        h
    }

    pub(super) async fn write(archive: &Archive, tx: &Sender) -> std::io::Result<()> {
        let mtime = archive.modified.timestamp();
        for entry in &archive.entries {
            let mut head = Vec::with_capacity(1024);
            if let Some(records) = pax(entry) {
                head.extend_from_slice(&header(
                    "././@PaxHeader",
                    records.len() as u64,
                    mtime,
                    b'x',
                ));
                let mut body = records.into_bytes();
                body.resize(usize::try_from(padded(body.len() as u64)).unwrap_or(0), 0);
                head.extend_from_slice(&body);
            }
            head.extend_from_slice(&header(&entry.name, entry.size, mtime, b'0'));
            send(tx, head).await?;
            send_file(tx, entry, |_| {}).await?;
            let pad = padded(entry.size) - entry.size;
            if pad > 0 {
                send(tx, vec![0; usize::try_from(pad).unwrap_or(0)]).await?;
            }
        }
        send(tx, vec![0; 1024]).await
    }
}

/// MS-DOS time and date (2-second resolution, 1980–2107).
fn dos_time(t: DateTime<Utc>) -> (u16, u16) {
    let year = t.year().clamp(1980, 2107);
    let date = ((year - 1980) as u16) << 9 | (t.month() as u16) << 5 | t.day() as u16;
    let time = (t.hour() as u16) << 11 | (t.minute() as u16) << 5 | (t.second() as u16 / 2);
    (time, date)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(archive: Archive) -> Vec<u8> {
        let mut rx = archive.stream();
        let mut all = Vec::new();
        while let Some(chunk) = rx.recv().await {
            all.extend_from_slice(&chunk.unwrap());
        }
        all
    }

    fn entries(dir: &std::path::Path, files: &[(&str, usize)]) -> Vec<Entry> {
        files
            .iter()
            .enumerate()
            .map(|(i, (name, size))| {
                let path = dir.join(format!("f{i}"));
                let bytes: Vec<u8> = (0..*size).map(|n| (n * 31 + i) as u8).collect();
                std::fs::write(&path, bytes).unwrap();
                Entry {
                    name: (*name).to_owned(),
                    size: *size as u64,
                    path,
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn the_announced_length_is_the_streamed_length() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("{}/{}", "d".repeat(120), "n".repeat(99));
        let unicode = "Série/épisode – 1.mkv".to_owned();
        let files = [
            ("a.txt", 0usize),
            ("dir/b.bin", 1),
            ("dir/c.bin", 511),
            ("dir/d.bin", 512),
            ("dir/e.bin", 300_000),
            (long.as_str(), 7),
            (unicode.as_str(), 1000),
        ];
        for format in [Format::Zip, Format::Tar] {
            let archive = Archive {
                format,
                entries: entries(dir.path(), &files),
                modified: Utc::now(),
            };
            let len = archive.len();
            let bytes = collect(archive).await;
            assert_eq!(bytes.len() as u64, len, "{format:?}");
        }
    }

    #[tokio::test]
    async fn a_file_that_changed_size_ends_the_stream_in_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut list = entries(dir.path(), &[("a", 100)]);
        list[0].size = 200;
        let mut rx = Archive {
            format: Format::Zip,
            entries: list,
            modified: Utc::now(),
        }
        .stream();
        let mut failed = false;
        while let Some(chunk) = rx.recv().await {
            failed |= chunk.is_err();
        }
        assert!(failed);
    }

    #[test]
    fn pax_records_count_their_own_length() {
        for value in ["x", &"y".repeat(95), &"z".repeat(1000)] {
            let r = tar::record("path", value);
            let (len, _) = r.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), r.len());
        }
    }
}

/// Archives read back by the system's own tools: `unzip` (Info-ZIP) and `tar` (GNU; `bsdtar`
/// too when installed) list every name and give back every byte, ZIP64 included.
#[cfg(test)]
mod readers {
    use std::process::Command;

    use super::*;

    fn sha256_of(path: &std::path::Path) -> String {
        let out = Command::new("sha256sum").arg(path).output().unwrap();
        String::from_utf8(out.stdout).unwrap()[..64].to_owned()
    }

    async fn write_to(archive: Archive, dest: &std::path::Path) {
        let mut rx = archive.stream();
        let mut out = tokio::fs::File::create(dest).await.unwrap();
        while let Some(chunk) = rx.recv().await {
            tokio::io::AsyncWriteExt::write_all(&mut out, &chunk.unwrap())
                .await
                .unwrap();
        }
        tokio::io::AsyncWriteExt::flush(&mut out).await.unwrap();
    }

    /// Files of a job: names with folders, spaces and UTF-8, an empty file, a long path.
    fn job_files(dir: &std::path::Path) -> Vec<Entry> {
        let long = format!("Show/{}/{}.txt", "s".repeat(130), "e".repeat(80));
        let names = [
            "Show/Season 1/Épisode 1.mkv".to_owned(),
            "Show/empty.nfo".to_owned(),
            long,
            "Show/sub/b.srt".to_owned(),
        ];
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let path = dir.join(format!("src{i}"));
                let size = [70_001usize, 0, 513, 4096][i];
                let bytes: Vec<u8> = (0..size).map(|n| (n * 7 + i * 13) as u8).collect();
                std::fs::write(&path, bytes).unwrap();
                Entry {
                    name: name.clone(),
                    size: size as u64,
                    path,
                }
            })
            .collect()
    }

    fn check_unpacked(out: &std::path::Path, entries: &[Entry]) {
        for entry in entries {
            let unpacked = out.join(&entry.name);
            assert_eq!(
                sha256_of(&unpacked),
                sha256_of(&entry.path),
                "{}",
                entry.name
            );
        }
    }

    #[tokio::test]
    async fn unzip_and_tar_unpack_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let entries = job_files(dir.path());
        for format in [Format::Zip, Format::Tar] {
            let file = dir.path().join(format!("job.{}", format.extension()));
            let archive = Archive {
                format,
                entries: entries.clone(),
                modified: Utc::now(),
            };
            let len = archive.len();
            write_to(archive, &file).await;
            assert_eq!(std::fs::metadata(&file).unwrap().len(), len);
            let mut readers = vec![];
            match format {
                Format::Zip => readers.push(vec!["unzip", "-q", "-o"]),
                Format::Tar => {
                    readers.push(vec!["tar", "-xf"]);
                    if which("bsdtar") {
                        readers.push(vec!["bsdtar", "-xf"]);
                    }
                }
            }
            for reader in readers {
                let out = tempfile::tempdir().unwrap();
                let mut cmd = Command::new(reader[0]);
                cmd.args(&reader[1..]).arg(&file).current_dir(out.path());
                if format == Format::Zip {
                    cmd.current_dir(out.path());
                }
                let status = cmd.status().unwrap();
                assert!(status.success(), "{reader:?}");
                check_unpacked(out.path(), &entries);
            }
            if format == Format::Zip {
                let test = Command::new("unzip")
                    .arg("-tq")
                    .arg(&file)
                    .output()
                    .unwrap();
                assert!(test.status.success(), "{test:?}");
            }
        }
    }

    fn which(program: &str) -> bool {
        Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// A file over 4 GiB (sparse, with data at both ends): ZIP64 sizes and offsets, and a
    /// PAX-free ustar size; both read back byte for byte.
    #[tokio::test]
    async fn a_file_over_4_gib_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        let size = (4u64 << 30) + (3 << 20) + 7;
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::File::create(&big).unwrap();
            f.write_all(b"start of a big file").unwrap();
            f.seek(SeekFrom::Start(size - 9)).unwrap();
            f.write_all(b"the end.\n").unwrap();
        }
        let small = dir.path().join("small");
        std::fs::write(&small, b"after the big one").unwrap();
        let entries = vec![
            Entry {
                name: "big/file.bin".into(),
                size,
                path: big.clone(),
            },
            Entry {
                name: "big/after.txt".into(),
                size: 17,
                path: small.clone(),
            },
        ];
        // Both files one after the other, as the readers below print them, compared byte
        // for byte with `cmp` (no hashing: the test reads 4 GiB three times as it is).
        let both = format!("<(cat {} {})", big.display(), small.display());
        let t = std::time::Instant::now();
        // zip: read from a file (its directory is at the end); unzip checks each CRC-32.
        let file = dir.path().join("big.zip");
        let archive = Archive {
            format: Format::Zip,
            entries: entries.clone(),
            modified: Utc::now(),
        };
        let len = archive.len();
        write_to(archive, &file).await;
        assert_eq!(std::fs::metadata(&file).unwrap().len(), len);
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "unzip -p {0} big/file.bin big/after.txt | cmp - {both}",
                file.display()
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        std::fs::remove_file(&file).unwrap();
        eprintln!("zip: {:?}", t.elapsed());

        // tar: streamed straight into tar's standard input.
        let t = std::time::Instant::now();
        let archive = Archive {
            format: Format::Tar,
            entries,
            modified: Utc::now(),
        };
        let len = archive.len();
        let mut child = tokio::process::Command::new("bash")
            .arg("-c")
            .arg(format!("tee >(wc -c >&2) | tar -xOf - | cmp - {both}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut rx = archive.stream();
        while let Some(chunk) = rx.recv().await {
            tokio::io::AsyncWriteExt::write_all(&mut stdin, &chunk.unwrap())
                .await
                .unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), len.to_string());
        eprintln!("tar: {:?}", t.elapsed());
    }
}
