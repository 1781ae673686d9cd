//! Sending a file, as the job's file endpoint and a signed link both do: a finished file's
//! bytes from local storage (one `Range` honoured, RFC 9110 §14), or a redirect to the link
//! of a remote storage (a presigned S3 URL, made afresh for each request); an unfinished
//! file's bytes from the engine as they arrive (the same `Range` handling, and nothing
//! opened for `HEAD`).
//!
//! A streamed file's answer is decided once its first bytes are in hand: when they do not
//! come in time the answer is `504 stream_timeout`; a later stall (or the job stopping)
//! ends the body early, and the connection with it, so a client never takes a short body
//! for the file.

use ferry_application::ports::ObjectLocation;
use ferry_application::{FileDownload, FileSource, LiveFile};
use poem::Body;
use poem_openapi::ApiResponse;
use poem_openapi::payload::Binary;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::error::ApiError;
use crate::range::{RangeReply, resolve};

#[derive(ApiResponse)]
pub enum FileResponse {
    /// The whole file.
    #[oai(status = 200)]
    Full(
        Binary<Body>,
        #[oai(header = "Content-Disposition")] String,
        #[oai(header = "Accept-Ranges")] String,
        #[oai(header = "Content-Length")] u64,
    ),
    /// The requested byte range.
    #[oai(status = 206)]
    Partial(
        Binary<Body>,
        #[oai(header = "Content-Range")] String,
        #[oai(header = "Content-Disposition")] String,
        #[oai(header = "Accept-Ranges")] String,
        #[oai(header = "Content-Length")] u64,
    ),
    /// The file is in remote storage: follow the link.
    #[oai(status = 302)]
    Redirect(#[oai(header = "Location")] String),
    /// The range lies outside the file.
    #[oai(status = 416)]
    RangeNotSatisfiable(#[oai(header = "Content-Range")] String),
}

/// The answer for the file `source` and the request's `Range` header; `head`: the request
/// is a `HEAD` (an unfinished file is then not opened).
///
/// # Errors
/// As [`send`]; for an unfinished file, what opening it in the engine answers
/// (`stream_timeout`, `too_many_streams`, `job_not_finished`).
pub async fn send_source(
    source: FileSource,
    range: Option<&str>,
    head: bool,
) -> Result<FileResponse, ApiError> {
    match source {
        FileSource::Stored(download) => send(download, range).await,
        FileSource::Live(live) => send_live(live, range, head).await,
    }
}

/// An unfinished file's bytes as the engine gets them.
async fn send_live(
    live: LiveFile,
    range: Option<&str>,
    head: bool,
) -> Result<FileResponse, ApiError> {
    let size = live.file.size;
    let disposition = content_disposition(file_name(&live.file.path));
    let reply = resolve(range, size);
    let (start, len) = match reply {
        RangeReply::Full => (0, size),
        RangeReply::Partial { start, end } => (start, end - start + 1),
        RangeReply::Unsatisfiable => {
            return Ok(FileResponse::RangeNotSatisfiable(format!("bytes */{size}")));
        }
    };
    let body = if head || len == 0 {
        Body::empty()
    } else {
        Body::from_async_read(live.open(start).await?.take(len))
    };
    Ok(match reply {
        RangeReply::Partial { start, end } => FileResponse::Partial(
            Binary(body),
            format!("bytes {start}-{end}/{size}"),
            disposition,
            "bytes".to_owned(),
            len,
        ),
        _ => FileResponse::Full(Binary(body), disposition, "bytes".to_owned(), size),
    })
}

/// The last part of a file's path in the torrent.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("file")
}

/// The answer for `download` and the request's `Range` header.
///
/// # Errors
/// `internal` when the stored file cannot be opened or read.
pub async fn send(download: FileDownload, range: Option<&str>) -> Result<FileResponse, ApiError> {
    let path = match download.location {
        ObjectLocation::Url(url) => return Ok(FileResponse::Redirect(url)),
        ObjectLocation::LocalFile(path) => path,
    };
    let disposition = content_disposition(file_name(&download.file.path));
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::internal(&format!("opening {}: {e}", path.display())))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| ApiError::internal(&format!("reading {}: {e}", path.display())))?
        .len();
    match resolve(range, size) {
        RangeReply::Full => Ok(FileResponse::Full(
            Binary(Body::from_async_read(file)),
            disposition,
            "bytes".to_owned(),
            size,
        )),
        RangeReply::Partial { start, end } => {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| ApiError::internal(&format!("seeking {}: {e}", path.display())))?;
            let len = end - start + 1;
            Ok(FileResponse::Partial(
                Binary(Body::from_async_read(file.take(len))),
                format!("bytes {start}-{end}/{size}"),
                disposition,
                "bytes".to_owned(),
                len,
            ))
        }
        RangeReply::Unsatisfiable => {
            Ok(FileResponse::RangeNotSatisfiable(format!("bytes */{size}")))
        }
    }
}

/// `attachment` with an ASCII fallback and the exact UTF-8 name (RFC 6266 / 8187).
pub fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_is_safe() {
        let h = content_disposition("naïve \"x\".bin");
        assert!(
            h.starts_with("attachment; filename=\"na_ve _x_.bin\""),
            "{h}"
        );
        assert!(
            h.contains("filename*=UTF-8''na%C3%AFve%20%22x%22.bin"),
            "{h}"
        );
    }
}
