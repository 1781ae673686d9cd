//! `ferry get ID [--out DIR]`: a finished job's files, downloaded under `DIR` at the paths
//! the job gives them. Every path is checked before anything is written (a server cannot
//! make the client write outside `DIR`); a file that is partly there is resumed with
//! `Range`; each file is checked against its SHA-256 when the server lists one.

use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use futures::StreamExt;
use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::GetArgs;
use super::api::Api;
use super::commands::{job_id, print_json};
use super::error::{ClientError, clean};
use super::model::{Job, JobFile, has_ended};
use super::progress::Transfer;

/// What became of one file.
struct Saved {
    saved_to: PathBuf,
    /// Bytes that were already here and kept.
    resumed_from: u64,
    /// Bytes received now.
    downloaded: u64,
    sha256: String,
}

/// Downloads the job's chosen files into `--out` (the current folder by default).
///
/// # Errors
/// An unfinished job, an unsafe path (nothing is written then), a file that arrives other
/// than the server described it, or any error of the API.
pub async fn get(api: &Api, args: GetArgs) -> Result<(), ClientError> {
    let id = job_id(&args.id)?.to_string();
    let (_, job): (_, Job) = api.json(api.request(Method::GET, &["jobs", &id])).await?;
    let (_, files): (_, Vec<JobFile>) = api
        .json(api.request(Method::GET, &["jobs", &id, "files"]))
        .await?;
    if let Some(asked) = &args.files
        && let Some(missing) = asked.iter().find(|i| !files.iter().any(|f| f.index == **i))
    {
        return Err(ClientError::NotFound(format!(
            "job {id} has no file {missing}"
        )));
    }
    let wanted: Vec<&JobFile> = files
        .iter()
        .filter(|f| f.selected && f.download_url.is_some())
        .filter(|f| args.files.as_ref().is_none_or(|w| w.contains(&f.index)))
        .collect();
    if wanted.is_empty() {
        let why = if has_ended(job.status) {
            "has no files to download".to_owned()
        } else {
            format!(
                "is {}: its files can be downloaded once it is completed (`ferry watch {id}` waits for that)",
                job.status
            )
        };
        return Err(anyhow::anyhow!("job {id} ({}) {why}", clean(&job.name)).into());
    }
    let out = args.out.unwrap_or_else(|| PathBuf::from("."));
    // Every path first: a server that names one unsafe path gets nothing written.
    let plan = wanted
        .into_iter()
        .map(|f| Ok((f, out.join(safe_path(&f.path)?))))
        .collect::<Result<Vec<_>, ClientError>>()?;
    let mut report = Vec::new();
    for (file, dest) in plan {
        let saved = download(api, &id, file, &dest).await?;
        report.push(json!({
            "index": file.index,
            "path": file.path,
            "size": file.size,
            "saved_to": saved.saved_to.display().to_string(),
            "resumed_from": saved.resumed_from,
            "downloaded": saved.downloaded,
            "sha256": saved.sha256,
        }));
    }
    if args.output.json {
        print_json(&json!({
            "job": id,
            "out": out.display().to_string(),
            "files": report,
        }));
    } else {
        let bytes: u64 = report.iter().filter_map(|r| r["size"].as_u64()).sum();
        println!(
            "{} file(s), {} in {}",
            report.len(),
            indicatif::HumanBytes(bytes),
            out.display()
        );
    }
    Ok(())
}

/// A job's file path (`name/sub/file.bin`) as a relative path that stays under the folder
/// it is joined to: no absolute path, no `..`, `.` or empty part, no backslash, NUL or
/// control character.
///
/// # Errors
/// When `path` is not such a path.
fn safe_path(path: &str) -> Result<PathBuf, ClientError> {
    let refuse = || {
        ClientError::Unexpected(anyhow::anyhow!(
            "the server named an unsafe file path {:?}; nothing was downloaded",
            clean(path).to_string()
        ))
    };
    if path.is_empty() || path.len() > 4096 {
        return Err(refuse());
    }
    let mut out = PathBuf::new();
    for part in path.split('/') {
        let bad = part.is_empty()
            || part == "."
            || part == ".."
            || part.contains('\\')
            || part.chars().any(char::is_control)
            || (cfg!(windows) && part.contains(':'));
        if bad {
            return Err(refuse());
        }
        out.push(part);
    }
    if !out.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(refuse());
    }
    Ok(out)
}

/// The SHA-256 (hex) of the first `len` bytes of `path`, fed into `hasher`.
async fn hash_prefix(path: &Path, len: u64, hasher: &mut Sha256) -> std::io::Result<()> {
    let file = tokio::fs::File::open(path).await?;
    let mut file = file.take(len);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

/// Downloads `file` to `dest`: kept if it is already whole, resumed if it is there in
/// part, fetched again from the start if what was there turns out not to match.
async fn download(api: &Api, job: &str, file: &JobFile, dest: &Path) -> Result<Saved, ClientError> {
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let have = match tokio::fs::symlink_metadata(dest).await {
        Ok(meta) if meta.is_file() => Some(meta.len()),
        Ok(_) => {
            return Err(anyhow::anyhow!("{} is in the way: not a file", dest.display()).into());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("reading {}", dest.display()))
                .into());
        }
    };
    let expected = file.sha256.as_deref().map(str::to_ascii_lowercase);
    if have == Some(file.size) {
        let mut hasher = Sha256::new();
        hash_prefix(dest, file.size, &mut hasher)
            .await
            .with_context(|| format!("reading {}", dest.display()))?;
        let sha = hex::encode(hasher.finalize());
        if expected.as_ref().is_none_or(|e| *e == sha) {
            Transfer::start(&file.path, file.size, file.size).done("already here");
            return Ok(Saved {
                saved_to: dest.to_owned(),
                resumed_from: file.size,
                downloaded: 0,
                sha256: sha,
            });
        }
    }
    let from = have.filter(|h| *h > 0 && *h < file.size).unwrap_or(0);
    let mut saved = fetch_into(api, job, file, dest, from).await?;
    if expected.as_ref().is_some_and(|e| *e != saved.sha256) && saved.resumed_from > 0 {
        // What was here was not the start of this file: fetch all of it.
        let downloaded = saved.downloaded;
        saved = fetch_into(api, job, file, dest, 0).await?;
        saved.downloaded += downloaded;
    }
    if let Some(e) = expected.filter(|e| *e != saved.sha256) {
        return Err(anyhow::anyhow!(
            "{} arrived damaged: its SHA-256 is {}, the server lists {}",
            dest.display(),
            saved.sha256,
            clean(&e)
        )
        .into());
    }
    Ok(saved)
}

/// `GET /jobs/{id}/files/{index}` into `dest`, from byte `from` (`Range`) when the server
/// agrees (206), else the whole file over what was there.
async fn fetch_into(
    api: &Api,
    job: &str,
    file: &JobFile,
    dest: &Path,
    from: u64,
) -> Result<Saved, ClientError> {
    let index = file.index.to_string();
    let mut request = api.request(Method::GET, &["jobs", job, "files", &index]);
    if from > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={from}-"));
    }
    let response = api.send(request).await?;
    let start = if from > 0 && response.status() == reqwest::StatusCode::PARTIAL_CONTENT {
        let range = response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !range.starts_with(&format!("bytes {from}-")) {
            return Err(anyhow::anyhow!(
                "the server answered the range from byte {from} with {:?}",
                clean(range).to_string()
            )
            .into());
        }
        from
    } else {
        0
    };
    let mut hasher = Sha256::new();
    let mut out = if start > 0 {
        hash_prefix(dest, start, &mut hasher)
            .await
            .with_context(|| format!("reading {}", dest.display()))?;
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .open(dest)
            .await
            .with_context(|| format!("opening {}", dest.display()))?;
        // Whatever lay past `start` (nothing, normally) is written over.
        f.set_len(start)
            .await
            .with_context(|| format!("writing {}", dest.display()))?;
        tokio::io::AsyncSeekExt::seek(&mut f, std::io::SeekFrom::Start(start))
            .await
            .with_context(|| format!("writing {}", dest.display()))?;
        f
    } else {
        tokio::fs::File::create(dest)
            .await
            .with_context(|| format!("creating {}", dest.display()))?
    };
    let transfer = Transfer::start(&file.path, file.size, start);
    let received = match receive(
        api,
        response,
        &mut out,
        &mut hasher,
        &transfer,
        file.size - start,
    )
    .await
    {
        Ok(n) => n,
        Err(e) => {
            transfer.failed();
            return Err(e);
        }
    };
    if start + received != file.size {
        transfer.failed();
        return Err(anyhow::anyhow!(
            "{} ended after {} of its {} bytes; run the same `ferry get` again to resume",
            dest.display(),
            start + received,
            file.size
        )
        .into());
    }
    transfer.done(if start > 0 { "resumed, done" } else { "done" });
    Ok(Saved {
        saved_to: dest.to_owned(),
        resumed_from: start,
        downloaded: received,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Writes the body to `out` as it arrives; refuses more than `room` bytes.
async fn receive(
    api: &Api,
    response: reqwest::Response,
    out: &mut tokio::fs::File,
    hasher: &mut Sha256,
    transfer: &Transfer,
    room: u64,
) -> Result<u64, ClientError> {
    let mut body = response.bytes_stream();
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| api.transport(e))?;
        let n = chunk.len() as u64;
        if received + n > room {
            return Err(anyhow::anyhow!(
                "the server sent more than the file's size; the download was stopped"
            )
            .into());
        }
        out.write_all(&chunk).await.context("writing the file")?;
        hasher.update(&chunk);
        received += n;
        transfer.advance(n);
    }
    out.flush().await.context("writing the file")?;
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_paths_without_dot_dot_are_safe() {
        for ok in [
            "a.iso",
            "name/sub/file.bin",
            "na me/ü.txt",
            "..a/b..",
            ".hidden",
        ] {
            assert!(safe_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "..",
            "a\\..\\b",
            "a/b\u{0}c",
            "a/\u{1b}[2J",
        ] {
            assert!(safe_path(bad).is_err(), "{bad:?}");
        }
    }
}
