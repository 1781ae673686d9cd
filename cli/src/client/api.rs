//! Talking to a Ferry server's API (`{base}api/v1/…`): requests with the bearer token, the
//! error body of a refusal turned into [`ClientError::Api`], a server that does not answer
//! into [`ClientError::Unreachable`], and Server-Sent Events read one by one ([`Events`]).

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ClientError;

/// The most an event may hold before the stream is judged broken (a real one is ~1 KiB).
const MAX_EVENT_BYTES: usize = 1 << 20;

/// A client of one server, with or without a token.
pub struct Api {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    /// A client of the server at `base` (ending in `/`), sending `token` if given.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base: &Url, token: Option<&str>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("ferry-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            // Event streams send a keep-alive every 15 s; a download that stalls this long
            // is given up (and resumed by the next `ferry get`).
            .read_timeout(Duration::from_secs(120))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base: base.clone(),
            token: token.map(str::to_owned),
            http,
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `{base}api/v1/{segments…}`, each segment percent-encoded (a `/` in an id stays in
    /// its segment and cannot reach another route).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        url
    }

    /// A request to `segments`, with the token.
    pub fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let r = self.http.request(method, self.url(segments));
        match &self.token {
            Some(token) => r.bearer_auth(token),
            None => r,
        }
    }

    /// Sends `request`; a refusal (not 2xx) becomes its [`ClientError`].
    ///
    /// # Errors
    /// [`ClientError::Unreachable`] when the server does not answer, [`ClientError::Api`]
    /// when it refuses.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request.send().await.map_err(|e| self.transport(e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(refusal(response).await)
        }
    }

    /// Sends `request` and reads its JSON answer, as given and as `T`.
    ///
    /// # Errors
    /// See [`Api::send`]; an answer that is not the JSON expected.
    pub async fn json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<(Value, T), ClientError> {
        let response = self.send(request).await?;
        let value: Value = response.json().await.map_err(|e| self.transport(e))?;
        let typed = serde_json::from_value(value.clone())
            .context("the server's answer is not what this client understands")?;
        Ok((value, typed))
    }

    /// A transport error: a server that does not answer is [`ClientError::Unreachable`].
    pub fn transport(&self, e: reqwest::Error) -> ClientError {
        if e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() {
            ClientError::Unreachable {
                url: self.base.to_string(),
                reason: error_chain(&e),
            }
        } else {
            ClientError::Unexpected(anyhow::Error::new(e).context("reading the server's answer"))
        }
    }
}

/// `e` and its sources, on one line (reqwest's own message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// The error a refusal carries: its `{"code", "message", "request_id"}` body, or its
/// status when the body is something else (a proxy's page).
pub async fn refusal(response: Response) -> ClientError {
    let status = response.status();
    let header_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Option<Value> = response.json().await.ok();
    let text = |key: &str| {
        body.as_ref()
            .and_then(|b| b[key].as_str())
            .map(|s| s.chars().take(500).collect::<String>())
    };
    ClientError::Api {
        status: status.as_u16(),
        code: text("code").unwrap_or_else(|| format!("http_{}", status.as_u16())),
        message: text("message").unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("the server refused the request")
                .to_owned()
        }),
        request_id: text("request_id").or(header_id),
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its `id:`, if it has one.
    pub id: Option<String>,
    /// Its `event:` (`message` when it names none).
    pub kind: String,
    /// Its `data:` lines, joined by newlines.
    pub data: String,
}

/// The events of an `text/event-stream` answer, one at a time.
pub struct Events {
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
    ended: bool,
}

impl Events {
    /// Reads `response`'s body as events.
    pub fn new(response: Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
            ended: false,
        }
    }

    /// The next event; `None` when the stream has ended (the server closed it, or the
    /// connection broke: either way the caller reconnects).
    ///
    /// # Errors
    /// An event larger than anything a Ferry server sends.
    pub async fn next(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            if let Some(event) = self.take_event() {
                return Ok(Some(event));
            }
            if self.ended {
                return Ok(None);
            }
            if self.buffer.len() > MAX_EVENT_BYTES {
                return Err(ClientError::Unexpected(anyhow::anyhow!(
                    "the server sent an event of over {MAX_EVENT_BYTES} bytes"
                )));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(_)) | None => self.ended = true,
            }
        }
    }

    /// Cuts the first whole event (ended by a blank line) out of the buffer, skipping
    /// blocks that carry no data (keep-alive comments).
    fn take_event(&mut self) -> Option<Event> {
        loop {
            let (end, skip) = block_end(&self.buffer)?;
            let block: Vec<u8> = self.buffer.drain(..end + skip).take(end).collect();
            if let Some(event) = parse_block(&String::from_utf8_lossy(&block)) {
                return Some(event);
            }
        }
    }
}

/// Where the first event ends in `buf` and the length of the blank line that ends it
/// (`\n\n`, `\r\n\r\n` or `\r\r`).
fn block_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        for sep in [&b"\r\n\r\n"[..], b"\n\n", b"\r\r"] {
            if buf[i..].starts_with(sep) {
                return Some((i, sep.len()));
            }
        }
        i += 1;
    }
    None
}

/// One event block's fields (RFC: `field: value` lines, `:` comments).
fn parse_block(block: &str) -> Option<Event> {
    let mut event = Event {
        id: None,
        kind: "message".to_owned(),
        data: String::new(),
    };
    let mut has_data = false;
    for line in block.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.kind = value.to_owned(),
            "data" => {
                if has_data {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    has_data.then_some(event)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn event_blocks_parse_and_comments_are_skipped() {
        let mut buf =
            b": keep-alive\n\nid: 7\nevent: progress\ndata: {\"a\":\ndata: 1}\n\nda".to_vec();
        assert_eq!(block_end(&buf), Some((12, 2)));
        let (end, skip) = block_end(&buf).unwrap();
        let first: Vec<u8> = buf.drain(..end + skip).collect();
        assert_eq!(parse_block(&String::from_utf8_lossy(&first)), None);
        let (end, _) = block_end(&buf).unwrap();
        let event = parse_block(&String::from_utf8_lossy(&buf[..end]));
        assert_eq!(
            event,
            Some(Event {
                id: Some("7".to_owned()),
                kind: "progress".to_owned(),
                data: "{\"a\":\n1}".to_owned(),
            })
        );
    }

    #[test]
    fn ids_are_one_path_segment_each() {
        let base = Url::parse("http://h:1/ferry/").unwrap();
        let api = Api::new(&base, None).unwrap();
        assert_eq!(
            api.url(&["jobs", "../../admin", "events"]).as_str(),
            "http://h:1/ferry/api/v1/jobs/..%2F..%2Fadmin/events"
        );
    }
}
