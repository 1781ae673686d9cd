//! A qBittorrent request's parameters: the query string, and a form body
//! (`application/x-www-form-urlencoded` or `multipart/form-data`, whose `torrents` parts
//! are .torrent files).

use std::collections::{HashMap, HashSet};

use base64::Engine;
use futures::StreamExt;
use poem::http::{StatusCode, header};
use poem::{Body, Request, Response};

use super::text;

/// Most form fields a request may carry (every one is small).
const MAX_FIELDS: usize = 64;
/// Most .torrent files one `torrents/add` may carry.
const MAX_TORRENTS: usize = 100;

#[derive(Debug, Default)]
pub struct Params {
    fields: HashMap<String, String>,
    /// The uploaded .torrent files: (file name, bytes).
    pub torrents: Vec<(String, Vec<u8>)>,
}

impl Params {
    /// Reads the query and the body; a body that is not a form, or too large, is refused.
    pub async fn read(req: &Request, body: Body, max_torrent: u64) -> Result<Self, Response> {
        let mut params = Self::default();
        if let Some(query) = req.uri().query() {
            params.add_urlencoded(query.as_bytes())?;
        }
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            let boundary = multer::parse_boundary(&content_type)
                .map_err(|_| text(StatusCode::BAD_REQUEST, "the multipart boundary is missing"))?;
            params.add_multipart(body, &boundary, max_torrent).await?;
        } else {
            let bytes = body.into_bytes().await.map_err(|_| {
                text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is too large",
                )
            })?;
            if !bytes.is_empty() {
                if !content_type.is_empty()
                    && !content_type.starts_with("application/x-www-form-urlencoded")
                    && !content_type.starts_with("text/plain")
                {
                    return Err(text(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "send the parameters as a form (application/x-www-form-urlencoded or multipart/form-data)",
                    ));
                }
                params.add_urlencoded(&bytes)?;
            }
        }
        Ok(params)
    }

    fn insert(&mut self, name: String, value: String) -> Result<(), Response> {
        if self.fields.len() >= MAX_FIELDS && !self.fields.contains_key(&name) {
            return Err(text(StatusCode::BAD_REQUEST, "too many parameters"));
        }
        // A repeated field (several `urls` parts) adds lines.
        self.fields
            .entry(name)
            .and_modify(|v| {
                v.push('\n');
                v.push_str(&value);
            })
            .or_insert(value);
        Ok(())
    }

    fn add_urlencoded(&mut self, bytes: &[u8]) -> Result<(), Response> {
        for (name, value) in url::form_urlencoded::parse(bytes) {
            self.insert(name.into_owned(), value.into_owned())?;
        }
        Ok(())
    }

    async fn add_multipart(
        &mut self,
        body: Body,
        boundary: &str,
        max_torrent: u64,
    ) -> Result<(), Response> {
        let stream = body
            .into_bytes_stream()
            .map(|r| r.map_err(std::io::Error::other));
        let mut form = multer::Multipart::new(stream, boundary);
        let bad = |e: multer::Error| text(StatusCode::BAD_REQUEST, format!("malformed form: {e}"));
        while let Some(mut field) = form.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or_default().to_owned();
            if name == "torrents" {
                if self.torrents.len() >= MAX_TORRENTS {
                    return Err(text(StatusCode::BAD_REQUEST, "too many .torrent files"));
                }
                let file = field.file_name().unwrap_or("upload.torrent").to_owned();
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    if (bytes.len() + chunk.len()) as u64 > max_torrent {
                        return Err(text(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("a .torrent may be at most {max_torrent} bytes"),
                        ));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                self.torrents.push((file, bytes));
            } else {
                let value = field.text().await.map_err(bad)?;
                if value.len() > 64 * 1024 {
                    return Err(text(StatusCode::BAD_REQUEST, format!("{name} is too long")));
                }
                self.insert(name, value)?;
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// A boolean parameter (`true`/`false`, any case; `1`/`0`).
    pub fn flag(&self, name: &str) -> Option<bool> {
        match self.get(name)?.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        }
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name)?.trim().parse().ok()
    }

    pub fn float(&self, name: &str) -> Option<f64> {
        self.get(name)?.trim().parse().ok()
    }
}

/// The hashes a `hashes` parameter names (`a|b|c`, lowercased), or `None` for `all`.
pub fn hashes(text: &str) -> Option<HashSet<String>> {
    if text.trim().eq_ignore_ascii_case("all") {
        return None;
    }
    Some(
        text.split('|')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect(),
    )
}

/// `name:token` from HTTP Basic credentials.
pub fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (name, token) = text.split_once(':')?;
    Some((name.to_owned(), token.to_owned()))
}
